#include "su_async.h"

#include <apr_thread_cond.h>
#include <apr_thread_mutex.h>
#include <apr_thread_proc.h>

#if defined(__linux__)
#include <pthread.h>
#include <sched.h>
#endif

#if APR_HAS_THREADS
struct su_async {
    apr_pool_t *tpool;              /* unmanaged: the thread's own */
    apr_thread_t *thread;
    apr_thread_mutex_t *mu;
    apr_thread_cond_t *cv;
    su_async_fn fn;                 /* the job, under mu; NULL when none */
    void *arg;
    int busy;                       /* started and not yet returned */
    int stop;
};

/*
 * The helper runs as SCHED_BATCH: same share of the CPU, but waking it
 * does not preempt the thread that handed it work. That thread carries the
 * serial part (the AES-CBC chain and the I/O); with 2 cores, 3 threads and
 * the client, wakeup preemption by its helpers cost it its core again and
 * again.
 */
static void su_async_batch(void)
{
#if defined(__linux__) && defined(SCHED_BATCH)
    struct sched_param sp = { 0 };
    (void)pthread_setschedparam(pthread_self(), SCHED_BATCH, &sp);
#endif
}

static void *APR_THREAD_FUNC su_async_main(apr_thread_t *t, void *data)
{
    su_async_t *a = data;

    su_async_batch();
    apr_thread_mutex_lock(a->mu);
    for (;;) {
        while (a->fn == NULL && !a->stop)
            apr_thread_cond_wait(a->cv, a->mu);
        if (a->fn == NULL)
            break;
        {
            su_async_fn fn = a->fn;
            void *arg = a->arg;
            apr_thread_mutex_unlock(a->mu);
            fn(arg);
            apr_thread_mutex_lock(a->mu);
        }
        a->fn = NULL;
        a->busy = 0;
        apr_thread_cond_broadcast(a->cv);
    }
    apr_thread_mutex_unlock(a->mu);
    apr_thread_exit(t, APR_SUCCESS);
    return NULL;
}

void su_async_wait(su_async_t *a)
{
    if (a->thread == NULL)      /* after the cleanup: nothing runs */
        return;
    apr_thread_mutex_lock(a->mu);
    while (a->busy)
        apr_thread_cond_wait(a->cv, a->mu);
    apr_thread_mutex_unlock(a->mu);
}

void su_async_start(su_async_t *a, su_async_fn fn, void *arg)
{
    apr_thread_mutex_lock(a->mu);
    a->fn = fn;
    a->arg = arg;
    a->busy = 1;
    apr_thread_cond_broadcast(a->cv);
    apr_thread_mutex_unlock(a->mu);
}

static apr_status_t su_async_cleanup(void *data)
{
    su_async_t *a = data;
    apr_status_t ts;

    if (a->thread == NULL)
        return APR_SUCCESS;
    su_async_wait(a);
    apr_thread_mutex_lock(a->mu);
    a->stop = 1;
    apr_thread_cond_broadcast(a->cv);
    apr_thread_mutex_unlock(a->mu);
    apr_thread_join(&ts, a->thread);
    a->thread = NULL;
    apr_pool_destroy(a->tpool);
    return APR_SUCCESS;
}

su_async_t *su_async_create(apr_pool_t *p)
{
    su_async_t *a = apr_pcalloc(p, sizeof(*a));

    if (apr_pool_create_unmanaged_ex(&a->tpool, NULL, NULL) != APR_SUCCESS)
        return NULL;
    if (apr_thread_mutex_create(&a->mu, APR_THREAD_MUTEX_DEFAULT, a->tpool)
        != APR_SUCCESS
        || apr_thread_cond_create(&a->cv, a->tpool) != APR_SUCCESS
        || apr_thread_create(&a->thread, NULL, su_async_main, a, a->tpool)
           != APR_SUCCESS) {
        apr_pool_destroy(a->tpool);
        return NULL;
    }
    apr_pool_cleanup_register(p, a, su_async_cleanup, apr_pool_cleanup_null);
    return a;
}
#else
su_async_t *su_async_create(apr_pool_t *p)
{
    (void)p;
    return NULL;
}

void su_async_start(su_async_t *a, su_async_fn fn, void *arg)
{
    (void)a;
    fn(arg);
}

void su_async_wait(su_async_t *a)
{
    (void)a;
}
#endif
