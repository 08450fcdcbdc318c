/*
 * test_ctl_check: `jrpctl check` answers from what the engine keeps in Redis, filters by
 * department, refuses bad identifiers with one line, and records every check on credit.checks.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "harness.h"
#include "jrp/v1/check.pb-c.h"

#define ENT1 "91350100M000100Y43"

/* jrpctl check ARGS: exit 0 and a JSON answer; returns the number of measures. */
static size_t check_ok(harness_t *h, const char *args, const char *want_department)
{
    static char out[262144];
    int rc = harness_jrpctl(h, out, sizeof(out), "check %s", args);
    if (rc != 0)
        fail_msg("jrpctl check %s: exit %d: %s", args, rc, out);
    json_error_t jerr;
    json_t *j = json_loads(out, 0, &jerr);
    if (!j)
        fail_msg("jrpctl check %s: not JSON (%s): %s", args, jerr.text, out);
    json_t *measures = json_object_get(j, "measures");
    assert_true(json_is_array(measures));
    size_t n = json_array_size(measures);
    for (size_t i = 0; i < n; i++) {
        json_t *m = json_array_get(measures, i);
        assert_true(strlen(json_string_value(json_object_get(m, "measure_text"))) > 0);
        assert_true(strlen(json_string_value(json_object_get(m, "legal_basis"))) > 0);
        assert_string_equal(json_string_value(json_object_get(m, "memorandum_id")),
                            "overload-2017");
        if (want_department)
            assert_string_equal(json_string_value(json_object_get(m, "department")),
                                want_department);
    }
    assert_int_equal(strncmp(json_string_value(json_object_get(j, "requested_by")), "jrpctl:", 7),
                     0);
    json_decref(j);
    return n;
}

static void test_check_answers_and_records(void **state)
{
    (void)state;
    harness_t *h = harness_create("ctlcheck", NULL);
    harness_load_rules(h, NULL);
    harness_engine_start(h);
    Jrp__V1__CreditEvent *ev = harness_event("c-1", JRP__V1__EVENT_KIND__EVENT_KIND_LISTED,
                                             JRP__V1__SUBJECT_TYPE__SUBJECT_TYPE_ENTERPRISE, ENT1,
                                             "black.overload", harness_now_ms());
    harness_send(h, &ev, 1);
    jrp__v1__credit_event__free_unpacked(ev, NULL);
    assert_int_equal(harness_wait_decisions(h, 1, 60000), 1);
    /* Redis is written right after the commit the decision came in. */
    size_t n = 0;
    for (int i = 0; i < 100 && n != 5; i++) {
        n = check_ok(h, "enterprise " ENT1, NULL);
        if (n != 5)
            usleep(100000);
    }
    assert_int_equal(n, 5); /* transport ×2, finance, ndrc, market */
    assert_int_equal(check_ok(h, "enterprise " ENT1 " --department transport", "transport"), 2);
    assert_int_equal(check_ok(h, "enterprise " ENT1 " --department tax", NULL), 0);
    /* A subject nobody listed has no measures: that is an answer, and recorded too. */
    assert_int_equal(check_ok(h, "enterprise 91512081MA62K0260E", NULL), 0);

    char out[4096];
    assert_int_equal(harness_jrpctl(h, out, sizeof(out), "check enterprise 91350100M000100Y44"), 1);
    assert_non_null(strstr(out, "jrpctl: check enterprise 91350100M000100Y44: "));
    assert_int_equal(harness_jrpctl(h, out, sizeof(out), "check company " ENT1), 1);
    assert_int_equal(harness_jrpctl(h, out, sizeof(out), "check enterprise"), 1);
    assert_non_null(strstr(out, "check needs TYPE and ID"));
    assert_int_equal(
        harness_jrpctl(h, out, sizeof(out), "check enterprise " ENT1 " --department Bad-Dept"), 1);
    assert_non_null(strstr(out, "--department: \"Bad-Dept\" is not a department code"));

    /* At least the 4 answered checks (the first may have been asked more than once). */
    harness_records_t r;
    harness_read(h, "checks", &jrp__v1__check_record__descriptor, 4, 1000, 30000, &r);
    assert_true(r.n >= 4);
    /* Partitions interleave: find the unknown subject's record by its key. */
    size_t at = r.n;
    for (size_t i = 0; i < r.n; i++)
        if (!strcmp(r.keys[i], "enterprise:91512081MA62K0260E"))
            at = i;
    assert_true(at < r.n);
    const Jrp__V1__CheckRecord *rec = r.values[at];
    assert_int_equal(rec->n_measures, 0);
    assert_int_equal(strlen(rec->check_id), 32);
    assert_non_null(strstr(r.header_dump[at], "jrp-schema=jrp.v1.CheckRecord;"));
    harness_records_free(&r, &jrp__v1__check_record__descriptor);
    assert_int_equal(harness_engine_signal(h, SIGTERM), 0);
    harness_destroy(h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_check_answers_and_records),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
