/*
 * ledger: Kafka in, Redis and alerts out, on one libuv loop. Each wake-up of the consumer queue
 * takes a batch of records, turns each into one idempotent Lua script call, sends them in one
 * pipeline and only then commits the batch's offsets. A failed batch is kept and retried (Redis
 * down): nothing is committed past it. A timer raises the alerts that fell due.
 */
#include "ledger.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "codec.h"
#include "errlist.h"
#include "jrp/v1/action.pb-c.h"
#include "jrp/v1/alert.pb-c.h"
#include "jrp/v1/event.pb-c.h"
#include "jrp/v1/feedback.pb-c.h"
#include "jrp/v1/state.pb-c.h"
#include "kafka.h"
#include "ledger_core.h"
#include "log.h"
#include "redis.h"
#include "report.h"
#include "rules.h"
#include "rulesync.h"
#include "workdays.h"

#define LEDGER_BATCH 500
#define LEDGER_ALERT_BATCH 200
#define LEDGER_LEASE_MS 60000
#define LEDGER_FLUSH_MS 10000
#define LEDGER_REDIS_TIMEOUT_MS 5000

/* KEYS: record, due:feedback, issued index, stats, revoked APPLY's record.
 * ARGV: id, op, dept, memo, memo_v, list, subject, stype, sid, measure, issued, due, revokes,
 * cause. Feedback that came first waits in "early:<department>:" fields (lua_feedback): the
 * action's own department's becomes its status; any other's is dropped, and then the script
 * returns -1 (counted as feedback from a wrong department). */
static const char lua_action[] =
    "if redis.call('HEXISTS', KEYS[1], 'op') == 1 then return 0 end\n"
    "redis.call('HMSET', KEYS[1], 'op', ARGV[2], 'dept', ARGV[3], 'memo', ARGV[4], 'memo_v',\n"
    "  ARGV[5], 'list', ARGV[6], 'subject', ARGV[7], 'stype', ARGV[8], 'sid', ARGV[9],\n"
    "  'measure', ARGV[10], 'issued', ARGV[11], 'due', ARGV[12], 'revokes', ARGV[13],\n"
    "  'cause', ARGV[14])\n"
    "local wrong = 0\n"
    "local fbd = redis.call('HGET', KEYS[1], 'fb_dept')\n"
    "if fbd and fbd ~= ARGV[3] then\n" /* stored early by a version without early: fields */
    "  redis.call('HDEL', KEYS[1], 'status', 'score', 'fb_ms', 'fb_dept')\n"
    "  wrong = 1\n"
    "end\n"
    "local mine = 'early:' .. ARGV[3] .. ':'\n"
    "local early = {}\n"
    "for _, f in ipairs(redis.call('HKEYS', KEYS[1])) do\n"
    "  if string.sub(f, 1, 6) == 'early:' then\n"
    "    if string.sub(f, 1, #mine) == mine then\n"
    "      early[string.sub(f, #mine + 1)] = redis.call('HGET', KEYS[1], f)\n"
    "    elseif string.sub(f, -6) == ':score' then\n"
    "      wrong = 1\n"
    "    end\n"
    "    redis.call('HDEL', KEYS[1], f)\n"
    "  end\n"
    "end\n"
    "if early['score'] then\n"
    "  redis.call('HMSET', KEYS[1], 'score', early['score'], 'status', early['status'],\n"
    "    'fb_ms', early['ms'], 'fb_dept', ARGV[3])\n"
    "end\n"
    "local st = redis.call('HGET', KEYS[1], 'status')\n"
    "if not st then st = 'issued'; redis.call('HSET', KEYS[1], 'status', st) end\n"
    "redis.call('HINCRBY', KEYS[4], st, 1)\n"
    "redis.call('ZADD', KEYS[3], ARGV[11], ARGV[1])\n"
    "if ARGV[2] == 'apply' then\n"
    "  if ARGV[12] ~= '0' and st ~= 'executed' and st ~= 'rejected'\n"
    "     and redis.call('HGET', KEYS[1], 'lifted') ~= '1'\n"
    "     and redis.call('HGET', KEYS[1], 'alerted') ~= '1' then\n"
    "    redis.call('ZADD', KEYS[2], ARGV[12], ARGV[1])\n"
    "  end\n"
    "elseif ARGV[13] ~= '' then\n"
    "  redis.call('HSET', KEYS[5], 'lifted', '1')\n"
    "  redis.call('ZREM', KEYS[2], ARGV[13])\n"
    "end\n"
    "if wrong == 1 then return -1 end\n"
    "return 1\n";

/* KEYS: record, due index, stats. ARGV: id, score, status, occurred, dept, final, kind (a|d).
 * Returns 1 applied, 0 older than what is stored, -1 wrong department. Feedback on an action not
 * read yet is kept per department (early:<dept>:score|status|ms), since whose action it is is not
 * known yet; lua_action keeps only its own department's. */
static const char lua_feedback[] =
    "local owner = redis.call('HGET', KEYS[1], 'dept')\n"
    "if not owner and ARGV[7] == 'a' then\n"
    "  local f = 'early:' .. ARGV[5] .. ':'\n"
    "  local was = tonumber(redis.call('HGET', KEYS[1], f .. 'score') or '0')\n"
    "  if tonumber(ARGV[2]) <= was then return 0 end\n"
    "  redis.call('HMSET', KEYS[1], f .. 'score', ARGV[2], f .. 'status', ARGV[3], f .. 'ms',\n"
    "    ARGV[4])\n"
    "  return 1\n"
    "end\n"
    "local old = tonumber(redis.call('HGET', KEYS[1], 'score') or '0')\n"
    "if tonumber(ARGV[2]) <= old then return 0 end\n"
    "if owner and owner ~= ARGV[5] then return -1 end\n"
    "local prev = redis.call('HGET', KEYS[1], 'status') or 'issued'\n"
    "redis.call('HMSET', KEYS[1], 'score', ARGV[2], 'status', ARGV[3], 'fb_ms', ARGV[4],\n"
    "  'fb_dept', ARGV[5])\n"
    "if ARGV[7] == 'a' and redis.call('HEXISTS', KEYS[1], 'op') == 1 then\n"
    "  redis.call('HINCRBY', KEYS[3], prev, -1)\n"
    "  redis.call('HINCRBY', KEYS[3], ARGV[3], 1)\n"
    "end\n"
    "if ARGV[6] == '1' then\n"
    "  if ARGV[7] == 'd' then redis.call('HSET', KEYS[1], 'confirmed', '1') end\n"
    "  redis.call('ZREM', KEYS[2], ARGV[1])\n"
    "end\n"
    "return 1\n";

/* KEYS: record, due:disclosure, disclosures index. ARGV: id, kind, dept, subject, stype, sid,
 * decision_no, decision, deadline, due_alert. */
static const char lua_disclosure[] =
    "if redis.call('HEXISTS', KEYS[1], 'kind') == 1 then return 0 end\n"
    "redis.call('HMSET', KEYS[1], 'kind', ARGV[2], 'dept', ARGV[3], 'subject', ARGV[4],\n"
    "  'stype', ARGV[5], 'sid', ARGV[6], 'decision_no', ARGV[7], 'decision', ARGV[8],\n"
    "  'deadline', ARGV[9], 'due_alert', ARGV[10])\n"
    "redis.call('ZADD', KEYS[3], ARGV[8], ARGV[1])\n"
    "if redis.call('HGET', KEYS[1], 'status') == 'executed'\n"
    "   and redis.call('HGET', KEYS[1], 'fb_dept') == ARGV[3] then\n"
    "  redis.call('HSET', KEYS[1], 'confirmed', '1')\n"
    "  return 1\n"
    "end\n"
    "redis.call('HSET', KEYS[1], 'confirmed', '0')\n"
    "local stage = tonumber(redis.call('HGET', KEYS[1], 'stage') or '0')\n"
    "if ARGV[9] ~= '0' and stage < 2 then\n"
    "  redis.call('ZADD', KEYS[2], stage == 0 and ARGV[10] or ARGV[9], ARGV[1])\n"
    "end\n"
    "return 1\n";

/* KEYS: subject record, listed index. ARGV: subject key, offset, stype, sid, name, listings
 * (JSON), count, since. A record older than the one stored changes nothing, so re-reading the
 * changelog from any point ends with the newest state. */
static const char lua_subject[] =
    "local old = tonumber(redis.call('HGET', KEYS[1], 'off') or '-1')\n"
    "if tonumber(ARGV[2]) <= old then return 0 end\n"
    "if ARGV[7] == '0' then\n"
    "  redis.call('DEL', KEYS[1])\n"
    "  redis.call('HSET', KEYS[1], 'off', ARGV[2])\n"
    "  redis.call('ZREM', KEYS[2], ARGV[1])\n"
    "else\n"
    "  redis.call('HMSET', KEYS[1], 'off', ARGV[2], 'stype', ARGV[3], 'sid', ARGV[4], 'name',\n"
    "    ARGV[5], 'listings', ARGV[6])\n"
    "  redis.call('ZADD', KEYS[2], ARGV[8], ARGV[1])\n"
    "end\n"
    "return 1\n";

/* KEYS: due index. ARGV: now, lease until, max. The due entries, each leased (moved to the
 * lease's end) so that another ledger process does not raise the same alert meanwhile. */
static const char lua_claim[] =
    "local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[3])\n"
    "for _, id in ipairs(ids) do redis.call('ZADD', KEYS[1], ARGV[2], id) end\n"
    "return ids\n";

enum {
    SCRIPT_ACTION = 0,
    SCRIPT_FEEDBACK,
    SCRIPT_DISCLOSURE,
    SCRIPT_CLAIM,
    SCRIPT_SUBJECT,
    SCRIPT_COUNT
};

enum { ALERT_OVERDUE = 0, ALERT_DUE, ALERT_BREACHED, ALERT_KINDS };
static const char *const alert_names[ALERT_KINDS] = {"feedback_overdue", "disclosure_due",
                                                     "disclosure_breached"};

/* What the records of a batch add to the metrics. */
typedef struct ledger_counts_s {
    uint64_t feedback_total, feedback_wrong_dept, actions_total, events_total, disclosures_total,
        states_total, bad_records, calendar_errors;
} ledger_counts_t;

struct ledger_s {
    uv_loop_t *loop;
    const config_t *cfg;
    char prefix[128];
    char topic_feedback[256], topic_events[256], topic_alerts[256], topic_dlq[256],
        topic_state[256];
    char pattern[600];
    workdays_t *cal;
    ledger_clock_t clock;
    int feedback_days;
    int64_t scan_ms;
    redisContext *rc;
    redis_script_t *scripts[SCRIPT_COUNT];
    redis_pipe_t *pipe;
    rd_kafka_t *consumer, *producer;
    rd_kafka_queue_t *consumer_queue;
    kafka_uv_t *consumer_bridge;
    uv_timer_t cron;
    rd_kafka_message_t *batch[LEDGER_BATCH];
    size_t n_batch;
    int failed, stopping, started, redis_down, kafka_down;
    uint64_t produce_errors; /* delivery failures seen by the current flush */
    void (*on_stopped)(void *arg);
    void *on_stopped_arg;
    /* metrics */
    ledger_counts_t n; /* restored when a batch is retried, so nothing counts twice */
    unsigned char dead[LEDGER_BATCH]; /* batch[i] was dead-lettered (and acknowledged) */
    uint64_t redis_errors, batches;
    uint64_t alerts[ALERT_KINDS];
    int64_t stats[5]; /* issued, received, executed, rejected, failed (cached from Redis) */
};

static const char *const status_names[5] = {"issued", "received", "executed", "rejected", "failed"};

static int64_t ledger__now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void ledger__fatal(ledger_t *l, const char *what, const char *reason)
{
    if (l->failed)
        return;
    log_error("fatal Kafka error (%s): %s", what, reason);
    l->failed = 1;
    uv_stop(l->loop);
}

/* --- Redis ------------------------------------------------------------------------------------ */

static void ledger__redis_drop(ledger_t *l, const char *why)
{
    if (!l->redis_down)
        log_warn("redis: %s (retrying)", why);
    l->redis_errors++;
    l->redis_down = 1;
    if (l->rc) {
        redisFree(l->rc);
        l->rc = NULL;
    }
}

/* A connection with the scripts loaded, or NULL (logged once). */
static redisContext *ledger__redis(ledger_t *l)
{
    if (l->rc)
        return l->rc;
    char err[512];
    l->rc =
        redis_connect(config_get(l->cfg, "redis.url"), LEDGER_REDIS_TIMEOUT_MS, err, sizeof(err));
    if (!l->rc) {
        if (!l->redis_down)
            log_warn("redis: %s (retrying)", err);
        l->redis_down = 1;
        return NULL;
    }
    /* Load each script (EVALSHA then works on this server). */
    static const char *const texts[SCRIPT_COUNT] = {lua_action, lua_feedback, lua_disclosure,
                                                    lua_claim, lua_subject};
    for (int i = 0; i < SCRIPT_COUNT; i++) {
        redisReply *r = redisCommand(l->rc, "SCRIPT LOAD %s", texts[i]);
        int ok =
            r && r->type == REDIS_REPLY_STRING && !strcmp(r->str, redis_script_sha(l->scripts[i]));
        if (!ok) {
            char why[300];
            snprintf(why, sizeof(why), "SCRIPT LOAD: %s",
                     r && r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
            freeReplyObject(r);
            ledger__redis_drop(l, why);
            return NULL;
        }
        freeReplyObject(r);
    }
    return l->rc; /* redis_down stays set until a write succeeds (ledger__redis_ok) */
}

/* A Redis call succeeded: the outage (if any) is over. */
static void ledger__redis_ok(ledger_t *l)
{
    if (l->redis_down)
        log_info("redis: writes succeed again");
    l->redis_down = 0;
}

static void ledger__evalsha(ledger_t *l, int script, int nkeys, int argc, const char **argv)
{
    const char *av[32];
    char nk[8];
    snprintf(nk, sizeof(nk), "%d", nkeys);
    av[0] = "EVALSHA";
    av[1] = redis_script_sha(l->scripts[script]);
    av[2] = nk;
    for (int i = 0; i < argc && i < 29; i++)
        av[3 + i] = argv[i];
    redis_pipe_add(l->pipe, argc + 3, av, NULL);
}

/* --- records -------------------------------------------------------------------------------- */

static void ledger__dead_letter(ledger_t *l, const rd_kafka_message_t *m, const char *code,
                                const char *reason)
{
    char part[16], off[32], now[32];
    snprintf(part, sizeof(part), "%" PRId32, m->partition);
    snprintf(off, sizeof(off), "%" PRId64, m->offset);
    snprintf(now, sizeof(now), "%" PRId64, ledger__now_ms());
    rd_kafka_headers_t *hdrs = rd_kafka_headers_new(8);
    rd_kafka_header_add(hdrs, "jrp-error-reason", -1, reason, -1);
    rd_kafka_header_add(hdrs, "jrp-error-code", -1, code, -1);
    rd_kafka_header_add(hdrs, "jrp-error-service", -1, "ledger", -1);
    rd_kafka_header_add(hdrs, "jrp-error-topic", -1, rd_kafka_topic_name(m->rkt), -1);
    rd_kafka_header_add(hdrs, "jrp-error-partition", -1, part, -1);
    rd_kafka_header_add(hdrs, "jrp-error-offset", -1, off, -1);
    rd_kafka_header_add(hdrs, "jrp-error-time", -1, now, -1);
    l->n.bad_records++;
    log_warn("dead letter from %s [%" PRId32 "] @%" PRId64 ": %s", rd_kafka_topic_name(m->rkt),
             m->partition, m->offset, reason);
    rd_kafka_resp_err_t err = kafka_produce(l->producer, l->topic_dlq, RD_KAFKA_PARTITION_UA,
                                            m->key, m->key_len, m->payload, m->len, hdrs, NULL);
    if (err)
        log_error("dead letter: %s", rd_kafka_err2str(err));
}

static void subject_key(const Jrp__V1__Subject *s, char *buf, size_t size)
{
    static const char *const types[] = {"unspecified", "enterprise", "person", "vehicle"};
    int t = s && s->type >= 0 && s->type <= 3 ? (int)s->type : 0;
    snprintf(buf, size, "%s:%s", types[t], s && s->id ? s->id : "");
}

/* A credit.state record: the subject's active listings, for the subjects list (对象清单). */
static int ledger__queue_state(ledger_t *l, const rd_kafka_message_t *m)
{
    char skey[300], k1[600], k2[300], off[32], stype[8], count[16], since[32];
    if (!m->key || m->key_len == 0 || m->key_len >= 256)
        return 1;
    snprintf(skey, sizeof(skey), "%.*s", (int)m->key_len, (const char *)m->key);
    Jrp__V1__SubjectState *st =
        m->payload ? jrp__v1__subject_state__unpack(NULL, m->len, m->payload) : NULL;
    if (m->payload && !st)
        return 1; /* the engine's own record: not ours to dead-letter */
    l->n.states_total++;
    json_t *arr = json_array();
    int64_t first = 0;
    size_t n = st ? st->n_listings : 0;
    for (size_t i = 0; i < n && arr; i++) {
        const Jrp__V1__Listing *li = st->listings[i];
        int64_t from = li->valid_from_ms ? li->valid_from_ms : li->listed_at_ms;
        if (!first || from < first)
            first = from;
        json_array_append_new(arr, json_pack("{s:s,s:I,s:I,s:s,s:s}", "list_code", li->list_code,
                                             "since_ms", (json_int_t)from, "valid_until_ms",
                                             (json_int_t)li->valid_until_ms, "source_department",
                                             li->source_department, "cause_event_id",
                                             li->cause_event_id));
    }
    char *listings = arr ? json_dumps(arr, JSON_COMPACT) : NULL;
    json_decref(arr);
    snprintf(k1, sizeof(k1), "%s%s%s", l->prefix, REPORT_KEY_SUBJECT, skey);
    snprintf(k2, sizeof(k2), "%s%s", l->prefix, REPORT_KEY_LISTED);
    snprintf(off, sizeof(off), "%" PRId64, m->offset);
    snprintf(stype, sizeof(stype), "%d", st && st->subject ? (int)st->subject->type : 0);
    snprintf(count, sizeof(count), "%zu", listings ? n : 0);
    snprintf(since, sizeof(since), "%" PRId64, first);
    const char *argv[] = {k1,
                          k2,
                          skey,
                          off,
                          stype,
                          st && st->subject && st->subject->id ? st->subject->id : "",
                          st && st->subject && st->subject->name ? st->subject->name : "",
                          listings ? listings : "[]",
                          count,
                          since};
    ledger__evalsha(l, SCRIPT_SUBJECT, 2, 10, argv);
    free(listings);
    if (st)
        rules_state_free(st);
    return 0;
}

/* Queue the script call for one record; 0 queued, 1 nothing to do, -1 dead-lettered. */
static int ledger__queue(ledger_t *l, const rd_kafka_message_t *m)
{
    const char *topic = rd_kafka_topic_name(m->rkt);
    char k1[600], k2[300], k3[300], k4[300], k5[600];
    char n1[32], n2[32], n3[32], n4[32], stype[8];
    if (!strcmp(topic, l->topic_feedback)) {
        Jrp__V1__Feedback *fb = jrp__v1__feedback__unpack(NULL, m->len, m->payload);
        if (!fb) {
            ledger__dead_letter(l, m, "decode_failed", "not a jrp.v1.Feedback");
            return -1;
        }
        const char *st = ledger_status_name(fb->status);
        if (!st || !fb->action_id[0] || strlen(fb->action_id) > 256) {
            jrp__v1__feedback__free_unpacked(fb, NULL);
            ledger__dead_letter(l, m, "bad_feedback", "feedback without action_id or status");
            return -1;
        }
        l->n.feedback_total++;
        const char *ev = ledger_disclosure_event(fb->action_id);
        int final = ev ? fb->status == JRP__V1__FEEDBACK_STATUS__FEEDBACK_STATUS_EXECUTED
                       : ledger_status_is_final(fb->status);
        snprintf(k1, sizeof(k1), "%s%s%s", l->prefix,
                 ev ? REPORT_KEY_DISCLOSURE : REPORT_KEY_ACTION, ev ? ev : fb->action_id);
        snprintf(k2, sizeof(k2), "%s%s", l->prefix,
                 ev ? REPORT_KEY_DUE_DISCLOSURE : REPORT_KEY_DUE_FEEDBACK);
        snprintf(k3, sizeof(k3), "%s%s", l->prefix, REPORT_KEY_STATS);
        snprintf(n1, sizeof(n1), "%" PRId64, ledger_feedback_score(fb->status, fb->occurred_at_ms));
        snprintf(n2, sizeof(n2), "%" PRId64, fb->occurred_at_ms);
        const char *argv[] = {k1,
                              k2,
                              k3,
                              ev ? ev : fb->action_id,
                              n1,
                              st,
                              n2,
                              fb->department,
                              final ? "1" : "0",
                              ev ? "d" : "a"};
        ledger__evalsha(l, SCRIPT_FEEDBACK, 3, 10, argv);
        jrp__v1__feedback__free_unpacked(fb, NULL);
        return 0;
    }
    if (!strcmp(topic, l->topic_state))
        return ledger__queue_state(l, m);
    if (!strcmp(topic, l->topic_events)) {
        /* The engine's own validation: an event it refuses (and dead-letters) is not a decision
         * to disclose. */
        errlist_t el;
        errlist_init(&el);
        Jrp__V1__CreditEvent *e = codec_event_unpack(m->payload, m->len, &el);
        errlist_clear(&el);
        if (!e)
            return 1;
        l->n.events_total++;
        if ((e->kind != JRP__V1__EVENT_KIND__EVENT_KIND_LICENSED &&
             e->kind != JRP__V1__EVENT_KIND__EVENT_KIND_SANCTIONED) ||
            !e->event_id[0] || strlen(e->event_id) > 256) {
            jrp__v1__credit_event__free_unpacked(e, NULL);
            return 1;
        }
        int64_t decision = e->decision_date_ms ? e->decision_date_ms : e->occurred_at_ms;
        int64_t deadline = 0, due_alert = 0;
        char err[256];
        if (ledger_disclosure_deadline(&l->clock, decision, &deadline, &due_alert, err,
                                       sizeof(err))) {
            l->n.calendar_errors++;
            log_warn("disclosure %s: no deadline: %s", e->event_id, err);
            deadline = due_alert = 0;
        }
        char skey[300];
        subject_key(e->subject, skey, sizeof(skey));
        snprintf(k1, sizeof(k1), "%s%s%s", l->prefix, REPORT_KEY_DISCLOSURE, e->event_id);
        snprintf(k2, sizeof(k2), "%s%s", l->prefix, REPORT_KEY_DUE_DISCLOSURE);
        snprintf(k3, sizeof(k3), "%s%s", l->prefix, REPORT_KEY_DISCLOSURES);
        snprintf(stype, sizeof(stype), "%d", e->subject ? (int)e->subject->type : 0);
        snprintf(n1, sizeof(n1), "%" PRId64, decision);
        snprintf(n2, sizeof(n2), "%" PRId64, deadline);
        snprintf(n3, sizeof(n3), "%" PRId64, due_alert);
        const char *argv[] = {k1,
                              k2,
                              k3,
                              e->event_id,
                              e->kind == JRP__V1__EVENT_KIND__EVENT_KIND_LICENSED ? "licensed"
                                                                                  : "sanctioned",
                              e->source_department,
                              skey,
                              stype,
                              e->subject && e->subject->id ? e->subject->id : "",
                              e->decision_no,
                              n1,
                              n2,
                              n3};
        ledger__evalsha(l, SCRIPT_DISCLOSURE, 3, 13, argv);
        l->n.disclosures_total++;
        jrp__v1__credit_event__free_unpacked(e, NULL);
        return 0;
    }
    /* An action topic. */
    Jrp__V1__Action *a = jrp__v1__action__unpack(NULL, m->len, m->payload);
    if (!a) {
        ledger__dead_letter(l, m, "decode_failed", "not a jrp.v1.Action");
        return -1;
    }
    if (!a->action_id[0] || strlen(a->action_id) > 256 ||
        (a->op != JRP__V1__ACTION_OP__ACTION_OP_APPLY &&
         a->op != JRP__V1__ACTION_OP__ACTION_OP_REVOKE)) {
        jrp__v1__action__free_unpacked(a, NULL);
        ledger__dead_letter(l, m, "bad_action", "action without action_id or op");
        return -1;
    }
    l->n.actions_total++;
    int apply = a->op == JRP__V1__ACTION_OP__ACTION_OP_APPLY;
    int64_t due = 0;
    char err[256];
    if (apply &&
        ledger_deadline(&l->clock, a->issued_at_ms, l->feedback_days, &due, err, sizeof(err))) {
        l->n.calendar_errors++;
        log_warn("action %s: no feedback deadline: %s", a->action_id, err);
        due = 0;
    }
    char skey[300];
    subject_key(a->subject, skey, sizeof(skey));
    snprintf(k1, sizeof(k1), "%s%s%s", l->prefix, REPORT_KEY_ACTION, a->action_id);
    snprintf(k2, sizeof(k2), "%s%s", l->prefix, REPORT_KEY_DUE_FEEDBACK);
    snprintf(k3, sizeof(k3), "%s%s", l->prefix, REPORT_KEY_ISSUED);
    snprintf(k4, sizeof(k4), "%s%s", l->prefix, REPORT_KEY_STATS);
    if (!apply && a->revokes_action_id[0] && strlen(a->revokes_action_id) <= 256)
        snprintf(k5, sizeof(k5), "%s%s%s", l->prefix, REPORT_KEY_ACTION, a->revokes_action_id);
    else
        snprintf(k5, sizeof(k5), "%s", k1);
    snprintf(stype, sizeof(stype), "%d", a->subject ? (int)a->subject->type : 0);
    snprintf(n1, sizeof(n1), "%" PRId64, a->issued_at_ms);
    snprintf(n2, sizeof(n2), "%" PRId64, due);
    snprintf(n4, sizeof(n4), "%" PRId64, a->ruleset_version);
    (void)n3;
    const char *argv[] = {k1,
                          k2,
                          k3,
                          k4,
                          k5,
                          a->action_id,
                          apply ? "apply" : "revoke",
                          a->department,
                          a->memorandum_id,
                          a->memorandum_version,
                          a->list_code,
                          skey,
                          stype,
                          a->subject && a->subject->id ? a->subject->id : "",
                          a->measure_code,
                          n1,
                          n2,
                          apply ? "" : a->revokes_action_id,
                          a->cause_event_id};
    ledger__evalsha(l, SCRIPT_ACTION, 5, 19, argv);
    jrp__v1__action__free_unpacked(a, NULL);
    return 0;
}

/* Commit the batch's offsets (asynchronously: a lost commit only means re-consuming, which
 * changes nothing). */
static void ledger__commit(ledger_t *l)
{
    rd_kafka_topic_partition_list_t *offs = rd_kafka_topic_partition_list_new(16);
    for (size_t i = 0; i < l->n_batch; i++) {
        const rd_kafka_message_t *m = l->batch[i];
        rd_kafka_topic_partition_t *tp =
            rd_kafka_topic_partition_list_find(offs, rd_kafka_topic_name(m->rkt), m->partition);
        if (!tp)
            tp = rd_kafka_topic_partition_list_add(offs, rd_kafka_topic_name(m->rkt), m->partition);
        if (m->offset + 1 > tp->offset)
            tp->offset = m->offset + 1;
    }
    if (offs->cnt) {
        rd_kafka_resp_err_t err = rd_kafka_commit(l->consumer, offs, 1);
        if (err)
            log_warn("commit: %s", rd_kafka_err2str(err));
    }
    rd_kafka_topic_partition_list_destroy(offs);
}

static void ledger__batch_clear(ledger_t *l)
{
    for (size_t i = 0; i < l->n_batch; i++)
        rd_kafka_message_destroy(l->batch[i]);
    l->n_batch = 0;
    memset(l->dead, 0, sizeof(l->dead));
}

/* Write the held batch to Redis and commit it. 0 done, -1 kept for a retry. */
static int ledger__flush_batch(ledger_t *l)
{
    if (!l->n_batch)
        return 0;
    redisContext *c = ledger__redis(l);
    if (!c)
        return -1;
    ledger_counts_t saved = l->n;
    redis_pipe_reset(l->pipe);
    int dead = 0;
    l->produce_errors = 0;
    for (size_t i = 0; i < l->n_batch; i++) {
        if (l->dead[i])
            continue; /* dead-lettered by an earlier attempt */
        if (ledger__queue(l, l->batch[i]) < 0) {
            dead = 1;
            l->dead[i] = 1;
        }
    }
    char err[512];
    if (dead && (rd_kafka_flush(l->producer, LEDGER_FLUSH_MS) || l->produce_errors)) {
        /* A dead letter the broker did not take: the whole batch is tried again. */
        log_warn("dead letters not acknowledged: the batch is retried");
        memset(l->dead, 0, sizeof(l->dead));
        l->n = saved;
        return -1;
    }
    if (redis_pipe_count(l->pipe) && redis_pipe_exec(c, l->pipe, err, sizeof(err))) {
        l->n = saved;
        ledger__redis_drop(l, err);
        return -1;
    }
    for (size_t i = 0; i < redis_pipe_count(l->pipe); i++) {
        const redisReply *r = redis_pipe_reply(l->pipe, i);
        if (!r || r->type == REDIS_REPLY_ERROR) {
            snprintf(err, sizeof(err), "script: %s", r ? r->str : "no reply");
            l->n = saved;
            ledger__redis_drop(l, err); /* reconnecting reloads the scripts */
            return -1;
        }
        if (r->type == REDIS_REPLY_INTEGER && r->integer == -1)
            l->n.feedback_wrong_dept++;
    }
    ledger__redis_ok(l);
    ledger__commit(l);
    ledger__batch_clear(l);
    l->batches++;
    return 0;
}

static void ledger__on_consumer_ready(void *arg)
{
    ledger_t *l = arg;
    while (!l->failed && !l->stopping) {
        if (l->n_batch && ledger__flush_batch(l))
            return; /* Redis is down: the timer retries; nothing more is read meanwhile */
        while (l->n_batch < LEDGER_BATCH) {
            rd_kafka_message_t *m = rd_kafka_consumer_poll(l->consumer, 0);
            if (!m)
                break;
            if (m->err) {
                if (m->err == RD_KAFKA_RESP_ERR__FATAL) {
                    char reason[512];
                    rd_kafka_fatal_error(l->consumer, reason, sizeof(reason));
                    rd_kafka_message_destroy(m);
                    ledger__fatal(l, "consumer", reason);
                    return;
                }
                if (m->err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN)
                    l->kafka_down = 1;
                if (m->err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART)
                    log_debug("consumer: %s", rd_kafka_message_errstr(m)); /* no actions yet */
                else if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
                    log_warn("consumer: %s", rd_kafka_message_errstr(m));
                rd_kafka_message_destroy(m);
                continue;
            }
            l->kafka_down = 0;
            l->batch[l->n_batch++] = m;
        }
        if (!l->n_batch)
            return;
        if (ledger__flush_batch(l))
            return;
    }
}

/* --- alerts ----------------------------------------------------------------------------------- */

static void ledger__on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    ledger_t *l = opaque;
    if (m->err) {
        l->produce_errors++;
        log_warn("alert or dead letter not delivered: %s", rd_kafka_err2str(m->err));
    }
}

/* The value of field name in an HGETALL reply, or "". */
static const char *hfield(const redisReply *h, const char *name)
{
    if (!h || h->type != REDIS_REPLY_ARRAY)
        return "";
    for (size_t i = 0; i + 1 < h->elements; i += 2)
        if (h->element[i]->type == REDIS_REPLY_STRING && !strcmp(h->element[i]->str, name) &&
            h->element[i + 1]->type == REDIS_REPLY_STRING)
            return h->element[i + 1]->str;
    return "";
}

static int64_t hint(const redisReply *h, const char *name)
{
    return strtoll(hfield(h, name), NULL, 10);
}

static int ledger__produce_alert(ledger_t *l, int kind, const redisReply *h, const char *id)
{
    Jrp__V1__Alert al = JRP__V1__ALERT__INIT;
    Jrp__V1__Subject subj = JRP__V1__SUBJECT__INIT;
    char alert_id[400], msg[800];
    int64_t now = ledger__now_ms();
    subj.type = (Jrp__V1__SubjectType)hint(h, "stype");
    subj.id = (char *)hfield(h, "sid");
    al.subject = &subj;
    al.raised_at_ms = now;
    al.department = (char *)hfield(h, "dept");
    if (kind == ALERT_OVERDUE) {
        al.kind = JRP__V1__ALERT_KIND__ALERT_KIND_FEEDBACK_OVERDUE;
        snprintf(alert_id, sizeof(alert_id), "overdue:%s", id);
        snprintf(msg, sizeof(msg),
                 "no EXECUTED or REJECTED feedback from %s for %s (%s, memorandum %s) within %d "
                 "working days",
                 al.department, id, hfield(h, "measure"), hfield(h, "memo"), l->feedback_days);
        al.action_id = (char *)id;
        al.cause_event_id = (char *)hfield(h, "cause");
        al.deadline_ms = hint(h, "due");
    } else {
        int due = kind == ALERT_DUE;
        al.kind = due ? JRP__V1__ALERT_KIND__ALERT_KIND_DISCLOSURE_DUE
                      : JRP__V1__ALERT_KIND__ALERT_KIND_DISCLOSURE_BREACHED;
        snprintf(alert_id, sizeof(alert_id), "%s:%s",
                 due ? "disclosure-due" : "disclosure-breached", id);
        snprintf(msg, sizeof(msg),
                 due ? "%s decision %s (%s) by %s must be published (双公示) by the end of today"
                     : "%s decision %s (%s) by %s was not published (双公示) within 7 working days",
                 hfield(h, "kind"), hfield(h, "decision_no"), id, hfield(h, "dept"));
        al.cause_event_id = (char *)id;
        al.action_id = "";
        al.deadline_ms = hint(h, "deadline");
    }
    al.alert_id = alert_id;
    al.message = msg;
    size_t len = jrp__v1__alert__get_packed_size(&al);
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf)
        return -1;
    jrp__v1__alert__pack(&al, buf);
    const char *key = hfield(h, "subject");
    rd_kafka_resp_err_t err =
        kafka_produce(l->producer, l->topic_alerts, RD_KAFKA_PARTITION_UA, key, strlen(key), buf,
                      len, kafka_headers("jrp.v1.Alert", NULL), NULL);
    free(buf);
    if (err) {
        log_warn("alert: %s", rd_kafka_err2str(err));
        return -1;
    }
    log_info("alert %s", alert_id);
    return 0;
}

/* Raise what fell due in one index (disclosure = 0: feedback, 1: disclosures). */
static void ledger__scan(ledger_t *l, int disclosure)
{
    redisContext *c = ledger__redis(l);
    if (!c)
        return;
    int64_t now = ledger__now_ms();
    char due_key[300], now_s[32], lease_s[32], max_s[16];
    snprintf(due_key, sizeof(due_key), "%s%s", l->prefix,
             disclosure ? REPORT_KEY_DUE_DISCLOSURE : REPORT_KEY_DUE_FEEDBACK);
    snprintf(now_s, sizeof(now_s), "%" PRId64, now);
    snprintf(lease_s, sizeof(lease_s), "%" PRId64, now + LEDGER_LEASE_MS);
    snprintf(max_s, sizeof(max_s), "%d", LEDGER_ALERT_BATCH);
    const char *argv[] = {due_key, now_s, lease_s, max_s};
    char err[512];
    redisReply *ids =
        redis_script_call(c, l->scripts[SCRIPT_CLAIM], 1, 4, argv, NULL, err, sizeof(err));
    if (!ids || ids->type != REDIS_REPLY_ARRAY) {
        if (ids && ids->type == REDIS_REPLY_ERROR)
            snprintf(err, sizeof(err), "claim: %s", ids->str);
        freeReplyObject(ids);
        ledger__redis_drop(l, err);
        return;
    }
    if (!l->n_batch)
        ledger__redis_ok(l); /* a held batch decides when the outage is over */
    if (ids->elements == 0) {
        freeReplyObject(ids);
        return;
    }
    for (size_t i = 0; i < ids->elements; i++)
        redisAppendCommand(c, "HGETALL %s%s%s", l->prefix,
                           disclosure ? REPORT_KEY_DISCLOSURE : REPORT_KEY_ACTION,
                           ids->element[i]->str);
    redisReply **recs = calloc(ids->elements, sizeof(*recs));
    int *kinds = calloc(ids->elements, sizeof(*kinds));
    int broken = !recs || !kinds;
    for (size_t i = 0; i < ids->elements; i++) {
        redisReply *h = NULL;
        if (redisGetReply(c, (void **)&h) != REDIS_OK || !h) {
            broken = 1;
            break;
        }
        if (recs)
            recs[i] = h;
        else
            freeReplyObject(h);
    }
    if (broken) {
        ledger__redis_drop(l, "HGETALL failed");
        goto done;
    }
    /* Decide and produce. kinds[i]: -1 nothing to raise (settled meanwhile), else the kind. */
    l->produce_errors = 0;
    for (size_t i = 0; i < ids->elements; i++) {
        const redisReply *h = recs[i];
        kinds[i] = -1;
        if (!disclosure) {
            const char *st = hfield(h, "status");
            if (strcmp(hfield(h, "op"), "apply") || !strcmp(st, "executed") ||
                !strcmp(st, "rejected") || !strcmp(hfield(h, "lifted"), "1") ||
                !strcmp(hfield(h, "alerted"), "1"))
                continue;
            kinds[i] = ALERT_OVERDUE;
        } else {
            if (!strcmp(hfield(h, "confirmed"), "1") || !hfield(h, "kind")[0])
                continue;
            int64_t stage = hint(h, "stage");
            if (stage >= 2)
                continue;
            kinds[i] = stage == 0 ? ALERT_DUE : ALERT_BREACHED;
        }
        if (ledger__produce_alert(l, kinds[i], h, ids->element[i]->str))
            l->produce_errors++;
    }
    rd_kafka_flush(l->producer, LEDGER_FLUSH_MS);
    if (l->produce_errors) {
        /* Leave the leases: the entries come due again when they end. */
        log_warn("%" PRIu64 " alerts not delivered; retried after the lease", l->produce_errors);
        goto done;
    }
    /* Record what was raised so that it never is again. */
    redis_pipe_reset(l->pipe);
    for (size_t i = 0; i < ids->elements; i++) {
        char rec[600];
        const char *id = ids->element[i]->str;
        snprintf(rec, sizeof(rec), "%s%s%s", l->prefix,
                 disclosure ? REPORT_KEY_DISCLOSURE : REPORT_KEY_ACTION, id);
        if (kinds[i] >= 0)
            l->alerts[kinds[i]]++;
        if (kinds[i] == ALERT_OVERDUE) {
            redis_pipe_addv(l->pipe, "HSET", rec, "alerted", "1", NULL);
        } else if (kinds[i] == ALERT_DUE) {
            char dl[32];
            snprintf(dl, sizeof(dl), "%" PRId64, hint(recs[i], "deadline"));
            redis_pipe_addv(l->pipe, "HSET", rec, "stage", "1", NULL);
            redis_pipe_addv(l->pipe, "ZADD", due_key, dl, id, NULL);
            continue;
        } else if (kinds[i] == ALERT_BREACHED) {
            redis_pipe_addv(l->pipe, "HSET", rec, "stage", "2", NULL);
        }
        redis_pipe_addv(l->pipe, "ZREM", due_key, id, NULL);
    }
    if (redis_pipe_exec(c, l->pipe, err, sizeof(err)))
        ledger__redis_drop(l, err);
done:
    if (recs)
        for (size_t i = 0; i < ids->elements; i++)
            freeReplyObject(recs[i]);
    free(recs);
    free(kinds);
    freeReplyObject(ids);
}

static void ledger__refresh_stats(ledger_t *l)
{
    redisContext *c = ledger__redis(l);
    if (!c)
        return;
    redisReply *r = redisCommand(c, "HGETALL %s%s", l->prefix, REPORT_KEY_STATS);
    if (!r || r->type != REDIS_REPLY_ARRAY) {
        freeReplyObject(r);
        ledger__redis_drop(l, "HGETALL stats failed");
        return;
    }
    for (int s = 0; s < 5; s++)
        l->stats[s] = hint(r, status_names[s]);
    freeReplyObject(r);
}

static void ledger__on_cron(uv_timer_t *t)
{
    ledger_t *l = t->data;
    if (l->failed || l->stopping)
        return;
    if (l->n_batch)
        ledger__on_consumer_ready(l); /* retry the held batch */
    ledger__scan(l, 0);
    ledger__scan(l, 1);
    ledger__refresh_stats(l);
    rd_kafka_poll(l->producer, 0);
    if (l->kafka_down) {
        const rd_kafka_metadata_t *md = NULL;
        if (!rd_kafka_metadata(l->consumer, 0, NULL, &md, 200)) {
            rd_kafka_metadata_destroy(md);
            l->kafka_down = 0;
        }
    }
}

/* --- life cycle ------------------------------------------------------------------------------- */

static void ledger__on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    ledger_t *l = opaque;
    if (err == RD_KAFKA_RESP_ERR__FATAL) {
        char why[512];
        rd_kafka_fatal_error(rk, why, sizeof(why));
        ledger__fatal(l, rd_kafka_name(rk), why);
        return;
    }
    if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN)
        l->kafka_down = 1;
    log_warn("kafka (%s): %s", rd_kafka_name(rk), reason);
}

static void ledger__on_commit(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                              rd_kafka_topic_partition_list_t *offsets, void *opaque)
{
    (void)rk;
    (void)offsets;
    (void)opaque;
    if (err && err != RD_KAFKA_RESP_ERR__NO_OFFSET)
        log_warn("offset commit: %s", rd_kafka_err2str(err));
}

static rd_kafka_t *ledger__client(ledger_t *l, rd_kafka_type_t type, char *errstr,
                                  size_t errstr_size)
{
    rd_kafka_conf_t *conf;
    if (type == RD_KAFKA_PRODUCER) {
        conf = kafka_producer_conf(l->cfg, NULL, NULL, 0, errstr, errstr_size);
        if (conf)
            rd_kafka_conf_set_dr_msg_cb(conf, ledger__on_delivery);
    } else {
        /* New action topics are found by the pattern within this time. */
        const char *const extra[] = {"topic.metadata.refresh.interval.ms", "10000", NULL};
        conf = kafka_consumer_conf(l->cfg, extra, config_get(l->cfg, "ledger.group"), NULL, 0,
                                   errstr, errstr_size);
        if (conf)
            rd_kafka_conf_set_offset_commit_cb(conf, ledger__on_commit);
    }
    if (!conf)
        return NULL;
    rd_kafka_conf_set_error_cb(conf, ledger__on_error);
    rd_kafka_conf_set_opaque(conf, l);
    rd_kafka_t *rk = rd_kafka_new(type, conf, errstr, errstr_size);
    if (!rk) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    conf = NULL; /* now owned by rk */
    return rk;
}

ledger_t *ledger_create(uv_loop_t *loop, const config_t *cfg, char *errstr, size_t errstr_size)
{
    ledger_t *l = calloc(1, sizeof(*l));
    if (!l) {
        snprintf(errstr, errstr_size, "out of memory");
        return NULL;
    }
    l->loop = loop;
    l->cfg = cfg;
    snprintf(l->prefix, sizeof(l->prefix), "%s", config_get(cfg, "redis.prefix"));
    config_topic(cfg, "feedback", l->topic_feedback, sizeof(l->topic_feedback));
    config_topic(cfg, "events", l->topic_events, sizeof(l->topic_events));
    config_topic(cfg, "alerts", l->topic_alerts, sizeof(l->topic_alerts));
    config_topic(cfg, "dlq", l->topic_dlq, sizeof(l->topic_dlq));
    config_topic(cfg, "state", l->topic_state, sizeof(l->topic_state));
    if (ledger_actions_pattern(config_get(cfg, "topic.prefix"), l->pattern, sizeof(l->pattern))) {
        snprintf(errstr, errstr_size, "topic.prefix is too long");
        goto err;
    }
    l->feedback_days = (int)config_get_int(cfg, "ledger.feedback_due_workdays");
    l->scan_ms = config_get_int(cfg, "ledger.scan_ms");
    l->clock.workday_ms = config_get_int(cfg, "ledger.workday_seconds") * 1000;
    char why[512];
    l->cal = workdays_load(config_get(cfg, "ledger.calendar"), why, sizeof(why));
    if (!l->cal) {
        snprintf(errstr, errstr_size, "ledger.calendar: %s", why);
        goto err;
    }
    l->clock.cal = l->cal;
    int first, last;
    workdays_years(l->cal, &first, &last);
    log_info(
        "working-day calendar %s covers %d..%d%s", config_get(cfg, "ledger.calendar"), first, last,
        l->clock.workday_ms ? " (ledger.workday_seconds set: compressed test time instead)" : "");
    static const char *const texts[SCRIPT_COUNT] = {lua_action, lua_feedback, lua_disclosure,
                                                    lua_claim, lua_subject};
    for (int i = 0; i < SCRIPT_COUNT; i++)
        if (!(l->scripts[i] = redis_script_create(texts[i]))) {
            snprintf(errstr, errstr_size, "out of memory");
            goto err;
        }
    if (!(l->pipe = redis_pipe_create())) {
        snprintf(errstr, errstr_size, "out of memory");
        goto err;
    }
    if (!ledger__redis(l)) {
        snprintf(errstr, errstr_size, "redis %s unreachable", config_get(cfg, "redis.url"));
        goto err;
    }
    if (rulesync_ensure_topics(cfg, NULL, 0, NULL, why, sizeof(why))) {
        snprintf(errstr, errstr_size, "topics: %s", why);
        goto err;
    }
    if (!(l->producer = ledger__client(l, RD_KAFKA_PRODUCER, errstr, errstr_size)))
        goto err;
    if (!(l->consumer = ledger__client(l, RD_KAFKA_CONSUMER, errstr, errstr_size)))
        goto err;
    rd_kafka_poll_set_consumer(l->consumer);
    if (!(l->consumer_queue = rd_kafka_queue_get_consumer(l->consumer))) {
        snprintf(errstr, errstr_size, "out of memory");
        goto err;
    }
    return l;
err:
    ledger_destroy(l);
    return NULL;
}

int ledger_start(ledger_t *l)
{
    if (uv_timer_init(l->loop, &l->cron))
        return -1;
    l->cron.data = l;
    l->started = 1;
    l->consumer_bridge = kafka_uv_create(l->loop, l->consumer_queue, ledger__on_consumer_ready, l);
    if (!l->consumer_bridge)
        return -1;
    rd_kafka_topic_partition_list_t *topics = rd_kafka_topic_partition_list_new(4);
    rd_kafka_topic_partition_list_add(topics, l->topic_feedback, RD_KAFKA_PARTITION_UA);
    rd_kafka_topic_partition_list_add(topics, l->topic_events, RD_KAFKA_PARTITION_UA);
    rd_kafka_topic_partition_list_add(topics, l->topic_state, RD_KAFKA_PARTITION_UA);
    rd_kafka_topic_partition_list_add(topics, l->pattern, RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t err = rd_kafka_subscribe(l->consumer, topics);
    rd_kafka_topic_partition_list_destroy(topics);
    if (err) {
        log_error("subscribe: %s", rd_kafka_err2str(err));
        return -1;
    }
    log_info("consuming %s, %s, %s and /%s/ in group %s", l->topic_feedback, l->topic_events,
             l->topic_state, l->pattern, config_get(l->cfg, "ledger.group"));
    return uv_timer_start(&l->cron, ledger__on_cron, (uint64_t)l->scan_ms, (uint64_t)l->scan_ms);
}

static void ledger__closed(uv_handle_t *h)
{
    ledger_t *l = h->data;
    if (l->on_stopped)
        l->on_stopped(l->on_stopped_arg);
}

void ledger_stop(ledger_t *l, void (*on_stopped)(void *arg), void *arg)
{
    if (l->stopping)
        return;
    l->stopping = 1;
    l->on_stopped = on_stopped;
    l->on_stopped_arg = arg;
    /* A held batch is not committed: the next owner reads it again (idempotent). */
    ledger__batch_clear(l);
    log_info("leaving the consumer group");
    rd_kafka_resp_err_t err = rd_kafka_consumer_close(l->consumer);
    if (err)
        log_warn("consumer close: %s", rd_kafka_err2str(err));
    rd_kafka_flush(l->producer, LEDGER_FLUSH_MS);
    kafka_uv_destroy(l->consumer_bridge);
    l->consumer_bridge = NULL;
    uv_timer_stop(&l->cron);
    uv_close((uv_handle_t *)&l->cron, ledger__closed);
}

int ledger_failed(const ledger_t *l)
{
    return l->failed;
}

const char *ledger_not_ready(const ledger_t *l)
{
    if (l->failed)
        return "fatal Kafka error";
    if (l->stopping)
        return "stopping";
    if (l->redis_down)
        return "redis unreachable or refusing the writes";
    if (l->kafka_down)
        return "kafka unreachable";
    rd_kafka_topic_partition_list_t *parts = NULL;
    if (rd_kafka_assignment(l->consumer, &parts) || !parts)
        return "no assignment";
    int n = parts->cnt;
    rd_kafka_topic_partition_list_destroy(parts);
    return n ? NULL : "no partitions assigned yet";
}

void ledger_write_metrics(const ledger_t *l, ops_text_t *t)
{
    ops_counter(t, "jrp_ledger_feedback_consumed_total", "Feedback records consumed",
                l->n.feedback_total);
    ops_counter(
        t, "jrp_ledger_feedback_wrong_department_total",
        "Feedback ignored: not from the action's department (or the disclosure's publisher)",
        l->n.feedback_wrong_dept);
    ops_counter(t, "jrp_ledger_actions_consumed_total", "Action records consumed",
                l->n.actions_total);
    ops_counter(t, "jrp_ledger_events_consumed_total", "Credit events consumed", l->n.events_total);
    ops_counter(t, "jrp_ledger_states_consumed_total",
                "Subject states consumed (credit.state, for the subjects list)", l->n.states_total);
    ops_counter(t, "jrp_ledger_disclosures_consumed_total",
                "LICENSED and SANCTIONED events consumed (双公示)", l->n.disclosures_total);
    ops_counter(t, "jrp_ledger_dead_letters_total", "Records sent to the dead-letter topic",
                l->n.bad_records);
    ops_counter(t, "jrp_ledger_redis_errors_total", "Redis failures (batch kept and retried)",
                l->redis_errors);
    ops_counter(t, "jrp_ledger_calendar_errors_total",
                "Deadlines not computed: the calendar does not cover the year",
                l->n.calendar_errors);
    ops_counter(t, "jrp_ledger_batches_total", "Batches written to Redis and committed",
                l->batches);
    ops_family(t, "jrp_ledger_alerts_raised_total", "counter", "Alerts raised, by kind");
    for (int k = 0; k < ALERT_KINDS; k++) {
        char lab[64];
        snprintf(lab, sizeof(lab), "kind=\"%s\"", alert_names[k]);
        ops_sample(t, "jrp_ledger_alerts_raised_total", lab, (double)l->alerts[k]);
    }
    ops_family(t, "jrp_ledger_actions", "gauge",
               "Actions by current status (all the ledger holds, refreshed every ledger.scan_ms)");
    for (int s = 0; s < 5; s++) {
        char lab[64];
        snprintf(lab, sizeof(lab), "status=\"%s\"", status_names[s]);
        ops_sample(t, "jrp_ledger_actions", lab, (double)l->stats[s]);
    }
    ops_gauge(t, "jrp_ledger_batch_held", "Records held because Redis is unreachable",
              (double)l->n_batch);
}

void ledger_destroy(ledger_t *l)
{
    if (!l)
        return;
    ledger__batch_clear(l);
    if (l->consumer_bridge)
        kafka_uv_destroy(l->consumer_bridge);
    if (l->consumer_queue)
        rd_kafka_queue_destroy(l->consumer_queue);
    if (l->consumer) {
        if (!l->stopping)
            rd_kafka_consumer_close(l->consumer);
        rd_kafka_destroy(l->consumer);
    }
    if (l->producer) {
        rd_kafka_flush(l->producer, LEDGER_FLUSH_MS);
        rd_kafka_destroy(l->producer);
    }
    for (int i = 0; i < SCRIPT_COUNT; i++)
        redis_script_destroy(l->scripts[i]);
    redis_pipe_destroy(l->pipe);
    if (l->rc)
        redisFree(l->rc);
    workdays_destroy(l->cal);
    free(l);
}
