/*
 * mod_secupload: the configuration. Directives, creating and merging the
 * per-server and per-directory records, the checks at start-up (and the
 * sweep of temp files left by uploads cut short), and the per-child state
 * made in child_init.
 */
#include "httpd.h"
#include "http_config.h"
#include "http_core.h"
#include "http_log.h"
#include "ap_mpm.h"
#include "unixd.h"

#include <apr_lib.h>
#include <apr_strings.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "su_key.h"
#include "su_redis.h"
#include "su_store.h"
#include "su_util.h"

#include "mod_secupload.h"

/* log lines name the module and obey LogLevel secupload:… (in
 * mod_secupload.c, AP_DECLARE_MODULE does the same) */
APLOG_USE_MODULE(secupload);

/* Apache's own default LimitRequestBody since 2.4.54 */
#define SU_HTTPD_DEFAULT_LIMIT  ((apr_off_t)1 << 30)

void *su_create_srv_conf(apr_pool_t *p, server_rec *s)
{
    su_srv_conf_t *c = apr_pcalloc(p, sizeof(*c));
    (void)s;
    c->redis.port = SU_UNSET;
    c->redis.db = SU_UNSET;
    c->redis.timeout_ms = SU_UNSET;
    c->redis.audit_maxlen = SU_UNSET;
    return c;
}

/* Field by field, the Redis settings of add where it set them, else base's. */
static void su_merge_redis(su_redis_conf_t *c, const su_redis_conf_t *base,
                           const su_redis_conf_t *add)
{
    /* one directive sets the address: a host and port, or a socket */
    const su_redis_conf_t *addr = add->host || add->socket_path ? add : base;

    c->host = addr->host;
    c->port = addr->port;
    c->socket_path = addr->socket_path;
    SU_MERGE_PTR(c, base, add, password);
    SU_MERGE_NUM(c, base, add, db);
    SU_MERGE_NUM(c, base, add, timeout_ms);
    SU_MERGE_PTR(c, base, add, prefix);
    SU_MERGE_NUM(c, base, add, audit_maxlen);
}

void *su_merge_srv_conf(apr_pool_t *p, void *basev, void *addv)
{
    su_srv_conf_t *base = basev, *add = addv;
    su_srv_conf_t *c = apr_pcalloc(p, sizeof(*c));

    SU_MERGE_PTR(c, base, add, storage_dir);
    SU_MERGE_PTR(c, base, add, keks);
    su_merge_redis(&c->redis, &base->redis, &add->redis);
    return c;
}

void *su_create_dir_conf(apr_pool_t *p, char *dir)
{
    su_dir_conf_t *c = apr_pcalloc(p, sizeof(*c));
    (void)dir;
    c->max_size = SU_UNSET;
    c->sync = SU_UNSET;
    c->owner_only = SU_UNSET;
    c->enable = SU_UNSET;
    return c;
}

void *su_merge_dir_conf(apr_pool_t *p, void *basev, void *addv)
{
    su_dir_conf_t *base = basev, *add = addv;
    su_dir_conf_t *c = apr_pcalloc(p, sizeof(*c));

    SU_MERGE_NUM(c, base, add, max_size);
    SU_MERGE_PTR(c, base, add, field_name);
    SU_MERGE_PTR(c, base, add, allowed_types);
    SU_MERGE_NUM(c, base, add, sync);
    SU_MERGE_NUM(c, base, add, owner_only);
    SU_MERGE_NUM(c, base, add, enable);
    return c;
}

su_srv_conf_t *su_srv(const server_rec *s)
{
    return ap_get_module_config(s->module_config, &secupload_module);
}

/* ---- the values in force: as set, or the default ---- */

/* The module serves for this server: it has a storage directory and keys. */
int su_conf_in_use(const su_srv_conf_t *c)
{
    return c->storage_dir != NULL && c->keks != NULL;
}

void su_conf_redis(const su_srv_conf_t *c, su_redis_conf_t *out)
{
    su_redis_conf_t defaults;

    su_redis_conf_defaults(&defaults);
    su_merge_redis(out, &defaults, &c->redis);
}

int su_conf_redis_timeout(const su_srv_conf_t *c)
{
    su_redis_conf_t rc;

    su_conf_redis(c, &rc);
    return rc.timeout_ms;
}

apr_uint64_t su_conf_max_size(const su_dir_conf_t *d)
{
    return d->max_size != SU_UNSET ? (apr_uint64_t)d->max_size : SU_DEFAULT_MAX_SIZE;
}

const char *su_conf_field_name(const su_dir_conf_t *d)
{
    return d->field_name ? d->field_name : SU_DEFAULT_FIELD_NAME;
}

int su_conf_sync(const su_dir_conf_t *d)
{
    return d->sync != SU_UNSET ? d->sync : SU_DEFAULT_SYNC;
}

int su_conf_owner_only(const su_dir_conf_t *d)
{
    return d->owner_only != SU_UNSET ? d->owner_only : SU_DEFAULT_OWNER_ONLY;
}

/* ---- directives ---- */

static const char *su_cmd_storage_dir(cmd_parms *cmd, void *dc, const char *arg)
{
    su_srv_conf_t *c = su_srv(cmd->server);
    const char *path = ap_server_root_relative(cmd->pool, arg);
    struct stat st;
    (void)dc;

    if (path == NULL)
        return apr_pstrcat(cmd->pool, cmd->cmd->name, ": invalid path ", arg, NULL);
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode))
        return apr_pstrcat(cmd->pool, cmd->cmd->name, ": ", path,
                           " is not an existing directory", NULL);
    c->storage_dir = path;
    return NULL;
}

static const char *su_cmd_key_file(cmd_parms *cmd, void *dc, const char *arg)
{
    su_srv_conf_t *c = su_srv(cmd->server);
    const char *path = ap_server_root_relative(cmd->pool, arg);
    const char *err = NULL;
    su_kek_t *kek;
    (void)dc;

    if (path == NULL)
        return apr_pstrcat(cmd->pool, cmd->cmd->name, ": invalid path ", arg, NULL);
    /* loaded now, as root, before privileges are dropped */
    if (su_key_load(cmd->pool, path, &kek, &err) != SU_OK)
        return apr_pstrcat(cmd->pool, cmd->cmd->name, ": ", err, NULL);
    if (c->keks == NULL)
        c->keks = apr_array_make(cmd->pool, 2, sizeof(su_kek_t *));
    APR_ARRAY_PUSH(c->keks, su_kek_t *) = kek;
    return NULL;
}

static const char *su_cmd_redis_server(cmd_parms *cmd, void *dc, const char *arg)
{
    su_srv_conf_t *c = su_srv(cmd->server);
    const char *err = NULL;
    (void)dc;

    c->redis.host = NULL;
    c->redis.socket_path = NULL;
    if (su_redis_parse_server(cmd->pool, arg, &c->redis, &err) != SU_OK)
        return apr_pstrcat(cmd->pool, cmd->cmd->name, ": ", err, NULL);
    return NULL;
}

static const char *su_cmd_redis_password(cmd_parms *cmd, void *dc, const char *arg)
{
    su_srv_conf_t *c = su_srv(cmd->server);
    (void)dc;
    c->redis.password = arg;
    return NULL;
}

/* A whole number from min to max (su_util_parse_num), or why not. */
static const char *su_num_arg(cmd_parms *cmd, const char *arg, apr_int64_t min,
                              apr_int64_t max, apr_int64_t *out)
{
    if (su_util_parse_num(arg, min, max, out))
        return NULL;
    return apr_psprintf(cmd->pool, "%s: '%s' is not a number from %" APR_INT64_T_FMT
                        " to %" APR_INT64_T_FMT, cmd->cmd->name, arg, min, max);
}

static const char *su_cmd_redis_db(cmd_parms *cmd, void *dc, const char *arg)
{
    apr_int64_t v;
    const char *err = su_num_arg(cmd, arg, 0, 1000000, &v);
    (void)dc;
    if (err == NULL)
        su_srv(cmd->server)->redis.db = (int)v;
    return err;
}

static const char *su_cmd_redis_timeout(cmd_parms *cmd, void *dc, const char *arg)
{
    apr_int64_t v;
    const char *err = su_num_arg(cmd, arg, 1, 600000, &v);
    (void)dc;
    if (err == NULL)
        su_srv(cmd->server)->redis.timeout_ms = (int)v;
    return err;
}

static const char *su_cmd_redis_prefix(cmd_parms *cmd, void *dc, const char *arg)
{
    su_srv_conf_t *c = su_srv(cmd->server);
    const char *s;
    (void)dc;
    for (s = arg; *s; s++)
        if ((unsigned char)*s <= 0x20 || *s == 0x7f)
            return apr_pstrcat(cmd->pool, cmd->cmd->name,
                               ": the prefix may not hold spaces or control characters",
                               NULL);
    if (strlen(arg) > 128)
        return apr_pstrcat(cmd->pool, cmd->cmd->name, ": prefix too long", NULL);
    c->redis.prefix = arg;
    return NULL;
}

static const char *su_cmd_audit_maxlen(cmd_parms *cmd, void *dc, const char *arg)
{
    apr_int64_t v;
    const char *err = su_num_arg(cmd, arg, 1, 2000000000L, &v);
    (void)dc;
    if (err == NULL)
        su_srv(cmd->server)->redis.audit_maxlen = (long)v;
    return err;
}

/* At most 2^62 bytes, so that sums with it (the framing allowance) cannot
 * overflow. */
static const char *su_cmd_max_size(cmd_parms *cmd, void *dc, const char *arg)
{
    su_dir_conf_t *d = dc;
    apr_uint64_t v;

    if (!su_util_parse_size(arg, (apr_uint64_t)1 << 62, &v))
        return apr_psprintf(cmd->pool, "%s: '%s' is not a size in bytes "
                            "(a positive number, optionally with K, M or G)",
                            cmd->cmd->name, arg);
    d->max_size = (apr_int64_t)v;
    return NULL;
}

static const char *su_cmd_field_name(cmd_parms *cmd, void *dc, const char *arg)
{
    su_dir_conf_t *d = dc;
    if (*arg == '\0' || strlen(arg) > 255 || strpbrk(arg, "\"\r\n"))
        return apr_pstrcat(cmd->pool, cmd->cmd->name,
                           ": the field name must be 1-255 characters without quotes",
                           NULL);
    d->field_name = arg;
    return NULL;
}

/* "type/subtype" or "type/" followed by a star; RFC 6838 restricted names. */
static int su_valid_type_pattern(const char *t)
{
    const char *slash = strchr(t, '/');
    const char *s;

    if (slash == NULL || slash == t || slash[1] == '\0')
        return 0;
    if (strcmp(slash + 1, "*") == 0)
        return strchr(t, '*') == slash + 1;
    for (s = t; *s; s++)
        if (!(apr_isalnum(*s) || strchr("!#$&-^_.+/", *s)))
            return 0;
    return strchr(slash + 1, '/') == NULL;
}

static const char *su_cmd_allowed_types(cmd_parms *cmd, void *dc, const char *arg)
{
    su_dir_conf_t *d = dc;
    if (!su_valid_type_pattern(arg))
        return apr_pstrcat(cmd->pool, cmd->cmd->name, ": '", arg,
                           "' is not a media type (type/subtype or type/*)", NULL);
    if (d->allowed_types == NULL)
        d->allowed_types = apr_array_make(cmd->pool, 4, sizeof(const char *));
    APR_ARRAY_PUSH(d->allowed_types, const char *) = apr_pstrdup(cmd->pool, arg);
    return NULL;
}

static const char *su_cmd_sync(cmd_parms *cmd, void *dc, int flag)
{
    (void)cmd;
    ((su_dir_conf_t *)dc)->sync = flag;
    return NULL;
}

static const char *su_cmd_owner_only(cmd_parms *cmd, void *dc, int flag)
{
    (void)cmd;
    ((su_dir_conf_t *)dc)->owner_only = flag;
    return NULL;
}

/*
 * Not in .htaccess: no AllowOverride class admits the directive (it has no
 * OR_* bit), and this check refuses it even where AllowOverrideList names
 * it, so that whoever may write a .htaccess cannot switch a handler on.
 */
static const char *su_cmd_enable(cmd_parms *cmd, void *dc, const char *arg)
{
    su_dir_conf_t *d = dc;
    const char *err = ap_check_cmd_context(cmd, NOT_IN_HTACCESS);

    if (err)
        return err;
    if (strcasecmp(arg, "upload") == 0)
        d->enable = SU_ENABLE_UPLOAD;
    else if (strcasecmp(arg, "files") == 0)
        d->enable = SU_ENABLE_FILES;
    else if (strcasecmp(arg, "off") == 0)
        d->enable = SU_ENABLE_OFF;
    else
        return apr_pstrcat(cmd->pool, cmd->cmd->name, ": '", arg,
                           "' is not one of upload, files, Off", NULL);
    return NULL;
}

const command_rec su_cmds[] = {
    AP_INIT_TAKE1("SecUploadStorageDir", su_cmd_storage_dir, NULL, RSRC_CONF,
                  "Directory where encrypted files are stored"),
    AP_INIT_TAKE1("SecUploadKeyFile", su_cmd_key_file, NULL, RSRC_CONF,
                  "Key-encryption key file (64 hex digits); the first encrypts, "
                  "all decrypt"),
    AP_INIT_TAKE1("SecUploadRedisServer", su_cmd_redis_server, NULL, RSRC_CONF,
                  "Redis server as HOST:PORT or /path/to.sock"),
    AP_INIT_TAKE1("SecUploadRedisPassword", su_cmd_redis_password, NULL, RSRC_CONF,
                  "Redis AUTH password"),
    AP_INIT_TAKE1("SecUploadRedisDatabase", su_cmd_redis_db, NULL, RSRC_CONF,
                  "Redis database number"),
    AP_INIT_TAKE1("SecUploadRedisTimeout", su_cmd_redis_timeout, NULL, RSRC_CONF,
                  "Redis connect and command timeout in milliseconds"),
    AP_INIT_TAKE1("SecUploadRedisPrefix", su_cmd_redis_prefix, NULL, RSRC_CONF,
                  "Prefix of every Redis key"),
    AP_INIT_TAKE1("SecUploadAuditMaxLen", su_cmd_audit_maxlen, NULL, RSRC_CONF,
                  "Approximate cap of the audit stream"),
    AP_INIT_TAKE1("SecUploadMaxSize", su_cmd_max_size, NULL, RSRC_CONF | ACCESS_CONF,
                  "Largest accepted file in bytes (K, M, G suffixes)"),
    AP_INIT_TAKE1("SecUploadFieldName", su_cmd_field_name, NULL, RSRC_CONF | ACCESS_CONF,
                  "Multipart field that carries the file"),
    AP_INIT_ITERATE("SecUploadAllowedTypes", su_cmd_allowed_types, NULL,
                    RSRC_CONF | ACCESS_CONF,
                    "Accepted media types (type/subtype or type/*)"),
    AP_INIT_FLAG("SecUploadSync", su_cmd_sync, NULL, RSRC_CONF | ACCESS_CONF,
                 "fsync file and directory before answering"),
    AP_INIT_FLAG("SecUploadOwnerOnly", su_cmd_owner_only, NULL, RSRC_CONF | ACCESS_CONF,
                 "Only the uploading user may read or delete a file"),
    AP_INIT_TAKE1("SecUploadEnable", su_cmd_enable, NULL, RSRC_CONF | ACCESS_CONF,
                  "The handler that may serve here: upload (SetHandler "
                  "secupload), files (SetHandler secupload-files) or Off"),
    { NULL }
};

/* ---- start-up checks ---- */

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
#if APR_HAS_THREADS
        if (apr_thread_mutex_create(&c->rt->mu, APR_THREAD_MUTEX_DEFAULT, pchild)
            != APR_SUCCESS) {
            ap_log_error(APLOG_MARK, APLOG_CRIT, 0, s, SU_LOGNO(00007)
                         "cannot create a mutex");
            c->rt = NULL;
            continue;
        }
#endif
        su_conf_redis(c, &rc);
        if (su_redis_pool_create(pchild, &rc, conns, &c->rt->redis) != SU_OK) {
            ap_log_error(APLOG_MARK, APLOG_CRIT, 0, s, SU_LOGNO(00006)
                         "cannot create the Redis connection pool");
            c->rt = NULL;
        }
    }
}
