#include "su_algs.h"

#include <pthread.h>

/* Written once, under pthread_once, before any reader sees them; cleared
 * only by su_algs_bind's pool, when no request runs any more. */
static struct su_algs {
    EVP_CIPHER *cbc;
    EVP_CIPHER *wrap;
    EVP_MD *sha256;
    EVP_MAC *hmac;
} su_algs;
static pthread_once_t su_algs_once = PTHREAD_ONCE_INIT;

static void su_algs_fetch(void)
{
    su_algs.cbc = EVP_CIPHER_fetch(NULL, "AES-256-CBC", NULL);
    su_algs.wrap = EVP_CIPHER_fetch(NULL, "AES-256-WRAP", NULL);
    su_algs.sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
    su_algs.hmac = EVP_MAC_fetch(NULL, "HMAC", NULL);
}

static const struct su_algs *su_algs_get(void)
{
    (void)pthread_once(&su_algs_once, su_algs_fetch);
    return &su_algs;
}

const EVP_CIPHER *su_algs_aes_256_cbc(void)
{
    const struct su_algs *a = su_algs_get();
    return a->cbc != NULL ? a->cbc : EVP_aes_256_cbc();
}

const EVP_CIPHER *su_algs_aes_256_wrap(void)
{
    const struct su_algs *a = su_algs_get();
    return a->wrap != NULL ? a->wrap : EVP_aes_256_wrap();
}

const EVP_MD *su_algs_sha256(void)
{
    const struct su_algs *a = su_algs_get();
    return a->sha256 != NULL ? a->sha256 : EVP_sha256();
}

EVP_MAC *su_algs_hmac(void)
{
    return su_algs_get()->hmac;
}

static apr_status_t su_algs_free(void *data)
{
    (void)data;
    EVP_CIPHER_free(su_algs.cbc);
    EVP_CIPHER_free(su_algs.wrap);
    EVP_MD_free(su_algs.sha256);
    EVP_MAC_free(su_algs.hmac);
    su_algs.cbc = su_algs.wrap = NULL;
    su_algs.sha256 = NULL;
    su_algs.hmac = NULL;
    return APR_SUCCESS;
}

void su_algs_bind(apr_pool_t *p)
{
    (void)su_algs_get();
    apr_pool_cleanup_register(p, NULL, su_algs_free, apr_pool_cleanup_null);
}
