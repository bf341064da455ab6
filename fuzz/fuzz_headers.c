/*
 * libFuzzer target: the client header parsers (su_hdr.h).
 *
 * Input: a header value, then optionally a NUL and a second string (the
 * pattern for su_hdr_type_matches). Every parser runs on the first string.
 *
 * Invariants:
 *   su_hdr_params      value and parameter names lowercased, at most 64
 *   su_hdr_ext_value   the result is well-formed UTF-8
 *   su_hdr_disposition the type is lowercased; a filename* result is UTF-8,
 *                      a plain one is the parameter with %22, %0D, %0A
 *                      decoded once (the target's own decoder) and none
 *                      left; any string without controls, put between
 *                      quotes with '"' and '\' escaped, comes back as it
 *                      was (then form-decoded), and so it does unescaped
 *                      when it has no '"', no "\\" and no trailing '\'
 *                      (a Windows path as browsers send it)
 *   su_hdr_digest / su_hdr_content_md5  the length fits the algorithm;
 *                      a failure leaves nothing behind
 *   su_hdr_safe_name   at most 255 bytes, no control characters, no '/'
 *                      or '\\', well-formed UTF-8, not "." or "..", and
 *                      applying it twice changes nothing
 *   su_hdr_attachment  printable ASCII only (no CR, LF, NUL), and it
 *                      parses back to the same name
 *   su_hdr_type_matches "*" patterns and the type itself agree
 *   su_hdr_tus_metadata a failure gives "" and NULL; the name is a safe
 *                      name, neither value longer than 3/4 of the input;
 *                      "filename B64(s)" and "filetype B64(s)" (the
 *                      target's own encoder, extra spaces around) give back
 *                      su_hdr_safe_name(s) and s
 *   su_hdr_tus_checksum the algorithm and the length agree; a failure
 *                      leaves nothing; the digest, encoded again by the
 *                      target, parses to the same bytes
 *   su_hdr_tus_number  exactly the decimal numbers up to 2^63 - 1, digits
 *                      only; printed back without leading zeros
 *   su_store_url_id    "", or the 32 lowercase hex digits the input ends in
 */
#include <string.h>
#include <strings.h>
#include <apr_strings.h>
#include <apr_tables.h>

#include "fz_common.h"
#include "su_hdr.h"
#include "su_store.h"

static int fz_has_upper(const char *s)
{
    for (; *s; s++)
        if (*s >= 'A' && *s <= 'Z')
            return 1;
    return 0;
}

static void fz_params(apr_pool_t *p, const char *s)
{
    const char *v = NULL;
    apr_table_t *t = NULL;
    const apr_array_header_t *a;
    const apr_table_entry_t *e;
    int i;

    if (su_hdr_params(p, s, &v, &t) != SU_OK)
        return;
    FZ_CHECK(v != NULL && t != NULL && v[0] != '\0', "params: no value");
    FZ_CHECK(!fz_has_upper(v), "params: value not lowercased");
    a = apr_table_elts(t);
    FZ_CHECK(a->nelts <= 64, "params: over 64 parameters");
    e = (const apr_table_entry_t *)a->elts;
    for (i = 0; i < a->nelts; i++) {
        FZ_CHECK(e[i].key != NULL && e[i].val != NULL, "params: NULL entry");
        FZ_CHECK(e[i].key[0] != '\0' && !fz_has_upper(e[i].key),
                 "params: name empty or not lowercased");
    }
}

static void fz_ext(apr_pool_t *p, const char *s)
{
    const char *out = NULL;

    if (su_hdr_ext_value(p, s, &out) != SU_OK)
        return;
    FZ_CHECK(out != NULL, "ext_value: NULL");
    FZ_CHECK(fz_utf8_valid((const unsigned char *)out, strlen(out)),
             "ext_value: not UTF-8");
}

/* "%22", "%0D", "%0A" (any case) at s: the byte it stands for, else 0. */
static char fz_form_escape(const char *s)
{
    if (strncmp(s, "%22", 3) == 0)
        return '"';
    if (strncasecmp(s, "%0d", 3) == 0)
        return '\r';
    if (strncasecmp(s, "%0a", 3) == 0)
        return '\n';
    return 0;
}

static char *fz_form_decode(apr_pool_t *p, const char *s)
{
    char *out = apr_palloc(p, strlen(s) + 1);
    size_t o = 0;

    while (*s) {
        char c = fz_form_escape(s);

        out[o++] = c ? c : *s;
        s += c ? 3 : 1;
    }
    out[o] = '\0';
    return out;
}

static int fz_has_form_escape(const char *s)
{
    for (; *s; s++)
        if (fz_form_escape(s))
            return 1;
    return 0;
}

/* A plain filename: the parameter, with the form escapes decoded once. */
static void fz_plain_filename(apr_pool_t *p, const char *fn, const char *param)
{
    if (param == NULL) {
        FZ_CHECK(fn == NULL, "disposition: a filename without the parameter");
        return;
    }
    FZ_CHECK(fn != NULL && strcmp(fn, fz_form_decode(p, param)) == 0,
             "disposition: filename is not the form-decoded parameter");
    FZ_CHECK(!fz_has_form_escape(fn), "disposition: a form escape left");
}

static void fz_disposition(apr_pool_t *p, const char *s)
{
    const char *disp = NULL, *fn = NULL, *v;
    apr_table_t *t;

    if (su_hdr_disposition(p, s, &disp, &fn) != SU_OK)
        return;
    FZ_CHECK(disp != NULL && !fz_has_upper(disp), "disposition: type");
    FZ_CHECK(su_hdr_params(p, s, &v, &t) == SU_OK, "disposition ok, params not");
    if (apr_table_get(t, "filename*") != NULL)
        FZ_CHECK(fn != NULL && fz_utf8_valid((const unsigned char *)fn, strlen(fn)),
                 "disposition: filename* not UTF-8");
    else
        fz_plain_filename(p, fn, apr_table_get(t, "filename"));
}

/* s between the quotes of a filename parameter (quote: escape '"' and '\'). */
static const char *fz_quoted_filename(apr_pool_t *p, const char *s, int quote)
{
    char *q = apr_palloc(p, 2 * strlen(s) + 1);
    size_t o = 0;

    for (; *s; s++) {
        if (quote && (*s == '"' || *s == '\\'))
            q[o++] = '\\';
        q[o++] = *s;
    }
    q[o] = '\0';
    return apr_pstrcat(p, "attachment; filename=\"", q, "\"", NULL);
}

static void fz_filename_back(apr_pool_t *p, const char *s, int quote)
{
    const char *disp = NULL, *fn = NULL;

    FZ_CHECK(su_hdr_disposition(p, fz_quoted_filename(p, s, quote), &disp, &fn) == SU_OK,
             "filename: a quoted name does not parse");
    FZ_CHECK(fn != NULL && strcmp(fn, fz_form_decode(p, s)) == 0,
             "filename: a quoted name does not come back");
}

/* Backslashes in a quoted file name: escaped or, where unambiguous, as sent. */
static void fz_filename_quoting(apr_pool_t *p, const char *s, size_t n)
{
    size_t i;

    if (n > 4000)
        return;
    for (i = 0; i < n; i++)
        if (((unsigned char)s[i] < 0x20 && s[i] != '\t') || s[i] == 0x7f)
            return;
    fz_filename_back(p, s, 1);
    if (strchr(s, '"') == NULL && strstr(s, "\\\\") == NULL
        && (n == 0 || s[n - 1] != '\\'))
        fz_filename_back(p, s, 0);
}

static int fz_zero(const su_digest_t *d)
{
    static const su_digest_t z;
    return memcmp(d, &z, sizeof z) == 0;
}

static void fz_digests(const char *s)
{
    su_digest_t d;

    if (su_hdr_digest(s, &d) == SU_OK)
        FZ_CHECK((d.alg == SU_DIGEST_NONE && d.len == 0) ||
                 (d.alg == SU_DIGEST_SHA256 && d.len == 32) ||
                 (d.alg == SU_DIGEST_SHA512 && d.len == 64),
                 "digest: algorithm and length disagree");
    else
        FZ_CHECK(fz_zero(&d), "digest: a failure left a value");
    if (su_hdr_content_md5(s, &d) == SU_OK)
        FZ_CHECK(d.alg == SU_DIGEST_MD5 && d.len == 16, "content_md5: length");
    else
        FZ_CHECK(fz_zero(&d), "content_md5: a failure left a value");
}

static const char *fz_safe_name(apr_pool_t *p, const char *s)
{
    const char *n = su_hdr_safe_name(p, s);
    size_t len, i;

    FZ_CHECK(n != NULL, "safe_name: NULL");
    len = strlen(n);
    FZ_CHECK(len <= SU_NAME_MAX, "safe_name: over 255 bytes");
    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char)n[i];
        FZ_CHECK(c >= 0x20 && c != 0x7f, "safe_name: control character");
        FZ_CHECK(c != '/' && c != '\\', "safe_name: path separator");
    }
    FZ_CHECK(fz_utf8_valid((const unsigned char *)n, len), "safe_name: not UTF-8");
    FZ_CHECK(strcmp(n, ".") != 0 && strcmp(n, "..") != 0, "safe_name: dot name");
    FZ_CHECK(strcmp(su_hdr_safe_name(p, n), n) == 0, "safe_name: not idempotent");
    return n;
}

static void fz_attachment_chars(const char *a)
{
    for (; *a; a++)
        FZ_CHECK(*a >= 0x20 && *a < 0x7f, "attachment: not printable ASCII");
}

/* A download header must carry the name back exactly (filename* wins). */
static void fz_attachment(apr_pool_t *p, const char *name, int roundtrip)
{
    const char *a = su_hdr_attachment(p, name), *disp = NULL, *fn = NULL;

    FZ_CHECK(a != NULL, "attachment: NULL");
    fz_attachment_chars(a);
    if (name[0] == '\0') {
        FZ_CHECK(strcmp(a, "attachment") == 0, "attachment: empty name");
        return;
    }
    if (!roundtrip)
        return;
    FZ_CHECK(su_hdr_disposition(p, a, &disp, &fn) == SU_OK,
             "attachment: does not parse");
    FZ_CHECK(strcmp(disp, "attachment") == 0 && fn != NULL && strcmp(fn, name) == 0,
             "attachment: does not carry the name back");
}

/* The "type/subtype" of s, trimmed, if s is exactly that plus parameters. */
static const char *fz_media_type(apr_pool_t *p, const char *s)
{
    size_t b = strspn(s, " \t"), n = strcspn(s + b, "; \t");
    return apr_pstrmemdup(p, s + b, n);
}

static void fz_type_matches(apr_pool_t *p, const char *type, const char *pattern)
{
    const char *mt, *sl;
    char *up;
    size_t i;

    (void)su_hdr_type_matches(type, pattern);
    if (!su_hdr_type_matches(type, "*/*"))
        return;
    mt = fz_media_type(p, type);
    sl = strchr(mt, '/');
    FZ_CHECK(sl != NULL, "type_matches: */* matched no type/subtype");
    FZ_CHECK(su_hdr_type_matches(type, mt), "type_matches: not its own type");
    up = apr_pstrdup(p, mt);
    for (i = 0; up[i]; i++)
        if (up[i] >= 'a' && up[i] <= 'z')
            up[i] = (char)(up[i] - 32);
    FZ_CHECK(su_hdr_type_matches(type, up), "type_matches: case-sensitive");
    FZ_CHECK(su_hdr_type_matches(type, apr_pstrcat(p, apr_pstrmemdup(p, mt,
                                 (apr_size_t)(sl - mt)), "/*", NULL)),
             "type_matches: not its own wildcard");
}

/* ---- tus request headers ---- */

/* Padded base64 of n bytes at s, written apart from the code under test. */
static char *fz_b64(apr_pool_t *p, const unsigned char *s, size_t n)
{
    static const char a[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char *out = apr_palloc(p, (n + 2) / 3 * 4 + 1), *o = out;
    size_t i;

    for (i = 0; i < n; i += 3) {
        unsigned long v = (unsigned long)s[i] << 16;
        size_t k = n - i < 3 ? n - i : 3;

        if (k > 1)
            v |= (unsigned long)s[i + 1] << 8;
        if (k > 2)
            v |= s[i + 2];
        *o++ = a[(v >> 18) & 63];
        *o++ = a[(v >> 12) & 63];
        *o++ = k > 1 ? a[(v >> 6) & 63] : '=';
        *o++ = k > 2 ? a[v & 63] : '=';
    }
    *o = '\0';
    return out;
}

static void fz_tus_metadata(apr_pool_t *p, const char *s, size_t n)
{
    const char *name = NULL, *type = NULL, *v;

    if (su_hdr_tus_metadata(p, s, &name, &type) != SU_OK) {
        FZ_CHECK(name != NULL && name[0] == '\0' && type == NULL,
                 "tus_metadata: a failure left values");
    } else {
        FZ_CHECK(strcmp(su_hdr_safe_name(p, name), name) == 0,
                 "tus_metadata: the name is not a safe name");
        FZ_CHECK(strlen(name) * 4 <= n * 3 && (type == NULL || strlen(type) * 4 <= n * 3),
                 "tus_metadata: a value longer than its base64");
    }
    if (n > 1500)   /* both values within SU_HDR_TUS_METADATA_MAX */
        return;
    v = apr_pstrcat(p, "filename ", fz_b64(p, (const unsigned char *)s, n),
                    ",filetype  ", fz_b64(p, (const unsigned char *)s, n), " ", NULL);
    FZ_CHECK(su_hdr_tus_metadata(p, v, &name, &type) == SU_OK,
             "tus_metadata: encoded values refused");
    /* an empty value is no value: "filetype" alone */
    FZ_CHECK(strcmp(name, su_hdr_safe_name(p, s)) == 0
             && (n == 0 ? type == NULL : type != NULL && strcmp(type, s) == 0),
             "tus_metadata: encoded values do not come back");
}

static void fz_tus_checksum(apr_pool_t *p, const char *s)
{
    static const char *const alg[] = { "", "sha256", "sha512", "", "sha1" };
    su_digest_t d, d2;

    if (su_hdr_tus_checksum(s, &d) != SU_OK) {
        FZ_CHECK(fz_zero(&d), "tus_checksum: a failure left a value");
        return;
    }
    FZ_CHECK((d.alg == SU_DIGEST_SHA1 && d.len == 20) ||
             (d.alg == SU_DIGEST_SHA256 && d.len == 32) ||
             (d.alg == SU_DIGEST_SHA512 && d.len == 64),
             "tus_checksum: algorithm and length disagree");
    FZ_CHECK(su_hdr_tus_checksum(apr_pstrcat(p, alg[d.alg], " ",
                                             fz_b64(p, d.value, d.len), NULL),
                                 &d2) == SU_OK
             && d2.alg == d.alg && memcmp(d2.value, d.value, d.len) == 0,
             "tus_checksum: the digest encoded again is another");
}

static void fz_tus_number(const char *s, size_t n)
{
    apr_uint64_t v;
    char back[32];
    size_t z = strspn(s, "0");

    if (!su_hdr_tus_number(s, &v)) {
        FZ_CHECK(n == 0 || strspn(s, "0123456789") != n || n - z > 19
                 || (n - z == 19 && strcmp(s + z, "9223372036854775807") > 0),
                 "tus_number: a number refused");
        return;
    }
    FZ_CHECK(n > 0 && strspn(s, "0123456789") == n && v <= (apr_uint64_t)APR_INT64_MAX,
             "tus_number: not a number accepted");
    snprintf(back, sizeof back, "%" APR_UINT64_T_FMT, v);
    FZ_CHECK(strcmp(back, z == n ? "0" : s + z) == 0, "tus_number: another value");
}

static void fz_url_id(const char *s, size_t n)
{
    const char *id = su_store_url_id(s);

    if (id == NULL)
        return;
    FZ_CHECK(id >= s && id + strlen(id) == s + n, "url_id: not the input's end");
    FZ_CHECK(id[0] == '\0' || su_store_valid_id(id), "url_id: not an id");
    FZ_CHECK(id == s || id[-1] == '/', "url_id: not a whole segment");
}

static void fz_tus(apr_pool_t *p, const char *s, size_t n)
{
    fz_tus_metadata(p, s, n);
    fz_tus_checksum(p, s);
    fz_tus_number(s, n);
    fz_url_id(s, n);
    FZ_CHECK(su_hdr_tus_version_ok(s) == (strcmp(s, "1.0.0") == 0), "tus_version");
}

FZ_INITIALIZE_APR

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    apr_pool_t *p = fz_pool_new();
    /* exact-size copies, so that ASan sees a read past either string */
    size_t n1 = strnlen((const char *)data, size);
    const char *rest = n1 < size ? (const char *)data + n1 + 1 : "";
    size_t n2 = n1 < size ? strnlen(rest, size - n1 - 1) : 0;
    char *s = malloc(n1 + 1), *s2 = malloc(n2 + 1);
    const char *name;

    FZ_CHECK(s != NULL && s2 != NULL, "malloc");
    memcpy(s, data, n1);
    s[n1] = '\0';
    memcpy(s2, rest, n2);
    s2[n2] = '\0';

    fz_params(p, s);
    fz_ext(p, s);
    fz_disposition(p, s);
    fz_filename_quoting(p, s, n1);
    fz_digests(s);
    name = fz_safe_name(p, s);
    fz_attachment(p, name, 1);
    fz_attachment(p, s, fz_utf8_valid((const unsigned char *)s, n1) && n1 <= 4000);
    fz_type_matches(p, s, s2);
    fz_type_matches(p, s2, s);
    fz_tus(p, s, n1);

    free(s);
    free(s2);
    apr_pool_destroy(p);
    return 0;
}
