/* secupload convert: stored files of format version 1 rewritten as version 2. */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include <apr_strings.h>

#include "su_cli.h"
#include "su_rewrite.h"

static const char su_cli_convert_help[] =
    "Usage: secupload convert --key KEYFILE [--key KEYFILE...] [--id ID]\n"
    "                         [--dry-run] [--verbose] FILE|DIR\n"
    "Rewrite stored files of format version 1 as version 2 (segmented: served\n"
    "at once, with Range). Each file is verified whole with the keys first,\n"
    "stays under the key it was under, keeps its IV as its nonce (its metadata\n"
    "stays valid) and is replaced atomically, so an interrupted run leaves every\n"
    "file readable; run it again to finish. Files already in version 2 are\n"
    "skipped; a file that fails verification is reported and left as it was.\n"
    "  FILE                 one stored file, named <id>.enc unless --id is given\n"
    "  DIR                  the storage directory: every DIR/xx/<id>.enc\n"
    "  -k, --key KEYFILE    a key the files may be under (repeatable)\n"
    "  -i, --id ID          the id of FILE (32 hex digits), if its name is not\n"
    "                       <id>.enc\n"
    "  -n, --dry-run        only verify and report what would be done\n"
    "  -v, --verbose        also list files already in version 2\n"
    "Output: one line per file (converted / would-convert / version-2 / FAILED)\n"
    "and a summary line.\n";

typedef struct su_cli_convert {
    su_cli_keys_t keys;
    const char *id;
    int dry_run;
    int verbose;
    unsigned long done, skipped, failed;
} su_cli_convert_t;

static void su_cli_convert_one(apr_pool_t *p, su_cli_convert_t *cv,
                               const char *path, const char *id)
{
    su_rewrite_outcome_t o = SU_REWRITE_DONE;
    su_err_t rv = su_rewrite_convert(p, path, id, cv->keys.k, cv->keys.n,
                                     cv->dry_run, &o);

    if (rv != SU_OK) {
        printf("FAILED %s: %s\n", id, su_cli_reason(p, path, rv, &cv->keys));
        cv->failed++;
    } else if (o == SU_REWRITE_SKIPPED) {
        if (cv->verbose)
            printf("version-2 %s\n", id);
        cv->skipped++;
    } else {
        printf("%s %s\n", cv->dry_run ? "would-convert" : "converted", id);
        cv->done++;
    }
}

static int su_cli_convert_dir(apr_pool_t *p, su_cli_convert_t *cv, const char *dir)
{
    apr_array_header_t *entries;
    apr_pool_t *sub;
    int i, rc = su_cli_walk(p, dir, &entries);

    if (rc != SU_CLI_EXIT_OK)
        return rc;
    if (apr_pool_create(&sub, p) != APR_SUCCESS)
        return SU_CLI_EXIT_ENV;
    for (i = 0; i < entries->nelts; i++) {
        const su_cli_entry_t *e = APR_ARRAY_IDX(entries, i, su_cli_entry_t *);
        if (e->kind != SU_STORE_NAME_FILE)
            continue;
        su_cli_convert_one(sub, cv, e->path, e->id);
        apr_pool_clear(sub);
    }
    apr_pool_destroy(sub);
    return SU_CLI_EXIT_OK;
}

/* One file: its id from --id, else from its name <id>.enc. */
static int su_cli_convert_file(apr_pool_t *p, su_cli_convert_t *cv, const char *path)
{
    const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    size_t n = strlen(base), sl = sizeof SU_STORE_SUFFIX - 1;
    const char *id = cv->id;

    if (id == NULL && n == SU_ID_HEX_LEN + sl && strcmp(base + SU_ID_HEX_LEN, SU_STORE_SUFFIX) == 0)
        id = apr_pstrndup(p, base, SU_ID_HEX_LEN);
    if (id == NULL || !su_store_valid_id(id))
        return su_cli_usage_error("convert", "convert: %s is not named <id>.enc: "
                                  "give its id with --id", su_cli_printable(p, path));
    su_cli_convert_one(p, cv, path, id);
    return SU_CLI_EXIT_OK;
}

static int su_cli_convert_run(apr_pool_t *p, su_cli_convert_t *cv, const char *target)
{
    struct stat st;
    int rc;

    if (stat(target, &st) != 0) {
        su_cli_err("convert: cannot open %s", su_cli_printable(p, target));
        return SU_CLI_EXIT_ENV;
    }
    if (S_ISDIR(st.st_mode) && cv->id != NULL)
        return su_cli_usage_error("convert", "convert: --id is for one FILE");
    rc = S_ISDIR(st.st_mode) ? su_cli_convert_dir(p, cv, target)
                             : su_cli_convert_file(p, cv, target);
    if (rc != SU_CLI_EXIT_OK)
        return rc;
    printf("convert%s: %lu %s, %lu already version 2, %lu failed\n",
           cv->dry_run ? " (dry run)" : "", cv->done,
           cv->dry_run ? "would be converted" : "converted", cv->skipped, cv->failed);
    if (fflush(stdout) != 0)
        return SU_CLI_EXIT_FAIL;
    return cv->failed ? SU_CLI_EXIT_FAIL : SU_CLI_EXIT_OK;
}

typedef struct su_cli_convert_args {
    su_cli_convert_t *cv;
    su_cli_paths_t keys;
} su_cli_convert_args_t;

static int su_cli_convert_opt(void *ctx, int c, const char *arg)
{
    su_cli_convert_args_t *a = ctx;

    switch (c) {
    case 'k': return su_cli_add_path("convert", &a->keys, arg);
    case 'i':
        if (!su_store_valid_id(arg))
            return su_cli_usage_error("convert", "convert: --id must be 32 "
                                      "lowercase hex digits");
        a->cv->id = arg;
        return SU_CLI_EXIT_OK;
    case 'n': a->cv->dry_run = 1; return SU_CLI_EXIT_OK;
    case 'v': a->cv->verbose = 1; return SU_CLI_EXIT_OK;
    default: return SU_CLI_EXIT_USAGE;
    }
}

int su_cli_convert(apr_pool_t *p, int argc, char **argv)
{
    static const struct option lo[] = {
        {"key", required_argument, NULL, 'k'},
        {"id", required_argument, NULL, 'i'},
        {"dry-run", no_argument, NULL, 'n'},
        {"verbose", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
    const su_cli_opts_t o = {"convert", ":k:i:nvh", lo, su_cli_convert_help,
                             su_cli_convert_opt};
    su_cli_convert_t cv;
    su_cli_convert_args_t a = {&cv, {{NULL}, 0}};
    int rc;

    memset(&cv, 0, sizeof cv);
    if ((rc = su_cli_options(&o, argc, argv, &a)) != SU_CLI_GO)
        return rc;
    if (optind + 1 != argc)
        return su_cli_usage_error("convert", "convert: one FILE or DIR is needed");
    if (a.keys.n == 0)
        return su_cli_usage_error("convert", "convert: --key is required");
    if ((rc = su_cli_load_keys(p, &a.keys, &cv.keys)) != SU_CLI_EXIT_OK)
        return rc;
    return su_cli_convert_run(p, &cv, argv[optind]);
}
