/*
 * secupload: the operator's command-line tool (SPEC §7).
 *
 *   keygen FILE                       a new key-encryption key, mode 0400
 *   decrypt FILE --key K... [-o OUT]  plaintext, tag checked first
 *   verify FILE... --key K...         integrity of stored files
 *   rewrap --storage DIR --from K... --to K [--dry-run]   key rotation
 *   fsck --storage DIR [--redis ...] [--key K...] [--repair] [--backfill-iv]
 *
 * Everything cryptographic goes through the core (su_key, su_format); this
 * file only parses arguments, walks the storage directory and reports.
 * Exit codes: 0 success, 1 failure, 2 usage error, 3 environment error.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include <apr_general.h>
#include <apr_hash.h>
#include <apr_pools.h>
#include <apr_strings.h>
#include <apr_tables.h>

#include "su_common.h"
#include "su_defaults.h"
#include "su_format.h"
#include "su_hasher.h"
#include "su_key.h"
#include "su_redis.h"
#include "su_util.h"
#include "su_store.h"

#ifndef PACKAGE_VERSION
#define PACKAGE_VERSION "unknown"
#endif

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
#define SU_CLI_REWRAP_SUFFIX ".rewrap.tmp"
#define SU_CLI_ENC_SUFFIX    ".enc"
#define SU_CLI_OVERHEAD      (SU_FMT_HEADER_LEN + SU_FMT_TAG_LEN)

/* ------------------------------------------------------------ messages */

static void su_cli_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void su_cli_err(const char *fmt, ...)
{
    va_list ap;

    fputs("secupload: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

static int su_cli_usage_error(const char *cmd, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int su_cli_usage_error(const char *cmd, const char *fmt, ...)
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
static const char *su_cli_printable(apr_pool_t *p, const char *s)
{
    char *out = apr_pstrdup(p, s), *c;

    for (c = out; *c; c++)
        if ((unsigned char)*c < 0x20 || (unsigned char)*c == 0x7f)
            *c = '?';
    return out;
}

static const char su_cli_exit_help[] =
    "Exit status:\n"
    "  0  success\n"
    "  1  failure (verification failed, file exists, problems found, ...)\n"
    "  2  usage error\n"
    "  3  environment error (key file unusable, storage unreadable,\n"
    "     Redis unreachable)\n";

/* ------------------------------------------------------------ options */

/* getopt_long over one subcommand's arguments; argv[0] is the command. */
typedef struct su_cli_opts {
    const char *cmd;
    const char *shortopts;
    const struct option *longopts;
} su_cli_opts_t;

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

/* ------------------------------------------------------------ keys */

typedef struct su_cli_keys {
    const su_kek_t *k[SU_CLI_MAX_KEYS];
    int n;
} su_cli_keys_t;

/* Paths collected while parsing, loaded once the command line is valid. */
typedef struct su_cli_paths {
    const char *v[SU_CLI_MAX_KEYS];
    int n;
} su_cli_paths_t;

static int su_cli_add_path(const char *cmd, su_cli_paths_t *ps, const char *path)
{
    if (ps->n >= SU_CLI_MAX_KEYS)
        return su_cli_usage_error(cmd, "%s: at most %d key files", cmd,
                                  SU_CLI_MAX_KEYS);
    ps->v[ps->n++] = path;
    return SU_CLI_EXIT_OK;
}

static int su_cli_load_keys(apr_pool_t *p, const su_cli_paths_t *ps,
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

/* The first 16 bytes (magic, key id) and the size of a stored file. */
typedef struct su_cli_head {
    int open_errno;          /* 0 when the file could be read */
    int regular;
    uint64_t size;
    int have_prefix;         /* 16 bytes could be read */
    unsigned char prefix[SU_FMT_MAGIC_LEN + SU_KEY_ID_LEN];
} su_cli_head_t;

static void su_cli_read_head(const char *path, su_cli_head_t *h)
{
    struct stat st;
    ssize_t n;
    int fd;

    memset(h, 0, sizeof *h);
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        h->open_errno = errno ? errno : EIO;
        return;
    }
    if (fstat(fd, &st) == 0) {
        h->regular = S_ISREG(st.st_mode);
        h->size = st.st_size > 0 ? (uint64_t)st.st_size : 0;
    }
    if (h->regular) {
        do {
            n = pread(fd, h->prefix, sizeof h->prefix, 0);
        } while (n < 0 && errno == EINTR);
        h->have_prefix = n == (ssize_t)sizeof h->prefix;
    }
    close(fd);
}

static const char *su_cli_hex(apr_pool_t *p, const unsigned char *b, size_t n)
{
    char *out = apr_palloc(p, 2 * n + 1);

    su_util_hex(out, b, n);
    return out;
}

static const char *su_cli_head_keyid(apr_pool_t *p, const su_cli_head_t *h)
{
    return su_cli_hex(p, h->prefix + SU_FMT_MAGIC_LEN, SU_KEY_ID_LEN);
}

static int su_cli_have_keyid(const su_cli_keys_t *keys, const unsigned char *id)
{
    int i;

    for (i = 0; i < keys->n; i++)
        if (memcmp(keys->k[i]->id, id, SU_KEY_ID_LEN) == 0)
            return 1;
    return 0;
}

/* Why a file failed: looked up afterwards from what can be seen without
 * any key, so the message never depends on secret material. */
static const char *su_cli_integrity_reason(apr_pool_t *p, const su_cli_head_t *h,
                                           const su_cli_keys_t *keys)
{
    if (!h->have_prefix)
        return "too short to be a stored file";
    if (memcmp(h->prefix, SU_FMT_MAGIC, SU_FMT_MAGIC_LEN) != 0)
        return "not a stored file (bad magic or unknown version)";
    if (h->size < SU_FMT_MIN_FILE || (h->size - SU_CLI_OVERHEAD) % SU_FMT_BLOCK)
        return "wrong size (truncated or extended)";
    if (!su_cli_have_keyid(keys, h->prefix + SU_FMT_MAGIC_LEN))
        return apr_psprintf(p, "no key given for key id %s",
                            su_cli_head_keyid(p, h));
    return "integrity check failed (modified file or wrong key)";
}

static const char *su_cli_reason(apr_pool_t *p, const char *path, su_err_t rv,
                                 const su_cli_keys_t *keys)
{
    su_cli_head_t h;

    su_cli_read_head(path, &h);
    if (h.open_errno == ENOENT || h.open_errno == ENOTDIR)
        return "no such file";
    if (h.open_errno != 0)
        return apr_psprintf(p, "cannot open: %s", strerror(h.open_errno));
    if (!h.regular)
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

static int su_cli_keygen(apr_pool_t *p, int argc, char **argv)
{
    static const struct option lo[] = {
        {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
    const su_cli_opts_t o = {"keygen", ":h", lo};
    int c;

    while ((c = su_cli_next_opt(&o, argc, argv)) != -1) {
        if (c == 'h') {
            fputs(su_cli_keygen_help, stdout);
            fputs(su_cli_exit_help, stdout);
            return SU_CLI_EXIT_OK;
        }
        return SU_CLI_EXIT_USAGE;
    }
    if (argc - optind != 1)
        return su_cli_usage_error("keygen", "keygen: expected exactly one FILE");
    return su_cli_keygen_run(p, argv[optind]);
}

/* ------------------------------------------------------------ decrypt */

static const char su_cli_decrypt_help[] =
    "Usage: secupload decrypt FILE --key KEYFILE [--key KEYFILE...] [-o OUT]\n"
    "Decrypt a stored file to standard output (or OUT). The whole file is\n"
    "authenticated before the first byte is written; a file that fails\n"
    "writes nothing.\n"
    "  -k, --key KEYFILE   a key file to try (repeat for several)\n"
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

static int su_cli_decrypt_run(apr_pool_t *p, const char *file, const char *out,
                              const su_cli_keys_t *keys)
{
    su_cli_sink_t sink = {-1, 0};
    int rc = su_cli_open_output(out, &sink.fd);
    su_err_t rv;

    if (rc != SU_CLI_EXIT_OK)
        return rc;
    rv = su_fmt_file_decrypt(p, file, keys->k, keys->n, su_cli_sink_write, &sink);
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

static int su_cli_decrypt(apr_pool_t *p, int argc, char **argv)
{
    static const struct option lo[] = {
        {"key", required_argument, NULL, 'k'},
        {"output", required_argument, NULL, 'o'},
        {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
    const su_cli_opts_t o = {"decrypt", ":k:o:h", lo};
    su_cli_paths_t kp = {{NULL}, 0};
    su_cli_keys_t keys;
    const char *out = NULL;
    int c, rc;

    while ((c = su_cli_next_opt(&o, argc, argv)) != -1) {
        if (c == 'h') {
            fputs(su_cli_decrypt_help, stdout);
            fputs(su_cli_exit_help, stdout);
            return SU_CLI_EXIT_OK;
        }
        if (c == 'o')
            out = optarg;
        else if (c != 'k')
            return SU_CLI_EXIT_USAGE;
        else if ((rc = su_cli_add_path("decrypt", &kp, optarg)) != 0)
            return rc;
    }
    if (argc - optind != 1)
        return su_cli_usage_error("decrypt", "decrypt: expected exactly one FILE");
    if (kp.n == 0)
        return su_cli_usage_error("decrypt", "decrypt: at least one --key is required");
    if ((rc = su_cli_load_keys(p, &kp, &keys)) != SU_CLI_EXIT_OK)
        return rc;
    return su_cli_decrypt_run(p, argv[optind], out, &keys);
}

/* ------------------------------------------------------------ verify */

static const char su_cli_verify_help[] =
    "Usage: secupload verify FILE... --key KEYFILE [--key KEYFILE...]\n"
    "Check stored files completely (format, key, tag, padding) without\n"
    "writing any plaintext. One line per file:\n"
    "  OK <file> <plaintext size> key <key id>\n"
    "  FAILED <file>: <reason>\n"
    "  -k, --key KEYFILE   a key file to try (repeat for several)\n";

static int su_cli_verify_one(apr_pool_t *p, const char *file,
                             const su_cli_keys_t *keys)
{
    uint64_t size = 0;
    su_err_t rv = su_fmt_file_verify(p, file, keys->k, keys->n, &size);
    su_cli_head_t h;

    if (rv == SU_OK) {
        su_cli_read_head(file, &h);
        printf("OK %s %llu key %s\n", file, (unsigned long long)size,
               h.have_prefix ? su_cli_head_keyid(p, &h) : "?");
        return 0;
    }
    printf("FAILED %s: %s\n", file, su_cli_reason(p, file, rv, keys));
    return 1;
}

static int su_cli_verify(apr_pool_t *p, int argc, char **argv)
{
    static const struct option lo[] = {
        {"key", required_argument, NULL, 'k'},
        {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
    const su_cli_opts_t o = {"verify", ":k:h", lo};
    su_cli_paths_t kp = {{NULL}, 0};
    su_cli_keys_t keys;
    int c, rc, i, failed = 0;

    while ((c = su_cli_next_opt(&o, argc, argv)) != -1) {
        if (c == 'h') {
            fputs(su_cli_verify_help, stdout);
            fputs(su_cli_exit_help, stdout);
            return SU_CLI_EXIT_OK;
        }
        if (c != 'k')
            return SU_CLI_EXIT_USAGE;
        if ((rc = su_cli_add_path("verify", &kp, optarg)) != 0)
            return rc;
    }
    if (argc - optind < 1)
        return su_cli_usage_error("verify", "verify: expected at least one FILE");
    if (kp.n == 0)
        return su_cli_usage_error("verify", "verify: at least one --key is required");
    if ((rc = su_cli_load_keys(p, &kp, &keys)) != SU_CLI_EXIT_OK)
        return rc;
    for (i = optind; i < argc; i++) {
        apr_pool_t *sub;
        if (apr_pool_create(&sub, p) != APR_SUCCESS)
            return SU_CLI_EXIT_ENV;
        failed += su_cli_verify_one(sub, argv[i], &keys);
        apr_pool_destroy(sub);
    }
    if (fflush(stdout) != 0)
        return SU_CLI_EXIT_FAIL;
    return failed ? SU_CLI_EXIT_FAIL : SU_CLI_EXIT_OK;
}

/* ------------------------------------------------------------ storage walk */

typedef enum su_cli_kind {
    SU_CLI_STORED,       /* DIR/xx/<id>.enc */
    SU_CLI_TEMP,         /* DIR/xx/.tmp-* or DIR/xx/<id>.enc.rewrap.tmp */
    SU_CLI_UNEXPECTED    /* anything else */
} su_cli_kind_t;

typedef struct su_cli_entry {
    su_cli_kind_t kind;
    const char *id;      /* SU_CLI_STORED only */
    const char *path;
    time_t mtime;
} su_cli_entry_t;

typedef struct su_cli_walk {
    apr_pool_t *p;
    const char *dir;
    apr_array_header_t *entries;   /* su_cli_entry_t * */
    long seen;
} su_cli_walk_t;

static int su_cli_is_hex2(const char *s)
{
    return strlen(s) == 2 && strspn(s, "0123456789abcdef") == 2;
}

/* "<id>.enc" whose id starts with the subdirectory's two digits. */
static const char *su_cli_stored_id(apr_pool_t *p, const char *sub,
                                    const char *name)
{
    const char *id;

    if (strlen(name) != SU_ID_HEX_LEN + strlen(SU_CLI_ENC_SUFFIX)
        || strcmp(name + SU_ID_HEX_LEN, SU_CLI_ENC_SUFFIX) != 0
        || strncmp(name, sub, 2) != 0)
        return NULL;
    id = apr_pstrndup(p, name, SU_ID_HEX_LEN);
    return su_store_valid_id(id) ? id : NULL;
}

static int su_cli_is_temp(apr_pool_t *p, const char *sub, const char *name)
{
    size_t n = strlen(name), sl = strlen(SU_CLI_REWRAP_SUFFIX);

    if (su_store_is_temp(name))
        return 1;
    return n > sl && strcmp(name + n - sl, SU_CLI_REWRAP_SUFFIX) == 0
           && su_cli_stored_id(p, sub, apr_pstrndup(p, name, n - sl)) != NULL;
}

static int su_cli_walk_add(su_cli_walk_t *w, su_cli_kind_t kind, const char *id,
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

static su_cli_kind_t su_cli_classify(apr_pool_t *p, const char *sub,
                                     const char *name, const struct stat *st,
                                     const char **id)
{
    *id = NULL;
    if (!S_ISREG(st->st_mode))
        return SU_CLI_UNEXPECTED;
    if ((*id = su_cli_stored_id(p, sub, name)) != NULL)
        return SU_CLI_STORED;
    if (su_cli_is_temp(p, sub, name))
        return SU_CLI_TEMP;
    return SU_CLI_UNEXPECTED;
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
        su_cli_kind_t kind;
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
    if (S_ISDIR(st.st_mode) && su_cli_is_hex2(name))
        return su_cli_walk_subdir(w, name);
    /* the module's markers of metadata to remove: their hashes show as
     * "missing" until the module (or an operator) removes them */
    if (S_ISDIR(st.st_mode) && strcmp(name, SU_STORE_UNSETTLED) == 0)
        return SU_CLI_EXIT_OK;
    return su_cli_walk_add(w, SU_CLI_UNEXPECTED, NULL,
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
static int su_cli_walk(apr_pool_t *p, const char *dir, apr_array_header_t **out)
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

static void su_cli_rewrap_one(apr_pool_t *p, su_cli_rewrap_t *rw,
                              const su_cli_entry_t *e)
{
    uint64_t size = 0;
    const char *oldid;
    su_cli_head_t h;
    su_err_t rv;

    su_cli_read_head(e->path, &h);
    if (!h.have_prefix || memcmp(h.prefix, SU_FMT_MAGIC, SU_FMT_MAGIC_LEN) != 0) {
        su_cli_rewrap_fail(p, rw, e, SU_ERR_INTEGRITY);
        return;
    }
    oldid = su_cli_head_keyid(p, &h);
    if (memcmp(h.prefix + SU_FMT_MAGIC_LEN, rw->to->id, SU_KEY_ID_LEN) == 0) {
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
        if (e->kind != SU_CLI_STORED)
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

static int su_cli_rewrap(apr_pool_t *p, int argc, char **argv)
{
    static const struct option lo[] = {
        {"storage", required_argument, NULL, 's'},
        {"from", required_argument, NULL, 'f'},
        {"to", required_argument, NULL, 't'},
        {"dry-run", no_argument, NULL, 'n'},
        {"verbose", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
    const su_cli_opts_t o = {"rewrap", ":s:f:t:nvh", lo};
    su_cli_rewrap_t rw;
    su_cli_paths_t fp = {{NULL}, 0}, tp = {{NULL}, 0};
    su_cli_keys_t to;
    int c, rc;

    memset(&rw, 0, sizeof rw);
    while ((c = su_cli_next_opt(&o, argc, argv)) != -1) {
        switch (c) {
        case 'h':
            fputs(su_cli_rewrap_help, stdout);
            fputs(su_cli_exit_help, stdout);
            return SU_CLI_EXIT_OK;
        case 's': rw.dir = optarg; break;
        case 'f':
            if ((rc = su_cli_add_path("rewrap", &fp, optarg)) != 0)
                return rc;
            break;
        case 't':
            if (tp.n > 0)
                return su_cli_usage_error("rewrap", "rewrap: --to given twice");
            tp.v[tp.n++] = optarg;
            break;
        case 'n': rw.dry_run = 1; break;
        case 'v': rw.verbose = 1; break;
        default: return SU_CLI_EXIT_USAGE;
        }
    }
    if (optind != argc)
        return su_cli_usage_error("rewrap", "rewrap: unexpected argument %s",
                                  argv[optind]);
    if (rw.dir == NULL || fp.n == 0 || tp.n == 0)
        return su_cli_usage_error("rewrap", "rewrap: --storage, --from and --to "
                                  "are required");
    if ((rc = su_cli_load_keys(p, &fp, &rw.from)) != SU_CLI_EXIT_OK
        || (rc = su_cli_load_keys(p, &tp, &to)) != SU_CLI_EXIT_OK)
        return rc;
    rw.to = to.k[0];
    return su_cli_rewrap_run(p, &rw);
}

/* ------------------------------------------------------------ fsck */

static const char su_cli_fsck_help[] =
    "Usage: secupload fsck --storage DIR [--redis HOST:PORT|/path.sock]\n"
    "                      [--prefix P] [--password-file F] [--db N]\n"
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
    "  in-progress-temp <path>  a recent temporary file (not a problem)\n"
    "  removed <path>           a stale temporary file removed by --repair\n"
    "then a summary line starting with \"summary:\".\n"
    "  -s, --storage DIR        the storage directory\n"
    "  -r, --redis ADDR         Redis address (default " SU_DEFAULT_REDIS_HOST ":"
                                SU_STR(SU_DEFAULT_REDIS_PORT) ")\n"
    "  -p, --prefix P           key prefix (default " SU_DEFAULT_REDIS_PREFIX ")\n"
    "      --password-file F    read the Redis password from F\n"
    "      --db N               Redis database (default "
                                SU_STR(SU_DEFAULT_REDIS_DB) ")\n"
    "      --timeout MS         Redis connect/command timeout (default "
                                SU_STR(SU_DEFAULT_REDIS_TIMEOUT_MS) ")\n"
    "  -k, --key KEYFILE        verify every stored file with these keys\n"
    "      --repair             remove stale temporary files (nothing else)\n"
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
                  inprogress, removed, verified, mismatch, noiv, recorded;
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

static void su_cli_fsck_add_meta(apr_pool_t *p, su_cli_fsck_t *fk, const char *id)
{
    if (su_store_valid_id(id)) {
        apr_hash_set(fk->meta, id, APR_HASH_KEY_STRING, id);
        APR_ARRAY_PUSH(fk->meta_ids, const char *) = id;
        return;
    }
    printf("unexpected redis:%sfile:%s\n", su_cli_printable(p, fk->rconf.prefix),
           su_cli_printable(p, id));
    fk->unexpected++;
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
        printf("corrupt %s\n", id);    /* changed after verification */
        fk->corrupt++;
        return SU_CLI_EXIT_OK;
    }
    if (!same) {
        printf("mismatch %s\n", id);
        fk->mismatch++;
        return SU_CLI_EXIT_OK;
    }
    rv = su_redis_meta_add(fk->redis, p, id, "iv", iv, &added);
    /* not found: deleted meanwhile, and not brought back */
    if (rv != SU_OK && rv != SU_ERR_NOT_FOUND) {
        su_cli_err("redis: %s", su_redis_errstr(fk->redis));
        return SU_CLI_EXIT_ENV;
    }
    if (added) {
        printf("iv-recorded %s\n", id);
        fk->recorded++;
    }
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
    if (want == NULL) {
        printf("no-iv %s\n", id);
        fk->noiv++;
    } else if (iv != NULL && strcmp(want, iv) != 0) {
        printf("mismatch %s\n", id);
        fk->mismatch++;
    }
    return SU_CLI_EXIT_OK;
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
    if (rv != SU_OK) {
        printf("corrupt %s\n", e->id);
        fk->corrupt++;
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
    if (!has) {
        printf("orphan %s\n", e->id);
        fk->orphan++;
    }
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
        printf("in-progress-temp %s\n", shown);
        fk->inprogress++;
        return;
    }
    printf("stale-temp %s\n", shown);
    fk->stale++;
    if (!fk->repair)
        return;
    if (unlink(e->path) == 0 || errno == ENOENT) {
        printf("removed %s\n", shown);
        fk->removed++;
    } else {
        su_cli_err("cannot remove %s: %s", shown, strerror(errno));
    }
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
        if (e->kind == SU_CLI_STORED) {
            rc = su_cli_fsck_stored(sub, fk, e);
        } else if (e->kind == SU_CLI_TEMP) {
            su_cli_fsck_temp(sub, fk, e, now);
        } else {
            printf("unexpected %s\n", su_cli_printable(sub, e->path));
            fk->unexpected++;
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
        if (e->kind == SU_CLI_STORED)
            apr_hash_set(ondisk, e->id, APR_HASH_KEY_STRING, e);
    }
    for (i = 0; i < fk->meta_ids->nelts; i++) {
        const char *id = APR_ARRAY_IDX(fk->meta_ids, i, const char *);
        if (apr_hash_get(ondisk, id, APR_HASH_KEY_STRING) != NULL)
            continue;
        if (lstat(su_store_path(p, fk->dir, id), &st) == 0 && S_ISREG(st.st_mode))
            continue;
        printf("missing %s\n", id);
        fk->missing++;
    }
}

static int su_cli_fsck_summary(const su_cli_fsck_t *fk)
{
    unsigned long problems = fk->orphan + fk->missing + fk->corrupt
                             + fk->unexpected + (fk->stale - fk->removed)
                             + fk->mismatch + fk->noiv;

    printf("summary: files=%lu metadata=%d verified=%lu orphan=%lu missing=%lu "
           "corrupt=%lu stale-temp=%lu unexpected=%lu in-progress-temp=%lu "
           "removed=%lu mismatch=%lu no-iv=%lu iv-recorded=%lu problems=%lu\n",
           fk->files, fk->meta_ids->nelts, fk->verified, fk->orphan, fk->missing,
           fk->corrupt, fk->stale, fk->unexpected, fk->inprogress, fk->removed,
           fk->mismatch, fk->noiv, fk->recorded, problems);
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
    return su_cli_fsck_summary(fk);
}

enum { SU_CLI_OPT_PASSFILE = 256, SU_CLI_OPT_DB, SU_CLI_OPT_TIMEOUT,
       SU_CLI_OPT_REPAIR, SU_CLI_OPT_BACKFILL };

static int su_cli_fsck_opt(apr_pool_t *p, su_cli_fsck_t *fk, int c,
                           const char *arg, su_cli_paths_t *kp)
{
    const char *err = NULL;
    apr_int64_t v;

    switch (c) {
    case 's': fk->dir = arg; return SU_CLI_EXIT_OK;
    case 'p': fk->rconf.prefix = arg; return SU_CLI_EXIT_OK;
    case 'k': return su_cli_add_path("fsck", kp, arg);
    case SU_CLI_OPT_PASSFILE: fk->password_file = arg; return SU_CLI_EXIT_OK;
    case SU_CLI_OPT_REPAIR: fk->repair = 1; return SU_CLI_EXIT_OK;
    case SU_CLI_OPT_BACKFILL: fk->backfill = 1; return SU_CLI_EXIT_OK;
    case 'r':
        if (su_redis_parse_server(p, arg, &fk->rconf, &err) != SU_OK)
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

static int su_cli_fsck(apr_pool_t *p, int argc, char **argv)
{
    static const struct option lo[] = {
        {"storage", required_argument, NULL, 's'},
        {"redis", required_argument, NULL, 'r'},
        {"prefix", required_argument, NULL, 'p'},
        {"password-file", required_argument, NULL, SU_CLI_OPT_PASSFILE},
        {"db", required_argument, NULL, SU_CLI_OPT_DB},
        {"timeout", required_argument, NULL, SU_CLI_OPT_TIMEOUT},
        {"key", required_argument, NULL, 'k'},
        {"repair", no_argument, NULL, SU_CLI_OPT_REPAIR},
        {"backfill-iv", no_argument, NULL, SU_CLI_OPT_BACKFILL},
        {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
    const su_cli_opts_t o = {"fsck", ":s:r:p:k:h", lo};
    su_cli_paths_t kp = {{NULL}, 0};
    su_cli_fsck_t fk;
    int c, rc;

    memset(&fk, 0, sizeof fk);
    su_redis_conf_defaults(&fk.rconf);
    while ((c = su_cli_next_opt(&o, argc, argv)) != -1) {
        if (c == 'h') {
            fputs(su_cli_fsck_help, stdout);
            fputs(su_cli_exit_help, stdout);
            return SU_CLI_EXIT_OK;
        }
        if (c == '?' || (rc = su_cli_fsck_opt(p, &fk, c, optarg, &kp)) != 0)
            return SU_CLI_EXIT_USAGE;
    }
    if (optind != argc)
        return su_cli_usage_error("fsck", "fsck: unexpected argument %s",
                                  argv[optind]);
    if (fk.dir == NULL)
        return su_cli_usage_error("fsck", "fsck: --storage is required");
    /* an IV is only recorded for a file shown to be the one uploaded */
    if (fk.backfill && kp.n == 0)
        return su_cli_usage_error("fsck", "fsck: --backfill-iv needs --key");
    if ((rc = su_cli_load_keys(p, &kp, &fk.keys)) != SU_CLI_EXIT_OK)
        return rc;
    return su_cli_fsck_run(p, &fk);
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
