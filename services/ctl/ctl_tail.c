/*
 * jrpctl tail: print a jrp topic as JSON lines. A read_committed consumer is assigned every
 * partition (no group is joined and no offset is committed, so tailing never disturbs the
 * services); each record is decoded by its jrp-schema header, or by the topic's name, and dead
 * letters or bytes that do not decode are shown base64-encoded with their headers.
 */
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/evp.h>

#include "ctl.h"
#include "jrp/v1/action.pb-c.h"
#include "jrp/v1/alert.pb-c.h"
#include "jrp/v1/check.pb-c.h"
#include "jrp/v1/decision.pb-c.h"
#include "jrp/v1/event.pb-c.h"
#include "jrp/v1/feedback.pb-c.h"
#include "jrp/v1/rules.pb-c.h"
#include "jrp/v1/state.pb-c.h"
#include "kafka.h"
#include "pbjson.h"
#include "schemas.h"

/* How long to wait for the brokers (metadata, watermarks) before giving up. */
#define CTL_TAIL_CONNECT_MS 10000
/* Longest single wait, so that a signal, --timeout-ms or --exit is noticed promptly. */
#define CTL_TAIL_POLL_MS 200

typedef struct ctl_tail_s {
    const char *topic;                      /* the resolved full name */
    const ProtobufCMessageDescriptor *desc; /* by topic name; NULL if unknown or dead letters */
    int dead_letters;                       /* the dlq topic */
    int value_only;
    int32_t n_parts; /* partition ids are 0..n_parts-1 */
    int64_t *end;    /* --exit: offset each partition must reach */
    char *done;      /* --exit: partition finished */
    int32_t n_done;
} ctl_tail_t;

static volatile sig_atomic_t ctl_tail_stop;

static void ctl_tail_on_signal(int sig)
{
    (void)sig;
    ctl_tail_stop = 1;
}

static int64_t ctl_tail_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int ctl_tail_usage(FILE *out, int rc)
{
    fprintf(
        out,
        "usage: jrpctl tail TOPIC [--from-beginning] [--exit] [--max N] [--value-only]\n"
        "                         [--timeout-ms T]\n\n"
        "Print the records of TOPIC (a full name, or a name after topic.prefix: \"events\")\n"
        "as JSON lines: {\"topic\",\"partition\",\"offset\",\"timestamp_ms\",\"key\",\"value\"}.\n"
        "Values are decoded by their jrp-schema header, else by the topic's name; dead\n"
        "letters and values that do not decode are base64 with their \"headers\".\n"
        "Reads committed records only, joins no group and commits nothing.\n\n"
        "  --from-beginning  start at the oldest record (default: only new records)\n"
        "  --exit            stop at the end of every partition as it was at the start\n"
        "  --max N           stop after N records\n"
        "  --value-only      print only the value of each record\n"
        "  --timeout-ms T    stop after T milliseconds in any case (exit code 0)\n\n"
        "Without --exit, --max or --timeout-ms it follows the topic until SIGINT or SIGTERM.\n");
    return rc;
}

/* Does name (a topic name without the prefix) tell what the topic holds? */
static int ctl_tail_match_suffix(const char *name, const ProtobufCMessageDescriptor **desc,
                                 int *dead_letters)
{
    if (!schemas_by_topic(name, desc))
        return 0;
    *dead_letters = !*desc;
    return 1;
}

/*
 * What topic holds: try it without the configured prefix, then after each '.', so that
 * "credit.actions.market" and "other.events" are both recognised.
 */
static void ctl_tail_topic_kind(ctl_tail_t *t, const char *prefix)
{
    size_t plen = prefix ? strlen(prefix) : 0;
    if (plen && !strncmp(t->topic, prefix, plen) &&
        ctl_tail_match_suffix(t->topic + plen, &t->desc, &t->dead_letters))
        return;
    for (const char *s = t->topic; s; s = strchr(s, '.') ? strchr(s, '.') + 1 : NULL)
        if (ctl_tail_match_suffix(s, &t->desc, &t->dead_letters))
            return;
}

/* A new JSON string holding the base64 of buf (standard alphabet, padded). */
static json_t *ctl_tail_base64(const void *buf, size_t len)
{
    if (len > INT32_MAX / 2)
        return NULL;
    unsigned char *out = malloc(4 * ((len + 2) / 3) + 1);
    if (!out)
        return NULL;
    int n = EVP_EncodeBlock(out, buf, (int)len);
    json_t *s = json_stringn((const char *)out, n > 0 ? (size_t)n : 0);
    free(out);
    return s;
}

/* Bytes as a JSON string when they are UTF-8 text, else as {"base64": "..."}. */
static json_t *ctl_tail_text(const void *buf, size_t len)
{
    json_t *s = json_stringn(buf, len);
    if (s)
        return s;
    return json_pack("{s:o*}", "base64", ctl_tail_base64(buf, len));
}

static json_t *ctl_tail_headers(const rd_kafka_message_t *m)
{
    json_t *obj = json_object();
    rd_kafka_headers_t *hdrs = NULL;
    if (!obj || rd_kafka_message_headers(m, &hdrs) != RD_KAFKA_RESP_ERR_NO_ERROR)
        return obj;
    const char *name;
    const void *val;
    size_t size;
    for (size_t i = 0; !rd_kafka_header_get_all(hdrs, i, &name, &val, &size); i++)
        json_object_set_new(obj, name, val ? ctl_tail_text(val, size) : json_null());
    return obj;
}

/*
 * The JSON of one record's value: the decoded message, or NULL when it is a dead letter or does
 * not decode (*error then says why, if it is not a dead letter).
 */
static json_t *ctl_tail_decode(const ctl_tail_t *t, const rd_kafka_message_t *m, char *error,
                               size_t error_size)
{
    error[0] = '\0';
    if (t->dead_letters)
        return NULL;
    const ProtobufCMessageDescriptor *desc = NULL;
    rd_kafka_headers_t *hdrs = NULL;
    const void *val;
    size_t size;
    if (rd_kafka_message_headers(m, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR &&
        rd_kafka_header_get_last(hdrs, "jrp-schema", &val, &size) == RD_KAFKA_RESP_ERR_NO_ERROR &&
        val)
        desc = schemas_by_name(val, size);
    if (!desc)
        desc = t->desc;
    if (!desc) {
        snprintf(error, error_size, "no jrp.v1 schema in the jrp-schema header or topic name");
        return NULL;
    }
    ProtobufCMessage *msg = protobuf_c_message_unpack(desc, NULL, m->len, m->payload);
    if (!msg) {
        snprintf(error, error_size, "not a valid %s protobuf message", desc->name);
        return NULL;
    }
    json_t *json = pbjson_encode(msg, 0);
    protobuf_c_message_free_unpacked(msg, NULL);
    if (!json)
        snprintf(error, error_size, "out of memory");
    return json;
}

/* The output line for m; the caller owns the reference. NULL only when out of memory. */
static json_t *ctl_tail_record(const ctl_tail_t *t, const rd_kafka_message_t *m)
{
    char error[256];
    json_t *value;
    int raw = 0;
    if (!m->payload) {
        value = json_null(); /* a tombstone in a compacted topic */
        raw = t->dead_letters;
        error[0] = '\0';
    } else {
        value = ctl_tail_decode(t, m, error, sizeof(error));
        if (!value) {
            raw = 1;
            value = ctl_tail_base64(m->payload, m->len);
        }
    }
    if (!value)
        return NULL;
    if (t->value_only)
        return value;
    json_t *out = json_object();
    if (!out) {
        json_decref(value);
        return NULL;
    }
    rd_kafka_timestamp_type_t tstype;
    int64_t ts = rd_kafka_message_timestamp(m, &tstype);
    json_object_set_new(out, "topic", json_string(rd_kafka_topic_name(m->rkt)));
    json_object_set_new(out, "partition", json_integer(m->partition));
    json_object_set_new(out, "offset", json_integer(m->offset));
    json_object_set_new(out, "timestamp_ms", json_integer(ts));
    json_object_set_new(out, "key", m->key ? ctl_tail_text(m->key, m->key_len) : json_null());
    json_object_set_new(out, "value", value);
    if (raw) {
        json_object_set_new(out, "headers", ctl_tail_headers(m));
        if (error[0])
            json_object_set_new(out, "error", json_string(error));
    }
    return out;
}

/* Print one line and flush. 0, or -errno when stdout cannot be written. */
static int ctl_tail_print(const ctl_tail_t *t, const rd_kafka_message_t *m)
{
    json_t *json = ctl_tail_record(t, m);
    char *text = json ? json_dumps(json, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    json_decref(json);
    if (!text)
        return -ENOMEM;
    errno = 0;
    int failed = fputs(text, stdout) == EOF || fputc('\n', stdout) == EOF || fflush(stdout);
    free(text);
    return failed ? -(errno ? errno : EIO) : 0;
}

/* Mark partition p finished when offset (the next one to read) has reached its end. */
static void ctl_tail_reached(ctl_tail_t *t, int32_t p, int64_t offset)
{
    if (!t->end || p < 0 || p >= t->n_parts || t->done[p] || offset < t->end[p])
        return;
    t->done[p] = 1;
    t->n_done++;
}

/* Parse a positive integer option value; 0 or -1. */
static int ctl_tail_parse_count(const char *s, long long *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v <= 0)
        return -1;
    *out = v;
    return 0;
}

/*
 * Find topic (or prefix + topic) in the cluster's metadata and fill t->topic (a copy in
 * name_buf) and t->n_parts. Returns 0, or the exit code after printing why.
 */
static int ctl_tail_find_topic(rd_kafka_t *rk, const config_t *cfg, const char *topic,
                               ctl_tail_t *t, char *name_buf, size_t name_size)
{
    const rd_kafka_metadata_t *md = NULL;
    rd_kafka_resp_err_t kerr = rd_kafka_metadata(rk, 1, NULL, &md, CTL_TAIL_CONNECT_MS);
    if (kerr)
        return ctl_fail("cannot reach Kafka at %s within %d s: %s",
                        config_get(cfg, "kafka.bootstrap.servers"), CTL_TAIL_CONNECT_MS / 1000,
                        rd_kafka_err2str(kerr));
    const char *prefix = config_get(cfg, "topic.prefix");
    char prefixed[512];
    snprintf(prefixed, sizeof(prefixed), "%s%s", prefix ? prefix : "", topic);
    const rd_kafka_metadata_topic_t *found = NULL;
    for (int pass = 0; pass < 2 && !found; pass++)
        for (int i = 0; i < md->topic_cnt && !found; i++)
            if (!strcmp(md->topics[i].topic, pass ? prefixed : topic))
                found = &md->topics[i];
    int rc = 0;
    if (!found) {
        if (!prefix || !*prefix || !strncmp(topic, prefix, strlen(prefix)))
            rc = ctl_fail("no topic %s", topic);
        else
            rc = ctl_fail("no topic %s or %s", topic, prefixed);
    } else if (found->partition_cnt <= 0) {
        rc = ctl_fail("topic %s has no partitions: %s", found->topic, rd_kafka_err2str(found->err));
    } else {
        snprintf(name_buf, name_size, "%s", found->topic);
        t->topic = name_buf;
        t->n_parts = 0;
        for (int i = 0; i < found->partition_cnt; i++)
            if (found->partitions[i].id >= t->n_parts)
                t->n_parts = found->partitions[i].id + 1;
    }
    rd_kafka_metadata_destroy(md);
    return rc;
}

/*
 * Assign every partition of t->topic: at the beginning, or at the high watermark of now. With
 * want_end, t->end receives each partition's end and empty partitions are done at once.
 * Returns 0, or the exit code after printing why.
 */
static int ctl_tail_assign(rd_kafka_t *rk, ctl_tail_t *t, int from_beginning, int want_end)
{
    if (want_end) {
        t->end = calloc((size_t)t->n_parts, sizeof(*t->end));
        t->done = calloc((size_t)t->n_parts, 1);
        if (!t->end || !t->done)
            return ctl_fail("out of memory");
    }
    rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(t->n_parts);
    if (!parts)
        return ctl_fail("out of memory");
    int rc = 0;
    for (int32_t p = 0; p < t->n_parts; p++) {
        int64_t lo = 0, hi = 0;
        rd_kafka_resp_err_t kerr = kafka_watermarks(rk, t->topic, p, &lo, &hi, CTL_TAIL_CONNECT_MS);
        if (kerr) {
            rc = ctl_fail("cannot read the offsets of %s [%d]: %s", t->topic, (int)p,
                          rd_kafka_err2str(kerr));
            goto done;
        }
        /* Explicit offsets: a logical one can wait 500 ms (kafka.h). */
        rd_kafka_topic_partition_list_add(parts, t->topic, p)->offset = from_beginning ? lo : hi;
        if (want_end) {
            t->end[p] = hi;
            ctl_tail_reached(t, p, from_beginning ? lo : hi);
        }
    }
    rd_kafka_resp_err_t kerr = rd_kafka_assign(rk, parts);
    if (kerr)
        rc = ctl_fail("cannot assign %s: %s", t->topic, rd_kafka_err2str(kerr));
done:
    rd_kafka_topic_partition_list_destroy(parts);
    return rc;
}

/* Read and print until told to stop. Returns the exit code. */
static int ctl_tail_run(rd_kafka_t *rk, ctl_tail_t *t, long long max, int64_t deadline)
{
    long long printed = 0;
    while (!ctl_tail_stop) {
        if (t->end && t->n_done == t->n_parts)
            return 0;
        if (max && printed >= max)
            return 0;
        int wait = CTL_TAIL_POLL_MS;
        if (deadline) {
            int64_t left = deadline - ctl_tail_now_ms();
            if (left <= 0)
                return 0;
            if (left < wait)
                wait = (int)left;
        }
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, wait);
        if (!m)
            continue;
        rd_kafka_resp_err_t err = m->err;
        if (err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            ctl_tail_reached(t, m->partition, m->offset);
        } else if (err == RD_KAFKA_RESP_ERR__FATAL ||
                   err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART ||
                   err == RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED) {
            char why[512];
            snprintf(why, sizeof(why), "%s", rd_kafka_message_errstr(m));
            rd_kafka_message_destroy(m);
            return ctl_fail("reading %s: %s", t->topic, why);
        } else if (!err) {
            int rc = ctl_tail_print(t, m);
            if (rc) {
                rd_kafka_message_destroy(m);
                /* A reader that went away (tail ... | head) is a normal end. */
                return rc == -EPIPE ? 0 : ctl_fail("cannot write output: %s", strerror(-rc));
            }
            printed++;
            ctl_tail_reached(t, m->partition, m->offset + 1);
        }
        /* Other errors are transient (a broker restarting); librdkafka retries them. */
        rd_kafka_message_destroy(m);
    }
    return 0;
}

int ctl_tail(config_t *cfg, int argc, char **argv)
{
    if (ctl_wants_help(argc, argv))
        return ctl_tail_usage(stdout, 0);
    const char *topic = NULL;
    int from_beginning = 0, want_end = 0, value_only = 0;
    long long max = 0, timeout_ms = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--from-beginning")) {
            from_beginning = 1;
        } else if (!strcmp(a, "--exit")) {
            want_end = 1;
        } else if (!strcmp(a, "--value-only")) {
            value_only = 1;
        } else if (!strcmp(a, "--max") || !strcmp(a, "--timeout-ms")) {
            long long *dst = a[2] == 'm' ? &max : &timeout_ms;
            if (i + 1 >= argc || ctl_tail_parse_count(argv[i + 1], dst))
                return ctl_fail("tail: %s takes a positive integer", a);
            i++;
        } else if (a[0] == '-' && a[1]) {
            return ctl_fail("tail: unknown option \"%s\" (jrpctl tail --help)", a);
        } else if (topic) {
            return ctl_fail("tail takes one TOPIC, not \"%s\" too", a);
        } else {
            topic = a;
        }
    }
    if (!topic)
        return ctl_fail("tail needs a TOPIC (jrpctl tail --help)");
    int64_t deadline = timeout_ms ? ctl_tail_now_ms() + timeout_ms : 0;

    /* End-of-partition events tell --exit where each partition ends. */
    char err[512];
    if (config_set(cfg, "kafka.enable.partition.eof", "true", "jrpctl tail", err, sizeof(err)) ||
        (!config_get(cfg, "kafka.log_level") &&
         config_set(cfg, "kafka.log_level", "2", "jrpctl tail", err, sizeof(err))))
        return ctl_fail("%s", err);
    /* librdkafka needs a group for assign(); it is never joined and nothing is committed. */
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    char group[96];
    snprintf(group, sizeof(group), "jrpctl-tail-%d-%lld%09ld", (int)getpid(), (long long)now.tv_sec,
             now.tv_nsec);
    rd_kafka_t *rk = kafka_consumer_create(cfg, group, NULL, 0, err, sizeof(err));
    if (!rk)
        return ctl_fail("cannot create a Kafka consumer: %s", err);

    ctl_tail_t t = {.value_only = value_only};
    char name[512];
    int rc = ctl_tail_find_topic(rk, cfg, topic, &t, name, sizeof(name));
    if (!rc) {
        ctl_tail_topic_kind(&t, config_get(cfg, "topic.prefix"));
        rc = ctl_tail_assign(rk, &t, from_beginning, want_end);
    }
    if (!rc) {
        struct sigaction sa = {0}, old_int, old_term, old_pipe;
        sa.sa_handler = ctl_tail_on_signal;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGINT, &sa, &old_int);
        sigaction(SIGTERM, &sa, &old_term);
        sa.sa_handler = SIG_IGN; /* a closed stdout is seen as EPIPE and ends the tail */
        sigaction(SIGPIPE, &sa, &old_pipe);
        rc = ctl_tail_run(rk, &t, max, deadline);
        sigaction(SIGINT, &old_int, NULL);
        sigaction(SIGTERM, &old_term, NULL);
        sigaction(SIGPIPE, &old_pipe, NULL);
    }
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    free(t.end);
    free(t.done);
    return rc;
}
