/*
 * Unit tests for reading the segmented format (su_segr.c) through
 * su_format.h's reader and whole-file functions. Files come from su_segw,
 * and from a writer here that builds the format from su_seg.h's layout
 * with OpenSSL alone under a known data key: it also forges hostile files
 * whose every tag is right (a segment re-tagged with another flag or
 * index), as only a holder of the data key could.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <apr_general.h>
#include <apr_strings.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "su_check.h"
#include "su_format.h"
#include "su_segr.h"
#include "su_segw.h"

#define ID_A "0123456789abcdef0123456789abcdef"
#define ID_B "fedcba9876543210fedcba9876543210"
#define SEG  SU_SEG_SIZE_MIN

static apr_pool_t *pool;
static char tmpdir[64];
static su_kek_t k1, k2;
static const su_kek_t *keks1[1];
static unsigned char *plain;           /* the plaintext every file holds a prefix of */
#define PLAIN_MAX (3 * 1024 * 1024 + 4099)

static void setup(void)
{
    size_t i;

    ck_assert_int_eq(apr_pool_create(&pool, NULL), APR_SUCCESS);
    strcpy(tmpdir, "/tmp/su_segr_test.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
    su_check_make_kek(&k1, 1);
    su_check_make_kek(&k2, 2);
    keks1[0] = &k1;
    plain = apr_palloc(pool, PLAIN_MAX);
    for (i = 0; i < PLAIN_MAX; i++)
        plain[i] = (unsigned char)(i * 7 + (i >> 9));
}

static void teardown(void)
{
    char cmd[128];

    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    ck_assert_int_eq(system(cmd), 0);
    apr_pool_destroy(pool);
}

/* DIR/<id>.enc */
static const char *enc_path(const char *id)
{
    return apr_pstrcat(pool, tmpdir, "/", id, ".enc", NULL);
}

static void write_file(const char *path, const unsigned char *d, size_t len)
{
    FILE *f = fopen(path, "wb");

    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(d, 1, len, f), len);
    ck_assert_int_eq(fclose(f), 0);
}

/* ---- files made by su_segw ---- */

typedef struct buf {
    unsigned char *d;
    size_t len, cap;
} buf_t;

static su_err_t buf_out(void *ctx, const unsigned char *b, size_t len)
{
    buf_t *o = ctx;

    if (o->len + len > o->cap) {
        size_t cap = (o->len + len) * 2;
        unsigned char *d = apr_palloc(pool, cap);
        if (o->len > 0)   /* o->d is NULL at first */
            memcpy(d, o->d, o->len);
        o->d = d;
        o->cap = cap;
    }
    memcpy(o->d + o->len, b, len);
    o->len += len;
    return SU_OK;
}

/* A file of id with the first n bytes of plain, stored at enc_path(id). */
static buf_t segw_file(const char *id, uint32_t segsize, size_t n)
{
    buf_t o = { NULL, 0, 0 };
    su_segw_t *w;

    ck_assert_int_eq(su_segw_create(pool, &k1, id, segsize, NULL, buf_out, &o, &w),
                     SU_OK);
    ck_assert_int_eq(su_segw_write(w, plain, n), SU_OK);
    ck_assert_int_eq(su_segw_finish(w), SU_OK);
    write_file(enc_path(id), o.d, o.len);
    return o;
}

/* ---- the format from its layout alone, and forgeries ---- */

static unsigned char dk[64];           /* the forger's data key */

typedef struct fseg {
    uint64_t index;
    int flag;
    size_t off, len;                   /* of plain */
} fseg_t;

static void id_raw(const char *id, unsigned char out[16])
{
    int i;

    for (i = 0; i < 16; i++)
        sscanf(id + 2 * i, "%2hhx", &out[i]);
}

static size_t forge_header(const char *id, uint32_t segsize,
                           const unsigned char nonce[16], unsigned char *h)
{
    unsigned char msg[1 + 16 + 108];
    unsigned int tl = 0;

    memcpy(h, SU_SEG_MAGIC, 8);
    memcpy(h + 8, k1.id, 8);
    ck_assert_int_eq(su_crypto_wrap(k1.key, dk, 64, h + 16), SU_OK);
    h[88] = (unsigned char)(segsize >> 24);
    h[89] = (unsigned char)(segsize >> 16);
    h[90] = (unsigned char)(segsize >> 8);
    h[91] = (unsigned char)segsize;
    memcpy(h + 92, nonce, 16);
    msg[0] = 0x01;
    id_raw(id, msg + 1);
    memcpy(msg + 17, h, 108);
    HMAC(EVP_sha256(), dk + 32, 32, msg, sizeof msg, h + 108, &tl);
    return SU_SEG_HEADER_LEN;
}

/* One segment as su_seg.h lays it out; its length. */
static size_t forge_seg(const char *id, const unsigned char nonce[16],
                        const fseg_t *s, unsigned char *out)
{
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    unsigned char *msg = malloc(42 + s->len + 64);
    unsigned int tl = 0;
    int l1 = 0, l2 = 0, i;
    size_t ct;

    RAND_bytes(out, 16);
    ck_assert_int_eq(EVP_EncryptInit_ex(c, EVP_aes_256_cbc(), NULL, dk, out), 1);
    /* a MORE segment of a partial length is padded too (and refused) */
    EVP_CIPHER_CTX_set_padding(c, s->flag != SU_SEG_MORE || s->len % 16 != 0);
    ck_assert_int_eq(EVP_EncryptUpdate(c, out + 16, &l1, plain + s->off, (int)s->len), 1);
    ck_assert_int_eq(EVP_EncryptFinal_ex(c, out + 16 + l1, &l2), 1);
    EVP_CIPHER_CTX_free(c);
    ct = (size_t)(l1 + l2);
    msg[0] = 0x02;
    id_raw(id, msg + 1);
    memcpy(msg + 17, nonce, 16);
    for (i = 0; i < 8; i++)
        msg[33 + i] = (unsigned char)(s->index >> (56 - 8 * i));
    msg[41] = (unsigned char)s->flag;
    memcpy(msg + 42, out, 16 + ct);
    HMAC(EVP_sha256(), dk + 32, 32, msg, 42 + 16 + ct, out + 16 + ct, &tl);
    free(msg);
    return 16 + ct + 32;
}

static buf_t forge(const char *id, uint32_t segsize, const fseg_t *segs, int n)
{
    static const unsigned char nonce[16] = "nonce-of-forger";
    buf_t o;
    int i;

    o.cap = SU_SEG_HEADER_LEN;
    for (i = 0; i < n; i++)
        o.cap += segs[i].len + 64;
    o.d = apr_palloc(pool, o.cap);
    o.len = forge_header(id, segsize, nonce, o.d);
    for (i = 0; i < n; i++)
        o.len += forge_seg(id, nonce, &segs[i], o.d + o.len);
    return o;
}

/* A well-formed file of n bytes in SEG-byte segments, from the layout. */
static int forge_plan(size_t n, fseg_t *segs)
{
    int k = 0;
    size_t off = 0;

    do {
        size_t len = n - off > SEG ? SEG : n - off;
        if (n - off == SEG)
            len = SEG;
        segs[k].index = (uint64_t)k;
        segs[k].off = off;
        segs[k].len = len;
        segs[k].flag = off + len == n ? SU_SEG_LAST : SU_SEG_MORE;
        off += len;
        k++;
    } while (off < n);
    return k;
}

/* ---- reading ---- */

/*
 * Read path under id (NULL: its name's) with the reader, range [off,
 * off + len) (whole if len is (size_t)-1): the bytes given must be the
 * plaintext's, whatever the outcome. Returns the reader's outcome, *got
 * the bytes given.
 */
static su_err_t read_range(const char *path, const char *id, uint64_t off,
                           size_t len, int async, size_t *got, uint64_t *size)
{
    unsigned char *out = malloc(SU_FMT_READ_MAX);
    su_fmt_reader_t *rd = NULL;
    su_err_t rv;
    size_t n = 0;

    *got = 0;
    rv = su_fmt_reader_open_id(pool, path, id, keks1, 1, 0, &rd, size);
    if (rv != SU_OK) {
        ck_assert_ptr_null(rd);
        free(out);
        return rv;
    }
    ck_assert_int_eq(su_fmt_reader_version(rd), 2);
    if (len == (size_t)-1)
        len = (size_t)*size;
    ck_assert_int_eq(su_fmt_reader_range(rd, off, len), SU_OK);
    do {
        if (async) {
            su_fmt_reader_begin(rd, out);
            rv = su_fmt_reader_end(rd, &n);
        } else {
            rv = su_fmt_reader_next_into(rd, out, &n);
        }
        if (rv == SU_OK) {
            ck_assert_uint_le(n, 1024 * 1024);
            ck_assert_uint_le(*got + n, len);
            ck_assert(memcmp(out, plain + off + *got, n) == 0);
            *got += n;
        }
    } while (rv == SU_OK && n > 0);
    su_fmt_reader_close(rd);
    free(out);
    if (rv == SU_OK)
        ck_assert_uint_eq(*got, len);
    return rv;
}

static void expect_whole(const char *path, size_t n)
{
    uint64_t size = 0;
    size_t got = 0;

    ck_assert_int_eq(read_range(path, NULL, 0, (size_t)-1, 0, &got, &size), SU_OK);
    ck_assert_uint_eq(size, n);
    ck_assert_int_eq(read_range(path, NULL, 0, (size_t)-1, 1, &got, &size), SU_OK);
    ck_assert_uint_eq(got, n);
    ck_assert_int_eq(su_fmt_file_verify(pool, path, keks1, 1, &size), SU_OK);
    ck_assert_uint_eq(size, n);
}

/* A file that must fail: open refuses it, or reading it all does, and
 * never a wrong byte (read_range checks); verify and decrypt refuse it. */
static void expect_refused(const char *path, const char *id)
{
    uint64_t size = 0;
    size_t got = 0;

    ck_assert_int_eq(read_range(path, id, 0, (size_t)-1, 1, &got, &size),
                     SU_ERR_INTEGRITY);
    ck_assert_int_eq(su_fmt_file_verify_id(pool, path, id, keks1, 1, &size),
                     SU_ERR_INTEGRITY);
    ck_assert_uint_eq(size, 0);
}

/* ---- tests ---- */

static const size_t sizes[] = { 0, 1, 15, 16, SEG - 1, SEG, SEG + 1, 3 * SEG,
                                3 * SEG + 5, 300 * SEG + 7, PLAIN_MAX };
#define NSIZES (sizeof sizes / sizeof sizes[0])

/* su_segw's files read back whole, both ways, and verify. */
START_TEST(round_trip)
{
    size_t n = sizes[_i];

    segw_file(ID_A, SEG, n);
    expect_whole(enc_path(ID_A), n);
}
END_TEST

/* The layout written from su_seg.h alone is read back too. */
START_TEST(independent_writer)
{
    size_t n = sizes[_i];
    fseg_t *segs = apr_palloc(pool, sizeof *segs * (n / SEG + 2));
    int k = forge_plan(n, segs);
    buf_t f;

    f = forge(ID_A, SEG, segs, k);
    write_file(enc_path(ID_A), f.d, f.len);
    expect_whole(enc_path(ID_A), n);
}
END_TEST

/* Ranges give exactly the plaintext's bytes: edges, segment boundaries,
 * pieces, random ones. */
START_TEST(ranges)
{
    size_t n = 300 * SEG + 7, got = 0, i;
    const char *path = enc_path(ID_A);
    static const size_t edge[][2] = {
        {0, 1}, {300 * SEG + 6, 1}, {SEG - 1, 2}, {SEG, SEG}, {SEG - 1, SEG + 2},
        {0, 300 * SEG + 7}, {5, 300 * SEG + 2}, {300 * SEG, 7}, {17, 0},
        {300 * SEG + 7, 0}, {3, 1024 * 1024 + 100}, {SEG * 2 + 9, 256 * SEG + 3}};
    uint64_t size = 0;

    segw_file(ID_A, SEG, n);
    for (i = 0; i < sizeof edge / sizeof edge[0]; i++)
        ck_assert_int_eq(read_range(path, NULL, edge[i][0], edge[i][1], (int)(i & 1),
                                    &got, &size), SU_OK);
    srand(7);
    for (i = 0; i < 40; i++) {
        size_t off = (size_t)rand() % n, len = (size_t)rand() % (n - off + 1);
        ck_assert_int_eq(read_range(path, NULL, off, len, (int)(i & 1), &got, &size),
                         SU_OK);
    }
}
END_TEST

/* Beyond the end is refused by the range call, the reader left usable. */
START_TEST(range_beyond_end)
{
    su_fmt_reader_t *rd;
    uint64_t size;

    segw_file(ID_A, SEG, 100);
    ck_assert_int_eq(su_fmt_reader_open(pool, enc_path(ID_A), keks1, 1, &rd, &size),
                     SU_OK);
    ck_assert_int_eq(su_fmt_reader_range(rd, 100, 1), SU_ERR_INTERNAL);
    ck_assert_int_eq(su_fmt_reader_range(rd, 101, 0), SU_ERR_INTERNAL);
    ck_assert_int_eq(su_fmt_reader_range(rd, 0, 101), SU_ERR_INTERNAL);
    ck_assert_int_eq(su_fmt_reader_range(rd, 99, 1), SU_OK);
    su_fmt_reader_close(rd);
}
END_TEST

/* Segments larger than a piece are given in parts. */
START_TEST(large_segments)
{
    size_t n = PLAIN_MAX, got = 0;
    uint64_t size = 0;
    const char *path = enc_path(ID_A);

    segw_file(ID_A, 2 * 1024 * 1024, n);
    expect_whole(path, n);
    ck_assert_int_eq(read_range(path, NULL, 2 * 1024 * 1024 - 3, 1024 * 1024 + 9,
                                1, &got, &size), SU_OK);
    ck_assert_int_eq(read_range(path, NULL, 1000, 3 * 1024 * 1024, 0, &got, &size),
                     SU_OK);
}
END_TEST

/* Only the segments a range covers are read: a damaged segment outside
 * it changes nothing, one inside fails the range. */
START_TEST(range_touches_only_its_segments)
{
    size_t n = 10 * SEG + 100, got = 0;
    uint64_t size = 0;
    const char *path = enc_path(ID_A);
    buf_t f = segw_file(ID_A, SEG, n);

    f.d[su_seg_offset(SEG, 4) + 100] ^= 1;
    write_file(path, f.d, f.len);
    ck_assert_int_eq(read_range(path, NULL, 0, 4 * SEG, 1, &got, &size), SU_OK);
    ck_assert_int_eq(read_range(path, NULL, 5 * SEG + 1, 3 * SEG, 0, &got, &size),
                     SU_OK);
    ck_assert_int_eq(read_range(path, NULL, 4 * SEG - 1, 2, 0, &got, &size),
                     SU_ERR_INTEGRITY);
    ck_assert_uint_eq(got, 0);
    /* read whole: the segments before the damaged one, not one byte more */
    ck_assert_int_eq(read_range(path, NULL, 0, (size_t)-1, 0, &got, &size),
                     SU_ERR_INTEGRITY);
    ck_assert_uint_le(got, 4 * SEG);
}
END_TEST

/* A file of 6 segments; the hostile variants of it below. */
#define HN (5 * SEG + 300)
#define STRIDE (SEG + SU_SEG_OVERHEAD)

static buf_t six(void)
{
    return segw_file(ID_A, SEG, HN);
}

static void store(const char *id, const unsigned char *d, size_t len)
{
    write_file(enc_path(id), d, len);
}

START_TEST(segment_moved)
{
    buf_t f = six();
    unsigned char *t = apr_palloc(pool, STRIDE);

    memcpy(t, f.d + su_seg_offset(SEG, 1), STRIDE);
    memcpy(f.d + su_seg_offset(SEG, 1), f.d + su_seg_offset(SEG, 2), STRIDE);
    memcpy(f.d + su_seg_offset(SEG, 2), t, STRIDE);
    store(ID_A, f.d, f.len);
    expect_refused(enc_path(ID_A), NULL);
}
END_TEST

/* The last segment (and its LAST flag) moved to the middle, the others
 * after it shifted: the same size, every tag someone's. */
START_TEST(last_segment_moved)
{
    buf_t f = six();
    size_t at2 = (size_t)su_seg_offset(SEG, 2), at5 = (size_t)su_seg_offset(SEG, 5);
    size_t last = f.len - at5;
    unsigned char *g = apr_palloc(pool, f.len);

    memcpy(g, f.d, at2);
    memcpy(g + at2, f.d + at5, last);
    memcpy(g + at2 + last, f.d + at2, at5 - at2);
    store(ID_A, g, f.len);
    expect_refused(enc_path(ID_A), NULL);
}
END_TEST

START_TEST(segment_dropped)
{
    buf_t f = six();
    size_t at = (size_t)su_seg_offset(SEG, (uint64_t)_i);

    memmove(f.d + at, f.d + at + STRIDE, f.len - at - STRIDE);
    store(ID_A, f.d, f.len - STRIDE);
    expect_refused(enc_path(ID_A), NULL);
}
END_TEST

START_TEST(segment_duplicated)
{
    buf_t f = six();
    unsigned char *g = apr_palloc(pool, f.len + STRIDE);
    size_t at = (size_t)su_seg_offset(SEG, (uint64_t)_i);

    memcpy(g, f.d, at + STRIDE);
    memcpy(g + at + STRIDE, f.d + at, f.len - at);
    store(ID_A, g, f.len + STRIDE);
    expect_refused(enc_path(ID_A), NULL);
}
END_TEST

/* With the real data key: a middle segment tagged LAST (with the true end
 * still there); the last tagged MORE; the last tagged PENDING; a LAST in the
 * middle with the true end still there. Every tag is right: only the
 * reader's choice of flag by position refuses them. */
START_TEST(last_flag_moved)
{
    fseg_t segs[6];
    int k = forge_plan(HN, segs);
    buf_t f;

    ck_assert_int_eq(k, 6);
    /* control: the forger's file as it should be reads */
    f = forge(ID_A, SEG, segs, k);
    store(ID_A, f.d, f.len);
    expect_whole(enc_path(ID_A), HN);
    /* cut after segment 2 and LAST there: only a key holder can end a
     * file early, and what it makes is a file of its own, read as such */
    segs[2].flag = SU_SEG_LAST;
    f = forge(ID_A, SEG, segs, 3);
    store(ID_A, f.d, f.len);
    expect_whole(enc_path(ID_A), 3 * SEG);
    f = forge(ID_A, SEG, segs, k);         /* LAST at 2, the true end too */
    store(ID_A, f.d, f.len);
    expect_refused(enc_path(ID_A), NULL);
    segs[2].flag = SU_SEG_MORE;
    segs[5].flag = SU_SEG_MORE;            /* no LAST at all */
    f = forge(ID_A, SEG, segs, k);
    store(ID_A, f.d, f.len);
    expect_refused(enc_path(ID_A), NULL);
    segs[5].flag = SU_SEG_PENDING;         /* a resumable upload's partial end */
    f = forge(ID_A, SEG, segs, k);
    store(ID_A, f.d, f.len);
    expect_refused(enc_path(ID_A), NULL);
}
END_TEST

/* Re-tagged under the wrong index (a segment moved, tags and all made
 * anew by the key holder, is a new file: here the index alone lies). */
START_TEST(index_retagged)
{
    fseg_t segs[6];
    int k = forge_plan(HN, segs);
    buf_t f;

    segs[3].index = 4;
    f = forge(ID_A, SEG, segs, k);
    store(ID_A, f.d, f.len);
    expect_refused(enc_path(ID_A), NULL);
}
END_TEST

/* A segment of another file under the same KEK, at the same index. */
START_TEST(segment_from_other_file)
{
    buf_t a = segw_file(ID_A, SEG, HN), b = segw_file(ID_B, SEG, HN);
    size_t at = (size_t)su_seg_offset(SEG, (uint64_t)_i);

    memcpy(a.d + at, b.d + at, _i == 5 ? a.len - at : STRIDE);
    store(ID_A, a.d, a.len);
    expect_refused(enc_path(ID_A), NULL);
}
END_TEST

/* B's header on A's body, read as A and as B. */
START_TEST(header_from_other_file)
{
    buf_t a = segw_file(ID_A, SEG, HN), b = segw_file(ID_B, SEG, HN);

    memcpy(a.d, b.d, SU_SEG_HEADER_LEN);
    store(ID_A, a.d, a.len);
    expect_refused(enc_path(ID_A), NULL);
    store(ID_B, a.d, a.len);
    expect_refused(enc_path(ID_B), NULL);
}
END_TEST

/* A's whole file under B's name, or read as B. */
START_TEST(file_of_other_id)
{
    buf_t a = segw_file(ID_A, SEG, HN);

    store(ID_B, a.d, a.len);
    expect_refused(enc_path(ID_B), NULL);
    expect_refused(enc_path(ID_A), ID_B);
    expect_whole(enc_path(ID_A), HN);
    /* under another name, the id given */
    write_file(apr_pstrcat(pool, tmpdir, "/copy", NULL), a.d, a.len);
    expect_refused(apr_pstrcat(pool, tmpdir, "/copy", NULL), NULL);
    {
        uint64_t size = 0;
        ck_assert_int_eq(su_fmt_file_verify_id(pool,
                                               apr_pstrcat(pool, tmpdir, "/copy", NULL),
                                               ID_A, keks1, 1, &size), SU_OK);
        ck_assert_uint_eq(size, HN);
    }
}
END_TEST

/* Cut at every segment boundary, and inside segments, and extended. */
START_TEST(truncated_or_extended)
{
    buf_t f = six();
    su_fmt_head_t h;
    size_t cuts[] = { 0, 8, 100, SU_SEG_HEADER_LEN, SU_SEG_HEADER_LEN + 1 };
    uint64_t i;

    for (i = 0; i < 6; i++) {
        store(ID_A, f.d, (size_t)su_seg_offset(SEG, i));
        expect_refused(enc_path(ID_A), NULL);
        store(ID_A, f.d, (size_t)su_seg_offset(SEG, i) + 64);
        expect_refused(enc_path(ID_A), NULL);
        store(ID_A, f.d, (size_t)su_seg_offset(SEG, i) + STRIDE - 16);
        expect_refused(enc_path(ID_A), NULL);
    }
    for (i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        store(ID_A, f.d, cuts[i]);
        expect_refused(enc_path(ID_A), NULL);
    }
    store(ID_A, f.d, f.len - 16);
    expect_refused(enc_path(ID_A), NULL);
    store(ID_A, f.d, f.len - 8);
    expect_refused(enc_path(ID_A), NULL);
    su_fmt_file_look(enc_path(ID_A), &h);
    ck_assert_int_eq(h.look, SU_FMT_BAD_SIZE);
    f.d = memcpy(apr_palloc(pool, f.len + STRIDE), f.d, f.len);
    memset(f.d + f.len, 0, STRIDE);
    store(ID_A, f.d, f.len + 16);
    expect_refused(enc_path(ID_A), NULL);
    store(ID_A, f.d, f.len + STRIDE);
    expect_refused(enc_path(ID_A), NULL);
}
END_TEST

/* file_look and iv_hex: header only, no keys; decrypt; the name's id. */
START_TEST(look_iv_decrypt)
{
    buf_t f = segw_file(ID_A, SEG, HN);
    char iv[SU_FMT_IV_HEX_LEN + 1], hex[33], id[33];
    su_fmt_head_t h;
    su_fmt_reader_t *rd;
    uint64_t size;
    int i;

    su_fmt_file_look(enc_path(ID_A), &h);
    ck_assert_int_eq(h.look, SU_FMT_LOOKS_STORED);
    ck_assert(h.has_key_id && memcmp(h.key_id, k1.id, 8) == 0);
    ck_assert_int_eq(su_fmt_file_iv_hex(pool, enc_path(ID_A), iv), SU_OK);
    for (i = 0; i < 16; i++)
        sprintf(hex + 2 * i, "%02x", f.d[SU_SEG_OFF_NONCE + i]);
    ck_assert_str_eq(iv, hex);
    ck_assert_int_eq(su_fmt_reader_open(pool, enc_path(ID_A), keks1, 1, &rd, &size),
                     SU_OK);
    su_fmt_reader_iv_hex(rd, iv);
    ck_assert_str_eq(iv, hex);
    su_fmt_reader_close(rd);
    f.d[SU_SEG_OFF_SIZE] = 0x7f;        /* a segment size no file has */
    store(ID_A, f.d, f.len);
    su_fmt_file_look(enc_path(ID_A), &h);
    ck_assert_int_eq(h.look, SU_FMT_BAD_SIZE);
    ck_assert_int_eq(su_fmt_file_iv_hex(pool, enc_path(ID_A), iv), SU_ERR_INTEGRITY);
    ck_assert(su_segr_path_id("/x/ab/" ID_A ".enc", id) && strcmp(id, ID_A) == 0);
    ck_assert(su_segr_path_id("/x/ab/.tmp-" ID_A, id) && strcmp(id, ID_A) == 0);
    ck_assert(su_segr_path_id(ID_A ".enc.rewrap.tmp", id));
    ck_assert(!su_segr_path_id("/x/copy.enc", id));
    ck_assert(!su_segr_path_id("/x/" ID_A "x.enc", id));
    ck_assert(!su_segr_path_id("/x/0123456789ABCDEF0123456789abcdef.enc", id));
}
END_TEST

typedef struct sink {
    size_t len;
    int bad;
} sink_t;

static int check_sink(void *ctx, const unsigned char *b, size_t len)
{
    sink_t *s = ctx;

    if (memcmp(b, plain + s->len, len) != 0)
        s->bad = 1;
    s->len += len;
    return 0;
}

START_TEST(decrypt_whole_and_failing)
{
    buf_t f = segw_file(ID_A, SEG, 300 * SEG + 7);
    sink_t s = { 0, 0 };

    ck_assert_int_eq(su_fmt_file_decrypt(pool, enc_path(ID_A), keks1, 1, check_sink, &s),
                     SU_OK);
    ck_assert_uint_eq(s.len, 300 * SEG + 7);
    ck_assert(!s.bad);
    f.d[su_seg_offset(SEG, 290) + 50] ^= 0x80;
    store(ID_A, f.d, f.len);
    s.len = 0;
    ck_assert_int_eq(su_fmt_file_decrypt(pool, enc_path(ID_A), keks1, 1, check_sink, &s),
                     SU_ERR_INTEGRITY);
    ck_assert(!s.bad);
    ck_assert_uint_le(s.len, 290 * SEG);
}
END_TEST

static Suite *segr_suite(void)
{
    Suite *s = suite_create("su_segr");
    TCase *tc = tcase_create("core");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_loop_test(tc, round_trip, 0, (int)NSIZES);
    tcase_add_loop_test(tc, independent_writer, 0, (int)NSIZES);
    tcase_add_test(tc, ranges);
    tcase_add_test(tc, range_beyond_end);
    tcase_add_test(tc, large_segments);
    tcase_add_test(tc, range_touches_only_its_segments);
    tcase_add_test(tc, segment_moved);
    tcase_add_test(tc, last_segment_moved);
    tcase_add_loop_test(tc, segment_dropped, 0, 5);
    tcase_add_loop_test(tc, segment_duplicated, 0, 5);
    tcase_add_test(tc, last_flag_moved);
    tcase_add_test(tc, index_retagged);
    tcase_add_loop_test(tc, segment_from_other_file, 0, 6);
    tcase_add_test(tc, header_from_other_file);
    tcase_add_test(tc, file_of_other_id);
    tcase_add_test(tc, truncated_or_extended);
    tcase_add_test(tc, look_iv_decrypt);
    tcase_add_test(tc, decrypt_whole_and_failing);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return su_check_run(segr_suite);
}
