/*
 * Writing a segmented file (su_segw.h), one segment at a time on the
 * caller's thread.
 */
#include <string.h>

#include "su_segw.h"
#include "su_util.h"

struct su_segw {
    su_seg_ctx_t *ctx;
    su_segw_out_fn out;
    void *out_ctx;
    unsigned char header[SU_SEG_HEADER_LEN];
    unsigned char *plain;       /* the segment filling: segsize bytes */
    unsigned char *sealed;      /* a sealed segment on its way out */
    size_t fill;
    size_t sealed_max;
    uint64_t index;
    uint64_t total;
    uint32_t segsize;
    su_err_t err;
    int done;
};

static apr_status_t su_segw_cleanup(void *data)
{
    su_segw_t *w = data;

    su_util_wipe(w->plain, w->segsize);
    return APR_SUCCESS;
}

su_err_t su_segw_create(apr_pool_t *p, const su_kek_t *kek, const char *id,
                        uint32_t segsize, const unsigned char *nonce,
                        su_segw_out_fn out, void *ctx, su_segw_t **wp)
{
    su_segw_t *w = apr_pcalloc(p, sizeof *w);
    su_seg_file_t *f = NULL;
    su_err_t rv;

    *wp = NULL;
    rv = su_seg_create(p, kek, id, segsize, nonce, w->header, &f);
    if (rv == SU_OK)
        rv = su_seg_ctx_create(p, f, &w->ctx);
    if (rv != SU_OK)
        return rv;
    w->out = out;
    w->out_ctx = ctx;
    w->segsize = segsize;
    w->sealed_max = su_seg_stored_len(segsize, segsize, SU_SEG_LAST);
    w->plain = apr_palloc(p, segsize);
    w->sealed = apr_palloc(p, w->sealed_max);
    apr_pool_cleanup_register(p, w, su_segw_cleanup, apr_pool_cleanup_null);
    rv = out(ctx, w->header, SU_SEG_HEADER_LEN);
    if (rv == SU_OK)
        *wp = w;
    return rv;
}

/* Seal the filled segment as flag and send it out. */
static su_err_t su_segw_flush(su_segw_t *w, su_seg_flag_t flag)
{
    size_t n = 0;
    su_err_t rv;

    rv = su_seg_seal(w->ctx, w->index, flag, w->plain, w->fill, w->sealed, &n);
    if (rv == SU_OK)
        rv = w->out(w->out_ctx, w->sealed, n);
    w->index++;
    w->fill = 0;
    return rv;
}

su_err_t su_segw_write(su_segw_t *w, const unsigned char *in, size_t len)
{
    while (len > 0 && w->err == SU_OK) {
        size_t n;
        /* a full segment goes out only once more follows it */
        if (w->fill == w->segsize)
            w->err = su_segw_flush(w, SU_SEG_MORE);
        if (w->err != SU_OK)
            break;
        n = w->segsize - w->fill;
        if (n > len)
            n = len;
        memcpy(w->plain + w->fill, in, n);
        w->fill += n;
        w->total += n;
        in += n;
        len -= n;
    }
    return w->err;
}

su_err_t su_segw_finish(su_segw_t *w)
{
    if (w->err == SU_OK && !w->done) {
        w->err = su_segw_flush(w, SU_SEG_LAST);
        w->done = 1;
    }
    su_util_wipe(w->plain, w->segsize);
    return w->err;
}

uint64_t su_segw_plain_size(const su_segw_t *w)
{
    return w->total;
}

const unsigned char *su_segw_header(const su_segw_t *w)
{
    return w->header;
}
