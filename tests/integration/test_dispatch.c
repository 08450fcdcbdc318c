/*
 * End-to-end tests of jrp-dispatch against the real local Kafka: actions produced to a private
 * actions topic are delivered to an in-process webhook receiver that checks every signature,
 * fails about 30% of requests (500, a reset connection, an answer slower than timeout_ms, 429
 * with Retry-After) and refuses one action with 400; dispatch is killed with SIGKILL mid-stream
 * and restarted. Asserted: every action accepted (distinct Idempotency-Keys), never out of order
 * per subject, the refusal dead-lettered with its reason, RECEIVED feedback for the rest.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"
#include "jrp/v1/feedback.pb-c.h"
#include "kafka.h"
#include "rulesync.h"
#include "testenv.h"

#define SECRET "test-secret-1"
#define TRACEPARENT "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
#define SUBJECTS 20
#define PER_SUBJECT 15
#define N_ACTIONS (SUBJECTS * PER_SUBJECT)
#define TIMEOUT_MS 700
#define REJECT_S 3 /* the action the department refuses: subject 3, sequence 4 */
#define REJECT_Q 4

/* --- the webhook receiver --------------------------------------------------------------------- */

typedef struct receiver_s {
    int lfd, port;
    pthread_t thread;
    volatile int stop;
    int inject;   /* inject failures */
    SSL_CTX *tls; /* HTTPS when set */
    pthread_mutex_t mu;
    pthread_t conns[8192];
    int n_conns;
    /* what was seen, under mu */
    int requests, bad_signature, bad_headers, violations, duplicates, distinct;
    int fail_500, fail_reset, fail_slow, fail_429, rejected;
    int expected[SUBJECTS];              /* next sequence a subject may be accepted at */
    int accepted[SUBJECTS][PER_SUBJECT]; /* 2xx answers per Idempotency-Key */
    char violation_text[256];
} receiver_t;

typedef struct conn_s {
    receiver_t *r;
    int fd;
} conn_t;

/* One connection's transport: plain or TLS. */
typedef struct io_s {
    int fd;
    SSL *ssl;
} io_t;

static ssize_t io_recv(io_t *io, void *buf, size_t len)
{
    if (io->ssl) {
        int n = SSL_read(io->ssl, buf, (int)len);
        return n > 0 ? n : -1;
    }
    return recv(io->fd, buf, len, 0);
}

static void send_all(io_t *io, const char *s)
{
    size_t len = strlen(s), off = 0;
    while (off < len) {
        ssize_t n = io->ssl ? SSL_write(io->ssl, s + off, (int)(len - off))
                            : send(io->fd, s + off, len - off, MSG_NOSIGNAL);
        if (n <= 0)
            return;
        off += (size_t)n;
    }
}

static void answer(io_t *io, int status, const char *extra, const char *body)
{
    char buf[1024];
    snprintf(buf, sizeof(buf),
             "HTTP/1.1 %d X\r\nContent-Length: %zu\r\nConnection: close\r\n%s\r\n%s", status,
             strlen(body), extra ? extra : "", body);
    send_all(io, buf);
}

/* The value of header name in the head (NUL-terminated), copied into out; 0 or -1. */
static int header(const char *head, const char *name, char *out, size_t size)
{
    size_t n = strlen(name);
    for (const char *p = strstr(head, "\r\n"); p; p = strstr(p + 2, "\r\n")) {
        const char *l = p + 2;
        if (!strncasecmp(l, name, n) && l[n] == ':') {
            l += n + 1;
            while (*l == ' ')
                l++;
            const char *e = strstr(l, "\r\n");
            size_t len = e ? (size_t)(e - l) : strlen(l);
            if (len >= size)
                return -1;
            memcpy(out, l, len);
            out[len] = '\0';
            return 0;
        }
    }
    return -1;
}

static void *conn_main(void *arg)
{
    conn_t *c = arg;
    receiver_t *r = c->r;
    int fd = c->fd;
    free(c);
    io_t io = {fd, NULL};
    if (r->tls) {
        io.ssl = SSL_new(r->tls);
        if (!io.ssl || SSL_set_fd(io.ssl, fd) != 1 || SSL_accept(io.ssl) != 1)
            goto out;
    }
    char buf[65536];
    size_t len = 0;
    char *end = NULL;
    while (!end && len < sizeof(buf) - 1) {
        ssize_t n = io_recv(&io, buf + len, sizeof(buf) - 1 - len);
        if (n <= 0)
            goto out;
        len += (size_t)n;
        buf[len] = '\0';
        end = strstr(buf, "\r\n\r\n");
    }
    if (!end)
        goto out;
    *end = '\0';
    char cl[32], key[128], ts[32], sig[128], ct[64], tp[128];
    size_t body_len = 0;
    if (!header(buf, "Content-Length", cl, sizeof(cl)))
        body_len = (size_t)atol(cl);
    char *body = end + 4;
    size_t have = len - (size_t)(body - buf);
    while (have < body_len && (size_t)(body - buf) + body_len < sizeof(buf)) {
        ssize_t n = io_recv(&io, body + have, body_len - have);
        if (n <= 0)
            goto out;
        have += (size_t)n;
    }
    if (have < body_len)
        goto out;

    pthread_mutex_lock(&r->mu);
    int nreq = ++r->requests;
    pthread_mutex_unlock(&r->mu);

    /* The contract's headers, and the signature checked as a department would. */
    if (header(buf, "Idempotency-Key", key, sizeof(key)) ||
        header(buf, "X-Jrp-Timestamp", ts, sizeof(ts)) ||
        header(buf, "X-Jrp-Signature", sig, sizeof(sig)) ||
        header(buf, "Content-Type", ct, sizeof(ct)) || strcmp(ct, "application/json") ||
        header(buf, "traceparent", tp, sizeof(tp)) || strcmp(tp, TRACEPARENT) ||
        strncmp(buf, "POST /hook ", 11)) {
        pthread_mutex_lock(&r->mu);
        r->bad_headers++;
        pthread_mutex_unlock(&r->mu);
        answer(&io, 400, NULL, "missing headers");
        goto out;
    }
    size_t tl = strlen(ts);
    unsigned char *msg = malloc(tl + 1 + body_len);
    memcpy(msg, ts, tl);
    msg[tl] = '.';
    memcpy(msg + tl + 1, body, body_len);
    unsigned char mac[32];
    unsigned int mac_len = 0;
    HMAC(EVP_sha256(), SECRET, (int)strlen(SECRET), msg, tl + 1 + body_len, mac, &mac_len);
    free(msg);
    char want[80] = "sha256=";
    for (unsigned i = 0; i < mac_len; i++)
        snprintf(want + 7 + 2 * i, 3, "%02x", mac[i]);
    long skew = (long)time(NULL) - atol(ts);
    /* The body names the same action as the key. */
    char idneedle[160];
    snprintf(idneedle, sizeof(idneedle), "\"action_id\":\"%s\"", key);
    body[body_len] = '\0';
    if (strcmp(sig, want) || skew < -300 || skew > 300 || !strstr(body, idneedle)) {
        pthread_mutex_lock(&r->mu);
        r->bad_signature++;
        pthread_mutex_unlock(&r->mu);
        answer(&io, 401, NULL, "bad signature");
        goto out;
    }
    int s = -1, q = -1;
    if (sscanf(key, "act-%d-%d", &s, &q) != 2 || s < 0 || s >= SUBJECTS || q < 0 ||
        q >= PER_SUBJECT) {
        answer(&io, 422, NULL, "unknown key");
        goto out;
    }
    if (s == REJECT_S && q == REJECT_Q) {
        pthread_mutex_lock(&r->mu);
        r->rejected++;
        if (r->expected[s] == q)
            r->expected[s] = q + 1; /* dispatch moves on after dead-lettering it */
        pthread_mutex_unlock(&r->mu);
        answer(&io, 400, NULL, "{\"error\":\"measure code XYZ unknown\nhere\"}");
        goto out;
    }
    int inj = r->inject ? nreq % 20 : 0;
    if (inj == 1 || inj == 7) {
        pthread_mutex_lock(&r->mu);
        r->fail_500++;
        pthread_mutex_unlock(&r->mu);
        answer(&io, 500, NULL, "oops");
        goto out;
    }
    if (inj == 3 || inj == 13) {
        pthread_mutex_lock(&r->mu);
        r->fail_reset++;
        pthread_mutex_unlock(&r->mu);
        struct linger lg = {1, 0};
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
        goto out; /* close: RST */
    }
    if (inj == 11) {
        pthread_mutex_lock(&r->mu);
        r->fail_429++;
        pthread_mutex_unlock(&r->mu);
        answer(&io, 429, "Retry-After: 1\r\n", "slow down");
        goto out;
    }
    /* Accept, as a department deduplicating by key does. */
    int status = 200;
    pthread_mutex_lock(&r->mu);
    if (q < r->expected[s]) {
        r->duplicates++;
        r->accepted[s][q]++;
    } else if (q == r->expected[s]) {
        r->expected[s]++;
        r->accepted[s][q]++;
        r->distinct++;
    } else {
        r->violations++;
        snprintf(r->violation_text, sizeof(r->violation_text),
                 "subject %d: got sequence %d while expecting %d", s, q, r->expected[s]);
        status = 409;
    }
    if (inj == 5 && status == 200)
        r->fail_slow++;
    pthread_mutex_unlock(&r->mu);
    if (inj == 5 && status == 200) {
        /* Processed, but the answer comes after dispatch gave up: it must re-send the same key. */
        usleep((TIMEOUT_MS + 400) * 1000);
    }
    answer(&io, status, NULL, status == 200 ? "{\"ok\":true}" : "order");
out:
    if (io.ssl)
        SSL_free(io.ssl);
    close(fd);
    return NULL;
}

static void *receiver_main(void *arg)
{
    receiver_t *r = arg;
    while (!r->stop) {
        struct pollfd p = {r->lfd, POLLIN, 0};
        if (poll(&p, 1, 100) <= 0)
            continue;
        int fd = accept(r->lfd, NULL, NULL);
        if (fd < 0)
            continue;
        conn_t *c = malloc(sizeof(*c));
        c->r = r;
        c->fd = fd;
        pthread_mutex_lock(&r->mu);
        int slot = r->n_conns < 8192 ? r->n_conns++ : -1;
        pthread_mutex_unlock(&r->mu);
        if (slot < 0 || pthread_create(&r->conns[slot], NULL, conn_main, c)) {
            close(fd);
            free(c);
        }
    }
    return NULL;
}

/* cert and key: PEM files for HTTPS, or NULL for plain HTTP. */
static receiver_t *receiver_start_tls(int inject, const char *cert, const char *key)
{
    receiver_t *r = calloc(1, sizeof(*r));
    assert_non_null(r);
    if (cert) {
        r->tls = SSL_CTX_new(TLS_server_method());
        assert_non_null(r->tls);
        assert_int_equal(SSL_CTX_use_certificate_file(r->tls, cert, SSL_FILETYPE_PEM), 1);
        assert_int_equal(SSL_CTX_use_PrivateKey_file(r->tls, key, SSL_FILETYPE_PEM), 1);
    }
    pthread_mutex_init(&r->mu, NULL);
    r->inject = inject;
    r->lfd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(r->lfd >= 0);
    int one = 1;
    setsockopt(r->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(r->lfd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(r->lfd, 256), 0);
    socklen_t al = sizeof(a);
    getsockname(r->lfd, (struct sockaddr *)&a, &al);
    r->port = ntohs(a.sin_port);
    assert_int_equal(pthread_create(&r->thread, NULL, receiver_main, r), 0);
    return r;
}

static receiver_t *receiver_start(int inject)
{
    return receiver_start_tls(inject, NULL, NULL);
}

static void receiver_stop(receiver_t *r)
{
    r->stop = 1;
    pthread_join(r->thread, NULL);
    for (int i = 0; i < r->n_conns; i++)
        pthread_join(r->conns[i], NULL);
    close(r->lfd);
    if (r->tls)
        SSL_CTX_free(r->tls);
    pthread_mutex_destroy(&r->mu);
    free(r);
}

static int receiver_distinct(receiver_t *r)
{
    pthread_mutex_lock(&r->mu);
    int n = r->distinct;
    pthread_mutex_unlock(&r->mu);
    return n;
}

/* --- producing actions ------------------------------------------------------------------------ */

static int dr_failures;

static void on_dr(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    (void)opaque;
    if (m->err)
        dr_failures++;
}

static void subject_key(int s, char *buf, size_t size)
{
    snprintf(buf, size, "enterprise:9135010%02dM00010Y4", s);
}

/* Produce every action (interleaved across subjects) plus one record that is not an Action. */
static void produce_actions(harness_t *h, const char *topic)
{
    char err[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    assert_int_equal(config_apply_kafka(h->cfg, conf, err, sizeof(err)), 0);
    assert_int_equal(rd_kafka_conf_set(conf, "enable.idempotence", "true", err, sizeof(err)), 0);
    rd_kafka_conf_set_dr_msg_cb(conf, on_dr);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
    assert_non_null(rk);
    dr_failures = 0;
    for (int q = 0; q < PER_SUBJECT; q++)
        for (int s = 0; s < SUBJECTS; s++) {
            char id[64], key[64], sid[64];
            snprintf(id, sizeof(id), "act-%d-%d", s, q);
            subject_key(s, key, sizeof(key));
            snprintf(sid, sizeof(sid), "%s", key + strlen("enterprise:"));
            Jrp__V1__Subject subj = JRP__V1__SUBJECT__INIT;
            subj.type = JRP__V1__SUBJECT_TYPE__SUBJECT_TYPE_ENTERPRISE;
            subj.id = sid;
            subj.name = "测试企业";
            Jrp__V1__Action a = JRP__V1__ACTION__INIT;
            a.action_id = id;
            a.op = JRP__V1__ACTION_OP__ACTION_OP_APPLY;
            a.department = "transport";
            a.measure_code = "RESTRICT_HANDLING";
            a.measure_kind = JRP__V1__MEASURE_KIND__MEASURE_KIND_PENALTY;
            a.measure_text = "限制办理";
            a.subject = &subj;
            a.memorandum_id = "overload-2017";
            a.list_code = "black.overload";
            a.issued_at_ms = harness_now_ms();
            uint8_t buf[1024];
            size_t len = jrp__v1__action__pack(&a, buf);
            assert_int_equal(kafka_produce(rk, topic, RD_KAFKA_PARTITION_UA, key, strlen(key), buf,
                                           len, kafka_headers("jrp.v1.Action", TRACEPARENT), NULL),
                             0);
        }
    static const char junk[] = "not an action \xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff";
    assert_int_equal(kafka_produce(rk, topic, RD_KAFKA_PARTITION_UA, "enterprise:junk", 15, junk,
                                   sizeof(junk) - 1, NULL, NULL),
                     0);
    assert_int_equal(rd_kafka_flush(rk, 30000), 0);
    assert_int_equal(dr_failures, 0);
    rd_kafka_destroy(rk);
}

/* The department topics, feedback and dlq; a broker busy with other tests may need a retry. */
static void ensure_topics(harness_t *h, const char **depts, size_t n)
{
    char err[512] = "";
    for (int attempt = 0; attempt < 5; attempt++) {
        if (!rulesync_ensure_topics(h->cfg, depts, n, NULL, err, sizeof(err)))
            return;
        fprintf(stderr, "# topics (attempt %d): %s\n", attempt + 1, err);
        sleep(1);
    }
    fail_msg("cannot create the topics: %s", err);
}

/* --- helpers ---------------------------------------------------------------------------------- */

static void show_log(const char *path)
{
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "tail -n 40 %s >&2", path);
    if (system(cmd) < 0)
        fprintf(stderr, "cannot show %s\n", path);
}

static int wait_distinct(receiver_t *r, int n, int timeout_ms)
{
    int64_t until = harness_now_ms() + timeout_ms;
    while (receiver_distinct(r) < n && harness_now_ms() < until)
        usleep(50000);
    return receiver_distinct(r);
}

/* The value of a metric line "name{department=\"<dept>\"} v", or -1. */
static double metric_of(const char *text, const char *name, const char *dept)
{
    char needle[160];
    snprintf(needle, sizeof(needle), "%s{department=\"%s\"} ", name, dept);
    const char *p = strstr(text, needle);
    return p ? atof(p + strlen(needle)) : -1;
}

static double metric(const char *text, const char *name)
{
    return metric_of(text, name, "transport");
}

/* --- tests ------------------------------------------------------------------------------------ */

static void test_delivery_with_faults_and_kill(void **state)
{
    (void)state;
    int64_t t0 = harness_now_ms();
    receiver_t *r = receiver_start(1);
    char extra[1024];
    const char *group = testenv_unique("dispatch-group");
    char grp[128];
    snprintf(grp, sizeof(grp), "%s", group);
    snprintf(extra, sizeof(extra),
             "dispatch.group = %s\ndispatch.instance = %s-1\n"
             "dispatch.transport.url = http://127.0.0.1:%d/hook\n"
             "dispatch.transport.secret = %s\ndispatch.transport.timeout_ms = %d\n"
             "dispatch.transport.concurrency = 6\ndispatch.retry_base_ms = 50\n"
             "dispatch.retry_cap_ms = 400\ndispatch.commit_interval_ms = 200\n"
             "dispatch.max_pending = 60\n",
             grp, grp, r->port, SECRET, TIMEOUT_MS);
    harness_t *h = harness_create("dispatch", extra);
    char topic[256];
    config_topic(h->cfg, "actions.transport", topic, sizeof(topic));
    const char *depts[] = {"transport"};
    ensure_topics(h, depts, 1);
    produce_actions(h, topic);

    /* First run: killed with SIGKILL once about a third is accepted. */
    char log1[300], log2[300], log3[300];
    snprintf(log1, sizeof(log1), "/tmp/jrp-harness-%s.dispatch1.log", h->name);
    snprintf(log2, sizeof(log2), "/tmp/jrp-harness-%s.dispatch2.log", h->name);
    snprintf(log3, sizeof(log3), "/tmp/jrp-harness-%s.dispatch3.log", h->name);
    pid_t pid = harness_service_start(h, "jrp-dispatch", log1, NULL);
    int at_kill = wait_distinct(r, N_ACTIONS / 3, 60000);
    if (at_kill < N_ACTIONS / 3)
        show_log(log1);
    assert_true(at_kill >= N_ACTIONS / 3);
    assert_int_equal(harness_service_stop(pid, SIGKILL), 128 + SIGKILL);
    at_kill = receiver_distinct(r);
    int dups_before = r->duplicates;

    /* Second run: the same group picks up from the committed offsets; stopped with SIGTERM
     * while requests are in flight, it lets them finish, commits and exits 0. */
    pid = harness_service_start(h, "jrp-dispatch", log2, NULL);
    int at_term = wait_distinct(r, 2 * N_ACTIONS / 3, 60000);
    if (at_term < 2 * N_ACTIONS / 3)
        show_log(log2);
    assert_true(at_term >= 2 * N_ACTIONS / 3);
    int64_t term_ms = harness_now_ms();
    int term_rc = harness_service_stop(pid, SIGTERM);
    term_ms = harness_now_ms() - term_ms;
    if (term_rc != 0)
        show_log(log2);
    assert_int_equal(term_rc, 0);
    assert_true(term_ms < 15000);

    /* Third run: the rest. */
    pid = harness_service_start(h, "jrp-dispatch", log3, NULL);
    int got = wait_distinct(r, N_ACTIONS - 1, 90000);
    if (got < N_ACTIONS - 1)
        show_log(log3);
    assert_int_equal(got, N_ACTIONS - 1);

    /* Dead letters: the refused action and the record that is not an Action. */
    harness_records_t dlq = {0};
    harness_read(h, "dlq", NULL, 2, 1000, 30000, &dlq);
    assert_true(dlq.n >= 2);
    int seen_rejected = 0, seen_junk = 0;
    for (size_t i = 0; i < dlq.n; i++) {
        const char *hd = dlq.header_dump[i];
        assert_non_null(strstr(hd, "jrp-error-service=dispatch;"));
        assert_non_null(strstr(hd, "jrp-error-topic="));
        assert_non_null(strstr(hd, "jrp-error-offset="));
        assert_non_null(strstr(hd, "jrp-error-time="));
        if (!strcmp(dlq.keys[i], "enterprise:junk")) {
            seen_junk++;
            assert_non_null(strstr(hd, "jrp-error-code=decode_failed;"));
            continue;
        }
        seen_rejected++;
        char key[64];
        subject_key(REJECT_S, key, sizeof(key));
        assert_string_equal(dlq.keys[i], key);
        /* The original bytes, unchanged. */
        Jrp__V1__Action *a = jrp__v1__action__unpack(NULL, dlq.lens[i], dlq.values[i]);
        assert_non_null(a);
        char id[32];
        snprintf(id, sizeof(id), "act-%d-%d", REJECT_S, REJECT_Q);
        assert_string_equal(a->action_id, id);
        jrp__v1__action__free_unpacked(a, NULL);
        assert_non_null(strstr(hd, "jrp-error-code=webhook_rejected;"));
        assert_non_null(strstr(hd, "jrp-error-http-status=400;"));
        assert_non_null(strstr(hd, "jrp-schema=jrp.v1.Action;"));
        const char *reason = strstr(hd, "jrp-error-reason=");
        assert_non_null(reason);
        assert_non_null(strstr(reason, "HTTP 400"));
        assert_non_null(strstr(reason, "measure code XYZ unknown here")); /* excerpt, one line */
    }
    /* At least once each, and at most once per run: a run that stops before the partition's
     * watermark passed the record (an earlier offset still unfinished) leaves it to the next. */
    assert_true(seen_rejected >= 1 && seen_rejected <= 3);
    assert_true(seen_junk >= 1 && seen_junk <= 3);
    harness_records_free(&dlq, NULL);

    /* RECEIVED feedback for every delivered action (a re-send after the kill may add a second),
     * none for the refused one. */
    static int fb_seen[SUBJECTS][PER_SUBJECT];
    int missing = -1;
    /* The last feedback may still be on its way when the last answer was given: read again
     * until every delivered action has its record (or the time is up). */
    for (int attempt = 0; attempt < 20 && missing != 0; attempt++) {
        harness_records_t fb = {0};
        harness_read(h, "feedback", &jrp__v1__feedback__descriptor, N_ACTIONS - 1, 500, 30000, &fb);
        memset(fb_seen, 0, sizeof(fb_seen));
        for (size_t i = 0; i < fb.n; i++) {
            Jrp__V1__Feedback *f = fb.values[i];
            int s, q;
            assert_int_equal(sscanf(f->action_id, "act-%d-%d", &s, &q), 2);
            assert_string_equal(fb.keys[i], f->action_id);
            assert_string_equal(f->department, "transport");
            assert_int_equal(f->status, JRP__V1__FEEDBACK_STATUS__FEEDBACK_STATUS_RECEIVED);
            assert_true(f->occurred_at_ms >= t0);
            assert_non_null(strstr(fb.header_dump[i], "jrp-schema=jrp.v1.Feedback;"));
            assert_non_null(strstr(fb.header_dump[i], "traceparent=" TRACEPARENT ";"));
            fb_seen[s][q]++;
        }
        harness_records_free(&fb, &jrp__v1__feedback__descriptor);
        missing = 0;
        for (int s = 0; s < SUBJECTS; s++)
            for (int q = 0; q < PER_SUBJECT; q++)
                missing += !(s == REJECT_S && q == REJECT_Q) && fb_seen[s][q] == 0;
    }
    assert_int_equal(missing, 0);
    assert_int_equal(fb_seen[REJECT_S][REJECT_Q], 0);

    /* Ready, and the metrics count what happened in this run. */
    int port = harness_log_port(h, log3, 10000);
    assert_true(port > 0);
    char body[16384];
    int st = -1;
    for (int i = 0; i < 100 && st != 200; i++) {
        st = harness_http_get(port, "/readyz", body, sizeof(body));
        if (st != 200)
            usleep(100000);
    }
    assert_int_equal(st, 200);
    assert_int_equal(harness_http_get(port, "/metrics", body, sizeof(body)), 200);
    assert_true(metric(body, "jrp_dispatch_delivered_total") >= 1);
    assert_true(metric(body, "jrp_dispatch_retried_total") >= 1);
    assert_true(metric(body, "jrp_dispatch_dead_lettered_total") >= 1);
    assert_true(metric(body, "jrp_dispatch_in_flight") >= 0);
    assert_non_null(strstr(body, "jrp_dispatch_delivery_seconds_bucket{department=\"transport\""));

    /* SIGTERM: a clean exit. */
    int rc = harness_service_stop(pid, SIGTERM);
    if (rc != 0)
        show_log(log3);
    assert_int_equal(rc, 0);

    /* What the department saw. */
    pthread_mutex_lock(&r->mu);
    fprintf(stderr,
            "# %d actions over %d subjects in %.1f s: %d requests, %d accepted at the kill, "
            "%d duplicates re-sent (%d before the kill); injected %d x 500, %d resets, %d slow, "
            "%d x 429; %d refusals; SIGTERM took %lld ms\n",
            N_ACTIONS, SUBJECTS, (double)(harness_now_ms() - t0) / 1000.0, r->requests, at_kill,
            r->duplicates, dups_before, r->fail_500, r->fail_reset, r->fail_slow, r->fail_429,
            r->rejected, (long long)term_ms);
    if (r->violations)
        fprintf(stderr, "# order violation: %s\n", r->violation_text);
    assert_int_equal(r->bad_signature, 0);
    assert_int_equal(r->bad_headers, 0);
    assert_int_equal(r->violations, 0);
    assert_int_equal(r->distinct, N_ACTIONS - 1);
    for (int s = 0; s < SUBJECTS; s++) {
        assert_int_equal(r->expected[s], PER_SUBJECT);
        for (int q = 0; q < PER_SUBJECT; q++)
            if (s == REJECT_S && q == REJECT_Q)
                assert_int_equal(r->accepted[s][q], 0);
            else
                assert_true(r->accepted[s][q] >= 1);
    }
    /* Every kind of failure happened and was survived; a slow answer is always re-sent. */
    assert_true(r->fail_500 > 0 && r->fail_reset > 0 && r->fail_slow > 0 && r->fail_429 > 0);
    assert_true(r->duplicates >= 1);
    assert_true(r->rejected >= 1);
    pthread_mutex_unlock(&r->mu);
    receiver_stop(r);
    harness_destroy(h);
}

/* Two processes in one group: the second joins mid-stream, so the first has its partitions
 * revoked with requests in flight, in backoff and waiting for acknowledgement. */
static void test_rebalance_between_two_instances(void **state)
{
    (void)state;
    int64_t t0 = harness_now_ms();
    receiver_t *r = receiver_start(1);
    char extra[1024], grp[128];
    snprintf(grp, sizeof(grp), "%s", testenv_unique("dispatch-group"));
    snprintf(extra, sizeof(extra),
             "dispatch.group = %s\n"
             "dispatch.transport.url = http://127.0.0.1:%d/hook\n"
             "dispatch.transport.secret = %s\ndispatch.transport.timeout_ms = %d\n"
             "dispatch.transport.concurrency = 4\ndispatch.retry_base_ms = 50\n"
             "dispatch.retry_cap_ms = 400\ndispatch.commit_interval_ms = 200\n"
             /* partitions to share: as many as the events topic's, not the default one */
             "topic.action_partitions = 0\n",
             grp, r->port, SECRET, TIMEOUT_MS);
    harness_t *h = harness_create("dispatch-rb", extra);
    char topic[256];
    config_topic(h->cfg, "actions.transport", topic, sizeof(topic));
    const char *depts[] = {"transport"};
    ensure_topics(h, depts, 1);
    produce_actions(h, topic);
    char log_a[300], log_b[300];
    snprintf(log_a, sizeof(log_a), "/tmp/jrp-harness-%s.dispatch-a.log", h->name);
    snprintf(log_b, sizeof(log_b), "/tmp/jrp-harness-%s.dispatch-b.log", h->name);
    pid_t a = harness_service_start(h, "jrp-dispatch", log_a, NULL);
    int at_join = wait_distinct(r, N_ACTIONS / 4, 60000);
    if (at_join < N_ACTIONS / 4)
        show_log(log_a);
    assert_true(at_join >= N_ACTIONS / 4);
    pid_t b = harness_service_start(h, "jrp-dispatch", log_b, NULL);
    int got = wait_distinct(r, N_ACTIONS - 1, 90000);
    if (got < N_ACTIONS - 1) {
        show_log(log_a);
        show_log(log_b);
    }
    assert_int_equal(got, N_ACTIONS - 1);
    int rc_a = harness_service_stop(a, SIGTERM), rc_b = harness_service_stop(b, SIGTERM);
    if (rc_a || rc_b) {
        show_log(log_a);
        show_log(log_b);
    }
    assert_int_equal(rc_a, 0);
    assert_int_equal(rc_b, 0);
    /* The first was assigned twice (at start and after the join), the second at least once. */
    char cmd[700];
    snprintf(cmd, sizeof(cmd),
             "test $(grep -c 'assigned [0-9]* partitions' %s) -ge 2 && "
             "grep -q 'assigned [1-9][0-9]* partitions' %s",
             log_a, log_b);
    assert_int_equal(system(cmd), 0);
    pthread_mutex_lock(&r->mu);
    fprintf(stderr, "# rebalance: %d actions in %.1f s, %d requests, %d duplicates\n", N_ACTIONS,
            (double)(harness_now_ms() - t0) / 1000.0, r->requests, r->duplicates);
    if (r->violations)
        fprintf(stderr, "# order violation: %s\n", r->violation_text);
    assert_int_equal(r->bad_signature, 0);
    assert_int_equal(r->bad_headers, 0);
    assert_int_equal(r->violations, 0);
    assert_int_equal(r->distinct, N_ACTIONS - 1);
    pthread_mutex_unlock(&r->mu);
    receiver_stop(r);
    harness_destroy(h);
}

/* Three departments in one process: transport over plain HTTP, market over HTTPS verified with
 * dispatch.market.ca_file, finance over HTTPS with a certificate it cannot verify (retried, never
 * delivered, never dead-lettered). */
static void test_departments_and_https(void **state)
{
    (void)state;
    char dir[200], cert[256], key[256], cmd[2048];
    snprintf(dir, sizeof(dir), "/tmp/jrp-dispatch-tls-%s", testenv_unique("t"));
    snprintf(cert, sizeof(cert), "%s/cert.pem", dir);
    snprintf(key, sizeof(key), "%s/key.pem", dir);
    snprintf(cmd, sizeof(cmd),
             "mkdir -p %s && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 "
             "-nodes -keyout %s -out %s -days 2 -subj /CN=localhost "
             "-addext subjectAltName=IP:127.0.0.1,DNS:localhost >/dev/null 2>&1",
             dir, key, cert);
    assert_int_equal(system(cmd), 0);
    receiver_t *rp = receiver_start(0), *rt = receiver_start_tls(0, cert, key),
               *rf = receiver_start_tls(0, cert, key);
    char extra[2048], grp[128];
    snprintf(grp, sizeof(grp), "%s", testenv_unique("dispatch-group"));
    snprintf(extra, sizeof(extra),
             "dispatch.group = %s\ndispatch.retry_base_ms = 50\ndispatch.retry_cap_ms = 300\n"
             "dispatch.transport.url = http://127.0.0.1:%d/hook\n"
             "dispatch.transport.secret = %s\n"
             "dispatch.market.url = https://127.0.0.1:%d/hook\n"
             "dispatch.market.secret = %s\ndispatch.market.ca_file = %s\n"
             "dispatch.market.concurrency = 3\n"
             "dispatch.finance.url = https://127.0.0.1:%d/hook\n"
             "dispatch.finance.secret = %s\ndispatch.finance.timeout_ms = 2000\n"
             "dispatch.finance.concurrency = 1\n",
             grp, rp->port, SECRET, rt->port, SECRET, cert, rf->port, SECRET);
    harness_t *h = harness_create("dispatch-tls", extra);
    const char *depts[] = {"transport", "market", "finance"};
    ensure_topics(h, depts, 3);
    for (int i = 0; i < 3; i++) {
        char suffix[64], topic[256];
        snprintf(suffix, sizeof(suffix), "actions.%s", depts[i]);
        produce_actions(h, config_topic(h->cfg, suffix, topic, sizeof(topic)));
    }
    char log[300];
    snprintf(log, sizeof(log), "/tmp/jrp-harness-%s.dispatch.log", h->name);
    pid_t pid = harness_service_start(h, "jrp-dispatch", log, NULL);
    int got_p = wait_distinct(rp, N_ACTIONS - 1, 60000);
    int got_t = wait_distinct(rt, N_ACTIONS - 1, 60000);
    if (got_p < N_ACTIONS - 1 || got_t < N_ACTIONS - 1)
        show_log(log);
    assert_int_equal(got_p, N_ACTIONS - 1);
    assert_int_equal(got_t, N_ACTIONS - 1);

    /* finance: every attempt fails certificate verification and is retried. */
    int port = harness_log_port(h, log, 10000);
    assert_true(port > 0);
    char body[32768];
    double retried = 0;
    for (int i = 0; i < 100 && retried < 3; i++) {
        assert_int_equal(harness_http_get(port, "/metrics", body, sizeof(body)), 200);
        retried = metric_of(body, "jrp_dispatch_retried_total", "finance");
        if (retried < 3)
            usleep(100000);
    }
    assert_true(retried >= 3);
    assert_true(metric_of(body, "jrp_dispatch_delivered_total", "finance") == 0);
    assert_true(metric_of(body, "jrp_dispatch_delivered_total", "market") >= N_ACTIONS - 1);
    assert_true(metric_of(body, "jrp_dispatch_delivered_total", "transport") >= N_ACTIONS - 1);
    /* The department refusing one action each, and one undecodable record per topic. */
    assert_true(metric_of(body, "jrp_dispatch_dead_lettered_total", "market") >= 2);
    assert_true(metric_of(body, "jrp_dispatch_dead_lettered_total", "finance") == 1);
    snprintf(cmd, sizeof(cmd), "grep -q 'SSL certificate problem' %s", log);
    assert_int_equal(system(cmd), 0);

    /* SIGTERM with finance's actions waiting in backoff: a clean exit all the same. */
    int rc = harness_service_stop(pid, SIGTERM);
    if (rc)
        show_log(log);
    assert_int_equal(rc, 0);
    receiver_t *all[] = {rp, rt, rf};
    for (int i = 0; i < 3; i++) {
        pthread_mutex_lock(&all[i]->mu);
        assert_int_equal(all[i]->bad_signature, 0);
        assert_int_equal(all[i]->bad_headers, 0);
        assert_int_equal(all[i]->violations, 0);
        pthread_mutex_unlock(&all[i]->mu);
    }
    assert_int_equal(rf->requests, 0);
    receiver_stop(rp);
    receiver_stop(rt);
    receiver_stop(rf);
    harness_destroy(h);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

/* A second process started with the same dispatch.instance fences the first: a fatal Kafka error,
 * which must end the first with exit code 1 and one clear line, while the second carries on. */
static void test_fenced_instance_exits_nonzero(void **state)
{
    (void)state;
    receiver_t *r = receiver_start(0);
    char extra[1024], grp[128];
    snprintf(grp, sizeof(grp), "%s", testenv_unique("dispatch-group"));
    snprintf(extra, sizeof(extra),
             "dispatch.group = %s\ndispatch.instance = %s-same\n"
             "dispatch.transport.url = http://127.0.0.1:%d/hook\n"
             "dispatch.transport.secret = %s\n",
             grp, grp, r->port, SECRET);
    harness_t *h = harness_create("dispatch-fence", extra);
    const char *depts[] = {"transport"};
    ensure_topics(h, depts, 1);
    char log_a[300], log_b[300], cmd[700];
    snprintf(log_a, sizeof(log_a), "/tmp/jrp-harness-%s.dispatch-a.log", h->name);
    snprintf(log_b, sizeof(log_b), "/tmp/jrp-harness-%s.dispatch-b.log", h->name);
    pid_t a = harness_service_start(h, "jrp-dispatch", log_a, NULL);
    snprintf(cmd, sizeof(cmd), "grep -q 'assigned [0-9]* partitions' %s", log_a);
    int64_t until = harness_now_ms() + 60000;
    while (system(cmd) != 0 && harness_now_ms() < until)
        usleep(100000);
    assert_int_equal(system(cmd), 0);
    pid_t b = harness_service_start(h, "jrp-dispatch", log_b, NULL);
    /* Signal 0: only wait (up to 30 s) for the first to exit by itself. */
    int rc_a = harness_service_stop(a, 0);
    if (rc_a != 1)
        show_log(log_a);
    assert_int_equal(rc_a, 1);
    snprintf(cmd, sizeof(cmd), "grep -q 'ERROR dispatch: fatal error (Kafka.*exiting' %s", log_a);
    assert_int_equal(system(cmd), 0);
    int rc_b = harness_service_stop(b, SIGTERM);
    if (rc_b != 0)
        show_log(log_b);
    assert_int_equal(rc_b, 0);
    receiver_stop(r);
    harness_destroy(h);
}

static void test_bad_configuration_fails_at_start(void **state)
{
    (void)state;
    struct {
        const char *extra, *expect;
    } cases[] = {
        {"dispatch.transport.url = 127.0.0.1:9/hook\ndispatch.transport.secret = s\n",
         "dispatch.transport.url"},
        {"dispatch.transport.url = https://127.0.0.1:9/hook\n", "dispatch.transport.secret"},
        {"dispatch.market.secret = s\n", "dispatch.market.url"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        harness_t *h = harness_create("dispatch-conf", cases[i].extra);
        char log[300];
        snprintf(log, sizeof(log), "/tmp/jrp-harness-%s.dispatch.log", h->name);
        pid_t pid = harness_service_start(h, "jrp-dispatch", log, NULL);
        /* It exits by itself: signal 0 only waits. */
        int rc = harness_service_stop(pid, 0);
        assert_int_equal(rc, 1);
        FILE *f = fopen(log, "r");
        assert_non_null(f);
        char text[4096] = "";
        size_t n = fread(text, 1, sizeof(text) - 1, f);
        text[n] = '\0';
        fclose(f);
        if (!strstr(text, cases[i].expect))
            fprintf(stderr, "log: %s\n", text);
        assert_non_null(strstr(text, cases[i].expect));
        harness_destroy(h);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_configuration_fails_at_start),
        cmocka_unit_test(test_delivery_with_faults_and_kill),
        cmocka_unit_test(test_rebalance_between_two_instances),
        cmocka_unit_test(test_departments_and_https),
        cmocka_unit_test(test_fenced_instance_exits_nonzero),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
