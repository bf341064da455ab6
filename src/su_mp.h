/*
 * A streaming multipart/form-data parser (RFC 2046 §5.1, RFC 7578).
 *
 * Bytes are fed in pieces of any size, split anywhere; the parser keeps a
 * bounded amount of state (at most the current part's header bytes and a
 * delimiter's length of look-behind) and hands the part bodies to callbacks
 * as it goes, never cutting a body at a lookalike of the delimiter.
 *
 * Strict framing: CRLF line ends only; the body starts with "--boundary"
 * (a preamble before it is allowed, RFC 2046, but is bounded); after each
 * delimiter only transport padding (spaces/tabs) then CRLF, or "--" for
 * the close delimiter; after the close delimiter an epilogue is ignored.
 */
#ifndef SU_MP_H
#define SU_MP_H

#include <apr_pools.h>
#include <apr_tables.h>
#include "su_common.h"

/* documented caps on the work a request can cause */
#define SU_MP_MAX_BOUNDARY       70
#define SU_MP_DEF_MAX_PARTS      64      /* parts per request */
#define SU_MP_DEF_MAX_HDR_BYTES  8192    /* header bytes per part */
#define SU_MP_DEF_MAX_HEADERS    16      /* header lines per part */
#define SU_MP_DEF_MAX_PREAMBLE   8192    /* bytes before the first delimiter */

typedef struct su_mp_limits {
    int max_parts;
    apr_size_t max_header_bytes;
    int max_headers;
    apr_size_t max_preamble;
} su_mp_limits_t;

/* One part's headers, as parsed; strings are NUL-terminated, from the parser's pool. */
typedef struct su_mp_part {
    const char *name;         /* Content-Disposition name param, or NULL */
    const char *filename;     /* filename (or decoded filename*), or NULL */
    const char *content_type; /* raw Content-Type header value, or NULL */
    apr_table_t *headers;     /* all part headers (names case-insensitive) */
} su_mp_part_t;

/*
 * Callbacks return 0 to go on, or an su_err_t (non-zero) to stop parsing:
 * su_mp_feed then returns that error.
 */
typedef struct su_mp_callbacks {
    int (*on_part_begin)(void *ctx, const su_mp_part_t *part);
    int (*on_part_data)(void *ctx, const char *buf, apr_size_t len);
    int (*on_part_end)(void *ctx);
} su_mp_callbacks_t;

typedef struct su_mp su_mp_t;

void su_mp_limits_default(su_mp_limits_t *lim);

/*
 * Get the boundary from a Content-Type header value: the media type must be
 * multipart/form-data (case-insensitive), the boundary parameter (name
 * case-insensitive, quoted or not) 1-70 characters of RFC 2046 bchars, not
 * ending in a space. SU_ERR_BAD_REQUEST otherwise.
 */
su_err_t su_mp_boundary(apr_pool_t *p, const char *content_type,
                        const char **boundary);

su_mp_t *su_mp_create(apr_pool_t *p, const char *boundary,
                      const su_mp_limits_t *lim,
                      const su_mp_callbacks_t *cb, void *ctx);

/* Feed the next bytes. SU_OK, SU_ERR_BAD_REQUEST, or a callback's error. */
su_err_t su_mp_feed(su_mp_t *mp, const char *buf, apr_size_t len);

/* End of body: SU_ERR_BAD_REQUEST unless the close delimiter was seen. */
su_err_t su_mp_finish(su_mp_t *mp);

/* Why the last SU_ERR_BAD_REQUEST happened (static string, safe for a client). */
const char *su_mp_error(const su_mp_t *mp);

#endif
