/*
 * secupload: the operator's command-line tool (docs/cli.md).
 *
 *   keygen FILE                       a new key-encryption key, mode 0400
 *   decrypt FILE --key K... [-o OUT]  plaintext, tag checked first
 *   verify FILE... --key K...         integrity of stored files
 *   rewrap --storage DIR --from K... --to K [--dry-run]   key rotation
 *   convert --key K... [--id ID] [--dry-run] FILE|DIR     format 1 -> 2
 *   fsck --storage DIR [--redis ...] [--key K...] [--repair] [--backfill-iv]
 *
 * Everything cryptographic goes through the core (su_key, su_format); the
 * tool only parses arguments, walks the storage directory and reports. This
 * file: main and the dispatch to the subcommands (su_cli_<command>.c), and
 * what they share (messages, options, key files, why a file failed).
 * Exit codes: 0 success, 1 failure, 2 usage error, 3 environment error.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <apr_general.h>
#include <apr_strings.h>

#include "su_cli.h"
#include "su_util.h"

#ifndef PACKAGE_VERSION
#define PACKAGE_VERSION "unknown"
#endif

/* ------------------------------------------------------------ messages */

void su_cli_err(const char *fmt, ...)
{
    va_list ap;

    fputs("secupload: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

int su_cli_usage_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;

    fputs("secupload: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nTry 'secupload %s%s--help'.\n", cmd ? cmd : "",
            cmd ? " " : "");
    return SU_CLI_EXIT_USAGE;
}

/* Names read from a directory or Redis may hold any byte; a report line
 * must stay one line. */
const char *su_cli_printable(apr_pool_t *p, const char *s)
{
    char *out = apr_pstrdup(p, s);

    su_util_printable(out, strlen(out), 0);
    return out;
}

const char su_cli_exit_help[] =
    "Exit status:\n"
    "  0  success\n"
    "  1  failure (verification failed, file exists, problems found, ...)\n"
    "  2  usage error\n"
    "  3  environment error (key file unusable, storage unreadable,\n"
    "     Redis unreachable)\n";

/* ------------------------------------------------------------ options */

/* Returns the option, -1 at the end, or '?' after reporting a usage error. */
static int su_cli_next_opt(const su_cli_opts_t *o, int argc, char **argv)
{
    int c = getopt_long(argc, argv, o->shortopts, o->longopts, NULL);

    if (c == '?' || c == ':') {
        const char *bad = optind > 0 && optind <= argc ? argv[optind - 1] : "?";
        if (c == ':')
            su_cli_usage_error(o->cmd, "%s: option %s needs an argument",
                               o->cmd, bad);
        else
            su_cli_usage_error(o->cmd, "%s: unknown option %s", o->cmd, bad);
        return '?';
    }
    return c;
}

int su_cli_options(const su_cli_opts_t *o, int argc, char **argv, void *ctx)
{
    int c, rc;

    while ((c = su_cli_next_opt(o, argc, argv)) != -1) {
        if (c == 'h') {
            fputs(o->help, stdout);
            fputs(su_cli_exit_help, stdout);
            return SU_CLI_EXIT_OK;
        }
        if (c == '?' || o->take == NULL)
            return SU_CLI_EXIT_USAGE;
        if ((rc = o->take(ctx, c, optarg)) != SU_CLI_EXIT_OK)
            return rc;
    }
    return SU_CLI_GO;
}

/* ------------------------------------------------------------ keys */

int su_cli_add_path(const char *cmd, su_cli_paths_t *ps, const char *path)
{
    if (ps->n >= SU_CLI_MAX_KEYS)
        return su_cli_usage_error(cmd, "%s: at most %d key files", cmd,
                                  SU_CLI_MAX_KEYS);
    ps->v[ps->n++] = path;
    return SU_CLI_EXIT_OK;
}

int su_cli_load_keys(apr_pool_t *p, const su_cli_paths_t *ps,
                     su_cli_keys_t *keys)
{
    int i;

    keys->n = 0;
    for (i = 0; i < ps->n; i++) {
        su_kek_t *kek = NULL;
        const char *err = NULL;
        if (su_key_load(p, ps->v[i], &kek, &err) != SU_OK) {
            su_cli_err("%s", err ? err : "cannot load a key file");
            return SU_CLI_EXIT_ENV;
        }
        keys->k[keys->n++] = kek;
    }
    return SU_CLI_EXIT_OK;
}

/* ------------------------------------------------------------ file checks */

const char *su_cli_hex(apr_pool_t *p, const unsigned char *b, size_t n)
{
    char *out = apr_palloc(p, 2 * n + 1);

    su_util_hex(out, b, n);
    return out;
}

const char *su_cli_key_id(apr_pool_t *p, const su_fmt_head_t *h)
{
    return h->has_key_id ? su_cli_hex(p, h->key_id, SU_KEY_ID_LEN) : "?";
}

/* Why a file failed verification: what the format sees without any key,
 * so the message never depends on secret material. */
static const char *su_cli_integrity_reason(apr_pool_t *p, const su_fmt_head_t *h,
                                           const su_cli_keys_t *keys)
{
    if (h->look == SU_FMT_TOO_SHORT)
        return "too short to be a stored file";
    if (h->look == SU_FMT_BAD_MAGIC)
        return "not a stored file (bad magic or unknown version)";
    if (h->look == SU_FMT_BAD_SIZE)
        return "wrong size (truncated or extended)";
    if (!su_fmt_have_key(keys->k, keys->n, h->key_id))
        return apr_psprintf(p, "no key given for key id %s", su_cli_key_id(p, h));
    return "integrity check failed (modified file or wrong key)";
}

const char *su_cli_reason(apr_pool_t *p, const char *path, su_err_t rv,
                          const su_cli_keys_t *keys)
{
    su_fmt_head_t h;

    su_fmt_file_look(path, &h);
    if (h.look == SU_FMT_NO_FILE)
        return "no such file";
    if (h.look == SU_FMT_UNREADABLE)
        return apr_psprintf(p, "cannot open: %s", strerror(h.open_errno));
    if (h.look == SU_FMT_NOT_REGULAR)
        return "not a regular file";
    switch (rv) {
    case SU_ERR_INTEGRITY:
        return su_cli_integrity_reason(p, &h, keys);
    case SU_ERR_NO_SPACE:
        return "no space left on the device";
    case SU_ERR_NOT_FOUND:
        return "no such file";
    default:
        return "read, write or lock error (busy, or I/O failure)";
    }
}

/* ------------------------------------------------------------ main */

typedef struct su_cli_cmd {
    const char *name;
    int (*run)(apr_pool_t *p, int argc, char **argv);
    const char *summary;
} su_cli_cmd_t;

static const su_cli_cmd_t su_cli_cmds[] = {
    {"keygen", su_cli_keygen, "write a new key-encryption key file (mode 0400)"},
    {"decrypt", su_cli_decrypt, "decrypt a stored file (tag checked first)"},
    {"verify", su_cli_verify, "verify stored files without decrypting them"},
    {"rewrap", su_cli_rewrap, "rewrap every stored file under a new key"},
    {"convert", su_cli_convert, "rewrite format version 1 files as version 2"},
    {"fsck", su_cli_fsck, "compare the storage directory with Redis"},
};

static void su_cli_main_help(FILE *f)
{
    size_t i;

    fputs("Usage: secupload COMMAND [OPTIONS] [ARGS]\n"
          "       secupload COMMAND --help\n"
          "       secupload --version\n"
          "Operator's tool for mod_secupload storage.\n\nCommands:\n", f);
    for (i = 0; i < sizeof su_cli_cmds / sizeof su_cli_cmds[0]; i++)
        fprintf(f, "  %-8s %s\n", su_cli_cmds[i].name, su_cli_cmds[i].summary);
    fputc('\n', f);
    fputs(su_cli_exit_help, f);
}

static int su_cli_dispatch(apr_pool_t *p, int argc, char **argv)
{
    size_t i;

    if (argc < 2) {
        su_cli_main_help(stderr);
        return SU_CLI_EXIT_USAGE;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0
        || strcmp(argv[1], "help") == 0) {
        su_cli_main_help(stdout);
        return SU_CLI_EXIT_OK;
    }
    if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "-V") == 0) {
        printf("secupload %s\n", PACKAGE_VERSION);
        return SU_CLI_EXIT_OK;
    }
    for (i = 0; i < sizeof su_cli_cmds / sizeof su_cli_cmds[0]; i++) {
        if (strcmp(argv[1], su_cli_cmds[i].name) == 0) {
            opterr = 0;
            optind = 1;
            return su_cli_cmds[i].run(p, argc - 1, argv + 1);
        }
    }
    return su_cli_usage_error(NULL, "unknown command '%s'", argv[1]);
}

int main(int argc, char **argv)
{
    apr_pool_t *pool;
    int rc;

    /* A closed pipe is an ordinary write error, reported and exited on. */
    signal(SIGPIPE, SIG_IGN);
    /* Report lines reach a log as they happen, even if the run is killed. */
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (apr_initialize() != APR_SUCCESS
        || apr_pool_create(&pool, NULL) != APR_SUCCESS) {
        fputs("secupload: cannot initialise APR\n", stderr);
        return SU_CLI_EXIT_ENV;
    }
    rc = su_cli_dispatch(pool, argc, argv);
    /* Wipes and unmaps every loaded key. */
    apr_pool_destroy(pool);
    apr_terminate();
    return rc;
}
