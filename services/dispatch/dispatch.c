/*
 * dispatch: Kafka in, webhooks out, on one libuv loop. An action moves through
 * QUEUED (behind an earlier action of its subject) -> READY (waiting for a request slot) ->
 * SENDING (a curl easy handle in the multi) -> BACKOFF (timer) -> ... -> FINISHING (its feedback
 * or dead letter produced, waiting for the broker's acknowledgement) -> done: its offset is
 * finished and the next action of its subject may go.
 */
#include "dispatch.h"

#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdarg.h>
#include <librdkafka/rdkafka.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "dispatch_core.h"
#include "ids.h"
#include "jrp/v1/action.pb-c.h"
#include "jrp/v1/feedback.pb-c.h"
#include "kafka.h"
#include "log.h"
#include "pbjson.h"
#include "rulesync.h"

#define DISPATCH_RETRY_AFTER_MAX_MS 3600000 /* a Retry-After beyond an hour is taken as an hour */
#define DISPATCH_EXCERPT 160                /* bytes of a refusal's body kept in the reason */
#define DISPATCH_FLUSH_MS 10000
#define DISPATCH_TOPIC_TRIES 5
#define DISPATCH_ID_MAX 200 /* longest action id sent as Idempotency-Key */

enum { ITEM_QUEUED = 0, ITEM_READY, ITEM_SENDING, ITEM_BACKOFF, ITEM_FINISHING };

typedef struct dept_s dept_t;

typedef struct item_s {
    dispatch_t *d;
    dept_t *dept;
    struct item_s *prev, *next; /* every live item, for revocation and shutdown */
    struct item_s *next_ready;
    int state;
    int in_order;      /* pushed into the subject order (not a decode failure) */
    int orphan;        /* dropped while its feedback or dead letter was being produced */
    int timer_started; /* timer initialised: the item is freed in its close callback */
    int32_t partition;
    int64_t offset;
    char *key;
    size_t key_len;
    void *value;
    size_t value_len;
    rd_kafka_headers_t *hdrs; /* the record's own headers (copied), or NULL */
    char *action_id;
    char *body; /* the JSON sent */
    size_t body_len;
    unsigned attempts;
    uint64_t sent_ms;
    CURL *easy;
    struct curl_slist *req_hdrs;
    char errbuf[CURL_ERROR_SIZE];
    char resp[DISPATCH_EXCERPT + 1];
    size_t resp_len;
    char retry_after[96];
    /* What is produced at the end: feedback (code empty) or a dead letter. */
    char code[32];
    char reason[400];
    long status;
    uv_timer_t timer;
} item_t;

struct dept_s {
    dispatch_t *d;
    char name[40];
    const char *url, *secret, *ca_file;
    long timeout_ms;
    int concurrency;
    char topic[256];
    dispatch_order_t *order;
    item_t *ready_head, *ready_tail;
    int in_flight;
    dispatch_wm_t *wms; /* by partition */
    int n_wms;
    uint64_t delivered, retried, dead_lettered;
    ops_histogram_t latency;
};

typedef struct sock_s {
    uv_poll_t poll;
    curl_socket_t fd;
    dispatch_t *d;
    struct sock_s *prev, *next;
} sock_t;

struct dispatch_s {
    uv_loop_t *loop;
    const config_t *cfg;
    dept_t *depts;
    size_t n_depts;
    char topic_feedback[256], topic_dlq[256];
    int64_t retry_base_ms, retry_cap_ms, max_attempts, max_pending, drain_ms, commit_ms;
    rd_kafka_t *consumer, *producer;
    rd_kafka_queue_t *consumer_queue, *producer_queue;
    kafka_uv_t *consumer_bridge, *producer_bridge;
    CURLM *multi;
    uv_timer_t curl_timer, cron, drain_timer;
    int handles_open;
    sock_t *socks;
    item_t *items;
    size_t n_items, n_orphans;
    int assigned, kafka_down, paused, revoking, stopping, draining_done, failed, started;
    int curl_inited;
    void (*on_stopped)(void *arg);
    void *on_stopped_arg;
};

static void dispatch__send(item_t *it);
static void dispatch__finish_produce(item_t *it);
static void dispatch__check_drained(dispatch_t *d);

static uint64_t dispatch__wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void dispatch__fatal(dispatch_t *d, const char *what, const char *reason)
{
    if (d->failed)
        return;
    log_error("fatal error (%s): %s; exiting", what, reason);
    d->failed = 1;
    uv_stop(d->loop);
}

/* --- items ------------------------------------------------------------------------------------ */

static void dispatch__item_closed(uv_handle_t *h)
{
    free(h->data);
}

/* Unlink and free; the item must not be in a curl multi or a ready list any more. */
static void dispatch__item_free(item_t *it)
{
    dispatch_t *d = it->d;
    if (it->prev)
        it->prev->next = it->next;
    else if (d->items == it)
        d->items = it->next;
    if (it->next)
        it->next->prev = it->prev;
    it->prev = it->next = NULL;
    d->n_items--;
    free(it->key);
    free(it->value);
    if (it->hdrs)
        rd_kafka_headers_destroy(it->hdrs);
    free(it->action_id);
    free(it->body);
    if (it->timer_started) {
        uv_timer_stop(&it->timer);
        uv_close((uv_handle_t *)&it->timer, dispatch__item_closed);
    } else {
        free(it);
    }
}

static void dispatch__curl_release(item_t *it)
{
    if (it->easy) {
        if (it->d->multi)
            curl_multi_remove_handle(it->d->multi, it->easy);
        curl_easy_cleanup(it->easy);
        it->easy = NULL;
    }
    curl_slist_free_all(it->req_hdrs);
    it->req_hdrs = NULL;
}

static int dispatch__timer(item_t *it, uv_timer_cb cb, uint64_t ms)
{
    if (!it->timer_started) {
        if (uv_timer_init(it->d->loop, &it->timer))
            return -1;
        it->timer.data = it;
        it->timer_started = 1;
    }
    return uv_timer_start(&it->timer, cb, ms, 0);
}

static dispatch_wm_t *dispatch__wm(dept_t *dept, int32_t partition)
{
    if (partition < 0)
        return NULL;
    if (partition >= dept->n_wms) {
        int n = partition + 1;
        dispatch_wm_t *w = realloc(dept->wms, (size_t)n * sizeof(*w));
        if (!w)
            return NULL;
        for (int i = dept->n_wms; i < n; i++)
            dispatch_wm_init(&w[i]);
        dept->wms = w;
        dept->n_wms = n;
    }
    return &dept->wms[partition];
}

/* --- flow control ----------------------------------------------------------------------------- */

static void dispatch__pause(dispatch_t *d, int pause)
{
    rd_kafka_topic_partition_list_t *parts = NULL;
    if (rd_kafka_assignment(d->consumer, &parts) || !parts)
        return;
    if (parts->cnt) {
        rd_kafka_resp_err_t err = pause ? rd_kafka_pause_partitions(d->consumer, parts)
                                        : rd_kafka_resume_partitions(d->consumer, parts);
        if (err)
            log_warn("%s partitions: %s", pause ? "pause" : "resume", rd_kafka_err2str(err));
    }
    rd_kafka_topic_partition_list_destroy(parts);
    d->paused = pause;
}

static void dispatch__flow(dispatch_t *d)
{
    if (d->stopping)
        return;
    if (!d->paused && (int64_t)d->n_items >= d->max_pending) {
        log_info("%zu actions held: pausing consumption", d->n_items);
        dispatch__pause(d, 1);
    } else if (d->paused && (int64_t)d->n_items <= d->max_pending / 2) {
        dispatch__pause(d, 0);
    }
}

/* A subject's head: send it now if a slot is free, else wait in the department's ready list. */
static void dispatch__ready(item_t *it)
{
    dept_t *dept = it->dept;
    if (!it->d->stopping && !it->d->revoking && dept->in_flight < dept->concurrency &&
        !dept->ready_head) {
        dispatch__send(it);
        return;
    }
    it->state = ITEM_READY;
    it->next_ready = NULL;
    if (dept->ready_tail)
        dept->ready_tail->next_ready = it;
    else
        dept->ready_head = it;
    dept->ready_tail = it;
}

static void dispatch__pump(dept_t *dept)
{
    dispatch_t *d = dept->d;
    while (!d->stopping && !d->revoking && dept->ready_head &&
           dept->in_flight < dept->concurrency) {
        item_t *it = dept->ready_head;
        dept->ready_head = it->next_ready;
        if (!dept->ready_head)
            dept->ready_tail = NULL;
        it->next_ready = NULL;
        dispatch__send(it);
    }
}

/* --- the end of an action: feedback or dead letter, then its offset is finished -------------- */

static void dispatch__on_produce_retry(uv_timer_t *t)
{
    dispatch__finish_produce(t->data);
}

static const char *dispatch__header(rd_kafka_headers_t *hdrs, const char *name, char *buf,
                                    size_t size)
{
    const void *val;
    size_t len;
    if (!hdrs || rd_kafka_header_get_last(hdrs, name, &val, &len) || !val || len >= size)
        return NULL;
    memcpy(buf, val, len);
    buf[len] = '\0';
    return buf;
}

/* Only visible ASCII (a value that can go into an HTTP header as it is)? */
static int dispatch__visible(const char *s)
{
    for (; *s; s++)
        if (*s <= 0x20 || *s >= 0x7f)
            return 0;
    return 1;
}

static rd_kafka_resp_err_t dispatch__produce_feedback(item_t *it)
{
    dispatch_t *d = it->d;
    Jrp__V1__Feedback fb = JRP__V1__FEEDBACK__INIT;
    char note[64], tp[128];
    snprintf(note, sizeof(note), "webhook answered %ld", it->status);
    fb.action_id = it->action_id;
    fb.department = it->dept->name;
    fb.status = JRP__V1__FEEDBACK_STATUS__FEEDBACK_STATUS_RECEIVED;
    fb.note = note;
    fb.occurred_at_ms = (int64_t)dispatch__wall_ms();
    size_t len = jrp__v1__feedback__get_packed_size(&fb);
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf)
        return RD_KAFKA_RESP_ERR__QUEUE_FULL;
    jrp__v1__feedback__pack(&fb, buf);
    rd_kafka_resp_err_t err = kafka_produce(
        d->producer, d->topic_feedback, RD_KAFKA_PARTITION_UA, it->action_id, strlen(it->action_id),
        buf, len,
        kafka_headers("jrp.v1.Feedback", dispatch__header(it->hdrs, "traceparent", tp, sizeof(tp))),
        it);
    free(buf);
    return err;
}

static rd_kafka_resp_err_t dispatch__produce_dead_letter(item_t *it)
{
    dispatch_t *d = it->d;
    rd_kafka_headers_t *hdrs = it->hdrs ? rd_kafka_headers_copy(it->hdrs) : rd_kafka_headers_new(9);
    char part[16], off[32], now[32], status[24];
    snprintf(part, sizeof(part), "%d", (int)it->partition);
    snprintf(off, sizeof(off), "%" PRId64, it->offset);
    snprintf(now, sizeof(now), "%" PRIu64, dispatch__wall_ms());
    rd_kafka_header_add(hdrs, "jrp-error-reason", -1, it->reason, -1);
    rd_kafka_header_add(hdrs, "jrp-error-code", -1, it->code, -1);
    rd_kafka_header_add(hdrs, "jrp-error-service", -1, "dispatch", -1);
    rd_kafka_header_add(hdrs, "jrp-error-topic", -1, it->dept->topic, -1);
    rd_kafka_header_add(hdrs, "jrp-error-partition", -1, part, -1);
    rd_kafka_header_add(hdrs, "jrp-error-offset", -1, off, -1);
    rd_kafka_header_add(hdrs, "jrp-error-time", -1, now, -1);
    if (it->status > 0) {
        snprintf(status, sizeof(status), "%ld", it->status);
        rd_kafka_header_add(hdrs, "jrp-error-http-status", -1, status, -1);
    }
    return kafka_produce(d->producer, d->topic_dlq, RD_KAFKA_PARTITION_UA, it->key, it->key_len,
                         it->value, it->value_len, hdrs, it);
}

/* Produce what ends the item; on a full local queue try again shortly. */
static void dispatch__finish_produce(item_t *it)
{
    it->state = ITEM_FINISHING;
    rd_kafka_resp_err_t err =
        it->code[0] ? dispatch__produce_dead_letter(it) : dispatch__produce_feedback(it);
    if (!err)
        return;
    if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL)
        log_warn("produce for action at %s [%d] @%" PRId64 ": %s; trying again", it->dept->topic,
                 (int)it->partition, it->offset, rd_kafka_err2str(err));
    if (dispatch__timer(it, dispatch__on_produce_retry, 100))
        dispatch__fatal(it->d, "produce", "cannot start a timer");
}

static void dispatch__dead_letter(item_t *it, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void dispatch__dead_letter(item_t *it, const char *code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(it->reason, sizeof(it->reason), fmt, ap);
    va_end(ap);
    snprintf(it->code, sizeof(it->code), "%s", code);
    it->dept->dead_lettered++;
    log_warn("dead letter %s [%d] @%" PRId64 " (%s): %s", it->dept->topic, (int)it->partition,
             it->offset, code, it->reason);
    dispatch__finish_produce(it);
}

/* The broker acknowledged the feedback or dead letter: the action is done. */
static void dispatch__done(item_t *it)
{
    dispatch_t *d = it->d;
    dept_t *dept = it->dept;
    dispatch_wm_t *wm = dispatch__wm(dept, it->partition);
    if (wm)
        dispatch_wm_done(wm, it->offset);
    item_t *next = NULL;
    if (it->in_order && !d->stopping)
        next = dispatch_order_finish(dept->order, it->key, it->key_len);
    dispatch__item_free(it);
    if (next)
        dispatch__ready(next);
    dispatch__flow(d);
    dispatch__check_drained(d);
}

static void dispatch__on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    dispatch_t *d = opaque;
    item_t *it = m->_private;
    (void)rk;
    if (!it)
        return;
    if (it->orphan) {
        d->n_orphans--;
        it->d->n_items++; /* dispatch__item_free counts it out again */
        dispatch__item_free(it);
        dispatch__check_drained(d);
        return;
    }
    if (m->err) {
        log_warn("%s not acknowledged: %s; producing it again",
                 it->code[0] ? "dead letter" : "feedback", rd_kafka_err2str(m->err));
        if (dispatch__timer(it, dispatch__on_produce_retry, 1000))
            dispatch__fatal(d, "produce", "cannot start a timer");
        return;
    }
    dispatch__done(it);
}

/* --- HTTP ------------------------------------------------------------------------------------- */

static size_t dispatch__on_body(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    item_t *it = userdata;
    size_t n = size * nmemb, room = DISPATCH_EXCERPT - it->resp_len;
    size_t take = n < room ? n : room;
    memcpy(it->resp + it->resp_len, ptr, take);
    it->resp_len += take;
    it->resp[it->resp_len] = '\0';
    return n; /* the rest is read and ignored */
}

static size_t dispatch__on_header(char *buf, size_t size, size_t nitems, void *userdata)
{
    item_t *it = userdata;
    size_t n = size * nitems;
    static const char name[] = "retry-after:";
    if (n > sizeof(name) - 1 && !strncasecmp(buf, name, sizeof(name) - 1)) {
        const char *v = buf + sizeof(name) - 1;
        size_t len = n - (sizeof(name) - 1);
        while (len && (*v == ' ' || *v == '\t'))
            v++, len--;
        while (len && (v[len - 1] == '\r' || v[len - 1] == '\n' || v[len - 1] == ' '))
            len--;
        if (len < sizeof(it->retry_after)) {
            memcpy(it->retry_after, v, len);
            it->retry_after[len] = '\0';
        }
    }
    return n;
}

static void dispatch__on_backoff_done(uv_timer_t *t)
{
    item_t *it = t->data;
    dispatch__ready(it);
}

static void dispatch__send(item_t *it)
{
    dispatch_t *d = it->d;
    dept_t *dept = it->dept;
    char ts[24], sig[65], hdr[DISPATCH_ID_MAX + 40];
    snprintf(ts, sizeof(ts), "%lld", (long long)time(NULL));
    it->state = ITEM_SENDING;
    it->attempts++;
    it->resp_len = 0;
    it->resp[0] = '\0';
    it->retry_after[0] = '\0';
    it->errbuf[0] = '\0';
    it->easy = curl_easy_init();
    if (!it->easy || dispatch_sign(dept->secret, ts, it->body, it->body_len, sig))
        goto err;
    struct curl_slist *h = NULL, *t;
#define DISPATCH_ADD(s)                                                                            \
    do {                                                                                           \
        t = curl_slist_append(h, (s));                                                             \
        if (!t)                                                                                    \
            goto err_list;                                                                         \
        h = t;                                                                                     \
    } while (0)
    DISPATCH_ADD("Content-Type: application/json");
    DISPATCH_ADD("Expect:");
    snprintf(hdr, sizeof(hdr), "Idempotency-Key: %s", it->action_id);
    DISPATCH_ADD(hdr);
    snprintf(hdr, sizeof(hdr), "X-Jrp-Timestamp: %s", ts);
    DISPATCH_ADD(hdr);
    snprintf(hdr, sizeof(hdr), "X-Jrp-Signature: sha256=%s", sig);
    DISPATCH_ADD(hdr);
    /* W3C trace context travels on to the department when the action carries one. */
    char tp[128];
    if (dispatch__header(it->hdrs, "traceparent", tp, sizeof(tp)) && dispatch__visible(tp)) {
        snprintf(hdr, sizeof(hdr), "traceparent: %s", tp);
        DISPATCH_ADD(hdr);
    }
#undef DISPATCH_ADD
    it->req_hdrs = h;
    CURL *e = it->easy;
    curl_easy_setopt(e, CURLOPT_URL, dept->url);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_POST, 1L);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, it->body);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)it->body_len);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, it->req_hdrs);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, dept->timeout_ms);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_USERAGENT, "jrp-dispatch/1");
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, dispatch__on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, it);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, dispatch__on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, it);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, it->errbuf);
    curl_easy_setopt(e, CURLOPT_PRIVATE, it);
    if (dept->ca_file) {
        /* The department's CAs only (not the system's as well); libcurl then caches the store
         * in the multi handle instead of loading it for every connection. */
        curl_easy_setopt(e, CURLOPT_CAINFO, dept->ca_file);
        curl_easy_setopt(e, CURLOPT_CAPATH, NULL);
    }
    if (curl_multi_add_handle(d->multi, e) != CURLM_OK)
        goto err;
    it->sent_ms = uv_now(d->loop);
    dept->in_flight++;
    return;
err_list:
    curl_slist_free_all(h);
err:
    /* Out of memory: treat it as a failed attempt, so it is retried. */
    dispatch__curl_release(it);
    log_warn("cannot prepare a request for %s", it->action_id);
    it->state = ITEM_BACKOFF;
    if (dispatch__timer(it, dispatch__on_backoff_done, 1000))
        dispatch__fatal(d, "timer", "cannot start a timer");
}

/* Copy s into out, replacing control characters, so a body excerpt fits in a header. */
static void dispatch__excerpt(const char *s, size_t len, char *out, size_t size)
{
    size_t j = 0;
    for (size_t i = 0; i < len && j + 1 < size; i++)
        out[j++] = ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) ? ' ' : s[i];
    out[j] = '\0';
}

static void dispatch__on_answer(item_t *it, CURLcode res)
{
    dispatch_t *d = it->d;
    dept_t *dept = it->dept;
    long status = 0;
    if (res == CURLE_OK)
        curl_easy_getinfo(it->easy, CURLINFO_RESPONSE_CODE, &status);
    double secs = (double)(uv_now(d->loop) - it->sent_ms) / 1000.0;
    char err[CURL_ERROR_SIZE + 64];
    snprintf(err, sizeof(err), "%s", it->errbuf[0] ? it->errbuf : curl_easy_strerror(res));
    dispatch__curl_release(it);
    dept->in_flight--;
    it->status = status;
    dispatch_outcome_t out = dispatch_classify(status);
    if (d->stopping && out != DISPATCH_DELIVERED) {
        /* No new attempts while stopping: the next start re-sends it. */
        dispatch__item_free(it);
        dispatch__check_drained(d);
        return;
    }
    if (out == DISPATCH_DELIVERED) {
        dept->delivered++;
        ops_histogram_observe(&dept->latency, secs);
        log_debug("delivered %s (%ld) after %u attempts", it->action_id, status, it->attempts);
        dispatch__finish_produce(it);
    } else if (out == DISPATCH_PERMANENT) {
        char ex[DISPATCH_EXCERPT + 1];
        dispatch__excerpt(it->resp, it->resp_len, ex, sizeof(ex));
        dispatch__dead_letter(it, "webhook_rejected", "webhook %s answered HTTP %ld: %s",
                              dept->name, status, ex);
    } else if (d->max_attempts > 0 && it->attempts >= (unsigned)d->max_attempts) {
        if (status)
            dispatch__dead_letter(it, "webhook_gave_up", "gave up after %u attempts: HTTP %ld",
                                  it->attempts, status);
        else
            dispatch__dead_letter(it, "webhook_gave_up", "gave up after %u attempts: %s",
                                  it->attempts, err);
    } else {
        uint64_t rnd = 0;
        if (getrandom(&rnd, sizeof(rnd), GRND_NONBLOCK) != sizeof(rnd))
            rnd = (uint64_t)rand() << 32 ^ (uint64_t)rand();
        int64_t wait =
            dispatch_backoff_ms(it->attempts - 1, d->retry_base_ms, d->retry_cap_ms, rnd);
        int64_t ra =
            (status == 429 || status == 503)
                ? dispatch_retry_after_ms(it->retry_after[0] ? it->retry_after : NULL, time(NULL))
                : -1;
        if (ra >= 0)
            wait = ra > DISPATCH_RETRY_AFTER_MAX_MS ? DISPATCH_RETRY_AFTER_MAX_MS : ra;
        dept->retried++;
        /* One line per retry would flood the log when a webhook is down: the metric counts
         * every retry, the log shows attempts 4, 8, 16, ... (debug level shows them all). */
        log_level_t lvl =
            it->attempts >= 4 && !(it->attempts & (it->attempts - 1)) ? LOG_WARN : LOG_DEBUG;
        if (lvl >= log_get_level()) {
            if (status)
                log_write(lvl, "%s: HTTP %ld, attempt %u; again in %" PRId64 " ms", it->action_id,
                          status, it->attempts, wait);
            else
                log_write(lvl, "%s: %s, attempt %u; again in %" PRId64 " ms", it->action_id, err,
                          it->attempts, wait);
        }
        it->state = ITEM_BACKOFF;
        if (dispatch__timer(it, dispatch__on_backoff_done, (uint64_t)wait))
            dispatch__fatal(d, "timer", "cannot start a timer");
    }
    dispatch__pump(dept);
}

static void dispatch__check_multi(dispatch_t *d)
{
    CURLMsg *msg;
    int left;
    while (d->multi && (msg = curl_multi_info_read(d->multi, &left))) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        item_t *it = NULL;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&it);
        if (it)
            dispatch__on_answer(it, msg->data.result);
    }
}

static void dispatch__on_poll(uv_poll_t *h, int status, int events)
{
    sock_t *s = h->data;
    dispatch_t *d = s->d;
    int flags = 0, running;
    if (status < 0) /* let libcurl meet the error itself, so it reports the real cause */
        flags = CURL_CSELECT_IN | CURL_CSELECT_OUT;
    if (events & UV_READABLE)
        flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE)
        flags |= CURL_CSELECT_OUT;
    if (!d->multi)
        return;
    curl_multi_socket_action(d->multi, s->fd, flags, &running);
    dispatch__check_multi(d);
}

static void dispatch__sock_closed(uv_handle_t *h)
{
    free(h->data);
}

static void dispatch__sock_close(dispatch_t *d, sock_t *s)
{
    if (s->prev)
        s->prev->next = s->next;
    else
        d->socks = s->next;
    if (s->next)
        s->next->prev = s->prev;
    uv_poll_stop(&s->poll);
    uv_close((uv_handle_t *)&s->poll, dispatch__sock_closed);
}

static int dispatch__on_curl_socket(CURL *easy, curl_socket_t fd, int what, void *userp,
                                    void *socketp)
{
    dispatch_t *d = userp;
    sock_t *s = socketp;
    (void)easy;
    if (what == CURL_POLL_REMOVE) {
        if (s) {
            dispatch__sock_close(d, s);
            if (d->multi)
                curl_multi_assign(d->multi, fd, NULL);
        }
        return 0;
    }
    if (!s) {
        s = calloc(1, sizeof(*s));
        if (!s)
            return -1;
        s->fd = fd;
        s->d = d;
        if (uv_poll_init_socket(d->loop, &s->poll, fd)) {
            free(s);
            return -1;
        }
        s->poll.data = s;
        s->next = d->socks;
        if (d->socks)
            d->socks->prev = s;
        d->socks = s;
        curl_multi_assign(d->multi, fd, s);
    }
    int events = 0;
    if (what & CURL_POLL_IN)
        events |= UV_READABLE;
    if (what & CURL_POLL_OUT)
        events |= UV_WRITABLE;
    uv_poll_start(&s->poll, events, dispatch__on_poll);
    return 0;
}

static void dispatch__on_curl_timeout(uv_timer_t *t)
{
    dispatch_t *d = t->data;
    int running;
    if (!d->multi)
        return;
    curl_multi_socket_action(d->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    dispatch__check_multi(d);
}

static int dispatch__on_curl_timer(CURLM *multi, long timeout_ms, void *userp)
{
    dispatch_t *d = userp;
    (void)multi;
    if (timeout_ms < 0)
        uv_timer_stop(&d->curl_timer);
    else
        uv_timer_start(&d->curl_timer, dispatch__on_curl_timeout, (uint64_t)timeout_ms, 0);
    return 0;
}

/* --- consuming -------------------------------------------------------------------------------- */

static dept_t *dispatch__dept_of(dispatch_t *d, const char *topic)
{
    for (size_t i = 0; i < d->n_depts; i++)
        if (!strcmp(d->depts[i].topic, topic))
            return &d->depts[i];
    return NULL;
}

/* Take one record: remember its offset, decode it, and queue it behind its subject. */
static void dispatch__accept(dispatch_t *d, rd_kafka_message_t *m)
{
    dept_t *dept = dispatch__dept_of(d, rd_kafka_topic_name(m->rkt));
    if (!dept) {
        log_warn("record from unexpected topic %s", rd_kafka_topic_name(m->rkt));
        return;
    }
    dispatch_wm_t *wm = dispatch__wm(dept, m->partition);
    item_t *it = calloc(1, sizeof(*it));
    if (!wm || !it) {
        free(it);
        dispatch__fatal(d, "memory", "out of memory");
        return;
    }
    int rc = dispatch_wm_add(wm, m->offset);
    if (rc) {
        free(it);
        if (rc == -2) /* seen already: a re-fetch after a seek, nothing new */
            return;
        dispatch__fatal(d, "memory", "out of memory");
        return;
    }
    it->d = d;
    it->dept = dept;
    it->partition = m->partition;
    it->offset = m->offset;
    it->key_len = m->key ? m->key_len : 0;
    it->key = malloc(it->key_len + 1);
    it->value_len = m->payload ? m->len : 0;
    it->value = malloc(it->value_len + 1);
    rd_kafka_headers_t *hdrs = NULL;
    if (!rd_kafka_message_headers(m, &hdrs) && hdrs)
        it->hdrs = rd_kafka_headers_copy(hdrs);
    it->next = d->items;
    if (d->items)
        d->items->prev = it;
    d->items = it;
    d->n_items++;
    if (!it->key || !it->value) {
        dispatch__fatal(d, "memory", "out of memory");
        return;
    }
    if (it->key_len)
        memcpy(it->key, m->key, it->key_len);
    it->key[it->key_len] = '\0';
    if (it->value_len)
        memcpy(it->value, m->payload, it->value_len);

    Jrp__V1__Action *a = jrp__v1__action__unpack(NULL, it->value_len, it->value);
    if (!a) {
        dispatch__dead_letter(it, "decode_failed", "not a jrp.v1.Action (%zu bytes)",
                              it->value_len);
        return;
    }
    if (!a->action_id || !a->action_id[0]) {
        jrp__v1__action__free_unpacked(a, NULL);
        dispatch__dead_letter(it, "decode_failed", "jrp.v1.Action without action_id");
        return;
    }
    /* The id becomes a header value: visible ASCII only, bounded. */
    if (strlen(a->action_id) > DISPATCH_ID_MAX || !dispatch__visible(a->action_id)) {
        jrp__v1__action__free_unpacked(a, NULL);
        dispatch__dead_letter(it, "decode_failed",
                              "action_id is not usable as an Idempotency-Key (visible ASCII, at "
                              "most %d bytes)",
                              DISPATCH_ID_MAX);
        return;
    }
    json_t *j = pbjson_encode(&a->base, 0);
    it->action_id = strdup(a->action_id);
    it->body = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    jrp__v1__action__free_unpacked(a, NULL);
    if (!it->action_id || !it->body) {
        dispatch__fatal(d, "memory", "out of memory");
        return;
    }
    it->body_len = strlen(it->body);
    it->in_order = 1;
    rc = dispatch_order_push(dept->order, it->key, it->key_len, it);
    if (rc < 0) {
        it->in_order = 0;
        dispatch__fatal(d, "memory", "out of memory");
        return;
    }
    it->state = ITEM_QUEUED;
    if (rc == 1)
        dispatch__ready(it);
}

static void dispatch__commit(dispatch_t *d, int sync)
{
    rd_kafka_topic_partition_list_t *offs = rd_kafka_topic_partition_list_new(8);
    for (size_t i = 0; i < d->n_depts; i++) {
        dept_t *dept = &d->depts[i];
        for (int p = 0; p < dept->n_wms; p++) {
            int64_t pos =
                sync ? dispatch_wm_position(&dept->wms[p]) : dispatch_wm_take(&dept->wms[p]);
            if (pos >= 0)
                rd_kafka_topic_partition_list_add(offs, dept->topic, p)->offset = pos;
        }
    }
    if (offs->cnt) {
        rd_kafka_resp_err_t err = rd_kafka_commit(d->consumer, offs, !sync);
        if (err && sync)
            log_warn("commit: %s", rd_kafka_err2str(err));
    }
    rd_kafka_topic_partition_list_destroy(offs);
}

/* Forget every action: requests are cancelled, their offsets stay uncommitted (re-sent later). */
static void dispatch__drop_all(dispatch_t *d)
{
    for (size_t i = 0; i < d->n_depts; i++) {
        dept_t *dept = &d->depts[i];
        dispatch_order_clear(dept->order, NULL, NULL);
        dept->ready_head = dept->ready_tail = NULL;
    }
    for (item_t *it = d->items, *next; it; it = next) {
        next = it->next;
        if (it->state == ITEM_SENDING) {
            dispatch__curl_release(it);
            it->dept->in_flight--;
        }
        if (it->state == ITEM_FINISHING &&
            !(it->timer_started && uv_is_active((uv_handle_t *)&it->timer))) {
            /* Its record is with the producer; the delivery report frees it. */
            it->orphan = 1;
            if (it->prev)
                it->prev->next = it->next;
            else
                d->items = it->next;
            if (it->next)
                it->next->prev = it->prev;
            it->prev = it->next = NULL;
            d->n_items--;
            d->n_orphans++;
            continue;
        }
        dispatch__item_free(it);
    }
}

static void dispatch__forget_partitions(dispatch_t *d)
{
    for (size_t i = 0; i < d->n_depts; i++) {
        dept_t *dept = &d->depts[i];
        for (int p = 0; p < dept->n_wms; p++)
            dispatch_wm_free(&dept->wms[p]);
        free(dept->wms);
        dept->wms = NULL;
        dept->n_wms = 0;
    }
}

static void dispatch__on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                                   rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    dispatch_t *d = opaque;
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        log_info("assigned %d partitions", parts->cnt);
        rd_kafka_assign(rk, parts);
        d->assigned = 1;
        d->kafka_down = 0;
        d->paused = 0;
        /* A partition paused before a rebalance may come back paused: say what we want. */
        if (parts->cnt)
            (d->stopping ? rd_kafka_pause_partitions : rd_kafka_resume_partitions)(rk, parts);
        return;
    }
    /* Revoked (the eager assignors take everything back): finish what the broker is about to
     * acknowledge, commit what is finished, and forget the rest; the next owner re-sends it. */
    log_info("partitions revoked (%s)", rd_kafka_err2str(err));
    d->revoking = 1;
    rd_kafka_flush(d->producer, DISPATCH_FLUSH_MS);
    dispatch__commit(d, 1);
    dispatch__drop_all(d);
    dispatch__forget_partitions(d);
    d->revoking = 0;
    d->assigned = 0;
    rd_kafka_assign(rk, NULL);
}

static void dispatch__on_consumer_ready(void *arg)
{
    dispatch_t *d = arg;
    while (!d->failed && !d->draining_done) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(d->consumer, 0);
        if (!m)
            break;
        if (m->err) {
            if (m->err == RD_KAFKA_RESP_ERR__FATAL) {
                char reason[512];
                rd_kafka_fatal_error(d->consumer, reason, sizeof(reason));
                dispatch__fatal(d, "Kafka consumer", reason);
            } else if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
                log_warn("consumer: %s", rd_kafka_message_errstr(m));
            }
            rd_kafka_message_destroy(m);
            continue;
        }
        d->kafka_down = 0;
        if (!d->stopping)
            dispatch__accept(d, m);
        rd_kafka_message_destroy(m);
        /* Pause as soon as the limit is reached; what was fetched already is still taken, so
         * nothing is left stranded in the queue. */
        dispatch__flow(d);
    }
    dispatch__flow(d);
}

static void dispatch__on_producer_ready(void *arg)
{
    dispatch_t *d = arg;
    while (d->producer && rd_kafka_poll(d->producer, 0) > 0)
        ;
}

static void dispatch__on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    dispatch_t *d = opaque;
    if (err == RD_KAFKA_RESP_ERR__FATAL) {
        char why[512];
        rd_kafka_fatal_error(rk, why, sizeof(why));
        char what[300];
        snprintf(what, sizeof(what), "Kafka %s", rd_kafka_name(rk));
        dispatch__fatal(d, what, why);
        return;
    }
    if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN)
        d->kafka_down = 1;
    log_warn("kafka (%s): %s", rd_kafka_name(rk), reason);
}

static void dispatch__on_commit(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                                rd_kafka_topic_partition_list_t *offsets, void *opaque)
{
    dispatch_t *d = opaque;
    (void)rk;
    (void)offsets;
    if (!err || err == RD_KAFKA_RESP_ERR__NO_OFFSET)
        return;
    log_warn("offset commit: %s", rd_kafka_err2str(err));
    /* Commit every position again at the next tick. */
    for (size_t i = 0; i < d->n_depts; i++)
        for (int p = 0; p < d->depts[i].n_wms; p++)
            d->depts[i].wms[p].committed = -1;
}

static void dispatch__on_cron(uv_timer_t *t)
{
    dispatch_t *d = t->data;
    if (d->failed || d->stopping)
        return;
    dispatch__commit(d, 0);
    if (d->kafka_down) {
        /* Is it back? A short metadata request answers (only asked while it is down). */
        const rd_kafka_metadata_t *md = NULL;
        if (!rd_kafka_metadata(d->consumer, 0, NULL, &md, 200)) {
            rd_kafka_metadata_destroy(md);
            d->kafka_down = 0;
        }
    }
}

/* --- start and stop --------------------------------------------------------------------------- */

typedef struct {
    dispatch_t *d;
    char *err;
    size_t err_size;
    int failed;
} dispatch_scan_t;

static void dispatch__scan(const char *key, const char *value, void *arg)
{
    dispatch_scan_t *s = arg;
    (void)value;
    const char *dept = key + strlen("dispatch.");
    const char *dot = strchr(dept, '.');
    if (s->failed || !dot || strcmp(dot, ".url"))
        return;
    size_t n = (size_t)(dot - dept);
    dispatch_t *d = s->d;
    dept_t *nd = realloc(d->depts, (d->n_depts + 1) * sizeof(*nd));
    if (!nd) {
        snprintf(s->err, s->err_size, "out of memory");
        s->failed = 1;
        return;
    }
    d->depts = nd;
    dept_t *dp = &d->depts[d->n_depts++];
    memset(dp, 0, sizeof(*dp));
    dp->d = d;
    snprintf(dp->name, sizeof(dp->name), "%.*s", (int)(n < 39 ? n : 39), dept);
    if (n > 32 || !ids_is_department(dp->name)) {
        snprintf(s->err, s->err_size,
                 "%s: \"%.*s\" is not a department code ([a-z][a-z0-9_]{1,31})", key, (int)n, dept);
        s->failed = 1;
    }
}

/* Check one department's settings; 0 or -1 naming the key. */
static int dispatch__dept_config(dispatch_t *d, dept_t *dp, char *errstr, size_t errstr_size)
{
    char key[128], suffix[96];
    snprintf(key, sizeof(key), "dispatch.%s.url", dp->name);
    dp->url = config_get(d->cfg, key);
    if (!dp->url || (strncasecmp(dp->url, "https://", 8) && strncasecmp(dp->url, "http://", 7)) ||
        !dp->url[dp->url[4] == ':' ? 7 : 8]) {
        snprintf(errstr, errstr_size, "%s: \"%s\" is not an http:// or https:// URL", key,
                 dp->url ? dp->url : "");
        return -1;
    }
    CURLU *u = curl_url();
    CURLUcode uc = u ? curl_url_set(u, CURLUPART_URL, dp->url, 0) : CURLUE_OUT_OF_MEMORY;
    curl_url_cleanup(u);
    if (uc != CURLUE_OK) {
        snprintf(errstr, errstr_size, "%s: \"%s\" is not a valid URL (%s)", key, dp->url,
                 curl_url_strerror(uc));
        return -1;
    }
    if (!strncasecmp(dp->url, "http://", 7))
        log_warn("%s is plain http: actions travel unencrypted", key);
    snprintf(key, sizeof(key), "dispatch.%s.secret", dp->name);
    dp->secret = config_get(d->cfg, key);
    if (!dp->secret || !dp->secret[0]) {
        snprintf(errstr, errstr_size, "%s is missing: every webhook is signed", key);
        return -1;
    }
    snprintf(key, sizeof(key), "dispatch.%s.ca_file", dp->name);
    dp->ca_file = config_get(d->cfg, key);
    if (dp->ca_file && access(dp->ca_file, R_OK)) {
        snprintf(errstr, errstr_size, "%s: cannot read %s: %s", key, dp->ca_file, strerror(errno));
        return -1;
    }
    snprintf(key, sizeof(key), "dispatch.%s.timeout_ms", dp->name);
    dp->timeout_ms = (long)config_get_int(d->cfg, key);
    snprintf(key, sizeof(key), "dispatch.%s.concurrency", dp->name);
    dp->concurrency = (int)config_get_int(d->cfg, key);
    snprintf(suffix, sizeof(suffix), "actions.%s", dp->name);
    config_topic(d->cfg, suffix, dp->topic, sizeof(dp->topic));
    dp->order = dispatch_order_create();
    if (!dp->order) {
        snprintf(errstr, errstr_size, "out of memory");
        return -1;
    }
    return 0;
}

/* Settings that only make sense as a department's: a secret without a URL is a typo. */
static void dispatch__scan_orphans(const char *key, const char *value, void *arg)
{
    dispatch_scan_t *s = arg;
    (void)value;
    const char *dept = key + strlen("dispatch.");
    const char *dot = strchr(dept, '.');
    if (s->failed || !dot)
        return;
    for (size_t i = 0; i < s->d->n_depts; i++)
        if (strlen(s->d->depts[i].name) == (size_t)(dot - dept) &&
            !strncmp(s->d->depts[i].name, dept, (size_t)(dot - dept)))
            return;
    snprintf(s->err, s->err_size, "%s is set but dispatch.%.*s.url is not", key, (int)(dot - dept),
             dept);
    s->failed = 1;
}

static rd_kafka_t *dispatch__client(dispatch_t *d, rd_kafka_type_t type, char *errstr,
                                    size_t errstr_size)
{
    rd_kafka_conf_t *conf;
    if (type == RD_KAFKA_PRODUCER) {
        conf = kafka_producer_conf(d->cfg, NULL, NULL, 0, errstr, errstr_size);
        if (conf)
            rd_kafka_conf_set_dr_msg_cb(conf, dispatch__on_delivery);
    } else {
        /* Bounded prefetch: dispatch.max_pending bounds what is held beyond it. */
        const char *const extra[] = {"queued.max.messages.kbytes", "8192", NULL};
        conf = kafka_consumer_conf(d->cfg, extra, config_get(d->cfg, "dispatch.group"),
                                   config_get(d->cfg, "dispatch.instance"), 0, errstr, errstr_size);
        if (conf) {
            rd_kafka_conf_set_rebalance_cb(conf, dispatch__on_rebalance);
            rd_kafka_conf_set_offset_commit_cb(conf, dispatch__on_commit);
        }
    }
    if (!conf)
        return NULL;
    rd_kafka_conf_set_error_cb(conf, dispatch__on_error);
    rd_kafka_conf_set_opaque(conf, d);
    rd_kafka_t *rk = rd_kafka_new(type, conf, errstr, errstr_size);
    if (!rk) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    conf = NULL; /* now owned by rk */
    return rk;
}

dispatch_t *dispatch_create(uv_loop_t *loop, const config_t *cfg, char *errstr, size_t errstr_size)
{
    dispatch_t *d = calloc(1, sizeof(*d));
    const char **names = NULL;
    if (!d) {
        snprintf(errstr, errstr_size, "out of memory");
        return NULL;
    }
    d->loop = loop;
    d->cfg = cfg;
    d->retry_base_ms = config_get_int(cfg, "dispatch.retry_base_ms");
    d->retry_cap_ms = config_get_int(cfg, "dispatch.retry_cap_ms");
    d->max_attempts = config_get_int(cfg, "dispatch.max_attempts");
    d->max_pending = config_get_int(cfg, "dispatch.max_pending");
    d->drain_ms = config_get_int(cfg, "dispatch.drain_ms");
    d->commit_ms = config_get_int(cfg, "dispatch.commit_interval_ms");
    config_topic(cfg, "feedback", d->topic_feedback, sizeof(d->topic_feedback));
    config_topic(cfg, "dlq", d->topic_dlq, sizeof(d->topic_dlq));
    if (curl_global_init(CURL_GLOBAL_DEFAULT)) {
        snprintf(errstr, errstr_size, "libcurl initialisation failed");
        goto err;
    }
    d->curl_inited = 1;

    dispatch_scan_t scan = {d, errstr, errstr_size, 0};
    config_each(cfg, "dispatch.", dispatch__scan, &scan);
    if (scan.failed)
        goto err;
    config_each(cfg, "dispatch.", dispatch__scan_orphans, &scan);
    if (scan.failed)
        goto err;
    if (d->n_depts == 0) {
        snprintf(errstr, errstr_size,
                 "no department to serve: set dispatch.<department>.url (and .secret)");
        goto err;
    }
    for (size_t i = 0; i < d->n_depts; i++)
        if (dispatch__dept_config(d, &d->depts[i], errstr, errstr_size))
            goto err;

    /* The department topics, feedback and dlq: created if missing, as the engine does. */
    names = calloc(d->n_depts, sizeof(*names));
    if (!names) {
        snprintf(errstr, errstr_size, "out of memory");
        goto err;
    }
    for (size_t i = 0; i < d->n_depts; i++)
        names[i] = d->depts[i].name;
    char why[512];
    int rc = -1;
    /* A broker that just started (or is busy) may refuse for a moment: try a few times. */
    for (int attempt = 0; attempt < DISPATCH_TOPIC_TRIES && rc; attempt++) {
        if (attempt) {
            log_warn("topics: %s; trying again", why);
            sleep(1);
        }
        rc = rulesync_ensure_topics(cfg, names, d->n_depts, NULL, why, sizeof(why));
    }
    if (rc) {
        snprintf(errstr, errstr_size, "topics: %s", why);
        goto err;
    }
    free(names);
    names = NULL;

    d->producer = dispatch__client(d, RD_KAFKA_PRODUCER, errstr, errstr_size);
    if (!d->producer)
        goto err;
    d->consumer = dispatch__client(d, RD_KAFKA_CONSUMER, errstr, errstr_size);
    if (!d->consumer)
        goto err;
    rd_kafka_poll_set_consumer(d->consumer);
    d->consumer_queue = rd_kafka_queue_get_consumer(d->consumer);
    d->producer_queue = rd_kafka_queue_get_main(d->producer);
    d->multi = curl_multi_init();
    if (!d->consumer_queue || !d->producer_queue || !d->multi) {
        snprintf(errstr, errstr_size, "out of memory");
        goto err;
    }
    curl_multi_setopt(d->multi, CURLMOPT_SOCKETFUNCTION, dispatch__on_curl_socket);
    curl_multi_setopt(d->multi, CURLMOPT_SOCKETDATA, d);
    curl_multi_setopt(d->multi, CURLMOPT_TIMERFUNCTION, dispatch__on_curl_timer);
    curl_multi_setopt(d->multi, CURLMOPT_TIMERDATA, d);
    return d;
err:
    free(names);
    dispatch_destroy(d);
    return NULL;
}

int dispatch_start(dispatch_t *d)
{
    if (uv_timer_init(d->loop, &d->curl_timer) || uv_timer_init(d->loop, &d->cron) ||
        uv_timer_init(d->loop, &d->drain_timer))
        return -1;
    d->curl_timer.data = d->cron.data = d->drain_timer.data = d;
    d->handles_open = 1;
    d->started = 1;
    d->producer_bridge =
        kafka_uv_create(d->loop, d->producer_queue, dispatch__on_producer_ready, d);
    d->consumer_bridge =
        kafka_uv_create(d->loop, d->consumer_queue, dispatch__on_consumer_ready, d);
    if (!d->producer_bridge || !d->consumer_bridge)
        return -1;
    rd_kafka_topic_partition_list_t *topics = rd_kafka_topic_partition_list_new((int)d->n_depts);
    for (size_t i = 0; i < d->n_depts; i++)
        rd_kafka_topic_partition_list_add(topics, d->depts[i].topic, RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t err = rd_kafka_subscribe(d->consumer, topics);
    rd_kafka_topic_partition_list_destroy(topics);
    if (err) {
        log_error("subscribe: %s", rd_kafka_err2str(err));
        return -1;
    }
    for (size_t i = 0; i < d->n_depts; i++)
        log_info("delivering %s to %s (concurrency %d, timeout %ld ms)", d->depts[i].topic,
                 d->depts[i].url, d->depts[i].concurrency, d->depts[i].timeout_ms);
    return uv_timer_start(&d->cron, dispatch__on_cron, (uint64_t)d->commit_ms,
                          (uint64_t)d->commit_ms);
}

/* --- stopping --------------------------------------------------------------------------------- */

static void dispatch__closed(uv_handle_t *h)
{
    dispatch_t *d = h->data;
    if (--d->handles_open == 0 && d->on_stopped)
        d->on_stopped(d->on_stopped_arg);
}

static void dispatch__finish_stop(dispatch_t *d)
{
    if (d->draining_done)
        return;
    d->draining_done = 1;
    uv_timer_stop(&d->drain_timer);
    /* Requests still running are abandoned: their offsets stay uncommitted. */
    dispatch__drop_all(d);
    rd_kafka_flush(d->producer, DISPATCH_FLUSH_MS);
    dispatch__commit(d, 1);
    log_info("leaving the consumer group");
    rd_kafka_resp_err_t err = rd_kafka_consumer_close(d->consumer);
    if (err)
        log_warn("consumer close: %s", rd_kafka_err2str(err));
    /* Anything the close produced (there should be nothing) is served before the bridges go. */
    rd_kafka_flush(d->producer, DISPATCH_FLUSH_MS);
    while (rd_kafka_poll(d->producer, 0) > 0)
        ;
    if (d->n_orphans)
        log_warn("%zu feedback or dead-letter records unacknowledged at exit", d->n_orphans);
    curl_multi_cleanup(d->multi);
    d->multi = NULL;
    while (d->socks)
        dispatch__sock_close(d, d->socks);
    kafka_uv_destroy(d->consumer_bridge);
    kafka_uv_destroy(d->producer_bridge);
    d->consumer_bridge = d->producer_bridge = NULL;
    d->handles_open = 3;
    uv_close((uv_handle_t *)&d->curl_timer, dispatch__closed);
    uv_close((uv_handle_t *)&d->cron, dispatch__closed);
    uv_close((uv_handle_t *)&d->drain_timer, dispatch__closed);
}

static void dispatch__on_drained(uv_timer_t *t)
{
    dispatch__finish_stop(t->data);
}

static void dispatch__on_drain_timeout(uv_timer_t *t)
{
    log_warn("requests still in flight after dispatch.drain_ms: abandoning them");
    dispatch__finish_stop(t->data);
}

static void dispatch__check_drained(dispatch_t *d)
{
    if (!d->stopping || d->draining_done)
        return;
    for (item_t *it = d->items; it; it = it->next)
        if (it->state == ITEM_SENDING || it->state == ITEM_FINISHING)
            return;
    if (d->n_orphans)
        return;
    /* Finish on a fresh turn of the loop, never inside a librdkafka or libcurl callback. */
    uv_timer_start(&d->drain_timer, dispatch__on_drained, 0, 0);
}

void dispatch_stop(dispatch_t *d, void (*on_stopped)(void *arg), void *arg)
{
    d->on_stopped = on_stopped;
    d->on_stopped_arg = arg;
    if (d->stopping)
        return;
    d->stopping = 1;
    dispatch__pause(d, 1);
    /* Nothing new starts: what waits for its turn, a slot or a retry is forgotten (its offset
     * is not committed); what is in flight may finish. */
    for (size_t i = 0; i < d->n_depts; i++) {
        dispatch_order_clear(d->depts[i].order, NULL, NULL);
        d->depts[i].ready_head = d->depts[i].ready_tail = NULL;
    }
    for (item_t *it = d->items, *next; it; it = next) {
        next = it->next;
        if (it->state == ITEM_QUEUED || it->state == ITEM_READY || it->state == ITEM_BACKOFF)
            dispatch__item_free(it);
    }
    uv_timer_stop(&d->cron);
    uv_timer_start(&d->drain_timer, dispatch__on_drain_timeout, (uint64_t)d->drain_ms, 0);
    dispatch__check_drained(d);
}

int dispatch_failed(const dispatch_t *d)
{
    return d->failed;
}

const char *dispatch_not_ready(const dispatch_t *d)
{
    if (d->failed)
        return "fatal Kafka error";
    if (d->stopping)
        return "stopping";
    if (d->kafka_down)
        return "Kafka unreachable";
    if (!d->assigned)
        return "no partition assignment yet";
    return NULL;
}

void dispatch_write_metrics(const dispatch_t *d, ops_text_t *t)
{
    char labels[80];
    static const struct {
        const char *name, *type, *help;
    } fams[] = {
        {"jrp_dispatch_delivered_total", "counter", "actions a webhook accepted (2xx)"},
        {"jrp_dispatch_retried_total", "counter", "attempts that will be retried"},
        {"jrp_dispatch_dead_lettered_total", "counter", "actions sent to the dead-letter topic"},
        {"jrp_dispatch_in_flight", "gauge", "webhook requests in flight"},
        {"jrp_dispatch_pending", "gauge", "actions consumed and not yet finished"},
    };
    for (size_t f = 0; f < sizeof(fams) / sizeof(fams[0]); f++) {
        ops_family(t, fams[f].name, fams[f].type, fams[f].help);
        for (size_t i = 0; i < d->n_depts; i++) {
            const dept_t *dp = &d->depts[i];
            double v = 0;
            size_t pending = 0;
            switch (f) {
            case 0:
                v = (double)dp->delivered;
                break;
            case 1:
                v = (double)dp->retried;
                break;
            case 2:
                v = (double)dp->dead_lettered;
                break;
            case 3:
                v = dp->in_flight;
                break;
            default:
                for (int p = 0; p < dp->n_wms; p++)
                    pending += dispatch_wm_pending(&dp->wms[p]);
                v = (double)pending;
            }
            snprintf(labels, sizeof(labels), "department=\"%s\"", dp->name);
            ops_sample(t, fams[f].name, labels, v);
        }
    }
    ops_family(t, "jrp_dispatch_delivery_seconds", "histogram",
               "duration of the request that delivered an action");
    for (size_t i = 0; i < d->n_depts; i++) {
        snprintf(labels, sizeof(labels), "department=\"%s\"", d->depts[i].name);
        ops_histogram_write(t, "jrp_dispatch_delivery_seconds", labels, &d->depts[i].latency);
    }
}

void dispatch_destroy(dispatch_t *d)
{
    if (!d)
        return;
    /* After a fatal error the loop stopped with items alive: free them without callbacks. */
    for (item_t *it = d->items, *next; it; it = next) {
        next = it->next;
        if (it->easy) {
            if (d->multi)
                curl_multi_remove_handle(d->multi, it->easy);
            curl_easy_cleanup(it->easy);
        }
        curl_slist_free_all(it->req_hdrs);
        free(it->key);
        free(it->value);
        if (it->hdrs)
            rd_kafka_headers_destroy(it->hdrs);
        free(it->action_id);
        free(it->body);
        if (!it->timer_started)
            free(it);
        /* else: its timer handle belongs to the loop, which the process leaves now */
    }
    d->items = NULL;
    if (d->multi)
        curl_multi_cleanup(d->multi);
    if (d->consumer_queue)
        rd_kafka_queue_destroy(d->consumer_queue);
    if (d->producer_queue)
        rd_kafka_queue_destroy(d->producer_queue);
    if (d->consumer)
        rd_kafka_destroy(d->consumer);
    if (d->producer)
        rd_kafka_destroy(d->producer);
    for (size_t i = 0; i < d->n_depts; i++) {
        dispatch_order_destroy(d->depts[i].order);
        for (int p = 0; p < d->depts[i].n_wms; p++)
            dispatch_wm_free(&d->depts[i].wms[p]);
        free(d->depts[i].wms);
    }
    free(d->depts);
    if (d->curl_inited)
        curl_global_cleanup();
    free(d);
}
