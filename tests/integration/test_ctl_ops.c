/*
 * Integration tests of jrpctl's operator commands against the real local Kafka and Redis, each in
 * its own namespace: `dlq list|show|redrive` on dead letters the engine wrote, `rebuild` after the
 * namespace's Redis keys are deleted, and `topics ensure` run twice.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"
#include "kafka.h"
#include "redis.h"
#include "testenv.h"

#define ENT1 "91350100M000100Y43"
#define ENT2 "91512081MA62K0260E"
#define PERSON "11010519491231002X"
#define ENTERPRISE JRP__V1__SUBJECT_TYPE__SUBJECT_TYPE_ENTERPRISE
#define PERSON_TYPE JRP__V1__SUBJECT_TYPE__SUBJECT_TYPE_PERSON
#define LISTED JRP__V1__EVENT_KIND__EVENT_KIND_LISTED
#define OUT_MAX (256 * 1024)
#define WAIT_MS 90000 /* a loaded two-core machine: generous */

static const ProtobufCMessageDescriptor *action_desc = &jrp__v1__action__descriptor;
static const ProtobufCMessageDescriptor *decision_desc = &jrp__v1__decision__descriptor;

static char *out_buf(void)
{
    char *out = malloc(OUT_MAX);
    assert_non_null(out);
    out[0] = '\0';
    return out;
}

static void send1(harness_t *h, Jrp__V1__CreditEvent *ev)
{
    harness_send(h, &ev, 1);
    jrp__v1__credit_event__free_unpacked(ev, NULL);
}

/* Run jrpctl and fail with its output unless it exits with want. */
static void ctl_expect(harness_t *h, int want, char *out, const char *args)
{
    int rc = harness_jrpctl(h, out, OUT_MAX, "%s", args);
    if (rc != want)
        fail_msg("jrpctl %s: exit %d, want %d; output:\n%s", args, rc, want, out);
}

static void expect_in(const char *out, const char *needle)
{
    if (!strstr(out, needle))
        fail_msg("\"%s\" not in:\n%s", needle, out);
}

static size_t count_of(const char *out, const char *needle)
{
    size_t n = 0;
    for (const char *p = strstr(out, needle); p; p = strstr(p + 1, needle))
        n++;
    return n;
}

/* A row of `dlq list`: its columns before the reason. */
typedef struct row_s {
    char name[48], time[40], code[64], service[64], origin[320], redriven[8];
    int redrives;
} row_t;

/* The rows of `dlq list` output; returns how many (at most max). */
static size_t parse_rows(const char *out, row_t *rows, size_t max)
{
    size_t n = 0;
    const char *line = out;
    while (line && *line && n < max) {
        const char *nl = strchr(line, '\n');
        char buf[2048];
        size_t len = nl ? (size_t)(nl - line) : strlen(line);
        if (len >= sizeof(buf))
            len = sizeof(buf) - 1;
        memcpy(buf, line, len);
        buf[len] = '\0';
        row_t *r = &rows[n];
        if (buf[0] >= '0' && buf[0] <= '9' && strchr(buf, ':') &&
            sscanf(buf, "%47s %39s %63s %63s %319s %d %7s", r->name, r->time, r->code, r->service,
                   r->origin, &r->redrives, r->redriven) == 7)
            n++;
        line = nl ? nl + 1 : NULL;
    }
    return n;
}

/* Produce one record with headers (name, value pairs, NULL-terminated) to a topic suffix. */
static void produce_with_headers(harness_t *h, const char *suffix, const char *key,
                                 const void *value, size_t len, ...)
{
    char topic[256], err[512];
    config_topic(h->cfg, suffix, topic, sizeof(topic));
    rd_kafka_t *rk = kafka_producer_create(h->cfg, NULL, 0, err, sizeof(err));
    assert_non_null(rk);
    rd_kafka_headers_t *hdrs = rd_kafka_headers_new(8);
    va_list ap;
    va_start(ap, len);
    const char *name;
    while ((name = va_arg(ap, const char *)) != NULL) {
        const char *v = va_arg(ap, const char *);
        rd_kafka_header_add(hdrs, name, -1, v, -1);
    }
    va_end(ap);
    assert_int_equal(
        kafka_produce(rk, topic, RD_KAFKA_PARTITION_UA, key, strlen(key), value, len, hdrs, NULL),
        0);
    assert_int_equal(rd_kafka_flush(rk, 30000), 0);
    rd_kafka_destroy(rk);
}

/* Records on a topic now (waits for at least min, then 1.5 s of quiet). */
static size_t topic_count(harness_t *h, const char *suffix, size_t min)
{
    harness_records_t r;
    harness_read(h, suffix, NULL, min, 1500, WAIT_MS, &r);
    size_t n = r.n;
    harness_records_free(&r, NULL);
    return n;
}

static size_t actions_for(harness_t *h, const char *dept, const char *key, size_t min)
{
    char suffix[128];
    snprintf(suffix, sizeof(suffix), "actions.%s", dept);
    harness_records_t r;
    harness_read(h, suffix, action_desc, min, 2000, WAIT_MS, &r);
    size_t n = 0;
    for (size_t i = 0; i < r.n; i++)
        n += !strcmp(r.keys[i], key);
    harness_records_free(&r, action_desc);
    return n;
}

static redisContext *redis(void)
{
    char err[256];
    redisContext *c = redis_connect(testenv_redis_url(), 5000, err, sizeof(err));
    if (!c)
        fail_msg("redis: %s", err);
    return c;
}

/* --- dead letters ---------------------------------------------------------------------------- */

/*
 * The engine dead-letters an undecodable record and an event with a bad check character; list
 * and show describe them; a third dead letter, written as a service writes one whose cause has
 * since gone away (the value is a valid event), is redriven once and processed; the still-bad
 * ones come back with a redrive count, until the limit refuses them. --dry-run changes nothing.
 */
static void test_dlq_list_show_redrive(void **state)
{
    (void)state;
    char *out = out_buf();
    harness_t *h = harness_create("ops-dlq", NULL);
    harness_load_rules(h, NULL);
    harness_engine_start(h);
    int64_t t0 = harness_now_ms();
    harness_send_raw(h, "enterprise:" ENT1, "\xff\xfe not protobuf", 15);
    send1(h,
          harness_event("bad-1", LISTED, ENTERPRISE, "91350100M000100Y44", "black.overload", t0));
    send1(h, harness_event("good-1", LISTED, ENTERPRISE, ENT1, "black.overload", t0));
    assert_int_equal(topic_count(h, "dlq", 2), 2);
    assert_true(harness_wait_decisions(h, 3, WAIT_MS) >= 3);

    /* list: both, with their codes, the engine, and where they came from. */
    ctl_expect(h, 0, out, "dlq list");
    row_t rows[16];
    assert_int_equal(parse_rows(out, rows, 16), 2);
    expect_in(out, "2 dead letters");
    char events_topic[256], want_origin[300];
    config_topic(h->cfg, "events", events_topic, sizeof(events_topic));
    snprintf(want_origin, sizeof(want_origin), "%s[", events_topic);
    row_t undecodable = {0}, bad = {0};
    for (size_t i = 0; i < 2; i++) {
        assert_string_equal(rows[i].service, "engine");
        assert_int_equal(rows[i].redrives, 0);
        assert_string_equal(rows[i].redriven, "no");
        assert_non_null(strstr(rows[i].origin, want_origin));
        if (!strcmp(rows[i].code, "decode_failed"))
            undecodable = rows[i];
        else if (!strcmp(rows[i].code, "bad_checksum"))
            bad = rows[i];
    }
    assert_true(undecodable.name[0] && bad.name[0]);

    /* Filters: by code, by time (epoch ms and RFC 3339). */
    ctl_expect(h, 0, out, "dlq list --code bad_checksum");
    assert_int_equal(parse_rows(out, rows, 16), 1);
    assert_string_equal(rows[0].name, bad.name);
    char args[512];
    snprintf(args, sizeof(args), "dlq list --since %lld", (long long)(harness_now_ms() + 3600000));
    ctl_expect(h, 0, out, args);
    assert_int_equal(parse_rows(out, rows, 16), 0);
    expect_in(out, "no dead letters match");
    time_t before = (time_t)(t0 / 1000 - 120);
    struct tm tm;
    gmtime_r(&before, &tm);
    char rfc[64];
    strftime(rfc, sizeof(rfc), "%Y-%m-%dT%H:%M:%SZ", &tm);
    snprintf(args, sizeof(args), "dlq list --since %s", rfc);
    ctl_expect(h, 0, out, args);
    assert_int_equal(parse_rows(out, rows, 16), 2);
    ctl_expect(h, 1, out, "dlq list --since yesterday");
    assert_int_equal(count_of(out, "\n"), 1);
    expect_in(out, "--since");

    /* show: headers, and the value as JSON when it decodes, else hex. */
    snprintf(args, sizeof(args), "dlq show %s", bad.name);
    ctl_expect(h, 0, out, args);
    expect_in(out, "\"event_id\": \"bad-1\"");
    expect_in(out, "value (jrp.v1.CreditEvent");
    expect_in(out, "jrp-error-code: bad_checksum");
    expect_in(out, "jrp-error-service: engine");
    expect_in(out, "key (29 bytes, text): \"enterprise:91350100M000100Y44\"");
    snprintf(args, sizeof(args), "dlq show %s", undecodable.name);
    ctl_expect(h, 0, out, args);
    expect_in(out, "not a valid jrp.v1.CreditEvent");
    expect_in(out, "hex");
    expect_in(out, "ff fe 20 6e 6f 74");
    ctl_expect(h, 1, out, "dlq show 99:0");
    assert_int_equal(count_of(out, "\n"), 1);

    /* A dead letter whose cause is gone: a valid event, headers as any service writes them. */
    Jrp__V1__CreditEvent *fixed =
        harness_event("fixed-1", LISTED, ENTERPRISE, ENT2, "black.overload", t0);
    size_t flen = jrp__v1__credit_event__get_packed_size(fixed);
    uint8_t fbuf[1024];
    assert_true(flen <= sizeof(fbuf));
    jrp__v1__credit_event__pack(fixed, fbuf);
    jrp__v1__credit_event__free_unpacked(fixed, NULL);
    char now[32];
    snprintf(now, sizeof(now), "%lld", (long long)harness_now_ms());
    produce_with_headers(h, "dlq", "enterprise:" ENT2, fbuf, flen, "jrp-schema",
                         "jrp.v1.CreditEvent", "jrp-error-reason",
                         "Redis unreachable for longer than the retry budget", "jrp-error-code",
                         "unavailable", "jrp-error-service", "test", "jrp-error-topic",
                         events_topic, "jrp-error-offset", "0", "jrp-error-time", now, NULL);
    assert_int_equal(topic_count(h, "dlq", 3), 3);

    /* --dry-run: says what it would do, sends and records nothing. */
    ctl_expect(h, 0, out, "dlq redrive --dry-run");
    expect_in(out, "3 would be redriven");
    expect_in(out, "nothing was sent");
    assert_int_equal(count_of(out, "would redrive "), 3);
    char done_key[512], dlq_topic[256];
    config_topic(h->cfg, "dlq", dlq_topic, sizeof(dlq_topic));
    snprintf(done_key, sizeof(done_key), "%sdlq:redriven:%s", config_get(h->cfg, "redis.prefix"),
             dlq_topic);
    redisContext *c = redis();
    redisReply *rep = redisCommand(c, "EXISTS %s", done_key);
    assert_non_null(rep);
    assert_int_equal(rep->integer, 0);
    freeReplyObject(rep);
    assert_int_equal(topic_count(h, "events", 3), 3);

    /* Round 1: all three go back to credit.events, once. */
    ctl_expect(h, 0, out, "dlq redrive");
    expect_in(out, "3 dead letters match: 3 redriven, 0 refused, 0 already redriven, 0 failed");
    assert_int_equal(count_of(out, " -> "), 3);
    rep = redisCommand(c, "SCARD %s", done_key);
    assert_non_null(rep);
    assert_int_equal(rep->integer, 3);
    freeReplyObject(rep);
    /* The two still-bad records are dead letters again, now with a redrive count of 1. */
    assert_int_equal(topic_count(h, "dlq", 5), 5);
    ctl_expect(h, 0, out, "dlq list");
    size_t n = parse_rows(out, rows, 16);
    assert_int_equal(n, 5);
    size_t again = 0;
    for (size_t i = 0; i < n; i++) {
        if (rows[i].redrives == 1) {
            again++;
            assert_string_equal(rows[i].service, "engine");
            assert_string_equal(rows[i].redriven, "no");
        } else {
            assert_string_equal(rows[i].redriven, "yes");
        }
    }
    assert_int_equal(again, 2);

    /* Rounds 2 and 3 redrive the new dead letters only; round 4 refuses them at the limit. */
    for (int round = 2; round <= 3; round++) {
        ctl_expect(h, 0, out, "dlq redrive");
        snprintf(args, sizeof(args), ": 2 redriven, 0 refused, %d already redriven, 0 failed",
                 3 + 2 * (round - 2));
        expect_in(out, args);
        snprintf(args, sizeof(args), "(redrive %d of 3)", round);
        assert_int_equal(count_of(out, args), 2);
        assert_int_equal(topic_count(h, "dlq", 3 + 2 * (size_t)round), 3 + 2 * (size_t)round);
    }
    ctl_expect(h, 0, out, "dlq redrive --dry-run");
    expect_in(out, "0 would be redriven, 2 refused");
    ctl_expect(h, 0, out, "dlq redrive");
    expect_in(out, ": 0 redriven, 2 refused, 7 already redriven, 0 failed");
    assert_int_equal(count_of(out, "redriven 3 times already, the limit is 3"), 2);
    assert_int_equal(topic_count(h, "dlq", 9), 9);

    /* The fixed record was processed exactly once; the good one too. */
    harness_records_t r;
    harness_read(h, "decisions", decision_desc, 3 + 3 + 2 + 2, 2000, WAIT_MS, &r);
    size_t fixed_decisions = 0, rejected = 0;
    for (size_t i = 0; i < r.n; i++) {
        const Jrp__V1__Decision *d = r.values[i];
        if (!strcmp(d->event_id, "fixed-1")) {
            fixed_decisions++;
            assert_int_equal(d->outcome, JRP__V1__DECISION_OUTCOME__DECISION_OUTCOME_APPLIED);
        }
        rejected += d->outcome == JRP__V1__DECISION_OUTCOME__DECISION_OUTCOME_REJECTED;
    }
    assert_int_equal(r.n, 10);
    assert_int_equal(fixed_decisions, 1);
    assert_int_equal(rejected, 8); /* 2 bad records, tried 4 times each */
    harness_records_free(&r, decision_desc);
    assert_int_equal(actions_for(h, "transport", "enterprise:" ENT2, 4), 2);
    assert_int_equal(actions_for(h, "transport", "enterprise:" ENT1, 4), 2);

    freeReplyObject(redisCommand(c, "DEL %s", done_key));
    redisFree(c);
    harness_destroy(h);
    free(out);
}

/* --- rebuild --------------------------------------------------------------------------------- */

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void hex(const char *s, size_t len, char *out)
{
    static const char d[] = "0123456789abcdef";
    for (size_t i = 0; i < len; i++) {
        out[2 * i] = d[(unsigned char)s[i] >> 4];
        out[2 * i + 1] = d[(unsigned char)s[i] & 15];
    }
    out[2 * len] = '\0';
}

/* Every key of the namespace with its type and value, one sorted line each, in a new string. */
static char *snapshot(const char *prefix, size_t *n_keys)
{
    redisContext *c = redis();
    char cursor[32] = "0";
    char **lines = NULL;
    size_t n = 0;
    do {
        redisReply *r = redisCommand(c, "SCAN %s MATCH %s* COUNT 1000", cursor, prefix);
        assert_non_null(r);
        assert_int_equal(r->type, REDIS_REPLY_ARRAY);
        snprintf(cursor, sizeof(cursor), "%s", r->element[0]->str);
        for (size_t i = 0; i < r->element[1]->elements; i++) {
            const char *key = r->element[1]->element[i]->str;
            redisReply *t = redisCommand(c, "TYPE %s", key);
            assert_non_null(t);
            const char *cmd = !strcmp(t->str, "string") ? "GET %s"
                              : !strcmp(t->str, "hash") ? "HGETALL %s"
                              : !strcmp(t->str, "zset") ? "ZRANGE %s 0 -1 WITHSCORES"
                              : !strcmp(t->str, "set")  ? "SMEMBERS %s"
                                                        : "LRANGE %s 0 -1";
            redisReply *v = redisCommand(c, cmd, key);
            assert_non_null(v);
            /* Hash fields and set members in a stable order. */
            size_t ne = v->type == REDIS_REPLY_ARRAY ? v->elements : 1;
            char **parts = calloc(ne + 1, sizeof(char *));
            assert_non_null(parts);
            size_t total = 0;
            for (size_t k = 0; k < ne; k++) {
                const redisReply *e = v->type == REDIS_REPLY_ARRAY ? v->element[k] : v;
                parts[k] = malloc(2 * e->len + 4);
                assert_non_null(parts[k]);
                hex(e->str ? e->str : "", e->str ? e->len : 0, parts[k]);
                total += strlen(parts[k]) + 1;
            }
            if (!strcmp(t->str, "hash")) { /* pair up field=value before sorting */
                for (size_t k = 0; k + 1 < ne; k += 2) {
                    char *pair = malloc(strlen(parts[k]) + strlen(parts[k + 1]) + 2);
                    sprintf(pair, "%s=%s", parts[k], parts[k + 1]);
                    free(parts[k]);
                    free(parts[k + 1]);
                    parts[k] = pair;
                    parts[k + 1] = NULL;
                }
                size_t m = 0;
                for (size_t k = 0; k < ne; k++)
                    if (parts[k])
                        parts[m++] = parts[k];
                ne = m;
            }
            if (!strcmp(t->str, "hash") || !strcmp(t->str, "set"))
                qsort(parts, ne, sizeof(char *), cmp_str);
            char *line = malloc(strlen(key) + strlen(t->str) + total + 8);
            assert_non_null(line);
            size_t o = (size_t)sprintf(line, "%s %s", key, t->str);
            for (size_t k = 0; k < ne; k++) {
                o += (size_t)sprintf(line + o, " %s", parts[k]);
                free(parts[k]);
            }
            free(parts);
            lines = realloc(lines, (n + 1) * sizeof(char *));
            assert_non_null(lines);
            lines[n++] = line;
            freeReplyObject(v);
            freeReplyObject(t);
        }
        freeReplyObject(r);
    } while (strcmp(cursor, "0"));
    if (n)
        qsort(lines, n, sizeof(char *), cmp_str);
    size_t total = 1;
    for (size_t i = 0; i < n; i++)
        total += strlen(lines[i]) + 1;
    char *all = malloc(total);
    assert_non_null(all);
    all[0] = '\0';
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        o += (size_t)sprintf(all + o, "%s\n", lines[i]);
        free(lines[i]);
    }
    free(lines);
    redisFree(c);
    *n_keys = n;
    return all;
}

/* Delete every key of the namespace (and only those: other tests share this Redis). */
static void delete_namespace(const char *prefix)
{
    redisContext *c = redis();
    char cursor[32] = "0";
    do {
        redisReply *r = redisCommand(c, "SCAN %s MATCH %s* COUNT 1000", cursor, prefix);
        assert_non_null(r);
        snprintf(cursor, sizeof(cursor), "%s", r->element[0]->str);
        for (size_t i = 0; i < r->element[1]->elements; i++) {
            assert_int_equal(strncmp(r->element[1]->element[i]->str, prefix, strlen(prefix)), 0);
            freeReplyObject(redisCommand(c, "DEL %s", r->element[1]->element[i]->str));
        }
        freeReplyObject(r);
    } while (strcmp(cursor, "0"));
    redisFree(c);
}

/* States, rules and tokens come back from Kafka exactly as they were, and the engine goes on
 * from them: a repeated event is a DUPLICATE. */
static void test_rebuild_after_redis_loss(void **state)
{
    (void)state;
    char *out = out_buf();
    harness_t *h = harness_create("ops-rebuild", NULL);
    harness_load_rules(h, NULL);
    ctl_expect(h, 0, out, "token create --department transport --note rebuild-test");
    ctl_expect(h, 0, out, "token create --department market");
    char *id = strstr(out, "id:");
    assert_non_null(id);
    char token_id[64];
    assert_int_equal(sscanf(id, "id: %63s", token_id), 1);
    char args[256];
    snprintf(args, sizeof(args), "token revoke %s", token_id);
    ctl_expect(h, 0, out, args);
    harness_engine_start(h);
    int64_t t = harness_now_ms();
    Jrp__V1__CreditEvent *evs[3] = {
        harness_event("rb-1", LISTED, ENTERPRISE, ENT1, "black.overload", t),
        harness_event("rb-2", LISTED, ENTERPRISE, ENT2, "black.overload", t),
        harness_event("rb-3", LISTED, PERSON_TYPE, PERSON, "black.overload", t),
    };
    evs[0]->valid_until_ms = t + 365LL * 86400000; /* something due, for the expiry index */
    harness_send(h, evs, 3);
    for (int i = 0; i < 3; i++)
        jrp__v1__credit_event__free_unpacked(evs[i], NULL);
    assert_true(harness_wait_decisions(h, 3, WAIT_MS) >= 3);
    assert_int_equal(harness_engine_signal(h, SIGTERM), 0);

    const char *prefix = config_get(h->cfg, "redis.prefix");
    size_t n_before = 0, n_gone = 0, n_after = 0;
    char *before = snapshot(prefix, &n_before);
    assert_non_null(strstr(before, ":state hash"));
    assert_non_null(strstr(before, "rules:active string"));
    assert_non_null(strstr(before, "token:id:"));
    delete_namespace(prefix);
    char *gone = snapshot(prefix, &n_gone);
    assert_int_equal(n_gone, 0);
    free(gone);

    ctl_expect(h, 0, out, "rebuild");
    expect_in(out, "rules:   1 versions restored, version 1 active");
    expect_in(out, "Redis holds 3 subject states");
    expect_in(out, "tokens:  2 restored");
    expect_in(out, "(1 in force, 1 revoked)");
    expect_in(out, "rebuild done");
    char *after = snapshot(prefix, &n_after);
    if (strcmp(before, after))
        fail_msg("Redis after rebuild differs:\n--- before (%zu keys)\n%s--- after (%zu keys)\n%s",
                 n_before, before, n_after, after);
    /* Run again on the full namespace: nothing changes. */
    ctl_expect(h, 0, out, "rebuild");
    expect_in(out, "held 3 subject states");
    free(after);
    after = snapshot(prefix, &n_after);
    assert_string_equal(before, after);

    /* The engine trusts the rebuilt states: the same event again is a duplicate, no action. */
    harness_engine_start(h);
    send1(h, harness_event("rb-1", LISTED, ENTERPRISE, ENT1, "black.overload", t));
    harness_records_t r;
    harness_read(h, "decisions", decision_desc, 4, 2000, WAIT_MS, &r);
    assert_int_equal(r.n, 4);
    const Jrp__V1__Decision *last = r.values[3];
    assert_string_equal(last->event_id, "rb-1");
    assert_int_equal(last->outcome, JRP__V1__DECISION_OUTCOME__DECISION_OUTCOME_DUPLICATE);
    harness_records_free(&r, decision_desc);
    assert_int_equal(actions_for(h, "transport", "enterprise:" ENT1, 2), 2);
    assert_int_equal(harness_engine_signal(h, SIGTERM), 0);

    free(before);
    free(after);
    harness_destroy(h);
    free(out);
}

/* --- topics ensure --------------------------------------------------------------------------- */

/* topic.decision_partitions = 0: credit.decisions as many as credit.events (a prefix of its own:
 * an existing topic is never changed). */
static void test_topics_ensure_decisions_as_events(void **state)
{
    (void)state;
    char *out = out_buf();
    harness_t *h = harness_create("ops-topics-dec", NULL);
    ctl_expect(h, 0, out, "topics ensure -o topic.decision_partitions=0");
    char line[512], topic[256];
    config_topic(h->cfg, "decisions", topic, sizeof(topic));
    snprintf(line, sizeof(line), "created  %s (3 partitions)", topic);
    expect_in(out, line);
    ctl_expect(h, 1, out, "topics ensure -o topic.decision_partitions=-1");
    expect_in(out, "topic.decision_partitions");
    harness_destroy(h);
    free(out);
}

static void test_topics_ensure_twice(void **state)
{
    (void)state;
    char *out = out_buf();
    harness_t *h = harness_create("ops-topics", NULL);
    ctl_expect(h, 0, out, "topics --help");
    expect_in(out, "topics ensure");
    ctl_expect(h, 1, out, "topics ensure --department Tax");
    assert_int_equal(count_of(out, "\n"), 1);
    expect_in(out, "not a department code");

    ctl_expect(h, 0, out, "topics ensure --department tax_x");
    const char *suffixes[] = {"events",   "state",  "decisions", "alerts", "dlq",
                              "feedback", "checks", "rules",     "tokens", "actions.tax_x"};
    char line[512], topic[256];
    for (size_t i = 0; i < 10; i++) {
        config_topic(h->cfg, suffixes[i], topic, sizeof(topic));
        /* rules and tokens: 1; actions and decisions: topic.action_partitions and
         * topic.decision_partitions, 1 by default */
        int single = !strcmp(suffixes[i], "rules") || !strcmp(suffixes[i], "tokens") ||
                     !strncmp(suffixes[i], "actions.", 8) || !strcmp(suffixes[i], "decisions");
        snprintf(line, sizeof(line), "created  %s (%d partitions)", topic, single ? 1 : 3);
        expect_in(out, line);
    }
    expect_in(out, "10 created, 0 already existed");

    ctl_expect(h, 0, out, "topics ensure --department tax_x");
    assert_int_equal(count_of(out, "created  "), 0);
    assert_int_equal(count_of(out, "exists   "), 10);
    expect_in(out, "0 created, 10 already existed");

    /* With a rule set active, its departments are included; a second run creates nothing. */
    harness_load_rules(h, NULL);
    ctl_expect(h, 0, out, "topics ensure");
    expect_in(out, "rule set version 1");
    config_topic(h->cfg, "actions.transport", topic, sizeof(topic));
    snprintf(line, sizeof(line), "%s (1 partitions)", topic);
    expect_in(out, line);
    ctl_expect(h, 0, out, "topics ensure");
    assert_int_equal(count_of(out, "created  "), 0);
    expect_in(out, line);
    expect_in(out, "\n0 created, ");
    /* topic.action_partitions = 0: as many as credit.events. */
    ctl_expect(h, 0, out, "topics ensure --department tax_y -o topic.action_partitions=0");
    config_topic(h->cfg, "actions.tax_y", topic, sizeof(topic));
    snprintf(line, sizeof(line), "created  %s (3 partitions)", topic);
    expect_in(out, line);
    ctl_expect(h, 0, out, "topics ensure --department tax_z -o topic.action_partitions=2");
    config_topic(h->cfg, "actions.tax_z", topic, sizeof(topic));
    snprintf(line, sizeof(line), "created  %s (2 partitions)", topic);
    expect_in(out, line);
    harness_destroy(h);
    free(out);
}

/* --- re-execution with the Kafka tools ------------------------------------------------------- */

/*
 * Run Kafka's ConsumerGroupCommand (the class behind kafka-consumer-groups.sh) from the jars that
 * `make up` cached, with args; returns its exit code, output into out.
 */
static int consumer_groups(const char *args, char *out, size_t out_size)
{
    const char *jars = getenv("JRP_KAFKA_JARS");
    char dir[512], cmd[4096];
    if (jars && *jars)
        snprintf(dir, sizeof(dir), "%s", jars);
    else
        snprintf(dir, sizeof(dir), "%s/.cache/jrp/kafka-4.1.1",
                 getenv("HOME") ? getenv("HOME") : "");
    snprintf(cmd, sizeof(cmd),
             "java -Xmx256m -cp '%s/*' org.apache.kafka.tools.consumer.group.ConsumerGroupCommand "
             "--bootstrap-server %s %s 2>&1",
             dir, testenv_kafka_bootstrap(), args);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t n = fread(out, 1, out_size - 1, p);
    out[n] = '\0';
    int status = pclose(p);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

/* Decisions per outcome for an event id. */
static size_t outcomes(const harness_records_t *r, const char *event_id, int outcome)
{
    size_t n = 0;
    for (size_t i = 0; i < r->n; i++) {
        const Jrp__V1__Decision *d = r->values[i];
        n += !strcmp(d->event_id, event_id) && (int)d->outcome == outcome;
    }
    return n;
}

/*
 * kafka-consumer-groups --reset-offsets --to-datetime … --execute on the engine's group, engine
 * stopped, then a restart: every event is read again, the ones already applied become DUPLICATE
 * decisions without actions, and an event sent while the engine was down is applied once.
 */
static void test_reset_offsets_re_execution(void **state)
{
    (void)state;
    char *out = out_buf();
    harness_t *h = harness_create("ops-reexec", NULL);
    harness_load_rules(h, NULL);
    harness_engine_start(h);
    int64_t t = harness_now_ms();
    Jrp__V1__CreditEvent *evs[3] = {
        harness_event("rx-1", LISTED, ENTERPRISE, ENT1, "black.overload", t),
        harness_event("rx-2", LISTED, ENTERPRISE, ENT2, "black.overload", t),
        harness_event("rx-3", LISTED, PERSON_TYPE, PERSON, "black.overload", t),
    };
    harness_send(h, evs, 3);
    for (int i = 0; i < 3; i++)
        jrp__v1__credit_event__free_unpacked(evs[i], NULL);
    assert_true(harness_wait_decisions(h, 3, WAIT_MS) >= 3);
    size_t transport = topic_count(h, "actions.transport", 4);
    size_t market = topic_count(h, "actions.market", 2);
    assert_true(transport >= 4 && market >= 2); /* at least two and one per enterprise */
    assert_int_equal(harness_engine_signal(h, SIGTERM), 0);

    /* While it is down, one new event arrives. */
    send1(h, harness_event("rx-4", LISTED, ENTERPRISE, "91110000MA01ABCD2Q", "black.overload", t));

    /* Reset the group to a minute before the first event. The engine is a static member: the
     * broker keeps it in the group until its session times out, and the tool refuses until then. */
    char events_topic[256], args[1024], when[64];
    config_topic(h->cfg, "events", events_topic, sizeof(events_topic));
    time_t from = (time_t)(t / 1000 - 60);
    struct tm tm;
    gmtime_r(&from, &tm);
    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S.000Z", &tm);
    snprintf(args, sizeof(args), "--group %s --topic %s --reset-offsets --to-datetime %s --execute",
             config_get(h->cfg, "engine.group"), events_topic, when);
    int rc = -1;
    int64_t until = harness_now_ms() + WAIT_MS;
    while (harness_now_ms() < until) {
        rc = consumer_groups(args, out, OUT_MAX);
        /* While the member is there it prints an error and an empty table, and exits 0. */
        if (rc == 0 && !strstr(out, "Error") && strstr(out, "NEW-OFFSET"))
            break;
        sleep(2);
    }
    if (rc != 0 || strstr(out, "Error") || !strstr(out, "NEW-OFFSET"))
        fail_msg("kafka-consumer-groups --reset-offsets: exit %d:\n%s", rc, out);
    /* One row per partition of the group's topic, each with its new offset. */
    char row[300];
    snprintf(row, sizeof(row), "\n%s %s ", config_get(h->cfg, "engine.group"), events_topic);
    if (count_of(out, row) != 3)
        fail_msg("kafka-consumer-groups --reset-offsets: not 3 partitions of %s:\n%s", events_topic,
                 out);

    harness_engine_start(h);
    harness_records_t r;
    harness_read(h, "decisions", decision_desc, 3 + 4, 3000, WAIT_MS, &r);
    assert_int_equal(r.n, 7);
    const int applied = JRP__V1__DECISION_OUTCOME__DECISION_OUTCOME_APPLIED;
    const int dup = JRP__V1__DECISION_OUTCOME__DECISION_OUTCOME_DUPLICATE;
    for (int i = 1; i <= 3; i++) {
        char id[16];
        snprintf(id, sizeof(id), "rx-%d", i);
        assert_int_equal(outcomes(&r, id, applied), 1);
        assert_int_equal(outcomes(&r, id, dup), 1);
    }
    assert_int_equal(outcomes(&r, "rx-4", applied), 1);
    harness_records_free(&r, decision_desc);
    /* No action twice: only rx-4's are new (as many as an enterprise listing gives). */
    assert_int_equal(actions_for(h, "transport", "enterprise:91110000MA01ABCD2Q", 1), 2);
    assert_int_equal(actions_for(h, "market", "enterprise:91110000MA01ABCD2Q", 1), 1);
    assert_int_equal(topic_count(h, "actions.transport", transport + 2), transport + 2);
    assert_int_equal(topic_count(h, "actions.market", market + 1), market + 1);
    assert_int_equal(harness_engine_signal(h, SIGTERM), 0);
    harness_destroy(h);
    free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_topics_ensure_twice),
        cmocka_unit_test(test_topics_ensure_decisions_as_events),
        cmocka_unit_test(test_dlq_list_show_redrive),
        cmocka_unit_test(test_rebuild_after_redis_loss),
        cmocka_unit_test(test_reset_offsets_re_execution),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
