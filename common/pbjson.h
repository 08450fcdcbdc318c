/*
 * pbjson: protobuf-c messages <-> JSON (jansson), driven by the message descriptors, following
 * protobuf's canonical JSON mapping with the proto field names kept (snake_case). Works for every
 * jrp.v1 message, so jrpctl can decode any topic and the HTTP API can read any request.
 */
#ifndef JRP_PBJSON_H
#define JRP_PBJSON_H

#include <jansson.h>
#include <protobuf-c/protobuf-c.h>

#include "errlist.h"

/*
 * Encode msg as a new JSON object (caller owns the reference). Fields holding their default
 * value are omitted, as the canonical mapping does, unless emit_defaults is non-zero. Enums are
 * written as their value names ("EVENT_KIND_LISTED"), int64/uint64 as decimal strings, bytes as
 * base64, maps as JSON objects. Returns NULL only on allocation failure.
 */
json_t *pbjson_encode(const ProtobufCMessage *msg, int emit_defaults);

/*
 * Decode a JSON object into a new message of type desc. On success returns the message (free it
 * with protobuf_c_message_free_unpacked(msg, NULL)). On failure returns NULL and appends one
 * error per problem to el, each with its field path ("subject.id", "events[3].kind" when prefix
 * is "events[3]"): unknown fields, wrong JSON types, unknown enum names, out-of-range integers,
 * strings over max_string bytes (0 = no limit) or not valid UTF-8, bad base64.
 * Accepts enum values as the proto name ("SUBJECT_TYPE_ENTERPRISE"), the short lower-case form
 * ("enterprise": the name without the enum's common prefix, lower-cased) or a number; int64 as
 * JSON integers or decimal strings; null as "field absent".
 */
ProtobufCMessage *pbjson_decode(const ProtobufCMessageDescriptor *desc, const json_t *json,
                                const char *prefix, size_t max_string, errlist_t *el);

/*
 * As pbjson_decode, but a field (or array element, or map entry) that fails is left out and the
 * rest of the message is still returned, so that a caller can check what did decode for meaning
 * and report every problem at once. *nerr (if not NULL) is set to the number of errors appended.
 * Returns NULL (with an error in el) only when json is not an object, or on allocation failure.
 */
ProtobufCMessage *pbjson_decode_partial(const ProtobufCMessageDescriptor *desc, const json_t *json,
                                        const char *prefix, size_t max_string, errlist_t *el,
                                        size_t *nerr);

/* The short lower-case name of an enum value ("listed" for EVENT_KIND_LISTED). Writes into buf. */
const char *pbjson_enum_short_name(const ProtobufCEnumDescriptor *desc, int value, char *buf,
                                   size_t size);

#endif
