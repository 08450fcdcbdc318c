/*
 * Unit tests for http: the server runs on its own libuv loop in a second thread and the test
 * thread talks to it over plain blocking sockets on 127.0.0.1, reading responses back with
 * http-parser. Covers keep-alive, pipelining order with late answers, every limit and timeout,
 * half-close, disconnects, graceful close, and the query and path decoders. Every socket read
 * has a timeout and every test runs under an alarm, so none can hang.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <http_parser.h>
#include <jansson.h>
#include <uv.h>

#include "http.h"

#define TEST_ALARM_S 30
#define TEST_RECV_TIMEOUT_MS 5000
#define BIG_BODY 60000

/* ---- the server thread -------------------------------------------------------------------- */

enum { CMD_NONE, CMD_STATS, CMD_CLOSE };

typedef struct fixture_s {
    uv_loop_t loop;
    uv_async_t wake;
    http_server_t *srv;
    pthread_t thread;
    bool running;
    int port;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    /* guarded by mu */
    int cmd;
    int stats_seq;
    http_stats_t stats;
    int received;  /* requests the handler saw */
    int responded; /* late answers given */
    int outstanding, max_outstanding;
    int last_respond_rc;
    bool closed;
} fixture_t;

static fixture_t g_fx;

typedef struct defer_s {
    uv_timer_t timer;
    http_request_t *req;
    fixture_t *fx;
} defer_t;

/* Used from both threads: cmocka's assertions belong to the test thread only, hence abort(). */
static void fx_lock(fixture_t *fx)
{
    if (pthread_mutex_lock(&fx->mu) != 0)
        abort();
}

static void fx_unlock(fixture_t *fx)
{
    if (pthread_cond_broadcast(&fx->cv) != 0 || pthread_mutex_unlock(&fx->mu) != 0)
        abort();
}

/* The echo every plain request gets: "METHOD path?query [body]". */
static int respond_echo(http_request_t *req, const char *extra)
{
    size_t body_len;
    const char *body = http_request_body(req, &body_len);
    const char *path = http_request_path(req), *query = http_request_query(req);
    size_t cap = strlen(path) + strlen(query) + body_len + 32;
    char *text = malloc(cap);
    if (!text)
        abort();
    int n = snprintf(text, cap, "%s %s?%s [%.*s]", http_request_method(req), path, query,
                     (int)body_len, body);
    int rc = http_respond(req, 200, "text/plain", text, (size_t)n, extra);
    free(text);
    return rc;
}

static void on_defer_closed(uv_handle_t *h)
{
    free(h->data);
}

static void on_defer(uv_timer_t *t)
{
    defer_t *d = t->data;
    fixture_t *fx = d->fx;
    /* Counted out first: answering may hand the next queued request to the handler at once. */
    fx_lock(fx);
    fx->outstanding--;
    fx_unlock(fx);
    int rc = respond_echo(d->req, NULL);
    fx_lock(fx);
    fx->responded++;
    fx->last_respond_rc = rc;
    fx_unlock(fx);
    uv_close((uv_handle_t *)&d->timer, on_defer_closed);
}

/*
 * Paths: /defer/MS answers after MS ms from a timer; /error and /error-nofield answer with
 * http_respond_error; /headers reports what the request accessors return; /big is 60000 bytes;
 * /nocontent is a 204;
 * /extra adds headers; anything else is echoed at once.
 */
static void handler(http_request_t *req, void *arg)
{
    fixture_t *fx = arg;
    const char *path = http_request_path(req);
    fx_lock(fx);
    fx->received++;
    fx_unlock(fx);

    if (strncmp(path, "/defer/", 7) == 0) {
        defer_t *d = calloc(1, sizeof *d);
        if (!d || uv_timer_init(&fx->loop, &d->timer) != 0)
            abort();
        d->req = req;
        d->fx = fx;
        d->timer.data = d;
        if (uv_timer_start(&d->timer, on_defer, strtoull(path + 7, NULL, 10), 0) != 0)
            abort();
        fx_lock(fx);
        if (++fx->outstanding > fx->max_outstanding)
            fx->max_outstanding = fx->outstanding;
        fx_unlock(fx);
    } else if (strcmp(path, "/error") == 0) {
        http_respond_error(req, 422, "bad_checksum", "the \"id\" is wrong: \xc3\xbc\n",
                           "subject.id");
    } else if (strcmp(path, "/error-nofield") == 0) {
        http_respond_error(req, 404, "not_found", "no such thing", NULL);
    } else if (strcmp(path, "/headers") == 0) {
        char text[512];
        const char *a = http_request_header(req, "X-A");
        const char *missing = http_request_header(req, "X-Missing");
        int n = snprintf(text, sizeof text, "a=%s|missing=%s|peer=%s|start=%s|query=%s",
                         a ? a : "(null)", missing ? missing : "(null)", http_request_peer(req),
                         http_request_start_ms(req) > 0 ? "yes" : "no", http_request_query(req));
        http_respond(req, 200, "text/plain", text, (size_t)n, NULL);
    } else if (strcmp(path, "/big") == 0) {
        static char big[BIG_BODY];
        memset(big, 'b', sizeof big);
        http_respond(req, 200, "application/octet-stream", big, sizeof big, NULL);
    } else if (strcmp(path, "/nocontent") == 0) {
        http_respond(req, 204, NULL, "ignored", 7, NULL);
    } else if (strcmp(path, "/extra") == 0) {
        http_respond(req, 201, "text/plain", "x", 1, "X-One: 1\r\nX-Two: 2");
    } else {
        respond_echo(req, NULL);
    }
}

static void on_server_closed(void *arg)
{
    fixture_t *fx = arg;
    fx_lock(fx);
    fx->closed = true;
    fx_unlock(fx);
}

static void on_wake(uv_async_t *a)
{
    fixture_t *fx = a->data;
    fx_lock(fx);
    int cmd = fx->cmd;
    fx->cmd = CMD_NONE;
    if (cmd == CMD_STATS) {
        http_server_stats(fx->srv, &fx->stats);
        fx->stats_seq++;
    }
    fx_unlock(fx);
    if (cmd == CMD_CLOSE) {
        http_server_close(fx->srv, on_server_closed, fx);
        uv_close((uv_handle_t *)&fx->wake, NULL);
    }
}

static void *server_thread(void *arg)
{
    fixture_t *fx = arg;
    uv_run(&fx->loop, UV_RUN_DEFAULT);
    return NULL;
}

static void fx_start(const http_limits_t *limits)
{
    fixture_t *fx = &g_fx;
    char err[256] = "";
    memset(fx, 0, sizeof *fx);
    alarm(TEST_ALARM_S);
    assert_int_equal(pthread_mutex_init(&fx->mu, NULL), 0);
    assert_int_equal(pthread_cond_init(&fx->cv, NULL), 0);
    assert_int_equal(uv_loop_init(&fx->loop), 0);
    fx->srv = http_server_create(&fx->loop, "127.0.0.1", 0, limits, handler, fx, err, sizeof err);
    if (!fx->srv)
        fail_msg("http_server_create: %s", err);
    fx->port = http_server_port(fx->srv);
    assert_true(fx->port > 0);
    assert_int_equal(uv_async_init(&fx->loop, &fx->wake, on_wake), 0);
    fx->wake.data = fx;
    assert_int_equal(pthread_create(&fx->thread, NULL, server_thread, fx), 0);
    fx->running = true;
}

static void fx_command(fixture_t *fx, int cmd)
{
    fx_lock(fx);
    fx->cmd = cmd;
    fx_unlock(fx);
    assert_int_equal(uv_async_send(&fx->wake), 0);
}

/* Wait (bounded) until *field >= value; returns whether it got there. */
static bool fx_wait(fixture_t *fx, const int *field, int value, int timeout_ms)
{
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += timeout_ms / 1000;
    deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000L;
    }
    assert_int_equal(pthread_mutex_lock(&fx->mu), 0);
    int rc = 0;
    while (*field < value && rc == 0)
        rc = pthread_cond_timedwait(&fx->cv, &fx->mu, &deadline);
    bool ok = *field >= value;
    assert_int_equal(pthread_mutex_unlock(&fx->mu), 0);
    return ok;
}

static http_stats_t fx_stats(void)
{
    fixture_t *fx = &g_fx;
    fx_lock(fx);
    int seq = fx->stats_seq;
    fx_unlock(fx);
    fx_command(fx, CMD_STATS);
    assert_true(fx_wait(fx, &fx->stats_seq, seq + 1, 3000));
    fx_lock(fx);
    http_stats_t st = fx->stats;
    fx_unlock(fx);
    return st;
}

/* Stats once connections_open has dropped to open (close callbacks run a moment after EOF). */
static http_stats_t fx_stats_open(uint64_t open)
{
    http_stats_t st = fx_stats();
    for (int i = 0; i < 200 && st.connections_open != open; i++) {
        struct timespec ts = {0, 20 * 1000000L};
        nanosleep(&ts, NULL);
        st = fx_stats();
    }
    return st;
}

static int fx_get(const int *field)
{
    fx_lock(&g_fx);
    int v = *field;
    fx_unlock(&g_fx);
    return v;
}

/* Close the server, wait for the loop to end and check that every handle was closed. */
static void fx_stop(void)
{
    fixture_t *fx = &g_fx;
    if (!fx->running)
        return;
    fx_command(fx, CMD_CLOSE);
    assert_int_equal(pthread_join(fx->thread, NULL), 0);
    fx->running = false;
    assert_true(fx->closed);
    assert_int_equal(uv_loop_close(&fx->loop), 0);
    pthread_cond_destroy(&fx->cv);
    pthread_mutex_destroy(&fx->mu);
    alarm(0);
}

/* ---- the client --------------------------------------------------------------------------- */

typedef struct client_s {
    int fd;
    char buf[65536];
    size_t len;
} client_t;

#define RESP_MAX_HEADERS 24

typedef struct resp_s {
    int status;
    bool keep_alive;
    bool head; /* the request was HEAD: no body follows */
    char names[RESP_MAX_HEADERS][64];
    char values[RESP_MAX_HEADERS][256];
    int nh;
    char last; /* 'f' or 'v' */
    char body[65536];
    size_t body_len;
} resp_t;

static client_t g_client, g_client2;
static resp_t g_resp;

static void append_str(char *dst, size_t size, const char *at, size_t len)
{
    size_t have = strlen(dst);
    if (len > size - 1 - have)
        len = size - 1 - have;
    memcpy(dst + have, at, len);
    dst[have + len] = '\0';
}

static int r_on_header_field(http_parser *p, const char *at, size_t len)
{
    resp_t *r = p->data;
    if (r->last != 'f') {
        if (r->nh == RESP_MAX_HEADERS)
            return -1;
        r->nh++;
        r->last = 'f';
    }
    append_str(r->names[r->nh - 1], sizeof r->names[0], at, len);
    return 0;
}

static int r_on_header_value(http_parser *p, const char *at, size_t len)
{
    resp_t *r = p->data;
    r->last = 'v';
    append_str(r->values[r->nh - 1], sizeof r->values[0], at, len);
    return 0;
}

static int r_on_headers_complete(http_parser *p)
{
    resp_t *r = p->data;
    return r->head ? 1 : 0;
}

static int r_on_body(http_parser *p, const char *at, size_t len)
{
    resp_t *r = p->data;
    if (len > sizeof r->body - 1 - r->body_len)
        return -1;
    memcpy(r->body + r->body_len, at, len);
    r->body_len += len;
    r->body[r->body_len] = '\0';
    return 0;
}

static int r_on_message_complete(http_parser *p)
{
    http_parser_pause(p, 1);
    return 0;
}

static void cl_connect(client_t *cl, int port)
{
    memset(cl, 0, sizeof *cl);
    cl->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(cl->fd >= 0);
    struct timeval tv = {TEST_RECV_TIMEOUT_MS / 1000, 0};
    assert_int_equal(setsockopt(cl->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv), 0);
    assert_int_equal(setsockopt(cl->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv), 0);
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(cl->fd, (struct sockaddr *)&sa, sizeof sa), 0);
}

static void cl_close(client_t *cl)
{
    if (cl->fd >= 0)
        close(cl->fd);
    cl->fd = -1;
}

static void cl_send_n(client_t *cl, const char *data, size_t len)
{
    while (len) {
        ssize_t n = send(cl->fd, data, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        assert_true(n > 0);
        data += n;
        len -= (size_t)n;
    }
}

static void cl_send(client_t *cl, const char *text)
{
    cl_send_n(cl, text, strlen(text));
}

/* Read one response (head only when head is set). Returns 0, or -1 on EOF, timeout or junk. */
static int cl_read(client_t *cl, resp_t *r, bool head)
{
    static http_parser_settings st;
    st.on_header_field = r_on_header_field;
    st.on_header_value = r_on_header_value;
    st.on_headers_complete = r_on_headers_complete;
    st.on_body = r_on_body;
    st.on_message_complete = r_on_message_complete;
    memset(r, 0, sizeof *r);
    r->head = head;
    http_parser p;
    http_parser_init(&p, HTTP_RESPONSE);
    p.data = r;
    for (;;) {
        if (cl->len) {
            size_t n = http_parser_execute(&p, &st, cl->buf, cl->len);
            memmove(cl->buf, cl->buf + n, cl->len - n);
            cl->len -= n;
            if (HTTP_PARSER_ERRNO(&p) == HPE_PAUSED) {
                r->status = (int)p.status_code;
                r->keep_alive = http_should_keep_alive(&p);
                return 0;
            }
            if (HTTP_PARSER_ERRNO(&p) != HPE_OK)
                return -1;
        }
        ssize_t n = recv(cl->fd, cl->buf + cl->len, sizeof cl->buf - cl->len, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        cl->len += (size_t)n;
    }
}

static const char *resp_header(const resp_t *r, const char *name)
{
    for (int i = r->nh - 1; i >= 0; i--) {
        if (strcasecmp(r->names[i], name) == 0)
            return r->values[i];
    }
    return NULL;
}

/* The server closed its side: EOF (or a reset) with no further bytes. */
static void cl_expect_eof(client_t *cl)
{
    assert_int_equal(cl->len, 0);
    char b[256];
    ssize_t n;
    do
        n = recv(cl->fd, b, sizeof b, 0);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        assert_int_equal(errno, ECONNRESET);
    else
        assert_int_equal(n, 0);
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* A GET on cl and its 200 echo. */
static void get_ok(client_t *cl, const char *target)
{
    char req[512];
    snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: t\r\n\r\n", target);
    cl_send(cl, req);
    assert_int_equal(cl_read(cl, &g_resp, false), 0);
    assert_int_equal(g_resp.status, 200);
}

/* The response is the contract's JSON error with this status and code, and closes. */
static void assert_json_error(const resp_t *r, int status, const char *code)
{
    assert_int_equal(r->status, status);
    assert_string_equal(resp_header(r, "Content-Type"), "application/json");
    assert_string_equal(resp_header(r, "Connection"), "close");
    json_error_t jerr;
    json_t *root = json_loadb(r->body, r->body_len, 0, &jerr);
    if (!root)
        fail_msg("error body is not JSON (%s): %s", jerr.text, r->body);
    json_t *err = json_object_get(root, "error");
    assert_true(json_is_object(err));
    assert_string_equal(json_string_value(json_object_get(err, "code")), code);
    assert_true(json_is_string(json_object_get(err, "message")));
    json_decref(root);
}

/* After a failed assertion the server may still run: stop it without asserting more. */
static int fx_teardown(void **state)
{
    (void)state;
    fixture_t *fx = &g_fx;
    /* Clients first: the server would wait for them to read what it still has to send. */
    for (int i = 0; i < 2; i++) {
        int *fd = i ? &g_client2.fd : &g_client.fd;
        if (*fd >= 0)
            close(*fd);
        *fd = -1;
    }
    if (fx->running) {
        fx_command(fx, CMD_CLOSE);
        pthread_join(fx->thread, NULL);
        fx->running = false;
        uv_loop_close(&fx->loop);
    }
    alarm(0);
    return 0;
}

/* ---- basic exchanges ---------------------------------------------------------------------- */

static void test_get_simple(void **state)
{
    (void)state;
    fx_start(NULL);
    cl_connect(&g_client, g_fx.port);
    cl_send(&g_client, "GET /hello?x=1 HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_int_equal(cl_read(&g_client, &g_resp, false), 0);
    assert_int_equal(g_resp.status, 200);
    assert_string_equal(g_resp.body, "GET /hello?x=1 []");
    assert_string_equal(resp_header(&g_resp, "Content-Type"), "text/plain");
    assert_string_equal(resp_header(&g_resp, "Content-Length"), "17");
    assert_string_equal(resp_header(&g_resp, "Connection"), "keep-alive");
    assert_true(g_resp.keep_alive);
    /* IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT" */
    const char *date = resp_header(&g_resp, "Date");
    assert_non_null(date);
    assert_int_equal(strlen(date), 29);
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    const char *end = strptime(date, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    assert_non_null(end);
    assert_int_equal(*end, '\0');
    time_t t = timegm(&tm);
    assert_true(llabs((long long)(t - time(NULL))) < 5);
    cl_close(&g_client);
    fx_stop();
}

static void test_post_body(void **state)
{
    (void)state;
    fx_start(NULL);
    cl_connect(&g_client, g_fx.port);
    cl_send(&g_client, "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\n\r\nhello world");
    assert_int_equal(cl_read(&g_client, &g_resp, false), 0);
    assert_int_equal(g_resp.status, 200);
    assert_string_equal(g_resp.body, "POST /echo? [hello world]");
    cl_close(&g_client);
    fx_stop();
}

static void test_keepalive_sequential(void **state)
{
    (void)state;
    fx_start(NULL);
    cl_connect(&g_client, g_fx.port);
    for (int i = 0; i < 5; i++) {
        char target[32], want[64];
        snprintf(target, sizeof target, "/seq?i=%d", i);
        get_ok(&g_client, target);
        snprintf(want, sizeof want, "GET /seq?i=%d []", i);
        assert_string_equal(g_resp.body, want);
        assert_true(g_resp.keep_alive);
    }
    http_stats_t st = fx_stats();
    assert_int_equal(st.connections_total, 1);
    assert_int_equal(st.connections_open, 1);
    assert_int_equal(st.requests_total, 5);
    assert_int_equal(st.rejected_total, 0);
    cl_close(&g_client);
    fx_stop();
}

static void test_http10_closes_by_default(void **state)
{
    (void)state;
    fx_start(NULL);
    cl_connect(&g_client, g_fx.port);
    cl_send(&g_client, "GET /old HTTP/1.0\r\n\r\n");
    assert_int_equal(cl_read(&g_client, &g_resp, false), 0);
    assert_int_equal(g_resp.status, 200);
    assert_string_equal(resp_header(&g_resp, "Connection"), "close");
    cl_expect_eof(&g_client);
    cl_close(&g_client);
    fx_stop();
}

static void test_http10_keepalive(void **state)
{
    (void)state;
    fx_start(NULL);
    cl_connect(&g_client, g_fx.port);
    for (int i = 0; i < 2; i++) {
        cl_send(&g_client, "GET /old HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        assert_int_equal(cl_read(&g_client, &g_resp, false), 0);
        assert_int_equal(g_resp.status, 200);
        assert_string_equal(resp_header(&g_resp, "Connection"), "keep-alive");
    }
    cl_close(&g_client);
    fx_stop();
}

static void test_connection_close_honoured(void **state)
{
    (void)state;
    fx_start(NULL);
    cl_connect(&g_client, g_fx.port);
    /* The second request must be ignored: the first asked to close. */
    cl_send(&g_client, "GET /a HTTP/1.1\r\nConnection: close\r\n\r\nGET /b HTTP/1.1\r\n\r\n");
    assert_int_equal(cl_read(&g_client, &g_resp, false), 0);
    assert_string_equal(g_resp.body, "GET /a? []");
    assert_string_equal(resp_header(&g_resp, "Connection"), "close");
    cl_expect_eof(&g_client);
    assert_int_equal(fx_get(&g_fx.received), 1);
    cl_close(&g_client);
    fx_stop();
}

static void test_head_has_no_body(void **state)
{
    (void)state;
    fx_start(NULL);
    cl_connect(&g_client, g_fx.port);
    cl_send(&g_client, "HEAD /x HTTP/1.1\r\n\r\n");
    assert_int_equal(cl_read(&g_client, &g_resp, true), 0);
    assert_int_equal(g_resp.status, 200);
    assert_string_equal(resp_header(&g_resp, "Content-Length"), "11"); /* "HEAD /x? []" */
    assert_int_equal(g_resp.body_len, 0);
    /* Had a body been sent, it would now be read as the next response and fail. */
    get_ok(&g_client, "/after");
    assert_string_equal(g_resp.body, "GET /after? []");
    cl_close(&g_client);
    fx_stop();
}

static void test_no_content_and_extra_headers(void **state)
{
    (void)state;
    fx_start(NULL);
    cl_connect(&g_client, g_fx.port);
    cl_send(&g_client, "GET /nocontent HTTP/1.1\r\n\r\n");
    assert_int_equal(cl_read(&g_client, &g_resp, false), 0);
    assert_int_equal(g_resp.status, 204);
    assert_null(resp_header(&g_resp, "Content-Length"));
    assert_int_equal(g_resp.body_len, 0);
    cl_send(&g_client, "GET /extra HTTP/1.1\r\n\r\n");
    assert_int_equal(cl_read(&g_client, &g_resp, false), 0);
    assert_int_equal(g_resp.status, 201);
    assert_string_equal(resp_header(&g_resp, "X-One"), "1");
    assert_string_equal(resp_header(&g_resp, "X-Two"), "2");
    assert_string_equal(g_resp.body, "x");
    get_ok(&g_client, "/still-fine");
    cl_close(&g_client);
    fx_stop();
}

static void test_request_accessors(void **state)
{
    (void)state;
    fx_start(NULL);
    cl_connect(&g_client, g_fx.port);
    cl_send(&g_client, "GET /headers?q=1&r=%20 HTTP/1.1\r\nX-A: first\r\nx-a: second \t\r\n\r\n");
    assert_int_equal(cl_read(&g_client, &g_resp, false), 0);
    assert_string_equal(g_resp.body,
                        "a=second|missing=(null)|peer=127.0.0.1|start=yes|query=q=1&r=%20");
    /* Absolute form: only the path and query reach the handler. */
    get_ok(&g_client, "http://example.com:8080/abs/path?z=9#frag");
    assert_string_equal(g_resp.body, "GET /abs/path?z=9 []");
    get_ok(&g_client, "http://example.com");
    assert_string_equal(g_resp.body, "GET /? []");
    get_ok(&g_client, "/frag#x");
    assert_string_equal(g_resp.body, "GET /frag? []");
    cl_close(&g_client);
    fx_stop();
}

static void test_upgrade_is_ignored(void **state)
{
    (void)state;
    fx_start(NULL);
    cl_connect(&g_client, g_fx.port);
    cl_send(&g_client, "GET /up HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n"
                       "GET /next HTTP/1.1\r\n\r\n");
    assert_int_equal(cl_read(&g_client, &g_resp, false), 0);
    assert_string_equal(g_resp.body, "GET /up? []");
    assert_int_equal(cl_read(&g_client, &g_resp, false), 0);
    assert_string_equal(g_resp.body, "GET /next? []");
    cl_close(&g_client);
    fx_stop();
}

static void test_connect_is_answered_then_closed(void **state)
{
    (void)state;
    fx_start(NULL);
    cl_connect(&g_client, g_fx.port);
    cl_send(&g_client, "CONNECT example.com:443 HTTP/1.1\r\n\r\ntunnel bytes");
    assert_int_equal(cl_read(&g_client, &g_resp, false), 0);
    assert_string_equal(g_resp.body, "CONNECT example.com:443? []");
    assert_string_equal(resp_header(&g_resp, "Connection"), "close");
    cl_expect_eof(&g_client);
    cl_close(&g_client);
    fx_stop();
}

/* ---- pipelining --------------------------------------------------------------------------- */

static void test_pipelining_in_order(void **state)
{
    (void)state;
    fx_start(NULL);
    cl_connect(&g_client, g_fx.port);
    /* The 2nd is answered at once, the 1st after 150 ms, the 3rd after 50 ms. */
    cl_send(&g_client, "GET /defer/150?n=1 HTTP/1.1\r\n\r\n"
                       "GET /now?n=2 HTTP/1.1\r\n\r\n"
                       "GET /defer/50?n=3 HTTP/1.1\r\n\r\n");
    const char *want[] = {"GET /defer/150?n=1 []", "GET /now?n=2 []", "GET /defer/50?n=3 []"};
    for (int i = 0; i < 3; i++) {
        assert_int_equal(cl_read(&g_client, &g_resp, false), 0);
        assert_int_equal(g_resp.status, 200);
        assert_string_equal(g_resp.body, want[i]);
        assert_true(g_resp.keep_alive);
    }
    assert_int_equal(fx_get(&g_fx.received), 3);
    assert_int_equal(fx_get(&g_fx.max_outstanding), 2); /* both late ones were held together */
    cl_close(&g_client);
    fx_stop();
}

static void test_pipelining_bounded(void **state)
{
    (void)state;
    http_limits_t lim;
    http_limits_default(&lim);
    lim.max_pipelined = 2;
    fx_start(&lim);
    cl_connect(&g_client, g_fx.port);
    char reqs[1024] = "";
    for (int i = 1; i <= 6; i++) {
        char one[64];
        snprintf(one, sizeof one, "GET /defer/20?n=%d HTTP/1.1\r\n\r\n", i);
        strcat(reqs, one);
    }
    cl_send(&g_client, reqs);
    for (int i = 1; i <= 6; i++) {
        char want[64];
        snprintf(want, sizeof want, "GET /defer/20?n=%d []", i);
        assert_int_equal(cl_read(&g_client, &g_resp, false), 0);
        assert_string_equal(g_resp.body, want);
    }
    assert_int_equal(fx_get(&g_fx.received), 6);
    assert_true(fx_get(&g_fx.max_outstanding) <= 2);
    cl_close(&g_client);
    fx_stop();
}

static void test_pipelined_error_keeps_order(void **state)
{
    (void)state;
    fx_start(NULL);
    cl_connect(&g_client, g_fx.port);
    cl_send(&g_client, "GET /defer/80?n=1 HTTP/1.1\r\n\r\nBLAH\r\n\r\n");
    assert_int_equal(cl_read(&g_client, &g_resp, false), 0);
    assert_int_equal(g_resp.status, 200);
    assert_string_equal(g_resp.body, "GET /defer/80?n=1 []");
    assert_string_equal(resp_header(&g_resp, "Connection"), "keep-alive");
    assert_int_equal(cl_read(&g_client, &g_resp, false), 0);
    assert_json_error(&g_resp, 400, "bad_request");
    cl_expect_eof(&g_client);
    cl_close(&g_client);
    fx_stop();
}

/*
 * A client that pipelines many requests and reads nothing: once the unsent answers pass the
 * server's high-water mark it stops parsing and reading, instead of buffering every answer.
 */
static void test_slow_reader_backpressure(void **state)
{
    (void)state;
    fx_start(NULL);
    cl_connect(&g_client, g_fx.port);
    const int count = 1000; /* 60 MB of answers: more than any socket buffers hold */
    const char *one = "GET /big HTTP/1.1\r\n\r\n";
    size_t one_len = strlen(one);
    char *reqs = malloc(one_len * (size_t)count + 1);
    assert_non_null(reqs);
    for (int i = 0; i < count; i++)
        memcpy(reqs + one_len * (size_t)i, one, one_len);
    cl_send_n(&g_client, reqs, one_len * (size_t)count);
    free(reqs);
    sleep_ms(300);
    int held = fx_get(&g_fx.received);
    assert_true(held > 0);
    assert_true(held < count);
    for (int i = 0; i < count; i++) {
        assert_int_equal(cl_read(&g_client, &g_resp, false), 0);
        assert_int_equal(g_resp.status, 200);
        assert_int_equal(g_resp.body_len, BIG_BODY);
    }
    assert_int_equal(fx_get(&g_fx.received), count);
    cl_close(&g_client);
    fx_stop();
}

/* ---- bodies ------------------------------------------------------------------------------- */

static void test_chunked_body(void **state)
{
    (void)state;
    fx_start(NULL);
    cl_connect(&g_client, g_fx.port);
    cl_send(&g_client, "POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                       "7\r\nHello, \r\n5;ext=1\r\nworld\r\n0\r\nX-Trailer: t\r\n\r\n");
    assert_int_equal(cl_read(&g_client, &g_resp, false), 0);
    assert_int_equal(g_resp.status, 200);
    assert_string_equal(g_resp.body, "POST /c? [Hello, world]");
    get_ok(&g_client, "/next"); /* the connection is still in step */
    cl_close(&g_client);
    fx_stop();
}

static void test_chunked_truncated_then_close(void **state)
{
    (void)state;
    fx_start(NULL);
    cl_connect(&g_client, g_fx.port);
    cl_send(&g_client, "POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n10\r\nabc");
    sleep_ms(50);
    cl_close(&g_client);
    sleep_ms(50);
    cl_connect(&g_client, g_fx.port);
    get_ok(&g_client, "/alive");
    cl_close(&g_client);
    http_stats_t st = fx_stats();
    assert_int_equal(st.requests_total, 1);
    assert_int_equal(st.rejected_total, 0);
    fx_stop();
}

static void test_413_by_content_length(void **state)
{
    (void)state;
    http_limits_t lim;
    http_limits_default(&lim);
    lim.max_body_bytes = 100;
    fx_start(&lim);
    cl_connect(&g_client, g_fx.port);
    cl_send(&g_client, "POST /big HTTP/1.1\r\nContent-Length: 101\r\n\r\n");
    assert_int_equal(cl_read(&g_client, &g_resp, false), 0);
    assert_json_error(&g_resp, 413, "body_too_large");
    cl_expect_eof(&g_client);
    assert_int_equal(fx_get(&g_fx.received), 0);
    cl_close(&g_client);
    /* Exactly at the limit is fine. */
    cl_connect(&g_client, g_fx.port);
    char req[256];
    snprintf(req, sizeof req, "POST /ok HTTP/1.1\r\nContent-Length: 100\r\n\r\n%0100d", 7);
    cl_send(&g_client, req);
    assert_int_equal(cl_read(&g_client, &g_resp, false), 0);
    assert_int_equal(g_resp.status, 200);
    cl_close(&g_client);
    http_stats_t st = fx_stats();
    assert_int_equal(st.rejected_total, 1);
    fx_stop();
}

static void test_413_by_chunked_growth(void **state)
{
    (void)state;
    http_limits_t lim;
    http_limits_default(&lim);
    lim.max_body_bytes = 100;
    fx_start(&lim);
    cl_connect(&g_client, g_fx.port);
    char req[512] = "POST /big HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
    for (int i = 0; i < 3; i++)
        strcat(req, "3c\r\n012345678901234567890123456789012345678901234567890123456789\r\n");
    strcat(req, "0\r\n\r\n");
    cl_send(&g_client, req);
    assert_int_equal(cl_read(&g_client, &g_resp, false), 0);
    assert_json_error(&g_resp, 413, "body_too_large");
    cl_expect_eof(&g_client);
    assert_int_equal(fx_get(&g_fx.received), 0);
    cl_close(&g_client);
    fx_stop();
}

/*
 * A client that keeps sending a refused body must still read the 413: the server reads and
 * discards until the client closes (or the linger ends), so no reset destroys the answer.
 */
static void test_413_survives_unread_body(void **state)
{
    (void)state;
    http_limits_t lim;
    http_limits_default(&lim);
    lim.max_body_bytes = 100;
    fx_start(&lim);
    cl_connect(&g_client, g_fx.port);
    cl_send(&g_client, "POST /big HTTP/1.1\r\nContent-Length: 1048576\r\n\r\n");
    sleep_ms(50); /* the 413 is out before the body comes */
    size_t n = 1048576;
    char *body = calloc(1, n);
    assert_non_null(body);
    cl_send_n(&g_client, body, n);
    free(body);
    assert_int_equal(cl_read(&g_client, &g_resp, false), 0);
    assert_json_error(&g_resp, 413, "body_too_large");
    cl_expect_eof(&g_client);
    /* The client never closes: the linger (2 s) ends the connection anyway. */
    uint64_t start = now_ms();
    http_stats_t st = fx_stats_open(0);
    assert_int_equal(st.connections_open, 0);
    assert_true(now_ms() - start < 4000);
    cl_close(&g_client);
    fx_stop();
}

/* ---- limits on the head ------------------------------------------------------------------- */

static void test_431_headers_too_large(void **state)
{
    (void)state;
    fx_start(NULL); /* 16 KiB */
    cl_connect(&g_client, g_fx.port);
    size_t n = 20000;
    char *req = malloc(n + 128);
    assert_non_null(req);
    int off = sprintf(req, "GET / HTTP/1.1\r\nX-Big: ");
    memset(req + off, 'a', n);
    strcpy(req + off + n, "\r\n\r\n");
    cl_send(&g_client, req);
    free(req);
    assert_int_equal(cl_read(&g_client, &g_resp, false), 0);
    assert_json_error(&g_resp, 431, "headers_too_large");
    cl_expect_eof(&g_client);
    cl_close(&g_client);
    fx_stop();
}

static void test_431_many_small_headers(void **state)
{
    (void)state;
    http_limits_t lim;
    http_limits_default(&lim);
    lim.max_header_bytes = 1024;
    fx_start(&lim);
    cl_connect(&g_client, g_fx.port);
    cl_send(&g_client, "GET / HTTP/1.1\r\n");
    for (int i = 0; i < 100; i++)
        cl_send(&g_client, "X-H: 0123456789\r\n"); /* 17 bytes each, in many reads */
    cl_send(&g_client, "\r\n");
    assert_int_equal(cl_read(&g_client, &g_resp, false), 0);
    assert_json_error(&g_resp, 431, "headers_too_large");
    cl_expect_eof(&g_client);
    cl_close(&g_client);
    fx_stop();
}

static void test_414_uri_too_long(void **state)
{
    (void)state;
    fx_start(NULL); /* 8 KiB */
    cl_connect(&g_client, g_fx.port);
    size_t n = 9000;
    char *req = malloc(n + 64);
    assert_non_null(req);
    req[0] = '\0';
    strcat(req, "GET /");
    memset(req + 5, 'u', n);
    strcpy(req + 5 + n, " HTTP/1.1\r\n\r\n");
    cl_send(&g_client, req);
    free(req);
    assert_int_equal(cl_read(&g_client, &g_resp, false), 0);
    assert_json_error(&g_resp, 414, "uri_too_long");
    cl_expect_eof(&g_client);
    cl_close(&g_client);
    fx_stop();
}

static void test_400_garbage(void **state)
{
    (void)state;
    fx_start(NULL);
    cl_connect(&g_client, g_fx.port);
    cl_send(&g_client, "GARBAGE\r\n\r\n");
    assert_int_equal(cl_read(&g_client, &g_resp, false), 0);
    assert_json_error(&g_resp, 400, "bad_request");
    /* The message names http-parser's own description of the error. */
    assert_non_null(strstr(g_resp.body, http_errno_description(HPE_INVALID_METHOD)));
    cl_expect_eof(&g_client);
    cl_close(&g_client);
    http_stats_t st = fx_stats();
    assert_int_equal(st.rejected_total, 1);
    assert_int_equal(st.requests_total, 0);
    fx_stop();
}

static void test_transfer_encodings_refused(void **state)
{
    (void)state;
    fx_start(NULL);
    const char *reqs[] = {
        "POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
        "POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    };
    for (size_t i = 0; i < 2; i++) {
        cl_connect(&g_client, g_fx.port);
        cl_send(&g_client, reqs[i]);
        assert_int_equal(cl_read(&g_client, &g_resp, false), 0);
        assert_json_error(&g_resp, 501, "not_implemented");
        cl_expect_eof(&g_client);
        cl_close(&g_client);
    }
    /* Both a length and chunked: a smuggling attempt, refused by http-parser itself. */
    cl_connect(&g_client, g_fx.port);
    cl_send(&g_client, "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n"
                       "3\r\nabc\r\n0\r\n\r\n");
    assert_int_equal(cl_read(&g_client, &g_resp, false), 0);
    assert_json_error(&g_resp, 400, "bad_request");
    cl_expect_eof(&g_client);
    cl_close(&g_client);
    assert_int_equal(fx_get(&g_fx.received), 0);
    fx_stop();
}

/* ---- timeouts ----------------------------------------------------------------------------- */

static void test_408_slowloris(void **state)
{
    (void)state;
    http_limits_t lim;
    http_limits_default(&lim);
    lim.header_timeout_ms = 300;
    fx_start(&lim);
    cl_connect(&g_client, g_fx.port);
    const char *head = "GET /slow HTTP/1.1\r\nHost: t\r\nX-Padding: "
                       "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    uint64_t start = now_ms();
    bool answered = false;
    for (size_t i = 0; head[i] && !answered; i++) {
        cl_send_n(&g_client, head + i, 1);
        struct pollfd pfd = {g_client.fd, POLLIN, 0};
        answered = poll(&pfd, 1, 50) == 1;
    }
    assert_true(answered); /* long before the whole head went out (about 4 s) */
    uint64_t elapsed = now_ms() - start;
    assert_true(elapsed >= 250);
    assert_true(elapsed < 2000);
    assert_int_equal(cl_read(&g_client, &g_resp, false), 0);
    assert_json_error(&g_resp, 408, "request_timeout");
    cl_expect_eof(&g_client);
    assert_int_equal(fx_get(&g_fx.received), 0);
    cl_close(&g_client);
    fx_stop();
}

static void test_408_body_timeout(void **state)
{
    (void)state;
    http_limits_t lim;
    http_limits_default(&lim);
    lim.body_timeout_ms = 300;
    fx_start(&lim);
    cl_connect(&g_client, g_fx.port);
    uint64_t start = now_ms();
    cl_send(&g_client, "POST /slow HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc");
    assert_int_equal(cl_read(&g_client, &g_resp, false), 0);
    uint64_t elapsed = now_ms() - start;
    assert_true(elapsed >= 250);
    assert_true(elapsed < 2000);
    assert_json_error(&g_resp, 408, "request_timeout");
    cl_expect_eof(&g_client);
    cl_close(&g_client);
    fx_stop();
}

static void test_idle_timeout(void **state)
{
    (void)state;
    http_limits_t lim;
    http_limits_default(&lim);
    lim.idle_timeout_ms = 200;
    fx_start(&lim);
    cl_connect(&g_client, g_fx.port);
    get_ok(&g_client, "/x");
    uint64_t start = now_ms();
    cl_expect_eof(&g_client);
    uint64_t elapsed = now_ms() - start;
    assert_true(elapsed >= 150);
    assert_true(elapsed < 2000);
    cl_close(&g_client);
    /* A connection that never sends a byte is idle too. */
    cl_connect(&g_client, g_fx.port);
    cl_expect_eof(&g_client);
    cl_close(&g_client);
    http_stats_t st = fx_stats_open(0);
    assert_int_equal(st.connections_open, 0);
    assert_int_equal(st.rejected_total, 0);
    fx_stop();
}

/* ---- connections -------------------------------------------------------------------------- */

static void test_503_over_max_connections(void **state)
{
    (void)state;
    http_limits_t lim;
    http_limits_default(&lim);
    lim.max_connections = 1;
    fx_start(&lim);
    cl_connect(&g_client, g_fx.port);
    get_ok(&g_client, "/first"); /* surely accepted */
    cl_connect(&g_client2, g_fx.port);
    cl_send(&g_client2, "GET /second HTTP/1.1\r\n\r\n");
    assert_int_equal(cl_read(&g_client2, &g_resp, false), 0);
    assert_json_error(&g_resp, 503, "too_many_connections");
    cl_expect_eof(&g_client2);
    cl_close(&g_client2);
    get_ok(&g_client, "/first-again");
    http_stats_t st = fx_stats();
    assert_int_equal(st.connections_total, 2);
    assert_int_equal(st.connections_open, 1);
    assert_int_equal(st.rejected_total, 1);
    assert_int_equal(st.requests_total, 2);
    cl_close(&g_client);
    fx_stop();
}

static void test_expect_100_continue(void **state)
{
    (void)state;
    fx_start(NULL);
    cl_connect(&g_client, g_fx.port);
    cl_send(&g_client, "POST /up HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n");
    assert_int_equal(cl_read(&g_client, &g_resp, false), 0);
    assert_int_equal(g_resp.status, 100);
    cl_send(&g_client, "hello");
    assert_int_equal(cl_read(&g_client, &g_resp, false), 0);
    assert_int_equal(g_resp.status, 200);
    assert_string_equal(g_resp.body, "POST /up? [hello]");
    cl_close(&g_client);
    fx_stop();
}

/* "100 Continue" must not overtake the answer to an earlier pipelined request. */
static void test_expect_100_continue_waits_for_earlier(void **state)
{
    (void)state;
    fx_start(NULL);
    cl_connect(&g_client, g_fx.port);
    cl_send(&g_client, "GET /defer/100 HTTP/1.1\r\n\r\n"
                       "POST /up HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n");
    assert_int_equal(cl_read(&g_client, &g_resp, false), 0);
    assert_int_equal(g_resp.status, 200);
    assert_string_equal(g_resp.body, "GET /defer/100? []");
    assert_int_equal(cl_read(&g_client, &g_resp, false), 0);
    assert_int_equal(g_resp.status, 100);
    cl_send(&g_client, "ok");
    assert_int_equal(cl_read(&g_client, &g_resp, false), 0);
    assert_string_equal(g_resp.body, "POST /up? [ok]");
    cl_close(&g_client);
    fx_stop();
}

static void test_expect_100_continue_too_large(void **state)
{
    (void)state;
    http_limits_t lim;
    http_limits_default(&lim);
    lim.max_body_bytes = 10;
    fx_start(&lim);
    cl_connect(&g_client, g_fx.port);
    cl_send(&g_client, "POST /up HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 11\r\n\r\n");
    assert_int_equal(cl_read(&g_client, &g_resp, false), 0);
    assert_json_error(&g_resp, 413, "body_too_large"); /* and no 100 before it */
    cl_expect_eof(&g_client);
    cl_close(&g_client);
    fx_stop();
}

static void test_half_close_still_answered(void **state)
{
    (void)state;
    fx_start(NULL);
    cl_connect(&g_client, g_fx.port);
    cl_send(&g_client, "GET /defer/100?h=1 HTTP/1.1\r\n\r\n");
    assert_int_equal(shutdown(g_client.fd, SHUT_WR), 0);
    assert_int_equal(cl_read(&g_client, &g_resp, false), 0);
    assert_int_equal(g_resp.status, 200);
    assert_string_equal(g_resp.body, "GET /defer/100?h=1 []");
    assert_string_equal(resp_header(&g_resp, "Connection"), "close");
    cl_expect_eof(&g_client);
    cl_close(&g_client);
    assert_true(fx_wait(&g_fx, &g_fx.responded, 1, 3000));
    assert_int_equal(fx_get(&g_fx.last_respond_rc), 0);
    fx_stop();
}

static void test_disconnect_before_deferred_answer(void **state)
{
    (void)state;
    fx_start(NULL);
    cl_connect(&g_client, g_fx.port);
    cl_send(&g_client, "GET /defer/200 HTTP/1.1\r\n\r\n");
    assert_true(fx_wait(&g_fx, &g_fx.received, 1, 3000));
    /* An abortive close (RST), so that the server learns of it before answering. */
    struct linger lg = {1, 0};
    assert_int_equal(setsockopt(g_client.fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg), 0);
    cl_close(&g_client);
    assert_true(fx_wait(&g_fx, &g_fx.responded, 1, 3000));
    assert_int_equal(fx_get(&g_fx.last_respond_rc), -1);
    http_stats_t st = fx_stats_open(0);
    assert_int_equal(st.connections_open, 0);
    fx_stop(); /* LeakSanitizer checks the request was freed */
}

static void test_quiet_close_before_deferred_answer(void **state)
{
    (void)state;
    fx_start(NULL);
    cl_connect(&g_client, g_fx.port);
    cl_send(&g_client, "GET /defer/100 HTTP/1.1\r\n\r\n");
    assert_true(fx_wait(&g_fx, &g_fx.received, 1, 3000));
    cl_close(&g_client); /* FIN: indistinguishable from a half-close, so it is answered */
    assert_true(fx_wait(&g_fx, &g_fx.responded, 1, 3000));
    int rc = fx_get(&g_fx.last_respond_rc);
    assert_true(rc == 0 || rc == -1);
    fx_stop();
}

/* ---- graceful close ----------------------------------------------------------------------- */

static void test_graceful_close_with_request_in_flight(void **state)
{
    (void)state;
    fx_start(NULL);
    int port = g_fx.port;
    cl_connect(&g_client, port);
    cl_send(&g_client, "GET /defer/300?g=1 HTTP/1.1\r\n\r\n");
    assert_true(fx_wait(&g_fx, &g_fx.received, 1, 3000));
    fx_command(&g_fx, CMD_CLOSE);
    assert_int_equal(cl_read(&g_client, &g_resp, false), 0);
    assert_int_equal(g_resp.status, 200);
    assert_string_equal(g_resp.body, "GET /defer/300?g=1 []");
    assert_string_equal(resp_header(&g_resp, "Connection"), "close");
    cl_expect_eof(&g_client);
    cl_close(&g_client);
    /* No longer listening. */
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), -1);
    assert_int_equal(errno, ECONNREFUSED);
    close(fd);
    assert_int_equal(pthread_join(g_fx.thread, NULL), 0);
    g_fx.running = false;
    assert_true(g_fx.closed);
    assert_int_equal(uv_loop_close(&g_fx.loop), 0);
    alarm(0);
}

static void test_graceful_close_idle_connection(void **state)
{
    (void)state;
    fx_start(NULL);
    cl_connect(&g_client, g_fx.port);
    get_ok(&g_client, "/x");
    cl_connect(&g_client2, g_fx.port);
    cl_send(&g_client2, "GET /partial HTTP/1.1\r\nHo"); /* never handed to the handler */
    sleep_ms(50);
    fx_stop();
    cl_expect_eof(&g_client);
    cl_close(&g_client);
    char b[64];
    assert_true(recv(g_client2.fd, b, sizeof b, 0) <= 0);
    cl_close(&g_client2);
    assert_int_equal(g_fx.received, 1);
}

static void test_create_errors(void **state)
{
    (void)state;
    uv_loop_t loop;
    char err[256] = "";
    assert_int_equal(uv_loop_init(&loop), 0);
    http_server_t *a =
        http_server_create(&loop, "127.0.0.1", 0, NULL, handler, NULL, err, sizeof err);
    assert_non_null(a);
    http_server_t *b = http_server_create(&loop, "127.0.0.1", http_server_port(a), NULL, handler,
                                          NULL, err, sizeof err);
    assert_null(b);
    assert_non_null(strstr(err, "cannot listen"));
    err[0] = '\0';
    assert_null(
        http_server_create(&loop, "127.0.0.1", 70000, NULL, handler, NULL, err, sizeof err));
    assert_true(err[0] != '\0');
    assert_null(http_server_create(&loop, "127.0.0.1", 0, NULL, NULL, NULL, err, sizeof err));
    http_server_close(a, NULL, NULL);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(uv_loop_close(&loop), 0);
}

/* ---- responses and helpers without a server ----------------------------------------------- */

static void test_respond_error_json(void **state)
{
    (void)state;
    fx_start(NULL);
    cl_connect(&g_client, g_fx.port);
    cl_send(&g_client, "GET /error HTTP/1.1\r\n\r\n");
    assert_int_equal(cl_read(&g_client, &g_resp, false), 0);
    assert_int_equal(g_resp.status, 422);
    assert_string_equal(resp_header(&g_resp, "Content-Type"), "application/json");
    json_error_t jerr;
    json_t *root = json_loadb(g_resp.body, g_resp.body_len, 0, &jerr);
    assert_non_null(root);
    json_t *err = json_object_get(root, "error");
    assert_string_equal(json_string_value(json_object_get(err, "code")), "bad_checksum");
    assert_string_equal(json_string_value(json_object_get(err, "message")),
                        "the \"id\" is wrong: \xc3\xbc\n");
    assert_string_equal(json_string_value(json_object_get(err, "field")), "subject.id");
    json_decref(root);

    cl_send(&g_client, "GET /error-nofield HTTP/1.1\r\n\r\n");
    assert_int_equal(cl_read(&g_client, &g_resp, false), 0);
    assert_int_equal(g_resp.status, 404);
    assert_string_equal(resp_header(&g_resp, "Connection"), "keep-alive");
    root = json_loadb(g_resp.body, g_resp.body_len, 0, &jerr);
    assert_non_null(root);
    err = json_object_get(root, "error");
    assert_string_equal(json_string_value(json_object_get(err, "code")), "not_found");
    assert_null(json_object_get(err, "field"));
    json_decref(root);
    cl_close(&g_client);
    fx_stop();
}

static void test_status_text(void **state)
{
    (void)state;
    assert_string_equal(http_status_text(200), "OK");
    assert_string_equal(http_status_text(404), "Not Found");
    assert_string_equal(http_status_text(408), "Request Timeout");
    assert_string_equal(http_status_text(413), "Payload Too Large");
    assert_string_equal(http_status_text(414), "URI Too Long");
    assert_string_equal(http_status_text(431), "Request Header Fields Too Large");
    assert_string_equal(http_status_text(503), "Service Unavailable");
    assert_string_equal(http_status_text(799), "Unknown");
}

static void test_limits_default(void **state)
{
    (void)state;
    http_limits_t lim;
    http_limits_default(&lim);
    assert_int_equal(lim.max_body_bytes, 1024 * 1024);
    assert_int_equal(lim.max_header_bytes, 16 * 1024);
    assert_int_equal(lim.max_url_bytes, 8 * 1024);
    assert_int_equal(lim.max_connections, 1024);
    assert_int_equal(lim.header_timeout_ms, 10000);
    assert_int_equal(lim.body_timeout_ms, 30000);
    assert_int_equal(lim.idle_timeout_ms, 60000);
    assert_int_equal(lim.max_pipelined, 64);
}

static void test_query_param(void **state)
{
    (void)state;
    char out[64];
    assert_int_equal(http_query_param("a=1&b=2", "b", out, sizeof out), 1);
    assert_string_equal(out, "2");
    assert_int_equal(http_query_param("a=hello+world%21", "a", out, sizeof out), 12);
    assert_string_equal(out, "hello world!");
    assert_int_equal(http_query_param("a=%C3%A9", "a", out, sizeof out), 2);
    assert_string_equal(out, "\xc3\xa9");
    assert_int_equal(http_query_param("a=1&b=2", "c", out, sizeof out), -1);
    assert_int_equal(http_query_param("", "a", out, sizeof out), -1);
    assert_int_equal(http_query_param("ab=1", "a", out, sizeof out), -1);
    assert_int_equal(http_query_param("a=1", "ab", out, sizeof out), -1);
    assert_int_equal(http_query_param("flag&x=1", "flag", out, sizeof out), 0);
    assert_string_equal(out, "");
    assert_int_equal(http_query_param("a=", "a", out, sizeof out), 0);
    assert_int_equal(http_query_param("a=1&a=2", "a", out, sizeof out), 1);
    assert_string_equal(out, "1"); /* the first one */
    assert_int_equal(http_query_param("x=1&&y=2", "y", out, sizeof out), 1);
    assert_int_equal(http_query_param("a%5Fb=1", "a_b", out, sizeof out), 1);
    assert_int_equal(http_query_param("a+b=1", "a b", out, sizeof out), 1);
    assert_int_equal(http_query_param("from=2024-01-01&to=x%3D%26y", "to", out, sizeof out), 4);
    assert_string_equal(out, "x=&y");
    /* Badly encoded, or a NUL that would cut the C string short. */
    assert_int_equal(http_query_param("a=%zz", "a", out, sizeof out), -2);
    assert_int_equal(http_query_param("a=%4", "a", out, sizeof out), -2);
    assert_int_equal(http_query_param("a=%", "a", out, sizeof out), -2);
    assert_int_equal(http_query_param("a=x%00y", "a", out, sizeof out), -2);
    /* Too small: "abcd" needs 5 bytes. */
    assert_int_equal(http_query_param("a=abcd", "a", out, 4), -2);
    assert_int_equal(http_query_param("a=abcd", "a", out, 5), 4);
    assert_string_equal(out, "abcd");
    assert_int_equal(http_query_param("a=", "a", out, 0), -2);
    assert_int_equal(http_query_param(NULL, "a", out, sizeof out), -1);
}

/* A copy of text that ends exactly where a PROT_NONE page begins (no NUL after it). */
typedef struct guarded_s {
    void *map;
    size_t map_len;
    const char *text;
} guarded_t;

static void guarded_make(guarded_t *g, const char *text, size_t len)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    g->map_len = 2 * page;
    g->map = mmap(NULL, g->map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(g->map != MAP_FAILED);
    char *guard = (char *)g->map + page;
    assert_int_equal(mprotect(guard, page, PROT_NONE), 0);
    memcpy(guard - len, text, len);
    g->text = guard - len;
}

static int seg_decode(const char *seg, char *out, size_t out_size)
{
    guarded_t g;
    size_t len = strlen(seg);
    guarded_make(&g, seg, len);
    int n = http_path_segment_decode(g.text, len, out, out_size);
    assert_int_equal(munmap(g.map, g.map_len), 0);
    return n;
}

static void test_path_segment_decode(void **state)
{
    (void)state;
    char out[64];
    assert_int_equal(seg_decode("abc", out, sizeof out), 3);
    assert_string_equal(out, "abc");
    assert_int_equal(seg_decode("91350100M000100Y43", out, sizeof out), 18);
    assert_int_equal(seg_decode("a%20b", out, sizeof out), 3);
    assert_string_equal(out, "a b");
    assert_int_equal(seg_decode("a+b", out, sizeof out), 3);
    assert_string_equal(out, "a+b"); /* '+' is only a space in queries */
    assert_int_equal(seg_decode("%E4%BC%81", out, sizeof out), 3);
    assert_int_equal(seg_decode("...", out, sizeof out), 3);
    assert_int_equal(seg_decode(".a", out, sizeof out), 2);
    assert_int_equal(seg_decode("", out, sizeof out), 0);
    /* Traversal, in every spelling. */
    assert_int_equal(seg_decode(".", out, sizeof out), -1);
    assert_int_equal(seg_decode("..", out, sizeof out), -1);
    assert_int_equal(seg_decode("%2e", out, sizeof out), -1);
    assert_int_equal(seg_decode("%2e%2e", out, sizeof out), -1);
    assert_int_equal(seg_decode("%2E%2E", out, sizeof out), -1);
    assert_int_equal(seg_decode(".%2e", out, sizeof out), -1);
    assert_int_equal(seg_decode("a/b", out, sizeof out), -1);
    assert_int_equal(seg_decode("../etc", out, sizeof out), -1);
    assert_int_equal(seg_decode("a%2Fb", out, sizeof out), -1);
    assert_int_equal(seg_decode("a%2fb", out, sizeof out), -1);
    assert_int_equal(seg_decode("..%2F..%2Fetc", out, sizeof out), -1);
    assert_int_equal(seg_decode("%00", out, sizeof out), -1);
    assert_int_equal(seg_decode("a%00.json", out, sizeof out), -1);
    /* Bad escapes, including one cut short by the end of the input (read past it crashes). */
    assert_int_equal(seg_decode("%", out, sizeof out), -1);
    assert_int_equal(seg_decode("a%2", out, sizeof out), -1);
    assert_int_equal(seg_decode("%zz", out, sizeof out), -1);
    assert_int_equal(seg_decode("%g1", out, sizeof out), -1);
    /* Length only: the NUL in the middle is past len. */
    assert_int_equal(http_path_segment_decode("ab/cd", 2, out, sizeof out), 2);
    assert_string_equal(out, "ab");
    /* Too small. */
    assert_int_equal(seg_decode("abcd", out, 4), -1);
    assert_int_equal(seg_decode("abcd", out, 5), 4);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    g_client.fd = g_client2.fd = -1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_get_simple, fx_teardown),
        cmocka_unit_test_teardown(test_post_body, fx_teardown),
        cmocka_unit_test_teardown(test_keepalive_sequential, fx_teardown),
        cmocka_unit_test_teardown(test_http10_closes_by_default, fx_teardown),
        cmocka_unit_test_teardown(test_http10_keepalive, fx_teardown),
        cmocka_unit_test_teardown(test_connection_close_honoured, fx_teardown),
        cmocka_unit_test_teardown(test_head_has_no_body, fx_teardown),
        cmocka_unit_test_teardown(test_no_content_and_extra_headers, fx_teardown),
        cmocka_unit_test_teardown(test_request_accessors, fx_teardown),
        cmocka_unit_test_teardown(test_upgrade_is_ignored, fx_teardown),
        cmocka_unit_test_teardown(test_connect_is_answered_then_closed, fx_teardown),
        cmocka_unit_test_teardown(test_pipelining_in_order, fx_teardown),
        cmocka_unit_test_teardown(test_pipelining_bounded, fx_teardown),
        cmocka_unit_test_teardown(test_pipelined_error_keeps_order, fx_teardown),
        cmocka_unit_test_teardown(test_slow_reader_backpressure, fx_teardown),
        cmocka_unit_test_teardown(test_chunked_body, fx_teardown),
        cmocka_unit_test_teardown(test_chunked_truncated_then_close, fx_teardown),
        cmocka_unit_test_teardown(test_413_by_content_length, fx_teardown),
        cmocka_unit_test_teardown(test_413_by_chunked_growth, fx_teardown),
        cmocka_unit_test_teardown(test_413_survives_unread_body, fx_teardown),
        cmocka_unit_test_teardown(test_431_headers_too_large, fx_teardown),
        cmocka_unit_test_teardown(test_431_many_small_headers, fx_teardown),
        cmocka_unit_test_teardown(test_414_uri_too_long, fx_teardown),
        cmocka_unit_test_teardown(test_400_garbage, fx_teardown),
        cmocka_unit_test_teardown(test_transfer_encodings_refused, fx_teardown),
        cmocka_unit_test_teardown(test_408_slowloris, fx_teardown),
        cmocka_unit_test_teardown(test_408_body_timeout, fx_teardown),
        cmocka_unit_test_teardown(test_idle_timeout, fx_teardown),
        cmocka_unit_test_teardown(test_503_over_max_connections, fx_teardown),
        cmocka_unit_test_teardown(test_expect_100_continue, fx_teardown),
        cmocka_unit_test_teardown(test_expect_100_continue_waits_for_earlier, fx_teardown),
        cmocka_unit_test_teardown(test_expect_100_continue_too_large, fx_teardown),
        cmocka_unit_test_teardown(test_half_close_still_answered, fx_teardown),
        cmocka_unit_test_teardown(test_disconnect_before_deferred_answer, fx_teardown),
        cmocka_unit_test_teardown(test_quiet_close_before_deferred_answer, fx_teardown),
        cmocka_unit_test_teardown(test_graceful_close_with_request_in_flight, fx_teardown),
        cmocka_unit_test_teardown(test_graceful_close_idle_connection, fx_teardown),
        cmocka_unit_test(test_create_errors),
        cmocka_unit_test_teardown(test_respond_error_json, fx_teardown),
        cmocka_unit_test(test_status_text),
        cmocka_unit_test(test_limits_default),
        cmocka_unit_test(test_query_param),
        cmocka_unit_test(test_path_segment_decode),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
