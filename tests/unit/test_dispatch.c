/*
 * Unit tests of dispatch_core: the webhook signature, backoff bounds, Retry-After forms, answer
 * classes, per-subject order and the commit watermark.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "dispatch_core.h"

static void test_sign_known_vector(void **state)
{
    (void)state;
    char sig[65];
    /* Computed independently: printf '1700000000.{"a":1}' | openssl dgst -sha256 -hmac s3cret
     * (and Python's hmac module gives the same). */
    assert_int_equal(dispatch_sign("s3cret", "1700000000", "{\"a\":1}", 7, sig), 0);
    assert_string_equal(sig, "1698a50bc74d1ff1db85c4e0a5297c2ad9fdba245d5737cdb789e4cc6e098940");
    /* RFC 4231 test case 2 has no '.', so check the joining rule with a message that splits. */
    assert_int_equal(
        dispatch_sign("key", "0", "The quick brown fox jumps over the lazy dog", 43, sig), 0);
    assert_string_equal(sig, "8511f28f7a1949f0c42772b447d68b2daf760f5f0439a20a17e3b4e7cd395763");
}

static void test_sign_depends_on_every_part(void **state)
{
    (void)state;
    char a[65], b[65];
    assert_int_equal(dispatch_sign("k", "1", "body", 4, a), 0);
    assert_int_equal(dispatch_sign("k", "2", "body", 4, b), 0);
    assert_string_not_equal(a, b);
    assert_int_equal(dispatch_sign("k2", "1", "body", 4, b), 0);
    assert_string_not_equal(a, b);
    assert_int_equal(dispatch_sign("k", "1", "bodz", 4, b), 0);
    assert_string_not_equal(a, b);
    /* An empty body signs "ts." */
    assert_int_equal(dispatch_sign("k", "1", NULL, 0, a), 0);
    assert_int_equal(strlen(a), 64);
}

static void test_backoff_bounds(void **state)
{
    (void)state;
    /* The ceiling doubles from base and stops at cap; every value lies in [0, ceiling]. */
    int64_t expect[] = {100, 200, 400, 800, 1600, 3200, 5000, 5000};
    for (unsigned attempt = 0; attempt < 8; attempt++) {
        int64_t max_seen = 0;
        for (uint64_t r = 0; r < 20000; r += 7) {
            int64_t w = dispatch_backoff_ms(attempt, 100, 5000, r * 2654435761u);
            assert_true(w >= 0 && w <= expect[attempt]);
            if (w > max_seen)
                max_seen = w;
        }
        /* Full jitter: the whole range is used, not just the top. */
        assert_true(max_seen > expect[attempt] / 2);
        assert_int_equal(dispatch_backoff_ms(attempt, 100, 5000, (uint64_t)expect[attempt]),
                         expect[attempt]);
        assert_int_equal(dispatch_backoff_ms(attempt, 100, 5000, 0), 0);
    }
    /* No overflow for huge attempt counts. */
    assert_true(dispatch_backoff_ms(4000000000u, 250, 60000, 12345678901ULL) <= 60000);
    /* Degenerate settings still give a sane wait. */
    assert_true(dispatch_backoff_ms(3, 0, 0, 99) <= 1);
}

static void test_retry_after(void **state)
{
    (void)state;
    time_t now = 1445412480; /* Wed, 21 Oct 2015 07:28:00 GMT */
    assert_int_equal(dispatch_retry_after_ms("1", now), 1000);
    assert_int_equal(dispatch_retry_after_ms(" 120 ", now), 120000);
    assert_int_equal(dispatch_retry_after_ms("0", now), 0);
    /* The three HTTP-date forms. */
    assert_int_equal(dispatch_retry_after_ms("Wed, 21 Oct 2015 07:28:30 GMT", now), 30000);
    assert_int_equal(dispatch_retry_after_ms("Wednesday, 21-Oct-15 07:29:00 GMT", now), 60000);
    assert_int_equal(dispatch_retry_after_ms("Wed Oct 21 07:28:05 2015", now), 5000);
    /* A date in the past means now. */
    assert_int_equal(dispatch_retry_after_ms("Tue, 20 Oct 2015 07:28:00 GMT", now), 0);
    /* Unreadable values. */
    assert_int_equal(dispatch_retry_after_ms(NULL, now), -1);
    assert_int_equal(dispatch_retry_after_ms("soon", now), -1);
    assert_int_equal(dispatch_retry_after_ms("12abc", now), -1);
    assert_int_equal(dispatch_retry_after_ms("-5", now), -1);
    assert_int_equal(dispatch_retry_after_ms("99999999999999999999", now), -1);
}

static void test_classify(void **state)
{
    (void)state;
    long delivered[] = {200, 201, 202, 204, 299};
    long retry[] = {0, 408, 429, 500, 502, 503, 504, 599};
    long permanent[] = {100, 300, 301, 304, 400, 401, 403, 404, 409, 410, 413, 422, 499, 600};
    for (size_t i = 0; i < sizeof(delivered) / sizeof(*delivered); i++)
        assert_int_equal(dispatch_classify(delivered[i]), DISPATCH_DELIVERED);
    for (size_t i = 0; i < sizeof(retry) / sizeof(*retry); i++)
        assert_int_equal(dispatch_classify(retry[i]), DISPATCH_RETRY);
    for (size_t i = 0; i < sizeof(permanent) / sizeof(*permanent); i++)
        assert_int_equal(dispatch_classify(permanent[i]), DISPATCH_PERMANENT);
}

static void test_order_per_subject(void **state)
{
    (void)state;
    dispatch_order_t *o = dispatch_order_create();
    assert_non_null(o);
    int a1 = 1, a2 = 2, a3 = 3, b1 = 4;
    assert_int_equal(dispatch_order_push(o, "a", 1, &a1), 1); /* head: go */
    assert_int_equal(dispatch_order_push(o, "a", 1, &a2), 0); /* waits */
    assert_int_equal(dispatch_order_push(o, "b", 1, &b1), 1); /* another subject flows */
    assert_int_equal(dispatch_order_push(o, "a", 1, &a3), 0);
    /* Keys compare by bytes and length: "a\0" is another subject. */
    int z = 9;
    assert_int_equal(dispatch_order_push(o, "a\0", 2, &z), 1);
    assert_int_equal(dispatch_order_items(o), 5);
    assert_int_equal(dispatch_order_subjects(o), 3);
    assert_ptr_equal(dispatch_order_finish(o, "b", 1), NULL);
    assert_ptr_equal(dispatch_order_finish(o, "a", 1), &a2);
    assert_ptr_equal(dispatch_order_finish(o, "a", 1), &a3);
    assert_ptr_equal(dispatch_order_finish(o, "a", 1), NULL);
    /* A subject that emptied starts afresh. */
    assert_int_equal(dispatch_order_push(o, "a", 1, &a1), 1);
    assert_int_equal(dispatch_order_subjects(o), 2);
    dispatch_order_destroy(o);
}

static void count_item(void *item, void *arg)
{
    (void)item;
    (*(int *)arg)++;
}

static void test_order_many_subjects(void **state)
{
    (void)state;
    dispatch_order_t *o = dispatch_order_create();
    enum { N = 5000, PER = 3 };
    static int items[N][PER];
    char key[32];
    /* Interleaved pushes (forces the table to grow), then each subject drains in order. */
    for (int k = 0; k < PER; k++)
        for (int s = 0; s < N; s++) {
            snprintf(key, sizeof(key), "enterprise:%d", s);
            assert_int_equal(dispatch_order_push(o, key, strlen(key), &items[s][k]), k == 0);
        }
    assert_int_equal(dispatch_order_subjects(o), N);
    for (int s = 0; s < N; s += 2) {
        snprintf(key, sizeof(key), "enterprise:%d", s);
        assert_ptr_equal(dispatch_order_finish(o, key, strlen(key)), &items[s][1]);
        assert_ptr_equal(dispatch_order_finish(o, key, strlen(key)), &items[s][2]);
        assert_ptr_equal(dispatch_order_finish(o, key, strlen(key)), NULL);
    }
    int n = 0;
    dispatch_order_clear(o, count_item, &n);
    assert_int_equal(n, (N / 2) * PER);
    assert_int_equal(dispatch_order_items(o), 0);
    dispatch_order_destroy(o);
}

static void test_watermark(void **state)
{
    (void)state;
    dispatch_wm_t wm;
    dispatch_wm_init(&wm);
    assert_int_equal(dispatch_wm_position(&wm), -1);
    assert_int_equal(dispatch_wm_take(&wm), -1);
    /* Offsets with gaps (transaction markers take offsets too). */
    int64_t offs[] = {10, 11, 13, 14, 17};
    for (size_t i = 0; i < 5; i++)
        assert_int_equal(dispatch_wm_add(&wm, offs[i]), 0);
    assert_int_equal(dispatch_wm_add(&wm, 17), -2);
    assert_int_equal(dispatch_wm_position(&wm), 10);
    assert_int_equal(dispatch_wm_take(&wm), 10);
    assert_int_equal(dispatch_wm_take(&wm), -1); /* unchanged */
    /* Later ones finishing first do not move the watermark. */
    assert_int_equal(dispatch_wm_done(&wm, 13), 0);
    assert_int_equal(dispatch_wm_done(&wm, 17), 0);
    assert_int_equal(dispatch_wm_position(&wm), 10);
    assert_int_equal(dispatch_wm_pending(&wm), 3);
    assert_int_equal(dispatch_wm_done(&wm, 13), -1); /* twice */
    assert_int_equal(dispatch_wm_done(&wm, 12), -1); /* never added */
    assert_int_equal(dispatch_wm_done(&wm, 10), 0);
    assert_int_equal(dispatch_wm_position(&wm), 11);
    assert_int_equal(dispatch_wm_done(&wm, 11), 0);
    /* 11 and 13 done: the first unfinished is 14. */
    assert_int_equal(dispatch_wm_take(&wm), 14);
    assert_int_equal(dispatch_wm_done(&wm, 14), 0);
    /* All done: one past the last consumed. */
    assert_int_equal(dispatch_wm_position(&wm), 18);
    assert_int_equal(dispatch_wm_pending(&wm), 0);
    assert_int_equal(dispatch_wm_take(&wm), 18);
    dispatch_wm_free(&wm);
}

static void test_watermark_long_run(void **state)
{
    (void)state;
    dispatch_wm_t wm;
    dispatch_wm_init(&wm);
    /* A sliding window of 100 outstanding offsets over 100000: storage stays bounded and the
     * position is always the oldest outstanding one. */
    int64_t oldest = 0;
    for (int64_t off = 0; off < 100000; off += 2) {
        assert_int_equal(dispatch_wm_add(&wm, off), 0);
        assert_int_equal(dispatch_wm_add(&wm, off + 1), 0);
        if (off >= 100) {
            /* The later of a pair finishes first: the position waits for the earlier. */
            assert_int_equal(dispatch_wm_done(&wm, oldest + 1), 0);
            assert_int_equal(dispatch_wm_position(&wm), oldest);
            assert_int_equal(dispatch_wm_done(&wm, oldest), 0);
            oldest += 2;
            assert_int_equal(dispatch_wm_position(&wm), oldest);
        }
    }
    assert_int_equal(dispatch_wm_pending(&wm), 100);
    assert_true(wm.cap <= 1024);
    dispatch_wm_free(&wm);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sign_known_vector),
        cmocka_unit_test(test_sign_depends_on_every_part),
        cmocka_unit_test(test_backoff_bounds),
        cmocka_unit_test(test_retry_after),
        cmocka_unit_test(test_classify),
        cmocka_unit_test(test_order_per_subject),
        cmocka_unit_test(test_order_many_subjects),
        cmocka_unit_test(test_watermark),
        cmocka_unit_test(test_watermark_long_run),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
