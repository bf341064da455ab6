/*
 * The OpenSSL algorithms the core uses, fetched once per process.
 *
 * In OpenSSL 3 an implicit fetch (EVP_aes_256_cbc() given to an Init call,
 * "HMAC" or a digest by name) takes locks and a lookup every time, which is
 * a sizeable share of a small upload's work. Fetched algorithms are
 * immutable and may be shared by all threads; these live as long as the
 * process. Should a fetch fail, the implicit ones are handed out instead.
 */
#ifndef SU_ALGS_H
#define SU_ALGS_H

#include <apr_pools.h>
#include <openssl/evp.h>

const EVP_CIPHER *su_algs_aes_256_cbc(void);
const EVP_CIPHER *su_algs_aes_256_wrap(void);
const EVP_MD *su_algs_sha256(void);
/* NULL if HMAC cannot be fetched at all (or after su_algs_bind's pool) */
EVP_MAC *su_algs_hmac(void);

/*
 * Fetch now, and free them with p (a server child's pool), so that a
 * process that unloads the module (Apache does, on restart and at exit)
 * leaves nothing behind. Only once no thread uses them any more; without
 * a call, they live until the process exits.
 */
void su_algs_bind(apr_pool_t *p);

#endif
