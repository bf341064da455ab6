#include "su_hasher.h"
#include "su_algs.h"
#include "su_util.h"

#include <string.h>

#include <apr_thread_cond.h>
#include <apr_thread_mutex.h>
#include <apr_thread_proc.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#define SU_HASHER_INLINE  (1024 * 1024)   /* hashed in place up to this */
#define SU_HASHER_BUF     (256 * 1024)
#define SU_HASHER_NBUF    4

struct su_hasher {
    apr_pool_t *pool;
    EVP_MD_CTX *ctx;                    /* the SHA-256 of su_hasher_create */
    su_hasher_fn fn;
    void *fn_ctx;
    apr_uint64_t total;
    int failed;
    int drained;
#if APR_HAS_THREADS
    apr_pool_t *tpool;                  /* unmanaged: the thread's own */
    apr_thread_t *thread;
    apr_thread_mutex_t *mu;
    apr_thread_cond_t *cv;
    unsigned char *ring[SU_HASHER_NBUF];
    apr_size_t len[SU_HASHER_NBUF];
    int head, count;                    /* published buffers, under mu */
    int tail;                           /* the producer's buffer being filled */
    apr_size_t fill;                    /* bytes in it */
    int stop;
    int tried;                          /* a thread was tried (once only) */
#endif
};

#if APR_HAS_THREADS
static void *APR_THREAD_FUNC su_hasher_main(apr_thread_t *t, void *data)
{
    su_hasher_t *h = data;

    for (;;) {
        int slot;
        apr_thread_mutex_lock(h->mu);
        while (h->count == 0 && !h->stop)
            apr_thread_cond_wait(h->cv, h->mu);
        if (h->count == 0) {
            apr_thread_mutex_unlock(h->mu);
            break;
        }
        slot = h->head;
        apr_thread_mutex_unlock(h->mu);
        /* the producer never touches a published buffer */
        if (!h->fn(h->fn_ctx, h->ring[slot], h->len[slot]))
            h->failed = 1;
        apr_thread_mutex_lock(h->mu);
        h->head = (h->head + 1) % SU_HASHER_NBUF;
        h->count--;
        apr_thread_cond_broadcast(h->cv);
        apr_thread_mutex_unlock(h->mu);
    }
    apr_thread_exit(t, APR_SUCCESS);
    return NULL;
}

/* Stop and join the thread; the digest state is then the caller's again. */
static void su_hasher_join(su_hasher_t *h)
{
    apr_status_t ts;
    int i;

    if (h->thread == NULL)
        return;
    apr_thread_mutex_lock(h->mu);
    h->stop = 1;
    apr_thread_cond_broadcast(h->cv);
    apr_thread_mutex_unlock(h->mu);
    apr_thread_join(&ts, h->thread);
    h->thread = NULL;
    for (i = 0; i < SU_HASHER_NBUF; i++)
        su_util_wipe(h->ring[i], SU_HASHER_BUF);
    apr_pool_destroy(h->tpool);
    h->tpool = NULL;
}

/* Start the thread; on any failure hashing simply stays in place. */
static void su_hasher_start(su_hasher_t *h)
{
    int i;

    if (apr_pool_create_unmanaged_ex(&h->tpool, NULL, NULL) != APR_SUCCESS)
        return;
    if (apr_thread_mutex_create(&h->mu, APR_THREAD_MUTEX_DEFAULT, h->tpool)
        != APR_SUCCESS
        || apr_thread_cond_create(&h->cv, h->tpool) != APR_SUCCESS)
        goto fail;
    for (i = 0; i < SU_HASHER_NBUF; i++)
        h->ring[i] = apr_palloc(h->tpool, SU_HASHER_BUF);
    h->head = h->count = h->tail = 0;
    h->fill = 0;
    h->stop = 0;
    if (apr_thread_create(&h->thread, NULL, su_hasher_main, h, h->tpool)
        == APR_SUCCESS)
        return;
fail:
    h->thread = NULL;
    apr_pool_destroy(h->tpool);
    h->tpool = NULL;
}

/* Hand the buffer being filled to the thread, waiting for a free one. */
static void su_hasher_publish(su_hasher_t *h)
{
    if (h->fill == 0)
        return;
    h->len[h->tail] = h->fill;
    apr_thread_mutex_lock(h->mu);
    h->count++;
    apr_thread_cond_broadcast(h->cv);
    /* the next buffer to fill must be free */
    while (h->count == SU_HASHER_NBUF)
        apr_thread_cond_wait(h->cv, h->mu);
    apr_thread_mutex_unlock(h->mu);
    h->tail = (h->tail + 1) % SU_HASHER_NBUF;
    h->fill = 0;
}

static void su_hasher_feed_thread(su_hasher_t *h, const unsigned char *in,
                                  apr_size_t len)
{
    while (len > 0) {
        /* the buffer after the published ones is the producer's alone */
        apr_size_t n = SU_HASHER_BUF - h->fill;
        if (n > len)
            n = len;
        memcpy(h->ring[h->tail] + h->fill, in, n);
        h->fill += n;
        in += n;
        len -= n;
        if (h->fill == SU_HASHER_BUF)
            su_hasher_publish(h);
    }
}
#endif

static apr_status_t su_hasher_cleanup(void *data)
{
    su_hasher_t *h = data;
#if APR_HAS_THREADS
    su_hasher_join(h);
#endif
    EVP_MD_CTX_free(h->ctx);
    h->ctx = NULL;
    h->fn = NULL;
    return APR_SUCCESS;
}

static int su_hasher_sha256_update(void *ctx, const void *buf, apr_size_t len)
{
    return EVP_DigestUpdate(ctx, buf, len) == 1;
}

su_err_t su_hasher_create_fn(apr_pool_t *p, su_hasher_fn fn, void *ctx,
                             su_hasher_t **out)
{
    su_hasher_t *h = apr_pcalloc(p, sizeof(*h));

    h->pool = p;
    h->fn = fn;
    h->fn_ctx = ctx;
    apr_pool_cleanup_register(p, h, su_hasher_cleanup, apr_pool_cleanup_null);
    *out = h;
    return SU_OK;
}

su_err_t su_hasher_create(apr_pool_t *p, su_hasher_t **out)
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();

    if (ctx == NULL || EVP_DigestInit_ex(ctx, su_algs_sha256(), NULL) != 1) {
        EVP_MD_CTX_free(ctx);
        return SU_ERR_INTERNAL;
    }
    su_hasher_create_fn(p, su_hasher_sha256_update, ctx, out);
    (*out)->ctx = ctx;
    return SU_OK;
}

su_err_t su_hasher_update(su_hasher_t *h, const void *buf, apr_size_t len)
{
    if (h->fn == NULL || h->drained)
        return SU_ERR_INTERNAL;
    h->total += len;
#if APR_HAS_THREADS
    if (!h->tried && h->total > SU_HASHER_INLINE) {
        h->tried = 1;
        su_hasher_start(h);
    }
    if (h->thread) {
        su_hasher_feed_thread(h, buf, len);
        return SU_OK;
    }
#endif
    if (len > 0 && !h->fn(h->fn_ctx, buf, len))
        h->failed = 1;
    return h->failed ? SU_ERR_INTERNAL : SU_OK;
}

su_err_t su_hasher_drain(su_hasher_t *h)
{
#if APR_HAS_THREADS
    if (h->thread) {
        su_hasher_publish(h);
        su_hasher_join(h);
    }
#endif
    h->drained = 1;
    return h->failed || h->fn == NULL ? SU_ERR_INTERNAL : SU_OK;
}

su_err_t su_hasher_final(su_hasher_t *h, unsigned char out[32])
{
    unsigned int n = 0;
    su_err_t rv;

    if (h->ctx == NULL)
        return SU_ERR_INTERNAL;
    rv = su_hasher_drain(h);
    if (rv == SU_OK && (EVP_DigestFinal_ex(h->ctx, out, &n) != 1 || n != 32))
        rv = SU_ERR_INTERNAL;
    EVP_MD_CTX_free(h->ctx);
    h->ctx = NULL;
    h->fn = NULL;
    return rv;
}
