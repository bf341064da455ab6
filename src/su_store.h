/*
 * The storage directory and everything about its layout on disk:
 * DIR/<first 2 hex of id>/<id>.enc, the temp names beside them (an
 * upload's, a rewrap's), what a name found there is, and the one atomic
 * write (a temp file in the same directory, O_EXCL and 0600, written in
 * full, fsynced, renamed into place, the directory fsynced), so that a
 * reader never sees a half-written file.
 */
#ifndef SU_STORE_H
#define SU_STORE_H

#include <sys/types.h>
#include <apr_pools.h>
#include <apr_tables.h>
#include "su_common.h"

#define SU_ID_HEX_LEN 32
/* DIR/xx/<id>.enc: a stored file */
#define SU_STORE_SUFFIX ".enc"
/* DIR/xx/.tmp-<id>: an upload being written */
#define SU_STORE_TMP_PREFIX ".tmp-"
/* DIR/xx/<id>.enc.rewrap.tmp: a rewrap's copy of <id>.enc */
#define SU_STORE_REWRAP_SUFFIX ".rewrap.tmp"
/* DIR/xx/.tus-<id>: a resumable upload between its requests (format v2,
 * the segments so far); alive while its state in Redis is, so never a
 * leftover of a killed process (the start-up sweep leaves it alone) */
#define SU_STORE_TUS_PREFIX ".tus-"

typedef struct su_store_file su_store_file_t;

/* 32 lowercase hex digits and nothing else. */
int su_store_valid_id(const char *id);
/* The id a URL path ends in: its last segment (after the last '/'), ""
 * when that is empty (a collection), NULL unless it is a valid id. */
const char *su_store_url_id(const char *uri);
/* A new id: 128 bits from the CSPRNG as 32 lowercase hex digits (buf: 33 bytes). */
su_err_t su_store_new_id(char buf[SU_ID_HEX_LEN + 1]);
/* "ab/ab….enc", relative to the storage dir. */
const char *su_store_relpath(apr_pool_t *p, const char *id);
/* Absolute path of a stored file. */
const char *su_store_path(apr_pool_t *p, const char *dir, const char *id);
/* Absolute path of a resumable upload's file (SU_STORE_TUS_PREFIX). */
const char *su_store_tus_path(apr_pool_t *p, const char *dir, const char *id);

/*
 * Open a temp file for id under dir (creating the 0700 subdirectory as
 * needed). A cleanup on p closes it and unlinks the temp file unless it was
 * committed: any failure, abort or client hang-up leaves nothing behind.
 */
su_err_t su_store_create(apr_pool_t *p, const char *dir, const char *id,
                         su_store_file_t **out, const char **err);

/*
 * For files that will be fsynced: hand what is written to the disk as the
 * file grows (sync_file_range where the system has it), so that the fsync
 * at the end waits for the last few megabytes rather than the whole file.
 */
void su_store_writeback(su_store_file_t *f);

/* Append (buffered). ENOSPC/EDQUOT give SU_ERR_NO_SPACE. */
su_err_t su_store_write(su_store_file_t *f, const void *buf, apr_size_t len,
                        const char **err);

/*
 * Room for up to want bytes (want <= 64 KiB) at the end of the write buffer,
 * flushing it first if needed, so that ciphertext can be produced in place;
 * su_store_advance then takes the n bytes written there.
 */
su_err_t su_store_space(su_store_file_t *f, apr_size_t want, unsigned char **at,
                        const char **err);
void su_store_advance(su_store_file_t *f, apr_size_t n);

/* Flush the buffer and, when sync, fsync the temp file. */
su_err_t su_store_flush(su_store_file_t *f, int sync, const char **err);

/* Rename the temp file into place and, when sync, fsync the directory. */
su_err_t su_store_commit(su_store_file_t *f, int sync, const char **err);

/*
 * The same atomic write for replacing an existing file (a rewrap): a temp
 * file path SU_STORE_REWRAP_SUFFIX beside it, owned by uid:gid like the
 * file it replaces (a rewrap run as root leaves files the server can still
 * read), which su_store_commit renames over path: a crash at any point
 * leaves either the old file or the new one, both complete. A temp file
 * left by a crashed run is removed first: the caller holds an exclusive
 * lock on path, so no live writer can own it.
 */
su_err_t su_store_replace(apr_pool_t *p, const char *path, uid_t uid, gid_t gid,
                          su_store_file_t **out, const char **err);

/* Drop the temp file now (also what the pool cleanup does). */
void su_store_discard(su_store_file_t *f);

/* Bytes written so far (header, ciphertext, tag). */
apr_off_t su_store_written(const su_store_file_t *f);

/*
 * Markers of uploads whose metadata may linger in Redis although the upload
 * failed (DIR/.unsettled/<id>): kept on disk so that any process, of any
 * server generation, can remove that metadata once Redis answers again.
 */
#define SU_STORE_UNSETTLED ".unsettled"
/* A marker holds a note (the failed request's fields, for its audit entry
 * when another request settles it): at most this many bytes. */
#define SU_STORE_NOTE_MAX 4096
su_err_t su_store_mark_unsettled(apr_pool_t *p, const char *dir, const char *id,
                                 const char *note);
/* The note of marker id (NUL-terminated, "" if empty), or NULL. */
const char *su_store_unsettled_note(apr_pool_t *p, const char *dir, const char *id);
void su_store_clear_unsettled(apr_pool_t *p, const char *dir, const char *id);
/* The marked ids (const char *), if the marker directory changed since
 * *seen (its mtime, in ns; updated); NULL if unchanged, absent or empty. */
apr_array_header_t *su_store_unsettled(apr_pool_t *p, const char *dir,
                                       apr_int64_t *seen);

/*
 * The error kind of a failed file-system call's errno: SU_ERR_NO_SPACE for
 * ENOSPC and EDQUOT (an upload's 507, a rewrap's "no space left"),
 * SU_ERR_INTERNAL for anything else. Every write to the store maps its
 * errors through this.
 */
su_err_t su_store_errno_kind(int e);

/* Is name (a directory entry) an upload's temp file (SU_STORE_TMP_PREFIX)? */
int su_store_is_temp(const char *name);

/* Is name (an entry of DIR) one of the store's subdirectories, two lowercase
 * hex digits? */
int su_store_is_subdir(const char *name);

/* What an entry of a subdirectory is, from its name alone. */
typedef enum su_store_name {
    SU_STORE_NAME_OTHER = 0, /* nothing the store writes */
    SU_STORE_NAME_FILE,      /* <id>.enc, its id starting with the subdirectory's */
    SU_STORE_NAME_TEMP,      /* an upload's or a rewrap's temp file */
    SU_STORE_NAME_TUS        /* a resumable upload's file (its id in id) */
} su_store_name_t;

/* The kind of entry name of subdirectory sub (DIR/sub, sub its two hex
 * digits); for a stored file or a resumable upload, its id in id ("" otherwise). */
su_store_name_t su_store_name(const char *sub, const char *name,
                              char id[SU_ID_HEX_LEN + 1]);

/*
 * Remove the temp files DIR/xx/.tmp-* that uploads cut short by a killed
 * process left behind. Only when no upload into dir can be in flight: a
 * writer whose temp file went fails its upload. *removed counts the files
 * removed; SU_ERR_INTERNAL when some could not be (or a subdirectory could
 * not be read), *err naming the first.
 */
su_err_t su_store_sweep_temps(apr_pool_t *p, const char *dir, int *removed,
                              const char **err);

/* Remove a stored file (and fsync its directory when sync). */
su_err_t su_store_remove(apr_pool_t *p, const char *dir, const char *id,
                         int sync, const char **err);

#endif
