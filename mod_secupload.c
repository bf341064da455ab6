/*
 * mod_secupload: encrypted file uploads for Apache httpd 2.4.
 *
 * This file is the entry point of the Apache face: the module record and
 * its hooks, the dispatch of a request to its handler, what every request
 * shares (its Redis connection, audit entries, JSON answers) and su_fail,
 * the one place where an error becomes an answer. The other files are
 * listed in mod_secupload.h.
 */
#include "httpd.h"
#include "http_config.h"
#include "http_core.h"
#include "http_log.h"
#include "http_protocol.h"
#include "http_request.h"
#include "ap_mpm.h"

#include <apr_strings.h>

#include "su_json.h"
#include "su_store.h"

#include "mod_secupload.h"

#define SU_RETRY_AFTER          "5"


/* ---- what every request shares: ids, its Redis connection, audit ---- */

/* Make sure the request has a log id, used as request_id everywhere. */
static const char *su_request_id(request_rec *r)
{
    char id[SU_ID_HEX_LEN + 1];

    if (r->log_id == NULL) {
        const char *gen = NULL;
        if (ap_run_generate_log_id(r->connection, r, &gen) == OK && gen)
            r->log_id = gen;
        else if (su_store_new_id(id) == SU_OK)
            r->log_id = apr_pstrndup(r->pool, id, 16);
    }
    return r->log_id ? r->log_id : "";
}

const char *su_rfc3339(apr_pool_t *p, apr_time_t t)
{
    apr_time_exp_t x;
    apr_time_exp_gmt(&x, t);
    return apr_psprintf(p, "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ",
                        x.tm_year + 1900, x.tm_mon + 1, x.tm_mday,
                        x.tm_hour, x.tm_min, x.tm_sec, x.tm_usec);
}

void su_kv(apr_array_header_t *a, const char *k, const char *v)
{
    su_kv_t *kv = apr_array_push(a);
    kv->k = k;
    kv->v = v ? v : "";
}

su_err_t su_req_redis(su_req_t *q)
{
    const char *err = NULL;
    su_err_t rv;

    if (q->redis)
        return SU_OK;
    rv = su_redis_acquire(q->srv->rt->redis, &q->redis, &err, q->r->pool);
    if (rv != SU_OK) {
        q->redis = NULL;
        su_stat_add(SU_STAT_REDIS_ERRORS, 1);
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, q->r, SU_LOGNO(00010)
                      "Redis is unavailable: %s", err ? err : "unknown error");
        return rv;
    }
    su_stat_gauge(SU_GAUGE_REDIS_IN_USE, 1);
    su_settle_pending(q);
    return SU_OK;
}

/* Hand the connection back (one that broke is destroyed), so the next use
 * takes a fresh one and no connection sits pinned while a body arrives. */
void su_req_drop_redis(su_req_t *q)
{
    if (q->redis) {
        su_stat_gauge(SU_GAUGE_REDIS_IN_USE, -1);
        if (!su_redis_usable(q->redis))
            su_stat_add(SU_STAT_REDIS_ERRORS, 1);
        su_redis_release(q->srv->rt->redis, q->redis);
        q->redis = NULL;
    }
}

/* The request's end gives its connection back too. */
static apr_status_t su_req_release(void *data)
{
    su_req_drop_redis(data);
    return APR_SUCCESS;
}

/*
 * A connection that answered just now, for a write that follows. A pooled
 * connection may have been closed or forgotten by the server while idle
 * (Redis' own `timeout`, a restart, a failover); one PING finds out, and
 * since nothing of the write was sent yet, a fresh connection is safe. A
 * PING that timed out means a stalled server: no second wait for it.
 */
su_err_t su_req_redis_live(su_req_t *q)
{
    int tries;

    for (tries = 0; tries < 2; tries++) {
        if (su_req_redis(q) != SU_OK)
            return SU_ERR_UNAVAILABLE;
        if (su_redis_ping(q->redis, q->r->pool) == SU_OK)
            return SU_OK;
        if (su_redis_timed_out(q->redis))
            return SU_ERR_UNAVAILABLE;
        ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, q->r, SU_LOGNO(00015)
                      "a pooled Redis connection no longer answers (%s); "
                      "taking a fresh one", su_redis_errstr(q->redis));
        su_req_drop_redis(q);
    }
    return SU_ERR_UNAVAILABLE;
}

apr_array_header_t *su_audit(su_req_t *q, const char *event, int status,
                             const char *id, const char *reason,
                             apr_uint64_t bytes)
{
    request_rec *r = q->r;
    apr_array_header_t *a = apr_array_make(r->pool, 10, sizeof(su_kv_t));

    su_kv(a, "event", event);
    su_kv(a, "status", apr_itoa(r->pool, status));
    su_kv(a, "id", id);
    su_kv(a, "reason", reason);
    su_kv(a, "bytes", apr_psprintf(r->pool, "%" APR_UINT64_T_FMT, bytes));
    su_kv(a, "client_ip", r->useragent_ip);
    su_kv(a, "user", r->user);
    su_kv(a, "request_id", q->request_id);
    su_kv(a, "time", q->time);
    return a;
}

/* An audit entry on its own, whenever Redis can be reached. */
void su_audit_only(su_req_t *q, apr_array_header_t *audit)
{
    if (su_req_redis(q) != SU_OK)
        return;
    if (su_redis_audit(q->redis, q->r->pool, audit) != SU_OK)
        ap_log_rerror(APLOG_MARK, APLOG_WARNING, 0, q->r, SU_LOGNO(00011)
                      "cannot write the audit entry: %s", su_redis_errstr(q->redis));
}

/* ---- answers, and the one failure exit ---- */

/*
 * What the access log can show (%{secupload-id}n, %{secupload-outcome}n,
 * %{secupload-size}n): the file's id, the outcome (stored, read, deleted
 * or the error code) and the plaintext size. NULL leaves a note unset.
 */
void su_note(request_rec *r, const char *id, const char *outcome,
             const apr_uint64_t *size)
{
    if (id && *id)
        apr_table_setn(r->notes, "secupload-id", id);
    if (outcome)
        apr_table_setn(r->notes, "secupload-outcome", outcome);
    if (size)
        apr_table_setn(r->notes, "secupload-size",
                       apr_psprintf(r->pool, "%" APR_UINT64_T_FMT, *size));
}

/* An error answer: the client gets the id the error log lines carry. */
static int su_respond_error(request_rec *r, int status, su_err_t e,
                            const char *message, const char *request_id)
{
    apr_table_setn(r->headers_out, "X-Request-Id", request_id);
    return su_respond(r, status,
                      su_json_error_id(r->pool, e, message, request_id));
}

/*
 * Every JSON answer: metadata (names, digests, users, client addresses) and
 * errors must not be kept by a cache (mod_cache answers from its quick
 * handler, before authentication and SecUploadOwnerOnly, and after the
 * file was deleted), nor by any cache on the way.
 */
int su_respond(request_rec *r, int status, const char *json)
{
    apr_table_setn(r->headers_out, "Cache-Control", "no-store");
    r->status = status;
    ap_set_content_type(r, "application/json");
    ap_set_content_length(r, (apr_off_t)strlen(json));
    if (!r->header_only)
        ap_rputs(json, r);
    return OK;
}

/*
 * A connection lost while the child stops: a hard stop closes the sockets
 * of requests in flight from another thread, and a worker still reading
 * one may be handed whatever new socket takes its descriptor number next.
 * So no Redis connection is opened then (the audit entry of such a lost
 * upload is given up; its temp file still goes), and the child exits in
 * time instead of being killed with temp files left behind.
 */
static int su_lost_in_stop(su_req_t *q, su_err_t e)
{
    int state = AP_MPMQ_RUNNING;

    if (e != SU_ERR_ABORTED || q->redis != NULL)
        return 0;
    if (ap_mpm_query(AP_MPMQ_MPM_STATE, &state) != APR_SUCCESS
        || state != AP_MPMQ_STOPPING)
        return 0;
    ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, q->r, SU_LOGNO(00017)
                  "the server is stopping: no audit entry for this lost upload");
    return 1;
}

/* What an error kind is in HTTP: the module's concern alone (the core and
 * the secupload tool know kinds, codes and messages, not statuses). */
int su_http_status(su_err_t e)
{
    switch (e) {
    case SU_OK:                   return HTTP_OK;
    case SU_ERR_BAD_REQUEST:      return HTTP_BAD_REQUEST;
    case SU_ERR_NOT_FOUND:        return HTTP_NOT_FOUND;
    case SU_ERR_METHOD:           return HTTP_METHOD_NOT_ALLOWED;
    case SU_ERR_TIMEOUT:          return HTTP_REQUEST_TIME_OUT;
    case SU_ERR_TOO_LARGE:        return HTTP_REQUEST_ENTITY_TOO_LARGE;
    case SU_ERR_UNSUPPORTED_TYPE: return HTTP_UNSUPPORTED_MEDIA_TYPE;
    case SU_ERR_UNAVAILABLE:      return HTTP_SERVICE_UNAVAILABLE;
    case SU_ERR_NO_SPACE:         return HTTP_INSUFFICIENT_STORAGE;
    case SU_ERR_ABORTED:          return HTTP_BAD_REQUEST;  /* access log only */
    case SU_ERR_INTERNAL:
    case SU_ERR_INTEGRITY:
    default:                      return HTTP_INTERNAL_SERVER_ERROR;
    }
}

/*
 * The one place where an error becomes an answer: status, JSON body, headers,
 * log line and audit entry (the event the caller names; none for a 503, as
 * Redis is what failed). The connection is closed after any error, so the
 * unread rest of a body is never taken for a next request.
 */
int su_fail(su_req_t *q, su_err_t e, const char *event, const char *message,
            const char *detail, const char *id, apr_uint64_t bytes)
{
    request_rec *r = q->r;
    int status = su_http_status(e);
    int level = status >= 500 ? APLOG_ERR : APLOG_INFO;

    if (message == NULL)
        message = su_err_message(e);
    su_stat_rejected(q, e);
    su_note(r, id, su_err_code(e), NULL);
    ap_log_rerror(APLOG_MARK, level, 0, r, SU_LOGNO(00020)
                  "%s failed: %d %s: %s", q->action, status, su_err_code(e),
                  detail && *detail ? detail : message);
    if (event && e != SU_ERR_UNAVAILABLE && !su_lost_in_stop(q, e))
        su_audit_only(q, su_audit(q, event, status, id, su_err_code(e), bytes));
    if (q->body_unread) {
        su_drain_small_h2(q);
        r->connection->keepalive = AP_CONN_CLOSE;
    }
    if (e == SU_ERR_ABORTED) {
        r->status = HTTP_BAD_REQUEST;  /* for the access log; nobody is listening */
        /* nothing is sent, not even to a client that only half-closed */
        r->connection->aborted = 1;
        return DONE;
    }
    if (e == SU_ERR_METHOD)
        apr_table_setn(r->headers_out, "Allow", q->allow);
    if (e == SU_ERR_UNAVAILABLE)
        apr_table_setn(r->headers_out, "Retry-After", SU_RETRY_AFTER);
    /* our own failures keep their details for the log */
    if (status >= 500 && e != SU_ERR_UNAVAILABLE && e != SU_ERR_NO_SPACE)
        message = NULL;
    return su_respond_error(r, status, e, message, q->request_id);
}

/* ---- a section's path without its final slash ---- */

/* Is this section one the module serves, at a plain path ending in '/'? */
static int su_served_prefix(ap_conf_vector_t *sec, const char *uri, size_t n)
{
    core_dir_config *cd = ap_get_core_module_config(sec);
    su_dir_conf_t *d = ap_get_module_config(sec, &secupload_module);

    if (d == NULL || (d->enable != SU_ENABLE_UPLOAD && d->enable != SU_ENABLE_FILES
                      && d->enable != SU_ENABLE_TUS)
        || cd->r != NULL || cd->d_is_fnmatch || cd->d == NULL)
        return 0;
    return strlen(cd->d) == n + 1 && cd->d[n] == '/' && strncmp(cd->d, uri, n) == 0;
}

/*
 * <Location /api/upload/> does not match /api/upload, which would get
 * Apache's HTML 404. A request for exactly the path of an upload or files
 * <Location> without its final slash is sent there with 308, which keeps
 * the method and the body (after a 301 or 302, curl -L and browsers send a
 * POST again as a GET, without the file), with a JSON body of its own.
 */
static int su_translate_slash(request_rec *r)
{
    core_server_config *cs = ap_get_core_module_config(r->server->module_config);
    ap_conf_vector_t **sec;
    apr_table_t *t;
    const char *to;
    size_t n;
    int i;

    if (r->uri == NULL || r->uri[0] != '/' || cs->sec_url == NULL)
        return DECLINED;
    n = strlen(r->uri);
    sec = (ap_conf_vector_t **)cs->sec_url->elts;
    for (i = 0; i < cs->sec_url->nelts && !su_served_prefix(sec[i], r->uri, n); i++)
        ;
    if (i == cs->sec_url->nelts)
        return DECLINED;
    to = apr_pstrcat(r->pool, r->uri, "/", r->args ? "?" : "", r->args, NULL);
    t = apr_table_make(r->pool, 3);
    apr_table_setn(t, "status", "redirect");
    apr_table_setn(t, "message", "This is served with a final slash.");
    apr_table_setn(t, "location", to);
    apr_table_setn(r->headers_out, "Location", to);
    su_respond(r, HTTP_PERMANENT_REDIRECT, su_json_table(r->pool, t, NULL, NULL));
    return DONE;
}

/* ---- dispatch ---- */

/* Gather what every request needs; NULL if the server is not set up. */
static su_req_t *su_req_create(request_rec *r)
{
    su_req_t *q = apr_pcalloc(r->pool, sizeof(*q));

    q->r = r;
    q->srv = su_srv(r->server);
    q->dir = ap_get_module_config(r->per_dir_config, &secupload_module);
    q->request_id = su_request_id(r);
    q->time = su_rfc3339(r->pool, r->request_time);
    if (q->srv->rt == NULL || !su_conf_in_use(q->srv)) {
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r, SU_LOGNO(00030)
                      "SetHandler %s is used, but SecUploadStorageDir and "
                      "SecUploadKeyFile are not configured for this server",
                      r->handler);
        return NULL;
    }
    apr_pool_cleanup_register(r->pool, q, su_req_release, apr_pool_cleanup_null);
    return q;
}

/*
 * A handler name alone serves nothing: SetHandler is open to any .htaccess
 * with AllowOverride FileInfo, and could otherwise serve stored files, or
 * take uploads, around the admin's sections. Only where the admin enabled
 * that very handler (so a .htaccess cannot switch an upload section to the
 * files handler either) does the module answer.
 */
static int su_enabled(request_rec *r, int want)
{
    static const char *const names[] = { "Off", "upload", "files", "tus" };
    const su_dir_conf_t *d = ap_get_module_config(r->per_dir_config,
                                                  &secupload_module);

    if (d->enable == want)
        return 1;
    ap_log_rerror(APLOG_MARK, APLOG_WARNING, 0, r, SU_LOGNO(00240)
                  "SetHandler %s is ignored here: %s%s; the module declines, "
                  "Apache's default handler answers", r->handler,
                  d->enable == SU_UNSET ? "no SecUploadEnable applies"
                  : "SecUploadEnable is ",
                  d->enable == SU_UNSET ? "" : names[d->enable]);
    return 0;
}

/* Which handler r->handler names: SU_ENABLE_*, or SU_UNSET for none. */
static int su_handler_kind(const char *h)
{
    if (strcmp(h, "secupload") == 0)
        return SU_ENABLE_UPLOAD;
    if (strcmp(h, "secupload-files") == 0)
        return SU_ENABLE_FILES;
    if (strcmp(h, "secupload-tus") == 0)
        return SU_ENABLE_TUS;
    return SU_UNSET;
}

static int su_handler(request_rec *r)
{
    int kind;
    su_req_t *q;

    if (r->handler == NULL || (kind = su_handler_kind(r->handler)) == SU_UNSET)
        return DECLINED;
    if (!su_enabled(r, kind))
        return DECLINED;
    q = su_req_create(r);
    if (q == NULL) {
        r->connection->keepalive = AP_CONN_CLOSE;
        su_note(r, NULL, su_err_code(SU_ERR_INTERNAL), NULL);
        return su_respond_error(r, HTTP_INTERNAL_SERVER_ERROR, SU_ERR_INTERNAL,
                                NULL, su_request_id(r));
    }
    if (kind == SU_ENABLE_UPLOAD) {
        q->action = "upload";
        q->allow = "POST";
        q->body_unread = 1;
        q->body_untouched = 1;
        su_stat_upload_begins(q);
        return su_handle_upload(q);
    }
    if (kind == SU_ENABLE_TUS)
        return su_handle_tus(q);
    return su_handle_files(q);
}

static void su_register_hooks(apr_pool_t *p)
{
    static const char *const watchdog[] = { "mod_watchdog.c", NULL };
    (void)p;
    ap_hook_check_config(su_check_config, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_post_config(su_post_config, NULL, NULL, APR_HOOK_MIDDLE);
    /* before mod_watchdog's: it sets up the instances made in post_config,
     * and starts the settler's thread in child_init, which then finds each
     * child's state complete */
    ap_hook_post_config(su_settler_post_config, NULL, watchdog, APR_HOOK_LAST);
    ap_hook_post_config(su_tus_post_config, NULL, watchdog, APR_HOOK_LAST);
    ap_hook_child_init(su_child_init, NULL, watchdog, APR_HOOK_MIDDLE);
    ap_hook_handler(su_handler, NULL, NULL, APR_HOOK_MIDDLE);
    /* before mod_alias and mod_rewrite, which might map the path elsewhere */
    ap_hook_translate_name(su_translate_slash, NULL, NULL, APR_HOOK_FIRST);
    /* after the <Location> walk, before authentication (mod_secupload_cors.c) */
    ap_hook_header_parser(su_cors, NULL, NULL, APR_HOOK_MIDDLE);
    su_body_error_filter = ap_register_output_filter("SECUPLOAD_BODY_ERROR",
                                                     su_catch_body_error, NULL,
                                                     AP_FTYPE_CONTENT_SET);
    su_stat_register_hooks(p);
}

AP_DECLARE_MODULE(secupload) = {
    STANDARD20_MODULE_STUFF,
    su_create_dir_conf,
    su_merge_dir_conf,
    su_create_srv_conf,
    su_merge_srv_conf,
    su_cmds,
    su_register_hooks,
#if defined(AP_MODULE_FLAG_ALWAYS_MERGE)
    AP_MODULE_FLAG_ALWAYS_MERGE
#endif
};
