/*
 * One job at a time on a thread of its own: the request's thread starts a
 * job, does something else (sends the previous piece of an answer, say),
 * then waits for it. Between start and wait, whatever the job touches is
 * the job's alone.
 */
#ifndef SU_ASYNC_H
#define SU_ASYNC_H

#include <apr_pools.h>

typedef void (*su_async_fn)(void *arg);
typedef struct su_async su_async_t;

/*
 * A helper whose thread is stopped and joined by a cleanup on p (after
 * waiting for a running job). NULL where no thread can be made: callers
 * then run their jobs in place.
 */
su_async_t *su_async_create(apr_pool_t *p);

/* Start fn(arg) on the thread. Only with no job running. */
void su_async_start(su_async_t *a, su_async_fn fn, void *arg);

/* Wait until the running job (if any) has returned. */
void su_async_wait(su_async_t *a);

#endif
