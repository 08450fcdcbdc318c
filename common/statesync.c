/*
 * statesync: the changelog replay behind `jrpctl rebuild`, in batches of conditional writes
 * (one Redis round trip per batch). The engine's recovery (engine__recover) does the same for
 * the partitions it owns, from its progress marks.
 */
#include "statesync.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "topicscan.h"

#define STATESYNC_BATCH 256

typedef struct statesync_s {
    store_t *store;
    const rules_t *rules;
    store_write_t w[STATESYNC_BATCH];
    size_t n;
    statesync_stats_t *stats;
    char *errstr;
    size_t errstr_size;
} statesync_t;

static void statesync__clear(statesync_t *s)
{
    for (size_t i = 0; i < s->n; i++) {
        free((char *)s->w[i].subject_key);
        free((void *)s->w[i].bytes);
    }
    s->n = 0;
}

static int statesync__flush(statesync_t *s)
{
    int rc = store_write_states(s->store, s->w, s->n, s->errstr, s->errstr_size);
    if (!rc)
        s->stats->records += s->n;
    statesync__clear(s);
    return rc;
}

static int statesync__on_record(const rd_kafka_message_t *m, void *arg)
{
    statesync_t *s = arg;
    Jrp__V1__SubjectState *st =
        m->key && m->payload ? jrp__v1__subject_state__unpack(NULL, m->len, m->payload) : NULL;
    if (!st) {
        s->stats->skipped++;
        return 0;
    }
    store_write_t *w = &s->w[s->n];
    w->next_due_ms = s->rules ? rules_next_due(s->rules, st) : rules_next_lapse(st);
    rules_state_free(st);
    char *key = strndup(m->key, m->key_len);
    void *bytes = malloc(m->len);
    if (!key || !bytes) {
        free(key);
        free(bytes);
        snprintf(s->errstr, s->errstr_size, "out of memory");
        return -1;
    }
    memcpy(bytes, m->payload, m->len);
    w->subject_key = key;
    w->bytes = bytes;
    w->len = m->len;
    w->partition = m->partition;
    w->offset = m->offset;
    s->n++;
    return s->n == STATESYNC_BATCH && statesync__flush(s) ? -1 : 0;
}

int statesync_replay_all(const config_t *cfg, store_t *store, const rules_t *rules,
                         statesync_stats_t *stats, char *errstr, size_t errstr_size)
{
    char topic[256];
    config_topic(cfg, "state", topic, sizeof(topic));
    memset(stats, 0, sizeof(*stats));
    statesync_t *s = calloc(1, sizeof(*s));
    if (!s) {
        snprintf(errstr, errstr_size, "out of memory");
        return -1;
    }
    *s = (statesync_t){.store = store,
                       .rules = rules,
                       .stats = stats,
                       .errstr = errstr,
                       .errstr_size = errstr_size};
    int32_t n = 0;
    int rc = topicscan_run(cfg, topic, NULL, statesync__on_record, s, &n, errstr, errstr_size);
    if (rc == 1) { /* no changelog yet: nothing to restore */
        rc = 0;
    } else if (rc == 0 && s->n) {
        rc = statesync__flush(s);
    }
    statesync__clear(s);
    free(s);
    stats->partitions = n;
    if (rc || n <= 0)
        return rc ? -1 : 0;
    int32_t *parts = malloc((size_t)n * sizeof(*parts));
    if (!parts) {
        snprintf(errstr, errstr_size, "out of memory");
        return -1;
    }
    for (int32_t p = 0; p < n; p++)
        parts[p] = p;
    /* Redis now holds every partition's whole changelog. */
    rc = store_mark_ready(store, (size_t)n, parts, errstr, errstr_size);
    free(parts);
    return rc;
}
