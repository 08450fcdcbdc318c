/*
 * test_ids: the identifier validators against independent re-implementations (oracles) of
 * GB 32100 and GB 11643, exhaustive single-character substitutions, the code formats, subject
 * keys, masking, and every validator run on input that ends right at an unreadable page.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ids.h"

#define CREDIT_A "91350100M000100Y43"
#define CREDIT_B "91512081MA62K0260E"
#define PERSON "11010519491231002X"

typedef int (*validator_fn)(const char *, const char **, char *, size_t);

/* ---- oracles: written from the standards, sharing no code or tables with ids.c ------------ */

static const char oracle_charset[] = "0123456789ABCDEFGHJKLMNPQRTUWXY";

/* Index of c in the GB 32100 charset, or -1 (memchr so that NUL is never "found"). */
static int oracle_credit_value(char c)
{
    const char *p = memchr(oracle_charset, c, 31);
    return p ? (int)(p - oracle_charset) : -1;
}

/* GB 32100 weights are 3^i mod 31; derived here rather than copied from a table. */
static char oracle_credit_check(const char *s)
{
    int sum = 0, w = 1;
    for (int i = 0; i < 17; i++) {
        int v = oracle_credit_value(s[i]);
        if (v < 0)
            return 0;
        sum += v * w;
        w = w * 3 % 31;
    }
    return oracle_charset[(31 - sum % 31) % 31];
}

/* NULL when valid, else the code ids.c must give (length, characters in order, checksum). */
static const char *oracle_credit(const char *s)
{
    if (strlen(s) != 18)
        return "bad_length";
    for (int i = 0; i < 18; i++) {
        if (oracle_credit_value(s[i]) < 0)
            return "bad_char";
        if (i >= 2 && i <= 7 && (s[i] < '0' || s[i] > '9'))
            return "bad_char";
    }
    return s[17] == oracle_credit_check(s) ? NULL : "bad_checksum";
}

/* GB 11643 is ISO 7064 MOD 11-2: weights 2^(17-i) mod 11, check (12 - sum mod 11) mod 11. */
static char oracle_identity_check(const char *s)
{
    int sum = 0;
    for (int i = 0; i < 17; i++) {
        if (s[i] < '0' || s[i] > '9')
            return 0;
        int w = 1;
        for (int k = 0; k < 17 - i; k++)
            w = w * 2 % 11;
        sum += (s[i] - '0') * w;
    }
    int c = (12 - sum % 11) % 11;
    return c == 10 ? 'X' : (char)('0' + c);
}

static void today_utc(int *y, int *m, int *d)
{
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    *y = tm.tm_year + 1900;
    *m = tm.tm_mon + 1;
    *d = tm.tm_mday;
}

/* A real date is one timegm() does not have to normalise. */
static int oracle_date_ok(const char *p)
{
    int y, m, d, ty, tm_, td;
    if (sscanf(p, "%4d%2d%2d", &y, &m, &d) != 3 || y < 1900)
        return 0;
    struct tm t = {.tm_year = y - 1900, .tm_mon = m - 1, .tm_mday = d, .tm_hour = 12};
    time_t tt = timegm(&t);
    struct tm back;
    gmtime_r(&tt, &back);
    if (back.tm_year != y - 1900 || back.tm_mon != m - 1 || back.tm_mday != d)
        return 0;
    today_utc(&ty, &tm_, &td);
    return (y < ty) || (y == ty && (m < tm_ || (m == tm_ && d <= td)));
}

static const char *oracle_identity(const char *s)
{
    if (strlen(s) != 18)
        return "bad_length";
    for (int i = 0; i < 17; i++)
        if (s[i] < '0' || s[i] > '9')
            return "bad_char";
    if (!(s[17] >= '0' && s[17] <= '9') && s[17] != 'X')
        return "bad_char";
    char date[9];
    memcpy(date, s + 6, 8);
    date[8] = '\0';
    if (!oracle_date_ok(date))
        return "bad_date";
    return s[17] == oracle_identity_check(s) ? NULL : "bad_checksum";
}

/* An identity number with the given area, date and sequence and a correct check character. */
static void make_identity(char out[19], const char *area, const char *date, const char *seq)
{
    assert_int_equal(strlen(area) + strlen(date) + strlen(seq), 17);
    snprintf(out, 19, "%s%s%s0", area, date, seq);
    out[17] = oracle_identity_check(out);
}

/* ---- helpers ------------------------------------------------------------------------------ */

/* Assert that fn rejects s with token want and a reason containing each of the needles. */
static void expect_reject(validator_fn fn, const char *s, const char *want, const char *needle1,
                          const char *needle2)
{
    const char *code = NULL;
    char reason[256] = "";
    if (fn(s, &code, reason, sizeof(reason)) != -1)
        fail_msg("accepted \"%s\", expected %s", s ? s : "(null)", want);
    assert_non_null(code);
    if (strcmp(code, want) != 0)
        fail_msg("\"%s\": code %s, expected %s (%s)", s ? s : "(null)", code, want, reason);
    assert_true(strlen(reason) > 0);
    if (needle1 && !strstr(reason, needle1))
        fail_msg("reason \"%s\" lacks \"%s\"", reason, needle1);
    if (needle2 && !strstr(reason, needle2))
        fail_msg("reason \"%s\" lacks \"%s\"", reason, needle2);
}

static void expect_accept(validator_fn fn, const char *s)
{
    const char *code = NULL;
    char reason[256] = "";
    if (fn(s, &code, reason, sizeof(reason)) != 0)
        fail_msg("rejected \"%s\": %s (%s)", s, code ? code : "?", reason);
}

typedef struct {
    char *base;
    size_t size;
} guard_t;

/*
 * Copy s so that its NUL is the last readable byte before a PROT_NONE page: reading one byte too
 * far faults. Release with guarded_release().
 */
static const char *guarded_copy(guard_t *g, const char *s)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t n = strlen(s) + 1;
    assert_true(n <= page);
    g->size = 2 * page;
    g->base = mmap(NULL, g->size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(g->base != MAP_FAILED);
    assert_int_equal(mprotect(g->base + page, page, PROT_NONE), 0);
    char *dst = g->base + page - n;
    memcpy(dst, s, n);
    return dst;
}

static void guarded_release(guard_t *g)
{
    munmap(g->base, g->size);
}

/* ---- valid examples and check characters -------------------------------------------------- */

static void test_credit_valid_examples(void **state)
{
    (void)state;
    expect_accept(ids_check_credit_code, CREDIT_A);
    expect_accept(ids_check_credit_code, CREDIT_B);
    /* code and reason are optional */
    assert_int_equal(ids_check_credit_code(CREDIT_A, NULL, NULL, 0), 0);
    assert_int_equal(ids_credit_code_check_char(CREDIT_A), '3');
    assert_int_equal(ids_credit_code_check_char(CREDIT_B), 'E');
    assert_int_equal(oracle_credit_check(CREDIT_A), '3');
    assert_int_equal(oracle_credit_check(CREDIT_B), 'E');
    /* only the first 17 characters count */
    assert_int_equal(ids_credit_code_check_char("91350100M000100Y4"), '3');
}

static void test_identity_valid_example(void **state)
{
    (void)state;
    expect_accept(ids_check_identity_number, PERSON);
    assert_int_equal(ids_check_identity_number(PERSON, NULL, NULL, 0), 0);
    assert_int_equal(ids_identity_check_char(PERSON), 'X');
    assert_int_equal(ids_identity_check_char("11010519491231002"), 'X');
    assert_int_equal(oracle_identity_check(PERSON), 'X');
}

static void test_check_char_rejects_bad_input(void **state)
{
    (void)state;
    assert_int_equal(ids_credit_code_check_char(NULL), 0);
    assert_int_equal(ids_credit_code_check_char(""), 0);
    assert_int_equal(ids_credit_code_check_char("91350100M000100Y"), 0); /* 16: stops at NUL */
    assert_int_equal(ids_credit_code_check_char("91350100m000100Y4"), 0);
    assert_int_equal(ids_credit_code_check_char("91350100I000100Y4"), 0);
    assert_int_equal(ids_identity_check_char(NULL), 0);
    assert_int_equal(ids_identity_check_char("1101051949123100"), 0);
    assert_int_equal(ids_identity_check_char("1101051949123100X"), 0);
    assert_int_equal(ids_identity_check_char("11010519491231A02"), 0);
}

/* ---- exhaustive single substitutions ------------------------------------------------------ */

/*
 * Weights 3^i mod 31 are all non-zero and 31 is prime, so changing one of the first 17
 * characters changes the sum mod 31, and changing the 18th leaves the required check character
 * as it was: no single substitution of a valid credit code is valid. The oracle must agree.
 */
static void test_credit_exhaustive_substitution(void **state)
{
    (void)state;
    static const char alphabet[] = "0123456789ABCDEFGHJKLMNPQRTUWXY"
                                   "IOZSV"
                                   "abcdefghijklmnopqrstuvwxyz";
    const char *examples[] = {CREDIT_A, CREDIT_B};
    int tried = 0, accepted = 0, oracle_accepted = 0, unchanged = 0;

    for (size_t e = 0; e < 2; e++) {
        for (int pos = 0; pos < 18; pos++) {
            for (const char *a = alphabet; *a; a++) {
                char buf[19];
                memcpy(buf, examples[e], sizeof(buf));
                if (buf[pos] == *a) {
                    unchanged++;
                    continue;
                }
                buf[pos] = *a;
                tried++;

                const char *code = NULL;
                char reason[256] = "";
                int rc = ids_check_credit_code(buf, &code, reason, sizeof(reason));
                const char *want = oracle_credit(buf);
                if ((rc == 0) != (want == NULL))
                    fail_msg("%s: ids says %d, oracle says %s", buf, rc, want ? want : "valid");
                if (want) {
                    if (strcmp(code, want) != 0)
                        fail_msg("%s: code %s, oracle %s", buf, code, want);
                    assert_true(strlen(reason) > 0);
                } else {
                    oracle_accepted++;
                }
                accepted += rc == 0;
                /* the check-character function agrees with the oracle on every prefix */
                assert_int_equal(ids_credit_code_check_char(buf), oracle_credit_check(buf));
            }
        }
    }
    assert_int_equal(unchanged, 2 * 18);
    assert_int_equal(tried, 2 * 18 * ((int)strlen(alphabet) - 1));
    assert_int_equal(accepted, oracle_accepted);
    assert_int_equal(oracle_accepted, 0);
}

/*
 * Same argument for GB 11643 (weights non-zero mod the prime 11, digit changes 1..9), and X is
 * only allowed last: no single substitution is valid.
 */
static void test_identity_exhaustive_substitution(void **state)
{
    (void)state;
    static const char alphabet[] = "0123456789Xx";
    int tried = 0, accepted = 0, oracle_accepted = 0, dates = 0;

    for (int pos = 0; pos < 18; pos++) {
        for (const char *a = alphabet; *a; a++) {
            char buf[19];
            memcpy(buf, PERSON, sizeof(buf));
            if (buf[pos] == *a)
                continue;
            buf[pos] = *a;
            tried++;

            const char *code = NULL;
            char reason[256] = "";
            int rc = ids_check_identity_number(buf, &code, reason, sizeof(reason));
            const char *want = oracle_identity(buf);
            if ((rc == 0) != (want == NULL))
                fail_msg("%s: ids says %d, oracle says %s", buf, rc, want ? want : "valid");
            if (want) {
                if (strcmp(code, want) != 0)
                    fail_msg("%s: code %s, oracle %s (%s)", buf, code, want, reason);
                assert_true(strlen(reason) > 0);
                assert_null(strstr(reason, buf)); /* never the whole number */
                dates += strcmp(want, "bad_date") == 0;
            } else {
                oracle_accepted++;
            }
            accepted += rc == 0;
            assert_int_equal(ids_identity_check_char(buf), oracle_identity_check(buf));
        }
    }
    assert_int_equal(tried, 18 * ((int)strlen(alphabet) - 1)); /* each original is in alphabet */
    assert_true(dates > 0); /* the substitutions did reach the date checks */
    assert_int_equal(accepted, oracle_accepted);
    assert_int_equal(oracle_accepted, 0);
}

/* ---- malformed credit codes and identity numbers ------------------------------------------ */

static void test_credit_bad_length(void **state)
{
    (void)state;
    char longs[1000];
    memset(longs, '9', sizeof(longs) - 1);
    longs[sizeof(longs) - 1] = '\0';

    expect_reject(ids_check_credit_code, "", "bad_length", "18 characters", "has 0");
    expect_reject(ids_check_credit_code, NULL, "bad_length", "18 characters", "has 0");
    expect_reject(ids_check_credit_code, "91350100M000100Y4", "bad_length", "18 characters",
                  "has 17");
    expect_reject(ids_check_credit_code, CREDIT_A "3", "bad_length", "18 characters", "has 19");
    expect_reject(ids_check_credit_code, longs, "bad_length", "18 characters", "has 999");
}

static void test_credit_bad_char(void **state)
{
    (void)state;
    expect_reject(ids_check_credit_code, "91350100m000100Y43", "bad_char", "lowercase 'm'",
                  "uppercase");
    expect_reject(ids_check_credit_code, "91512081MA62K0260e", "bad_char", "position 18",
                  "uppercase");
    static const char forbidden[] = "IOZSV";
    for (const char *f = forbidden; *f; f++) {
        char buf[19] = CREDIT_B;
        buf[9] = *f; /* the 'A' of MA62K0260 */
        char needle[8];
        snprintf(needle, sizeof(needle), "'%c'", *f);
        expect_reject(ids_check_credit_code, buf, "bad_char", needle, "I, O, Z, S, V");
        expect_reject(ids_check_credit_code, buf, "bad_char", "position 10", "not allowed");
    }
    expect_reject(ids_check_credit_code, "91350100M000-00Y43", "bad_char", "'-'", "position 13");
    expect_reject(ids_check_credit_code, "91350100M000\00100Y43", "bad_char", "byte 0x01", NULL);
    /* positions 3-8 are a numeric area code */
    expect_reject(ids_check_credit_code, "91A50100M000100Y43", "bad_char", "digit", "position 3");
    expect_reject(ids_check_credit_code, "9135010AM000100Y43", "bad_char", "digit", "position 8");
}

static void test_credit_bad_checksum(void **state)
{
    (void)state;
    expect_reject(ids_check_credit_code, "91350100M000100Y44", "bad_checksum", "check character",
                  "'3'");
    expect_reject(ids_check_credit_code, "91512081MA62K0260F", "bad_checksum", "'E'", "'F'");
    /* a swap of two adjacent characters */
    expect_reject(ids_check_credit_code, "91350100M001000Y43", "bad_checksum", "check", NULL);
}

static void test_identity_bad_length_and_char(void **state)
{
    (void)state;
    expect_reject(ids_check_identity_number, "", "bad_length", "18 characters", "has 0");
    expect_reject(ids_check_identity_number, NULL, "bad_length", "18 characters", NULL);
    expect_reject(ids_check_identity_number, "11010519491231002", "bad_length", "has 17", NULL);
    expect_reject(ids_check_identity_number, PERSON "0", "bad_length", "has 19", NULL);
    expect_reject(ids_check_identity_number, "11010519491231002x", "bad_char", "lowercase",
                  "use uppercase X");
    expect_reject(ids_check_identity_number, "1101051949123100X2", "bad_char", "position 17",
                  "digit");
    expect_reject(ids_check_identity_number, "110105194912310021", "bad_checksum",
                  "check character", "'X'");
    expect_reject(ids_check_identity_number, "11010519491231002Y", "bad_char", "position 18",
                  "digit or X");
}

static void test_identity_bad_dates(void **state)
{
    (void)state;
    static const struct {
        const char *date;
        const char *needle;
    } bad[] = {
        {"19490230", "day 30"},      {"20230229", "day 29"},   {"19000229", "day 29"},
        {"19491331", "month 13"},    {"19490015", "month 00"}, {"19491200", "day 00"},
        {"19490431", "day 31"},      {"19491232", "day 32"},   {"18991231", "before 1900"},
        {"00000101", "before 1900"}, {"99991231", "future"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
        char id[19];
        make_identity(id, "110105", bad[i].date, "002");
        assert_string_equal(oracle_identity(id), "bad_date");
        expect_reject(ids_check_identity_number, id, "bad_date", "birth date", bad[i].needle);
        char reason[256];
        ids_check_identity_number(id, NULL, reason, sizeof(reason));
        assert_null(strstr(reason, bad[i].date)); /* the date is the masked part of a number */
    }

    static const char *const good[] = {"20000229", "20240229", "19000101", "19491231", "19960229"};
    for (size_t i = 0; i < sizeof(good) / sizeof(*good); i++) {
        char id[19];
        make_identity(id, "110105", good[i], "002");
        assert_int_equal(ids_identity_check_char(id), id[17]);
        expect_accept(ids_check_identity_number, id);
    }
}

/* Today is accepted and tomorrow is not (the comparison uses the UTC date). */
static void test_identity_future_boundary(void **state)
{
    (void)state;
    int y0, m0, d0, y1, m1, d1;
    today_utc(&y0, &m0, &d0);

    time_t now = time(NULL), next = now + 86400;
    struct tm tm_now, tm_next;
    gmtime_r(&now, &tm_now);
    gmtime_r(&next, &tm_next);
    char today[16], tomorrow[16];
    assert_int_equal(strftime(today, sizeof(today), "%Y%m%d", &tm_now), 8);
    assert_int_equal(strftime(tomorrow, sizeof(tomorrow), "%Y%m%d", &tm_next), 8);

    char id_today[19], id_tomorrow[19];
    make_identity(id_today, "110105", today, "123");
    make_identity(id_tomorrow, "110105", tomorrow, "123");
    expect_accept(ids_check_identity_number, id_today);
    int rc = ids_check_identity_number(id_tomorrow, NULL, NULL, 0);

    today_utc(&y1, &m1, &d1);
    if (y0 == y1 && m0 == m1 && d0 == d1) /* the UTC day did not roll over meanwhile */
        expect_reject(ids_check_identity_number, id_tomorrow, "bad_date", "future", NULL);
    else
        assert_int_equal(rc, 0);
}

static void test_reason_buffer_handling(void **state)
{
    (void)state;
    char small[8];
    memset(small, 'Z', sizeof(small));
    assert_int_equal(ids_check_credit_code("x", NULL, small, sizeof(small)), -1);
    assert_int_equal(strlen(small), sizeof(small) - 1); /* truncated, NUL-terminated */

    char untouched[4] = "abc";
    const char *code = NULL;
    assert_int_equal(ids_check_identity_number("x", &code, untouched, 0), -1);
    assert_string_equal(untouched, "abc");
    assert_string_equal(code, "bad_length");
    assert_int_equal(ids_check_plate("x", NULL, NULL, 0), -1);
}

/* ---- plates -------------------------------------------------------------------------------- */

static void test_plate_valid(void **state)
{
    (void)state;
    static const char *const ok[] = {
        "津A12345",  "京AD12345", "沪A1234F",  "粤B12345F", "京AF0001", "京AHJ8Z9",
        "浙BD1234F", "津A1234挂", "粤B1234学", "京A1234警", "琼A00000",
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(*ok); i++)
        expect_accept(ids_check_plate, ok[i]);

    /* every one of the 31 provinces */
    static const char provinces[] =
        "京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼";
    assert_int_equal(strlen(provinces), 31 * 3);
    for (size_t i = 0; i < 31; i++) {
        char plate[16];
        snprintf(plate, sizeof(plate), "%.3sA12345", provinces + 3 * i);
        expect_accept(ids_check_plate, plate);
    }
    /* every authority letter but I and O */
    for (char c = 'A'; c <= 'Z'; c++) {
        char plate[16];
        snprintf(plate, sizeof(plate), "津%c12345", c);
        int rc = ids_check_plate(plate, NULL, NULL, 0);
        assert_int_equal(rc, (c == 'I' || c == 'O') ? -1 : 0);
    }
}

static void test_plate_invalid(void **state)
{
    (void)state;
    expect_reject(ids_check_plate, "", "bad_length", "empty", NULL);
    expect_reject(ids_check_plate, NULL, "bad_length", "empty", NULL);
    expect_reject(ids_check_plate, "津", "bad_length", "no issuing-authority", NULL);
    expect_reject(ids_check_plate, "津a12345", "bad_char", "lowercase 'a'", "uppercase");
    expect_reject(ids_check_plate, "津A1234f", "bad_char", "lowercase 'f'", "uppercase");
    expect_reject(ids_check_plate, "津I12345", "bad_char", "'I'", "other than I or O");
    expect_reject(ids_check_plate, "津O12345", "bad_char", "'O'", NULL);
    expect_reject(ids_check_plate, "津1A2345", "bad_char", "'1'", NULL);
    expect_reject(ids_check_plate, "津A1234O", "bad_char", "'O'", "other than I or O");
    expect_reject(ids_check_plate, "津AI2345", "bad_char", "'I'", NULL);
    expect_reject(ids_check_plate, "津A12-45", "bad_char", "'-'", NULL);
    expect_reject(ids_check_plate, "津A1234", "bad_length", "5 characters", "has 4");
    expect_reject(ids_check_plate, "津A1234567", "bad_length", "5 characters", "has 7");
    expect_reject(ids_check_plate, "津A123456", "bad_format", "D or F", NULL);
    expect_reject(ids_check_plate, "津A12D345", "bad_format", "D or F", NULL);
    expect_reject(ids_check_plate, "港A12345", "bad_char", "province", NULL);
    expect_reject(ids_check_plate, "AA12345", "bad_char", "province", NULL);
    expect_reject(ids_check_plate, "挂A12345", "bad_char", "province", NULL);
    expect_reject(ids_check_plate, "\xe4", "bad_char", "province", NULL);
    expect_reject(ids_check_plate, "\xe4\xba", "bad_char", "province", NULL);
    expect_reject(ids_check_plate, "津A挂1234", "bad_char", "non-ASCII", "挂");
    expect_reject(ids_check_plate, "津A123挂", "bad_length", "4 serial characters", "has 3");
    expect_reject(ids_check_plate, "津A12345挂", "bad_length", "4 serial characters", "has 5");
    expect_reject(ids_check_plate, "津A1234挂挂", "bad_char", "non-ASCII", NULL);
    expect_reject(ids_check_plate, "津A1234\xe6\x8c", "bad_char", "non-ASCII", NULL);
    expect_reject(ids_check_plate, "津A 12345", "bad_char", "' '", NULL);
}

/* ---- code formats -------------------------------------------------------------------------- */

static void test_department_format(void **state)
{
    (void)state;
    char max[33], over[34];
    memset(max, 'a', 32);
    max[32] = '\0';
    memset(over, 'a', 33);
    over[33] = '\0';

    static const char *const ok[] = {"mot", "ab", "a1", "a_", "road_transport_2"};
    for (size_t i = 0; i < sizeof(ok) / sizeof(*ok); i++)
        assert_int_equal(ids_is_department(ok[i]), 1);
    assert_int_equal(ids_is_department(max), 1);

    static const char *const bad[] = {"",    "a",   "1ab", "_ab",  "Ab",  "aB",
                                      "a-b", "a.b", "a b", "交通", "ab\n"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++)
        if (ids_is_department(bad[i]))
            fail_msg("department \"%s\" accepted", bad[i]);
    assert_int_equal(ids_is_department(over), 0);
    assert_int_equal(ids_is_department(NULL), 0);
}

static void test_list_code_format(void **state)
{
    (void)state;
    static const char *const ok[] = {
        "red.a", "black.x", "focus.road_freight", "black.road.freight", "red.1", "focus.a.b.c_2"};
    for (size_t i = 0; i < sizeof(ok) / sizeof(*ok); i++)
        if (!ids_is_list_code(ok[i]))
            fail_msg("list code \"%s\" rejected", ok[i]);

    static const char *const bad[] = {
        "",        "black..x", "black.x.",  "black.",     "black", "red.A", "blue.x",
        ".red.x",  "redx",     "red.x-y",   "black.x..y", "Red.x", "red..", "blacklist.x",
        "red.x y", "focus..",  "black.x/y", "red.交通",   ".",     "red",   "red.\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++)
        if (ids_is_list_code(bad[i]))
            fail_msg("list code \"%s\" accepted", bad[i]);
    assert_int_equal(ids_is_list_code(NULL), 0);
}

static void test_measure_code_format(void **state)
{
    (void)state;
    static const char *const ok[] = {"AB", "A1", "A_", "NO_BID_2025", "RESTRICT_LICENCE"};
    for (size_t i = 0; i < sizeof(ok) / sizeof(*ok); i++)
        assert_int_equal(ids_is_measure_code(ok[i]), 1);
    static const char *const bad[] = {"A", "", "a", "1A", "_A", "Ab", "A-B", "A B", "A.B"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++)
        if (ids_is_measure_code(bad[i]))
            fail_msg("measure code \"%s\" accepted", bad[i]);
    assert_int_equal(ids_is_measure_code(NULL), 0);
}

static void test_memorandum_id_format(void **state)
{
    (void)state;
    char max[65], over[66];
    memset(max, 'm', 64);
    max[64] = '\0';
    memset(over, 'm', 65);
    over[65] = '\0';

    static const char *const ok[] = {"a", "2024-01", "mou.road_freight-v2", "-", "."};
    for (size_t i = 0; i < sizeof(ok) / sizeof(*ok); i++)
        assert_int_equal(ids_is_memorandum_id(ok[i]), 1);
    assert_int_equal(ids_is_memorandum_id(max), 1);

    static const char *const bad[] = {"", "A", "a b", "a/b", "a:b", "备忘录", "a\n"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++)
        if (ids_is_memorandum_id(bad[i]))
            fail_msg("memorandum id \"%s\" accepted", bad[i]);
    assert_int_equal(ids_is_memorandum_id(over), 0);
    assert_int_equal(ids_is_memorandum_id(NULL), 0);
}

/* ---- subject types and keys --------------------------------------------------------------- */

static void test_subject_type_names(void **state)
{
    (void)state;
    assert_string_equal(ids_subject_type_name(IDS_SUBJECT_ENTERPRISE), "enterprise");
    assert_string_equal(ids_subject_type_name(IDS_SUBJECT_PERSON), "person");
    assert_string_equal(ids_subject_type_name(IDS_SUBJECT_VEHICLE), "vehicle");
    assert_string_equal(ids_subject_type_name(IDS_SUBJECT_UNKNOWN), "unknown");

    for (int t = IDS_SUBJECT_ENTERPRISE; t <= IDS_SUBJECT_VEHICLE; t++)
        assert_int_equal(ids_subject_type_parse(ids_subject_type_name((ids_subject_type_t)t)), t);
    assert_int_equal(ids_subject_type_parse("SUBJECT_TYPE_ENTERPRISE"), IDS_SUBJECT_ENTERPRISE);
    assert_int_equal(ids_subject_type_parse("SUBJECT_TYPE_PERSON"), IDS_SUBJECT_PERSON);
    assert_int_equal(ids_subject_type_parse("SUBJECT_TYPE_VEHICLE"), IDS_SUBJECT_VEHICLE);

    static const char *const unknown[] = {
        "unknown", "SUBJECT_TYPE_UNSPECIFIED", "Person", "", "person ", "ship", "2"};
    for (size_t i = 0; i < sizeof(unknown) / sizeof(*unknown); i++)
        assert_int_equal(ids_subject_type_parse(unknown[i]), IDS_SUBJECT_UNKNOWN);
    assert_int_equal(ids_subject_type_parse(NULL), IDS_SUBJECT_UNKNOWN);
}

static void test_check_subject_dispatch(void **state)
{
    (void)state;
    const char *code = NULL;
    char reason[128] = "";
    assert_int_equal(ids_check_subject(IDS_SUBJECT_ENTERPRISE, CREDIT_A, NULL, NULL, 0), 0);
    assert_int_equal(ids_check_subject(IDS_SUBJECT_PERSON, PERSON, NULL, NULL, 0), 0);
    assert_int_equal(ids_check_subject(IDS_SUBJECT_VEHICLE, "津A12345", NULL, NULL, 0), 0);
    /* each id is only valid as its own type */
    assert_int_equal(ids_check_subject(IDS_SUBJECT_PERSON, CREDIT_A, NULL, NULL, 0), -1);
    assert_int_equal(ids_check_subject(IDS_SUBJECT_ENTERPRISE, PERSON, NULL, NULL, 0), -1);
    assert_int_equal(ids_check_subject(IDS_SUBJECT_VEHICLE, CREDIT_A, NULL, NULL, 0), -1);

    assert_int_equal(
        ids_check_subject(IDS_SUBJECT_UNKNOWN, CREDIT_A, &code, reason, sizeof(reason)), -1);
    assert_string_equal(code, "bad_type");
    assert_non_null(strstr(reason, "subject type"));
}

static void test_subject_key_build(void **state)
{
    (void)state;
    char buf[64];
    assert_int_equal(ids_subject_key(IDS_SUBJECT_ENTERPRISE, CREDIT_A, buf, sizeof(buf)), 29);
    assert_string_equal(buf, "enterprise:" CREDIT_A);
    assert_int_equal(ids_subject_key(IDS_SUBJECT_PERSON, PERSON, buf, sizeof(buf)), 25);
    assert_string_equal(buf, "person:" PERSON);
    assert_int_equal(ids_subject_key(IDS_SUBJECT_VEHICLE, "津A12345", buf, sizeof(buf)),
                     (int)strlen("vehicle:津A12345"));
    assert_string_equal(buf, "vehicle:津A12345");

    /* exact fit, one byte short */
    char fit[30];
    assert_int_equal(ids_subject_key(IDS_SUBJECT_ENTERPRISE, CREDIT_A, fit, sizeof(fit)), 29);
    assert_string_equal(fit, "enterprise:" CREDIT_A);
    assert_int_equal(ids_subject_key(IDS_SUBJECT_ENTERPRISE, CREDIT_A, fit, sizeof(fit) - 1), -1);
    assert_string_equal(fit, "");
    assert_int_equal(ids_subject_key(IDS_SUBJECT_ENTERPRISE, CREDIT_A, fit, 0), -1);
    assert_int_equal(ids_subject_key(IDS_SUBJECT_ENTERPRISE, CREDIT_A, NULL, 10), -1);

    assert_int_equal(ids_subject_key(IDS_SUBJECT_UNKNOWN, CREDIT_A, buf, sizeof(buf)), -1);
    assert_string_equal(buf, "");
    assert_int_equal(ids_subject_key(IDS_SUBJECT_PERSON, NULL, buf, sizeof(buf)), -1);
}

static void test_subject_key_round_trip(void **state)
{
    (void)state;
    static const struct {
        ids_subject_type_t type;
        const char *id;
    } subjects[] = {
        {IDS_SUBJECT_ENTERPRISE, CREDIT_A}, {IDS_SUBJECT_ENTERPRISE, CREDIT_B},
        {IDS_SUBJECT_PERSON, PERSON},       {IDS_SUBJECT_VEHICLE, "津A12345"},
        {IDS_SUBJECT_VEHICLE, "京AD12345"}, {IDS_SUBJECT_VEHICLE, "津A1234挂"},
    };
    for (size_t i = 0; i < sizeof(subjects) / sizeof(*subjects); i++) {
        char key[64];
        int n = ids_subject_key(subjects[i].type, subjects[i].id, key, sizeof(key));
        assert_int_equal(n, (int)strlen(key));

        ids_subject_type_t type = IDS_SUBJECT_UNKNOWN;
        const char *id = NULL, *code = NULL;
        char reason[128] = "";
        assert_int_equal(ids_subject_key_parse(key, &type, &id, &code, reason, sizeof(reason)), 0);
        assert_int_equal(type, subjects[i].type);
        assert_string_equal(id, subjects[i].id);
        assert_ptr_equal(id, key + strlen(ids_subject_type_name(type)) + 1); /* points into key */
    }
    /* type and id outputs are optional */
    assert_int_equal(ids_subject_key_parse("person:" PERSON, NULL, NULL, NULL, NULL, 0), 0);
}

static void test_subject_key_parse_rejects(void **state)
{
    (void)state;
    static const struct {
        const char *key;
        const char *code;
        const char *needle;
    } bad[] = {
        {"ship:123", "bad_type", "type"},
        {":" CREDIT_A, "bad_type", "type"},
        {"Person:" PERSON, "bad_type", "type"},
        {"SUBJECT_TYPE_PERSON:" PERSON, "bad_type", "type"},
        {"enterprises:" CREDIT_A, "bad_type", "type"},
        {CREDIT_A, "bad_format", "colon"},
        {"", "bad_format", "colon"},
        {"person:110105194912310021", "bad_checksum", "check"},
        {"person:" PERSON ":x", "bad_length", "18"},
        {"enterprise:", "bad_length", "18"},
        {"enterprise:" PERSON, "bad_checksum", "check"},
        {"vehicle:" CREDIT_A, "bad_char", "province"},
        {"vehicle:津a12345", "bad_char", "uppercase"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
        ids_subject_type_t type = IDS_SUBJECT_VEHICLE;
        const char *id = "sentinel", *code = NULL;
        char reason[160] = "";
        assert_int_equal(
            ids_subject_key_parse(bad[i].key, &type, &id, &code, reason, sizeof(reason)), -1);
        if (strcmp(code, bad[i].code) != 0)
            fail_msg("\"%s\": code %s, expected %s (%s)", bad[i].key, code, bad[i].code, reason);
        if (!strstr(reason, bad[i].needle))
            fail_msg("\"%s\": reason \"%s\" lacks \"%s\"", bad[i].key, reason, bad[i].needle);
        assert_int_equal(type, IDS_SUBJECT_UNKNOWN);
        assert_null(id);
    }
    const char *code = NULL;
    assert_int_equal(ids_subject_key_parse(NULL, NULL, NULL, &code, NULL, 0), -1);
    assert_string_equal(code, "bad_format");
}

/* ---- masking ------------------------------------------------------------------------------- */

static void test_mask(void **state)
{
    (void)state;
    char buf[64];
    ids_mask(PERSON, buf, sizeof(buf));
    assert_string_equal(buf, "110105********002X");
    ids_mask(CREDIT_A, buf, sizeof(buf));
    assert_string_equal(buf, "913501********0Y43");
    ids_mask("12345678901", buf, sizeof(buf)); /* 11: the shortest partly kept */
    assert_string_equal(buf, "123456*8901");
    ids_mask("1234567890", buf, sizeof(buf));
    assert_string_equal(buf, "**********");
    ids_mask("1", buf, sizeof(buf));
    assert_string_equal(buf, "*");
    ids_mask("", buf, sizeof(buf));
    assert_string_equal(buf, "");
    ids_mask(NULL, buf, sizeof(buf)); /* NULL is accepted and masks to "" */
    assert_string_equal(buf, "");
}

static void test_mask_truncation(void **state)
{
    (void)state;
    char buf[8];
    ids_mask(PERSON, buf, sizeof(buf));
    assert_string_equal(buf, "110105*");
    ids_mask("1234567890", buf, 4);
    assert_string_equal(buf, "***");
    ids_mask(PERSON, buf, 1);
    assert_string_equal(buf, "");

    char untouched[4] = "abc";
    ids_mask(PERSON, untouched, 0);
    assert_string_equal(untouched, "abc");
    ids_mask(PERSON, NULL, 10); /* no buffer: nothing written, no crash */

    /* a truncated mask never shows more of the number than the full mask */
    for (size_t size = 1; size <= 19; size++) {
        char out[19];
        ids_mask(PERSON, out, size);
        assert_int_equal(strlen(out), size - 1);
        assert_memory_equal(out, "110105********002X", size - 1);
    }
}

/* ---- over-reads ---------------------------------------------------------------------------- */

/* The guard page does catch a one-byte over-read (so the next test means something). */
static void test_guard_page_faults(void **state)
{
    (void)state;
    guard_t g;
    const char *s = guarded_copy(&g, "ab");
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        /* cmocka catches SIGSEGV to report a failure; the child must simply die of it */
        signal(SIGSEGV, SIG_DFL);
        signal(SIGBUS, SIG_DFL);
        volatile char c = s[3];
        (void)c;
        _exit(0);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status));
    assert_true(WTERMSIG(status) == SIGSEGV || WTERMSIG(status) == SIGBUS);
    assert_int_equal(s[2], '\0');
    guarded_release(&g);
}

/* Run every function of ids.h on a guarded copy of plain; results must equal the unguarded. */
static void check_guarded(const char *plain)
{
    guard_t g;
    const char *s = guarded_copy(&g, plain);
    char reason[256];
    const char *code;
    char m1[64], m2[64];

    assert_int_equal(ids_check_credit_code(s, &code, reason, sizeof(reason)),
                     ids_check_credit_code(plain, NULL, NULL, 0));
    assert_int_equal(ids_check_identity_number(s, &code, reason, sizeof(reason)),
                     ids_check_identity_number(plain, NULL, NULL, 0));
    assert_int_equal(ids_check_plate(s, &code, reason, sizeof(reason)),
                     ids_check_plate(plain, NULL, NULL, 0));
    for (int t = IDS_SUBJECT_UNKNOWN; t <= IDS_SUBJECT_VEHICLE; t++)
        assert_int_equal(ids_check_subject((ids_subject_type_t)t, s, &code, reason, sizeof(reason)),
                         ids_check_subject((ids_subject_type_t)t, plain, NULL, NULL, 0));
    assert_int_equal(ids_credit_code_check_char(s), ids_credit_code_check_char(plain));
    assert_int_equal(ids_identity_check_char(s), ids_identity_check_char(plain));
    assert_int_equal(ids_is_department(s), ids_is_department(plain));
    assert_int_equal(ids_is_list_code(s), ids_is_list_code(plain));
    assert_int_equal(ids_is_measure_code(s), ids_is_measure_code(plain));
    assert_int_equal(ids_is_memorandum_id(s), ids_is_memorandum_id(plain));
    assert_int_equal(ids_subject_type_parse(s), ids_subject_type_parse(plain));

    ids_subject_type_t type;
    const char *id;
    assert_int_equal(ids_subject_key_parse(s, &type, &id, &code, reason, sizeof(reason)),
                     ids_subject_key_parse(plain, NULL, NULL, NULL, NULL, 0));

    char key[8192];
    assert_int_equal(ids_subject_key(IDS_SUBJECT_VEHICLE, s, key, sizeof(key)),
                     ids_subject_key(IDS_SUBJECT_VEHICLE, plain, key, sizeof(key)));

    ids_mask(s, m1, sizeof(m1));
    ids_mask(plain, m2, sizeof(m2));
    assert_string_equal(m1, m2);
    guarded_release(&g);
}

/* Every function on inputs whose NUL is the last readable byte. */
static void test_guarded_validators(void **state)
{
    (void)state;
    static char longs[4000];
    memset(longs, 'A', sizeof(longs) - 1);
    static const char *const inputs[] = {
        "",
        "9",
        "11010519491231002x",
        "9135010 0M000100Y43",
        "津A1234\xe6\x8c",
        "津A1234\xe6",
        "\xe4",
        "\xe4\xba",
        "津a",
        "a",
        "A",
        "red",
        "re",
        "foc",
        "m",
        ":",
        "ship:x",
        "SUBJECT_TYPE_",
        "12345678901",
        longs,
    };
    for (size_t i = 0; i < sizeof(inputs) / sizeof(*inputs); i++)
        check_guarded(inputs[i]);

    /* every prefix of these puts the NUL at every position a scanner could overshoot */
    static const char *const seeds[] = {
        CREDIT_A,
        CREDIT_B,
        PERSON,
        "11010519490230002X",
        "津A12345",
        "京AD12345",
        "津A1234挂",
        "black.road.freight.",
        "black..x",
        "focus.a_1",
        "red.x-y",
        "mot_transport_2",
        "NO_BID_2025",
        "mou.road-v2",
        "enterprise:" CREDIT_A,
        "person:" PERSON,
        "vehicle:津A1234挂",
        "SUBJECT_TYPE_VEHICLE",
    };
    int runs = 0;
    for (size_t i = 0; i < sizeof(seeds) / sizeof(*seeds); i++) {
        size_t n = strlen(seeds[i]);
        for (size_t len = 0; len <= n; len++) {
            char prefix[64];
            assert_true(len < sizeof(prefix));
            memcpy(prefix, seeds[i], len);
            prefix[len] = '\0';
            check_guarded(prefix);
            runs++;
        }
    }
    assert_int_equal(runs, 293); /* sum of (length + 1) over the seeds */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_credit_valid_examples),
        cmocka_unit_test(test_identity_valid_example),
        cmocka_unit_test(test_check_char_rejects_bad_input),
        cmocka_unit_test(test_credit_exhaustive_substitution),
        cmocka_unit_test(test_identity_exhaustive_substitution),
        cmocka_unit_test(test_credit_bad_length),
        cmocka_unit_test(test_credit_bad_char),
        cmocka_unit_test(test_credit_bad_checksum),
        cmocka_unit_test(test_identity_bad_length_and_char),
        cmocka_unit_test(test_identity_bad_dates),
        cmocka_unit_test(test_identity_future_boundary),
        cmocka_unit_test(test_reason_buffer_handling),
        cmocka_unit_test(test_plate_valid),
        cmocka_unit_test(test_plate_invalid),
        cmocka_unit_test(test_department_format),
        cmocka_unit_test(test_list_code_format),
        cmocka_unit_test(test_measure_code_format),
        cmocka_unit_test(test_memorandum_id_format),
        cmocka_unit_test(test_subject_type_names),
        cmocka_unit_test(test_check_subject_dispatch),
        cmocka_unit_test(test_subject_key_build),
        cmocka_unit_test(test_subject_key_round_trip),
        cmocka_unit_test(test_subject_key_parse_rejects),
        cmocka_unit_test(test_mask),
        cmocka_unit_test(test_mask_truncation),
        cmocka_unit_test(test_guard_page_faults),
        cmocka_unit_test(test_guarded_validators),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
