/*
 * libFuzzer target for the decoders that face the outside: credit events as JSON text and as
 * protobuf bytes, actions and feedback as JSON, and pbjson on any JSON for every other jrp.v1
 * message. Besides not crashing or leaking, whatever is accepted must survive a round trip
 * through JSON unchanged; a broken round trip aborts so that libFuzzer keeps the input.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "jrp/v1/alert.pb-c.h"
#include "jrp/v1/check.pb-c.h"
#include "jrp/v1/decision.pb-c.h"
#include "jrp/v1/rules.pb-c.h"
#include "jrp/v1/state.pb-c.h"
#include "pbjson.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void die(const char *what)
{
    fprintf(stderr, "fuzz_codec: %s\n", what);
    abort();
}

static int same_bytes(const ProtobufCMessage *a, const ProtobufCMessage *b)
{
    size_t la = protobuf_c_message_get_packed_size(a);
    size_t lb = protobuf_c_message_get_packed_size(b);
    if (la != lb)
        return 0;
    uint8_t *pa = malloc(la + 1), *pb = malloc(lb + 1);
    if (!pa || !pb)
        die("out of memory");
    int same = protobuf_c_message_pack(a, pa) == la && protobuf_c_message_pack(b, pb) == lb &&
               memcmp(pa, pb, la) == 0;
    free(pa);
    free(pb);
    return same;
}

/* An accepted event, printed and read back, is accepted again and prints the same. */
static void event_round_trip(const Jrp__V1__CreditEvent *ev)
{
    errlist_t el;
    errlist_init(&el);
    json_t *j = codec_event_to_json(ev);
    if (!j)
        die("an accepted event does not encode");
    char *text = json_dumps(j, JSON_COMPACT);
    if (!text)
        die("out of memory");
    Jrp__V1__CreditEvent *again = codec_event_from_text(text, strlen(text), &el);
    if (!again)
        die("an accepted event, re-encoded, is refused");
    json_t *j2 = codec_event_to_json(again);
    if (!j2 || !json_equal(j, j2))
        die("an accepted event changes in a JSON round trip");
    json_decref(j2);
    jrp__v1__credit_event__free_unpacked(again, NULL);
    free(text);
    json_decref(j);
    errlist_clear(&el);
}

static const ProtobufCMessageDescriptor *const descriptors[] = {
    &jrp__v1__credit_event__descriptor,  &jrp__v1__action__descriptor,
    &jrp__v1__feedback__descriptor,      &jrp__v1__decision__descriptor,
    &jrp__v1__subject_state__descriptor, &jrp__v1__rule_set__descriptor,
    &jrp__v1__alert__descriptor,         &jrp__v1__check_record__descriptor,
};

/* Any JSON against every message: what decodes must encode and decode to the same bytes. */
static void generic_round_trips(const json_t *j)
{
    for (size_t i = 0; i < sizeof(descriptors) / sizeof(descriptors[0]); i++) {
        errlist_t el;
        errlist_init(&el);
        size_t nerr = 0;
        ProtobufCMessage *part = pbjson_decode_partial(descriptors[i], j, "x", 64, &el, &nerr);
        if (part)
            protobuf_c_message_free_unpacked(part, NULL);
        errlist_clear(&el);

        ProtobufCMessage *m = pbjson_decode(descriptors[i], j, NULL, 0, &el);
        if (m) {
            json_t *out = pbjson_encode(m, (int)(i & 1));
            if (!out)
                die("a decoded message does not encode");
            ProtobufCMessage *back = pbjson_decode(descriptors[i], out, NULL, 0, &el);
            if (!back || !same_bytes(m, back))
                die("a decoded message changes in a JSON round trip");
            protobuf_c_message_free_unpacked(back, NULL);
            json_decref(out);
            protobuf_c_message_free_unpacked(m, NULL);
        }
        errlist_clear(&el);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    errlist_t el;
    errlist_init(&el);

    Jrp__V1__CreditEvent *ev = codec_event_from_text((const char *)data, size, &el);
    if (ev) {
        event_round_trip(ev);
        jrp__v1__credit_event__free_unpacked(ev, NULL);
    } else if (el.count == 0) {
        die("an event was refused without a reason");
    }
    errlist_clear(&el);

    ev = codec_event_unpack(data, size, &el);
    if (ev) {
        event_round_trip(ev);
        jrp__v1__credit_event__free_unpacked(ev, NULL);
    } else if (el.count == 0) {
        die("protobuf bytes were refused without a reason");
    }
    errlist_clear(&el);

    json_t *j = json_loadb((const char *)data, size,
                           JSON_DECODE_ANY | JSON_ALLOW_NUL | JSON_REJECT_DUPLICATES, NULL);
    if (j) {
        Jrp__V1__Action *ac = codec_action_from_json(j, "a", &el);
        if (ac)
            jrp__v1__action__free_unpacked(ac, NULL);
        errlist_clear(&el);
        Jrp__V1__Feedback *fb = codec_feedback_from_json(j, NULL, &el);
        if (fb)
            jrp__v1__feedback__free_unpacked(fb, NULL);
        errlist_clear(&el);
        generic_round_trips(j);
        json_decref(j);
    }
    return 0;
}
