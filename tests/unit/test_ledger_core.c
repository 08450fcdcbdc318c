/*
 * test_ledger_core: the pure parts of jrp-ledger and of the report: feedback ordering (the final
 * status does not depend on the order reports are consumed in), disclosure ids, deadlines in
 * calendar and compressed time, the action-topic pattern, effects-list aggregation and its JSON
 * and CSV, and the time bounds the report accepts.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <jansson.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jrp/v1/feedback.pb-c.h"
#include "ledger_core.h"
#include "report.h"
#include "workdays.h"

#define RECEIVED JRP__V1__FEEDBACK_STATUS__FEEDBACK_STATUS_RECEIVED
#define EXECUTED JRP__V1__FEEDBACK_STATUS__FEEDBACK_STATUS_EXECUTED
#define REJECTED JRP__V1__FEEDBACK_STATUS__FEEDBACK_STATUS_REJECTED
#define FAILED JRP__V1__FEEDBACK_STATUS__FEEDBACK_STATUS_FAILED

static int64_t cst(int y, int m, int d, int hh, int mm)
{
    return workdays_cst_day_start_ms(workdays_days_from_civil(y, m, d)) +
           ((int64_t)hh * 60 + mm) * 60000;
}

static void test_feedback_order(void **state)
{
    (void)state;
    int64_t t = cst(2026, 3, 2, 10, 0);
    /* A final report beats anything earlier in rank, whatever its time. */
    assert_true(ledger_feedback_score(EXECUTED, t) > ledger_feedback_score(RECEIVED, t + 99999));
    assert_true(ledger_feedback_score(EXECUTED, t) > ledger_feedback_score(FAILED, t + 99999));
    assert_true(ledger_feedback_score(FAILED, t) > ledger_feedback_score(RECEIVED, t + 99999));
    /* Between final reports, the later one wins; at the same instant, the larger status. */
    assert_true(ledger_feedback_score(REJECTED, t + 1) > ledger_feedback_score(EXECUTED, t));
    assert_true(ledger_feedback_score(EXECUTED, t + 1) > ledger_feedback_score(REJECTED, t));
    assert_true(ledger_feedback_score(REJECTED, t) > ledger_feedback_score(EXECUTED, t));
    assert_int_equal(ledger_feedback_score(0, t), 0);
    assert_int_equal(ledger_feedback_score(99, t), 0);
    /* Below 2^53 even at the clamp, so Lua's doubles compare it exactly. */
    assert_true(ledger_feedback_score(REJECTED, INT64_MAX) < (1LL << 53));
    assert_true(ledger_feedback_score(RECEIVED, -5) > 0);
    /* Every order of the same reports ends in the same maximum. */
    int st[] = {RECEIVED, FAILED, EXECUTED, RECEIVED};
    int64_t at[] = {t, t + 10, t + 5, t + 20};
    int perm[24][4], np = 0;
    for (int a = 0; a < 4; a++)
        for (int b = 0; b < 4; b++)
            for (int c = 0; c < 4; c++)
                for (int d = 0; d < 4; d++)
                    if (a != b && a != c && a != d && b != c && b != d && c != d) {
                        int p[4] = {a, b, c, d};
                        memcpy(perm[np++], p, sizeof(p));
                    }
    for (int i = 0; i < np; i++) {
        int64_t best = 0;
        int final = 0;
        for (int k = 0; k < 4; k++) {
            int64_t s = ledger_feedback_score(st[perm[i][k]], at[perm[i][k]]);
            if (s > best) {
                best = s;
                final = st[perm[i][k]];
            }
        }
        assert_int_equal(final, EXECUTED);
    }
    assert_true(ledger_status_is_final(EXECUTED) && ledger_status_is_final(REJECTED));
    assert_false(ledger_status_is_final(RECEIVED) || ledger_status_is_final(FAILED));
    assert_string_equal(ledger_status_name(FAILED), "failed");
    assert_null(ledger_status_name(0));
}

static void test_disclosure_ids(void **state)
{
    (void)state;
    assert_string_equal(ledger_disclosure_event("disclosure:ev-9"), "ev-9");
    assert_null(ledger_disclosure_event("disclosure:"));
    assert_null(ledger_disclosure_event("9c5dc2f4b7c59e71fd5b263b65845631"));
    assert_null(ledger_disclosure_event("Disclosure:ev-9"));
    assert_null(ledger_disclosure_event(NULL));
}

static void test_deadlines(void **state)
{
    (void)state;
    char err[256], path[1024];
    const char *root = getenv("JRP_ROOT");
    snprintf(path, sizeof(path), "%s/deploy/calendar/cn-workdays.json", root ? root : ".");
    workdays_t *cal = workdays_load(path, err, sizeof(err));
    assert_non_null(cal);
    ledger_clock_t clk = {cal, 0};
    int64_t dl, due;
    /* A penalty decided Thursday 12 Feb 2026: 7 working days across Spring Festival end with
     * Saturday 28 Feb (调休); the DUE alert comes at its start. */
    assert_int_equal(
        ledger_disclosure_deadline(&clk, cst(2026, 2, 12, 9, 30), &dl, &due, err, sizeof(err)), 0);
    assert_int_equal(dl, cst(2026, 3, 1, 0, 0));
    assert_int_equal(due, cst(2026, 2, 28, 0, 0));
    /* Feedback due 5 working days after Thursday 24 Sep 2026, across Mid-Autumn and National Day.
     */
    assert_int_equal(ledger_deadline(&clk, cst(2026, 9, 24, 18, 0), 5, &dl, err, sizeof(err)), 0);
    assert_int_equal(dl, cst(2026, 10, 10, 0, 0)); /* 28, 29, 30 Sep, 8 and 9 Oct */
    /* Leaving the calendar: refused, never guessed. */
    assert_int_equal(
        ledger_disclosure_deadline(&clk, cst(2026, 12, 25, 9, 0), &dl, &due, err, sizeof(err)),
        -ERANGE);
    assert_non_null(strstr(err, "2027"));
    /* Compressed time: a working day lasts workday_ms. */
    ledger_clock_t fast = {cal, 8000};
    assert_int_equal(ledger_disclosure_deadline(&fast, 1000, &dl, &due, err, sizeof(err)), 0);
    assert_int_equal(dl, 1000 + 7 * 8000);
    assert_int_equal(due, 1000 + 6 * 8000);
    assert_int_equal(ledger_deadline(&fast, 5, 2, &dl, err, sizeof(err)), 0);
    assert_int_equal(dl, 16005);
    workdays_destroy(cal);
}

static int matches(const char *pattern, const char *topic)
{
    regex_t re;
    assert_int_equal(regcomp(&re, pattern, REG_EXTENDED | REG_NOSUB), 0);
    int m = regexec(&re, topic, 0, NULL, 0) == 0;
    regfree(&re);
    return m;
}

static void test_actions_pattern(void **state)
{
    (void)state;
    char p[256];
    assert_int_equal(ledger_actions_pattern("credit.", p, sizeof(p)), 0);
    assert_string_equal(p, "^credit\\.actions\\..+");
    assert_true(matches(p, "credit.actions.transport"));
    assert_false(matches(p, "creditXactions.transport"));
    assert_false(matches(p, "credit.actions."));
    assert_false(matches(p, "other.credit.actions.transport"));
    assert_int_equal(ledger_actions_pattern("a+b.", p, sizeof(p)), 0);
    assert_true(matches(p, "a+b.actions.x"));
    assert_false(matches(p, "aab.actions.x"));
    assert_int_equal(ledger_actions_pattern("credit.", p, 10), -1);
}

static void test_effects_aggregation_and_rendering(void **state)
{
    (void)state;
    report_t r;
    report_init(&r, 1000, 2000, 5000);
    const report_action_t acts[] = {
        {"apply", "overload-2017", "transport", "executed", 4000, 0},
        {"apply", "overload-2017", "transport", "received", 4000, 0},  /* overdue */
        {"apply", "overload-2017", "transport", "issued", 6000, 0},    /* pending */
        {"apply", "overload-2017", "transport", "failed", 4000, 1},    /* lifted: pending */
        {"apply", "overload-2017", "transport", "issued", 4000, 1, 1}, /* alerted, then lifted */
        {"revoke", "overload-2017", "transport", "issued", 0, 0},
        {"apply", "overload-2017", "market", "rejected", 4000, 0},
        {"apply", "construction-2018", "ndrc", "issued", 0, 0}, /* no deadline: pending */
        {"apply", "a,\"b\"", "x", NULL, 0, 0},
    };
    for (size_t i = 0; i < sizeof(acts) / sizeof(acts[0]); i++)
        assert_int_equal(report_add_action(&r, &acts[i]), 0);
    assert_int_equal(report_add_disclosure(&r, "transport", 1, 4000), 0);
    assert_int_equal(report_add_disclosure(&r, "transport", 0, 4000), 0);
    assert_int_equal(report_add_disclosure(&r, "market", 0, 9000), 0);
    char *csv = report_render_csv(&r);
    assert_string_equal(csv, "memorandum_id,department,applied,lifted,executed,rejected,pending,"
                             "overdue\r\n"
                             "\"a,\"\"b\"\"\",x,1,0,0,0,1,0\r\n"
                             "construction-2018,ndrc,1,0,0,0,1,0\r\n"
                             "overload-2017,market,1,0,0,1,0,0\r\n"
                             "overload-2017,transport,5,1,1,0,2,2\r\n");
    free(csv);
    char *json = report_render_json(&r);
    assert_string_equal(
        json, "{\"from_ms\":1000,\"to_ms\":2000,\"generated_at_ms\":5000,\"effects\":["
              "{\"memorandum_id\":\"a,\\\"b\\\"\",\"department\":\"x\",\"applied\":1,\"lifted\":0,"
              "\"executed\":0,\"rejected\":0,\"pending\":1,\"overdue\":0},"
              "{\"memorandum_id\":\"construction-2018\",\"department\":\"ndrc\",\"applied\":1,"
              "\"lifted\":0,\"executed\":0,\"rejected\":0,\"pending\":1,\"overdue\":0},"
              "{\"memorandum_id\":\"overload-2017\",\"department\":\"market\",\"applied\":1,"
              "\"lifted\":0,\"executed\":0,\"rejected\":1,\"pending\":0,\"overdue\":0},"
              "{\"memorandum_id\":\"overload-2017\",\"department\":\"transport\",\"applied\":5,"
              "\"lifted\":1,\"executed\":1,\"rejected\":0,\"pending\":2,\"overdue\":2}],"
              "\"disclosures\":["
              "{\"department\":\"market\",\"decisions\":1,\"confirmed\":0,\"pending\":1,"
              "\"breached\":0},"
              "{\"department\":\"transport\",\"decisions\":2,\"confirmed\":1,\"pending\":0,"
              "\"breached\":1}]}");
    free(json);
    report_free(&r);
    /* Empty. */
    report_init(&r, 0, 1, 2);
    csv = report_render_csv(&r);
    assert_string_equal(csv, "memorandum_id,department,applied,lifted,executed,rejected,pending,"
                             "overdue\r\n");
    free(csv);
    report_free(&r);
}

static void test_subjects_rendering(void **state)
{
    (void)state;
    char buf[40];
    assert_string_equal(report_cst_time(cst(2026, 3, 6, 15, 4), buf, sizeof(buf)),
                        "2026-03-06T15:04:00+08:00");
    assert_string_equal(report_cst_time(0, buf, sizeof(buf)), "1970-01-01T08:00:00+08:00");
    json_t *subjects = json_loads(
        "[{\"subject_key\":\"vehicle:津A12345\",\"type\":\"vehicle\",\"id\":\"津A12345\","
        "\"name\":\"a, \\\"b\\\"\",\"lists\":[{\"list_code\":\"black.overload\",\"since_ms\":1,"
        "\"since\":\"x\",\"valid_until_ms\":7,\"source_department\":\"transport\"},"
        "{\"list_code\":\"focus.taxi\",\"since_ms\":2,\"since\":\"y\",\"valid_until_ms\":0,"
        "\"source_department\":\"market\"}]}]",
        0, NULL);
    assert_non_null(subjects);
    char *csv = report_subjects_render(subjects, 5, 1);
    assert_string_equal(csv, "subject_type,subject_id,subject_name,list_code,since,valid_until_ms,"
                             "source_department\r\n"
                             "vehicle,津A12345,\"a, \"\"b\"\"\",black.overload,x,7,transport\r\n"
                             "vehicle,津A12345,\"a, \"\"b\"\"\",focus.taxi,y,0,market\r\n");
    free(csv);
    char *json = report_subjects_render(subjects, 5, 0);
    const char *want = "{\"generated_at_ms\":5,\"subjects\":[{\"subject_key\":\"vehicle:";
    assert_int_equal(strncmp(json, want, strlen(want)), 0);
    free(json);
    json_decref(subjects);
}

static void test_measures_rendering(void **state)
{
    (void)state;
    json_t *rows = json_loads(
        "[{\"memorandum_id\":\"overload-2017\",\"document_no\":\"发改财金〔2017〕274号\","
        "\"department\":\"market\",\"measure_code\":\"RESTRICT_HANDLING\","
        "\"kind\":\"penalty\",\"text\":\"限制, 办理\",\"basis\":\"b\","
        "\"applied\":3,\"lifted\":1}]",
        0, NULL);
    assert_non_null(rows);
    char *csv = report_measures_render(rows, 1, 2, 3, 1);
    assert_string_equal(csv, "memorandum_id,document_no,department,measure_code,kind,text,basis,"
                             "applied,lifted\r\n"
                             "overload-2017,发改财金〔2017〕274号,market,RESTRICT_HANDLING,penalty,"
                             "\"限制, 办理\",b,3,1\r\n");
    free(csv);
    char *json = report_measures_render(rows, 1, 2, 3, 0);
    const char *want = "{\"from_ms\":1,\"to_ms\":2,\"generated_at_ms\":3,\"measures\":[{";
    assert_int_equal(strncmp(json, want, strlen(want)), 0);
    free(json);
    json_decref(rows);
}

static void test_report_time_bounds(void **state)
{
    (void)state;
    int64_t v;
    assert_int_equal(report_parse_time("1767196800000", &v), 0);
    assert_int_equal(v, 1767196800000LL);
    assert_int_equal(report_parse_time("2026-01-01", &v), 0);
    assert_int_equal(v, 1767196800000LL); /* 00:00 China Standard Time */
    assert_int_equal(report_parse_time("2026-01-01T00:00:00+08:00", &v), 0);
    assert_int_equal(v, 1767196800000LL);
    assert_int_equal(report_parse_time("2025-12-31T16:00:00Z", &v), 0);
    assert_int_equal(v, 1767196800000LL);
    assert_int_equal(report_parse_time("2025-12-31T16:00:00.25Z", &v), 0);
    assert_int_equal(v, 1767196800250LL);
    assert_int_equal(report_parse_time("2025-12-31T11:00:00-05:00", &v), 0);
    assert_int_equal(v, 1767196800000LL);
    const char *bad[] = {"",
                         "2026-02-30",
                         "2026-13-01",
                         "2026-1-1",
                         "2026-01-01T25:00:00Z",
                         "2026-01-01T00:00:00",
                         "2026-01-01T00:00:00+8",
                         "2026-01-01T00:00:00Zjunk",
                         "2026-01-01T00:00:00.Z",
                         "-5",
                         "12345678901234567890",
                         "yesterday"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (report_parse_time(bad[i], &v) == 0)
            fail_msg("accepted \"%s\"", bad[i]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_feedback_order),
        cmocka_unit_test(test_disclosure_ids),
        cmocka_unit_test(test_deadlines),
        cmocka_unit_test(test_actions_pattern),
        cmocka_unit_test(test_effects_aggregation_and_rendering),
        cmocka_unit_test(test_subjects_rendering),
        cmocka_unit_test(test_measures_rendering),
        cmocka_unit_test(test_report_time_bounds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
