/*
 * Metadata and audit trail in Redis (docs/format.md, "Redis"), through
 * hiredis.
 *
 * A su_redis_t is one connection, used by one thread at a time. A
 * su_redis_pool_t (apr_reslist) hands connections out to request threads;
 * a connection that saw an I/O or protocol error is marked broken and is
 * dropped on release, so the next acquire reconnects (Redis restarts need no
 * Apache restart). Every connect and command honours the timeout.
 */
#ifndef SU_REDIS_H
#define SU_REDIS_H

#include <apr_pools.h>
#include <apr_tables.h>
#include "su_common.h"

/* a host and port, e.g. of a sentinel */
typedef struct su_redis_addr {
    const char *host;
    int port;
} su_redis_addr_t;

/* at most this many sentinels are asked */
#define SU_REDIS_SENTINELS_MAX 16

typedef struct su_redis_conf {
    const char *host;         /* NULL when socket_path or sentinels are used */
    int port;
    const char *socket_path;  /* unix socket, or NULL */
    const char *password;     /* AUTH on connect, or NULL */
    const char *user;         /* ACL user: AUTH user password, or NULL */
    /* Sentinel: the master's name and the sentinels to ask for it
     * (su_redis_addr_t), or NULL; then host and socket_path are NULL */
    const char *sentinel_master;
    const apr_array_header_t *sentinels;
    int db;                   /* SELECT on connect when non-zero */
    int timeout_ms;           /* connect and command timeout */
    const char *prefix;       /* of every key, e.g. "secupload:" */
    long audit_maxlen;        /* XADD MAXLEN ~ N */
    /* an upload's metadata waits for this many replicas (WAIT); 0: off */
    int wait_replicas;
    int wait_timeout_ms;      /* WAIT's timeout; 0: half of timeout_ms */
} su_redis_conf_t;

/* a field of a hash or stream entry */
typedef struct su_kv {
    const char *k;
    const char *v;
} su_kv_t;

typedef struct su_redis su_redis_t;
typedef struct su_redis_pool su_redis_pool_t;

/* Every field at its default (su_defaults.h): no password, database 0. */
void su_redis_conf_defaults(su_redis_conf_t *conf);

/*
 * Parse "HOST:PORT", "[v6]:PORT", "HOST" (port 6379) or "/path/to.sock" into
 * conf->host/port/socket_path. SU_ERR_BAD_REQUEST with *err on bad input.
 */
su_err_t su_redis_parse_server(apr_pool_t *p, const char *arg,
                               su_redis_conf_t *conf, const char **err);

/*
 * SecUploadRedisSentinel MASTER HOST:PORT...: the master's name (printable,
 * no blank, at most 128 bytes) and 1..SU_REDIS_SENTINELS_MAX sentinel
 * addresses ("HOST:PORT", "[v6]:PORT", "HOST" for port 26379). Sets
 * conf->sentinel_master and conf->sentinels, and clears host and socket.
 */
su_err_t su_redis_parse_sentinels(apr_pool_t *p, const char *master, int n,
                                  const char *const *addrs,
                                  su_redis_conf_t *conf, const char **err);

/* WAIT's timeout in force: as set, else half of the Redis timeout. */
int su_redis_wait_timeout_ms(const su_redis_conf_t *conf);

/*
 * Connect (with AUTH and SELECT as configured; through the sentinels and
 * with the role check when conf->sentinel_master is set, retrying until
 * the timeout has passed). The connection is freed by
 * su_redis_close or by a cleanup on p. On failure SU_ERR_UNAVAILABLE and
 * *err (from p) says why, never the password.
 */
su_err_t su_redis_connect(apr_pool_t *p, const su_redis_conf_t *conf,
                          su_redis_t **out, const char **err);
void su_redis_close(su_redis_t *r);
/* False once the connection has seen an error and must not be reused. */
int su_redis_usable(const su_redis_t *r);
/*
 * One round trip (PING): SU_OK if the server answered. A connection that
 * fails it is marked broken. Used before a write that must not be lost to
 * a connection the server closed or forgot while it sat idle.
 */
su_err_t su_redis_ping(su_redis_t *r, apr_pool_t *p);
/* True once a command on this connection timed out (a stalled server, as
 * opposed to a closed connection). */
int su_redis_timed_out(const su_redis_t *r);
/* True once the server refused a write as a replica (-READONLY) or was
 * found not to be a master: nothing of that command was applied. */
int su_redis_refused(const su_redis_t *r);
/* The last error message on this connection (never a secret), or "". */
const char *su_redis_errstr(const su_redis_t *r);

/*
 * One MULTI/EXEC: HSET PREFIXfile:{id} with meta fields, and
 * XADD PREFIXaudit MAXLEN ~ N * with the audit fields.
 * SU_ERR_UNAVAILABLE on any failure (nothing, or the whole, was applied).
 */
su_err_t su_redis_store(su_redis_t *r, apr_pool_t *p, const char *id,
                        const apr_array_header_t *meta /* su_kv_t */,
                        const apr_array_header_t *audit /* su_kv_t */);

/*
 * WAIT n timeout_ms: how many replicas acknowledged every write made on
 * this connection so far (*acked). SU_ERR_UNAVAILABLE if it failed.
 */
su_err_t su_redis_wait(su_redis_t *r, apr_pool_t *p, int n, int timeout_ms,
                       int *acked);

/* XADD PREFIXaudit MAXLEN ~ N * fields... */
su_err_t su_redis_audit(su_redis_t *r, apr_pool_t *p,
                        const apr_array_header_t *audit /* su_kv_t */);

/* HGETALL PREFIXfile:{id} into *meta; SU_ERR_NOT_FOUND if no such hash. */
su_err_t su_redis_get_meta(su_redis_t *r, apr_pool_t *p, const char *id,
                           apr_table_t **meta);

/* MULTI; DEL PREFIXfile:{id}; XADD audit...; EXEC. SU_ERR_NOT_FOUND if the
 * hash did not exist (the audit entry is still written). */
su_err_t su_redis_delete(su_redis_t *r, apr_pool_t *p, const char *id,
                         const apr_array_header_t *audit /* su_kv_t */);

/*
 * Add field to the existing hash PREFIXfile:{id} if it lacks it (in a
 * script: a hash deleted meanwhile is not brought back, and a value already
 * there is kept). *added is 1 if written, 0 if the field was there;
 * SU_ERR_NOT_FOUND if there is no such hash.
 */
su_err_t su_redis_meta_add(su_redis_t *r, apr_pool_t *p, const char *id,
                           const char *field, const char *value, int *added);

/*
 * A Lua script (EVAL) for a feature with keys of its own (resumable
 * uploads): keys[] are named without the prefix, which is added here;
 * args[i] is argl[i] bytes (argl NULL: NUL-terminated strings). *out gets
 * the reply as values: a single value, or an array's elements (one level).
 * An error reply is SU_ERR_UNAVAILABLE, the connection staying usable.
 */
typedef struct su_redis_val {
    const char *s;            /* bytes (NUL-terminated), "" for nil */
    size_t len;
    int nil;
} su_redis_val_t;
su_err_t su_redis_eval(su_redis_t *r, apr_pool_t *p, const char *script,
                       int nkeys, const char *const *keys,
                       int nargs, const char *const *args, const size_t *argl,
                       apr_array_header_t **out /* su_redis_val_t */);

/* All ids with a PREFIXfile:* hash (SCAN), as an array of const char *. */
su_err_t su_redis_list_ids(su_redis_t *r, apr_pool_t *p,
                           apr_array_header_t **ids);

/* ---- pool for threaded servers ---- */

/*
 * A pool of up to hmax connections created lazily from conf. Lives as long
 * as p (a process pool in a child). Connections are made on acquire, so a
 * Redis that is down at start-up is no error.
 */
su_err_t su_redis_pool_create(apr_pool_t *p, const su_redis_conf_t *conf,
                              int hmax, su_redis_pool_t **out);
/* SU_ERR_UNAVAILABLE (and *err) if no connection could be made in time. */
su_err_t su_redis_acquire(su_redis_pool_t *pool, su_redis_t **r,
                          const char **err, apr_pool_t *errpool);
/* Return a connection; a broken one is destroyed instead of kept. */
void su_redis_release(su_redis_pool_t *pool, su_redis_t *r);
/* fn(baton) for every connection the pool makes (a figure for the server's
 * status); set before the pool is first used, as it is not locked. */
void su_redis_pool_on_connect(su_redis_pool_t *pool, void (*fn)(void *),
                              void *baton);

#endif
