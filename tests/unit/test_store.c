/* Unit tests for the storage directory (su_store.c): temp files, commit, cleanup. */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <apr_general.h>
#include <apr_strings.h>

#include "su_check.h"
#include "su_json.h"
#include "su_store.h"

static apr_pool_t *pool;
static char dir[64];

static void setup(void)
{
    ck_assert_int_eq(apr_pool_create(&pool, NULL), APR_SUCCESS);
    strcpy(dir, "/tmp/su_store_test.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
}

static void teardown(void)
{
    apr_pool_destroy(pool);
    su_check_rm_rf(dir);
}

START_TEST(test_valid_id)
{
    char id[SU_ID_HEX_LEN + 1], id2[SU_ID_HEX_LEN + 1];

    ck_assert(su_store_valid_id("0123456789abcdef0123456789abcdef"));
    ck_assert(!su_store_valid_id("0123456789ABCDEF0123456789abcdef"));
    ck_assert(!su_store_valid_id("0123456789abcdef0123456789abcde"));
    ck_assert(!su_store_valid_id("0123456789abcdef0123456789abcdef0"));
    ck_assert(!su_store_valid_id("../3456789abcdef0123456789abcdef"));
    ck_assert(!su_store_valid_id(NULL));
    ck_assert_int_eq(su_store_new_id(id), SU_OK);
    ck_assert_int_eq(su_store_new_id(id2), SU_OK);
    ck_assert(su_store_valid_id(id));
    ck_assert_str_ne(id, id2);
    ck_assert_str_eq(su_store_relpath(pool, "abcdef0123456789abcdef0123456789"),
                     "ab/abcdef0123456789abcdef0123456789.enc");
}
END_TEST

/* The id at the end of a URL path (a tus upload's), or "" for the
 * collection; nothing else is an id. */
START_TEST(test_url_id)
{
    const char *id = "0123456789abcdef0123456789abcdef";

    ck_assert_str_eq(su_store_url_id("/tus/0123456789abcdef0123456789abcdef"), id);
    ck_assert_str_eq(su_store_url_id("0123456789abcdef0123456789abcdef"), id);
    ck_assert_str_eq(su_store_url_id("/a/b//0123456789abcdef0123456789abcdef"), id);
    ck_assert_str_eq(su_store_url_id("/tus/"), "");
    ck_assert_str_eq(su_store_url_id("/"), "");
    ck_assert_str_eq(su_store_url_id(""), "");
    ck_assert_ptr_null(su_store_url_id("/tus"));
    ck_assert_ptr_null(su_store_url_id("/tus/0123456789ABCDEF0123456789abcdef"));
    ck_assert_ptr_null(su_store_url_id("/tus/0123456789abcdef0123456789abcde"));
    ck_assert_ptr_null(su_store_url_id("/tus/0123456789abcdef0123456789abcdef0"));
    ck_assert_ptr_null(su_store_url_id("/tus/0123456789abcdef0123456789abcdef/x"));
    ck_assert_ptr_null(su_store_url_id("/tus/0123456789abcdef0123456789abcde%66"));
    ck_assert_ptr_null(su_store_url_id("/tus/.."));
}
END_TEST

START_TEST(test_commit)
{
    const char *id = "abcdef0123456789abcdef0123456789", *err = NULL;
    su_store_file_t *f;
    struct stat st;
    char big[300 * 1024];
    const char *path;

    memset(big, 'x', sizeof big);
    ck_assert_int_eq(su_store_create(pool, dir, id, &f, &err), SU_OK);
    ck_assert_int_eq(su_store_write(f, "hello", 5, &err), SU_OK);
    ck_assert_int_eq(su_store_write(f, big, sizeof big, &err), SU_OK);
    ck_assert_int_eq(su_store_write(f, "!", 1, &err), SU_OK);
    ck_assert_int_eq(su_store_written(f), 5 + (apr_off_t)sizeof big + 1);
    /* not visible under its final name before the commit */
    path = su_store_path(pool, dir, id);
    ck_assert_int_ne(stat(path, &st), 0);
    ck_assert_int_eq(su_check_count_files(dir), 1);
    ck_assert_int_eq(su_store_flush(f, 1, &err), SU_OK);
    ck_assert_int_eq(su_store_commit(f, 1, &err), SU_OK);
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert_int_eq(st.st_size, 5 + (off_t)sizeof big + 1);
    ck_assert_int_eq(st.st_mode & 0777, 0600);
    ck_assert_int_eq(stat(apr_pstrcat(pool, dir, "/ab", NULL), &st), 0);
    ck_assert_int_eq(st.st_mode & 0777, 0700);
    ck_assert_int_eq(su_check_count_files(dir), 1);
    /* the committed file survives the pool */
    apr_pool_clear(pool);
    ck_assert_int_eq(su_check_count_files(dir), 1);
    ck_assert_int_eq(su_store_remove(pool, dir, id, 1, &err), SU_OK);
    ck_assert_int_eq(su_check_count_files(dir), 0);
    ck_assert_int_eq(su_store_remove(pool, dir, id, 1, &err), SU_ERR_NOT_FOUND);
}
END_TEST

/* Writeback hands ranges to the disk as the file grows: the bytes stored,
 * through both ways of writing, are exactly those written. */
START_TEST(test_writeback)
{
    const char *id = "00112233445566778899aabbccddeeff", *err = NULL;
    enum { PIECE = 61 * 1024, PIECES = 400 };    /* about 24 MiB */
    su_store_file_t *f;
    unsigned char *at, *back, *want;
    const char *path;
    struct stat st;
    FILE *fp;
    size_t i, j;

    ck_assert_int_eq(su_store_create(pool, dir, id, &f, &err), SU_OK);
    su_store_writeback(f);
    for (i = 0; i < PIECES; i++) {
        if (i % 2 == 0) {
            ck_assert_int_eq(su_store_space(f, PIECE, &at, &err), SU_OK);
            for (j = 0; j < PIECE; j++)
                at[j] = (unsigned char)(i * 31 + j);
            su_store_advance(f, PIECE);
        } else {
            unsigned char piece[PIECE];
            for (j = 0; j < PIECE; j++)
                piece[j] = (unsigned char)(i * 31 + j);
            ck_assert_int_eq(su_store_write(f, piece, PIECE, &err), SU_OK);
        }
    }
    ck_assert_int_eq(su_store_flush(f, 1, &err), SU_OK);
    ck_assert_int_eq(su_store_commit(f, 1, &err), SU_OK);
    path = su_store_path(pool, dir, id);
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert_int_eq(st.st_size, (off_t)PIECE * PIECES);
    back = malloc(PIECE);
    want = malloc(PIECE);
    ck_assert_ptr_nonnull(back);
    ck_assert_ptr_nonnull(want);
    fp = fopen(path, "rb");
    ck_assert_ptr_nonnull(fp);
    for (i = 0; i < PIECES; i++) {
        ck_assert_uint_eq(fread(back, 1, PIECE, fp), PIECE);
        for (j = 0; j < PIECE; j++)
            want[j] = (unsigned char)(i * 31 + j);
        ck_assert_int_eq(memcmp(back, want, PIECE), 0);
    }
    ck_assert_uint_eq(fread(back, 1, 1, fp), 0);
    fclose(fp);
    free(back);
    free(want);
}
END_TEST

START_TEST(test_cleanup_removes_temp)
{
    const char *id = "0011223344556677889900aabbccddee", *err = NULL;
    su_store_file_t *f;
    apr_pool_t *sub;

    apr_pool_create(&sub, pool);
    ck_assert_int_eq(su_store_create(sub, dir, id, &f, &err), SU_OK);
    ck_assert_int_eq(su_store_write(f, "data", 4, &err), SU_OK);
    ck_assert_int_eq(su_store_flush(f, 0, &err), SU_OK);
    ck_assert_int_eq(su_check_count_files(dir), 1);
    apr_pool_destroy(sub);       /* e.g. the client went away */
    ck_assert_int_eq(su_check_count_files(dir), 0);

    ck_assert_int_eq(su_store_create(pool, dir, id, &f, &err), SU_OK);
    su_store_discard(f);
    ck_assert_int_eq(su_check_count_files(dir), 0);
    ck_assert_int_ne(su_store_write(f, "x", 1, &err), SU_OK);
}
END_TEST

START_TEST(test_exclusive)
{
    const char *id = "ffeeddccbbaa99887766554433221100", *err = NULL;
    su_store_file_t *a, *b;

    ck_assert_int_eq(su_store_create(pool, dir, id, &a, &err), SU_OK);
    /* a second writer of the same id must not take over (or delete) the first */
    ck_assert_int_ne(su_store_create(pool, dir, id, &b, &err), SU_OK);
    ck_assert_ptr_nonnull(err);
    ck_assert_int_eq(su_check_count_files(dir), 1);
    ck_assert_int_eq(su_store_create(pool, dir, "not-an-id", &b, &err), SU_ERR_INTERNAL);
}
END_TEST

START_TEST(test_unwritable_dir)
{
    const char *err = NULL;
    su_store_file_t *f;

    ck_assert_int_eq(su_store_create(pool, "/nonexistent/secupload", 
                                     "abcdef0123456789abcdef0123456789", &f, &err),
                     SU_ERR_INTERNAL);
    ck_assert_ptr_nonnull(strstr(err, "/nonexistent/secupload"));
}
END_TEST

/* A marker keeps the failed request's fields for whoever settles it. */
START_TEST(test_unsettled_note)
{
    const char *id = "0123456789abcdef0123456789abcdef";
    apr_int64_t seen = 0;
    apr_array_header_t *ids;
    apr_table_t *in = apr_table_make(pool, 2), *out;
    char *big = apr_palloc(pool, SU_STORE_NOTE_MAX + 2);

    apr_table_set(in, "user", "ana\n\"x\"");
    apr_table_set(in, "request_id", "r-1");
    ck_assert_ptr_null(su_store_unsettled_note(pool, dir, id));
    ck_assert_int_eq(su_store_mark_unsettled(pool, dir, id,
                                             su_json_table(pool, in, NULL, NULL)), SU_OK);
    ids = su_store_unsettled(pool, dir, &seen);
    ck_assert_ptr_nonnull(ids);
    ck_assert_int_eq(ids->nelts, 1);
    out = su_json_parse_table(pool, su_store_unsettled_note(pool, dir, id));
    ck_assert_ptr_nonnull(out);
    ck_assert_str_eq(apr_table_get(out, "user"), "ana\n\"x\"");
    ck_assert_str_eq(apr_table_get(out, "request_id"), "r-1");
    /* a note over the bound is refused; a hostile id is never a path */
    memset(big, 'a', SU_STORE_NOTE_MAX + 1);
    big[SU_STORE_NOTE_MAX + 1] = '\0';
    ck_assert_int_ne(su_store_mark_unsettled(pool, dir, id, big), SU_OK);
    ck_assert_int_ne(su_store_mark_unsettled(pool, dir, "../x", ""), SU_OK);
    ck_assert_ptr_null(su_store_unsettled_note(pool, dir, "../../etc/passwd"));
    ck_assert_ptr_null(su_json_parse_table(pool, "[1]"));
    ck_assert_ptr_null(su_json_parse_table(pool, "{\"a\":"));
    su_store_clear_unsettled(pool, dir, id);
    ck_assert_ptr_null(su_store_unsettled_note(pool, dir, id));
}
END_TEST

static void touch(const char *path)
{
    FILE *fp = fopen(path, "w");
    ck_assert_ptr_nonnull(fp);
    fputs("x", fp);
    fclose(fp);
}

static int exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

START_TEST(test_sweep_temps)
{
    const char *id = "ab0123456789abcdef0123456789abcd", *err = NULL;
    const char *p = apr_pstrcat(pool, dir, "/ab", NULL);
    su_store_file_t *f, *g;
    int removed = -1;

    /* a temp file of the store (as a killed child leaves it) and a kept one */
    ck_assert_int_eq(su_store_create(pool, dir, id, &f, &err), SU_OK);
    ck_assert_int_eq(su_store_create(pool, dir, "cd0123456789abcdef0123456789abcd",
                                     &g, &err), SU_OK);
    ck_assert_int_eq(su_store_write(g, "data", 4, &err), SU_OK);
    ck_assert_int_eq(su_store_commit(g, 0, &err), SU_OK);
    /* not the store's: left alone */
    touch(apr_pstrcat(pool, p, "/notes.txt", NULL));
    touch(apr_pstrcat(pool, dir, "/" SU_STORE_TMP_PREFIX "top", NULL));
    ck_assert_int_eq(mkdir(apr_pstrcat(pool, dir, "/zz", NULL), 0700), 0);
    touch(apr_pstrcat(pool, dir, "/zz/" SU_STORE_TMP_PREFIX "x", NULL));
    ck_assert_int_eq(symlink(apr_pstrcat(pool, dir, "/zz/" SU_STORE_TMP_PREFIX "x",
                                         NULL),
                             apr_pstrcat(pool, p, "/" SU_STORE_TMP_PREFIX "link",
                                         NULL)), 0);

    ck_assert_int_eq(su_store_sweep_temps(pool, dir, &removed, &err), SU_OK);
    ck_assert_int_eq(removed, 1);
    ck_assert_ptr_null(err);
    ck_assert(!exists(apr_pstrcat(pool, p, "/" SU_STORE_TMP_PREFIX, id, NULL)));
    ck_assert(exists(su_store_path(pool, dir, "cd0123456789abcdef0123456789abcd")));
    ck_assert(exists(apr_pstrcat(pool, p, "/notes.txt", NULL)));
    ck_assert(exists(apr_pstrcat(pool, dir, "/" SU_STORE_TMP_PREFIX "top", NULL)));
    ck_assert(exists(apr_pstrcat(pool, dir, "/zz/" SU_STORE_TMP_PREFIX "x", NULL)));
    ck_assert(exists(apr_pstrcat(pool, p, "/" SU_STORE_TMP_PREFIX "link", NULL)));
    su_store_discard(f);   /* its file is gone already: nothing to do */

    ck_assert_int_eq(su_store_sweep_temps(pool, dir, &removed, &err), SU_OK);
    ck_assert_int_eq(removed, 0);
    ck_assert_int_eq(su_store_sweep_temps(pool, "/nonexistent/secupload", &removed,
                                          &err), SU_ERR_INTERNAL);
    ck_assert_ptr_nonnull(strstr(err, "/nonexistent/secupload"));
}
END_TEST

START_TEST(test_is_temp)
{
    ck_assert(su_store_is_temp(SU_STORE_TMP_PREFIX "0123"));
    ck_assert(!su_store_is_temp("0123.enc"));
    ck_assert(!su_store_is_temp(".tmp"));
}
END_TEST

/* What a name in DIR/xx is, as fsck sees it. */
START_TEST(test_name)
{
    const char *id = "ab23456789abcdef0123456789abcdef";
    char got[SU_ID_HEX_LEN + 1];

    ck_assert_int_eq(su_store_name("ab", apr_pstrcat(pool, id, ".enc", NULL), got),
                     SU_STORE_NAME_FILE);
    ck_assert_str_eq(got, id);
    ck_assert_int_eq(su_store_name("ab", SU_STORE_TMP_PREFIX "x", got),
                     SU_STORE_NAME_TEMP);
    ck_assert_str_eq(got, "");
    ck_assert_int_eq(su_store_name("ab", apr_pstrcat(pool, id, ".enc"
                                   SU_STORE_REWRAP_SUFFIX, NULL), got),
                     SU_STORE_NAME_TEMP);
    ck_assert_str_eq(got, "");
    /* in another subdirectory than its id's, a rewrap copy of nothing, an
     * id in capitals, other endings: none of the store's */
    ck_assert_int_eq(su_store_name("cd", apr_pstrcat(pool, id, ".enc", NULL), got),
                     SU_STORE_NAME_OTHER);
    ck_assert_int_eq(su_store_name("cd", apr_pstrcat(pool, id, ".enc"
                                   SU_STORE_REWRAP_SUFFIX, NULL), got),
                     SU_STORE_NAME_OTHER);
    ck_assert_int_eq(su_store_name("ab", ".enc" SU_STORE_REWRAP_SUFFIX, got),
                     SU_STORE_NAME_OTHER);
    ck_assert_int_eq(su_store_name("AB", "AB23456789ABCDEF0123456789ABCDEF.enc", got),
                     SU_STORE_NAME_OTHER);
    ck_assert_int_eq(su_store_name("ab", apr_pstrcat(pool, id, ".enc.bak", NULL), got),
                     SU_STORE_NAME_OTHER);
    ck_assert_int_eq(su_store_name("ab", id, got), SU_STORE_NAME_OTHER);
    ck_assert_str_eq(got, "");
    ck_assert(su_store_is_subdir("0f"));
    ck_assert(!su_store_is_subdir("0F"));
    ck_assert(!su_store_is_subdir("0"));
    ck_assert(!su_store_is_subdir("0f0"));
    ck_assert(!su_store_is_subdir(SU_STORE_UNSETTLED));
}
END_TEST

/* Uploads and rewraps map a full disk and a full quota alike. */
START_TEST(test_errno_kind)
{
    ck_assert_int_eq(su_store_errno_kind(ENOSPC), SU_ERR_NO_SPACE);
    ck_assert_int_eq(su_store_errno_kind(EDQUOT), SU_ERR_NO_SPACE);
    ck_assert_int_eq(su_store_errno_kind(EIO), SU_ERR_INTERNAL);
    ck_assert_int_eq(su_store_errno_kind(EACCES), SU_ERR_INTERNAL);
}
END_TEST

static const char *slurp(const char *path)
{
    static char buf[256];
    FILE *fp = fopen(path, "rb");
    size_t n;

    ck_assert_ptr_nonnull(fp);
    n = fread(buf, 1, sizeof buf - 1, fp);
    buf[n] = '\0';
    fclose(fp);
    return buf;
}

/* A replacement is invisible until its commit, owned like the original,
 * and leaves nothing but the original when dropped; a copy a crashed run
 * left is removed first. */
START_TEST(test_replace)
{
    const char *path = apr_pstrcat(pool, dir, "/f.enc", NULL), *err = NULL;
    const char *tmp = apr_pstrcat(pool, path, SU_STORE_REWRAP_SUFFIX, NULL);
    su_store_file_t *f;
    struct stat st;
    FILE *fp;

    fp = fopen(path, "wb");
    ck_assert_ptr_nonnull(fp);
    fputs("old", fp);
    fclose(fp);
    fp = fopen(tmp, "wb");      /* a crashed run's copy */
    ck_assert_ptr_nonnull(fp);
    fputs("stale", fp);
    fclose(fp);

    ck_assert_int_eq(su_store_replace(pool, path, geteuid(), getegid(), &f, &err),
                     SU_OK);
    ck_assert_int_eq(su_store_write(f, "new!", 4, &err), SU_OK);
    ck_assert_int_eq(su_store_flush(f, 1, &err), SU_OK);
    ck_assert_str_eq(slurp(path), "old");
    ck_assert_int_eq(stat(tmp, &st), 0);
    ck_assert_int_eq(st.st_mode & 0777, 0600);
    su_store_discard(f);
    ck_assert_str_eq(slurp(path), "old");
    ck_assert_int_ne(stat(tmp, &st), 0);
    ck_assert_int_eq(su_check_count_files(dir), 1);

    ck_assert_int_eq(su_store_replace(pool, path, 1234, 5678, &f, &err), SU_OK);
    ck_assert_int_eq(stat(tmp, &st), 0);
    if (geteuid() == 0) {
        ck_assert_int_eq(st.st_uid, 1234);
        ck_assert_int_eq(st.st_gid, 5678);
    }
    ck_assert_int_eq(su_store_write(f, "new!", 4, &err), SU_OK);
    ck_assert_int_eq(su_store_flush(f, 1, &err), SU_OK);
    ck_assert_int_eq(su_store_commit(f, 1, &err), SU_OK);
    ck_assert_str_eq(slurp(path), "new!");
    ck_assert_int_ne(stat(tmp, &st), 0);
    apr_pool_clear(pool);
    ck_assert_int_eq(su_check_count_files(dir), 1);
}
END_TEST

static Suite *store_suite(void)
{
    Suite *s = suite_create("su_store");
    TCase *tc = tcase_create("store");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_valid_id);
    tcase_add_test(tc, test_url_id);
    tcase_add_test(tc, test_commit);
    tcase_add_test(tc, test_writeback);
    tcase_add_test(tc, test_cleanup_removes_temp);
    tcase_add_test(tc, test_exclusive);
    tcase_add_test(tc, test_unwritable_dir);
    tcase_add_test(tc, test_unsettled_note);
    tcase_add_test(tc, test_sweep_temps);
    tcase_add_test(tc, test_is_temp);
    tcase_add_test(tc, test_name);
    tcase_add_test(tc, test_errno_kind);
    tcase_add_test(tc, test_replace);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return su_check_run(store_suite);
}
