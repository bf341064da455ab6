/* secupload keygen: a new key-encryption key file. */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <stdio.h>
#include <sys/stat.h>

#include "su_cli.h"

/* ------------------------------------------------------------ keygen */

static const char su_cli_keygen_help[] =
    "Usage: secupload keygen FILE\n"
    "Write a new 256-bit key-encryption key to FILE (64 hex digits, mode\n"
    "0400). An existing FILE is never overwritten. Prints the key id.\n";

static int su_cli_keygen_run(apr_pool_t *p, const char *path)
{
    struct stat st;
    const char *err = NULL;
    su_kek_t *kek = NULL;

    if (lstat(path, &st) == 0) {
        su_cli_err("key file %s already exists; refusing to overwrite it", path);
        return SU_CLI_EXIT_FAIL;
    }
    if (su_key_generate_file(p, path, &err) != SU_OK) {
        su_cli_err("%s", err ? err : "cannot write the key file");
        return lstat(path, &st) == 0 ? SU_CLI_EXIT_FAIL : SU_CLI_EXIT_ENV;
    }
    if (su_key_load(p, path, &kek, &err) != SU_OK) {
        su_cli_err("%s", err ? err : "cannot read the new key file");
        return SU_CLI_EXIT_ENV;
    }
    printf("%s\n", kek->id_hex);
    return fflush(stdout) == 0 ? SU_CLI_EXIT_OK : SU_CLI_EXIT_FAIL;
}

int su_cli_keygen(apr_pool_t *p, int argc, char **argv)
{
    static const struct option lo[] = {
        {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
    const su_cli_opts_t o = {"keygen", ":h", lo, su_cli_keygen_help, NULL};
    int rc = su_cli_options(&o, argc, argv, NULL);

    if (rc != SU_CLI_GO)
        return rc;
    if (argc - optind != 1)
        return su_cli_usage_error("keygen", "keygen: expected exactly one FILE");
    return su_cli_keygen_run(p, argv[optind]);
}
