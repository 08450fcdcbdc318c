/*
 * End-to-end scenarios of jrp-engine against the real local Kafka and Redis: each behaviour of
 * the engine, asserted as a read_committed department consumer sees its topic.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"
#include "ids.h"
#include "rules.h"

#define ENT1 "91350100M000100Y43"
#define ENT2 "91512081MA62K0260E"
#define PERSON "11010519491231002X"
#define VEHICLE "津A12345"
#define ENTERPRISE JRP__V1__SUBJECT_TYPE__SUBJECT_TYPE_ENTERPRISE
#define LISTED JRP__V1__EVENT_KIND__EVENT_KIND_LISTED
#define DELISTED JRP__V1__EVENT_KIND__EVENT_KIND_DELISTED
#define GRADED JRP__V1__EVENT_KIND__EVENT_KIND_GRADED
#define APPLY JRP__V1__ACTION_OP__ACTION_OP_APPLY
#define REVOKE JRP__V1__ACTION_OP__ACTION_OP_REVOKE

static const ProtobufCMessageDescriptor *action_desc = &jrp__v1__action__descriptor;
static const ProtobufCMessageDescriptor *decision_desc = &jrp__v1__decision__descriptor;

static harness_t *start_with(const char *tag, const char *extra)
{
    harness_t *h = harness_create(tag, extra);
    harness_load_rules(h, NULL);
    harness_engine_start(h);
    return h;
}

static harness_t *start(const char *tag)
{
    return start_with(tag, NULL);
}

static void stop(harness_t *h)
{
    int rc = harness_engine_signal(h, SIGTERM);
    if (rc != 0) {
        char cmd[512];
        snprintf(cmd, sizeof(cmd), "tail -n 30 %s", h->engine_log);
        if (system(cmd) < 0)
            fprintf(stderr, "cannot show %s\n", h->engine_log);
        fail_msg("jrp-engine exited with %d on SIGTERM", rc);
    }
    harness_destroy(h);
}

static void send1(harness_t *h, Jrp__V1__CreditEvent *ev)
{
    harness_send(h, &ev, 1);
    jrp__v1__credit_event__free_unpacked(ev, NULL);
}

/* "OP MEASURE" of every action on a department's topic, in order, joined by ", ". */
static const char *ops(const harness_records_t *r)
{
    static char buf[4096];
    size_t n = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < r->n; i++) {
        const Jrp__V1__Action *a = r->values[i];
        n += (size_t)snprintf(buf + n, sizeof(buf) - n, "%s%s %s", i ? ", " : "",
                              a->op == APPLY ? "APPLY" : "REVOKE", a->measure_code);
    }
    return buf;
}

static void expect_topic(harness_t *h, const char *dept, size_t min, const char *want)
{
    char suffix[128];
    harness_records_t r;
    snprintf(suffix, sizeof(suffix), "actions.%s", dept);
    harness_read(h, suffix, action_desc, min, 1500, 30000, &r);
    if (strcmp(ops(&r), want))
        fail_msg("%s: got \"%s\", want \"%s\"", suffix, ops(&r), want);
    harness_records_free(&r, action_desc);
}

static void test_listed_each_department_gets_its_measures(void **state)
{
    (void)state;
    harness_t *h = start("eng-listed");
    int64_t t = harness_now_ms();
    Jrp__V1__CreditEvent *ev = harness_event("ev-1", LISTED, ENTERPRISE, ENT1, "black.overload", t);
    ev->valid_until_ms = t + 730LL * 86400000;
    send1(h, ev);
    expect_topic(h, "transport", 2, "APPLY STRICT_SUPERVISION, APPLY RESTRICT_HANDLING");
    expect_topic(h, "finance", 1, "APPLY RESTRICT_PROCUREMENT");
    expect_topic(h, "ndrc", 1, "APPLY RESTRICT_HANDLING");
    expect_topic(h, "market", 1, "APPLY RESTRICT_HANDLING");
    expect_topic(h, "public_security", 0, ""); /* persons only */
    expect_topic(h, "housing", 0, "");
    /* Every action carries the contract's fields and the subject key as its Kafka key. */
    harness_records_t r;
    harness_read(h, "actions.transport", action_desc, 2, 500, 30000, &r);
    for (size_t i = 0; i < r.n; i++) {
        const Jrp__V1__Action *a = r.values[i];
        assert_string_equal(r.keys[i], "enterprise:" ENT1);
        assert_non_null(strstr(r.header_dump[i], "jrp-schema=jrp.v1.Action;"));
        assert_int_equal(strlen(a->action_id), 32);
        assert_string_equal(a->department, "transport");
        assert_string_equal(a->memorandum_id, "overload-2017");
        assert_string_equal(a->list_code, "black.overload");
        assert_string_equal(a->cause_event_id, "ev-1");
        assert_int_equal(a->measure_kind, JRP__V1__MEASURE_KIND__MEASURE_KIND_PENALTY);
        assert_true(strlen(a->legal_basis) > 0);
        assert_int_equal(a->valid_until_ms, t + 730LL * 86400000);
        assert_int_equal(a->ruleset_version, 1);
    }
    harness_records_free(&r, action_desc);
    /* One decision, APPLIED, naming the memorandum and the five actions. */
    harness_read(h, "decisions", decision_desc, 1, 500, 30000, &r);
    assert_int_equal(r.n, 1);
    const Jrp__V1__Decision *d = r.values[0];
    assert_string_equal(d->event_id, "ev-1");
    assert_int_equal(d->outcome, JRP__V1__DECISION_OUTCOME__DECISION_OUTCOME_APPLIED);
    assert_int_equal(d->n_action_ids, 5);
    assert_int_equal(d->n_matched, 1);
    assert_string_equal(d->matched[0]->id, "overload-2017");
    assert_int_equal(d->ruleset_version, 1);
    harness_records_free(&r, decision_desc);
    stop(h);
}

static void test_delisted_revokes_what_was_applied(void **state)
{
    (void)state;
    harness_t *h = start("eng-delist");
    int64_t t = harness_now_ms();
    send1(h, harness_event("a-1", LISTED, ENTERPRISE, ENT1, "black.logistics", t));
    send1(h, harness_event("a-2", LISTED, ENTERPRISE, ENT1, "black.overload", t + 1));
    send1(h, harness_event("a-3", DELISTED, ENTERPRISE, ENT1, "black.logistics", t + 2));
    harness_records_t r;
    harness_read(h, "actions.transport", action_desc, 6, 1500, 30000, &r);
    assert_string_equal(ops(&r), "APPLY RESTRICT_HANDLING, APPLY STRICT_SUPERVISION, "
                                 "APPLY STRICT_SUPERVISION, APPLY RESTRICT_HANDLING, "
                                 "REVOKE RESTRICT_HANDLING, REVOKE STRICT_SUPERVISION");
    /* The REVOKEs name the logistics APPLYs, not the overload ones. */
    const Jrp__V1__Action **a = (const Jrp__V1__Action **)r.values;
    assert_string_equal(a[4]->revokes_action_id, a[0]->action_id);
    assert_string_equal(a[5]->revokes_action_id, a[1]->action_id);
    assert_string_equal(a[4]->list_code, "black.logistics");
    assert_string_equal(a[4]->cause_event_id, "a-3");
    char want[33];
    rules_revoke_id(a[0]->action_id, want);
    assert_string_equal(a[4]->action_id, want);
    harness_records_free(&r, action_desc);
    expect_topic(h, "natural_resources", 2, "APPLY RESTRICT_HANDLING, REVOKE RESTRICT_HANDLING");
    expect_topic(h, "ndrc", 1, "APPLY RESTRICT_HANDLING"); /* overload's stays */
    stop(h);
}

static void test_duplicate_event_is_a_no_op(void **state)
{
    (void)state;
    harness_t *h = start("eng-dup");
    int64_t t = harness_now_ms();
    send1(h, harness_event("d-1", LISTED, ENTERPRISE, ENT2, "black.overload", t));
    assert_int_equal(harness_wait_decisions(h, 1, 30000), 1);
    send1(h, harness_event("d-1", LISTED, ENTERPRISE, ENT2, "black.overload", t));
    harness_records_t r;
    harness_read(h, "decisions", decision_desc, 2, 1000, 30000, &r);
    assert_int_equal(r.n, 2);
    const Jrp__V1__Decision *d = r.values[1];
    assert_int_equal(d->outcome, JRP__V1__DECISION_OUTCOME__DECISION_OUTCOME_DUPLICATE);
    assert_int_equal(d->n_action_ids, 0);
    harness_records_free(&r, decision_desc);
    expect_topic(h, "transport", 2, "APPLY STRICT_SUPERVISION, APPLY RESTRICT_HANDLING");
    stop(h);
}

static void test_lapse_lifts_without_an_event(void **state)
{
    (void)state;
    harness_t *h = start("eng-lapse");
    int64_t t = harness_now_ms();
    Jrp__V1__CreditEvent *ev = harness_event(
        "v-1", LISTED, JRP__V1__SUBJECT_TYPE__SUBJECT_TYPE_VEHICLE, VEHICLE, "black.overload", t);
    ev->valid_until_ms = t + 4000;
    send1(h, ev);
    harness_records_t r;
    harness_read(h, "actions.transport", action_desc, 4, 1500, 30000, &r);
    assert_string_equal(ops(&r), "APPLY STRICT_SUPERVISION, APPLY NO_TOLL_GREEN_CHANNEL, "
                                 "REVOKE STRICT_SUPERVISION, REVOKE NO_TOLL_GREEN_CHANNEL");
    const Jrp__V1__Action *rv = r.values[2];
    /* Lifted within 5 s of the deadline. */
    assert_true(rv->issued_at_ms >= t + 4000);
    assert_true(rv->issued_at_ms <= t + 4000 + 5000);
    assert_string_equal(rv->revokes_action_id, ((Jrp__V1__Action *)r.values[0])->action_id);
    harness_records_free(&r, action_desc);
    harness_read(h, "decisions", decision_desc, 2, 500, 30000, &r);
    assert_int_equal(r.n, 2);
    const Jrp__V1__Decision *d = r.values[1];
    assert_string_equal(d->reason, "expired");
    assert_int_equal(strncmp(d->event_id, "lapse-", 6), 0);
    assert_int_equal(d->n_action_ids, 2);
    harness_records_free(&r, decision_desc);
    stop(h);
}

static void test_penalty_beats_incentive(void **state)
{
    (void)state;
    harness_t *h = start("eng-conflict");
    int64_t t = harness_now_ms();
    send1(h, harness_event("p-1", LISTED, ENTERPRISE, ENT2, "red.construction", t));
    send1(h, harness_event("p-2", LISTED, ENTERPRISE, ENT2, "black.logistics", t + 1));
    Jrp__V1__CreditEvent *renew =
        harness_event("p-3", LISTED, ENTERPRISE, ENT2, "red.construction", t + 2);
    renew->valid_until_ms = t + 700LL * 86400000;
    send1(h, renew);
    send1(h, harness_event("p-4", DELISTED, ENTERPRISE, ENT2, "black.logistics", t + 3));
    expect_topic(h, "housing", 2, "APPLY LOWER_DEPOSIT, REVOKE LOWER_DEPOSIT, APPLY LOWER_DEPOSIT");
    expect_topic(h, "transport", 10,
                 "APPLY PRIORITY_HANDLING, APPLY FEWER_INSPECTIONS, "
                 "REVOKE PRIORITY_HANDLING, REVOKE FEWER_INSPECTIONS, "
                 "APPLY RESTRICT_HANDLING, APPLY STRICT_SUPERVISION, "
                 "REVOKE RESTRICT_HANDLING, REVOKE STRICT_SUPERVISION, "
                 "APPLY PRIORITY_HANDLING, APPLY FEWER_INSPECTIONS");
    harness_records_t r;
    harness_read(h, "decisions", decision_desc, 4, 500, 30000, &r);
    assert_int_equal(r.n, 4);
    const Jrp__V1__Decision *d = r.values[2];
    assert_string_equal(d->event_id, "p-3");
    assert_int_equal(d->outcome, JRP__V1__DECISION_OUTCOME__DECISION_OUTCOME_SUPPRESSED);
    assert_int_equal(d->n_suppressed, 5);
    harness_records_free(&r, decision_desc);
    stop(h);
}

static void test_graded_supervision(void **state)
{
    (void)state;
    harness_t *h = start("eng-grade");
    int64_t t = harness_now_ms();
    Jrp__V1__CreditEvent *g1 = harness_event("g-1", GRADED, ENTERPRISE, ENT1, NULL, t);
    g1->grade_field = strdup("transport_industry");
    g1->grade = strdup("AA");
    send1(h, g1);
    Jrp__V1__CreditEvent *g2 = harness_event("g-2", GRADED, ENTERPRISE, ENT1, NULL, t + 1);
    g2->grade_field = strdup("transport_industry");
    g2->grade = strdup("D");
    send1(h, g2);
    expect_topic(h, "transport", 3,
                 "APPLY FEWER_INSPECTIONS, REVOKE FEWER_INSPECTIONS, APPLY STRICT_SUPERVISION");
    stop(h);
}

static void test_escalation_emits_a_derived_listing(void **state)
{
    (void)state;
    harness_t *h = start("eng-esc");
    int64_t t = harness_now_ms();
    send1(h, harness_event("f-1", LISTED, ENTERPRISE, ENT1, "focus.taxi", t));
    send1(h, harness_event("f-2", LISTED, ENTERPRISE, ENT1, "focus.overload", t + 1));
    send1(h, harness_event("f-3", LISTED, ENTERPRISE, ENT1, "focus.tourism", t + 2));
    /* The third field escalates: an alert, and a derived event processed like any other. */
    harness_records_t r;
    harness_read(h, "alerts", &jrp__v1__alert__descriptor, 1, 1000, 30000, &r);
    assert_int_equal(r.n, 1);
    const Jrp__V1__Alert *al = r.values[0];
    assert_int_equal(al->kind, JRP__V1__ALERT_KIND__ALERT_KIND_ESCALATION);
    assert_string_equal(al->escalation_id, "bigdata-warning");
    char derived[80];
    snprintf(derived, sizeof(derived), "%s", al->derived_event_id);
    harness_records_free(&r, &jrp__v1__alert__descriptor);
    harness_read(h, "events", &jrp__v1__credit_event__descriptor, 4, 1000, 30000, &r);
    assert_int_equal(r.n, 4);
    const Jrp__V1__CreditEvent *ev = r.values[3];
    assert_string_equal(ev->event_id, derived);
    assert_string_equal(ev->source_department, "jrp");
    assert_string_equal(ev->list_code, "focus.bigdata_warning");
    harness_records_free(&r, &jrp__v1__credit_event__descriptor);
    harness_read(h, "decisions", decision_desc, 4, 1000, 30000, &r);
    assert_int_equal(r.n, 4);
    assert_string_equal(((Jrp__V1__Decision *)r.values[3])->event_id, derived);
    harness_records_free(&r, decision_desc);
    stop(h);
}

static void test_bad_records_go_to_the_dead_letter_topic(void **state)
{
    (void)state;
    harness_t *h = start("eng-dlq");
    int64_t t = harness_now_ms();
    harness_send_raw(h, "enterprise:" ENT1, "\xff\xfe not protobuf", 15);
    /* A wrong check character. */
    send1(h, harness_event("bad-1", LISTED, ENTERPRISE, "91350100M000100Y44", "black.overload", t));
    /* The partition moves on. */
    send1(h, harness_event("good-1", LISTED, ENTERPRISE, ENT1, "black.overload", t + 1));
    harness_records_t r;
    harness_read(h, "dlq", NULL, 2, 1000, 30000, &r);
    assert_int_equal(r.n, 2);
    /* The two keys may lie in different partitions: no order between the records. */
    size_t raw = r.lens[0] == 15 ? 0 : 1, bad = 1 - raw;
    assert_int_equal(r.lens[raw], 15);
    assert_memory_equal(r.values[raw], "\xff\xfe not protobuf", 15);
    assert_string_equal(r.keys[raw], "enterprise:" ENT1);
    assert_non_null(strstr(r.header_dump[raw], "jrp-error-code=decode_failed;"));
    assert_non_null(strstr(r.header_dump[bad], "jrp-error-code=bad_checksum;"));
    assert_non_null(strstr(r.header_dump[bad], "jrp-error-service=engine;"));
    assert_non_null(strstr(r.header_dump[bad], "jrp-error-topic="));
    assert_non_null(strstr(r.header_dump[bad], "jrp-error-partition="));
    assert_non_null(strstr(r.header_dump[bad], "jrp-error-offset="));
    assert_non_null(strstr(r.header_dump[bad], "jrp-error-time="));
    assert_non_null(strstr(r.header_dump[bad], "jrp-error-reason="));
    harness_records_free(&r, NULL);
    harness_read(h, "decisions", decision_desc, 3, 1000, 30000, &r);
    assert_int_equal(r.n, 3);
    /* bad-1 has its own subject, so perhaps its own partition: no order across subjects. */
    int rejected = 0;
    for (size_t i = 0; i < r.n; i++) {
        const Jrp__V1__Decision *d = r.values[i];
        if (!strcmp(d->event_id, "good-1"))
            assert_int_equal(d->outcome, JRP__V1__DECISION_OUTCOME__DECISION_OUTCOME_APPLIED);
        else
            rejected += d->outcome == JRP__V1__DECISION_OUTCOME__DECISION_OUTCOME_REJECTED;
    }
    assert_int_equal(rejected, 2);
    harness_records_free(&r, decision_desc);
    stop(h);
}

/* A new rule-set version is picked up without a restart, on the Redis notice (the periodic check
 * is set to a minute here, so only the notice can explain a swap within seconds); earlier events
 * keep their version. */
static void test_rules_hot_swap(void **state)
{
    (void)state;
    harness_t *h = start_with("eng-swap", "engine.rules_check_ms = 60000\n");
    int64_t t = harness_now_ms();
    send1(h, harness_event("s-1", LISTED, ENTERPRISE, ENT1, "black.taxi", t));
    assert_int_equal(harness_wait_decisions(h, 1, 30000), 1);
    /* Version 2: the sample rules plus a memorandum giving tax a measure on black.taxi. */
    char dir[] = "/tmp/jrp-test-rules-XXXXXX", cmd[1024];
    assert_non_null(mkdtemp(dir));
    snprintf(cmd, sizeof(cmd), "cp %s/deploy/rules/*.json %s/",
             getenv("JRP_ROOT") ? getenv("JRP_ROOT") : ".", dir);
    assert_int_equal(system(cmd), 0);
    snprintf(cmd, sizeof(cmd), "%s/taxi-tax.json", dir);
    FILE *f = fopen(cmd, "w");
    assert_non_null(f);
    fputs("{\"id\":\"taxi-tax\",\"title\":\"t\",\"kind\":\"penalty\",\"effective_from\":"
          "\"2020-01-01\",\"triggers\":[{\"list\":\"black.taxi\"}],\"subject_types\":"
          "[\"enterprise\"],\"measures\":[{\"department\":\"tax\",\"measure\":"
          "\"STRICT_SUPERVISION\",\"text\":\"x\"}]}",
          f);
    fclose(f);
    harness_load_rules(h, dir);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
    sleep(2); /* the notice arrives within milliseconds; the cron acts within 50 ms */
    send1(h, harness_event("s-2", LISTED, ENTERPRISE, ENT2, "black.taxi", t + 1));
    expect_topic(h, "tax", 1, "APPLY STRICT_SUPERVISION");
    harness_records_t r;
    harness_read(h, "decisions", decision_desc, 2, 500, 30000, &r);
    assert_int_equal(r.n, 2);
    /* The two subjects' decisions may lie in different partitions: no order between them. */
    for (size_t i = 0; i < r.n; i++) {
        const Jrp__V1__Decision *d = r.values[i];
        assert_int_equal(d->ruleset_version, strcmp(d->event_id, "s-1") ? 2 : 1);
    }
    assert_string_not_equal(((Jrp__V1__Decision *)r.values[0])->event_id,
                            ((Jrp__V1__Decision *)r.values[1])->event_id);
    harness_records_free(&r, decision_desc);
    stop(h);
}

/* The ops port: live at once, ready once a rule set is active and the group joined, and the
 * counters on /metrics follow what was committed. */
static void test_ops_port(void **state)
{
    (void)state;
    harness_t *h = start("eng-ops");
    int port = harness_log_port(h, NULL, 30000);
    assert_true(port > 0);
    char body[65536];
    assert_int_equal(harness_http_get(port, "/healthz", body, sizeof(body)), 200);
    int status = 0;
    for (int i = 0; i < 300 && status != 200; i++) {
        status = harness_http_get(port, "/readyz", body, sizeof(body));
        if (status != 200)
            usleep(100000);
    }
    if (status != 200)
        fail_msg("/readyz never became ready: %d %s", status, body);
    send1(h, harness_event("ops-1", LISTED, ENTERPRISE, ENT1, "black.overload", harness_now_ms()));
    assert_int_equal(harness_wait_decisions(h, 1, 60000), 1);
    /* Redis is written and counters move right after the commit the decision came from. */
    int seen = 0;
    for (int i = 0; i < 100 && !seen; i++) {
        assert_int_equal(harness_http_get(port, "/metrics", body, sizeof(body)), 200);
        seen = strstr(body, "\njrp_engine_events_total 1\n") != NULL;
        if (!seen)
            usleep(100000);
    }
    if (!seen)
        fail_msg("/metrics does not count the event:\n%s", body);
    assert_non_null(strstr(body, "\njrp_engine_actions_total 5\n"));
    assert_non_null(strstr(body, "\njrp_engine_rules_version 1\n"));
    assert_non_null(strstr(body, "\njrp_engine_ready 1\n"));
    assert_non_null(strstr(body, "jrp_engine_batch_seconds_bucket{le=\"+Inf\"} "));
    assert_non_null(strstr(body, "\nprocess_resident_memory_bytes "));
    assert_int_equal(harness_http_get(port, "/nope", body, sizeof(body)), 404);
    harness_destroy(h);
}

/* An engine working through a backlog still serves its ops port: /healthz answers within a
 * bound while the events are being decided (it used to wait for the whole backlog). */
static void test_ops_port_answers_during_a_backlog(void **state)
{
    (void)state;
    enum { N = 60000 };
    harness_t *h = harness_create("eng-busy", NULL);
    harness_load_rules(h, NULL);
    char body[65536];
    Jrp__V1__CreditEvent **evs = calloc(N, sizeof(*evs));
    assert_non_null(evs);
    int64_t t = harness_now_ms();
    for (int i = 0; i < N; i++) {
        char id[19], eid[32], buf[32];
        snprintf(buf, sizeof(buf), "91350100%09d", 500000 + i);
        memcpy(id, buf, 17);
        id[17] = ids_credit_code_check_char(id);
        id[18] = '\0';
        snprintf(eid, sizeof(eid), "busy-%d", i);
        evs[i] = harness_event(eid, LISTED, ENTERPRISE, id, "black.overload", t);
    }
    harness_send(h, evs, N);
    for (int i = 0; i < N; i++)
        jrp__v1__credit_event__free_unpacked(evs[i], NULL);
    free(evs);
    harness_engine_start(h); /* with the whole backlog waiting */
    int port = harness_log_port(h, NULL, 30000);
    assert_true(port > 0);
    /* Probe /metrics and /healthz until the backlog is done, timing every request that began
     * while it was not (as of the previous answer). */
    int busy_probes = 0;
    int64_t worst = 0;
    long long done = 0;
    for (int i = 0; i < 1200 && done < N; i++) {
        static const char *const paths[] = {"/metrics", "/healthz"};
        for (int p = 0; p < 2 && done < N; p++) {
            int64_t t0 = harness_now_ms();
            assert_int_equal(harness_http_get(port, paths[p], body, sizeof(body)), 200);
            int64_t took = harness_now_ms() - t0;
            busy_probes++;
            if (took > worst)
                worst = took;
            if (p == 0) {
                const char *c = strstr(body, "\njrp_engine_events_total ");
                assert_non_null(c);
                done = atoll(c + strlen("\njrp_engine_events_total "));
            }
        }
        usleep(100000);
    }
    print_message("ops port during the backlog: %d requests, slowest %lld ms\n", busy_probes,
                  (long long)worst);
    assert_true(busy_probes >= 2); /* really probed while busy */
    assert_true(worst < 4000); /* ~0.8 s typical; generous for sanitized builds on shared cores */
    assert_int_equal(harness_wait_decisions(h, N, 300000), N);
    harness_destroy(h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_listed_each_department_gets_its_measures),
        cmocka_unit_test(test_delisted_revokes_what_was_applied),
        cmocka_unit_test(test_duplicate_event_is_a_no_op),
        cmocka_unit_test(test_lapse_lifts_without_an_event),
        cmocka_unit_test(test_penalty_beats_incentive),
        cmocka_unit_test(test_graded_supervision),
        cmocka_unit_test(test_escalation_emits_a_derived_listing),
        cmocka_unit_test(test_bad_records_go_to_the_dead_letter_topic),
        cmocka_unit_test(test_rules_hot_swap),
        cmocka_unit_test(test_ops_port),
        cmocka_unit_test(test_ops_port_answers_during_a_backlog),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
