/*
 * A digest computed beside the encryption: the SHA-256 of an upload's
 * plaintext, or any other running digest (the HMAC of the ciphertext).
 *
 * AES-CBC is one serial chain per file, but the digests only read what it
 * takes in or gives out: past the first MiB a digest moves to a thread of
 * its own (su_async), fed copies of the bytes through two buffers, one
 * filled while the other is hashed (constant memory, wiped when done), so
 * that a large upload spreads over the cores. Small uploads are hashed in
 * place, with no thread.
 */
#ifndef SU_HASHER_H
#define SU_HASHER_H

#include <apr_pools.h>
#include "su_common.h"

typedef struct su_hasher su_hasher_t;

/* A SHA-256 hasher whose thread (if any) is stopped and joined by a
 * cleanup on p. */
su_err_t su_hasher_create(apr_pool_t *p, su_hasher_t **out);
su_err_t su_hasher_update(su_hasher_t *h, const void *buf, apr_size_t len);
/* Wait for the digest of everything given. */
su_err_t su_hasher_final(su_hasher_t *h, unsigned char out[32]);

/*
 * The same for a digest the caller owns: fn(ctx, buf, len) (1 on success)
 * is called with every byte given, in order, in place or on the thread.
 * su_hasher_drain waits until all of it went through fn; after it, and
 * after p's cleanup, ctx is the caller's alone again. Draining twice is
 * harmless; nothing may be given after it.
 */
typedef int (*su_hasher_fn)(void *ctx, const void *buf, apr_size_t len);
su_err_t su_hasher_create_fn(apr_pool_t *p, su_hasher_fn fn, void *ctx,
                             su_hasher_t **out);
su_err_t su_hasher_drain(su_hasher_t *h);

#endif
