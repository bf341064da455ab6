/*
 * mod_secupload: encrypted file uploads for Apache httpd 2.4.
 *
 * This file is the Apache face of the module: directives, configuration
 * merging, start-up checks, the per-child Redis pool and the handler that
 * reads the request body brigade by brigade into the core (src/).
 */
#include "httpd.h"
#include "http_config.h"
#include "http_core.h"
#include "http_log.h"
#include "http_protocol.h"
#include "http_request.h"
#include "ap_mpm.h"
#include "util_filter.h"
#include "unixd.h"

#include <apr_lib.h>
#include <openssl/crypto.h>
#include <apr_strings.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "su_common.h"
#include "su_format.h"
#include "su_hdr.h"
#include "su_json.h"
#include "su_key.h"
#include "su_redis.h"
#include "su_store.h"
#include "su_upload.h"
#include "su_util.h"

/* Stable message ids, so that admins can grep for a message. */
#define SU_LOGNO(n) "SU" #n ": "

#define SU_DEFAULT_MAX_SIZE     ((apr_uint64_t)1 << 30)
#define SU_DEFAULT_FIELD        "file"
#define SU_DEFAULT_REDIS_HOST   "127.0.0.1"
#define SU_DEFAULT_REDIS_PORT   6379
#define SU_DEFAULT_REDIS_TMO    2000
#define SU_DEFAULT_PREFIX       "secupload:"
#define SU_DEFAULT_AUDIT_MAXLEN 1000000L
/* Apache's own default LimitRequestBody since 2.4.54 */
#define SU_HTTPD_DEFAULT_LIMIT  ((apr_off_t)1 << 30)
/* room for multipart framing above SecUploadMaxSize in a declared length */
#define SU_FRAMING_SLACK        ((apr_uint64_t)1 << 20)
#define SU_READ_BYTES           (256 * 1024)
#define SU_RETRY_AFTER          "5"
#define SU_FILES_PREFIX         "/api/files/"

module AP_MODULE_DECLARE_DATA secupload_module;

/* ---- configuration (as parsed; never changed while serving) ---- */

typedef struct su_srv_rt su_srv_rt_t;

typedef struct su_srv_conf {
    const char *storage_dir;
    apr_array_header_t *keks;        /* su_kek_t *; [0] encrypts */
    su_redis_conf_t redis;
    int redis_set;
    int password_set;
    int db_set;
    int timeout_set;
    int prefix_set;
    int maxlen_set;
    su_srv_rt_t *rt;                 /* per child, made in child_init */
} su_srv_conf_t;

typedef struct su_dir_conf {
    apr_uint64_t max_size;
    int max_size_set;
    const char *field_name;
    apr_array_header_t *allowed_types; /* const char * */
    int sync;                          /* -1 unset */
    int owner_only;                    /* -1 unset */
    int enable;                        /* SU_ENABLE_*; -1 unset */
} su_dir_conf_t;

/*
 * SecUploadEnable: which handler may serve here. SetHandler alone needs
 * only AllowOverride FileInfo in .htaccess; this one is the admin's.
 */
#define SU_ENABLE_OFF    0
#define SU_ENABLE_UPLOAD 1
#define SU_ENABLE_FILES  2

/* ---- runtime state (per child process) ---- */

struct su_srv_rt {
    su_redis_pool_t *redis;
#if APR_HAS_THREADS
    apr_thread_mutex_t *mu;           /* guards unsettled_seen */
#endif
    /* mtime of DIR/.unsettled when this process last settled it: uploads
     * whose metadata write may have been applied although its answer was
     * lost are marked there, and their hashes go once Redis answers */
    apr_int64_t unsettled_seen;
};

static void *su_create_srv_conf(apr_pool_t *p, server_rec *s)
{
    su_srv_conf_t *c = apr_pcalloc(p, sizeof(*c));
    (void)s;
    c->keks = apr_array_make(p, 2, sizeof(su_kek_t *));
    c->redis.host = SU_DEFAULT_REDIS_HOST;
    c->redis.port = SU_DEFAULT_REDIS_PORT;
    c->redis.timeout_ms = SU_DEFAULT_REDIS_TMO;
    c->redis.prefix = SU_DEFAULT_PREFIX;
    c->redis.audit_maxlen = SU_DEFAULT_AUDIT_MAXLEN;
    return c;
}

static void *su_merge_srv_conf(apr_pool_t *p, void *basev, void *addv)
{
    su_srv_conf_t *base = basev, *add = addv;
    su_srv_conf_t *c = apr_pcalloc(p, sizeof(*c));

    c->storage_dir = add->storage_dir ? add->storage_dir : base->storage_dir;
    c->keks = add->keks->nelts ? add->keks : base->keks;
    c->redis = base->redis;
    if (add->redis_set) {
        c->redis.host = add->redis.host;
        c->redis.port = add->redis.port;
        c->redis.socket_path = add->redis.socket_path;
    }
    c->redis_set = add->redis_set || base->redis_set;
#define SU_MERGE_FIELD(flag, field) do { \
        if (add->flag) c->redis.field = add->redis.field; \
        c->flag = add->flag || base->flag; } while (0)
    SU_MERGE_FIELD(password_set, password);
    SU_MERGE_FIELD(db_set, db);
    SU_MERGE_FIELD(timeout_set, timeout_ms);
    SU_MERGE_FIELD(prefix_set, prefix);
    SU_MERGE_FIELD(maxlen_set, audit_maxlen);
#undef SU_MERGE_FIELD
    return c;
}

static void *su_create_dir_conf(apr_pool_t *p, char *dir)
{
    su_dir_conf_t *c = apr_pcalloc(p, sizeof(*c));
    (void)dir;
    c->sync = -1;
    c->owner_only = -1;
    c->enable = -1;
    return c;
}

static void *su_merge_dir_conf(apr_pool_t *p, void *basev, void *addv)
{
    su_dir_conf_t *base = basev, *add = addv;
    su_dir_conf_t *c = apr_pcalloc(p, sizeof(*c));

    c->max_size_set = add->max_size_set || base->max_size_set;
    c->max_size = add->max_size_set ? add->max_size : base->max_size;
    c->field_name = add->field_name ? add->field_name : base->field_name;
    c->allowed_types = add->allowed_types ? add->allowed_types : base->allowed_types;
    c->sync = add->sync != -1 ? add->sync : base->sync;
    c->owner_only = add->owner_only != -1 ? add->owner_only : base->owner_only;
    c->enable = add->enable != -1 ? add->enable : base->enable;
    return c;
}

static apr_uint64_t su_dir_max_size(const su_dir_conf_t *d)
{
    return d->max_size_set ? d->max_size : SU_DEFAULT_MAX_SIZE;
}

static su_srv_conf_t *su_srv(const server_rec *s)
{
    return ap_get_module_config(s->module_config, &secupload_module);
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
    c->redis_set = 1;
    return NULL;
}

static const char *su_cmd_redis_password(cmd_parms *cmd, void *dc, const char *arg)
{
    su_srv_conf_t *c = su_srv(cmd->server);
    (void)dc;
    c->redis.password = arg;
    c->password_set = 1;
    return NULL;
}

/* A whole decimal number in [min, max]; rejects signs, blanks and junk. */
static const char *su_parse_long(cmd_parms *cmd, const char *arg, long min,
                                 long max, long *out)
{
    char *end = NULL;
    apr_int64_t v;

    if (arg[0] < '0' || arg[0] > '9')
        goto bad;
    errno = 0;
    v = apr_strtoi64(arg, &end, 10);
    if (errno || *end || v < min || v > max)
        goto bad;
    *out = (long)v;
    return NULL;
bad:
    return apr_psprintf(cmd->pool, "%s: '%s' is not a number from %ld to %ld",
                        cmd->cmd->name, arg, min, max);
}

static const char *su_cmd_redis_db(cmd_parms *cmd, void *dc, const char *arg)
{
    su_srv_conf_t *c = su_srv(cmd->server);
    long v;
    const char *err = su_parse_long(cmd, arg, 0, 1000000, &v);
    (void)dc;
    if (err)
        return err;
    c->redis.db = (int)v;
    c->db_set = 1;
    return NULL;
}

static const char *su_cmd_redis_timeout(cmd_parms *cmd, void *dc, const char *arg)
{
    su_srv_conf_t *c = su_srv(cmd->server);
    long v;
    const char *err = su_parse_long(cmd, arg, 1, 600000, &v);
    (void)dc;
    if (err)
        return err;
    c->redis.timeout_ms = (int)v;
    c->timeout_set = 1;
    return NULL;
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
    c->prefix_set = 1;
    return NULL;
}

static const char *su_cmd_audit_maxlen(cmd_parms *cmd, void *dc, const char *arg)
{
    su_srv_conf_t *c = su_srv(cmd->server);
    long v;
    const char *err = su_parse_long(cmd, arg, 1, 2000000000L, &v);
    (void)dc;
    if (err)
        return err;
    c->redis.audit_maxlen = v;
    c->maxlen_set = 1;
    return NULL;
}

static const char *su_cmd_max_size(cmd_parms *cmd, void *dc, const char *arg)
{
    su_dir_conf_t *d = dc;
    char *end = NULL;
    apr_int64_t v;
    int shift = 0;

    if (arg[0] < '0' || arg[0] > '9')
        goto bad;
    errno = 0;
    v = apr_strtoi64(arg, &end, 10);
    if (errno)
        goto bad;
    switch (*end) {
    case '\0': break;
    case 'k': case 'K': shift = 10; end++; break;
    case 'm': case 'M': shift = 20; end++; break;
    case 'g': case 'G': shift = 30; end++; break;
    default: goto bad;
    }
    if (*end || v <= 0 || v > ((apr_int64_t)1 << (62 - shift)))
        goto bad;
    d->max_size = (apr_uint64_t)v << shift;
    d->max_size_set = 1;
    return NULL;
bad:
    return apr_psprintf(cmd->pool, "%s: '%s' is not a size in bytes "
                        "(a positive number, optionally with K, M or G)",
                        cmd->cmd->name, arg);
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

static const char *su_cmd_allowed_types(cmd_parms *cmd, void *dc, const char *arg)
{
    su_dir_conf_t *d = dc;
    if (!su_hdr_type_pattern_ok(arg))
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

static const command_rec su_cmds[] = {
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
    return d && (d->max_size_set || d->field_name || d->allowed_types);
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

    if (d->max_size_set)
        su_warn_limit(s, "server", server_limit, su_dir_max_size(d));
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
                          sd->max_size_set ? sd->max_size : su_dir_max_size(d));
        }
    }
}

static int su_check_server(server_rec *s)
{
    su_srv_conf_t *c = su_srv(s);
    struct stat st;

    if (c->storage_dir == NULL && c->keks->nelts == 0)
        return OK;  /* the module is not used by this server */
    if (c->storage_dir == NULL) {
        ap_log_error(APLOG_MARK, APLOG_STARTUP | APLOG_CRIT, 0, s, SU_LOGNO(00002)
                     "SecUploadStorageDir is required where SecUploadKeyFile is set "
                     "(server %s)", s->server_hostname ? s->server_hostname : "");
        return !OK;
    }
    if (c->keks->nelts == 0) {
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

static int su_check_config(apr_pool_t *pconf, apr_pool_t *plog, apr_pool_t *ptemp,
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

static int su_post_config(apr_pool_t *pconf, apr_pool_t *plog, apr_pool_t *ptemp,
                          server_rec *s)
{
    apr_hash_t *done = apr_hash_make(ptemp);
    (void)pconf; (void)plog;

    if (!su_first_start())
        return OK;
    for (; s; s = s->next) {
        su_srv_conf_t *c = su_srv(s);
        if (c->storage_dir == NULL || c->keks->nelts == 0
            || apr_hash_get(done, c->storage_dir, APR_HASH_KEY_STRING))
            continue;
        /* once per directory: a second lock on it would meet our own */
        apr_hash_set(done, c->storage_dir, APR_HASH_KEY_STRING, "");
        su_sweep_storage(s, c->storage_dir, ptemp);
    }
    return OK;
}

/* ---- per child ---- */

static void su_child_init(apr_pool_t *pchild, server_rec *s)
{
    int threads = 1, conns;

    ap_mpm_query(AP_MPMQ_MAX_THREADS, &threads);
    if (threads < 1)
        threads = 1;
    /* mod_http2 runs requests on workers of its own, beyond ThreadsPerChild */
    conns = threads * 2 + 16;
    for (; s; s = s->next) {
        su_srv_conf_t *c = su_srv(s);
        int i;
        if (c->storage_dir == NULL || c->keks->nelts == 0)
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
        if (su_redis_pool_create(pchild, &c->redis, conns, &c->rt->redis) != SU_OK) {
            ap_log_error(APLOG_MARK, APLOG_CRIT, 0, s, SU_LOGNO(00006)
                         "cannot create the Redis connection pool");
            c->rt = NULL;
        }
    }
}

/* ---- requests ---- */

/* Everything one request needs, gathered once. */
typedef struct su_req {
    request_rec *r;
    su_srv_conf_t *srv;
    su_dir_conf_t *dir;
    su_redis_t *redis;
    const char *request_id;
    const char *time;
    const char *action;       /* "upload", "read", "delete": for log lines */
    const char *fail_event;   /* audit event of a failure, or NULL for none */
    const char *allow;        /* methods of this handler, for 405 */
    int body_unread;          /* close the connection after an error */
    int body_untouched;       /* not one body byte read yet */
} su_req_t;

static apr_status_t su_req_release(void *data)
{
    su_req_t *q = data;
    if (q->redis) {
        su_redis_release(q->srv->rt->redis, q->redis);
        q->redis = NULL;
    }
    return APR_SUCCESS;
}

/* Make sure the request has a log id, used as request_id everywhere. */
static const char *su_request_id(request_rec *r)
{
    char id[SU_ID_HEX_LEN + 1];

    if (r->log_id == NULL) {
        const char *gen = NULL;
        if (ap_run_generate_log_id(r->connection, r, &gen) == OK && gen)
            r->log_id = gen;
        else if (su_store_new_id(id) == SU_OK)
            r->log_id = apr_pstrndup(r->pool, id, 16);
    }
    return r->log_id ? r->log_id : "";
}

static const char *su_rfc3339(apr_pool_t *p, apr_time_t t)
{
    apr_time_exp_t x;
    apr_time_exp_gmt(&x, t);
    return apr_psprintf(p, "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ",
                        x.tm_year + 1900, x.tm_mon + 1, x.tm_mday,
                        x.tm_hour, x.tm_min, x.tm_sec, x.tm_usec);
}

static void su_kv(apr_array_header_t *a, const char *k, const char *v)
{
    su_kv_t *kv = apr_array_push(a);
    kv->k = k;
    kv->v = v ? v : "";
}

static void su_settle_pending(su_req_t *q);

static su_err_t su_req_redis(su_req_t *q)
{
    const char *err = NULL;
    su_err_t rv;

    if (q->redis)
        return SU_OK;
    rv = su_redis_acquire(q->srv->rt->redis, &q->redis, &err, q->r->pool);
    if (rv != SU_OK) {
        q->redis = NULL;
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, q->r, SU_LOGNO(00010)
                      "Redis is unavailable: %s", err ? err : "unknown error");
        return rv;
    }
    su_settle_pending(q);
    return SU_OK;
}

/* Hand the connection back (one that broke is destroyed), so the next use
 * takes a fresh one and no connection sits pinned while a body arrives. */
static void su_req_drop_redis(su_req_t *q)
{
    if (q->redis) {
        su_redis_release(q->srv->rt->redis, q->redis);
        q->redis = NULL;
    }
}

/*
 * A connection that answered just now, for a write that follows. A pooled
 * connection may have been closed or forgotten by the server while idle
 * (Redis' own `timeout`, a restart, a failover); one PING finds out, and
 * since nothing of the write was sent yet, a fresh connection is safe. A
 * PING that timed out means a stalled server: no second wait for it.
 */
static su_err_t su_req_redis_live(su_req_t *q)
{
    int tries;

    for (tries = 0; tries < 2; tries++) {
        if (su_req_redis(q) != SU_OK)
            return SU_ERR_UNAVAILABLE;
        if (su_redis_ping(q->redis, q->r->pool) == SU_OK)
            return SU_OK;
        if (su_redis_timed_out(q->redis))
            return SU_ERR_UNAVAILABLE;
        ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, q->r, SU_LOGNO(00015)
                      "a pooled Redis connection no longer answers (%s); "
                      "taking a fresh one", su_redis_errstr(q->redis));
        su_req_drop_redis(q);
    }
    return SU_ERR_UNAVAILABLE;
}

static apr_array_header_t *su_audit(su_req_t *q, const char *event, int status,
                                    const char *id, const char *reason,
                                    apr_uint64_t bytes)
{
    request_rec *r = q->r;
    apr_array_header_t *a = apr_array_make(r->pool, 10, sizeof(su_kv_t));

    su_kv(a, "event", event);
    su_kv(a, "status", apr_itoa(r->pool, status));
    su_kv(a, "id", id);
    su_kv(a, "reason", reason);
    su_kv(a, "bytes", apr_psprintf(r->pool, "%" APR_UINT64_T_FMT, bytes));
    su_kv(a, "client_ip", r->useragent_ip);
    su_kv(a, "user", r->user);
    su_kv(a, "request_id", q->request_id);
    su_kv(a, "time", q->time);
    return a;
}

/* An audit entry on its own, whenever Redis can be reached. */
static void su_audit_only(su_req_t *q, apr_array_header_t *audit)
{
    if (su_req_redis(q) != SU_OK)
        return;
    if (su_redis_audit(q->redis, q->r->pool, audit) != SU_OK)
        ap_log_rerror(APLOG_MARK, APLOG_WARNING, 0, q->r, SU_LOGNO(00011)
                      "cannot write the audit entry: %s", su_redis_errstr(q->redis));
}

static void su_unsettled_lock(su_srv_rt_t *rt, int lock)
{
#if APR_HAS_THREADS
    if (lock)
        apr_thread_mutex_lock(rt->mu);
    else
        apr_thread_mutex_unlock(rt->mu);
#else
    (void)rt; (void)lock;
#endif
}

/* Remove the hash of a failed upload; SU_OK once it surely is not there. */
static su_err_t su_settle_one(su_req_t *q, const char *id,
                              apr_array_header_t *audit)
{
    su_err_t rv = su_redis_delete(q->redis, q->r->pool, id, audit);
    if (rv == SU_ERR_NOT_FOUND)
        rv = SU_OK;
    if (rv == SU_OK)
        ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, q->r, SU_LOGNO(00012)
                      "settled the metadata of failed upload %s", id);
    return rv;
}

/* The fields of the failed request that a marker keeps, for its audit entry. */
static const char *su_settle_note(su_req_t *q, apr_uint64_t bytes)
{
    apr_table_t *t = apr_table_make(q->r->pool, 5);

    apr_table_setn(t, "client_ip", q->r->useragent_ip ? q->r->useragent_ip : "");
    apr_table_setn(t, "user", q->r->user ? q->r->user : "");
    apr_table_setn(t, "request_id", q->request_id);
    apr_table_setn(t, "time", q->time);
    apr_table_setn(t, "bytes", apr_psprintf(q->r->pool, "%" APR_UINT64_T_FMT, bytes));
    return su_json_table(q->r->pool, t, NULL, NULL);
}

/*
 * The audit entry of a failed upload settled by another request: it speaks
 * of the request that failed (from the marker's note; empty fields if the
 * note is lost), and says which request settled it and when.
 */
static apr_array_header_t *su_audit_settled(su_req_t *q, const char *id)
{
    apr_pool_t *p = q->r->pool;
    apr_table_t *t = su_json_parse_table(p, su_store_unsettled_note(
                                             p, q->srv->storage_dir, id));
    apr_array_header_t *a = apr_array_make(p, 12, sizeof(su_kv_t));

    if (t == NULL)
        t = apr_table_make(p, 1);
    su_kv(a, "event", "upload.rejected");
    su_kv(a, "status", apr_itoa(p, HTTP_SERVICE_UNAVAILABLE));
    su_kv(a, "id", id);
    su_kv(a, "reason", su_err_code(SU_ERR_UNAVAILABLE));
    su_kv(a, "bytes", apr_table_get(t, "bytes"));
    su_kv(a, "client_ip", apr_table_get(t, "client_ip"));
    su_kv(a, "user", apr_table_get(t, "user"));
    su_kv(a, "request_id", apr_table_get(t, "request_id"));
    su_kv(a, "time", apr_table_get(t, "time"));
    su_kv(a, "settled_by", q->request_id);
    su_kv(a, "settled_time", su_rfc3339(p, apr_time_now()));
    return a;
}

/*
 * Settle what earlier requests (of any process) could not: one stat of the
 * marker directory per request, read only when it changed.
 */
static void su_settle_pending(su_req_t *q)
{
    su_srv_rt_t *rt = q->srv->rt;
    apr_array_header_t *ids;
    apr_int64_t seen;
    int i, left = 0;

    su_unsettled_lock(rt, 1);
    seen = rt->unsettled_seen;
    ids = su_store_unsettled(q->r->pool, q->srv->storage_dir, &rt->unsettled_seen);
    su_unsettled_lock(rt, 0);
    for (i = 0; ids && i < ids->nelts; i++) {
        const char *id = APR_ARRAY_IDX(ids, i, const char *);
        if (q->redis && su_settle_one(q, id, su_audit_settled(q, id)) == SU_OK) {
            su_store_clear_unsettled(q->r->pool, q->srv->storage_dir, id);
            continue;
        }
        left = 1;
        if (q->redis && !su_redis_usable(q->redis))
            su_req_drop_redis(q);
    }
    if (left) {
        /* look again next time */
        su_unsettled_lock(rt, 1);
        rt->unsettled_seen = seen;
        su_unsettled_lock(rt, 0);
    }
}

/*
 * The metadata write of upload id failed on a broken connection, so it may
 * have been applied. Remove it now, retrying within the Redis timeout; what
 * cannot be removed yet is marked on disk for the next request that reaches
 * Redis, in any process (`secupload fsck` lists it as missing meanwhile).
 */
static void su_settle(su_req_t *q, const char *id, apr_uint64_t bytes)
{
    apr_time_t until = apr_time_now()
                       + apr_time_from_msec(q->srv->redis.timeout_ms);
    apr_array_header_t *audit = su_audit(q, "upload.rejected",
                                         HTTP_SERVICE_UNAVAILABLE, id,
                                         su_err_code(SU_ERR_UNAVAILABLE), bytes);
    su_req_drop_redis(q);
    do {
        if (su_req_redis(q) == SU_OK && su_settle_one(q, id, audit) == SU_OK)
            return;
        su_req_drop_redis(q);
        apr_sleep(apr_time_from_msec(100));
    } while (apr_time_now() < until);
    ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, q->r, SU_LOGNO(00013)
                  "the metadata of failed upload %s may remain in Redis; it will "
                  "be removed when Redis answers again (secupload fsck lists it "
                  "as missing meanwhile)", id);
    if (su_store_mark_unsettled(q->r->pool, q->srv->storage_dir, id,
                                su_settle_note(q, bytes)) != SU_OK)
        ap_log_rerror(APLOG_MARK, APLOG_ERR, errno, q->r, SU_LOGNO(00014)
                      "cannot mark upload %s as unsettled under %s/"
                      SU_STORE_UNSETTLED, id, q->srv->storage_dir);
}

/*
 * Every JSON answer: metadata (names, digests, users, client addresses) and
 * errors must not be kept by a cache (mod_cache answers from its quick
 * handler, before authentication and SecUploadOwnerOnly, and after the
 * file was deleted), nor by any cache on the way.
 */
static int su_respond(request_rec *r, int status, const char *json)
{
    apr_table_setn(r->headers_out, "Cache-Control", "no-store");
    r->status = status;
    ap_set_content_type(r, "application/json");
    ap_set_content_length(r, (apr_off_t)strlen(json));
    if (!r->header_only)
        ap_rputs(json, r);
    return OK;
}

/*
 * An HTTP/2 stream answered before the client ended its body is reset
 * (RST_STREAM, NO_ERROR) right after the answer, and some clients (Debian
 * 12's curl 7.88) then report a stream error instead of the answer. A small
 * declared body, refused before any of it was read, is therefore read and
 * dropped first, so the stream ends cleanly; a large one is not worth the
 * time and keeps the reset.
 */
#define SU_DRAIN_MAX ((apr_off_t)64 * 1024)

static ap_filter_rec_t *su_body_error_filter;

static void su_drain_small_h2(su_req_t *q)
{
    request_rec *r = q->r;
    const char *cl = apr_table_get(r->headers_in, "Content-Length");
    apr_bucket_brigade *bb;
    ap_filter_t *catcher;
    apr_off_t len, seen = 0;
    int eos = 0, caught = 0;

    if (!q->body_untouched || r->proto_num < 2000 || cl == NULL
        || apr_strtoff(&len, cl, NULL, 10) != APR_SUCCESS
        || len < 0 || len > SU_DRAIN_MAX)
        return;
    q->body_untouched = 0;
    /* by hand: ap_discard_request_body was seen to return at once on
     * HTTP/2 streams, without waiting for the body; and behind the filter
     * that catches body errors, so that a body over LimitRequestBody ends
     * the drain instead of replacing the answer with Apache's own page */
    catcher = ap_add_output_filter_handle(su_body_error_filter, &caught, r,
                                          r->connection);
    bb = apr_brigade_create(r->pool, r->connection->bucket_alloc);
    while (!eos && !caught && seen <= SU_DRAIN_MAX) {
        apr_bucket *e;
        if (ap_get_brigade(r->input_filters, bb, AP_MODE_READBYTES,
                           APR_BLOCK_READ, 16384) != APR_SUCCESS)
            break;
        for (e = APR_BRIGADE_FIRST(bb); e != APR_BRIGADE_SENTINEL(bb);
             e = APR_BUCKET_NEXT(e))
            if (APR_BUCKET_IS_EOS(e))
                eos = 1;
        if (apr_brigade_length(bb, 1, &len) != APR_SUCCESS)
            break;
        seen += len;
        apr_brigade_cleanup(bb);
    }
    apr_brigade_destroy(bb);
    ap_remove_output_filter(catcher);
}

/*
 * A connection lost while the child stops: a hard stop closes the sockets
 * of requests in flight from another thread, and a worker still reading
 * one may be handed whatever new socket takes its descriptor number next.
 * So no Redis connection is opened then (the audit entry of such a lost
 * upload is given up; its temp file still goes), and the child exits in
 * time instead of being killed with temp files left behind.
 */
static int su_lost_in_stop(su_req_t *q, su_err_t e)
{
    int state = AP_MPMQ_RUNNING;

    if (e != SU_ERR_ABORTED || q->redis != NULL)
        return 0;
    if (ap_mpm_query(AP_MPMQ_MPM_STATE, &state) != APR_SUCCESS
        || state != AP_MPMQ_STOPPING)
        return 0;
    ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, q->r, SU_LOGNO(00017)
                  "the server is stopping: no audit entry for this lost upload");
    return 1;
}

/*
 * The one place where an error becomes an answer: status, JSON body, headers,
 * log line and audit entry. The connection is closed after any error, so the
 * unread rest of a body is never taken for a next request.
 */
static int su_fail(su_req_t *q, su_err_t e, const char *message,
                   const char *detail, const char *id, apr_uint64_t bytes)
{
    request_rec *r = q->r;
    int status = su_err_status(e);
    int level = status >= 500 ? APLOG_ERR : APLOG_INFO;

    ap_log_rerror(APLOG_MARK, level, 0, r, SU_LOGNO(00020)
                  "%s failed: %d %s: %s", q->action, status, su_err_code(e),
                  detail && *detail ? detail : message);
    if (q->fail_event && e != SU_ERR_UNAVAILABLE && !su_lost_in_stop(q, e))
        su_audit_only(q, su_audit(q, q->fail_event, status, id, su_err_code(e), bytes));
    if (q->body_unread) {
        su_drain_small_h2(q);
        r->connection->keepalive = AP_CONN_CLOSE;
    }
    if (e == SU_ERR_ABORTED) {
        r->status = HTTP_BAD_REQUEST;  /* for the access log; nobody is listening */
        /* nothing is sent, not even to a client that only half-closed */
        r->connection->aborted = 1;
        return DONE;
    }
    if (e == SU_ERR_METHOD)
        apr_table_setn(r->headers_out, "Allow", q->allow);
    if (e == SU_ERR_UNAVAILABLE)
        apr_table_setn(r->headers_out, "Retry-After", SU_RETRY_AFTER);
    if (status >= 500 && e != SU_ERR_UNAVAILABLE && e != SU_ERR_NO_SPACE)
        message = "Internal error.";
    return su_respond(r, status, su_json_error(r->pool, e, message));
}

/* A declared length above the limit is refused before the body is read. */
static int su_declared_too_large(request_rec *r, const su_dir_conf_t *d,
                                 int multipart)
{
    const char *cl = apr_table_get(r->headers_in, "Content-Length");
    apr_off_t len;
    apr_uint64_t max = su_dir_max_size(d);

    if (cl == NULL || apr_strtoff(&len, cl, NULL, 10) != APR_SUCCESS || len < 0)
        return 0;
    if (multipart)
        return (apr_uint64_t)len > max + SU_FRAMING_SLACK;
    return (apr_uint64_t)len > max;
}

/*
 * Apache's HTTP input filter answers a malformed body (bad chunked coding)
 * or one over LimitRequestBody by itself: it sends an error bucket down the
 * output filters, where the header filter turns it into an HTML page, and
 * then returns AP_FILTER_ERROR to the reader. While the body is read this
 * filter takes that bucket (and the EOS behind it) out of the way and keeps
 * its status, so that the answer is the module's JSON with that status.
 */
static apr_status_t su_catch_body_error(ap_filter_t *f, apr_bucket_brigade *bb)
{
    int *caught = f->ctx;
    apr_bucket *e;

    for (e = APR_BRIGADE_FIRST(bb); e != APR_BRIGADE_SENTINEL(bb);
         e = APR_BUCKET_NEXT(e)) {
        if (AP_BUCKET_IS_ERROR(e)) {
            *caught = ((ap_bucket_error *)e->data)->status;
            apr_brigade_cleanup(bb);
            /* ap_pass_brigade marked the EOS behind it as sent; the real
             * answer is still to come (as ap_send_error_response does) */
            f->r->eos_sent = 0;
            /* the input filter hands this on to the reader: it must fail */
            return AP_FILTER_ERROR;
        }
    }
    return ap_pass_brigade(f->next, bb);
}

/* Map an input-filter failure: Apache's own limits, or a client gone. */
static su_err_t su_read_error(request_rec *r, apr_status_t rv, int caught,
                              const char **detail)
{
    if (rv == AP_FILTER_ERROR) {
        *detail = caught == HTTP_REQUEST_ENTITY_TOO_LARGE
            ? "the body exceeds LimitRequestBody (Apache's own limit)"
            : apr_psprintf(r->pool, "input filter error %d", caught);
        if (caught == HTTP_REQUEST_ENTITY_TOO_LARGE)
            return SU_ERR_TOO_LARGE;
        return caught >= 500 ? SU_ERR_INTERNAL : SU_ERR_BAD_REQUEST;
    }
    if (rv == APR_ENOSPC) {
        *detail = "request body over LimitRequestBody";
        return SU_ERR_TOO_LARGE;
    }
    if (APR_STATUS_IS_EINVAL(rv) || rv == APR_EGENERAL) {
        *detail = "malformed request body framing";
        return SU_ERR_BAD_REQUEST;
    }
    if (APR_STATUS_IS_TIMEUP(rv)) {
        *detail = "the body came too slowly (Timeout or mod_reqtimeout)";
        return SU_ERR_TIMEOUT;
    }
    *detail = apr_psprintf(r->pool, "client connection failed while reading the "
                           "body (%d)", rv);
    return SU_ERR_ABORTED;
}

/*
 * The plaintext arrives in the core's own socket buffers: heap buckets whose
 * memory goes back to the connection's allocator unwiped, where a core dump
 * of the child would find it. Once the upload has taken a heap bucket's
 * bytes, nothing reads them again, so they are wiped in place. (Other
 * bucket types are not ours to write: a mapped file, another module's
 * memory.)
 */
static void su_body_wipe(request_rec *r, apr_bucket *e, const char *data,
                         apr_size_t len)
{
    /* With mod_request's KeptBodySize, the kept copy shares these bytes
     * (apr_bucket_copy): they are not the module's alone to wipe */
    if (APR_BUCKET_IS_HEAP(e) && len > 0 && r->kept_body == NULL)
        su_util_wipe((void *)data, len);
}

/*
 * Every body byte counts against the limit, whatever carries it: a chunked
 * or HTTP/2 body declares no length, and the multipart fields other than
 * the file are no part of the file's size.
 */
static su_err_t su_body_count(apr_uint64_t *seen, apr_size_t len,
                              apr_uint64_t limit, const char **detail)
{
    *seen += len;
    if (*seen <= limit)
        return SU_OK;
    *detail = "the request body exceeds SecUploadMaxSize plus the framing "
              "allowance";
    return SU_ERR_TOO_LARGE;
}

/*
 * Read the body brigade by brigade into the upload, at most limit bytes.
 * Stops at the first error: the connection will be closed, so nothing more
 * needs draining.
 */
static su_err_t su_read_body(request_rec *r, su_upload_t *u, apr_uint64_t limit,
                             const char **detail)
{
    apr_bucket_brigade *bb = apr_brigade_create(r->pool, r->connection->bucket_alloc);
    apr_uint64_t seen = 0;
    int seen_eos = 0, caught = 0;
    ap_filter_t *catcher = ap_add_output_filter_handle(su_body_error_filter, &caught,
                                                       r, r->connection);
    su_err_t err = SU_OK;

    while (!seen_eos) {
        apr_bucket *e;
        apr_status_t rv = ap_get_brigade(r->input_filters, bb, AP_MODE_READBYTES,
                                         APR_BLOCK_READ, SU_READ_BYTES);
        if (rv != APR_SUCCESS || caught) {
            err = su_read_error(r, caught ? AP_FILTER_ERROR : rv, caught, detail);
            break;
        }
        for (e = APR_BRIGADE_FIRST(bb); e != APR_BRIGADE_SENTINEL(bb);
             e = APR_BUCKET_NEXT(e)) {
            const char *data;
            apr_size_t len;

            if (APR_BUCKET_IS_EOS(e)) {
                seen_eos = 1;
                break;
            }
            if (APR_BUCKET_IS_METADATA(e))
                continue;
            rv = apr_bucket_read(e, &data, &len, APR_BLOCK_READ);
            if (rv != APR_SUCCESS) {
                err = su_read_error(r, rv, caught, detail);
                break;
            }
            if (su_body_count(&seen, len, limit, detail) != SU_OK) {
                su_body_wipe(r, e, data, len);
                err = SU_ERR_TOO_LARGE;
                break;
            }
            if (len)
                err = su_upload_feed(u, data, len);
            su_body_wipe(r, e, data, len);
            if (err != SU_OK) {
                *detail = NULL;  /* the upload holds the words for it */
                break;
            }
        }
        apr_brigade_cleanup(bb);
        if (err != SU_OK)
            break;
    }
    apr_brigade_cleanup(bb);
    ap_remove_output_filter(catcher);
    if (r->kept_body)
        ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r, SU_LOGNO(00016)
                      "KeptBodySize (mod_request) keeps a copy of this upload's "
                      "plaintext in memory until the request ends; the module "
                      "leaves that copy intact, unwiped");
    return err;
}

static apr_array_header_t *su_meta(su_req_t *q, const su_upload_info_t *in)
{
    request_rec *r = q->r;
    apr_array_header_t *a = apr_array_make(r->pool, 13, sizeof(su_kv_t));

    su_kv(a, "id", in->id);
    su_kv(a, "name", in->name);
    su_kv(a, "size", apr_psprintf(r->pool, "%" APR_UINT64_T_FMT, in->size));
    su_kv(a, "sha256", in->sha256_hex);
    su_kv(a, "content_type", in->content_type);
    su_kv(a, "key_id", in->key_id_hex);
    su_kv(a, "iv", in->iv_hex);
    su_kv(a, "path", in->relpath);
    su_kv(a, "created", q->time);
    su_kv(a, "client_ip", r->useragent_ip);
    su_kv(a, "user", r->user);
    su_kv(a, "request_id", q->request_id);
    return a;
}

static void su_upload_conf(const su_req_t *q, su_upload_conf_t *uc)
{
    memset(uc, 0, sizeof(*uc));
    uc->kek = APR_ARRAY_IDX(q->srv->keks, 0, const su_kek_t *);
    uc->storage_dir = q->srv->storage_dir;
    uc->max_size = su_dir_max_size(q->dir);
    uc->field_name = q->dir->field_name ? q->dir->field_name : SU_DEFAULT_FIELD;
    uc->allowed_types = q->dir->allowed_types;
    su_mp_limits_default(&uc->limits);
    uc->sync = q->dir->sync != 0;   /* On unless set Off */
}

/* The upload failed inside the core: answer with its own words. */
static int su_upload_failed(su_req_t *q, su_upload_t *u, su_err_t rv)
{
    su_upload_discard(u);
    return su_fail(q, rv, su_upload_message(u), su_upload_detail(u),
                   su_upload_id(u), su_upload_received(u));
}

/*
 * The metadata write failed, or no live connection was found for it (sent
 * is 0: then nothing can have been applied, and there is nothing to settle).
 */
static int su_stored_unavailable(su_req_t *q, su_upload_t *u, int sent)
{
    const su_upload_info_t *in = su_upload_info(u);
    /* a copy: settling below may free the connection it lives in */
    const char *why = apr_pstrdup(q->r->pool, q->redis ? su_redis_errstr(q->redis)
                                                       : "no connection");
    su_upload_discard(u);
    if (!sent)
        su_req_drop_redis(q);
    else if (q->redis && !su_redis_usable(q->redis))
        su_settle(q, in->id, in->size);  /* sent, but was it applied? */
    return su_fail(q, SU_ERR_UNAVAILABLE, "The metadata store is unavailable; "
                   "nothing was kept. Try again later.",
                   apr_pstrcat(q->r->pool, "Redis: ", why, NULL), in->id, in->size);
}

static int su_stored(su_req_t *q, su_upload_t *u, int sync)
{
    request_rec *r = q->r;
    const su_upload_info_t *in = su_upload_info(u);
    apr_array_header_t *audit;
    su_err_t rv;

    audit = su_audit(q, "upload.stored", HTTP_CREATED, in->id, "", in->size);
    if (su_req_redis_live(q) != SU_OK)
        return su_stored_unavailable(q, u, 0);
    if (su_redis_store(q->redis, r->pool, in->id, su_meta(q, in), audit) != SU_OK)
        return su_stored_unavailable(q, u, 1);
    rv = su_upload_commit(u, sync);
    if (rv != SU_OK) {
        /* the metadata must not outlive the file it describes; the delete
         * writes the upload.rejected entry */
        su_redis_delete(q->redis, r->pool, in->id,
                        su_audit(q, "upload.rejected", su_err_status(rv), in->id,
                                 su_err_code(rv), in->size));
        q->fail_event = NULL;
        return su_fail(q, rv, su_upload_message(u), su_upload_detail(u), in->id,
                       in->size);
    }
    ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r, SU_LOGNO(00021)
                  "upload stored: id %s, %" APR_UINT64_T_FMT " bytes, key %s",
                  in->id, in->size, in->key_id_hex);
    apr_table_setn(r->headers_out, "Location",
                   apr_pstrcat(r->pool, SU_FILES_PREFIX, in->id, NULL));
    return su_respond(r, HTTP_CREATED,
                      su_json_uploaded(r->pool, in->id, in->name, in->size,
                                       in->sha256_hex, in->content_type));
}

static int su_handle_upload(su_req_t *q)
{
    request_rec *r = q->r;
    const char *ct = apr_table_get(r->headers_in, "Content-Type");
    int sync = q->dir->sync != 0;   /* On unless set Off */
    const char *detail = NULL;
    su_upload_conf_t uc;
    su_upload_t *u = NULL;
    su_err_t rv;

    if (r->method_number != M_POST)
        return su_fail(q, SU_ERR_METHOD, "Only POST is accepted here.",
                       apr_pstrcat(r->pool, "method ", r->method, NULL), NULL, 0);
    if (su_declared_too_large(r, q->dir, ct && !strncasecmp(ct, "multipart/", 10)))
        return su_fail(q, SU_ERR_TOO_LARGE,
                       apr_psprintf(r->pool, "The file is larger than the %"
                                    APR_UINT64_T_FMT " bytes accepted here.",
                                    su_dir_max_size(q->dir)),
                       "declared Content-Length over SecUploadMaxSize", NULL, 0);
    /* fail fast, before a large body is read, when Redis is down; but do not
     * hold the connection while the body arrives: it would sit idle for as
     * long as the client takes (and pin a pooled connection meanwhile) */
    if (su_req_redis(q) != SU_OK)
        return su_fail(q, SU_ERR_UNAVAILABLE, "The metadata store is unavailable; "
                       "nothing was kept. Try again later.", "Redis unavailable",
                       NULL, 0);
    su_req_drop_redis(q);

    su_upload_conf(q, &uc);
    rv = su_upload_begin(r->pool, &uc, ct,
                         apr_table_get(r->headers_in, "Content-Disposition"),
                         apr_table_get(r->headers_in, "Content-Digest"),
                         apr_table_get(r->headers_in, "Repr-Digest"), &u);
    if (rv != SU_OK)
        return su_upload_failed(q, u, rv);

    q->body_untouched = 0;
    rv = su_read_body(r, u, su_dir_max_size(q->dir) + SU_FRAMING_SLACK, &detail);
    if (rv != SU_OK && detail == NULL)
        return su_upload_failed(q, u, rv);
    if (rv != SU_OK) {
        su_upload_discard(u);
        return su_fail(q, rv, rv == SU_ERR_TOO_LARGE
                       ? "The request body is larger than accepted here."
                       : rv == SU_ERR_TIMEOUT ? "The request body came too slowly."
                       : "The request body could not be read.",
                       detail, su_upload_id(u), su_upload_received(u));
    }
    rv = su_upload_finish(u, sync);
    if (rv != SU_OK)
        return su_upload_failed(q, u, rv);
    return su_stored(q, u, sync);
}

/* ---- reading back, inspecting, deleting (SetHandler secupload-files) ---- */

/*
 * The id (and whether /meta follows) from the last segments of the URI, so
 * the handler works under any <Location>. NULL unless well-formed.
 */
static const char *su_files_id(request_rec *r, int *meta)
{
    const char *uri = r->uri, *end = uri + strlen(uri), *seg;

    *meta = 0;
    seg = end;
    while (seg > uri && seg[-1] != '/')
        seg--;
    if (strcmp(seg, "meta") == 0) {
        *meta = 1;
        end = seg - 1;
        if (end <= uri)
            return NULL;
        seg = end;
        while (seg > uri && seg[-1] != '/')
            seg--;
    }
    if (end - seg != SU_ID_HEX_LEN)
        return NULL;
    seg = apr_pstrmemdup(r->pool, seg, SU_ID_HEX_LEN);
    return su_store_valid_id(seg) ? seg : NULL;
}

static const char *su_meta_get(apr_table_t *meta, const char *k)
{
    const char *v = apr_table_get(meta, k);
    return v ? v : "";
}

/* SecUploadOwnerOnly: a file is only ever shown to the user who uploaded it. */
static int su_owner_denied(const su_req_t *q, apr_table_t *meta)
{
    const char *owner = su_meta_get(meta, "user");

    if (q->dir->owner_only != 1)
        return 0;
    return q->r->user == NULL || *q->r->user == '\0' || strcmp(owner, q->r->user) != 0;
}

static int su_files_meta(su_req_t *q, apr_table_t *meta)
{
    static const char *const numeric[] = { "size", NULL };
    /* where and which file on disk is the storage's business */
    static const char *const hidden[] = { "path", "iv", NULL };

    return su_respond(q->r, HTTP_OK, su_json_table(q->r->pool, meta, numeric, hidden));
}

/*
 * The delete of id's metadata was sent on a connection that then broke: did
 * it run? Ask again on fresh connections within the Redis timeout. The
 * deadline in the write means a delete not applied by now never will be.
 * SU_OK: it ran; SU_ERR_UNAVAILABLE: it did not, or nobody can tell.
 */
static su_err_t su_delete_outcome(su_req_t *q, const char *id)
{
    apr_time_t until = apr_time_now()
                       + apr_time_from_msec(q->srv->redis.timeout_ms);
    apr_table_t *meta;

    do {
        su_req_drop_redis(q);
        apr_sleep(apr_time_from_msec(q->srv->redis.timeout_ms / 2 + 1));
        if (su_req_redis(q) == SU_OK) {
            su_err_t rv = su_redis_get_meta(q->redis, q->r->pool, id, &meta);
            if (rv == SU_ERR_NOT_FOUND)
                return SU_OK;
            if (rv == SU_OK)
                return SU_ERR_UNAVAILABLE;
        }
    } while (apr_time_now() < until);
    return SU_ERR_UNAVAILABLE;
}

static int su_files_delete(su_req_t *q, const char *id, apr_table_t *meta)
{
    request_rec *r = q->r;
    apr_uint64_t size = (apr_uint64_t)apr_atoi64(su_meta_get(meta, "size"));
    const char *err = NULL;
    su_err_t rv;

    /* metadata first: a failure after it leaves an orphan file for fsck,
     * never metadata that points at nothing */
    rv = su_redis_delete(q->redis, r->pool, id,
                         su_audit(q, "file.deleted", HTTP_NO_CONTENT, id, "", size));
    if (rv == SU_ERR_NOT_FOUND) {
        q->fail_event = NULL;  /* the delete wrote its audit entry already */
        return su_fail(q, rv, "No such file.", "deleted meanwhile", id, 0);
    }
    if (rv != SU_OK && q->redis && !su_redis_usable(q->redis)) {
        /* sent, but was it applied? a file must not outlive its metadata
         * unnoticed, nor be removed while its metadata stays */
        const char *why = apr_pstrdup(r->pool, su_redis_errstr(q->redis));
        if (su_delete_outcome(q, id) != SU_OK)
            return su_fail(q, SU_ERR_UNAVAILABLE, "The metadata store is unavailable. "
                           "Try again later.", why, id, 0);
        rv = SU_OK;
    }
    if (rv != SU_OK)
        return su_fail(q, SU_ERR_UNAVAILABLE, "The metadata store is unavailable. "
                       "Try again later.", su_redis_errstr(q->redis), id, 0);
    rv = su_store_remove(r->pool, q->srv->storage_dir, id, q->dir->sync != 0, &err);
    if (rv != SU_OK && rv != SU_ERR_NOT_FOUND)
        return su_fail(q, SU_ERR_INTERNAL, "Internal error.", err, id, 0);
    ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r, SU_LOGNO(00040)
                  "file deleted: id %s", id);
    r->status = HTTP_NO_CONTENT;
    return OK;
}

/*
 * Plaintext pieces travel in bucket memory of their own, decrypted in place
 * (no copy). A download's two buffers serve piece after piece: handing each
 * 1 MiB piece back to the allocator cost a fresh mapping, 256 page faults,
 * for every piece whenever the allocator did not keep the memory, and
 * halved the send rate. A buffer still held by a filter downstream when it
 * is due again is left to it and replaced; whichever lets go of it last,
 * the bucket or the request, wipes and frees it.
 *
 * The wipe covers what the buffer ever held (a small file's piece does not
 * cost a 1 MiB wipe, nor the buffer that only met the end of the file), or
 * all of it when a decryption into it failed or was never waited for.
 * Between pieces the next decryption overwrites the last.
 */
typedef struct {
    apr_size_t held;    /* bytes that held plaintext */
    int unknown;        /* given to the reader, nothing known back yet */
    int in_bucket;      /* a bucket still refers to it */
    int kept;           /* the request will use it again */
} su_plain_t;

#define SU_PLAIN_HDR APR_ALIGN_DEFAULT(sizeof(su_plain_t))

static su_plain_t *su_plain_of(unsigned char *data)
{
    return (su_plain_t *)(void *)(data - SU_PLAIN_HDR);
}

static unsigned char *su_plain_alloc(apr_bucket_alloc_t *ba)
{
    su_plain_t *h = apr_bucket_alloc(SU_PLAIN_HDR + SU_FMT_READ_MAX, ba);
    h->held = 0;
    h->unknown = 1;
    h->in_bucket = 0;
    h->kept = 1;
    return (unsigned char *)h + SU_PLAIN_HDR;
}

static void su_plain_release(unsigned char *data)
{
    su_plain_t *h = su_plain_of(data);
    if (h->kept || h->in_bucket)
        return;
    su_util_wipe(data, h->unknown ? SU_FMT_READ_MAX : h->held);
    apr_bucket_free(h);
}

static void su_plain_bucket_done(void *data)
{
    su_plain_of(data)->in_bucket = 0;
    su_plain_release(data);
}

/* The request is done with it; a bucket may still be. */
static void su_plain_drop(unsigned char *data)
{
    su_plain_of(data)->kept = 0;
    su_plain_release(data);
}

/* A buffer to decrypt the next piece into: buf itself once its bucket is
 * gone, a new one otherwise. */
static unsigned char *su_plain_reuse(unsigned char *buf, apr_bucket_alloc_t *ba)
{
    if (buf == NULL || su_plain_of(buf)->in_bucket) {
        if (buf != NULL)
            su_plain_drop(buf);
        return su_plain_alloc(ba);
    }
    su_plain_of(buf)->unknown = 1;
    return buf;
}

/* The reader gave len bytes; it may have touched the blocks it held back
 * just past them. The end of the file writes nothing. */
static void su_plain_filled(unsigned char *data, apr_size_t len)
{
    su_plain_t *h = su_plain_of(data);
    apr_size_t n = len > 0 ? len + 2 * SU_FMT_BLOCK : 0;
    if (n > SU_FMT_READ_MAX)
        n = SU_FMT_READ_MAX;
    if (n > h->held)
        h->held = n;
    h->unknown = 0;
}

static apr_bucket *su_plain_bucket(unsigned char *data, apr_size_t len,
                                   apr_bucket_alloc_t *ba)
{
    su_plain_of(data)->in_bucket = 1;
    return apr_bucket_heap_create((const char *)data, len, su_plain_bucket_done, ba);
}

/*
 * Send the plaintext; every byte was authenticated before the first goes
 * out. Each piece is decrypted (by the reader, on a thread of its own for a
 * large file) while the one before it is being sent.
 */
/*
 * Abort an answer that has started, as mod_proxy does when a backend breaks:
 * not cacheable, an error bucket that the protocol turns into a broken
 * answer (HTTP/1.1: the connection closes before the Content-Length is
 * reached, and a chunked body gets no last chunk; HTTP/2: the stream is
 * reset), then EOS so that the request ends here. Returning an error alone
 * left an HTTP/2 client waiting at times, holding the request.
 */
static int su_files_cut(request_rec *r, apr_bucket_brigade *bb)
{
    conn_rec *c = r->connection;

    r->no_cache = 1;
    if (r->main)
        r->main->no_cache = 1;
    c->keepalive = AP_CONN_CLOSE;
    apr_brigade_cleanup(bb);
    APR_BRIGADE_INSERT_TAIL(bb, ap_bucket_error_create(HTTP_BAD_GATEWAY, NULL,
                                                       c->pool, c->bucket_alloc));
    APR_BRIGADE_INSERT_TAIL(bb, apr_bucket_eos_create(c->bucket_alloc));
    (void)ap_pass_brigade(r->output_filters, bb);
    apr_brigade_cleanup(bb);
    return OK;
}

static int su_files_stream(su_req_t *q, const char *id, su_fmt_reader_t *rd)
{
    request_rec *r = q->r;
    apr_bucket_alloc_t *ba = r->connection->bucket_alloc;
    apr_bucket_brigade *bb = apr_brigade_create(r->pool, ba);
    unsigned char *buf[2] = { su_plain_alloc(ba), NULL };
    int cur = 0;
    size_t len;
    apr_status_t st = APR_SUCCESS;
    su_err_t rv;

    su_fmt_reader_begin(rd, buf[cur]);
    for (;;) {
        rv = su_fmt_reader_end(rd, &len);
        if (rv != SU_OK)
            break;
        su_plain_filled(buf[cur], len);
        if (len == 0)
            break;
        APR_BRIGADE_INSERT_TAIL(bb, su_plain_bucket(buf[cur], len, ba));
        /* written out before the next piece is due: two pieces live at a
         * time, whatever the file's size */
        APR_BRIGADE_INSERT_TAIL(bb, apr_bucket_flush_create(ba));
        /* bucket memory is allocated here, in the request's thread only */
        cur = !cur;
        buf[cur] = su_plain_reuse(buf[cur], ba);
        su_fmt_reader_begin(rd, buf[cur]);
        st = ap_pass_brigade(r->output_filters, bb);
        apr_brigade_cleanup(bb);
        if (st != APR_SUCCESS || r->connection->aborted) {
            (void)su_fmt_reader_end(rd, &len);
            break;
        }
    }
    su_plain_drop(buf[0]);
    if (buf[1] != NULL)
        su_plain_drop(buf[1]);
    if (st != APR_SUCCESS || r->connection->aborted)
        return su_files_cut(r, bb);   /* mostly a client gone; if not, cut */
    su_fmt_reader_close(rd);
    if (rv != SU_OK) {
        /* written to in place after verification: the body is cut short,
         * so the client can tell, rather than ended as if complete */
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r, SU_LOGNO(00041)
                      "file %s changed on disk while being sent; the answer "
                      "was cut short", id);
        su_audit_only(q, su_audit(q, "file.read", HTTP_INTERNAL_SERVER_ERROR, id,
                                  su_err_code(SU_ERR_INTEGRITY), 0));
        return su_files_cut(r, bb);
    }
    APR_BRIGADE_INSERT_TAIL(bb, apr_bucket_eos_create(ba));
    return ap_pass_brigade(r->output_filters, bb) == APR_SUCCESS ? OK : AP_FILTER_ERROR;
}

/* Apache's own switch for mapping files (e.g. Off for storage on NFS). */
static int su_files_map_flags(request_rec *r)
{
    const core_dir_config *d = ap_get_core_module_config(r->per_dir_config);
    return d->enable_mmap == ENABLE_MMAP_OFF ? SU_FMT_NO_MAP : 0;
}

/*
 * The stored type, if it still meets the rules of an upload's type: what
 * Redis holds is not trusted to be a valid header value (a CR or LF in it
 * would make Apache refuse the whole answer).
 */
static const char *su_files_type(su_req_t *q, const char *id, apr_table_t *meta)
{
    const char *type = su_meta_get(meta, "content_type");

    if (su_hdr_valid_type(q->r->pool, type, NULL) == SU_OK)
        return apr_pstrdup(q->r->pool, type);
    ap_log_rerror(APLOG_MARK, APLOG_WARNING, 0, q->r, SU_LOGNO(00220)
                  "file %s: the stored content type is not a valid media type; "
                  "sent as application/octet-stream", id);
    return "application/octet-stream";
}

static void su_files_headers(su_req_t *q, const char *id, apr_table_t *meta,
                             uint64_t size)
{
    request_rec *r = q->r;

    ap_set_content_type(r, su_files_type(q, id, meta));
    ap_set_content_length(r, (apr_off_t)size);
    apr_table_setn(r->headers_out, "Content-Disposition",
                   su_hdr_attachment(r->pool, su_meta_get(meta, "name")));
    apr_table_setn(r->headers_out, "X-Content-Type-Options", "nosniff");
    /* a file opened in a browser anyway runs no script as the site, and
     * other sites cannot embed it */
    apr_table_setn(r->headers_out, "Content-Security-Policy", "sandbox");
    apr_table_setn(r->headers_out, "Cross-Origin-Resource-Policy", "same-origin");
    apr_table_setn(r->headers_out, "Cache-Control", "private, no-store");
    /* ranges are not supported: the whole file, always */
    apr_table_setn(r->headers_out, "Accept-Ranges", "none");
    apr_table_unset(r->headers_in, "Range");
}

/*
 * The headers go out on their own, before any plaintext, so that the
 * file.read entry records the status the client was given: Apache answers
 * 500 instead when it finds a header malformed. OK to go on with the body.
 */
static int su_files_send_head(su_req_t *q, const char *id, uint64_t size)
{
    request_rec *r = q->r;
    apr_bucket_alloc_t *ba = r->connection->bucket_alloc;
    apr_bucket_brigade *bb = apr_brigade_create(r->pool, ba);
    apr_status_t st;

    APR_BRIGADE_INSERT_TAIL(bb, apr_bucket_flush_create(ba));
    st = ap_pass_brigade(r->output_filters, bb);
    apr_brigade_destroy(bb);
    if (r->status != HTTP_OK) {
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r, SU_LOGNO(00221)
                      "file %s: the response headers were refused; %d was "
                      "sent instead", id, r->status);
        su_audit_only(q, su_audit(q, "file.read", r->status, id,
                                  su_err_code(SU_ERR_INTERNAL), 0));
        return AP_FILTER_ERROR;
    }
    su_audit_only(q, su_audit(q, "file.read", HTTP_OK, id, "",
                              r->header_only ? 0 : size));
    ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r, SU_LOGNO(00042)
                  "file read: id %s, %" APR_UINT64_T_FMT " bytes", id, size);
    return st == APR_SUCCESS && !r->connection->aborted ? OK : AP_FILTER_ERROR;
}

/*
 * Is the verified file the one uploaded under this id? A valid file of
 * another id copied over it verifies too, but its IV is not the one
 * recorded at upload. Metadata from before IVs were recorded has none: such
 * a file is served as before (secupload fsck lists it, and records it).
 */
static int su_files_bound(const su_fmt_reader_t *rd, apr_table_t *meta)
{
    const char *want = apr_table_get(meta, "iv");
    char iv[SU_FMT_IV_HEX_LEN + 1];

    if (want == NULL)
        return 1;
    su_fmt_reader_iv_hex(rd, iv);
    return strcmp(iv, want) == 0;
}

/* Open id's file for an answer, or say why it cannot be given out. */
static su_err_t su_files_open(su_req_t *q, const char *path, apr_table_t *meta,
                              su_fmt_reader_t **rd, uint64_t *size,
                              const char **why)
{
    const su_kek_t *const *keks = (const su_kek_t *const *)q->srv->keks->elts;
    su_err_t rv;

    rv = su_fmt_reader_open_ex(q->r->pool, path, keks, q->srv->keks->nelts,
                               su_files_map_flags(q->r), rd, size);
    *why = rv == SU_ERR_INTEGRITY ? "verification failed (tampered, truncated, "
                                    "or no configured key opens it)"
           : rv == SU_ERR_NOT_FOUND ? "missing" : "cannot be read";
    if (rv != SU_OK)
        return rv;
    if (*size != (uint64_t)apr_atoi64(su_meta_get(meta, "size"))) {
        rv = SU_ERR_INTEGRITY;
    } else if (!su_files_bound(*rd, meta)) {
        *why = "not the file stored under this id (its IV is not the one "
               "recorded at upload: replaced in the storage directory)";
        rv = SU_ERR_INTEGRITY;
    }
    if (rv != SU_OK)
        su_fmt_reader_close(*rd);
    return rv;
}

static int su_files_read(su_req_t *q, const char *id, apr_table_t *meta)
{
    request_rec *r = q->r;
    const char *path = su_store_path(r->pool, q->srv->storage_dir, id);
    su_fmt_reader_t *rd = NULL;
    uint64_t size = 0;
    const char *why = NULL;
    su_err_t rv;
    int rc;

    rv = su_files_open(q, path, meta, &rd, &size, &why);
    if (rv != SU_OK)
        return su_fail(q, rv == SU_ERR_NOT_FOUND ? SU_ERR_INTERNAL : rv,
                       "Internal error.",
                       apr_psprintf(r->pool, "%s: %s", path, why), id, 0);

    su_files_headers(q, id, meta, size);
    rc = su_files_send_head(q, id, size);
    if (rc != OK || r->header_only) {
        su_fmt_reader_close(rd);
        return rc;
    }
    return su_files_stream(q, id, rd);
}

static int su_handle_files(su_req_t *q)
{
    request_rec *r = q->r;
    apr_table_t *meta = NULL;
    const char *id;
    int is_meta;
    su_err_t rv;

    q->action = "file request";
    q->allow = "GET, HEAD, DELETE";
    id = su_files_id(r, &is_meta);
    if (r->method_number != M_GET && (r->method_number != M_DELETE || is_meta)) {
        if (is_meta)
            q->allow = "GET, HEAD";
        q->body_unread = 1;
        return su_fail(q, SU_ERR_METHOD, "Method not allowed here.",
                       apr_pstrcat(r->pool, "method ", r->method, NULL), id, 0);
    }
    if (id == NULL)
        return su_fail(q, SU_ERR_NOT_FOUND, "No such file.", "malformed id", NULL, 0);
    if (su_req_redis(q) != SU_OK)
        return su_fail(q, SU_ERR_UNAVAILABLE, "The metadata store is unavailable. "
                       "Try again later.", "Redis unavailable", id, 0);
    rv = su_redis_get_meta(q->redis, r->pool, id, &meta);
    if (rv == SU_ERR_NOT_FOUND)
        return su_fail(q, rv, "No such file.", "unknown id", id, 0);
    if (rv != SU_OK)
        return su_fail(q, SU_ERR_UNAVAILABLE, "The metadata store is unavailable. "
                       "Try again later.", su_redis_errstr(q->redis), id, 0);
    if (su_owner_denied(q, meta)) {
        q->fail_event = "file.denied";
        return su_fail(q, SU_ERR_NOT_FOUND, "No such file.",
                       apr_psprintf(r->pool, "user '%s' is not the owner",
                                    r->user ? r->user : ""), id, 0);
    }
    if (is_meta)
        return su_files_meta(q, meta);
    q->fail_event = "file.read";
    if (r->method_number == M_DELETE) {
        q->fail_event = "file.deleted";
        return su_files_delete(q, id, meta);
    }
    return su_files_read(q, id, meta);
}

/* Gather what every request needs; NULL if the server is not set up. */
static su_req_t *su_req_create(request_rec *r)
{
    su_req_t *q = apr_pcalloc(r->pool, sizeof(*q));

    q->r = r;
    q->srv = su_srv(r->server);
    q->dir = ap_get_module_config(r->per_dir_config, &secupload_module);
    q->request_id = su_request_id(r);
    q->time = su_rfc3339(r->pool, r->request_time);
    if (q->srv->rt == NULL || q->srv->storage_dir == NULL || q->srv->keks->nelts == 0) {
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r, SU_LOGNO(00030)
                      "SetHandler %s is used, but SecUploadStorageDir and "
                      "SecUploadKeyFile are not configured for this server",
                      r->handler);
        return NULL;
    }
    apr_pool_cleanup_register(r->pool, q, su_req_release, apr_pool_cleanup_null);
    return q;
}

/*
 * A handler name alone serves nothing: SetHandler is open to any .htaccess
 * with AllowOverride FileInfo, and could otherwise serve stored files, or
 * take uploads, around the admin's sections. Only where the admin enabled
 * that very handler (so a .htaccess cannot switch an upload section to the
 * files handler either) does the module answer.
 */
static int su_enabled(request_rec *r, int upload)
{
    const su_dir_conf_t *d = ap_get_module_config(r->per_dir_config,
                                                  &secupload_module);
    int want = upload ? SU_ENABLE_UPLOAD : SU_ENABLE_FILES;

    if (d->enable == want)
        return 1;
    ap_log_rerror(APLOG_MARK, APLOG_WARNING, 0, r, SU_LOGNO(00240)
                  "SetHandler %s is ignored here: %s; the module declines, "
                  "Apache's default handler answers", r->handler,
                  d->enable == -1 ? "no SecUploadEnable applies"
                  : d->enable == SU_ENABLE_OFF ? "SecUploadEnable is Off"
                  : upload ? "SecUploadEnable is files"
                  : "SecUploadEnable is upload");
    return 0;
}

static int su_handler(request_rec *r)
{
    int upload;
    su_req_t *q;

    if (r->handler == NULL)
        return DECLINED;
    upload = strcmp(r->handler, "secupload") == 0;
    if (!upload && strcmp(r->handler, "secupload-files") != 0)
        return DECLINED;
    if (!su_enabled(r, upload))
        return DECLINED;
    q = su_req_create(r);
    if (q == NULL) {
        r->connection->keepalive = AP_CONN_CLOSE;
        return su_respond(r, HTTP_INTERNAL_SERVER_ERROR,
                          su_json_error(r->pool, SU_ERR_INTERNAL, "Internal error."));
    }
    if (upload) {
        q->action = "upload";
        q->fail_event = "upload.rejected";
        q->allow = "POST";
        q->body_unread = 1;
        q->body_untouched = 1;
        return su_handle_upload(q);
    }
    return su_handle_files(q);
}

static void su_register_hooks(apr_pool_t *p)
{
    (void)p;
    ap_hook_check_config(su_check_config, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_post_config(su_post_config, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_child_init(su_child_init, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_handler(su_handler, NULL, NULL, APR_HOOK_MIDDLE);
    su_body_error_filter = ap_register_output_filter("SECUPLOAD_BODY_ERROR",
                                                     su_catch_body_error, NULL,
                                                     AP_FTYPE_CONTENT_SET);
}

AP_DECLARE_MODULE(secupload) = {
    STANDARD20_MODULE_STUFF,
    su_create_dir_conf,
    su_merge_dir_conf,
    su_create_srv_conf,
    su_merge_srv_conf,
    su_cmds,
    su_register_hooks,
#if defined(AP_MODULE_FLAG_ALWAYS_MERGE)
    AP_MODULE_FLAG_ALWAYS_MERGE
#endif
};
