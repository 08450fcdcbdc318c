/*
 * libFuzzer target for the HTTP server's per-connection path: the input is what a client sends
 * on one connection (a socketpair end handed to the server with http__server_adopt), followed
 * by a half-close. The server's output is read back with http-parser and must be well-formed
 * HTTP; every request handed to the handler must get exactly one answer, in request order, plus
 * at most one answer from the server itself (an error) at the end. A broken rule aborts, so
 * libFuzzer keeps the input. Requests whose path holds an 'L' are answered late, from a timer,
 * to exercise the ordered queue and the pause when it is full.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <http_parser.h>
#include <uv.h>

#include "http.h"
#include "http_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uv_loop_t loop;
static http_server_t *srv;
static unsigned long next_seq; /* numbers requests in dispatch order, per connection */
static int timers_open;

static void die(const char *what)
{
    fprintf(stderr, "fuzz_http: %s\n", what);
    abort();
}

typedef struct late_s {
    uv_timer_t timer;
    http_request_t *req;
    unsigned long seq;
} late_t;

/* Use every accessor and decoder on whatever arrived, then answer with the sequence number. */
static void answer(http_request_t *req, unsigned long seq)
{
    char out[256], text[512];
    size_t body_len;
    const char *body = http_request_body(req, &body_len);
    const char *path = http_request_path(req), *query = http_request_query(req);
    int q = http_query_param(query, "a", out, sizeof out);
    const char *slash = strrchr(path, '/');
    int s = slash ? http_path_segment_decode(slash + 1, strlen(slash + 1), out, sizeof out) : -1;
    const char *host = http_request_header(req, "host");
    int n = snprintf(text, sizeof text, "%s %zu %zu %d %d %s %s %llu", http_request_method(req),
                     strlen(path), body_len, q, s, host ? host : "-", http_request_peer(req),
                     (unsigned long long)http_request_start_ms(req));
    bool head = strcmp(http_request_method(req), "HEAD") == 0;
    if (body_len && memchr(body, 'E', body_len) && !head) {
        /* No extra headers here: the sequence number travels in "field". */
        char field[32];
        snprintf(field, sizeof field, "seq-%lu", seq);
        http_respond_error(req, 422, "fuzz", text, field);
    } else {
        char extra[64];
        snprintf(extra, sizeof extra, "X-Seq: %lu\r\n%s", seq, head ? "X-Head: 1\r\n" : "");
        http_respond(req, 200, "text/plain", text, (size_t)n, extra);
    }
}

static void on_late_closed(uv_handle_t *h)
{
    free(h->data);
    timers_open--;
}

static void on_late(uv_timer_t *t)
{
    late_t *l = t->data;
    answer(l->req, l->seq);
    uv_close((uv_handle_t *)&l->timer, on_late_closed);
}

static void handler(http_request_t *req, void *arg)
{
    (void)arg;
    unsigned long seq = next_seq++;
    if (!strchr(http_request_path(req), 'L')) {
        answer(req, seq);
        return;
    }
    late_t *l = calloc(1, sizeof *l);
    if (!l || uv_timer_init(&loop, &l->timer) != 0)
        die("cannot defer");
    l->timer.data = l;
    l->req = req;
    l->seq = seq;
    timers_open++;
    if (uv_timer_start(&l->timer, on_late, 0, 0) != 0)
        die("cannot defer");
}

static void setup(void)
{
    char err[256];
    http_limits_t lim;
    http_limits_default(&lim);
    /* Small limits, so that short inputs reach every refusal. */
    lim.max_body_bytes = 128;
    lim.max_header_bytes = 256;
    lim.max_url_bytes = 64;
    lim.max_pipelined = 3;
    lim.header_timeout_ms = lim.body_timeout_ms = lim.idle_timeout_ms = 5000;
    signal(SIGPIPE, SIG_IGN); /* the server may write to a client that is gone */
    if (uv_loop_init(&loop) != 0)
        die("uv_loop_init");
    srv = http_server_create(&loop, "127.0.0.1", 0, &lim, handler, NULL, err, sizeof err);
    if (!srv)
        die(err);
}

/* ---- checking the output ------------------------------------------------------------------ */

typedef struct check_s {
    char field[32];
    char value[32];
    char body[4096];
    size_t body_len;
    bool seq_seen, head;
    unsigned long seq;
    unsigned long expect_seq;
    unsigned finals, interim, errors_from_server;
} check_t;

static int c_field(http_parser *p, const char *at, size_t len)
{
    check_t *k = p->data;
    if (len >= sizeof k->field)
        len = sizeof k->field - 1;
    memcpy(k->field, at, len);
    k->field[len] = '\0';
    return 0;
}

static int c_value(http_parser *p, const char *at, size_t len)
{
    check_t *k = p->data;
    if (strcasecmp(k->field, "X-Head") == 0) {
        k->head = true;
    } else if (strcasecmp(k->field, "X-Seq") == 0) {
        if (len >= sizeof k->value)
            die("X-Seq too long");
        memcpy(k->value, at, len);
        k->value[len] = '\0';
        k->seq = strtoul(k->value, NULL, 10);
        k->seq_seen = true;
    }
    return 0;
}

/* The answer to a HEAD has a Content-Length but no body; the handler marks those. */
static int c_headers_complete(http_parser *p)
{
    check_t *k = p->data;
    return k->head ? 1 : 0;
}

static int c_body(http_parser *p, const char *at, size_t len)
{
    check_t *k = p->data;
    if (len > sizeof k->body - 1 - k->body_len)
        len = sizeof k->body - 1 - k->body_len;
    memcpy(k->body + k->body_len, at, len);
    k->body_len += len;
    k->body[k->body_len] = '\0';
    return 0;
}

static int c_message_complete(http_parser *p)
{
    check_t *k = p->data;
    if (p->status_code == 100) {
        k->interim++;
    } else {
        k->finals++;
        const char *seq = p->status_code == 422 ? strstr(k->body, "\"field\":\"seq-") : NULL;
        if (seq) {
            k->seq = strtoul(seq + strlen("\"field\":\"seq-"), NULL, 10);
            k->seq_seen = true;
        }
        if (k->seq_seen) {
            if (k->seq != k->expect_seq)
                die("responses out of request order");
            k->expect_seq++;
        } else {
            if (p->status_code < 400)
                die("a success answer without a sequence number");
            k->errors_from_server++;
        }
    }
    k->seq_seen = k->head = false;
    k->field[0] = '\0';
    k->body_len = 0;
    k->body[0] = '\0';
    return 0;
}

static void check_output(const char *out, size_t len, unsigned long first_seq,
                         unsigned long dispatched, uint64_t rejected)
{
    http_parser_settings st;
    http_parser_settings_init(&st);
    st.on_header_field = c_field;
    st.on_header_value = c_value;
    st.on_headers_complete = c_headers_complete;
    st.on_body = c_body;
    st.on_message_complete = c_message_complete;
    check_t k;
    memset(&k, 0, sizeof k);
    k.expect_seq = first_seq;
    http_parser p;
    http_parser_init(&p, HTTP_RESPONSE);
    p.data = &k;
    size_t n = http_parser_execute(&p, &st, out, len);
    if (n != len || HTTP_PARSER_ERRNO(&p) != HPE_OK) {
        fprintf(stderr, "%.*s\n", (int)len, out);
        die("the server wrote malformed HTTP");
    }
    if (k.expect_seq - first_seq != dispatched)
        die("a request handed to the handler got no answer");
    if (k.errors_from_server != rejected || rejected > 1)
        die("server-made answers do not match rejected_total");
}

/* ---- one input ---------------------------------------------------------------------------- */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!srv)
        setup();
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
        die("socketpair");
    if (fcntl(sv[1], F_SETFL, O_NONBLOCK) != 0)
        die("fcntl");
    http_stats_t before, after;
    http_server_stats(srv, &before);
    unsigned long first_seq = next_seq;
    if (http__server_adopt(srv, sv[0]) != 0)
        die("adopt");

    size_t off = 0, out_len = 0, out_cap = 65536;
    char *out = malloc(out_cap);
    if (!out)
        die("out of memory");
    bool shut = false, eof = false;
    /* The client half-closes, so the server never needs its timeouts (5 s) to finish. */
    uint64_t deadline = uv_hrtime() + 4000000000ULL;
    for (;;) {
        if (uv_hrtime() > deadline)
            die("the server never finished the connection");
        if (off < size) {
            ssize_t w = send(sv[1], data + off, size - off, MSG_NOSIGNAL);
            if (w > 0)
                off += (size_t)w;
            else if (w < 0 && errno != EAGAIN && errno != EINTR)
                off = size; /* the server closed early: the rest is moot */
        }
        if (off == size && !shut) {
            if (shutdown(sv[1], SHUT_WR) != 0 && errno != ENOTCONN)
                die("shutdown");
            shut = true;
        }
        uv_run(&loop, UV_RUN_NOWAIT);
        for (;;) {
            if (out_len == out_cap) {
                out_cap *= 2;
                char *grown = realloc(out, out_cap);
                if (!grown)
                    die("out of memory");
                out = grown;
            }
            ssize_t r = read(sv[1], out + out_len, out_cap - out_len);
            if (r > 0) {
                out_len += (size_t)r;
                continue;
            }
            if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR))
                eof = true;
            break;
        }
        http_server_stats(srv, &after);
        if (eof && after.connections_open == before.connections_open && timers_open == 0)
            break;
        if (!eof) {
            struct pollfd pfd = {uv_backend_fd(&loop), POLLIN, 0};
            if (poll(&pfd, 1, 1) < 0 && errno != EINTR)
                die("poll");
        }
    }
    close(sv[1]);
    if (after.connections_open != before.connections_open)
        die("connection still open");

    check_output(out, out_len, first_seq,
                 (unsigned long)(after.requests_total - before.requests_total),
                 after.rejected_total - before.rejected_total);
    free(out);
    return 0;
}
