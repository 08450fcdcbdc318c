/*
 * codec: the public messages checked for meaning. pbjson gives the shape (JSON types, enum
 * names); this file knows what a credit event, an action and a feedback must say before anyone
 * acts on them, and reports every problem with its field path so that a sending department can
 * fix its input in one round trip.
 */
#include "codec.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ids.h"
#include "pbjson.h"
#include "utf8.h"

#define CODEC_MAX_ID 128   /* event_id, action_id, decision_no, versions */
#define CODEC_MAX_NAME 256 /* subject.name */
#define CODEC_MAX_CODE 128 /* list codes and grade fields */
#define CODEC_MAX_GRADE 8  /* "AAA", "B+", ... */
#define CODEC_MAX_ATTRS 32
#define CODEC_MAX_ATTR_KEY 64
#define CODEC_MAX_ATTR_VALUE 1024
#define CODEC_MAX_NOTE 1024
/* 2101-01-01T00:00:00Z: a time past the year 2100 is a unit mistake (µs, ns), not a date. */
#define CODEC_MAX_TIME_MS 4133980800000LL

typedef struct {
    errlist_t *el;
    const char *prefix;
    size_t nerr;
} codec_check_t;

static void fail(codec_check_t *ck, const char *field, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Append one error at prefix.field (el may be NULL: the count alone then decides). */
static void fail(codec_check_t *ck, const char *field, const char *code, const char *fmt, ...)
{
    char path[256], msg[512];
    int n;
    if (ck->prefix && ck->prefix[0])
        n = snprintf(path, sizeof(path), "%s%s%s", ck->prefix, field[0] ? "." : "", field);
    else
        n = snprintf(path, sizeof(path), "%s", field);
    if (n < 0)
        path[0] = '\0';
    else if ((size_t)n >= sizeof(path))
        memcpy(path + sizeof(path) - 4, "...", 4);
    va_list ap;
    va_start(ap, fmt);
    n = vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (n < 0)
        msg[0] = '\0';
    ck->nerr++;
    /* An error that cannot be recorded (no memory) still counts: nerr alone refuses the input. */
    if (ck->el)
        (void)errlist_add(ck->el, NULL, path, code, "%s", msg);
}

static const char *str(const char *s)
{
    return s ? s : "";
}

/*
 * Free text: valid UTF-8, at most max bytes, and (single_line) no control characters, which in
 * a title or a name only ever come from a broken export.
 */
static void check_text(codec_check_t *ck, const char *field, const char *s, size_t max,
                       int single_line)
{
    s = str(s);
    size_t len = strlen(s);
    if (!utf8_valid(s, strlen(s))) {
        fail(ck, field, "bad_utf8", "field \"%s\" is not valid UTF-8", field);
        return;
    }
    if (len > max) {
        fail(ck, field, "too_long", "field \"%s\" is %zu bytes long; at most %zu are allowed",
             field, len, max);
        return;
    }
    if (single_line) {
        for (size_t i = 0; i < len; i++) {
            unsigned char c = (unsigned char)s[i];
            if (c < 0x20 || c == 0x7F) {
                fail(ck, field, "bad_format",
                     "field \"%s\" contains a control character (byte 0x%02X at offset %zu)", field,
                     c, i);
                return;
            }
        }
    }
}

static void check_required_text(codec_check_t *ck, const char *field, const char *s, size_t max,
                                int single_line, const char *what)
{
    if (!s || !s[0]) {
        fail(ck, field, "missing_field", "field \"%s\" is required: %s", field, what);
        return;
    }
    check_text(ck, field, s, max, single_line);
}

/*
 * Ids of events and actions: printable ASCII without spaces, so they can serve as Kafka keys,
 * Redis key parts and HTTP header values (Idempotency-Key) unchanged.
 */
static void check_id(codec_check_t *ck, const char *field, const char *s, int required,
                     const char *what)
{
    s = str(s);
    size_t len = strlen(s);
    if (len == 0) {
        if (required)
            fail(ck, field, "missing_field", "field \"%s\" is required: %s", field, what);
        return;
    }
    if (len > CODEC_MAX_ID) {
        fail(ck, field, "too_long", "field \"%s\" is %zu bytes long; at most %d are allowed", field,
             len, CODEC_MAX_ID);
        return;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= 0x20 || c >= 0x7F) {
            fail(ck, field, "bad_format",
                 "field \"%s\" must be printable ASCII without spaces; byte 0x%02X at offset %zu "
                 "is not",
                 field, c, i);
            return;
        }
    }
}

static void check_time(codec_check_t *ck, const char *field, int64_t ms, int required)
{
    if (ms == 0) {
        if (required)
            fail(ck, field, "missing_field",
                 "field \"%s\" is required: a time in Unix epoch milliseconds", field);
        return;
    }
    if (ms < 0)
        fail(ck, field, "out_of_range",
             "field \"%s\" must be a positive time in Unix epoch milliseconds; got %lld", field,
             (long long)ms);
    else if (ms >= CODEC_MAX_TIME_MS)
        fail(ck, field, "out_of_range",
             "field \"%s\" is after the year 2100 (%lld): is it in microseconds or "
             "nanoseconds instead of milliseconds?",
             field, (long long)ms);
}

/* "listed, delisted, ..." for messages about an enum: the forms a sender may write. */
static void enum_list(const ProtobufCEnumDescriptor *ed, char *buf, size_t size)
{
    size_t o = 0;
    buf[0] = '\0';
    for (unsigned i = 0; i < ed->n_values; i++) {
        if (ed->values[i].value == 0)
            continue;
        char s[64];
        pbjson_enum_short_name(ed, ed->values[i].value, s, sizeof(s));
        int n = snprintf(buf + o, size - o, "%s%s", o ? ", " : "", s);
        if (n < 0 || (size_t)n >= size - o)
            return;
        o += (size_t)n;
    }
}

/* Returns 1 if value is a known, specified value of ed. */
static int check_enum(codec_check_t *ck, const char *field, const ProtobufCEnumDescriptor *ed,
                      int value)
{
    if (value != 0 && protobuf_c_enum_descriptor_get_value(ed, value))
        return 1;
    char list[256]; /* built only for the error: it cost more than the whole check */
    enum_list(ed, list, sizeof(list));
    if (value == 0)
        fail(ck, field, "missing_field", "field \"%s\" is required: one of %s", field, list);
    else
        fail(ck, field, "bad_enum", "field \"%s\" must be one of %s; got the number %d", field,
             list, value);
    return 0;
}

static void check_subject(codec_check_t *ck, const Jrp__V1__Subject *subj)
{
    char reason[256];
    if (!subj) {
        fail(ck, "subject", "missing_field",
             "field \"subject\" is required: {\"type\": ..., \"id\": ...}");
        return;
    }
    int type_ok = check_enum(ck, "subject.type", &jrp__v1__subject_type__descriptor, subj->type);
    const char *id = str(subj->id);
    if (!id[0]) {
        fail(ck, "subject.id", "missing_field",
             "field \"id\" is required: a unified social credit code, identity number or plate");
    } else if (type_ok) {
        const char *code = NULL;
        reason[0] = '\0';
        if (ids_check_subject((ids_subject_type_t)subj->type, id, &code, reason, sizeof(reason)) !=
            0)
            fail(ck, "subject.id", code ? code : "bad_format",
                 "field \"id\" is not a valid %s id: %s",
                 ids_subject_type_name((ids_subject_type_t)subj->type), reason);
    }
    check_text(ck, "subject.name", subj->name, CODEC_MAX_NAME, 1);
}

static void check_department(codec_check_t *ck, const char *field, const char *s)
{
    s = str(s);
    if (!s[0])
        fail(ck, field, "missing_field",
             "field \"%s\" is required: a department code such as \"transport\"", field);
    else if (!ids_is_department(s))
        fail(ck, field, "bad_format",
             "field \"%s\" must be a department code: a lower-case letter, then 1 to 31 "
             "lower-case letters, digits or '_' (e.g. \"transport\", \"public_security\")",
             field);
}

static void check_list_code(codec_check_t *ck, const char *field, const char *s, int required)
{
    s = str(s);
    if (!s[0]) {
        if (required)
            fail(ck, field, "missing_field",
                 "field \"%s\" is required: a list code such as \"black.overload\"", field);
        return;
    }
    if (strlen(s) > CODEC_MAX_CODE || !ids_is_list_code(s))
        fail(ck, field, "bad_format",
             "field \"%s\" must be a list code: red, focus or black, a dot, then the field in "
             "[a-z0-9_.] (e.g. \"black.overload\"), at most %d bytes",
             field, CODEC_MAX_CODE);
}

static int all_in(const char *s, const char *set)
{
    for (; *s; s++)
        if (!strchr(set, *s))
            return 0;
    return 1;
}

#define LOWER_DIGIT_US "abcdefghijklmnopqrstuvwxyz0123456789_"

static void check_grade_field(codec_check_t *ck, const char *field, const char *s, int required)
{
    s = str(s);
    if (!s[0]) {
        if (required)
            fail(ck, field, "missing_field",
                 "field \"%s\" is required: the graded field, such as \"taxi\"", field);
        return;
    }
    if (strlen(s) > CODEC_MAX_CODE || !all_in(s, LOWER_DIGIT_US))
        fail(ck, field, "bad_format",
             "field \"%s\" must be 1 to %d characters of [a-z0-9_] (e.g. \"taxi\")", field,
             CODEC_MAX_CODE);
}

static void check_grade(codec_check_t *ck, const char *field, const char *s, int required)
{
    s = str(s);
    if (!s[0]) {
        if (required)
            fail(ck, field, "missing_field", "field \"%s\" is required: a grade such as \"AA\"",
                 field);
        return;
    }
    if (strlen(s) > CODEC_MAX_GRADE || !all_in(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZ+-"))
        fail(ck, field, "bad_format",
             "field \"%s\" must be 1 to %d characters of [A-Z+-] (e.g. \"AAA\", \"B\")", field,
             CODEC_MAX_GRADE);
}

/* The optional kind-specific fields of CreditEvent, for the "which fields belong" table. */
enum {
    EV_LIST_CODE = 1 << 0,
    EV_VALID_FROM = 1 << 1,
    EV_VALID_UNTIL = 1 << 2,
    EV_DELIST_REASON = 1 << 3,
    EV_GRADE_FIELD = 1 << 4,
    EV_GRADE = 1 << 5,
    EV_DECISION_NO = 1 << 6,
    EV_DECISION_DATE = 1 << 7,
    EV_TITLE = 1 << 8,
    EV_BASIS = 1 << 9,
    EV_RESULT = 1 << 10,
};

static const struct {
    unsigned bit;
    const char *name;
    const char *belongs; /* for the message: where the field does belong */
} ev_fields[] = {
    {EV_LIST_CODE, "list_code", "listed and delisted events"},
    {EV_VALID_FROM, "valid_from_ms", "listed events"},
    {EV_VALID_UNTIL, "valid_until_ms", "listed events"},
    {EV_DELIST_REASON, "delist_reason", "delisted events"},
    {EV_GRADE_FIELD, "grade_field", "graded events"},
    {EV_GRADE, "grade", "graded events"},
    {EV_DECISION_NO, "decision_no", "licensed and sanctioned events"},
    {EV_DECISION_DATE, "decision_date_ms", "licensed and sanctioned events"},
    {EV_TITLE, "title", "licensed and sanctioned events"},
    {EV_BASIS, "basis", "licensed and sanctioned events"},
    {EV_RESULT, "result", "licensed and sanctioned events"},
};

/*
 * A field set on the wrong kind of event means the sender has misunderstood the contract (a
 * grade on a listing): rejecting it beats silently dropping what they meant to say.
 */
static unsigned ev_allowed(int kind)
{
    switch (kind) {
    case JRP__V1__EVENT_KIND__EVENT_KIND_LISTED:
        return EV_LIST_CODE | EV_VALID_FROM | EV_VALID_UNTIL;
    case JRP__V1__EVENT_KIND__EVENT_KIND_DELISTED:
        return EV_LIST_CODE | EV_DELIST_REASON;
    case JRP__V1__EVENT_KIND__EVENT_KIND_GRADED:
        return EV_GRADE_FIELD | EV_GRADE;
    case JRP__V1__EVENT_KIND__EVENT_KIND_LICENSED:
    case JRP__V1__EVENT_KIND__EVENT_KIND_SANCTIONED:
        return EV_DECISION_NO | EV_DECISION_DATE | EV_TITLE | EV_BASIS | EV_RESULT;
    default:
        return ~0u;
    }
}

static unsigned ev_present(const Jrp__V1__CreditEvent *ev)
{
    unsigned m = 0;
    m |= str(ev->list_code)[0] ? EV_LIST_CODE : 0;
    m |= ev->valid_from_ms ? EV_VALID_FROM : 0;
    m |= ev->valid_until_ms ? EV_VALID_UNTIL : 0;
    m |= ev->delist_reason ? EV_DELIST_REASON : 0;
    m |= str(ev->grade_field)[0] ? EV_GRADE_FIELD : 0;
    m |= str(ev->grade)[0] ? EV_GRADE : 0;
    m |= str(ev->decision_no)[0] ? EV_DECISION_NO : 0;
    m |= ev->decision_date_ms ? EV_DECISION_DATE : 0;
    m |= str(ev->title)[0] ? EV_TITLE : 0;
    m |= str(ev->basis)[0] ? EV_BASIS : 0;
    m |= str(ev->result)[0] ? EV_RESULT : 0;
    return m;
}

static void check_attributes(codec_check_t *ck, const Jrp__V1__CreditEvent *ev)
{
    char field[128];
    size_t n = ev->n_attributes;
    if (n > CODEC_MAX_ATTRS) {
        fail(ck, "attributes", "too_long",
             "field \"attributes\" has %zu entries; at most %d are allowed", n, CODEC_MAX_ATTRS);
        /* The rest are not looked at, so that a huge map cannot make a huge error list. */
        n = CODEC_MAX_ATTRS;
    }
    for (size_t i = 0; i < n; i++) {
        const Jrp__V1__CreditEvent__AttributesEntry *e = ev->attributes[i];
        if (!e)
            continue;
        const char *key = str(e->key);
        size_t klen = strlen(key);
        int key_ok = klen >= 1 && klen <= CODEC_MAX_ATTR_KEY && all_in(key, LOWER_DIGIT_US ".-");
        /*
         * A bad key goes into the path only if it is short printable ASCII without spaces
         * ("Foo" yes, "a b" no): paths end up in logs and HTTP error bodies.
         */
        int tame = klen >= 1 && klen <= CODEC_MAX_ATTR_KEY;
        for (size_t k = 0; k < klen && tame; k++)
            tame = key[k] > 0x20 && key[k] < 0x7F;
        int w = snprintf(field, sizeof(field), "attributes%s%s", tame ? "." : "", tame ? key : "");
        if (w < 0 || (size_t)w >= sizeof(field))
            continue;
        if (!key_ok) {
            fail(ck, field, "bad_format",
                 "the keys of field \"attributes\" must be 1 to %d characters of [a-z0-9_.-]; "
                 "the key of entry %zu is not",
                 CODEC_MAX_ATTR_KEY, i);
            continue;
        }
        check_text(ck, field, e->value, CODEC_MAX_ATTR_VALUE, 0);
    }
}

int codec_event_validate(const Jrp__V1__CreditEvent *ev, const char *prefix, errlist_t *el)
{
    codec_check_t ck = {.el = el, .prefix = prefix, .nerr = 0};
    char kindname[32];

    if (!ev) {
        fail(&ck, "", "missing_field", "no event");
        return -1;
    }
    check_id(&ck, "event_id", ev->event_id, 1, "an id unique per source, printable ASCII");
    int kind = check_enum(&ck, "kind", &jrp__v1__event_kind__descriptor, (int)ev->kind)
                   ? (int)ev->kind
                   : 0;
    check_subject(&ck, ev->subject);
    check_department(&ck, "source_department", ev->source_department);
    check_time(&ck, "occurred_at_ms", ev->occurred_at_ms, 1);

    /*
     * A field that does not belong to the kind gets that one error, not format errors as well.
     * With no valid kind every field is checked for format only: nothing is required.
     */
    unsigned extra = kind ? ev_present(ev) & ~ev_allowed(kind) : 0;
    unsigned ok = ~extra;
    if (extra) {
        pbjson_enum_short_name(&jrp__v1__event_kind__descriptor, kind, kindname, sizeof(kindname));
        for (size_t i = 0; i < sizeof(ev_fields) / sizeof(ev_fields[0]); i++)
            if (extra & ev_fields[i].bit)
                fail(&ck, ev_fields[i].name, "not_allowed",
                     "field \"%s\" does not belong on a %s event (it is for %s); remove it",
                     ev_fields[i].name, kindname, ev_fields[i].belongs);
    }
    int listed = kind == JRP__V1__EVENT_KIND__EVENT_KIND_LISTED;
    int delisted = kind == JRP__V1__EVENT_KIND__EVENT_KIND_DELISTED;
    int graded = kind == JRP__V1__EVENT_KIND__EVENT_KIND_GRADED;
    int sanctioned = kind == JRP__V1__EVENT_KIND__EVENT_KIND_SANCTIONED;
    int decision = sanctioned || kind == JRP__V1__EVENT_KIND__EVENT_KIND_LICENSED;

    if (ok & EV_LIST_CODE)
        check_list_code(&ck, "list_code", ev->list_code, listed || delisted);
    if (ok & EV_VALID_FROM)
        check_time(&ck, "valid_from_ms", ev->valid_from_ms, 0);
    if (ok & EV_VALID_UNTIL)
        check_time(&ck, "valid_until_ms", ev->valid_until_ms, 0);
    /* valid_from_ms 0 means "from occurred_at_ms"; only two explicit bounds can contradict. */
    if ((ok & EV_VALID_FROM) && (ok & EV_VALID_UNTIL) && ev->valid_from_ms > 0 &&
        ev->valid_until_ms > 0 && ev->valid_until_ms <= ev->valid_from_ms)
        fail(&ck, "valid_until_ms", "out_of_range",
             "field \"valid_until_ms\" (%lld) must be after valid_from_ms (%lld), or 0 for "
             "\"until delisted\"",
             (long long)ev->valid_until_ms, (long long)ev->valid_from_ms);
    if (delisted)
        check_enum(&ck, "delist_reason", &jrp__v1__delist_reason__descriptor,
                   (int)ev->delist_reason);
    else if ((ok & EV_DELIST_REASON) && ev->delist_reason &&
             !protobuf_c_enum_descriptor_get_value(&jrp__v1__delist_reason__descriptor,
                                                   (int)ev->delist_reason))
        fail(&ck, "delist_reason", "bad_enum", "field \"delist_reason\" has the unknown value %d",
             (int)ev->delist_reason);

    if (ok & EV_GRADE_FIELD)
        check_grade_field(&ck, "grade_field", ev->grade_field, graded);
    if (ok & EV_GRADE)
        check_grade(&ck, "grade", ev->grade, graded);

    if (decision) {
        check_required_text(&ck, "decision_no", ev->decision_no, CODEC_MAX_ID, 1,
                            "the decision's document number");
        check_time(&ck, "decision_date_ms", ev->decision_date_ms, 1);
        check_required_text(&ck, "title", ev->title, CODEC_MAX_STRING, 1,
                            "the licence item or penalty name");
    } else {
        if (ok & EV_DECISION_NO)
            check_text(&ck, "decision_no", ev->decision_no, CODEC_MAX_ID, 1);
        if (ok & EV_DECISION_DATE)
            check_time(&ck, "decision_date_ms", ev->decision_date_ms, 0);
        if (ok & EV_TITLE)
            check_text(&ck, "title", ev->title, CODEC_MAX_STRING, 1);
    }
    if (sanctioned)
        check_required_text(&ck, "basis", ev->basis, CODEC_MAX_STRING, 0,
                            "the legal basis of the penalty");
    else if (ok & EV_BASIS)
        check_text(&ck, "basis", ev->basis, CODEC_MAX_STRING, 0);
    if (ok & EV_RESULT)
        check_text(&ck, "result", ev->result, CODEC_MAX_STRING, 0);

    check_attributes(&ck, ev);
    return ck.nerr ? -1 : 0;
}

int codec_action_validate(const Jrp__V1__Action *ac, const char *prefix, errlist_t *el)
{
    codec_check_t ck = {.el = el, .prefix = prefix, .nerr = 0};

    if (!ac) {
        fail(&ck, "", "missing_field", "no action");
        return -1;
    }
    check_id(&ck, "action_id", ac->action_id, 1, "the deterministic id of the action");
    int op = check_enum(&ck, "op", &jrp__v1__action_op__descriptor, (int)ac->op) ? (int)ac->op : 0;
    check_department(&ck, "department", ac->department);
    const char *mc = str(ac->measure_code);
    if (!mc[0])
        fail(&ck, "measure_code", "missing_field",
             "field \"measure_code\" is required: a code from the measure catalogue");
    else if (strlen(mc) > CODEC_MAX_CODE || !ids_is_measure_code(mc))
        fail(&ck, "measure_code", "bad_format",
             "field \"measure_code\" must be an upper-case letter then [A-Z0-9_] (e.g. "
             "\"RESTRICT_HANDLING\")");
    check_enum(&ck, "measure_kind", &jrp__v1__measure_kind__descriptor, (int)ac->measure_kind);
    check_text(&ck, "measure_text", ac->measure_text, CODEC_MAX_STRING, 0);
    check_text(&ck, "legal_basis", ac->legal_basis, CODEC_MAX_STRING, 0);
    check_subject(&ck, ac->subject);
    const char *mid = str(ac->memorandum_id);
    if (!mid[0])
        fail(&ck, "memorandum_id", "missing_field",
             "field \"memorandum_id\" is required: the memorandum the measure comes from");
    else if (!ids_is_memorandum_id(mid))
        fail(&ck, "memorandum_id", "bad_format",
             "field \"memorandum_id\" must be 1 to 64 characters of [a-z0-9_.-] (e.g. "
             "\"overload-2017\")");
    check_text(&ck, "memorandum_version", ac->memorandum_version, CODEC_MAX_ID, 1);
    check_list_code(&ck, "list_code", ac->list_code, 0);
    check_id(&ck, "cause_event_id", ac->cause_event_id, 0, "");
    check_time(&ck, "valid_from_ms", ac->valid_from_ms, 0);
    check_time(&ck, "valid_until_ms", ac->valid_until_ms, 0);
    if (ac->valid_from_ms > 0 && ac->valid_until_ms > 0 && ac->valid_until_ms <= ac->valid_from_ms)
        fail(&ck, "valid_until_ms", "out_of_range",
             "field \"valid_until_ms\" (%lld) must be after valid_from_ms (%lld), or 0 for "
             "\"until revoked\"",
             (long long)ac->valid_until_ms, (long long)ac->valid_from_ms);
    check_time(&ck, "issued_at_ms", ac->issued_at_ms, 0);
    check_grade_field(&ck, "grade_field", ac->grade_field, 0);
    check_grade(&ck, "grade", ac->grade, 0);
    if (ac->ruleset_version < 0)
        fail(&ck, "ruleset_version", "out_of_range",
             "field \"ruleset_version\" must not be negative; got %lld",
             (long long)ac->ruleset_version);

    /* An APPLY that names an action to revoke is a confused sender, not a harmless extra. */
    const char *rev = str(ac->revokes_action_id);
    if (op == JRP__V1__ACTION_OP__ACTION_OP_REVOKE)
        check_id(&ck, "revokes_action_id", rev, 1, "the id of the APPLY action this revokes");
    else if (op == JRP__V1__ACTION_OP__ACTION_OP_APPLY && rev[0])
        fail(&ck, "revokes_action_id", "not_allowed",
             "field \"revokes_action_id\" does not belong on an apply action (it is for revoke "
             "actions); remove it");
    else
        check_id(&ck, "revokes_action_id", rev, 0, "");
    return ck.nerr ? -1 : 0;
}

int codec_feedback_validate(const Jrp__V1__Feedback *fb, const char *prefix, errlist_t *el)
{
    codec_check_t ck = {.el = el, .prefix = prefix, .nerr = 0};

    if (!fb) {
        fail(&ck, "", "missing_field", "no feedback");
        return -1;
    }
    check_id(&ck, "action_id", fb->action_id, 1, "the id of the action this reports on");
    check_department(&ck, "department", fb->department);
    check_enum(&ck, "status", &jrp__v1__feedback_status__descriptor, (int)fb->status);
    check_time(&ck, "occurred_at_ms", fb->occurred_at_ms, 1);
    check_text(&ck, "note", fb->note, CODEC_MAX_NOTE, 0);
    return ck.nerr ? -1 : 0;
}

/* ---- decoding -------------------------------------------------------------------------------- */

typedef int (*codec_validate_fn)(const ProtobufCMessage *msg, const char *prefix, errlist_t *el);

static int validate_event(const ProtobufCMessage *msg, const char *prefix, errlist_t *el)
{
    return codec_event_validate((const Jrp__V1__CreditEvent *)msg, prefix, el);
}

static int validate_action(const ProtobufCMessage *msg, const char *prefix, errlist_t *el)
{
    return codec_action_validate((const Jrp__V1__Action *)msg, prefix, el);
}

static int validate_feedback(const ProtobufCMessage *msg, const char *prefix, errlist_t *el)
{
    return codec_feedback_validate((const Jrp__V1__Feedback *)msg, prefix, el);
}

/* Is path q the same as path p, or inside it ("subject.id" is inside "subject")? */
static int path_within(const char *q, const char *p)
{
    size_t lp = strlen(p);
    if (strncmp(p, q, lp) != 0)
        return 0;
    return q[lp] == '\0' || q[lp] == '.' || q[lp] == '[';
}

/*
 * Decode with pbjson, keeping what decoded, then check that for meaning, so that a bad enum name
 * and a bad check character are both reported at once. A meaning error on a field whose shape
 * was already reported ("kind" missing after "kind" had an unknown name) would only repeat it.
 */
static ProtobufCMessage *from_json(const ProtobufCMessageDescriptor *desc, codec_validate_fn fn,
                                   const json_t *json, const char *prefix, errlist_t *el)
{
    errlist_t local, sem;
    errlist_init(&local);
    errlist_init(&sem);
    if (!el)
        el = &local;

    size_t first = el->count, nshape = 0;
    ProtobufCMessage *msg =
        pbjson_decode_partial(desc, json, prefix, CODEC_MAX_STRING, el, &nshape);
    if (!msg)
        goto err;
    size_t shape_end = el->count;
    int bad = nshape > 0;
    if (fn(msg, prefix, &sem) != 0) {
        bad = 1;
        for (size_t i = 0; i < sem.count; i++) {
            const errlist_item_t *it = &sem.items[i];
            int dup = 0;
            for (size_t k = first; k < shape_end && !dup; k++)
                dup = path_within(it->path, el->items[k].path);
            if (!dup && errlist_add(el, it->file, it->path, it->code, "%s", it->message) != 0)
                goto err;
        }
    }
    if (bad)
        goto err;
    errlist_clear(&sem);
    errlist_clear(&local);
    return msg;
err:
    protobuf_c_message_free_unpacked(msg, NULL);
    errlist_clear(&sem);
    errlist_clear(&local);
    return NULL;
}

Jrp__V1__CreditEvent *codec_event_from_json(const json_t *json, const char *prefix, errlist_t *el)
{
    return (Jrp__V1__CreditEvent *)from_json(&jrp__v1__credit_event__descriptor, validate_event,
                                             json, prefix, el);
}

Jrp__V1__Action *codec_action_from_json(const json_t *json, const char *prefix, errlist_t *el)
{
    return (Jrp__V1__Action *)from_json(&jrp__v1__action__descriptor, validate_action, json, prefix,
                                        el);
}

Jrp__V1__Feedback *codec_feedback_from_json(const json_t *json, const char *prefix, errlist_t *el)
{
    return (Jrp__V1__Feedback *)from_json(&jrp__v1__feedback__descriptor, validate_feedback, json,
                                          prefix, el);
}

/* jansson's error codes, sorted into the tokens senders see. */
static const char *json_error_token(const json_error_t *err)
{
    switch (json_error_code(err)) {
    case json_error_invalid_utf8:
        return "bad_utf8";
    case json_error_numeric_overflow:
        return "out_of_range";
    case json_error_out_of_memory:
        return "no_memory";
    default:
        return "bad_json";
    }
}

Jrp__V1__CreditEvent *codec_event_from_text(const char *text, size_t len, errlist_t *el)
{
    json_error_t err;
    /*
     * JSON_DECODE_ANY so that a bare string or number is reported as the wrong type rather than
     * as a syntax error; JSON_ALLOW_NUL so that "\u0000" reaches pbjson and is reported at its
     * field instead of somewhere in the text.
     */
    json_t *json = json_loadb(text ? text : "", text ? len : 0,
                              JSON_REJECT_DUPLICATES | JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
    if (!json) {
        /* If even this cannot be recorded, the NULL return still refuses the input. */
        if (el)
            (void)errlist_add(el, NULL, "", json_error_token(&err),
                              "the input is not valid JSON: %s (line %d, column %d)", err.text,
                              err.line, err.column);
        return NULL;
    }
    Jrp__V1__CreditEvent *ev = codec_event_from_json(json, NULL, el);
    json_decref(json);
    return ev;
}

Jrp__V1__CreditEvent *codec_event_unpack(const void *buf, size_t len, errlist_t *el)
{
    return codec_event_unpack_with(NULL, buf, len, el);
}

Jrp__V1__CreditEvent *codec_event_unpack_with(ProtobufCAllocator *a, const void *buf, size_t len,
                                              errlist_t *el)
{
    ProtobufCMessage *msg =
        protobuf_c_message_unpack(&jrp__v1__credit_event__descriptor, a, len, buf);
    if (!msg) {
        /* If even this cannot be recorded, the NULL return still refuses the input. */
        if (el)
            (void)errlist_add(el, NULL, "", "decode_failed",
                              "the %zu bytes are not a valid jrp.v1.CreditEvent protobuf message",
                              len);
        return NULL;
    }
    Jrp__V1__CreditEvent *ev = (Jrp__V1__CreditEvent *)msg;
    if (codec_event_validate(ev, NULL, el) != 0) {
        jrp__v1__credit_event__free_unpacked(ev, a);
        return NULL;
    }
    return ev;
}

json_t *codec_event_to_json(const Jrp__V1__CreditEvent *ev)
{
    return ev ? pbjson_encode(&ev->base, 0) : NULL;
}

json_t *codec_action_to_json(const Jrp__V1__Action *ac)
{
    return ac ? pbjson_encode(&ac->base, 0) : NULL;
}

json_t *codec_feedback_to_json(const Jrp__V1__Feedback *fb)
{
    return fb ? pbjson_encode(&fb->base, 0) : NULL;
}
