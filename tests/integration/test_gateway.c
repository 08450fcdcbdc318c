/*
 * jrp-gateway against the real local Kafka and Redis. The gateway runs in-process on its own
 * libuv loop in a second thread (and once as the real binary, for its signals and exit code);
 * the test thread talks to it over plain sockets and reads responses with http-parser. Each test
 * has its own topic and key prefixes (harness), its own tokens from the real jrpctl, and, where
 * measures are needed, the real jrp-engine with the sample rules. Covers every endpoint, the
 * token matrix, department isolation, the audit record of every check, where events and
 * feedback land, a bad-input suite of more than forty cases (each status and error code, the
 * gateway alive at the end), Kafka and Redis unreachable, and a graceful stop with a request in
 * flight. Every socket read has a timeout and every test an alarm, so none can hang.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <hiredis/hiredis.h>
#include <http_parser.h>
#include <jansson.h>
#include <uv.h>

#include "gateway.h"
#include "gwfx.h"
#include "harness.h"
#include "jrp/v1/check.pb-c.h"
#include "jrp/v1/feedback.pb-c.h"
#include "jrp/v1/state.pb-c.h"
#include "jrp/v1/token.pb-c.h"
#include "log.h"
#include "redis.h"
#include "testenv.h"

#define ENT1 "91350100M000100Y43"
#define ENT2 "91512081MA62K0260E"
#define ENT_BAD "91350100M000100Y44"
#define PERSON "11010519491231002X"
#define PERSON_MASKED "110105********002X"
#define TEST_ALARM_S 240
#define RECV_TIMEOUT_MS 10000

static const ProtobufCMessageDescriptor *check_desc = &jrp__v1__check_record__descriptor;
static const ProtobufCMessageDescriptor *event_desc = &jrp__v1__credit_event__descriptor;
static const ProtobufCMessageDescriptor *feedback_desc = &jrp__v1__feedback__descriptor;
static const ProtobufCMessageDescriptor *token_desc = &jrp__v1__token_record__descriptor;

static void on_alarm(int sig)
{
    (void)sig;
    static const char msg[] = "test_gateway: a test ran over its alarm\n";
    if (write(2, msg, sizeof(msg) - 1) < 0)
        _exit(3);
    _exit(3);
}

static void arm(void)
{
    signal(SIGALRM, on_alarm);
    alarm(TEST_ALARM_S);
}

/* ---- a small HTTP client ------------------------------------------------------------------ */

typedef struct resp_s {
    int status;
    int complete;
    char *body;
    size_t len, cap;
    char hdrs[8192]; /* "name: value\n", names lower-cased */
    size_t hlen;
    char last; /* 'f' or 'v' */
    json_t *json;
} resp_t;

static void resp_free(resp_t *r)
{
    free(r->body);
    json_decref(r->json);
    memset(r, 0, sizeof(*r));
}

static void resp_append(resp_t *r, const char *at, size_t len)
{
    if (r->len + len + 1 > r->cap) {
        size_t cap = (r->len + len + 1) * 2;
        r->body = realloc(r->body, cap);
        assert_non_null(r->body);
        r->cap = cap;
    }
    memcpy(r->body + r->len, at, len);
    r->len += len;
    r->body[r->len] = '\0';
}

static int rp_on_header_field(http_parser *p, const char *at, size_t len)
{
    resp_t *r = p->data;
    if (r->last == 'v' && r->hlen + 1 < sizeof(r->hdrs))
        r->hdrs[r->hlen++] = '\n';
    if (r->last != 'f' && r->hlen > 0 && r->hdrs[r->hlen - 1] != '\n' &&
        r->hlen + 1 < sizeof(r->hdrs))
        r->hdrs[r->hlen++] = '\n';
    for (size_t i = 0; i < len && r->hlen + 1 < sizeof(r->hdrs); i++)
        r->hdrs[r->hlen++] = (char)((at[i] >= 'A' && at[i] <= 'Z') ? at[i] + 32 : at[i]);
    r->hdrs[r->hlen] = '\0';
    r->last = 'f';
    return 0;
}

static int rp_on_header_value(http_parser *p, const char *at, size_t len)
{
    resp_t *r = p->data;
    if (r->last == 'f' && r->hlen + 2 < sizeof(r->hdrs)) {
        r->hdrs[r->hlen++] = ':';
        r->hdrs[r->hlen++] = ' ';
    }
    for (size_t i = 0; i < len && r->hlen + 1 < sizeof(r->hdrs); i++)
        r->hdrs[r->hlen++] = at[i];
    r->hdrs[r->hlen] = '\0';
    r->last = 'v';
    return 0;
}

static int rp_on_headers_complete(http_parser *p)
{
    resp_t *r = p->data;
    r->status = (int)p->status_code;
    return 0;
}

static int rp_on_body(http_parser *p, const char *at, size_t len)
{
    resp_append(p->data, at, len);
    return 0;
}

static int rp_on_complete(http_parser *p)
{
    resp_t *r = p->data;
    r->complete = 1;
    http_parser_pause(p, 1);
    return 0;
}

static int cl_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0)
        fail_msg("connect to 127.0.0.1:%d: %s", port, strerror(errno));
    return fd;
}

static void cl_send(int fd, const void *data, size_t len)
{
    const char *p = data;
    while (len) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            fail_msg("send: %s", strerror(errno));
        p += n;
        len -= (size_t)n;
    }
}

/* Read one response. 0 when complete, -1 when the connection closed without one, -2 on timeout. */
static int cl_read(int fd, resp_t *r, int timeout_ms)
{
    http_parser_settings s;
    http_parser_settings_init(&s);
    s.on_header_field = rp_on_header_field;
    s.on_header_value = rp_on_header_value;
    s.on_headers_complete = rp_on_headers_complete;
    s.on_body = rp_on_body;
    s.on_message_complete = rp_on_complete;
    http_parser p;
    http_parser_init(&p, HTTP_RESPONSE);
    p.data = r;
    memset(r, 0, sizeof(*r));
    resp_append(r, "", 0);
    char buf[16384];
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (;;) {
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        long spent = (now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000;
        if (spent >= timeout_ms)
            return -2;
        struct pollfd pfd = {fd, POLLIN, 0};
        int pr = poll(&pfd, 1, (int)(timeout_ms - spent));
        if (pr == 0)
            return -2;
        if (pr < 0 && errno == EINTR)
            continue;
        ssize_t n = recv(fd, buf, sizeof(buf), 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        http_parser_execute(&p, &s, buf, (size_t)n);
        if (r->complete)
            break;
        if (HTTP_PARSER_ERRNO(&p) != HPE_OK)
            fail_msg("bad response: %s", http_errno_description(HTTP_PARSER_ERRNO(&p)));
    }
    if (!r->complete)
        return -1;
    json_error_t jerr;
    r->json = json_loadb(r->body, r->len, 0, &jerr);
    return 0;
}

/* Send raw bytes on a new connection (half-closing after them if asked) and read the answer. */
static int raw_call(int port, const char *raw, size_t len, int half_close, resp_t *r)
{
    int fd = cl_connect(port);
    cl_send(fd, raw, len);
    if (half_close)
        shutdown(fd, SHUT_WR);
    int rc = cl_read(fd, r, RECV_TIMEOUT_MS);
    close(fd);
    return rc;
}

/* One request; token, body and extra ("Name: v\r\n" lines) may be NULL. Returns the status. */
static int call(int port, const char *method, const char *path, const char *token, const char *body,
                const char *extra, resp_t *r)
{
    size_t blen = body ? strlen(body) : 0;
    size_t cap = blen + strlen(path) + 1024 + (extra ? strlen(extra) : 0);
    char *raw = malloc(cap);
    assert_non_null(raw);
    int n =
        snprintf(raw, cap, "%s %s HTTP/1.1\r\nHost: test\r\nConnection: close\r\n", method, path);
    if (token)
        n += snprintf(raw + n, cap - (size_t)n, "Authorization: Bearer %s\r\n", token);
    if (body)
        n += snprintf(raw + n, cap - (size_t)n,
                      "Content-Type: application/json\r\nContent-Length: %zu\r\n", blen);
    n += snprintf(raw + n, cap - (size_t)n, "%s\r\n", extra ? extra : "");
    if (body)
        memcpy(raw + n, body, blen);
    int rc = raw_call(port, raw, (size_t)n + blen, 0, r);
    free(raw);
    if (rc != 0)
        fail_msg("%s %s: no response (%d)", method, path, rc);
    return r->status;
}

static const char *err_code(const resp_t *r)
{
    const char *c = json_string_value(json_object_get(json_object_get(r->json, "error"), "code"));
    return c ? c : "(none)";
}

static const char *err_field(const resp_t *r)
{
    const char *f = json_string_value(json_object_get(json_object_get(r->json, "error"), "field"));
    return f ? f : "";
}

static void expect(int port, const char *method, const char *path, const char *token,
                   const char *body, int status, const char *code)
{
    resp_t r;
    int st = call(port, method, path, token, body, NULL, &r);
    if (st != status || (code && strcmp(err_code(&r), code)))
        fail_msg("%s %s: got %d %s, want %d %s: %s", method, path, st, err_code(&r), status,
                 code ? code : "", r.body);
    resp_free(&r);
}

/* Wait until /readyz says 200. */
static void wait_ready(int port)
{
    resp_t r;
    for (int i = 0; i < 150; i++) {
        int st = call(port, "GET", "/readyz", NULL, NULL, NULL, &r);
        resp_free(&r);
        if (st == 200)
            return;
        usleep(200000);
    }
    call(port, "GET", "/readyz", NULL, NULL, NULL, &r);
    fail_msg("gateway not ready: %s", r.body);
}

/* The measures of a check answer as "department/MEASURE" joined by ", ", in order. */
static const char *measures_of(const resp_t *r)
{
    static char buf[2048];
    size_t n = 0;
    buf[0] = '\0';
    json_t *list = json_object_get(r->json, "measures");
    for (size_t i = 0; i < json_array_size(list); i++) {
        json_t *m = json_array_get(list, i);
        n += (size_t)snprintf(buf + n, sizeof(buf) - n, "%s%s/%s", i ? ", " : "",
                              json_string_value(json_object_get(m, "department")),
                              json_string_value(json_object_get(m, "measure_code")));
    }
    return buf;
}

/* ---- tokens through the real jrpctl -------------------------------------------------------- */

typedef struct tok_s {
    char id[64];
    char token[128];
} tok_t;

static void token_create(harness_t *h, tok_t *t, const char *args)
{
    char out[4096];
    int rc = harness_jrpctl(h, out, sizeof(out), "token create %s", args);
    if (rc != 0)
        fail_msg("jrpctl token create %s: exit %d: %s", args, rc, out);
    const char *id = strstr(out, "id:"), *tk = strstr(out, "\ntoken:");
    assert_non_null(id);
    assert_non_null(tk);
    assert_int_equal(sscanf(id, "id: %63s", t->id), 1);
    assert_int_equal(sscanf(tk + 1, "token: %127s", t->token), 1);
    assert_int_equal(strncmp(t->token, "jrp_", 4), 0);
    assert_int_equal(strlen(t->token), 4 + 43); /* 256 bits, base64url */
}

static void sha256_hex(const char *s, char out[65])
{
    uint8_t d[32];
    unsigned int n = 0;
    assert_int_equal(EVP_Digest(s, strlen(s), d, &n, EVP_sha256(), NULL), 1);
    for (size_t i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", d[i]);
}

static harness_t *make_harness(const char *tag, const char *more)
{
    char extra[1024];
    snprintf(extra, sizeof(extra),
             "gateway.listen = 127.0.0.1:0\ngateway.token_cache_ms = 300\n"
             "gateway.request_timeout_ms = 8000\n%s",
             more ? more : "");
    return harness_create(tag, extra);
}

static const char *listing_event(const char *event_id, const char *type, const char *id,
                                 const char *dept, const char *list)
{
    static char buf[1024];
    snprintf(buf, sizeof(buf),
             "{\"event_id\":\"%s\",\"kind\":\"listed\",\"subject\":{\"type\":\"%s\",\"id\":\"%s\"},"
             "\"source_department\":\"%s\",\"occurred_at_ms\":%lld,\"list_code\":\"%s\","
             "\"valid_until_ms\":%lld}",
             event_id, type, id, dept, (long long)harness_now_ms(), list,
             (long long)(harness_now_ms() + 730LL * 86400000));
    return buf;
}

/* ---- the answers kept per state: reused for the same bytes only, until a measure lapses ----- */

/* Write a subject state for ENT1 straight to Redis (store.h's layout), as the engine would. */
static void put_state(harness_t *h, const char *name, int64_t until_ms, int n_measures)
{
    Jrp__V1__Subject subject;
    jrp__v1__subject__init(&subject);
    subject.type = JRP__V1__SUBJECT_TYPE__SUBJECT_TYPE_ENTERPRISE;
    subject.id = ENT1;
    subject.name = (char *)name;
    Jrp__V1__Action a[2], *ptrs[2] = {&a[0], &a[1]};
    const char *codes[2] = {"STRICT_SUPERVISION", "RESTRICT_HANDLING"};
    for (int i = 0; i < 2; i++) {
        jrp__v1__action__init(&a[i]);
        a[i].action_id =
            i ? "00000000000000000000000000000002" : "00000000000000000000000000000001";
        a[i].op = JRP__V1__ACTION_OP__ACTION_OP_APPLY;
        a[i].department = "transport";
        a[i].measure_code = (char *)codes[i];
        a[i].measure_kind = JRP__V1__MEASURE_KIND__MEASURE_KIND_PENALTY;
        a[i].memorandum_id = "overload-2017";
        a[i].list_code = "black.overload";
        a[i].cause_event_id = "cache-1";
        a[i].valid_from_ms = harness_now_ms() - 1000;
        a[i].ruleset_version = 1;
    }
    a[0].valid_until_ms = until_ms;
    Jrp__V1__SubjectState st;
    jrp__v1__subject_state__init(&st);
    st.subject = &subject;
    st.measures = ptrs;
    st.n_measures = (size_t)n_measures;
    st.ruleset_version = 1;
    st.updated_at_ms = harness_now_ms();
    size_t len = jrp__v1__subject_state__get_packed_size(&st);
    uint8_t *buf = malloc(len + 1);
    assert_non_null(buf);
    jrp__v1__subject_state__pack(&st, buf);
    char err[256], key[512];
    redisContext *c = redis_connect(testenv_redis_url(), 5000, err, sizeof(err));
    assert_non_null(c);
    snprintf(key, sizeof(key), "%s{enterprise:" ENT1 "}:state", config_get(h->cfg, "redis.prefix"));
    redisReply *rep = redisCommand(c, "HSET %s st %b", key, buf, len);
    assert_non_null(rep);
    assert_int_not_equal(rep->type, REDIS_REPLY_ERROR);
    freeReplyObject(rep);
    redisFree(c);
    free(buf);
}

static uint64_t metric(int port, const char *name)
{
    resp_t r;
    assert_int_equal(call(port, "GET", "/metrics", NULL, NULL, NULL, &r), 200);
    char want[128];
    snprintf(want, sizeof(want), "\n%s ", name);
    const char *p = strstr(r.body, want);
    assert_non_null(p);
    uint64_t v = strtoull(p + strlen(want), NULL, 10);
    resp_free(&r);
    return v;
}

static void test_answer_cache(void **state)
{
    (void)state;
    arm();
    harness_t *h = make_harness("gw-cache", NULL);
    harness_load_rules(h, NULL);
    tok_t transport, market;
    token_create(h, &transport, "--department transport");
    token_create(h, &market, "--department market");
    gwfx_t *fx = gwfx_start(h->cfg);
    int port = fx->port;
    wait_ready(port);
    const char *path = "/v1/subjects/enterprise/" ENT1 "/measures";
    const char *hits = "jrp_gateway_answer_cache_hits_total";

    /* The first measure lapses in 2 s. The second check is the first's measures, reused. */
    int64_t until = harness_now_ms() + 2000;
    put_state(h, "甲运输公司", until, 2);
    resp_t r1, r2;
    assert_int_equal(call(port, "GET", path, transport.token, NULL, NULL, &r1), 200);
    assert_int_equal(metric(port, hits), 0);
    assert_int_equal(call(port, "GET", path, transport.token, NULL, NULL, &r2), 200);
    assert_int_equal(metric(port, hits), 1);
    assert_string_equal(measures_of(&r2),
                        "transport/STRICT_SUPERVISION, transport/RESTRICT_HANDLING");
    assert_true(
        json_equal(json_object_get(r1.json, "measures"), json_object_get(r2.json, "measures")));
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(r2.json, "subject"), "name")),
        "甲运输公司");
    assert_string_not_equal(json_string_value(json_object_get(r1.json, "check_id")),
                            json_string_value(json_object_get(r2.json, "check_id")));
    resp_free(&r1);
    resp_free(&r2);
    /* Another department is another answer. */
    assert_int_equal(call(port, "GET", path, market.token, NULL, NULL, &r1), 200);
    assert_string_equal(measures_of(&r1), "");
    resp_free(&r1);

    /* New state bytes: derived again. */
    put_state(h, "乙运输公司", until, 1);
    assert_int_equal(call(port, "GET", path, transport.token, NULL, NULL, &r1), 200);
    assert_string_equal(measures_of(&r1), "transport/STRICT_SUPERVISION");
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(r1.json, "subject"), "name")),
        "乙运输公司");
    resp_free(&r1);
    put_state(h, "乙运输公司", until, 2);
    assert_int_equal(call(port, "GET", path, transport.token, NULL, NULL, &r1), 200);
    assert_string_equal(measures_of(&r1),
                        "transport/STRICT_SUPERVISION, transport/RESTRICT_HANDLING");
    resp_free(&r1);

    /* Past valid_until_ms the same bytes give one measure fewer: the kept answer is not used. */
    while (harness_now_ms() <= until)
        usleep(50000);
    uint64_t before = metric(port, hits);
    assert_int_equal(call(port, "GET", path, transport.token, NULL, NULL, &r1), 200);
    assert_string_equal(measures_of(&r1), "transport/RESTRICT_HANDLING");
    resp_free(&r1);
    assert_int_equal(metric(port, hits), before);

    /* Every check was recorded, each with its own measures. */
    harness_records_t rec;
    harness_read(h, "checks", check_desc, 6, 1000, 30000, &rec);
    assert_int_equal(rec.n, 6);
    const size_t want_n[] = {2, 2, 0, 1, 2, 1};
    for (size_t i = 0; i < rec.n; i++) {
        const Jrp__V1__CheckRecord *c = rec.values[i];
        assert_int_equal(c->n_measures, want_n[i]);
    }
    harness_records_free(&rec, check_desc);
    gwfx_stop(fx);
    harness_destroy(h);
}

/* ---- every endpoint, department isolation, the audit record ------------------------------- */

static void test_endpoints_and_isolation(void **state)
{
    (void)state;
    arm();
    harness_t *h = make_harness("gw-e2e", NULL);
    harness_load_rules(h, NULL);
    harness_engine_start(h);
    tok_t transport, market, admin;
    token_create(h, &transport, "--department transport");
    token_create(h, &market, "--department market --note counter-7");
    token_create(h, &admin, "--department ndrc --scope admin");
    gwfx_t *fx = gwfx_start(h->cfg);
    int port = fx->port;
    wait_ready(port);

    resp_t r;
    assert_int_equal(call(port, "GET", "/healthz", NULL, NULL, NULL, &r), 200);
    assert_string_equal(json_string_value(json_object_get(r.json, "status")), "ok");
    resp_free(&r);
    assert_int_equal(call(port, "GET", "/readyz", NULL, NULL, NULL, &r), 200);
    assert_non_null(strstr(r.body, "version 1 active"));
    resp_free(&r);

    /* POST /v1/events: one event, then a batch; 202 with the ids after the broker's ack. */
    assert_int_equal(call(port, "POST", "/v1/events", transport.token,
                          listing_event("gw-1", "enterprise", ENT1, "transport", "black.overload"),
                          NULL, &r),
                     202);
    assert_string_equal(r.body, "{\"accepted\":[\"gw-1\"]}");
    resp_free(&r);
    char batch[4096];
    int bn = snprintf(batch, sizeof(batch), "{\"events\":[%s,",
                      listing_event("gw-2", "person", PERSON, "transport", "black.overload"));
    snprintf(batch + bn, sizeof(batch) - (size_t)bn, "%s]}",
             listing_event("gw-3", "vehicle",
                           "\xe6\xb4\xa5"
                           "A12345",
                           "transport", "black.overload"));
    assert_int_equal(call(port, "POST", "/v1/events", transport.token, batch, NULL, &r), 202);
    assert_string_equal(r.body, "{\"accepted\":[\"gw-2\",\"gw-3\"]}");
    resp_free(&r);

    /* They are on the events topic, keyed by subject key, with the schema header. */
    harness_records_t rec;
    harness_read(h, "events", event_desc, 3, 500, 30000, &rec);
    assert_int_equal(rec.n, 3);
    for (size_t i = 0; i < rec.n; i++) {
        const Jrp__V1__CreditEvent *ev = rec.values[i];
        char key[256];
        snprintf(key, sizeof(key), "%s:%s",
                 ev->subject->type == 1   ? "enterprise"
                 : ev->subject->type == 2 ? "person"
                                          : "vehicle",
                 ev->subject->id);
        assert_string_equal(rec.keys[i], key);
        assert_non_null(strstr(rec.header_dump[i], "jrp-schema=jrp.v1.CreditEvent;"));
        assert_string_equal(ev->source_department, "transport");
    }
    harness_records_free(&rec, event_desc);
    assert_int_equal(harness_wait_decisions(h, 3, 60000), 3);

    /* The credit check, as each department and as admin. The state reaches Redis just after the
     * commit: ask until the answer is complete. */
    const char *path = "/v1/subjects/enterprise/" ENT1 "/measures";
    for (int i = 0; i < 100; i++) {
        assert_int_equal(call(port, "GET", path, transport.token, NULL, NULL, &r), 200);
        int done = json_array_size(json_object_get(r.json, "measures")) == 2;
        if (!done)
            resp_free(&r);
        if (done)
            break;
        usleep(100000);
    }
    assert_string_equal(measures_of(&r),
                        "transport/STRICT_SUPERVISION, transport/RESTRICT_HANDLING");
    char check_id[64];
    snprintf(check_id, sizeof(check_id), "%s",
             json_string_value(json_object_get(r.json, "check_id")));
    assert_int_equal(strlen(check_id), 32);
    assert_string_equal(json_string_value(json_object_get(r.json, "requested_by")), transport.id);
    assert_string_equal(json_string_value(json_object_get(r.json, "department")), "transport");
    json_t *m0 = json_array_get(json_object_get(r.json, "measures"), 0);
    assert_int_equal(strlen(json_string_value(json_object_get(m0, "action_id"))), 32);
    assert_string_equal(json_string_value(json_object_get(m0, "measure_kind")),
                        "MEASURE_KIND_PENALTY");
    assert_string_equal(json_string_value(json_object_get(m0, "measure_text")),
                        "列为重点监管对象，提高路面执法和源头检查频次");
    assert_non_null(
        strstr(json_string_value(json_object_get(m0, "legal_basis")), "全国失信惩戒措施基础清单"));
    assert_string_equal(json_string_value(json_object_get(m0, "memorandum_id")), "overload-2017");
    assert_int_equal(strlen(json_string_value(json_object_get(m0, "memorandum_version"))), 12);
    assert_string_equal(json_string_value(json_object_get(m0, "list_code")), "black.overload");
    assert_non_null(json_object_get(m0, "valid_from_ms"));
    assert_non_null(json_object_get(m0, "valid_until_ms"));
    char action_id[64];
    snprintf(action_id, sizeof(action_id), "%s",
             json_string_value(json_object_get(m0, "action_id")));
    resp_free(&r);

    assert_int_equal(call(port, "GET", path, market.token, NULL, NULL, &r), 200);
    assert_string_equal(measures_of(&r), "market/RESTRICT_HANDLING");
    resp_free(&r);
    assert_int_equal(call(port, "GET", path, admin.token, NULL, NULL, &r), 200);
    assert_string_equal(measures_of(&r),
                        "transport/STRICT_SUPERVISION, transport/RESTRICT_HANDLING, "
                        "finance/RESTRICT_PROCUREMENT, ndrc/RESTRICT_HANDLING, "
                        "market/RESTRICT_HANDLING");
    assert_null(json_object_get(r.json, "department")); /* every department */
    resp_free(&r);
    char p2[256];
    snprintf(p2, sizeof(p2), "%s?department=finance", path);
    assert_int_equal(call(port, "GET", p2, admin.token, NULL, NULL, &r), 200);
    assert_string_equal(measures_of(&r), "finance/RESTRICT_PROCUREMENT");
    resp_free(&r);
    snprintf(p2, sizeof(p2), "%s?department=transport", path);
    assert_int_equal(call(port, "GET", p2, transport.token, NULL, NULL, &r), 200);
    assert_string_equal(measures_of(&r),
                        "transport/STRICT_SUPERVISION, transport/RESTRICT_HANDLING");
    resp_free(&r);
    snprintf(p2, sizeof(p2), "%s?department=market", path);
    assert_int_equal(call(port, "GET", p2, transport.token, NULL, NULL, &r), 403);
    assert_string_equal(err_code(&r), "wrong_department");
    assert_string_equal(err_field(&r), "department");
    resp_free(&r);
    /* A subject jrp knows nothing of: no measures, which is an answer too. */
    assert_int_equal(call(port, "GET", "/v1/subjects/enterprise/" ENT2 "/measures", transport.token,
                          NULL, NULL, &r),
                     200);
    assert_int_equal(json_array_size(json_object_get(r.json, "measures")), 0);
    assert_true(json_is_array(json_object_get(r.json, "measures")));
    resp_free(&r);

    /* A person: the id is masked in the log line, whole in the answer and the record. */
    int logpipe[2];
    assert_int_equal(pipe(logpipe), 0);
    assert_int_equal(fcntl(logpipe[0], F_SETFL, O_NONBLOCK), 0);
    log_set_fd(logpipe[1]);
    log_set_level(LOG_DEBUG);
    const char *trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    char extra[128];
    snprintf(extra, sizeof(extra), "traceparent: %s\r\n", trace);
    const char *ppath = "/v1/subjects/person/" PERSON "/measures?business_item=%E5%8A%9E%E8%AF%81";
    for (int i = 0; i < 100; i++) {
        assert_int_equal(call(port, "GET", ppath, admin.token, NULL, extra, &r), 200);
        int done = json_array_size(json_object_get(r.json, "measures")) == 3;
        if (!done)
            resp_free(&r);
        if (done)
            break;
        usleep(100000);
    }
    log_set_level(LOG_INFO);
    log_set_fd(2);
    assert_string_equal(measures_of(&r), "transport/STRICT_SUPERVISION, market/RESTRICT_HANDLING, "
                                         "public_security/WARNING_TALK");
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(r.json, "subject"), "id")), PERSON);
    assert_string_equal(json_string_value(json_object_get(r.json, "business_item")), "办证");
    char person_check[64];
    snprintf(person_check, sizeof(person_check), "%s",
             json_string_value(json_object_get(r.json, "check_id")));
    resp_free(&r);
    char logs[65536];
    ssize_t ln = read(logpipe[0], logs, sizeof(logs) - 1);
    close(logpipe[0]);
    close(logpipe[1]);
    assert_true(ln > 0);
    logs[ln] = '\0';
    assert_non_null(strstr(logs, "person:" PERSON_MASKED));
    assert_null(strstr(logs, PERSON));

    /* Every check is on the checks topic, keyed by subject key: who, whom, when, what. */
    harness_read(h, "checks", check_desc, 8, 1000, 30000, &rec);
    int found = 0, found_person = 0;
    for (size_t i = 0; i < rec.n; i++) {
        const Jrp__V1__CheckRecord *c = rec.values[i];
        assert_non_null(strstr(rec.header_dump[i], "jrp-schema=jrp.v1.CheckRecord;"));
        assert_true(c->checked_at_ms > harness_now_ms() - 600000);
        assert_true(strlen(c->requested_by) > 4);
        assert_null(strstr(c->requested_by, "jrp_")); /* the token id, never the token */
        if (!strcmp(c->check_id, check_id)) {
            found = 1;
            assert_string_equal(rec.keys[i], "enterprise:" ENT1);
            assert_string_equal(c->requested_by, transport.id);
            assert_string_equal(c->department, "transport");
            assert_int_equal(c->subject->type, JRP__V1__SUBJECT_TYPE__SUBJECT_TYPE_ENTERPRISE);
            assert_string_equal(c->subject->id, ENT1);
            assert_int_equal(c->n_measures, 2);
            assert_string_equal(c->measures[0]->action_id, action_id);
            assert_true(strlen(c->measures[0]->measure_text) > 0);
            assert_true(strlen(c->measures[0]->legal_basis) > 0);
        }
        if (!strcmp(c->check_id, person_check)) {
            found_person = 1;
            assert_string_equal(rec.keys[i], "person:" PERSON);
            assert_string_equal(c->subject->id, PERSON); /* whole: the record is the audit */
            assert_string_equal(c->requested_by, admin.id);
            assert_string_equal(c->department, "");
            assert_string_equal(c->business_item, "办证");
            assert_string_equal(c->traceparent, trace);
            assert_non_null(strstr(rec.header_dump[i], trace));
            assert_int_equal(c->n_measures, 3);
        }
    }
    assert_true(found);
    assert_true(found_person);
    harness_records_free(&rec, check_desc);

    /* POST /v1/feedback: a department's own action, keyed by action id. */
    char fb[512];
    snprintf(fb, sizeof(fb),
             "{\"action_id\":\"%s\",\"department\":\"transport\",\"status\":\"executed\","
             "\"note\":\"已限制\",\"occurred_at_ms\":%lld}",
             action_id, (long long)harness_now_ms());
    assert_int_equal(call(port, "POST", "/v1/feedback", transport.token, fb, NULL, &r), 202);
    char want[128];
    snprintf(want, sizeof(want), "{\"accepted\":[\"%s\"]}", action_id);
    assert_string_equal(r.body, want);
    resp_free(&r);
    harness_read(h, "feedback", feedback_desc, 1, 500, 30000, &rec);
    assert_int_equal(rec.n, 1);
    assert_string_equal(rec.keys[0], action_id);
    assert_non_null(strstr(rec.header_dump[0], "jrp-schema=jrp.v1.Feedback;"));
    assert_int_equal(((Jrp__V1__Feedback *)rec.values[0])->status,
                     JRP__V1__FEEDBACK_STATUS__FEEDBACK_STATUS_EXECUTED);
    harness_records_free(&rec, feedback_desc);
    /* ... but not another department's. */
    expect(port, "POST", "/v1/feedback", market.token, fb, 403, "wrong_department");

    /* GET /v1/reports/effects: admin only; from and to required and checked, each error naming
     * its field; JSON by default, CSV on Accept: text/csv. No ledger runs in this namespace, so
     * the lists are empty (tests/integration/test_ledger.c checks their content). */
    expect(port, "GET", "/v1/reports/effects", transport.token, NULL, 403, "forbidden");
    assert_int_equal(
        call(port, "GET", "/v1/reports/effects?from=2026-01-01", admin.token, NULL, NULL, &r), 400);
    assert_string_equal(err_code(&r), "missing_field");
    assert_string_equal(err_field(&r), "to");
    resp_free(&r);
    assert_int_equal(call(port, "GET", "/v1/reports/effects?from=2026-02-30&to=2026-03-01",
                          admin.token, NULL, NULL, &r),
                     400);
    assert_string_equal(err_code(&r), "bad_time");
    assert_string_equal(err_field(&r), "from");
    resp_free(&r);
    assert_int_equal(call(port, "GET", "/v1/reports/effects?from=2026-03-01&to=1700000000000",
                          admin.token, NULL, NULL, &r),
                     400);
    assert_string_equal(err_code(&r), "bad_range");
    resp_free(&r);
    assert_int_equal(call(port, "GET",
                          "/v1/reports/effects?from=2026-01-01T00:00:00%2B08:00&to=1798732800000",
                          admin.token, NULL, NULL, &r),
                     200);
    assert_non_null(strstr(r.hdrs, "content-type: application/json"));
    assert_non_null(strstr(r.body, "\"from_ms\":1767196800000,\"to_ms\":1798732800000,"));
    assert_non_null(strstr(r.body, "\"effects\":[],\"disclosures\":[]}"));
    resp_free(&r);
    assert_int_equal(call(port, "GET", "/v1/reports/effects?from=2026-01-01&to=2027-01-01",
                          admin.token, NULL, "Accept: text/csv\r\n", &r),
                     200);
    assert_non_null(strstr(r.hdrs, "content-type: text/csv"));
    assert_string_equal(r.body, "memorandum_id,department,applied,lifted,executed,rejected,"
                                "pending,overdue\r\n");
    resp_free(&r);

    /* GET /metrics: Prometheus text with what the issue asks for. */
    assert_int_equal(call(port, "GET", "/metrics", NULL, NULL, NULL, &r), 200);
    assert_non_null(strstr(r.hdrs, "content-type: text/plain; version=0.0.4"));
    const char *want_metrics[] = {
        "jrp_gateway_requests_total{route=\"measures\",status=\"200\"}",
        "jrp_gateway_requests_total{route=\"events\",status=\"202\"} 2",
        "jrp_gateway_requests_total{route=\"feedback\",status=\"403\"} 1",
        "# TYPE jrp_gateway_request_duration_seconds histogram",
        "jrp_gateway_request_duration_seconds_bucket{route=\"measures\",le=\"+Inf\"}",
        "jrp_gateway_produce_errors_total 0",
        "jrp_gateway_redis_errors_total 0",
        "jrp_gateway_events_accepted_total 3",
        "jrp_gateway_feedback_accepted_total 1",
        "jrp_gateway_kafka_up 1",
        "jrp_gateway_redis_up 1",
        "jrp_gateway_checks_recorded_total ",
    };
    for (size_t i = 0; i < sizeof(want_metrics) / sizeof(want_metrics[0]); i++)
        if (!strstr(r.body, want_metrics[i])) {
            fprintf(stderr, "/metrics said:\n%s\n", r.body);
            fail_msg("no \"%s\" in /metrics", want_metrics[i]);
        }
    /* This request's own connection is open; connections the earlier calls
     * closed may not have been reaped yet on a busy machine, so at least 1. */
    const char *open_line = strstr(r.body, "\njrp_gateway_connections_open ");
    assert_non_null(open_line);
    assert_true(atol(open_line + strlen("\njrp_gateway_connections_open ")) >= 1);
    resp_free(&r);

    gwfx_stop(fx);
    assert_int_equal(harness_engine_signal(h, SIGTERM), 0);
    harness_destroy(h);
}

/* ---- the token matrix ----------------------------------------------------------------------- */

static void test_token_matrix(void **state)
{
    (void)state;
    arm();
    harness_t *h = make_harness("gw-tok", NULL);
    harness_load_rules(h, NULL);
    tok_t dept, checker, writer, admin, doomed;
    token_create(h, &dept, "--department transport");
    token_create(h, &checker, "--department transport --scope check:read");
    token_create(h, &writer, "--department market --scope events:write --scope feedback:write");
    token_create(h, &admin, "--department ndrc --scope admin");
    token_create(h, &doomed, "--department transport");
    gwfx_t *fx = gwfx_start(h->cfg);
    int port = fx->port;
    wait_ready(port);
    const char *check = "/v1/subjects/enterprise/" ENT1 "/measures";
    char fb[256];
    snprintf(fb, sizeof(fb),
             "{\"action_id\":\"a-1\",\"department\":\"transport\",\"status\":\"received\","
             "\"occurred_at_ms\":%lld}",
             (long long)harness_now_ms());
    const char *ev = listing_event("t-1", "enterprise", ENT2, "transport", "red.construction");

    /* No token, a malformed one, an unknown one: 401 on every API route. */
    resp_t r;
    assert_int_equal(call(port, "GET", check, NULL, NULL, NULL, &r), 401);
    assert_string_equal(err_code(&r), "unauthorized");
    assert_non_null(strstr(r.hdrs, "www-authenticate: Bearer"));
    resp_free(&r);
    expect(port, "POST", "/v1/events", NULL, ev, 401, "unauthorized");
    expect(port, "POST", "/v1/feedback", NULL, fb, 401, "unauthorized");
    expect(port, "GET", "/v1/reports/effects", NULL, NULL, 401, "unauthorized");
    expect(port, "GET", check, "jrp_not a token", NULL, 401, "invalid_token");
    expect(port, "GET", check, "jrp_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", NULL, 401,
           "invalid_token");
    /* The same token twice: the refusal is cached, and still a refusal. */
    expect(port, "GET", check, "jrp_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", NULL, 401,
           "invalid_token");
    /* A token's hash is not the token. */
    char hash[65];
    sha256_hex(dept.token, hash);
    expect(port, "GET", check, hash, NULL, 401, "invalid_token");

    /* Scopes: 403 outside them; the default department token has the three department scopes. */
    expect(port, "GET", check, dept.token, NULL, 200, NULL);
    expect(port, "POST", "/v1/events", dept.token, ev, 202, NULL);
    expect(port, "POST", "/v1/feedback", dept.token, fb, 202, NULL);
    expect(port, "GET", "/v1/reports/effects", dept.token, NULL, 403, "forbidden");
    expect(port, "GET", check, checker.token, NULL, 200, NULL);
    expect(port, "POST", "/v1/events", checker.token, ev, 403, "forbidden");
    expect(port, "POST", "/v1/feedback", checker.token, fb, 403, "forbidden");
    expect(port, "GET", check, writer.token, NULL, 403, "forbidden");

    /* Departments: a token speaks for its own department only. */
    expect(port, "POST", "/v1/feedback", writer.token, fb, 403, "wrong_department");
    assert_int_equal(call(port, "POST", "/v1/events", writer.token, ev, NULL, &r), 403);
    assert_string_equal(err_code(&r), "wrong_department");
    assert_string_equal(err_field(&r), "source_department");
    resp_free(&r);
    char p2[256];
    snprintf(p2, sizeof(p2), "%s?department=market", check);
    expect(port, "GET", p2, dept.token, NULL, 403, "wrong_department");

    /* Admin: every route, any department. */
    expect(port, "GET", p2, admin.token, NULL, 200, NULL);
    expect(port, "POST", "/v1/events", admin.token,
           listing_event("t-2", "enterprise", ENT2, "market", "red.construction"), 202, NULL);
    snprintf(fb, sizeof(fb),
             "{\"action_id\":\"a-2\",\"department\":\"finance\",\"status\":\"received\","
             "\"occurred_at_ms\":%lld}",
             (long long)harness_now_ms());
    expect(port, "POST", "/v1/feedback", admin.token, fb, 202, NULL);
    expect(port, "GET", "/v1/reports/effects?from=0&to=1", admin.token, NULL, 200, NULL);

    /* Revoked: refused once the gateway's cache (300 ms here) has let go of it. */
    expect(port, "GET", check, doomed.token, NULL, 200, NULL);
    char out[2048];
    assert_int_equal(harness_jrpctl(h, out, sizeof(out), "token revoke %s", doomed.id), 0);
    assert_non_null(strstr(out, "revoked token"));
    usleep(600000);
    expect(port, "GET", check, doomed.token, NULL, 401, "token_revoked");
    assert_int_equal(harness_jrpctl(h, out, sizeof(out), "token revoke %s", doomed.id), 0);
    assert_non_null(strstr(out, "already revoked"));
    gwfx_stop(fx);

    /* The durable copy: records keyed by token id, the hash but never the token. */
    harness_records_t rec;
    harness_read(h, "tokens", token_desc, 6, 500, 30000, &rec);
    assert_int_equal(rec.n, 6);
    const Jrp__V1__TokenRecord *last = NULL;
    for (size_t i = 0; i < rec.n; i++) {
        const Jrp__V1__TokenRecord *t = rec.values[i];
        assert_string_equal(rec.keys[i], t->token_id);
        assert_non_null(strstr(rec.header_dump[i], "jrp-schema=jrp.v1.TokenRecord;"));
        assert_int_equal(strlen(t->token_sha256), 64);
        assert_null(memmem(rec.values[i], 0, "jrp_", 4));
        if (!strcmp(t->token_id, doomed.id))
            last = t;
        if (!strcmp(t->token_id, dept.id)) {
            assert_string_equal(t->token_sha256, hash);
            assert_string_equal(t->department, "transport");
            assert_int_equal(t->n_scopes, 3);
            assert_int_equal(t->revoked_at_ms, 0);
        }
        if (!strcmp(t->token_id, writer.id))
            assert_int_equal(t->n_scopes, 2);
    }
    assert_non_null(last);
    assert_true(last->revoked_at_ms > 0);
    harness_records_free(&rec, token_desc);
    /* Raw bytes: no record holds a token. */
    harness_read(h, "tokens", NULL, 6, 300, 30000, &rec);
    for (size_t i = 0; i < rec.n; i++) {
        assert_null(memmem(rec.values[i], rec.lens[i], dept.token, strlen(dept.token)));
        assert_null(memmem(rec.values[i], rec.lens[i], doomed.token, strlen(doomed.token)));
    }
    harness_records_free(&rec, NULL);
    /* Redis keeps the hash as the key and no token. */
    char err[256], key[256];
    redisContext *c = redis_connect(testenv_redis_url(), 5000, err, sizeof(err));
    assert_non_null(c);
    snprintf(key, sizeof(key), "%stoken:%s", config_get(h->cfg, "redis.prefix"), hash);
    redisReply *rep = redisCommand(c, "HGETALL %s", key);
    assert_non_null(rep);
    assert_int_equal(rep->type, REDIS_REPLY_ARRAY);
    assert_int_equal(rep->elements, 14);
    for (size_t i = 0; i < rep->elements; i++)
        assert_null(strstr(rep->element[i]->str, "jrp_"));
    freeReplyObject(rep);
    redisFree(c);

    /* The command line: one clear line on every mistake. */
    assert_int_equal(harness_jrpctl(h, out, sizeof(out), "token --help"), 0);
    assert_non_null(strstr(out, "token create --department D"));
    assert_int_equal(harness_jrpctl(h, out, sizeof(out), "token create"), 1);
    assert_non_null(strstr(out, "needs --department"));
    assert_int_equal(harness_jrpctl(h, out, sizeof(out), "token create --department X"), 1);
    assert_int_equal(
        harness_jrpctl(h, out, sizeof(out), "token create --department transport --scope root"), 1);
    assert_non_null(strstr(out, "unknown scope"));
    assert_int_equal(harness_jrpctl(h, out, sizeof(out), "token revoke tok_nope"), 1);
    assert_int_equal(harness_jrpctl(h, out, sizeof(out), "token list"), 0);
    assert_non_null(strstr(out, dept.id));
    assert_non_null(strstr(out, "yes")); /* the revoked one */
    assert_null(strstr(out, "jrp_"));
    harness_destroy(h);
}

/* ---- the bad-input suite -------------------------------------------------------------------- */

typedef struct bad_case_s {
    const char *name;
    const char *raw;  /* the request, or its head when body is set; "TOKEN": a valid token */
    const char *body; /* NULL, or a JSON body sent with its Content-Length */
    int half_close;
    int status; /* 0: the connection closes without an answer */
    const char *code;
} bad_case_t;

#define AUTH "Authorization: Bearer TOKEN\r\n"
#define POST_EVENTS "POST /v1/events HTTP/1.1\r\nHost: t\r\n" AUTH
#define POST_FEEDBACK "POST /v1/feedback HTTP/1.1\r\nHost: t\r\n" AUTH
#define JSON_CT "Content-Type: application/json\r\n"
#define EV_HEAD                                                                                    \
    "{\"event_id\":\"b-1\",\"kind\":\"listed\",\"source_department\":\"transport\","               \
    "\"occurred_at_ms\":1764000000000,\"list_code\":\"black.overload\","
#define EV_OK EV_HEAD "\"subject\":{\"type\":\"enterprise\",\"id\":\"" ENT1 "\"}}"
#define EV_BAD EV_HEAD "\"subject\":{\"type\":\"enterprise\",\"id\":\"" ENT_BAD "\"}}"
#define CHECK_PATH(id) "GET /v1/subjects/enterprise/" id "/measures"
#define CHECK(id) CHECK_PATH(id) " HTTP/1.1\r\nHost: t\r\n" AUTH "\r\n"
#define CHECK_AUTH(auth) CHECK_PATH(ENT1) " HTTP/1.1\r\nHost: t\r\n" auth "\r\n"

/* Send c (the token put in) and check the status and the error code. */
static void run_case(int port, const char *token, const bad_case_t *c)
{
    const char *raw = c->raw;
    size_t cap = strlen(raw) + (c->body ? strlen(c->body) : 0) + 512;
    char *buf = malloc(cap);
    assert_non_null(buf);
    const char *t = strstr(raw, "TOKEN");
    int n = t ? snprintf(buf, cap, "%.*s%s%s", (int)(t - raw), raw, token, t + 5)
              : snprintf(buf, cap, "%s", raw);
    if (c->body)
        snprintf(buf + n, cap - (size_t)n, JSON_CT "Content-Length: %zu\r\n\r\n%s", strlen(c->body),
                 c->body);
    resp_t r;
    int rc = raw_call(port, buf, strlen(buf), c->half_close, &r);
    free(buf);
    if (c->status == 0) {
        if (rc != -1)
            fail_msg("%s: want the connection closed without an answer; got %d (status %d)",
                     c->name, rc, r.status);
        resp_free(&r);
        return;
    }
    if (rc != 0)
        fail_msg("%s: no answer (%d)", c->name, rc);
    if (r.status != c->status || strcmp(err_code(&r), c->code))
        fail_msg("%s: got %d %s, want %d %s: %s", c->name, r.status, err_code(&r), c->status,
                 c->code, r.body);
    /* Every error body is the contract's: an object with code and message. */
    if (r.status >= 400) {
        json_t *e = json_object_get(r.json, "error");
        assert_non_null(json_string_value(json_object_get(e, "message")));
        if (r.status == 405)
            assert_non_null(strstr(r.hdrs, "allow: "));
    }
    resp_free(&r);
}

static void test_bad_input_suite(void **state)
{
    (void)state;
    arm();
    harness_t *h =
        make_harness("gw-bad", "gateway.max_body_bytes = 4096\ngateway.max_header_bytes = 2048\n"
                               "gateway.max_url_bytes = 512\ngateway.header_timeout_ms = 700\n"
                               "gateway.body_timeout_ms = 700\ngateway.max_batch_events = 3\n"
                               "gateway.max_connections = 12\n");
    harness_load_rules(h, NULL);
    tok_t tok;
    token_create(h, &tok, "--department transport");
    gwfx_t *fx = gwfx_start(h->cfg);
    int port = fx->port;
    wait_ready(port);

    char big_header[3000], big_url[700], deep[700], too_many[4096];
    snprintf(big_header, sizeof(big_header), "GET /healthz HTTP/1.1\r\nX-Big: %02900d\r\n\r\n", 0);
    snprintf(big_url, sizeof(big_url), "GET /healthz?x=%0600d HTTP/1.1\r\n\r\n", 0);
    int dn = snprintf(deep, sizeof(deep), "{\"attributes\":");
    for (int i = 0; i < 300; i++)
        deep[dn++] = '[';
    deep[dn] = '\0';
    snprintf(too_many, sizeof(too_many), "{\"events\":[%s,%s,%s,%s]}", EV_OK, EV_OK, EV_OK, EV_OK);
    static char big_chunked[8000];
    int cn = snprintf(big_chunked, sizeof(big_chunked),
                      POST_EVENTS JSON_CT "Transfer-Encoding: chunked\r\n\r\n1388\r\n");
    memset(big_chunked + cn, ' ', 5000);
    snprintf(big_chunked + cn + 5000, sizeof(big_chunked) - (size_t)cn - 5000, "\r\n0\r\n\r\n");

    /* clang-format off */
    const bad_case_t cases[] = {
        /* Bodies: malformed JSON, wrong types, bad identifiers, unknown enum names, UTF-8. */
        {"malformed JSON", POST_EVENTS, "{\"event_id\": ", 0, 400, "bad_json"},
        {"empty body", POST_EVENTS, "", 0, 400, "bad_json"},
        {"body is an array", POST_EVENTS, "[" EV_OK "]", 0, 400, "wrong_type"},
        {"body is a string", POST_EVENTS, "\"event\"", 0, 400, "wrong_type"},
        {"event_id is a number", POST_EVENTS, "{\"event_id\":12}", 0, 400, "wrong_type"},
        {"occurred_at_ms is an object", POST_EVENTS, "{\"occurred_at_ms\":{}}", 0, 400,
         "wrong_type"},
        {"kind is a boolean", POST_EVENTS, "{\"kind\":true}", 0, 400, "wrong_type"},
        {"unknown field", POST_EVENTS, "{\"evnt_id\":\"x\"}", 0, 400, "unknown_field"},
        {"bad check character: credit code", POST_EVENTS, EV_BAD, 0, 400, "bad_checksum"},
        {"bad check character: identity number", POST_EVENTS,
         EV_HEAD "\"subject\":{\"type\":\"person\",\"id\":\"110105194912310021\"}}", 0, 400,
         "bad_checksum"},
        {"unknown enum name: kind", POST_EVENTS, "{\"kind\":\"blacklisted\"}", 0, 400,
         "bad_enum"},
        {"unknown enum name: subject type", POST_EVENTS,
         EV_HEAD "\"subject\":{\"type\":\"company\",\"id\":\"" ENT1 "\"}}", 0, 400, "bad_enum"},
        {"unknown enum number", POST_EVENTS, "{\"kind\":99}", 0, 400, "bad_enum"},
        {"time in microseconds", POST_EVENTS,
         "{\"event_id\":\"b\",\"kind\":\"listed\",\"subject\":{\"type\":\"enterprise\",\"id\":\""
         ENT1 "\"},\"source_department\":\"transport\",\"occurred_at_ms\":1764000000000000,"
         "\"list_code\":\"black.overload\"}", 0, 400, "out_of_range"},
        {"integer overflow", POST_EVENTS, "{\"occurred_at_ms\":99999999999999999999999}", 0, 400,
         "out_of_range"},
        {"invalid UTF-8", POST_EVENTS, "{\"event_id\":\"\xc3\x28\"}", 0, 400, "bad_utf8"},
        {"overlong UTF-8", POST_EVENTS, "{\"event_id\":\"\xc0\xaf\"}", 0, 400, "bad_utf8"},
        {"duplicate keys", POST_EVENTS, "{\"event_id\":\"a\",\"event_id\":\"b\"}", 0, 400,
         "bad_json"},
        {"nested too deep", POST_EVENTS, deep, 0, 400, "bad_json"},
        {"batch: events is not an array", POST_EVENTS, "{\"events\":{}}", 0, 400, "wrong_type"},
        {"batch: empty", POST_EVENTS, "{\"events\":[]}", 0, 400, "missing_field"},
        {"batch: an extra field", POST_EVENTS, "{\"events\":[" EV_OK "],\"source\":\"x\"}", 0,
         400, "unknown_field"},
        {"batch: the third event bad", POST_EVENTS,
         "{\"events\":[" EV_OK "," EV_OK "," EV_BAD "]}", 0, 400, "bad_checksum"},
        {"batch: too many events", POST_EVENTS, too_many, 0, 413, "too_many_events"},
        {"not JSON: text/plain", POST_EVENTS "Content-Type: text/plain\r\n"
         "Content-Length: 2\r\n\r\n{}", NULL, 0, 415, "unsupported_media_type"},
        {"feedback: missing fields", POST_FEEDBACK, "{}", 0, 400, "missing_field"},
        {"feedback: unknown status", POST_FEEDBACK,
         "{\"action_id\":\"a\",\"department\":\"transport\",\"status\":\"done\","
         "\"occurred_at_ms\":1764000000000}", 0, 400, "bad_enum"},
        {"feedback: bad department code", POST_FEEDBACK,
         "{\"action_id\":\"a\",\"department\":\"Trans Port\",\"status\":\"executed\","
         "\"occurred_at_ms\":1764000000000}", 0, 400, "bad_format"},
        /* Sizes and times: the HTTP layer's own answers. */
        {"oversize body (Content-Length)",
         POST_EVENTS JSON_CT "Content-Length: 5000\r\n\r\n{", NULL, 0, 413, "body_too_large"},
        {"oversize chunked body", big_chunked, NULL, 0, 413, "body_too_large"},
        {"oversize headers", big_header, NULL, 0, 431, "headers_too_large"},
        {"oversize URL", big_url, NULL, 0, 414, "uri_too_long"},
        {"truncated chunked body", POST_EVENTS JSON_CT "Transfer-Encoding: chunked\r\n\r\n"
         "20\r\n{\"event_id\":", NULL, 0, 408, "request_timeout"},
        {"bad chunk size", POST_EVENTS JSON_CT "Transfer-Encoding: chunked\r\n\r\nzz\r\n", NULL,
         0, 400, "bad_request"},
        {"unsupported transfer coding", POST_EVENTS "Transfer-Encoding: gzip\r\n\r\n", NULL, 0,
         501, "not_implemented"},
        {"slowloris: a head that never ends", "GET /healthz HTTP/1.1\r\nHost: t\r\nX-Slow: 1",
         NULL, 0, 408, "request_timeout"},
        {"malformed request line", "GET\x01/healthz HTTP/1.1\r\n\r\n", NULL, 0, 400,
         "bad_request"},
        {"not HTTP at all (TLS)", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", NULL, 0,
         400, "bad_request"},
        /* Half-closed sockets: whole requests are still answered, cut ones are not. */
        {"half-closed after a whole request", "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n", NULL, 1,
         200, "(none)"},
        {"half-closed after a request without a token", CHECK_AUTH(""), NULL, 1, 401,
         "unauthorized"},
        {"half-closed after a bad request", POST_EVENTS "\r\n", NULL, 1, 400, "bad_json"},
        {"half-closed in the middle of a head", "GET /healthz HTTP/1.1\r\nHo", NULL, 1, 0, NULL},
        /* Ids in the path: traversal, encodings, check characters. */
        {"path traversal: ..", CHECK(".."), NULL, 0, 400, "bad_path"},
        {"path traversal: %2e%2e", CHECK("%2e%2e"), NULL, 0, 400, "bad_path"},
        {"path traversal: %2F", CHECK("..%2F..%2Fetc%2Fpasswd"), NULL, 0, 400, "bad_path"},
        {"NUL in an id: %00", CHECK(ENT1 "%00"), NULL, 0, 400, "bad_path"},
        {"bad percent-encoding in an id", CHECK("%G1"), NULL, 0, 400, "bad_path"},
        {"empty id", CHECK(""), NULL, 0, 400, "missing_field"},
        {"bad check character in the path", CHECK(ENT_BAD), NULL, 0, 400, "bad_checksum"},
        {"identity number with a bad date", "GET /v1/subjects/person/110105194913310027/measures "
         "HTTP/1.1\r\n" AUTH "\r\n", NULL, 0, 400, "bad_date"},
        {"unknown subject type in the path", "GET /v1/subjects/company/" ENT1 "/measures "
         "HTTP/1.1\r\n" AUTH "\r\n", NULL, 0, 400, "bad_enum"},
        {"bad department code in the query", CHECK_PATH(ENT1) "?department=Trans%20port "
         "HTTP/1.1\r\n" AUTH "\r\n", NULL, 0, 400, "bad_format"},
        {"invalid UTF-8 in the query", CHECK_PATH(ENT1) "?business_item=%FF%FE HTTP/1.1\r\n"
         AUTH "\r\n", NULL, 0, 400, "bad_utf8"},
        /* Routes and methods. */
        {"unknown route", "GET /v1/secrets HTTP/1.1\r\n\r\n", NULL, 0, 404, "not_found"},
        {"unknown route with traversal", "GET /../../etc/passwd HTTP/1.1\r\n\r\n", NULL, 0, 404,
         "not_found"},
        {"route with a trailing slash", "GET /healthz/ HTTP/1.1\r\n\r\n", NULL, 0, 404,
         "not_found"},
        {"wrong method: DELETE events", "DELETE /v1/events HTTP/1.1\r\n" AUTH "\r\n", NULL, 0,
         405, "method_not_allowed"},
        {"wrong method: GET events", "GET /v1/events HTTP/1.1\r\n" AUTH "\r\n", NULL, 0, 405,
         "method_not_allowed"},
        {"wrong method: POST a check", "POST /v1/subjects/enterprise/" ENT1 "/measures "
         "HTTP/1.1\r\nContent-Length: 0\r\n\r\n", NULL, 0, 405, "method_not_allowed"},
        {"wrong method: PUT healthz", "PUT /healthz HTTP/1.1\r\nContent-Length: 0\r\n\r\n", NULL,
         0, 405, "method_not_allowed"},
        /* Authorization: missing, empty, garbage, unknown. */
        {"no Authorization", CHECK_AUTH(""), NULL, 0, 401, "unauthorized"},
        {"empty Authorization", CHECK_AUTH("Authorization: \r\n"), NULL, 0, 401, "unauthorized"},
        {"Authorization: Basic", CHECK_AUTH("Authorization: Basic dXNlcjpwYXNz\r\n"), NULL, 0,
         401, "invalid_token"},
        {"Authorization: Bearer and nothing", CHECK_AUTH("Authorization: Bearer\r\n"), NULL, 0,
         401, "invalid_token"},
        {"Authorization: Bearer with spaces", CHECK_AUTH("Authorization: Bearer a b c\r\n"), NULL,
         0, 401, "invalid_token"},
        {"Authorization: Bearer with UTF-8",
         CHECK_AUTH("Authorization: Bearer \xe4\xbb\xa4\xe7\x89\x8c\r\n"), NULL, 0, 401,
         "invalid_token"},
        {"Authorization: an unknown token",
         CHECK_AUTH("Authorization: Bearer jrp_0000000000000000000000000000000000000000000\r\n"),
         NULL, 0, 401, "invalid_token"},
    };
    /* clang-format on */
    size_t n = sizeof(cases) / sizeof(cases[0]);
    assert_true(n >= 40);
    for (size_t i = 0; i < n; i++)
        run_case(port, tok.token, &cases[i]);

    /* Too many connections: the thirteenth of twelve allowed gets 503. */
    /* Wait for the suite's connections to be gone (the metrics request is the only one). */
    resp_t r;
    for (int i = 0;; i++) {
        assert_int_equal(call(port, "GET", "/metrics", NULL, NULL, NULL, &r), 200);
        int alone = strstr(r.body, "jrp_gateway_connections_open 1\n") != NULL;
        resp_free(&r);
        if (alone)
            break;
        if (i == 100)
            fail_msg("connections stay open");
        usleep(100000);
    }
    /* Twelve kept-alive connections, each served once (so each is surely counted). */
    int idle[12];
    for (int i = 0; i < 12; i++) {
        for (int attempt = 0;; attempt++) {
            idle[i] = cl_connect(port);
            cl_send(idle[i], "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n", 35);
            assert_int_equal(cl_read(idle[i], &r, RECV_TIMEOUT_MS), 0);
            int st = r.status;
            resp_free(&r);
            if (st == 200)
                break;
            close(idle[i]); /* a closed connection not yet reaped by the server: try again */
            assert_true(attempt < 20);
            usleep(100000);
        }
    }
    bad_case_t over = {"over max_connections", "GET /healthz HTTP/1.1\r\n\r\n", NULL, 0, 503,
                       "too_many_connections"};
    run_case(port, tok.token, &over);
    for (int i = 0; i < 12; i++)
        close(idle[i]);

    /* Still up, and it counted what the HTTP layer refused. */
    for (int i = 0; i < 50; i++) {
        int fd = cl_connect(port);
        cl_send(fd, "GET /healthz HTTP/1.1\r\n\r\n", 25);
        int rc = cl_read(fd, &r, RECV_TIMEOUT_MS);
        close(fd);
        if (rc == 0 && r.status == 200)
            break;
        resp_free(&r);
        usleep(100000);
    }
    assert_int_equal(r.status, 200);
    resp_free(&r);
    assert_int_equal(call(port, "GET", "/metrics", NULL, NULL, NULL, &r), 200);
    assert_non_null(strstr(r.body, "jrp_gateway_requests_total{route=\"events\",status=\"400\"}"));
    assert_null(strstr(r.body, "jrp_gateway_http_rejected_total 0\n"));
    resp_free(&r);
    gwfx_stop(fx);
    harness_destroy(h);
}

/* ---- Kafka or Redis unreachable -------------------------------------------------------------- */

/* A copy of the harness's settings with some keys changed ("key=value" pairs, NULL-ended). */
static config_t *config_with(harness_t *h, ...)
{
    char err[512];
    config_t *cfg = config_create();
    assert_non_null(cfg);
    if (config_load_file(cfg, h->conf_path, err, sizeof(err)))
        fail_msg("%s", err);
    va_list ap;
    va_start(ap, h);
    for (const char *k; (k = va_arg(ap, const char *));) {
        const char *v = va_arg(ap, const char *);
        if (config_set(cfg, k, v, "test", err, sizeof(err)))
            fail_msg("%s", err);
    }
    va_end(ap);
    return cfg;
}

/* A port nothing listens on. */
static int dead_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa;
    socklen_t len = sizeof(sa);
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    close(fd);
    return ntohs(sa.sin_port);
}

static void test_kafka_unreachable(void **state)
{
    (void)state;
    arm();
    harness_t *h = make_harness("gw-nokafka", NULL);
    harness_load_rules(h, NULL);
    tok_t tok;
    token_create(h, &tok, "--department transport");
    char bs[64];
    snprintf(bs, sizeof(bs), "127.0.0.1:%d", dead_port());
    config_t *cfg =
        config_with(h, "kafka.bootstrap.servers", bs, "gateway.request_timeout_ms", "2500",
                    "kafka.reconnect.backoff.max.ms", "200", "kafka.log_level", "0", NULL);
    gwfx_t *fx = gwfx_start(cfg);
    int port = fx->port;
    resp_t r;
    assert_int_equal(call(port, "GET", "/healthz", NULL, NULL, NULL, &r), 200);
    resp_free(&r);
    /* Not ready: Kafka named as the part that failed (once Redis has connected). */
    for (int i = 0;; i++) {
        assert_int_equal(call(port, "GET", "/readyz", NULL, NULL, NULL, &r), 503);
        if (!json_object_get(r.json, "errors") || i == 50)
            break;
        resp_free(&r);
        usleep(100000);
    }
    assert_string_equal(err_code(&r), "kafka_unavailable");
    assert_string_equal(err_field(&r), "kafka");
    assert_null(json_object_get(r.json, "errors")); /* Redis and rules are fine */
    resp_free(&r);
    /* Nothing is accepted, and nothing is answered without its record: 503, never a 2xx. */
    const char *ev = listing_event("k-1", "enterprise", ENT1, "transport", "black.overload");
    expect(port, "POST", "/v1/events", tok.token, ev, 503, "kafka_unavailable");
    expect(port, "GET", "/v1/subjects/enterprise/" ENT1 "/measures", tok.token, NULL, 503,
           "kafka_unavailable");
    /* By now the gateway knows: it refuses at once rather than after the timeout. */
    struct timespec t0, t1;
    int fast = 0;
    for (int i = 0; i < 30 && !fast; i++) {
        clock_gettime(CLOCK_MONOTONIC, &t0);
        expect(port, "POST", "/v1/events", tok.token, ev, 503, "kafka_unavailable");
        clock_gettime(CLOCK_MONOTONIC, &t1);
        fast = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000 < 1000;
        if (!fast)
            usleep(200000);
    }
    assert_true(fast);
    assert_int_equal(call(port, "GET", "/metrics", NULL, NULL, NULL, &r), 200);
    assert_non_null(strstr(r.body, "jrp_gateway_kafka_up 0"));
    assert_null(strstr(r.body, "jrp_gateway_kafka_down_refusals_total 0\n"));
    assert_non_null(strstr(r.body, "jrp_gateway_requests_total{route=\"events\",status=\"503\"}"));
    resp_free(&r);
    gwfx_stop(fx);
    config_destroy(cfg);
    harness_destroy(h);
}

/* gateway.check_record = queued: answered once queued; a record that then fails is counted. */
static void test_check_record_queued(void **state)
{
    (void)state;
    arm();
    harness_t *h = make_harness("gw-queued", "gateway.check_record = queued\n");
    harness_load_rules(h, NULL);
    tok_t tok;
    token_create(h, &tok, "--department transport");
    const char *path = "/v1/subjects/enterprise/" ENT1 "/measures";
    gwfx_t *fx = gwfx_start(h->cfg);
    wait_ready(fx->port);
    resp_t r;
    assert_int_equal(call(fx->port, "GET", path, tok.token, NULL, NULL, &r), 200);
    char check_id[64];
    snprintf(check_id, sizeof(check_id), "%s",
             json_string_value(json_object_get(r.json, "check_id")));
    resp_free(&r);
    harness_records_t rec;
    harness_read(h, "checks", check_desc, 1, 500, 30000, &rec);
    assert_int_equal(rec.n, 1);
    assert_string_equal(((const Jrp__V1__CheckRecord *)rec.values[0])->check_id, check_id);
    harness_records_free(&rec, check_desc);
    for (int i = 0; i < 50 && metric(fx->port, "jrp_gateway_checks_recorded_total") < 1; i++)
        usleep(100000);
    assert_int_equal(metric(fx->port, "jrp_gateway_checks_recorded_total"), 1);
    assert_int_equal(metric(fx->port, "jrp_gateway_checks_unrecorded_total"), 0);
    gwfx_stop(fx);

    /* The trade-off: with no broker, a check is answered and its record is lost, which the
     * gateway counts and logs; once it knows Kafka is down it refuses at once, as when acked. */
    char bs[64];
    snprintf(bs, sizeof(bs), "127.0.0.1:%d", dead_port());
    config_t *cfg =
        config_with(h, "kafka.bootstrap.servers", bs, "gateway.request_timeout_ms", "1000",
                    "kafka.reconnect.backoff.max.ms", "200", "kafka.log_level", "0", NULL);
    fx = gwfx_start(cfg);
    int answered = 0, refused = 0;
    for (int i = 0; i < 100 && !refused; i++) {
        int st = call(fx->port, "GET", path, tok.token, NULL, NULL, &r);
        assert_true(st == 200 || st == 503);
        int redis_first = st == 503 && !strcmp(err_code(&r), "redis_unavailable") && !answered;
        if (st == 503 && !redis_first) /* Redis connects just after the start */
            assert_string_equal(err_code(&r), "kafka_unavailable");
        answered += st == 200;
        refused = st == 503 && !redis_first;
        resp_free(&r);
        usleep(50000);
    }
    assert_true(refused);
    for (int i = 0;
         i < 60 && metric(fx->port, "jrp_gateway_checks_unrecorded_total") < (uint64_t)answered;
         i++)
        usleep(100000);
    assert_int_equal(metric(fx->port, "jrp_gateway_checks_unrecorded_total"), answered);
    assert_int_equal(metric(fx->port, "jrp_gateway_checks_recorded_total"), 0);
    gwfx_stop(fx);
    config_destroy(cfg);
    harness_destroy(h);
}

static void test_redis_unreachable(void **state)
{
    (void)state;
    arm();
    harness_t *h = make_harness("gw-noredis", NULL);
    char url[64];
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d/0", dead_port());
    config_t *cfg = config_with(h, "redis.url", url, NULL);
    gwfx_t *fx = gwfx_start(cfg);
    int port = fx->port;
    resp_t r;
    assert_int_equal(call(port, "GET", "/healthz", NULL, NULL, NULL, &r), 200);
    resp_free(&r);
    /* Not ready: Redis and the rules (which live in Redis), each in "errors". */
    assert_int_equal(call(port, "GET", "/readyz", NULL, NULL, NULL, &r), 503);
    assert_string_equal(err_code(&r), "redis_unavailable");
    json_t *errs = json_object_get(r.json, "errors");
    assert_int_equal(json_array_size(errs), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(errs, 1), "field")),
                        "rules");
    resp_free(&r);
    /* Tokens live in Redis: every API call is a clear 503, not a 401. */
    expect(port, "GET", "/v1/subjects/enterprise/" ENT1 "/measures",
           "jrp_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", NULL, 503, "redis_unavailable");
    expect(port, "POST", "/v1/events", "jrp_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "{}", 503,
           "redis_unavailable");
    assert_int_equal(call(port, "GET", "/metrics", NULL, NULL, NULL, &r), 200);
    assert_non_null(strstr(r.body, "jrp_gateway_redis_up 0"));
    assert_null(strstr(r.body, "jrp_gateway_redis_errors_total 0\n"));
    resp_free(&r);
    gwfx_stop(fx);
    config_destroy(cfg);
    harness_destroy(h);
}

/* A request waiting for Kafka when the stop comes still gets its answer before the close. */
static void test_graceful_stop_answers_in_flight(void **state)
{
    (void)state;
    arm();
    harness_t *h = make_harness("gw-stop", NULL);
    harness_load_rules(h, NULL);
    tok_t tok;
    token_create(h, &tok, "--department transport");
    char bs[64];
    snprintf(bs, sizeof(bs), "127.0.0.1:%d", dead_port());
    config_t *cfg = config_with(h, "kafka.bootstrap.servers", bs, "gateway.request_timeout_ms",
                                "3000", "kafka.log_level", "0", NULL);
    gwfx_t *fx = gwfx_start(cfg);
    const char *ev = listing_event("s-1", "enterprise", ENT1, "transport", "black.overload");
    char raw[2048];
    snprintf(raw, sizeof(raw),
             "POST /v1/events HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer %s\r\n" JSON_CT
             "Content-Length: %zu\r\n\r\n%s",
             tok.token, strlen(ev), ev);
    /* Once Redis is connected (tokens can be looked up), send it. */
    resp_t r;
    for (int i = 0;; i++) {
        int st = call(fx->port, "GET", "/v1/reports/effects", tok.token, NULL, NULL, &r);
        resp_free(&r);
        if (st == 403)
            break;
        if (i == 100)
            fail_msg("Redis never connected");
        usleep(100000);
    }
    int fd = cl_connect(fx->port);
    cl_send(fd, raw, strlen(raw));
    usleep(300000); /* in flight: waiting for a broker */
    gwfx_stop(fx);  /* returns once the loop is closed */
    assert_int_equal(cl_read(fd, &r, RECV_TIMEOUT_MS), 0);
    close(fd);
    assert_int_equal(r.status, 503);
    assert_string_equal(err_code(&r), "kafka_unavailable");
    assert_non_null(strstr(r.hdrs, "connection: close"));
    resp_free(&r);
    config_destroy(cfg);
    harness_destroy(h);
}

/* ---- the binary: --help, SIGTERM, exit code ------------------------------------------------ */

static void test_binary_stops_on_sigterm(void **state)
{
    (void)state;
    arm();
    harness_t *h = make_harness("gw-bin", NULL);
    harness_load_rules(h, NULL);
    const char *bin_dir = getenv("JRP_BIN");
    char bin[1024], cmd[1200], listen[64];
    snprintf(bin, sizeof(bin), "%s/jrp-gateway", bin_dir && *bin_dir ? bin_dir : "build/san/bin");
    snprintf(cmd, sizeof(cmd), "%s --help >/dev/null", bin);
    assert_int_equal(system(cmd), 0);
    snprintf(cmd, sizeof(cmd), "%s --nonsense 2>/dev/null", bin);
    assert_int_equal(WEXITSTATUS(system(cmd)), 2);
    int port = dead_port(), ops = dead_port();
    snprintf(listen, sizeof(listen), "gateway.listen=127.0.0.1:%d", port);
    char ops_listen[64];
    snprintf(ops_listen, sizeof(ops_listen), "gateway.ops_listen=127.0.0.1:%d", ops);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int devnull = open("/dev/null", O_WRONLY);
        if (devnull >= 0)
            dup2(devnull, 2);
        execl(bin, bin, "-c", h->conf_path, "-o", listen, "-o", ops_listen, (char *)NULL);
        _exit(127);
    }
    /* Ops routes on the ops port only; the API on the API port only. */
    resp_t r;
    int up = 0;
    for (int i = 0; i < 100 && !up; i++) {
        usleep(100000);
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)ops)};
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        up = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
        close(fd);
    }
    assert_true(up);
    wait_ready(ops);
    expect(ops, "GET", "/v1/subjects/enterprise/" ENT1 "/measures", NULL, NULL, 404, "not_found");
    expect(port, "GET", "/metrics", NULL, NULL, 404, "not_found");
    expect(port, "GET", "/v1/subjects/enterprise/" ENT1 "/measures", NULL, NULL, 401,
           "unauthorized");
    assert_int_equal(call(ops, "GET", "/metrics", NULL, NULL, NULL, &r), 200);
    assert_non_null(strstr(r.body, "jrp_gateway_ops_connections_open 1"));
    resp_free(&r);
    kill(pid, SIGTERM);
    int status = 0;
    for (int i = 0; i < 200; i++) {
        if (waitpid(pid, &status, WNOHANG) == pid)
            break;
        if (i == 199) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            fail_msg("jrp-gateway did not stop within 20 s of SIGTERM");
        }
        usleep(100000);
    }
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0); /* includes uv_loop_close() == 0 */
    harness_destroy(h);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_endpoints_and_isolation),
        cmocka_unit_test(test_token_matrix),
        cmocka_unit_test(test_bad_input_suite),
        cmocka_unit_test(test_kafka_unreachable),
        cmocka_unit_test(test_redis_unreachable),
        cmocka_unit_test(test_answer_cache),
        cmocka_unit_test(test_check_record_queued),
        cmocka_unit_test(test_graceful_stop_answers_in_flight),
        cmocka_unit_test(test_binary_stops_on_sigterm),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
