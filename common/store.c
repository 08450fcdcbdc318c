/*
 * store: jrp's Redis layout. Every write of a subject state is conditional on its changelog
 * offset (a Lua script), so the order in which writers reach Redis never matters.
 */
#include "rules.h"
#include "store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct store_s {
    redisContext *c;
    char url[1024];
    char prefix[128];
    redis_script_t *write_state;
    redis_script_t *raise_progress;
    redis_pipe_t *pipe;
    redis_pipe_t *wpipe; /* state writes sent by store_send_states, their replies not yet read */
    int sent;
};

/* KEYS: state, expiry; ARGV: offset, bytes, next due (0 = none), subject key. */
static const char store__write_lua[] =
    "local cur = redis.call('HGET', KEYS[1], 'off')\n"
    "if cur and tonumber(cur) >= tonumber(ARGV[1]) then return 0 end\n"
    "redis.call('HSET', KEYS[1], 'off', ARGV[1], 'st', ARGV[2])\n"
    "if tonumber(ARGV[3]) > 0 then redis.call('ZADD', KEYS[2], ARGV[3], ARGV[4])\n"
    "else redis.call('ZREM', KEYS[2], ARGV[4]) end\n"
    "return 1\n";

/* KEYS: progress; ARGV: offset. */
static const char store__progress_lua[] =
    "local cur = redis.call('GET', KEYS[1])\n"
    "if cur and tonumber(cur) >= tonumber(ARGV[1]) then return 0 end\n"
    "redis.call('SET', KEYS[1], ARGV[1])\n"
    "return 1\n";

static int store__load_scripts(store_t *st, char *errstr, size_t errstr_size);

store_t *store_create(const config_t *cfg, char *errstr, size_t errstr_size)
{
    store_t *st = calloc(1, sizeof(*st));
    if (!st) {
        snprintf(errstr, errstr_size, "out of memory");
        return NULL;
    }
    snprintf(st->url, sizeof(st->url), "%s", config_get(cfg, "redis.url"));
    snprintf(st->prefix, sizeof(st->prefix), "%s", config_get(cfg, "redis.prefix"));
    st->write_state = redis_script_create(store__write_lua);
    st->raise_progress = redis_script_create(store__progress_lua);
    st->pipe = redis_pipe_create();
    st->wpipe = redis_pipe_create();
    if (!st->write_state || !st->raise_progress || !st->pipe || !st->wpipe) {
        snprintf(errstr, errstr_size, "out of memory");
        goto err;
    }
    st->c = redis_connect(st->url, 5000, errstr, errstr_size);
    if (!st->c || store__load_scripts(st, errstr, errstr_size))
        goto err;
    return st;
err:
    store_destroy(st);
    return NULL;
}

void store_destroy(store_t *st)
{
    if (!st)
        return;
    if (st->c)
        redisFree(st->c);
    redis_script_destroy(st->write_state);
    redis_script_destroy(st->raise_progress);
    redis_pipe_destroy(st->pipe);
    redis_pipe_destroy(st->wpipe);
    free(st);
}

int store_reconnect(store_t *st, char *errstr, size_t errstr_size)
{
    if (st->c)
        redisFree(st->c);
    st->sent = 0; /* writes sent on the old connection are in doubt: recovery rewrites them */
    st->c = redis_connect(st->url, 5000, errstr, errstr_size);
    /* Loaded now so the writes sent without waiting find them (a restarted Redis has none). */
    return st->c ? store__load_scripts(st, errstr, errstr_size) : -1;
}

const char *store_prefix(const store_t *st)
{
    return st->prefix;
}

redisContext *store_redis(store_t *st)
{
    return st->c;
}

void store_state_key(const store_t *st, const char *subject_key, char *buf, size_t size)
{
    snprintf(buf, size, "%s{%s}:state", st->prefix, subject_key);
}

static int store__drop(store_t *st)
{
    redisFree(st->c); /* unusable after a protocol or connection error */
    st->c = NULL;
    st->sent = 0;
    return -1;
}

static int store__check_writes(const redis_pipe_t *p, int *noscript, char *errstr,
                               size_t errstr_size);

int store_settle(store_t *st, char *errstr, size_t errstr_size)
{
    if (!st->sent)
        return 0;
    st->sent = 0;
    if (!st->c) {
        snprintf(errstr, errstr_size, "redis: not connected; the last state writes are in doubt");
        return -1;
    }
    if (redis_pipe_recv(st->c, st->wpipe, errstr, errstr_size))
        return store__drop(st);
    int noscript = 0;
    if (store__check_writes(st->wpipe, &noscript, errstr, errstr_size))
        return -1;
    if (noscript) {
        /* Redis lost its scripts (restart, FLUSHALL): those writes did not happen. Load the
         * scripts for the next ones; the caller's recovery rewrites the states. */
        snprintf(errstr, errstr_size,
                 "redis: the state writes found no scripts (Redis restarted?)");
        char ignored[256];
        (void)store__load_scripts(st, ignored, sizeof(ignored));
        return -1;
    }
    return 0;
}

static int store__exec(store_t *st, char *errstr, size_t errstr_size)
{
    /* Replies to writes sent earlier come first on the connection. */
    if (store_settle(st, errstr, errstr_size))
        return -1;
    if (!st->c) {
        snprintf(errstr, errstr_size, "redis: not connected");
        return -1;
    }
    if (redis_pipe_exec(st->c, st->pipe, errstr, errstr_size))
        return store__drop(st);
    return 0;
}

/* An error reply at i of p, as text; NULL if the reply is not an error. */
static const char *store__reply_error(const redis_pipe_t *p, size_t i)
{
    const redisReply *r = redis_pipe_reply(p, i);
    if (!r)
        return "no reply";
    return r->type == REDIS_REPLY_ERROR ? r->str : NULL;
}

static int store__parse_i64(const char *s, size_t len, int64_t *out)
{
    char buf[32];
    if (len == 0 || len >= sizeof(buf))
        return -1;
    memcpy(buf, s, len);
    buf[len] = '\0';
    char *end;
    long long v = strtoll(buf, &end, 10);
    if (*end)
        return -1;
    *out = v;
    return 0;
}

int store_load_states(store_t *st, size_t n, const char *const *subject_keys,
                      Jrp__V1__SubjectState **states, int64_t *offsets, char *errstr,
                      size_t errstr_size)
{
    return store_load_states_checked(st, n, subject_keys, states, offsets, 0, NULL, NULL, errstr,
                                     errstr_size);
}

int store_load_states_checked(store_t *st, size_t n, const char *const *subject_keys,
                              Jrp__V1__SubjectState **states, int64_t *offsets, size_t nparts,
                              const int32_t *partitions, int *ready, char *errstr,
                              size_t errstr_size)
{
    char key[512];
    redis_pipe_reset(st->pipe);
    for (size_t i = 0; i < n; i++) {
        states[i] = NULL;
        offsets[i] = -1;
        store_state_key(st, subject_keys[i], key, sizeof(key));
        if (redis_pipe_addv(st->pipe, "HMGET", key, "off", "st", NULL)) {
            snprintf(errstr, errstr_size, "out of memory");
            return -1;
        }
    }
    for (size_t i = 0; i < nparts; i++) {
        snprintf(key, sizeof(key), "%sstate:ready:%d", st->prefix, (int)partitions[i]);
        if (redis_pipe_addv(st->pipe, "EXISTS", key, NULL)) {
            snprintf(errstr, errstr_size, "out of memory");
            return -1;
        }
    }
    if (n + nparts == 0)
        return 0;
    if (store__exec(st, errstr, errstr_size))
        return -1;
    for (size_t i = 0; i < nparts; i++) {
        const redisReply *r = redis_pipe_reply(st->pipe, n + i);
        if (!r || r->type != REDIS_REPLY_INTEGER) {
            snprintf(errstr, errstr_size, "redis: EXISTS ready: %s",
                     r && r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
            return -1;
        }
        ready[i] = r->integer == 1;
    }
    for (size_t i = 0; i < n; i++) {
        const char *e = store__reply_error(st->pipe, i);
        const redisReply *r = redis_pipe_reply(st->pipe, i);
        if (e || r->type != REDIS_REPLY_ARRAY || r->elements != 2) {
            snprintf(errstr, errstr_size, "redis: HMGET %s: %s", subject_keys[i],
                     e ? e : "unexpected reply");
            goto err;
        }
        const redisReply *off = r->element[0], *bytes = r->element[1];
        if (off->type != REDIS_REPLY_STRING || bytes->type != REDIS_REPLY_STRING)
            continue; /* no state yet */
        if (store__parse_i64(off->str, off->len, &offsets[i])) {
            snprintf(errstr, errstr_size, "redis: state of %s has a bad offset", subject_keys[i]);
            goto err;
        }
        states[i] = jrp__v1__subject_state__unpack(NULL, bytes->len, (const uint8_t *)bytes->str);
        if (!states[i]) {
            snprintf(errstr, errstr_size, "redis: state of %s does not decode", subject_keys[i]);
            goto err;
        }
    }
    return 0;
err:
    for (size_t i = 0; i < n; i++)
        if (states[i]) {
            rules_state_free(states[i]);
            states[i] = NULL;
        }
    return -1;
}

int store_mark_ready(store_t *st, size_t nparts, const int32_t *partitions, char *errstr,
                     size_t errstr_size)
{
    char key[256];
    redis_pipe_reset(st->pipe);
    for (size_t i = 0; i < nparts; i++) {
        snprintf(key, sizeof(key), "%sstate:ready:%d", st->prefix, (int)partitions[i]);
        if (redis_pipe_addv(st->pipe, "SET", key, "1", NULL)) {
            snprintf(errstr, errstr_size, "out of memory");
            return -1;
        }
    }
    if (nparts == 0)
        return 0;
    if (store__exec(st, errstr, errstr_size))
        return -1;
    for (size_t i = 0; i < nparts; i++) {
        const char *e = store__reply_error(st->pipe, i);
        if (e) {
            snprintf(errstr, errstr_size, "redis: SET ready: %s", e);
            return -1;
        }
    }
    return 0;
}

int store_get_progress(store_t *st, size_t n, const int32_t *partitions, int64_t *out, char *errstr,
                       size_t errstr_size)
{
    char key[256];
    redis_pipe_reset(st->pipe);
    for (size_t i = 0; i < n; i++) {
        snprintf(key, sizeof(key), "%sstate:progress:%d", st->prefix, (int)partitions[i]);
        if (redis_pipe_addv(st->pipe, "GET", key, NULL)) {
            snprintf(errstr, errstr_size, "out of memory");
            return -1;
        }
    }
    if (n == 0)
        return 0;
    if (store__exec(st, errstr, errstr_size))
        return -1;
    for (size_t i = 0; i < n; i++) {
        const redisReply *r = redis_pipe_reply(st->pipe, i);
        out[i] = -1;
        if (!r || r->type == REDIS_REPLY_ERROR) {
            snprintf(errstr, errstr_size, "redis: GET progress: %s", r ? r->str : "no reply");
            return -1;
        }
        if (r->type == REDIS_REPLY_STRING && store__parse_i64(r->str, r->len, &out[i])) {
            snprintf(errstr, errstr_size, "redis: bad progress of partition %d",
                     (int)partitions[i]);
            return -1;
        }
    }
    return 0;
}

/* Queue an EVALSHA of script (the pipe cannot fall back to EVAL, so scripts are loaded first). */
static int store__add_script(redis_pipe_t *p, redis_script_t *s, int nkeys, int nargs,
                             const char **args, const size_t *lens)
{
    const char *argv[16];
    size_t argvlen[16];
    char nk[8];
    snprintf(nk, sizeof(nk), "%d", nkeys);
    argv[0] = "EVALSHA";
    argvlen[0] = 7;
    argv[1] = redis_script_sha(s);
    argvlen[1] = 40;
    argv[2] = nk;
    argvlen[2] = strlen(nk);
    for (int i = 0; i < nargs; i++) {
        argv[3 + i] = args[i];
        argvlen[3 + i] = lens[i];
    }
    return redis_pipe_add(p, 3 + nargs, argv, argvlen);
}

/* SCRIPT LOAD both scripts (cheap; makes EVALSHA in a pipeline safe after a flush). */
static int store__load_scripts(store_t *st, char *errstr, size_t errstr_size)
{
    redis_pipe_reset(st->pipe);
    if (redis_pipe_addv(st->pipe, "SCRIPT", "LOAD", store__write_lua, NULL) ||
        redis_pipe_addv(st->pipe, "SCRIPT", "LOAD", store__progress_lua, NULL)) {
        snprintf(errstr, errstr_size, "out of memory");
        return -1;
    }
    if (store__exec(st, errstr, errstr_size))
        return -1;
    for (size_t i = 0; i < 2; i++) {
        const char *e = store__reply_error(st->pipe, i);
        if (e) {
            snprintf(errstr, errstr_size, "redis: SCRIPT LOAD: %s", e);
            return -1;
        }
    }
    return 0;
}

static int store__queue_writes(store_t *st, redis_pipe_t *p, const store_write_t *w, size_t n)
{
    char key[512], zkey[256], off[32], due[32];
    for (size_t i = 0; i < n; i++) {
        store_state_key(st, w[i].subject_key, key, sizeof(key));
        snprintf(zkey, sizeof(zkey), "%sexpiry:%d", st->prefix, (int)w[i].partition);
        snprintf(off, sizeof(off), "%lld", (long long)w[i].offset);
        snprintf(due, sizeof(due), "%lld", (long long)w[i].next_due_ms);
        const char *args[] = {key, zkey, off, w[i].bytes, due, w[i].subject_key};
        size_t lens[] = {strlen(key), strlen(zkey), strlen(off),
                         w[i].len,    strlen(due),  strlen(w[i].subject_key)};
        if (store__add_script(p, st->write_state, 2, 6, args, lens))
            return -1;
    }
    /* Progress: the highest offset per partition. */
    for (size_t i = 0; i < n; i++) {
        int first = 1;
        int64_t max = w[i].offset;
        for (size_t j = 0; j < n; j++) {
            if (w[j].partition != w[i].partition)
                continue;
            if (j < i) {
                first = 0;
                break;
            }
            if (w[j].offset > max)
                max = w[j].offset;
        }
        if (!first)
            continue;
        snprintf(key, sizeof(key), "%sstate:progress:%d", st->prefix, (int)w[i].partition);
        snprintf(off, sizeof(off), "%lld", (long long)max);
        const char *args[] = {key, off};
        size_t lens[] = {strlen(key), strlen(off)};
        if (store__add_script(p, st->raise_progress, 1, 2, args, lens))
            return -1;
    }
    return 0;
}

/* The replies to state writes in p: -1 at the first error other than NOSCRIPT (errstr). */
static int store__check_writes(const redis_pipe_t *p, int *noscript, char *errstr,
                               size_t errstr_size)
{
    *noscript = 0;
    for (size_t i = 0; i < redis_pipe_count(p); i++) {
        const char *e = store__reply_error(p, i);
        if (e && !strncmp(e, "NOSCRIPT", 8)) {
            *noscript = 1;
        } else if (e) {
            snprintf(errstr, errstr_size, "redis: state write: %s", e);
            return -1;
        }
    }
    return 0;
}

int store_write_states(store_t *st, const store_write_t *w, size_t n, char *errstr,
                       size_t errstr_size)
{
    if (n == 0)
        return 0;
    for (int attempt = 0; attempt < 2; attempt++) {
        redis_pipe_reset(st->pipe);
        if (store__queue_writes(st, st->pipe, w, n)) {
            snprintf(errstr, errstr_size, "out of memory");
            return -1;
        }
        if (store__exec(st, errstr, errstr_size))
            return -1;
        int noscript = 0;
        if (store__check_writes(st->pipe, &noscript, errstr, errstr_size))
            return -1;
        if (!noscript)
            return 0;
        /* Redis lost its script cache (restart, FLUSHALL): load and redo; writes are idempotent. */
        if (store__load_scripts(st, errstr, errstr_size))
            return -1;
    }
    snprintf(errstr, errstr_size, "redis: scripts keep disappearing");
    return -1;
}

int store_send_states(store_t *st, const store_write_t *w, size_t n, char *errstr,
                      size_t errstr_size)
{
    if (store_settle(st, errstr, errstr_size))
        return -1;
    if (n == 0)
        return 0;
    if (!st->c) {
        snprintf(errstr, errstr_size, "redis: not connected");
        return -1;
    }
    redis_pipe_reset(st->wpipe);
    if (store__queue_writes(st, st->wpipe, w, n)) {
        snprintf(errstr, errstr_size, "out of memory");
        return -1;
    }
    if (redis_pipe_send(st->c, st->wpipe, errstr, errstr_size))
        return store__drop(st);
    st->sent = 1;
    return 0;
}

void store_free_keys(char **keys, size_t n)
{
    for (size_t i = 0; keys && i < n; i++)
        free(keys[i]);
    free(keys);
}

int store_due(store_t *st, int32_t partition, int64_t now_ms, size_t max, char ***keys, size_t *n,
              char *errstr, size_t errstr_size)
{
    char zkey[256], until[32], lim[32];
    snprintf(zkey, sizeof(zkey), "%sexpiry:%d", st->prefix, (int)partition);
    snprintf(until, sizeof(until), "%lld", (long long)now_ms);
    snprintf(lim, sizeof(lim), "%zu", max);
    *keys = NULL;
    *n = 0;
    redis_pipe_reset(st->pipe);
    if (redis_pipe_addv(st->pipe, "ZRANGEBYSCORE", zkey, "-inf", until, "LIMIT", "0", lim, NULL)) {
        snprintf(errstr, errstr_size, "out of memory");
        return -1;
    }
    if (store__exec(st, errstr, errstr_size))
        return -1;
    const redisReply *r = redis_pipe_reply(st->pipe, 0);
    if (r->type != REDIS_REPLY_ARRAY) {
        snprintf(errstr, errstr_size, "redis: ZRANGEBYSCORE: %s",
                 r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
        return -1;
    }
    if (r->elements == 0)
        return 0;
    *keys = calloc(r->elements, sizeof(char *));
    if (!*keys)
        goto oom;
    for (size_t i = 0; i < r->elements; i++) {
        if (r->element[i]->type != REDIS_REPLY_STRING)
            continue;
        if (!((*keys)[*n] = strndup(r->element[i]->str, r->element[i]->len)))
            goto oom;
        (*n)++;
    }
    return 0;
oom:
    store_free_keys(*keys, *n);
    *keys = NULL;
    *n = 0;
    snprintf(errstr, errstr_size, "out of memory");
    return -1;
}

int store_set_due(store_t *st, int32_t partition, const char *subject_key, int64_t due_ms,
                  char *errstr, size_t errstr_size)
{
    char zkey[256], due[32];
    snprintf(zkey, sizeof(zkey), "%sexpiry:%d", st->prefix, (int)partition);
    snprintf(due, sizeof(due), "%lld", (long long)due_ms);
    redis_pipe_reset(st->pipe);
    int rc = due_ms > 0 ? redis_pipe_addv(st->pipe, "ZADD", zkey, due, subject_key, NULL)
                        : redis_pipe_addv(st->pipe, "ZREM", zkey, subject_key, NULL);
    if (rc) {
        snprintf(errstr, errstr_size, "out of memory");
        return -1;
    }
    if (store__exec(st, errstr, errstr_size))
        return -1;
    const char *e = store__reply_error(st->pipe, 0);
    if (e) {
        snprintf(errstr, errstr_size, "redis: expiry index: %s", e);
        return -1;
    }
    return 0;
}

/* --- rules ------------------------------------------------------------------------------------ */

static int store__simple(store_t *st, char *errstr, size_t errstr_size, const char *what)
{
    if (store__exec(st, errstr, errstr_size))
        return -1;
    for (size_t i = 0; i < redis_pipe_count(st->pipe); i++) {
        const char *e = store__reply_error(st->pipe, i);
        if (e) {
            snprintf(errstr, errstr_size, "redis: %s: %s", what, e);
            return -1;
        }
    }
    return 0;
}

int store_rules_put(store_t *st, const Jrp__V1__RuleSet *rs, char *errstr, size_t errstr_size)
{
    size_t len = jrp__v1__rule_set__get_packed_size(rs);
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf) {
        snprintf(errstr, errstr_size, "out of memory");
        return -1;
    }
    jrp__v1__rule_set__pack(rs, buf);
    char key[256], zkey[256], v[32];
    snprintf(key, sizeof(key), "%srules:v:%lld", st->prefix, (long long)rs->version);
    snprintf(zkey, sizeof(zkey), "%srules:versions", st->prefix);
    snprintf(v, sizeof(v), "%lld", (long long)rs->version);
    redis_pipe_reset(st->pipe);
    const char *set[] = {"SET", key, (const char *)buf};
    size_t setlen[] = {3, strlen(key), len};
    int rc = redis_pipe_add(st->pipe, 3, set, setlen) ||
             redis_pipe_addv(st->pipe, "ZADD", zkey, v, v, NULL);
    free(buf);
    if (rc) {
        snprintf(errstr, errstr_size, "out of memory");
        return -1;
    }
    return store__simple(st, errstr, errstr_size, "store rule set");
}

int store_rules_get(store_t *st, int64_t version, Jrp__V1__RuleSet **out, char *errstr,
                    size_t errstr_size)
{
    char key[256];
    *out = NULL;
    snprintf(key, sizeof(key), "%srules:v:%lld", st->prefix, (long long)version);
    redis_pipe_reset(st->pipe);
    if (redis_pipe_addv(st->pipe, "GET", key, NULL) ||
        store__simple(st, errstr, errstr_size, "get rule set"))
        return -1;
    const redisReply *r = redis_pipe_reply(st->pipe, 0);
    if (r->type != REDIS_REPLY_STRING)
        return 1;
    *out = jrp__v1__rule_set__unpack(NULL, r->len, (const uint8_t *)r->str);
    if (!*out) {
        snprintf(errstr, errstr_size, "redis: rule set %lld does not decode", (long long)version);
        return -1;
    }
    return 0;
}

int store_rules_active(store_t *st, int64_t *version, char *errstr, size_t errstr_size)
{
    char key[256];
    *version = 0;
    snprintf(key, sizeof(key), "%srules:active", st->prefix);
    redis_pipe_reset(st->pipe);
    if (redis_pipe_addv(st->pipe, "GET", key, NULL) ||
        store__simple(st, errstr, errstr_size, "get active rules"))
        return -1;
    const redisReply *r = redis_pipe_reply(st->pipe, 0);
    if (r->type == REDIS_REPLY_STRING && store__parse_i64(r->str, r->len, version)) {
        snprintf(errstr, errstr_size, "redis: %s is not a version", key);
        return -1;
    }
    return 0;
}

int store_rules_activate(store_t *st, int64_t version, char *errstr, size_t errstr_size)
{
    char key[256], chan[256], v[32];
    snprintf(key, sizeof(key), "%srules:active", st->prefix);
    snprintf(chan, sizeof(chan), "%srules:activated", st->prefix);
    snprintf(v, sizeof(v), "%lld", (long long)version);
    redis_pipe_reset(st->pipe);
    if (redis_pipe_addv(st->pipe, "SET", key, v, NULL) ||
        redis_pipe_addv(st->pipe, "PUBLISH", chan, v, NULL))
        return -1;
    return store__simple(st, errstr, errstr_size, "activate rules");
}

int store_rules_versions(store_t *st, int64_t **versions, size_t *n, char *errstr,
                         size_t errstr_size)
{
    char zkey[256];
    *versions = NULL;
    *n = 0;
    snprintf(zkey, sizeof(zkey), "%srules:versions", st->prefix);
    redis_pipe_reset(st->pipe);
    if (redis_pipe_addv(st->pipe, "ZRANGE", zkey, "0", "-1", NULL) ||
        store__simple(st, errstr, errstr_size, "list rule sets"))
        return -1;
    const redisReply *r = redis_pipe_reply(st->pipe, 0);
    if (r->type != REDIS_REPLY_ARRAY || r->elements == 0)
        return 0;
    *versions = calloc(r->elements, sizeof(int64_t));
    if (!*versions) {
        snprintf(errstr, errstr_size, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < r->elements; i++)
        if (r->element[i]->type == REDIS_REPLY_STRING &&
            !store__parse_i64(r->element[i]->str, r->element[i]->len, &(*versions)[*n]))
            (*n)++;
    return 0;
}
