/*
 * The cryptography of a stored file, apart from its layout on disk
 * (su_format.h): RFC 3394 AES-256 key wrap of a data key, and the
 * streaming encryptor and decryptor: AES-256-CBC/PKCS#7 under the data
 * key's first half, HMAC-SHA256 under its second half over given leading
 * bytes (a file's header) and then the ciphertext. Library state and every
 * key byte are freed and wiped by a cleanup on the pool they were made in.
 */
#ifndef SU_CRYPTO_H
#define SU_CRYPTO_H

#include <apr_pools.h>
#include <openssl/types.h>
#include "su_common.h"
#include "su_key.h"

/* a data key: the AES-256 key, then the HMAC-SHA256 key */
#define SU_CRYPTO_DATAKEY_LEN 64
/* a data key wrapped under a KEK (RFC 3394 adds 8 bytes) */
#define SU_CRYPTO_WRAPPED_LEN (SU_CRYPTO_DATAKEY_LEN + 8)
#define SU_CRYPTO_IV_LEN      16
#define SU_CRYPTO_BLOCK       16
#define SU_CRYPTO_TAG_LEN     32

/*
 * RFC 3394 AES-256 key wrap with the default IV, as used for the data key
 * (exposed for known-answer tests). inlen: a multiple of 8, at least 16;
 * out gets inlen + 8 bytes.
 */
su_err_t su_crypto_wrap(const unsigned char kek[SU_KEY_LEN],
                        const unsigned char *in, size_t inlen, unsigned char *out);

/*
 * The reverse: out gets inlen - 8 bytes, *outlen their count. A wrong KEK
 * or a corrupt input gives SU_ERR_INTEGRITY with those inlen - 8 bytes
 * wiped, and not one byte past them (a data key unwraps into a buffer of
 * exactly SU_CRYPTO_DATAKEY_LEN bytes).
 */
su_err_t su_crypto_unwrap(const unsigned char kek[SU_KEY_LEN],
                          const unsigned char *in, size_t inlen,
                          unsigned char *out, size_t *outlen);

/* An HMAC-SHA256 under the MAC half of a data key (a rewrap's new tag);
 * NULL on failure. The caller frees it (EVP_MAC_CTX_free). */
EVP_MAC_CTX *su_crypto_hmac_new(const unsigned char datakey[SU_CRYPTO_DATAKEY_LEN]);
/* Its tag: 1, or 0 on failure. */
int su_crypto_hmac_final(EVP_MAC_CTX *ctx, unsigned char tag[SU_CRYPTO_TAG_LEN]);

/* ---- encryption ---- */
typedef struct su_enc su_enc_t;

/*
 * An encryptor under datakey and iv whose HMAC begins with the aadlen bytes
 * at aad (the file's header). The data key is copied into the library's
 * contexts only; the caller wipes its own copy.
 */
su_err_t su_enc_start(apr_pool_t *p, const unsigned char datakey[SU_CRYPTO_DATAKEY_LEN],
                      const unsigned char iv[SU_CRYPTO_IV_LEN],
                      const unsigned char *aad, size_t aadlen, su_enc_t **out);

/*
 * Encrypt len plaintext bytes. out must have room for len + SU_CRYPTO_BLOCK
 * bytes; *outlen gets the ciphertext bytes produced (to be stored next).
 * Also feeds the HMAC of the ciphertext. The plaintext's digest is the
 * caller's (su_hasher.h: an upload hashes it on a thread of its own).
 */
su_err_t su_enc_update(su_enc_t *enc, const unsigned char *in, size_t len,
                       unsigned char *out, size_t *outlen);

/*
 * Finish: the last padded block followed by the 32-byte tag. out must have
 * room for SU_CRYPTO_BLOCK + SU_CRYPTO_TAG_LEN bytes. Wipes the data key.
 */
su_err_t su_enc_final(su_enc_t *enc, unsigned char *out, size_t *outlen);

/*
 * Compute the HMAC of the ciphertext beside the encryption (su_hasher.h: on
 * a thread of its own once the file is past its first MiB), so that a large
 * file's AES-CBC chain has a core to itself. Before the first update only;
 * the thread ends at su_enc_final at the latest, or when enc's pool goes.
 * The bytes and the tag are the same as without it.
 */
su_err_t su_enc_mac_beside(su_enc_t *enc);

/* The plaintext's length so far (after final: all of it). */
uint64_t su_enc_plain_size(const su_enc_t *enc);

/* ---- decryption ---- */
typedef struct su_dec su_dec_t;

/* A decryptor under datakey and iv whose HMAC begins with the aadlen bytes
 * at aad. As for su_enc_start, the caller wipes its copy of the key. */
su_err_t su_dec_start(apr_pool_t *p, const unsigned char datakey[SU_CRYPTO_DATAKEY_LEN],
                      const unsigned char iv[SU_CRYPTO_IV_LEN],
                      const unsigned char *aad, size_t aadlen, su_dec_t **out);

/* Pass 1: feed ciphertext bytes (no tag) to the HMAC. */
void su_dec_mac_update(su_dec_t *dec, const unsigned char *ct, size_t len);
/* End of pass 1: constant-time compare with the stored tag. SU_OK or SU_ERR_INTEGRITY. */
su_err_t su_dec_mac_verify(su_dec_t *dec, const unsigned char tag[SU_CRYPTO_TAG_LEN]);

/*
 * Pass 2: decrypt ciphertext (may be called any number of times, any sizes);
 * out needs len + SU_CRYPTO_BLOCK bytes. su_dec_final checks padding
 * (SU_ERR_INTEGRITY if bad); out needs SU_CRYPTO_BLOCK bytes. Both are
 * refused before the tag has been verified.
 */
su_err_t su_dec_update(su_dec_t *dec, const unsigned char *ct, size_t len,
                       unsigned char *out, size_t *outlen);
su_err_t su_dec_final(su_dec_t *dec, unsigned char *out, size_t *outlen);

/*
 * The plaintext length of verified ciphertext of ctlen bytes, from its last
 * two cipher blocks only (CBC lets any block be decrypted given the one
 * before it): the padding is checked without decrypting the whole file.
 * tail holds the block before the last one (the IV for a one-block file)
 * and the last block. It moves the CBC state: su_dec_rewind before pass 2.
 */
su_err_t su_dec_tail_size(su_dec_t *dec,
                          const unsigned char tail[2 * SU_CRYPTO_BLOCK],
                          uint64_t ctlen, uint64_t *plain_size);

/* Start pass 2 again from the IV. */
su_err_t su_dec_rewind(su_dec_t *dec);

#endif
