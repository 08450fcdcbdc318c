/*
 * jrpctl events send: credit events from JSON lines to the events topic. Every line is checked
 * with the codec the gateway and the engine use, and by default one bad line stops the whole
 * input, so that a department never half-sends a file. Events go out as protobuf, keyed by
 * subject key, through an idempotent producer whose every delivery report is checked.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "ctl.h"
#include "errlist.h"
#include "grow.h"
#include "ids.h"
#include "kafka.h"

/* How long to wait for the brokers before saying they cannot be reached. */
#define CTL_EVENTS_CONNECT_MS 10000
/* Default message.timeout.ms: an operator waits at most this long for a broker (overridable). */
#define CTL_EVENTS_MESSAGE_TIMEOUT "30000"

/* One validated event, ready to produce. */
typedef struct ctl_events_record_s {
    char *key;
    uint8_t *value;
    size_t value_len;
} ctl_events_record_t;

typedef struct ctl_events_batch_s {
    ctl_events_record_t *items;
    size_t count;
    size_t cap;
    size_t bad; /* lines refused */
} ctl_events_batch_t;

/* What the delivery reports said; the producer's opaque. */
typedef struct ctl_events_dr_s {
    size_t delivered;
    size_t failed;
    char first_error[256];
} ctl_events_dr_t;

static int ctl_events_usage(FILE *out, int rc)
{
    fprintf(out,
            "usage: jrpctl events send [FILE|-] [--skip-bad] [--dry-run]\n\n"
            "  send        read one jrp.v1.CreditEvent per line as JSON (FILE, or stdin when FILE\n"
            "              is - or absent; blank lines are skipped), check every line and produce\n"
            "              the events as protobuf to <topic.prefix>events, keyed by subject key\n"
            "  --skip-bad  send the good lines even if some are bad (the bad ones are listed);\n"
            "              without it one bad line means nothing is sent\n"
            "  --dry-run   check the lines only; do not connect to Kafka\n\n"
            "Bad lines are listed on stderr as \"line N: <field>: <message> [<code>]\".\n"
            "librdkafka logs only critical messages unless -o kafka.log_level=N or kafka.debug "
            "is set.\n");
    return rc;
}

static void ctl_events_batch_free(ctl_events_batch_t *b)
{
    for (size_t i = 0; i < b->count; i++) {
        free(b->items[i].key);
        free(b->items[i].value);
    }
    free(b->items);
    memset(b, 0, sizeof(*b));
}

/* Pack ev and its key into the batch. 0 or -1 (out of memory). */
static int ctl_events_batch_add(ctl_events_batch_t *b, const Jrp__V1__CreditEvent *ev)
{
    ctl_events_record_t *items = grow(b->items, &b->cap, b->count, sizeof(*items), 64);
    if (!items)
        return -1;
    b->items = items;
    /* The codec has checked the subject: type is known and id is valid. */
    const char *id = ev->subject->id;
    size_t key_size = strlen(id) + 16;
    ctl_events_record_t rec = {0};
    rec.key = malloc(key_size);
    rec.value_len = jrp__v1__credit_event__get_packed_size(ev);
    rec.value = malloc(rec.value_len ? rec.value_len : 1);
    if (!rec.key || !rec.value ||
        ids_subject_key((ids_subject_type_t)ev->subject->type, id, rec.key, key_size) < 0) {
        free(rec.key);
        free(rec.value);
        return -1;
    }
    jrp__v1__credit_event__pack(ev, rec.value);
    b->items[b->count++] = rec;
    return 0;
}

/*
 * Print one error of a bad line. The codec says where a syntax error is within the text it was
 * given; that text is one line, so "(line 1, column 7)" becomes "(column 7)".
 */
static void ctl_events_report(size_t lineno, const errlist_t *el, size_t i)
{
    char buf[1024];
    errlist_format(el, i, buf, sizeof(buf));
    char *p = strstr(buf, "(line 1, column ");
    if (p)
        memmove(p + 1, p + 9, strlen(p + 9) + 1);
    fprintf(stderr, "line %zu: %s\n", lineno, buf);
}

static int ctl_events_is_blank(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n')
            return 0;
    return 1;
}

/*
 * Read and check every line of in. Good events go into b, bad lines are reported on stderr and
 * counted in b->bad. Returns 0, or 1 after printing why the input could not be read.
 */
static int ctl_events_read(FILE *in, const char *name, ctl_events_batch_t *b)
{
    char *line = NULL;
    size_t cap = 0, lineno = 0;
    ssize_t n;
    int rc = 0;
    errlist_t el;
    errlist_init(&el);
    errno = 0;
    while ((n = getline(&line, &cap, in)) != -1) {
        lineno++;
        size_t len = (size_t)n;
        while (len && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            len--;
        if (ctl_events_is_blank(line, len))
            continue;
        Jrp__V1__CreditEvent *ev = codec_event_from_text(line, len, &el);
        if (!ev) {
            for (size_t i = 0; i < el.count; i++)
                ctl_events_report(lineno, &el, i);
            if (!el.count)
                fprintf(stderr, "line %zu: the event is not valid\n", lineno);
            b->bad++;
        } else {
            int added = ctl_events_batch_add(b, ev);
            jrp__v1__credit_event__free_unpacked(ev, NULL);
            if (added) {
                rc = ctl_fail("out of memory at line %zu", lineno);
                break;
            }
        }
        errlist_clear(&el);
        errno = 0;
    }
    if (!rc && ferror(in))
        rc = ctl_fail("cannot read %s: %s", name, strerror(errno ? errno : EIO));
    free(line);
    errlist_clear(&el);
    return rc;
}

static void ctl_events_on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    ctl_events_dr_t *dr = opaque;
    if (!m->err) {
        dr->delivered++;
        return;
    }
    if (!dr->failed++)
        snprintf(dr->first_error, sizeof(dr->first_error), "%s", rd_kafka_err2str(m->err));
}

/*
 * An idempotent producer (acks=all) with the Java client's partitioner, so that a subject's
 * events land on the partition any other client would choose, and a delivery report callback
 * that fills dr. *message_timeout_ms receives the effective message.timeout.ms.
 */
static rd_kafka_t *ctl_events_producer(const config_t *cfg, ctl_events_dr_t *dr,
                                       int *message_timeout_ms, char *errstr, size_t errstr_size)
{
    static const char *const extra[] = {
        "message.timeout.ms", CTL_EVENTS_MESSAGE_TIMEOUT, "log_level",
        "2", /* failures are reported as one line each; kafka.debug shows more */
        NULL};
    rd_kafka_conf_t *conf = kafka_producer_conf(cfg, extra, NULL, 0, errstr, errstr_size);
    if (!conf)
        return NULL;
    char tmo[32];
    size_t tmo_size = sizeof(tmo);
    *message_timeout_ms = 30000;
    if (rd_kafka_conf_get(conf, "message.timeout.ms", tmo, &tmo_size) == RD_KAFKA_CONF_OK)
        *message_timeout_ms = atoi(tmo);
    rd_kafka_conf_set_dr_msg_cb(conf, ctl_events_on_delivery);
    rd_kafka_conf_set_opaque(conf, dr);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, errstr_size);
    if (!rk)
        goto err;
    conf = NULL; /* now owned by rk */
    return rk;
err:
    rd_kafka_conf_destroy(conf);
    return NULL;
}

/* Produce every record of b to topic and wait for every delivery report. Returns the exit code. */
static int ctl_events_produce(const config_t *cfg, const ctl_events_batch_t *b, const char *topic)
{
    char err[512];
    ctl_events_dr_t dr = {0};
    int message_timeout_ms;
    rd_kafka_t *rk = ctl_events_producer(cfg, &dr, &message_timeout_ms, err, sizeof(err));
    if (!rk)
        return ctl_fail("cannot create a Kafka producer: %s", err);

    /* Fail fast with one clear line when no broker answers, before queueing anything. */
    const rd_kafka_metadata_t *md = NULL;
    rd_kafka_resp_err_t kerr = rd_kafka_metadata(rk, 0, NULL, &md, CTL_EVENTS_CONNECT_MS);
    if (kerr) {
        rd_kafka_destroy(rk);
        return ctl_fail("cannot reach Kafka at %s within %d s: %s",
                        config_get(cfg, "kafka.bootstrap.servers"), CTL_EVENTS_CONNECT_MS / 1000,
                        rd_kafka_err2str(kerr));
    }
    rd_kafka_metadata_destroy(md);

    const char *schema = jrp__v1__credit_event__descriptor.name;
    size_t not_queued = 0;
    rd_kafka_resp_err_t first_queue_err = RD_KAFKA_RESP_ERR_NO_ERROR;
    for (size_t i = 0; i < b->count; i++) {
        const ctl_events_record_t *rec = &b->items[i];
        for (;;) {
            kerr = kafka_produce(rk, topic, RD_KAFKA_PARTITION_UA, rec->key, strlen(rec->key),
                                 rec->value, rec->value_len, kafka_headers(schema, NULL), NULL);
            if (kerr != RD_KAFKA_RESP_ERR__QUEUE_FULL)
                break;
            rd_kafka_poll(rk, 100); /* serve delivery reports to make room */
        }
        if (kerr) {
            if (!not_queued++)
                first_queue_err = kerr;
        }
        rd_kafka_poll(rk, 0);
    }
    rd_kafka_resp_err_t flush_err = rd_kafka_flush(rk, message_timeout_ms + 10000);
    int pending = rd_kafka_outq_len(rk);
    char fatal[256] = "";
    if (rd_kafka_fatal_error(rk, fatal, sizeof(fatal)) == RD_KAFKA_RESP_ERR_NO_ERROR)
        fatal[0] = '\0';
    rd_kafka_destroy(rk);

    size_t failed = b->count - dr.delivered;
    if (failed == 0)
        return 0;
    char why[320];
    if (dr.failed)
        snprintf(why, sizeof(why), "%s", dr.first_error);
    else if (not_queued)
        snprintf(why, sizeof(why), "%s", rd_kafka_err2str(first_queue_err));
    else if (fatal[0])
        snprintf(why, sizeof(why), "%s", fatal);
    else if (pending > 0)
        snprintf(why, sizeof(why), "%d still waiting for a broker after %d ms", pending,
                 message_timeout_ms + 10000);
    else
        snprintf(why, sizeof(why), "%s", flush_err ? rd_kafka_err2str(flush_err) : "no report");
    return ctl_fail("%zu of %zu events not delivered to %s: %s", failed, b->count, topic, why);
}

static int ctl_events_send(config_t *cfg, int argc, char **argv)
{
    const char *path = NULL;
    int skip_bad = 0, dry_run = 0, only_files = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!only_files && !strcmp(a, "--skip-bad"))
            skip_bad = 1;
        else if (!only_files && !strcmp(a, "--dry-run"))
            dry_run = 1;
        else if (!only_files && !strcmp(a, "--"))
            only_files = 1;
        else if (!only_files && a[0] == '-' && a[1])
            return ctl_fail("events send: unknown option \"%s\" (jrpctl events send --help)", a);
        else if (path)
            return ctl_fail("events send takes one FILE (or - for stdin), not \"%s\" too", a);
        else
            path = a;
    }
    int from_stdin = !path || !strcmp(path, "-");
    const char *name = from_stdin ? "stdin" : path;
    FILE *in = from_stdin ? stdin : fopen(path, "r");
    if (!in)
        return ctl_fail("cannot read %s: %s", path, strerror(errno));

    ctl_events_batch_t b = {0};
    int rc = ctl_events_read(in, name, &b);
    if (!from_stdin)
        fclose(in);
    if (rc)
        goto done;

    size_t bad = b.bad;
    const char *plural = bad == 1 ? "" : "s";
    if (b.count == 0 && bad == 0) {
        rc = ctl_fail("no events in input (%s)", name);
        goto done;
    }
    if (bad && !skip_bad) {
        if (dry_run)
            rc = ctl_fail("%zu bad line%s, %zu valid event%s", bad, plural, b.count,
                          b.count == 1 ? "" : "s");
        else
            rc = ctl_fail("%zu bad line%s; nothing sent (use --skip-bad to send the good ones)",
                          bad, plural);
        goto done;
    }
    if (b.count == 0) {
        rc = ctl_fail("no valid events in input: %zu bad line%s", bad, plural);
        goto done;
    }

    char skipped[64] = "";
    if (bad)
        snprintf(skipped, sizeof(skipped), ", skipped %zu bad line%s", bad, plural);
    if (dry_run) {
        printf("%zu valid event%s%s\n", b.count, b.count == 1 ? "" : "s", skipped);
        goto done;
    }
    char topic[512];
    config_topic(cfg, "events", topic, sizeof(topic));
    rc = ctl_events_produce(cfg, &b, topic);
    if (!rc)
        printf("sent %zu event%s to %s%s\n", b.count, b.count == 1 ? "" : "s", topic, skipped);
done:
    ctl_events_batch_free(&b);
    return rc;
}

int ctl_events(config_t *cfg, int argc, char **argv)
{
    if (argc < 2)
        return ctl_events_usage(stderr, 2);
    if (ctl_wants_help(argc, argv))
        return ctl_events_usage(stdout, 0);
    if (!strcmp(argv[1], "send"))
        return ctl_events_send(cfg, argc - 1, argv + 1);
    return ctl_fail("unknown events command \"%s\" (jrpctl events --help)", argv[1]);
}
