/*
 * http: a small HTTP/1.1 server on the process's libuv loop, parsing with Debian's http-parser.
 * Keep-alive and pipelining (responses leave in request order, even when a handler answers
 * later), limits on every size and time with clear JSON error statuses, and a graceful stop.
 * Used by the gateway's API and by every service's ops port (/healthz, /readyz, /metrics).
 */
#ifndef JRP_HTTP_H
#define JRP_HTTP_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct http_limits_s {
    size_t max_body_bytes;      /* 413 above (default 1 MiB) */
    size_t max_header_bytes;    /* request line + headers; 431 above (default 16 KiB) */
    size_t max_url_bytes;       /* 414 above (default 8 KiB) */
    size_t max_connections;     /* further connections get 503 and are closed (default 1024) */
    uint64_t header_timeout_ms; /* a request head not complete in time: 408 (default 10 s) */
    uint64_t body_timeout_ms;   /* a body not complete in time: 408 (default 30 s) */
    uint64_t idle_timeout_ms;   /* keep-alive connection idle this long is closed (default 60 s) */
    size_t max_pipelined;       /* requests queued on one connection at most (default 64) */
} http_limits_t;

/* Fill limits with the defaults above. */
void http_limits_default(http_limits_t *limits);

typedef struct http_server_s http_server_t;
typedef struct http_request_s http_request_t;

/*
 * Called once per complete request. The request stays valid until the handler (now or later,
 * from any loop callback) calls http_respond() exactly once. If the client goes away first, the
 * request is still valid and http_respond() just frees it.
 */
typedef void http_handler_fn(http_request_t *req, void *arg);

/*
 * Listen on host:port (port 0 = any free port; see http_server_port). Returns the server or NULL
 * with the reason in errstr. limits may be NULL (defaults).
 */
http_server_t *http_server_create(uv_loop_t *loop, const char *host, int port,
                                  const http_limits_t *limits, http_handler_fn *handler, void *arg,
                                  char *errstr, size_t errstr_size);
int http_server_port(const http_server_t *srv);

/*
 * Graceful stop: stop accepting, close idle connections, let requests in flight get their
 * responses (then close those connections), and free the server once every handle is closed;
 * on_closed(arg) runs then (may be NULL). Safe to call once; srv must not be used after.
 */
void http_server_close(http_server_t *srv, void (*on_closed)(void *arg), void *arg);

/* Counters for /metrics. */
typedef struct http_stats_s {
    uint64_t connections_open;
    uint64_t connections_total;
    uint64_t requests_total;
    uint64_t rejected_total; /* answered by the server itself: 400, 408, 413, 414, 431, 503 */
} http_stats_t;
void http_server_stats(const http_server_t *srv, http_stats_t *out);

/* The request. Strings are NUL-terminated and valid until http_respond. */
const char *http_request_method(const http_request_t *req); /* "GET", "POST", ... */
const char *http_request_path(const http_request_t *req);   /* raw path, without the query */
const char *http_request_query(const http_request_t *req);  /* raw query without '?', or "" */
const char *http_request_body(const http_request_t *req, size_t *len); /* "" and 0 if none */
/* A header's value by case-insensitive name (the last one if repeated), or NULL. */
const char *http_request_header(const http_request_t *req, const char *name);
/* The peer's address as text ("127.0.0.1"). */
const char *http_request_peer(const http_request_t *req);
/* Monotonic ms when the request head began arriving (for latency metrics). */
uint64_t http_request_start_ms(const http_request_t *req);

/*
 * The value of query parameter name, %-decoded and '+' as space, into out. Returns its length,
 * -1 if absent, -2 if it does not fit or is badly encoded.
 */
int http_query_param(const char *query, const char *name, char *out, size_t out_size);

/*
 * Percent-decode one path segment into out; rejects "%00", '/', "%2F", "." and ".." so an id from
 * a path can never traverse. Returns the length or -1.
 */
int http_path_segment_decode(const char *seg, size_t len, char *out, size_t out_size);

/*
 * Answer req (exactly once) with status, Content-Type and body (copied; len may be 0).
 * extra_headers is NULL or "Name: value\r\n" lines. Adds Content-Length, Date and Connection.
 * Frees req. Returns 0, or -1 if the connection is gone (the response is dropped).
 */
int http_respond(http_request_t *req, int status, const char *content_type, const void *body,
                 size_t len, const char *extra_headers);

/* Answer with the contract's JSON error: {"error":{"code":…,"message":…,"field":…}} (field may
 * be NULL). */
int http_respond_error(http_request_t *req, int status, const char *code, const char *message,
                       const char *field);

/* The reason phrase of a status ("Not Found"). */
const char *http_status_text(int status);

#endif
