/* Unit tests for the segmented format, version 2 (su_seg.c). */
#include <check.h>
#include <string.h>

#include <apr_general.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "su_check.h"
#include "su_seg.h"
#include "su_segw.h"

#define ID_A "0123456789abcdef0123456789abcdef"
#define ID_B "fedcba9876543210fedcba9876543210"
#define SEG  SU_SEG_SIZE_MIN

static apr_pool_t *pool;
static su_kek_t k1, k2;
static const su_kek_t *keks1[1];

static void setup(void)
{
    ck_assert_int_eq(apr_pool_create(&pool, NULL), APR_SUCCESS);
    su_check_make_kek(&k1, 1);
    su_check_make_kek(&k2, 2);
    keks1[0] = &k1;
}

static void teardown(void)
{
    apr_pool_destroy(pool);
}

/* A new file of SEG-byte segments under k1 and a context for it. */
static su_seg_ctx_t *new_file(const char *id, unsigned char *hdr, su_seg_file_t **f)
{
    su_seg_ctx_t *c = NULL;

    ck_assert_int_eq(su_seg_create(pool, &k1, id, SEG, NULL, hdr, f), SU_OK);
    ck_assert_int_eq(su_seg_ctx_create(pool, *f, &c), SU_OK);
    return c;
}

static su_seg_ctx_t *reopen(const char *id, const unsigned char *hdr)
{
    su_seg_file_t *f = NULL;
    su_seg_ctx_t *c = NULL;

    ck_assert_int_eq(su_seg_open(pool, keks1, 1, id, hdr, &f, NULL), SU_OK);
    ck_assert_int_eq(su_seg_ctx_create(pool, f, &c), SU_OK);
    return c;
}

/* Every length a last segment can have round-trips, through a reopened header. */
START_TEST(round_trip)
{
    static const size_t lens[] = { 0, 1, 15, 16, 17, SEG - 16, SEG - 1, SEG };
    unsigned char hdr[SU_SEG_HEADER_LEN], in[SEG], st[SEG + 64], out[SEG + 16];
    su_seg_file_t *f;
    su_seg_ctx_t *w = new_file(ID_A, hdr, &f), *r = reopen(ID_A, hdr);
    size_t len = lens[_i], stlen, outlen;

    RAND_bytes(in, sizeof in);
    ck_assert_int_eq(su_seg_seal(w, 7, SU_SEG_LAST, in, len, st, &stlen), SU_OK);
    ck_assert_uint_eq(stlen, su_seg_stored_len(SEG, len, SU_SEG_LAST));
    ck_assert_int_eq(su_seg_unseal(r, 7, SU_SEG_LAST, st, stlen, out, &outlen), SU_OK);
    ck_assert_uint_eq(outlen, len);
    ck_assert(memcmp(in, out, len) == 0);
}
END_TEST

/* The tag is the documented HMAC, recomputed here from the layout alone;
 * the ciphertext is plain AES-256-CBC under the unwrapped data key. */
START_TEST(layout_as_documented)
{
    unsigned char hdr[SU_SEG_HEADER_LEN], in[SEG], st[SEG + 64], dk[64], mac[32];
    unsigned char msg[1 + 16 + 16 + 9], id[16], pt[SEG + 16], buf[SEG + 128];
    unsigned int maclen = 0;
    int n1 = 0, n2 = 0, i;
    size_t stlen = 0;
    su_seg_file_t *f;
    su_seg_ctx_t *w = new_file(ID_A, hdr, &f);
    EVP_CIPHER_CTX *x = EVP_CIPHER_CTX_new();
    EVP_CIPHER_CTX *u = EVP_CIPHER_CTX_new();

    memset(in, 'a', sizeof in);
    ck_assert_int_eq(su_seg_seal(w, 0x0102030405060708ull, SU_SEG_MORE, in, SEG,
                                 st, &stlen), SU_OK);
    ck_assert_uint_eq(stlen, SEG + 48);
    ck_assert_uint_eq(su_seg_header_size(hdr), SEG);
    /* unwrap the data key as another tool would */
    ck_assert_int_eq(EVP_CipherInit_ex(u, EVP_aes_256_wrap(), NULL, k1.key, NULL, 0), 1);
    ck_assert_int_eq(EVP_CipherUpdate(u, dk, &n1, hdr + 16, 72), 1);
    ck_assert_int_eq(EVP_CipherFinal_ex(u, dk + n1, &n2), 1);
    ck_assert_int_eq(n1 + n2, 64);
    for (i = 0; i < 16; i++)
        sscanf(ID_A + 2 * i, "%2hhx", &id[i]);
    msg[0] = 0x02;
    memcpy(msg + 1, id, 16);
    memcpy(msg + 17, hdr + SU_SEG_OFF_NONCE, 16);
    for (i = 0; i < 8; i++)
        msg[33 + i] = (unsigned char)(i + 1);
    msg[41] = 0;
    memcpy(buf, msg, sizeof msg);
    memcpy(buf + sizeof msg, st, stlen - 32);
    HMAC(EVP_sha256(), dk + 32, 32, buf, sizeof msg + stlen - 32, mac, &maclen);
    ck_assert(memcmp(mac, st + stlen - 32, 32) == 0);
    /* the header tag likewise */
    msg[0] = 0x01;
    memcpy(buf, msg, 17);
    memcpy(buf + 17, hdr, 108);
    HMAC(EVP_sha256(), dk + 32, 32, buf, 17 + 108, mac, &maclen);
    ck_assert(memcmp(mac, hdr + 108, 32) == 0);
    /* no padding on a segment that is not the last */
    ck_assert_int_eq(EVP_DecryptInit_ex(x, EVP_aes_256_cbc(), NULL, dk, st), 1);
    EVP_CIPHER_CTX_set_padding(x, 0);
    ck_assert_int_eq(EVP_DecryptUpdate(x, pt, &n1, st + 16, SEG), 1);
    ck_assert_int_eq(EVP_DecryptFinal_ex(x, pt + n1, &n2), 1);
    ck_assert_int_eq(n1 + n2, SEG);
    ck_assert(memcmp(pt, in, SEG) == 0);
    EVP_CIPHER_CTX_free(x);
    EVP_CIPHER_CTX_free(u);
    OPENSSL_cleanse(dk, sizeof dk);
}
END_TEST

/* Index, flag, id and file are all bound: any other is an integrity error. */
START_TEST(binding)
{
    unsigned char hdr[SU_SEG_HEADER_LEN], hdr2[SU_SEG_HEADER_LEN];
    unsigned char in[SEG], st[SEG + 64], out[SEG + 16];
    su_seg_file_t *f, *f2;
    su_seg_ctx_t *w = new_file(ID_A, hdr, &f), *other = new_file(ID_A, hdr2, &f2);
    size_t stlen, outlen;

    RAND_bytes(in, sizeof in);
    ck_assert_int_eq(su_seg_seal(w, 3, SU_SEG_LAST, in, 100, st, &stlen), SU_OK);
    ck_assert_int_eq(su_seg_unseal(w, 3, SU_SEG_LAST, st, stlen, out, &outlen), SU_OK);
    ck_assert_int_eq(su_seg_unseal(w, 2, SU_SEG_LAST, st, stlen, out, &outlen),
                     SU_ERR_INTEGRITY);
    ck_assert_int_eq(su_seg_unseal(w, 3, SU_SEG_PENDING, st, stlen, out, &outlen),
                     SU_ERR_INTEGRITY);
    ck_assert_uint_eq(outlen, 0);
    /* another file with the same id (and so its own keys and nonce) */
    ck_assert_int_eq(su_seg_unseal(other, 3, SU_SEG_LAST, st, stlen, out, &outlen),
                     SU_ERR_INTEGRITY);
    /* a header under another id */
    {
        su_seg_file_t *g = NULL;
        ck_assert_int_eq(su_seg_open(pool, keks1, 1, ID_B, hdr, &g, NULL),
                         SU_ERR_INTEGRITY);
        ck_assert_ptr_null(g);
    }
    /* a flipped ciphertext bit, a flipped tag bit */
    st[20] ^= 1;
    ck_assert_int_eq(su_seg_unseal(w, 3, SU_SEG_LAST, st, stlen, out, &outlen),
                     SU_ERR_INTEGRITY);
    st[20] ^= 1;
    st[stlen - 1] ^= 0x80;
    ck_assert_int_eq(su_seg_unseal(w, 3, SU_SEG_LAST, st, stlen, out, &outlen),
                     SU_ERR_INTEGRITY);
}
END_TEST

/* A full segment stored as MORE cannot be taken for a last one, nor a
 * pending one for either. */
START_TEST(flags_not_interchangeable)
{
    unsigned char hdr[SU_SEG_HEADER_LEN], in[SEG], st[SEG + 64], out[SEG + 16];
    su_seg_file_t *f;
    su_seg_ctx_t *w = new_file(ID_A, hdr, &f);
    size_t stlen, outlen;

    memset(in, 1, sizeof in);
    ck_assert_int_eq(su_seg_seal(w, 0, SU_SEG_MORE, in, SEG, st, &stlen), SU_OK);
    ck_assert_int_eq(su_seg_unseal(w, 0, SU_SEG_LAST, st, stlen, out, &outlen),
                     SU_ERR_INTEGRITY);
    ck_assert_int_eq(su_seg_seal(w, 0, SU_SEG_PENDING, in, 10, st, &stlen), SU_OK);
    ck_assert_int_eq(su_seg_unseal(w, 0, SU_SEG_LAST, st, stlen, out, &outlen),
                     SU_ERR_INTEGRITY);
    ck_assert_int_eq(su_seg_unseal(w, 0, SU_SEG_PENDING, st, stlen, out, &outlen),
                     SU_OK);
    ck_assert_uint_eq(outlen, 10);
    /* a MORE segment must be full */
    ck_assert_int_eq(su_seg_seal(w, 0, SU_SEG_MORE, in, SEG - 16, st, &stlen),
                     SU_ERR_INTERNAL);
}
END_TEST

/* The header: tampering anywhere fails; a wrong key fails; a rewrap
 * keeps every segment valid under the new key only. */
START_TEST(header_and_rewrap)
{
    unsigned char hdr[SU_SEG_HEADER_LEN], nh[SU_SEG_HEADER_LEN];
    unsigned char in[64], st[SEG + 64], out[SEG + 16];
    const su_kek_t *keks2[1] = { &k2 }, *both[2] = { &k1, &k2 }, *used = NULL;
    su_seg_file_t *f, *g;
    su_seg_ctx_t *w = new_file(ID_A, hdr, &f), *c;
    size_t stlen, outlen;
    int i;

    memset(in, 2, sizeof in);
    ck_assert_int_eq(su_seg_seal(w, 0, SU_SEG_LAST, in, sizeof in, st, &stlen), SU_OK);
    for (i = 0; i < SU_SEG_HEADER_LEN; i++) {
        hdr[i] ^= 0x10;
        ck_assert_int_eq(su_seg_open(pool, keks1, 1, ID_A, hdr, &g, NULL),
                         SU_ERR_INTEGRITY);
        hdr[i] ^= 0x10;
    }
    ck_assert_int_eq(su_seg_open(pool, keks2, 1, ID_A, hdr, &g, NULL), SU_ERR_INTEGRITY);
    ck_assert_int_eq(su_seg_rewrap(pool, keks1, 1, ID_A, hdr, &k2, nh), SU_OK);
    ck_assert(memcmp(nh + SU_SEG_OFF_SIZE, hdr + SU_SEG_OFF_SIZE, 20) == 0);
    ck_assert(memcmp(nh + SU_SEG_OFF_KEYID, k2.id, SU_KEY_ID_LEN) == 0);
    ck_assert_int_eq(su_seg_open(pool, keks1, 1, ID_A, nh, &g, NULL), SU_ERR_INTEGRITY);
    ck_assert_int_eq(su_seg_open(pool, both, 2, ID_A, nh, &g, &used), SU_OK);
    ck_assert_ptr_eq(used, &k2);
    ck_assert_int_eq(su_seg_ctx_create(pool, g, &c), SU_OK);
    ck_assert_int_eq(su_seg_unseal(c, 0, SU_SEG_LAST, st, stlen, out, &outlen), SU_OK);
    ck_assert(memcmp(out, in, sizeof in) == 0);
    /* a given nonce is kept (a converted file keeps its identity) */
    ck_assert_int_eq(su_seg_create(pool, &k1, ID_A, SEG, hdr + SU_SEG_OFF_NONCE, nh, &g),
                     SU_OK);
    ck_assert(memcmp(nh + SU_SEG_OFF_NONCE, hdr + SU_SEG_OFF_NONCE, 16) == 0);
    ck_assert(memcmp(nh + SU_SEG_OFF_WRAPPED, hdr + SU_SEG_OFF_WRAPPED, 72) != 0);
}
END_TEST

/* File sizes and segment counts agree for many plaintext sizes, and no
 * size in between belongs to any file. */
START_TEST(geometry)
{
    uint64_t p, n = 0, prev = 0;
    size_t last = 0;
    int valid = 0;

    for (p = 0; p < 5 * SEG; p++) {
        uint64_t fs = su_seg_file_size(SEG, p);
        ck_assert_int_eq(su_seg_count(fs, SEG, &n, &last), SU_OK);
        ck_assert_uint_eq(su_seg_offset(SEG, n - 1) + last, fs);
        ck_assert_uint_eq(n, p == 0 ? 1 : (p + SEG - 1) / SEG);
        ck_assert_uint_ge(fs, prev);
        prev = fs;
    }
    for (p = 0; p < su_seg_file_size(SEG, 5 * SEG); p++)
        valid += su_seg_count(p, SEG, &n, &last) == SU_OK;
    /* per count of segments, each length a last one can store (64 ..
     * SEG + 64 in steps of 16), but the bound itself */
    ck_assert_int_eq(valid, 5 * (SEG / 16 + 1) - 1);
    ck_assert_int_eq(su_seg_count(su_seg_file_size(SEG, 100), SEG + 1, &n, &last),
                     SU_ERR_INTEGRITY);
    ck_assert(!su_seg_size_ok(SU_SEG_SIZE_MAX + 16));
    ck_assert(!su_seg_size_ok(SU_SEG_SIZE_MIN - 16));
    ck_assert(su_seg_size_ok(SU_SEG_SIZE_DEFAULT));
}
END_TEST

/* ---- the writer ---- */
typedef struct { unsigned char *buf; size_t len, cap; } sink_t;

static su_err_t sink_out(void *ctx, const unsigned char *buf, size_t len)
{
    sink_t *k = ctx;
    if (k->len + len > k->cap)
        return SU_ERR_NO_SPACE;
    memcpy(k->buf + k->len, buf, len);
    k->len += len;
    return SU_OK;
}

/* Written in pieces of any size, a file has the computed size, and its
 * segments open in order, the last one as LAST, to the same plaintext. */
START_TEST(writer_round_trip)
{
    static const size_t sizes[] = { 0, 1, SEG - 1, SEG, SEG + 1, 3 * SEG, 3 * SEG + 5 };
    size_t plain_len = sizes[_i], off, outlen, last = 0;
    unsigned char *in = apr_palloc(pool, plain_len + 1), out[SEG + 16];
    sink_t k = { apr_palloc(pool, 5 * SEG), 0, 5 * SEG };
    su_segw_t *w = NULL;
    su_seg_ctx_t *r;
    uint64_t n = 0, i;

    RAND_bytes(in, (int)plain_len + 1);
    ck_assert_int_eq(su_segw_create(pool, &k1, ID_A, SEG, NULL, sink_out, &k, &w), SU_OK);
    for (off = 0; off < plain_len; off += 1000)
        ck_assert_int_eq(su_segw_write(w, in + off, plain_len - off < 1000
                                                    ? plain_len - off : 1000), SU_OK);
    ck_assert_int_eq(su_segw_finish(w), SU_OK);
    ck_assert_uint_eq(su_segw_plain_size(w), plain_len);
    ck_assert_uint_eq(k.len, su_seg_file_size(SEG, plain_len));
    ck_assert_int_eq(su_seg_count(k.len, SEG, &n, &last), SU_OK);
    r = reopen(ID_A, k.buf);
    for (i = 0, off = 0; i < n; i++) {
        int is_last = i + 1 == n;
        size_t stl = is_last ? last : SEG + SU_SEG_OVERHEAD;
        ck_assert_int_eq(su_seg_unseal(r, i, is_last ? SU_SEG_LAST : SU_SEG_MORE,
                                       k.buf + su_seg_offset(SEG, i), stl, out,
                                       &outlen), SU_OK);
        ck_assert(memcmp(out, in + off, outlen) == 0);
        off += outlen;
    }
    ck_assert_uint_eq(off, plain_len);
}
END_TEST

static Suite *seg_suite(void)
{
    Suite *s = suite_create("su_seg");
    TCase *tc = tcase_create("core");

    tcase_set_timeout(tc, 60);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_loop_test(tc, round_trip, 0, 8);
    tcase_add_test(tc, layout_as_documented);
    tcase_add_test(tc, binding);
    tcase_add_test(tc, flags_not_interchangeable);
    tcase_add_test(tc, header_and_rewrap);
    tcase_add_test(tc, geometry);
    tcase_add_loop_test(tc, writer_round_trip, 0, 7);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return su_check_run(seg_suite);
}
