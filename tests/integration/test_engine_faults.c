/*
 * Fault injection: the engine in-process against librdkafka's mock cluster, which can produce on
 * demand what a real broker cannot — coordinator errors, a broker going down, requests timing
 * out during commit, fencing. Redis is the real local one. The mock cluster drops transactional
 * offsets and shows aborted records, so these tests assert survival and progress, never
 * exactly-once (that is the real-broker crash test's job).
 */
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "engine.h"
#include "errlist.h"
#include "harness.h"
#include "ids.h"
#include "kafka.h"
#include "rules.h"
#include "rulesync.h"
#include "store.h"
#include "testenv.h"

/* Kafka protocol API keys (not in librdkafka's public headers). */
#define API_INIT_PRODUCER_ID 22
#define API_END_TXN 26
#define API_TXN_OFFSET_COMMIT 28

#define EVENTS 200

typedef struct fx_s {
    rd_kafka_t *host; /* owns the mock cluster */
    rd_kafka_mock_cluster_t *mc;
    config_t *cfg;
    char prefix[96];
    uv_loop_t loop;
    engine_t *eng;
} fx_t;

static void load_rules(fx_t *fx)
{
    char err[512], dir[1024];
    snprintf(dir, sizeof(dir), "%s/deploy/rules", getenv("JRP_ROOT") ? getenv("JRP_ROOT") : ".");
    errlist_t el;
    errlist_init(&el);
    Jrp__V1__RuleSet *rs = rules_load_dir(dir, &el);
    assert_non_null(rs);
    rs->version = 1;
    store_t *st = store_create(fx->cfg, err, sizeof(err));
    assert_non_null(st);
    assert_int_equal(store_rules_put(st, rs, err, sizeof(err)), 0);
    assert_int_equal(store_rules_activate(st, 1, err, sizeof(err)), 0);
    store_destroy(st);
    jrp__v1__rule_set__free_unpacked(rs, NULL);
}

static int setup(void **state)
{
    fx_t *fx = calloc(1, sizeof(*fx));
    char err[512], line[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "log_level", "2", err, sizeof(err));
    fx->host = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
    assert_non_null(fx->host);
    fx->mc = rd_kafka_mock_cluster_new(fx->host, 1);
    assert_non_null(fx->mc);
    snprintf(fx->prefix, sizeof(fx->prefix), "%s", testenv_unique("faults"));
    fx->cfg = config_create();
    const char *settings[][2] = {
        {"kafka.bootstrap.servers", rd_kafka_mock_cluster_bootstraps(fx->mc)},
        {"kafka.log_level", "2"},
        {"redis.url", testenv_redis_url()},
        {"engine.instance", fx->prefix},
        {"engine.group", fx->prefix},
        {"topic.partitions", "2"},
    };
    for (size_t i = 0; i < sizeof(settings) / sizeof(settings[0]); i++)
        assert_int_equal(
            config_set(fx->cfg, settings[i][0], settings[i][1], "test", err, sizeof(err)), 0);
    snprintf(line, sizeof(line), "%s.", fx->prefix);
    assert_int_equal(config_set(fx->cfg, "topic.prefix", line, "test", err, sizeof(err)), 0);
    snprintf(line, sizeof(line), "%s:", fx->prefix);
    assert_int_equal(config_set(fx->cfg, "redis.prefix", line, "test", err, sizeof(err)), 0);
    /* The mock cluster has no CreateTopics: make every topic beforehand. */
    static const char *const suffixes[] = {"events",
                                           "state",
                                           "decisions",
                                           "alerts",
                                           "dlq",
                                           "feedback",
                                           "checks",
                                           "rules",
                                           "tokens",
                                           "actions.transport",
                                           "actions.finance",
                                           "actions.ndrc",
                                           "actions.market",
                                           "actions.housing",
                                           "actions.public_security",
                                           "actions.natural_resources",
                                           "actions.pboc"};
    for (size_t i = 0; i < sizeof(suffixes) / sizeof(suffixes[0]); i++) {
        char topic[256];
        config_topic(fx->cfg, suffixes[i], topic, sizeof(topic));
        assert_int_equal(rd_kafka_mock_topic_create(fx->mc, topic, 2, 1), 0);
    }
    load_rules(fx);
    assert_int_equal(uv_loop_init(&fx->loop), 0);
    *state = fx;
    return 0;
}

static void on_stopped(void *arg)
{
    *(int *)arg = 1;
}

static int teardown(void **state)
{
    fx_t *fx = *state;
    if (fx->eng) {
        int stopped = 0;
        engine_stop(fx->eng, on_stopped, &stopped); /* also after a fatal error */
        for (int i = 0; i < 200 && !stopped; i++)
            uv_run(&fx->loop, UV_RUN_NOWAIT);
        assert_true(stopped);
        engine_destroy(fx->eng);
    }
    uv_run(&fx->loop, UV_RUN_NOWAIT);
    uv_loop_close(&fx->loop);
    config_destroy(fx->cfg);
    rd_kafka_mock_cluster_destroy(fx->mc);
    rd_kafka_destroy(fx->host);
    free(fx);
    return 0;
}

static void send_events(fx_t *fx, int from, int n)
{
    char err[512], topic[256], key[64], id[19], eid[32];
    config_topic(fx->cfg, "events", topic, sizeof(topic));
    rd_kafka_t *p = kafka_producer_create(fx->cfg, NULL, 0, err, sizeof(err));
    assert_non_null(p);
    int64_t now = harness_now_ms();
    for (int i = from; i < from + n; i++) {
        char buf[32];
        snprintf(buf, sizeof(buf), "91350100%09d", i);
        memcpy(id, buf, 17);
        id[17] = ids_credit_code_check_char(id);
        id[18] = '\0';
        snprintf(eid, sizeof(eid), "f-%d", i);
        Jrp__V1__CreditEvent *ev = harness_event(eid, JRP__V1__EVENT_KIND__EVENT_KIND_LISTED,
                                                 JRP__V1__SUBJECT_TYPE__SUBJECT_TYPE_ENTERPRISE, id,
                                                 "black.overload", now);
        uint8_t out[1024];
        size_t len = jrp__v1__credit_event__pack(ev, out);
        snprintf(key, sizeof(key), "enterprise:%s", id);
        assert_int_equal(kafka_produce(p, topic, RD_KAFKA_PARTITION_UA, key, strlen(key), out, len,
                                       kafka_headers("jrp.v1.CreditEvent", NULL), NULL),
                         0);
        jrp__v1__credit_event__free_unpacked(ev, NULL);
    }
    assert_int_equal(rd_kafka_flush(p, 10000), 0);
    rd_kafka_destroy(p);
}

static void start_engine(fx_t *fx)
{
    char err[512];
    fx->eng = engine_create(&fx->loop, fx->cfg, err, sizeof(err));
    if (!fx->eng)
        fail_msg("engine_create: %s", err);
    assert_int_equal(engine_start(fx->eng), 0);
}

/* Run the loop until the engine committed at least n events, it failed, or timeout. */
static engine_stats_t run_until(fx_t *fx, uint64_t n, int timeout_ms)
{
    engine_stats_t st;
    int64_t end = harness_now_ms() + timeout_ms;
    do {
        uv_run(&fx->loop, UV_RUN_ONCE);
        engine_get_stats(fx->eng, &st);
    } while (st.events < n && !engine_failed(fx->eng) && harness_now_ms() < end);
    return st;
}

static void test_coordinator_errors_on_commit(void **state)
{
    fx_t *fx = *state;
    send_events(fx, 0, EVENTS);
    /* EndTxn fails three times with errors a coordinator gives while moving or loading. */
    rd_kafka_mock_push_request_errors(
        fx->mc, API_END_TXN, 3, RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE,
        RD_KAFKA_RESP_ERR_NOT_COORDINATOR, RD_KAFKA_RESP_ERR_CONCURRENT_TRANSACTIONS);
    rd_kafka_mock_push_request_errors(fx->mc, API_TXN_OFFSET_COMMIT, 2,
                                      RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS,
                                      RD_KAFKA_RESP_ERR_NOT_COORDINATOR);
    start_engine(fx);
    engine_stats_t st = run_until(fx, EVENTS, 60000);
    assert_false(engine_failed(fx->eng));
    assert_true(st.events >= EVENTS);
    assert_true(st.batches >= 1);
    print_message("committed %llu events in %llu transactions, %llu aborts\n",
                  (unsigned long long)st.events, (unsigned long long)st.batches,
                  (unsigned long long)st.aborts);
}

static void test_broker_down_and_back(void **state)
{
    fx_t *fx = *state;
    send_events(fx, 0, EVENTS);
    start_engine(fx);
    engine_stats_t st = run_until(fx, 1, 60000);
    assert_true(st.events >= 1);
    /* The only broker goes away for three seconds while more events wait. */
    rd_kafka_mock_broker_set_down(fx->mc, 1);
    int64_t until = harness_now_ms() + 3000;
    while (harness_now_ms() < until)
        uv_run(&fx->loop, UV_RUN_ONCE);
    rd_kafka_mock_broker_set_up(fx->mc, 1);
    send_events(fx, EVENTS, EVENTS);
    st = run_until(fx, 2 * EVENTS, 90000);
    assert_false(engine_failed(fx->eng));
    assert_true(st.events >= 2 * EVENTS);
}

static void test_request_timeouts_during_commit(void **state)
{
    fx_t *fx = *state;
    char err[256];
    /* Requests time out after 2 s; EndTxn answers take 3 s twice. */
    assert_int_equal(
        config_set(fx->cfg, "kafka.socket.timeout.ms", "2000", "test", err, sizeof(err)), 0);
    send_events(fx, 0, EVENTS);
    rd_kafka_mock_broker_push_request_error_rtts(fx->mc, 1, API_END_TXN, 2,
                                                 RD_KAFKA_RESP_ERR_NO_ERROR, 3000,
                                                 RD_KAFKA_RESP_ERR_NO_ERROR, 3000);
    start_engine(fx);
    engine_stats_t st = run_until(fx, EVENTS, 120000);
    assert_false(engine_failed(fx->eng));
    assert_true(st.events >= EVENTS);
}

static void test_fenced_producer_is_fatal(void **state)
{
    fx_t *fx = *state;
    send_events(fx, 0, EVENTS);
    /* Another producer took our transactional id: the engine must stop, not carry on. */
    rd_kafka_mock_push_request_errors(fx->mc, API_END_TXN, 1, RD_KAFKA_RESP_ERR_PRODUCER_FENCED);
    start_engine(fx);
    run_until(fx, EVENTS, 60000);
    assert_true(engine_failed(fx->eng));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_coordinator_errors_on_commit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_broker_down_and_back, setup, teardown),
        cmocka_unit_test_setup_teardown(test_request_timeouts_during_commit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fenced_producer_is_fatal, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
