/*
 * mod_secupload: the configuration. Creating and merging the per-server and
 * per-directory records, the value in force of each setting (su_conf_*),
 * and the directives.
 */
#include "httpd.h"
#include "http_config.h"
#include "http_core.h"

#include <apr_lib.h>
#include <apr_strings.h>
#include <sys/stat.h>

#include "su_hdr.h"
#include "su_key.h"
#include "su_redis.h"
#include "su_util.h"

#include "mod_secupload.h"

void *su_create_srv_conf(apr_pool_t *p, server_rec *s)
{
    su_srv_conf_t *c = apr_pcalloc(p, sizeof(*c));
    (void)s;
    c->redis.port = SU_UNSET;
    c->redis.db = SU_UNSET;
    c->redis.timeout_ms = SU_UNSET;
    c->redis.audit_maxlen = SU_UNSET;
    c->format_version = SU_UNSET;
    c->redis.wait_replicas = SU_UNSET;
    c->redis.wait_timeout_ms = SU_UNSET;
    return c;
}

/* Field by field, the Redis settings of add where it set them, else base's. */
static void su_merge_redis(su_redis_conf_t *c, const su_redis_conf_t *base,
                           const su_redis_conf_t *add)
{
    /* one directive sets the address: a host and port, a socket, or the
     * sentinels and the master's name */
    const su_redis_conf_t *addr =
        add->host || add->socket_path || add->sentinel_master ? add : base;
    /* and one the replicas to wait for, with their timeout */
    const su_redis_conf_t *wait = add->wait_replicas != SU_UNSET ? add : base;

    c->host = addr->host;
    c->port = addr->port;
    c->socket_path = addr->socket_path;
    c->sentinel_master = addr->sentinel_master;
    c->sentinels = addr->sentinels;
    c->wait_replicas = wait->wait_replicas;
    c->wait_timeout_ms = wait->wait_timeout_ms;
    SU_MERGE_PTR(c, base, add, password);
    SU_MERGE_PTR(c, base, add, user);
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
    SU_MERGE_NUM(c, base, add, format_version);
    /* a <Location> of the main server serves its virtual hosts too */
    c->tus_used = base->tus_used || add->tus_used;
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
    c->tus_expire = SU_UNSET;
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
    SU_MERGE_PTR(c, base, add, cors_origins);
    SU_MERGE_NUM(c, base, add, tus_expire);
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

int su_conf_format_version(const su_srv_conf_t *c)
{
    return c->format_version != SU_UNSET ? c->format_version
                                         : SU_DEFAULT_FORMAT_VERSION;
}

apr_uint64_t su_conf_max_size(const su_dir_conf_t *d)
{
    return d->max_size != SU_UNSET ? (apr_uint64_t)d->max_size : SU_DEFAULT_MAX_SIZE;
}

const char *su_conf_field_name(const su_dir_conf_t *d)
{
    return d->field_name ? d->field_name : SU_DEFAULT_FIELD_NAME;
}

apr_int64_t su_conf_tus_expire(const su_dir_conf_t *d)
{
    return d->tus_expire != SU_UNSET ? d->tus_expire : SU_DEFAULT_TUS_EXPIRE;
}

int su_conf_sync(const su_dir_conf_t *d)
{
    return d->sync != SU_UNSET ? d->sync : SU_DEFAULT_SYNC;
}

int su_conf_owner_only(const su_dir_conf_t *d)
{
    return d->owner_only != SU_UNSET ? d->owner_only : SU_DEFAULT_OWNER_ONLY;
}

/* No origin is allowed unless the admin named it. */
const apr_array_header_t *su_conf_cors_origins(const su_dir_conf_t *d)
{
    return d->cors_origins;
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

/*
 * SecUploadRedisServer and SecUploadRedisSentinel set the one address of a
 * server; as for any Apache directive, the later one read wins (Debian's
 * conf-enabled/ files override the module's .conf this way). Each forgets
 * what the other had set.
 */
static void su_redis_address_reset(su_srv_conf_t *c)
{
    c->redis.host = NULL;
    c->redis.socket_path = NULL;
    c->redis.sentinel_master = NULL;
    c->redis.sentinels = NULL;
}

static const char *su_cmd_redis_server(cmd_parms *cmd, void *dc, const char *arg)
{
    su_srv_conf_t *c = su_srv(cmd->server);
    const char *err = NULL;
    (void)dc;

    su_redis_address_reset(c);
    if (su_redis_parse_server(cmd->pool, arg, &c->redis, &err) != SU_OK)
        return apr_pstrcat(cmd->pool, cmd->cmd->name, ": ", err, NULL);
    return NULL;
}

/* SecUploadRedisSentinel MASTER HOST:PORT [HOST:PORT...] */
static const char *su_cmd_redis_sentinel(cmd_parms *cmd, void *dc, int argc,
                                         char *const argv[])
{
    su_srv_conf_t *c = su_srv(cmd->server);
    const char *err = NULL;
    (void)dc;

    su_redis_address_reset(c);
    if (argc < 2)
        return apr_pstrcat(cmd->pool, cmd->cmd->name, ": expected the master's "
                           "name and at least one sentinel as HOST:PORT", NULL);
    if (su_redis_parse_sentinels(cmd->pool, argv[0], argc - 1,
                                 (const char *const *)argv + 1, &c->redis, &err)
        != SU_OK)
        return apr_pstrcat(cmd->pool, cmd->cmd->name, ": ", err, NULL);
    return NULL;
}

/* An ACL user name: printable, no blank (it goes in AUTH as one word). */
static const char *su_cmd_redis_user(cmd_parms *cmd, void *dc, const char *arg)
{
    su_srv_conf_t *c = su_srv(cmd->server);
    const char *s;
    (void)dc;

    for (s = arg; *s; s++)
        if ((unsigned char)*s <= 0x20 || *s == 0x7f)
            break;
    if (*arg == '\0' || *s != '\0' || strlen(arg) > 128)
        return apr_pstrcat(cmd->pool, cmd->cmd->name, ": the user name must be "
                           "1-128 printable characters, no blank", NULL);
    c->redis.user = arg;
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

/* SecUploadRedisWaitReplicas N [TIMEOUT_MS]: 0 turns it off */
static const char *su_cmd_redis_wait(cmd_parms *cmd, void *dc, const char *n,
                                     const char *ms)
{
    su_srv_conf_t *c = su_srv(cmd->server);
    apr_int64_t v, t = 0;
    const char *err = su_num_arg(cmd, n, 0, 100, &v);
    (void)dc;

    if (err == NULL && ms)
        err = su_num_arg(cmd, ms, 1, 600000, &t);
    if (err)
        return err;
    c->redis.wait_replicas = (int)v;
    c->redis.wait_timeout_ms = (int)t;
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

/* The format of new files; every version stays readable. */
static const char *su_cmd_format_version(cmd_parms *cmd, void *dc, const char *arg)
{
    (void)dc;
    if (strcmp(arg, "1") != 0 && strcmp(arg, "2") != 0)
        return apr_pstrcat(cmd->pool, cmd->cmd->name, ": '", arg,
                           "' is not a format version (1 or 2)", NULL);
    su_srv(cmd->server)->format_version = arg[0] - '0';
    return NULL;
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
    else if (strcasecmp(arg, "tus") == 0) {
        d->enable = SU_ENABLE_TUS;
        su_srv(cmd->server)->tus_used = 1;
    }
    else if (strcasecmp(arg, "off") == 0)
        d->enable = SU_ENABLE_OFF;
    else
        return apr_pstrcat(cmd->pool, cmd->cmd->name, ": '", arg,
                           "' is not one of upload, files, tus, Off", NULL);
    return NULL;
}

/* SecUploadTusExpire SECONDS: how long an unfinished resumable upload is
 * kept after its last request. */
static const char *su_cmd_tus_expire(cmd_parms *cmd, void *dc, const char *arg)
{
    apr_int64_t v;

    if (!su_util_parse_num(arg, 1, SU_MAX_TUS_EXPIRE, &v))
        return apr_pstrcat(cmd->pool, cmd->cmd->name, ": '", arg,
                           "' is not a number of seconds from 1 to "
                           APR_STRINGIFY(SU_MAX_TUS_EXPIRE), NULL);
    ((su_dir_conf_t *)dc)->tus_expire = v;
    return NULL;
}

/*
 * SecUploadCorsOrigins ORIGIN...: lines add up, like SecUploadAllowedTypes;
 * an inner section's list replaces the outer one whole, and None (alone)
 * there allows no origin again.
 */
static const char *su_cmd_cors_origins(cmd_parms *cmd, void *dc, const char *arg)
{
    su_dir_conf_t *d = dc;
    int none = strcasecmp(arg, "none") == 0;
    const char *why = none ? NULL : su_cors_origin_check(cmd->pool, arg);

    if (why)
        return apr_pstrcat(cmd->pool, cmd->cmd->name, ": ", why, NULL);
    if (d->cors_origins == NULL)
        d->cors_origins = apr_array_make(cmd->pool, 4, sizeof(const char *));
    if (!none)
        APR_ARRAY_PUSH(d->cors_origins, const char *) = apr_pstrdup(cmd->pool, arg);
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
    AP_INIT_TAKE_ARGV("SecUploadRedisSentinel", su_cmd_redis_sentinel, NULL,
                      RSRC_CONF, "The Redis master's name and the sentinels "
                      "(HOST:PORT...) that know where it is"),
    AP_INIT_TAKE1("SecUploadRedisPassword", su_cmd_redis_password, NULL, RSRC_CONF,
                  "Redis AUTH password"),
    AP_INIT_TAKE1("SecUploadRedisUser", su_cmd_redis_user, NULL, RSRC_CONF,
                  "Redis ACL user (AUTH user password)"),
    AP_INIT_TAKE12("SecUploadRedisWaitReplicas", su_cmd_redis_wait, NULL, RSRC_CONF,
                   "Replicas that must have an upload's metadata before it is "
                   "acknowledged, and how long to wait for them (ms)"),
    AP_INIT_TAKE1("SecUploadRedisDatabase", su_cmd_redis_db, NULL, RSRC_CONF,
                  "Redis database number"),
    AP_INIT_TAKE1("SecUploadRedisTimeout", su_cmd_redis_timeout, NULL, RSRC_CONF,
                  "Redis connect and command timeout in milliseconds"),
    AP_INIT_TAKE1("SecUploadRedisPrefix", su_cmd_redis_prefix, NULL, RSRC_CONF,
                  "Prefix of every Redis key"),
    AP_INIT_TAKE1("SecUploadAuditMaxLen", su_cmd_audit_maxlen, NULL, RSRC_CONF,
                  "Approximate cap of the audit stream"),
    AP_INIT_TAKE1("SecUploadFormatVersion", su_cmd_format_version, NULL, RSRC_CONF,
                  "Format of new files: 2 (segmented, the default) or 1 (for "
                  "servers that read only version 1)"),
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
                  "secupload), files (SetHandler secupload-files), tus "
                  "(SetHandler secupload-tus) or Off"),
    AP_INIT_TAKE1("SecUploadTusExpire", su_cmd_tus_expire, NULL,
                  RSRC_CONF | ACCESS_CONF,
                  "Seconds an unfinished resumable upload is kept after its "
                  "last request (default 86400)"),
    AP_INIT_ITERATE("SecUploadCorsOrigins", su_cmd_cors_origins, NULL,
                    RSRC_CONF | ACCESS_CONF,
                    "Origins (scheme://host[:port]) whose pages may call the "
                    "upload or files handler here; * for any, None for none"),
    { NULL }
};
