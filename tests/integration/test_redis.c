/*
 * test_redis: the Redis plumbing against a real redis-server (redis.url from $JRP_TEST_CONF):
 * blocking connect, AUTH failure and db selection, big pipelines, scripts surviving SCRIPT FLUSH,
 * and the async client on a real libuv loop: batches, every way of being destroyed, and
 * reconnecting to a redis-server this test starts, kills and restarts itself.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "redis.h"
#include "testenv.h"

/* ---- helpers ------------------------------------------------------------------------------- */

static const char *base_url(void)
{
    const char *url = testenv_redis_url();
    if (!url)
        fail_msg("redis.url is not configured: point JRP_TEST_CONF at a file with "
                 "'redis.url = redis://host:port/db' (make up writes build/local/jrp.conf)");
    return url;
}

/* The configured server's URL with another password (NULL: keep it) and db. */
static const char *url_with(const char *password, int db)
{
    static char out[1024];
    redis_url_t u;
    char err[256];
    if (redis_url_parse(base_url(), &u, err, sizeof(err)))
        fail_msg("redis.url: %s", err);
    const char *pw = password ? password : u.password;
    char enc[800] = "";
    size_t n = 0;
    for (const char *p = pw; *p && n + 4 < sizeof(enc); p++) {
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9'))
            enc[n++] = *p;
        else
            n += (size_t)snprintf(enc + n, sizeof(enc) - n, "%%%02X", (unsigned char)*p);
    }
    enc[n] = '\0';
    snprintf(out, sizeof(out),
             strchr(u.host, ':') ? "redis://%s%s%s[%s]:%d/%d" : "redis://%s%s%s%s:%d/%d",
             pw[0] ? ":" : "", enc, pw[0] ? "@" : "", u.host, u.port, db);
    return out;
}

static redisContext *connect_or_fail(const char *url)
{
    char err[512];
    redisContext *c = redis_connect(url, 2000, err, sizeof(err));
    if (!c)
        fail_msg("redis_connect: %s", err);
    return c;
}

/* A port on 127.0.0.1 that nothing listens on: bound but never listened, so connects are refused
 * and no one else can take it while *fd stays open. */
static int closed_port(int *fd)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    *fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(*fd >= 0);
    assert_int_equal(bind(*fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(getsockname(*fd, (struct sockaddr *)&a, &len), 0);
    return ntohs(a.sin_port);
}

static int free_port(void)
{
    int fd;
    int port = closed_port(&fd);
    close(fd);
    return port;
}

static redisReply *cmd(redisContext *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(c, fmt, ap);
    va_end(ap);
    if (!r)
        fail_msg("%s: %s", fmt, c->errstr);
    return r;
}

static void expect_status(redisReply *r, const char *status)
{
    assert_non_null(r);
    if (r->type == REDIS_REPLY_ERROR)
        fail_msg("error reply: %s", r->str);
    assert_int_equal(r->type, REDIS_REPLY_STATUS);
    assert_string_equal(r->str, status);
    freeReplyObject(r);
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ---- a redis-server of our own, for the reconnect test -----------------------------------------
 */

static pid_t srv_pid = -1;

static void srv_stop(void)
{
    if (srv_pid > 0) {
        kill(srv_pid, SIGKILL);
        waitpid(srv_pid, NULL, 0);
    }
    srv_pid = -1;
}

/* Start redis-server on 127.0.0.1:port (with requirepass when password) and wait for PONG. */
static void srv_start(int port, const char *password)
{
    /* Looked up here so that a missing binary is one clear failure, not an exec error. */
    const char *path = getenv("PATH");
    char exe[4096] = "";
    for (const char *p = path ? path : ""; *p;) {
        size_t n = strcspn(p, ":");
        snprintf(exe, sizeof(exe), "%.*s/redis-server", (int)n, p);
        if (n && access(exe, X_OK) == 0)
            break;
        exe[0] = '\0';
        p += n + (p[n] == ':');
    }
    if (!exe[0])
        fail_msg("redis-server not found on PATH (install the redis-server package)");

    char portstr[16];
    snprintf(portstr, sizeof(portstr), "%d", port);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        /* Dies with the test even if the test crashes. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int devnull = open("/dev/null", O_RDWR);
        if (devnull >= 0) {
            dup2(devnull, 0);
            dup2(devnull, 1);
            dup2(devnull, 2);
        }
        const char *argv[16] = {"redis-server", "--port",      portstr, "--bind",
                                "127.0.0.1",    "--save",      "",      "--appendonly",
                                "no",           "--daemonize", "no"};
        if (password) {
            argv[11] = "--requirepass";
            argv[12] = password;
        }
        execv(exe, (char **)argv);
        _exit(127);
    }
    srv_pid = pid;

    char url[300], err[256] = "";
    snprintf(url, sizeof(url), "redis://%s%s%s127.0.0.1:%d/0", password ? ":" : "",
             password ? password : "", password ? "@" : "", port);
    uint64_t deadline = now_ms() + 5000;
    while (now_ms() < deadline) {
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid) {
            srv_pid = -1;
            fail_msg("redis-server on port %d exited at once (status %d)", port, status);
        }
        redisContext *c = redis_connect(url, 200, err, sizeof(err));
        if (c) {
            redisReply *r = redisCommand(c, "PING");
            int ok = r && r->type == REDIS_REPLY_STATUS;
            if (r)
                freeReplyObject(r);
            redisFree(c);
            if (ok)
                return;
        }
        usleep(20 * 1000);
    }
    fail_msg("redis-server on port %d not answering after 5 s: %s", port, err);
}

/* ---- blocking client ----------------------------------------------------------------------------
 */

static void test_connect_blocking(void **state)
{
    (void)state;
    redisContext *c = connect_or_fail(base_url());
    expect_status(cmd(c, "PING"), "PONG");
    redisFree(c);

    char err[256];
    c = redis_connect(base_url(), 0, err, sizeof(err)); /* 0: no timeout */
    assert_non_null(c);
    expect_status(cmd(c, "PING"), "PONG");
    redisFree(c);

    assert_null(redis_connect("redis://127.0.0.1:0/0", 1000, err, sizeof(err)));
    assert_non_null(strstr(err, "port '0' is out of range"));
}

static void test_connect_refused(void **state)
{
    (void)state;
    int fd;
    int port = closed_port(&fd);
    char url[64], err[512] = "", where[64];
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d/0", port);
    snprintf(where, sizeof(where), "127.0.0.1:%d", port);
    uint64_t t0 = now_ms();
    assert_null(redis_connect(url, 2000, err, sizeof(err)));
    assert_true(now_ms() - t0 < 2000);
    if (!strstr(err, "Connection refused") || !strstr(err, where))
        fail_msg("errstr does not say what failed: \"%s\"", err);
    close(fd);
}

static void test_auth_failure(void **state)
{
    (void)state;
    /* Redis 7 answers AUTH with an error when no password is set, and with WRONGPASS when another
     * one is: either way connecting must fail and say so. */
    char err[512] = "";
    assert_null(redis_connect(url_with("wr0ng-pass", 0), 2000, err, sizeof(err)));
    if (!strstr(err, "AUTH failed"))
        fail_msg("errstr does not name AUTH: \"%s\"", err);
    assert_null(strstr(err, "wr0ng-pass")); /* errstr goes to logs: no password in it */
}

static void test_db_selection(void **state)
{
    (void)state;
    char key[300];
    snprintf(key, sizeof(key), "%s", testenv_unique("jrp-test-redis-db"));
    redisContext *c3 = connect_or_fail(url_with(NULL, 3));
    redisContext *c0 = connect_or_fail(url_with(NULL, 0));
    expect_status(cmd(c3, "SET %s in-db-3", key), "OK");

    redisReply *r = cmd(c0, "GET %s", key);
    assert_int_equal(r->type, REDIS_REPLY_NIL);
    freeReplyObject(r);
    r = cmd(c3, "GET %s", key);
    assert_int_equal(r->type, REDIS_REPLY_STRING);
    assert_string_equal(r->str, "in-db-3");
    freeReplyObject(r);

    r = cmd(c3, "DEL %s", key);
    assert_int_equal(r->integer, 1);
    freeReplyObject(r);
    redisFree(c3);
    redisFree(c0);
}

static void test_pipe_round_trip(void **state)
{
    (void)state;
    enum { N = 1000 };
    char prefix[300];
    snprintf(prefix, sizeof(prefix), "%s", testenv_unique("jrp-test-redis-pipe"));
    redisContext *c = connect_or_fail(base_url());
    redis_pipe_t *p = redis_pipe_create();
    char key[N][340], val[N][64];
    size_t vlen[N];
    for (int i = 0; i < N; i++) {
        snprintf(key[i], sizeof(key[i]), "%s:%d", prefix, i);
        /* Binary-safe values: an embedded NUL in each. */
        vlen[i] = (size_t)snprintf(val[i], sizeof(val[i]), "value-%d#x", i);
        val[i][vlen[i] - 2] = '\0';
        const char *argv[] = {"SET", key[i], val[i], "EX", "600"};
        const size_t argvlen[] = {3, strlen(key[i]), vlen[i], 2, 3};
        assert_int_equal(redis_pipe_add(p, 5, argv, argvlen), 0);
    }
    for (int i = 0; i < N; i++)
        assert_int_equal(redis_pipe_addv(p, "GET", key[i], NULL), 0);
    assert_int_equal(redis_pipe_count(p), 2 * N);

    char err[512];
    if (redis_pipe_exec(c, p, err, sizeof(err)))
        fail_msg("exec: %s", err);
    for (int i = 0; i < N; i++) {
        const redisReply *r = redis_pipe_reply(p, (size_t)i);
        assert_non_null(r);
        assert_int_equal(r->type, REDIS_REPLY_STATUS);
        assert_string_equal(r->str, "OK");
    }
    for (int i = 0; i < N; i++) {
        const redisReply *r = redis_pipe_reply(p, (size_t)(N + i));
        assert_non_null(r);
        assert_int_equal(r->type, REDIS_REPLY_STRING);
        assert_int_equal(r->len, vlen[i]);
        assert_memory_equal(r->str, val[i], vlen[i]);
    }
    assert_null(redis_pipe_reply(p, 2 * N));

    /* Reused after a reset: one DEL naming every key. */
    redis_pipe_reset(p);
    const char **argv = malloc((N + 1) * sizeof(*argv));
    argv[0] = "DEL";
    for (int i = 0; i < N; i++)
        argv[i + 1] = key[i];
    assert_int_equal(redis_pipe_add(p, N + 1, argv, NULL), 0);
    free(argv);
    assert_int_equal(redis_pipe_exec(c, p, err, sizeof(err)), 0);
    assert_int_equal(redis_pipe_reply(p, 0)->type, REDIS_REPLY_INTEGER);
    assert_int_equal(redis_pipe_reply(p, 0)->integer, N);
    redis_pipe_destroy(p);
    redisFree(c);
}

static void test_pipe_error_reply(void **state)
{
    (void)state;
    char key[300];
    snprintf(key, sizeof(key), "%s", testenv_unique("jrp-test-redis-pipe-err"));
    redisContext *c = connect_or_fail(base_url());
    redis_pipe_t *p = redis_pipe_create();
    assert_int_equal(redis_pipe_addv(p, "SET", key, "not-a-number", NULL), 0);
    assert_int_equal(redis_pipe_addv(p, "INCR", key, NULL), 0);
    assert_int_equal(redis_pipe_addv(p, "NO-SUCH-COMMAND", NULL), 0);
    assert_int_equal(redis_pipe_addv(p, "GET", key, NULL), 0);
    assert_int_equal(redis_pipe_addv(p, "DEL", key, NULL), 0);
    char err[512];
    if (redis_pipe_exec(c, p, err, sizeof(err)))
        fail_msg("an error reply failed the whole exec: %s", err);
    assert_int_equal(redis_pipe_reply(p, 0)->type, REDIS_REPLY_STATUS);
    const redisReply *r = redis_pipe_reply(p, 1);
    assert_int_equal(r->type, REDIS_REPLY_ERROR);
    assert_non_null(strstr(r->str, "not an integer"));
    r = redis_pipe_reply(p, 2);
    assert_int_equal(r->type, REDIS_REPLY_ERROR);
    assert_non_null(strstr(r->str, "unknown command"));
    r = redis_pipe_reply(p, 3); /* the commands after the errors still ran */
    assert_int_equal(r->type, REDIS_REPLY_STRING);
    assert_string_equal(r->str, "not-a-number");
    assert_int_equal(redis_pipe_reply(p, 4)->integer, 1);
    /* The connection is still fine. */
    expect_status(cmd(c, "PING"), "PONG");
    redis_pipe_destroy(p);
    redisFree(c);
}

static void test_script_survives_flush(void **state)
{
    (void)state;
    char key[300];
    snprintf(key, sizeof(key), "%s", testenv_unique("jrp-test-redis-script"));
    redisContext *c = connect_or_fail(base_url());
    redis_script_t *s = redis_script_create("return redis.call('INCRBY', KEYS[1], ARGV[1])");
    char err[512];

    /* Our SHA1 is the server's. */
    redisReply *r = cmd(c, "SCRIPT LOAD %s", "return redis.call('INCRBY', KEYS[1], ARGV[1])");
    assert_int_equal(r->type, REDIS_REPLY_STRING);
    assert_string_equal(r->str, redis_script_sha(s));
    freeReplyObject(r);

    const char *argv[] = {key, "5"};
    r = redis_script_call(c, s, 1, 2, argv, NULL, err, sizeof(err));
    if (!r)
        fail_msg("script call: %s", err);
    assert_int_equal(r->type, REDIS_REPLY_INTEGER);
    assert_int_equal(r->integer, 5);
    freeReplyObject(r);

    expect_status(cmd(c, "SCRIPT FLUSH"), "OK");
    r = cmd(c, "SCRIPT EXISTS %s", redis_script_sha(s));
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    assert_int_equal(r->element[0]->integer, 0);
    freeReplyObject(r);

    argv[1] = "2";
    r = redis_script_call(c, s, 1, 2, argv, NULL, err, sizeof(err));
    if (!r)
        fail_msg("script call after SCRIPT FLUSH: %s", err);
    if (r->type == REDIS_REPLY_ERROR)
        fail_msg("script call after SCRIPT FLUSH: %s", r->str);
    assert_int_equal(r->type, REDIS_REPLY_INTEGER);
    assert_int_equal(r->integer, 7);
    freeReplyObject(r);
    r = cmd(c, "SCRIPT EXISTS %s", redis_script_sha(s)); /* the fallback cached it again */
    assert_int_equal(r->element[0]->integer, 1);
    freeReplyObject(r);

    /* A script error is a reply, not a failure. */
    const char *bad[] = {key, "not-a-number"};
    r = redis_script_call(c, s, 1, 2, bad, NULL, err, sizeof(err));
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_ERROR);
    freeReplyObject(r);

    r = cmd(c, "DEL %s", key);
    assert_int_equal(r->integer, 1);
    freeReplyObject(r);
    redis_script_destroy(s);
    redisFree(c);
}

/* ---- async client: a loop, a watchdog and a log of what happened ------------------------------
 */

typedef struct expect_s {
    int type;
    long long integer;
    const char *str;
    int calls; /* how often the callback ran: must end at exactly 1 */
    int got_null;
    int order;  /* 1-based arrival order */
    int states; /* on_state calls seen when the callback ran */
} expect_t;

static struct {
    uv_loop_t loop;
    uv_timer_t watchdog;
    int loop_open;
    int expired;
    redis_async_t *ra;    /* to destroy; NULL once destroyed */
    redis_async_t *ra_id; /* what callbacks must be given, kept after destroy */
    int states[64];
    int nstates;
    int ups, downs;
    int arrivals; /* callbacks run, in total */
    int want;     /* run_until target for arrivals */
    int done;     /* arrivals reached want */
    char why[512];
} T;

static void on_watchdog(uv_timer_t *t)
{
    (void)t;
    T.expired = 1;
}

static int setup_loop(void **state)
{
    (void)state;
    memset(&T, 0, sizeof(T));
    if (uv_loop_init(&T.loop) || uv_timer_init(&T.loop, &T.watchdog))
        return -1;
    T.loop_open = 1;
    return 0;
}

static void walk_cb(uv_handle_t *h, void *arg)
{
    (void)arg;
    print_error("still open: %s handle%s\n", uv_handle_type_name(uv_handle_get_type(h)),
                uv_is_closing(h) ? " (closing)" : "");
}

/* Close the watchdog and let close callbacks run until the loop closes, a bounded number of
 * times: anything left open is a leak of the client's, reported by handle type. */
static void finish_loop(void)
{
    uv_close((uv_handle_t *)&T.watchdog, NULL);
    for (int i = 0; i < 100; i++) {
        if (uv_loop_close(&T.loop) == 0) {
            T.loop_open = 0;
            return;
        }
        uv_run(&T.loop, UV_RUN_NOWAIT);
    }
    uv_walk(&T.loop, walk_cb, NULL);
    fail_msg("the loop does not close: handles are left open");
}

static int teardown_loop(void **state)
{
    (void)state;
    srv_stop();
    /* Only after a failed test: do not leave a half-open loop behind for the next one. */
    if (T.loop_open) {
        if (T.ra)
            redis_async_destroy(T.ra);
        if (!uv_is_closing((uv_handle_t *)&T.watchdog))
            uv_close((uv_handle_t *)&T.watchdog, NULL);
        for (int i = 0; i < 100 && uv_loop_close(&T.loop); i++)
            uv_run(&T.loop, UV_RUN_NOWAIT);
    }
    return 0;
}

/* Run the loop until *v >= n or ms pass; the watchdog bounds every wait. */
static int run_until_n(const int *v, int n, uint64_t ms)
{
    T.expired = 0;
    uv_timer_start(&T.watchdog, on_watchdog, ms, 0);
    while (*v < n && !T.expired)
        uv_run(&T.loop, UV_RUN_ONCE);
    uv_timer_stop(&T.watchdog);
    return *v >= n;
}

static int run_until(const int *flag, uint64_t ms)
{
    return run_until_n(flag, 1, ms);
}

static void run_for(uint64_t ms)
{
    static const int never = 0;
    run_until(&never, ms);
}

static void on_state(redis_async_t *ra, int connected, void *arg)
{
    if (ra != T.ra_id || arg != &T)
        snprintf(T.why, sizeof(T.why), "on_state got the wrong ra/arg");
    if (T.nstates < 64)
        T.states[T.nstates++] = connected;
    if (connected)
        T.ups++;
    else
        T.downs++;
}

/* Checks are recorded, not asserted: a cmocka failure here would longjmp out of libuv. */
static void on_reply(redis_async_t *ra, redisReply *r, void *arg)
{
    expect_t *e = arg;
    if (ra != T.ra_id && !T.why[0])
        snprintf(T.why, sizeof(T.why), "reply callback got the wrong ra");
    e->calls++;
    e->order = ++T.arrivals;
    e->states = T.nstates;
    if (T.want && T.arrivals >= T.want)
        T.done = 1;
    if (!r) {
        e->got_null++;
        return;
    }
    if (T.why[0])
        return;
    if (r->type != e->type)
        snprintf(T.why, sizeof(T.why), "reply %d: type %d, want %d (%s)", e->order, r->type,
                 e->type, r->type == REDIS_REPLY_ERROR ? r->str : "");
    else if (r->type == REDIS_REPLY_INTEGER && r->integer != e->integer)
        snprintf(T.why, sizeof(T.why), "reply %d: %lld, want %lld", e->order, r->integer,
                 e->integer);
    else if (e->str &&
             (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS ||
              r->type == REDIS_REPLY_ERROR) &&
             !strstr(r->str, e->str))
        snprintf(T.why, sizeof(T.why), "reply %d: \"%s\", want \"%s\"", e->order, r->str, e->str);
}

static int acmd(expect_t *e, int argc, const char **argv)
{
    return redis_async_command(T.ra, on_reply, e, argc, argv, NULL);
}

static void create_async(const char *url)
{
    char err[512];
    T.ra = T.ra_id = redis_async_create(&T.loop, url, on_state, &T, err, sizeof(err));
    if (!T.ra)
        fail_msg("redis_async_create: %s", err);
}

static void connect_async(const char *url)
{
    create_async(url);
    if (!run_until(&T.ups, 5000))
        fail_msg("async client not connected after 5 s");
    assert_true(redis_async_is_connected(T.ra));
}

static void destroy_async(void)
{
    redis_async_destroy(T.ra);
    T.ra = NULL;
}

/* ---- async client tests ------------------------------------------------------------------------
 */

static void test_async_batch(void **state)
{
    (void)state;
    enum { INCRS = 100 };
    char key[300], str[320], key2[320];
    snprintf(key, sizeof(key), "%s", testenv_unique("jrp-test-redis-async"));
    snprintf(str, sizeof(str), "%s:s", key);
    snprintf(key2, sizeof(key2), "%s:nocb", key);
    connect_async(base_url());
    assert_int_equal(T.nstates, 1);

    static expect_t e[INCRS + 8];
    memset(e, 0, sizeof(e));
    int n = 0;
    const char *set_str[] = {"SET", str, "abc"};
    e[n] = (expect_t){.type = REDIS_REPLY_STATUS, .str = "OK"};
    assert_int_equal(acmd(&e[n++], 3, set_str), 0);
    for (int i = 0; i < INCRS; i++) {
        const char *incr[] = {"INCR", key};
        e[n] = (expect_t){.type = REDIS_REPLY_INTEGER, .integer = i + 1};
        assert_int_equal(acmd(&e[n++], 2, incr), 0);
    }
    const char *get[] = {"GET", key};
    e[n] = (expect_t){.type = REDIS_REPLY_STRING, .str = "100"};
    assert_int_equal(acmd(&e[n++], 2, get), 0);
    const char *incr_str[] = {"INCR", str};
    e[n] = (expect_t){.type = REDIS_REPLY_ERROR, .str = "not an integer"};
    assert_int_equal(acmd(&e[n++], 2, incr_str), 0);
    /* No callback: still sent, in order. */
    const char *set_nocb[] = {"SET", key2, "x"};
    assert_int_equal(redis_async_command(T.ra, NULL, NULL, 3, set_nocb, NULL), 0);
    const char *get2[] = {"GET", key2};
    e[n] = (expect_t){.type = REDIS_REPLY_STRING, .str = "x"};
    assert_int_equal(acmd(&e[n++], 2, get2), 0);
    const char *del[] = {"DEL", key, str, key2};
    e[n] = (expect_t){.type = REDIS_REPLY_INTEGER, .integer = 3};
    assert_int_equal(acmd(&e[n++], 4, del), 0);

    T.want = n;
    if (!run_until(&T.done, 5000))
        fail_msg("%d of %d replies after 5 s", T.arrivals, n);
    if (T.why[0])
        fail_msg("%s", T.why);
    for (int i = 0; i < n; i++) {
        assert_int_equal(e[i].calls, 1);
        assert_int_equal(e[i].got_null, 0);
        assert_int_equal(e[i].order, i + 1);
    }
    destroy_async();
    finish_loop();
    assert_int_equal(T.nstates, 1); /* no on_state(0) for a destroy */
}

static void test_async_destroy_with_pending(void **state)
{
    (void)state;
    connect_async(base_url());
    static expect_t e[50];
    memset(e, 0, sizeof(e));
    for (int i = 0; i < 50; i++) {
        const char *ping[] = {"PING"};
        e[i] = (expect_t){.type = REDIS_REPLY_STATUS, .str = "PONG"};
        assert_int_equal(acmd(&e[i], 1, ping), 0);
    }
    destroy_async();
    /* Every pending callback ran, once, with NULL, before destroy returned. */
    for (int i = 0; i < 50; i++) {
        assert_int_equal(e[i].calls, 1);
        assert_int_equal(e[i].got_null, 1);
    }
    finish_loop();
    for (int i = 0; i < 50; i++)
        assert_int_equal(e[i].calls, 1);
    assert_int_equal(T.nstates, 1);
}

static expect_t late;

static void on_reply_destroying(redis_async_t *ra, redisReply *r, void *arg)
{
    int first = T.arrivals == 0;
    on_reply(ra, r, arg);
    if (first) {
        destroy_async();
        /* After destroy, even from inside a callback, commands fail at once. */
        const char *ping[] = {"PING"};
        late = (expect_t){.type = REDIS_REPLY_STATUS};
        if (redis_async_command(ra, on_reply, &late, 1, ping, NULL) != -1 || late.calls != 1 ||
            late.got_null != 1)
            snprintf(T.why, sizeof(T.why), "command after destroy did not fail at once");
    }
}

static void test_async_destroy_in_callback(void **state)
{
    (void)state;
    connect_async(base_url());
    redis_async_t *ra = T.ra;
    static expect_t e[20];
    memset(e, 0, sizeof(e));
    for (int i = 0; i < 20; i++) {
        const char *ping[] = {"PING"};
        e[i] = (expect_t){.type = REDIS_REPLY_STATUS, .str = "PONG"};
        assert_int_equal(redis_async_command(ra, on_reply_destroying, &e[i], 1, ping, NULL), 0);
    }
    T.want = 20 + 1; /* + the one issued after destroy */
    if (!run_until(&T.done, 5000))
        fail_msg("%d of 21 callbacks after 5 s", T.arrivals);
    if (T.why[0])
        fail_msg("%s", T.why);
    assert_int_equal(e[0].got_null, 0); /* the one that destroyed had its reply */
    /* hiredis frees right after that callback returns: the rest fail with NULL, even replies
     * already read, each once and in order. */
    for (int i = 0; i < 20; i++)
        assert_int_equal(e[i].calls, 1);
    for (int i = 1; i < 20; i++) {
        assert_int_equal(e[i].got_null, 1);
        assert_true(e[i].order > e[i - 1].order);
    }
    finish_loop();
    assert_int_equal(T.nstates, 1);
}

static void test_async_destroy_while_connecting(void **state)
{
    (void)state;
    create_async(base_url());
    assert_false(redis_async_is_connected(T.ra));
    destroy_async();
    finish_loop();
    assert_int_equal(T.nstates, 0);

    /* And once more, with the loop having run a little: the handshake may be half done. */
    assert_int_equal(setup_loop(NULL), 0);
    create_async(base_url());
    uv_run(&T.loop, UV_RUN_NOWAIT);
    destroy_async();
    finish_loop();
}

static void test_async_down_then_destroy(void **state)
{
    (void)state;
    int fd;
    int port = closed_port(&fd);
    char bad[64];
    assert_null(redis_async_create(&T.loop, "redis://host:0", on_state, &T, bad, sizeof(bad)));
    assert_non_null(strstr(bad, "out of range"));

    char url[64];
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d/0", port);
    create_async(url); /* an unreachable server is not an error: it keeps trying */
    run_for(400);      /* several refused attempts; now likely waiting on the backoff timer */
    assert_false(redis_async_is_connected(T.ra));
    assert_int_equal(T.nstates, 0); /* never up, so no change to report */

    expect_t e = {.type = REDIS_REPLY_STATUS};
    const char *ping[] = {"PING"};
    assert_int_equal(acmd(&e, 1, ping), -1);
    assert_int_equal(e.calls, 1); /* failed at once, callback run with NULL */
    assert_int_equal(e.got_null, 1);
    assert_int_equal(redis_async_command(T.ra, NULL, NULL, 1, ping, NULL), -1);

    destroy_async();
    finish_loop();
    close(fd);
}

/* A server that accepts TCP but never answers: the attempt is given up after the connect timeout
 * (3 s) and retried, and never reported as connected. */
static void test_async_silent_server(void **state)
{
    (void)state;
    int fd;
    int port = closed_port(&fd);
    assert_int_equal(listen(fd, 16), 0); /* the kernel completes connects; we never answer */
    char url[64];
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d/0", port);
    create_async(url);
    run_for(3600);
    assert_false(redis_async_is_connected(T.ra));
    assert_int_equal(T.nstates, 0);
    int attempts = 0;
    fcntl(fd, F_SETFL, O_NONBLOCK); /* count what is queued, never wait for more */
    for (int c; (c = accept(fd, NULL, NULL)) >= 0; attempts++)
        close(c);
    if (attempts < 2)
        fail_msg("%d connection attempt(s) in 3.6 s: the silent one was not timed out", attempts);
    destroy_async();
    finish_loop();
    close(fd);
}

static void test_async_db_selection(void **state)
{
    (void)state;
    char key[300];
    snprintf(key, sizeof(key), "%s", testenv_unique("jrp-test-redis-async-db"));
    connect_async(url_with(NULL, 3));
    expect_t e = {.type = REDIS_REPLY_STATUS, .str = "OK"};
    const char *set[] = {"SET", key, "via-async-db-3"};
    assert_int_equal(acmd(&e, 3, set), 0);
    T.want = 1;
    assert_true(run_until(&T.done, 5000));
    if (T.why[0])
        fail_msg("%s", T.why);
    destroy_async();
    finish_loop();

    redisContext *c0 = connect_or_fail(url_with(NULL, 0));
    redisContext *c3 = connect_or_fail(url_with(NULL, 3));
    redisReply *r = cmd(c0, "GET %s", key);
    assert_int_equal(r->type, REDIS_REPLY_NIL);
    freeReplyObject(r);
    r = cmd(c3, "GET %s", key);
    assert_int_equal(r->type, REDIS_REPLY_STRING);
    assert_string_equal(r->str, "via-async-db-3");
    freeReplyObject(r);
    r = cmd(c3, "DEL %s", key);
    freeReplyObject(r);
    redisFree(c0);
    redisFree(c3);
}

static void test_async_auth_failure(void **state)
{
    (void)state;
    create_async(url_with("wr0ng-pass", 0));
    /* TCP connects, AUTH is refused: never reported as connected, retried with backoff. */
    run_for(1000);
    assert_false(redis_async_is_connected(T.ra));
    assert_int_equal(T.nstates, 0);
    destroy_async();
    finish_loop();
}

static void test_async_reconnect(void **state)
{
    (void)state;
    int port = free_port();
    char url[64];
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d/0", port);
    srv_start(port, NULL);
    connect_async(url);

    expect_t e1 = {.type = REDIS_REPLY_STATUS, .str = "OK"};
    const char *set[] = {"SET", "k", "before"};
    assert_int_equal(acmd(&e1, 3, set), 0);
    T.want = 1;
    assert_true(run_until(&T.done, 5000));

    /* A command the server will still be blocking on when it dies. */
    expect_t blocked = {.type = REDIS_REPLY_NIL};
    const char *blpop[] = {"BLPOP", "never-pushed", "30"};
    assert_int_equal(acmd(&blocked, 3, blpop), 0);
    run_for(200); /* written and blocking */
    assert_int_equal(blocked.calls, 0);

    srv_stop(); /* SIGKILL: no goodbye */
    uint64_t t_down = now_ms();
    if (!run_until(&T.downs, 5000))
        fail_msg("no on_state(0) within 5 s of killing the server");
    assert_int_equal(T.nstates, 2);
    assert_int_equal(T.states[1], 0);
    assert_false(redis_async_is_connected(T.ra));
    assert_int_equal(blocked.calls, 1); /* failed with NULL, before on_state(0) */
    assert_int_equal(blocked.got_null, 1);
    assert_int_equal(blocked.states, 1);

    expect_t e2 = {.type = REDIS_REPLY_STATUS};
    const char *ping[] = {"PING"};
    assert_int_equal(acmd(&e2, 1, ping), -1);
    assert_int_equal(e2.got_null, 1);

    run_for(300); /* let a few reconnects be refused */
    assert_int_equal(T.ups, 1);
    srv_start(port, NULL);
    int up = run_until_n(&T.ups, 2, 8000);
    uint64_t took = now_ms() - t_down;
    if (!up)
        fail_msg("no on_state(1) within 8 s of restarting the server");
    /* Refused attempts must be noticed at once (the stock 0.14 libuv adapter loses them and
     * the attempt would sit out the 3 s connect timeout); the backoff stays small meanwhile. */
    if (took > 2500)
        fail_msg("reconnected only %llu ms after the server went down", (unsigned long long)took);
    print_message("reconnected %llu ms after the kill\n", (unsigned long long)took);
    assert_int_equal(T.states[2], 1);
    assert_true(redis_async_is_connected(T.ra));

    /* Commands work again (a fresh server: the old key is gone). */
    expect_t e3 = {.type = REDIS_REPLY_NIL};
    const char *get[] = {"GET", "k"};
    assert_int_equal(acmd(&e3, 2, get), 0);
    expect_t e4 = {.type = REDIS_REPLY_STATUS, .str = "PONG"};
    assert_int_equal(acmd(&e4, 1, ping), 0);
    T.done = 0;
    T.want = T.arrivals + 2;
    assert_true(run_until(&T.done, 5000));
    if (T.why[0])
        fail_msg("%s", T.why);
    assert_int_equal(e3.calls, 1);
    assert_int_equal(e4.calls, 1);
    assert_int_equal(e4.got_null, 0);

    destroy_async();
    srv_stop();
    finish_loop();
    assert_int_equal(T.nstates, 3);
}

/* The password path for real, on a server of our own that requires one. */
static void test_password_required(void **state)
{
    (void)state;
    int port = free_port();
    srv_start(port, "s3cret-pw");
    char url[128], err[512] = "";

    snprintf(url, sizeof(url), "redis://127.0.0.1:%d/0", port);
    assert_null(redis_connect(url, 2000, err, sizeof(err)));
    if (!strstr(err, "NOAUTH")) /* caught at connect, not at the first command */
        fail_msg("missing password not reported: \"%s\"", err);
    snprintf(url, sizeof(url), "redis://:wrong@127.0.0.1:%d/0", port);
    assert_null(redis_connect(url, 2000, err, sizeof(err)));
    if (!strstr(err, "AUTH failed") || !strstr(err, "WRONGPASS"))
        fail_msg("wrong password not reported: \"%s\"", err);

    snprintf(url, sizeof(url), "redis://:s3cret-pw@127.0.0.1:%d/2", port);
    redisContext *c = connect_or_fail(url);
    expect_status(cmd(c, "SET k in-db-2"), "OK");
    redisFree(c);

    connect_async(url); /* AUTH, SELECT 2, PING, then on_state(1) */
    expect_t e = {.type = REDIS_REPLY_STRING, .str = "in-db-2"};
    const char *get[] = {"GET", "k"};
    assert_int_equal(acmd(&e, 2, get), 0);
    T.want = 1;
    assert_true(run_until(&T.done, 5000));
    if (T.why[0])
        fail_msg("%s", T.why);
    destroy_async();
    srv_stop();
    finish_loop();
}

int main(void)
{
    /* Writing to a killed server must be an error return, not a signal. */
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_connect_blocking),
        cmocka_unit_test(test_connect_refused),
        cmocka_unit_test(test_auth_failure),
        cmocka_unit_test(test_db_selection),
        cmocka_unit_test(test_pipe_round_trip),
        cmocka_unit_test(test_pipe_error_reply),
        cmocka_unit_test(test_script_survives_flush),
        cmocka_unit_test_setup_teardown(test_async_batch, setup_loop, teardown_loop),
        cmocka_unit_test_setup_teardown(test_async_destroy_with_pending, setup_loop, teardown_loop),
        cmocka_unit_test_setup_teardown(test_async_destroy_in_callback, setup_loop, teardown_loop),
        cmocka_unit_test_setup_teardown(test_async_destroy_while_connecting, setup_loop,
                                        teardown_loop),
        cmocka_unit_test_setup_teardown(test_async_down_then_destroy, setup_loop, teardown_loop),
        cmocka_unit_test_setup_teardown(test_async_silent_server, setup_loop, teardown_loop),
        cmocka_unit_test_setup_teardown(test_async_db_selection, setup_loop, teardown_loop),
        cmocka_unit_test_setup_teardown(test_async_auth_failure, setup_loop, teardown_loop),
        cmocka_unit_test_setup_teardown(test_async_reconnect, setup_loop, teardown_loop),
        cmocka_unit_test_setup_teardown(test_password_required, setup_loop, teardown_loop),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
