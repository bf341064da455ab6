/* Unit tests of the streaming multipart/form-data parser (su_mp.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <check.h>
#include <apr_general.h>
#include <apr_pools.h>
#include <apr_strings.h>
#include "su_check.h"
#include "su_mp.h"

#define BND "XyZ"

static apr_pool_t *pool;

static void setup(void)
{
    ck_assert_int_eq(apr_pool_create(&pool, NULL), APR_SUCCESS);
}

static void teardown(void)
{
    apr_pool_destroy(pool);
}

/* ---- a recorder of callback events ---- */

typedef struct rec {
    char *buf;
    size_t len, cap;
    int fail_begin;          /* error to return from on_part_begin, or 0 */
    int fail_data;
    int fail_end;
    int data_calls;
    const char *first_data;  /* where the first body bytes were handed over */
} rec_t;

static void rec_add(rec_t *r, const char *s, size_t n)
{
    if (r->len + n + 1 > r->cap) {
        r->cap = (r->len + n + 1) * 2;
        r->buf = realloc(r->buf, r->cap);
        ck_assert_ptr_nonnull(r->buf);
    }
    memcpy(r->buf + r->len, s, n);
    r->len += n;
    r->buf[r->len] = '\0';
}

static void rec_str(rec_t *r, const char *s)
{
    rec_add(r, s, strlen(s));
}

static int on_begin(void *ctx, const su_mp_part_t *part)
{
    rec_t *r = ctx;
    char tmp[512];

    ck_assert_ptr_nonnull(part->headers);
    snprintf(tmp, sizeof(tmp), "[B name=%s file=%s type=%s]",
             part->name ? part->name : "(null)",
             part->filename ? part->filename : "(null)",
             part->content_type ? part->content_type : "(null)");
    rec_str(r, tmp);
    return r->fail_begin;
}

static int on_data(void *ctx, const char *buf, apr_size_t len)
{
    rec_t *r = ctx;

    ck_assert_uint_gt(len, 0);
    if (r->data_calls++ == 0)
        r->first_data = buf;
    rec_add(r, buf, len);
    return r->fail_data;
}

static int on_end(void *ctx)
{
    rec_t *r = ctx;

    rec_str(r, "[E]");
    return r->fail_end;
}

static const su_mp_callbacks_t cbs = { on_begin, on_data, on_end };

static su_mp_t *new_parser(const char *boundary, rec_t *r)
{
    su_mp_t *mp = su_mp_create(pool, boundary, NULL, &cbs, r);

    ck_assert_ptr_nonnull(mp);
    return mp;
}

/* Feeds body in pieces of `piece` bytes (0: cut once at `cut`). */
static su_err_t run(const char *boundary, const char *body, size_t len,
                    size_t cut, size_t piece, rec_t *r)
{
    su_mp_t *mp = new_parser(boundary, r);
    su_err_t e = SU_OK;
    size_t i;

    if (piece == 0) {
        e = su_mp_feed(mp, body, cut);
        if (e == SU_OK)
            e = su_mp_feed(mp, body + cut, len - cut);
    } else {
        for (i = 0; i < len && e == SU_OK; i += piece)
            e = su_mp_feed(mp, body + i, len - i < piece ? len - i : piece);
    }
    if (e == SU_OK)
        e = su_mp_finish(mp);
    if (e == SU_ERR_BAD_REQUEST)
        ck_assert_str_ne(su_mp_error(mp), "");
    return e;
}

/* Every way of cutting body gives exactly the expected events. */
static void check_valid(const char *boundary, const char *body, size_t len,
                        const char *expect, size_t expect_len)
{
    size_t cut;
    rec_t r;

    for (cut = 0; cut <= len; cut++) {
        memset(&r, 0, sizeof(r));
        ck_assert_int_eq(run(boundary, body, len, cut, 0, &r), SU_OK);
        ck_assert_msg(r.len == expect_len && memcmp(r.buf, expect, expect_len) == 0,
                      "split at %zu: got \"%s\"", cut, r.buf ? r.buf : "");
        free(r.buf);
    }
    memset(&r, 0, sizeof(r));
    ck_assert_int_eq(run(boundary, body, len, 0, 1, &r), SU_OK);
    ck_assert_msg(r.len == expect_len && memcmp(r.buf, expect, expect_len) == 0,
                  "byte by byte: got \"%s\"", r.buf ? r.buf : "");
    free(r.buf);
}

static void check_valid_s(const char *body, const char *expect)
{
    check_valid(BND, body, strlen(body), expect, strlen(expect));
}

/* Every way of cutting body gives SU_ERR_BAD_REQUEST (step: split stride). */
static void check_bad(const char *boundary, const char *body, size_t len, size_t step)
{
    size_t cut;
    rec_t r;

    for (cut = 0; cut <= len; cut += step) {
        memset(&r, 0, sizeof(r));
        ck_assert_msg(run(boundary, body, len, cut, 0, &r) == SU_ERR_BAD_REQUEST,
                      "accepted, split at %zu", cut);
        free(r.buf);
    }
    memset(&r, 0, sizeof(r));
    ck_assert_int_eq(run(boundary, body, len, 0, 1, &r), SU_ERR_BAD_REQUEST);
    free(r.buf);
}

static void check_bad_s(const char *body)
{
    check_bad(BND, body, strlen(body), 1);
}

#define CD_FILE "Content-Disposition: form-data; name=\"file\"; filename=\"a.txt\"\r\n"

/* ---- valid bodies ---- */

START_TEST(one_file_part)
{
    check_valid_s("--" BND "\r\n" CD_FILE "Content-Type: text/plain\r\n\r\n"
                  "hello world\r\n--" BND "--\r\n",
                  "[B name=file file=a.txt type=text/plain]hello world[E]");
    /* no CRLF after the close delimiter */
    check_valid_s("--" BND "\r\n" CD_FILE "\r\nhello\r\n--" BND "--",
                  "[B name=file file=a.txt type=(null)]hello[E]");
}
END_TEST

START_TEST(several_parts)
{
    check_valid_s("--" BND "\r\n"
                  "Content-Disposition: form-data; name=\"title\"\r\n\r\n"
                  "My title\r\n--" BND "\r\n"
                  "content-disposition: FORM-DATA; NAME=file; "
                  "filename*=UTF-8''%e2%82%ac.bin\r\n"
                  "content-type: application/octet-stream\r\n\r\n"
                  "\x01\x02\x03\r\n--" BND "\r\n"
                  "Content-Disposition: form-data; name=\"x\"\r\n\r\n"
                  "y\r\n--" BND "--\r\n",
                  "[B name=title file=(null) type=(null)]My title[E]"
                  "[B name=file file=\xe2\x82\xac.bin type=application/octet-stream]"
                  "\x01\x02\x03[E]"
                  "[B name=x file=(null) type=(null)]y[E]");
}
END_TEST

/* A part's file name as browsers send it: a Windows path's backslashes as
 * they are, '"', CR and LF as %22, %0D, %0A; other %XX stay. */
START_TEST(file_name_as_browsers_send_it)
{
    check_valid_s("--" BND "\r\nContent-Disposition: form-data; name=\"file\"; "
                  "filename=\"C:\\Users\\ana\\r\xc3\xa9sum\xc3\xa9 %22q%22.txt\"\r\n\r\n"
                  "x\r\n--" BND "--\r\n",
                  "[B name=file file=C:\\Users\\ana\\r\xc3\xa9sum\xc3\xa9 \"q\".txt "
                  "type=(null)]x[E]");
    check_valid_s("--" BND "\r\nContent-Disposition: form-data; name=\"file\"; "
                  "filename=\"\\\\server\\share\\a%0d%0Ab%41.txt\"\r\n\r\n"
                  "x\r\n--" BND "--\r\n",
                  "[B name=file file=\\server\\share\\a\r\nb%41.txt type=(null)]x[E]");
    check_valid_s("--" BND "\r\nContent-Disposition: form-data; name=\"file\"; "
                  "filename=\"a/b\\c\\\"d\\\\e\"\r\n\r\nx\r\n--" BND "--\r\n",
                  "[B name=file file=a/b\\c\"d\\e type=(null)]x[E]");
    /* \" still escapes the quote: a trailing single backslash leaves it open */
    check_bad_s("--" BND "\r\nContent-Disposition: form-data; name=\"file\"; "
                "filename=\"C:\\dir\\\"\r\n\r\nx\r\n--" BND "--\r\n");
}
END_TEST

START_TEST(empty_parts)
{
    check_valid_s("--" BND "\r\n" CD_FILE "\r\n\r\n--" BND "--\r\n",
                  "[B name=file file=a.txt type=(null)][E]");
    check_valid_s("--" BND "\r\n" CD_FILE "\r\n\r\n--" BND "\r\n"
                  "Content-Disposition: form-data; name=\"e\"\r\n\r\n\r\n--" BND "--",
                  "[B name=file file=a.txt type=(null)][E][B name=e file=(null) type=(null)][E]");
}
END_TEST

START_TEST(lookalikes)
{
    /* data holding near-misses of "\r\n--XyZ" and the boundary without CRLF */
    static const char data[] =
        "\r\n--XyY\r\n--Xy\r\n--X\r\n-\r\n\r\n--Xy!--XyZ\n--XyZ\r--XyZ\r\r\n--Xy\r\r\n\r\n--Xy";
    const char *body = apr_pstrcat(pool, "--" BND "\r\n" CD_FILE "\r\n", data,
                                   "\r\n--" BND "--\r\n", NULL);
    const char *expect = apr_pstrcat(pool, "[B name=file file=a.txt type=(null)]",
                                     data, "[E]", NULL);
    /* the literal above must not itself contain the delimiter */
    ck_assert_ptr_null(strstr(data, "\r\n--" BND));
    ck_assert_ptr_nonnull(strstr(data, "--" BND));
    check_valid_s(body, expect);
    /* data ending in CR right before the delimiter */
    check_valid_s("--" BND "\r\n" CD_FILE "\r\nab\r\r\n--" BND "--",
                  "[B name=file file=a.txt type=(null)]ab\r[E]");
}
END_TEST

START_TEST(lookalike_boundary_prefix)
{
    /* a boundary that is a prefix of a run of dashes */
    static const char body[] = "----\r\n" CD_FILE "\r\n-\r\n---\r\n---\r\n------\r\n";
    static const char expect[] = "[B name=file file=a.txt type=(null)]-\r\n---\r\n---[E]";

    check_valid("--", body, sizeof(body) - 1, expect, sizeof(expect) - 1);
}
END_TEST

START_TEST(binary_all_bytes)
{
    static const char bnd[] = "----WebKitFormBoundary7MA4YWxkTrZu0gW";
    char data[3 * 256];
    const char *head = apr_pstrcat(pool, "--", bnd, "\r\n", CD_FILE, "\r\n", NULL);
    const char *tail = apr_pstrcat(pool, "\r\n--", bnd, "--\r\n", NULL);
    const char *ehead = "[B name=file file=a.txt type=(null)]";
    size_t hl = strlen(head), tl = strlen(tail), el = strlen(ehead), i;
    char *body = apr_palloc(pool, hl + sizeof(data) + tl);
    char *expect = apr_palloc(pool, el + sizeof(data) + 3);

    for (i = 0; i < sizeof(data); i++)
        data[i] = (char)(i < 512 ? i % 256 : 255 - i % 256);
    memcpy(body, head, hl);
    memcpy(body + hl, data, sizeof(data));
    memcpy(body + hl + sizeof(data), tail, tl);
    memcpy(expect, ehead, el);
    memcpy(expect + el, data, sizeof(data));
    memcpy(expect + el + sizeof(data), "[E]", 3);
    check_valid(bnd, body, hl + sizeof(data) + tl, expect, el + sizeof(data) + 3);
}
END_TEST

START_TEST(quoted_boundary)
{
    const char *b;

    ck_assert_int_eq(su_mp_boundary(pool, "multipart/form-data; boundary=\"a b:c?d(e)\"", &b),
                     SU_OK);
    ck_assert_str_eq(b, "a b:c?d(e)");
    check_valid(b, "--a b:c?d(e)\r\n" CD_FILE "\r\nQ\r\n--a b:c?d(e)--",
                strlen("--a b:c?d(e)\r\n" CD_FILE "\r\nQ\r\n--a b:c?d(e)--"),
                "[B name=file file=a.txt type=(null)]Q[E]",
                strlen("[B name=file file=a.txt type=(null)]Q[E]"));
}
END_TEST

START_TEST(preamble_epilogue)
{
    check_valid_s("This is a preamble --" BND " \r\n--XyY\r\n\r\n--" BND "\r\n"
                  CD_FILE "\r\nbody\r\n--" BND "--\r\nepilogue\n--" BND "\r\ngarbage\n",
                  "[B name=file file=a.txt type=(null)]body[E]");
    /* the first delimiter after a bare CRLF */
    check_valid_s("\r\n--" BND "\r\n" CD_FILE "\r\nbody\r\n--" BND "--",
                  "[B name=file file=a.txt type=(null)]body[E]");
}
END_TEST

START_TEST(transport_padding)
{
    check_valid_s("--" BND " \t \r\n" CD_FILE "\r\none\r\n--" BND "\t\r\n"
                  "Content-Disposition: form-data; name=\"n\"\r\n\r\ntwo\r\n--" BND "--  \r\n",
                  "[B name=file file=a.txt type=(null)]one[E]"
                  "[B name=n file=(null) type=(null)]two[E]");
}
END_TEST

START_TEST(headers_table)
{
    static const char body[] = "--" BND "\r\n" CD_FILE "X-Thing:  v1 \r\n"
                               "Content-Digest: sha-256=:AA==:\r\n\r\nd\r\n--" BND "--";
    rec_t r;
    su_mp_t *mp;

    memset(&r, 0, sizeof(r));
    mp = new_parser(BND, &r);
    ck_assert_int_eq(su_mp_feed(mp, body, sizeof(body) - 1), SU_OK);
    ck_assert_int_eq(su_mp_finish(mp), SU_OK);
    ck_assert_str_eq(r.buf, "[B name=file file=a.txt type=(null)]d[E]");
    free(r.buf);
}
END_TEST

static const char *seen_thing;

static int on_begin_hdr(void *ctx, const su_mp_part_t *part)
{
    (void)ctx;
    seen_thing = apr_table_get(part->headers, "x-THING");
    return 0;
}

START_TEST(headers_case_insensitive)
{
    static const char body[] = "--" BND "\r\n" CD_FILE "X-Thing:  v1 \r\n\r\nd\r\n--" BND "--";
    su_mp_callbacks_t cb = { on_begin_hdr, NULL, NULL };
    su_mp_t *mp = su_mp_create(pool, BND, NULL, &cb, NULL);

    ck_assert_ptr_nonnull(mp);
    seen_thing = NULL;
    ck_assert_int_eq(su_mp_feed(mp, body, sizeof(body) - 1), SU_OK);
    ck_assert_int_eq(su_mp_finish(mp), SU_OK);
    ck_assert_ptr_nonnull(seen_thing);
    ck_assert_str_eq(seen_thing, "v1");
}
END_TEST

START_TEST(streaming_lookbehind)
{
    static const char head[] = "--" BND "\r\n" CD_FILE "\r\n";
    rec_t r;
    su_mp_t *mp;
    const char *pre = "[B name=file file=a.txt type=(null)]";
    char chunk[64];

    memset(&r, 0, sizeof(r));
    mp = new_parser(BND, &r);
    ck_assert_int_eq(su_mp_feed(mp, head, sizeof(head) - 1), SU_OK);
    /* body bytes that cannot start a delimiter are handed over at once,
     * straight from the caller's buffer */
    memcpy(chunk, "hello world", 11);
    ck_assert_int_eq(su_mp_feed(mp, chunk, 11), SU_OK);
    ck_assert_str_eq(r.buf + strlen(pre), "hello world");
    ck_assert_ptr_eq(r.first_data, chunk);
    /* a possible delimiter prefix is held back ... */
    ck_assert_int_eq(su_mp_feed(mp, "!\r\n--Xy", 7), SU_OK);
    ck_assert_str_eq(r.buf + strlen(pre), "hello world!");
    /* ... and released when it turns out to be data */
    ck_assert_int_eq(su_mp_feed(mp, "Q", 1), SU_OK);
    ck_assert_str_eq(r.buf + strlen(pre), "hello world!\r\n--XyQ");
    ck_assert_int_eq(su_mp_feed(mp, "\r\n--" BND "--", 9), SU_OK);
    ck_assert_int_eq(su_mp_finish(mp), SU_OK);
    ck_assert_str_eq(r.buf + strlen(pre), "hello world!\r\n--XyQ[E]");
    free(r.buf);
}
END_TEST

/* ---- malformed bodies ---- */

START_TEST(bad_line_ends)
{
    check_bad_s("--" BND "\n" CD_FILE "\r\nx\r\n--" BND "--\r\n");
    check_bad_s("--" BND "\r\nContent-Disposition: form-data; name=\"f\"\n\nx\n--" BND "--\n");
    check_bad_s("--" BND "\r\nContent-Disposition: form-data; name=\"f\"\r\n\nx\r\n--" BND "--");
    check_bad_s("--" BND "\r\nContent-Disposition: form-data; name=\"f\"\rX\r\n\r\nx\r\n--"
                BND "--");
    check_bad_s("--" BND "\r\r\n" CD_FILE "\r\nx\r\n--" BND "--");
}
END_TEST

START_TEST(bad_missing_close)
{
    check_bad_s("--" BND "\r\n" CD_FILE "\r\nhello");
    check_bad_s("--" BND "\r\n" CD_FILE "\r\nhello\r\n--" BND);
    check_bad_s("--" BND "\r\n" CD_FILE "\r\nhello\r\n--" BND "-");
    check_bad_s("--" BND "\r\n" CD_FILE "\r\nhello\r\n--" BND "\r\n");
    check_bad_s("--" BND "\r\n" CD_FILE);
    check_bad_s("--" BND "\r\n");
    check_bad_s("just a preamble");
    check_bad(BND, "", 0, 1);
}
END_TEST

START_TEST(bad_delimiter_line)
{
    check_bad_s("--" BND "x\r\n" CD_FILE "\r\nx\r\n--" BND "--");
    check_bad_s("--" BND "\r\n" CD_FILE "\r\nx\r\n--" BND "-x");
    check_bad_s("--" BND "\r\n" CD_FILE "\r\nx\r\n--" BND " --");
    check_bad_s("--" BND "\r\n" CD_FILE "\r\nx\r\n--" BND "x\r\n");
    check_bad_s("--" BND "--\r\n");   /* no parts at all */
}
END_TEST

static char *repeat_headers(int n, size_t value_len)
{
    char *v = apr_palloc(pool, value_len + 1);
    char *s = apr_pstrcat(pool, "--" BND "\r\n" CD_FILE, NULL);
    int i;

    memset(v, 'v', value_len);
    v[value_len] = '\0';
    for (i = 0; i < n; i++)
        s = apr_psprintf(pool, "%sX-H%d: %s\r\n", s, i, v);
    return apr_pstrcat(pool, s, "\r\nx\r\n--" BND "--\r\n", NULL);
}

START_TEST(bad_header_caps)
{
    rec_t r;
    char *s;

    /* 15 extra headers + Content-Disposition = 16: allowed */
    s = repeat_headers(15, 4);
    memset(&r, 0, sizeof(r));
    ck_assert_int_eq(run(BND, s, strlen(s), 0, 1, &r), SU_OK);
    free(r.buf);
    s = repeat_headers(16, 4);
    check_bad(BND, s, strlen(s), 1);
    /* header bytes over 8192 */
    s = repeat_headers(1, 8200);
    check_bad(BND, s, strlen(s), 97);
    s = repeat_headers(1, 8000);
    memset(&r, 0, sizeof(r));
    ck_assert_int_eq(run(BND, s, strlen(s), 0, 1, &r), SU_OK);
    free(r.buf);
}
END_TEST

START_TEST(bad_too_many_parts)
{
    const char *part = "--" BND "\r\nContent-Disposition: form-data; name=\"f\"\r\n\r\nv\r\n";
    char *s = "";
    rec_t r;
    int i;

    for (i = 0; i < 64; i++)
        s = apr_pstrcat(pool, s, part, NULL);
    memset(&r, 0, sizeof(r));
    ck_assert_int_eq(run(BND, apr_pstrcat(pool, s, "--" BND "--", NULL),
                         strlen(s) + 7, 0, 4096, &r), SU_OK);
    free(r.buf);
    s = apr_pstrcat(pool, s, part, "--" BND "--", NULL);
    check_bad(BND, s, strlen(s), 13);
}
END_TEST

START_TEST(bad_part_headers)
{
    check_bad_s("--" BND "\r\nContent-Type: text/plain\r\n\r\nx\r\n--" BND "--");
    check_bad_s("--" BND "\r\n\r\nx\r\n--" BND "--");
    check_bad_s("--" BND "\r\nContent-Disposition: attachment; name=\"f\"\r\n\r\nx\r\n--"
                BND "--");
    check_bad_s("--" BND "\r\nContent-Disposition: form-data; filename=\"a\"\r\n\r\nx\r\n--"
                BND "--");
    check_bad_s("--" BND "\r\nContent-Disposition: form-data; name=\"f\r\n\r\nx\r\n--"
                BND "--");
    check_bad_s("--" BND "\r\nContent-Disposition: form-data;\r\n name=\"f\"\r\n\r\nx\r\n--"
                BND "--");                                        /* obs-fold */
    check_bad_s("--" BND "\r\n" CD_FILE CD_FILE "\r\nx\r\n--" BND "--");   /* duplicate */
    check_bad_s("--" BND "\r\n" CD_FILE "NoColon\r\n\r\nx\r\n--" BND "--");
    check_bad_s("--" BND "\r\n" CD_FILE "Bad Name: v\r\n\r\nx\r\n--" BND "--");
    check_bad_s("--" BND "\r\n" CD_FILE "X-A : v\r\n\r\nx\r\n--" BND "--");
    check_bad_s("--" BND "\r\n" CD_FILE "X-A: a\x01" "b\r\n\r\nx\r\n--" BND "--");
    check_bad_s("--" BND "\r\n" CD_FILE "Content-Transfer-Encoding: base64\r\n\r\nx\r\n--"
                BND "--");
    check_bad_s("--" BND "\r\nContent-Disposition: form-data; name=\"f\"; "
                "filename*=UTF-8''%zz\r\n\r\nx\r\n--" BND "--");
}
END_TEST

START_TEST(bad_preamble)
{
    char *s = apr_palloc(pool, 8200 + 256);
    rec_t r;

    memset(s, 'p', 8192);
    strcpy(s + 8192, "\r\n--" BND "\r\n" CD_FILE "\r\nx\r\n--" BND "--");
    memset(&r, 0, sizeof(r));
    ck_assert_int_eq(run(BND, s, strlen(s), 0, 1, &r), SU_OK);
    free(r.buf);
    memset(s, 'p', 8193);
    strcpy(s + 8193, "\r\n--" BND "\r\n" CD_FILE "\r\nx\r\n--" BND "--");
    check_bad(BND, s, strlen(s), 101);
}
END_TEST

START_TEST(boundary_param)
{
    const char *b;
    char *b70 = apr_palloc(pool, 72);
    static const char *bad[] = {
        "multipart/form-data; boundary=\"\"",
        "multipart/form-data; boundary=",
        "multipart/form-data",
        "multipart/form-data; charset=utf-8",
        "multipart/mixed; boundary=abc",
        "application/octet-stream; boundary=abc",
        "multipart/form-data; boundary=\"a@b\"",
        "multipart/form-data; boundary=\"a\\\"b\"",
        "multipart/form-data; boundary=\"a;b\"",
        "multipart/form-data; boundary=\"abc \"",
        "multipart/form-data; boundary=abc; boundary=abc",
        "multipart/form-data; boundary=\"abc",
        NULL
    };
    int i;

    ck_assert_int_eq(su_mp_boundary(pool, "Multipart/Form-Data; BOUNDARY=abc", &b), SU_OK);
    ck_assert_str_eq(b, "abc");
    ck_assert_int_eq(su_mp_boundary(pool, "multipart/form-data; charset=x; boundary=\"a'b\"",
                                    &b), SU_OK);
    ck_assert_str_eq(b, "a'b");
    memset(b70, 'b', 70);
    b70[70] = '\0';
    ck_assert_int_eq(su_mp_boundary(pool, apr_pstrcat(pool, "multipart/form-data; boundary=",
                                                      b70, NULL), &b), SU_OK);
    ck_assert_uint_eq(strlen(b), 70);
    b70[70] = 'b';
    b70[71] = '\0';
    ck_assert_int_eq(su_mp_boundary(pool, apr_pstrcat(pool, "multipart/form-data; boundary=",
                                                      b70, NULL), &b), SU_ERR_BAD_REQUEST);
    for (i = 0; bad[i] != NULL; i++)
        ck_assert_msg(su_mp_boundary(pool, bad[i], &b) == SU_ERR_BAD_REQUEST,
                      "accepted: %s", bad[i]);
    ck_assert_int_eq(su_mp_boundary(pool, NULL, &b), SU_ERR_BAD_REQUEST);
    ck_assert_ptr_null(su_mp_create(pool, "", NULL, &cbs, NULL));
    ck_assert_ptr_null(su_mp_create(pool, b70, NULL, &cbs, NULL));
    ck_assert_ptr_null(su_mp_create(pool, "a\r\nb", NULL, &cbs, NULL));
}
END_TEST

/* ---- callbacks and sticky errors ---- */

static const char good[] = "--" BND "\r\n" CD_FILE "\r\nhello\r\n--" BND "--\r\n";

static void check_cb_error(int which, su_err_t err)
{
    rec_t r;
    su_mp_t *mp;
    size_t i;
    su_err_t e = SU_OK;

    memset(&r, 0, sizeof(r));
    if (which == 0)
        r.fail_begin = err;
    else if (which == 1)
        r.fail_data = err;
    else
        r.fail_end = err;
    mp = new_parser(BND, &r);
    for (i = 0; i < sizeof(good) - 1 && e == SU_OK; i++)
        e = su_mp_feed(mp, good + i, 1);
    ck_assert_int_eq(e, err);
    ck_assert_int_eq(su_mp_feed(mp, "x", 1), err);
    ck_assert_int_eq(su_mp_finish(mp), err);
    free(r.buf);
}

START_TEST(callback_errors)
{
    check_cb_error(0, SU_ERR_UNSUPPORTED_TYPE);
    check_cb_error(1, SU_ERR_TOO_LARGE);
    check_cb_error(2, SU_ERR_INTERNAL);
    check_cb_error(0, SU_ERR_BAD_REQUEST);
}
END_TEST

START_TEST(sticky_error)
{
    rec_t r;
    su_mp_t *mp;

    memset(&r, 0, sizeof(r));
    mp = new_parser(BND, &r);
    ck_assert_int_eq(su_mp_feed(mp, "--" BND "\n", 6), SU_ERR_BAD_REQUEST);
    ck_assert_str_ne(su_mp_error(mp), "");
    ck_assert_int_eq(su_mp_feed(mp, good, sizeof(good) - 1), SU_ERR_BAD_REQUEST);
    ck_assert_int_eq(su_mp_finish(mp), SU_ERR_BAD_REQUEST);
    ck_assert_ptr_null(r.buf);
    free(r.buf);
}
END_TEST

START_TEST(limits_custom)
{
    su_mp_limits_t lim;
    rec_t r;
    su_mp_t *mp;

    su_mp_limits_default(&lim);
    ck_assert_int_eq(lim.max_parts, SU_MP_DEF_MAX_PARTS);
    ck_assert_uint_eq(lim.max_header_bytes, SU_MP_DEF_MAX_HDR_BYTES);
    ck_assert_int_eq(lim.max_headers, SU_MP_DEF_MAX_HEADERS);
    ck_assert_uint_eq(lim.max_preamble, SU_MP_DEF_MAX_PREAMBLE);
    lim.max_preamble = 0;
    lim.max_parts = 1;
    memset(&r, 0, sizeof(r));
    mp = su_mp_create(pool, BND, &lim, &cbs, &r);
    ck_assert_int_eq(su_mp_feed(mp, good, sizeof(good) - 1), SU_OK);
    ck_assert_int_eq(su_mp_finish(mp), SU_OK);
    free(r.buf);
    memset(&r, 0, sizeof(r));
    mp = su_mp_create(pool, BND, &lim, &cbs, &r);
    /* no preamble allowed at all */
    ck_assert_int_eq(su_mp_feed(mp, "x", 1), SU_ERR_BAD_REQUEST);
    free(r.buf);
    memset(&r, 0, sizeof(r));
    mp = su_mp_create(pool, BND, &lim, &cbs, &r);
    ck_assert_int_eq(su_mp_feed(mp, good, sizeof(good) - 5), SU_OK);
    ck_assert_int_eq(su_mp_feed(mp, "\r\n" CD_FILE "\r\nx\r\n--" BND "--",
                                strlen("\r\n" CD_FILE "\r\nx\r\n--" BND "--")),
                     SU_ERR_BAD_REQUEST);
    ck_assert_str_eq(r.buf, "[B name=file file=a.txt type=(null)]hello[E]");
    free(r.buf);
}
END_TEST

static Suite *mp_suite(void)
{
    Suite *s = suite_create("su_mp");
    TCase *tc = tcase_create("core");

    tcase_set_timeout(tc, 120);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, one_file_part);
    tcase_add_test(tc, several_parts);
    tcase_add_test(tc, file_name_as_browsers_send_it);
    tcase_add_test(tc, empty_parts);
    tcase_add_test(tc, lookalikes);
    tcase_add_test(tc, lookalike_boundary_prefix);
    tcase_add_test(tc, binary_all_bytes);
    tcase_add_test(tc, quoted_boundary);
    tcase_add_test(tc, preamble_epilogue);
    tcase_add_test(tc, transport_padding);
    tcase_add_test(tc, headers_table);
    tcase_add_test(tc, headers_case_insensitive);
    tcase_add_test(tc, streaming_lookbehind);
    tcase_add_test(tc, bad_line_ends);
    tcase_add_test(tc, bad_missing_close);
    tcase_add_test(tc, bad_delimiter_line);
    tcase_add_test(tc, bad_header_caps);
    tcase_add_test(tc, bad_too_many_parts);
    tcase_add_test(tc, bad_part_headers);
    tcase_add_test(tc, bad_preamble);
    tcase_add_test(tc, boundary_param);
    tcase_add_test(tc, callback_errors);
    tcase_add_test(tc, sticky_error);
    tcase_add_test(tc, limits_custom);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return su_check_run(mp_suite);
}
