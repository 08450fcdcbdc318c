/*
 * kafka: librdkafka clients, produce with headers, transactions, topic creation and the libuv
 * bridge. Error classes follow librdkafka's examples/transactions.c.
 */
#include "kafka.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int64_t kafka__now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int kafka__set(rd_kafka_conf_t *conf, const char *k, const char *v, char *errstr,
                      size_t errstr_size)
{
    return rd_kafka_conf_set(conf, k, v, errstr, errstr_size) == RD_KAFKA_CONF_OK ? 0 : -1;
}

/* jrp's defaults first, then the caller's (extra), then the configured kafka.* keys, which may
 * override them both; then what correctness depends on (forced). A NULL value is skipped. */
static rd_kafka_conf_t *kafka__conf(const config_t *cfg, const char *const *defaults,
                                    const char *const *extra, const char *const *forced,
                                    char *errstr, size_t errstr_size)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (!conf) {
        snprintf(errstr, errstr_size, "out of memory");
        return NULL;
    }
    for (size_t i = 0; defaults && defaults[i]; i += 2)
        if (defaults[i + 1] && kafka__set(conf, defaults[i], defaults[i + 1], errstr, errstr_size))
            goto err;
    for (size_t i = 0; extra && extra[i]; i += 2)
        if (extra[i + 1] && kafka__set(conf, extra[i], extra[i + 1], errstr, errstr_size))
            goto err;
    if (config_apply_kafka(cfg, conf, errstr, errstr_size))
        goto err;
    /* What correctness depends on is set last, so a config file cannot weaken it. */
    for (size_t i = 0; forced && forced[i]; i += 2)
        if (forced[i + 1] && kafka__set(conf, forced[i], forced[i + 1], errstr, errstr_size))
            goto err;
    return conf;
err:
    rd_kafka_conf_destroy(conf);
    return NULL;
}

rd_kafka_conf_t *kafka_producer_conf(const config_t *cfg, const char *const *extra,
                                     const char *transactional_id, int transaction_timeout_ms,
                                     char *errstr, size_t errstr_size)
{
    char tto[24];
    snprintf(tto, sizeof(tto), "%d", transaction_timeout_ms > 0 ? transaction_timeout_ms : 60000);
    /* A transactional producer retries sooner than librdkafka's 100 ms: the first requests of a
     * transaction are refused (CONCURRENT_TRANSACTIONS) until the broker has finished the previous
     * one, which takes a few ms to a few tens of ms. Last, so that it is absent otherwise. */
    /* clang-format off */
    const char *const defaults[] = {
        "linger.ms", "5",
        "compression.type", "lz4",
        transactional_id ? "retry.backoff.ms" : NULL, "10",
        NULL};
    /* murmur2 places keyed records on the partitions the Java client would choose: every
     * producer of a topic must agree, or a subject's records lose their order. */
    const char *const forced[] = {
        "enable.idempotence", "true",
        "acks", "all",
        "partitioner", "murmur2_random",
        "transactional.id", transactional_id,
        "transaction.timeout.ms", transactional_id ? tto : NULL,
        NULL};
    /* clang-format on */
    return kafka__conf(cfg, defaults, extra, forced, errstr, errstr_size);
}

int kafka_init_transactions(rd_kafka_t *rk, int timeout_ms, char *errstr, size_t errstr_size)
{
    rd_kafka_error_t *error = rd_kafka_init_transactions(rk, timeout_ms);
    if (!error)
        return 0;
    snprintf(errstr, errstr_size, "init_transactions: %s", rd_kafka_error_string(error));
    rd_kafka_error_destroy(error);
    return -1;
}

rd_kafka_t *kafka_producer_create(const config_t *cfg, const char *transactional_id,
                                  int transaction_timeout_ms, char *errstr, size_t errstr_size)
{
    rd_kafka_conf_t *conf = kafka_producer_conf(cfg, NULL, transactional_id, transaction_timeout_ms,
                                                errstr, errstr_size);
    if (!conf)
        return NULL;
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, errstr_size);
    if (!rk) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    conf = NULL; /* now owned by rk */
    if (transactional_id && kafka_init_transactions(rk, 30000, errstr, errstr_size)) {
        rd_kafka_destroy(rk);
        return NULL;
    }
    return rk;
}

rd_kafka_conf_t *kafka_consumer_conf(const config_t *cfg, const char *const *extra,
                                     const char *group_id, const char *group_instance_id,
                                     int read_uncommitted, char *errstr, size_t errstr_size)
{
    const char *const defaults[] = {"auto.offset.reset", "earliest", "session.timeout.ms", "10000",
                                    "enable.partition.eof", "false",
                                    /* Prefetch bounded by bytes and by count: librdkafka's
                                     * defaults (64 MB queued, 50 MB per fetch, 100,000 records)
                                     * held tens of MB of a backlog in memory for no speed; the
                                     * byte bound counts payload only, and a small record costs
                                     * ~270 bytes more (docs/engine.md, "Memory"). */
                                    "fetch.max.bytes", "1048576", "max.partition.fetch.bytes",
                                    "131072", "queued.max.messages.kbytes", "4096",
                                    "queued.min.messages", "20000", NULL};
    /* clang-format off */
    const char *const forced[] = {
        "group.id", group_id,
        "group.instance.id", group_instance_id,
        "enable.auto.commit", "false",
        "enable.auto.offset.store", "false",
        "partition.assignment.strategy", "range,roundrobin",
        "isolation.level", read_uncommitted ? "read_uncommitted" : "read_committed",
        NULL};
    /* clang-format on */
    return kafka__conf(cfg, defaults, extra, forced, errstr, errstr_size);
}

/* A consumer from conf (consumed), with its main queue redirected to the consumer queue. */
static rd_kafka_t *kafka__consumer_from(rd_kafka_conf_t *conf, char *errstr, size_t errstr_size)
{
    if (!conf)
        return NULL;
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, errstr_size);
    if (!rk) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    rd_kafka_poll_set_consumer(rk);
    return rk;
}

rd_kafka_t *kafka_consumer_create(const config_t *cfg, const char *group_id,
                                  const char *group_instance_id, int read_uncommitted, char *errstr,
                                  size_t errstr_size)
{
    return kafka__consumer_from(kafka_consumer_conf(cfg, NULL, group_id, group_instance_id,
                                                    read_uncommitted, errstr, errstr_size),
                                errstr, errstr_size);
}

rd_kafka_t *kafka_reader_create(const config_t *cfg, char *errstr, size_t errstr_size)
{
    char group[64];
    snprintf(group, sizeof(group), "jrp-reader-%d-%ld", (int)getpid(), (long)time(NULL));
    /* clang-format off */
    const char *const forced[] = {
        "group.id", group,
        "enable.auto.commit", "false",
        "enable.auto.offset.store", "false",
        "enable.partition.eof", "true",
        "isolation.level", "read_committed",
        NULL};
    /* clang-format on */
    /* A reader scans to an end it knows. At the end of a transactional partition (a commit
     * marker last) the end shows only when a fetch comes back empty, after fetch.wait.max.ms:
     * librdkafka's 500 ms was half a second idle per scan. A start moved by retention while
     * the scan begins is read from the new start, never skipped to the end. */
    const char *const defaults[] = {"fetch.wait.max.ms", "50", "auto.offset.reset", "earliest",
                                    NULL};
    return kafka__consumer_from(kafka__conf(cfg, defaults, NULL, forced, errstr, errstr_size),
                                errstr, errstr_size);
}

rd_kafka_resp_err_t kafka_watermarks(rd_kafka_t *rk, const char *topic, int32_t partition,
                                     int64_t *lo, int64_t *hi, int timeout_ms)
{
    int64_t deadline = kafka__now_ms() + timeout_ms;
    for (;;) {
        int left = (int)(deadline - kafka__now_ms());
        rd_kafka_resp_err_t err =
            rd_kafka_query_watermark_offsets(rk, topic, partition, lo, hi, left > 0 ? left : 1);
        int transient = err == RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION ||
                        err == RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE ||
                        err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART ||
                        err == RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION;
        if (!transient || kafka__now_ms() + 100 >= deadline)
            return err;
        struct timespec pause = {0, 100 * 1000000L};
        nanosleep(&pause, NULL);
    }
}

int kafka_assign_explicit(rd_kafka_t *rk, rd_kafka_topic_partition_list_t *parts, int timeout_ms,
                          char *errstr, size_t errstr_size)
{
    for (int i = 0; i < parts->cnt; i++) {
        rd_kafka_topic_partition_t *p = &parts->elems[i];
        if (p->offset != RD_KAFKA_OFFSET_BEGINNING)
            continue;
        int64_t lo = 0, hi = 0;
        rd_kafka_resp_err_t err =
            kafka_watermarks(rk, p->topic, p->partition, &lo, &hi, timeout_ms);
        if (err) {
            snprintf(errstr, errstr_size, "offsets of %s [%d]: %s", p->topic, (int)p->partition,
                     rd_kafka_err2str(err));
            return -1;
        }
        p->offset = lo;
    }
    rd_kafka_resp_err_t err = rd_kafka_assign(rk, parts);
    if (err) {
        snprintf(errstr, errstr_size, "assign: %s", rd_kafka_err2str(err));
        return -1;
    }
    return 0;
}

static void kafka__one_delivered(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    int *state = opaque;
    *state = m->err ? (int)m->err : -1; /* -1: delivered */
}

int kafka_produce_one(const config_t *cfg, const char *topic, const char *key, const void *value,
                      size_t value_len, const char *schema, int timeout_ms, char *errstr,
                      size_t errstr_size)
{
    rd_kafka_conf_t *conf = kafka_producer_conf(cfg, NULL, NULL, 0, errstr, errstr_size);
    if (!conf)
        return -1;
    int state = 0; /* 0: no report yet; -1: delivered; > 0: the error */
    rd_kafka_conf_set_dr_msg_cb(conf, kafka__one_delivered);
    rd_kafka_conf_set_opaque(conf, &state);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, errstr_size);
    if (!rk) {
        rd_kafka_conf_destroy(conf);
        return -1;
    }
    int rc = -1;
    rd_kafka_resp_err_t err = kafka_produce(rk, topic, RD_KAFKA_PARTITION_UA, key, strlen(key),
                                            value, value_len, kafka_headers(schema, NULL), NULL);
    if (err)
        snprintf(errstr, errstr_size, "produce to %s: %s", topic, rd_kafka_err2str(err));
    else if (rd_kafka_flush(rk, timeout_ms) != RD_KAFKA_RESP_ERR_NO_ERROR || state == 0)
        snprintf(errstr, errstr_size, "%s: not acknowledged within %d ms", topic, timeout_ms);
    else if (state > 0)
        snprintf(errstr, errstr_size, "%s: %s", topic,
                 rd_kafka_err2str((rd_kafka_resp_err_t)state));
    else
        rc = 0;
    rd_kafka_destroy(rk);
    return rc;
}

rd_kafka_headers_t *kafka_headers(const char *schema, const char *traceparent)
{
    rd_kafka_headers_t *hdrs = rd_kafka_headers_new(2);
    rd_kafka_header_add(hdrs, "jrp-schema", -1, schema, -1);
    if (traceparent && *traceparent)
        rd_kafka_header_add(hdrs, "traceparent", -1, traceparent, -1);
    return hdrs;
}

rd_kafka_resp_err_t kafka_produce(rd_kafka_t *rk, const char *topic, int32_t partition,
                                  const void *key, size_t key_len, const void *value,
                                  size_t value_len, rd_kafka_headers_t *hdrs, void *msg_opaque)
{
    rd_kafka_resp_err_t err = rd_kafka_producev(
        rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(partition),
        RD_KAFKA_V_KEY((void *)key, key_len), RD_KAFKA_V_VALUE((void *)value, value_len),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(hdrs),
        RD_KAFKA_V_OPAQUE(msg_opaque), RD_KAFKA_V_END);
    if (err && hdrs)
        rd_kafka_headers_destroy(hdrs); /* not taken by librdkafka on failure */
    return err;
}

kafka_err_class_t kafka_error_classify(rd_kafka_error_t *error, char *errstr, size_t errstr_size)
{
    if (!error)
        return KAFKA_ERR_OK;
    snprintf(errstr, errstr_size, "%s", rd_kafka_error_string(error));
    kafka_err_class_t c = KAFKA_ERR_ABORT;
    if (rd_kafka_error_is_fatal(error))
        c = KAFKA_ERR_FATAL;
    else if (rd_kafka_error_txn_requires_abort(error))
        c = KAFKA_ERR_ABORT;
    else if (rd_kafka_error_is_retriable(error))
        c = KAFKA_ERR_RETRIABLE;
    rd_kafka_error_destroy(error);
    return c;
}

/* send_offsets_to_transaction (offsets given) or commit_transaction (offsets NULL), retried while
 * the error is retriable and deadline (kafka__now_ms) has not passed; a retriable error left at
 * the deadline counts as one to abort on. */
static kafka_err_class_t kafka__txn_step(rd_kafka_t *producer,
                                         const rd_kafka_topic_partition_list_t *offsets,
                                         const rd_kafka_consumer_group_metadata_t *cgmd,
                                         int64_t deadline, char *errstr, size_t errstr_size)
{
    kafka_err_class_t c;
    do {
        int left = (int)(deadline - kafka__now_ms());
        if (left < 1)
            left = 1;
        c = kafka_error_classify(
            offsets ? rd_kafka_send_offsets_to_transaction(producer, offsets, cgmd, left)
                    : rd_kafka_commit_transaction(producer, left),
            errstr, errstr_size);
    } while (c == KAFKA_ERR_RETRIABLE && kafka__now_ms() < deadline);
    return c == KAFKA_ERR_RETRIABLE ? KAFKA_ERR_ABORT : c;
}

kafka_err_class_t kafka_txn_send_offsets(rd_kafka_t *producer,
                                         const rd_kafka_topic_partition_list_t *offsets,
                                         const rd_kafka_consumer_group_metadata_t *cgmd,
                                         int timeout_ms, char *errstr, size_t errstr_size)
{
    return kafka__txn_step(producer, offsets, cgmd, kafka__now_ms() + timeout_ms, errstr,
                           errstr_size);
}

kafka_err_class_t kafka_txn_commit_offsets(rd_kafka_t *producer,
                                           const rd_kafka_topic_partition_list_t *offsets,
                                           const rd_kafka_consumer_group_metadata_t *cgmd,
                                           int timeout_ms, char *errstr, size_t errstr_size)
{
    int64_t deadline = kafka__now_ms() + timeout_ms;
    if (offsets && cgmd) {
        kafka_err_class_t c =
            kafka__txn_step(producer, offsets, cgmd, deadline, errstr, errstr_size);
        if (c != KAFKA_ERR_OK)
            return c;
    }
    return kafka__txn_step(producer, NULL, NULL, deadline, errstr, errstr_size);
}

kafka_err_class_t kafka_txn_commit(rd_kafka_t *producer, rd_kafka_t *consumer, int timeout_ms,
                                   char *errstr, size_t errstr_size)
{
    if (!consumer)
        return kafka_txn_commit_offsets(producer, NULL, NULL, timeout_ms, errstr, errstr_size);
    rd_kafka_topic_partition_list_t *offsets = NULL;
    rd_kafka_resp_err_t err = rd_kafka_assignment(consumer, &offsets);
    if (!err)
        err = rd_kafka_position(consumer, offsets);
    if (err) {
        snprintf(errstr, errstr_size, "consumer position: %s", rd_kafka_err2str(err));
        if (offsets)
            rd_kafka_topic_partition_list_destroy(offsets);
        return KAFKA_ERR_ABORT;
    }
    rd_kafka_consumer_group_metadata_t *cgmd = rd_kafka_consumer_group_metadata(consumer);
    kafka_err_class_t c =
        kafka_txn_commit_offsets(producer, offsets, cgmd, timeout_ms, errstr, errstr_size);
    rd_kafka_consumer_group_metadata_destroy(cgmd);
    rd_kafka_topic_partition_list_destroy(offsets);
    return c;
}

kafka_err_class_t kafka_txn_abort(rd_kafka_t *producer, int timeout_ms, char *errstr,
                                  size_t errstr_size)
{
    int64_t deadline = kafka__now_ms() + timeout_ms;
    kafka_err_class_t c;
    do {
        int left = (int)(deadline - kafka__now_ms());
        c = kafka_error_classify(rd_kafka_abort_transaction(producer, left > 0 ? left : 1), errstr,
                                 errstr_size);
    } while (c == KAFKA_ERR_RETRIABLE && kafka__now_ms() < deadline);
    return c == KAFKA_ERR_OK ? KAFKA_ERR_OK : KAFKA_ERR_FATAL;
}

int kafka_rewind_to_committed(rd_kafka_t *consumer, int timeout_ms, char *errstr,
                              size_t errstr_size)
{
    rd_kafka_topic_partition_list_t *parts = NULL;
    rd_kafka_resp_err_t err = rd_kafka_assignment(consumer, &parts);
    if (!err)
        err = rd_kafka_committed(consumer, parts, timeout_ms);
    for (int i = 0; !err && i < parts->cnt; i++) {
        rd_kafka_topic_partition_t *p = &parts->elems[i];
        /* No committed offset yet: start from the beginning, as auto.offset.reset does. */
        if (p->offset < 0)
            p->offset = RD_KAFKA_OFFSET_BEGINNING;
    }
    if (!err) {
        rd_kafka_error_t *error = rd_kafka_seek_partitions(consumer, parts, timeout_ms);
        if (error) {
            snprintf(errstr, errstr_size, "seek: %s", rd_kafka_error_string(error));
            rd_kafka_error_destroy(error);
            rd_kafka_topic_partition_list_destroy(parts);
            return -1;
        }
        for (int i = 0; i < parts->cnt; i++)
            if (parts->elems[i].err) {
                err = parts->elems[i].err;
                break;
            }
    }
    if (parts)
        rd_kafka_topic_partition_list_destroy(parts);
    if (err) {
        snprintf(errstr, errstr_size, "rewind to committed offsets: %s", rd_kafka_err2str(err));
        return -1;
    }
    return 0;
}

/* Which of the n specs name topics that do not exist yet? Fills missing[] (indexes). */
static int kafka__missing_topics(rd_kafka_t *rk, const kafka_topic_spec_t *specs, size_t n,
                                 int timeout_ms, size_t *missing, size_t *n_missing, char *errstr,
                                 size_t errstr_size)
{
    const rd_kafka_metadata_t *md = NULL;
    rd_kafka_resp_err_t err = rd_kafka_metadata(rk, 1, NULL, &md, timeout_ms);
    if (err) {
        snprintf(errstr, errstr_size, "metadata: %s", rd_kafka_err2str(err));
        return -1;
    }
    *n_missing = 0;
    for (size_t i = 0; i < n; i++) {
        int found = 0;
        for (int t = 0; t < md->topic_cnt && !found; t++)
            found = !md->topics[t].err && !strcmp(md->topics[t].topic, specs[i].name);
        if (!found)
            missing[(*n_missing)++] = i;
    }
    rd_kafka_metadata_destroy(md);
    return 0;
}

int kafka_topics_ensure(rd_kafka_t *rk, const kafka_topic_spec_t *specs, size_t n, int timeout_ms,
                        char *errstr, size_t errstr_size)
{
    size_t *missing = calloc(n ? n : 1, sizeof(size_t)), n_missing = 0;
    rd_kafka_NewTopic_t **nts = calloc(n ? n : 1, sizeof(*nts));
    rd_kafka_queue_t *q = NULL;
    rd_kafka_AdminOptions_t *opts = NULL;
    rd_kafka_event_t *ev = NULL;
    int rc = -1;
    if (!nts || !missing) {
        snprintf(errstr, errstr_size, "out of memory");
        goto done;
    }
    /* Only what is missing is created: fewer admin requests, and clusters without CreateTopics
     * (librdkafka's mock cluster) work when the topics were made beforehand. */
    if (kafka__missing_topics(rk, specs, n, timeout_ms, missing, &n_missing, errstr, errstr_size))
        goto done;
    if (n_missing == 0) {
        rc = 0;
        goto done;
    }
    q = rd_kafka_queue_new(rk);
    opts = rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_CREATETOPICS);
    if (!q || !opts) {
        snprintf(errstr, errstr_size, "out of memory");
        goto done;
    }
    rd_kafka_AdminOptions_set_operation_timeout(opts, timeout_ms, errstr, errstr_size);
    rd_kafka_AdminOptions_set_request_timeout(opts, timeout_ms, errstr, errstr_size);
    for (size_t k = 0; k < n_missing; k++) {
        const kafka_topic_spec_t *spec = &specs[missing[k]];
        nts[k] = rd_kafka_NewTopic_new(spec->name, spec->partitions, spec->replication_factor,
                                       errstr, errstr_size);
        if (!nts[k])
            goto done;
        for (size_t j = 0; spec->config && spec->config[j]; j += 2)
            if (rd_kafka_NewTopic_set_config(nts[k], spec->config[j], spec->config[j + 1])) {
                snprintf(errstr, errstr_size, "topic %s: bad config %s", spec->name,
                         spec->config[j]);
                goto done;
            }
    }
    rd_kafka_CreateTopics(rk, nts, n_missing, opts, q);
    ev = rd_kafka_queue_poll(q, timeout_ms + 5000);
    if (!ev) {
        snprintf(errstr, errstr_size, "create topics: no answer within %d ms", timeout_ms + 5000);
        goto done;
    }
    if (rd_kafka_event_error(ev)) {
        snprintf(errstr, errstr_size, "create topics: %s", rd_kafka_event_error_string(ev));
        goto done;
    }
    size_t cnt = 0;
    const rd_kafka_topic_result_t **res =
        rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev), &cnt);
    for (size_t i = 0; i < cnt; i++) {
        rd_kafka_resp_err_t err = rd_kafka_topic_result_error(res[i]);
        if (err && err != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
            snprintf(errstr, errstr_size, "create topic %s: %s", rd_kafka_topic_result_name(res[i]),
                     rd_kafka_topic_result_error_string(res[i]));
            goto done;
        }
    }
    rc = 0;
done:
    if (ev)
        rd_kafka_event_destroy(ev);
    for (size_t k = 0; nts && k < n_missing; k++)
        if (nts[k])
            rd_kafka_NewTopic_destroy(nts[k]);
    free(nts);
    free(missing);
    if (opts)
        rd_kafka_AdminOptions_destroy(opts);
    if (q)
        rd_kafka_queue_destroy(q);
    return rc;
}

/* --- libuv bridge ------------------------------------------------------------------------------
 */

struct kafka_uv_s {
    uv_poll_t poll;
    int fds[2];
    rd_kafka_queue_t *queue;
    void (*on_ready)(void *arg);
    void *arg;
};

static void kafka__uv_on_poll(uv_poll_t *handle, int status, int events)
{
    kafka_uv_t *ku = handle->data;
    char buf[256];
    (void)events;
    if (status < 0)
        return;
    while (read(ku->fds[0], buf, sizeof(buf)) > 0)
        ; /* drain: one wake-up, and on_ready polls everything queued */
    ku->on_ready(ku->arg);
}

kafka_uv_t *kafka_uv_create(uv_loop_t *loop, rd_kafka_queue_t *queue, void (*on_ready)(void *arg),
                            void *arg)
{
    kafka_uv_t *ku = calloc(1, sizeof(*ku));
    if (!ku)
        return NULL;
    if (pipe2(ku->fds, O_NONBLOCK | O_CLOEXEC)) {
        free(ku);
        return NULL;
    }
    ku->queue = queue;
    ku->on_ready = on_ready;
    ku->arg = arg;
    if (uv_poll_init(loop, &ku->poll, ku->fds[0])) {
        close(ku->fds[0]);
        close(ku->fds[1]);
        free(ku);
        return NULL;
    }
    ku->poll.data = ku;
    uv_poll_start(&ku->poll, UV_READABLE, kafka__uv_on_poll);
    rd_kafka_queue_io_event_enable(queue, ku->fds[1], "1", 1);
    /* librdkafka writes only when the queue goes from empty to non-empty: events queued before
     * this call would never wake the loop. One byte of our own makes on_ready run once now. */
    if (write(ku->fds[1], "1", 1) < 0) {
        /* the pipe is non-blocking and fresh: cannot be full; nothing else can go wrong */
    }
    return ku;
}

void kafka_uv_kick(kafka_uv_t *ku)
{
    if (ku && write(ku->fds[1], "1", 1) < 0) {
        /* full: a wake-up is pending already */
    }
}

static void kafka__uv_on_close(uv_handle_t *handle)
{
    kafka_uv_t *ku = handle->data;
    close(ku->fds[0]);
    close(ku->fds[1]);
    free(ku);
}

void kafka_uv_destroy(kafka_uv_t *ku)
{
    if (!ku)
        return;
    rd_kafka_queue_io_event_enable(ku->queue, -1, NULL, 0);
    uv_poll_stop(&ku->poll);
    uv_close((uv_handle_t *)&ku->poll, kafka__uv_on_close);
}
