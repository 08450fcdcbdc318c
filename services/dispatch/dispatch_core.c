/*
 * dispatch_core: signature, backoff, Retry-After, answer classes, per-subject order and the
 * commit watermark. No I/O and no clock reads: time comes in as arguments.
 */
#include "dispatch_core.h"

#include <curl/curl.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdlib.h>
#include <string.h>

#include "hash.h"

int dispatch_sign(const char *secret, const char *timestamp, const void *body, size_t body_len,
                  char out[65])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int mac_len = 0;
    size_t ts_len = strlen(timestamp);
    /* timestamp + "." + body, assembled once: HMAC() is a single call with OpenSSL 3. */
    unsigned char *msg = malloc(ts_len + 1 + body_len + 1);
    if (!msg)
        return -1;
    memcpy(msg, timestamp, ts_len);
    msg[ts_len] = '.';
    if (body_len)
        memcpy(msg + ts_len + 1, body, body_len);
    unsigned char *r =
        HMAC(EVP_sha256(), secret, (int)strlen(secret), msg, ts_len + 1 + body_len, mac, &mac_len);
    free(msg);
    if (!r || mac_len != 32)
        return -1;
    for (unsigned i = 0; i < mac_len; i++) {
        out[2 * i] = hex[mac[i] >> 4];
        out[2 * i + 1] = hex[mac[i] & 15];
    }
    out[64] = '\0';
    return 0;
}

int64_t dispatch_backoff_ms(unsigned attempt, int64_t base_ms, int64_t cap_ms, uint64_t rnd)
{
    if (base_ms < 1)
        base_ms = 1;
    if (cap_ms < base_ms)
        cap_ms = base_ms;
    int64_t ceiling = base_ms;
    for (unsigned i = 0; i < attempt && ceiling < cap_ms; i++)
        ceiling *= 2;
    if (ceiling > cap_ms)
        ceiling = cap_ms;
    return (int64_t)(rnd % (uint64_t)(ceiling + 1));
}

int64_t dispatch_retry_after_ms(const char *value, time_t now)
{
    if (!value)
        return -1;
    while (*value == ' ' || *value == '\t')
        value++;
    if (*value >= '0' && *value <= '9') {
        int64_t secs = 0;
        const char *p = value;
        for (; *p >= '0' && *p <= '9'; p++) {
            if (secs > 100000000)
                return -1;
            secs = secs * 10 + (*p - '0');
        }
        while (*p == ' ' || *p == '\t')
            p++;
        return *p ? -1 : secs * 1000;
    }
    /* HTTP-date in any of RFC 9110's three forms; libcurl's parser reads them all. */
    time_t when = curl_getdate(value, NULL);
    if (when == (time_t)-1)
        return -1;
    return when <= now ? 0 : (int64_t)(when - now) * 1000;
}

dispatch_outcome_t dispatch_classify(long status)
{
    if (status >= 200 && status <= 299)
        return DISPATCH_DELIVERED;
    if (status == 0 || status == 408 || status == 429 || (status >= 500 && status <= 599))
        return DISPATCH_RETRY;
    /* 1xx and 3xx should never reach us (libcurl reads past 1xx; redirects are not followed):
     * a department that answers them is misconfigured, so they are dead-lettered too. */
    return DISPATCH_PERMANENT;
}

/* --- per-subject order ------------------------------------------------------------------------ */

typedef struct dispatch_node_s {
    void *item;
    struct dispatch_node_s *next;
} dispatch_node_t;

typedef struct dispatch_subject_s {
    struct dispatch_subject_s *next; /* bucket chain */
    dispatch_node_t *head, *tail;
    size_t key_len;
    unsigned char key[]; /* key_len bytes */
} dispatch_subject_t;

struct dispatch_order_s {
    dispatch_subject_t **buckets;
    size_t n_buckets, n_subjects, n_items;
};

static uint64_t dispatch__hash(const void *key, size_t len)
{
    return hash_bytes(HASH_SEED, key, len); /* keys are short subject keys */
}

dispatch_order_t *dispatch_order_create(void)
{
    dispatch_order_t *o = calloc(1, sizeof(*o));
    if (!o)
        return NULL;
    o->n_buckets = 1024;
    o->buckets = calloc(o->n_buckets, sizeof(*o->buckets));
    if (!o->buckets) {
        free(o);
        return NULL;
    }
    return o;
}

void dispatch_order_destroy(dispatch_order_t *o)
{
    if (!o)
        return;
    dispatch_order_clear(o, NULL, NULL);
    free(o->buckets);
    free(o);
}

static dispatch_subject_t **dispatch__slot(dispatch_order_t *o, const void *key, size_t key_len)
{
    dispatch_subject_t **s = &o->buckets[dispatch__hash(key, key_len) % o->n_buckets];
    while (*s && ((*s)->key_len != key_len || memcmp((*s)->key, key, key_len)))
        s = &(*s)->next;
    return s;
}

static void dispatch__grow(dispatch_order_t *o)
{
    size_t n = o->n_buckets * 2;
    dispatch_subject_t **b = calloc(n, sizeof(*b));
    if (!b)
        return; /* keep the longer chains; still correct */
    for (size_t i = 0; i < o->n_buckets; i++)
        for (dispatch_subject_t *s = o->buckets[i], *next; s; s = next) {
            next = s->next;
            size_t k = dispatch__hash(s->key, s->key_len) % n;
            s->next = b[k];
            b[k] = s;
        }
    free(o->buckets);
    o->buckets = b;
    o->n_buckets = n;
}

int dispatch_order_push(dispatch_order_t *o, const void *key, size_t key_len, void *item)
{
    dispatch_node_t *node = malloc(sizeof(*node));
    if (!node)
        return -1;
    node->item = item;
    node->next = NULL;
    dispatch_subject_t **slot = dispatch__slot(o, key, key_len);
    if (*slot) {
        (*slot)->tail->next = node;
        (*slot)->tail = node;
        o->n_items++;
        return 0;
    }
    dispatch_subject_t *s = malloc(sizeof(*s) + key_len + 1);
    if (!s) {
        free(node);
        return -1;
    }
    s->next = NULL;
    s->head = s->tail = node;
    s->key_len = key_len;
    if (key_len)
        memcpy(s->key, key, key_len);
    *slot = s;
    o->n_subjects++;
    o->n_items++;
    if (o->n_subjects > o->n_buckets * 2)
        dispatch__grow(o);
    return 1;
}

void *dispatch_order_finish(dispatch_order_t *o, const void *key, size_t key_len)
{
    dispatch_subject_t **slot = dispatch__slot(o, key, key_len);
    dispatch_subject_t *s = *slot;
    if (!s)
        return NULL;
    dispatch_node_t *done = s->head;
    s->head = done->next;
    free(done);
    o->n_items--;
    if (s->head)
        return s->head->item;
    *slot = s->next;
    free(s);
    o->n_subjects--;
    return NULL;
}

size_t dispatch_order_items(const dispatch_order_t *o)
{
    return o->n_items;
}

size_t dispatch_order_subjects(const dispatch_order_t *o)
{
    return o->n_subjects;
}

void dispatch_order_clear(dispatch_order_t *o, void (*fn)(void *item, void *arg), void *arg)
{
    for (size_t i = 0; i < o->n_buckets; i++) {
        dispatch_subject_t *s = o->buckets[i];
        o->buckets[i] = NULL;
        while (s) {
            dispatch_subject_t *next_s = s->next;
            for (dispatch_node_t *n = s->head, *next; n; n = next) {
                next = n->next;
                if (fn)
                    fn(n->item, arg);
                free(n);
            }
            free(s);
            s = next_s;
        }
    }
    o->n_subjects = o->n_items = 0;
}

/* --- commit watermark ------------------------------------------------------------------------- */

void dispatch_wm_init(dispatch_wm_t *wm)
{
    memset(wm, 0, sizeof(*wm));
    wm->next = -1;
    wm->committed = -1;
}

void dispatch_wm_free(dispatch_wm_t *wm)
{
    free(wm->offsets);
    free(wm->done);
    dispatch_wm_init(wm);
}

int dispatch_wm_add(dispatch_wm_t *wm, int64_t offset)
{
    if (wm->next >= 0 && offset < wm->next)
        return -2;
    if (wm->len == wm->cap) {
        if (wm->head > 0) {
            /* Slide the live entries down before growing. */
            size_t live = wm->len - wm->head;
            memmove(wm->offsets, wm->offsets + wm->head, live * sizeof(*wm->offsets));
            memmove(wm->done, wm->done + wm->head, live);
            wm->head = 0;
            wm->len = live;
        }
        if (wm->len == wm->cap) {
            size_t cap = wm->cap ? wm->cap * 2 : 64;
            int64_t *offs = realloc(wm->offsets, cap * sizeof(*offs));
            if (!offs)
                return -1;
            wm->offsets = offs;
            unsigned char *done = realloc(wm->done, cap);
            if (!done)
                return -1;
            wm->done = done;
            wm->cap = cap;
        }
    }
    wm->offsets[wm->len] = offset;
    wm->done[wm->len] = 0;
    wm->len++;
    wm->next = offset + 1;
    return 0;
}

int dispatch_wm_done(dispatch_wm_t *wm, int64_t offset)
{
    size_t lo = wm->head, hi = wm->len;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (wm->offsets[mid] < offset)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == wm->len || wm->offsets[lo] != offset || wm->done[lo])
        return -1;
    wm->done[lo] = 1;
    while (wm->head < wm->len && wm->done[wm->head])
        wm->head++;
    if (wm->head == wm->len)
        wm->head = wm->len = 0;
    return 0;
}

int64_t dispatch_wm_position(const dispatch_wm_t *wm)
{
    if (wm->head < wm->len)
        return wm->offsets[wm->head];
    return wm->next;
}

int64_t dispatch_wm_take(dispatch_wm_t *wm)
{
    int64_t pos = dispatch_wm_position(wm);
    if (pos < 0 || pos == wm->committed)
        return -1;
    wm->committed = pos;
    return pos;
}

size_t dispatch_wm_pending(const dispatch_wm_t *wm)
{
    size_t n = 0;
    for (size_t i = wm->head; i < wm->len; i++)
        n += !wm->done[i];
    return n;
}
