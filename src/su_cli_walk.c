/* The storage directory as the tool sees it: every entry, classified. */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <apr_strings.h>

#include "su_store.h"

#include "su_cli.h"

/* ------------------------------------------------------------ storage walk */

typedef struct su_cli_walk {
    apr_pool_t *p;
    const char *dir;
    apr_array_header_t *entries;   /* su_cli_entry_t * */
    long seen;
} su_cli_walk_t;

static int su_cli_walk_add(su_cli_walk_t *w, su_store_name_t kind, const char *id,
                           const char *path, time_t mtime)
{
    su_cli_entry_t *e = apr_pcalloc(w->p, sizeof *e);

    if (++w->seen > SU_CLI_MAX_ENTRIES) {
        su_cli_err("%s: more than %ld entries; giving up", w->dir,
                   SU_CLI_MAX_ENTRIES);
        return SU_CLI_EXIT_ENV;
    }
    e->kind = kind;
    e->id = id;
    e->path = path;
    e->mtime = mtime;
    APR_ARRAY_PUSH(w->entries, su_cli_entry_t *) = e;
    return SU_CLI_EXIT_OK;
}

/* A directory entry that is not a regular file is never the store's. */
static su_store_name_t su_cli_classify(apr_pool_t *p, const char *sub,
                                       const char *name, const struct stat *st,
                                       const char **id)
{
    char buf[SU_ID_HEX_LEN + 1];
    su_store_name_t kind;

    *id = NULL;
    if (!S_ISREG(st->st_mode))
        return SU_STORE_NAME_OTHER;
    kind = su_store_name(sub, name, buf);
    if (kind == SU_STORE_NAME_FILE || kind == SU_STORE_NAME_TUS)
        *id = apr_pstrdup(p, buf);
    return kind;
}

static int su_cli_walk_subdir(su_cli_walk_t *w, const char *sub)
{
    const char *subpath = apr_pstrcat(w->p, w->dir, "/", sub, NULL);
    DIR *d = opendir(subpath);
    struct dirent *de;
    int rc = SU_CLI_EXIT_OK;

    if (d == NULL) {
        su_cli_err("cannot read %s: %s", subpath, strerror(errno));
        return SU_CLI_EXIT_ENV;
    }
    while (rc == SU_CLI_EXIT_OK && (errno = 0, de = readdir(d)) != NULL) {
        struct stat st;
        const char *id;
        su_store_name_t kind;
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0)
            continue;   /* gone meanwhile */
        kind = su_cli_classify(w->p, sub, de->d_name, &st, &id);
        rc = su_cli_walk_add(w, kind, id,
                             apr_pstrcat(w->p, subpath, "/", de->d_name, NULL),
                             st.st_mtime);
    }
    if (rc == SU_CLI_EXIT_OK && errno != 0) {
        su_cli_err("cannot read %s: %s", subpath, strerror(errno));
        rc = SU_CLI_EXIT_ENV;
    }
    closedir(d);
    return rc;
}

static int su_cli_walk_top_entry(su_cli_walk_t *w, int dfd, const char *name)
{
    struct stat st;

    if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0)
        return SU_CLI_EXIT_OK;
    if (S_ISDIR(st.st_mode) && su_store_is_subdir(name))
        return su_cli_walk_subdir(w, name);
    /* the module's markers of metadata to remove: their hashes show as
     * "missing" until the module (or an operator) removes them */
    if (S_ISDIR(st.st_mode) && strcmp(name, SU_STORE_UNSETTLED) == 0)
        return SU_CLI_EXIT_OK;
    return su_cli_walk_add(w, SU_STORE_NAME_OTHER, NULL,
                           apr_pstrcat(w->p, w->dir, "/", name, NULL),
                           st.st_mtime);
}

static int su_cli_entry_cmp(const void *a, const void *b)
{
    const su_cli_entry_t *x = *(const su_cli_entry_t *const *)a;
    const su_cli_entry_t *y = *(const su_cli_entry_t *const *)b;

    return strcmp(x->path, y->path);
}

/* Everything under DIR, classified, in path order. */
int su_cli_walk(apr_pool_t *p, const char *dir, apr_array_header_t **out)
{
    su_cli_walk_t w = {p, dir, apr_array_make(p, 64, sizeof(su_cli_entry_t *)), 0};
    DIR *d = opendir(dir);
    struct dirent *de;
    int rc = SU_CLI_EXIT_OK;

    if (d == NULL) {
        su_cli_err("cannot read the storage directory %s: %s", dir,
                   strerror(errno));
        return SU_CLI_EXIT_ENV;
    }
    while (rc == SU_CLI_EXIT_OK && (errno = 0, de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
            rc = su_cli_walk_top_entry(&w, dirfd(d), de->d_name);
    }
    if (rc == SU_CLI_EXIT_OK && errno != 0) {
        su_cli_err("cannot read the storage directory %s: %s", dir,
                   strerror(errno));
        rc = SU_CLI_EXIT_ENV;
    }
    closedir(d);
    if (rc == SU_CLI_EXIT_OK)
        qsort(w.entries->elts, (size_t)w.entries->nelts, sizeof(su_cli_entry_t *),
              su_cli_entry_cmp);
    *out = w.entries;
    return rc;
}
