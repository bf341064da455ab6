/* Unit tests of the header-value parsers (su_hdr.c). */
#include <stdlib.h>
#include <string.h>
#include <check.h>
#include <apr_general.h>
#include <apr_pools.h>
#include <apr_strings.h>
#include "su_check.h"
#include "su_hdr.h"

#define B64_32 "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
#define B64_64 "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ1Njc4OTo7PD0+Pw=="
#define B64_64B "ZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXp7fH1+f4CBgoOEhYaHiImKi4yNjo+QkZKTlJWWl5iZmpucnZ6foKGiow=="
#define B64_16 "AAECAwQFBgcICQoLDA0ODw=="
#define B64_31 "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHg=="

static apr_pool_t *pool;

static void setup(void)
{
    ck_assert_int_eq(apr_pool_create(&pool, NULL), APR_SUCCESS);
}

static void teardown(void)
{
    apr_pool_destroy(pool);
}

static int is_seq(const unsigned char *v, apr_size_t n, int first)
{
    apr_size_t i;

    for (i = 0; i < n; i++)
        if (v[i] != (unsigned char)(first + (int)i))
            return 0;
    return 1;
}

/* ---- su_hdr_params ---- */

START_TEST(params_basic)
{
    const char *v;
    apr_table_t *t;

    ck_assert_int_eq(su_hdr_params(pool, "Multipart/Form-Data; Boundary=abc; charset=\"utf-8\"",
                                   &v, &t), SU_OK);
    ck_assert_str_eq(v, "multipart/form-data");
    ck_assert_str_eq(apr_table_get(t, "boundary"), "abc");
    ck_assert_str_eq(apr_table_get(t, "charset"), "utf-8");
    ck_assert_int_eq(apr_table_elts(t)->nelts, 2);

    ck_assert_int_eq(su_hdr_params(pool, "  form-data ;name = \"a b\" ;filename=x.txt  ",
                                   &v, &t), SU_OK);
    ck_assert_str_eq(v, "form-data");
    ck_assert_str_eq(apr_table_get(t, "name"), "a b");
    ck_assert_str_eq(apr_table_get(t, "filename"), "x.txt");

    ck_assert_int_eq(su_hdr_params(pool, "text/plain", &v, &t), SU_OK);
    ck_assert_str_eq(v, "text/plain");
    ck_assert_int_eq(apr_table_elts(t)->nelts, 0);
}
END_TEST

START_TEST(params_quoting)
{
    const char *v;
    apr_table_t *t;

    ck_assert_int_eq(su_hdr_params(pool, "form-data; name=\"a\\\"b\\\\c\\d\"", &v, &t), SU_OK);
    ck_assert_str_eq(apr_table_get(t, "name"), "a\"b\\cd");
    ck_assert_int_eq(su_hdr_params(pool, "form-data; name=\"\"", &v, &t), SU_OK);
    ck_assert_str_eq(apr_table_get(t, "name"), "");
    ck_assert_int_eq(su_hdr_params(pool, "form-data; name=\"x;y=z\"", &v, &t), SU_OK);
    ck_assert_str_eq(apr_table_get(t, "name"), "x;y=z");
    ck_assert_int_eq(apr_table_elts(t)->nelts, 1);
    /* raw UTF-8 (obs-text) inside quotes */
    ck_assert_int_eq(su_hdr_params(pool, "form-data; filename=\"r\xc3\xa9sum\xc3\xa9.pdf\"",
                                   &v, &t), SU_OK);
    ck_assert_str_eq(apr_table_get(t, "filename"), "r\xc3\xa9sum\xc3\xa9.pdf");
}
END_TEST

START_TEST(params_errors)
{
    const char *v;
    apr_table_t *t;
    static const char *bad[] = {
        "",
        "   ",
        "; name=a",
        "form-data; name=\"abc",             /* unterminated */
        "form-data; name=\"abc\\",
        "form-data; name=a; NAME=b",         /* duplicate, case-insensitive */
        "form-data; name=a; name=a",
        "form-data; name",
        "form-data; name=",
        "form-data; =a",
        "form-data name=a",
        "form-data; name=a b",
        "form-data; name=\"a\"b",
        "form-data; name=\"a\x01\"",         /* control char in quotes */
        "form-data; name=a\x7f",
        "text/",
        "/plain",
        "a/b/c",
        "form-data; na(me=a",
        NULL
    };
    int i;

    for (i = 0; bad[i] != NULL; i++)
        ck_assert_msg(su_hdr_params(pool, bad[i], &v, &t) == SU_ERR_BAD_REQUEST,
                      "accepted: %s", bad[i]);
    ck_assert_int_eq(su_hdr_params(pool, NULL, &v, &t), SU_ERR_BAD_REQUEST);
}
END_TEST

START_TEST(params_length_cap)
{
    const char *v;
    apr_table_t *t;
    apr_size_t n = 16384;
    char *s = apr_palloc(pool, n + 2);

    memcpy(s, "form-data; name=", 16);
    memset(s + 16, 'a', n - 16);
    s[n] = '\0';
    ck_assert_int_eq(su_hdr_params(pool, s, &v, &t), SU_OK);
    ck_assert_uint_eq(strlen(apr_table_get(t, "name")), n - 16);
    s[n] = 'a';
    s[n + 1] = '\0';
    ck_assert_int_eq(su_hdr_params(pool, s, &v, &t), SU_ERR_BAD_REQUEST);
}
END_TEST

START_TEST(params_count_cap)
{
    const char *v;
    apr_table_t *t;
    char *s = "x/y";
    int i;

    for (i = 0; i < 64; i++)
        s = apr_psprintf(pool, "%s; p%d=%d", s, i, i);
    ck_assert_int_eq(su_hdr_params(pool, s, &v, &t), SU_OK);
    ck_assert_int_eq(apr_table_elts(t)->nelts, 64);
    ck_assert_str_eq(apr_table_get(t, "p63"), "63");
    s = apr_pstrcat(pool, s, "; p64=64", NULL);
    ck_assert_int_eq(su_hdr_params(pool, s, &v, &t), SU_ERR_BAD_REQUEST);
}
END_TEST

/* ---- ext-values and Content-Disposition ---- */

START_TEST(ext_values)
{
    const char *o;

    ck_assert_int_eq(su_hdr_ext_value(pool, "UTF-8''%e2%82%ac%20rates.txt", &o), SU_OK);
    ck_assert_str_eq(o, "\xe2\x82\xac rates.txt");
    ck_assert_int_eq(su_hdr_ext_value(pool, "utf-8'en-US'a%2Fb", &o), SU_OK);
    ck_assert_str_eq(o, "a/b");
    ck_assert_int_eq(su_hdr_ext_value(pool, "iso-8859-1'en'%A3%20rates", &o), SU_OK);
    ck_assert_str_eq(o, "\xc2\xa3 rates");
    ck_assert_int_eq(su_hdr_ext_value(pool, "ISO-8859-1''caf%E9", &o), SU_OK);
    ck_assert_str_eq(o, "caf\xc3\xa9");
    ck_assert_int_eq(su_hdr_ext_value(pool, "UTF-8''", &o), SU_OK);
    ck_assert_str_eq(o, "");
}
END_TEST

START_TEST(ext_value_errors)
{
    const char *o;
    static const char *bad[] = {
        "UTF-8''%",
        "UTF-8''%4",
        "UTF-8''%zz",
        "UTF-8''%4g",
        "UTF-8''%00evil",          /* NUL */
        "UTF-8''%C3",              /* truncated UTF-8 */
        "UTF-8''%C0%AF",           /* overlong */
        "UTF-8''%ED%A0%80",        /* surrogate */
        "UTF-8''%FF",
        "UTF-8''a b",              /* space must be encoded */
        "UTF-8''a\"b",
        "UTF-8'a",                 /* one quote */
        "UTF-8",
        "koi8-r''abc",             /* unsupported charset */
        "''abc",
        "UTF-8'e n'abc",           /* bad language tag */
        NULL
    };
    int i;

    for (i = 0; bad[i] != NULL; i++)
        ck_assert_msg(su_hdr_ext_value(pool, bad[i], &o) == SU_ERR_BAD_REQUEST,
                      "accepted: %s", bad[i]);
}
END_TEST

START_TEST(disposition)
{
    const char *d, *f;

    ck_assert_int_eq(su_hdr_disposition(pool, "Attachment; filename=\"a.txt\"", &d, &f), SU_OK);
    ck_assert_str_eq(d, "attachment");
    ck_assert_str_eq(f, "a.txt");
    ck_assert_int_eq(su_hdr_disposition(pool,
        "attachment; filename*=UTF-8''%e2%82%ac.txt; filename=\"EUR.txt\"", &d, &f), SU_OK);
    ck_assert_str_eq(f, "\xe2\x82\xac.txt");
    ck_assert_int_eq(su_hdr_disposition(pool,
        "form-data; filename=\"EUR.txt\"; FILENAME*=utf-8''x%20y", &d, &f), SU_OK);
    ck_assert_str_eq(d, "form-data");
    ck_assert_str_eq(f, "x y");
    ck_assert_int_eq(su_hdr_disposition(pool, "inline", &d, &f), SU_OK);
    ck_assert_str_eq(d, "inline");
    ck_assert_ptr_null(f);
    ck_assert_int_eq(su_hdr_disposition(pool, "attachment; filename*=UTF-8''%", &d, &f),
                     SU_ERR_BAD_REQUEST);
    ck_assert_int_eq(su_hdr_disposition(pool, "attachment; filename=a; filename=b", &d, &f),
                     SU_ERR_BAD_REQUEST);
}
END_TEST

/* The name a Content-Disposition value leaves after su_hdr_safe_name. */
static const char *disp_name(const char *header)
{
    const char *d, *f;

    ck_assert_msg(su_hdr_disposition(pool, header, &d, &f) == SU_OK, "refused: %s", header);
    return su_hdr_safe_name(pool, f);
}

static const char *disp_file(const char *header)
{
    const char *d, *f;

    ck_assert_msg(su_hdr_disposition(pool, header, &d, &f) == SU_OK, "refused: %s", header);
    ck_assert_ptr_nonnull(f);
    return f;
}

START_TEST(disposition_backslashes)
{
    const char *v;
    apr_table_t *t;

    /* a backslash that escapes neither '"' nor '\' is a literal one */
    ck_assert_str_eq(disp_file("attachment; filename=\"..\\..\\windows\\evil.txt\""),
                     "..\\..\\windows\\evil.txt");
    ck_assert_str_eq(disp_name("attachment; filename=\"..\\..\\windows\\evil.txt\""),
                     "evil.txt");
    ck_assert_str_eq(disp_name("attachment; filename=\"C:\\Users\\ana\\report.pdf\""),
                     "report.pdf");
    ck_assert_str_eq(disp_name("form-data; name=\"file\"; filename=\"C:\\Users\\ana\\r.pdf\""),
                     "r.pdf");
    /* UNC, as browsers send it and with RFC quoted-pairs: both reduce the same */
    ck_assert_str_eq(disp_file("attachment; filename=\"\\\\server\\share\\a.txt\""),
                     "\\server\\share\\a.txt");
    ck_assert_str_eq(disp_name("attachment; filename=\"\\\\server\\share\\a.txt\""), "a.txt");
    ck_assert_str_eq(disp_file("attachment; filename=\"\\\\\\\\server\\\\share\\\\a.txt\""),
                     "\\\\server\\share\\a.txt");
    ck_assert_str_eq(disp_name("attachment; filename=\"\\\\\\\\server\\\\share\\\\a.txt\""),
                     "a.txt");
    /* mixed separators */
    ck_assert_str_eq(disp_name("attachment; filename=\"a/b\\c/d\\e.txt\""), "e.txt");
    ck_assert_str_eq(disp_name("attachment; filename=\"a\\b/c.txt\""), "c.txt");
    /* \" is a quote, \\ one backslash (and so a separator) */
    ck_assert_str_eq(disp_name("attachment; filename=\"we\\\"ird.txt\""), "we\"ird.txt");
    ck_assert_str_eq(disp_file("attachment; filename=\"a\\\\b.txt\""), "a\\b.txt");
    ck_assert_str_eq(disp_name("attachment; filename=\"a\\\\b.txt\""), "b.txt");
    /* a trailing separator, "." or "..": no name at all */
    ck_assert_str_eq(disp_name("attachment; filename=\"C:\\dir\\\\\""), "");
    ck_assert_str_eq(disp_name("attachment; filename=\"dir/\""), "");
    ck_assert_str_eq(disp_name("attachment; filename=\"C:\\dir\\..\""), "");
    ck_assert_str_eq(disp_name("attachment; filename=\"C:\\dir\\.\""), "");
    /* \" before the closing quote still escapes it: unterminated */
    ck_assert_int_eq(su_hdr_disposition(pool, "attachment; filename=\"C:\\dir\\\"", &v, &v),
                     SU_ERR_BAD_REQUEST);
    ck_assert_int_eq(su_hdr_disposition(pool, "attachment; filename=\"a\\\x01\"", &v, &v),
                     SU_ERR_BAD_REQUEST);
    /* other parameters keep RFC 9110's quoted-pairs */
    ck_assert_int_eq(su_hdr_params(pool, "form-data; name=\"a\\b\"; filename=\"a\\b\"",
                                   &v, &t), SU_OK);
    ck_assert_str_eq(apr_table_get(t, "name"), "ab");
    ck_assert_str_eq(apr_table_get(t, "filename"), "a\\b");
}
END_TEST

START_TEST(disposition_form_escapes)
{
    /* HTML's form encoding of a part's file name: %22, %0D, %0A, any case */
    ck_assert_str_eq(disp_file("form-data; name=\"file\"; "
                               "filename=\"r\xc3\xa9sum\xc3\xa9 %22q%22.txt\""),
                     "r\xc3\xa9sum\xc3\xa9 \"q\".txt");
    ck_assert_str_eq(disp_file("attachment; filename=\"a%0d%0Ab%0D%0ac.txt\""),
                     "a\r\nb\r\nc.txt");
    ck_assert_str_eq(disp_name("attachment; filename=\"a%0d%0Ab.txt\""), "ab.txt");
    ck_assert_str_eq(disp_file("attachment; filename=a%22b.txt"), "a\"b.txt");
    /* no other %XX, and only one pass */
    ck_assert_str_eq(disp_file("attachment; filename=\"%41.txt\""), "%41.txt");
    ck_assert_str_eq(disp_name("attachment; filename=\"a%2Fb%5Cc%00d%C3%A9\""),
                     "a%2Fb%5Cc%00d%C3%A9");
    ck_assert_str_eq(disp_file("attachment; filename=\"%2522 %%22 %2 %\""), "%2522 %\" %2 %");
    ck_assert_str_eq(disp_file("attachment; filename=\"%0\""), "%0");
    /* filename* is RFC 5987 alone: decoded once, then reduced like the rest */
    ck_assert_str_eq(disp_file("attachment; filename*=UTF-8''a%2522b"), "a%22b");
    ck_assert_str_eq(disp_name("attachment; filename*=UTF-8''..%5C..%5Cwin%5Cevil.txt"),
                     "evil.txt");
    ck_assert_str_eq(disp_name("attachment; filename*=UTF-8''C%3A%5Cdir%5C"), "");
}
END_TEST

/* ---- safe names ---- */

START_TEST(safe_name_paths)
{
    ck_assert_str_eq(su_hdr_safe_name(pool, "../../etc/passwd"), "passwd");
    ck_assert_str_eq(su_hdr_safe_name(pool, "C:\\x\\y.txt"), "y.txt");
    ck_assert_str_eq(su_hdr_safe_name(pool, "a/b\\c/d.bin"), "d.bin");
    ck_assert_str_eq(su_hdr_safe_name(pool, "report.pdf"), "report.pdf");
    ck_assert_str_eq(su_hdr_safe_name(pool, "dir/"), "");
    ck_assert_str_eq(su_hdr_safe_name(pool, ".."), "");
    ck_assert_str_eq(su_hdr_safe_name(pool, "a/.."), "");
    ck_assert_str_eq(su_hdr_safe_name(pool, "."), "");
    ck_assert_str_eq(su_hdr_safe_name(pool, "..."), "...");
    ck_assert_str_eq(su_hdr_safe_name(pool, ".\x01."), "");
    ck_assert_str_eq(su_hdr_safe_name(pool, ""), "");
    ck_assert_str_eq(su_hdr_safe_name(pool, NULL), "");
}
END_TEST

START_TEST(safe_name_chars)
{
    ck_assert_str_eq(su_hdr_safe_name(pool, "a\x01" "b\x1f" "c\x7f" "d\te\r\nf"), "abcdef");
    ck_assert_str_eq(su_hdr_safe_name(pool, "caf\xc3\xa9.txt"), "caf\xc3\xa9.txt");
    /* invalid UTF-8: stray continuation, lone lead, overlong, surrogate, > U+10FFFF */
    ck_assert_str_eq(su_hdr_safe_name(pool, "a\x80" "b\xc3" "c\xc0\xaf" "d"), "abcd");
    ck_assert_str_eq(su_hdr_safe_name(pool, "x\xed\xa0\x80y\xf4\x90\x80\x80z"), "xyz");
    ck_assert_str_eq(su_hdr_safe_name(pool, "\xf0\x9f\x98\x80.png"), "\xf0\x9f\x98\x80.png");
}
END_TEST

START_TEST(safe_name_length)
{
    char in[400];
    const char *o, *s;
    int i;

    /* 300 ASCII bytes: cut to 255 */
    memset(in, 'a', 300);
    in[300] = '\0';
    o = su_hdr_safe_name(pool, in);
    ck_assert_uint_eq(strlen(o), 255);

    /* 2-byte chars after 254 ASCII bytes: the char at 254..255 does not fit */
    memset(in, 'a', 254);
    for (i = 0; i < 20; i++) {
        in[254 + 2 * i] = '\xc3';
        in[255 + 2 * i] = '\xa9';
    }
    in[294] = '\0';
    o = su_hdr_safe_name(pool, in);
    ck_assert_uint_eq(strlen(o), 254);

    /* 100 three-byte chars (300 bytes): 85 chars = 255 bytes */
    for (i = 0; i < 100; i++)
        memcpy(in + 3 * i, "\xe2\x82\xac", 3);
    in[300] = '\0';
    o = su_hdr_safe_name(pool, in);
    ck_assert_uint_eq(strlen(o), 255);
    ck_assert_int_eq(memcmp(o + 252, "\xe2\x82\xac", 3), 0);

    /* 75 four-byte chars: 63 fit in 252 bytes */
    for (i = 0; i < 75; i++)
        memcpy(in + 4 * i, "\xf0\x9f\x98\x80", 4);
    in[300] = '\0';
    o = su_hdr_safe_name(pool, in);
    ck_assert_uint_eq(strlen(o), 252);

    /* after a Windows path, from a header: the cut still falls between characters */
    s = "attachment; filename=\"C:\\dir\\a";
    for (i = 0; i < 200; i++)
        s = apr_pstrcat(pool, s, "\xc3\xa9", NULL);
    o = disp_name(apr_pstrcat(pool, s, "\"", NULL));
    ck_assert_uint_eq(strlen(o), 255);
    ck_assert_int_eq(memcmp(o, "a\xc3\xa9", 3), 0);
    ck_assert_int_eq(memcmp(o + 253, "\xc3\xa9", 2), 0);
    o = disp_name(apr_pstrcat(pool, s, "\xc3\xa9\xc3\xa9\\b\xc3\xa9\"", NULL));
    ck_assert_str_eq(o, "b\xc3\xa9");
    s = "attachment; filename=\"C:\\dir\\";
    for (i = 0; i < 200; i++)
        s = apr_pstrcat(pool, s, "\xc3\xa9", NULL);
    o = disp_name(apr_pstrcat(pool, s, "\"", NULL));
    ck_assert_uint_eq(strlen(o), 254);

    /* removed bytes do not count against the cap */
    for (i = 0; i < 300; i++)
        in[i] = (i % 2) ? 'b' : '\x01';
    in[300] = '\0';
    o = su_hdr_safe_name(pool, in);
    ck_assert_uint_eq(strlen(o), 150);
}
END_TEST

/* ---- digests ---- */

START_TEST(digest_valid)
{
    su_digest_t d;

    ck_assert_int_eq(su_hdr_digest("sha-256=:" B64_32 ":", &d), SU_OK);
    ck_assert_int_eq(d.alg, SU_DIGEST_SHA256);
    ck_assert_uint_eq(d.len, 32);
    ck_assert(is_seq(d.value, 32, 0));

    ck_assert_int_eq(su_hdr_digest("sha-512=:" B64_64 ":", &d), SU_OK);
    ck_assert_int_eq(d.alg, SU_DIGEST_SHA512);
    ck_assert_uint_eq(d.len, 64);
    ck_assert(is_seq(d.value, 64, 0));

    /* both: sha-512 wins, in either order */
    ck_assert_int_eq(su_hdr_digest("sha-256=:" B64_32 ":, sha-512=:" B64_64B ":", &d), SU_OK);
    ck_assert_int_eq(d.alg, SU_DIGEST_SHA512);
    ck_assert(is_seq(d.value, 64, 100));
    ck_assert_int_eq(su_hdr_digest("sha-512=:" B64_64B ":,sha-256=:" B64_32 ":", &d), SU_OK);
    ck_assert_int_eq(d.alg, SU_DIGEST_SHA512);

    /* unknown algorithms alongside, whitespace, parameters */
    ck_assert_int_eq(su_hdr_digest("  md5=:" B64_16 ":,\tsha-256=:" B64_32 ":;x=1 , "
                                   "unixsum=30637, id-sha-256=?1  ", &d), SU_OK);
    ck_assert_int_eq(d.alg, SU_DIGEST_SHA256);
    ck_assert(is_seq(d.value, 32, 0));
}
END_TEST

START_TEST(digest_unknown_only)
{
    su_digest_t d;

    ck_assert_int_eq(su_hdr_digest("md5=:" B64_16 ":", &d), SU_OK);
    ck_assert_int_eq(d.alg, SU_DIGEST_NONE);
    ck_assert_int_eq(su_hdr_digest("unixsum=30637, adler=\"x\\\"y\", crc=(1 2 a);p, flag, "
                                   "tok=abc/def:1, dec=-1.25", &d), SU_OK);
    ck_assert_int_eq(d.alg, SU_DIGEST_NONE);
}
END_TEST

START_TEST(digest_errors)
{
    su_digest_t d;
    static const char *bad[] = {
        "sha-256=" B64_32,                          /* missing colons */
        "sha-256=:" B64_32,                         /* missing closing colon */
        "sha-256=" B64_32 ":",
        "sha-256=:" B64_31 ":",                     /* wrong length */
        "sha-256=:" B64_64 ":",
        "sha-512=:" B64_32 ":",
        "sha-256=::",
        "sha-256=:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8:",    /* unpadded */
        "sha-256=:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh=8:",   /* pad inside */
        "sha-256=:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8*:",   /* bad char */
        "sha-256=:AAECAwQFBgcICQ-LDA0ODxAREhMUFRYXGBkaGxwdHh8=:",   /* base64url */
        "sha-256=\"" B64_32 "\"",                   /* string, not bytes */
        "sha-256",                                  /* boolean */
        "sha-256=:" B64_32 ":,",                    /* trailing comma */
        "sha-256=:" B64_32 ": sha-512=:" B64_64 ":",/* missing comma */
        ",sha-256=:" B64_32 ":",
        "SHA-256=:" B64_32 ":",                     /* keys are lowercase */
        "sha-256=:" B64_32 ":;",                    /* empty parameter */
        "md5=:abc",                                 /* bad syntax in unknown alg */
        "x=(1 2",
        "x=\"abc",
        "x=1234567890123456",
        "=:" B64_32 ":",
        NULL
    };
    int i;

    for (i = 0; bad[i] != NULL; i++)
        ck_assert_msg(su_hdr_digest(bad[i], &d) == SU_ERR_BAD_REQUEST,
                      "accepted: %s", bad[i]);
    ck_assert_int_eq(su_hdr_digest(NULL, &d), SU_ERR_BAD_REQUEST);
}
END_TEST

/*
 * RFC 4648 §3.5: the bits a padded quantum leaves unused must be zero, so
 * that one digest has one encoding. Each value below decodes to the same
 * bytes as its canonical form (B64_32 ends in "Hh8=", B64_64 in "Pw==",
 * B64_16 in "Dw==") but sets some of those bits: malformed, like any other
 * bad base64.
 */
#define B64_32_CUT "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdH"
#define B64_64_CUT "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ1Njc4OTo7PD0+P"
#define B64_16_CUT "AAECAwQFBgcICQoLDA0OD"

START_TEST(base64_unused_bits)
{
    static const char *bad[] = {
        "sha-256=:" B64_32_CUT "h9=:",          /* one pad char, low bit set */
        "sha-256=:" B64_32_CUT "h+=:",          /* the other low bit */
        "sha-256=:" B64_32_CUT "h/=:",          /* both */
        "sha-512=:" B64_64_CUT "x==:",          /* two pad chars, lowest bit */
        "sha-512=:" B64_64_CUT "8==:",          /* 0b111100: bits 2 and 3 */
        "sha-512=:" B64_64_CUT "/==:",          /* all four */
        "sha-512=:" B64_64 ":, sha-256=:" B64_32_CUT "h9=:",  /* beside a good one */
        NULL
    };
    su_digest_t d;
    int i;

    /* the canonical forms, and their last characters, are what is cut */
    ck_assert_str_eq(B64_32_CUT "h8=", B64_32);
    ck_assert_str_eq(B64_64_CUT "w==", B64_64);
    ck_assert_str_eq(B64_16_CUT "w==", B64_16);
    ck_assert_int_eq(su_hdr_digest("sha-256=:" B64_32_CUT "h8=:", &d), SU_OK);
    ck_assert(is_seq(d.value, 32, 0));
    ck_assert_int_eq(su_hdr_digest("sha-512=:" B64_64_CUT "w==:", &d), SU_OK);
    ck_assert(is_seq(d.value, 64, 0));
    for (i = 0; bad[i] != NULL; i++) {
        d.alg = SU_DIGEST_SHA256;
        ck_assert_msg(su_hdr_digest(bad[i], &d) == SU_ERR_BAD_REQUEST,
                      "accepted: %s", bad[i]);
        ck_assert_int_eq(d.alg, SU_DIGEST_NONE);
        ck_assert_uint_eq(d.len, 0);
    }
    ck_assert_int_eq(su_hdr_content_md5(B64_16_CUT "x==", &d), SU_ERR_BAD_REQUEST);
    ck_assert_int_eq(d.alg, SU_DIGEST_NONE);
    ck_assert_int_eq(su_hdr_content_md5(B64_16_CUT "/==", &d), SU_ERR_BAD_REQUEST);
    ck_assert_int_eq(su_hdr_content_md5(B64_16_CUT "w==", &d), SU_OK);
    ck_assert(is_seq(d.value, 16, 0));
}
END_TEST

START_TEST(content_md5)
{
    su_digest_t d;

    ck_assert_int_eq(su_hdr_content_md5(" " B64_16 " ", &d), SU_OK);
    ck_assert_int_eq(d.alg, SU_DIGEST_MD5);
    ck_assert_uint_eq(d.len, 16);
    ck_assert(is_seq(d.value, 16, 0));
    ck_assert_int_eq(su_hdr_content_md5(B64_32, &d), SU_ERR_BAD_REQUEST);
    ck_assert_int_eq(su_hdr_content_md5("AAECAwQFBgcICQoLDA0ODw", &d), SU_ERR_BAD_REQUEST);
    ck_assert_int_eq(su_hdr_content_md5("AAECAwQFBgcICQoLDA0OD!==", &d), SU_ERR_BAD_REQUEST);
    ck_assert_int_eq(su_hdr_content_md5("", &d), SU_ERR_BAD_REQUEST);
    ck_assert_int_eq(su_hdr_content_md5(NULL, &d), SU_ERR_BAD_REQUEST);
}
END_TEST

/* ---- media types ---- */

/* The rules a stored media type meets, at upload and again when served. */
START_TEST(valid_type)
{
    static const char *const bad[] = {
        "", " ", "text", "/plain", "text/", "te xt/plain", "text/pl\xc3\xa9in",
        "text/html\r\nX-Injected: 1", "text/html\n", "text/html\r", "\r\n",
        "text/plain\t", "text/plain\x7f", "text/plain\x01", "text/plain; a=\"open",
        "text/plain; a=1; a=2", "text/plain; =x", NULL
    };
    const char *media = NULL;
    char *longest = apr_pcalloc(pool, SU_HDR_TYPE_MAX + 2);
    int i;

    ck_assert_int_eq(su_hdr_valid_type(pool, "Text/Plain; charset=\"utf-8\"", &media),
                     SU_OK);
    ck_assert_str_eq(media, "text/plain");
    ck_assert_int_eq(su_hdr_valid_type(pool, "application/octet-stream", NULL), SU_OK);
    for (i = 0; bad[i] != NULL; i++)
        ck_assert_msg(su_hdr_valid_type(pool, bad[i], NULL) == SU_ERR_BAD_REQUEST,
                      "accepted: %s", bad[i]);
    ck_assert_int_eq(su_hdr_valid_type(pool, NULL, NULL), SU_ERR_BAD_REQUEST);
    /* 255 bytes is the longest */
    memset(longest, 'x', SU_HDR_TYPE_MAX);
    longest[0] = 'a';
    longest[1] = '/';
    ck_assert_int_eq(su_hdr_valid_type(pool, longest, NULL), SU_OK);
    longest[SU_HDR_TYPE_MAX] = 'x';
    ck_assert_int_eq(su_hdr_valid_type(pool, longest, NULL), SU_ERR_TOO_LARGE);
}
END_TEST

START_TEST(type_matching)
{
    ck_assert(su_hdr_type_matches("image/png", "image/png"));
    ck_assert(su_hdr_type_matches("Image/PNG; charset=x", "image/png"));
    ck_assert(su_hdr_type_matches(" image/png ", "IMAGE/PNG"));
    ck_assert(su_hdr_type_matches("image/png", "image/*"));
    ck_assert(su_hdr_type_matches("IMAGE/jpeg;q=1", "image/*"));
    /* not a pattern (any type is no list): matches nothing */
    ck_assert(!su_hdr_type_matches("text/plain", "*/*"));
    ck_assert(!su_hdr_type_matches("image/png", "image/jpeg"));
    ck_assert(!su_hdr_type_matches("image/pngx", "image/png"));
    ck_assert(!su_hdr_type_matches("image/pn", "image/png"));
    ck_assert(!su_hdr_type_matches("imagex/png", "image/*"));
    ck_assert(!su_hdr_type_matches("text/plain", "image/*"));
    ck_assert(!su_hdr_type_matches("image", "image/*"));
    ck_assert(!su_hdr_type_matches("image/", "image/*"));
    ck_assert(!su_hdr_type_matches("", "image/*"));
    ck_assert(!su_hdr_type_matches("image/png x", "image/png"));
    ck_assert(!su_hdr_type_matches(NULL, "image/png"));
    ck_assert(!su_hdr_type_matches("image/png", NULL));
}
END_TEST

/* What SecUploadAllowedTypes accepts: exactly the patterns the matcher
 * has a branch for. */
START_TEST(type_patterns)
{
    ck_assert(su_hdr_type_pattern_ok("image/png"));
    ck_assert(su_hdr_type_pattern_ok("image/*"));
    ck_assert(su_hdr_type_pattern_ok("application/vnd.ms-excel"));
    ck_assert(su_hdr_type_pattern_ok("application/x-tar+gzip"));
    ck_assert(!su_hdr_type_pattern_ok("*/*"));
    ck_assert(!su_hdr_type_pattern_ok("*/png"));
    ck_assert(!su_hdr_type_pattern_ok("image"));
    ck_assert(!su_hdr_type_pattern_ok("image/"));
    ck_assert(!su_hdr_type_pattern_ok("/png"));
    ck_assert(!su_hdr_type_pattern_ok("image/png/x"));
    ck_assert(!su_hdr_type_pattern_ok("image/p*"));
    ck_assert(!su_hdr_type_pattern_ok("image/png;q=1"));
    ck_assert(!su_hdr_type_pattern_ok("im@ge/*"));
    ck_assert(!su_hdr_type_pattern_ok(""));
    ck_assert(!su_hdr_type_pattern_ok(NULL));
}
END_TEST

/* ---- tus request headers ---- */

START_TEST(tus_version)
{
    ck_assert(su_hdr_tus_version_ok("1.0.0"));
    ck_assert(!su_hdr_tus_version_ok(NULL));
    ck_assert(!su_hdr_tus_version_ok(""));
    ck_assert(!su_hdr_tus_version_ok("1.0.0 "));
    ck_assert(!su_hdr_tus_version_ok(" 1.0.0"));
    ck_assert(!su_hdr_tus_version_ok("1.0"));
    ck_assert(!su_hdr_tus_version_ok("1.0.0,0.2.2"));
    ck_assert(!su_hdr_tus_version_ok("0.2.2"));
}
END_TEST

START_TEST(tus_number)
{
    static const char *const bad[] = {
        "", " ", "-1", "+1", " 1", "1 ", "1\t", "1,2", "0x10", "1e3", "1.0",
        "9223372036854775808", "18446744073709551616", "99999999999999999999", NULL
    };
    apr_uint64_t v = 0;
    int i;

    ck_assert(su_hdr_tus_number("0", &v) && v == 0);
    ck_assert(su_hdr_tus_number("000123", &v) && v == 123);
    ck_assert(su_hdr_tus_number("9223372036854775807", &v)
              && v == 9223372036854775807ULL);
    ck_assert(su_hdr_tus_number("0009223372036854775807", &v)
              && v == 9223372036854775807ULL);
    v = 42;
    for (i = 0; bad[i]; i++)
        ck_assert_msg(!su_hdr_tus_number(bad[i], &v), "accepted '%s'", bad[i]);
    ck_assert(!su_hdr_tus_number(NULL, &v));
    ck_assert(v == 42);
}
END_TEST

static su_err_t md(const char *v, const char **name, const char **type)
{
    *name = "unset";
    *type = "unset";
    return su_hdr_tus_metadata(pool, v, name, type);
}

START_TEST(tus_metadata)
{
    const char *n, *t;

    /* "a.txt", "text/plain" */
    ck_assert_int_eq(md("filename YS50eHQ=,filetype dGV4dC9wbGFpbg==", &n, &t), SU_OK);
    ck_assert_str_eq(n, "a.txt");
    ck_assert_str_eq(t, "text/plain");
    /* neither given: "" and NULL; other keys, keys without values */
    ck_assert_int_eq(md("", &n, &t), SU_OK);
    ck_assert(strcmp(n, "") == 0 && t == NULL);
    ck_assert_int_eq(md("relativePath bnVsbA==,is_confidential", &n, &t), SU_OK);
    ck_assert(strcmp(n, "") == 0 && t == NULL);
    ck_assert_int_eq(md("filename,filetype", &n, &t), SU_OK);
    ck_assert(strcmp(n, "") == 0 && t == NULL);
    /* keys are exact: no other case, no tab as a separator */
    ck_assert_int_eq(md("FileName YQ==,filetype\tYQ==", &n, &t), SU_OK);
    ck_assert(strcmp(n, "") == 0 && t == NULL);
    /* spaces before, between (several) and after; empty pairs skipped */
    ck_assert_int_eq(md("  filename   YQ==  ,,, filetype YS9i,", &n, &t), SU_OK);
    ck_assert_str_eq(n, "a");
    ck_assert_str_eq(t, "a/b");
    /* a key given twice: the last with a value counts */
    ck_assert_int_eq(md("filename YQ==,filename Yg==", &n, &t), SU_OK);
    ck_assert_str_eq(n, "b");
    ck_assert_int_eq(md("filename YQ==,filename", &n, &t), SU_OK);
    ck_assert_str_eq(n, "a");
    /* an empty value decodes to "" */
    ck_assert_int_eq(md("filename ====,filetype ====", &n, &t), SU_OK);
    ck_assert(strcmp(n, "") == 0 && strcmp(t, "") == 0);
}
END_TEST

/* Values decode as apr-util's decoder reads them, padded or not. */
START_TEST(tus_metadata_base64)
{
    const char *n, *t;

    ck_assert_int_eq(md("filename YWI=", &n, &t), SU_OK);       /* "ab" */
    ck_assert_str_eq(n, "ab");
    ck_assert_int_eq(md("filename YWJj", &n, &t), SU_OK);       /* no padding */
    ck_assert_str_eq(n, "abc");
    ck_assert_int_eq(md("filename YWI9", &n, &t), SU_OK);       /* "ab=" */
    ck_assert_str_eq(n, "ab=");
    /* unused bits are not checked; what follows a '=' is ignored */
    ck_assert_int_eq(md("filename YR==", &n, &t), SU_OK);
    ck_assert_str_eq(n, "a");
    ck_assert_int_eq(md("filename YQ==YWJj", &n, &t), SU_OK);
    ck_assert_str_eq(n, "a");
    ck_assert_int_eq(md("filename Y===", &n, &t), SU_OK);       /* one char: nothing */
    ck_assert_str_eq(n, "");
    /* not a multiple of 4, or a character outside the alphabet: malformed */
    ck_assert_int_eq(md("filename YQ=", &n, &t), SU_ERR_BAD_REQUEST);
    ck_assert_int_eq(md("filename YQ", &n, &t), SU_ERR_BAD_REQUEST);
    ck_assert_int_eq(md("filename YWJjZ", &n, &t), SU_ERR_BAD_REQUEST);
    ck_assert_int_eq(md("filename YW-j", &n, &t), SU_ERR_BAD_REQUEST);
    ck_assert_int_eq(md("filename YW_j", &n, &t), SU_ERR_BAD_REQUEST);
    ck_assert_int_eq(md("filename YW\tj", &n, &t), SU_ERR_BAD_REQUEST);
    ck_assert_int_eq(md("filetype YW\xc3\xa9j", &n, &t), SU_ERR_BAD_REQUEST);
    ck_assert(strcmp(n, "") == 0 && t == NULL);
}
END_TEST

START_TEST(tus_metadata_malformed)
{
    static const char *const bad[] = {
        "filename YQ== YQ==", "filename YQ== x", "a b c",
        /* a pair of spaces alone: its key is missing */
        "filename YQ==, ", "filename YQ==,  ,filetype YQ==", " ", NULL
    };
    const char *n, *t;
    int i;

    for (i = 0; bad[i]; i++) {
        ck_assert_msg(md(bad[i], &n, &t) == SU_ERR_BAD_REQUEST, "accepted '%s'", bad[i]);
        ck_assert(strcmp(n, "") == 0 && t == NULL);
    }
    ck_assert_int_eq(md(NULL, &n, &t), SU_ERR_BAD_REQUEST);
}
END_TEST

/* The decoded name goes through su_hdr_safe_name; the type is the bytes
 * up to the first NUL, for su_hdr_valid_type to judge. */
START_TEST(tus_metadata_names)
{
    const char *n, *t;

    /* "a\x01b\r\n.txt" */
    ck_assert_int_eq(md("filename YQFiDQoudHh0", &n, &t), SU_OK);
    ck_assert_str_eq(n, "ab.txt");
    /* "../../etc/passwd", "C:\\r\\y.txt", ".." */
    ck_assert_int_eq(md("filename Li4vLi4vZXRjL3Bhc3N3ZA==", &n, &t), SU_OK);
    ck_assert_str_eq(n, "passwd");
    ck_assert_int_eq(md("filename Qzpcclx5LnR4dA==", &n, &t), SU_OK);
    ck_assert_str_eq(n, "y.txt");
    ck_assert_int_eq(md("filename Li4=", &n, &t), SU_OK);
    ck_assert_str_eq(n, "");
    /* "ab\0cd": the name ends at the NUL; invalid UTF-8 dropped */
    ck_assert_int_eq(md("filename YWIAY2Q=,filetype dGV4dC9wbGFpbgB4", &n, &t), SU_OK);
    ck_assert_str_eq(n, "ab");
    ck_assert_str_eq(t, "text/plain");
    ck_assert_int_eq(md("filename /2H/", &n, &t), SU_OK);       /* ff 61 ff */
    ck_assert_str_eq(n, "a");
    /* a control character in the type stays, for the type check to refuse */
    ck_assert_int_eq(md("filetype YS9iDQo=", &n, &t), SU_OK);
    ck_assert_str_eq(t, "a/b\r\n");
}
END_TEST

/* Up to SU_HDR_TUS_METADATA_MAX bytes; a long name is cut to SU_NAME_MAX. */
START_TEST(tus_metadata_long)
{
    char *v = apr_palloc(pool, SU_HDR_TUS_METADATA_MAX + 2);
    const char *n, *t;
    apr_size_t k;

    /* "aaa" 1000 times: 3000 bytes, cut to 255 */
    memcpy(v, "filename ", 9);
    for (k = 9; k < 4009; k += 4)
        memcpy(v + k, "YWFh", 4);
    v[4009] = '\0';
    ck_assert_int_eq(md(v, &n, &t), SU_OK);
    ck_assert_uint_eq(strlen(n), SU_NAME_MAX);
    ck_assert(strspn(n, "a") == SU_NAME_MAX);
    /* the limit, then one byte over it */
    memset(v, ',', SU_HDR_TUS_METADATA_MAX + 1);
    v[SU_HDR_TUS_METADATA_MAX] = '\0';
    ck_assert_int_eq(md(v, &n, &t), SU_OK);
    v[SU_HDR_TUS_METADATA_MAX] = ',';
    v[SU_HDR_TUS_METADATA_MAX + 1] = '\0';
    ck_assert_int_eq(md(v, &n, &t), SU_ERR_BAD_REQUEST);
}
END_TEST

START_TEST(tus_checksum)
{
    su_digest_t d;

    ck_assert_int_eq(su_hdr_tus_checksum("sha256 " B64_32, &d), SU_OK);
    ck_assert(d.alg == SU_DIGEST_SHA256 && d.len == 32 && is_seq(d.value, 32, 0));
    ck_assert_int_eq(su_hdr_tus_checksum("sha512 " B64_64, &d), SU_OK);
    ck_assert(d.alg == SU_DIGEST_SHA512 && d.len == 64 && is_seq(d.value, 64, 0));
    /* sha1 of "": 2jmj7l5rSw0yVb/vlWAYkK/YBwk= */
    ck_assert_int_eq(su_hdr_tus_checksum("sha1 2jmj7l5rSw0yVb/vlWAYkK/YBwk=", &d), SU_OK);
    ck_assert(d.alg == SU_DIGEST_SHA1 && d.len == 20 && d.value[0] == 0xda
              && d.value[19] == 0x09);
}
END_TEST

START_TEST(tus_checksum_errors)
{
    static const char *const bad[] = {
        "", "sha256", "sha256 ", "sha256  " B64_32, " sha256 " B64_32,
        "sha256 " B64_32 " ", "SHA256 " B64_32, "sha-256 " B64_32, "md5 " B64_16,
        "sha384 " B64_32, "sha256 " B64_31, "sha256 " B64_64, "sha512 " B64_32,
        "sha1 " B64_32, "sha256\t" B64_32, "sha256 AAEC", "sha256 AAECAwQFBgc-",
        NULL
    };
    su_digest_t d;
    int i;

    for (i = 0; bad[i]; i++) {
        memset(&d, 0x5a, sizeof d);
        ck_assert_msg(su_hdr_tus_checksum(bad[i], &d) == SU_ERR_BAD_REQUEST,
                      "accepted '%s'", bad[i]);
        ck_assert(d.alg == SU_DIGEST_NONE && d.len == 0 && d.value[0] == 0);
    }
    ck_assert_int_eq(su_hdr_tus_checksum(NULL, &d), SU_ERR_BAD_REQUEST);
}
END_TEST

static Suite *hdr_suite(void)
{
    Suite *s = suite_create("su_hdr");
    TCase *tc = tcase_create("core");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, params_basic);
    tcase_add_test(tc, params_quoting);
    tcase_add_test(tc, params_errors);
    tcase_add_test(tc, params_length_cap);
    tcase_add_test(tc, params_count_cap);
    tcase_add_test(tc, ext_values);
    tcase_add_test(tc, ext_value_errors);
    tcase_add_test(tc, disposition);
    tcase_add_test(tc, disposition_backslashes);
    tcase_add_test(tc, disposition_form_escapes);
    tcase_add_test(tc, safe_name_paths);
    tcase_add_test(tc, safe_name_chars);
    tcase_add_test(tc, safe_name_length);
    tcase_add_test(tc, digest_valid);
    tcase_add_test(tc, digest_unknown_only);
    tcase_add_test(tc, digest_errors);
    tcase_add_test(tc, content_md5);
    tcase_add_test(tc, base64_unused_bits);
    tcase_add_test(tc, type_matching);
    tcase_add_test(tc, type_patterns);
    tcase_add_test(tc, valid_type);
    tcase_add_test(tc, tus_version);
    tcase_add_test(tc, tus_number);
    tcase_add_test(tc, tus_metadata);
    tcase_add_test(tc, tus_metadata_base64);
    tcase_add_test(tc, tus_metadata_malformed);
    tcase_add_test(tc, tus_metadata_names);
    tcase_add_test(tc, tus_metadata_long);
    tcase_add_test(tc, tus_checksum);
    tcase_add_test(tc, tus_checksum_errors);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return su_check_run(hdr_suite);
}
