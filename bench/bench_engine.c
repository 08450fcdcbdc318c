/*
 * bench_engine: the pieces of the engine benchmark (bench/engine.sh runs them in order).
 *   produce CONF N [RATE]      N listing events on <prefix>events (RATE/s paced, 0 = flat out)
 *   passthrough CONF N K       consume N events, produce K records for each, with the engine's
 *                              transaction batching (the floor an engine cannot beat)
 *   measure CONF TOPIC N FIELD read N outputs of TOPIC and the events; print throughput from the
 *                              outputs' timestamps and event->output latency percentiles.
 *                              FIELD says where the event id is: decision | event | json
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
            rd_kafka_resp_err_t e = kafka_produce(p, topic, RD_KAFKA_PARTITION_UA, key,
                                                  strlen(key), buf, len,
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
static int passthrough(const config_t *cfg, long n, int k)
{
    char err[512], in[256], out[256], group[128];
    config_topic(cfg, "events", in, sizeof(in));
    config_topic(cfg, "passthrough", out, sizeof(out));
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
                while (kafka_produce(p, out, RD_KAFKA_PARTITION_UA, m->key, m->key_len,
                                     m->payload, m->len, kafka_headers("jrp.v1.CreditEvent", NULL),
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
    printf("passed=%ld\n", done);
    return 0;
}

typedef struct seen_s {
    char *id;
    int64_t ts;
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

/* Read a whole topic (read_committed) up to its end, giving each record to fn. */
static long read_topic(const config_t *cfg, const char *topic, long want, int timeout_s,
                       void (*fn)(const rd_kafka_message_t *m, void *arg), void *arg)
{
    char err[512];
    rd_kafka_t *c = kafka_reader_create(cfg, err, sizeof(err));
    const rd_kafka_metadata_t *md = NULL;
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(c, topic, NULL);
    if (rd_kafka_metadata(c, 0, rkt, &md, 10000) || md->topic_cnt != 1) {
        fprintf(stderr, "bench_engine: no topic %s\n", topic);
        exit(1);
    }
    int parts = md->topics[0].partition_cnt;
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(parts);
    for (int i = 0; i < parts; i++)
        rd_kafka_topic_partition_list_add(l, topic, i)->offset = RD_KAFKA_OFFSET_BEGINNING;
    rd_kafka_assign(c, l);
    rd_kafka_topic_partition_list_destroy(l);
    rd_kafka_metadata_destroy(md);
    rd_kafka_topic_destroy(rkt);
    long n = 0;
    int64_t end = now_ms() + timeout_s * 1000LL;
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
    read_topic(cfg, ev_topic, n + skip_events, 300, collect, &evs);
    if (got < n) {
        printf("error=only_%ld_of_%ld_outputs\n", got, n);
        return 1;
    }
    /* First output per event id; its latency from the event's own timestamp. */
    qsort(outs.v, (size_t)outs.n, sizeof(seen_t), cmp_seen);
    qsort(evs.v, (size_t)evs.n, sizeof(seen_t), cmp_seen);
    int64_t first = INT64_MAX, last = 0;
    int64_t *lat = calloc((size_t)outs.n + 1, sizeof(int64_t));
    long nl = 0;
    for (long i = 0, j = 0; i < outs.n; i++) {
        if (outs.v[i].ts < first)
            first = outs.v[i].ts;
        if (outs.v[i].ts > last)
            last = outs.v[i].ts;
        if (i > 0 && !strcmp(outs.v[i].id, outs.v[i - 1].id))
            continue;
        while (j < evs.n && strcmp(evs.v[j].id, outs.v[i].id) < 0)
            j++;
        if (j < evs.n && !strcmp(evs.v[j].id, outs.v[i].id))
            lat[nl++] = outs.v[i].ts - evs.v[j].ts;
    }
    qsort(lat, (size_t)nl, sizeof(int64_t), cmp_i64);
    double secs = (last - first) / 1000.0;
    printf("outputs=%ld events_per_s=%.0f p50_ms=%lld p99_ms=%lld seconds=%.2f\n", outs.n,
           secs > 0 ? (double)nl / secs : 0.0, nl ? (long long)lat[nl / 2] : -1LL,
           nl ? (long long)lat[nl * 99 / 100] : -1LL, secs);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc >= 4 && !strcmp(argv[1], "produce"))
        return produce(load(argv[2]), atol(argv[3]), argc > 4 ? atol(argv[4]) : 0,
                       argc > 5 ? atol(argv[5]) : 0);
    if (argc == 5 && !strcmp(argv[1], "passthrough"))
        return passthrough(load(argv[2]), atol(argv[3]), atoi(argv[4]));
    if (argc >= 6 && !strcmp(argv[1], "measure"))
        return measure(load(argv[2]), argv[3], atol(argv[4]), argv[5],
                       argc > 6 ? atol(argv[6]) : 0);
    fprintf(stderr, "usage: see the comment at the top of bench/bench_engine.c\n");
    return 2;
}
