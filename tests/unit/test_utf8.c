/*
 * Unit tests for common/utf8: well-formed sequences of every length, and each kind of malformed
 * input jansson refuses too.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "utf8.h"

static void test_well_formed(void **state)
{
    (void)state;
    static const char *ok[] = {
        "",         "plain ascii",  "津A12345",        "信用交通 ✓", "\xf0\x9f\x9a\x9a",
        "\xc2\x80", "\xef\xbf\xbd", "\xf4\x8f\xbf\xbf"};
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
        assert_int_equal(utf8_valid(ok[i], strlen(ok[i])), 1);
    assert_int_equal(utf8_seq_len((const unsigned char *)"a", 1), 1);
    assert_int_equal(utf8_seq_len((const unsigned char *)"\xc2\x80", 2), 2);
    assert_int_equal(utf8_seq_len((const unsigned char *)"\xe6\xb4\xa5", 3), 3);
    assert_int_equal(utf8_seq_len((const unsigned char *)"\xf0\x9f\x9a\x9a", 4), 4);
}

static void test_malformed(void **state)
{
    (void)state;
    static const char *bad[] = {
        "\x80",             /* lone continuation */
        "\xc0\xaf",         /* overlong '/' */
        "\xc1\xbf",         /* overlong */
        "\xe0\x80\xaf",     /* overlong 3-byte */
        "\xed\xa0\x80",     /* surrogate U+D800 */
        "\xf4\x90\x80\x80", /* past U+10FFFF */
        "\xf5\x80\x80\x80", /* invalid lead */
        "\xff",             /* invalid byte */
        "\xe6\xb4",         /* truncated */
        "ok\xe6",           /* truncated at the end */
        "\xe6\x41\xa5",     /* bad continuation */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (utf8_valid(bad[i], strlen(bad[i])))
            fail_msg("case %zu accepted", i);
    /* The length given is respected: a sequence cut by it is malformed. */
    assert_int_equal(utf8_valid("\xe6\xb4\xa5", 2), 0);
    assert_int_equal(utf8_seq_len((const unsigned char *)"\xe6\xb4\xa5", 2), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_well_formed),
        cmocka_unit_test(test_malformed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
