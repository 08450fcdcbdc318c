/*
 * topicscan: one pass over a topic with a reader (read_committed, assign only). The end of each
 * partition is its high watermark at the start, or the end-of-partition event, whichever comes
 * first: records appended during the scan may or may not be seen.
 */
#include "topicscan.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kafka.h"

#define TOPICSCAN_TIMEOUT_MS 15000 /* metadata and offset requests */

static int64_t topicscan__now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int32_t topicscan_partitions(rd_kafka_t *rk, const char *topic, char *errstr, size_t errstr_size)
{
    const rd_kafka_metadata_t *md = NULL;
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    if (!rkt) {
        snprintf(errstr, errstr_size, "topic %s: %s", topic,
                 rd_kafka_err2str(rd_kafka_last_error()));
        return -1;
    }
    rd_kafka_resp_err_t err = rd_kafka_metadata(rk, 0, rkt, &md, TOPICSCAN_TIMEOUT_MS);
    rd_kafka_topic_destroy(rkt);
    int32_t n = -1;
    if (err) {
        snprintf(errstr, errstr_size, "metadata of %s: %s", topic, rd_kafka_err2str(err));
    } else if (md->topic_cnt != 1 || md->topics[0].err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) {
        n = 0;
    } else if (md->topics[0].err) {
        snprintf(errstr, errstr_size, "metadata of %s: %s", topic,
                 rd_kafka_err2str(md->topics[0].err));
    } else {
        n = md->topics[0].partition_cnt;
    }
    if (md)
        rd_kafka_metadata_destroy(md);
    return n;
}

/* Fill parts with where each partition starts and ends[p] with its end; a partition with
 * nothing to read gets no entry. 0 or -1. */
static int topicscan__plan(rd_kafka_t *c, const char *topic, int32_t n, const topicscan_opts_t *o,
                           rd_kafka_topic_partition_list_t *parts, int64_t *ends, char *errstr,
                           size_t errstr_size)
{
    rd_kafka_topic_partition_list_t *times = NULL;
    int rc = -1;
    for (int32_t p = 0; p < n; p++) {
        ends[p] = -1;
        if (o->partition >= 0 && p != o->partition)
            continue;
        int64_t lo = 0, hi = 0;
        rd_kafka_resp_err_t err = kafka_watermarks(c, topic, p, &lo, &hi, TOPICSCAN_TIMEOUT_MS);
        if (err) {
            snprintf(errstr, errstr_size, "offsets of %s [%d]: %s", topic, (int)p,
                     rd_kafka_err2str(err));
            goto done;
        }
        int64_t from = o->partition >= 0 && o->from > lo ? o->from : lo;
        if (from >= hi)
            continue;
        ends[p] = hi;
        rd_kafka_topic_partition_list_add(parts, topic, p)->offset = from;
    }
    if (o->since_ms > 0 && parts->cnt) {
        times = rd_kafka_topic_partition_list_copy(parts);
        for (int i = 0; i < times->cnt; i++)
            times->elems[i].offset = o->since_ms;
        rd_kafka_resp_err_t err = rd_kafka_offsets_for_times(c, times, TOPICSCAN_TIMEOUT_MS);
        if (err) {
            snprintf(errstr, errstr_size, "offsets of %s by time: %s", topic,
                     rd_kafka_err2str(err));
            goto done;
        }
        for (int i = 0; i < times->cnt; i++) {
            rd_kafka_topic_partition_t *t = &times->elems[i];
            if (t->err) {
                snprintf(errstr, errstr_size, "offsets of %s [%d] by time: %s", topic,
                         (int)t->partition, rd_kafka_err2str(t->err));
                goto done;
            }
            /* -1: no record at or after the time in this partition. */
            if (t->offset < 0 || t->offset >= ends[t->partition])
                ends[t->partition] = -1;
            else if (t->offset > parts->elems[i].offset)
                parts->elems[i].offset = t->offset;
        }
        for (int i = parts->cnt - 1; i >= 0; i--)
            if (ends[parts->elems[i].partition] < 0)
                rd_kafka_topic_partition_list_del_by_idx(parts, i);
    }
    rc = 0;
done:
    if (times)
        rd_kafka_topic_partition_list_destroy(times);
    return rc;
}

int topicscan_run(const config_t *cfg, const char *topic, const topicscan_opts_t *opts,
                  topicscan_cb *cb, void *arg, int32_t *n_partitions, char *errstr,
                  size_t errstr_size)
{
    topicscan_opts_t o = TOPICSCAN_OPTS_INIT;
    if (opts)
        o = *opts;
    if (o.idle_ms <= 0)
        o.idle_ms = 60000;
    if (n_partitions)
        *n_partitions = 0;
    rd_kafka_t *c = kafka_reader_create(cfg, errstr, errstr_size);
    if (!c)
        return -1;
    rd_kafka_topic_partition_list_t *parts = NULL;
    int64_t *ends = NULL;
    char *done = NULL;
    int rc = -1;
    int32_t n = topicscan_partitions(c, topic, errstr, errstr_size);
    if (n <= 0) {
        rc = n == 0 ? 1 : -1;
        goto out;
    }
    if (n_partitions)
        *n_partitions = n;
    parts = rd_kafka_topic_partition_list_new(n);
    ends = calloc((size_t)n, sizeof(*ends));
    done = calloc((size_t)n, 1);
    if (!parts || !ends || !done) {
        snprintf(errstr, errstr_size, "out of memory");
        goto out;
    }
    if (topicscan__plan(c, topic, n, &o, parts, ends, errstr, errstr_size))
        goto out;
    int remaining = parts->cnt;
    if (remaining == 0) {
        rc = 0;
        goto out;
    }
    rd_kafka_resp_err_t err = rd_kafka_assign(c, parts);
    if (err) {
        snprintf(errstr, errstr_size, "assign %s: %s", topic, rd_kafka_err2str(err));
        goto out;
    }
    int64_t seen = 0, last = topicscan__now_ms();
    rc = 0;
    while (remaining > 0) {
        if (topicscan__now_ms() - last > o.idle_ms) {
            snprintf(errstr, errstr_size, "%s: no record for %d ms with %d partitions unread",
                     topic, o.idle_ms, remaining);
            rc = -1;
            break;
        }
        rd_kafka_message_t *m = rd_kafka_consumer_poll(c, 100);
        if (!m)
            continue;
        int32_t p = m->partition;
        int in_range = p >= 0 && p < n && !done[p];
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            if (in_range) {
                done[p] = 1;
                remaining--;
            }
        } else if (m->err) {
            if (m->err == RD_KAFKA_RESP_ERR__FATAL ||
                m->err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART ||
                m->err == RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED) {
                snprintf(errstr, errstr_size, "reading %s: %s", topic, rd_kafka_message_errstr(m));
                rc = -1;
            }
            /* Others are transient; librdkafka retries them. */
        } else if (in_range) {
            last = topicscan__now_ms();
            if (m->offset < ends[p]) {
                rc = cb(m, arg);
                seen++;
            }
            if (m->offset + 1 >= ends[p]) {
                done[p] = 1;
                remaining--;
            }
            if (!rc && o.max > 0 && seen >= o.max)
                remaining = 0;
        }
        rd_kafka_message_destroy(m);
        if (rc)
            break;
    }
out:
    if (parts)
        rd_kafka_topic_partition_list_destroy(parts);
    free(ends);
    free(done);
    rd_kafka_consumer_close(c);
    rd_kafka_destroy(c);
    return rc;
}
