/*
 * libFuzzer target: reading stored files (su_format.h): su_fmt_file_verify,
 * su_fmt_reader_open/next/close and su_fmt_file_decrypt on one file, with a
 * fixed KEK.
 *
 * Input layout: byte 0 chooses the mode (byte 0 % 4):
 *   0  raw:    the rest is the file, as it is
 *   1  keyed:  the rest is the file, with the magic and this KEK's id
 *              written over its first 16 bytes, so the key unwrap runs
 *   2  mutate: byte 1 picks one of the valid files made at start-up, the
 *              rest is a list of 4-byte edits (op, offset, offset, value):
 *              xor a byte, set a byte, truncate, append
 *   3  forge:  a file whose tag is right (made here with a known data key),
 *              so that the padding checks see attacker-chosen plaintext:
 *              byte 1 flags (bit 0 breaks the tag), bytes 2-17 the IV, the
 *              rest (cut to whole blocks) the padded plaintext
 * Byte 0 bit 2 also puts a wrong KEK with the same key id first in the list.
 *
 * Invariants: nothing crashes; the three readers agree (verify succeeds iff
 * the reader opens iff the decryption succeeds, with the same size and the
 * same bytes); no plaintext reaches a sink unless the whole file (tag and
 * padding) verified; a changed file never verifies; an unchanged one gives
 * back its exact plaintext.
 */
#include <string.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "fz_common.h"
#include "su_format.h"

#define FZ_NORIG 8
static const size_t fz_orig_sizes[FZ_NORIG] = { 0, 1, 15, 16, 33, 4099, 300000,
                                                1100000 };

static su_kek_t fz_kek, fz_wrong;
static unsigned char *fz_orig[FZ_NORIG];      /* stored files */
static size_t fz_orig_len[FZ_NORIG];
static unsigned char *fz_plain;               /* plaintext of the largest */
static size_t fz_plain_max;

/* The data key of forged files: encryption key then MAC key. */
static unsigned char fz_datakey[SU_FMT_DATAKEY_LEN];

static unsigned char fz_plain_byte(size_t i)
{
    return (unsigned char)(i * 7 + (i >> 8));
}

static void fz_make_original(int k)
{
    apr_pool_t *p = fz_pool_new();
    su_enc_t *enc;
    size_t n = fz_orig_sizes[k], cap = n + SU_FMT_HEADER_LEN + SU_FMT_BLOCK + SU_FMT_TAG_LEN, len, out;
    unsigned char *f = malloc(cap);

    FZ_CHECK(f != NULL, "malloc");
    FZ_CHECK(su_fmt_enc_create(p, &fz_kek, &enc, f) == SU_OK, "su_fmt_enc_create");
    len = SU_FMT_HEADER_LEN;
    FZ_CHECK(su_enc_update(enc, fz_plain, n, f + len, &out) == SU_OK, "su_enc_update");
    len += out;
    FZ_CHECK(su_enc_final(enc, f + len, &out) == SU_OK, "su_enc_final");
    len += out;
    FZ_CHECK(su_enc_plain_size(enc) == n, "plain size");
    fz_orig[k] = f;
    fz_orig_len[k] = len;
    apr_pool_destroy(p);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    int i;

    (void)argc;
    (void)argv;
    fz_apr_init();
    for (i = 0; i < SU_KEY_LEN; i++)
        fz_kek.key[i] = (unsigned char)i;
    su_key_compute_id(&fz_kek);
    fz_kek.path = "fuzz-kek";
    /* a different key that claims the same id: its unwrap must fail and be skipped */
    for (i = 0; i < SU_KEY_LEN; i++)
        fz_wrong.key[i] = (unsigned char)(0xff - i);
    memcpy(fz_wrong.id, fz_kek.id, sizeof fz_wrong.id);
    memcpy(fz_wrong.id_hex, fz_kek.id_hex, sizeof fz_wrong.id_hex);
    fz_wrong.path = "fuzz-wrong-kek";
    for (i = 0; i < SU_FMT_DATAKEY_LEN; i++)
        fz_datakey[i] = (unsigned char)(0x40 + i);

    fz_plain_max = fz_orig_sizes[FZ_NORIG - 1];
    fz_plain = malloc(fz_plain_max);
    FZ_CHECK(fz_plain != NULL, "malloc");
    for (i = 0; (size_t)i < fz_plain_max; i++)
        fz_plain[i] = fz_plain_byte((size_t)i);
    for (i = 0; i < FZ_NORIG; i++)
        fz_make_original(i);
    return 0;
}

/* ---- reading one file three ways ---- */

typedef struct fz_sink {
    unsigned long long h;
    size_t len;
    const unsigned char *expect;   /* plaintext the bytes must match, or NULL */
    size_t expect_len;
} fz_sink_t;

static int fz_sink(void *ctx, const unsigned char *buf, size_t len)
{
    fz_sink_t *s = ctx;

    FZ_CHECK(buf != NULL && len > 0, "empty sink call");
    if (s->expect != NULL)
        FZ_CHECK(s->len + len <= s->expect_len &&
                 memcmp(buf, s->expect + s->len, len) == 0,
                 "decrypted bytes differ from the plaintext");
    s->h = fz_fnv(s->h, buf, len);
    s->len += len;
    return 0;
}

typedef struct fz_outcome {
    su_err_t verify, open, decrypt;
    uint64_t size;
    unsigned long long h;       /* digest of the plaintext (reader) */
    size_t sink_len;            /* bytes su_fmt_file_decrypt handed out */
    unsigned long long sink_h;
} fz_outcome_t;

static void fz_read_all(su_fmt_reader_t *rd, uint64_t size, fz_sink_t *s)
{
    const unsigned char *d;
    size_t len;
    int calls = 0;

    for (;;) {
        FZ_CHECK(su_fmt_reader_next(rd, &d, &len) == SU_OK,
                 "reader failed after a verified open");
        if (len == 0)
            break;
        FZ_CHECK(len <= 1024 * 1024, "reader piece over 1 MiB");
        FZ_CHECK(++calls <= 64, "reader does not end");
        fz_sink(s, d, len);
    }
    FZ_CHECK(s->len == size, "reader gave a different size than verify");
    FZ_CHECK(su_fmt_reader_next(rd, &d, &len) == SU_OK && len == 0,
             "reader goes on after its end");
}

static void fz_read_file(const su_kek_t *const *keks, int nkeks,
                         const unsigned char *expect, size_t expect_len,
                         fz_outcome_t *o)
{
    apr_pool_t *p = fz_pool_new();
    const char *path = fz_path("in");
    su_fmt_reader_t *rd = NULL;
    uint64_t rsize = 0;
    fz_sink_t rs = { FZ_FNV_INIT, 0, expect, expect_len };
    fz_sink_t ds = { FZ_FNV_INIT, 0, expect, expect_len };

    o->verify = su_fmt_file_verify(p, path, keks, nkeks, &o->size);
    o->open = su_fmt_reader_open(p, path, keks, nkeks, &rd, &rsize);
    FZ_CHECK((o->open == SU_OK) == (rd != NULL), "reader handle vs result");
    if (o->open == SU_OK) {
        FZ_CHECK(rsize == o->size, "reader size differs from verify size");
        fz_read_all(rd, rsize, &rs);
        su_fmt_reader_close(rd);
    }
    o->h = rs.h;
    o->decrypt = su_fmt_file_decrypt(p, path, keks, nkeks, fz_sink, &ds);
    o->sink_len = ds.len;
    o->sink_h = ds.h;
    apr_pool_destroy(p);

    FZ_CHECK(o->verify == SU_OK || o->verify == SU_ERR_INTEGRITY,
             "verify: neither ok nor an integrity error");
    FZ_CHECK(o->verify == o->open, "verify and reader disagree");
    if (o->verify != SU_OK)
        FZ_CHECK(o->size == 0, "a size for a file that failed");
}

/* The agreement every mode shares: the three readers succeed or fail
 * together, and a file that fails hands out no plaintext at all. */
static void fz_check_agree(const fz_outcome_t *o)
{
    if (o->verify == SU_OK) {
        FZ_CHECK(o->decrypt == SU_OK, "decrypt failed on a verified file");
        FZ_CHECK(o->sink_len == o->size && o->sink_h == o->h,
                 "decrypt and reader gave different plaintext");
    } else {
        FZ_CHECK(o->decrypt != SU_OK, "decrypt succeeded on a file that failed");
        FZ_CHECK(o->sink_len == 0, "plaintext of an unverified file reached the sink");
    }
}

static void fz_keks(unsigned ctl, const su_kek_t **keks, int *n)
{
    if (ctl & 4) {
        keks[0] = &fz_wrong;
        keks[1] = &fz_kek;
        *n = 2;
    } else {
        keks[0] = &fz_kek;
        *n = 1;
    }
}

/* ---- modes ---- */

static void fz_mode_raw(unsigned ctl, const uint8_t *d, size_t n, int keyed)
{
    const su_kek_t *keks[2];
    fz_outcome_t o;
    int nk;
    unsigned char *f = malloc(n + 1);

    FZ_CHECK(f != NULL, "malloc");
    memcpy(f, d, n);
    if (keyed && n >= SU_FMT_MAGIC_LEN + SU_KEY_ID_LEN) {
        memcpy(f, SU_FMT_MAGIC, SU_FMT_MAGIC_LEN);
        memcpy(f + SU_FMT_MAGIC_LEN, fz_kek.id, SU_KEY_ID_LEN);
    }
    fz_write_file(fz_path("in"), f, n, 0600);
    free(f);
    fz_keks(ctl, keks, &nk);
    fz_read_file(keks, nk, NULL, 0, &o);
    fz_check_agree(&o);
}

static void fz_mode_mutate(unsigned ctl, const uint8_t *d, size_t n)
{
    const su_kek_t *keks[2];
    fz_outcome_t o;
    int k, nk, changed;
    size_t len;
    unsigned char *f;

    if (n < 1)
        return;
    k = d[0] % FZ_NORIG;
    f = fz_edited_copy(fz_orig[k], fz_orig_len[k], d + 1, n - 1, &len, &changed);
    fz_write_file(fz_path("in"), f, len, 0600);
    free(f);

    fz_keks(ctl, keks, &nk);
    fz_read_file(keks, nk, fz_plain, fz_orig_sizes[k], &o);
    fz_check_agree(&o);
    if (changed) {
        FZ_CHECK(o.verify != SU_OK, "a changed file verified");
    } else {
        FZ_CHECK(o.verify == SU_OK, "an intact file failed");
        FZ_CHECK(o.size == fz_orig_sizes[k] && o.sink_len == fz_orig_sizes[k],
                 "an intact file gave the wrong size");
    }
}

/* The stored-file bytes for plaintext blocks pt (already padded, or not). */
static size_t fz_forge(const unsigned char iv[SU_FMT_IV_LEN],
                       const unsigned char *pt, size_t ptlen, int bad_tag,
                       unsigned char *f)
{
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    unsigned char *ct = f + SU_FMT_HEADER_LEN;
    unsigned int taglen = 0;
    int l1 = 0, l2 = 0;

    memcpy(f, SU_FMT_MAGIC, SU_FMT_MAGIC_LEN);
    memcpy(f + 8, fz_kek.id, SU_KEY_ID_LEN);
    FZ_CHECK(su_crypto_wrap(fz_kek.key, fz_datakey, SU_FMT_DATAKEY_LEN, f + 16) == SU_OK,
             "su_crypto_wrap");
    memcpy(f + 88, iv, SU_FMT_IV_LEN);
    FZ_CHECK(c != NULL &&
             EVP_EncryptInit_ex(c, EVP_aes_256_cbc(), NULL, fz_datakey, iv) == 1 &&
             EVP_CIPHER_CTX_set_padding(c, 0) == 1 &&
             EVP_EncryptUpdate(c, ct, &l1, pt, (int)ptlen) == 1 &&
             EVP_EncryptFinal_ex(c, ct + l1, &l2) == 1 &&
             (size_t)(l1 + l2) == ptlen, "forge: encrypt");
    EVP_CIPHER_CTX_free(c);
    FZ_CHECK(HMAC(EVP_sha256(), fz_datakey + 32, 32, f, SU_FMT_HEADER_LEN + ptlen,
                  ct + ptlen, &taglen) != NULL && taglen == SU_FMT_TAG_LEN,
             "forge: hmac");
    if (bad_tag)
        ct[ptlen + (ptlen % SU_FMT_TAG_LEN)] ^= 0x01;
    return SU_FMT_HEADER_LEN + ptlen + SU_FMT_TAG_LEN;
}

/* PKCS#7, checked apart from the code under test: the plaintext length, or -1. */
static long fz_unpad(const unsigned char *pt, size_t len)
{
    unsigned p;
    size_t i;

    if (len == 0)
        return -1;
    p = pt[len - 1];
    if (p == 0 || p > SU_FMT_BLOCK)
        return -1;
    for (i = 0; i < p; i++)
        if (pt[len - 1 - i] != p)
            return -1;
    return (long)(len - p);
}

static void fz_mode_forge(unsigned ctl, const uint8_t *d, size_t n)
{
    const su_kek_t *keks[2];
    fz_outcome_t o;
    unsigned char *f;
    size_t ptlen, flen;
    int nk, bad_tag;
    long plen;

    if (n < 1 + SU_FMT_IV_LEN)
        return;
    bad_tag = d[0] & 1;
    ptlen = (n - 1 - SU_FMT_IV_LEN) / SU_FMT_BLOCK * SU_FMT_BLOCK;
    f = malloc(SU_FMT_HEADER_LEN + ptlen + SU_FMT_TAG_LEN);
    FZ_CHECK(f != NULL, "malloc");
    flen = fz_forge(d + 1, d + 1 + SU_FMT_IV_LEN, ptlen, bad_tag, f);
    fz_write_file(fz_path("in"), f, flen, 0600);
    free(f);

    fz_keks(ctl, keks, &nk);
    fz_read_file(keks, nk, d + 1 + SU_FMT_IV_LEN, ptlen, &o);
    plen = fz_unpad(d + 1 + SU_FMT_IV_LEN, ptlen);
    if (bad_tag || plen < 0) {
        /* a right tag over wrong padding fails as a whole too: verify
         * refuses it, so not one byte of it may be handed out */
        FZ_CHECK(o.verify == SU_ERR_INTEGRITY, "a forged file verified");
    } else {
        FZ_CHECK(o.verify == SU_OK, "a well-formed file failed");
        FZ_CHECK(o.size == (uint64_t)plen, "wrong plaintext size");
    }
    fz_check_agree(&o);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    unsigned ctl;

    if (size < 1)
        return 0;
    ctl = data[0];
    switch (ctl % 4) {
    case 0:
        fz_mode_raw(ctl, data + 1, size - 1, 0);
        break;
    case 1:
        fz_mode_raw(ctl, data + 1, size - 1, 1);
        break;
    case 2:
        fz_mode_mutate(ctl, data + 1, size - 1);
        break;
    default:
        fz_mode_forge(ctl, data + 1, size - 1);
        break;
    }
    return 0;
}
