/* secupload rewrap: every stored file rewrapped under a new key. */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <stdio.h>
#include <string.h>

#include "su_cli.h"
#include "su_rewrite.h"
#include "su_seg.h"

/* ------------------------------------------------------------ rewrap */

static const char su_cli_rewrap_help[] =
    "Usage: secupload rewrap --storage DIR --from KEYFILE [--from KEYFILE...]\n"
    "                        --to KEYFILE [--dry-run] [--verbose]\n"
    "Rotate the key-encryption key: every stored file DIR/xx/<id>.enc not yet\n"
    "under the --to key is verified with the --from keys and its data key\n"
    "rewrapped under the --to key. Each file is replaced atomically, so an\n"
    "interrupted run leaves every file readable; run it again to finish.\n"
    "  -s, --storage DIR    the storage directory (SecUploadStorageDir)\n"
    "  -f, --from KEYFILE   a key the files are under now (repeatable)\n"
    "  -t, --to KEYFILE     the new key\n"
    "  -n, --dry-run        only verify and report what would be done\n"
    "  -v, --verbose        also list files already under the new key\n"
    "Output: one line per file (rewrapped / would-rewrap / current / FAILED)\n"
    "and a summary line.\n";

typedef struct su_cli_rewrap {
    const char *dir;
    su_cli_keys_t from;
    const su_kek_t *to;
    int dry_run;
    int verbose;
    unsigned long done, current, failed;
} su_cli_rewrap_t;

static void su_cli_rewrap_fail(apr_pool_t *p, su_cli_rewrap_t *rw,
                               const su_cli_entry_t *e, su_err_t rv)
{
    printf("FAILED %s: %s\n", e->id, su_cli_reason(p, e->path, rv, &rw->from));
    rw->failed++;
}

/* The key id a version 2 header names, in hex ("?" if unreadable). */
static const char *su_cli_rewrap_v2_key(apr_pool_t *p, const char *path)
{
    unsigned char head[SU_SEG_OFF_KEYID + SU_KEY_ID_LEN];
    FILE *f = fopen(path, "rb");
    size_t n = f != NULL ? fread(head, 1, sizeof head, f) : 0;

    if (f != NULL)
        fclose(f);
    return n == sizeof head ? su_cli_hex(p, head + SU_SEG_OFF_KEYID, SU_KEY_ID_LEN) : "?";
}

/* Version 2: the header alone changes (every segment verified on the way). */
static void su_cli_rewrap_v2(apr_pool_t *p, su_cli_rewrap_t *rw,
                             const su_cli_entry_t *e)
{
    const char *oldid = su_cli_rewrap_v2_key(p, e->path);
    su_rewrite_outcome_t o = SU_REWRITE_DONE;
    su_err_t rv = su_rewrite_rewrap2(p, e->path, e->id, rw->from.k, rw->from.n,
                                     rw->to, rw->dry_run, &o);

    if (rv != SU_OK) {
        su_cli_rewrap_fail(p, rw, e, rv);
    } else if (o == SU_REWRITE_SKIPPED) {
        if (rw->verbose)
            printf("current %s\n", e->id);
        rw->current++;
    } else {
        printf("%s %s key %s -> %s\n", rw->dry_run ? "would-rewrap" : "rewrapped",
               e->id, oldid, rw->to->id_hex);
        rw->done++;
    }
}

static void su_cli_rewrap_one(apr_pool_t *p, su_cli_rewrap_t *rw,
                              const su_cli_entry_t *e)
{
    uint64_t size = 0;
    const char *oldid;
    su_fmt_head_t h;
    su_err_t rv;

    if (su_rewrite_is_v2(e->path) == 1) {
        su_cli_rewrap_v2(p, rw, e);
        return;
    }
    su_fmt_file_look(e->path, &h);
    if (!h.has_key_id) {
        su_cli_rewrap_fail(p, rw, e, SU_ERR_INTEGRITY);
        return;
    }
    oldid = su_cli_key_id(p, &h);
    if (memcmp(h.key_id, rw->to->id, SU_KEY_ID_LEN) == 0) {
        if (rw->verbose)
            printf("current %s\n", e->id);
        rw->current++;
        return;
    }
    if (rw->dry_run)
        rv = su_fmt_file_verify(p, e->path, rw->from.k, rw->from.n, &size);
    else
        rv = su_fmt_file_rewrap(p, e->path, rw->from.k, rw->from.n, rw->to);
    if (rv != SU_OK) {
        su_cli_rewrap_fail(p, rw, e, rv);
        return;
    }
    printf("%s %s key %s -> %s\n", rw->dry_run ? "would-rewrap" : "rewrapped",
           e->id, oldid, rw->to->id_hex);
    rw->done++;
}

static int su_cli_rewrap_run(apr_pool_t *p, su_cli_rewrap_t *rw)
{
    apr_array_header_t *entries;
    apr_pool_t *sub;
    int i, rc = su_cli_walk(p, rw->dir, &entries);

    if (rc != SU_CLI_EXIT_OK)
        return rc;
    if (apr_pool_create(&sub, p) != APR_SUCCESS)
        return SU_CLI_EXIT_ENV;
    for (i = 0; i < entries->nelts; i++) {
        const su_cli_entry_t *e = APR_ARRAY_IDX(entries, i, su_cli_entry_t *);
        if (e->kind != SU_STORE_NAME_FILE)
            continue;
        su_cli_rewrap_one(sub, rw, e);
        apr_pool_clear(sub);
    }
    apr_pool_destroy(sub);
    if (rw->dry_run)
        printf("rewrap (dry run): %lu would be rewrapped, %lu already current, "
               "%lu failed\n", rw->done, rw->current, rw->failed);
    else
        printf("rewrap: %lu rewrapped, %lu already current, %lu failed\n",
               rw->done, rw->current, rw->failed);
    if (fflush(stdout) != 0)
        return SU_CLI_EXIT_FAIL;
    return rw->failed ? SU_CLI_EXIT_FAIL : SU_CLI_EXIT_OK;
}

/* The options of rewrap, before the keys are loaded. */
typedef struct su_cli_rewrap_args {
    su_cli_rewrap_t *rw;
    su_cli_paths_t from, to;
} su_cli_rewrap_args_t;

static int su_cli_rewrap_opt(void *ctx, int c, const char *arg)
{
    su_cli_rewrap_args_t *a = ctx;

    switch (c) {
    case 's': a->rw->dir = arg; return SU_CLI_EXIT_OK;
    case 'f': return su_cli_add_path("rewrap", &a->from, arg);
    case 't':
        if (a->to.n > 0)
            return su_cli_usage_error("rewrap", "rewrap: --to given twice");
        a->to.v[a->to.n++] = arg;
        return SU_CLI_EXIT_OK;
    case 'n': a->rw->dry_run = 1; return SU_CLI_EXIT_OK;
    case 'v': a->rw->verbose = 1; return SU_CLI_EXIT_OK;
    default: return SU_CLI_EXIT_USAGE;
    }
}

int su_cli_rewrap(apr_pool_t *p, int argc, char **argv)
{
    static const struct option lo[] = {
        {"storage", required_argument, NULL, 's'},
        {"from", required_argument, NULL, 'f'},
        {"to", required_argument, NULL, 't'},
        {"dry-run", no_argument, NULL, 'n'},
        {"verbose", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
    const su_cli_opts_t o = {"rewrap", ":s:f:t:nvh", lo, su_cli_rewrap_help,
                             su_cli_rewrap_opt};
    su_cli_rewrap_t rw;
    su_cli_rewrap_args_t a = {&rw, {{NULL}, 0}, {{NULL}, 0}};
    su_cli_keys_t to;
    int rc;

    memset(&rw, 0, sizeof rw);
    if ((rc = su_cli_options(&o, argc, argv, &a)) != SU_CLI_GO)
        return rc;
    if (optind != argc)
        return su_cli_usage_error("rewrap", "rewrap: unexpected argument %s",
                                  argv[optind]);
    if (rw.dir == NULL || a.from.n == 0 || a.to.n == 0)
        return su_cli_usage_error("rewrap", "rewrap: --storage, --from and --to "
                                  "are required");
    if ((rc = su_cli_load_keys(p, &a.from, &rw.from)) != SU_CLI_EXIT_OK
        || (rc = su_cli_load_keys(p, &a.to, &to)) != SU_CLI_EXIT_OK)
        return rc;
    rw.to = to.k[0];
    return su_cli_rewrap_run(p, &rw);
}
