/*
 * mod_secupload: its figures in mod_status (/server-status, and the
 * "Key: value" lines of /server-status?auto that exporters read).
 *
 * The figures of every child meet in one block of anonymous shared memory,
 * made by the parent before it forks: counters that only grow (uploads
 * stored, rejected by reason, bytes, ...) are plain 64-bit atomic adds, no
 * lock; figures that go up and down (uploads in flight, Redis connections
 * in use) are kept per process, in a slot each child claims, so that a
 * child killed mid-request (a crash, a hard stop) leaves nothing behind:
 * only the slots of living processes are summed. The block is made once
 * per parent and found again at each restart through the process pool, so
 * the counts survive restarts, graceful or not (docs/design.md).
 */
#include "httpd.h"
#include "http_config.h"
#include "http_log.h"
#include "http_main.h"
#include "http_protocol.h"
#include "ap_mpm.h"
#include "mod_status.h"

#include <apr_file_info.h>
#include <apr_hash.h>
#include <apr_optional_hooks.h>
#include <apr_shm.h>
#include <apr_lib.h>
#include <apr_strings.h>
#include <errno.h>
#include <signal.h>
#include <unistd.h>

#include "su_store.h"

#include "mod_secupload.h"

APLOG_USE_MODULE(secupload);

#define SU_STAT_MAGIC      0x53555354u  /* "SUST" */
#define SU_STAT_KEY        "mod_secupload:status-shm"
#define SU_STAT_MIN_PROCS  64

typedef struct su_stat_proc {
    apr_int64_t pid;                     /* 0: free */
    apr_int64_t gauge[SU_GAUGE_COUNT];
} su_stat_proc_t;

typedef struct su_stat_shm {
    apr_uint32_t magic;
    apr_uint32_t size;      /* of this header: another layout is not reused */
    apr_uint32_t nprocs;
    apr_uint32_t pad;
    apr_uint64_t count[SU_STAT_COUNT];
    su_stat_proc_t proc[];  /* nprocs */
} su_stat_shm_t;

/* set in post_config (in the parent), inherited by the children */
static su_stat_shm_t *su_stat_shm;
/* this child's slot, or NULL (no slot free: its gauges go uncounted) */
static su_stat_proc_t *su_stat_me;

/* ---- counting (any thread of any child) ---- */

void su_stat_add(su_stat_t which, apr_uint64_t n)
{
    if (su_stat_shm != NULL && (unsigned)which < SU_STAT_COUNT)
        __atomic_fetch_add(&su_stat_shm->count[which], n, __ATOMIC_RELAXED);
}

void su_stat_gauge(su_gauge_t which, int delta)
{
    if (su_stat_me != NULL && (unsigned)which < SU_GAUGE_COUNT)
        __atomic_fetch_add(&su_stat_me->gauge[which], (apr_int64_t)delta,
                           __ATOMIC_RELAXED);
}

/* An upload refused or failed, under its error code (the "reason" of its
 * upload.rejected entry). File requests are not counted here. */
void su_stat_rejected(const su_req_t *q, su_err_t e)
{
    if (q->action == NULL || strcmp(q->action, "upload") != 0)
        return;
    if (e == SU_ERR_INTEGRITY)
        e = SU_ERR_INTERNAL;   /* one code, internal_error */
    su_stat_add(SU_STAT_REJECTED + e, 1);
}

static apr_status_t su_stat_upload_ends(void *data)
{
    (void)data;
    su_stat_gauge(SU_GAUGE_IN_FLIGHT, -1);
    return APR_SUCCESS;
}

/* In flight from the handler's start to the end of its request. */
void su_stat_upload_begins(su_req_t *q)
{
    su_stat_gauge(SU_GAUGE_IN_FLIGHT, 1);
    apr_pool_cleanup_register(q->r->pool, NULL, su_stat_upload_ends,
                              apr_pool_cleanup_null);
}

static void su_stat_connected(void *baton)
{
    (void)baton;
    su_stat_add(SU_STAT_REDIS_CONNECTS, 1);
}

/* ---- the shared block (parent) ---- */

static int su_stat_nprocs(void)
{
    int limit = 0;

    /* the children of an old generation that finish their requests after
     * a graceful restart hold slots too, beside the new ones */
    ap_mpm_query(AP_MPMQ_HARD_LIMIT_DAEMONS, &limit);
    return limit * 2 > SU_STAT_MIN_PROCS ? limit * 2 : SU_STAT_MIN_PROCS;
}

static su_stat_shm_t *su_stat_reuse(apr_pool_t *pp)
{
    apr_shm_t *shm = NULL;
    su_stat_shm_t *b;

    apr_pool_userdata_get((void **)&shm, SU_STAT_KEY, pp);
    if (shm == NULL)
        return NULL;
    b = apr_shm_baseaddr_get(shm);
    if (b->magic != SU_STAT_MAGIC || b->size != sizeof(*b))
        return NULL;   /* made by a module version of another layout */
    return b;
}

static su_stat_shm_t *su_stat_create(server_rec *s, apr_pool_t *pp)
{
    apr_uint32_t n = (apr_uint32_t)su_stat_nprocs();
    apr_size_t size = sizeof(su_stat_shm_t) + n * sizeof(su_stat_proc_t);
    apr_shm_t *shm = NULL;
    su_stat_shm_t *b;
    apr_status_t rv = apr_shm_create(&shm, size, NULL, pp);

    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, rv, s, SU_LOGNO(00320)
                     "cannot create the shared memory for the server-status "
                     "figures (%" APR_SIZE_T_FMT " bytes); they are not kept",
                     size);
        return NULL;
    }
    b = apr_shm_baseaddr_get(shm);
    memset(b, 0, size);
    b->magic = SU_STAT_MAGIC;
    b->size = sizeof(*b);
    b->nprocs = n;
    apr_pool_userdata_set(shm, SU_STAT_KEY, apr_pool_cleanup_null, pp);
    return b;
}

/* Made once per parent (on its process pool, which outlives every
 * generation and this module's reloads), then found again at each restart. */
static int su_stat_post_config(apr_pool_t *pconf, apr_pool_t *plog,
                               apr_pool_t *ptemp, server_rec *s)
{
    apr_pool_t *pp = s->process->pool;
    (void)pconf; (void)plog; (void)ptemp;

    su_stat_shm = su_stat_reuse(pp);
    if (su_stat_shm == NULL)
        su_stat_shm = su_stat_create(s, pp);
    return OK;
}

/* ---- a child's slot ---- */

static int su_stat_alive(apr_int64_t pid)
{
    return kill((pid_t)pid, 0) == 0 || errno == EPERM;
}

/* A free slot, one of a process gone, or one left under this very pid by
 * an earlier process (a pid is unique only among the living). */
static su_stat_proc_t *su_stat_claim(void)
{
    apr_int64_t me = (apr_int64_t)getpid();
    apr_uint32_t i;
    int g;

    for (i = 0; i < su_stat_shm->nprocs; i++) {
        su_stat_proc_t *p = &su_stat_shm->proc[i];
        apr_int64_t pid = __atomic_load_n(&p->pid, __ATOMIC_ACQUIRE);
        if (pid != 0 && pid != me && su_stat_alive(pid))
            continue;
        if (!__atomic_compare_exchange_n(&p->pid, &pid, me, 0,
                                         __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
            continue;
        for (g = 0; g < SU_GAUGE_COUNT; g++)
            __atomic_store_n(&p->gauge[g], 0, __ATOMIC_RELAXED);
        return p;
    }
    return NULL;
}

static apr_status_t su_stat_release(void *data)
{
    su_stat_proc_t *p = data;
    int g;

    for (g = 0; g < SU_GAUGE_COUNT; g++)
        __atomic_store_n(&p->gauge[g], 0, __ATOMIC_RELAXED);
    __atomic_store_n(&p->pid, 0, __ATOMIC_RELEASE);
    su_stat_me = NULL;
    return APR_SUCCESS;
}

/* After su_child_init: the Redis pools exist, no request runs yet. */
static void su_stat_child_init(apr_pool_t *pchild, server_rec *s)
{
    if (su_stat_shm == NULL)
        return;
    su_stat_me = su_stat_claim();
    if (su_stat_me == NULL)
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, s, SU_LOGNO(00321)
                     "no free slot for this process in the server-status "
                     "figures: its uploads in flight and Redis connections "
                     "in use are not shown");
    else
        apr_pool_cleanup_register(pchild, su_stat_me, su_stat_release,
                                  apr_pool_cleanup_null);
    for (; s; s = s->next) {
        su_srv_conf_t *c = su_srv(s);
        if (su_conf_in_use(c) && c->rt != NULL)
            su_redis_pool_on_connect(c->rt->redis, su_stat_connected, NULL);
    }
}

/* ---- reading the figures ---- */

static apr_int64_t su_stat_gauge_sum(su_gauge_t which)
{
    apr_int64_t sum = 0;
    apr_uint32_t i;

    for (i = 0; i < su_stat_shm->nprocs; i++) {
        su_stat_proc_t *p = &su_stat_shm->proc[i];
        apr_int64_t pid = __atomic_load_n(&p->pid, __ATOMIC_ACQUIRE);
        if (pid != 0 && su_stat_alive(pid))
            sum += __atomic_load_n(&p->gauge[which], __ATOMIC_RELAXED);
    }
    return sum > 0 ? sum : 0;
}

static apr_uint64_t su_stat_get(su_stat_t which)
{
    return __atomic_load_n(&su_stat_shm->count[which], __ATOMIC_RELAXED);
}

/* Markers in DIR/.unsettled of every storage directory: a status request
 * is rare, one directory read each is cheap. */
static apr_uint64_t su_stat_unsettled(apr_pool_t *p)
{
    apr_hash_t *done = apr_hash_make(p);
    apr_uint64_t n = 0;
    server_rec *s;

    for (s = ap_server_conf; s; s = s->next) {
        su_srv_conf_t *c = su_srv(s);
        apr_dir_t *d;
        apr_finfo_t fi;
        if (!su_conf_in_use(c)
            || apr_hash_get(done, c->storage_dir, APR_HASH_KEY_STRING))
            continue;
        apr_hash_set(done, c->storage_dir, APR_HASH_KEY_STRING, "");
        if (apr_dir_open(&d, apr_pstrcat(p, c->storage_dir, "/"
                                         SU_STORE_UNSETTLED, NULL), p) != APR_SUCCESS)
            continue;
        while (apr_dir_read(&fi, APR_FINFO_NAME, d) == APR_SUCCESS)
            n += su_store_valid_id(fi.name) ? 1 : 0;
        apr_dir_close(d);
    }
    return n;
}

typedef struct su_stat_row {
    const char *key;      /* the ?auto name */
    const char *what;     /* for the HTML table */
    apr_uint64_t value;
} su_stat_row_t;

static void su_stat_row(apr_array_header_t *a, const char *key,
                        const char *what, apr_uint64_t value)
{
    su_stat_row_t *row = apr_array_push(a);
    row->key = key;
    row->what = what;
    row->value = value;
}

/* "too_large" -> "SecUploadRejectedTooLarge" */
static const char *su_stat_reason_key(apr_pool_t *p, const char *code)
{
    char *k = apr_pstrcat(p, "SecUploadRejected", code, NULL);
    char *in = k + sizeof("SecUploadRejected") - 1, *out = in;
    int up = 1;

    for (; *in; in++) {
        if (*in == '_') {
            up = 1;
            continue;
        }
        *out++ = up ? apr_toupper(*in) : *in;
        up = 0;
    }
    *out = '\0';
    return k;
}

/* The kinds an upload can be refused with, in the order shown. */
static const su_err_t su_stat_reasons[] = {
    SU_ERR_BAD_REQUEST, SU_ERR_TOO_LARGE, SU_ERR_UNSUPPORTED_TYPE,
    SU_ERR_METHOD, SU_ERR_TIMEOUT, SU_ERR_ABORTED, SU_ERR_UNAVAILABLE,
    SU_ERR_NO_SPACE, SU_ERR_INTERNAL,
};
#define SU_STAT_NREASONS (sizeof(su_stat_reasons) / sizeof(su_stat_reasons[0]))

static void su_stat_reason_rows(apr_pool_t *p, apr_array_header_t *a)
{
    apr_uint64_t all = 0;
    size_t i;

    for (i = 0; i < SU_STAT_NREASONS; i++)
        all += su_stat_get(SU_STAT_REJECTED + su_stat_reasons[i]);
    su_stat_row(a, "SecUploadRejected", "uploads rejected", all);
    for (i = 0; i < SU_STAT_NREASONS; i++) {
        const char *code = su_err_code(su_stat_reasons[i]);
        su_stat_row(a, su_stat_reason_key(p, code),
                    apr_pstrcat(p, "&nbsp;&nbsp;rejected: ", code, NULL),
                    su_stat_get(SU_STAT_REJECTED + su_stat_reasons[i]));
    }
}

static apr_array_header_t *su_stat_rows(apr_pool_t *p)
{
    apr_array_header_t *a = apr_array_make(p, 24, sizeof(su_stat_row_t));

    su_stat_row(a, "SecUploadStored", "uploads stored", su_stat_get(SU_STAT_STORED));
    su_stat_reason_rows(p, a);
    su_stat_row(a, "SecUploadBytesIn", "bytes stored (plaintext)",
                su_stat_get(SU_STAT_BYTES_IN));
    su_stat_row(a, "SecUploadDownloads", "downloads (reads served)",
                su_stat_get(SU_STAT_DOWNLOADS));
    su_stat_row(a, "SecUploadBytesOut", "bytes served (plaintext)",
                su_stat_get(SU_STAT_BYTES_OUT));
    su_stat_row(a, "SecUploadDeletes", "files deleted", su_stat_get(SU_STAT_DELETES));
    su_stat_row(a, "SecUploadInFlight", "uploads in flight",
                (apr_uint64_t)su_stat_gauge_sum(SU_GAUGE_IN_FLIGHT));
    su_stat_row(a, "SecUploadUnsettled", "unknown outcomes pending "
                "(markers in .unsettled)", su_stat_unsettled(p));
    su_stat_row(a, "SecUploadRedisErrors", "Redis errors",
                su_stat_get(SU_STAT_REDIS_ERRORS));
    su_stat_row(a, "SecUploadRedisConnections", "Redis connections made",
                su_stat_get(SU_STAT_REDIS_CONNECTS));
    su_stat_row(a, "SecUploadRedisConnectionsInUse", "Redis connections in use",
                (apr_uint64_t)su_stat_gauge_sum(SU_GAUGE_REDIS_IN_USE));
    return a;
}

static int su_stat_hook(request_rec *r, int flags)
{
    apr_array_header_t *a;
    const su_stat_row_t *row;
    int i, table = !(flags & AP_STATUS_NOTABLE);

    if (su_stat_shm == NULL)
        return OK;
    a = su_stat_rows(r->pool);
    row = (const su_stat_row_t *)a->elts;
    if (flags & AP_STATUS_SHORT) {
        for (i = 0; i < a->nelts; i++)
            ap_rprintf(r, "%s: %" APR_UINT64_T_FMT "\n", row[i].key, row[i].value);
        return OK;
    }
    ap_rputs("<hr /><h2>mod_secupload</h2>\n", r);
    if (table)
        ap_rputs("<table border=\"0\">\n", r);
    for (i = 0; i < a->nelts; i++)
        ap_rprintf(r, table ? "<tr><td>%s</td><td>%" APR_UINT64_T_FMT
                              "</td><td><code>%s</code></td></tr>\n"
                            : "%s: %" APR_UINT64_T_FMT " (<code>%s</code>)<br />\n",
                   row[i].what, row[i].value, row[i].key);
    if (table)
        ap_rputs("</table>\n", r);
    return OK;
}

void su_stat_register_hooks(apr_pool_t *p)
{
    (void)p;
    ap_hook_post_config(su_stat_post_config, NULL, NULL, APR_HOOK_MIDDLE);
    /* after su_child_init, which makes the Redis pools */
    ap_hook_child_init(su_stat_child_init, NULL, NULL, APR_HOOK_LAST);
    APR_OPTIONAL_HOOK(ap, status_hook, su_stat_hook, NULL, NULL, APR_HOOK_MIDDLE);
}
