/*
 * Unit tests for common/rules: the rule loader and its errors (by file and JSON path), and the
 * matcher's semantics: listing, delisting, duplicates, penalty beats incentive, grades, lapses,
 * memoranda in force, determinism of action ids.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "rules.h"

#define T0 1767225600000LL /* 2026-01-01T00:00:00Z */
#define DAY (86400LL * 1000)

static const char *rules_dir(void)
{
    const char *root = getenv("JRP_ROOT");
    static char path[1024];
    snprintf(path, sizeof(path), "%s/deploy/rules", root ? root : ".");
    return path;
}

/* --- the loader ------------------------------------------------------------------------------ */

static void test_sample_rules_valid(void **state)
{
    (void)state;
    errlist_t el;
    errlist_init(&el);
    Jrp__V1__RuleSet *rs = rules_load_dir(rules_dir(), &el);
    if (!rs) {
        char line[512];
        errlist_format(&el, 0, line, sizeof(line));
        fail_msg("sample rules refused (%zu errors), first: %s", el.count, line);
    }
    assert_int_equal(el.count, 0);
    assert_int_equal(rs->n_catalogue, 15);
    assert_true(rs->n_memoranda >= 5);
    assert_int_equal(rs->n_escalations, 2);
    assert_int_equal(strlen(rs->digest), 64);
    assert_int_equal(rs->n_files, rs->n_memoranda + 2);
    for (size_t i = 0; i < rs->n_memoranda; i++) {
        assert_true(strlen(rs->memoranda[i]->version) > 0);
        assert_true(strlen(rs->memoranda[i]->source_file) > 0);
    }
    /* The same files give the same digest. */
    Jrp__V1__RuleSet *again = rules_load_dir(rules_dir(), &el);
    assert_non_null(again);
    assert_string_equal(rs->digest, again->digest);
    jrp__v1__rule_set__free_unpacked(again, NULL);
    jrp__v1__rule_set__free_unpacked(rs, NULL);
}

static char tmpdir[64];

static void write_file(const char *name, const char *text)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void make_dir(void)
{
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/jrp-test-rules-XXXXXX");
    assert_non_null(mkdtemp(tmpdir));
}

static void remove_dir(void)
{
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    assert_int_equal(system(cmd), 0);
}

static const char *catalogue = "{\"measures\": ["
                               "{\"code\": \"GREEN_CHANNEL\", \"kind\": \"incentive\", \"name\": "
                               "\"绿色通道\", \"basis\": \"b\"},"
                               "{\"code\": \"RESTRICT_HANDLING\", \"kind\": \"penalty\", \"name\": "
                               "\"限制办理\", \"basis\": \"b\"}"
                               "]}";

static const char *memo_ok =
    "{\"id\": \"m1\", \"title\": \"t\", \"document_no\": \"d\", \"kind\": \"penalty\","
    " \"effective_from\": \"2017-02-01\", \"effective_until\": null,"
    " \"triggers\": [{\"list\": \"black.overload\"}], \"subject_types\": [\"enterprise\"],"
    " \"measures\": [{\"department\": \"market\", \"measure\": \"RESTRICT_HANDLING\","
    " \"text\": \"x\", \"basis\": \"y\"}]}";

/* Load a directory holding the catalogue and one memorandum; expect refusal with the error. */
static void expect_refused(const char *memo, const char *file, const char *path, const char *code,
                           const char *needle)
{
    make_dir();
    write_file("catalogue.json", catalogue);
    write_file("m.json", memo);
    errlist_t el;
    errlist_init(&el);
    Jrp__V1__RuleSet *rs = rules_load_dir(tmpdir, &el);
    if (rs)
        fail_msg("accepted a bad memorandum: %s", memo);
    int found = 0;
    for (size_t i = 0; i < el.count; i++) {
        const errlist_item_t *it = &el.items[i];
        if (it->file && !strcmp(it->file, file) && !strcmp(it->path, path) &&
            !strcmp(it->code, code) && (!needle || strstr(it->message, needle)))
            found = 1;
    }
    if (!found) {
        char line[512] = "(none)";
        if (el.count)
            errlist_format(&el, 0, line, sizeof(line));
        fail_msg("expected %s: %s [%s] \"%s\"; got %zu errors, first: %s", file, path, code,
                 needle ? needle : "", el.count, line);
    }
    errlist_clear(&el);
    remove_dir();
}

/* One measure outside the catalogue: refused, naming the measure, the file and the path. */
static void test_unknown_measure_refused(void **state)
{
    (void)state;
    expect_refused(
        "{\"id\": \"m1\", \"title\": \"t\", \"kind\": \"penalty\","
        " \"effective_from\": \"2017-02-01\", \"triggers\": [{\"list\": \"black.x\"}],"
        " \"subject_types\": [\"enterprise\"], \"measures\": ["
        " {\"department\": \"market\", \"measure\": \"RESTRICT_HANDLING\", \"text\": \"x\"},"
        " {\"department\": \"tax\", \"measure\": \"CONFISCATE_EVERYTHING\", \"text\": \"x\"}]}",
        "m.json", "measures[1].measure", "unknown_measure",
        "\"CONFISCATE_EVERYTHING\" is not in the measure catalogue");
}

static void test_bad_memoranda(void **state)
{
    (void)state;
    /* Each case replaces one part of a valid memorandum. */
    expect_refused("{\"id\": \"m1\",", "m.json", "", "bad_json", "line 1");
    expect_refused("[1, 2]", "m.json", "", "wrong_type", NULL);
    expect_refused("{\"id\": \"M 1\", \"title\": \"t\", \"kind\": \"penalty\", \"effective_from\": "
                   "\"2017-02-01\", \"triggers\": [{\"list\": \"black.x\"}], \"subject_types\": "
                   "[\"enterprise\"], \"measures\": [{\"department\": \"market\", \"measure\": "
                   "\"RESTRICT_HANDLING\", \"text\": \"x\"}]}",
                   "m.json", "id", "bad_format", "M 1");
    expect_refused("{\"id\": \"m1\", \"title\": \"t\", \"kind\": \"penalty\", \"effective_from\": "
                   "\"2017-02-30\", \"triggers\": [{\"list\": \"black.x\"}], \"subject_types\": "
                   "[\"enterprise\"], \"measures\": [{\"department\": \"market\", \"measure\": "
                   "\"RESTRICT_HANDLING\", \"text\": \"x\"}]}",
                   "m.json", "effective_from", "bad_date", "2017-02-30");
    expect_refused("{\"id\": \"m1\", \"title\": \"t\", \"kind\": \"penalty\", \"effective_from\": "
                   "\"2017-02-01\", \"effective_until\": \"2016-01-01\", \"triggers\": [{\"list\": "
                   "\"black.x\"}], \"subject_types\": [\"enterprise\"], \"measures\": "
                   "[{\"department\": \"market\", \"measure\": \"RESTRICT_HANDLING\", \"text\": "
                   "\"x\"}]}",
                   "m.json", "effective_until", "bad_date", "before effective_from");
    expect_refused("{\"id\": \"m1\", \"title\": \"t\", \"kind\": \"penalty\", \"effective_from\": "
                   "\"2017-02-01\", \"triggers\": [{\"list\": \"grey.x\"}], \"subject_types\": "
                   "[\"enterprise\"], \"measures\": [{\"department\": \"market\", \"measure\": "
                   "\"RESTRICT_HANDLING\", \"text\": \"x\"}]}",
                   "m.json", "triggers[0].list", "bad_list_code", "grey.x");
    expect_refused(
        "{\"id\": \"m1\", \"title\": \"t\", \"kind\": \"incentive\", \"effective_from\": "
        "\"2017-02-01\", \"triggers\": [{\"list\": \"black.x\"}], \"subject_types\": "
        "[\"enterprise\"], \"measures\": [{\"department\": \"market\", \"measure\": "
        "\"GREEN_CHANNEL\", \"text\": \"x\"}]}",
        "m.json", "triggers[0].list", "bad_trigger", "only be triggered by a red list");
    expect_refused("{\"id\": \"m1\", \"title\": \"t\", \"kind\": \"penalty\", \"effective_from\": "
                   "\"2017-02-01\", \"triggers\": [{\"list\": \"black.x\"}], \"subject_types\": "
                   "[\"enterprise\"], \"measures\": [{\"department\": \"market\", \"measure\": "
                   "\"GREEN_CHANNEL\", \"text\": \"x\"}]}",
                   "m.json", "measures[0].measure", "kind_mismatch", "GREEN_CHANNEL");
    expect_refused("{\"id\": \"m1\", \"title\": \"t\", \"kind\": \"penalty\", \"effective_from\": "
                   "\"2017-02-01\", \"triggers\": [{\"list\": \"black.x\"}], \"subject_types\": "
                   "[\"enterprise\"], \"measures\": [{\"department\": \"Market\", \"measure\": "
                   "\"RESTRICT_HANDLING\", \"text\": \"x\"}]}",
                   "m.json", "measures[0].department", "bad_format", "Market");
    expect_refused("{\"id\": \"m1\", \"title\": \"t\", \"kind\": \"penalty\", \"effective_from\": "
                   "\"2017-02-01\", \"triggers\": [{\"list\": \"black.x\"}], \"subject_types\": "
                   "[\"enterprise\"], \"measures\": [{\"department\": \"market\", \"measure\": "
                   "\"RESTRICT_HANDLING\", \"text\": \"x\", \"subject_types\": [\"person\"]}]}",
                   "m.json", "measures[0].subject_types[0]", "bad_subject_type", NULL);
    expect_refused("{\"id\": \"m1\", \"title\": \"t\", \"kind\": \"penalty\", \"effective_from\": "
                   "\"2017-02-01\", \"triggers\": [{\"list\": \"black.x\"}], \"subject_types\": "
                   "[\"company\"], \"measures\": [{\"department\": \"market\", \"measure\": "
                   "\"RESTRICT_HANDLING\", \"text\": \"x\"}]}",
                   "m.json", "subject_types[0]", "bad_enum", NULL);
    expect_refused(
        "{\"id\": \"m1\", \"title\": \"t\", \"kind\": \"penalty\", \"effective_from\": "
        "\"2017-02-01\", \"triggers\": [], \"subject_types\": [\"enterprise\"], "
        "\"measures\": [{\"department\": \"market\", \"measure\": \"RESTRICT_HANDLING\", "
        "\"text\": \"x\"}]}",
        "m.json", "triggers", "missing_field", NULL);
    expect_refused(
        "{\"id\": \"m1\", \"title\": \"t\", \"kind\": \"penalty\", \"effective_from\": "
        "\"2017-02-01\", \"triggers\": [{\"grade_field\": \"transport\", \"grades\": "
        "[\"aa\"]}], \"subject_types\": [\"enterprise\"], \"measures\": [{\"department\": "
        "\"market\", \"measure\": \"RESTRICT_HANDLING\", \"text\": \"x\"}]}",
        "m.json", "triggers[0].grades[0]", "bad_format", "aa");
    expect_refused(
        "{\"id\": \"m1\", \"title\": \"t\", \"kind\": \"penalty\", \"effective_from\": "
        "\"2017-02-01\", \"triggers\": [{\"list\": \"black.x\", \"grade_field\": \"f\"}],"
        " \"subject_types\": [\"enterprise\"], \"measures\": [{\"department\": "
        "\"market\", \"measure\": \"RESTRICT_HANDLING\", \"text\": \"x\"}]}",
        "m.json", "triggers[0]", "bad_trigger", NULL);
    expect_refused("{\"id\": \"m1\", \"title\": \"t\", \"kind\": \"penalty\", \"effective_from\": "
                   "\"2017-02-01\", \"triggers\": [{\"list\": \"black.x\"}], \"subject_types\": "
                   "[\"enterprise\"], \"measures\": [{\"department\": \"market\", \"measure\": "
                   "\"RESTRICT_HANDLING\", \"text\": \"\"}]}",
                   "m.json", "measures[0].text", "missing_field", NULL);
    expect_refused("{\"id\": \"m1\", \"title\": \"t\", \"kind\": \"penalty\", \"effective_from\": "
                   "\"2017-02-01\", \"triggers\": [{\"list\": \"black.x\"}], \"subject_types\": "
                   "[\"enterprise\"], \"measures\": [{\"department\": \"market\", \"measure\": "
                   "\"RESTRICT_HANDLING\", \"text\": \"x\", \"colour\": \"red\"}]}",
                   "m.json", "measures[0].colour", "unknown_field", NULL);
    expect_refused("{\"id\": \"m1\", \"title\": 5, \"kind\": \"penalty\", \"effective_from\": "
                   "\"2017-02-01\", \"triggers\": [{\"list\": \"black.x\"}], \"subject_types\": "
                   "[\"enterprise\"], \"measures\": [{\"department\": \"market\", \"measure\": "
                   "\"RESTRICT_HANDLING\", \"text\": \"x\"}]}",
                   "m.json", "title", "wrong_type", NULL);
    expect_refused("{\"id\": \"m1\", \"title\": \"t\", \"kind\": \"severe\", \"effective_from\": "
                   "\"2017-02-01\", \"triggers\": [{\"list\": \"black.x\"}], \"subject_types\": "
                   "[\"enterprise\"], \"measures\": [{\"department\": \"market\", \"measure\": "
                   "\"RESTRICT_HANDLING\", \"text\": \"x\"}]}",
                   "m.json", "kind", "bad_enum", NULL);
}

/* A directory with several problems reports every one of them. */
static void test_every_error_listed(void **state)
{
    (void)state;
    make_dir();
    write_file("catalogue.json",
               "{\"measures\": [{\"code\": \"lower\", \"kind\": \"penalty\", \"name\": \"n\"},"
               " {\"code\": \"OK_ONE\", \"kind\": \"penalty\", \"name\": \"n\", \"basis\": \"b\"},"
               " {\"code\": \"OK_ONE\", \"kind\": \"incentive\", \"name\": \"n\"}]}");
    write_file("a.json", memo_ok);
    write_file("b.json", memo_ok); /* same id */
    write_file("escalations.json",
               "{\"escalations\": [{\"id\": \"e1\", \"focus_fields_at_least\": 3, \"list\": "
               "\"focus.taxi\", \"not_lifted_within_days\": 10, \"then_list\": \"black.taxi\"},"
               " {\"id\": \"e2\", \"list\": \"black.taxi\", \"not_lifted_within_days\": 0,"
               " \"then_list\": \"red.x\"}]}");
    errlist_t el;
    errlist_init(&el);
    assert_null(rules_load_dir(tmpdir, &el));
    static const char *expect[][2] = {
        {"catalogue.json", "measures[0].code"},
        {"catalogue.json", "measures[0].basis"},
        {"catalogue.json", "measures[2].code"},
        {"a.json", "measures[0].measure"},
        {"b.json", "id"},
        {"escalations.json", "escalations[0]"},
        {"escalations.json", "escalations[1].list"},
        {"escalations.json", "escalations[1].then_list"},
        {"escalations.json", "escalations[1].not_lifted_within_days"},
    };
    for (size_t i = 0; i < sizeof(expect) / sizeof(expect[0]); i++) {
        int found = 0;
        for (size_t j = 0; j < el.count && !found; j++)
            found = el.items[j].file && !strcmp(el.items[j].file, expect[i][0]) &&
                    !strcmp(el.items[j].path, expect[i][1]);
        if (!found)
            fail_msg("no error for %s: %s among %zu", expect[i][0], expect[i][1], el.count);
    }
    errlist_clear(&el);
    remove_dir();
}

static void test_missing_catalogue_and_dir(void **state)
{
    (void)state;
    errlist_t el;
    errlist_init(&el);
    make_dir();
    write_file("m.json", memo_ok);
    assert_null(rules_load_dir(tmpdir, &el));
    assert_true(errlist_contains(&el, "no catalogue.json"));
    errlist_clear(&el);
    remove_dir();
    assert_null(rules_load_dir("/nonexistent/rules", &el));
    assert_true(errlist_contains(&el, "cannot open the rule directory"));
    errlist_clear(&el);
}

static void test_dates(void **state)
{
    (void)state;
    assert_int_equal(rules_date_ms("1970-01-01"), -8LL * 3600 * 1000);
    assert_int_equal(rules_date_ms("2026-01-01"), T0 - 8LL * 3600 * 1000);
    assert_int_equal(rules_date_ms("2024-02-29"), 1709164800000LL - 8LL * 3600 * 1000);
    assert_int_equal(rules_date_ms("2023-02-29"), -1);
    assert_int_equal(rules_date_ms("2026-13-01"), -1);
    assert_int_equal(rules_date_ms("2026-1-01"), -1);
    assert_int_equal(rules_date_ms("2026/01/01"), -1);
    assert_int_equal(rules_date_ms(""), -1);
    assert_int_equal(rules_date_ms(NULL), -1);
}

/* --- the matcher ----------------------------------------------------------------------------- */

typedef struct fixture_s {
    rules_t *rules;
    Jrp__V1__SubjectState *st;
    rules_result_t res;
    rules_match_opts_t opts;
} fixture_t;

static rules_t *load_sample(int64_t version)
{
    errlist_t el;
    errlist_init(&el);
    Jrp__V1__RuleSet *rs = rules_load_dir(rules_dir(), &el);
    assert_non_null(rs);
    rs->version = version;
    char err[256];
    rules_t *r = rules_compile(rs, err, sizeof(err));
    assert_non_null(r);
    return r;
}

static Jrp__V1__SubjectState *new_state(void)
{
    Jrp__V1__SubjectState *st = malloc(sizeof(*st));
    jrp__v1__subject_state__init(st);
    return st;
}

static int setup(void **state)
{
    fixture_t *fx = calloc(1, sizeof(*fx));
    fx->rules = load_sample(7);
    fx->st = new_state();
    rules_result_init(&fx->res);
    fx->opts.dedup_horizon_ms = 30 * DAY;
    fx->opts.dedup_max = 1000;
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *fx = *state;
    rules_result_clear(&fx->res);
    rules_state_free(fx->st);
    rules_destroy(fx->rules);
    free(fx);
    return 0;
}

/* Events point at static strings; they are never freed. */
static Jrp__V1__Subject subj_ent = {PROTOBUF_C_MESSAGE_INIT(&jrp__v1__subject__descriptor),
                                    JRP__V1__SUBJECT_TYPE__SUBJECT_TYPE_ENTERPRISE,
                                    "91350100M000100Y43", "某物流有限公司"};
static Jrp__V1__Subject subj_veh = {PROTOBUF_C_MESSAGE_INIT(&jrp__v1__subject__descriptor),
                                    JRP__V1__SUBJECT_TYPE__SUBJECT_TYPE_VEHICLE, "津A12345", ""};
static Jrp__V1__Subject subj_person = {PROTOBUF_C_MESSAGE_INIT(&jrp__v1__subject__descriptor),
                                       JRP__V1__SUBJECT_TYPE__SUBJECT_TYPE_PERSON,
                                       "11010519491231002X", ""};

static Jrp__V1__CreditEvent event(const char *id, Jrp__V1__EventKind kind, Jrp__V1__Subject *s,
                                  const char *list, int64_t at)
{
    Jrp__V1__CreditEvent ev;
    jrp__v1__credit_event__init(&ev);
    ev.event_id = (char *)id;
    ev.kind = kind;
    ev.subject = s;
    ev.source_department = "transport";
    ev.occurred_at_ms = at;
    ev.list_code = (char *)(list ? list : "");
    return ev;
}

static void match(fixture_t *fx, Jrp__V1__CreditEvent *ev, int64_t now)
{
    rules_result_clear(&fx->res);
    assert_int_equal(rules_match(fx->rules, fx->st, ev, now, &fx->opts, &fx->res), 0);
}

/* "dept/MEASURE" of every action with op, sorted, joined by spaces. */
static const char *summary(const rules_result_t *res, Jrp__V1__ActionOp op)
{
    static char buf[2048];
    char *items[64];
    size_t n = 0;
    for (size_t i = 0; i < res->n_actions && n < 64; i++)
        if (res->actions[i]->op == op) {
            items[n] = malloc(128);
            snprintf(items[n], 128, "%s/%s", res->actions[i]->department,
                     res->actions[i]->measure_code);
            n++;
        }
    for (size_t i = 0; i < n; i++) /* insertion sort: tiny */
        for (size_t j = i + 1; j < n; j++)
            if (strcmp(items[j], items[i]) < 0) {
                char *t = items[i];
                items[i] = items[j];
                items[j] = t;
            }
    buf[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        strcat(buf, i ? " " : "");
        strcat(buf, items[i]);
        free(items[i]);
    }
    return buf;
}

static void test_listed_enterprise_vehicle_person(void **state)
{
    fixture_t *fx = *state;
    Jrp__V1__CreditEvent ev =
        event("e1", JRP__V1__EVENT_KIND__EVENT_KIND_LISTED, &subj_ent, "black.overload", T0);
    ev.valid_until_ms = T0 + 730 * DAY;
    match(fx, &ev, T0 + 5);
    assert_int_equal(fx->res.outcome, JRP__V1__DECISION_OUTCOME__DECISION_OUTCOME_APPLIED);
    assert_string_equal(summary(&fx->res, JRP__V1__ACTION_OP__ACTION_OP_APPLY),
                        "finance/RESTRICT_PROCUREMENT market/RESTRICT_HANDLING "
                        "ndrc/RESTRICT_HANDLING transport/RESTRICT_HANDLING "
                        "transport/STRICT_SUPERVISION");
    assert_int_equal(fx->res.n_matched, 1);
    assert_string_equal(fx->res.matched[0]->id, "overload-2017");
    for (size_t i = 0; i < fx->res.n_actions; i++) {
        Jrp__V1__Action *a = fx->res.actions[i];
        assert_int_equal(strlen(a->action_id), 32);
        assert_string_equal(a->cause_event_id, "e1");
        assert_string_equal(a->list_code, "black.overload");
        assert_int_equal(a->valid_from_ms, T0);
        assert_int_equal(a->valid_until_ms, T0 + 730 * DAY);
        assert_int_equal(a->issued_at_ms, T0 + 5);
        assert_int_equal(a->ruleset_version, 7);
        assert_int_equal(a->measure_kind, JRP__V1__MEASURE_KIND__MEASURE_KIND_PENALTY);
        assert_true(strlen(a->legal_basis) > 0);
        assert_true(strlen(a->measure_text) > 0);
        assert_string_equal(a->subject->id, "91350100M000100Y43");
    }
    assert_int_equal(fx->st->n_measures, 5);
    assert_int_equal(fx->st->n_listings, 1);

    Jrp__V1__SubjectState *vst = new_state();
    rules_result_t vres;
    rules_result_init(&vres);
    ev = event("e2", JRP__V1__EVENT_KIND__EVENT_KIND_LISTED, &subj_veh, "black.overload", T0);
    assert_int_equal(rules_match(fx->rules, vst, &ev, T0, &fx->opts, &vres), 0);
    assert_string_equal(summary(&vres, JRP__V1__ACTION_OP__ACTION_OP_APPLY),
                        "transport/NO_TOLL_GREEN_CHANNEL transport/STRICT_SUPERVISION");
    rules_result_clear(&vres);
    rules_state_free(vst);

    Jrp__V1__SubjectState *pst = new_state();
    ev = event("e3", JRP__V1__EVENT_KIND__EVENT_KIND_LISTED, &subj_person, "black.overload", T0);
    assert_int_equal(rules_match(fx->rules, pst, &ev, T0, &fx->opts, &vres), 0);
    assert_string_equal(summary(&vres, JRP__V1__ACTION_OP__ACTION_OP_APPLY),
                        "market/RESTRICT_HANDLING public_security/WARNING_TALK "
                        "transport/STRICT_SUPERVISION");
    rules_result_clear(&vres);
    rules_state_free(pst);
}

static void test_delisted_lifts_exactly_that_listing(void **state)
{
    fixture_t *fx = *state;
    Jrp__V1__CreditEvent ev =
        event("e1", JRP__V1__EVENT_KIND__EVENT_KIND_LISTED, &subj_ent, "black.overload", T0);
    match(fx, &ev, T0);
    char applied[8][33];
    size_t n_applied = fx->res.n_actions;
    for (size_t i = 0; i < n_applied; i++)
        snprintf(applied[i], 33, "%s", fx->res.actions[i]->action_id);
    ev = event("e2", JRP__V1__EVENT_KIND__EVENT_KIND_LISTED, &subj_ent, "black.logistics", T0 + 1);
    match(fx, &ev, T0 + 1);
    size_t logistics = fx->res.n_actions;
    assert_int_equal(logistics, 5);
    assert_int_equal(fx->st->n_measures, n_applied + logistics);

    ev = event("e3", JRP__V1__EVENT_KIND__EVENT_KIND_DELISTED, &subj_ent, "black.overload", T0 + 2);
    ev.delist_reason = JRP__V1__DELIST_REASON__DELIST_REASON_REPAIRED;
    match(fx, &ev, T0 + 2);
    assert_int_equal(fx->res.outcome, JRP__V1__DECISION_OUTCOME__DECISION_OUTCOME_APPLIED);
    assert_int_equal(fx->res.n_actions, n_applied);
    for (size_t i = 0; i < fx->res.n_actions; i++) {
        Jrp__V1__Action *a = fx->res.actions[i];
        assert_int_equal(a->op, JRP__V1__ACTION_OP__ACTION_OP_REVOKE);
        assert_string_equal(a->revokes_action_id, applied[i]);
        assert_string_equal(a->cause_event_id, "e3");
        assert_string_equal(a->list_code, "black.overload");
        char want[33];
        rules_revoke_id(applied[i], want);
        assert_string_equal(a->action_id, want);
        /* A REVOKE is complete for the department, although the state keeps measures trimmed. */
        assert_true(strlen(a->measure_text) > 0);
        assert_true(strlen(a->legal_basis) > 0);
        assert_string_equal(a->subject->id, "91350100M000100Y43");
        assert_int_equal(a->issued_at_ms, T0 + 2);
    }
    for (size_t i = 0; i < fx->st->n_measures; i++) {
        assert_string_equal(fx->st->measures[i]->measure_text, "");
        assert_null(fx->st->measures[i]->subject);
    }
    assert_int_equal(fx->st->n_measures, logistics); /* the logistics listing is untouched */
    assert_int_equal(fx->st->n_listings, 1);
    assert_non_null(strstr(fx->res.reason, "credit repair"));

    /* Delisting what is not listed lifts nothing. */
    ev = event("e4", JRP__V1__EVENT_KIND__EVENT_KIND_DELISTED, &subj_ent, "black.overload", T0 + 3);
    ev.delist_reason = JRP__V1__DELIST_REASON__DELIST_REASON_REVOKED;
    match(fx, &ev, T0 + 3);
    assert_int_equal(fx->res.outcome, JRP__V1__DECISION_OUTCOME__DECISION_OUTCOME_NO_MATCH);
    assert_int_equal(fx->res.n_actions, 0);
    assert_int_equal(fx->st->n_measures, logistics);
}

static void test_duplicate_and_horizon(void **state)
{
    fixture_t *fx = *state;
    Jrp__V1__CreditEvent ev =
        event("dup-1", JRP__V1__EVENT_KIND__EVENT_KIND_LISTED, &subj_ent, "black.overload", T0);
    match(fx, &ev, T0);
    assert_int_equal(fx->res.n_actions, 5);
    match(fx, &ev, T0 + 29 * DAY);
    assert_int_equal(fx->res.outcome, JRP__V1__DECISION_OUTCOME__DECISION_OUTCOME_DUPLICATE);
    assert_int_equal(fx->res.n_actions, 0);
    assert_int_equal(fx->res.state_changed, 0);
    /* Another event later pushes dup-1 out of the 30-day horizon. */
    Jrp__V1__CreditEvent other =
        event("other", JRP__V1__EVENT_KIND__EVENT_KIND_LICENSED, &subj_ent, NULL, T0 + 31 * DAY);
    match(fx, &other, T0 + 31 * DAY);
    assert_int_equal(fx->st->n_processed, 1);
    assert_string_equal(fx->st->processed[0]->event_id, "other");
    /* The cap keeps at most dedup_max ids. */
    fx->opts.dedup_max = 3;
    for (int i = 0; i < 10; i++) {
        char id[16];
        snprintf(id, sizeof(id), "lic-%d", i);
        Jrp__V1__CreditEvent lic =
            event(id, JRP__V1__EVENT_KIND__EVENT_KIND_LICENSED, &subj_ent, NULL, T0 + 32 * DAY);
        match(fx, &lic, T0 + 32 * DAY);
        assert_int_equal(fx->res.outcome, JRP__V1__DECISION_OUTCOME__DECISION_OUTCOME_NO_MATCH);
    }
    assert_int_equal(fx->st->n_processed, 3);
    assert_string_equal(fx->st->processed[2]->event_id, "lic-9");
}

static void test_ids_deterministic(void **state)
{
    fixture_t *fx = *state;
    Jrp__V1__CreditEvent ev =
        event("e1", JRP__V1__EVENT_KIND__EVENT_KIND_LISTED, &subj_ent, "black.overload", T0);
    match(fx, &ev, T0);
    char first[33];
    snprintf(first, sizeof(first), "%s", fx->res.actions[0]->action_id);
    /* Same event, fresh state, later processing time: same ids. */
    Jrp__V1__SubjectState *st2 = new_state();
    rules_result_t r2;
    rules_result_init(&r2);
    assert_int_equal(rules_match(fx->rules, st2, &ev, T0 + 999999, &fx->opts, &r2), 0);
    assert_string_equal(r2.actions[0]->action_id, first);
    rules_result_clear(&r2);
    rules_state_free(st2);
    /* Another rule-set version: other ids. */
    rules_t *v8 = load_sample(8);
    st2 = new_state();
    assert_int_equal(rules_match(v8, st2, &ev, T0, &fx->opts, &r2), 0);
    assert_string_not_equal(r2.actions[0]->action_id, first);
    rules_result_clear(&r2);
    rules_state_free(st2);
    rules_destroy(v8);
    /* All ids of one result are distinct. */
    for (size_t i = 0; i < fx->res.n_actions; i++)
        for (size_t j = i + 1; j < fx->res.n_actions; j++)
            assert_string_not_equal(fx->res.actions[i]->action_id, fx->res.actions[j]->action_id);
}

static void test_penalty_beats_incentive(void **state)
{
    fixture_t *fx = *state;
    Jrp__V1__CreditEvent ev =
        event("r1", JRP__V1__EVENT_KIND__EVENT_KIND_LISTED, &subj_ent, "red.construction", T0);
    match(fx, &ev, T0);
    assert_string_equal(summary(&fx->res, JRP__V1__ACTION_OP__ACTION_OP_APPLY),
                        "finance/GREEN_CHANNEL housing/LOWER_DEPOSIT ndrc/KEY_SUPPORT "
                        "transport/FEWER_INSPECTIONS transport/PRIORITY_HANDLING");
    /* A black listing lifts every incentive in force and applies its penalties. */
    ev = event("b1", JRP__V1__EVENT_KIND__EVENT_KIND_LISTED, &subj_ent, "black.logistics", T0 + 1);
    match(fx, &ev, T0 + 1);
    assert_string_equal(summary(&fx->res, JRP__V1__ACTION_OP__ACTION_OP_REVOKE),
                        "finance/GREEN_CHANNEL housing/LOWER_DEPOSIT ndrc/KEY_SUPPORT "
                        "transport/FEWER_INSPECTIONS transport/PRIORITY_HANDLING");
    assert_string_equal(summary(&fx->res, JRP__V1__ACTION_OP__ACTION_OP_APPLY),
                        "finance/RESTRICT_PROCUREMENT natural_resources/RESTRICT_HANDLING "
                        "pboc/STRICT_SUPERVISION transport/RESTRICT_HANDLING "
                        "transport/STRICT_SUPERVISION");
    assert_int_equal(fx->st->n_measures, 5);
    /* A red listing renewed while black is suppressed. */
    ev = event("r2", JRP__V1__EVENT_KIND__EVENT_KIND_LISTED, &subj_ent, "red.construction", T0 + 2);
    ev.valid_until_ms = T0 + 700 * DAY;
    match(fx, &ev, T0 + 2);
    assert_int_equal(fx->res.outcome, JRP__V1__DECISION_OUTCOME__DECISION_OUTCOME_SUPPRESSED);
    assert_int_equal(fx->res.n_actions, 0);
    assert_int_equal(fx->res.n_suppressed, 5);
    /* The last black listing ends: the incentives of the still valid red listing come back. */
    ev =
        event("b2", JRP__V1__EVENT_KIND__EVENT_KIND_DELISTED, &subj_ent, "black.logistics", T0 + 3);
    ev.delist_reason = JRP__V1__DELIST_REASON__DELIST_REASON_EXPIRED;
    match(fx, &ev, T0 + 3);
    assert_string_equal(summary(&fx->res, JRP__V1__ACTION_OP__ACTION_OP_REVOKE),
                        "finance/RESTRICT_PROCUREMENT natural_resources/RESTRICT_HANDLING "
                        "pboc/STRICT_SUPERVISION transport/RESTRICT_HANDLING "
                        "transport/STRICT_SUPERVISION");
    assert_string_equal(summary(&fx->res, JRP__V1__ACTION_OP__ACTION_OP_APPLY),
                        "finance/GREEN_CHANNEL housing/LOWER_DEPOSIT ndrc/KEY_SUPPORT "
                        "transport/FEWER_INSPECTIONS transport/PRIORITY_HANDLING");
    for (size_t i = 0; i < fx->res.n_actions; i++)
        if (fx->res.actions[i]->op == JRP__V1__ACTION_OP__ACTION_OP_APPLY) {
            assert_string_equal(fx->res.actions[i]->cause_event_id, "b2");
            assert_int_equal(fx->res.actions[i]->valid_until_ms, T0 + 700 * DAY);
        }
}

static void test_grades(void **state)
{
    fixture_t *fx = *state;
    Jrp__V1__CreditEvent ev =
        event("g1", JRP__V1__EVENT_KIND__EVENT_KIND_GRADED, &subj_ent, NULL, T0);
    ev.grade_field = "transport_industry";
    ev.grade = "AA";
    match(fx, &ev, T0);
    assert_string_equal(summary(&fx->res, JRP__V1__ACTION_OP__ACTION_OP_APPLY),
                        "transport/FEWER_INSPECTIONS");
    assert_string_equal(fx->res.actions[0]->grade, "AA");
    assert_string_equal(fx->res.actions[0]->grade_field, "transport_industry");
    ev = event("g2", JRP__V1__EVENT_KIND__EVENT_KIND_GRADED, &subj_ent, NULL, T0 + 1);
    ev.grade_field = "transport_industry";
    ev.grade = "C";
    match(fx, &ev, T0 + 1);
    assert_string_equal(summary(&fx->res, JRP__V1__ACTION_OP__ACTION_OP_REVOKE),
                        "transport/FEWER_INSPECTIONS");
    assert_string_equal(summary(&fx->res, JRP__V1__ACTION_OP__ACTION_OP_APPLY),
                        "transport/STRICT_SUPERVISION");
    /* A grade in another field leaves this one alone. */
    ev = event("g3", JRP__V1__EVENT_KIND__EVENT_KIND_GRADED, &subj_ent, NULL, T0 + 2);
    ev.grade_field = "taxi";
    ev.grade = "AAA";
    match(fx, &ev, T0 + 2);
    assert_int_equal(fx->res.outcome, JRP__V1__DECISION_OUTCOME__DECISION_OUTCOME_NO_MATCH);
    assert_int_equal(fx->st->n_measures, 1);
    assert_int_equal(fx->st->n_grades, 2);
}

static void test_lapse(void **state)
{
    fixture_t *fx = *state;
    Jrp__V1__CreditEvent ev =
        event("v1", JRP__V1__EVENT_KIND__EVENT_KIND_LISTED, &subj_veh, "black.overload", T0);
    ev.valid_until_ms = T0 + 10 * DAY;
    match(fx, &ev, T0);
    assert_int_equal(rules_next_lapse(fx->st), T0 + 10 * DAY);
    char lapse_id[64];
    rules_result_clear(&fx->res);
    assert_int_equal(
        rules_lapse(fx->rules, fx->st, T0 + 10 * DAY - 1, &fx->res, lapse_id, sizeof(lapse_id)), 0);
    assert_int_equal(fx->res.n_actions, 0); /* not yet */
    /* Two copies of the state lapse to the same records (a crash between fire and commit). */
    size_t len = jrp__v1__subject_state__get_packed_size(fx->st);
    uint8_t *buf = malloc(len);
    jrp__v1__subject_state__pack(fx->st, buf);
    Jrp__V1__SubjectState *copy = jrp__v1__subject_state__unpack(NULL, len, buf);
    free(buf);
    assert_non_null(copy);

    rules_result_clear(&fx->res);
    assert_int_equal(
        rules_lapse(fx->rules, fx->st, T0 + 10 * DAY, &fx->res, lapse_id, sizeof(lapse_id)), 0);
    assert_string_equal(fx->res.reason, "expired");
    assert_string_equal(summary(&fx->res, JRP__V1__ACTION_OP__ACTION_OP_REVOKE),
                        "transport/NO_TOLL_GREEN_CHANNEL transport/STRICT_SUPERVISION");
    assert_int_equal(strncmp(lapse_id, "lapse-", 6), 0);
    assert_int_equal(fx->st->n_listings, 0);
    assert_int_equal(fx->st->n_measures, 0);
    assert_int_equal(rules_next_lapse(fx->st), 0);

    rules_result_t again;
    rules_result_init(&again);
    char lapse_id2[64];
    assert_int_equal(
        rules_lapse(fx->rules, copy, T0 + 11 * DAY, &again, lapse_id2, sizeof(lapse_id2)), 0);
    assert_string_equal(lapse_id, lapse_id2);
    assert_int_equal(again.n_actions, fx->res.n_actions);
    for (size_t i = 0; i < again.n_actions; i++)
        assert_string_equal(again.actions[i]->action_id, fx->res.actions[i]->action_id);
    rules_result_clear(&again);
    rules_state_free(copy);
}

static void test_memorandum_in_force(void **state)
{
    fixture_t *fx = *state;
    /* overload-2017 is effective from 2017-02-01 (CST): an event the day before matches nothing. */
    int64_t before = rules_date_ms("2017-01-31");
    Jrp__V1__CreditEvent ev =
        event("old", JRP__V1__EVENT_KIND__EVENT_KIND_LISTED, &subj_ent, "black.overload", before);
    match(fx, &ev, T0);
    assert_int_equal(fx->res.outcome, JRP__V1__DECISION_OUTCOME__DECISION_OUTCOME_NO_MATCH);
    assert_int_equal(fx->res.n_actions, 0);
    assert_int_equal(fx->st->n_listings, 1); /* the listing itself is still recorded */
    /* A list no memorandum names. */
    ev = event("x", JRP__V1__EVENT_KIND__EVENT_KIND_LISTED, &subj_ent, "black.fishing", T0);
    match(fx, &ev, T0);
    assert_int_equal(fx->res.outcome, JRP__V1__DECISION_OUTCOME__DECISION_OUTCOME_NO_MATCH);
}

static void test_escalation_focus_in_three_fields(void **state)
{
    fixture_t *fx = *state;
    const char *lists[] = {"focus.taxi", "focus.overload", "focus.tourism"};
    rules_escalation_out_t out = {0};
    for (int i = 0; i < 3; i++) {
        char id[16];
        snprintf(id, sizeof(id), "f-%d", i);
        Jrp__V1__CreditEvent ev =
            event(id, JRP__V1__EVENT_KIND__EVENT_KIND_LISTED, &subj_ent, lists[i], T0 + i);
        match(fx, &ev, T0 + i);
        assert_int_equal(rules_escalate(fx->rules, fx->st, T0 + i, &out), 0);
        assert_int_equal(out.n, i == 2 ? 1 : 0); /* the third field escalates */
        if (i < 2)
            continue;
        const Jrp__V1__CreditEvent *d = out.events[0];
        assert_int_equal(d->kind, JRP__V1__EVENT_KIND__EVENT_KIND_LISTED);
        assert_string_equal(d->list_code, "focus.bigdata_warning");
        assert_string_equal(d->source_department, "jrp");
        assert_int_equal(strncmp(d->event_id, "esc-", 4), 0);
        assert_int_equal(d->valid_until_ms, T0 + 2 + 365 * DAY);
        assert_string_equal(d->subject->id, "91350100M000100Y43");
        assert_int_equal(out.alerts[0]->kind, JRP__V1__ALERT_KIND__ALERT_KIND_ESCALATION);
        assert_string_equal(out.alerts[0]->derived_event_id, d->event_id);
        assert_string_equal(out.alerts[0]->escalation_id, "bigdata-warning");
    }
    rules_escalation_out_clear(&out);
    /* It fires once for the same listings. */
    assert_int_equal(rules_escalate(fx->rules, fx->st, T0 + 10, &out), 0);
    assert_int_equal(out.n, 0);
}

static void test_escalation_focus_not_lifted_in_time(void **state)
{
    fixture_t *fx = *state;
    Jrp__V1__CreditEvent ev =
        event("t-1", JRP__V1__EVENT_KIND__EVENT_KIND_LISTED, &subj_person, "focus.taxi", T0);
    match(fx, &ev, T0);
    assert_int_equal(rules_next_due(fx->rules, fx->st), T0 + 180 * DAY);
    rules_escalation_out_t out = {0};
    assert_int_equal(rules_escalate(fx->rules, fx->st, T0 + 180 * DAY - 1, &out), 0);
    assert_int_equal(out.n, 0);
    assert_int_equal(rules_escalate(fx->rules, fx->st, T0 + 180 * DAY, &out), 0);
    assert_int_equal(out.n, 1);
    assert_string_equal(out.events[0]->list_code, "black.taxi");
    assert_int_equal(out.events[0]->valid_until_ms, T0 + 180 * DAY + 730 * DAY);
    rules_escalation_out_clear(&out);
    assert_int_equal(rules_next_due(fx->rules, fx->st), 0); /* fired: nothing more due */
    assert_int_equal(rules_escalate(fx->rules, fx->st, T0 + 200 * DAY, &out), 0);
    assert_int_equal(out.n, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sample_rules_valid),
        cmocka_unit_test(test_unknown_measure_refused),
        cmocka_unit_test(test_bad_memoranda),
        cmocka_unit_test(test_every_error_listed),
        cmocka_unit_test(test_missing_catalogue_and_dir),
        cmocka_unit_test(test_dates),
        cmocka_unit_test_setup_teardown(test_listed_enterprise_vehicle_person, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delisted_lifts_exactly_that_listing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_duplicate_and_horizon, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ids_deterministic, setup, teardown),
        cmocka_unit_test_setup_teardown(test_penalty_beats_incentive, setup, teardown),
        cmocka_unit_test_setup_teardown(test_grades, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lapse, setup, teardown),
        cmocka_unit_test_setup_teardown(test_memorandum_in_force, setup, teardown),
        cmocka_unit_test_setup_teardown(test_escalation_focus_in_three_fields, setup, teardown),
        cmocka_unit_test_setup_teardown(test_escalation_focus_not_lifted_in_time, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
