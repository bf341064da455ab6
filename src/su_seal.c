/*
 * Writing a segmented file with its segments sealed on worker threads
 * (su_seal.h): two batches, one filling on the caller's thread while the
 * other is sealed by the workers, each worker over its own contiguous run
 * of the batch's segments with contexts of its own.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <sched.h>
#include <string.h>
#include <unistd.h>

#include "su_async.h"
#include "su_seal.h"
#include "su_util.h"

typedef struct su_seal_slot {
    unsigned char *plain;       /* nseg segments of plaintext */
    unsigned char *sealed;      /* the same, sealed, back to back */
    size_t fill;                /* plaintext bytes in it */
    size_t held;                /* the most it ever held: what is wiped */
    size_t cap;                 /* segments its buffers hold */
    uint64_t first;             /* the index of its first segment */
    int last;                   /* it ends the file */
    size_t last_len;            /* then: the stored length of its last segment */
} su_seal_slot_t;

/* One worker's share of a batch: segments from .. to - 1. */
typedef struct su_seal_job {
    su_seg_ctx_t *ctx;
    su_seal_slot_t *slot;
    struct su_seal *s;
    size_t from, to;
    su_err_t err;
} su_seal_job_t;

struct su_seal {
    apr_pool_t *pool;
    su_seg_file_t *f;
    su_segw_out_fn out;
    void *out_ctx;
    unsigned char header[SU_SEG_HEADER_LEN];
    uint32_t segsize;
    size_t stride;              /* stored bytes of a full segment */
    size_t nseg;                /* segments per batch */
    int threads;                /* workers wanted */
    int nworkers;               /* workers made: 0 seals in place */
    int tried;
    su_async_t *async[SU_SEAL_THREADS_MAX];
    su_seal_job_t job[SU_SEAL_THREADS_MAX];
    su_seal_slot_t slot[2];
    int cur;                    /* the slot filling */
    int busy;                   /* the other one is being sealed */
    uint64_t next;              /* the index of the next batch's first segment */
    su_err_t err;
    int done;
};

int su_seal_cpus(void)
{
#ifdef CPU_COUNT
    cpu_set_t set;

    if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0)
        return CPU_COUNT(&set);
#endif
    {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        return n > 0 ? (int)n : 1;
    }
}

static void su_seal_wipe(su_seal_t *s)
{
    int i;

    for (i = 0; i < 2; i++) {
        if (s->slot[i].fill > s->slot[i].held)
            s->slot[i].held = s->slot[i].fill;
        su_util_wipe(s->slot[i].plain, s->slot[i].held);
        s->slot[i].held = 0;
    }
}

/* Registered before any worker is made, so it runs after they are joined. */
static apr_status_t su_seal_cleanup(void *data)
{
    su_seal_wipe(data);
    return APR_SUCCESS;
}

/* The segments a slot holds: an empty file still has its (empty) last one. */
static size_t su_seal_count(const su_seal_t *s, const su_seal_slot_t *b)
{
    size_t n = (b->fill + s->segsize - 1) / s->segsize;
    return n == 0 ? 1 : n;
}

static void su_seal_job_run(void *arg)
{
    su_seal_job_t *j = arg;
    su_seal_t *s = j->s;
    su_seal_slot_t *b = j->slot;
    size_t n = su_seal_count(s, b), i;

    for (i = j->from; i < j->to && j->err == SU_OK; i++) {
        size_t at = i * s->segsize, len = b->fill - at, outlen = 0;
        su_seg_flag_t flag = b->last && i + 1 == n ? SU_SEG_LAST : SU_SEG_MORE;

        if (len > s->segsize)
            len = s->segsize;
        j->err = su_seg_seal(j->ctx, b->first + i, flag, b->plain + at, len,
                             b->sealed + i * s->stride, &outlen);
        if (flag == SU_SEG_LAST)
            b->last_len = outlen;
    }
}

/* Workers for a file of more than one batch; fewer (or none: in place) if
 * threads cannot be made. Each one's contexts are made before its thread,
 * so that the thread's cleanup, registered later, runs first. */
static void su_seal_workers(su_seal_t *s)
{
    int k;

    s->tried = 1;
    for (k = 1; k < s->threads; k++)
        if (su_seg_ctx_create(s->pool, s->f, &s->job[k].ctx) != SU_OK)
            break;
    s->threads = k;
    for (k = 0; k < s->threads; k++) {
        s->async[k] = su_async_create(s->pool);
        if (s->async[k] == NULL)
            break;
    }
    s->nworkers = k;
}

/* Seal slot b: split among the workers, or in place. */
static void su_seal_start(su_seal_t *s, su_seal_slot_t *b)
{
    size_t n = su_seal_count(s, b), share;
    int k, t = s->nworkers;

    if (t > (int)n)
        t = (int)n;
    share = t > 0 ? (n + (size_t)t - 1) / (size_t)t : n;
    for (k = 0; k < (t > 0 ? t : 1); k++) {
        su_seal_job_t *j = &s->job[k];
        j->s = s;
        j->slot = b;
        j->from = (size_t)k * share;
        j->to = j->from + share < n ? j->from + share : n;
        j->err = SU_OK;
        if (t > 0)
            su_async_start(s->async[k], su_seal_job_run, j);
        else
            su_seal_job_run(j);
    }
}

/* Wait for slot b's sealing: SU_OK, or the first worker's error. */
static su_err_t su_seal_wait(su_seal_t *s, su_seal_slot_t *b)
{
    su_err_t rv = SU_OK;
    int k;

    for (k = 0; k < s->nworkers; k++)
        su_async_wait(s->async[k]);
    for (k = 0; k < (s->nworkers > 0 ? s->nworkers : 1); k++)
        if (s->job[k].err != SU_OK && rv == SU_OK)
            rv = s->job[k].err;
    if (b->fill > b->held)
        b->held = b->fill;
    return rv;
}

/* Slot b's sealed bytes out, in order. */
static su_err_t su_seal_out(su_seal_t *s, su_seal_slot_t *b)
{
    size_t n = su_seal_count(s, b);
    size_t len = b->last ? (n - 1) * s->stride + b->last_len : n * s->stride;

    return s->out(s->out_ctx, b->sealed, len);
}

static su_err_t su_seal_collect(su_seal_t *s, su_seal_slot_t *b)
{
    su_err_t rv = su_seal_wait(s, b);

    return rv == SU_OK ? su_seal_out(s, b) : rv;
}

/*
 * A slot's buffers for nseg segments, made when it is first filled. The
 * first slot starts with one segment and grows to a batch once that fills
 * (its plaintext moved, the old buffer wiped): a small upload then never
 * allocated 2 MiB, which cost format 2 a fifth of the small-upload rate.
 */
static void su_seal_slot_alloc(su_seal_t *s, su_seal_slot_t *b, size_t nseg)
{
    unsigned char *old = b->plain;

    if (old != NULL && b->cap >= nseg)
        return;
    b->plain = apr_palloc(s->pool, nseg * s->segsize);
    b->sealed = apr_palloc(s->pool, nseg * s->stride + SU_CRYPTO_BLOCK);
    b->cap = nseg;
    if (old != NULL && b->fill > 0) {
        memcpy(b->plain, old, b->fill);
        su_util_wipe(old, b->fill);
    }
}

/* A full batch with more to follow: the one before goes out, this one is
 * handed to the workers, and the other slot fills meanwhile. */
static su_err_t su_seal_dispatch(su_seal_t *s)
{
    su_seal_slot_t *b = &s->slot[s->cur], *prev = &s->slot[1 - s->cur];
    int had = s->busy;
    su_err_t rv = SU_OK;

    if (had)
        rv = su_seal_wait(s, prev);
    s->busy = 0;
    if (rv != SU_OK)
        return rv;
    if (!s->tried)
        su_seal_workers(s);
    b->first = s->next;
    b->last = 0;
    s->next += s->nseg;
    su_seal_start(s, b);
    s->busy = 1;
    /* the batch before is written out while the workers seal this one:
     * written first, the workers sat idle through every write */
    if (had)
        rv = su_seal_out(s, prev);
    if (rv != SU_OK) {
        /* nothing more goes out: this batch is waited for, not sent */
        (void)su_seal_wait(s, b);
        s->busy = 0;
    }
    s->cur = 1 - s->cur;
    s->slot[s->cur].fill = 0;
    su_seal_slot_alloc(s, &s->slot[s->cur], s->nseg);
    return rv;
}

su_err_t su_seal_create(apr_pool_t *p, const su_kek_t *kek, const char *id,
                        uint32_t segsize, const unsigned char *nonce, int threads,
                        su_segw_out_fn out, void *ctx, su_seal_t **sp)
{
    su_seal_t *s = apr_pcalloc(p, sizeof *s);
    su_err_t rv;

    *sp = NULL;
    rv = su_seg_create(p, kek, id, segsize, nonce, s->header, &s->f);
    if (rv == SU_OK)
        rv = su_seg_ctx_create(p, s->f, &s->job[0].ctx);
    if (rv != SU_OK)
        return rv;
    s->pool = p;
    s->out = out;
    s->out_ctx = ctx;
    s->segsize = segsize;
    s->stride = (size_t)segsize + SU_SEG_OVERHEAD;
    s->threads = threads > 0 ? threads : su_seal_cpus();
    if (s->threads > SU_SEAL_THREADS_MAX)
        s->threads = SU_SEAL_THREADS_MAX;
    /* at least a segment for every worker */
    s->nseg = SU_SEAL_BATCH / segsize;
    if (s->nseg < (size_t)s->threads)
        s->nseg = (size_t)s->threads;
    su_seal_slot_alloc(s, &s->slot[0], 1);
    apr_pool_cleanup_register(p, s, su_seal_cleanup, apr_pool_cleanup_null);
    rv = out(ctx, s->header, SU_SEG_HEADER_LEN);
    if (rv == SU_OK)
        *sp = s;
    return rv;
}

su_err_t su_seal_write(su_seal_t *s, const unsigned char *in, size_t len)
{
    size_t cap = s->nseg * s->segsize;

    while (len > 0 && s->err == SU_OK && !s->done) {
        su_seal_slot_t *b = &s->slot[s->cur];
        size_t n, room = b->cap * s->segsize;
        if (b->fill == room && b->cap < s->nseg) {
            su_seal_slot_alloc(s, b, s->nseg);
            continue;
        }
        /* a full batch goes only once more follows: its last segment
         * may be the file's */
        if (b->fill == cap) {
            s->err = su_seal_dispatch(s);
            continue;
        }
        n = room - b->fill < len ? room - b->fill : len;
        memcpy(b->plain + b->fill, in, n);
        b->fill += n;
        in += n;
        len -= n;
    }
    return s->done && s->err == SU_OK ? SU_ERR_INTERNAL : s->err;
}

su_err_t su_seal_finish(su_seal_t *s)
{
    su_seal_slot_t *b = &s->slot[s->cur];
    su_err_t rv;

    if (s->done)
        return s->err;
    s->done = 1;
    rv = s->busy ? su_seal_collect(s, &s->slot[1 - s->cur]) : SU_OK;
    s->busy = 0;
    if (rv == SU_OK && s->err == SU_OK) {
        b->first = s->next;
        b->last = 1;
        su_seal_start(s, b);
        rv = su_seal_collect(s, b);
    }
    if (s->err == SU_OK)
        s->err = rv;
    su_seal_wipe(s);
    return s->err;
}

const unsigned char *su_seal_header(const su_seal_t *s)
{
    return s->header;
}

int su_seal_threads(const su_seal_t *s)
{
    return s->threads;
}
