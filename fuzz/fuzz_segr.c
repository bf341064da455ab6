/*
 * libFuzzer target: reading format v2 files (su_segr.c through su_format.h):
 * su_fmt_file_verify_id, the reader (whole and a range) and
 * su_fmt_file_decrypt_id on one file, read as id FZ_ID with a fixed KEK.
 *
 * Input layout: byte 0 chooses the mode (byte 0 % 3):
 *   0  raw:    the rest is the file as it is (byte 0 bit 2: magic, this
 *              KEK's id and a valid segment size written over its start,
 *              so that the unwrap and the header tag run)
 *   1  mutate: byte 1 picks a valid file made at start-up, the rest is a
 *              list of 4-byte edits (op, offset, offset, value): xor a
 *              byte, set a byte, truncate, append
 *   2  forge:  a file whose every tag is right (made here with a known
 *              data key), so that the reader's own rules are what decides:
 *              then per segment 3 bytes: flag (0-2), index change (0: its
 *              position, else position + it - 128 ... as a byte), length
 *              (0: full, else that many bytes) — a segment the fuzzer can
 *              tag with any flag and index and give any length
 *
 * Invariants: nothing crashes; verify, the reader and decrypt agree; no
 * byte given out is a wrong one (the plaintext of forged and original files
 * is known); a changed original never verifies; an unchanged one gives its
 * plaintext; a forged file verifies exactly when an oracle written here
 * from the format's rules says it is well formed.
 */
#include <string.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "fz_common.h"
#include "su_format.h"
#include "su_segw.h"

#define FZ_ID  "00112233445566778899aabbccddeeff"
#define FZ_SEG SU_SEG_SIZE_MIN
#define FZ_NORIG 6
static const size_t fz_orig_sizes[FZ_NORIG] = { 0, 1, FZ_SEG - 1, FZ_SEG,
                                                3 * FZ_SEG + 17, 300 * FZ_SEG + 5 };

static su_kek_t fz_kek;
static unsigned char *fz_orig[FZ_NORIG];
static size_t fz_orig_len[FZ_NORIG];
static unsigned char *fz_plain;
static unsigned char fz_dk[64];
static const unsigned char fz_nonce[16] = "fuzz-nonce-0123";

/* ---- originals, made by su_segw ---- */

typedef struct fz_buf {
    unsigned char *d;
    size_t len, cap;
} fz_buf_t;

static su_err_t fz_out(void *ctx, const unsigned char *b, size_t len)
{
    fz_buf_t *o = ctx;

    FZ_CHECK(o->len + len <= o->cap, "original too large");
    memcpy(o->d + o->len, b, len);
    o->len += len;
    return SU_OK;
}

static void fz_make_original(int k)
{
    apr_pool_t *p = fz_pool_new();
    size_t n = fz_orig_sizes[k];
    fz_buf_t o = { NULL, 0, su_seg_file_size(FZ_SEG, n) };
    su_segw_t *w;

    o.d = malloc(o.cap);
    FZ_CHECK(o.d != NULL, "malloc");
    FZ_CHECK(su_segw_create(p, &fz_kek, FZ_ID, FZ_SEG, NULL, fz_out, &o, &w) == SU_OK,
             "su_segw_create");
    FZ_CHECK(su_segw_write(w, fz_plain, n) == SU_OK && su_segw_finish(w) == SU_OK,
             "su_segw");
    FZ_CHECK(o.len == o.cap, "file size");
    fz_orig[k] = o.d;
    fz_orig_len[k] = o.len;
    apr_pool_destroy(p);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    size_t i, max = fz_orig_sizes[FZ_NORIG - 1];

    (void)argc;
    (void)argv;
    fz_apr_init();
    for (i = 0; i < SU_KEY_LEN; i++)
        fz_kek.key[i] = (unsigned char)i;
    su_key_compute_id(&fz_kek);
    fz_kek.path = "fuzz-kek";
    for (i = 0; i < sizeof fz_dk; i++)
        fz_dk[i] = (unsigned char)(0x40 + i);
    fz_plain = malloc(max + FZ_SEG);
    FZ_CHECK(fz_plain != NULL, "malloc");
    for (i = 0; i < max + FZ_SEG; i++)
        fz_plain[i] = (unsigned char)(i * 7 + (i >> 8));
    for (i = 0; i < FZ_NORIG; i++)
        fz_make_original((int)i);
    return 0;
}

/* ---- reading one file three ways ---- */

typedef struct fz_sink {
    size_t len;
    const unsigned char *expect;   /* the plaintext, or NULL if unknown */
    size_t expect_len;
} fz_sink_t;

static int fz_sink(void *ctx, const unsigned char *buf, size_t len)
{
    fz_sink_t *s = ctx;

    if (s->expect != NULL)
        FZ_CHECK(s->len + len <= s->expect_len
                 && memcmp(buf, s->expect + s->len, len) == 0,
                 "a byte given out is not the plaintext's");
    s->len += len;
    return 0;
}

typedef struct fz_outcome {
    su_err_t verify, read, decrypt;
    uint64_t size;
} fz_outcome_t;

/* The reader over [off, off + len) of what open gave: SU_OK iff all of it. */
static su_err_t fz_read(const fz_sink_t *want, uint64_t *size, unsigned sel)
{
    apr_pool_t *p = fz_pool_new();
    unsigned char *out = malloc(SU_FMT_READ_MAX);
    su_fmt_reader_t *rd = NULL;
    fz_sink_t s = *want;
    uint64_t off = 0, len;
    size_t n = 0;
    su_err_t rv = su_fmt_reader_open_id(p, fz_path("in"), FZ_ID, &(const su_kek_t *){ &fz_kek },
                                        1, 0, &rd, size);

    FZ_CHECK(out != NULL, "malloc");
    if (rv == SU_OK) {
        len = *size;
        if (sel & 1) {          /* a range: its bytes are the plaintext's too */
            off = *size / 3;
            len = *size - off - *size / 5;
        }
        FZ_CHECK(su_fmt_reader_range(rd, off, len) == SU_OK, "range");
        if (s.expect != NULL) {
            s.expect += off;
            s.expect_len = s.expect_len > off ? s.expect_len - off : 0;
        }
        do {
            su_fmt_reader_begin(rd, out);
            rv = su_fmt_reader_end(rd, &n);
            if (rv == SU_OK && n > 0)
                fz_sink(&s, out, n);
        } while (rv == SU_OK && n > 0);
        FZ_CHECK(rv != SU_OK || s.len == len, "reader gave another length");
        su_fmt_reader_close(rd);
    }
    free(out);
    apr_pool_destroy(p);
    return rv;
}

static void fz_read_file(const unsigned char *expect, size_t expect_len,
                         unsigned sel, fz_outcome_t *o)
{
    apr_pool_t *p = fz_pool_new();
    const su_kek_t *keks[1] = { &fz_kek };
    fz_sink_t s = { 0, expect, expect_len };
    uint64_t rsize = 0;

    o->verify = su_fmt_file_verify_id(p, fz_path("in"), FZ_ID, keks, 1, &o->size);
    o->decrypt = su_fmt_file_decrypt_id(p, fz_path("in"), FZ_ID, keks, 1, fz_sink, &s);
    apr_pool_destroy(p);
    o->read = fz_read(&(fz_sink_t){ 0, expect, expect_len }, &rsize, sel);
    FZ_CHECK(o->verify == SU_OK || o->verify == SU_ERR_INTEGRITY,
             "verify: neither ok nor an integrity error");
    FZ_CHECK((o->verify == SU_OK) == (o->decrypt == SU_OK), "verify and decrypt disagree");
    if (o->verify == SU_OK) {
        FZ_CHECK(s.len == o->size && rsize == o->size, "sizes differ");
        FZ_CHECK(o->read == SU_OK, "a range of a verified file failed");
    } else {
        FZ_CHECK(o->size == 0, "a size for a file that failed");
    }
}

/* ---- modes ---- */

static void fz_mode_raw(unsigned ctl, const uint8_t *d, size_t n)
{
    unsigned char *f = malloc(n + 1);
    fz_outcome_t o;

    FZ_CHECK(f != NULL, "malloc");
    memcpy(f, d, n);
    if ((ctl & 4) && n >= SU_SEG_OFF_SIZE + 4) {
        memcpy(f, SU_SEG_MAGIC, SU_SEG_MAGIC_LEN);
        memcpy(f + SU_SEG_OFF_KEYID, fz_kek.id, SU_KEY_ID_LEN);
        memcpy(f + SU_SEG_OFF_SIZE, "\x00\x00\x10\x00", 4);
    }
    fz_write_file(fz_path("in"), f, n, 0600);
    free(f);
    fz_read_file(NULL, 0, ctl >> 3, &o);
}

static void fz_mode_mutate(unsigned ctl, const uint8_t *d, size_t n)
{
    fz_outcome_t o;
    int k, changed;
    size_t len;
    unsigned char *f;

    if (n < 1)
        return;
    k = d[0] % FZ_NORIG;
    f = fz_edited_copy(fz_orig[k], fz_orig_len[k], d + 1, n - 1, &len, &changed);
    fz_write_file(fz_path("in"), f, len, 0600);
    free(f);
    fz_read_file(fz_plain, fz_orig_sizes[k], ctl >> 3, &o);
    if (changed)
        FZ_CHECK(o.verify != SU_OK, "a changed file verified");
    else
        FZ_CHECK(o.verify == SU_OK && o.size == fz_orig_sizes[k], "an intact file failed");
}

/* ---- forge: every tag right, under a data key known here ---- */

static size_t fz_forge_header(unsigned char *h)
{
    unsigned char msg[1 + 16 + 108];
    unsigned int tl = 0;
    int i;

    memcpy(h, SU_SEG_MAGIC, 8);
    memcpy(h + 8, fz_kek.id, 8);
    FZ_CHECK(su_crypto_wrap(fz_kek.key, fz_dk, 64, h + 16) == SU_OK, "wrap");
    memcpy(h + 88, "\x00\x00\x10\x00", 4);
    memcpy(h + 92, fz_nonce, 16);
    msg[0] = 0x01;
    for (i = 0; i < 16; i++)
        sscanf(&FZ_ID[2 * i], "%2hhx", &msg[1 + i]);
    memcpy(msg + 17, h, 108);
    HMAC(EVP_sha256(), fz_dk + 32, 32, msg, sizeof msg, h + 108, &tl);
    return SU_SEG_HEADER_LEN;
}

static size_t fz_forge_seg(uint64_t index, unsigned flag, const unsigned char *pt,
                           size_t len, unsigned char *out)
{
    static unsigned char msg[42 + 16 + FZ_SEG + 16];
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    unsigned int tl = 0;
    int l1 = 0, l2 = 0, i;
    size_t ct;

    memset(out, 0x5a, 16);     /* any IV: it is fixed to keep runs reproducible */
    FZ_CHECK(c != NULL && EVP_EncryptInit_ex(c, EVP_aes_256_cbc(), NULL, fz_dk, out) == 1
             && EVP_CIPHER_CTX_set_padding(c, flag != SU_SEG_MORE || len % 16 != 0) == 1
             && EVP_EncryptUpdate(c, out + 16, &l1, pt, (int)len) == 1
             && EVP_EncryptFinal_ex(c, out + 16 + l1, &l2) == 1, "forge: encrypt");
    EVP_CIPHER_CTX_free(c);
    ct = (size_t)(l1 + l2);
    msg[0] = 0x02;
    for (i = 0; i < 16; i++)
        sscanf(&FZ_ID[2 * i], "%2hhx", &msg[1 + i]);
    memcpy(msg + 17, fz_nonce, 16);
    for (i = 0; i < 8; i++)
        msg[33 + i] = (unsigned char)(index >> (56 - 8 * i));
    msg[41] = (unsigned char)flag;
    memcpy(msg + 42, out, 16 + ct);
    HMAC(EVP_sha256(), fz_dk + 32, 32, msg, 42 + 16 + ct, out + 16 + ct, &tl);
    return 16 + ct + 32;
}

#define FZ_FORGE_MAX 12

static void fz_mode_forge(unsigned ctl, const uint8_t *d, size_t n)
{
    size_t nseg = n / 3 > FZ_FORGE_MAX ? FZ_FORGE_MAX : n / 3, i, flen, plen = 0;
    unsigned char *f = malloc(SU_SEG_HEADER_LEN + FZ_FORGE_MAX * (FZ_SEG + 64));
    int ok = nseg > 0;
    fz_outcome_t o;

    FZ_CHECK(f != NULL, "malloc");
    flen = fz_forge_header(f);
    for (i = 0; i < nseg; i++) {
        unsigned flag = d[3 * i] % 3;
        uint64_t index = d[3 * i + 1] == 0 ? i : i + d[3 * i + 1] - 128;
        size_t len = d[3 * i + 2] == 0 ? FZ_SEG : (size_t)d[3 * i + 2] * 13 % FZ_SEG;
        int last = i + 1 == nseg;

        /* the oracle: positions in order, LAST exactly at the end, every
         * other segment full */
        if (index != i || flag != (last ? SU_SEG_LAST : SU_SEG_MORE)
            || (!last && len != FZ_SEG))
            ok = 0;
        flen += fz_forge_seg(index, flag, fz_plain + plen, len, f + flen);
        plen += len;
    }
    fz_write_file(fz_path("in"), f, flen, 0600);
    free(f);
    fz_read_file(ok ? fz_plain : NULL, ok ? plen : 0, ctl >> 3, &o);
    if (ok)
        FZ_CHECK(o.verify == SU_OK && o.size == plen, "a well-formed file failed");
    else
        FZ_CHECK(o.verify == SU_ERR_INTEGRITY, "a malformed file verified");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    unsigned ctl;

    if (size < 1)
        return 0;
    ctl = data[0];
    switch (ctl % 3) {
    case 0:
        fz_mode_raw(ctl, data + 1, size - 1);
        break;
    case 1:
        fz_mode_mutate(ctl, data + 1, size - 1);
        break;
    default:
        fz_mode_forge(ctl, data + 1, size - 1);
        break;
    }
    return 0;
}
