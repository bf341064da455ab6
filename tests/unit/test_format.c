/* Unit tests for the on-disk format (su_format.c). */
#include <check.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <apr_general.h>
#include <apr_strings.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "su_check.h"
#include "su_format.h"

static apr_pool_t *pool;
static char tmpdir[64];
static su_kek_t k1, k2, k3;

/* ---- helpers ---- */

static void setup(void)
{
    ck_assert_int_eq(apr_pool_create(&pool, NULL), APR_SUCCESS);
    strcpy(tmpdir, "/tmp/su_fmt_test.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
    su_check_make_kek(&k1, 1);
    su_check_make_kek(&k2, 2);
    su_check_make_kek(&k3, 3);
}

static void teardown(void)
{
    char cmd[128];

    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    ck_assert_int_eq(system(cmd), 0);
    apr_pool_destroy(pool);
}

static const char *tpath(const char *name)
{
    return apr_pstrcat(pool, tmpdir, "/", name, NULL);
}

static uint32_t rng_state = 12345;

static uint32_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 17;
    rng_state ^= rng_state << 5;
    return rng_state;
}

static unsigned char *random_data(size_t n)
{
    unsigned char *d = malloc(n ? n : 1);

    ck_assert_ptr_nonnull(d);
    ck_assert_int_eq(RAND_bytes(d, (int)(n ? n : 1)), 1);
    return d;
}

static unsigned char *read_file(const char *path, size_t *len)
{
    struct stat st;
    unsigned char *d;
    FILE *fp = fopen(path, "rb");

    ck_assert_ptr_nonnull(fp);
    ck_assert_int_eq(fstat(fileno(fp), &st), 0);
    d = malloc((size_t)st.st_size + 1);
    ck_assert_ptr_nonnull(d);
    ck_assert_uint_eq(fread(d, 1, (size_t)st.st_size, fp), (size_t)st.st_size);
    fclose(fp);
    *len = (size_t)st.st_size;
    return d;
}

static void write_file(const char *path, const unsigned char *d, size_t len)
{
    FILE *fp = fopen(path, "wb");

    ck_assert_ptr_nonnull(fp);
    ck_assert_uint_eq(fwrite(d, 1, len, fp), len);
    ck_assert_int_eq(fclose(fp), 0);
}

/* Encrypt data in random-size pieces to path; returns the plaintext size
 * su_enc reported. */
/* encrypt_file computes the HMAC beside the encryption (su_enc_mac_beside) */
static int mac_beside;

static void encrypt_file(const su_kek_t *kek, const unsigned char *data,
                         size_t n, const char *path, uint64_t *size)
{
    apr_pool_t *sub;
    su_enc_t *enc = NULL;
    unsigned char header[SU_FMT_HEADER_LEN];
    unsigned char *out = malloc(70000 + SU_FMT_BLOCK);
    size_t off = 0, outlen;
    FILE *fp = fopen(path, "wb");

    ck_assert_ptr_nonnull(fp);
    ck_assert_ptr_nonnull(out);
    ck_assert_int_eq(apr_pool_create(&sub, pool), APR_SUCCESS);
    ck_assert_int_eq(su_fmt_enc_create(sub, kek, &enc, header), SU_OK);
    if (mac_beside)
        ck_assert_int_eq(su_enc_mac_beside(enc), SU_OK);
    ck_assert_uint_eq(fwrite(header, 1, sizeof header, fp), sizeof header);
    while (off < n) {
        size_t piece = 1 + rng() % 70000;
        if (piece > n - off)
            piece = n - off;
        ck_assert_int_eq(su_enc_update(enc, data + off, piece, out, &outlen),
                         SU_OK);
        ck_assert_uint_le(outlen, piece + SU_FMT_BLOCK);
        ck_assert_uint_eq(fwrite(out, 1, outlen, fp), outlen);
        off += piece;
    }
    ck_assert_int_eq(su_enc_final(enc, out, &outlen), SU_OK);
    ck_assert_uint_ge(outlen, SU_FMT_BLOCK + SU_FMT_TAG_LEN);
    ck_assert_uint_eq(fwrite(out, 1, outlen, fp), outlen);
    ck_assert_int_eq(fclose(fp), 0);
    /* further use after final is refused */
    ck_assert_int_eq(su_enc_update(enc, data, 0, out, &outlen), SU_ERR_INTERNAL);
    if (size != NULL)
        *size = su_enc_plain_size(enc);
    apr_pool_destroy(sub);
    free(out);
}

typedef struct collect {
    unsigned char *buf;
    size_t len, cap;
    int calls;
    int stop_after;     /* stop (return 1) on this call; 0: never */
} collect_t;

static int collect_sink(void *ctx, const unsigned char *buf, size_t len)
{
    collect_t *c = ctx;

    c->calls++;
    if (c->len + len > c->cap) {
        c->cap = (c->len + len) * 2 + 1;
        c->buf = realloc(c->buf, c->cap);
        ck_assert_ptr_nonnull(c->buf);
    }
    memcpy(c->buf + c->len, buf, len);
    c->len += len;
    return c->stop_after != 0 && c->calls >= c->stop_after;
}

static su_err_t decrypt_with(const char *path, const su_kek_t *a,
                             const su_kek_t *b, collect_t *c)
{
    const su_kek_t *keks[2] = { a, b };

    return su_fmt_file_decrypt(pool, path, keks, b != NULL ? 2 : 1,
                               collect_sink, c);
}

static su_err_t verify_with(const char *path, const su_kek_t *a,
                            uint64_t *size)
{
    const su_kek_t *keks[1] = { a };

    return su_fmt_file_verify(pool, path, keks, 1, size);
}

/* Read a file through su_fmt_reader into c; the size comes first. */
static su_err_t read_with(const char *path, const su_kek_t *a, uint64_t *size,
                          collect_t *c)
{
    const su_kek_t *keks[1] = { a };
    su_fmt_reader_t *rd;
    const unsigned char *d;
    size_t n;
    su_err_t rv = su_fmt_reader_open(pool, path, keks, 1, &rd, size);

    if (rv != SU_OK)
        return rv;
    do {
        rv = su_fmt_reader_next(rd, &d, &n);
        if (rv == SU_OK && n > 0)
            collect_sink(c, d, n);
    } while (rv == SU_OK && n > 0);
    su_fmt_reader_close(rd);
    return rv;
}

static void hex(const unsigned char *in, size_t len, char *out)
{
    size_t i;

    for (i = 0; i < len; i++)
        sprintf(out + 2 * i, "%02x", in[i]);
}

/* ---- (a) RFC 3394 §4.6 ---- */

START_TEST(rfc3394_vector)
{
    static const unsigned char kek[32] = {
        0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07,
        0x08, 0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x0E, 0x0F,
        0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17,
        0x18, 0x19, 0x1A, 0x1B, 0x1C, 0x1D, 0x1E, 0x1F
    };
    static const unsigned char data[32] = {
        0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77,
        0x88, 0x99, 0xAA, 0xBB, 0xCC, 0xDD, 0xEE, 0xFF,
        0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07,
        0x08, 0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x0E, 0x0F
    };
    static const unsigned char expect[40] = {
        0x28, 0xC9, 0xF4, 0x04, 0xC4, 0xB8, 0x10, 0xF4,
        0xCB, 0xCC, 0xB3, 0x5C, 0xFB, 0x87, 0xF8, 0x26,
        0x3F, 0x57, 0x86, 0xE2, 0xD8, 0x0E, 0xD3, 0x26,
        0xCB, 0xC7, 0xF0, 0xE7, 0x1A, 0x99, 0xF4, 0x3B,
        0xFB, 0x98, 0x8B, 0x9B, 0x7A, 0x02, 0xDD, 0x21
    };
    unsigned char out[40];

    ck_assert_int_eq(su_crypto_wrap(kek, data, sizeof data, out), SU_OK);
    ck_assert_mem_eq(out, expect, sizeof expect);
    /* lengths RFC 3394 cannot wrap */
    ck_assert_int_ne(su_crypto_wrap(kek, data, 12, out), SU_OK);
    ck_assert_int_ne(su_crypto_wrap(kek, data, 8, out), SU_OK);
}
END_TEST

/* ---- (b), (f) round trips and layout ---- */

/* The last three put the tag across, then just before, the edge of the
 * readers' 4 MiB mapped windows, and cross several windows. */
static const size_t sizes[] = {
    0, 1, 15, 16, 17, 65535, 65536, 65537, 1024 * 1024 + 3,
    4 * 1024 * 1024 - 104 - 16, 4 * 1024 * 1024 - 104 - 32 - 16,
    9 * 1024 * 1024 + 1
};

#define NSIZES (sizeof sizes / sizeof sizes[0])

/* Each size twice: the HMAC in line, then beside the encryption. */
START_TEST(round_trip)
{
    size_t n = sizes[(size_t)_i % NSIZES];
    unsigned char *data = random_data(n);
    const char *path = tpath("rt.enc");
    unsigned char *file;
    uint64_t size = 0, vsize = 0;
    size_t flen;
    collect_t c = { 0 };

    mac_beside = (size_t)_i >= NSIZES;
    encrypt_file(&k1, data, n, path, &size);
    mac_beside = 0;

    /* (f) what su_enc reports */
    ck_assert_uint_eq(size, n);

    /* exact layout */
    file = read_file(path, &flen);
    ck_assert_uint_eq(flen, 104 + (n / 16 + 1) * 16 + 32);
    ck_assert_mem_eq(file, "SECUPLD\x01", 8);
    ck_assert_mem_eq(file + 8, k1.id, 8);
    free(file);

    ck_assert_int_eq(verify_with(path, &k1, &vsize), SU_OK);
    ck_assert_uint_eq(vsize, n);
    ck_assert_int_eq(decrypt_with(path, &k1, NULL, &c), SU_OK);
    ck_assert_uint_eq(c.len, n);
    if (n > 0)
        ck_assert_mem_eq(c.buf, data, n);
    free(c.buf);

    /* the reader: exact size first, then the same bytes */
    memset(&c, 0, sizeof c);
    vsize = 0;
    ck_assert_int_eq(read_with(path, &k1, &vsize, &c), SU_OK);
    ck_assert_uint_eq(vsize, n);
    ck_assert_uint_eq(c.len, n);
    if (n > 0)
        ck_assert_mem_eq(c.buf, data, n);
    free(c.buf);
    free(data);
}
END_TEST

START_TEST(fresh_key_and_iv)
{
    unsigned char data[10] = "same bytes";
    unsigned char *a, *b;
    size_t la, lb;

    encrypt_file(&k1, data, sizeof data, tpath("a.enc"), NULL);
    encrypt_file(&k1, data, sizeof data, tpath("b.enc"), NULL);
    a = read_file(tpath("a.enc"), &la);
    b = read_file(tpath("b.enc"), &lb);
    ck_assert_uint_eq(la, lb);
    ck_assert_mem_eq(a, b, 16);                          /* magic, key id */
    ck_assert_int_ne(memcmp(a + 16, b + 16, 72), 0);     /* data key */
    ck_assert_int_ne(memcmp(a + 88, b + 88, 16), 0);     /* IV */
    free(a);
    free(b);
}
END_TEST

/* ---- (c) independent decryption with the openssl tool ---- */

static void unwrap_independently(const su_kek_t *kek, const unsigned char *h,
                                 unsigned char dk[64])
{
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    int l1 = 0, l2 = 0;

    ck_assert_ptr_nonnull(ctx);
    EVP_CIPHER_CTX_set_flags(ctx, EVP_CIPHER_CTX_FLAG_WRAP_ALLOW);
    ck_assert_int_eq(EVP_DecryptInit_ex(ctx, EVP_aes_256_wrap(), NULL,
                                        kek->key, NULL), 1);
    ck_assert_int_eq(EVP_DecryptUpdate(ctx, dk, &l1, h + 16, 72), 1);
    ck_assert_int_eq(EVP_DecryptFinal_ex(ctx, dk + l1, &l2), 1);
    ck_assert_int_eq(l1 + l2, 64);
    EVP_CIPHER_CTX_free(ctx);
}

START_TEST(openssl_cli)
{
    size_t n = 100000 + 7, flen, plen;
    unsigned char *data = random_data(n), *file, *plain, dk[64];
    const char *enc = tpath("c.enc"), *ct = tpath("c.ct"), *pt = tpath("c.pt");
    const char *body = tpath("c.body"), *out = tpath("c.mac");
    char khex[65], ivhex[33], mhex[65], taghex[65], cmd[1024], line[512];
    FILE *fp;

    if (access("/usr/bin/openssl", X_OK) != 0) {
        fprintf(stderr, "openssl_cli: /usr/bin/openssl absent, skipped\n");
        free(data);
        return;
    }
    encrypt_file(&k2, data, n, enc, NULL);
    file = read_file(enc, &flen);
    unwrap_independently(&k2, file, dk);
    hex(dk, 32, khex);
    hex(dk + 32, 32, mhex);
    hex(file + 88, 16, ivhex);
    hex(file + flen - 32, 32, taghex);
    write_file(ct, file + 104, flen - 104 - 32);
    write_file(body, file, flen - 32);

    snprintf(cmd, sizeof cmd, "/usr/bin/openssl enc -d -aes-256-cbc -K %s "
             "-iv %s -in '%s' -out '%s'", khex, ivhex, ct, pt);
    ck_assert_int_eq(system(cmd), 0);
    plain = read_file(pt, &plen);
    ck_assert_uint_eq(plen, n);
    ck_assert_mem_eq(plain, data, n);

    snprintf(cmd, sizeof cmd, "/usr/bin/openssl dgst -sha256 -mac HMAC "
             "-macopt hexkey:%s -r '%s' > '%s'", mhex, body, out);
    ck_assert_int_eq(system(cmd), 0);
    fp = fopen(out, "r");
    ck_assert_ptr_nonnull(fp);
    ck_assert_ptr_nonnull(fgets(line, sizeof line, fp));
    fclose(fp);
    ck_assert_msg(strncmp(line, taghex, 64) == 0, "tag %s vs %s", line, taghex);

    OPENSSL_cleanse(dk, sizeof dk);
    free(plain);
    free(file);
    free(data);
}
END_TEST

/* ---- (d) tampering ---- */

static void expect_integrity(const char *path)
{
    uint64_t size = 12345;
    collect_t c = { 0 };

    ck_assert_int_eq(verify_with(path, &k1, &size), SU_ERR_INTEGRITY);
    ck_assert_int_eq(decrypt_with(path, &k1, NULL, &c), SU_ERR_INTEGRITY);
    ck_assert_int_eq(c.calls, 0);
    ck_assert_int_eq(read_with(path, &k1, &size, &c), SU_ERR_INTEGRITY);
    ck_assert_int_eq(c.calls, 0);
    free(c.buf);
}

START_TEST(tampering)
{
    size_t n = 5000, flen, i;
    uint64_t size = 0;
    unsigned char *data = random_data(n), *file;
    const char *orig = tpath("t.enc"), *bad = tpath("bad.enc");
    /* magic, version byte, key id, wrapped key, IV, ciphertext (first,
     * middle, last block), tag (first, last) */
    size_t offs[] = { 0, 7, 8, 15, 16, 50, 87, 88, 103, 104, 2000, 0, 0, 0 };
    size_t noffs = sizeof offs / sizeof offs[0];

    encrypt_file(&k1, data, n, orig, NULL);
    file = read_file(orig, &flen);
    offs[noffs - 3] = flen - 33;
    offs[noffs - 2] = flen - 32;
    offs[noffs - 1] = flen - 1;
    for (i = 0; i < noffs; i++) {
        file[offs[i]] ^= 0x01;
        write_file(bad, file, flen);
        expect_integrity(bad);
        file[offs[i]] ^= 0x01;
    }
    write_file(bad, file, flen - 1);
    expect_integrity(bad);
    write_file(bad, file, flen - 32);
    expect_integrity(bad);
    write_file(bad, file, flen - 16);
    expect_integrity(bad);
    write_file(bad, file, 104 + 16 + 31);
    expect_integrity(bad);
    write_file(bad, file, 0);
    expect_integrity(bad);
    file = realloc(file, flen + 16);
    file[flen] = 'x';
    write_file(bad, file, flen + 1);
    expect_integrity(bad);
    memset(file + flen, 0, 16);
    write_file(bad, file, flen + 16);
    expect_integrity(bad);

    /* the untouched copy still passes */
    write_file(bad, file, flen);
    ck_assert_int_eq(verify_with(bad, &k1, &size), SU_OK);
    ck_assert_uint_eq(size, n);
    free(file);
    free(data);
}
END_TEST

/* A valid MAC over bad padding: built by hand with the data key. With more
 * than one block, the good blocks before the bad last one must not be handed
 * out either: the file fails as a whole, before any plaintext. */
static const size_t pad_blocks[] = { 1, 3 };

START_TEST(bad_padding_under_valid_mac)
{
    size_t ctlen = 16 * pad_blocks[_i];
    unsigned char dk[64], pt[48], ct[48], tag[32];
    unsigned char *file;
    size_t flen, tlen = 0;
    int l = 0, l2 = 0;
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    EVP_MAC_CTX *mctx = EVP_MAC_CTX_new(mac);
    OSSL_PARAM params[2];
    char digest[] = "SHA256";
    collect_t c = { 0 };
    uint64_t size = 0;
    const char *path = tpath("pad.enc");

    /* a real file of ctlen cipher bytes, for its header and data key */
    memset(pt, 0x41, sizeof pt);
    encrypt_file(&k1, pt, ctlen - 8, path, NULL);
    file = read_file(path, &flen);
    ck_assert_uint_eq(flen, 104 + ctlen + 32);
    unwrap_independently(&k1, file, dk);
    /* the last block ends in padding byte 0x00: invalid PKCS#7 */
    pt[ctlen - 1] = 0;
    ck_assert_int_eq(EVP_EncryptInit_ex(ctx, EVP_aes_256_cbc(), NULL, dk,
                                        file + 88), 1);
    EVP_CIPHER_CTX_set_padding(ctx, 0);
    ck_assert_int_eq(EVP_EncryptUpdate(ctx, ct, &l, pt, (int)ctlen), 1);
    ck_assert_int_eq(EVP_EncryptFinal_ex(ctx, ct + l, &l2), 1);
    ck_assert_int_eq(l + l2, (int)ctlen);
    memcpy(file + 104, ct, ctlen);
    params[0] = OSSL_PARAM_construct_utf8_string("digest", digest, 0);
    params[1] = OSSL_PARAM_construct_end();
    ck_assert_int_eq(EVP_MAC_init(mctx, dk + 32, 32, params), 1);
    ck_assert_int_eq(EVP_MAC_update(mctx, file, 104 + ctlen), 1);
    ck_assert_int_eq(EVP_MAC_final(mctx, tag, &tlen, 32), 1);
    memcpy(file + 104 + ctlen, tag, 32);
    write_file(path, file, flen);

    ck_assert_int_eq(verify_with(path, &k1, &size), SU_ERR_INTEGRITY);
    ck_assert_int_eq(decrypt_with(path, &k1, NULL, &c), SU_ERR_INTEGRITY);
    ck_assert_int_eq(c.len, 0);
    ck_assert_int_eq(read_with(path, &k1, &size, &c), SU_ERR_INTEGRITY);
    ck_assert_int_eq(c.len, 0);

    OPENSSL_cleanse(dk, sizeof dk);
    EVP_MAC_CTX_free(mctx);
    EVP_MAC_free(mac);
    EVP_CIPHER_CTX_free(ctx);
    free(c.buf);
    free(file);
}
END_TEST

/* ---- (e) key rotation ---- */

START_TEST(rotation)
{
    size_t n = 300000, flen1, flen2;
    unsigned char *data = random_data(n), *before, *after;
    const char *path = tpath("r.enc");
    collect_t c = { 0 };
    const su_kek_t *only1[1] = { &k1 }, *both[2] = { &k2, &k1 };
    struct stat st;

    encrypt_file(&k1, data, n, path, NULL);
    before = read_file(path, &flen1);

    ck_assert_int_eq(decrypt_with(path, &k2, &k1, &c), SU_OK);
    ck_assert_uint_eq(c.len, n);
    ck_assert_mem_eq(c.buf, data, n);
    c.len = 0;
    c.calls = 0;
    ck_assert_int_eq(decrypt_with(path, &k2, NULL, &c), SU_ERR_INTEGRITY);
    ck_assert_int_eq(c.calls, 0);

    ck_assert_int_eq(su_fmt_file_rewrap(pool, path, both, 2, &k2), SU_OK);
    after = read_file(path, &flen2);
    ck_assert_uint_eq(flen1, flen2);
    ck_assert_mem_eq(after, before, 8);
    ck_assert_mem_eq(after + 8, k2.id, 8);
    ck_assert_int_ne(memcmp(after + 16, before + 16, 72), 0);
    ck_assert_mem_eq(after + 88, before + 88, flen1 - 88 - 32);
    ck_assert_int_ne(memcmp(after + flen1 - 32, before + flen1 - 32, 32), 0);
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert_uint_eq(st.st_mode & 07777, 0600);
    ck_assert_int_eq(access(tpath("r.enc.rewrap.tmp"), F_OK), -1);

    ck_assert_int_eq(decrypt_with(path, &k2, NULL, &c), SU_OK);
    ck_assert_uint_eq(c.len, n);
    ck_assert_mem_eq(c.buf, data, n);
    c.len = 0;
    c.calls = 0;
    ck_assert_int_eq(decrypt_with(path, &k1, NULL, &c), SU_ERR_INTEGRITY);
    ck_assert_int_eq(c.calls, 0);

    /* already under the new key: left alone */
    ck_assert_int_eq(su_fmt_file_rewrap(pool, path, only1, 1, &k2), SU_OK);
    free(before);
    before = read_file(path, &flen1);
    ck_assert_mem_eq(before, after, flen1);

    /* no key to open it: untouched */
    ck_assert_int_eq(su_fmt_file_rewrap(pool, path, only1, 1, &k3),
                     SU_ERR_INTEGRITY);
    ck_assert_int_eq(access(tpath("r.enc.rewrap.tmp"), F_OK), -1);
    free(after);
    after = read_file(path, &flen2);
    ck_assert_mem_eq(before, after, flen1);

    free(c.buf);
    free(before);
    free(after);
    free(data);
}
END_TEST

/* What binds a file to its id: its IV, from the header, the same verified
 * or not, and kept by a rewrap (which changes the tag). */
static void reader_iv(const char *path, const su_kek_t *kek, char *out)
{
    const su_kek_t *keks[1] = { kek };
    su_fmt_reader_t *rd;
    uint64_t size;

    ck_assert_int_eq(su_fmt_reader_open(pool, path, keks, 1, &rd, &size), SU_OK);
    su_fmt_reader_iv_hex(rd, out);
    su_fmt_reader_close(rd);
}

START_TEST(iv_binding)
{
    unsigned char *data = random_data(5000), *blob;
    const char *path = tpath("iv.enc");
    const su_kek_t *both[2] = { &k2, &k1 };
    char want[SU_FMT_IV_HEX_LEN + 1], got[SU_FMT_IV_HEX_LEN + 1];
    size_t len;

    encrypt_file(&k1, data, 5000, path, NULL);
    blob = read_file(path, &len);
    hex(blob + 88, SU_FMT_IV_LEN, want);
    su_fmt_header_iv_hex(blob, got);
    ck_assert_str_eq(got, want);
    ck_assert_int_eq(su_fmt_file_iv_hex(pool, path, got), SU_OK);
    ck_assert_str_eq(got, want);
    reader_iv(path, &k1, got);
    ck_assert_str_eq(got, want);
    ck_assert_int_eq(su_fmt_file_rewrap(pool, path, both, 2, &k2), SU_OK);
    ck_assert_int_eq(su_fmt_file_iv_hex(pool, path, got), SU_OK);
    ck_assert_str_eq(got, want);
    reader_iv(path, &k2, got);
    ck_assert_str_eq(got, want);

    ck_assert_int_eq(su_fmt_file_iv_hex(pool, tpath("none.enc"), got),
                     SU_ERR_NOT_FOUND);
    blob[0] ^= 1;
    write_file(path, blob, len);
    ck_assert_int_eq(su_fmt_file_iv_hex(pool, path, got), SU_ERR_INTEGRITY);
    write_file(path, blob, len - 1);
    ck_assert_int_eq(su_fmt_file_iv_hex(pool, path, got), SU_ERR_INTEGRITY);
    free(blob);
    free(data);
}
END_TEST

/* What a file shows without a key: the tool's reasons come from here. */
START_TEST(file_look)
{
    const char *path = tpath("look.enc"), *bad = tpath("look-bad.enc");
    const su_kek_t *keks[2] = { &k2, &k1 };
    unsigned char data[100], *file;
    su_fmt_head_t h;
    size_t flen;

    memset(data, 'l', sizeof data);
    encrypt_file(&k1, data, sizeof data, path, NULL);
    file = read_file(path, &flen);
    su_fmt_file_look(path, &h);
    ck_assert_int_eq(h.look, SU_FMT_LOOKS_STORED);
    ck_assert(h.has_key_id);
    ck_assert_mem_eq(h.key_id, k1.id, SU_KEY_ID_LEN);
    ck_assert(su_fmt_have_key(keks, 2, h.key_id));
    ck_assert(!su_fmt_have_key(keks, 1, h.key_id));

    write_file(bad, file, flen - 1);
    su_fmt_file_look(bad, &h);
    ck_assert_int_eq(h.look, SU_FMT_BAD_SIZE);
    ck_assert(h.has_key_id);
    ck_assert_mem_eq(h.key_id, k1.id, SU_KEY_ID_LEN);
    write_file(bad, file, 15);
    su_fmt_file_look(bad, &h);
    ck_assert_int_eq(h.look, SU_FMT_TOO_SHORT);
    ck_assert(!h.has_key_id);
    file[7] ^= 1;                 /* another version */
    write_file(bad, file, flen);
    su_fmt_file_look(bad, &h);
    ck_assert_int_eq(h.look, SU_FMT_BAD_MAGIC);
    ck_assert(!h.has_key_id);
    su_fmt_file_look(tpath("none.enc"), &h);
    ck_assert_int_eq(h.look, SU_FMT_NO_FILE);
    su_fmt_file_look(tpath(""), &h);
    ck_assert_int_eq(h.look, SU_FMT_NOT_REGULAR);
    free(file);
}
END_TEST

START_TEST(wrong_key)
{
    const char *path = tpath("w.enc");
    unsigned char data[100];
    collect_t c = { 0 };
    su_kek_t same_id = k1;
    const su_kek_t *keks[2] = { &same_id, &k1 };
    uint64_t size = 0;

    memset(data, 'w', sizeof data);
    encrypt_file(&k1, data, sizeof data, path, NULL);
    ck_assert_int_eq(verify_with(path, &k3, &size), SU_ERR_INTEGRITY);
    ck_assert_int_eq(decrypt_with(path, &k3, NULL, &c), SU_ERR_INTEGRITY);
    ck_assert_int_eq(c.calls, 0);
    /* a key with the right id whose unwrap fails is skipped */
    same_id.key[0] ^= 0xff;
    ck_assert_int_eq(decrypt_with(path, &same_id, NULL, &c), SU_ERR_INTEGRITY);
    ck_assert_int_eq(su_fmt_file_verify(pool, path, keks, 2, &size), SU_OK);
    ck_assert_uint_eq(size, sizeof data);
    ck_assert_int_eq(decrypt_with(path, &same_id, &k1, &c), SU_OK);
    ck_assert_uint_eq(c.len, sizeof data);
    free(c.buf);
}
END_TEST

/*
 * A wrapped data key that fails to unwrap under the KEK its id names (the
 * id is public, the wrapped key anyone's to corrupt): an integrity error,
 * and the wipe of what the unwrap may have written stays within the 64
 * bytes of the data key. It once covered 72, 8 bytes past a stack buffer;
 * canaries on both sides catch that here, AddressSanitizer in the
 * sanitizer build.
 */
#define CANARY 0xA5

static void check_canaries(const unsigned char *buf, size_t len)
{
    size_t i;

    for (i = 0; i < 8; i++) {
        ck_assert_uint_eq(buf[i], CANARY);
        ck_assert_uint_eq(buf[8 + len + i], CANARY);
    }
}

START_TEST(corrupt_wrapped_key)
{
    unsigned char dk[SU_FMT_DATAKEY_LEN], wrapped[SU_FMT_WRAPPED_LEN];
    unsigned char buf[8 + SU_FMT_DATAKEY_LEN + 8], zero[SU_FMT_DATAKEY_LEN];
    size_t len = 99;

    ck_assert_int_eq(RAND_bytes(dk, sizeof dk), 1);
    ck_assert_int_eq(su_crypto_wrap(k1.key, dk, sizeof dk, wrapped), SU_OK);
    memset(buf, CANARY, sizeof buf);
    ck_assert_int_eq(su_crypto_unwrap(k1.key, wrapped, sizeof wrapped, buf + 8,
                                   &len), SU_OK);
    ck_assert_uint_eq(len, SU_FMT_DATAKEY_LEN);
    ck_assert_mem_eq(buf + 8, dk, sizeof dk);
    check_canaries(buf, SU_FMT_DATAKEY_LEN);

    wrapped[40] ^= 0x01;
    memset(buf, CANARY, sizeof buf);
    memset(zero, 0, sizeof zero);
    ck_assert_int_eq(su_crypto_unwrap(k1.key, wrapped, sizeof wrapped, buf + 8,
                                   &len), SU_ERR_INTEGRITY);
    ck_assert_uint_eq(len, 0);
    ck_assert_mem_eq(buf + 8, zero, sizeof zero);   /* nothing of a key left */
    check_canaries(buf, SU_FMT_DATAKEY_LEN);
    /* the wrong KEK fails the same way */
    memset(buf, CANARY, sizeof buf);
    ck_assert_int_eq(su_crypto_unwrap(k2.key, wrapped, sizeof wrapped, buf + 8,
                                   &len), SU_ERR_INTEGRITY);
    check_canaries(buf, SU_FMT_DATAKEY_LEN);
    /* lengths RFC 3394 cannot unwrap write nothing */
    memset(buf, CANARY, sizeof buf);
    ck_assert_int_eq(su_crypto_unwrap(k1.key, wrapped, 12, buf + 8, &len),
                     SU_ERR_INTEGRITY);
    ck_assert_int_eq(su_crypto_unwrap(k1.key, wrapped, 8, buf + 8, &len),
                     SU_ERR_INTEGRITY);
    check_canaries(buf, 0);
}
END_TEST

/* The same through a stored file whose key id matches: every read path and
 * the rewrap refuse it, and the file stays as it was. */
START_TEST(corrupt_wrapped_key_file)
{
    const char *path = tpath("ck.enc");
    const su_kek_t *keks[1] = { &k1 };
    unsigned char data[100], *file, *after;
    size_t flen, alen;
    uint64_t size = 12345;
    collect_t c = { 0 };

    memset(data, 'k', sizeof data);
    encrypt_file(&k1, data, sizeof data, path, NULL);
    file = read_file(path, &flen);
    file[16 + 40] ^= 0x01;          /* in the wrapped key; the id still k1's */
    write_file(path, file, flen);
    ck_assert_int_eq(verify_with(path, &k1, &size), SU_ERR_INTEGRITY);
    ck_assert_uint_eq(size, 0);
    ck_assert_int_eq(decrypt_with(path, &k1, NULL, &c), SU_ERR_INTEGRITY);
    ck_assert_int_eq(read_with(path, &k1, &size, &c), SU_ERR_INTEGRITY);
    ck_assert_int_eq(c.calls, 0);
    ck_assert_int_eq(su_fmt_file_rewrap(pool, path, keks, 1, &k2),
                     SU_ERR_INTEGRITY);
    ck_assert_int_eq(access(tpath("ck.enc.rewrap.tmp"), F_OK), -1);
    after = read_file(path, &alen);
    ck_assert_uint_eq(alen, flen);
    ck_assert_mem_eq(after, file, flen);
    free(after);
    free(file);
}
END_TEST

/* Rewrap path from k1 to k2 in a child whose environment names the crash
 * hook (and the variable an older build read): its exit status. */
static int rewrap_in_child(const char *path)
{
    const su_kek_t *keks[1] = { &k1 };
    int status = 0;
    pid_t pid = fork();

    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        setenv("SECUPLOAD_FAULTS", "rewrap-rename=1", 1);
        setenv("SECUPLOAD_FAULT_REWRAP_EXIT", "1", 1);
        _exit(su_fmt_file_rewrap(pool, path, keks, 1, &k2) == SU_OK ? 0 : 1);
    }
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(WIFEXITED(status));
    return WEXITSTATUS(status);
}

#ifdef SU_FAULT_INJECTION
/* Crash before the rename: the old file stays whole; a rerun completes. */
START_TEST(rewrap_crash)
{
    const char *path = tpath("x.enc");
    unsigned char data[40000];
    const su_kek_t *keks[1] = { &k1 };
    collect_t c = { 0 };

    memset(data, 'z', sizeof data);
    encrypt_file(&k1, data, sizeof data, path, NULL);
    ck_assert_int_eq(rewrap_in_child(path), 99);
    ck_assert_int_eq(access(tpath("x.enc.rewrap.tmp"), F_OK), 0);
    ck_assert_int_eq(decrypt_with(path, &k1, NULL, &c), SU_OK);
    ck_assert_uint_eq(c.len, sizeof data);

    ck_assert_int_eq(su_fmt_file_rewrap(pool, path, keks, 1, &k2), SU_OK);
    ck_assert_int_eq(access(tpath("x.enc.rewrap.tmp"), F_OK), -1);
    c.len = 0;
    ck_assert_int_eq(decrypt_with(path, &k2, NULL, &c), SU_OK);
    ck_assert_mem_eq(c.buf, data, sizeof data);
    free(c.buf);
}
END_TEST
#else
/* A shipped build has no crash hook: whatever the environment says, a
 * rewrap runs to its end. */
START_TEST(rewrap_no_fault_hook)
{
    const char *path = tpath("nf.enc");
    unsigned char data[5000];
    collect_t c = { 0 };

    memset(data, 'n', sizeof data);
    encrypt_file(&k1, data, sizeof data, path, NULL);
    ck_assert_int_eq(rewrap_in_child(path), 0);
    ck_assert_int_eq(decrypt_with(path, &k2, NULL, &c), SU_OK);
    ck_assert_mem_eq(c.buf, data, sizeof data);
    free(c.buf);
}
END_TEST
#endif

/* ---- the rest of the API ---- */

START_TEST(missing_and_abort)
{
    unsigned char *data = random_data(600000);
    const char *path = tpath("m.enc");
    collect_t c = { 0 };
    uint64_t size = 0;
    const su_kek_t *keks[1] = { &k1 };

    ck_assert_int_eq(decrypt_with(tpath("none.enc"), &k1, NULL, &c),
                     SU_ERR_NOT_FOUND);
    ck_assert_int_eq(verify_with(tpath("none.enc"), &k1, &size),
                     SU_ERR_NOT_FOUND);
    ck_assert_int_eq(su_fmt_file_rewrap(pool, tpath("none.enc"), keks, 1, &k2),
                     SU_ERR_NOT_FOUND);
    encrypt_file(&k1, data, 600000, path, NULL);
    c.stop_after = 1;
    ck_assert_int_eq(decrypt_with(path, &k1, NULL, &c), SU_ERR_ABORTED);
    ck_assert_int_eq(c.calls, 1);
    free(c.buf);
    free(data);
}
END_TEST

/* The HMAC's thread: only before the first update; an encryption given up
 * half-way stops it with its pool. */
START_TEST(mac_beside_lifetime)
{
    size_t n = 3 * 1024 * 1024;
    unsigned char header[SU_FMT_HEADER_LEN], *data = random_data(n);
    unsigned char *out = malloc(n + SU_FMT_BLOCK);
    size_t outlen = 0;
    apr_pool_t *sub;
    su_enc_t *enc;

    ck_assert_ptr_nonnull(out);
    ck_assert_int_eq(su_fmt_enc_create(pool, &k1, &enc, header), SU_OK);
    ck_assert_int_eq(su_enc_update(enc, data, 16, out, &outlen), SU_OK);
    ck_assert_int_eq(su_enc_mac_beside(enc), SU_ERR_INTERNAL);

    ck_assert_int_eq(apr_pool_create(&sub, pool), APR_SUCCESS);
    ck_assert_int_eq(su_fmt_enc_create(sub, &k1, &enc, header), SU_OK);
    ck_assert_int_eq(su_enc_mac_beside(enc), SU_OK);
    ck_assert_int_eq(su_enc_mac_beside(enc), SU_ERR_INTERNAL);
    ck_assert_int_eq(su_enc_update(enc, data, n, out, &outlen), SU_OK);
    ck_assert_uint_eq(outlen, n);
    apr_pool_destroy(sub);
    free(out);
    free(data);
}
END_TEST

START_TEST(streaming_api)
{
    unsigned char header[SU_FMT_HEADER_LEN], out[64 + 16], tail[48];
    unsigned char plain[64 + 32], msg[64];
    size_t n1 = 0, n2 = 0, p1 = 0, p2 = 0;
    su_enc_t *enc;
    su_dec_t *dec;
    const su_kek_t *keks[2] = { &k3, &k1 }, *used = NULL;

    memset(msg, 'm', sizeof msg);
    ck_assert_int_eq(su_fmt_enc_create(pool, &k1, &enc, header), SU_OK);
    ck_assert_int_eq(su_enc_update(enc, msg, sizeof msg, out, &n1), SU_OK);
    ck_assert_int_eq(su_enc_final(enc, tail, &n2), SU_OK);
    ck_assert_uint_eq(n1 + n2, 64 + 16 + 32);

    ck_assert_int_eq(su_fmt_dec_create(pool, keks, 2, header, &dec, &used), SU_OK);
    ck_assert_ptr_eq(used, &k1);
    /* no plaintext before the tag is verified */
    ck_assert_int_ne(su_dec_update(dec, out, n1, plain, &p1), SU_OK);
    ck_assert_uint_eq(p1, 0);
    su_dec_mac_update(dec, out, n1);
    su_dec_mac_update(dec, tail, n2 - 32);
    ck_assert_int_eq(su_dec_mac_verify(dec, tail + n2 - 32), SU_OK);
    ck_assert_int_eq(su_dec_update(dec, out, n1, plain, &p1), SU_OK);
    ck_assert_int_eq(su_dec_update(dec, tail, n2 - 32, plain + p1, &p2), SU_OK);
    p1 += p2;
    ck_assert_int_eq(su_dec_final(dec, plain + p1, &p2), SU_OK);
    ck_assert_uint_eq(p1 + p2, 64);
    ck_assert_mem_eq(plain, msg, 64);

    /* a wrong tag */
    ck_assert_int_eq(su_fmt_dec_create(pool, keks, 2, header, &dec, NULL), SU_OK);
    su_dec_mac_update(dec, out, n1);
    su_dec_mac_update(dec, tail, n2 - 32);
    tail[n2 - 1] ^= 1;
    ck_assert_int_eq(su_dec_mac_verify(dec, tail + n2 - 32), SU_ERR_INTEGRITY);
    /* a second verify cannot turn it into a success */
    tail[n2 - 1] ^= 1;
    ck_assert_int_eq(su_dec_mac_verify(dec, tail + n2 - 32), SU_ERR_INTEGRITY);
    ck_assert_int_ne(su_dec_update(dec, out, n1, plain, &p1), SU_OK);

    /* a bad magic */
    header[7] = 2;
    ck_assert_int_eq(su_fmt_dec_create(pool, keks, 2, header, &dec, NULL),
                     SU_ERR_INTEGRITY);
}
END_TEST

/* Read on to the end or the first error, counting the bytes given and
 * comparing them with data. */
static su_err_t read_rest(su_fmt_reader_t *rd, const unsigned char *data,
                          size_t n, size_t *got)
{
    const unsigned char *d;
    size_t len = 0;
    su_err_t rv;

    do {
        rv = su_fmt_reader_next(rd, &d, &len);
        if (rv != SU_OK)
            break;
        ck_assert_uint_le(*got + len, n);
        if (len > 0)
            ck_assert_mem_eq(d, data + *got, len);
        *got += len;
    } while (len > 0);
    return rv;
}

/*
 * A file written to in place after verification is never read out whole:
 * a byte flipped far ahead, read from mapped windows (_i 0) or with pread
 * (_i 1, EnableMMAP Off); and without mapping, a file truncated while it is
 * read is an integrity error, not a crash (_i 2).
 */
START_TEST(reader_detects_change_after_verify)
{
    size_t n = 9 * 1024 * 1024 + 77, got = 0;
    unsigned char *data = random_data(n);
    const char *path = tpath("change.enc");
    const su_kek_t *keks[1] = { &k1 };
    int flags = _i ? SU_FMT_NO_MAP : 0;
    const unsigned char *first;
    su_fmt_reader_t *rd;
    uint64_t size;
    unsigned char b;
    int fd;

    encrypt_file(&k1, data, n, path, NULL);
    /* unchanged, all of it */
    ck_assert_int_eq(su_fmt_reader_open_ex(pool, path, keks, 1, flags, &rd, &size),
                     SU_OK);
    ck_assert_uint_eq(size, n);
    ck_assert_int_eq(read_rest(rd, data, n, &got), SU_OK);
    ck_assert_uint_eq(got, n);
    su_fmt_reader_close(rd);

    got = 0;
    ck_assert_int_eq(su_fmt_reader_open_ex(pool, path, keks, 1, flags, &rd, &size),
                     SU_OK);
    ck_assert_int_eq(su_fmt_reader_next(rd, &first, &got), SU_OK);
    ck_assert_mem_eq(first, data, got);
    usleep(20000);
    if (_i == 2) {
        ck_assert_int_eq(truncate(path, 4 * 1024 * 1024), 0);
    } else {
        /* in place (not by rename) */
        fd = open(path, O_RDWR);
        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(pread(fd, &b, 1, 104 + 6 * 1024 * 1024), 1);
        b ^= 1;
        ck_assert_int_eq(pwrite(fd, &b, 1, 104 + 6 * 1024 * 1024), 1);
        close(fd);
    }
    /* what comes before the change is noticed is still the verified data */
    ck_assert_int_eq(read_rest(rd, data, n, &got), SU_ERR_INTEGRITY);
    ck_assert_uint_lt(got, n);
    su_fmt_reader_close(rd);
    free(data);
}
END_TEST

/* Decrypting ahead (begin/end): the same bytes, in place for a small file
 * and on the reader's thread for a large one; a reader closed with a piece
 * still being decrypted waits for it. */
START_TEST(reader_begin_end)
{
    static const size_t ns[] = { 100000, 9 * 1024 * 1024 + 77 };
    size_t n = ns[_i], got = 0, len = 0;
    unsigned char *data = random_data(n);
    unsigned char *buf[2];
    const char *path = tpath("ahead.enc");
    const su_kek_t *keks[1] = { &k1 };
    su_fmt_reader_t *rd;
    uint64_t size;
    int k = 0;

    buf[0] = malloc(SU_FMT_READ_MAX);
    buf[1] = malloc(SU_FMT_READ_MAX);
    ck_assert_ptr_nonnull(buf[0]);
    ck_assert_ptr_nonnull(buf[1]);
    encrypt_file(&k1, data, n, path, NULL);
    ck_assert_int_eq(su_fmt_reader_open(pool, path, keks, 1, &rd, &size), SU_OK);
    ck_assert_uint_eq(size, n);
    ck_assert_int_eq(su_fmt_reader_end(rd, &len), SU_ERR_INTERNAL);  /* nothing begun */
    su_fmt_reader_begin(rd, buf[0]);
    for (;;) {
        ck_assert_int_eq(su_fmt_reader_end(rd, &len), SU_OK);
        if (len == 0)
            break;
        /* the next piece is decrypted into the other buffer meanwhile */
        su_fmt_reader_begin(rd, buf[1 - k]);
        ck_assert_uint_le(got + len, n);
        ck_assert_mem_eq(buf[k], data + got, len);
        got += len;
        k = 1 - k;
    }
    ck_assert_uint_eq(got, n);
    su_fmt_reader_close(rd);

    ck_assert_int_eq(su_fmt_reader_open(pool, path, keks, 1, &rd, &size), SU_OK);
    su_fmt_reader_begin(rd, buf[0]);
    su_fmt_reader_close(rd);
    free(buf[0]);
    free(buf[1]);
    free(data);
}
END_TEST

static Suite *format_suite(void)
{
    Suite *s = suite_create("su_format");
    TCase *tc = tcase_create("core");

    tcase_set_timeout(tc, 60);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, rfc3394_vector);
    tcase_add_loop_test(tc, round_trip, 0, (int)(2 * NSIZES));
    tcase_add_test(tc, mac_beside_lifetime);
    tcase_add_test(tc, fresh_key_and_iv);
    tcase_add_test(tc, openssl_cli);
    tcase_add_test(tc, tampering);
    tcase_add_loop_test(tc, bad_padding_under_valid_mac, 0,
                        (int)(sizeof pad_blocks / sizeof pad_blocks[0]));
    tcase_add_test(tc, rotation);
    tcase_add_test(tc, iv_binding);
    tcase_add_test(tc, file_look);
    tcase_add_test(tc, wrong_key);
    tcase_add_test(tc, corrupt_wrapped_key);
    tcase_add_test(tc, corrupt_wrapped_key_file);
#ifdef SU_FAULT_INJECTION
    tcase_add_test(tc, rewrap_crash);
#else
    tcase_add_test(tc, rewrap_no_fault_hook);
#endif
    tcase_add_test(tc, missing_and_abort);
    tcase_add_test(tc, streaming_api);
    tcase_add_loop_test(tc, reader_detects_change_after_verify, 0, 3);
    tcase_add_loop_test(tc, reader_begin_end, 0, 2);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return su_check_run(format_suite);
}
