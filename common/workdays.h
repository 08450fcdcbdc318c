/*
 * workdays: the mainland working-day calendar as data (deploy/calendar/cn-workdays.json): weekends
 * off, public holidays off, adjusted working weekends (调休) on. Dates are calendar dates in China
 * Standard Time (UTC+8, no daylight saving), derived from epoch milliseconds.
 *
 * A year the file does not cover is refused, never guessed: every query touching such a date
 * returns -ERANGE and names the year in errstr, so a deadline is never computed from a calendar
 * that may be wrong (the ledger then records "no deadline" and counts the error; see
 * docs/ledger.md).
 */
#ifndef JRP_WORKDAYS_H
#define JRP_WORKDAYS_H

#include <stddef.h>
#include <stdint.h>

#define WORKDAYS_CST_OFFSET_MS (8LL * 3600 * 1000)
#define WORKDAYS_DAY_MS (86400LL * 1000)

typedef struct workdays_s workdays_t;

/* Load the calendar file. NULL with "path: reason" (JSON position or bad entry) in errstr. */
workdays_t *workdays_load(const char *path, char *errstr, size_t errstr_size);
/* The same from a JSON text (tests); name is used in messages. */
workdays_t *workdays_parse(const char *json, size_t len, const char *name, char *errstr,
                           size_t errstr_size);
void workdays_destroy(workdays_t *wd); /* accepts NULL */

/* First and last year covered (inclusive). */
void workdays_years(const workdays_t *wd, int *first, int *last);

/* Days since 1970-01-01 of a civil date, and back (proleptic Gregorian). */
int64_t workdays_days_from_civil(int y, int m, int d);
void workdays_civil_from_days(int64_t days, int *y, int *m, int *d);
/* The CST calendar day (days since 1970-01-01) holding the instant ms, and the instant its
 * 00:00 CST begins. */
int64_t workdays_cst_day(int64_t ms);
int64_t workdays_cst_day_start_ms(int64_t day);

/* 1 when y-m-d is a working day, 0 when not; -EINVAL for a date that does not exist, -ERANGE
 * for a year the calendar does not cover (errstr names it; errstr may be NULL). */
int workdays_is_workday(const workdays_t *wd, int y, int m, int d, char *errstr,
                        size_t errstr_size);

/*
 * The CST day that is the n-th working day after day (day itself is not counted; n >= 1), into
 * *out (days since the epoch). 0, or -ERANGE when the walk reaches an uncovered year.
 */
int workdays_add(const workdays_t *wd, int64_t day, int n, int64_t *out, char *errstr,
                 size_t errstr_size);

/*
 * A deadline: the end (next 00:00 CST, as epoch ms) of the n-th working day after the CST day
 * of from_ms. "Within 7 working days of the decision" for a decision on Friday 2026-03-06 ends
 * at Tuesday 2026-03-17 24:00 CST. 0 or -ERANGE.
 */
int workdays_deadline_ms(const workdays_t *wd, int64_t from_ms, int n, int64_t *out, char *errstr,
                         size_t errstr_size);

#endif
