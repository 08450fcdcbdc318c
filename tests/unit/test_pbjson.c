/*
 * Unit tests for pbjson: every jrp.v1 message survives JSON and back, and each kind of bad input
 * is refused with its code and field path. A hand-written descriptor covers the scalar types
 * (bool, float, unsigned, oneof, optional, int-keyed map) that jrp.v1 itself does not use.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "jrp/v1/action.pb-c.h"
#include "jrp/v1/alert.pb-c.h"
#include "jrp/v1/check.pb-c.h"
#include "jrp/v1/common.pb-c.h"
#include "jrp/v1/decision.pb-c.h"
#include "jrp/v1/event.pb-c.h"
#include "jrp/v1/feedback.pb-c.h"
#include "jrp/v1/rules.pb-c.h"
#include "jrp/v1/state.pb-c.h"
#include "pbjson.h"

/* ---- helpers ------------------------------------------------------------------------------- */

static json_t *parse(const char *text)
{
    json_error_t err;
    json_t *j = json_loads(text, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &err);
    if (!j)
        fail_msg("test JSON does not parse: %s: %s", err.text, text);
    return j;
}

static void dump_errors(const errlist_t *el)
{
    char buf[700];
    for (size_t i = 0; i < el->count; i++) {
        errlist_format(el, i, buf, sizeof(buf));
        print_message("  error %zu: %s\n", i, buf);
    }
}

/* Some error in el has exactly this code and path. */
static void assert_error(const errlist_t *el, const char *code, const char *path)
{
    for (size_t i = 0; i < el->count; i++)
        if (strcmp(el->items[i].code, code) == 0 && strcmp(el->items[i].path, path) == 0)
            return;
    dump_errors(el);
    fail_msg("no error with code %s at path \"%s\"", code, path);
}

/* Two messages are equal when their protobuf encodings are. */
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

/* Decode text as desc; expect failure with exactly one error of code at path. */
static void expect_one_error(const ProtobufCMessageDescriptor *desc, const char *text,
                             const char *code, const char *path)
{
    errlist_t el;
    errlist_init(&el);
    json_t *j = parse(text);
    ProtobufCMessage *m = pbjson_decode(desc, j, NULL, 0, &el);
    if (m)
        protobuf_c_message_free_unpacked(m, NULL);
    assert_null(m);
    if (el.count != 1)
        dump_errors(&el);
    assert_int_equal(el.count, 1);
    assert_error(&el, code, path);
    json_decref(j);
    errlist_clear(&el);
}

/* Decode text that must be valid; the caller frees the message. */
static ProtobufCMessage *decode_ok(const ProtobufCMessageDescriptor *desc, const char *text)
{
    errlist_t el;
    errlist_init(&el);
    json_t *j = parse(text);
    ProtobufCMessage *m = pbjson_decode(desc, j, NULL, 0, &el);
    if (!m)
        dump_errors(&el);
    assert_non_null(m);
    assert_int_equal(el.count, 0);
    json_decref(j);
    errlist_clear(&el);
    return m;
}

/*
 * Encode, print, parse and decode again, both with and without defaults: the result must pack
 * to the same bytes as the original.
 */
static void assert_round_trip(const ProtobufCMessage *m)
{
    for (int emit = 0; emit <= 1; emit++) {
        errlist_t el;
        errlist_init(&el);
        json_t *j = pbjson_encode(m, emit);
        assert_non_null(j);
        char *text = json_dumps(j, JSON_COMPACT);
        assert_non_null(text);
        json_t *j2 = parse(text);
        ProtobufCMessage *back = pbjson_decode(m->descriptor, j2, NULL, 0, &el);
        if (!back) {
            dump_errors(&el);
            fail_msg("%s did not decode back: %s", m->descriptor->name, text);
        }
        assert_same(m, back);
        /* Encoding is deterministic: the copy prints the same text. */
        json_t *j3 = pbjson_encode(back, emit);
        assert_non_null(j3);
        assert_true(json_equal(j, j3));
        protobuf_c_message_free_unpacked(back, NULL);
        json_decref(j);
        json_decref(j2);
        json_decref(j3);
        free(text);
        errlist_clear(&el);
    }
}

/* ---- a generic filler: every field of any message set to a non-default value ----------------- */

static int fill_counter;

static size_t elem_size(ProtobufCType t)
{
    switch (t) {
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        return 8;
    case PROTOBUF_C_TYPE_DOUBLE:
        return sizeof(double);
    case PROTOBUF_C_TYPE_STRING:
        return sizeof(char *);
    case PROTOBUF_C_TYPE_BYTES:
        return sizeof(ProtobufCBinaryData);
    case PROTOBUF_C_TYPE_MESSAGE:
        return sizeof(ProtobufCMessage *);
    default:
        return 4;
    }
}

static ProtobufCMessage *fill_message(const ProtobufCMessageDescriptor *d, int depth);

static void fill_value(const ProtobufCFieldDescriptor *f, void *p, int k, int depth)
{
    int n = ++fill_counter;
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
        *(int32_t *)p = -(int32_t)(n * 1000 + k + 1); /* negative: the sign must survive */
        break;
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        *(uint32_t *)p = 4000000000u + (uint32_t)n;
        break;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        /* Beyond 2^53: a JSON number (a double) would lose the low bits. */
        *(int64_t *)p = -(INT64_C(1) << 60) - n;
        break;
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        *(uint64_t *)p = UINT64_MAX - (uint64_t)n;
        break;
    case PROTOBUF_C_TYPE_FLOAT:
        *(float *)p = 0.1f * (float)n;
        break;
    case PROTOBUF_C_TYPE_DOUBLE:
        *(double *)p = 1.0 / 3.0 * n;
        break;
    case PROTOBUF_C_TYPE_BOOL:
        *(protobuf_c_boolean *)p = 1;
        break;
    case PROTOBUF_C_TYPE_ENUM: {
        const ProtobufCEnumDescriptor *ed = f->descriptor;
        *(int *)p = ed->values[ed->n_values - 1 - (unsigned)k % (ed->n_values - 1)].value;
        break;
    }
    case PROTOBUF_C_TYPE_STRING: {
        char buf[64];
        snprintf(buf, sizeof(buf), "%s-%d 津A\"q\"\\\n\t€", f->name, n);
        char *s = strdup(buf);
        assert_non_null(s);
        *(char **)p = s;
        break;
    }
    case PROTOBUF_C_TYPE_BYTES: {
        ProtobufCBinaryData *bd = p;
        bd->len = 3 + (size_t)k;
        bd->data = malloc(bd->len);
        assert_non_null(bd->data);
        bd->data[0] = 0x00;
        bd->data[1] = 0xFF;
        bd->data[2] = (uint8_t)n;
        if (k)
            bd->data[3] = 0xFB; /* "+" and "/" territory of base64 */
        break;
    }
    case PROTOBUF_C_TYPE_MESSAGE:
        *(ProtobufCMessage **)p = depth < 4 ? fill_message(f->descriptor, depth + 1) : NULL;
        break;
    }
}

static ProtobufCMessage *fill_message(const ProtobufCMessageDescriptor *d, int depth)
{
    ProtobufCMessage *m = malloc(d->sizeof_message);
    assert_non_null(m);
    protobuf_c_message_init(d, m);
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        char *base = (char *)m;
        if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
            /* Members share storage: set the first one only. */
            uint32_t *oneof_case = (uint32_t *)(base + f->quantifier_offset);
            if (*oneof_case == 0) {
                fill_value(f, base + f->offset, 0, depth);
                *oneof_case = f->id;
            }
        } else if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            size_t n = 2, es = elem_size(f->type);
            char *arr = calloc(n, es);
            assert_non_null(arr);
            for (size_t k = 0; k < n; k++)
                fill_value(f, arr + k * es, (int)k, depth);
            *(size_t *)(base + f->quantifier_offset) = n;
            *(char **)(base + f->offset) = arr;
        } else {
            fill_value(f, base + f->offset, 0, depth);
            if (f->label == PROTOBUF_C_LABEL_OPTIONAL && f->type != PROTOBUF_C_TYPE_STRING &&
                f->type != PROTOBUF_C_TYPE_MESSAGE)
                *(protobuf_c_boolean *)(base + f->quantifier_offset) = 1;
        }
    }
    return m;
}

static const ProtobufCMessageDescriptor *const all_messages[] = {
    &jrp__v1__subject__descriptor,
    &jrp__v1__credit_event__descriptor,
    &jrp__v1__action__descriptor,
    &jrp__v1__feedback__descriptor,
    &jrp__v1__memorandum_ref__descriptor,
    &jrp__v1__decision__descriptor,
    &jrp__v1__listing__descriptor,
    &jrp__v1__grade__descriptor,
    &jrp__v1__processed_event__descriptor,
    &jrp__v1__subject_state__descriptor,
    &jrp__v1__catalogue_measure__descriptor,
    &jrp__v1__trigger__descriptor,
    &jrp__v1__memorandum_measure__descriptor,
    &jrp__v1__memorandum__descriptor,
    &jrp__v1__escalation__descriptor,
    &jrp__v1__rule_file__descriptor,
    &jrp__v1__rule_set__descriptor,
    &jrp__v1__alert__descriptor,
    &jrp__v1__check_record__descriptor,
};

/* ---- a hand-written message with the scalar types jrp.v1 does not use ------------------------ */

typedef struct {
    ProtobufCMessage base;
    int32_t key;
    char *value;
} int_map_entry_t;

typedef struct {
    ProtobufCMessage base;
    int32_t i32, s32, sf32;
    uint32_t u32, fx32;
    int64_t i64, s64, sf64;
    uint64_t u64, fx64;
    float fl;
    double db;
    protobuf_c_boolean b;
    char *s;
    ProtobufCBinaryData by;
    size_t n_rb;
    protobuf_c_boolean *rb;
    size_t n_rd;
    double *rd;
    protobuf_c_boolean has_opt;
    int32_t opt;
    uint32_t choice_case;
    union {
        char *one_s;
        int32_t one_i;
    };
    size_t n_m;
    int_map_entry_t **m;
} scalars_t;

static void int_map_entry_init(ProtobufCMessage *msg);
static void scalars_init(ProtobufCMessage *msg);

#define FIELD(name, id, label, type, q, st, member, desc, def, flags)                              \
    {                                                                                              \
        name, id, PROTOBUF_C_LABEL_##label, PROTOBUF_C_TYPE_##type, q, offsetof(st, member), desc, \
            def, flags, 0, NULL, NULL                                                              \
    }

static const ProtobufCFieldDescriptor int_map_entry_fields[] = {
    FIELD("key", 1, NONE, INT32, 0, int_map_entry_t, key, NULL, NULL, 0),
    FIELD("value", 2, NONE, STRING, 0, int_map_entry_t, value, NULL, &protobuf_c_empty_string, 0),
};
static const unsigned int_map_entry_by_name[] = {0, 1};
static const ProtobufCIntRange int_map_entry_ranges[] = {{1, 0}, {0, 2}};
static const ProtobufCMessageDescriptor int_map_entry_descriptor = {
    PROTOBUF_C__MESSAGE_DESCRIPTOR_MAGIC,
    "test.Scalars.MEntry",
    "MEntry",
    "Test__Scalars__MEntry",
    "test",
    sizeof(int_map_entry_t),
    2,
    int_map_entry_fields,
    int_map_entry_by_name,
    1,
    int_map_entry_ranges,
    int_map_entry_init,
    NULL,
    NULL,
    NULL,
};

#define S scalars_t
static const ProtobufCFieldDescriptor scalars_fields[] = {
    FIELD("i32", 1, NONE, INT32, 0, S, i32, NULL, NULL, 0),
    FIELD("s32", 2, NONE, SINT32, 0, S, s32, NULL, NULL, 0),
    FIELD("sf32", 3, NONE, SFIXED32, 0, S, sf32, NULL, NULL, 0),
    FIELD("u32", 4, NONE, UINT32, 0, S, u32, NULL, NULL, 0),
    FIELD("fx32", 5, NONE, FIXED32, 0, S, fx32, NULL, NULL, 0),
    FIELD("i64", 6, NONE, INT64, 0, S, i64, NULL, NULL, 0),
    FIELD("s64", 7, NONE, SINT64, 0, S, s64, NULL, NULL, 0),
    FIELD("sf64", 8, NONE, SFIXED64, 0, S, sf64, NULL, NULL, 0),
    FIELD("u64", 9, NONE, UINT64, 0, S, u64, NULL, NULL, 0),
    FIELD("fx64", 10, NONE, FIXED64, 0, S, fx64, NULL, NULL, 0),
    FIELD("fl", 11, NONE, FLOAT, 0, S, fl, NULL, NULL, 0),
    FIELD("db", 12, NONE, DOUBLE, 0, S, db, NULL, NULL, 0),
    FIELD("b", 13, NONE, BOOL, 0, S, b, NULL, NULL, 0),
    FIELD("s", 14, NONE, STRING, 0, S, s, NULL, &protobuf_c_empty_string, 0),
    FIELD("by", 15, NONE, BYTES, 0, S, by, NULL, NULL, 0),
    FIELD("rb", 16, REPEATED, BOOL, offsetof(S, n_rb), S, rb, NULL, NULL,
          PROTOBUF_C_FIELD_FLAG_PACKED),
    FIELD("rd", 17, REPEATED, DOUBLE, offsetof(S, n_rd), S, rd, NULL, NULL,
          PROTOBUF_C_FIELD_FLAG_PACKED),
    FIELD("opt", 18, OPTIONAL, INT32, offsetof(S, has_opt), S, opt, NULL, NULL, 0),
    FIELD("one_s", 19, NONE, STRING, offsetof(S, choice_case), S, one_s, NULL,
          &protobuf_c_empty_string, PROTOBUF_C_FIELD_FLAG_ONEOF),
    FIELD("one_i", 20, NONE, INT32, offsetof(S, choice_case), S, one_i, NULL, NULL,
          PROTOBUF_C_FIELD_FLAG_ONEOF),
    FIELD("m", 21, REPEATED, MESSAGE, offsetof(S, n_m), S, m, &int_map_entry_descriptor, NULL, 0),
};
#undef S
/* Field indices in strcmp order of their names, as protobuf-c's binary search needs. */
static const unsigned scalars_by_name[] = {12, 14, 11, 10, 4, 9, 0, 5, 20, 19, 18,
                                           17, 15, 16, 13, 1, 6, 2, 7, 3,  8};
static const ProtobufCIntRange scalars_ranges[] = {{1, 0}, {0, 21}};
static const ProtobufCMessageDescriptor scalars_descriptor = {
    PROTOBUF_C__MESSAGE_DESCRIPTOR_MAGIC,
    "test.Scalars",
    "Scalars",
    "Test__Scalars",
    "test",
    sizeof(scalars_t),
    21,
    scalars_fields,
    scalars_by_name,
    1,
    scalars_ranges,
    scalars_init,
    NULL,
    NULL,
    NULL,
};

static void int_map_entry_init(ProtobufCMessage *msg)
{
    int_map_entry_t *e = (int_map_entry_t *)msg;
    memset(e, 0, sizeof(*e));
    e->base.descriptor = &int_map_entry_descriptor;
    e->value = (char *)protobuf_c_empty_string;
}

static void scalars_init(ProtobufCMessage *msg)
{
    scalars_t *s = (scalars_t *)msg;
    memset(s, 0, sizeof(*s));
    s->base.descriptor = &scalars_descriptor;
    s->s = (char *)protobuf_c_empty_string;
}

/* ---- round trips ------------------------------------------------------------------------------
 */

static void test_round_trip_every_message_filled(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(all_messages) / sizeof(all_messages[0]); i++) {
        ProtobufCMessage *m = fill_message(all_messages[i], 0);
        assert_round_trip(m);
        protobuf_c_message_free_unpacked(m, NULL);
    }
}

static void test_round_trip_every_message_empty(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(all_messages) / sizeof(all_messages[0]); i++) {
        ProtobufCMessage *m = malloc(all_messages[i]->sizeof_message);
        assert_non_null(m);
        protobuf_c_message_init(all_messages[i], m);
        json_t *j = pbjson_encode(m, 0);
        assert_non_null(j);
        assert_int_equal(json_object_size(j), 0); /* every field is at its default */
        json_decref(j);
        assert_round_trip(m);
        protobuf_c_message_free_unpacked(m, NULL);
    }
}

static void test_credit_event_json_shape(void **state)
{
    (void)state;
    Jrp__V1__CreditEvent *ev = (Jrp__V1__CreditEvent *)decode_ok(
        &jrp__v1__credit_event__descriptor,
        "{\"event_id\":\"ev-1\",\"kind\":\"listed\",\"subject\":{\"type\":\"enterprise\","
        "\"id\":\"91350100M000100Y43\",\"name\":\"某运输有限公司\"},\"source_department\":"
        "\"transport\",\"occurred_at_ms\":1700000000000,\"list_code\":\"black.overload\","
        "\"valid_from_ms\":\"1700000000000\",\"valid_until_ms\":0,\"delist_reason\":null,"
        "\"attributes\":{\"batch\":\"9\",\"axles\":\"6\"}}");
    assert_string_equal(ev->event_id, "ev-1");
    assert_int_equal(ev->kind, JRP__V1__EVENT_KIND__EVENT_KIND_LISTED);
    assert_non_null(ev->subject);
    assert_int_equal(ev->subject->type, JRP__V1__SUBJECT_TYPE__SUBJECT_TYPE_ENTERPRISE);
    assert_string_equal(ev->subject->name, "某运输有限公司");
    assert_true(ev->occurred_at_ms == INT64_C(1700000000000));
    assert_true(ev->valid_from_ms == INT64_C(1700000000000));
    assert_int_equal(ev->n_attributes, 2);
    assert_string_equal(ev->attributes[0]->key, "batch");
    assert_string_equal(ev->attributes[1]->value, "6");

    json_t *j = pbjson_encode(&ev->base, 0);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "kind")), "EVENT_KIND_LISTED");
    assert_string_equal(json_string_value(json_object_get(j, "occurred_at_ms")), "1700000000000");
    assert_string_equal(json_string_value(json_object_get(json_object_get(j, "subject"), "type")),
                        "SUBJECT_TYPE_ENTERPRISE");
    assert_null(json_object_get(j, "valid_until_ms")); /* default: omitted */
    assert_null(json_object_get(j, "delist_reason"));
    json_t *attrs = json_object_get(j, "attributes");
    assert_true(json_is_object(attrs));
    assert_string_equal(json_string_value(json_object_get(attrs, "axles")), "6");
    json_decref(j);
    assert_round_trip(&ev->base);
    protobuf_c_message_free_unpacked(&ev->base, NULL);
}

static void test_decision_repeated_memorandum_refs(void **state)
{
    (void)state;
    Jrp__V1__Decision *d = (Jrp__V1__Decision *)decode_ok(
        &jrp__v1__decision__descriptor,
        "{\"event_id\":\"ev-1\",\"subject\":{\"type\":\"vehicle\",\"id\":\"津A12345\"},"
        "\"ruleset_version\":7,\"outcome\":\"applied\",\"matched\":[{\"id\":\"overload-2017\","
        "\"version\":\"v3\"},{\"id\":\"logistics-2017\",\"version\":\"v1\"}],"
        "\"action_ids\":[\"a1\",\"a2\",\"a3\"],\"processed_at_ms\":\"1700000000001\","
        "\"reason\":\"matched 2\",\"event_kind\":\"EVENT_KIND_LISTED\",\"source_partition\":-1,"
        "\"source_offset\":\"9007199254740993\",\"suppressed\":[\"market/GREEN_CHANNEL\"]}");
    assert_int_equal(d->n_matched, 2);
    assert_string_equal(d->matched[1]->id, "logistics-2017");
    assert_int_equal(d->n_action_ids, 3);
    assert_string_equal(d->action_ids[2], "a3");
    assert_int_equal(d->source_partition, -1);
    /* 2^53 + 1: exact only because it travelled as a string. */
    assert_true(d->source_offset == INT64_C(9007199254740993));
    assert_int_equal(d->outcome, JRP__V1__DECISION_OUTCOME__DECISION_OUTCOME_APPLIED);

    json_t *j = pbjson_encode(&d->base, 0);
    assert_non_null(j);
    json_t *matched = json_object_get(j, "matched");
    assert_int_equal(json_array_size(matched), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(matched, 0), "version")),
                        "v3");
    assert_string_equal(json_string_value(json_object_get(j, "source_offset")), "9007199254740993");
    assert_int_equal(json_integer_value(json_object_get(j, "source_partition")), -1);
    json_decref(j);
    assert_round_trip(&d->base);
    protobuf_c_message_free_unpacked(&d->base, NULL);
}

static void test_subject_state_nested_repeated(void **state)
{
    (void)state;
    Jrp__V1__SubjectState *st = (Jrp__V1__SubjectState *)decode_ok(
        &jrp__v1__subject_state__descriptor,
        "{\"subject\":{\"type\":\"person\",\"id\":\"11010519491231002X\"},"
        "\"listings\":[{\"list_code\":\"black.overload\",\"cause_event_id\":\"e1\","
        "\"source_department\":\"transport\",\"valid_from_ms\":1,\"valid_until_ms\":2,"
        "\"listed_at_ms\":3}],\"grades\":[{\"field\":\"taxi\",\"grade\":\"AA\"}],"
        "\"measures\":[{\"action_id\":\"a1\",\"op\":\"apply\",\"subject\":{\"type\":\"person\","
        "\"id\":\"11010519491231002X\"}},{\"action_id\":\"a2\",\"op\":\"ACTION_OP_REVOKE\","
        "\"measure_kind\":\"penalty\"}],\"processed\":[{\"event_id\":\"e1\","
        "\"processed_at_ms\":5}],\"updated_at_ms\":6,\"ruleset_version\":7}");
    assert_int_equal(st->n_listings, 1);
    assert_true(st->listings[0]->listed_at_ms == 3);
    assert_int_equal(st->n_measures, 2);
    assert_non_null(st->measures[0]->subject);
    assert_string_equal(st->measures[0]->subject->id, "11010519491231002X");
    assert_null(st->measures[1]->subject);
    assert_int_equal(st->measures[1]->op, JRP__V1__ACTION_OP__ACTION_OP_REVOKE);
    assert_int_equal(st->measures[1]->measure_kind, JRP__V1__MEASURE_KIND__MEASURE_KIND_PENALTY);
    assert_round_trip(&st->base);
    protobuf_c_message_free_unpacked(&st->base, NULL);

    /* A bad value deep inside reports its full path. */
    expect_one_error(&jrp__v1__subject_state__descriptor,
                     "{\"measures\":[{},{\"subject\":{\"type\":\"ship\"}}]}", "bad_enum",
                     "measures[1].subject.type");
}

static void test_rule_set_bytes(void **state)
{
    (void)state;
    Jrp__V1__RuleSet *rs = (Jrp__V1__RuleSet *)decode_ok(
        &jrp__v1__rule_set__descriptor,
        "{\"version\":\"3\",\"digest\":\"ab\",\"files\":[{\"path\":\"catalogue.json\","
        "\"content\":\"AP8+/w==\"},{\"path\":\"b.json\",\"content\":\"AP8-_w\"},"
        "{\"path\":\"empty\",\"content\":\"\"}],\"memoranda\":[{\"id\":\"m\",\"kind\":"
        "\"incentive\",\"subject_types\":[\"enterprise\",\"SUBJECT_TYPE_PERSON\",3],"
        "\"triggers\":[{\"grade_field\":\"taxi\",\"grades\":[\"AAA\",\"AA\"]}]}],"
        "\"escalations\":[{\"id\":\"x\",\"focus_fields_at_least\":3}]}");
    assert_int_equal(rs->n_files, 3);
    /* Standard alphabet with padding, and URL-safe without, give the same bytes. */
    static const uint8_t want[] = {0x00, 0xFF, 0x3E, 0xFF};
    assert_int_equal(rs->files[0]->content.len, 4);
    assert_memory_equal(rs->files[0]->content.data, want, 4);
    assert_int_equal(rs->files[1]->content.len, 4);
    assert_memory_equal(rs->files[1]->content.data, want, 4);
    assert_int_equal(rs->files[2]->content.len, 0);
    assert_int_equal(rs->memoranda[0]->n_subject_types, 3);
    assert_int_equal(rs->memoranda[0]->subject_types[2],
                     JRP__V1__SUBJECT_TYPE__SUBJECT_TYPE_VEHICLE);

    json_t *j = pbjson_encode(&rs->base, 0);
    assert_non_null(j);
    json_t *f0 = json_array_get(json_object_get(j, "files"), 0);
    assert_string_equal(json_string_value(json_object_get(f0, "content")), "AP8+/w==");
    json_t *types =
        json_object_get(json_array_get(json_object_get(j, "memoranda"), 0), "subject_types");
    assert_string_equal(json_string_value(json_array_get(types, 0)), "SUBJECT_TYPE_ENTERPRISE");
    json_decref(j);
    assert_round_trip(&rs->base);
    protobuf_c_message_free_unpacked(&rs->base, NULL);

    expect_one_error(&jrp__v1__rule_set__descriptor, "{\"files\":[{\"content\":\"AP8*\"}]}",
                     "bad_base64", "files[0].content");
    expect_one_error(&jrp__v1__rule_set__descriptor, "{\"files\":[{\"content\":\"A\"}]}",
                     "bad_base64", "files[0].content");
    expect_one_error(&jrp__v1__rule_set__descriptor, "{\"files\":[{\"content\":\"AP8=A===\"}]}",
                     "bad_base64", "files[0].content");
    expect_one_error(&jrp__v1__rule_set__descriptor, "{\"files\":[{\"content\":7}]}", "wrong_type",
                     "files[0].content");
}

/* ---- enums ----------------------------------------------------------------------------------- */

static void test_enum_short_forms(void **state)
{
    (void)state;
    static const struct {
        const char *json;
        int kind;
    } cases[] = {
        {"{\"kind\":\"EVENT_KIND_SANCTIONED\"}", JRP__V1__EVENT_KIND__EVENT_KIND_SANCTIONED},
        {"{\"kind\":\"sanctioned\"}", JRP__V1__EVENT_KIND__EVENT_KIND_SANCTIONED},
        {"{\"kind\":\"delisted\"}", JRP__V1__EVENT_KIND__EVENT_KIND_DELISTED},
        {"{\"kind\":2}", JRP__V1__EVENT_KIND__EVENT_KIND_DELISTED},
        {"{\"kind\":\"unspecified\"}", JRP__V1__EVENT_KIND__EVENT_KIND_UNSPECIFIED},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        Jrp__V1__CreditEvent *ev =
            (Jrp__V1__CreditEvent *)decode_ok(&jrp__v1__credit_event__descriptor, cases[i].json);
        assert_int_equal(ev->kind, cases[i].kind);
        protobuf_c_message_free_unpacked(&ev->base, NULL);
    }
    Jrp__V1__Feedback *fb =
        (Jrp__V1__Feedback *)decode_ok(&jrp__v1__feedback__descriptor, "{\"status\":\"executed\"}");
    assert_int_equal(fb->status, JRP__V1__FEEDBACK_STATUS__FEEDBACK_STATUS_EXECUTED);
    protobuf_c_message_free_unpacked(&fb->base, NULL);

    /* Only the documented forms: not upper-case short names, not other cases, not unknowns. */
    const char *bad[] = {
        "\"LISTED\"", "\"Listed\"", "\"listd\"", "\"\"", "99", "-1", "\"event_kind_listed\"",
        "\"listed \""};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char text[64];
        snprintf(text, sizeof(text), "{\"kind\":%s}", bad[i]);
        expect_one_error(&jrp__v1__credit_event__descriptor, text, "bad_enum", "kind");
    }
    expect_one_error(&jrp__v1__credit_event__descriptor, "{\"kind\":true}", "wrong_type", "kind");
    expect_one_error(&jrp__v1__credit_event__descriptor, "{\"kind\":1.5}", "wrong_type", "kind");
}

static void test_enum_error_message(void **state)
{
    (void)state;
    errlist_t el;
    errlist_init(&el);
    json_t *j = parse("{\"kind\":\"listd\"}");
    assert_null(pbjson_decode(&jrp__v1__credit_event__descriptor, j, NULL, 0, &el));
    assert_int_equal(el.count, 1);
    const char *msg = el.items[0].message;
    assert_non_null(strstr(msg, "field \"kind\" must be one of EVENT_KIND_LISTED (listed), "
                                "EVENT_KIND_DELISTED (delisted)"));
    assert_non_null(strstr(msg, "EVENT_KIND_SANCTIONED (sanctioned); got a string \"listd\""));
    assert_null(strstr(msg, "UNSPECIFIED"));
    json_decref(j);
    errlist_clear(&el);
}

static void test_enum_short_name(void **state)
{
    (void)state;
    char buf[32];
    assert_string_equal(pbjson_enum_short_name(&jrp__v1__event_kind__descriptor,
                                               JRP__V1__EVENT_KIND__EVENT_KIND_LISTED, buf,
                                               sizeof(buf)),
                        "listed");
    assert_string_equal(
        pbjson_enum_short_name(&jrp__v1__subject_type__descriptor, 2, buf, sizeof(buf)), "person");
    assert_string_equal(
        pbjson_enum_short_name(&jrp__v1__alert_kind__descriptor, 2, buf, sizeof(buf)),
        "feedback_overdue");
    assert_string_equal(
        pbjson_enum_short_name(&jrp__v1__decision_outcome__descriptor, 3, buf, sizeof(buf)),
        "duplicate");
    assert_string_equal(
        pbjson_enum_short_name(&jrp__v1__event_kind__descriptor, 0, buf, sizeof(buf)),
        "unspecified");
    /* A value this build does not know is shown as its number. */
    assert_string_equal(
        pbjson_enum_short_name(&jrp__v1__event_kind__descriptor, 42, buf, sizeof(buf)), "42");
    /* Truncated to the buffer, always terminated. */
    char small[4];
    assert_string_equal(
        pbjson_enum_short_name(&jrp__v1__feedback_status__descriptor, 1, small, sizeof(small)),
        "rec");
}

static void test_enum_unknown_value_encodes_as_number(void **state)
{
    (void)state;
    Jrp__V1__CreditEvent ev = JRP__V1__CREDIT_EVENT__INIT;
    ev.kind = (Jrp__V1__EventKind)42;
    json_t *j = pbjson_encode(&ev.base, 0);
    assert_non_null(j);
    assert_int_equal(json_integer_value(json_object_get(j, "kind")), 42);
    json_decref(j);
}

/* ---- integers ---------------------------------------------------------------------------------
 */

static void test_int64_number_and_string(void **state)
{
    (void)state;
    static const struct {
        const char *json;
        int64_t want;
    } ok[] = {
        {"{\"occurred_at_ms\":1700000000000}", INT64_C(1700000000000)},
        {"{\"occurred_at_ms\":\"1700000000000\"}", INT64_C(1700000000000)},
        {"{\"occurred_at_ms\":\"-42\"}", -42},
        {"{\"occurred_at_ms\":\"9223372036854775807\"}", INT64_MAX},
        {"{\"occurred_at_ms\":\"-9223372036854775808\"}", INT64_MIN},
        {"{\"occurred_at_ms\":1e3}", 1000},
        {"{\"occurred_at_ms\":12.0}", 12},
        {"{\"occurred_at_ms\":\"007\"}", 7},
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        Jrp__V1__CreditEvent *ev =
            (Jrp__V1__CreditEvent *)decode_ok(&jrp__v1__credit_event__descriptor, ok[i].json);
        assert_true(ev->occurred_at_ms == ok[i].want);
        protobuf_c_message_free_unpacked(&ev->base, NULL);
    }
    static const struct {
        const char *value, *code;
    } bad[] = {
        {"\"+5\"", "wrong_type"},
        {"\" 5\"", "wrong_type"},
        {"\"5 \"", "wrong_type"},
        {"\"1e3\"", "wrong_type"},
        {"\"0x10\"", "wrong_type"},
        {"\"\"", "wrong_type"},
        {"\"-\"", "wrong_type"},
        {"1.5", "wrong_type"},
        {"true", "wrong_type"},
        {"[1]", "wrong_type"},
        {"{}", "wrong_type"},
        {"\"9223372036854775808\"", "out_of_range"},
        {"\"-9223372036854775809\"", "out_of_range"},
        {"1e19", "out_of_range"},
        {"9007199254740993.0", "out_of_range"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char text[96];
        snprintf(text, sizeof(text), "{\"occurred_at_ms\":%s}", bad[i].value);
        expect_one_error(&jrp__v1__credit_event__descriptor, text, bad[i].code, "occurred_at_ms");
    }
}

static void test_int32_out_of_range(void **state)
{
    (void)state;
    const ProtobufCMessageDescriptor *d = &jrp__v1__decision__descriptor;
    Jrp__V1__Decision *dec = (Jrp__V1__Decision *)decode_ok(
        d, "{\"source_partition\":2147483647,\"matched\":[{\"id\":\"a\"}]}");
    assert_int_equal(dec->source_partition, 2147483647);
    protobuf_c_message_free_unpacked(&dec->base, NULL);
    dec = (Jrp__V1__Decision *)decode_ok(d, "{\"source_partition\":\"-2147483648\"}");
    assert_int_equal(dec->source_partition, INT32_MIN);
    protobuf_c_message_free_unpacked(&dec->base, NULL);

    expect_one_error(d, "{\"source_partition\":2147483648}", "out_of_range", "source_partition");
    expect_one_error(d, "{\"source_partition\":-2147483649}", "out_of_range", "source_partition");
    expect_one_error(d, "{\"source_partition\":\"2147483648\"}", "out_of_range",
                     "source_partition");
    expect_one_error(&jrp__v1__rule_set__descriptor,
                     "{\"escalations\":[{\"then_valid_days\":99999999999}]}", "out_of_range",
                     "escalations[0].then_valid_days");
}

/* ---- shape errors ---------------------------------------------------------------------------- */

static void test_unknown_fields(void **state)
{
    (void)state;
    const ProtobufCMessageDescriptor *d = &jrp__v1__credit_event__descriptor;
    expect_one_error(d, "{\"evnt_id\":\"x\"}", "unknown_field", "evnt_id");
    expect_one_error(d, "{\"subject\":{\"code\":\"x\"}}", "unknown_field", "subject.code");
    /* JSON names of other runtimes are not accepted: the contract keeps proto names. */
    expect_one_error(d, "{\"eventId\":\"x\"}", "unknown_field", "eventId");
    expect_one_error(&jrp__v1__decision__descriptor, "{\"matched\":[{\"id\":\"a\",\"v\":1}]}",
                     "unknown_field", "matched[0].v");
}

static void test_wrong_types(void **state)
{
    (void)state;
    const ProtobufCMessageDescriptor *d = &jrp__v1__credit_event__descriptor;
    expect_one_error(d, "{\"event_id\":42}", "wrong_type", "event_id");
    expect_one_error(d, "{\"event_id\":{}}", "wrong_type", "event_id");
    expect_one_error(d, "{\"event_id\":[\"a\"]}", "wrong_type", "event_id");
    expect_one_error(d, "{\"event_id\":false}", "wrong_type", "event_id");
    expect_one_error(d, "{\"subject\":\"enterprise:91350100M000100Y43\"}", "wrong_type", "subject");
    expect_one_error(d, "{\"subject\":[]}", "wrong_type", "subject");
    expect_one_error(d, "{\"attributes\":[\"a\"]}", "wrong_type", "attributes");
    expect_one_error(d, "{\"attributes\":{\"a\":1}}", "wrong_type", "attributes.a");
    expect_one_error(&jrp__v1__decision__descriptor, "{\"action_ids\":\"a1\"}", "wrong_type",
                     "action_ids");
    expect_one_error(&jrp__v1__decision__descriptor, "{\"action_ids\":[\"a\",2]}", "wrong_type",
                     "action_ids[1]");
    expect_one_error(&jrp__v1__decision__descriptor, "{\"matched\":[\"overload\"]}", "wrong_type",
                     "matched[0]");

    errlist_t el;
    errlist_init(&el);
    json_t *j = parse("[{\"event_id\":\"x\"}]");
    assert_null(pbjson_decode(d, j, "events[3]", 0, &el));
    assert_error(&el, "wrong_type", "events[3]");
    assert_non_null(strstr(el.items[0].message, "must be a JSON object"));
    json_decref(j);
    errlist_clear(&el);
    assert_null(pbjson_decode(d, NULL, NULL, 0, &el));
    assert_error(&el, "wrong_type", "");
    errlist_clear(&el);
}

static void test_prefix_in_paths(void **state)
{
    (void)state;
    errlist_t el;
    errlist_init(&el);
    json_t *j = parse("{\"kind\":\"nope\",\"subject\":{\"id\":7}}");
    assert_null(pbjson_decode(&jrp__v1__credit_event__descriptor, j, "events[3]", 0, &el));
    assert_int_equal(el.count, 2);
    assert_error(&el, "bad_enum", "events[3].kind");
    assert_error(&el, "wrong_type", "events[3].subject.id");
    json_decref(j);
    errlist_clear(&el);
}

static void test_null_handling(void **state)
{
    (void)state;
    Jrp__V1__CreditEvent *ev = (Jrp__V1__CreditEvent *)decode_ok(
        &jrp__v1__credit_event__descriptor,
        "{\"event_id\":null,\"kind\":null,\"subject\":null,\"occurred_at_ms\":null,"
        "\"attributes\":null}");
    assert_string_equal(ev->event_id, "");
    assert_int_equal(ev->kind, 0);
    assert_null(ev->subject);
    assert_true(ev->occurred_at_ms == 0);
    assert_int_equal(ev->n_attributes, 0);
    protobuf_c_message_free_unpacked(&ev->base, NULL);

    Jrp__V1__Decision *d = (Jrp__V1__Decision *)decode_ok(&jrp__v1__decision__descriptor,
                                                          "{\"matched\":null,\"action_ids\":[]}");
    assert_int_equal(d->n_matched, 0);
    assert_int_equal(d->n_action_ids, 0);
    protobuf_c_message_free_unpacked(&d->base, NULL);

    /* Inside arrays and maps null means nothing sensible, so it is an error. */
    expect_one_error(&jrp__v1__decision__descriptor, "{\"action_ids\":[\"a\",null]}", "wrong_type",
                     "action_ids[1]");
    expect_one_error(&jrp__v1__decision__descriptor, "{\"matched\":[null]}", "wrong_type",
                     "matched[0]");
    expect_one_error(&jrp__v1__credit_event__descriptor, "{\"attributes\":{\"a\":null}}",
                     "wrong_type", "attributes.a");
    expect_one_error(&jrp__v1__credit_event__descriptor, "null", "wrong_type", "");
}

static void test_maps(void **state)
{
    (void)state;
    Jrp__V1__CreditEvent *ev = (Jrp__V1__CreditEvent *)decode_ok(
        &jrp__v1__credit_event__descriptor,
        "{\"attributes\":{\"b\":\"2\",\"a\":\"1\",\"中文\":\"值\",\"empty\":\"\"}}");
    assert_int_equal(ev->n_attributes, 4);
    assert_string_equal(ev->attributes[0]->key, "b");
    assert_string_equal(ev->attributes[2]->key, "中文");
    assert_string_equal(ev->attributes[2]->value, "值");
    assert_string_equal(ev->attributes[3]->value, "");
    json_t *j = pbjson_encode(&ev->base, 0);
    assert_non_null(j);
    json_t *want =
        parse("{\"attributes\":{\"b\":\"2\",\"a\":\"1\",\"中文\":\"值\",\"empty\":\"\"}}");
    assert_true(json_equal(j, want));
    json_decref(j);
    json_decref(want);
    assert_round_trip(&ev->base);
    protobuf_c_message_free_unpacked(&ev->base, NULL);

    expect_one_error(&jrp__v1__credit_event__descriptor, "{\"attributes\":{\"a\":{}}}",
                     "wrong_type", "attributes.a");
    expect_one_error(&jrp__v1__credit_event__descriptor, "{\"attributes\":\"a=1\"}", "wrong_type",
                     "attributes");

    /* On the wire a repeated key is legal: the last entry wins in JSON. */
    Jrp__V1__CreditEvent__AttributesEntry e1 = JRP__V1__CREDIT_EVENT__ATTRIBUTES_ENTRY__INIT;
    Jrp__V1__CreditEvent__AttributesEntry e2 = JRP__V1__CREDIT_EVENT__ATTRIBUTES_ENTRY__INIT;
    Jrp__V1__CreditEvent__AttributesEntry *entries[] = {&e1, &e2};
    e1.key = "k";
    e1.value = "first";
    e2.key = "k";
    e2.value = "last";
    Jrp__V1__CreditEvent ev2 = JRP__V1__CREDIT_EVENT__INIT;
    ev2.n_attributes = 2;
    ev2.attributes = entries;
    j = pbjson_encode(&ev2.base, 0);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(json_object_get(j, "attributes"), "k")),
                        "last");
    json_decref(j);
}

static void test_invalid_utf8(void **state)
{
    (void)state;
    errlist_t el;
    errlist_init(&el);
    /* Only built by hand: jansson's parser never lets invalid UTF-8 through. */
    json_t *j = json_object();
    assert_non_null(j);
    assert_int_equal(json_object_set_new(j, "event_id", json_stringn_nocheck("a\xff", 2)), 0);
    json_t *attrs = json_object();
    assert_non_null(attrs);
    assert_int_equal(json_object_set_new_nocheck(attrs, "k\xc0\xaf", json_string("v")), 0);
    assert_int_equal(json_object_set_new(attrs, "ok", json_stringn_nocheck("\xed\xa0\x80", 3)), 0);
    assert_int_equal(json_object_set_new(j, "attributes", attrs), 0);
    assert_null(pbjson_decode(&jrp__v1__credit_event__descriptor, j, NULL, 0, &el));
    assert_int_equal(el.count, 3);
    assert_error(&el, "bad_utf8", "event_id");
    assert_error(&el, "bad_utf8", "attributes.ok"); /* an encoded surrogate is not UTF-8 */
    /* Paths end up in JSON error bodies: bytes that are not UTF-8 are spelled out. */
    assert_error(&el, "bad_utf8", "attributes.k\\xC0\\xAF");
    json_decref(j);
    errlist_clear(&el);

    /* Strings from the wire are not checked by protobuf-c: encoding repairs them. */
    Jrp__V1__Subject s = JRP__V1__SUBJECT__INIT;
    s.name = "ok\xff\xfe end";
    j = pbjson_encode(&s.base, 0);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "name")),
                        "ok\xef\xbf\xbd\xef\xbf\xbd end");
    json_decref(j);
}

static void test_nul_in_string(void **state)
{
    (void)state;
    errlist_t el;
    errlist_init(&el);
    json_error_t err;
    json_t *j = json_loads("{\"event_id\":\"a\\u0000b\",\"attributes\":{}}", JSON_ALLOW_NUL, &err);
    assert_non_null(j);
    /* jansson's parser refuses NUL in keys even with JSON_ALLOW_NUL; built by hand it is not. */
    assert_int_equal(
        json_object_setn_new_nocheck(json_object_get(j, "attributes"), "x\0", 2, json_string("1")),
        0);
    assert_null(pbjson_decode(&jrp__v1__credit_event__descriptor, j, NULL, 0, &el));
    assert_int_equal(el.count, 2);
    assert_error(&el, "bad_char", "event_id");
    assert_error(&el, "bad_char", "attributes.x\\x00");
    json_decref(j);
    errlist_clear(&el);
}

static void test_max_string(void **state)
{
    (void)state;
    errlist_t el;
    errlist_init(&el);
    json_t *j = parse("{\"event_id\":\"12345\",\"subject\":{\"name\":\"123456\"},"
                      "\"attributes\":{\"123456\":\"1\"}}");
    assert_null(pbjson_decode(&jrp__v1__credit_event__descriptor, j, NULL, 5, &el));
    assert_int_equal(el.count, 2);
    assert_error(&el, "too_long", "subject.name");
    assert_error(&el, "too_long", "attributes.123456");
    errlist_clear(&el);
    /* 0 means no limit; the limit counts bytes, not characters. */
    ProtobufCMessage *m = pbjson_decode(&jrp__v1__credit_event__descriptor, j, NULL, 0, &el);
    assert_non_null(m);
    protobuf_c_message_free_unpacked(m, NULL);
    json_decref(j);
    j = parse("{\"event_id\":\"津津\"}");
    assert_null(pbjson_decode(&jrp__v1__credit_event__descriptor, j, NULL, 5, &el));
    assert_error(&el, "too_long", "event_id");
    json_decref(j);
    errlist_clear(&el);
}

static void test_every_error_listed(void **state)
{
    (void)state;
    errlist_t el;
    errlist_init(&el);
    json_t *j = parse("{\"event_id\":1,\"kind\":\"x\",\"subject\":{\"type\":\"ship\",\"id\":[],"
                      "\"nm\":\"\"},\"occurred_at_ms\":\"soon\",\"attributes\":{\"a\":2},"
                      "\"zzz\":0}");
    assert_null(pbjson_decode(&jrp__v1__credit_event__descriptor, j, NULL, 0, &el));
    assert_int_equal(el.count, 8);
    assert_error(&el, "unknown_field", "zzz");
    assert_error(&el, "wrong_type", "event_id");
    assert_error(&el, "bad_enum", "kind");
    assert_error(&el, "bad_enum", "subject.type");
    assert_error(&el, "wrong_type", "subject.id");
    assert_error(&el, "unknown_field", "subject.nm");
    assert_error(&el, "wrong_type", "occurred_at_ms");
    assert_error(&el, "wrong_type", "attributes.a");
    errlist_clear(&el);

    /* The partial form keeps what decoded, for callers that go on to check meaning. */
    size_t nerr = 0;
    json_t *j2 = parse("{\"event_id\":\"ok\",\"kind\":\"x\",\"subject\":{\"type\":\"ship\","
                       "\"id\":\"津A12345\"},\"attributes\":{\"a\":2,\"b\":\"3\"}}");
    Jrp__V1__CreditEvent *ev = (Jrp__V1__CreditEvent *)pbjson_decode_partial(
        &jrp__v1__credit_event__descriptor, j2, NULL, 0, &el, &nerr);
    assert_non_null(ev);
    assert_int_equal(nerr, 3);
    assert_int_equal(el.count, 3);
    assert_string_equal(ev->event_id, "ok");
    assert_int_equal(ev->kind, 0);
    assert_non_null(ev->subject);
    assert_string_equal(ev->subject->id, "津A12345");
    assert_int_equal(ev->n_attributes, 1);
    assert_string_equal(ev->attributes[0]->key, "b");
    protobuf_c_message_free_unpacked(&ev->base, NULL);
    json_decref(j);
    json_decref(j2);
    errlist_clear(&el);
}

static void test_emit_defaults(void **state)
{
    (void)state;
    Jrp__V1__CreditEvent ev = JRP__V1__CREDIT_EVENT__INIT;
    ev.event_id = "e";
    json_t *off = pbjson_encode(&ev.base, 0);
    assert_non_null(off);
    json_t *want_off = parse("{\"event_id\":\"e\"}");
    assert_true(json_equal(off, want_off));

    json_t *on = pbjson_encode(&ev.base, 1);
    assert_non_null(on);
    assert_int_equal(json_object_size(on), 17); /* every field of CreditEvent */
    assert_string_equal(json_string_value(json_object_get(on, "kind")), "EVENT_KIND_UNSPECIFIED");
    assert_string_equal(json_string_value(json_object_get(on, "occurred_at_ms")), "0");
    assert_string_equal(json_string_value(json_object_get(on, "list_code")), "");
    assert_true(json_is_null(json_object_get(on, "subject")));
    assert_true(json_is_object(json_object_get(on, "attributes")));
    assert_int_equal(json_object_size(json_object_get(on, "attributes")), 0);

    Jrp__V1__Decision d = JRP__V1__DECISION__INIT;
    json_t *don = pbjson_encode(&d.base, 1);
    assert_non_null(don);
    assert_true(json_is_array(json_object_get(don, "matched")));
    assert_int_equal(json_integer_value(json_object_get(don, "source_partition")), 0);

    json_decref(off);
    json_decref(want_off);
    json_decref(on);
    json_decref(don);
}

/* ---- the hand-written scalar message ----------------------------------------------------------
 */

static void test_scalar_types(void **state)
{
    (void)state;
    scalars_t *s = (scalars_t *)decode_ok(
        &scalars_descriptor,
        "{\"i32\":-5,\"s32\":-6,\"sf32\":\"-7\",\"u32\":4294967295,\"fx32\":\"8\","
        "\"i64\":\"-9\",\"s64\":10,\"sf64\":\"-11\",\"u64\":\"18446744073709551615\","
        "\"fx64\":12,\"fl\":0.1,\"db\":\"-Infinity\",\"b\":true,\"s\":\"str\","
        "\"by\":\"3q2+7w\",\"rb\":[true,false,true],\"rd\":[1.5,\"NaN\",\"Infinity\",2],"
        "\"opt\":0,\"one_i\":0,\"m\":{\"-3\":\"minus three\",\"7\":\"seven\"}}");
    assert_int_equal(s->i32, -5);
    assert_int_equal(s->s32, -6);
    assert_int_equal(s->sf32, -7);
    assert_true(s->u32 == 4294967295u);
    assert_int_equal(s->fx32, 8);
    assert_true(s->i64 == -9);
    assert_true(s->u64 == UINT64_MAX);
    assert_true(s->fl == 0.1f);
    assert_true(s->db < -1e308);
    assert_true(s->b);
    assert_int_equal(s->by.len, 4);
    assert_int_equal(s->n_rb, 3);
    assert_false(s->rb[1]);
    assert_int_equal(s->n_rd, 4);
    assert_true(s->rd[1] != s->rd[1]);
    /* Explicit presence: a zero that was sent is set, and stays set on output. */
    assert_true(s->has_opt);
    assert_int_equal(s->choice_case, 20);
    assert_int_equal(s->n_m, 2);
    assert_int_equal(s->m[0]->key, -3);
    assert_string_equal(s->m[1]->value, "seven");

    json_t *j = pbjson_encode(&s->base, 0);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "u64")), "18446744073709551615");
    assert_string_equal(json_string_value(json_object_get(j, "fx64")), "12");
    assert_true(json_is_integer(json_object_get(j, "u32")));
    assert_true(json_real_value(json_object_get(j, "fl")) == 0.1); /* shortest, not 0.100000001 */
    assert_string_equal(json_string_value(json_object_get(j, "db")), "-Infinity");
    assert_string_equal(json_string_value(json_array_get(json_object_get(j, "rd"), 1)), "NaN");
    assert_int_equal(json_integer_value(json_object_get(j, "opt")), 0);
    assert_int_equal(json_integer_value(json_object_get(j, "one_i")), 0);
    assert_null(json_object_get(j, "one_s"));
    assert_string_equal(json_string_value(json_object_get(json_object_get(j, "m"), "-3")),
                        "minus three");
    json_decref(j);
    protobuf_c_message_free_unpacked(&s->base, NULL);

    /* NaN never equals itself, so the round trip is checked on a NaN-free copy. */
    scalars_t *r = (scalars_t *)decode_ok(&scalars_descriptor,
                                          "{\"u32\":1,\"fl\":-2.5e38,\"db\":1e-300,\"rd\":[0.5],"
                                          "\"one_s\":\"x\",\"by\":\"\",\"m\":{\"0\":\"\"}}");
    assert_round_trip(&r->base);
    protobuf_c_message_free_unpacked(&r->base, NULL);
    ProtobufCMessage *filled = fill_message(&scalars_descriptor, 0);
    assert_int_equal(((scalars_t *)filled)->choice_case, 19);
    assert_round_trip(filled);
    protobuf_c_message_free_unpacked(filled, NULL);
}

static void test_scalar_errors(void **state)
{
    (void)state;
    const ProtobufCMessageDescriptor *d = &scalars_descriptor;
    expect_one_error(d, "{\"u32\":-1}", "out_of_range", "u32");
    expect_one_error(d, "{\"u32\":4294967296}", "out_of_range", "u32");
    expect_one_error(d, "{\"u64\":\"-1\"}", "out_of_range", "u64");
    expect_one_error(d, "{\"u64\":\"18446744073709551616\"}", "out_of_range", "u64");
    expect_one_error(d, "{\"u64\":-3}", "out_of_range", "u64");
    expect_one_error(d, "{\"u64\":\"1.0\"}", "wrong_type", "u64");
    expect_one_error(d, "{\"fl\":1e39}", "out_of_range", "fl");
    expect_one_error(d, "{\"fl\":\"inf\"}", "wrong_type", "fl");
    expect_one_error(d, "{\"db\":\"0x1p3\"}", "wrong_type", "db");
    expect_one_error(d, "{\"db\":\"1e999\"}", "out_of_range", "db");
    expect_one_error(d, "{\"db\":true}", "wrong_type", "db");
    expect_one_error(d, "{\"b\":\"true\"}", "wrong_type", "b");
    expect_one_error(d, "{\"b\":1}", "wrong_type", "b");
    expect_one_error(d, "{\"rb\":[true,0]}", "wrong_type", "rb[1]");
    expect_one_error(d, "{\"m\":{\"x\":\"1\"}}", "wrong_type", "m.x");
    expect_one_error(d, "{\"m\":{\"99999999999\":\"1\"}}", "out_of_range", "m.99999999999");
    expect_one_error(d, "{\"one_s\":\"a\",\"one_i\":1}", "not_allowed", "one_i");
    expect_one_error(d, "{\"opt\":\"x\"}", "wrong_type", "opt");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_every_message_filled),
        cmocka_unit_test(test_round_trip_every_message_empty),
        cmocka_unit_test(test_credit_event_json_shape),
        cmocka_unit_test(test_decision_repeated_memorandum_refs),
        cmocka_unit_test(test_subject_state_nested_repeated),
        cmocka_unit_test(test_rule_set_bytes),
        cmocka_unit_test(test_enum_short_forms),
        cmocka_unit_test(test_enum_error_message),
        cmocka_unit_test(test_enum_short_name),
        cmocka_unit_test(test_enum_unknown_value_encodes_as_number),
        cmocka_unit_test(test_int64_number_and_string),
        cmocka_unit_test(test_int32_out_of_range),
        cmocka_unit_test(test_unknown_fields),
        cmocka_unit_test(test_wrong_types),
        cmocka_unit_test(test_prefix_in_paths),
        cmocka_unit_test(test_null_handling),
        cmocka_unit_test(test_maps),
        cmocka_unit_test(test_invalid_utf8),
        cmocka_unit_test(test_nul_in_string),
        cmocka_unit_test(test_max_string),
        cmocka_unit_test(test_every_error_listed),
        cmocka_unit_test(test_emit_defaults),
        cmocka_unit_test(test_scalar_types),
        cmocka_unit_test(test_scalar_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
