/*
 * harness: private namespaces, subprocesses and topic readers for end-to-end tests.
 */
#include "harness.h"

#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "ids.h"
#include "kafka.h"
#include "testenv.h"
#include "topicdrop.h"

int64_t harness_now_ms(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

static const char *harness__bin(void)
{
    const char *b = getenv("JRP_BIN");
    return b && *b ? b : "build/san/bin";
}

static const char *harness__root(void)
{
    const char *r = getenv("JRP_ROOT");
    return r && *r ? r : ".";
}

harness_t *harness_create(const char *tag, const char *extra)
{
    const char *bs = testenv_kafka_bootstrap(), *url = testenv_redis_url();
    if (!bs || !url)
        fail_msg("no local Kafka/Redis in $JRP_TEST_CONF: start them with make up");
    harness_t *h = calloc(1, sizeof(*h));
    assert_non_null(h);
    /* Names: lower-case, dots and dashes only, unique per process and call. */
    snprintf(h->name, sizeof(h->name), "%s", testenv_unique(tag));
    snprintf(h->conf_path, sizeof(h->conf_path), "/tmp/jrp-harness-%s.conf", h->name);
    snprintf(h->engine_log, sizeof(h->engine_log), "/tmp/jrp-harness-%s.engine.log", h->name);
    FILE *f = fopen(h->conf_path, "w");
    assert_non_null(f);
    fprintf(f,
            "kafka.bootstrap.servers = %s\nredis.url = %s\ntopic.prefix = %s.\n"
            "redis.prefix = %s:\nengine.instance = %s\nengine.group = %s\n"
            "topic.partitions = 3\nengine.lapse_check_ms = 500\nengine.rules_check_ms = 500\n"
            /* ops ports: any free one, so tests and their services never collide */
            "engine.listen = 127.0.0.1:0\ndispatch.listen = 127.0.0.1:0\n"
            "ledger.listen = 127.0.0.1:0\n"
            "%s",
            bs, url, h->name, h->name, h->name, h->name, extra ? extra : "");
    fclose(f);
    h->cfg = config_create();
    char err[512];
    if (config_load_file(h->cfg, h->conf_path, err, sizeof(err)))
        fail_msg("harness config: %s", err);
    return h;
}

void harness_destroy(harness_t *h)
{
    if (!h)
        return;
    if (h->engine_pid > 0)
        harness_engine_signal(h, SIGTERM);
    /* The namespace's topics go with it: a local broker kept across many runs otherwise
     * collects partitions until its heap runs out. A failure only costs the space. */
    char err[512], prefix[sizeof(h->name) + 1];
    snprintf(prefix, sizeof(prefix), "%s.", h->name);
    if (topicdrop_prefix(h->cfg, prefix, 10000, err, sizeof(err)) < 0)
        fprintf(stderr, "harness: the topics of %s stay: %s\n", h->name, err);
    unlink(h->conf_path);
    config_destroy(h->cfg);
    free(h);
}

int harness_jrpctl(harness_t *h, char *out, size_t out_size, const char *fmt, ...)
{
    char args[2048], cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof(args), fmt, ap);
    va_end(ap);
    snprintf(cmd, sizeof(cmd), "%s/jrpctl %s -c %s 2>&1", harness__bin(), args, h->conf_path);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t n = 0;
    char buf[4096];
    size_t r;
    while ((r = fread(buf, 1, sizeof(buf), p)) > 0) {
        if (out && n + 1 < out_size) {
            size_t take = r < out_size - n - 1 ? r : out_size - n - 1;
            memcpy(out + n, buf, take);
            n += take;
        }
    }
    if (out)
        out[n] = '\0';
    int status = pclose(p);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

void harness_load_rules(harness_t *h, const char *dir)
{
    char path[1024], out[4096];
    snprintf(path, sizeof(path), "%s", dir ? dir : "");
    if (!dir)
        snprintf(path, sizeof(path), "%s/deploy/rules", harness__root());
    /* A broker that just started may still be creating its internal topics: a timeout there
     * is retried without --force, so a load that did land is not loaded twice. */
    int rc = -1;
    for (int attempt = 1; attempt <= 3 && rc != 0; attempt++) {
        rc = harness_jrpctl(h, out, sizeof(out), "rules load %s%s", path,
                            attempt == 1 ? " --force" : "");
        if (rc != 0)
            fprintf(stderr, "harness: jrpctl rules load %s (attempt %d): exit %d: %s\n", path,
                    attempt, rc, out);
    }
    if (rc != 0)
        fail_msg("jrpctl rules load %s: exit %d: %s", path, rc, out);
}

pid_t harness_service_start(harness_t *h, const char *binary, const char *log_path, ...)
{
    char bin[1024];
    snprintf(bin, sizeof(bin), "%s/%s", harness__bin(), binary);
    const char *argv[64];
    size_t argc = 0;
    argv[argc++] = bin;
    argv[argc++] = "-c";
    argv[argc++] = h->conf_path;
    va_list ap;
    va_start(ap, log_path);
    const char *a;
    while ((a = va_arg(ap, const char *)) != NULL && argc < 63)
        argv[argc++] = a;
    va_end(ap);
    argv[argc] = NULL;
    const char *logp = log_path ? log_path : h->engine_log;
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* a failed test must not leave a service behind */
        FILE *log = fopen(logp, "a");
        if (log) {
            dup2(fileno(log), 1);
            dup2(fileno(log), 2);
        }
        execv(bin, (char *const *)argv);
        _exit(127);
    }
    return pid;
}

int harness_service_stop(pid_t pid, int sig)
{
    if (pid <= 0)
        return -1;
    kill(pid, sig);
    int status = 0;
    for (int i = 0; i < 300; i++) { /* 30 s */
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid)
            break;
        if (i == 299) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
        }
        usleep(100000);
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

int harness_log_port(harness_t *h, const char *log_path, int timeout_ms)
{
    const char *path = log_path ? log_path : h->engine_log;
    int64_t until = harness_now_ms() + timeout_ms;
    do {
        FILE *f = fopen(path, "r");
        int port = -1;
        char line[4096];
        while (f && fgets(line, sizeof(line), f)) {
            const char *p = strstr(line, "bound to port ");
            if (p)
                port = atoi(p + strlen("bound to port "));
        }
        if (f)
            fclose(f);
        if (port > 0)
            return port;
        usleep(100000);
    } while (harness_now_ms() < until);
    return -1;
}

int harness_http_get_headers(int port, const char *path, const char *headers, char *out,
                             size_t out_size)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    struct timeval tv = {.tv_sec = 20};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    char req[4096];
    int n = snprintf(req, sizeof(req),
                     "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n%sConnection: close\r\n\r\n", path,
                     headers ? headers : "");
    /* The head and a body as large as out can take. */
    size_t cap = out_size + 65536, len = 0;
    char *buf = malloc(cap);
    assert_non_null(buf);
    if (n > 0 && (size_t)n < sizeof(req) && connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
        write(fd, req, (size_t)n) == n) {
        ssize_t r;
        while (len + 1 < cap && (r = read(fd, buf + len, cap - 1 - len)) > 0)
            len += (size_t)r;
    }
    close(fd);
    buf[len] = '\0';
    int status = -1;
    if (sscanf(buf, "HTTP/1.1 %d", &status) != 1)
        status = -1;
    const char *body = strstr(buf, "\r\n\r\n");
    if (out && out_size)
        snprintf(out, out_size, "%s", body ? body + 4 : "");
    free(buf);
    return status;
}

int harness_http_get(int port, const char *path, char *out, size_t out_size)
{
    return harness_http_get_headers(port, path, NULL, out, out_size);
}

void harness_engine_start(harness_t *h)
{
    assert_true(h->engine_pid <= 0);
    h->engine_pid = harness_service_start(h, "jrp-engine", NULL, (const char *)NULL);
}

int harness_engine_signal(harness_t *h, int sig)
{
    if (h->engine_pid <= 0)
        return -1;
    int rc = harness_service_stop(h->engine_pid, sig);
    h->engine_pid = 0;
    return rc;
}

Jrp__V1__CreditEvent *harness_event(const char *event_id, Jrp__V1__EventKind kind,
                                    Jrp__V1__SubjectType type, const char *id,
                                    const char *list_code, int64_t occurred_at_ms)
{
    Jrp__V1__CreditEvent *ev = malloc(sizeof(*ev));
    Jrp__V1__Subject *s = malloc(sizeof(*s));
    assert_non_null(ev);
    assert_non_null(s);
    jrp__v1__credit_event__init(ev);
    jrp__v1__subject__init(s);
    s->type = type;
    s->id = strdup(id);
    ev->subject = s;
    ev->event_id = strdup(event_id);
    ev->kind = kind;
    ev->source_department = strdup("transport");
    ev->occurred_at_ms = occurred_at_ms;
    if (list_code)
        ev->list_code = strdup(list_code);
    if (kind == JRP__V1__EVENT_KIND__EVENT_KIND_DELISTED)
        ev->delist_reason = JRP__V1__DELIST_REASON__DELIST_REASON_REPAIRED;
    return ev;
}

static void harness__dr(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    if (m->err)
        (*(int *)opaque)++;
}

static rd_kafka_t *harness__producer(harness_t *h, int *failures)
{
    char err[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    assert_int_equal(config_apply_kafka(h->cfg, conf, err, sizeof(err)), 0);
    assert_int_equal(rd_kafka_conf_set(conf, "partitioner", "murmur2_random", err, sizeof(err)), 0);
    assert_int_equal(rd_kafka_conf_set(conf, "enable.idempotence", "true", err, sizeof(err)), 0);
    rd_kafka_conf_set_dr_msg_cb(conf, harness__dr);
    rd_kafka_conf_set_opaque(conf, failures);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
    assert_non_null(rk);
    return rk;
}

static void harness__produce(rd_kafka_t *rk, const char *topic, const char *key, const void *v,
                             size_t len)
{
    for (;;) {
        rd_kafka_resp_err_t err =
            kafka_produce(rk, topic, RD_KAFKA_PARTITION_UA, key, strlen(key), v, len,
                          kafka_headers("jrp.v1.CreditEvent", NULL), NULL);
        if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            rd_kafka_poll(rk, 50);
            continue;
        }
        assert_int_equal(err, 0);
        return;
    }
}

/* harness_send and harness_send_paced: per_second 0 is as fast as the producer takes them. */
static void harness__send(harness_t *h, Jrp__V1__CreditEvent **events, size_t n, int per_second)
{
    int failures = 0;
    rd_kafka_t *rk = harness__producer(h, &failures);
    char topic[256], key[256];
    config_topic(h->cfg, "events", topic, sizeof(topic));
    uint8_t buf[4096];
    int64_t start = harness_now_ms();
    for (size_t i = 0; i < n; i++) {
        /* Event i is due at start + i / per_second. */
        while (per_second > 0 && harness_now_ms() < start + (int64_t)i * 1000 / per_second)
            rd_kafka_poll(rk, 1);
        size_t len = jrp__v1__credit_event__get_packed_size(events[i]);
        assert_true(len <= sizeof(buf));
        jrp__v1__credit_event__pack(events[i], buf);
        assert_true(ids_subject_key((ids_subject_type_t)events[i]->subject->type,
                                    events[i]->subject->id, key, sizeof(key)) > 0);
        harness__produce(rk, topic, key, buf, len);
    }
    assert_int_equal(rd_kafka_flush(rk, 30000), 0);
    assert_int_equal(failures, 0);
    rd_kafka_destroy(rk);
}

void harness_send(harness_t *h, Jrp__V1__CreditEvent **events, size_t n)
{
    harness__send(h, events, n, 0);
}

void harness_send_paced(harness_t *h, Jrp__V1__CreditEvent **events, size_t n, int per_second)
{
    harness__send(h, events, n, per_second);
}

void harness_send_raw(harness_t *h, const char *key, const void *value, size_t len)
{
    int failures = 0;
    rd_kafka_t *rk = harness__producer(h, &failures);
    char topic[256];
    config_topic(h->cfg, "events", topic, sizeof(topic));
    harness__produce(rk, topic, key, value, len);
    assert_int_equal(rd_kafka_flush(rk, 30000), 0);
    assert_int_equal(failures, 0);
    rd_kafka_destroy(rk);
}

static void harness__push(harness_records_t *r, const rd_kafka_message_t *m, const void *desc)
{
    r->keys = realloc(r->keys, (r->n + 1) * sizeof(char *));
    r->values = realloc(r->values, (r->n + 1) * sizeof(void *));
    r->lens = realloc(r->lens, (r->n + 1) * sizeof(size_t));
    r->header_dump = realloc(r->header_dump, (r->n + 1) * sizeof(char *));
    assert_non_null(r->keys);
    r->keys[r->n] = strndup(m->key ? (const char *)m->key : "", m->key ? m->key_len : 0);
    if (desc) {
        r->values[r->n] = protobuf_c_message_unpack(desc, NULL, m->len, m->payload);
        assert_non_null(r->values[r->n]);
    } else {
        r->values[r->n] = malloc(m->len + 1);
        memcpy(r->values[r->n], m->payload ? m->payload : "", m->len);
    }
    r->lens[r->n] = m->len;
    char dump[4096] = "";
    size_t dl = 0;
    rd_kafka_headers_t *hdrs = NULL;
    if (!rd_kafka_message_headers(m, &hdrs)) {
        const char *name;
        const void *val;
        size_t size;
        for (size_t i = 0; !rd_kafka_header_get_all(hdrs, i, &name, &val, &size); i++)
            if (dl < sizeof(dump))
                dl += (size_t)snprintf(dump + dl, sizeof(dump) - dl, "%s=%.*s;", name, (int)size,
                                       val ? (const char *)val : "");
    }
    r->header_dump[r->n] = strdup(dump);
    r->n++;
}

void harness_read(harness_t *h, const char *suffix, const void *desc, size_t min, int quiet_ms,
                  int timeout_ms, harness_records_t *out)
{
    char topic[256], err[512];
    memset(out, 0, sizeof(*out));
    config_topic(h->cfg, suffix, topic, sizeof(topic));
    rd_kafka_t *c = kafka_reader_create(h->cfg, err, sizeof(err));
    assert_non_null(c);
    int64_t start = harness_now_ms(), last = start;
    int assigned = 0;
    while (harness_now_ms() - start < timeout_ms) {
        if (!assigned) {
            const rd_kafka_metadata_t *md = NULL;
            rd_kafka_topic_t *rkt = rd_kafka_topic_new(c, topic, NULL);
            rd_kafka_resp_err_t e = rd_kafka_metadata(c, 0, rkt, &md, 5000);
            rd_kafka_topic_destroy(rkt);
            if (!e && md->topic_cnt == 1 && !md->topics[0].err && md->topics[0].partition_cnt) {
                rd_kafka_topic_partition_list_t *parts =
                    rd_kafka_topic_partition_list_new(md->topics[0].partition_cnt);
                for (int p = 0; p < md->topics[0].partition_cnt; p++)
                    rd_kafka_topic_partition_list_add(parts, topic, p)->offset =
                        RD_KAFKA_OFFSET_BEGINNING;
                assigned = !kafka_assign_explicit(c, parts, 5000, err, sizeof(err));
                rd_kafka_topic_partition_list_destroy(parts);
            }
            if (md)
                rd_kafka_metadata_destroy(md);
            if (!assigned) {
                usleep(200000);
                continue;
            }
        }
        rd_kafka_message_t *m = rd_kafka_consumer_poll(c, 100);
        if (!m) {
            if (out->n >= min && harness_now_ms() - last >= quiet_ms)
                break;
            continue;
        }
        if (!m->err) {
            harness__push(out, m, desc);
            last = harness_now_ms();
            if (quiet_ms == 0 && out->n >= min) {
                rd_kafka_message_destroy(m);
                break;
            }
        } else if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF && out->n >= min &&
                   harness_now_ms() - last >= quiet_ms) {
            rd_kafka_message_destroy(m);
            break;
        }
        rd_kafka_message_destroy(m);
    }
    rd_kafka_consumer_close(c);
    rd_kafka_destroy(c);
}

void harness_records_free(harness_records_t *r, const void *desc)
{
    for (size_t i = 0; i < r->n; i++) {
        free(r->keys[i]);
        free(r->header_dump[i]);
        if (desc)
            protobuf_c_message_free_unpacked(r->values[i], NULL);
        else
            free(r->values[i]);
    }
    free(r->keys);
    free(r->values);
    free(r->lens);
    free(r->header_dump);
    memset(r, 0, sizeof(*r));
}

size_t harness_wait_decisions(harness_t *h, size_t n, int timeout_ms)
{
    harness_records_t r;
    harness_read(h, "decisions", NULL, n, 0, timeout_ms, &r);
    size_t got = r.n;
    harness_records_free(&r, NULL);
    return got;
}
