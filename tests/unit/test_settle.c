/*
 * su_settle against a real redis-server (started per test on a free
 * loopback port) and a private storage directory: markers, their notes and
 * audit entries, settling now, later, and the outcome of a broken delete.
 */
#include <check.h>
#include <stdlib.h>

#include <apr_strings.h>
#include <apr_time.h>

#include "su_check.h"
#include "su_check_redis.h"
#include "su_settle.h"
#include "su_store.h"

#define ID1 "0123456789abcdef0123456789abcdef"
#define ID2 "fedcba9876543210fedcba9876543210"

static apr_pool_t *g_p;
static pid_t g_pid = -1;
static int g_port;
static char g_dir[64];

static const su_settle_by_t BY = { "upload.rejected", "503", "req-later",
                                   "2030-01-01T00:00:00.000000Z" };

static void setup(void)
{
    ck_assert_int_eq(apr_pool_create(&g_p, NULL), APR_SUCCESS);
    strcpy(g_dir, "/tmp/su_settle_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(g_dir));
    g_port = su_check_free_port();
    g_pid = su_check_redis_start(g_port, NULL, NULL);
}

static void teardown(void)
{
    int status;

    if (g_p)
        apr_pool_destroy(g_p);
    g_p = NULL;
    if (g_pid > 0) {
        kill(g_pid, SIGKILL);
        waitpid(g_pid, &status, 0);
        g_pid = -1;
    }
    su_check_rm_rf(g_dir);
}

static su_redis_conf_t conf_for(int port)
{
    su_redis_conf_t c;

    su_redis_conf_defaults(&c);
    c.host = "127.0.0.1";
    c.port = port;
    c.timeout_ms = 500;
    c.prefix = "t:";
    return c;
}

static su_redis_pool_t *pool_for(int port)
{
    su_redis_conf_t c = conf_for(port);
    su_redis_pool_t *pool = NULL;

    ck_assert_int_eq(su_redis_pool_create(g_p, &c, 4, &pool), SU_OK);
    return pool;
}

static su_redis_t *connect_ok(void)
{
    su_redis_conf_t c = conf_for(g_port);
    su_redis_t *r = NULL;
    const char *err = NULL;

    ck_assert_int_eq(su_redis_connect(g_p, &c, &r, &err), SU_OK);
    return r;
}

static apr_array_header_t *pairs(const char *k1, const char *v1,
                                 const char *k2, const char *v2)
{
    apr_array_header_t *a = apr_array_make(g_p, 2, sizeof(su_kv_t));
    su_kv_t *kv = apr_array_push(a);

    kv->k = k1;
    kv->v = v1;
    kv = apr_array_push(a);
    kv->k = k2;
    kv->v = v2;
    return a;
}

/* the upload's metadata, as if its write had been applied */
static void store_meta(su_redis_t *r, const char *id)
{
    ck_assert_int_eq(su_redis_store(r, g_p, id, pairs("id", id, "size", "5"),
                                     pairs("event", "upload.stored", "id", id)),
                     SU_OK);
}

static int has_meta(su_redis_t *r, const char *id)
{
    apr_table_t *meta;
    su_err_t rv = su_redis_get_meta(r, g_p, id, &meta);

    ck_assert(rv == SU_OK || rv == SU_ERR_NOT_FOUND);
    return rv == SU_OK;
}

static void mark(const char *id, const char *user)
{
    ck_assert_int_eq(su_store_mark_unsettled(g_p, g_dir, id,
                                             su_settle_note(g_p, "192.0.2.7", user,
                                                            "req-failed",
                                                            "2029-01-01T00:00:00Z",
                                                            5000)),
                     SU_OK);
}

static int marked(const char *id)
{
    return access(apr_pstrcat(g_p, g_dir, "/" SU_STORE_UNSETTLED "/", id, NULL),
                  F_OK) == 0;
}

static const char *kv_get(const apr_array_header_t *a, const char *k)
{
    int i;

    for (i = 0; i < a->nelts; i++)
        if (strcmp(APR_ARRAY_IDX(a, i, su_kv_t).k, k) == 0)
            return APR_ARRAY_IDX(a, i, su_kv_t).v;
    return NULL;
}

/* the fields of the last audit entry */
static redisReply *last_audit(void)
{
    redisContext *c = redisConnect("127.0.0.1", g_port);
    redisReply *rep;

    ck_assert(c && c->err == 0);
    rep = redisCommand(c, "XREVRANGE t:audit + - COUNT 1");
    redisFree(c);
    ck_assert_ptr_nonnull(rep);
    ck_assert_int_eq(rep->type, REDIS_REPLY_ARRAY);
    ck_assert_uint_eq(rep->elements, 1);
    return rep;
}

static const char *reply_get(redisReply *entry, const char *k)
{
    redisReply *f = entry->element[0]->element[1];
    size_t i;

    for (i = 0; i + 1 < f->elements; i += 2)
        if (strcmp(f->element[i]->str, k) == 0)
            return f->element[i + 1]->str;
    return NULL;
}

/* ------------------------------------------------------------- tests */

START_TEST(test_audit_speaks_of_the_failed_request)
{
    apr_array_header_t *a;

    mark(ID1, "alice");
    a = su_settle_audit(g_p, g_dir, ID1, &BY);
    ck_assert_str_eq(kv_get(a, "event"), "upload.rejected");
    ck_assert_str_eq(kv_get(a, "status"), "503");
    ck_assert_str_eq(kv_get(a, "id"), ID1);
    ck_assert_str_eq(kv_get(a, "reason"), "unavailable");
    ck_assert_str_eq(kv_get(a, "bytes"), "5000");
    ck_assert_str_eq(kv_get(a, "client_ip"), "192.0.2.7");
    ck_assert_str_eq(kv_get(a, "user"), "alice");
    ck_assert_str_eq(kv_get(a, "request_id"), "req-failed");
    ck_assert_str_eq(kv_get(a, "time"), "2029-01-01T00:00:00Z");
    ck_assert_str_eq(kv_get(a, "settled_by"), "req-later");
    ck_assert_str_eq(kv_get(a, "settled_time"), BY.settled_time);
}
END_TEST

START_TEST(test_audit_of_a_lost_note)
{
    apr_array_header_t *a;

    /* a marker without its note (e.g. cut short by a crash) */
    ck_assert_int_eq(su_store_mark_unsettled(g_p, g_dir, ID1, ""), SU_OK);
    a = su_settle_audit(g_p, g_dir, ID1, &BY);
    ck_assert_str_eq(kv_get(a, "id"), ID1);
    ck_assert_str_eq(kv_get(a, "user"), "");
    ck_assert_str_eq(kv_get(a, "request_id"), "");
    ck_assert_str_eq(kv_get(a, "settled_by"), "req-later");
}
END_TEST

START_TEST(test_note_of_anonymous_request)
{
    const char *n = su_settle_note(g_p, NULL, NULL, "rq", "t", 0);

    ck_assert_int_eq(su_store_mark_unsettled(g_p, g_dir, ID1, n), SU_OK);
    ck_assert_str_eq(kv_get(su_settle_audit(g_p, g_dir, ID1, &BY), "user"), "");
    ck_assert_str_eq(kv_get(su_settle_audit(g_p, g_dir, ID1, &BY), "bytes"), "0");
}
END_TEST

START_TEST(test_one_removes_and_audits)
{
    su_redis_t *r = connect_ok();
    redisReply *e;

    store_meta(r, ID1);
    ck_assert_int_eq(su_settle_one(r, g_p, ID1, pairs("event", "upload.rejected",
                                                      "id", ID1)), SU_OK);
    ck_assert(!has_meta(r, ID1));
    e = last_audit();
    ck_assert_str_eq(reply_get(e, "event"), "upload.rejected");
    freeReplyObject(e);
    /* nothing there (the write was never applied): settled all the same */
    ck_assert_int_eq(su_settle_one(r, g_p, ID1, pairs("event", "upload.rejected",
                                                      "id", ID1)), SU_OK);
}
END_TEST

START_TEST(test_due_stats_once_when_unchanged)
{
    su_settle_t *st;
    apr_array_header_t *ids;

    ck_assert_int_eq(su_settle_create(g_p, &st), SU_OK);
    ck_assert_ptr_null(su_settle_due(st, g_p, g_dir));   /* no directory */
    mark(ID1, "alice");
    ids = su_settle_due(st, g_p, g_dir);
    ck_assert_ptr_nonnull(ids);
    ck_assert_int_eq(ids->nelts, 1);
    ck_assert_str_eq(APR_ARRAY_IDX(ids, 0, const char *), ID1);
    /* unchanged since: not read again (until something is left over) */
    ck_assert_ptr_null(su_settle_due(st, g_p, g_dir));
}
END_TEST

START_TEST(test_ids_settle_and_clear)
{
    su_redis_t *r = connect_ok();
    su_settle_t *st;
    apr_array_header_t *ids, *done = apr_array_make(g_p, 2, sizeof(const char *));
    redisReply *e;

    ck_assert_int_eq(su_settle_create(g_p, &st), SU_OK);
    store_meta(r, ID1);
    mark(ID1, "alice");
    mark(ID2, "bob");          /* its write was never applied */
    ids = su_settle_due(st, g_p, g_dir);
    ck_assert_int_eq(ids->nelts, 2);
    ck_assert_int_eq(su_settle_ids(st, r, g_p, g_dir, ids, &BY, done), 0);
    ck_assert_int_eq(done->nelts, 2);
    ck_assert(!has_meta(r, ID1));
    ck_assert(!marked(ID1) && !marked(ID2));
    e = last_audit();
    ck_assert_str_eq(reply_get(e, "settled_by"), "req-later");
    ck_assert(strcmp(reply_get(e, "user"), "alice") == 0
              || strcmp(reply_get(e, "user"), "bob") == 0);
    freeReplyObject(e);
    ck_assert_ptr_null(su_settle_due(st, g_p, g_dir));
}
END_TEST

START_TEST(test_ids_left_without_redis)
{
    su_redis_t *r = connect_ok();
    su_settle_t *st;
    apr_array_header_t *ids, *done = apr_array_make(g_p, 2, sizeof(const char *));

    ck_assert_int_eq(su_settle_create(g_p, &st), SU_OK);
    store_meta(r, ID1);
    mark(ID1, "alice");
    ids = su_settle_due(st, g_p, g_dir);
    ck_assert_int_eq(su_settle_ids(st, NULL, g_p, g_dir, ids, &BY, done), 1);
    ck_assert_int_eq(done->nelts, 0);
    ck_assert(marked(ID1) && has_meta(r, ID1));
    /* left over: the directory is read again next time, and settled then */
    ids = su_settle_due(st, g_p, g_dir);
    ck_assert_ptr_nonnull(ids);
    ck_assert_int_eq(su_settle_ids(st, r, g_p, g_dir, ids, &BY, done), 0);
    ck_assert(!marked(ID1) && !has_meta(r, ID1));
}
END_TEST

START_TEST(test_ids_left_when_redis_stalls)
{
    su_redis_t *r = connect_ok();
    su_settle_t *st;
    apr_array_header_t *ids;

    ck_assert_int_eq(su_settle_create(g_p, &st), SU_OK);
    store_meta(r, ID1);
    mark(ID1, "alice");
    mark(ID2, "bob");
    ids = su_settle_due(st, g_p, g_dir);
    ck_assert_int_eq(kill(g_pid, SIGSTOP), 0);
    /* the first one times out, breaking r; the second is not tried on it */
    ck_assert_int_eq(su_settle_ids(st, r, g_p, g_dir, ids, &BY, NULL), 2);
    ck_assert_int_eq(kill(g_pid, SIGCONT), 0);
    ck_assert(!su_redis_usable(r));
    ck_assert(marked(ID1) && marked(ID2));
    ck_assert_ptr_nonnull(su_settle_due(st, g_p, g_dir));
}
END_TEST

START_TEST(test_now_settles_or_gives_up_in_time)
{
    su_redis_pool_t *pool = pool_for(g_port);
    su_redis_t *r = connect_ok();
    su_redis_pool_t *dead = pool_for(su_check_free_port());
    apr_time_t t0;

    store_meta(r, ID1);
    ck_assert_int_eq(su_settle_now(pool, g_p, ID1,
                                   pairs("event", "upload.rejected", "id", ID1),
                                   1000), SU_OK);
    ck_assert(!has_meta(r, ID1));
    t0 = apr_time_now();
    ck_assert_int_eq(su_settle_now(dead, g_p, ID1,
                                   pairs("event", "upload.rejected", "id", ID1),
                                   300), SU_ERR_UNAVAILABLE);
    ck_assert_int_ge(apr_time_now() - t0, apr_time_from_msec(300));
    ck_assert_int_lt(apr_time_now() - t0, apr_time_from_sec(3));
}
END_TEST

START_TEST(test_deleted_tells_whether_the_delete_ran)
{
    su_redis_pool_t *pool = pool_for(g_port);
    su_redis_t *r = connect_ok();

    ck_assert_int_eq(su_settle_deleted(pool, g_p, ID1, 200), SU_OK);
    store_meta(r, ID1);
    ck_assert_int_eq(su_settle_deleted(pool, g_p, ID1, 200), SU_ERR_UNAVAILABLE);
    /* nobody to ask: not known to have run */
    ck_assert_int_eq(su_settle_deleted(pool_for(su_check_free_port()), g_p, ID2,
                                       200), SU_ERR_UNAVAILABLE);
}
END_TEST

/* ----------------------------------------------------------------- main */

static Suite *settle_suite(void)
{
    Suite *s = suite_create("su_settle");
    TCase *tc = tcase_create("settle");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_audit_speaks_of_the_failed_request);
    tcase_add_test(tc, test_audit_of_a_lost_note);
    tcase_add_test(tc, test_note_of_anonymous_request);
    tcase_add_test(tc, test_one_removes_and_audits);
    tcase_add_test(tc, test_due_stats_once_when_unchanged);
    tcase_add_test(tc, test_ids_settle_and_clear);
    tcase_add_test(tc, test_ids_left_without_redis);
    tcase_add_test(tc, test_ids_left_when_redis_stalls);
    tcase_add_test(tc, test_now_settles_or_gives_up_in_time);
    tcase_add_test(tc, test_deleted_tells_whether_the_delete_ran);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return su_check_run(settle_suite);
}
