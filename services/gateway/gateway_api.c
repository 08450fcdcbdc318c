/*
 * gateway_api: routes, tokens, bodies and errors of the HTTP API, without I/O. Everything here
 * takes untrusted bytes, so every function bounds what it reads and reports what it refuses.
 */
#include "gateway_api.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "codec.h"
#include "http.h"
#include "utf8.h"

#define API_SUBJECTS_PREFIX "/v1/subjects/"
#define API_MEASURES_SUFFIX "measures"

/* ---- routes ------------------------------------------------------------------------------ */

static const struct {
    const char *path; /* NULL for the patterned route */
    const char *name;
    const char *method;
    unsigned scope;
} api_routes[GATEWAY_ROUTE_COUNT] = {
    [GATEWAY_ROUTE_NONE] = {NULL, "none", "GET", 0},
    [GATEWAY_ROUTE_EVENTS] = {"/v1/events", "events", "POST", GATEWAY_SCOPE_EVENTS_WRITE},
    [GATEWAY_ROUTE_MEASURES] = {NULL, "measures", "GET", GATEWAY_SCOPE_CHECK_READ},
    [GATEWAY_ROUTE_FEEDBACK] = {"/v1/feedback", "feedback", "POST", GATEWAY_SCOPE_FEEDBACK_WRITE},
    [GATEWAY_ROUTE_REPORTS] = {"/v1/reports/effects", "reports", "GET", GATEWAY_SCOPE_ADMIN},
    [GATEWAY_ROUTE_HEALTHZ] = {"/healthz", "healthz", "GET", 0},
    [GATEWAY_ROUTE_READYZ] = {"/readyz", "readyz", "GET", 0},
    [GATEWAY_ROUTE_METRICS] = {"/metrics", "metrics", "GET", 0},
};

/*
 * Split /v1/subjects/{type}/{id}/measures into its two variable segments (raw, not decoded).
 * Returns 0, or -1 when path does not have that shape.
 */
static int api_subject_segments(const char *path, const char **type, size_t *type_len,
                                const char **id, size_t *id_len)
{
    size_t plen = sizeof(API_SUBJECTS_PREFIX) - 1;
    if (strncmp(path, API_SUBJECTS_PREFIX, plen) != 0)
        return -1;
    const char *t = path + plen;
    const char *s1 = strchr(t, '/');
    if (!s1)
        return -1;
    const char *i = s1 + 1;
    const char *s2 = strchr(i, '/');
    if (!s2 || strcmp(s2 + 1, API_MEASURES_SUFFIX) != 0)
        return -1;
    *type = t;
    *type_len = (size_t)(s1 - t);
    *id = i;
    *id_len = (size_t)(s2 - i);
    return 0;
}

gateway_route_t gateway_api_route(const char *path)
{
    if (!path)
        return GATEWAY_ROUTE_NONE;
    for (int r = 1; r < GATEWAY_ROUTE_COUNT; r++)
        if (api_routes[r].path && strcmp(path, api_routes[r].path) == 0)
            return (gateway_route_t)r;
    const char *t, *i;
    size_t tl, il;
    if (api_subject_segments(path, &t, &tl, &i, &il) == 0)
        return GATEWAY_ROUTE_MEASURES;
    /* The other reports share the effects list's route (scope, metrics label). */
    if (!strcmp(path, "/v1/reports/subjects") || !strcmp(path, "/v1/reports/measures"))
        return GATEWAY_ROUTE_REPORTS;
    return GATEWAY_ROUTE_NONE;
}

const char *gateway_api_route_name(gateway_route_t route)
{
    return route > 0 && route < GATEWAY_ROUTE_COUNT ? api_routes[route].name : "none";
}

const char *gateway_api_route_method(gateway_route_t route)
{
    return route > 0 && route < GATEWAY_ROUTE_COUNT ? api_routes[route].method : "GET";
}

int gateway_api_route_is_ops(gateway_route_t route)
{
    return route == GATEWAY_ROUTE_HEALTHZ || route == GATEWAY_ROUTE_READYZ ||
           route == GATEWAY_ROUTE_METRICS;
}

int gateway_api_method_allowed(gateway_route_t route, const char *method)
{
    if (!method)
        return 0;
    if (strcmp(method, gateway_api_route_method(route)) == 0)
        return 1;
    /* HEAD is a GET without the body: harmless on the ops routes. Not on the credit check,
     * where every answer is recorded. */
    return gateway_api_route_is_ops(route) && strcmp(method, "HEAD") == 0;
}

/* ---- scopes -------------------------------------------------------------------------------- */

static const struct {
    const char *name;
    unsigned bit;
} api_scopes[] = {
    {"events:write", GATEWAY_SCOPE_EVENTS_WRITE},
    {"check:read", GATEWAY_SCOPE_CHECK_READ},
    {"feedback:write", GATEWAY_SCOPE_FEEDBACK_WRITE},
    {"admin", GATEWAY_SCOPE_ADMIN},
};

unsigned gateway_api_scope_bit(const char *name, size_t len)
{
    for (size_t i = 0; i < sizeof(api_scopes) / sizeof(api_scopes[0]); i++)
        if (strlen(api_scopes[i].name) == len && memcmp(api_scopes[i].name, name, len) == 0)
            return api_scopes[i].bit;
    return 0;
}

const char *gateway_api_scope_name(unsigned bit)
{
    for (size_t i = 0; i < sizeof(api_scopes) / sizeof(api_scopes[0]); i++)
        if (api_scopes[i].bit == bit)
            return api_scopes[i].name;
    return "";
}

unsigned gateway_api_scopes_parse(const char *list)
{
    unsigned bits = 0;
    const char *p = list ? list : "";
    while (*p) {
        size_t skip = strspn(p, " ,");
        p += skip;
        size_t n = strcspn(p, " ,");
        if (n)
            bits |= gateway_api_scope_bit(p, n);
        p += n;
    }
    return bits;
}

const char *gateway_api_scopes_format(unsigned scopes, char *buf, size_t size)
{
    size_t o = 0;
    if (size)
        buf[0] = '\0';
    for (size_t i = 0; i < sizeof(api_scopes) / sizeof(api_scopes[0]); i++) {
        if (!(scopes & api_scopes[i].bit))
            continue;
        int n = snprintf(buf + o, size - o, "%s%s", o ? " " : "", api_scopes[i].name);
        if (n < 0 || (size_t)n >= size - o)
            break;
        o += (size_t)n;
    }
    return buf;
}

unsigned gateway_api_route_scope(gateway_route_t route)
{
    return route > 0 && route < GATEWAY_ROUTE_COUNT ? api_routes[route].scope : 0;
}

/* ---- headers ------------------------------------------------------------------------------- */

static int api_is_b64token_char(unsigned char ch)
{
    return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
           ch == '-' || ch == '.' || ch == '_' || ch == '~' || ch == '+' || ch == '/';
}

int gateway_api_bearer(const char *header, const char **token, size_t *len)
{
    if (!header)
        return -1;
    const char *p = header + strspn(header, " \t");
    if (!*p)
        return -1;
    if (strncasecmp(p, "Bearer", 6) != 0 || (p[6] != ' ' && p[6] != '\t'))
        return -2;
    p += 6;
    p += strspn(p, " \t");
    const char *start = p;
    while (api_is_b64token_char((unsigned char)*p))
        p++;
    if (p == start)
        return -2;
    while (*p == '=')
        p++;
    size_t n = (size_t)(p - start);
    p += strspn(p, " \t");
    if (*p || n > GATEWAY_TOKEN_MAX)
        return -2;
    *token = start;
    *len = n;
    return 0;
}

static int api_lower_hex(const char *s, size_t n)
{
    int nonzero = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            return -1;
        nonzero |= c != '0';
    }
    return nonzero;
}

int gateway_api_traceparent_valid(const char *s)
{
    /* version 00: "00-" trace-id(32) "-" parent-id(16) "-" flags(2), 55 characters. */
    if (!s || strlen(s) != 55 || s[2] != '-' || s[35] != '-' || s[52] != '-')
        return 0;
    if (strncmp(s, "00", 2) != 0)
        return 0;
    return api_lower_hex(s + 3, 32) == 1 && api_lower_hex(s + 36, 16) == 1 &&
           api_lower_hex(s + 53, 2) >= 0;
}

/* ---- text checks --------------------------------------------------------------------------- */

int gateway_api_query_value(const char *value, int decoded_len, const char *field, size_t max,
                            int department, errlist_t *el)
{
    if (decoded_len < 0) {
        (void)errlist_add(el, NULL, field, "bad_format",
                          "query parameter \"%s\" is badly percent-encoded or longer than %zu "
                          "bytes",
                          field, max);
        return 400;
    }
    size_t n = (size_t)decoded_len;
    if (n > max) {
        (void)errlist_add(el, NULL, field, "too_long",
                          "query parameter \"%s\" is %zu bytes long; at most %zu are allowed",
                          field, n, max);
        return 400;
    }
    if (department) {
        if (!ids_is_department(value)) {
            (void)errlist_add(el, NULL, field, "bad_format",
                              "query parameter \"%s\" must be a department code "
                              "([a-z][a-z0-9_]{1,31}, e.g. transport)",
                              field);
            return 400;
        }
        return 0;
    }
    if (!utf8_valid(value, n)) {
        (void)errlist_add(el, NULL, field, "bad_utf8", "query parameter \"%s\" is not valid UTF-8",
                          field);
        return 400;
    }
    for (size_t i = 0; i < n; i++) {
        if ((unsigned char)value[i] < 0x20 || value[i] == 0x7F) {
            (void)errlist_add(el, NULL, field, "bad_char",
                              "query parameter \"%s\" holds a control character", field);
            return 400;
        }
    }
    return 0;
}

/* ---- bodies -------------------------------------------------------------------------------- */

/* The body as JSON, or NULL with one error (bad_json, bad_utf8, ...) in el. */
static json_t *api_load(const char *body, size_t len, const char *what, errlist_t *el)
{
    if (!body || len == 0) {
        (void)errlist_add(el, NULL, "", "bad_json", "the request body is empty: send %s", what);
        return NULL;
    }
    json_error_t jerr;
    /*
     * As the codec reads text: JSON_DECODE_ANY so that a bare string or number is reported as
     * the wrong type rather than as a syntax error; JSON_ALLOW_NUL so that "\u0000" reaches pbjson
     * and is reported at its field.
     */
    json_t *json =
        json_loadb(body, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
    if (json)
        return json;
    const char *code = "bad_json";
    switch (json_error_code(&jerr)) {
    case json_error_invalid_utf8:
        code = "bad_utf8";
        break;
    case json_error_numeric_overflow:
        code = "out_of_range";
        break;
    case json_error_out_of_memory:
        code = "no_memory";
        break;
    default:
        break;
    }
    (void)errlist_add(el, NULL, "", code,
                      "the request body is not valid JSON: %s (line %d, column %d)", jerr.text,
                      jerr.line, jerr.column);
    return NULL;
}

static const char *api_json_type(const json_t *j)
{
    switch (json_typeof(j)) {
    case JSON_OBJECT:
        return "an object";
    case JSON_ARRAY:
        return "an array";
    case JSON_STRING:
        return "a string";
    case JSON_INTEGER:
    case JSON_REAL:
        return "a number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "a boolean";
    default:
        return "null";
    }
}

void gateway_api_events_free(Jrp__V1__CreditEvent **events, size_t n)
{
    if (!events)
        return;
    for (size_t i = 0; i < n; i++)
        if (events[i])
            jrp__v1__credit_event__free_unpacked(events[i], NULL);
    free(events);
}

int gateway_api_events_decode(const char *body, size_t len, size_t max_events,
                              Jrp__V1__CreditEvent ***events, size_t *n, int *batch, errlist_t *el)
{
    static const char what[] = "one event, or {\"events\": [...]}";
    *events = NULL;
    *n = 0;
    *batch = 0;
    json_t *root = api_load(body, len, what, el);
    if (!root)
        return 400;
    int status = 400;
    Jrp__V1__CreditEvent **out = NULL;
    size_t count = 0;
    if (!json_is_object(root)) {
        (void)errlist_add(el, NULL, "", "wrong_type", "the request body must be %s; got %s", what,
                          api_json_type(root));
        goto done;
    }
    json_t *list = json_object_get(root, "events");
    if (!list) {
        /* One event. */
        Jrp__V1__CreditEvent *ev = codec_event_from_json(root, NULL, el);
        if (!ev) {
            if (el->count == 0)
                (void)errlist_add(el, NULL, "", "bad_format", "the event is not valid");
            goto done;
        }
        out = malloc(sizeof(*out));
        if (!out) {
            jrp__v1__credit_event__free_unpacked(ev, NULL);
            (void)errlist_add(el, NULL, "", "no_memory", "out of memory");
            status = 500;
            goto done;
        }
        out[0] = ev;
        count = 1;
        status = 0;
        goto done;
    }
    *batch = 1;
    /* A batch: nothing but "events", an array of 1..max_events events. */
    const char *key;
    json_t *value;
    size_t before = el->count;
    json_object_foreach(root, key, value)
    {
        if (strcmp(key, "events") != 0)
            (void)errlist_add(el, NULL, key, "unknown_field",
                              "a batch has no field \"%s\"; it is {\"events\": [...]}", key);
    }
    if (!json_is_array(list)) {
        (void)errlist_add(el, NULL, "events", "wrong_type",
                          "field \"events\" must be a JSON array of events; got %s",
                          api_json_type(list));
        goto done;
    }
    size_t total = json_array_size(list);
    if (total == 0) {
        (void)errlist_add(el, NULL, "events", "missing_field",
                          "field \"events\" must hold at least one event");
        goto done;
    }
    if (total > max_events) {
        (void)errlist_add(el, NULL, "events", "too_many_events",
                          "a batch holds at most %zu events; this one has %zu: split it",
                          max_events, total);
        status = 413;
        goto done;
    }
    out = calloc(total, sizeof(*out));
    if (!out) {
        (void)errlist_add(el, NULL, "", "no_memory", "out of memory");
        status = 500;
        goto done;
    }
    size_t bad = el->count > before;
    for (size_t i = 0; i < total; i++) {
        char prefix[32];
        snprintf(prefix, sizeof(prefix), "events[%zu]", i);
        size_t errs = el->count;
        out[i] = codec_event_from_json(json_array_get(list, i), prefix, el);
        if (!out[i]) {
            bad = 1;
            if (el->count == errs)
                (void)errlist_add(el, NULL, prefix, "bad_format", "the event is not valid");
        }
    }
    count = total;
    status = bad ? 400 : 0;
done:
    json_decref(root);
    if (status != 0) {
        gateway_api_events_free(out, count);
        return status;
    }
    *events = out;
    *n = count;
    return 0;
}

int gateway_api_feedback_decode(const char *body, size_t len, Jrp__V1__Feedback **out,
                                errlist_t *el)
{
    *out = NULL;
    json_t *root = api_load(body, len, "one feedback object", el);
    if (!root)
        return 400;
    int status = 400;
    if (!json_is_object(root)) {
        (void)errlist_add(el, NULL, "", "wrong_type",
                          "the request body must be one feedback object; got %s",
                          api_json_type(root));
    } else {
        size_t errs = el->count;
        *out = codec_feedback_from_json(root, NULL, el);
        if (*out)
            status = 0;
        else if (el->count == errs)
            (void)errlist_add(el, NULL, "", "bad_format", "the feedback is not valid");
    }
    json_decref(root);
    return status;
}

/* ---- the subject of a credit check --------------------------------------------------------- */

int gateway_api_subject(const char *path, ids_subject_type_t *type, char *id, size_t id_size,
                        errlist_t *el)
{
    const char *t, *i;
    size_t tl, il;
    char tbuf[64], reason[256];
    if (!path || api_subject_segments(path, &t, &tl, &i, &il) != 0) {
        (void)errlist_add(el, NULL, "", "not_found",
                          "the credit check is /v1/subjects/{type}/{id}/measures");
        return 400;
    }
    int status = 0;
    *type = IDS_SUBJECT_UNKNOWN;
    if (tl == 0) {
        (void)errlist_add(el, NULL, "subject.type", "missing_field",
                          "the subject type is missing from the path: enterprise, person or "
                          "vehicle");
        status = 400;
    } else if (http_path_segment_decode(t, tl, tbuf, sizeof(tbuf)) < 0 ||
               (*type = ids_subject_type_parse(tbuf)) == IDS_SUBJECT_UNKNOWN) {
        (void)errlist_add(el, NULL, "subject.type", "bad_enum",
                          "the subject type must be one of enterprise, person, vehicle (or "
                          "SUBJECT_TYPE_ENTERPRISE, ...)");
        status = 400;
    }
    if (il == 0) {
        (void)errlist_add(el, NULL, "subject.id", "missing_field",
                          "the subject id is missing from the path");
        return 400;
    }
    /* Decoded, an id is at most as long as its encoding: decode into room for the whole. */
    char raw[3 * GATEWAY_SUBJECT_ID_MAX + 1];
    id[0] = '\0';
    if (id_size < GATEWAY_SUBJECT_ID_MAX + 1 || il >= sizeof(raw)) {
        (void)errlist_add(el, NULL, "subject.id", "too_long",
                          "the subject id is longer than %d bytes", GATEWAY_SUBJECT_ID_MAX);
        return 400;
    }
    int dl = http_path_segment_decode(i, il, raw, sizeof(raw));
    if (dl < 0) {
        (void)errlist_add(el, NULL, "subject.id", "bad_path",
                          "the subject id must be one path segment, percent-encoded as needed; "
                          "'/', \"%%2F\", NUL, \".\" and \"..\" are refused");
        return 400;
    }
    if (dl > GATEWAY_SUBJECT_ID_MAX) {
        (void)errlist_add(el, NULL, "subject.id", "too_long",
                          "the subject id is longer than %d bytes", GATEWAY_SUBJECT_ID_MAX);
        return 400;
    }
    memcpy(id, raw, (size_t)dl + 1);
    if (status)
        return status;
    const char *code = NULL;
    reason[0] = '\0';
    if (ids_check_subject(*type, id, &code, reason, sizeof(reason)) != 0) {
        (void)errlist_add(el, NULL, "subject.id", code ? code : "bad_format",
                          "the subject id is not a valid %s id: %s", ids_subject_type_name(*type),
                          reason);
        return 400;
    }
    return 0;
}

/* ---- canonical JSON, written directly ------------------------------------------------------- */

typedef struct api_buf_s {
    char *p;
    size_t len, cap;
    int failed;
} api_buf_t;

static void api_put(api_buf_t *b, const char *s, size_t n)
{
    if (b->failed)
        return;
    if (n + 1 > b->cap - b->len) {
        size_t cap = b->cap ? b->cap : 1024;
        while (n + 1 > cap - b->len)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->failed = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void api_putc(api_buf_t *b, char c)
{
    api_put(b, &c, 1);
}

/* A JSON string: '"' and '\\' escaped, control characters as jansson writes them, bad UTF-8 as
 * U+FFFD (as pbjson does). */
static void api_put_str(api_buf_t *b, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *u = (const unsigned char *)(s ? s : "");
    size_t n = strlen((const char *)u), i = 0, run = 0;
    api_putc(b, '"');
    while (i < n) {
        unsigned char c = u[i];
        if (c >= 0x20 && c != '"' && c != '\\' && c < 0x80) {
            run++;
            i++;
            continue;
        }
        api_put(b, (const char *)u + i - run, run);
        run = 0;
        if (c >= 0x80) {
            size_t k = utf8_seq_len(u + i, n - i);
            if (k) {
                api_put(b, (const char *)u + i, k);
                i += k;
            } else {
                api_put(b, "\xEF\xBF\xBD", 3);
                i++;
            }
            continue;
        }
        char esc[7] = {'\\', 0, 0, 0, 0, 0, 0};
        size_t el = 2;
        switch (c) {
        case '"':
            esc[1] = '"';
            break;
        case '\\':
            esc[1] = '\\';
            break;
        case '\b':
            esc[1] = 'b';
            break;
        case '\f':
            esc[1] = 'f';
            break;
        case '\n':
            esc[1] = 'n';
            break;
        case '\r':
            esc[1] = 'r';
            break;
        case '\t':
            esc[1] = 't';
            break;
        default:
            memcpy(esc + 1, "u00", 3);
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 15];
            el = 6;
            break;
        }
        api_put(b, esc, el);
        i++;
    }
    api_put(b, (const char *)u + i - run, run);
    api_putc(b, '"');
}

static void api_put_i64(api_buf_t *b, int64_t v, int quoted)
{
    char buf[24];
    int n = snprintf(buf, sizeof(buf), quoted ? "\"%lld\"" : "%lld", (long long)v);
    api_put(b, buf, (size_t)n);
}

static void api_put_u64(api_buf_t *b, uint64_t v, int quoted)
{
    char buf[24];
    int n = snprintf(buf, sizeof(buf), quoted ? "\"%llu\"" : "%llu", (unsigned long long)v);
    api_put(b, buf, (size_t)n);
}

/* A repeated field written from text made earlier (gateway_api_json_splice). */
typedef struct api_splice_s {
    const char *field;
    const char *text;
    size_t len;
} api_splice_t;

static int api_put_message(api_buf_t *b, const ProtobufCMessage *msg, int empty_lists,
                           const api_splice_t *splice);

/* One value of field f at p. 0, or -1 for a type this writer leaves to pbjson. */
static int api_put_value(api_buf_t *b, const ProtobufCFieldDescriptor *f, const void *p,
                         int empty_lists)
{
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
        api_put_i64(b, *(const int32_t *)p, 0);
        return 0;
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        api_put_u64(b, *(const uint32_t *)p, 0);
        return 0;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        api_put_i64(b, *(const int64_t *)p, 1);
        return 0;
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        api_put_u64(b, *(const uint64_t *)p, 1);
        return 0;
    case PROTOBUF_C_TYPE_BOOL:
        api_put(b, *(const protobuf_c_boolean *)p ? "true" : "false",
                *(const protobuf_c_boolean *)p ? 4 : 5);
        return 0;
    case PROTOBUF_C_TYPE_ENUM: {
        int v = *(const int *)p;
        const ProtobufCEnumValue *ev = protobuf_c_enum_descriptor_get_value(f->descriptor, v);
        if (ev)
            api_put_str(b, ev->name);
        else
            api_put_i64(b, v, 0);
        return 0;
    }
    case PROTOBUF_C_TYPE_STRING:
        api_put_str(b, *(char *const *)p);
        return 0;
    case PROTOBUF_C_TYPE_MESSAGE: {
        const ProtobufCMessage *m = *(ProtobufCMessage *const *)p;
        if (!m) {
            api_put(b, "null", 4);
            return 0;
        }
        return api_put_message(b, m, empty_lists, NULL);
    }
    default:
        return -1;
    }
}

static size_t api_type_size(ProtobufCType t)
{
    switch (t) {
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        return 8;
    case PROTOBUF_C_TYPE_BOOL:
        return sizeof(protobuf_c_boolean);
    case PROTOBUF_C_TYPE_ENUM:
        return sizeof(int);
    case PROTOBUF_C_TYPE_STRING:
        return sizeof(char *);
    case PROTOBUF_C_TYPE_MESSAGE:
        return sizeof(ProtobufCMessage *);
    default:
        return 4;
    }
}

static int api_put_message(api_buf_t *b, const ProtobufCMessage *msg, int empty_lists,
                           const api_splice_t *splice)
{
    const ProtobufCMessageDescriptor *desc = msg->descriptor;
    const char *base = (const char *)msg;
    int first = 1;
    api_putc(b, '{');
    for (unsigned i = 0; i < desc->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &desc->fields[i];
        const void *p = base + f->offset;
        if ((f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) || f->type == PROTOBUF_C_TYPE_BYTES ||
            f->type == PROTOBUF_C_TYPE_FLOAT || f->type == PROTOBUF_C_TYPE_DOUBLE ||
            (f->label != PROTOBUF_C_LABEL_NONE && f->label != PROTOBUF_C_LABEL_REPEATED))
            return -1;
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            size_t n = *(const size_t *)(base + f->quantifier_offset);
            const char *arr = *(const char *const *)p;
            if (!arr)
                n = 0;
            if (f->type == PROTOBUF_C_TYPE_MESSAGE) {
                /* A map is a repeated "...Entry" message: pbjson writes an object; not here. */
                const ProtobufCMessageDescriptor *ed = f->descriptor;
                size_t nl = ed->short_name ? strlen(ed->short_name) : 0;
                if (nl >= 5 && strcmp(ed->short_name + nl - 5, "Entry") == 0)
                    return -1;
            }
            if (splice && strcmp(f->name, splice->field) == 0) {
                if (n)
                    return -1; /* the field's value is the spliced text, not its own */
                api_put(b, first ? "\"" : ",\"", first ? 1 : 2);
                api_put(b, f->name, strlen(f->name));
                api_put(b, "\":", 2);
                api_put(b, splice->text, splice->len);
                first = 0;
                continue;
            }
            if (n == 0 && !empty_lists)
                continue;
            api_put(b, first ? "\"" : ",\"", first ? 1 : 2);
            api_put(b, f->name, strlen(f->name));
            api_put(b, "\":[", 3);
            size_t es = api_type_size(f->type);
            for (size_t k = 0; k < n; k++) {
                if (k)
                    api_putc(b, ',');
                if (api_put_value(b, f, arr + k * es, empty_lists))
                    return -1;
            }
            api_putc(b, ']');
            first = 0;
            continue;
        }
        /* Implicit presence: written unless at its zero value. */
        int zero;
        if (f->type == PROTOBUF_C_TYPE_STRING) {
            const char *sv = *(char *const *)p;
            zero = !sv || !sv[0];
        } else if (f->type == PROTOBUF_C_TYPE_MESSAGE) {
            zero = *(ProtobufCMessage *const *)p == NULL;
        } else {
            static const unsigned char zeros[8];
            zero = memcmp(p, zeros, api_type_size(f->type)) == 0;
        }
        if (zero)
            continue;
        api_put(b, first ? "\"" : ",\"", first ? 1 : 2);
        api_put(b, f->name, strlen(f->name));
        api_put(b, "\":", 2);
        if (api_put_value(b, f, p, empty_lists))
            return -1;
        first = 0;
    }
    api_putc(b, '}');
    return 0;
}

char *gateway_api_json(const ProtobufCMessage *msg, int empty_lists, size_t *len)
{
    api_buf_t b = {NULL, 0, 0, 0};
    if (!msg || !msg->descriptor || api_put_message(&b, msg, empty_lists, NULL) != 0 || b.failed) {
        free(b.p);
        return NULL;
    }
    if (len)
        *len = b.len;
    return b.p;
}

char *gateway_api_json_list(const ProtobufCMessage *const *msgs, size_t n, int empty_lists,
                            size_t *len)
{
    api_buf_t b = {NULL, 0, 0, 0};
    api_putc(&b, '[');
    for (size_t i = 0; i < n; i++) {
        if (i)
            api_putc(&b, ',');
        if (!msgs[i] || !msgs[i]->descriptor ||
            api_put_message(&b, msgs[i], empty_lists, NULL) != 0) {
            free(b.p);
            return NULL;
        }
    }
    api_putc(&b, ']');
    if (b.failed) {
        free(b.p);
        return NULL;
    }
    if (len)
        *len = b.len;
    return b.p;
}

char *gateway_api_json_splice(const ProtobufCMessage *msg, const char *field, const char *text,
                              size_t text_len, int empty_lists, size_t *len)
{
    api_splice_t sp = {field, text, text_len};
    /* One allocation in the usual case: the message's own fields are short beside the text. */
    api_buf_t b = {malloc(text_len + 512), 0, text_len + 512, 0};
    if (!b.p || !msg || !msg->descriptor || api_put_message(&b, msg, empty_lists, &sp) != 0 ||
        b.failed) {
        free(b.p);
        return NULL;
    }
    if (len)
        *len = b.len;
    return b.p;
}

/* ---- protobuf, spliced ---------------------------------------------------------------------- */

static size_t api_varint(uint64_t v, uint8_t *out)
{
    size_t n = 0;
    do {
        uint8_t c = v & 0x7f;
        v >>= 7;
        out[n++] = c | (v ? 0x80 : 0);
    } while (v);
    return n;
}

/* Read a varint at p[0..end); its length, or 0 if it does not fit. */
static size_t api_varint_read(const uint8_t *p, const uint8_t *end, uint64_t *v)
{
    *v = 0;
    for (size_t n = 0; n < 10 && p + n < end; n++) {
        *v |= (uint64_t)(p[n] & 0x7f) << (7 * n);
        if (!(p[n] & 0x80))
            return n + 1;
    }
    return 0;
}

uint8_t *gateway_api_pack_repeated(uint32_t field, const ProtobufCMessage *const *msgs, size_t n,
                                   size_t *len)
{
    uint8_t head[20];
    size_t total = 0;
    size_t tag_len = api_varint(((uint64_t)field << 3) | 2, head);
    for (size_t i = 0; i < n; i++) {
        size_t ml = protobuf_c_message_get_packed_size(msgs[i]);
        total += tag_len + api_varint(ml, head + tag_len) + ml;
    }
    uint8_t *out = malloc(total ? total : 1), *p = out;
    if (!out)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        size_t ml = protobuf_c_message_get_packed_size(msgs[i]);
        p += api_varint(((uint64_t)field << 3) | 2, p);
        p += api_varint(ml, p);
        p += protobuf_c_message_pack(msgs[i], p);
    }
    *len = total;
    return out;
}

uint8_t *gateway_api_pack_splice(const ProtobufCMessage *msg, uint32_t field, const uint8_t *raw,
                                 size_t raw_len, size_t *len)
{
    size_t ml = protobuf_c_message_get_packed_size(msg);
    uint8_t *out = malloc(ml + raw_len + 1);
    if (!out)
        return NULL;
    protobuf_c_message_pack(msg, out);
    /* Where the field belongs: before the first top-level field numbered above it. */
    const uint8_t *p = out, *end = out + ml;
    while (p < end) {
        uint64_t tag, v;
        size_t k = api_varint_read(p, end, &tag);
        if (!k)
            goto bad;
        if ((tag >> 3) > field)
            break;
        const uint8_t *q = p + k;
        switch (tag & 7) {
        case 0:
            k = api_varint_read(q, end, &v);
            if (!k)
                goto bad;
            q += k;
            break;
        case 1:
            q += 8;
            break;
        case 2:
            k = api_varint_read(q, end, &v);
            if (!k || v > (uint64_t)(end - q - k))
                goto bad;
            q += k + v;
            break;
        case 5:
            q += 4;
            break;
        default:
            goto bad;
        }
        if (q > end)
            goto bad;
        p = q;
    }
    size_t at = (size_t)(p - out);
    memmove(out + at + raw_len, out + at, ml - at);
    if (raw_len)
        memcpy(out + at, raw, raw_len);
    *len = ml + raw_len;
    return out;
bad: /* protobuf-c wrote it: cannot happen */
    free(out);
    return NULL;
}

/* ---- errors -------------------------------------------------------------------------------- */

/* A JSON string of s; bytes that are not UTF-8 (none should reach here) become '?'. */
static json_t *api_json_str(const char *s)
{
    json_t *j = json_string(s ? s : "");
    if (j)
        return j;
    size_t n = strlen(s);
    char *copy = malloc(n + 1);
    if (!copy)
        return NULL;
    const unsigned char *u = (const unsigned char *)s;
    for (size_t k = 0; k < n; k++)
        copy[k] = u[k] < 0x80 && u[k] >= 0x20 ? (char)u[k] : '?';
    copy[n] = '\0';
    j = json_string(copy);
    free(copy);
    return j;
}

static json_t *api_error_object(const char *code, const char *message, const char *field)
{
    json_t *o = json_object();
    if (!o)
        return NULL;
    if (json_object_set_new(o, "code", api_json_str(code)) ||
        json_object_set_new(o, "message", api_json_str(message)) ||
        (field && field[0] && json_object_set_new(o, "field", api_json_str(field)))) {
        json_decref(o);
        return NULL;
    }
    return o;
}

static char *api_dump(json_t *root, size_t *len)
{
    char *text = root ? json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(root);
    if (text && len)
        *len = strlen(text);
    return text;
}

char *gateway_api_error1(const char *code, const char *message, const char *field, size_t *len)
{
    json_t *root = json_object();
    if (!root || json_object_set_new(root, "error", api_error_object(code, message, field))) {
        json_decref(root);
        return NULL;
    }
    return api_dump(root, len);
}

char *gateway_api_error_body(const errlist_t *el, size_t *len)
{
    if (!el || el->count == 0)
        return gateway_api_error1("bad_request", "the request is not valid", NULL, len);
    const errlist_item_t *first = &el->items[0];
    json_t *root = json_object();
    if (!root || json_object_set_new(root, "error",
                                     api_error_object(first->code, first->message, first->path))) {
        json_decref(root);
        return NULL;
    }
    if (el->count > 1) {
        json_t *all = json_array();
        if (!all || json_object_set_new(root, "errors", all)) {
            json_decref(root);
            return NULL;
        }
        for (size_t i = 0; i < el->count; i++) {
            const errlist_item_t *it = &el->items[i];
            if (json_array_append_new(all, api_error_object(it->code, it->message, it->path))) {
                json_decref(root);
                return NULL;
            }
        }
    }
    return api_dump(root, len);
}
