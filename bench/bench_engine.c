/*
 * bench_engine: the pieces of the engine benchmark (bench/engine.sh runs them in order).
 *   produce CONF N [RATE] [OFFSET]
 *                              N listing events on <prefix>events (RATE/s paced, 0 = flat out),
 *                              numbered from OFFSET (event ids b-<number>)
 *   passthrough CONF N K [T]   consume N events, produce K records for each, with the engine's
 *                              transaction batching (the floor an engine cannot beat); with T,
 *                              record i of an event goes to <prefix>passthrough.<i mod T> rather
 *                              than all to <prefix>passthrough, so a transaction touches T topics'
 *                              partitions as the engine's do (its department topics, decisions,
 *                              state)
 *   measure CONF TOPIC N FIELD [SKIP]
 *                              read N outputs of TOPIC and the events; print throughput from the
 *                              outputs' timestamps and event->output latency percentiles
 *                              (p50/p99 to the output's timestamp; seen_p50/seen_p99 to when
 *                              this reader got it, meaningful when it runs along the system).
 *                              FIELD says where the event id is: decision | event | json;
 *                              SKIP: events more than the outputs name are read
 *   count CONF SUFFIX...       committed records on the topics <prefix>SUFFIX (a SUFFIX ending
 *                              in "." takes every topic that starts with <prefix>SUFFIX)
 *   drop CONF                  delete every topic whose name starts with <prefix>
 * Prints one "key=value ..." line for the driver script.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "ids.h"
#include "jrp/v1/decision.pb-c.h"
#include "jrp/v1/event.pb-c.h"
#include "kafka.h"
#include "topicdrop.h"

static int64_t now_ms(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

static config_t *load(const char *path)
{
    char err[512];
    config_t *cfg = config_create();
    if (config_load_file(cfg, path, err, sizeof(err))) {
        fprintf(stderr, "bench_engine: %s\n", err);
        exit(2);
    }
    return cfg;
}

static void credit_code(int i, char out[19])
{
    char buf[32];
    snprintf(buf, sizeof(buf), "91350100%09d", i % 1000000000);
    memcpy(out, buf, 17);
    out[17] = ids_credit_code_check_char(out);
    out[18] = '\0';
}

static int produce(const config_t *cfg, long n, long rate, long offset)
{
    char err[512], topic[256], key[64], id[19], eid[40];
    config_topic(cfg, "events", topic, sizeof(topic));
    rd_kafka_t *p = kafka_producer_create(cfg, NULL, 0, err, sizeof(err));
    if (!p) {
        fprintf(stderr, "bench_engine: %s\n", err);
        return 1;
    }
    int64_t start = now_ms(), t = start;
    static const char *const lists[] = {"black.overload", "black.logistics", "red.construction"};
    for (long i = 0; i < n; i++) {
        long k = i + offset;
        credit_code((int)(k % 100000), id);
        snprintf(eid, sizeof(eid), "b-%ld", k);
        Jrp__V1__Subject s;
        jrp__v1__subject__init(&s);
        s.type = JRP__V1__SUBJECT_TYPE__SUBJECT_TYPE_ENTERPRISE;
        s.id = id;
        Jrp__V1__CreditEvent ev;
        jrp__v1__credit_event__init(&ev);
        ev.event_id = eid;
        ev.kind = JRP__V1__EVENT_KIND__EVENT_KIND_LISTED;
        ev.subject = &s;
        ev.source_department = "transport";
        ev.occurred_at_ms = now_ms();
        ev.list_code = (char *)lists[(k / 100000) % 3];
        uint8_t buf[512];
        size_t len = jrp__v1__credit_event__pack(&ev, buf);
        snprintf(key, sizeof(key), "enterprise:%s", id);
        for (;;) {
            rd_kafka_resp_err_t e =
                kafka_produce(p, topic, RD_KAFKA_PARTITION_UA, key, strlen(key), buf, len,
                              kafka_headers("jrp.v1.CreditEvent", NULL), NULL);
            if (e == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
                rd_kafka_poll(p, 10);
                continue;
            }
            if (e) {
                fprintf(stderr, "bench_engine: produce: %s\n", rd_kafka_err2str(e));
                return 1;
            }
            break;
        }
        rd_kafka_poll(p, 0);
        if (rate > 0) { /* pace: event i is due at start + i/rate */
            int64_t due = start + (int64_t)(i * 1000 / rate);
            t = now_ms();
            if (due > t)
                usleep((useconds_t)(due - t) * 1000);
        }
    }
    rd_kafka_flush(p, 60000);
    rd_kafka_destroy(p);
    printf("produced=%ld seconds=%.2f\n", n, (now_ms() - start) / 1000.0);
    return 0;
}

/* Consume N events; for each, produce K records (the event itself) in batched transactions. */
static int passthrough(const config_t *cfg, long n, int k, int fanout)
{
    char err[512], in[256], out[256], group[128];
    config_topic(cfg, "events", in, sizeof(in));
    config_topic(cfg, "passthrough", out, sizeof(out));
    char(*outs)[280] = calloc((size_t)(fanout > 0 ? fanout : 1), sizeof(*outs));
    if (!outs)
        return 1;
    for (int t = 0; t < fanout; t++)
        snprintf(outs[t], sizeof(outs[t]), "%s.%d", out, t);
    snprintf(group, sizeof(group), "bench-pass-%d", (int)getpid());
    rd_kafka_t *p = kafka_producer_create(cfg, group, 60000, err, sizeof(err));
    rd_kafka_t *c = kafka_consumer_create(cfg, group, NULL, 0, err, sizeof(err));
    if (!p || !c) {
        fprintf(stderr, "bench_engine: %s\n", err);
        return 1;
    }
    rd_kafka_topic_partition_list_t *sub = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(sub, in, RD_KAFKA_PARTITION_UA);
    rd_kafka_subscribe(c, sub);
    rd_kafka_topic_partition_list_destroy(sub);
    long done = 0;
    int open = 0, in_batch = 0;
    long batch_max = config_get_int(cfg, "engine.batch_max_events");
    while (done < n) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(c, in_batch ? 0 : 100);
        if (m && !m->err) {
            if (!open) {
                rd_kafka_error_t *e = rd_kafka_begin_transaction(p);
                if (e) {
                    fprintf(stderr, "begin: %s\n", rd_kafka_error_string(e));
                    return 1;
                }
                open = 1;
            }
            for (int i = 0; i < k; i++)
                while (kafka_produce(p, fanout > 0 ? outs[i % fanout] : out, RD_KAFKA_PARTITION_UA,
                                     m->key, m->key_len, m->payload, m->len,
                                     kafka_headers("jrp.v1.CreditEvent", NULL),
                                     NULL) == RD_KAFKA_RESP_ERR__QUEUE_FULL)
                    rd_kafka_poll(p, 10);
            in_batch++;
            done++;
        }
        if (m)
            rd_kafka_message_destroy(m);
        if (open && (!m || in_batch >= batch_max)) {
            if (kafka_txn_commit(p, c, 60000, err, sizeof(err)) != KAFKA_ERR_OK) {
                fprintf(stderr, "bench_engine: commit: %s\n", err);
                return 1;
            }
            open = 0;
            in_batch = 0;
        }
    }
    if (open && kafka_txn_commit(p, c, 60000, err, sizeof(err)) != KAFKA_ERR_OK)
        return 1;
    rd_kafka_consumer_close(c);
    rd_kafka_destroy(c);
    rd_kafka_destroy(p);
    free(outs);
    printf("passed=%ld\n", done);
    return 0;
}

typedef struct seen_s {
    char *id;
    int64_t ts;   /* the record's timestamp (set by its producer) */
    int64_t recv; /* when this reader got it: when it became visible, if the reader ran along */
} seen_t;

static int cmp_seen(const void *a, const void *b)
{
    return strcmp(((const seen_t *)a)->id, ((const seen_t *)b)->id);
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

/* Partitions of topic, waiting until it exists (outputs appear with the first record) or the
 * deadline passes: 0 then. */
static int topic_partitions(rd_kafka_t *rk, const char *topic, int64_t deadline)
{
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    int parts = 0;
    while (!parts && now_ms() < deadline) {
        const rd_kafka_metadata_t *md = NULL;
        if (!rd_kafka_metadata(rk, 0, rkt, &md, 5000) && md->topic_cnt == 1 && !md->topics[0].err)
            parts = md->topics[0].partition_cnt;
        if (md)
            rd_kafka_metadata_destroy(md);
        if (!parts)
            usleep(200000);
    }
    rd_kafka_topic_destroy(rkt);
    return parts;
}

/* Read N records (read_committed) of a topic from its start, giving each record to fn. */
static long read_topic(const config_t *cfg, const char *topic, long want, int timeout_s,
                       void (*fn)(const rd_kafka_message_t *m, void *arg), void *arg)
{
    char err[512];
    rd_kafka_t *c = kafka_reader_create(cfg, err, sizeof(err));
    int64_t end = now_ms() + timeout_s * 1000LL;
    int parts = topic_partitions(c, topic, end);
    if (parts <= 0) {
        fprintf(stderr, "bench_engine: no topic %s after %d s\n", topic, timeout_s);
        exit(1);
    }
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(parts);
    for (int i = 0; i < parts; i++)
        rd_kafka_topic_partition_list_add(l, topic, i)->offset = RD_KAFKA_OFFSET_BEGINNING;
    if (kafka_assign_explicit(c, l, 10000, err, sizeof(err))) {
        fprintf(stderr, "bench_engine: %s\n", err);
        exit(1);
    }
    rd_kafka_topic_partition_list_destroy(l);
    long n = 0;
    while (n < want && now_ms() < end) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(c, 200);
        if (!m)
            continue;
        if (!m->err) {
            fn(m, arg);
            n++;
        }
        rd_kafka_message_destroy(m);
    }
    rd_kafka_consumer_close(c);
    rd_kafka_destroy(c);
    return n;
}

typedef struct collect_s {
    seen_t *v;
    long n, cap;
    const char *field;
} collect_t;

static void collect(const rd_kafka_message_t *m, void *arg)
{
    collect_t *c = arg;
    char id[64] = "";
    if (!strcmp(c->field, "decision")) {
        Jrp__V1__Decision *d = jrp__v1__decision__unpack(NULL, m->len, m->payload);
        if (d) {
            snprintf(id, sizeof(id), "%s", d->event_id);
            jrp__v1__decision__free_unpacked(d, NULL);
        }
    } else if (!strcmp(c->field, "event")) {
        Jrp__V1__CreditEvent *e = jrp__v1__credit_event__unpack(NULL, m->len, m->payload);
        if (e) {
            snprintf(id, sizeof(id), "%s", e->event_id);
            jrp__v1__credit_event__free_unpacked(e, NULL);
        }
    } else { /* json with cause_event_id */
        json_t *j = json_loadb(m->payload, m->len, 0, NULL);
        const char *s = j ? json_string_value(json_object_get(j, "cause_event_id")) : NULL;
        if (s)
            snprintf(id, sizeof(id), "%s", s);
        json_decref(j);
    }
    if (!id[0])
        return;
    if (c->n == c->cap) {
        c->cap = c->cap ? c->cap * 2 : 65536;
        c->v = realloc(c->v, (size_t)c->cap * sizeof(seen_t));
    }
    rd_kafka_timestamp_type_t tt;
    c->v[c->n].id = strdup(id);
    c->v[c->n].ts = rd_kafka_message_timestamp(m, &tt);
    c->v[c->n].recv = now_ms();
    c->n++;
}

static int measure(const config_t *cfg, const char *suffix, long n, const char *field,
                   long skip_events)
{
    char out_topic[256], ev_topic[256];
    config_topic(cfg, suffix, out_topic, sizeof(out_topic));
    config_topic(cfg, "events", ev_topic, sizeof(ev_topic));
    collect_t outs = {.field = field}, evs = {.field = "event"};
    long got = read_topic(cfg, out_topic, n, 900, collect, &outs);
    if (got < n) {
        printf("error=only_%ld_of_%ld_outputs\n", got, n);
        return 1;
    }
    /* The events: as many as the outputs name (one event may have several outputs), and SKIP. */
    qsort(outs.v, (size_t)outs.n, sizeof(seen_t), cmp_seen);
    long distinct = 0;
    for (long i = 0; i < outs.n; i++)
        distinct += i == 0 || strcmp(outs.v[i].id, outs.v[i - 1].id);
    read_topic(cfg, ev_topic, distinct + skip_events, 300, collect, &evs);
    qsort(evs.v, (size_t)evs.n, sizeof(seen_t), cmp_seen);
    /* Per event id, its last output (all of its outputs written): the latency from the event's
     * own timestamp to that output's timestamp (lat) and to when this reader saw it (seen). */
    int64_t first = INT64_MAX, last = 0;
    int64_t *lat = calloc((size_t)outs.n + 1, sizeof(int64_t));
    int64_t *seen = calloc((size_t)outs.n + 1, sizeof(int64_t));
    int64_t *ev_ts = calloc((size_t)outs.n + 1, sizeof(int64_t));
    long nl = 0;
    /* BENCH_DUMP=<file>: one line per event, "event_ms record_latency_ms seen_latency_ms". */
    const char *dump_path = getenv("BENCH_DUMP");
    FILE *dump = dump_path && *dump_path ? fopen(dump_path, "w") : NULL;
    for (long i = 0, j = 0; i < outs.n;) {
        int64_t ts = 0, recv = 0;
        long g = i;
        for (; g < outs.n && !strcmp(outs.v[g].id, outs.v[i].id); g++) {
            ts = outs.v[g].ts > ts ? outs.v[g].ts : ts;
            recv = outs.v[g].recv > recv ? outs.v[g].recv : recv;
            first = outs.v[g].ts < first ? outs.v[g].ts : first;
            last = outs.v[g].ts > last ? outs.v[g].ts : last;
        }
        while (j < evs.n && strcmp(evs.v[j].id, outs.v[i].id) < 0)
            j++;
        if (j < evs.n && !strcmp(evs.v[j].id, outs.v[i].id)) {
            lat[nl] = ts - evs.v[j].ts;
            ev_ts[nl] = evs.v[j].ts;
            seen[nl++] = recv - evs.v[j].ts;
            if (dump)
                fprintf(dump, "%lld %lld %lld\n", (long long)evs.v[j].ts, (long long)lat[nl - 1],
                        (long long)seen[nl - 1]);
        }
        i = g;
    }
    if (dump)
        fclose(dump);
    /* The steady state: the events from the third second of the run on (a start-up costs the
     * first batches more: new partitions in the transaction, cold caches). */
    int64_t ev_first = INT64_MAX;
    for (long i = 0; i < nl; i++)
        ev_first = ev_ts[i] < ev_first ? ev_ts[i] : ev_first;
    int64_t *steady = calloc((size_t)nl + 1, sizeof(int64_t));
    long ns = 0;
    for (long i = 0; i < nl; i++)
        if (ev_ts[i] >= ev_first + 2000)
            steady[ns++] = seen[i];
    qsort(steady, (size_t)ns, sizeof(int64_t), cmp_i64);
    qsort(lat, (size_t)nl, sizeof(int64_t), cmp_i64);
    qsort(seen, (size_t)nl, sizeof(int64_t), cmp_i64);
    double secs = (last - first) / 1000.0;
    long p50 = nl / 2, p99 = nl * 99 / 100;
    printf("outputs=%ld events_per_s=%.0f p50_ms=%lld p99_ms=%lld seen_p50_ms=%lld "
           "seen_p99_ms=%lld steady_seen_p50_ms=%lld steady_seen_p99_ms=%lld seconds=%.2f\n",
           outs.n, secs > 0 ? (double)nl / secs : 0.0, nl ? (long long)lat[p50] : -1LL,
           nl ? (long long)lat[p99] : -1LL, nl ? (long long)seen[p50] : -1LL,
           nl ? (long long)seen[p99] : -1LL, ns ? (long long)steady[ns / 2] : -1LL,
           ns ? (long long)steady[ns * 99 / 100] : -1LL, secs);
    free(steady);
    free(ev_ts);
    free(lat);
    free(seen);
    return 0;
}

/* Count the committed records of the topics named by suffixes ("x." = every topic starting with
 * <prefix>x.), reading each partition to its end. */
static int count(const config_t *cfg, int n_suffixes, char **suffixes)
{
    char err[512];
    rd_kafka_t *c = kafka_reader_create(cfg, err, sizeof(err));
    const rd_kafka_metadata_t *md = NULL;
    if (!c || rd_kafka_metadata(c, 1, NULL, &md, 10000)) {
        fprintf(stderr, "bench_engine: no metadata\n");
        return 1;
    }
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(16);
    for (int t = 0; t < md->topic_cnt; t++) {
        const char *name = md->topics[t].topic;
        int match = 0;
        for (int i = 0; i < n_suffixes && !match; i++) {
            char want[256];
            size_t len = strlen(suffixes[i]);
            config_topic(cfg, suffixes[i], want, sizeof(want));
            match = len && suffixes[i][len - 1] == '.' ? !strncmp(name, want, strlen(want))
                                                       : !strcmp(name, want);
        }
        for (int p = 0; match && p < md->topics[t].partition_cnt; p++)
            rd_kafka_topic_partition_list_add(l, name, p)->offset = RD_KAFKA_OFFSET_BEGINNING;
    }
    rd_kafka_metadata_destroy(md);
    int parts = l->cnt, at_end = 0;
    char *done = calloc((size_t)parts + 1, 1);
    long n = 0;
    if (kafka_assign_explicit(c, l, 10000, err, sizeof(err))) {
        fprintf(stderr, "bench_engine: %s\n", err);
        return 1;
    }
    int64_t end = now_ms() + 300000;
    while (at_end < parts && now_ms() < end) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(c, 200);
        if (!m)
            continue;
        if (!m->err) {
            n++;
        } else if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            for (int i = 0; i < parts; i++)
                if (!done[i] && l->elems[i].partition == m->partition &&
                    !strcmp(l->elems[i].topic, rd_kafka_topic_name(m->rkt))) {
                    done[i] = 1;
                    at_end++;
                }
        }
        rd_kafka_message_destroy(m);
    }
    rd_kafka_topic_partition_list_destroy(l);
    free(done);
    rd_kafka_consumer_close(c);
    rd_kafka_destroy(c);
    if (at_end < parts) {
        printf("error=only_%d_of_%d_partitions_read\n", at_end, parts);
        return 1;
    }
    printf("records=%ld partitions=%d\n", n, parts);
    return 0;
}

/* Delete every topic that starts with <topic.prefix> (the benchmark's own, on a fresh prefix). */
static int drop(const config_t *cfg)
{
    char err[512];
    int n = topicdrop_prefix(cfg, config_get(cfg, "topic.prefix"), 60000, err, sizeof(err));
    if (n < 0) {
        fprintf(stderr, "bench_engine: drop: %s\n", err);
        return 1;
    }
    printf("dropped=%d\n", n);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc >= 4 && !strcmp(argv[1], "produce"))
        return produce(load(argv[2]), atol(argv[3]), argc > 4 ? atol(argv[4]) : 0,
                       argc > 5 ? atol(argv[5]) : 0);
    if ((argc == 5 || argc == 6) && !strcmp(argv[1], "passthrough"))
        return passthrough(load(argv[2]), atol(argv[3]), atoi(argv[4]),
                           argc == 6 ? atoi(argv[5]) : 0);
    if (argc >= 6 && !strcmp(argv[1], "measure"))
        return measure(load(argv[2]), argv[3], atol(argv[4]), argv[5],
                       argc > 6 ? atol(argv[6]) : 0);
    if (argc == 3 && !strcmp(argv[1], "drop"))
        return drop(load(argv[2]));
    if (argc >= 4 && !strcmp(argv[1], "count"))
        return count(load(argv[2]), argc - 3, argv + 3);
    fprintf(stderr, "usage: see the comment at the top of bench/bench_engine.c\n");
    return 2;
}
