/* What every unit test program shares: one Check suite, run under APR. */
#ifndef SU_CHECK_H
#define SU_CHECK_H

#include <check.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <apr_general.h>

#include "su_key.h"

/* A test KEK from a seed (never a real key): bytes seed + 7i, its id set. */
static inline void su_check_make_kek(su_kek_t *k, unsigned char seed)
{
    int i;

    memset(k, 0, sizeof *k);
    for (i = 0; i < SU_KEY_LEN; i++)
        k->key[i] = (unsigned char)(seed + 7 * i);
    su_key_compute_id(k);
    k->path = "test";
}

/* Start APR, run the suite make() builds, stop APR: main's exit status. */
static inline int su_check_run(Suite *(*make)(void))
{
    SRunner *sr;
    int failed;

    apr_initialize();
    sr = srunner_create(make());
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    apr_terminate();
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

/* Regular files (and anything else but directories) anywhere below d. */
static inline int su_check_count_files(const char *d)
{
    DIR *dh = opendir(d);
    struct dirent *e;
    int n = 0;

    if (dh == NULL)
        return 0;
    while ((e = readdir(dh)) != NULL) {
        char path[512];
        struct stat st;
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        if (snprintf(path, sizeof path, "%s/%s", d, e->d_name) >= (int)sizeof path)
            continue;   /* no test makes paths that long */
        if (lstat(path, &st) == 0)
            n += S_ISDIR(st.st_mode) ? su_check_count_files(path) : 1;
    }
    closedir(dh);
    return n;
}

/* Remove a test's private directory tree. */
static inline void su_check_rm_rf(const char *d)
{
    char cmd[600];
    ck_assert_int_lt(snprintf(cmd, sizeof cmd, "rm -rf '%s'", d), (int)sizeof cmd);
    ck_assert_int_eq(system(cmd), 0);
}

#endif
