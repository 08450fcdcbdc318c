/*
 * End-to-end scenario of jrp-ledger against the real local Kafka and Redis, with the real
 * engine: a black listing gives actions to four departments; two execute, one rejects, one
 * stays silent. The effects list (jrpctl report, JSON and CSV) shows exactly that, the silent
 * department's action raises exactly one FEEDBACK_OVERDUE alert, a SANCTIONED decision that is
 * never published raises DISCLOSURE_DUE and DISCLOSURE_BREACHED once each, a LICENSED one that
 * its department confirms raises nothing, and a second ledger that re-reads every topic from
 * the beginning changes nothing. Working days are compressed (ledger.workday_seconds) so that
 * deadlines pass within the test.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <cmocka.h>
#include <jansson.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <uv.h>

#include "gateway.h"
#include "gwfx.h"
#include "harness.h"
#include "jrp/v1/feedback.pb-c.h"
#include "kafka.h"
#include "redis.h"
#include "rules.h"
#include "testenv.h"

#define ENT1 "91350100M000100Y43"
#define ENT2 "91512081MA62K0260E"
#define ENTERPRISE JRP__V1__SUBJECT_TYPE__SUBJECT_TYPE_ENTERPRISE
#define WORKDAY_S 12 /* one compressed working day */

static const ProtobufCMessageDescriptor *action_desc = &jrp__v1__action__descriptor;
static const ProtobufCMessageDescriptor *alert_desc = &jrp__v1__alert__descriptor;

static void feedback(rd_kafka_t *rk, harness_t *h, const char *action_id, const char *dept,
                     Jrp__V1__FeedbackStatus status, int64_t at)
{
    Jrp__V1__Feedback fb = JRP__V1__FEEDBACK__INIT;
    fb.action_id = (char *)action_id;
    fb.department = (char *)dept;
    fb.status = status;
    fb.note = "test";
    fb.occurred_at_ms = at;
    uint8_t buf[1024];
    size_t len = jrp__v1__feedback__pack(&fb, buf);
    char topic[256];
    config_topic(h->cfg, "feedback", topic, sizeof(topic));
    assert_int_equal(kafka_produce(rk, topic, RD_KAFKA_PARTITION_UA, action_id, strlen(action_id),
                                   buf, len, kafka_headers("jrp.v1.Feedback", NULL), NULL),
                     0);
}

/* The action ids of a department's topic (at least n), in order. */
static void action_ids(harness_t *h, const char *dept, size_t n, char ids[][64])
{
    char suffix[128];
    harness_records_t r;
    snprintf(suffix, sizeof(suffix), "actions.%s", dept);
    harness_read(h, suffix, action_desc, n, 1000, 30000, &r);
    if (r.n != n)
        fail_msg("%s: %zu actions, want %zu", suffix, r.n, n);
    for (size_t i = 0; i < r.n; i++) {
        const Jrp__V1__Action *a = r.values[i];
        assert_int_equal(a->op, JRP__V1__ACTION_OP__ACTION_OP_APPLY);
        assert_string_equal(a->memorandum_id, "overload-2017");
        snprintf(ids[i], 64, "%s", a->action_id);
    }
    harness_records_free(&r, action_desc);
}

static pid_t ledger_start(harness_t *h, const char *log, const char *group, int *port)
{
    char opt[256];
    snprintf(opt, sizeof(opt), "ledger.group=%s", group);
    pid_t pid = harness_service_start(h, "jrp-ledger", log, "-o", opt, NULL);
    *port = harness_log_port(h, log, 30000);
    if (*port < 0)
        fail_msg("jrp-ledger never bound its ops port (see %s)", log);
    char body[256];
    for (int i = 0; i < 300; i++) {
        if (harness_http_get(*port, "/readyz", body, sizeof(body)) == 200)
            return pid;
        usleep(100000);
    }
    fail_msg("jrp-ledger not ready after 30 s: %s", body);
    return pid;
}

/* Value of an unlabelled or labelled sample in the ledger's /metrics, or -1. */
static double metric(int port, const char *series)
{
    static char body[65536];
    if (harness_http_get(port, "/metrics", body, sizeof(body)) != 200)
        return -1;
    char want[256];
    snprintf(want, sizeof(want), "\n%s ", series);
    const char *p = strstr(body, want);
    return p ? atof(p + strlen(want)) : -1;
}

static void wait_metric(int port, const char *series, double at_least, int timeout_ms)
{
    double v = -1;
    for (int waited = 0; waited < timeout_ms; waited += 200) {
        v = metric(port, series);
        if (v >= at_least)
            return;
        usleep(200000);
    }
    fail_msg("%s = %g after %d ms, want at least %g", series, v, timeout_ms, at_least);
}

static char *report(harness_t *h, int64_t from, int64_t to, const char *format)
{
    static char out[65536];
    int rc = harness_jrpctl(h, out, sizeof(out), "report --from %lld --to %lld --format %s",
                            (long long)from, (long long)to, format);
    if (rc)
        fail_msg("jrpctl report: exit %d: %s", rc, out);
    return out;
}

/* The effects row of a department as "applied/lifted/executed/rejected/pending/overdue". */
static const char *row(json_t *rep, const char *dept)
{
    static char buf[128];
    size_t i;
    json_t *r;
    json_array_foreach(json_object_get(rep, "effects"), i, r)
    {
        if (strcmp(json_string_value(json_object_get(r, "department")), dept))
            continue;
        assert_string_equal(json_string_value(json_object_get(r, "memorandum_id")),
                            "overload-2017");
        snprintf(buf, sizeof(buf), "%lld/%lld/%lld/%lld/%lld/%lld",
                 (long long)json_integer_value(json_object_get(r, "applied")),
                 (long long)json_integer_value(json_object_get(r, "lifted")),
                 (long long)json_integer_value(json_object_get(r, "executed")),
                 (long long)json_integer_value(json_object_get(r, "rejected")),
                 (long long)json_integer_value(json_object_get(r, "pending")),
                 (long long)json_integer_value(json_object_get(r, "overdue")));
        return buf;
    }
    return "none";
}

static const char *report_subjects(harness_t *h, const char *format)
{
    static char out[65536];
    int rc = harness_jrpctl(h, out, sizeof(out), "report --list subjects --format %s", format);
    if (rc)
        fail_msg("jrpctl report --list subjects: exit %d: %s", rc, out);
    return out;
}

/* Wait until the subjects list holds n subjects; with n = 1, check it is ENT1 on the black list. */
static void expect_subjects(harness_t *h, size_t n)
{
    json_t *rep = NULL, *subjects = NULL;
    for (int i = 0; i < 100; i++) {
        json_decref(rep);
        rep = json_loads(report_subjects(h, "json"), 0, NULL);
        assert_non_null(rep);
        subjects = json_object_get(rep, "subjects");
        if (json_array_size(subjects) == n)
            break;
        usleep(200000);
    }
    if (json_array_size(subjects) != n)
        fail_msg("subjects list has %zu subjects, want %zu", json_array_size(subjects), n);
    if (n == 1) {
        json_t *s = json_array_get(subjects, 0),
               *li = json_array_get(json_object_get(s, "lists"), 0);
        assert_string_equal(json_string_value(json_object_get(s, "subject_key")),
                            "enterprise:" ENT1);
        assert_string_equal(json_string_value(json_object_get(s, "type")), "enterprise");
        assert_int_equal(json_array_size(json_object_get(s, "lists")), 1);
        assert_string_equal(json_string_value(json_object_get(li, "list_code")), "black.overload");
        assert_string_equal(json_string_value(json_object_get(li, "source_department")),
                            "transport");
        assert_string_equal(json_string_value(json_object_get(li, "cause_event_id")), "ev-list-1");
        assert_true(json_integer_value(json_object_get(li, "since_ms")) > 0);
    }
    json_decref(rep);
}

static json_t *report_json(harness_t *h, int64_t from, int64_t to)
{
    const char *text = report(h, from, to, "json");
    json_error_t jerr;
    json_t *rep = json_loads(text, 0, &jerr);
    if (!rep)
        fail_msg("report is not JSON (%s): %s", jerr.text, text);
    return rep;
}

static const char *alert_kind(int k)
{
    switch (k) {
    case JRP__V1__ALERT_KIND__ALERT_KIND_FEEDBACK_OVERDUE:
        return "FEEDBACK_OVERDUE";
    case JRP__V1__ALERT_KIND__ALERT_KIND_DISCLOSURE_DUE:
        return "DISCLOSURE_DUE";
    case JRP__V1__ALERT_KIND__ALERT_KIND_DISCLOSURE_BREACHED:
        return "DISCLOSURE_BREACHED";
    default:
        return "OTHER";
    }
}

/* The alerts topic as sorted "KIND department id" lines, after quiet_ms without news. */
static void expect_alerts(harness_t *h, size_t min, int quiet_ms, const char *want)
{
    harness_records_t r;
    harness_read(h, "alerts", alert_desc, min, quiet_ms, 40000, &r);
    char lines[16][256];
    size_t n = r.n < 16 ? r.n : 16;
    for (size_t i = 0; i < n; i++) {
        const Jrp__V1__Alert *a = r.values[i];
        assert_non_null(strstr(r.header_dump[i], "jrp-schema=jrp.v1.Alert;"));
        assert_string_equal(r.keys[i], a->kind == JRP__V1__ALERT_KIND__ALERT_KIND_FEEDBACK_OVERDUE
                                           ? "enterprise:" ENT1
                                           : "enterprise:" ENT2);
        assert_true(a->deadline_ms > 0 && a->raised_at_ms >= a->deadline_ms - 1000 * WORKDAY_S);
        snprintf(lines[i], sizeof(lines[i]), "%s %s %s", alert_kind(a->kind), a->department,
                 a->kind == JRP__V1__ALERT_KIND__ALERT_KIND_FEEDBACK_OVERDUE ? a->action_id
                                                                             : a->cause_event_id);
    }
    qsort(lines, n, sizeof(lines[0]), (int (*)(const void *, const void *))strcmp);
    char got[4096] = "";
    for (size_t i = 0; i < n; i++)
        snprintf(got + strlen(got), sizeof(got) - strlen(got), "%s%s", i ? "\n" : "", lines[i]);
    if (r.n != n || strcmp(got, want))
        fail_msg("alerts (%zu):\n%s\nwant:\n%s", r.n, got, want);
    harness_records_free(&r, alert_desc);
}

/* GET path with a bearer token and extra header lines; the status, the body into out. */
static int http_get(int port, const char *path, const char *token, const char *extra, char *out,
                    size_t out_size)
{
    char headers[1024];
    snprintf(headers, sizeof(headers), "Authorization: Bearer %s\r\n%s", token, extra ? extra : "");
    return harness_http_get_headers(port, path, headers, out, out_size);
}

static void test_effects_overdue_disclosure_and_replay(void **state)
{
    (void)state;
    char extra[1024], group[128], group2[128];
    snprintf(group, sizeof(group), "%s", testenv_unique("ledger-a"));
    snprintf(group2, sizeof(group2), "%s", testenv_unique("ledger-b"));
    const char *root = getenv("JRP_ROOT");
    snprintf(extra, sizeof(extra),
             "ledger.calendar = %s/deploy/calendar/cn-workdays.json\n"
             "ledger.workday_seconds = %d\nledger.feedback_due_workdays = 1\n"
             "ledger.scan_ms = 200\ngateway.listen = 127.0.0.1:0\n",
             root ? root : ".", WORKDAY_S);
    harness_t *h = harness_create("ledger", extra);
    harness_load_rules(h, NULL);
    harness_engine_start(h);
    char log[300];
    snprintf(log, sizeof(log), "/tmp/jrp-harness-%s.ledger.log", h->name);
    int port;
    pid_t ledger = ledger_start(h, log, group, &port);

    /* A black listing: overload-2017 gives transport two measures and finance, ndrc and market
     * one each. */
    int64_t t0 = harness_now_ms();
    Jrp__V1__CreditEvent *ev = harness_event("ev-list-1", JRP__V1__EVENT_KIND__EVENT_KIND_LISTED,
                                             ENTERPRISE, ENT1, "black.overload", t0);
    /* Two decisions to disclose (双公示): one decided long enough ago that only a compressed
     * half working day is left, one to be confirmed by its department. */
    Jrp__V1__CreditEvent *sanc = harness_event(
        "ev-sanc-1", JRP__V1__EVENT_KIND__EVENT_KIND_SANCTIONED, ENTERPRISE, ENT2, NULL, t0);
    free(sanc->source_department);
    sanc->source_department = strdup("transport");
    sanc->decision_no = strdup("津交罚〔2026〕7号");
    sanc->title = strdup("超限运输行政处罚");
    sanc->basis = strdup("《公路安全保护条例》第六十六条");
    sanc->decision_date_ms = t0 - 1000LL * (7 * WORKDAY_S - WORKDAY_S / 2);
    Jrp__V1__CreditEvent *lic = harness_event("ev-lic-1", JRP__V1__EVENT_KIND__EVENT_KIND_LICENSED,
                                              ENTERPRISE, ENT2, NULL, t0);
    free(lic->source_department);
    lic->source_department = strdup("market");
    lic->decision_no = strdup("津市监许〔2026〕3号");
    lic->title = strdup("道路运输经营许可");
    lic->decision_date_ms = t0;
    Jrp__V1__CreditEvent *evs[] = {ev, sanc, lic};
    harness_send(h, evs, 3);
    for (int i = 0; i < 3; i++)
        jrp__v1__credit_event__free_unpacked(evs[i], NULL);

    char transport[2][64], finance[1][64], ndrc[1][64], market[1][64];
    action_ids(h, "transport", 2, transport);
    action_ids(h, "finance", 1, finance);
    action_ids(h, "ndrc", 1, ndrc);
    action_ids(h, "market", 1, market);

    char err[512];
    rd_kafka_t *rk = kafka_producer_create(h->cfg, NULL, 0, err, sizeof(err));
    assert_non_null(rk);
    int64_t t = harness_now_ms();
    const Jrp__V1__FeedbackStatus RECEIVED = JRP__V1__FEEDBACK_STATUS__FEEDBACK_STATUS_RECEIVED,
                                  EXECUTED = JRP__V1__FEEDBACK_STATUS__FEEDBACK_STATUS_EXECUTED,
                                  REJECTED = JRP__V1__FEEDBACK_STATUS__FEEDBACK_STATUS_REJECTED;
    feedback(rk, h, transport[0], "transport", RECEIVED, t);
    feedback(rk, h, transport[0], "transport", EXECUTED, t + 1);
    feedback(rk, h, transport[1], "transport", EXECUTED, t);
    feedback(rk, h, finance[0], "finance", EXECUTED, t + 5);
    feedback(rk, h, finance[0], "finance", RECEIVED, t); /* older, arrives later: ignored */
    feedback(rk, h, ndrc[0], "ndrc", REJECTED, t);
    feedback(rk, h, market[0], "market", RECEIVED, t); /* received but never executed */
    /* Disclosures: the licence is published by its department; the penalty only "confirmed" by
     * a department that did not decide it, which does not count. */
    feedback(rk, h, "disclosure:ev-lic-1", "market", EXECUTED, t);
    feedback(rk, h, "disclosure:ev-sanc-1", "finance", EXECUTED, t);
    /* Bytes that are no Feedback: a dead letter, and the partition moves on. */
    char fb_topic[256];
    config_topic(h->cfg, "feedback", fb_topic, sizeof(fb_topic));
    assert_int_equal(kafka_produce(rk, fb_topic, RD_KAFKA_PARTITION_UA, "junk", 4, "\xff\xff\xff",
                                   3, kafka_headers("jrp.v1.Feedback", NULL), NULL),
                     0);
    assert_int_equal(rd_kafka_flush(rk, 30000), 0);
    rd_kafka_destroy(rk);

    /* One overdue alert (market), and the penalty's two disclosure alerts, each once. */
    char want[1024];
    snprintf(want, sizeof(want),
             "DISCLOSURE_BREACHED transport ev-sanc-1\nDISCLOSURE_DUE transport ev-sanc-1\n"
             "FEEDBACK_OVERDUE market %s",
             market[0]);
    expect_alerts(h, 3, 3000, want);
    wait_metric(port, "jrp_ledger_feedback_consumed_total", 9, 20000);
    harness_records_t dl;
    harness_read(h, "dlq", NULL, 1, 500, 30000, &dl);
    assert_int_equal(dl.n, 1);
    assert_string_equal(dl.keys[0], "junk");
    assert_int_equal(dl.lens[0], 3);
    assert_non_null(strstr(dl.header_dump[0], "jrp-error-service=ledger;"));
    assert_non_null(strstr(dl.header_dump[0], "jrp-error-code=decode_failed;"));
    harness_records_free(&dl, NULL);
    assert_int_equal((int)metric(port, "jrp_ledger_dead_letters_total"), 1);
    assert_int_equal((int)metric(port, "jrp_ledger_feedback_wrong_department_total"), 1);
    assert_int_equal((int)metric(port, "jrp_ledger_alerts_raised_total{kind=\"feedback_overdue\"}"),
                     1);
    assert_int_equal((int)metric(port, "jrp_ledger_alerts_raised_total{kind=\"disclosure_due\"}"),
                     1);
    assert_int_equal(
        (int)metric(port, "jrp_ledger_alerts_raised_total{kind=\"disclosure_breached\"}"), 1);
    wait_metric(port, "jrp_ledger_actions{status=\"executed\"}", 3, 5000);
    assert_int_equal((int)metric(port, "jrp_ledger_actions{status=\"rejected\"}"), 1);
    assert_int_equal((int)metric(port, "jrp_ledger_actions{status=\"received\"}"), 1);

    /* The effects list: exactly what the departments reported. */
    int64_t from = t0 - 100000, to = harness_now_ms() + 60000;
    json_t *rep = report_json(h, from, to);
    assert_int_equal(json_array_size(json_object_get(rep, "effects")), 4);
    assert_string_equal(row(rep, "transport"), "2/0/2/0/0/0");
    assert_string_equal(row(rep, "finance"), "1/0/1/0/0/0");
    assert_string_equal(row(rep, "ndrc"), "1/0/0/1/0/0");
    assert_string_equal(row(rep, "market"), "1/0/0/0/0/1");
    char *disc = json_dumps(json_object_get(rep, "disclosures"), JSON_COMPACT);
    assert_string_equal(disc, "[{\"department\":\"market\",\"decisions\":1,\"confirmed\":1,"
                              "\"pending\":0,\"breached\":0},{\"department\":\"transport\","
                              "\"decisions\":1,\"confirmed\":0,\"pending\":0,\"breached\":1}]");
    free(disc);
    json_decref(rep);
    assert_string_equal(report(h, from, to, "csv"),
                        "memorandum_id,department,applied,lifted,executed,rejected,pending,"
                        "overdue\r\n"
                        "overload-2017,finance,1,0,1,0,0,0\r\n"
                        "overload-2017,market,1,0,0,0,0,1\r\n"
                        "overload-2017,ndrc,1,0,0,1,0,0\r\n"
                        "overload-2017,transport,2,0,2,0,0,0\r\n");
    /* The subjects list (对象清单): the listed enterprise, on which list, since when. */
    expect_subjects(h, 1);
    const char *csv = report_subjects(h, "csv");
    if (strncmp(csv,
                "subject_type,subject_id,subject_name,list_code,since,valid_until_ms,"
                "source_department\r\nenterprise," ENT1 ",,black.overload,",
                strlen("subject_type,subject_id,subject_name,list_code,since,valid_until_ms,"
                       "source_department\r\nenterprise," ENT1 ",,black.overload,")))
        fail_msg("subjects CSV: %s", csv);
    assert_non_null(strstr(csv, "+08:00,0,transport\r\n"));

    /* The same list from the gateway, as an admin: JSON, and CSV byte for byte. */
    char out[4096], token[128] = "";
    assert_int_equal(
        harness_jrpctl(h, out, sizeof(out), "token create --department ndrc --scope admin"), 0);
    const char *tk = strstr(out, "\ntoken:");
    assert_non_null(tk);
    assert_int_equal(sscanf(tk + 1, "token: %127s", token), 1);
    gwfx_t *fx = gwfx_start(h->cfg);
    char path[256];
    static char body[65536];
    snprintf(path, sizeof(path), "/v1/reports/effects?from=%lld&to=%lld", (long long)from,
             (long long)to);
    int st = -1;
    for (int i = 0; i < 100 && st != 200; i++) { /* until its Redis connection is up */
        st = http_get(fx->port, path, token, "Accept: text/csv\r\n", body, sizeof(body));
        if (st != 200)
            usleep(100000);
    }
    if (st != 200)
        fail_msg("GET %s: %d %s", path, st, body);
    assert_string_equal(body, report(h, from, to, "csv"));
    assert_int_equal(http_get(fx->port, path, token, NULL, body, sizeof(body)), 200);
    json_error_t jerr;
    rep = json_loads(body, 0, &jerr);
    assert_non_null(rep);
    assert_string_equal(row(rep, "transport"), "2/0/2/0/0/0");
    assert_string_equal(row(rep, "market"), "1/0/0/0/0/1");
    json_decref(rep);
    /* The subjects and measures lists too, the same as jrpctl's. */
    assert_int_equal(http_get(fx->port, "/v1/reports/subjects", token, "Accept: text/csv\r\n", body,
                              sizeof(body)),
                     200);
    assert_string_equal(body, report_subjects(h, "csv"));
    snprintf(path, sizeof(path), "/v1/reports/measures?from=%lld&to=%lld", (long long)from,
             (long long)to);
    assert_int_equal(http_get(fx->port, path, token, "Accept: text/csv\r\n", body, sizeof(body)),
                     200);
    char mcsv[65536];
    assert_int_equal(harness_jrpctl(h, mcsv, sizeof(mcsv),
                                    "report --list measures --from %lld --to %lld --format csv",
                                    (long long)from, (long long)to),
                     0);
    assert_string_equal(body, mcsv);
    assert_non_null(strstr(body, "\r\noverload-2017,"));
    assert_int_equal(
        http_get(fx->port, "/v1/reports/measures?from=1", token, NULL, body, sizeof(body)), 400);
    assert_non_null(strstr(body, "\"field\":\"to\""));
    gwfx_stop(fx);

    /* A period before the listing is empty. */
    rep = report_json(h, t0 - 300000, t0 - 200000);
    assert_int_equal(json_array_size(json_object_get(rep, "effects")), 0);
    json_decref(rep);

    /* Delisting lifts every measure: five REVOKEs, counted as lifted. The silent department's
     * action stays overdue (its alert came before the lifting); nothing new is raised. */
    Jrp__V1__CreditEvent *del =
        harness_event("ev-delist-1", JRP__V1__EVENT_KIND__EVENT_KIND_DELISTED, ENTERPRISE, ENT1,
                      "black.overload", harness_now_ms());
    harness_send(h, &del, 1);
    jrp__v1__credit_event__free_unpacked(del, NULL);
    to = harness_now_ms() + 60000;
    int lifted = 0;
    for (int i = 0; i < 150 && !lifted; i++) {
        rep = report_json(h, from, to);
        lifted = !strcmp(row(rep, "transport"), "2/2/2/0/0/0") &&
                 !strcmp(row(rep, "finance"), "1/1/1/0/0/0") &&
                 !strcmp(row(rep, "ndrc"), "1/1/0/1/0/0") &&
                 !strcmp(row(rep, "market"), "1/1/0/0/0/1");
        json_decref(rep);
        if (!lifted)
            usleep(200000);
    }
    if (!lifted)
        fail_msg("REVOKEs not counted after 30 s: %s", report(h, from, to, "csv"));
    wait_metric(port, "jrp_ledger_actions{status=\"issued\"}", 5, 5000); /* the REVOKEs */
    expect_subjects(h, 0); /* nobody is listed any more */

    /* The measures list (措施清单): the active rule set's measures with their basis, each with
     * what was applied and lifted in the period. */
    char mout[65536];
    assert_int_equal(harness_jrpctl(h, mout, sizeof(mout),
                                    "report --list measures --from %lld --to %lld", (long long)from,
                                    (long long)to),
                     0);
    json_t *ms = json_loads(mout, 0, NULL);
    assert_non_null(ms);
    size_t mi;
    json_t *mr;
    int seen = 0, others = 0;
    json_array_foreach(json_object_get(ms, "measures"), mi, mr)
    {
        const char *memo = json_string_value(json_object_get(mr, "memorandum_id"));
        const char *dept = json_string_value(json_object_get(mr, "department"));
        const char *code = json_string_value(json_object_get(mr, "measure_code"));
        long long applied = json_integer_value(json_object_get(mr, "applied"));
        long long lifted_n = json_integer_value(json_object_get(mr, "lifted"));
        if (strcmp(memo, "overload-2017")) {
            others++;
            assert_int_equal(applied + lifted_n, 0);
            continue;
        }
        assert_true(strlen(json_string_value(json_object_get(mr, "basis"))) > 0);
        assert_string_equal(json_string_value(json_object_get(mr, "kind")), "penalty");
        if (!strcmp(dept, "transport") && !strcmp(code, "STRICT_SUPERVISION")) {
            seen++;
            assert_int_equal(applied, 1);
            assert_int_equal(lifted_n, 1);
        }
    }
    assert_int_equal(seen, 1);
    assert_true(others > 0);
    json_decref(ms);

    /* Replay: stop the ledger and run one in a new group, which reads every topic from the
     * beginning. Nothing is counted twice and no alert is raised again. */
    assert_int_equal(harness_service_stop(ledger, SIGTERM), 0);
    snprintf(log, sizeof(log), "/tmp/jrp-harness-%s.ledger2.log", h->name);
    ledger = ledger_start(h, log, group2, &port);
    wait_metric(port, "jrp_ledger_actions_consumed_total", 10, 30000);
    wait_metric(port, "jrp_ledger_feedback_consumed_total", 9, 30000);
    wait_metric(port, "jrp_ledger_disclosures_consumed_total", 2, 30000);
    usleep(1500000); /* several alert scans */
    assert_int_equal((int)metric(port, "jrp_ledger_alerts_raised_total{kind=\"feedback_overdue\"}"),
                     0);
    assert_int_equal((int)metric(port, "jrp_ledger_actions{status=\"executed\"}"), 3);
    assert_int_equal((int)metric(port, "jrp_ledger_actions{status=\"issued\"}"), 5);
    assert_int_equal((int)metric(port, "jrp_ledger_actions{status=\"received\"}"), 1);
    rep = report_json(h, from, to);
    assert_string_equal(row(rep, "transport"), "2/2/2/0/0/0");
    assert_string_equal(row(rep, "finance"), "1/1/1/0/0/0");
    assert_string_equal(row(rep, "ndrc"), "1/1/0/1/0/0");
    assert_string_equal(row(rep, "market"), "1/1/0/0/0/1");
    json_decref(rep);
    expect_alerts(h, 3, 1500, want);
    assert_int_equal(harness_service_stop(ledger, SIGTERM), 0);
    harness_destroy(h);
}

/* Feedback may arrive before its action (another topic, other partitions; a department may
 * report as soon as it hears of the measure). When the action is read, its own department's
 * report becomes its status; another department's, even a later EXECUTED, is dropped and
 * counted as from a wrong department. */
static void test_feedback_before_its_action(void **state)
{
    (void)state;
    char group[128], log[300];
    snprintf(group, sizeof(group), "%s", testenv_unique("ledger-early"));
    harness_t *h = harness_create("ledger-early", "gateway.listen = 127.0.0.1:0\n");
    harness_load_rules(h, NULL);
    snprintf(log, sizeof(log), "/tmp/jrp-harness-%s.ledger.log", h->name);
    int port;
    pid_t ledger = ledger_start(h, log, group, &port);

    /* Action ids are deterministic: the finance APPLY that the listing below will cause. */
    char id[33];
    rules_apply_id("early-1", 1, "overload-2017", "finance", "RESTRICT_PROCUREMENT",
                   "list:black.overload", id);
    char err[512];
    rd_kafka_t *rk = kafka_producer_create(h->cfg, NULL, 0, err, sizeof(err));
    assert_non_null(rk);
    int64_t t = harness_now_ms();
    feedback(rk, h, id, "transport", JRP__V1__FEEDBACK_STATUS__FEEDBACK_STATUS_EXECUTED, t + 5);
    feedback(rk, h, id, "finance", JRP__V1__FEEDBACK_STATUS__FEEDBACK_STATUS_RECEIVED, t);
    assert_int_equal(rd_kafka_flush(rk, 30000), 0);
    rd_kafka_destroy(rk);
    wait_metric(port, "jrp_ledger_feedback_consumed_total", 2, 30000);
    assert_int_equal((int)metric(port, "jrp_ledger_feedback_wrong_department_total"), 0);

    harness_engine_start(h);
    Jrp__V1__CreditEvent *ev = harness_event("early-1", JRP__V1__EVENT_KIND__EVENT_KIND_LISTED,
                                             ENTERPRISE, ENT1, "black.overload", t);
    harness_send(h, &ev, 1);
    jrp__v1__credit_event__free_unpacked(ev, NULL);
    char finance[1][64];
    action_ids(h, "finance", 1, finance);
    assert_string_equal(finance[0], id);
    wait_metric(port, "jrp_ledger_feedback_wrong_department_total", 1, 30000);
    wait_metric(port, "jrp_ledger_actions{status=\"received\"}", 1, 10000);
    assert_true(metric(port, "jrp_ledger_actions{status=\"executed\"}") < 1);
    json_t *rep = report_json(h, t - 100000, harness_now_ms() + 60000);
    assert_string_equal(row(rep, "finance"), "1/0/0/0/1/0");
    json_decref(rep);
    assert_int_equal(harness_service_stop(ledger, SIGTERM), 0);
    harness_destroy(h);
}

/* Start a ledger without waiting for /readyz (it may never be ready here). */
static pid_t ledger_spawn(harness_t *h, const char *log, const char *group, int *port)
{
    char opt[256];
    snprintf(opt, sizeof(opt), "ledger.group=%s", group);
    pid_t pid = harness_service_start(h, "jrp-ledger", log, "-o", opt, NULL);
    *port = harness_log_port(h, log, 30000);
    if (*port < 0)
        fail_msg("jrp-ledger never bound its ops port (see %s)", log);
    return pid;
}

/* Redis refuses the writes (a key of the wrong type makes the script fail): the batch is held,
 * its offset is not committed (a ledger killed meanwhile gets the record again), and once Redis
 * takes the writes the record counts exactly once. */
static void test_failed_writes_hold_the_batch(void **state)
{
    (void)state;
    char extra[1024], group[128], log[300];
    snprintf(group, sizeof(group), "%s", testenv_unique("ledger-hold"));
    const char *root = getenv("JRP_ROOT");
    snprintf(extra, sizeof(extra),
             "ledger.calendar = %s/deploy/calendar/cn-workdays.json\nledger.scan_ms = 200\n",
             root ? root : ".");
    harness_t *h = harness_create("ledger-hold", extra);
    snprintf(log, sizeof(log), "/tmp/jrp-harness-%s.ledger.log", h->name);
    int port;
    pid_t ledger = ledger_start(h, log, group, &port);
    char err[512], key[256];
    redisContext *c = redis_connect(config_get(h->cfg, "redis.url"), 5000, err, sizeof(err));
    assert_non_null(c);
    snprintf(key, sizeof(key), "%sledger:a:act-1", config_get(h->cfg, "redis.prefix"));
    redisReply *r = redisCommand(c, "SET %s not-a-hash", key);
    assert_non_null(r);
    freeReplyObject(r);

    rd_kafka_t *rk = kafka_producer_create(h->cfg, NULL, 0, err, sizeof(err));
    assert_non_null(rk);
    feedback(rk, h, "act-1", "transport", JRP__V1__FEEDBACK_STATUS__FEEDBACK_STATUS_EXECUTED,
             harness_now_ms());
    assert_int_equal(rd_kafka_flush(rk, 30000), 0);
    rd_kafka_destroy(rk);

    wait_metric(port, "jrp_ledger_batch_held", 1, 30000);
    char body[512];
    assert_int_equal(harness_http_get(port, "/readyz", body, sizeof(body)), 503);
    assert_non_null(strstr(body, "redis"));
    assert_true(metric(port, "jrp_ledger_redis_errors_total") >= 1);
    assert_int_equal((int)metric(port, "jrp_ledger_feedback_consumed_total"), 0);

    /* Killed while holding it: the offset was never committed, so the next ledger gets it. */
    assert_int_equal(harness_service_stop(ledger, SIGKILL), 128 + SIGKILL);
    snprintf(log, sizeof(log), "/tmp/jrp-harness-%s.ledger2.log", h->name);
    ledger = ledger_spawn(h, log, group, &port);
    wait_metric(port, "jrp_ledger_batch_held", 1, 40000);

    /* Redis takes the writes again: the record counts once, the status is recorded (as the
     * department's early report: act-1 itself was never read). */
    r = redisCommand(c, "DEL %s", key);
    assert_non_null(r);
    freeReplyObject(r);
    wait_metric(port, "jrp_ledger_batches_total", 1, 20000);
    assert_int_equal((int)metric(port, "jrp_ledger_feedback_consumed_total"), 1);
    assert_int_equal((int)metric(port, "jrp_ledger_batch_held"), 0);
    r = redisCommand(c, "HGET %s early:transport:status", key);
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_STRING);
    assert_string_equal(r->str, "executed");
    freeReplyObject(r);
    for (int i = 0; i < 100 && harness_http_get(port, "/readyz", body, sizeof(body)) != 200; i++)
        usleep(200000);
    assert_int_equal(harness_http_get(port, "/readyz", body, sizeof(body)), 200);
    assert_int_equal(harness_service_stop(ledger, SIGTERM), 0);
    redisFree(c);
    harness_destroy(h);
}

static void test_report_arguments(void **state)
{
    (void)state;
    harness_t *h = harness_create("ledger-args", NULL);
    char out[2048];
    assert_int_equal(harness_jrpctl(h, out, sizeof(out), "report --from 2026-13-01 --to 1"), 1);
    assert_non_null(strstr(out, "--from \"2026-13-01\""));
    assert_int_equal(
        harness_jrpctl(h, out, sizeof(out), "report --from 2026-11-02 --to 2026-11-01"), 1);
    assert_non_null(strstr(out, "--to must be after --from"));
    assert_int_equal(harness_jrpctl(h, out, sizeof(out),
                                    "report --from 2026-11-01T00:00:00+08:00 --to 2026-12-01 "
                                    "--format csv"),
                     0);
    assert_string_equal(out, "memorandum_id,department,applied,lifted,executed,rejected,pending,"
                             "overdue\r\n");
    harness_destroy(h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_effects_overdue_disclosure_and_replay),
        cmocka_unit_test(test_feedback_before_its_action),
        cmocka_unit_test(test_failed_writes_hold_the_batch),
        cmocka_unit_test(test_report_arguments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
