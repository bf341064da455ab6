/*
 * Parsers of client header values. Every input is hostile: each function
 * bounds the length it will look at and rejects what the grammar does not
 * allow instead of guessing.
 */
#include <string.h>
#include <apr_strings.h>
#include "su_hdr.h"
#include "su_util.h"

/* Longest header value we parse; real ones are far shorter. */
#define SU_HDR_MAX_LEN 16384
/* Most parameters in one value; each costs a table lookup. */
#define SU_HDR_MAX_PARAMS 64
/* Longest RFC 5646 language tag we accept in an ext-value. */
#define SU_HDR_MAX_LANG 64

/* ---- character classes (ASCII only, independent of the locale) ---- */

static int su_hdr_is_alpha(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static int su_hdr_is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

int su_hdr_is_tchar(unsigned char c)
{
    return su_hdr_is_alpha(c) || su_hdr_is_digit(c)
        || (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

/* RFC 5987 attr-char: what may stand unencoded in an ext-value. */
static int su_hdr_is_attr_char(unsigned char c)
{
    return su_hdr_is_alpha(c) || su_hdr_is_digit(c)
        || (c != '\0' && strchr("!#$&+-.^_`|~", c) != NULL);
}

static int su_hdr_is_qdtext(unsigned char c)
{
    return c == '\t' || c == ' ' || c == 0x21 || (c >= 0x23 && c <= 0x5b)
        || (c >= 0x5d && c <= 0x7e) || c >= 0x80;
}

int su_hdr_is_field_char(unsigned char c)
{
    return c == '\t' || (c >= 0x20 && c != 0x7f);
}

static unsigned char su_hdr_lower(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') ? (unsigned char)(c + 32) : c;
}

static const char *su_hdr_skip_ows(const char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    return s;
}

static int su_hdr_too_long(const char *s)
{
    return strnlen(s, SU_HDR_MAX_LEN + 1) > SU_HDR_MAX_LEN;
}

static int su_hdr_ieq(const char *a, apr_size_t alen, const char *b)
{
    apr_size_t i;

    if (alen != strlen(b))
        return 0;
    for (i = 0; i < alen; i++)
        if (su_hdr_lower((unsigned char)a[i]) != su_hdr_lower((unsigned char)b[i]))
            return 0;
    return 1;
}

/*
 * Length of the well-formed UTF-8 sequence at s (n bytes available), or 0.
 * Overlong forms, surrogates and code points past U+10FFFF are ill-formed.
 */
static apr_size_t su_hdr_utf8_len(const unsigned char *s, apr_size_t n)
{
    unsigned char c = s[0], lo = 0x80, hi = 0xbf;
    apr_size_t len, i;

    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        len = 2;
    else if (c >= 0xe0 && c <= 0xef)
        len = 3;
    else if (c >= 0xf0 && c <= 0xf4)
        len = 4;
    else
        return 0;
    if (c == 0xe0)
        lo = 0xa0;
    else if (c == 0xed)
        hi = 0x9f;
    else if (c == 0xf0)
        lo = 0x90;
    else if (c == 0xf4)
        hi = 0x8f;
    if (n < len || s[1] < lo || s[1] > hi)
        return 0;
    for (i = 2; i < len; i++)
        if (s[i] < 0x80 || s[i] > 0xbf)
            return 0;
    return len;
}

static int su_hdr_utf8_valid(const unsigned char *s, apr_size_t n)
{
    apr_size_t i = 0, k;

    while (i < n) {
        k = su_hdr_utf8_len(s + i, n - i);
        if (k == 0)
            return 0;
        i += k;
    }
    return 1;
}

/* ---- parameters ---- */

/* A token, lowercased; `slash` also admits one '/' between two tokens (media types). */
static const char *su_hdr_token(apr_pool_t *p, const char *s, int slash, char **out)
{
    const char *b = s;
    const char *sl = NULL;
    char *t;
    apr_size_t i, n;

    for (;;) {
        if (su_hdr_is_tchar((unsigned char)*s)) {
            s++;
        } else if (slash && *s == '/' && sl == NULL) {
            sl = s++;
        } else {
            break;
        }
    }
    if (s == b || sl == b || (sl != NULL && sl + 1 == s))
        return NULL;
    n = (apr_size_t)(s - b);
    t = apr_pstrmemdup(p, b, n);
    for (i = 0; i < n; i++)
        t[i] = (char)su_hdr_lower((unsigned char)t[i]);
    *out = t;
    return s;
}

/*
 * Does the backslash at s start a quoted-pair? In a file name only \" and
 * \\ do: browsers and most clients send a Windows path's backslashes as
 * they are, so any other backslash is a literal character (a separator).
 */
static int su_hdr_is_escape(const char *s, int fname)
{
    return !fname || s[1] == '"' || s[1] == '\\';
}

/*
 * End of a quoted-string body (s is just past the opening quote): the
 * closing quote, or NULL if malformed; *n gets the unescaped length.
 */
static const char *su_hdr_quoted_end(const char *s, int fname, apr_size_t *n)
{
    apr_size_t k = 0;

    for (;; k++) {
        unsigned char c = (unsigned char)*s;

        if (c == '"') {
            *n = k;
            return s;
        }
        if (c == '\\' && su_hdr_is_escape(s, fname)) {
            if (!su_hdr_is_field_char((unsigned char)s[1]))
                return NULL;
            s += 2;
        } else if (c == '\\' || su_hdr_is_qdtext(c)) {
            s++;   /* a backslash here is a literal one in a file name */
        } else {
            return NULL;   /* includes the end of the string: unterminated */
        }
    }
}

/* Sized exactly, so many parameters cannot multiply the memory used. */
static const char *su_hdr_quoted(apr_pool_t *p, const char *s, int fname, char **out)
{
    apr_size_t n, i;
    const char *e = su_hdr_quoted_end(s, fname, &n);
    char *buf;

    if (e == NULL)
        return NULL;
    buf = apr_palloc(p, n + 1);
    for (i = 0; s < e; i++) {
        if (*s == '\\' && su_hdr_is_escape(s, fname))
            s++;
        buf[i] = *s++;
    }
    buf[i] = '\0';
    *out = buf;
    return e + 1;
}

static const char *su_hdr_param_value(apr_pool_t *p, const char *s, int fname,
                                      char **out)
{
    const char *b = s;

    if (*s == '"')
        return su_hdr_quoted(p, s + 1, fname, out);
    while (su_hdr_is_tchar((unsigned char)*s))
        s++;
    if (s == b)
        return NULL;
    *out = apr_pstrmemdup(p, b, (apr_size_t)(s - b));
    return s;
}

/* One "; name=value" (s is at the ';'); empty parameters are skipped. */
static const char *su_hdr_param(apr_pool_t *p, const char *s, apr_table_t *t)
{
    char *name, *val;

    if (*s != ';')
        return NULL;
    s = su_hdr_skip_ows(s + 1);
    if (*s == ';' || *s == '\0')
        return s;
    s = su_hdr_token(p, s, 0, &name);
    if (s == NULL)
        return NULL;
    s = su_hdr_skip_ows(s);
    if (*s != '=')
        return NULL;
    s = su_hdr_param_value(p, su_hdr_skip_ows(s + 1), strcmp(name, "filename") == 0,
                           &val);
    if (s == NULL || apr_table_get(t, name) != NULL
        || apr_table_elts(t)->nelts >= SU_HDR_MAX_PARAMS)
        return NULL;
    apr_table_setn(t, name, val);
    return su_hdr_skip_ows(s);
}

su_err_t su_hdr_params(apr_pool_t *p, const char *header, const char **value,
                       apr_table_t **params)
{
    const char *s;
    char *v;
    apr_table_t *t;

    if (header == NULL || su_hdr_too_long(header))
        return SU_ERR_BAD_REQUEST;
    s = su_hdr_token(p, su_hdr_skip_ows(header), 1, &v);
    if (s == NULL)
        return SU_ERR_BAD_REQUEST;
    t = apr_table_make(p, 4);
    s = su_hdr_skip_ows(s);
    while (*s != '\0') {
        s = su_hdr_param(p, s, t);
        if (s == NULL)
            return SU_ERR_BAD_REQUEST;
    }
    *value = v;
    *params = t;
    return SU_OK;
}

/* ---- RFC 5987 ext-value ---- */

static int su_hdr_lang_ok(const char *s, apr_size_t n)
{
    apr_size_t i;

    if (n > SU_HDR_MAX_LANG)
        return 0;
    for (i = 0; i < n; i++)
        if (!su_hdr_is_alpha((unsigned char)s[i]) && !su_hdr_is_digit((unsigned char)s[i])
            && s[i] != '-')
            return 0;
    return 1;
}

/* Percent-decodes value-chars into out; returns the length or -1. */
static long su_hdr_pct_decode(const char *s, unsigned char *out, int latin1)
{
    long n = 0;

    while (*s != '\0') {
        unsigned char c = (unsigned char)*s;

        if (c == '%') {
            int hi = su_util_hexval((unsigned char)s[1]);
            int lo = hi < 0 ? -1 : su_util_hexval((unsigned char)s[2]);

            if (lo < 0)
                return -1;
            c = (unsigned char)(hi * 16 + lo);
            if (c == 0)
                return -1;   /* would end the C string early */
            s += 3;
        } else if (su_hdr_is_attr_char(c)) {
            s++;
        } else {
            return -1;
        }
        if (latin1 && c >= 0x80) {
            out[n++] = (unsigned char)(0xc0 | (c >> 6));
            out[n++] = (unsigned char)(0x80 | (c & 0x3f));
        } else {
            out[n++] = c;
        }
    }
    return n;
}

su_err_t su_hdr_ext_value(apr_pool_t *p, const char *ext, const char **out)
{
    const char *q1, *q2;
    unsigned char *buf;
    int latin1;
    long n;

    if (ext == NULL || su_hdr_too_long(ext))
        return SU_ERR_BAD_REQUEST;
    q1 = strchr(ext, '\'');
    q2 = q1 ? strchr(q1 + 1, '\'') : NULL;
    if (q2 == NULL || !su_hdr_lang_ok(q1 + 1, (apr_size_t)(q2 - q1 - 1)))
        return SU_ERR_BAD_REQUEST;
    if (su_hdr_ieq(ext, (apr_size_t)(q1 - ext), "utf-8"))
        latin1 = 0;
    else if (su_hdr_ieq(ext, (apr_size_t)(q1 - ext), "iso-8859-1"))
        latin1 = 1;
    else
        return SU_ERR_BAD_REQUEST;
    buf = apr_palloc(p, 2 * strlen(q2 + 1) + 1);
    n = su_hdr_pct_decode(q2 + 1, buf, latin1);
    if (n < 0 || !su_hdr_utf8_valid(buf, (apr_size_t)n))
        return SU_ERR_BAD_REQUEST;
    buf[n] = '\0';
    *out = (const char *)buf;
    return SU_OK;
}

/*
 * The byte a form-encoded "%22", "%0D" or "%0A" at s stands for, or 0. HTML
 * encodes only these three in a part's file name; decoding any other %XX
 * would change names that merely contain a percent sign.
 */
static char su_hdr_form_escape(const char *s)
{
    int hi, lo;

    if (s[0] != '%')
        return 0;
    hi = su_util_hexval((unsigned char)s[1]);
    lo = hi < 0 ? -1 : su_util_hexval((unsigned char)s[2]);
    if (hi == 2 && lo == 2)
        return '"';
    if (hi == 0 && (lo == 0xd || lo == 0xa))
        return (char)lo;
    return 0;
}

/* A copy of a plain filename with the form escapes decoded, in one pass. */
static const char *su_hdr_form_decode(apr_pool_t *p, const char *s)
{
    char *out = apr_palloc(p, strlen(s) + 1), *o = out;

    while (*s != '\0') {
        char c = su_hdr_form_escape(s);

        *o++ = c ? c : *s;
        s += c ? 3 : 1;
    }
    *o = '\0';
    return out;
}

su_err_t su_hdr_disposition(apr_pool_t *p, const char *header,
                            const char **disposition, const char **filename)
{
    const char *v, *ext, *plain;
    apr_table_t *params;
    su_err_t e;

    e = su_hdr_params(p, header, &v, &params);
    if (e != SU_OK)
        return e;
    ext = apr_table_get(params, "filename*");
    plain = apr_table_get(params, "filename");
    if (ext != NULL) {
        e = su_hdr_ext_value(p, ext, &plain);
        if (e != SU_OK)
            return e;
    } else if (plain != NULL) {
        plain = su_hdr_form_decode(p, plain);
    }
    *disposition = v;
    *filename = plain;
    return SU_OK;
}

/* ---- display names ---- */

static const char *su_hdr_last_component(const char *s)
{
    const char *last = s;

    for (; *s != '\0'; s++)
        if (*s == '/' || *s == '\\')
            last = s + 1;
    return last;
}

const char *su_hdr_safe_name(apr_pool_t *p, const char *filename)
{
    const unsigned char *s;
    apr_size_t n, i = 0, k, o = 0;
    char *out;

    if (filename == NULL)
        return "";
    s = (const unsigned char *)su_hdr_last_component(filename);
    n = strlen((const char *)s);
    out = apr_palloc(p, SU_NAME_MAX + 1);
    while (i < n) {
        k = su_hdr_utf8_len(s + i, n - i);
        if (k == 0 || (k == 1 && (s[i] < 0x20 || s[i] == 0x7f))) {
            i++;
            continue;
        }
        if (o + k > SU_NAME_MAX)
            break;
        memcpy(out + o, s + i, k);
        o += k;
        i += k;
    }
    out[o] = '\0';
    if (strcmp(out, ".") == 0 || strcmp(out, "..") == 0)
        out[0] = '\0';
    return out;
}

/* ---- base64 (strict: canonical alphabet, padded, length a multiple of 4,
 *      unused bits zero) ---- */

static int su_hdr_b64_val(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (su_hdr_is_digit(c))
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

/* The first n (0 to 3) bytes that a group's four 6-bit values v stand for. */
static void su_hdr_b64_bytes(const int v[4], apr_size_t n, unsigned char *out)
{
    if (n > 0)
        out[0] = (unsigned char)((v[0] << 2) | (v[1] >> 4));
    if (n > 1)
        out[1] = (unsigned char)(((v[1] & 0xf) << 4) | (v[2] >> 2));
    if (n > 2)
        out[2] = (unsigned char)(((v[2] & 0x3) << 6) | v[3]);
}

/* Decodes n chars at s into out (cap bytes); returns the length or -1. */
static long su_hdr_b64_decode(const char *s, apr_size_t n, unsigned char *out,
                              apr_size_t cap)
{
    apr_size_t i, o = 0;

    if (n % 4 != 0)
        return -1;
    for (i = 0; i < n; i += 4) {
        int v[4], j, pad = 0;
        int last = (i + 4 == n);

        for (j = 0; j < 4; j++) {
            v[j] = su_hdr_b64_val((unsigned char)s[i + j]);
            if (v[j] < 0) {
                /* '=' only ends the last quantum, at most twice */
                if (s[i + j] != '=' || !last || j < 2)
                    return -1;
                pad++;
                v[j] = 0;
            } else if (pad) {
                return -1;
            }
        }
        /* RFC 4648 §3.5: the bits a padded quantum leaves unused are zero;
         * otherwise several encodings decode to the same bytes. */
        if ((pad == 2 && (v[1] & 0xf) != 0) || (pad == 1 && (v[2] & 0x3) != 0))
            return -1;
        if (o + 3 - (apr_size_t)pad > cap)
            return -1;
        su_hdr_b64_bytes(v, 3 - (apr_size_t)pad, out + o);
        o += 3 - (apr_size_t)pad;
    }
    return (long)o;
}

#define SU_HDR_B64_CHARS "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

/* tus's base64 (Upload-Metadata, Upload-Checksum): base64 characters and
 * '=' only, a length a multiple of 4 (none at all included). */
static int su_hdr_b64_loose_ok(const char *s)
{
    size_t n = strlen(s);

    return n % 4 == 0 && strspn(s, SU_HDR_B64_CHARS "=") == n;
}

/*
 * Decodes a value su_hdr_b64_loose_ok accepts into out (cap bytes) as tus
 * values have always been read here (apr-util's decoder): the characters
 * before the first '=', whatever follows it ignored; a last group of 2 or
 * 3 characters gives 1 or 2 bytes, one of 1 character none; bits left
 * over are not checked. The length, never more than 3/4 of the value's,
 * or -1 if it would pass cap.
 */
static long su_hdr_b64_loose(const char *s, unsigned char *out, apr_size_t cap)
{
    apr_size_t k = strspn(s, SU_HDR_B64_CHARS), i, j, left, o = 0;
    int v[4];

    if (k / 4 * 3 + (k % 4 ? k % 4 - 1 : 0) > cap)
        return -1;
    for (i = 0; i < k; i += 4) {
        left = k - i < 4 ? k - i : 4;
        for (j = 0; j < 4; j++)
            v[j] = j < left ? su_hdr_b64_val((unsigned char)s[i + j]) : 0;
        su_hdr_b64_bytes(v, left - 1, out + o);
        o += left - 1;
    }
    return (long)o;
}

/* ---- RFC 8941 dictionary, as RFC 9530 uses it ---- */

typedef enum su_hdr_sf_kind {
    SU_HDR_SF_FAIL = 0,
    SU_HDR_SF_OTHER,
    SU_HDR_SF_BYTES
} su_hdr_sf_kind_t;

static int su_hdr_sf_key(const char **pp, const char **key, apr_size_t *klen)
{
    const char *s = *pp, *b = s;
    unsigned char c = (unsigned char)*s;

    if (!((c >= 'a' && c <= 'z') || c == '*'))
        return 0;
    for (s++;; s++) {
        c = (unsigned char)*s;
        if (!((c >= 'a' && c <= 'z') || su_hdr_is_digit(c)
              || (c != '\0' && strchr("_-.*", c) != NULL)))
            break;
    }
    *key = b;
    *klen = (apr_size_t)(s - b);
    *pp = s;
    return 1;
}

static su_hdr_sf_kind_t su_hdr_sf_number(const char **pp)
{
    const char *s = *pp;
    apr_size_t ni = 0, nf = 0;

    if (*s == '-')
        s++;
    while (su_hdr_is_digit((unsigned char)*s) && ni <= 15) {
        s++;
        ni++;
    }
    if (ni == 0 || ni > 15)
        return SU_HDR_SF_FAIL;
    if (*s == '.') {
        for (s++; su_hdr_is_digit((unsigned char)*s) && nf <= 3; s++)
            nf++;
        if (ni > 12 || nf == 0 || nf > 3)
            return SU_HDR_SF_FAIL;
    }
    *pp = s;
    return SU_HDR_SF_OTHER;
}

static su_hdr_sf_kind_t su_hdr_sf_string(const char **pp)
{
    const char *s = *pp + 1;

    for (;; s++) {
        unsigned char c = (unsigned char)*s;

        if (c == '"') {
            *pp = s + 1;
            return SU_HDR_SF_OTHER;
        }
        if (c == '\\') {
            if (s[1] != '"' && s[1] != '\\')
                return SU_HDR_SF_FAIL;
            s++;
        } else if (c < 0x20 || c > 0x7e) {
            return SU_HDR_SF_FAIL;
        }
    }
}

static su_hdr_sf_kind_t su_hdr_sf_token(const char **pp)
{
    const char *s = *pp + 1;

    while (su_hdr_is_tchar((unsigned char)*s) || *s == ':' || *s == '/')
        s++;
    *pp = s;
    return SU_HDR_SF_OTHER;
}

static su_hdr_sf_kind_t su_hdr_sf_bytes(const char **pp, const char **b64,
                                        apr_size_t *b64len)
{
    const char *s = *pp + 1, *b = s;

    while (su_hdr_b64_val((unsigned char)*s) >= 0 || *s == '=')
        s++;
    if (*s != ':')
        return SU_HDR_SF_FAIL;
    *b64 = b;
    *b64len = (apr_size_t)(s - b);
    *pp = s + 1;
    return SU_HDR_SF_BYTES;
}

static su_hdr_sf_kind_t su_hdr_sf_bare(const char **pp, const char **b64,
                                       apr_size_t *b64len)
{
    const char *s = *pp;
    unsigned char c = (unsigned char)*s;

    if (c == '-' || su_hdr_is_digit(c))
        return su_hdr_sf_number(pp);
    if (c == '"')
        return su_hdr_sf_string(pp);
    if (su_hdr_is_alpha(c) || c == '*')
        return su_hdr_sf_token(pp);
    if (c == ':')
        return su_hdr_sf_bytes(pp, b64, b64len);
    if (c == '?' && (s[1] == '0' || s[1] == '1')) {
        *pp = s + 2;
        return SU_HDR_SF_OTHER;
    }
    return SU_HDR_SF_FAIL;
}

static int su_hdr_sf_params(const char **pp)
{
    const char *s = *pp, *k, *b;
    apr_size_t kl, bl;

    while (*s == ';') {
        s++;
        while (*s == ' ')
            s++;
        if (!su_hdr_sf_key(&s, &k, &kl))
            return 0;
        if (*s == '=') {
            s++;
            if (su_hdr_sf_bare(&s, &b, &bl) == SU_HDR_SF_FAIL)
                return 0;
        }
    }
    *pp = s;
    return 1;
}

static int su_hdr_sf_inner_list(const char **pp)
{
    const char *s = *pp + 1, *b;
    apr_size_t bl;

    for (;;) {
        while (*s == ' ')
            s++;
        if (*s == ')')
            break;
        if (su_hdr_sf_bare(&s, &b, &bl) == SU_HDR_SF_FAIL || !su_hdr_sf_params(&s))
            return 0;
        if (*s != ' ' && *s != ')')
            return 0;
    }
    s++;
    *pp = s;
    return su_hdr_sf_params(pp);
}

/* A dictionary member's value: the byte sequence if it is one, else SF_OTHER. */
static su_hdr_sf_kind_t su_hdr_sf_member(const char **pp, const char **b64,
                                         apr_size_t *b64len)
{
    su_hdr_sf_kind_t kind;

    if (**pp != '=')
        return su_hdr_sf_params(pp) ? SU_HDR_SF_OTHER : SU_HDR_SF_FAIL;
    (*pp)++;
    if (**pp == '(')
        return su_hdr_sf_inner_list(pp) ? SU_HDR_SF_OTHER : SU_HDR_SF_FAIL;
    kind = su_hdr_sf_bare(pp, b64, b64len);
    if (kind == SU_HDR_SF_FAIL || !su_hdr_sf_params(pp))
        return SU_HDR_SF_FAIL;
    return kind;
}

/* Stores a known algorithm's digest in slot; 0 on a bad value. */
static int su_hdr_digest_set(su_digest_t *slot, su_digest_alg_t alg, apr_size_t want,
                             su_hdr_sf_kind_t kind, const char *b64, apr_size_t b64len)
{
    long n;

    if (kind != SU_HDR_SF_BYTES)
        return 0;
    n = su_hdr_b64_decode(b64, b64len, slot->value, sizeof(slot->value));
    if (n < 0 || (apr_size_t)n != want)
        return 0;
    slot->alg = alg;
    slot->len = want;
    return 1;
}

static int su_hdr_digest_member(const char **pp, su_digest_t *d256, su_digest_t *d512)
{
    const char *key, *b64 = NULL;
    apr_size_t klen, b64len = 0;
    su_hdr_sf_kind_t kind;

    if (!su_hdr_sf_key(pp, &key, &klen))
        return 0;
    kind = su_hdr_sf_member(pp, &b64, &b64len);
    if (kind == SU_HDR_SF_FAIL)
        return 0;
    if (klen == 7 && memcmp(key, "sha-256", 7) == 0)
        return su_hdr_digest_set(d256, SU_DIGEST_SHA256, 32, kind, b64, b64len);
    if (klen == 7 && memcmp(key, "sha-512", 7) == 0)
        return su_hdr_digest_set(d512, SU_DIGEST_SHA512, 64, kind, b64, b64len);
    return 1;   /* an algorithm we do not check */
}

su_err_t su_hdr_digest(const char *header, su_digest_t *out)
{
    su_digest_t d256, d512;
    const char *s;

    memset(out, 0, sizeof(*out));
    if (header == NULL || su_hdr_too_long(header))
        return SU_ERR_BAD_REQUEST;
    memset(&d256, 0, sizeof(d256));
    memset(&d512, 0, sizeof(d512));
    s = su_hdr_skip_ows(header);
    while (*s != '\0') {
        if (!su_hdr_digest_member(&s, &d256, &d512))
            return SU_ERR_BAD_REQUEST;
        s = su_hdr_skip_ows(s);
        if (*s == '\0')
            break;
        if (*s != ',')
            return SU_ERR_BAD_REQUEST;
        s = su_hdr_skip_ows(s + 1);
        if (*s == '\0')
            return SU_ERR_BAD_REQUEST;   /* trailing comma */
    }
    if (d512.alg != SU_DIGEST_NONE)
        *out = d512;
    else if (d256.alg != SU_DIGEST_NONE)
        *out = d256;
    return SU_OK;
}

su_err_t su_hdr_content_md5(const char *header, su_digest_t *out)
{
    const char *b, *e;
    long n;

    memset(out, 0, sizeof(*out));
    if (header == NULL || su_hdr_too_long(header))
        return SU_ERR_BAD_REQUEST;
    b = su_hdr_skip_ows(header);
    e = b + strlen(b);
    while (e > b && (e[-1] == ' ' || e[-1] == '\t'))
        e--;
    n = su_hdr_b64_decode(b, (apr_size_t)(e - b), out->value, sizeof(out->value));
    if (n != 16) {
        memset(out, 0, sizeof(*out));
        return SU_ERR_BAD_REQUEST;
    }
    out->alg = SU_DIGEST_MD5;
    out->len = 16;
    return SU_OK;
}

/* ---- media types ---- */

/* The "type/subtype" at the start of s (before ';'), trimmed; 0 if malformed. */
static int su_hdr_media_type(const char *s, const char **b, apr_size_t *n)
{
    const char *e, *sl = NULL;

    s = su_hdr_skip_ows(s);
    for (e = s; *e != '\0' && *e != ';' && *e != ' ' && *e != '\t'; e++) {
        if (*e == '/' && sl == NULL)
            sl = e;
        else if (!su_hdr_is_tchar((unsigned char)*e))
            return 0;
    }
    if (sl == NULL || sl == s || sl + 1 == e || (apr_size_t)(e - s) > SU_HDR_MAX_LEN)
        return 0;
    *b = s;
    *n = (apr_size_t)(e - s);
    e = su_hdr_skip_ows(e);
    return *e == '\0' || *e == ';';
}

static int su_hdr_ieq_n(const char *a, const char *b, apr_size_t n)
{
    apr_size_t i;

    for (i = 0; i < n; i++)
        if (su_hdr_lower((unsigned char)a[i]) != su_hdr_lower((unsigned char)b[i]))
            return 0;
    return 1;
}

su_err_t su_hdr_valid_type(apr_pool_t *p, const char *value, const char **media)
{
    const char *m, *s;
    apr_table_t *params;

    if (value == NULL)
        return SU_ERR_BAD_REQUEST;
    if (strlen(value) > SU_HDR_TYPE_MAX)
        return SU_ERR_TOO_LARGE;
    /* CR and LF would end the header line it becomes */
    for (s = value; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return SU_ERR_BAD_REQUEST;
    if (su_hdr_params(p, value, &m, &params) != SU_OK || strchr(m, '/') == NULL)
        return SU_ERR_BAD_REQUEST;
    if (media != NULL)
        *media = m;
    return SU_OK;
}

/* RFC 6838 restricted-name: a type or subtype in a pattern, n bytes of s. */
static int su_hdr_restricted_name(const char *s, apr_size_t n)
{
    apr_size_t i;

    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!su_hdr_is_alpha(c) && !su_hdr_is_digit(c)
            && (c == '\0' || strchr("!#$&-^_.+", c) == NULL))
            return 0;
    }
    return n > 0;
}

int su_hdr_type_pattern_ok(const char *pattern)
{
    const char *slash = pattern ? strchr(pattern, '/') : NULL;

    if (slash == NULL
        || !su_hdr_restricted_name(pattern, (apr_size_t)(slash - pattern)))
        return 0;
    return strcmp(slash + 1, "*") == 0
           || su_hdr_restricted_name(slash + 1, strlen(slash + 1));
}

int su_hdr_type_matches(const char *type, const char *pattern)
{
    const char *t, *pt;
    apr_size_t tn, pn;

    if (type == NULL || pattern == NULL)
        return 0;
    if (!su_hdr_media_type(type, &t, &tn))
        return 0;
    pt = su_hdr_skip_ows(pattern);
    pn = strcspn(pt, "; \t");
    if (pn >= 3 && pt[pn - 1] == '*' && pt[pn - 2] == '/')
        return tn > pn - 1 && su_hdr_ieq_n(t, pt, pn - 1);
    return tn == pn && su_hdr_ieq_n(t, pt, pn);
}

const char *su_hdr_attachment(apr_pool_t *p, const char *name)
{
    static const char hex[] = "0123456789ABCDEF";
    apr_size_t n = name ? strlen(name) : 0, i, a = 0, e = 0;
    char *ascii, *ext;

    if (n == 0)
        return "attachment";
    ascii = apr_palloc(p, n + 1);
    ext = apr_palloc(p, 3 * n + 1);
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)name[i];
        /* a plain fallback for old clients: printable ASCII, no quote/backslash */
        ascii[a++] = (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') ? (char)c : '_';
        if (su_hdr_is_attr_char(c)) {
            ext[e++] = (char)c;
        } else {
            ext[e++] = '%';
            ext[e++] = hex[c >> 4];
            ext[e++] = hex[c & 0x0f];
        }
    }
    ascii[a] = '\0';
    ext[e] = '\0';
    return apr_psprintf(p, "attachment; filename=\"%s\"; filename*=UTF-8''%s",
                        ascii, ext);
}

/* ---- tus 1.0.0 request headers ---- */

int su_hdr_tus_version_ok(const char *v)
{
    return v != NULL && strcmp(v, SU_HDR_TUS_VERSION) == 0;
}

int su_hdr_tus_number(const char *v, apr_uint64_t *out)
{
    apr_int64_t n;

    if (!su_util_parse_num(v, 0, APR_INT64_MAX, &n))
        return 0;
    *out = (apr_uint64_t)n;
    return 1;
}

/* A decoded value, as a C string: it ends at its first NUL, if any. */
static const char *su_hdr_tus_value(apr_pool_t *p, const char *b64)
{
    apr_size_t cap = strlen(b64) / 4 * 3;
    unsigned char *out = apr_palloc(p, cap + 1);
    long n = su_hdr_b64_loose(b64, out, cap);

    out[n < 0 ? 0 : n] = '\0';   /* n < 0 cannot happen: cap is enough */
    return (const char *)out;
}

/* One "key" or "key base64" of Upload-Metadata (blanks are spaces only,
 * any number of them); 0 if malformed. */
static int su_hdr_tus_pair(apr_pool_t *p, char *pair, const char **name,
                           const char **type)
{
    char *key, *val, *last;

    while (*pair == ' ')
        pair++;
    /* apr_strtok sets `last` only when it finds a token: a pair of spaces
     * alone has none, and a second call would read `last` unset */
    key = apr_strtok(pair, " ", &last);
    if (key == NULL)
        return 0;
    val = apr_strtok(NULL, " ", &last);
    if (apr_strtok(NULL, " ", &last) != NULL
        || (val != NULL && !su_hdr_b64_loose_ok(val)))
        return 0;
    if (val != NULL && strcmp(key, "filename") == 0)
        *name = su_hdr_tus_value(p, val);
    else if (val != NULL && strcmp(key, "filetype") == 0)
        *type = su_hdr_tus_value(p, val);
    return 1;
}

su_err_t su_hdr_tus_metadata(apr_pool_t *p, const char *v, const char **name,
                             const char **type)
{
    const char *fname = "";
    char *copy, *pair, *last;

    *name = "";
    *type = NULL;
    if (v == NULL || strnlen(v, SU_HDR_TUS_METADATA_MAX + 1) > SU_HDR_TUS_METADATA_MAX)
        return SU_ERR_BAD_REQUEST;
    copy = apr_pstrdup(p, v);
    /* empty pairs (",,", a trailing ',') are skipped */
    for (pair = apr_strtok(copy, ",", &last); pair != NULL;
         pair = apr_strtok(NULL, ",", &last))
        if (!su_hdr_tus_pair(p, pair, &fname, type)) {
            *type = NULL;
            return SU_ERR_BAD_REQUEST;
        }
    *name = su_hdr_safe_name(p, fname);
    return SU_OK;
}

/* The algorithm an Upload-Checksum names (n bytes at s), and its length. */
static su_digest_alg_t su_hdr_tus_alg(const char *s, apr_size_t n, apr_size_t *len)
{
    if (n == 4 && memcmp(s, "sha1", 4) == 0) {
        *len = 20;
        return SU_DIGEST_SHA1;
    }
    if (n == 6 && memcmp(s, "sha256", 6) == 0) {
        *len = 32;
        return SU_DIGEST_SHA256;
    }
    if (n == 6 && memcmp(s, "sha512", 6) == 0) {
        *len = 64;
        return SU_DIGEST_SHA512;
    }
    return SU_DIGEST_NONE;
}

su_err_t su_hdr_tus_checksum(const char *v, su_digest_t *out)
{
    const char *sp = v ? strchr(v, ' ') : NULL;
    apr_size_t want = 0;
    su_digest_alg_t alg;
    long n;

    memset(out, 0, sizeof(*out));
    if (sp == NULL || !su_hdr_b64_loose_ok(sp + 1))
        return SU_ERR_BAD_REQUEST;
    alg = su_hdr_tus_alg(v, (apr_size_t)(sp - v), &want);
    if (alg == SU_DIGEST_NONE)
        return SU_ERR_BAD_REQUEST;
    n = su_hdr_b64_loose(sp + 1, out->value, sizeof(out->value));
    if (n < 0 || (apr_size_t)n != want) {
        memset(out, 0, sizeof(*out));
        return SU_ERR_BAD_REQUEST;
    }
    out->alg = alg;
    out->len = want;
    return SU_OK;
}
