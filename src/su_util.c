/* Small helpers shared by the core's files (su_util.h). */
#include "su_util.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include <apr_lib.h>
#include <apr_strings.h>
#include <openssl/crypto.h>

#ifdef SU_WIPE_CHECKED
/*
 * Sanitizer and fuzz builds: OPENSSL_cleanse is assembly and explicit_bzero
 * runs inside the C library, so AddressSanitizer checks neither, and a wipe
 * of the wrong length goes unseen. memset is intercepted and checked; called
 * through a volatile pointer, the compiler cannot drop it as a dead store.
 */
static void *(*volatile su_util_memset)(void *, int, size_t) = memset;
#endif

void su_util_wipe(void *p, size_t n)
{
#if defined(SU_WIPE_CHECKED)
    su_util_memset(p, 0, n);
#elif defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 25))
    explicit_bzero(p, n);
#else
    OPENSSL_cleanse(p, n);
#endif
}

void su_util_hex(char *out, const unsigned char *in, size_t n)
{
    static const char digits[] = "0123456789abcdef";
    size_t i;

    for (i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 0x0f];
    }
    out[2 * n] = '\0';
}

int su_util_hexval(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

void su_util_printable(char *s, size_t len, int ascii_only)
{
    size_t i;

    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f || (ascii_only && c > 0x7f))
            s[i] = '?';
    }
}

int su_util_fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int rc, e;

    if (fd < 0)
        return -1;
    rc = fsync(fd);
    e = errno;
    close(fd);
    errno = e;
    return rc;
}

const char *su_util_parent(apr_pool_t *p, const char *path)
{
    const char *slash = strrchr(path, '/');

    return slash == NULL ? "." :
           slash == path ? "/" :
           apr_pstrndup(p, path, (apr_size_t)(slash - path));
}

int su_util_fsync_parent(apr_pool_t *p, const char *path)
{
    return su_util_fsync_dir(su_util_parent(p, path));
}

/* One more decimal digit c on *n, which stays at most max (9 or more);
 * 0 if c is no digit or the number would pass max. */
static int su_util_digit(apr_uint64_t *n, char c, apr_uint64_t max)
{
    unsigned d;

    if (!apr_isdigit(c))
        return 0;
    d = (unsigned)(c - '0');
    if (*n > (max - d) / 10)
        return 0;
    *n = *n * 10 + d;
    return 1;
}

/* The digits at the start of s, up to APR_INT64_MAX; the first byte past
 * them, or NULL if there are none or too many. */
static const char *su_util_digits(const char *s, apr_uint64_t *v)
{
    apr_uint64_t n = 0;

    if (s == NULL || !apr_isdigit(*s))
        return NULL;
    for (; apr_isdigit(*s); s++)
        if (!su_util_digit(&n, *s, (apr_uint64_t)APR_INT64_MAX))
            return NULL;
    *v = n;
    return s;
}

int su_util_parse_digits(const char *s, apr_size_t len, apr_uint64_t max,
                         apr_uint64_t *out)
{
    apr_uint64_t n = 0;
    apr_size_t i;

    if (s == NULL || len == 0)
        return 0;
    for (i = 0; i < len; i++)
        if (!su_util_digit(&n, s[i], max))
            return 0;
    *out = n;
    return 1;
}

int su_util_parse_num(const char *s, apr_int64_t min, apr_int64_t max,
                      apr_int64_t *out)
{
    apr_uint64_t v;
    const char *end = su_util_digits(s, &v);

    if (end == NULL || *end != '\0' || (apr_int64_t)v < min || (apr_int64_t)v > max)
        return 0;
    *out = (apr_int64_t)v;
    return 1;
}

int su_util_parse_size(const char *s, apr_uint64_t max, apr_uint64_t *out)
{
    apr_uint64_t v;
    const char *end = su_util_digits(s, &v);
    int shift = 0;

    if (end == NULL)
        return 0;
    switch (*end) {
    case '\0': break;
    case 'k': case 'K': shift = 10; end++; break;
    case 'm': case 'M': shift = 20; end++; break;
    case 'g': case 'G': shift = 30; end++; break;
    default: return 0;
    }
    if (*end != '\0' || v == 0 || v > (max >> shift))
        return 0;
    *out = v << shift;
    return 1;
}
