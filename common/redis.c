/*
 * redis: URL parsing, the blocking client (pipelines, cached Lua scripts) and the self-healing
 * asynchronous client on libuv that every service shares. Written against hiredis 0.14.1, whose
 * async teardown rules (who frees the context, and when) shape most of the code below.
 */
#include "redis.h"

#include <ctype.h>
#include <limits.h>
#include <openssl/sha.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Async client tuning: first retry within 100 ms, doubling up to 5 s, full jitter. */
#define REDIS__BACKOFF_INITIAL_MS 100
#define REDIS__BACKOFF_CAP_MS 5000
/* hiredis 0.14's async connect has no timeout of its own: a silently dropped SYN would hang the
 * attempt for minutes. This bounds TCP connect plus AUTH/SELECT/PING. */
#define REDIS__CONNECT_TIMEOUT_MS 3000

static void redis__err(char *errstr, size_t size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void redis__err(char *errstr, size_t size, const char *fmt, ...)
{
    if (!errstr || !size)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errstr, size, fmt, ap);
    va_end(ap);
}

/* ---- URL ------------------------------------------------------------------------------------- */

static int redis__hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Digits only, no sign, no spaces: strtol would accept " +3". -1 if not, -2 if above max. */
static long redis__parse_uint(const char *s, size_t n, long max)
{
    if (n == 0)
        return -1;
    long v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        if (v > (max - (s[i] - '0')) / 10)
            return -2;
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

int redis_url_parse(const char *url, redis_url_t *out, char *errstr, size_t errstr_size)
{
    redis_url_t u;
    memset(&u, 0, sizeof(u));
    u.port = 6379;

    if (!url || !*url) {
        redis__err(errstr, errstr_size, "redis url: empty");
        return -1;
    }
    if (!strncasecmp(url, "rediss://", 9)) {
        redis__err(errstr, errstr_size,
                   "redis url: rediss:// (TLS) is not supported by hiredis 0.14");
        return -1;
    }
    if (strncasecmp(url, "redis://", 8)) {
        redis__err(errstr, errstr_size, "redis url: must start with redis://");
        return -1;
    }
    const char *p = url + 8;
    const char *auth_end = p + strcspn(p, "/?#");

    /* userinfo ends at the last '@' of the authority so that a host can never contain one. The
     * password is never echoed in a message: errstr ends up in logs. */
    const char *at = NULL;
    for (const char *q = p; q < auth_end; q++)
        if (*q == '@')
            at = q;
    const char *hp = p;
    if (at) {
        if (*p != ':') {
            redis__err(errstr, errstr_size,
                       "redis url: user names are not supported; write redis://:password@host");
            return -1;
        }
        size_t n = 0;
        for (const char *q = p + 1; q < at; q++) {
            char c = *q;
            if (c == '%') {
                int hi = q + 2 < at ? redis__hexval(q[1]) : -1;
                int lo = hi >= 0 ? redis__hexval(q[2]) : -1;
                if (lo < 0) {
                    redis__err(errstr, errstr_size, "redis url: bad %%-escape in the password");
                    return -1;
                }
                c = (char)(hi * 16 + lo);
                if (!c) {
                    redis__err(errstr, errstr_size, "redis url: the password contains %%00");
                    return -1;
                }
                q += 2;
            }
            if (n + 1 >= sizeof(u.password)) {
                redis__err(errstr, errstr_size, "redis url: password longer than %zu bytes",
                           sizeof(u.password) - 1);
                return -1;
            }
            u.password[n++] = c;
        }
        u.password[n] = '\0';
        hp = at + 1;
    }

    const char *host, *host_end, *port = NULL;
    if (*hp == '[') {
        const char *rb = memchr(hp, ']', (size_t)(auth_end - hp));
        if (!rb) {
            redis__err(errstr, errstr_size, "redis url: '[' without ']' in the host");
            return -1;
        }
        host = hp + 1;
        host_end = rb;
        if (rb + 1 < auth_end) {
            if (rb[1] != ':') {
                redis__err(errstr, errstr_size, "redis url: unexpected text after ']'");
                return -1;
            }
            port = rb + 2;
        }
        for (const char *q = host; q < host_end; q++) {
            if (!isxdigit((unsigned char)*q) && *q != ':' && *q != '.') {
                redis__err(errstr, errstr_size, "redis url: invalid character '%c' in IPv6 host",
                           isprint((unsigned char)*q) ? *q : '?');
                return -1;
            }
        }
    } else {
        const char *colon = memchr(hp, ':', (size_t)(auth_end - hp));
        host = hp;
        host_end = colon ? colon : auth_end;
        if (colon)
            port = colon + 1;
        for (const char *q = host; q < host_end; q++) {
            if (!isalnum((unsigned char)*q) && *q != '-' && *q != '.' && *q != '_') {
                redis__err(errstr, errstr_size, "redis url: invalid character '%c' in host",
                           isprint((unsigned char)*q) ? *q : '?');
                return -1;
            }
        }
    }
    size_t hlen = (size_t)(host_end - host);
    if (!hlen) {
        redis__err(errstr, errstr_size, "redis url: empty host");
        return -1;
    }
    if (hlen >= sizeof(u.host)) {
        redis__err(errstr, errstr_size, "redis url: host longer than %zu characters",
                   sizeof(u.host) - 1);
        return -1;
    }
    memcpy(u.host, host, hlen);
    u.host[hlen] = '\0';

    if (port) {
        int plen = (int)(auth_end - port);
        long v = redis__parse_uint(port, (size_t)plen, 65535);
        if (plen == 0) {
            redis__err(errstr, errstr_size, "redis url: empty port after ':'");
            return -1;
        }
        if (v == -1) {
            redis__err(errstr, errstr_size, "redis url: port '%.*s' is not a number", plen, port);
            return -1;
        }
        if (v < 1) {
            redis__err(errstr, errstr_size, "redis url: port '%.*s' is out of range 1..65535", plen,
                       port);
            return -1;
        }
        u.port = (int)v;
    }

    const char *rest = auth_end;
    if (*rest == '/') {
        rest++;
        int dlen = (int)strcspn(rest, "?#");
        if (dlen > 0) {
            long v = redis__parse_uint(rest, (size_t)dlen, INT_MAX);
            if (v == -1) {
                redis__err(errstr, errstr_size,
                           "redis url: db '%.*s' is not a non-negative integer", dlen, rest);
                return -1;
            }
            if (v == -2) {
                redis__err(errstr, errstr_size, "redis url: db '%.*s' is out of range", dlen, rest);
                return -1;
            }
            u.db = (int)v;
        }
        rest += dlen;
    }
    if (*rest) {
        redis__err(errstr, errstr_size, "redis url: query strings and fragments are not supported");
        return -1;
    }
    *out = u;
    return 0;
}

/* "host:port", "[v6]:port": for messages, never with the password. */
static const char *redis__where(const redis_url_t *u, char *buf, size_t size)
{
    snprintf(buf, size, strchr(u->host, ':') ? "[%s]:%d/%d" : "%s:%d/%d", u->host, u->port, u->db);
    return buf;
}

/* ---- blocking client ------------------------------------------------------------------------- */

/* Send one command and require a non-error reply; the reply is freed here. */
static int redis__blocking_ok(redisContext *c, int argc, const char **argv, const size_t *argvlen,
                              const char *what, const char *where, char *errstr, size_t size)
{
    redisReply *r = redisCommandArgv(c, argc, argv, argvlen);
    if (!r) {
        redis__err(errstr, size, "redis %s: %s failed: %s", where, what,
                   c->errstr[0] ? c->errstr : "no reply");
        return -1;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        redis__err(errstr, size, "redis %s: %s failed: %s", where, what, r->str);
        freeReplyObject(r);
        return -1;
    }
    freeReplyObject(r);
    return 0;
}

redisContext *redis_connect(const char *url, int timeout_ms, char *errstr, size_t errstr_size)
{
    redis_url_t u;
    if (redis_url_parse(url, &u, errstr, errstr_size))
        return NULL;
    char where[300];
    redis__where(&u, where, sizeof(where));

    struct timeval tv = {.tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000};
    redisContext *c =
        timeout_ms > 0 ? redisConnectWithTimeout(u.host, u.port, tv) : redisConnect(u.host, u.port);
    if (!c) {
        redis__err(errstr, errstr_size, "redis %s: out of memory", where);
        return NULL;
    }
    if (c->err) {
        redis__err(errstr, errstr_size, "redis %s: connect failed: %s", where, c->errstr);
        redisFree(c);
        return NULL;
    }
    /* redisConnectWithTimeout bounds only connect(2); without this a stuck server would block
     * jrpctl forever on the first reply. */
    if (timeout_ms > 0 && redisSetTimeout(c, tv) != REDIS_OK) {
        redis__err(errstr, errstr_size, "redis %s: cannot set the timeout: %s", where, c->errstr);
        redisFree(c);
        return NULL;
    }
    if (u.password[0]) {
        const char *argv[] = {"AUTH", u.password};
        if (redis__blocking_ok(c, 2, argv, NULL, "AUTH", where, errstr, errstr_size)) {
            redisFree(c);
            return NULL;
        }
    }
    if (u.db) {
        char db[16];
        snprintf(db, sizeof(db), "%d", u.db);
        const char *argv[] = {"SELECT", db};
        if (redis__blocking_ok(c, 2, argv, NULL, "SELECT", where, errstr, errstr_size)) {
            redisFree(c);
            return NULL;
        }
    }
    /* Without AUTH or SELECT nothing has been asked yet: a server that wants a password (NOAUTH)
     * or is not Redis at all would only show up at the caller's first command. */
    if (!u.password[0] && !u.db) {
        const char *argv[] = {"PING"};
        if (redis__blocking_ok(c, 1, argv, NULL, "PING", where, errstr, errstr_size)) {
            redisFree(c);
            return NULL;
        }
    }
    return c;
}

/* ---- pipelines ------------------------------------------------------------------------------- */

struct redis_pipe_s {
    char *buf; /* the queued commands in RESP, back to back: sent with one write */
    size_t len, cap;
    size_t ncmds;
    redisReply **replies;
    size_t nreplies, replies_cap;
};

redis_pipe_t *redis_pipe_create(void)
{
    return calloc(1, sizeof(redis_pipe_t));
}

static void redis__pipe_drop_replies(redis_pipe_t *p)
{
    for (size_t i = 0; i < p->nreplies; i++)
        freeReplyObject(p->replies[i]);
    p->nreplies = 0;
}

void redis_pipe_destroy(redis_pipe_t *p)
{
    if (!p)
        return;
    redis__pipe_drop_replies(p);
    free(p->replies);
    free(p->buf);
    free(p);
}

void redis_pipe_reset(redis_pipe_t *p)
{
    redis__pipe_drop_replies(p);
    p->len = 0;
    p->ncmds = 0;
}

static int redis__pipe_reserve(redis_pipe_t *p, size_t more)
{
    if (more > SIZE_MAX - p->len)
        return -1;
    if (p->len + more <= p->cap)
        return 0;
    size_t cap = p->cap ? p->cap : 4096;
    while (cap < p->len + more)
        cap = cap > SIZE_MAX / 2 ? p->len + more : cap * 2;
    char *buf = realloc(p->buf, cap);
    if (!buf)
        return -1;
    p->buf = buf;
    p->cap = cap;
    return 0;
}

int redis_pipe_add(redis_pipe_t *p, int argc, const char **argv, const size_t *argvlen)
{
    if (!p || argc <= 0 || !argv)
        return -1;
    /* Sized first so that a failed allocation leaves the pipe as it was. Each header is at most
     * 1 + 20 digits + CRLF; the final +1 is room for the NUL sprintf writes. */
    size_t need = 1 + 20 + 2 + 1;
    for (int i = 0; i < argc; i++) {
        size_t n = argvlen ? argvlen[i] : strlen(argv[i]);
        if (n > SIZE_MAX - need - 64)
            return -1;
        need += 1 + 20 + 2 + n + 2;
    }
    if (redis__pipe_reserve(p, need))
        return -1;
    char *w = p->buf + p->len;
    w += sprintf(w, "*%d\r\n", argc);
    for (int i = 0; i < argc; i++) {
        size_t n = argvlen ? argvlen[i] : strlen(argv[i]);
        w += sprintf(w, "$%zu\r\n", n);
        memcpy(w, argv[i], n);
        w += n;
        *w++ = '\r';
        *w++ = '\n';
    }
    p->len = (size_t)(w - p->buf);
    p->ncmds++;
    return 0;
}

int redis_pipe_addv(redis_pipe_t *p, const char *arg0, ...)
{
    if (!arg0)
        return -1;
    va_list ap;
    int argc = 1;
    va_start(ap, arg0);
    while (va_arg(ap, const char *))
        argc++;
    va_end(ap);

    const char *small[16];
    const char **argv = argc <= 16 ? small : malloc((size_t)argc * sizeof(*argv));
    if (!argv)
        return -1;
    argv[0] = arg0;
    va_start(ap, arg0);
    for (int i = 1; i < argc; i++)
        argv[i] = va_arg(ap, const char *);
    va_end(ap);
    int rc = redis_pipe_add(p, argc, argv, NULL);
    if (argv != small)
        free(argv);
    return rc;
}

size_t redis_pipe_count(const redis_pipe_t *p)
{
    return p ? p->ncmds : 0;
}

/* Queue p's commands on c (not yet written); 0 or -1. */
static int redis__pipe_append(redisContext *c, redis_pipe_t *p, char *errstr, size_t errstr_size)
{
    if (!c || !p) {
        redis__err(errstr, errstr_size, "redis pipe: no context or pipe");
        return -1;
    }
    redis__pipe_drop_replies(p);
    if (c->err) {
        redis__err(errstr, errstr_size, "redis pipe: the connection is unusable: %s", c->errstr);
        return -1;
    }
    if (!p->ncmds)
        return 0;
    if (p->replies_cap < p->ncmds) {
        redisReply **r = realloc(p->replies, p->ncmds * sizeof(*r));
        if (!r) {
            redis__err(errstr, errstr_size, "redis pipe: out of memory");
            return -1;
        }
        p->replies = r;
        p->replies_cap = p->ncmds;
    }
    if (redisAppendFormattedCommand(c, p->buf, p->len) != REDIS_OK) {
        redis__err(errstr, errstr_size, "redis pipe: %s", c->errstr);
        return -1;
    }
    return 0;
}

int redis_pipe_recv(redisContext *c, redis_pipe_t *p, char *errstr, size_t errstr_size)
{
    if (!c || !p) {
        redis__err(errstr, errstr_size, "redis pipe: no context or pipe");
        return -1;
    }
    /* The first redisGetReply writes whatever is still buffered, then each reads one reply. */
    for (size_t i = p->nreplies; i < p->ncmds; i++) {
        void *r = NULL;
        if (redisGetReply(c, &r) != REDIS_OK || !r) {
            redis__err(errstr, errstr_size, "redis pipe: reply %zu of %zu: %s", i + 1, p->ncmds,
                       c->errstr[0] ? c->errstr : "no reply");
            if (r)
                freeReplyObject(r);
            return -1;
        }
        p->replies[p->nreplies++] = r;
    }
    return 0;
}

int redis_pipe_exec(redisContext *c, redis_pipe_t *p, char *errstr, size_t errstr_size)
{
    if (redis__pipe_append(c, p, errstr, errstr_size))
        return -1;
    return redis_pipe_recv(c, p, errstr, errstr_size);
}

int redis_pipe_send(redisContext *c, redis_pipe_t *p, char *errstr, size_t errstr_size)
{
    if (redis__pipe_append(c, p, errstr, errstr_size))
        return -1;
    int done = 0;
    while (!done) {
        if (redisBufferWrite(c, &done) != REDIS_OK) {
            redis__err(errstr, errstr_size, "redis pipe: %s", c->errstr);
            return -1;
        }
    }
    return 0;
}

const redisReply *redis_pipe_reply(const redis_pipe_t *p, size_t i)
{
    return p && i < p->nreplies ? p->replies[i] : NULL;
}

/* ---- scripts --------------------------------------------------------------------------------- */

struct redis_script_s {
    char *lua;
    size_t len;
    char sha[41];
};

redis_script_t *redis_script_create(const char *lua)
{
    if (!lua)
        return NULL;
    redis_script_t *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->len = strlen(lua);
    s->lua = malloc(s->len + 1);
    if (!s->lua) {
        free(s);
        return NULL;
    }
    memcpy(s->lua, lua, s->len + 1);
    unsigned char md[SHA_DIGEST_LENGTH];
    SHA1((const unsigned char *)s->lua, s->len, md);
    for (int i = 0; i < SHA_DIGEST_LENGTH; i++)
        sprintf(s->sha + 2 * i, "%02x", md[i]);
    return s;
}

void redis_script_destroy(redis_script_t *s)
{
    if (!s)
        return;
    free(s->lua);
    free(s);
}

const char *redis_script_sha(const redis_script_t *s)
{
    return s->sha;
}

redisReply *redis_script_call(redisContext *c, redis_script_t *s, int nkeys, int argc,
                              const char **argv, const size_t *argvlen, char *errstr,
                              size_t errstr_size)
{
    if (!c || !s || argc < 0 || nkeys < 0 || nkeys > argc || (argc && !argv)) {
        redis__err(errstr, errstr_size, "redis script: bad arguments (nkeys %d, argc %d)", nkeys,
                   argc);
        return NULL;
    }
    const char **av = malloc((size_t)(argc + 3) * sizeof(*av));
    size_t *al = malloc((size_t)(argc + 3) * sizeof(*al));
    if (!av || !al) {
        free(av);
        free(al);
        redis__err(errstr, errstr_size, "redis script: out of memory");
        return NULL;
    }
    char nk[16];
    snprintf(nk, sizeof(nk), "%d", nkeys);
    av[0] = "EVALSHA";
    al[0] = 7;
    av[1] = s->sha;
    al[1] = 40;
    av[2] = nk;
    al[2] = strlen(nk);
    for (int i = 0; i < argc; i++) {
        av[i + 3] = argv[i];
        al[i + 3] = argvlen ? argvlen[i] : strlen(argv[i]);
    }
    redisReply *r = redisCommandArgv(c, argc + 3, av, al);
    /* NOSCRIPT: this server has not seen the script (restart, FLUSHALL, SCRIPT FLUSH). EVAL both
     * runs and caches it, so the next EVALSHA succeeds. */
    if (r && r->type == REDIS_REPLY_ERROR && !strncmp(r->str, "NOSCRIPT", 8)) {
        freeReplyObject(r);
        av[0] = "EVAL";
        al[0] = 4;
        av[1] = s->lua;
        al[1] = s->len;
        r = redisCommandArgv(c, argc + 3, av, al);
    }
    if (!r)
        redis__err(errstr, errstr_size, "redis script %.12s: %s", s->sha,
                   c->errstr[0] ? c->errstr : "no reply");
    free(av);
    free(al);
    return r;
}

/* ---- libuv adapter --------------------------------------------------------------------------- */

/*
 * Our own copy of hiredis's adapters/libuv.h, fixed and made cheaper.
 *
 * Fixed: when poll(2) reports POLLERR (a refused connect, a reset connection) libuv stops the
 * handle and calls back with status UV_EBADF and no events; the 0.14 adapter returns on any
 * status, so hiredis never learns of the failure and the connection hangs for ever. Here an
 * error status is handed to hiredis as the events we were waiting for: its read or write then
 * meets the socket error and tears the context down.
 *
 * Cheaper: hiredis asks to write after every command. The stock adapter then waits for the
 * socket to be reported writable, one loop iteration later, arming and disarming EPOLLOUT each
 * time (two epoll_ctl calls per iteration under load). On a connected context we write instead
 * at the end of the current loop phase: a check handle writes what the iteration's I/O callbacks
 * asked for, a prepare handle what timers and the like asked for before the loop would block in
 * poll. Every command issued meanwhile goes out in one write, at once; only a write the socket
 * cannot take whole waits for writability.
 */
typedef struct redis__uv_s {
    redisAsyncContext *ac; /* NULL once hiredis called cleanup */
    uv_poll_t poll;
    uv_check_t flush;       /* after the iteration's I/O callbacks */
    uv_prepare_t flush_pre; /* before the loop blocks in poll */
    int events;             /* what the poll handle waits for */
    int want_flush;         /* hiredis has output for the end of this iteration */
    int in_flush; /* inside the flush: a write that did not finish waits for writability */
    int open;     /* handles not yet closed */
} redis__uv_t;

static void redis__uv_on_poll(uv_poll_t *h, int status, int events)
{
    redis__uv_t *ev = h->data;
    if (status < 0)
        events = ev->events;
    if (ev->ac && (events & UV_READABLE))
        redisAsyncHandleRead(ev->ac);
    /* The read may have freed the context: cleanup cleared ev->ac, ev lives until close. */
    if (ev->ac && (events & UV_WRITABLE))
        redisAsyncHandleWrite(ev->ac);
}

static void redis__uv_update(redis__uv_t *ev)
{
    if (ev->events)
        uv_poll_start(&ev->poll, ev->events, redis__uv_on_poll);
    else
        uv_poll_stop(&ev->poll);
}

static void redis__uv_flush(redis__uv_t *ev)
{
    uv_check_stop(&ev->flush);
    uv_prepare_stop(&ev->flush_pre);
    if (!ev->ac || !ev->want_flush)
        return;
    ev->in_flush = 1;
    redisAsyncHandleWrite(ev->ac); /* calls del_write when all is written, else add_write */
    ev->in_flush = 0;              /* ev outlives a context freed meanwhile (closed later) */
}

static void redis__uv_on_check(uv_check_t *h)
{
    redis__uv_flush(h->data);
}

static void redis__uv_on_prepare(uv_prepare_t *h)
{
    redis__uv_flush(h->data);
}

static void redis__uv_add_read(void *d)
{
    redis__uv_t *ev = d;
    ev->events |= UV_READABLE;
    redis__uv_update(ev);
}

static void redis__uv_del_read(void *d)
{
    redis__uv_t *ev = d;
    ev->events &= ~UV_READABLE;
    redis__uv_update(ev);
}

static void redis__uv_add_write(void *d)
{
    redis__uv_t *ev = d;
    /* Connecting (writability says the connect finished), or a write left unfinished: wait for
     * the socket. Otherwise write at the end of this iteration. */
    if (ev->in_flush || !(ev->ac->c.flags & REDIS_CONNECTED) || (ev->events & UV_WRITABLE)) {
        ev->want_flush = 0;
        if (!(ev->events & UV_WRITABLE)) {
            ev->events |= UV_WRITABLE;
            redis__uv_update(ev);
        }
        return;
    }
    if (!ev->want_flush) {
        ev->want_flush = 1;
        uv_check_start(&ev->flush, redis__uv_on_check);
        uv_prepare_start(&ev->flush_pre, redis__uv_on_prepare);
    }
}

static void redis__uv_del_write(void *d)
{
    redis__uv_t *ev = d;
    ev->want_flush = 0;
    if (ev->events & UV_WRITABLE) {
        ev->events &= ~UV_WRITABLE;
        redis__uv_update(ev);
    }
}

static void redis__uv_on_close(uv_handle_t *h)
{
    redis__uv_t *ev = h->data;
    if (--ev->open == 0)
        free(ev);
}

/* Called by hiredis just before it closes the socket and frees the context. */
static void redis__uv_cleanup(void *d)
{
    redis__uv_t *ev = d;
    ev->ac = NULL;
    ev->want_flush = 0;
    uv_close((uv_handle_t *)&ev->poll, redis__uv_on_close);
    uv_close((uv_handle_t *)&ev->flush, redis__uv_on_close);
    uv_close((uv_handle_t *)&ev->flush_pre, redis__uv_on_close);
}

static int redis__uv_attach(redisAsyncContext *ac, uv_loop_t *loop)
{
    if (ac->ev.data)
        return -1;
    redis__uv_t *ev = calloc(1, sizeof(*ev));
    if (!ev)
        return -1;
    if (uv_poll_init(loop, &ev->poll, ac->c.fd) != 0) {
        free(ev); /* not registered with the loop on failure, so no close needed */
        return -1;
    }
    uv_check_init(loop, &ev->flush); /* these two cannot fail */
    uv_prepare_init(loop, &ev->flush_pre);
    ev->open = 3;
    ev->ac = ac;
    ev->poll.data = ev;
    ev->flush.data = ev;
    ev->flush_pre.data = ev;
    ac->ev.data = ev;
    ac->ev.addRead = redis__uv_add_read;
    ac->ev.delRead = redis__uv_del_read;
    ac->ev.addWrite = redis__uv_add_write;
    ac->ev.delWrite = redis__uv_del_write;
    ac->ev.cleanup = redis__uv_cleanup;
    return 0;
}

/* ---- asynchronous client --------------------------------------------------------------------- */

/*
 * Ownership, hiredis 0.14 style: hiredis frees a redisAsyncContext itself after a failed connect
 * (onConnect(ERR)), after an I/O error or EOF (onDisconnect(ERR)), and in redisAsyncFree. ra->ac
 * is cleared *before* any of those can run our code again, and every callback compares the
 * context it is given with ra->ac, so a context being torn down is never touched twice. Calling
 * redisAsyncFree from onConnect/onDisconnect would be a double free (hiredis does not mark those
 * as "in callback"); the user's on_state(0) runs from onDisconnect, but by then ra->ac is NULL so
 * a redis_async_destroy there frees nothing of hiredis's. Inside reply callbacks redisAsyncFree is
 * safe: hiredis defers it until the callback returns.
 *
 * ra itself is freed only in the close callback of its timer: by then no hiredis callback can
 * still be running (hiredis frees synchronously, at the latest when the current callback returns).
 */
enum { REDIS__WAITING, REDIS__CONNECTING, REDIS__CONNECTED };

struct redis_async_s {
    uv_loop_t *loop;
    redis_url_t url;
    redis_async_state_cb *on_state;
    void *arg;
    redisAsyncContext *ac; /* the live context, or NULL */
    uv_timer_t timer;      /* backoff while waiting, connect timeout while connecting */
    int state;
    int handshake_left; /* AUTH/SELECT/PING replies still due before CONNECTED */
    unsigned failures;  /* consecutive, for the backoff */
    uint64_t rng;
    int destroying;
};

typedef struct redis__acmd_s {
    redis_async_t *ra;
    redis_async_reply_cb *cb;
    void *arg;
} redis__acmd_t;

static void redis__async_connect(redis_async_t *ra);
static void redis__async_schedule(redis_async_t *ra);

static uint64_t redis__rand(redis_async_t *ra)
{
    /* xorshift64*: jitter needs spread, not secrecy. */
    ra->rng ^= ra->rng >> 12;
    ra->rng ^= ra->rng << 25;
    ra->rng ^= ra->rng >> 27;
    return ra->rng * 2685821657736338717ULL;
}

static void redis__async_on_timer(uv_timer_t *t)
{
    redis_async_t *ra = t->data;
    if (ra->destroying)
        return;
    if (ra->state == REDIS__WAITING) {
        redis__async_connect(ra);
    } else if (ra->state == REDIS__CONNECTING) {
        /* Connect or handshake took too long. Not in a hiredis callback: freed at once, and the
         * handshake callbacks it runs with NULL see ra->ac != their context and do nothing. */
        redisAsyncContext *ac = ra->ac;
        ra->ac = NULL;
        ra->state = REDIS__WAITING;
        if (ac)
            redisAsyncFree(ac);
        redis__async_schedule(ra);
    }
}

/* Full jitter: uniform in [0, min(cap, initial * 2^failures)], so that many clients that lost the
 * same server do not come back in lockstep. */
static void redis__async_schedule(redis_async_t *ra)
{
    ra->state = REDIS__WAITING;
    uint64_t ceiling = REDIS__BACKOFF_INITIAL_MS;
    for (unsigned i = 0; i < ra->failures && ceiling < REDIS__BACKOFF_CAP_MS; i++)
        ceiling *= 2;
    if (ceiling > REDIS__BACKOFF_CAP_MS)
        ceiling = REDIS__BACKOFF_CAP_MS;
    ra->failures++;
    uv_timer_start(&ra->timer, redis__async_on_timer, redis__rand(ra) % (ceiling + 1), 0);
}

static void redis__async_on_connect(const redisAsyncContext *ac, int status)
{
    redis_async_t *ra = ac->data;
    if (ra->destroying || ac != ra->ac)
        return;
    /* On success the queued handshake is being written; CONNECTED comes with the PING reply. On
     * failure hiredis frees ac as soon as we return. */
    if (status != REDIS_OK) {
        ra->ac = NULL;
        redis__async_schedule(ra);
    }
}

static void redis__async_on_disconnect(const redisAsyncContext *ac, int status)
{
    (void)status;
    redis_async_t *ra = ac->data;
    if (ra->destroying || ac != ra->ac)
        return;
    int was_connected = ra->state == REDIS__CONNECTED;
    ra->ac = NULL;
    if (was_connected)
        ra->failures = 0; /* a healthy connection dropped: retry quickly */
    redis__async_schedule(ra);
    /* Last, and nothing of ra is used afterwards: on_state may destroy ra. */
    if (was_connected && ra->on_state)
        ra->on_state(ra, 0, ra->arg);
}

static void redis__async_on_handshake(redisAsyncContext *ac, void *r, void *privdata)
{
    redis_async_t *ra = privdata;
    redisReply *reply = r;
    if (ra->destroying || ac != ra->ac)
        return; /* NULL replies of a context being torn down */
    if (!reply || reply->type == REDIS_REPLY_ERROR) {
        /* Wrong password, bad db, server refusing clients: drop and retry with backoff. We are in
         * a reply callback, so hiredis defers the free until we return. */
        ra->ac = NULL;
        redisAsyncFree(ac);
        redis__async_schedule(ra);
        return;
    }
    if (--ra->handshake_left > 0)
        return;
    ra->state = REDIS__CONNECTED;
    ra->failures = 0;
    uv_timer_stop(&ra->timer);
    if (ra->on_state)
        ra->on_state(ra, 1, ra->arg);
}

static void redis__async_connect(redis_async_t *ra)
{
    redisAsyncContext *ac = redisAsyncConnect(ra->url.host, ra->url.port);
    if (!ac) {
        redis__async_schedule(ra);
        return;
    }
    if (ac->err || redis__uv_attach(ac, ra->loop)) {
        redisAsyncFree(ac); /* no callbacks set and nothing queued: plain free */
        redis__async_schedule(ra);
        return;
    }
    ac->data = ra;
    ra->ac = ac;
    ra->state = REDIS__CONNECTING;
    redisAsyncSetDisconnectCallback(ac, redis__async_on_disconnect);
    /* Also arms the write watcher that detects connect completion, so only after attach. */
    redisAsyncSetConnectCallback(ac, redis__async_on_connect);

    /* Queued now, written on connect. PING proves the server answers even without AUTH/SELECT,
     * and makes on_state(1) always run from a reply callback, where destroying is safe. */
    char db[16];
    snprintf(db, sizeof(db), "%d", ra->url.db);
    const char *auth[] = {"AUTH", ra->url.password};
    const char *select[] = {"SELECT", db};
    const char *ping[] = {"PING"};
    int rc = REDIS_OK;
    ra->handshake_left = 0;
    if (ra->url.password[0] && rc == REDIS_OK) {
        rc = redisAsyncCommandArgv(ac, redis__async_on_handshake, ra, 2, auth, NULL);
        ra->handshake_left++;
    }
    if (ra->url.db && rc == REDIS_OK) {
        rc = redisAsyncCommandArgv(ac, redis__async_on_handshake, ra, 2, select, NULL);
        ra->handshake_left++;
    }
    if (rc == REDIS_OK) {
        rc = redisAsyncCommandArgv(ac, redis__async_on_handshake, ra, 1, ping, NULL);
        ra->handshake_left++;
    }
    if (rc != REDIS_OK) {
        ra->ac = NULL;
        redisAsyncFree(ac);
        redis__async_schedule(ra);
        return;
    }
    uv_timer_start(&ra->timer, redis__async_on_timer, REDIS__CONNECT_TIMEOUT_MS, 0);
}

redis_async_t *redis_async_create(uv_loop_t *loop, const char *url, redis_async_state_cb *on_state,
                                  void *arg, char *errstr, size_t errstr_size)
{
    redis_url_t u;
    if (!loop) {
        redis__err(errstr, errstr_size, "redis async: no loop");
        return NULL;
    }
    if (redis_url_parse(url, &u, errstr, errstr_size))
        return NULL;
    redis_async_t *ra = calloc(1, sizeof(*ra));
    if (!ra) {
        redis__err(errstr, errstr_size, "redis async: out of memory");
        return NULL;
    }
    ra->loop = loop;
    ra->url = u;
    ra->on_state = on_state;
    ra->arg = arg;
    ra->rng = uv_hrtime() ^ (uint64_t)(uintptr_t)ra;
    if (!ra->rng)
        ra->rng = 0x9e3779b97f4a7c15ULL;
    int rc = uv_timer_init(loop, &ra->timer);
    if (rc) {
        redis__err(errstr, errstr_size, "redis async: uv_timer_init: %s", uv_strerror(rc));
        free(ra);
        return NULL;
    }
    ra->timer.data = ra;
    redis__async_connect(ra);
    return ra;
}

int redis_async_is_connected(const redis_async_t *ra)
{
    return ra && !ra->destroying && ra->state == REDIS__CONNECTED;
}

static void redis__async_on_reply(redisAsyncContext *ac, void *r, void *privdata)
{
    (void)ac;
    redis__acmd_t cmd = *(redis__acmd_t *)privdata;
    free(privdata);
    cmd.cb(cmd.ra, r, cmd.arg);
}

int redis_async_command(redis_async_t *ra, redis_async_reply_cb *cb, void *arg, int argc,
                        const char **argv, const size_t *argvlen)
{
    redis__acmd_t *cmd = NULL;
    if (!redis_async_is_connected(ra) || !ra->ac || argc <= 0 || !argv)
        goto fail;
    if (cb) {
        cmd = malloc(sizeof(*cmd));
        if (!cmd)
            goto fail;
        cmd->ra = ra;
        cmd->cb = cb;
        cmd->arg = arg;
    }
    /* Refused by hiredis when the context is already going away (an error was met and pending
     * callbacks are being failed, or it is being freed). */
    if (redisAsyncCommandArgv(ra->ac, cb ? redis__async_on_reply : NULL, cmd, argc, argv,
                              argvlen) != REDIS_OK)
        goto fail;
    return 0;
fail:
    free(cmd);
    /* "Fails at once": the callback still runs exactly once, so callers can release arg there. */
    if (cb)
        cb(ra, NULL, arg);
    return -1;
}

typedef struct redis__sub_s {
    redis_async_t *ra;
    redis_async_message_cb *cb;
    void *arg;
} redis__sub_t;

/* hiredis calls a subscription's callback for the SUBSCRIBE confirmation, for every message, and
 * once with NULL when the connection goes: only then may its data be freed. */
static void redis__async_on_message(redisAsyncContext *ac, void *r, void *privdata)
{
    redis__sub_t *sub = privdata;
    redisReply *reply = r;
    (void)ac;
    if (!reply) {
        free(sub);
        return;
    }
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 3 ||
        reply->element[0]->type != REDIS_REPLY_STRING ||
        strcmp(reply->element[0]->str, "message") ||
        reply->element[1]->type != REDIS_REPLY_STRING ||
        reply->element[2]->type != REDIS_REPLY_STRING)
        return;
    sub->cb(sub->ra, reply->element[1]->str, reply->element[2]->str, reply->element[2]->len,
            sub->arg);
}

int redis_async_subscribe(redis_async_t *ra, const char *channel, redis_async_message_cb *cb,
                          void *arg)
{
    if (!redis_async_is_connected(ra) || !ra->ac || !channel || !cb)
        return -1;
    redis__sub_t *sub = malloc(sizeof(*sub));
    if (!sub)
        return -1;
    sub->ra = ra;
    sub->cb = cb;
    sub->arg = arg;
    const char *argv[] = {"SUBSCRIBE", channel};
    size_t argvlen[] = {9, strlen(channel)};
    if (redisAsyncCommandArgv(ra->ac, redis__async_on_message, sub, 2, argv, argvlen) != REDIS_OK) {
        free(sub);
        return -1;
    }
    return 0;
}

static void redis__async_on_close(uv_handle_t *h)
{
    free(h->data);
}

void redis_async_destroy(redis_async_t *ra)
{
    if (!ra || ra->destroying)
        return;
    ra->destroying = 1;
    redisAsyncContext *ac = ra->ac;
    ra->ac = NULL;
    /* Pending callbacks run with NULL now, or (inside a reply callback) once it returns; either
     * way before the timer's close callback frees ra. */
    if (ac)
        redisAsyncFree(ac);
    uv_close((uv_handle_t *)&ra->timer, redis__async_on_close);
}
