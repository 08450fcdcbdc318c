/*
 * workdays: the working-day calendar. Each covered year keeps one byte per day of the year:
 * 0 = follow the weekday, 1 = holiday, 2 = adjusted working day.
 */
#include "workdays.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WORKDAYS_MAX_YEARS 64
#define WORKDAYS_MAX_WALK 3660 /* days: no n working days take longer than ten years */

enum { DAY_NORMAL = 0, DAY_HOLIDAY = 1, DAY_WORKDAY = 2 };

typedef struct year_s {
    int year;
    unsigned char day[367]; /* by day of year, 1-based */
} year_t;

struct workdays_s {
    year_t *years;
    size_t n;
    int first, last;
};

int64_t workdays_days_from_civil(int y, int m, int d)
{
    /* Howard Hinnant's days_from_civil. */
    y -= m <= 2;
    const int64_t era = (y >= 0 ? y : y - 399) / 400;
    const int64_t yoe = y - era * 400;
    const int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    const int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

void workdays_civil_from_days(int64_t z, int *y, int *m, int *d)
{
    z += 719468;
    const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    const int64_t doe = z - era * 146097;
    const int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    const int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    const int64_t mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = (int)(yoe + era * 400 + (*m <= 2));
}

static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

int64_t workdays_cst_day(int64_t ms)
{
    return floor_div(ms + WORKDAYS_CST_OFFSET_MS, WORKDAYS_DAY_MS);
}

int64_t workdays_cst_day_start_ms(int64_t day)
{
    return day * WORKDAYS_DAY_MS - WORKDAYS_CST_OFFSET_MS;
}

static int days_in_month(int y, int m)
{
    static const int dm[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (m == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
        return 29;
    return dm[m - 1];
}

static int valid_date(int y, int m, int d)
{
    return y >= 1 && y <= 9999 && m >= 1 && m <= 12 && d >= 1 && d <= days_in_month(y, m);
}

static int day_of_year(int y, int m, int d)
{
    return (int)(workdays_days_from_civil(y, m, d) - workdays_days_from_civil(y, 1, 1)) + 1;
}

/* 0 = Sunday ... 6 = Saturday; 1970-01-01 was a Thursday. */
static int weekday(int64_t days)
{
    return (int)((days % 7 + 7 + 4) % 7);
}

static const year_t *find_year(const workdays_t *wd, int y)
{
    for (size_t i = 0; i < wd->n; i++)
        if (wd->years[i].year == y)
            return &wd->years[i];
    return NULL;
}

void workdays_destroy(workdays_t *wd)
{
    if (!wd)
        return;
    free(wd->years);
    free(wd);
}

void workdays_years(const workdays_t *wd, int *first, int *last)
{
    *first = wd->first;
    *last = wd->last;
}

/* Mark every {"date": "YYYY-MM-DD"} of arr in yr as kind. 0 or -1 (errstr). */
static int mark(year_t *yr, json_t *arr, int kind, const char *name, const char *what, char *errstr,
                size_t errstr_size)
{
    if (!arr)
        return 0; /* absent: none */
    if (!json_is_array(arr)) {
        snprintf(errstr, errstr_size, "%s: years.%d.%s must be an array", name, yr->year, what);
        return -1;
    }
    size_t i;
    json_t *e;
    json_array_foreach(arr, i, e)
    {
        const char *s = json_string_value(json_object_get(e, "date"));
        int y, m, d, used = 0;
        if (!s || sscanf(s, "%4d-%2d-%2d%n", &y, &m, &d, &used) != 3 || used != 10 ||
            s[10] != '\0' || !valid_date(y, m, d)) {
            snprintf(errstr, errstr_size, "%s: years.%d.%s[%zu].date is not a YYYY-MM-DD date",
                     name, yr->year, what, i);
            return -1;
        }
        if (y != yr->year) {
            snprintf(errstr, errstr_size, "%s: years.%d.%s[%zu].date %s is in another year", name,
                     yr->year, what, i, s);
            return -1;
        }
        int doy = day_of_year(y, m, d);
        if (yr->day[doy] != DAY_NORMAL && yr->day[doy] != kind) {
            snprintf(errstr, errstr_size, "%s: %s is both a holiday and a working day", name, s);
            return -1;
        }
        yr->day[doy] = (unsigned char)kind;
    }
    return 0;
}

workdays_t *workdays_parse(const char *text, size_t len, const char *name, char *errstr,
                           size_t errstr_size)
{
    json_error_t jerr;
    workdays_t *wd = NULL;
    json_t *root = json_loadb(text, len, 0, &jerr);
    if (!root) {
        snprintf(errstr, errstr_size, "%s:%d:%d: %s", name, jerr.line, jerr.column, jerr.text);
        return NULL;
    }
    json_t *years = json_object_get(root, "years");
    if (!json_is_object(years) || json_object_size(years) == 0) {
        snprintf(errstr, errstr_size, "%s: \"years\" must be an object with at least one year",
                 name);
        goto err;
    }
    if (json_object_size(years) > WORKDAYS_MAX_YEARS) {
        snprintf(errstr, errstr_size, "%s: more than %d years", name, WORKDAYS_MAX_YEARS);
        goto err;
    }
    wd = calloc(1, sizeof(*wd));
    if (!wd || !(wd->years = calloc(json_object_size(years), sizeof(year_t)))) {
        snprintf(errstr, errstr_size, "%s: out of memory", name);
        goto err;
    }
    const char *key;
    json_t *val;
    json_object_foreach(years, key, val)
    {
        char *end;
        long y = strtol(key, &end, 10);
        if (*end || end - key != 4 || y < 1900 || y > 9999) {
            snprintf(errstr, errstr_size, "%s: years.%s: the key must be a four-digit year", name,
                     key);
            goto err;
        }
        if (!json_is_object(val)) {
            snprintf(errstr, errstr_size, "%s: years.%s must be an object", name, key);
            goto err;
        }
        year_t *yr = &wd->years[wd->n++];
        yr->year = (int)y;
        if (mark(yr, json_object_get(val, "holidays"), DAY_HOLIDAY, name, "holidays", errstr,
                 errstr_size) ||
            mark(yr, json_object_get(val, "workdays"), DAY_WORKDAY, name, "workdays", errstr,
                 errstr_size))
            goto err;
        if (wd->n == 1 || yr->year < wd->first)
            wd->first = yr->year;
        if (wd->n == 1 || yr->year > wd->last)
            wd->last = yr->year;
    }
    json_decref(root);
    return wd;
err:
    json_decref(root);
    workdays_destroy(wd);
    return NULL;
}

workdays_t *workdays_load(const char *path, char *errstr, size_t errstr_size)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(errstr, errstr_size, "%s: %s", path, strerror(errno));
        return NULL;
    }
    char *buf = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len == cap) {
            size_t ncap = cap ? cap * 2 : 65536;
            char *nb = ncap <= (16u << 20) ? realloc(buf, ncap) : NULL;
            if (!nb) {
                snprintf(errstr, errstr_size, "%s: too large or out of memory", path);
                free(buf);
                fclose(f);
                return NULL;
            }
            buf = nb;
            cap = ncap;
        }
        size_t got = fread(buf + len, 1, cap - len, f);
        len += got;
        if (got == 0)
            break;
    }
    int rerr = ferror(f);
    fclose(f);
    if (rerr) {
        snprintf(errstr, errstr_size, "%s: read error", path);
        free(buf);
        return NULL;
    }
    workdays_t *wd = workdays_parse(buf, len, path, errstr, errstr_size);
    free(buf);
    return wd;
}

static int day_is_workday(const workdays_t *wd, int64_t days, char *errstr, size_t errstr_size)
{
    int y, m, d;
    workdays_civil_from_days(days, &y, &m, &d);
    const year_t *yr = find_year(wd, y);
    if (!yr) {
        if (errstr)
            snprintf(errstr, errstr_size,
                     "the working-day calendar has no data for %d (it covers %d..%d)", y, wd->first,
                     wd->last);
        return -ERANGE;
    }
    switch (yr->day[day_of_year(y, m, d)]) {
    case DAY_HOLIDAY:
        return 0;
    case DAY_WORKDAY:
        return 1;
    default: {
        int wdy = weekday(days);
        return wdy != 0 && wdy != 6;
    }
    }
}

int workdays_is_workday(const workdays_t *wd, int y, int m, int d, char *errstr, size_t errstr_size)
{
    if (!valid_date(y, m, d)) {
        if (errstr)
            snprintf(errstr, errstr_size, "%04d-%02d-%02d is not a date", y, m, d);
        return -EINVAL;
    }
    return day_is_workday(wd, workdays_days_from_civil(y, m, d), errstr, errstr_size);
}

int workdays_add(const workdays_t *wd, int64_t day, int n, int64_t *out, char *errstr,
                 size_t errstr_size)
{
    if (n < 1) {
        if (errstr)
            snprintf(errstr, errstr_size, "working days to add must be at least 1");
        return -EINVAL;
    }
    int64_t cur = day;
    for (int walked = 0; n > 0; walked++) {
        if (walked > WORKDAYS_MAX_WALK) {
            if (errstr)
                snprintf(errstr, errstr_size, "no working day within ten years");
            return -ERANGE;
        }
        cur++;
        int w = day_is_workday(wd, cur, errstr, errstr_size);
        if (w < 0)
            return w;
        n -= w;
    }
    *out = cur;
    return 0;
}

int workdays_deadline_ms(const workdays_t *wd, int64_t from_ms, int n, int64_t *out, char *errstr,
                         size_t errstr_size)
{
    int64_t day;
    int rc = workdays_add(wd, workdays_cst_day(from_ms), n, &day, errstr, errstr_size);
    if (rc)
        return rc;
    *out = workdays_cst_day_start_ms(day + 1);
    return 0;
}
