/*
 * dispatch_core: the pure parts of jrp-dispatch, with no I/O so unit tests can drive them: the
 * webhook signature, retry backoff, Retry-After parsing, sorting an HTTP answer into delivered,
 * retry or dead letter, per-subject ordering and the per-partition commit watermark.
 */
#ifndef JRP_DISPATCH_CORE_H
#define JRP_DISPATCH_CORE_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

/*
 * X-Jrp-Signature's hex digest: HMAC-SHA256(secret, timestamp + "." + body), lower-case hex,
 * written into out (65 bytes with the terminator). 0 or -1.
 */
int dispatch_sign(const char *secret, const char *timestamp, const void *body, size_t body_len,
                  char out[65]);

/*
 * Capped exponential backoff with full jitter: a wait in [0, min(cap_ms, base_ms * 2^attempt)]
 * chosen by rnd (a uniform random 64-bit value). attempt counts from 0 (the first retry).
 */
int64_t dispatch_backoff_ms(unsigned attempt, int64_t base_ms, int64_t cap_ms, uint64_t rnd);

/*
 * A Retry-After value in milliseconds from now: delay-seconds ("120") or an HTTP-date
 * ("Wed, 21 Oct 2015 07:28:00 GMT", also the obsolete RFC 850 and asctime forms). A date in the
 * past gives 0. -1 when value is NULL or cannot be read.
 */
int64_t dispatch_retry_after_ms(const char *value, time_t now);

typedef enum {
    DISPATCH_DELIVERED = 0, /* any 2xx */
    DISPATCH_RETRY,         /* 408, 429, 5xx, transport errors and timeouts (status 0) */
    DISPATCH_PERMANENT,     /* every other status: the department refuses it */
} dispatch_outcome_t;

/* How to treat an answer; status 0 means no HTTP answer (transport error or timeout). */
dispatch_outcome_t dispatch_classify(long status);

/*
 * Per-subject order: items of one subject (the Kafka key) are handed out one at a time, in the
 * order pushed; other subjects are independent. Items are opaque pointers the caller owns.
 */
typedef struct dispatch_order_s dispatch_order_t;

dispatch_order_t *dispatch_order_create(void);
/* Frees the table; the items are the caller's (use dispatch_order_clear first). Accepts NULL. */
void dispatch_order_destroy(dispatch_order_t *o);
/*
 * Queue item behind the subject key (key_len bytes). Returns 1 when it is the subject's head
 * (the caller may start it now), 0 when it waits behind another, -1 when out of memory.
 */
int dispatch_order_push(dispatch_order_t *o, const void *key, size_t key_len, void *item);
/*
 * The subject's head is finished: remove it. Returns the next item of the subject (now its
 * head: the caller starts it), or NULL when the subject has no more.
 */
void *dispatch_order_finish(dispatch_order_t *o, const void *key, size_t key_len);
/* Items queued (heads included) and subjects with items. */
size_t dispatch_order_items(const dispatch_order_t *o);
size_t dispatch_order_subjects(const dispatch_order_t *o);
/* Remove every item, calling fn(item, arg) for each (fn may be NULL). */
void dispatch_order_clear(dispatch_order_t *o, void (*fn)(void *item, void *arg), void *arg);

/*
 * The commit watermark of one partition: offsets are added as they are consumed (increasing),
 * marked done when their feedback or dead letter is acknowledged, and the offset to commit is
 * the lowest one not done (or one past the last added when all are done).
 */
typedef struct dispatch_wm_s {
    int64_t *offsets;
    unsigned char *done;
    size_t head, len, cap; /* live entries are [head, len) */
    int64_t next;          /* one past the last offset added; -1 before the first */
    int64_t committed;     /* the last offset handed out by dispatch_wm_take, -1 none */
} dispatch_wm_t;

void dispatch_wm_init(dispatch_wm_t *wm);
void dispatch_wm_free(dispatch_wm_t *wm); /* frees the arrays and re-initialises */
/* 0, -1 out of memory, -2 offset not above the last one added. */
int dispatch_wm_add(dispatch_wm_t *wm, int64_t offset);
/* 0, or -1 when offset is not outstanding. */
int dispatch_wm_done(dispatch_wm_t *wm, int64_t offset);
/* The offset to commit now (-1 when nothing was consumed). */
int64_t dispatch_wm_position(const dispatch_wm_t *wm);
/* The position if it moved since the last call that returned one, else -1. */
int64_t dispatch_wm_take(dispatch_wm_t *wm);
/* Offsets consumed and not yet done. */
size_t dispatch_wm_pending(const dispatch_wm_t *wm);

#endif
