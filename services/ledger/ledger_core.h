/*
 * ledger_core: the pure parts of jrp-ledger, free of I/O so unit tests reach them: feedback
 * ordering (which status wins), disclosure ids, feedback and 双公示 deadlines (working-day
 * calendar or compressed test time), alert ids and the action-topic pattern.
 */
#ifndef JRP_LEDGER_CORE_H
#define JRP_LEDGER_CORE_H

#include <stddef.h>
#include <stdint.h>

#include "workdays.h"

/* Prefix of a Feedback.action_id that confirms a 双公示 disclosure: "disclosure:<event_id>". */
#define LEDGER_DISCLOSURE_PREFIX "disclosure:"
#define LEDGER_DISCLOSURE_WORKDAYS 7

/* Name of a FeedbackStatus value as stored ("received", ...), or NULL for an unknown one. */
const char *ledger_status_name(int status);

/*
 * The order of feedback for one action, as a number: a report replaces the stored one only when
 * its score is higher. RECEIVED < FAILED < EXECUTED = REJECTED; within a rank the later
 * occurred_at_ms wins, then the larger status number. Being a total order of the reports
 * themselves, the final status is the same whatever order they are (re)consumed in. 0 for an
 * unknown status (never stored).
 */
int64_t ledger_feedback_score(int status, int64_t occurred_at_ms);
/* EXECUTED or REJECTED: the action needs nothing more from its department. */
int ledger_status_is_final(int status);

/* When action_id is "disclosure:<event_id>", the event id (pointer into action_id); else NULL. */
const char *ledger_disclosure_event(const char *action_id);

/*
 * Time base of deadlines. workday_ms = 0: the calendar (days counted in China Standard Time,
 * a deadline is the end of its last working day). workday_ms > 0: compressed time for tests and
 * drills: every working day lasts exactly workday_ms from the starting instant.
 */
typedef struct ledger_clock_s {
    const workdays_t *cal;
    int64_t workday_ms;
} ledger_clock_t;

/* End of the n-th working day after from_ms. 0, or -ERANGE (uncovered year, errstr). */
int ledger_deadline(const ledger_clock_t *clk, int64_t from_ms, int n, int64_t *out, char *errstr,
                    size_t errstr_size);
/*
 * A disclosure decided at decision_ms: *deadline (end of the 7th working day after it) and
 * *due_alert (one working day before: the start of that last working day). 0 or -ERANGE.
 */
int ledger_disclosure_deadline(const ledger_clock_t *clk, int64_t decision_ms, int64_t *deadline,
                               int64_t *due_alert, char *errstr, size_t errstr_size);

/* "^<prefix escaped>actions\..+": the regex subscription to every department's topic. */
int ledger_actions_pattern(const char *topic_prefix, char *buf, size_t size);

#endif
