/*
 * libFuzzer target: the streaming multipart/form-data parser (su_mp.h).
 *
 * Input layout:
 *   byte 0      control: bits 0-1 split mode, bits 2-5 split seed;
 *               bit 6: on_part_begin refuses part 1 or 2 (bit 4);
 *               bit 7: small limits (1-4 parts by bits 2-3, preamble
 *               0 or 8 bytes by bit 4)
 *   bytes 1..   the boundary, up to a '\n' among the next 71 bytes (else
 *               the first 16 bytes); bytes that are not bchars are mapped
 *               onto bchars, an empty boundary becomes "b"
 *   the rest    the body
 *
 * The body is parsed twice: fed whole, then in pieces of sizes drawn from
 * the split mode and seed (zero-length pieces included). Both runs must
 * give the same result: the same error (or none), the same message, the
 * same parts and the same data bytes (compared as a digest of the callback
 * trace). The callbacks check the framing invariants as they go.
 */
#include <string.h>
#include <apr_strings.h>

#include "fz_common.h"
#include "su_mp.h"

static const char fz_bchars[] =
    "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ'()+_,-./:=? ";

typedef struct fz_trace {
    unsigned long long h;
    size_t total;         /* data bytes handed over, all parts */
    size_t body_len;
    int in_part;
    int begins;
    int ends;
    int refuse_at;        /* part number whose begin is refused, or 0 */
    int stopped;          /* a callback returned an error */
    int max_parts;
    const char *delim;    /* "\r\n--boundary" */
    size_t dlen;
    char *pbuf;           /* the current part's data so far */
    size_t plen, pcap;
} fz_trace_t;

#define FZ_REFUSE_ERR SU_ERR_UNSUPPORTED_TYPE

static void fz_hash_str(fz_trace_t *t, const char *s)
{
    if (s == NULL) {
        t->h = fz_fnv(t->h, "\x01", 1);
        return;
    }
    t->h = fz_fnv(t->h, s, strlen(s) + 1);
}

/* A part's data may never hold the delimiter: that is where it had to end. */
static void fz_check_part_data(const fz_trace_t *t)
{
    FZ_CHECK(t->plen < t->dlen || memmem(t->pbuf, t->plen, t->delim, t->dlen) == NULL,
             "part data contains the delimiter");
}

static int fz_on_begin(void *ctx, const su_mp_part_t *part)
{
    fz_trace_t *t = ctx;

    FZ_CHECK(!t->stopped, "callback after a callback error");
    FZ_CHECK(!t->in_part, "part begins inside a part");
    FZ_CHECK(part != NULL && part->name != NULL && part->headers != NULL,
             "part without name or headers");
    FZ_CHECK(apr_table_get(part->headers, "content-disposition") != NULL,
             "part without Content-Disposition");
    t->in_part = 1;
    t->begins++;
    FZ_CHECK(t->begins <= t->max_parts, "more parts than the limit");
    t->plen = 0;
    t->h = fz_fnv(t->h, "B", 1);
    fz_hash_str(t, part->name);
    fz_hash_str(t, part->filename);
    fz_hash_str(t, part->content_type);
    if (t->begins == t->refuse_at) {
        t->stopped = 1;
        return FZ_REFUSE_ERR;
    }
    return 0;
}

static int fz_on_data(void *ctx, const char *buf, apr_size_t len)
{
    fz_trace_t *t = ctx;

    FZ_CHECK(!t->stopped, "callback after a callback error");
    FZ_CHECK(t->in_part, "data outside a part");
    FZ_CHECK(buf != NULL && len > 0, "empty data callback");
    t->total += len;
    FZ_CHECK(t->total <= t->body_len, "more data than body bytes");
    if (t->plen + len > t->pcap) {
        t->pcap = (t->plen + len) * 2;
        t->pbuf = realloc(t->pbuf, t->pcap);
        FZ_CHECK(t->pbuf != NULL, "realloc");
    }
    memcpy(t->pbuf + t->plen, buf, len);
    t->plen += len;
    t->h = fz_fnv(t->h, buf, len);
    return 0;
}

static int fz_on_end(void *ctx)
{
    fz_trace_t *t = ctx;
    unsigned long long n;

    FZ_CHECK(!t->stopped, "callback after a callback error");
    FZ_CHECK(t->in_part, "part end outside a part");
    fz_check_part_data(t);
    t->in_part = 0;
    t->ends++;
    n = t->plen;
    t->h = fz_fnv(t->h, "E", 1);
    t->h = fz_fnv(t->h, &n, sizeof n);
    return 0;
}

static const su_mp_callbacks_t fz_cb = { fz_on_begin, fz_on_data, fz_on_end };

typedef struct fz_result {
    su_err_t rv;
    char msg[128];
    unsigned long long h;
    size_t total;
    int begins, ends;
} fz_result_t;

static unsigned long long fz_rand(unsigned long long *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static size_t fz_piece(int mode, unsigned long long *s, size_t dlen)
{
    switch (mode) {
    case 0:
        return 1;
    case 1:
        return 1 + fz_rand(s) % 8;
    case 2:
        return fz_rand(s) % (dlen + 4);   /* around a delimiter; 0 too */
    default:
        return 1 + fz_rand(s) % 1024;
    }
}

/* After an error the parser stays stopped: no callback, same error. */
static void fz_check_stopped(su_mp_t *mp, fz_trace_t *t, su_err_t rv,
                             const char *rest, size_t n)
{
    unsigned long long h = t->h;

    FZ_CHECK(su_mp_feed(mp, rest, n) == rv, "feed after an error");
    FZ_CHECK(su_mp_finish(mp) == rv, "finish after an error");
    FZ_CHECK(t->h == h, "callback after an error");
}

static void fz_parse(const char *boundary, const su_mp_limits_t *lim,
                     int refuse_at, const char *body, size_t len,
                     int split_mode, unsigned long long seed, fz_result_t *res)
{
    apr_pool_t *p = fz_pool_new();
    fz_trace_t t;
    su_mp_t *mp;
    size_t off = 0;
    su_err_t rv = SU_OK;

    memset(&t, 0, sizeof t);
    t.h = FZ_FNV_INIT;
    t.body_len = len;
    t.refuse_at = refuse_at;
    t.max_parts = lim->max_parts;
    t.delim = apr_pstrcat(p, "\r\n--", boundary, NULL);
    t.dlen = strlen(t.delim);
    mp = su_mp_create(p, boundary, lim, &fz_cb, &t);
    FZ_CHECK(mp != NULL, "su_mp_create refused a valid boundary");

    if (split_mode < 0) {
        rv = su_mp_feed(mp, body, len);
        off = len;
    } else {
        while (off < len && rv == SU_OK) {
            size_t n = fz_piece(split_mode, &seed, t.dlen);
            if (n > len - off)
                n = len - off;
            rv = su_mp_feed(mp, body + off, n);
            off += n;
        }
    }
    if (rv == SU_OK)
        rv = su_mp_finish(mp);
    else
        fz_check_stopped(mp, &t, rv, body + off, len - off);
    if (rv == SU_OK) {
        FZ_CHECK(!t.in_part && t.begins == t.ends && t.begins > 0,
                 "a parsed body left a part open");
    } else {
        FZ_CHECK(su_mp_error(mp) != NULL && su_mp_error(mp)[0] != '\0',
                 "an error without a message");
        if (t.in_part)
            fz_check_part_data(&t);
    }
    FZ_CHECK(rv != FZ_REFUSE_ERR || t.stopped, "callback error not returned");
    FZ_CHECK(!t.stopped || rv == FZ_REFUSE_ERR, "callback error lost");

    res->rv = rv;
    snprintf(res->msg, sizeof res->msg, "%s", su_mp_error(mp));
    res->h = t.h;
    res->total = t.total;
    res->begins = t.begins;
    res->ends = t.ends;
    free(t.pbuf);
    apr_pool_destroy(p);
}

/* The boundary from the input, made of bchars and not ending in a space. */
static size_t fz_boundary(const uint8_t *d, size_t n, char *out)
{
    size_t i, k, nb = sizeof fz_bchars - 1;
    const uint8_t *nl = memchr(d, '\n', n < SU_MP_MAX_BOUNDARY + 1 ? n : SU_MP_MAX_BOUNDARY + 1);
    size_t used;

    if (nl != NULL) {
        k = (size_t)(nl - d);
        used = k + 1;
    } else {
        k = n < 16 ? n : 16;
        used = k;
    }
    for (i = 0; i < k; i++)
        out[i] = memchr(fz_bchars, d[i], nb) != NULL && d[i] != '\0'
                 ? (char)d[i] : fz_bchars[d[i] % nb];
    if (k == 0)
        out[k++] = 'b';
    if (out[k - 1] == ' ')
        out[k - 1] = '_';
    out[k] = '\0';
    return used;
}

static int fz_all_tchar(const char *s)
{
    for (; *s; s++)
        if (strchr("'()+_,-./:=? ", *s) != NULL && strchr("'+_-.", *s) == NULL)
            return 0;
    return 1;
}

/* The same boundary must come back out of a Content-Type value. */
static void fz_check_content_type(const char *boundary)
{
    apr_pool_t *p = fz_pool_new();
    const char *b = NULL;
    const char *ct = apr_psprintf(p, "Multipart/Form-Data; charset=utf-8; BOUNDARY=\"%s\"",
                                  boundary);

    FZ_CHECK(su_mp_boundary(p, ct, &b) == SU_OK && strcmp(b, boundary) == 0,
             "quoted boundary not recovered");
    if (fz_all_tchar(boundary)) {
        ct = apr_psprintf(p, "multipart/form-data;boundary=%s", boundary);
        FZ_CHECK(su_mp_boundary(p, ct, &b) == SU_OK && strcmp(b, boundary) == 0,
                 "token boundary not recovered");
    }
    apr_pool_destroy(p);
}

FZ_INITIALIZE_APR

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char boundary[SU_MP_MAX_BOUNDARY + 2];
    su_mp_limits_t lim;
    fz_result_t whole, split;
    unsigned ctl;
    size_t used;
    const char *body;
    size_t blen;
    int refuse_at;

    if (size < 1)
        return 0;
    ctl = data[0];
    used = fz_boundary(data + 1, size - 1, boundary);
    body = (const char *)data + 1 + used;
    blen = size - 1 - used;

    su_mp_limits_default(&lim);
    if (ctl & 0x80) {
        lim.max_parts = 1 + (int)((ctl >> 2) & 3);
        lim.max_header_bytes = 96;
        lim.max_headers = 3;
        lim.max_preamble = (ctl & 0x10) ? 0 : 8;
    }
    refuse_at = (ctl & 0x40) ? 1 + (int)((ctl >> 4) & 1) : 0;

    fz_check_content_type(boundary);
    fz_parse(boundary, &lim, refuse_at, body, blen, -1, 0, &whole);
    fz_parse(boundary, &lim, refuse_at, body, blen, (int)(ctl & 3),
             0x9e3779b97f4a7c15ULL ^ ((ctl >> 2) & 0xf) ^ ((unsigned long long)blen << 8),
             &split);

    FZ_CHECK(whole.rv == split.rv, "whole and split feeding: different result");
    FZ_CHECK(strcmp(whole.msg, split.msg) == 0, "different error message");
    FZ_CHECK(whole.begins == split.begins && whole.ends == split.ends,
             "different parts");
    FZ_CHECK(whole.total == split.total, "different data length");
    FZ_CHECK(whole.h == split.h, "different callback trace");
    return 0;
}
