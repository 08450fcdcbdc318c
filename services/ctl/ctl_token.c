/*
 * jrpctl token: the gateway's bearer tokens. `create` draws 256 random bits, prints the token
 * once and keeps only its SHA-256: a jrp.v1.TokenRecord on the compacted tokens topic (the
 * durable copy, keyed by token id) and a Redis hash the gateway looks tokens up in. `revoke`
 * marks a token revoked in both; `list` shows what Redis holds. Layout (P = redis.prefix):
 *   P token:<sha256 hex>   hash  id, department, scopes, created_at_ms, revoked_at_ms, sha256, note
 *   P token:id:<token id>  string the token's sha256 hex (revocation is by id)
 */
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include "ctl.h"
#include "ids.h"
#include "jrp/v1/token.pb-c.h"
#include "kafka.h"
#include "redis.h"
#include "rulesync.h"

#define CTL_TOKEN_TIMEOUT_MS 15000
#define CTL_TOKEN_NOTE_MAX 200
#define CTL_TOKEN_RANDOM_BYTES 32 /* 256 bits */

/* The scopes a token may hold; the gateway's gateway_api.c knows the same four names. */
static const char *const ctl_token_scopes[] = {"events:write", "check:read", "feedback:write",
                                               "admin"};
#define CTL_TOKEN_NSCOPES (sizeof(ctl_token_scopes) / sizeof(ctl_token_scopes[0]))
/* Given no --scope, a department token may send events and feedback and run credit checks. */
#define CTL_TOKEN_DEFAULT_SCOPES 0x7u

static int ctl_token_usage(FILE *out, int rc)
{
    fprintf(out,
            "usage: jrpctl token create --department D [--scope S]... [--note TEXT]\n"
            "       jrpctl token revoke TOKEN_ID\n"
            "       jrpctl token list\n\n"
            "  create   print a new bearer token for the gateway, once; only its SHA-256 is kept\n"
            "           (Redis, and the compacted <topic.prefix>tokens topic). Scopes:\n"
            "           events:write, check:read, feedback:write (the default is these three)\n"
            "           and admin (every route, every department's measures)\n"
            "  revoke   refuse the token from now on (gateways notice within\n"
            "           gateway.token_cache_ms)\n"
            "  list     the tokens Redis knows: id, department, scopes, created, revoked\n");
    return rc;
}

static int64_t ctl_token_now_ms(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

static void ctl_token_hex(const uint8_t *b, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[b[i] >> 4];
        out[2 * i + 1] = digits[b[i] & 15];
    }
    out[2 * n] = '\0';
}

/* base64url without padding (RFC 4648 section 5): a token that needs no escaping anywhere. */
static void ctl_token_b64url(const uint8_t *b, size_t n, char *out)
{
    static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t o = 0, i = 0;
    for (; i + 2 < n; i += 3) {
        uint32_t v = (uint32_t)b[i] << 16 | (uint32_t)b[i + 1] << 8 | b[i + 2];
        out[o++] = a[v >> 18 & 63];
        out[o++] = a[v >> 12 & 63];
        out[o++] = a[v >> 6 & 63];
        out[o++] = a[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)b[i] << 16;
        out[o++] = a[v >> 18 & 63];
        out[o++] = a[v >> 12 & 63];
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)b[i] << 16 | (uint32_t)b[i + 1] << 8;
        out[o++] = a[v >> 18 & 63];
        out[o++] = a[v >> 12 & 63];
        out[o++] = a[v >> 6 & 63];
    }
    out[o] = '\0';
}

static const char *ctl_token_scopes_text(unsigned bits, char *buf, size_t size)
{
    size_t o = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < CTL_TOKEN_NSCOPES; i++)
        if (bits & (1u << i)) {
            int n = snprintf(buf + o, size - o, "%s%s", o ? " " : "", ctl_token_scopes[i]);
            if (n < 0 || (size_t)n >= size - o)
                break;
            o += (size_t)n;
        }
    return buf;
}

/* Produce rec to the tokens topic, keyed by its id, and wait for the broker. 0 or -1. */
static int ctl_token_publish(const config_t *cfg, const Jrp__V1__TokenRecord *rec, char *errstr,
                             size_t errstr_size)
{
    char topic[256];
    config_topic(cfg, "tokens", topic, sizeof(topic));
    size_t len = jrp__v1__token_record__get_packed_size(rec);
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf) {
        snprintf(errstr, errstr_size, "out of memory");
        return -1;
    }
    jrp__v1__token_record__pack(rec, buf);
    int rc = kafka_produce_one(cfg, topic, rec->token_id, buf, len,
                               jrp__v1__token_record__descriptor.name, CTL_TOKEN_TIMEOUT_MS, errstr,
                               errstr_size);
    free(buf);
    return rc;
}

/* Run the queued commands; 0, or -1 with the first error (a failed command too). */
static int ctl_token_exec(redisContext *c, redis_pipe_t *p, char *errstr, size_t errstr_size)
{
    if (redis_pipe_exec(c, p, errstr, errstr_size))
        return -1;
    for (size_t i = 0; i < redis_pipe_count(p); i++) {
        const redisReply *r = redis_pipe_reply(p, i);
        if (!r || r->type == REDIS_REPLY_ERROR) {
            snprintf(errstr, errstr_size, "redis: %s", r ? r->str : "no reply");
            return -1;
        }
    }
    return 0;
}

static void ctl_token_keys(const config_t *cfg, const char *hash, const char *id, char *key,
                           size_t key_size, char *idkey, size_t idkey_size)
{
    const char *prefix = config_get(cfg, "redis.prefix");
    if (key)
        snprintf(key, key_size, "%stoken:%s", prefix, hash);
    if (idkey)
        snprintf(idkey, idkey_size, "%stoken:id:%s", prefix, id);
}

static int ctl_token_create(config_t *cfg, int argc, char **argv)
{
    const char *dept = NULL, *note = "";
    unsigned scopes = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--department") || !strcmp(a, "--scope") || !strcmp(a, "--note")) {
            if (!v)
                return ctl_fail("token create: %s needs a value", a);
            i++;
            if (!strcmp(a, "--department")) {
                dept = v;
            } else if (!strcmp(a, "--note")) {
                note = v;
            } else {
                size_t k;
                for (k = 0; k < CTL_TOKEN_NSCOPES && strcmp(v, ctl_token_scopes[k]); k++)
                    ;
                if (k == CTL_TOKEN_NSCOPES)
                    return ctl_fail("token create: unknown scope \"%s\": one of events:write, "
                                    "check:read, feedback:write, admin",
                                    v);
                scopes |= 1u << k;
            }
        } else {
            return ctl_fail("token create: unexpected \"%s\" (jrpctl token --help)", a);
        }
    }
    if (!dept)
        return ctl_fail("token create needs --department D (the department the token speaks for)");
    if (!ids_is_department(dept))
        return ctl_fail("token create: \"%s\" is not a department code ([a-z][a-z0-9_]{1,31})",
                        dept);
    if (strlen(note) > CTL_TOKEN_NOTE_MAX)
        return ctl_fail("token create: --note is longer than %d bytes", CTL_TOKEN_NOTE_MAX);
    if (!scopes)
        scopes = CTL_TOKEN_DEFAULT_SCOPES;

    uint8_t secret[CTL_TOKEN_RANDOM_BYTES], idb[8], digest[32];
    unsigned int dlen = 0;
    char token[4 + 2 * CTL_TOKEN_RANDOM_BYTES], id[4 + 17], hash[65];
    if (RAND_bytes(secret, sizeof(secret)) != 1 || RAND_bytes(idb, sizeof(idb)) != 1)
        return ctl_fail("no random bytes from OpenSSL");
    memcpy(token, "jrp_", 4);
    ctl_token_b64url(secret, sizeof(secret), token + 4);
    memcpy(id, "tok_", 4);
    ctl_token_hex(idb, sizeof(idb), id + 4);
    if (EVP_Digest(token, strlen(token), digest, &dlen, EVP_sha256(), NULL) != 1 || dlen != 32)
        return ctl_fail("cannot compute SHA-256");
    ctl_token_hex(digest, sizeof(digest), hash);

    char scope_text[128];
    char *scope_list[CTL_TOKEN_NSCOPES];
    size_t n_scopes = 0;
    for (size_t k = 0; k < CTL_TOKEN_NSCOPES; k++)
        if (scopes & (1u << k))
            scope_list[n_scopes++] = (char *)ctl_token_scopes[k];
    ctl_token_scopes_text(scopes, scope_text, sizeof(scope_text));
    Jrp__V1__TokenRecord rec;
    jrp__v1__token_record__init(&rec);
    rec.token_id = id;
    rec.token_sha256 = hash;
    rec.department = (char *)dept;
    rec.scopes = scope_list;
    rec.n_scopes = n_scopes;
    rec.created_at_ms = ctl_token_now_ms();
    rec.note = (char *)note;

    char err[1024];
    /* The topic exists when rules were loaded; a first token may come before that. */
    if (rulesync_ensure_topics(cfg, NULL, 0, NULL, err, sizeof(err)))
        return ctl_fail("creating topics: %s", err);
    /* Kafka first: it is the durable copy; Redis is rebuilt from it when needed. */
    if (ctl_token_publish(cfg, &rec, err, sizeof(err)))
        return ctl_fail("publishing the token record to Kafka: %s; no token was created", err);
    redisContext *c = redis_connect(config_get(cfg, "redis.url"), 5000, err, sizeof(err));
    redis_pipe_t *p = redis_pipe_create();
    int rc = 1;
    if (!c || !p) {
        ctl_fail("token %s is in Kafka but not in Redis (%s): run jrpctl rebuild", id,
                 c ? "out of memory" : err);
        goto done;
    }
    char key[512], idkey[512], created[32];
    ctl_token_keys(cfg, hash, id, key, sizeof(key), idkey, sizeof(idkey));
    snprintf(created, sizeof(created), "%lld", (long long)rec.created_at_ms);
    if (redis_pipe_addv(p, "HSET", key, "id", id, "department", dept, "scopes", scope_text,
                        "created_at_ms", created, "revoked_at_ms", "0", "sha256", hash, "note",
                        note, NULL) ||
        redis_pipe_addv(p, "SET", idkey, hash, NULL) || ctl_token_exec(c, p, err, sizeof(err))) {
        ctl_fail("token %s is in Kafka but not in Redis (%s): run jrpctl rebuild", id, err);
        goto done;
    }
    printf("id:          %s\ndepartment:  %s\nscopes:      %s\ntoken:       %s\n", id, dept,
           scope_text, token);
    fprintf(stderr, "Keep the token now: it is shown only this once (jrp stores its SHA-256).\n");
    rc = 0;
done:
    OPENSSL_cleanse(secret, sizeof(secret));
    OPENSSL_cleanse(token, sizeof(token));
    redis_pipe_destroy(p);
    if (c)
        redisFree(c);
    return rc;
}

/* Fields of a token's hash, in this order. */
static const char *const ctl_token_fields[] = {
    "id", "department", "scopes", "created_at_ms", "revoked_at_ms", "sha256", "note"};
#define CTL_TOKEN_NFIELDS (sizeof(ctl_token_fields) / sizeof(ctl_token_fields[0]))

typedef struct ctl_token_row_s {
    char v[CTL_TOKEN_NFIELDS][256];
} ctl_token_row_t;

/* Read the hash of token id into row. 0, 1 when unknown, -1 on error. */
static int ctl_token_read(const config_t *cfg, redisContext *c, const char *id,
                          ctl_token_row_t *row, char *errstr, size_t errstr_size)
{
    char idkey[512], key[512];
    ctl_token_keys(cfg, NULL, id, NULL, 0, idkey, sizeof(idkey));
    redis_pipe_t *p = redis_pipe_create();
    int rc = -1;
    if (!p || redis_pipe_addv(p, "GET", idkey, NULL) || ctl_token_exec(c, p, errstr, errstr_size))
        goto done;
    const redisReply *r = redis_pipe_reply(p, 0);
    if (r->type != REDIS_REPLY_STRING || r->len != 64) {
        rc = 1;
        goto done;
    }
    char hash[65];
    memcpy(hash, r->str, 64);
    hash[64] = '\0';
    ctl_token_keys(cfg, hash, NULL, key, sizeof(key), NULL, 0);
    redis_pipe_reset(p);
    const char *argv[2 + CTL_TOKEN_NFIELDS] = {"HMGET", key};
    for (size_t i = 0; i < CTL_TOKEN_NFIELDS; i++)
        argv[2 + i] = ctl_token_fields[i];
    if (redis_pipe_add(p, 2 + (int)CTL_TOKEN_NFIELDS, argv, NULL) ||
        ctl_token_exec(c, p, errstr, errstr_size))
        goto done;
    r = redis_pipe_reply(p, 0);
    if (r->type != REDIS_REPLY_ARRAY || r->elements != CTL_TOKEN_NFIELDS ||
        r->element[0]->type != REDIS_REPLY_STRING) {
        rc = 1;
        goto done;
    }
    for (size_t i = 0; i < CTL_TOKEN_NFIELDS; i++) {
        const redisReply *e = r->element[i];
        size_t n = e->type == REDIS_REPLY_STRING ? e->len : 0;
        if (n >= sizeof(row->v[i]))
            n = sizeof(row->v[i]) - 1;
        memcpy(row->v[i], n ? e->str : "", n);
        row->v[i][n] = '\0';
    }
    rc = 0;
done:
    if (!p)
        snprintf(errstr, errstr_size, "out of memory");
    redis_pipe_destroy(p);
    return rc;
}

static int ctl_token_revoke(config_t *cfg, int argc, char **argv)
{
    if (argc != 2)
        return ctl_fail("token revoke takes one TOKEN_ID (jrpctl token list shows them)");
    const char *id = argv[1];
    char err[1024];
    redisContext *c = redis_connect(config_get(cfg, "redis.url"), 5000, err, sizeof(err));
    if (!c)
        return ctl_fail("%s", err);
    int rc = 1;
    redis_pipe_t *p = NULL;
    ctl_token_row_t row;
    int got = ctl_token_read(cfg, c, id, &row, err, sizeof(err));
    if (got) {
        ctl_fail(got > 0 ? "no token %s in Redis (jrpctl token list shows them)" : "%s",
                 got > 0 ? id : err);
        goto done;
    }
    if (strcmp(row.v[4], "0") != 0 && row.v[4][0]) {
        printf("token %s was already revoked (at %s ms)\n", id, row.v[4]);
        rc = 0;
        goto done;
    }
    /* The record is republished whole: on a compacted topic only the latest one stays. */
    char *scope_list[CTL_TOKEN_NSCOPES];
    size_t n_scopes = 0;
    for (char *s = strtok(row.v[2], " "); s && n_scopes < CTL_TOKEN_NSCOPES; s = strtok(NULL, " "))
        scope_list[n_scopes++] = s;
    Jrp__V1__TokenRecord rec;
    jrp__v1__token_record__init(&rec);
    rec.token_id = row.v[0];
    rec.department = row.v[1];
    rec.scopes = scope_list;
    rec.n_scopes = n_scopes;
    rec.created_at_ms = strtoll(row.v[3], NULL, 10);
    rec.revoked_at_ms = ctl_token_now_ms();
    rec.token_sha256 = row.v[5];
    rec.note = row.v[6];
    if (ctl_token_publish(cfg, &rec, err, sizeof(err))) {
        ctl_fail("publishing the revocation to Kafka: %s; the token is still valid", err);
        goto done;
    }
    char key[512], revoked[32];
    ctl_token_keys(cfg, row.v[5], NULL, key, sizeof(key), NULL, 0);
    snprintf(revoked, sizeof(revoked), "%lld", (long long)rec.revoked_at_ms);
    p = redis_pipe_create();
    if (!p || redis_pipe_addv(p, "HSET", key, "revoked_at_ms", revoked, NULL) ||
        ctl_token_exec(c, p, err, sizeof(err))) {
        ctl_fail("the revocation of %s is in Kafka but not in Redis (%s): run jrpctl rebuild", id,
                 p ? err : "out of memory");
        goto done;
    }
    printf("revoked token %s (department %s); gateways refuse it within gateway.token_cache_ms\n",
           id, row.v[1]);
    rc = 0;
done:
    redis_pipe_destroy(p);
    redisFree(c);
    return rc;
}

static int ctl_token_list(config_t *cfg, int argc, char **argv)
{
    (void)argv;
    if (argc != 1)
        return ctl_fail("token list takes no arguments");
    char err[1024], pattern[512], cursor[32] = "0";
    redisContext *c = redis_connect(config_get(cfg, "redis.url"), 5000, err, sizeof(err));
    if (!c)
        return ctl_fail("%s", err);
    redis_pipe_t *p = redis_pipe_create();
    int rc = 1, shown = 0;
    ctl_token_keys(cfg, NULL, "*", NULL, 0, pattern, sizeof(pattern));
    size_t skip = strlen(pattern) - 1; /* the id follows the pattern's text before '*' */
    if (!p) {
        ctl_fail("out of memory");
        goto done;
    }
    do {
        redis_pipe_reset(p);
        if (redis_pipe_addv(p, "SCAN", cursor, "MATCH", pattern, "COUNT", "1000", NULL) ||
            ctl_token_exec(c, p, err, sizeof(err))) {
            ctl_fail("%s", err);
            goto done;
        }
        const redisReply *r = redis_pipe_reply(p, 0);
        if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
            r->element[0]->type != REDIS_REPLY_STRING || r->element[1]->type != REDIS_REPLY_ARRAY) {
            ctl_fail("redis: unexpected reply to SCAN");
            goto done;
        }
        snprintf(cursor, sizeof(cursor), "%.*s", (int)r->element[0]->len, r->element[0]->str);
        size_t n = r->element[1]->elements;
        char **ids = calloc(n ? n : 1, sizeof(char *));
        for (size_t i = 0; ids && i < n; i++) {
            const redisReply *k = r->element[1]->element[i];
            if (k->type == REDIS_REPLY_STRING && k->len > skip)
                ids[i] = strndup(k->str + skip, k->len - skip);
        }
        for (size_t i = 0; ids && i < n; i++) {
            ctl_token_row_t row;
            if (!ids[i] || ctl_token_read(cfg, c, ids[i], &row, err, sizeof(err)) != 0)
                continue;
            if (!shown++)
                printf("%-21s %-16s %-20s %-36s %s\n", "id", "department", "created (UTC)",
                       "scopes", "revoked");
            char when[32] = "?";
            time_t t = (time_t)(strtoll(row.v[3], NULL, 10) / 1000);
            struct tm tm;
            if (gmtime_r(&t, &tm))
                strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", &tm);
            int revoked = row.v[4][0] && strcmp(row.v[4], "0") != 0;
            printf("%-21s %-16s %-20s %-36s %s\n", row.v[0], row.v[1], when, row.v[2],
                   revoked ? "yes" : "no");
        }
        for (size_t i = 0; ids && i < n; i++)
            free(ids[i]);
        free(ids);
    } while (strcmp(cursor, "0") != 0);
    if (!shown)
        printf("no tokens (jrpctl token create --department D)\n");
    rc = 0;
done:
    redis_pipe_destroy(p);
    redisFree(c);
    return rc;
}

int ctl_token(config_t *cfg, int argc, char **argv)
{
    if (argc < 2)
        return ctl_token_usage(stderr, 2);
    if (ctl_wants_help(argc, argv))
        return ctl_token_usage(stdout, 0);
    if (!strcmp(argv[1], "create"))
        return ctl_token_create(cfg, argc - 1, argv + 1);
    if (!strcmp(argv[1], "revoke"))
        return ctl_token_revoke(cfg, argc - 1, argv + 1);
    if (!strcmp(argv[1], "list"))
        return ctl_token_list(cfg, argc - 1, argv + 1);
    return ctl_fail("unknown token command \"%s\" (jrpctl token --help)", argv[1]);
}
