/*
 * su_redis against a real redis-server started per test on a free loopback
 * port. Without /usr/bin/redis-server every server test fails.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include <apr_general.h>
#include <apr_strings.h>
#include <apr_thread_proc.h>
#include <apr_time.h>
#include <hiredis/hiredis.h>

#include "su_check.h"
#include "su_check_redis.h"
#include "su_redis.h"

#define PASSWORD "s3cr3t-Pa55word"

static apr_pool_t *g_p;
static pid_t g_pid = -1;
static int g_port;
static const char *g_pass;
static char g_sock[108];

/* ------------------------------------------------------------ helpers */

static redisContext *raw_connect(void)
{
    struct timeval tv = { 1, 0 };
    redisContext *c = redisConnectWithTimeout("127.0.0.1", g_port, tv);

    ck_assert_ptr_nonnull(c);
    ck_assert_msg(c->err == 0, "raw connect: %s", c->errstr);
    redisSetTimeout(c, tv);
    if (g_pass) {
        redisReply *rep = redisCommand(c, "AUTH %s", g_pass);
        ck_assert_ptr_nonnull(rep);
        ck_assert_int_eq(rep->type, REDIS_REPLY_STATUS);
        freeReplyObject(rep);
    }
    return c;
}

static void stop_redis(void)
{
    int status;

    if (g_pid > 0) {
        kill(g_pid, SIGKILL);
        waitpid(g_pid, &status, 0);
        g_pid = -1;
    }
}

static void setup_common(const char *pass, int with_sock)
{
    ck_assert_int_eq(apr_pool_create(&g_p, NULL), APR_SUCCESS);
    g_port = su_check_free_port();
    g_pass = pass;
    g_sock[0] = '\0';
    if (with_sock)
        snprintf(g_sock, sizeof(g_sock), "/tmp/su_redis_test_%d.sock", g_port);
    g_pid = su_check_redis_start(g_port, pass, with_sock ? g_sock : NULL);
}

static void setup_plain(void) { setup_common(NULL, 0); }
static void setup_auth(void) { setup_common(PASSWORD, 0); }
static void setup_sock(void) { setup_common(NULL, 1); }

static void teardown(void)
{
    if (g_p)
        apr_pool_destroy(g_p);
    g_p = NULL;
    stop_redis();
    if (g_sock[0])
        unlink(g_sock);
}

static su_redis_conf_t conf_for(int port)
{
    su_redis_conf_t c;

    memset(&c, 0, sizeof(c));
    c.host = "127.0.0.1";
    c.port = port;
    c.password = g_pass;
    c.timeout_ms = 1000;
    c.prefix = "t:";
    c.audit_maxlen = 1000;
    return c;
}

static su_redis_t *connect_ok(const su_redis_conf_t *conf)
{
    su_redis_t *r = NULL;
    const char *err = NULL;

    ck_assert_msg(su_redis_connect(g_p, conf, &r, &err) == SU_OK, "connect: %s",
                  err ? err : "?");
    ck_assert_ptr_nonnull(r);
    ck_assert(su_redis_usable(r));
    return r;
}

static apr_array_header_t *kvs(apr_pool_t *p, const char *const *pairs)
{
    apr_array_header_t *a = apr_array_make(p, 4, sizeof(su_kv_t));

    for (; pairs[0]; pairs += 2) {
        su_kv_t *kv = apr_array_push(a);
        kv->k = pairs[0];
        kv->v = pairs[1];
    }
    return a;
}

static const char *const META[] = {
    "id", "abc123", "name", "a file %s %n\r\nX: y.txt", "size", "42",
    "sha256", "00ff", "content_type", "text/plain", NULL
};
static const char *const AUDIT[] = {
    "event", "upload.stored", "status", "201", "id", "abc123", "bytes", "42", NULL
};

static redisReply *raw_cmd(redisContext *c, const char *fmt, const char *arg)
{
    redisReply *rep = arg ? redisCommand(c, fmt, arg) : redisCommand(c, fmt);

    ck_assert_ptr_nonnull(rep);
    ck_assert_msg(rep->type != REDIS_REPLY_ERROR, "raw: %s", rep->str);
    return rep;
}

static long long raw_int(redisContext *c, const char *fmt, const char *arg)
{
    redisReply *rep = raw_cmd(c, fmt, arg);
    long long v;

    ck_assert_int_eq(rep->type, REDIS_REPLY_INTEGER);
    v = rep->integer;
    freeReplyObject(rep);
    return v;
}

/* pairs as a Redis array reply lists them must equal want exactly */
static void assert_pairs(const redisReply *arr, const char *const *want)
{
    size_t n = 0, i;

    while (want[2 * n])
        n++;
    ck_assert_int_eq(arr->type, REDIS_REPLY_ARRAY);
    ck_assert_uint_eq(arr->elements, 2 * n);
    for (i = 0; i < n; i++) {
        size_t j;
        int found = 0;
        for (j = 0; j < arr->elements; j += 2)
            if (strcmp(arr->element[j]->str, want[2 * i]) == 0) {
                ck_assert_str_eq(arr->element[j + 1]->str, want[2 * i + 1]);
                found = 1;
            }
        ck_assert_msg(found, "field %s missing", want[2 * i]);
    }
}

static double elapsed_s(apr_time_t t0)
{
    return (double)(apr_time_now() - t0) / 1e6;
}

static void resu_check_redis_start(void)
{
    stop_redis();
    g_pid = su_check_redis_start(g_port, g_pass, NULL);
}

/* -------------------------------------------------------- parse_server */

START_TEST(test_parse_ok)
{
    apr_pool_t *p;
    su_redis_conf_t c;
    const char *err = NULL;

    apr_pool_create(&p, NULL);
    memset(&c, 0, sizeof(c));
    ck_assert_int_eq(su_redis_parse_server(p, "127.0.0.1:6380", &c, &err), SU_OK);
    ck_assert_str_eq(c.host, "127.0.0.1");
    ck_assert_int_eq(c.port, 6380);
    ck_assert_ptr_null(c.socket_path);
    ck_assert_int_eq(su_redis_parse_server(p, "redis.example-1_a", &c, &err), SU_OK);
    ck_assert_str_eq(c.host, "redis.example-1_a");
    ck_assert_int_eq(c.port, 6379);
    ck_assert_int_eq(su_redis_parse_server(p, "[::1]:6381", &c, &err), SU_OK);
    ck_assert_str_eq(c.host, "::1");
    ck_assert_int_eq(c.port, 6381);
    ck_assert_int_eq(su_redis_parse_server(p, "[fe80::1%eth0]", &c, &err), SU_OK);
    ck_assert_str_eq(c.host, "fe80::1%eth0");
    ck_assert_int_eq(c.port, 6379);
    ck_assert_int_eq(su_redis_parse_server(p, "h:1", &c, &err), SU_OK);
    ck_assert_int_eq(c.port, 1);
    ck_assert_int_eq(su_redis_parse_server(p, "h:65535", &c, &err), SU_OK);
    ck_assert_int_eq(c.port, 65535);
    ck_assert_int_eq(su_redis_parse_server(p, "/run/redis/redis.sock", &c, &err), SU_OK);
    ck_assert_str_eq(c.socket_path, "/run/redis/redis.sock");
    ck_assert_ptr_null(c.host);
    apr_pool_destroy(p);
}
END_TEST

/* The defaults that the module and the secupload tool both start from
 * (docs/configuration.md, docs/cli.md). */
START_TEST(test_conf_defaults)
{
    su_redis_conf_t c;

    memset(&c, 0x5a, sizeof(c));
    su_redis_conf_defaults(&c);
    ck_assert_str_eq(c.host, "127.0.0.1");
    ck_assert_int_eq(c.port, 6379);
    ck_assert_ptr_null(c.socket_path);
    ck_assert_ptr_null(c.password);
    ck_assert_int_eq(c.db, 0);
    ck_assert_int_eq(c.timeout_ms, 2000);
    ck_assert_str_eq(c.prefix, "secupload:");
    ck_assert_int_eq(c.audit_maxlen, 1000000);
}
END_TEST

START_TEST(test_parse_bad)
{
    static const char *const bad[] = {
        "", "h:0", "h:65536", "h:", "h:abc", "h:-1", "h:+80", "h:123456", "::1",
        "::1:6379", "[::1", "[::1]x", "[::1]:", "[]:6379", "[host]:1", "ho st",
        ":6379", "a:1:2", "h:80 ", "h/x:1", NULL
    };
    apr_pool_t *p;
    char longpath[200];
    int i;

    apr_pool_create(&p, NULL);
    for (i = 0; bad[i]; i++) {
        su_redis_conf_t c;
        const char *err = NULL;
        memset(&c, 0, sizeof(c));
        ck_assert_msg(su_redis_parse_server(p, bad[i], &c, &err) == SU_ERR_BAD_REQUEST,
                      "accepted '%s'", bad[i]);
        ck_assert_ptr_nonnull(err);
        ck_assert(strlen(err) > 0);
    }
    memset(longpath, 'a', sizeof(longpath) - 1);
    longpath[0] = '/';
    longpath[sizeof(longpath) - 1] = '\0';
    {
        su_redis_conf_t c;
        const char *err = NULL;
        ck_assert_int_eq(su_redis_parse_server(p, longpath, &c, &err), SU_ERR_BAD_REQUEST);
        ck_assert_int_eq(su_redis_parse_server(p, NULL, &c, &err), SU_ERR_BAD_REQUEST);
    }
    apr_pool_destroy(p);
}
END_TEST

/* -------------------------------------------------------------- store */

START_TEST(test_store)
{
    su_redis_conf_t conf = conf_for(g_port);
    su_redis_t *r = connect_ok(&conf);
    redisContext *c = raw_connect();
    redisReply *rep;

    ck_assert_int_eq(su_redis_store(r, g_p, "abc123", kvs(g_p, META), kvs(g_p, AUDIT)),
                     SU_OK);
    ck_assert_str_eq(su_redis_errstr(r), "");
    rep = raw_cmd(c, "HGETALL t:file:abc123", NULL);
    assert_pairs(rep, META);
    freeReplyObject(rep);
    rep = raw_cmd(c, "XRANGE t:audit - +", NULL);
    ck_assert_int_eq(rep->type, REDIS_REPLY_ARRAY);
    ck_assert_uint_eq(rep->elements, 1);
    ck_assert_uint_eq(rep->element[0]->elements, 2);
    assert_pairs(rep->element[0]->element[1], AUDIT);
    freeReplyObject(rep);
    ck_assert_int_eq(raw_int(c, "DBSIZE", NULL), 2);
    redisFree(c);
}
END_TEST

START_TEST(test_prefix)
{
    su_redis_conf_t conf = conf_for(g_port);
    su_redis_t *r;
    redisContext *c = raw_connect();

    conf.prefix = "app{1}:";
    r = connect_ok(&conf);
    ck_assert_int_eq(su_redis_store(r, g_p, "x1", kvs(g_p, META), kvs(g_p, AUDIT)), SU_OK);
    ck_assert_int_eq(su_redis_audit(r, g_p, kvs(g_p, AUDIT)), SU_OK);
    ck_assert_int_eq(raw_int(c, "EXISTS app{1}:file:x1", NULL), 1);
    ck_assert_int_eq(raw_int(c, "XLEN app{1}:audit", NULL), 2);
    ck_assert_int_eq(raw_int(c, "EXISTS t:file:x1", NULL), 0);
    ck_assert_int_eq(raw_int(c, "DBSIZE", NULL), 2);
    redisFree(c);
}
END_TEST

START_TEST(test_maxlen)
{
    su_redis_conf_t conf = conf_for(g_port);
    su_redis_t *r, *unbounded;
    redisContext *c = raw_connect();
    int i;

    conf.audit_maxlen = 10;
    r = connect_ok(&conf);
    conf.audit_maxlen = 0;
    conf.prefix = "u:";
    unbounded = connect_ok(&conf);
    for (i = 0; i < 600; i++) {
        ck_assert_int_eq(su_redis_audit(r, g_p, kvs(g_p, AUDIT)), SU_OK);
        ck_assert_int_eq(su_redis_audit(unbounded, g_p, kvs(g_p, AUDIT)), SU_OK);
    }
    /* "~" trims whole stream nodes (100 entries by default) */
    ck_assert_int_le(raw_int(c, "XLEN t:audit", NULL), 200);
    ck_assert_int_ge(raw_int(c, "XLEN t:audit", NULL), 10);
    ck_assert_int_eq(raw_int(c, "XLEN u:audit", NULL), 600);
    redisFree(c);
}
END_TEST

START_TEST(test_bad_args)
{
    su_redis_conf_t conf = conf_for(g_port);
    su_redis_t *r = connect_ok(&conf);
    apr_array_header_t *empty = apr_array_make(g_p, 1, sizeof(su_kv_t));

    ck_assert_int_eq(su_redis_store(r, g_p, "a", empty, kvs(g_p, AUDIT)), SU_ERR_INTERNAL);
    ck_assert_int_eq(su_redis_store(r, g_p, "a", kvs(g_p, META), empty), SU_ERR_INTERNAL);
    ck_assert_int_eq(su_redis_store(r, g_p, NULL, kvs(g_p, META), kvs(g_p, AUDIT)),
                     SU_ERR_INTERNAL);
    ck_assert_int_eq(su_redis_audit(r, g_p, empty), SU_ERR_INTERNAL);
    ck_assert(su_redis_usable(r));
    ck_assert_int_eq(su_redis_store(r, g_p, "a", kvs(g_p, META), kvs(g_p, AUDIT)), SU_OK);
}
END_TEST

/* A plain error reply fails the call but keeps the connection. */
START_TEST(test_wrongtype_keeps_connection)
{
    su_redis_conf_t conf = conf_for(g_port);
    su_redis_t *r = connect_ok(&conf);
    redisContext *c = raw_connect();
    apr_table_t *meta;

    freeReplyObject(raw_cmd(c, "SET t:file:w plain", NULL));
    ck_assert_int_eq(su_redis_store(r, g_p, "w", kvs(g_p, META), kvs(g_p, AUDIT)),
                     SU_ERR_UNAVAILABLE);
    ck_assert_ptr_nonnull(strstr(su_redis_errstr(r), "WRONGTYPE"));
    ck_assert(su_redis_usable(r));
    ck_assert_int_eq(su_redis_get_meta(r, g_p, "w", &meta), SU_ERR_UNAVAILABLE);
    ck_assert(su_redis_usable(r));
    /* the stream is in step: the next call works */
    ck_assert_int_eq(su_redis_store(r, g_p, "ok", kvs(g_p, META), kvs(g_p, AUDIT)), SU_OK);
    ck_assert_int_eq(su_redis_get_meta(r, g_p, "ok", &meta), SU_OK);
    redisFree(c);
}
END_TEST

/* --------------------------------------------------------------- auth */

START_TEST(test_auth_ok)
{
    su_redis_conf_t conf = conf_for(g_port);
    su_redis_t *r = connect_ok(&conf);
    apr_table_t *meta;

    ck_assert_int_eq(su_redis_store(r, g_p, "a1", kvs(g_p, META), kvs(g_p, AUDIT)), SU_OK);
    ck_assert_int_eq(su_redis_get_meta(r, g_p, "a1", &meta), SU_OK);
    ck_assert_str_eq(apr_table_get(meta, "size"), "42");
}
END_TEST

START_TEST(test_auth_wrong)
{
    su_redis_conf_t conf = conf_for(g_port);
    su_redis_t *r = NULL;
    const char *err = NULL;

    conf.password = "wrong-Secret-77";
    ck_assert_int_eq(su_redis_connect(g_p, &conf, &r, &err), SU_ERR_UNAVAILABLE);
    ck_assert_ptr_null(r);
    ck_assert_ptr_nonnull(err);
    ck_assert(strlen(err) > 0);
    ck_assert_ptr_null(strstr(err, "wrong-Secret-77"));
    ck_assert_ptr_null(strstr(err, PASSWORD));
}
END_TEST

START_TEST(test_auth_missing)
{
    su_redis_conf_t conf = conf_for(g_port);
    su_redis_t *r;
    apr_table_t *meta;

    conf.password = NULL;
    r = connect_ok(&conf);
    ck_assert_int_eq(su_redis_get_meta(r, g_p, "a", &meta), SU_ERR_UNAVAILABLE);
    ck_assert_msg(strstr(su_redis_errstr(r), "NOAUTH") != NULL, "errstr: %s",
                  su_redis_errstr(r));
    ck_assert(su_redis_usable(r));
    /* unauthenticated, Redis drops a client sending long commands */
    ck_assert_int_eq(su_redis_store(r, g_p, "a", kvs(g_p, META), kvs(g_p, AUDIT)),
                     SU_ERR_UNAVAILABLE);
}
END_TEST

START_TEST(test_select_db)
{
    su_redis_conf_t conf = conf_for(g_port);
    su_redis_t *r;
    redisContext *c = raw_connect();

    conf.db = 3;
    r = connect_ok(&conf);
    ck_assert_int_eq(su_redis_store(r, g_p, "d3", kvs(g_p, META), kvs(g_p, AUDIT)), SU_OK);
    ck_assert_int_eq(raw_int(c, "EXISTS t:file:d3", NULL), 0);
    freeReplyObject(raw_cmd(c, "SELECT 3", NULL));
    ck_assert_int_eq(raw_int(c, "EXISTS t:file:d3", NULL), 1);
    ck_assert_int_eq(raw_int(c, "XLEN t:audit", NULL), 1);
    redisFree(c);

    conf.db = 99999;
    {
        const char *err = NULL;
        su_redis_t *bad = NULL;
        ck_assert_int_eq(su_redis_connect(g_p, &conf, &bad, &err), SU_ERR_UNAVAILABLE);
        ck_assert_ptr_nonnull(strstr(err, "SELECT"));
    }
}
END_TEST

/* ------------------------------------------------- get / delete / list */

START_TEST(test_get_meta)
{
    su_redis_conf_t conf = conf_for(g_port);
    su_redis_t *r = connect_ok(&conf);
    apr_table_t *meta = NULL;
    int i;

    ck_assert_int_eq(su_redis_get_meta(r, g_p, "nope", &meta), SU_ERR_NOT_FOUND);
    ck_assert_ptr_null(meta);
    ck_assert_int_eq(su_redis_store(r, g_p, "abc123", kvs(g_p, META), kvs(g_p, AUDIT)),
                     SU_OK);
    ck_assert_int_eq(su_redis_get_meta(r, g_p, "abc123", &meta), SU_OK);
    ck_assert_ptr_nonnull(meta);
    ck_assert_int_eq(apr_table_elts(meta)->nelts, 5);
    for (i = 0; META[i]; i += 2)
        ck_assert_str_eq(apr_table_get(meta, META[i]), META[i + 1]);
}
END_TEST

START_TEST(test_delete)
{
    su_redis_conf_t conf = conf_for(g_port);
    su_redis_t *r = connect_ok(&conf);
    redisContext *c = raw_connect();
    apr_table_t *meta;

    ck_assert_int_eq(su_redis_store(r, g_p, "d", kvs(g_p, META), kvs(g_p, AUDIT)), SU_OK);
    ck_assert_int_eq(su_redis_delete(r, g_p, "d", kvs(g_p, AUDIT)), SU_OK);
    ck_assert_int_eq(raw_int(c, "EXISTS t:file:d", NULL), 0);
    ck_assert_int_eq(su_redis_get_meta(r, g_p, "d", &meta), SU_ERR_NOT_FOUND);
    ck_assert_int_eq(raw_int(c, "XLEN t:audit", NULL), 2);
    ck_assert_int_eq(su_redis_delete(r, g_p, "d", kvs(g_p, AUDIT)), SU_ERR_NOT_FOUND);
    ck_assert_int_eq(raw_int(c, "XLEN t:audit", NULL), 3);
    ck_assert(su_redis_usable(r));
    redisFree(c);
}
END_TEST

/* A field added to existing metadata only (fsck --backfill-iv). */
START_TEST(test_meta_add)
{
    su_redis_conf_t conf = conf_for(g_port);
    su_redis_t *r = connect_ok(&conf);
    redisContext *c = raw_connect();
    apr_table_t *meta;
    int added = -1;

    /* no hash (deleted meanwhile): none is made */
    ck_assert_int_eq(su_redis_meta_add(r, g_p, "ma", "iv", "00", &added),
                     SU_ERR_NOT_FOUND);
    ck_assert_int_eq(added, 0);
    ck_assert_int_eq(raw_int(c, "EXISTS t:file:ma", NULL), 0);
    ck_assert_int_eq(su_redis_store(r, g_p, "ma", kvs(g_p, META), kvs(g_p, AUDIT)),
                     SU_OK);
    ck_assert_int_eq(su_redis_meta_add(r, g_p, "ma", "iv", "0011", &added), SU_OK);
    ck_assert_int_eq(added, 1);
    /* a value already there is kept */
    ck_assert_int_eq(su_redis_meta_add(r, g_p, "ma", "iv", "ffff", &added), SU_OK);
    ck_assert_int_eq(added, 0);
    ck_assert_int_eq(su_redis_get_meta(r, g_p, "ma", &meta), SU_OK);
    ck_assert_str_eq(apr_table_get(meta, "iv"), "0011");
    ck_assert_int_eq(apr_table_elts(meta)->nelts, 6);
    ck_assert(su_redis_usable(r));
    redisFree(c);
}
END_TEST

static int has_id(const apr_array_header_t *ids, const char *id)
{
    int i;

    for (i = 0; i < ids->nelts; i++)
        if (strcmp(APR_ARRAY_IDX(ids, i, const char *), id) == 0)
            return 1;
    return 0;
}

START_TEST(test_list_ids)
{
    su_redis_conf_t conf = conf_for(g_port);
    su_redis_t *r;
    redisContext *c = raw_connect();
    apr_array_header_t *ids = NULL;
    int i;

    conf.prefix = "p*:";
    r = connect_ok(&conf);
    ck_assert_int_eq(su_redis_list_ids(r, g_p, &ids), SU_OK);
    ck_assert_int_eq(ids->nelts, 0);
    ck_assert_int_eq(su_redis_store(r, g_p, "a", kvs(g_p, META), kvs(g_p, AUDIT)), SU_OK);
    ck_assert_int_eq(su_redis_store(r, g_p, "b", kvs(g_p, META), kvs(g_p, AUDIT)), SU_OK);
    /* not ours: other prefixes that the glob '*' would match, and near misses */
    freeReplyObject(raw_cmd(c, "HSET pX:file:z id z", NULL));
    freeReplyObject(raw_cmd(c, "HSET p*:filez id z", NULL));
    freeReplyObject(raw_cmd(c, "HSET t:file:y id y", NULL));
    for (i = 0; i < 2500; i++)
        redisAppendCommand(c, "HSET p*:file:n%d id n", i);
    for (i = 0; i < 2500; i++) {
        void *rep = NULL;
        ck_assert_int_eq(redisGetReply(c, &rep), REDIS_OK);
        freeReplyObject(rep);
    }
    ck_assert_int_eq(su_redis_list_ids(r, g_p, &ids), SU_OK);
    ck_assert_int_eq(ids->nelts, 2502);
    ck_assert(has_id(ids, "a"));
    ck_assert(has_id(ids, "b"));
    ck_assert(has_id(ids, "n0"));
    ck_assert(has_id(ids, "n2499"));
    ck_assert(!has_id(ids, "z"));
    ck_assert(!has_id(ids, "y"));
    redisFree(c);
}
END_TEST

/* ------------------------------------------------------------ failures */

START_TEST(test_connect_refused)
{
    su_redis_conf_t conf = conf_for(su_check_free_port());
    su_redis_t *r = NULL;
    const char *err = NULL;
    apr_time_t t0 = apr_time_now();

    ck_assert_int_eq(su_redis_connect(g_p, &conf, &r, &err), SU_ERR_UNAVAILABLE);
    ck_assert(elapsed_s(t0) < 1.5);
    ck_assert_ptr_null(r);
    ck_assert_ptr_nonnull(err);
    ck_assert_ptr_nonnull(strstr(err, "127.0.0.1"));

    conf.host = NULL;
    ck_assert_int_eq(su_redis_connect(g_p, &conf, &r, &err), SU_ERR_UNAVAILABLE);
}
END_TEST

START_TEST(test_close_idempotent)
{
    su_redis_conf_t conf = conf_for(g_port);
    su_redis_t *r = connect_ok(&conf);
    apr_table_t *meta;

    su_redis_close(r);
    su_redis_close(r);
    su_redis_close(NULL);
    ck_assert(!su_redis_usable(r));
    ck_assert(!su_redis_usable(NULL));
    ck_assert_int_eq(su_redis_get_meta(r, g_p, "x", &meta), SU_ERR_UNAVAILABLE);
    ck_assert_str_ne(su_redis_errstr(r), "");
    /* teardown destroys g_p: the killed cleanup must not free twice */
}
END_TEST

START_TEST(test_restart_reconnect)
{
    su_redis_conf_t conf = conf_for(g_port);
    su_redis_t *r = connect_ok(&conf), *pr = NULL;
    su_redis_pool_t *pool = NULL;
    const char *err = NULL;
    apr_table_t *meta;

    ck_assert_int_eq(su_redis_pool_create(g_p, &conf, 2, &pool), SU_OK);
    ck_assert_int_eq(su_redis_acquire(pool, &pr, &err, g_p), SU_OK);
    ck_assert_int_eq(su_redis_store(pr, g_p, "r1", kvs(g_p, META), kvs(g_p, AUDIT)), SU_OK);

    resu_check_redis_start();
    ck_assert_int_eq(su_redis_store(r, g_p, "r2", kvs(g_p, META), kvs(g_p, AUDIT)),
                     SU_ERR_UNAVAILABLE);
    ck_assert(!su_redis_usable(r));
    ck_assert_str_ne(su_redis_errstr(r), "");
    ck_assert_int_eq(su_redis_get_meta(pr, g_p, "r1", &meta), SU_ERR_UNAVAILABLE);
    ck_assert(!su_redis_usable(pr));
    su_redis_release(pool, pr);

    pr = NULL;
    ck_assert_int_eq(su_redis_acquire(pool, &pr, &err, g_p), SU_OK);
    ck_assert(su_redis_usable(pr));
    ck_assert_int_eq(su_redis_store(pr, g_p, "r3", kvs(g_p, META), kvs(g_p, AUDIT)), SU_OK);
    su_redis_release(pool, pr);
}
END_TEST

/* An idle pooled connection closed by a restart is replaced on acquire. */
START_TEST(test_restart_idle)
{
    su_redis_conf_t conf = conf_for(g_port);
    su_redis_pool_t *pool = NULL;
    su_redis_t *a = NULL, *b = NULL;
    const char *err = NULL;

    ck_assert_int_eq(su_redis_pool_create(g_p, &conf, 2, &pool), SU_OK);
    ck_assert_int_eq(su_redis_acquire(pool, &a, &err, g_p), SU_OK);
    ck_assert_int_eq(su_redis_acquire(pool, &b, &err, g_p), SU_OK);
    ck_assert_ptr_ne(a, b);
    su_redis_release(pool, a);
    su_redis_release(pool, b);
    resu_check_redis_start();
    usleep(100000);
    ck_assert_int_eq(su_redis_acquire(pool, &a, &err, g_p), SU_OK);
    ck_assert_int_eq(su_redis_store(a, g_p, "i", kvs(g_p, META), kvs(g_p, AUDIT)), SU_OK);
    su_redis_release(pool, a);
}
END_TEST

START_TEST(test_pause_timeout)
{
    su_redis_conf_t conf = conf_for(g_port);
    su_redis_t *r;
    redisContext *c = raw_connect();
    apr_table_t *meta;
    apr_time_t t0;

    conf.timeout_ms = 300;
    r = connect_ok(&conf);
    freeReplyObject(raw_cmd(c, "CLIENT PAUSE 3000", NULL));
    t0 = apr_time_now();
    ck_assert_int_eq(su_redis_get_meta(r, g_p, "x", &meta), SU_ERR_UNAVAILABLE);
    ck_assert_msg(elapsed_s(t0) < 1.0, "took %.2f s", elapsed_s(t0));
    ck_assert(elapsed_s(t0) >= 0.25);
    ck_assert(!su_redis_usable(r));
    ck_assert_ptr_nonnull(strstr(su_redis_errstr(r), "timed out"));
    redisFree(c);
}
END_TEST

/* A write Redis runs only after the client gave up must not be applied. */
START_TEST(test_stalled_write_not_applied_late)
{
    su_redis_conf_t conf = conf_for(g_port);
    su_redis_t *r;
    redisContext *c;
    apr_time_t t0;
    int status;

    conf.timeout_ms = 300;
    r = connect_ok(&conf);
    ck_assert_int_eq(kill(g_pid, SIGSTOP), 0);
    t0 = apr_time_now();
    ck_assert_int_eq(su_redis_store(r, g_p, "late1", kvs(g_p, META), kvs(g_p, AUDIT)),
                     SU_ERR_UNAVAILABLE);
    ck_assert_msg(elapsed_s(t0) < 1.0, "took %.2f s", elapsed_s(t0));
    apr_sleep(apr_time_from_msec(400));
    ck_assert_int_eq(kill(g_pid, SIGCONT), 0);
    ck_assert_int_eq(waitpid(g_pid, &status, WNOHANG), 0);
    c = raw_connect();
    /* Redis has run the queued script by the time it answers this */
    ck_assert_int_eq(raw_int(c, "EXISTS t:file:late1", NULL), 0);
    ck_assert_int_eq(raw_int(c, "EXISTS t:audit", NULL), 0);
    /* and a write in time is applied */
    r = connect_ok(&conf);
    ck_assert_int_eq(su_redis_store(r, g_p, "ontime", kvs(g_p, META), kvs(g_p, AUDIT)),
                     SU_OK);
    ck_assert_int_eq(raw_int(c, "EXISTS t:file:ontime", NULL), 1);
    redisFree(c);
}
END_TEST

/* ----------------------------------------------------------------- pool */

START_TEST(test_pool_down_then_up)
{
    su_redis_conf_t conf = conf_for(g_port);
    su_redis_pool_t *pool = NULL;
    su_redis_t *r = NULL;
    const char *err = NULL;

    stop_redis();
    ck_assert_int_eq(su_redis_pool_create(g_p, &conf, 2, &pool), SU_OK);
    ck_assert_int_eq(su_redis_acquire(pool, &r, &err, g_p), SU_ERR_UNAVAILABLE);
    ck_assert_ptr_null(r);
    ck_assert_ptr_nonnull(err);
    ck_assert_ptr_nonnull(strstr(err, "connect"));
    g_pid = su_check_redis_start(g_port, g_pass, NULL);
    ck_assert_int_eq(su_redis_acquire(pool, &r, &err, g_p), SU_OK);
    ck_assert_int_eq(su_redis_audit(r, g_p, kvs(g_p, AUDIT)), SU_OK);
    su_redis_release(pool, r);
}
END_TEST

START_TEST(test_pool_exhausted)
{
    su_redis_conf_t conf = conf_for(g_port);
    su_redis_pool_t *pool = NULL;
    su_redis_t *a = NULL, *b = NULL;
    const char *err = NULL;
    apr_time_t t0;

    conf.timeout_ms = 300;
    ck_assert_int_eq(su_redis_pool_create(g_p, &conf, 1, &pool), SU_OK);
    ck_assert_int_eq(su_redis_acquire(pool, &a, &err, g_p), SU_OK);
    t0 = apr_time_now();
    ck_assert_int_eq(su_redis_acquire(pool, &b, &err, g_p), SU_ERR_UNAVAILABLE);
    ck_assert(elapsed_s(t0) < 1.5);
    ck_assert_ptr_null(b);
    ck_assert_ptr_nonnull(err);
    su_redis_release(pool, a);
    ck_assert_int_eq(su_redis_acquire(pool, &b, &err, g_p), SU_OK);
    ck_assert_ptr_eq(a, b);
    su_redis_release(pool, b);
}
END_TEST

/* connected_clients from INFO, polled briefly until it equals want */
static int connected_clients(redisContext *c, int want)
{
    int i, n = -1;

    for (i = 0; i < 40; i++) {
        redisReply *rep = raw_cmd(c, "INFO clients", NULL);
        const char *s = strstr(rep->str, "connected_clients:");
        ck_assert_ptr_nonnull(s);
        n = atoi(s + strlen("connected_clients:"));
        freeReplyObject(rep);
        if (n == want)
            break;
        usleep(50000);
    }
    return n;
}

/* Pooled connections are freed with the pool that owns them. */
START_TEST(test_pool_destroy)
{
    su_redis_conf_t conf = conf_for(g_port);
    apr_pool_t *sub;
    su_redis_pool_t *pool = NULL;
    su_redis_t *a = NULL, *b = NULL;
    const char *err = NULL;
    redisContext *c = raw_connect();

    apr_pool_create(&sub, g_p);
    ck_assert_int_eq(su_redis_pool_create(sub, &conf, 4, &pool), SU_OK);
    ck_assert_int_eq(su_redis_acquire(pool, &a, &err, g_p), SU_OK);
    ck_assert_int_eq(su_redis_acquire(pool, &b, &err, g_p), SU_OK);
    su_redis_release(pool, a);
    su_redis_release(pool, b);
    ck_assert_int_eq(connected_clients(c, 3), 3);
    apr_pool_destroy(sub);
    ck_assert_int_eq(connected_clients(c, 1), 1);
    redisFree(c);
}
END_TEST

#define N_THREADS 4
#define N_PER_THREAD 50

typedef struct worker_arg {
    su_redis_pool_t *pool;
    int ok;
} worker_arg_t;

static void *APR_THREAD_FUNC worker(apr_thread_t *t, void *data)
{
    worker_arg_t *arg = data;
    su_redis_pool_t *pool = arg->pool;
    apr_pool_t *p;
    int ok = 0;
    int i;

    apr_pool_create(&p, NULL);
    for (i = 0; i < N_PER_THREAD; i++) {
        su_redis_t *r = NULL;
        const char *err = NULL;
        const char *id = apr_psprintf(p, "%p-%d", (void *)t, i);
        if (su_redis_acquire(pool, &r, &err, p) != SU_OK)
            continue;
        if (su_redis_store(r, p, id, kvs(p, META), kvs(p, AUDIT)) == SU_OK)
            ok++;
        su_redis_release(pool, r);
    }
    apr_pool_destroy(p);
    arg->ok = ok;
    return NULL;
}

START_TEST(test_pool_threads)
{
    su_redis_conf_t conf = conf_for(g_port);
    su_redis_pool_t *pool = NULL;
    apr_thread_t *th[N_THREADS];
    worker_arg_t args[N_THREADS];
    redisContext *c = raw_connect();
    int i;

    ck_assert_int_eq(su_redis_pool_create(g_p, &conf, 2, &pool), SU_OK);
    for (i = 0; i < N_THREADS; i++)
    {
        args[i].pool = pool;
        args[i].ok = -1;
        ck_assert_int_eq(apr_thread_create(&th[i], NULL, worker, &args[i], g_p),
                         APR_SUCCESS);
    }
    for (i = 0; i < N_THREADS; i++) {
        apr_status_t st;
        apr_thread_join(&st, th[i]);
        ck_assert_int_eq(args[i].ok, N_PER_THREAD);
    }
    ck_assert_int_eq(raw_int(c, "XLEN t:audit", NULL), N_THREADS * N_PER_THREAD);
    redisFree(c);
}
END_TEST

START_TEST(test_unix_socket)
{
    su_redis_conf_t conf = conf_for(0);
    su_redis_t *r;
    const char *err = NULL;
    redisContext *c = raw_connect();

    ck_assert_int_eq(su_redis_parse_server(g_p, g_sock, &conf, &err), SU_OK);
    r = connect_ok(&conf);
    ck_assert_int_eq(su_redis_store(r, g_p, "s", kvs(g_p, META), kvs(g_p, AUDIT)), SU_OK);
    ck_assert_int_eq(raw_int(c, "EXISTS t:file:s", NULL), 1);
    redisFree(c);
}
END_TEST


/* ------------------------------------------------- ACL user, replicas */

/* AUTH user password: an ACL user of its own, with its own password. */
START_TEST(test_acl_user)
{
    su_redis_conf_t conf = conf_for(g_port);
    redisContext *c = raw_connect();
    su_redis_t *r = NULL;
    const char *err = NULL;

    freeReplyObject(raw_cmd(c, "ACL SETUSER uploader on >up-Pa55 ~t:* +@all", NULL));
    conf.user = "uploader";
    conf.password = "up-Pa55";
    r = connect_ok(&conf);
    ck_assert_int_eq(su_redis_store(r, g_p, "u1", kvs(g_p, META), kvs(g_p, AUDIT)), SU_OK);
    ck_assert_int_eq(raw_int(c, "EXISTS t:file:u1", NULL), 1);
    /* the password alone is the default user's: refused, and never quoted */
    conf.password = "wrong-Pa55";
    ck_assert_int_eq(su_redis_connect(g_p, &conf, &r, &err), SU_ERR_UNAVAILABLE);
    ck_assert_ptr_nonnull(err);
    ck_assert_ptr_null(strstr(err, "wrong-Pa55"));
    /* outside its keys the user is refused too */
    conf.password = "up-Pa55";
    conf.prefix = "other:";
    r = connect_ok(&conf);
    ck_assert_int_eq(su_redis_store(r, g_p, "u2", kvs(g_p, META), kvs(g_p, AUDIT)),
                     SU_ERR_UNAVAILABLE);
    redisFree(c);
}
END_TEST

static pid_t g_rpid = -1, g_spid = -1;
static int g_rport, g_sport;
static char g_sconf[64];

static void kill_pid(pid_t *pid)
{
    int status;

    if (*pid > 0) {
        kill(*pid, SIGKILL);
        waitpid(*pid, &status, 0);
        *pid = -1;
    }
}

/* a replica of the test's server on g_rport */
static void start_replica(void)
{
    char port[16], master[16];
    const char *argv[] = { "redis-server", "--port", port, "--bind", "127.0.0.1",
                           "--save", "", "--appendonly", "no", "--dir", "/tmp",
                           "--replicaof", "127.0.0.1", master, NULL };

    g_rport = su_check_free_port();
    snprintf(port, sizeof(port), "%d", g_rport);
    snprintf(master, sizeof(master), "%d", g_port);
    g_rpid = su_check_spawn(argv, g_rport);
}

static int replica_linked(void)
{
    struct timeval tv = { 1, 0 };
    redisContext *c = redisConnectWithTimeout("127.0.0.1", g_rport, tv);
    redisReply *rep = c && !c->err ? redisCommand(c, "INFO replication") : NULL;
    int ok = rep && rep->str && strstr(rep->str, "master_link_status:up") != NULL;

    if (rep)
        freeReplyObject(rep);
    if (c)
        redisFree(c);
    return ok;
}

static void wait_linked(void)
{
    int i;

    for (i = 0; i < 200 && !replica_linked(); i++)
        usleep(50000);
    ck_assert_msg(replica_linked(), "the replica did not link to its master");
}

/* one sentinel watching "sumaster" (the test's server), quorum 1 */
static void start_sentinel(void)
{
    char port[16];
    const char *argv[] = { "redis-server", g_sconf, "--sentinel", "--port", port,
                           NULL };
    FILE *f;

    g_sport = su_check_free_port();
    snprintf(port, sizeof(port), "%d", g_sport);
    snprintf(g_sconf, sizeof(g_sconf), "/tmp/su_sentinel_%d.conf", g_sport);
    f = fopen(g_sconf, "w");
    ck_assert_ptr_nonnull(f);
    fprintf(f, "bind 127.0.0.1\nsentinel monitor sumaster 127.0.0.1 %d 1\n"
               "sentinel down-after-milliseconds sumaster 1000\n"
               "sentinel failover-timeout sumaster 3000\n", g_port);
    fclose(f);
    g_spid = su_check_spawn(argv, g_sport);
}

static void setup_replicated(void)
{
    setup_common(NULL, 0);
    start_replica();
    wait_linked();
    start_sentinel();
}

static void teardown_replicated(void)
{
    kill_pid(&g_spid);
    kill_pid(&g_rpid);
    if (g_sconf[0])
        unlink(g_sconf);
    g_sconf[0] = '\0';
    teardown();
}

static su_redis_conf_t conf_sentinel(void)
{
    su_redis_conf_t conf = conf_for(0);
    const char *addrs[2];
    const char *err = NULL;

    addrs[0] = "127.0.0.1:1";   /* a sentinel that is down is skipped */
    addrs[1] = apr_psprintf(g_p, "127.0.0.1:%d", g_sport);
    ck_assert_int_eq(su_redis_parse_sentinels(g_p, "sumaster", 2, addrs, &conf, &err),
                     SU_OK);
    conf.timeout_ms = 2000;
    return conf;
}

static redisContext *raw_at(int port)
{
    struct timeval tv = { 2, 0 };
    redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);

    ck_assert_msg(c && c->err == 0, "raw connect to %d", port);
    redisSetTimeout(c, tv);
    return c;
}

/* A replica refuses the write: nothing applied, the connection not reused,
 * and the caller can tell a refusal from an unknown outcome. */
START_TEST(test_replica_refuses)
{
    su_redis_conf_t conf = conf_for(g_rport);
    su_redis_t *r = connect_ok(&conf);
    redisContext *c = raw_at(g_rport);

    ck_assert_int_eq(su_redis_store(r, g_p, "ro", kvs(g_p, META), kvs(g_p, AUDIT)),
                     SU_ERR_UNAVAILABLE);
    ck_assert_msg(strstr(su_redis_errstr(r), "READONLY") != NULL, "%s",
                  su_redis_errstr(r));
    ck_assert(su_redis_refused(r));
    ck_assert(!su_redis_usable(r));
    ck_assert_int_eq(raw_int(c, "EXISTS t:file:ro", NULL), 0);
    redisFree(c);
}
END_TEST

/* WAIT counts the replicas that have the write; a stopped one does not. */
START_TEST(test_wait_replicas)
{
    su_redis_conf_t conf = conf_for(g_port);
    su_redis_t *r = connect_ok(&conf);
    apr_time_t t0;
    int acked = -1;

    ck_assert_int_eq(su_redis_store(r, g_p, "w1", kvs(g_p, META), kvs(g_p, AUDIT)), SU_OK);
    ck_assert_int_eq(su_redis_wait(r, g_p, 1, 500, &acked), SU_OK);
    ck_assert_int_eq(acked, 1);
    kill(g_rpid, SIGSTOP);
    ck_assert_int_eq(su_redis_store(r, g_p, "w2", kvs(g_p, META), kvs(g_p, AUDIT)), SU_OK);
    t0 = apr_time_now();
    ck_assert_int_eq(su_redis_wait(r, g_p, 1, 300, &acked), SU_OK);
    ck_assert_int_eq(acked, 0);
    ck_assert(elapsed_s(t0) >= 0.25 && elapsed_s(t0) < 0.9);
    ck_assert(su_redis_usable(r));
    kill(g_rpid, SIGCONT);
}
END_TEST

/* The sentinel names the master; a sentinel that is down is skipped. */
START_TEST(test_sentinel_master)
{
    su_redis_conf_t conf = conf_sentinel();
    su_redis_t *r = connect_ok(&conf);
    redisContext *c = raw_at(g_port);

    ck_assert_int_eq(su_redis_store(r, g_p, "s1", kvs(g_p, META), kvs(g_p, AUDIT)), SU_OK);
    ck_assert_int_eq(raw_int(c, "EXISTS t:file:s1", NULL), 1);
    ck_assert_int_eq(su_redis_ping(r, g_p), SU_OK);
    redisFree(c);
}
END_TEST

/* A sentinel that does not know the name: a clear error within the timeout. */
START_TEST(test_sentinel_unknown_master)
{
    su_redis_conf_t conf = conf_sentinel();
    su_redis_t *r = NULL;
    const char *err = NULL;
    apr_time_t t0 = apr_time_now();

    conf.sentinel_master = "nosuch";
    conf.timeout_ms = 500;
    ck_assert_int_eq(su_redis_connect(g_p, &conf, &r, &err), SU_ERR_UNAVAILABLE);
    ck_assert_ptr_nonnull(err);
    ck_assert_msg(strstr(err, "nosuch") != NULL, "%s", err);
    ck_assert(elapsed_s(t0) < 1.0);
}
END_TEST

static int sentinel_names(int port)
{
    redisContext *c = raw_at(g_sport);
    redisReply *rep = redisCommand(c, "SENTINEL get-master-addr-by-name sumaster");
    int named = rep && rep->type == REDIS_REPLY_ARRAY && rep->elements == 2
                && atoi(rep->element[1]->str) == port;

    if (rep)
        freeReplyObject(rep);
    redisFree(c);
    return named;
}

static int is_replica(int port)
{
    redisContext *c = raw_at(port);
    redisReply *rep = redisCommand(c, "ROLE");
    int slave = rep && rep->type == REDIS_REPLY_ARRAY && rep->elements > 0
                && strcmp(rep->element[0]->str, "slave") == 0;

    if (rep)
        freeReplyObject(rep);
    redisFree(c);
    return slave;
}

static void counted(void *baton)
{
    (*(int *)baton)++;
}

/*
 * After a failover the pool finds the new master by itself: the pooled
 * connection to the old one (now a replica) is not handed out again, and
 * the next write lands on the promoted server.
 */
START_TEST(test_sentinel_failover)
{
    su_redis_conf_t conf = conf_sentinel();
    su_redis_pool_t *pool = NULL;
    su_redis_t *a = NULL, *b = NULL;
    const char *err = NULL;
    redisContext *s;
    redisReply *rep = NULL;
    int made = 0, i;

    ck_assert_int_eq(su_redis_pool_create(g_p, &conf, 4, &pool), SU_OK);
    su_redis_pool_on_connect(pool, counted, &made);
    ck_assert_int_eq(su_redis_acquire(pool, &a, &err, g_p), SU_OK);
    ck_assert_int_eq(su_redis_acquire(pool, &b, &err, g_p), SU_OK);
    su_redis_release(pool, b);
    ck_assert_int_eq(made, 2);
    /* a forced failover, once the sentinel has seen the replica */
    s = raw_at(g_sport);
    for (i = 0; i < 100; i++) {
        rep = redisCommand(s, "SENTINEL FAILOVER sumaster");
        if (rep && rep->type != REDIS_REPLY_ERROR)
            break;
        if (rep)
            freeReplyObject(rep);
        rep = NULL;
        usleep(100000);
    }
    ck_assert_msg(rep != NULL, "the sentinel would not fail over");
    freeReplyObject(rep);
    redisFree(s);
    for (i = 0; i < 100 && !sentinel_names(g_rport); i++)
        usleep(100000);
    ck_assert(sentinel_names(g_rport));
    /* until the old master is made a replica (the sentinel does so within
     * seconds), it still takes writes that will be lost: what
     * SecUploadRedisWaitReplicas guards against. Done here at once. */
    s = raw_at(g_port);
    freeReplyObject(raw_cmd(s, apr_psprintf(g_p, "REPLICAOF 127.0.0.1 %d", g_rport),
                            NULL));
    redisFree(s);
    ck_assert(is_replica(g_port));
    /* a: held through the failover, its write refused */
    ck_assert_int_ne(su_redis_store(a, g_p, "f0", kvs(g_p, META), kvs(g_p, AUDIT)), SU_OK);
    ck_assert_msg(su_redis_refused(a), "%s", su_redis_errstr(a));
    ck_assert(!su_redis_usable(a));
    su_redis_release(pool, a);
    /* b sat idle in the pool: it is not handed out again */
    b = NULL;
    ck_assert_int_eq(su_redis_acquire(pool, &b, &err, g_p), SU_OK);
    ck_assert_int_eq(made, 3);
    ck_assert_int_eq(su_redis_ping(b, g_p), SU_OK);
    ck_assert_int_eq(su_redis_store(b, g_p, "f1", kvs(g_p, META), kvs(g_p, AUDIT)), SU_OK);
    su_redis_release(pool, b);
    s = raw_at(g_rport);
    ck_assert_int_eq(raw_int(s, "EXISTS t:file:f1", NULL), 1);
    redisFree(s);
}
END_TEST

static void setup_user(void) { setup_common(NULL, 0); }

/* ----------------------------------------------------------------- main */

static TCase *server_case(const char *name, void (*setup)(void))
{
    TCase *tc = tcase_create(name);

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 30);
    return tc;
}

static Suite *redis_suite(void)
{
    Suite *s = suite_create("su_redis");
    TCase *parse = tcase_create("parse");
    TCase *plain = server_case("plain", setup_plain);
    TCase *auth = server_case("auth", setup_auth);
    TCase *sock = server_case("sock", setup_sock);
    TCase *user = server_case("user", setup_user);
    TCase *repl = tcase_create("replicated");

    tcase_add_test(parse, test_parse_ok);
    tcase_add_test(parse, test_parse_bad);
    tcase_add_test(parse, test_conf_defaults);
    suite_add_tcase(s, parse);

    tcase_add_test(plain, test_store);
    tcase_add_test(plain, test_stalled_write_not_applied_late);
    tcase_add_test(plain, test_prefix);
    tcase_add_test(plain, test_maxlen);
    tcase_add_test(plain, test_bad_args);
    tcase_add_test(plain, test_wrongtype_keeps_connection);
    tcase_add_test(plain, test_select_db);
    tcase_add_test(plain, test_get_meta);
    tcase_add_test(plain, test_delete);
    tcase_add_test(plain, test_meta_add);
    tcase_add_test(plain, test_list_ids);
    tcase_add_test(plain, test_connect_refused);
    tcase_add_test(plain, test_close_idempotent);
    tcase_add_test(plain, test_restart_reconnect);
    tcase_add_test(plain, test_restart_idle);
    tcase_add_test(plain, test_pause_timeout);
    tcase_add_test(plain, test_pool_down_then_up);
    tcase_add_test(plain, test_pool_exhausted);
    tcase_add_test(plain, test_pool_destroy);
    tcase_add_test(plain, test_pool_threads);
    suite_add_tcase(s, plain);

    tcase_add_test(auth, test_auth_ok);
    tcase_add_test(auth, test_auth_wrong);
    tcase_add_test(auth, test_auth_missing);
    tcase_add_test(auth, test_select_db);
    tcase_add_test(auth, test_restart_reconnect);
    suite_add_tcase(s, auth);

    tcase_add_test(sock, test_unix_socket);
    suite_add_tcase(s, sock);

    tcase_add_test(user, test_acl_user);
    suite_add_tcase(s, user);

    tcase_add_checked_fixture(repl, setup_replicated, teardown_replicated);
    tcase_set_timeout(repl, 60);
    tcase_add_test(repl, test_replica_refuses);
    tcase_add_test(repl, test_wait_replicas);
    tcase_add_test(repl, test_sentinel_master);
    tcase_add_test(repl, test_sentinel_unknown_master);
    tcase_add_test(repl, test_sentinel_failover);
    suite_add_tcase(s, repl);
    return s;
}

int main(void)
{
    return su_check_run(redis_suite);
}
