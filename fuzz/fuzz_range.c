/*
 * libFuzzer target: a download's Range, If-Range and If-None-Match
 * (su_range.h).
 *
 * Input: 8 bytes, a file size (little-endian, shifted right by the low 6
 * bits of the first byte, so that small sizes come often); then the Range
 * value, a NUL, the If-Range value (absent without the NUL), a NUL, the
 * If-None-Match value. Each value is copied into a buffer of its exact
 * size, so a read past its end is caught.
 *
 * Invariants:
 *   su_range_span   a part lies within the file (off < size, len >= 1,
 *                   off + len <= size); the whole file is 0 and size;
 *                   nothing is 0 and 0; without "bytes=" (after blanks,
 *                   any case), with a ',' or an If-Range other than the
 *                   tag, the whole file; a part asked again as
 *                   "bytes=first-last" (and as "-len" when it ends the
 *                   file) is the same part
 *   su_range_none_match  "*" and the tag itself match; a match names the
 *                   tag's value or is "*"; a list of quoted tags the
 *                   target writes matches exactly when it holds the tag
 */
#include <inttypes.h>
#include <string.h>
#include <strings.h>
#include <apr_strings.h>

#include "fz_common.h"
#include "su_range.h"

#define FZ_TAG "\"00112233445566778899aabbccddeeff\""

/* The next NUL-ended piece of the input as an exact-size copy; NULL
 * once the input is used up (*d NULL). */
static char *fz_piece(const uint8_t **d, size_t *n)
{
    size_t k;
    char *s;

    if (*d == NULL)
        return NULL;
    k = strnlen((const char *)*d, *n);
    s = malloc(k + 1);
    FZ_CHECK(s != NULL, "malloc");
    memcpy(s, *d, k);
    s[k] = '\0';
    *d = k < *n ? *d + k + 1 : NULL;
    *n = k < *n ? *n - k - 1 : 0;
    return s;
}

static void fz_span_bounds(const su_range_t *r, uint64_t size)
{
    switch (r->kind) {
    case SU_RANGE_WHOLE:
        FZ_CHECK(r->off == 0 && r->len == size, "span: whole is not 0 and size");
        break;
    case SU_RANGE_PART:
        FZ_CHECK(r->off < size && r->len >= 1 && r->len <= size - r->off,
                 "span: a part outside the file or empty");
        break;
    case SU_RANGE_UNSATISFIABLE:
        FZ_CHECK(r->off == 0 && r->len == 0, "span: 416 with bytes");
        break;
    default:
        FZ_CHECK(0, "span: unknown kind");
    }
}

/* The same part, asked for again in the forms the spec allows. */
static void fz_span_again(const su_range_t *r, uint64_t size)
{
    char v[80];
    su_range_t r2;

    snprintf(v, sizeof v, "bytes=%" PRIu64 "-%" PRIu64, r->off, r->off + r->len - 1);
    su_range_span(v, FZ_TAG, FZ_TAG, size, &r2);
    FZ_CHECK(r2.kind == SU_RANGE_PART && r2.off == r->off && r2.len == r->len,
             "span: a part asked again is another");
    if (r->off + r->len != size)
        return;
    snprintf(v, sizeof v, "bytes=-%" PRIu64, r->len);
    su_range_span(v, NULL, FZ_TAG, size, &r2);
    FZ_CHECK(r2.kind == SU_RANGE_PART && r2.off == r->off && r2.len == r->len,
             "span: the suffix form of a part is another");
}

static void fz_span(const char *range, const char *ifr, uint64_t size)
{
    const char *b = range + strspn(range, " \t");
    su_range_t r;

    su_range_span(range, ifr, FZ_TAG, size, &r);
    fz_span_bounds(&r, size);
    if (strncasecmp(b, "bytes=", 6) != 0 || strchr(range, ',') != NULL
        || (ifr != NULL && strcmp(ifr, FZ_TAG) != 0))
        FZ_CHECK(r.kind == SU_RANGE_WHOLE, "span: a range that should be ignored");
    if (r.kind == SU_RANGE_PART)
        fz_span_again(&r, size);
    su_range_span(NULL, ifr, FZ_TAG, size, &r);
    FZ_CHECK(r.kind == SU_RANGE_WHOLE && r.len == size, "span: no Range, not whole");
}

/* Does s hold only quoted tags without '"', '\\' and ','? Then the list
 * the target makes of it can be judged by plain comparison. */
static int fz_plain_tag(const char *s)
{
    return strpbrk(s, "\"\\,") == NULL;
}

static void fz_none_match(apr_pool_t *p, const char *inm)
{
    const char *b = inm + strspn(inm, " \t");
    const char *list;

    if (su_range_none_match(inm, FZ_TAG))
        FZ_CHECK(strcmp(b, "*") == 0 || strstr(inm, &FZ_TAG[1]) != NULL,
                 "none_match: matched without the tag");
    FZ_CHECK(su_range_none_match(FZ_TAG, FZ_TAG) && su_range_none_match("*", FZ_TAG),
             "none_match: the tag or * not matched");
    if (!fz_plain_tag(inm) || strlen(inm) > 200)
        return;
    /* "x", W/"x", "tag": the tag matches; "x" alone matches only if x is it */
    list = apr_psprintf(p, "\"%s\", W/\"%s\" ,%s", inm, inm, FZ_TAG);
    FZ_CHECK(su_range_none_match(list, FZ_TAG), "none_match: tag last in a list");
    list = apr_psprintf(p, "\"%s\"", inm);
    FZ_CHECK(su_range_none_match(list, FZ_TAG) == (strcmp(list, FZ_TAG) == 0),
             "none_match: a single tag");
}

FZ_INITIALIZE_APR

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    apr_pool_t *p;
    uint64_t fsize = 0;
    const uint8_t *d;
    size_t n, i;
    char *range, *ifr, *inm;

    if (size < 8)
        return 0;
    for (i = 0; i < 8; i++)
        fsize |= (uint64_t)data[i] << (8 * i);
    fsize >>= data[0] & 63;
    d = data + 8;
    n = size - 8;
    p = fz_pool_new();
    range = fz_piece(&d, &n);
    ifr = fz_piece(&d, &n);
    inm = fz_piece(&d, &n);
    fz_span(range, ifr, fsize);
    fz_none_match(p, range);
    if (inm != NULL)
        fz_none_match(p, inm);
    free(range);
    free(ifr);
    free(inm);
    apr_pool_destroy(p);
    return 0;
}
