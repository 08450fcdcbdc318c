/*
 * rulesync: rule-set versions between Kafka (the compacted credit.rules topic, the durable copy)
 * and Redis (the cache the engines read). Publishing writes "ruleset/<n>" and, on activation,
 * "ruleset/active" (the full active RuleSet); restoring reads the topic back into Redis after a
 * Redis loss.
 */
#ifndef JRP_RULESYNC_H
#define JRP_RULESYNC_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "jrp/v1/rules.pb-c.h"
#include "store.h"

/* Produce rs as "ruleset/<version>" and, when activate, as "ruleset/active"; waits for the
 * broker's acknowledgement. 0 or -1. */
int rulesync_publish(const config_t *cfg, const Jrp__V1__RuleSet *rs, int activate, char *errstr,
                     size_t errstr_size);

/*
 * Read credit.rules from the beginning to its end. *versions receives every version (new
 * RuleSets, ascending, caller frees each and the array), *active the active version (0 if none).
 * 0 or -1.
 */
int rulesync_read(const config_t *cfg, Jrp__V1__RuleSet ***versions, size_t *n, int64_t *active,
                  char *errstr, size_t errstr_size);

/* Put every version of credit.rules into Redis and activate the active one. *restored = count. */
int rulesync_restore(const config_t *cfg, store_t *store, size_t *restored, char *errstr,
                     size_t errstr_size);

/* The next free version: one above the highest in Redis and in credit.rules. */
int rulesync_next_version(const config_t *cfg, store_t *store, int64_t *next, char *errstr,
                          size_t errstr_size);

/* Make sure the topics jrp writes exist: events (topic.partitions, or as they are), state
 * (compacted, the same partition count as events), decisions, alerts, dlq, feedback, checks,
 * rules (compacted, 1 partition), and actions.<d> for each of the n departments. 0 or -1. */
int rulesync_ensure_topics(const config_t *cfg, const char *const *departments, size_t n,
                           int32_t *events_partitions, char *errstr, size_t errstr_size);

/* The distinct departments of rs's memoranda; *out is a new array of pointers into rs. */
int rulesync_departments(const Jrp__V1__RuleSet *rs, const char ***out, size_t *n);

#endif
