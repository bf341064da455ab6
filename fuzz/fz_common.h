/*
 * Helpers shared by the libFuzzer targets: a fresh APR allocator per input
 * (so that memory freed at the end of one input is really freed and
 * AddressSanitizer sees any later use of it), a private temporary directory
 * for the targets that need files, and an invariant check that aborts.
 */
#ifndef FZ_COMMON_H
#define FZ_COMMON_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <apr_general.h>
#include <apr_pools.h>
#include <apr_allocator.h>

#define FZ_CHECK(cond, what)                                              \
    do {                                                                  \
        if (!(cond)) {                                                    \
            fprintf(stderr, "invariant failed: %s (%s) at %s:%d\n",       \
                    (what), #cond, __FILE__, __LINE__);                   \
            abort();                                                      \
        }                                                                 \
    } while (0)

static apr_pool_t *fz_root __attribute__((unused));
static char fz_dir[256] __attribute__((unused));
static const char *const fz_dir_files[] __attribute__((unused)) = { "in", "key", NULL };

static inline void fz_apr_init(void)
{
    if (fz_root != NULL)
        return;
    FZ_CHECK(apr_initialize() == APR_SUCCESS, "apr_initialize");
    FZ_CHECK(apr_pool_create(&fz_root, NULL) == APR_SUCCESS, "root pool");
}

/* A pool on an allocator of its own: destroying the pool returns every
 * block to malloc, instead of keeping it on a free list for reuse. */
static inline apr_pool_t *fz_pool_new(void)
{
    apr_allocator_t *al;
    apr_pool_t *p;

    FZ_CHECK(apr_allocator_create(&al) == APR_SUCCESS, "allocator");
    FZ_CHECK(apr_pool_create_ex(&p, NULL, NULL, al) == APR_SUCCESS, "pool");
    apr_allocator_owner_set(al, p);
    return p;
}

static inline void fz_dir_remove(void)
{
    char path[512];
    int i;

    if (fz_dir[0] == '\0')
        return;
    for (i = 0; fz_dir_files[i] != NULL; i++) {
        snprintf(path, sizeof path, "%s/%s", fz_dir, fz_dir_files[i]);
        unlink(path);
    }
    rmdir(fz_dir);
    fz_dir[0] = '\0';
}

/* One directory per process, made on first use, removed at exit. */
static inline const char *fz_path(const char *name)
{
    static char path[512];

    if (fz_dir[0] == '\0') {
        const char *t = getenv("TMPDIR");
        snprintf(fz_dir, sizeof fz_dir, "%s/su-fuzz-XXXXXX",
                 t != NULL && *t != '\0' ? t : "/tmp");
        FZ_CHECK(mkdtemp(fz_dir) != NULL, "mkdtemp");
        atexit(fz_dir_remove);
    }
    snprintf(path, sizeof path, "%s/%s", fz_dir, name);
    return path;
}

/* Replace path with exactly these bytes and this mode. */
static inline void fz_write_file(const char *path, const void *data, size_t len,
                          mode_t mode)
{
    const unsigned char *b = data;
    int fd;

    unlink(path);
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    FZ_CHECK(fd >= 0, "create temp file");
    FZ_CHECK(fchmod(fd, mode) == 0, "chmod temp file");
    while (len > 0) {
        ssize_t w = write(fd, b, len);
        if (w < 0 && errno == EINTR)
            continue;
        FZ_CHECK(w > 0, "write temp file");
        b += w;
        len -= (size_t)w;
    }
    FZ_CHECK(close(fd) == 0, "close temp file");
}

/* Well-formed UTF-8 (RFC 3629), written apart from the code under test. */
static inline int fz_utf8_valid(const unsigned char *s, size_t n)
{
    size_t i = 0;

    while (i < n) {
        unsigned long cp;
        size_t k, j;
        unsigned char c = s[i];

        if (c < 0x80) {
            i++;
            continue;
        }
        if ((c & 0xe0) == 0xc0) {
            k = 2;
            cp = c & 0x1f;
        } else if ((c & 0xf0) == 0xe0) {
            k = 3;
            cp = c & 0x0f;
        } else if ((c & 0xf8) == 0xf0) {
            k = 4;
            cp = c & 0x07;
        } else {
            return 0;
        }
        if (i + k > n)
            return 0;
        for (j = 1; j < k; j++) {
            if ((s[i + j] & 0xc0) != 0x80)
                return 0;
            cp = (cp << 6) | (s[i + j] & 0x3f);
        }
        if ((k == 2 && cp < 0x80) || (k == 3 && cp < 0x800) ||
            (k == 4 && cp < 0x10000) || cp > 0x10ffff ||
            (cp >= 0xd800 && cp <= 0xdfff))
            return 0;
        i += k;
    }
    return 1;
}

/* 64-bit FNV-1a, to compare long callback traces cheaply. */
#define FZ_FNV_INIT 0xcbf29ce484222325ULL
static inline unsigned long long fz_fnv(unsigned long long h, const void *data,
                                 size_t len)
{
    const unsigned char *b = data;
    size_t i;

    for (i = 0; i < len; i++) {
        h ^= b[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

/* The libFuzzer entry points. A target whose one-time set-up is
 * fz_apr_init() alone says FZ_INITIALIZE_APR for its LLVMFuzzerInitialize. */
int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FZ_INITIALIZE_APR                                   \
    int LLVMFuzzerInitialize(int *argc, char ***argv)       \
    {                                                       \
        (void)argc;                                         \
        (void)argv;                                         \
        fz_apr_init();                                      \
        return 0;                                           \
    }

/* The edits a mutate mode applies to a valid file: 4 bytes each, an op
 * (xor, set, truncate, append) and where; len grows up to cap. */
static inline size_t fz_apply_edits(unsigned char *f, size_t len, size_t cap,
                             const uint8_t *e, size_t n)
{
    size_t i;

    for (i = 0; i + 4 <= n; i += 4) {
        unsigned op = e[i] & 3;
        size_t off = ((size_t)(e[i] >> 2) << 16 | (size_t)e[i + 1] << 8 | e[i + 2]);
        unsigned char v = e[i + 3];

        if (op == 2) {                       /* truncate */
            len = len == 0 ? 0 : off % (len + 1);
        } else if (op == 3) {                /* append v+1 copies of v */
            size_t k = (size_t)v + 1;
            if (len + k > cap)
                k = cap - len;
            memset(f + len, v, k);
            len += k;
        } else if (len > 0) {
            off %= len;
            f[off] = op == 0 ? (unsigned char)(f[off] ^ v) : v;
        }
    }
    return len;
}

/* A copy of a valid file orig with the edits of d[0..n) applied (malloc'd,
 * *len its length); *changed: it differs from orig. */
static inline unsigned char *fz_edited_copy(const unsigned char *orig, size_t olen,
                                            const uint8_t *d, size_t n,
                                            size_t *len, int *changed)
{
    size_t cap = olen + 256 * (n / 4 + 1);
    unsigned char *f = malloc(cap);

    FZ_CHECK(f != NULL, "malloc");
    memcpy(f, orig, olen);
    *len = fz_apply_edits(f, olen, cap, d, n);
    *changed = *len != olen || memcmp(f, orig, *len) != 0;
    return f;
}

#endif
