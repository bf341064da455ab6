/*
 * The on-disk format, version 1 (su_format.h, docs/format.md): the header,
 * and the whole-file operations used by the files handler and the
 * command-line tool (verify, decrypt, the streaming reader, rewrap), over
 * the cryptography of su_crypto.c.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/rand.h>

#include "su_format.h"
#include "su_async.h"
#include "su_crypto.h"
#include "su_fault.h"
#include "su_seg.h"
#include "su_segr.h"
#include "su_store.h"
#include "su_util.h"

#define SU_FMT_OFF_KEYID   8
#define SU_FMT_OFF_WRAPPED 16
#define SU_FMT_OFF_IV      88
#define SU_FMT_CHUNK       (1024u * 1024u)
/* a reader's piece: one chunk, plus the blocks CBC may hold back and release */
typedef char su_fmt_read_max_ok[SU_FMT_READ_MAX >= SU_FMT_CHUNK + 2 * SU_FMT_BLOCK
                                ? 1 : -1];
#define SU_FMT_OVERHEAD    (SU_FMT_HEADER_LEN + SU_FMT_TAG_LEN)
/* the layout's fields hold what the cryptography makes */
typedef char su_fmt_layout_ok[SU_FMT_OFF_WRAPPED + SU_FMT_WRAPPED_LEN == SU_FMT_OFF_IV
                              && SU_FMT_OFF_IV + SU_FMT_IV_LEN == SU_FMT_HEADER_LEN
                              ? 1 : -1];

/* ---- the header ---- */

static int su_fmt_header_magic_ok(const unsigned char *h)
{
    return memcmp(h, SU_FMT_MAGIC, SU_FMT_MAGIC_LEN) == 0;
}

/*
 * Find the KEK that opens a header: ids must match and the RFC 3394
 * integrity check must pass (two keys could share an id prefix).
 */
static su_err_t su_fmt_unwrap_header(const su_kek_t *const *keks, int nkeks,
                                     const unsigned char *h,
                                     unsigned char datakey[SU_FMT_DATAKEY_LEN],
                                     const su_kek_t **used)
{
    int i;

    if (!su_fmt_header_magic_ok(h))
        return SU_ERR_INTEGRITY;
    for (i = 0; i < nkeks; i++) {
        size_t len = 0;
        if (keks[i] == NULL ||
            memcmp(keks[i]->id, h + SU_FMT_OFF_KEYID, SU_KEY_ID_LEN) != 0)
            continue;
        if (su_crypto_unwrap(keks[i]->key, h + SU_FMT_OFF_WRAPPED,
                             SU_FMT_WRAPPED_LEN, datakey, &len) == SU_OK &&
            len == SU_FMT_DATAKEY_LEN) {
            *used = keks[i];
            return SU_OK;
        }
        su_util_wipe(datakey, SU_FMT_DATAKEY_LEN);
    }
    return SU_ERR_INTEGRITY;
}

/*
 * A new file's header: a fresh data key and IV from the CSPRNG, the data
 * key wrapped under kek. The data key is held only for this.
 */
su_err_t su_fmt_enc_create(apr_pool_t *p, const su_kek_t *kek, su_enc_t **out,
                           unsigned char header[SU_FMT_HEADER_LEN])
{
    unsigned char datakey[SU_FMT_DATAKEY_LEN];
    su_err_t rv = SU_ERR_INTERNAL;

    *out = NULL;
    if (!su_fault("rand") && RAND_bytes(datakey, SU_FMT_DATAKEY_LEN) == 1
        && RAND_bytes(header + SU_FMT_OFF_IV, SU_FMT_IV_LEN) == 1) {
        memcpy(header, SU_FMT_MAGIC, SU_FMT_MAGIC_LEN);
        memcpy(header + SU_FMT_OFF_KEYID, kek->id, SU_KEY_ID_LEN);
        rv = su_crypto_wrap(kek->key, datakey, SU_FMT_DATAKEY_LEN,
                            header + SU_FMT_OFF_WRAPPED);
    }
    if (rv == SU_OK)
        rv = su_enc_start(p, datakey, header + SU_FMT_OFF_IV, header,
                          SU_FMT_HEADER_LEN, out);
    su_util_wipe(datakey, sizeof datakey);
    return rv;
}

su_err_t su_fmt_dec_create(apr_pool_t *p, const su_kek_t *const *keks, int nkeks,
                           const unsigned char header[SU_FMT_HEADER_LEN],
                           su_dec_t **out, const su_kek_t **kek)
{
    unsigned char datakey[SU_FMT_DATAKEY_LEN];
    const su_kek_t *used = NULL;
    su_err_t rv;

    *out = NULL;
    rv = su_fmt_unwrap_header(keks, nkeks, header, datakey, &used);
    if (rv != SU_OK)
        return rv;
    rv = su_dec_start(p, datakey, header + SU_FMT_OFF_IV, header,
                      SU_FMT_HEADER_LEN, out);
    su_util_wipe(datakey, sizeof datakey);
    if (rv == SU_OK && kek != NULL)
        *kek = used;
    return rv;
}

/* ---- whole files ---- */

typedef struct su_fmt_file {
    apr_pool_t *pool;
    int fd;
    uint64_t size;
    uint64_t ctlen;
    unsigned char header[SU_FMT_HEADER_LEN];
    unsigned char tag[SU_FMT_TAG_LEN];
    /* the last two cipher blocks (see su_dec_tail_size) */
    unsigned char tail[2 * SU_FMT_BLOCK];
    unsigned char *buf;     /* SU_FMT_CHUNK bytes of ciphertext, when read */
    struct stat st0;        /* when first opened: any write since shows */
    int st0_set;
    int no_map;             /* read(2), never mmap(2) */
} su_fmt_file_t;

static apr_status_t su_fmt_fd_cleanup(void *data)
{
    su_fmt_file_t *f = data;

    if (f->fd >= 0)
        close(f->fd);
    f->fd = -1;
    return APR_SUCCESS;
}

/*
 * Read exactly len bytes, at offset at (pread) or, with at < 0, from the
 * current offset: a short read means the file shrank under us.
 */
static su_err_t su_fmt_read_at(int fd, unsigned char *buf, size_t len, off_t at)
{
    while (len > 0) {
        ssize_t r = at < 0 ? read(fd, buf, len) : pread(fd, buf, len, at);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return SU_ERR_INTERNAL;
        if (r == 0)
            return SU_ERR_INTEGRITY;
        buf += r;
        len -= (size_t)r;
        if (at >= 0)
            at += r;
    }
    return SU_OK;
}

static su_err_t su_fmt_read_exact(int fd, unsigned char *buf, size_t len)
{
    return su_fmt_read_at(fd, buf, len, -1);
}

/* Header, whole cipher blocks (at least one), tag. */
static int su_fmt_size_ok(uint64_t size)
{
    return size >= SU_FMT_MIN_FILE && (size - SU_FMT_OVERHEAD) % SU_FMT_BLOCK == 0;
}

/* The size alone tells a truncated or extended file. */
static su_err_t su_fmt_check_size(su_fmt_file_t *f)
{
    struct stat st;

    if (fstat(f->fd, &st) != 0)
        return SU_ERR_INTERNAL;
    if (!S_ISREG(st.st_mode))
        return SU_ERR_NOT_FOUND;
    if (!su_fmt_size_ok((uint64_t)st.st_size))
        return SU_ERR_INTEGRITY;
    f->size = (uint64_t)st.st_size;
    f->ctlen = f->size - SU_FMT_OVERHEAD;
    if (!f->st0_set) {
        f->st0 = st;
        f->st0_set = 1;
    }
    return SU_OK;
}

static int su_fmt_ts_eq(const struct timespec *a, const struct timespec *b)
{
    return a->tv_sec == b->tv_sec && a->tv_nsec == b->tv_nsec;
}

/*
 * Has the file been written to since it was opened? The kernel moves mtime
 * and ctime on every write before the data changes, so bytes read before a
 * check that finds them unmoved are the bytes that were verified. ctime
 * also moves when the file loses a link (a DELETE, or a rewrap renamed over
 * it), which leaves the data alone; resetting mtime (utimensat) moves ctime
 * without dropping a link, and is caught.
 */
static int su_fmt_unchanged(const su_fmt_file_t *f)
{
    struct stat st;

    if (fstat(f->fd, &st) != 0 || (uint64_t)st.st_size != f->size
        || !su_fmt_ts_eq(&st.st_mtim, &f->st0.st_mtim))
        return 0;
    return su_fmt_ts_eq(&st.st_ctim, &f->st0.st_ctim) || st.st_nlink < f->st0.st_nlink;
}

/* A stored file's descriptor, or why there is none. */
static su_err_t su_fmt_open_fd(const char *path, int *fd)
{
    *fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (*fd >= 0)
        return SU_OK;
    return errno == ENOENT || errno == ENOTDIR ? SU_ERR_NOT_FOUND : SU_ERR_INTERNAL;
}

/* The format version of the file on fd by its magic: 2, else 1 (a file
 * with neither magic fails as a v1 file does). */
static int su_fmt_fd_version(int fd)
{
    unsigned char m[SU_SEG_MAGIC_LEN];
    ssize_t n;

    do {
        n = pread(fd, m, sizeof m, 0);
    } while (n < 0 && errno == EINTR);
    return n == (ssize_t)sizeof m && su_seg_is_v2(m, sizeof m) ? 2 : 1;
}

/* A v1 file on fd (which it owns from here) in a subpool of p that owns
 * the fd and the buffer. */
static su_err_t su_fmt_file_adopt(apr_pool_t *p, int fd, su_fmt_file_t **out)
{
    apr_pool_t *sub;
    su_fmt_file_t *f;
    su_err_t rv;

    *out = NULL;
    if (apr_pool_create(&sub, p) != APR_SUCCESS) {
        close(fd);
        return SU_ERR_INTERNAL;
    }
    f = apr_pcalloc(sub, sizeof *f);
    f->pool = sub;
    f->fd = fd;
    apr_pool_cleanup_register(sub, f, su_fmt_fd_cleanup, apr_pool_cleanup_null);
    rv = su_fmt_check_size(f);
    if (rv == SU_OK)
        rv = su_fmt_read_exact(f->fd, f->header, SU_FMT_HEADER_LEN);
    if (rv != SU_OK) {
        apr_pool_destroy(sub);
        return rv;
    }
    *out = f;
    return SU_OK;
}

/* Open a stored v1 file in a subpool of p that owns the fd and the buffer. */
static su_err_t su_fmt_file_open(apr_pool_t *p, const char *path,
                                 su_fmt_file_t **out)
{
    int fd;
    su_err_t rv = su_fmt_open_fd(path, &fd);

    *out = NULL;
    return rv == SU_OK ? su_fmt_file_adopt(p, fd, out) : rv;
}

/* The ciphertext buffer, made the first time a file is read, not mapped. */
static unsigned char *su_fmt_file_buf(su_fmt_file_t *f)
{
    if (f->buf == NULL)
        f->buf = apr_palloc(f->pool, SU_FMT_CHUNK + SU_FMT_BLOCK);
    return f->buf;
}

static void su_fmt_tail_push(unsigned char tail[2 * SU_FMT_BLOCK],
                             const unsigned char *b, size_t len)
{
    if (len >= 2 * SU_FMT_BLOCK) {
        memcpy(tail, b + len - 2 * SU_FMT_BLOCK, 2 * SU_FMT_BLOCK);
        return;
    }
    memmove(tail, tail + len, 2 * SU_FMT_BLOCK - len);
    memcpy(tail + 2 * SU_FMT_BLOCK - len, b, len);
}

/*
 * Pass 1 for a plain verification, over mapped windows of the file: the MAC
 * reads the page cache directly instead of a copy of it, and each window is
 * unmapped before the next, so memory stays bounded. Returns -1 if the
 * file cannot be mapped at all (the caller then reads it), else 0 with the
 * outcome in *rv. Stored files are never truncated in place (a rewrap
 * renames), which mapping relies on.
 */
#define SU_FMT_WINDOW (4u * 1024u * 1024u)

static int su_fmt_mac_mapped(su_fmt_file_t *f, su_dec_t *dec, su_err_t *rv)
{
    uint64_t ct0 = SU_FMT_HEADER_LEN, ct1 = SU_FMT_HEADER_LEN + f->ctlen;
    uint64_t win;

    memset(f->tail, 0, SU_FMT_BLOCK);
    memcpy(f->tail + SU_FMT_BLOCK, f->header + SU_FMT_OFF_IV, SU_FMT_IV_LEN);
    for (win = 0; win < f->size; win += SU_FMT_WINDOW) {
        size_t wlen = f->size - win < SU_FMT_WINDOW ? (size_t)(f->size - win)
                                                    : SU_FMT_WINDOW;
        uint64_t a = win > ct0 ? win : ct0, b = win + wlen < ct1 ? win + wlen : ct1;
        unsigned char *m = mmap(NULL, wlen, PROT_READ, MAP_SHARED | MAP_POPULATE,
                                f->fd, (off_t)win);

        if (m == MAP_FAILED)
            return win == 0 ? -1 : (*rv = SU_ERR_INTERNAL, 0);
        if (a < b) {
            su_dec_mac_update(dec, m + (a - win), (size_t)(b - a));
            su_fmt_tail_push(f->tail, m + (a - win), (size_t)(b - a));
        }
        /* the tag: the bytes after the ciphertext that fall in this window */
        a = win > ct1 ? win : ct1;
        b = win + wlen;
        if (a < b)
            memcpy(f->tag + (a - ct1), m + (a - win), (size_t)(b - a));
        munmap(m, wlen);
    }
    *rv = su_dec_mac_verify(dec, f->tag);
    return 0;
}

/*
 * Pass 1 from just after the header: the ciphertext goes to the MAC (and,
 * for a rewrap, to a new MAC and a copy), the tag is read and compared. The
 * fd's offset must be at SU_FMT_HEADER_LEN.
 */
static su_err_t su_fmt_mac_pass(su_fmt_file_t *f, su_dec_t *dec,
                                EVP_MAC_CTX *copy_mac, su_store_file_t *copy)
{
    const char *err = NULL;
    uint64_t left = f->ctlen;
    su_err_t rv;

    if (copy_mac == NULL && copy == NULL && !f->no_map
        && su_fmt_mac_mapped(f, dec, &rv) == 0)
        return rv;

    memset(f->tail, 0, SU_FMT_BLOCK);
    memcpy(f->tail + SU_FMT_BLOCK, f->header + SU_FMT_OFF_IV, SU_FMT_IV_LEN);
    while (left > 0) {
        size_t n = left < SU_FMT_CHUNK ? (size_t)left : SU_FMT_CHUNK;
        rv = su_fmt_read_exact(f->fd, su_fmt_file_buf(f), n);
        if (rv != SU_OK)
            return rv;
        su_dec_mac_update(dec, f->buf, n);
        su_fmt_tail_push(f->tail, f->buf, n);
        if (copy_mac != NULL && EVP_MAC_update(copy_mac, f->buf, n) != 1)
            return SU_ERR_INTERNAL;
        if (copy != NULL && (rv = su_store_write(copy, f->buf, n, &err)) != SU_OK)
            return rv;
        left -= n;
    }
    rv = su_fmt_read_exact(f->fd, f->tag, SU_FMT_TAG_LEN);
    if (rv != SU_OK)
        return rv;
    return su_dec_mac_verify(dec, f->tag);
}

/*
 * Open a stored file and verify all of it (tag, then padding from the last
 * two blocks): on success the exact plaintext size is known and not one
 * byte of plaintext exists yet.
 */
static su_err_t su_fmt_open_verified(apr_pool_t *p, int fd,
                                     const su_kek_t *const *keks, int nkeks,
                                     int flags, su_fmt_file_t **fo,
                                     su_dec_t **deco, uint64_t *plain_size)
{
    su_fmt_file_t *f;
    su_dec_t *dec = NULL;
    su_err_t rv;

    *plain_size = 0;
    rv = su_fmt_file_adopt(p, fd, &f);
    if (rv != SU_OK)
        return rv;
    f->no_map = (flags & SU_FMT_NO_MAP) != 0;
    rv = su_fmt_dec_create(f->pool, keks, nkeks, f->header, &dec, NULL);
    if (rv == SU_OK)
        rv = su_fmt_mac_pass(f, dec, NULL, NULL);
    if (rv == SU_OK)
        rv = su_dec_tail_size(dec, f->tail, f->ctlen, plain_size);
    if (rv != SU_OK) {
        apr_pool_destroy(f->pool);
        return rv;
    }
    *fo = f;
    *deco = dec;
    return SU_OK;
}

su_err_t su_fmt_file_verify(apr_pool_t *p, const char *path,
                            const su_kek_t *const *keks, int nkeks,
                            uint64_t *plain_size)
{
    return su_fmt_file_verify_id(p, path, NULL, keks, nkeks, plain_size);
}

/* The id a v2 file is read under: the one given, else its name's (in
 * named), else NULL (no v2 file then verifies). */
static const char *su_fmt_id_for(const char *path, const char *id,
                                 char named[SU_SEG_ID_LEN * 2 + 1])
{
    if (id != NULL)
        return id;
    return su_segr_path_id(path, named) ? named : NULL;
}

static su_err_t su_fmt_reader_adopt(apr_pool_t *p, int fd, int version,
                                    const char *id,
                                    const su_kek_t *const *keks, int nkeks,
                                    int flags, su_fmt_reader_t **out,
                                    uint64_t *plain_size);

/* Every segment of a v2 file verified (and decrypted, to a wiped buffer). */
static su_err_t su_fmt_verify_v2(apr_pool_t *p, int fd, const char *id,
                                 const su_kek_t *const *keks, int nkeks,
                                 uint64_t *plain_size)
{
    su_fmt_reader_t *rd;
    const unsigned char *data;
    size_t len = 0;
    su_err_t rv = su_fmt_reader_adopt(p, fd, 2, id, keks, nkeks, 0, &rd,
                                      plain_size);

    if (rv != SU_OK)
        return rv;
    do {
        rv = su_fmt_reader_next(rd, &data, &len);
    } while (rv == SU_OK && len > 0);
    su_fmt_reader_close(rd);
    if (rv != SU_OK)
        *plain_size = 0;
    return rv;
}

su_err_t su_fmt_file_verify_id(apr_pool_t *p, const char *path, const char *id,
                               const su_kek_t *const *keks, int nkeks,
                               uint64_t *plain_size)
{
    char named[SU_SEG_ID_LEN * 2 + 1];
    su_fmt_file_t *f;
    su_dec_t *dec;
    int fd;
    su_err_t rv = su_fmt_open_fd(path, &fd);

    *plain_size = 0;
    if (rv != SU_OK)
        return rv;
    if (su_fmt_fd_version(fd) == 2)
        return su_fmt_verify_v2(p, fd, su_fmt_id_for(path, id, named), keks,
                                nkeks, plain_size);
    rv = su_fmt_open_verified(p, fd, keks, nkeks, 0, &f, &dec, plain_size);
    if (rv == SU_OK)
        apr_pool_destroy(f->pool);
    return rv;
}

void su_fmt_header_iv_hex(const unsigned char header[SU_FMT_HEADER_LEN],
                          char out[SU_FMT_IV_HEX_LEN + 1])
{
    su_util_hex(out, header + SU_FMT_OFF_IV, SU_FMT_IV_LEN);
}

/* A v2 file's nonce, from a header of the size and magic of one. */
static su_err_t su_fmt_fd_nonce_hex(int fd, char out[SU_FMT_IV_HEX_LEN + 1])
{
    unsigned char h[SU_SEG_HEADER_LEN];
    struct stat st;
    su_err_t rv = SU_ERR_INTEGRITY;

    if (fstat(fd, &st) != 0)
        rv = SU_ERR_INTERNAL;
    else if (su_fmt_read_at(fd, h, sizeof h, 0) == SU_OK
             && su_segr_size_ok(h, sizeof h, (uint64_t)st.st_size)) {
        su_util_hex(out, h + SU_SEG_OFF_NONCE, SU_SEG_NONCE_LEN);
        rv = SU_OK;
    }
    close(fd);
    return rv;
}

su_err_t su_fmt_file_iv_hex(apr_pool_t *p, const char *path,
                            char out[SU_FMT_IV_HEX_LEN + 1])
{
    su_fmt_file_t *f;
    int fd;
    su_err_t rv = su_fmt_open_fd(path, &fd);

    if (rv != SU_OK)
        return rv;
    if (su_fmt_fd_version(fd) == 2)
        return su_fmt_fd_nonce_hex(fd, out);
    rv = su_fmt_file_adopt(p, fd, &f);
    if (rv != SU_OK)
        return rv;
    if (su_fmt_header_magic_ok(f->header))
        su_fmt_header_iv_hex(f->header, out);
    else
        rv = SU_ERR_INTEGRITY;
    apr_pool_destroy(f->pool);
    return rv;
}

int su_fmt_have_key(const su_kek_t *const *keks, int nkeks,
                    const unsigned char id[SU_KEY_ID_LEN])
{
    int i;

    for (i = 0; i < nkeks; i++)
        if (keks[i] != NULL && memcmp(keks[i]->id, id, SU_KEY_ID_LEN) == 0)
            return 1;
    return 0;
}

/* What an open regular file shows: its first bytes and its size. */
static void su_fmt_look_fd(int fd, uint64_t size, su_fmt_head_t *h)
{
    /* as far as a v2 header's segment size, which its size rules need */
    unsigned char head[SU_SEG_OFF_SIZE + 4];
    ssize_t n;

    do {
        n = pread(fd, head, sizeof head, 0);
    } while (n < 0 && errno == EINTR);
    if (n < SU_FMT_MAGIC_LEN + SU_KEY_ID_LEN)
        h->look = SU_FMT_TOO_SHORT;
    else if (su_seg_is_v2(head, (size_t)n))
        h->look = su_segr_size_ok(head, (size_t)n, size) ? SU_FMT_LOOKS_STORED
                                                         : SU_FMT_BAD_SIZE;
    else if (!su_fmt_header_magic_ok(head))
        h->look = SU_FMT_BAD_MAGIC;
    else
        h->look = su_fmt_size_ok(size) ? SU_FMT_LOOKS_STORED : SU_FMT_BAD_SIZE;
    h->has_key_id = h->look == SU_FMT_LOOKS_STORED || h->look == SU_FMT_BAD_SIZE;
    if (h->has_key_id)
        memcpy(h->key_id, head + SU_FMT_OFF_KEYID, SU_KEY_ID_LEN);
}

void su_fmt_file_look(const char *path, su_fmt_head_t *h)
{
    struct stat st;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);

    memset(h, 0, sizeof *h);
    h->look = SU_FMT_UNREADABLE;
    if (fd < 0) {
        h->open_errno = errno;
        if (errno == ENOENT || errno == ENOTDIR)
            h->look = SU_FMT_NO_FILE;
        return;
    }
    if (fstat(fd, &st) != 0)
        h->open_errno = errno;
    else if (!S_ISREG(st.st_mode))
        h->look = SU_FMT_NOT_REGULAR;
    else
        su_fmt_look_fd(fd, (uint64_t)st.st_size, h);
    close(fd);
}

/* ---- a reader for streaming answers ---- */

struct su_fmt_reader {
    su_segr_t *v2;          /* a v2 file: everything below is unused */
    su_fmt_file_t *f;
    su_dec_t *dec;
    uint64_t left;          /* ciphertext bytes not yet decrypted */
    uint64_t pos;           /* file offset of the next of them */
    int done;
    int no_map;             /* mapping failed: read(2) from pos on */
    unsigned char *map;     /* the mapped window holding pos, if any */
    uint64_t map_at;
    size_t map_len;
    uint64_t plain;         /* its plaintext size */
    unsigned char *out;     /* SU_FMT_READ_MAX bytes for su_fmt_reader_next */
    su_async_t *async;      /* decrypts ahead (su_fmt_reader_begin) */
    int async_tried;
    int job_busy;           /* begun, not yet ended */
    unsigned char *job_out;
    size_t job_len;
    su_err_t job_rv;
};

static void su_fmt_reader_unmap(su_fmt_reader_t *rd)
{
    if (rd->map != NULL)
        munmap(rd->map, rd->map_len);
    rd->map = NULL;
}

static apr_status_t su_fmt_reader_cleanup(void *data)
{
    su_fmt_reader_t *rd = data;
    su_fmt_reader_unmap(rd);
    if (rd->out)
        su_util_wipe(rd->out, SU_FMT_READ_MAX);
    return APR_SUCCESS;
}

/*
 * The next ciphertext piece (at most n bytes) straight from a mapped window
 * of the page cache, like pass 1: no copy before decryption. NULL when the
 * file cannot be mapped; the caller then reads from rd->pos instead.
 */
static const unsigned char *su_fmt_reader_mapped(su_fmt_reader_t *rd, size_t *n)
{
    su_fmt_file_t *f = rd->f;
    uint64_t end;

    if (rd->no_map)
        return NULL;
    if (rd->map == NULL || rd->pos >= rd->map_at + rd->map_len) {
        su_fmt_reader_unmap(rd);
        rd->map_at = rd->pos - rd->pos % SU_FMT_WINDOW;
        rd->map_len = f->size - rd->map_at < SU_FMT_WINDOW
                      ? (size_t)(f->size - rd->map_at) : SU_FMT_WINDOW;
        rd->map = mmap(NULL, rd->map_len, PROT_READ, MAP_SHARED | MAP_POPULATE,
                       f->fd, (off_t)rd->map_at);
        if (rd->map == MAP_FAILED) {
            rd->map = NULL;
            rd->no_map = 1;
            return NULL;
        }
    }
    end = rd->map_at + rd->map_len;
    if (*n > end - rd->pos)
        *n = (size_t)(end - rd->pos);
    return rd->map + (rd->pos - rd->map_at);
}

/*
 * Both passes read through the same open descriptor, so a file renamed over
 * this one meanwhile (a rewrap) does not change what is read; a change of
 * size in between is refused.
 */
su_err_t su_fmt_reader_open(apr_pool_t *p, const char *path,
                            const su_kek_t *const *keks, int nkeks,
                            su_fmt_reader_t **out, uint64_t *plain_size)
{
    return su_fmt_reader_open_ex(p, path, keks, nkeks, 0, out, plain_size);
}

su_err_t su_fmt_reader_open_ex(apr_pool_t *p, const char *path,
                               const su_kek_t *const *keks, int nkeks, int flags,
                               su_fmt_reader_t **out, uint64_t *plain_size)
{
    return su_fmt_reader_open_id(p, path, NULL, keks, nkeks, flags, out,
                                 plain_size);
}

/*
 * One descriptor for both the version and the reading, so that a file
 * renamed over this one in between (a rewrap, a conversion to v2) cannot
 * be read as the version of the other.
 */
su_err_t su_fmt_reader_open_id(apr_pool_t *p, const char *path, const char *id,
                               const su_kek_t *const *keks, int nkeks, int flags,
                               su_fmt_reader_t **out, uint64_t *plain_size)
{
    char named[SU_SEG_ID_LEN * 2 + 1];
    int fd;
    su_err_t rv = su_fmt_open_fd(path, &fd);

    *out = NULL;
    *plain_size = 0;
    if (rv != SU_OK)
        return rv;
    return su_fmt_reader_adopt(p, fd, su_fmt_fd_version(fd),
                               su_fmt_id_for(path, id, named), keks, nkeks,
                               flags, out, plain_size);
}

static su_err_t su_fmt_reader_v2(apr_pool_t *p, int fd, const char *id,
                                 const su_kek_t *const *keks, int nkeks,
                                 su_fmt_reader_t **out, uint64_t *plain_size)
{
    su_segr_t *r;
    su_err_t rv = su_segr_open(p, fd, id, keks, nkeks, &r, plain_size);

    if (rv != SU_OK)
        return rv;
    *out = apr_pcalloc(su_segr_pool(r), sizeof **out);
    (*out)->v2 = r;
    return SU_OK;
}

/* A reader of the file on fd (owned from here) of this version. */
static su_err_t su_fmt_reader_adopt(apr_pool_t *p, int fd, int version,
                                    const char *id,
                                    const su_kek_t *const *keks, int nkeks,
                                    int flags, su_fmt_reader_t **out,
                                    uint64_t *plain_size)
{
    su_fmt_reader_t *rd;
    su_fmt_file_t *f;
    su_dec_t *dec;
    uint64_t before;
    su_err_t rv;

    *out = NULL;
    if (version == 2)
        return su_fmt_reader_v2(p, fd, id, keks, nkeks, out, plain_size);
    rv = su_fmt_open_verified(p, fd, keks, nkeks, flags, &f, &dec, plain_size);
    if (rv != SU_OK)
        return rv;
    before = f->size;
    rv = su_fmt_check_size(f);
    if (rv == SU_OK && f->size != before)
        rv = SU_ERR_INTEGRITY;
    /* the tail check moved the CBC state: start pass 2 from the file's IV */
    if (rv == SU_OK)
        rv = su_dec_rewind(dec);
    if (rv != SU_OK) {
        *plain_size = 0;
        apr_pool_destroy(f->pool);
        return rv;
    }
    rd = apr_pcalloc(f->pool, sizeof(*rd));
    rd->f = f;
    rd->dec = dec;
    rd->left = f->ctlen;
    rd->plain = *plain_size;
    rd->pos = SU_FMT_HEADER_LEN;
    rd->no_map = f->no_map;
    apr_pool_cleanup_register(f->pool, rd, su_fmt_reader_cleanup,
                              apr_pool_cleanup_null);
    *out = rd;
    return SU_OK;
}

su_err_t su_fmt_reader_next_into(su_fmt_reader_t *rd, unsigned char *out,
                                 size_t *len)
{
    size_t outlen = 0, fin = 0;
    su_err_t rv = SU_OK;

    *len = 0;
    if (rd->v2 != NULL) {
        su_segr_begin(rd->v2, out);
        return su_segr_end(rd->v2, len);
    }
    while (!rd->done && outlen == 0) {
        if (rd->left > 0) {
            size_t n = rd->left < SU_FMT_CHUNK ? (size_t)rd->left : SU_FMT_CHUNK;
            const unsigned char *in = su_fmt_reader_mapped(rd, &n);

            if (in == NULL) {
                rv = su_fmt_read_at(rd->f->fd, su_fmt_file_buf(rd->f), n,
                                    (off_t)rd->pos);
                in = rd->f->buf;
            }
            if (rv == SU_OK)
                rv = su_dec_update(rd->dec, in, n, out, &outlen);
            /* Nothing written in place since verification may go out: the
             * check comes after the bytes were read (by the decryption, for
             * a mapped window). */
            if (rv == SU_OK && !su_fmt_unchanged(rd->f))
                rv = SU_ERR_INTEGRITY;
            rd->left -= n;
            rd->pos += n;
        }
        if (rv == SU_OK && rd->left == 0) {
            rv = su_dec_final(rd->dec, out + outlen, &fin);
            outlen += fin;
            rd->done = 1;
        }
        if (rv != SU_OK) {
            su_util_wipe(out, SU_FMT_READ_MAX);
            rd->done = 1;
            return rv;
        }
    }
    *len = outlen;
    return SU_OK;
}

static apr_pool_t *su_fmt_reader_pool(const su_fmt_reader_t *rd)
{
    return rd->v2 != NULL ? su_segr_pool(rd->v2) : rd->f->pool;
}

su_err_t su_fmt_reader_next(su_fmt_reader_t *rd, const unsigned char **data,
                            size_t *len)
{
    /* made on first use: callers of _into and begin/end bring their own */
    if (rd->out == NULL) {
        rd->out = apr_palloc(su_fmt_reader_pool(rd), SU_FMT_READ_MAX);
        if (rd->v2 != NULL)   /* v1's cleanup wipes it for v1 */
            apr_pool_cleanup_register(su_fmt_reader_pool(rd), rd,
                                      su_fmt_reader_cleanup, apr_pool_cleanup_null);
    }
    *data = rd->out;
    return su_fmt_reader_next_into(rd, rd->out, len);
}

su_err_t su_fmt_file_decrypt(apr_pool_t *p, const char *path,
                             const su_kek_t *const *keks, int nkeks,
                             su_fmt_sink_fn sink, void *ctx)
{
    return su_fmt_file_decrypt_id(p, path, NULL, keks, nkeks, sink, ctx);
}

su_err_t su_fmt_file_decrypt_id(apr_pool_t *p, const char *path, const char *id,
                                const su_kek_t *const *keks, int nkeks,
                                su_fmt_sink_fn sink, void *ctx)
{
    su_fmt_reader_t *rd;
    const unsigned char *data;
    uint64_t size;
    size_t len = 0;
    su_err_t rv = su_fmt_reader_open_id(p, path, id, keks, nkeks, 0, &rd, &size);

    if (rv != SU_OK)
        return rv;
    do {
        rv = su_fmt_reader_next(rd, &data, &len);
        if (rv == SU_OK && len > 0 && sink(ctx, data, len) != 0)
            rv = SU_ERR_ABORTED;
    } while (rv == SU_OK && len > 0);
    su_fmt_reader_close(rd);
    return rv;
}

/* Below this, a thread costs more than the decryption it would overlap. */
#define SU_FMT_ASYNC_MIN ((uint64_t)1024 * 1024)

static void su_fmt_reader_job(void *arg)
{
    su_fmt_reader_t *rd = arg;
    rd->job_rv = su_fmt_reader_next_into(rd, rd->job_out, &rd->job_len);
}

void su_fmt_reader_begin(su_fmt_reader_t *rd, unsigned char *out)
{
    if (rd->v2 != NULL) {
        su_segr_begin(rd->v2, out);
        return;
    }
    rd->job_out = out;
    rd->job_len = 0;
    rd->job_busy = 1;
    if (!rd->async_tried && rd->left > SU_FMT_ASYNC_MIN) {
        rd->async_tried = 1;
        /* its cleanup, registered last, runs first: the job ends before
         * the file, the map and the cipher go */
        rd->async = su_async_create(rd->f->pool);
    }
    if (rd->async != NULL)
        su_async_start(rd->async, su_fmt_reader_job, rd);
    else
        su_fmt_reader_job(rd);
}

su_err_t su_fmt_reader_end(su_fmt_reader_t *rd, size_t *len)
{
    *len = 0;
    if (rd->v2 != NULL)
        return su_segr_end(rd->v2, len);
    if (!rd->job_busy)
        return SU_ERR_INTERNAL;
    if (rd->async != NULL)
        su_async_wait(rd->async);
    rd->job_busy = 0;
    *len = rd->job_len;
    return rd->job_rv;
}

void su_fmt_reader_iv_hex(const su_fmt_reader_t *rd,
                          char out[SU_FMT_IV_HEX_LEN + 1])
{
    if (rd->v2 != NULL)
        su_segr_nonce_hex(rd->v2, out);
    else
        su_fmt_header_iv_hex(rd->f->header, out);
}

int su_fmt_reader_version(const su_fmt_reader_t *rd)
{
    return rd->v2 != NULL ? 2 : 1;
}

su_err_t su_fmt_reader_range(su_fmt_reader_t *rd, uint64_t off, uint64_t len)
{
    if (rd->v2 != NULL)
        return su_segr_range(rd->v2, off, len);
    /* v1: one tag over the whole file; the whole file or nothing */
    return off == 0 && len == rd->plain ? SU_OK : SU_ERR_INTERNAL;
}

void su_fmt_reader_close(su_fmt_reader_t *rd)
{
    if (rd && rd->v2)
        su_segr_close(rd->v2);
    else if (rd && rd->f)
        apr_pool_destroy(rd->f->pool);
}

/* ---- rewrap ---- */

typedef struct su_fmt_rewrap {
    su_fmt_file_t *f;
    su_store_file_t *copy;  /* the new file, renamed over the old one */
    EVP_MAC_CTX *mac_new;
    unsigned char header[SU_FMT_HEADER_LEN];
} su_fmt_rewrap_t;

static apr_status_t su_fmt_rewrap_cleanup(void *data)
{
    su_fmt_rewrap_t *rw = data;

    EVP_MAC_CTX_free(rw->mac_new);
    rw->mac_new = NULL;
    return APR_SUCCESS;
}

/*
 * New header: same magic and IV, the new key id and the same data key
 * wrapped under the new KEK. The data key is held only for this.
 */
static su_err_t su_fmt_rewrap_keys(su_fmt_rewrap_t *rw,
                                   const su_kek_t *const *keks, int nkeks,
                                   const su_kek_t *newkek)
{
    unsigned char datakey[SU_FMT_DATAKEY_LEN];
    const su_kek_t *used = NULL;
    su_err_t rv;

    rv = su_fmt_unwrap_header(keks, nkeks, rw->f->header, datakey, &used);
    if (rv != SU_OK)
        return rv;
    memcpy(rw->header, rw->f->header, SU_FMT_HEADER_LEN);
    memcpy(rw->header + SU_FMT_OFF_KEYID, newkek->id, SU_KEY_ID_LEN);
    rv = su_crypto_wrap(newkek->key, datakey, SU_FMT_DATAKEY_LEN,
                        rw->header + SU_FMT_OFF_WRAPPED);
    if (rv == SU_OK) {
        rw->mac_new = su_crypto_hmac_new(datakey);
        if (rw->mac_new == NULL ||
            EVP_MAC_update(rw->mac_new, rw->header, SU_FMT_HEADER_LEN) != 1)
            rv = SU_ERR_INTERNAL;
    }
    su_util_wipe(datakey, sizeof datakey);
    return rv;
}

/* Copy pass (old MAC checked, new MAC computed), then the store's atomic
 * replacement of the file. */
static su_err_t su_fmt_rewrap_write(su_fmt_rewrap_t *rw, su_dec_t *dec)
{
    unsigned char tag[SU_FMT_TAG_LEN];
    const char *err = NULL;
    uint64_t plain = 0;
    su_err_t rv;

    rv = su_store_write(rw->copy, rw->header, SU_FMT_HEADER_LEN, &err);
    if (rv == SU_OK)
        rv = su_fmt_mac_pass(rw->f, dec, rw->mac_new, rw->copy);
    if (rv == SU_OK)
        rv = su_dec_tail_size(dec, rw->f->tail, rw->f->ctlen, &plain);
    if (rv == SU_OK && !su_crypto_hmac_final(rw->mac_new, tag))
        rv = SU_ERR_INTERNAL;
    if (rv == SU_OK)
        rv = su_store_write(rw->copy, tag, SU_FMT_TAG_LEN, &err);
    if (rv == SU_OK)
        rv = su_store_flush(rw->copy, 1, &err);
    if (rv == SU_OK)
        rv = su_store_commit(rw->copy, 1, &err);
    return rv;
}

su_err_t su_fmt_file_rewrap(apr_pool_t *p, const char *path,
                            const su_kek_t *const *keks, int nkeks,
                            const su_kek_t *newkek)
{
    const char *err = NULL;
    su_fmt_rewrap_t *rw;
    su_fmt_file_t *f;
    su_dec_t *dec;
    struct stat st;
    su_err_t rv;

    rv = su_fmt_file_open(p, path, &f);
    if (rv != SU_OK)
        return rv;
    if (!su_fmt_header_magic_ok(f->header)) {
        apr_pool_destroy(f->pool);
        return SU_ERR_INTEGRITY;
    }
    if (memcmp(f->header + SU_FMT_OFF_KEYID, newkek->id, SU_KEY_ID_LEN) == 0) {
        apr_pool_destroy(f->pool);
        return SU_OK;
    }
    rw = apr_pcalloc(f->pool, sizeof *rw);
    rw->f = f;
    apr_pool_cleanup_register(f->pool, rw, su_fmt_rewrap_cleanup,
                              apr_pool_cleanup_null);
    /* One rewrapper per file at a time: the lock also makes a leftover
     * copy one of a crashed run, which su_store_replace removes. */
    if (flock(f->fd, LOCK_EX | LOCK_NB) != 0 || fstat(f->fd, &st) != 0)
        rv = SU_ERR_INTERNAL;
    if (rv == SU_OK)
        rv = su_fmt_dec_create(f->pool, keks, nkeks, f->header, &dec, NULL);
    if (rv == SU_OK)
        rv = su_fmt_rewrap_keys(rw, keks, nkeks, newkek);
    if (rv == SU_OK)
        rv = su_store_replace(f->pool, path, st.st_uid, st.st_gid, &rw->copy, &err);
    if (rv == SU_OK)
        rv = su_fmt_rewrap_write(rw, dec);
    apr_pool_destroy(f->pool);
    return rv;
}
