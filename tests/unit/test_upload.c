/* Unit tests for one upload through the core (su_upload.c): framing, limits,
 * digests, encryption and the storage, without Apache. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <apr_general.h>
#include <apr_strings.h>
#include <apr_base64.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "su_check.h"
#include "su_format.h"
#include "su_seg.h"
#include "su_store.h"
#include "su_upload.h"

static apr_pool_t *pool;
static char dir[64];
static su_kek_t kek;
static su_upload_conf_t conf;

static void setup(void)
{
    int i;
    ck_assert_int_eq(apr_pool_create(&pool, NULL), APR_SUCCESS);
    strcpy(dir, "/tmp/su_upload_test.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    for (i = 0; i < SU_KEY_LEN; i++)
        kek.key[i] = (unsigned char)(3 * i + 1);
    su_key_compute_id(&kek);
    memset(&conf, 0, sizeof conf);
    conf.kek = &kek;
    conf.storage_dir = dir;
    conf.max_size = 1 << 20;
    conf.field_name = "file";
    su_mp_limits_default(&conf.limits);
}

static void teardown(void)
{
    apr_pool_destroy(pool);
    su_check_rm_rf(dir);
}

typedef struct { unsigned char *buf; size_t len, cap; } sink_t;

static int sink_fn(void *ctx, const unsigned char *b, size_t n)
{
    sink_t *s = ctx;
    if (n == 0)   /* s->buf may still be NULL */
        return 0;
    if (s->len + n > s->cap) {
        s->cap = (s->len + n) * 2;
        s->buf = realloc(s->buf, s->cap);
    }
    memcpy(s->buf + s->len, b, n);
    s->len += n;
    return 0;
}

/* Feed body in pieces of varying size (1, 7, 4096, ...). */
static su_err_t feed(su_upload_t *u, const char *body, size_t len)
{
    static const size_t steps[] = { 1, 7, 4096, 13, 65536, 100, 3 };
    size_t off = 0, i = 0;
    su_err_t rv = SU_OK;

    while (off < len && rv == SU_OK) {
        size_t n = steps[i++ % 7];
        if (n > len - off)
            n = len - off;
        rv = su_upload_feed(u, body + off, n);
        off += n;
    }
    return rv;
}

static unsigned char *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    unsigned char *b;
    long n;

    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(fseek(f, 0, SEEK_END), 0);
    n = ftell(f);
    rewind(f);
    b = malloc((size_t)n + 1);
    ck_assert_uint_eq(fread(b, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return b;
}

/* A version 2 file opened segment by segment with su_seg alone: every
 * segment verified under id, MORE but the last, its size exact. */
static void v2_decrypt(const char *path, const char *id, sink_t *s)
{
    const su_kek_t *keks[1] = { &kek };
    su_seg_file_t *sf;
    su_seg_ctx_t *c;
    unsigned char *blob, *out;
    uint64_t nseg, i;
    size_t len, last, n = 0;
    uint32_t segsize;

    blob = read_all(path, &len);
    ck_assert(su_seg_is_v2(blob, len));
    ck_assert_int_eq(su_seg_open(pool, keks, 1, id, blob, &sf, NULL), SU_OK);
    ck_assert_int_eq(su_seg_ctx_create(pool, sf, &c), SU_OK);
    segsize = su_seg_size(sf);
    out = malloc(segsize + SU_CRYPTO_BLOCK);
    ck_assert_int_eq(su_seg_count(len, segsize, &nseg, &last), SU_OK);
    for (i = 0; i < nseg; i++) {
        int end = i + 1 == nseg;
        ck_assert_int_eq(su_seg_unseal(c, i, end ? SU_SEG_LAST : SU_SEG_MORE,
                                       blob + su_seg_offset(segsize, i),
                                       end ? last : segsize + SU_SEG_OVERHEAD,
                                       out, &n), SU_OK);
        sink_fn(s, out, n);
    }
    /* a full last segment is never followed by an empty one */
    ck_assert(nseg == 1 || n > 0);
    free(out);
    free(blob);
}

/* The file's binding to its id: the IV (version 1) or the nonce (2). */
static void expect_binding(const su_upload_info_t *in, const char *path, int format)
{
    unsigned char head[SU_SEG_HEADER_LEN];
    char iv[SU_FMT_IV_HEX_LEN + 1];
    size_t off = format == 1 ? 88 : SU_SEG_OFF_NONCE;
    FILE *f = fopen(path, "rb");
    int i;

    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fread(head, 1, 104, f), 104);
    if (format != 1)
        ck_assert_uint_eq(fread(head + 104, 1, sizeof head - 104, f), sizeof head - 104);
    fclose(f);
    ck_assert(format == 1 ? memcmp(head, SU_FMT_MAGIC, 8) == 0
                          : memcmp(head, SU_SEG_MAGIC, 8) == 0);
    for (i = 0; i < 16; i++)
        sprintf(iv + 2 * i, "%02x", head[off + i]);
    ck_assert_str_eq(in->iv_hex, iv);
    if (format == 1) {
        ck_assert_int_eq(su_fmt_file_iv_hex(pool, path, iv), SU_OK);
        ck_assert_str_eq(in->iv_hex, iv);
    }
}

static void expect_stored(su_upload_t *u, const unsigned char *plain, size_t n)
{
    const su_upload_info_t *in = su_upload_info(u);
    const su_kek_t *keks[1] = { &kek };
    int format = conf.format == 1 ? 1 : 2;
    unsigned char md[32];
    char hex[65];
    const char *path;
    sink_t s = { 0 };
    int i;

    ck_assert_int_eq(su_upload_finish(u, 1), SU_OK);
    ck_assert_int_eq(su_upload_commit(u, 1), SU_OK);
    ck_assert_int_eq(in->size, n);
    ck_assert(su_store_valid_id(in->id));
    ck_assert_str_eq(in->key_id_hex, kek.id_hex);
    EVP_Digest(plain, n, md, NULL, EVP_sha256(), NULL);
    for (i = 0; i < 32; i++)
        sprintf(hex + 2 * i, "%02x", md[i]);
    ck_assert_str_eq(in->sha256_hex, hex);
    path = su_store_path(pool, dir, in->id);
    if (format == 1)
        ck_assert_int_eq(su_fmt_file_decrypt(pool, path, keks, 1, sink_fn, &s), SU_OK);
    else
        v2_decrypt(path, in->id, &s);
    ck_assert_uint_eq(s.len, n);
    ck_assert(n == 0 || memcmp(s.buf, plain, n) == 0);
    free(s.buf);
    ck_assert_int_eq(su_check_count_files(dir), 1);
    expect_binding(in, path, format);
}

static void expect_nothing_kept(su_upload_t *u)
{
    su_upload_discard(u);
    ck_assert_int_eq(su_check_count_files(dir), 0);
}

static const char *multipart(const char *filepart_hdrs, const char *data, size_t n,
                             size_t *len)
{
    const char *pre = apr_psprintf(pool,
        "--XyZ\r\nContent-Disposition: form-data; name=\"title\"\r\n\r\nhello\r\n"
        "--XyZ\r\n%s\r\n", filepart_hdrs);
    const char *post = "\r\n--XyZ\r\nContent-Disposition: form-data; name=\"x\"\r\n\r\n"
                       "y\r\n--XyZ--\r\n";
    size_t a = strlen(pre), b = strlen(post);
    char *body = apr_palloc(pool, a + n + b);
    memcpy(body, pre, a);
    memcpy(body + a, data, n);
    memcpy(body + a + n, post, b);
    *len = a + n + b;
    return body;
}

/* Sizes around the block and segment edges, in each format (version 2 also
 * with its smallest segments, so that many segments are cheap). */
static void raw_sizes(void)
{
    size_t sizes[] = { 0, 1, 15, 16, 17, 4095, 4096, 4097, 8192, 65535, 65536,
                       65537, 200000 };
    size_t k;

    for (k = 0; k < sizeof sizes / sizeof *sizes; k++) {
        unsigned char *plain = malloc(sizes[k] + 1);
        su_upload_t *u;
        char cmd[128];
        RAND_bytes(plain, (int)sizes[k] + 1);
        ck_assert_int_eq(su_upload_begin(pool, &conf, "application/octet-stream",
                                         "attachment; filename=\"../../etc/pass\\\"wd\"",
                                         NULL, NULL, &u), SU_OK);
        ck_assert_int_eq(feed(u, (const char *)plain, sizes[k]), SU_OK);
        expect_stored(u, plain, sizes[k]);
        ck_assert_str_eq(su_upload_info(u)->name, "pass\"wd");
        ck_assert_str_eq(su_upload_info(u)->content_type, "application/octet-stream");
        free(plain);
        snprintf(cmd, sizeof cmd, "rm -rf '%s'/*", dir);
        ck_assert_int_eq(system(cmd), 0);
    }
}

START_TEST(test_raw)
{
    raw_sizes();
    conf.format = 1;
    raw_sizes();
    conf.format = 2;
    conf.segsize = SU_SEG_SIZE_MIN;
    raw_sizes();
}
END_TEST

/* A stored version 2 file has exactly the size its plaintext gives. */
START_TEST(test_v2_size)
{
    size_t n = 3 * SU_SEG_SIZE_DEFAULT + 5, len;
    unsigned char *plain = calloc(1, n), *blob;
    su_upload_t *u;

    ck_assert_int_eq(su_upload_begin(pool, &conf, NULL, NULL, NULL, NULL, &u), SU_OK);
    ck_assert_int_eq(feed(u, (const char *)plain, n), SU_OK);
    expect_stored(u, plain, n);
    blob = read_all(su_store_path(pool, dir, su_upload_info(u)->id), &len);
    ck_assert_uint_eq(len, su_seg_file_size(SU_SEG_SIZE_DEFAULT, n));
    ck_assert_uint_eq(su_seg_header_size(blob), SU_SEG_SIZE_DEFAULT);
    free(blob);
    free(plain);
}
END_TEST

START_TEST(test_multipart)
{
    const char data[] = "line1\r\n--Xy\r\n-XyZ\r\n--XY\r\r\n--\r\nend";
    size_t len;
    const char *body = multipart(
        "Content-Disposition: form-data; name=\"file\"; filename=\"C:\\\\dir\\\\r.pdf\"\r\n"
        "Content-Type: application/pdf\r\n", data, sizeof data - 1, &len);
    su_upload_t *u;

    ck_assert_int_eq(su_upload_begin(pool, &conf, "multipart/form-data; boundary=XyZ",
                                     NULL, NULL, NULL, &u), SU_OK);
    ck_assert_int_eq(feed(u, body, len), SU_OK);
    expect_stored(u, (const unsigned char *)data, sizeof data - 1);
    ck_assert_str_eq(su_upload_info(u)->name, "r.pdf");
    ck_assert_str_eq(su_upload_info(u)->content_type, "application/pdf");
}
END_TEST

START_TEST(test_field_name)
{
    size_t len;
    const char *body = multipart(
        "Content-Disposition: form-data; name=\"doc\"; filename=\"a.txt\"\r\n",
        "abc", 3, &len);
    su_upload_t *u;

    conf.field_name = "doc";
    ck_assert_int_eq(su_upload_begin(pool, &conf, "multipart/form-data; boundary=XyZ",
                                     NULL, NULL, NULL, &u), SU_OK);
    ck_assert_int_eq(feed(u, body, len), SU_OK);
    expect_stored(u, (const unsigned char *)"abc", 3);
    ck_assert_str_eq(su_upload_info(u)->content_type, "application/octet-stream");
}
END_TEST

START_TEST(test_no_file_part)
{
    size_t len;
    const char *body = multipart(
        "Content-Disposition: form-data; name=\"other\"; filename=\"a.txt\"\r\n",
        "abc", 3, &len);
    su_upload_t *u;

    ck_assert_int_eq(su_upload_begin(pool, &conf, "multipart/form-data; boundary=XyZ",
                                     NULL, NULL, NULL, &u), SU_OK);
    ck_assert_int_eq(feed(u, body, len), SU_OK);
    ck_assert_int_eq(su_upload_finish(u, 1), SU_ERR_BAD_REQUEST);
    ck_assert_ptr_nonnull(strstr(su_upload_message(u), "file"));
    expect_nothing_kept(u);
}
END_TEST

START_TEST(test_two_file_parts)
{
    const char *body =
        "--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a\"\r\n\r\n"
        "one\r\n--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"b\"\r\n"
        "\r\ntwo\r\n--XyZ--\r\n";
    su_upload_t *u;

    ck_assert_int_eq(su_upload_begin(pool, &conf, "multipart/form-data; boundary=XyZ",
                                     NULL, NULL, NULL, &u), SU_OK);
    ck_assert_int_eq(feed(u, body, strlen(body)), SU_ERR_BAD_REQUEST);
    ck_assert_int_eq(su_upload_finish(u, 1), SU_ERR_BAD_REQUEST);
    expect_nothing_kept(u);
}
END_TEST

START_TEST(test_malformed)
{
    const char *body = "--XyZ\nContent-Disposition: form-data; name=\"file\"\n\nabc\n--XyZ--\n";
    su_upload_t *u;

    ck_assert_int_eq(su_upload_begin(pool, &conf, "multipart/form-data", NULL, NULL,
                                     NULL, &u), SU_ERR_BAD_REQUEST);
    ck_assert_int_eq(su_upload_begin(pool, &conf, "multipart/form-data; boundary=XyZ",
                                     NULL, NULL, NULL, &u), SU_OK);
    ck_assert_int_eq(feed(u, body, strlen(body)), SU_ERR_BAD_REQUEST);
    expect_nothing_kept(u);
    /* a body that just stops */
    ck_assert_int_eq(su_upload_begin(pool, &conf, "multipart/form-data; boundary=XyZ",
                                     NULL, NULL, NULL, &u), SU_OK);
    body = "--XyZ\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\nabc";
    ck_assert_int_eq(feed(u, body, strlen(body)), SU_OK);
    ck_assert_int_eq(su_upload_finish(u, 1), SU_ERR_BAD_REQUEST);
    expect_nothing_kept(u);
    ck_assert_int_eq(su_upload_begin(pool, &conf, "application/x", "attachment; filename=\"x",
                                     NULL, NULL, &u), SU_ERR_BAD_REQUEST);
    expect_nothing_kept(u);
}
END_TEST

START_TEST(test_too_large)
{
    char buf[100];
    su_upload_t *u;

    memset(buf, 'a', sizeof buf);
    conf.max_size = 64;
    ck_assert_int_eq(su_upload_begin(pool, &conf, NULL, NULL, NULL, NULL, &u), SU_OK);
    ck_assert_int_eq(su_upload_feed(u, buf, 64), SU_OK);
    ck_assert_int_eq(su_upload_feed(u, buf, 1), SU_ERR_TOO_LARGE);
    ck_assert_int_eq(su_upload_finish(u, 1), SU_ERR_TOO_LARGE);
    expect_nothing_kept(u);
    /* exactly the limit is fine */
    ck_assert_int_eq(su_upload_begin(pool, &conf, NULL, NULL, NULL, NULL, &u), SU_OK);
    ck_assert_int_eq(su_upload_feed(u, buf, 64), SU_OK);
    expect_stored(u, (const unsigned char *)buf, 64);
}
END_TEST

START_TEST(test_types)
{
    apr_array_header_t *types = apr_array_make(pool, 2, sizeof(const char *));
    size_t len;
    const char *body = multipart(
        "Content-Disposition: form-data; name=\"file\"; filename=\"a.pdf\"\r\n"
        "Content-Type: application/pdf\r\n", "abc", 3, &len);
    su_upload_t *u;

    APR_ARRAY_PUSH(types, const char *) = "image/*";
    APR_ARRAY_PUSH(types, const char *) = "text/plain";
    conf.allowed_types = types;
    ck_assert_int_eq(su_upload_begin(pool, &conf, "application/pdf", NULL, NULL, NULL, &u),
                     SU_ERR_UNSUPPORTED_TYPE);
    expect_nothing_kept(u);
    /* leaving the type out does not get past the list */
    ck_assert_int_eq(su_upload_begin(pool, &conf, NULL, NULL, NULL, NULL, &u),
                     SU_ERR_UNSUPPORTED_TYPE);
    expect_nothing_kept(u);
    ck_assert_int_eq(su_upload_begin(pool, &conf, "multipart/form-data; boundary=XyZ",
                                     NULL, NULL, NULL, &u), SU_OK);
    ck_assert_int_eq(feed(u, body, len), SU_ERR_UNSUPPORTED_TYPE);
    expect_nothing_kept(u);
    ck_assert_int_eq(su_upload_begin(pool, &conf, "Text/Plain; charset=utf-8", NULL, NULL,
                                     NULL, &u), SU_OK);
    ck_assert_int_eq(su_upload_feed(u, "abc", 3), SU_OK);
    expect_stored(u, (const unsigned char *)"abc", 3);
}
END_TEST

static const char *digest_hdr(const char *alg, const EVP_MD *md, const void *d, size_t n)
{
    unsigned char v[64];
    unsigned int vl;
    char *b64 = apr_palloc(pool, apr_base64_encode_len(64));
    EVP_Digest(d, n, v, &vl, md, NULL);
    apr_base64_encode(b64, (const char *)v, (int)vl);
    return apr_psprintf(pool, "%s=:%s:", alg, b64);
}

START_TEST(test_body_digest)
{
    su_upload_t *u;
    const char *good = digest_hdr("sha-256", EVP_sha256(), "abc", 3);
    const char *bad = digest_hdr("sha-256", EVP_sha256(), "abd", 3);
    const char *good512 = digest_hdr("sha-512", EVP_sha512(), "abc", 3);

    ck_assert_int_eq(su_upload_begin(pool, &conf, NULL, NULL, good, NULL, &u), SU_OK);
    ck_assert_int_eq(su_upload_feed(u, "abc", 3), SU_OK);
    expect_stored(u, (const unsigned char *)"abc", 3);
    ck_assert_int_eq(system(apr_psprintf(pool, "rm -rf '%s'/*", dir)), 0);

    ck_assert_int_eq(su_upload_begin(pool, &conf, NULL, NULL, NULL, good512, &u), SU_OK);
    ck_assert_int_eq(su_upload_feed(u, "abc", 3), SU_OK);
    expect_stored(u, (const unsigned char *)"abc", 3);
    ck_assert_int_eq(system(apr_psprintf(pool, "rm -rf '%s'/*", dir)), 0);

    ck_assert_int_eq(su_upload_begin(pool, &conf, NULL, NULL, bad, NULL, &u), SU_OK);
    ck_assert_int_eq(su_upload_feed(u, "abc", 3), SU_OK);
    ck_assert_int_eq(su_upload_finish(u, 1), SU_ERR_BAD_REQUEST);
    expect_nothing_kept(u);

    ck_assert_int_eq(su_upload_begin(pool, &conf, NULL, NULL, "sha-256=:nope", NULL, &u),
                     SU_ERR_BAD_REQUEST);
    expect_nothing_kept(u);

    ck_assert_int_eq(su_upload_begin(pool, &conf, NULL, NULL, "unknown=:AAAA:", NULL, &u),
                     SU_OK);
    ck_assert_int_eq(su_upload_feed(u, "abc", 3), SU_OK);
    expect_stored(u, (const unsigned char *)"abc", 3);
}
END_TEST

START_TEST(test_part_digest)
{
    size_t len;
    const char *hdrs = apr_psprintf(pool,
        "Content-Disposition: form-data; name=\"file\"; filename=\"a\"\r\n"
        "Content-MD5: %s\r\n", "kAFQmDzST7DWlj99KOF/cg==");  /* md5("abc") */
    const char *body = multipart(hdrs, "abc", 3, &len);
    su_upload_t *u;

    ck_assert_int_eq(su_upload_begin(pool, &conf, "multipart/form-data; boundary=XyZ",
                                     NULL, NULL, NULL, &u), SU_OK);
    ck_assert_int_eq(feed(u, body, len), SU_OK);
    expect_stored(u, (const unsigned char *)"abc", 3);
    ck_assert_int_eq(system(apr_psprintf(pool, "rm -rf '%s'/*", dir)), 0);

    body = multipart(hdrs, "abd", 3, &len);
    ck_assert_int_eq(su_upload_begin(pool, &conf, "multipart/form-data; boundary=XyZ",
                                     NULL, NULL, NULL, &u), SU_OK);
    ck_assert_int_ne(feed(u, body, len) == SU_OK ? su_upload_finish(u, 1) : SU_ERR_BAD_REQUEST,
                     SU_OK);
    ck_assert_int_eq(su_upload_finish(u, 1), SU_ERR_BAD_REQUEST);
    expect_nothing_kept(u);

    hdrs = apr_pstrcat(pool, "Content-Disposition: form-data; name=\"file\"\r\n"
                       "Content-Digest: ", digest_hdr("sha-256", EVP_sha256(), "xyz", 3),
                       "\r\n", NULL);
    body = multipart(hdrs, "abc", 3, &len);
    ck_assert_int_eq(su_upload_begin(pool, &conf, "multipart/form-data; boundary=XyZ",
                                     NULL, NULL, NULL, &u), SU_OK);
    feed(u, body, len);
    ck_assert_int_eq(su_upload_finish(u, 1), SU_ERR_BAD_REQUEST);
    expect_nothing_kept(u);
}
END_TEST

#ifdef SU_FAULT_INJECTION
/* The CSPRNG failing: no file is started, nothing is written. */
START_TEST(test_fault_rand)
{
    su_upload_t *u;

    setenv("SECUPLOAD_FAULTS", "rand", 1);
    ck_assert_int_eq(su_upload_begin(pool, &conf, NULL, NULL, NULL, NULL, &u),
                     SU_ERR_INTERNAL);
    unsetenv("SECUPLOAD_FAULTS");
    expect_nothing_kept(u);
}
END_TEST

/* fsync failing: the upload fails at once and leaves nothing. */
START_TEST(test_fault_fsync)
{
    su_upload_t *u;

    ck_assert_int_eq(su_upload_begin(pool, &conf, NULL, NULL, NULL, NULL, &u), SU_OK);
    ck_assert_int_eq(su_upload_feed(u, "abc", 3), SU_OK);
    setenv("SECUPLOAD_FAULTS", "x,fsync", 1);
    ck_assert_int_eq(su_upload_finish(u, 1), SU_ERR_INTERNAL);
    unsetenv("SECUPLOAD_FAULTS");
    ck_assert_ptr_nonnull(strstr(su_upload_detail(u), "fsync"));
    expect_nothing_kept(u);
    /* without sync there is no fsync to fail */
    setenv("SECUPLOAD_FAULTS", "fsync", 1);
    ck_assert_int_eq(su_upload_begin(pool, &conf, NULL, NULL, NULL, NULL, &u), SU_OK);
    ck_assert_int_eq(su_upload_feed(u, "abc", 3), SU_OK);
    ck_assert_int_eq(su_upload_finish(u, 0), SU_OK);
    unsetenv("SECUPLOAD_FAULTS");
    su_upload_discard(u);
}
END_TEST
#endif

static Suite *upload_suite(void)
{
    Suite *s = suite_create("su_upload");
    TCase *tc = tcase_create("upload");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_raw);
    tcase_add_test(tc, test_v2_size);
    tcase_add_test(tc, test_multipart);
    tcase_add_test(tc, test_field_name);
    tcase_add_test(tc, test_no_file_part);
    tcase_add_test(tc, test_two_file_parts);
    tcase_add_test(tc, test_malformed);
    tcase_add_test(tc, test_too_large);
    tcase_add_test(tc, test_types);
    tcase_add_test(tc, test_body_digest);
    tcase_add_test(tc, test_part_digest);
#ifdef SU_FAULT_INJECTION
    tcase_add_test(tc, test_fault_rand);
    tcase_add_test(tc, test_fault_fsync);
#endif
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return su_check_run(upload_suite);
}
