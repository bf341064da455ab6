/*
 * What the files of the secupload tool share: exit codes, messages, the
 * option loop, key files, why a stored file failed, the storage walk, and
 * the subcommands that main dispatches to (one file each).
 */
#ifndef SU_CLI_H
#define SU_CLI_H

#include <getopt.h>
#include <stdint.h>
#include <time.h>

#include <apr_pools.h>
#include <apr_tables.h>

#include "su_common.h"
#include "su_format.h"
#include "su_key.h"
#include "su_store.h"

#define SU_CLI_EXIT_OK    0
#define SU_CLI_EXIT_FAIL  1
#define SU_CLI_EXIT_USAGE 2
#define SU_CLI_EXIT_ENV   3

#define SU_CLI_MAX_KEYS      32
/* A temp file untouched for this long belongs to no live writer. */
#define SU_CLI_STALE_SECS    3600
/* Upper bound on directory entries looked at in one run. */
#define SU_CLI_MAX_ENTRIES   50000000L
#define SU_CLI_PASSWORD_MAX  1024

/*
 * A subcommand's options, for getopt_long over its arguments (argv[0] the
 * subcommand): each goes to take (never 'h', which prints help), which
 * returns SU_CLI_EXIT_OK to go on, or the exit code to end with.
 */
typedef struct su_cli_opts {
    const char *cmd;
    const char *shortopts;
    const struct option *longopts;
    const char *help;
    int (*take)(void *ctx, int c, const char *arg);
} su_cli_opts_t;

/* su_cli_options: the options are all taken; optind is at the operands. */
#define SU_CLI_GO (-1)

typedef struct su_cli_keys {
    const su_kek_t *k[SU_CLI_MAX_KEYS];
    int n;
} su_cli_keys_t;

/* Paths collected while parsing, loaded once the command line is valid. */
typedef struct su_cli_paths {
    const char *v[SU_CLI_MAX_KEYS];
    int n;
} su_cli_paths_t;

/* An entry under the storage directory: SU_STORE_NAME_OTHER for anything
 * the store does not write there. */
typedef struct su_cli_entry {
    su_store_name_t kind;
    const char *id;      /* SU_STORE_NAME_FILE and SU_STORE_NAME_TUS only */
    const char *path;
    time_t mtime;
} su_cli_entry_t;

void su_cli_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int su_cli_usage_error(const char *cmd, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
extern const char su_cli_exit_help[];
const char *su_cli_printable(apr_pool_t *p, const char *s);
/* The one option loop (with --help) of every subcommand: SU_CLI_GO, or the
 * exit code the subcommand ends with (0 after --help). */
int su_cli_options(const su_cli_opts_t *o, int argc, char **argv, void *ctx);
int su_cli_add_path(const char *cmd, su_cli_paths_t *ps, const char *path);
int su_cli_load_keys(apr_pool_t *p, const su_cli_paths_t *ps,
                     su_cli_keys_t *keys);
const char *su_cli_hex(apr_pool_t *p, const unsigned char *b, size_t n);
/* The key id a file's header names, in hex ("?" if it names none). */
const char *su_cli_key_id(apr_pool_t *p, const su_fmt_head_t *h);
/* Why path failed with rv, for a report line. */
const char *su_cli_reason(apr_pool_t *p, const char *path, su_err_t rv,
                          const su_cli_keys_t *keys);
int su_cli_walk(apr_pool_t *p, const char *dir, apr_array_header_t **out);

/* The subcommands: argv[0] is the subcommand's name. */
int su_cli_keygen(apr_pool_t *p, int argc, char **argv);
int su_cli_decrypt(apr_pool_t *p, int argc, char **argv);
int su_cli_verify(apr_pool_t *p, int argc, char **argv);
int su_cli_rewrap(apr_pool_t *p, int argc, char **argv);
int su_cli_convert(apr_pool_t *p, int argc, char **argv);
int su_cli_fsck(apr_pool_t *p, int argc, char **argv);

#endif
