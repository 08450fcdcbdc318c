/*
 * pbjson: protobuf-c messages <-> jansson JSON, walking the message descriptors so that one
 * implementation serves every jrp.v1 message. Output follows protobuf's canonical JSON mapping
 * with the proto field names kept; input is lenient only where the contract says so (enum short
 * names, int64 as numbers) and reports every problem with its field path.
 */
#include "pbjson.h"

#include <errno.h>
#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "utf8.h"

/*
 * jrp.v1 messages nest four levels at most; the limit only matters for recursive message types
 * fed hand-built JSON, where it keeps the recursion off the end of the stack.
 */
#define PBJSON_MAX_DEPTH 64
#define PBJSON_PATH_MAX 256
#define PBJSON_MSG_MAX 512
/* Bytes of a bad value quoted back in a message: enough to recognise it, not to echo a payload. */
#define PBJSON_QUOTE_MAX 40
/*
 * 2^53: from here on a JSON number (a double) no longer tells neighbouring integers apart, so
 * 9007199254740993 would silently become ...992.
 */
#define PBJSON_EXACT_MAX 9007199254740992.0

typedef struct {
    errlist_t *el;
    size_t max_string;
    size_t nerr;
    int oom;
} pbjson_dec_t;

/* ---- messages and paths -------------------------------------------------------------------- */

/* Quote s for an error message: escaped, and cut (at a character boundary) if long. */
static const char *quote(char *buf, size_t size, const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t o = 0, i = 0;

    if (size < 16)
        return "";
    buf[o++] = '"';
    while (i < len && o + 12 < size) {
        if (i >= PBJSON_QUOTE_MAX) {
            memcpy(buf + o, "\u2026", 3); /* … */
            o += 3;
            break;
        }
        size_t n = utf8_seq_len(p + i, len - i);
        if (n > 1) {
            memcpy(buf + o, p + i, n);
            o += n;
            i += n;
        } else if (n == 1 && p[i] >= 0x20 && p[i] < 0x7F && p[i] != '"' && p[i] != '\\') {
            buf[o++] = (char)p[i++];
        } else {
            /* Control characters and broken UTF-8 never reach a log line raw. */
            int w = snprintf(buf + o, size - o, "\\x%02X", p[i++]);
            if (w < 0)
                break;
            o += (size_t)w;
        }
    }
    buf[o++] = '"';
    buf[o] = '\0';
    return buf;
}

static const char *json_kind(const json_t *j)
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
        return "true";
    case JSON_FALSE:
        return "false";
    case JSON_NULL:
        return "null";
    }
    return "a value";
}

/* Describe what was received: the JSON kind, with a short quote of strings. */
static const char *got(char *buf, size_t size, const json_t *j)
{
    char q[96];
    int n;
    if (json_is_string(j))
        n = snprintf(buf, size, "a string %s",
                     quote(q, sizeof(q), json_string_value(j), json_string_length(j)));
    else if (json_is_integer(j))
        n = snprintf(buf, size, "%" JSON_INTEGER_FORMAT, json_integer_value(j));
    else if (json_is_real(j))
        n = snprintf(buf, size, "%g", json_real_value(j));
    else
        n = snprintf(buf, size, "%s", json_kind(j));
    if (n < 0 && size > 0)
        buf[0] = '\0';
    return buf;
}

/* Mark a truncated path so that it is never mistaken for a shorter, real one. */
static void path_done(char *buf, size_t size, int n)
{
    if (n < 0)
        buf[0] = '\0';
    else if ((size_t)n >= size)
        memcpy(buf + size - 4, "...", 4);
}

static void path_field(char *buf, size_t size, const char *prefix, const char *name)
{
    int n;
    if (prefix && prefix[0])
        n = snprintf(buf, size, "%s.%s", prefix, name);
    else
        n = snprintf(buf, size, "%s", name);
    path_done(buf, size, n);
}

/*
 * A JSON object key (a map key, or a field name that is not one) as a path element: paths go
 * into logs and JSON error bodies, so bytes that are not printable UTF-8 are written as \xNN
 * and a long key is cut.
 */
static void path_key(char *buf, size_t size, const char *prefix, const char *key, size_t len)
{
    char k[PBJSON_QUOTE_MAX * 4 + 8];
    const unsigned char *p = (const unsigned char *)key;
    size_t o = 0, i = 0;
    while (i < len && o + 5 < sizeof(k)) {
        if (i >= PBJSON_QUOTE_MAX) {
            memcpy(k + o, "...", 3);
            o += 3;
            break;
        }
        size_t n = utf8_seq_len(p + i, len - i);
        if (n > 1 || (n == 1 && p[i] >= 0x20 && p[i] != 0x7F)) {
            memcpy(k + o, p + i, n);
            o += n;
            i += n;
        } else {
            int w = snprintf(k + o, sizeof(k) - o, "\\x%02X", p[i++]);
            if (w < 0)
                break;
            o += (size_t)w;
        }
    }
    k[o] = '\0';
    path_field(buf, size, prefix, k);
}

static void path_index(char *buf, size_t size, const char *prefix, size_t i)
{
    int n = snprintf(buf, size, "%s[%zu]", prefix ? prefix : "", i);
    path_done(buf, size, n);
}

static void dec_fail(pbjson_dec_t *dc, const char *path, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void dec_fail(pbjson_dec_t *dc, const char *path, const char *code, const char *fmt, ...)
{
    char msg[PBJSON_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (n < 0)
        msg[0] = '\0';
    dc->nerr++;
    if (dc->el && errlist_add(dc->el, NULL, path, code, "%s", msg) != 0)
        dc->oom = 1;
}

static void dec_oom(pbjson_dec_t *dc, const char *path)
{
    dec_fail(dc, path, "no_memory", "ran out of memory while decoding");
    dc->oom = 1;
}

/* ---- enums --------------------------------------------------------------------------------- */

/*
 * Length of the prefix the short form drops. The style guide's prefix (EventKind ->
 * "EVENT_KIND_") comes first because it does not move when a value is added; the longest common
 * prefix of the value names is the fallback for enums that do not follow the guide.
 */
static size_t enum_prefix_len(const ProtobufCEnumDescriptor *ed)
{
    char pre[128];
    size_t o = 0;
    const char *s = ed->short_name ? ed->short_name : "";

    for (size_t i = 0; s[i] && o + 3 < sizeof(pre); i++) {
        char c = s[i];
        int up = c >= 'A' && c <= 'Z';
        if (up && i > 0) {
            char prev = s[i - 1], next = s[i + 1];
            int prev_low = (prev >= 'a' && prev <= 'z') || (prev >= '0' && prev <= '9');
            int next_low = next >= 'a' && next <= 'z';
            if (prev_low || ((prev >= 'A' && prev <= 'Z') && next_low))
                pre[o++] = '_';
        }
        pre[o++] = (c >= 'a' && c <= 'z') ? (char)(c - 'a' + 'A') : c;
    }
    pre[o++] = '_';
    pre[o] = '\0';

    int all = ed->n_values > 0;
    for (unsigned i = 0; i < ed->n_values; i++)
        if (strncmp(ed->values[i].name, pre, o) != 0 || ed->values[i].name[o] == '\0')
            all = 0;
    if (all)
        return o;
    if (ed->n_values < 2)
        return 0;

    size_t lcp = strlen(ed->values[0].name);
    for (unsigned i = 1; i < ed->n_values; i++) {
        size_t k = 0;
        while (k < lcp && ed->values[i].name[k] == ed->values[0].name[k])
            k++;
        lcp = k;
    }
    while (lcp > 0 && ed->values[0].name[lcp - 1] != '_')
        lcp--;
    return lcp;
}

const char *pbjson_enum_short_name(const ProtobufCEnumDescriptor *desc, int value, char *buf,
                                   size_t size)
{
    if (!buf || size == 0)
        return "";
    buf[0] = '\0';
    if (!desc)
        return buf;
    const ProtobufCEnumValue *ev = protobuf_c_enum_descriptor_get_value(desc, value);
    if (!ev) {
        int n = snprintf(buf, size, "%d", value);
        if (n < 0)
            buf[0] = '\0';
        return buf;
    }
    const char *s = ev->name + enum_prefix_len(desc);
    size_t o = 0;
    for (; *s && o + 1 < size; s++)
        buf[o++] = (*s >= 'A' && *s <= 'Z') ? (char)(*s - 'A' + 'a') : *s;
    buf[o] = '\0';
    return buf;
}

/* Does the short form of name (prefix plen bytes) equal s? */
static int enum_short_eq(const char *name, size_t plen, const char *s, size_t len)
{
    const char *p = name + plen;
    if (strlen(p) != len || len == 0)
        return 0;
    for (size_t i = 0; i < len; i++) {
        char c = (p[i] >= 'A' && p[i] <= 'Z') ? (char)(p[i] - 'A' + 'a') : p[i];
        if (c != s[i])
            return 0;
    }
    return 1;
}

/* "EVENT_KIND_LISTED (listed), ..." without the *_UNSPECIFIED placeholder. */
static void enum_choices(const ProtobufCEnumDescriptor *ed, char *buf, size_t size)
{
    size_t o = 0;
    buf[0] = '\0';
    for (unsigned i = 0; i < ed->n_values; i++) {
        const char *name = ed->values[i].name;
        size_t nl = strlen(name);
        if (nl >= 12 && strcmp(name + nl - 12, "_UNSPECIFIED") == 0)
            continue;
        char shortname[128];
        pbjson_enum_short_name(ed, ed->values[i].value, shortname, sizeof(shortname));
        int n = snprintf(buf + o, size - o, "%s%s (%s)", o ? ", " : "", name, shortname);
        if (n < 0 || (size_t)n >= size - o) {
            /* Out of room: end the list visibly rather than mid-name. */
            if (size > 8) {
                size_t cut = o < size - 6 ? o : size - 6;
                memcpy(buf + cut, ", \u2026", 6);
            }
            return;
        }
        o += (size_t)n;
    }
}

/* ---- encoding ------------------------------------------------------------------------------ */

static json_t *enc_message(const ProtobufCMessage *msg, int emit_defaults);

/* Strings unpacked from the wire are not checked by protobuf-c: replace bad bytes by U+FFFD. */
static json_t *enc_string(const char *s)
{
    if (!s)
        s = "";
    size_t len = strlen(s);
    if (utf8_valid(s, len))
        return json_stringn(s, len);

    char *buf = malloc(len * 3 + 1);
    if (!buf)
        return NULL;
    const unsigned char *p = (const unsigned char *)s;
    size_t o = 0, i = 0;
    while (i < len) {
        size_t n = utf8_seq_len(p + i, len - i);
        if (n == 0) {
            memcpy(buf + o, "\xEF\xBF\xBD", 3);
            o += 3;
            i++;
        } else {
            memcpy(buf + o, p + i, n);
            o += n;
            i += n;
        }
    }
    json_t *j = json_stringn(buf, o);
    free(buf);
    return j;
}

static json_t *enc_bytes(const ProtobufCBinaryData *bd)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t len = bd->data ? bd->len : 0;
    size_t olen = (len + 2) / 3 * 4;
    char *out = malloc(olen + 1);
    if (!out)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)bd->data[i] << 16;
        if (i + 1 < len)
            v |= (uint32_t)bd->data[i + 1] << 8;
        if (i + 2 < len)
            v |= bd->data[i + 2];
        out[o++] = tab[(v >> 18) & 63];
        out[o++] = tab[(v >> 12) & 63];
        out[o++] = i + 1 < len ? tab[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < len ? tab[v & 63] : '=';
    }
    json_t *j = json_stringn(out, o);
    free(out);
    return j;
}

/* Non-finite values are strings in the canonical mapping; JSON has no literal for them. */
static json_t *enc_double(double d, int is_float)
{
    if (d != d)
        return json_string("NaN");
    if (d > DBL_MAX)
        return json_string("Infinity");
    if (d < -DBL_MAX)
        return json_string("-Infinity");
    if (is_float) {
        /* The shortest decimal that reads back as the same float, so 0.1f is not 0.100000001. */
        char buf[32];
        for (int prec = 6; prec <= 9; prec++) {
            int n = snprintf(buf, sizeof(buf), "%.*g", prec, d);
            if (n < 0 || (size_t)n >= sizeof(buf))
                break;
            double r = strtod(buf, NULL);
            if ((float)r == (float)d)
                return json_real(r);
        }
    }
    return json_real(d);
}

static json_t *enc_int64_str(int64_t v)
{
    char buf[24];
    int n = snprintf(buf, sizeof(buf), "%" PRId64, v);
    return n < 0 ? NULL : json_string(buf);
}

static json_t *enc_uint64_str(uint64_t v)
{
    char buf[24];
    int n = snprintf(buf, sizeof(buf), "%" PRIu64, v);
    return n < 0 ? NULL : json_string(buf);
}

/* One value of field f stored at p (the member, or an element of a repeated array). */
static json_t *enc_value(const ProtobufCFieldDescriptor *f, const void *p, int emit_defaults)
{
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
        return json_integer(*(const int32_t *)p);
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        return json_integer((json_int_t) * (const uint32_t *)p);
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        return enc_int64_str(*(const int64_t *)p);
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        return enc_uint64_str(*(const uint64_t *)p);
    case PROTOBUF_C_TYPE_FLOAT:
        return enc_double((double)*(const float *)p, 1);
    case PROTOBUF_C_TYPE_DOUBLE:
        return enc_double(*(const double *)p, 0);
    case PROTOBUF_C_TYPE_BOOL:
        return json_boolean(*(const protobuf_c_boolean *)p);
    case PROTOBUF_C_TYPE_ENUM: {
        int v = *(const int *)p;
        const ProtobufCEnumValue *ev = protobuf_c_enum_descriptor_get_value(f->descriptor, v);
        /* A value this build does not know (a newer sender) survives as its number. */
        return ev ? json_string(ev->name) : json_integer(v);
    }
    case PROTOBUF_C_TYPE_STRING:
        return enc_string(*(char *const *)p);
    case PROTOBUF_C_TYPE_BYTES:
        return enc_bytes((const ProtobufCBinaryData *)p);
    case PROTOBUF_C_TYPE_MESSAGE: {
        const ProtobufCMessage *m = *(ProtobufCMessage *const *)p;
        return m ? enc_message(m, emit_defaults) : json_null();
    }
    }
    return NULL;
}

static int is_map_field(const ProtobufCFieldDescriptor *f)
{
    if (f->label != PROTOBUF_C_LABEL_REPEATED || f->type != PROTOBUF_C_TYPE_MESSAGE)
        return 0;
    const ProtobufCMessageDescriptor *ed = f->descriptor;
    size_t nl = ed->short_name ? strlen(ed->short_name) : 0;
    if (nl < 5 || strcmp(ed->short_name + nl - 5, "Entry") != 0 || ed->n_fields != 2)
        return 0;
    const ProtobufCFieldDescriptor *k = protobuf_c_message_descriptor_get_field(ed, 1);
    const ProtobufCFieldDescriptor *v = protobuf_c_message_descriptor_get_field(ed, 2);
    return k && v && strcmp(k->name, "key") == 0 && strcmp(v->name, "value") == 0;
}

/* A map key as JSON object keys must be: text. */
static char *map_key_text(const ProtobufCFieldDescriptor *kf, const void *p)
{
    char buf[24];
    int n;
    switch (kf->type) {
    case PROTOBUF_C_TYPE_STRING: {
        const char *s = *(char *const *)p;
        return strdup(s ? s : "");
    }
    case PROTOBUF_C_TYPE_BOOL:
        return strdup(*(const protobuf_c_boolean *)p ? "true" : "false");
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
        n = snprintf(buf, sizeof(buf), "%" PRId32, *(const int32_t *)p);
        break;
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        n = snprintf(buf, sizeof(buf), "%" PRIu32, *(const uint32_t *)p);
        break;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        n = snprintf(buf, sizeof(buf), "%" PRId64, *(const int64_t *)p);
        break;
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        n = snprintf(buf, sizeof(buf), "%" PRIu64, *(const uint64_t *)p);
        break;
    default:
        return NULL; /* protobuf allows no other key types */
    }
    return n < 0 ? NULL : strdup(buf);
}

static json_t *enc_map(const ProtobufCFieldDescriptor *f, ProtobufCMessage *const *entries,
                       size_t n, int emit_defaults)
{
    const ProtobufCMessageDescriptor *ed = f->descriptor;
    const ProtobufCFieldDescriptor *kf = protobuf_c_message_descriptor_get_field(ed, 1);
    const ProtobufCFieldDescriptor *vf = protobuf_c_message_descriptor_get_field(ed, 2);
    json_t *obj = json_object();
    if (!obj)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        const ProtobufCMessage *e = entries[i];
        if (!e)
            continue;
        char *key = map_key_text(kf, (const char *)e + kf->offset);
        if (!key)
            goto err;
        json_t *keyj = enc_string(key); /* the same U+FFFD repair as values */
        free(key);
        if (!keyj)
            goto err;
        json_t *v;
        if (vf->type == PROTOBUF_C_TYPE_MESSAGE &&
            !*(ProtobufCMessage *const *)((const char *)e + vf->offset))
            v = json_object(); /* a map value is always there; absent means empty */
        else
            v = enc_value(vf, (const char *)e + vf->offset, emit_defaults);
        /* A repeated key overwrites the earlier one: the last entry wins, as on the wire. */
        int rc = v ? json_object_setn_new(obj, json_string_value(keyj), json_string_length(keyj), v)
                   : -1;
        json_decref(keyj);
        if (rc != 0)
            goto err;
    }
    return obj;
err:
    json_decref(obj);
    return NULL;
}

static size_t type_size(ProtobufCType t)
{
    switch (t) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        return 4;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        return 8;
    case PROTOBUF_C_TYPE_FLOAT:
        return sizeof(float);
    case PROTOBUF_C_TYPE_DOUBLE:
        return sizeof(double);
    case PROTOBUF_C_TYPE_BOOL:
        return sizeof(protobuf_c_boolean);
    case PROTOBUF_C_TYPE_ENUM:
        return sizeof(int);
    case PROTOBUF_C_TYPE_STRING:
        return sizeof(char *);
    case PROTOBUF_C_TYPE_BYTES:
        return sizeof(ProtobufCBinaryData);
    case PROTOBUF_C_TYPE_MESSAGE:
        return sizeof(ProtobufCMessage *);
    }
    return 0;
}

/* Proto3 implicit presence: a field is "set" when it differs from its zero value. */
static int is_zero(const ProtobufCFieldDescriptor *f, const void *p)
{
    switch (f->type) {
    case PROTOBUF_C_TYPE_STRING: {
        const char *s = *(char *const *)p;
        return !s || !s[0];
    }
    case PROTOBUF_C_TYPE_BYTES:
        return ((const ProtobufCBinaryData *)p)->len == 0;
    case PROTOBUF_C_TYPE_MESSAGE:
        return *(ProtobufCMessage *const *)p == NULL;
    default: {
        /* Bytewise, so that -0.0 counts as set, as other protobuf runtimes do. */
        static const unsigned char zero[8];
        return memcmp(p, zero, type_size(f->type)) == 0;
    }
    }
}

static int is_present(const ProtobufCMessage *msg, const ProtobufCFieldDescriptor *f)
{
    const char *base = (const char *)msg;
    const void *p = base + f->offset;

    if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF)
        return *(const uint32_t *)(base + f->quantifier_offset) == f->id;
    switch (f->label) {
    case PROTOBUF_C_LABEL_REQUIRED:
        return 1;
    case PROTOBUF_C_LABEL_OPTIONAL:
        if (f->type == PROTOBUF_C_TYPE_MESSAGE || f->type == PROTOBUF_C_TYPE_STRING) {
            const void *ptr = *(const void *const *)p;
            return ptr != NULL && ptr != f->default_value;
        }
        return *(const protobuf_c_boolean *)(base + f->quantifier_offset) != 0;
    case PROTOBUF_C_LABEL_REPEATED:
        return *(const size_t *)(base + f->quantifier_offset) > 0;
    case PROTOBUF_C_LABEL_NONE:
        return !is_zero(f, p);
    }
    return 0;
}

static json_t *enc_field(const ProtobufCMessage *msg, const ProtobufCFieldDescriptor *f,
                         int emit_defaults)
{
    const char *base = (const char *)msg;

    if (f->label != PROTOBUF_C_LABEL_REPEATED)
        return enc_value(f, base + f->offset, emit_defaults);

    size_t n = *(const size_t *)(base + f->quantifier_offset);
    const char *arr = *(const char *const *)(base + f->offset);
    if (!arr)
        n = 0;
    if (is_map_field(f))
        return enc_map(f, (ProtobufCMessage *const *)arr, n, emit_defaults);

    json_t *a = json_array();
    if (!a)
        return NULL;
    size_t es = type_size(f->type);
    for (size_t i = 0; i < n; i++) {
        json_t *v = enc_value(f, arr + i * es, emit_defaults);
        if (!v || json_array_append_new(a, v) != 0) {
            json_decref(a);
            return NULL;
        }
    }
    return a;
}

static json_t *enc_message(const ProtobufCMessage *msg, int emit_defaults)
{
    const ProtobufCMessageDescriptor *desc = msg->descriptor;
    json_t *obj = json_object();
    if (!obj)
        return NULL;
    for (unsigned i = 0; i < desc->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &desc->fields[i];
        int present = is_present(msg, f);
        /*
         * With emit_defaults the implicit-presence and repeated fields are written even when
         * empty; fields with explicit presence (optional, oneof) stay out while unset, as in
         * other runtimes' "emit unpopulated".
         */
        int emit = present ||
                   (emit_defaults && !(f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
                    (f->label == PROTOBUF_C_LABEL_NONE || f->label == PROTOBUF_C_LABEL_REPEATED));
        if (!emit)
            continue;
        json_t *v = enc_field(msg, f, emit_defaults);
        if (!v || json_object_set_new(obj, f->name, v) != 0) {
            json_decref(obj);
            return NULL;
        }
    }
    return obj;
}

json_t *pbjson_encode(const ProtobufCMessage *msg, int emit_defaults)
{
    if (!msg || !msg->descriptor)
        return NULL;
    return enc_message(msg, emit_defaults);
}

/* ---- decoding ------------------------------------------------------------------------------ */

static ProtobufCMessage *dec_message(pbjson_dec_t *dc, const ProtobufCMessageDescriptor *desc,
                                     const json_t *j, const char *path, int depth);

/* A decimal integer: optional '-', then digits only (no '+', spaces, or exponent). */
static int is_decimal(const char *s, size_t len, int allow_minus)
{
    size_t i = 0;
    if (allow_minus && len > 0 && s[0] == '-')
        i = 1;
    if (i == len)
        return 0;
    for (; i < len; i++)
        if (s[i] < '0' || s[i] > '9')
            return 0;
    return 1;
}

/*
 * Read a signed integer within [min, max] from a JSON number or a decimal string. Returns 0, or
 * -1 after reporting.
 */
static int dec_signed(pbjson_dec_t *dc, const ProtobufCFieldDescriptor *f, const json_t *j,
                      const char *path, int64_t min, int64_t max, int64_t *out)
{
    char g[128];
    int64_t v;

    if (json_is_integer(j)) {
        v = json_integer_value(j);
    } else if (json_is_real(j)) {
        double d = json_real_value(j);
        if (d <= -PBJSON_EXACT_MAX || d >= PBJSON_EXACT_MAX) {
            dec_fail(dc, path, "out_of_range",
                     "field \"%s\" is too large to be exact as a JSON number; send it as a "
                     "decimal string",
                     f->name);
            return -1;
        }
        v = (int64_t)d;
        if ((double)v != d) {
            dec_fail(dc, path, "wrong_type", "field \"%s\" must be an integer; got %s", f->name,
                     got(g, sizeof(g), j));
            return -1;
        }
    } else if (json_is_string(j)) {
        const char *s = json_string_value(j);
        size_t len = json_string_length(j);
        if (!is_decimal(s, len, 1)) {
            dec_fail(dc, path, "wrong_type",
                     "field \"%s\" must be an integer (a JSON number or a decimal string); got %s",
                     f->name, got(g, sizeof(g), j));
            return -1;
        }
        errno = 0;
        long long ll = strtoll(s, NULL, 10);
        if (errno == ERANGE) {
            dec_fail(dc, path, "out_of_range",
                     "field \"%s\" must be between %" PRId64 " and %" PRId64 "; got %s", f->name,
                     min, max, got(g, sizeof(g), j));
            return -1;
        }
        v = ll;
    } else {
        dec_fail(dc, path, "wrong_type",
                 "field \"%s\" must be an integer (a JSON number or a decimal string); got %s",
                 f->name, got(g, sizeof(g), j));
        return -1;
    }
    if (v < min || v > max) {
        dec_fail(dc, path, "out_of_range",
                 "field \"%s\" must be between %" PRId64 " and %" PRId64 "; got %s", f->name, min,
                 max, got(g, sizeof(g), j));
        return -1;
    }
    *out = v;
    return 0;
}

static int dec_unsigned(pbjson_dec_t *dc, const ProtobufCFieldDescriptor *f, const json_t *j,
                        const char *path, uint64_t max, uint64_t *out)
{
    char g[128];
    uint64_t v;

    if (json_is_integer(j)) {
        json_int_t i = json_integer_value(j);
        if (i < 0) {
            dec_fail(dc, path, "out_of_range",
                     "field \"%s\" must be between 0 and %" PRIu64 "; got %s", f->name, max,
                     got(g, sizeof(g), j));
            return -1;
        }
        v = (uint64_t)i;
    } else if (json_is_real(j)) {
        double d = json_real_value(j);
        if (d < 0 || d >= PBJSON_EXACT_MAX) {
            dec_fail(dc, path, "out_of_range",
                     "field \"%s\" must be between 0 and %" PRIu64
                     " (large values as a decimal string); got %s",
                     f->name, max, got(g, sizeof(g), j));
            return -1;
        }
        v = (uint64_t)d;
        if ((double)v != d) {
            dec_fail(dc, path, "wrong_type", "field \"%s\" must be an integer; got %s", f->name,
                     got(g, sizeof(g), j));
            return -1;
        }
    } else if (json_is_string(j)) {
        const char *s = json_string_value(j);
        size_t len = json_string_length(j);
        if (len > 0 && s[0] == '-' && is_decimal(s, len, 1)) {
            dec_fail(dc, path, "out_of_range",
                     "field \"%s\" must be between 0 and %" PRIu64 "; got %s", f->name, max,
                     got(g, sizeof(g), j));
            return -1;
        }
        if (!is_decimal(s, len, 0)) {
            dec_fail(dc, path, "wrong_type",
                     "field \"%s\" must be an integer (a JSON number or a decimal string); got %s",
                     f->name, got(g, sizeof(g), j));
            return -1;
        }
        errno = 0;
        unsigned long long ull = strtoull(s, NULL, 10);
        if (errno == ERANGE) {
            dec_fail(dc, path, "out_of_range",
                     "field \"%s\" must be between 0 and %" PRIu64 "; got %s", f->name, max,
                     got(g, sizeof(g), j));
            return -1;
        }
        v = ull;
    } else {
        dec_fail(dc, path, "wrong_type",
                 "field \"%s\" must be an integer (a JSON number or a decimal string); got %s",
                 f->name, got(g, sizeof(g), j));
        return -1;
    }
    if (v > max) {
        dec_fail(dc, path, "out_of_range", "field \"%s\" must be between 0 and %" PRIu64 "; got %s",
                 f->name, max, got(g, sizeof(g), j));
        return -1;
    }
    *out = v;
    return 0;
}

static int dec_double(pbjson_dec_t *dc, const ProtobufCFieldDescriptor *f, const json_t *j,
                      const char *path, int is_float, double *out)
{
    char g[128];
    double d;

    if (json_is_number(j)) {
        d = json_number_value(j);
    } else if (json_is_string(j)) {
        const char *s = json_string_value(j);
        size_t len = json_string_length(j);
        char *end = NULL;
        int whole = strlen(s) == len;
        if (whole && strcmp(s, "NaN") == 0) {
            d = NAN;
        } else if (whole && strcmp(s, "Infinity") == 0) {
            d = INFINITY;
        } else if (whole && strcmp(s, "-Infinity") == 0) {
            d = -INFINITY;
        } else {
            /* strtod alone would take " 1", "0x1p3" and "inf"; JSON numbers are narrower. */
            int ok = len > 0 && whole;
            for (size_t i = 0; ok && i < len; i++)
                if (!strchr("0123456789+-.eE", s[i]))
                    ok = 0;
            errno = 0;
            d = ok ? strtod(s, &end) : 0;
            if (!ok || end != s + len) {
                dec_fail(dc, path, "wrong_type",
                         "field \"%s\" must be a number (or \"NaN\", \"Infinity\", "
                         "\"-Infinity\"); got %s",
                         f->name, got(g, sizeof(g), j));
                return -1;
            }
            /* Underflow just loses precision; overflow would turn "1e999" into infinity. */
            if (errno == ERANGE && (d > 1 || d < -1)) {
                dec_fail(dc, path, "out_of_range",
                         "field \"%s\" is outside the range of a "
                         "double; got %s",
                         f->name, got(g, sizeof(g), j));
                return -1;
            }
        }
    } else {
        dec_fail(dc, path, "wrong_type", "field \"%s\" must be a number; got %s", f->name,
                 got(g, sizeof(g), j));
        return -1;
    }
    if (is_float && d == d && d >= -DBL_MAX && d <= DBL_MAX && (d > FLT_MAX || d < -FLT_MAX)) {
        dec_fail(dc, path, "out_of_range", "field \"%s\" is outside the range of a float; got %s",
                 f->name, got(g, sizeof(g), j));
        return -1;
    }
    *out = d;
    return 0;
}

/*
 * Check a text value (a string field or a map key): UTF-8, no NUL (a C string would silently
 * end there) and the length limit. Returns 0 or -1 after reporting.
 */
static int dec_check_text(pbjson_dec_t *dc, const char *name, const char *s, size_t len,
                          const char *path)
{
    if (!utf8_valid(s, len)) {
        dec_fail(dc, path, "bad_utf8", "field \"%s\" is not valid UTF-8", name);
        return -1;
    }
    if (memchr(s, '\0', len)) {
        dec_fail(dc, path, "bad_char",
                 "field \"%s\" contains a NUL character (\\u0000), which is not allowed", name);
        return -1;
    }
    if (dc->max_string && len > dc->max_string) {
        dec_fail(dc, path, "too_long", "field \"%s\" is %zu bytes long; at most %zu are allowed",
                 name, len, dc->max_string);
        return -1;
    }
    return 0;
}

static int b64_val(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+' || c == '-')
        return 62;
    if (c == '/' || c == '_')
        return 63;
    return -1;
}

/* Standard or URL-safe alphabet, padded or not, as the canonical mapping accepts. */
static int b64_decode(const char *s, size_t len, ProtobufCBinaryData *out)
{
    size_t n = len;
    if (n > 0 && n % 4 == 0 && s[n - 1] == '=') {
        n--;
        if (s[n - 1] == '=')
            n--;
    }
    if (n % 4 == 1)
        return -1;
    size_t olen = n / 4 * 3 + (n % 4 ? n % 4 - 1 : 0);
    out->len = 0;
    out->data = NULL;
    if (olen == 0)
        return n == 0 ? 0 : -1;
    uint8_t *d = malloc(olen);
    if (!d)
        return -ENOMEM;
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        int v = b64_val((unsigned char)s[i]);
        if (v < 0) {
            free(d);
            return -1;
        }
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            d[o++] = (uint8_t)(acc >> bits);
        }
    }
    out->len = o;
    out->data = d;
    return 0;
}

static int dec_enum(pbjson_dec_t *dc, const ProtobufCFieldDescriptor *f, const json_t *j,
                    const char *path, int *out)
{
    const ProtobufCEnumDescriptor *ed = f->descriptor;
    char g[128], choices[360];

    if (json_is_string(j)) {
        const char *s = json_string_value(j);
        size_t len = json_string_length(j);
        if (strlen(s) == len) {
            const ProtobufCEnumValue *ev = protobuf_c_enum_descriptor_get_value_by_name(ed, s);
            if (ev) {
                *out = ev->value;
                return 0;
            }
            size_t plen = enum_prefix_len(ed);
            for (unsigned i = 0; i < ed->n_values; i++) {
                if (enum_short_eq(ed->values[i].name, plen, s, len)) {
                    *out = ed->values[i].value;
                    return 0;
                }
            }
        }
    } else if (json_is_integer(j)) {
        json_int_t v = json_integer_value(j);
        if (v >= INT32_MIN && v <= INT32_MAX && protobuf_c_enum_descriptor_get_value(ed, (int)v)) {
            *out = (int)v;
            return 0;
        }
    } else {
        dec_fail(dc, path, "wrong_type",
                 "field \"%s\" must be an enum value name (a string) or number; got %s", f->name,
                 got(g, sizeof(g), j));
        return -1;
    }
    enum_choices(ed, choices, sizeof(choices));
    dec_fail(dc, path, "bad_enum", "field \"%s\" must be one of %s; got %s", f->name, choices,
             got(g, sizeof(g), j));
    return -1;
}

/*
 * Decode one value of field f (a singular field, or one element of a repeated field) into the
 * storage at dst. Returns 0, or -1 after reporting; dst is only written on success.
 */
static int dec_value(pbjson_dec_t *dc, const ProtobufCFieldDescriptor *f, const json_t *j,
                     void *dst, const char *path, int depth)
{
    char g[128];
    int64_t i64;
    uint64_t u64;
    double d;

    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
        if (dec_signed(dc, f, j, path, INT32_MIN, INT32_MAX, &i64) < 0)
            return -1;
        *(int32_t *)dst = (int32_t)i64;
        return 0;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        if (dec_signed(dc, f, j, path, INT64_MIN, INT64_MAX, &i64) < 0)
            return -1;
        *(int64_t *)dst = i64;
        return 0;
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        if (dec_unsigned(dc, f, j, path, UINT32_MAX, &u64) < 0)
            return -1;
        *(uint32_t *)dst = (uint32_t)u64;
        return 0;
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        if (dec_unsigned(dc, f, j, path, UINT64_MAX, &u64) < 0)
            return -1;
        *(uint64_t *)dst = u64;
        return 0;
    case PROTOBUF_C_TYPE_FLOAT:
        if (dec_double(dc, f, j, path, 1, &d) < 0)
            return -1;
        *(float *)dst = (float)d;
        return 0;
    case PROTOBUF_C_TYPE_DOUBLE:
        if (dec_double(dc, f, j, path, 0, &d) < 0)
            return -1;
        *(double *)dst = d;
        return 0;
    case PROTOBUF_C_TYPE_BOOL:
        if (!json_is_boolean(j)) {
            dec_fail(dc, path, "wrong_type", "field \"%s\" must be true or false; got %s", f->name,
                     got(g, sizeof(g), j));
            return -1;
        }
        *(protobuf_c_boolean *)dst = json_is_true(j);
        return 0;
    case PROTOBUF_C_TYPE_ENUM:
        return dec_enum(dc, f, j, path, (int *)dst);
    case PROTOBUF_C_TYPE_STRING: {
        if (!json_is_string(j)) {
            dec_fail(dc, path, "wrong_type", "field \"%s\" must be a string; got %s", f->name,
                     got(g, sizeof(g), j));
            return -1;
        }
        const char *s = json_string_value(j);
        size_t len = json_string_length(j);
        if (dec_check_text(dc, f->name, s, len, path) < 0)
            return -1;
        char *copy = malloc(len + 1);
        if (!copy) {
            dec_oom(dc, path);
            return -1;
        }
        memcpy(copy, s, len + 1);
        *(char **)dst = copy;
        return 0;
    }
    case PROTOBUF_C_TYPE_BYTES: {
        if (!json_is_string(j)) {
            dec_fail(dc, path, "wrong_type", "field \"%s\" must be a base64 string; got %s",
                     f->name, got(g, sizeof(g), j));
            return -1;
        }
        ProtobufCBinaryData bd;
        int rc = b64_decode(json_string_value(j), json_string_length(j), &bd);
        if (rc == -ENOMEM) {
            dec_oom(dc, path);
            return -1;
        }
        if (rc < 0) {
            dec_fail(dc, path, "bad_base64", "field \"%s\" must be base64; got %s", f->name,
                     got(g, sizeof(g), j));
            return -1;
        }
        *(ProtobufCBinaryData *)dst = bd;
        return 0;
    }
    case PROTOBUF_C_TYPE_MESSAGE: {
        if (!json_is_object(j)) {
            dec_fail(dc, path, "wrong_type", "field \"%s\" must be a JSON object; got %s", f->name,
                     got(g, sizeof(g), j));
            return -1;
        }
        ProtobufCMessage *m = dec_message(dc, f->descriptor, j, path, depth + 1);
        if (!m)
            return -1;
        /* Kept even when some of its fields failed: the caller may check the rest. */
        *(ProtobufCMessage **)dst = m;
        return 0;
    }
    }
    return -1;
}

/* A map key arrives as JSON object key text; parse it as the key field's type. */
static int dec_map_key(pbjson_dec_t *dc, const ProtobufCFieldDescriptor *kf,
                       const ProtobufCFieldDescriptor *mf, const char *key, size_t len, void *dst,
                       const char *path)
{
    if (kf->type == PROTOBUF_C_TYPE_STRING) {
        if (dec_check_text(dc, mf->name, key, len, path) < 0)
            return -1;
        char *copy = malloc(len + 1);
        if (!copy) {
            dec_oom(dc, path);
            return -1;
        }
        memcpy(copy, key, len + 1);
        *(char **)dst = copy;
        return 0;
    }
    if (kf->type == PROTOBUF_C_TYPE_BOOL) {
        if (strcmp(key, "true") == 0 || strcmp(key, "false") == 0) {
            *(protobuf_c_boolean *)dst = key[0] == 't';
            return 0;
        }
        dec_fail(dc, path, "wrong_type", "the keys of field \"%s\" must be \"true\" or \"false\"",
                 mf->name);
        return -1;
    }
    /* Integer keys: reuse the number rules by viewing the key as a JSON string. */
    json_t *kj = json_stringn_nocheck(key, len);
    if (!kj) {
        dec_oom(dc, path);
        return -1;
    }
    ProtobufCFieldDescriptor kfn = *kf;
    kfn.name = mf->name;
    int rc = dec_value(dc, &kfn, kj, dst, path, 0);
    json_decref(kj);
    return rc;
}

static void dec_map(pbjson_dec_t *dc, ProtobufCMessage *msg, const ProtobufCFieldDescriptor *f,
                    const json_t *j, const char *path, int depth)
{
    char g[128], kpath[PBJSON_PATH_MAX];
    const ProtobufCMessageDescriptor *ed = f->descriptor;
    const ProtobufCFieldDescriptor *kf = protobuf_c_message_descriptor_get_field(ed, 1);
    const ProtobufCFieldDescriptor *vf = protobuf_c_message_descriptor_get_field(ed, 2);

    if (!json_is_object(j)) {
        dec_fail(dc, path, "wrong_type", "field \"%s\" must be a JSON object (a map); got %s",
                 f->name, got(g, sizeof(g), j));
        return;
    }
    size_t n = json_object_size(j);
    if (n == 0)
        return;
    ProtobufCMessage **arr = calloc(n, sizeof(*arr));
    if (!arr) {
        dec_oom(dc, path);
        return;
    }
    size_t k = 0;
    for (void *it = json_object_iter((json_t *)j); it && k < n;
         it = json_object_iter_next((json_t *)j, it)) {
        const char *key = json_object_iter_key(it);
        size_t klen = json_object_iter_key_len(it);
        const json_t *v = json_object_iter_value(it);
        path_key(kpath, sizeof(kpath), path, key, klen);
        if (json_is_null(v)) {
            dec_fail(dc, kpath, "wrong_type", "the values of field \"%s\" must not be null",
                     f->name);
            continue;
        }
        ProtobufCMessage *e = malloc(ed->sizeof_message);
        if (!e) {
            dec_oom(dc, kpath);
            break;
        }
        protobuf_c_message_init(ed, e);
        int ok = dec_map_key(dc, kf, f, key, klen, (char *)e + kf->offset, kpath) == 0;
        if (ok) {
            /* Name the entry in messages about its value: "value" would mean nothing to a sender.
             */
            char vname[PBJSON_PATH_MAX];
            path_key(vname, sizeof(vname), f->name, key, klen);
            ProtobufCFieldDescriptor vfn = *vf;
            vfn.name = vname;
            ok = dec_value(dc, &vfn, v, (char *)e + vf->offset, kpath, depth) == 0;
        }
        if (ok)
            arr[k++] = e;
        else
            protobuf_c_message_free_unpacked(e, NULL);
    }
    if (k == 0) {
        free(arr);
        return;
    }
    *(size_t *)((char *)msg + f->quantifier_offset) = k;
    *(ProtobufCMessage ***)((char *)msg + f->offset) = arr;
}

static void dec_repeated(pbjson_dec_t *dc, ProtobufCMessage *msg, const ProtobufCFieldDescriptor *f,
                         const json_t *j, const char *path, int depth)
{
    char g[128], ipath[PBJSON_PATH_MAX];

    if (!json_is_array(j)) {
        dec_fail(dc, path, "wrong_type", "field \"%s\" must be a JSON array; got %s", f->name,
                 got(g, sizeof(g), j));
        return;
    }
    size_t n = json_array_size(j);
    if (n == 0)
        return;
    size_t es = type_size(f->type);
    char *arr = calloc(n, es);
    if (!arr) {
        dec_oom(dc, path);
        return;
    }
    /* Elements that fail are left out, so the array never holds a half-built value. */
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        const json_t *v = json_array_get(j, i);
        path_index(ipath, sizeof(ipath), path, i);
        if (json_is_null(v)) {
            dec_fail(dc, ipath, "wrong_type", "the elements of field \"%s\" must not be null",
                     f->name);
            continue;
        }
        if (dec_value(dc, f, v, arr + k * es, ipath, depth) == 0)
            k++;
    }
    if (k == 0) {
        free(arr);
        return;
    }
    *(size_t *)((char *)msg + f->quantifier_offset) = k;
    *(char **)((char *)msg + f->offset) = arr;
}

static void dec_field(pbjson_dec_t *dc, ProtobufCMessage *msg, const ProtobufCFieldDescriptor *f,
                      const json_t *j, const char *path, int depth)
{
    char *base = (char *)msg;

    if (json_is_null(j))
        return; /* null is "absent": the field keeps its default */
    if (f->label == PROTOBUF_C_LABEL_REPEATED) {
        if (is_map_field(f))
            dec_map(dc, msg, f, j, path, depth);
        else
            dec_repeated(dc, msg, f, j, path, depth);
        return;
    }
    if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
        /* Members share storage: a second one would overwrite (and leak) the first. */
        uint32_t *oneof_case = (uint32_t *)(base + f->quantifier_offset);
        if (*oneof_case != 0 && *oneof_case != f->id) {
            const ProtobufCFieldDescriptor *other =
                protobuf_c_message_descriptor_get_field(msg->descriptor, *oneof_case);
            dec_fail(dc, path, "not_allowed",
                     "field \"%s\" cannot be set together with field \"%s\" (only one of them "
                     "may be set)",
                     f->name, other ? other->name : "?");
            return;
        }
    }
    if (dec_value(dc, f, j, base + f->offset, path, depth) < 0)
        return;
    if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF)
        *(uint32_t *)(base + f->quantifier_offset) = f->id;
    else if (f->label == PROTOBUF_C_LABEL_OPTIONAL && f->type != PROTOBUF_C_TYPE_STRING &&
             f->type != PROTOBUF_C_TYPE_MESSAGE)
        *(protobuf_c_boolean *)(base + f->quantifier_offset) = 1;
}

/* j must be an object. Returns the message (possibly with fields left out), or NULL. */
static ProtobufCMessage *dec_message(pbjson_dec_t *dc, const ProtobufCMessageDescriptor *desc,
                                     const json_t *j, const char *path, int depth)
{
    char fpath[PBJSON_PATH_MAX], q[96];

    if (depth > PBJSON_MAX_DEPTH) {
        dec_fail(dc, path, "bad_json", "the input nests more than %d levels deep",
                 PBJSON_MAX_DEPTH);
        return NULL;
    }
    ProtobufCMessage *msg = malloc(desc->sizeof_message);
    if (!msg) {
        dec_oom(dc, path);
        return NULL;
    }
    protobuf_c_message_init(desc, msg);

    for (void *it = json_object_iter((json_t *)j); it && !dc->oom;
         it = json_object_iter_next((json_t *)j, it)) {
        const char *key = json_object_iter_key(it);
        size_t klen = json_object_iter_key_len(it);
        const json_t *v = json_object_iter_value(it);
        path_key(fpath, sizeof(fpath), path, key, klen);
        /* A key with a NUL in it matches no field name, so it is unknown rather than cut short. */
        const ProtobufCFieldDescriptor *f =
            strlen(key) == klen ? protobuf_c_message_descriptor_get_field_by_name(desc, key) : NULL;
        if (!f) {
            dec_fail(dc, fpath, "unknown_field", "%s has no field %s", desc->name,
                     quote(q, sizeof(q), key, klen));
            continue;
        }
        dec_field(dc, msg, f, v, fpath, depth);
    }
    return msg;
}

static ProtobufCMessage *decode(const ProtobufCMessageDescriptor *desc, const json_t *json,
                                const char *prefix, size_t max_string, errlist_t *el, size_t *nerr)
{
    char g[128];
    pbjson_dec_t dc = {.el = el, .max_string = max_string, .nerr = 0, .oom = 0};
    const char *path = prefix ? prefix : "";

    if (nerr)
        *nerr = 0;
    if (!desc)
        return NULL;
    if (!json || !json_is_object(json)) {
        dec_fail(&dc, path, "wrong_type", "a %s must be a JSON object; got %s", desc->name,
                 json ? got(g, sizeof(g), json) : "nothing");
        if (nerr)
            *nerr = dc.nerr;
        return NULL;
    }
    ProtobufCMessage *msg = dec_message(&dc, desc, json, path, 0);
    if (nerr)
        *nerr = dc.nerr;
    if (dc.oom) {
        protobuf_c_message_free_unpacked(msg, NULL);
        return NULL;
    }
    return msg;
}

ProtobufCMessage *pbjson_decode(const ProtobufCMessageDescriptor *desc, const json_t *json,
                                const char *prefix, size_t max_string, errlist_t *el)
{
    size_t nerr = 0;
    ProtobufCMessage *msg = decode(desc, json, prefix, max_string, el, &nerr);
    if (msg && nerr > 0) {
        protobuf_c_message_free_unpacked(msg, NULL);
        return NULL;
    }
    return msg;
}

ProtobufCMessage *pbjson_decode_partial(const ProtobufCMessageDescriptor *desc, const json_t *json,
                                        const char *prefix, size_t max_string, errlist_t *el,
                                        size_t *nerr)
{
    return decode(desc, json, prefix, max_string, el, nerr);
}
