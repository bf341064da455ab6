/*
 * su_settle: unknown outcomes of the metadata write and delete, settled
 * against Redis from the markers the store keeps (docs/design.md,
 * "Settling").
 */
#include <apr_strings.h>
#include <apr_thread_mutex.h>
#include <apr_time.h>

#include "su_json.h"
#include "su_settle.h"
#include "su_store.h"

struct su_settle {
#if APR_HAS_THREADS
    apr_thread_mutex_t *mu;      /* guards seen */
#endif
    /* mtime of DIR/.unsettled when this process last settled it all; 0:
     * read it next time */
    apr_int64_t seen;
};

/* between two tries of a write's settling */
#define SU_SETTLE_RETRY_MS 100

su_err_t su_settle_create(apr_pool_t *p, su_settle_t **out)
{
    su_settle_t *st = apr_pcalloc(p, sizeof(*st));

#if APR_HAS_THREADS
    if (apr_thread_mutex_create(&st->mu, APR_THREAD_MUTEX_DEFAULT, p)
        != APR_SUCCESS)
        return SU_ERR_INTERNAL;
#endif
    *out = st;
    return SU_OK;
}

static void su_settle_lock(su_settle_t *st, int lock)
{
#if APR_HAS_THREADS
    if (lock)
        apr_thread_mutex_lock(st->mu);
    else
        apr_thread_mutex_unlock(st->mu);
#else
    (void)st; (void)lock;
#endif
}

const char *su_settle_note(apr_pool_t *p, const char *client_ip,
                           const char *user, const char *request_id,
                           const char *time, apr_uint64_t bytes)
{
    apr_table_t *t = apr_table_make(p, 5);

    apr_table_setn(t, "client_ip", client_ip ? client_ip : "");
    apr_table_setn(t, "user", user ? user : "");
    apr_table_setn(t, "request_id", request_id ? request_id : "");
    apr_table_setn(t, "time", time ? time : "");
    apr_table_setn(t, "bytes", apr_psprintf(p, "%" APR_UINT64_T_FMT, bytes));
    return su_json_table(p, t, NULL, NULL);
}

static void su_settle_kv(apr_array_header_t *a, const char *k, const char *v)
{
    su_kv_t *kv = apr_array_push(a);
    kv->k = k;
    kv->v = v ? v : "";
}

apr_array_header_t *su_settle_audit(apr_pool_t *p, const char *dir,
                                    const char *id, const su_settle_by_t *by)
{
    apr_table_t *t = su_json_parse_table(p, su_store_unsettled_note(p, dir, id));
    apr_array_header_t *a = apr_array_make(p, 12, sizeof(su_kv_t));

    if (t == NULL)
        t = apr_table_make(p, 1);
    su_settle_kv(a, "event", by->event);
    su_settle_kv(a, "status", by->status);
    su_settle_kv(a, "id", id);
    su_settle_kv(a, "reason", su_err_code(SU_ERR_UNAVAILABLE));
    su_settle_kv(a, "bytes", apr_table_get(t, "bytes"));
    su_settle_kv(a, "client_ip", apr_table_get(t, "client_ip"));
    su_settle_kv(a, "user", apr_table_get(t, "user"));
    su_settle_kv(a, "request_id", apr_table_get(t, "request_id"));
    su_settle_kv(a, "time", apr_table_get(t, "time"));
    su_settle_kv(a, "settled_by", by->settled_by);
    su_settle_kv(a, "settled_time", by->settled_time);
    return a;
}

su_err_t su_settle_one(su_redis_t *r, apr_pool_t *p, const char *id,
                       const apr_array_header_t *audit)
{
    su_err_t rv = su_redis_delete(r, p, id, audit);
    return rv == SU_ERR_NOT_FOUND ? SU_OK : rv;
}

su_err_t su_settle_now(su_redis_pool_t *pool, apr_pool_t *p, const char *id,
                       const apr_array_header_t *audit, int timeout_ms)
{
    apr_time_t until = apr_time_now() + apr_time_from_msec(timeout_ms);

    do {
        su_redis_t *r = NULL;
        const char *err;
        su_err_t rv = SU_ERR_UNAVAILABLE;
        if (su_redis_acquire(pool, &r, &err, p) == SU_OK) {
            rv = su_settle_one(r, p, id, audit);
            su_redis_release(pool, r);
        }
        if (rv == SU_OK)
            return SU_OK;
        apr_sleep(apr_time_from_msec(SU_SETTLE_RETRY_MS));
    } while (apr_time_now() < until);
    return SU_ERR_UNAVAILABLE;
}

apr_array_header_t *su_settle_due(su_settle_t *st, apr_pool_t *p,
                                  const char *dir)
{
    apr_array_header_t *ids;

    su_settle_lock(st, 1);
    ids = su_store_unsettled(p, dir, &st->seen);
    su_settle_lock(st, 0);
    return ids;
}

int su_settle_ids(su_settle_t *st, su_redis_t *r, apr_pool_t *p,
                  const char *dir, const apr_array_header_t *ids,
                  const su_settle_by_t *by, apr_array_header_t *done)
{
    int i, left = 0;

    for (i = 0; ids && i < ids->nelts; i++) {
        const char *id = APR_ARRAY_IDX(ids, i, const char *);
        if (r && su_redis_usable(r)
            && su_settle_one(r, p, id, su_settle_audit(p, dir, id, by)) == SU_OK) {
            su_store_clear_unsettled(p, dir, id);
            if (done)
                APR_ARRAY_PUSH(done, const char *) = id;
            continue;
        }
        left++;
    }
    if (left) {
        /* look again next time */
        su_settle_lock(st, 1);
        st->seen = 0;
        su_settle_lock(st, 0);
    }
    return left;
}

su_err_t su_settle_deleted(su_redis_pool_t *pool, apr_pool_t *p,
                           const char *id, int timeout_ms)
{
    apr_time_t until = apr_time_now() + apr_time_from_msec(timeout_ms);

    do {
        su_redis_t *r = NULL;
        const char *err;
        apr_table_t *meta;
        su_err_t rv = SU_ERR_UNAVAILABLE;
        apr_sleep(apr_time_from_msec(timeout_ms / 2 + 1));
        if (su_redis_acquire(pool, &r, &err, p) == SU_OK) {
            rv = su_redis_get_meta(r, p, id, &meta);
            su_redis_release(pool, r);
        }
        if (rv == SU_ERR_NOT_FOUND)
            return SU_OK;
        if (rv == SU_OK)
            return SU_ERR_UNAVAILABLE;
    } while (apr_time_now() < until);
    return SU_ERR_UNAVAILABLE;
}
