/*
 * jrpctl replay: re-decide a period from the topics, in memory, and compare with what was
 * recorded. Nothing is written anywhere (no Redis, no topic): it is the auditors' tool.
 *
 * The engine's decisions depend on each subject's history, so the replay rebuilds every
 * subject's state from the start of credit.events (as far as retention keeps it) and compares
 * only the events whose record time falls in [from, to). Each subject's recorded decisions (on
 * credit.decisions, in the order the engine committed them) say where listings lapsed without an
 * event; the replay lifts them at the same points. Every event is matched against the rule-set
 * version its recorded decision names, or the one given (--rules V: "what would this version
 * have done"), or the newest version created before the event occurred (--rules-as-of-event).
 * Action ids are deterministic, so a difference in outcome or in the set of action ids is a
 * difference in what departments were told to do.
 */
#include <errno.h>
#include <stddef.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "codec.h"
#include "ctl.h"
#include "errlist.h"
#include "grow.h"
#include "hash.h"
#include "ids.h"
#include "jrp/v1/action.pb-c.h"
#include "jrp/v1/decision.pb-c.h"
#include "jrp/v1/event.pb-c.h"
#include "jrp/v1/rules.pb-c.h"
#include "jrp/v1/state.pb-c.h"
#include "kafka.h"
#include "report.h"
#include "rules.h"
#include "store.h"

#define REPLAY_CONNECT_MS 15000
#define REPLAY_POLL_MS 500
#define REPLAY_SHOWN_MAX 50 /* differences printed on stdout; --out has them all */
#define REPLAY_THREADS_MAX 16
#define REPLAY_QUEUE 4096 /* records waiting per worker */

#define RP_BATCH 1024 /* records taken from the reader at once */
#define RP_STAGE 256  /* records the reader gathers for a worker before queueing them */

enum { RP_DECISIONS, RP_EVENTS, RP_FINISH };

/* ---- arenas: 1 MB blocks, freed together -------------------------------------------------------
 *
 * The recorded decisions' ids and the subjects' keys live in one as long as the replay (one
 * malloc per block instead of three per decision); a record being decoded lives in another,
 * emptied after each record (rp_scratch_t).
 */

#define RP_ARENA_BLOCK (1u << 20)

typedef struct rp_arena_s {
    char *cur;
    size_t left;
    char **blocks;
    size_t n_blocks, cap_blocks;
} rp_arena_t;

/* Room for len bytes; NULL without memory. */
static char *rp_arena_alloc(rp_arena_t *a, size_t len)
{
    if (len > a->left) {
        size_t size = len > RP_ARENA_BLOCK ? len : RP_ARENA_BLOCK;
        char **b = grow(a->blocks, &a->cap_blocks, a->n_blocks, sizeof(*b), 16);
        if (!b)
            return NULL;
        a->blocks = b;
        if (!(a->cur = malloc(size)))
            return NULL;
        a->blocks[a->n_blocks++] = a->cur;
        a->left = size;
    }
    char *p = a->cur;
    a->cur += len;
    a->left -= len;
    return p;
}

static char *rp_arena_strdup(rp_arena_t *a, const char *s)
{
    size_t len = strlen(s) + 1;
    char *p = rp_arena_alloc(a, len);
    return p ? memcpy(p, s, len) : NULL;
}

static void rp_arena_free(rp_arena_t *a)
{
    for (size_t i = 0; i < a->n_blocks; i++)
        free(a->blocks[i]);
    free(a->blocks);
    memset(a, 0, sizeof(*a));
}

/* Empty again, keeping the first block for what comes next. */
static void rp_arena_reset(rp_arena_t *a)
{
    for (size_t i = 1; i < a->n_blocks; i++)
        free(a->blocks[i]);
    if (a->n_blocks) {
        a->n_blocks = 1;
        a->cur = a->blocks[0];
        a->left = RP_ARENA_BLOCK; /* a first block is never smaller */
    }
}

/* ---- scratch memory for one record's decoding -------------------------------------------------
 *
 * A record is decoded only to copy a few fields out: protobuf-c allocates its parts from an
 * arena of their own, and the whole is dropped at once (rp_arena_reset) instead of freed part by
 * part.
 */

typedef struct rp_scratch_s {
    ProtobufCAllocator allocator;
    rp_arena_t mem; /* only whole max_align_t units are taken from it: every part is aligned */
} rp_scratch_t;

static void *rp_scratch_alloc(void *data, size_t size)
{
    rp_scratch_t *sc = data;
    return rp_arena_alloc(&sc->mem, (size + sizeof(max_align_t) - 1) & ~(sizeof(max_align_t) - 1));
}

static void rp_scratch_free(void *data, void *p)
{
    (void)data, (void)p; /* all of it at the reset */
}

static void rp_scratch_init(rp_scratch_t *sc)
{
    memset(sc, 0, sizeof(*sc));
    sc->allocator = (ProtobufCAllocator){rp_scratch_alloc, rp_scratch_free, sc};
}

/* ---- a hash map (open addressing, grows at 1/2 full) ----------------------------------------
 *
 * Keyed either by a string (not copied: it must outlive the map; hash compared first) or by a
 * non-zero number that is the whole key (an event's position): the subjects by key, and the
 * decisions by their event.
 */

typedef struct rp_map_entry_s {
    uint64_t hash;   /* 0: an empty slot */
    const char *key; /* NULL when hash is the whole key */
    size_t value;
} rp_map_entry_t;

typedef struct rp_map_s {
    rp_map_entry_t *e;
    size_t cap, n;
} rp_map_t;

/* A string key's hash, never 0. */
static uint64_t rp_hash(const char *s)
{
    uint64_t h = hash_str(HASH_SEED, s);
    return h ? h : 1;
}

/* An event's place in its topic as one number (never 0): partition and offset. */
static uint64_t rp_pos(int32_t partition, int64_t offset)
{
    return ((uint64_t)(uint32_t)partition << 48 | ((uint64_t)offset & 0xffffffffffffULL)) + 1;
}

static size_t rp_map_slot(const rp_map_t *m, uint64_t hash, const char *key)
{
    size_t i = (size_t)((hash * 0x9e3779b97f4a7c15ULL) >> 20) & (m->cap - 1);
    while (m->e[i].hash && (m->e[i].hash != hash || (key && strcmp(m->e[i].key, key))))
        i = (i + 1) & (m->cap - 1);
    return i;
}

/* The value at (hash, key), or SIZE_MAX; key NULL when hash is the whole key. */
static size_t rp_map_get(const rp_map_t *m, uint64_t hash, const char *key)
{
    if (!m->cap)
        return SIZE_MAX;
    size_t i = rp_map_slot(m, hash, key);
    return m->e[i].hash ? m->e[i].value : SIZE_MAX;
}

/* Make room for at least n entries. 0 or -1. */
static int rp_map_reserve(rp_map_t *m, size_t n)
{
    if (n * 2 <= m->cap)
        return 0;
    rp_map_t b = {.cap = m->cap ? m->cap : 4096};
    while (n * 2 > b.cap)
        b.cap *= 2;
    /* Written, not calloc'ed: a table read before it is written maps the zero page first, and
     * replacing it costs every thread's processor a TLB flush. */
    if (!(b.e = malloc(b.cap * sizeof(*b.e))))
        return -1;
    memset(b.e, 0, b.cap * sizeof(*b.e));
    for (size_t i = 0; i < m->cap; i++)
        if (m->e[i].hash)
            b.e[rp_map_slot(&b, m->e[i].hash, m->e[i].key)] = m->e[i];
    b.n = m->n;
    free(m->e);
    *m = b;
    return 0;
}

/* Insert or overwrite (a key is kept, not copied). 0 or -1. */
static int rp_map_put(rp_map_t *m, uint64_t hash, const char *key, size_t value)
{
    if (rp_map_reserve(m, m->n + 1))
        return -1;
    size_t i = rp_map_slot(m, hash, key);
    if (!m->e[i].hash) {
        m->e[i].key = key;
        m->e[i].hash = hash;
        m->n++;
    }
    m->e[i].value = value;
    return 0;
}

static void rp_map_free(rp_map_t *m)
{
    free(m->e);
    memset(m, 0, sizeof(*m));
}

/* ---- what was recorded ------------------------------------------------------------------------
 */

typedef struct rp_decision_s {
    const char *event_id; /* in the shard's arena, as are actions and the subjects' keys */
    int32_t partition;    /* of the event; -1 for a lapse */
    int64_t offset;
    int64_t processed_at_ms;
    int64_t version;
    int outcome;
    const char *actions; /* the action ids, sorted, joined by ',' */
    size_t subject;      /* index into subjects */
} rp_decision_t;

typedef struct rp_subject_s {
    const char *key;
    Jrp__V1__SubjectState *st;
    size_t *decisions; /* indexes into decisions, in recorded order */
    size_t n_decisions, cap_decisions;
    size_t cursor; /* decisions before it are accounted for */
} rp_subject_t;

/* What one worker owns: the subjects whose keys hash to it, and their recorded decisions. A
 * subject's decisions and events go to the same worker, so nothing here is shared. */
typedef struct rp_shard_s {
    rp_decision_t *decisions;
    size_t n_decisions, cap_decisions;
    rp_map_t by_source; /* an event's partition and offset -> its decision */
    rp_subject_t *subjects;
    size_t n_subjects, cap_subjects;
    rp_map_t by_key; /* subject key -> subject */
    rp_arena_t strings;
    rp_scratch_t scratch; /* for decoding (its allocator points here: shards never move) */
} rp_shard_t;

typedef struct rp_rules_s {
    int64_t version;
    int64_t created_at_ms;
    rules_t *rules; /* compiled on first use */
    int failed;     /* it could not be had (said once) */
} rp_rules_t;

typedef struct replay_s {
    config_t *cfg;
    int64_t from_ms, to_ms;
    int64_t rules_override; /* 0: the recorded version */
    int as_of_event;
    const char *subject_filter;
    FILE *out;

    store_t *store;
    rp_rules_t *versions;
    size_t n_versions;
    rules_match_opts_t opts;

    rp_shard_t *shards; /* one per thread, by the hash of the subject's key */

    /* Counts (the workers add to them). */
    _Atomic uint64_t events_read, compared, matching, differing, lapses_compared;
    _Atomic uint64_t alt_compared, alt_matching, alt_differing; /* --rules / -as-of-event */
    _Atomic int failed;                                         /* a worker failed: stop */

    /* Shared by the workers: the rule sets (compiled on first use), what is printed and
     * written (--out), and the progress line. Everything else they read was built before
     * they started, or is in their own shard. */
    pthread_mutex_t lock;
    uint64_t shown;
    uint64_t last_progress_ms;
    int threads;                 /* --threads; as many shards */
    struct rp_worker_s *workers; /* threads > 1: the records are shared out by subject */
    int phase;                   /* what the workers do: RP_DECISIONS, RP_EVENTS, RP_FINISH */
} replay_t;

static int64_t rp_now_ms(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

static int rp_cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The ids sorted (a copy of the pointers in sorted, room for n, or NULL to allocate it);
 * returns sorted or NULL without memory. */
static const char **rp_sort_ids(char *const *ids, size_t n, const char **sorted)
{
    if (!sorted && !(sorted = malloc((n ? n : 1) * sizeof(*sorted))))
        return NULL;
    if (n) { /* ids may be NULL then */
        memcpy(sorted, ids, n * sizeof(*ids));
        qsort(sorted, n, sizeof(*sorted), rp_cmp_str);
    }
    return sorted;
}

#define RP_IDS_ON_STACK 64

/* The ids sorted and joined by ',', in the arena (NULL: malloc); NULL without memory. */
static char *rp_join_sorted(rp_arena_t *a, char *const *ids, size_t n)
{
    const char *stack[RP_IDS_ON_STACK];
    const char **sorted = rp_sort_ids(ids, n, n <= RP_IDS_ON_STACK ? stack : NULL);
    if (!sorted)
        return NULL;
    size_t len = 1;
    for (size_t i = 0; i < n; i++)
        len += strlen(sorted[i]) + 1;
    char *s = a ? rp_arena_alloc(a, len) : malloc(len), *p = s;
    if (s) {
        for (size_t i = 0; i < n; i++) {
            size_t l = strlen(sorted[i]);
            if (i)
                *p++ = ',';
            memcpy(p, sorted[i], l);
            p += l;
        }
        *p = '\0';
    }
    if (sorted != stack)
        free(sorted);
    return s;
}

/* Is joined (rp_join_sorted's form) the same set of ids? 1, 0, or -1 without memory. */
static int rp_same_ids(const char *joined, char *const *ids, size_t n)
{
    const char *stack[RP_IDS_ON_STACK];
    const char **sorted = rp_sort_ids(ids, n, n <= RP_IDS_ON_STACK ? stack : NULL);
    if (!sorted)
        return -1;
    const char *p = joined;
    int same = 1;
    for (size_t i = 0; i < n && same; i++) {
        size_t l = strlen(sorted[i]);
        same = !strncmp(p, sorted[i], l) && p[l] == (i + 1 < n ? ',' : '\0');
        p += l + 1;
    }
    if (!n)
        same = !*joined;
    if (sorted != stack)
        free(sorted);
    return same;
}

static const char *rp_outcome_name(int outcome)
{
    const ProtobufCEnumValue *v =
        protobuf_c_enum_descriptor_get_value(&jrp__v1__decision_outcome__descriptor, outcome);
    return v ? v->name : "DECISION_OUTCOME_UNSPECIFIED";
}

static size_t rp_subject(rp_shard_t *sh, const char *key)
{
    size_t i = rp_map_get(&sh->by_key, rp_hash(key), key);
    if (i != SIZE_MAX)
        return i;
    rp_subject_t *grown =
        grow(sh->subjects, &sh->cap_subjects, sh->n_subjects, sizeof(*grown), 1024);
    if (!grown)
        return SIZE_MAX;
    sh->subjects = grown;
    rp_subject_t *s = &sh->subjects[sh->n_subjects];
    memset(s, 0, sizeof(*s));
    s->key = rp_arena_strdup(&sh->strings, key);
    s->st = malloc(sizeof(*s->st));
    if (!s->key || !s->st || rp_map_put(&sh->by_key, rp_hash(key), s->key, sh->n_subjects)) {
        free(s->st);
        return SIZE_MAX;
    }
    jrp__v1__subject_state__init(s->st);
    return sh->n_subjects++;
}

/* ---- reading a topic to its end ------------------------------------------------------------- */

/* Called per record; returns 0 (done with it), 1 (kept: it destroys the record) or -1. */
typedef int rp_record_fn(replay_t *rp, rd_kafka_message_t *m);
/* Called once the records are read, before the reader closes (the kept ones must be gone). */
typedef int rp_end_fn(replay_t *rp);

/* A topic being read from the beginning to a fixed end. */
typedef struct rp_reader_s {
    rd_kafka_t *rk;
    char topic[256];
    int32_t n_parts;
    int64_t *end;   /* per partition: the offset to stop before */
    int64_t *start; /* and the low watermark, where it starts */
} rp_reader_t;

static void rp_reader_close(rp_reader_t *r)
{
    if (r->rk) {
        rd_kafka_consumer_close(r->rk);
        rd_kafka_destroy(r->rk);
    }
    free(r->end);
    free(r->start);
    memset(r, 0, sizeof(*r));
}

/*
 * Start reading every partition of topic from the beginning up to (not including) the offset of
 * the first record at or after until_ms (0: to the end as of now). The reader fetches ahead from
 * here on (rp_reader_run hands the records over). 0, or -1 having said why.
 */
static int rp_reader_open(replay_t *rp, rp_reader_t *r, const char *topic, int64_t until_ms)
{
    char err[512];
    memset(r, 0, sizeof(*r));
    snprintf(r->topic, sizeof(r->topic), "%s", topic);
    r->rk = kafka_reader_create(rp->cfg, err, sizeof(err));
    if (!r->rk)
        return ctl_fail("cannot create a Kafka reader: %s", err);
    int rc = -1;
    const rd_kafka_metadata_t *md = NULL;
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(r->rk, topic, NULL);
    rd_kafka_resp_err_t kerr = rd_kafka_metadata(r->rk, 0, rkt, &md, REPLAY_CONNECT_MS);
    rd_kafka_topic_destroy(rkt);
    rd_kafka_topic_partition_list_t *parts = NULL;
    if (kerr || md->topic_cnt != 1 || md->topics[0].err || md->topics[0].partition_cnt <= 0) {
        ctl_fail("topic %s: %s", topic,
                 kerr ? rd_kafka_err2str(kerr)
                      : rd_kafka_err2str(md->topic_cnt ? md->topics[0].err
                                                       : RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC));
        goto done;
    }
    r->n_parts = md->topics[0].partition_cnt;
    r->end = calloc((size_t)r->n_parts, sizeof(*r->end));
    r->start = calloc((size_t)r->n_parts, sizeof(*r->start));
    parts = rd_kafka_topic_partition_list_new(r->n_parts);
    if (!r->end || !r->start || !parts) {
        ctl_fail("out of memory");
        goto done;
    }
    /* Where to stop: the high watermark now, or the first offset at until_ms. */
    for (int32_t p = 0; p < r->n_parts; p++) {
        int64_t lo = 0, hi = 0;
        kerr = kafka_watermarks(r->rk, topic, p, &lo, &hi, REPLAY_CONNECT_MS);
        if (kerr) {
            ctl_fail("watermarks of %s [%d]: %s", topic, (int)p, rd_kafka_err2str(kerr));
            goto done;
        }
        r->end[p] = hi;
        r->start[p] = lo;
        rd_kafka_topic_partition_list_add(parts, topic, p)->offset = until_ms ? until_ms : 0;
    }
    if (until_ms) {
        kerr = rd_kafka_offsets_for_times(r->rk, parts, REPLAY_CONNECT_MS);
        if (kerr) {
            ctl_fail("looking up offsets at %lld on %s: %s", (long long)until_ms, topic,
                     rd_kafka_err2str(kerr));
            goto done;
        }
        for (int i = 0; i < parts->cnt; i++)
            if (parts->elems[i].offset >= 0 && parts->elems[i].offset < r->end[i])
                r->end[i] = parts->elems[i].offset;
    }
    for (int i = 0; i < parts->cnt; i++) /* explicit: a logical offset waits (kafka.h) */
        parts->elems[i].offset = r->start[i];
    if ((kerr = rd_kafka_assign(r->rk, parts))) {
        ctl_fail("cannot read %s: %s", topic, rd_kafka_err2str(kerr));
        goto done;
    }
    rc = 0;
done:
    if (md)
        rd_kafka_metadata_destroy(md);
    if (parts)
        rd_kafka_topic_partition_list_destroy(parts);
    if (rc)
        rp_reader_close(r);
    return rc;
}

static void rp_flush(replay_t *rp);

/* Hand every record up to the end to fn, then call end_fn; 0, or 1 when it failed. The records
 * are taken in batches; queued for workers, they are handed over after each batch. */
static int rp_reader_run(replay_t *rp, rp_reader_t *r, rp_record_fn *fn, rp_end_fn *end_fn)
{
    int32_t n_parts = r->n_parts, open = 0;
    const int64_t *end = r->end;
    char *finished = calloc((size_t)n_parts, 1);
    rd_kafka_message_t **batch = malloc(RP_BATCH * sizeof(*batch));
    rd_kafka_queue_t *q = rd_kafka_queue_get_consumer(r->rk);
    int failed = 0;
    if (!finished || !batch || !q) {
        ctl_fail("out of memory");
        failed = 1;
    }
    for (int32_t p = 0; !failed && p < n_parts; p++) {
        finished[p] = end[p] <= 0;
        open += end[p] > 0;
    }
    while (open > 0 && !failed && !rp->failed) {
        /* What is there now, or else wait for one (a batch waits until it is full). */
        ssize_t k = rd_kafka_consume_batch_queue(q, 0, batch, RP_BATCH);
        if (k == 0 && (batch[0] = rd_kafka_consumer_poll(r->rk, REPLAY_POLL_MS)))
            k = 1;
        if (k < 0) {
            ctl_fail("reading %s: %s", r->topic, rd_kafka_err2str(rd_kafka_last_error()));
            failed = 1;
        }
        for (ssize_t i = 0; i < k; i++) {
            rd_kafka_message_t *m = batch[i];
            int32_t p = m->partition;
            int kept = 0;
            if (failed || rp->failed) {
                /* only released */
            } else if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
                /* read_committed: the end may lie before the high watermark (an open or
                 * aborted transaction's records, commit markers). */
                if (p >= 0 && p < n_parts && !finished[p] && m->offset >= end[p] - 1) {
                    finished[p] = 1;
                    open--;
                }
            } else if (m->err) {
                ctl_fail("reading %s: %s", r->topic, rd_kafka_message_errstr(m));
                failed = 1;
            } else if (p >= 0 && p < n_parts && !finished[p]) {
                if (m->offset >= end[p]) {
                    finished[p] = 1;
                    open--;
                } else {
                    int last = m->offset >= end[p] - 1;
                    int res = fn(rp, m); /* m is not to be touched once kept */
                    failed = res < 0;
                    kept = res == 1;
                    if (last) {
                        finished[p] = 1;
                        open--;
                    }
                }
            }
            if (!kept)
                rd_kafka_message_destroy(m);
        }
        rp_flush(rp);
    }
    if (q)
        rd_kafka_queue_destroy(q);
    free(batch);
    free(finished);
    if (end_fn && end_fn(rp))
        failed = 1;
    return failed || rp->failed;
}

static int rp_on_decision(replay_t *rp, rp_shard_t *sh, const rd_kafka_message_t *m)
{
    char key[512];
    snprintf(key, sizeof(key), "%.*s", m->key ? (int)m->key_len : 0,
             m->key ? (const char *)m->key : "");
    if (rp->subject_filter && strcmp(key, rp->subject_filter))
        return 0;
    Jrp__V1__Decision *d = jrp__v1__decision__unpack(&sh->scratch.allocator, m->len, m->payload);
    if (!d) { /* not ours to judge here: the topic is written by the engine only */
        rp_arena_reset(&sh->scratch.mem);
        return 0;
    }
    int rc = -1;
    rp_decision_t *decisions =
        grow(sh->decisions, &sh->cap_decisions, sh->n_decisions, sizeof(*decisions), 4096);
    if (!decisions)
        goto done;
    sh->decisions = decisions;
    size_t si = rp_subject(sh, key);
    if (si == SIZE_MAX)
        goto done;
    rp_decision_t *x = &sh->decisions[sh->n_decisions];
    x->event_id = rp_arena_strdup(&sh->strings, d->event_id);
    x->actions = rp_join_sorted(&sh->strings, d->action_ids, d->n_action_ids);
    x->partition = d->source_partition;
    x->offset = d->source_offset;
    x->processed_at_ms = d->processed_at_ms;
    x->version = d->ruleset_version;
    x->outcome = d->outcome;
    x->subject = si;
    if (!x->event_id || !x->actions)
        goto done;
    rp_subject_t *s = &sh->subjects[si];
    size_t *indexes = grow(s->decisions, &s->cap_decisions, s->n_decisions, sizeof(*indexes), 4);
    if (!indexes)
        goto done;
    s->decisions = indexes;
    s->decisions[s->n_decisions++] = sh->n_decisions;
    if (x->partition >= 0 &&
        rp_map_put(&sh->by_source, rp_pos(x->partition, x->offset), NULL, sh->n_decisions))
        goto done;
    sh->n_decisions++;
    rc = 0;
done:
    rp_arena_reset(&sh->scratch.mem);
    if (rc)
        ctl_fail("out of memory reading the decisions");
    return rc;
}

/* ---- rule sets --------------------------------------------------------------------------------
 */

static int rp_load_versions(replay_t *rp)
{
    char err[512];
    int64_t *versions = NULL;
    size_t n = 0;
    if (store_rules_versions(rp->store, &versions, &n, err, sizeof(err)))
        return ctl_fail("rule-set versions: %s", err);
    rp->versions = calloc(n ? n : 1, sizeof(*rp->versions));
    if (!rp->versions) {
        free(versions);
        return ctl_fail("out of memory");
    }
    for (size_t i = 0; i < n; i++) {
        rp->versions[i].version = versions[i];
        if (rp->as_of_event) { /* their creation times decide; otherwise compile on demand */
            Jrp__V1__RuleSet *rs = NULL;
            int got = store_rules_get(rp->store, versions[i], &rs, err, sizeof(err));
            if (got) {
                free(versions);
                return ctl_fail("rule set version %lld: %s", (long long)versions[i],
                                got == 1 ? "listed but not stored (jrpctl rebuild restores rule "
                                           "sets from credit.rules)"
                                         : err);
            }
            rp->versions[i].created_at_ms = rs->created_at_ms;
            jrp__v1__rule_set__free_unpacked(rs, NULL);
        }
    }
    rp->n_versions = n;
    free(versions);
    return 0;
}

/* The compiled rules of version; NULL (having said why) if it cannot be had. Under rp->lock. */
static const rules_t *rp_rules_locked(replay_t *rp, int64_t version)
{
    for (size_t i = 0; i < rp->n_versions; i++) {
        rp_rules_t *v = &rp->versions[i];
        if (v->version != version)
            continue;
        if (!v->rules && !v->failed) {
            char err[512] = "";
            Jrp__V1__RuleSet *rs = NULL;
            int got = store_rules_get(rp->store, version, &rs, err, sizeof(err));
            if (got == 1)
                ctl_fail("rule set version %lld is listed but not stored (jrpctl rebuild "
                         "restores rule sets from credit.rules)",
                         (long long)version);
            else if (got)
                ctl_fail("rule set version %lld: %s", (long long)version, err);
            else if (!(v->rules = rules_compile(rs, err, sizeof(err))))
                ctl_fail("rule set version %lld does not compile: %s", (long long)version, err);
            v->failed = !v->rules;
        }
        return v->rules;
    }
    ctl_fail("rule set version %lld is not stored (jrpctl rules list; jrpctl rebuild restores "
             "them from credit.rules)",
             (long long)version);
    return NULL;
}

static const rules_t *rp_rules(replay_t *rp, int64_t version)
{
    pthread_mutex_lock(&rp->lock);
    const rules_t *r = rp_rules_locked(rp, version);
    pthread_mutex_unlock(&rp->lock);
    return r;
}

/* The version to compare the record with for an event in the window (--rules V or
 * --rules-as-of-event); 0 when the recorded version is the one to use. */
static int64_t rp_alt_version(const replay_t *rp, int64_t occurred_ms)
{
    if (rp->rules_override)
        return rp->rules_override;
    if (rp->as_of_event) {
        int64_t best = 0, best_at = INT64_MIN;
        for (size_t i = 0; i < rp->n_versions; i++)
            if (rp->versions[i].created_at_ms <= occurred_ms &&
                rp->versions[i].created_at_ms >= best_at) {
                best = rp->versions[i].version;
                best_at = rp->versions[i].created_at_ms;
            }
        return best;
    }
    return 0;
}

/* ---- comparing --------------------------------------------------------------------------------
 */

static void rp_progress(replay_t *rp, int force)
{
    if (!force && (rp->events_read & 1023))
        return; /* the clock is read every 1024 events */
    int64_t now = rp_now_ms();
    pthread_mutex_lock(&rp->lock);
    if (force || now - (int64_t)rp->last_progress_ms >= 5000) {
        rp->last_progress_ms = (uint64_t)now;
        fprintf(stderr, "replay: %llu events read, %llu compared, %llu differing\n",
                (unsigned long long)rp->events_read, (unsigned long long)rp->compared,
                (unsigned long long)rp->differing);
    }
    pthread_mutex_unlock(&rp->lock);
}

/* "OP department/MEASURE id" of each action, joined by "; ". */
static char *rp_describe(const rules_result_t *res)
{
    size_t len = 1;
    for (size_t i = 0; i < res->n_actions; i++)
        len += strlen(res->actions[i]->department) + strlen(res->actions[i]->measure_code) +
               strlen(res->actions[i]->action_id) + 16;
    char *s = malloc(len), *p = s;
    if (!s)
        return NULL;
    *p = '\0';
    for (size_t i = 0; i < res->n_actions; i++) {
        const Jrp__V1__Action *a = res->actions[i];
        p += sprintf(p, "%s%s %s/%s %s", i ? "; " : "",
                     a->op == JRP__V1__ACTION_OP__ACTION_OP_REVOKE ? "REVOKE" : "APPLY",
                     a->department, a->measure_code, a->action_id);
    }
    return s;
}

/* Compare one replayed decision with the recorded one (d may be NULL: none recorded). */
static int rp_compare(replay_t *rp, const char *event_id, const char *key, int32_t partition,
                      int64_t offset, int64_t version, const rp_decision_t *d, int outcome,
                      const rules_result_t *res)
{
    char *stack[RP_IDS_ON_STACK] = {NULL}; /* (GCC cannot see that n == 0 reads none) */
    size_t n = res->n_actions;
    char **ids = n <= RP_IDS_ON_STACK ? stack : malloc(n * sizeof(*ids));
    if (!ids)
        return ctl_fail("out of memory");
    for (size_t i = 0; i < n; i++)
        ids[i] = res->actions[i]->action_id;
    int same = d && d->outcome == outcome ? rp_same_ids(d->actions, ids, n) : 0;
    char *mine = same ? NULL : rp_join_sorted(NULL, ids, n);
    if (ids != stack)
        free(ids);
    if (same < 0 || (!same && !mine))
        return ctl_fail("out of memory");
    rp->compared++;
    if (same) {
        rp->matching++;
        return 0;
    }
    rp->differing++;
    char *described = rp_describe(res);
    const char *rec_outcome = d ? rp_outcome_name(d->outcome) : "(no decision recorded)";
    pthread_mutex_lock(&rp->lock);
    if (rp->shown < REPLAY_SHOWN_MAX) {
        printf("differs: event %s of %s (%d:%lld), rule set %lld\n"
               "  recorded: %s [%s]\n"
               "  replayed: %s [%s]\n",
               event_id, key, (int)partition, (long long)offset, (long long)version, rec_outcome,
               d ? d->actions : "", rp_outcome_name(outcome), described ? described : "");
    } else if (rp->shown == REPLAY_SHOWN_MAX) {
        printf("(more differences: --out FILE lists them all)\n");
    }
    rp->shown++;
    if (rp->out) {
        json_t *j =
            json_pack("{s:s, s:s, s:i, s:I, s:I, s:s, s:s, s:s, s:s}", "event_id", event_id,
                      "subject", key, "partition", (int)partition, "offset", (json_int_t)offset,
                      "ruleset_version", (json_int_t)version, "recorded_outcome", rec_outcome,
                      "recorded_action_ids", d ? d->actions : "", "replayed_outcome",
                      rp_outcome_name(outcome), "replayed_actions", described ? described : "");
        if (j) {
            json_dumpf(j, rp->out, JSON_COMPACT | JSON_PRESERVE_ORDER);
            fputc('\n', rp->out);
            json_decref(j);
        }
    }
    pthread_mutex_unlock(&rp->lock);
    free(described);
    free(mine);
    return 0;
}

/* A deep copy of a state (packed and unpacked); NULL without memory. */
static Jrp__V1__SubjectState *rp_state_copy(const Jrp__V1__SubjectState *st)
{
    size_t len = jrp__v1__subject_state__get_packed_size(st);
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf)
        return NULL;
    jrp__v1__subject_state__pack(st, buf);
    Jrp__V1__SubjectState *copy = jrp__v1__subject_state__unpack(NULL, len, buf);
    free(buf);
    return copy;
}

/* What the actions do, without their ids (which name the rule-set version): "OP
 * department/MEASURE memorandum trigger" sorted and joined by "; ". NULL without memory. */
static char *rp_signature(const rules_result_t *res)
{
    char **lines = calloc(res->n_actions ? res->n_actions : 1, sizeof(*lines));
    if (!lines)
        return NULL;
    size_t len = 1;
    int failed = 0;
    for (size_t i = 0; i < res->n_actions && !failed; i++) {
        const Jrp__V1__Action *a = res->actions[i];
        char line[1024];
        int n = snprintf(line, sizeof(line), "%s %s/%s %s %s%s%s%s",
                         a->op == JRP__V1__ACTION_OP__ACTION_OP_REVOKE ? "REVOKE" : "APPLY",
                         a->department, a->measure_code, a->memorandum_id,
                         a->list_code[0] ? a->list_code : "", a->grade_field[0] ? "grade:" : "",
                         a->grade_field, a->grade[0] ? "=" : "");
        size_t used = n < 0 ? 0 : (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1;
        snprintf(line + used, sizeof(line) - used, "%s", a->grade);
        lines[i] = strdup(line);
        failed = !lines[i];
        if (lines[i])
            len += strlen(lines[i]) + 2;
    }
    char *s = NULL;
    if (!failed) {
        qsort(lines, res->n_actions, sizeof(*lines), rp_cmp_str);
        s = malloc(len);
        if (s) {
            char *p = s;
            *p = '\0';
            for (size_t i = 0; i < res->n_actions; i++)
                p += sprintf(p, "%s%s", i ? "; " : "", lines[i]);
        }
    }
    for (size_t i = 0; i < res->n_actions; i++)
        free(lines[i]);
    free(lines);
    return s;
}

/* Compare what the recorded version decided (res) with what version alt would have. */
static int rp_compare_alt(replay_t *rp, const char *event_id, const char *key, int64_t version,
                          const rules_result_t *res, int64_t alt, const rules_result_t *alt_res)
{
    char *was = rp_signature(res), *would = rp_signature(alt_res);
    int rc = 0;
    if (!was || !would) {
        rc = ctl_fail("out of memory");
    } else {
        rp->alt_compared++;
        if (res->outcome == alt_res->outcome && !strcmp(was, would)) {
            rp->alt_matching++;
        } else {
            rp->alt_differing++;
            pthread_mutex_lock(&rp->lock);
            if (rp->shown < REPLAY_SHOWN_MAX)
                printf("would differ: event %s of %s\n"
                       "  version %lld (recorded): %s [%s]\n"
                       "  version %lld:            %s [%s]\n",
                       event_id, key, (long long)version, rp_outcome_name(res->outcome), was,
                       (long long)alt, rp_outcome_name(alt_res->outcome), would);
            else if (rp->shown == REPLAY_SHOWN_MAX)
                printf("(more differences: --out FILE lists them all)\n");
            rp->shown++;
            if (rp->out) {
                json_t *j = json_pack("{s:s, s:s, s:s, s:I, s:s, s:s, s:I, s:s, s:s}", "kind",
                                      "would_differ", "event_id", event_id, "subject", key,
                                      "recorded_version", (json_int_t)version, "recorded_outcome",
                                      rp_outcome_name(res->outcome), "recorded_actions", was,
                                      "version", (json_int_t)alt, "outcome",
                                      rp_outcome_name(alt_res->outcome), "actions", would);
                if (j) {
                    json_dumpf(j, rp->out, JSON_COMPACT | JSON_PRESERVE_ORDER);
                    fputc('\n', rp->out);
                    json_decref(j);
                }
            }
            pthread_mutex_unlock(&rp->lock);
        }
    }
    free(was);
    free(would);
    return rc;
}

/* Lift, as the engine's timer did, what lapsed at a recorded lapse decision. */
static int rp_lapse(replay_t *rp, rp_subject_t *s, const rp_decision_t *d)
{
    int in_window = d->processed_at_ms >= rp->from_ms && d->processed_at_ms < rp->to_ms;
    int64_t version = d->version;
    const rules_t *rules = rp_rules(rp, version);
    if (!rules)
        return -1;
    if (!s->st)
        return ctl_fail("internal error: the state of %s was released before its lapse", s->key);
    rules_result_t res;
    rules_result_init(&res);
    char lapse_id[80];
    int rc = 0;
    if (rules_lapse(rules, s->st, d->processed_at_ms, &res, lapse_id, sizeof(lapse_id)))
        rc = ctl_fail("out of memory replaying a lapse");
    else if (in_window) {
        rp->lapses_compared++;
        rc = rp_compare(rp, d->event_id, s->key, -1, -1, version, d, res.outcome, &res);
    }
    rules_result_clear(&res);
    return rc;
}

/* Account for the subject's recorded decisions before decision upto (SIZE_MAX: all). */
static int rp_catch_up(replay_t *rp, const rp_shard_t *sh, rp_subject_t *s, size_t upto)
{
    while (s->cursor < s->n_decisions && s->decisions[s->cursor] != upto) {
        const rp_decision_t *d = &sh->decisions[s->decisions[s->cursor++]];
        if (d->partition < 0 && rp_lapse(rp, s, d))
            return -1;
        /* An event decision not reached here: its event lies outside what is read (past --to,
         * or deleted by retention). */
    }
    if (s->cursor < s->n_decisions)
        s->cursor++; /* upto itself */
    return 0;
}

static int rp_on_event(replay_t *rp, rp_shard_t *sh, const rd_kafka_message_t *m)
{
    char key[512];
    snprintf(key, sizeof(key), "%.*s", m->key ? (int)m->key_len : 0,
             m->key ? (const char *)m->key : "");
    if (rp->subject_filter && strcmp(key, rp->subject_filter))
        return 0;
    rp->events_read++;
    rp_progress(rp, 0);
    rd_kafka_timestamp_type_t tstype;
    int64_t ts = rd_kafka_message_timestamp(m, &tstype);
    int in_window = ts >= rp->from_ms && ts < rp->to_ms;
    size_t di = rp_map_get(&sh->by_source, rp_pos(m->partition, m->offset), NULL);
    const rp_decision_t *d = di == SIZE_MAX ? NULL : &sh->decisions[di];
    /* The subject's state matters only for an event that was decided: the decision (recorded
     * under the event's key, so in this shard) names it. */
    rp_subject_t *s = d ? &sh->subjects[d->subject] : NULL;
    if (s && strcmp(s->key, key))
        d = NULL, s = NULL; /* not the engine's record of this event */
    if (d && rp_catch_up(rp, sh, s, di))
        return -1;

    /* What the engine does first: decode, validate, and check the key. */
    errlist_t el;
    errlist_init(&el);
    rp_arena_t *sc = &sh->scratch.mem; /* the event is decoded there */
    Jrp__V1__CreditEvent *ev =
        m->payload ? codec_event_unpack_with(&sh->scratch.allocator, m->payload, m->len, &el)
                   : NULL;
    errlist_clear(&el);
    char subject_key[512] = "";
    if (ev && (ids_subject_key((ids_subject_type_t)ev->subject->type, ev->subject->id, subject_key,
                               sizeof(subject_key)) < 0 ||
               strcmp(subject_key, key))) {
        rp_arena_reset(sc);
        ev = NULL;
    }
    rules_result_t res;
    rules_result_init(&res);
    int rc = 0;
    if (!ev) {
        if (in_window) {
            char eid[300];
            snprintf(eid, sizeof(eid), "dlq:%s:%d:%lld", rd_kafka_topic_name(m->rkt),
                     (int)m->partition, (long long)m->offset);
            rc = rp_compare(rp, eid, key, m->partition, m->offset, d ? d->version : 0, d,
                            JRP__V1__DECISION_OUTCOME__DECISION_OUTCOME_REJECTED, &res);
        }
        rules_result_clear(&res);
        return rc;
    }
    int64_t version = d ? d->version : 0;
    if (!version) {
        /* Never decided (the engine has not reached it yet), or decided without rules. */
        if (in_window)
            rc = rp_compare(rp, ev->event_id, key, m->partition, m->offset, 0, d,
                            JRP__V1__DECISION_OUTCOME__DECISION_OUTCOME_UNSPECIFIED, &res);
        rp_arena_reset(sc);
        return rc;
    }
    if (!s->st) {
        rp_arena_reset(sc);
        return ctl_fail("internal error: the state of %s was released before event %s", key,
                        d->event_id);
    }
    int64_t now = d->processed_at_ms;
    int64_t alt = in_window ? rp_alt_version(rp, ev->occurred_at_ms) : 0;
    const rules_t *alt_rules = NULL;
    Jrp__V1__SubjectState *before = NULL;
    if (alt && alt != version) {
        /* What version alt would have decided, given the subject's real history so far: on a
         * copy of the state as it was before the event. */
        if (!(alt_rules = rp_rules(rp, alt))) {
            rp_arena_reset(sc);
            return -1;
        }
        if (!(before = rp_state_copy(s->st))) {
            rp_arena_reset(sc);
            return ctl_fail("out of memory");
        }
    }
    const rules_t *rules = rp_rules(rp, version);
    if (!rules)
        rc = -1;
    else if (rules_match(rules, s->st, ev, now, &rp->opts, &res))
        rc = ctl_fail("out of memory matching event %s", ev->event_id);
    else {
        if (res.outcome != JRP__V1__DECISION_OUTCOME__DECISION_OUTCOME_DUPLICATE) {
            /* Escalations change the state's marks; the derived events they emitted are on
             * credit.events and are replayed there. */
            rules_escalation_out_t out = {0};
            if (rules_escalate(rules, s->st, now, &out))
                rc = ctl_fail("out of memory");
            rules_escalation_out_clear(&out);
        }
        if (!rc && in_window)
            rc = rp_compare(rp, ev->event_id, key, m->partition, m->offset, version, d, res.outcome,
                            &res);
    }
    if (!rc && before) {
        rules_result_t alt_res;
        rules_result_init(&alt_res);
        if (rules_match(alt_rules, before, ev, now, &rp->opts, &alt_res))
            rc = ctl_fail("out of memory matching event %s", ev->event_id);
        else
            rc = rp_compare_alt(rp, ev->event_id, key, version, &res, alt, &alt_res);
        rules_result_clear(&alt_res);
    }
    if (before)
        rules_state_free(before);
    rules_result_clear(&res);
    rp_arena_reset(sc);
    if (s && s->cursor == s->n_decisions && s->st) {
        /* Every decision recorded for the subject is accounted for: nothing will read its state
         * again. Released now, a long replay holds only the subjects still to come (on 200,000
         * events of 100,000 subjects: 700 MB -> half, and faster for the page faults saved). */
        rules_state_free(s->st);
        s->st = NULL;
    }
    return rc;
}

/* ---- workers: the records shared out by subject ------------------------------------------
 *
 * With --threads N > 1 the reader hands each record (first the decisions, then the events) to
 * the worker its key hashes to, so that one worker sees all of a subject's records, in the order
 * they were read (as a single thread would), and keeps them in its own shard.
 */

typedef struct rp_worker_s {
    replay_t *rp;
    rp_shard_t *shard;
    pthread_t thread;
    int started;
    pthread_mutex_t mu;
    pthread_cond_t cv; /* records arrived, room freed, or the end */
    rd_kafka_message_t *queue[REPLAY_QUEUE];
    size_t head, n;
    int closing;
    rd_kafka_message_t *stage[RP_STAGE]; /* the reader's, not queued yet */
    size_t n_stage;
} rp_worker_t;

static int rp_finish(replay_t *rp, rp_shard_t *sh);

static void *rp_worker_main(void *arg)
{
    rp_worker_t *w = arg;
    rd_kafka_message_t *batch[256];
    if (w->rp->phase == RP_FINISH) {
        if (rp_finish(w->rp, w->shard))
            w->rp->failed = 1;
        rules_thread_done();
        return NULL;
    }
    for (;;) {
        pthread_mutex_lock(&w->mu);
        while (!w->n && !w->closing)
            pthread_cond_wait(&w->cv, &w->mu);
        size_t k = 0;
        for (; w->n && k < sizeof(batch) / sizeof(batch[0]); k++) {
            batch[k] = w->queue[w->head];
            w->head = (w->head + 1) % REPLAY_QUEUE;
            w->n--;
        }
        pthread_cond_broadcast(&w->cv);
        pthread_mutex_unlock(&w->mu);
        if (!k)
            break; /* closing, and nothing left */
        for (size_t i = 0; i < k; i++) {
            /* After a failure the rest is only released. */
            if (!w->rp->failed &&
                (w->rp->phase == RP_DECISIONS ? rp_on_decision(w->rp, w->shard, batch[i])
                                              : rp_on_event(w->rp, w->shard, batch[i])))
                w->rp->failed = 1;
            rd_kafka_message_destroy(batch[i]);
        }
    }
    rules_thread_done();
    return NULL;
}

/* Queue what the reader gathered for w (one lock for many records). */
static void rp_worker_push(rp_worker_t *w)
{
    size_t k = 0;
    pthread_mutex_lock(&w->mu);
    while (k < w->n_stage) {
        while (w->n == REPLAY_QUEUE)
            pthread_cond_wait(&w->cv, &w->mu);
        int was_empty = !w->n;
        for (; k < w->n_stage && w->n < REPLAY_QUEUE; k++, w->n++)
            w->queue[(w->head + w->n) % REPLAY_QUEUE] = w->stage[k];
        if (was_empty)
            pthread_cond_broadcast(&w->cv);
    }
    pthread_mutex_unlock(&w->mu);
    w->n_stage = 0;
}

/* Queue every record gathered (after each batch read; no-op without workers). */
static void rp_flush(replay_t *rp)
{
    for (int i = 0; rp->workers && i < rp->threads; i++)
        if (rp->workers[i].started && rp->workers[i].n_stage)
            rp_worker_push(&rp->workers[i]);
}

/* rp_record_fn with workers: gather m for its subject's worker. */
static int rp_dispatch(replay_t *rp, rd_kafka_message_t *m)
{
    uint64_t h = m->key ? hash_bytes(HASH_SEED, m->key, m->key_len) : 0;
    rp_worker_t *w = &rp->workers[h % (uint64_t)rp->threads];
    w->stage[w->n_stage++] = m;
    if (w->n_stage == RP_STAGE)
        rp_worker_push(w);
    return 1;
}

/* Let the workers finish what they were given and end (rp_end_fn; again: nothing). They are
 * started again, empty, for the next phase. */
static int rp_workers_stop(replay_t *rp)
{
    rp_flush(rp);
    for (int i = 0; rp->workers && i < rp->threads; i++) {
        rp_worker_t *w = &rp->workers[i];
        if (!w->started)
            continue;
        pthread_mutex_lock(&w->mu);
        w->closing = 1;
        pthread_cond_broadcast(&w->cv);
        pthread_mutex_unlock(&w->mu);
        pthread_join(w->thread, NULL);
        w->started = 0;
        w->closing = 0;
    }
    return 0;
}

static int rp_workers_start(replay_t *rp, int phase)
{
    if (!rp->workers) {
        rp->workers = calloc((size_t)rp->threads, sizeof(*rp->workers));
        if (!rp->workers)
            return ctl_fail("out of memory");
        for (int i = 0; i < rp->threads; i++) {
            rp_worker_t *w = &rp->workers[i];
            w->rp = rp;
            w->shard = &rp->shards[i];
            pthread_mutex_init(&w->mu, NULL);
            pthread_cond_init(&w->cv, NULL);
        }
    }
    rp->phase = phase;
    for (int i = 0; i < rp->threads; i++) {
        rp_worker_t *w = &rp->workers[i];
        int e = pthread_create(&w->thread, NULL, rp_worker_main, w);
        if (e) {
            rp_workers_stop(rp);
            return ctl_fail("cannot start a replay thread: %s", strerror(e));
        }
        w->started = 1;
    }
    return 0;
}

static void rp_workers_free(replay_t *rp)
{
    if (!rp->workers)
        return;
    rp_workers_stop(rp);
    for (int i = 0; i < rp->threads; i++) {
        pthread_mutex_destroy(&rp->workers[i].mu);
        pthread_cond_destroy(&rp->workers[i].cv);
    }
    free(rp->workers);
    rp->workers = NULL;
}

/* Room in each shard for the decisions there are to read (at most the records on the topic,
 * shared out by subject): the tables are not rebuilt as they fill. 0 or -1. */
static int rp_presize(replay_t *rp, const rp_reader_t *r)
{
    if (rp->subject_filter)
        return 0;
    size_t records = 0;
    for (int32_t p = 0; p < r->n_parts; p++)
        records += r->end[p] > r->start[p] ? (size_t)(r->end[p] - r->start[p]) : 0;
    size_t per = records / (size_t)rp->threads + records / (size_t)rp->threads / 8 + 16;
    for (int i = 0; i < rp->threads; i++) {
        rp_shard_t *sh = &rp->shards[i];
        if (rp_map_reserve(&sh->by_source, per) ||
            !(sh->decisions = malloc(per * sizeof(*sh->decisions))))
            return ctl_fail("out of memory: %zu decisions to read", records);
        sh->cap_decisions = per;
    }
    return 0;
}

/* rp_record_fn of the decisions and of the events on one thread. */
static int rp_on_decision_here(replay_t *rp, rd_kafka_message_t *m)
{
    return rp_on_decision(rp, &rp->shards[0], m) ? -1 : 0;
}

static int rp_on_event_here(replay_t *rp, rd_kafka_message_t *m)
{
    return rp_on_event(rp, &rp->shards[0], m) ? -1 : 0;
}

static void rp_shard_free(rp_shard_t *sh);

/* Account for the lapses recorded after each subject's last event read, then release the shard
 * (nothing reads it again). */
static int rp_finish(replay_t *rp, rp_shard_t *sh)
{
    for (size_t i = 0; i < sh->n_subjects; i++)
        if (rp_catch_up(rp, sh, &sh->subjects[i], SIZE_MAX))
            return -1;
    rp_shard_free(sh);
    return 0;
}

static void rp_shard_free(rp_shard_t *sh)
{
    free(sh->decisions);
    for (size_t i = 0; i < sh->n_subjects; i++) {
        free(sh->subjects[i].decisions);
        if (sh->subjects[i].st)
            rules_state_free(sh->subjects[i].st);
    }
    free(sh->subjects);
    rp_map_free(&sh->by_key);
    rp_map_free(&sh->by_source);
    rp_arena_free(&sh->strings);
    rp_arena_free(&sh->scratch.mem);
    memset(sh, 0, sizeof(*sh));
}

static void rp_free(replay_t *rp)
{
    rp_workers_free(rp);
    for (int i = 0; rp->shards && i < rp->threads; i++)
        rp_shard_free(&rp->shards[i]);
    free(rp->shards);
    for (size_t i = 0; i < rp->n_versions; i++)
        rules_destroy(rp->versions[i].rules);
    free(rp->versions);
    store_destroy(rp->store);
    pthread_mutex_destroy(&rp->lock);
}

static const char rp_usage[] =
    "usage: jrpctl replay --from TIME --to TIME [--rules V | --rules-as-of-event]\n"
    "                     [--subject KEY] [--out FILE] [--threads N]\n"
    "Re-decides the events recorded in [from, to) in memory and compares with the recorded\n"
    "decisions; writes nothing. TIME: epoch ms or RFC 3339 (a date alone is 00:00 UTC+8).\n"
    "  --rules V            match the window against rule-set version V (\"what would V have\n"
    "                       done\"); default: the version each recorded decision names\n"
    "  --rules-as-of-event  the newest version created before each event occurred\n"
    "  --subject KEY        one subject only (\"enterprise:9135...\")\n"
    "  --out FILE           every difference as a JSON line\n"
    "  --threads N          match on N threads, subjects shared out among them (default: one\n"
    "                       per processor)\n"
    "Prints the counts and the first differences; exit 0 when the replay ran (whatever it\n"
    "found), 1 when it could not.\n";

int ctl_replay(config_t *cfg, int argc, char **argv)
{
    if (ctl_wants_help(argc, argv)) {
        fputs(rp_usage, stdout);
        return 0;
    }
    replay_t rp = {.cfg = cfg, .to_ms = INT64_MAX};
    const char *from = NULL, *to = NULL, *out_path = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int more = i + 1 < argc;
        if (!strcmp(a, "--from") && more)
            from = argv[++i];
        else if (!strcmp(a, "--to") && more)
            to = argv[++i];
        else if (!strcmp(a, "--rules") && more) {
            char *end;
            errno = 0;
            rp.rules_override = strtoll(argv[++i], &end, 10);
            if (errno || *end || rp.rules_override <= 0)
                return ctl_fail("--rules wants a version number, not \"%s\"", argv[i]);
        } else if (!strcmp(a, "--rules-as-of-event"))
            rp.as_of_event = 1;
        else if (!strcmp(a, "--subject") && more)
            rp.subject_filter = argv[++i];
        else if (!strcmp(a, "--out") && more)
            out_path = argv[++i];
        else if (!strcmp(a, "--threads") && more) {
            char *end;
            errno = 0;
            long t = strtol(argv[++i], &end, 10);
            if (errno || *end || t < 1 || t > REPLAY_THREADS_MAX)
                return ctl_fail("--threads wants a number from 1 to %d, not \"%s\"",
                                REPLAY_THREADS_MAX, argv[i]);
            rp.threads = (int)t;
        } else
            return ctl_fail("replay: unexpected \"%s\" (jrpctl replay --help)", a);
    }
    if (!from || !to)
        return ctl_fail("replay needs --from and --to (jrpctl replay --help)");
    if (report_parse_time(from, &rp.from_ms))
        return ctl_fail("--from: \"%s\" is not epoch ms or an RFC 3339 time", from);
    if (report_parse_time(to, &rp.to_ms))
        return ctl_fail("--to: \"%s\" is not epoch ms or an RFC 3339 time", to);
    if (rp.to_ms <= rp.from_ms)
        return ctl_fail("--to must be after --from");
    if (rp.rules_override && rp.as_of_event)
        return ctl_fail("--rules and --rules-as-of-event exclude each other");
    if (rp.subject_filter) {
        ids_subject_type_t t;
        const char *id, *code;
        char why[256];
        if (ids_subject_key_parse(rp.subject_filter, &t, &id, &code, why, sizeof(why)))
            return ctl_fail("--subject: \"%s\": %s", rp.subject_filter, why);
    }
    if (!rp.threads) { /* one per processor, and one is enough for one subject */
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        rp.threads = rp.subject_filter || cpus < 1 ? 1
                     : cpus > REPLAY_THREADS_MAX   ? REPLAY_THREADS_MAX
                                                   : (int)cpus;
    }
    char err[512];
    int rc = 1;
    rp_reader_t dec_reader = {0}, ev_reader = {0};
    pthread_mutex_init(&rp.lock, NULL);
    rp.store = store_create(cfg, err, sizeof(err));
    if (!rp.store)
        return ctl_fail("%s", err);
    if (!(rp.shards = calloc((size_t)rp.threads, sizeof(*rp.shards)))) {
        ctl_fail("out of memory");
        goto done;
    }
    for (int i = 0; i < rp.threads; i++)
        rp_scratch_init(&rp.shards[i].scratch);
    rp.opts.dedup_horizon_ms = config_get_int(cfg, "engine.dedup_horizon_days") * 86400000LL;
    rp.opts.dedup_max = 1000;
    if (rp_load_versions(&rp))
        goto done;
    if (rp.rules_override && !rp_rules(&rp, rp.rules_override))
        goto done;
    if (out_path && !(rp.out = fopen(out_path, "w"))) {
        ctl_fail("cannot write %s: %s", out_path, strerror(errno));
        goto done;
    }
    const char *prefix = config_get(cfg, "topic.prefix");
    char topic[512];
    snprintf(topic, sizeof(topic), "%sdecisions", prefix);
    int64_t started = rp_now_ms();
    /* The events' reader starts first: its end is fixed before the decisions are read (an
     * event is then less likely to be read before its decision was recorded), and it fetches
     * ahead while the decisions are being read. */
    char events[512];
    snprintf(events, sizeof(events), "%sevents", prefix);
    int many = rp.threads > 1;
    if (rp_reader_open(&rp, &ev_reader, events, rp.to_ms == INT64_MAX ? 0 : rp.to_ms) ||
        rp_reader_open(&rp, &dec_reader, topic, 0) || rp_presize(&rp, &dec_reader) ||
        (many && rp_workers_start(&rp, RP_DECISIONS)) ||
        rp_reader_run(&rp, &dec_reader, many ? rp_dispatch : rp_on_decision_here,
                      many ? rp_workers_stop : NULL))
        goto done;
    rp_reader_close(&dec_reader);
    size_t n_decisions = 0, n_subjects = 0;
    for (int i = 0; i < rp.threads; i++) {
        n_decisions += rp.shards[i].n_decisions;
        n_subjects += rp.shards[i].n_subjects;
    }
    fprintf(stderr, "replay: %zu recorded decisions of %zu subjects read\n", n_decisions,
            n_subjects);
    if ((many && rp_workers_start(&rp, RP_EVENTS)) ||
        rp_reader_run(&rp, &ev_reader, many ? rp_dispatch : rp_on_event_here,
                      many ? rp_workers_stop : NULL))
        goto done;
    rp_reader_close(&ev_reader);
    if (many ? rp_workers_start(&rp, RP_FINISH) || rp_workers_stop(&rp) || rp.failed
             : rp_finish(&rp, &rp.shards[0]))
        goto done;
    rp_progress(&rp, 1);
    double secs = (double)(rp_now_ms() - started) / 1000.0;
    printf("replayed %llu events in %.1f s (%.0f events/s); in the window: %llu compared "
           "(%llu lapses), %llu matching, %llu differing\n",
           (unsigned long long)rp.events_read, secs, secs > 0 ? (double)rp.events_read / secs : 0.0,
           (unsigned long long)rp.compared, (unsigned long long)rp.lapses_compared,
           (unsigned long long)rp.matching, (unsigned long long)rp.differing);
    if (rp.rules_override || rp.as_of_event)
        printf("against %s: %llu compared, %llu the same, %llu would differ\n",
               rp.rules_override ? "--rules" : "--rules-as-of-event",
               (unsigned long long)rp.alt_compared, (unsigned long long)rp.alt_matching,
               (unsigned long long)rp.alt_differing);
    rc = 0;
done:
    rp_workers_stop(&rp); /* before the reader whose records they hold closes */
    rp_reader_close(&dec_reader);
    rp_reader_close(&ev_reader);
    if (rp.out && fclose(rp.out) && !rc)
        rc = ctl_fail("writing %s: %s", out_path, strerror(errno));
    rp_free(&rp);
    return rc;
}
