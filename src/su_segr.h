/*
 * Reading a stored file of the segmented format (su_seg.h) for an answer:
 * any range of its plaintext, touching only the segments the range covers,
 * each verified before one byte of it is given out.
 *
 * su_segr_open checks the header and then the LAST segment (its index
 * comes from the file's size: su_seg_count), so that the exact plaintext
 * size is known, and a truncated or extended file refused, before any
 * plaintext exists. Every segment is read once into memory of the reader's
 * own, and its tag checked there before it is decrypted from that same
 * copy: a write into the file meanwhile can make a segment fail, never
 * hand out bytes that were not verified.
 *
 * Pieces are decrypted by up to SU_SEGR_THREADS threads of the reader's
 * own (su_async.h) while the caller sends the piece before: begin starts
 * the next piece, end waits for it. Most of the functions here are reached
 * through su_format.h's reader, which serves both versions.
 */
#ifndef SU_SEGR_H
#define SU_SEGR_H

#include <apr_pools.h>
#include <stdint.h>
#include "su_common.h"
#include "su_key.h"
#include "su_seg.h"

/* A piece given out: at most this many bytes; the caller's buffer for
 * begin must hold SU_SEGR_PIECE_ROOM (a last segment's padding block is
 * decrypted into it too). Equal to su_format.h's SU_FMT_READ_MAX. */
#define SU_SEGR_PIECE_ROOM (1024 * 1024 + 32)

typedef struct su_segr su_segr_t;

/*
 * The id a stored file's name gives: <id>.enc, and the store's temp names
 * beside it (.tmp-<id>, <id>.enc.<anything>). 0 when it gives none.
 */
int su_segr_path_id(const char *path, char id[33]);

/*
 * Open the v2 file on fd (the reader owns it from here, and closes it)
 * for id, in a subpool of p. *plain_size gets the exact plaintext size.
 * SU_ERR_INTEGRITY for a file that is not a complete v2 file of id under
 * one of keks, or whose header or last segment fails.
 */
su_err_t su_segr_open(apr_pool_t *p, int fd, const char *id,
                      const su_kek_t *const *keks, int nkeks,
                      su_segr_t **out, uint64_t *plain_size);

/* What is given out from now on: plaintext bytes [off, off + len), which
 * must lie within the file. The whole file until this is called. */
su_err_t su_segr_range(su_segr_t *r, uint64_t off, uint64_t len);

/*
 * The next piece of the range, decrypted into out (SU_SEGR_PIECE_ROOM
 * bytes): begin starts it (on the reader's threads once the range is
 * large enough to gain by it), end waits for it and gives its length (0 at
 * the end of the range). Every begin needs its end before out is freed or
 * the reader closed. A segment that fails is SU_ERR_INTEGRITY, and then
 * nothing of its piece is left in out.
 */
void su_segr_begin(su_segr_t *r, unsigned char *out);
su_err_t su_segr_end(su_segr_t *r, size_t *len);

/* The header's nonce as 32 hex digits: what binds the file to its id. */
void su_segr_nonce_hex(const su_segr_t *r, char out[2 * SU_SEG_NONCE_LEN + 1]);

/* The pool everything of the reader lives in; destroying it closes it. */
apr_pool_t *su_segr_pool(const su_segr_t *r);
void su_segr_close(su_segr_t *r);

/* Without keys, from the header alone: is this the magic of a v2 file, and
 * a size that a complete v2 file with this header's segment size can have? */
int su_segr_size_ok(const unsigned char *header, size_t hlen, uint64_t file_size);

#endif
