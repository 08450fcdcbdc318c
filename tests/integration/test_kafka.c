/*
 * Integration tests for common/kafka against the real local broker: a transactional produce seen
 * (or not) by read_committed and read_uncommitted consumers, consume-transform-produce with the
 * input offsets committed in the transaction, headers, topic creation, and the libuv bridge.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kafka.h"
#include "testenv.h"

static config_t *test_config(void)
{
    const char *bs = testenv_kafka_bootstrap();
    if (!bs)
        fail_msg("no kafka.bootstrap.servers in $JRP_TEST_CONF: start the servers with make up");
    config_t *cfg = config_create();
    char err[512];
    assert_int_equal(config_set(cfg, "kafka.bootstrap.servers", bs, "test", err, sizeof(err)), 0);
    return cfg;
}

static void create_topic(config_t *cfg, const char *name, int partitions)
{
    char err[512];
    rd_kafka_t *rk = kafka_producer_create(cfg, NULL, 0, err, sizeof(err));
    assert_non_null(rk);
    kafka_topic_spec_t spec = {name, partitions, 1, NULL};
    if (kafka_topics_ensure(rk, &spec, 1, 10000, err, sizeof(err)))
        fail_msg("create %s: %s", name, err);
    /* A second call on an existing topic is not an error. */
    assert_int_equal(kafka_topics_ensure(rk, &spec, 1, 10000, err, sizeof(err)), 0);
    rd_kafka_destroy(rk);
}

/* Read everything in topic from the beginning until idle_ms pass with nothing new. */
static int consume_all(config_t *cfg, const char *topic, int read_uncommitted, char values[][32],
                       int max, int idle_ms)
{
    char err[512];
    char group[128];
    snprintf(group, sizeof(group), "%s", testenv_unique("g"));
    rd_kafka_t *c = kafka_consumer_create(cfg, group, NULL, read_uncommitted, err, sizeof(err));
    assert_non_null(c);
    rd_kafka_topic_partition_list_t *sub = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(sub, topic, RD_KAFKA_PARTITION_UA);
    assert_int_equal(rd_kafka_subscribe(c, sub), 0);
    rd_kafka_topic_partition_list_destroy(sub);
    int n = 0, idle = 0, seen_any = 0;
    while (idle < idle_ms || (!seen_any && idle < 30000)) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(c, 200);
        if (!m) {
            idle += 200;
            continue;
        }
        if (!m->err && n < max) {
            snprintf(values[n], 32, "%.*s", (int)m->len, (const char *)m->payload);
            n++;
            seen_any = 1;
            idle = 0;
        }
        rd_kafka_message_destroy(m);
    }
    rd_kafka_consumer_close(c);
    rd_kafka_destroy(c);
    return n;
}

static void produce_n(rd_kafka_t *p, const char *topic, const char *tag, int from, int n)
{
    for (int i = from; i < from + n; i++) {
        char v[32];
        int len = snprintf(v, sizeof(v), "%s-%d", tag, i);
        assert_int_equal(kafka_produce(p, topic, RD_KAFKA_PARTITION_UA, "k", 1, v, (size_t)len,
                                       kafka_headers("jrp.v1.Test", NULL), NULL),
                         RD_KAFKA_RESP_ERR_NO_ERROR);
    }
}

/* Committed records are visible to read_committed; aborted ones only to read_uncommitted. */
static void test_transaction_commit_and_abort(void **state)
{
    (void)state;
    config_t *cfg = test_config();
    char err[512], topic[128];
    snprintf(topic, sizeof(topic), "%s", testenv_unique("jrp-test-txn"));
    create_topic(cfg, topic, 1);
    rd_kafka_t *p = kafka_producer_create(cfg, testenv_unique("txn"), 10000, err, sizeof(err));
    if (!p)
        fail_msg("transactional producer: %s", err);
    assert_null(rd_kafka_begin_transaction(p));
    produce_n(p, topic, "ok", 0, 10);
    assert_int_equal(kafka_txn_commit(p, NULL, 10000, err, sizeof(err)), KAFKA_ERR_OK);
    assert_null(rd_kafka_begin_transaction(p));
    produce_n(p, topic, "aborted", 0, 5);
    assert_int_equal(rd_kafka_flush(p, 10000), 0);
    assert_int_equal(kafka_txn_abort(p, 10000, err, sizeof(err)), KAFKA_ERR_OK);
    assert_null(rd_kafka_begin_transaction(p));
    produce_n(p, topic, "ok", 10, 2);
    assert_int_equal(kafka_txn_commit(p, NULL, 10000, err, sizeof(err)), KAFKA_ERR_OK);
    rd_kafka_destroy(p);

    char values[64][32];
    int n = consume_all(cfg, topic, 0, values, 64, 1500);
    assert_int_equal(n, 12);
    for (int i = 0; i < n; i++) {
        char want[32];
        snprintf(want, sizeof(want), "ok-%d", i);
        assert_string_equal(values[i], want);
    }
    /* The aborted records really reached the log: read_uncommitted shows them. */
    n = consume_all(cfg, topic, 1, values, 64, 1500);
    assert_int_equal(n, 17);
    int aborted = 0;
    for (int i = 0; i < n; i++)
        aborted += !strncmp(values[i], "aborted-", 8);
    assert_int_equal(aborted, 5);
    config_destroy(cfg);
}

/* Consume-transform-produce: outputs and input offsets commit together, in one transaction. */
static void test_consume_transform_produce(void **state)
{
    (void)state;
    config_t *cfg = test_config();
    char err[512], in[128], out[128], group[128];
    snprintf(in, sizeof(in), "%s", testenv_unique("jrp-test-in"));
    snprintf(out, sizeof(out), "%s", testenv_unique("jrp-test-out"));
    snprintf(group, sizeof(group), "%s", testenv_unique("jrp-test-group"));
    create_topic(cfg, in, 1);
    create_topic(cfg, out, 1);
    rd_kafka_t *p = kafka_producer_create(cfg, NULL, 0, err, sizeof(err));
    assert_non_null(p);
    produce_n(p, in, "in", 0, 20);
    assert_int_equal(rd_kafka_flush(p, 10000), 0);
    rd_kafka_destroy(p);

    rd_kafka_t *tp = kafka_producer_create(cfg, testenv_unique("ctp"), 10000, err, sizeof(err));
    assert_non_null(tp);
    rd_kafka_t *c = kafka_consumer_create(cfg, group, NULL, 0, err, sizeof(err));
    assert_non_null(c);
    rd_kafka_topic_partition_list_t *sub = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(sub, in, RD_KAFKA_PARTITION_UA);
    assert_int_equal(rd_kafka_subscribe(c, sub), 0);
    rd_kafka_topic_partition_list_destroy(sub);

    /* First batch of 10 is aborted: outputs vanish and the input is read again. */
    int round = 0, got = 0, waited = 0;
    assert_null(rd_kafka_begin_transaction(tp));
    while (got < 30 && waited < 30000) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(c, 200);
        if (!m) {
            waited += 200;
            continue;
        }
        if (m->err) {
            rd_kafka_message_destroy(m);
            continue;
        }
        char v[64];
        int len =
            snprintf(v, sizeof(v), "out-%.*s-r%d", (int)m->len, (const char *)m->payload, round);
        assert_int_equal(kafka_produce(tp, out, RD_KAFKA_PARTITION_UA, m->key, m->key_len, v,
                                       (size_t)len, kafka_headers("jrp.v1.Test", NULL), NULL),
                         0);
        rd_kafka_message_destroy(m);
        got++;
        if (got == 10 && round == 0) {
            assert_int_equal(kafka_txn_abort(tp, 10000, err, sizeof(err)), KAFKA_ERR_OK);
            assert_int_equal(kafka_rewind_to_committed(c, 10000, err, sizeof(err)), 0);
            round = 1;
            assert_null(rd_kafka_begin_transaction(tp));
        }
    }
    assert_int_equal(got, 30);
    assert_int_equal(kafka_txn_commit(tp, c, 10000, err, sizeof(err)), KAFKA_ERR_OK);

    /* The group's committed offset is the end of the input. */
    rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(parts, in, 0);
    assert_int_equal(rd_kafka_committed(c, parts, 10000), 0);
    assert_int_equal(parts->elems[0].offset, 20);
    rd_kafka_topic_partition_list_destroy(parts);
    rd_kafka_consumer_close(c);
    rd_kafka_destroy(c);
    rd_kafka_destroy(tp);

    char values[64][32];
    int n = consume_all(cfg, out, 0, values, 64, 1500);
    assert_int_equal(n, 20);
    for (int i = 0; i < n; i++) {
        char want[32];
        snprintf(want, sizeof(want), "out-in-%d-r1", i);
        assert_string_equal(values[i], want);
    }
    config_destroy(cfg);
}

/* Headers of the contract survive the trip. */
static void test_headers(void **state)
{
    (void)state;
    config_t *cfg = test_config();
    char err[512], topic[128];
    snprintf(topic, sizeof(topic), "%s", testenv_unique("jrp-test-hdr"));
    create_topic(cfg, topic, 1);
    rd_kafka_t *p = kafka_producer_create(cfg, NULL, 0, err, sizeof(err));
    assert_int_equal(kafka_produce(p, topic, 0, "key", 3, "v", 1,
                                   kafka_headers("jrp.v1.Action", "00-abc-def-01"), NULL),
                     0);
    assert_int_equal(rd_kafka_flush(p, 10000), 0);
    rd_kafka_destroy(p);
    rd_kafka_t *c = kafka_consumer_create(cfg, testenv_unique("g"), NULL, 0, err, sizeof(err));
    rd_kafka_topic_partition_list_t *sub = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(sub, topic, RD_KAFKA_PARTITION_UA);
    assert_int_equal(rd_kafka_subscribe(c, sub), 0);
    rd_kafka_topic_partition_list_destroy(sub);
    rd_kafka_message_t *m = NULL;
    for (int i = 0; i < 150 && !m; i++) {
        m = rd_kafka_consumer_poll(c, 200);
        if (m && m->err) {
            rd_kafka_message_destroy(m);
            m = NULL;
        }
    }
    assert_non_null(m);
    rd_kafka_headers_t *h = NULL;
    assert_int_equal(rd_kafka_message_headers(m, &h), 0);
    const void *val;
    size_t size;
    assert_int_equal(rd_kafka_header_get_last(h, "jrp-schema", &val, &size), 0);
    assert_memory_equal(val, "jrp.v1.Action", size);
    assert_int_equal(rd_kafka_header_get_last(h, "traceparent", &val, &size), 0);
    assert_memory_equal(val, "00-abc-def-01", size);
    rd_kafka_message_destroy(m);
    rd_kafka_consumer_close(c);
    rd_kafka_destroy(c);
    config_destroy(cfg);
}

/* A compacted topic is created with its config. */
static void test_topics_ensure_config(void **state)
{
    (void)state;
    config_t *cfg = test_config();
    char err[512], topic[128];
    snprintf(topic, sizeof(topic), "%s", testenv_unique("jrp-test-compact"));
    rd_kafka_t *rk = kafka_producer_create(cfg, NULL, 0, err, sizeof(err));
    static const char *const compact[] = {"cleanup.policy", "compact", NULL};
    kafka_topic_spec_t spec = {topic, 3, 1, compact};
    assert_int_equal(kafka_topics_ensure(rk, &spec, 1, 10000, err, sizeof(err)), 0);
    const rd_kafka_metadata_t *md = NULL;
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    assert_int_equal(rd_kafka_metadata(rk, 0, rkt, &md, 10000), 0);
    assert_int_equal(md->topic_cnt, 1);
    assert_int_equal(md->topics[0].partition_cnt, 3);
    rd_kafka_metadata_destroy(md);
    rd_kafka_topic_destroy(rkt);
    /* A bad spec is refused with a reason. */
    kafka_topic_spec_t bad = {"bad topic name!", 1, 1, NULL};
    assert_int_equal(kafka_topics_ensure(rk, &bad, 1, 10000, err, sizeof(err)), -1);
    assert_true(strlen(err) > 0);
    rd_kafka_destroy(rk);
    config_destroy(cfg);
}

/* The libuv bridge wakes the loop when delivery reports arrive. */
typedef struct uv_state_s {
    rd_kafka_t *rk;
    int delivered;
    kafka_uv_t *ku;
} uv_state_t;

static void on_dr(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    uv_state_t *s = opaque;
    if (!m->err)
        s->delivered++;
}

static void on_ready(void *arg)
{
    uv_state_t *s = arg;
    rd_kafka_poll(s->rk, 0);
    if (s->delivered == 5) {
        kafka_uv_destroy(s->ku);
        s->ku = NULL;
    }
}

static void test_uv_bridge(void **state)
{
    (void)state;
    config_t *cfg = test_config();
    char err[512], topic[128];
    snprintf(topic, sizeof(topic), "%s", testenv_unique("jrp-test-uv"));
    create_topic(cfg, topic, 1);
    uv_state_t s = {0};
    char bs[256];
    snprintf(bs, sizeof(bs), "%s", testenv_kafka_bootstrap());
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    assert_int_equal(rd_kafka_conf_set(conf, "bootstrap.servers", bs, err, sizeof(err)), 0);
    rd_kafka_conf_set_dr_msg_cb(conf, on_dr);
    rd_kafka_conf_set_opaque(conf, &s);
    s.rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
    assert_non_null(s.rk);
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    rd_kafka_queue_t *q = rd_kafka_queue_get_main(s.rk);
    s.ku = kafka_uv_create(&loop, q, on_ready, &s);
    assert_non_null(s.ku);
    produce_n(s.rk, topic, "uv", 0, 5);
    uv_run(&loop, UV_RUN_DEFAULT); /* returns once the bridge closed itself after 5 reports */
    assert_int_equal(s.delivered, 5);
    assert_int_equal(uv_loop_close(&loop), 0);
    rd_kafka_queue_destroy(q);
    rd_kafka_destroy(s.rk);
    config_destroy(cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_transaction_commit_and_abort),
        cmocka_unit_test(test_consume_transform_produce),
        cmocka_unit_test(test_headers),
        cmocka_unit_test(test_topics_ensure_config),
        cmocka_unit_test(test_uv_bridge),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
