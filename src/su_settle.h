/*
 * Unknown outcomes of a metadata write or delete, settled against Redis: a
 * write sent on a connection that then broke may have been applied, so its
 * hash is removed (at once, or later from its marker DIR/.unsettled/<id>,
 * by whichever process reaches Redis first); a delete that broke is asked
 * after until Redis says whether it ran. docs/design.md, "Settling".
 */
#ifndef SU_SETTLE_H
#define SU_SETTLE_H

#include <apr_pools.h>
#include <apr_tables.h>

#include "su_common.h"
#include "su_redis.h"

/* Who settles a marker, and the audit words of a settled upload. */
typedef struct su_settle_by {
    const char *event;       /* of the entry written, e.g. "upload.rejected" */
    const char *status;      /* the failed request's answer, e.g. "503" */
    const char *settled_by;  /* the settling request's id (or the settler's) */
    const char *settled_time;
} su_settle_by_t;

/* What one process last saw of the marker directories (thread-safe). */
typedef struct su_settle su_settle_t;

su_err_t su_settle_create(apr_pool_t *p, su_settle_t **out);

/* The note a marker keeps: the failed request's fields, as JSON. */
const char *su_settle_note(apr_pool_t *p, const char *client_ip,
                           const char *user, const char *request_id,
                           const char *time, apr_uint64_t bytes);

/* The audit entry of marker id under dir, settled by `by`: it speaks of the
 * failed request (from the note; empty fields if the note is lost). */
apr_array_header_t *su_settle_audit(apr_pool_t *p, const char *dir,
                                    const char *id, const su_settle_by_t *by);

/* Remove id's hash with audit; SU_OK once it surely is not there. */
su_err_t su_settle_one(su_redis_t *r, apr_pool_t *p, const char *id,
                       const apr_array_header_t *audit);

/*
 * Settle id now, on fresh connections from pool, retrying until timeout_ms
 * passed: SU_OK once its hash is surely gone, SU_ERR_UNAVAILABLE if Redis
 * did not answer in time (then the caller marks it).
 */
su_err_t su_settle_now(su_redis_pool_t *pool, apr_pool_t *p, const char *id,
                       const apr_array_header_t *audit, int timeout_ms);

/*
 * The marked ids under dir to settle, or NULL: one stat when the marker
 * directory did not change since st last settled all of it.
 */
apr_array_header_t *su_settle_due(su_settle_t *st, apr_pool_t *p,
                                  const char *dir);

/*
 * Settle ids (from su_settle_due) on r (NULL: Redis is unreachable), each
 * with its own audit entry, and clear their markers; the ids settled are
 * pushed onto done (when not NULL). Returns how many are left: then the
 * next su_settle_due reads the directory again. r is no longer usable if
 * it broke meanwhile, and is then not used further.
 */
int su_settle_ids(su_settle_t *st, su_redis_t *r, apr_pool_t *p,
                  const char *dir, const apr_array_header_t *ids,
                  const su_settle_by_t *by, apr_array_header_t *done);

/*
 * A delete of id's hash was sent on a connection that then broke: did it
 * run? Asked again on fresh connections from pool within timeout_ms (the
 * deadline inside the delete means one not applied by then never will be).
 * SU_OK: it ran; SU_ERR_UNAVAILABLE: it did not, or nobody can tell.
 */
su_err_t su_settle_deleted(su_redis_pool_t *pool, apr_pool_t *p,
                           const char *id, int timeout_ms);

#endif
