/*
 * Range, If-Range and If-None-Match of a download (su_range.h). Each
 * function reads its value up to the NUL and no further; the numbers go
 * through the core's one decimal parser.
 */
#include <string.h>
#include <strings.h>
#include "su_range.h"
#include "su_util.h"

static const char *su_range_skip_blanks(const char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    return s;
}

/* A byte position: the digits [s, e), at least one. */
static int su_range_num(const char *s, const char *e, apr_uint64_t *v)
{
    return s < e && su_util_parse_digits(s, (apr_size_t)(e - s), SU_RANGE_POS_MAX, v);
}

static void su_range_set(su_range_t *out, su_range_kind_t kind, apr_uint64_t off,
                         apr_uint64_t len)
{
    out->kind = kind;
    out->off = off;
    out->len = len;
}

/* "-n" (s is past the dash, e the end): the last n bytes. */
static void su_range_suffix(const char *s, const char *e, apr_uint64_t size,
                            su_range_t *out)
{
    apr_uint64_t n;

    if (!su_range_num(s, e, &n))
        return;
    if (n == 0 || size == 0)
        su_range_set(out, SU_RANGE_UNSATISFIABLE, 0, 0);
    else
        su_range_set(out, SU_RANGE_PART, size - (n < size ? n : size),
                     n < size ? n : size);
}

/* One range spec ("a-b", "a-", "-n"); out is left alone if not valid. */
static void su_range_spec(const char *spec, apr_uint64_t size, su_range_t *out)
{
    const char *dash = strchr(spec, '-'), *end = spec + strlen(spec);
    apr_uint64_t a, b = UINT64_MAX;

    while (end > spec && (end[-1] == ' ' || end[-1] == '\t'))
        end--;
    if (dash == NULL)
        return;
    if (dash == spec) {
        su_range_suffix(dash + 1, end, size, out);
        return;
    }
    if (!su_range_num(spec, dash, &a)
        || (dash + 1 < end && (!su_range_num(dash + 1, end, &b) || b < a)))
        return;
    if (a >= size)
        su_range_set(out, SU_RANGE_UNSATISFIABLE, 0, 0);
    else   /* b is at most SU_RANGE_POS_MAX when given: b + 1 cannot wrap */
        su_range_set(out, SU_RANGE_PART, a, (b < size ? b + 1 : size) - a);
}

void su_range_span(const char *range, const char *if_range, const char *etag,
                   apr_uint64_t size, su_range_t *out)
{
    su_range_set(out, SU_RANGE_WHOLE, 0, size);
    if (range == NULL
        || (if_range != NULL && (etag == NULL || strcmp(if_range, etag) != 0)))
        return;
    range = su_range_skip_blanks(range);
    if (strncasecmp(range, "bytes=", 6) != 0 || strchr(range, ',') != NULL)
        return;
    su_range_spec(su_range_skip_blanks(range + 6), size, out);
}

/* ---- If-None-Match ---- */

/* apr_isspace in the C locale, which httpd's list reader skips */
static int su_range_is_space(unsigned char c)
{
    return c == ' ' || (c >= '\t' && c <= '\r');
}

/* Is the item at s (at its '"') exactly etag, then blanks, then ',' or the end? */
static int su_range_item_is(const char *s, const char *etag)
{
    apr_size_t n = strlen(etag);

    if (strncmp(s, etag, n) != 0)
        return 0;
    s = su_range_skip_blanks(s + n);
    return *s == ',' || *s == '\0';
}

/* The ',' that ends the item at s, or its NUL: not one inside a
 * quoted-string, a comment or a quoted-pair. */
static const char *su_range_item_end(const char *s)
{
    int qpair = 0, qstr = 0;
    apr_size_t com = 0;

    for (; *s != '\0' && (qpair || qstr || com > 0 || *s != ','); s++) {
        if (qpair)
            qpair = 0;
        else if (*s == '\\')
            qpair = 1;
        else if (*s == '"' && com == 0)
            qstr = !qstr;
        else if (*s == '(' && !qstr)
            com++;
        else if (*s == ')' && com > 0)
            com--;
    }
    return s;
}

static int su_range_etag_listed(const char *s, const char *etag)
{
    for (;;) {
        while (*s == ',' || su_range_is_space((unsigned char)*s))
            s++;
        if (s[0] == 'W' && s[1] == '/' && s[2] == '"')
            s += 2;
        if (*s != '"')
            return 0;
        if (su_range_item_is(s, etag))
            return 1;
        s = su_range_item_end(s);
        if (*s == '\0')
            return 0;
    }
}

int su_range_none_match(const char *inm, const char *etag)
{
    if (inm == NULL || etag == NULL)
        return 0;
    inm = su_range_skip_blanks(inm);
    return strcmp(inm, "*") == 0 || su_range_etag_listed(inm, etag);
}
