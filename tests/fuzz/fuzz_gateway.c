/*
 * libFuzzer target for the gateway's request path without the network: the bytes are used as the
 * body of POST /v1/events and POST /v1/feedback, as a request path (route and credit-check
 * subject), as a query string, as an Authorization header and as a traceparent, each through the
 * functions the gateway's handler calls (services/gateway/gateway_api.c, compiled in here because
 * fuzz targets are built from common/ and their own file). Half the inputs are spliced into a
 * valid event or path first, so that the fuzzer reaches the meaning checks behind the JSON parser
 * quickly. Broken invariants abort, so libFuzzer keeps the input:
 *   - a decode either succeeds with 1..max valid events, or fails with at least one error and a
 *     status of 400, 413 or 500, and its error body is the contract's JSON with every error;
 *   - an accepted event packs and unpacks to an event that validates again;
 *   - a subject taken from a path is one segment (no '/', '.', '..'), checks by computation, and
 *     makes a subject key;
 *   - the gateway's direct JSON writer says what pbjson says, for feedback and for a check record
 *     carrying the fuzzed event's strings (and for raw bytes as strings, valid UTF-8 or not).
 */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../services/gateway/gateway_api.c"
#include "jrp/v1/check.pb-c.h"
#include "pbjson.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_MAX_EVENTS 8

static void die(const char *what)
{
    fprintf(stderr, "fuzz_gateway: %s\n", what);
    abort();
}

/* The error body of el must be {"error":{code,message[,field]}[,"errors":[...count...]]}. */
static void check_error_body(const errlist_t *el)
{
    size_t len = 0;
    char *text = gateway_api_error_body(el, &len);
    if (!text)
        return; /* out of memory: nothing to check */
    if (strlen(text) != len)
        die("error body length");
    json_error_t jerr;
    json_t *root = json_loads(text, 0, &jerr);
    if (!root)
        die("error body is not JSON");
    json_t *e = json_object_get(root, "error");
    if (!json_is_string(json_object_get(e, "code")) ||
        !json_is_string(json_object_get(e, "message")))
        die("error without code or message");
    json_t *all = json_object_get(root, "errors");
    if (el->count > 1 ? json_array_size(all) != el->count : all != NULL)
        die("\"errors\" does not list every error");
    json_decref(root);
    free(text);
}

/* gateway_api_json(msg, 1) and pbjson_encode(msg, 0) (+ [] for empty lists) must agree. */
static void check_fast_json(const ProtobufCMessage *msg)
{
    size_t len = 0;
    char *fast = gateway_api_json(msg, 1, &len);
    json_t *want = pbjson_encode(msg, 0);
    if (!fast || !want) {
        free(fast);
        json_decref(want);
        return; /* out of memory, or a type it leaves to pbjson */
    }
    for (unsigned i = 0; i < msg->descriptor->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &msg->descriptor->fields[i];
        if (f->label == PROTOBUF_C_LABEL_REPEATED && !json_object_get(want, f->name))
            json_object_set_new(want, f->name, json_array());
    }
    json_error_t jerr;
    json_t *got = json_loadb(fast, len, 0, &jerr);
    if (!got || strlen(fast) != len)
        die("the direct JSON writer wrote something that is not JSON");
    if (!json_equal(got, want))
        die("the direct JSON writer and pbjson disagree");
    json_decref(got);
    json_decref(want);
    free(fast);
}

/* A check record whose measure carries the event's strings (and s, which may be any bytes). */
static void check_record_json(const Jrp__V1__CreditEvent *ev, const char *s)
{
    Jrp__V1__Action a, *ap = &a;
    jrp__v1__action__init(&a);
    a.action_id = ev->event_id;
    a.department = ev->source_department;
    a.measure_code = ev->grade;
    a.measure_kind = (Jrp__V1__MeasureKind)ev->kind;
    a.measure_text = ev->title;
    a.legal_basis = ev->basis;
    a.memorandum_id = (char *)s;
    a.list_code = ev->list_code;
    a.grade_field = ev->grade_field;
    a.valid_from_ms = ev->valid_from_ms;
    a.valid_until_ms = -ev->valid_until_ms;
    Jrp__V1__CheckRecord rec;
    jrp__v1__check_record__init(&rec);
    rec.check_id = ev->decision_no;
    rec.subject = ev->subject;
    rec.requested_by = ev->result;
    rec.business_item = (char *)s;
    rec.checked_at_ms = ev->occurred_at_ms;
    rec.measures = &ap;
    rec.n_measures = 1;
    check_fast_json(&rec.base);
}

static void fuzz_events(const char *body, size_t len)
{
    errlist_t el;
    errlist_init(&el);
    Jrp__V1__CreditEvent **evs = NULL;
    size_t n = 0;
    int batch = 0;
    int st = gateway_api_events_decode(body, len, FUZZ_MAX_EVENTS, &evs, &n, &batch, &el);
    if (st == 0) {
        if (!evs || n == 0 || n > FUZZ_MAX_EVENTS || (!batch && n != 1) || el.count)
            die("accepted events out of bounds");
        for (size_t i = 0; i < n; i++) {
            if (codec_event_validate(evs[i], NULL, NULL) != 0)
                die("an accepted event does not validate");
            check_record_json(evs[i], evs[i]->event_id);
            size_t plen = jrp__v1__credit_event__get_packed_size(evs[i]);
            uint8_t *buf = malloc(plen ? plen : 1);
            if (!buf)
                continue;
            jrp__v1__credit_event__pack(evs[i], buf);
            Jrp__V1__CreditEvent *back = jrp__v1__credit_event__unpack(NULL, plen, buf);
            if (!back || codec_event_validate(back, NULL, NULL) != 0)
                die("an accepted event does not survive protobuf");
            char key[512];
            if (ids_subject_key((ids_subject_type_t)back->subject->type, back->subject->id, key,
                                sizeof(key)) < 0)
                die("an accepted event has no subject key");
            jrp__v1__credit_event__free_unpacked(back, NULL);
            free(buf);
        }
        gateway_api_events_free(evs, n);
    } else {
        if (evs || n || el.count == 0 || (st != 400 && st != 413 && st != 500))
            die("a refusal without its errors");
        check_error_body(&el);
    }
    errlist_clear(&el);
}

static void fuzz_feedback(const char *body, size_t len)
{
    errlist_t el;
    errlist_init(&el);
    Jrp__V1__Feedback *fb = NULL;
    int st = gateway_api_feedback_decode(body, len, &fb, &el);
    if (st == 0) {
        if (!fb || el.count || codec_feedback_validate(fb, NULL, NULL) != 0)
            die("accepted feedback does not validate");
        check_fast_json(&fb->base);
        jrp__v1__feedback__free_unpacked(fb, NULL);
    } else {
        if (fb || el.count == 0 || st != 400)
            die("a refused feedback without its errors");
        check_error_body(&el);
    }
    errlist_clear(&el);
}

static void fuzz_path(const char *path)
{
    gateway_route_t route = gateway_api_route(path);
    (void)gateway_api_method_allowed(route, "GET");
    (void)gateway_api_route_name(route);
    if (route != GATEWAY_ROUTE_MEASURES)
        return;
    errlist_t el;
    errlist_init(&el);
    ids_subject_type_t type;
    char id[GATEWAY_SUBJECT_ID_MAX + 1];
    int st = gateway_api_subject(path, &type, id, sizeof(id), &el);
    if (st == 0) {
        size_t n = strlen(id);
        char key[GATEWAY_SUBJECT_ID_MAX + 32], reason[256];
        if (el.count || n == 0 || n > GATEWAY_SUBJECT_ID_MAX || strchr(id, '/') ||
            !strcmp(id, ".") || !strcmp(id, ".."))
            die("a subject id that is not one clean segment");
        if (ids_check_subject(type, id, NULL, reason, sizeof(reason)) != 0)
            die("a subject id that does not check");
        if (ids_subject_key(type, id, key, sizeof(key)) < 0)
            die("a subject with no key");
    } else {
        if (st != 400 || el.count == 0)
            die("a refused path without its errors");
        check_error_body(&el);
    }
    errlist_clear(&el);
}

static void fuzz_query(const char *query)
{
    errlist_t el;
    errlist_init(&el);
    char dept[64], item[258];
    int dl = http_query_param(query, "department", dept, sizeof(dept));
    if (dl != -1 && gateway_api_query_value(dept, dl, "department", 32, 1, &el) == 0 &&
        !ids_is_department(dept))
        die("a department that is not one");
    int il = http_query_param(query, "business_item", item, sizeof(item));
    if (il != -1 && gateway_api_query_value(item, il, "business_item", 256, 0, &el) == 0 &&
        !json_string(item)) /* must be usable as a JSON string (valid UTF-8) */
        die("a business item that is not UTF-8");
    check_error_body(&el);
    errlist_clear(&el);
}

static void fuzz_headers(const char *value)
{
    const char *tok;
    size_t n;
    if (gateway_api_bearer(value, &tok, &n) == 0) {
        if (n == 0 || n > GATEWAY_TOKEN_MAX || tok < value || tok + n > value + strlen(value))
            die("a bearer token out of bounds");
        for (size_t i = 0; i < n; i++)
            if (!api_is_b64token_char((unsigned char)tok[i]) && tok[i] != '=')
                die("a bearer token with a bad character");
    }
    (void)gateway_api_traceparent_valid(value);
    (void)gateway_api_scopes_parse(value);
}

/* Replace the first '@' of tmpl with data; returns a new buffer of *len bytes (NUL after). */
static char *fuzz_splice(const char *tmpl, const uint8_t *data, size_t size, size_t *len)
{
    const char *at = strchr(tmpl, '@');
    size_t pre = (size_t)(at - tmpl), post = strlen(at + 1);
    char *out = malloc(pre + size + post + 1);
    if (!out)
        return NULL;
    memcpy(out, tmpl, pre);
    memcpy(out + pre, data, size);
    memcpy(out + pre + size, at + 1, post + 1);
    *len = pre + size + post;
    return out;
}

static const char *const templates[] = {
    "{\"event_id\":\"f-1\",\"kind\":\"listed\",\"subject\":{\"type\":\"enterprise\",\"id\":\"@\"},"
    "\"source_department\":\"transport\",\"occurred_at_ms\":1764000000000,"
    "\"list_code\":\"black.overload\"}",
    "{\"event_id\":\"f-1\",\"kind\":\"@\",\"subject\":{\"type\":\"person\",\"id\":"
    "\"11010519491231002X\"},\"source_department\":\"transport\",\"occurred_at_ms\":1764000000000,"
    "\"grade_field\":\"transport_industry\",\"grade\":\"A\"}",
    "{\"events\":[{\"event_id\":\"f-1\",\"kind\":\"delisted\",\"subject\":{\"type\":\"vehicle\","
    "\"id\":\"\xe6\xb4\xa5"
    "A12345\"},\"source_department\":\"transport\","
    "\"occurred_at_ms\":1764000000000,\"list_code\":\"black.overload\",\"delist_reason\":\"@\"}]}",
    "{\"event_id\":\"f-1\",\"kind\":\"sanctioned\",\"subject\":{\"type\":\"enterprise\",\"id\":"
    "\"91350100M000100Y43\"},\"source_department\":\"market\",\"occurred_at_ms\":@,"
    "\"decision_no\":\"x\",\"attributes\":{\"a\":\"b\"}}",
    "{\"action_id\":\"@\",\"department\":\"transport\",\"status\":\"executed\","
    "\"occurred_at_ms\":1764000000000}",
    "/v1/subjects/@/measures",
    "/v1/subjects/enterprise/@/measures",
    "/v1/subjects/person/@/measures",
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    uint8_t mode = data[0];
    data++;
    size--;
    char *text = malloc(size + 1); /* as a C string: cut at the first NUL, as headers are */
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    if (mode & 0x80) {
        /* Spliced into a template. */
        size_t k = (size_t)(mode & 0x7f) % (sizeof(templates) / sizeof(templates[0]));
        size_t len = 0;
        char *s = fuzz_splice(templates[k], data, size, &len);
        if (s) {
            if (s[0] == '/') {
                fuzz_path(s);
            } else {
                fuzz_events(s, len);
                fuzz_feedback(s, len);
            }
            free(s);
        }
    } else {
        /* Raw: every use at once. */
        fuzz_events((const char *)data, size);
        fuzz_feedback((const char *)data, size);
        fuzz_path(text);
        fuzz_query(text);
        fuzz_headers(text);
        /* The bytes as a string field, whatever they are. */
        Jrp__V1__CreditEvent ev;
        Jrp__V1__Subject subj;
        jrp__v1__credit_event__init(&ev);
        jrp__v1__subject__init(&subj);
        subj.id = text;
        subj.type = (Jrp__V1__SubjectType)(mode & 7);
        ev.subject = &subj;
        ev.title = text;
        check_record_json(&ev, text);
    }
    free(text);
    return 0;
}
