/*
 * Writing a file of the segmented format (su_seg.h) from a stream of
 * plaintext: the header first, then each segment as it fills. A full
 * segment is held back until more plaintext or the end shows whether it
 * is the last.
 */
#ifndef SU_SEGW_H
#define SU_SEGW_H

#include <apr_pools.h>
#include "su_seg.h"

/* Where the stored bytes go, in order; SU_OK or the error to stop with. */
typedef su_err_t (*su_segw_out_fn)(void *ctx, const unsigned char *buf, size_t len);

typedef struct su_segw su_segw_t;

/*
 * A new file under kek for id (su_seg_create: nonce NULL for a fresh one);
 * the header goes to out at once. The writer's buffers (which hold
 * plaintext) are wiped by a cleanup on p.
 */
su_err_t su_segw_create(apr_pool_t *p, const su_kek_t *kek, const char *id,
                        uint32_t segsize, const unsigned char *nonce,
                        su_segw_out_fn out, void *ctx, su_segw_t **w);

/* More plaintext. Errors (out's, or the cryptography's) are sticky. */
su_err_t su_segw_write(su_segw_t *w, const unsigned char *in, size_t len);

/* The end: the last segment goes out. */
su_err_t su_segw_finish(su_segw_t *w);

/* Plaintext bytes written so far. */
uint64_t su_segw_plain_size(const su_segw_t *w);

/* The file's header as written (nonce, key id: what metadata records). */
const unsigned char *su_segw_header(const su_segw_t *w);

#endif
