/* A resumable upload's state in Redis (su_tus_state.h). */
#include <string.h>

#include <apr_strings.h>

#include "su_tus_state.h"

#define SU_TUS_EXPIRY_KEY "tus-expiry"

static const char su_tus_lua_create[] =
    "if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end\n"
    "redis.call('HSET', KEYS[1], unpack(ARGV, 3))\n"
    "redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])\n"
    "return 1\n";

static const char su_tus_lua_get[] =
    "local h = redis.call('HGETALL', KEYS[1])\n"
    "if #h == 0 then return {'none'} end\n"
    "table.insert(h, 1, 'ok')\n"
    "return h\n";

static const char su_tus_lua_lock[] =
    "if not redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then\n"
    "  return {'locked'} end\n"
    "local h = redis.call('HGETALL', KEYS[1])\n"
    "if #h == 0 then redis.call('DEL', KEYS[2]) return {'none'} end\n"
    "table.insert(h, 1, 'ok')\n"
    "return h\n";

static const char su_tus_lua_renew[] =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then\n"
    "  return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end\n"
    "return 0\n";

static const char su_tus_lua_unlock[] =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then\n"
    "  return redis.call('DEL', KEYS[1]) end\n"
    "return 0\n";

static const char su_tus_lua_save[] =
    "if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end\n"
    "if redis.call('HGET', KEYS[1], 'offset') ~= ARGV[2] then return 0 end\n"
    "redis.call('HSET', KEYS[1], 'offset', ARGV[3], 'tail', ARGV[4],\n"
    "           'expires', ARGV[5])\n"
    "redis.call('ZADD', KEYS[3], ARGV[5], ARGV[6])\n"
    "return 1\n";

static const char su_tus_lua_done[] =
    "redis.call('HSET', KEYS[1], 'offset', ARGV[1], 'tail', '', 'done', '1')\n"
    "redis.call('PEXPIRE', KEYS[1], ARGV[2])\n"
    "redis.call('ZREM', KEYS[3], ARGV[3])\n"
    "redis.call('DEL', KEYS[2])\n"
    "return 1\n";

static const char su_tus_lua_delete[] =
    "redis.call('DEL', KEYS[1], KEYS[2])\n"
    "redis.call('ZREM', KEYS[3], ARGV[1])\n"
    "return 1\n";

static const char su_tus_lua_expired[] =
    "return redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])\n";

/* hash, lock, expiry set */
static const char *const *su_tus_keys(apr_pool_t *p, const char *id)
{
    const char **k = apr_palloc(p, 3 * sizeof(*k));

    k[0] = apr_pstrcat(p, "tus:", id, NULL);
    k[1] = apr_pstrcat(p, "tus-lock:", id, NULL);
    k[2] = SU_TUS_EXPIRY_KEY;
    return k;
}

static const char *su_tus_u64(apr_pool_t *p, apr_uint64_t v)
{
    return apr_psprintf(p, "%" APR_UINT64_T_FMT, v);
}

/* The first value of a script's answer as a number (0 if none). */
static apr_int64_t su_tus_first(const apr_array_header_t *a)
{
    return a->nelts ? apr_atoi64(APR_ARRAY_IDX(a, 0, su_redis_val_t).s) : 0;
}

static void su_tus_field(apr_pool_t *p, su_tus_state_t *st, const char *k,
                         const su_redis_val_t *v)
{
    if (strcmp(k, "length") == 0)
        st->length = (apr_uint64_t)apr_atoi64(v->s);
    else if (strcmp(k, "offset") == 0)
        st->offset = (apr_uint64_t)apr_atoi64(v->s);
    else if (strcmp(k, "expires") == 0)
        st->expires_ms = apr_atoi64(v->s);
    else if (strcmp(k, "tail") == 0) {
        st->tail = (const unsigned char *)v->s;
        st->taillen = v->len;
    } else if (strcmp(k, "done") == 0)
        st->done = strcmp(v->s, "1") == 0;
    else if (strcmp(k, "name") == 0)
        st->name = v->s;
    else if (strcmp(k, "type") == 0)
        st->type = v->s;
    else if (strcmp(k, "metadata") == 0)
        st->metadata = v->s;
    else if (strcmp(k, "created") == 0)
        st->created = v->s;
    else if (strcmp(k, "client_ip") == 0)
        st->client_ip = v->s;
    else if (strcmp(k, "user") == 0)
        st->user = v->s;
    else if (strcmp(k, "request_id") == 0)
        st->request_id = v->s;
    (void)p;
}

/* {'ok', k1, v1, ...} into st; {'none'} is SU_ERR_NOT_FOUND. */
static su_err_t su_tus_parse(apr_pool_t *p, const apr_array_header_t *a,
                             su_tus_state_t *st, int *locked)
{
    const su_redis_val_t *v = (const su_redis_val_t *)a->elts;
    int i;

    memset(st, 0, sizeof(*st));
    if (a->nelts < 1)
        return SU_ERR_UNAVAILABLE;
    if (strcmp(v[0].s, "locked") == 0 && locked) {
        *locked = 1;
        return SU_OK;
    }
    if (strcmp(v[0].s, "ok") != 0)
        return SU_ERR_NOT_FOUND;
    for (i = 1; i + 1 < a->nelts; i += 2)
        su_tus_field(p, st, v[i].s, &v[i + 1]);
    return SU_OK;
}

static void su_tus_kv(const char **args, int *n, const char *k, const char *v)
{
    args[(*n)++] = k;
    args[(*n)++] = v ? v : "";
}

su_err_t su_tus_state_create(su_redis_t *r, apr_pool_t *p, const char *id,
                             const su_tus_state_t *st)
{
    const char *args[32];
    size_t argl[32];
    apr_array_header_t *a;
    int n = 0, i;

    args[n++] = id;
    args[n++] = apr_psprintf(p, "%" APR_INT64_T_FMT, st->expires_ms);
    su_tus_kv(args, &n, "length", su_tus_u64(p, st->length));
    su_tus_kv(args, &n, "offset", "0");
    su_tus_kv(args, &n, "tail", "");
    su_tus_kv(args, &n, "expires", args[1]);
    su_tus_kv(args, &n, "name", st->name);
    su_tus_kv(args, &n, "type", st->type);
    su_tus_kv(args, &n, "metadata", st->metadata);
    su_tus_kv(args, &n, "created", st->created);
    su_tus_kv(args, &n, "client_ip", st->client_ip);
    su_tus_kv(args, &n, "user", st->user);
    su_tus_kv(args, &n, "request_id", st->request_id);
    for (i = 0; i < n; i++)
        argl[i] = strlen(args[i]);
    if (su_redis_eval(r, p, su_tus_lua_create, 2,
                      (const char *const[]){ su_tus_keys(p, id)[0], SU_TUS_EXPIRY_KEY },
                      n, args, argl, &a) != SU_OK)
        return SU_ERR_UNAVAILABLE;
    return su_tus_first(a) == 1 ? SU_OK : SU_ERR_INTERNAL;
}

su_err_t su_tus_state_get(su_redis_t *r, apr_pool_t *p, const char *id,
                          su_tus_state_t *st)
{
    apr_array_header_t *a;

    if (su_redis_eval(r, p, su_tus_lua_get, 1, su_tus_keys(p, id), 0, NULL,
                      NULL, &a) != SU_OK)
        return SU_ERR_UNAVAILABLE;
    return su_tus_parse(p, a, st, NULL);
}

su_err_t su_tus_state_lock(su_redis_t *r, apr_pool_t *p, const char *id,
                           const char *token, int ttl_ms, su_tus_state_t *st,
                           int *locked)
{
    const char *args[2] = { token, apr_itoa(p, ttl_ms) };
    apr_array_header_t *a;

    *locked = 0;
    if (su_redis_eval(r, p, su_tus_lua_lock, 2, su_tus_keys(p, id), 2, args,
                      NULL, &a) != SU_OK)
        return SU_ERR_UNAVAILABLE;
    return su_tus_parse(p, a, st, locked);
}

su_err_t su_tus_state_renew(su_redis_t *r, apr_pool_t *p, const char *id,
                            const char *token, int ttl_ms)
{
    const char *args[2] = { token, apr_itoa(p, ttl_ms) };
    apr_array_header_t *a;

    if (su_redis_eval(r, p, su_tus_lua_renew, 1, su_tus_keys(p, id) + 1, 2,
                      args, NULL, &a) != SU_OK)
        return SU_ERR_UNAVAILABLE;
    return su_tus_first(a) == 1 ? SU_OK : SU_ERR_NOT_FOUND;
}

void su_tus_state_unlock(su_redis_t *r, apr_pool_t *p, const char *id,
                         const char *token)
{
    const char *args[1] = { token };
    apr_array_header_t *a;

    /* a lock left behind goes by itself when its time is up */
    (void)su_redis_eval(r, p, su_tus_lua_unlock, 1, su_tus_keys(p, id) + 1, 1,
                        args, NULL, &a);
}

su_err_t su_tus_state_save(su_redis_t *r, apr_pool_t *p, const char *id,
                           const char *token, apr_uint64_t old,
                           apr_uint64_t offset, const unsigned char *tail,
                           size_t taillen, apr_int64_t expires_ms)
{
    const char *args[6] = { token, su_tus_u64(p, old), su_tus_u64(p, offset),
                            tail ? (const char *)tail : "",
                            apr_psprintf(p, "%" APR_INT64_T_FMT, expires_ms), id };
    size_t argl[6];
    apr_array_header_t *a;
    int i;

    for (i = 0; i < 6; i++)
        argl[i] = i == 3 ? (tail ? taillen : 0) : strlen(args[i]);
    if (su_redis_eval(r, p, su_tus_lua_save, 3, su_tus_keys(p, id), 6, args,
                      argl, &a) != SU_OK)
        return SU_ERR_UNAVAILABLE;
    return su_tus_first(a) == 1 ? SU_OK : SU_ERR_NOT_FOUND;
}

su_err_t su_tus_state_done(su_redis_t *r, apr_pool_t *p, const char *id,
                           apr_uint64_t length, apr_int64_t keep_ms)
{
    const char *args[3] = { su_tus_u64(p, length),
                            apr_psprintf(p, "%" APR_INT64_T_FMT, keep_ms), id };
    apr_array_header_t *a;

    return su_redis_eval(r, p, su_tus_lua_done, 3, su_tus_keys(p, id), 3, args,
                         NULL, &a);
}

su_err_t su_tus_state_delete(su_redis_t *r, apr_pool_t *p, const char *id)
{
    const char *args[1] = { id };
    apr_array_header_t *a;

    return su_redis_eval(r, p, su_tus_lua_delete, 3, su_tus_keys(p, id), 1, args,
                         NULL, &a);
}

su_err_t su_tus_state_expired(su_redis_t *r, apr_pool_t *p, apr_int64_t now_ms,
                              int max, apr_array_header_t **ids)
{
    const char *args[2] = { apr_psprintf(p, "%" APR_INT64_T_FMT, now_ms),
                            apr_itoa(p, max) };
    const char *key = SU_TUS_EXPIRY_KEY;
    apr_array_header_t *a;
    int i;

    if (su_redis_eval(r, p, su_tus_lua_expired, 1, &key, 2, args, NULL, &a)
        != SU_OK)
        return SU_ERR_UNAVAILABLE;
    *ids = apr_array_make(p, a->nelts, sizeof(const char *));
    for (i = 0; i < a->nelts; i++)
        APR_ARRAY_PUSH(*ids, const char *) = APR_ARRAY_IDX(a, i, su_redis_val_t).s;
    return SU_OK;
}
