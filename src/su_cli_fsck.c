/* secupload fsck: the storage directory compared with Redis. */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <apr_hash.h>
#include <apr_strings.h>

#include "su_defaults.h"
#include "su_hasher.h"
#include "su_redis.h"
#include "su_store.h"
#include "su_tus.h"
#include "su_tus_state.h"
#include "su_util.h"

#include "su_cli.h"

/* ------------------------------------------------------------ fsck */

static const char su_cli_fsck_help[] =
    "Usage: secupload fsck --storage DIR [--redis HOST:PORT|/path.sock]\n"
    "                      [--sentinel MASTER@HOST:PORT[,HOST:PORT...]]\n"
    "                      [--prefix P] [--user U] [--password-file F] [--db N]\n"
    "                      [--timeout MS] [--key KEYFILE...] [--repair]\n"
    "                      [--backfill-iv]\n"
    "Compare the storage directory with the metadata in Redis. One line per\n"
    "finding, \"<kind> <id or path>\":\n"
    "  orphan <id>              a stored file without metadata\n"
    "  missing <id>             metadata without a stored file\n"
    "  corrupt <id>             a file failing verification (with --key)\n"
    "  mismatch <id>            not the file uploaded under this id (its IV\n"
    "                           is not the one recorded): the server refuses it\n"
    "  no-iv <id>               metadata from before IVs were recorded\n"
    "  iv-recorded <id>         its IV just recorded by --backfill-iv\n"
    "  stale-temp <path>        a temporary file older than one hour\n"
    "  unexpected <path>        anything else under DIR\n"
    "  unsettled <id>           an upload whose metadata write had an unknown\n"
    "                           outcome, not yet settled by the server\n"
    "  in-progress-temp <path>  a recent temporary file (not a problem)\n"
    "  tus-upload <id>          an unfinished resumable upload (not a problem)\n"
    "  tus-expired <id>         a resumable upload past its expiry, or whose\n"
    "                           state in Redis is gone (older than one hour)\n"
    "  removed <path>           a stale temporary file or expired resumable\n"
    "                           upload removed by --repair (file and state)\n"
    "then a summary line starting with \"summary:\".\n"
    "  -s, --storage DIR        the storage directory\n"
    "  -r, --redis ADDR         Redis address (default " SU_DEFAULT_REDIS_HOST ":"
                                SU_STR(SU_DEFAULT_REDIS_PORT) ")\n"
    "      --sentinel M@ADDRS   ask these sentinels (HOST:PORT, comma-separated)\n"
    "                           where master M is, instead of --redis\n"
    "  -p, --prefix P           key prefix (default " SU_DEFAULT_REDIS_PREFIX ")\n"
    "      --user U             Redis ACL user (AUTH U password; needs\n"
    "                           --password-file)\n"
    "      --password-file F    read the Redis password from F\n"
    "      --db N               Redis database (default "
                                SU_STR(SU_DEFAULT_REDIS_DB) ")\n"
    "      --timeout MS         Redis connect/command timeout (default "
                                SU_STR(SU_DEFAULT_REDIS_TIMEOUT_MS) ")\n"
    "  -k, --key KEYFILE        verify every stored file with these keys\n"
    "      --repair             remove stale temporary files and expired\n"
    "                           resumable uploads (nothing else)\n"
    "      --backfill-iv        record the IV of no-iv files whose plaintext\n"
    "                           matches their metadata (needs --key)\n"
    "Exit status 0: no problem left; 1: problems found.\n";

typedef struct su_cli_fsck {
    const char *dir;
    su_redis_conf_t rconf;
    const char *password_file;
    su_cli_keys_t keys;
    int repair;
    int backfill;
    su_redis_t *redis;
    apr_hash_t *meta;          /* id -> id, valid ids with metadata */
    apr_array_header_t *meta_ids;
    unsigned long files, orphan, missing, corrupt, stale, unexpected,
                  inprogress, removed, verified, mismatch, noiv, recorded,
                  unsettled, tus, tus_expired;
} su_cli_fsck_t;

/* The whole buffer: fread may have put bytes past the first line's end, and
 * a NUL in the file would cut strlen short. */
static apr_status_t su_cli_password_cleanup(void *data)
{
    su_util_wipe(data, SU_CLI_PASSWORD_MAX + 1);
    return APR_SUCCESS;
}

/* The Redis password: the file's first line, kept only in wiped memory. */
static int su_cli_read_password(apr_pool_t *p, const char *path, const char **out)
{
    char *buf = apr_pcalloc(p, SU_CLI_PASSWORD_MAX + 1);
    size_t n = 0;
    FILE *f = fopen(path, "re");

    apr_pool_cleanup_register(p, buf, su_cli_password_cleanup,
                              apr_pool_cleanup_null);
    if (f == NULL) {
        su_cli_err("password file %s: %s", path, strerror(errno));
        return SU_CLI_EXIT_ENV;
    }
    n = fread(buf, 1, SU_CLI_PASSWORD_MAX, f);
    fclose(f);
    buf[strcspn(buf, "\r\n")] = '\0';
    if (n == SU_CLI_PASSWORD_MAX || buf[0] == '\0') {
        su_cli_err("password file %s: expected one line of at most %d bytes",
                   path, SU_CLI_PASSWORD_MAX - 1);
        return SU_CLI_EXIT_ENV;
    }
    *out = buf;
    return SU_CLI_EXIT_OK;
}

/* One finding: its report line, and its count for the summary. */
static void su_cli_fsck_found(unsigned long *count, const char *kind,
                              const char *what)
{
    printf("%s %s\n", kind, what);
    (*count)++;
}

static void su_cli_fsck_add_meta(apr_pool_t *p, su_cli_fsck_t *fk, const char *id)
{
    if (su_store_valid_id(id)) {
        apr_hash_set(fk->meta, id, APR_HASH_KEY_STRING, id);
        APR_ARRAY_PUSH(fk->meta_ids, const char *) = id;
        return;
    }
    su_cli_fsck_found(&fk->unexpected, "unexpected",
                      apr_pstrcat(p, "redis:", su_cli_printable(p, fk->rconf.prefix),
                                  "file:", su_cli_printable(p, id), NULL));
}

static int su_cli_str_cmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int su_cli_fsck_redis(apr_pool_t *p, su_cli_fsck_t *fk)
{
    apr_array_header_t *ids = NULL;
    const char *err = NULL;
    int i;

    if (su_redis_connect(p, &fk->rconf, &fk->redis, &err) != SU_OK) {
        su_cli_err("%s", err ? err : "redis: cannot connect");
        return SU_CLI_EXIT_ENV;
    }
    if (su_redis_list_ids(fk->redis, p, &ids) != SU_OK) {
        su_cli_err("redis: cannot list metadata: %s", su_redis_errstr(fk->redis));
        return SU_CLI_EXIT_ENV;
    }
    fk->meta = apr_hash_make(p);
    fk->meta_ids = apr_array_make(p, ids->nelts + 1, sizeof(const char *));
    qsort(ids->elts, (size_t)ids->nelts, sizeof(const char *), su_cli_str_cmp);
    for (i = 0; i < ids->nelts; i++)
        su_cli_fsck_add_meta(p, fk, APR_ARRAY_IDX(ids, i, const char *));
    return SU_CLI_EXIT_OK;
}

/*
 * A stored file's metadata, read afresh: *meta is NULL once it is gone.
 * *has also counts metadata in the listing that went meanwhile (a delete
 * during the run), and metadata that came after the listing (an upload
 * between the listing and the walk must not look like an orphan).
 */
static int su_cli_fsck_meta(apr_pool_t *p, su_cli_fsck_t *fk, const char *id,
                            int *has, apr_table_t **meta)
{
    su_err_t rv = su_redis_get_meta(fk->redis, p, id, meta);

    if (rv == SU_OK || rv == SU_ERR_NOT_FOUND) {
        *has = rv == SU_OK
               || apr_hash_get(fk->meta, id, APR_HASH_KEY_STRING) != NULL;
        return SU_CLI_EXIT_OK;
    }
    su_cli_err("redis: %s", su_redis_errstr(fk->redis));
    return SU_CLI_EXIT_ENV;
}

/*
 * Does the verified file hold the plaintext recorded at upload (size and
 * SHA-256)? Decrypts it all; the plaintext only passes through the reader's
 * buffer and the hasher, both wiped.
 */
static su_err_t su_cli_plain_matches(apr_pool_t *p, su_fmt_reader_t *rd,
                                     uint64_t size, apr_table_t *meta, int *same)
{
    const char *want = apr_table_get(meta, "sha256");
    const char *want_size = apr_table_get(meta, "size");
    unsigned char sha[32];
    const unsigned char *data;
    su_hasher_t *h = NULL;
    size_t len = 0;
    su_err_t rv;

    *same = 0;
    if (want == NULL || want_size == NULL
        || strcmp(apr_psprintf(p, "%" APR_UINT64_T_FMT, (apr_uint64_t)size),
                  want_size) != 0)
        return SU_OK;
    rv = su_hasher_create(p, &h);
    do {
        if (rv == SU_OK)
            rv = su_fmt_reader_next(rd, &data, &len);
        if (rv == SU_OK && len > 0)
            rv = su_hasher_update(h, data, len);
    } while (rv == SU_OK && len > 0);
    if (rv == SU_OK)
        rv = su_hasher_final(h, sha);
    if (rv == SU_OK)
        *same = strcmp(su_cli_hex(p, sha, sizeof sha), want) == 0;
    return rv;
}

/*
 * Record the IV of a file stored before IVs were recorded, but only once
 * it is shown to be the file uploaded under this id: a file swapped in
 * before this run has another plaintext, and is reported instead.
 */
static int su_cli_fsck_backfill(apr_pool_t *p, su_cli_fsck_t *fk, const char *id,
                                apr_table_t *meta, const char *iv,
                                su_fmt_reader_t *rd, uint64_t size)
{
    int same = 0, added = 0;
    su_err_t rv = su_cli_plain_matches(p, rd, size, meta, &same);

    if (rv != SU_OK) {
        /* changed after verification */
        su_cli_fsck_found(&fk->corrupt, "corrupt", id);
        return SU_CLI_EXIT_OK;
    }
    if (!same) {
        su_cli_fsck_found(&fk->mismatch, "mismatch", id);
        return SU_CLI_EXIT_OK;
    }
    rv = su_redis_meta_add(fk->redis, p, id, "iv", iv, &added);
    /* not found: deleted meanwhile, and not brought back */
    if (rv != SU_OK && rv != SU_ERR_NOT_FOUND) {
        su_cli_err("redis: %s", su_redis_errstr(fk->redis));
        return SU_CLI_EXIT_ENV;
    }
    if (added)
        su_cli_fsck_found(&fk->recorded, "iv-recorded", id);
    return SU_CLI_EXIT_OK;
}

/*
 * Is the file the one its metadata describes? The IV recorded at upload
 * against the file's (iv: verified with --key, from the header alone
 * without; NULL if it could not be read). rd: the verified file, or NULL.
 */
static int su_cli_fsck_bound(apr_pool_t *p, su_cli_fsck_t *fk, const char *id,
                             apr_table_t *meta, const char *iv,
                             su_fmt_reader_t *rd, uint64_t size)
{
    const char *want = meta ? apr_table_get(meta, "iv") : NULL;

    if (meta == NULL)
        return SU_CLI_EXIT_OK;
    if (want == NULL && fk->backfill && rd != NULL && iv != NULL)
        return su_cli_fsck_backfill(p, fk, id, meta, iv, rd, size);
    if (want == NULL)
        su_cli_fsck_found(&fk->noiv, "no-iv", id);
    else if (iv != NULL && strcmp(want, iv) != 0)
        su_cli_fsck_found(&fk->mismatch, "mismatch", id);
    return SU_CLI_EXIT_OK;
}

static su_err_t su_cli_fsck_segments(apr_pool_t *p, su_cli_fsck_t *fk,
                                     const char *path, uint64_t size)
{
    uint64_t again = 0;
    su_err_t rv = su_fmt_file_verify(p, path, fk->keys.k, fk->keys.n, &again);

    return rv == SU_OK && again != size ? SU_ERR_INTEGRITY : rv;
}

/* With --key: verified completely, then compared with its metadata. */
static int su_cli_fsck_verify(apr_pool_t *p, su_cli_fsck_t *fk,
                              const su_cli_entry_t *e, apr_table_t *meta)
{
    char iv[SU_FMT_IV_HEX_LEN + 1];
    su_fmt_reader_t *rd = NULL;
    uint64_t size = 0;
    su_err_t rv;
    int rc;

    rv = su_fmt_reader_open(p, e->path, fk->keys.k, fk->keys.n, &rd, &size);
    if (rv == SU_ERR_NOT_FOUND)
        return SU_CLI_EXIT_OK;   /* deleted meanwhile */
    fk->verified++;
    /* a v2 open checks the header and the last segment: every other one
     * too (under the id of the file's name, as the server reads it) */
    if (rv == SU_OK && su_fmt_reader_version(rd) == 2)
        rv = su_cli_fsck_segments(p, fk, e->path, size);
    if (rv != SU_OK) {
        if (rd != NULL)
            su_fmt_reader_close(rd);
        su_cli_fsck_found(&fk->corrupt, "corrupt", e->id);
        return SU_CLI_EXIT_OK;
    }
    su_fmt_reader_iv_hex(rd, iv);
    rc = su_cli_fsck_bound(p, fk, e->id, meta, iv, rd, size);
    su_fmt_reader_close(rd);
    return rc;
}

static int su_cli_fsck_stored(apr_pool_t *p, su_cli_fsck_t *fk,
                              const su_cli_entry_t *e)
{
    char iv[SU_FMT_IV_HEX_LEN + 1];
    const char *seen = NULL;
    apr_table_t *meta = NULL;
    int has, rc = su_cli_fsck_meta(p, fk, e->id, &has, &meta);

    if (rc != SU_CLI_EXIT_OK)
        return rc;
    fk->files++;
    if (!has)
        su_cli_fsck_found(&fk->orphan, "orphan", e->id);
    if (fk->keys.n > 0)
        return su_cli_fsck_verify(p, fk, e, meta);
    /* without keys, the header's IV as it is: a mismatch is still one */
    if (meta != NULL && su_fmt_file_iv_hex(p, e->path, iv) == SU_OK)
        seen = iv;
    return su_cli_fsck_bound(p, fk, e->id, meta, seen, NULL, 0);
}

static void su_cli_fsck_temp(apr_pool_t *p, su_cli_fsck_t *fk,
                             const su_cli_entry_t *e, time_t now)
{
    const char *shown = su_cli_printable(p, e->path);

    if (now - e->mtime <= SU_CLI_STALE_SECS) {
        su_cli_fsck_found(&fk->inprogress, "in-progress-temp", shown);
        return;
    }
    su_cli_fsck_found(&fk->stale, "stale-temp", shown);
    if (!fk->repair)
        return;
    if (unlink(e->path) == 0 || errno == ENOENT)
        su_cli_fsck_found(&fk->removed, "removed", shown);
    else
        su_cli_err("cannot remove %s: %s", shown, strerror(errno));
}

/*
 * A resumable upload's file: alive while its state in Redis is and has
 * not expired (the server's expiry removes it then; --repair does here
 * when the server cannot). A file without state is taken for one being
 * created for an hour.
 */
static int su_cli_fsck_tus(apr_pool_t *p, su_cli_fsck_t *fk,
                           const su_cli_entry_t *e, time_t now)
{
    const char *shown = su_cli_printable(p, e->path), *err = NULL;
    su_tus_state_t st;
    su_err_t rv = su_tus_state_get(fk->redis, p, e->id, &st);

    if (rv == SU_ERR_UNAVAILABLE) {
        su_cli_err("redis: %s", su_redis_errstr(fk->redis));
        return SU_CLI_EXIT_ENV;
    }
    if (rv == SU_OK ? st.expires_ms > (apr_int64_t)now * 1000
                    : now - e->mtime <= SU_CLI_STALE_SECS) {
        su_cli_fsck_found(&fk->tus, "tus-upload", e->id);
        return SU_CLI_EXIT_OK;
    }
    su_cli_fsck_found(&fk->tus_expired, "tus-expired", e->id);
    if (!fk->repair)
        return SU_CLI_EXIT_OK;
    if (su_tus_remove(p, fk->dir, e->id, 1, &err) != SU_OK) {
        su_cli_err("cannot remove %s: %s", shown, err);
        return SU_CLI_EXIT_OK;
    }
    su_tus_state_delete(fk->redis, p, e->id);
    su_cli_fsck_found(&fk->removed, "removed", shown);
    return SU_CLI_EXIT_OK;
}

static int su_cli_fsck_entries(apr_pool_t *p, su_cli_fsck_t *fk,
                               const apr_array_header_t *entries)
{
    time_t now = time(NULL);
    int i, rc = SU_CLI_EXIT_OK;
    apr_pool_t *sub;

    /* Per-file allocations are dropped as we go: stores can be large. */
    if (apr_pool_create(&sub, p) != APR_SUCCESS)
        return SU_CLI_EXIT_ENV;
    for (i = 0; rc == SU_CLI_EXIT_OK && i < entries->nelts; i++) {
        const su_cli_entry_t *e = APR_ARRAY_IDX(entries, i, su_cli_entry_t *);
        if (e->kind == SU_STORE_NAME_FILE) {
            rc = su_cli_fsck_stored(sub, fk, e);
        } else if (e->kind == SU_STORE_NAME_TEMP) {
            su_cli_fsck_temp(sub, fk, e, now);
        } else if (e->kind == SU_STORE_NAME_TUS) {
            rc = su_cli_fsck_tus(sub, fk, e, now);
        } else {
            su_cli_fsck_found(&fk->unexpected, "unexpected",
                              su_cli_printable(sub, e->path));
        }
        apr_pool_clear(sub);
    }
    apr_pool_destroy(sub);
    return rc;
}

/* Metadata whose file is absent; looked at again on disk for the same
 * reason as su_cli_fsck_has_meta. */
static void su_cli_fsck_missing(apr_pool_t *p, su_cli_fsck_t *fk,
                                const apr_array_header_t *entries)
{
    apr_hash_t *ondisk = apr_hash_make(p);
    struct stat st;
    int i;

    for (i = 0; i < entries->nelts; i++) {
        const su_cli_entry_t *e = APR_ARRAY_IDX(entries, i, su_cli_entry_t *);
        if (e->kind == SU_STORE_NAME_FILE)
            apr_hash_set(ondisk, e->id, APR_HASH_KEY_STRING, e);
    }
    for (i = 0; i < fk->meta_ids->nelts; i++) {
        const char *id = APR_ARRAY_IDX(fk->meta_ids, i, const char *);
        if (apr_hash_get(ondisk, id, APR_HASH_KEY_STRING) != NULL)
            continue;
        if (lstat(su_store_path(p, fk->dir, id), &st) == 0 && S_ISREG(st.st_mode))
            continue;
        su_cli_fsck_found(&fk->missing, "missing", id);
    }
}

static int su_cli_fsck_id_cmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/*
 * The server's markers of uploads not yet settled (docs/design.md,
 * "Settling"). Only listed: settling writes audit entries, which is the
 * server's business; it settles them within seconds once Redis answers.
 */
static void su_cli_fsck_unsettled(apr_pool_t *p, su_cli_fsck_t *fk)
{
    apr_int64_t seen = 0;
    apr_array_header_t *ids = su_store_unsettled(p, fk->dir, &seen);
    int i;

    if (ids == NULL)
        return;
    qsort(ids->elts, ids->nelts, sizeof(const char *), su_cli_fsck_id_cmp);
    for (i = 0; i < ids->nelts; i++)
        su_cli_fsck_found(&fk->unsettled, "unsettled",
                          APR_ARRAY_IDX(ids, i, const char *));
}

static int su_cli_fsck_summary(const su_cli_fsck_t *fk)
{
    unsigned long problems = fk->orphan + fk->missing + fk->corrupt
                             + fk->unexpected
                             + (fk->stale + fk->tus_expired - fk->removed)
                             + fk->mismatch + fk->noiv + fk->unsettled;

    printf("summary: files=%lu metadata=%d verified=%lu orphan=%lu missing=%lu "
           "corrupt=%lu stale-temp=%lu unexpected=%lu in-progress-temp=%lu "
           "removed=%lu mismatch=%lu no-iv=%lu iv-recorded=%lu unsettled=%lu "
           "tus-upload=%lu tus-expired=%lu problems=%lu\n",
           fk->files, fk->meta_ids->nelts, fk->verified, fk->orphan, fk->missing,
           fk->corrupt, fk->stale, fk->unexpected, fk->inprogress, fk->removed,
           fk->mismatch, fk->noiv, fk->recorded, fk->unsettled, fk->tus,
           fk->tus_expired, problems);
    if (fflush(stdout) != 0)
        return SU_CLI_EXIT_FAIL;
    return problems ? SU_CLI_EXIT_FAIL : SU_CLI_EXIT_OK;
}

static int su_cli_fsck_run(apr_pool_t *p, su_cli_fsck_t *fk)
{
    apr_array_header_t *entries;
    struct stat st;
    int rc;

    /* Unreadable storage is found before anything is reported. */
    errno = 0;
    if (stat(fk->dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        su_cli_err("cannot read the storage directory %s: %s", fk->dir,
                   errno ? strerror(errno) : "not a directory");
        return SU_CLI_EXIT_ENV;
    }
    if (fk->password_file != NULL
        && (rc = su_cli_read_password(p, fk->password_file,
                                      &fk->rconf.password)) != SU_CLI_EXIT_OK)
        return rc;
    /* Metadata first: a file stored meanwhile is then on disk, and
     * su_cli_fsck_has_meta asks Redis about it again. */
    if ((rc = su_cli_fsck_redis(p, fk)) != SU_CLI_EXIT_OK)
        return rc;
    if ((rc = su_cli_walk(p, fk->dir, &entries)) != SU_CLI_EXIT_OK)
        return rc;
    if ((rc = su_cli_fsck_entries(p, fk, entries)) != SU_CLI_EXIT_OK)
        return rc;
    su_cli_fsck_missing(p, fk, entries);
    su_cli_fsck_unsettled(p, fk);
    return su_cli_fsck_summary(fk);
}

enum { SU_CLI_OPT_PASSFILE = 256, SU_CLI_OPT_DB, SU_CLI_OPT_TIMEOUT,
       SU_CLI_OPT_REPAIR, SU_CLI_OPT_BACKFILL, SU_CLI_OPT_USER,
       SU_CLI_OPT_SENTINEL };

/* --sentinel MASTER@HOST:PORT[,HOST:PORT...] (a host holds no '@') */
static int su_cli_fsck_sentinel(apr_pool_t *p, su_redis_conf_t *rc, const char *arg)
{
    const char *at = strrchr(arg, '@'), *addrs[SU_REDIS_SENTINELS_MAX + 1];
    char *list, *last = NULL, *tok;
    const char *err = NULL;
    int n = 0;

    if (at == NULL)
        return su_cli_usage_error("fsck", "fsck: --sentinel: expected "
                                  "MASTER@HOST:PORT[,HOST:PORT...]");
    list = apr_pstrdup(p, at + 1);
    for (tok = apr_strtok(list, ",", &last); tok && n <= SU_REDIS_SENTINELS_MAX;
         tok = apr_strtok(NULL, ",", &last))
        addrs[n++] = tok;
    if (su_redis_parse_sentinels(p, apr_pstrmemdup(p, arg, (apr_size_t)(at - arg)),
                                 n, addrs, rc, &err) != SU_OK)
        return su_cli_usage_error("fsck", "fsck: --sentinel: %s", err);
    return SU_CLI_EXIT_OK;
}

/* The options of fsck, before the keys are loaded. */
typedef struct su_cli_fsck_args {
    apr_pool_t *p;
    su_cli_fsck_t *fk;
    su_cli_paths_t kp;
} su_cli_fsck_args_t;

static int su_cli_fsck_opt(void *ctx, int c, const char *arg)
{
    su_cli_fsck_args_t *a = ctx;
    su_cli_fsck_t *fk = a->fk;
    const char *err = NULL;
    apr_int64_t v;

    switch (c) {
    case 's': fk->dir = arg; return SU_CLI_EXIT_OK;
    case 'p': fk->rconf.prefix = arg; return SU_CLI_EXIT_OK;
    case 'k': return su_cli_add_path("fsck", &a->kp, arg);
    case SU_CLI_OPT_PASSFILE: fk->password_file = arg; return SU_CLI_EXIT_OK;
    case SU_CLI_OPT_REPAIR: fk->repair = 1; return SU_CLI_EXIT_OK;
    case SU_CLI_OPT_BACKFILL: fk->backfill = 1; return SU_CLI_EXIT_OK;
    case SU_CLI_OPT_USER: fk->rconf.user = arg; return SU_CLI_EXIT_OK;
    case SU_CLI_OPT_SENTINEL: return su_cli_fsck_sentinel(a->p, &fk->rconf, arg);
    case 'r':
        fk->rconf.sentinel_master = NULL;   /* the last address given counts */
        fk->rconf.sentinels = NULL;
        if (su_redis_parse_server(a->p, arg, &fk->rconf, &err) != SU_OK)
            return su_cli_usage_error("fsck", "fsck: --redis: %s",
                                      err ? err : "bad address");
        return SU_CLI_EXIT_OK;
    case SU_CLI_OPT_DB:
        if (!su_util_parse_num(arg, 0, INT_MAX, &v))
            return su_cli_usage_error("fsck", "fsck: --db: expected a number >= 0");
        fk->rconf.db = (int)v;
        return SU_CLI_EXIT_OK;
    case SU_CLI_OPT_TIMEOUT:
        if (!su_util_parse_num(arg, 1, 600000, &v))
            return su_cli_usage_error("fsck", "fsck: --timeout: expected 1..600000");
        fk->rconf.timeout_ms = (int)v;
        return SU_CLI_EXIT_OK;
    default:
        return SU_CLI_EXIT_USAGE;
    }
}

int su_cli_fsck(apr_pool_t *p, int argc, char **argv)
{
    static const struct option lo[] = {
        {"storage", required_argument, NULL, 's'},
        {"redis", required_argument, NULL, 'r'},
        {"prefix", required_argument, NULL, 'p'},
        {"password-file", required_argument, NULL, SU_CLI_OPT_PASSFILE},
        {"user", required_argument, NULL, SU_CLI_OPT_USER},
        {"sentinel", required_argument, NULL, SU_CLI_OPT_SENTINEL},
        {"db", required_argument, NULL, SU_CLI_OPT_DB},
        {"timeout", required_argument, NULL, SU_CLI_OPT_TIMEOUT},
        {"key", required_argument, NULL, 'k'},
        {"repair", no_argument, NULL, SU_CLI_OPT_REPAIR},
        {"backfill-iv", no_argument, NULL, SU_CLI_OPT_BACKFILL},
        {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
    const su_cli_opts_t o = {"fsck", ":s:r:p:k:h", lo, su_cli_fsck_help,
                             su_cli_fsck_opt};
    su_cli_fsck_t fk;
    su_cli_fsck_args_t a = {p, &fk, {{NULL}, 0}};
    int rc;

    memset(&fk, 0, sizeof fk);
    su_redis_conf_defaults(&fk.rconf);
    if ((rc = su_cli_options(&o, argc, argv, &a)) != SU_CLI_GO)
        return rc;
    if (optind != argc)
        return su_cli_usage_error("fsck", "fsck: unexpected argument %s",
                                  argv[optind]);
    if (fk.dir == NULL)
        return su_cli_usage_error("fsck", "fsck: --storage is required");
    /* an IV is only recorded for a file shown to be the one uploaded */
    if (fk.backfill && a.kp.n == 0)
        return su_cli_usage_error("fsck", "fsck: --backfill-iv needs --key");
    if (fk.rconf.user && fk.password_file == NULL)
        return su_cli_usage_error("fsck", "fsck: --user needs --password-file");
    if ((rc = su_cli_load_keys(p, &a.kp, &fk.keys)) != SU_CLI_EXIT_OK)
        return rc;
    return su_cli_fsck_run(p, &fk);
}
