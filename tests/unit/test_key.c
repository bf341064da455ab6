/* Unit tests for key files (su_key.c). */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <apr_general.h>
#include <apr_strings.h>

#include "su_check.h"
#include "su_key.h"

#define KEY_HEX "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
/* printf KEY_HEX | xxd -r -p | sha256sum, first 8 bytes */
#define KEY_ID_HEX "630dcd2966c43366"

static apr_pool_t *pool;
static char tmpdir[64];

static void setup(void)
{
    ck_assert_int_eq(apr_pool_create(&pool, NULL), APR_SUCCESS);
    strcpy(tmpdir, "/tmp/su_key_test.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void teardown(void)
{
    char cmd[128];

    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    ck_assert_int_eq(system(cmd), 0);
    apr_pool_destroy(pool);
}

static const char *write_key(const char *name, const void *data, size_t len,
                             mode_t mode)
{
    const char *path = apr_pstrcat(pool, tmpdir, "/", name, NULL);
    FILE *fp = fopen(path, "wb");

    ck_assert_ptr_nonnull(fp);
    ck_assert_uint_eq(fwrite(data, 1, len, fp), len);
    ck_assert_int_eq(fclose(fp), 0);
    ck_assert_int_eq(chmod(path, mode), 0);
    return path;
}

static void expect_ok(const char *content, size_t len)
{
    const char *path = write_key("k", content, len, 0400);
    const char *err = NULL;
    su_kek_t *kek = NULL;
    int i;

    ck_assert_int_eq(su_key_load(pool, path, &kek, &err), SU_OK);
    ck_assert_ptr_null(err);
    ck_assert_ptr_nonnull(kek);
    for (i = 0; i < SU_KEY_LEN; i++)
        ck_assert_uint_eq(kek->key[i], (unsigned)i);
    ck_assert_str_eq(kek->id_hex, KEY_ID_HEX);
    ck_assert_str_eq(kek->path, path);
    ck_assert_int_eq(unlink(path), 0);
}

static void expect_fail(const void *content, size_t len, mode_t mode,
                        const char *needle)
{
    const char *path = write_key("k", content, len, mode);
    const char *err = NULL;
    su_kek_t *kek = (su_kek_t *)1;

    ck_assert_int_eq(su_key_load(pool, path, &kek, &err), SU_ERR_INTERNAL);
    ck_assert_ptr_null(kek);
    ck_assert_ptr_nonnull(err);
    ck_assert_msg(strstr(err, path) != NULL, "no path in: %s", err);
    ck_assert_msg(strstr(err, needle) != NULL, "no '%s' in: %s", needle, err);
    /* never the key material */
    ck_assert_msg(strstr(err, "0102030405") == NULL, "key in: %s", err);
    ck_assert_int_eq(unlink(path), 0);
}

START_TEST(load_plain)
{
    expect_ok(KEY_HEX, 64);
}
END_TEST

START_TEST(load_newline)
{
    expect_ok(KEY_HEX "\n", 65);
    expect_ok(KEY_HEX "\r\n", 66);
}
END_TEST

START_TEST(load_uppercase)
{
    char up[65];
    int i;

    for (i = 0; i < 64; i++)
        up[i] = (char)(KEY_HEX[i] >= 'a' ? KEY_HEX[i] - 32 : KEY_HEX[i]);
    up[64] = '\n';
    expect_ok(up, 65);
}
END_TEST

START_TEST(load_owner_modes_ok)
{
    const char *path = write_key("k", KEY_HEX, 64, 0600);
    su_kek_t *kek = NULL;

    ck_assert_int_eq(su_key_load(pool, path, &kek, NULL), SU_OK);
    ck_assert_str_eq(kek->id_hex, KEY_ID_HEX);
}
END_TEST

START_TEST(reject_missing)
{
    const char *path = apr_pstrcat(pool, tmpdir, "/nope", NULL);
    const char *err = NULL;
    su_kek_t *kek = NULL;

    ck_assert_int_eq(su_key_load(pool, path, &kek, &err), SU_ERR_INTERNAL);
    ck_assert_ptr_null(kek);
    ck_assert_ptr_nonnull(err);
    ck_assert_ptr_nonnull(strstr(err, path));
    ck_assert_ptr_nonnull(strstr(err, strerror(ENOENT)));
}
END_TEST

START_TEST(reject_modes)
{
    expect_fail(KEY_HEX, 64, 0644, "mode 0644");
    expect_fail(KEY_HEX, 64, 0440, "accessible by group or others");
    expect_fail(KEY_HEX, 64, 0604, "mode 0604");
    expect_fail(KEY_HEX, 64, 0401, "chmod 0400");
    expect_fail(KEY_HEX, 64, 0410, "mode 0410");
}
END_TEST

START_TEST(reject_lengths)
{
    expect_fail(KEY_HEX, 63, 0400, "64 hex digits");
    expect_fail(KEY_HEX "a", 65, 0400, "64 hex digits");
    expect_fail(KEY_HEX "0\n", 66, 0400, "64 hex digits");
    expect_fail("", 0, 0400, "64 hex digits");
    expect_fail("\n", 1, 0400, "64 hex digits");
}
END_TEST

START_TEST(reject_non_hex)
{
    char bad[65];

    memcpy(bad, KEY_HEX, 65);
    bad[10] = 'g';
    expect_fail(bad, 64, 0400, "non-hex");
    memcpy(bad, KEY_HEX, 65);
    bad[0] = ' ';
    expect_fail(bad, 64, 0400, "non-hex");
    memcpy(bad, KEY_HEX, 65);
    bad[63] = '\0';
    expect_fail(bad, 64, 0400, "non-hex");
}
END_TEST

START_TEST(reject_trailing_garbage)
{
    expect_fail(KEY_HEX "\n\n", 66, 0400, "64 hex digits");
    expect_fail(KEY_HEX "\r", 65, 0400, "64 hex digits");
    expect_fail(KEY_HEX " ", 65, 0400, "64 hex digits");
    expect_fail(KEY_HEX "\nx", 66, 0400, "64 hex digits");
    expect_fail(KEY_HEX "\n" KEY_HEX "\n", 130, 0400, "64 hex digits");
}
END_TEST

START_TEST(reject_long_file)
{
    char big[4096];

    memset(big, 'a', sizeof big);
    expect_fail(big, sizeof big, 0400, "64 hex digits");
}
END_TEST

START_TEST(reject_non_regular)
{
    const char *dir = apr_pstrcat(pool, tmpdir, "/d", NULL);
    const char *link = apr_pstrcat(pool, tmpdir, "/link", NULL);
    const char *target = write_key("target", KEY_HEX, 64, 0400);
    const char *err = NULL;
    su_kek_t *kek = NULL;

    ck_assert_int_eq(mkdir(dir, 0700), 0);
    ck_assert_int_eq(su_key_load(pool, dir, &kek, &err), SU_ERR_INTERNAL);
    ck_assert_ptr_nonnull(strstr(err, "not a regular file"));
    ck_assert_int_eq(symlink(target, link), 0);
    ck_assert_int_eq(su_key_load(pool, link, &kek, &err), SU_ERR_INTERNAL);
    ck_assert_ptr_nonnull(strstr(err, "symbolic link"));
    ck_assert_ptr_null(kek);
}
END_TEST

START_TEST(compute_id_known)
{
    su_kek_t kek;
    /* printf '11..11' | xxd -r -p | sha256sum */
    static const unsigned char expect[8] = {
        0x02, 0xd4, 0x49, 0xa3, 0x1f, 0xbb, 0x26, 0x7c
    };

    memset(&kek, 0, sizeof kek);
    memset(kek.key, 0x11, sizeof kek.key);
    su_key_compute_id(&kek);
    ck_assert_mem_eq(kek.id, expect, 8);
    ck_assert_str_eq(kek.id_hex, "02d449a31fbb267c");
}
END_TEST

START_TEST(generate_file)
{
    const char *path = apr_pstrcat(pool, tmpdir, "/gen.key", NULL);
    const char *err = NULL;
    char text[80];
    struct stat st;
    su_kek_t *a = NULL, *b = NULL;
    FILE *fp;
    size_t n;
    int i;

    ck_assert_int_eq(su_key_generate_file(pool, path, &err), SU_OK);
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert_uint_eq(st.st_mode & 07777, 0400);
    fp = fopen(path, "r");
    ck_assert_ptr_nonnull(fp);
    n = fread(text, 1, sizeof text, fp);
    fclose(fp);
    ck_assert_uint_eq(n, 65);
    ck_assert_int_eq(text[64], '\n');
    for (i = 0; i < 64; i++)
        ck_assert_ptr_nonnull(strchr("0123456789abcdef", text[i]));
    ck_assert_int_eq(su_key_load(pool, path, &a, &err), SU_OK);

    /* never overwrites */
    ck_assert_int_eq(su_key_generate_file(pool, path, &err), SU_ERR_INTERNAL);
    ck_assert_ptr_nonnull(strstr(err, "already exists"));
    ck_assert_int_eq(su_key_load(pool, path, &b, &err), SU_OK);
    ck_assert_mem_eq(a->key, b->key, SU_KEY_LEN);

    /* two keys differ */
    ck_assert_int_eq(unlink(path), 0);
    ck_assert_int_eq(su_key_generate_file(pool, path, &err), SU_OK);
    ck_assert_int_eq(su_key_load(pool, path, &b, &err), SU_OK);
    ck_assert_int_ne(memcmp(a->key, b->key, SU_KEY_LEN), 0);
}
END_TEST

START_TEST(key_wiped_with_pool)
{
    const char *path = write_key("k", KEY_HEX, 64, 0400);
    apr_pool_t *sub;
    su_kek_t *kek = NULL;

    ck_assert_int_eq(apr_pool_create(&sub, pool), APR_SUCCESS);
    ck_assert_int_eq(su_key_load(sub, path, &kek, NULL), SU_OK);
    ck_assert_uint_eq(kek->key[31], 31);
    /* page-aligned own mapping (locked and left out of core dumps) */
    ck_assert_uint_eq((uintptr_t)kek % (uintptr_t)sysconf(_SC_PAGESIZE), 0);
    apr_pool_destroy(sub);
}
END_TEST

static Suite *key_suite(void)
{
    Suite *s = suite_create("su_key");
    TCase *tc = tcase_create("core");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, load_plain);
    tcase_add_test(tc, load_newline);
    tcase_add_test(tc, load_uppercase);
    tcase_add_test(tc, load_owner_modes_ok);
    tcase_add_test(tc, reject_missing);
    tcase_add_test(tc, reject_modes);
    tcase_add_test(tc, reject_lengths);
    tcase_add_test(tc, reject_non_hex);
    tcase_add_test(tc, reject_trailing_garbage);
    tcase_add_test(tc, reject_long_file);
    tcase_add_test(tc, reject_non_regular);
    tcase_add_test(tc, compute_id_known);
    tcase_add_test(tc, generate_file);
    tcase_add_test(tc, key_wiped_with_pool);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return su_check_run(key_suite);
}
