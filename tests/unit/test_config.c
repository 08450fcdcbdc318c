/*
 * Unit tests for common/config: table checks, file/env/override precedence, errors naming the
 * file and line, kafka.* pass-through checked against librdkafka.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"

static char tmp_path[64];

static const char *write_tmp(const char *text)
{
    snprintf(tmp_path, sizeof(tmp_path), "/tmp/jrp-test-config-XXXXXX");
    int fd = mkstemp(tmp_path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    return tmp_path;
}

static void test_defaults(void **state)
{
    (void)state;
    config_t *cfg = config_create();
    assert_non_null(cfg);
    assert_string_equal(config_get(cfg, "topic.prefix"), "credit.");
    assert_int_equal(config_get_int(cfg, "engine.batch_max_events"), 1000);
    assert_null(config_get(cfg, "no.such.key"));
    assert_null(config_get(cfg, "dispatch.transport.url"));
    assert_int_equal(config_get_int(cfg, "dispatch.transport.timeout_ms"), 10000);
    assert_true(config_get_decimal(cfg, "gateway.linger_ms") == 0.1);
    char buf[64];
    assert_string_equal(config_topic(cfg, "events", buf, sizeof(buf)), "credit.events");
    config_destroy(cfg);
}

static void test_file_ok(void **state)
{
    (void)state;
    config_t *cfg = config_create();
    char err[512] = "";
    const char *p = write_tmp("# comment\n\n kafka.bootstrap.servers = 127.0.0.1:1234 \n"
                              "topic.prefix=t1.\nengine.batch_max_events = 50\n"
                              "gateway.listen = 127.0.0.1:0\nlog.format = json\n"
                              "kafka.linger.ms = 5\ndispatch.transport.url = https://x/y\n"
                              "gateway.linger_ms = 2.5\n");
    assert_int_equal(config_load_file(cfg, p, err, sizeof(err)), 0);
    assert_string_equal(config_get(cfg, "kafka.bootstrap.servers"), "127.0.0.1:1234");
    assert_string_equal(config_get(cfg, "topic.prefix"), "t1.");
    assert_int_equal(config_get_int(cfg, "engine.batch_max_events"), 50);
    assert_string_equal(config_get(cfg, "dispatch.transport.url"), "https://x/y");
    assert_true(config_get_decimal(cfg, "gateway.linger_ms") == 2.5);
    char host[64];
    int port = -1;
    assert_int_equal(config_get_hostport(cfg, "gateway.listen", host, sizeof(host), &port), 0);
    assert_string_equal(host, "127.0.0.1");
    assert_int_equal(port, 0);
    rd_kafka_conf_t *kc = rd_kafka_conf_new();
    assert_int_equal(config_apply_kafka(cfg, kc, err, sizeof(err)), 0);
    char v[64];
    size_t vs = sizeof(v);
    assert_int_equal(rd_kafka_conf_get(kc, "linger.ms", v, &vs), RD_KAFKA_CONF_OK);
    assert_string_equal(v, "5");
    rd_kafka_conf_destroy(kc);
    unlink(p);
    config_destroy(cfg);
}

/* Each bad file must fail naming file:line and the problem. */
static void test_file_errors(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        const char *line;
        const char *needle;
    } cases[] = {
        {"topic.prefix = a\nno.such = 1\n", ":2:", "unknown key \"no.such\""},
        {"engine.batch_max_events = 0\n", ":1:", "outside 1..100000"},
        {"engine.batch_max_events = ten\n", ":1:", "not a whole number"},
        {"log.format = xml\n", ":1:", "not one of plain|json"},
        {"gateway.linger_ms = 0.1ms\n", ":1:", "\"0.1ms\" is not a decimal number"},
        {"gateway.linger_ms = 1e2\n", ":1:", "not a decimal number"},
        {"gateway.linger_ms = .\n", ":1:", "not a decimal number"},
        {"gateway.linger_ms = 1.2.3\n", ":1:", "not a decimal number"},
        {"gateway.linger_ms = -0.5\n", ":1:", "-0.5 is outside 0..1000"},
        {"gateway.linger_ms = 1000.5\n", ":1:", "outside 0..1000"},
        {"gateway.listen = localhost\n", ":1:", "not host:port"},
        {"gateway.listen = h:70000\n", ":1:", "not host:port"},
        {"\n\njust words\n", ":3:", "expected \"key = value\""},
        {" = v\n", ":1:", "empty key"},
        {"kafka.no.such.property = 1\n", ":1:", "kafka.no.such.property"},
        {"kafka.linger.ms = abc\n", ":1:", "kafka.linger.ms"},
        {"dispatch.transport.concurrency = 0\n", ":1:", "outside 1..1024"},
        {"dispatch..url = x\n", ":1:", "unknown key"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        config_t *cfg = config_create();
        char err[512] = "";
        const char *p = write_tmp(cases[i].text);
        assert_int_equal(config_load_file(cfg, p, err, sizeof(err)), -1);
        if (!strstr(err, p) || !strstr(err, cases[i].line) || !strstr(err, cases[i].needle))
            fail_msg("case %zu: error \"%s\" lacks file, \"%s\" or \"%s\"", i, err, cases[i].line,
                     cases[i].needle);
        unlink(p);
        config_destroy(cfg);
    }
}

static void test_missing_file(void **state)
{
    (void)state;
    config_t *cfg = config_create();
    char err[512] = "";
    assert_int_equal(config_load_file(cfg, "/nonexistent/jrp.conf", err, sizeof(err)), -1);
    assert_non_null(strstr(err, "/nonexistent/jrp.conf"));
    assert_non_null(strstr(err, "cannot open"));
    config_destroy(cfg);
}

/* defaults < file < environment < -o, whatever the order on the command line. */
static void test_precedence_and_args(void **state)
{
    (void)state;
    config_t *cfg = config_create();
    char err[512] = "";
    const char *p = write_tmp("topic.prefix = file.\nengine.group = g-file\nlog.level = warn\n");
    char path[64];
    snprintf(path, sizeof(path), "%s", p);
    char *envp[] = {"JRP_ENGINE_GROUP=g-env",
                    "JRP_LOG_LEVEL=error",
                    "JRP_TEST_CONF=/x",
                    "JRP_KAFKA_PORT=1",
                    "JRP_KAFKA_LINGER_MS=7",
                    "PATH=/bin",
                    NULL};
    char *argv[] = {"prog", "-o", "log.level=debug", "rules", "check", "-c", path, "dir", NULL};
    int argc = 8;
    assert_int_equal(config_from_args(cfg, &argc, argv, envp, err, sizeof(err)), 0);
    assert_int_equal(argc, 4);
    assert_string_equal(argv[1], "rules");
    assert_string_equal(argv[2], "check");
    assert_string_equal(argv[3], "dir");
    assert_null(argv[4]);
    assert_string_equal(config_get(cfg, "topic.prefix"), "file.");
    assert_string_equal(config_get(cfg, "engine.group"), "g-env");
    assert_string_equal(config_get(cfg, "log.level"), "debug");
    assert_string_equal(config_get(cfg, "kafka.linger.ms"), "7");
    assert_null(config_get(cfg, "kafka.port")); /* a script's variable, not librdkafka's */
    unlink(path);
    config_destroy(cfg);
}

static void test_args_errors(void **state)
{
    (void)state;
    char err[512];
    config_t *cfg = config_create();
    char *argv1[] = {"prog", "-o", NULL};
    int argc = 2;
    assert_int_equal(config_from_args(cfg, &argc, argv1, NULL, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "-o needs a value"));
    char *argv2[] = {"prog", "-o", "novalue", NULL};
    argc = 3;
    assert_int_equal(config_from_args(cfg, &argc, argv2, NULL, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "expected key=value"));
    char *argv3[] = {"prog", "-o", "engine.batch_max_ms=0", NULL};
    argc = 3;
    assert_int_equal(config_from_args(cfg, &argc, argv3, NULL, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "engine.batch_max_ms"));
    char *envp[] = {"JRP_ENGINE_BATCH_MAX_MS=-5", NULL};
    char *argv4[] = {"prog", NULL};
    argc = 1;
    assert_int_equal(config_from_args(cfg, &argc, argv4, envp, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "JRP_ENGINE_BATCH_MAX_MS"));
    config_destroy(cfg);
}

/* Every table entry is well formed: defaults pass their own checks, help is present. */
static void test_table_consistent(void **state)
{
    (void)state;
    char err[512];
    for (size_t i = 0; i < config_defs_count; i++) {
        const config_def_t *d = &config_defs[i];
        assert_non_null(d->help);
        assert_true(strlen(d->help) > 5);
        assert_ptr_equal(config_find_def(d->name), d);
        if (!d->def || strchr(d->name, '*'))
            continue;
        config_t *cfg = config_create();
        if (config_set(cfg, d->name, d->def, "default", err, sizeof(err)))
            fail_msg("default of %s fails its own check: %s", d->name, err);
        config_destroy(cfg);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_file_ok),
        cmocka_unit_test(test_file_errors),
        cmocka_unit_test(test_missing_file),
        cmocka_unit_test(test_precedence_and_args),
        cmocka_unit_test(test_args_errors),
        cmocka_unit_test(test_table_consistent),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
