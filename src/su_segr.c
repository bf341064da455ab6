/*
 * Reading a stored file of the segmented format (su_segr.h): the header and
 * last segment checked at open, then pieces of a range, segment by
 * segment, each verified in a private copy before it is decrypted.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "su_async.h"
#include "su_fault.h"
#include "su_segr.h"
#include "su_util.h"

/* How many threads decrypt a piece (docs/performance.md: measured). */
#ifndef SU_SEGR_THREADS
#define SU_SEGR_THREADS 2
#endif
/* Below this much range left, a thread costs more than it overlaps. */
#define SU_SEGR_ASYNC_MIN ((uint64_t)1024 * 1024)

/* One thread's share of a piece: segments first .. first + n - 1. */
typedef struct su_segr_work {
    su_segr_t *r;
    su_seg_ctx_t *ctx;
    su_async_t *async;
    unsigned char *ct;      /* the stored bytes of its segments */
    size_t ct_cap;
    uint64_t first, n;
    unsigned char *out;     /* where segment first's plaintext goes */
    size_t got;             /* plaintext bytes written */
    su_err_t rv;
} su_segr_work_t;

struct su_segr {
    apr_pool_t *pool;
    int fd;
    unsigned char header[SU_SEG_HEADER_LEN];
    su_seg_file_t *file;
    uint32_t segsize;
    uint64_t nseg;
    size_t last_stored;
    uint64_t plain;         /* plaintext size */
    uint64_t pos, end;      /* what is still to be given */
    su_segr_work_t w[SU_SEGR_THREADS];
    int nwork;              /* workers of the piece under way */
    int threads_tried;
    int busy;
    unsigned char *out;     /* the caller's buffer of the piece under way */
    uint64_t piece_seg;     /* its first segment */
    /* segments larger than a piece: one decrypted here, given in parts */
    unsigned char *big;
    uint64_t big_seg;       /* the segment big holds, or UINT64_MAX */
    size_t big_len;
};

/* ---- names ---- */

static int su_segr_hex_id(const char *s)
{
    int i;

    for (i = 0; i < 32; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    return 1;
}

int su_segr_path_id(const char *path, char id[33])
{
    const char *base = strrchr(path, '/');

    base = base != NULL ? base + 1 : path;
    if (strncmp(base, ".tmp-", 5) == 0)
        base += 5;
    id[0] = '\0';
    if (strlen(base) < 32 || !su_segr_hex_id(base)
        || (base[32] != '\0' && base[32] != '.'))
        return 0;
    memcpy(id, base, 32);
    id[32] = '\0';
    return 1;
}

/* ---- the file ---- */

static apr_status_t su_segr_cleanup(void *data)
{
    su_segr_t *r = data;

    if (r->big != NULL)
        su_util_wipe(r->big, (size_t)r->segsize + SU_CRYPTO_BLOCK);
    if (r->fd >= 0)
        close(r->fd);
    r->fd = -1;
    return APR_SUCCESS;
}

/* Exactly len bytes at at; a short read means the file is shorter. */
static su_err_t su_segr_pread(int fd, unsigned char *buf, size_t len, uint64_t at)
{
    while (len > 0) {
        ssize_t n = pread(fd, buf, len, (off_t)at);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 || su_fault("segr_read"))
            return SU_ERR_INTERNAL;
        if (n == 0)
            return SU_ERR_INTEGRITY;
        buf += n;
        len -= (size_t)n;
        at += (uint64_t)n;
    }
    return SU_OK;
}

int su_segr_size_ok(const unsigned char *header, size_t hlen, uint64_t file_size)
{
    uint64_t n;
    size_t last;

    if (hlen < SU_SEG_OFF_SIZE + 4 || !su_seg_is_v2(header, hlen))
        return 0;
    return su_seg_count(file_size, su_seg_header_size(header), &n, &last) == SU_OK;
}

static int su_segr_is_last(const su_segr_t *r, uint64_t i)
{
    return i + 1 == r->nseg;
}

static size_t su_segr_stored(const su_segr_t *r, uint64_t i)
{
    return su_segr_is_last(r, i) ? r->last_stored
                                 : (size_t)r->segsize + SU_SEG_OVERHEAD;
}

/* The stored length of segments first .. first + n - 1. */
static size_t su_segr_need(const su_segr_t *r, uint64_t first, uint64_t n)
{
    size_t need = 0;
    uint64_t i;

    for (i = first; i < first + n; i++)
        need += su_segr_stored(r, i);
    return need;
}

/* Room for them in w's buffer: made in the request's thread only (a pool
 * is not shared between threads), before w's job starts. */
static void su_segr_room(su_segr_work_t *w, uint64_t first, uint64_t n)
{
    size_t need = su_segr_need(w->r, first, n);

    if (w->ct_cap < need) {
        w->ct = apr_palloc(w->r->pool, need);
        w->ct_cap = need;
    }
}

/*
 * Segments first .. first + n - 1 into out, one after the other: all but
 * a file's last are exactly segsize bytes, so the plaintext is contiguous.
 * Read in one go into w's buffer (su_segr_room), then each verified (su_seg_unseal checks the tag before
 * it decrypts) from that copy.
 */
static su_err_t su_segr_run(su_segr_work_t *w, uint64_t first, uint64_t n,
                            unsigned char *out, size_t *got)
{
    su_segr_t *r = w->r;
    size_t off = 0, len;
    unsigned char *ct = w->ct;
    su_err_t rv;
    uint64_t i;

    *got = 0;
    rv = su_segr_pread(r->fd, ct, su_segr_need(r, first, n),
                       su_seg_offset(r->segsize, first));
    for (i = first; rv == SU_OK && i < first + n; i++) {
        size_t st = su_segr_stored(r, i);
        rv = su_seg_unseal(w->ctx, i, su_segr_is_last(r, i) ? SU_SEG_LAST : SU_SEG_MORE,
                           ct + off, st, out + *got, &len);
        off += st;
        *got += len;
    }
    if (rv != SU_OK) {
        su_util_wipe(out, *got);
        *got = 0;
    }
    return rv;
}

static su_err_t su_segr_worker(su_segr_t *r, su_segr_work_t *w)
{
    w->r = r;
    w->rv = SU_OK;
    return su_seg_ctx_create(r->pool, r->file, &w->ctx);
}

/* The last segment, verified as the last: the plaintext size. */
static su_err_t su_segr_check_last(su_segr_t *r)
{
    unsigned char *buf = apr_palloc(r->pool, (size_t)r->segsize + SU_CRYPTO_BLOCK);
    size_t got = 0;
    su_err_t rv;

    su_segr_room(&r->w[0], r->nseg - 1, 1);
    rv = su_segr_run(&r->w[0], r->nseg - 1, 1, buf, &got);

    su_util_wipe(buf, got);
    if (rv == SU_OK)
        r->plain = su_seg_plain_size(r->segsize, r->nseg, got);
    return rv;
}

static su_err_t su_segr_start(su_segr_t *r, const char *id,
                              const su_kek_t *const *keks, int nkeks)
{
    struct stat st;
    su_err_t rv;

    if (fstat(r->fd, &st) != 0)
        return SU_ERR_INTERNAL;
    if (!S_ISREG(st.st_mode))
        return SU_ERR_NOT_FOUND;
    rv = su_segr_pread(r->fd, r->header, SU_SEG_HEADER_LEN, 0);
    if (rv == SU_OK && (id == NULL || strlen(id) != 32 || !su_segr_hex_id(id)))
        rv = SU_ERR_INTEGRITY;   /* no id: no tag can be checked */
    if (rv == SU_OK)
        rv = su_seg_open(r->pool, keks, nkeks, id, r->header, &r->file, NULL);
    if (rv == SU_OK) {
        r->segsize = su_seg_size(r->file);
        rv = su_seg_count((uint64_t)st.st_size, r->segsize, &r->nseg, &r->last_stored);
    }
    if (rv == SU_OK)
        rv = su_segr_worker(r, &r->w[0]);
    if (rv == SU_OK)
        rv = su_segr_check_last(r);
    return rv;
}

su_err_t su_segr_open(apr_pool_t *p, int fd, const char *id,
                      const su_kek_t *const *keks, int nkeks,
                      su_segr_t **out, uint64_t *plain_size)
{
    apr_pool_t *sub;
    su_segr_t *r;
    su_err_t rv;

    *out = NULL;
    *plain_size = 0;
    if (apr_pool_create(&sub, p) != APR_SUCCESS) {
        close(fd);
        return SU_ERR_INTERNAL;
    }
    r = apr_pcalloc(sub, sizeof *r);
    r->pool = sub;
    r->fd = fd;
    r->big_seg = UINT64_MAX;
    apr_pool_cleanup_register(sub, r, su_segr_cleanup, apr_pool_cleanup_null);
    rv = su_segr_start(r, id, keks, nkeks);
    if (rv != SU_OK) {
        apr_pool_destroy(sub);
        return rv;
    }
    r->end = r->plain;
    *plain_size = r->plain;
    *out = r;
    return SU_OK;
}

su_err_t su_segr_range(su_segr_t *r, uint64_t off, uint64_t len)
{
    if (r->busy || off > r->plain || len > r->plain - off)
        return SU_ERR_INTERNAL;
    r->pos = off;
    r->end = off + len;
    return SU_OK;
}

/* ---- pieces ---- */

static void su_segr_job(void *arg)
{
    su_segr_work_t *w = arg;

    w->rv = su_segr_run(w, w->first, w->n, w->out, &w->got);
}

/* Threads of the reader's own, once the range left is worth them; their
 * cleanups, registered after everything they touch, run first. */
static void su_segr_threads(su_segr_t *r)
{
    int i;

    r->threads_tried = 1;
    for (i = 0; i < SU_SEGR_THREADS; i++) {
        if (i > 0 && su_segr_worker(r, &r->w[i]) != SU_OK)
            break;
        r->w[i].async = su_async_create(r->pool);
        if (r->w[i].async == NULL)
            break;
    }
}

static void su_segr_launch(su_segr_work_t *w)
{
    if (w->async != NULL)
        su_async_start(w->async, su_segr_job, w);
    else
        su_segr_job(w);
}

/* How many workers share n segments: those that have a thread (a second
 * one only with a segment of its own), else one in place. */
static int su_segr_split(su_segr_t *r, uint64_t n)
{
    int k = 0;

    while (k < SU_SEGR_THREADS && r->w[k].async != NULL && (uint64_t)k < n)
        k++;
    return k > 0 ? k : 1;
}

/* Segments s .. s + n - 1 split among the workers, into out. */
static void su_segr_spread(su_segr_t *r, uint64_t s, uint64_t n, unsigned char *out)
{
    int k = su_segr_split(r, n), i;
    uint64_t at = s;

    r->nwork = k;
    for (i = 0; i < k; i++) {
        su_segr_work_t *w = &r->w[i];
        w->first = at;
        w->n = n / (uint64_t)k + ((uint64_t)i < n % (uint64_t)k);
        w->out = out + (size_t)(at - s) * r->segsize;
        w->got = 0;
        su_segr_room(w, w->first, w->n);
        at += w->n;
    }
    for (i = 0; i < k; i++)
        su_segr_launch(&r->w[i]);
}

void su_segr_begin(su_segr_t *r, unsigned char *out)
{
    uint64_t s, last, n;

    r->busy = 1;
    r->out = out;
    r->nwork = 0;
    if (r->pos >= r->end)
        return;
    if (!r->threads_tried && r->end - r->pos > SU_SEGR_ASYNC_MIN)
        su_segr_threads(r);
    s = r->pos / r->segsize;
    last = (r->end - 1) / r->segsize;
    n = (SU_SEGR_PIECE_ROOM - SU_CRYPTO_BLOCK) / r->segsize;
    r->piece_seg = s;
    if (n == 0)
        return;              /* a segment larger than a piece: at end */
    if (n > last - s + 1)
        n = last - s + 1;
    su_segr_spread(r, s, n, out);
}

/* A segment larger than a piece: decrypted once into big, given in parts. */
static su_err_t su_segr_big_part(su_segr_t *r, unsigned char *out, size_t *len)
{
    uint64_t s = r->piece_seg, start = s * r->segsize, end;
    su_err_t rv = SU_OK;

    if (r->big == NULL)
        r->big = apr_palloc(r->pool, (size_t)r->segsize + SU_CRYPTO_BLOCK);
    if (r->big_seg != s) {
        r->big_seg = UINT64_MAX;
        su_segr_room(&r->w[0], s, 1);
        rv = su_segr_run(&r->w[0], s, 1, r->big, &r->big_len);
        if (rv != SU_OK)
            return rv;
        r->big_seg = s;
    }
    end = start + r->big_len < r->end ? start + r->big_len : r->end;
    *len = end - r->pos < SU_SEGR_PIECE_ROOM - 32 ? (size_t)(end - r->pos)
                                                  : SU_SEGR_PIECE_ROOM - 32;
    memcpy(out, r->big + (r->pos - start), *len);
    return SU_OK;
}

/* The piece's plaintext: its range's bytes moved to the start of out,
 * and whatever else it wrote wiped. */
static size_t su_segr_trim(su_segr_t *r, size_t written)
{
    uint64_t start = r->piece_seg * r->segsize;
    size_t skip = (size_t)(r->pos - start), len;

    if (written <= skip) {
        su_util_wipe(r->out, written);
        return 0;
    }
    len = written - skip;
    if (len > r->end - r->pos)
        len = (size_t)(r->end - r->pos);
    if (skip > 0)
        memmove(r->out, r->out + skip, len);
    su_util_wipe(r->out + len, written - len);
    return len;
}

static su_err_t su_segr_collect(su_segr_t *r, size_t *written)
{
    su_err_t rv = SU_OK;
    int i;

    *written = 0;
    for (i = 0; i < r->nwork; i++) {
        if (r->w[i].async != NULL)
            su_async_wait(r->w[i].async);
        if (r->w[i].rv != SU_OK && rv == SU_OK)
            rv = r->w[i].rv;
    }
    for (i = 0; i < r->nwork; i++)
        *written += r->w[i].got;
    if (rv != SU_OK) {
        for (i = 0; i < r->nwork; i++)
            su_util_wipe(r->w[i].out, r->w[i].got);
        *written = 0;
    }
    return rv;
}

su_err_t su_segr_end(su_segr_t *r, size_t *len)
{
    size_t written = 0;
    su_err_t rv = SU_OK;

    *len = 0;
    if (!r->busy)
        return SU_ERR_INTERNAL;
    r->busy = 0;
    if (r->pos >= r->end && r->nwork == 0)
        return SU_OK;
    if (r->nwork == 0)
        rv = su_segr_big_part(r, r->out, len);
    else if ((rv = su_segr_collect(r, &written)) == SU_OK)
        *len = su_segr_trim(r, written);
    if (rv != SU_OK) {
        r->pos = r->end;     /* nothing more after a failure */
        return rv;
    }
    r->pos += *len;
    return SU_OK;
}

void su_segr_nonce_hex(const su_segr_t *r, char out[2 * SU_SEG_NONCE_LEN + 1])
{
    su_util_hex(out, r->header + SU_SEG_OFF_NONCE, SU_SEG_NONCE_LEN);
}

apr_pool_t *su_segr_pool(const su_segr_t *r)
{
    return r->pool;
}

void su_segr_close(su_segr_t *r)
{
    if (r != NULL)
        apr_pool_destroy(r->pool);
}
