/*
 * mod_secupload: the files handler (SetHandler secupload-files). GET and
 * HEAD of a stored file: a v1 file verified whole before its first byte is
 * sent, a v2 file segment by segment (any single byte range of it), then
 * streamed piece by piece; its metadata (/meta); DELETE.
 */
#include "httpd.h"
#include "http_config.h"
#include "http_core.h"
#include "http_log.h"
#include "http_protocol.h"
#include "http_request.h"

#include <apr_strings.h>

#include "su_format.h"
#include "su_hdr.h"
#include "su_json.h"
#include "su_range.h"
#include "su_store.h"
#include "su_util.h"

#include "mod_secupload.h"

/* log lines name the module and obey LogLevel secupload:… (in
 * mod_secupload.c, AP_DECLARE_MODULE does the same) */
APLOG_USE_MODULE(secupload);

/*
 * The id (and whether /meta follows) from the last segments of the URI, so
 * the handler works under any <Location>. NULL unless well-formed.
 */
static const char *su_files_id(request_rec *r, int *meta)
{
    const char *uri = r->uri, *end = uri + strlen(uri), *seg;

    *meta = 0;
    seg = end;
    while (seg > uri && seg[-1] != '/')
        seg--;
    if (strcmp(seg, "meta") == 0) {
        *meta = 1;
        end = seg - 1;
        if (end <= uri)
            return NULL;
        seg = end;
        while (seg > uri && seg[-1] != '/')
            seg--;
    }
    if (end - seg != SU_ID_HEX_LEN)
        return NULL;
    seg = apr_pstrmemdup(r->pool, seg, SU_ID_HEX_LEN);
    return su_store_valid_id(seg) ? seg : NULL;
}

static const char *su_meta_get(apr_table_t *meta, const char *k)
{
    const char *v = apr_table_get(meta, k);
    return v ? v : "";
}

/* SecUploadOwnerOnly: a file is only ever shown to the user who uploaded it. */
static int su_owner_denied(const su_req_t *q, apr_table_t *meta)
{
    const char *owner = su_meta_get(meta, "user");

    if (!su_conf_owner_only(q->dir))
        return 0;
    return q->r->user == NULL || *q->r->user == '\0' || strcmp(owner, q->r->user) != 0;
}

static int su_files_meta(su_req_t *q, apr_table_t *meta)
{
    static const char *const numeric[] = { "size", NULL };
    /* where and which file on disk is the storage's business */
    static const char *const hidden[] = { "path", "iv", NULL };

    return su_respond(q->r, HTTP_OK, su_json_table(q->r->pool, meta, numeric, hidden));
}

static int su_files_delete(su_req_t *q, const char *id, apr_table_t *meta)
{
    request_rec *r = q->r;
    apr_uint64_t size = (apr_uint64_t)apr_atoi64(su_meta_get(meta, "size"));
    const char *err = NULL;
    su_err_t rv;

    /* metadata first: a failure after it leaves an orphan file for fsck,
     * never metadata that points at nothing */
    rv = su_redis_delete(q->redis, r->pool, id,
                         su_audit(q, SU_EV_FILE_DELETED, HTTP_NO_CONTENT, id, "", size));
    if (rv == SU_ERR_NOT_FOUND)  /* the delete wrote its audit entry already */
        return su_fail(q, rv, NULL, NULL, "deleted meanwhile", id, 0);
    if (rv != SU_OK && q->redis && !su_redis_usable(q->redis)) {
        /* sent, but was it applied? a file must not outlive its metadata
         * unnoticed, nor be removed while its metadata stays */
        const char *why = apr_pstrdup(r->pool, su_redis_errstr(q->redis));
        su_req_drop_redis(q);
        if (su_settle_deleted(q->srv->rt->redis, r->pool, id,
                              su_conf_redis_timeout(q->srv)) != SU_OK)
            return su_fail(q, SU_ERR_UNAVAILABLE, SU_EV_FILE_DELETED, NULL, why,
                           id, 0);
        rv = SU_OK;
    }
    if (rv != SU_OK)
        return su_fail(q, SU_ERR_UNAVAILABLE, SU_EV_FILE_DELETED, NULL,
                       su_redis_errstr(q->redis), id, 0);
    rv = su_store_remove(r->pool, q->srv->storage_dir, id, su_conf_sync(q->dir), &err);
    if (rv != SU_OK && rv != SU_ERR_NOT_FOUND)
        return su_fail(q, SU_ERR_INTERNAL, SU_EV_FILE_DELETED, NULL, err, id, 0);
    su_stat_add(SU_STAT_DELETES, 1);
    ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r, SU_LOGNO(00040)
                  "file deleted: id %s", id);
    su_note(r, id, "deleted", &size);
    r->status = HTTP_NO_CONTENT;
    return OK;
}

/*
 * Plaintext pieces travel in bucket memory of their own, decrypted in place
 * (no copy). A download's two buffers serve piece after piece: handing each
 * 1 MiB piece back to the allocator cost a fresh mapping, 256 page faults,
 * for every piece whenever the allocator did not keep the memory, and
 * halved the send rate. A buffer still held by a filter downstream when it
 * is due again is left to it and replaced; whichever lets go of it last,
 * the bucket or the request, wipes and frees it.
 *
 * The wipe covers what the buffer ever held (a small file's piece does not
 * cost a 1 MiB wipe, nor the buffer that only met the end of the file), or
 * all of it when a decryption into it failed or was never waited for.
 * Between pieces the next decryption overwrites the last.
 */
typedef struct {
    apr_size_t held;    /* bytes that held plaintext */
    int unknown;        /* given to the reader, nothing known back yet */
    int in_bucket;      /* a bucket still refers to it */
    int kept;           /* the request will use it again */
} su_plain_t;

#define SU_PLAIN_HDR APR_ALIGN_DEFAULT(sizeof(su_plain_t))

static su_plain_t *su_plain_of(unsigned char *data)
{
    return (su_plain_t *)(void *)(data - SU_PLAIN_HDR);
}

static unsigned char *su_plain_alloc(apr_bucket_alloc_t *ba)
{
    su_plain_t *h = apr_bucket_alloc(SU_PLAIN_HDR + SU_FMT_READ_MAX, ba);
    h->held = 0;
    h->unknown = 1;
    h->in_bucket = 0;
    h->kept = 1;
    return (unsigned char *)h + SU_PLAIN_HDR;
}

static void su_plain_release(unsigned char *data)
{
    su_plain_t *h = su_plain_of(data);
    if (h->kept || h->in_bucket)
        return;
    su_util_wipe(data, h->unknown ? SU_FMT_READ_MAX : h->held);
    apr_bucket_free(h);
}

static void su_plain_bucket_done(void *data)
{
    su_plain_of(data)->in_bucket = 0;
    su_plain_release(data);
}

/* The request is done with it; a bucket may still be. */
static void su_plain_drop(unsigned char *data)
{
    su_plain_of(data)->kept = 0;
    su_plain_release(data);
}

/* A buffer to decrypt the next piece into: buf itself once its bucket is
 * gone, a new one otherwise. */
static unsigned char *su_plain_reuse(unsigned char *buf, apr_bucket_alloc_t *ba)
{
    if (buf == NULL || su_plain_of(buf)->in_bucket) {
        if (buf != NULL)
            su_plain_drop(buf);
        return su_plain_alloc(ba);
    }
    su_plain_of(buf)->unknown = 1;
    return buf;
}

/* The reader gave len bytes; it may have touched the blocks it held back
 * just past them. The end of the file writes nothing. */
static void su_plain_filled(unsigned char *data, apr_size_t len)
{
    su_plain_t *h = su_plain_of(data);
    apr_size_t n = len > 0 ? len + 2 * SU_FMT_BLOCK : 0;
    if (n > SU_FMT_READ_MAX)
        n = SU_FMT_READ_MAX;
    if (n > h->held)
        h->held = n;
    h->unknown = 0;
}

static apr_bucket *su_plain_bucket(unsigned char *data, apr_size_t len,
                                   apr_bucket_alloc_t *ba)
{
    su_plain_of(data)->in_bucket = 1;
    return apr_bucket_heap_create((const char *)data, len, su_plain_bucket_done, ba);
}

/*
 * Abort an answer that has started, as mod_proxy does when a backend breaks:
 * not cacheable, an error bucket that the protocol turns into a broken
 * answer (HTTP/1.1: the connection closes before the Content-Length is
 * reached, and a chunked body gets no last chunk; HTTP/2: the stream is
 * reset), then EOS so that the request ends here. Returning an error alone
 * left an HTTP/2 client waiting at times, holding the request.
 */
static int su_files_cut(request_rec *r, apr_bucket_brigade *bb)
{
    conn_rec *c = r->connection;

    r->no_cache = 1;
    if (r->main)
        r->main->no_cache = 1;
    c->keepalive = AP_CONN_CLOSE;
    apr_brigade_cleanup(bb);
    APR_BRIGADE_INSERT_TAIL(bb, ap_bucket_error_create(HTTP_BAD_GATEWAY, NULL,
                                                       c->pool, c->bucket_alloc));
    APR_BRIGADE_INSERT_TAIL(bb, apr_bucket_eos_create(c->bucket_alloc));
    (void)ap_pass_brigade(r->output_filters, bb);
    apr_brigade_cleanup(bb);
    return OK;
}

/*
 * A piece failed after the answer started: the body is cut short, so the
 * client can tell, rather than ended as if complete. A v1 file was written
 * to in place after its verification; a v2 file's segment failed its own.
 */
static int su_files_broken(su_req_t *q, const char *id, su_fmt_reader_t *rd,
                           apr_bucket_brigade *bb, su_err_t rv)
{
    request_rec *r = q->r;

    if (su_fmt_reader_version(rd) == 1)
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r, SU_LOGNO(00041)
                      "file %s changed on disk while being sent; the answer "
                      "was cut short", id);
    else
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r, SU_LOGNO(00420)
                      "file %s: a segment failed verification (%s) while the "
                      "file was being sent; the answer was cut short", id,
                      rv == SU_ERR_INTEGRITY ? "tampered or damaged"
                                             : "cannot be read");
    su_fmt_reader_close(rd);
    su_audit_only(q, su_audit(q, SU_EV_FILE_READ, HTTP_INTERNAL_SERVER_ERROR, id,
                              su_err_code(SU_ERR_INTEGRITY), 0));
    return su_files_cut(r, bb);
}

/*
 * Send the plaintext; every byte was authenticated before it goes out (a
 * v1 file whole before the first byte, a v2 file segment by segment). Each piece is decrypted (by the reader, on a thread of its own for a
 * large file) while the one before it is being sent.
 */
static int su_files_stream(su_req_t *q, const char *id, su_fmt_reader_t *rd)
{
    request_rec *r = q->r;
    apr_bucket_alloc_t *ba = r->connection->bucket_alloc;
    apr_bucket_brigade *bb = apr_brigade_create(r->pool, ba);
    unsigned char *buf[2] = { su_plain_alloc(ba), NULL };
    int cur = 0;
    size_t len;
    apr_status_t st = APR_SUCCESS;
    su_err_t rv;

    su_fmt_reader_begin(rd, buf[cur]);
    for (;;) {
        rv = su_fmt_reader_end(rd, &len);
        if (rv != SU_OK)
            break;
        su_plain_filled(buf[cur], len);
        if (len == 0)
            break;
        APR_BRIGADE_INSERT_TAIL(bb, su_plain_bucket(buf[cur], len, ba));
        su_stat_add(SU_STAT_BYTES_OUT, len);
        /* written out before the next piece is due: two pieces live at a
         * time, whatever the file's size */
        APR_BRIGADE_INSERT_TAIL(bb, apr_bucket_flush_create(ba));
        /* bucket memory is allocated here, in the request's thread only */
        cur = !cur;
        buf[cur] = su_plain_reuse(buf[cur], ba);
        su_fmt_reader_begin(rd, buf[cur]);
        st = ap_pass_brigade(r->output_filters, bb);
        apr_brigade_cleanup(bb);
        if (st != APR_SUCCESS || r->connection->aborted) {
            (void)su_fmt_reader_end(rd, &len);
            break;
        }
    }
    su_plain_drop(buf[0]);
    if (buf[1] != NULL)
        su_plain_drop(buf[1]);
    if (st != APR_SUCCESS || r->connection->aborted)
        return su_files_cut(r, bb);   /* mostly a client gone; if not, cut */
    if (rv != SU_OK)
        return su_files_broken(q, id, rd, bb, rv);
    su_fmt_reader_close(rd);
    APR_BRIGADE_INSERT_TAIL(bb, apr_bucket_eos_create(ba));
    return ap_pass_brigade(r->output_filters, bb) == APR_SUCCESS ? OK : AP_FILTER_ERROR;
}

/* Apache's own switch for mapping files (e.g. Off for storage on NFS). */
static int su_files_map_flags(request_rec *r)
{
    const core_dir_config *d = ap_get_core_module_config(r->per_dir_config);
    return d->enable_mmap == ENABLE_MMAP_OFF ? SU_FMT_NO_MAP : 0;
}

/*
 * The stored type, if it still meets the rules of an upload's type: what
 * Redis holds is not trusted to be a valid header value (a CR or LF in it
 * would make Apache refuse the whole answer).
 */
static const char *su_files_type(su_req_t *q, const char *id, apr_table_t *meta)
{
    const char *type = su_meta_get(meta, "content_type");

    if (su_hdr_valid_type(q->r->pool, type, NULL) == SU_OK)
        return apr_pstrdup(q->r->pool, type);
    ap_log_rerror(APLOG_MARK, APLOG_WARNING, 0, q->r, SU_LOGNO(00220)
                  "file %s: the stored content type is not a valid media type; "
                  "sent as application/octet-stream", id);
    return "application/octet-stream";
}

/* What a GET or HEAD gets of a file: status, and the bytes of it. */
typedef struct su_span {
    int status;             /* 200, 206, 416 */
    uint64_t off, len;
} su_span_t;

static void su_files_headers(su_req_t *q, const char *id, apr_table_t *meta,
                             uint64_t size, const su_span_t *sp, int version)
{
    request_rec *r = q->r;

    ap_set_content_type(r, su_files_type(q, id, meta));
    ap_set_content_length(r, (apr_off_t)sp->len);
    if (sp->status == HTTP_PARTIAL_CONTENT)
        apr_table_setn(r->headers_out, "Content-Range",
                       apr_psprintf(r->pool, "bytes %" APR_UINT64_T_FMT "-%"
                                    APR_UINT64_T_FMT "/%" APR_UINT64_T_FMT,
                                    sp->off, sp->off + sp->len - 1, size));
    r->status = sp->status;
    apr_table_setn(r->headers_out, "Content-Disposition",
                   su_hdr_attachment(r->pool, su_meta_get(meta, "name")));
    apr_table_setn(r->headers_out, "X-Content-Type-Options", "nosniff");
    /* a file opened in a browser anyway runs no script as the site, and
     * other sites cannot embed it */
    apr_table_setn(r->headers_out, "Content-Security-Policy", "sandbox");
    apr_table_setn(r->headers_out, "Cross-Origin-Resource-Policy", "same-origin");
    apr_table_setn(r->headers_out, "Cache-Control", "private, no-store");
    /* ranges of a v2 file only: a v1 file is verified whole, and sent so */
    apr_table_setn(r->headers_out, "Accept-Ranges", version == 2 ? "bytes" : "none");
    /* answered here: Apache's byte-range filter must not cut it again */
    apr_table_unset(r->headers_in, "Range");
}

/*
 * The headers go out on their own, before any plaintext, so that the
 * file.read entry records the status the client was given: Apache answers
 * 500 instead when it finds a header malformed. OK to go on with the body.
 */
static int su_files_send_head(su_req_t *q, const char *id, uint64_t size)
{
    request_rec *r = q->r;
    apr_bucket_alloc_t *ba = r->connection->bucket_alloc;
    apr_bucket_brigade *bb = apr_brigade_create(r->pool, ba);
    int want = r->status;
    apr_status_t st;

    APR_BRIGADE_INSERT_TAIL(bb, apr_bucket_flush_create(ba));
    st = ap_pass_brigade(r->output_filters, bb);
    apr_brigade_destroy(bb);
    if (r->status != want) {
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r, SU_LOGNO(00221)
                      "file %s: the response headers were refused; %d was "
                      "sent instead", id, r->status);
        su_audit_only(q, su_audit(q, SU_EV_FILE_READ, r->status, id,
                                  su_err_code(SU_ERR_INTERNAL), 0));
        return AP_FILTER_ERROR;
    }
    su_audit_only(q, su_audit(q, SU_EV_FILE_READ, want, id, "",
                              r->header_only ? 0 : size));
    su_stat_add(SU_STAT_DOWNLOADS, 1);
    ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r, SU_LOGNO(00042)
                  "file read: id %s, %" APR_UINT64_T_FMT " bytes", id, size);
    su_note(r, id, "read", &size);
    return st == APR_SUCCESS && !r->connection->aborted ? OK : AP_FILTER_ERROR;
}

/*
 * Is the verified file the one uploaded under this id? A valid file of
 * another id copied over it verifies too, but its IV is not the one
 * recorded at upload. Metadata from before IVs were recorded has none: such
 * a file is served as before (secupload fsck lists it, and records it).
 */
static int su_files_bound(const su_fmt_reader_t *rd, apr_table_t *meta)
{
    const char *want = apr_table_get(meta, "iv");
    char iv[SU_FMT_IV_HEX_LEN + 1];

    if (want == NULL)
        return 1;
    su_fmt_reader_iv_hex(rd, iv);
    return strcmp(iv, want) == 0;
}

/* Open id's file for an answer, or say why it cannot be given out. */
static su_err_t su_files_open(su_req_t *q, const char *path, apr_table_t *meta,
                              su_fmt_reader_t **rd, uint64_t *size,
                              const char **why)
{
    const su_kek_t *const *keks = (const su_kek_t *const *)q->srv->keks->elts;
    su_err_t rv;

    rv = su_fmt_reader_open_ex(q->r->pool, path, keks, q->srv->keks->nelts,
                               su_files_map_flags(q->r), rd, size);
    *why = rv == SU_ERR_INTEGRITY ? "verification failed (tampered, truncated, "
                                    "or no configured key opens it)"
           : rv == SU_ERR_NOT_FOUND ? "missing" : "cannot be read";
    if (rv != SU_OK)
        return rv;
    if (*size != (uint64_t)apr_atoi64(su_meta_get(meta, "size"))) {
        rv = SU_ERR_INTEGRITY;
    } else if (!su_files_bound(*rd, meta)) {
        *why = "not the file stored under this id (its IV is not the one "
               "recorded at upload: replaced in the storage directory)";
        rv = SU_ERR_INTEGRITY;
    }
    if (rv != SU_OK)
        su_fmt_reader_close(*rd);
    return rv;
}

/* ---- conditional and range requests ---- */

/* The strong entity tag: the value that binds the file to its id (a v1
 * IV, a v2 nonce), the same across a rewrap and a conversion, which keep
 * the plaintext. */
static const char *su_files_etag(request_rec *r, const su_fmt_reader_t *rd)
{
    char iv[SU_FMT_IV_HEX_LEN + 1];

    su_fmt_reader_iv_hex(rd, iv);
    return apr_pstrcat(r->pool, "\"", iv, "\"", NULL);
}

/* If-None-Match: "*" or a list that names this tag (weak comparison). */
static int su_files_not_modified(request_rec *r, const char *etag)
{
    return su_range_none_match(apr_table_get(r->headers_in, "If-None-Match"), etag);
}

static int su_files_304(su_req_t *q, const char *id)
{
    request_rec *r = q->r;

    apr_table_setn(r->headers_out, "Cache-Control", "private, no-store");
    su_audit_only(q, su_audit(q, SU_EV_FILE_READ, HTTP_NOT_MODIFIED, id, "", 0));
    ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r, SU_LOGNO(00421)
                  "file read: id %s, not modified (304)", id);
    return HTTP_NOT_MODIFIED;
}

static int su_files_416(su_req_t *q, const char *id, uint64_t size)
{
    request_rec *r = q->r;

    apr_table_setn(r->headers_out, "Content-Range",
                   apr_psprintf(r->pool, "bytes */%" APR_UINT64_T_FMT, size));
    apr_table_setn(r->headers_out, "X-Request-Id", q->request_id);
    su_audit_only(q, su_audit(q, SU_EV_FILE_READ, HTTP_RANGE_NOT_SATISFIABLE, id,
                              "range_not_satisfiable", 0));
    ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r, SU_LOGNO(00422)
                  "file read: id %s, the range asked for is not within its %"
                  APR_UINT64_T_FMT " bytes (416)", id, size);
    return su_respond(r, HTTP_RANGE_NOT_SATISFIABLE, apr_psprintf(r->pool,
        "{\"status\":\"error\",\"code\":\"range_not_satisfiable\","
        "\"message\":\"The range asked for is not within the file.\","
        "\"request_id\":\"%s\"}", q->request_id));
}

/*
 * What is sent: the whole file (200), or for a v2 file one range of it
 * (206) or nothing (416), as su_range_span reads Range and If-Range.
 */
static void su_files_span(request_rec *r, int version, const char *etag,
                          uint64_t size, su_span_t *sp)
{
    const char *range = apr_table_get(r->headers_in, "Range");
    su_range_t rg;

    /* a v1 file is verified whole, and sent so */
    su_range_span(version == 2 ? range : NULL,
                  apr_table_get(r->headers_in, "If-Range"), etag, size, &rg);
    sp->status = rg.kind == SU_RANGE_PART ? HTTP_PARTIAL_CONTENT
                 : rg.kind == SU_RANGE_UNSATISFIABLE ? HTTP_RANGE_NOT_SATISFIABLE
                 : HTTP_OK;
    sp->off = rg.off;
    sp->len = rg.len;
}

static int su_files_read(su_req_t *q, const char *id, apr_table_t *meta)
{
    request_rec *r = q->r;
    const char *path = su_store_path(r->pool, q->srv->storage_dir, id);
    su_fmt_reader_t *rd = NULL;
    uint64_t size = 0;
    const char *why = NULL, *etag;
    su_span_t sp;
    su_err_t rv;
    int rc, version;

    rv = su_files_open(q, path, meta, &rd, &size, &why);
    if (rv != SU_OK)
        return su_fail(q, rv == SU_ERR_NOT_FOUND ? SU_ERR_INTERNAL : rv,
                       SU_EV_FILE_READ, NULL,
                       apr_psprintf(r->pool, "%s: %s", path, why), id, 0);

    version = su_fmt_reader_version(rd);
    etag = su_files_etag(r, rd);
    apr_table_setn(r->headers_out, "ETag", etag);
    if (su_files_not_modified(r, etag)) {
        su_fmt_reader_close(rd);
        return su_files_304(q, id);
    }
    su_files_span(r, version, etag, size, &sp);
    if (sp.status == HTTP_RANGE_NOT_SATISFIABLE) {
        su_fmt_reader_close(rd);
        return su_files_416(q, id, size);
    }
    if (su_fmt_reader_range(rd, sp.off, sp.len) != SU_OK) {
        su_fmt_reader_close(rd);
        return su_fail(q, SU_ERR_INTERNAL, SU_EV_FILE_READ, NULL, "range", id, 0);
    }
    su_files_headers(q, id, meta, size, &sp, version);
    rc = su_files_send_head(q, id, sp.len);
    if (rc != OK || r->header_only) {
        su_fmt_reader_close(rd);
        return rc;
    }
    return su_files_stream(q, id, rd);
}

int su_handle_files(su_req_t *q)
{
    request_rec *r = q->r;
    apr_table_t *meta = NULL;
    const char *id;
    int is_meta;
    su_err_t rv;

    q->action = "file request";
    q->allow = "GET, HEAD, DELETE";
    id = su_files_id(r, &is_meta);
    if (r->method_number != M_GET && (r->method_number != M_DELETE || is_meta)) {
        if (is_meta)
            q->allow = "GET, HEAD";
        q->body_unread = 1;
        return su_fail(q, SU_ERR_METHOD, NULL, NULL,
                       apr_pstrcat(r->pool, "method ", r->method, NULL), id, 0);
    }
    /* not audited until the file's metadata is found (docs/api.md) */
    if (id == NULL)
        return su_fail(q, SU_ERR_NOT_FOUND, NULL, NULL, "malformed id", NULL, 0);
    if (su_req_redis(q) != SU_OK)
        return su_fail(q, SU_ERR_UNAVAILABLE, NULL, NULL, "Redis unavailable", id, 0);
    rv = su_redis_get_meta(q->redis, r->pool, id, &meta);
    if (rv == SU_ERR_NOT_FOUND)
        return su_fail(q, rv, NULL, NULL, "unknown id", id, 0);
    if (rv != SU_OK)
        return su_fail(q, SU_ERR_UNAVAILABLE, NULL, NULL,
                       su_redis_errstr(q->redis), id, 0);
    if (su_owner_denied(q, meta))
        return su_fail(q, SU_ERR_NOT_FOUND, SU_EV_FILE_DENIED, NULL,
                       apr_psprintf(r->pool, "user '%s' is not the owner",
                                    r->user ? r->user : ""), id, 0);
    if (is_meta)
        return su_files_meta(q, meta);
    if (r->method_number == M_DELETE)
        return su_files_delete(q, id, meta);
    return su_files_read(q, id, meta);
}
