/*
 * test_redis_url: the Redis plumbing that needs no server. URL parsing (good and bad URLs, each
 * bad one with a message that says what is wrong), pipe bookkeeping, and the exact bytes a pipe
 * and a script call put on the wire, checked against canned replies over a socketpair.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "redis.h"

/* ---- URLs ----------------------------------------------------------------------------------- */

static void test_url_good(void **state)
{
    (void)state;
    static const struct {
        const char *url, *host, *password;
        int port, db;
    } cases[] = {
        {"redis://localhost", "localhost", "", 6379, 0},
        {"redis://localhost/", "localhost", "", 6379, 0},
        {"redis://127.0.0.1:16479/3", "127.0.0.1", "", 16479, 3},
        {"redis://:s3cret@redis.example.org:6380/2", "redis.example.org", "s3cret", 6380, 2},
        {"redis://:s3cret@cache_1", "cache_1", "s3cret", 6379, 0},
        {"redis://:@host:1/0", "host", "", 1, 0},
        {"redis://:p%40ss%2Fw%3a@h:65535/15", "h", "p@ss/w:", 65535, 15},
        {"redis://:a:b@h", "h", "a:b", 6379, 0},
        {"redis://[::1]:7000/1", "::1", "", 7000, 1},
        {"redis://[::1]", "::1", "", 6379, 0},
        {"REDIS://Host-A.example", "Host-A.example", "", 6379, 0},
        {"redis://h/2147483647", "h", "", 6379, 2147483647},
        {"redis://h:00080/007", "h", "", 80, 7},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        redis_url_t u;
        char err[256] = "";
        memset(&u, 0x5a, sizeof(u));
        int rc = redis_url_parse(cases[i].url, &u, err, sizeof(err));
        if (rc != 0)
            fail_msg("%s: unexpected error: %s", cases[i].url, err);
        assert_string_equal(u.host, cases[i].host);
        assert_string_equal(u.password, cases[i].password);
        assert_int_equal(u.port, cases[i].port);
        assert_int_equal(u.db, cases[i].db);
    }
}

static void test_url_bad(void **state)
{
    (void)state;
    static const struct {
        const char *url, *why;
    } cases[] = {
        {"", "empty"},
        {"http://localhost", "must start with redis://"},
        {"localhost:6379", "must start with redis://"},
        {"rediss://localhost", "TLS"},
        {"redis://host:abc", "port 'abc' is not a number"},
        {"redis://host:-1", "port '-1' is not a number"},
        {"redis://host:0", "port '0' is out of range"},
        {"redis://host:70000", "port '70000' is out of range"},
        {"redis://host:99999999999999999999", "is out of range"},
        {"redis://host:", "empty port"},
        {"redis://host:6379x/0", "is not a number"},
        {"redis://host/abc", "db 'abc' is not a non-negative integer"},
        {"redis://host/-1", "db '-1' is not a non-negative integer"},
        {"redis://host/1/2", "db '1/2' is not"},
        {"redis://host/ 1", "not a non-negative integer"},
        {"redis://host/2147483648", "db '2147483648' is out of range"},
        {"redis://", "empty host"},
        {"redis:///0", "empty host"},
        {"redis://:6379/0", "empty host"},
        {"redis://:pw@:6379/0", "empty host"},
        {"redis://:pw@/0", "empty host"},
        {"redis://user:pw@host", "user names are not supported"},
        {"redis://pw@host", "user names are not supported"},
        {"redis://:p%zzw@host", "bad %-escape"},
        {"redis://:pw%4@host", "bad %-escape"},
        {"redis://:pw%00@host", "%00"},
        {"redis://ho st", "invalid character ' ' in host"},
        {"redis://host?timeout=1", "query strings"},
        {"redis://host/0?x", "query strings"},
        {"redis://host#frag", "query strings"},
        {"redis://[::1", "without ']'"},
        {"redis://[::1]x", "after ']'"},
        {"redis://[zz::1]", "invalid character 'z' in IPv6 host"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        redis_url_t u = {.port = 1234};
        char err[256] = "";
        int rc = redis_url_parse(cases[i].url, &u, err, sizeof(err));
        if (rc != -1)
            fail_msg("%s: accepted", cases[i].url);
        if (!strstr(err, cases[i].why))
            fail_msg("%s: errstr \"%s\" does not say \"%s\"", cases[i].url, err, cases[i].why);
        assert_non_null(strstr(err, "redis url: "));
        assert_int_equal(u.port, 1234); /* out is left alone on failure */
    }
    char err[64];
    assert_int_equal(redis_url_parse(NULL, NULL, err, sizeof(err)), -1);
    assert_string_equal(err, "redis url: empty");
}

static void test_url_lengths(void **state)
{
    (void)state;
    char url[700], err[256];
    redis_url_t u;
    char host[300], pw[300];

    memset(host, 'h', 255);
    host[255] = '\0';
    snprintf(url, sizeof(url), "redis://%s:1/0", host);
    assert_int_equal(redis_url_parse(url, &u, err, sizeof(err)), 0);
    assert_string_equal(u.host, host);
    memset(host, 'h', 256);
    host[256] = '\0';
    snprintf(url, sizeof(url), "redis://%s:1/0", host);
    assert_int_equal(redis_url_parse(url, &u, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "host longer than 255 characters"));

    memset(pw, 'p', 255);
    pw[255] = '\0';
    snprintf(url, sizeof(url), "redis://:%s@h", pw);
    assert_int_equal(redis_url_parse(url, &u, err, sizeof(err)), 0);
    assert_string_equal(u.password, pw);
    /* 255 bytes once decoded: escapes count as one byte. */
    snprintf(url, sizeof(url), "redis://:%%41%s@h", pw + 1);
    assert_int_equal(redis_url_parse(url, &u, err, sizeof(err)), 0);
    assert_int_equal(u.password[0], 'A');
    assert_int_equal(strlen(u.password), 255);
    memset(pw, 'p', 256);
    pw[256] = '\0';
    snprintf(url, sizeof(url), "redis://:%s@h", pw);
    assert_int_equal(redis_url_parse(url, &u, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "password longer than 255 bytes"));
    assert_null(strstr(err, "ppp")); /* never echoes the password */
}

static void test_url_errstr_handling(void **state)
{
    (void)state;
    redis_url_t u;
    char tiny[8];
    memset(tiny, 'x', sizeof(tiny));
    assert_int_equal(redis_url_parse("redis://host:0", &u, tiny, sizeof(tiny)), -1);
    assert_int_equal(strlen(tiny), 7); /* truncated, terminated */
    assert_int_equal(redis_url_parse("redis://host:0", &u, NULL, 0), -1);
    char err[128];
    assert_int_equal(redis_url_parse("redis://:topsecret@host/x", &u, err, sizeof(err)), -1);
    assert_null(strstr(err, "topsecret"));
}

/* ---- pipes without a server -------------------------------------------------------------------
 */

static void test_pipe_bookkeeping(void **state)
{
    (void)state;
    redis_pipe_destroy(NULL);
    redis_pipe_t *p = redis_pipe_create();
    assert_non_null(p);
    assert_int_equal(redis_pipe_count(p), 0);
    assert_null(redis_pipe_reply(p, 0));

    assert_int_equal(redis_pipe_addv(p, "PING", NULL), 0);
    assert_int_equal(redis_pipe_addv(p, "SET", "k", "v", NULL), 0);
    const char *argv[] = {"SET", "bin\0key", ""};
    const size_t argvlen[] = {3, 7, 0};
    assert_int_equal(redis_pipe_add(p, 3, argv, argvlen), 0);
    assert_int_equal(redis_pipe_count(p), 3);
    assert_int_equal(redis_pipe_add(p, 0, argv, argvlen), -1);
    assert_int_equal(redis_pipe_add(p, 1, NULL, NULL), -1);
    assert_int_equal(redis_pipe_count(p), 3);
    assert_null(redis_pipe_reply(p, 0));

    redis_pipe_reset(p);
    assert_int_equal(redis_pipe_count(p), 0);
    for (int i = 0; i < 500; i++) /* grows past the first buffer */
        assert_int_equal(redis_pipe_addv(p, "SET", "some-longer-key-name", "a-value", "EX", "60",
                                         "NX", "GET", "X", "Y", "Z", "W", "V", "U", "T", "S", "R",
                                         "Q", NULL),
                         0);
    assert_int_equal(redis_pipe_count(p), 500);
    redis_pipe_reset(p);
    redis_pipe_reset(p);
    assert_int_equal(redis_pipe_count(p), 0);
    redis_pipe_destroy(p);
}

/*
 * A scripted fake server on the other end of a socketpair, in a thread: each step reads exactly
 * the request bytes it expects, then writes its canned reply. Replies must not be written in
 * advance: a blocking hiredis context returns an already buffered reply without sending the
 * command at all, which would hide what the client really puts on the wire.
 */
typedef struct step_s {
    const char *expect;
    size_t expect_len;
    const char *reply;
    int eof_after; /* shut down the write side after replying */
} step_t;

typedef struct wire_s {
    int peer;
    redisContext *c;
    const step_t *steps;
    size_t nsteps;
    pthread_t th;
    char why[512]; /* "" when every step went as scripted */
} wire_t;

static int wire_read_exact(int fd, char *buf, size_t n)
{
    size_t got = 0;
    while (got < n) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (poll(&pfd, 1, 5000) != 1) /* bounded: a silent client fails the test, not hangs */
            return -1;
        ssize_t r = read(fd, buf + got, n - got);
        if (r <= 0)
            return -1;
        got += (size_t)r;
    }
    return 0;
}

static void *wire_main(void *arg)
{
    wire_t *w = arg;
    char buf[4096];
    for (size_t i = 0; i < w->nsteps; i++) {
        const step_t *st = &w->steps[i];
        if (st->expect_len > sizeof(buf) || wire_read_exact(w->peer, buf, st->expect_len)) {
            snprintf(w->why, sizeof(w->why), "step %zu: request not received", i);
            break;
        }
        if (memcmp(buf, st->expect, st->expect_len)) {
            snprintf(w->why, sizeof(w->why), "step %zu: got \"%.*s\"", i, (int)st->expect_len, buf);
            break;
        }
        size_t n = strlen(st->reply);
        if (write(w->peer, st->reply, n) != (ssize_t)n) {
            snprintf(w->why, sizeof(w->why), "step %zu: write: %s", i, strerror(errno));
            break;
        }
        if (st->eof_after)
            shutdown(w->peer, SHUT_WR);
    }
    if (w->why[0]) /* make the client see EOF instead of waiting for a reply forever */
        shutdown(w->peer, SHUT_RDWR);
    return NULL;
}

static void wire_open(wire_t *w, const step_t *steps, size_t nsteps)
{
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    memset(w, 0, sizeof(*w));
    w->peer = sv[1];
    w->steps = steps;
    w->nsteps = nsteps;
    w->c = redisConnectFd(sv[0]);
    assert_non_null(w->c);
    assert_int_equal(pthread_create(&w->th, NULL, wire_main, w), 0);
}

/* Wait for the script to end; then nothing more may have been sent. */
static void wire_finish(wire_t *w)
{
    pthread_join(w->th, NULL);
    if (w->why[0])
        fail_msg("fake server: %s", w->why);
    char extra[256];
    ssize_t n = recv(w->peer, extra, sizeof(extra), MSG_DONTWAIT);
    if (n > 0)
        fail_msg("client sent %zd unexpected bytes: \"%.*s\"", n, (int)n, extra);
}

static void wire_close(wire_t *w)
{
    redisFree(w->c); /* closes its end */
    close(w->peer);
}

#define STEP(expect, reply)                                                                        \
    {                                                                                              \
        expect, sizeof(expect) - 1, reply, 0                                                       \
    }
#define STEP_EOF(expect, reply)                                                                    \
    {                                                                                              \
        expect, sizeof(expect) - 1, reply, 1                                                       \
    }

static void test_pipe_wire_format_and_replies(void **state)
{
    (void)state;
    static const step_t steps[] = {
        STEP("*3\r\n$3\r\nSET\r\n$7\r\nbin\0key\r\n$0\r\n\r\n"
             "*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"
             "*2\r\n$4\r\nINCR\r\n$1\r\ns\r\n"
             "*2\r\n$4\r\nINCR\r\n$1\r\nn\r\n"
             "*3\r\n$4\r\nMGET\r\n$1\r\na\r\n$1\r\nb\r\n",
             "+OK\r\n$3\r\nabc\r\n-ERR boom\r\n:42\r\n*2\r\n$1\r\na\r\n$-1\r\n"),
        /* The pipe reused after a reset. */
        STEP("*1\r\n$4\r\nPING\r\n", "+PONG\r\n"),
    };
    wire_t w;
    wire_open(&w, steps, 2);
    redis_pipe_t *p = redis_pipe_create();
    const char *argv[] = {"SET", "bin\0key", ""};
    const size_t argvlen[] = {3, 7, 0};
    assert_int_equal(redis_pipe_add(p, 3, argv, argvlen), 0);
    assert_int_equal(redis_pipe_addv(p, "GET", "k", NULL), 0);
    assert_int_equal(redis_pipe_addv(p, "INCR", "s", NULL), 0);
    assert_int_equal(redis_pipe_addv(p, "INCR", "n", NULL), 0);
    assert_int_equal(redis_pipe_addv(p, "MGET", "a", "b", NULL), 0);
    char err[256] = "";
    if (redis_pipe_exec(w.c, p, err, sizeof(err))) {
        wire_finish(&w);
        fail_msg("exec: %s", err);
    }

    const redisReply *r = redis_pipe_reply(p, 0);
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_STATUS);
    assert_string_equal(r->str, "OK");
    r = redis_pipe_reply(p, 1);
    assert_int_equal(r->type, REDIS_REPLY_STRING);
    assert_string_equal(r->str, "abc");
    r = redis_pipe_reply(p, 2); /* an error reply is a reply, not a failed exec */
    assert_int_equal(r->type, REDIS_REPLY_ERROR);
    assert_string_equal(r->str, "ERR boom");
    r = redis_pipe_reply(p, 3);
    assert_int_equal(r->type, REDIS_REPLY_INTEGER);
    assert_int_equal(r->integer, 42);
    r = redis_pipe_reply(p, 4);
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    assert_int_equal(r->elements, 2);
    assert_int_equal(r->element[1]->type, REDIS_REPLY_NIL);
    assert_null(redis_pipe_reply(p, 5));

    /* Reset drops the old replies; an empty pipe execs without I/O. */
    redis_pipe_reset(p);
    assert_null(redis_pipe_reply(p, 0));
    assert_int_equal(redis_pipe_exec(w.c, p, err, sizeof(err)), 0);
    assert_int_equal(redis_pipe_addv(p, "PING", NULL), 0);
    assert_int_equal(redis_pipe_exec(w.c, p, err, sizeof(err)), 0);
    assert_int_equal(redis_pipe_reply(p, 0)->type, REDIS_REPLY_STATUS);
    assert_string_equal(redis_pipe_reply(p, 0)->str, "PONG");
    wire_finish(&w);
    redis_pipe_destroy(p);
    wire_close(&w);
}

static void test_pipe_wire_protocol_error(void **state)
{
    (void)state;
    static const step_t steps[] = {
        STEP("*1\r\n$4\r\nPING\r\n*1\r\n$4\r\nPING\r\n", "+OK\r\n!nonsense\r\n"),
    };
    wire_t w;
    wire_open(&w, steps, 1);
    redis_pipe_t *p = redis_pipe_create();
    assert_int_equal(redis_pipe_addv(p, "PING", NULL), 0);
    assert_int_equal(redis_pipe_addv(p, "PING", NULL), 0);
    char err[256] = "";
    assert_int_equal(redis_pipe_exec(w.c, p, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "reply 2 of 2"));
    assert_non_null(strstr(err, "Protocol error"));
    assert_non_null(redis_pipe_reply(p, 0)); /* what did arrive is kept */
    assert_null(redis_pipe_reply(p, 1));
    /* The context is unusable from now on, and exec says so instead of trying. */
    assert_int_equal(redis_pipe_exec(w.c, p, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "unusable"));
    wire_finish(&w);
    redis_pipe_destroy(p);
    wire_close(&w);
}

static void test_pipe_wire_eof(void **state)
{
    (void)state;
    static const step_t steps[] = {
        STEP_EOF("*2\r\n$4\r\nINCR\r\n$1\r\nx\r\n*2\r\n$4\r\nINCR\r\n$1\r\nx\r\n"
                 "*2\r\n$4\r\nINCR\r\n$1\r\nx\r\n",
                 ":1\r\n"),
    };
    wire_t w;
    wire_open(&w, steps, 1);
    redis_pipe_t *p = redis_pipe_create();
    for (int i = 0; i < 3; i++)
        assert_int_equal(redis_pipe_addv(p, "INCR", "x", NULL), 0);
    char err[256] = "";
    assert_int_equal(redis_pipe_exec(w.c, p, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "reply 2 of 3"));
    assert_non_null(strstr(err, "closed"));
    wire_finish(&w);
    redis_pipe_destroy(p);
    wire_close(&w);
}

/* ---- scripts without a server -----------------------------------------------------------------
 */

#define INCRBY_LUA "return redis.call('INCRBY', KEYS[1], ARGV[1])"
#define INCRBY_SHA "8cd00688c05c46bde4a2e60658ef20a2e5c0b248" /* sha1sum of INCRBY_LUA */

static void test_script_sha(void **state)
{
    (void)state;
    redis_script_t *s = redis_script_create("return 1");
    assert_non_null(s);
    /* The SHA1 Redis itself reports for this script (SCRIPT LOAD "return 1"). */
    assert_string_equal(redis_script_sha(s), "e0e1f9fabfc9d4800c877a703b823ac0578ff8db");
    redis_script_destroy(s);
    s = redis_script_create(INCRBY_LUA);
    assert_string_equal(redis_script_sha(s), INCRBY_SHA);
    redis_script_destroy(s);
    redis_script_destroy(NULL);
    assert_null(redis_script_create(NULL));
}

static void test_script_noscript_fallback_wire(void **state)
{
    (void)state;
    static const step_t steps[] = {
        STEP("*5\r\n$7\r\nEVALSHA\r\n$40\r\n" INCRBY_SHA "\r\n$1\r\n1\r\n$3\r\nctr\r\n"
             "$1\r\n7\r\n",
             "-NOSCRIPT No matching script. Please use EVAL.\r\n"),
        STEP("*5\r\n$4\r\nEVAL\r\n$45\r\n" INCRBY_LUA "\r\n$1\r\n1\r\n$3\r\nctr\r\n"
             "$1\r\n7\r\n",
             ":7\r\n"),
        /* Known now: the next call is a plain EVALSHA again. */
        STEP("*5\r\n$7\r\nEVALSHA\r\n$40\r\n" INCRBY_SHA "\r\n$1\r\n1\r\n$3\r\nctr\r\n"
             "$1\r\n7\r\n",
             ":14\r\n"),
    };
    wire_t w;
    wire_open(&w, steps, 3);
    redis_script_t *s = redis_script_create(INCRBY_LUA);
    const char *argv[] = {"ctr", "7"};
    char err[256] = "";
    redisReply *r = redis_script_call(w.c, s, 1, 2, argv, NULL, err, sizeof(err));
    if (!r) {
        wire_finish(&w); /* the fake server's complaint first, if it has one */
        fail_msg("script call: %s", err);
    }
    assert_int_equal(r->type, REDIS_REPLY_INTEGER);
    assert_int_equal(r->integer, 7);
    freeReplyObject(r);
    const size_t argvlen[] = {3, 1};
    r = redis_script_call(w.c, s, 1, 2, argv, argvlen, err, sizeof(err));
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_INTEGER);
    assert_int_equal(r->integer, 14);
    freeReplyObject(r);
    wire_finish(&w);
    redis_script_destroy(s);
    wire_close(&w);
}

static void test_script_other_error_is_a_reply(void **state)
{
    (void)state;
    static const step_t steps[] = {
        STEP("*3\r\n$7\r\nEVALSHA\r\n$40\r\n" INCRBY_SHA "\r\n$1\r\n0\r\n",
             "-ERR Error running script: boom\r\n"),
        STEP_EOF("*3\r\n$7\r\nEVALSHA\r\n$40\r\n" INCRBY_SHA "\r\n$1\r\n0\r\n", ""),
    };
    wire_t w;
    wire_open(&w, steps, 2);
    redis_script_t *s = redis_script_create(INCRBY_LUA);
    char err[256] = "";
    redisReply *r = redis_script_call(w.c, s, 0, 0, NULL, NULL, err, sizeof(err));
    assert_non_null(r); /* not NOSCRIPT: no EVAL retry, the error comes back as the reply */
    assert_int_equal(r->type, REDIS_REPLY_ERROR);
    assert_string_equal(r->str, "ERR Error running script: boom");
    freeReplyObject(r);

    /* Bad arguments are refused before any I/O. */
    const char *argv[] = {"k"};
    assert_null(redis_script_call(w.c, s, 2, 1, argv, NULL, err, sizeof(err)));
    assert_non_null(strstr(err, "bad arguments"));
    assert_null(redis_script_call(w.c, s, -1, 1, argv, NULL, err, sizeof(err)));
    assert_null(redis_script_call(w.c, s, 0, 1, NULL, NULL, err, sizeof(err)));

    /* EOF instead of a reply: NULL with the reason. */
    assert_null(redis_script_call(w.c, s, 0, 0, NULL, NULL, err, sizeof(err)));
    assert_non_null(strstr(err, "closed"));
    wire_finish(&w);
    redis_script_destroy(s);
    wire_close(&w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_url_good),
        cmocka_unit_test(test_url_bad),
        cmocka_unit_test(test_url_lengths),
        cmocka_unit_test(test_url_errstr_handling),
        cmocka_unit_test(test_pipe_bookkeeping),
        cmocka_unit_test(test_pipe_wire_format_and_replies),
        cmocka_unit_test(test_pipe_wire_protocol_error),
        cmocka_unit_test(test_pipe_wire_eof),
        cmocka_unit_test(test_script_sha),
        cmocka_unit_test(test_script_noscript_fallback_wire),
        cmocka_unit_test(test_script_other_error_is_a_reply),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
