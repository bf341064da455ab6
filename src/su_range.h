/*
 * A download's conditions and byte range (RFC 9110 13.1, 14): which part
 * of a file of known size a GET asks for (Range, If-Range), and whether it
 * already holds the file (If-None-Match), against the file's strong entity
 * tag. Every input is hostile: a value is read up to its NUL, never past.
 */
#ifndef SU_RANGE_H
#define SU_RANGE_H

#include <stdint.h>
#include <apr.h>

/*
 * The largest first or last byte position a range may name:
 * 18446744073709551609, the largest number whose last digit can always be
 * added without passing 2^64 - 1. A larger one makes the range invalid
 * (ignored), not unsatisfiable.
 */
#define SU_RANGE_POS_MAX ((UINT64_MAX - 9) / 10 * 10 + 9)

typedef enum su_range_kind {
    SU_RANGE_WHOLE = 0,       /* the whole file (200) */
    SU_RANGE_PART,            /* one range of it (206) */
    SU_RANGE_UNSATISFIABLE    /* nothing: outside the file (416) */
} su_range_kind_t;

typedef struct su_range {
    su_range_kind_t kind;
    apr_uint64_t off, len;    /* WHOLE: 0 and size; PART: within the file,
                                 len at least 1; UNSATISFIABLE: 0 and 0 */
} su_range_t;

/*
 * What a GET of a file of `size` bytes whose strong tag is `etag` gets,
 * from its Range and If-Range values (either may be NULL):
 *   - the whole file without a Range, or with an If-Range that is not
 *     exactly etag (a date, a weak or another tag);
 *   - the whole file for a Range that is not "bytes=" (any case) and one
 *     range spec, blanks (SP, HTAB) allowed around it: several ranges
 *     (any ',') and an invalid spec are ignored, as RFC 9110 allows;
 *   - "a-b" (b >= a), "a-": PART from a to b or the end, UNSATISFIABLE
 *     when a >= size; "-n": the last n bytes (all of them if n >= size),
 *     UNSATISFIABLE when n is 0 or the file empty.
 */
void su_range_span(const char *range, const char *if_range, const char *etag,
                   apr_uint64_t size, su_range_t *out);

/*
 * Does an If-None-Match value (NULL: none) name the file: "*" (after
 * leading blanks), or a list of entity tags one of which is etag by the
 * weak comparison (W/ ignored), as httpd's ap_find_etag_weak reads a list:
 * a tag followed by blanks only before its ',' or the end; the list read
 * no further than an item that starts with neither '"' nor W/". etag is
 * a strong tag, '"' then characters other than '"' and '\\' then '"'.
 */
int su_range_none_match(const char *inm, const char *etag);

#endif
