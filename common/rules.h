/*
 * rules: the memoranda (合作备忘录) and the measure catalogue as a versioned rule set, and the
 * matcher. rules_load_dir reads and validates a rule directory into a jrp.v1.RuleSet (the form
 * stored in Redis and credit.rules); rules_compile builds the in-process index the matcher uses;
 * rules_match is a pure function from (rule set, subject state, event, time) to actions and the
 * new state. No I/O outside rules_load_dir.
 */
#ifndef JRP_RULES_H
#define JRP_RULES_H

#include <stddef.h>
#include <stdint.h>

#include "errlist.h"
#include "jrp/v1/action.pb-c.h"
#include "jrp/v1/alert.pb-c.h"
#include "jrp/v1/decision.pb-c.h"
#include "jrp/v1/event.pb-c.h"
#include "jrp/v1/rules.pb-c.h"
#include "jrp/v1/state.pb-c.h"

#define RULES_MAX_FILE_BYTES (4 * 1024 * 1024)
#define RULES_MAX_FILES 1000

/*
 * Read dir: catalogue.json (required), escalations.json (optional) and every other *.json as one
 * memorandum. Validates everything and lists every error by file and JSON path in el. Returns a
 * new RuleSet with version 0 (the store assigns versions), its files and digest, or NULL when
 * anything is wrong. Free with jrp__v1__rule_set__free_unpacked(rs, NULL).
 */
Jrp__V1__RuleSet *rules_load_dir(const char *dir, errlist_t *el);

/* Validate a RuleSet (as loaded, or as read back from Redis/Kafka). 0, or -1 with errors. */
int rules_validate(const Jrp__V1__RuleSet *rs, errlist_t *el);

/* A date "YYYY-MM-DD" as the Unix ms of its midnight in China Standard Time (UTC+8); -1 if bad. */
int64_t rules_date_ms(const char *date);

/* The compiled, immutable index of one rule-set version. */
typedef struct rules_s rules_t;

/*
 * Compile rs into an index. Takes ownership of rs (freed by rules_destroy). NULL on error
 * (errstr says why; rs is freed too).
 */
rules_t *rules_compile(Jrp__V1__RuleSet *rs, char *errstr, size_t errstr_size);
void rules_destroy(rules_t *rules); /* accepts NULL */
const Jrp__V1__RuleSet *rules_ruleset(const rules_t *rules);
int64_t rules_version(const rules_t *rules);

/* Knobs of the matcher that come from configuration. */
typedef struct rules_match_opts_s {
    int64_t dedup_horizon_ms; /* event ids older than this are forgotten */
    size_t dedup_max;         /* at most this many event ids kept per subject */
} rules_match_opts_t;

/* What one event (or one lapse) did. */
typedef struct rules_result_s {
    Jrp__V1__DecisionOutcome outcome;
    char reason[256];
    Jrp__V1__Action **actions; /* owned; APPLYs and REVOKEs in a deterministic order; never
                                * free_unpacked one: the result's arena holds them */
    size_t n_actions;
    Jrp__V1__MemorandumRef **matched; /* owned */
    size_t n_matched;
    char **suppressed; /* owned; "department/MEASURE" not applied because of a black listing */
    size_t n_suppressed;
    int state_changed; /* the state must be written to the changelog */
    /* Private to rules.c: everything above lives in one arena, released by rules_result_clear
     * (no per-string malloc on the matcher's hot path), and the arrays' capacities. */
    void *arena;
    size_t cap_actions, cap_matched, cap_suppressed;
} rules_result_t;

void rules_result_init(rules_result_t *res);
void rules_result_clear(rules_result_t *res); /* frees what the result owns; reusable */

/*
 * Apply ev to st (the subject's state, updated in place; its subject is set from ev if empty)
 * under rules, at processing time now_ms. Fills res. The event must have passed
 * codec_event_validate. Returns 0, or -1 on allocation failure (st is then unspecified).
 *
 * Semantics (docs/rules.md): LISTED adds a listing and applies the measures of every memorandum
 * in force at the event's time triggered by that list; DELISTED lifts exactly the measures in
 * force because of that listing; GRADED replaces the grade of a field and reconciles the measures
 * of grade triggers on that field; while any black listing is active, incentives are not applied
 * and those in force are lifted, and they come back when the last black listing ends.
 */
int rules_match(const rules_t *rules, Jrp__V1__SubjectState *st, const Jrp__V1__CreditEvent *ev,
                int64_t now_ms, const rules_match_opts_t *opts, rules_result_t *res);

/*
 * Lift every listing of st whose valid_until_ms is at or before now_ms, as a DELISTED would
 * (reason "expired"). Fills res (outcome NO_MATCH with nothing to do when no listing lapsed).
 * *event_id receives the deterministic id of this lapse (a static buffer of the caller's:
 * event_id_size bytes), used as the Decision's event_id and the REVOKEs' cause.
 */
int rules_lapse(const rules_t *rules, Jrp__V1__SubjectState *st, int64_t now_ms,
                rules_result_t *res, char *event_id, size_t event_id_size);

/* The earliest valid_until_ms of st's listings, or 0 if none lapses. */
int64_t rules_next_lapse(const Jrp__V1__SubjectState *st);

/*
 * The escalations of the rule set that are due for st at now_ms (a subject on focus lists in at
 * least N fields; a focus listing not lifted within D days). Each fired escalation yields a
 * derived LISTED event (source department "jrp", deterministic event id) to be published on
 * credit.events, and an Alert; st records it so it fires once. Returns 0 or -1 (no memory).
 */
typedef struct rules_escalation_out_s {
    Jrp__V1__CreditEvent **events; /* owned */
    Jrp__V1__Alert **alerts;       /* owned, alerts[i] goes with events[i] */
    size_t n;
} rules_escalation_out_t;

int rules_escalate(const rules_t *rules, Jrp__V1__SubjectState *st, int64_t now_ms,
                   rules_escalation_out_t *out);
void rules_escalation_out_clear(rules_escalation_out_t *out);

/* Release a state the matcher may have changed (its additions are not protobuf-c's own: never
 * jrp__v1__subject_state__free_unpacked). Accepts NULL. */
void rules_state_free(Jrp__V1__SubjectState *st);

/* When st next needs attention without an event: the earliest lapse or time-based escalation,
 * or 0 for never. */
int64_t rules_next_due(const rules_t *rules, const Jrp__V1__SubjectState *st);

/* Deterministic ids: 32 lower-case hex characters of SHA-256 over the parts. */
void rules_apply_id(const char *cause_event_id, int64_t ruleset_version, const char *memorandum_id,
                    const char *department, const char *measure, const char *trigger, char out[33]);
void rules_revoke_id(const char *apply_action_id, char out[33]);

/* Hex SHA-256 of data (65 bytes with the NUL). */
void rules_sha256_hex(const void *data, size_t len, char out[65]);

/* Releases what the calling thread keeps between calls (a hash context, a spare arena chunk);
 * a thread that used the matcher calls it before it ends. */
void rules_thread_done(void);

#endif
