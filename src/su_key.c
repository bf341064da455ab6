/*
 * Key-encryption keys: strict loading of key files and keeping the key bytes
 * in memory that is locked and excluded from core dumps.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include <apr_strings.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "su_key.h"
#include "su_util.h"

/* A valid file is 64 hex digits and "\r\n" at most; reading a little more
 * than that is enough to tell "too long" without reading a huge file. */
#define SU_KEY_HEX_LEN  (2 * SU_KEY_LEN)
#define SU_KEY_READ_MAX 200

static void su_key_fail(apr_pool_t *p, const char **err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void su_key_fail(apr_pool_t *p, const char **err, const char *fmt, ...)
{
    va_list ap;

    if (err == NULL)
        return;
    va_start(ap, fmt);
    *err = apr_pvsprintf(p, fmt, ap);
    va_end(ap);
}

static size_t su_key_region_len(void)
{
    long page = sysconf(_SC_PAGESIZE);
    size_t ps = page > 0 ? (size_t)page : 4096;

    return (sizeof(su_kek_t) + ps - 1) / ps * ps;
}

static apr_status_t su_key_region_cleanup(void *data)
{
    su_util_wipe(data, sizeof(su_kek_t));
    munmap(data, su_key_region_len());
    return APR_SUCCESS;
}

void su_key_relock(const su_kek_t *kek)
{
    /* locks are not inherited across fork(); the child takes its own */
    (void)mlock((void *)kek, su_key_region_len());
}

/*
 * Pages of their own so that they can be locked (never swapped) and left out
 * of core dumps; pool memory could share pages with anything.
 */
static su_kek_t *su_key_region_alloc(apr_pool_t *p)
{
    size_t len = su_key_region_len();
    void *mem = mmap(NULL, len, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

    if (mem == MAP_FAILED)
        return NULL;
    /* Unprivileged processes may hit RLIMIT_MEMLOCK; the key still works. */
    (void)mlock(mem, len);
#ifdef MADV_DONTDUMP
    (void)madvise(mem, len, MADV_DONTDUMP);
#endif
    memset(mem, 0, len);
    apr_pool_cleanup_register(p, mem, su_key_region_cleanup,
                              apr_pool_cleanup_null);
    return mem;
}

/* Read at most SU_KEY_READ_MAX bytes of an already checked key file. */
static su_err_t su_key_read_fd(apr_pool_t *p, int fd, const char *path,
                               unsigned char *buf, size_t *len,
                               const char **err)
{
    size_t n = 0;

    while (n < SU_KEY_READ_MAX) {
        ssize_t r = read(fd, buf + n, SU_KEY_READ_MAX - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            su_key_fail(p, err, "key file %s: cannot read: %s", path,
                        strerror(errno));
            return SU_ERR_INTERNAL;
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    *len = n;
    return SU_OK;
}

static su_err_t su_key_check_fd(apr_pool_t *p, int fd, const char *path,
                                const char **err)
{
    struct stat st;

    if (fstat(fd, &st) != 0) {
        su_key_fail(p, err, "key file %s: cannot stat: %s", path,
                    strerror(errno));
        return SU_ERR_INTERNAL;
    }
    if (!S_ISREG(st.st_mode)) {
        su_key_fail(p, err, "key file %s is not a regular file", path);
        return SU_ERR_INTERNAL;
    }
    if (st.st_mode & 077) {
        su_key_fail(p, err, "key file %s is accessible by group or others "
                    "(mode %04o); chmod 0400 it", path,
                    (unsigned)(st.st_mode & 07777));
        return SU_ERR_INTERNAL;
    }
    return SU_OK;
}

static su_err_t su_key_read_file(apr_pool_t *p, const char *path,
                                 unsigned char *buf, size_t *len,
                                 const char **err)
{
    su_err_t rv;
    /* O_NONBLOCK: a FIFO planted at the path must not hang start-up. */
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY |
                  O_NONBLOCK);

    if (fd < 0) {
        if (errno == ELOOP)
            su_key_fail(p, err, "key file %s is a symbolic link; name the "
                        "key file itself", path);
        else
            su_key_fail(p, err, "key file %s: cannot open: %s", path,
                        strerror(errno));
        return SU_ERR_INTERNAL;
    }
    rv = su_key_check_fd(p, fd, path, err);
    if (rv == SU_OK)
        rv = su_key_read_fd(p, fd, path, buf, len, err);
    close(fd);
    return rv;
}

/* Exactly 64 hex digits, then nothing, "\n" or "\r\n". */
static su_err_t su_key_check_text(apr_pool_t *p, const char *path,
                                  const unsigned char *buf, size_t len,
                                  const char **err)
{
    size_t i;
    size_t hexlen = len;

    if (len == 0) {
        su_key_fail(p, err, "key file %s is empty; it must hold 64 hex "
                    "digits (a 256-bit key)", path);
        return SU_ERR_INTERNAL;
    }
    if (hexlen > 0 && buf[hexlen - 1] == '\n')
        hexlen--;
    if (hexlen > 0 && buf[hexlen - 1] == '\r' && hexlen + 1 == len)
        hexlen--;
    for (i = 0; i < hexlen && i < SU_KEY_HEX_LEN; i++) {
        if (su_util_hexval(buf[i]) < 0) {
            su_key_fail(p, err, "key file %s: must hold 64 hex digits (a "
                        "256-bit key); found a non-hex character at "
                        "offset %lu", path, (unsigned long)i);
            return SU_ERR_INTERNAL;
        }
    }
    if (hexlen != SU_KEY_HEX_LEN) {
        su_key_fail(p, err, "key file %s: must hold 64 hex digits (a 256-bit "
                    "key) and at most a final newline; found %s%lu "
                    "characters", path, len >= SU_KEY_READ_MAX ? "over " : "",
                    (unsigned long)hexlen);
        return SU_ERR_INTERNAL;
    }
    return SU_OK;
}

su_err_t su_key_load(apr_pool_t *p, const char *path, su_kek_t **out,
                     const char **err)
{
    unsigned char buf[SU_KEY_READ_MAX];
    size_t len = 0, i;
    su_kek_t *kek = NULL;
    su_err_t rv;

    *out = NULL;
    if (err != NULL)
        *err = NULL;
    rv = su_key_read_file(p, path, buf, &len, err);
    if (rv == SU_OK)
        rv = su_key_check_text(p, path, buf, len, err);
    if (rv == SU_OK) {
        kek = su_key_region_alloc(p);
        if (kek == NULL) {
            su_key_fail(p, err, "key file %s: cannot allocate key memory: %s",
                        path, strerror(errno));
            rv = SU_ERR_INTERNAL;
        }
    }
    if (rv == SU_OK) {
        for (i = 0; i < SU_KEY_LEN; i++)
            kek->key[i] = (unsigned char)(su_util_hexval(buf[2 * i]) << 4 |
                                           su_util_hexval(buf[2 * i + 1]));
        su_key_compute_id(kek);
        kek->path = apr_pstrdup(p, path);
        *out = kek;
    }
    su_util_wipe(buf, sizeof buf);
    return rv;
}

static int su_key_write_all(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t w = write(fd, buf, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        buf += w;
        len -= (size_t)w;
    }
    return 0;
}



static su_err_t su_key_write_new(apr_pool_t *p, const char *path,
                                 const char *text, const char **err)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                  0400);

    if (fd < 0) {
        if (errno == EEXIST)
            su_key_fail(p, err, "key file %s already exists; refusing to "
                        "overwrite it", path);
        else
            su_key_fail(p, err, "key file %s: cannot create: %s", path,
                        strerror(errno));
        return SU_ERR_INTERNAL;
    }
    /* The umask could have made it even stricter, never looser; be exact. */
    if (fchmod(fd, 0400) != 0 ||
        su_key_write_all(fd, text, strlen(text)) != 0 || fsync(fd) != 0) {
        su_key_fail(p, err, "key file %s: cannot write: %s", path,
                    strerror(errno));
        close(fd);
        unlink(path);
        return SU_ERR_INTERNAL;
    }
    if (close(fd) != 0 || su_util_fsync_parent(p, path) != 0) {
        su_key_fail(p, err, "key file %s: cannot write: %s", path,
                    strerror(errno));
        unlink(path);
        return SU_ERR_INTERNAL;
    }
    return SU_OK;
}

su_err_t su_key_generate_file(apr_pool_t *p, const char *path, const char **err)
{
    unsigned char raw[SU_KEY_LEN];
    char text[SU_KEY_HEX_LEN + 2];
    su_err_t rv;

    if (err != NULL)
        *err = NULL;
    if (RAND_bytes(raw, sizeof raw) != 1) {
        su_key_fail(p, err, "key file %s: the random generator failed", path);
        return SU_ERR_INTERNAL;
    }
    su_util_hex(text, raw, sizeof raw);
    su_util_wipe(raw, sizeof raw);
    text[SU_KEY_HEX_LEN] = '\n';
    text[SU_KEY_HEX_LEN + 1] = '\0';
    rv = su_key_write_new(p, path, text, err);
    su_util_wipe(text, sizeof text);
    return rv;
}

void su_key_compute_id(su_kek_t *kek)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;

    if (EVP_Digest(kek->key, SU_KEY_LEN, md, &mdlen, EVP_sha256(), NULL) != 1
        || mdlen < SU_KEY_ID_LEN) {
        /* Only on a broken library; an all-zero id matches no real key. */
        memset(md, 0, sizeof md);
    }
    memcpy(kek->id, md, SU_KEY_ID_LEN);
    su_util_hex(kek->id_hex, kek->id, SU_KEY_ID_LEN);
}
