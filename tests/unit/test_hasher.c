/* Unit tests for the plaintext digest beside the encryption (su_hasher.c)
 * and the helper thread it runs on (su_async.c). */
#include <check.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>

#include <apr_general.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "su_async.h"
#include "su_check.h"
#include "su_hasher.h"

static apr_pool_t *pool;

static void setup(void)
{
    ck_assert_int_eq(apr_pool_create(&pool, NULL), APR_SUCCESS);
}

static void teardown(void)
{
    apr_pool_destroy(pool);
}

/* Feed n random bytes in pieces of the given sizes (cycled); compare. */
static void check_digest(size_t n, const size_t *steps, int nsteps)
{
    unsigned char *d = malloc(n + 1), want[32], got[32];
    su_hasher_t *h;
    size_t off = 0;
    int i = 0;

    ck_assert_ptr_nonnull(d);
    RAND_bytes(d, (int)n + 1);
    ck_assert_int_eq(EVP_Digest(d, n, want, NULL, EVP_sha256(), NULL), 1);
    ck_assert_int_eq(su_hasher_create(pool, &h), SU_OK);
    while (off < n) {
        size_t k = steps[i++ % nsteps];
        if (k > n - off)
            k = n - off;
        ck_assert_int_eq(su_hasher_update(h, d + off, k), SU_OK);
        off += k;
    }
    ck_assert_int_eq(su_hasher_final(h, got), SU_OK);
    ck_assert_mem_eq(got, want, 32);
    /* used up */
    ck_assert_int_ne(su_hasher_update(h, d, 1), SU_OK);
    free(d);
}

START_TEST(test_small_inline)
{
    static const size_t steps[] = { 1, 7, 4096 };
    check_digest(0, steps, 3);
    check_digest(1, steps, 3);
    check_digest(100000, steps, 3);
    check_digest(1024 * 1024, steps, 3);
}
END_TEST

START_TEST(test_large_threaded)
{
    /* across the inline limit, ring buffers filled partly and exactly */
    static const size_t odd[] = { 8000, 262144, 3, 131072, 65537 };
    static const size_t big[] = { 4 * 1024 * 1024 };
    check_digest(1024 * 1024 + 1, odd, 5);
    check_digest(9 * 1024 * 1024 + 12345, odd, 5);
    check_digest(12 * 1024 * 1024, big, 1);
}
END_TEST

START_TEST(test_abandoned)
{
    unsigned char *d = calloc(1, 3 * 1024 * 1024);
    apr_pool_t *sub;
    su_hasher_t *h;

    /* an upload that fails mid-way: the thread is stopped by the pool */
    apr_pool_create(&sub, pool);
    ck_assert_int_eq(su_hasher_create(sub, &h), SU_OK);
    ck_assert_int_eq(su_hasher_update(h, d, 3 * 1024 * 1024), SU_OK);
    apr_pool_destroy(sub);
    free(d);
}
END_TEST

/* A digest the caller owns, through su_hasher_create_fn. */
typedef struct fn_state {
    EVP_MD_CTX *md;
    apr_uint64_t seen;
    apr_uint64_t fail_after;    /* 0: never fail */
} fn_state_t;

static int fn_update(void *ctx, const void *buf, apr_size_t len)
{
    fn_state_t *st = ctx;
    st->seen += len;
    if (st->fail_after && st->seen > st->fail_after)
        return 0;
    return EVP_DigestUpdate(st->md, buf, len) == 1;
}

static void check_fn(size_t n, apr_uint64_t fail_after)
{
    unsigned char *d = malloc(n + 1), want[32], got[32];
    fn_state_t st = { EVP_MD_CTX_new(), 0, fail_after };
    su_hasher_t *h;
    size_t off;

    ck_assert_ptr_nonnull(d);
    ck_assert_ptr_nonnull(st.md);
    RAND_bytes(d, (int)n + 1);
    ck_assert_int_eq(EVP_Digest(d, n, want, NULL, EVP_sha256(), NULL), 1);
    ck_assert_int_eq(EVP_DigestInit_ex(st.md, EVP_sha256(), NULL), 1);
    ck_assert_int_eq(su_hasher_create_fn(pool, fn_update, &st, &h), SU_OK);
    for (off = 0; off < n; off += 100003) {
        su_err_t rv = su_hasher_update(h, d + off, n - off < 100003 ? n - off : 100003);
        if (fail_after == 0)
            ck_assert_int_eq(rv, SU_OK);
    }
    if (fail_after != 0) {
        /* a failure shows, at the latest, when draining */
        ck_assert_int_eq(su_hasher_drain(h), SU_ERR_INTERNAL);
    } else {
        ck_assert_int_eq(su_hasher_drain(h), SU_OK);
        /* every byte went through fn, in order, and ctx is ours again */
        ck_assert_uint_eq(st.seen, n);
        ck_assert_int_eq(EVP_DigestFinal_ex(st.md, got, NULL), 1);
        ck_assert_mem_eq(got, want, 32);
        ck_assert_int_eq(su_hasher_drain(h), SU_OK);
    }
    ck_assert_int_ne(su_hasher_update(h, d, 1), SU_OK);
    EVP_MD_CTX_free(st.md);
    free(d);
}

START_TEST(test_fn)
{
    check_fn(1000, 0);                  /* in place */
    check_fn(7 * 1024 * 1024 + 5, 0);   /* on the thread */
    check_fn(1000, 10);
    check_fn(7 * 1024 * 1024 + 5, 5 * 1024 * 1024);
}
END_TEST

typedef struct {
    pthread_t thread;
    int policy;
} where_t;

static void job_where(void *arg)
{
    where_t *w = arg;
    w->thread = pthread_self();
    w->policy = sched_getscheduler(0);
}

/* The job runs on the helper's thread, which does not preempt the thread
 * that hands it work (SCHED_BATCH), and the caller keeps its own policy. */
START_TEST(test_async_thread)
{
    su_async_t *a = su_async_create(pool);
    where_t w = { pthread_self(), -1 };
    int mine = sched_getscheduler(0);

    ck_assert_ptr_nonnull(a);
    su_async_start(a, job_where, &w);
    su_async_wait(a);
    ck_assert(!pthread_equal(w.thread, pthread_self()));
#ifdef SCHED_BATCH
    ck_assert_int_eq(w.policy, SCHED_BATCH);
#endif
    ck_assert_int_eq(sched_getscheduler(0), mine);
    /* a second job, on the same thread */
    {
        pthread_t first = w.thread;
        su_async_start(a, job_where, &w);
        su_async_wait(a);
        ck_assert(pthread_equal(w.thread, first));
    }
}
END_TEST

static Suite *hasher_suite(void)
{
    Suite *s = suite_create("su_hasher");
    TCase *tc = tcase_create("hasher");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_small_inline);
    tcase_add_test(tc, test_large_threaded);
    tcase_add_test(tc, test_abandoned);
    tcase_add_test(tc, test_fn);
    tcase_add_test(tc, test_async_thread);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return su_check_run(hasher_suite);
}
