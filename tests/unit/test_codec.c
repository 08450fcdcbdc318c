/*
 * Unit tests for codec: a table of bad credit events, each refused with exactly one error of the
 * expected code at the expected path; valid events of every kind; Action and Feedback checks;
 * protobuf input. Text input is parsed from right before an unreadable page, so that reading one
 * byte past the given length crashes the test instead of passing by luck.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>

#include "codec.h"

/* ---- helpers ------------------------------------------------------------------------------- */

/* A copy of text that ends exactly where a PROT_NONE page begins. */
typedef struct {
    void *map;
    size_t map_len;
    const char *text;
    size_t len;
} guarded_t;

static void guarded_make(guarded_t *g, const char *text, size_t len)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t data_pages = (len + page - 1) / page;
    if (data_pages == 0)
        data_pages = 1;
    g->map_len = (data_pages + 1) * page;
    g->map = mmap(NULL, g->map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(g->map != MAP_FAILED);
    char *guard = (char *)g->map + data_pages * page;
    assert_int_equal(mprotect(guard, page, PROT_NONE), 0);
    char *start = guard - len;
    if (len)
        memcpy(start, text, len);
    g->text = start;
    g->len = len;
}

static void guarded_free(guarded_t *g)
{
    assert_int_equal(munmap(g->map, g->map_len), 0);
}

/* codec_event_from_text on a guarded copy of text. */
static Jrp__V1__CreditEvent *from_text_guarded(const char *text, size_t len, errlist_t *el)
{
    guarded_t g;
    guarded_make(&g, text, len);
    Jrp__V1__CreditEvent *ev = codec_event_from_text(g.text, g.len, el);
    guarded_free(&g);
    return ev;
}

/*
 * Expand the placeholders of a table entry: {{c*N}} is N copies of the character c, and
 * {{ATTRS*N}} is N distinct attribute entries. Returns a string to free().
 */
static char *expand(const char *t)
{
    size_t cap = strlen(t) + 1, len = 0;
    char *out = malloc(cap);
    assert_non_null(out);
    while (*t) {
        const char *open = strstr(t, "{{");
        while (open && open[2] == '{')
            open++; /* "{{{ATTRS*3}}}": a JSON brace, then the placeholder */
        const char *close = open ? strstr(open, "}}") : NULL;
        size_t lit = open && close ? (size_t)(open - t) : strlen(t);
        char piece[32];
        size_t need = lit;
        int attrs = 0, n = 0;
        char c = 0;
        if (open && close) {
            if (strncmp(open + 2, "ATTRS*", 6) == 0) {
                attrs = 1;
                n = atoi(open + 8);
                need += (size_t)n * 24;
            } else {
                c = open[2];
                n = atoi(open + 4);
                need += (size_t)n;
            }
        }
        if (len + need + 1 > cap) {
            cap = (len + need + 1) * 2;
            out = realloc(out, cap);
            assert_non_null(out);
        }
        memcpy(out + len, t, lit);
        len += lit;
        if (!(open && close))
            break;
        for (int i = 0; i < n; i++) {
            if (attrs) {
                int w = snprintf(piece, sizeof(piece), "%s\"k%d\":\"v\"", i ? "," : "", i);
                assert_true(w > 0);
                memcpy(out + len, piece, (size_t)w);
                len += (size_t)w;
            } else {
                out[len++] = c;
            }
        }
        t = close + 2;
    }
    out[len] = '\0';
    return out;
}

static void dump_errors(const errlist_t *el)
{
    char buf[700];
    for (size_t i = 0; i < el->count; i++) {
        errlist_format(el, i, buf, sizeof(buf));
        print_message("  error %zu: %s\n", i, buf);
    }
}

static void assert_error(const errlist_t *el, const char *code, const char *path)
{
    for (size_t i = 0; i < el->count; i++)
        if (strcmp(el->items[i].code, code) == 0 && strcmp(el->items[i].path, path) == 0)
            return;
    dump_errors(el);
    fail_msg("no error with code %s at path \"%s\"", code, path);
}

static void assert_same(const ProtobufCMessage *a, const ProtobufCMessage *b)
{
    size_t la = protobuf_c_message_get_packed_size(a);
    size_t lb = protobuf_c_message_get_packed_size(b);
    assert_int_equal(la, lb);
    uint8_t *pa = malloc(la + 1), *pb = malloc(lb + 1);
    assert_non_null(pa);
    assert_non_null(pb);
    assert_int_equal(protobuf_c_message_pack(a, pa), la);
    assert_int_equal(protobuf_c_message_pack(b, pb), lb);
    assert_memory_equal(pa, pb, la);
    free(pa);
    free(pb);
}

/* A valid event from text (guarded); the caller frees it. */
static Jrp__V1__CreditEvent *event_ok(const char *text)
{
    errlist_t el;
    errlist_init(&el);
    Jrp__V1__CreditEvent *ev = from_text_guarded(text, strlen(text), &el);
    if (!ev) {
        dump_errors(&el);
        fail_msg("event refused: %s", text);
    }
    assert_int_equal(el.count, 0);
    errlist_clear(&el);
    return ev;
}

static json_t *parse(const char *text)
{
    json_error_t err;
    json_t *j = json_loads(text, 0, &err);
    if (!j)
        fail_msg("test JSON does not parse: %s: %s", err.text, text);
    return j;
}

/* ---- the table of bad events -------------------------------------------------------------- */

#define ID "\"event_id\":\"ev-1\""
#define DEPT "\"source_department\":\"transport\""
#define AT "\"occurred_at_ms\":1700000000000"
#define HEAD ID "," DEPT "," AT
#define SUBJ(type, id) "\"subject\":{\"type\":\"" type "\",\"id\":\"" id "\"}"
#define ENT SUBJ("enterprise", "91350100M000100Y43")
#define LISTED "\"kind\":\"listed\",\"list_code\":\"black.overload\""
#define DELISTED                                                                                   \
    "\"kind\":\"delisted\",\"list_code\":\"black.overload\",\"delist_reason\":\"repaired\""
#define GRADED "\"kind\":\"graded\",\"grade_field\":\"taxi\",\"grade\":\"AA\""
#define DECISION                                                                                   \
    "\"decision_no\":\"津交罚〔2024〕12号\",\"decision_date_ms\":1699000000000,\"title\":"   \
    "\"超限运输\""
#define LICENSED "\"kind\":\"licensed\"," DECISION
#define SANCTIONED                                                                                 \
    "\"kind\":\"sanctioned\"," DECISION ",\"basis\":\"《公路安全保护条例》第六十四条\""
/* A whole event: HEAD, then the rest. */
#define EV(rest) "{" HEAD "," rest "}"
#define OKEV EV(LISTED "," ENT)

static const struct {
    const char *name;
    const char *json; /* placeholders as expand() reads them */
    const char *code;
    const char *path;
} bad_events[] = {
    /* Not JSON, or not an object. */
    {"truncated JSON", "{\"event_id\":\"ev-1\",\"kind\":", "bad_json", ""},
    {"truncated inside a string", "{\"event_id\":\"ev-", "bad_json", ""},
    {"empty input", "", "bad_json", ""},
    {"whitespace only", "  \n\t ", "bad_json", ""},
    {"bare word", "listed", "bad_json", ""},
    {"single quotes", "{'event_id':'ev-1'}", "bad_json", ""},
    {"comment", "{/* no comments in JSON */}", "bad_json", ""},
    {"trailing garbage", OKEV "x", "bad_json", ""},
    {"two objects", OKEV OKEV, "bad_json", ""},
    {"array at top level", "[" OKEV "]", "wrong_type", ""},
    {"string at top level", "\"listed\"", "wrong_type", ""},
    {"number at top level", "42", "wrong_type", ""},
    {"null at top level", "null", "wrong_type", ""},
    {"duplicate key", EV(LISTED "," ENT ",\"kind\":\"graded\""), "bad_json", ""},
    {"duplicate key in subject",
     EV(LISTED ",\"subject\":{\"type\":\"enterprise\",\"type\":\"person\","
               "\"id\":\"91350100M000100Y43\"}"),
     "bad_json", ""},
    {"invalid UTF-8 byte", EV(LISTED "," ENT ",\"attributes\":{\"note\":\"\xff\"}"), "bad_utf8",
     ""},
    {"overlong UTF-8", EV(LISTED "," ENT ",\"attributes\":{\"note\":\"\xc0\xaf\"}"), "bad_utf8",
     ""},
    {"integer too big for JSON", EV(LISTED "," ENT ",\"valid_from_ms\":99999999999999999999"),
     "out_of_range", ""},
    {"NUL byte in a key", EV(LISTED "," ENT ",\"x\\u0000\":1"), "bad_json", ""},

    /* Wrong JSON types. */
    {"event_id is a number", "{\"event_id\":7," DEPT "," AT "," LISTED "," ENT "}", "wrong_type",
     "event_id"},
    {"occurred_at_ms is a word",
     "{" ID "," DEPT ",\"occurred_at_ms\":\"yesterday\"," LISTED "," ENT "}", "wrong_type",
     "occurred_at_ms"},
    {"occurred_at_ms is fractional",
     "{" ID "," DEPT ",\"occurred_at_ms\":1700000000000.5," LISTED "," ENT "}", "wrong_type",
     "occurred_at_ms"},
    {"occurred_at_ms is true", "{" ID "," DEPT ",\"occurred_at_ms\":true," LISTED "," ENT "}",
     "wrong_type", "occurred_at_ms"},
    {"subject is a subject key", EV(LISTED ",\"subject\":\"enterprise:91350100M000100Y43\""),
     "wrong_type", "subject"},
    {"kind is a boolean", EV("\"kind\":true,\"list_code\":\"black.overload\"," ENT), "wrong_type",
     "kind"},
    {"attribute value is a number", EV(LISTED "," ENT ",\"attributes\":{\"axles\":6}"),
     "wrong_type", "attributes.axles"},
    {"attributes is an array", EV(LISTED "," ENT ",\"attributes\":[\"axles=6\"]"), "wrong_type",
     "attributes"},
    {"nested garbage as subject id",
     EV(LISTED ",\"subject\":{\"type\":\"enterprise\",\"id\":{\"a\":[{\"b\":[[[]]]}]}}"),
     "wrong_type", "subject.id"},
    {"nested garbage in attributes",
     EV(LISTED "," ENT ",\"attributes\":{\"a\":{\"b\":{\"c\":[[[1,{\"d\":null}]]]}}}"),
     "wrong_type", "attributes.a"},

    /* Unknown names. */
    {"unknown kind", EV("\"kind\":\"listd\",\"list_code\":\"black.overload\"," ENT), "bad_enum",
     "kind"},
    {"kind as an empty string", EV("\"kind\":\"\",\"list_code\":\"black.overload\"," ENT),
     "bad_enum", "kind"},
    {"kind as an unknown number", EV("\"kind\":9,\"list_code\":\"black.overload\"," ENT),
     "bad_enum", "kind"},
    {"unknown subject type", EV(LISTED "," SUBJ("company", "91350100M000100Y43")), "bad_enum",
     "subject.type"},
    {"unknown delist reason",
     EV("\"kind\":\"delisted\",\"list_code\":\"black.overload\",\"delist_reason\":"
        "\"forgiven\"," ENT),
     "bad_enum", "delist_reason"},
    {"unknown field", EV(LISTED "," ENT ",\"colour\":\"black\""), "unknown_field", "colour"},
    {"camelCase field name", EV(LISTED "," ENT ",\"validFromMs\":1"), "unknown_field",
     "validFromMs"},
    {"unknown subject field",
     EV(LISTED ",\"subject\":{\"type\":\"enterprise\",\"id\":\"91350100M000100Y43\",\"code\":1}"),
     "unknown_field", "subject.code"},

    /* Missing required fields. */
    {"missing event_id", "{" DEPT "," AT "," LISTED "," ENT "}", "missing_field", "event_id"},
    {"empty event_id", "{\"event_id\":\"\"," DEPT "," AT "," LISTED "," ENT "}", "missing_field",
     "event_id"},
    {"missing kind", EV("\"list_code\":\"black.overload\"," ENT), "missing_field", "kind"},
    {"explicitly unspecified kind",
     EV("\"kind\":\"EVENT_KIND_UNSPECIFIED\",\"list_code\":\"black.overload\"," ENT),
     "missing_field", "kind"},
    {"missing subject", EV(LISTED), "missing_field", "subject"},
    {"null subject", EV(LISTED ",\"subject\":null"), "missing_field", "subject"},
    {"missing subject id", EV(LISTED ",\"subject\":{\"type\":\"enterprise\"}"), "missing_field",
     "subject.id"},
    {"missing subject type", EV(LISTED ",\"subject\":{\"id\":\"91350100M000100Y43\"}"),
     "missing_field", "subject.type"},
    {"missing source_department", "{" ID "," AT "," LISTED "," ENT "}", "missing_field",
     "source_department"},
    {"missing occurred_at_ms", "{" ID "," DEPT "," LISTED "," ENT "}", "missing_field",
     "occurred_at_ms"},
    {"listed without list code", EV("\"kind\":\"listed\"," ENT), "missing_field", "list_code"},
    {"delisted without reason", EV("\"kind\":\"delisted\",\"list_code\":\"black.overload\"," ENT),
     "missing_field", "delist_reason"},
    {"graded without grade", EV("\"kind\":\"graded\",\"grade_field\":\"taxi\"," ENT),
     "missing_field", "grade"},
    {"graded without field", EV("\"kind\":\"graded\",\"grade\":\"AA\"," ENT), "missing_field",
     "grade_field"},
    {"sanction without basis", EV("\"kind\":\"sanctioned\"," DECISION "," ENT), "missing_field",
     "basis"},
    {"licence without decision date",
     EV("\"kind\":\"licensed\",\"decision_no\":\"x-1\",\"title\":\"t\"," ENT), "missing_field",
     "decision_date_ms"},
    {"licence without title",
     EV("\"kind\":\"licensed\",\"decision_no\":\"x-1\",\"decision_date_ms\":1," ENT),
     "missing_field", "title"},
    {"licence without decision number",
     EV("\"kind\":\"licensed\",\"title\":\"t\",\"decision_date_ms\":1," ENT), "missing_field",
     "decision_no"},

    /* Oversize and badly formed strings. */
    {"event_id of 129 bytes", "{\"event_id\":\"{{e*129}}\"," DEPT "," AT "," LISTED "," ENT "}",
     "too_long", "event_id"},
    {"event_id with a space", "{\"event_id\":\"ev 1\"," DEPT "," AT "," LISTED "," ENT "}",
     "bad_format", "event_id"},
    {"event_id not ASCII", "{\"event_id\":\"事件1\"," DEPT "," AT "," LISTED "," ENT "}",
     "bad_format", "event_id"},
    {"subject name of 257 bytes",
     EV(LISTED ",\"subject\":{\"type\":\"enterprise\",\"id\":\"91350100M000100Y43\","
               "\"name\":\"{{n*257}}\"}"),
     "too_long", "subject.name"},
    {"subject name with a newline",
     EV(LISTED ",\"subject\":{\"type\":\"enterprise\",\"id\":\"91350100M000100Y43\","
               "\"name\":\"a\\nb\"}"),
     "bad_format", "subject.name"},
    {"title over CODEC_MAX_STRING",
     EV("\"kind\":\"licensed\",\"decision_no\":\"x-1\",\"decision_date_ms\":1,"
        "\"title\":\"{{t*4097}}\"," ENT),
     "too_long", "title"},
    {"NUL inside event_id", "{\"event_id\":\"ev\\u00001\"," DEPT "," AT "," LISTED "," ENT "}",
     "bad_char", "event_id"},
    {"NUL after a subject id", EV(LISTED "," SUBJ("enterprise", "91350100M000100Y43\\u0000")),
     "bad_char", "subject.id"},
    {"too many attributes", EV(LISTED "," ENT ",\"attributes\":{{{ATTRS*33}}}"), "too_long",
     "attributes"},
    {"attribute key upper-case", EV(LISTED "," ENT ",\"attributes\":{\"Axles\":\"6\"}"),
     "bad_format", "attributes.Axles"},
    {"attribute key with a space", EV(LISTED "," ENT ",\"attributes\":{\"a b\":\"6\"}"),
     "bad_format", "attributes"},
    {"attribute value of 1025 bytes",
     EV(LISTED "," ENT ",\"attributes\":{\"note\":\"{{v*1025}}\"}"), "too_long", "attributes.note"},

    /* Codes. */
    {"list code of an unknown list", EV("\"kind\":\"listed\",\"list_code\":\"white.x\"," ENT),
     "bad_format", "list_code"},
    {"list code upper-case", EV("\"kind\":\"listed\",\"list_code\":\"black.Overload\"," ENT),
     "bad_format", "list_code"},
    {"list code with an empty segment", EV("\"kind\":\"listed\",\"list_code\":\"black..x\"," ENT),
     "bad_format", "list_code"},
    {"list code without a field", EV("\"kind\":\"listed\",\"list_code\":\"black\"," ENT),
     "bad_format", "list_code"},
    {"department upper-case",
     "{" ID ",\"source_department\":\"Transport\"," AT "," LISTED "," ENT "}", "bad_format",
     "source_department"},
    {"department of one letter", "{" ID ",\"source_department\":\"t\"," AT "," LISTED "," ENT "}",
     "bad_format", "source_department"},
    {"department with a hyphen",
     "{" ID ",\"source_department\":\"public-security\"," AT "," LISTED "," ENT "}", "bad_format",
     "source_department"},
    {"grade lower-case", EV("\"kind\":\"graded\",\"grade_field\":\"taxi\",\"grade\":\"aa\"," ENT),
     "bad_format", "grade"},
    {"grade of 9 characters",
     EV("\"kind\":\"graded\",\"grade_field\":\"taxi\",\"grade\":\"AAAAAAAAA\"," ENT), "bad_format",
     "grade"},
    {"grade field upper-case",
     EV("\"kind\":\"graded\",\"grade_field\":\"Taxi\",\"grade\":\"A\"," ENT), "bad_format",
     "grade_field"},

    /* Subject identifiers. */
    {"credit code with a bad check character",
     EV(LISTED "," SUBJ("enterprise", "91350100M000100Y44")), "bad_checksum", "subject.id"},
    {"credit code with the letter I", EV(LISTED "," SUBJ("enterprise", "91350100M000100I43")),
     "bad_char", "subject.id"},
    {"credit code lower-case", EV(LISTED "," SUBJ("enterprise", "91350100m000100Y43")), "bad_char",
     "subject.id"},
    {"credit code of 17 characters", EV(LISTED "," SUBJ("enterprise", "91350100M000100Y4")),
     "bad_length", "subject.id"},
    {"identity number with a bad check character",
     EV(LISTED "," SUBJ("person", "110105194912310021")), "bad_checksum", "subject.id"},
    {"identity number with lower-case x", EV(LISTED "," SUBJ("person", "11010519491231002x")),
     "bad_char", "subject.id"},
    {"identity number born on 30 February", EV(LISTED "," SUBJ("person", "110105194902301234")),
     "bad_date", "subject.id"},
    {"identity number born in 2099", EV(LISTED "," SUBJ("person", "110105209901011234")),
     "bad_date", "subject.id"},
    {"credit code given for a person", EV(LISTED "," SUBJ("person", "91350100M000100Y43")),
     "bad_char", "subject.id"},
    {"plate with a short serial", EV(LISTED "," SUBJ("vehicle", "津A1234")), "bad_length",
     "subject.id"},
    {"plate without a province", EV(LISTED "," SUBJ("vehicle", "AA12345")), "bad_char",
     "subject.id"},

    /* Times. */
    {"negative occurred_at_ms", "{" ID "," DEPT ",\"occurred_at_ms\":-1," LISTED "," ENT "}",
     "out_of_range", "occurred_at_ms"},
    {"occurred_at_ms in microseconds",
     "{" ID "," DEPT ",\"occurred_at_ms\":1700000000000000," LISTED "," ENT "}", "out_of_range",
     "occurred_at_ms"},
    {"occurred_at_ms string overflow",
     "{" ID "," DEPT ",\"occurred_at_ms\":\"99999999999999999999\"," LISTED "," ENT "}",
     "out_of_range", "occurred_at_ms"},
    {"negative valid_from_ms", EV(LISTED "," ENT ",\"valid_from_ms\":-5"), "out_of_range",
     "valid_from_ms"},
    {"valid until before valid from",
     EV(LISTED "," ENT ",\"valid_from_ms\":1700000000000,\"valid_until_ms\":1600000000000"),
     "out_of_range", "valid_until_ms"},
    {"valid until equal to valid from",
     EV(LISTED "," ENT ",\"valid_from_ms\":1700000000000,\"valid_until_ms\":\"1700000000000\""),
     "out_of_range", "valid_until_ms"},
    {"negative decision date",
     EV("\"kind\":\"licensed\",\"decision_no\":\"x-1\",\"decision_date_ms\":-1,\"title\":"
        "\"t\"," ENT),
     "out_of_range", "decision_date_ms"},

    /* Fields that do not belong to the kind. */
    {"grade on a listing", EV(LISTED "," ENT ",\"grade\":\"AA\""), "not_allowed", "grade"},
    {"decision number on a grading", EV(GRADED "," ENT ",\"decision_no\":\"x\""), "not_allowed",
     "decision_no"},
    {"validity on a delisting", EV(DELISTED "," ENT ",\"valid_until_ms\":1800000000000"),
     "not_allowed", "valid_until_ms"},
    {"delist reason on a listing", EV(LISTED "," ENT ",\"delist_reason\":\"expired\""),
     "not_allowed", "delist_reason"},
    {"list code on a sanction", EV(SANCTIONED "," ENT ",\"list_code\":\"black.overload\""),
     "not_allowed", "list_code"},
    {"badly formed grade on a licence", EV(LICENSED "," ENT ",\"grade\":\"??\""), "not_allowed",
     "grade"},
};

static void test_bad_events(void **state)
{
    (void)state;
    size_t n = sizeof(bad_events) / sizeof(bad_events[0]);
    assert_true(n >= 30);
    for (size_t i = 0; i < n; i++) {
        char *text = expand(bad_events[i].json);
        errlist_t el;
        errlist_init(&el);
        Jrp__V1__CreditEvent *ev = from_text_guarded(text, strlen(text), &el);
        if (ev || el.count != 1 || strcmp(el.items[0].code, bad_events[i].code) != 0 ||
            strcmp(el.items[0].path, bad_events[i].path) != 0) {
            print_message("case %zu (%s): %s\n", i, bad_events[i].name,
                          ev ? "accepted" : "refused");
            dump_errors(&el);
            if (ev)
                jrp__v1__credit_event__free_unpacked(ev, NULL);
            fail_msg("case \"%s\" wanted exactly %s at \"%s\"", bad_events[i].name,
                     bad_events[i].code, bad_events[i].path);
        }
        /* Messages are sentences for people, never empty. */
        assert_true(strlen(el.items[0].message) > 10);
        errlist_clear(&el);
        free(text);
    }
}

/* The same refusals through the json_t entry point, with a prefix on every path. */
static void test_bad_events_prefixed(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(bad_events) / sizeof(bad_events[0]); i++) {
        char *text = expand(bad_events[i].json);
        json_t *j =
            json_loads(text, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
        free(text);
        if (!j)
            continue; /* the syntax cases */
        errlist_t el;
        errlist_init(&el);
        assert_null(codec_event_from_json(j, "events[4]", &el));
        char want[128];
        snprintf(want, sizeof(want), "events[4]%s%s", bad_events[i].path[0] ? "." : "",
                 bad_events[i].path);
        assert_int_equal(el.count, 1);
        assert_error(&el, bad_events[i].code, want);
        json_decref(j);
        errlist_clear(&el);
    }
}

static void test_deep_nesting(void **state)
{
    (void)state;
    size_t depth = 100000;
    char *text = malloc(depth * 5 + 1);
    assert_non_null(text);
    memset(text, '[', depth);
    errlist_t el;
    errlist_init(&el);
    assert_null(from_text_guarded(text, depth, &el));
    assert_int_equal(el.count, 1);
    assert_error(&el, "bad_json", "");
    errlist_clear(&el);

    /* Objects nested past the parser's limit inside a real field. */
    size_t o = 0;
    o += (size_t)sprintf(text, "{\"attributes\":");
    for (size_t i = 0; i < 5000; i++)
        o += (size_t)sprintf(text + o, "{\"a\":");
    assert_null(from_text_guarded(text, o, &el));
    assert_int_equal(el.count, 1);
    assert_error(&el, "bad_json", "");
    assert_true(errlist_contains(&el, "line 1"));
    errlist_clear(&el);
    free(text);
}

static void test_bad_json_names_line_and_column(void **state)
{
    (void)state;
    const char *text = "{\n  \"event_id\": \"ev-1\",\n  \"kind\": listed\n}";
    errlist_t el;
    errlist_init(&el);
    assert_null(from_text_guarded(text, strlen(text), &el));
    assert_int_equal(el.count, 1);
    assert_error(&el, "bad_json", "");
    assert_true(errlist_contains(&el, "line 3"));
    assert_true(errlist_contains(&el, "column"));
    errlist_clear(&el);

    /* The length is obeyed: a valid event cut short is truncated JSON, whatever follows. */
    const char *ok = OKEV;
    assert_null(codec_event_from_text(ok, strlen(ok) - 1, &el));
    assert_error(&el, "bad_json", "");
    errlist_clear(&el);
    assert_null(codec_event_from_text(NULL, 0, &el));
    assert_error(&el, "bad_json", "");
    errlist_clear(&el);
}

/* ---- valid events --------------------------------------------------------------------------- */

static void test_valid_events_every_kind(void **state)
{
    (void)state;
    static const struct {
        const char *json;
        int kind;
    } ok[] = {
        {EV(LISTED "," ENT), JRP__V1__EVENT_KIND__EVENT_KIND_LISTED},
        {EV(LISTED
            "," SUBJ("enterprise", "91512081MA62K0260E") ",\"valid_from_ms\":\"1700000000000\","
                                                         "\"valid_until_ms\":1763072000000,"
                                                         "\"attributes\":{\"batch\":\"9\","
                                                         "\"axles\":\"6\",\"over.pct-x_1\":\"\"}"),
         JRP__V1__EVENT_KIND__EVENT_KIND_LISTED},
        /* valid_from_ms 0 means "from occurred_at_ms"; an end date alone is fine. */
        {EV(LISTED "," ENT ",\"valid_from_ms\":0,\"valid_until_ms\":1800000000000"),
         JRP__V1__EVENT_KIND__EVENT_KIND_LISTED},
        {EV("\"kind\":\"EVENT_KIND_LISTED\",\"list_code\":\"red.construction\","
            "\"subject\":{\"type\":\"SUBJECT_TYPE_PERSON\",\"id\":\"11010519491231002X\","
            "\"name\":\"张三\"}"),
         JRP__V1__EVENT_KIND__EVENT_KIND_LISTED},
        {EV(DELISTED "," SUBJ("person", "11010519491231002X")),
         JRP__V1__EVENT_KIND__EVENT_KIND_DELISTED},
        {EV(GRADED "," SUBJ("vehicle", "津A12345")), JRP__V1__EVENT_KIND__EVENT_KIND_GRADED},
        {EV("\"kind\":\"graded\",\"grade_field\":\"highway_construction\",\"grade\":\"B+\"," SUBJ(
             "vehicle", "津AD12345")),
         JRP__V1__EVENT_KIND__EVENT_KIND_GRADED},
        {EV(LICENSED "," ENT), JRP__V1__EVENT_KIND__EVENT_KIND_LICENSED},
        {EV(LICENSED "," ENT ",\"basis\":\"《道路运输条例》\",\"result\":\"准予许可\""),
         JRP__V1__EVENT_KIND__EVENT_KIND_LICENSED},
        {EV(SANCTIONED
            "," SUBJ("enterprise", "91350100M000100Y43") ",\"result\":\"罚款3万元\",\"attributes\":"
                                                         "{\"amount_yuan\":\"30000\"}"),
         JRP__V1__EVENT_KIND__EVENT_KIND_SANCTIONED},
        /* Every number as a string, null for absent fields. */
        {"{\"event_id\":\"x:y/z@1\",\"kind\":3,\"subject\":{\"type\":3,\"id\":\"京B2345F\","
         "\"name\":null},\"source_department\":\"public_security\",\"occurred_at_ms\":"
         "\"4133980799999\",\"grade_field\":\"taxi\",\"grade\":\"AAA\",\"list_code\":null}",
         JRP__V1__EVENT_KIND__EVENT_KIND_GRADED},
        /* Exactly 128 bytes of id, 32 attributes, a 1024-byte value, a 256-byte name. */
        {"{\"event_id\":\"{{e*128}}\"," DEPT "," AT "," LISTED ",\"subject\":{\"type\":"
         "\"enterprise\",\"id\":\"91350100M000100Y43\",\"name\":\"{{n*256}}\"},"
         "\"attributes\":{{{ATTRS*31}},\"long\":\"{{v*1024}}\"}}",
         JRP__V1__EVENT_KIND__EVENT_KIND_LISTED},
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        char *text = expand(ok[i].json);
        Jrp__V1__CreditEvent *ev = event_ok(text);
        assert_int_equal(ev->kind, ok[i].kind);
        assert_int_equal(codec_event_validate(ev, NULL, NULL), 0);
        jrp__v1__credit_event__free_unpacked(ev, NULL);
        free(text);
    }
}

static void test_decoded_values(void **state)
{
    (void)state;
    Jrp__V1__CreditEvent *ev =
        event_ok(EV(LISTED "," SUBJ("person", "11010519491231002X") ",\"valid_from_ms\":\"5\""));
    assert_string_equal(ev->event_id, "ev-1");
    assert_string_equal(ev->source_department, "transport");
    assert_true(ev->occurred_at_ms == INT64_C(1700000000000));
    assert_true(ev->valid_from_ms == 5);
    assert_int_equal(ev->subject->type, JRP__V1__SUBJECT_TYPE__SUBJECT_TYPE_PERSON);
    assert_string_equal(ev->subject->id, "11010519491231002X");
    assert_string_equal(ev->list_code, "black.overload");
    jrp__v1__credit_event__free_unpacked(ev, NULL);
}

/* ---- every problem at once ----------------------------------------------------------------- */

static void test_every_error_listed(void **state)
{
    (void)state;
    const char *text =
        "{\"event_id\":\"has space\",\"kind\":\"listed\",\"subject\":{\"type\":\"person\","
        "\"id\":\"110105194912310021\",\"name\":\"{{n*300}}\"},\"source_department\":"
        "\"Transport\",\"occurred_at_ms\":-1,\"list_code\":\"white.x\",\"grade\":\"AA\","
        "\"valid_from_ms\":20,\"valid_until_ms\":10,\"attributes\":{\"A\":\"1\"},"
        "\"colour\":\"red\"}";
    char *t = expand(text);
    errlist_t el;
    errlist_init(&el);
    assert_null(from_text_guarded(t, strlen(t), &el));
    assert_error(&el, "unknown_field", "colour");
    assert_error(&el, "bad_format", "event_id");
    assert_error(&el, "bad_checksum", "subject.id");
    assert_error(&el, "too_long", "subject.name");
    assert_error(&el, "bad_format", "source_department");
    assert_error(&el, "out_of_range", "occurred_at_ms");
    assert_error(&el, "bad_format", "list_code");
    assert_error(&el, "not_allowed", "grade");
    assert_error(&el, "out_of_range", "valid_until_ms");
    assert_error(&el, "bad_format", "attributes.A");
    if (el.count != 10)
        dump_errors(&el);
    assert_int_equal(el.count, 10);
    /* The reason for a person's id never repeats the number: it is personal data. */
    assert_false(errlist_contains(&el, "110105194912310021"));
    errlist_clear(&el);
    free(t);
}

static void test_shape_and_meaning_errors_together(void **state)
{
    (void)state;
    /* A bad enum name does not hide the bad check character, and is not reported twice. */
    const char *text = EV("\"kind\":\"listd\",\"list_code\":\"black.overload\"," SUBJ(
        "enterprise", "91350100M000100Y44") ",\"grade\":7");
    errlist_t el;
    errlist_init(&el);
    assert_null(from_text_guarded(text, strlen(text), &el));
    assert_error(&el, "bad_enum", "kind");
    assert_error(&el, "bad_checksum", "subject.id");
    assert_error(&el, "wrong_type", "grade");
    if (el.count != 3)
        dump_errors(&el);
    assert_int_equal(el.count, 3);
    errlist_clear(&el);

    /* A shape error inside the map does not hide the map's own problem. */
    char *many = expand(EV(LISTED "," ENT ",\"attributes\":{{{ATTRS*40}},\"n\":1}"));
    assert_null(from_text_guarded(many, strlen(many), &el));
    assert_error(&el, "wrong_type", "attributes.n");
    assert_error(&el, "too_long", "attributes");
    assert_int_equal(el.count, 2);
    errlist_clear(&el);
    free(many);

    /* An unknown subject type: the id cannot be checked, and only the type is reported. */
    text = EV(LISTED "," SUBJ("ship", "whatever"));
    assert_null(from_text_guarded(text, strlen(text), &el));
    assert_int_equal(el.count, 1);
    assert_error(&el, "bad_enum", "subject.type");
    errlist_clear(&el);
}

static void test_enum_error_message(void **state)
{
    (void)state;
    const char *text = EV("\"kind\":\"listd\",\"list_code\":\"black.overload\"," ENT);
    errlist_t el;
    errlist_init(&el);
    assert_null(from_text_guarded(text, strlen(text), &el));
    assert_int_equal(el.count, 1);
    assert_non_null(
        strstr(el.items[0].message, "field \"kind\" must be one of EVENT_KIND_LISTED (listed), "));
    assert_non_null(strstr(el.items[0].message, "got a string \"listd\""));
    errlist_clear(&el);
}

/* ---- protobuf input ------------------------------------------------------------------------ */

static uint8_t *pack(const ProtobufCMessage *m, size_t *len)
{
    *len = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = malloc(*len + 1);
    assert_non_null(buf);
    assert_int_equal(protobuf_c_message_pack(m, buf), *len);
    return buf;
}

static void test_unpack_garbage(void **state)
{
    (void)state;
    static const struct {
        const char *bytes;
        size_t len;
    } garbage[] = {
        {"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 12}, /* varint tag too long */
        {"\x0a\x05"
         "ab",
         4},                      /* length past the end */
        {"\x0a", 1},              /* tag without a value */
        {"\x1a\x03\x0a\x09x", 5}, /* bad nested subject */
        {"\x0f", 1},              /* wire type 7 */
        {"\x00\x00", 2},          /* field number 0 */
        {"\x28\x80\x80", 3},      /* truncated varint */
    };
    for (size_t i = 0; i < sizeof(garbage) / sizeof(garbage[0]); i++) {
        guarded_t g;
        guarded_make(&g, garbage[i].bytes, garbage[i].len);
        errlist_t el;
        errlist_init(&el);
        Jrp__V1__CreditEvent *ev = codec_event_unpack(g.text, g.len, &el);
        if (ev)
            jrp__v1__credit_event__free_unpacked(ev, NULL);
        assert_null(ev);
        if (el.count != 1)
            dump_errors(&el);
        assert_int_equal(el.count, 1);
        assert_error(&el, "decode_failed", "");
        errlist_clear(&el);
        guarded_free(&g);
    }
}

static void test_unpack_checks_meaning(void **state)
{
    (void)state;
    Jrp__V1__Subject subj = JRP__V1__SUBJECT__INIT;
    subj.type = JRP__V1__SUBJECT_TYPE__SUBJECT_TYPE_ENTERPRISE;
    subj.id = "91350100M000100Y43";
    Jrp__V1__CreditEvent ev = JRP__V1__CREDIT_EVENT__INIT;
    ev.event_id = "ev-1";
    ev.kind = JRP__V1__EVENT_KIND__EVENT_KIND_LISTED;
    ev.subject = &subj;
    ev.source_department = "transport";
    ev.occurred_at_ms = INT64_C(1700000000000);
    ev.list_code = "black.overload";

    size_t len;
    uint8_t *buf = pack(&ev.base, &len);
    errlist_t el;
    errlist_init(&el);
    guarded_t g;
    guarded_make(&g, (const char *)buf, len);
    Jrp__V1__CreditEvent *back = codec_event_unpack(g.text, g.len, &el);
    guarded_free(&g);
    assert_non_null(back);
    assert_int_equal(el.count, 0);
    assert_same(&ev.base, &back->base);
    jrp__v1__credit_event__free_unpacked(back, NULL);
    free(buf);

    /* Bytes that decode but do not make sense are refused with the same checks as JSON. */
    subj.name = "bad \xff name";
    ev.kind = (Jrp__V1__EventKind)42;
    ev.occurred_at_ms = 0;
    buf = pack(&ev.base, &len);
    assert_null(codec_event_unpack(buf, len, &el));
    assert_error(&el, "bad_utf8", "subject.name");
    assert_error(&el, "bad_enum", "kind");
    assert_error(&el, "missing_field", "occurred_at_ms");
    assert_int_equal(el.count, 3);
    errlist_clear(&el);
    free(buf);

    /* No bytes at all decode to an empty event, which is refused for what it lacks. */
    assert_null(codec_event_unpack(NULL, 0, &el));
    assert_error(&el, "missing_field", "event_id");
    assert_error(&el, "missing_field", "subject");
    errlist_clear(&el);
}

/* ---- round trips ----------------------------------------------------------------------------- */

static void test_round_trip(void **state)
{
    (void)state;
    const char *texts[] = {
        EV(LISTED "," ENT ",\"valid_from_ms\":1700000000000,\"valid_until_ms\":1763072000000,"
                  "\"attributes\":{\"batch\":\"9\",\"note\":\"第九批 \\\"超限\\\"\\n\"}"),
        EV(DELISTED "," SUBJ("person", "11010519491231002X")),
        EV(GRADED "," SUBJ("vehicle", "津A12345")),
        EV(SANCTIONED "," ENT ",\"result\":\"r\""),
    };
    for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
        Jrp__V1__CreditEvent *ev = event_ok(texts[i]);

        /* JSON -> message -> JSON -> message. */
        json_t *j = codec_event_to_json(ev);
        assert_non_null(j);
        assert_true(json_is_string(json_object_get(j, "occurred_at_ms")));
        assert_true(json_is_string(json_object_get(j, "kind")));
        char *out = json_dumps(j, JSON_COMPACT);
        assert_non_null(out);
        Jrp__V1__CreditEvent *again = event_ok(out);
        assert_same(&ev->base, &again->base);

        /* message -> protobuf -> message. */
        size_t len;
        uint8_t *buf = pack(&ev->base, &len);
        errlist_t el;
        errlist_init(&el);
        Jrp__V1__CreditEvent *unpacked = codec_event_unpack(buf, len, &el);
        assert_non_null(unpacked);
        assert_same(&ev->base, &unpacked->base);

        jrp__v1__credit_event__free_unpacked(unpacked, NULL);
        jrp__v1__credit_event__free_unpacked(again, NULL);
        jrp__v1__credit_event__free_unpacked(ev, NULL);
        free(buf);
        free(out);
        json_decref(j);
        errlist_clear(&el);
    }
}

/* ---- Action and Feedback --------------------------------------------------------------------- */

#define AC_BASE                                                                                    \
    "\"action_id\":\"act-1\",\"department\":\"market\",\"measure_code\":\"RESTRICT_HANDLING\","    \
    "\"measure_kind\":\"penalty\",\"memorandum_id\":\"overload-2017\"," ENT

static void test_action(void **state)
{
    (void)state;
    errlist_t el;
    errlist_init(&el);
    static const char *const ok[] = {
        "{\"op\":\"apply\"," AC_BASE "}",
        "{\"op\":\"ACTION_OP_APPLY\"," AC_BASE ",\"memorandum_version\":\"v3\",\"list_code\":"
        "\"black.overload\",\"cause_event_id\":\"ev-1\",\"valid_from_ms\":\"1\","
        "\"valid_until_ms\":2,\"issued_at_ms\":3,\"measure_text\":\"依法限制\","
        "\"legal_basis\":\"…\",\"ruleset_version\":\"7\"}",
        "{\"op\":\"revoke\",\"revokes_action_id\":\"act-0\"," AC_BASE "}",
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        json_t *j = parse(ok[i]);
        Jrp__V1__Action *ac = codec_action_from_json(j, NULL, &el);
        if (!ac)
            dump_errors(&el);
        assert_non_null(ac);
        json_t *back = codec_action_to_json(ac);
        assert_non_null(back);
        assert_string_equal(json_string_value(json_object_get(back, "measure_kind")),
                            "MEASURE_KIND_PENALTY");
        json_decref(back);
        jrp__v1__action__free_unpacked(ac, NULL);
        json_decref(j);
    }

    static const struct {
        const char *json, *code, *path;
    } bad[] = {
        {"{\"op\":\"revoke\"," AC_BASE "}", "missing_field", "revokes_action_id"},
        {"{\"op\":\"apply\",\"revokes_action_id\":\"act-0\"," AC_BASE "}", "not_allowed",
         "revokes_action_id"},
        {"{" AC_BASE "}", "missing_field", "op"},
        {"{\"op\":\"undo\"," AC_BASE "}", "bad_enum", "op"},
        {"{\"op\":\"apply\",\"action_id\":\"act-1\",\"department\":\"market\",\"measure_code\":"
         "\"RESTRICT_HANDLING\",\"measure_kind\":\"penalty\"," ENT "}",
         "missing_field", "memorandum_id"},
        {"{\"op\":\"apply\",\"action_id\":\"act-1\",\"department\":\"market\",\"measure_code\":"
         "\"restrict\",\"measure_kind\":\"penalty\",\"memorandum_id\":\"m\"," ENT "}",
         "bad_format", "measure_code"},
        {"{\"op\":\"apply\",\"action_id\":\"act-1\",\"department\":\"market\",\"measure_code\":"
         "\"X1\",\"measure_kind\":\"penalty\",\"memorandum_id\":\"Overload 2017\"," ENT "}",
         "bad_format", "memorandum_id"},
        {"{\"op\":\"apply\",\"action_id\":\"act-1\",\"department\":\"Market\",\"measure_code\":"
         "\"X1\",\"measure_kind\":\"penalty\",\"memorandum_id\":\"m\"," ENT "}",
         "bad_format", "department"},
        {"{\"op\":\"apply\",\"action_id\":\"act-1\",\"department\":\"market\",\"measure_code\":"
         "\"X1\",\"memorandum_id\":\"m\"," ENT "}",
         "missing_field", "measure_kind"},
        {"{\"op\":\"apply\",\"action_id\":\"act-1\",\"department\":\"market\",\"measure_code\":"
         "\"X1\",\"measure_kind\":1,\"memorandum_id\":\"m\"," SUBJ("person",
                                                                   "110105194912310021") "}",
         "bad_checksum", "subject.id"},
        {"{\"op\":\"apply\"," AC_BASE ",\"valid_from_ms\":5,\"valid_until_ms\":4}", "out_of_range",
         "valid_until_ms"},
        {"{\"op\":\"apply\"," AC_BASE ",\"list_code\":\"grey.x\"}", "bad_format", "list_code"},
        {"{\"op\":\"apply\"," AC_BASE ",\"ruleset_version\":-1}", "out_of_range",
         "ruleset_version"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        json_t *j = parse(bad[i].json);
        Jrp__V1__Action *ac = codec_action_from_json(j, "actions[1]", &el);
        assert_null(ac);
        char want[96];
        snprintf(want, sizeof(want), "actions[1].%s", bad[i].path);
        if (el.count != 1)
            dump_errors(&el);
        assert_int_equal(el.count, 1);
        assert_error(&el, bad[i].code, want);
        errlist_clear(&el);
        json_decref(j);
    }

    /* Everything missing: every required field is named. */
    json_t *j = parse("{}");
    assert_null(codec_action_from_json(j, NULL, &el));
    const char *required[] = {"action_id",    "op",      "department",   "measure_code",
                              "measure_kind", "subject", "memorandum_id"};
    for (size_t i = 0; i < sizeof(required) / sizeof(required[0]); i++)
        assert_error(&el, "missing_field", required[i]);
    assert_int_equal(el.count, 7);
    errlist_clear(&el);
    json_decref(j);
}

static void test_feedback(void **state)
{
    (void)state;
    errlist_t el;
    errlist_init(&el);
    json_t *j = parse("{\"action_id\":\"act-1\",\"department\":\"market\",\"status\":\"executed\","
                      "\"note\":\"已惩戒\",\"occurred_at_ms\":\"1700000000000\"}");
    Jrp__V1__Feedback *fb = codec_feedback_from_json(j, NULL, &el);
    assert_non_null(fb);
    assert_int_equal(fb->status, JRP__V1__FEEDBACK_STATUS__FEEDBACK_STATUS_EXECUTED);
    json_t *back = codec_feedback_to_json(fb);
    assert_non_null(back);
    assert_true(json_equal(json_object_get(back, "note"), json_object_get(j, "note")));
    json_decref(back);
    jrp__v1__feedback__free_unpacked(fb, NULL);
    json_decref(j);

    static const struct {
        const char *json, *code, *path;
    } bad[] = {
        {"{\"department\":\"market\",\"status\":1,\"occurred_at_ms\":1}", "missing_field",
         "action_id"},
        {"{\"action_id\":\"a\",\"department\":\"m\",\"status\":1,\"occurred_at_ms\":1}",
         "bad_format", "department"},
        {"{\"action_id\":\"a\",\"department\":\"market\",\"occurred_at_ms\":1}", "missing_field",
         "status"},
        {"{\"action_id\":\"a\",\"department\":\"market\",\"status\":\"done\","
         "\"occurred_at_ms\":1}",
         "bad_enum", "status"},
        {"{\"action_id\":\"a\",\"department\":\"market\",\"status\":1}", "missing_field",
         "occurred_at_ms"},
        {"{\"action_id\":\"a\",\"department\":\"market\",\"status\":1,\"occurred_at_ms\":-9}",
         "out_of_range", "occurred_at_ms"},
        {"{\"action_id\":\"a\",\"department\":\"market\",\"status\":1,\"occurred_at_ms\":1,"
         "\"note\":\"{{x*1025}}\"}",
         "too_long", "note"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char *text = expand(bad[i].json);
        j = parse(text);
        assert_null(codec_feedback_from_json(j, NULL, &el));
        if (el.count != 1)
            dump_errors(&el);
        assert_int_equal(el.count, 1);
        assert_error(&el, bad[i].code, bad[i].path);
        errlist_clear(&el);
        json_decref(j);
        free(text);
    }
}

/* Messages built in code (by the engine) may hold NULL strings: they are simply missing. */
static void test_validate_hand_built(void **state)
{
    (void)state;
    Jrp__V1__Subject subj = JRP__V1__SUBJECT__INIT;
    subj.type = JRP__V1__SUBJECT_TYPE__SUBJECT_TYPE_VEHICLE;
    subj.id = "津A12345";
    subj.name = NULL;
    Jrp__V1__CreditEvent ev = JRP__V1__CREDIT_EVENT__INIT;
    ev.event_id = NULL;
    ev.kind = JRP__V1__EVENT_KIND__EVENT_KIND_GRADED;
    ev.subject = &subj;
    ev.source_department = "transport";
    ev.occurred_at_ms = 1;
    ev.grade_field = "taxi";
    ev.grade = NULL;
    ev.title = NULL;
    errlist_t el;
    errlist_init(&el);
    assert_int_equal(codec_event_validate(&ev, "e", &el), -1);
    assert_error(&el, "missing_field", "e.event_id");
    assert_error(&el, "missing_field", "e.grade");
    assert_int_equal(el.count, 2);
    errlist_clear(&el);
    assert_int_equal(codec_event_validate(NULL, NULL, &el), -1);
    errlist_clear(&el);

    Jrp__V1__Action ac = JRP__V1__ACTION__INIT;
    assert_int_equal(codec_action_validate(&ac, NULL, NULL), -1);
    Jrp__V1__Feedback fb = JRP__V1__FEEDBACK__INIT;
    fb.action_id = "a";
    fb.department = "tax";
    fb.status = JRP__V1__FEEDBACK_STATUS__FEEDBACK_STATUS_FAILED;
    fb.occurred_at_ms = 1;
    assert_int_equal(codec_feedback_validate(&fb, NULL, NULL), 0);
    assert_null(codec_event_to_json(NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_events),
        cmocka_unit_test(test_bad_events_prefixed),
        cmocka_unit_test(test_deep_nesting),
        cmocka_unit_test(test_bad_json_names_line_and_column),
        cmocka_unit_test(test_valid_events_every_kind),
        cmocka_unit_test(test_decoded_values),
        cmocka_unit_test(test_every_error_listed),
        cmocka_unit_test(test_shape_and_meaning_errors_together),
        cmocka_unit_test(test_enum_error_message),
        cmocka_unit_test(test_unpack_garbage),
        cmocka_unit_test(test_unpack_checks_meaning),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_action),
        cmocka_unit_test(test_feedback),
        cmocka_unit_test(test_validate_hand_built),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
