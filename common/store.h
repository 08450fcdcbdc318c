/*
 * store: jrp's layout in Redis, the cache of what Kafka holds. Subject states stamped with the
 * credit.state offset they came from (a write applies only if newer, so replays and fenced
 * zombies are harmless), per-partition progress, the per-partition expiry index, and rule-set
 * versions. Blocking hiredis client with pipelining; one round trip per batch.
 *
 * Keys (P = redis.prefix, default "jrp:"):
 *   P{<subject key>}:state   hash  off = changelog offset, st = SubjectState bytes
 *   Pstate:progress:<p>      string highest credit.state offset of partition p applied
 *   Pstate:ready:<p>         string set by recovery: Redis holds partition p's whole changelog
 *   Pexpiry:<p>              zset  subject key -> next lapse or escalation due (ms)
 *   Prules:v:<n>             string RuleSet bytes of version n
 *   Prules:versions          zset  n -> n
 *   Prules:active            string the active version; PUBLISH Prules:activated <n> on change
 */
#ifndef JRP_STORE_H
#define JRP_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "jrp/v1/rules.pb-c.h"
#include "jrp/v1/state.pb-c.h"
#include "redis.h"

typedef struct store_s store_t;

/* Connect to redis.url with redis.prefix. NULL with the reason in errstr. */
store_t *store_create(const config_t *cfg, char *errstr, size_t errstr_size);
void store_destroy(store_t *st); /* accepts NULL */
/* Drop the connection and connect again. 0 or -1. */
int store_reconnect(store_t *st, char *errstr, size_t errstr_size);
const char *store_prefix(const store_t *st);

/* "P{enterprise:913…}:state" into buf. */
void store_state_key(const store_t *st, const char *subject_key, char *buf, size_t size);

/*
 * Load n subject states in one round trip. states[i] receives a new SubjectState (caller frees
 * with rules_state_free) or NULL when Redis has none; offsets[i] the offset
 * it carries or -1. 0, or -1 on a connection error or undecodable state (errstr).
 */
int store_load_states(store_t *st, size_t n, const char *const *subject_keys,
                      Jrp__V1__SubjectState **states, int64_t *offsets, char *errstr,
                      size_t errstr_size);

/*
 * The same, and then (in the same round trip, so after the loads) whether each of the nparts
 * partitions is still marked ready: a partition whose mark is gone lost its cache (FLUSHALL, a
 * restart without persistence) and its loaded states must not be trusted. ready[i] is 1 or 0.
 */
int store_load_states_checked(store_t *st, size_t n, const char *const *subject_keys,
                              Jrp__V1__SubjectState **states, int64_t *offsets, size_t nparts,
                              const int32_t *partitions, int *ready, char *errstr,
                              size_t errstr_size);

/* Mark partitions ready: Redis holds their whole changelog. Only recovery calls this, so a
 * write that lands after a flush cannot make a partial cache look whole. 0 or -1. */
int store_mark_ready(store_t *st, size_t nparts, const int32_t *partitions, char *errstr,
                     size_t errstr_size);

/* Progress of n partitions (-1 where Redis has none) in one round trip. 0 or -1. */
int store_get_progress(store_t *st, size_t n, const int32_t *partitions, int64_t *out, char *errstr,
                       size_t errstr_size);

typedef struct store_write_s {
    const char *subject_key;
    int32_t partition;
    int64_t offset; /* the record's offset in credit.state */
    const void *bytes;
    size_t len;
    int64_t next_due_ms; /* 0 = nothing due: leaves the expiry index */
} store_write_t;

/*
 * Write n states, each only if its offset is newer than the stored one (with its expiry entry),
 * then raise each touched partition's progress to the highest offset written for it. One round
 * trip. 0 or -1.
 */
int store_write_states(store_t *st, const store_write_t *w, size_t n, char *errstr,
                       size_t errstr_size);

/*
 * The same writes, sent without waiting for Redis to run them, so the caller can go on while it
 * does: the replies are read by the next call on this store (which then fails if a write did,
 * naming it) or by store_settle. The writes themselves are in Redis's hands once this returns:
 * a later read on this store sees them. 0, or -1 if they could not be sent or the previous
 * writes' replies report an error.
 */
int store_send_states(store_t *st, const store_write_t *w, size_t n, char *errstr,
                      size_t errstr_size);

/* Read the replies of the writes store_send_states sent, if any: 0, or -1 if one failed
 * (reason in errstr). After a NOSCRIPT (Redis lost its scripts) those writes did not happen. */
int store_settle(store_t *st, char *errstr, size_t errstr_size);

/*
 * Subject keys of partition whose due time is at or before now_ms, at most max. *keys is a new
 * array of new strings (free with store_free_keys). 0 or -1.
 */
int store_due(store_t *st, int32_t partition, int64_t now_ms, size_t max, char ***keys, size_t *n,
              char *errstr, size_t errstr_size);
void store_free_keys(char **keys, size_t n);

/* Set (due > 0) or clear (due == 0) a subject's entry in the expiry index of partition. */
int store_set_due(store_t *st, int32_t partition, const char *subject_key, int64_t due_ms,
                  char *errstr, size_t errstr_size);

/* Rule sets. store_rules_get returns 1 when the version is absent. */
int store_rules_put(store_t *st, const Jrp__V1__RuleSet *rs, char *errstr, size_t errstr_size);
int store_rules_get(store_t *st, int64_t version, Jrp__V1__RuleSet **out, char *errstr,
                    size_t errstr_size);
/* *version = the active version, 0 when none. */
int store_rules_active(store_t *st, int64_t *version, char *errstr, size_t errstr_size);
/* Make version active and publish it. */
int store_rules_activate(store_t *st, int64_t version, char *errstr, size_t errstr_size);
/* Versions known to Redis, ascending; *versions is a new array (free()). */
int store_rules_versions(store_t *st, int64_t **versions, size_t *n, char *errstr,
                         size_t errstr_size);

/* The raw context, for callers with a command of their own. */
redisContext *store_redis(store_t *st);

#endif
