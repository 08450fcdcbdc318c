/*
 * jrpctl dlq: the operator's view of the dead-letter topic. `list` prints one line per dead
 * letter, `show` one dead letter whole (headers, and the original value decoded as JSON when its
 * schema is known), `redrive` sends dead letters back to the topic they came from. A dead letter
 * is named PARTITION:OFFSET in the dlq topic.
 *
 * Redrive is at most once per dead letter: each one redriven is claimed first in the Redis set
 * <redis.prefix>dlq:redriven:<dlq topic> ("p:o" members), so a second run (or two operators at
 * once) never sends it twice. The redriven record carries the original key, value and headers,
 * without the jrp-error-* ones, plus jrp-redrive-count (one more than the dead letter's) and
 * jrp-redrive-from; a service that dead-letters it again copies its input's headers, so the
 * new dead letter shows how often it was tried, and past --max-redrives it is refused.
 */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include <jansson.h>

#include "ctl.h"
#include "jrp/v1/action.pb-c.h"
#include "jrp/v1/alert.pb-c.h"
#include "jrp/v1/check.pb-c.h"
#include "jrp/v1/decision.pb-c.h"
#include "jrp/v1/event.pb-c.h"
#include "jrp/v1/feedback.pb-c.h"
#include "jrp/v1/rules.pb-c.h"
#include "jrp/v1/state.pb-c.h"
#include "jrp/v1/token.pb-c.h"
#include "kafka.h"
#include "pbjson.h"
#include "redis.h"
#include "report.h"
#include "schemas.h"
#include "topicscan.h"

#define CTL_DLQ_TIMEOUT_MS 30000
#define CTL_DLQ_DEFAULT_LIMIT 3

/* What one dead letter says about itself. */
typedef struct ctl_dlq_rec_s {
    int32_t partition;
    int64_t offset;
    int64_t time_ms; /* jrp-error-time, else the record's timestamp */
    char code[64];
    char service[64];
    char origin_topic[256];
    int32_t origin_partition; /* -1 when unknown */
    int64_t origin_offset;    /* -1 when unknown */
    char reason[512];
    int redrives; /* jrp-redrive-count */
} ctl_dlq_rec_t;

/* The redriven set, sorted for bsearch. */
typedef struct ctl_dlq_done_s {
    char **ids;
    size_t n;
} ctl_dlq_done_t;

static int ctl_dlq_usage(FILE *out, int rc)
{
    fprintf(out,
            "usage: jrpctl dlq list [--since TIME] [--code C]\n"
            "       jrpctl dlq show DEAD_LETTER\n"
            "       jrpctl dlq redrive [--since TIME] [--code C] [--max-redrives N] [--dry-run]\n"
            "                          [DEAD_LETTER]...\n\n"
            "Dead letters are the records a service could not process, on <topic.prefix>dlq,\n"
            "with their original key, value and headers plus jrp-error-* headers. One is named\n"
            "PARTITION:OFFSET (a bare OFFSET when only one partition has it).\n\n"
            "  list     one line each: name, time, code, service, origin topic[partition]@offset,\n"
            "           redrive count, whether it was redriven, reason\n"
            "  show     every header, and the original value as JSON when its jrp-schema header\n"
            "           or origin topic says what it is (else text or hex)\n"
            "  redrive  send the original key, value and headers back to the origin topic and\n"
            "           partition, once per dead letter (remembered in Redis). A record that\n"
            "           fails again comes back with jrp-redrive-count one higher; a dead letter\n"
            "           already redriven N times (--max-redrives, default %d) is refused:\n"
            "           fix it at the source instead. --dry-run only says what it would do.\n\n"
            "  --since TIME  dead letters written at or after TIME (RFC 3339, e.g.\n"
            "                2026-11-27T03:00:00Z, or epoch milliseconds)\n"
            "  --code C      only dead letters whose jrp-error-code is C\n",
            CTL_DLQ_DEFAULT_LIMIT);
    return rc;
}

/* TIME: epoch milliseconds, a date (00:00 China Standard Time) or RFC 3339. 0/-1. */
static int ctl_dlq_parse_time(const char *s, int64_t *ms)
{
    return report_parse_time(s, ms) || *ms <= 0 ? -1 : 0;
}

/* RFC 3339 in UTC with milliseconds ("2026-11-27T03:01:02.123Z"). */
static const char *ctl_dlq_time(int64_t ms, char *buf, size_t size)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    if (ms <= 0 || !gmtime_r(&t, &tm)) {
        snprintf(buf, size, "-");
        return buf;
    }
    char base[32];
    strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf, size, "%s.%03dZ", base, (int)(ms % 1000));
    return buf;
}

/* The last value of header name as a string into buf ("" when absent). 1 if present. */
static int ctl_dlq_header(rd_kafka_headers_t *hdrs, const char *name, char *buf, size_t size)
{
    const void *val = NULL;
    size_t len = 0;
    buf[0] = '\0';
    if (!hdrs || rd_kafka_header_get_last(hdrs, name, &val, &len) || !val)
        return 0;
    if (len >= size)
        len = size - 1;
    memcpy(buf, val, len);
    buf[len] = '\0';
    return 1;
}

static void ctl_dlq_parse(const rd_kafka_message_t *m, ctl_dlq_rec_t *r)
{
    rd_kafka_headers_t *hdrs = NULL;
    char num[32];
    memset(r, 0, sizeof(*r));
    r->partition = m->partition;
    r->offset = m->offset;
    r->origin_partition = -1;
    r->origin_offset = -1;
    if (rd_kafka_message_headers(m, &hdrs))
        hdrs = NULL;
    ctl_dlq_header(hdrs, "jrp-error-code", r->code, sizeof(r->code));
    ctl_dlq_header(hdrs, "jrp-error-service", r->service, sizeof(r->service));
    ctl_dlq_header(hdrs, "jrp-error-topic", r->origin_topic, sizeof(r->origin_topic));
    ctl_dlq_header(hdrs, "jrp-error-reason", r->reason, sizeof(r->reason));
    if (ctl_dlq_header(hdrs, "jrp-error-partition", num, sizeof(num)) && num[0])
        r->origin_partition = (int32_t)strtol(num, NULL, 10);
    if (ctl_dlq_header(hdrs, "jrp-error-offset", num, sizeof(num)) && num[0])
        r->origin_offset = strtoll(num, NULL, 10);
    if (ctl_dlq_header(hdrs, "jrp-error-time", num, sizeof(num)) && num[0])
        r->time_ms = strtoll(num, NULL, 10);
    if (r->time_ms <= 0) {
        rd_kafka_timestamp_type_t tstype;
        r->time_ms = rd_kafka_message_timestamp(m, &tstype);
    }
    if (ctl_dlq_header(hdrs, "jrp-redrive-count", num, sizeof(num)) && num[0])
        r->redrives = (int)strtol(num, NULL, 10);
    /* One line per dead letter: no line breaks in the reason. */
    for (char *c = r->reason; *c; c++)
        if (*c == '\n' || *c == '\r' || *c == '\t')
            *c = ' ';
}

static int ctl_dlq_strcmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void ctl_dlq_done_free(ctl_dlq_done_t *d)
{
    for (size_t i = 0; i < d->n; i++)
        free(d->ids[i]);
    free(d->ids);
    d->ids = NULL;
    d->n = 0;
}

/* Read the redriven set (SMEMBERS). 0 or -1. */
static int ctl_dlq_done_load(redisContext *c, const char *key, ctl_dlq_done_t *d, char *errstr,
                             size_t errstr_size)
{
    redis_pipe_t *p = redis_pipe_create();
    int rc = -1;
    d->ids = NULL;
    d->n = 0;
    if (!p || redis_pipe_addv(p, "SMEMBERS", key, NULL)) {
        snprintf(errstr, errstr_size, "out of memory");
        goto done;
    }
    if (redis_pipe_exec(c, p, errstr, errstr_size))
        goto done;
    const redisReply *r = redis_pipe_reply(p, 0);
    if (!r || r->type != REDIS_REPLY_ARRAY) {
        snprintf(errstr, errstr_size, "redis: SMEMBERS %s: %s", key,
                 r && r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
        goto done;
    }
    d->ids = calloc(r->elements + 1, sizeof(char *));
    if (!d->ids) {
        snprintf(errstr, errstr_size, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < r->elements; i++)
        if (r->element[i]->type == REDIS_REPLY_STRING &&
            (d->ids[d->n] = strndup(r->element[i]->str, r->element[i]->len)))
            d->n++;
    qsort(d->ids, d->n, sizeof(char *), ctl_dlq_strcmp);
    rc = 0;
done:
    redis_pipe_destroy(p);
    return rc;
}

static int ctl_dlq_done_has(const ctl_dlq_done_t *d, const ctl_dlq_rec_t *r)
{
    char id[48], *key = id;
    snprintf(id, sizeof(id), "%d:%lld", (int)r->partition, (long long)r->offset);
    return d->n && bsearch(&key, d->ids, d->n, sizeof(char *), ctl_dlq_strcmp) != NULL;
}

/* One Redis command on its own, its integer reply into *out (may be NULL). 0 or -1. */
static int ctl_dlq_redis(redisContext *c, long long *out, char *errstr, size_t errstr_size,
                         const char *arg0, ...) __attribute__((sentinel));
static int ctl_dlq_redis(redisContext *c, long long *out, char *errstr, size_t errstr_size,
                         const char *arg0, ...)
{
    const char *argv[8];
    int argc = 0;
    va_list ap;
    va_start(ap, arg0);
    for (const char *a = arg0; a && argc < 8; a = va_arg(ap, const char *))
        argv[argc++] = a;
    va_end(ap);
    redis_pipe_t *p = redis_pipe_create();
    int rc = -1;
    if (!p || redis_pipe_add(p, argc, argv, NULL)) {
        snprintf(errstr, errstr_size, "out of memory");
    } else if (!redis_pipe_exec(c, p, errstr, errstr_size)) {
        const redisReply *r = redis_pipe_reply(p, 0);
        if (!r || r->type == REDIS_REPLY_ERROR) {
            snprintf(errstr, errstr_size, "redis: %s: %s", argv[0], r ? r->str : "no reply");
        } else {
            if (out)
                *out = r->type == REDIS_REPLY_INTEGER ? r->integer : 0;
            rc = 0;
        }
    }
    redis_pipe_destroy(p);
    return rc;
}

/* Parse "P:O" (or a bare "O": *partition = -1). 0 or -1. */
static int ctl_dlq_parse_name(const char *s, int32_t *partition, int64_t *offset)
{
    char *end;
    errno = 0;
    long long a = strtoll(s, &end, 10);
    if (errno || end == s || a < 0)
        return -1;
    if (*end == '\0') {
        *partition = -1;
        *offset = a;
        return 0;
    }
    if (*end != ':' || a > INT32_MAX)
        return -1;
    const char *o = end + 1;
    long long b = strtoll(o, &end, 10);
    if (errno || end == o || *end || b < 0)
        return -1;
    *partition = (int32_t)a;
    *offset = b;
    return 0;
}

/* --- list ------------------------------------------------------------------------------------ */

typedef struct ctl_dlq_filter_s {
    int64_t since_ms;
    const char *code;
    const char **names; /* redrive: only these "p:o" (normalised), n_names 0 = all */
    size_t n_names;
} ctl_dlq_filter_t;

static int ctl_dlq_matches(const ctl_dlq_filter_t *f, const ctl_dlq_rec_t *r)
{
    if (f->code && strcmp(f->code, r->code))
        return 0;
    if (f->since_ms > 0 && r->time_ms < f->since_ms)
        return 0;
    if (f->n_names) {
        char id[48];
        snprintf(id, sizeof(id), "%d:%lld", (int)r->partition, (long long)r->offset);
        for (size_t i = 0; i < f->n_names; i++)
            if (!strcmp(f->names[i], id))
                return 1;
        return 0;
    }
    return 1;
}

typedef struct ctl_dlq_list_s {
    const ctl_dlq_filter_t *filter;
    const ctl_dlq_done_t *done;
    int have_done; /* Redis answered */
    size_t shown;
} ctl_dlq_list_t;

static int ctl_dlq_on_list(const rd_kafka_message_t *m, void *arg)
{
    ctl_dlq_list_t *l = arg;
    ctl_dlq_rec_t r;
    ctl_dlq_parse(m, &r);
    if (!ctl_dlq_matches(l->filter, &r))
        return 0;
    if (!l->shown++)
        printf("%-11s %-24s %-16s %-9s %-40s %-8s %-8s %s\n", "DEAD_LETTER", "TIME", "CODE",
               "SERVICE", "ORIGIN", "REDRIVES", "REDRIVEN", "REASON");
    char id[48], when[40], origin[320];
    snprintf(id, sizeof(id), "%d:%lld", (int)r.partition, (long long)r.offset);
    if (r.origin_topic[0])
        snprintf(origin, sizeof(origin), "%s[%d]@%lld", r.origin_topic, (int)r.origin_partition,
                 (long long)r.origin_offset);
    else
        snprintf(origin, sizeof(origin), "-");
    printf("%-11s %-24s %-16s %-9s %-40s %-8d %-8s %s\n", id, ctl_dlq_time(r.time_ms, when, 40),
           r.code[0] ? r.code : "-", r.service[0] ? r.service : "-", origin, r.redrives,
           !l->have_done                   ? "?"
           : ctl_dlq_done_has(l->done, &r) ? "yes"
                                           : "no",
           r.reason[0] ? r.reason : "-");
    return 0;
}

/* Options shared by list and redrive. Returns 0, or the exit code after printing why. */
static int ctl_dlq_options(const char *cmd, int argc, char **argv, ctl_dlq_filter_t *f,
                           int *dry_run, int *limit, const char **names, size_t *n_names)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--since")) {
            if (!v || ctl_dlq_parse_time(v, &f->since_ms))
                return ctl_fail("dlq %s: --since takes RFC 3339 (2026-11-27T03:00:00Z) or "
                                "epoch milliseconds%s%s%s",
                                cmd, v ? ", not \"" : "", v ? v : "", v ? "\"" : "");
            i++;
        } else if (!strcmp(a, "--code")) {
            if (!v || !*v)
                return ctl_fail("dlq %s: --code needs an error code (e.g. bad_checksum)", cmd);
            f->code = v;
            i++;
        } else if (dry_run && !strcmp(a, "--dry-run")) {
            *dry_run = 1;
        } else if (limit && !strcmp(a, "--max-redrives")) {
            char *end;
            long n = v ? strtol(v, &end, 10) : -1;
            if (!v || *end || n < 1 || n > 1000)
                return ctl_fail("dlq %s: --max-redrives takes a number from 1 to 1000", cmd);
            *limit = (int)n;
            i++;
        } else if (names && a[0] != '-') {
            int32_t p;
            int64_t o;
            if (ctl_dlq_parse_name(a, &p, &o) || p < 0)
                return ctl_fail("dlq %s: \"%s\" is not a dead letter name PARTITION:OFFSET", cmd,
                                a);
            names[(*n_names)++] = a;
        } else {
            return ctl_fail("dlq %s: unexpected \"%s\" (jrpctl dlq --help)", cmd, a);
        }
    }
    return 0;
}

static const char *ctl_dlq_done_key(const config_t *cfg, const char *topic, char *buf, size_t size)
{
    snprintf(buf, size, "%sdlq:redriven:%s", config_get(cfg, "redis.prefix"), topic);
    return buf;
}

static int ctl_dlq_list(config_t *cfg, int argc, char **argv)
{
    ctl_dlq_filter_t f = {0};
    int rc = ctl_dlq_options("list", argc, argv, &f, NULL, NULL, NULL, NULL);
    if (rc)
        return rc;
    char topic[256], err[1024], key[512];
    config_topic(cfg, "dlq", topic, sizeof(topic));
    ctl_dlq_done_t done = {0};
    ctl_dlq_list_t l = {.filter = &f, .done = &done};
    /* Listing works without Redis; only the REDRIVEN column needs it. */
    redisContext *c = redis_connect(config_get(cfg, "redis.url"), 5000, err, sizeof(err));
    if (c && !ctl_dlq_done_load(c, ctl_dlq_done_key(cfg, topic, key, sizeof(key)), &done, err,
                                sizeof(err)))
        l.have_done = 1;
    if (!l.have_done)
        fprintf(stderr, "jrpctl: warning: Redis did not answer (%s): REDRIVEN shows \"?\"\n", err);
    if (c)
        redisFree(c);
    topicscan_opts_t o = TOPICSCAN_OPTS_INIT;
    o.since_ms = f.since_ms;
    rc = topicscan_run(cfg, topic, &o, ctl_dlq_on_list, &l, NULL, err, sizeof(err));
    ctl_dlq_done_free(&done);
    if (rc < 0)
        return ctl_fail("reading %s: %s", topic, err);
    if (rc == 1)
        printf("no dead letters (no topic %s)\n", topic);
    else if (!l.shown)
        printf("no dead letters%s\n", f.code || f.since_ms ? " match" : "");
    else
        printf("%zu dead letters\n", l.shown);
    return 0;
}

/* --- show ------------------------------------------------------------------------------------ */

static const ProtobufCMessageDescriptor *ctl_dlq_schema(rd_kafka_headers_t *hdrs,
                                                        const char *origin, const char *prefix)
{
    char name[128];
    const ProtobufCMessageDescriptor *desc;
    if (ctl_dlq_header(hdrs, "jrp-schema", name, sizeof(name)) &&
        (desc = schemas_by_name(name, strlen(name))))
        return desc;
    size_t plen = prefix ? strlen(prefix) : 0;
    if (!origin || strncmp(origin, prefix ? prefix : "", plen) ||
        !schemas_by_topic(origin + plen, &desc))
        return NULL;
    return desc;
}

/* Bytes for a person: a JSON string when UTF-8 text, else a hex dump. */
static void ctl_dlq_print_bytes(const char *label, const void *buf, size_t len)
{
    json_t *s = json_stringn(buf, len);
    if (s) {
        char *text = json_dumps(s, JSON_ENCODE_ANY);
        printf("%s (%zu bytes, text): %s\n", label, len, text ? text : "?");
        free(text);
        json_decref(s);
        return;
    }
    printf("%s (%zu bytes, hex):\n", label, len);
    const unsigned char *b = buf;
    for (size_t i = 0; i < len; i += 16) {
        printf("  %06zx ", i);
        for (size_t j = i; j < i + 16; j++)
            if (j < len)
                printf(" %02x", b[j]);
            else
                printf("   ");
        printf("  ");
        for (size_t j = i; j < i + 16 && j < len; j++)
            putchar(b[j] >= 0x20 && b[j] < 0x7f ? b[j] : '.');
        putchar('\n');
    }
}

typedef struct ctl_dlq_show_s {
    const config_t *cfg;
    int64_t offset;
    int found;
    int64_t next; /* the first offset after the wanted one, if it was not there */
} ctl_dlq_show_t;

static int ctl_dlq_on_show(const rd_kafka_message_t *m, void *arg)
{
    ctl_dlq_show_t *s = arg;
    if (m->offset != s->offset) {
        s->next = m->offset;
        return -2;
    }
    s->found = 1;
    ctl_dlq_rec_t r;
    ctl_dlq_parse(m, &r);
    char when[40];
    printf("dead letter  %s %d:%lld\n", rd_kafka_topic_name(m->rkt), (int)r.partition,
           (long long)r.offset);
    printf("time         %s\n", ctl_dlq_time(r.time_ms, when, sizeof(when)));
    printf("code         %s\n", r.code[0] ? r.code : "-");
    printf("service      %s\n", r.service[0] ? r.service : "-");
    if (r.origin_topic[0])
        printf("origin       %s [%d] offset %lld\n", r.origin_topic, (int)r.origin_partition,
               (long long)r.origin_offset);
    else
        printf("origin       - (no jrp-error-topic header: it cannot be redriven)\n");
    printf("reason       %s\n", r.reason[0] ? r.reason : "-");
    printf("redrives     %d\n", r.redrives);
    if (m->key)
        ctl_dlq_print_bytes("key", m->key, m->key_len);
    else
        printf("key          (none)\n");
    rd_kafka_headers_t *hdrs = NULL;
    if (rd_kafka_message_headers(m, &hdrs))
        hdrs = NULL;
    printf("headers\n");
    const char *name;
    const void *val;
    size_t size;
    for (size_t i = 0; hdrs && !rd_kafka_header_get_all(hdrs, i, &name, &val, &size); i++)
        printf("  %s: %.*s\n", name, val ? (int)size : 6, val ? (const char *)val : "(null)");
    if (!m->payload) {
        printf("value        (none: a tombstone)\n");
        return 0;
    }
    const ProtobufCMessageDescriptor *desc =
        ctl_dlq_schema(hdrs, r.origin_topic, config_get(s->cfg, "topic.prefix"));
    ProtobufCMessage *msg = desc ? protobuf_c_message_unpack(desc, NULL, m->len, m->payload) : NULL;
    json_t *json = msg ? pbjson_encode(msg, 0) : NULL;
    char *text = json ? json_dumps(json, JSON_INDENT(2)) : NULL;
    if (text) {
        printf("value (%s, %zu bytes):\n%s\n", desc->name, m->len, text);
    } else {
        char label[160];
        if (desc)
            snprintf(label, sizeof(label), "value, not a valid %s", desc->name);
        else
            snprintf(label, sizeof(label), "value, schema unknown");
        ctl_dlq_print_bytes(label, m->payload, m->len);
    }
    free(text);
    json_decref(json);
    if (msg)
        protobuf_c_message_free_unpacked(msg, NULL);
    return 0;
}

/* The partition holding offset when the name had none: the only one whose range has it. */
static int ctl_dlq_find_partition(const config_t *cfg, const char *topic, int64_t offset,
                                  int32_t *partition)
{
    char err[512];
    rd_kafka_t *rk = kafka_reader_create(cfg, err, sizeof(err));
    if (!rk)
        return ctl_fail("cannot create a Kafka client: %s", err);
    int rc = 0;
    int32_t n = topicscan_partitions(rk, topic, err, sizeof(err)), hits = 0;
    char list[256] = "";
    if (n < 0)
        rc = ctl_fail("%s", err);
    else if (n == 0)
        rc = ctl_fail("no topic %s: there are no dead letters", topic);
    for (int32_t p = 0; p < n && !rc; p++) {
        int64_t lo = 0, hi = 0;
        rd_kafka_resp_err_t e = kafka_watermarks(rk, topic, p, &lo, &hi, CTL_DLQ_TIMEOUT_MS);
        if (e) {
            rc = ctl_fail("offsets of %s [%d]: %s", topic, (int)p, rd_kafka_err2str(e));
        } else if (offset >= lo && offset < hi) {
            size_t l = strlen(list);
            snprintf(list + l, sizeof(list) - l, "%s%d:%lld", hits ? ", " : "", (int)p,
                     (long long)offset);
            *partition = p;
            hits++;
        }
    }
    if (!rc && hits == 0)
        rc = ctl_fail("no dead letter at offset %lld in any partition of %s", (long long)offset,
                      topic);
    else if (!rc && hits > 1)
        rc = ctl_fail("offset %lld is in %d partitions of %s: name one of %s", (long long)offset,
                      (int)hits, topic, list);
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    return rc;
}

static int ctl_dlq_show(config_t *cfg, int argc, char **argv)
{
    if (argc != 2)
        return ctl_fail("dlq show takes one dead letter, PARTITION:OFFSET (jrpctl dlq list)");
    int32_t p;
    int64_t o;
    if (ctl_dlq_parse_name(argv[1], &p, &o))
        return ctl_fail("dlq show: \"%s\" is not a dead letter name PARTITION:OFFSET", argv[1]);
    char topic[256], err[1024];
    config_topic(cfg, "dlq", topic, sizeof(topic));
    if (p < 0) {
        int rc = ctl_dlq_find_partition(cfg, topic, o, &p);
        if (rc)
            return rc;
    }
    topicscan_opts_t opts = TOPICSCAN_OPTS_INIT;
    opts.partition = p;
    opts.from = o;
    opts.max = 1;
    ctl_dlq_show_t s = {.cfg = cfg, .offset = o, .next = -1};
    int32_t n = 0;
    int rc = topicscan_run(cfg, topic, &opts, ctl_dlq_on_show, &s, &n, err, sizeof(err));
    if (rc == -1)
        return ctl_fail("reading %s: %s", topic, err);
    if (rc == 1)
        return ctl_fail("no topic %s: there are no dead letters", topic);
    if (p >= n)
        return ctl_fail("%s has no partition %d (it has %d)", topic, (int)p, (int)n);
    if (!s.found)
        return ctl_fail("no dead letter at %d:%lld in %s%s", (int)p, (long long)o, topic,
                        s.next >= 0 ? " (a transaction marker, or removed)" : "");
    return 0;
}

/* --- redrive --------------------------------------------------------------------------------- */

typedef struct ctl_dlq_item_s {
    ctl_dlq_rec_t rec;
    void *key, *value;
    size_t key_len, value_len;
    rd_kafka_headers_t *hdrs; /* what goes with it: original headers, jrp-error-* removed */
    int status;               /* delivery: 0 pending, 1 delivered, -1 failed */
    int64_t new_offset;
    char failure[256];
} ctl_dlq_item_t;

typedef struct ctl_dlq_redrive_s {
    const ctl_dlq_filter_t *filter;
    const ctl_dlq_done_t *done;
    const char *dlq_topic;
    int limit;
    ctl_dlq_item_t *items;
    size_t n_items, cap_items;
    size_t matched, already, refused;
    char *errstr;
    size_t errstr_size;
} ctl_dlq_redrive_t;

static void ctl_dlq_item_clear(ctl_dlq_item_t *it)
{
    free(it->key);
    free(it->value);
    if (it->hdrs)
        rd_kafka_headers_destroy(it->hdrs);
}

/* The headers a redriven record carries. NULL when out of memory. */
static rd_kafka_headers_t *ctl_dlq_redrive_headers(const rd_kafka_message_t *m, int count,
                                                   const char *dlq_topic)
{
    rd_kafka_headers_t *in = NULL, *out = rd_kafka_headers_new(8);
    if (!out)
        return NULL;
    if (!rd_kafka_message_headers(m, &in)) {
        const char *name;
        const void *val;
        size_t size;
        for (size_t i = 0; !rd_kafka_header_get_all(in, i, &name, &val, &size); i++)
            if (strncmp(name, "jrp-error-", 10) && strncmp(name, "jrp-redrive-", 12))
                rd_kafka_header_add(out, name, -1, val, val ? (ssize_t)size : 0);
    }
    char n[16], from[320];
    snprintf(n, sizeof(n), "%d", count);
    snprintf(from, sizeof(from), "%s:%d:%lld", dlq_topic, (int)m->partition, (long long)m->offset);
    rd_kafka_header_add(out, "jrp-redrive-count", -1, n, -1);
    rd_kafka_header_add(out, "jrp-redrive-from", -1, from, -1);
    return out;
}

static int ctl_dlq_on_redrive(const rd_kafka_message_t *m, void *arg)
{
    ctl_dlq_redrive_t *d = arg;
    ctl_dlq_rec_t r;
    ctl_dlq_parse(m, &r);
    if (!ctl_dlq_matches(d->filter, &r))
        return 0;
    d->matched++;
    if (ctl_dlq_done_has(d->done, &r)) {
        d->already++;
        return 0;
    }
    if (!r.origin_topic[0]) {
        printf("refused  %d:%lld (%s): no jrp-error-topic header, so no topic to send it to\n",
               (int)r.partition, (long long)r.offset, r.code[0] ? r.code : "-");
        d->refused++;
        return 0;
    }
    if (r.redrives >= d->limit) {
        printf("refused  %d:%lld (%s): redriven %d times already, the limit is %d; fix it at "
               "the source and send it again\n",
               (int)r.partition, (long long)r.offset, r.code[0] ? r.code : "-", r.redrives,
               d->limit);
        d->refused++;
        return 0;
    }
    if (d->n_items == d->cap_items) {
        size_t cap = d->cap_items ? 2 * d->cap_items : 16;
        ctl_dlq_item_t *items = realloc(d->items, cap * sizeof(*items));
        if (!items)
            goto oom;
        d->items = items;
        d->cap_items = cap;
    }
    ctl_dlq_item_t *it = &d->items[d->n_items];
    memset(it, 0, sizeof(*it));
    it->rec = r;
    it->key_len = m->key ? m->key_len : 0;
    it->value_len = m->payload ? m->len : 0;
    it->key = m->key ? malloc(it->key_len ? it->key_len : 1) : NULL;
    it->value = m->payload ? malloc(it->value_len ? it->value_len : 1) : NULL;
    it->hdrs = ctl_dlq_redrive_headers(m, r.redrives + 1, d->dlq_topic);
    if ((m->key && !it->key) || (m->payload && !it->value) || !it->hdrs) {
        ctl_dlq_item_clear(it);
        goto oom;
    }
    if (it->key)
        memcpy(it->key, m->key, it->key_len);
    if (it->value)
        memcpy(it->value, m->payload, it->value_len);
    d->n_items++;
    return 0;
oom:
    snprintf(d->errstr, d->errstr_size, "out of memory");
    return -1;
}

static void ctl_dlq_on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    (void)opaque;
    ctl_dlq_item_t *it = m->_private;
    if (!it)
        return;
    if (m->err) {
        it->status = -1;
        snprintf(it->failure, sizeof(it->failure), "%s", rd_kafka_err2str(m->err));
    } else {
        it->status = 1;
        it->new_offset = m->offset;
    }
}

static rd_kafka_t *ctl_dlq_producer(const config_t *cfg, char *errstr, size_t errstr_size)
{
    rd_kafka_conf_t *conf = kafka_producer_conf(cfg, NULL, NULL, 0, errstr, errstr_size);
    if (!conf)
        return NULL;
    rd_kafka_conf_set_dr_msg_cb(conf, ctl_dlq_on_delivery);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, errstr_size);
    if (!rk)
        rd_kafka_conf_destroy(conf);
    return rk; /* conf is now owned by rk */
}

/*
 * Claim, produce and wait for every item; unclaim what was not delivered. Returns the number of
 * failures; *sent the number delivered.
 */
static size_t ctl_dlq_send(const config_t *cfg, redisContext *c, const char *done_key,
                           ctl_dlq_redrive_t *d, size_t *sent)
{
    char err[1024];
    size_t failures = 0;
    *sent = 0;
    rd_kafka_t *rk = ctl_dlq_producer(cfg, err, sizeof(err));
    rd_kafka_t *meta = rk ? kafka_reader_create(cfg, err, sizeof(err)) : NULL;
    if (!rk || !meta) {
        ctl_fail("cannot create a Kafka client: %s", err);
        if (rk)
            rd_kafka_destroy(rk);
        return d->n_items ? d->n_items : 1;
    }
    int *claimed = calloc(d->n_items + 1, sizeof(int));
    for (size_t i = 0; claimed && i < d->n_items; i++) {
        ctl_dlq_item_t *it = &d->items[i];
        char id[48];
        snprintf(id, sizeof(id), "%d:%lld", (int)it->rec.partition, (long long)it->rec.offset);
        /* Claim first: of two runs at once, only one sends it. */
        long long added = 0;
        if (ctl_dlq_redis(c, &added, err, sizeof(err), "SADD", done_key, id, NULL)) {
            snprintf(it->failure, sizeof(it->failure), "%.200s", err);
            it->status = -1;
            continue;
        }
        if (added == 0) {
            d->already++;
            it->status = 2; /* another run took it */
            continue;
        }
        claimed[i] = 1;
        int32_t parts = topicscan_partitions(meta, it->rec.origin_topic, err, sizeof(err));
        int32_t part = it->rec.origin_partition;
        if (parts <= 0) {
            snprintf(it->failure, sizeof(it->failure), "%.200s",
                     parts < 0 ? err : "the origin topic does not exist");
            it->status = -1;
            continue;
        }
        if (part < 0 || part >= parts)
            part = RD_KAFKA_PARTITION_UA;
        rd_kafka_headers_t *hdrs = it->hdrs;
        rd_kafka_resp_err_t e;
        for (;;) {
            e = rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(it->rec.origin_topic),
                                  RD_KAFKA_V_PARTITION(part), RD_KAFKA_V_KEY(it->key, it->key_len),
                                  RD_KAFKA_V_VALUE(it->value, it->value_len),
                                  RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                  RD_KAFKA_V_HEADERS(hdrs), RD_KAFKA_V_OPAQUE(it), RD_KAFKA_V_END);
            if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL)
                break;
            rd_kafka_poll(rk, 100);
        }
        if (e) {
            snprintf(it->failure, sizeof(it->failure), "%s", rd_kafka_err2str(e));
            it->status = -1;
        } else {
            it->hdrs = NULL; /* now owned by rk */
        }
    }
    if (rd_kafka_flush(rk, CTL_DLQ_TIMEOUT_MS) != RD_KAFKA_RESP_ERR_NO_ERROR)
        fprintf(stderr, "jrpctl: some records were not acknowledged within %d s\n",
                CTL_DLQ_TIMEOUT_MS / 1000);
    for (size_t i = 0; i < d->n_items; i++) {
        ctl_dlq_item_t *it = &d->items[i];
        char id[48];
        snprintf(id, sizeof(id), "%d:%lld", (int)it->rec.partition, (long long)it->rec.offset);
        if (it->status == 1) {
            (*sent)++;
            printf("redriven %s (%s) -> %s [%d] offset %lld (redrive %d of %d)\n", id,
                   it->rec.code[0] ? it->rec.code : "-", it->rec.origin_topic,
                   (int)it->rec.origin_partition, (long long)it->new_offset, it->rec.redrives + 1,
                   d->limit);
        } else if (it->status != 2) {
            failures++;
            /* Not delivered, or not known to be: give it back so a later run retries it. A
             * record delivered after all is then sent twice; jrp's consumers are idempotent. */
            if (claimed && claimed[i] &&
                ctl_dlq_redis(c, NULL, err, sizeof(err), "SREM", done_key, id, NULL))
                fprintf(stderr, "jrpctl: %s stays marked redriven: %s\n", id, err);
            ctl_fail("redriving %s: %s", id, it->failure[0] ? it->failure : "not acknowledged");
        }
    }
    if (!claimed)
        failures += ctl_fail("out of memory");
    free(claimed);
    rd_kafka_consumer_close(meta);
    rd_kafka_destroy(meta);
    rd_kafka_destroy(rk);
    return failures;
}

static int ctl_dlq_redrive(config_t *cfg, int argc, char **argv)
{
    ctl_dlq_filter_t f = {0};
    int dry_run = 0, limit = CTL_DLQ_DEFAULT_LIMIT;
    const char **names = calloc((size_t)argc + 1, sizeof(char *));
    if (!names)
        return ctl_fail("out of memory");
    size_t n_names = 0;
    int rc = ctl_dlq_options("redrive", argc, argv, &f, &dry_run, &limit, names, &n_names);
    if (rc) {
        free(names);
        return rc;
    }
    /* Normalise "0:007" to "0:7" so names compare as dead letters do. */
    char(*norm)[48] = calloc(n_names + 1, sizeof(*norm));
    if (!norm) {
        free(names);
        return ctl_fail("out of memory");
    }
    for (size_t i = 0; i < n_names; i++) {
        int32_t p;
        int64_t o;
        ctl_dlq_parse_name(names[i], &p, &o);
        snprintf(norm[i], sizeof(norm[i]), "%d:%lld", (int)p, (long long)o);
        names[i] = norm[i];
    }
    f.names = names;
    f.n_names = n_names;

    char topic[256], err[1024], done_key[512];
    config_topic(cfg, "dlq", topic, sizeof(topic));
    ctl_dlq_done_key(cfg, topic, done_key, sizeof(done_key));
    ctl_dlq_done_t done = {0};
    ctl_dlq_redrive_t d = {.filter = &f,
                           .done = &done,
                           .dlq_topic = topic,
                           .limit = limit,
                           .errstr = err,
                           .errstr_size = sizeof(err)};
    redisContext *c = redis_connect(config_get(cfg, "redis.url"), 5000, err, sizeof(err));
    rc = 1;
    if (!c) {
        ctl_fail("redrive needs Redis to remember what it sent: %s", err);
        goto done;
    }
    if (ctl_dlq_done_load(c, done_key, &done, err, sizeof(err))) {
        ctl_fail("%s", err);
        goto done;
    }
    topicscan_opts_t o = TOPICSCAN_OPTS_INIT;
    o.since_ms = f.since_ms;
    int got = topicscan_run(cfg, topic, &o, ctl_dlq_on_redrive, &d, NULL, err, sizeof(err));
    if (got < 0) {
        ctl_fail("reading %s: %s", topic, err);
        goto done;
    }
    if (dry_run) {
        for (size_t i = 0; i < d.n_items; i++)
            printf("would redrive %d:%lld (%s) -> %s [%d] (redrive %d of %d)\n",
                   (int)d.items[i].rec.partition, (long long)d.items[i].rec.offset,
                   d.items[i].rec.code[0] ? d.items[i].rec.code : "-", d.items[i].rec.origin_topic,
                   (int)d.items[i].rec.origin_partition, d.items[i].rec.redrives + 1, limit);
        printf("dry run: %zu dead letters match, %zu would be redriven, %zu refused, %zu already "
               "redriven; nothing was sent\n",
               d.matched, d.n_items, d.refused, d.already);
        rc = 0;
        goto done;
    }
    size_t sent = 0, failures = ctl_dlq_send(cfg, c, done_key, &d, &sent);
    printf("%zu dead letters match: %zu redriven, %zu refused, %zu already redriven, %zu "
           "failed\n",
           d.matched, sent, d.refused, d.already, failures);
    rc = failures ? 1 : 0;
done:
    for (size_t i = 0; i < d.n_items; i++)
        ctl_dlq_item_clear(&d.items[i]);
    free(d.items);
    ctl_dlq_done_free(&done);
    if (c)
        redisFree(c);
    free(names);
    free(norm);
    return rc;
}

int ctl_dlq(config_t *cfg, int argc, char **argv)
{
    /* librdkafka's own error lines only when asked for (-o kafka.log_level=N): a command
     * that fails says why in one line. */
    char lerr[256];
    if (!config_get(cfg, "kafka.log_level") &&
        config_set(cfg, "kafka.log_level", "2", "jrpctl", lerr, sizeof(lerr)))
        return ctl_fail("%s", lerr);
    if (ctl_wants_help(argc, argv))
        return ctl_dlq_usage(stdout, 0);
    if (argc < 2)
        return ctl_dlq_usage(stderr, 2);
    if (!strcmp(argv[1], "list"))
        return ctl_dlq_list(cfg, argc - 1, argv + 1);
    if (!strcmp(argv[1], "show"))
        return ctl_dlq_show(cfg, argc - 1, argv + 1);
    if (!strcmp(argv[1], "redrive"))
        return ctl_dlq_redrive(cfg, argc - 1, argv + 1);
    return ctl_fail("unknown dlq command \"%s\" (jrpctl dlq --help)", argv[1]);
}
