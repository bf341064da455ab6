/*
 * The cryptography of a stored file (su_crypto.h): RFC 3394 key wrap, the
 * HMAC, and the streaming AES-256-CBC encryptor and decryptor, through
 * OpenSSL 3's EVP interfaces.
 */
#include <limits.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include "su_crypto.h"
#include "su_hasher.h"
#include "su_util.h"

#define SU_CRYPTO_AES_KEY_LEN 32
#define SU_CRYPTO_MAC_KEY_LEN 32
/* EVP counts in int: feed it bounded slices of size_t lengths. */
#define SU_CRYPTO_EVP_SLICE   (1u << 30)

struct su_enc {
    EVP_CIPHER_CTX *cipher;
    EVP_MAC_CTX *mac;
    su_hasher_t *mac_pipe;  /* feeds mac on a thread of its own, if set */
    apr_pool_t *pool;
    uint64_t plain_size;
    int done;
};

struct su_dec {
    EVP_CIPHER_CTX *cipher;
    EVP_MAC_CTX *mac;
    unsigned char iv[SU_CRYPTO_IV_LEN];
    int mac_done;
    int verified;
};

/*
 * RFC 3394 writes inlen + 8 bytes when wrapping and inlen - 8 when
 * unwrapping; the caller's out holds exactly that (a data key unwraps into a
 * 64-byte stack buffer). A failure wipes that many bytes and no more.
 */
static su_err_t su_crypto_keywrap(int enc, const unsigned char kek[SU_KEY_LEN],
                                  const unsigned char *in, size_t inlen,
                                  unsigned char *out, size_t *outlen)
{
    su_err_t fail = enc ? SU_ERR_INTERNAL : SU_ERR_INTEGRITY;
    EVP_CIPHER_CTX *ctx;
    int l1 = 0, l2 = 0, ok;

    if (inlen < 16 || inlen % 8 != 0 || inlen > INT_MAX - 8)
        return fail;
    ctx = EVP_CIPHER_CTX_new();
    if (ctx == NULL)
        return SU_ERR_INTERNAL;
    EVP_CIPHER_CTX_set_flags(ctx, EVP_CIPHER_CTX_FLAG_WRAP_ALLOW);
    /* A NULL IV selects the RFC 3394 default IV (A6A6A6A6A6A6A6A6). */
    ok = EVP_CipherInit_ex(ctx, EVP_aes_256_wrap(), NULL, kek, NULL, enc) == 1
         && EVP_CipherUpdate(ctx, out, &l1, in, (int)inlen) == 1
         && EVP_CipherFinal_ex(ctx, out + l1, &l2) == 1;
    EVP_CIPHER_CTX_free(ctx);
    if (!ok) {
        /* An unwrap that fails its integrity check may have written
         * partial key material. */
        su_util_wipe(out, enc ? inlen + 8 : inlen - 8);
        return fail;
    }
    *outlen = (size_t)l1 + (size_t)l2;
    return SU_OK;
}

su_err_t su_crypto_wrap(const unsigned char kek[SU_KEY_LEN],
                        const unsigned char *in, size_t inlen, unsigned char *out)
{
    size_t outlen = 0;

    return su_crypto_keywrap(1, kek, in, inlen, out, &outlen);
}

su_err_t su_crypto_unwrap(const unsigned char kek[SU_KEY_LEN],
                          const unsigned char *in, size_t inlen,
                          unsigned char *out, size_t *outlen)
{
    *outlen = 0;
    return su_crypto_keywrap(0, kek, in, inlen, out, outlen);
}

EVP_MAC_CTX *su_crypto_hmac_new(const unsigned char datakey[SU_CRYPTO_DATAKEY_LEN])
{
    char digest[] = "SHA256";
    OSSL_PARAM params[2];
    EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    EVP_MAC_CTX *ctx = mac != NULL ? EVP_MAC_CTX_new(mac) : NULL;

    EVP_MAC_free(mac);
    if (ctx == NULL)
        return NULL;
    params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST,
                                                 digest, 0);
    params[1] = OSSL_PARAM_construct_end();
    if (EVP_MAC_init(ctx, datakey + SU_CRYPTO_AES_KEY_LEN, SU_CRYPTO_MAC_KEY_LEN,
                     params) != 1) {
        EVP_MAC_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

int su_crypto_hmac_final(EVP_MAC_CTX *ctx, unsigned char tag[SU_CRYPTO_TAG_LEN])
{
    size_t len = 0;

    return EVP_MAC_final(ctx, tag, &len, SU_CRYPTO_TAG_LEN) == 1
           && len == SU_CRYPTO_TAG_LEN;
}

/* Run a cipher update over any size_t length in int-sized slices. */
static int su_crypto_cipher_update(EVP_CIPHER_CTX *ctx, const unsigned char *in,
                                   size_t len, unsigned char *out, size_t *outlen)
{
    size_t total = 0;

    while (len > 0) {
        size_t slice = len < SU_CRYPTO_EVP_SLICE ? len : SU_CRYPTO_EVP_SLICE;
        int n = 0;
        if (EVP_CipherUpdate(ctx, out + total, &n, in, (int)slice) != 1)
            return 0;
        total += (size_t)n;
        in += slice;
        len -= slice;
    }
    *outlen = total;
    return 1;
}

/* Free both contexts: that wipes the data key they hold. */
static void su_crypto_free(EVP_CIPHER_CTX **cipher, EVP_MAC_CTX **mac)
{
    EVP_CIPHER_CTX_free(*cipher);
    EVP_MAC_CTX_free(*mac);
    *cipher = NULL;
    *mac = NULL;
}

/*
 * The AES-256-CBC context (encrypt: 1, or 0 to decrypt) and the HMAC whose
 * input begins with aad: the data key goes into them and nowhere else.
 * Neither is left on failure.
 */
static su_err_t su_crypto_contexts(int encrypt, const unsigned char *datakey,
                                   const unsigned char *iv,
                                   const unsigned char *aad, size_t aadlen,
                                   EVP_CIPHER_CTX **cipher, EVP_MAC_CTX **mac)
{
    *cipher = EVP_CIPHER_CTX_new();
    *mac = su_crypto_hmac_new(datakey);
    if (*cipher == NULL || *mac == NULL
        || EVP_CipherInit_ex(*cipher, EVP_aes_256_cbc(), NULL, datakey, iv,
                             encrypt) != 1
        || EVP_MAC_update(*mac, aad, aadlen) != 1) {
        su_crypto_free(cipher, mac);
        return SU_ERR_INTERNAL;
    }
    return SU_OK;
}

/* ---- encryption ---- */

static apr_status_t su_enc_cleanup(void *data)
{
    su_enc_t *enc = data;

    /* the MAC's thread lets go of it before it is freed */
    if (enc->mac_pipe != NULL)
        (void)su_hasher_drain(enc->mac_pipe);
    enc->mac_pipe = NULL;
    su_crypto_free(&enc->cipher, &enc->mac);
    return APR_SUCCESS;
}

su_err_t su_enc_start(apr_pool_t *p, const unsigned char datakey[SU_CRYPTO_DATAKEY_LEN],
                      const unsigned char iv[SU_CRYPTO_IV_LEN],
                      const unsigned char *aad, size_t aadlen, su_enc_t **out)
{
    su_enc_t *enc = apr_pcalloc(p, sizeof *enc);
    su_err_t rv;

    *out = NULL;
    enc->pool = p;
    apr_pool_cleanup_register(p, enc, su_enc_cleanup, apr_pool_cleanup_null);
    rv = su_crypto_contexts(1, datakey, iv, aad, aadlen, &enc->cipher, &enc->mac);
    if (rv == SU_OK)
        *out = enc;
    return rv;
}

static int su_enc_mac_update(void *ctx, const void *buf, apr_size_t len)
{
    return EVP_MAC_update(ctx, buf, len) == 1;
}

su_err_t su_enc_mac_beside(su_enc_t *enc)
{
    if (enc->done || enc->mac == NULL || enc->mac_pipe != NULL
        || enc->plain_size != 0)
        return SU_ERR_INTERNAL;
    /* the same pool as enc: the pipe is gone no earlier than enc is */
    return su_hasher_create_fn(enc->pool, su_enc_mac_update, enc->mac,
                               &enc->mac_pipe);
}

static int su_enc_mac(su_enc_t *enc, const unsigned char *ct, size_t len)
{
    if (enc->mac_pipe != NULL)
        return su_hasher_update(enc->mac_pipe, ct, len) == SU_OK;
    return EVP_MAC_update(enc->mac, ct, len) == 1;
}

su_err_t su_enc_update(su_enc_t *enc, const unsigned char *in, size_t len,
                       unsigned char *out, size_t *outlen)
{
    *outlen = 0;
    if (enc->done || enc->cipher == NULL)
        return SU_ERR_INTERNAL;
    if (len == 0)
        return SU_OK;
    if (!su_crypto_cipher_update(enc->cipher, in, len, out, outlen) ||
        !su_enc_mac(enc, out, *outlen))
        return SU_ERR_INTERNAL;
    enc->plain_size += len;
    return SU_OK;
}

su_err_t su_enc_final(su_enc_t *enc, unsigned char *out, size_t *outlen)
{
    int n = 0;
    su_err_t rv = SU_ERR_INTERNAL;

    *outlen = 0;
    if (enc->done || enc->cipher == NULL)
        return SU_ERR_INTERNAL;
    if (EVP_EncryptFinal_ex(enc->cipher, out, &n) == 1 &&
        su_enc_mac(enc, out, (size_t)n) &&
        (enc->mac_pipe == NULL || su_hasher_drain(enc->mac_pipe) == SU_OK) &&
        su_crypto_hmac_final(enc->mac, out + n)) {
        *outlen = (size_t)n + SU_CRYPTO_TAG_LEN;
        rv = SU_OK;
    }
    enc->done = 1;
    /* Free the contexts now: that wipes the data key well before the pool
     * goes away. */
    su_enc_cleanup(enc);
    return rv;
}

uint64_t su_enc_plain_size(const su_enc_t *enc)
{
    return enc->plain_size;
}

/* ---- decryption ---- */

static apr_status_t su_dec_cleanup(void *data)
{
    su_dec_t *dec = data;

    su_crypto_free(&dec->cipher, &dec->mac);
    return APR_SUCCESS;
}

su_err_t su_dec_start(apr_pool_t *p, const unsigned char datakey[SU_CRYPTO_DATAKEY_LEN],
                      const unsigned char iv[SU_CRYPTO_IV_LEN],
                      const unsigned char *aad, size_t aadlen, su_dec_t **out)
{
    su_dec_t *dec = apr_pcalloc(p, sizeof *dec);
    su_err_t rv;

    *out = NULL;
    apr_pool_cleanup_register(p, dec, su_dec_cleanup, apr_pool_cleanup_null);
    memcpy(dec->iv, iv, SU_CRYPTO_IV_LEN);
    rv = su_crypto_contexts(0, datakey, iv, aad, aadlen, &dec->cipher, &dec->mac);
    if (rv == SU_OK)
        *out = dec;
    return rv;
}

void su_dec_mac_update(su_dec_t *dec, const unsigned char *ct, size_t len)
{
    /* A failed update leaves the MAC state wrong, which makes the final
     * comparison fail: nothing is lost by not reporting it here. */
    if (!dec->mac_done && dec->mac != NULL && len > 0 &&
        EVP_MAC_update(dec->mac, ct, len) != 1)
        dec->mac_done = -1;
}

su_err_t su_dec_mac_verify(su_dec_t *dec, const unsigned char tag[SU_CRYPTO_TAG_LEN])
{
    unsigned char mine[SU_CRYPTO_TAG_LEN];
    int ok;

    if (dec->mac_done != 0 || dec->mac == NULL)
        return dec->verified ? SU_OK : SU_ERR_INTEGRITY;
    dec->mac_done = 1;
    ok = su_crypto_hmac_final(dec->mac, mine) &&
         CRYPTO_memcmp(mine, tag, SU_CRYPTO_TAG_LEN) == 0;
    su_util_wipe(mine, sizeof mine);
    /* The MAC key is no longer needed. */
    EVP_MAC_CTX_free(dec->mac);
    dec->mac = NULL;
    dec->verified = ok;
    return ok ? SU_OK : SU_ERR_INTEGRITY;
}

/* Decryption is refused until the tag has been verified, so that no code
 * path can hand out unauthenticated plaintext. */
su_err_t su_dec_update(su_dec_t *dec, const unsigned char *ct, size_t len,
                       unsigned char *out, size_t *outlen)
{
    *outlen = 0;
    if (!dec->verified || dec->cipher == NULL)
        return SU_ERR_INTERNAL;
    if (len == 0)
        return SU_OK;
    return su_crypto_cipher_update(dec->cipher, ct, len, out, outlen)
           ? SU_OK : SU_ERR_INTERNAL;
}

su_err_t su_dec_final(su_dec_t *dec, unsigned char *out, size_t *outlen)
{
    int n = 0, ok;

    *outlen = 0;
    if (!dec->verified || dec->cipher == NULL)
        return SU_ERR_INTERNAL;
    ok = EVP_DecryptFinal_ex(dec->cipher, out, &n) == 1;
    EVP_CIPHER_CTX_free(dec->cipher);
    dec->cipher = NULL;
    if (!ok)
        return SU_ERR_INTEGRITY;
    *outlen = (size_t)n;
    return SU_OK;
}

su_err_t su_dec_tail_size(su_dec_t *dec,
                          const unsigned char tail[2 * SU_CRYPTO_BLOCK],
                          uint64_t ctlen, uint64_t *plain_size)
{
    unsigned char out[2 * SU_CRYPTO_BLOCK];
    int n1 = 0, n2 = 0, ok;

    if (!dec->verified || dec->cipher == NULL)
        return SU_ERR_INTERNAL;
    ok = EVP_DecryptInit_ex(dec->cipher, NULL, NULL, NULL, tail) == 1 &&
         EVP_DecryptUpdate(dec->cipher, out, &n1, tail + SU_CRYPTO_BLOCK,
                           SU_CRYPTO_BLOCK) == 1 &&
         EVP_DecryptFinal_ex(dec->cipher, out + n1, &n2) == 1;
    su_util_wipe(out, sizeof out);
    if (!ok)
        return SU_ERR_INTEGRITY;
    *plain_size = ctlen - SU_CRYPTO_BLOCK + (uint64_t)n1 + (uint64_t)n2;
    return SU_OK;
}

su_err_t su_dec_rewind(su_dec_t *dec)
{
    if (dec->cipher == NULL
        || EVP_DecryptInit_ex(dec->cipher, NULL, NULL, NULL, dec->iv) != 1)
        return SU_ERR_INTERNAL;
    return SU_OK;
}
