/* Unit tests for the threaded writer of the segmented format (su_seal.c):
 * what it writes, opened segment by segment with su_seg alone, for files
 * on and around batch edges, on 1 to 3 workers; errors stop it. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include <apr_general.h>
#include <openssl/rand.h>

#include "su_check.h"
#include "su_seal.h"
#include "su_seg.h"

#define ID  "0123456789abcdef0123456789abcdef"
#define SEG SU_SEG_SIZE_MIN

static apr_pool_t *pool;
static su_kek_t kek;

typedef struct {
    unsigned char *buf;
    size_t len, cap;
    int calls, fail_at;     /* fail_at > 0: that call fails */
} sink_t;

static su_err_t sink(void *ctx, const unsigned char *b, size_t n)
{
    sink_t *s = ctx;

    if (++s->calls == s->fail_at)
        return SU_ERR_NO_SPACE;
    if (s->len + n > s->cap) {
        s->cap = (s->len + n) * 2;
        s->buf = realloc(s->buf, s->cap);
    }
    memcpy(s->buf + s->len, b, n);
    s->len += n;
    return SU_OK;
}

static void setup(void)
{
    int i;

    ck_assert_int_eq(apr_pool_create(&pool, NULL), APR_SUCCESS);
    memset(&kek, 0, sizeof kek);
    for (i = 0; i < SU_KEY_LEN; i++)
        kek.key[i] = (unsigned char)(5 * i + 3);
    su_key_compute_id(&kek);
}

static void teardown(void)
{
    apr_pool_destroy(pool);
}

/* The stored file opened with su_seg: its plaintext, every tag checked. */
static unsigned char *open_all(const sink_t *s, uint32_t segsize, size_t *plain_len)
{
    const su_kek_t *keks[1] = { &kek };
    su_seg_file_t *f;
    su_seg_ctx_t *c;
    uint64_t nseg, i;
    size_t last, n, total = 0;
    unsigned char *out;

    ck_assert_int_eq(su_seg_open(pool, keks, 1, ID, s->buf, &f, NULL), SU_OK);
    ck_assert_int_eq(su_seg_ctx_create(pool, f, &c), SU_OK);
    ck_assert_int_eq(su_seg_count(s->len, segsize, &nseg, &last), SU_OK);
    out = malloc(nseg * segsize + SU_CRYPTO_BLOCK);
    for (i = 0; i < nseg; i++) {
        int end = i + 1 == nseg;
        ck_assert_int_eq(su_seg_unseal(c, i, end ? SU_SEG_LAST : SU_SEG_MORE,
                                       s->buf + su_seg_offset(segsize, i),
                                       end ? last : segsize + SU_SEG_OVERHEAD,
                                       out + total, &n), SU_OK);
        total += n;
    }
    *plain_len = total;
    return out;
}

/* Write len random bytes in pieces of odd sizes, finish, check. */
static void round_trip(size_t len, uint32_t segsize, int threads)
{
    static const size_t steps[] = { 1, 4093, 65536, 7, 300000, 16 };
    unsigned char *plain = malloc(len + 1), *back;
    sink_t s = { 0 };
    su_seal_t *w;
    size_t off = 0, i = 0, got = 0;

    RAND_bytes(plain, (int)len + 1);
    ck_assert_int_eq(su_seal_create(pool, &kek, ID, segsize, NULL, threads,
                                    sink, &s, &w), SU_OK);
    ck_assert_int_eq(su_seal_threads(w), threads);
    while (off < len) {
        size_t n = steps[i++ % 6];
        n = n < len - off ? n : len - off;
        ck_assert_int_eq(su_seal_write(w, plain + off, n), SU_OK);
        off += n;
    }
    ck_assert_int_eq(su_seal_finish(w), SU_OK);
    ck_assert_uint_eq(s.len, su_seg_file_size(segsize, len));
    ck_assert(memcmp(s.buf, su_seal_header(w), SU_SEG_HEADER_LEN) == 0);
    back = open_all(&s, segsize, &got);
    ck_assert_uint_eq(got, len);
    ck_assert(len == 0 || memcmp(back, plain, len) == 0);
    free(back);
    free(plain);
    free(s.buf);
}

/* Sizes on and around batch edges (a batch is SU_SEAL_BATCH bytes). */
START_TEST(sizes)
{
    const size_t b = SU_SEAL_BATCH;
    size_t lens[] = { 0, 1, SEG, SEG + 1, b - 1, b, b + 1, 2 * b, 2 * b + SEG,
                      3 * b - 5, 5 * b + 7 };
    size_t k;
    int t;

    for (t = 1; t <= 3; t++)
        for (k = 0; k < sizeof lens / sizeof *lens; k++)
            round_trip(lens[k], SEG, t);
}
END_TEST

/* The default segment size and the largest: a batch of one segment still
 * has one for every worker. */
START_TEST(segment_sizes)
{
    round_trip(3 * SU_SEG_SIZE_DEFAULT * 16 + 3, SU_SEG_SIZE_DEFAULT, 2);
    round_trip(2 * SU_SEG_SIZE_MAX + 1, SU_SEG_SIZE_MAX, 2);
}
END_TEST

/* The output failing, early or late: the error sticks and comes back from
 * the calls after it; nothing more is sent. */
START_TEST(out_fails)
{
    int fail_at = _i + 2;   /* 1 is the header */
    unsigned char *plain = calloc(1, 4 * SU_SEAL_BATCH);
    sink_t s = { 0 };
    su_seal_t *w;
    su_err_t rv;
    int calls;

    s.fail_at = fail_at;
    ck_assert_int_eq(su_seal_create(pool, &kek, ID, SEG, NULL, 2, sink, &s, &w),
                     SU_OK);
    rv = su_seal_write(w, plain, 4 * SU_SEAL_BATCH);
    if (rv == SU_OK)
        rv = su_seal_finish(w);
    ck_assert_int_eq(rv, SU_ERR_NO_SPACE);
    calls = s.calls;
    ck_assert_int_eq(su_seal_write(w, plain, 1), SU_ERR_NO_SPACE);
    ck_assert_int_eq(su_seal_finish(w), SU_ERR_NO_SPACE);
    ck_assert_int_eq(s.calls, calls);
    free(plain);
    free(s.buf);
}
END_TEST

/* After finish nothing more is taken. */
START_TEST(write_after_finish)
{
    sink_t s = { 0 };
    su_seal_t *w;

    ck_assert_int_eq(su_seal_create(pool, &kek, ID, SEG, NULL, 1, sink, &s, &w),
                     SU_OK);
    ck_assert_int_eq(su_seal_write(w, (const unsigned char *)"ab", 2), SU_OK);
    ck_assert_int_eq(su_seal_finish(w), SU_OK);
    ck_assert_int_ne(su_seal_write(w, (const unsigned char *)"c", 1), SU_OK);
    free(s.buf);
}
END_TEST

/* A writer dropped mid-file (its pool destroyed, workers busy) stops cleanly. */
START_TEST(dropped_mid_file)
{
    unsigned char *plain = calloc(1, 3 * SU_SEAL_BATCH);
    apr_pool_t *sub;
    sink_t s = { 0 };
    su_seal_t *w;

    ck_assert_int_eq(apr_pool_create(&sub, pool), APR_SUCCESS);
    ck_assert_int_eq(su_seal_create(sub, &kek, ID, SEG, NULL, 2, sink, &s, &w),
                     SU_OK);
    ck_assert_int_eq(su_seal_write(w, plain, 3 * SU_SEAL_BATCH), SU_OK);
    apr_pool_destroy(sub);
    free(plain);
    free(s.buf);
}
END_TEST

START_TEST(cpus)
{
    ck_assert_int_ge(su_seal_cpus(), 1);
}
END_TEST

static Suite *seal_suite(void)
{
    Suite *s = suite_create("su_seal");
    TCase *tc = tcase_create("seal");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, sizes);
    tcase_add_test(tc, segment_sizes);
    tcase_add_loop_test(tc, out_fails, 0, 4);
    tcase_add_test(tc, write_after_finish);
    tcase_add_test(tc, dropped_mid_file);
    tcase_add_test(tc, cpus);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return su_check_run(seal_suite);
}
