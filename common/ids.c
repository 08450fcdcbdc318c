/*
 * ids: validation of the identifiers the credit system keys everything on. A subject id that
 * passes here is one the issuing authority could have issued (check characters recomputed,
 * birth dates real), so a typo never becomes a second subject. No allocation, and no read past
 * the terminating NUL of any input (tests run every validator against a guard page).
 */
#include "ids.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define IDS_CODE_LEN 18
#define IDS_MEMORANDUM_MAX 64
#define IDS_DEPARTMENT_MAX 32

/* GB 32100-2015 charset: the character's index is its value; I O Z S V are left out. */
static const char ids__credit_charset[] = "0123456789ABCDEFGHJKLMNPQRTUWXY";
static const int ids__credit_weights[17] = {1,  3,  9,  27, 19, 26, 16, 17, 20,
                                            29, 25, 13, 8,  24, 10, 30, 28};

static const int ids__identity_weights[17] = {7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2};
static const char ids__identity_checks[] = "10X98765432";

/* The 31 mainland province abbreviations (GA 36-2018), each 3 bytes of UTF-8. */
static const char *const ids__provinces[] = {
    "京", "津", "沪", "渝", "冀", "豫", "云", "辽", "黑", "湘", "皖", "鲁", "新", "苏", "浙", "赣",
    "鄂", "桂", "甘", "晋", "蒙", "陕", "吉", "闽", "贵", "粤", "青", "藏", "川", "宁", "琼",
};
/* Suffixes that take the place of the last serial character: trailer, learner, police. */
static const char *const ids__plate_suffixes[] = {"挂", "学", "警"};

static int ids__fail(const char **code, const char *token, char *reason, size_t reason_size,
                     const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* Set *code and format the reason; always returns -1 so callers can `return ids__fail(...)`. */
static int ids__fail(const char **code, const char *token, char *reason, size_t reason_size,
                     const char *fmt, ...)
{
    if (code)
        *code = token;
    if (reason && reason_size > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(reason, reason_size, fmt, ap);
        va_end(ap);
    }
    return -1;
}

/*
 * Describe one offending byte for a reason: "'a'" when printable, "byte 0xE4" otherwise, so a
 * reason never carries raw control or partial UTF-8 bytes into a log line.
 */
static const char *ids__describe(unsigned char c, char *buf, size_t size)
{
    if (c >= 0x20 && c < 0x7f)
        snprintf(buf, size, "'%c'", c);
    else
        snprintf(buf, size, "byte 0x%02X", c);
    return buf;
}

static int ids__is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static int ids__is_lower(char c)
{
    return c >= 'a' && c <= 'z';
}

static int ids__is_upper(char c)
{
    return c >= 'A' && c <= 'Z';
}

/* Value of c in the GB 32100 charset, or -1. */
static int ids__credit_value(char c)
{
    if (c == '\0')
        return -1; /* strchr would find the terminator */
    const char *p = strchr(ids__credit_charset, c);
    return p ? (int)(p - ids__credit_charset) : -1;
}

char ids_credit_code_check_char(const char *s17)
{
    if (!s17)
        return 0;
    int sum = 0;
    /* Stop at the first character outside the charset: that includes a NUL of a short input. */
    for (int i = 0; i < 17; i++) {
        int v = ids__credit_value(s17[i]);
        if (v < 0)
            return 0;
        sum += v * ids__credit_weights[i];
    }
    return ids__credit_charset[(31 - sum % 31) % 31];
}

char ids_identity_check_char(const char *s17)
{
    if (!s17)
        return 0;
    int sum = 0;
    for (int i = 0; i < 17; i++) {
        if (!ids__is_digit(s17[i]))
            return 0;
        sum += (s17[i] - '0') * ids__identity_weights[i];
    }
    return ids__identity_checks[sum % 11];
}

/*
 * Precedence of the checks, the same for every code: length, then each character in order, then
 * (identity numbers) the birth date, then the check character. The first problem found is the one
 * reported, so a code with a bad date and a bad check character reports the date.
 */
int ids_check_credit_code(const char *s, const char **code, char *reason, size_t reason_size)
{
    char d[16];
    size_t len = s ? strlen(s) : 0;

    if (len != IDS_CODE_LEN)
        return ids__fail(code, "bad_length", reason, reason_size,
                         "a unified social credit code has 18 characters, this one has %zu", len);
    for (size_t i = 0; i < IDS_CODE_LEN; i++) {
        char c = s[i];
        if (ids__is_lower(c))
            return ids__fail(code, "bad_char", reason, reason_size,
                             "lowercase '%c' at position %zu of the credit code: use uppercase "
                             "letters",
                             c, i + 1);
        if (ids__credit_value(c) < 0) {
            if (c == 'I' || c == 'O' || c == 'Z' || c == 'S' || c == 'V')
                return ids__fail(code, "bad_char", reason, reason_size,
                                 "letter '%c' at position %zu is not allowed in a credit code "
                                 "(GB 32100 does not use I, O, Z, S, V)",
                                 c, i + 1);
            return ids__fail(code, "bad_char", reason, reason_size,
                             "%s at position %zu is not allowed in a credit code",
                             ids__describe((unsigned char)c, d, sizeof(d)), i + 1);
        }
        /* Positions 3-8 are the administrative division code of the registering office. */
        if (i >= 2 && i <= 7 && !ids__is_digit(c))
            return ids__fail(code, "bad_char", reason, reason_size,
                             "'%c' at position %zu of the credit code must be a digit "
                             "(positions 3-8 are the area code)",
                             c, i + 1);
    }
    char want = ids_credit_code_check_char(s);
    if (s[17] != want)
        return ids__fail(code, "bad_checksum", reason, reason_size,
                         "the credit code's check character is '%c' but its first 17 characters "
                         "give '%c'",
                         s[17], want);
    return 0;
}

static int ids__is_leap(int y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

/* Today's date as YYYYMMDD in UTC, the reference for "not born in the future". */
static long ids__today_utc(void)
{
    time_t now = time(NULL);
    struct tm tm;
    if (!gmtime_r(&now, &tm))
        return 99991231L; /* no clock: do not reject on a date we cannot compare with */
    return (tm.tm_year + 1900) * 10000L + (tm.tm_mon + 1) * 100L + tm.tm_mday;
}

/* Validate the 8 digits at p (already known to be digits) as a birth date. */
static int ids__check_birth_date(const char *p, const char **code, char *reason, size_t reason_size)
{
    static const int days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int y = 0, m = 0, dd = 0;
    for (int i = 0; i < 4; i++)
        y = y * 10 + (p[i] - '0');
    m = (p[4] - '0') * 10 + (p[5] - '0');
    dd = (p[6] - '0') * 10 + (p[7] - '0');

    /* The reasons name the problem but not the date: it is the part ids_mask() hides. */
    if (y < 1900)
        return ids__fail(code, "bad_date", reason, reason_size,
                         "the birth date (positions 7-14) is before 1900");
    if (m < 1 || m > 12)
        return ids__fail(code, "bad_date", reason, reason_size,
                         "the birth date (positions 7-14) has month %02d, which does not exist", m);
    int max = days[m - 1] + (m == 2 && ids__is_leap(y));
    if (dd < 1 || dd > max)
        return ids__fail(code, "bad_date", reason, reason_size,
                         "the birth date (positions 7-14) has day %02d, but its month has %d days",
                         dd, max);
    if (y * 10000L + m * 100L + dd > ids__today_utc())
        return ids__fail(code, "bad_date", reason, reason_size,
                         "the birth date (positions 7-14) is in the future");
    return 0;
}

/* Reasons never quote the whole number: it is personal data and reasons end up in logs. */
int ids_check_identity_number(const char *s, const char **code, char *reason, size_t reason_size)
{
    char d[16];
    size_t len = s ? strlen(s) : 0;

    if (len != IDS_CODE_LEN)
        return ids__fail(code, "bad_length", reason, reason_size,
                         "a resident identity number has 18 characters, this one has %zu", len);
    for (size_t i = 0; i < 17; i++) {
        if (!ids__is_digit(s[i]))
            return ids__fail(code, "bad_char", reason, reason_size,
                             "%s at position %zu of the identity number must be a digit",
                             ids__describe((unsigned char)s[i], d, sizeof(d)), i + 1);
    }
    if (s[17] == 'x')
        return ids__fail(code, "bad_char", reason, reason_size,
                         "the identity number's check character is lowercase 'x': use uppercase X");
    if (!ids__is_digit(s[17]) && s[17] != 'X')
        return ids__fail(code, "bad_char", reason, reason_size,
                         "%s at position 18 of the identity number must be a digit or X",
                         ids__describe((unsigned char)s[17], d, sizeof(d)));
    if (ids__check_birth_date(s + 6, code, reason, reason_size) < 0)
        return -1;
    char want = ids_identity_check_char(s);
    if (s[17] != want)
        return ids__fail(code, "bad_checksum", reason, reason_size,
                         "the identity number's check character is '%c' but its first 17 digits "
                         "give '%c'",
                         s[17], want);
    return 0;
}

/* Letters and digits of plate serials and the issuing-authority letter exclude I and O. */
static int ids__is_plate_alnum(char c)
{
    return ids__is_digit(c) || (ids__is_upper(c) && c != 'I' && c != 'O');
}

/* Which of the 3-byte strings in set starts p (p has at least 3 bytes), or -1. */
static int ids__match3(const char *p, const char *const *set, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (memcmp(p, set[i], 3) == 0)
            return (int)i;
    return -1;
}

/*
 * Plate: province + authority letter + serial. Serials are 5 characters (ordinary), 4 characters
 * and a 挂/学/警 suffix (trailer, learner, police), or 6 characters with D or F first or last
 * (new energy). Plates check characters before length: the serial's length depends on its form,
 * and "津A挂1234" is better reported as a misplaced 挂 than as a wrong length.
 */
int ids_check_plate(const char *s, const char **code, char *reason, size_t reason_size)
{
    char d[16];
    size_t len = s ? strlen(s) : 0;

    if (len == 0)
        return ids__fail(code, "bad_length", reason, reason_size, "the plate is empty");
    /* len is checked before memcmp so that a short input is never read past its NUL. */
    if (len < 3 ||
        ids__match3(s, ids__provinces, sizeof(ids__provinces) / sizeof(*ids__provinces)) < 0)
        return ids__fail(code, "bad_char", reason, reason_size,
                         "the plate does not start with one of the 31 province abbreviations");
    const char *p = s + 3;
    size_t n = len - 3;
    if (n == 0)
        return ids__fail(code, "bad_length", reason, reason_size,
                         "the plate has no issuing-authority letter or serial");
    if (ids__is_lower(p[0]))
        return ids__fail(code, "bad_char", reason, reason_size,
                         "the plate's issuing-authority letter is lowercase '%c': use uppercase",
                         p[0]);
    if (!ids__is_upper(p[0]) || p[0] == 'I' || p[0] == 'O')
        return ids__fail(code, "bad_char", reason, reason_size,
                         "the plate's issuing-authority letter is %s, not a letter A-Z other than "
                         "I or O",
                         ids__describe((unsigned char)p[0], d, sizeof(d)));
    p++;
    n--;

    size_t serial = n; /* bytes of ASCII serial before any suffix */
    int suffix =
        n >= 3 && ids__match3(p + n - 3, ids__plate_suffixes,
                              sizeof(ids__plate_suffixes) / sizeof(*ids__plate_suffixes)) >= 0;
    if (suffix)
        serial = n - 3;
    for (size_t i = 0; i < serial; i++) {
        if ((unsigned char)p[i] >= 0x80)
            return ids__fail(code, "bad_char", reason, reason_size,
                             "the plate's serial has a non-ASCII character; only 挂, 学 or 警 "
                             "may end a plate");
        if (ids__is_lower(p[i]))
            return ids__fail(code, "bad_char", reason, reason_size,
                             "lowercase '%c' in the plate's serial: use uppercase", p[i]);
        if (!ids__is_plate_alnum(p[i]))
            return ids__fail(code, "bad_char", reason, reason_size,
                             "%s in the plate's serial is not a digit or a letter other than I "
                             "or O",
                             ids__describe((unsigned char)p[i], d, sizeof(d)));
    }
    if (suffix && serial != 4)
        return ids__fail(code, "bad_length", reason, reason_size,
                         "a plate ending in 挂, 学 or 警 has 4 serial characters before it, this "
                         "one has %zu",
                         serial);
    if (!suffix && serial != 5 && serial != 6)
        return ids__fail(code, "bad_length", reason, reason_size,
                         "a plate's serial has 5 characters (6 for new energy), this one has %zu",
                         serial);
    if (serial == 6 && !(p[0] == 'D' || p[0] == 'F' || p[5] == 'D' || p[5] == 'F'))
        return ids__fail(code, "bad_format", reason, reason_size,
                         "a 6-character (new energy) plate serial must begin or end with D or F");
    return 0;
}

int ids_check_subject(ids_subject_type_t type, const char *id, const char **code, char *reason,
                      size_t reason_size)
{
    switch (type) {
    case IDS_SUBJECT_ENTERPRISE:
        return ids_check_credit_code(id, code, reason, reason_size);
    case IDS_SUBJECT_PERSON:
        return ids_check_identity_number(id, code, reason, reason_size);
    case IDS_SUBJECT_VEHICLE:
        return ids_check_plate(id, code, reason, reason_size);
    default:
        return ids__fail(code, "bad_type", reason, reason_size,
                         "subject type %d is not enterprise, person or vehicle", (int)type);
    }
}

int ids_is_department(const char *s)
{
    if (!s || !ids__is_lower(s[0]))
        return 0;
    size_t i = 1;
    for (; s[i]; i++) {
        if (i >= IDS_DEPARTMENT_MAX)
            return 0;
        if (!ids__is_lower(s[i]) && !ids__is_digit(s[i]) && s[i] != '_')
            return 0;
    }
    return i >= 2;
}

/* Dots separate non-empty segments: "black.road.freight" yes, "black..x" and "black.x." no. */
int ids_is_list_code(const char *s)
{
    static const char *const kinds[] = {"red.", "focus.", "black."};
    if (!s)
        return 0;
    const char *p = NULL;
    for (size_t k = 0; k < sizeof(kinds) / sizeof(*kinds); k++) {
        size_t n = strlen(kinds[k]);
        if (strncmp(s, kinds[k], n) == 0) {
            p = s + n;
            break;
        }
    }
    if (!p || *p == '\0' || *p == '.')
        return 0;
    for (; *p; p++) {
        if (*p == '.') {
            if (p[1] == '.' || p[1] == '\0')
                return 0;
        } else if (!ids__is_lower(*p) && !ids__is_digit(*p) && *p != '_') {
            return 0;
        }
    }
    return 1;
}

int ids_is_measure_code(const char *s)
{
    if (!s || !ids__is_upper(s[0]))
        return 0;
    size_t i = 1;
    for (; s[i]; i++)
        if (!ids__is_upper(s[i]) && !ids__is_digit(s[i]) && s[i] != '_')
            return 0;
    return i >= 2;
}

int ids_is_memorandum_id(const char *s)
{
    if (!s || !s[0])
        return 0;
    for (size_t i = 0; s[i]; i++) {
        if (i >= IDS_MEMORANDUM_MAX)
            return 0;
        char c = s[i];
        if (!ids__is_lower(c) && !ids__is_digit(c) && c != '_' && c != '.' && c != '-')
            return 0;
    }
    return 1;
}

static const char *const ids__type_names[] = {"unknown", "enterprise", "person", "vehicle"};
static const char *const ids__type_proto_names[] = {"SUBJECT_TYPE_UNSPECIFIED",
                                                    "SUBJECT_TYPE_ENTERPRISE",
                                                    "SUBJECT_TYPE_PERSON", "SUBJECT_TYPE_VEHICLE"};

const char *ids_subject_type_name(ids_subject_type_t type)
{
    if (type < IDS_SUBJECT_ENTERPRISE || type > IDS_SUBJECT_VEHICLE)
        return "unknown";
    return ids__type_names[type];
}

ids_subject_type_t ids_subject_type_parse(const char *s)
{
    if (!s)
        return IDS_SUBJECT_UNKNOWN;
    for (int t = IDS_SUBJECT_ENTERPRISE; t <= IDS_SUBJECT_VEHICLE; t++)
        if (strcmp(s, ids__type_names[t]) == 0 || strcmp(s, ids__type_proto_names[t]) == 0)
            return (ids_subject_type_t)t;
    return IDS_SUBJECT_UNKNOWN;
}

/* Formatting only: the id is not validated here (ids_subject_key_parse does that). */
int ids_subject_key(ids_subject_type_t type, const char *id, char *buf, size_t size)
{
    if (!buf || size == 0)
        return -1;
    buf[0] = '\0';
    if (!id || type < IDS_SUBJECT_ENTERPRISE || type > IDS_SUBJECT_VEHICLE)
        return -1;
    const char *name = ids__type_names[type];
    size_t n = strlen(name) + 1 + strlen(id);
    if (n + 1 > size)
        return -1;
    snprintf(buf, size, "%s:%s", name, id);
    return (int)n;
}

/*
 * Only the canonical lowercase type names are accepted in a key: keys pick Kafka partitions and
 * Redis entries, so "SUBJECT_TYPE_PERSON:x" and "person:x" must not both name the same subject.
 * On failure *type is IDS_SUBJECT_UNKNOWN and *id NULL.
 */
int ids_subject_key_parse(const char *key, ids_subject_type_t *type, const char **id,
                          const char **code, char *reason, size_t reason_size)
{
    if (type)
        *type = IDS_SUBJECT_UNKNOWN;
    if (id)
        *id = NULL;
    const char *colon = key ? strchr(key, ':') : NULL;
    if (!colon)
        return ids__fail(code, "bad_format", reason, reason_size,
                         "a subject key is \"<type>:<id>\" and this one has no colon");
    ids_subject_type_t t = IDS_SUBJECT_UNKNOWN;
    size_t n = (size_t)(colon - key);
    for (int i = IDS_SUBJECT_ENTERPRISE; i <= IDS_SUBJECT_VEHICLE; i++)
        if (strlen(ids__type_names[i]) == n && strncmp(key, ids__type_names[i], n) == 0)
            t = (ids_subject_type_t)i;
    if (t == IDS_SUBJECT_UNKNOWN)
        return ids__fail(code, "bad_type", reason, reason_size,
                         "the subject key's type is not enterprise, person or vehicle");
    if (ids_check_subject(t, colon + 1, code, reason, reason_size) < 0)
        return -1;
    if (type)
        *type = t;
    if (id)
        *id = colon + 1;
    return 0;
}

void ids_mask(const char *s, char *buf, size_t size)
{
    if (!buf || size == 0)
        return;
    size_t len = s ? strlen(s) : 0;
    size_t out = 0;
    for (size_t i = 0; i < len && out + 1 < size; i++) {
        int keep = len >= 11 && (i < 6 || i >= len - 4);
        buf[out++] = keep ? s[i] : '*';
    }
    buf[out] = '\0';
}
