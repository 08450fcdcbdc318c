/*
 * test_replay: `jrpctl replay` against what the engine really recorded on the local Kafka:
 * every kind of decision (applied, suppressed, duplicate, delisting, a lapse with no event, a
 * dead letter) replays to the same outcome and action ids; a window compares only what lies in
 * it; another rule-set version reports exactly the events it would have decided otherwise.
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

#define ENT1 "91350100M000100Y43"
#define ENT2 "91512081MA62K0260E"
#define VEHICLE "津A12345"
#define ENTERPRISE JRP__V1__SUBJECT_TYPE__SUBJECT_TYPE_ENTERPRISE
#define VEHICLE_T JRP__V1__SUBJECT_TYPE__SUBJECT_TYPE_VEHICLE
#define LISTED JRP__V1__EVENT_KIND__EVENT_KIND_LISTED
#define DELISTED JRP__V1__EVENT_KIND__EVENT_KIND_DELISTED

static void send1(harness_t *h, Jrp__V1__CreditEvent *ev)
{
    harness_send(h, &ev, 1);
    jrp__v1__credit_event__free_unpacked(ev, NULL);
}

/* Run jrpctl replay ARGS; fail unless it exits 0 and prints every wanted line part. */
static void replay_expect(harness_t *h, const char *args, const char *const *want)
{
    static char out[65536];
    int rc = harness_jrpctl(h, out, sizeof(out), "replay %s", args);
    if (rc != 0)
        fail_msg("jrpctl replay %s: exit %d: %s", args, rc, out);
    for (size_t i = 0; want[i]; i++)
        if (!strstr(out, want[i]))
            fail_msg("jrpctl replay %s: no \"%s\" in:\n%s", args, want[i], out);
}

/* Write a copy of deploy/rules whose overload memorandum also binds the tax department. */
static void modified_rules(char *dir, size_t size)
{
    snprintf(dir, size, "/tmp/jrp-replay-rules-%d", (int)getpid());
    char cmd[2048];
    const char *root = getenv("JRP_ROOT") ? getenv("JRP_ROOT") : ".";
    snprintf(cmd, sizeof(cmd),
             "rm -rf %s && cp -r %s/deploy/rules %s && python3 - %s/overload-2017.json <<'EOF'\n"
             "import json, sys\n"
             "p = sys.argv[1]\n"
             "d = json.load(open(p, encoding='utf-8'))\n"
             "d['measures'].append({'department': 'tax', 'measure': 'STRICT_SUPERVISION',\n"
             "    'text': '纳税信用评价从严', 'basis': 'test', 'subject_types': ['enterprise']})\n"
             "json.dump(d, open(p, 'w', encoding='utf-8'), ensure_ascii=False)\n"
             "EOF",
             dir, root, dir, dir);
    assert_int_equal(system(cmd), 0);
}

static void test_replay_agrees_and_compares(void **state)
{
    (void)state;
    harness_t *h = harness_create("replay", NULL);
    harness_load_rules(h, NULL);
    harness_engine_start(h);
    int64_t t = harness_now_ms();
    /* Before the window: state the window's events build on. */
    send1(h, harness_event("r-1", LISTED, ENTERPRISE, ENT1, "black.overload", t));
    send1(h, harness_event("r-2", LISTED, ENTERPRISE, ENT2, "red.construction", t + 1));
    assert_int_equal(harness_wait_decisions(h, 2, 60000), 2);
    usleep(1100000);
    int64_t mark = harness_now_ms();
    usleep(100000);
    /* In the window: suppression, a duplicate, a lapse, a delisting and a dead letter. */
    send1(h, harness_event("r-3", LISTED, ENTERPRISE, ENT2, "black.logistics", t + 2));
    send1(h, harness_event("r-1", LISTED, ENTERPRISE, ENT1, "black.overload", t));
    Jrp__V1__CreditEvent *brief =
        harness_event("r-4", LISTED, VEHICLE_T, VEHICLE, "black.overload", harness_now_ms());
    brief->valid_until_ms = harness_now_ms() + 2000;
    send1(h, brief);
    send1(h, harness_event("r-5", DELISTED, ENTERPRISE, ENT1, "black.overload", t + 3));
    harness_send_raw(h, "enterprise:" ENT1, "\x08\xff\xff", 3);
    /* 7 records and the lapse of r-4. */
    assert_int_equal(harness_wait_decisions(h, 8, 60000), 8);
    char to[32];
    snprintf(to, sizeof(to), "%lld", (long long)harness_now_ms() + 1);

    char args[256];
    snprintf(args, sizeof(args), "--from 0 --to %s", to);
    const char *all[] = {"replayed 7 events",
                         "in the window: 8 compared (1 lapses), 8 matching, 0 differing", NULL};
    replay_expect(h, args, all);

    snprintf(args, sizeof(args), "--from %lld --to %s", (long long)mark, to);
    const char *window[] = {"in the window: 6 compared (1 lapses), 6 matching, 0 differing", NULL};
    replay_expect(h, args, window);

    snprintf(args, sizeof(args), "--from 0 --to %s --subject enterprise:" ENT1, to);
    const char *one[] = {"replayed 4 events",
                         "in the window: 4 compared (0 lapses), 4 matching, 0 differing", NULL};
    replay_expect(h, args, one);

    /* Version 2 binds tax too: of the window's events, only r-1's repeat is a duplicate and the
     * delisting lifts what was really applied, so none would differ there; over the whole
     * period r-1 (an enterprise on black.overload) would have. The vehicle is outside the new
     * measure's subject types. */
    char dir[256];
    modified_rules(dir, sizeof(dir));
    harness_load_rules(h, dir);
    snprintf(args, sizeof(args), "--from 0 --to %s --rules 2", to);
    const char *v2[] = {"in the window: 8 compared (1 lapses), 8 matching, 0 differing",
                        "against --rules: 6 compared, 5 the same, 1 would differ",
                        "would differ: event r-1 of enterprise:" ENT1,
                        "APPLY tax/STRICT_SUPERVISION overload-2017 black.overload", NULL};
    replay_expect(h, args, v2);

    /* Bad input: one clear line, exit 1. */
    char out[4096];
    assert_int_equal(harness_jrpctl(h, out, sizeof(out), "replay --from 10 --to 5"), 1);
    assert_non_null(strstr(out, "--to must be after --from"));
    assert_int_equal(harness_jrpctl(h, out, sizeof(out), "replay --from yesterday --to 5"), 1);
    assert_non_null(strstr(out, "--from: \"yesterday\" is not epoch ms or an RFC 3339 time"));
    assert_int_equal(harness_jrpctl(h, out, sizeof(out), "replay --from 0 --to %s --rules 99", to),
                     1);
    assert_non_null(strstr(out, "rule set version 99 is not stored"));
    assert_int_equal(
        harness_jrpctl(h, out, sizeof(out), "replay --from 0 --to %s --subject nobody", to), 1);
    assert_non_null(strstr(out, "--subject: \"nobody\""));

    char cmd[512];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(harness_engine_signal(h, SIGTERM), 0);
    harness_destroy(h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_replay_agrees_and_compares),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
