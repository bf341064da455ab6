/* Unit tests of a download's Range, If-Range and If-None-Match (su_range.c). */
#include <stdlib.h>
#include <string.h>
#include <check.h>
#include "su_check.h"
#include "su_range.h"

#define TAG "\"00112233445566778899aabbccddeeff\""

/* kind, off and len of Range `range` (no If-Range) on a file of size bytes */
static su_range_t span(const char *range, apr_uint64_t size)
{
    su_range_t r;

    memset(&r, 0x5a, sizeof r);
    su_range_span(range, NULL, TAG, size, &r);
    return r;
}

#define ck_span(range, size, k, o, l)                                          \
    do {                                                                      \
        su_range_t r_ = span((range), (size));                                \
        ck_assert_msg(r_.kind == (k) && r_.off == (apr_uint64_t)(o)           \
                      && r_.len == (apr_uint64_t)(l),                         \
                      "'%s' on %llu: kind %d off %llu len %llu", (range),     \
                      (unsigned long long)(size), (int)r_.kind,               \
                      (unsigned long long)r_.off, (unsigned long long)r_.len); \
    } while (0)

#define ck_whole(range, size) ck_span(range, size, SU_RANGE_WHOLE, 0, size)
#define ck_416(range, size) ck_span(range, size, SU_RANGE_UNSATISFIABLE, 0, 0)

START_TEST(range_forms)
{
    ck_span("bytes=0-0", 100, SU_RANGE_PART, 0, 1);
    ck_span("bytes=0-99", 100, SU_RANGE_PART, 0, 100);
    ck_span("bytes=10-19", 100, SU_RANGE_PART, 10, 10);
    ck_span("bytes=99-99", 100, SU_RANGE_PART, 99, 1);
    ck_span("bytes=10-", 100, SU_RANGE_PART, 10, 90);
    ck_span("bytes=-1", 100, SU_RANGE_PART, 99, 1);
    ck_span("bytes=-30", 100, SU_RANGE_PART, 70, 30);
    ck_span("bytes=-100", 100, SU_RANGE_PART, 0, 100);
    /* the last byte position past the end: up to the end */
    ck_span("bytes=90-1000", 100, SU_RANGE_PART, 90, 10);
    ck_span("bytes=0-18446744073709551609", 100, SU_RANGE_PART, 0, 100);
    /* "a-b" with b = a is one byte, not empty */
    ck_span("bytes=5-5", 6, SU_RANGE_PART, 5, 1);
}
END_TEST

START_TEST(range_unsatisfiable)
{
    ck_416("bytes=100-", 100);
    ck_416("bytes=100-200", 100);
    ck_416("bytes=-0", 100);
    ck_416("bytes=-5", 0);
    ck_416("bytes=0-", 0);
    ck_416("bytes=0-0", 0);
    /* past 2^63 still a number: beyond any file, not an invalid range */
    ck_416("bytes=9223372036854775808-", 100);
    ck_416("bytes=18446744073709551609-", 100);
}
END_TEST

/* A huge suffix is the whole file as a 206; a huge start is a 416. */
START_TEST(range_huge)
{
    ck_span("bytes=-9223372036854775808", 100, SU_RANGE_PART, 0, 100);
    ck_span("bytes=-18446744073709551609", 100, SU_RANGE_PART, 0, 100);
    ck_span("bytes=-18446744073709551609", UINT64_MAX, SU_RANGE_PART,
            UINT64_MAX - 18446744073709551609ULL, 18446744073709551609ULL);
    ck_span("bytes=18446744073709551608-18446744073709551609", UINT64_MAX,
            SU_RANGE_PART, 18446744073709551608ULL, 2);
    ck_span("bytes=5-", UINT64_MAX, SU_RANGE_PART, 5, UINT64_MAX - 5);
    /* past SU_RANGE_POS_MAX, or past 2^64: not a number, the Range ignored */
    ck_whole("bytes=18446744073709551610-", 100);
    ck_whole("bytes=-18446744073709551610", 100);
    ck_whole("bytes=0-18446744073709551616", 100);
    ck_whole("bytes=0-99999999999999999999999999", 100);
}
END_TEST

START_TEST(range_syntax)
{
    /* leading zeros, any case of "bytes", blanks around the spec */
    ck_span("bytes=007-0010", 100, SU_RANGE_PART, 7, 4);
    ck_span("bytes=-000", 100, SU_RANGE_UNSATISFIABLE, 0, 0);
    ck_span("BYTES=1-2", 100, SU_RANGE_PART, 1, 2);
    ck_span("ByTeS=1-2", 100, SU_RANGE_PART, 1, 2);
    ck_span(" \tbytes= \t1-2 \t", 100, SU_RANGE_PART, 1, 2);
    ck_span("bytes=1- ", 100, SU_RANGE_PART, 1, 99);
    /* invalid: ignored, the whole file */
    ck_whole("", 100);
    ck_whole("bytes=", 100);
    ck_whole("bytes=-", 100);
    ck_whole("bytes=5", 100);
    ck_whole("bytes =1-2", 100);
    ck_whole("bytes=1 -2", 100);
    ck_whole("bytes=1- 2", 100);
    ck_whole("bytes=1-2-3", 100);
    ck_whole("bytes=--1", 100);
    ck_whole("bytes=+1-2", 100);
    ck_whole("bytes=1-+2", 100);
    ck_whole("bytes=0x1-2", 100);
    ck_whole("bytes=1.0-2", 100);
    ck_whole("bytes=a-b", 100);
    ck_whole("bytes=1-2\r", 100);
    ck_whole("items=1-2", 100);
    ck_whole("bytes:1-2", 100);
    ck_whole("1-2", 100);
    /* b < a: invalid, not unsatisfiable */
    ck_whole("bytes=20-10", 100);
    ck_whole("bytes=200-100", 100);
    /* several ranges: the whole file, even when each is satisfiable */
    ck_whole("bytes=0-1,5-6", 100);
    ck_whole("bytes=0-1, 5-6", 100);
    ck_whole("bytes=0-1,", 100);
    ck_whole("bytes=,0-1", 100);
    ck_whole("bytes=200-,300-", 100);
}
END_TEST

START_TEST(range_if_range)
{
    su_range_t r;

    su_range_span("bytes=1-2", TAG, TAG, 100, &r);
    ck_assert(r.kind == SU_RANGE_PART && r.off == 1 && r.len == 2);
    su_range_span("bytes=200-", TAG, TAG, 100, &r);
    ck_assert(r.kind == SU_RANGE_UNSATISFIABLE);
    /* anything but exactly the strong tag: the whole file */
    su_range_span("bytes=1-2", "W/" TAG, TAG, 100, &r);
    ck_assert(r.kind == SU_RANGE_WHOLE && r.off == 0 && r.len == 100);
    su_range_span("bytes=1-2", " " TAG, TAG, 100, &r);
    ck_assert(r.kind == SU_RANGE_WHOLE);
    su_range_span("bytes=1-2", "\"00112233445566778899AABBCCDDEEFF\"", TAG, 100, &r);
    ck_assert(r.kind == SU_RANGE_WHOLE);
    su_range_span("bytes=200-", "Tue, 01 Jan 2030 00:00:00 GMT", TAG, 100, &r);
    ck_assert(r.kind == SU_RANGE_WHOLE);
    su_range_span("bytes=1-2", "", TAG, 100, &r);
    ck_assert(r.kind == SU_RANGE_WHOLE);
    su_range_span("bytes=1-2", TAG, NULL, 100, &r);
    ck_assert(r.kind == SU_RANGE_WHOLE);
    /* no Range: If-Range alone changes nothing */
    su_range_span(NULL, TAG, TAG, 100, &r);
    ck_assert(r.kind == SU_RANGE_WHOLE && r.len == 100);
}
END_TEST

/* A long value is read to its end and no further, in one pass. */
START_TEST(range_long_value)
{
    apr_size_t n = 1 << 20;
    char *v = malloc(n + 1);

    ck_assert_ptr_nonnull(v);
    memcpy(v, "bytes=", 6);
    memset(v + 6, '0', n - 7);
    v[n - 1] = '-';
    v[n] = '\0';
    ck_span(v, 100, SU_RANGE_PART, 0, 100);
    v[n - 1] = '7';
    ck_whole(v, 100);
    free(v);
}
END_TEST

START_TEST(none_match)
{
    ck_assert(su_range_none_match("*", TAG));
    ck_assert(su_range_none_match(" \t*", TAG));
    ck_assert(su_range_none_match(TAG, TAG));
    ck_assert(su_range_none_match("W/" TAG, TAG));
    ck_assert(su_range_none_match(TAG " \t", TAG));
    ck_assert(su_range_none_match("\"x\", " TAG, TAG));
    ck_assert(su_range_none_match("\"x\",W/" TAG ",\"y\"", TAG));
    ck_assert(su_range_none_match(",,\r\n " TAG, TAG));
    /* a comma inside a quoted tag does not end it */
    ck_assert(su_range_none_match("\"a,b\", " TAG, TAG));
    ck_assert(!su_range_none_match(NULL, TAG));
    ck_assert(!su_range_none_match("", TAG));
    ck_assert(!su_range_none_match("* ", TAG));
    ck_assert(!su_range_none_match("*, " TAG, TAG));
    ck_assert(!su_range_none_match("\"x\"", TAG));
    ck_assert(!su_range_none_match("\"00112233445566778899AABBCCDDEEFF\"", TAG));
    ck_assert(!su_range_none_match("\"00112233445566778899aabbccddeef\"", TAG));
    ck_assert(!su_range_none_match(TAG "x", TAG));
    ck_assert(!su_range_none_match(TAG "\r", TAG));
    ck_assert(!su_range_none_match("w/" TAG, TAG));
    ck_assert(!su_range_none_match("W/ " TAG, TAG));
    ck_assert(!su_range_none_match("00112233445566778899aabbccddeeff", TAG));
    /* the list is read no further than an item that is not a tag */
    ck_assert(!su_range_none_match("x, " TAG, TAG));
    ck_assert(!su_range_none_match("\"x\", y, " TAG, TAG));
    /* an unclosed quote or comment swallows the rest */
    ck_assert(!su_range_none_match("\"x, " TAG, TAG));
    ck_assert(!su_range_none_match("\"x\"(, " TAG, TAG));
    ck_assert(!su_range_none_match("\"x\\\", " TAG, TAG));
    ck_assert(su_range_none_match("\"x\"(a,b), " TAG, TAG));
    ck_assert(!su_range_none_match(TAG, NULL));
}
END_TEST

static Suite *range_suite(void)
{
    Suite *s = suite_create("su_range");
    TCase *tc = tcase_create("core");

    tcase_add_test(tc, range_forms);
    tcase_add_test(tc, range_unsatisfiable);
    tcase_add_test(tc, range_huge);
    tcase_add_test(tc, range_syntax);
    tcase_add_test(tc, range_if_range);
    tcase_add_test(tc, range_long_value);
    tcase_add_test(tc, none_match);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return su_check_run(range_suite);
}
