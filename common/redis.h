/*
 * redis: the Redis plumbing every service shares, on hiredis 0.14.1. URL parsing
 * (redis://[:password@]host:port/db), a blocking client with pipelining and cached Lua scripts
 * (jrpctl, rebuild, tests), and an asynchronous client on the process's libuv loop that
 * reconnects by itself with capped exponential backoff.
 */
#ifndef JRP_REDIS_H
#define JRP_REDIS_H

#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <stddef.h>
#include <uv.h>

typedef struct redis_url_s {
    char host[256];
    int port;           /* default 6379 */
    char password[256]; /* "" = none */
    int db;             /* default 0 */
} redis_url_t;

/* Parse url into out; 0, or -1 with a reason in errstr. */
int redis_url_parse(const char *url, redis_url_t *out, char *errstr, size_t errstr_size);

/*
 * Blocking client: connect, AUTH when a password is given, SELECT db. Returns a context the
 * caller frees with redisFree(), or NULL with a reason in errstr.
 */
redisContext *redis_connect(const char *url, int timeout_ms, char *errstr, size_t errstr_size);

/*
 * A pipeline: commands are queued with redis_pipe_add (arguments copied) and sent together by
 * redis_pipe_exec, which reads every reply. Replies stay owned by the pipe until it is reset or
 * destroyed. A REDIS_REPLY_ERROR reply is a reply, not a failure of exec.
 */
typedef struct redis_pipe_s redis_pipe_t;
redis_pipe_t *redis_pipe_create(void);
void redis_pipe_destroy(redis_pipe_t *p); /* accepts NULL */
void redis_pipe_reset(redis_pipe_t *p);   /* drop commands and replies, keep the buffers */
int redis_pipe_add(redis_pipe_t *p, int argc, const char **argv, const size_t *argvlen);
/* Convenience: argv of NUL-terminated strings, terminated by NULL. */
int redis_pipe_addv(redis_pipe_t *p, const char *arg0, ...) __attribute__((sentinel));
size_t redis_pipe_count(const redis_pipe_t *p);
/* 0, or -1 on a connection/protocol error (reason in errstr; the context is then unusable). */
int redis_pipe_exec(redisContext *c, redis_pipe_t *p, char *errstr, size_t errstr_size);
/*
 * exec in two halves, for a caller with other work to do while Redis runs the commands:
 * redis_pipe_send writes every queued command and returns without waiting; redis_pipe_recv
 * later reads their replies into the pipe. Nothing else may use c in between (the replies
 * come back in order on c). Both 0 or -1 as exec.
 */
int redis_pipe_send(redisContext *c, redis_pipe_t *p, char *errstr, size_t errstr_size);
int redis_pipe_recv(redisContext *c, redis_pipe_t *p, char *errstr, size_t errstr_size);
const redisReply *redis_pipe_reply(const redis_pipe_t *p, size_t i);

/*
 * A Lua script known by its SHA1: EVALSHA, falling back to EVAL (which also loads it) on
 * NOSCRIPT, so a Redis that lost its script cache (restart, FLUSHALL, SCRIPT FLUSH) keeps
 * working. The script text is copied.
 */
typedef struct redis_script_s redis_script_t;
redis_script_t *redis_script_create(const char *lua);
void redis_script_destroy(redis_script_t *s);
const char *redis_script_sha(const redis_script_t *s); /* 40 hex chars */
/* Blocking call; returns the reply (caller frees with freeReplyObject) or NULL (errstr). */
redisReply *redis_script_call(redisContext *c, redis_script_t *s, int nkeys, int argc,
                              const char **argv, const size_t *argvlen, char *errstr,
                              size_t errstr_size);

/*
 * Asynchronous client on a libuv loop. Commands issued while disconnected fail at once (their
 * callback gets reply == NULL); the client reconnects by itself with capped exponential backoff
 * and full jitter (100 ms .. 5 s) and calls on_state(connected, arg) on every change.
 */
typedef struct redis_async_s redis_async_t;
typedef void redis_async_reply_cb(redis_async_t *ra, redisReply *reply, void *arg);
typedef void redis_async_state_cb(redis_async_t *ra, int connected, void *arg);

redis_async_t *redis_async_create(uv_loop_t *loop, const char *url, redis_async_state_cb *on_state,
                                  void *arg, char *errstr, size_t errstr_size);
int redis_async_is_connected(const redis_async_t *ra);
/* Queue a command; cb may be NULL. The reply is valid only inside cb. 0 or -1 (not connected). */
int redis_async_command(redis_async_t *ra, redis_async_reply_cb *cb, void *arg, int argc,
                        const char **argv, const size_t *argvlen);
/*
 * Subscribe to channel; cb runs for every message published on it, as long as the connection
 * lasts. After a reconnect the caller subscribes again (its on_state callback is the place).
 * 0 or -1 (not connected).
 */
typedef void redis_async_message_cb(redis_async_t *ra, const char *channel, const char *message,
                                    size_t len, void *arg);
int redis_async_subscribe(redis_async_t *ra, const char *channel, redis_async_message_cb *cb,
                          void *arg);

/* Disconnect (pending callbacks get reply == NULL) and free once hiredis and libuv let go. */
void redis_async_destroy(redis_async_t *ra);

#endif
