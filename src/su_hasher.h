/*
 * SHA-256 of an upload's plaintext, computed beside the encryption.
 *
 * AES-CBC and its HMAC form one serial chain per file, but the plaintext
 * digest does not depend on it: past the first MiB the digest moves to a
 * thread of its own, fed copies of the plaintext through a small ring of
 * buffers (constant memory, wiped when done), so that a large upload uses
 * a second core. Small uploads are hashed in place, with no thread.
 */
#ifndef SU_HASHER_H
#define SU_HASHER_H

#include <apr_pools.h>
#include "su_common.h"

typedef struct su_hasher su_hasher_t;

/* A hasher whose thread (if any) is stopped and joined by a cleanup on p. */
su_err_t su_hasher_create(apr_pool_t *p, su_hasher_t **out);
su_err_t su_hasher_update(su_hasher_t *h, const void *buf, apr_size_t len);
/* Wait for the digest of everything given. */
su_err_t su_hasher_final(su_hasher_t *h, unsigned char out[32]);

#endif
