/*
 * A resumable upload (the tus protocol, docs/tus.md) on disk: the file
 * DIR/xx/.tus-<id> holds the format v2 header and the whole segments
 * written so far, sealed as they will stay; a partial segment at the end
 * of a request is sealed as PENDING and handed back, to be kept with the
 * upload's state (in Redis) and opened again by the next request. So the
 * plaintext never touches the disk, the data key stays wrapped by the KEK
 * in the file's header, and any process on any node can go on with it.
 *
 * Offsets are exact: an upload at offset O has O / segsize whole segments
 * in the file and O % segsize bytes in its pending segment. Each request
 * first cuts the file back to the size its offset implies, which undoes
 * whatever a crash wrote past the last recorded offset.
 */
#ifndef SU_TUS_H
#define SU_TUS_H

#include <apr_pools.h>
#include "su_common.h"
#include "su_key.h"
#include "su_seg.h"
#include "su_upload.h"

typedef struct su_tus su_tus_t;

/*
 * A new upload's file, holding its header only (fsynced with its directory
 * when sync).
 */
su_err_t su_tus_create(apr_pool_t *p, const su_kek_t *kek, const char *dir,
                       const char *id, uint32_t segsize, int sync,
                       const char **err);

/*
 * Go on with upload id of length bytes at offset, whose pending segment is
 * tail (taillen bytes of ciphertext; 0 when offset is a segment boundary):
 * the header opened with one of keks, the file cut back to what offset
 * implies, the tail opened. Plaintext buffers are wiped by a cleanup on p.
 * SU_ERR_NOT_FOUND: no such file; SU_ERR_INTEGRITY: it does not match.
 */
su_err_t su_tus_open(apr_pool_t *p, const su_kek_t *const *keks, int nkeks,
                     const char *dir, const char *id, apr_uint64_t length,
                     apr_uint64_t offset, const unsigned char *tail,
                     size_t taillen, su_tus_t **out, const char **err);

/* More bytes of the file. SU_ERR_TOO_LARGE (nothing taken) past length. */
su_err_t su_tus_feed(su_tus_t *t, const unsigned char *buf, size_t len,
                     const char **err);

/* Bytes of the file received so far, this request's included. */
apr_uint64_t su_tus_offset(const su_tus_t *t);

/*
 * The end of a request before the end of the file: the partial segment
 * sealed PENDING into *tail (*taillen 0 at a boundary), every whole
 * segment written (and fsynced when sync).
 */
su_err_t su_tus_pause(su_tus_t *t, int sync, const unsigned char **tail,
                      size_t *taillen, const char **err);

/* Back to the state this request found (the file cut back). */
su_err_t su_tus_undo(su_tus_t *t, const char **err);

/*
 * The end of the file (offset == length): the last segment sealed LAST,
 * the file flushed (fsynced when sync), then read back whole, every
 * segment verified and decrypted for the plaintext's SHA-256. info gets
 * what a stored file's metadata records (its id, relpath, key id, nonce
 * as iv, size and sha256; name and type are the caller's).
 */
su_err_t su_tus_finish(su_tus_t *t, int sync, su_upload_info_t *info,
                       const char **err);

/* Rename the finished file into place as <id>.enc (directory fsynced
 * when sync). */
su_err_t su_tus_commit(su_tus_t *t, int sync, const char **err);

/* Remove upload id's file (absent is no error). */
su_err_t su_tus_remove(apr_pool_t *p, const char *dir, const char *id,
                       int sync, const char **err);

#endif
