/*
 * jrpctl rebuild: bring jrp's Redis namespace back from Kafka after a Redis loss. Rule-set
 * versions from credit.rules (rulesync_restore), subject states from credit.state (statesync,
 * the engine's conditional writes, then every partition marked ready) and the gateway's tokens
 * from credit.tokens (the latest TokenRecord of each token id, written as `jrpctl token create`
 * writes it). Every write is idempotent and Kafka is the truth, so running it against a namespace
 * that still holds data only repairs what is missing or stale.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"
#include "jrp/v1/token.pb-c.h"
#include "kafka.h"
#include "redis.h"
#include "rules.h"
#include "rulesync.h"
#include "statesync.h"
#include "store.h"
#include "topicscan.h"

static int ctl_rebuild_usage(FILE *out, int rc)
{
    fprintf(out,
            "usage: jrpctl rebuild\n\n"
            "Bring Redis (redis.url, keys under redis.prefix) back from Kafka after a loss:\n"
            "  rules   every version on <topic.prefix>rules, and the active one activated\n"
            "  states  every subject state on <topic.prefix>state (an older record never\n"
            "          replaces a newer one), then each partition marked ready for the engines\n"
            "  tokens  the latest record of every token on <topic.prefix>tokens\n\n"
            "Safe to run at any time, engines running or not: Kafka holds the truth and\n"
            "every write is idempotent, so a namespace that still holds data is only\n"
            "repaired. Prints what it restored; exits non-zero if any part failed.\n");
    return rc;
}

/* Count keys matching prefix + pattern with SCAN; -1 on error (errstr). */
static long long ctl_rebuild_count(redisContext *c, const char *prefix, const char *pattern,
                                   char *errstr, size_t errstr_size)
{
    char match[512], cursor[32] = "0";
    snprintf(match, sizeof(match), "%s%s", prefix, pattern);
    redis_pipe_t *p = redis_pipe_create();
    long long n = 0;
    if (!p) {
        snprintf(errstr, errstr_size, "out of memory");
        return -1;
    }
    do {
        redis_pipe_reset(p);
        if (redis_pipe_addv(p, "SCAN", cursor, "MATCH", match, "COUNT", "1000", NULL) ||
            redis_pipe_exec(c, p, errstr, errstr_size)) {
            n = -1;
            break;
        }
        const redisReply *r = redis_pipe_reply(p, 0);
        if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
            r->element[0]->type != REDIS_REPLY_STRING) {
            snprintf(errstr, errstr_size, "redis: SCAN: %s",
                     r && r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
            n = -1;
            break;
        }
        snprintf(cursor, sizeof(cursor), "%.*s", (int)r->element[0]->len, r->element[0]->str);
        n += (long long)r->element[1]->elements;
    } while (strcmp(cursor, "0") != 0);
    redis_pipe_destroy(p);
    return n;
}

typedef struct ctl_rebuild_tokens_s {
    redisContext *c;
    redis_pipe_t *p;
    const char *prefix;
    char **ids; /* distinct token ids seen */
    int *revoked;
    size_t n_ids;
    size_t skipped;
    char *errstr;
    size_t errstr_size;
} ctl_rebuild_tokens_t;

/* Remember id (and whether its latest record is revoked). 0 or -1. */
static int ctl_rebuild_token_seen(ctl_rebuild_tokens_t *t, const char *id, int revoked)
{
    for (size_t i = 0; i < t->n_ids; i++)
        if (!strcmp(t->ids[i], id)) {
            t->revoked[i] = revoked;
            return 0;
        }
    char **ids = realloc(t->ids, (t->n_ids + 1) * sizeof(*ids));
    if (ids)
        t->ids = ids;
    int *rev = realloc(t->revoked, (t->n_ids + 1) * sizeof(*rev));
    if (rev)
        t->revoked = rev;
    char *copy = strdup(id);
    if (!ids || !rev || !copy) {
        free(copy);
        return -1;
    }
    t->ids[t->n_ids] = copy;
    t->revoked[t->n_ids++] = revoked;
    return 0;
}

/* One TokenRecord: the same hash and id key as `jrpctl token create` writes. Records come in
 * order per token id (its key), so the latest one is written last. */
static int ctl_rebuild_on_token(const rd_kafka_message_t *m, void *arg)
{
    ctl_rebuild_tokens_t *t = arg;
    Jrp__V1__TokenRecord *rec =
        m->payload ? jrp__v1__token_record__unpack(NULL, m->len, m->payload) : NULL;
    if (!rec || strlen(rec->token_sha256) != 64 || !rec->token_id[0]) {
        if (rec)
            jrp__v1__token_record__free_unpacked(rec, NULL);
        t->skipped++;
        return 0;
    }
    char key[512], idkey[512], scopes[256] = "", created[32], revoked[32];
    size_t o = 0;
    for (size_t i = 0; i < rec->n_scopes && o < sizeof(scopes); i++)
        o += (size_t)snprintf(scopes + o, sizeof(scopes) - o, "%s%s", i ? " " : "", rec->scopes[i]);
    snprintf(key, sizeof(key), "%stoken:%s", t->prefix, rec->token_sha256);
    snprintf(idkey, sizeof(idkey), "%stoken:id:%s", t->prefix, rec->token_id);
    snprintf(created, sizeof(created), "%lld", (long long)rec->created_at_ms);
    snprintf(revoked, sizeof(revoked), "%lld", (long long)rec->revoked_at_ms);
    redis_pipe_reset(t->p);
    int rc = 0;
    if (redis_pipe_addv(t->p, "HSET", key, "id", rec->token_id, "department", rec->department,
                        "scopes", scopes, "created_at_ms", created, "revoked_at_ms", revoked,
                        "sha256", rec->token_sha256, "note", rec->note, NULL) ||
        redis_pipe_addv(t->p, "SET", idkey, rec->token_sha256, NULL) ||
        ctl_rebuild_token_seen(t, rec->token_id, rec->revoked_at_ms != 0)) {
        snprintf(t->errstr, t->errstr_size, "out of memory");
        rc = -1;
    } else if (redis_pipe_exec(t->c, t->p, t->errstr, t->errstr_size)) {
        rc = -1;
    } else {
        for (size_t i = 0; i < redis_pipe_count(t->p) && !rc; i++) {
            const redisReply *r = redis_pipe_reply(t->p, i);
            if (!r || r->type == REDIS_REPLY_ERROR) {
                snprintf(t->errstr, t->errstr_size, "redis: %s", r ? r->str : "no reply");
                rc = -1;
            }
        }
    }
    jrp__v1__token_record__free_unpacked(rec, NULL);
    return rc;
}

static int ctl_rebuild_tokens(const config_t *cfg, redisContext *c, char *errstr,
                              size_t errstr_size)
{
    char topic[256];
    config_topic(cfg, "tokens", topic, sizeof(topic));
    ctl_rebuild_tokens_t t = {.c = c,
                              .p = redis_pipe_create(),
                              .prefix = config_get(cfg, "redis.prefix"),
                              .errstr = errstr,
                              .errstr_size = errstr_size};
    int rc = -1;
    if (!t.p) {
        snprintf(errstr, errstr_size, "out of memory");
        goto done;
    }
    rc = topicscan_run(cfg, topic, NULL, ctl_rebuild_on_token, &t, NULL, errstr, errstr_size);
    if (rc < 0)
        goto done;
    size_t revoked = 0;
    for (size_t i = 0; i < t.n_ids; i++)
        revoked += (size_t)t.revoked[i];
    if (rc == 1)
        printf("tokens:  none (no topic %s yet)\n", topic);
    else
        printf("tokens:  %zu restored from %s (%zu in force, %zu revoked)%s\n", t.n_ids, topic,
               t.n_ids - revoked, revoked, t.skipped ? "; some records did not decode" : "");
    rc = 0;
done:
    for (size_t i = 0; i < t.n_ids; i++)
        free(t.ids[i]);
    free(t.ids);
    free(t.revoked);
    redis_pipe_destroy(t.p);
    return rc;
}

/* The active rule set compiled, for the states' due times; NULL when there is none. */
static rules_t *ctl_rebuild_rules(store_t *store, int64_t *active)
{
    char err[512];
    Jrp__V1__RuleSet *rs = NULL;
    *active = 0;
    if (store_rules_active(store, active, err, sizeof(err)) || *active == 0 ||
        store_rules_get(store, *active, &rs, err, sizeof(err)))
        return NULL;
    return rules_compile(rs, err, sizeof(err)); /* takes rs */
}

int ctl_rebuild(config_t *cfg, int argc, char **argv)
{
    /* librdkafka's own error lines only when asked for (-o kafka.log_level=N): a command
     * that fails says why in one line. */
    char lerr[256];
    if (!config_get(cfg, "kafka.log_level") &&
        config_set(cfg, "kafka.log_level", "2", "jrpctl", lerr, sizeof(lerr)))
        return ctl_fail("%s", lerr);
    if (ctl_wants_help(argc, argv))
        return ctl_rebuild_usage(stdout, 0);
    if (argc > 1)
        return ctl_fail("rebuild takes no arguments, not \"%s\" (jrpctl rebuild --help)", argv[1]);
    char err[1024];
    store_t *store = store_create(cfg, err, sizeof(err));
    if (!store)
        return ctl_fail("cannot reach Redis at %s: %s", config_get(cfg, "redis.url"), err);
    /* Kafka first, so that an unreachable cluster is one line, not one per part. */
    rd_kafka_t *rk = kafka_reader_create(cfg, err, sizeof(err));
    char probe_topic[256];
    config_topic(cfg, "state", probe_topic, sizeof(probe_topic));
    int32_t probe = rk ? topicscan_partitions(rk, probe_topic, err, sizeof(err)) : -1;
    if (rk) {
        rd_kafka_consumer_close(rk);
        rd_kafka_destroy(rk);
    }
    if (probe < 0) {
        store_destroy(store);
        return ctl_fail("cannot reach Kafka at %s: %s", config_get(cfg, "kafka.bootstrap.servers"),
                        err);
    }
    const char *prefix = store_prefix(store);
    char state_topic[256];
    config_topic(cfg, "state", state_topic, sizeof(state_topic));
    int failed = 0;
    long long before = ctl_rebuild_count(store_redis(store), prefix, "{*}:state", err, sizeof(err));
    if (before < 0) {
        store_destroy(store);
        return ctl_fail("%s", err);
    }
    printf("rebuilding Redis namespace \"%s\" from Kafka (topic prefix \"%s\"); it held %lld "
           "subject states\n",
           prefix, config_get(cfg, "topic.prefix"), before);
    fflush(stdout);

    /* Rules first: the states' due times depend on the active rule set. */
    size_t versions = 0;
    int64_t active = 0;
    if (rulesync_restore(cfg, store, &versions, err, sizeof(err)))
        failed = ctl_fail("rules: %s", err);
    /* Whatever is active now (also after a failure above) sets the due times. */
    rules_t *rules = ctl_rebuild_rules(store, &active);
    if (!failed && active)
        printf("rules:   %zu versions restored, version %lld active\n", versions,
               (long long)active);
    else if (!failed)
        printf("rules:   %zu versions restored, none active\n", versions);
    fflush(stdout);
    statesync_stats_t st;
    if (statesync_replay_all(cfg, store, rules, &st, err, sizeof(err))) {
        failed = ctl_fail("states: %s", err);
    } else {
        long long after =
            ctl_rebuild_count(store_redis(store), prefix, "{*}:state", err, sizeof(err));
        printf("states:  %zu records replayed from %d partitions of %s (%zu skipped); Redis "
               "holds %lld subject states\n",
               st.records, (int)st.partitions, state_topic, st.skipped, after);
    }
    rules_destroy(rules);
    fflush(stdout);
    if (ctl_rebuild_tokens(cfg, store_redis(store), err, sizeof(err)))
        failed = ctl_fail("tokens: %s", err);
    store_destroy(store);
    if (failed)
        return 1;
    printf("rebuild done\n");
    return 0;
}
