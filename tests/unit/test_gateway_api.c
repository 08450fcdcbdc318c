/*
 * test_gateway_api: the gateway's pure request code: routes and methods, scopes, bearer tokens,
 * traceparent, the events and feedback bodies (every error by path, 413 on a big batch), the
 * subject of a credit-check path (traversal refused), query values, and the error bodies with
 * the "errors" addition. Bodies are also decoded from a buffer that ends at an unreadable page,
 * so an over-read crashes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "gateway_api.h"
#include "jrp/v1/check.pb-c.h"
#include "jrp/v1/decision.pb-c.h"
#include "jrp/v1/rules.pb-c.h"
#include "pbjson.h"

#define ENT "91350100M000100Y43"
#define ENT_BAD "91350100M000100Y44"
#define PERSON "11010519491231002X"

static const char event_ok[] =
    "{\"event_id\":\"e1\",\"kind\":\"listed\",\"subject\":{\"type\":\"enterprise\",\"id\":\"" ENT
    "\"},\"source_department\":\"transport\",\"occurred_at_ms\":1764000000000,"
    "\"list_code\":\"black.overload\"}";

/* The code and field of the error body's error i (-1: the "error" object). */
static void expect_error(const char *body, int i, const char *code, const char *field)
{
    json_error_t jerr;
    json_t *root = json_loads(body, 0, &jerr);
    if (!root)
        fail_msg("not JSON: %s", body);
    json_t *e = i < 0 ? json_object_get(root, "error")
                      : json_array_get(json_object_get(root, "errors"), (size_t)i);
    if (!e)
        fail_msg("no error %d in %s", i, body);
    assert_string_equal(json_string_value(json_object_get(e, "code")), code);
    const char *f = json_string_value(json_object_get(e, "field"));
    if (field)
        assert_string_equal(f ? f : "(none)", field);
    else
        assert_null(f);
    assert_non_null(json_string_value(json_object_get(e, "message")));
    json_decref(root);
}

static void test_routes(void **state)
{
    (void)state;
    assert_int_equal(gateway_api_route("/v1/events"), GATEWAY_ROUTE_EVENTS);
    assert_int_equal(gateway_api_route("/v1/feedback"), GATEWAY_ROUTE_FEEDBACK);
    assert_int_equal(gateway_api_route("/v1/reports/effects"), GATEWAY_ROUTE_REPORTS);
    assert_int_equal(gateway_api_route("/healthz"), GATEWAY_ROUTE_HEALTHZ);
    assert_int_equal(gateway_api_route("/readyz"), GATEWAY_ROUTE_READYZ);
    assert_int_equal(gateway_api_route("/metrics"), GATEWAY_ROUTE_METRICS);
    assert_int_equal(gateway_api_route("/v1/subjects/enterprise/" ENT "/measures"),
                     GATEWAY_ROUTE_MEASURES);
    assert_int_equal(gateway_api_route("/v1/subjects/x//measures"), GATEWAY_ROUTE_MEASURES);
    assert_int_equal(gateway_api_route("/v1/subjects/a/b/c/measures"), GATEWAY_ROUTE_NONE);
    assert_int_equal(gateway_api_route("/v1/subjects/a/b/measure"), GATEWAY_ROUTE_NONE);
    assert_int_equal(gateway_api_route("/v1/events/"), GATEWAY_ROUTE_NONE);
    assert_int_equal(gateway_api_route("/"), GATEWAY_ROUTE_NONE);
    assert_int_equal(gateway_api_route(""), GATEWAY_ROUTE_NONE);
    assert_int_equal(gateway_api_route(NULL), GATEWAY_ROUTE_NONE);
    assert_true(gateway_api_method_allowed(GATEWAY_ROUTE_EVENTS, "POST"));
    assert_false(gateway_api_method_allowed(GATEWAY_ROUTE_EVENTS, "GET"));
    assert_true(gateway_api_method_allowed(GATEWAY_ROUTE_HEALTHZ, "HEAD"));
    assert_false(gateway_api_method_allowed(GATEWAY_ROUTE_MEASURES, "HEAD"));
    assert_string_equal(gateway_api_route_name(GATEWAY_ROUTE_MEASURES), "measures");
    assert_string_equal(gateway_api_route_name((gateway_route_t)99), "none");
}

static void test_scopes(void **state)
{
    (void)state;
    char buf[128];
    assert_int_equal(gateway_api_scopes_parse("events:write check:read"),
                     GATEWAY_SCOPE_EVENTS_WRITE | GATEWAY_SCOPE_CHECK_READ);
    assert_int_equal(gateway_api_scopes_parse(" admin,,feedback:write bogus "),
                     GATEWAY_SCOPE_ADMIN | GATEWAY_SCOPE_FEEDBACK_WRITE);
    assert_int_equal(gateway_api_scopes_parse(NULL), 0);
    assert_int_equal(gateway_api_scopes_parse("check:reader"), 0);
    assert_string_equal(gateway_api_scopes_format(GATEWAY_SCOPES_DEFAULT, buf, sizeof(buf)),
                        "events:write check:read feedback:write");
    assert_int_equal(gateway_api_route_scope(GATEWAY_ROUTE_MEASURES), GATEWAY_SCOPE_CHECK_READ);
    assert_int_equal(gateway_api_route_scope(GATEWAY_ROUTE_REPORTS), GATEWAY_SCOPE_ADMIN);
    assert_int_equal(gateway_api_route_scope(GATEWAY_ROUTE_HEALTHZ), 0);
}

static void test_bearer(void **state)
{
    (void)state;
    const char *t;
    size_t n;
    assert_int_equal(gateway_api_bearer("Bearer jrp_abc-_.~+/==", &t, &n), 0);
    assert_int_equal(n, strlen("jrp_abc-_.~+/=="));
    assert_int_equal(gateway_api_bearer("  bearer   x  ", &t, &n), 0);
    assert_int_equal(n, 1);
    assert_memory_equal(t, "x", 1);
    assert_int_equal(gateway_api_bearer(NULL, &t, &n), -1);
    assert_int_equal(gateway_api_bearer("", &t, &n), -1);
    assert_int_equal(gateway_api_bearer("   ", &t, &n), -1);
    assert_int_equal(gateway_api_bearer("Bearer", &t, &n), -2);
    assert_int_equal(gateway_api_bearer("Bearer ", &t, &n), -2);
    assert_int_equal(gateway_api_bearer("Basic dXNlcjpwYXNz", &t, &n), -2);
    assert_int_equal(gateway_api_bearer("Bearer a b", &t, &n), -2);
    assert_int_equal(gateway_api_bearer("Bearer a=b", &t, &n), -2);
    assert_int_equal(gateway_api_bearer("Bearer \xe4\xb8\xad", &t, &n), -2);
    assert_int_equal(gateway_api_bearer("BearerX abc", &t, &n), -2);
    char longtok[GATEWAY_TOKEN_MAX + 16];
    memcpy(longtok, "Bearer ", 7);
    memset(longtok + 7, 'a', GATEWAY_TOKEN_MAX + 1);
    longtok[7 + GATEWAY_TOKEN_MAX + 1] = '\0';
    assert_int_equal(gateway_api_bearer(longtok, &t, &n), -2);
    longtok[7 + GATEWAY_TOKEN_MAX] = '\0';
    assert_int_equal(gateway_api_bearer(longtok, &t, &n), 0);
}

static void test_traceparent(void **state)
{
    (void)state;
    assert_true(
        gateway_api_traceparent_valid("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"));
    assert_false(
        gateway_api_traceparent_valid("00-00000000000000000000000000000000-00f067aa0ba902b7-01"));
    assert_false(
        gateway_api_traceparent_valid("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01"));
    assert_false(
        gateway_api_traceparent_valid("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"));
    assert_false(
        gateway_api_traceparent_valid("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"));
    assert_false(gateway_api_traceparent_valid("00-4bf9"));
    assert_false(gateway_api_traceparent_valid(NULL));
}

static void test_events_single_and_batch(void **state)
{
    (void)state;
    errlist_t el;
    errlist_init(&el);
    Jrp__V1__CreditEvent **evs;
    size_t n;
    int batch;
    assert_int_equal(
        gateway_api_events_decode(event_ok, strlen(event_ok), 10, &evs, &n, &batch, &el), 0);
    assert_int_equal(n, 1);
    assert_false(batch);
    assert_string_equal(evs[0]->event_id, "e1");
    gateway_api_events_free(evs, n);

    char body[2048];
    snprintf(body, sizeof(body), "{\"events\":[%s,%s]}", event_ok, event_ok);
    assert_int_equal(gateway_api_events_decode(body, strlen(body), 2, &evs, &n, &batch, &el), 0);
    assert_int_equal(n, 2);
    assert_true(batch);
    gateway_api_events_free(evs, n);
    assert_int_equal(el.count, 0);

    /* Over the limit: 413 before any event is looked at. */
    assert_int_equal(gateway_api_events_decode(body, strlen(body), 1, &evs, &n, &batch, &el), 413);
    assert_null(evs);
    assert_string_equal(el.items[0].code, "too_many_events");
    errlist_clear(&el);
}

static void test_events_every_error_by_path(void **state)
{
    (void)state;
    errlist_t el;
    errlist_init(&el);
    Jrp__V1__CreditEvent **evs;
    size_t n;
    int batch;
    char body[4096];
    snprintf(body, sizeof(body),
             "{\"events\":[%s,{\"event_id\":\"e2\",\"kind\":\"lisited\",\"subject\":{\"type\":"
             "\"enterprise\",\"id\":\"" ENT_BAD "\"},\"source_department\":\"transport\","
             "\"occurred_at_ms\":1764000000000,\"list_code\":\"black.overload\"},%s],\"x\":1}",
             event_ok, event_ok);
    assert_int_equal(gateway_api_events_decode(body, strlen(body), 10, &evs, &n, &batch, &el), 400);
    assert_null(evs);
    assert_int_equal(n, 0);
    assert_true(errlist_contains(&el, "events[1].kind"));
    assert_true(errlist_contains(&el, "bad_enum"));
    assert_true(errlist_contains(&el, "events[1].subject.id"));
    assert_true(errlist_contains(&el, "bad_checksum"));
    assert_true(errlist_contains(&el, "unknown_field"));
    assert_false(errlist_contains(&el, "events[0]"));
    assert_false(errlist_contains(&el, "events[2]"));
    size_t len;
    char *text = gateway_api_error_body(&el, &len);
    assert_non_null(text);
    assert_int_equal(len, strlen(text));
    expect_error(text, -1, "unknown_field", "x");
    expect_error(text, 1, "bad_enum", "events[1].kind");
    expect_error(text, 2, "bad_checksum", "events[1].subject.id");
    free(text);
    errlist_clear(&el);
}

/* body, status, first code, first field */
static const struct {
    const char *body;
    int status;
    const char *code;
    const char *field;
} bad_events[] = {
    {"", 400, "bad_json", NULL},
    {"{", 400, "bad_json", NULL},
    {"[]", 400, "wrong_type", NULL},
    {"\"x\"", 400, "wrong_type", NULL},
    {"42", 400, "wrong_type", NULL},
    {"{\"events\":{}}", 400, "wrong_type", "events"},
    {"{\"events\":[]}", 400, "missing_field", "events"},
    {"{\"events\":[1]}", 400, "wrong_type", "events[0]"},
    {"{\"a\":1,\"a\":2}", 400, "bad_json", NULL},
    {"{\"event_id\":\"\xff\"}", 400, "bad_utf8", NULL},
    {"{\"event_id\":7}", 400, "wrong_type", "event_id"},
};

static void test_events_bad_bodies(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(bad_events) / sizeof(bad_events[0]); i++) {
        errlist_t el;
        errlist_init(&el);
        Jrp__V1__CreditEvent **evs;
        size_t n;
        int batch;
        const char *b = bad_events[i].body;
        int st = gateway_api_events_decode(b, strlen(b), 10, &evs, &n, &batch, &el);
        if (st != bad_events[i].status || el.count == 0 ||
            strcmp(el.items[0].code, bad_events[i].code) ||
            strcmp(el.items[0].path, bad_events[i].field ? bad_events[i].field : ""))
            fail_msg("case %zu (%s): status %d, first error %s at \"%s\"", i, b, st,
                     el.count ? el.items[0].code : "-", el.count ? el.items[0].path : "-");
        errlist_clear(&el);
    }
}

static void test_feedback(void **state)
{
    (void)state;
    errlist_t el;
    errlist_init(&el);
    Jrp__V1__Feedback *fb;
    const char ok[] = "{\"action_id\":\"a1\",\"department\":\"transport\",\"status\":\"executed\","
                      "\"occurred_at_ms\":\"1764000000000\"}";
    assert_int_equal(gateway_api_feedback_decode(ok, strlen(ok), &fb, &el), 0);
    assert_string_equal(fb->action_id, "a1");
    jrp__v1__feedback__free_unpacked(fb, NULL);
    const char bad[] = "{\"department\":\"Transport\",\"status\":\"done\"}";
    assert_int_equal(gateway_api_feedback_decode(bad, strlen(bad), &fb, &el), 400);
    assert_null(fb);
    assert_true(errlist_contains(&el, "action_id"));
    assert_true(errlist_contains(&el, "status"));
    assert_true(errlist_contains(&el, "department"));
    errlist_clear(&el);
    assert_int_equal(gateway_api_feedback_decode("[1]", 3, &fb, &el), 400);
    assert_string_equal(el.items[0].code, "wrong_type");
    errlist_clear(&el);
}

static void expect_subject(const char *path, int status, const char *code, const char *field)
{
    errlist_t el;
    errlist_init(&el);
    ids_subject_type_t type;
    char id[GATEWAY_SUBJECT_ID_MAX + 1];
    int st = gateway_api_subject(path, &type, id, sizeof(id), &el);
    if (st != status || (code && (el.count == 0 || strcmp(el.items[0].code, code) ||
                                  strcmp(el.items[0].path, field))))
        fail_msg("%s: status %d, first error %s at %s", path, st, el.count ? el.items[0].code : "-",
                 el.count ? el.items[0].path : "-");
    errlist_clear(&el);
}

static void test_subject_path(void **state)
{
    (void)state;
    errlist_t el;
    errlist_init(&el);
    ids_subject_type_t type;
    char id[GATEWAY_SUBJECT_ID_MAX + 1];
    assert_int_equal(gateway_api_subject("/v1/subjects/SUBJECT_TYPE_PERSON/" PERSON "/measures",
                                         &type, id, sizeof(id), &el),
                     0);
    assert_int_equal(type, IDS_SUBJECT_PERSON);
    assert_string_equal(id, PERSON);
    /* A plate, percent-encoded UTF-8. */
    assert_int_equal(gateway_api_subject("/v1/subjects/vehicle/%E6%B4%A5A12345/measures", &type, id,
                                         sizeof(id), &el),
                     0);
    assert_string_equal(id, "\xe6\xb4\xa5"
                            "A12345");
    assert_int_equal(el.count, 0);
    expect_subject("/v1/subjects/enterprise/../measures", 400, "bad_path", "subject.id");
    expect_subject("/v1/subjects/enterprise/%2e%2e/measures", 400, "bad_path", "subject.id");
    expect_subject("/v1/subjects/enterprise/%2E/measures", 400, "bad_path", "subject.id");
    expect_subject("/v1/subjects/enterprise/a%2Fb/measures", 400, "bad_path", "subject.id");
    expect_subject("/v1/subjects/enterprise/a%00/measures", 400, "bad_path", "subject.id");
    expect_subject("/v1/subjects/enterprise/a%zz/measures", 400, "bad_path", "subject.id");
    expect_subject("/v1/subjects/enterprise//measures", 400, "missing_field", "subject.id");
    expect_subject("/v1/subjects//" ENT "/measures", 400, "missing_field", "subject.type");
    expect_subject("/v1/subjects/company/" ENT "/measures", 400, "bad_enum", "subject.type");
    expect_subject("/v1/subjects/enterprise/" ENT_BAD "/measures", 400, "bad_checksum",
                   "subject.id");
    expect_subject("/v1/subjects/person/110105194912310021/measures", 400, "bad_checksum",
                   "subject.id");
    char longp[1024];
    snprintf(longp, sizeof(longp), "/v1/subjects/enterprise/%0200d/measures", 1);
    expect_subject(longp, 400, "too_long", "subject.id");
    expect_subject("/v1/events", 400, "not_found", "");
}

static void test_query_values(void **state)
{
    (void)state;
    errlist_t el;
    errlist_init(&el);
    assert_int_equal(gateway_api_query_value("transport", 9, "department", 32, 1, &el), 0);
    assert_int_equal(gateway_api_query_value("Trans", 5, "department", 32, 1, &el), 400);
    assert_int_equal(gateway_api_query_value("x", -2, "department", 32, 1, &el), 400);
    assert_int_equal(gateway_api_query_value("\xe5\x8a\x9e", 3, "business_item", 256, 0, &el), 0);
    assert_int_equal(gateway_api_query_value("\xff", 1, "business_item", 256, 0, &el), 400);
    assert_int_equal(gateway_api_query_value("a\nb", 3, "business_item", 256, 0, &el), 400);
    assert_int_equal(gateway_api_query_value("aaaa", 4, "business_item", 3, 0, &el), 400);
    assert_string_equal(el.items[0].code, "bad_format");
    assert_string_equal(el.items[1].code, "bad_format");
    assert_string_equal(el.items[2].code, "bad_utf8");
    assert_string_equal(el.items[3].code, "bad_char");
    assert_string_equal(el.items[4].code, "too_long");
    errlist_clear(&el);
}

static void test_error_bodies(void **state)
{
    (void)state;
    size_t len;
    char *one = gateway_api_error1("bad_checksum", "check char", "subject.id", &len);
    assert_non_null(one);
    assert_string_equal(one, "{\"error\":{\"code\":\"bad_checksum\",\"message\":\"check char\","
                             "\"field\":\"subject.id\"}}");
    free(one);
    one = gateway_api_error1("not_found", "no route", NULL, &len);
    assert_string_equal(one, "{\"error\":{\"code\":\"not_found\",\"message\":\"no route\"}}");
    free(one);
    /* A message that is not UTF-8 still gives valid JSON. */
    one = gateway_api_error1("x", "bad \xff byte", "", &len);
    assert_non_null(one);
    json_error_t jerr;
    json_t *j = json_loads(one, 0, &jerr);
    assert_non_null(j);
    json_decref(j);
    free(one);
    errlist_t el;
    errlist_init(&el);
    one = gateway_api_error_body(&el, &len);
    expect_error(one, -1, "bad_request", NULL);
    free(one);
    (void)errlist_add(&el, NULL, "a", "c1", "m1");
    one = gateway_api_error_body(&el, &len);
    assert_null(strstr(one, "\"errors\""));
    free(one);
    (void)errlist_add(&el, NULL, "", "c2", "m2");
    one = gateway_api_error_body(&el, &len);
    expect_error(one, -1, "c1", "a");
    expect_error(one, 0, "c1", "a");
    expect_error(one, 1, "c2", NULL);
    free(one);
    errlist_clear(&el);
}

/* Every decoder on bytes that end right before an unreadable page. */
static void test_no_over_read(void **state)
{
    (void)state;
    long page = sysconf(_SC_PAGESIZE);
    char *map =
        mmap(NULL, (size_t)page * 2, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(map != MAP_FAILED);
    assert_int_equal(mprotect(map + page, (size_t)page, PROT_NONE), 0);
    const char *inputs[] = {event_ok, "{\"events\":[", "{\"action_id\":\"a", "{", "\"\\u00"};
    for (size_t i = 0; i < sizeof(inputs) / sizeof(inputs[0]); i++) {
        size_t n = strlen(inputs[i]);
        char *p = map + page - n;
        memcpy(p, inputs[i], n);
        errlist_t el;
        errlist_init(&el);
        Jrp__V1__CreditEvent **evs;
        size_t cnt;
        int batch;
        if (gateway_api_events_decode(p, n, 10, &evs, &cnt, &batch, &el) == 0)
            gateway_api_events_free(evs, cnt);
        Jrp__V1__Feedback *fb;
        if (gateway_api_feedback_decode(p, n, &fb, &el) == 0)
            jrp__v1__feedback__free_unpacked(fb, NULL);
        errlist_clear(&el);
    }
    munmap(map, (size_t)page * 2);
}

/* gateway_api_json(msg) must say what pbjson_encode(msg, 0) says (with [] for empty lists). */
static void expect_same_json(const ProtobufCMessage *msg, int empty_lists)
{
    size_t len = 0;
    char *fast = gateway_api_json(msg, empty_lists, &len);
    assert_non_null(fast);
    assert_int_equal(strlen(fast), len);
    json_error_t jerr;
    json_t *got = json_loads(fast, 0, &jerr);
    if (!got)
        fail_msg("not JSON (%s): %s", jerr.text, fast);
    json_t *want = pbjson_encode(msg, 0);
    assert_non_null(want);
    if (empty_lists) {
        for (unsigned i = 0; i < msg->descriptor->n_fields; i++) {
            const ProtobufCFieldDescriptor *f = &msg->descriptor->fields[i];
            if (f->label == PROTOBUF_C_LABEL_REPEATED && !json_object_get(want, f->name))
                json_object_set_new(want, f->name, json_array());
        }
    }
    if (!json_equal(got, want)) {
        char *w = json_dumps(want, JSON_COMPACT);
        fail_msg("fast: %s\npbjson: %s", fast, w);
    }
    json_decref(got);
    json_decref(want);
    free(fast);
}

static void test_fast_json_matches_pbjson(void **state)
{
    (void)state;
    Jrp__V1__Subject subject;
    jrp__v1__subject__init(&subject);
    subject.type = JRP__V1__SUBJECT_TYPE__SUBJECT_TYPE_PERSON;
    subject.id = PERSON;
    Jrp__V1__Action a[3], *ptrs[3];
    for (int i = 0; i < 3; i++) {
        jrp__v1__action__init(&a[i]);
        ptrs[i] = &a[i];
    }
    a[0].action_id = "2b75c0efa0a585acb0eced5bba1ad572";
    a[0].department = "transport";
    a[0].measure_code = "STRICT_SUPERVISION";
    a[0].measure_kind = JRP__V1__MEASURE_KIND__MEASURE_KIND_PENALTY;
    a[0].measure_text = "列为重点监管对象，提高路面执法和源头检查频次 😀";
    a[0].legal_basis = "《全国失信惩戒措施基础清单（2021年版）》";
    a[0].valid_from_ms = 1764000000000;
    a[0].valid_until_ms = -1;
    a[0].ruleset_version = 9223372036854775807LL;
    /* Everything that must be escaped, and bytes that are not UTF-8. */
    a[1].action_id = "q\"uote\\back\x01\x1f\n\t\r\b\f/\x7f";
    a[1].measure_text = "bad \xff, overlong \xc0\xaf, surrogate \xed\xa0\x80, cut \xe6\xb4";
    a[1].legal_basis = "\xf4\x90\x80\x80 above U+10FFFF, \xf0\x9f\x98 cut 4-byte";
    a[1].measure_kind = (Jrp__V1__MeasureKind)99; /* unknown to this build: a number */
    a[1].op = JRP__V1__ACTION_OP__ACTION_OP_APPLY;
    a[1].subject = &subject;
    /* a[2]: all defaults, an empty object. */
    Jrp__V1__CheckRecord rec;
    jrp__v1__check_record__init(&rec);
    rec.check_id = "0123456789abcdef0000000000000001";
    rec.subject = &subject;
    rec.department = "transport";
    rec.requested_by = "tok_0123456789abcdef";
    rec.checked_at_ms = 1795712823095;
    rec.business_item = "办理\"许可\"";
    rec.measures = ptrs;
    rec.n_measures = 3;
    expect_same_json(&rec.base, 0);
    expect_same_json(&rec.base, 1);
    rec.n_measures = 0;
    expect_same_json(&rec.base, 1);
    expect_same_json(&rec.base, 0);
    size_t len;
    char *empty = gateway_api_json(&rec.base, 1, &len);
    assert_non_null(strstr(empty, "\"measures\":[]"));
    free(empty);

    /* Repeated strings and messages, int32, enums. */
    Jrp__V1__MemorandumRef refs[2], *rp[2] = {&refs[0], &refs[1]};
    jrp__v1__memorandum_ref__init(&refs[0]);
    jrp__v1__memorandum_ref__init(&refs[1]);
    refs[0].id = "overload-2017";
    refs[0].version = "dc4ae4a4660d";
    char *ids[] = {"a", "", "c"};
    Jrp__V1__Decision d;
    jrp__v1__decision__init(&d);
    d.event_id = "e1";
    d.subject = &subject;
    d.outcome = JRP__V1__DECISION_OUTCOME__DECISION_OUTCOME_APPLIED;
    d.matched = rp;
    d.n_matched = 2;
    d.action_ids = ids;
    d.n_action_ids = 3;
    d.source_partition = -1;
    d.source_offset = -42;
    expect_same_json(&d.base, 0);

    /* What it leaves to pbjson: maps (attributes), bytes (rule files). */
    Jrp__V1__CreditEvent ev;
    jrp__v1__credit_event__init(&ev);
    assert_null(gateway_api_json(&ev.base, 0, &len));
    Jrp__V1__RuleSet rs;
    jrp__v1__rule_set__init(&rs);
    expect_same_json(&rs.base, 0); /* no file, no bytes: fine */
    Jrp__V1__RuleFile file, *files[] = {&file};
    jrp__v1__rule_file__init(&file);
    file.path = "catalogue.json";
    rs.files = files;
    rs.n_files = 1;
    assert_null(gateway_api_json(&rs.base, 0, &len));
    assert_null(gateway_api_json(NULL, 0, &len));
}

/* The cached answer's two halves: spliced JSON and protobuf say what the whole record says. */
static void expect_same_splice(Jrp__V1__CheckRecord *rec)
{
    size_t n = rec->n_measures, len = 0, mlen = 0, rawlen = 0, plen = 0;
    char *whole = gateway_api_json(&rec->base, 1, &len);
    assert_non_null(whole);
    char *list = gateway_api_json_list((const ProtobufCMessage *const *)rec->measures, n, 0, &mlen);
    assert_non_null(list);
    assert_int_equal(strlen(list), mlen);
    uint8_t *raw =
        gateway_api_pack_repeated(6, (const ProtobufCMessage *const *)rec->measures, n, &rawlen);
    assert_non_null(raw);
    size_t want_len = jrp__v1__check_record__get_packed_size(rec);
    uint8_t *want = malloc(want_len + 1);
    assert_non_null(want);
    jrp__v1__check_record__pack(rec, want);

    Jrp__V1__Action **ms = rec->measures;
    rec->measures = NULL;
    rec->n_measures = 0;
    size_t slen = 0;
    char *spliced = gateway_api_json_splice(&rec->base, "measures", list, mlen, 1, &slen);
    assert_non_null(spliced);
    assert_int_equal(slen, len);
    assert_string_equal(spliced, whole);
    uint8_t *packed = gateway_api_pack_splice(&rec->base, 6, raw, rawlen, &plen);
    assert_non_null(packed);
    assert_int_equal(plen, want_len);
    assert_memory_equal(packed, want, want_len);
    rec->measures = ms;
    rec->n_measures = n;
    /* A field that is not empty cannot be spliced. */
    if (n)
        assert_null(gateway_api_json_splice(&rec->base, "measures", list, mlen, 1, &slen));
    free(whole);
    free(list);
    free(raw);
    free(want);
    free(spliced);
    free(packed);
}

static void test_splice(void **state)
{
    (void)state;
    Jrp__V1__Subject subject;
    jrp__v1__subject__init(&subject);
    subject.type = JRP__V1__SUBJECT_TYPE__SUBJECT_TYPE_ENTERPRISE;
    subject.id = "91350100M000100Y43";
    subject.name = "某某运输有限公司";
    static char big[300];
    memset(big, 'x', sizeof(big) - 1); /* a length that takes two varint bytes */
    Jrp__V1__Action a[2], *ptrs[2] = {&a[0], &a[1]};
    for (int i = 0; i < 2; i++)
        jrp__v1__action__init(&a[i]);
    a[0].action_id = "2b75c0efa0a585acb0eced5bba1ad572";
    a[0].department = "transport";
    a[0].measure_code = "STRICT_SUPERVISION";
    a[0].measure_kind = JRP__V1__MEASURE_KIND__MEASURE_KIND_PENALTY;
    a[0].measure_text = "列为重点监管对象，提高路面执法和源头检查频次";
    a[0].legal_basis = big;
    a[0].valid_from_ms = 1764000000000;
    a[0].ruleset_version = 1;
    a[1].action_id = "q\"uote";
    a[1].valid_until_ms = -5;
    Jrp__V1__CheckRecord rec;
    jrp__v1__check_record__init(&rec);
    rec.check_id = "0123456789abcdef0000000000000001";
    rec.subject = &subject;
    rec.department = "transport";
    rec.requested_by = "tok_0123456789abcdef";
    rec.checked_at_ms = 1795712823095;
    rec.measures = ptrs;
    for (size_t n = 0; n <= 2; n++) {
        rec.n_measures = n;
        rec.business_item = "";
        rec.traceparent = "";
        expect_same_splice(&rec); /* measures last */
        rec.business_item = "办理\"许可\"";
        rec.traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        expect_same_splice(&rec); /* fields after the measures */
        rec.department = "";
        expect_same_splice(&rec);
        rec.department = "transport";
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_routes),
        cmocka_unit_test(test_scopes),
        cmocka_unit_test(test_bearer),
        cmocka_unit_test(test_traceparent),
        cmocka_unit_test(test_events_single_and_batch),
        cmocka_unit_test(test_events_every_error_by_path),
        cmocka_unit_test(test_events_bad_bodies),
        cmocka_unit_test(test_feedback),
        cmocka_unit_test(test_subject_path),
        cmocka_unit_test(test_query_values),
        cmocka_unit_test(test_error_bodies),
        cmocka_unit_test(test_no_over_read),
        cmocka_unit_test(test_fast_json_matches_pbjson),
        cmocka_unit_test(test_splice),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
