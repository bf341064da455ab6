/*
 * The physical limit of the module on this machine: its own per-byte work
 * (src/su_format.c, linked from libsecupload.a), in memory, on one core, with
 * no HTTP, no multipart parsing, no disk and no Redis.
 *
 *   limit encrypt BYTES          su_fmt_enc_create, su_enc_update/final in 64 KiB chunks,
 *                                and SHA-256 of the plaintext beside it:
 *                                AES-256-CBC + HMAC-SHA256 + SHA-256 (the
 *                                upload path's work, here on one core)
 *   limit decrypt BYTES [FILE]   su_dec_*: HMAC pass, then AES-256-CBC decrypt
 *                                pass, 64 KiB chunks (the download path); with
 *                                FILE, the same ciphertext is also stored there
 *                                and read back through su_fmt_reader_* (the
 *                                files handler's reader, page cache included)
 *
 * Each mode prints one JSON object per line: mode, bytes, seconds, mb_per_s
 * (MB = 10^6 bytes). Exit status 0 only if every result was verified.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <apr_general.h>
#include <apr_pools.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "su_format.h"
#include "su_key.h"

#define BL_CHUNK ((size_t)64 * 1024)

static double bl_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void bl_report(const char *mode, size_t bytes, double secs)
{
    printf("{\"mode\": \"%s\", \"bytes\": %zu, \"seconds\": %.6f, \"mb_per_s\": %.1f}\n",
           mode, bytes, secs, secs > 0 ? (double)bytes / secs / 1e6 : 0.0);
    fflush(stdout);
}

static int bl_fail(const char *what)
{
    fprintf(stderr, "limit: %s\n", what);
    return 1;
}

/* Round down to whole chunks so every update has the module's slice size. */
static size_t bl_chunks(size_t bytes)
{
    size_t n = bytes / BL_CHUNK;
    return n > 0 ? n : 1;
}

/*
 * Encrypt nchunks copies of plain[] (one reused 64 KiB chunk, as the module
 * reuses its scratch slice), and digest them as an upload does (there on a
 * thread of its own). With store != NULL the whole ciphertext (header, body,
 * tag) goes there; otherwise into a reused chunk.
 */
static int bl_encrypt(apr_pool_t *p, const su_kek_t *kek, const unsigned char *plain,
                      size_t nchunks, unsigned char *store, size_t *stored)
{
    unsigned char header[SU_FMT_HEADER_LEN], sha[32];
    unsigned char *out = malloc(BL_CHUNK + SU_FMT_BLOCK + SU_FMT_TAG_LEN);
    size_t pos = 0, outlen = 0, i;
    su_enc_t *enc = NULL;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    int ok = out != NULL && md != NULL && EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1
             && su_fmt_enc_create(p, kek, &enc, header) == SU_OK;

    if (ok && store != NULL) {
        memcpy(store, header, SU_FMT_HEADER_LEN);
        pos = SU_FMT_HEADER_LEN;
    }
    for (i = 0; ok && i < nchunks; i++) {
        unsigned char *dst = store != NULL ? store + pos : out;
        ok = EVP_DigestUpdate(md, plain, BL_CHUNK) == 1
             && su_enc_update(enc, plain, BL_CHUNK, dst, &outlen) == SU_OK;
        if (store != NULL)
            pos += outlen;
    }
    if (ok) {
        unsigned char *dst = store != NULL ? store + pos : out;
        ok = su_enc_final(enc, dst, &outlen) == SU_OK
             && su_enc_plain_size(enc) == (uint64_t)nchunks * BL_CHUNK
             && EVP_DigestFinal_ex(md, sha, NULL) == 1;
        pos += outlen;
    }
    EVP_MD_CTX_free(md);
    free(out);
    *stored = pos;
    return ok;
}

static int bl_mode_encrypt(apr_pool_t *p, const su_kek_t *kek,
                           const unsigned char *plain, size_t bytes)
{
    size_t n = bl_chunks(bytes), stored = 0;
    double t0 = bl_now();

    if (!bl_encrypt(p, kek, plain, n, NULL, &stored))
        return bl_fail("encryption failed");
    bl_report("encrypt", n * BL_CHUNK, bl_now() - t0);
    return 0;
}

/* The two passes of a download over ct[0..len): tag first, then plaintext. */
static int bl_decrypt(apr_pool_t *p, const su_kek_t *kek, const unsigned char *ct,
                      size_t len, const unsigned char *plain)
{
    const su_kek_t *keks[1] = { kek };
    const unsigned char *body = ct + SU_FMT_HEADER_LEN;
    size_t bodylen = len - SU_FMT_HEADER_LEN - SU_FMT_TAG_LEN, off, outlen = 0;
    unsigned char *out = malloc(BL_CHUNK + 2 * SU_FMT_BLOCK);
    su_dec_t *dec = NULL;
    int ok = out != NULL && su_fmt_dec_create(p, keks, 1, ct, &dec, NULL) == SU_OK;

    for (off = 0; ok && off < bodylen; off += BL_CHUNK) {
        size_t n = bodylen - off < BL_CHUNK ? bodylen - off : BL_CHUNK;
        su_dec_mac_update(dec, body + off, n);
    }
    ok = ok && su_dec_mac_verify(dec, body + bodylen) == SU_OK;
    for (off = 0; ok && off < bodylen; off += BL_CHUNK) {
        size_t n = bodylen - off < BL_CHUNK ? bodylen - off : BL_CHUNK;
        ok = su_dec_update(dec, body + off, n, out, &outlen) == SU_OK;
        /* every full plaintext chunk is a copy of plain[]: spot-check the first */
        if (ok && off == 0 && outlen >= 16)
            ok = memcmp(out, plain, 16) == 0;
    }
    ok = ok && su_dec_final(dec, out, &outlen) == SU_OK;
    free(out);
    return ok;
}

static int bl_write_file(const char *path, const unsigned char *buf, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    size_t done = 0;

    if (fd < 0)
        return 0;
    while (done < len) {
        ssize_t w = write(fd, buf + done, len - done);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break;
        done += (size_t)w;
    }
    return close(fd) == 0 && done == len;
}

/* The files handler's reader over a stored file (warm page cache). */
static int bl_read_file(apr_pool_t *p, const su_kek_t *kek, const char *path,
                        size_t want, size_t *got)
{
    const su_kek_t *keks[1] = { kek };
    su_fmt_reader_t *rd = NULL;
    uint64_t size = 0;
    const unsigned char *data;
    size_t len = 0;

    *got = 0;
    if (su_fmt_reader_open(p, path, keks, 1, &rd, &size) != SU_OK || size != want)
        return 0;
    do {
        if (su_fmt_reader_next(rd, &data, &len) != SU_OK)
            return 0;
        *got += len;
    } while (len > 0);
    su_fmt_reader_close(rd);
    return *got == want;
}

static int bl_mode_decrypt(apr_pool_t *p, const su_kek_t *kek,
                           const unsigned char *plain, size_t bytes, const char *file)
{
    size_t n = bl_chunks(bytes), plainlen = n * BL_CHUNK, ctlen = 0, got = 0;
    size_t cap = SU_FMT_HEADER_LEN + plainlen + SU_FMT_BLOCK + SU_FMT_TAG_LEN;
    unsigned char *ct = malloc(cap);
    double t0;
    int ok;

    if (ct == NULL)
        return bl_fail("out of memory");
    if (!bl_encrypt(p, kek, plain, n, ct, &ctlen) || ctlen > cap) {
        free(ct);
        return bl_fail("encryption failed");
    }
    t0 = bl_now();
    ok = bl_decrypt(p, kek, ct, ctlen, plain);
    if (ok)
        bl_report("decrypt", plainlen, bl_now() - t0);
    if (ok && file != NULL) {
        ok = bl_write_file(file, ct, ctlen);
        if (ok) {
            (void)bl_read_file(p, kek, file, plainlen, &got); /* warm the page cache */
            t0 = bl_now();
            ok = bl_read_file(p, kek, file, plainlen, &got);
            if (ok)
                bl_report("reader", plainlen, bl_now() - t0);
        }
        unlink(file);
    }
    free(ct);
    return ok ? 0 : bl_fail("decryption or verification failed");
}

int main(int argc, char **argv)
{
    static unsigned char plain[BL_CHUNK];
    apr_pool_t *p = NULL;
    su_kek_t kek;
    char *end = NULL;
    unsigned long long bytes;
    int rc;

    if (argc < 3 || (strcmp(argv[1], "encrypt") != 0 && strcmp(argv[1], "decrypt") != 0)) {
        fprintf(stderr, "usage: %s encrypt|decrypt BYTES [FILE]\n", argv[0]);
        return 2;
    }
    errno = 0;
    bytes = strtoull(argv[2], &end, 10);
    if (errno != 0 || *end != '\0' || bytes == 0 || bytes > (1ULL << 40))
        return bl_fail("BYTES must be a positive number");
    if (apr_initialize() != APR_SUCCESS || apr_pool_create(&p, NULL) != APR_SUCCESS)
        return bl_fail("cannot initialise APR");
    memset(&kek, 0, sizeof(kek));
    kek.path = "(generated)";
    if (RAND_bytes(kek.key, SU_KEY_LEN) != 1 || RAND_bytes(plain, sizeof(plain)) != 1)
        return bl_fail("no randomness");
    su_key_compute_id(&kek);
    if (strcmp(argv[1], "encrypt") == 0)
        rc = bl_mode_encrypt(p, &kek, plain, (size_t)bytes);
    else
        rc = bl_mode_decrypt(p, &kek, plain, (size_t)bytes, argc > 3 ? argv[3] : NULL);
    apr_pool_destroy(p);
    OPENSSL_cleanse(kek.key, sizeof(kek.key));
    apr_terminate();
    return rc;
}
