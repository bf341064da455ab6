/*
 * mod_secupload: what runs as the server starts. The checks of the
 * configuration (check_config), the sweep of temp files left by uploads cut
 * short, under the storage directory's lock (post_config), and each child's
 * own state: its Redis pool, its keys locked in memory (child_init).
 */
#include "httpd.h"
#include "http_config.h"
#include "http_core.h"
#include "http_log.h"
#include "ap_mpm.h"
#include "unixd.h"

#include <apr_hash.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "su_key.h"
#include "su_redis.h"
#include "su_store.h"

#include "mod_secupload.h"

/* log lines name the module and obey LogLevel secupload:… (in
 * mod_secupload.c, AP_DECLARE_MODULE does the same) */
APLOG_USE_MODULE(secupload);

/* Apache's own default LimitRequestBody since 2.4.54 */
#define SU_HTTPD_DEFAULT_LIMIT  ((apr_off_t)1 << 30)

/* ---- checks of the configuration ---- */

/* Is dir writable and searchable by the user the children run as? */
static int su_dir_writable_by_server(const char *dir, const struct stat *st)
{
    if (geteuid() != 0)
        return access(dir, W_OK | X_OK) == 0;
    if (st->st_uid == ap_unixd_config.user_id)
        return (st->st_mode & (S_IWUSR | S_IXUSR)) == (S_IWUSR | S_IXUSR);
    if (st->st_gid == ap_unixd_config.group_id)
        return (st->st_mode & (S_IWGRP | S_IXGRP)) == (S_IWGRP | S_IXGRP);
    return (st->st_mode & (S_IWOTH | S_IXOTH)) == (S_IWOTH | S_IXOTH);
}

/* A section that sets upload directives is where uploads are taken. */
static int su_dir_conf_used(const su_dir_conf_t *d)
{
    return d && (d->max_size != SU_UNSET || d->field_name || d->allowed_types);
}

/* Warn when Apache's LimitRequestBody would refuse what SecUploadMaxSize allows. */
static void su_warn_limit(server_rec *s, const char *where, apr_off_t limit,
                          apr_uint64_t max)
{
    if (limit > 0 && (apr_uint64_t)limit < max + SU_FRAMING_SLACK)
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, s, SU_LOGNO(00001)
                     "%s: LimitRequestBody (%" APR_OFF_T_FMT " bytes) is smaller than "
                     "SecUploadMaxSize (%" APR_UINT64_T_FMT " bytes) plus 1 MiB for "
                     "multipart framing: Apache would refuse uploads the module "
                     "accepts; set LimitRequestBody 0 (or larger) there",
                     where, limit, max);
}

/*
 * Check the server defaults (when they set SecUploadMaxSize) and every
 * <Location>/<Directory> section that uses a SecUpload* directive.
 */
static void su_warn_limit_request_body(server_rec *s)
{
    core_dir_config *core = ap_get_core_module_config(s->lookup_defaults);
    su_dir_conf_t *d = ap_get_module_config(s->lookup_defaults, &secupload_module);
    core_server_config *cs = ap_get_core_module_config(s->module_config);
    apr_array_header_t *lists[2];
    apr_off_t server_limit = core->limit_req_body < 0 ? SU_HTTPD_DEFAULT_LIMIT
                                                      : core->limit_req_body;
    int i, j;

    if (d->max_size != SU_UNSET)
        su_warn_limit(s, "server", server_limit, su_conf_max_size(d));
    lists[0] = cs->sec_url;
    lists[1] = cs->sec_dir;
    for (j = 0; j < 2; j++) {
        ap_conf_vector_t **sec = lists[j] ? (ap_conf_vector_t **)lists[j]->elts : NULL;
        for (i = 0; sec && i < lists[j]->nelts; i++) {
            core_dir_config *cd = ap_get_core_module_config(sec[i]);
            su_dir_conf_t *sd = ap_get_module_config(sec[i], &secupload_module);
            if (!su_dir_conf_used(sd))
                continue;
            su_warn_limit(s, cd->d ? cd->d : "section",
                          cd->limit_req_body < 0 ? server_limit : cd->limit_req_body,
                          su_conf_max_size(sd->max_size != SU_UNSET ? sd : d));
        }
    }
}

static int su_check_server(server_rec *s)
{
    su_srv_conf_t *c = su_srv(s);
    struct stat st;

    if (c->storage_dir == NULL && c->keks == NULL)
        return OK;  /* the module is not used by this server */
    if (c->storage_dir == NULL) {
        ap_log_error(APLOG_MARK, APLOG_STARTUP | APLOG_CRIT, 0, s, SU_LOGNO(00002)
                     "SecUploadStorageDir is required where SecUploadKeyFile is set "
                     "(server %s)", s->server_hostname ? s->server_hostname : "");
        return !OK;
    }
    if (c->keks == NULL) {
        ap_log_error(APLOG_MARK, APLOG_STARTUP | APLOG_CRIT, 0, s, SU_LOGNO(00003)
                     "SecUploadKeyFile is required where SecUploadStorageDir is set "
                     "(server %s)", s->server_hostname ? s->server_hostname : "");
        return !OK;
    }
    if (stat(c->storage_dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        ap_log_error(APLOG_MARK, APLOG_STARTUP | APLOG_CRIT, errno, s, SU_LOGNO(00004)
                     "SecUploadStorageDir %s is not an existing directory",
                     c->storage_dir);
        return !OK;
    }
    if (!su_dir_writable_by_server(c->storage_dir, &st)) {
        ap_log_error(APLOG_MARK, APLOG_STARTUP | APLOG_CRIT, 0, s, SU_LOGNO(00005)
                     "SecUploadStorageDir %s is not writable by the server's user "
                     "(uid %ld)", c->storage_dir, (long)ap_unixd_config.user_id);
        return !OK;
    }
    su_warn_limit_request_body(s);
    return OK;
}

int su_check_config(apr_pool_t *pconf, apr_pool_t *plog, apr_pool_t *ptemp,
                    server_rec *s)
{
    (void)pconf; (void)plog; (void)ptemp;
    for (; s; s = s->next)
        if (su_check_server(s) != OK)
            return !OK;
    return OK;
}

/* ---- leftovers of uploads cut short, removed at a full start ---- */

/*
 * A child killed mid-upload (a graceful stop past GracefulShutdownTimeout,
 * the SIGKILL of a hard stop or restart, a crash) runs no pool cleanup, so
 * its temp file stays. They are removed only at the first configuration of
 * a parent process (AP_SQ_MS_CREATE_CONFIG of generation 1, the
 * configuration it goes on to serve with; its preliminary pass,
 * AP_SQ_MS_CREATE_PRE_CONFIG of generation 0, is skipped), before any child
 * exists; and never at a restart or graceful restart (generation 2 and up),
 * when children of the old generation may still be writing theirs.
 * ap_state_query lives in the core, so it holds across the unload and
 * reload of this module that each generation brings, which a static
 * variable would not.
 */
static int su_first_start(void)
{
    return ap_state_query(AP_SQ_MAIN_STATE) == AP_SQ_MS_CREATE_CONFIG
           && ap_state_query(AP_SQ_CONFIG_GEN) == 1;
}

/*
 * Another parent may still have processes writing into the same directory:
 * a second server configured on it, or one stopped with graceful-stop
 * whose children finish their requests while this one starts. So every
 * server holds a shared flock(2) on the directory for as long as any of its
 * processes lives, and the sweep needs it exclusively. The descriptor is
 * opened once per parent and never closed: it outlives every generation of
 * this module (unloaded at each restart, so no pool cleanup of ours could
 * run later), every child inherits it, programs they exec do not, and the
 * system lets go of it with the last process. Returns it with the
 * exclusive lock, or -1: leave the directory alone.
 */
static int su_lock_storage(server_rec *s, const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

    if (fd < 0) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, errno, s, SU_LOGNO(00243)
                     "cannot open %s to look for temp files", dir);
        return -1;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) == 0)
        return fd;
    if (errno == EWOULDBLOCK)
        ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, s, SU_LOGNO(00242)
                     "%s is in use by another running server (or by the "
                     "children of one that is stopping); its temp files are "
                     "left alone (secupload fsck lists them)", dir);
    else
        ap_log_error(APLOG_MARK, APLOG_WARNING, errno, s, SU_LOGNO(00243)
                     "cannot lock %s; its temp files are left alone "
                     "(secupload fsck lists them)", dir);
    /* held shared while serving, so that no other server sweeps under us;
     * never waited for: a start must not hang on someone else's lock */
    flock(fd, LOCK_SH | LOCK_NB);
    return -1;
}

static void su_sweep_storage(server_rec *s, const char *dir, apr_pool_t *ptemp)
{
    int fd = su_lock_storage(s, dir);
    int removed = 0;
    const char *err = NULL;

    if (fd < 0)
        return;
    if (su_store_sweep_temps(ptemp, dir, &removed, &err) != SU_OK)
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, s, SU_LOGNO(00244)
                     "while removing temp files left in %s: %s", dir, err);
    if (removed > 0)
        ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, s, SU_LOGNO(00241)
                     "removed %d temp file%s of uploads cut short before "
                     "this start from %s", removed, removed == 1 ? "" : "s", dir);
    /* no child runs yet: the short gap of the conversion is harmless */
    flock(fd, LOCK_SH);
}

int su_post_config(apr_pool_t *pconf, apr_pool_t *plog, apr_pool_t *ptemp,
                   server_rec *s)
{
    apr_hash_t *done = apr_hash_make(ptemp);
    (void)pconf; (void)plog;

    if (!su_first_start())
        return OK;
    for (; s; s = s->next) {
        su_srv_conf_t *c = su_srv(s);
        if (!su_conf_in_use(c)
            || apr_hash_get(done, c->storage_dir, APR_HASH_KEY_STRING))
            continue;
        /* once per directory: a second lock on it would meet our own */
        apr_hash_set(done, c->storage_dir, APR_HASH_KEY_STRING, "");
        su_sweep_storage(s, c->storage_dir, ptemp);
    }
    return OK;
}

/* ---- per child ---- */

void su_child_init(apr_pool_t *pchild, server_rec *s)
{
    int threads = 1, conns;

    ap_mpm_query(AP_MPMQ_MAX_THREADS, &threads);
    if (threads < 1)
        threads = 1;
    /* mod_http2 runs requests on workers of its own, beyond ThreadsPerChild */
    conns = threads * 2 + 16;
    for (; s; s = s->next) {
        su_srv_conf_t *c = su_srv(s);
        su_redis_conf_t rc;
        int i;
        if (!su_conf_in_use(c))
            continue;
        for (i = 0; i < c->keks->nelts; i++)
            su_key_relock(APR_ARRAY_IDX(c->keks, i, const su_kek_t *));
        c->rt = apr_pcalloc(pchild, sizeof(*c->rt));
        if (su_settle_create(pchild, &c->rt->settle) != SU_OK) {
            ap_log_error(APLOG_MARK, APLOG_CRIT, 0, s, SU_LOGNO(00007)
                         "cannot create a mutex");
            c->rt = NULL;
            continue;
        }
        su_conf_redis(c, &rc);
        if (su_redis_pool_create(pchild, &rc, conns, &c->rt->redis) != SU_OK) {
            ap_log_error(APLOG_MARK, APLOG_CRIT, 0, s, SU_LOGNO(00006)
                         "cannot create the Redis connection pool");
            c->rt = NULL;
        }
    }
}
