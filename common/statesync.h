/*
 * statesync: credit.state (the compacted changelog of subject states) into Redis. Every record
 * is written with the store's conditional write, so a replay is idempotent and never puts an
 * older state over a newer one; a partition read to its end is marked ready, as the engine's
 * recovery does. Used by `jrpctl rebuild` after a Redis loss.
 */
#ifndef JRP_STATESYNC_H
#define JRP_STATESYNC_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "rules.h"
#include "store.h"

typedef struct statesync_stats_s {
    int32_t partitions; /* partitions of credit.state (0: the topic does not exist) */
    size_t records;     /* changelog records written (older duplicates of a key included) */
    size_t skipped;     /* tombstones and records that do not decode */
} statesync_stats_t;

/*
 * Replay every partition of credit.state from its beginning into store, then mark every
 * partition ready. rules (may be NULL) decides each subject's next due time, as in the engine.
 * 0, or -1 with the reason in errstr.
 */
int statesync_replay_all(const config_t *cfg, store_t *store, const rules_t *rules,
                         statesync_stats_t *stats, char *errstr, size_t errstr_size);

#endif
