/*
 * mod_secupload: what the files of the Apache face share. The module is
 * mod_secupload.c (module record, hooks, dispatch, su_fail),
 * mod_secupload_config.c (records, merging, directives),
 * mod_secupload_start.c (start-up checks, temp-file sweep, child init),
 * mod_secupload_upload.c (the upload handler), mod_secupload_settle.c
 * (settling unknown outcomes, the settler on mod_watchdog),
 * mod_secupload_files.c (the files handler), mod_secupload_tus.c
 * (resumable uploads, the tus protocol), mod_secupload_cors.c (CORS
 * for the handlers) and mod_secupload_status.c (its figures in
 * mod_status); the core is in src/.
 */
#ifndef MOD_SECUPLOAD_H
#define MOD_SECUPLOAD_H

#include "httpd.h"
#include "http_config.h"
#include "util_filter.h"
#include "mod_watchdog.h"

#include <apr_tables.h>

#include "su_common.h"
#include "su_defaults.h"
#include "su_redis.h"
#include "su_settle.h"

/* Stable message ids, so that admins can grep for a message. */
#define SU_LOGNO(n) "SU" #n ": "

/* The audit events (docs/api.md, "Audit entries"). */
#define SU_EV_UPLOAD_STORED   "upload.stored"
#define SU_EV_UPLOAD_REJECTED "upload.rejected"
#define SU_EV_FILE_READ       "file.read"
#define SU_EV_FILE_DELETED    "file.deleted"
#define SU_EV_FILE_DENIED     "file.denied"
/* resumable uploads: begun, given up by the client, expired unfinished */
#define SU_EV_UPLOAD_CREATED    "upload.created"
#define SU_EV_UPLOAD_TERMINATED "upload.terminated"
#define SU_EV_UPLOAD_EXPIRED    "upload.expired"

/* room for multipart framing above SecUploadMaxSize in a declared length */
#define SU_FRAMING_SLACK        ((apr_uint64_t)1 << 20)

extern module AP_MODULE_DECLARE_DATA secupload_module;

/* ---- configuration (as parsed; never changed while serving) ---- */

/*
 * One convention for every setting. A record holds what its section wrote;
 * a value it did not set is SU_UNSET (a number or flag) or NULL (a string
 * or list). Merging takes the inner section's value where it is set, else
 * the outer one's (SU_MERGE_NUM, SU_MERGE_PTR). The value in force is read
 * only through its accessor, su_conf_*, the one place that applies its
 * default (src/su_defaults.h, shared with the secupload tool).
 */
#define SU_UNSET (-1)
#define SU_MERGE_NUM(c, base, add, f) \
    ((c)->f = (add)->f != SU_UNSET ? (add)->f : (base)->f)
#define SU_MERGE_PTR(c, base, add, f) \
    ((c)->f = (add)->f != NULL ? (add)->f : (base)->f)

typedef struct su_srv_rt su_srv_rt_t;

typedef struct su_srv_conf {
    const char *storage_dir;
    apr_array_header_t *keks;        /* su_kek_t *; [0] encrypts */
    /* host, port and socket_path are set together (SecUploadRedisServer) */
    su_redis_conf_t redis;
    int format_version;              /* of new files: 1 or 2 */
    int tus_used;                    /* a section here says SecUploadEnable tus */
    su_srv_rt_t *rt;                 /* per child, made in child_init */
} su_srv_conf_t;

typedef struct su_dir_conf {
    apr_int64_t max_size;
    const char *field_name;
    apr_array_header_t *allowed_types; /* const char *; NULL: any type */
    int sync;
    int owner_only;
    int enable;                        /* SU_ENABLE_*; SU_UNSET: none */
    apr_array_header_t *cors_origins;  /* const char *; empty: none (Off) */
    apr_int64_t tus_expire;            /* seconds (SecUploadTusExpire) */
} su_dir_conf_t;

/*
 * SecUploadEnable: which handler may serve here. SetHandler alone needs
 * only AllowOverride FileInfo in .htaccess; this one is the admin's.
 */
#define SU_ENABLE_OFF    0
#define SU_ENABLE_UPLOAD 1
#define SU_ENABLE_FILES  2
#define SU_ENABLE_TUS    3

/* ---- runtime state (per child process) ---- */

struct su_srv_rt {
    su_redis_pool_t *redis;
    /* what this process last saw of DIR/.unsettled: uploads whose
     * metadata write may have been applied although its answer was lost
     * are marked there, and their hashes go once Redis answers */
    su_settle_t *settle;
};

/* Everything one request needs, gathered once. */
typedef struct su_req {
    request_rec *r;
    su_srv_conf_t *srv;
    su_dir_conf_t *dir;
    su_redis_t *redis;
    const char *request_id;
    const char *time;
    const char *action;       /* "upload", "read", "delete": for log lines */
    const char *allow;        /* methods of this handler, for 405 */
    int body_unread;          /* close the connection after an error */
    int body_untouched;       /* not one body byte read yet */
} su_req_t;


/* ---- mod_secupload.c: the request, its Redis connection, audit, answers ---- */

su_err_t su_req_redis(su_req_t *q);
void su_req_drop_redis(su_req_t *q);
su_err_t su_req_redis_live(su_req_t *q);
const char *su_rfc3339(apr_pool_t *p, apr_time_t t);
void su_kv(apr_array_header_t *a, const char *k, const char *v);
apr_array_header_t *su_audit(su_req_t *q, const char *event, int status,
                             const char *id, const char *reason,
                             apr_uint64_t bytes);
void su_audit_only(su_req_t *q, apr_array_header_t *audit);
int su_respond(request_rec *r, int status, const char *json);
int su_http_status(su_err_t e);
void su_note(request_rec *r, const char *id, const char *outcome,
             const apr_uint64_t *size);
/*
 * The one failure exit: e becomes the answer; event is the audit entry to
 * write for it (SU_EV_*), NULL for none; message NULL: e's default words.
 */
int su_fail(su_req_t *q, su_err_t e, const char *event, const char *message,
            const char *detail, const char *id, apr_uint64_t bytes);

/* ---- mod_secupload_config.c ---- */

extern const command_rec su_cmds[];
void *su_create_srv_conf(apr_pool_t *p, server_rec *s);
void *su_merge_srv_conf(apr_pool_t *p, void *basev, void *addv);
void *su_create_dir_conf(apr_pool_t *p, char *dir);
void *su_merge_dir_conf(apr_pool_t *p, void *basev, void *addv);
su_srv_conf_t *su_srv(const server_rec *s);
/* the values in force (see the convention above) */
int su_conf_in_use(const su_srv_conf_t *c);
void su_conf_redis(const su_srv_conf_t *c, su_redis_conf_t *out);
int su_conf_redis_timeout(const su_srv_conf_t *c);
int su_conf_format_version(const su_srv_conf_t *c);
apr_uint64_t su_conf_max_size(const su_dir_conf_t *d);
const char *su_conf_field_name(const su_dir_conf_t *d);
int su_conf_sync(const su_dir_conf_t *d);
int su_conf_owner_only(const su_dir_conf_t *d);
const apr_array_header_t *su_conf_cors_origins(const su_dir_conf_t *d);
apr_int64_t su_conf_tus_expire(const su_dir_conf_t *d);

/* ---- mod_secupload_start.c ---- */

int su_check_config(apr_pool_t *pconf, apr_pool_t *plog, apr_pool_t *ptemp,
                    server_rec *s);
int su_post_config(apr_pool_t *pconf, apr_pool_t *plog, apr_pool_t *ptemp,
                   server_rec *s);
void su_child_init(apr_pool_t *pchild, server_rec *s);

/* ---- mod_secupload_upload.c ---- */

extern ap_filter_rec_t *su_body_error_filter;
apr_status_t su_catch_body_error(ap_filter_t *f, apr_bucket_brigade *bb);
su_err_t su_read_error(request_rec *r, apr_status_t rv, int caught,
                       const char **detail);
void su_body_wipe(request_rec *r, apr_bucket *e, const char *data,
                  apr_size_t len);
void su_drain_small_h2(su_req_t *q);
int su_handle_upload(su_req_t *q);

/* A finished file to store: what its metadata says, and how it is renamed
 * into place (commit) or dropped (discard). */
typedef struct su_commit {
    const struct su_upload_info *info;
    su_err_t (*commit)(void *baton, int sync, const char **message,
                       const char **detail);
    void (*discard)(void *baton);
    void *baton;
} su_commit_t;
int su_commit_stored(su_req_t *q, const su_commit_t *c, int sync);

/* ---- mod_secupload_settle.c ---- */

void su_settle_pending(su_req_t *q);
/* periodic work on mod_watchdog (su_watchdog_start) */
typedef enum {
    SU_WD_STARTED, SU_WD_NOT_NEEDED, SU_WD_NO_MODULE, SU_WD_FAILED
} su_watchdog_t;
su_watchdog_t su_watchdog_start(apr_pool_t *pconf, server_rec *s, const char *name,
                                apr_interval_time_t interval,
                                int (*wants)(const su_srv_conf_t *),
                                ap_watchdog_callback_fn_t *cb, apr_status_t *rv);
void su_settle_upload(su_req_t *q, const char *id, apr_uint64_t bytes);
int su_settler_post_config(apr_pool_t *pconf, apr_pool_t *plog,
                           apr_pool_t *ptemp, server_rec *s);

/* ---- mod_secupload_tus.c ---- */

int su_handle_tus(su_req_t *q);
int su_tus_post_config(apr_pool_t *pconf, apr_pool_t *plog, apr_pool_t *ptemp,
                       server_rec *s);

/* ---- mod_secupload_files.c ---- */

int su_handle_files(su_req_t *q);

/* ---- mod_secupload_cors.c ---- */

const char *su_cors_origin_check(apr_pool_t *p, const char *origin);
int su_cors(request_rec *r);

/* ---- mod_secupload_status.c: figures for /server-status ---- */

/* Counters that only grow, summed over all children. */
typedef enum su_stat {
    SU_STAT_STORED,          /* uploads stored (201) */
    SU_STAT_BYTES_IN,        /* their plaintext bytes */
    SU_STAT_DOWNLOADS,       /* reads whose answer started (GET, HEAD) */
    SU_STAT_BYTES_OUT,       /* plaintext bytes handed to the client */
    SU_STAT_DELETES,         /* files deleted (204) */
    SU_STAT_REDIS_ERRORS,    /* connections not made, or dropped broken */
    SU_STAT_REDIS_CONNECTS,  /* connections made */
    SU_STAT_REJECTED         /* + su_err_t: uploads refused, by kind */
} su_stat_t;
#define SU_STAT_COUNT (SU_STAT_REJECTED + SU_ERR_ABORTED + 1)

/* Figures that go up and down, kept per process. */
typedef enum su_gauge {
    SU_GAUGE_IN_FLIGHT,      /* uploads being handled */
    SU_GAUGE_REDIS_IN_USE,   /* Redis connections held by requests */
    SU_GAUGE_COUNT
} su_gauge_t;

void su_stat_add(su_stat_t which, apr_uint64_t n);
void su_stat_gauge(su_gauge_t which, int delta);
void su_stat_rejected(const su_req_t *q, su_err_t e);
void su_stat_upload_begins(su_req_t *q);
void su_stat_register_hooks(apr_pool_t *p);

#endif
