/*
 * engine: the orchestrator. One consumer, one transactional producer, one blocking Redis
 * connection and one libuv loop. A batch is collected while the consumer queue has records
 * (natural batching: small batches at low rates, full ones under load), then decided in memory
 * and committed in one transaction with its input offsets; Redis is written after the commit.
 * With engine.pipeline the commit runs on a second thread while the next batch is decided into
 * the outbox; that batch reaches the producer only once the commit succeeded (docs/engine.md).
 */
#include "engine.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "codec.h"
#include "grow.h"
#include "hash.h"
#include "ids.h"
#include "jrp/v1/alert.pb-c.h"
#include "jrp/v1/decision.pb-c.h"
#include "kafka.h"
#include "log.h"
#include "redis.h"
#include "rules.h"
#include "rulesync.h"
#include "store.h"

#define ENGINE_CRON_MS 50
/* Longest the engine works through a backlog before letting the loop serve its timers and the
 * ops port (/healthz must answer while a backlog drains). */
#define ENGINE_YIELD_MS 250
#define ENGINE_KEY_MAX 160
#define ENGINE_TXN_TIMEOUT_MS 30000
#define ENGINE_LAPSE_BATCH 500

/* --- the in-memory state cache ---------------------------------------------------------------- */

typedef struct cache_entry_s {
    char *key;
    int32_t partition;
    uint64_t batch; /* the last batch that used it */
    Jrp__V1__SubjectState *st;
    struct cache_entry_s *next;
} cache_entry_t;

typedef struct cache_s {
    cache_entry_t **buckets;
    size_t n_buckets;
    size_t count;
} cache_t;

static uint64_t cache__hash(const char *s)
{
    return hash_str(HASH_SEED, s);
}

static int cache_init(cache_t *c, size_t n_buckets)
{
    c->buckets = calloc(n_buckets, sizeof(*c->buckets));
    c->n_buckets = n_buckets;
    c->count = 0;
    return c->buckets ? 0 : -1;
}

static void cache_clear(cache_t *c)
{
    for (size_t i = 0; i < c->n_buckets; i++) {
        cache_entry_t *e = c->buckets[i];
        while (e) {
            cache_entry_t *next = e->next;
            free(e->key);
            if (e->st)
                rules_state_free(e->st);
            free(e);
            e = next;
        }
        c->buckets[i] = NULL;
    }
    c->count = 0;
}

static cache_entry_t *cache_get(cache_t *c, const char *key)
{
    for (cache_entry_t *e = c->buckets[cache__hash(key) % c->n_buckets]; e; e = e->next)
        if (!strcmp(e->key, key))
            return e;
    return NULL;
}

/* Insert key with st (taking ownership of st); returns the entry or NULL. */
static cache_entry_t *cache_put(cache_t *c, const char *key, int32_t partition,
                                Jrp__V1__SubjectState *st)
{
    cache_entry_t *e = calloc(1, sizeof(*e));
    if (!e || !(e->key = strdup(key))) {
        free(e);
        return NULL;
    }
    size_t b = cache__hash(key) % c->n_buckets;
    e->partition = partition;
    e->st = st;
    e->next = c->buckets[b];
    c->buckets[b] = e;
    c->count++;
    return e;
}

/* --- the engine --------------------------------------------------------------------------------
 */

/* One subject touched by the batch being processed. */
typedef struct subject_ref_s {
    cache_entry_t *entry;
    int dirty;
    int64_t state_offset; /* from the delivery report of its changelog record */
    uint8_t *packed;      /* the changelog record's bytes, kept for the Redis write */
    size_t packed_len;
    int64_t next_due_ms; /* of the state as packed (a later batch may change the state) */
} subject_ref_t;

/* A record decided but not yet handed to the producer: a batch is decided into the outbox
 * while the previous batch's transaction commits (engine__flush_outbox). */
typedef struct outrec_s {
    char *topic; /* owned; the key follows it in the same allocation */
    char *key;
    size_t key_len;
    void *value;
    size_t len;
    int borrowed; /* value is not ours (a changelog record's bytes, a dead letter's payload) */
    int32_t partition;
    rd_kafka_headers_t *hdrs;
    void *opaque;
} outrec_t;

/* One input record of the batch. */
typedef struct item_s {
    rd_kafka_message_t *m;
    Jrp__V1__CreditEvent *ev; /* NULL when it goes to the dead-letter topic */
    char code[48];            /* dead letter: stable reason token */
    char reason[512];         /* dead letter: human-readable reason */
    size_t subject;           /* index into the batch's subjects */
} item_t;

struct engine_s {
    uv_loop_t *loop;
    const config_t *cfg;
    rd_kafka_t *consumer;
    rd_kafka_t *producer;
    rd_kafka_queue_t *consumer_queue;
    kafka_uv_t *bridge;
    uv_timer_t cron;
    int cron_started;
    store_t *store;
    redis_async_t *notices; /* pub/sub: a newly activated rule set is checked at once */
    rules_t *rules;
    rules_match_opts_t opts;
    cache_t cache;
    size_t cache_max;

    char topic_events[256], topic_state[256], topic_decisions[256], topic_alerts[256];
    char topic_dlq[256], actions_prefix[256];
    char instance[128];
    rd_kafka_topic_t **topics; /* a handle on every topic the producer writes (warm_topics) */
    size_t n_topics;

    /* The partitions of credit.events this engine owns. */
    int32_t *owned;
    size_t n_owned;
    int needs_recovery;
    int paused;
    int subscribed;

    /* The batch being collected. */
    item_t *items;
    size_t n_items, cap_items;
    uint64_t batch_started_ms; /* engine__mono_ms() */
    uint64_t yield_at_ms;      /* engine__mono_ms(): give the loop a turn from then on */
    int kicked;                /* the bridge will call engine__on_consumer_ready again */
    uint64_t batch_seq;
    uint64_t rebalances; /* rebalance callbacks so far */
    size_t evict_cursor;
    size_t batch_max;
    uint64_t batch_max_ms;

    subject_ref_t *subjects;
    size_t n_subjects, cap_subjects;
    int dr_failures;
    size_t dr_pending;
    outrec_t *out;
    size_t n_out, cap_out;

    /* The batch whose transaction is committing (on the committer thread when pipelining). Its
     * records and subjects stay here until the commit's outcome is known. */
    struct {
        int active, threaded;
        atomic_int done; /* set by the committer as it returns */
        pthread_t thread;
        rd_kafka_topic_partition_list_t *offsets; /* NULL: a lapse transaction */
        rd_kafka_consumer_group_metadata_t *cgmd;
        kafka_err_class_t result;
        char err[512];
        uint64_t elapsed_ns;
        item_t *items;
        size_t n_items, cap_items;
        subject_ref_t *subjects;
        size_t n_subjects, cap_subjects;
        outrec_t *out; /* the batch's records: produced by the committer after its offsets */
        size_t n_out, cap_out;
        size_t actions, dead, dups, lapses;
        uint64_t started_ms;
    } fl;
    int pipeline;

    uint64_t next_lapse_ms, next_rules_ms, next_health_ms;
    int stopping;
    int failed;
    void (*on_stopped)(void *arg);
    void *on_stopped_arg;
    engine_stats_t stats;
};

static int64_t engine__wall_ms(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

/* Now, in ms of a monotonic clock. Not uv_now: that is the loop iteration's start, and a batch
 * is collected and committed within one iteration. */
static uint64_t engine__mono_ms(void)
{
    return uv_hrtime() / 1000000;
}

/* Record the time since t0 (uv_hrtime) in the stage's histogram. */
static void engine__observe_stage(engine_t *eng, int stage, uint64_t t0)
{
    ops_histogram_observe(&eng->stats.stage_seconds[stage], (double)(uv_hrtime() - t0) / 1e9);
}

static void engine__fatal(engine_t *eng, const char *what, const char *why)
{
    log_error("fatal: %s: %s", what, why);
    eng->failed = 1;
    uv_stop(eng->loop);
}

/* --- delivery reports ------------------------------------------------------------------------- */

static void engine__on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    engine_t *eng = opaque;
    (void)rk;
    if (m->err) {
        eng->dr_failures++;
        log_warn("delivery to %s failed: %s", rd_kafka_topic_name(m->rkt),
                 rd_kafka_err2str(m->err));
    }
    if (m->_private) { /* a changelog record: remember where it landed */
        subject_ref_t *ref = m->_private;
        ref->state_offset = m->err ? -1 : m->offset;
        if (eng->dr_pending)
            eng->dr_pending--;
    }
}

/* --- rules --------------------------------------------------------------------------------------
 */

static void engine__drop_topics(engine_t *eng)
{
    for (size_t i = 0; i < eng->n_topics; i++)
        rd_kafka_topic_destroy(eng->topics[i]);
    free(eng->topics);
    eng->topics = NULL;
    eng->n_topics = 0;
}

/*
 * Make the producer know every topic it will write before it writes there. librdkafka 2.0.2
 * asks the broker about a topic first produced to only at its next once-a-second topic scan,
 * so the first batch with an action for a department waited up to a second (and the batches
 * behind it with it): a start-up or a new rule set showed as a spike of seconds in the
 * latency (docs/engine.md). A handle per topic, kept, and one metadata request for them all.
 * Not fatal: without it the first records only wait.
 */
static void engine__warm_topics(engine_t *eng, const char *const *depts, size_t n)
{
    if (!eng->producer)
        return;
    const char *fixed[] = {eng->topic_events, eng->topic_state, eng->topic_decisions,
                           eng->topic_alerts, eng->topic_dlq};
    size_t n_fixed = sizeof(fixed) / sizeof(fixed[0]);
    rd_kafka_topic_t **topics = calloc(n_fixed + n, sizeof(*topics));
    if (!topics)
        return;
    size_t k = 0;
    for (size_t i = 0; i < n_fixed + n; i++) {
        char name[512];
        if (i < n_fixed)
            snprintf(name, sizeof(name), "%s", fixed[i]);
        else
            snprintf(name, sizeof(name), "%s%s", eng->actions_prefix, depts[i - n_fixed]);
        rd_kafka_topic_t *t = rd_kafka_topic_new(eng->producer, name, NULL);
        if (t)
            topics[k++] = t;
    }
    engine__drop_topics(eng); /* the handles just taken keep the topics known */
    eng->topics = topics;
    eng->n_topics = k;
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t err = rd_kafka_metadata(eng->producer, 0, NULL, &md, 5000);
    if (err)
        log_warn("metadata of the topics the engine writes: %s (the first records wait for it)",
                 rd_kafka_err2str(err));
    else
        rd_kafka_metadata_destroy(md);
}

static int engine__ensure_topics(engine_t *eng, const Jrp__V1__RuleSet *rs, char *errstr,
                                 size_t errstr_size)
{
    const char **depts = NULL;
    size_t n = 0;
    if (rs && rulesync_departments(rs, &depts, &n)) {
        snprintf(errstr, errstr_size, "out of memory");
        return -1;
    }
    int rc = rulesync_ensure_topics(eng->cfg, depts, n, NULL, errstr, errstr_size);
    if (rc == 0)
        engine__warm_topics(eng, depts, n);
    free(depts);
    return rc;
}

/* Load the active rule set from Redis (restoring Redis from credit.rules if it has none) and
 * swap it in when it is another version. 0 (also when there is none yet) or -1. */
static int engine__check_rules(engine_t *eng)
{
    char err[512];
    int64_t active = 0;
    if (store_rules_active(eng->store, &active, err, sizeof(err))) {
        log_warn("%s", err);
        return -1;
    }
    if (active == 0) {
        size_t restored = 0;
        if (rulesync_restore(eng->cfg, eng->store, &restored, err, sizeof(err))) {
            log_warn("restoring rules from Kafka: %s", err);
            return -1;
        }
        if (restored)
            log_info("Redis had no rules: restored %zu versions from Kafka", restored);
        if (store_rules_active(eng->store, &active, err, sizeof(err)) || active == 0)
            return 0;
    }
    if (eng->rules && rules_version(eng->rules) == active)
        return 0;
    Jrp__V1__RuleSet *rs = NULL;
    int rc = store_rules_get(eng->store, active, &rs, err, sizeof(err));
    if (rc) {
        log_warn("rule set %lld: %s", (long long)active, rc > 0 ? "missing" : err);
        return -1;
    }
    if (engine__ensure_topics(eng, rs, err, sizeof(err))) {
        jrp__v1__rule_set__free_unpacked(rs, NULL);
        log_warn("topics for rule set %lld: %s", (long long)active, err);
        return -1;
    }
    rules_t *rules = rules_compile(rs, err, sizeof(err)); /* takes rs */
    if (!rules) {
        log_error("rule set %lld does not compile: %s", (long long)active, err);
        return -1;
    }
    if (eng->rules)
        eng->stats.rules_swaps++;
    log_info("rule set version %lld in force (was %lld)", (long long)active,
             eng->rules ? (long long)rules_version(eng->rules) : 0LL);
    rules_destroy(eng->rules);
    eng->rules = rules;
    eng->stats.rules_version = active;
    return 0;
}

/* --- assignment and recovery --------------------------------------------------------------------
 */

static void engine__pause(engine_t *eng, int pause)
{
    rd_kafka_topic_partition_list_t *parts = NULL;
    if (rd_kafka_assignment(eng->consumer, &parts) || !parts)
        return;
    if (parts->cnt) {
        if (pause)
            rd_kafka_pause_partitions(eng->consumer, parts);
        else
            rd_kafka_resume_partitions(eng->consumer, parts);
    }
    rd_kafka_topic_partition_list_destroy(parts);
    eng->paused = pause;
}

/*
 * Bring Redis up to date for the owned partitions: replay credit.state from the offset after the
 * progress Redis records (from the beginning when it has none) to the end. Idempotent: every
 * write is conditional on its offset. 0 or -1.
 */
static int engine__recover(engine_t *eng)
{
    char err[512];
    if (eng->n_owned == 0)
        return 0;
    int64_t *progress = calloc(eng->n_owned, sizeof(int64_t));
    store_write_t *writes = calloc(ENGINE_LAPSE_BATCH, sizeof(*writes));
    rd_kafka_message_t **held = calloc(ENGINE_LAPSE_BATCH, sizeof(*held));
    rd_kafka_t *c = NULL;
    size_t n_writes = 0, replayed = 0;
    int rc = -1, remaining = 0;
    if (!progress || !writes || !held)
        goto done;
    int *ready = calloc(eng->n_owned, sizeof(int));
    if (!ready)
        goto done;
    if (store_get_progress(eng->store, eng->n_owned, eng->owned, progress, err, sizeof(err)) ||
        store_load_states_checked(eng->store, 0, NULL, NULL, NULL, eng->n_owned, eng->owned, ready,
                                  err, sizeof(err))) {
        free(ready);
        goto fail;
    }
    /* A partition not marked ready may have lost states older than its progress mark (a
     * write can land after a flush): replay it whole. */
    for (size_t i = 0; i < eng->n_owned; i++)
        if (!ready[i])
            progress[i] = -1;
    free(ready);
    c = kafka_reader_create(eng->cfg, err, sizeof(err));
    if (!c)
        goto fail;
    rd_kafka_topic_partition_list_t *assign = rd_kafka_topic_partition_list_new((int)eng->n_owned);
    for (size_t i = 0; i < eng->n_owned; i++) {
        int64_t lo = 0, hi = 0;
        rd_kafka_resp_err_t e =
            kafka_watermarks(c, eng->topic_state, eng->owned[i], &lo, &hi, 10000);
        if (e) {
            snprintf(err, sizeof(err), "offsets of %s: %s", eng->topic_state, rd_kafka_err2str(e));
            rd_kafka_topic_partition_list_destroy(assign);
            goto fail;
        }
        int64_t from = progress[i] >= 0 ? progress[i] + 1 : lo;
        if (from < hi) {
            rd_kafka_topic_partition_list_add(assign, eng->topic_state, eng->owned[i])->offset =
                from;
            remaining++;
        }
    }
    if (remaining == 0) {
        rd_kafka_topic_partition_list_destroy(assign);
        goto whole;
    }
    rd_kafka_assign(c, assign);
    rd_kafka_topic_partition_list_destroy(assign);
    int idle = 0;
    while (remaining > 0 && idle < 600) { /* 60 s without a record: give up, retry later */
        rd_kafka_message_t *m = rd_kafka_consumer_poll(c, 100);
        if (!m) {
            idle++;
            continue;
        }
        idle = 0;
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            remaining--;
            rd_kafka_message_destroy(m);
            continue;
        }
        if (m->err || !m->key || !m->payload) {
            rd_kafka_message_destroy(m);
            continue;
        }
        Jrp__V1__SubjectState *st = jrp__v1__subject_state__unpack(NULL, m->len, m->payload);
        if (!st) {
            log_warn("%s [%d] offset %lld does not decode; skipped", eng->topic_state,
                     (int)m->partition, (long long)m->offset);
            rd_kafka_message_destroy(m);
            continue;
        }
        char key[ENGINE_KEY_MAX];
        snprintf(key, sizeof(key), "%.*s", (int)m->key_len, (const char *)m->key);
        store_write_t *w = &writes[n_writes];
        w->subject_key = strdup(key);
        w->partition = m->partition;
        w->offset = m->offset;
        w->bytes = m->payload;
        w->len = m->len;
        w->next_due_ms = eng->rules ? rules_next_due(eng->rules, st) : rules_next_lapse(st);
        rules_state_free(st);
        held[n_writes++] = m; /* keeps the payload alive until the write */
        replayed++;
        if (n_writes == ENGINE_LAPSE_BATCH) {
            int wrc = store_write_states(eng->store, writes, n_writes, err, sizeof(err));
            for (size_t i = 0; i < n_writes; i++) {
                free((char *)writes[i].subject_key);
                rd_kafka_message_destroy(held[i]);
            }
            n_writes = 0;
            if (wrc)
                goto fail;
        }
    }
    if (remaining > 0) {
        snprintf(err, sizeof(err), "%s not read to its end", eng->topic_state);
        goto fail;
    }
    if (n_writes && store_write_states(eng->store, writes, n_writes, err, sizeof(err)))
        goto fail;
whole:
    /* Redis now holds every partition's whole changelog. */
    if (store_mark_ready(eng->store, eng->n_owned, eng->owned, err, sizeof(err)))
        goto fail;
    rc = 0;
    goto done;
fail:
    log_warn("recovery: %s", err);
done:
    for (size_t i = 0; i < n_writes; i++) {
        free((char *)writes[i].subject_key);
        rd_kafka_message_destroy(held[i]);
    }
    if (c) {
        rd_kafka_consumer_close(c);
        rd_kafka_destroy(c);
    }
    free(progress);
    free(writes);
    free(held);
    if (rc == 0 && replayed)
        log_info("Redis brought up to date from %s: %zu records", eng->topic_state, replayed);
    if (rc == 0)
        eng->stats.recoveries++;
    return rc;
}

static void engine__drop_items(item_t *items, size_t *n)
{
    for (size_t i = 0; i < *n; i++) {
        rd_kafka_message_destroy(items[i].m);
        if (items[i].ev)
            jrp__v1__credit_event__free_unpacked(items[i].ev, NULL);
    }
    *n = 0;
}

static void engine__drop_batch(engine_t *eng)
{
    engine__drop_items(eng->items, &eng->n_items);
}

static int engine__commit_finish(engine_t *eng, int rewind);
static void engine__forget(engine_t *eng, int rewind);

static void engine__on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                                 rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    engine_t *eng = opaque;
    eng->rebalances++;
    /* A transaction still committing settles first (it holds this assignment's offsets); were
     * it to fail, the group's committed offsets are where the next owner starts anyway. */
    (void)engine__commit_finish(eng, 0);
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        free(eng->owned);
        eng->owned = calloc((size_t)parts->cnt + 1, sizeof(int32_t));
        eng->n_owned = 0;
        for (int i = 0; eng->owned && i < parts->cnt; i++)
            eng->owned[eng->n_owned++] = parts->elems[i].partition;
        log_info("assigned %d partitions of %s", parts->cnt, eng->topic_events);
        rd_kafka_assign(rk, parts);
        /* Nothing is consumed until Redis reflects the changelog of these partitions. */
        if (parts->cnt)
            rd_kafka_pause_partitions(rk, parts);
        eng->paused = 1;
        eng->needs_recovery = 1;
    } else {
        /* Records not yet committed go back to the group, and a batch decided but not begun
         * with them; the new owner redoes them. */
        size_t taken = eng->n_items, decided = eng->n_out;
        engine__forget(eng, 0);
        free(eng->owned);
        eng->owned = NULL;
        eng->n_owned = 0;
        log_info("partitions revoked (%s); %zu events not yet committed go back to the group "
                 "(%zu records decided for them dropped)",
                 rd_kafka_err2str(err), taken, decided);
        rd_kafka_assign(rk, NULL);
    }
}

/* --- producing ------------------------------------------------------------------------------- */

/* Add a record to the outbox: copies topic and key (NULL: a record without a key), takes hdrs
 * (destroyed on failure), and takes value unless borrowed. 0 or -1 (out of memory: the batch must
 * be dropped). */
static int engine__outbox_add(engine_t *eng, const char *topic, int32_t partition, const char *key,
                              size_t key_len, void *value, size_t len, int borrowed,
                              rd_kafka_headers_t *hdrs, void *opaque)
{
    size_t tlen = strlen(topic);
    char *strs = NULL;
    outrec_t *out = grow(eng->out, &eng->cap_out, eng->n_out, sizeof(*out), 4096);
    if (!out)
        goto fail;
    eng->out = out;
    strs = malloc(tlen + key_len + 2);
    if (!strs)
        goto fail;
    memcpy(strs, topic, tlen + 1);
    if (key_len)
        memcpy(strs + tlen + 1, key, key_len);
    strs[tlen + 1 + key_len] = '\0';
    eng->out[eng->n_out++] = (outrec_t){.topic = strs,
                                        .key = key ? strs + tlen + 1 : NULL,
                                        .key_len = key_len,
                                        .value = value,
                                        .len = len,
                                        .borrowed = borrowed,
                                        .partition = partition,
                                        .hdrs = hdrs,
                                        .opaque = opaque};
    return 0;
fail:
    if (!borrowed)
        free(value);
    if (hdrs)
        rd_kafka_headers_destroy(hdrs);
    return -1;
}

static void engine__outbox_drop(outrec_t *out, size_t *n_out)
{
    for (size_t i = 0; i < *n_out; i++) {
        outrec_t *r = &out[i];
        if (!r->borrowed)
            free(r->value);
        if (r->hdrs)
            rd_kafka_headers_destroy(r->hdrs);
        free(r->topic);
    }
    *n_out = 0;
}

/* Hand the committing batch's outbox to the producer, in order, inside the open transaction;
 * waits while the local queue is full. Counts the changelog records whose delivery reports
 * engine__write_redis needs. 0, or -1 (the transaction must abort; the outbox is emptied either
 * way). Runs on the committer thread when pipelining. */
static int engine__flush_outbox(engine_t *eng)
{
    size_t i = 0;
    int rc = 0;
    eng->dr_pending = 0;
    for (; i < eng->fl.n_out; i++) {
        outrec_t *r = &eng->fl.out[i];
        rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR__QUEUE_FULL;
        for (int tries = 0; tries < 100 && err == RD_KAFKA_RESP_ERR__QUEUE_FULL; tries++) {
            err = rd_kafka_producev(
                eng->producer, RD_KAFKA_V_TOPIC(r->topic), RD_KAFKA_V_PARTITION(r->partition),
                RD_KAFKA_V_KEY(r->key, r->key_len), RD_KAFKA_V_VALUE(r->value, r->len),
                RD_KAFKA_V_MSGFLAGS(r->borrowed ? RD_KAFKA_MSG_F_COPY : RD_KAFKA_MSG_F_FREE),
                RD_KAFKA_V_HEADERS(r->hdrs), RD_KAFKA_V_OPAQUE(r->opaque), RD_KAFKA_V_END);
            if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL)
                rd_kafka_poll(eng->producer, 100);
        }
        if (err) {
            log_warn("produce to %s: %s", r->topic, rd_kafka_err2str(err));
            rc = -1;
            break;
        }
        /* librdkafka owns the value (unless borrowed) and the headers now. */
        r->value = NULL;
        r->borrowed = 1;
        r->hdrs = NULL;
        if (r->opaque)
            eng->dr_pending++;
    }
    engine__outbox_drop(eng->fl.out, &eng->fl.n_out);
    return rc;
}

static int engine__produce(engine_t *eng, const char *topic, int32_t partition, const char *key,
                           void *value, size_t len, int borrowed, const char *schema,
                           const char *traceparent, void *opaque)
{
    return engine__outbox_add(eng, topic, partition, key, strlen(key), value, len, borrowed,
                              kafka_headers(schema, traceparent), opaque);
}

static int engine__produce_msg(engine_t *eng, const char *topic, int32_t partition, const char *key,
                               const ProtobufCMessage *msg, const char *schema,
                               const char *traceparent, void *opaque)
{
    size_t len = protobuf_c_message_get_packed_size(msg);
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf)
        return -1;
    protobuf_c_message_pack(msg, buf);
    return engine__produce(eng, topic, partition, key, buf, len, 0, schema, traceparent, opaque);
}

static const char *engine__traceparent(const rd_kafka_message_t *m, char *buf, size_t size)
{
    rd_kafka_headers_t *hdrs = NULL;
    const void *val;
    size_t len;
    if (!m || rd_kafka_message_headers(m, &hdrs) ||
        rd_kafka_header_get_last(hdrs, "traceparent", &val, &len) || !val || len >= size)
        return NULL;
    memcpy(buf, val, len);
    buf[len] = '\0';
    return buf;
}

static int engine__produce_dead_letter(engine_t *eng, const item_t *it)
{
    const rd_kafka_message_t *m = it->m;
    rd_kafka_headers_t *hdrs = NULL, *orig = NULL;
    if (!rd_kafka_message_headers(m, &orig) && orig)
        hdrs = rd_kafka_headers_copy(orig);
    else
        hdrs = rd_kafka_headers_new(8);
    char part[16], off[32], now[32];
    snprintf(part, sizeof(part), "%d", (int)m->partition);
    snprintf(off, sizeof(off), "%lld", (long long)m->offset);
    snprintf(now, sizeof(now), "%lld", (long long)engine__wall_ms());
    rd_kafka_header_add(hdrs, "jrp-error-reason", -1, it->reason, -1);
    rd_kafka_header_add(hdrs, "jrp-error-code", -1, it->code, -1);
    rd_kafka_header_add(hdrs, "jrp-error-service", -1, "engine", -1);
    rd_kafka_header_add(hdrs, "jrp-error-topic", -1, rd_kafka_topic_name(m->rkt), -1);
    rd_kafka_header_add(hdrs, "jrp-error-partition", -1, part, -1);
    rd_kafka_header_add(hdrs, "jrp-error-offset", -1, off, -1);
    rd_kafka_header_add(hdrs, "jrp-error-time", -1, now, -1);
    /* The record is kept unchanged: its bytes are copied when the outbox is flushed (the
     * message lives until its batch is committed). */
    return engine__outbox_add(eng, eng->topic_dlq, RD_KAFKA_PARTITION_UA, (const char *)m->key,
                              m->key ? m->key_len : 0, m->payload, m->payload ? m->len : 0, 1, hdrs,
                              NULL);
}

/* The Decision for one event (or lapse) and its result. */
static int engine__produce_decision(engine_t *eng, const char *key, const char *event_id,
                                    Jrp__V1__EventKind kind, Jrp__V1__Subject *subject,
                                    const rules_result_t *res, int32_t partition, int64_t offset,
                                    int64_t now_ms, const char *traceparent)
{
    Jrp__V1__Decision d;
    jrp__v1__decision__init(&d);
    d.event_id = (char *)event_id;
    d.subject = subject;
    d.ruleset_version = eng->rules ? rules_version(eng->rules) : 0;
    d.outcome = res->outcome;
    d.matched = res->matched;
    d.n_matched = res->n_matched;
    d.processed_at_ms = now_ms;
    d.reason = (char *)res->reason;
    d.event_kind = kind;
    d.source_partition = partition;
    d.source_offset = offset;
    d.suppressed = res->suppressed;
    d.n_suppressed = res->n_suppressed;
    char **ids = calloc(res->n_actions + 1, sizeof(char *));
    if (!ids)
        return -1;
    for (size_t i = 0; i < res->n_actions; i++)
        ids[i] = res->actions[i]->action_id;
    d.action_ids = ids;
    d.n_action_ids = res->n_actions;
    int rc = engine__produce_msg(eng, eng->topic_decisions, RD_KAFKA_PARTITION_UA, key, &d.base,
                                 "jrp.v1.Decision", traceparent, NULL);
    free(ids);
    return rc;
}

static int engine__produce_actions(engine_t *eng, const char *key, const rules_result_t *res,
                                   const char *traceparent)
{
    char topic[512];
    for (size_t i = 0; i < res->n_actions; i++) {
        snprintf(topic, sizeof(topic), "%s%s", eng->actions_prefix, res->actions[i]->department);
        if (engine__produce_msg(eng, topic, RD_KAFKA_PARTITION_UA, key, &res->actions[i]->base,
                                "jrp.v1.Action", traceparent, NULL))
            return -1;
    }
    return 0;
}

/* Escalations due for st: derived events on credit.events and alerts, in this transaction. */
static int engine__escalate(engine_t *eng, const char *key, Jrp__V1__SubjectState *st,
                            int64_t now_ms, int *changed)
{
    rules_escalation_out_t out = {0};
    if (rules_escalate(eng->rules, st, now_ms, &out)) {
        rules_escalation_out_clear(&out);
        return -1;
    }
    int rc = 0;
    for (size_t i = 0; i < out.n && !rc; i++) {
        rc = engine__produce_msg(eng, eng->topic_events, RD_KAFKA_PARTITION_UA, key,
                                 &out.events[i]->base, "jrp.v1.CreditEvent", NULL, NULL) ||
             engine__produce_msg(eng, eng->topic_alerts, RD_KAFKA_PARTITION_UA, key,
                                 &out.alerts[i]->base, "jrp.v1.Alert", NULL, NULL);
        eng->stats.escalations++;
        log_info("%s", out.alerts[i]->message);
    }
    if (out.n)
        *changed = 1;
    rules_escalation_out_clear(&out);
    return rc;
}

/* --- the batch ----------------------------------------------------------------------------------
 */

static void engine__dead_letter(item_t *it, const char *code, const char *fmt, const char *arg)
{
    snprintf(it->code, sizeof(it->code), "%s", code);
    snprintf(it->reason, sizeof(it->reason), fmt, arg);
    if (it->ev) {
        jrp__v1__credit_event__free_unpacked(it->ev, NULL);
        it->ev = NULL;
    }
}

/* Decode and validate one record; on failure it is marked as a dead letter. */
static void engine__decode(item_t *it, char *key, size_t key_size)
{
    const rd_kafka_message_t *m = it->m;
    errlist_t el;
    errlist_init(&el);
    key[0] = '\0';
    it->ev = m->payload ? codec_event_unpack(m->payload, m->len, &el) : NULL;
    if (!it->ev) {
        char line[400] = "empty record";
        if (el.count)
            errlist_format(&el, 0, line, sizeof(line));
        engine__dead_letter(it, el.count ? el.items[0].code : "decode_failed", "%s", line);
        if (el.count > 1) {
            size_t n = strlen(it->reason);
            snprintf(it->reason + n, sizeof(it->reason) - n, " (and %zu more errors)",
                     el.count - 1);
        }
        errlist_clear(&el);
        return;
    }
    errlist_clear(&el);
    const Jrp__V1__Subject *s = it->ev->subject;
    if (ids_subject_key((ids_subject_type_t)s->type, s->id, key, key_size) < 0) {
        engine__dead_letter(it, "bad_format", "%s", "subject key too long");
        return;
    }
    /* The Kafka key decides the partition, and with it which engine owns the subject. */
    if (!m->key || m->key_len != strlen(key) || memcmp(m->key, key, m->key_len)) {
        char why[300];
        snprintf(why, sizeof(why), "%s", key);
        engine__dead_letter(it, "key_mismatch", "the record key must be the subject key \"%s\"",
                            why);
        key[0] = '\0';
    }
}

static int engine__subject_index(engine_t *eng, cache_entry_t *entry, size_t *index)
{
    for (size_t i = 0; i < eng->n_subjects; i++)
        if (eng->subjects[i].entry == entry) {
            *index = i;
            return 0;
        }
    subject_ref_t *s = grow(eng->subjects, &eng->cap_subjects, eng->n_subjects, sizeof(*s), 256);
    if (!s)
        return -1;
    eng->subjects = s;
    eng->subjects[eng->n_subjects] = (subject_ref_t){.entry = entry, .state_offset = -1};
    *index = eng->n_subjects++;
    return 0;
}

/*
 * Make room in the state cache: drop entries the current batch does not use until it is half
 * full (Redis has every state, so any entry may go). Starting where the last sweep stopped
 * spreads evictions over the table.
 */
static void engine__cache_evict(engine_t *eng)
{
    cache_t *c = &eng->cache;
    size_t target = eng->cache_max / 2;
    for (size_t i = 0; i < c->n_buckets && c->count > target; i++) {
        size_t b = (eng->evict_cursor + i) % c->n_buckets;
        cache_entry_t **pp = &c->buckets[b];
        while (*pp) {
            cache_entry_t *e = *pp;
            if (e->batch + 1 >= eng->batch_seq) { /* this batch or the committing one uses it */
                pp = &e->next;
                continue;
            }
            *pp = e->next;
            free(e->key);
            if (e->st)
                rules_state_free(e->st);
            free(e);
            c->count--;
        }
        eng->evict_cursor = b + 1;
    }
}

/* Did Redis lose the cache of an owned partition (a flush, a restart without persistence)? Its
 * ready mark, set only by recovery, is then gone. 1 yes, 0 no, -1 Redis unreachable. */
static int engine__redis_lost(engine_t *eng)
{
    char err[512];
    if (eng->n_owned == 0)
        return 0;
    int *ready = calloc(eng->n_owned, sizeof(int));
    if (!ready)
        return -1;
    int rc = 0;
    if (store_load_states_checked(eng->store, 0, NULL, NULL, NULL, eng->n_owned, eng->owned, ready,
                                  err, sizeof(err))) {
        log_warn("%s", err);
        rc = -1;
    } else {
        for (size_t i = 0; i < eng->n_owned; i++)
            if (!ready[i]) {
                log_warn("Redis lost the state of partition %d: rebuilding it from %s",
                         (int)eng->owned[i], eng->topic_state);
                rc = 1;
            }
    }
    free(ready);
    return rc;
}

/*
 * Find every subject of the batch's records from index from on (keys[i - from] is record i's) in
 * the cache, loading the rest from Redis in one round trip that also checks, after the loads,
 * that every owned partition is still marked ready (a flush between could otherwise go
 * unnoticed). Subjects with no state anywhere start empty. 0, or -1 when Redis is unreachable or
 * lost the cache of a partition (recovery must run first).
 */
static int engine__resolve_subjects(engine_t *eng, char (*keys)[ENGINE_KEY_MAX], size_t from)
{
    char err[512];
    const char **missing = calloc(eng->n_items - from + 1, sizeof(char *));
    int32_t *missing_part = calloc(eng->n_items - from + 1, sizeof(int32_t));
    int *ready = calloc(eng->n_owned + 1, sizeof(int));
    size_t n_missing = 0;
    Jrp__V1__SubjectState **loaded = NULL;
    int64_t *offsets = NULL;
    int rc = -1;
    if (!missing || !missing_part || !ready)
        goto done;
    if (from == 0)
        eng->batch_seq++; /* records added to a decided batch are the same batch */
    for (size_t i = from; i < eng->n_items; i++) {
        if (!eng->items[i].ev)
            continue;
        cache_entry_t *hit = cache_get(&eng->cache, keys[i - from]);
        if (hit) {
            hit->batch = eng->batch_seq;
            continue;
        }
        size_t j;
        for (j = 0; j < n_missing && strcmp(missing[j], keys[i - from]); j++)
            ;
        if (j == n_missing) {
            missing[n_missing] = keys[i - from];
            missing_part[n_missing++] = eng->items[i].m->partition;
        }
    }
    loaded = calloc(n_missing + 1, sizeof(*loaded));
    offsets = calloc(n_missing + 1, sizeof(*offsets));
    if (!loaded || !offsets)
        goto done;
    if (store_load_states_checked(eng->store, n_missing, missing, loaded, offsets, eng->n_owned,
                                  eng->owned, ready, err, sizeof(err))) {
        log_warn("%s", err);
        goto done;
    }
    for (size_t i = 0; i < eng->n_owned; i++)
        if (!ready[i]) {
            log_warn("Redis lost the state of partition %d: rebuilding it from %s",
                     (int)eng->owned[i], eng->topic_state);
            goto done;
        }
    if (n_missing) {
        if (eng->cache_max && eng->cache.count + n_missing > eng->cache_max)
            engine__cache_evict(eng); /* every state is in Redis too: evicting is safe */
        for (size_t j = 0; j < n_missing; j++) {
            Jrp__V1__SubjectState *st = loaded[j];
            if (!st) {
                st = malloc(sizeof(*st));
                if (!st)
                    goto done;
                jrp__v1__subject_state__init(st);
            }
            loaded[j] = NULL;
            cache_entry_t *e = cache_put(&eng->cache, missing[j], missing_part[j], st);
            if (!e) {
                rules_state_free(st);
                goto done;
            }
            e->batch = eng->batch_seq;
        }
    }
    if (from == 0)
        eng->n_subjects = 0;
    for (size_t i = from; i < eng->n_items; i++) {
        if (!eng->items[i].ev)
            continue;
        cache_entry_t *e = cache_get(&eng->cache, keys[i - from]);
        if (!e || engine__subject_index(eng, e, &eng->items[i].subject))
            goto done;
    }
    rc = 0;
done:
    if (loaded)
        for (size_t j = 0; j < n_missing; j++)
            if (loaded[j])
                rules_state_free(loaded[j]);
    free(loaded);
    free(offsets);
    free(missing);
    free(missing_part);
    free(ready);
    return rc;
}

static void engine__free_packed(subject_ref_t *subjects, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(subjects[i].packed);
        subjects[i].packed = NULL;
    }
}

/* The changelog record of every dirty subject, explicitly to its partition; its bytes are kept
 * for the Redis write, its offset comes with its delivery report. */
static int engine__produce_states(engine_t *eng)
{
    for (size_t i = 0; i < eng->n_subjects; i++) {
        subject_ref_t *ref = &eng->subjects[i];
        if (!ref->dirty)
            continue;
        ref->packed_len = jrp__v1__subject_state__get_packed_size(ref->entry->st);
        ref->packed = malloc(ref->packed_len ? ref->packed_len : 1);
        if (!ref->packed)
            return -1;
        jrp__v1__subject_state__pack(ref->entry->st, ref->packed);
        ref->next_due_ms = rules_next_due(eng->rules, ref->entry->st);
        ref->state_offset = -1;
        if (engine__produce(eng, eng->topic_state, ref->entry->partition, ref->entry->key,
                            ref->packed, ref->packed_len, 1, "jrp.v1.SubjectState", NULL, ref))
            return -1;
    }
    return 0;
}

/* A Redis write after a commit failed: Redis is behind, and recovery repairs it. Returns -1. */
static int engine__redis_write_failed(engine_t *eng, const char *why)
{
    log_warn("Redis write after commit failed (recovery will repair it): %s", why);
    eng->needs_recovery = 1;
    return -1;
}

/* Read the replies of the last Redis writes (engine__write_redis does not wait for them). A
 * failed write leaves Redis behind, which recovery repairs. 0 or -1. */
static int engine__settle_redis(engine_t *eng)
{
    char err[512];
    if (store_settle(eng->store, err, sizeof(err)) == 0)
        return 0;
    return engine__redis_write_failed(eng, err);
}

/* After a commit: send the committed batch's new states to Redis. Redis runs them while the
 * next batch is being decided; their replies are read before the next use of Redis
 * (engine__settle_redis). A failure leaves Redis behind, which the next recovery repairs; it
 * never loses anything. */
static void engine__write_redis(engine_t *eng, const subject_ref_t *subjects, size_t n_subjects)
{
    char err[512];
    for (int i = 0; i < 200 && eng->dr_pending; i++)
        rd_kafka_poll(eng->producer, 10);
    store_write_t *w = calloc(n_subjects + 1, sizeof(*w));
    size_t n = 0;
    if (!w) {
        eng->needs_recovery = 1;
        return;
    }
    for (size_t i = 0; i < n_subjects; i++) {
        const subject_ref_t *ref = &subjects[i];
        if (!ref->dirty)
            continue;
        if (ref->state_offset < 0) {
            eng->needs_recovery = 1; /* no offset known: let the changelog replay write it */
            continue;
        }
        w[n++] = (store_write_t){ref->entry->key, ref->entry->partition, ref->state_offset,
                                 ref->packed,     ref->packed_len,       ref->next_due_ms};
    }
    if (store_send_states(eng->store, w, n, err, sizeof(err)))
        (void)engine__redis_write_failed(eng, err);
    free(w);
}

/* Forget what the failed transaction and the batch decided behind it did: their subjects'
 * states were changed in place (all are reloaded from Redis, which has every committed state),
 * their records and outbox are dropped, and the consumer goes back to the group's committed
 * offsets (unless rewind is 0: inside a rebalance, where the assignment goes anyway). */
static void engine__forget(engine_t *eng, int rewind)
{
    char err[512];
    engine__free_packed(eng->fl.subjects, eng->fl.n_subjects);
    engine__free_packed(eng->subjects, eng->n_subjects);
    eng->fl.n_subjects = 0;
    eng->n_subjects = 0;
    cache_clear(&eng->cache);
    engine__outbox_drop(eng->out, &eng->n_out);
    engine__outbox_drop(eng->fl.out, &eng->fl.n_out);
    engine__drop_items(eng->fl.items, &eng->fl.n_items);
    engine__drop_batch(eng);
    /* Without a rewind the batch would be skipped: stop and let the group redo it. */
    if (rewind && eng->n_owned && kafka_rewind_to_committed(eng->consumer, 10000, err, sizeof(err)))
        engine__fatal(eng, "rewind", err);
}

/* Abort the open transaction and forget it (engine__forget). */
static void engine__abort(engine_t *eng, const char *why, int rewind)
{
    char err[512];
    log_warn("aborting the transaction: %s", why);
    eng->stats.aborts++;
    if (kafka_txn_abort(eng->producer, ENGINE_TXN_TIMEOUT_MS, err, sizeof(err)) != KAFKA_ERR_OK) {
        engine__fatal(eng, "abort_transaction", err);
        return;
    }
    engine__forget(eng, rewind);
}

/*
 * The committer: the committing batch's transaction, after engine__begin — its input offsets
 * first, then its records, then commit_transaction, which waits for every record's
 * acknowledgement, serving the delivery reports (engine__on_delivery) on this thread; all
 * within ENGINE_TXN_TIMEOUT_MS. The offsets go first because the broker refuses a transaction's
 * first requests (CONCURRENT_TRANSACTIONS) until it has written the previous transaction's
 * markers, and librdkafka 2.0.2 asks again after retry.backoff.ms for AddOffsetsToTxn but after
 * a fixed 20 ms for AddPartitionsToTxn, which the first record sends (docs/engine.md).
 */
static void *engine__committer(void *arg)
{
    engine_t *eng = arg;
    uint64_t t0 = uv_hrtime();
    kafka_err_class_t c = KAFKA_ERR_OK;
    if (eng->fl.offsets)
        c = kafka_txn_send_offsets(eng->producer, eng->fl.offsets, eng->fl.cgmd,
                                   ENGINE_TXN_TIMEOUT_MS, eng->fl.err, sizeof(eng->fl.err));
    if (c != KAFKA_ERR_OK) {
        engine__outbox_drop(eng->fl.out, &eng->fl.n_out);
    } else if (engine__flush_outbox(eng)) {
        c = KAFKA_ERR_ABORT;
        snprintf(eng->fl.err, sizeof(eng->fl.err), "producing the batch failed");
    } else {
        int64_t spent_ms = (int64_t)((uv_hrtime() - t0) / 1000000);
        int left = spent_ms < ENGINE_TXN_TIMEOUT_MS ? ENGINE_TXN_TIMEOUT_MS - (int)spent_ms : 1;
        c = kafka_txn_commit_offsets(eng->producer, NULL, NULL, left, eng->fl.err,
                                     sizeof(eng->fl.err));
    }
    eng->fl.result = c;
    eng->fl.elapsed_ns = uv_hrtime() - t0;
    atomic_store(&eng->fl.done, 1);
    return NULL;
}

#define ENGINE_SWAP(a, b)                                                                          \
    do {                                                                                           \
        __typeof__(a) swap_tmp_ = (a);                                                             \
        (a) = (b);                                                                                 \
        (b) = swap_tmp_;                                                                           \
    } while (0)

/*
 * Commit the open transaction, with the batch's input offsets (the next offset to read of each
 * partition it has records of) unless it is a lapse transaction. The batch moves to eng->fl
 * until engine__commit_finish; with async (and engine.pipeline) the commit runs on the committer
 * thread, so that the next batch is decided meanwhile, into the outbox, without producing.
 */
static void engine__commit_start(engine_t *eng, int with_offsets, int async, size_t actions,
                                 size_t dead, size_t dups, size_t lapses)
{
    rd_kafka_topic_partition_list_t *offsets = NULL;
    if (with_offsets) {
        offsets = rd_kafka_topic_partition_list_new(eng->n_owned ? (int)eng->n_owned : 1);
        for (size_t i = 0; i < eng->n_items; i++) {
            const rd_kafka_message_t *m = eng->items[i].m;
            const char *topic = rd_kafka_topic_name(m->rkt);
            rd_kafka_topic_partition_t *p =
                rd_kafka_topic_partition_list_find(offsets, topic, m->partition);
            if (!p)
                p = rd_kafka_topic_partition_list_add(offsets, topic, m->partition);
            if (m->offset + 1 > p->offset)
                p->offset = m->offset + 1;
        }
        eng->fl.cgmd = rd_kafka_consumer_group_metadata(eng->consumer);
    }
    eng->fl.offsets = offsets;
    ENGINE_SWAP(eng->fl.items, eng->items);
    ENGINE_SWAP(eng->fl.n_items, eng->n_items);
    ENGINE_SWAP(eng->fl.cap_items, eng->cap_items);
    ENGINE_SWAP(eng->fl.subjects, eng->subjects);
    ENGINE_SWAP(eng->fl.n_subjects, eng->n_subjects);
    ENGINE_SWAP(eng->fl.cap_subjects, eng->cap_subjects);
    ENGINE_SWAP(eng->fl.out, eng->out); /* fl.out was emptied by the last commit */
    ENGINE_SWAP(eng->fl.n_out, eng->n_out);
    ENGINE_SWAP(eng->fl.cap_out, eng->cap_out);
    eng->fl.actions = actions;
    eng->fl.dead = dead;
    eng->fl.dups = dups;
    eng->fl.lapses = lapses;
    eng->fl.started_ms = eng->batch_started_ms;
    eng->batch_started_ms = 0;
    eng->fl.active = 1;
    atomic_store(&eng->fl.done, 0);
    eng->fl.threaded = async && eng->pipeline &&
                       pthread_create(&eng->fl.thread, NULL, engine__committer, eng) == 0;
    if (!eng->fl.threaded)
        engine__committer(eng);
}

/*
 * Wait for the committing transaction's outcome. Committed: count it, write Redis, release the
 * batch. Failed: abort, forgetting the batch decided behind it too. 0 when committed (or
 * nothing was committing), -1 otherwise.
 */
static int engine__commit_finish(engine_t *eng, int rewind)
{
    if (!eng->fl.active)
        return 0;
    if (eng->fl.threaded)
        pthread_join(eng->fl.thread, NULL);
    eng->fl.active = 0;
    ops_histogram_observe(&eng->stats.stage_seconds[ENGINE_STAGE_COMMIT],
                          (double)eng->fl.elapsed_ns / 1e9);
    if (eng->fl.offsets)
        rd_kafka_topic_partition_list_destroy(eng->fl.offsets);
    if (eng->fl.cgmd)
        rd_kafka_consumer_group_metadata_destroy(eng->fl.cgmd);
    eng->fl.offsets = NULL;
    eng->fl.cgmd = NULL;
    if (eng->fl.result == KAFKA_ERR_FATAL) {
        engine__fatal(eng, "commit_transaction", eng->fl.err);
        return -1;
    }
    if (eng->fl.result != KAFKA_ERR_OK) {
        engine__abort(eng, eng->fl.err, rewind);
        return -1;
    }
    eng->stats.batches++;
    eng->stats.events += eng->fl.n_items;
    eng->stats.actions += eng->fl.actions;
    eng->stats.dead_letters += eng->fl.dead;
    eng->stats.duplicates += eng->fl.dups;
    eng->stats.lapses += eng->fl.lapses;
    if (eng->fl.started_ms)
        ops_histogram_observe(&eng->stats.batch_seconds,
                              (double)(engine__mono_ms() - eng->fl.started_ms) / 1000.0);
    uint64_t t0 = uv_hrtime();
    engine__write_redis(eng, eng->fl.subjects, eng->fl.n_subjects);
    engine__observe_stage(eng, ENGINE_STAGE_REDIS, t0);
    engine__free_packed(eng->fl.subjects, eng->fl.n_subjects);
    eng->fl.n_subjects = 0;
    engine__drop_items(eng->fl.items, &eng->fl.n_items);
    return 0;
}

static int engine__begin(engine_t *eng)
{
    char err[512];
    kafka_err_class_t c =
        kafka_error_classify(rd_kafka_begin_transaction(eng->producer), err, sizeof(err));
    if (c != KAFKA_ERR_OK) {
        engine__fatal(eng, "begin_transaction", err);
        return -1;
    }
    eng->dr_failures = 0;
    return 0;
}

/* Add one polled record to the batch. 0, or -1 after a fatal error. */
static int engine__take(engine_t *eng, rd_kafka_message_t *m)
{
    if (m->err) {
        if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
            log_warn("consumer: %s", rd_kafka_message_errstr(m));
        int fatal = m->err == RD_KAFKA_RESP_ERR__FATAL;
        rd_kafka_message_destroy(m);
        if (fatal)
            engine__fatal(eng, "consumer", "fatal error");
        return fatal ? -1 : 0;
    }
    item_t *items = grow(eng->items, &eng->cap_items, eng->n_items, sizeof(*items), 1024);
    if (!items) {
        rd_kafka_message_destroy(m);
        engine__fatal(eng, "batch", "out of memory");
        return -1;
    }
    eng->items = items;
    if (eng->n_items == 0)
        eng->batch_started_ms = engine__mono_ms();
    eng->items[eng->n_items++] = (item_t){.m = m};
    return 0;
}

/*
 * Decide the batch's records from index from on into the outbox: no producer call, so the
 * previous batch's transaction may be committing meanwhile. Subjects' states are changed in
 * place; their changelog records are made once the batch is complete (engine__produce_states).
 * 0 decided, 1 not decided (Redis could not resolve the subjects), -1 failed (out of memory).
 */
static int engine__decide(engine_t *eng, size_t from, int64_t now, size_t *actions, size_t *dead,
                          size_t *dups)
{
    char(*keys)[ENGINE_KEY_MAX] = calloc(eng->n_items - from + 1, ENGINE_KEY_MAX);
    if (!keys)
        return -1;
    for (size_t i = from; i < eng->n_items; i++)
        engine__decode(&eng->items[i], keys[i - from], ENGINE_KEY_MAX);
    if (engine__resolve_subjects(eng, keys, from)) {
        free(keys);
        return 1;
    }
    rules_result_t res;
    rules_result_init(&res);
    int failed = 0;
    for (size_t i = from; i < eng->n_items && !failed; i++) {
        item_t *it = &eng->items[i];
        char tp[128];
        const char *traceparent = engine__traceparent(it->m, tp, sizeof(tp));
        if (!it->ev) {
            char key[ENGINE_KEY_MAX], eid[200];
            snprintf(key, sizeof(key), "%.*s", it->m->key ? (int)it->m->key_len : 0,
                     it->m->key ? (const char *)it->m->key : "");
            snprintf(eid, sizeof(eid), "dlq:%s:%d:%lld", rd_kafka_topic_name(it->m->rkt),
                     (int)it->m->partition, (long long)it->m->offset);
            rules_result_clear(&res);
            res.outcome = JRP__V1__DECISION_OUTCOME__DECISION_OUTCOME_REJECTED;
            snprintf(res.reason, sizeof(res.reason), "%s: %.200s", it->code, it->reason);
            failed = engine__produce_dead_letter(eng, it) ||
                     engine__produce_decision(eng, key, eid, 0, NULL, &res, it->m->partition,
                                              it->m->offset, now, traceparent);
            (*dead)++;
            continue;
        }
        subject_ref_t *ref = &eng->subjects[it->subject];
        rules_result_clear(&res);
        if (rules_match(eng->rules, ref->entry->st, it->ev, now, &eng->opts, &res)) {
            failed = 1;
            break;
        }
        int changed = res.state_changed;
        if (res.outcome == JRP__V1__DECISION_OUTCOME__DECISION_OUTCOME_DUPLICATE)
            (*dups)++;
        else if (engine__escalate(eng, keys[i - from], ref->entry->st, now, &changed))
            failed = 1;
        failed = failed || engine__produce_actions(eng, keys[i - from], &res, traceparent) ||
                 engine__produce_decision(eng, keys[i - from], it->ev->event_id, it->ev->kind,
                                          it->ev->subject, &res, it->m->partition, it->m->offset,
                                          now, traceparent);
        ref->dirty |= changed;
        *actions += res.n_actions;
    }
    rules_result_clear(&res);
    free(keys);
    return failed ? -1 : 0;
}

/* Not ready (no rules, Redis behind): give the records back, forgetting any state they
 * changed, and consume again once recovered. */
static void engine__give_back(engine_t *eng)
{
    engine__forget(eng, 1);
    engine__pause(eng, 1);
}

/* Take the records waiting (after waiting up to ms for the first), up to engine.batch_max. */
static void engine__take_some(engine_t *eng, int ms)
{
    rd_kafka_message_t *m = rd_kafka_consumer_poll(eng->consumer, ms);
    while (m && !engine__take(eng, m) && eng->n_items < eng->batch_max)
        m = rd_kafka_consumer_poll(eng->consumer, 0);
}

/*
 * While the transaction before this batch commits, take the records that arrive and decide them
 * into this batch as they come (up to engine.batch_max): they then go with this batch's commit
 * rather than wait for it and then for one of their own, and the committer finds the batch
 * decided as soon as it is free. Returns when that commit is done (the caller collects its
 * outcome), with engine__decide's result; a rebalance meanwhile is the caller's to notice.
 */
static int engine__decide_more(engine_t *eng, size_t *actions, size_t *dead, size_t *dups,
                               uint64_t *decide_ns)
{
    uint64_t gen = eng->rebalances;
    while (eng->fl.active && !atomic_load(&eng->fl.done) && !eng->failed && !eng->stopping &&
           eng->rebalances == gen && !eng->needs_recovery) {
        if (eng->n_items >= eng->batch_max)
            return 0; /* full: the caller waits for the commit */
        size_t from = eng->n_items;
        /* The wait: 1 ms at most, so that the commit's end is noticed within about that. */
        engine__take_some(eng, 1);
        if (eng->n_items == from || eng->rebalances != gen || eng->failed)
            continue;
        uint64_t t0 = uv_hrtime();
        int rc = engine__decide(eng, from, engine__wall_ms(), actions, dead, dups);
        *decide_ns += uv_hrtime() - t0;
        if (rc)
            return rc;
    }
    return 0;
}

/* A rebalance since gen took the partitions (the batch with them) or brought new ones: forget
 * what is left and start again from the group's committed offsets. 1 if so, or after a fatal
 * error; 0 to go on. */
static int engine__rebalanced(engine_t *eng, uint64_t gen)
{
    if (eng->failed)
        return 1;
    if (eng->rebalances == gen)
        return 0;
    engine__forget(eng, 1);
    return 1;
}

/*
 * Decide and commit the collected batch. With engine.pipeline, once a batch's transaction is
 * committing, the records already waiting are taken and decided behind it; their own
 * transaction begins only after that commit succeeded, and a failed commit forgets them too.
 * Returns when nothing is committing any more, unless settle is 0: then the last transaction
 * may still be committing on the committer thread (a backlog's turn ends, and the next turn
 * goes on behind it); whatever uses the producer, the cache or Redis's states next calls
 * engine__commit_finish first.
 */
static void engine__process_batch(engine_t *eng, int settle)
{
    while (eng->n_items && !eng->failed) {
        if (!eng->rules || eng->needs_recovery) {
            if (engine__commit_finish(eng, 1) == 0)
                engine__give_back(eng);
            break;
        }
        uint64_t gen = eng->rebalances; /* only the consumer polls below can change it */
        uint64_t t0 = uv_hrtime();
        size_t actions = 0, dead = 0, dups = 0;
        int rc = engine__decide(eng, 0, engine__wall_ms(), &actions, &dead, &dups);
        uint64_t decide_ns = uv_hrtime() - t0;
        size_t first = eng->n_items;
        int was_committing = eng->fl.active;
        if (rc == 0 && was_committing && eng->fl.threaded) {
            rc = engine__decide_more(eng, &actions, &dead, &dups, &decide_ns);
            if (engine__rebalanced(eng, gen))
                break;
        }
        uint64_t t_wait = uv_hrtime();
        if (engine__commit_finish(eng, 1)) /* the batch behind it went with it */
            break;
        log_debug("batch of %zu events (%zu of them taken while the commit before ran) decided in "
                  "%.1f ms; then waited %.1f ms for that commit (%.1f ms)",
                  eng->n_items, eng->n_items - first, (double)decide_ns / 1e6,
                  (double)(uv_hrtime() - t_wait) / 1e6,
                  was_committing ? (double)eng->fl.elapsed_ns / 1e6 : 0.0);
        if (rc == 0 && engine__produce_states(eng))
            rc = -1;
        if (rc > 0 || eng->needs_recovery) {
            eng->needs_recovery = 1;
            engine__give_back(eng);
            break;
        }
        if (rc < 0) {
            log_warn("deciding the batch failed (out of memory): redoing it");
            engine__forget(eng, 1);
            break;
        }
        if (engine__begin(eng))
            break;
        ops_histogram_observe(&eng->stats.stage_seconds[ENGINE_STAGE_DECIDE],
                              (double)decide_ns / 1e9);
        engine__commit_start(eng, 1, 1, actions, dead, dups, 0);
        if (!eng->fl.threaded || eng->stopping || engine__mono_ms() >= eng->yield_at_ms)
            break;
        /* Take what is waiting, and what arrives while this commit runs: the next batch,
         * decided behind it. Nothing by the time the commit ends: settle it below. */
        for (int ms = 0; eng->n_items == 0 && !eng->failed && eng->rebalances == gen; ms = 1) {
            if (ms && (!settle || atomic_load(&eng->fl.done)))
                break;
            engine__take_some(eng, ms);
        }
        if (engine__rebalanced(eng, gen))
            break;
    }
    if (settle || eng->failed || !eng->fl.threaded)
        (void)engine__commit_finish(eng, 1);
}

/* --- lapses ------------------------------------------------------------------------------------
 */

/* Lift lapsed listings and fire time-based escalations for one partition's due subjects. */
static void engine__process_due(engine_t *eng, int32_t partition)
{
    char err[512];
    char **keys = NULL;
    size_t n = 0;
    int64_t now = engine__wall_ms();
    if (engine__commit_finish(eng, 1) || engine__settle_redis(eng))
        return;
    if (store_due(eng->store, partition, now, ENGINE_LAPSE_BATCH, &keys, &n, err, sizeof(err))) {
        log_warn("%s", err);
        return;
    }
    if (n == 0)
        return;
    /* Reuse the batch machinery: subjects resolved through the cache. */
    const char **ks = calloc(n, sizeof(char *));
    Jrp__V1__SubjectState **loaded = calloc(n, sizeof(*loaded));
    int64_t *offsets = calloc(n, sizeof(*offsets));
    rules_result_t res;
    rules_result_init(&res);
    int failed = 0;
    size_t lapses = 0;
    if (!ks || !loaded || !offsets)
        goto done;
    size_t n_missing = 0;
    for (size_t i = 0; i < n; i++)
        if (!cache_get(&eng->cache, keys[i]))
            ks[n_missing++] = keys[i];
    if (n_missing &&
        store_load_states(eng->store, n_missing, ks, loaded, offsets, err, sizeof(err))) {
        log_warn("%s", err);
        goto done;
    }
    for (size_t j = 0; j < n_missing; j++) {
        if (!loaded[j])
            continue; /* stale index entry of a subject with no state: cleared below */
        if (!cache_put(&eng->cache, ks[j], partition, loaded[j]))
            rules_state_free(loaded[j]);
        loaded[j] = NULL;
    }
    eng->n_subjects = 0;
    if (engine__begin(eng))
        goto done;
    for (size_t i = 0; i < n && !failed; i++) {
        cache_entry_t *e = cache_get(&eng->cache, keys[i]);
        if (!e) {
            store_set_due(eng->store, partition, keys[i], 0, err, sizeof(err));
            continue;
        }
        size_t idx;
        if (engine__subject_index(eng, e, &idx)) {
            failed = 1;
            break;
        }
        char lapse_id[80];
        rules_result_clear(&res);
        if (rules_lapse(eng->rules, e->st, now, &res, lapse_id, sizeof(lapse_id))) {
            failed = 1;
            break;
        }
        int changed = res.state_changed;
        if (engine__escalate(eng, keys[i], e->st, now, &changed)) {
            failed = 1;
            break;
        }
        if (res.state_changed) {
            lapses++;
            failed = engine__produce_actions(eng, keys[i], &res, NULL) ||
                     engine__produce_decision(eng, keys[i], lapse_id,
                                              JRP__V1__EVENT_KIND__EVENT_KIND_DELISTED,
                                              e->st->subject, &res, -1, -1, now, NULL);
        }
        eng->subjects[idx].dirty |= changed;
        if (!changed) /* nothing due after all: correct the index */
            store_set_due(eng->store, partition, keys[i], rules_next_due(eng->rules, e->st), err,
                          sizeof(err));
    }
    if (failed || engine__produce_states(eng)) {
        engine__abort(eng, "producing lapses failed", 1);
        goto done;
    }
    /* Lapses consume no input: no offsets go with this transaction. */
    engine__commit_start(eng, 0, 0, 0, 0, 0, lapses);
    (void)engine__commit_finish(eng, 1);
done:
    rules_result_clear(&res);
    if (loaded)
        for (size_t j = 0; j < n; j++)
            if (loaded[j])
                rules_state_free(loaded[j]);
    free(loaded);
    free(offsets);
    free(ks);
    store_free_keys(keys, n);
}

/* --- the loop -----------------------------------------------------------------------------------
 */

static void engine__on_consumer_ready(void *arg)
{
    engine_t *eng = arg;
    if (eng->failed || eng->stopping)
        return;
    eng->kicked = 0;
    eng->yield_at_ms = engine__mono_ms() + ENGINE_YIELD_MS;
    for (;;) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(eng->consumer, 0);
        if (!m)
            break;
        if (engine__take(eng, m))
            return;
        if (eng->n_items >= eng->batch_max ||
            engine__mono_ms() - eng->batch_started_ms >= eng->batch_max_ms)
            engine__process_batch(eng, 1);
        if (eng->failed)
            return;
        if (engine__mono_ms() >= eng->yield_at_ms) {
            /* A backlog: decide what was taken, then let the loop serve its timers and the ops
             * port before going on, the last transaction committing meanwhile. */
            engine__process_batch(eng, 0);
            kafka_uv_kick(eng->bridge);
            eng->kicked = 1;
            return;
        }
    }
    /* The queue is empty: decide what we have now (natural batching). */
    engine__process_batch(eng, 1);
}

static void engine__subscribe(engine_t *eng)
{
    rd_kafka_topic_partition_list_t *topics = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(topics, eng->topic_events, RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t err = rd_kafka_subscribe(eng->consumer, topics);
    rd_kafka_topic_partition_list_destroy(topics);
    if (err) {
        engine__fatal(eng, "subscribe", rd_kafka_err2str(err));
        return;
    }
    eng->subscribed = 1;
    log_info("%s consuming %s in group %s", eng->instance, eng->topic_events,
             config_get(eng->cfg, "engine.group"));
}

static void engine__on_cron(uv_timer_t *t)
{
    engine_t *eng = t->data;
    uint64_t now = uv_now(eng->loop);
    char err[512];
    if (eng->failed || eng->stopping)
        return;
    if (!eng->fl.active) /* else the committer thread serves the producer's events */
        rd_kafka_poll(eng->producer, 0);
    (void)engine__settle_redis(eng);
    /* Redis: reconnect, notice a loss, replay the changelog, then let records flow again. */
    if (!store_redis(eng->store) && store_reconnect(eng->store, err, sizeof(err))) {
        if (now >= eng->next_health_ms) {
            log_warn("Redis unreachable: %s", err);
            eng->next_health_ms = now + 5000;
        }
        eng->needs_recovery = 1;
        if (!eng->paused)
            engine__pause(eng, 1);
        return;
    }
    if (now >= eng->next_rules_ms) {
        eng->next_rules_ms = now + (uint64_t)config_get_int(eng->cfg, "engine.rules_check_ms");
        if (engine__check_rules(eng) == 0 && eng->rules && !eng->subscribed)
            engine__subscribe(eng);
        int lost = engine__redis_lost(eng);
        if (lost)
            eng->needs_recovery = 1;
    }
    if (eng->needs_recovery && eng->n_items == 0) {
        if (engine__commit_finish(eng, 1) == 0 && engine__recover(eng) == 0) {
            eng->needs_recovery = 0;
            if (eng->paused)
                engine__pause(eng, 0);
        } else {
            return;
        }
    } else if (eng->paused && !eng->needs_recovery && eng->subscribed) {
        engine__pause(eng, 0);
    }
    /* Serve group events (rebalances) and records that are waiting, unless a backlog's next
     * turn is already due through the bridge (one turn of work per turn of the loop). */
    if (!eng->kicked)
        engine__on_consumer_ready(eng);
    if (eng->failed || eng->stopping)
        return;
    if (eng->rules && !eng->needs_recovery && now >= eng->next_lapse_ms) {
        eng->next_lapse_ms = now + (uint64_t)config_get_int(eng->cfg, "engine.lapse_check_ms");
        for (size_t i = 0; i < eng->n_owned && !eng->failed; i++)
            engine__process_due(eng, eng->owned[i]);
    }
}

/* --- lifecycle ----------------------------------------------------------------------------------
 */

engine_t *engine_create(uv_loop_t *loop, const config_t *cfg, char *errstr, size_t errstr_size)
{
    engine_t *eng = calloc(1, sizeof(*eng));
    rd_kafka_conf_t *conf = NULL;
    if (!eng || cache_init(&eng->cache, 65536)) {
        snprintf(errstr, errstr_size, "out of memory");
        free(eng);
        return NULL;
    }
    eng->loop = loop;
    eng->cfg = cfg;
    eng->batch_max = (size_t)config_get_int(cfg, "engine.batch_max_events");
    eng->batch_max_ms = (uint64_t)config_get_int(cfg, "engine.batch_max_ms");
    eng->pipeline = config_get_bool(cfg, "engine.pipeline");
    eng->cache_max = (size_t)config_get_int(cfg, "engine.state_cache_max");
    eng->opts.dedup_horizon_ms = config_get_int(cfg, "engine.dedup_horizon_days") * 86400000LL;
    eng->opts.dedup_max = 1000;
    snprintf(eng->instance, sizeof(eng->instance), "%s", config_get(cfg, "engine.instance"));
    config_topic(cfg, "events", eng->topic_events, sizeof(eng->topic_events));
    config_topic(cfg, "state", eng->topic_state, sizeof(eng->topic_state));
    config_topic(cfg, "decisions", eng->topic_decisions, sizeof(eng->topic_decisions));
    config_topic(cfg, "alerts", eng->topic_alerts, sizeof(eng->topic_alerts));
    config_topic(cfg, "dlq", eng->topic_dlq, sizeof(eng->topic_dlq));
    config_topic(cfg, "actions.", eng->actions_prefix, sizeof(eng->actions_prefix));

    eng->store = store_create(cfg, errstr, errstr_size);
    if (!eng->store)
        goto err;
    if (engine__ensure_topics(eng, NULL, errstr, errstr_size))
        goto err;

    /* The transactional producer: its id is stable per instance, so a restart fences the dead
     * predecessor's open transaction at once. */
    char txid[200];
    snprintf(txid, sizeof(txid), "jrp-engine-%s", eng->instance);
    /* kafka_producer_conf retries a transaction's requests after 10 ms: they are refused
     * (CONCURRENT_TRANSACTIONS) until the broker has written the previous one's markers,
     * typically 5-50 ms here, and librdkafka's default 100 ms added that much to most commits
     * (docs/engine.md). */
    conf = kafka_producer_conf(cfg, NULL, txid,
                               (int)config_get_int(cfg, "engine.transaction_timeout_ms"), errstr,
                               errstr_size);
    if (!conf)
        goto err;
    rd_kafka_conf_set_dr_msg_cb(conf, engine__on_delivery);
    rd_kafka_conf_set_opaque(conf, eng);
    eng->producer = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, errstr_size);
    if (!eng->producer)
        goto err;
    conf = NULL; /* now owned by the producer */
    if (kafka_init_transactions(eng->producer, ENGINE_TXN_TIMEOUT_MS, errstr, errstr_size))
        goto err;

    /* The consumer: static membership under the same instance name, prefetch bounded by bytes
     * and by count (kafka_consumer_conf; docs/engine.md, "Memory"). */
    conf = kafka_consumer_conf(cfg, NULL, config_get(cfg, "engine.group"), eng->instance, 0, errstr,
                               errstr_size);
    if (!conf)
        goto err;
    rd_kafka_conf_set_rebalance_cb(conf, engine__on_rebalance);
    rd_kafka_conf_set_opaque(conf, eng);
    eng->consumer = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, errstr_size);
    if (!eng->consumer)
        goto err;
    conf = NULL; /* now owned by the consumer */
    rd_kafka_poll_set_consumer(eng->consumer);
    eng->consumer_queue = rd_kafka_queue_get_consumer(eng->consumer);
    return eng;
err:
    if (conf)
        rd_kafka_conf_destroy(conf);
    engine_destroy(eng);
    return NULL;
}

static void engine__on_rules_notice(redis_async_t *ra, const char *channel, const char *message,
                                    size_t len, void *arg)
{
    engine_t *eng = arg;
    (void)ra;
    (void)channel;
    log_info("rule set %.*s activated: checking now", (int)len, message);
    eng->next_rules_ms = 0; /* the cron, within ENGINE_CRON_MS */
}

static void engine__on_notices_state(redis_async_t *ra, int connected, void *arg)
{
    engine_t *eng = arg;
    char chan[256];
    if (!connected)
        return; /* the periodic check covers the gap; we subscribe again on reconnect */
    snprintf(chan, sizeof(chan), "%srules:activated", store_prefix(eng->store));
    if (redis_async_subscribe(ra, chan, engine__on_rules_notice, eng))
        log_warn("cannot subscribe to %s; relying on the periodic check", chan);
}

int engine_start(engine_t *eng)
{
    char err[512];
    eng->notices = redis_async_create(eng->loop, config_get(eng->cfg, "redis.url"),
                                      engine__on_notices_state, eng, err, sizeof(err));
    if (!eng->notices)
        log_warn("no rule-set notices (%s); relying on the periodic check", err);
    eng->bridge = kafka_uv_create(eng->loop, eng->consumer_queue, engine__on_consumer_ready, eng);
    if (!eng->bridge || uv_timer_init(eng->loop, &eng->cron))
        return -1;
    eng->cron.data = eng;
    eng->cron_started = 1;
    return uv_timer_start(&eng->cron, engine__on_cron, 0, ENGINE_CRON_MS);
}

static void engine__on_cron_closed(uv_handle_t *h)
{
    engine_t *eng = h->data;
    if (eng->on_stopped)
        eng->on_stopped(eng->on_stopped_arg);
}

void engine_stop(engine_t *eng, void (*on_stopped)(void *arg), void *arg)
{
    eng->on_stopped = on_stopped;
    eng->on_stopped_arg = arg;
    eng->stopping = 1; /* engine__process_batch takes no more records */
    if (!eng->failed)
        engine__process_batch(eng, 1); /* finish what was collected */
    else
        (void)engine__commit_finish(eng, 0); /* a commit may still be running: its outcome */
    engine__drop_batch(eng);
    (void)engine__settle_redis(eng);
    log_info("stopping: %llu events in %llu transactions (%llu aborted), %llu actions, "
             "%llu dead letters, %llu lapses, %llu recoveries",
             (unsigned long long)eng->stats.events, (unsigned long long)eng->stats.batches,
             (unsigned long long)eng->stats.aborts, (unsigned long long)eng->stats.actions,
             (unsigned long long)eng->stats.dead_letters, (unsigned long long)eng->stats.lapses,
             (unsigned long long)eng->stats.recoveries);
    if (eng->consumer)
        rd_kafka_consumer_close(eng->consumer); /* leaves the group (revoke callback runs) */
    if (eng->producer)
        rd_kafka_flush(eng->producer, 5000);
    if (eng->bridge) {
        kafka_uv_destroy(eng->bridge);
        eng->bridge = NULL;
    }
    if (eng->notices) {
        redis_async_destroy(eng->notices);
        eng->notices = NULL;
    }
    if (eng->cron_started) {
        uv_timer_stop(&eng->cron);
        uv_close((uv_handle_t *)&eng->cron, engine__on_cron_closed);
        eng->cron_started = 0;
    } else if (on_stopped) {
        on_stopped(arg);
    }
}

void engine_destroy(engine_t *eng)
{
    if (!eng)
        return;
    engine__drop_batch(eng);
    free(eng->items);
    engine__drop_items(eng->fl.items, &eng->fl.n_items);
    free(eng->fl.items);
    engine__free_packed(eng->fl.subjects, eng->fl.n_subjects);
    free(eng->fl.subjects);
    engine__free_packed(eng->subjects, eng->n_subjects);
    engine__outbox_drop(eng->out, &eng->n_out);
    free(eng->out);
    engine__outbox_drop(eng->fl.out, &eng->fl.n_out);
    free(eng->fl.out);
    if (eng->fl.offsets)
        rd_kafka_topic_partition_list_destroy(eng->fl.offsets);
    if (eng->fl.cgmd)
        rd_kafka_consumer_group_metadata_destroy(eng->fl.cgmd);
    if (eng->consumer_queue)
        rd_kafka_queue_destroy(eng->consumer_queue);
    if (eng->consumer)
        rd_kafka_destroy(eng->consumer);
    engine__drop_topics(eng);
    if (eng->producer)
        rd_kafka_destroy(eng->producer);
    store_destroy(eng->store);
    rules_destroy(eng->rules);
    cache_clear(&eng->cache);
    free(eng->cache.buckets);
    free(eng->subjects);
    free(eng->owned);
    free(eng);
}

int engine_failed(const engine_t *eng)
{
    return eng->failed;
}

void engine_get_stats(const engine_t *eng, engine_stats_t *out)
{
    *out = eng->stats;
    out->partitions = eng->n_owned;
}

const char *engine_not_ready(const engine_t *eng)
{
    if (eng->failed)
        return "a fatal error: the process is exiting";
    if (eng->stopping)
        return "stopping";
    if (!eng->rules)
        return "no rule set is active (jrpctl rules load)";
    if (!store_redis(eng->store))
        return "Redis is unreachable";
    if (eng->needs_recovery)
        return "bringing Redis up to date from the state changelog";
    if (!eng->subscribed)
        return "not consuming yet";
    /* An engine with no partitions (more engines than partitions) is a ready standby. */
    return NULL;
}

void engine_write_metrics(const engine_t *eng, ops_text_t *t)
{
    engine_stats_t st;
    engine_get_stats(eng, &st);
    ops_counter(t, "jrp_engine_events_total", "Events processed and committed.", st.events);
    ops_counter(t, "jrp_engine_actions_total", "Department actions committed.", st.actions);
    ops_counter(t, "jrp_engine_duplicates_total", "Events decided DUPLICATE.", st.duplicates);
    ops_counter(t, "jrp_engine_dead_letters_total", "Records sent to the dead-letter topic.",
                st.dead_letters);
    ops_counter(t, "jrp_engine_lapses_total", "Listings lifted at valid_until.", st.lapses);
    ops_counter(t, "jrp_engine_escalations_total", "Derived listings emitted.", st.escalations);
    ops_counter(t, "jrp_engine_transactions_total", "Transactions committed.", st.batches);
    ops_counter(t, "jrp_engine_aborts_total", "Transactions aborted and redone.", st.aborts);
    ops_counter(t, "jrp_engine_recoveries_total", "Times Redis was rebuilt from credit.state.",
                st.recoveries);
    ops_counter(t, "jrp_engine_rules_swaps_total", "Rule sets activated while running.",
                st.rules_swaps);
    ops_gauge(t, "jrp_engine_rules_version", "The rule-set version in force.",
              (double)st.rules_version);
    ops_gauge(t, "jrp_engine_partitions", "Partitions of the events topic owned now.",
              (double)st.partitions);
    ops_gauge(t, "jrp_engine_ready", "1 when /readyz answers 200.", engine_not_ready(eng) ? 0 : 1);
    ops_family(t, "jrp_engine_batch_seconds", "histogram",
               "From a batch's first record to its committed transaction.");
    ops_histogram_write(t, "jrp_engine_batch_seconds", NULL, &st.batch_seconds);
    static const char *const stages[] = {"stage=\"decide\"", "stage=\"commit\"", "stage=\"redis\""};
    ops_family(t, "jrp_engine_stage_seconds", "histogram",
               "Time of a batch's stages: deciding (decode, Redis load, rules, produce), "
               "committing the transaction, writing Redis after it.");
    for (size_t i = 0; i < sizeof(stages) / sizeof(*stages); i++)
        ops_histogram_write(t, "jrp_engine_stage_seconds", stages[i], &st.stage_seconds[i]);
}
