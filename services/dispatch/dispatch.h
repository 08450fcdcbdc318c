/*
 * dispatch: jrp-dispatch, which delivers each configured department's actions
 * (<prefix>actions.<department>) to its webhook: signed JSON POSTs through libcurl's multi
 * interface on the libuv loop, retried with backoff, in order per subject, with RECEIVED
 * feedback for what was delivered and dead letters for what the department refused. Offsets are
 * committed only up to the first action not yet finished, so a restart re-sends at most what
 * was in flight, with the same Idempotency-Key.
 */
#ifndef JRP_DISPATCH_H
#define JRP_DISPATCH_H

#include <stddef.h>
#include <uv.h>

#include "config.h"
#include "ops.h"

typedef struct dispatch_s dispatch_t;

/*
 * Read the departments (every dispatch.<department>.url) and their settings, make sure the
 * topics exist, and build the consumer and producer. cfg must outlive the service. NULL with a
 * one-line reason naming the key in errstr on bad configuration or when Kafka cannot be set up.
 */
dispatch_t *dispatch_create(uv_loop_t *loop, const config_t *cfg, char *errstr, size_t errstr_size);
/* Subscribe and start serving on the loop. 0 or -1. */
int dispatch_start(dispatch_t *d);
/*
 * Stop taking new actions, let requests in flight finish (up to dispatch.drain_ms), commit what
 * is finished, leave the group and close every handle; on_stopped(arg) runs then.
 */
void dispatch_stop(dispatch_t *d, void (*on_stopped)(void *arg), void *arg);
/* Non-zero after a fatal Kafka error (the loop was stopped; exit non-zero). */
int dispatch_failed(const dispatch_t *d);
/* NULL when ready (Kafka reachable, assignment received), else a short reason. */
const char *dispatch_not_ready(const dispatch_t *d);
/* The service's /metrics families. */
void dispatch_write_metrics(const dispatch_t *d, ops_text_t *t);
/* Free everything; call after the loop ran out (or after a failure). Accepts NULL. */
void dispatch_destroy(dispatch_t *d);

#endif
