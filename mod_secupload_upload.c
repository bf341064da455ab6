/*
 * mod_secupload: the upload handler (SetHandler secupload). Reads the
 * request body brigade by brigade into the core's upload, catches the
 * input filters' own error answers, writes the metadata and answers 201.
 */
#include "httpd.h"
#include "http_config.h"
#include "http_core.h"
#include "http_log.h"
#include "http_protocol.h"
#include "http_request.h"
#include "util_filter.h"

#include <apr_strings.h>
#include <errno.h>

#include "su_json.h"
#include "su_mp.h"
#include "su_store.h"
#include "su_upload.h"
#include "su_util.h"

#include "mod_secupload.h"

/* log lines name the module and obey LogLevel secupload:… (in
 * mod_secupload.c, AP_DECLARE_MODULE does the same) */
APLOG_USE_MODULE(secupload);

#define SU_READ_BYTES           (256 * 1024)
#define SU_FILES_PREFIX         "/api/files/"

/*
 * An HTTP/2 stream answered before the client ended its body is reset
 * (RST_STREAM, NO_ERROR) right after the answer, and some clients (Debian
 * 12's curl 7.88) then report a stream error instead of the answer. A small
 * declared body, refused before any of it was read, is therefore read and
 * dropped first, so the stream ends cleanly; a large one is not worth the
 * time and keeps the reset.
 */
#define SU_DRAIN_MAX ((apr_off_t)64 * 1024)

ap_filter_rec_t *su_body_error_filter;

void su_drain_small_h2(su_req_t *q)
{
    request_rec *r = q->r;
    const char *cl = apr_table_get(r->headers_in, "Content-Length");
    apr_bucket_brigade *bb;
    ap_filter_t *catcher;
    apr_off_t len, seen = 0;
    int eos = 0, caught = 0;

    if (!q->body_untouched || r->proto_num < 2000 || cl == NULL
        || apr_strtoff(&len, cl, NULL, 10) != APR_SUCCESS
        || len < 0 || len > SU_DRAIN_MAX)
        return;
    q->body_untouched = 0;
    /* by hand: ap_discard_request_body was seen to return at once on
     * HTTP/2 streams, without waiting for the body; and behind the filter
     * that catches body errors, so that a body over LimitRequestBody ends
     * the drain instead of replacing the answer with Apache's own page */
    catcher = ap_add_output_filter_handle(su_body_error_filter, &caught, r,
                                          r->connection);
    bb = apr_brigade_create(r->pool, r->connection->bucket_alloc);
    while (!eos && !caught && seen <= SU_DRAIN_MAX) {
        apr_bucket *e;
        if (ap_get_brigade(r->input_filters, bb, AP_MODE_READBYTES,
                           APR_BLOCK_READ, 16384) != APR_SUCCESS)
            break;
        for (e = APR_BRIGADE_FIRST(bb); e != APR_BRIGADE_SENTINEL(bb);
             e = APR_BUCKET_NEXT(e))
            if (APR_BUCKET_IS_EOS(e))
                eos = 1;
        if (apr_brigade_length(bb, 1, &len) != APR_SUCCESS)
            break;
        seen += len;
        apr_brigade_cleanup(bb);
    }
    apr_brigade_destroy(bb);
    ap_remove_output_filter(catcher);
}

/* A declared length above the limit is refused before the body is read. */
static int su_declared_too_large(request_rec *r, const su_dir_conf_t *d,
                                 int multipart)
{
    const char *cl = apr_table_get(r->headers_in, "Content-Length");
    apr_off_t len;
    apr_uint64_t max = su_conf_max_size(d);

    if (cl == NULL || apr_strtoff(&len, cl, NULL, 10) != APR_SUCCESS || len < 0)
        return 0;
    if (multipart)
        return (apr_uint64_t)len > max + SU_FRAMING_SLACK;
    return (apr_uint64_t)len > max;
}

/*
 * Apache's HTTP input filter answers a malformed body (bad chunked coding)
 * or one over LimitRequestBody by itself: it sends an error bucket down the
 * output filters, where the header filter turns it into an HTML page, and
 * then returns AP_FILTER_ERROR to the reader. While the body is read this
 * filter takes that bucket (and the EOS behind it) out of the way and keeps
 * its status, so that the answer is the module's JSON with that status.
 */
apr_status_t su_catch_body_error(ap_filter_t *f, apr_bucket_brigade *bb)
{
    int *caught = f->ctx;
    apr_bucket *e;

    for (e = APR_BRIGADE_FIRST(bb); e != APR_BRIGADE_SENTINEL(bb);
         e = APR_BUCKET_NEXT(e)) {
        if (AP_BUCKET_IS_ERROR(e)) {
            *caught = ((ap_bucket_error *)e->data)->status;
            apr_brigade_cleanup(bb);
            /* ap_pass_brigade marked the EOS behind it as sent; the real
             * answer is still to come (as ap_send_error_response does) */
            f->r->eos_sent = 0;
            /* the input filter hands this on to the reader: it must fail */
            return AP_FILTER_ERROR;
        }
    }
    return ap_pass_brigade(f->next, bb);
}

/* Map an input-filter failure: Apache's own limits, or a client gone. */
su_err_t su_read_error(request_rec *r, apr_status_t rv, int caught,
                       const char **detail)
{
    if (rv == AP_FILTER_ERROR) {
        *detail = caught == HTTP_REQUEST_ENTITY_TOO_LARGE
            ? "the body exceeds LimitRequestBody (Apache's own limit)"
            : apr_psprintf(r->pool, "input filter error %d", caught);
        if (caught == HTTP_REQUEST_ENTITY_TOO_LARGE)
            return SU_ERR_TOO_LARGE;
        return caught >= 500 ? SU_ERR_INTERNAL : SU_ERR_BAD_REQUEST;
    }
    if (rv == APR_ENOSPC) {
        *detail = "request body over LimitRequestBody";
        return SU_ERR_TOO_LARGE;
    }
    if (APR_STATUS_IS_EINVAL(rv) || rv == APR_EGENERAL) {
        *detail = "malformed request body framing";
        return SU_ERR_BAD_REQUEST;
    }
    if (APR_STATUS_IS_TIMEUP(rv)) {
        *detail = "the body came too slowly (Timeout or mod_reqtimeout)";
        return SU_ERR_TIMEOUT;
    }
    *detail = apr_psprintf(r->pool, "client connection failed while reading the "
                           "body (%d)", rv);
    return SU_ERR_ABORTED;
}

/*
 * The plaintext arrives in the core's own socket buffers: heap buckets whose
 * memory goes back to the connection's allocator unwiped, where a core dump
 * of the child would find it. Once the upload has taken a heap bucket's
 * bytes, nothing reads them again, so they are wiped in place. (Other
 * bucket types are not ours to write: a mapped file, another module's
 * memory.)
 */
void su_body_wipe(request_rec *r, apr_bucket *e, const char *data,
                  apr_size_t len)
{
    /* With mod_request's KeptBodySize, the kept copy shares these bytes
     * (apr_bucket_copy): they are not the module's alone to wipe */
    if (APR_BUCKET_IS_HEAP(e) && len > 0 && r->kept_body == NULL)
        su_util_wipe((void *)data, len);
}

/*
 * Every body byte counts against the limit, whatever carries it: a chunked
 * or HTTP/2 body declares no length, and the multipart fields other than
 * the file are no part of the file's size.
 */
static su_err_t su_body_count(apr_uint64_t *seen, apr_size_t len,
                              apr_uint64_t limit, const char **detail)
{
    *seen += len;
    if (*seen <= limit)
        return SU_OK;
    *detail = "the request body exceeds SecUploadMaxSize plus the framing "
              "allowance";
    return SU_ERR_TOO_LARGE;
}

/*
 * Read the body brigade by brigade into the upload, at most limit bytes.
 * Stops at the first error: the connection will be closed, so nothing more
 * needs draining.
 */
static su_err_t su_read_body(request_rec *r, su_upload_t *u, apr_uint64_t limit,
                             const char **detail)
{
    apr_bucket_brigade *bb = apr_brigade_create(r->pool, r->connection->bucket_alloc);
    apr_uint64_t seen = 0;
    int seen_eos = 0, caught = 0;
    ap_filter_t *catcher = ap_add_output_filter_handle(su_body_error_filter, &caught,
                                                       r, r->connection);
    su_err_t err = SU_OK;

    while (!seen_eos) {
        apr_bucket *e;
        apr_status_t rv = ap_get_brigade(r->input_filters, bb, AP_MODE_READBYTES,
                                         APR_BLOCK_READ, SU_READ_BYTES);
        if (rv != APR_SUCCESS || caught) {
            err = su_read_error(r, caught ? AP_FILTER_ERROR : rv, caught, detail);
            break;
        }
        for (e = APR_BRIGADE_FIRST(bb); e != APR_BRIGADE_SENTINEL(bb);
             e = APR_BUCKET_NEXT(e)) {
            const char *data;
            apr_size_t len;

            if (APR_BUCKET_IS_EOS(e)) {
                seen_eos = 1;
                break;
            }
            if (APR_BUCKET_IS_METADATA(e))
                continue;
            rv = apr_bucket_read(e, &data, &len, APR_BLOCK_READ);
            if (rv != APR_SUCCESS) {
                err = su_read_error(r, rv, caught, detail);
                break;
            }
            if (su_body_count(&seen, len, limit, detail) != SU_OK) {
                su_body_wipe(r, e, data, len);
                err = SU_ERR_TOO_LARGE;
                break;
            }
            if (len)
                err = su_upload_feed(u, data, len);
            su_body_wipe(r, e, data, len);
            if (err != SU_OK) {
                *detail = NULL;  /* the upload holds the words for it */
                break;
            }
        }
        apr_brigade_cleanup(bb);
        if (err != SU_OK)
            break;
    }
    apr_brigade_cleanup(bb);
    ap_remove_output_filter(catcher);
    if (r->kept_body)
        ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r, SU_LOGNO(00016)
                      "KeptBodySize (mod_request) keeps a copy of this upload's "
                      "plaintext in memory until the request ends; the module "
                      "leaves that copy intact, unwiped");
    return err;
}

static apr_array_header_t *su_meta(su_req_t *q, const su_upload_info_t *in)
{
    request_rec *r = q->r;
    apr_array_header_t *a = apr_array_make(r->pool, 13, sizeof(su_kv_t));

    su_kv(a, "id", in->id);
    su_kv(a, "name", in->name);
    su_kv(a, "size", apr_psprintf(r->pool, "%" APR_UINT64_T_FMT, in->size));
    su_kv(a, "sha256", in->sha256_hex);
    su_kv(a, "content_type", in->content_type);
    su_kv(a, "key_id", in->key_id_hex);
    su_kv(a, "iv", in->iv_hex);
    su_kv(a, "path", in->relpath);
    su_kv(a, "created", q->time);
    su_kv(a, "client_ip", r->useragent_ip);
    su_kv(a, "user", r->user);
    su_kv(a, "request_id", q->request_id);
    return a;
}

static void su_upload_conf(const su_req_t *q, su_upload_conf_t *uc)
{
    memset(uc, 0, sizeof(*uc));
    uc->kek = APR_ARRAY_IDX(q->srv->keks, 0, const su_kek_t *);
    uc->storage_dir = q->srv->storage_dir;
    uc->max_size = su_conf_max_size(q->dir);
    uc->field_name = su_conf_field_name(q->dir);
    uc->allowed_types = q->dir->allowed_types;
    su_mp_limits_default(&uc->limits);
    uc->sync = su_conf_sync(q->dir);
    uc->format = su_conf_format_version(q->srv);
}

/* The upload failed inside the core: answer with its own words. */
static int su_upload_failed(su_req_t *q, su_upload_t *u, su_err_t rv)
{
    su_upload_discard(u);
    return su_fail(q, rv, SU_EV_UPLOAD_REJECTED, su_upload_message(u),
                   su_upload_detail(u), su_upload_id(u), su_upload_received(u));
}

/*
 * The metadata write failed, or no live connection was found for it (sent
 * is 0: then nothing can have been applied, and there is nothing to settle).
 */
static int su_stored_unavailable(su_req_t *q, const su_commit_t *c, int sent)
{
    const su_upload_info_t *in = c->info;
    /* a copy: settling below may free the connection it lives in */
    const char *why = apr_pstrdup(q->r->pool, q->redis ? su_redis_errstr(q->redis)
                                                       : "no connection");
    c->discard(c->baton);
    if (!sent || su_redis_refused(q->redis))
        su_req_drop_redis(q);   /* nothing applied (a replica refuses all) */
    else if (q->redis && !su_redis_usable(q->redis))
        su_settle_upload(q, in->id, in->size);  /* sent, but was it applied? */
    return su_fail(q, SU_ERR_UNAVAILABLE, SU_EV_UPLOAD_REJECTED, NULL,
                   apr_pstrcat(q->r->pool, "Redis: ", why, NULL), in->id, in->size);
}

/*
 * SecUploadRedisWaitReplicas: the metadata just written must be on that
 * many replicas before the upload may be acknowledged, so that a 201
 * survives the loss of the master. SU_OK if it is (or the setting is off).
 */
static su_err_t su_stored_replicated(su_req_t *q, int *acked, int *want)
{
    su_redis_conf_t rc;

    su_conf_redis(q->srv, &rc);
    *want = rc.wait_replicas;
    *acked = 0;
    if (rc.wait_replicas <= 0)
        return SU_OK;
    if (su_redis_wait(q->redis, q->r->pool, rc.wait_replicas,
                      su_redis_wait_timeout_ms(&rc), acked) != SU_OK)
        return SU_ERR_UNAVAILABLE;
    return *acked >= rc.wait_replicas ? SU_OK : SU_ERR_UNAVAILABLE;
}

/*
 * Too few replicas have the metadata: the upload is taken back as any
 * failure is (the temp file goes, the hash is deleted with the
 * upload.rejected entry) and the answer is 503. Where the delete cannot be
 * made now (the connection broke: a failover under way), it is settled
 * like any unknown outcome: on fresh connections, else from a marker.
 */
static int su_stored_not_replicated(su_req_t *q, const su_commit_t *c, int acked,
                                    int want)
{
    request_rec *r = q->r;
    const su_upload_info_t *in = c->info;
    const char *why = apr_pstrdup(r->pool, su_redis_errstr(q->redis));
    su_err_t rv = SU_ERR_UNAVAILABLE;

    ap_log_rerror(APLOG_MARK, APLOG_WARNING, 0, r, SU_LOGNO(00400)
                  "upload %s: its metadata reached %d of %d Redis replicas in "
                  "time%s%s; the upload is taken back", in->id, acked, want,
                  *why ? ": " : "", why);
    c->discard(c->baton);
    if (su_redis_usable(q->redis))
        rv = su_redis_delete(q->redis, r->pool, in->id,
                             su_audit(q, SU_EV_UPLOAD_REJECTED,
                                      HTTP_SERVICE_UNAVAILABLE, in->id,
                                      su_err_code(SU_ERR_UNAVAILABLE), in->size));
    if (rv != SU_OK && rv != SU_ERR_NOT_FOUND)
        su_settle_upload(q, in->id, in->size);
    return su_fail(q, SU_ERR_UNAVAILABLE, NULL,
                   "The upload could not be replicated in time; try again.",
                   apr_psprintf(r->pool, "Redis replicas: %d of %d", acked, want),
                   in->id, in->size);
}

/*
 * A finished file made a stored one: its metadata and upload.stored entry
 * in one transaction, then the rename (c->commit); any failure takes back
 * what was done (c->discard drops the file). Returns -1 once stored, with
 * nothing answered yet; otherwise the failure's answer. Every way of
 * uploading (one request, or resumable) ends here.
 */
int su_commit_stored(su_req_t *q, const su_commit_t *c, int sync)
{
    request_rec *r = q->r;
    const su_upload_info_t *in = c->info;
    const char *message = NULL, *detail = NULL;
    apr_array_header_t *audit;
    int acked, want;
    su_err_t rv;

    audit = su_audit(q, SU_EV_UPLOAD_STORED, HTTP_CREATED, in->id, "", in->size);
    if (su_req_redis_live(q) != SU_OK)
        return su_stored_unavailable(q, c, 0);
    if (su_redis_store(q->redis, r->pool, in->id, su_meta(q, in), audit) != SU_OK)
        return su_stored_unavailable(q, c, 1);
    if (su_stored_replicated(q, &acked, &want) != SU_OK)
        return su_stored_not_replicated(q, c, acked, want);
    rv = c->commit(c->baton, sync, &message, &detail);
    if (rv != SU_OK) {
        /* the metadata must not outlive the file it describes; the delete
         * writes the upload.rejected entry, so su_fail writes none */
        c->discard(c->baton);
        su_redis_delete(q->redis, r->pool, in->id,
                        su_audit(q, SU_EV_UPLOAD_REJECTED, su_http_status(rv), in->id,
                                 su_err_code(rv), in->size));
        return su_fail(q, rv, NULL, message, detail, in->id, in->size);
    }
    su_stat_add(SU_STAT_STORED, 1);
    su_stat_add(SU_STAT_BYTES_IN, in->size);
    ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r, SU_LOGNO(00021)
                  "upload stored: id %s, %" APR_UINT64_T_FMT " bytes, key %s",
                  in->id, in->size, in->key_id_hex);
    su_note(r, in->id, "stored", &in->size);
    return -1;
}

static su_err_t su_upload_commit_cb(void *baton, int sync, const char **message,
                                    const char **detail)
{
    su_err_t rv = su_upload_commit(baton, sync);

    *message = su_upload_message(baton);
    *detail = su_upload_detail(baton);
    return rv;
}

static void su_upload_discard_cb(void *baton)
{
    su_upload_discard(baton);
}

static int su_stored(su_req_t *q, su_upload_t *u, int sync)
{
    request_rec *r = q->r;
    const su_upload_info_t *in = su_upload_info(u);
    su_commit_t c = { in, su_upload_commit_cb, su_upload_discard_cb, u };
    int rc = su_commit_stored(q, &c, sync);

    if (rc != -1)
        return rc;
    apr_table_setn(r->headers_out, "Location",
                   apr_pstrcat(r->pool, SU_FILES_PREFIX, in->id, NULL));
    return su_respond(r, HTTP_CREATED,
                      su_json_uploaded(r->pool, in->id, in->name, in->size,
                                       in->sha256_hex, in->content_type));
}

int su_handle_upload(su_req_t *q)
{
    request_rec *r = q->r;
    const char *ct = apr_table_get(r->headers_in, "Content-Type");
    int sync = su_conf_sync(q->dir);
    const char *detail = NULL;
    su_upload_conf_t uc;
    su_upload_t *u = NULL;
    su_err_t rv;

    if (r->method_number != M_POST)
        return su_fail(q, SU_ERR_METHOD, SU_EV_UPLOAD_REJECTED,
                       "Only POST is accepted here.",
                       apr_pstrcat(r->pool, "method ", r->method, NULL), NULL, 0);
    if (su_declared_too_large(r, q->dir, ct && !strncasecmp(ct, "multipart/", 10)))
        return su_fail(q, SU_ERR_TOO_LARGE, SU_EV_UPLOAD_REJECTED,
                       su_upload_limit_message(r->pool, su_conf_max_size(q->dir)),
                       "declared Content-Length over SecUploadMaxSize", NULL, 0);
    /* fail fast, before a large body is read, when Redis is down; but do not
     * hold the connection while the body arrives: it would sit idle for as
     * long as the client takes (and pin a pooled connection meanwhile) */
    if (su_req_redis(q) != SU_OK)
        return su_fail(q, SU_ERR_UNAVAILABLE, SU_EV_UPLOAD_REJECTED, NULL,
                       "Redis unavailable", NULL, 0);
    su_req_drop_redis(q);

    su_upload_conf(q, &uc);
    rv = su_upload_begin(r->pool, &uc, ct,
                         apr_table_get(r->headers_in, "Content-Disposition"),
                         apr_table_get(r->headers_in, "Content-Digest"),
                         apr_table_get(r->headers_in, "Repr-Digest"), &u);
    if (rv != SU_OK)
        return su_upload_failed(q, u, rv);

    q->body_untouched = 0;
    rv = su_read_body(r, u, su_conf_max_size(q->dir) + SU_FRAMING_SLACK, &detail);
    if (rv != SU_OK && detail == NULL)
        return su_upload_failed(q, u, rv);
    if (rv != SU_OK) {
        su_upload_discard(u);
        return su_fail(q, rv, SU_EV_UPLOAD_REJECTED, NULL, detail,
                       su_upload_id(u), su_upload_received(u));
    }
    rv = su_upload_finish(u, sync);
    if (rv != SU_OK)
        return su_upload_failed(q, u, rv);
    return su_stored(q, u, sync);
}
