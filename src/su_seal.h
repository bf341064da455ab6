/*
 * Writing a segmented file (su_seg.h) with its segments sealed on worker
 * threads: the writer's plaintext fills one batch of segments while the
 * batch before it is sealed, split among up to `threads` workers (su_async),
 * so that one upload is no longer bound to one core by a CBC chain. The
 * stored bytes leave in order, on the caller's thread, once a batch is
 * sealed. Memory is two batches, whatever the file's size; the plaintext in
 * them is wiped at the end (and by a cleanup on the pool).
 *
 * A file of at most one batch is sealed on the caller's thread, with no
 * thread at all (small uploads pay nothing for this). The bytes written are
 * exactly those of su_segw (su_segw.h) for the same plaintext.
 */
#ifndef SU_SEAL_H
#define SU_SEAL_H

#include <apr_pools.h>
#include "su_segw.h"

/* Plaintext per batch: segments are grouped to about this. */
#define SU_SEAL_BATCH (1024u * 1024u)
/* Workers at most (also capped by the CPUs the process may run on). */
#define SU_SEAL_THREADS_MAX 4

typedef struct su_seal su_seal_t;

/*
 * A new file under kek for id (su_seg_create: nonce NULL for a fresh one);
 * the header goes to out at once. threads: the workers to seal on
 * (0: as many as the process has CPUs, up to SU_SEAL_THREADS_MAX).
 */
su_err_t su_seal_create(apr_pool_t *p, const su_kek_t *kek, const char *id,
                        uint32_t segsize, const unsigned char *nonce, int threads,
                        su_segw_out_fn out, void *ctx, su_seal_t **sp);

/* More plaintext. Errors (out's, or the cryptography's) are sticky. */
su_err_t su_seal_write(su_seal_t *s, const unsigned char *in, size_t len);

/* The end: every segment sealed and sent out, the last one as LAST. */
su_err_t su_seal_finish(su_seal_t *s);

/* The file's header as written. */
const unsigned char *su_seal_header(const su_seal_t *s);

/* The workers this writer seals on (after su_seal_create). */
int su_seal_threads(const su_seal_t *s);

/* The CPUs this process may run on (its affinity), at least 1. */
int su_seal_cpus(void);

#endif
