/*
 * Streaming multipart/form-data parser (RFC 2046 §5.1, RFC 7578).
 *
 * The search for the delimiter "\r\n--boundary" exploits that a boundary
 * holds no CR or LF: a match can only start at a '\r', so a partial match
 * that fails never hides the start of another one. That keeps the scan
 * linear (memchr to the next '\r', then a compare that the next memchr
 * skips past) and means the held-back look-behind is always a prefix of
 * the delimiter itself, so it is re-emitted from the delimiter string and
 * never copied. Body bytes go to the callback straight from the caller's
 * buffer.
 *
 * The body is scanned as if it were preceded by a CRLF, so a delimiter at
 * the very start needs no special case; the preamble is a "part" whose
 * bytes are counted and dropped.
 */
#include <string.h>
#include <strings.h>
#include <apr_strings.h>
#include "su_mp.h"
#include "su_hdr.h"

/* Transport padding after a delimiter is legal but has no use past this. */
#define SU_MP_MAX_PADDING 1024

typedef enum su_mp_state {
    SU_MP_PREAMBLE = 0,
    SU_MP_AFTER_DELIM,   /* after "--boundary": padding CRLF, or "--" */
    SU_MP_HEADERS,
    SU_MP_BODY,
    SU_MP_EPILOGUE
} su_mp_state_t;

typedef enum su_mp_delim_state {
    SU_MP_AD_START = 0,
    SU_MP_AD_DASH,
    SU_MP_AD_PAD,
    SU_MP_AD_CR
} su_mp_delim_state_t;

struct su_mp {
    apr_pool_t *pool;
    su_mp_limits_t lim;
    su_mp_callbacks_t cb;
    void *ctx;

    char *delim;              /* "\r\n--" boundary */
    apr_size_t dlen;
    apr_size_t matched;       /* bytes of delim matched and held back */

    su_mp_state_t state;
    su_mp_delim_state_t ad;
    apr_size_t padding;
    apr_size_t preamble;      /* dropped bytes, including the implied CRLF */
    int in_part;
    int nparts;

    char *line;               /* current header line (max_header_bytes) */
    apr_size_t line_len;
    apr_size_t hdr_bytes;
    int nheaders;
    int saw_cr;
    apr_table_t *headers;
    su_mp_part_t part;

    su_err_t err;
    const char *msg;
};

/* ---- errors ---- */

static int su_mp_fail(su_mp_t *mp, const char *msg)
{
    mp->err = SU_ERR_BAD_REQUEST;
    mp->msg = msg;
    return 1;
}

/* A callback's non-zero return stops the parser with that error. */
static int su_mp_cb_result(su_mp_t *mp, int rc)
{
    if (rc == 0)
        return 0;
    mp->err = (su_err_t)rc;
    mp->msg = "request rejected";
    return 1;
}

/* ---- boundaries ---- */

static int su_mp_is_bchar(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
        || (c != '\0' && strchr("'()+_,-./:=? ", c) != NULL);
}

static int su_mp_boundary_ok(const char *b)
{
    apr_size_t n, i;

    if (b == NULL)
        return 0;
    n = strnlen(b, SU_MP_MAX_BOUNDARY + 1);
    if (n == 0 || n > SU_MP_MAX_BOUNDARY || b[n - 1] == ' ')
        return 0;
    for (i = 0; i < n; i++)
        if (!su_mp_is_bchar((unsigned char)b[i]))
            return 0;
    return 1;
}

su_err_t su_mp_boundary(apr_pool_t *p, const char *content_type,
                        const char **boundary)
{
    const char *type, *b;
    apr_table_t *params;

    if (content_type == NULL
        || su_hdr_params(p, content_type, &type, &params) != SU_OK
        || strcmp(type, "multipart/form-data") != 0)
        return SU_ERR_BAD_REQUEST;
    b = apr_table_get(params, "boundary");
    if (!su_mp_boundary_ok(b))
        return SU_ERR_BAD_REQUEST;
    *boundary = b;
    return SU_OK;
}

/* ---- setup ---- */

void su_mp_limits_default(su_mp_limits_t *lim)
{
    lim->max_parts = SU_MP_DEF_MAX_PARTS;
    lim->max_header_bytes = SU_MP_DEF_MAX_HDR_BYTES;
    lim->max_headers = SU_MP_DEF_MAX_HEADERS;
    lim->max_preamble = SU_MP_DEF_MAX_PREAMBLE;
}

/* A zero or negative cap means the default, never "unlimited"; only the
 * preamble may be capped at zero (no preamble allowed). */
static void su_mp_limits_fix(su_mp_limits_t *lim, const su_mp_limits_t *in)
{
    su_mp_limits_default(lim);
    if (in == NULL)
        return;
    if (in->max_parts > 0)
        lim->max_parts = in->max_parts;
    if (in->max_header_bytes > 0)
        lim->max_header_bytes = in->max_header_bytes;
    if (in->max_headers > 0)
        lim->max_headers = in->max_headers;
    lim->max_preamble = in->max_preamble;
}

su_mp_t *su_mp_create(apr_pool_t *p, const char *boundary,
                      const su_mp_limits_t *lim,
                      const su_mp_callbacks_t *cb, void *ctx)
{
    su_mp_t *mp;

    if (p == NULL || cb == NULL || !su_mp_boundary_ok(boundary))
        return NULL;
    mp = apr_pcalloc(p, sizeof(*mp));
    mp->pool = p;
    su_mp_limits_fix(&mp->lim, lim);
    mp->cb = *cb;
    mp->ctx = ctx;
    mp->delim = apr_pstrcat(p, "\r\n--", boundary, NULL);
    mp->dlen = strlen(mp->delim);
    mp->line = apr_palloc(p, mp->lim.max_header_bytes);
    mp->state = SU_MP_PREAMBLE;
    mp->matched = 2;   /* the implied CRLF before the first delimiter */
    mp->msg = "";
    return mp;
}

/* ---- body and preamble ---- */

static int su_mp_emit(su_mp_t *mp, const char *buf, apr_size_t len)
{
    if (len == 0)
        return 0;
    if (mp->state == SU_MP_PREAMBLE) {
        mp->preamble += len;
        if (mp->preamble > mp->lim.max_preamble + 2)
            return su_mp_fail(mp, "multipart preamble too long");
        return 0;
    }
    if (mp->cb.on_part_data == NULL)
        return 0;
    return su_mp_cb_result(mp, mp->cb.on_part_data(mp->ctx, buf, len));
}

static void su_mp_delim_found(su_mp_t *mp)
{
    mp->matched = 0;
    mp->state = SU_MP_AFTER_DELIM;
    mp->ad = SU_MP_AD_START;
    mp->padding = 0;
}

/* Continues a match held back from the previous feed; returns bytes used. */
static apr_size_t su_mp_scan_carry(su_mp_t *mp, const char *buf, apr_size_t len)
{
    apr_size_t i = 0, m;

    while (i < len && mp->matched < mp->dlen && buf[i] == mp->delim[mp->matched]) {
        i++;
        mp->matched++;
    }
    if (mp->matched == mp->dlen) {
        su_mp_delim_found(mp);
        return i;
    }
    if (i == len)
        return len;
    /* buf[i] breaks the match: the held-back bytes were data after all */
    m = mp->matched;
    mp->matched = 0;
    su_mp_emit(mp, mp->delim, m);
    return i;
}

/* Data up to the next delimiter; returns bytes consumed. */
static apr_size_t su_mp_scan(su_mp_t *mp, const char *buf, apr_size_t len)
{
    const char *d = mp->delim;
    apr_size_t i = 0, start, at, k, lim;
    const char *r;

    if (mp->matched > 0) {
        i = su_mp_scan_carry(mp, buf, len);
        if (mp->err || mp->matched > 0 || mp->state == SU_MP_AFTER_DELIM)
            return i;
    }
    start = i;
    while (i < len) {
        /* runs of CRs are cheap without a call per byte */
        r = buf[i] == '\r' ? buf + i : memchr(buf + i, '\r', len - i);
        if (r == NULL)
            break;
        at = (apr_size_t)(r - buf);
        lim = len - at < mp->dlen ? len - at : mp->dlen;
        for (k = 1; k < lim && buf[at + k] == d[k]; k++)
            ;
        if (k == mp->dlen) {
            if (!su_mp_emit(mp, buf + start, at - start))
                su_mp_delim_found(mp);
            return at + k;
        }
        if (at + k == len) {
            if (!su_mp_emit(mp, buf + start, at - start))
                mp->matched = k;
            return len;
        }
        i = at + k;   /* no '\r' inside the matched part of a delimiter */
    }
    su_mp_emit(mp, buf + start, len - start);
    return len;
}

/* ---- after a delimiter ---- */

static int su_mp_part_end(su_mp_t *mp)
{
    if (!mp->in_part)
        return 0;
    mp->in_part = 0;
    if (mp->cb.on_part_end == NULL)
        return 0;
    return su_mp_cb_result(mp, mp->cb.on_part_end(mp->ctx));
}

static void su_mp_close(su_mp_t *mp)
{
    if (mp->nparts == 0) {
        su_mp_fail(mp, "multipart body without parts");
        return;
    }
    if (su_mp_part_end(mp) == 0)
        mp->state = SU_MP_EPILOGUE;
}

static void su_mp_open(su_mp_t *mp)
{
    if (su_mp_part_end(mp) != 0)
        return;
    if (++mp->nparts > mp->lim.max_parts) {
        su_mp_fail(mp, "too many parts");
        return;
    }
    mp->state = SU_MP_HEADERS;
    mp->line_len = 0;
    mp->hdr_bytes = 0;
    mp->nheaders = 0;
    mp->saw_cr = 0;
    mp->headers = apr_table_make(mp->pool, 4);
}

static apr_size_t su_mp_after_delim(su_mp_t *mp, const char *buf, apr_size_t len)
{
    apr_size_t i;

    for (i = 0; i < len; i++) {
        char c = buf[i];

        if (mp->ad == SU_MP_AD_START && c == '-') {
            mp->ad = SU_MP_AD_DASH;
        } else if (mp->ad == SU_MP_AD_DASH) {
            if (c != '-') {
                su_mp_fail(mp, "malformed close delimiter");
                return i;
            }
            su_mp_close(mp);
            return i + 1;
        } else if (mp->ad == SU_MP_AD_CR) {
            if (c != '\n') {
                su_mp_fail(mp, "malformed delimiter line");
                return i;
            }
            su_mp_open(mp);
            return i + 1;
        } else if (c == ' ' || c == '\t') {
            if (++mp->padding > SU_MP_MAX_PADDING) {
                su_mp_fail(mp, "too much padding after delimiter");
                return i;
            }
            mp->ad = SU_MP_AD_PAD;
        } else if (c == '\r') {
            mp->ad = SU_MP_AD_CR;
        } else {
            su_mp_fail(mp, "malformed delimiter line");
            return i;
        }
    }
    return len;
}

/* ---- part headers ---- */

static int su_mp_header_line(su_mp_t *mp)
{
    const char *l = mp->line;
    apr_size_t n = mp->line_len, k = 0, vb, ve, j;
    char *name;

    if (++mp->nheaders > mp->lim.max_headers)
        return su_mp_fail(mp, "too many part headers");
    if (l[0] == ' ' || l[0] == '\t')
        return su_mp_fail(mp, "folded part header");
    while (k < n && su_hdr_is_tchar((unsigned char)l[k]))
        k++;
    if (k == 0 || k == n || l[k] != ':')
        return su_mp_fail(mp, "malformed part header");
    for (vb = k + 1; vb < n && (l[vb] == ' ' || l[vb] == '\t'); vb++)
        ;
    for (ve = n; ve > vb && (l[ve - 1] == ' ' || l[ve - 1] == '\t'); ve--)
        ;
    for (j = vb; j < ve; j++)
        if (!su_hdr_is_field_char((unsigned char)l[j]))
            return su_mp_fail(mp, "invalid character in part header");
    name = apr_pstrmemdup(mp->pool, l, k);
    if (apr_table_get(mp->headers, name) != NULL)
        return su_mp_fail(mp, "duplicate part header");
    apr_table_setn(mp->headers, name, apr_pstrmemdup(mp->pool, l + vb, ve - vb));
    return 0;
}

static int su_mp_cte_ok(const char *cte)
{
    return cte == NULL || strcasecmp(cte, "binary") == 0
        || strcasecmp(cte, "8bit") == 0 || strcasecmp(cte, "7bit") == 0;
}

/* All headers of a part are in: check them and announce the part. */
static void su_mp_begin_part(su_mp_t *mp)
{
    const char *cd, *disp, *name, *filename;
    apr_table_t *params;

    cd = apr_table_get(mp->headers, "Content-Disposition");
    if (cd == NULL) {
        su_mp_fail(mp, "part without Content-Disposition");
        return;
    }
    if (su_hdr_params(mp->pool, cd, &disp, &params) != SU_OK
        || su_hdr_disposition(mp->pool, cd, &disp, &filename) != SU_OK) {
        su_mp_fail(mp, "malformed Content-Disposition");
        return;
    }
    name = apr_table_get(params, "name");
    if (strcmp(disp, "form-data") != 0 || name == NULL) {
        su_mp_fail(mp, "part is not form-data with a name");
        return;
    }
    if (!su_mp_cte_ok(apr_table_get(mp->headers, "Content-Transfer-Encoding"))) {
        su_mp_fail(mp, "unsupported Content-Transfer-Encoding");
        return;
    }
    mp->part.name = name;
    mp->part.filename = filename;
    mp->part.content_type = apr_table_get(mp->headers, "Content-Type");
    mp->part.headers = mp->headers;
    mp->in_part = 1;
    mp->state = SU_MP_BODY;
    mp->matched = 0;
    if (mp->cb.on_part_begin != NULL)
        su_mp_cb_result(mp, mp->cb.on_part_begin(mp->ctx, &mp->part));
}

static apr_size_t su_mp_headers(su_mp_t *mp, const char *buf, apr_size_t len)
{
    apr_size_t i;

    for (i = 0; i < len; i++) {
        char c = buf[i];

        if (++mp->hdr_bytes > mp->lim.max_header_bytes) {
            su_mp_fail(mp, "part headers too large");
            return i;
        }
        if (mp->saw_cr) {
            mp->saw_cr = 0;
            if (c != '\n') {
                su_mp_fail(mp, "CR without LF in part headers");
                return i;
            }
            if (mp->line_len == 0) {
                su_mp_begin_part(mp);
                return i + 1;
            }
            if (su_mp_header_line(mp))
                return i + 1;
            mp->line_len = 0;
        } else if (c == '\r') {
            mp->saw_cr = 1;
        } else if (c == '\n') {
            su_mp_fail(mp, "bare LF in part headers");
            return i;
        } else {
            /* line_len < hdr_bytes <= max_header_bytes: fits */
            mp->line[mp->line_len++] = c;
        }
    }
    return len;
}

/* ---- driving ---- */

su_err_t su_mp_feed(su_mp_t *mp, const char *buf, apr_size_t len)
{
    apr_size_t i = 0;

    if (mp == NULL)
        return SU_ERR_INTERNAL;
    if (mp->err != SU_OK)
        return mp->err;
    if (buf == NULL && len > 0)
        return SU_ERR_INTERNAL;
    while (i < len && mp->err == SU_OK) {
        switch (mp->state) {
        case SU_MP_PREAMBLE:
        case SU_MP_BODY:
            i += su_mp_scan(mp, buf + i, len - i);
            break;
        case SU_MP_AFTER_DELIM:
            i += su_mp_after_delim(mp, buf + i, len - i);
            break;
        case SU_MP_HEADERS:
            i += su_mp_headers(mp, buf + i, len - i);
            break;
        case SU_MP_EPILOGUE:
        default:
            i = len;   /* the epilogue is ignored */
            break;
        }
    }
    return mp->err;
}

su_err_t su_mp_finish(su_mp_t *mp)
{
    if (mp == NULL)
        return SU_ERR_INTERNAL;
    if (mp->err == SU_OK && mp->state != SU_MP_EPILOGUE)
        su_mp_fail(mp, "multipart body ends without close delimiter");
    return mp->err;
}

const char *su_mp_error(const su_mp_t *mp)
{
    if (mp == NULL || mp->msg == NULL)
        return "";
    return mp->msg;
}
