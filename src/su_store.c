/*
 * The storage directory's layout and its one atomic write (su_store.h): ids
 * and paths, an upload's or a rewrap's temp file written in full, fsynced
 * and renamed into place, leftovers swept, names classified for fsck, and
 * the markers of unsettled uploads.
 */
#include "su_store.h"
#include "su_fault.h"
#include "su_util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <apr_strings.h>
#include <openssl/rand.h>

/* Large enough that a multi-GB upload costs few write(2) calls. */
#define SU_STORE_BUF (256 * 1024)
/* With writeback on, each this many bytes written are handed to the disk
 * at once, so that the final fsync finds little left to do. */
#define SU_STORE_WB_STEP ((apr_off_t)8 * 1024 * 1024)

struct su_store_file {
    apr_pool_t *pool;
    int fd;
    int committed;
    int new_subdir;          /* created here: its entry needs an fsync too */
    int replace;             /* replaces a file (su_store_replace) */
    const char *dir;
    const char *subdir;
    const char *tmp_path;
    const char *final_path;
    unsigned char *buf;
    apr_size_t used;
    apr_off_t written;
    int writeback;
    apr_off_t wb_start;      /* first byte not yet handed to the disk */
};

int su_store_valid_id(const char *id)
{
    int i;
    if (id == NULL)
        return 0;
    for (i = 0; i < SU_ID_HEX_LEN; i++) {
        char c = id[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            return 0;
    }
    return id[SU_ID_HEX_LEN] == '\0';
}

const char *su_store_url_id(const char *uri)
{
    const char *slash = strrchr(uri, '/');
    const char *seg = slash ? slash + 1 : uri;

    if (*seg == '\0' || su_store_valid_id(seg))
        return seg;
    return NULL;
}

su_err_t su_store_new_id(char buf[SU_ID_HEX_LEN + 1])
{
    unsigned char raw[SU_ID_HEX_LEN / 2];

    if (su_fault("rand") || RAND_bytes(raw, sizeof(raw)) != 1)
        return SU_ERR_INTERNAL;
    su_util_hex(buf, raw, sizeof(raw));
    return SU_OK;
}

const char *su_store_relpath(apr_pool_t *p, const char *id)
{
    return apr_psprintf(p, "%.2s/%s" SU_STORE_SUFFIX, id, id);
}

const char *su_store_path(apr_pool_t *p, const char *dir, const char *id)
{
    return apr_psprintf(p, "%s/%.2s/%s" SU_STORE_SUFFIX, dir, id, id);
}

const char *su_store_tus_path(apr_pool_t *p, const char *dir, const char *id)
{
    return apr_psprintf(p, "%s/%.2s/" SU_STORE_TUS_PREFIX "%s", dir, id, id);
}

su_err_t su_store_errno_kind(int e)
{
#ifdef EDQUOT
    if (e == EDQUOT)
        return SU_ERR_NO_SPACE;
#endif
    return e == ENOSPC ? SU_ERR_NO_SPACE : SU_ERR_INTERNAL;
}

static su_err_t su_store_errno(apr_pool_t *p, int e, const char *what,
                               const char *path, const char **err)
{
    if (err)
        *err = apr_psprintf(p, "%s %s: %s", what, path, strerror(e));
    return su_store_errno_kind(e);
}

static apr_status_t su_store_cleanup(void *data)
{
    su_store_file_t *f = data;
    su_store_discard(f);
    return APR_SUCCESS;
}

void su_store_discard(su_store_file_t *f)
{
    if (f->fd >= 0) {
        close(f->fd);
        f->fd = -1;
    }
    if (!f->committed && f->tmp_path) {
        unlink(f->tmp_path);
        f->tmp_path = NULL;
    }
}

static su_store_file_t *su_store_file_new(apr_pool_t *p, const char *subdir,
                                          const char *final_path)
{
    su_store_file_t *f = apr_pcalloc(p, sizeof(*f));

    f->pool = p;
    f->fd = -1;
    f->subdir = subdir;
    f->final_path = final_path;
    return f;
}

/* Create the temp file f->tmp_path: ours only once open succeeded. */
static int su_store_open_tmp(su_store_file_t *f)
{
    f->fd = open(f->tmp_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW,
                 0600);
    return f->fd;
}

/* The temp file is open: its buffer, and the cleanup that removes it. */
static void su_store_ready(su_store_file_t *f)
{
    f->buf = apr_palloc(f->pool, SU_STORE_BUF);
    apr_pool_cleanup_register(f->pool, f, su_store_cleanup, apr_pool_cleanup_null);
}

su_err_t su_store_create(apr_pool_t *p, const char *dir, const char *id,
                         su_store_file_t **out, const char **err)
{
    su_store_file_t *f;
    const char *subdir;

    if (!su_store_valid_id(id)) {
        *err = "invalid file id";
        return SU_ERR_INTERNAL;
    }
    subdir = apr_psprintf(p, "%s/%.2s", dir, id);
    f = su_store_file_new(p, subdir, su_store_path(p, dir, id));
    f->dir = dir;
    if (mkdir(f->subdir, 0700) == 0)
        f->new_subdir = 1;
    else if (errno != EEXIST)
        return su_store_errno(p, errno, "cannot create directory", f->subdir, err);

    f->tmp_path = apr_psprintf(p, "%s/" SU_STORE_TMP_PREFIX "%s", f->subdir, id);
    if (su_store_open_tmp(f) < 0) {
        int e = errno;
        f->tmp_path = NULL;  /* not ours: never unlink another writer's file */
        return su_store_errno(p, e, "cannot create", f->subdir, err);
    }
    su_store_ready(f);
    *out = f;
    return SU_OK;
}

su_err_t su_store_replace(apr_pool_t *p, const char *path, uid_t uid, gid_t gid,
                          su_store_file_t **out, const char **err)
{
    su_store_file_t *f = su_store_file_new(p, su_util_parent(p, path), path);
    const char *tmp = apr_pstrcat(p, path, SU_STORE_REWRAP_SUFFIX, NULL);

    f->replace = 1;
    f->tmp_path = tmp;
    if (su_store_open_tmp(f) < 0 && errno == EEXIST && unlink(tmp) == 0)
        su_store_open_tmp(f);
    if (f->fd < 0) {
        f->tmp_path = NULL;  /* not ours: never unlink it */
        return su_store_errno(p, errno, "cannot create", tmp, err);
    }
    su_store_ready(f);
    if ((uid != geteuid() || gid != getegid()) && fchown(f->fd, uid, gid) != 0)
        return su_store_errno(p, errno, "cannot change the owner of", tmp, err);
    *out = f;
    return SU_OK;
}

void su_store_writeback(su_store_file_t *f)
{
    f->writeback = 1;
}

/*
 * Start (not wait for) the write-out of what was written since the last
 * call. A failure here is not reported: the fsync before commit reports
 * any write error, and it is the one that counts.
 */
static void su_store_kick(su_store_file_t *f)
{
#ifdef SYNC_FILE_RANGE_WRITE
    if (f->writeback && f->written - f->wb_start >= SU_STORE_WB_STEP) {
        (void)sync_file_range(f->fd, f->wb_start, f->written - f->wb_start,
                              SYNC_FILE_RANGE_WRITE);
        f->wb_start = f->written;
    }
#else
    (void)f;
#endif
}

/* All of buf to fd, across short writes and signals: 0, or -1 with errno. */
static int su_store_fd_write(int fd, const void *buf, size_t len)
{
    const char *b = buf;

    while (len > 0) {
        ssize_t n = write(fd, b, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        b += n;
        len -= (size_t)n;
    }
    return 0;
}

static su_err_t su_store_write_all(su_store_file_t *f, const unsigned char *buf,
                                   apr_size_t len, const char **err)
{
    if (su_store_fd_write(f->fd, buf, len) != 0)
        return su_store_errno(f->pool, errno, "cannot write", f->tmp_path, err);
    f->written += (apr_off_t)len;
    su_store_kick(f);
    return SU_OK;
}

/* The buffer written out, and emptied whatever the outcome. */
static su_err_t su_store_drain(su_store_file_t *f, const char **err)
{
    su_err_t rv = su_store_write_all(f, f->buf, f->used, err);

    f->used = 0;
    return rv;
}

su_err_t su_store_write(su_store_file_t *f, const void *buf, apr_size_t len,
                        const char **err)
{
    su_err_t rv;

    if (f->fd < 0) {
        *err = "storage file is closed";
        return SU_ERR_INTERNAL;
    }
    if (f->used + len <= SU_STORE_BUF) {
        memcpy(f->buf + f->used, buf, len);
        f->used += len;
        return SU_OK;
    }
    if ((rv = su_store_drain(f, err)) != SU_OK)
        return rv;
    /* a piece as large as the buffer goes straight out, uncopied */
    if (len >= SU_STORE_BUF)
        return su_store_write_all(f, buf, len, err);
    memcpy(f->buf, buf, len);
    f->used = len;
    return SU_OK;
}

su_err_t su_store_space(su_store_file_t *f, apr_size_t want, unsigned char **at,
                        const char **err)
{
    if (f->fd < 0 || want > SU_STORE_BUF) {
        *err = "storage file is closed";
        return SU_ERR_INTERNAL;
    }
    if (SU_STORE_BUF - f->used < want) {
        su_err_t rv = su_store_drain(f, err);
        if (rv != SU_OK)
            return rv;
    }
    *at = f->buf + f->used;
    return SU_OK;
}

void su_store_advance(su_store_file_t *f, apr_size_t n)
{
    f->used += n;
}

su_err_t su_store_flush(su_store_file_t *f, int sync, const char **err)
{
    su_err_t rv;

    if (f->fd < 0) {
        *err = "storage file is closed";
        return SU_ERR_INTERNAL;
    }
    if ((rv = su_store_drain(f, err)) != SU_OK)
        return rv;
    if (sync && su_fault("fsync")) {
        errno = EIO;
        return su_store_errno(f->pool, errno, "cannot fsync", f->tmp_path, err);
    }
    if (sync && fsync(f->fd) != 0)
        return su_store_errno(f->pool, errno, "cannot fsync", f->tmp_path, err);
    return SU_OK;
}

su_err_t su_store_commit(su_store_file_t *f, int sync, const char **err)
{
    if (f->fd < 0 || f->tmp_path == NULL) {
        *err = "storage file is closed";
        return SU_ERR_INTERNAL;
    }
    if (close(f->fd) != 0) {
        f->fd = -1;
        return su_store_errno(f->pool, errno, "cannot close", f->tmp_path, err);
    }
    f->fd = -1;
    if (f->replace)
        su_fault_exit("rewrap-rename");
    if (rename(f->tmp_path, f->final_path) != 0)
        return su_store_errno(f->pool, errno, "cannot rename into", f->final_path, err);
    f->committed = 1;
    if (sync && (su_util_fsync_dir(f->subdir) != 0
                 || (f->new_subdir && su_util_fsync_dir(f->dir) != 0))) {
        /* The rename may not survive a crash: a new file is not claimed
         * stored. A replaced one stays: the old file is gone, and after a
         * crash either one is complete. */
        int e = errno;
        if (!f->replace)
            unlink(f->final_path);
        return su_store_errno(f->pool, e, "cannot fsync directory", f->subdir, err);
    }
    return SU_OK;
}

apr_off_t su_store_written(const su_store_file_t *f)
{
    return f->written + (apr_off_t)f->used;
}

su_err_t su_store_remove(apr_pool_t *p, const char *dir, const char *id,
                         int sync, const char **err)
{
    const char *path = su_store_path(p, dir, id);

    if (unlink(path) != 0) {
        int e = errno;
        su_store_errno(p, e, "cannot remove", path, err);
        return e == ENOENT ? SU_ERR_NOT_FOUND : SU_ERR_INTERNAL;
    }
    if (sync)
        su_util_fsync_dir(apr_psprintf(p, "%s/%.2s", dir, id));
    return SU_OK;
}

int su_store_is_temp(const char *name)
{
    return strncmp(name, SU_STORE_TMP_PREFIX, strlen(SU_STORE_TMP_PREFIX)) == 0;
}

int su_store_is_subdir(const char *name)
{
    return strlen(name) == 2 && strspn(name, "0123456789abcdef") == 2;
}

/* "<id>.enc" (the first len bytes of name) whose id starts with sub's two
 * digits: the id into id. */
static int su_store_file_name(const char *sub, const char *name, size_t len,
                              char id[SU_ID_HEX_LEN + 1])
{
    if (len != SU_ID_HEX_LEN + strlen(SU_STORE_SUFFIX)
        || strncmp(name + SU_ID_HEX_LEN, SU_STORE_SUFFIX, strlen(SU_STORE_SUFFIX)) != 0
        || strncmp(name, sub, 2) != 0)
        return 0;
    memcpy(id, name, SU_ID_HEX_LEN);
    id[SU_ID_HEX_LEN] = '\0';
    if (su_store_valid_id(id))
        return 1;
    id[0] = '\0';
    return 0;
}

/* .tus-<id>, the id starting with the subdirectory's two digits */
static int su_store_tus_name(const char *sub, const char *name,
                             char id[SU_ID_HEX_LEN + 1])
{
    size_t n = strlen(SU_STORE_TUS_PREFIX);

    if (strncmp(name, SU_STORE_TUS_PREFIX, n) != 0
        || strlen(name + n) != SU_ID_HEX_LEN || strncmp(name + n, sub, 2) != 0
        || !su_store_valid_id(name + n))
        return 0;
    memcpy(id, name + n, SU_ID_HEX_LEN + 1);
    return 1;
}

su_store_name_t su_store_name(const char *sub, const char *name,
                              char id[SU_ID_HEX_LEN + 1])
{
    size_t n = strlen(name), sl = strlen(SU_STORE_REWRAP_SUFFIX);
    char rewrapped[SU_ID_HEX_LEN + 1];

    id[0] = '\0';
    if (su_store_file_name(sub, name, n, id))
        return SU_STORE_NAME_FILE;
    if (su_store_is_temp(name))
        return SU_STORE_NAME_TEMP;
    if (su_store_tus_name(sub, name, id))
        return SU_STORE_NAME_TUS;
    if (n > sl && strcmp(name + n - sl, SU_STORE_REWRAP_SUFFIX) == 0
        && su_store_file_name(sub, name, n - sl, rewrapped))
        return SU_STORE_NAME_TEMP;
    return SU_STORE_NAME_OTHER;
}

typedef struct su_store_sweep {
    apr_pool_t *p;
    int removed;
    const char *err;        /* the first failure */
} su_store_sweep_t;

static void su_store_sweep_fail(su_store_sweep_t *w, const char *what,
                                const char *path, int e)
{
    if (w->err == NULL)
        w->err = apr_psprintf(w->p, "%s %s: %s", what, path, strerror(e));
}

/* Regular files only, never through a symbolic link. */
static void su_store_sweep_subdir(su_store_sweep_t *w, const char *sub)
{
    int fd = open(sub, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    DIR *dh = fd >= 0 ? fdopendir(fd) : NULL;
    struct dirent *e;
    struct stat st;

    if (dh == NULL) {
        su_store_sweep_fail(w, "cannot read", sub, errno);
        if (fd >= 0)
            close(fd);
        return;
    }
    while ((e = readdir(dh)) != NULL) {
        if (!su_store_is_temp(e->d_name)
            || fstatat(dirfd(dh), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0
            || !S_ISREG(st.st_mode))
            continue;
        if (unlinkat(dirfd(dh), e->d_name, 0) == 0)
            w->removed++;
        else if (errno != ENOENT)
            su_store_sweep_fail(w, "cannot remove",
                                apr_pstrcat(w->p, sub, "/", e->d_name, NULL), errno);
    }
    closedir(dh);
}

su_err_t su_store_sweep_temps(apr_pool_t *p, const char *dir, int *removed,
                              const char **err)
{
    su_store_sweep_t w = { p, 0, NULL };
    DIR *dh = opendir(dir);
    struct dirent *e;
    struct stat st;

    if (dh == NULL)
        su_store_sweep_fail(&w, "cannot read", dir, errno);
    while (dh != NULL && (e = readdir(dh)) != NULL) {
        if (su_store_is_subdir(e->d_name)
            && fstatat(dirfd(dh), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0
            && S_ISDIR(st.st_mode))
            su_store_sweep_subdir(&w, apr_pstrcat(p, dir, "/", e->d_name, NULL));
    }
    if (dh != NULL)
        closedir(dh);
    *removed = w.removed;
    *err = w.err;
    return w.err ? SU_ERR_INTERNAL : SU_OK;
}

su_err_t su_store_mark_unsettled(apr_pool_t *p, const char *dir, const char *id,
                                 const char *note)
{
    const char *mdir = apr_pstrcat(p, dir, "/" SU_STORE_UNSETTLED, NULL);
    size_t len = note ? strlen(note) : 0;
    int fd, ok;

    if (!su_store_valid_id(id) || len > SU_STORE_NOTE_MAX)
        return SU_ERR_INTERNAL;
    if (mkdir(mdir, 0700) != 0 && errno != EEXIST)
        return SU_ERR_INTERNAL;
    fd = open(apr_pstrcat(p, mdir, "/", id, NULL),
              O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return SU_ERR_INTERNAL;
    ok = su_store_fd_write(fd, note, len) == 0 && fsync(fd) == 0;
    close(fd);
    su_util_fsync_dir(mdir);
    /* a marker without its note still settles, with empty request fields */
    return ok ? SU_OK : SU_ERR_INTERNAL;
}

const char *su_store_unsettled_note(apr_pool_t *p, const char *dir, const char *id)
{
    char *buf;
    ssize_t n;
    int fd;

    if (!su_store_valid_id(id))
        return NULL;
    fd = open(apr_pstrcat(p, dir, "/" SU_STORE_UNSETTLED "/", id, NULL),
              O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return NULL;
    buf = apr_palloc(p, SU_STORE_NOTE_MAX + 1);
    n = read(fd, buf, SU_STORE_NOTE_MAX);
    close(fd);
    if (n < 0)
        return NULL;
    buf[n] = '\0';
    return buf;
}

void su_store_clear_unsettled(apr_pool_t *p, const char *dir, const char *id)
{
    if (su_store_valid_id(id))
        unlink(apr_pstrcat(p, dir, "/" SU_STORE_UNSETTLED "/", id, NULL));
}

apr_array_header_t *su_store_unsettled(apr_pool_t *p, const char *dir,
                                       apr_int64_t *seen)
{
    const char *mdir = apr_pstrcat(p, dir, "/" SU_STORE_UNSETTLED, NULL);
    apr_array_header_t *ids;
    struct dirent *e;
    struct stat st;
    apr_int64_t m;
    DIR *dh;

    /* one stat per call: the directory is read only when it changed */
    if (stat(mdir, &st) != 0)
        return NULL;
    m = (apr_int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
    if (m == *seen)
        return NULL;
    *seen = m;
    dh = opendir(mdir);
    if (dh == NULL)
        return NULL;
    ids = apr_array_make(p, 4, sizeof(const char *));
    while ((e = readdir(dh)) != NULL && ids->nelts < 1024)
        if (su_store_valid_id(e->d_name))
            APR_ARRAY_PUSH(ids, const char *) = apr_pstrdup(p, e->d_name);
    closedir(dh);
    return ids->nelts ? ids : NULL;
}
