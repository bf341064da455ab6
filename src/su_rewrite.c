/*
 * Stored files rewritten in place (su_rewrite.h): conversion from format
 * version 1 to 2, and the header-only rewrap of version 2, both through the
 * store's atomic write under an exclusive lock on the file.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "su_format.h"
#include "su_rewrite.h"
#include "su_seal.h"
#include "su_seg.h"
#include "su_store.h"
#include "su_util.h"

/* Where a version 1 header keeps its IV (docs/format.md). */
#define SU_REWRITE_V1_IV 88

/* A stored file opened for rewriting: locked, its first bytes read. */
typedef struct su_rewrite_file {
    apr_pool_t *pool;
    const char *path;
    int fd;
    struct stat st;
    unsigned char head[SU_SEG_HEADER_LEN];
    size_t headlen;
    su_store_file_t *copy;      /* the new file, renamed over the old one */
} su_rewrite_file_t;

static apr_status_t su_rewrite_fd_cleanup(void *data)
{
    su_rewrite_file_t *f = data;

    if (f->fd >= 0)
        close(f->fd);
    f->fd = -1;
    return APR_SUCCESS;
}

static su_err_t su_rewrite_pread(int fd, unsigned char *buf, size_t len,
                                 uint64_t at, size_t *got)
{
    *got = 0;
    while (*got < len) {
        ssize_t r = pread(fd, buf + *got, len - *got, (off_t)(at + *got));
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return SU_ERR_INTERNAL;
        if (r == 0)
            break;
        *got += (size_t)r;
    }
    return SU_OK;
}

/*
 * One rewriter per file at a time: the lock also makes a leftover copy one
 * of a crashed run (su_store_replace removes it), and the path must still
 * name the file locked (nothing was renamed over it in between).
 */
static su_err_t su_rewrite_open(apr_pool_t *p, const char *path,
                                su_rewrite_file_t **out)
{
    su_rewrite_file_t *f = apr_pcalloc(p, sizeof *f);
    struct stat now;

    f->pool = p;
    f->path = path;
    f->fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (f->fd < 0)
        return errno == ENOENT || errno == ENOTDIR ? SU_ERR_NOT_FOUND
                                                   : SU_ERR_INTERNAL;
    apr_pool_cleanup_register(p, f, su_rewrite_fd_cleanup, apr_pool_cleanup_null);
    if (fstat(f->fd, &f->st) != 0 || !S_ISREG(f->st.st_mode))
        return SU_ERR_NOT_FOUND;
    if (flock(f->fd, LOCK_EX | LOCK_NB) != 0 || stat(path, &now) != 0
        || now.st_ino != f->st.st_ino || now.st_dev != f->st.st_dev)
        return SU_ERR_INTERNAL;
    *out = f;
    return su_rewrite_pread(f->fd, f->head, sizeof f->head, 0, &f->headlen);
}

int su_rewrite_is_v2(const char *path)
{
    unsigned char magic[SU_SEG_MAGIC_LEN];
    size_t got = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK), rv = -1;

    if (fd < 0)
        return -1;
    if (su_rewrite_pread(fd, magic, sizeof magic, 0, &got) == SU_OK)
        rv = su_seg_is_v2(magic, got);
    close(fd);
    return rv;
}

static su_err_t su_rewrite_out(void *ctx, const unsigned char *buf, size_t len)
{
    const char *err = NULL;
    return su_store_write(ctx, buf, len, &err);
}

/* The copy, then (after the caller wrote it in full) its atomic rename. */
static su_err_t su_rewrite_begin(su_rewrite_file_t *f)
{
    const char *err = NULL;
    return su_store_replace(f->pool, f->path, f->st.st_uid, f->st.st_gid,
                            &f->copy, &err);
}

static su_err_t su_rewrite_end(su_rewrite_file_t *f)
{
    const char *err = NULL;
    su_err_t rv = su_store_flush(f->copy, 1, &err);

    return rv == SU_OK ? su_store_commit(f->copy, 1, &err) : rv;
}

/* ---- version 1 to 2 ---- */

/* The KEK that opens a version 1 header (the new file stays under it). */
static su_err_t su_rewrite_v1_kek(su_rewrite_file_t *f, const su_kek_t *const *keks,
                                  int nkeks, const su_kek_t **kek)
{
    su_dec_t *dec = NULL;

    if (f->headlen < SU_FMT_HEADER_LEN
        || memcmp(f->head, SU_FMT_MAGIC, SU_FMT_MAGIC_LEN) != 0)
        return SU_ERR_INTEGRITY;
    return su_fmt_dec_create(f->pool, keks, nkeks, f->head, &dec, kek);
}

/* The verified plaintext of the old file into the new one's writer. */
static su_err_t su_rewrite_v1_copy(su_rewrite_file_t *f, su_fmt_reader_t *rd,
                                   const su_kek_t *kek, const char *id)
{
    const unsigned char *data;
    su_seal_t *s = NULL;
    size_t len = 0;
    /* the v1 IV becomes the nonce: the metadata's iv stays right */
    su_err_t rv = su_seal_create(f->pool, kek, id, SU_SEG_SIZE_DEFAULT,
                                 f->head + SU_REWRITE_V1_IV, 0,
                                 su_rewrite_out, f->copy, &s);

    while (rv == SU_OK) {
        rv = su_fmt_reader_next(rd, &data, &len);
        if (rv != SU_OK || len == 0)
            break;
        rv = su_seal_write(s, data, len);
    }
    return rv == SU_OK ? su_seal_finish(s) : rv;
}

su_err_t su_rewrite_convert(apr_pool_t *p, const char *path, const char *id,
                            const su_kek_t *const *keks, int nkeks, int dry,
                            su_rewrite_outcome_t *outcome)
{
    su_rewrite_file_t *f = NULL;
    const su_kek_t *kek = NULL;
    su_fmt_reader_t *rd = NULL;
    uint64_t size = 0;
    su_err_t rv;

    *outcome = SU_REWRITE_DONE;
    if (!su_store_valid_id(id))
        return SU_ERR_INTERNAL;
    rv = su_rewrite_open(p, path, &f);
    if (rv == SU_OK && su_seg_is_v2(f->head, f->headlen)) {
        *outcome = SU_REWRITE_SKIPPED;
        return SU_OK;
    }
    if (rv == SU_OK)
        rv = su_rewrite_v1_kek(f, keks, nkeks, &kek);
    /* all of it verified before any plaintext is read */
    if (rv == SU_OK)
        rv = su_fmt_reader_open(p, path, keks, nkeks, &rd, &size);
    if (rv != SU_OK || dry)
        return rv;
    rv = su_rewrite_begin(f);
    if (rv == SU_OK)
        rv = su_rewrite_v1_copy(f, rd, kek, id);
    su_fmt_reader_close(rd);
    return rv == SU_OK ? su_rewrite_end(f) : rv;
}

/* ---- the header of version 2 ---- */

/* Every segment read, verified, and (copy != NULL) copied unchanged. */
static su_err_t su_rewrite_segments(su_rewrite_file_t *f, su_seg_ctx_t *c,
                                    uint32_t segsize, int copy)
{
    size_t stride = (size_t)segsize + SU_SEG_OVERHEAD, last = 0, got, n;
    unsigned char *in = apr_palloc(f->pool, stride + SU_CRYPTO_BLOCK);
    unsigned char *out = apr_palloc(f->pool, stride + SU_CRYPTO_BLOCK);
    uint64_t nseg = 0, i;
    const char *err = NULL;
    su_err_t rv = su_seg_count((uint64_t)f->st.st_size, segsize, &nseg, &last);

    for (i = 0; rv == SU_OK && i < nseg; i++) {
        int end = i + 1 == nseg;
        size_t len = end ? last : stride;
        rv = su_rewrite_pread(f->fd, in, len, su_seg_offset(segsize, i), &got);
        if (rv == SU_OK && got != len)
            rv = SU_ERR_INTEGRITY;
        if (rv == SU_OK)
            rv = su_seg_unseal(c, i, end ? SU_SEG_LAST : SU_SEG_MORE, in, len, out, &n);
        if (rv == SU_OK && copy)
            rv = su_store_write(f->copy, in, len, &err);
    }
    su_util_wipe(out, stride + SU_CRYPTO_BLOCK);
    return rv;
}

su_err_t su_rewrite_rewrap2(apr_pool_t *p, const char *path, const char *id,
                            const su_kek_t *const *keks, int nkeks,
                            const su_kek_t *newkek, int dry,
                            su_rewrite_outcome_t *outcome)
{
    unsigned char header[SU_SEG_HEADER_LEN];
    const char *err = NULL;
    su_rewrite_file_t *f = NULL;
    su_seg_file_t *sf = NULL;
    su_seg_ctx_t *c = NULL;
    su_err_t rv;

    *outcome = SU_REWRITE_DONE;
    if (!su_store_valid_id(id))
        return SU_ERR_INTERNAL;
    rv = su_rewrite_open(p, path, &f);
    if (rv == SU_OK && (f->headlen < SU_SEG_HEADER_LEN || !su_seg_is_v2(f->head, f->headlen)))
        rv = SU_ERR_INTEGRITY;
    if (rv == SU_OK
        && memcmp(f->head + SU_SEG_OFF_KEYID, newkek->id, SU_KEY_ID_LEN) == 0) {
        *outcome = SU_REWRITE_SKIPPED;
        return SU_OK;
    }
    if (rv == SU_OK)
        rv = su_seg_open(p, keks, nkeks, id, f->head, &sf, NULL);
    if (rv == SU_OK)
        rv = su_seg_ctx_create(p, sf, &c);
    if (rv == SU_OK)
        rv = su_seg_rewrap(p, keks, nkeks, id, f->head, newkek, header);
    if (rv == SU_OK && !dry)
        rv = su_rewrite_begin(f);
    if (rv == SU_OK && !dry)
        rv = su_store_write(f->copy, header, sizeof header, &err);
    if (rv == SU_OK)
        rv = su_rewrite_segments(f, c, su_seg_size(sf), !dry);
    if (rv != SU_OK || dry)
        return rv;
    return su_rewrite_end(f);
}
