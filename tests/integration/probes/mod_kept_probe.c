/*
 * A test probe, never installed: at the end of each request, the MD5 of
 * the body that mod_request kept (KeptBodySize), as the note "kept_md5"
 * for the access log, or "-" when nothing was kept. It shows whether the
 * kept copy still holds what the client sent once the handler is done.
 */
#include "httpd.h"
#include "http_config.h"
#include "http_protocol.h"
#include "apr_md5.h"
#include "apr_strings.h"

static int kept_probe_log(request_rec *r)
{
    unsigned char d[APR_MD5_DIGESTSIZE];
    char hex[2 * APR_MD5_DIGESTSIZE + 1];
    apr_md5_ctx_t md5;
    apr_bucket *e;
    int i;

    if (r->kept_body == NULL)
        return DECLINED;
    apr_md5_init(&md5);
    for (e = APR_BRIGADE_FIRST(r->kept_body);
         e != APR_BRIGADE_SENTINEL(r->kept_body); e = APR_BUCKET_NEXT(e)) {
        const char *data;
        apr_size_t len;
        if (!APR_BUCKET_IS_METADATA(e)
            && apr_bucket_read(e, &data, &len, APR_BLOCK_READ) == APR_SUCCESS)
            apr_md5_update(&md5, data, len);
    }
    apr_md5_final(d, &md5);
    for (i = 0; i < APR_MD5_DIGESTSIZE; i++)
        apr_snprintf(hex + 2 * i, 3, "%02x", d[i]);
    apr_table_setn(r->notes, "kept_md5", apr_pstrdup(r->pool, hex));
    return DECLINED;
}

static void kept_probe_hooks(apr_pool_t *p)
{
    (void)p;
    ap_hook_log_transaction(kept_probe_log, NULL, NULL, APR_HOOK_FIRST);
}

AP_DECLARE_MODULE(kept_probe) = {
    STANDARD20_MODULE_STUFF, NULL, NULL, NULL, NULL, NULL, kept_probe_hooks
};
