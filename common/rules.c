/*
 * rules: loading, validating and compiling rule sets, and the matcher. The matcher works by
 * reconciliation: from the subject's listings and grades after the event it derives the measures
 * that should be in force, within the scope the event touches, and compares them with the
 * measures in force, emitting an APPLY for each one missing and a REVOKE for each one no longer
 * due.
 */
#include "grow.h"
#include "rules.h"

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ids.h"
#include "pbjson.h"

#define MS_PER_DAY (86400LL * 1000)
#define CST_OFFSET_MS (8LL * 3600 * 1000)

/* --- small helpers ---------------------------------------------------------------------------- */

/*
 * SHA-256 with the algorithm fetched once and a context reused per thread: OpenSSL 3 otherwise
 * looks the algorithm up and allocates a context on every call, which cost more than the hash.
 */
static _Thread_local EVP_MD_CTX *rules__sha_ctx;
static _Thread_local EVP_MD *rules__sha256;

void rules_sha256_hex(const void *data, size_t len, char out[65])
{
    EVP_MD_CTX *ctx;
    EVP_MD *sha256;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    if (!(sha256 = rules__sha256))
        sha256 = rules__sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
    if (!(ctx = rules__sha_ctx))
        ctx = rules__sha_ctx = EVP_MD_CTX_new();
    if (!sha256 || !ctx || !EVP_DigestInit_ex2(ctx, sha256, NULL) ||
        !EVP_DigestUpdate(ctx, data, len) || !EVP_DigestFinal_ex(ctx, md, &n))
        n = 0; /* cannot happen with the built-in SHA-256; keeps out well defined */
    static const char hex[] = "0123456789abcdef";
    for (unsigned int i = 0; i < 32; i++) {
        unsigned char b = i < n ? md[i] : 0;
        out[2 * i] = hex[b >> 4];
        out[2 * i + 1] = hex[b & 15];
    }
    out[64] = '\0';
}

/* SHA-256 over the parts, each followed by a 0x1f separator, as 32 hex characters. A part may
 * be split in pieces: a NULL in parts ends a part early (its pieces are concatenated). */
static void rules__id(const char **parts, size_t n, char out[33])
{
    char buf[2048];
    size_t len = 0;
    for (size_t i = 0; i < n; i++) {
        if (!parts[i]) { /* a separator */
            if (len < sizeof(buf))
                buf[len++] = 0x1f;
            continue;
        }
        size_t pl = strlen(parts[i]);
        if (len + pl + 1 > sizeof(buf))
            pl = sizeof(buf) - len - 1; /* parts are validated to be far shorter */
        memcpy(buf + len, parts[i], pl);
        len += pl;
    }
    char hex[65];
    rules_sha256_hex(buf, len, hex);
    memcpy(out, hex, 32);
    out[32] = '\0';
}

/* A decimal number into buf (at least 21 bytes); returns buf. Without snprintf: ids are made for
 * every action, and formatting was a tenth of the matcher's time. */
static const char *rules__decimal(int64_t v, char buf[24])
{
    char tmp[24];
    size_t n = 0;
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    do {
        tmp[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    size_t o = 0;
    if (v < 0)
        buf[o++] = '-';
    while (n)
        buf[o++] = tmp[--n];
    buf[o] = '\0';
    return buf;
}

/* The id of an APPLY; the trigger is given in up to three pieces (prefix, code, "=grade"). */
static void rules__apply_id3(const char *cause_event_id, int64_t ruleset_version,
                             const char *memorandum_id, const char *department, const char *measure,
                             const char *t1, const char *t2, const char *t3, char out[33])
{
    char v[24];
    const char *parts[] = {"apply",
                           NULL,
                           cause_event_id,
                           NULL,
                           rules__decimal(ruleset_version, v),
                           NULL,
                           memorandum_id,
                           NULL,
                           department,
                           NULL,
                           measure,
                           NULL,
                           t1,
                           t2,
                           t3,
                           NULL};
    rules__id(parts, sizeof(parts) / sizeof(parts[0]), out);
}

void rules_apply_id(const char *cause_event_id, int64_t ruleset_version, const char *memorandum_id,
                    const char *department, const char *measure, const char *trigger, char out[33])
{
    rules__apply_id3(cause_event_id, ruleset_version, memorandum_id, department, measure, trigger,
                     "", "", out);
}

void rules_revoke_id(const char *apply_action_id, char out[33])
{
    const char *parts[] = {"revoke", NULL, apply_action_id, NULL};
    rules__id(parts, 4, out);
}

int64_t rules_date_ms(const char *date)
{
    int y, m, d;
    char tail;
    if (!date || strlen(date) != 10 || date[4] != '-' || date[7] != '-' ||
        sscanf(date, "%4d-%2d-%2d%c", &y, &m, &d, &tail) != 3)
        return -1;
    for (int i = 0; i < 10; i++)
        if (i != 4 && i != 7 && (date[i] < '0' || date[i] > '9'))
            return -1;
    static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    if (y < 1970 || y > 2200 || m < 1 || m > 12 || d < 1 || d > mdays[m - 1] + (m == 2 && leap))
        return -1;
    /* Days from the civil date (Howard Hinnant's algorithm). */
    int yy = m <= 2 ? y - 1 : y;
    int era = yy / 400;
    int yoe = yy - era * 400;
    int doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    long long days = (long long)era * 146097 + doe - 719468;
    return days * MS_PER_DAY - CST_OFFSET_MS;
}

static char *rules__strdup(const char *s)
{
    return strdup(s ? s : "");
}

/* Replace a protobuf-c string field (never freeing the shared empty default, and using it for
 * an empty value: free_unpacked leaves it alone). */
static int rules__set_str(char **field, const char *v)
{
    char *n = v && v[0] ? strdup(v) : (char *)protobuf_c_empty_string;
    if (!n)
        return -1;
    if (*field && *field != protobuf_c_empty_string)
        free(*field);
    *field = n;
    return 0;
}

/* Grow a protobuf-c repeated pointer array by one; returns the new slot or NULL. */
static void **rules__push(void ***arr, size_t *n)
{
    void **a = realloc(*arr, (*n + 1) * sizeof(void *));
    if (!a)
        return NULL;
    *arr = a;
    a[*n] = NULL;
    return &a[(*n)++];
}

static void rules__remove(void **arr, size_t *n, size_t i)
{
    memmove(&arr[i], &arr[i + 1], (*n - i - 1) * sizeof(void *));
    (*n)--;
}

/*
 * The result's arena. A matcher result is many small protobuf-c messages and strings that all die
 * together, so they are bump-allocated from chunks the result owns and released at once by
 * rules_result_clear; one chunk per thread is kept for the next result. Malloc and free of each
 * string were the largest cost of the matcher (docs/performance.md).
 */
#define RULES_CHUNK_SIZE (32 * 1024)

typedef struct rules_chunk_s {
    struct rules_chunk_s *next;
    size_t size, used;
    max_align_t data[]; /* size bytes */
} rules_chunk_t;

static _Thread_local rules_chunk_t *rules__spare_chunk;

static void *rules__alloc(rules_result_t *res, size_t n)
{
    n = (n + sizeof(max_align_t) - 1) & ~(sizeof(max_align_t) - 1);
    rules_chunk_t *c = res->arena;
    if (!c || c->size - c->used < n) {
        rules_chunk_t *nc;
        if (n <= RULES_CHUNK_SIZE && rules__spare_chunk) {
            nc = rules__spare_chunk;
            rules__spare_chunk = NULL;
        } else {
            size_t size = n > RULES_CHUNK_SIZE ? n : RULES_CHUNK_SIZE;
            if (!(nc = malloc(sizeof(*nc) + size)))
                return NULL;
            nc->size = size;
        }
        nc->used = 0;
        nc->next = c;
        res->arena = c = nc;
    }
    void *p = (unsigned char *)c->data + c->used;
    c->used += n;
    return p;
}

void rules_thread_done(void)
{
    EVP_MD_CTX_free(rules__sha_ctx);
    EVP_MD_free(rules__sha256);
    free(rules__spare_chunk);
    rules__sha_ctx = NULL;
    rules__sha256 = NULL;
    rules__spare_chunk = NULL;
}

static void rules__arena_release(rules_result_t *res)
{
    for (rules_chunk_t *c = res->arena, *next; c; c = next) {
        next = c->next;
        if (!rules__spare_chunk && c->size == RULES_CHUNK_SIZE)
            rules__spare_chunk = c;
        else
            free(c);
    }
    res->arena = NULL;
}

/* A string in the arena ("" is protobuf-c's shared empty string). */
static char *rules__astr(rules_result_t *res, const char *s)
{
    if (!s || !s[0])
        return (char *)protobuf_c_empty_string;
    size_t len = strlen(s) + 1;
    char *p = rules__alloc(res, len);
    if (p)
        memcpy(p, s, len);
    return p;
}

/* Grow an array of the result by one (in the arena); returns the new slot or NULL. */
static void **rules__apush(rules_result_t *res, void ***arr, size_t *n, size_t *cap)
{
    if (*n == *cap) {
        size_t ncap = *cap ? *cap * 2 : 8;
        void **a = rules__alloc(res, ncap * sizeof(void *));
        if (!a)
            return NULL;
        if (*n)
            memcpy(a, *arr, *n * sizeof(void *));
        *arr = a;
        *cap = ncap;
    }
    (*arr)[*n] = NULL;
    return &(*arr)[(*n)++];
}

/* --- loading ------------------------------------------------------------------------------- */

static int rules__cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int rules__read_file(const char *path, char **data, size_t *len, errlist_t *el,
                            const char *name)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        errlist_add(el, name, "", "io_error", "cannot open: %s", strerror(errno));
        return -1;
    }
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        if (n == cap) {
            if (cap >= RULES_MAX_FILE_BYTES) {
                errlist_add(el, name, "", "too_long", "file is larger than %d bytes",
                            RULES_MAX_FILE_BYTES);
                free(buf);
                fclose(f);
                return -1;
            }
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
            cap *= 2;
        }
        size_t r = fread(buf + n, 1, cap - n, f);
        n += r;
        if (r == 0)
            break;
    }
    int bad = !buf || ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        errlist_add(el, name, "", "io_error", "cannot read the file");
        return -1;
    }
    *data = buf;
    *len = n;
    return 0;
}

/* Decode one file's JSON into a message of desc, errors named by file and JSON path. */
static ProtobufCMessage *rules__decode(const ProtobufCMessageDescriptor *desc, const char *data,
                                       size_t len, const char *name, errlist_t *el)
{
    json_error_t jerr;
    json_t *json = json_loadb(data, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!json) {
        errlist_add(el, name, "", "bad_json", "invalid JSON at line %d, column %d: %s", jerr.line,
                    jerr.column, jerr.text);
        return NULL;
    }
    if (!json_is_object(json)) {
        errlist_add(el, name, "", "wrong_type", "the file must hold one JSON object");
        json_decref(json);
        return NULL;
    }
    errlist_t local;
    errlist_init(&local);
    ProtobufCMessage *msg = pbjson_decode(desc, json, "", 4096, &local);
    json_decref(json);
    for (size_t i = 0; i < local.count; i++)
        errlist_add(el, name, local.items[i].path, local.items[i].code, "%s",
                    local.items[i].message);
    errlist_clear(&local);
    return msg;
}

static int rules__add_file(Jrp__V1__RuleSet *rs, const char *name, char *data, size_t len)
{
    void **slot = rules__push((void ***)&rs->files, &rs->n_files);
    if (!slot)
        return -1;
    Jrp__V1__RuleFile *f = malloc(sizeof(*f));
    if (!f) {
        rs->n_files--;
        return -1;
    }
    jrp__v1__rule_file__init(f);
    f->path = rules__strdup(name);
    f->content.data = (uint8_t *)data; /* now owned by f */
    f->content.len = len;
    *slot = f;
    return f->path ? 0 : -1;
}

Jrp__V1__RuleSet *rules_load_dir(const char *dir, errlist_t *el)
{
    size_t errors_before = el->count;
    Jrp__V1__RuleSet *rs = malloc(sizeof(*rs));
    char **names = NULL;
    size_t n_names = 0;
    DIR *d = NULL;
    if (!rs)
        goto oom;
    jrp__v1__rule_set__init(rs);

    d = opendir(dir);
    if (!d) {
        errlist_add(el, dir, "", "io_error", "cannot open the rule directory: %s", strerror(errno));
        goto err;
    }
    struct dirent *de;
    while ((de = readdir(d))) {
        size_t l = strlen(de->d_name);
        if (de->d_name[0] == '.' || l < 6 || strcmp(de->d_name + l - 5, ".json"))
            continue;
        if (n_names == RULES_MAX_FILES) {
            errlist_add(el, dir, "", "too_many", "more than %d rule files", RULES_MAX_FILES);
            goto err;
        }
        char **nn = realloc(names, (n_names + 1) * sizeof(char *));
        if (!nn)
            goto oom;
        names = nn;
        if (!(names[n_names] = strdup(de->d_name)))
            goto oom;
        n_names++;
    }
    closedir(d);
    d = NULL;
    qsort(names, n_names, sizeof(char *), rules__cmp_str);

    int have_catalogue = 0;
    for (size_t i = 0; i < n_names; i++) {
        char path[4096];
        snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
        struct stat sb;
        if (stat(path, &sb) || !S_ISREG(sb.st_mode))
            continue;
        char *data;
        size_t len;
        if (rules__read_file(path, &data, &len, el, names[i]))
            continue;
        if (rules__add_file(rs, names[i], data, len)) {
            free(data);
            goto oom;
        }
        if (!strcmp(names[i], "catalogue.json")) {
            have_catalogue = 1;
            Jrp__V1__Catalogue *cat = (Jrp__V1__Catalogue *)rules__decode(
                &jrp__v1__catalogue__descriptor, data, len, names[i], el);
            if (cat) {
                rs->catalogue = cat->measures; /* moved into rs */
                rs->n_catalogue = cat->n_measures;
                cat->measures = NULL;
                cat->n_measures = 0;
                jrp__v1__catalogue__free_unpacked(cat, NULL);
            }
        } else if (!strcmp(names[i], "escalations.json")) {
            Jrp__V1__EscalationFile *ef = (Jrp__V1__EscalationFile *)rules__decode(
                &jrp__v1__escalation_file__descriptor, data, len, names[i], el);
            if (ef) {
                rs->escalations = ef->escalations;
                rs->n_escalations = ef->n_escalations;
                ef->escalations = NULL;
                ef->n_escalations = 0;
                jrp__v1__escalation_file__free_unpacked(ef, NULL);
            }
        } else {
            Jrp__V1__Memorandum *m = (Jrp__V1__Memorandum *)rules__decode(
                &jrp__v1__memorandum__descriptor, data, len, names[i], el);
            if (!m)
                continue;
            if (rules__set_str(&m->source_file, names[i])) {
                jrp__v1__memorandum__free_unpacked(m, NULL);
                goto oom;
            }
            if (!m->version[0]) { /* no explicit version: the content decides it */
                char hex[65];
                rules_sha256_hex(data, len, hex);
                hex[12] = '\0';
                if (rules__set_str(&m->version, hex)) {
                    jrp__v1__memorandum__free_unpacked(m, NULL);
                    goto oom;
                }
            }
            void **slot = rules__push((void ***)&rs->memoranda, &rs->n_memoranda);
            if (!slot) {
                jrp__v1__memorandum__free_unpacked(m, NULL);
                goto oom;
            }
            *slot = m;
        }
    }
    if (!have_catalogue)
        errlist_add(el, "catalogue.json", "", "missing_file",
                    "the rule directory has no catalogue.json (the measure catalogue)");

    /* The digest covers every file's name and bytes, in name order. */
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (!ctx)
        goto oom;
    EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
    for (size_t i = 0; i < rs->n_files; i++) {
        EVP_DigestUpdate(ctx, rs->files[i]->path, strlen(rs->files[i]->path) + 1);
        EVP_DigestUpdate(ctx, rs->files[i]->content.data, rs->files[i]->content.len);
        EVP_DigestUpdate(ctx, "\0", 1);
    }
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdn = 0;
    EVP_DigestFinal_ex(ctx, md, &mdn);
    EVP_MD_CTX_free(ctx);
    char hex[65];
    for (unsigned int i = 0; i < 32 && i < mdn; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    if (rules__set_str(&rs->digest, hex))
        goto oom;

    if (el->count == errors_before)
        rules_validate(rs, el);
    if (el->count != errors_before)
        goto err;
    for (size_t i = 0; i < n_names; i++)
        free(names[i]);
    free(names);
    return rs;

oom:
    errlist_add(el, dir, "", "no_memory", "out of memory while loading rules");
err:
    if (d)
        closedir(d);
    for (size_t i = 0; i < n_names; i++)
        free(names[i]);
    free(names);
    if (rs)
        jrp__v1__rule_set__free_unpacked(rs, NULL);
    return NULL;
}

/* --- validation ---------------------------------------------------------------------------- */

static const char *rules__memo_file(const Jrp__V1__Memorandum *m)
{
    return m->source_file[0] ? m->source_file : m->id;
}

static const Jrp__V1__CatalogueMeasure *rules__catalogue_find(const Jrp__V1__RuleSet *rs,
                                                              const char *code)
{
    for (size_t i = 0; i < rs->n_catalogue; i++)
        if (!strcmp(rs->catalogue[i]->code, code))
            return rs->catalogue[i];
    return NULL;
}

static int rules__is_field_name(const char *s)
{
    if (!*s || strlen(s) > 64)
        return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_'))
            return 0;
    return 1;
}

static int rules__is_grade(const char *s)
{
    size_t n = strlen(s);
    if (n < 1 || n > 8)
        return 0;
    for (; *s; s++)
        if (!((*s >= 'A' && *s <= 'Z') || *s == '+' || *s == '-'))
            return 0;
    return 1;
}

static int rules__has_type(const Jrp__V1__SubjectType *types, size_t n, Jrp__V1__SubjectType t)
{
    for (size_t i = 0; i < n; i++)
        if (types[i] == t)
            return 1;
    return 0;
}

static void rules__validate_types(const Jrp__V1__SubjectType *types, size_t n, const char *file,
                                  const char *path, errlist_t *el)
{
    for (size_t i = 0; i < n; i++) {
        char p[256];
        snprintf(p, sizeof(p), "%s[%zu]", path, i);
        if (types[i] == JRP__V1__SUBJECT_TYPE__SUBJECT_TYPE_UNSPECIFIED)
            errlist_add(el, file, p, "bad_enum",
                        "subject type must be enterprise, person or vehicle");
        for (size_t j = 0; j < i; j++)
            if (types[j] == types[i])
                errlist_add(el, file, p, "duplicate", "subject type listed twice");
    }
}

static void rules__validate_catalogue(const Jrp__V1__RuleSet *rs, errlist_t *el)
{
    const char *file = "catalogue.json";
    if (rs->n_catalogue == 0)
        errlist_add(el, file, "measures", "missing_field", "the catalogue lists no measure");
    for (size_t i = 0; i < rs->n_catalogue; i++) {
        const Jrp__V1__CatalogueMeasure *c = rs->catalogue[i];
        char p[128];
        snprintf(p, sizeof(p), "measures[%zu].code", i);
        if (!ids_is_measure_code(c->code))
            errlist_add(el, file, p, "bad_format", "measure code \"%s\" must match [A-Z][A-Z0-9_]+",
                        c->code);
        for (size_t j = 0; j < i; j++)
            if (!strcmp(rs->catalogue[j]->code, c->code))
                errlist_add(el, file, p, "duplicate", "measure \"%s\" is listed twice", c->code);
        snprintf(p, sizeof(p), "measures[%zu].kind", i);
        if (c->kind == JRP__V1__MEASURE_KIND__MEASURE_KIND_UNSPECIFIED)
            errlist_add(el, file, p, "missing_field", "kind must be incentive or penalty");
        snprintf(p, sizeof(p), "measures[%zu].name", i);
        if (!c->name[0])
            errlist_add(el, file, p, "missing_field", "every measure needs a name");
        snprintf(p, sizeof(p), "measures[%zu].basis", i);
        if (c->kind == JRP__V1__MEASURE_KIND__MEASURE_KIND_PENALTY && !c->basis[0])
            errlist_add(
                el, file, p, "missing_basis",
                "penalty measure \"%s\" must cite its legal basis (全国失信惩戒措施基础清单)",
                c->code);
    }
}

static void rules__validate_memo(const Jrp__V1__RuleSet *rs, size_t mi, errlist_t *el)
{
    const Jrp__V1__Memorandum *m = rs->memoranda[mi];
    const char *file = rules__memo_file(m);
    char p[256];
    if (!ids_is_memorandum_id(m->id))
        errlist_add(el, file, "id", m->id[0] ? "bad_format" : "missing_field",
                    "memorandum id \"%s\" must match [a-z0-9_.-]+", m->id);
    for (size_t j = 0; j < mi; j++)
        if (!strcmp(rs->memoranda[j]->id, m->id))
            errlist_add(el, file, "id", "duplicate", "memorandum id \"%s\" is used by two files",
                        m->id);
    if (!m->title[0])
        errlist_add(el, file, "title", "missing_field", "every memorandum needs a title");
    if (m->kind == JRP__V1__MEASURE_KIND__MEASURE_KIND_UNSPECIFIED)
        errlist_add(el, file, "kind", "missing_field", "kind must be incentive or penalty");
    int64_t from = rules_date_ms(m->effective_from);
    if (from < 0)
        errlist_add(el, file, "effective_from", m->effective_from[0] ? "bad_date" : "missing_field",
                    "effective_from must be a real date YYYY-MM-DD, got \"%s\"", m->effective_from);
    if (m->effective_until[0]) {
        int64_t until = rules_date_ms(m->effective_until);
        if (until < 0)
            errlist_add(el, file, "effective_until", "bad_date",
                        "effective_until must be a real date YYYY-MM-DD or null, got \"%s\"",
                        m->effective_until);
        else if (from >= 0 && until < from)
            errlist_add(el, file, "effective_until", "bad_date",
                        "effective_until %s is before effective_from %s", m->effective_until,
                        m->effective_from);
    }
    if (m->n_triggers == 0)
        errlist_add(el, file, "triggers", "missing_field",
                    "a memorandum needs at least one trigger");
    for (size_t t = 0; t < m->n_triggers; t++) {
        const Jrp__V1__Trigger *tr = m->triggers[t];
        int is_list = tr->list[0] != '\0', is_grade = tr->grade_field[0] != '\0';
        snprintf(p, sizeof(p), "triggers[%zu]", t);
        if (is_list == is_grade) {
            errlist_add(el, file, p, "bad_trigger",
                        "a trigger has either \"list\" or \"grade_field\" with \"grades\"");
            continue;
        }
        if (is_list) {
            snprintf(p, sizeof(p), "triggers[%zu].list", t);
            if (!ids_is_list_code(tr->list)) {
                errlist_add(el, file, p, "bad_list_code",
                            "list code \"%s\" must be red|focus|black.<field>", tr->list);
            } else if (m->kind == JRP__V1__MEASURE_KIND__MEASURE_KIND_INCENTIVE &&
                       strncmp(tr->list, "red.", 4)) {
                errlist_add(el, file, p, "bad_trigger",
                            "an incentive memorandum can only be triggered by a red list, not %s",
                            tr->list);
            } else if (m->kind == JRP__V1__MEASURE_KIND__MEASURE_KIND_PENALTY &&
                       !strncmp(tr->list, "red.", 4)) {
                errlist_add(el, file, p, "bad_trigger",
                            "a penalty memorandum cannot be triggered by a red list (%s)",
                            tr->list);
            }
            if (tr->n_grades) {
                snprintf(p, sizeof(p), "triggers[%zu].grades", t);
                errlist_add(el, file, p, "not_allowed", "a list trigger takes no grades");
            }
        } else {
            snprintf(p, sizeof(p), "triggers[%zu].grade_field", t);
            if (!rules__is_field_name(tr->grade_field))
                errlist_add(el, file, p, "bad_format", "grade_field \"%s\" must match [a-z0-9_]+",
                            tr->grade_field);
            snprintf(p, sizeof(p), "triggers[%zu].grades", t);
            if (tr->n_grades == 0)
                errlist_add(el, file, p, "missing_field", "a grade trigger needs grades");
            for (size_t g = 0; g < tr->n_grades; g++) {
                snprintf(p, sizeof(p), "triggers[%zu].grades[%zu]", t, g);
                if (!rules__is_grade(tr->grades[g]))
                    errlist_add(el, file, p, "bad_format",
                                "grade \"%s\" must be 1 to 8 of A-Z, + or -", tr->grades[g]);
            }
        }
    }
    if (m->n_subject_types == 0)
        errlist_add(el, file, "subject_types", "missing_field",
                    "subject_types must name at least one of enterprise, person, vehicle");
    rules__validate_types(m->subject_types, m->n_subject_types, file, "subject_types", el);
    if (m->n_measures == 0)
        errlist_add(el, file, "measures", "missing_field",
                    "a memorandum needs at least one measure");
    for (size_t k = 0; k < m->n_measures; k++) {
        const Jrp__V1__MemorandumMeasure *mm = m->measures[k];
        snprintf(p, sizeof(p), "measures[%zu].department", k);
        if (!ids_is_department(mm->department))
            errlist_add(el, file, p, mm->department[0] ? "bad_format" : "missing_field",
                        "department \"%s\" must match [a-z][a-z0-9_]{1,31}", mm->department);
        snprintf(p, sizeof(p), "measures[%zu].measure", k);
        const Jrp__V1__CatalogueMeasure *c = rules__catalogue_find(rs, mm->measure);
        if (!c) {
            errlist_add(el, file, p, "unknown_measure",
                        "measure \"%s\" is not in the measure catalogue", mm->measure);
        } else if (m->kind != JRP__V1__MEASURE_KIND__MEASURE_KIND_UNSPECIFIED &&
                   c->kind != m->kind) {
            errlist_add(el, file, p, "kind_mismatch",
                        "measure \"%s\" is %s in the catalogue but the memorandum is %s",
                        mm->measure,
                        c->kind == JRP__V1__MEASURE_KIND__MEASURE_KIND_PENALTY ? "a penalty"
                                                                               : "an incentive",
                        m->kind == JRP__V1__MEASURE_KIND__MEASURE_KIND_PENALTY ? "a penalty"
                                                                               : "an incentive");
        } else if (c->kind == JRP__V1__MEASURE_KIND__MEASURE_KIND_PENALTY && !mm->basis[0] &&
                   !c->basis[0]) {
            snprintf(p, sizeof(p), "measures[%zu].basis", k);
            errlist_add(el, file, p, "missing_basis", "penalty measure \"%s\" has no legal basis",
                        mm->measure);
        }
        for (size_t j = 0; j < k; j++)
            if (!strcmp(m->measures[j]->department, mm->department) &&
                !strcmp(m->measures[j]->measure, mm->measure))
                errlist_add(el, file, p, "duplicate", "department %s has measure %s twice",
                            mm->department, mm->measure);
        snprintf(p, sizeof(p), "measures[%zu].text", k);
        if (!mm->text[0])
            errlist_add(el, file, p, "missing_field",
                        "every measure needs its text (what the department does)");
        snprintf(p, sizeof(p), "measures[%zu].subject_types", k);
        rules__validate_types(mm->subject_types, mm->n_subject_types, file, p, el);
        for (size_t s = 0; s < mm->n_subject_types; s++)
            if (!rules__has_type(m->subject_types, m->n_subject_types, mm->subject_types[s])) {
                snprintf(p, sizeof(p), "measures[%zu].subject_types[%zu]", k, s);
                errlist_add(el, file, p, "bad_subject_type",
                            "a measure's subject types must be among the memorandum's");
            }
    }
}

static void rules__validate_escalations(const Jrp__V1__RuleSet *rs, errlist_t *el)
{
    const char *file = "escalations.json";
    for (size_t i = 0; i < rs->n_escalations; i++) {
        const Jrp__V1__Escalation *e = rs->escalations[i];
        char p[128];
        snprintf(p, sizeof(p), "escalations[%zu].id", i);
        if (!ids_is_memorandum_id(e->id))
            errlist_add(el, file, p, e->id[0] ? "bad_format" : "missing_field",
                        "escalation id \"%s\" must match [a-z0-9_.-]+", e->id);
        for (size_t j = 0; j < i; j++)
            if (!strcmp(rs->escalations[j]->id, e->id))
                errlist_add(el, file, p, "duplicate", "escalation id \"%s\" is used twice", e->id);
        int by_fields = e->focus_fields_at_least != 0, by_time = e->list[0] != '\0';
        snprintf(p, sizeof(p), "escalations[%zu]", i);
        if (by_fields == by_time) {
            errlist_add(el, file, p, "bad_escalation",
                        "an escalation has either focus_fields_at_least, or list with "
                        "not_lifted_within_days");
        } else if (by_fields && (e->focus_fields_at_least < 2 || e->focus_fields_at_least > 100)) {
            snprintf(p, sizeof(p), "escalations[%zu].focus_fields_at_least", i);
            errlist_add(el, file, p, "out_of_range", "focus_fields_at_least must be 2..100");
        } else if (by_time) {
            snprintf(p, sizeof(p), "escalations[%zu].list", i);
            if (!ids_is_list_code(e->list) || strncmp(e->list, "focus.", 6))
                errlist_add(el, file, p, "bad_list_code", "list \"%s\" must be a focus list",
                            e->list);
            snprintf(p, sizeof(p), "escalations[%zu].not_lifted_within_days", i);
            if (e->not_lifted_within_days < 1 || e->not_lifted_within_days > 3650)
                errlist_add(el, file, p, "out_of_range", "not_lifted_within_days must be 1..3650");
        }
        snprintf(p, sizeof(p), "escalations[%zu].then_list", i);
        if (!ids_is_list_code(e->then_list) || !strncmp(e->then_list, "red.", 4))
            errlist_add(el, file, p, "bad_list_code",
                        "then_list \"%s\" must be a focus or black list code", e->then_list);
        snprintf(p, sizeof(p), "escalations[%zu].then_valid_days", i);
        if (e->then_valid_days < 0 || e->then_valid_days > 3650)
            errlist_add(el, file, p, "out_of_range", "then_valid_days must be 0..3650");
    }
}

int rules_validate(const Jrp__V1__RuleSet *rs, errlist_t *el)
{
    size_t before = el->count;
    rules__validate_catalogue(rs, el);
    for (size_t i = 0; i < rs->n_memoranda; i++)
        rules__validate_memo(rs, i, el);
    rules__validate_escalations(rs, el);
    return el->count == before ? 0 : -1;
}

/* --- the compiled index ---------------------------------------------------------------------- */

typedef struct rules_memo_s {
    const Jrp__V1__Memorandum *m;
    int64_t from_ms;  /* in force from this instant ... */
    int64_t until_ms; /* ... until this one (exclusive), INT64_MAX when open-ended */
    const Jrp__V1__CatalogueMeasure **cat; /* per measure, its catalogue entry */
} rules_memo_t;

struct rules_s {
    Jrp__V1__RuleSet *rs;
    rules_memo_t *memos;
    size_t n_memos;
};

rules_t *rules_compile(Jrp__V1__RuleSet *rs, char *errstr, size_t errstr_size)
{
    errlist_t el;
    errlist_init(&el);
    rules_t *rules = NULL;
    if (rules_validate(rs, &el)) {
        errlist_format(&el, 0, errstr, errstr_size);
        goto err;
    }
    rules = calloc(1, sizeof(*rules));
    if (!rules || !(rules->memos = calloc(rs->n_memoranda + 1, sizeof(rules_memo_t))))
        goto oom;
    rules->rs = rs;
    rules->n_memos = rs->n_memoranda;
    for (size_t i = 0; i < rs->n_memoranda; i++) {
        const Jrp__V1__Memorandum *m = rs->memoranda[i];
        rules_memo_t *rm = &rules->memos[i];
        rm->m = m;
        rm->from_ms = rules_date_ms(m->effective_from);
        /* effective_until is the last day in force: the bound is the next midnight. */
        rm->until_ms =
            m->effective_until[0] ? rules_date_ms(m->effective_until) + MS_PER_DAY : INT64_MAX;
        rm->cat = calloc(m->n_measures + 1, sizeof(*rm->cat));
        if (!rm->cat)
            goto oom;
        for (size_t k = 0; k < m->n_measures; k++)
            rm->cat[k] = rules__catalogue_find(rs, m->measures[k]->measure);
    }
    errlist_clear(&el);
    return rules;
oom:
    snprintf(errstr, errstr_size, "out of memory compiling rules");
err:
    errlist_clear(&el);
    if (rules) {
        rules->rs = NULL; /* freed below */
        rules_destroy(rules);
    }
    jrp__v1__rule_set__free_unpacked(rs, NULL);
    return NULL;
}

void rules_destroy(rules_t *rules)
{
    if (!rules)
        return;
    if (rules->memos)
        for (size_t i = 0; i < rules->n_memos; i++)
            free(rules->memos[i].cat);
    free(rules->memos);
    if (rules->rs)
        jrp__v1__rule_set__free_unpacked(rules->rs, NULL);
    free(rules);
}

const Jrp__V1__RuleSet *rules_ruleset(const rules_t *rules)
{
    return rules->rs;
}

int64_t rules_version(const rules_t *rules)
{
    return rules->rs->version;
}

/* --- the matcher ----------------------------------------------------------------------------- */

void rules_result_init(rules_result_t *res)
{
    memset(res, 0, sizeof(*res));
}

void rules_result_clear(rules_result_t *res)
{
    rules__arena_release(res);
    rules_result_init(res);
}

/* Which measures an event touches: those of one list, of one grade field, and/or incentives. */
typedef struct rules_scope_s {
    const char **lists;
    size_t n_lists;
    const char *grade_field;
    int incentives;
} rules_scope_t;

/* A measure that should be in force. */
typedef struct rules_due_s {
    const rules_memo_t *rm;
    size_t k; /* index of the measure in the memorandum */
    const char *list_code;
    const char *grade_field;
    const char *grade;
    int64_t valid_from_ms;
    int64_t valid_until_ms;
} rules_due_t;

typedef struct rules_ctx_s {
    const rules_t *rules;
    Jrp__V1__SubjectState *st;
    const char *cause_event_id;
    int64_t at_ms; /* memoranda in force at this instant count */
    int64_t now_ms;
    rules_result_t *res;
    rules_due_t *due;
    size_t n_due, cap_due;
} rules_ctx_t;

static int rules__black_active(const Jrp__V1__SubjectState *st)
{
    for (size_t i = 0; i < st->n_listings; i++)
        if (!strncmp(st->listings[i]->list_code, "black.", 6))
            return 1;
    return 0;
}

static int rules__in_scope(const rules_scope_t *sc, const char *list_code, const char *grade_field,
                           Jrp__V1__MeasureKind kind)
{
    if (sc->incentives && kind == JRP__V1__MEASURE_KIND__MEASURE_KIND_INCENTIVE)
        return 1;
    if (list_code && list_code[0])
        for (size_t i = 0; i < sc->n_lists; i++)
            if (!strcmp(sc->lists[i], list_code))
                return 1;
    return sc->grade_field && grade_field && grade_field[0] &&
           !strcmp(sc->grade_field, grade_field);
}

static int rules__memo_applies(const rules_memo_t *rm, Jrp__V1__SubjectType type, int64_t at_ms)
{
    return at_ms >= rm->from_ms && at_ms < rm->until_ms &&
           rules__has_type(rm->m->subject_types, rm->m->n_subject_types, type);
}

static int rules__measure_applies(const Jrp__V1__MemorandumMeasure *mm, Jrp__V1__SubjectType type)
{
    return mm->n_subject_types == 0 ||
           rules__has_type(mm->subject_types, mm->n_subject_types, type);
}

static int rules__due_push(rules_ctx_t *cx, const rules_due_t *d)
{
    rules_due_t *nd = grow(cx->due, &cx->cap_due, cx->n_due, sizeof(*nd), 16);
    if (!nd)
        return -1;
    cx->due = nd;
    cx->due[cx->n_due++] = *d;
    return 0;
}

static int rules__add_suppressed(rules_result_t *res, const char *dept, const char *measure)
{
    char buf[128];
    snprintf(buf, sizeof(buf), "%s/%s", dept, measure);
    for (size_t i = 0; i < res->n_suppressed; i++)
        if (!strcmp(res->suppressed[i], buf))
            return 0;
    void **slot =
        rules__apush(res, (void ***)&res->suppressed, &res->n_suppressed, &res->cap_suppressed);
    if (!slot || !(*slot = rules__astr(res, buf)))
        return -1;
    return 0;
}

static int rules__add_matched(rules_result_t *res, const Jrp__V1__Memorandum *m)
{
    for (size_t i = 0; i < res->n_matched; i++)
        if (!strcmp(res->matched[i]->id, m->id))
            return 0;
    Jrp__V1__MemorandumRef *ref = rules__alloc(res, sizeof(*ref));
    if (!ref)
        return -1;
    jrp__v1__memorandum_ref__init(ref);
    if (!(ref->id = rules__astr(res, m->id)) || !(ref->version = rules__astr(res, m->version)))
        return -1;
    void **slot = rules__apush(res, (void ***)&res->matched, &res->n_matched, &res->cap_matched);
    if (!slot)
        return -1;
    *slot = ref;
    return 0;
}

/* Collect the measures due in scope from the state's listings and grades. */
static int rules__collect_due(rules_ctx_t *cx, const rules_scope_t *sc)
{
    Jrp__V1__SubjectState *st = cx->st;
    Jrp__V1__SubjectType type = st->subject ? st->subject->type : 0;
    int black = rules__black_active(st);
    for (size_t r = 0; r < cx->rules->n_memos; r++) {
        const rules_memo_t *rm = &cx->rules->memos[r];
        if (!rules__memo_applies(rm, type, cx->at_ms))
            continue;
        for (size_t t = 0; t < rm->m->n_triggers; t++) {
            const Jrp__V1__Trigger *tr = rm->m->triggers[t];
            rules_due_t d = {.rm = rm};
            int hit = 0;
            if (tr->list[0]) {
                for (size_t i = 0; i < st->n_listings && !hit; i++)
                    if (!strcmp(st->listings[i]->list_code, tr->list)) {
                        const Jrp__V1__Listing *l = st->listings[i];
                        d.list_code = l->list_code;
                        d.valid_from_ms = l->valid_from_ms;
                        d.valid_until_ms = l->valid_until_ms;
                        hit = 1;
                    }
            } else {
                for (size_t i = 0; i < st->n_grades && !hit; i++) {
                    const Jrp__V1__Grade *g = st->grades[i];
                    if (strcmp(g->field, tr->grade_field))
                        continue;
                    for (size_t j = 0; j < tr->n_grades && !hit; j++)
                        if (!strcmp(tr->grades[j], g->grade)) {
                            d.grade_field = g->field;
                            d.grade = g->grade;
                            d.valid_from_ms = g->graded_at_ms;
                            hit = 1;
                        }
                }
            }
            if (!hit)
                continue;
            for (size_t k = 0; k < rm->m->n_measures; k++) {
                const Jrp__V1__MemorandumMeasure *mm = rm->m->measures[k];
                Jrp__V1__MeasureKind kind = rm->cat[k]->kind;
                if (!rules__measure_applies(mm, type) ||
                    !rules__in_scope(sc, d.list_code, d.grade_field, kind))
                    continue;
                if (black && kind == JRP__V1__MEASURE_KIND__MEASURE_KIND_INCENTIVE) {
                    /* Penalty wins: an incentive is not applied during a black listing. */
                    if (rules__add_suppressed(cx->res, mm->department, mm->measure) ||
                        rules__add_matched(cx->res, rm->m))
                        return -1;
                    continue;
                }
                d.k = k;
                if (rules__due_push(cx, &d))
                    return -1;
            }
        }
    }
    return 0;
}

static int rules__same(const Jrp__V1__Action *a, const rules_due_t *d)
{
    const Jrp__V1__MemorandumMeasure *mm = d->rm->m->measures[d->k];
    return !strcmp(a->memorandum_id, d->rm->m->id) && !strcmp(a->department, mm->department) &&
           !strcmp(a->measure_code, mm->measure) &&
           !strcmp(a->list_code, d->list_code ? d->list_code : "") &&
           !strcmp(a->grade_field, d->grade_field ? d->grade_field : "") &&
           !strcmp(a->grade, d->grade ? d->grade : "") && a->valid_until_ms == d->valid_until_ms;
}

static Jrp__V1__Subject *rules__subject_copy(const Jrp__V1__Subject *s)
{
    Jrp__V1__Subject *c = malloc(sizeof(*c));
    if (!c)
        return NULL;
    jrp__v1__subject__init(c);
    c->type = s ? s->type : 0;
    c->id = rules__strdup(s ? s->id : "");
    c->name = rules__strdup(s ? s->name : "");
    if (!c->id || !c->name) {
        jrp__v1__subject__free_unpacked(c, NULL);
        return NULL;
    }
    return c;
}

/* The subject, copied into the result's arena. */
static Jrp__V1__Subject *rules__subject_acopy(rules_result_t *res, const Jrp__V1__Subject *s)
{
    Jrp__V1__Subject *c = rules__alloc(res, sizeof(*c));
    if (!c)
        return NULL;
    jrp__v1__subject__init(c);
    c->type = s ? s->type : 0;
    if (!(c->id = rules__astr(res, s ? s->id : "")) ||
        !(c->name = rules__astr(res, s ? s->name : "")))
        return NULL;
    return c;
}

static int rules__emit(rules_ctx_t *cx, Jrp__V1__Action *a)
{
    rules_result_t *res = cx->res;
    void **slot = rules__apush(res, (void ***)&res->actions, &res->n_actions, &res->cap_actions);
    if (!slot)
        return -1;
    *slot = a;
    return 0;
}

/* The id of the APPLY for a due measure. */
static void rules__due_id(const rules_ctx_t *cx, const rules_due_t *d, char id[33])
{
    const Jrp__V1__Memorandum *m = d->rm->m;
    const Jrp__V1__MemorandumMeasure *mm = m->measures[d->k];
    /* The trigger part: "list:<code>" or "grade:<field>=<grade>". */
    char field[80];
    const char *t1 = "list:", *t2 = d->list_code, *t3 = "";
    if (!d->list_code) {
        size_t fl = strlen(d->grade_field);
        if (fl > sizeof(field) - 2)
            fl = sizeof(field) - 2;
        memcpy(field, d->grade_field, fl);
        field[fl] = '=';
        field[fl + 1] = '\0';
        t1 = "grade:", t2 = field, t3 = d->grade;
    }
    rules__apply_id3(cx->cause_event_id, cx->rules->rs->version, m->id, mm->department, mm->measure,
                     t1, t2, t3, id);
}

/* The action t describes, with its subject and every string copied into the result's arena (t
 * points at the rule set's and the state's strings, which may not outlive the result). */
static Jrp__V1__Action *rules__action_acopy(rules_result_t *res, const Jrp__V1__Action *t)
{
    Jrp__V1__Action *a = rules__alloc(res, sizeof(*a));
    if (!a)
        return NULL;
    *a = *t;
    char **strs[] = {&a->action_id,          &a->department,  &a->measure_code,
                     &a->measure_text,       &a->legal_basis, &a->memorandum_id,
                     &a->memorandum_version, &a->list_code,   &a->cause_event_id,
                     &a->revokes_action_id,  &a->grade_field, &a->grade};
    for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]); i++)
        if (!(*strs[i] = rules__astr(res, *strs[i])))
            return NULL;
    return (a->subject = rules__subject_acopy(res, t->subject)) ? a : NULL;
}

/* The APPLY for a due measure, in the result's arena. */
static Jrp__V1__Action *rules__build_apply(rules_ctx_t *cx, const rules_due_t *d, const char *id)
{
    const Jrp__V1__Memorandum *m = d->rm->m;
    const Jrp__V1__MemorandumMeasure *mm = m->measures[d->k];
    const Jrp__V1__CatalogueMeasure *c = d->rm->cat[d->k];
    Jrp__V1__Action t = JRP__V1__ACTION__INIT;
    t.op = JRP__V1__ACTION_OP__ACTION_OP_APPLY;
    t.measure_kind = c->kind;
    t.valid_from_ms = d->valid_from_ms;
    t.valid_until_ms = d->valid_until_ms;
    t.ruleset_version = cx->rules->rs->version;
    t.issued_at_ms = cx->now_ms;
    t.subject = cx->st->subject;
    t.measure_text = mm->text;
    t.legal_basis = mm->basis[0] ? mm->basis : c->basis;
    t.action_id = (char *)id;
    t.department = mm->department;
    t.measure_code = mm->measure;
    t.memorandum_id = m->id;
    t.memorandum_version = m->version;
    t.list_code = (char *)d->list_code;
    t.cause_event_id = (char *)cx->cause_event_id;
    t.grade_field = (char *)d->grade_field;
    t.grade = (char *)d->grade;
    return rules__action_acopy(cx->res, &t);
}

/*
 * What the matcher adds to a state is made of one allocation each: the message with its strings
 * after it (the first string right after the message marks it). Ten mallocs and ten frees per
 * measure applied were a third of the matcher's time. A state holding such parts is released
 * with rules_state_free, which knows both kinds; protobuf-c's free_unpacked knows only its own.
 */

/* The trimmed copy of an APPLY the state keeps (no subject, texts or issue time). */
static Jrp__V1__Action *rules__build_kept(const Jrp__V1__Action *ap)
{
    Jrp__V1__Action *a;
    size_t total = sizeof(*a);
    const char *v[] = {ap->action_id,      ap->department,         ap->measure_code,
                       ap->memorandum_id,  ap->memorandum_version, ap->list_code,
                       ap->cause_event_id, ap->grade_field,        ap->grade};
    size_t lens[sizeof(v) / sizeof(v[0])];
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++)
        total += (lens[i] = strlen(v[i] ? v[i] : "") + 1);
    if (!(a = malloc(total)))
        return NULL;
    jrp__v1__action__init(a);
    char **f[] = {&a->action_id,      &a->department,         &a->measure_code,
                  &a->memorandum_id,  &a->memorandum_version, &a->list_code,
                  &a->cause_event_id, &a->grade_field,        &a->grade};
    char *p = (char *)(a + 1); /* action_id first: the mark of a block */
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        memcpy(p, v[i] ? v[i] : "", lens[i]);
        *f[i] = p;
        p += lens[i];
    }
    a->op = ap->op;
    a->measure_kind = ap->measure_kind;
    a->valid_from_ms = ap->valid_from_ms;
    a->valid_until_ms = ap->valid_until_ms;
    a->ruleset_version = ap->ruleset_version;
    return a;
}

/* Free msg (size bytes; NULL is fine), one block if its first string starts right after it. */
static void rules__block_free(void *msg, size_t size, const char *first)
{
    if (!msg)
        return;
    if (first == (const char *)msg + size)
        free(msg);
    else
        protobuf_c_message_free_unpacked(msg, NULL);
}

static void rules__action_free(Jrp__V1__Action *a)
{
    rules__block_free(a, sizeof(*a), a ? a->action_id : NULL);
}

/* Text and legal basis of a measure as the rule set in force states them ("" if it is gone). */
static void rules__measure_texts(const rules_t *rules, const Jrp__V1__Action *a, const char **text,
                                 const char **basis)
{
    *text = *basis = "";
    for (size_t r = 0; r < rules->n_memos; r++) {
        const rules_memo_t *rm = &rules->memos[r];
        if (strcmp(rm->m->id, a->memorandum_id))
            continue;
        for (size_t k = 0; k < rm->m->n_measures; k++) {
            const Jrp__V1__MemorandumMeasure *mm = rm->m->measures[k];
            if (strcmp(mm->department, a->department) || strcmp(mm->measure, a->measure_code))
                continue;
            *text = mm->text;
            *basis = mm->basis[0] ? mm->basis : rm->cat[k]->basis;
            return;
        }
    }
}

/* The REVOKE of a measure in force, in the result's arena: the APPLY's measure, validity and
 * trigger, with this event as its cause. */
static Jrp__V1__Action *rules__build_revoke(rules_ctx_t *cx, const Jrp__V1__Action *applied)
{
    char id[33];
    const char *text, *basis;
    rules__measure_texts(cx->rules, applied, &text, &basis);
    rules_revoke_id(applied->action_id, id);
    Jrp__V1__Action t = JRP__V1__ACTION__INIT;
    t.op = JRP__V1__ACTION_OP__ACTION_OP_REVOKE;
    t.measure_kind = applied->measure_kind;
    t.valid_from_ms = applied->valid_from_ms;
    t.valid_until_ms = applied->valid_until_ms;
    t.issued_at_ms = cx->now_ms;
    t.ruleset_version = cx->rules->rs->version;
    t.subject = cx->st->subject;
    t.measure_text = (char *)text;
    t.legal_basis = (char *)basis;
    t.action_id = id;
    t.revokes_action_id = applied->action_id;
    t.department = applied->department;
    t.measure_code = applied->measure_code;
    t.memorandum_id = applied->memorandum_id;
    t.memorandum_version = applied->memorandum_version;
    t.list_code = applied->list_code;
    t.cause_event_id = (char *)cx->cause_event_id;
    t.grade_field = applied->grade_field;
    t.grade = applied->grade;
    return rules__action_acopy(cx->res, &t);
}

/* Reconcile the measures in force with those due, within scope. */
static int rules__reconcile(rules_ctx_t *cx, const rules_scope_t *sc)
{
    Jrp__V1__SubjectState *st = cx->st;
    cx->n_due = 0;
    if (rules__collect_due(cx, sc))
        return -1;
    /* REVOKE, in the order they were applied, what is in scope and no longer due. */
    for (size_t i = 0; i < st->n_measures;) {
        Jrp__V1__Action *in_force = st->measures[i];
        int keep = !rules__in_scope(sc, in_force->list_code, in_force->grade_field,
                                    in_force->measure_kind);
        for (size_t j = 0; j < cx->n_due && !keep; j++)
            keep = rules__same(in_force, &cx->due[j]);
        if (keep) {
            i++;
            continue;
        }
        Jrp__V1__Action *rv = rules__build_revoke(cx, in_force);
        if (!rv || rules__emit(cx, rv))
            return -1;
        for (size_t r = 0; r < cx->rules->n_memos; r++)
            if (!strcmp(cx->rules->memos[r].m->id, in_force->memorandum_id) &&
                rules__add_matched(cx->res, cx->rules->memos[r].m))
                return -1;
        rules__action_free(in_force);
        rules__remove((void **)st->measures, &st->n_measures, i);
    }
    /* APPLY, in rule order, what is due and not in force. */
    for (size_t j = 0; j < cx->n_due; j++) {
        int present = 0;
        for (size_t i = 0; i < st->n_measures && !present; i++)
            present = rules__same(st->measures[i], &cx->due[j]);
        if (present)
            continue;
        char id[33];
        rules__due_id(cx, &cx->due[j], id);
        Jrp__V1__Action *ap = rules__build_apply(cx, &cx->due[j], id);
        if (!ap)
            return -1;
        Jrp__V1__Action *kept = rules__build_kept(ap);
        void **slot = kept ? rules__push((void ***)&st->measures, &st->n_measures) : NULL;
        if (!slot) {
            rules__action_free(kept);
            return -1;
        }
        *slot = kept;
        if (rules__emit(cx, ap) || rules__add_matched(cx->res, cx->due[j].rm->m))
            return -1;
    }
    return 0;
}

static void rules__count_ops(const rules_result_t *res, size_t *applies, size_t *revokes)
{
    *applies = *revokes = 0;
    for (size_t i = 0; i < res->n_actions; i++) {
        if (res->actions[i]->op == JRP__V1__ACTION_OP__ACTION_OP_APPLY)
            (*applies)++;
        else
            (*revokes)++;
    }
}

/* Outcome from what was emitted and suppressed; `what` describes the event for the reason. */
static void rules__conclude(rules_result_t *res, const char *what)
{
    size_t applies, revokes;
    rules__count_ops(res, &applies, &revokes);
    if (res->n_actions) {
        res->outcome = JRP__V1__DECISION_OUTCOME__DECISION_OUTCOME_APPLIED;
        snprintf(res->reason, sizeof(res->reason), "%s: %zu applied, %zu lifted%s", what, applies,
                 revokes, res->n_suppressed ? ", incentives suppressed by a black listing" : "");
    } else if (res->n_suppressed) {
        res->outcome = JRP__V1__DECISION_OUTCOME__DECISION_OUTCOME_SUPPRESSED;
        snprintf(res->reason, sizeof(res->reason),
                 "%s: incentives suppressed while the subject has an active black listing", what);
    } else {
        res->outcome = JRP__V1__DECISION_OUTCOME__DECISION_OUTCOME_NO_MATCH;
        snprintf(res->reason, sizeof(res->reason), "%s: no memorandum in force gives a measure",
                 what);
    }
}

/* A processed event's record in one block (as the kept measures are): the id right after it. */
static Jrp__V1__ProcessedEvent *rules__processed_new(const char *event_id, int64_t now_ms)
{
    size_t len = strlen(event_id) + 1;
    Jrp__V1__ProcessedEvent *pe = malloc(sizeof(*pe) + len);
    if (!pe)
        return NULL;
    jrp__v1__processed_event__init(pe);
    pe->event_id = memcpy(pe + 1, event_id, len);
    pe->processed_at_ms = now_ms;
    return pe;
}

static void rules__processed_free(Jrp__V1__ProcessedEvent *pe)
{
    rules__block_free(pe, sizeof(*pe), pe ? pe->event_id : NULL);
}

void rules_state_free(Jrp__V1__SubjectState *st)
{
    if (!st)
        return;
    for (size_t i = 0; i < st->n_measures; i++)
        rules__action_free(st->measures[i]);
    free(st->measures);
    for (size_t i = 0; i < st->n_processed; i++)
        rules__processed_free(st->processed[i]);
    free(st->processed);
    st->measures = NULL;
    st->processed = NULL;
    st->n_measures = st->n_processed = 0;
    jrp__v1__subject_state__free_unpacked(st, NULL);
}

static int rules__seen(const Jrp__V1__SubjectState *st, const char *event_id)
{
    for (size_t i = 0; i < st->n_processed; i++)
        if (!strcmp(st->processed[i]->event_id, event_id))
            return 1;
    return 0;
}

/* Remember event_id; forget ids past the horizon and the oldest beyond the cap. */
static int rules__remember(Jrp__V1__SubjectState *st, const char *event_id, int64_t now_ms,
                           const rules_match_opts_t *opts)
{
    for (size_t i = 0; i < st->n_processed;) {
        if (now_ms - st->processed[i]->processed_at_ms > opts->dedup_horizon_ms) {
            rules__processed_free(st->processed[i]);
            rules__remove((void **)st->processed, &st->n_processed, i);
        } else {
            i++;
        }
    }
    while (opts->dedup_max && st->n_processed >= opts->dedup_max) {
        rules__processed_free(st->processed[0]);
        rules__remove((void **)st->processed, &st->n_processed, 0);
    }
    Jrp__V1__ProcessedEvent *pe = rules__processed_new(event_id, now_ms);
    void **slot = pe ? rules__push((void ***)&st->processed, &st->n_processed) : NULL;
    if (!slot) {
        free(pe);
        return -1;
    }
    *slot = pe;
    return 0;
}

static ssize_t rules__find_listing(const Jrp__V1__SubjectState *st, const char *list_code)
{
    for (size_t i = 0; i < st->n_listings; i++)
        if (!strcmp(st->listings[i]->list_code, list_code))
            return (ssize_t)i;
    return -1;
}

static int rules__upsert_listing(Jrp__V1__SubjectState *st, const Jrp__V1__CreditEvent *ev)
{
    Jrp__V1__Listing *l;
    ssize_t at = rules__find_listing(st, ev->list_code);
    if (at >= 0) {
        l = st->listings[at]; /* a renewal: new validity, same listing */
    } else {
        l = malloc(sizeof(*l));
        if (!l)
            return -1;
        jrp__v1__listing__init(l);
        void **slot = rules__push((void ***)&st->listings, &st->n_listings);
        if (!slot) {
            free(l);
            return -1;
        }
        *slot = l;
        l->listed_at_ms = ev->occurred_at_ms;
    }
    l->valid_from_ms = ev->valid_from_ms ? ev->valid_from_ms : ev->occurred_at_ms;
    l->valid_until_ms = ev->valid_until_ms;
    if (rules__set_str(&l->list_code, ev->list_code) ||
        rules__set_str(&l->cause_event_id, ev->event_id) ||
        rules__set_str(&l->source_department, ev->source_department))
        return -1;
    return 0;
}

static int rules__set_grade(Jrp__V1__SubjectState *st, const Jrp__V1__CreditEvent *ev)
{
    Jrp__V1__Grade *g = NULL;
    for (size_t i = 0; i < st->n_grades && !g; i++)
        if (!strcmp(st->grades[i]->field, ev->grade_field))
            g = st->grades[i];
    if (!g) {
        g = malloc(sizeof(*g));
        if (!g)
            return -1;
        jrp__v1__grade__init(g);
        void **slot = rules__push((void ***)&st->grades, &st->n_grades);
        if (!slot) {
            free(g);
            return -1;
        }
        *slot = g;
    }
    g->graded_at_ms = ev->valid_from_ms ? ev->valid_from_ms : ev->occurred_at_ms;
    if (rules__set_str(&g->field, ev->grade_field) || rules__set_str(&g->grade, ev->grade) ||
        rules__set_str(&g->cause_event_id, ev->event_id))
        return -1;
    return 0;
}

static int rules__ensure_subject(Jrp__V1__SubjectState *st, const Jrp__V1__Subject *s)
{
    if (!st->subject) {
        st->subject = rules__subject_copy(s);
        return st->subject ? 0 : -1;
    }
    if (s && s->name[0] && strcmp(st->subject->name, s->name))
        return rules__set_str(&st->subject->name, s->name);
    return 0;
}

static const char *rules__delist_reason(Jrp__V1__DelistReason r)
{
    switch (r) {
    case JRP__V1__DELIST_REASON__DELIST_REASON_EXPIRED:
        return "expired";
    case JRP__V1__DELIST_REASON__DELIST_REASON_REPAIRED:
        return "credit repair";
    case JRP__V1__DELIST_REASON__DELIST_REASON_REVOKED:
        return "revoked";
    default:
        return "unspecified";
    }
}

int rules_match(const rules_t *rules, Jrp__V1__SubjectState *st, const Jrp__V1__CreditEvent *ev,
                int64_t now_ms, const rules_match_opts_t *opts, rules_result_t *res)
{
    rules_ctx_t cx = {.rules = rules,
                      .st = st,
                      .cause_event_id = ev->event_id,
                      .at_ms = ev->occurred_at_ms,
                      .now_ms = now_ms,
                      .res = res};
    char what[200];
    int rc = -1;
    if (rules__seen(st, ev->event_id)) {
        res->outcome = JRP__V1__DECISION_OUTCOME__DECISION_OUTCOME_DUPLICATE;
        snprintf(res->reason, sizeof(res->reason), "event %s was already processed", ev->event_id);
        return 0;
    }
    if (rules__ensure_subject(st, ev->subject) || rules__remember(st, ev->event_id, now_ms, opts))
        goto done;
    res->state_changed = 1;
    st->updated_at_ms = now_ms;
    st->ruleset_version = rules->rs->version;
    int black_before = rules__black_active(st);
    const char *lists[1] = {ev->list_code};
    rules_scope_t sc = {.lists = lists, .n_lists = 1};

    switch (ev->kind) {
    case JRP__V1__EVENT_KIND__EVENT_KIND_LISTED:
        if (rules__upsert_listing(st, ev))
            goto done;
        snprintf(what, sizeof(what), "listed on %s", ev->list_code);
        break;
    case JRP__V1__EVENT_KIND__EVENT_KIND_DELISTED: {
        ssize_t at = rules__find_listing(st, ev->list_code);
        if (at < 0) {
            res->outcome = JRP__V1__DECISION_OUTCOME__DECISION_OUTCOME_NO_MATCH;
            snprintf(res->reason, sizeof(res->reason), "not listed on %s: nothing to lift",
                     ev->list_code);
            rc = 0;
            goto done;
        }
        jrp__v1__listing__free_unpacked(st->listings[at], NULL);
        rules__remove((void **)st->listings, &st->n_listings, (size_t)at);
        snprintf(what, sizeof(what), "delisted from %s (%s)", ev->list_code,
                 rules__delist_reason(ev->delist_reason));
        break;
    }
    case JRP__V1__EVENT_KIND__EVENT_KIND_GRADED:
        if (rules__set_grade(st, ev))
            goto done;
        sc.n_lists = 0;
        sc.grade_field = ev->grade_field;
        snprintf(what, sizeof(what), "graded %s in %s", ev->grade, ev->grade_field);
        break;
    default:
        res->outcome = JRP__V1__DECISION_OUTCOME__DECISION_OUTCOME_NO_MATCH;
        snprintf(res->reason, sizeof(res->reason),
                 "administrative decision %s: no measures; its disclosure deadline is tracked",
                 ev->decision_no);
        rc = 0;
        goto done;
    }
    /* When black status changes, every incentive is in scope (lifted, or back). */
    sc.incentives = black_before != rules__black_active(st);
    if (rules__reconcile(&cx, &sc))
        goto done;
    rules__conclude(res, what);
    rc = 0;
done:
    free(cx.due);
    return rc;
}

int64_t rules_next_lapse(const Jrp__V1__SubjectState *st)
{
    int64_t next = 0;
    for (size_t i = 0; i < st->n_listings; i++) {
        int64_t u = st->listings[i]->valid_until_ms;
        if (u && (!next || u < next))
            next = u;
    }
    return next;
}

int rules_lapse(const rules_t *rules, Jrp__V1__SubjectState *st, int64_t now_ms,
                rules_result_t *res, char *event_id, size_t event_id_size)
{
    const char **lists = NULL;
    size_t n_lists = 0;
    char ident[4096] = "";
    size_t il = 0;
    int rc = -1;
    int black_before = rules__black_active(st);
    rules_ctx_t cx = {.rules = rules, .st = st, .at_ms = now_ms, .now_ms = now_ms, .res = res};
    char **owned = NULL;

    for (size_t i = 0; i < st->n_listings; i++) {
        const Jrp__V1__Listing *l = st->listings[i];
        if (l->valid_until_ms && l->valid_until_ms <= now_ms)
            il += (size_t)snprintf(ident + il, il < sizeof(ident) ? sizeof(ident) - il : 0,
                                   "%s|%s|%lld;", l->cause_event_id, l->list_code,
                                   (long long)l->valid_until_ms);
    }
    if (il == 0) {
        res->outcome = JRP__V1__DECISION_OUTCOME__DECISION_OUTCOME_NO_MATCH;
        snprintf(res->reason, sizeof(res->reason), "no listing has lapsed");
        snprintf(event_id, event_id_size, "%s", "");
        return 0;
    }
    char hex[65];
    rules_sha256_hex(ident, strlen(ident), hex);
    hex[32] = '\0';
    snprintf(event_id, event_id_size, "lapse-%s", hex);
    cx.cause_event_id = event_id;

    /* Remove the lapsed listings, keeping their codes for the scope. */
    owned = calloc(st->n_listings + 1, sizeof(char *));
    lists = calloc(st->n_listings + 1, sizeof(char *));
    if (!owned || !lists)
        goto done;
    for (size_t i = 0; i < st->n_listings;) {
        Jrp__V1__Listing *l = st->listings[i];
        if (l->valid_until_ms && l->valid_until_ms <= now_ms) {
            if (!(owned[n_lists] = strdup(l->list_code)))
                goto done;
            lists[n_lists] = owned[n_lists];
            n_lists++;
            jrp__v1__listing__free_unpacked(l, NULL);
            rules__remove((void **)st->listings, &st->n_listings, i);
        } else {
            i++;
        }
    }
    res->state_changed = 1;
    st->updated_at_ms = now_ms;
    rules_scope_t sc = {
        .lists = lists, .n_lists = n_lists, .incentives = black_before != rules__black_active(st)};
    if (rules__reconcile(&cx, &sc))
        goto done;
    char what[32];
    snprintf(what, sizeof(what), "expired");
    rules__conclude(res, what);
    /* The contract names this reason: a lapse is recorded as "expired". */
    snprintf(res->reason, sizeof(res->reason), "expired");
    rc = 0;
done:
    if (owned)
        for (size_t i = 0; i < n_lists; i++)
            free(owned[i]);
    free(owned);
    free(lists);
    free(cx.due);
    return rc;
}

/* --- escalation ------------------------------------------------------------------------------ */

void rules_escalation_out_clear(rules_escalation_out_t *out)
{
    for (size_t i = 0; i < out->n; i++) {
        jrp__v1__credit_event__free_unpacked(out->events[i], NULL);
        jrp__v1__alert__free_unpacked(out->alerts[i], NULL);
    }
    free(out->events);
    free(out->alerts);
    memset(out, 0, sizeof(*out));
}

static int rules__fired(const Jrp__V1__SubjectState *st, const char *mark)
{
    for (size_t i = 0; i < st->n_escalations_fired; i++)
        if (!strcmp(st->escalations_fired[i], mark))
            return 1;
    return 0;
}

static int rules__listed_on(const Jrp__V1__SubjectState *st, const char *list_code)
{
    return rules__find_listing(st, list_code) >= 0;
}

/* Fire escalation e for st with the given mark (its identity for "fire once"). */
static int rules__fire(const Jrp__V1__Escalation *e, Jrp__V1__SubjectState *st, const char *mark,
                       const char *why, int64_t now_ms, rules_escalation_out_t *out)
{
    char hex[65], id[64];
    rules_sha256_hex(mark, strlen(mark), hex);
    snprintf(id, sizeof(id), "esc-%.32s", hex);
    Jrp__V1__CreditEvent *ev = malloc(sizeof(*ev));
    Jrp__V1__Alert *al = malloc(sizeof(*al));
    void **eslot, **aslot;
    if (!ev || !al) {
        free(ev);
        free(al);
        return -1;
    }
    jrp__v1__credit_event__init(ev);
    jrp__v1__alert__init(al);
    ev->kind = JRP__V1__EVENT_KIND__EVENT_KIND_LISTED;
    ev->occurred_at_ms = now_ms;
    ev->valid_from_ms = now_ms;
    ev->valid_until_ms = e->then_valid_days ? now_ms + e->then_valid_days * MS_PER_DAY : 0;
    ev->subject = rules__subject_copy(st->subject);
    al->kind = JRP__V1__ALERT_KIND__ALERT_KIND_ESCALATION;
    al->raised_at_ms = now_ms;
    al->subject = rules__subject_copy(st->subject);
    char alert_id[80], msg[512];
    snprintf(alert_id, sizeof(alert_id), "alert-%s", id);
    snprintf(msg, sizeof(msg), "escalation %s: %s; listed on %s", e->id, why, e->then_list);
    if (!ev->subject || !al->subject || rules__set_str(&ev->event_id, id) ||
        rules__set_str(&ev->source_department, "jrp") ||
        rules__set_str(&ev->list_code, e->then_list) || rules__set_str(&al->alert_id, alert_id) ||
        rules__set_str(&al->message, msg) || rules__set_str(&al->escalation_id, e->id) ||
        rules__set_str(&al->derived_event_id, id))
        goto oom;
    eslot = rules__push((void ***)&out->events, &out->n);
    if (!eslot)
        goto oom;
    out->n--; /* rules__push counted it; alerts share the count */
    aslot = rules__push((void ***)&out->alerts, &out->n);
    if (!aslot)
        goto oom;
    *eslot = ev;
    *aslot = al;
    void **mslot = rules__push((void ***)&st->escalations_fired, &st->n_escalations_fired);
    if (!mslot || !(*mslot = strdup(mark))) {
        if (mslot)
            st->n_escalations_fired--;
        return -1; /* ev and al now belong to out */
    }
    return 0;
oom:
    jrp__v1__credit_event__free_unpacked(ev, NULL);
    jrp__v1__alert__free_unpacked(al, NULL);
    return -1;
}

int rules_escalate(const rules_t *rules, Jrp__V1__SubjectState *st, int64_t now_ms,
                   rules_escalation_out_t *out)
{
    const Jrp__V1__RuleSet *rs = rules->rs;
    for (size_t i = 0; i < rs->n_escalations; i++) {
        const Jrp__V1__Escalation *e = rs->escalations[i];
        if (rules__listed_on(st, e->then_list))
            continue;
        char mark[2048], why[256];
        if (e->focus_fields_at_least) {
            /* Distinct focus fields; the mark is the set of focus listings, so a new episode
             * (listings changed) may fire again. */
            size_t fields = 0, ml = (size_t)snprintf(mark, sizeof(mark), "%s|", e->id);
            for (size_t a = 0; a < st->n_listings; a++) {
                const char *code = st->listings[a]->list_code;
                if (strncmp(code, "focus.", 6) || !strcmp(code, e->then_list))
                    continue;
                fields++;
                if (ml < sizeof(mark))
                    ml += (size_t)snprintf(mark + ml, sizeof(mark) - ml, "%s;",
                                           st->listings[a]->cause_event_id);
            }
            if (fields < (size_t)e->focus_fields_at_least || rules__fired(st, mark))
                continue;
            snprintf(why, sizeof(why), "on focus lists in %zu fields", fields);
            if (rules__fire(e, st, mark, why, now_ms, out))
                return -1;
        } else {
            ssize_t at = rules__find_listing(st, e->list);
            if (at < 0)
                continue;
            const Jrp__V1__Listing *l = st->listings[at];
            if (l->listed_at_ms + e->not_lifted_within_days * MS_PER_DAY > now_ms)
                continue;
            snprintf(mark, sizeof(mark), "%s|%s", e->id, l->cause_event_id);
            if (rules__fired(st, mark))
                continue;
            snprintf(why, sizeof(why), "%s not lifted within %d days", e->list,
                     e->not_lifted_within_days);
            if (rules__fire(e, st, mark, why, now_ms, out))
                return -1;
        }
    }
    return 0;
}

int64_t rules_next_due(const rules_t *rules, const Jrp__V1__SubjectState *st)
{
    int64_t next = rules_next_lapse(st);
    const Jrp__V1__RuleSet *rs = rules->rs;
    for (size_t i = 0; i < rs->n_escalations; i++) {
        const Jrp__V1__Escalation *e = rs->escalations[i];
        if (e->focus_fields_at_least || rules__listed_on(st, e->then_list))
            continue;
        ssize_t at = rules__find_listing(st, e->list);
        if (at < 0)
            continue;
        char mark[512];
        snprintf(mark, sizeof(mark), "%s|%s", e->id, st->listings[at]->cause_event_id);
        if (rules__fired(st, mark))
            continue;
        int64_t due = st->listings[at]->listed_at_ms + e->not_lifted_within_days * MS_PER_DAY;
        if (!next || due < next)
            next = due;
    }
    return next;
}
