/*
 * An upload's per-byte work in memory, as src/su_upload.c does it, without
 * HTTP, disk or Redis: the plaintext's SHA-256 on su_hasher's thread, and
 *   seal 1 BYTES                      format 1: the AES-256-CBC chain on the
 *                                     caller's thread, its HMAC beside it
 *                                     (su_enc_mac_beside)
 *   seal 2 BYTES SEGSIZE THREADS      format 2: segments sealed on THREADS
 *                                     workers (su_seal), SEGSIZE bytes each
 * fed in 64 KiB pieces (what Apache hands the module), the ciphertext
 * dropped. Run it under taskset to give it 1 or 2 cores. Prints one JSON
 * object: format, segsize, threads, bytes, seconds, mb_per_s (MB = 10^6
 * bytes), cpu_s (user + system time of the process).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include <apr_general.h>
#include <apr_pools.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "su_format.h"
#include "su_hasher.h"
#include "su_key.h"
#include "su_seal.h"

#define BS_PIECE ((size_t)64 * 1024)

static unsigned char bs_plain[BS_PIECE];
static unsigned char bs_out[BS_PIECE + 64];

static double bs_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double bs_cpu(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6
           + (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static su_err_t bs_drop(void *ctx, const unsigned char *buf, size_t len)
{
    (void)ctx;
    (void)buf;
    (void)len;
    return SU_OK;
}

static int bs_v1(apr_pool_t *p, const su_kek_t *kek, su_hasher_t *h, size_t n)
{
    unsigned char header[SU_FMT_HEADER_LEN], sha[32];
    su_enc_t *enc = NULL;
    size_t i, outlen = 0;
    int ok = su_fmt_enc_create(p, kek, &enc, header) == SU_OK
             && su_enc_mac_beside(enc) == SU_OK;

    for (i = 0; ok && i < n; i++)
        ok = su_hasher_update(h, bs_plain, BS_PIECE) == SU_OK
             && su_enc_update(enc, bs_plain, BS_PIECE, bs_out, &outlen) == SU_OK;
    return ok && su_enc_final(enc, bs_out, &outlen) == SU_OK
           && su_hasher_final(h, sha) == SU_OK;
}

static int bs_v2(apr_pool_t *p, const su_kek_t *kek, su_hasher_t *h, size_t n,
                 uint32_t segsize, int threads)
{
    unsigned char sha[32];
    su_seal_t *s = NULL;
    size_t i;
    int ok = su_seal_create(p, kek, "0123456789abcdef0123456789abcdef", segsize,
                            NULL, threads, bs_drop, NULL, &s) == SU_OK;

    for (i = 0; ok && i < n; i++)
        ok = su_hasher_update(h, bs_plain, BS_PIECE) == SU_OK
             && su_seal_write(s, bs_plain, BS_PIECE) == SU_OK;
    return ok && su_seal_finish(s) == SU_OK && su_hasher_final(h, sha) == SU_OK;
}

static unsigned long long bs_num(const char *s)
{
    char *end = NULL;
    unsigned long long v;

    errno = 0;
    v = strtoull(s, &end, 10);
    return errno == 0 && *end == '\0' ? v : 0;
}

int main(int argc, char **argv)
{
    int format = argc > 2 ? atoi(argv[1]) : 0;
    unsigned long long bytes = argc > 2 ? bs_num(argv[2]) : 0;
    uint32_t segsize = argc > 4 ? (uint32_t)bs_num(argv[3]) : 0;
    int threads = argc > 4 ? atoi(argv[4]) : 0;
    size_t n = (size_t)(bytes / BS_PIECE);
    apr_pool_t *p = NULL;
    su_hasher_t *h = NULL;
    su_kek_t kek;
    double t0, c0;
    int ok;

    if (!(format == 1 && argc == 3) && !(format == 2 && argc == 5 && threads > 0
                                         && su_seg_size_ok(segsize))) {
        fprintf(stderr, "usage: %s 1 BYTES | 2 BYTES SEGSIZE THREADS\n", argv[0]);
        return 2;
    }
    if (n == 0 || apr_initialize() != APR_SUCCESS
        || apr_pool_create(&p, NULL) != APR_SUCCESS)
        return 1;
    memset(&kek, 0, sizeof kek);
    kek.path = "(generated)";
    if (RAND_bytes(kek.key, SU_KEY_LEN) != 1 || RAND_bytes(bs_plain, BS_PIECE) != 1)
        return 1;
    su_key_compute_id(&kek);
    t0 = bs_now();
    c0 = bs_cpu();
    ok = su_hasher_create(p, &h) == SU_OK
         && (format == 1 ? bs_v1(p, &kek, h, n) : bs_v2(p, &kek, h, n, segsize, threads));
    t0 = bs_now() - t0;
    c0 = bs_cpu() - c0;
    if (ok)
        printf("{\"format\": %d, \"segsize\": %u, \"threads\": %d, \"bytes\": %zu, "
               "\"seconds\": %.6f, \"mb_per_s\": %.1f, \"cpu_s\": %.3f}\n", format,
               segsize, threads, n * BS_PIECE, t0, (double)(n * BS_PIECE) / t0 / 1e6, c0);
    apr_pool_destroy(p);
    OPENSSL_cleanse(kek.key, sizeof kek.key);
    apr_terminate();
    return ok ? 0 : 1;
}
