/*
 * http: the HTTP/1.1 server behind http.h. Each connection runs one http_parser (paused at the
 * end of every head and every message, so that byte counts are exact) and keeps a queue of its
 * requests; responses leave strictly in queue order, whatever order handlers answer in. Every
 * limit and timeout is answered here with the contract's JSON error, after which the connection
 * is shut down and lingers briefly so the client can read the answer before the socket closes.
 */
#include "grow.h"
#include "http.h"
#include "http_internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <http_parser.h>
#include <jansson.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* Bytes read at a time; one buffer per server is enough since a read is parsed before the next. */
#define HTTP__READ_SIZE 65536
/*
 * After the last response a connection keeps reading, and discarding, this long (or until the
 * client closes): closing with unread request bytes would make the kernel send a reset, which
 * can destroy the answer (a 413 or 431, say) before the client has read it.
 */
#define HTTP__LINGER_MS 2000
/*
 * Above this many bytes of responses not yet taken by the kernel, the connection stops parsing
 * and reading: a client that pipelines requests but never reads the answers must not make the
 * server buffer them without end. Bounding unanswered requests (max_pipelined) is not enough.
 */
#define HTTP__WRITE_HIGH_WATER (1024 * 1024)
/* Bound on sending the last response when idle_timeout_ms is 0 (disabled). */
#define HTTP__FINISH_MS 60000
/* http_parser_parse_url keeps offsets in uint16_t, so no longer URL can be split safely. */
#define HTTP__URL_HARD_MAX 65535
#define HTTP__BACKLOG 511

typedef struct http_conn_s http_conn_t;

/* A growable byte buffer, always NUL-terminated after the first append. */
typedef struct http_buf_s {
    char *data;
    size_t len, cap;
} http_buf_t;

typedef enum {
    HTTP__REQ_PARSING,  /* its bytes are still arriving; owned by the connection */
    HTTP__REQ_HANDLER,  /* dispatched; the handler owns it until http_respond */
    HTTP__REQ_ANSWERED, /* answered; waits in the queue for the responses before it */
} http_req_state_t;

typedef struct http_hdr_s {
    size_t name, value; /* offsets into http_request_t.hdrs */
} http_hdr_t;

struct http_request_s {
    http_conn_t *conn;    /* NULL while parsing and once the connection is gone */
    http_request_t *next; /* the connection's queue, in request order */
    http_req_state_t state;
    bool keep_alive;
    bool is_head;
    bool want_continue, continue_sent;
    char last_cb; /* 'f' or 'v': which header callback ran last, to join split pieces */
    const char *method;
    http_buf_t url;
    char *path; /* path "\0" query, one allocation */
    const char *query;
    http_buf_t hdrs; /* "name\0value\0" pairs */
    http_hdr_t *hdr;
    size_t nhdr, hdr_cap;
    http_buf_t body;
    uint64_t start_ms;
    char peer[INET6_ADDRSTRLEN];
    /* The answer: head without its Connection line, then the body, in one block. */
    char *resp;
    size_t resp_head_len, resp_body_len;
};

typedef enum { HTTP__PH_IDLE, HTTP__PH_HEAD, HTTP__PH_BODY } http_phase_t;
typedef enum { HTTP__EV_NONE, HTTP__EV_HEADERS, HTTP__EV_MESSAGE } http_event_t;

struct http_conn_s {
    uv_tcp_t tcp;
    uv_timer_t timer; /* header, body, idle or linger timeout, whichever applies now */
    uv_shutdown_t shutdown_req;
    http_server_t *srv;
    http_conn_t *prev, *next; /* srv->conns */
    http_parser parser;
    http_event_t event; /* set by the callbacks that pause the parser */
    http_phase_t phase;
    http_request_t *cur; /* the request being parsed */
    size_t head_bytes;
    uint64_t phase_start_ms, idle_since_ms;
    http_request_t *q_head, *q_tail;
    size_t q_len;
    http_buf_t pending; /* bytes read but held back: queue full or writes backed up */
    size_t writes_pending;
    int reject_status; /* set by a parser callback that fails */
    const char *reject_code;
    char reject_msg[96];
    int handles_open;
    bool tcp_ready; /* tcp initialised (must be closed) */
    bool served;    /* counted in connections_open */
    bool reading;   /* uv_read_start in effect */
    bool parsing;   /* inside conn_parse: do not re-enter it */
    bool no_more;   /* no further request will be parsed */
    bool read_eof;  /* the client has half-closed */
    bool lingering; /* the last response is out (or going out); reads are discarded */
    bool shut_done; /* the shutdown (FIN) has completed */
    bool closing;   /* uv_close called */
    char peer[INET6_ADDRSTRLEN];
};

struct http_server_s {
    uv_loop_t *loop;
    uv_tcp_t tcp;
    http_limits_t limits;
    http_handler_fn *handler;
    void *arg;
    http_parser_settings settings;
    http_conn_t *conns;
    size_t nconns; /* every connection whose handles are not closed yet, 503s included */
    http_stats_t stats;
    int port;
    bool closing, listener_closed;
    void (*on_closed)(void *arg);
    void *on_closed_arg;
    time_t date_sec;
    char date[64];
    char rbuf[HTTP__READ_SIZE];
};

typedef struct http_write_s {
    uv_write_t wr;
    http_conn_t *conn;
    char *data; /* freed when the write completes; NULL for static text */
} http_write_t;

static void conn_parse(http_conn_t *c, const char *data, size_t len);
static void conn_flush(http_conn_t *c);
static void conn_close(http_conn_t *c);
static void conn_reject(http_conn_t *c, int status, const char *code, const char *message);
static void conn_update_reading(http_conn_t *c);
static void conn_resume(http_conn_t *c);
static void conn_arm_timer(http_conn_t *c);
static void on_timer(uv_timer_t *t);
static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf);

/* ---- small helpers ------------------------------------------------------------------------ */

static int buf_append(http_buf_t *b, const char *data, size_t len)
{
    if (len > SIZE_MAX / 2 - b->len)
        return -1;
    size_t need = b->len + len + 1;
    if (need > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < need)
            cap *= 2;
        char *p = realloc(b->data, cap);
        if (!p)
            return -1;
        b->data = p;
        b->cap = cap;
    }
    if (len)
        memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = '\0';
    return 0;
}

static void buf_free(http_buf_t *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

static uint64_t loop_now(const http_conn_t *c)
{
    return uv_now(c->srv->loop);
}

void http_limits_default(http_limits_t *limits)
{
    limits->max_body_bytes = 1024 * 1024;
    limits->max_header_bytes = 16 * 1024;
    limits->max_url_bytes = 8 * 1024;
    limits->max_connections = 1024;
    limits->header_timeout_ms = 10 * 1000;
    limits->body_timeout_ms = 30 * 1000;
    limits->idle_timeout_ms = 60 * 1000;
    limits->max_pipelined = 64;
}

const char *http_status_text(int status)
{
    switch (status) {
#define XX(num, name, string)                                                                      \
    case num:                                                                                      \
        return #string;
        HTTP_STATUS_MAP(XX)
#undef XX
    default:
        return "Unknown";
    }
}

/* IMF-fixdate (RFC 7231 7.1.1.1), formatted by hand so that the locale cannot change it. */
static const char *server_date(http_server_t *srv)
{
    static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    time_t now = time(NULL);
    if (now == srv->date_sec && srv->date[0])
        return srv->date;
    struct tm tm;
    if (!gmtime_r(&now, &tm) || tm.tm_wday < 0 || tm.tm_wday > 6 || tm.tm_mon < 0 || tm.tm_mon > 11)
        return srv->date[0] ? srv->date : "Thu, 01 Jan 1970 00:00:00 GMT";
    snprintf(srv->date, sizeof srv->date, "%s, %02d %s %04d %02d:%02d:%02d GMT", days[tm.tm_wday],
             tm.tm_mday, months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
    srv->date_sec = now;
    return srv->date;
}

/* ---- requests ----------------------------------------------------------------------------- */

static http_request_t *req_new(http_conn_t *c)
{
    http_request_t *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->state = HTTP__REQ_PARSING;
    r->method = "";
    r->start_ms = loop_now(c);
    memcpy(r->peer, c->peer, sizeof r->peer);
    return r;
}

/* Frees what parsing built; the answer (resp) is kept. */
static void req_free_parsed(http_request_t *r)
{
    buf_free(&r->url);
    buf_free(&r->hdrs);
    buf_free(&r->body);
    free(r->hdr);
    r->hdr = NULL;
    r->nhdr = r->hdr_cap = 0;
    free(r->path);
    r->path = NULL;
    r->query = NULL;
}

static void req_free(http_request_t *r)
{
    if (!r)
        return;
    req_free_parsed(r);
    free(r->resp);
    free(r);
}

const char *http_request_method(const http_request_t *req)
{
    return req->method;
}

const char *http_request_path(const http_request_t *req)
{
    return req->path ? req->path : "";
}

const char *http_request_query(const http_request_t *req)
{
    return req->query ? req->query : "";
}

const char *http_request_body(const http_request_t *req, size_t *len)
{
    if (len)
        *len = req->body.len;
    return req->body.data ? req->body.data : "";
}

const char *http_request_header(const http_request_t *req, const char *name)
{
    for (size_t i = req->nhdr; i-- > 0;) {
        if (strcasecmp(req->hdrs.data + req->hdr[i].name, name) == 0)
            return req->hdrs.data + req->hdr[i].value;
    }
    return NULL;
}

const char *http_request_peer(const http_request_t *req)
{
    return req->peer;
}

uint64_t http_request_start_ms(const http_request_t *req)
{
    return req->start_ms;
}

/*
 * Split the request target into path and query. Origin form ("/p?q") and "*" are split here;
 * the absolute form ("http://h/p?q") goes through http_parser_parse_url; CONNECT's authority
 * form becomes the path as it is. A fragment, which clients should not send, is dropped.
 */
static int req_split_url(http_request_t *r, bool is_connect)
{
    const char *url = r->url.data ? r->url.data : "";
    size_t len = r->url.len;
    const char *path = url, *query = "";
    size_t path_len = len, query_len = 0;

    if (!is_connect && url[0] == '/') {
        path_len = strcspn(url, "?#");
        if (url[path_len] == '?') {
            query = url + path_len + 1;
            query_len = strcspn(query, "#");
        }
    } else if (!is_connect && url[0] != '*') {
        struct http_parser_url u;
        http_parser_url_init(&u);
        if (http_parser_parse_url(url, len, 0, &u) != 0)
            return -1;
        if (u.field_set & (1 << UF_PATH)) {
            path = url + u.field_data[UF_PATH].off;
            path_len = u.field_data[UF_PATH].len;
        } else {
            path = "/";
            path_len = 1;
        }
        if (u.field_set & (1 << UF_QUERY)) {
            query = url + u.field_data[UF_QUERY].off;
            query_len = u.field_data[UF_QUERY].len;
        }
    }
    r->path = malloc(path_len + query_len + 2);
    if (!r->path)
        return -1;
    memcpy(r->path, path, path_len);
    r->path[path_len] = '\0';
    char *q = r->path + path_len + 1;
    memcpy(q, query, query_len);
    q[query_len] = '\0';
    r->query = q;
    return 0;
}

/* NUL-terminate the last header value and trim the trailing blanks http-parser leaves in. */
static int req_finish_headers(http_request_t *r)
{
    if (r->last_cb == 'f') { /* a name without a value: cannot come from http-parser */
        if (buf_append(&r->hdrs, "\0", 1))
            return -1;
        r->hdr[r->nhdr - 1].value = r->hdrs.len;
        if (buf_append(&r->hdrs, "", 0))
            return -1;
    }
    for (size_t i = 0; i < r->nhdr; i++) {
        char *v = r->hdrs.data + r->hdr[i].value;
        size_t n = strlen(v);
        while (n && (v[n - 1] == ' ' || v[n - 1] == '\t'))
            v[--n] = '\0';
    }
    return 0;
}

/* ---- percent decoding --------------------------------------------------------------------- */

static int hex_digit(unsigned char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

/*
 * Decode s[0..len) into out (NUL-terminated). A NUL byte, raw or as %00, is refused as bad input
 * in both callers: the results are C strings, and a NUL would silently cut them short. With
 * plus, '+' is a space (query strings); with no_slash, '/' raw or encoded is refused (segments).
 * Returns the length, -1 for bad input, -2 if out is too small.
 */
static long pct_decode(const char *s, size_t len, bool plus, bool no_slash, char *out,
                       size_t out_size)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '%') {
            if (len - i < 3)
                return -1;
            int hi = hex_digit((unsigned char)s[i + 1]), lo = hex_digit((unsigned char)s[i + 2]);
            if (hi < 0 || lo < 0)
                return -1;
            ch = (unsigned char)(hi * 16 + lo);
            i += 2;
        } else if (ch == '+' && plus) {
            ch = ' ';
        }
        if (ch == '\0' || (no_slash && ch == '/'))
            return -1;
        if (o + 1 >= out_size || o >= INT32_MAX)
            return -2;
        out[o++] = (char)ch;
    }
    if (out_size == 0)
        return -2;
    out[o] = '\0';
    return (long)o;
}

/* Whether the query key k[0..len), decoded, equals name. A badly encoded key matches nothing. */
static bool key_equals(const char *k, size_t len, const char *name)
{
    size_t j = 0;
    for (size_t i = 0; i < len; i++, j++) {
        unsigned char ch = (unsigned char)k[i];
        if (ch == '%') {
            if (len - i < 3)
                return false;
            int hi = hex_digit((unsigned char)k[i + 1]), lo = hex_digit((unsigned char)k[i + 2]);
            if (hi < 0 || lo < 0)
                return false;
            ch = (unsigned char)(hi * 16 + lo);
            i += 2;
        } else if (ch == '+') {
            ch = ' ';
        }
        if (ch == '\0' || name[j] == '\0' || (unsigned char)name[j] != ch)
            return false;
    }
    return name[j] == '\0';
}

int http_query_param(const char *query, const char *name, char *out, size_t out_size)
{
    if (!query || !name)
        return -1;
    const char *p = query;
    for (;;) {
        size_t pair_len = strcspn(p, "&");
        const char *eq = memchr(p, '=', pair_len);
        size_t key_len = eq ? (size_t)(eq - p) : pair_len;
        if ((pair_len || *name == '\0') && key_equals(p, key_len, name)) {
            const char *v = eq ? eq + 1 : p + pair_len;
            long n = pct_decode(v, (size_t)(p + pair_len - v), true, false, out, out_size);
            return n < 0 ? -2 : (int)n;
        }
        if (p[pair_len] == '\0')
            return -1;
        p += pair_len + 1;
    }
}

int http_path_segment_decode(const char *seg, size_t len, char *out, size_t out_size)
{
    if (!seg || !out)
        return -1;
    long n = pct_decode(seg, len, false, true, out, out_size);
    if (n < 0)
        return -1;
    if (strcmp(out, ".") == 0 || strcmp(out, "..") == 0)
        return -1;
    return (int)n;
}

/* ---- parser callbacks --------------------------------------------------------------------- */

static int cb_reject(http_conn_t *c, int status, const char *code, const char *message)
{
    c->reject_status = status;
    c->reject_code = code;
    snprintf(c->reject_msg, sizeof c->reject_msg, "%s", message);
    return -1;
}

static int cb_oom(http_conn_t *c)
{
    return cb_reject(c, 500, "internal_error", "out of memory");
}

static int on_message_begin(http_parser *p)
{
    http_conn_t *c = p->data;
    http_request_t *r = req_new(c);
    if (!r)
        return cb_oom(c);
    c->cur = r;
    c->phase = HTTP__PH_HEAD;
    c->phase_start_ms = r->start_ms;
    return 0;
}

static int on_url(http_parser *p, const char *at, size_t len)
{
    http_conn_t *c = p->data;
    http_request_t *r = c->cur;
    if (!r)
        return 0;
    size_t max = c->srv->limits.max_url_bytes;
    if (max > HTTP__URL_HARD_MAX)
        max = HTTP__URL_HARD_MAX;
    if (len > max - r->url.len) {
        char msg[64];
        snprintf(msg, sizeof msg, "request URL longer than %zu bytes", max);
        return cb_reject(c, 414, "uri_too_long", msg);
    }
    return buf_append(&r->url, at, len) ? cb_oom(c) : 0;
}

static int on_header_field(http_parser *p, const char *at, size_t len)
{
    http_conn_t *c = p->data;
    http_request_t *r = c->cur;
    if (!r || c->phase != HTTP__PH_HEAD)
        return 0; /* a chunked body's trailer: ignored */
    if (r->last_cb != 'f') {
        if (r->last_cb == 'v' && buf_append(&r->hdrs, "\0", 1))
            return cb_oom(c);
        http_hdr_t *h = grow(r->hdr, &r->hdr_cap, r->nhdr, sizeof *h, 16);
        if (!h)
            return cb_oom(c);
        r->hdr = h;
        r->hdr[r->nhdr].name = r->hdrs.len;
        r->hdr[r->nhdr].value = 0;
        r->nhdr++;
        r->last_cb = 'f';
    }
    return buf_append(&r->hdrs, at, len) ? cb_oom(c) : 0;
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
    http_conn_t *c = p->data;
    http_request_t *r = c->cur;
    if (!r || c->phase != HTTP__PH_HEAD || r->nhdr == 0)
        return 0;
    if (r->last_cb != 'v') {
        if (buf_append(&r->hdrs, "\0", 1))
            return cb_oom(c);
        r->hdr[r->nhdr - 1].value = r->hdrs.len;
        r->last_cb = 'v';
    }
    /* An empty value arrives as a zero-length call; make sure it is still a string. */
    return buf_append(&r->hdrs, at, len) ? cb_oom(c) : 0;
}

/* Pausing here and in on_message_complete lets conn_parse count head bytes exactly. */
static int on_headers_complete(http_parser *p)
{
    http_conn_t *c = p->data;
    c->event = HTTP__EV_HEADERS;
    http_parser_pause(p, 1);
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
    http_conn_t *c = p->data;
    http_request_t *r = c->cur;
    if (!r)
        return 0;
    size_t max = c->srv->limits.max_body_bytes;
    if (len > max - r->body.len) {
        char msg[80];
        snprintf(msg, sizeof msg, "request body larger than %zu bytes", max);
        return cb_reject(c, 413, "body_too_large", msg);
    }
    return buf_append(&r->body, at, len) ? cb_oom(c) : 0;
}

static int on_message_complete(http_parser *p)
{
    http_conn_t *c = p->data;
    c->event = HTTP__EV_MESSAGE;
    http_parser_pause(p, 1);
    return 0;
}

/* ---- connection: writing ------------------------------------------------------------------ */

static bool conn_writes_backed_up(const http_conn_t *c)
{
    return uv_stream_get_write_queue_size((const uv_stream_t *)&c->tcp) >= HTTP__WRITE_HIGH_WATER;
}

static void on_write(uv_write_t *wr, int status)
{
    http_write_t *w = (http_write_t *)wr;
    http_conn_t *c = w->conn;
    free(w->data);
    free(w);
    c->writes_pending--;
    if (c->closing)
        return;
    if (status < 0) {
        conn_close(c);
        return;
    }
    if (!c->lingering && !conn_writes_backed_up(c)) {
        conn_resume(c); /* parsing may have stopped on the high-water mark */
        conn_update_reading(c);
    }
}

/*
 * Write bufs; data (may be NULL) is freed when the write completes or fails. With nothing else
 * queued, the socket is tried at once (uv_try_write): a response it takes whole needs no write
 * request, and libuv's completion of one re-arms the connection's poll watcher (an epoll_ctl
 * per response). What it does not take, or an error, goes the queued way, where an error closes
 * the connection as usual.
 */
static int conn_write(http_conn_t *c, const uv_buf_t *in, unsigned int nbufs, char *data)
{
    uv_buf_t bufs[4];
    if (nbufs > sizeof bufs / sizeof bufs[0])
        return -1;
    memcpy(bufs, in, nbufs * sizeof bufs[0]);
    if (c->writes_pending == 0) {
        int n = uv_try_write((uv_stream_t *)&c->tcp, bufs, nbufs);
        size_t left = n > 0 ? (size_t)n : 0;
        unsigned int i = 0;
        for (; i < nbufs && left >= bufs[i].len; i++) /* the buffers written whole */
            left -= bufs[i].len;
        if (i < nbufs) { /* and what was written of the next one */
            bufs[i].base += left;
            bufs[i].len -= left;
        }
        if (i == nbufs) {
            free(data);
            return 0;
        }
        memmove(bufs, bufs + i, (nbufs - i) * sizeof bufs[0]);
        nbufs -= i;
    }
    http_write_t *w = malloc(sizeof *w);
    if (!w) {
        free(data);
        return -1;
    }
    w->conn = c;
    w->data = data;
    int rc = uv_write(&w->wr, (uv_stream_t *)&c->tcp, bufs, nbufs, on_write);
    if (rc != 0) {
        free(data);
        free(w);
        return -1;
    }
    c->writes_pending++;
    return 0;
}

static int conn_write_response(http_conn_t *c, http_request_t *r, bool close_after)
{
    static const char keep[] = "Connection: keep-alive\r\n\r\n";
    static const char close_line[] = "Connection: close\r\n\r\n";
    char *data = r->resp;
    r->resp = NULL; /* now owned by the write */
    uv_buf_t bufs[3];
    bufs[0] = uv_buf_init(data, (unsigned int)r->resp_head_len);
    bufs[1] = close_after ? uv_buf_init((char *)close_line, sizeof close_line - 1)
                          : uv_buf_init((char *)keep, sizeof keep - 1);
    bufs[2] = uv_buf_init(data + r->resp_head_len, (unsigned int)r->resp_body_len);
    return conn_write(c, bufs, r->resp_body_len ? 3 : 2, data);
}

/*
 * "100 Continue" for the request being received, once every earlier response is out (it must
 * not overtake them) and only if none of its body has arrived yet.
 */
static void conn_maybe_continue(http_conn_t *c)
{
    static const char line[] = "HTTP/1.1 100 Continue\r\n\r\n";
    http_request_t *r = c->cur;
    if (!r || !r->want_continue || r->continue_sent || c->q_head || c->phase != HTTP__PH_BODY ||
        r->body.len || c->no_more || c->closing)
        return;
    r->continue_sent = true;
    uv_buf_t buf = uv_buf_init((char *)line, sizeof line - 1);
    if (conn_write(c, &buf, 1, NULL) != 0)
        conn_close(c);
}

/* ---- connection: timers and closing ------------------------------------------------------- */

static void on_handle_closed(uv_handle_t *h)
{
    http_conn_t *c = h->data;
    if (--c->handles_open > 0)
        return;
    http_server_t *srv = c->srv;
    if (c->prev)
        c->prev->next = c->next;
    else
        srv->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    srv->nconns--;
    if (c->served)
        srv->stats.connections_open--;
    free(c);
    if (srv->closing && srv->listener_closed && srv->nconns == 0) {
        void (*cb)(void *) = srv->on_closed;
        void *arg = srv->on_closed_arg;
        free(srv);
        if (cb)
            cb(arg);
    }
}

/*
 * Close now. Requests a handler still holds are orphaned (http_respond will free them and return
 * -1); answered ones waiting for their turn are dropped. The memory stays until both handles
 * are closed, so callers up the stack may still look at c->closing.
 */
static void conn_close(http_conn_t *c)
{
    if (c->closing)
        return;
    c->closing = true;
    for (http_request_t *r = c->q_head, *next; r; r = next) {
        next = r->next;
        r->next = NULL;
        if (r->state == HTTP__REQ_HANDLER)
            r->conn = NULL;
        else
            req_free(r);
    }
    c->q_head = c->q_tail = NULL;
    c->q_len = 0;
    req_free(c->cur);
    c->cur = NULL;
    buf_free(&c->pending);
    uv_close((uv_handle_t *)&c->timer, on_handle_closed);
    if (c->tcp_ready)
        uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    http_conn_t *c = req->data;
    if (c->closing)
        return;
    c->shut_done = true;
    if (status < 0 || c->read_eof) {
        conn_close(c);
        return;
    }
    if (uv_timer_start(&c->timer, on_timer, HTTP__LINGER_MS, 0) != 0)
        conn_close(c);
}

/*
 * The last response is written: send FIN once the writes are out, and keep reading (and
 * discarding) until the client closes too or the linger timer ends it.
 */
static void conn_finish(http_conn_t *c)
{
    if (c->closing || c->lingering)
        return;
    c->lingering = true;
    c->no_more = true;
    req_free(c->cur);
    c->cur = NULL;
    c->phase = HTTP__PH_IDLE;
    buf_free(&c->pending);
    c->shutdown_req.data = c;
    if (uv_shutdown(&c->shutdown_req, (uv_stream_t *)&c->tcp, on_shutdown) != 0) {
        conn_close(c);
        return;
    }
    /* Bound the write-out: a client that never reads must not hold the connection forever. */
    uint64_t limit = c->srv->limits.idle_timeout_ms;
    if (uv_timer_start(&c->timer, on_timer, limit ? limit : HTTP__FINISH_MS, 0) != 0) {
        conn_close(c);
        return;
    }
    conn_update_reading(c);
}

static void on_timer(uv_timer_t *t)
{
    http_conn_t *c = t->data;
    if (c->closing)
        return;
    if (c->lingering) {
        conn_close(c);
        return;
    }
    const http_limits_t *lim = &c->srv->limits;
    uint64_t now = loop_now(c);
    if (c->phase == HTTP__PH_HEAD && lim->header_timeout_ms &&
        now - c->phase_start_ms >= lim->header_timeout_ms) {
        conn_reject(c, 408, "request_timeout", "request head not received in time");
        return;
    }
    if (c->phase == HTTP__PH_BODY && lim->body_timeout_ms &&
        now - c->phase_start_ms >= lim->body_timeout_ms) {
        conn_reject(c, 408, "request_timeout", "request body not received in time");
        return;
    }
    if (c->phase == HTTP__PH_IDLE && !c->q_head && !c->no_more && lim->idle_timeout_ms &&
        now - c->idle_since_ms >= lim->idle_timeout_ms) {
        conn_close(c);
        return;
    }
    conn_arm_timer(c);
}

/*
 * One timer per connection, aimed at whichever deadline applies now: the head's (from its first
 * byte), the body's (from the end of the head), idleness (no request in progress or waiting),
 * or, once lingering, the end of the linger. None while handlers work on queued requests.
 */
static void conn_arm_timer(http_conn_t *c)
{
    if (c->closing)
        return;
    const http_limits_t *lim = &c->srv->limits;
    uint64_t start = loop_now(c), timeout = 0;
    if (c->lingering)
        return; /* conn_finish and on_shutdown set its timer themselves */
    if (c->phase == HTTP__PH_HEAD) {
        start = c->phase_start_ms;
        timeout = lim->header_timeout_ms;
    } else if (c->phase == HTTP__PH_BODY) {
        start = c->phase_start_ms;
        timeout = lim->body_timeout_ms;
    } else if (!c->q_head && !c->no_more) {
        start = c->idle_since_ms;
        timeout = lim->idle_timeout_ms;
    }
    if (timeout == 0) {
        if (uv_timer_stop(&c->timer) != 0)
            conn_close(c);
        return;
    }
    uint64_t now = loop_now(c), deadline = start + timeout;
    if (uv_timer_start(&c->timer, on_timer, deadline > now ? deadline - now : 0, 0) != 0)
        conn_close(c);
}

/* Read when a request may still come and the queue has room; discard-read while lingering. */
static void conn_update_reading(http_conn_t *c)
{
    if (c->closing)
        return;
    bool want;
    if (c->lingering)
        want = !c->read_eof;
    else
        want = !c->no_more && !c->read_eof && !c->srv->closing && c->pending.len == 0 &&
               c->q_len < c->srv->limits.max_pipelined && !conn_writes_backed_up(c);
    if (want == c->reading)
        return;
    if (want) {
        if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0) {
            conn_close(c);
            return;
        }
    } else if (uv_read_stop((uv_stream_t *)&c->tcp) != 0) {
        conn_close(c);
        return;
    }
    c->reading = want;
}

/* ---- connection: the response queue ------------------------------------------------------- */

static void conn_enqueue(http_conn_t *c, http_request_t *r)
{
    r->conn = c;
    r->next = NULL;
    r->state = HTTP__REQ_HANDLER;
    if (c->q_tail)
        c->q_tail->next = r;
    else
        c->q_head = r;
    c->q_tail = r;
    c->q_len++;
}

static bool conn_may_parse(const http_conn_t *c)
{
    return !c->closing && !c->no_more && !c->lingering && !c->srv->closing &&
           c->q_len < c->srv->limits.max_pipelined && !conn_writes_backed_up(c);
}

/* Parse what was held back while the queue was full (or writes backed up), now that it can go. */
static void conn_resume(http_conn_t *c)
{
    if (c->parsing || c->pending.len == 0 || !conn_may_parse(c))
        return;
    http_buf_t held = c->pending;
    memset(&c->pending, 0, sizeof c->pending);
    conn_parse(c, held.data, held.len);
    buf_free(&held);
}

/*
 * Write every answered response at the head of the queue, in order. The one after which the
 * connection ends says "Connection: close": a request that asked for it, or the last one when
 * no further request will be read (half-close, server closing, an error answered).
 */
static void conn_flush(http_conn_t *c)
{
    while (!c->closing && c->q_head && c->q_head->state == HTTP__REQ_ANSWERED) {
        http_request_t *r = c->q_head;
        c->q_head = r->next;
        if (!c->q_head)
            c->q_tail = NULL;
        c->q_len--;
        bool close_after = !r->keep_alive || (!c->q_head && c->no_more);
        int rc = conn_write_response(c, r, close_after);
        req_free(r);
        if (rc != 0) {
            conn_close(c);
            return;
        }
        if (close_after) {
            conn_finish(c);
            return;
        }
    }
    if (c->closing || c->lingering)
        return;
    if (!c->q_head)
        c->idle_since_ms = loop_now(c);
    conn_maybe_continue(c);
    conn_resume(c);
    conn_update_reading(c);
    conn_arm_timer(c);
}

/*
 * Answer a broken or over-limit request from the server itself and read no further. The answer
 * joins the queue like any other, so earlier pipelined requests still get theirs first.
 */
static void conn_reject(http_conn_t *c, int status, const char *code, const char *message)
{
    if (c->closing || c->no_more)
        return;
    c->srv->stats.rejected_total++;
    req_free(c->cur);
    c->cur = NULL;
    c->phase = HTTP__PH_IDLE;
    c->no_more = true;
    buf_free(&c->pending);
    http_request_t *r = req_new(c);
    if (!r) {
        conn_close(c);
        return;
    }
    r->keep_alive = false;
    conn_enqueue(c, r);
    http_respond_error(r, status, code, message, NULL); /* -1 only when c closed meanwhile */
    conn_update_reading(c);
    conn_arm_timer(c);
}

/* The response head without its Connection line (added when the response leaves). */
static int format_head(char *out, size_t size, int status, const char *content_type, size_t len,
                       const char *date, const char *extra)
{
    size_t extra_len = strlen(extra);
    bool extra_crlf = extra_len && (extra_len < 2 || strcmp(extra + extra_len - 2, "\r\n") != 0);
    char length_line[48] = "";
    if (status != 204) /* RFC 7230 3.3.2: a 204 carries no Content-Length */
        snprintf(length_line, sizeof length_line, "Content-Length: %zu\r\n", len);
    return snprintf(out, size, "HTTP/1.1 %d %s\r\n%s%s%s%sDate: %s\r\n%s%s", status,
                    http_status_text(status), content_type ? "Content-Type: " : "",
                    content_type ? content_type : "", content_type ? "\r\n" : "", length_line, date,
                    extra, extra_crlf ? "\r\n" : "");
}

int http_respond(http_request_t *req, int status, const char *content_type, const void *body,
                 size_t len, const char *extra_headers)
{
    if (!req)
        return -1;
    http_conn_t *c = req->conn;
    if (!c) {
        req_free(req);
        return -1;
    }
    /* A handler cannot send an interim (1xx) response: the client would wait for a final one.
     * A libuv buffer holds at most 4 GiB, far beyond any answer this server should give. */
    if (status < 200 || status > 599 || len > UINT32_MAX / 2) {
        status = 500;
        len = 0;
    }
    if (status == 204 || status == 304 || !body)
        len = 0;
    const char *extra = extra_headers ? extra_headers : "";
    const char *date = server_date(c->srv);
    int head_len = format_head(NULL, 0, status, content_type, len, date, extra);
    size_t body_len = req->is_head ? 0 : len;
    char *resp = head_len < 0 ? NULL : malloc((size_t)head_len + 1 + body_len);
    if (!resp) {
        conn_close(c); /* orphans req, which is still in c's queue */
        req_free(req);
        return -1;
    }
    format_head(resp, (size_t)head_len + 1, status, content_type, len, date, extra);
    if (body_len)
        memcpy(resp + head_len, body, body_len); /* body may be req's own: copy before freeing */
    req_free_parsed(req);
    req->resp = resp;
    req->resp_head_len = (size_t)head_len;
    req->resp_body_len = body_len;
    req->state = HTTP__REQ_ANSWERED;
    conn_flush(c);
    return c->closing ? -1 : 0;
}

/* A JSON string for s; bytes that are not valid UTF-8 become '?' rather than losing the text. */
static json_t *json_text(const char *s)
{
    json_t *j = json_string(s);
    if (j)
        return j;
    char *copy = strdup(s);
    if (!copy)
        return NULL;
    for (unsigned char *p = (unsigned char *)copy; *p; p++) {
        if (*p >= 0x80)
            *p = '?';
    }
    j = json_string(copy);
    free(copy);
    return j;
}

int http_respond_error(http_request_t *req, int status, const char *code, const char *message,
                       const char *field)
{
    static const char fallback[] =
        "{\"error\":{\"code\":\"internal_error\",\"message\":\"the error could not be encoded\"}}";
    json_t *root = json_object(), *err = json_object();
    char *text = NULL;
    if (root && err && json_object_set_new(err, "code", json_text(code ? code : "error")) == 0 &&
        json_object_set_new(err, "message", json_text(message ? message : "")) == 0 &&
        (!field || json_object_set_new(err, "field", json_text(field)) == 0) &&
        json_object_set(root, "error", err) == 0)
        text = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(err);
    json_decref(root);
    int rc = http_respond(req, status, "application/json", text ? text : fallback,
                          text ? strlen(text) : sizeof fallback - 1, NULL);
    free(text);
    return rc;
}

/* ---- connection: parsing ------------------------------------------------------------------ */

/* Whether the transfer coding is exactly "chunked", the only one a body may use here. */
static bool req_chunked_only(const http_request_t *r)
{
    size_t n = 0;
    for (size_t i = 0; i < r->nhdr; i++) {
        if (strcasecmp(r->hdrs.data + r->hdr[i].name, "transfer-encoding") != 0)
            continue;
        if (++n > 1 || strcasecmp(r->hdrs.data + r->hdr[i].value, "chunked") != 0)
            return false;
    }
    return n == 1;
}

/* The head is complete (the parser is paused on its last LF). Returns -1 if it was refused. */
static int conn_headers_done(http_conn_t *c)
{
    http_request_t *r = c->cur;
    http_parser *p = &c->parser;
    const http_limits_t *lim = &c->srv->limits;
    char msg[96];

    c->head_bytes++; /* the final LF, not consumed yet */
    if (c->head_bytes > lim->max_header_bytes) {
        snprintf(msg, sizeof msg, "request head larger than %zu bytes", lim->max_header_bytes);
        conn_reject(c, 431, "headers_too_large", msg);
        return -1;
    }
    if (req_finish_headers(r) != 0 || req_split_url(r, p->method == HTTP_CONNECT) != 0) {
        conn_reject(c, 400, "bad_request", "malformed request: invalid URL");
        return -1;
    }
    r->method = http_method_str((enum http_method)p->method);
    r->is_head = p->method == HTTP_HEAD;
    /* After CONNECT the bytes are a tunnel, which is not served: answer it, then close. */
    r->keep_alive = http_should_keep_alive(p) && p->method != HTTP_CONNECT;

    bool chunked = p->flags & F_CHUNKED;
    if (p->uses_transfer_encoding && (!chunked || !req_chunked_only(r))) {
        conn_reject(c, 501, "not_implemented", "only the chunked transfer coding is supported");
        return -1;
    }
    bool has_length = !chunked && p->content_length != ULLONG_MAX;
    if (has_length && p->content_length > lim->max_body_bytes) {
        snprintf(msg, sizeof msg, "request body larger than %zu bytes", lim->max_body_bytes);
        conn_reject(c, 413, "body_too_large", msg);
        return -1;
    }
    if (has_length && p->content_length > 0) {
        /* Within the limit: room for the whole body at once (on failure it grows as it comes). */
        char *b = realloc(r->body.data, (size_t)p->content_length + 1);
        if (b) {
            b[r->body.len] = '\0';
            r->body.data = b;
            r->body.cap = (size_t)p->content_length + 1;
        }
    }
    const char *expect = http_request_header(r, "expect");
    bool has_body = chunked || (has_length && p->content_length > 0);
    r->want_continue = expect && has_body && p->http_major == 1 && p->http_minor >= 1 &&
                       strcasecmp(expect, "100-continue") == 0;
    c->phase = HTTP__PH_BODY;
    c->phase_start_ms = loop_now(c);
    conn_maybe_continue(c); /* may close c (and free r): nothing after it */
    return c->closing ? -1 : 0;
}

/* A whole request has arrived: queue it and hand it to the handler. */
static void conn_message_done(http_conn_t *c)
{
    http_request_t *r = c->cur;
    c->cur = NULL;
    c->phase = HTTP__PH_IDLE;
    c->head_bytes = 0;
    if (!r)
        return;
    conn_enqueue(c, r);
    if (!r->keep_alive)
        c->no_more = true;
    c->srv->stats.requests_total++;
    c->srv->handler(r, c->srv->arg); /* may answer (and free r) at once */
}

static void conn_parse_failed(http_conn_t *c, enum http_errno err)
{
    char msg[128];
    if (c->reject_status) {
        conn_reject(c, c->reject_status, c->reject_code, c->reject_msg);
    } else if (err == HPE_HEADER_OVERFLOW) {
        conn_reject(c, 431, "headers_too_large", "request head too large");
    } else if (err == HPE_INVALID_TRANSFER_ENCODING) {
        conn_reject(c, 501, "not_implemented", "only the chunked transfer coding is supported");
    } else {
        snprintf(msg, sizeof msg, "malformed request: %s", http_errno_description(err));
        conn_reject(c, 400, "bad_request", msg);
    }
}

/*
 * Feed data to the parser. The head is fed at most max_header_bytes + 1 at a time so that an
 * oversized head is caught without buffering it. Parsing stops when the queue is full (the rest
 * is kept in c->pending and reading pauses), when no further request may be read, or on error.
 */
static void conn_parse(http_conn_t *c, const char *data, size_t len)
{
    const http_limits_t *lim = &c->srv->limits;
    size_t off = 0;
    c->parsing = true;
    while (off < len && conn_may_parse(c)) {
        http_phase_t before = c->phase;
        size_t chunk = len - off;
        if (before != HTTP__PH_BODY && chunk > lim->max_header_bytes + 1 - c->head_bytes)
            chunk = lim->max_header_bytes + 1 - c->head_bytes;
        c->event = HTTP__EV_NONE;
        c->reject_status = 0;
        size_t n = http_parser_execute(&c->parser, &c->srv->settings, data + off, chunk);
        off += n;
        if (before != HTTP__PH_BODY)
            c->head_bytes += n;
        enum http_errno err = HTTP_PARSER_ERRNO(&c->parser);
        if (err == HPE_PAUSED) {
            http_parser_pause(&c->parser, 0);
            if (c->event == HTTP__EV_HEADERS)
                conn_headers_done(c);
            else if (c->event == HTTP__EV_MESSAGE)
                conn_message_done(c);
            continue;
        }
        if (err != HPE_OK) {
            conn_parse_failed(c, err);
            break;
        }
        if (c->phase != HTTP__PH_BODY && c->head_bytes > lim->max_header_bytes) {
            char msg[96];
            snprintf(msg, sizeof msg, "request head larger than %zu bytes", lim->max_header_bytes);
            conn_reject(c, 431, "headers_too_large", msg);
            break;
        }
        if (n == 0)
            break; /* cannot happen without an error or a pause; never spin */
    }
    if (off < len && !c->closing && !c->no_more && !c->lingering && !c->srv->closing &&
        buf_append(&c->pending, data + off, len - off) != 0)
        conn_close(c);
    c->parsing = false;
    conn_update_reading(c);
    conn_arm_timer(c);
}

/* ---- connection: socket side -------------------------------------------------------------- */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    http_conn_t *c = h->data;
    (void)suggested;
    *buf = uv_buf_init(c->srv->rbuf, sizeof c->srv->rbuf);
}

static void conn_on_eof(http_conn_t *c)
{
    c->read_eof = true;
    c->reading = false; /* libuv stops reading at EOF */
    if (c->lingering) {
        if (c->shut_done)
            conn_close(c);
        return;
    }
    /* The client half-closed: a request cut short gets no answer; complete ones still do. */
    req_free(c->cur);
    c->cur = NULL;
    c->phase = HTTP__PH_IDLE;
    c->no_more = true;
    buf_free(&c->pending);
    if (!c->q_head) {
        if (c->writes_pending)
            conn_finish(c);
        else
            conn_close(c);
        return;
    }
    conn_arm_timer(c);
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    http_conn_t *c = stream->data;
    if (nread == 0 || c->closing)
        return;
    if (nread < 0) {
        if (nread == UV_EOF)
            conn_on_eof(c);
        else
            conn_close(c);
        return;
    }
    /* After the last request, reads only drain the socket. */
    if (c->lingering || c->no_more)
        return;
    /* Reading stops while bytes are held back; should one more read come, keep the order. */
    if (c->pending.len) {
        if (buf_append(&c->pending, buf->base, (size_t)nread) != 0)
            conn_close(c);
        conn_update_reading(c);
        return;
    }
    conn_parse(c, buf->base, (size_t)nread);
}

static http_conn_t *conn_new(http_server_t *srv)
{
    http_conn_t *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->srv = srv;
    if (uv_timer_init(srv->loop, &c->timer) != 0) {
        free(c);
        return NULL;
    }
    c->timer.data = c;
    c->handles_open = 1;
    c->next = srv->conns;
    if (srv->conns)
        srv->conns->prev = c;
    srv->conns = c;
    srv->nconns++;
    if (uv_tcp_init(srv->loop, &c->tcp) != 0) {
        conn_close(c);
        return NULL;
    }
    c->tcp.data = c;
    c->tcp_ready = true;
    c->handles_open = 2;
    http_parser_init(&c->parser, HTTP_REQUEST);
    c->parser.data = c;
    return c;
}

/* c is connected: note the peer, then serve it or, over max_connections, answer 503. */
static void conn_start(http_conn_t *c)
{
    http_server_t *srv = c->srv;
    struct sockaddr_storage ss;
    int ss_len = sizeof ss;
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &ss_len) == 0) {
        int rc = -1;
        if (ss.ss_family == AF_INET)
            rc = uv_ip4_name((struct sockaddr_in *)&ss, c->peer, sizeof c->peer);
        else if (ss.ss_family == AF_INET6)
            rc = uv_ip6_name((struct sockaddr_in6 *)&ss, c->peer, sizeof c->peer);
        if (rc != 0)
            c->peer[0] = '\0';
    }
    /* Small responses should leave at once. Failure (a socketpair in the fuzz target is not
     * TCP) only costs latency, so it is deliberately not an error. */
    int nodelay_rc = uv_tcp_nodelay(&c->tcp, 1);
    (void)nodelay_rc;
    c->idle_since_ms = loop_now(c);
    srv->stats.connections_total++;
    if (srv->stats.connections_open >= srv->limits.max_connections) {
        conn_reject(c, 503, "too_many_connections", "too many connections");
        return;
    }
    c->served = true;
    srv->stats.connections_open++;
    conn_update_reading(c);
    conn_arm_timer(c);
}

static void on_connection(uv_stream_t *listener, int status)
{
    http_server_t *srv = listener->data;
    if (status < 0 || srv->closing)
        return; /* a failed accept (EMFILE, say): libuv tries again on the next connection */
    http_conn_t *c = conn_new(srv);
    if (!c)
        return;
    if (uv_accept(listener, (uv_stream_t *)&c->tcp) != 0) {
        conn_close(c);
        return;
    }
    conn_start(c);
}

int http__server_adopt(http_server_t *srv, uv_os_sock_t fd)
{
    if (!srv || srv->closing) {
        close(fd);
        return UV_EINVAL;
    }
    http_conn_t *c = conn_new(srv);
    if (!c) {
        close(fd);
        return UV_ENOMEM;
    }
    int rc = uv_tcp_open(&c->tcp, fd);
    if (rc != 0) {
        close(fd);
        conn_close(c);
        return rc;
    }
    conn_start(c);
    return 0;
}

/* ---- the server --------------------------------------------------------------------------- */

static void on_listener_closed(uv_handle_t *h)
{
    http_server_t *srv = h->data;
    srv->listener_closed = true;
    if (srv->closing && srv->nconns == 0) {
        void (*cb)(void *) = srv->on_closed;
        void *arg = srv->on_closed_arg;
        free(srv);
        if (cb)
            cb(arg);
    }
}

/* A bound, listening, non-blocking socket for host:port, or -1 with errstr filled. */
static int listen_socket(const char *host, int port, int *bound_port, char *errstr,
                         size_t errstr_size)
{
    struct addrinfo hints, *ai = NULL;
    char port_text[16];
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    snprintf(port_text, sizeof port_text, "%d", port);
    int rc = getaddrinfo(host, port_text, &hints, &ai);
    if (rc != 0) {
        snprintf(errstr, errstr_size, "http: cannot resolve listen address %s: %s", host,
                 gai_strerror(rc));
        return -1;
    }
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(errstr, errstr_size, "http: socket: %s", strerror(errno));
        goto err;
    }
    int one = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, HTTP__BACKLOG) != 0) {
        snprintf(errstr, errstr_size, "http: cannot listen on %s:%d: %s", host, port,
                 strerror(errno));
        goto err;
    }
    struct sockaddr_storage ss;
    socklen_t ss_len = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &ss_len) != 0) {
        snprintf(errstr, errstr_size, "http: getsockname: %s", strerror(errno));
        goto err;
    }
    *bound_port = ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                                           : ntohs(((struct sockaddr_in *)&ss)->sin_port);
    freeaddrinfo(ai);
    return fd;
err:
    if (fd >= 0)
        close(fd);
    freeaddrinfo(ai);
    return -1;
}

static void free_handle_owner(uv_handle_t *h)
{
    free(h->data);
}

http_server_t *http_server_create(uv_loop_t *loop, const char *host, int port,
                                  const http_limits_t *limits, http_handler_fn *handler, void *arg,
                                  char *errstr, size_t errstr_size)
{
    http_server_t *srv = NULL;
    int fd = -1;
    if (!loop || !handler || port < 0 || port > 65535) {
        snprintf(errstr, errstr_size, "http: invalid arguments");
        goto err;
    }
    if (!host || !*host)
        host = "0.0.0.0";
    srv = calloc(1, sizeof *srv);
    if (!srv) {
        snprintf(errstr, errstr_size, "http: out of memory");
        goto err;
    }
    srv->loop = loop;
    if (limits)
        srv->limits = *limits;
    else
        http_limits_default(&srv->limits);
    if (srv->limits.max_pipelined == 0)
        srv->limits.max_pipelined = 1;
    srv->handler = handler;
    srv->arg = arg;
    http_parser_settings_init(&srv->settings);
    srv->settings.on_message_begin = on_message_begin;
    srv->settings.on_url = on_url;
    srv->settings.on_header_field = on_header_field;
    srv->settings.on_header_value = on_header_value;
    srv->settings.on_headers_complete = on_headers_complete;
    srv->settings.on_body = on_body;
    srv->settings.on_message_complete = on_message_complete;

    /* The socket is made by hand so that the usual failures (bad address, port in use) come
     * before any libuv handle exists, and the error path can free at once. */
    fd = listen_socket(host, port, &srv->port, errstr, errstr_size);
    if (fd < 0)
        goto err;
    if (uv_tcp_init(loop, &srv->tcp) != 0) {
        snprintf(errstr, errstr_size, "http: uv_tcp_init failed");
        goto err;
    }
    srv->tcp.data = srv;
    int rc = uv_tcp_open(&srv->tcp, fd);
    if (rc == 0) {
        fd = -1; /* now owned by srv->tcp */
        rc = uv_listen((uv_stream_t *)&srv->tcp, HTTP__BACKLOG, on_connection);
    }
    if (rc != 0) {
        snprintf(errstr, errstr_size, "http: cannot listen on %s:%d: %s", host, port,
                 uv_strerror(rc));
        if (fd >= 0)
            close(fd);
        /* Rare: the handle exists, so srv is freed by its close callback when the loop runs. */
        uv_close((uv_handle_t *)&srv->tcp, free_handle_owner);
        return NULL;
    }
    return srv;
err:
    if (fd >= 0)
        close(fd);
    free(srv);
    return NULL;
}

int http_server_port(const http_server_t *srv)
{
    return srv->port;
}

void http_server_stats(const http_server_t *srv, http_stats_t *out)
{
    *out = srv->stats;
}

/*
 * Stop accepting; close connections with nothing in their queue; let the others finish the
 * requests already handed to the handler (reading no more), after which they close themselves.
 */
void http_server_close(http_server_t *srv, void (*on_closed)(void *arg), void *arg)
{
    if (!srv || srv->closing)
        return;
    srv->closing = true;
    srv->on_closed = on_closed;
    srv->on_closed_arg = arg;
    for (http_conn_t *c = srv->conns; c; c = c->next) {
        if (c->closing || c->lingering)
            continue;
        if (!c->q_head) {
            if (c->writes_pending)
                conn_finish(c);
            else
                conn_close(c);
            continue;
        }
        req_free(c->cur);
        c->cur = NULL;
        c->phase = HTTP__PH_IDLE;
        c->no_more = true;
        buf_free(&c->pending);
        conn_update_reading(c);
        conn_arm_timer(c);
    }
    uv_close((uv_handle_t *)&srv->tcp, on_listener_closed);
}
