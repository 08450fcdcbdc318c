/*
 * engine: jrp's orchestrator. Consumes credit.events in a consumer group, matches every event
 * against the active rule set and the subject's state, and in one Kafka transaction per batch
 * produces the department actions, the decisions, the state changelog, alerts, escalations and
 * dead letters together with the input offsets. Redis caches the state after each commit and is
 * rebuilt from the changelog whenever it is behind. Runs on the caller's libuv loop.
 */
#ifndef JRP_ENGINE_H
#define JRP_ENGINE_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "config.h"
#include "ops.h"

typedef struct engine_s engine_t;

/*
 * Create the engine on loop: connect Kafka (transactional producer with transactional.id
 * "jrp-engine-<engine.instance>", fencing a dead predecessor) and Redis, make sure the topics
 * exist. cfg must outlive the engine. NULL with the reason in errstr.
 */
engine_t *engine_create(uv_loop_t *loop, const config_t *cfg, char *errstr, size_t errstr_size);

/* Start consuming (as soon as a rule set is active) and the periodic work. 0 or -1. */
int engine_start(engine_t *eng);

/*
 * Stop in order: finish or abort the open batch, leave the group, close handles. on_stopped(arg)
 * runs when the engine's handles are closed; the loop then has nothing of the engine left.
 */
void engine_stop(engine_t *eng, void (*on_stopped)(void *arg), void *arg);

/* Free everything (after engine_stop completed, or if never started). Accepts NULL. */
void engine_destroy(engine_t *eng);

/* Non-zero after a fatal error (the process must exit non-zero and be restarted). */
int engine_failed(const engine_t *eng);

/* Counters, for metrics and tests. */
typedef struct engine_stats_s {
    uint64_t events;               /* events processed (committed) */
    uint64_t actions;              /* actions produced (committed) */
    uint64_t duplicates;           /* DUPLICATE decisions */
    uint64_t dead_letters;         /* records sent to credit.dlq */
    uint64_t lapses;               /* listings lifted by reaching valid_until */
    uint64_t escalations;          /* derived listings emitted */
    uint64_t batches;              /* transactions committed */
    uint64_t aborts;               /* transactions aborted and redone */
    uint64_t recoveries;           /* Redis brought up to date from credit.state */
    uint64_t rules_swaps;          /* rule-set versions activated while running */
    int64_t rules_version;         /* the version in force */
    uint64_t partitions;           /* partitions of credit.events owned now */
    ops_histogram_t batch_seconds; /* first record of a batch to its committed transaction */
    /* Where a batch's time goes (ENGINE_STAGE_*): deciding (decode, Redis load, rules, produce),
     * committing (offsets and commit_transaction), writing Redis after the commit. */
    ops_histogram_t stage_seconds[3];
} engine_stats_t;
enum { ENGINE_STAGE_DECIDE, ENGINE_STAGE_COMMIT, ENGINE_STAGE_REDIS };
void engine_get_stats(const engine_t *eng, engine_stats_t *out);

/* NULL when the engine is doing its work; otherwise why not (for /readyz). */
const char *engine_not_ready(const engine_t *eng);

/* Write the engine's /metrics text. */
void engine_write_metrics(const engine_t *eng, ops_text_t *t);

#endif
