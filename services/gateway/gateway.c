/*
 * gateway: the service behind gateway.h. One libuv loop carries the HTTP servers, the Kafka
 * producer (its main queue wakes the loop through the kafka_uv bridge; delivery reports run on
 * the loop) and the asynchronous Redis client. Each API request becomes a context that lives
 * until its last asynchronous step has called back, and is answered exactly once: by its own
 * steps, or with 503 when gateway.request_timeout_ms passes first.
 */
#include "gateway.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>

#include "check.h"
#include "gateway_api.h"
#include "hash.h"
#include "http.h"
#include "ids.h"
#include "jrp/v1/check.pb-c.h"
#include "jrp/v1/rules.pb-c.h"
#include "jrp/v1/state.pb-c.h"
#include "kafka.h"
#include "log.h"
#include "pbjson.h"
#include "redis.h"
#include "report.h"
#include "rules.h"

/* Deadlines are checked this often; the Kafka probe is scheduled from the same timer. */
#define GW_CRON_MS 100
/* The token cache: direct-mapped by hash, so its size is fixed and a lookup is O(1). */
#define GW_TOKEN_SLOTS 1024
/* Rule-set versions kept for the measures' texts (versions are immutable: never refreshed). */
#define GW_RULES_SLOTS 16
/* A metadata request that proves a broker answers (for /readyz and after "all brokers down"). */
#define GW_PROBE_TIMEOUT_MS 2000
#define GW_PROBE_EVERY_MS 1000
/* Shutdown: how long the producer may take to deliver what is queued. */
#define GW_FLUSH_MS 10000
/* Credit-check answers kept, keyed by subject and department (direct-mapped), and the largest
 * state whose answer is kept. */
#define GW_ANSWER_SLOTS 512
#define GW_ANSWER_STATE_MAX 16384
#define GW_BUSINESS_ITEM_MAX 256
#define GW_KEY_MAX 512

static const char gw_json[] = "application/json";
static const char gw_retry[] = "Retry-After: 1\r\n";
static const char gw_bearer_challenge[] = "WWW-Authenticate: Bearer realm=\"jrp\"\r\n";
static const char gw_bearer_invalid[] =
    "WWW-Authenticate: Bearer realm=\"jrp\", error=\"invalid_token\"\r\n";

typedef struct gw_token_s {
    char id[64];
    char department[64];
    unsigned scopes;
    int64_t revoked_at_ms;
} gw_token_t;

typedef struct gw_token_slot_s {
    uint8_t hash[32];
    int used;
    int found;           /* 0: the hash is known not to be a token (cached refusal) */
    uint64_t expires_ms; /* loop time */
    gw_token_t tok;
} gw_token_slot_t;

typedef struct gw_rules_slot_s {
    int64_t version;
    Jrp__V1__RuleSet *rs; /* its files dropped: only the memoranda and catalogue are used */
    uint64_t used_ms;
} gw_rules_slot_t;

/*
 * What a credit check derives from a subject's state for one department (or all): the measures
 * in force, with their texts, as JSON and as CheckRecord field 6. It depends only on the state's
 * bytes, the rule sets (versions are immutable) and the clock (a measure lapses at its
 * valid_until_ms), so it is kept with the exact bytes it came from and reused until then.
 */
typedef struct gw_answer_s {
    char key[GW_KEY_MAX]; /* the subject key; "" when the slot is empty */
    char department[64];
    int all_departments;
    uint8_t *state; /* the state's bytes as Redis gave them (NULL, 0: no state) */
    size_t state_len;
    char *name;         /* the state's subject name, or NULL */
    int64_t until_ms;   /* wall clock: the first valid_until_ms after it was made */
    char *json;         /* "[...]" */
    size_t json_len, n; /* n: how many measures */
    uint8_t *pb;        /* CheckRecord.measures on the wire (tag, length, Action) each */
    size_t pb_len;
} gw_answer_t;

/* What a request waits for, to say which part did not answer when its deadline passes. */
typedef enum { GW_WAIT_NONE = 0, GW_WAIT_REDIS, GW_WAIT_KAFKA, GW_WAIT_PROBE } gw_wait_t;

typedef struct gw_ctx_s gw_ctx_t;
typedef void gw_step_fn(gw_ctx_t *ctx);

/* One HTTP server and the routes it serves. */
typedef struct gw_server_s {
    gateway_t *gw;
    http_server_t *srv;
    int api; /* serves the API routes */
    int ops; /* serves /healthz, /readyz, /metrics */
} gw_server_t;

/*
 * A request in progress. refs counts the holders: the synchronous call chain that is running
 * it, and each asynchronous step not yet called back (a Redis command, a record waiting for its
 * delivery report, a probe in the thread pool). The context is freed when the last one lets go;
 * req is NULL once the request has been answered.
 */
struct gw_ctx_s {
    gateway_t *gw;
    http_request_t *req;
    gateway_route_t route;
    int refs;
    uint64_t t0_ns;
    uint64_t deadline_ms;
    gw_wait_t waiting;
    gw_ctx_t *prev, *next; /* gw->inflight, in deadline order */
    int listed;

    uint8_t hash[32];
    gw_token_t tok;
    char traceparent[64];

    /* Records produced for this request. */
    size_t dr_pending, dr_failed, queued;
    rd_kafka_resp_err_t dr_err;
    gw_step_fn *on_produced;
    int check_unacked; /* a check answered before its record was acknowledged (queued) */
    char check_id[33];
    char *answer; /* the success body, made before the acknowledgements arrive */
    size_t answer_len;
    size_t n_records;

    /* The credit check. */
    ids_subject_type_t type;
    char id[GATEWAY_SUBJECT_ID_MAX + 1];
    char key[GW_KEY_MAX];
    char department[64];
    int all_departments;
    char business_item[GW_BUSINESS_ITEM_MAX + 1];
    Jrp__V1__SubjectState *state;
    uint8_t *state_raw; /* its bytes, to key the answer kept for it (NULL if not kept) */
    size_t state_raw_len;
    size_t rules_pending;
    int rules_error; /* 0, or the HTTP status to answer once every rule set has come back */
    const char *rules_code;
    char rules_msg[160];

    /* /readyz */
    int ready_pending;
    int kafka_ok, redis_ok, rules_ok;
    char kafka_msg[256], redis_msg[256], rules_msg_r[256];
    uv_work_t work;
    rd_kafka_resp_err_t probe_err;

    /* GET /v1/reports/effects: read in the thread pool (common/report). */
    int64_t report_from, report_to, report_now;
    int report_list; /* GW_REPORT_EFFECTS, _SUBJECTS, _MEASURES */
    int report_csv, report_status;
    char report_err[320];
};

struct gateway_s {
    uv_loop_t *loop;
    const config_t *cfg;
    gw_server_t api, ops;
    int has_ops;
    int servers_open;

    rd_kafka_t *rk;
    rd_kafka_queue_t *mainq;
    kafka_uv_t *bridge;
    long long queue_max; /* queue.buffering.max.messages */

    redis_async_t *ra;
    int redis_up;

    uv_timer_t cron;
    int cron_open;

    char topic_events[256], topic_feedback[256], topic_checks[256];
    char prefix[128];
    size_t max_batch, max_inflight;
    uint64_t request_timeout_ms, token_cache_ms;
    int check_queued; /* gateway.check_record = queued: answer once the record is queued */

    gw_ctx_t *head, *tail;
    size_t inflight;

    gw_token_slot_t *tokens;
    EVP_MD *sha256; /* fetched once; md_ctx reused for every token */
    EVP_MD_CTX *md_ctx;
    gw_rules_slot_t rules[GW_RULES_SLOTS];
    gw_answer_t *answers;

    /* Kafka's health: suspect after "all brokers down", down once a probe failed too. */
    int kafka_suspect, kafka_down;
    uv_work_t probe;
    int probe_running;
    rd_kafka_resp_err_t probe_err;
    uint64_t next_probe_ms;

    char check_prefix[17]; /* hex of 64 random bits: check ids are this and a counter */
    uint64_t check_seq;

    gateway_metrics_t m;
    int stopping, failed;
    int stop_waiting; /* the cron's close and a running probe */
    void (*on_stopped)(void *arg);
    void *on_stopped_arg;
};

/* ---- small helpers --------------------------------------------------------------------------
 */

static int64_t gw_wall_ms(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

static void gw_hex(const uint8_t *b, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[b[i] >> 4];
        out[2 * i + 1] = digits[b[i] & 15];
    }
    out[2 * n] = '\0';
}

/* SHA-256 with the digest fetched once and its context reused: the implicit fetch of
 * EVP_Digest(EVP_sha256()) took 0.7 us of every request, this 0.2 us. */
static int gw_sha256(gateway_t *gw, const void *data, size_t len, uint8_t out[32])
{
    unsigned int n = 0;
    return EVP_DigestInit_ex2(gw->md_ctx, gw->sha256, NULL) == 1 &&
                   EVP_DigestUpdate(gw->md_ctx, data, len) == 1 &&
                   EVP_DigestFinal_ex(gw->md_ctx, out, &n) == 1 && n == 32
               ? 0
               : -1;
}

static int gw_parse_i64(const char *s, size_t len, int64_t *out)
{
    char buf[32];
    if (len == 0 || len >= sizeof(buf))
        return -1;
    memcpy(buf, s, len);
    buf[len] = '\0';
    char *end;
    errno = 0;
    long long v = strtoll(buf, &end, 10);
    if (errno || *end)
        return -1;
    *out = v;
    return 0;
}

/* Copy a Redis string reply into out (NUL-terminated); "" for nil or anything else. */
static void gw_reply_str(const redisReply *r, char *out, size_t size)
{
    size_t n = 0;
    if (r && r->type == REDIS_REPLY_STRING)
        n = r->len < size - 1 ? r->len : size - 1;
    if (n)
        memcpy(out, r->str, n);
    out[n] = '\0';
}

/* ---- answering ------------------------------------------------------------------------------
 */

static void gw_respond(gateway_t *gw, http_request_t *req, gateway_route_t route, uint64_t t0_ns,
                       int status, const char *content_type, const char *body, size_t len,
                       const char *extra)
{
    gateway_metrics_request(&gw->m, route, status, (double)(uv_hrtime() - t0_ns) / 1e9);
    /* -1 only when the client has gone: the answer is dropped, which is all we could do. */
    (void)http_respond(req, status, content_type, body, len, extra);
}

static void gw_respond_error(gateway_t *gw, http_request_t *req, gateway_route_t route,
                             uint64_t t0_ns, int status, const char *code, const char *message,
                             const char *field, const char *extra)
{
    size_t len = 0;
    char *body = gateway_api_error1(code, message, field, &len);
    if (!body) {
        static const char oom[] =
            "{\"error\":{\"code\":\"no_memory\",\"message\":\"out of memory\"}}";
        gw_respond(gw, req, route, t0_ns, status, gw_json, oom, sizeof(oom) - 1, extra);
        return;
    }
    gw_respond(gw, req, route, t0_ns, status, gw_json, body, len, extra);
    free(body);
}

static void ctx_list_remove(gw_ctx_t *ctx)
{
    gateway_t *gw = ctx->gw;
    if (!ctx->listed)
        return;
    if (ctx->prev)
        ctx->prev->next = ctx->next;
    else
        gw->head = ctx->next;
    if (ctx->next)
        ctx->next->prev = ctx->prev;
    else
        gw->tail = ctx->prev;
    ctx->prev = ctx->next = NULL;
    ctx->listed = 0;
    gw->inflight--;
}

/* Answer ctx's request (once; later calls do nothing). */
static void ctx_respond(gw_ctx_t *ctx, int status, const char *content_type, const char *body,
                        size_t len, const char *extra)
{
    if (!ctx->req)
        return;
    http_request_t *req = ctx->req;
    ctx->req = NULL;
    ctx_list_remove(ctx);
    gw_respond(ctx->gw, req, ctx->route, ctx->t0_ns, status, content_type, body, len, extra);
}

static void ctx_error(gw_ctx_t *ctx, int status, const char *code, const char *message,
                      const char *field, const char *extra)
{
    if (!ctx->req)
        return;
    http_request_t *req = ctx->req;
    ctx->req = NULL;
    ctx_list_remove(ctx);
    gw_respond_error(ctx->gw, req, ctx->route, ctx->t0_ns, status, code, message, field, extra);
}

static void ctx_errlist(gw_ctx_t *ctx, int status, const errlist_t *el)
{
    size_t len = 0;
    char *body = gateway_api_error_body(el, &len);
    if (!body) {
        ctx_error(ctx, 500, "no_memory", "out of memory", NULL, NULL);
        return;
    }
    ctx_respond(ctx, status, gw_json, body, len, NULL);
    free(body);
}

static gw_ctx_t *ctx_new(gateway_t *gw, http_request_t *req, gateway_route_t route, uint64_t t0)
{
    gw_ctx_t *ctx = calloc(1, sizeof(*ctx));
    if (!ctx)
        return NULL;
    ctx->gw = gw;
    ctx->req = req;
    ctx->route = route;
    ctx->refs = 1; /* the caller's */
    ctx->t0_ns = t0;
    ctx->deadline_ms = uv_now(gw->loop) + gw->request_timeout_ms;
    /* Every request gets the same timeout, so appending keeps the list in deadline order. */
    ctx->prev = gw->tail;
    if (gw->tail)
        gw->tail->next = ctx;
    else
        gw->head = ctx;
    gw->tail = ctx;
    ctx->listed = 1;
    gw->inflight++;
    return ctx;
}

static void ctx_ref(gw_ctx_t *ctx)
{
    ctx->refs++;
}

static void ctx_unref(gw_ctx_t *ctx)
{
    if (--ctx->refs > 0)
        return;
    /* Every path answers before letting go; this is the safety net if one did not. */
    ctx_error(ctx, 500, "internal_error", "the request was not answered", NULL, NULL);
    ctx_list_remove(ctx);
    if (ctx->state)
        rules_state_free(ctx->state);
    free(ctx->state_raw);
    free(ctx->answer);
    free(ctx);
}

/* ---- Kafka ----------------------------------------------------------------------------------
 */

/* Can a request that will produce n records go ahead? Answers 503 or 429 itself if not. */
static int gw_kafka_usable(gw_ctx_t *ctx, size_t n)
{
    gateway_t *gw = ctx->gw;
    if (gw->failed || gw->kafka_down) {
        gw->m.kafka_down_refusals++;
        /* The broker's address and error stay in the log; a client learns what it can act on. */
        int check = ctx->route == GATEWAY_ROUTE_MEASURES;
        ctx_error(ctx, 503, "kafka_unavailable",
                  gw->failed ? "the gateway's Kafka producer failed; try another gateway"
                  : check    ? "no Kafka broker is reachable to record the check, and a check is "
                               "answered only once recorded: try again"
                             : "no Kafka broker is reachable; nothing was accepted: try again",
                  NULL, gw_retry);
        return 0;
    }
    if ((long long)rd_kafka_outq_len(gw->rk) + (long long)n > gw->queue_max) {
        gw->m.overload_refusals++;
        ctx_error(ctx, 429, "too_many_requests",
                  "the gateway's Kafka queue is full; nothing was accepted: try again shortly",
                  NULL, gw_retry);
        return 0;
    }
    return 1;
}

/* Queue one record for ctx; its delivery report comes to gw_on_delivery. 0 or -1. */
static int gw_produce(gw_ctx_t *ctx, const char *topic, const char *key, const void *value,
                      size_t len, const char *schema)
{
    gateway_t *gw = ctx->gw;
    rd_kafka_headers_t *hdrs = kafka_headers(schema, ctx->traceparent);
    ctx_ref(ctx); /* the delivery report's */
    ctx->dr_pending++;
    rd_kafka_resp_err_t err = kafka_produce(gw->rk, topic, RD_KAFKA_PARTITION_UA, key, strlen(key),
                                            value, len, hdrs, ctx); /* hdrs now owned */
    if (err) {
        ctx->dr_pending--;
        ctx->dr_failed++;
        if (!ctx->dr_err)
            ctx->dr_err = err;
        gw->m.produce_errors++;
        ctx_unref(ctx); /* never the last: the caller holds one */
        return -1;
    }
    ctx->queued++;
    ctx->waiting = GW_WAIT_KAFKA;
    return 0;
}

/* After the last gw_produce of a request: if nothing is pending (all failed), finish now. */
static void gw_produce_settle(gw_ctx_t *ctx)
{
    if (ctx->dr_pending == 0 && ctx->on_produced && ctx->req)
        ctx->on_produced(ctx);
}

static void gw_on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    gateway_t *gw = opaque;
    gw_ctx_t *ctx = m->_private;
    (void)rk;
    if (m->err) {
        gw->m.produce_errors++;
        gw->kafka_suspect = 1; /* the next cron tick probes the brokers */
        log_warn("delivery to %s failed: %s", rd_kafka_topic_name(m->rkt),
                 rd_kafka_err2str(m->err));
    } else if (gw->kafka_suspect || gw->kafka_down) {
        if (gw->kafka_down)
            log_info("Kafka is reachable again");
        gw->kafka_suspect = gw->kafka_down = 0;
    }
    if (!ctx)
        return;
    if (m->err) {
        ctx->dr_failed++;
        if (!ctx->dr_err)
            ctx->dr_err = m->err;
    }
    if (ctx->check_unacked) {
        /* gateway.check_record = queued: the answer is out; what is left is to count it. */
        if (m->err) {
            gw->m.checks_unrecorded++;
            log_error("check %s was answered but its record was not written: %s", ctx->check_id,
                      rd_kafka_err2str(m->err));
        } else {
            gw->m.checks_recorded++;
        }
    }
    if (ctx->dr_pending)
        ctx->dr_pending--;
    if (ctx->dr_pending == 0 && ctx->on_produced && ctx->req)
        ctx->on_produced(ctx);
    ctx_unref(ctx);
}

static void gw_on_kafka_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    gateway_t *gw = opaque;
    if (err == RD_KAFKA_RESP_ERR__FATAL) {
        char why[512];
        rd_kafka_fatal_error(rk, why, sizeof(why));
        log_error("fatal Kafka error: %s; stopping", why);
        gw->failed = 1;
        uv_stop(gw->loop);
        return;
    }
    if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN || err == RD_KAFKA_RESP_ERR__TRANSPORT ||
        err == RD_KAFKA_RESP_ERR__RESOLVE) {
        /* Confirmed (or not) by the next probe before requests are refused at once. */
        gw->kafka_suspect = 1;
    }
    log_warn("kafka: %s: %s", rd_kafka_err2name((rd_kafka_resp_err_t)err), reason);
}

static void gw_on_kafka_ready(void *arg)
{
    gateway_t *gw = arg;
    rd_kafka_poll(gw->rk, 0); /* delivery reports and errors, on the loop thread */
}

/* In the thread pool: does a broker answer a metadata request? */
static rd_kafka_resp_err_t gw_probe_kafka(rd_kafka_t *rk)
{
    const rd_kafka_metadata_t *md = NULL;
    rd_kafka_resp_err_t err = rd_kafka_metadata(rk, 0, NULL, &md, GW_PROBE_TIMEOUT_MS);
    if (md)
        rd_kafka_metadata_destroy(md);
    return err;
}

static void gw_stop_step(gateway_t *gw);

static void gw_probe_work(uv_work_t *w)
{
    gateway_t *gw = w->data;
    gw->probe_err = gw_probe_kafka(gw->rk);
}

static void gw_probe_done(uv_work_t *w, int status)
{
    gateway_t *gw = w->data;
    gw->probe_running = 0;
    gw->next_probe_ms = uv_now(gw->loop) + GW_PROBE_EVERY_MS;
    if (status == 0 && gw->probe_err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        if (gw->kafka_down)
            log_info("Kafka is reachable again");
        gw->kafka_suspect = gw->kafka_down = 0;
    } else if (gw->kafka_suspect || gw->kafka_down) {
        if (!gw->kafka_down)
            log_warn("no Kafka broker answers (%s): refusing requests with 503 until one does",
                     rd_kafka_err2str(gw->probe_err));
        gw->kafka_down = 1;
    }
    if (gw->stopping) {
        gw->stop_waiting--;
        gw_stop_step(gw);
    }
}

static void gw_probe_start(gateway_t *gw)
{
    if (gw->probe_running || gw->stopping)
        return;
    gw->probe.data = gw;
    if (uv_queue_work(gw->loop, &gw->probe, gw_probe_work, gw_probe_done) == 0)
        gw->probe_running = 1;
}

/* ---- Redis ----------------------------------------------------------------------------------
 */

static void gw_on_redis_state(redis_async_t *ra, int connected, void *arg)
{
    gateway_t *gw = arg;
    (void)ra;
    if (connected != gw->redis_up)
        log_info("redis %s", connected ? "connected" : "disconnected; reconnecting");
    gw->redis_up = connected;
}

/* Send a command for ctx (which must still be answering). The callback gets ctx. */
static void gw_redis(gw_ctx_t *ctx, redis_async_reply_cb *cb, void *arg, int argc,
                     const char **argv)
{
    ctx_ref(ctx); /* the callback's; it runs exactly once, maybe right now */
    ctx->waiting = GW_WAIT_REDIS;
    /* A failure calls cb with NULL at once, which answers 503: nothing more to do here. */
    (void)redis_async_command(ctx->gw->ra, cb, arg, argc, argv, NULL);
}

/* Was reply a usable answer? If not, count it and answer ctx 503. */
static int gw_redis_ok(gw_ctx_t *ctx, const redisReply *reply)
{
    if (reply && reply->type != REDIS_REPLY_ERROR)
        return 1;
    ctx->gw->m.redis_errors++;
    char msg[320];
    if (reply)
        snprintf(msg, sizeof(msg), "Redis answered an error: %.200s", reply->str);
    else
        snprintf(msg, sizeof(msg), "Redis is not reachable%s: try again",
                 ctx->gw->redis_up ? " (connection lost)" : "");
    ctx_error(ctx, 503, "redis_unavailable", msg, NULL, gw_retry);
    return 0;
}

/* ---- tokens ---------------------------------------------------------------------------------
 */

static void gw_route_step(gw_ctx_t *ctx);

static gw_token_slot_t *gw_token_slot(gateway_t *gw, const uint8_t hash[32])
{
    return &gw->tokens[((unsigned)hash[0] | (unsigned)hash[1] << 8) % GW_TOKEN_SLOTS];
}

/* tok is the token's record, or NULL when the hash is no token. Answers 401/403 or goes on. */
static void gw_auth_decide(gw_ctx_t *ctx, const gw_token_t *tok)
{
    if (!tok) {
        ctx_error(ctx, 401, "invalid_token", "the bearer token is not known to jrp", NULL,
                  gw_bearer_invalid);
        return;
    }
    if (tok->revoked_at_ms) {
        char msg[160];
        snprintf(msg, sizeof(msg), "token %s has been revoked", tok->id);
        ctx_error(ctx, 401, "token_revoked", msg, NULL, gw_bearer_invalid);
        return;
    }
    ctx->tok = *tok;
    unsigned need = gateway_api_route_scope(ctx->route);
    if (!(tok->scopes & GATEWAY_SCOPE_ADMIN) && !(tok->scopes & need)) {
        char have[128], msg[320];
        gateway_api_scopes_format(tok->scopes, have, sizeof(have));
        snprintf(msg, sizeof(msg),
                 "token %s (department %s, scopes: %s) may not do this: %s %s "
                 "needs the scope %s",
                 tok->id, tok->department, have[0] ? have : "none",
                 gateway_api_route_method(ctx->route), gateway_api_route_name(ctx->route),
                 gateway_api_scope_name(need));
        ctx_error(ctx, 403, "forbidden", msg, NULL, NULL);
        return;
    }
    gw_route_step(ctx);
}

static void gw_on_token(redis_async_t *ra, redisReply *reply, void *arg)
{
    gw_ctx_t *ctx = arg;
    gateway_t *gw = ctx->gw;
    (void)ra;
    if (!ctx->req) {
        ctx_unref(ctx);
        return;
    }
    if (!gw_redis_ok(ctx, reply) || reply->type != REDIS_REPLY_ARRAY || reply->elements != 5) {
        if (ctx->req) {
            gw->m.redis_errors++;
            ctx_error(ctx, 503, "redis_unavailable", "unexpected reply to a token lookup", NULL,
                      gw_retry);
        }
        ctx_unref(ctx);
        return;
    }
    gw_token_t tok;
    memset(&tok, 0, sizeof(tok));
    int found = reply->element[0]->type == REDIS_REPLY_STRING;
    if (found) {
        char stored[80], scopes[256], revoked[32];
        char hex[65];
        gw_reply_str(reply->element[0], tok.id, sizeof(tok.id));
        gw_reply_str(reply->element[1], tok.department, sizeof(tok.department));
        gw_reply_str(reply->element[2], scopes, sizeof(scopes));
        gw_reply_str(reply->element[3], revoked, sizeof(revoked));
        gw_reply_str(reply->element[4], stored, sizeof(stored));
        tok.scopes = gateway_api_scopes_parse(scopes);
        if (revoked[0] && gw_parse_i64(revoked, strlen(revoked), &tok.revoked_at_ms))
            tok.revoked_at_ms = 1; /* unreadable: refuse rather than trust */
        /* The key already matched the hash; the final comparison is constant-time anyway. */
        gw_hex(ctx->hash, 32, hex);
        if (strlen(stored) != 64 || CRYPTO_memcmp(stored, hex, 64) != 0)
            found = 0;
    }
    if (gw->token_cache_ms) {
        gw_token_slot_t *slot = gw_token_slot(gw, ctx->hash);
        memcpy(slot->hash, ctx->hash, 32);
        slot->used = 1;
        slot->found = found;
        slot->tok = tok;
        slot->expires_ms = uv_now(gw->loop) + gw->token_cache_ms;
    }
    ctx->waiting = GW_WAIT_NONE;
    gw_auth_decide(ctx, found ? &tok : NULL);
    ctx_unref(ctx);
}

static void gw_auth(gw_ctx_t *ctx)
{
    gateway_t *gw = ctx->gw;
    const char *token;
    size_t len;
    int rc = gateway_api_bearer(http_request_header(ctx->req, "authorization"), &token, &len);
    if (rc == -1) {
        ctx_error(ctx, 401, "unauthorized",
                  "this API needs a token: send \"Authorization: Bearer <token>\" (jrpctl token "
                  "create)",
                  NULL, gw_bearer_challenge);
        return;
    }
    if (rc != 0) {
        ctx_error(ctx, 401, "invalid_token",
                  "the Authorization header is not \"Bearer <token>\" with a well-formed token",
                  NULL, gw_bearer_invalid);
        return;
    }
    if (gw_sha256(gw, token, len, ctx->hash)) {
        ctx_error(ctx, 500, "internal_error", "cannot hash the token", NULL, NULL);
        return;
    }
    gw_token_slot_t *slot = gw_token_slot(gw, ctx->hash);
    if (slot->used && slot->expires_ms > uv_now(gw->loop) &&
        CRYPTO_memcmp(slot->hash, ctx->hash, 32) == 0) {
        gw->m.token_cache_hits++;
        gw_auth_decide(ctx, slot->found ? &slot->tok : NULL);
        return;
    }
    char hex[65], key[256];
    gw_hex(ctx->hash, 32, hex);
    snprintf(key, sizeof(key), "%stoken:%s", gw->prefix, hex);
    const char *argv[] = {"HMGET", key, "id", "department", "scopes", "revoked_at_ms", "sha256"};
    gw->m.token_lookups++;
    gw_redis(ctx, gw_on_token, ctx, 7, argv);
}

/* ---- POST /v1/events and POST /v1/feedback --------------------------------------------------
 */

/* A body must be JSON: a Content-Type, when given, must say so. Answers 415 if not. */
static int gw_json_body(gw_ctx_t *ctx)
{
    const char *ct = http_request_header(ctx->req, "content-type");
    if (!ct)
        return 1;
    ct += strspn(ct, " \t");
    size_t n = sizeof("application/json") - 1;
    if (strncasecmp(ct, "application/json", n) == 0 &&
        (ct[n] == '\0' || ct[n] == ';' || ct[n] == ' ' || ct[n] == '\t'))
        return 1;
    ctx_error(ctx, 415, "unsupported_media_type",
              "the request body must be JSON (Content-Type: application/json)", NULL, NULL);
    return 0;
}

static int gw_is_admin(const gw_ctx_t *ctx)
{
    return (ctx->tok.scopes & GATEWAY_SCOPE_ADMIN) != 0;
}

static void gw_produced(gw_ctx_t *ctx, uint64_t *accepted_counter, const char *what)
{
    if (ctx->dr_failed == 0) {
        *accepted_counter += ctx->n_records;
        ctx_respond(ctx, 202, gw_json, ctx->answer, ctx->answer_len, NULL);
        return;
    }
    char msg[400];
    snprintf(msg, sizeof(msg),
             "%zu of %zu %s not acknowledged by Kafka (%s); resend the whole request: repeated "
             "ids are recognised and ignored",
             ctx->dr_failed, ctx->n_records, what, rd_kafka_err2str(ctx->dr_err));
    ctx_error(ctx, 503, "kafka_unavailable", msg, NULL, gw_retry);
}

static void gw_events_produced(gw_ctx_t *ctx)
{
    gw_produced(ctx, &ctx->gw->m.events_accepted, ctx->n_records == 1 ? "event" : "events");
}

static void gw_feedback_produced(gw_ctx_t *ctx)
{
    gw_produced(ctx, &ctx->gw->m.feedback_accepted, "feedback records");
}

/* {"accepted": [ids]} */
static int gw_accepted_body(gw_ctx_t *ctx, const char *const *ids, size_t n)
{
    json_t *root = json_object(), *list = json_array();
    int rc = !root || !list || json_object_set_new(root, "accepted", list);
    if (rc && !root)
        json_decref(list);
    for (size_t i = 0; !rc && i < n; i++)
        rc = json_array_append_new(list, json_string(ids[i]));
    if (!rc) {
        ctx->answer = json_dumps(root, JSON_COMPACT);
        rc = !ctx->answer;
        if (!rc)
            ctx->answer_len = strlen(ctx->answer);
    }
    json_decref(root);
    return rc ? -1 : 0;
}

static void gw_events(gw_ctx_t *ctx)
{
    gateway_t *gw = ctx->gw;
    if (!gw_json_body(ctx))
        return;
    size_t len;
    const char *body = http_request_body(ctx->req, &len);
    errlist_t el;
    errlist_init(&el);
    Jrp__V1__CreditEvent **evs = NULL;
    size_t n = 0;
    int batch = 0;
    const char **ids = NULL;
    uint8_t *buf = NULL;
    int status = gateway_api_events_decode(body, len, gw->max_batch, &evs, &n, &batch, &el);
    if (status) {
        ctx_errlist(ctx, status, &el);
        goto done;
    }
    /* A department speaks for itself: its events name it as their source. */
    if (!gw_is_admin(ctx)) {
        for (size_t i = 0; i < n; i++) {
            if (strcmp(evs[i]->source_department, ctx->tok.department) == 0)
                continue;
            char path[48];
            if (batch)
                snprintf(path, sizeof(path), "events[%zu].source_department", i);
            else
                snprintf(path, sizeof(path), "source_department");
            (void)errlist_add(&el, NULL, path, "wrong_department",
                              "token %s speaks for department %s; this event's source_department "
                              "is %s",
                              ctx->tok.id, ctx->tok.department, evs[i]->source_department);
        }
        if (el.count) {
            ctx_errlist(ctx, 403, &el);
            goto done;
        }
    }
    if (!gw_kafka_usable(ctx, n))
        goto done;
    ids = malloc(n * sizeof(*ids));
    if (!ids) {
        ctx_error(ctx, 500, "no_memory", "out of memory", NULL, NULL);
        goto done;
    }
    for (size_t i = 0; i < n; i++)
        ids[i] = evs[i]->event_id;
    if (gw_accepted_body(ctx, ids, n)) {
        ctx_error(ctx, 500, "no_memory", "out of memory", NULL, NULL);
        goto done;
    }
    ctx->n_records = n;
    ctx->on_produced = gw_events_produced;
    for (size_t i = 0; i < n; i++) {
        char key[GW_KEY_MAX];
        size_t vlen = jrp__v1__credit_event__get_packed_size(evs[i]);
        uint8_t *p = realloc(buf, vlen ? vlen : 1);
        /* The codec checked the subject: a known type and a valid id, so the key fits. */
        if (!p || ids_subject_key((ids_subject_type_t)evs[i]->subject->type, evs[i]->subject->id,
                                  key, sizeof(key)) < 0) {
            ctx->dr_failed += n - i;
            if (!ctx->dr_err)
                ctx->dr_err = RD_KAFKA_RESP_ERR__FAIL;
            break;
        }
        buf = p;
        jrp__v1__credit_event__pack(evs[i], buf);
        /* A record that cannot be queued is counted in dr_failed: the answer is 503. */
        (void)gw_produce(ctx, gw->topic_events, key, buf, vlen,
                         jrp__v1__credit_event__descriptor.name);
    }
    gw_produce_settle(ctx);
done:
    free(buf);
    free(ids);
    gateway_api_events_free(evs, n);
    errlist_clear(&el);
}

static void gw_feedback(gw_ctx_t *ctx)
{
    gateway_t *gw = ctx->gw;
    if (!gw_json_body(ctx))
        return;
    size_t len;
    const char *body = http_request_body(ctx->req, &len);
    errlist_t el;
    errlist_init(&el);
    Jrp__V1__Feedback *fb = NULL;
    uint8_t *buf = NULL;
    int status = gateway_api_feedback_decode(body, len, &fb, &el);
    if (status) {
        ctx_errlist(ctx, status, &el);
        goto done;
    }
    /* A department reports only on its own actions. */
    if (!gw_is_admin(ctx) && strcmp(fb->department, ctx->tok.department) != 0) {
        char msg[512];
        snprintf(msg, sizeof(msg),
                 "token %s speaks for department %s; it may not send feedback for department %s",
                 ctx->tok.id, ctx->tok.department, fb->department);
        ctx_error(ctx, 403, "wrong_department", msg, "department", NULL);
        goto done;
    }
    if (!gw_kafka_usable(ctx, 1))
        goto done;
    const char *id = fb->action_id;
    if (gw_accepted_body(ctx, &id, 1)) {
        ctx_error(ctx, 500, "no_memory", "out of memory", NULL, NULL);
        goto done;
    }
    size_t vlen = jrp__v1__feedback__get_packed_size(fb);
    buf = malloc(vlen ? vlen : 1);
    if (!buf) {
        ctx_error(ctx, 500, "no_memory", "out of memory", NULL, NULL);
        goto done;
    }
    jrp__v1__feedback__pack(fb, buf);
    ctx->n_records = 1;
    ctx->on_produced = gw_feedback_produced;
    (void)gw_produce(ctx, gw->topic_feedback, fb->action_id, buf, vlen,
                     jrp__v1__feedback__descriptor.name);
    gw_produce_settle(ctx);
done:
    free(buf);
    if (fb)
        jrp__v1__feedback__free_unpacked(fb, NULL);
    errlist_clear(&el);
}

/* ---- the credit check: GET /v1/subjects/{type}/{id}/measures -------------------------------
 */

static Jrp__V1__RuleSet *gw_rules_find(gateway_t *gw, int64_t version)
{
    for (size_t i = 0; i < GW_RULES_SLOTS; i++)
        if (gw->rules[i].rs && gw->rules[i].version == version) {
            gw->rules[i].used_ms = uv_now(gw->loop);
            return gw->rules[i].rs;
        }
    return NULL;
}

/* Keep rs (taking ownership) unless that version is already kept. */
static void gw_rules_keep(gateway_t *gw, Jrp__V1__RuleSet *rs)
{
    if (gw_rules_find(gw, rs->version)) {
        jrp__v1__rule_set__free_unpacked(rs, NULL);
        return;
    }
    /* The files are most of a rule set's bytes and are not needed here. */
    for (size_t i = 0; i < rs->n_files; i++)
        jrp__v1__rule_file__free_unpacked(rs->files[i], NULL);
    free(rs->files);
    rs->files = NULL;
    rs->n_files = 0;
    size_t victim = 0;
    for (size_t i = 0; i < GW_RULES_SLOTS; i++) {
        if (!gw->rules[i].rs) {
            victim = i;
            break;
        }
        if (gw->rules[i].used_ms < gw->rules[victim].used_ms)
            victim = i;
    }
    if (gw->rules[victim].rs)
        jrp__v1__rule_set__free_unpacked(gw->rules[victim].rs, NULL);
    gw->rules[victim].rs = rs;
    gw->rules[victim].version = rs->version;
    gw->rules[victim].used_ms = uv_now(gw->loop);
}

/* Is a state's measure part of the answer: in force at now_ms, for the department asked? */
static int gw_measure_wanted(const gw_ctx_t *ctx, const Jrp__V1__Action *a, int64_t now_ms)
{
    return check_measure_wanted(a, ctx->all_departments ? NULL : ctx->department, now_ms);
}

/* check_answer's way to a rule-set version: the ones kept here (loaded before answering). */
static const Jrp__V1__RuleSet *gw_check_rules(int64_t version, void *arg)
{
    return gw_rules_find(arg, version);
}

static void gw_check_produced(gw_ctx_t *ctx)
{
    gateway_t *gw = ctx->gw;
    if (ctx->dr_failed) {
        char msg[400];
        snprintf(msg, sizeof(msg),
                 "the check could not be recorded on %s (%s); a check is answered only once it "
                 "is recorded: try again",
                 gw->topic_checks, rd_kafka_err2str(ctx->dr_err));
        ctx_error(ctx, 503, "kafka_unavailable", msg, NULL, gw_retry);
        return;
    }
    gw->m.checks_recorded++;
    ctx_respond(ctx, 200, gw_json, ctx->answer, ctx->answer_len, NULL);
}

static void gw_answer_clear(gw_answer_t *a)
{
    free(a->state);
    free(a->name);
    free(a->json);
    free(a->pb);
    memset(a, 0, sizeof(*a));
}

static gw_answer_t *gw_answer_slot(gateway_t *gw, const gw_ctx_t *ctx)
{
    uint64_t h = hash_str(HASH_SEED, ctx->key);
    h = hash_str(h ^ (uint64_t)ctx->all_departments, ctx->department);
    return &gw->answers[h % GW_ANSWER_SLOTS];
}

/* The answer kept for ctx's subject and department, if it was made from exactly these state bytes
 * and no measure in it has lapsed since. */
static const gw_answer_t *gw_answer_find(gateway_t *gw, const gw_ctx_t *ctx, const void *state,
                                         size_t len, int64_t now_ms)
{
    const gw_answer_t *a = gw_answer_slot(gw, ctx);
    if (!a->json || now_ms >= a->until_ms || a->state_len != len ||
        a->all_departments != ctx->all_departments || strcmp(a->key, ctx->key) != 0 ||
        strcmp(a->department, ctx->department) != 0 || (len && memcmp(a->state, state, len) != 0))
        return NULL;
    return a;
}

/* Derive the answer from ctx->state (the rule sets it needs are kept). 0, 503 (why in why) or
 * 500 when out of memory. */
static int gw_answer_make(gw_ctx_t *ctx, int64_t now, gw_answer_t *out, char *why, size_t why_size)
{
    gateway_t *gw = ctx->gw;
    const Jrp__V1__SubjectState *st = ctx->state;
    size_t n = 0;
    Jrp__V1__Action *acts = NULL, **ptrs = NULL;
    json_t *json = NULL;
    int rc = 500;
    memset(out, 0, sizeof(*out));
    if (st && st->n_measures) {
        acts = calloc(st->n_measures, sizeof(*acts));
        ptrs = calloc(st->n_measures, sizeof(*ptrs));
        if (!acts || !ptrs)
            goto done;
    }
    if (check_answer(st, ctx->all_departments ? NULL : ctx->department, now, gw_check_rules, gw,
                     acts, ptrs, &n, why, why_size)) {
        rc = 503;
        goto done;
    }
    const ProtobufCMessage *const *msgs = (const ProtobufCMessage *const *)ptrs;
    out->json = gateway_api_json_list(msgs, n, 0, &out->json_len);
    if (!out->json) {
        /* the same text, the slow way */
        Jrp__V1__CheckRecord rec;
        jrp__v1__check_record__init(&rec);
        rec.measures = ptrs;
        rec.n_measures = n;
        json = pbjson_encode(&rec.base, 0);
        json_t *list = json ? json_object_get(json, "measures") : NULL;
        out->json = list   ? json_dumps(list, JSON_COMPACT | JSON_PRESERVE_ORDER)
                    : json ? strdup("[]")
                           : NULL;
        if (!out->json)
            goto done;
        out->json_len = strlen(out->json);
    }
    out->pb = gateway_api_pack_repeated(6, msgs, n, &out->pb_len);
    if (!out->pb)
        goto done;
    if (st && st->subject && st->subject->name && st->subject->name[0] &&
        !(out->name = strdup(st->subject->name)))
        goto done;
    /* The answer holds until the first measure of the state lapses. */
    out->until_ms = INT64_MAX;
    for (size_t i = 0; st && i < st->n_measures; i++) {
        int64_t u = st->measures[i]->valid_until_ms;
        if (u > now && u < out->until_ms)
            out->until_ms = u;
    }
    out->n = n;
    rc = 0;
done:
    if (rc)
        gw_answer_clear(out);
    json_decref(json);
    free(acts);
    free(ptrs);
    return rc;
}

/* Record ctx's check with the measures of a, and answer once the broker has it. */
static void gw_check_record(gw_ctx_t *ctx, const gw_answer_t *a, int64_t now)
{
    gateway_t *gw = ctx->gw;
    /* Unique, not secret: 64 random bits drawn at start-up, then a counter. */
    char check_id[33];
    uint8_t seq[8];
    uint64_t k = ++gw->check_seq;
    for (int i = 7; i >= 0; i--, k >>= 8)
        seq[i] = (uint8_t)k;
    memcpy(check_id, gw->check_prefix, 16);
    gw_hex(seq, sizeof(seq), check_id + 16);
    memcpy(ctx->check_id, check_id, sizeof(check_id));
    Jrp__V1__Subject subject;
    jrp__v1__subject__init(&subject);
    subject.type = (Jrp__V1__SubjectType)ctx->type;
    subject.id = ctx->id;
    if (a->name)
        subject.name = a->name;
    Jrp__V1__CheckRecord rec;
    jrp__v1__check_record__init(&rec);
    rec.check_id = check_id;
    rec.subject = &subject;
    rec.department = ctx->all_departments ? (char *)"" : ctx->department;
    rec.requested_by = ctx->tok.id;
    rec.checked_at_ms = now;
    rec.business_item = ctx->business_item;
    rec.traceparent = ctx->traceparent;
    /* The answer is the record, in the canonical mapping, with "measures" even when empty; both
     * forms take the measures as made (the same bytes as packing the whole record). */
    size_t len = 0;
    uint8_t *buf = gateway_api_pack_splice(&rec.base, 6, a->pb, a->pb_len, &len);
    ctx->answer =
        gateway_api_json_splice(&rec.base, "measures", a->json, a->json_len, 1, &ctx->answer_len);
    if (!buf || !ctx->answer) {
        free(buf);
        ctx_error(ctx, 500, "no_memory", "out of memory", NULL, NULL);
        return;
    }
    if (log_get_level() <= LOG_DEBUG) {
        char who[GW_KEY_MAX];
        log_debug("check %s: %zu measure%s for %s, asked by %s",
                  log_subject((int)ctx->type, ctx->id, who, sizeof(who)), a->n,
                  a->n == 1 ? "" : "s", ctx->all_departments ? "every department" : ctx->department,
                  ctx->tok.id);
    }
    ctx->n_records = 1;
    ctx->on_produced = gw_check_produced;
    (void)gw_produce(ctx, gw->topic_checks, ctx->key, buf, len,
                     jrp__v1__check_record__descriptor.name);
    if (gw->check_queued && ctx->dr_pending) {
        /* Answered now; the delivery report only counts a record that did not make it. */
        ctx->check_unacked = 1;
        ctx_respond(ctx, 200, gw_json, ctx->answer, ctx->answer_len, NULL);
    }
    gw_produce_settle(ctx);
    free(buf);
}

/* Everything is at hand: derive the answer (and keep it), record it, answer on the ack. */
static void gw_check_answer(gw_ctx_t *ctx)
{
    gateway_t *gw = ctx->gw;
    if (ctx->rules_error) {
        ctx_error(ctx, ctx->rules_error, ctx->rules_code, ctx->rules_msg, NULL,
                  ctx->rules_error == 503 ? gw_retry : NULL);
        return;
    }
    int64_t now = gw_wall_ms();
    gw_answer_t made;
    char why[512];
    int rc = gw_answer_make(ctx, now, &made, why, sizeof(why));
    if (rc) {
        if (rc == 503)
            ctx_error(ctx, 503, "rules_unavailable", why, NULL, gw_retry);
        else
            ctx_error(ctx, 500, "no_memory", "out of memory", NULL, NULL);
        return;
    }
    gw_check_record(ctx, &made, now);
    if (!ctx->state_raw && ctx->state) {
        gw_answer_clear(&made); /* too large to keep */
        return;
    }
    gw_answer_t *slot = gw_answer_slot(gw, ctx);
    gw_answer_clear(slot);
    *slot = made;
    snprintf(slot->key, sizeof(slot->key), "%s", ctx->key);
    snprintf(slot->department, sizeof(slot->department), "%s", ctx->department);
    slot->all_departments = ctx->all_departments;
    slot->state = ctx->state_raw; /* now owned by the slot */
    slot->state_len = ctx->state_raw_len;
    ctx->state_raw = NULL;
}

typedef struct gw_rules_req_s {
    gw_ctx_t *ctx;
    int64_t version;
} gw_rules_req_t;

static void gw_on_rules(redis_async_t *ra, redisReply *reply, void *arg)
{
    gw_rules_req_t *rr = arg;
    gw_ctx_t *ctx = rr->ctx;
    gateway_t *gw = ctx->gw;
    int64_t version = rr->version;
    (void)ra;
    free(rr);
    if (!reply || reply->type == REDIS_REPLY_ERROR) {
        gw->m.redis_errors++;
        ctx->rules_error = 503;
        ctx->rules_code = "redis_unavailable";
        snprintf(ctx->rules_msg, sizeof(ctx->rules_msg),
                 "Redis did not give rule set version %lld: try again", (long long)version);
    } else if (reply->type != REDIS_REPLY_STRING) {
        ctx->rules_error = 503;
        ctx->rules_code = "rules_unavailable";
        snprintf(ctx->rules_msg, sizeof(ctx->rules_msg),
                 "rule set version %lld is not in Redis (jrpctl rebuild restores it)",
                 (long long)version);
    } else {
        Jrp__V1__RuleSet *rs =
            jrp__v1__rule_set__unpack(NULL, reply->len, (const uint8_t *)reply->str);
        if (!rs || rs->version != version) {
            if (rs)
                jrp__v1__rule_set__free_unpacked(rs, NULL);
            ctx->rules_error = 503;
            ctx->rules_code = "rules_unavailable";
            snprintf(ctx->rules_msg, sizeof(ctx->rules_msg),
                     "rule set version %lld in Redis does not decode", (long long)version);
        } else {
            gw_rules_keep(gw, rs); /* rs now owned by the cache */
        }
    }
    if (ctx->rules_pending)
        ctx->rules_pending--;
    if (ctx->rules_pending == 0 && ctx->req)
        gw_check_answer(ctx);
    ctx_unref(ctx);
}

static void gw_on_state(redis_async_t *ra, redisReply *reply, void *arg)
{
    gw_ctx_t *ctx = arg;
    gateway_t *gw = ctx->gw;
    (void)ra;
    if (!ctx->req || !gw_redis_ok(ctx, reply)) {
        ctx_unref(ctx);
        return;
    }
    if (reply->type == REDIS_REPLY_STRING || reply->type == REDIS_REPLY_NIL) {
        /* The same state bytes as an answer kept: nothing to decode or derive. */
        int64_t now = gw_wall_ms();
        size_t len = reply->type == REDIS_REPLY_STRING ? reply->len : 0;
        const gw_answer_t *a = gw_answer_find(gw, ctx, reply->str, len, now);
        if (a) {
            gw->m.answer_cache_hits++;
            ctx->waiting = GW_WAIT_NONE;
            gw_check_record(ctx, a, now);
            ctx_unref(ctx);
            return;
        }
        if (len <= GW_ANSWER_STATE_MAX && (ctx->state_raw = malloc(len ? len : 1)) != NULL) {
            if (len)
                memcpy(ctx->state_raw, reply->str, len);
            ctx->state_raw_len = len;
        }
    }
    if (reply->type == REDIS_REPLY_STRING) {
        ctx->state = jrp__v1__subject_state__unpack(NULL, reply->len, (const uint8_t *)reply->str);
        if (!ctx->state) {
            gw->m.redis_errors++;
            ctx_error(ctx, 500, "internal_error",
                      "the subject's state in Redis does not decode (jrpctl rebuild restores it)",
                      NULL, NULL);
            ctx_unref(ctx);
            return;
        }
    } else if (reply->type != REDIS_REPLY_NIL) {
        gw->m.redis_errors++;
        ctx_error(ctx, 503, "redis_unavailable", "unexpected reply to a state lookup", NULL,
                  gw_retry);
        ctx_unref(ctx);
        return;
    }
    /* An unknown subject has no state: it has no measures, which is an answer too. */
    const Jrp__V1__SubjectState *st = ctx->state;
    int64_t now = gw_wall_ms();
    ctx->waiting = GW_WAIT_NONE;
    ctx->rules_pending = 1; /* held while the requests go out, so none can finish early */
    for (size_t i = 0; st && i < st->n_measures; i++) {
        const Jrp__V1__Action *a = st->measures[i];
        if (!gw_measure_wanted(ctx, a, now))
            continue;
        int64_t v = check_measure_version(st, a);
        int seen = gw_rules_find(gw, v) != NULL;
        for (size_t k = 0; k < i && !seen; k++)
            seen = gw_measure_wanted(ctx, st->measures[k], now) &&
                   check_measure_version(st, st->measures[k]) == v;
        if (seen)
            continue;
        gw_rules_req_t *rr = malloc(sizeof(*rr));
        if (!rr) {
            ctx->rules_error = 500;
            ctx->rules_code = "no_memory";
            snprintf(ctx->rules_msg, sizeof(ctx->rules_msg), "out of memory");
            break;
        }
        rr->ctx = ctx;
        rr->version = v;
        char key[256];
        snprintf(key, sizeof(key), "%srules:v:%lld", gw->prefix, (long long)v);
        const char *argv[] = {"GET", key};
        ctx->rules_pending++;
        gw_redis(ctx, gw_on_rules, rr, 2, argv);
        if (!ctx->req)
            break;
    }
    if (--ctx->rules_pending == 0 && ctx->req)
        gw_check_answer(ctx);
    ctx_unref(ctx);
}

static void gw_check(gw_ctx_t *ctx)
{
    gateway_t *gw = ctx->gw;
    errlist_t el;
    errlist_init(&el);
    const char *query = http_request_query(ctx->req);
    char dept[64], item[GW_BUSINESS_ITEM_MAX + 2];
    int status =
        gateway_api_subject(http_request_path(ctx->req), &ctx->type, ctx->id, sizeof(ctx->id), &el);
    int dl = http_query_param(query, "department", dept, sizeof(dept));
    if (dl != -1)
        (void)gateway_api_query_value(dept, dl, "department", 32, 1, &el);
    int il = http_query_param(query, "business_item", item, sizeof(item));
    if (il != -1 &&
        gateway_api_query_value(item, il, "business_item", GW_BUSINESS_ITEM_MAX, 0, &el) == 0)
        memcpy(ctx->business_item, item, (size_t)il + 1);
    if (status || el.count) {
        ctx_errlist(ctx, 400, &el);
        errlist_clear(&el);
        return;
    }
    errlist_clear(&el);
    /* A department sees its own measures only; an admin sees every department's, or one. */
    if (gw_is_admin(ctx)) {
        ctx->all_departments = dl == -1;
        if (dl != -1)
            snprintf(ctx->department, sizeof(ctx->department), "%s", dept);
    } else {
        if (dl != -1 && strcmp(dept, ctx->tok.department) != 0) {
            char msg[512];
            snprintf(msg, sizeof(msg),
                     "token %s speaks for department %s; it may not see department %s's measures",
                     ctx->tok.id, ctx->tok.department, dept);
            ctx_error(ctx, 403, "wrong_department", msg, "department", NULL);
            return;
        }
        snprintf(ctx->department, sizeof(ctx->department), "%s", ctx->tok.department);
    }
    if (ids_subject_key(ctx->type, ctx->id, ctx->key, sizeof(ctx->key)) < 0) {
        ctx_error(ctx, 400, "too_long", "the subject id is too long", "subject.id", NULL);
        return;
    }
    /* No answer without its record: refuse now if the record cannot be written. */
    if (!gw_kafka_usable(ctx, 1))
        return;
    char skey[GW_KEY_MAX + 160];
    snprintf(skey, sizeof(skey), "%s{%s}:state", gw->prefix, ctx->key); /* store.h's layout */
    const char *argv[] = {"HGET", skey, "st"};
    gw_redis(ctx, gw_on_state, ctx, 3, argv);
}

/* ---- GET /v1/reports/effects, /v1/reports/subjects, /v1/reports/measures ---------------------
 */

#define GW_REPORT_REDIS_TIMEOUT_MS 5000

enum { GW_REPORT_EFFECTS = 0, GW_REPORT_SUBJECTS, GW_REPORT_MEASURES };

/* The subjects or measures list into ctx->answer; 0 or -1 (reason in err). */
static int gw_report_lists(gw_ctx_t *ctx, redisContext *c, char *err, size_t err_size)
{
    json_t *rows = NULL;
    int rc = ctx->report_list == GW_REPORT_SUBJECTS
                 ? report_subjects_load(c, ctx->gw->prefix, &rows, err, err_size)
                 : report_measures_load(c, ctx->gw->prefix, ctx->report_from, ctx->report_to, &rows,
                                        err, err_size);
    if (rc)
        return -1;
    ctx->answer = ctx->report_list == GW_REPORT_SUBJECTS
                      ? report_subjects_render(rows, ctx->report_now, ctx->report_csv)
                      : report_measures_render(rows, ctx->report_from, ctx->report_to,
                                               ctx->report_now, ctx->report_csv);
    json_decref(rows);
    return 0;
}

/* In the thread pool: a connection of its own, the synchronous read, the rendering. Only
 * ctx's report fields and read-only gateway settings are touched here. */
static void gw_report_work(uv_work_t *w)
{
    gw_ctx_t *ctx = w->data;
    char err[256];
    redisContext *c = redis_connect(config_get(ctx->gw->cfg, "redis.url"),
                                    GW_REPORT_REDIS_TIMEOUT_MS, err, sizeof(err));
    if (!c) {
        ctx->report_status = 503;
        snprintf(ctx->report_err, sizeof(ctx->report_err), "Redis unreachable: %s", err);
        return;
    }
    int rc;
    if (ctx->report_list != GW_REPORT_EFFECTS) {
        rc = gw_report_lists(ctx, c, err, sizeof(err));
    } else {
        report_t r;
        rc = report_load(c, ctx->gw->prefix, ctx->report_from, ctx->report_to, ctx->report_now, &r,
                         err, sizeof(err));
        if (!rc) {
            ctx->answer = ctx->report_csv ? report_render_csv(&r) : report_render_json(&r);
            report_free(&r);
        }
    }
    redisFree(c);
    if (rc) {
        ctx->report_status = 503;
        snprintf(ctx->report_err, sizeof(ctx->report_err), "cannot read the ledger: %s", err);
        return;
    }
    if (!ctx->answer) {
        ctx->report_status = 500;
        snprintf(ctx->report_err, sizeof(ctx->report_err), "out of memory");
        return;
    }
    ctx->answer_len = strlen(ctx->answer);
    ctx->report_status = 200;
}

static void gw_report_done(uv_work_t *w, int status)
{
    gw_ctx_t *ctx = w->data;
    ctx->waiting = GW_WAIT_NONE;
    if (status != 0 || ctx->report_status != 200) {
        if (status != 0 || ctx->report_status == 503)
            ctx->gw->m.redis_errors++;
        ctx_error(ctx, status ? 503 : ctx->report_status,
                  ctx->report_status == 500 ? "no_memory" : "redis_unavailable",
                  status ? uv_strerror(status) : ctx->report_err, NULL, NULL);
    } else {
        ctx_respond(ctx, 200, ctx->report_csv ? "text/csv; charset=utf-8" : gw_json, ctx->answer,
                    ctx->answer_len, NULL);
    }
    ctx_unref(ctx);
}

/* from or to: epoch ms, YYYY-MM-DD (00:00 China Standard Time) or RFC 3339. 0, or answered
 * 400 naming the field. */
static int gw_report_bound(gw_ctx_t *ctx, const char *query, const char *name, int64_t *out)
{
    char val[80], msg[200];
    int n = http_query_param(query, name, val, sizeof(val));
    if (n == -1) {
        snprintf(msg, sizeof(msg), "query parameter %s is required", name);
        ctx_error(ctx, 400, "missing_field", msg, name, NULL);
        return -1;
    }
    if (n < 0 || report_parse_time(val, out)) {
        snprintf(msg, sizeof(msg),
                 "%s must be epoch milliseconds, a date (YYYY-MM-DD, China Standard Time) or an "
                 "RFC 3339 date-time",
                 name);
        ctx_error(ctx, 400, "bad_time", msg, name, NULL);
        return -1;
    }
    return 0;
}

/* The effects list of [from, to) from the ledger's Redis data (common/report). The read is
 * synchronous, so it runs in libuv's thread pool and the loop never waits for it. */
static void gw_reports(gw_ctx_t *ctx)
{
    const char *query = http_request_query(ctx->req);
    const char *path = http_request_path(ctx->req);
    ctx->report_list = !strcmp(path, "/v1/reports/subjects")   ? GW_REPORT_SUBJECTS
                       : !strcmp(path, "/v1/reports/measures") ? GW_REPORT_MEASURES
                                                               : GW_REPORT_EFFECTS;
    /* The subjects list is a snapshot of now: it takes no period. */
    if (ctx->report_list != GW_REPORT_SUBJECTS &&
        (gw_report_bound(ctx, query, "from", &ctx->report_from) ||
         gw_report_bound(ctx, query, "to", &ctx->report_to)))
        return;
    if (ctx->report_list != GW_REPORT_SUBJECTS && ctx->report_to <= ctx->report_from) {
        ctx_error(ctx, 400, "bad_range", "to must be after from", "to", NULL);
        return;
    }
    const char *accept = http_request_header(ctx->req, "Accept");
    ctx->report_csv = accept && strstr(accept, "text/csv") != NULL;
    struct timeval tv;
    gettimeofday(&tv, NULL);
    ctx->report_now = (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
    ctx->waiting = GW_WAIT_PROBE;
    ctx->work.data = ctx;
    ctx_ref(ctx);
    if (uv_queue_work(ctx->gw->loop, &ctx->work, gw_report_work, gw_report_done) != 0) {
        ctx_error(ctx, 503, "unavailable", "cannot start the report", NULL, NULL);
        ctx_unref(ctx);
    }
}

static void gw_route_step(gw_ctx_t *ctx)
{
    switch (ctx->route) {
    case GATEWAY_ROUTE_EVENTS:
        gw_events(ctx);
        break;
    case GATEWAY_ROUTE_FEEDBACK:
        gw_feedback(ctx);
        break;
    case GATEWAY_ROUTE_MEASURES:
        gw_check(ctx);
        break;
    case GATEWAY_ROUTE_REPORTS:
        gw_reports(ctx);
        break;
    default:
        ctx_error(ctx, 404, "not_found", "no such route", NULL, NULL);
        break;
    }
}

/* ---- ops: /healthz, /readyz, /metrics -------------------------------------------------------
 */

static void gw_ready_finish(gw_ctx_t *ctx)
{
    if (--ctx->ready_pending > 0 || !ctx->req)
        return;
    if (ctx->kafka_ok && ctx->redis_ok && ctx->rules_ok) {
        json_t *root =
            json_pack("{s:s, s:{s:s, s:s, s:s}}", "status", "ready", "checks", "kafka",
                      ctx->kafka_msg, "redis", ctx->redis_msg, "rules", ctx->rules_msg_r);
        char *text = root ? json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
        json_decref(root);
        if (!text) {
            ctx_error(ctx, 500, "no_memory", "out of memory", NULL, NULL);
            return;
        }
        ctx_respond(ctx, 200, gw_json, text, strlen(text), NULL);
        free(text);
        return;
    }
    errlist_t el;
    errlist_init(&el);
    if (!ctx->kafka_ok)
        (void)errlist_add(&el, NULL, "kafka", "kafka_unavailable", "%s", ctx->kafka_msg);
    if (!ctx->redis_ok)
        (void)errlist_add(&el, NULL, "redis", "redis_unavailable", "%s", ctx->redis_msg);
    if (!ctx->rules_ok)
        (void)errlist_add(&el, NULL, "rules", "no_rules", "%s", ctx->rules_msg_r);
    ctx_errlist(ctx, 503, &el); /* the first part that failed; "errors" when several did */
    errlist_clear(&el);
}

static void gw_ready_probe_work(uv_work_t *w)
{
    gw_ctx_t *ctx = w->data;
    ctx->probe_err = gw_probe_kafka(ctx->gw->rk);
}

static void gw_ready_probe_done(uv_work_t *w, int status)
{
    gw_ctx_t *ctx = w->data;
    if (status == 0 && ctx->probe_err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        ctx->kafka_ok = 1;
        snprintf(ctx->kafka_msg, sizeof(ctx->kafka_msg), "ok");
    } else {
        ctx->gw->kafka_suspect = 1;
        snprintf(ctx->kafka_msg, sizeof(ctx->kafka_msg),
                 "no Kafka broker answered a metadata request within %d ms: %s",
                 GW_PROBE_TIMEOUT_MS,
                 status ? uv_strerror(status) : rd_kafka_err2str(ctx->probe_err));
    }
    gw_ready_finish(ctx);
    ctx_unref(ctx);
}

static void gw_on_ready_ping(redis_async_t *ra, redisReply *reply, void *arg)
{
    gw_ctx_t *ctx = arg;
    (void)ra;
    if (reply && reply->type == REDIS_REPLY_STATUS) {
        ctx->redis_ok = 1;
        snprintf(ctx->redis_msg, sizeof(ctx->redis_msg), "ok");
    } else {
        /* A probe, not a request that failed: /readyz says it, redis_up shows it, and the error
         * counter keeps to the work (a start-up probe before the connection is up is normal). */
        snprintf(ctx->redis_msg, sizeof(ctx->redis_msg), "Redis does not answer PING: %.200s",
                 reply && reply->type == REDIS_REPLY_ERROR ? reply->str : "not connected");
    }
    gw_ready_finish(ctx);
    ctx_unref(ctx);
}

static void gw_on_ready_rules(redis_async_t *ra, redisReply *reply, void *arg)
{
    gw_ctx_t *ctx = arg;
    int64_t v = 0;
    (void)ra;
    if (!reply || reply->type == REDIS_REPLY_ERROR) {
        snprintf(ctx->rules_msg_r, sizeof(ctx->rules_msg_r),
                 "cannot read the active rule-set version from Redis");
    } else if (reply->type != REDIS_REPLY_STRING || gw_parse_i64(reply->str, reply->len, &v) ||
               v <= 0) {
        snprintf(ctx->rules_msg_r, sizeof(ctx->rules_msg_r),
                 "no active rule set (jrpctl rules load DIR)");
    } else {
        ctx->rules_ok = 1;
        snprintf(ctx->rules_msg_r, sizeof(ctx->rules_msg_r), "version %lld active", (long long)v);
    }
    gw_ready_finish(ctx);
    ctx_unref(ctx);
}

static void gw_readyz(gw_ctx_t *ctx)
{
    gateway_t *gw = ctx->gw;
    ctx->ready_pending = 3;
    ctx->waiting = GW_WAIT_PROBE;
    ctx->work.data = ctx;
    ctx_ref(ctx);
    if (uv_queue_work(gw->loop, &ctx->work, gw_ready_probe_work, gw_ready_probe_done) != 0) {
        snprintf(ctx->kafka_msg, sizeof(ctx->kafka_msg), "cannot start the Kafka probe");
        ctx->ready_pending--;
        ctx_unref(ctx);
    }
    char key[256];
    snprintf(key, sizeof(key), "%srules:active", gw->prefix);
    const char *ping[] = {"PING"};
    const char *get[] = {"GET", key};
    ctx_ref(ctx);
    (void)redis_async_command(gw->ra, gw_on_ready_ping, ctx, 1, ping, NULL);
    ctx_ref(ctx);
    (void)redis_async_command(gw->ra, gw_on_ready_rules, ctx, 2, get, NULL);
}

static void gw_metrics_answer(gateway_t *gw, http_request_t *req, gateway_route_t route,
                              uint64_t t0)
{
    gateway_metrics_gauges_t g;
    memset(&g, 0, sizeof(g));
    http_server_stats(gw->api.srv, &g.api);
    if (gw->has_ops) {
        g.has_ops = 1;
        http_server_stats(gw->ops.srv, &g.ops);
    }
    g.inflight = gw->inflight;
    g.kafka_up = !gw->kafka_down && !gw->failed;
    g.redis_up = gw->redis_up;
    /* This request is counted before rendering, so a scrape sees itself. */
    gateway_metrics_request(&gw->m, route, 200, (double)(uv_hrtime() - t0) / 1e9);
    size_t len = 0;
    char *text = gateway_metrics_render(&gw->m, &g, &len);
    if (!text) {
        (void)http_respond(req, 500, "text/plain", "out of memory\n", 14, NULL);
        return;
    }
    (void)http_respond(req, 200, "text/plain; version=0.0.4; charset=utf-8", text, len, NULL);
    free(text);
}

/* ---- the request handler ---------------------------------------------------------------------
 */

static void gw_on_request(http_request_t *req, void *arg)
{
    gw_server_t *s = arg;
    gateway_t *gw = s->gw;
    uint64_t t0 = uv_hrtime();
    const char *method = http_request_method(req);
    gateway_route_t route = gateway_api_route(http_request_path(req));
    int is_ops = gateway_api_route_is_ops(route);
    if (route == GATEWAY_ROUTE_NONE || (is_ops && !s->ops) || (!is_ops && !s->api)) {
        gw_respond_error(gw, req, GATEWAY_ROUTE_NONE, t0, 404, "not_found",
                         "no such route (the API is described in docs/gateway.md)", NULL, NULL);
        return;
    }
    if (!gateway_api_method_allowed(route, method)) {
        char allow[64], msg[128];
        const char *m = gateway_api_route_method(route);
        snprintf(allow, sizeof(allow), "Allow: %s%s\r\n", m, is_ops ? ", HEAD" : "");
        snprintf(msg, sizeof(msg), "this route answers %s only", m);
        gw_respond_error(gw, req, route, t0, 405, "method_not_allowed", msg, NULL, allow);
        return;
    }
    if (route == GATEWAY_ROUTE_HEALTHZ) {
        static const char ok[] = "{\"status\":\"ok\"}";
        gw_respond(gw, req, route, t0, 200, gw_json, ok, sizeof(ok) - 1, NULL);
        return;
    }
    if (route == GATEWAY_ROUTE_METRICS) {
        gw_metrics_answer(gw, req, route, t0);
        return;
    }
    if (gw->inflight >= gw->max_inflight) {
        gw->m.overload_refusals++;
        gw_respond_error(gw, req, route, t0, 429, "too_many_requests",
                         "the gateway has too many requests in flight: try again shortly", NULL,
                         gw_retry);
        return;
    }
    gw_ctx_t *ctx = ctx_new(gw, req, route, t0);
    if (!ctx) {
        gw_respond_error(gw, req, route, t0, 500, "no_memory", "out of memory", NULL, NULL);
        return;
    }
    const char *tp = http_request_header(req, "traceparent");
    if (tp && gateway_api_traceparent_valid(tp))
        snprintf(ctx->traceparent, sizeof(ctx->traceparent), "%s", tp);
    if (route == GATEWAY_ROUTE_READYZ)
        gw_readyz(ctx);
    else
        gw_auth(ctx);
    ctx_unref(ctx); /* the handler's own reference */
}

/* ---- the periodic timer ----------------------------------------------------------------------
 */

static void gw_timeout(gw_ctx_t *ctx)
{
    gateway_t *gw = ctx->gw;
    char msg[256];
    gw->m.timeouts++;
    switch (ctx->waiting) {
    case GW_WAIT_KAFKA:
        snprintf(msg, sizeof(msg),
                 "Kafka did not acknowledge within %llu ms; resend the request (repeated ids are "
                 "recognised and ignored)",
                 (unsigned long long)gw->request_timeout_ms);
        ctx_error(ctx, 503, "kafka_unavailable", msg, NULL, gw_retry);
        break;
    case GW_WAIT_REDIS:
        snprintf(msg, sizeof(msg), "Redis did not answer within %llu ms: try again",
                 (unsigned long long)gw->request_timeout_ms);
        ctx_error(ctx, 503, "redis_unavailable", msg, NULL, gw_retry);
        break;
    default:
        snprintf(msg, sizeof(msg), "no answer within %llu ms: try again",
                 (unsigned long long)gw->request_timeout_ms);
        ctx_error(ctx, 503, "timeout", msg, NULL, gw_retry);
        break;
    }
}

static void gw_on_cron(uv_timer_t *t)
{
    gateway_t *gw = t->data;
    uint64_t now = uv_now(gw->loop);
    /*
     * librdkafka signals the bridge only when its queue goes from empty to non-empty, so an
     * event queued before the bridge was attached (a broker refusing the very first connect)
     * would strand the queue until some later poll. Polling here too bounds that to one tick.
     */
    rd_kafka_poll(gw->rk, 0);
    while (gw->head && gw->head->deadline_ms <= now)
        gw_timeout(gw->head); /* answering takes it off the list */
    if ((gw->kafka_suspect || gw->kafka_down) && now >= gw->next_probe_ms)
        gw_probe_start(gw);
}

/* ---- life cycle ------------------------------------------------------------------------------
 */

/*
 * The producer: idempotent, acks=all, the Java client's partitioner (so a subject's events land
 * where every other producer puts them), and a delivery report for every record. Latency knobs
 * from gateway.*, which configured kafka.* keys may override; the correctness knobs are set last.
 */
static rd_kafka_t *gw_producer(gateway_t *gw, char *errstr, size_t errstr_size)
{
    char linger[32], timeout[32];
    snprintf(linger, sizeof(linger), "%g", config_get_decimal(gw->cfg, "gateway.linger_ms"));
    snprintf(timeout, sizeof(timeout), "%llu", (unsigned long long)gw->request_timeout_ms);
    const char *const extra[] = {"linger.ms", linger, "message.timeout.ms", timeout, NULL};
    rd_kafka_conf_t *conf = kafka_producer_conf(gw->cfg, extra, NULL, 0, errstr, errstr_size);
    if (!conf)
        return NULL;
    char qmax[32];
    size_t qsize = sizeof(qmax);
    gw->queue_max = 100000;
    if (rd_kafka_conf_get(conf, "queue.buffering.max.messages", qmax, &qsize) == RD_KAFKA_CONF_OK)
        gw->queue_max = atoll(qmax);
    rd_kafka_conf_set_dr_msg_cb(conf, gw_on_delivery);
    rd_kafka_conf_set_error_cb(conf, gw_on_kafka_error);
    rd_kafka_conf_set_opaque(conf, gw);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, errstr_size);
    if (!rk)
        goto err;
    return rk; /* conf now owned by rk */
err:
    rd_kafka_conf_destroy(conf);
    return NULL;
}

static http_server_t *gw_listen(gateway_t *gw, const char *key, gw_server_t *s,
                                const http_limits_t *lim, char *errstr, size_t errstr_size)
{
    char host[256];
    int port = 0;
    if (config_get_hostport(gw->cfg, key, host, sizeof(host), &port)) {
        snprintf(errstr, errstr_size, "%s: not host:port", key);
        return NULL;
    }
    s->gw = gw;
    s->srv = http_server_create(gw->loop, host, port, lim, gw_on_request, s, errstr, errstr_size);
    return s->srv;
}

/* Release what gateway_create built, on its failure (handles close when the loop runs). */
static void gw_abandon(gateway_t *gw)
{
    if (gw->api.srv)
        http_server_close(gw->api.srv, NULL, NULL);
    if (gw->ops.srv)
        http_server_close(gw->ops.srv, NULL, NULL);
    if (gw->bridge)
        kafka_uv_destroy(gw->bridge);
    if (gw->mainq)
        rd_kafka_queue_destroy(gw->mainq);
    if (gw->rk)
        rd_kafka_destroy(gw->rk);
    if (gw->ra)
        redis_async_destroy(gw->ra);
    EVP_MD_CTX_free(gw->md_ctx);
    EVP_MD_free(gw->sha256);
    free(gw->answers);
    free(gw->tokens);
    free(gw);
}

gateway_t *gateway_create(uv_loop_t *loop, const config_t *cfg, char *errstr, size_t errstr_size)
{
    gateway_t *gw = calloc(1, sizeof(*gw));
    if (!gw || !(gw->tokens = calloc(GW_TOKEN_SLOTS, sizeof(*gw->tokens))) ||
        !(gw->answers = calloc(GW_ANSWER_SLOTS, sizeof(*gw->answers)))) {
        if (gw)
            free(gw->tokens);
        free(gw);
        snprintf(errstr, errstr_size, "out of memory");
        return NULL;
    }
    gw->loop = loop;
    gw->cfg = cfg;
    gw->max_batch = (size_t)config_get_int(cfg, "gateway.max_batch_events");
    gw->max_inflight = (size_t)config_get_int(cfg, "gateway.max_inflight");
    gw->request_timeout_ms = (uint64_t)config_get_int(cfg, "gateway.request_timeout_ms");
    gw->token_cache_ms = (uint64_t)config_get_int(cfg, "gateway.token_cache_ms");
    gw->check_queued = strcmp(config_get(cfg, "gateway.check_record"), "queued") == 0;
    snprintf(gw->prefix, sizeof(gw->prefix), "%s", config_get(cfg, "redis.prefix"));
    config_topic(cfg, "events", gw->topic_events, sizeof(gw->topic_events));
    config_topic(cfg, "feedback", gw->topic_feedback, sizeof(gw->topic_feedback));
    config_topic(cfg, "checks", gw->topic_checks, sizeof(gw->topic_checks));
    uint8_t rnd[8];
    if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
        snprintf(errstr, errstr_size, "no random bytes from OpenSSL");
        goto err;
    }
    gw_hex(rnd, sizeof(rnd), gw->check_prefix);
    gw->sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
    gw->md_ctx = EVP_MD_CTX_new();
    if (!gw->sha256 || !gw->md_ctx) {
        snprintf(errstr, errstr_size, "no SHA-256 from OpenSSL");
        goto err;
    }

    gw->rk = gw_producer(gw, errstr, errstr_size);
    if (!gw->rk)
        goto err;
    gw->mainq = rd_kafka_queue_get_main(gw->rk);
    gw->bridge = gw->mainq ? kafka_uv_create(loop, gw->mainq, gw_on_kafka_ready, gw) : NULL;
    if (!gw->bridge) {
        snprintf(errstr, errstr_size, "cannot attach the Kafka producer to the loop");
        goto err;
    }
    gw->ra = redis_async_create(loop, config_get(cfg, "redis.url"), gw_on_redis_state, gw, errstr,
                                errstr_size);
    if (!gw->ra)
        goto err;

    http_limits_t lim;
    http_limits_default(&lim);
    lim.max_body_bytes = (size_t)config_get_int(cfg, "gateway.max_body_bytes");
    lim.max_header_bytes = (size_t)config_get_int(cfg, "gateway.max_header_bytes");
    lim.max_url_bytes = (size_t)config_get_int(cfg, "gateway.max_url_bytes");
    lim.max_connections = (size_t)config_get_int(cfg, "gateway.max_connections");
    lim.header_timeout_ms = (uint64_t)config_get_int(cfg, "gateway.header_timeout_ms");
    lim.body_timeout_ms = (uint64_t)config_get_int(cfg, "gateway.body_timeout_ms");
    lim.idle_timeout_ms = (uint64_t)config_get_int(cfg, "gateway.idle_timeout_ms");
    const char *ops = config_get(cfg, "gateway.ops_listen");
    gw->has_ops = ops && *ops && strcmp(ops, config_get(cfg, "gateway.listen")) != 0;
    gw->api.api = 1;
    gw->api.ops = !gw->has_ops;
    if (!gw_listen(gw, "gateway.listen", &gw->api, &lim, errstr, errstr_size))
        goto err;
    if (gw->has_ops) {
        gw->ops.ops = 1;
        if (!gw_listen(gw, "gateway.ops_listen", &gw->ops, &lim, errstr, errstr_size))
            goto err;
    }
    if (uv_timer_init(loop, &gw->cron) != 0) {
        snprintf(errstr, errstr_size, "uv_timer_init failed");
        goto err;
    }
    gw->cron.data = gw;
    gw->cron_open = 1;
    if (uv_timer_start(&gw->cron, gw_on_cron, GW_CRON_MS, GW_CRON_MS) != 0)
        log_warn("cannot start the gateway's timer: request deadlines are not enforced");
    log_info("listening on %s (API%s)%s%s; producing to %s, %s, %s",
             config_get(cfg, "gateway.listen"), gw->has_ops ? "" : " and ops",
             gw->has_ops ? " and " : "", gw->has_ops ? ops : "", gw->topic_events,
             gw->topic_feedback, gw->topic_checks);
    return gw;
err:
    gw_abandon(gw);
    return NULL;
}

int gateway_port(const gateway_t *gw)
{
    return http_server_port(gw->api.srv);
}

int gateway_ops_port(const gateway_t *gw)
{
    return http_server_port(gw->has_ops ? gw->ops.srv : gw->api.srv);
}

static void gw_stop_step(gateway_t *gw)
{
    if (gw->stop_waiting > 0)
        return;
    void (*cb)(void *) = gw->on_stopped;
    gw->on_stopped = NULL;
    if (cb)
        cb(gw->on_stopped_arg);
}

static void gw_on_cron_closed(uv_handle_t *h)
{
    gateway_t *gw = h->data;
    gw->stop_waiting--;
    gw_stop_step(gw);
}

/* Every connection is closed and every request answered: drain Kafka, let go of Redis. */
static void gw_stop_backends(gateway_t *gw)
{
    if (rd_kafka_flush(gw->rk, GW_FLUSH_MS) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        log_warn("%d records still undelivered after %d ms: dropping them",
                 rd_kafka_outq_len(gw->rk), GW_FLUSH_MS);
        /* Their delivery reports (with a purge error) release the requests still waiting. */
        rd_kafka_purge(gw->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        for (int i = 0; i < 50 && rd_kafka_outq_len(gw->rk) > 0; i++)
            rd_kafka_poll(gw->rk, 100);
    }
    kafka_uv_destroy(gw->bridge);
    gw->bridge = NULL;
    redis_async_destroy(gw->ra); /* pending callbacks run now with NULL replies */
    gw->ra = NULL;
    if (gw->probe_running)
        gw->stop_waiting++;
    if (gw->cron_open) {
        gw->cron_open = 0;
        gw->stop_waiting++;
        uv_timer_stop(&gw->cron);
        uv_close((uv_handle_t *)&gw->cron, gw_on_cron_closed);
    }
    log_info("stopped: %llu events, %llu feedback records, %llu checks recorded",
             (unsigned long long)gw->m.events_accepted, (unsigned long long)gw->m.feedback_accepted,
             (unsigned long long)gw->m.checks_recorded);
    gw_stop_step(gw);
}

static void gw_on_server_closed(void *arg)
{
    gateway_t *gw = arg;
    if (--gw->servers_open == 0)
        gw_stop_backends(gw);
}

void gateway_stop(gateway_t *gw, void (*on_stopped)(void *arg), void *arg)
{
    if (!gw || gw->stopping)
        return;
    gw->stopping = 1;
    gw->on_stopped = on_stopped;
    gw->on_stopped_arg = arg;
    log_info("stopping: %zu requests in flight", gw->inflight);
    gw->servers_open = 1 + gw->has_ops;
    http_server_close(gw->api.srv, gw_on_server_closed, gw);
    if (gw->has_ops)
        http_server_close(gw->ops.srv, gw_on_server_closed, gw);
}

void gateway_destroy(gateway_t *gw)
{
    if (!gw)
        return;
    if (gw->mainq)
        rd_kafka_queue_destroy(gw->mainq);
    if (gw->rk)
        rd_kafka_destroy(gw->rk);
    for (size_t i = 0; i < GW_RULES_SLOTS; i++)
        if (gw->rules[i].rs)
            jrp__v1__rule_set__free_unpacked(gw->rules[i].rs, NULL);
    for (size_t i = 0; i < GW_ANSWER_SLOTS; i++)
        gw_answer_clear(&gw->answers[i]);
    EVP_MD_CTX_free(gw->md_ctx);
    EVP_MD_free(gw->sha256);
    free(gw->answers);
    free(gw->tokens);
    free(gw);
}

int gateway_failed(const gateway_t *gw)
{
    return gw->failed;
}

void gateway_get_metrics(const gateway_t *gw, gateway_metrics_t *out)
{
    *out = gw->m;
}
