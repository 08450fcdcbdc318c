/*
 * test_log: level filtering, the plain and JSON line formats (JSON checked by parsing it with
 * jansson), escaping of hostile messages, masking of persons by log_subject(), and whole lines
 * under concurrent writers. Each test captures output through its own pipe (log_set_fd).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

#define PERSON "11010519491231002X"
#define CREDIT "91350100M000100Y43"

typedef struct {
    int rfd;
    int wfd;
    char out[65536];
    size_t len;
} capture_t;

/* Every test starts from the documented defaults, writing into a fresh pipe. */
static int setup(void **state)
{
    capture_t *c = calloc(1, sizeof(*c));
    int fds[2];
    if (!c || pipe(fds) != 0)
        return -1;
    c->rfd = fds[0];
    c->wfd = fds[1];
    fcntl(c->rfd, F_SETFL, O_NONBLOCK);
    log_set_level(LOG_INFO);
    log_set_json(0);
    log_set_service(NULL);
    log_set_fd(c->wfd);
    *state = c;
    return 0;
}

static int teardown(void **state)
{
    capture_t *c = *state;
    log_set_fd(-1);
    log_set_level(LOG_INFO);
    log_set_json(0);
    log_set_service(NULL);
    close(c->rfd);
    close(c->wfd);
    free(c);
    return 0;
}

/* Read whatever is in the pipe so far; returns the captured text (NUL-terminated). */
static const char *drain(capture_t *c)
{
    for (;;) {
        ssize_t n = read(c->rfd, c->out + c->len, sizeof(c->out) - 1 - c->len);
        if (n <= 0)
            break;
        c->len += (size_t)n;
    }
    c->out[c->len] = '\0';
    return c->out;
}

static int count_lines(const char *s)
{
    int n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

/* Parse one JSON line (without its "\n"), asserting the four documented keys and no others. */
static json_t *parse_line(const char *line, size_t len)
{
    json_error_t err;
    json_t *j = json_loadb(line, len, JSON_REJECT_DUPLICATES, &err);
    if (!j)
        fail_msg("not JSON (%s): %.*s", err.text, (int)len, line);
    assert_true(json_is_object(j));
    assert_int_equal(json_object_size(j), 4);
    assert_true(json_is_string(json_object_get(j, "ts")));
    assert_true(json_is_string(json_object_get(j, "level")));
    assert_true(json_is_string(json_object_get(j, "service")));
    assert_true(json_is_string(json_object_get(j, "msg")));
    return j;
}

/* The single line captured: exactly one "\n", at the end. */
static json_t *only_json_line(capture_t *c)
{
    const char *out = drain(c);
    assert_int_equal(count_lines(out), 1);
    assert_int_equal(out[c->len - 1], '\n');
    return parse_line(out, c->len - 1);
}

static void assert_matches(const char *text, const char *pattern)
{
    regex_t re;
    assert_int_equal(regcomp(&re, pattern, REG_EXTENDED | REG_NOSUB), 0);
    int rc = regexec(&re, text, 0, NULL, 0);
    regfree(&re);
    if (rc != 0)
        fail_msg("\"%s\" does not match /%s/", text, pattern);
}

/* ---- levels -------------------------------------------------------------------------------- */

static void test_level_filtering(void **state)
{
    capture_t *c = *state;
    log_set_level(LOG_WARN);
    assert_int_equal(log_get_level(), LOG_WARN);
    log_debug("debug %d", 1);
    log_info("info %d", 2);
    log_warn("warn %d", 3);
    log_error("error %d", 4);
    log_write(LOG_FATAL, "fatal %d", 5);
    const char *out = drain(c);
    assert_int_equal(count_lines(out), 3);
    assert_null(strstr(out, "debug 1"));
    assert_null(strstr(out, "info 2"));
    assert_non_null(strstr(out, "WARN  jrp: warn 3\n"));
    assert_non_null(strstr(out, "ERROR jrp: error 4\n"));
    assert_non_null(strstr(out, "FATAL jrp: fatal 5\n"));

    c->len = 0;
    log_set_level(LOG_DEBUG);
    log_debug("debug %d", 6);
    log_info("info %d", 7);
    out = drain(c);
    assert_int_equal(count_lines(out), 2);
    assert_non_null(strstr(out, "DEBUG jrp: debug 6\n"));
    assert_non_null(strstr(out, "INFO  jrp: info 7\n"));

    c->len = 0;
    log_set_level(LOG_ERROR);
    log_warn("warn %d", 8);
    assert_string_equal(drain(c), "");
}

/* log_debug() must not even evaluate its arguments when debug is off. */
static int evaluated;
static int side_effect(void)
{
    return ++evaluated;
}

static void test_debug_arguments_not_evaluated(void **state)
{
    capture_t *c = *state;
    evaluated = 0;
    log_debug("%d", side_effect());
    assert_int_equal(evaluated, 0);
    assert_string_equal(drain(c), "");
    log_set_level(LOG_DEBUG);
    log_debug("%d", side_effect());
    assert_int_equal(evaluated, 1);
}

static void test_level_names(void **state)
{
    (void)state;
    static const struct {
        const char *name;
        log_level_t level;
    } ok[] = {{"debug", LOG_DEBUG}, {"info", LOG_INFO},   {"warn", LOG_WARN},
              {"error", LOG_ERROR}, {"DEBUG", LOG_DEBUG}, {"Warn", LOG_WARN}};
    for (size_t i = 0; i < sizeof(ok) / sizeof(*ok); i++) {
        log_set_level(LOG_FATAL);
        assert_int_equal(log_set_level_name(ok[i].name), 0);
        assert_int_equal(log_get_level(), ok[i].level);
    }

    static const char *const bad[] = {"", "warning", "verbose", "info ", "fatal", "0", "trace"};
    log_set_level(LOG_WARN);
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
        assert_int_equal(log_set_level_name(bad[i]), -1);
        assert_int_equal(log_get_level(), LOG_WARN); /* unchanged by a bad name */
    }
    assert_int_equal(log_set_level_name(NULL), -1);
    assert_int_equal(log_get_level(), LOG_WARN);
}

/* ---- plain format -------------------------------------------------------------------------- */

static void test_plain_format(void **state)
{
    capture_t *c = *state;
    log_set_service("engine");
    log_info("hello %s %d", "world", 42);
    const char *out = drain(c);
    assert_matches(out, "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z "
                        "INFO  engine: hello world 42\n$");

    c->len = 0;
    log_error("x");
    assert_matches(drain(c), "Z ERROR engine: x\n$");
}

/* A message cannot forge a second line in plain mode either. */
static void test_plain_escapes_control_characters(void **state)
{
    capture_t *c = *state;
    log_info("a\nb\r\tc\001d\177e 中文"); /* octal: a hex escape would swallow the "d" */
    const char *out = drain(c);
    assert_int_equal(count_lines(out), 1);
    assert_non_null(strstr(out, "jrp: a\\nb\\r\\tc\\x01d\\x7fe 中文\n"));

    c->len = 0;
    log_info("bad \xff and cut \xe4\xb8");
    assert_non_null(strstr(drain(c), "jrp: bad \\xff and cut \\xe4\\xb8\n"));
}

static void test_service_is_copied(void **state)
{
    capture_t *c = *state;
    char name[16] = "gateway";
    log_set_service(name);
    strcpy(name, "changed");
    log_info("m");
    assert_non_null(strstr(drain(c), " gateway: m\n"));

    c->len = 0;
    log_set_service(""); /* empty falls back to the default */
    log_info("m");
    assert_non_null(strstr(drain(c), " jrp: m\n"));
}

/* log_set_fd(-1) goes back to stderr. */
static void test_negative_fd_means_stderr(void **state)
{
    capture_t *c = *state;
    fflush(stderr);
    int saved = dup(STDERR_FILENO);
    assert_true(saved >= 0);
    assert_int_equal(dup2(c->wfd, STDERR_FILENO), STDERR_FILENO);
    log_set_fd(-1);
    log_warn("to stderr");
    assert_int_equal(dup2(saved, STDERR_FILENO), STDERR_FILENO);
    close(saved);
    assert_non_null(strstr(drain(c), "WARN  jrp: to stderr\n"));
}

static void test_errno_preserved(void **state)
{
    (void)state;
    errno = EINVAL;
    log_info("something failed: %s", strerror(errno));
    assert_int_equal(errno, EINVAL);
}

/* ---- JSON format --------------------------------------------------------------------------- */

static void test_json_fields(void **state)
{
    capture_t *c = *state;
    log_set_json(1);
    log_set_service("engine");
    log_warn("plain message %d", 7);
    json_t *j = only_json_line(c);
    assert_string_equal(json_string_value(json_object_get(j, "level")), "warn");
    assert_string_equal(json_string_value(json_object_get(j, "service")), "engine");
    assert_string_equal(json_string_value(json_object_get(j, "msg")), "plain message 7");
    assert_matches(json_string_value(json_object_get(j, "ts")),
                   "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z$");
    json_decref(j);

    static const struct {
        log_level_t level;
        const char *name;
    } levels[] = {{LOG_INFO, "info"}, {LOG_ERROR, "error"}, {LOG_FATAL, "fatal"}};
    for (size_t i = 0; i < sizeof(levels) / sizeof(*levels); i++) {
        c->len = 0;
        log_write(levels[i].level, "x");
        j = only_json_line(c);
        assert_string_equal(json_string_value(json_object_get(j, "level")), levels[i].name);
        json_decref(j);
    }
}

static void test_json_escapes_message(void **state)
{
    capture_t *c = *state;
    log_set_json(1);
    static const char *const messages[] = {
        "say \"hi\"",
        "two\nlines\r\n",
        "back\\slash and \\\" together",
        "tab\there, bell\a, escape\x1b[31m, del\x7f",
        "\"}\n{\"level\":\"fatal\",\"msg\":\"forged",
        "中文 and 津A12345 and emoji \xf0\x9f\x9a\x9a",
        "",
    };
    for (size_t i = 0; i < sizeof(messages) / sizeof(*messages); i++) {
        c->len = 0;
        log_info("%s", messages[i]);
        json_t *j = only_json_line(c);
        assert_string_equal(json_string_value(json_object_get(j, "msg")), messages[i]);
        assert_string_equal(json_string_value(json_object_get(j, "level")), "info");
        json_decref(j);
    }
    c->len = 0;
    log_info("%s", messages[0]);
    assert_non_null(strstr(drain(c), "\"msg\":\"say \\\"hi\\\"\"}\n"));
}

/* Invalid UTF-8 would make the whole line unparseable; it becomes U+FFFD instead. */
static void test_json_invalid_utf8(void **state)
{
    capture_t *c = *state;
    log_set_json(1);
    static const struct {
        const char *in;
        const char *want;
    } cases[] = {
        {"bad \xff byte", "bad \xef\xbf\xbd byte"},
        {"overlong \xc0\xaf", "overlong \xef\xbf\xbd\xef\xbf\xbd"},
        {"surrogate \xed\xa0\x80", "surrogate \xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"},
        {"cut \xe4\xb8", "cut \xef\xbf\xbd\xef\xbf\xbd"},
        {"too big \xf4\x90\x80\x80", "too big \xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"},
        {"lone \x80 continuation", "lone \xef\xbf\xbd continuation"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
        c->len = 0;
        log_info("%s", cases[i].in);
        json_t *j = only_json_line(c);
        assert_string_equal(json_string_value(json_object_get(j, "msg")), cases[i].want);
        json_decref(j);
    }
}

/* A message longer than a line is truncated, never cut inside an escape: still one JSON line. */
static void test_json_long_message(void **state)
{
    capture_t *c = *state;
    log_set_json(1);
    static const char fills[] = {'a', '"', '\x01', '\n'};
    char *big = malloc(20001);
    assert_non_null(big);
    for (size_t f = 0; f < sizeof(fills); f++) {
        memset(big, fills[f], 20000);
        big[20000] = '\0';
        c->len = 0;
        log_info("%s", big);
        json_t *j = only_json_line(c);
        const char *msg = json_string_value(json_object_get(j, "msg"));
        assert_true(strlen(msg) > 500);
        assert_true(strspn(msg, (char[]){fills[f], 0}) == strlen(msg));
        assert_true(c->len <= 8192);
        json_decref(j);
    }
    /* a message cut by the length limit does not end in half a character */
    for (int i = 0; i < 5000; i++)
        memcpy(big + 4 * i, "\xf0\x9f\x9a\x9a", 4); /* 4 bytes: 4095 is not a multiple */
    big[20000] = '\0';
    c->len = 0;
    log_info("%s", big);
    json_t *j = only_json_line(c);
    const char *msg = json_string_value(json_object_get(j, "msg"));
    assert_int_equal(strlen(msg) % 4, 0);
    assert_null(strstr(msg, "\xef\xbf\xbd"));
    json_decref(j);

    /* nor does a line cut by the line limit, with escapes and characters mixed */
    for (int i = 0; i < 5000; i++)
        memcpy(big + 4 * i, "\x01中", 4);
    c->len = 0;
    log_info("%s", big);
    j = only_json_line(c); /* jansson rejects invalid UTF-8, so parsing is the check */
    msg = json_string_value(json_object_get(j, "msg"));
    assert_null(strstr(msg, "\xef\xbf\xbd"));
    assert_true(c->len <= 8192);
    json_decref(j);
    free(big);
}

static void test_json_service_escaped(void **state)
{
    capture_t *c = *state;
    log_set_json(1);
    log_set_service("we\"ird\nname");
    log_info("m");
    json_t *j = only_json_line(c);
    assert_string_equal(json_string_value(json_object_get(j, "service")), "we\"ird\nname");
    json_decref(j);
}

/* ---- log_subject --------------------------------------------------------------------------- */

static void test_log_subject(void **state)
{
    (void)state;
    char buf[64];
    assert_string_equal(log_subject(2, PERSON, buf, sizeof(buf)), "person:110105********002X");
    assert_ptr_equal(log_subject(2, PERSON, buf, sizeof(buf)), buf);
    assert_string_equal(log_subject(1, CREDIT, buf, sizeof(buf)), "enterprise:" CREDIT);
    assert_string_equal(log_subject(3, "津A12345", buf, sizeof(buf)), "vehicle:津A12345");
    /* an unknown type may be anything, personal data included: masked */
    assert_string_equal(log_subject(0, PERSON, buf, sizeof(buf)), "unknown:110105********002X");
    assert_string_equal(log_subject(9, PERSON, buf, sizeof(buf)), "unknown:110105********002X");
    assert_string_equal(log_subject(2, "12345", buf, sizeof(buf)), "person:*****");
    assert_string_equal(log_subject(2, NULL, buf, sizeof(buf)), "person:");

    /* truncation never reveals more than the masked form */
    char small[12];
    assert_string_equal(log_subject(2, PERSON, small, sizeof(small)), "person:1101");
    assert_string_equal(log_subject(2, PERSON, NULL, 0), "");
}

static void test_log_subject_in_lines(void **state)
{
    capture_t *c = *state;
    char s1[64], s2[64];
    log_info("listed %s and %s", log_subject(2, PERSON, s1, sizeof(s1)),
             log_subject(1, CREDIT, s2, sizeof(s2)));
    log_set_json(1);
    log_info("listed %s", log_subject(2, PERSON, s1, sizeof(s1)));
    const char *out = drain(c);
    assert_int_equal(count_lines(out), 2);
    assert_null(strstr(out, PERSON));
    assert_null(strstr(out, "19491231"));
    assert_non_null(strstr(out, "person:110105********002X and enterprise:" CREDIT "\n"));
    assert_non_null(strstr(out, "\"msg\":\"listed person:110105********002X\"}\n"));
}

/* ---- concurrency --------------------------------------------------------------------------- */

#define WRITERS 4
#define LINES_EACH 200

static void *writer(void *arg)
{
    int id = (int)(intptr_t)arg;
    char pad[600];
    memset(pad, 'a' + id, sizeof(pad) - 1);
    pad[sizeof(pad) - 1] = '\0';
    for (int i = 0; i < LINES_EACH; i++)
        log_info("writer %d line %d %s", id, i, pad);
    return NULL;
}

/* Lines from concurrent threads arrive whole (one write() per line, below PIPE_BUF). */
static void test_concurrent_lines_whole(void **state)
{
    capture_t *c = *state;
    log_set_json(1);
    int flags = fcntl(c->rfd, F_GETFL);
    fcntl(c->rfd, F_SETFL, flags & ~O_NONBLOCK); /* read blocking while writers run */

    pthread_t th[WRITERS];
    for (int i = 0; i < WRITERS; i++)
        assert_int_equal(pthread_create(&th[i], NULL, writer, (void *)(intptr_t)i), 0);

    size_t cap = 2 * 1024 * 1024, len = 0;
    char *all = malloc(cap);
    assert_non_null(all);
    int lines = 0;
    while (lines < WRITERS * LINES_EACH) {
        ssize_t n = read(c->rfd, all + len, cap - 1 - len);
        assert_true(n > 0);
        for (ssize_t k = 0; k < n; k++)
            lines += all[len + (size_t)k] == '\n';
        len += (size_t)n;
    }
    for (int i = 0; i < WRITERS; i++)
        pthread_join(th[i], NULL);
    all[len] = '\0';

    int seen[WRITERS] = {0};
    char *line = all;
    for (int i = 0; i < lines; i++) {
        char *nl = strchr(line, '\n');
        assert_non_null(nl);
        json_t *j = parse_line(line, (size_t)(nl - line));
        int w = -1, k = -1;
        assert_int_equal(
            sscanf(json_string_value(json_object_get(j, "msg")), "writer %d line %d", &w, &k), 2);
        assert_true(w >= 0 && w < WRITERS);
        assert_int_equal(k, seen[w]); /* each writer's lines in order, none lost */
        seen[w]++;
        json_decref(j);
        line = nl + 1;
    }
    for (int i = 0; i < WRITERS; i++)
        assert_int_equal(seen[i], LINES_EACH);
    free(all);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_level_filtering, setup, teardown),
        cmocka_unit_test_setup_teardown(test_debug_arguments_not_evaluated, setup, teardown),
        cmocka_unit_test_setup_teardown(test_level_names, setup, teardown),
        cmocka_unit_test_setup_teardown(test_plain_format, setup, teardown),
        cmocka_unit_test_setup_teardown(test_plain_escapes_control_characters, setup, teardown),
        cmocka_unit_test_setup_teardown(test_service_is_copied, setup, teardown),
        cmocka_unit_test_setup_teardown(test_negative_fd_means_stderr, setup, teardown),
        cmocka_unit_test_setup_teardown(test_errno_preserved, setup, teardown),
        cmocka_unit_test_setup_teardown(test_json_fields, setup, teardown),
        cmocka_unit_test_setup_teardown(test_json_escapes_message, setup, teardown),
        cmocka_unit_test_setup_teardown(test_json_invalid_utf8, setup, teardown),
        cmocka_unit_test_setup_teardown(test_json_long_message, setup, teardown),
        cmocka_unit_test_setup_teardown(test_json_service_escaped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_log_subject, setup, teardown),
        cmocka_unit_test_setup_teardown(test_log_subject_in_lines, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_lines_whole, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
