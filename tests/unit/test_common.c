/* Unit tests for the core's shared basics: the words of each error kind
 * (su_common.c) and the one parser of numbers and sizes that directives and
 * the secupload tool's options go through (su_util.c). */
#include <check.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "su_check.h"
#include "su_common.h"
#include "su_util.h"

/* Every kind has its code and its own default sentence, written once. */
START_TEST(test_err_words)
{
    static const struct { su_err_t e; const char *code; } kinds[] = {
        { SU_ERR_BAD_REQUEST, "bad_request" },
        { SU_ERR_NOT_FOUND, "not_found" },
        { SU_ERR_METHOD, "method_not_allowed" },
        { SU_ERR_TIMEOUT, "request_timeout" },
        { SU_ERR_TOO_LARGE, "too_large" },
        { SU_ERR_UNSUPPORTED_TYPE, "unsupported_type" },
        { SU_ERR_INTERNAL, "internal_error" },
        { SU_ERR_INTEGRITY, "internal_error" },
        { SU_ERR_UNAVAILABLE, "unavailable" },
        { SU_ERR_NO_SPACE, "insufficient_storage" },
        { SU_ERR_ABORTED, "aborted" },
    };
    size_t i;

    for (i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
        const char *m = su_err_message(kinds[i].e);
        ck_assert_str_eq(su_err_code(kinds[i].e), kinds[i].code);
        ck_assert_msg(m != NULL && *m != '\0', "no message for %s", kinds[i].code);
        ck_assert_msg(m[strlen(m) - 1] == '.', "'%s' is not a sentence", m);
    }
    /* what the client is told: the documented sentences (docs/api.md) */
    ck_assert_str_eq(su_err_message(SU_ERR_INTERNAL), "Internal error.");
    ck_assert_str_eq(su_err_message(SU_ERR_INTEGRITY), "Internal error.");
    ck_assert_str_eq(su_err_message(SU_ERR_NOT_FOUND), "No such file.");
    ck_assert_str_eq(su_err_message(SU_ERR_UNAVAILABLE),
                     "The metadata store is unavailable. Try again later.");
    ck_assert_str_eq(su_err_message(SU_ERR_NO_SPACE), "Insufficient storage.");
    /* a value outside the enum is an internal error, not a crash */
    ck_assert_str_eq(su_err_code((su_err_t)999), "internal_error");
    ck_assert_str_eq(su_err_message((su_err_t)-1), "Internal error.");
}
END_TEST

START_TEST(test_num_ok)
{
    apr_int64_t v = -7;

    ck_assert(su_util_parse_num("0", 0, 10, &v));
    ck_assert_int_eq(v, 0);
    ck_assert(su_util_parse_num("10", 0, 10, &v));
    ck_assert_int_eq(v, 10);
    ck_assert(su_util_parse_num("007", 1, 600000, &v));
    ck_assert_int_eq(v, 7);
    ck_assert(su_util_parse_num("600000", 1, 600000, &v));
    ck_assert_int_eq(v, 600000);
    ck_assert(su_util_parse_num("9223372036854775807", 0, APR_INT64_MAX, &v));
    ck_assert(v == APR_INT64_MAX);
}
END_TEST

/* Signs, blanks, junk, overflow and values out of range are refused, and
 * leave *out alone. */
START_TEST(test_num_bad)
{
    static const char *const bad[] = {
        "", "-1", "+5", " 5", "5 ", "5x", "x5", "0x10", "1e3", "1.0", "11",
        "600001", "9223372036854775808", "99999999999999999999999", "5K", NULL
    };
    apr_int64_t v = 42;
    int i;

    for (i = 0; bad[i]; i++) {
        ck_assert_msg(!su_util_parse_num(bad[i], 0, 10, &v), "accepted '%s'", bad[i]);
        ck_assert_int_eq(v, 42);
    }
    ck_assert(!su_util_parse_num("0", 1, 10, &v));
    ck_assert(!su_util_parse_num(NULL, 0, 10, &v));
    ck_assert_int_eq(v, 42);
}
END_TEST

START_TEST(test_size_ok)
{
    const apr_uint64_t max = (apr_uint64_t)1 << 62;
    apr_uint64_t v = 0;

    ck_assert(su_util_parse_size("1", max, &v));
    ck_assert(v == 1);
    ck_assert(su_util_parse_size("1024", max, &v));
    ck_assert(v == 1024);
    ck_assert(su_util_parse_size("1k", max, &v));
    ck_assert(v == 1024);
    ck_assert(su_util_parse_size("10M", max, &v));
    ck_assert(v == 10 * 1024 * 1024);
    ck_assert(su_util_parse_size("3g", max, &v));
    ck_assert(v == (apr_uint64_t)3 << 30);
    /* the largest of each unit */
    ck_assert(su_util_parse_size("4611686018427387904", max, &v));
    ck_assert(v == max);
    ck_assert(su_util_parse_size("4294967296G", max, &v));
    ck_assert(v == max);
    ck_assert(su_util_parse_size("1K", 1024, &v));
}
END_TEST

START_TEST(test_size_bad)
{
    static const char *const bad[] = {
        "", "0", "0K", "-1", "+1", " 1", "1 ", "1KB", "1T", "K", "1.5M",
        "4611686018427387905", "4294967297G", "4503599627370497M",
        "99999999999999999999", NULL
    };
    const apr_uint64_t max = (apr_uint64_t)1 << 62;
    apr_uint64_t v = 42;
    int i;

    for (i = 0; bad[i]; i++) {
        ck_assert_msg(!su_util_parse_size(bad[i], max, &v), "accepted '%s'", bad[i]);
        ck_assert(v == 42);
    }
    ck_assert(!su_util_parse_size("2K", 2047, &v));
    ck_assert(!su_util_parse_size(NULL, max, &v));
    ck_assert(v == 42);
}
END_TEST

/* A slice of digits: only its len bytes are looked at (the byte after is
 * not a NUL here), leading zeros count for nothing, max is inclusive and
 * the last digit is added without wrapping past 2^64 - 1. */
START_TEST(test_digits)
{
    const apr_uint64_t top = 18446744073709551609ULL;
    apr_uint64_t v = 42;

    ck_assert(su_util_parse_digits("123x", 3, 1000, &v));
    ck_assert(v == 123);
    ck_assert(su_util_parse_digits("0000000000000000000000000007-", 28, 9, &v));
    ck_assert(v == 7);
    ck_assert(su_util_parse_digits("9223372036854775808", 19, top, &v));
    ck_assert(v == 9223372036854775808ULL);
    ck_assert(su_util_parse_digits("18446744073709551609", 20, top, &v));
    ck_assert(v == top);
    v = 42;
    ck_assert(!su_util_parse_digits("18446744073709551610", 20, top, &v));
    ck_assert(!su_util_parse_digits("18446744073709551616", 20, UINT64_MAX, &v));
    ck_assert(!su_util_parse_digits("99999999999999999999", 20, top, &v));
    ck_assert(!su_util_parse_digits("1001", 4, 1000, &v));
    ck_assert(!su_util_parse_digits("12", 0, 1000, &v));
    ck_assert(!su_util_parse_digits("1 2", 3, 1000, &v));
    ck_assert(!su_util_parse_digits("-1", 2, 1000, &v));
    ck_assert(!su_util_parse_digits("+1", 2, 1000, &v));
    ck_assert(!su_util_parse_digits("1\0", 2, 1000, &v));
    ck_assert(!su_util_parse_digits(NULL, 1, 1000, &v));
    ck_assert(v == 42);
}
END_TEST

static Suite *common_suite(void)
{
    Suite *s = suite_create("su_common");
    TCase *errs = tcase_create("errors");
    TCase *tc = tcase_create("parse");

    tcase_add_test(errs, test_err_words);
    suite_add_tcase(s, errs);
    tcase_add_test(tc, test_num_ok);
    tcase_add_test(tc, test_num_bad);
    tcase_add_test(tc, test_size_ok);
    tcase_add_test(tc, test_size_bad);
    tcase_add_test(tc, test_digits);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return su_check_run(common_suite);
}
