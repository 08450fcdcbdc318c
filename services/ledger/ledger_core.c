/*
 * ledger_core: pure helpers of jrp-ledger. See ledger_core.h.
 */
#include "ledger_core.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "jrp/v1/feedback.pb-c.h"

const char *ledger_status_name(int status)
{
    switch (status) {
    case JRP__V1__FEEDBACK_STATUS__FEEDBACK_STATUS_RECEIVED:
        return "received";
    case JRP__V1__FEEDBACK_STATUS__FEEDBACK_STATUS_EXECUTED:
        return "executed";
    case JRP__V1__FEEDBACK_STATUS__FEEDBACK_STATUS_REJECTED:
        return "rejected";
    case JRP__V1__FEEDBACK_STATUS__FEEDBACK_STATUS_FAILED:
        return "failed";
    default:
        return NULL;
    }
}

int ledger_status_is_final(int status)
{
    return status == JRP__V1__FEEDBACK_STATUS__FEEDBACK_STATUS_EXECUTED ||
           status == JRP__V1__FEEDBACK_STATUS__FEEDBACK_STATUS_REJECTED;
}

int64_t ledger_feedback_score(int status, int64_t occurred_at_ms)
{
    int64_t rank;
    switch (status) {
    case JRP__V1__FEEDBACK_STATUS__FEEDBACK_STATUS_RECEIVED:
        rank = 1;
        break;
    case JRP__V1__FEEDBACK_STATUS__FEEDBACK_STATUS_FAILED:
        rank = 2;
        break;
    case JRP__V1__FEEDBACK_STATUS__FEEDBACK_STATUS_EXECUTED:
    case JRP__V1__FEEDBACK_STATUS__FEEDBACK_STATUS_REJECTED:
        rank = 3;
        break;
    default:
        return 0;
    }
    /* Times are clamped to [0, 10^14) ms (until the year 5138), so the score stays below 2^53
     * and Lua's doubles compare it exactly. */
    if (occurred_at_ms < 0)
        occurred_at_ms = 0;
    if (occurred_at_ms > 99999999999999LL)
        occurred_at_ms = 99999999999999LL;
    return rank * 1000000000000000LL + occurred_at_ms * 10 + status;
}

const char *ledger_disclosure_event(const char *action_id)
{
    size_t n = strlen(LEDGER_DISCLOSURE_PREFIX);
    if (!action_id || strncmp(action_id, LEDGER_DISCLOSURE_PREFIX, n) || !action_id[n])
        return NULL;
    return action_id + n;
}

int ledger_deadline(const ledger_clock_t *clk, int64_t from_ms, int n, int64_t *out, char *errstr,
                    size_t errstr_size)
{
    if (clk->workday_ms > 0) {
        *out = from_ms + (int64_t)n * clk->workday_ms;
        return 0;
    }
    return workdays_deadline_ms(clk->cal, from_ms, n, out, errstr, errstr_size);
}

int ledger_disclosure_deadline(const ledger_clock_t *clk, int64_t decision_ms, int64_t *deadline,
                               int64_t *due_alert, char *errstr, size_t errstr_size)
{
    int rc = ledger_deadline(clk, decision_ms, LEDGER_DISCLOSURE_WORKDAYS, deadline, errstr,
                             errstr_size);
    if (rc)
        return rc;
    /* The calendar's deadline is the next 00:00 CST after the last working day, so that day
     * began one calendar day earlier. */
    *due_alert = *deadline - (clk->workday_ms > 0 ? clk->workday_ms : WORKDAYS_DAY_MS);
    return 0;
}

int ledger_actions_pattern(const char *topic_prefix, char *buf, size_t size)
{
    size_t n = 0;
    const char *tail = "actions\\..+";
    if (size < 2)
        return -1;
    buf[n++] = '^';
    for (const char *p = topic_prefix; *p; p++) {
        if (strchr(".^$*+?()[]{}|\\", *p)) {
            if (n + 2 >= size)
                return -1;
            buf[n++] = '\\';
        } else if (n + 1 >= size) {
            return -1;
        }
        buf[n++] = *p;
    }
    if (n + strlen(tail) + 1 > size)
        return -1;
    memcpy(buf + n, tail, strlen(tail) + 1);
    return 0;
}
