/*
 * Metadata and audit trail in Redis (docs/format.md, "Redis"), through
 * hiredis 0.14.
 *
 * Every command goes through redisCommandArgv/redisAppendCommandArgv with
 * explicit lengths, so no client byte is ever interpreted as a format.
 * Any failure is SU_ERR_UNAVAILABLE; a failure that left the hiredis context
 * in an error state (I/O, EOF, protocol, timeout) also marks the connection
 * broken, because the reply stream can no longer be trusted.
 */
#include "su_redis.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>

#include <apr_atomic.h>
#include <apr_hash.h>
#include <apr_strings.h>
#include <apr_thread_mutex.h>
#include <apr_reslist.h>

#include <hiredis/hiredis.h>

#include "su_defaults.h"
#include "su_util.h"

/* The pool is an apr_reslist shared by a child's threads. */
#if !APR_HAS_THREADS
#error "mod_secupload needs APR with threads (as every Apache 2.4 MPM has)"
#endif

#define SU_REDIS_ERRLEN 200
/* SCAN rounds before giving up: a keyspace this large is not ours. */
#define SU_REDIS_SCAN_MAX_ROUNDS 100000

struct su_redis {
    redisContext *c;
    apr_pool_t *p;        /* holds the cleanup that frees c */
    apr_pool_t *own;      /* subpool owned by a su_redis_pool_t, or NULL */
    const char *prefix;
    long audit_maxlen;
    int timeout_ms;
    int broken;
    int timed_out;        /* the last failure was a timeout, not a close */
    int refused;          /* a replica refused a write: nothing applied */
    int sentinel;         /* the master was found through sentinels */
    /* the pool's generation (NULL outside a pool) and the one this
     * connection was made in: an older one is never handed out again */
    volatile apr_uint32_t *pool_gen;
    apr_uint32_t gen;
    char err[SU_REDIS_ERRLEN];
};

struct su_redis_pool {
    apr_pool_t *p;
    su_redis_conf_t conf;
    int hmax;
    apr_reslist_t *rl;
    volatile apr_uint32_t gen;    /* moves on when the master may have changed */
    apr_thread_mutex_t *mu;   /* lasterr */
    char lasterr[SU_REDIS_ERRLEN];
    void (*on_connect)(void *);   /* each connection made, or NULL */
    void *on_connect_baton;
};

/* A command under construction: argv with explicit lengths. */
typedef struct su_redis_cmd {
    const char **argv;
    size_t *len;
    int n;
    int cap;
} su_redis_cmd_t;

/* ---------------------------------------------------------------- errors */

/* Copy msg into dst, replacing bytes that do not belong in a log line. */
static void su_redis_copy_printable(char *dst, size_t dstlen, const char *msg,
                                    size_t msglen)
{
    size_t n = msglen < dstlen - 1 ? msglen : dstlen - 1;

    memcpy(dst, msg, n);
    dst[n] = '\0';
    su_util_printable(dst, n, 1);
}

static void su_redis_set_err(su_redis_t *r, const char *what, const char *msg,
                             size_t msglen)
{
    char clean[SU_REDIS_ERRLEN];

    su_redis_copy_printable(clean, sizeof(clean), msg, msglen);
    apr_snprintf(r->err, sizeof(r->err), "%s: %s", what, clean);
}

/*
 * The master may have changed (a failover): the pool moves to a new
 * generation, once for all the connections of this one that find out at
 * the same time, so that none made before is handed out again. Only with
 * Sentinel: a single server's connections are probed on acquire as before.
 */
static void su_redis_suspect(su_redis_t *r)
{
    if (r->sentinel && r->pool_gen)
        apr_atomic_cas32(r->pool_gen, r->gen + 1, r->gen);
}

/* The context failed: the connection cannot be trusted any more. */
static su_err_t su_redis_ctx_failed(su_redis_t *r, const char *what)
{
    const char *msg = "no reply";

    if (r->c && r->c->err) {
        msg = r->c->errstr[0] ? r->c->errstr : "I/O error";
        if (r->c->err == REDIS_ERR_IO && strstr(msg, "temporarily")) {
            msg = "timed out";
            r->timed_out = 1;
        }
    }
    su_redis_set_err(r, what, msg, strlen(msg));
    r->broken = 1;
    su_redis_suspect(r);
    return SU_ERR_UNAVAILABLE;
}

/*
 * A server that is no longer the master: a replica refuses writes
 * (READONLY, also inside a script's error) or has lost its master
 * (MASTERDOWN). Nothing was applied; the connection is not used again.
 */
static int su_redis_not_master(const redisReply *rep)
{
    if (rep == NULL || rep->type != REDIS_REPLY_ERROR || rep->str == NULL)
        return 0;
    return strncmp(rep->str, "READONLY", 8) == 0
           || strncmp(rep->str, "MASTERDOWN", 10) == 0
           || strstr(rep->str, "READONLY You can't write") != NULL;
}

static void su_redis_demoted(su_redis_t *r)
{
    r->broken = 1;
    r->refused = 1;
    su_redis_suspect(r);
}

/* An error reply: the stream is still in step, the connection stays usable. */
static su_err_t su_redis_reply_failed(su_redis_t *r, const char *what,
                                      const redisReply *rep)
{
    if (rep && rep->type == REDIS_REPLY_ERROR && rep->str)
        su_redis_set_err(r, what, rep->str, rep->len);
    else
        su_redis_set_err(r, what, "unexpected reply", 16);
    if (su_redis_not_master(rep))
        su_redis_demoted(r);
    return SU_ERR_UNAVAILABLE;
}

static int su_redis_is_error(const redisReply *rep)
{
    return rep == NULL || rep->type == REDIS_REPLY_ERROR;
}

/* -------------------------------------------------------------- commands */

static su_redis_cmd_t *su_redis_cmd_make(apr_pool_t *p, int cap)
{
    su_redis_cmd_t *cmd = apr_pcalloc(p, sizeof(*cmd));

    cmd->argv = apr_pcalloc(p, sizeof(*cmd->argv) * (size_t)cap);
    cmd->len = apr_pcalloc(p, sizeof(*cmd->len) * (size_t)cap);
    cmd->cap = cap;
    return cmd;
}

static void su_redis_cmd_arg(su_redis_cmd_t *cmd, const char *s)
{
    if (cmd->n >= cmd->cap)
        return; /* capacities are computed by the callers; never reached */
    cmd->argv[cmd->n] = s ? s : "";
    cmd->len[cmd->n] = strlen(cmd->argv[cmd->n]);
    cmd->n++;
}

static void su_redis_cmd_kvs(su_redis_cmd_t *cmd, const apr_array_header_t *kvs)
{
    int i;

    for (i = 0; i < kvs->nelts; i++) {
        const su_kv_t *kv = &APR_ARRAY_IDX(kvs, i, su_kv_t);
        su_redis_cmd_arg(cmd, kv->k);
        su_redis_cmd_arg(cmd, kv->v);
    }
}

static int su_redis_kvs_ok(const apr_array_header_t *kvs)
{
    return kvs && kvs->nelts > 0 && kvs->elt_size == sizeof(su_kv_t)
           && kvs->nelts < (1 << 20);
}

static const char *su_redis_file_key(const su_redis_t *r, apr_pool_t *p,
                                     const char *id)
{
    return apr_pstrcat(p, r->prefix, "file:", id, NULL);
}

/* XADD PREFIXaudit [MAXLEN ~ N] * fields... */
static su_redis_cmd_t *su_redis_xadd_cmd(su_redis_t *r, apr_pool_t *p,
                                         const apr_array_header_t *audit)
{
    su_redis_cmd_t *cmd = su_redis_cmd_make(p, 6 + 2 * audit->nelts);

    su_redis_cmd_arg(cmd, "XADD");
    su_redis_cmd_arg(cmd, apr_pstrcat(p, r->prefix, "audit", NULL));
    if (r->audit_maxlen > 0) {
        su_redis_cmd_arg(cmd, "MAXLEN");
        su_redis_cmd_arg(cmd, "~");
        su_redis_cmd_arg(cmd, apr_ltoa(p, r->audit_maxlen));
    }
    su_redis_cmd_arg(cmd, "*");
    su_redis_cmd_kvs(cmd, audit);
    return cmd;
}

static int su_redis_ready(su_redis_t *r)
{
    if (r == NULL)
        return 0;
    if (r->c == NULL || r->broken) {
        if (r->c)
            snprintf(r->err, sizeof(r->err), "connection is broken");
        else
            snprintf(r->err, sizeof(r->err), "connection is closed");
        return 0;
    }
    return 1;
}

/* One command; *out is an error-free reply the caller frees. */
static su_err_t su_redis_run(su_redis_t *r, const su_redis_cmd_t *cmd,
                             redisReply **out)
{
    redisReply *rep;

    *out = NULL;
    if (!su_redis_ready(r))
        return SU_ERR_UNAVAILABLE;
    rep = redisCommandArgv(r->c, cmd->n, cmd->argv, cmd->len);
    if (rep == NULL)
        return su_redis_ctx_failed(r, cmd->argv[0]);
    if (rep->type == REDIS_REPLY_ERROR) {
        su_redis_reply_failed(r, cmd->argv[0], rep);
        freeReplyObject(rep);
        return SU_ERR_UNAVAILABLE;
    }
    *out = rep;
    return SU_OK;
}

static void su_redis_free_replies(redisReply **reps, int n)
{
    int i;

    for (i = 0; i < n; i++)
        if (reps[i])
            freeReplyObject(reps[i]);
}

/* The first failure among MULTI, the queued commands and EXEC. */
static su_err_t su_redis_txn_check(su_redis_t *r, redisReply **reps, int n,
                                   su_redis_cmd_t **cmds)
{
    const redisReply *exec = reps[n - 1];
    size_t i;
    int k;

    for (k = 0; k < n - 1; k++)
        if (su_redis_is_error(reps[k]))
            return su_redis_reply_failed(r, k == 0 ? "MULTI" : cmds[k - 1]->argv[0],
                                         reps[k]);
    if (exec == NULL || exec->type != REDIS_REPLY_ARRAY
        || exec->elements != (size_t)(n - 2))
        return su_redis_reply_failed(r, "EXEC", exec);
    for (i = 0; i < exec->elements; i++)
        if (su_redis_is_error(exec->element[i]))
            return su_redis_reply_failed(r, cmds[i]->argv[0], exec->element[i]);
    return SU_OK;
}

/*
 * MULTI; cmds...; EXEC as one pipeline (one round trip). On success *exec is
 * the EXEC reply (an array with one element per command), freed by the
 * caller.
 */
static su_err_t su_redis_txn(su_redis_t *r, apr_pool_t *p, su_redis_cmd_t **cmds,
                             int ncmds, redisReply **exec)
{
    static const char *multi = "MULTI", *execs = "EXEC";
    size_t multi_len = 5, exec_len = 4;
    int n = ncmds + 2, k;
    redisReply **reps = apr_pcalloc(p, sizeof(*reps) * (size_t)n);
    su_err_t rv;

    *exec = NULL;
    if (!su_redis_ready(r))
        return SU_ERR_UNAVAILABLE;
    if (redisAppendCommandArgv(r->c, 1, &multi, &multi_len) != REDIS_OK)
        return su_redis_ctx_failed(r, "MULTI");
    for (k = 0; k < ncmds; k++)
        if (redisAppendCommandArgv(r->c, cmds[k]->n, cmds[k]->argv,
                                   cmds[k]->len) != REDIS_OK)
            return su_redis_ctx_failed(r, cmds[k]->argv[0]);
    if (redisAppendCommandArgv(r->c, 1, &execs, &exec_len) != REDIS_OK)
        return su_redis_ctx_failed(r, "EXEC");
    for (k = 0; k < n; k++) {
        void *rep = NULL;
        if (redisGetReply(r->c, &rep) != REDIS_OK || rep == NULL) {
            su_redis_free_replies(reps, k);
            return su_redis_ctx_failed(r, "EXEC");
        }
        reps[k] = rep;
    }
    rv = su_redis_txn_check(r, reps, n, cmds);
    if (rv == SU_OK) {
        *exec = reps[n - 1];
        reps[n - 1] = NULL;
    }
    su_redis_free_replies(reps, n);
    return rv;
}

/* ----------------------------------------------------------- parse_server */

static int su_redis_parse_port(const char *s, int *port)
{
    long v = 0;
    size_t i, n = strlen(s);

    if (n == 0 || n > 5)
        return 0;
    for (i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return 0;
        v = v * 10 + (s[i] - '0');
    }
    if (v < 1 || v > 65535)
        return 0;
    *port = (int)v;
    return 1;
}

static int su_redis_host_ok(const char *h, int v6)
{
    const char *extra = v6 ? ":.%" : "-._";

    if (*h == '\0' || strlen(h) > 255)
        return 0;
    for (; *h; h++) {
        unsigned char ch = (unsigned char)*h;
        int alnum = (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z')
                    || (ch >= 'A' && ch <= 'Z');
        if (!alnum && strchr(extra, ch) == NULL)
            return 0;
    }
    return 1;
}

static su_err_t su_redis_parse_bad(const char **err, const char *msg)
{
    if (err)
        *err = msg;
    return SU_ERR_BAD_REQUEST;
}

/* "[v6]" or "[v6]:PORT" */
static su_err_t su_redis_parse_v6(apr_pool_t *p, const char *arg,
                                  su_redis_conf_t *conf, const char **err)
{
    const char *close = strchr(arg, ']');
    const char *host;
    int port = SU_DEFAULT_REDIS_PORT;

    if (close == NULL)
        return su_redis_parse_bad(err, "redis server: missing ']' after IPv6 address");
    host = apr_pstrmemdup(p, arg + 1, (apr_size_t)(close - arg - 1));
    if (!su_redis_host_ok(host, 1) || strchr(host, ':') == NULL)
        return su_redis_parse_bad(err, "redis server: bad IPv6 address");
    if (close[1] != '\0'
        && (close[1] != ':' || !su_redis_parse_port(close + 2, &port)))
        return su_redis_parse_bad(err, "redis server: port must be 1..65535");
    conf->host = host;
    conf->port = port;
    conf->socket_path = NULL;
    return SU_OK;
}

void su_redis_conf_defaults(su_redis_conf_t *conf)
{
    memset(conf, 0, sizeof(*conf));
    conf->host = SU_DEFAULT_REDIS_HOST;
    conf->port = SU_DEFAULT_REDIS_PORT;
    conf->db = SU_DEFAULT_REDIS_DB;
    conf->timeout_ms = SU_DEFAULT_REDIS_TIMEOUT_MS;
    conf->prefix = SU_DEFAULT_REDIS_PREFIX;
    conf->audit_maxlen = SU_DEFAULT_AUDIT_MAXLEN;
}

su_err_t su_redis_parse_server(apr_pool_t *p, const char *arg,
                               su_redis_conf_t *conf, const char **err)
{
    const char *colon;
    const char *host;
    int port = SU_DEFAULT_REDIS_PORT;

    if (arg == NULL || *arg == '\0')
        return su_redis_parse_bad(err, "redis server: empty address");
    if (arg[0] == '/') {
        if (strlen(arg) >= sizeof(((struct sockaddr_un *)0)->sun_path))
            return su_redis_parse_bad(err, "redis server: socket path too long");
        conf->socket_path = apr_pstrdup(p, arg);
        conf->host = NULL;
        conf->port = 0;
        return SU_OK;
    }
    if (arg[0] == '[')
        return su_redis_parse_v6(p, arg, conf, err);
    colon = strchr(arg, ':');
    if (colon && strchr(colon + 1, ':'))
        return su_redis_parse_bad(err, "redis server: write IPv6 addresses as [addr]:port");
    host = colon ? apr_pstrmemdup(p, arg, (apr_size_t)(colon - arg)) : arg;
    if (!su_redis_host_ok(host, 0))
        return su_redis_parse_bad(err, "redis server: bad host name");
    if (colon && !su_redis_parse_port(colon + 1, &port))
        return su_redis_parse_bad(err, "redis server: port must be 1..65535");
    conf->host = apr_pstrdup(p, host);
    conf->port = port;
    conf->socket_path = NULL;
    return SU_OK;
}

/* A master name as Sentinel knows it: printable, no blank. */
static int su_redis_master_name_ok(const char *s)
{
    if (s == NULL || *s == '\0' || strlen(s) > 128)
        return 0;
    for (; *s; s++)
        if ((unsigned char)*s <= 0x20 || (unsigned char)*s >= 0x7f)
            return 0;
    return 1;
}

/* One sentinel's "HOST:PORT", "[v6]:PORT" or "HOST" (port 26379). */
static su_err_t su_redis_parse_sentinel(apr_pool_t *p, const char *arg,
                                        su_redis_addr_t *out, const char **err)
{
    su_redis_conf_t c;
    const char *port_at;

    memset(&c, 0, sizeof(c));
    if (arg && arg[0] == '/')
        return su_redis_parse_bad(err, "redis sentinel: a sentinel is asked over TCP, "
                                       "not a unix socket");
    if (su_redis_parse_server(p, arg, &c, err) != SU_OK)
        return SU_ERR_BAD_REQUEST;
    port_at = arg[0] == '[' ? strstr(arg, "]:") : strchr(arg, ':');
    out->host = c.host;
    out->port = port_at ? c.port : SU_DEFAULT_SENTINEL_PORT;
    return SU_OK;
}

su_err_t su_redis_parse_sentinels(apr_pool_t *p, const char *master, int n,
                                  const char *const *addrs,
                                  su_redis_conf_t *conf, const char **err)
{
    apr_array_header_t *a;
    int i;

    if (!su_redis_master_name_ok(master))
        return su_redis_parse_bad(err, "redis sentinel: the master name must be "
                                       "1-128 printable characters, no blank");
    if (n < 1 || n > SU_REDIS_SENTINELS_MAX)
        return su_redis_parse_bad(err, "redis sentinel: name 1 to 16 sentinels "
                                       "as HOST:PORT after the master name");
    a = apr_array_make(p, n, sizeof(su_redis_addr_t));
    for (i = 0; i < n; i++)
        if (su_redis_parse_sentinel(p, addrs[i], apr_array_push(a), err) != SU_OK)
            return SU_ERR_BAD_REQUEST;
    conf->sentinel_master = apr_pstrdup(p, master);
    conf->sentinels = a;
    conf->host = NULL;
    conf->port = 0;
    conf->socket_path = NULL;
    return SU_OK;
}

int su_redis_wait_timeout_ms(const su_redis_conf_t *conf)
{
    int t = conf->timeout_ms > 0 ? conf->timeout_ms : SU_DEFAULT_REDIS_TIMEOUT_MS;

    return conf->wait_timeout_ms > 0 ? conf->wait_timeout_ms : (t / 2 > 0 ? t / 2 : 1);
}

/* ---------------------------------------------------------------- connect */

static apr_status_t su_redis_cleanup(void *data)
{
    su_redis_t *r = data;

    if (r->c) {
        redisFree(r->c);
        r->c = NULL;
    }
    return APR_SUCCESS;
}

/* The timeout in force: a caller that left it unset gets the default. */
static int su_redis_timeout_ms(const su_redis_conf_t *conf)
{
    return conf->timeout_ms > 0 ? conf->timeout_ms : SU_DEFAULT_REDIS_TIMEOUT_MS;
}

static struct timeval su_redis_tv(int timeout_ms)
{
    struct timeval tv;

    tv.tv_sec = timeout_ms / 1000;
    tv.tv_usec = (timeout_ms % 1000) * 1000;
    return tv;
}

/* A message that might quote the password is replaced as a whole. */
static const char *su_redis_scrub(const char *msg, const char *password)
{
    if (password && *password && strstr(msg, password))
        return "authentication rejected";
    return msg;
}

/* c0 c1 [c2]: c2 NULL for a command of two words */
static su_err_t su_redis_simple(su_redis_t *r, apr_pool_t *p, const char *c0,
                                const char *c1, const char *c2)
{
    su_redis_cmd_t *cmd = su_redis_cmd_make(p, 3);
    redisReply *rep;
    su_err_t rv;

    su_redis_cmd_arg(cmd, c0);
    su_redis_cmd_arg(cmd, c1);
    if (c2)
        su_redis_cmd_arg(cmd, c2);
    rv = su_redis_run(r, cmd, &rep);
    if (rep)
        freeReplyObject(rep);
    return rv;
}

static su_err_t su_redis_handshake(su_redis_t *r, apr_pool_t *p,
                                   const su_redis_conf_t *conf, const char **err)
{
    if (redisSetTimeout(r->c, su_redis_tv(su_redis_timeout_ms(conf))) != REDIS_OK) {
        *err = "redis: cannot set the command timeout";
        return SU_ERR_UNAVAILABLE;
    }
    /* with an ACL user: AUTH user password (Redis 6 and later) */
    if (conf->password && *conf->password
        && su_redis_simple(r, p, "AUTH",
                           conf->user && *conf->user ? conf->user : conf->password,
                           conf->user && *conf->user ? conf->password : NULL)
           != SU_OK) {
        *err = apr_pstrcat(p, "redis ", su_redis_scrub(r->err, conf->password),
                           NULL);
        return SU_ERR_UNAVAILABLE;
    }
    if (conf->db != 0
        && su_redis_simple(r, p, "SELECT", apr_itoa(p, conf->db), NULL) != SU_OK) {
        *err = apr_pstrcat(p, "redis ", su_redis_scrub(r->err, conf->password),
                           NULL);
        return SU_ERR_UNAVAILABLE;
    }
    return SU_OK;
}

/* host NULL: conf's unix socket */
static redisContext *su_redis_open(const su_redis_conf_t *conf, const char *host,
                                   int port, int ms)
{
    struct timeval tv = su_redis_tv(ms);

    if (host == NULL)
        return redisConnectUnixWithTimeout(conf->socket_path, tv);
    return redisConnectWithTimeout(host, port, tv);
}

/* ctx's failure to connect as a message, or NULL if it is connected. */
static const char *su_redis_open_err(apr_pool_t *p, const redisContext *c,
                                     const char *where)
{
    char clean[SU_REDIS_ERRLEN];

    if (c == NULL)
        return "redis: out of memory";
    if (c->err == 0)
        return NULL;
    su_redis_copy_printable(clean, sizeof(clean), c->errstr, strlen(c->errstr));
    return apr_psprintf(p, "redis: cannot connect to %s: %s", where, clean);
}

/* The server reached is a master (ROLE), not a replica or a sentinel. */
static su_err_t su_redis_check_role(su_redis_t *r, apr_pool_t *p)
{
    su_redis_cmd_t *cmd = su_redis_cmd_make(p, 1);
    redisReply *rep;
    su_err_t rv;

    su_redis_cmd_arg(cmd, "ROLE");
    rv = su_redis_run(r, cmd, &rep);
    if (rv != SU_OK)
        return rv;
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements < 1
        || rep->element[0]->type != REDIS_REPLY_STRING
        || strcmp(rep->element[0]->str, "master") != 0) {
        su_redis_set_err(r, "ROLE", "the server is not the master (a failover "
                         "is under way, or the sentinels are out of date)", 82);
        su_redis_demoted(r);
        rv = SU_ERR_UNAVAILABLE;
    }
    freeReplyObject(rep);
    return rv;
}

/* One connection to host:port (host NULL: the unix socket), handshake done,
 * its role checked when the master came from the sentinels. */
static su_err_t su_redis_connect_at(apr_pool_t *p, const su_redis_conf_t *conf,
                                    const char *host, int port, int ms,
                                    su_redis_t **out, const char **err)
{
    const char *where = host ? apr_psprintf(p, "%s:%d", host, port)
                             : conf->socket_path;
    su_redis_t *r = apr_pcalloc(p, sizeof(*r));

    r->p = p;
    r->prefix = apr_pstrdup(p, conf->prefix ? conf->prefix : "");
    r->audit_maxlen = conf->audit_maxlen;
    r->timeout_ms = su_redis_timeout_ms(conf);
    r->sentinel = conf->sentinel_master != NULL;
    r->c = su_redis_open(conf, host, port, ms);
    if ((*err = su_redis_open_err(p, r->c, where)) != NULL) {
        su_redis_cleanup(r);
        return SU_ERR_UNAVAILABLE;
    }
    if (su_redis_handshake(r, p, conf, err) != SU_OK
        || (r->sentinel && su_redis_check_role(r, p) != SU_OK
            && (*err = apr_psprintf(p, "redis %s: %s", where, r->err)))) {
        su_redis_cleanup(r);
        return SU_ERR_UNAVAILABLE;
    }
    r->err[0] = '\0';
    apr_pool_cleanup_register(p, r, su_redis_cleanup, apr_pool_cleanup_null);
    *out = r;
    return SU_OK;
}

/* ------------------------------------------------------------- sentinel */

static int su_redis_ms_left(apr_time_t until)
{
    apr_time_t left = until - apr_time_now();

    return left <= 0 ? 0 : (int)(apr_time_as_msec(left) + 1);
}

/* The master's address in a SENTINEL get-master-addr-by-name reply. */
static int su_redis_master_reply(apr_pool_t *p, const redisReply *rep,
                                 const char **host, int *port)
{
    if (rep == NULL || rep->type != REDIS_REPLY_ARRAY || rep->elements != 2
        || rep->element[0]->type != REDIS_REPLY_STRING
        || rep->element[1]->type != REDIS_REPLY_STRING
        || !su_redis_host_ok(rep->element[0]->str, strchr(rep->element[0]->str, ':') != NULL)
        || !su_redis_parse_port(rep->element[1]->str, port))
        return 0;
    *host = apr_pstrdup(p, rep->element[0]->str);
    return 1;
}

/* Ask one sentinel, within ms, where the master is. */
static su_err_t su_redis_ask_sentinel(apr_pool_t *p, const su_redis_conf_t *conf,
                                      const su_redis_addr_t *s, int ms,
                                      const char **host, int *port, const char **err)
{
    const char *argv[3] = { "SENTINEL", "get-master-addr-by-name",
                            conf->sentinel_master };
    size_t len[3] = { 8, 23, strlen(conf->sentinel_master) };
    const char *where = apr_psprintf(p, "sentinel %s:%d", s->host, s->port);
    redisContext *c = redisConnectWithTimeout(s->host, s->port, su_redis_tv(ms));
    redisReply *rep = NULL;
    su_err_t rv = SU_ERR_UNAVAILABLE;

    if ((*err = su_redis_open_err(p, c, where)) == NULL
        && redisSetTimeout(c, su_redis_tv(ms)) == REDIS_OK)
        rep = redisCommandArgv(c, 3, argv, len);
    if (rep && su_redis_master_reply(p, rep, host, port))
        rv = SU_OK;
    else if (*err == NULL)
        *err = apr_psprintf(p, "redis: %s does not name master %s", where,
                            conf->sentinel_master);
    if (rep)
        freeReplyObject(rep);
    if (c)
        redisFree(c);
    return rv;
}

/*
 * The master through the sentinels, in their order, round after round
 * until the timeout has passed: during a failover the sentinels name the
 * old master (refused, or not a master any more) until one is promoted.
 */
static su_err_t su_redis_connect_sentinel(apr_pool_t *p, const su_redis_conf_t *conf,
                                          su_redis_t **out, const char **err)
{
    apr_time_t until = apr_time_now()
                       + apr_time_from_msec(su_redis_timeout_ms(conf));
    int i, ms;

    *err = "redis: no sentinel configured";
    while ((ms = su_redis_ms_left(until)) > 0) {
        for (i = 0; i < conf->sentinels->nelts && ms > 0;
             i++, ms = su_redis_ms_left(until)) {
            const su_redis_addr_t *s = &APR_ARRAY_IDX(conf->sentinels, i,
                                                      su_redis_addr_t);
            const char *host;
            int port;
            if (su_redis_ask_sentinel(p, conf, s, ms, &host, &port, err) == SU_OK
                && su_redis_connect_at(p, conf, host, port, su_redis_ms_left(until) + 1,
                                       out, err) == SU_OK)
                return SU_OK;
        }
        if ((ms = su_redis_ms_left(until)) > 0)
            apr_sleep(apr_time_from_msec(ms < 100 ? ms : 100));
    }
    return SU_ERR_UNAVAILABLE;
}

su_err_t su_redis_connect(apr_pool_t *p, const su_redis_conf_t *conf,
                          su_redis_t **out, const char **err)
{
    const char *dummy;

    *out = NULL;
    if (err == NULL)
        err = &dummy;
    if (conf && conf->sentinel_master && conf->sentinels
        && conf->sentinels->nelts > 0)
        return su_redis_connect_sentinel(p, conf, out, err);
    if (conf == NULL || (conf->socket_path == NULL && conf->host == NULL)) {
        *err = "redis: no server configured";
        return SU_ERR_UNAVAILABLE;
    }
    return su_redis_connect_at(p, conf, conf->socket_path ? NULL : conf->host,
                               conf->port, su_redis_timeout_ms(conf), out, err);
}

void su_redis_close(su_redis_t *r)
{
    if (r == NULL || r->c == NULL)
        return;
    apr_pool_cleanup_run(r->p, r, su_redis_cleanup);
}

int su_redis_usable(const su_redis_t *r)
{
    return r != NULL && r->c != NULL && !r->broken;
}

su_err_t su_redis_ping(su_redis_t *r, apr_pool_t *p)
{
    su_redis_cmd_t *cmd = su_redis_cmd_make(p, 1);
    redisReply *rep;
    su_err_t rv;

    /* a replica answers PING too: with Sentinel the round trip asks ROLE */
    if (r && r->sentinel)
        return su_redis_check_role(r, p);
    su_redis_cmd_arg(cmd, "PING");
    rv = su_redis_run(r, cmd, &rep);
    if (rep)
        freeReplyObject(rep);
    return rv;
}

int su_redis_timed_out(const su_redis_t *r)
{
    return r != NULL && r->timed_out;
}

int su_redis_refused(const su_redis_t *r)
{
    return r != NULL && r->refused;
}

const char *su_redis_errstr(const su_redis_t *r)
{
    return r ? r->err : "";
}

/* --------------------------------------------------------------- commands */

/*
 * A write that Redis refuses to apply once its deadline has passed (Redis's
 * clock, TIME): a client that gave up after its timeout must never see its
 * write applied later, when a stalled or paused Redis finally runs the
 * queued commands. The deadline is half the timeout after sending, so a
 * write applied in time is also answered in time.
 * ARGV: deadline_us, nfields, fields..., maxlen, naudit, audit fields...
 */
static const char su_redis_lua_store[] =
    "local t = redis.call('TIME')\n"
    "if tonumber(t[1]) * 1000000 + tonumber(t[2]) > tonumber(ARGV[1]) then return -1 end\n"
    "local n = tonumber(ARGV[2])\n"
    "local i = 3 + 2 * n\n"
    "local res = 1\n"
    "if n > 0 then redis.call('HSET', KEYS[1], unpack(ARGV, 3, i - 1))\n"
    "else res = redis.call('DEL', KEYS[1]) end\n"
    "local x = { KEYS[2] }\n"
    "if tonumber(ARGV[i]) > 0 then\n"
    "  x[#x + 1] = 'MAXLEN'; x[#x + 1] = '~'; x[#x + 1] = ARGV[i] end\n"
    "x[#x + 1] = '*'\n"
    "for k = i + 2, #ARGV do x[#x + 1] = ARGV[k] end\n"
    "redis.call('XADD', unpack(x))\n"
    "return res\n";

/* EVAL of su_redis_lua_store: meta NULL means delete the hash. */
static su_redis_cmd_t *su_redis_guarded_cmd(su_redis_t *r, apr_pool_t *p,
                                            const char *id,
                                            const apr_array_header_t *meta,
                                            const apr_array_header_t *audit)
{
    int nmeta = meta ? meta->nelts : 0;
    su_redis_cmd_t *cmd = su_redis_cmd_make(p, 10 + 2 * nmeta + 2 * audit->nelts);
    apr_time_t deadline = apr_time_now() + (apr_time_t)r->timeout_ms * 500;

    su_redis_cmd_arg(cmd, "EVAL");
    su_redis_cmd_arg(cmd, su_redis_lua_store);
    su_redis_cmd_arg(cmd, "2");
    su_redis_cmd_arg(cmd, su_redis_file_key(r, p, id));
    su_redis_cmd_arg(cmd, apr_pstrcat(p, r->prefix, "audit", NULL));
    su_redis_cmd_arg(cmd, apr_psprintf(p, "%" APR_TIME_T_FMT, deadline));
    su_redis_cmd_arg(cmd, apr_itoa(p, nmeta));
    if (meta)
        su_redis_cmd_kvs(cmd, meta);
    su_redis_cmd_arg(cmd, apr_ltoa(p, r->audit_maxlen > 0 ? r->audit_maxlen : 0));
    su_redis_cmd_arg(cmd, apr_itoa(p, audit->nelts));
    su_redis_cmd_kvs(cmd, audit);
    return cmd;
}

/* MULTI; EVAL guarded write; EXEC. The script's result, or an error. */
static su_err_t su_redis_guarded(su_redis_t *r, apr_pool_t *p, const char *id,
                                 const apr_array_header_t *meta,
                                 const apr_array_header_t *audit, long long *result)
{
    su_redis_cmd_t *cmds[1];
    redisReply *exec;
    su_err_t rv;

    cmds[0] = su_redis_guarded_cmd(r, p, id, meta, audit);
    rv = su_redis_txn(r, p, cmds, 1, &exec);
    if (rv != SU_OK)
        return rv;
    if (exec->element[0]->type != REDIS_REPLY_INTEGER) {
        rv = su_redis_reply_failed(r, "EVAL", exec->element[0]);
    } else if (exec->element[0]->integer < 0) {
        snprintf(r->err, sizeof(r->err),
                 "Redis ran the write after its deadline (a stall, or clocks apart); "
                 "nothing was applied");
        rv = SU_ERR_UNAVAILABLE;
    } else {
        *result = exec->element[0]->integer;
    }
    freeReplyObject(exec);
    return rv;
}

su_err_t su_redis_store(su_redis_t *r, apr_pool_t *p, const char *id,
                        const apr_array_header_t *meta,
                        const apr_array_header_t *audit)
{
    long long res = 0;

    if (r == NULL || id == NULL || !su_redis_kvs_ok(meta) || !su_redis_kvs_ok(audit)) {
        if (r)
            snprintf(r->err, sizeof(r->err), "store: bad arguments");
        return SU_ERR_INTERNAL;
    }
    return su_redis_guarded(r, p, id, meta, audit, &res);
}

su_err_t su_redis_wait(su_redis_t *r, apr_pool_t *p, int n, int timeout_ms,
                       int *acked)
{
    su_redis_cmd_t *cmd = su_redis_cmd_make(p, 3);
    redisReply *rep;
    su_err_t rv;

    *acked = 0;
    if (r == NULL || n < 1 || timeout_ms < 1)
        return SU_ERR_INTERNAL;
    su_redis_cmd_arg(cmd, "WAIT");
    su_redis_cmd_arg(cmd, apr_itoa(p, n));
    su_redis_cmd_arg(cmd, apr_itoa(p, timeout_ms));
    rv = su_redis_run(r, cmd, &rep);
    if (rv != SU_OK)
        return rv;
    if (rep->type != REDIS_REPLY_INTEGER)
        rv = su_redis_reply_failed(r, "WAIT", rep);
    else
        *acked = rep->integer > n ? n : (int)rep->integer;
    freeReplyObject(rep);
    return rv;
}

su_err_t su_redis_audit(su_redis_t *r, apr_pool_t *p,
                        const apr_array_header_t *audit)
{
    redisReply *rep;
    su_err_t rv;

    if (r == NULL || !su_redis_kvs_ok(audit)) {
        if (r)
            snprintf(r->err, sizeof(r->err), "audit: bad arguments");
        return SU_ERR_INTERNAL;
    }
    rv = su_redis_run(r, su_redis_xadd_cmd(r, p, audit), &rep);
    if (rep)
        freeReplyObject(rep);
    return rv;
}

static su_err_t su_redis_meta_table(su_redis_t *r, apr_pool_t *p,
                                    const redisReply *rep, apr_table_t **meta)
{
    apr_table_t *t;
    size_t i;

    if (rep->type != REDIS_REPLY_ARRAY || rep->elements % 2 != 0)
        return su_redis_reply_failed(r, "HGETALL", rep);
    if (rep->elements == 0)
        return SU_ERR_NOT_FOUND;
    t = apr_table_make(p, (int)(rep->elements / 2));
    for (i = 0; i < rep->elements; i += 2) {
        const redisReply *k = rep->element[i], *v = rep->element[i + 1];
        if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING)
            return su_redis_reply_failed(r, "HGETALL", rep);
        apr_table_setn(t, apr_pstrmemdup(p, k->str, k->len),
                       apr_pstrmemdup(p, v->str, v->len));
    }
    *meta = t;
    return SU_OK;
}

su_err_t su_redis_get_meta(su_redis_t *r, apr_pool_t *p, const char *id,
                           apr_table_t **meta)
{
    su_redis_cmd_t *cmd;
    redisReply *rep;
    su_err_t rv;

    *meta = NULL;
    if (r == NULL || id == NULL)
        return SU_ERR_INTERNAL;
    cmd = su_redis_cmd_make(p, 2);
    su_redis_cmd_arg(cmd, "HGETALL");
    su_redis_cmd_arg(cmd, su_redis_file_key(r, p, id));
    rv = su_redis_run(r, cmd, &rep);
    if (rv != SU_OK)
        return rv;
    rv = su_redis_meta_table(r, p, rep, meta);
    freeReplyObject(rep);
    return rv;
}

su_err_t su_redis_delete(su_redis_t *r, apr_pool_t *p, const char *id,
                         const apr_array_header_t *audit)
{
    long long res = 0;
    su_err_t rv;

    if (r == NULL || id == NULL || !su_redis_kvs_ok(audit)) {
        if (r)
            snprintf(r->err, sizeof(r->err), "delete: bad arguments");
        return SU_ERR_INTERNAL;
    }
    rv = su_redis_guarded(r, p, id, NULL, audit, &res);
    if (rv == SU_OK && res == 0)
        rv = SU_ERR_NOT_FOUND;
    return rv;
}

static const char su_redis_lua_add[] =
    "if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end\n"
    "return redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2])\n";

su_err_t su_redis_meta_add(su_redis_t *r, apr_pool_t *p, const char *id,
                           const char *field, const char *value, int *added)
{
    su_redis_cmd_t *cmd;
    redisReply *rep;
    su_err_t rv;

    *added = 0;
    if (r == NULL || id == NULL || field == NULL || value == NULL)
        return SU_ERR_INTERNAL;
    cmd = su_redis_cmd_make(p, 6);
    su_redis_cmd_arg(cmd, "EVAL");
    su_redis_cmd_arg(cmd, su_redis_lua_add);
    su_redis_cmd_arg(cmd, "1");
    su_redis_cmd_arg(cmd, su_redis_file_key(r, p, id));
    su_redis_cmd_arg(cmd, field);
    su_redis_cmd_arg(cmd, value);
    rv = su_redis_run(r, cmd, &rep);
    if (rv != SU_OK)
        return rv;
    if (rep->type != REDIS_REPLY_INTEGER)
        rv = su_redis_reply_failed(r, "EVAL", rep);
    else if (rep->integer < 0)
        rv = SU_ERR_NOT_FOUND;
    else
        *added = rep->integer == 1;
    freeReplyObject(rep);
    return rv;
}

/* ---------------------------------------------------- scripts of others */

static void su_redis_val_push(apr_pool_t *p, apr_array_header_t *a,
                              const redisReply *rep)
{
    su_redis_val_t *v = apr_array_push(a);

    memset(v, 0, sizeof(*v));
    if (rep->type == REDIS_REPLY_INTEGER) {
        v->s = apr_psprintf(p, "%" APR_INT64_T_FMT, (apr_int64_t)rep->integer);
        v->len = strlen(v->s);
    } else if (rep->type == REDIS_REPLY_STRING || rep->type == REDIS_REPLY_STATUS) {
        v->s = apr_pstrmemdup(p, rep->str, rep->len);
        v->len = rep->len;
    } else {
        v->s = "";
        v->nil = 1;
    }
}

su_err_t su_redis_eval(su_redis_t *r, apr_pool_t *p, const char *script,
                       int nkeys, const char *const *keys,
                       int nargs, const char *const *args, const size_t *argl,
                       apr_array_header_t **out)
{
    su_redis_cmd_t *cmd;
    redisReply *rep;
    size_t i;
    int k;

    if (r == NULL || nkeys < 0 || nargs < 0)
        return SU_ERR_INTERNAL;
    cmd = su_redis_cmd_make(p, 3 + nkeys + nargs);
    su_redis_cmd_arg(cmd, "EVAL");
    su_redis_cmd_arg(cmd, script);
    su_redis_cmd_arg(cmd, apr_itoa(p, nkeys));
    for (k = 0; k < nkeys; k++)
        su_redis_cmd_arg(cmd, apr_pstrcat(p, r->prefix, keys[k], NULL));
    for (k = 0; k < nargs; k++) {
        su_redis_cmd_arg(cmd, args[k]);
        if (argl)
            cmd->len[cmd->n - 1] = argl[k];
    }
    if (su_redis_run(r, cmd, &rep) != SU_OK)
        return SU_ERR_UNAVAILABLE;
    *out = apr_array_make(p, 8, sizeof(su_redis_val_t));
    if (rep->type != REDIS_REPLY_ARRAY)
        su_redis_val_push(p, *out, rep);
    for (i = 0; rep->type == REDIS_REPLY_ARRAY && i < rep->elements; i++)
        su_redis_val_push(p, *out, rep->element[i]);
    freeReplyObject(rep);
    return SU_OK;
}

/* The prefix taken literally in a SCAN MATCH pattern. */
static const char *su_redis_glob_escape(apr_pool_t *p, const char *s)
{
    char *out = apr_palloc(p, 2 * strlen(s) + 1), *o = out;

    for (; *s; s++) {
        if (strchr("*?[]\\^", *s))
            *o++ = '\\';
        *o++ = *s;
    }
    *o = '\0';
    return out;
}

static int su_redis_scan_reply_ok(const redisReply *rep)
{
    size_t i;

    if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 2
        || rep->element[0]->type != REDIS_REPLY_STRING
        || rep->element[0]->len == 0 || rep->element[0]->len > 20
        || rep->element[1]->type != REDIS_REPLY_ARRAY)
        return 0;
    for (i = 0; i < rep->element[0]->len; i++)
        if (rep->element[0]->str[i] < '0' || rep->element[0]->str[i] > '9')
            return 0;
    return 1;
}

/* Adds the ids of one SCAN batch, once each (SCAN may repeat keys). */
static void su_redis_scan_collect(apr_pool_t *p, const redisReply *keys,
                                  const char *keyprefix, apr_hash_t *seen,
                                  apr_array_header_t *ids)
{
    size_t i, plen = strlen(keyprefix);

    for (i = 0; i < keys->elements; i++) {
        const redisReply *k = keys->element[i];
        const char *id;
        if (k->type != REDIS_REPLY_STRING || k->len <= plen
            || memcmp(k->str, keyprefix, plen) != 0
            || memchr(k->str, '\0', k->len) != NULL)
            continue;
        id = apr_pstrmemdup(p, k->str + plen, k->len - plen);
        if (apr_hash_get(seen, id, APR_HASH_KEY_STRING))
            continue;
        apr_hash_set(seen, id, APR_HASH_KEY_STRING, id);
        APR_ARRAY_PUSH(ids, const char *) = id;
    }
}

su_err_t su_redis_list_ids(su_redis_t *r, apr_pool_t *p,
                           apr_array_header_t **ids)
{
    const char *keyprefix, *pattern, *cursor = "0";
    apr_hash_t *seen = apr_hash_make(p);
    apr_array_header_t *out = apr_array_make(p, 16, sizeof(const char *));
    int round;

    *ids = NULL;
    if (r == NULL)
        return SU_ERR_INTERNAL;
    keyprefix = apr_pstrcat(p, r->prefix, "file:", NULL);
    pattern = apr_pstrcat(p, su_redis_glob_escape(p, r->prefix), "file:*", NULL);
    for (round = 0; round < SU_REDIS_SCAN_MAX_ROUNDS; round++) {
        su_redis_cmd_t *cmd = su_redis_cmd_make(p, 6);
        redisReply *rep;
        su_err_t rv;

        su_redis_cmd_arg(cmd, "SCAN");
        su_redis_cmd_arg(cmd, cursor);
        su_redis_cmd_arg(cmd, "MATCH");
        su_redis_cmd_arg(cmd, pattern);
        su_redis_cmd_arg(cmd, "COUNT");
        su_redis_cmd_arg(cmd, "1000");
        rv = su_redis_run(r, cmd, &rep);
        if (rv != SU_OK)
            return rv;
        if (!su_redis_scan_reply_ok(rep)) {
            rv = su_redis_reply_failed(r, "SCAN", rep);
            freeReplyObject(rep);
            return rv;
        }
        su_redis_scan_collect(p, rep->element[1], keyprefix, seen, out);
        cursor = apr_pstrmemdup(p, rep->element[0]->str, rep->element[0]->len);
        freeReplyObject(rep);
        if (strcmp(cursor, "0") == 0) {
            *ids = out;
            return SU_OK;
        }
    }
    snprintf(r->err, sizeof(r->err), "SCAN: too many rounds");
    return SU_ERR_UNAVAILABLE;
}

/* ------------------------------------------------------------------- pool */

/* Made before the pool's latest generation: perhaps on a replaced master. */
static int su_redis_stale(const su_redis_t *r)
{
    return r->pool_gen && apr_atomic_read32(r->pool_gen) != r->gen;
}

/*
 * An idle connection the server has closed (restart, idle timeout) shows
 * EOF without a round trip; it is dropped instead of failing a request.
 */
static int su_redis_idle_alive(const su_redis_t *r)
{
    char b;
    ssize_t n;

    if (!su_redis_usable(r) || su_redis_stale(r))
        return 0;
    n = recv(r->c->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

static void su_redis_conf_copy(apr_pool_t *p, const su_redis_conf_t *in,
                               su_redis_conf_t *out)
{
    *out = *in;
    out->host = in->host ? apr_pstrdup(p, in->host) : NULL;
    out->socket_path = in->socket_path ? apr_pstrdup(p, in->socket_path) : NULL;
    out->password = in->password ? apr_pstrdup(p, in->password) : NULL;
    out->user = in->user ? apr_pstrdup(p, in->user) : NULL;
    out->prefix = in->prefix ? apr_pstrdup(p, in->prefix) : NULL;
    out->sentinel_master = in->sentinel_master
                           ? apr_pstrdup(p, in->sentinel_master) : NULL;
    out->sentinels = in->sentinels ? apr_array_copy(p, in->sentinels) : NULL;
}

static apr_status_t su_redis_res_make(void **res, void *params, apr_pool_t *rp)
{
    su_redis_pool_t *pool = params;
    apr_pool_t *sp = NULL;
    const char *err = NULL;
    su_redis_t *r;
    apr_status_t rv;
    /* read before connecting: a failover noticed meanwhile makes this
     * connection stale too, as it may have reached the old master */
    apr_uint32_t gen = apr_atomic_read32(&pool->gen);

    (void)rp;
    /*
     * A pool of its own, outside the process pool's tree: only the reslist
     * destructor frees it, so the reslist can be torn down after the
     * request pools (which hand their connections back) are gone.
     */
    rv = apr_pool_create_unmanaged_ex(&sp, NULL, NULL);
    if (rv != APR_SUCCESS)
        return rv;
    if (su_redis_connect(sp, &pool->conf, &r, &err) != SU_OK) {
        apr_thread_mutex_lock(pool->mu);
        apr_cpystrn(pool->lasterr, err ? err : "redis: cannot connect",
                    sizeof(pool->lasterr));
        apr_thread_mutex_unlock(pool->mu);
        apr_pool_destroy(sp);
        return APR_EGENERAL;
    }
    r->own = sp;
    r->pool_gen = &pool->gen;
    r->gen = gen;
    *res = r;
    if (pool->on_connect)
        pool->on_connect(pool->on_connect_baton);
    return APR_SUCCESS;
}

static apr_status_t su_redis_res_free(void *res, void *params, apr_pool_t *rp)
{
    su_redis_pool_t *pool = params;
    su_redis_t *r = res;

    (void)rp;
    (void)pool;
    apr_pool_destroy(r->own);
    return APR_SUCCESS;
}

static su_err_t su_redis_pool_init(su_redis_pool_t *pool)
{
    apr_interval_time_t t =
        (apr_interval_time_t)su_redis_timeout_ms(&pool->conf) * 1000;

    if (apr_thread_mutex_create(&pool->mu, APR_THREAD_MUTEX_DEFAULT, pool->p)
        != APR_SUCCESS)
        return SU_ERR_INTERNAL;
    if (apr_reslist_create(&pool->rl, 0, pool->hmax, pool->hmax, 0,
                           su_redis_res_make, su_redis_res_free, pool, pool->p)
        != APR_SUCCESS)
        return SU_ERR_INTERNAL;
    /* default order: the reslist goes after p's children (request pools
     * that still hold a connection return it first) */
    apr_reslist_timeout_set(pool->rl, t);
    return SU_OK;
}

static const char *su_redis_acquire_err(su_redis_pool_t *pool, apr_status_t rv,
                                        apr_pool_t *errpool)
{
    const char *msg;
    char buf[120];

    if (rv == APR_EGENERAL) {
        apr_thread_mutex_lock(pool->mu);
        msg = apr_pstrdup(errpool, pool->lasterr);
        apr_thread_mutex_unlock(pool->mu);
        return msg;
    }
    if (APR_STATUS_IS_TIMEUP(rv) || APR_STATUS_IS_EAGAIN(rv))
        return apr_psprintf(errpool, "redis: all %d connections busy", pool->hmax);
    return apr_pstrcat(errpool, "redis: ", apr_strerror(rv, buf, sizeof(buf)), NULL);
}

su_err_t su_redis_acquire(su_redis_pool_t *pool, su_redis_t **r,
                          const char **err, apr_pool_t *errpool)
{
    int tries;

    *r = NULL;
    /* every idle connection may be stale after a restart, plus one new one */
    for (tries = 0; tries <= pool->hmax; tries++) {
        void *res = NULL;
        apr_status_t rv = apr_reslist_acquire(pool->rl, &res);
        if (rv != APR_SUCCESS) {
            if (err)
                *err = su_redis_acquire_err(pool, rv, errpool);
            return SU_ERR_UNAVAILABLE;
        }
        if (su_redis_idle_alive(res)) {
            *r = res;
            (*r)->err[0] = '\0';
            return SU_OK;
        }
        apr_reslist_invalidate(pool->rl, res);
    }
    if (err)
        *err = "redis: no working connection";
    return SU_ERR_UNAVAILABLE;
}

void su_redis_release(su_redis_pool_t *pool, su_redis_t *r)
{
    if (r == NULL)
        return;
    if (su_redis_usable(r) && !su_redis_stale(r))
        apr_reslist_release(pool->rl, r);
    else
        apr_reslist_invalidate(pool->rl, r);
}

su_err_t su_redis_pool_create(apr_pool_t *p, const su_redis_conf_t *conf,
                              int hmax, su_redis_pool_t **out)
{
    su_redis_pool_t *pool = apr_pcalloc(p, sizeof(*pool));
    su_err_t rv;

    *out = NULL;
    pool->p = p;
    pool->hmax = hmax > 0 ? hmax : 1;
    su_redis_conf_copy(p, conf, &pool->conf);
    rv = su_redis_pool_init(pool);
    if (rv == SU_OK)
        *out = pool;
    return rv;
}

void su_redis_pool_on_connect(su_redis_pool_t *pool, void (*fn)(void *),
                              void *baton)
{
    pool->on_connect = fn;
    pool->on_connect_baton = baton;
}
