/*
 * test_store: the subject-state store against a real redis-server (redis.url from $JRP_TEST_CONF),
 * for the writes the engine sends without waiting (store_send_states): a later read on the same
 * store sees them, a write Redis refused is reported by the next call (naming it) and the store
 * stays usable, and writes that met a Redis without its scripts are reported, not lost in
 * silence, with the scripts loaded again for the next ones.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "jrp/v1/state.pb-c.h"
#include "redis.h"
#include "rules.h"
#include "store.h"
#include "testenv.h"

typedef struct fixture_s {
    config_t *cfg;
    store_t *st;
    redisContext *c; /* a second connection, to change Redis behind the store's back */
    char prefix[128];
} fixture_t;

static int setup(void **state)
{
    fixture_t *fx = calloc(1, sizeof(*fx));
    char err[512];
    const char *url = testenv_redis_url();
    if (!url)
        fail_msg("redis.url is not configured: point JRP_TEST_CONF at a file with it "
                 "(make up writes build/local/jrp.conf)");
    snprintf(fx->prefix, sizeof(fx->prefix), "%s:", testenv_unique("test-store"));
    fx->cfg = config_create();
    if (config_set(fx->cfg, "redis.url", url, "test", err, sizeof(err)) ||
        config_set(fx->cfg, "redis.prefix", fx->prefix, "test", err, sizeof(err)))
        fail_msg("config: %s", err);
    fx->st = store_create(fx->cfg, err, sizeof(err));
    if (!fx->st)
        fail_msg("store_create: %s", err);
    fx->c = redis_connect(url, 2000, err, sizeof(err));
    if (!fx->c)
        fail_msg("redis_connect: %s", err);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *fx = *state;
    /* Drop this test's keys (a handful). */
    redisReply *r = redisCommand(fx->c, "KEYS %s*", fx->prefix);
    for (size_t i = 0; r && r->type == REDIS_REPLY_ARRAY && i < r->elements; i++)
        freeReplyObject(redisCommand(fx->c, "UNLINK %s", r->element[i]->str));
    if (r)
        freeReplyObject(r);
    redisFree(fx->c);
    store_destroy(fx->st);
    config_destroy(fx->cfg);
    free(fx);
    return 0;
}

/* A packed state whose updated_at_ms is stamp. */
static uint8_t *packed_state(int64_t stamp, size_t *len)
{
    Jrp__V1__SubjectState s;
    jrp__v1__subject_state__init(&s);
    s.updated_at_ms = stamp;
    *len = jrp__v1__subject_state__get_packed_size(&s);
    uint8_t *buf = malloc(*len + 1);
    assert_non_null(buf);
    jrp__v1__subject_state__pack(&s, buf);
    return buf;
}

/* Load one subject's state: its updated_at_ms (-1 when none) and offset, or fail the test. */
static int64_t load_stamp(fixture_t *fx, const char *key, int64_t *offset)
{
    char err[512];
    const char *keys[] = {key};
    Jrp__V1__SubjectState *st = NULL;
    if (store_load_states(fx->st, 1, keys, &st, offset, err, sizeof(err)))
        fail_msg("store_load_states: %s", err);
    int64_t stamp = st ? st->updated_at_ms : -1;
    if (st)
        rules_state_free(st);
    return stamp;
}

static void test_sent_writes_seen_by_next_read(void **state)
{
    fixture_t *fx = *state;
    char err[512];
    size_t la, lb;
    uint8_t *a = packed_state(1111, &la), *b = packed_state(2222, &lb);
    store_write_t w[] = {{"enterprise:A", 0, 5, a, la, 0}, {"enterprise:B", 1, 7, b, lb, 0}};
    assert_int_equal(store_send_states(fx->st, w, 2, err, sizeof(err)), 0);
    /* The read goes out after the writes on the same connection, so it sees them. */
    int64_t off = 0;
    assert_int_equal(load_stamp(fx, "enterprise:A", &off), 1111);
    assert_int_equal(off, 5);
    assert_int_equal(load_stamp(fx, "enterprise:B", &off), 2222);
    assert_int_equal(off, 7);
    /* Both replies were read by the loads: nothing is left to settle. */
    assert_int_equal(store_settle(fx->st, err, sizeof(err)), 0);
    /* An older offset does not overwrite a newer state. */
    store_write_t older = {"enterprise:A", 0, 4, b, lb, 0};
    assert_int_equal(store_send_states(fx->st, &older, 1, err, sizeof(err)), 0);
    assert_int_equal(store_settle(fx->st, err, sizeof(err)), 0);
    assert_int_equal(load_stamp(fx, "enterprise:A", &off), 1111);
    free(a);
    free(b);
}

static void test_refused_write_reported_by_next_call(void **state)
{
    fixture_t *fx = *state;
    char err[512], key[512];
    size_t len;
    uint8_t *s = packed_state(3333, &len);
    /* The state key holds a string: the script's HGET fails with WRONGTYPE. */
    store_state_key(fx->st, "enterprise:C", key, sizeof(key));
    freeReplyObject(redisCommand(fx->c, "SET %s not-a-hash", key));
    store_write_t w = {"enterprise:C", 0, 9, s, len, 0};
    assert_int_equal(store_send_states(fx->st, &w, 1, err, sizeof(err)), 0);
    const char *keys[] = {"enterprise:D"};
    Jrp__V1__SubjectState *st = NULL;
    int64_t off;
    err[0] = '\0';
    assert_int_equal(store_load_states(fx->st, 1, keys, &st, &off, err, sizeof(err)), -1);
    if (!strstr(err, "state write") || !strstr(err, "WRONGTYPE"))
        fail_msg("the refused write is not named: %s", err);
    /* Reported once; the store goes on. */
    int64_t o2 = 0;
    assert_int_equal(load_stamp(fx, "enterprise:D", &o2), -1);
    assert_int_equal(o2, -1);
    free(s);
}

static void test_lost_scripts_reported(void **state)
{
    fixture_t *fx = *state;
    char err[512];
    size_t len;
    uint8_t *s = packed_state(4444, &len);
    store_write_t w = {"enterprise:E", 2, 11, s, len, 0};
    freeReplyObject(redisCommand(fx->c, "SCRIPT FLUSH"));
    assert_int_equal(store_send_states(fx->st, &w, 1, err, sizeof(err)), 0);
    err[0] = '\0';
    assert_int_equal(store_settle(fx->st, err, sizeof(err)), -1);
    if (!strstr(err, "no scripts"))
        fail_msg("lost scripts not reported: %s", err);
    int64_t off = 0;
    assert_int_equal(load_stamp(fx, "enterprise:E", &off), -1); /* it did not happen */
    /* The scripts were loaded again: the same write now goes through. */
    assert_int_equal(store_send_states(fx->st, &w, 1, err, sizeof(err)), 0);
    assert_int_equal(store_settle(fx->st, err, sizeof(err)), 0);
    assert_int_equal(load_stamp(fx, "enterprise:E", &off), 4444);
    assert_int_equal(off, 11);
    free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_sent_writes_seen_by_next_read, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refused_write_reported_by_next_call, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lost_scripts_reported, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
