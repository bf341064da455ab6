/*
 * A resumable upload on disk (su_tus.h): its file of whole v2 segments,
 * the pending segment carried between requests, the end verified.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <apr_strings.h>
#include <openssl/evp.h>

#include "su_fault.h"
#include "su_store.h"
#include "su_tus.h"
#include "su_util.h"

/* sealed segments gathered before one write() */
#define SU_TUS_WBUF ((size_t)1 << 20)

struct su_tus {
    apr_pool_t *p;
    const char *dir;
    const char *id;
    const char *path;
    int fd;
    su_seg_file_t *file;
    su_seg_ctx_t *ctx;
    const su_kek_t *kek;           /* the one that opened the header */
    uint32_t segsize;
    apr_uint64_t length;
    apr_uint64_t offset;           /* plaintext bytes held (file + buf) */
    apr_off_t start_size;          /* the file's size when this request began */
    apr_off_t size;                /* the file's size once wbuf is written */
    unsigned char *buf;            /* the partial segment's plaintext */
    size_t fill;
    unsigned char *seg;            /* one sealed segment */
    unsigned char *wbuf;           /* sealed segments not yet written */
    size_t wlen;
};

static su_err_t su_tus_errno(apr_pool_t *p, const char *what, const char *path,
                             const char **err)
{
    int e = errno;
    *err = apr_psprintf(p, "%s %s: %s", what, path, strerror(e));
    return su_store_errno_kind(e);
}

static apr_status_t su_tus_cleanup(void *data)
{
    su_tus_t *t = data;

    if (t->buf)
        su_util_wipe(t->buf, t->segsize);
    if (t->fd >= 0)
        close(t->fd);
    t->fd = -1;
    return APR_SUCCESS;
}

/* ---- creation ---- */

static su_err_t su_tus_write_all(int fd, const unsigned char *b, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, b, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return SU_ERR_INTERNAL;
        b += w;
        n -= (size_t)w;
    }
    return SU_OK;
}

static su_err_t su_tus_new_file(apr_pool_t *p, const char *path,
                                const unsigned char *h, int sync,
                                const char **err)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    su_err_t rv;

    if (fd < 0)
        return su_tus_errno(p, "cannot create", path, err);
    rv = su_tus_write_all(fd, h, SU_SEG_HEADER_LEN);
    if (rv == SU_OK && sync && fsync(fd) != 0)
        rv = SU_ERR_INTERNAL;
    if (rv != SU_OK) {
        rv = su_tus_errno(p, "cannot write", path, err);
        unlink(path);
    }
    close(fd);
    return rv;
}

su_err_t su_tus_create(apr_pool_t *p, const su_kek_t *kek, const char *dir,
                       const char *id, uint32_t segsize, int sync,
                       const char **err)
{
    unsigned char h[SU_SEG_HEADER_LEN];
    const char *path = su_store_tus_path(p, dir, id);
    const char *sub = su_util_parent(p, path);
    su_seg_file_t *f;
    su_err_t rv;

    if (su_seg_create(p, kek, id, segsize, NULL, h, &f) != SU_OK) {
        *err = "cannot start encryption";
        return SU_ERR_INTERNAL;
    }
    if (mkdir(sub, 0700) != 0 && errno != EEXIST)
        return su_tus_errno(p, "cannot create directory", sub, err);
    rv = su_tus_new_file(p, path, h, sync, err);
    if (rv == SU_OK && sync && su_util_fsync_dir(sub) != 0)
        rv = su_tus_errno(p, "cannot fsync", sub, err);
    return rv;
}

/* ---- going on with an upload ---- */

static su_err_t su_tus_read_header(su_tus_t *t, const su_kek_t *const *keks,
                                   int nkeks, const char **err)
{
    unsigned char h[SU_SEG_HEADER_LEN];

    if (pread(t->fd, h, sizeof h, 0) != (ssize_t)sizeof h || !su_seg_is_v2(h, sizeof h)) {
        *err = apr_pstrcat(t->p, "no valid header in ", t->path, NULL);
        return SU_ERR_INTEGRITY;
    }
    if (su_seg_open(t->p, keks, nkeks, t->id, h, &t->file, &t->kek) != SU_OK) {
        *err = apr_pstrcat(t->p, "the header of ", t->path,
                           " does not verify under any key", NULL);
        return SU_ERR_INTEGRITY;
    }
    t->segsize = su_seg_size(t->file);
    if (su_seg_ctx_create(t->p, t->file, &t->ctx) != SU_OK) {
        *err = "cannot start encryption";
        return SU_ERR_INTERNAL;
    }
    return SU_OK;
}

/* The file cut back to offset's whole segments (a crash may have left more). */
static su_err_t su_tus_cut(su_tus_t *t, const char **err)
{
    struct stat st;
    apr_off_t want = (apr_off_t)su_seg_offset(t->segsize, t->offset / t->segsize);

    if (fstat(t->fd, &st) != 0)
        return su_tus_errno(t->p, "cannot stat", t->path, err);
    if (st.st_size < want) {
        *err = apr_psprintf(t->p, "%s is shorter (%" APR_OFF_T_FMT " bytes) than "
                            "its recorded offset implies (%" APR_OFF_T_FMT ")",
                            t->path, (apr_off_t)st.st_size, want);
        return SU_ERR_INTEGRITY;
    }
    if (st.st_size > want && ftruncate(t->fd, want) != 0)
        return su_tus_errno(t->p, "cannot truncate", t->path, err);
    t->start_size = t->size = want;
    return SU_OK;
}

static su_err_t su_tus_open_tail(su_tus_t *t, const unsigned char *tail,
                                 size_t taillen, const char **err)
{
    size_t want = (size_t)(t->offset % t->segsize), n = 0;

    if (want == 0 && taillen == 0)
        return SU_OK;
    if (taillen > (size_t)t->segsize + SU_CRYPTO_BLOCK + SU_SEG_OVERHEAD
        || su_seg_unseal(t->ctx, t->offset / t->segsize, SU_SEG_PENDING, tail,
                         taillen, t->seg, &n) != SU_OK
        || n != want) {
        *err = apr_pstrcat(t->p, "the pending segment of upload ", t->id,
                           " does not verify", NULL);
        return SU_ERR_INTEGRITY;
    }
    memcpy(t->buf, t->seg, n);
    su_util_wipe(t->seg, n);
    t->fill = n;
    return SU_OK;
}

su_err_t su_tus_open(apr_pool_t *p, const su_kek_t *const *keks, int nkeks,
                     const char *dir, const char *id, apr_uint64_t length,
                     apr_uint64_t offset, const unsigned char *tail,
                     size_t taillen, su_tus_t **out, const char **err)
{
    su_tus_t *t = apr_pcalloc(p, sizeof(*t));
    su_err_t rv;

    t->p = p;
    t->dir = dir;
    t->id = id;
    t->length = length;
    t->offset = offset;
    t->path = su_store_tus_path(p, dir, id);
    t->fd = open(t->path, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
    if (t->fd < 0) {
        rv = su_tus_errno(p, "cannot open", t->path, err);
        return errno == ENOENT ? SU_ERR_NOT_FOUND : rv;
    }
    apr_pool_cleanup_register(p, t, su_tus_cleanup, apr_pool_cleanup_null);
    if ((rv = su_tus_read_header(t, keks, nkeks, err)) != SU_OK)
        return rv;
    t->buf = apr_palloc(p, t->segsize);
    t->seg = apr_palloc(p, (size_t)t->segsize + SU_CRYPTO_BLOCK + SU_SEG_OVERHEAD);
    t->wbuf = apr_palloc(p, SU_TUS_WBUF);
    if ((rv = su_tus_cut(t, err)) != SU_OK
        || (rv = su_tus_open_tail(t, tail, taillen, err)) != SU_OK)
        return rv;
    *out = t;
    return SU_OK;
}

static su_err_t su_tus_flush(su_tus_t *t, const char **err)
{
    const unsigned char *b = t->wbuf;
    size_t n = t->wlen;

    while (n > 0) {
        ssize_t w = su_fault("write") ? (errno = ENOSPC, -1)
                    : pwrite(t->fd, b, n, t->size);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return su_tus_errno(t->p, "cannot write", t->path, err);
        b += w;
        n -= (size_t)w;
        t->size += w;
    }
    t->wlen = 0;
    return SU_OK;
}

/* The segment in buf sealed with flag at its index, queued for writing. */
static su_err_t su_tus_seal(su_tus_t *t, su_seg_flag_t flag, unsigned char *out,
                            size_t *outlen, const char **err)
{
    uint64_t index = (t->offset - t->fill) / t->segsize;

    if (su_seg_seal(t->ctx, index, flag, t->buf, t->fill, out, outlen) != SU_OK) {
        *err = "encryption failed";
        return SU_ERR_INTERNAL;
    }
    return SU_OK;
}

static su_err_t su_tus_segment_done(su_tus_t *t, const char **err)
{
    su_seg_flag_t flag = t->offset == t->length ? SU_SEG_LAST : SU_SEG_MORE;
    size_t n = 0;
    su_err_t rv;

    if (t->wlen + t->segsize + SU_CRYPTO_BLOCK + SU_SEG_OVERHEAD > SU_TUS_WBUF
        && (rv = su_tus_flush(t, err)) != SU_OK)
        return rv;
    if ((rv = su_tus_seal(t, flag, t->wbuf + t->wlen, &n, err)) != SU_OK)
        return rv;
    t->wlen += n;
    su_util_wipe(t->buf, t->fill);
    t->fill = 0;
    return SU_OK;
}

su_err_t su_tus_feed(su_tus_t *t, const unsigned char *buf, size_t len,
                     const char **err)
{
    su_err_t rv;

    if (len > t->length - t->offset) {
        *err = "more bytes than the upload's length";
        return SU_ERR_TOO_LARGE;
    }
    while (len > 0) {
        size_t n = t->segsize - t->fill;
        if (n > len)
            n = len;
        memcpy(t->buf + t->fill, buf, n);
        t->fill += n;
        t->offset += n;
        buf += n;
        len -= n;
        if (t->fill == t->segsize && (rv = su_tus_segment_done(t, err)) != SU_OK)
            return rv;
    }
    return SU_OK;
}

apr_uint64_t su_tus_offset(const su_tus_t *t)
{
    return t->offset;
}

static su_err_t su_tus_sync(su_tus_t *t, int sync, const char **err)
{
    su_err_t rv = su_tus_flush(t, err);

    if (rv == SU_OK && sync && (su_fault("fsync") || fsync(t->fd) != 0))
        return su_tus_errno(t->p, "cannot fsync", t->path, err);
    return rv;
}

su_err_t su_tus_pause(su_tus_t *t, int sync, const unsigned char **tail,
                      size_t *taillen, const char **err)
{
    unsigned char *out;
    su_err_t rv;

    *tail = NULL;
    *taillen = 0;
    if (t->fill > 0) {
        out = apr_palloc(t->p, (size_t)t->segsize + SU_CRYPTO_BLOCK + SU_SEG_OVERHEAD);
        if ((rv = su_tus_seal(t, SU_SEG_PENDING, out, taillen, err)) != SU_OK)
            return rv;
        *tail = out;
    }
    return su_tus_sync(t, sync, err);
}

su_err_t su_tus_undo(su_tus_t *t, const char **err)
{
    t->wlen = 0;
    if (ftruncate(t->fd, t->start_size) != 0)
        return su_tus_errno(t->p, "cannot truncate", t->path, err);
    t->size = t->start_size;
    return SU_OK;
}

/* ---- the end ---- */

/* Segment index of a file of nseg segments, verified, into the digest. */
static su_err_t su_tus_check_segment(su_tus_t *t, EVP_MD_CTX *md, uint64_t index,
                                     uint64_t nseg, size_t stored,
                                     unsigned char *plain)
{
    su_seg_flag_t flag = index + 1 == nseg ? SU_SEG_LAST : SU_SEG_MORE;
    off_t at = (off_t)su_seg_offset(t->segsize, index);
    size_t n = 0;
    su_err_t rv;

    if (pread(t->fd, t->seg, stored, at) != (ssize_t)stored)
        return SU_ERR_INTEGRITY;
    rv = su_seg_unseal(t->ctx, index, flag, t->seg, stored, plain, &n);
    if (rv == SU_OK && EVP_DigestUpdate(md, plain, n) != 1)
        rv = SU_ERR_INTERNAL;
    su_util_wipe(plain, n);
    return rv;
}

/* The whole file read back: every tag, and the plaintext's SHA-256. */
static su_err_t su_tus_verify(su_tus_t *t, unsigned char sha[32], const char **err)
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    uint64_t nseg = 0, i;
    size_t last = 0;
    su_err_t rv = SU_ERR_INTERNAL;

    if (md && EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1)
        rv = su_seg_count((uint64_t)t->size, t->segsize, &nseg, &last);
    for (i = 0; rv == SU_OK && i < nseg; i++)
        rv = su_tus_check_segment(t, md, i, nseg,
                                  i + 1 == nseg ? last : t->segsize + SU_SEG_OVERHEAD,
                                  t->buf);
    if (rv == SU_OK && EVP_DigestFinal_ex(md, sha, NULL) != 1)
        rv = SU_ERR_INTERNAL;
    EVP_MD_CTX_free(md);
    if (rv != SU_OK)
        *err = apr_pstrcat(t->p, "the finished upload ", t->path,
                           " does not verify", NULL);
    return rv;
}

static void su_tus_info(su_tus_t *t, const unsigned char sha[32],
                        su_upload_info_t *info)
{
    char *hex = apr_palloc(t->p, 65), *iv = apr_palloc(t->p, 33);

    su_util_hex(hex, sha, 32);
    su_util_hex(iv, su_seg_nonce(t->file), SU_SEG_NONCE_LEN);
    info->id = t->id;
    info->relpath = su_store_relpath(t->p, t->id);
    info->key_id_hex = t->kek->id_hex;
    info->iv_hex = iv;
    info->sha256_hex = hex;
    info->size = t->length;
}

su_err_t su_tus_finish(su_tus_t *t, int sync, su_upload_info_t *info,
                       const char **err)
{
    unsigned char sha[32];
    size_t n = 0;
    su_err_t rv;

    if (t->offset != t->length) {
        *err = "the upload is not complete";
        return SU_ERR_INTERNAL;
    }
    /* the last segment is partial (a full one was sealed LAST as it
     * filled), or the file is empty: then one empty LAST segment */
    if (t->fill > 0 || t->length == 0) {
        if ((rv = su_tus_flush(t, err)) != SU_OK
            || (rv = su_tus_seal(t, SU_SEG_LAST, t->wbuf, &n, err)) != SU_OK)
            return rv;
        t->wlen = n;
    }
    if ((rv = su_tus_sync(t, sync, err)) != SU_OK
        || (rv = su_tus_verify(t, sha, err)) != SU_OK)
        return rv;
    su_tus_info(t, sha, info);
    return SU_OK;
}

su_err_t su_tus_commit(su_tus_t *t, int sync, const char **err)
{
    const char *to = su_store_path(t->p, t->dir, t->id);

    if (su_fault("rename") || rename(t->path, to) != 0)
        return su_tus_errno(t->p, "cannot rename", t->path, err);
    if (sync && su_util_fsync_parent(t->p, to) != 0)
        return su_tus_errno(t->p, "cannot fsync the directory of", to, err);
    return SU_OK;
}

su_err_t su_tus_remove(apr_pool_t *p, const char *dir, const char *id,
                       int sync, const char **err)
{
    const char *path = su_store_tus_path(p, dir, id);

    if (unlink(path) != 0 && errno != ENOENT)
        return su_tus_errno(p, "cannot remove", path, err);
    if (sync && su_util_fsync_parent(p, path) != 0 && errno != ENOENT)
        return su_tus_errno(p, "cannot fsync the directory of", path, err);
    return SU_OK;
}
