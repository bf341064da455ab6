/*
 * mod_secupload: settling, the Apache side. An upload's metadata write
 * whose outcome was lost is taken back at once or marked on disk; marked
 * ids are settled by the next request that reaches Redis and, through
 * mod_watchdog, every second without waiting for one (docs/design.md,
 * "Settling"). The work itself is the core's (src/su_settle.c).
 */
#include "httpd.h"
#include "http_config.h"
#include "http_log.h"
#include "http_core.h"
#include "mod_watchdog.h"

#include <apr_optional.h>
#include <errno.h>

#include "su_settle.h"
#include "su_store.h"

#include "mod_secupload.h"

/* log lines name the module and obey LogLevel secupload:… (in
 * mod_secupload.c, AP_DECLARE_MODULE does the same) */
APLOG_USE_MODULE(secupload);

/* the watchdog instance of the settler, and how often it looks */
#define SU_SETTLER_NAME     "_secupload_settler_"
#define SU_SETTLER_INTERVAL AP_WD_TM_INTERVAL
/* settled_by of an entry the settler wrote (no request settled it) */
#define SU_SETTLER_BY       "settler"

static su_settle_by_t su_settle_by(apr_pool_t *p, const char *settled_by)
{
    su_settle_by_t by = { SU_EV_UPLOAD_REJECTED,
                          APR_STRINGIFY(HTTP_SERVICE_UNAVAILABLE), settled_by,
                          su_rfc3339(p, apr_time_now()) };
    return by;
}

/*
 * Settle what earlier requests (of any process) could not: one stat of the
 * marker directory per request, read only when it changed.
 */
void su_settle_pending(su_req_t *q)
{
    su_srv_rt_t *rt = q->srv->rt;
    apr_array_header_t *ids, *done;
    su_settle_by_t by;
    int i;

    ids = su_settle_due(rt->settle, q->r->pool, q->srv->storage_dir);
    if (ids == NULL)
        return;
    by = su_settle_by(q->r->pool, q->request_id);
    done = apr_array_make(q->r->pool, ids->nelts, sizeof(const char *));
    if (su_settle_ids(rt->settle, q->redis, q->r->pool, q->srv->storage_dir,
                      ids, &by, done) && q->redis && !su_redis_usable(q->redis))
        su_req_drop_redis(q);
    for (i = 0; i < done->nelts; i++)
        ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, q->r, SU_LOGNO(00012)
                      "settled the metadata of failed upload %s",
                      APR_ARRAY_IDX(done, i, const char *));
}

/*
 * The metadata write of upload id failed on a broken connection, so it may
 * have been applied. Remove it now, retrying within the Redis timeout; what
 * cannot be removed yet is marked on disk for the settler or the next
 * request that reaches Redis, in any process (`secupload fsck` lists it as
 * unsettled meanwhile).
 */
void su_settle_upload(su_req_t *q, const char *id, apr_uint64_t bytes)
{
    request_rec *r = q->r;
    apr_array_header_t *audit = su_audit(q, SU_EV_UPLOAD_REJECTED,
                                         HTTP_SERVICE_UNAVAILABLE, id,
                                         su_err_code(SU_ERR_UNAVAILABLE), bytes);
    su_req_drop_redis(q);
    if (su_settle_now(q->srv->rt->redis, r->pool, id, audit,
                      su_conf_redis_timeout(q->srv)) == SU_OK) {
        ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r, SU_LOGNO(00012)
                      "settled the metadata of failed upload %s", id);
        return;
    }
    ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r, SU_LOGNO(00013)
                  "the metadata of failed upload %s may remain in Redis; it will "
                  "be removed when Redis answers again (secupload fsck lists it "
                  "as unsettled meanwhile)", id);
    if (su_store_mark_unsettled(r->pool, q->srv->storage_dir, id,
                                su_settle_note(r->pool, r->useragent_ip, r->user,
                                               q->request_id, q->time, bytes))
        != SU_OK)
        ap_log_rerror(APLOG_MARK, APLOG_ERR, errno, r, SU_LOGNO(00014)
                      "cannot mark upload %s as unsettled under %s/"
                      SU_STORE_UNSETTLED, id, q->srv->storage_dir);
}

/* ---- the settler: mod_watchdog's thread, in one child at a time ---- */

/* One round for server s: one stat when there is nothing to settle. */
static void su_settler_round(server_rec *s, apr_pool_t *p)
{
    su_srv_conf_t *c = su_srv(s);
    apr_array_header_t *ids, *done;
    su_redis_t *redis = NULL;
    const char *err = NULL;
    su_settle_by_t by;
    int i;

    if (c->rt == NULL
        || (ids = su_settle_due(c->rt->settle, p, c->storage_dir)) == NULL)
        return;
    if (su_redis_acquire(c->rt->redis, &redis, &err, p) != SU_OK)
        redis = NULL;   /* the markers stay, and are read again next round */
    by = su_settle_by(p, SU_SETTLER_BY);
    done = apr_array_make(p, ids->nelts, sizeof(const char *));
    su_settle_ids(c->rt->settle, redis, p, c->storage_dir, ids, &by, done);
    if (redis)
        su_redis_release(c->rt->redis, redis);
    for (i = 0; i < done->nelts; i++)
        ap_log_error(APLOG_MARK, APLOG_INFO, 0, s, SU_LOGNO(00012)
                     "settled the metadata of failed upload %s",
                     APR_ARRAY_IDX(done, i, const char *));
}

static apr_status_t su_settler_tick(int state, void *data, apr_pool_t *p)
{
    if (state == AP_WATCHDOG_STATE_RUNNING)
        su_settler_round(data, p);
    return APR_SUCCESS;
}

/*
 * One singleton watchdog: its thread runs in one child at a time (another
 * takes over when that child ends), so markers are not raced for by every
 * child at once; a settle is idempotent, so the requests that settle too
 * do no harm. Without mod_watchdog, requests alone settle, as they always
 * do.
 */
static int su_settler_wants(const su_srv_conf_t *c)
{
    return su_conf_in_use(c);
}

/*
 * Periodic work of the module: cb on a singleton mod_watchdog instance
 * named name, every interval, for every server that wants it (its
 * server_rec as the callback's data). The caller says in its own log line
 * what it means when mod_watchdog is missing or refuses.
 */
su_watchdog_t su_watchdog_start(apr_pool_t *pconf, server_rec *s, const char *name,
                                apr_interval_time_t interval,
                                int (*wants)(const su_srv_conf_t *),
                                ap_watchdog_callback_fn_t *cb, apr_status_t *rv)
{
    APR_OPTIONAL_FN_TYPE(ap_watchdog_get_instance) *get_instance;
    APR_OPTIONAL_FN_TYPE(ap_watchdog_register_callback) *register_cb;
    ap_watchdog_t *wd;
    server_rec *v;

    *rv = APR_SUCCESS;
    for (v = s; v && !wants(su_srv(v)); v = v->next)
        ;
    if (v == NULL || ap_state_query(AP_SQ_MAIN_STATE) == AP_SQ_MS_CREATE_PRE_CONFIG)
        return SU_WD_NOT_NEEDED;
    get_instance = APR_RETRIEVE_OPTIONAL_FN(ap_watchdog_get_instance);
    register_cb = APR_RETRIEVE_OPTIONAL_FN(ap_watchdog_register_callback);
    if (!get_instance || !register_cb)
        return SU_WD_NO_MODULE;
    *rv = get_instance(&wd, name, 0, 1, pconf);
    for (; *rv == APR_SUCCESS && v; v = v->next)
        if (wants(su_srv(v)))
            *rv = register_cb(wd, interval, v, cb);
    return *rv == APR_SUCCESS ? SU_WD_STARTED : SU_WD_FAILED;
}

int su_settler_post_config(apr_pool_t *pconf, apr_pool_t *plog,
                           apr_pool_t *ptemp, server_rec *s)
{
    apr_status_t rv;
    (void)plog; (void)ptemp;

    switch (su_watchdog_start(pconf, s, SU_SETTLER_NAME, SU_SETTLER_INTERVAL,
                              su_settler_wants, su_settler_tick, &rv)) {
    case SU_WD_NO_MODULE:
        ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, s, SU_LOGNO(00300)
                     "mod_watchdog is not loaded: uploads marked unsettled are "
                     "settled only by later requests");
        break;
    case SU_WD_FAILED:
        ap_log_error(APLOG_MARK, APLOG_WARNING, rv, s, SU_LOGNO(00301)
                     "cannot start the settler on mod_watchdog: uploads "
                     "marked unsettled are settled only by later requests");
        break;
    default:
        break;
    }
    return OK;
}
