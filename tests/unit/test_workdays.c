/*
 * test_workdays: the working-day calendar against the official 2026 arrangement (国务院办公厅
 * 关于2026年部分节假日安排的通知) as shipped in deploy/calendar/cn-workdays.json: adjusted
 * weekend working days, holidays, deadlines that cross Spring Festival, National Day and the
 * 2025→2026 year boundary, China Standard Time day boundaries, uncovered years and bad files.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "workdays.h"

static workdays_t *cal;

static int setup(void **state)
{
    (void)state;
    char err[512], path[1024];
    const char *root = getenv("JRP_ROOT");
    snprintf(path, sizeof(path), "%s/deploy/calendar/cn-workdays.json", root ? root : ".");
    cal = workdays_load(path, err, sizeof(err));
    if (!cal)
        fprintf(stderr, "%s\n", err);
    return cal ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    workdays_destroy(cal);
    return 0;
}

static int isw(int y, int m, int d)
{
    return workdays_is_workday(cal, y, m, d, NULL, 0);
}

/* y-m-d at hh:mm China Standard Time, as epoch ms. */
static int64_t cst(int y, int m, int d, int hh, int mm)
{
    return workdays_cst_day_start_ms(workdays_days_from_civil(y, m, d)) +
           ((int64_t)hh * 60 + mm) * 60000;
}

/* The n-th working day after y-m-d, as "YYYY-MM-DD". */
static const char *add(int y, int m, int d, int n)
{
    static char buf[16];
    int64_t out;
    char err[256];
    int rc = workdays_add(cal, workdays_days_from_civil(y, m, d), n, &out, err, sizeof(err));
    if (rc)
        fail_msg("%04d-%02d-%02d + %d: %s", y, m, d, n, err);
    int oy, om, od;
    workdays_civil_from_days(out, &oy, &om, &od);
    snprintf(buf, sizeof(buf), "%04d-%02d-%02d", oy, om, od);
    return buf;
}

static void test_covers_2025_and_2026(void **state)
{
    (void)state;
    int first, last;
    workdays_years(cal, &first, &last);
    assert_int_equal(first, 2025);
    assert_int_equal(last, 2026);
}

static void test_adjusted_weekends_are_working_days(void **state)
{
    (void)state;
    /* The six 调休 days of 2026, each a Saturday or Sunday. */
    assert_int_equal(isw(2026, 1, 4), 1);   /* Sunday, 元旦 */
    assert_int_equal(isw(2026, 2, 14), 1);  /* Saturday, 春节 */
    assert_int_equal(isw(2026, 2, 28), 1);  /* Saturday, 春节 */
    assert_int_equal(isw(2026, 5, 9), 1);   /* Saturday, 劳动节 */
    assert_int_equal(isw(2026, 9, 20), 1);  /* Sunday, 国庆节 */
    assert_int_equal(isw(2026, 10, 10), 1); /* Saturday, 国庆节 */
    /* Ordinary weekends stay off, ordinary weekdays stay on. */
    assert_int_equal(isw(2026, 3, 7), 0); /* Saturday */
    assert_int_equal(isw(2026, 3, 8), 0); /* Sunday */
    assert_int_equal(isw(2026, 3, 9), 1); /* Monday */
    assert_int_equal(isw(2026, 11, 27), 1);
}

static void test_holidays_are_not_working_days(void **state)
{
    (void)state;
    assert_int_equal(isw(2026, 1, 1), 0);
    assert_int_equal(isw(2026, 1, 2), 0); /* a Friday */
    for (int d = 15; d <= 23; d++)
        assert_int_equal(isw(2026, 2, d), 0); /* 春节, including Monday 16 .. Monday 23 */
    assert_int_equal(isw(2026, 2, 24), 1);
    assert_int_equal(isw(2026, 4, 6), 0); /* 清明节, a Monday */
    for (int d = 1; d <= 5; d++)
        assert_int_equal(isw(2026, 5, d), 0);
    assert_int_equal(isw(2026, 6, 19), 0); /* 端午节, a Friday */
    assert_int_equal(isw(2026, 9, 25), 0); /* 中秋节, a Friday */
    for (int d = 1; d <= 7; d++)
        assert_int_equal(isw(2026, 10, d), 0);
    assert_int_equal(isw(2026, 10, 8), 1);
    /* 2025's merged National Day and Mid-Autumn: eight days. */
    assert_int_equal(isw(2025, 10, 8), 0);
    assert_int_equal(isw(2025, 10, 11), 1); /* Saturday, 调休 */
}

static void test_working_days_in_a_year(void **state)
{
    (void)state;
    /* Counted independently: 261 weekdays in 2026, minus 19 weekday holidays, plus 6 调休. */
    int n = 0;
    int64_t d0 = workdays_days_from_civil(2026, 1, 1), d1 = workdays_days_from_civil(2027, 1, 1);
    for (int64_t d = d0; d < d1; d++) {
        int y, m, dd;
        workdays_civil_from_days(d, &y, &m, &dd);
        n += isw(y, m, dd);
    }
    assert_int_equal(n, 248);
}

static void test_deadline_crosses_spring_festival(void **state)
{
    (void)state;
    /* Thursday 12 Feb: 13 (Fri), 14 (Sat, 调休), then 24..27 and Saturday 28 (调休). */
    assert_string_equal(add(2026, 2, 12, 7), "2026-02-28");
    assert_string_equal(add(2026, 2, 13, 1), "2026-02-14");
    assert_string_equal(add(2026, 2, 14, 1), "2026-02-24");
}

static void test_deadline_crosses_national_day(void **state)
{
    (void)state;
    /* Wednesday 30 Sep: 8, 9, 10 (Sat, 调休), 12, 13, 14, 15 Oct. */
    assert_string_equal(add(2026, 9, 30, 7), "2026-10-15");
    /* Thursday 24 Sep: Mid-Autumn Friday 25 off, then 28, 29, 30 and 8, 9, 10, 12 Oct. */
    assert_string_equal(add(2026, 9, 24, 7), "2026-10-12");
    /* Sunday 20 Sep is the 调休 day right after Friday 18. */
    assert_string_equal(add(2026, 9, 18, 1), "2026-09-20");
}

static void test_friday_decision(void **state)
{
    (void)state;
    /* Friday 6 March 2026 + 7 working days = Tuesday 17 March; the deadline is its end. */
    assert_string_equal(add(2026, 3, 6, 7), "2026-03-17");
    int64_t dl;
    assert_int_equal(workdays_deadline_ms(cal, cst(2026, 3, 6, 15, 0), 7, &dl, NULL, 0), 0);
    assert_int_equal(dl, cst(2026, 3, 18, 0, 0));
    /* A decision at 23:59 CST on the Friday is still Friday's; 00:30 CST Saturday (Friday
     * 16:30 UTC) counts from Saturday, which gives the same Tuesday. */
    assert_int_equal(workdays_deadline_ms(cal, cst(2026, 3, 6, 23, 59), 7, &dl, NULL, 0), 0);
    assert_int_equal(dl, cst(2026, 3, 18, 0, 0));
    assert_int_equal(workdays_cst_day(cst(2026, 3, 7, 0, 30)),
                     workdays_days_from_civil(2026, 3, 7));
    /* A Thursday 16:30 UTC decision is already Friday in China: same deadline as Friday's. */
    assert_int_equal(workdays_deadline_ms(cal, cst(2026, 3, 6, 0, 30), 7, &dl, NULL, 0), 0);
    assert_int_equal(dl, cst(2026, 3, 18, 0, 0));
    assert_int_equal(workdays_deadline_ms(cal, cst(2026, 3, 5, 23, 30), 7, &dl, NULL, 0), 0);
    assert_int_equal(dl, cst(2026, 3, 17, 0, 0));
}

static void test_year_boundary_2025_to_2026(void **state)
{
    (void)state;
    /* Monday 29 Dec 2025: 30, 31, then 元旦 1..3 off, Sunday 4 Jan (调休), 5..8 Jan. */
    assert_string_equal(add(2025, 12, 29, 7), "2026-01-08");
    assert_string_equal(add(2025, 12, 31, 1), "2026-01-04");
}

static void test_uncovered_year_is_refused(void **state)
{
    (void)state;
    char err[256];
    int64_t out;
    assert_int_equal(workdays_is_workday(cal, 2027, 1, 4, err, sizeof(err)), -ERANGE);
    assert_non_null(strstr(err, "no data for 2027"));
    assert_int_equal(workdays_is_workday(cal, 2024, 12, 31, err, sizeof(err)), -ERANGE);
    /* A walk that leaves the covered years is refused, not guessed. */
    assert_int_equal(
        workdays_add(cal, workdays_days_from_civil(2026, 12, 28), 7, &out, err, sizeof(err)),
        -ERANGE);
    assert_non_null(strstr(err, "2027"));
    assert_int_equal(workdays_is_workday(cal, 2026, 2, 29, err, sizeof(err)), -EINVAL);
}

static void expect_bad(const char *json, const char *want)
{
    char err[512] = "";
    workdays_t *wd = workdays_parse(json, strlen(json), "cal.json", err, sizeof(err));
    if (wd) {
        workdays_destroy(wd);
        fail_msg("accepted: %s", json);
    }
    if (!strstr(err, want))
        fail_msg("error \"%s\" does not contain \"%s\"", err, want);
}

static void test_bad_file_is_a_clear_error(void **state)
{
    (void)state;
    char err[512];
    assert_null(workdays_load("/nonexistent/cal.json", err, sizeof(err)));
    assert_non_null(strstr(err, "/nonexistent/cal.json: No such file"));
    expect_bad("{\"years\": {\"2026\": {\"holidays\": [", "cal.json:1:");
    expect_bad("{}", "cal.json: \"years\" must be an object");
    expect_bad("{\"years\": {\"26\": {}}}", "years.26: the key must be a four-digit year");
    expect_bad("{\"years\": {\"2026\": {\"holidays\": [{\"date\": \"2026-02-30\"}]}}}",
               "years.2026.holidays[0].date is not a YYYY-MM-DD date");
    expect_bad("{\"years\": {\"2026\": {\"workdays\": [{\"date\": \"2025-01-26\"}]}}}",
               "in another year");
    expect_bad("{\"years\": {\"2026\": {\"holidays\": [{\"date\": \"2026-01-04\"}], "
               "\"workdays\": [{\"date\": \"2026-01-04\"}]}}}",
               "both a holiday and a working day");
    expect_bad("{\"years\": {\"2026\": {\"holidays\": {}}}}", "must be an array");
    /* A minimal good file: weekends only for its one year. */
    const char *ok = "{\"years\": {\"2030\": {}}}";
    workdays_t *wd = workdays_parse(ok, strlen(ok), "ok.json", err, sizeof(err));
    assert_non_null(wd);
    assert_int_equal(workdays_is_workday(wd, 2030, 1, 1, NULL, 0), 1);
    assert_int_equal(workdays_is_workday(wd, 2030, 1, 5, NULL, 0), 0);
    workdays_destroy(wd);
}

static void test_civil_days_round_trip(void **state)
{
    (void)state;
    assert_int_equal(workdays_days_from_civil(1970, 1, 1), 0);
    for (int64_t d = -800000; d < 800000; d += 97) {
        int y, m, dd;
        workdays_civil_from_days(d, &y, &m, &dd);
        assert_int_equal(workdays_days_from_civil(y, m, dd), d);
    }
    assert_int_equal(workdays_cst_day(-1), 0);                      /* 07:59:59.999 CST */
    assert_int_equal(workdays_cst_day(-8LL * 3600 * 1000 - 1), -1); /* 23:59 CST the day before */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_covers_2025_and_2026),
        cmocka_unit_test(test_adjusted_weekends_are_working_days),
        cmocka_unit_test(test_holidays_are_not_working_days),
        cmocka_unit_test(test_working_days_in_a_year),
        cmocka_unit_test(test_deadline_crosses_spring_festival),
        cmocka_unit_test(test_deadline_crosses_national_day),
        cmocka_unit_test(test_friday_decision),
        cmocka_unit_test(test_year_boundary_2025_to_2026),
        cmocka_unit_test(test_uncovered_year_is_refused),
        cmocka_unit_test(test_bad_file_is_a_clear_error),
        cmocka_unit_test(test_civil_days_round_trip),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
