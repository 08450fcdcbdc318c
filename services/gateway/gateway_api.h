/*
 * gateway_api: the gateway's HTTP API as pure functions, with no I/O: routes, bearer tokens and
 * scopes, request bodies decoded and validated with the codec the engine uses, the subject in a
 * credit-check path, and the JSON error bodies. The service (gateway.c) and the libFuzzer target
 * (tests/fuzz/fuzz_gateway.c) run exactly this code on every request.
 */
#ifndef JRP_GATEWAY_API_H
#define JRP_GATEWAY_API_H

#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

#include "errlist.h"
#include "ids.h"
#include "jrp/v1/event.pb-c.h"
#include "jrp/v1/feedback.pb-c.h"

/* Every route; GATEWAY_ROUTE_NONE is any path the gateway does not serve (404). */
typedef enum {
    GATEWAY_ROUTE_NONE = 0,
    GATEWAY_ROUTE_EVENTS,   /* POST /v1/events */
    GATEWAY_ROUTE_MEASURES, /* GET /v1/subjects/{type}/{id}/measures */
    GATEWAY_ROUTE_FEEDBACK, /* POST /v1/feedback */
    GATEWAY_ROUTE_REPORTS,  /* GET /v1/reports/effects */
    GATEWAY_ROUTE_HEALTHZ,  /* GET /healthz */
    GATEWAY_ROUTE_READYZ,   /* GET /readyz */
    GATEWAY_ROUTE_METRICS,  /* GET /metrics */
    GATEWAY_ROUTE_COUNT
} gateway_route_t;

/* The route of a path (without its query). */
gateway_route_t gateway_api_route(const char *path);
/* Its label in metrics ("events", "measures", ..., "none"). */
const char *gateway_api_route_name(gateway_route_t route);
/* The method it answers: "POST" or "GET" (the ops routes take HEAD too). */
const char *gateway_api_route_method(gateway_route_t route);
/* Whether method is allowed on route. */
int gateway_api_method_allowed(gateway_route_t route, const char *method);
/* Whether route is an ops route (/healthz, /readyz, /metrics). */
int gateway_api_route_is_ops(gateway_route_t route);

/* Scopes of a token, as bits. GATEWAY_SCOPE_ADMIN implies every other. */
#define GATEWAY_SCOPE_EVENTS_WRITE 0x1u
#define GATEWAY_SCOPE_CHECK_READ 0x2u
#define GATEWAY_SCOPE_FEEDBACK_WRITE 0x4u
#define GATEWAY_SCOPE_ADMIN 0x8u
#define GATEWAY_SCOPES_DEFAULT                                                                     \
    (GATEWAY_SCOPE_EVENTS_WRITE | GATEWAY_SCOPE_CHECK_READ | GATEWAY_SCOPE_FEEDBACK_WRITE)

/* The bit of one scope name ("check:read"), or 0 if unknown. */
unsigned gateway_api_scope_bit(const char *name, size_t len);
/* The bits of a list of names separated by spaces or commas; unknown names are ignored. */
unsigned gateway_api_scopes_parse(const char *list);
/* The names of bits, space-separated, into buf. */
const char *gateway_api_scopes_format(unsigned scopes, char *buf, size_t size);
/* The scope a route needs (0 for the ops routes, which need no token). */
unsigned gateway_api_route_scope(gateway_route_t route);
/* The name of one scope bit ("events:write"). */
const char *gateway_api_scope_name(unsigned bit);

/* Longest bearer token considered (longer ones are refused without hashing). */
#define GATEWAY_TOKEN_MAX 512

/*
 * The token of an Authorization header value "Bearer <token>" (scheme case-insensitive). Returns
 * 0 with *token and *len pointing into header; -1 when header is NULL or empty (no credentials),
 * -2 when it is not a well-formed bearer token (RFC 6750 b64token, at most GATEWAY_TOKEN_MAX).
 */
int gateway_api_bearer(const char *header, const char **token, size_t *len);

/* Whether s is a W3C traceparent ("00-<32 hex>-<16 hex>-<2 hex>", ids not all zero). */
int gateway_api_traceparent_valid(const char *s);

/*
 * Decode the body of POST /v1/events: one event, or {"events": [...]}. Returns 0 with *events (a
 * new array of new events, free with gateway_api_events_free) and *n; otherwise an HTTP status
 * (400, or 413 for more than max_events) with every problem in el, each with its field path
 * ("events[2].subject.id"; no prefix for a single event). *batch says which form was sent.
 */
int gateway_api_events_decode(const char *body, size_t len, size_t max_events,
                              Jrp__V1__CreditEvent ***events, size_t *n, int *batch, errlist_t *el);
void gateway_api_events_free(Jrp__V1__CreditEvent **events, size_t n); /* accepts NULL */

/* Decode the body of POST /v1/feedback (one Feedback). 0 with *out (free with
 * jrp__v1__feedback__free_unpacked), or 400 with every problem in el. */
int gateway_api_feedback_decode(const char *body, size_t len, Jrp__V1__Feedback **out,
                                errlist_t *el);

/* Longest subject id taken from a path, in bytes (decoded). */
#define GATEWAY_SUBJECT_ID_MAX 128

/*
 * The subject of a credit-check path /v1/subjects/{type}/{id}/measures: type as a name or a
 * SUBJECT_TYPE_* name, id percent-decoded (one segment: no '/', '%2F', '.', '..' or NUL) and
 * checked by computation. 0 with *type and id (NUL-terminated, id_size at least
 * GATEWAY_SUBJECT_ID_MAX + 1), or 400 with the problems in el ("subject.type", "subject.id").
 */
int gateway_api_subject(const char *path, ids_subject_type_t *type, char *id, size_t id_size,
                        errlist_t *el);

/*
 * Check a query value decoded from a URL (department, business_item): 0, or 400 with one error
 * at field. max is the longest accepted length in bytes; department says it is a department
 * code.
 */
int gateway_api_query_value(const char *value, int decoded_len, const char *field, size_t max,
                            int department, errlist_t *el);

/*
 * msg as protobuf's canonical JSON, exactly as pbjson_encode(msg, 0) writes it (proto field names,
 * fields at their zero value left out, enums by name, 64-bit integers as decimal strings, bad
 * UTF-8 replaced by U+FFFD), but written straight into one buffer: the credit check's answer is on
 * the hot path, and building a jansson tree for it was most of a check's CPU. With empty_lists,
 * repeated fields are written as [] when empty instead of being left out. Supports implicit-
 * presence (proto3) and repeated fields of integer, bool, enum, string and message types; returns
 * NULL for anything else (maps, bytes, floating point, optional, oneof) or when out of memory, and
 * the caller falls back to pbjson. The result is NUL-terminated; free() it.
 */
char *gateway_api_json(const ProtobufCMessage *msg, int empty_lists, size_t *len);

/* "[m0,m1,...]": each message as gateway_api_json writes it. NULL as gateway_api_json. */
char *gateway_api_json_list(const ProtobufCMessage *const *msgs, size_t n, int empty_lists,
                            size_t *len);

/*
 * gateway_api_json(msg), with the value of the repeated field named field (which must be empty in
 * msg) written as text (len bytes, e.g. from gateway_api_json_list): the credit check's answer
 * from its cached measures. Gives exactly what gateway_api_json gives for msg with those measures.
 */
char *gateway_api_json_splice(const ProtobufCMessage *msg, const char *field, const char *text,
                              size_t text_len, int empty_lists, size_t *len);

/*
 * The wire form of the repeated message field numbered field holding msgs[0..n): each one's tag,
 * length and packed bytes. A new buffer (free(); not NUL-terminated) and its length, or NULL.
 */
uint8_t *gateway_api_pack_repeated(uint32_t field, const ProtobufCMessage *const *msgs, size_t n,
                                   size_t *len);

/*
 * msg packed, with raw (the wire form of field, empty in msg; from gateway_api_pack_repeated)
 * inserted where protobuf-c puts that field: the same bytes as packing msg with the field set.
 * A new buffer (free()) and its length, or NULL when out of memory.
 */
uint8_t *gateway_api_pack_splice(const ProtobufCMessage *msg, uint32_t field, const uint8_t *raw,
                                 size_t raw_len, size_t *len);

/*
 * The JSON error body of the contract: {"error": {"code", "message", "field"}} for the first
 * problem, and, when there are several, "errors": [every one, in order] beside it (field is left
 * out where a problem has no path). Returns a new NUL-terminated string (free()) and its length,
 * or NULL when out of memory.
 */
char *gateway_api_error_body(const errlist_t *el, size_t *len);
/* The same for one problem (field may be NULL). */
char *gateway_api_error1(const char *code, const char *message, const char *field, size_t *len);

#endif
