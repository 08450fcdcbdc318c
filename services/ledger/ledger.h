/*
 * ledger: jrp-ledger, the bookkeeper of the 发起—响应—反馈 loop. It consumes every department's
 * actions (<prefix>actions.*), the feedback (<prefix>feedback) and the credit events
 * (<prefix>events, for LICENSED and SANCTIONED decisions), keeps each action's status and each
 * 双公示 disclosure in Redis (idempotently: re-consuming changes nothing; layout in
 * common/report.h and docs/ledger.md), commits offsets only after Redis took the writes, and
 * raises FEEDBACK_OVERDUE, DISCLOSURE_DUE and DISCLOSURE_BREACHED alerts on <prefix>alerts,
 * each once.
 */
#ifndef JRP_LEDGER_H
#define JRP_LEDGER_H

#include <stddef.h>
#include <uv.h>

#include "config.h"
#include "ops.h"

typedef struct ledger_s ledger_t;

/* Load the calendar, make sure the topics exist, build the clients. cfg must outlive the
 * service. NULL with a one-line reason in errstr. */
ledger_t *ledger_create(uv_loop_t *loop, const config_t *cfg, char *errstr, size_t errstr_size);
/* Subscribe and start the timer. 0 or -1. */
int ledger_start(ledger_t *l);
/* Leave the group, close every handle; on_stopped(arg) runs once they are closed. */
void ledger_stop(ledger_t *l, void (*on_stopped)(void *arg), void *arg);
/* Non-zero after a fatal Kafka error (exit non-zero). */
int ledger_failed(const ledger_t *l);
/* NULL when ready (Redis reachable, partitions assigned), else a short reason. */
const char *ledger_not_ready(const ledger_t *l);
void ledger_write_metrics(const ledger_t *l, ops_text_t *t);
/* Free everything after the loop ran out. Accepts NULL. */
void ledger_destroy(ledger_t *l);

#endif
