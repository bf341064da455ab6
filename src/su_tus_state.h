/*
 * A resumable upload's state in Redis (docs/tus.md): the hash
 * PREFIXtus:{id} (length, offset, name, type, the client's Upload-Metadata,
 * created, expires, client_ip, user, request_id and the pending segment's
 * ciphertext), a lock PREFIXtus-lock:{id} (SET NX PX with a token: one
 * request at a time, across processes and nodes) and the sorted set
 * PREFIXtus-expiry (id by expiry time) that the expiry sweep reads. Every
 * change is one script, so it is applied whole or not at all.
 */
#ifndef SU_TUS_STATE_H
#define SU_TUS_STATE_H

#include <apr_pools.h>
#include <apr_tables.h>
#include "su_common.h"
#include "su_redis.h"

typedef struct su_tus_state {
    apr_uint64_t length;
    apr_uint64_t offset;
    apr_int64_t expires_ms;        /* Unix time in milliseconds */
    const char *name;
    const char *type;
    const char *metadata;          /* Upload-Metadata as the client sent it */
    const char *created;
    const char *client_ip;
    const char *user;
    const char *request_id;
    const unsigned char *tail;     /* the pending segment, sealed */
    size_t taillen;
    int done;                      /* stored: kept a while for HEAD */
} su_tus_state_t;

/* A new upload's state; SU_ERR_INTERNAL if the id is taken. */
su_err_t su_tus_state_create(su_redis_t *r, apr_pool_t *p, const char *id,
                             const su_tus_state_t *st);

/* The state without a lock (HEAD). SU_ERR_NOT_FOUND if none. */
su_err_t su_tus_state_get(su_redis_t *r, apr_pool_t *p, const char *id,
                          su_tus_state_t *st);

/*
 * Lock upload id with token for ttl_ms and read its state.
 * SU_ERR_NOT_FOUND if there is none (no lock kept); *locked set (and
 * SU_ERR_UNAVAILABLE not returned) when another holds the lock.
 */
su_err_t su_tus_state_lock(su_redis_t *r, apr_pool_t *p, const char *id,
                           const char *token, int ttl_ms, su_tus_state_t *st,
                           int *locked);

/* The lock kept for ttl_ms more; SU_ERR_NOT_FOUND if it is no longer ours. */
su_err_t su_tus_state_renew(su_redis_t *r, apr_pool_t *p, const char *id,
                            const char *token, int ttl_ms);
void su_tus_state_unlock(su_redis_t *r, apr_pool_t *p, const char *id,
                         const char *token);

/*
 * The new offset and pending segment, and the new expiry, if the lock is
 * still token's and the offset still old: else SU_ERR_NOT_FOUND.
 */
su_err_t su_tus_state_save(su_redis_t *r, apr_pool_t *p, const char *id,
                           const char *token, apr_uint64_t old,
                           apr_uint64_t offset, const unsigned char *tail,
                           size_t taillen, apr_int64_t expires_ms);

/* Stored: offset = length, no tail, kept keep_ms for HEAD, out of the
 * expiry set, unlocked. */
su_err_t su_tus_state_done(su_redis_t *r, apr_pool_t *p, const char *id,
                           apr_uint64_t length, apr_int64_t keep_ms);

/* Gone: the state, its lock and its expiry entry. */
su_err_t su_tus_state_delete(su_redis_t *r, apr_pool_t *p, const char *id);

/* Up to max ids whose expiry is at or before now_ms. */
su_err_t su_tus_state_expired(su_redis_t *r, apr_pool_t *p, apr_int64_t now_ms,
                              int max, apr_array_header_t **ids);

#endif
