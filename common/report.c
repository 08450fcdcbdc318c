/*
 * report: the effects list read from the ledger's Redis layout, aggregated and rendered.
 */
#include "report.h"

#include <ctype.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grow.h"
#include "jrp/v1/rules.pb-c.h"
#include "workdays.h"

#define REPORT_BATCH 500

void report_init(report_t *r, int64_t from_ms, int64_t to_ms, int64_t now_ms)
{
    memset(r, 0, sizeof(*r));
    r->from_ms = from_ms;
    r->to_ms = to_ms;
    r->now_ms = now_ms;
}

void report_free(report_t *r)
{
    free(r->rows);
    free(r->discs);
    r->rows = NULL;
    r->discs = NULL;
    r->n_rows = r->cap_rows = r->n_discs = r->cap_discs = 0;
}

/* The row for memo x dept, inserted in order when new; NULL when out of memory. */
static report_row_t *report__row(report_t *r, const char *memo, const char *dept)
{
    size_t lo = 0, hi = r->n_rows;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcmp(r->rows[mid].memo, memo);
        if (!c)
            c = strcmp(r->rows[mid].dept, dept);
        if (!c)
            return &r->rows[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    report_row_t *nr = grow(r->rows, &r->cap_rows, r->n_rows, sizeof(*nr), 16);
    if (!nr)
        return NULL;
    r->rows = nr;
    memmove(&r->rows[lo + 1], &r->rows[lo], (r->n_rows - lo) * sizeof(*r->rows));
    r->n_rows++;
    report_row_t *row = &r->rows[lo];
    memset(row, 0, sizeof(*row));
    snprintf(row->memo, sizeof(row->memo), "%s", memo);
    snprintf(row->dept, sizeof(row->dept), "%s", dept);
    return row;
}

int report_add_action(report_t *r, const report_action_t *a)
{
    report_row_t *row = report__row(r, a->memo ? a->memo : "", a->dept ? a->dept : "");
    if (!row)
        return -1;
    const char *st = a->status ? a->status : "issued";
    if (a->op && !strcmp(a->op, "revoke")) {
        row->lifted++;
        return 0;
    }
    row->applied++;
    if (!strcmp(st, "executed"))
        row->executed++;
    else if (!strcmp(st, "rejected"))
        row->rejected++;
    else if ((!a->lifted || a->alerted) && a->due_ms > 0 && a->due_ms <= r->now_ms)
        row->overdue++;
    else
        row->pending++;
    return 0;
}

int report_add_disclosure(report_t *r, const char *dept, int confirmed, int64_t deadline_ms)
{
    size_t i = 0;
    while (i < r->n_discs && strcmp(r->discs[i].dept, dept) < 0)
        i++;
    if (i == r->n_discs || strcmp(r->discs[i].dept, dept)) {
        report_disc_t *nd = grow(r->discs, &r->cap_discs, r->n_discs, sizeof(*nd), 8);
        if (!nd)
            return -1;
        r->discs = nd;
        memmove(&r->discs[i + 1], &r->discs[i], (r->n_discs - i) * sizeof(*r->discs));
        r->n_discs++;
        memset(&r->discs[i], 0, sizeof(r->discs[i]));
        snprintf(r->discs[i].dept, sizeof(r->discs[i].dept), "%s", dept);
    }
    report_disc_t *d = &r->discs[i];
    d->decisions++;
    if (confirmed)
        d->confirmed++;
    else if (deadline_ms > 0 && deadline_ms <= r->now_ms)
        d->breached++;
    else
        d->pending++;
    return 0;
}

char *report_render_json(const report_t *r)
{
    json_t *root = json_object(), *effects = json_array(), *discs = json_array();
    char *out = NULL;
    if (!root || !effects || !discs)
        goto done;
    json_object_set_new(root, "from_ms", json_integer(r->from_ms));
    json_object_set_new(root, "to_ms", json_integer(r->to_ms));
    json_object_set_new(root, "generated_at_ms", json_integer(r->now_ms));
    for (size_t i = 0; i < r->n_rows; i++) {
        const report_row_t *w = &r->rows[i];
        json_t *o =
            json_pack("{s:s,s:s,s:I,s:I,s:I,s:I,s:I,s:I}", "memorandum_id", w->memo, "department",
                      w->dept, "applied", (json_int_t)w->applied, "lifted", (json_int_t)w->lifted,
                      "executed", (json_int_t)w->executed, "rejected", (json_int_t)w->rejected,
                      "pending", (json_int_t)w->pending, "overdue", (json_int_t)w->overdue);
        if (!o || json_array_append_new(effects, o))
            goto done;
    }
    for (size_t i = 0; i < r->n_discs; i++) {
        const report_disc_t *d = &r->discs[i];
        json_t *o =
            json_pack("{s:s,s:I,s:I,s:I,s:I}", "department", d->dept, "decisions",
                      (json_int_t)d->decisions, "confirmed", (json_int_t)d->confirmed, "pending",
                      (json_int_t)d->pending, "breached", (json_int_t)d->breached);
        if (!o || json_array_append_new(discs, o))
            goto done;
    }
    json_object_set(root, "effects", effects);
    json_object_set(root, "disclosures", discs);
    out = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
done:
    json_decref(effects);
    json_decref(discs);
    json_decref(root);
    return out;
}

/* Append s as a CSV field (quoted when it holds a comma, quote, CR or LF). */
static int csv_field(char **buf, size_t *len, size_t *cap, const char *s)
{
    size_t need = *len + 2 * strlen(s) + 4;
    if (need > *cap) {
        size_t ncap = *cap * 2 > need ? *cap * 2 : need;
        char *nb = realloc(*buf, ncap);
        if (!nb)
            return -1;
        *buf = nb;
        *cap = ncap;
    }
    int quote = strpbrk(s, ",\"\r\n") != NULL;
    if (quote)
        (*buf)[(*len)++] = '"';
    for (; *s; s++) {
        if (*s == '"')
            (*buf)[(*len)++] = '"';
        (*buf)[(*len)++] = *s;
    }
    if (quote)
        (*buf)[(*len)++] = '"';
    (*buf)[*len] = '\0';
    return 0;
}

/* Append n raw bytes. */
static int csv_raw(char **buf, size_t *len, size_t *cap, const char *s, size_t n)
{
    if (*len + n + 1 > *cap) {
        size_t ncap = *cap * 2 > *len + n + 1 ? *cap * 2 : *len + n + 1;
        char *nb = realloc(*buf, ncap);
        if (!nb)
            return -1;
        *buf = nb;
        *cap = ncap;
    }
    memcpy(*buf + *len, s, n);
    *len += n;
    (*buf)[*len] = '\0';
    return 0;
}

char *report_render_csv(const report_t *r)
{
    size_t len = 0, cap = 256;
    char *buf = malloc(cap);
    if (!buf)
        return NULL;
    buf[0] = '\0';
    static const char header[] =
        "memorandum_id,department,applied,lifted,executed,rejected,pending,overdue\r\n";
    if (csv_raw(&buf, &len, &cap, header, strlen(header)))
        goto err;
    for (size_t i = 0; i < r->n_rows; i++) {
        const report_row_t *w = &r->rows[i];
        char nums[200];
        int nn = snprintf(nums, sizeof(nums), ",%llu,%llu,%llu,%llu,%llu,%llu\r\n",
                          (unsigned long long)w->applied, (unsigned long long)w->lifted,
                          (unsigned long long)w->executed, (unsigned long long)w->rejected,
                          (unsigned long long)w->pending, (unsigned long long)w->overdue);
        if (csv_field(&buf, &len, &cap, w->memo) || csv_raw(&buf, &len, &cap, ",", 1) ||
            csv_field(&buf, &len, &cap, w->dept) || csv_raw(&buf, &len, &cap, nums, (size_t)nn))
            goto err;
    }
    return buf;
err:
    free(buf);
    return NULL;
}

/* --- reading Redis -------------------------------------------------------------------------- */

static int report__err(char *errstr, size_t errstr_size, redisContext *c, const redisReply *rep,
                       const char *what)
{
    snprintf(errstr, errstr_size, "redis %s: %s", what,
             rep ? (rep->type == REDIS_REPLY_ERROR ? rep->str : "unexpected reply")
                 : (c->errstr[0] ? c->errstr : "no reply"));
    return -1;
}

static const char *field(const redisReply *r, size_t i)
{
    return (i < r->elements && r->element[i]->type == REDIS_REPLY_STRING) ? r->element[i]->str
                                                                          : NULL;
}

/* Called with the HMGET reply (an array, one element per field) of one member of an index;
 * returns 0, or -1 when out of memory. */
typedef int report_row_fn(const redisReply *h, const char *id, void *arg);

/*
 * The members of the sorted set <prefix><index> with a score in [lo, hi] (ZRANGEBYSCORE bounds,
 * e.g. "(123" for an open bound), read in pages of REPORT_BATCH; for each, the fields of the hash
 * <prefix><hash><member> in one pipelined HMGET per page, handed to fn. 0, or -1 with errstr.
 */
static int report__scan(redisContext *c, const char *prefix, const char *index, const char *lo,
                        const char *hi, const char *hash, const char *const *fields,
                        size_t n_fields, report_row_fn *fn, void *arg, char *errstr,
                        size_t errstr_size)
{
    char key[512], hkey[512], off[32], cnt[32];
    const char *argv[2 + 16];
    size_t argvlen[2 + 16];
    if (n_fields > 16) {
        snprintf(errstr, errstr_size, "too many fields");
        return -1;
    }
    snprintf(key, sizeof(key), "%s%s", prefix, index);
    snprintf(cnt, sizeof(cnt), "%d", REPORT_BATCH);
    for (long offset = 0;; offset += REPORT_BATCH) {
        snprintf(off, sizeof(off), "%ld", offset);
        const char *zargv[] = {"ZRANGEBYSCORE", key, lo, hi, "LIMIT", off, cnt};
        redisReply *ids = redisCommandArgv(c, 7, zargv, NULL);
        if (!ids || ids->type != REDIS_REPLY_ARRAY) {
            report__err(errstr, errstr_size, c, ids, "ZRANGEBYSCORE");
            freeReplyObject(ids);
            return -1;
        }
        for (size_t i = 0; i < ids->elements; i++) {
            snprintf(hkey, sizeof(hkey), "%s%s%s", prefix, hash, ids->element[i]->str);
            argv[0] = "HMGET";
            argv[1] = hkey;
            for (size_t f = 0; f < n_fields; f++)
                argv[2 + f] = fields[f];
            for (size_t a = 0; a < 2 + n_fields; a++)
                argvlen[a] = strlen(argv[a]);
            redisAppendCommandArgv(c, (int)(2 + n_fields), argv, argvlen);
        }
        int failed = 0;
        for (size_t i = 0; i < ids->elements; i++) {
            redisReply *h = NULL;
            if (redisGetReply(c, (void **)&h) != REDIS_OK || !h) {
                if (!failed)
                    report__err(errstr, errstr_size, c, NULL, "HMGET");
                failed = 1;
                break; /* the connection is gone: no more replies will come */
            }
            if (!failed && h->type != REDIS_REPLY_ARRAY) {
                report__err(errstr, errstr_size, c, h, "HMGET");
                failed = 1; /* the other replies of the page are still read */
            } else if (!failed && fn(h, ids->element[i]->str, arg)) {
                snprintf(errstr, errstr_size, "out of memory");
                failed = 1;
            }
            freeReplyObject(h);
        }
        size_t got = ids->elements;
        freeReplyObject(ids);
        if (failed)
            return -1;
        if (got < REPORT_BATCH)
            return 0;
    }
}

/* The bounds [from_ms, to_ms) as ZRANGEBYSCORE arguments. */
static void report__bounds(int64_t from_ms, int64_t to_ms, char lo[32], char hi[32])
{
    snprintf(lo, 32, "%lld", (long long)from_ms);
    snprintf(hi, 32, "(%lld", (long long)to_ms);
}

static int report__action_row(const redisReply *h, const char *id, void *arg)
{
    (void)id;
    if (!field(h, 0))
        return 0;
    const char *due = field(h, 4), *lifted = field(h, 5), *alerted = field(h, 6);
    report_action_t a = {field(h, 0),
                         field(h, 1),
                         field(h, 2),
                         field(h, 3),
                         due ? strtoll(due, NULL, 10) : 0,
                         lifted && !strcmp(lifted, "1"),
                         alerted && !strcmp(alerted, "1")};
    return report_add_action(arg, &a);
}

static int report__disclosure_row(const redisReply *h, const char *id, void *arg)
{
    (void)id;
    if (!field(h, 0))
        return 0;
    const char *conf = field(h, 1), *dl = field(h, 2);
    return report_add_disclosure(arg, field(h, 0), conf && !strcmp(conf, "1"),
                                 dl ? strtoll(dl, NULL, 10) : 0);
}

int report_load(redisContext *c, const char *prefix, int64_t from_ms, int64_t to_ms, int64_t now_ms,
                report_t *r, char *errstr, size_t errstr_size)
{
    static const char *const action_fields[] = {"op",  "memo",   "dept",   "status",
                                                "due", "lifted", "alerted"};
    static const char *const disclosure_fields[] = {"dept", "confirmed", "deadline"};
    char lo[32], hi[32];
    report__bounds(from_ms, to_ms, lo, hi);
    report_init(r, from_ms, to_ms, now_ms);
    if (report__scan(c, prefix, REPORT_KEY_ISSUED, lo, hi, REPORT_KEY_ACTION, action_fields, 7,
                     report__action_row, r, errstr, errstr_size) ||
        report__scan(c, prefix, REPORT_KEY_DISCLOSURES, lo, hi, REPORT_KEY_DISCLOSURE,
                     disclosure_fields, 3, report__disclosure_row, r, errstr, errstr_size)) {
        report_free(r);
        return -1;
    }
    return 0;
}

/* --- the subjects list ------------------------------------------------------------------------ */

const char *report_cst_time(int64_t ms, char *buf, size_t size)
{
    int64_t day = workdays_cst_day(ms);
    int64_t in_day = (ms - workdays_cst_day_start_ms(day)) / 1000;
    int y, m, d;
    workdays_civil_from_days(day, &y, &m, &d);
    snprintf(buf, size, "%04d-%02d-%02dT%02d:%02d:%02d+08:00", y, m, d, (int)(in_day / 3600),
             (int)(in_day / 60 % 60), (int)(in_day % 60));
    return buf;
}

static const char *const subject_types[] = {"unspecified", "enterprise", "person", "vehicle"};

static int report__subject_row(const redisReply *h, const char *id, void *arr)
{
    const char *lst = field(h, 3);
    json_t *lists = lst ? json_loads(lst, 0, NULL) : NULL;
    int rc = 0;
    if (json_is_array(lists) && json_array_size(lists)) {
        long t = field(h, 0) ? strtol(field(h, 0), NULL, 10) : 0;
        size_t j;
        json_t *li;
        json_array_foreach(lists, j, li)
        {
            char when[40];
            report_cst_time(json_integer_value(json_object_get(li, "since_ms")), when,
                            sizeof(when));
            json_object_set_new(li, "since", json_string(when));
        }
        json_t *o =
            json_pack("{s:s,s:s,s:s,s:s,s:O}", "subject_key", id, "type",
                      subject_types[t >= 0 && t <= 3 ? t : 0], "id", field(h, 1) ? field(h, 1) : "",
                      "name", field(h, 2) ? field(h, 2) : "", "lists", lists);
        if (!o || json_array_append_new(arr, o))
            rc = -1;
    }
    json_decref(lists);
    return rc;
}

int report_subjects_load(redisContext *c, const char *prefix, json_t **out, char *errstr,
                         size_t errstr_size)
{
    static const char *const fields[] = {"stype", "sid", "name", "listings"};
    json_t *arr = json_array();
    if (!arr) {
        snprintf(errstr, errstr_size, "out of memory");
        return -1;
    }
    if (report__scan(c, prefix, REPORT_KEY_LISTED, "-inf", "+inf", REPORT_KEY_SUBJECT, fields, 4,
                     report__subject_row, arr, errstr, errstr_size)) {
        json_decref(arr);
        return -1;
    }
    *out = arr;
    return 0;
}

char *report_subjects_render(const json_t *subjects, int64_t now_ms, int csv)
{
    if (!csv) {
        json_t *root = json_pack("{s:I,s:O}", "generated_at_ms", (json_int_t)now_ms, "subjects",
                                 (json_t *)subjects);
        char *out = root ? json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
        json_decref(root);
        return out;
    }
    size_t len = 0, cap = 256;
    char *buf = malloc(cap);
    if (!buf)
        return NULL;
    buf[0] = '\0';
    static const char header[] = "subject_type,subject_id,subject_name,list_code,since,"
                                 "valid_until_ms,source_department\r\n";
    if (csv_raw(&buf, &len, &cap, header, strlen(header)))
        goto err;
    size_t i, j;
    json_t *s, *li;
    json_array_foreach(subjects, i, s)
    {
        json_array_foreach(json_object_get(s, "lists"), j, li)
        {
            char until[32];
            snprintf(until, sizeof(until), "%lld",
                     (long long)json_integer_value(json_object_get(li, "valid_until_ms")));
            const char *cells[] = {json_string_value(json_object_get(s, "type")),
                                   json_string_value(json_object_get(s, "id")),
                                   json_string_value(json_object_get(s, "name")),
                                   json_string_value(json_object_get(li, "list_code")),
                                   json_string_value(json_object_get(li, "since")),
                                   until,
                                   json_string_value(json_object_get(li, "source_department"))};
            for (size_t k = 0; k < sizeof(cells) / sizeof(cells[0]); k++)
                if ((k && csv_raw(&buf, &len, &cap, ",", 1)) ||
                    csv_field(&buf, &len, &cap, cells[k] ? cells[k] : ""))
                    goto err;
            if (csv_raw(&buf, &len, &cap, "\r\n", 2))
                goto err;
        }
    }
    return buf;
err:
    free(buf);
    return NULL;
}

/* --- the measures list ------------------------------------------------------------------------ */

static json_t *report__measure_row(json_t *rows, const char *memo, const char *dept,
                                   const char *code)
{
    size_t i;
    json_t *r;
    json_array_foreach(rows, i, r)
    {
        if (!strcmp(json_string_value(json_object_get(r, "memorandum_id")), memo) &&
            !strcmp(json_string_value(json_object_get(r, "department")), dept) &&
            !strcmp(json_string_value(json_object_get(r, "measure_code")), code))
            return r;
    }
    return NULL;
}

static json_t *report__measure_new(json_t *rows, const char *memo, const char *doc,
                                   const char *dept, const char *code, const char *kind,
                                   const char *text, const char *basis)
{
    json_t *r =
        json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:I,s:I}", "memorandum_id", memo, "document_no",
                  doc, "department", dept, "measure_code", code, "kind", kind, "text", text,
                  "basis", basis, "applied", (json_int_t)0, "lifted", (json_int_t)0);
    if (!r || json_array_append_new(rows, r))
        return NULL;
    return r;
}

static const char *report__kind(int kind)
{
    return kind == JRP__V1__MEASURE_KIND__MEASURE_KIND_INCENTIVE ? "incentive"
           : kind == JRP__V1__MEASURE_KIND__MEASURE_KIND_PENALTY ? "penalty"
                                                                 : "";
}

/* Rows for every measure of the active rule set (none when there is no active set). */
static int report__rules_rows(redisContext *c, const char *prefix, json_t *rows, char *errstr,
                              size_t errstr_size)
{
    redisReply *v = redisCommand(c, "GET %srules:active", prefix);
    if (!v || (v->type != REDIS_REPLY_STRING && v->type != REDIS_REPLY_NIL))
        return report__err(errstr, errstr_size, c, v, "GET rules:active"), freeReplyObject(v), -1;
    if (v->type == REDIS_REPLY_NIL) {
        freeReplyObject(v);
        return 0;
    }
    redisReply *b = redisCommand(c, "GET %srules:v:%s", prefix, v->str);
    freeReplyObject(v);
    if (!b || b->type != REDIS_REPLY_STRING) {
        report__err(errstr, errstr_size, c, b, "GET rules:v");
        freeReplyObject(b);
        return -1;
    }
    Jrp__V1__RuleSet *rs = jrp__v1__rule_set__unpack(NULL, b->len, (const uint8_t *)b->str);
    freeReplyObject(b);
    if (!rs) {
        snprintf(errstr, errstr_size, "the active rule set in Redis does not decode");
        return -1;
    }
    int rc = 0;
    for (size_t i = 0; i < rs->n_memoranda && !rc; i++) {
        const Jrp__V1__Memorandum *mo = rs->memoranda[i];
        for (size_t j = 0; j < mo->n_measures && !rc; j++) {
            const Jrp__V1__MemorandumMeasure *mm = mo->measures[j];
            const Jrp__V1__CatalogueMeasure *cm = NULL;
            for (size_t k = 0; k < rs->n_catalogue; k++)
                if (!strcmp(rs->catalogue[k]->code, mm->measure))
                    cm = rs->catalogue[k];
            const char *basis = mm->basis[0] ? mm->basis : cm ? cm->basis : "";
            if (report__measure_row(rows, mo->id, mm->department, mm->measure))
                continue; /* the same measure for several subject types */
            if (!report__measure_new(rows, mo->id, mo->document_no, mm->department, mm->measure,
                                     report__kind(cm ? (int)cm->kind : (int)mo->kind), mm->text,
                                     basis))
                rc = -1;
        }
    }
    jrp__v1__rule_set__free_unpacked(rs, NULL);
    if (rc)
        snprintf(errstr, errstr_size, "out of memory");
    return rc;
}

static int report__measure_count(const redisReply *h, const char *id, void *rows)
{
    (void)id;
    if (!field(h, 0) || !field(h, 1) || !field(h, 2) || !field(h, 3))
        return 0;
    json_t *r = report__measure_row(rows, field(h, 1), field(h, 2), field(h, 3));
    if (!r)
        r = report__measure_new(rows, field(h, 1), "", field(h, 2), field(h, 3), "", "", "");
    const char *col = strcmp(field(h, 0), "revoke") ? "applied" : "lifted";
    if (!r ||
        json_object_set_new(r, col, json_integer(json_integer_value(json_object_get(r, col)) + 1)))
        return -1;
    return 0;
}

int report_measures_load(redisContext *c, const char *prefix, int64_t from_ms, int64_t to_ms,
                         json_t **out, char *errstr, size_t errstr_size)
{
    static const char *const fields[] = {"op", "memo", "dept", "measure"};
    char lo[32], hi[32];
    report__bounds(from_ms, to_ms, lo, hi);
    json_t *rows = json_array();
    if (!rows) {
        snprintf(errstr, errstr_size, "out of memory");
        return -1;
    }
    if (report__rules_rows(c, prefix, rows, errstr, errstr_size) ||
        report__scan(c, prefix, REPORT_KEY_ISSUED, lo, hi, REPORT_KEY_ACTION, fields, 4,
                     report__measure_count, rows, errstr, errstr_size)) {
        json_decref(rows);
        return -1;
    }
    *out = rows;
    return 0;
}

char *report_measures_render(const json_t *measures, int64_t from_ms, int64_t to_ms, int64_t now_ms,
                             int csv)
{
    if (!csv) {
        json_t *root = json_pack("{s:I,s:I,s:I,s:O}", "from_ms", (json_int_t)from_ms, "to_ms",
                                 (json_int_t)to_ms, "generated_at_ms", (json_int_t)now_ms,
                                 "measures", (json_t *)measures);
        char *out = root ? json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
        json_decref(root);
        return out;
    }
    size_t len = 0, cap = 256;
    char *buf = malloc(cap);
    if (!buf)
        return NULL;
    buf[0] = '\0';
    static const char header[] = "memorandum_id,document_no,department,measure_code,kind,text,"
                                 "basis,applied,lifted\r\n";
    if (csv_raw(&buf, &len, &cap, header, strlen(header)))
        goto err;
    size_t i;
    json_t *r;
    json_array_foreach(measures, i, r)
    {
        static const char *const cols[] = {
            "memorandum_id", "document_no", "department", "measure_code", "kind", "text", "basis"};
        for (size_t k = 0; k < sizeof(cols) / sizeof(cols[0]); k++) {
            const char *v = json_string_value(json_object_get(r, cols[k]));
            if ((k && csv_raw(&buf, &len, &cap, ",", 1)) || csv_field(&buf, &len, &cap, v ? v : ""))
                goto err;
        }
        char nums[64];
        int n = snprintf(nums, sizeof(nums), ",%lld,%lld\r\n",
                         (long long)json_integer_value(json_object_get(r, "applied")),
                         (long long)json_integer_value(json_object_get(r, "lifted")));
        if (csv_raw(&buf, &len, &cap, nums, (size_t)n))
            goto err;
    }
    return buf;
err:
    free(buf);
    return NULL;
}

/* --- time bounds ------------------------------------------------------------------------------ */

static int digits(const char *s, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (!isdigit((unsigned char)s[i]))
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return 0;
}

int report_parse_time(const char *s, int64_t *out_ms)
{
    if (!s || !*s)
        return -1;
    size_t n = strlen(s);
    int all_digits = 1;
    for (size_t i = 0; i < n; i++)
        all_digits &= isdigit((unsigned char)s[i]) != 0;
    if (all_digits) {
        if (n > 15)
            return -1;
        *out_ms = strtoll(s, NULL, 10);
        return 0;
    }
    int y, mo, d, h = 0, mi = 0, sec = 0, ms = 0;
    if (n < 10 || digits(s, 4, &y) || s[4] != '-' || digits(s + 5, 2, &mo) || s[7] != '-' ||
        digits(s + 8, 2, &d) || mo < 1 || mo > 12 || d < 1 || d > 31 || y < 1970)
        return -1;
    int64_t days = workdays_days_from_civil(y, mo, d);
    int cy, cm, cd;
    workdays_civil_from_days(days, &cy, &cm, &cd);
    if (cy != y || cm != mo || cd != d)
        return -1; /* 2026-02-30 */
    if (n == 10) {
        *out_ms = workdays_cst_day_start_ms(days);
        return 0;
    }
    const char *p = s + 10;
    if ((*p != 'T' && *p != 't' && *p != ' ') || strlen(p) < 9 || digits(p + 1, 2, &h) ||
        p[3] != ':' || digits(p + 4, 2, &mi) || p[6] != ':' || digits(p + 7, 2, &sec) || h > 23 ||
        mi > 59 || sec > 60)
        return -1;
    p += 9;
    if (*p == '.') {
        int nd = 0, frac = 0;
        for (p++; isdigit((unsigned char)*p); p++, nd++)
            if (nd < 3)
                frac = frac * 10 + (*p - '0');
        if (nd == 0)
            return -1;
        for (int k = nd; k < 3; k++)
            frac *= 10;
        ms = frac;
    }
    int64_t off_min = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int oh, om;
        if (strlen(p) != 6 || digits(p + 1, 2, &oh) || p[3] != ':' || digits(p + 4, 2, &om) ||
            oh > 23 || om > 59)
            return -1;
        off_min = (*p == '-' ? -1 : 1) * (int64_t)(oh * 60 + om);
        p += 6;
    } else {
        return -1;
    }
    if (*p)
        return -1;
    if (sec == 60)
        sec = 59;
    *out_ms = ((days * 86400 + h * 3600 + mi * 60 + sec) - off_min * 60) * 1000 + ms;
    return 0;
}
