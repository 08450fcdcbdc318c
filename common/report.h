/*
 * report: the ledger's layout in Redis and the reports read from it. jrp-ledger writes the
 * layout (services/ledger); the gateway (GET /v1/reports/effects) and `jrpctl report` read it
 * here with a blocking hiredis connection. Aggregation and rendering (JSON, CSV) are pure.
 *
 * Keys (P = redis.prefix, default "jrp:"; docs/ledger.md has the fields):
 *   Pledger:a:<action_id>      hash  one action: op, dept, memo, list, subject, measure, issued,
 *                                    due, status, score (feedback order), lifted, alerted, ...
 *   Pledger:issued             zset  action_id -> issued_at_ms (every action, APPLY and REVOKE)
 *   Pledger:due:feedback       zset  action_id -> when its FEEDBACK_OVERDUE alert is due
 *   Pledger:d:<event_id>       hash  one 双公示 disclosure (LICENSED or SANCTIONED decision)
 *   Pledger:disclosures        zset  event_id -> decision_date_ms
 *   Pledger:due:disclosure     zset  event_id -> when its next disclosure alert is due
 *   Pledger:stats              hash  status -> number of actions in it (for /metrics)
 *   Pledger:s:<subject key>    hash  a subject's active listings (from credit.state): off,
 *                                    stype, sid, name, listings (JSON array)
 *   Pledger:listed             zset  subject key -> since when it is listed (earliest listing)
 */
#ifndef JRP_REPORT_H
#define JRP_REPORT_H

#include <hiredis/hiredis.h>
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

/* Key suffixes under redis.prefix. */
#define REPORT_KEY_ACTION "ledger:a:"
#define REPORT_KEY_ISSUED "ledger:issued"
#define REPORT_KEY_DUE_FEEDBACK "ledger:due:feedback"
#define REPORT_KEY_DISCLOSURE "ledger:d:"
#define REPORT_KEY_DISCLOSURES "ledger:disclosures"
#define REPORT_KEY_DUE_DISCLOSURE "ledger:due:disclosure"
#define REPORT_KEY_STATS "ledger:stats"
#define REPORT_KEY_SUBJECT "ledger:s:"
#define REPORT_KEY_LISTED "ledger:listed"

/* One action as the report sees it (strings borrowed). */
typedef struct report_action_s {
    const char *op;     /* "apply" or "revoke" */
    const char *memo;   /* memorandum id */
    const char *dept;   /* department */
    const char *status; /* issued, received, executed, rejected, failed */
    int64_t due_ms;     /* feedback due (APPLY), 0 = none */
    int lifted;         /* a REVOKE lifted this APPLY */
    int alerted;        /* its FEEDBACK_OVERDUE alert was raised */
} report_action_t;

/* One row of the effects list (成效清单): a memorandum x department over the period. */
typedef struct report_row_s {
    char memo[128];
    char dept[40];
    uint64_t applied, lifted, executed, rejected, pending, overdue;
} report_row_t;

/* One department's 双公示 disclosures decided in the period. */
typedef struct report_disc_s {
    char dept[40];
    uint64_t decisions, confirmed, pending, breached;
} report_disc_t;

typedef struct report_s {
    int64_t from_ms, to_ms, now_ms;
    report_row_t *rows; /* sorted by memorandum, then department */
    size_t n_rows, cap_rows;
    report_disc_t *discs; /* sorted by department */
    size_t n_discs, cap_discs;
} report_t;

void report_init(report_t *r, int64_t from_ms, int64_t to_ms, int64_t now_ms);
void report_free(report_t *r); /* the arrays; r itself is the caller's */

/*
 * Count one action issued in the period. APPLY: applied, and exactly one of executed,
 * rejected, overdue (no EXECUTED/REJECTED, due passed, and not lifted before its overdue alert)
 * or pending. REVOKE: lifted.
 * 0 or -1 (out of memory).
 */
int report_add_action(report_t *r, const report_action_t *a);
/* Count one disclosure decided in the period: confirmed, breached (deadline passed) or pending. */
int report_add_disclosure(report_t *r, const char *dept, int confirmed, int64_t deadline_ms);

/* Render; a new NUL-terminated buffer the caller frees with free(), or NULL (out of memory). */
char *report_render_json(const report_t *r);
/* CSV (RFC 4180, CRLF): header
 * "memorandum_id,department,applied,lifted,executed,rejected,pending,overdue" then the rows. */
char *report_render_csv(const report_t *r);

/*
 * Read the ledger's data for [from_ms, to_ms) from Redis (prefix = redis.prefix) into r
 * (initialised here). 0, or -1 with the reason in errstr (r is then freed).
 */
int report_load(redisContext *c, const char *prefix, int64_t from_ms, int64_t to_ms, int64_t now_ms,
                report_t *r, char *errstr, size_t errstr_size);

/*
 * The subjects list (对象清单): every subject listed now, from the ledger's copy of credit.state,
 * earliest listing first. *out receives a new JSON array (json_decref) of
 * {"subject_key", "type", "id", "name", "lists": [{"list_code", "since_ms", "since",
 * "valid_until_ms", "source_department", "cause_event_id"}]} ("since": RFC 3339 in China Standard
 * Time). 0, or -1 with the reason in errstr.
 */
int report_subjects_load(redisContext *c, const char *prefix, json_t **out, char *errstr,
                         size_t errstr_size);
/* Render a subjects list: {"generated_at_ms": now, "subjects": [...]}, or CSV with one row per
 * listing: subject_type,subject_id,subject_name,list_code,since,valid_until_ms,source_department.
 * A new buffer (free()) or NULL. */
char *report_subjects_render(const json_t *subjects, int64_t now_ms, int csv);

/*
 * The measures list (措施清单): every measure of every memorandum in the active rule set
 * (Prules:active, Prules:v:<n>), each with how many APPLY and REVOKE actions of it were issued in
 * [from_ms, to_ms); measures of other rule versions that were applied appear after them. *out
 * receives a new JSON array of {"memorandum_id", "document_no", "department", "measure_code",
 * "kind", "text", "basis", "applied", "lifted"}. 0, or -1 with the reason in errstr.
 */
int report_measures_load(redisContext *c, const char *prefix, int64_t from_ms, int64_t to_ms,
                         json_t **out, char *errstr, size_t errstr_size);
/* {"from_ms", "to_ms", "generated_at_ms", "measures": [...]}, or CSV
 * memorandum_id,document_no,department,measure_code,kind,text,basis,applied,lifted. */
char *report_measures_render(const json_t *measures, int64_t from_ms, int64_t to_ms, int64_t now_ms,
                             int csv);

/* ms as RFC 3339 in China Standard Time ("2026-03-06T15:00:00+08:00") into buf. */
const char *report_cst_time(int64_t ms, char *buf, size_t size);

/*
 * Parse a report bound: epoch milliseconds (digits), a date "YYYY-MM-DD" (00:00 China Standard
 * Time) or an RFC 3339 date-time "YYYY-MM-DDTHH:MM:SS[.fff](Z|+HH:MM|-HH:MM)". 0 or -1.
 */
int report_parse_time(const char *s, int64_t *out_ms);

#endif
