#include "su_hasher.h"
#include "su_async.h"
#include "su_util.h"

#include <string.h>

#include <openssl/evp.h>

#define SU_HASHER_INLINE  (1024 * 1024)   /* hashed in place up to this */
/* 1 MiB: with 256 KiB an upload on a busy host (other threads, or the
 * hypervisor, taking the CPU) often dropped to half its speed, its request
 * thread waiting on a digest thread that had lost its core; in calm runs the
 * two sizes measure the same. */
#define SU_HASHER_BUF     (1024 * 1024)

/*
 * Past the first MiB the bytes go through two buffers: the producer fills
 * one while su_async runs fn over the other (double buffering, so at most
 * one copy waits), and waits for that job only when its buffer is needed
 * again.
 */
struct su_hasher {
    apr_pool_t *pool;
    EVP_MD_CTX *ctx;                    /* the SHA-256 of su_hasher_create */
    su_hasher_fn fn;
    void *fn_ctx;
    apr_uint64_t total;
    int failed;                         /* in place, or after a wait */
    int drained;
    int tried;                          /* a thread was tried (once only) */
    su_async_t *async;
    unsigned char *buf[2];
    apr_size_t held[2];                 /* bytes each ever held: the wipe */
    int cur;                            /* the producer's buffer */
    apr_size_t fill;                    /* bytes in it */
    /* the running job's, touched by the producer only after a wait */
    const unsigned char *job_buf;
    apr_size_t job_len;
    int job_failed;
};

static void su_hasher_job(void *arg)
{
    su_hasher_t *h = arg;
    if (!h->fn(h->fn_ctx, h->job_buf, h->job_len))
        h->job_failed = 1;
}

/* Hand the buffer being filled to the thread; the other one becomes ours
 * once the job over it has returned. */
static void su_hasher_publish(su_hasher_t *h)
{
    if (h->fill == 0)
        return;
    if (h->fill > h->held[h->cur])
        h->held[h->cur] = h->fill;
    su_async_wait(h->async);
    h->job_buf = h->buf[h->cur];
    h->job_len = h->fill;
    su_async_start(h->async, su_hasher_job, h);
    h->cur = 1 - h->cur;
    h->fill = 0;
}

static void su_hasher_feed_async(su_hasher_t *h, const unsigned char *in,
                                 apr_size_t len)
{
    while (len > 0) {
        apr_size_t n = SU_HASHER_BUF - h->fill;
        if (n > len)
            n = len;
        memcpy(h->buf[h->cur] + h->fill, in, n);
        h->fill += n;
        in += n;
        len -= n;
        if (h->fill == SU_HASHER_BUF)
            su_hasher_publish(h);
    }
}

/* Wait for the last job and wipe the copies; fn's state is the caller's. */
static void su_hasher_settle(su_hasher_t *h)
{
    if (h->async == NULL)
        return;
    su_async_wait(h->async);
    if (h->job_failed)
        h->failed = 1;
    if (h->fill > h->held[h->cur])
        h->held[h->cur] = h->fill;
    su_util_wipe(h->buf[0], h->held[0]);
    su_util_wipe(h->buf[1], h->held[1]);
    h->async = NULL;
}

static apr_status_t su_hasher_cleanup(void *data)
{
    su_hasher_t *h = data;

    su_hasher_settle(h);
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

    if (ctx == NULL || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1) {
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
    if (!h->tried && h->total > SU_HASHER_INLINE) {
        h->tried = 1;
        /* its cleanup, registered after ours, runs first: the job ends
         * before the buffers are wiped and fn's state goes */
        h->async = su_async_create(h->pool);
        if (h->async != NULL) {
            h->buf[0] = apr_palloc(h->pool, SU_HASHER_BUF);
            h->buf[1] = apr_palloc(h->pool, SU_HASHER_BUF);
        }
    }
    if (h->async != NULL) {
        su_hasher_feed_async(h, buf, len);
        return SU_OK;
    }
    if (len > 0 && !h->fn(h->fn_ctx, buf, len))
        h->failed = 1;
    return h->failed ? SU_ERR_INTERNAL : SU_OK;
}

su_err_t su_hasher_drain(su_hasher_t *h)
{
    if (h->async != NULL)
        su_hasher_publish(h);
    su_hasher_settle(h);
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
