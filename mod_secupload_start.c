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
#include <apr_strings.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <stdlib.h>
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

/*
 * Who the children are: the server's User, its Group and the supplementary
 * groups of that user (unixd gives them with initgroups). Permission bits
 * only: ACLs are not read.
 */
typedef struct su_who {
    uid_t uid;
    gid_t *gids;
    int ngids;
} su_who_t;

static void su_server_who(apr_pool_t *p, su_who_t *w)
{
    const char *name = ap_unixd_config.user_name;
    int n = 64;

    w->uid = ap_unixd_config.user_id;
    w->gids = apr_palloc(p, n * sizeof(gid_t));
    if (name && getgrouplist(name, ap_unixd_config.group_id, w->gids, &n) < 0
        && n > 64) {
        w->gids = apr_palloc(p, n * sizeof(gid_t));
        if (getgrouplist(name, ap_unixd_config.group_id, w->gids, &n) < 0)
            n = 0;
    }
    if (name == NULL || n < 1) {
        w->gids[0] = ap_unixd_config.group_id;
        n = 1;
    }
    w->ngids = n;
}

/* The kernel's choice: the owner's bits, else a group's, else the others'. */
static int su_who_may(const su_who_t *w, const struct stat *st, int want)
{
    int i, bits = (int)(st->st_mode & 7);

    if (w->uid == 0)
        return 1;
    if (st->st_uid == w->uid)
        return ((int)((st->st_mode >> 6) & 7) & want) == want;
    for (i = 0; i < w->ngids; i++)
        if (st->st_gid == w->gids[i]) {
            bits = (int)((st->st_mode >> 3) & 7);
            break;
        }
    return (bits & want) == want;
}

/* May the children use path (want: 1 search, 3 write and search)? */
static int su_server_may(const su_who_t *w, const char *path, int want)
{
    struct stat st;

    if (geteuid() != 0)  /* no User switch: the children are us */
        return access(path, (want & 2 ? W_OK : 0) | X_OK) == 0;
    return stat(path, &st) == 0 && su_who_may(w, &st, want);
}

/*
 * The first ancestor of dir (its real path) the children cannot search,
 * or NULL: a directory they could write is of no use behind one they
 * cannot pass.
 */
static const char *su_blocking_ancestor(apr_pool_t *p, const su_who_t *w,
                                        const char *dir)
{
    char real[PATH_MAX];
    char *path, *slash;

    if (realpath(dir, real) == NULL)
        return NULL;  /* stat found it; the later checks speak of it */
    path = apr_pstrdup(p, real);
    if (!su_server_may(w, "/", 1))
        return "/";
    for (slash = strchr(path + 1, '/'); slash; slash = strchr(slash + 1, '/')) {
        *slash = '\0';
        if (!su_server_may(w, path, 1))
            return path;
        *slash = '/';
    }
    return NULL;
}

static int su_check_reachable(server_rec *s, apr_pool_t *p, const su_who_t *w,
                              const char *dir)
{
    const char *blocked = su_blocking_ancestor(p, w, dir);

    if (blocked == NULL)
        return OK;
    ap_log_error(APLOG_MARK, APLOG_STARTUP | APLOG_CRIT, 0, s, SU_LOGNO(00340)
                 "SecUploadStorageDir %s cannot be reached by the server's "
                 "user %s (uid %ld, gid %ld): no search permission on %s "
                 "(ACLs are not considered)", dir,
                 ap_unixd_config.user_name ? ap_unixd_config.user_name : "?",
                 (long)ap_unixd_config.user_id, (long)ap_unixd_config.group_id,
                 blocked);
    return !OK;
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

/* Redis settings that only make sense together, in force after merging. */
static int su_check_redis(server_rec *s, const su_srv_conf_t *c)
{
    su_redis_conf_t rc;

    su_conf_redis(c, &rc);
    if (rc.user && (rc.password == NULL || *rc.password == '\0')) {
        ap_log_error(APLOG_MARK, APLOG_STARTUP | APLOG_CRIT, 0, s, SU_LOGNO(00402)
                     "SecUploadRedisUser %s needs SecUploadRedisPassword (Redis "
                     "authenticates a user with AUTH user password)", rc.user);
        return !OK;
    }
    if (rc.wait_replicas > 0 && su_redis_wait_timeout_ms(&rc) >= rc.timeout_ms) {
        ap_log_error(APLOG_MARK, APLOG_STARTUP | APLOG_CRIT, 0, s, SU_LOGNO(00403)
                     "SecUploadRedisWaitReplicas: its timeout (%d ms) must be "
                     "below SecUploadRedisTimeout (%d ms), or every WAIT would "
                     "end as a broken connection", su_redis_wait_timeout_ms(&rc),
                     rc.timeout_ms);
        return !OK;
    }
    return OK;
}

static int su_check_server(server_rec *s, apr_pool_t *ptemp)
{
    su_srv_conf_t *c = su_srv(s);
    struct stat st;
    su_who_t w;

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
    su_server_who(ptemp, &w);
    if (su_check_reachable(s, ptemp, &w, c->storage_dir) != OK)
        return !OK;
    if (!su_server_may(&w, c->storage_dir, 3)) {
        ap_log_error(APLOG_MARK, APLOG_STARTUP | APLOG_CRIT, 0, s, SU_LOGNO(00005)
                     "SecUploadStorageDir %s is not writable by the server's user "
                     "(uid %ld)", c->storage_dir, (long)ap_unixd_config.user_id);
        return !OK;
    }
    if (su_check_redis(s, c) != OK)
        return !OK;
    su_warn_limit_request_body(s);
    return OK;
}

int su_check_config(apr_pool_t *pconf, apr_pool_t *plog, apr_pool_t *ptemp,
                    server_rec *s)
{
    (void)pconf; (void)plog;
    for (; s; s = s->next)
        if (su_check_server(s, ptemp) != OK)
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

/* ---- a module loaded to serve nothing ---- */

static int su_sec_enabled(ap_conf_vector_t *sec)
{
    su_dir_conf_t *d = ap_get_module_config(sec, &secupload_module);
    return d && (d->enable == SU_ENABLE_UPLOAD || d->enable == SU_ENABLE_FILES);
}

/* Sections of s (its own and those it inherits) with SecUploadEnable on. */
static int su_server_enables(server_rec *s)
{
    core_server_config *cs = ap_get_core_module_config(s->module_config);
    apr_array_header_t *lists[2];
    int i, j, n = su_sec_enabled(s->lookup_defaults);

    lists[0] = cs->sec_url;
    lists[1] = cs->sec_dir;
    for (j = 0; j < 2; j++)
        for (i = 0; lists[j] && i < lists[j]->nelts; i++)
            n += su_sec_enabled(APR_ARRAY_IDX(lists[j], i, ap_conf_vector_t *));
    return n;
}

/*
 * Say so at start-up, rather than let every upload meet Apache's 404 (no
 * SecUploadEnable) or a 500 (no storage directory or key file).
 */
static void su_notice_unused(server_rec *main)
{
    server_rec *s;
    int any = 0;

    for (s = main; s; s = s->next) {
        int n = su_server_enables(s);
        any += n;
        if (n > 0 && !su_conf_in_use(su_srv(s)))
            ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, s, SU_LOGNO(00342)
                         "server %s:%u has SecUploadEnable but no "
                         "SecUploadStorageDir and SecUploadKeyFile: its "
                         "uploads and files are answered 500",
                         s->server_hostname ? s->server_hostname : "",
                         (unsigned)s->port);
    }
    if (any == 0)
        ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, main, SU_LOGNO(00341)
                     "mod_secupload is loaded but no SecUploadEnable is set "
                     "anywhere: it serves nothing (see conf/secupload_module.conf)");
}

/* ---- modules that would keep an upload's body (warned, not refused) ---- */

static int su_is(const ap_directive_t *n, const char *name, const char *arg)
{
    return strcasecmp(n->directive, name) == 0
           && (arg == NULL || (n->args && strcasecmp(n->args, arg) == 0));
}

/* SecRequestBodyAccess among a section's own lines: 1 Off, 0 On, -1 none. */
static int su_body_access_off(const ap_directive_t *first)
{
    int off = -1;

    for (; first; first = first->next) {
        if (su_is(first, "SecRequestBodyAccess", "Off"))
            off = 1;
        else if (su_is(first, "SecRequestBodyAccess", "On"))
            off = 0;
    }
    return off;
}

/*
 * ModSecurity's own settings cannot be read from here; Apache's parsed
 * configuration can. A section with SecUploadEnable upload needs
 * SecRequestBodyAccess Off in it or in a section around it (<IfModule> and
 * the like are already flattened into their section). Sections merged from
 * elsewhere (another <Location> matching the same path) are not seen.
 */
static void su_walk_modsec(server_rec *s, const ap_directive_t *first, int off)
{
    const ap_directive_t *n;
    int here = su_body_access_off(first);

    if (here >= 0)
        off = here;
    for (n = first; n; n = n->next) {
        if (su_is(n, "SecUploadEnable", "upload") && !off)
            ap_log_error(APLOG_MARK, APLOG_WARNING, 0, s, SU_LOGNO(00343)
                         "%s:%d: ModSecurity is loaded and would buffer the "
                         "plaintext of uploads here (to its SecTmpDir and "
                         "audit log): set SecRequestBodyAccess Off in this "
                         "section (%s %s)", n->filename, n->line_num,
                         n->parent ? n->parent->directive : "server",
                         n->parent && n->parent->args ? n->parent->args : "");
        if (n->first_child)
            su_walk_modsec(s, n->first_child, off);
    }
}

/* mod_proxy with proxy-sendcl spools a chunked body to a temp file. */
static void su_walk_sendcl(server_rec *s, const ap_directive_t *n)
{
    for (; n; n = n->next) {
        if (strncasecmp(n->directive, "SetEnv", 6) == 0 && n->args
            && ap_strcasestr(n->args, "proxy-sendcl"))
            ap_log_error(APLOG_MARK, APLOG_WARNING, 0, s, SU_LOGNO(00344)
                         "%s:%d: %s %s: with mod_proxy in front of uploads, "
                         "proxy-sendcl spools each chunked request body "
                         "(the plaintext) to a temp file first; leave it unset "
                         "on upload paths", n->filename, n->line_num,
                         n->directive, n->args);
        if (n->first_child)
            su_walk_sendcl(s, n->first_child);
    }
}

static void su_warn_body_keepers(server_rec *s)
{
    if (ap_find_linked_module("mod_security2.c"))
        su_walk_modsec(s, ap_conftree, 0);
    if (ap_find_linked_module("mod_proxy.c"))
        su_walk_sendcl(s, ap_conftree);
}

int su_post_config(apr_pool_t *pconf, apr_pool_t *plog, apr_pool_t *ptemp,
                   server_rec *s)
{
    apr_hash_t *done = apr_hash_make(ptemp);
    (void)pconf; (void)plog;

    if (ap_state_query(AP_SQ_MAIN_STATE) != AP_SQ_MS_CREATE_PRE_CONFIG) {
        su_notice_unused(s);
        su_warn_body_keepers(s);
    }
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
