/*
 * mod_secupload: resumable uploads, the tus 1.0 protocol (docs/tus.md):
 * core, creation, creation-with-upload, termination, expiration and
 * checksum, at a location of its own (SetHandler secupload-tus,
 * SecUploadEnable tus). What an upload keeps between its requests is
 * ciphertext on disk (src/su_tus.c) and its state in Redis
 * (src/su_tus_state.c), so any process of any node goes on with it. A
 * finished upload is stored as a one-shot upload is (su_commit_stored):
 * same metadata, audit entry and settling. Unfinished uploads expire; a
 * mod_watchdog callback removes them.
 */
#include "httpd.h"
#include "http_config.h"
#include "http_core.h"
#include "http_log.h"
#include "http_protocol.h"
#include "http_request.h"
#include "mod_watchdog.h"
#include "util_filter.h"

#include <apr_date.h>
#include <apr_lib.h>
#include <apr_optional.h>
#include <apr_strings.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "su_hdr.h"
#include "su_json.h"
#include "su_key.h"
#include "su_store.h"
#include "su_tus.h"
#include "su_tus_state.h"
#include "su_upload.h"
#include "su_util.h"

#include "mod_secupload.h"

APLOG_USE_MODULE(secupload);

#define SU_TUS_VERSION     SU_HDR_TUS_VERSION
#define SU_TUS_EXTENSIONS  "creation,creation-with-upload,termination,expiration,checksum"
#define SU_TUS_CHECKSUMS   "sha1,sha256,sha512"
#define SU_TUS_CTYPE       "application/offset+octet-stream"
#define SU_TUS_METHODS     "POST, HEAD, PATCH, DELETE, OPTIONS"
#define SU_TUS_FILES       "/api/files/"
#define SU_TUS_READ_BYTES  (256 * 1024)
/* one request at a time per upload: the lock's time, renewed at a third */
#define SU_TUS_LOCK_MS     30000
/* a finished upload's state, kept for a HEAD after a lost answer */
#define SU_TUS_DONE_MS     ((apr_int64_t)3600 * 1000)
#define SU_TUS_EXPIRY_NAME "_secupload_tus_expiry_"
#define SU_TUS_EXPIRY_BATCH 100
#define HTTP_TUS_CHECKSUM_MISMATCH 460

/* One request on one upload. */
typedef struct su_tus_req {
    su_req_t *q;
    const char *id;
    const char *token;            /* of the lock, once held */
    su_tus_state_t st;
    su_tus_t *t;
    apr_time_t renewed;
    const EVP_MD *ck_md;          /* Upload-Checksum */
    unsigned char ck_want[EVP_MAX_MD_SIZE];
    int ck_len;
    EVP_MD_CTX *ck;
} su_tus_req_t;

/* ---- answers ---- */

static int su_tus_empty(request_rec *r, int status)
{
    apr_table_setn(r->headers_out, "Cache-Control", "no-store");
    r->status = status;
    return OK;
}

/*
 * A refusal the protocol names, with no su_err_t of its own (409, 410,
 * 412, 423, 460): the same JSON error body, log line and audit entry
 * (audit: for refusals of a body) as su_fail gives the others.
 */
static int su_tus_refuse(su_req_t *q, int status, const char *code,
                         const char *message, const char *id, int audit)
{
    request_rec *r = q->r;
    apr_table_t *t = apr_table_make(r->pool, 4);

    ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r, SU_LOGNO(00460)
                  "resumable upload %s: %d %s: %s", id ? id : "-", status,
                  code, message);
    su_note(r, id, code, NULL);
    if (audit)
        su_audit_only(q, su_audit(q, SU_EV_UPLOAD_REJECTED, status, id, code, 0));
    if (q->body_unread) {
        su_drain_small_h2(q);
        r->connection->keepalive = AP_CONN_CLOSE;
    }
    apr_table_setn(t, "status", "error");
    apr_table_setn(t, "code", code);
    apr_table_setn(t, "message", message);
    apr_table_setn(t, "request_id", q->request_id);
    apr_table_setn(r->headers_out, "X-Request-Id", q->request_id);
    /* a status Apache does not know would be sent as 500 */
    if (status == HTTP_TUS_CHECKSUM_MISMATCH)
        r->status_line = "460 Checksum Mismatch";
    return su_respond(r, status, su_json_table(r->pool, t, NULL, NULL));
}

static void su_tus_expires_header(request_rec *r, apr_int64_t ms)
{
    char *date = apr_palloc(r->pool, APR_RFC822_DATE_LEN);

    if (apr_rfc822_date(date, (apr_time_t)ms * 1000) == APR_SUCCESS)
        apr_table_setn(r->headers_out, "Upload-Expires", date);
}

static void su_tus_offset_header(request_rec *r, apr_uint64_t offset)
{
    apr_table_setn(r->headers_out, "Upload-Offset",
                   apr_psprintf(r->pool, "%" APR_UINT64_T_FMT, offset));
}

/* ---- what a request says ---- */

/* A header's whole decimal number; 0 if absent or not one. */
static int su_tus_number(request_rec *r, const char *h, apr_uint64_t *out)
{
    return su_hdr_tus_number(apr_table_get(r->headers_in, h), out);
}

/* Upload-Checksum: "algorithm base64". 0 if malformed or not supported. */
static int su_tus_checksum(su_tus_req_t *tq, const char *v)
{
    su_digest_t d;

    if (su_hdr_tus_checksum(v, &d) != SU_OK)
        return 0;
    tq->ck_md = d.alg == SU_DIGEST_SHA1 ? EVP_sha1()
                : d.alg == SU_DIGEST_SHA256 ? EVP_sha256() : EVP_sha512();
    memcpy(tq->ck_want, d.value, d.len);
    tq->ck_len = (int)d.len;
    return 1;
}

static apr_status_t su_tus_ck_cleanup(void *data)
{
    EVP_MD_CTX_free(data);
    return APR_SUCCESS;
}

static int su_tus_ck_start(su_tus_req_t *tq)
{
    if (tq->ck_md == NULL)
        return 1;
    tq->ck = EVP_MD_CTX_new();
    if (tq->ck == NULL)
        return 0;
    apr_pool_cleanup_register(tq->q->r->pool, tq->ck, su_tus_ck_cleanup,
                              apr_pool_cleanup_null);
    return EVP_DigestInit_ex(tq->ck, tq->ck_md, NULL) == 1;
}

static int su_tus_ck_matches(su_tus_req_t *tq)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;

    if (tq->ck == NULL)
        return 1;
    return EVP_DigestFinal_ex(tq->ck, md, &n) == 1 && (int)n == tq->ck_len
           && CRYPTO_memcmp(md, tq->ck_want, n) == 0;
}

/* ---- OPTIONS and HEAD ---- */

static int su_tus_options(su_req_t *q)
{
    request_rec *r = q->r;

    apr_table_setn(r->headers_out, "Tus-Version", SU_TUS_VERSION);
    apr_table_setn(r->headers_out, "Tus-Extension", SU_TUS_EXTENSIONS);
    apr_table_setn(r->headers_out, "Tus-Checksum-Algorithm", SU_TUS_CHECKSUMS);
    apr_table_setn(r->headers_out, "Tus-Max-Size",
                   apr_psprintf(r->pool, "%" APR_UINT64_T_FMT,
                                su_conf_max_size(q->dir)));
    apr_table_setn(r->headers_out, "Allow", SU_TUS_METHODS);
    su_note(r, NULL, "options", NULL);
    return su_tus_empty(r, HTTP_NO_CONTENT);
}

static int su_tus_not_mine(su_req_t *q, const su_tus_state_t *st)
{
    const char *user = q->r->user ? q->r->user : "";
    return st->user && *st->user && strcmp(st->user, user) != 0;
}

static int su_tus_expired(const su_tus_state_t *st)
{
    return !st->done && st->expires_ms <= apr_time_as_msec(apr_time_now());
}

/* The state of an upload a request may see, or its refusal (> 0). */
static int su_tus_visible(su_req_t *q, const char *id, su_tus_state_t *st,
                          su_err_t rv)
{
    if (rv == SU_ERR_UNAVAILABLE)
        return su_fail(q, rv, NULL, NULL, "Redis unavailable", id, 0);
    if (rv == SU_ERR_NOT_FOUND || su_tus_not_mine(q, st))
        return su_fail(q, SU_ERR_NOT_FOUND, NULL, "No such upload.", NULL, id, 0);
    if (su_tus_expired(st))
        return su_tus_refuse(q, HTTP_GONE, "expired", "This upload has expired.",
                             id, 0);
    return -1;
}

static int su_tus_head(su_req_t *q, const char *id)
{
    request_rec *r = q->r;
    su_tus_state_t st;
    su_err_t rv = su_req_redis(q);
    int rc;

    if (rv == SU_OK)
        rv = su_tus_state_get(q->redis, r->pool, id, &st);
    if ((rc = su_tus_visible(q, id, &st, rv)) != -1)
        return rc;
    su_tus_offset_header(r, st.offset);
    apr_table_setn(r->headers_out, "Upload-Length",
                   apr_psprintf(r->pool, "%" APR_UINT64_T_FMT, st.length));
    if (st.metadata && *st.metadata)
        apr_table_setn(r->headers_out, "Upload-Metadata", st.metadata);
    if (!st.done)
        su_tus_expires_header(r, st.expires_ms);
    else
        apr_table_setn(r->headers_out, "X-Secupload-Id", id);
    su_note(r, id, "head", &st.offset);
    return su_tus_empty(r, HTTP_OK);
}

/* ---- the lock ---- */

static int su_tus_lock(su_tus_req_t *tq)
{
    su_req_t *q = tq->q;
    char token[SU_ID_HEX_LEN + 1];
    int locked = 0, rc;
    su_err_t rv;

    if (su_store_new_id(token) != SU_OK)
        return su_fail(q, SU_ERR_INTERNAL, NULL, NULL, "the random generator failed",
                       tq->id, 0);
    rv = su_req_redis(q);
    if (rv == SU_OK)
        rv = su_tus_state_lock(q->redis, q->r->pool, tq->id, token, SU_TUS_LOCK_MS,
                               &tq->st, &locked);
    if (rv == SU_OK && locked)
        return su_tus_refuse(q, HTTP_LOCKED, "locked", "Another request is "
                             "writing to this upload.", tq->id, 0);
    if ((rc = su_tus_visible(q, tq->id, &tq->st, rv)) != -1) {
        if (rv == SU_OK)
            su_tus_state_unlock(q->redis, q->r->pool, tq->id, token);
        return rc;
    }
    tq->token = apr_pstrdup(q->r->pool, token);
    tq->renewed = apr_time_now();
    return -1;
}

static void su_tus_unlock(su_tus_req_t *tq)
{
    if (tq->token && su_req_redis(tq->q) == SU_OK)
        su_tus_state_unlock(tq->q->redis, tq->q->r->pool, tq->id, tq->token);
    tq->token = NULL;
}

/* Still ours? Asked again well before the lock's time is up, so that no
 * other request can have taken it while this one writes. */
static su_err_t su_tus_keep_lock(su_tus_req_t *tq)
{
    su_req_t *q = tq->q;
    su_err_t rv;

    if (apr_time_now() - tq->renewed < apr_time_from_msec(SU_TUS_LOCK_MS / 3))
        return SU_OK;
    rv = su_req_redis(q);
    if (rv == SU_OK)
        rv = su_tus_state_renew(q->redis, q->r->pool, tq->id, tq->token,
                                SU_TUS_LOCK_MS);
    su_req_drop_redis(q);
    if (rv == SU_OK)
        tq->renewed = apr_time_now();
    return rv;
}

/* ---- the body ---- */

static su_err_t su_tus_take(su_tus_req_t *tq, const char *data, apr_size_t len,
                            const char **detail)
{
    su_err_t rv;

    if (tq->ck && EVP_DigestUpdate(tq->ck, data, len) != 1) {
        *detail = "digest computation failed";
        return SU_ERR_INTERNAL;
    }
    rv = su_tus_feed(tq->t, (const unsigned char *)data, len, detail);
    if (rv == SU_OK && su_tus_keep_lock(tq) != SU_OK) {
        *detail = "the upload's lock was lost (Redis failing)";
        return SU_ERR_UNAVAILABLE;
    }
    return rv;
}

static su_err_t su_tus_brigade(su_tus_req_t *tq, apr_bucket_brigade *bb,
                               int caught, int *eos, const char **detail)
{
    request_rec *r = tq->q->r;
    apr_bucket *e;

    for (e = APR_BRIGADE_FIRST(bb); e != APR_BRIGADE_SENTINEL(bb);
         e = APR_BUCKET_NEXT(e)) {
        const char *data;
        apr_size_t len;
        apr_status_t st;
        su_err_t rv;

        if (APR_BUCKET_IS_EOS(e)) {
            *eos = 1;
            return SU_OK;
        }
        if (APR_BUCKET_IS_METADATA(e))
            continue;
        st = apr_bucket_read(e, &data, &len, APR_BLOCK_READ);
        if (st != APR_SUCCESS)
            return su_read_error(r, st, caught, detail);
        rv = len ? su_tus_take(tq, data, len, detail) : SU_OK;
        su_body_wipe(r, e, data, len);
        if (rv != SU_OK)
            return rv;
    }
    return SU_OK;
}

/* The body into the upload, up to its end or the first error. */
static su_err_t su_tus_read_body(su_tus_req_t *tq, const char **detail)
{
    request_rec *r = tq->q->r;
    apr_bucket_brigade *bb = apr_brigade_create(r->pool, r->connection->bucket_alloc);
    int eos = 0, caught = 0;
    ap_filter_t *catcher = ap_add_output_filter_handle(su_body_error_filter, &caught,
                                                       r, r->connection);
    su_err_t rv = SU_OK;

    tq->q->body_untouched = 0;
    while (rv == SU_OK && !eos) {
        apr_status_t st = ap_get_brigade(r->input_filters, bb, AP_MODE_READBYTES,
                                         APR_BLOCK_READ, SU_TUS_READ_BYTES);
        if (st != APR_SUCCESS || caught)
            rv = su_read_error(r, caught ? AP_FILTER_ERROR : st, caught, detail);
        else
            rv = su_tus_brigade(tq, bb, caught, &eos, detail);
        apr_brigade_cleanup(bb);
    }
    ap_remove_output_filter(catcher);
    if (rv == SU_OK)
        tq->q->body_unread = 0;
    return rv;
}

/* ---- storing what arrived ---- */

/* The offset and pending segment recorded: the request's bytes are kept. */
static su_err_t su_tus_save(su_tus_req_t *tq, apr_int64_t expires_ms,
                            const char **detail)
{
    su_req_t *q = tq->q;
    const unsigned char *tail;
    size_t taillen;
    su_err_t rv = su_tus_pause(tq->t, su_conf_sync(q->dir), &tail, &taillen, detail);

    if (rv != SU_OK)
        return rv;
    if (su_req_redis_live(q) != SU_OK) {
        *detail = "Redis unavailable";
        return SU_ERR_UNAVAILABLE;
    }
    /* on failure the file is left as it is: if the write was not applied,
     * the next request cuts it back to the offset recorded; if it was, the
     * file is what the new offset says */
    rv = su_tus_state_save(q->redis, q->r->pool, tq->id, tq->token, tq->st.offset,
                           su_tus_offset(tq->t), tail, taillen, expires_ms);
    if (rv != SU_OK)
        *detail = rv == SU_ERR_NOT_FOUND ? "the upload's lock was lost"
                                         : "Redis failed";
    return rv == SU_OK ? SU_OK : SU_ERR_UNAVAILABLE;
}

static su_err_t su_tus_commit_cb(void *baton, int sync, const char **message,
                                 const char **detail)
{
    su_tus_req_t *tq = baton;
    su_err_t rv = su_tus_commit(tq->t, sync, detail);

    *message = NULL;
    return rv;
}

static void su_tus_discard_cb(void *baton)
{
    su_tus_req_t *tq = baton;
    const char *err = NULL;

    su_tus_remove(tq->q->r->pool, tq->q->srv->storage_dir, tq->id, 0, &err);
    apr_file_remove(su_store_path(tq->q->r->pool, tq->q->srv->storage_dir, tq->id),
                    tq->q->r->pool);
}

/* The last byte arrived: verified, stored as a one-shot upload is. */
static int su_tus_complete(su_tus_req_t *tq)
{
    su_req_t *q = tq->q;
    request_rec *r = q->r;
    int sync = su_conf_sync(q->dir), rc;
    const char *detail = NULL;
    apr_time_t t0 = apr_time_now();
    su_upload_info_t *info = apr_pcalloc(r->pool, sizeof(*info));
    su_commit_t c = { info, su_tus_commit_cb, su_tus_discard_cb, tq };
    su_err_t rv = su_tus_finish(tq->t, sync, info, &detail);

    if (rv != SU_OK)
        return su_fail(q, rv, SU_EV_UPLOAD_REJECTED, NULL, detail, tq->id,
                       tq->st.length);
    ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, r, SU_LOGNO(00462)
                  "resumable upload %s verified whole in %" APR_TIME_T_FMT " ms",
                  tq->id, apr_time_as_msec(apr_time_now() - t0));
    info->name = su_hdr_safe_name(r->pool, tq->st.name ? tq->st.name : "");
    info->content_type = tq->st.type;
    rc = su_commit_stored(q, &c, sync);
    if (rc != -1) {
        /* the file is gone: so is the upload */
        if (su_req_redis(q) == SU_OK)
            su_tus_state_delete(q->redis, r->pool, tq->id);
        tq->token = NULL;
        return rc;
    }
    if (su_req_redis(q) == SU_OK)
        su_tus_state_done(q->redis, r->pool, tq->id, tq->st.length, SU_TUS_DONE_MS);
    tq->token = NULL;
    apr_table_setn(r->headers_out, "X-Secupload-Id", tq->id);
    apr_table_setn(r->headers_out, "Content-Location",
                   apr_pstrcat(r->pool, SU_TUS_FILES, tq->id, NULL));
    su_tus_offset_header(r, tq->st.length);
    return -1;
}

/* A body that failed part way: what arrived whole is kept, unless the
 * client asked for a checksum (then nothing of it can be trusted). */
static int su_tus_body_failed(su_tus_req_t *tq, su_err_t rv, const char *detail,
                              apr_int64_t expires_ms)
{
    su_req_t *q = tq->q;
    const char *err = NULL;

    if (rv == SU_ERR_ABORTED || rv == SU_ERR_TIMEOUT) {
        if (tq->ck == NULL && su_tus_offset(tq->t) > tq->st.offset
            && su_tus_save(tq, expires_ms, &err) == SU_OK)
            ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, q->r, SU_LOGNO(00464)
                          "resumable upload %s cut at offset %" APR_UINT64_T_FMT
                          ": the bytes received are kept", tq->id,
                          su_tus_offset(tq->t));
        else
            su_tus_undo(tq->t, &err);
    } else {
        su_tus_undo(tq->t, &err);
    }
    return su_fail(q, rv, SU_EV_UPLOAD_REJECTED, rv == SU_ERR_TOO_LARGE
                   ? "The body goes past the upload's length." : NULL,
                   detail, tq->id, su_tus_offset(tq->t) - tq->st.offset);
}

/*
 * The body of a PATCH (or of a creation with upload) appended, under the
 * lock: kept whole, or not at all. -1 when answered not yet (the caller
 * sends 204 or 201).
 */
static int su_tus_append(su_tus_req_t *tq)
{
    su_req_t *q = tq->q;
    request_rec *r = q->r;
    apr_int64_t expires_ms = apr_time_as_msec(apr_time_now())
                             + su_conf_tus_expire(q->dir) * 1000;
    const char *detail = NULL;
    su_err_t rv;

    rv = su_tus_open(r->pool, (const su_kek_t *const *)q->srv->keks->elts,
                     q->srv->keks->nelts, q->srv->storage_dir, tq->id,
                     tq->st.length, tq->st.offset, tq->st.tail, tq->st.taillen,
                     &tq->t, &detail);
    if (rv != SU_OK)
        return su_fail(q, rv == SU_ERR_NOT_FOUND ? SU_ERR_INTERNAL : rv,
                       SU_EV_UPLOAD_REJECTED, NULL, detail, tq->id, 0);
    if (!su_tus_ck_start(tq))
        return su_fail(q, SU_ERR_INTERNAL, NULL, NULL, "digest start failed",
                       tq->id, 0);
    su_req_drop_redis(q);   /* not held while the body arrives */
    rv = su_tus_read_body(tq, &detail);
    if (rv != SU_OK)
        return su_tus_body_failed(tq, rv, detail, expires_ms);
    if (!su_tus_ck_matches(tq)) {
        su_tus_undo(tq->t, &detail);
        return su_tus_refuse(q, HTTP_TUS_CHECKSUM_MISMATCH, "checksum_mismatch",
                             "Upload-Checksum does not match the body.", tq->id, 1);
    }
    if (su_tus_offset(tq->t) == tq->st.length)
        return su_tus_complete(tq);
    if ((rv = su_tus_save(tq, expires_ms, &detail)) != SU_OK)
        return su_fail(q, rv, SU_EV_UPLOAD_REJECTED, NULL, detail, tq->id, 0);
    su_tus_offset_header(r, su_tus_offset(tq->t));
    su_tus_expires_header(r, expires_ms);
    return -1;
}

/* ---- PATCH ---- */

static int su_tus_patch_checks(su_tus_req_t *tq, apr_uint64_t offset)
{
    su_req_t *q = tq->q;
    request_rec *r = q->r;
    const char *ck = apr_table_get(r->headers_in, "Upload-Checksum");
    apr_uint64_t cl;

    if (offset != tq->st.offset)
        return su_tus_refuse(q, HTTP_CONFLICT, "offset_mismatch", apr_psprintf(
                             r->pool, "Upload-Offset is not the upload's offset "
                             "(%" APR_UINT64_T_FMT ").", tq->st.offset), tq->id, 1);
    if (su_tus_number(r, "Content-Length", &cl) && cl > tq->st.length - offset)
        return su_fail(q, SU_ERR_TOO_LARGE, SU_EV_UPLOAD_REJECTED,
                       "The body goes past the upload's length.",
                       "declared Content-Length past Upload-Length", tq->id, 0);
    if (ck && !su_tus_checksum(tq, ck))
        return su_fail(q, SU_ERR_BAD_REQUEST, SU_EV_UPLOAD_REJECTED,
                       "Malformed Upload-Checksum, or an algorithm not supported "
                       "(" SU_TUS_CHECKSUMS ").", NULL, tq->id, 0);
    return -1;
}

static int su_tus_patch_locked(su_tus_req_t *tq, apr_uint64_t offset)
{
    request_rec *r = tq->q->r;
    apr_uint64_t cl = 1;
    int rc;

    if (tq->st.done && offset == tq->st.length
        && su_tus_number(r, "Content-Length", &cl) && cl == 0) {
        /* the last PATCH again, after its answer was lost */
        su_tus_offset_header(r, tq->st.length);
        apr_table_setn(r->headers_out, "X-Secupload-Id", tq->id);
        return su_tus_empty(r, HTTP_NO_CONTENT);
    }
    if ((rc = su_tus_patch_checks(tq, offset)) != -1)
        return rc;
    if ((rc = su_tus_append(tq)) != -1)
        return rc;
    su_note(r, tq->id, "patched", NULL);
    return su_tus_empty(r, HTTP_NO_CONTENT);
}

static int su_tus_is_ctype(request_rec *r)
{
    const char *ct = apr_table_get(r->headers_in, "Content-Type");
    size_t n = strlen(SU_TUS_CTYPE);

    return ct && strncasecmp(ct, SU_TUS_CTYPE, n) == 0
           && (ct[n] == '\0' || ct[n] == ';' || ct[n] == ' ');
}

static int su_tus_patch(su_req_t *q, const char *id)
{
    request_rec *r = q->r;
    su_tus_req_t *tq = apr_pcalloc(r->pool, sizeof(*tq));
    apr_uint64_t offset;
    int rc;

    tq->q = q;
    tq->id = id;
    if (!su_tus_is_ctype(r))
        return su_fail(q, SU_ERR_UNSUPPORTED_TYPE, SU_EV_UPLOAD_REJECTED,
                       "A PATCH carries Content-Type: " SU_TUS_CTYPE ".", NULL, id, 0);
    if (!su_tus_number(r, "Upload-Offset", &offset))
        return su_fail(q, SU_ERR_BAD_REQUEST, SU_EV_UPLOAD_REJECTED,
                       "Upload-Offset is missing or not a number.", NULL, id, 0);
    if ((rc = su_tus_lock(tq)) != -1)
        return rc;
    rc = su_tus_patch_locked(tq, offset);
    su_tus_unlock(tq);
    return rc;
}

/* ---- POST: creation (with upload) ---- */

static int su_tus_type_allowed(const su_dir_conf_t *d, const char *type)
{
    const apr_array_header_t *a = d->allowed_types;
    int i;

    for (i = 0; a && i < a->nelts; i++)
        if (su_hdr_type_matches(type, APR_ARRAY_IDX(a, i, const char *)))
            return 1;
    return a == NULL || a->nelts == 0;
}

/* Name, type and length as a one-shot upload checks them. */
static int su_tus_creation_checks(su_req_t *q, su_tus_state_t *st)
{
    request_rec *r = q->r;
    const char *md = apr_table_get(r->headers_in, "Upload-Metadata");
    const char *name = "", *type = NULL, *media = NULL;

    if (apr_table_get(r->headers_in, "Upload-Defer-Length")
        || apr_table_get(r->headers_in, "Upload-Concat"))
        return su_fail(q, SU_ERR_BAD_REQUEST, SU_EV_UPLOAD_REJECTED,
                       "Upload-Defer-Length and Upload-Concat are not supported.",
                       NULL, NULL, 0);
    if (!su_tus_number(r, "Upload-Length", &st->length))
        return su_fail(q, SU_ERR_BAD_REQUEST, SU_EV_UPLOAD_REJECTED,
                       "Upload-Length is missing or not a number.", NULL, NULL, 0);
    if (st->length > su_conf_max_size(q->dir))
        return su_fail(q, SU_ERR_TOO_LARGE, SU_EV_UPLOAD_REJECTED,
                       su_upload_limit_message(r->pool, su_conf_max_size(q->dir)),
                       "Upload-Length over SecUploadMaxSize", NULL, 0);
    if (md && su_hdr_tus_metadata(r->pool, md, &name, &type) != SU_OK)
        return su_fail(q, SU_ERR_BAD_REQUEST, SU_EV_UPLOAD_REJECTED,
                       "Malformed Upload-Metadata.", NULL, NULL, 0);
    if (type == NULL || *type == '\0')
        type = "application/octet-stream";
    if (su_hdr_valid_type(r->pool, type, &media) != SU_OK)
        return su_fail(q, SU_ERR_BAD_REQUEST, SU_EV_UPLOAD_REJECTED,
                       "Malformed filetype in Upload-Metadata.", NULL, NULL, 0);
    if (!su_tus_type_allowed(q->dir, media))
        return su_fail(q, SU_ERR_UNSUPPORTED_TYPE, SU_EV_UPLOAD_REJECTED,
                       apr_psprintf(r->pool, "Files of type %s are not accepted "
                                    "here.", media), NULL, NULL, 0);
    st->name = name;   /* su_hdr_tus_metadata's: a safe name */
    st->type = type;
    st->metadata = md;
    return -1;
}

/* The new upload's file and state (nothing of either left on failure). */
static int su_tus_begin(su_tus_req_t *tq)
{
    su_req_t *q = tq->q;
    request_rec *r = q->r;
    const su_kek_t *kek = APR_ARRAY_IDX(q->srv->keks, 0, const su_kek_t *);
    char *id = apr_palloc(r->pool, SU_ID_HEX_LEN + 1);
    const char *err = NULL;
    su_err_t rv;

    if (su_req_redis(q) != SU_OK)
        return su_fail(q, SU_ERR_UNAVAILABLE, NULL, NULL, "Redis unavailable",
                       NULL, 0);
    if (su_store_new_id(id) != SU_OK)
        return su_fail(q, SU_ERR_INTERNAL, NULL, NULL, "the random generator failed",
                       NULL, 0);
    tq->id = id;
    rv = su_tus_create(r->pool, kek, q->srv->storage_dir, id, SU_SEG_SIZE_DEFAULT,
                       su_conf_sync(q->dir), &err);
    if (rv != SU_OK)
        return su_fail(q, rv, SU_EV_UPLOAD_REJECTED, NULL, err, id, 0);
    tq->st.expires_ms = apr_time_as_msec(apr_time_now())
                        + su_conf_tus_expire(q->dir) * 1000;
    tq->st.created = q->time;
    tq->st.client_ip = r->useragent_ip;
    tq->st.user = r->user;
    tq->st.request_id = q->request_id;
    if (su_req_redis_live(q) != SU_OK
        || su_tus_state_create(q->redis, r->pool, id, &tq->st) != SU_OK) {
        const char *why = apr_pstrdup(r->pool, q->redis ? su_redis_errstr(q->redis)
                                                       : "no connection");
        su_tus_remove(r->pool, q->srv->storage_dir, id, 0, &err);
        return su_fail(q, SU_ERR_UNAVAILABLE, NULL, NULL,
                       apr_pstrcat(r->pool, "Redis: cannot record the new "
                                   "upload: ", why, NULL), id, 0);
    }
    su_audit_only(q, su_audit(q, SU_EV_UPLOAD_CREATED, HTTP_CREATED, id, "",
                              tq->st.length));
    ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r, SU_LOGNO(00461)
                  "resumable upload created: id %s, %" APR_UINT64_T_FMT " bytes",
                  id, tq->st.length);
    return -1;
}

/* With a body (creation-with-upload), or empty (done at once). */
static int su_tus_first_bytes(su_tus_req_t *tq)
{
    request_rec *r = tq->q->r;
    apr_uint64_t cl = 0;
    int with_body = su_tus_is_ctype(r)
        && (!su_tus_number(r, "Content-Length", &cl) || cl > 0);
    int rc;

    if (!with_body && tq->st.length > 0)
        return -1;
    if ((rc = su_tus_lock(tq)) != -1)
        return rc;
    rc = su_tus_patch_checks(tq, 0);
    if (rc == -1)
        rc = su_tus_append(tq);
    su_tus_unlock(tq);
    return rc;
}

static int su_tus_post(su_req_t *q)
{
    request_rec *r = q->r;
    su_tus_req_t *tq = apr_pcalloc(r->pool, sizeof(*tq));
    apr_uint64_t cl;
    int rc;

    tq->q = q;
    if ((rc = su_tus_creation_checks(q, &tq->st)) != -1)
        return rc;
    if (su_tus_is_ctype(r) && su_tus_number(r, "Content-Length", &cl)
        && cl > tq->st.length)
        return su_fail(q, SU_ERR_TOO_LARGE, SU_EV_UPLOAD_REJECTED,
                       "The body goes past the upload's length.",
                       "declared Content-Length past Upload-Length", NULL, 0);
    if ((rc = su_tus_begin(tq)) != -1)
        return rc;
    if ((rc = su_tus_first_bytes(tq)) != -1)
        return rc;
    apr_table_setn(r->headers_out, "Location", apr_pstrcat(r->pool, r->uri, tq->id,
                                                          NULL));
    if (!tq->st.done && tq->t == NULL)
        su_tus_offset_header(r, 0);
    if (apr_table_get(r->headers_out, "X-Secupload-Id") == NULL)
        su_tus_expires_header(r, tq->st.expires_ms);
    su_note(r, tq->id, "created", &tq->st.length);
    return su_tus_empty(r, HTTP_CREATED);
}

/* ---- DELETE: termination ---- */

static int su_tus_delete(su_req_t *q, const char *id)
{
    request_rec *r = q->r;
    su_tus_req_t *tq = apr_pcalloc(r->pool, sizeof(*tq));
    const char *err = NULL;
    su_err_t rv;
    int rc;

    tq->q = q;
    tq->id = id;
    if ((rc = su_tus_lock(tq)) != -1)
        return rc;
    if (tq->st.done) {
        su_tus_unlock(tq);
        return su_fail(q, SU_ERR_NOT_FOUND, NULL, "This upload is finished: its "
                       "file is deleted under " SU_TUS_FILES ".", NULL, id, 0);
    }
    rv = su_tus_remove(r->pool, q->srv->storage_dir, id, su_conf_sync(q->dir), &err);
    if (rv != SU_OK) {
        su_tus_unlock(tq);
        return su_fail(q, rv, NULL, NULL, err, id, 0);
    }
    if (su_req_redis(q) == SU_OK)
        su_tus_state_delete(q->redis, r->pool, id);
    su_audit_only(q, su_audit(q, SU_EV_UPLOAD_TERMINATED, HTTP_NO_CONTENT, id, "",
                              tq->st.offset));
    ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r, SU_LOGNO(00463)
                  "resumable upload %s terminated at offset %" APR_UINT64_T_FMT,
                  id, tq->st.offset);
    su_note(r, id, "terminated", NULL);
    return su_tus_empty(r, HTTP_NO_CONTENT);
}

/* ---- the handler ---- */

static int su_tus_dispatch(su_req_t *q, const char *id)
{
    request_rec *r = q->r;
    int body = r->method_number == M_POST || r->method_number == M_PATCH;

    q->body_unread = body;
    q->body_untouched = body;
    if (r->method_number == M_POST && *id == '\0')
        return su_tus_post(q);
    if (*id == '\0' || r->method_number == M_POST)
        return su_fail(q, SU_ERR_METHOD, NULL, NULL, r->method, NULL, 0);
    if (r->method_number == M_PATCH)
        return su_tus_patch(q, id);
    if (r->header_only)
        return su_tus_head(q, id);
    if (r->method_number == M_DELETE)
        return su_tus_delete(q, id);
    return su_fail(q, SU_ERR_METHOD, NULL, NULL, r->method, id, 0);
}

int su_handle_tus(su_req_t *q)
{
    request_rec *r = q->r;
    const char *v = apr_table_get(r->headers_in, "Tus-Resumable");
    const char *id;

    q->action = "resumable upload";
    q->allow = SU_TUS_METHODS;
    apr_table_setn(r->err_headers_out, "Tus-Resumable", SU_TUS_VERSION);
    if (r->method_number == M_OPTIONS)
        return su_tus_options(q);
    if (!su_hdr_tus_version_ok(v)) {
        q->body_unread = r->method_number == M_POST || r->method_number == M_PATCH;
        q->body_untouched = q->body_unread;
        apr_table_setn(r->err_headers_out, "Tus-Version", SU_TUS_VERSION);
        return su_tus_refuse(q, HTTP_PRECONDITION_FAILED, "version",
                             "Tus-Resumable: " SU_TUS_VERSION " is required.",
                             NULL, 0);
    }
    id = su_store_url_id(r->uri);
    if (id == NULL)
        return su_fail(q, SU_ERR_NOT_FOUND, NULL, "No such upload.", r->uri, NULL, 0);
    return su_tus_dispatch(q, id);
}

/* ---- expiry: a mod_watchdog callback, in one child at a time ---- */

static apr_array_header_t *su_tus_expiry_audit(apr_pool_t *p, const char *id,
                                               const su_tus_state_t *st)
{
    apr_array_header_t *a = apr_array_make(p, 9, sizeof(su_kv_t));

    su_kv(a, "event", SU_EV_UPLOAD_EXPIRED);
    su_kv(a, "status", APR_STRINGIFY(HTTP_GONE));
    su_kv(a, "id", id);
    su_kv(a, "reason", "expired");
    su_kv(a, "bytes", apr_psprintf(p, "%" APR_UINT64_T_FMT, st->offset));
    su_kv(a, "client_ip", st->client_ip);
    su_kv(a, "user", st->user);
    su_kv(a, "request_id", st->request_id);
    su_kv(a, "time", su_rfc3339(p, apr_time_now()));
    return a;
}

/* One expired upload: its file, then its state, under its lock. */
static void su_tus_expire_one(server_rec *s, su_redis_t *redis, apr_pool_t *p,
                              const char *id)
{
    su_srv_conf_t *c = su_srv(s);
    char token[SU_ID_HEX_LEN + 1];
    const char *err = NULL;
    su_tus_state_t st;
    int locked = 0;
    su_err_t rv;

    if (su_store_new_id(token) != SU_OK)
        return;
    rv = su_tus_state_lock(redis, p, id, token, SU_TUS_LOCK_MS, &st, &locked);
    if (rv == SU_ERR_UNAVAILABLE || locked)
        return;                          /* in use: it is not expired */
    if (rv == SU_OK && !st.done && !su_tus_expired(&st)) {
        su_tus_state_unlock(redis, p, id, token);
        return;                          /* a request extended it meanwhile */
    }
    if (su_tus_remove(p, c->storage_dir, id, 1, &err) != SU_OK) {
        ap_log_error(APLOG_MARK, APLOG_ERR, 0, s, SU_LOGNO(00466)
                     "cannot remove expired upload %s: %s", id, err);
        su_tus_state_unlock(redis, p, id, token);
        return;
    }
    su_tus_state_delete(redis, p, id);
    if (rv == SU_OK && !st.done) {
        su_redis_audit(redis, p, su_tus_expiry_audit(p, id, &st));
        ap_log_error(APLOG_MARK, APLOG_INFO, 0, s, SU_LOGNO(00465)
                     "resumable upload %s expired at offset %" APR_UINT64_T_FMT
                     " of %" APR_UINT64_T_FMT ": removed", id, st.offset, st.length);
    }
}

static void su_tus_expiry_round(server_rec *s, apr_pool_t *p)
{
    su_srv_conf_t *c = su_srv(s);
    apr_array_header_t *ids = NULL;
    su_redis_t *redis = NULL;
    const char *err = NULL;
    int i;

    if (c->rt == NULL || su_redis_acquire(c->rt->redis, &redis, &err, p) != SU_OK)
        return;
    if (su_tus_state_expired(redis, p, apr_time_as_msec(apr_time_now()),
                             SU_TUS_EXPIRY_BATCH, &ids) == SU_OK)
        for (i = 0; i < ids->nelts && su_redis_usable(redis); i++)
            su_tus_expire_one(s, redis, p, APR_ARRAY_IDX(ids, i, const char *));
    su_redis_release(c->rt->redis, redis);
    /* The lock tokens came from OpenSSL's random generator, whose state
     * for this thread (mod_watchdog's, not ours) was never freed when the
     * child ended; it is freed after each round that drew from it. */
    if (ids != NULL && ids->nelts > 0)
        OPENSSL_thread_stop();
}

static apr_status_t su_tus_expiry_tick(int state, void *data, apr_pool_t *p)
{
    if (state == AP_WATCHDOG_STATE_RUNNING)
        su_tus_expiry_round(data, p);
    return APR_SUCCESS;
}

/*
 * A singleton watchdog, as the settler's: its thread runs in one child at
 * a time. Servers sharing a storage directory and Redis (several nodes)
 * each run one; an upload's lock keeps them from removing it twice.
 */
/* Only servers where some section says SecUploadEnable tus look for
 * expired uploads: the others would ask Redis every second for nothing. */
static int su_tus_wants(const su_srv_conf_t *c)
{
    return su_conf_in_use(c) && c->tus_used;
}

int su_tus_post_config(apr_pool_t *pconf, apr_pool_t *plog, apr_pool_t *ptemp,
                       server_rec *s)
{
    apr_status_t rv;
    (void)plog; (void)ptemp;

    switch (su_watchdog_start(pconf, s, SU_TUS_EXPIRY_NAME, AP_WD_TM_INTERVAL,
                              su_tus_wants, su_tus_expiry_tick, &rv)) {
    case SU_WD_NO_MODULE:
        ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, s, SU_LOGNO(00467)
                     "mod_watchdog is not loaded: expired resumable uploads are "
                     "removed only by secupload fsck --repair");
        break;
    case SU_WD_FAILED:
        ap_log_error(APLOG_MARK, APLOG_WARNING, rv, s, SU_LOGNO(00468)
                     "cannot start the expiry of resumable uploads on "
                     "mod_watchdog: only secupload fsck --repair removes them");
        break;
    default:
        break;
    }
    return OK;
}
