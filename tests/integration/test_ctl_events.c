/*
 * Integration tests for `jrpctl events send` and `jrpctl tail`, run as the real (sanitized)
 * binary against the local Kafka: what is sent is what tail prints, keyed and partitioned by
 * subject key; one bad line sends nothing; dead letters show their bytes and headers. Every test
 * uses its own topic.prefix, and every jrpctl run is bounded in time.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "codec.h"
#include "jrp/v1/event.pb-c.h"
#include "kafka.h"
#include "testenv.h"

/* No single jrpctl run may take longer than this. */
#define RUN_LIMIT_MS 90000

static const char *const EV_ENT1 =
    "{\"event_id\":\"e-1\",\"kind\":\"listed\",\"subject\":{\"type\":\"enterprise\","
    "\"id\":\"91350100M000100Y43\",\"name\":\"某物流有限公司\"},\"source_department\":"
    "\"transport\",\"occurred_at_ms\":1767225600000,\"list_code\":\"black.overload\","
    "\"valid_from_ms\":1767225600000}";
static const char *const EV_ENT2 =
    "{\"event_id\":\"e-2\",\"kind\":\"listed\",\"subject\":{\"type\":\"enterprise\","
    "\"id\":\"91512081MA62K0260E\",\"name\":\"某运输有限公司\"},\"source_department\":"
    "\"transport\",\"occurred_at_ms\":1767225600000,\"list_code\":\"black.overload\","
    "\"valid_from_ms\":1767225600000}";
static const char *const EV_PERSON =
    "{\"event_id\":\"e-3\",\"kind\":\"listed\",\"subject\":{\"type\":\"person\","
    "\"id\":\"11010519491231002X\",\"name\":\"张三\"},\"source_department\":\"transport\","
    "\"occurred_at_ms\":1767225600000,\"list_code\":\"black.overload\","
    "\"valid_from_ms\":1767225600000}";
static const char *const EV_VEHICLE =
    "{\"event_id\":\"e-4\",\"kind\":\"listed\",\"subject\":{\"type\":\"vehicle\","
    "\"id\":\"津A12345\"},\"source_department\":\"transport\","
    "\"occurred_at_ms\":1767225600000,\"list_code\":\"black.overload\","
    "\"valid_from_ms\":1767225600000}";
/* The last character of the credit code is wrong. */
static const char *const EV_BAD_CHECKSUM =
    "{\"event_id\":\"e-bad\",\"kind\":\"listed\",\"subject\":{\"type\":\"enterprise\","
    "\"id\":\"91350100M000100Y44\"},\"source_department\":\"transport\","
    "\"occurred_at_ms\":1767225600000,\"list_code\":\"black.overload\","
    "\"valid_from_ms\":1767225600000}";

/* --- running jrpctl ------------------------------------------------------------------------ */

typedef struct run_s {
    int rc; /* exit code; 128 + signal if killed */
    char *out;
    char *err;
    long long elapsed_ms;
} run_t;

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static const char *conf_path(void)
{
    const char *p = getenv("JRP_TEST_CONF");
    return p && *p ? p : "build/local/jrp.conf";
}

static char *slurp_fd(int fd)
{
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    assert_non_null(buf);
    lseek(fd, 0, SEEK_SET);
    ssize_t n;
    while ((n = read(fd, buf + len, cap - len - 1)) > 0) {
        len += (size_t)n;
        if (cap - len < 2) {
            cap *= 2;
            buf = realloc(buf, cap);
            assert_non_null(buf);
        }
    }
    buf[len] = '\0';
    return buf;
}

static int temp_fd(void)
{
    char path[] = "/tmp/jrp-test-ctl-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    unlink(path);
    return fd;
}

/* A temporary file holding text; returns its path in buf. */
static const char *write_temp(const char *text, char *buf, size_t size)
{
    snprintf(buf, size, "/tmp/jrp-test-ctl-in-XXXXXX");
    int fd = mkstemp(buf);
    assert_true(fd >= 0);
    size_t len = strlen(text);
    assert_int_equal(write(fd, text, len), (ssize_t)len);
    close(fd);
    return buf;
}

/*
 * Run $JRP_BIN/jrpctl -c $JRP_TEST_CONF ARGS... (NULL-terminated) with input (NULL: empty) on
 * stdin. With term_after_ms > 0, SIGTERM is sent after that long. Killed after RUN_LIMIT_MS.
 */
static run_t run_ctl(const char *input, int term_after_ms, ...)
{
    const char *dir = getenv("JRP_BIN");
    char bin[1024];
    snprintf(bin, sizeof(bin), "%s/jrpctl", dir && *dir ? dir : "build/san/bin");
    const char *argv[64];
    int argc = 0;
    argv[argc++] = bin;
    argv[argc++] = "-c";
    argv[argc++] = conf_path();
    va_list ap;
    va_start(ap, term_after_ms);
    const char *a;
    while ((a = va_arg(ap, const char *)) && argc < 63)
        argv[argc++] = a;
    va_end(ap);
    argv[argc] = NULL;

    int in = temp_fd(), out = temp_fd(), err = temp_fd();
    if (input) {
        size_t len = strlen(input);
        assert_int_equal(write(in, input, len), (ssize_t)len);
        lseek(in, 0, SEEK_SET);
    }
    fflush(NULL);
    long long start = now_ms();
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(in, 0);
        dup2(out, 1);
        dup2(err, 2);
        execv(bin, (char *const *)argv);
        fprintf(stderr, "exec %s: %s\n", bin, strerror(errno));
        _exit(127);
    }
    int status = 0, termed = 0;
    for (;;) {
        pid_t w = waitpid(pid, &status, WNOHANG);
        if (w == pid)
            break;
        assert_true(w == 0 || (w < 0 && errno == EINTR));
        long long elapsed = now_ms() - start;
        if (term_after_ms > 0 && !termed && elapsed >= term_after_ms) {
            kill(pid, SIGTERM);
            termed = 1;
        }
        if (elapsed > RUN_LIMIT_MS) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            fail_msg("jrpctl %s did not finish within %d ms", argv[3], RUN_LIMIT_MS);
        }
        usleep(20000);
    }
    run_t r;
    r.elapsed_ms = now_ms() - start;
    r.rc = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    r.out = slurp_fd(out);
    r.err = slurp_fd(err);
    close(in);
    close(out);
    close(err);
    return r;
}

static void run_free(run_t *r)
{
    free(r->out);
    free(r->err);
}

/* Assert rc, showing what jrpctl said when it differs. */
#define assert_rc(r, want)                                                                         \
    do {                                                                                           \
        if ((r).rc != (want))                                                                      \
            fail_msg("jrpctl exited %d, want %d\nstdout:\n%s\nstderr:\n%s", (r).rc, (want),        \
                     (r).out, (r).err);                                                            \
    } while (0)

#define assert_contains(hay, needle)                                                               \
    do {                                                                                           \
        if (!strstr((hay), (needle)))                                                              \
            fail_msg("\"%s\" not found in:\n%s", (needle), (hay));                                 \
    } while (0)

static int count_lines(const char *s)
{
    int n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

/* Parse every line of text as JSON into lines[] (at most max); returns the count. */
static int parse_lines(const char *text, json_t **lines, int max)
{
    int n = 0;
    const char *s = text;
    while (*s) {
        const char *nl = strchr(s, '\n');
        size_t len = nl ? (size_t)(nl - s) : strlen(s);
        json_error_t jerr;
        assert_true(n < max);
        lines[n] = json_loadb(s, len, 0, &jerr);
        if (!lines[n])
            fail_msg("not JSON (%s): %.*s", jerr.text, (int)len, s);
        n++;
        s += len + (nl ? 1 : 0);
    }
    return n;
}

static void free_lines(json_t **lines, int n)
{
    for (int i = 0; i < n; i++)
        json_decref(lines[i]);
}

static const char *jstr(json_t *obj, const char *path1, const char *path2)
{
    json_t *v = json_object_get(obj, path1);
    if (path2)
        v = json_object_get(v, path2);
    return json_string_value(v);
}

/* --- Kafka helpers ------------------------------------------------------------------------- */

typedef struct test_ctx_s {
    config_t *cfg;
    char prefix[160];     /* "<unique>." */
    char prefix_opt[200]; /* "topic.prefix=<unique>." */
    char events[200];     /* "<unique>.events" */
} test_ctx_t;

static void ctx_init(test_ctx_t *c)
{
    const char *bs = testenv_kafka_bootstrap();
    if (!bs)
        fail_msg("no kafka.bootstrap.servers in $JRP_TEST_CONF: start the servers with make up");
    c->cfg = config_create();
    char err[512];
    assert_int_equal(config_set(c->cfg, "kafka.bootstrap.servers", bs, "test", err, sizeof(err)),
                     0);
    snprintf(c->prefix, sizeof(c->prefix), "%s.", testenv_unique("jrp-test-ctl"));
    snprintf(c->prefix_opt, sizeof(c->prefix_opt), "topic.prefix=%s", c->prefix);
    snprintf(c->events, sizeof(c->events), "%sevents", c->prefix);
}

static void ctx_free(test_ctx_t *c)
{
    config_destroy(c->cfg);
}

static void create_topic(test_ctx_t *c, const char *name, int partitions)
{
    char err[512];
    rd_kafka_t *rk = kafka_producer_create(c->cfg, NULL, 0, err, sizeof(err));
    assert_non_null(rk);
    kafka_topic_spec_t spec = {name, partitions, 1, NULL};
    if (kafka_topics_ensure(rk, &spec, 1, 10000, err, sizeof(err)))
        fail_msg("create %s: %s", name, err);
    /* Wait until the topic's partitions have leaders, so the first produce does not race. */
    for (int i = 0; i < 100; i++) {
        const rd_kafka_metadata_t *md = NULL;
        rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, name, NULL);
        int ready = 0;
        if (!rd_kafka_metadata(rk, 0, rkt, &md, 5000)) {
            ready = md->topic_cnt == 1 && !md->topics[0].err &&
                    md->topics[0].partition_cnt == partitions;
            for (int p = 0; ready && p < md->topics[0].partition_cnt; p++)
                ready = md->topics[0].partitions[p].leader >= 0;
            rd_kafka_metadata_destroy(md);
        }
        rd_kafka_topic_destroy(rkt);
        if (ready)
            break;
        usleep(100000);
    }
    rd_kafka_destroy(rk);
}

/* Sum of the high watermarks of topic's partitions. */
static int64_t topic_records(test_ctx_t *c, const char *topic, int partitions)
{
    char err[512];
    rd_kafka_t *rk = kafka_producer_create(c->cfg, NULL, 0, err, sizeof(err));
    assert_non_null(rk);
    int64_t sum = 0;
    for (int p = 0; p < partitions; p++) {
        int64_t lo, hi;
        rd_kafka_resp_err_t e;
        /* A topic created a moment ago may still be electing its leader (seen on a busy
         * machine as NOT_LEADER_OR_FOLLOWER): ask again for a while. */
        for (int tries = 0;
             (e = rd_kafka_query_watermark_offsets(rk, topic, p, &lo, &hi, 10000)) != 0 &&
             tries < 50;
             tries++)
            usleep(200000);
        assert_int_equal(e, 0);
        sum += hi;
    }
    rd_kafka_destroy(rk);
    return sum;
}

/* Send lines with `events send FILE`; asserts success. */
static void send_lines(test_ctx_t *c, const char *text, int n)
{
    char path[64], want[300];
    write_temp(text, path, sizeof(path));
    run_t r = run_ctl(NULL, 0, "-o", c->prefix_opt, "events", "send", path, NULL);
    unlink(path);
    assert_rc(r, 0);
    snprintf(want, sizeof(want), "sent %d event%s to %s\n", n, n == 1 ? "" : "s", c->events);
    assert_string_equal(r.out, want);
    run_free(&r);
}

/* `tail events --from-beginning --exit --value-only`: the event ids printed, in want's order. */
static void assert_tail_events(test_ctx_t *c, const char *const *want_ids, int n)
{
    run_t r = run_ctl(NULL, 0, "-o", c->prefix_opt, "tail", "events", "--from-beginning", "--exit",
                      "--value-only", "--timeout-ms", "60000", NULL);
    assert_rc(r, 0);
    assert_true(r.elapsed_ms < 55000); /* ended by --exit, not by the timeout */
    json_t *lines[16];
    int got = parse_lines(r.out, lines, 16);
    assert_int_equal(got, n);
    for (int i = 0; i < n; i++) {
        int found = 0;
        for (int j = 0; j < got; j++)
            found += !strcmp(jstr(lines[j], "event_id", NULL), want_ids[i]);
        if (found != 1)
            fail_msg("event %s printed %d times:\n%s", want_ids[i], found, r.out);
    }
    free_lines(lines, got);
    run_free(&r);
}

/* --- tests --------------------------------------------------------------------------------- */

/* Three events sent are what tail prints; keys are subject keys on the Java partition. */
static void test_send_and_tail(void **state)
{
    (void)state;
    test_ctx_t c;
    ctx_init(&c);
    create_topic(&c, c.events, 3);
    char text[4096];
    snprintf(text, sizeof(text), "%s\n%s\n\n%s\n", EV_ENT1, EV_ENT2, EV_PERSON);
    send_lines(&c, text, 3);

    /* --value-only: exactly those events, with their subjects. */
    run_t r = run_ctl(NULL, 0, "-o", c.prefix_opt, "tail", "events", "--from-beginning", "--exit",
                      "--value-only", "--timeout-ms", "60000", NULL);
    assert_rc(r, 0);
    assert_true(r.elapsed_ms < 55000);
    json_t *lines[8];
    int n = parse_lines(r.out, lines, 8);
    assert_int_equal(n, 3);
    static const char *const ids[][2] = {{"e-1", "91350100M000100Y43"},
                                         {"e-2", "91512081MA62K0260E"},
                                         {"e-3", "11010519491231002X"}};
    for (int i = 0; i < 3; i++) {
        int found = 0;
        for (int j = 0; j < n; j++)
            if (!strcmp(jstr(lines[j], "event_id", NULL), ids[i][0])) {
                found++;
                assert_string_equal(jstr(lines[j], "subject", "id"), ids[i][1]);
                assert_string_equal(jstr(lines[j], "kind", NULL), "EVENT_KIND_LISTED");
            }
        assert_int_equal(found, 1);
    }
    free_lines(lines, n);
    run_free(&r);

    /* The full record: topic, key and a decoded value. */
    r = run_ctl(NULL, 0, "-o", c.prefix_opt, "tail", c.events, "--from-beginning", "--exit",
                "--timeout-ms", "60000", NULL);
    assert_rc(r, 0);
    n = parse_lines(r.out, lines, 8);
    assert_int_equal(n, 3);
    for (int j = 0; j < n; j++) {
        assert_string_equal(jstr(lines[j], "topic", NULL), c.events);
        assert_true(json_is_integer(json_object_get(lines[j], "partition")));
        assert_true(json_is_integer(json_object_get(lines[j], "offset")));
        assert_true(json_integer_value(json_object_get(lines[j], "timestamp_ms")) > 0);
        char want[128];
        json_t *subj = json_object_get(json_object_get(lines[j], "value"), "subject");
        const char *t = json_string_value(json_object_get(subj, "type"));
        snprintf(want, sizeof(want), "%s:%s",
                 !strcmp(t, "SUBJECT_TYPE_PERSON") ? "person" : "enterprise",
                 json_string_value(json_object_get(subj, "id")));
        assert_string_equal(jstr(lines[j], "key", NULL), want);
        assert_null(json_object_get(lines[j], "headers"));
    }
    free_lines(lines, n);
    run_free(&r);

    /* A plain consumer sees protobuf values keyed by subject key, on murmur2's partition. */
    char err[512];
    rd_kafka_t *rk = kafka_consumer_create(c.cfg, testenv_unique("g"), NULL, 0, err, sizeof(err));
    assert_non_null(rk);
    rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(3);
    for (int p = 0; p < 3; p++)
        rd_kafka_topic_partition_list_add(parts, c.events, p)->offset = RD_KAFKA_OFFSET_BEGINNING;
    assert_int_equal(rd_kafka_assign(rk, parts), 0);
    rd_kafka_topic_partition_list_destroy(parts);
    int got = 0, enterprises = 0;
    long long deadline = now_ms() + 30000;
    while (got < 3 && now_ms() < deadline) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 200);
        if (!m)
            continue;
        if (!m->err) {
            Jrp__V1__CreditEvent *ev = jrp__v1__credit_event__unpack(NULL, m->len, m->payload);
            assert_non_null(ev);
            char want[128];
            snprintf(want, sizeof(want), "%s:%s",
                     ev->subject->type == JRP__V1__SUBJECT_TYPE__SUBJECT_TYPE_PERSON ? "person"
                                                                                     : "enterprise",
                     ev->subject->id);
            assert_int_equal(m->key_len, strlen(want));
            assert_memory_equal(m->key, want, m->key_len);
            enterprises += !strncmp(want, "enterprise:", 11);
            assert_int_equal(m->partition, rd_kafka_msg_partitioner_murmur2(
                                               NULL, m->key, m->key_len, 3, NULL, NULL));
            rd_kafka_headers_t *h = NULL;
            const void *val;
            size_t size;
            assert_int_equal(rd_kafka_message_headers(m, &h), 0);
            assert_int_equal(rd_kafka_header_get_last(h, "jrp-schema", &val, &size), 0);
            assert_int_equal(size, strlen("jrp.v1.CreditEvent"));
            assert_memory_equal(val, "jrp.v1.CreditEvent", size);
            jrp__v1__credit_event__free_unpacked(ev, NULL);
            got++;
        }
        rd_kafka_message_destroy(m);
    }
    assert_int_equal(got, 3);
    assert_int_equal(enterprises, 2);
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    ctx_free(&c);
}

/* One bad line among good ones: exit 1, every error named by line and field, nothing sent. */
static void test_send_bad_line_sends_nothing(void **state)
{
    (void)state;
    test_ctx_t c;
    ctx_init(&c);
    create_topic(&c, c.events, 3);
    char text[4096], path[64];
    snprintf(text, sizeof(text), "%s\n%s\n%s\n", EV_ENT1, EV_BAD_CHECKSUM, EV_PERSON);
    write_temp(text, path, sizeof(path));
    run_t r = run_ctl(NULL, 0, "-o", c.prefix_opt, "events", "send", path, NULL);
    assert_rc(r, 1);
    assert_string_equal(r.out, "");
    assert_contains(r.err, "line 2: subject.id: ");
    assert_contains(r.err, "[bad_checksum]");
    assert_contains(r.err,
                    "jrpctl: 1 bad line; nothing sent (use --skip-bad to send the good ones)");
    assert_int_equal(count_lines(r.err), 2);
    run_free(&r);
    assert_int_equal(topic_records(&c, c.events, 3), 0);
    assert_tail_events(&c, NULL, 0);

    /* A line with several problems lists each of them. */
    snprintf(text, sizeof(text), "%s\n{\"event_id\":\"x\",\"kind\":\"listed\"}\n", EV_ENT1);
    unlink(path);
    write_temp(text, path, sizeof(path));
    r = run_ctl(NULL, 0, "-o", c.prefix_opt, "events", "send", path, NULL);
    assert_rc(r, 1);
    assert_contains(r.err, "line 2: subject: ");
    assert_contains(r.err, "[missing_field]");
    assert_true(count_lines(r.err) >= 3);
    run_free(&r);
    unlink(path);
    assert_int_equal(topic_records(&c, c.events, 3), 0);
    ctx_free(&c);
}

/* --skip-bad sends the good lines and still lists the bad one. */
static void test_send_skip_bad(void **state)
{
    (void)state;
    test_ctx_t c;
    ctx_init(&c);
    create_topic(&c, c.events, 3);
    char text[4096], path[64], want[300];
    snprintf(text, sizeof(text), "%s\n%s\n%s\n", EV_ENT1, EV_BAD_CHECKSUM, EV_VEHICLE);
    write_temp(text, path, sizeof(path));
    run_t r = run_ctl(NULL, 0, "-o", c.prefix_opt, "events", "send", path, "--skip-bad", NULL);
    unlink(path);
    assert_rc(r, 0);
    snprintf(want, sizeof(want), "sent 2 events to %s, skipped 1 bad line\n", c.events);
    assert_string_equal(r.out, want);
    assert_contains(r.err, "line 2: subject.id: ");
    assert_contains(r.err, "[bad_checksum]");
    run_free(&r);
    static const char *const ids[] = {"e-1", "e-4"};
    assert_tail_events(&c, ids, 2);
    ctx_free(&c);
}

/* --dry-run checks without connecting. */
static void test_send_dry_run(void **state)
{
    (void)state;
    test_ctx_t c;
    ctx_init(&c);
    create_topic(&c, c.events, 3);
    char text[4096], path[64];
    snprintf(text, sizeof(text), "%s\n%s\n", EV_ENT1, EV_PERSON);
    write_temp(text, path, sizeof(path));
    run_t r = run_ctl(NULL, 0, "-o", c.prefix_opt, "events", "send", path, "--dry-run", NULL);
    assert_rc(r, 0);
    assert_string_equal(r.out, "2 valid events\n");
    assert_string_equal(r.err, "");
    run_free(&r);
    assert_int_equal(topic_records(&c, c.events, 3), 0);

    /* No broker is needed: an unreachable one is never contacted. */
    r = run_ctl(NULL, 0, "-o", c.prefix_opt, "-o", "kafka.bootstrap.servers=127.0.0.1:1", "events",
                "send", "--dry-run", path, NULL);
    assert_rc(r, 0);
    assert_string_equal(r.out, "2 valid events\n");
    assert_true(r.elapsed_ms < 8000);
    run_free(&r);
    unlink(path);

    /* A bad line fails a dry run too. */
    snprintf(text, sizeof(text), "%s\n%s\n", EV_ENT1, EV_BAD_CHECKSUM);
    write_temp(text, path, sizeof(path));
    r = run_ctl(NULL, 0, "-o", c.prefix_opt, "events", "send", path, "--dry-run", NULL);
    assert_rc(r, 1);
    assert_string_equal(r.out, "");
    assert_contains(r.err, "line 2: subject.id: ");
    assert_contains(r.err, "jrpctl: 1 bad line");
    run_free(&r);
    unlink(path);
    ctx_free(&c);
}

/* Empty input, a line that is not JSON, and an unreadable file: one clear error each. */
static void test_send_bad_input(void **state)
{
    (void)state;
    test_ctx_t c;
    ctx_init(&c);
    run_t r = run_ctl("\n   \n\n", 0, "-o", c.prefix_opt, "events", "send", NULL);
    assert_rc(r, 1);
    assert_string_equal(r.out, "");
    assert_contains(r.err, "jrpctl: no events in input");
    assert_int_equal(count_lines(r.err), 1);
    run_free(&r);

    r = run_ctl("", 0, "-o", c.prefix_opt, "events", "send", "-", NULL);
    assert_rc(r, 1);
    assert_contains(r.err, "no events in input");
    run_free(&r);

    char text[4096];
    snprintf(text, sizeof(text), "%s\nthis is not json\n", EV_ENT1);
    r = run_ctl(text, 0, "-o", c.prefix_opt, "events", "send", NULL);
    assert_rc(r, 1);
    assert_contains(r.err, "line 2: ");
    assert_contains(r.err, "not valid JSON");
    assert_contains(r.err, "[bad_json]");
    run_free(&r);

    r = run_ctl(NULL, 0, "-o", c.prefix_opt, "events", "send", "/nonexistent/events.jsonl", NULL);
    assert_rc(r, 1);
    assert_string_equal(
        r.err, "jrpctl: cannot read /nonexistent/events.jsonl: No such file or directory\n");
    run_free(&r);

    r = run_ctl(NULL, 0, "-o", c.prefix_opt, "events", "send", "a", "b", NULL);
    assert_rc(r, 1);
    assert_int_equal(count_lines(r.err), 1);
    run_free(&r);

    /* Brokers that cannot be reached: the bad line and one line saying so, nothing else. */
    snprintf(text, sizeof(text), "%s\n%s\n", EV_ENT1, EV_BAD_CHECKSUM);
    r = run_ctl(text, 0, "-o", c.prefix_opt, "-o", "kafka.bootstrap.servers=127.0.0.1:1", "events",
                "send", "--skip-bad", NULL);
    assert_rc(r, 1);
    assert_string_equal(r.out, "");
    assert_contains(r.err, "line 2: subject.id: ");
    assert_contains(r.err, "jrpctl: cannot reach Kafka at 127.0.0.1:1");
    assert_int_equal(count_lines(r.err), 2);
    run_free(&r);

    r = run_ctl(NULL, 0, "events", "send", "--bogus", NULL);
    assert_rc(r, 1);
    assert_contains(r.err, "unknown option \"--bogus\"");
    run_free(&r);
    ctx_free(&c);
}

/* A record the producer refuses is counted: exit 1 naming how many of how many failed. */
static void test_send_delivery_failure(void **state)
{
    (void)state;
    test_ctx_t c;
    ctx_init(&c);
    create_topic(&c, c.events, 3);
    char big[1001], text[8192], want[400];
    memset(big, 'x', 1000);
    big[1000] = '\0';
    /* EV_PERSON with a 1000-byte attribute: over a message.max.bytes of 1000. */
    snprintf(text, sizeof(text), "%s\n%.*s,\"attributes\":{\"note\":\"%s\"}}\n", EV_ENT1,
             (int)strlen(EV_PERSON) - 1, EV_PERSON, big);
    run_t r = run_ctl(text, 0, "-o", c.prefix_opt, "-o", "kafka.message.max.bytes=1000", "events",
                      "send", NULL);
    assert_rc(r, 1);
    assert_string_equal(r.out, "");
    snprintf(want, sizeof(want), "jrpctl: 1 of 2 events not delivered to %s: ", c.events);
    assert_contains(r.err, want);
    assert_int_equal(count_lines(r.err), 1);
    run_free(&r);
    ctx_free(&c);
}

/* Events read from stdin, with FILE absent or "-". */
static void test_send_stdin(void **state)
{
    (void)state;
    test_ctx_t c;
    ctx_init(&c);
    create_topic(&c, c.events, 3);
    char text[4096], want[300];
    snprintf(text, sizeof(text), "%s\r\n%s", EV_ENT2, EV_PERSON); /* CRLF, no final newline */
    run_t r = run_ctl(text, 0, "-o", c.prefix_opt, "events", "send", NULL);
    assert_rc(r, 0);
    snprintf(want, sizeof(want), "sent 2 events to %s\n", c.events);
    assert_string_equal(r.out, want);
    run_free(&r);

    snprintf(text, sizeof(text), "%s\n", EV_VEHICLE);
    r = run_ctl(text, 0, "-o", c.prefix_opt, "events", "send", "-", NULL);
    assert_rc(r, 0);
    snprintf(want, sizeof(want), "sent 1 event to %s\n", c.events);
    assert_string_equal(r.out, want);
    run_free(&r);
    static const char *const ids[] = {"e-2", "e-3", "e-4"};
    assert_tail_events(&c, ids, 3);
    ctx_free(&c);
}

/* An unknown topic fails with one line naming both names tried. */
static void test_tail_unknown_topic(void **state)
{
    (void)state;
    test_ctx_t c;
    ctx_init(&c);
    run_t r = run_ctl(NULL, 0, "-o", c.prefix_opt, "tail", "nosuch", "--exit", NULL);
    assert_rc(r, 1);
    assert_string_equal(r.out, "");
    char want[400];
    snprintf(want, sizeof(want), "jrpctl: no topic nosuch or %snosuch\n", c.prefix);
    assert_string_equal(r.err, want);
    run_free(&r);

    /* Brokers that cannot be reached: one line, after the metadata timeout. */
    r = run_ctl(NULL, 0, "-o", c.prefix_opt, "-o", "kafka.bootstrap.servers=127.0.0.1:1", "tail",
                "events", NULL);
    assert_rc(r, 1);
    assert_contains(r.err, "jrpctl: cannot reach Kafka at 127.0.0.1:1");
    assert_int_equal(count_lines(r.err), 1);
    run_free(&r);

    r = run_ctl(NULL, 0, "tail", NULL);
    assert_rc(r, 1);
    assert_int_equal(count_lines(r.err), 1);
    run_free(&r);
    r = run_ctl(NULL, 0, "tail", "events", "--max", "zero", NULL);
    assert_rc(r, 1);
    assert_contains(r.err, "--max takes a positive integer");
    run_free(&r);
    ctx_free(&c);
}

/* --max stops after N records, without --exit. */
static void test_tail_max(void **state)
{
    (void)state;
    test_ctx_t c;
    ctx_init(&c);
    create_topic(&c, c.events, 3);
    char text[4096];
    snprintf(text, sizeof(text), "%s\n%s\n%s\n", EV_ENT1, EV_ENT2, EV_PERSON);
    send_lines(&c, text, 3);
    run_t r = run_ctl(NULL, 0, "-o", c.prefix_opt, "tail", "events", "--from-beginning", "--max",
                      "2", "--value-only", "--timeout-ms", "60000", NULL);
    assert_rc(r, 0);
    assert_true(r.elapsed_ms < 55000);
    json_t *lines[8];
    int n = parse_lines(r.out, lines, 8);
    assert_int_equal(n, 2);
    for (int i = 0; i < n; i++)
        assert_non_null(jstr(lines[i], "event_id", NULL));
    free_lines(lines, n);
    run_free(&r);
    ctx_free(&c);
}

/* Following: --timeout-ms ends it, and so does SIGTERM, both with exit code 0. */
static void test_tail_follow(void **state)
{
    (void)state;
    test_ctx_t c;
    ctx_init(&c);
    create_topic(&c, c.events, 3);
    char text[4096];
    snprintf(text, sizeof(text), "%s\n%s\n", EV_ENT1, EV_PERSON);
    send_lines(&c, text, 2);

    /* From the end: the old records are not shown. */
    run_t r = run_ctl(NULL, 0, "-o", c.prefix_opt, "tail", "events", "--timeout-ms", "1500", NULL);
    assert_rc(r, 0);
    assert_string_equal(r.out, "");
    assert_true(r.elapsed_ms >= 1500);
    run_free(&r);

    /* From the beginning, until SIGTERM. */
    r = run_ctl(NULL, 5000, "-o", c.prefix_opt, "tail", "events", "--from-beginning",
                "--value-only", NULL);
    assert_rc(r, 0);
    assert_int_equal(count_lines(r.out), 2);
    run_free(&r);

    /* --exit without --from-beginning has nothing to read. */
    r = run_ctl(NULL, 0, "-o", c.prefix_opt, "tail", "events", "--exit", NULL);
    assert_rc(r, 0);
    assert_string_equal(r.out, "");
    run_free(&r);
    ctx_free(&c);
}

/* Committed records only; --exit still ends when a partition ends with transaction markers. */
static void test_tail_read_committed(void **state)
{
    (void)state;
    test_ctx_t c;
    ctx_init(&c);
    create_topic(&c, c.events, 1);
    char err[512];
    rd_kafka_t *rk = kafka_producer_create(c.cfg, testenv_unique("txn"), 10000, err, sizeof(err));
    if (!rk)
        fail_msg("transactional producer: %s", err);
    static const char *const lines[] = {EV_ENT1, EV_PERSON};
    for (int i = 0; i < 2; i++) {
        errlist_t el;
        errlist_init(&el);
        Jrp__V1__CreditEvent *ev = codec_event_from_text(lines[i], strlen(lines[i]), &el);
        assert_non_null(ev);
        size_t len = jrp__v1__credit_event__get_packed_size(ev);
        uint8_t *buf = malloc(len);
        assert_non_null(buf);
        jrp__v1__credit_event__pack(ev, buf);
        assert_null(rd_kafka_begin_transaction(rk));
        assert_int_equal(kafka_produce(rk, c.events, 0, "k", 1, buf, len,
                                       kafka_headers("jrp.v1.CreditEvent", NULL), NULL),
                         0);
        assert_int_equal(rd_kafka_flush(rk, 10000), 0);
        if (i == 0)
            assert_int_equal(kafka_txn_commit(rk, NULL, 10000, err, sizeof(err)), KAFKA_ERR_OK);
        else
            assert_int_equal(kafka_txn_abort(rk, 10000, err, sizeof(err)), KAFKA_ERR_OK);
        free(buf);
        jrp__v1__credit_event__free_unpacked(ev, NULL);
        errlist_clear(&el);
    }
    rd_kafka_destroy(rk);
    /* Offsets 0..3: e-1, commit marker, the aborted e-3, abort marker. */
    assert_int_equal(topic_records(&c, c.events, 1), 4);
    static const char *const ids[] = {"e-1"};
    assert_tail_events(&c, ids, 1);
    ctx_free(&c);
}

/* Dead letters and undecodable values: base64 bytes with the headers. */
static void test_tail_dead_letter(void **state)
{
    (void)state;
    test_ctx_t c;
    ctx_init(&c);
    char dlq[200];
    snprintf(dlq, sizeof(dlq), "%sdlq", c.prefix);
    create_topic(&c, dlq, 1);
    create_topic(&c, c.events, 1);
    char err[512];
    rd_kafka_t *rk = kafka_producer_create(c.cfg, NULL, 0, err, sizeof(err));
    assert_non_null(rk);
    static const char dead[] = "\x00\xff\x10jrp-dead"; /* AP8QanJwLWRlYWQ= */
    rd_kafka_headers_t *h = kafka_headers("jrp.v1.CreditEvent", NULL);
    rd_kafka_header_add(h, "jrp-error-reason", -1, "the bytes are not a CreditEvent", -1);
    rd_kafka_header_add(h, "jrp-error-code", -1, "decode_failed", -1);
    rd_kafka_header_add(h, "jrp-error-service", -1, "engine", -1);
    rd_kafka_header_add(h, "jrp-error-topic", -1, c.events, -1);
    rd_kafka_header_add(h, "jrp-error-partition", -1, "0", -1);
    rd_kafka_header_add(h, "jrp-error-offset", -1, "7", -1);
    rd_kafka_header_add(h, "jrp-error-time", -1, "1767225600000", -1);
    const char *key = "enterprise:91350100M000100Y43";
    assert_int_equal(kafka_produce(rk, dlq, 0, key, strlen(key), dead, sizeof(dead) - 1, h, NULL),
                     0);
    /* Bytes on the events topic that are no CreditEvent. */
    assert_int_equal(kafka_produce(rk, c.events, 0, key, strlen(key), "\xff\xff\xff", 3,
                                   kafka_headers("jrp.v1.CreditEvent", NULL), NULL),
                     0);
    assert_int_equal(rd_kafka_flush(rk, 10000), 0);
    rd_kafka_destroy(rk);

    run_t r = run_ctl(NULL, 0, "-o", c.prefix_opt, "tail", "dlq", "--from-beginning", "--exit",
                      "--timeout-ms", "60000", NULL);
    assert_rc(r, 0);
    json_t *lines[4];
    int n = parse_lines(r.out, lines, 4);
    assert_int_equal(n, 1);
    assert_string_equal(jstr(lines[0], "topic", NULL), dlq);
    assert_string_equal(jstr(lines[0], "key", NULL), key);
    assert_int_equal(json_integer_value(json_object_get(lines[0], "offset")), 0);
    assert_string_equal(jstr(lines[0], "value", NULL), "AP8QanJwLWRlYWQ=");
    assert_string_equal(jstr(lines[0], "headers", "jrp-error-code"), "decode_failed");
    assert_string_equal(jstr(lines[0], "headers", "jrp-error-reason"),
                        "the bytes are not a CreditEvent");
    assert_string_equal(jstr(lines[0], "headers", "jrp-error-topic"), c.events);
    assert_string_equal(jstr(lines[0], "headers", "jrp-error-offset"), "7");
    assert_string_equal(jstr(lines[0], "headers", "jrp-schema"), "jrp.v1.CreditEvent");
    free_lines(lines, n);
    run_free(&r);

    r = run_ctl(NULL, 0, "-o", c.prefix_opt, "tail", "events", "--from-beginning", "--exit",
                "--timeout-ms", "60000", NULL);
    assert_rc(r, 0);
    n = parse_lines(r.out, lines, 4);
    assert_int_equal(n, 1);
    assert_string_equal(jstr(lines[0], "value", NULL), "////");
    assert_string_equal(jstr(lines[0], "headers", "jrp-schema"), "jrp.v1.CreditEvent");
    assert_contains(jstr(lines[0], "error", NULL), "jrp.v1.CreditEvent");
    free_lines(lines, n);
    run_free(&r);
    ctx_free(&c);
}

/* Both commands answer --help on stdout with exit code 0. */
static void test_help(void **state)
{
    (void)state;
    run_t r = run_ctl(NULL, 0, "events", "--help", NULL);
    assert_rc(r, 0);
    assert_contains(r.out, "usage: jrpctl events send [FILE|-] [--skip-bad] [--dry-run]");
    run_free(&r);
    r = run_ctl(NULL, 0, "events", "send", "--help", NULL);
    assert_rc(r, 0);
    assert_contains(r.out, "--skip-bad");
    run_free(&r);
    r = run_ctl(NULL, 0, "tail", "--help", NULL);
    assert_rc(r, 0);
    assert_contains(r.out, "usage: jrpctl tail TOPIC");
    assert_contains(r.out, "--from-beginning");
    run_free(&r);
    r = run_ctl(NULL, 0, "--help", NULL);
    assert_rc(r, 0);
    assert_contains(r.out, "events");
    assert_contains(r.out, "tail");
    run_free(&r);
    r = run_ctl(NULL, 0, "events", NULL);
    assert_rc(r, 2);
    assert_contains(r.err, "usage: jrpctl events send");
    run_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_send_and_tail),
        cmocka_unit_test(test_send_bad_line_sends_nothing),
        cmocka_unit_test(test_send_skip_bad),
        cmocka_unit_test(test_send_dry_run),
        cmocka_unit_test(test_send_bad_input),
        cmocka_unit_test(test_send_delivery_failure),
        cmocka_unit_test(test_send_stdin),
        cmocka_unit_test(test_tail_unknown_topic),
        cmocka_unit_test(test_tail_max),
        cmocka_unit_test(test_tail_follow),
        cmocka_unit_test(test_tail_read_committed),
        cmocka_unit_test(test_tail_dead_letter),
        cmocka_unit_test(test_help),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
