/* secupload decrypt and verify: one stored file to plaintext, or checked. */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "su_seg.h"
#include "su_segr.h"
#include "su_store.h"

#include "su_cli.h"

/* ------------------------------------------------------------ decrypt */

static const char su_cli_decrypt_help[] =
    "Usage: secupload decrypt FILE --key KEYFILE [--key KEYFILE...] [-o OUT]\n"
    "                         [--id ID]\n"
    "Decrypt a stored file to standard output (or OUT). A format 1 file is\n"
    "authenticated whole before the first byte is written, and one that\n"
    "fails writes nothing; a format 2 file segment by segment (a file that\n"
    "fails after its first segments leaves OUT removed, or a part of the\n"
    "plaintext on standard output, and the exit status 1).\n"
    "  -k, --key KEYFILE   a key file to try (repeat for several)\n"
    "  -i, --id ID         the file's id (format 2 binds it): by default\n"
    "                      the one its name gives (<id>.enc)\n"
    "  -o, --output OUT    write to OUT (created 0600, never overwritten,\n"
    "                      removed again on failure)\n";

typedef struct su_cli_sink {
    int fd;
    int err;
} su_cli_sink_t;

static int su_cli_sink_write(void *ctx, const unsigned char *buf, size_t len)
{
    su_cli_sink_t *s = ctx;

    while (len > 0) {
        ssize_t w = write(s->fd, buf, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            s->err = w < 0 ? errno : EIO;
            return 1;
        }
        buf += w;
        len -= (size_t)w;
    }
    return 0;
}

static int su_cli_open_output(const char *out, int *fd)
{
    if (out == NULL || strcmp(out, "-") == 0) {
        *fd = STDOUT_FILENO;
        return SU_CLI_EXIT_OK;
    }
    *fd = open(out, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (*fd >= 0)
        return SU_CLI_EXIT_OK;
    if (errno == EEXIST) {
        su_cli_err("%s already exists; refusing to overwrite it", out);
        return SU_CLI_EXIT_FAIL;
    }
    su_cli_err("cannot create %s: %s", out, strerror(errno));
    return SU_CLI_EXIT_ENV;
}

/* Flush a named output to disk; a late write error is still a failure. */
static int su_cli_close_output(const char *out, int fd)
{
    int rc = 0;

    if (fd == STDOUT_FILENO)
        return 0;
    if (fsync(fd) != 0)
        rc = errno;
    if (close(fd) != 0 && rc == 0)
        rc = errno;
    if (rc != 0)
        su_cli_err("cannot write %s: %s", out, strerror(rc));
    return rc;
}

/*
 * A format 2 file binds its id in every tag: without --id its name must
 * give one, or nothing could verify it. Said before anything is written.
 */
static int su_cli_id_known(const char *file, const char *id)
{
    unsigned char m[SU_SEG_MAGIC_LEN];
    char named[SU_ID_HEX_LEN + 1];
    ssize_t n = 0;
    int fd;

    if (id != NULL || su_segr_path_id(file, named))
        return 1;
    fd = open(file, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd >= 0) {
        n = pread(fd, m, sizeof m, 0);
        close(fd);
    }
    if (n != (ssize_t)sizeof m || !su_seg_is_v2(m, sizeof m))
        return 1;            /* v1, or a failure the reader reports */
    su_cli_err("%s: a format 2 file binds its id, and this name (not "
               "<id>.enc) gives none: name it with --id ID", file);
    return 0;
}

static int su_cli_decrypt_run(apr_pool_t *p, const char *file, const char *out,
                              const char *id, const su_cli_keys_t *keys)
{
    su_cli_sink_t sink = {-1, 0};
    int rc;
    su_err_t rv;

    if (!su_cli_id_known(file, id))
        return SU_CLI_EXIT_FAIL;
    rc = su_cli_open_output(out, &sink.fd);
    if (rc != SU_CLI_EXIT_OK)
        return rc;
    rv = su_fmt_file_decrypt_id(p, file, id, keys->k, keys->n, su_cli_sink_write,
                                &sink);
    if (rv == SU_ERR_ABORTED)
        su_cli_err("cannot write the output: %s", strerror(sink.err));
    else if (rv != SU_OK)
        su_cli_err("%s: %s", file, su_cli_reason(p, file, rv, keys));
    if (su_cli_close_output(out, sink.fd) != 0 && rv == SU_OK)
        rv = SU_ERR_INTERNAL;
    if (rv == SU_OK)
        return SU_CLI_EXIT_OK;
    if (sink.fd != STDOUT_FILENO)
        unlink(out);
    return SU_CLI_EXIT_FAIL;
}

/* The options of decrypt and verify: key files, and decrypt's output. */
typedef struct su_cli_decrypt_args {
    const char *cmd;
    su_cli_paths_t keys;
    const char *out;
    const char *id;
} su_cli_decrypt_args_t;

static int su_cli_decrypt_opt(void *ctx, int c, const char *arg)
{
    su_cli_decrypt_args_t *a = ctx;

    if (c == 'o') {
        a->out = arg;
        return SU_CLI_EXIT_OK;
    }
    if (c == 'i') {
        if (!su_store_valid_id(arg))
            return su_cli_usage_error(a->cmd, "%s: --id: expected 32 lowercase "
                                      "hex digits", a->cmd);
        a->id = arg;
        return SU_CLI_EXIT_OK;
    }
    return su_cli_add_path(a->cmd, &a->keys, arg);
}

/* At least one --key, and every key file loaded. */
static int su_cli_decrypt_keys(apr_pool_t *p, const su_cli_decrypt_args_t *a,
                               su_cli_keys_t *keys)
{
    if (a->keys.n == 0)
        return su_cli_usage_error(a->cmd, "%s: at least one --key is required",
                                  a->cmd);
    return su_cli_load_keys(p, &a->keys, keys);
}

int su_cli_decrypt(apr_pool_t *p, int argc, char **argv)
{
    static const struct option lo[] = {
        {"key", required_argument, NULL, 'k'},
        {"output", required_argument, NULL, 'o'},
        {"id", required_argument, NULL, 'i'},
        {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
    const su_cli_opts_t o = {"decrypt", ":k:o:i:h", lo, su_cli_decrypt_help,
                             su_cli_decrypt_opt};
    su_cli_decrypt_args_t a = {"decrypt", {{NULL}, 0}, NULL, NULL};
    su_cli_keys_t keys;
    int rc = su_cli_options(&o, argc, argv, &a);

    if (rc != SU_CLI_GO)
        return rc;
    if (argc - optind != 1)
        return su_cli_usage_error("decrypt", "decrypt: expected exactly one FILE");
    if ((rc = su_cli_decrypt_keys(p, &a, &keys)) != SU_CLI_EXIT_OK)
        return rc;
    return su_cli_decrypt_run(p, argv[optind], a.out, a.id, &keys);
}

/* ------------------------------------------------------------ verify */

static const char su_cli_verify_help[] =
    "Usage: secupload verify FILE... --key KEYFILE [--key KEYFILE...] [--id ID]\n"
    "Check stored files completely (format, key, tags, padding; every\n"
    "segment of a format 2 file) without writing any plaintext. One line\n"
    "per file:\n"
    "  OK <file> <plaintext size> key <key id>\n"
    "  FAILED <file>: <reason>\n"
    "  -k, --key KEYFILE   a key file to try (repeat for several)\n"
    "  -i, --id ID         the id of a format 2 file (of every FILE) when\n"
    "                      its name (<id>.enc) does not give it\n";

static int su_cli_verify_one(apr_pool_t *p, const char *file, const char *id,
                             const su_cli_keys_t *keys)
{
    uint64_t size = 0;
    su_err_t rv;
    su_fmt_head_t h;

    if (!su_cli_id_known(file, id)) {
        printf("FAILED %s: its name gives no id (use --id)\n", file);
        return 1;
    }
    rv = su_fmt_file_verify_id(p, file, id, keys->k, keys->n, &size);

    if (rv == SU_OK) {
        su_fmt_file_look(file, &h);
        printf("OK %s %llu key %s\n", file, (unsigned long long)size,
               su_cli_key_id(p, &h));
        return 0;
    }
    printf("FAILED %s: %s\n", file, su_cli_reason(p, file, rv, keys));
    return 1;
}

int su_cli_verify(apr_pool_t *p, int argc, char **argv)
{
    static const struct option lo[] = {
        {"key", required_argument, NULL, 'k'},
        {"id", required_argument, NULL, 'i'},
        {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
    const su_cli_opts_t o = {"verify", ":k:i:h", lo, su_cli_verify_help,
                             su_cli_decrypt_opt};
    su_cli_decrypt_args_t a = {"verify", {{NULL}, 0}, NULL, NULL};
    su_cli_keys_t keys;
    int rc = su_cli_options(&o, argc, argv, &a), i, failed = 0;

    if (rc != SU_CLI_GO)
        return rc;
    if (argc - optind < 1)
        return su_cli_usage_error("verify", "verify: expected at least one FILE");
    if ((rc = su_cli_decrypt_keys(p, &a, &keys)) != SU_CLI_EXIT_OK)
        return rc;
    for (i = optind; i < argc; i++) {
        apr_pool_t *sub;
        if (apr_pool_create(&sub, p) != APR_SUCCESS)
            return SU_CLI_EXIT_ENV;
        failed += su_cli_verify_one(sub, argv[i], a.id, &keys);
        apr_pool_destroy(sub);
    }
    if (fflush(stdout) != 0)
        return SU_CLI_EXIT_FAIL;
    return failed ? SU_CLI_EXIT_FAIL : SU_CLI_EXIT_OK;
}
