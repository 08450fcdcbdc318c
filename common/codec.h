/*
 * codec: the messages of the public contract checked for meaning, not just shape. Decodes
 * CreditEvent, Action and Feedback from JSON (through pbjson) and validates them and their
 * protobuf form (identifier check characters, codes, required fields per event kind), listing
 * every problem by field path. The engine and the gateway use the same checks.
 */
#ifndef JRP_CODEC_H
#define JRP_CODEC_H

#include <jansson.h>
#include <stddef.h>

#include "errlist.h"
#include "jrp/v1/action.pb-c.h"
#include "jrp/v1/event.pb-c.h"
#include "jrp/v1/feedback.pb-c.h"

/* Longest accepted string field, in bytes (ids, names, texts). */
#define CODEC_MAX_STRING 4096

/*
 * Validate a decoded event; appends one error per problem (path prefixed by prefix, e.g.
 * "events[2]") and returns 0 if valid, -1 if not.
 */
int codec_event_validate(const Jrp__V1__CreditEvent *ev, const char *prefix, errlist_t *el);
int codec_action_validate(const Jrp__V1__Action *ac, const char *prefix, errlist_t *el);
int codec_feedback_validate(const Jrp__V1__Feedback *fb, const char *prefix, errlist_t *el);

/*
 * Decode and validate from JSON. Return a new message (free with the matching
 * jrp__v1__*__free_unpacked(msg, NULL)) or NULL with every error in el.
 */
Jrp__V1__CreditEvent *codec_event_from_json(const json_t *json, const char *prefix, errlist_t *el);
Jrp__V1__Action *codec_action_from_json(const json_t *json, const char *prefix, errlist_t *el);
Jrp__V1__Feedback *codec_feedback_from_json(const json_t *json, const char *prefix, errlist_t *el);

/* The same from text: a syntax error is reported as code "bad_json" with line and column. */
Jrp__V1__CreditEvent *codec_event_from_text(const char *text, size_t len, errlist_t *el);

/* Decode protobuf bytes and validate; NULL with errors ("decode_failed" for bad bytes). */
Jrp__V1__CreditEvent *codec_event_unpack(const void *buf, size_t len, errlist_t *el);
/* The same with protobuf-c's allocator a (NULL: malloc); free the event with it. */
Jrp__V1__CreditEvent *codec_event_unpack_with(ProtobufCAllocator *a, const void *buf, size_t len,
                                              errlist_t *el);

/* Encode to JSON (canonical mapping); the caller owns the reference. */
json_t *codec_event_to_json(const Jrp__V1__CreditEvent *ev);
json_t *codec_action_to_json(const Jrp__V1__Action *ac);
json_t *codec_feedback_to_json(const Jrp__V1__Feedback *fb);

#endif
