/*
 * The segmented format, version 2 (su_seg.h): the header, sealing and
 * opening one segment, and where segments lie. Through OpenSSL 3's EVP.
 */
#include <limits.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "su_fault.h"
#include "su_seg.h"
#include "su_util.h"

#define SU_SEG_DOMAIN_HEADER  0x01
#define SU_SEG_DOMAIN_SEGMENT 0x02
#define SU_SEG_HDR_SIGNED     SU_SEG_OFF_TAG   /* bytes the header tag covers */
/* what every segment tag starts with: domain, id, nonce */
#define SU_SEG_PREFIX_LEN     (1 + SU_SEG_ID_LEN + SU_SEG_NONCE_LEN)

struct su_seg_file {
    EVP_CIPHER_CTX *enc;        /* keyed templates, copied for each thread */
    EVP_CIPHER_CTX *dec;
    EVP_MAC_CTX *mac;
    unsigned char prefix[SU_SEG_PREFIX_LEN];
    unsigned char nonce[SU_SEG_NONCE_LEN];
    uint32_t segsize;
};

struct su_seg_ctx {
    const su_seg_file_t *f;
    EVP_CIPHER_CTX *enc;
    EVP_CIPHER_CTX *dec;
    EVP_MAC_CTX *mac;
};

static void su_seg_put32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

static void su_seg_put64(unsigned char *p, uint64_t v)
{
    su_seg_put32(p, (uint32_t)(v >> 32));
    su_seg_put32(p + 4, (uint32_t)v);
}

/* 32 hex digits into 16 bytes; 0 unless exactly that. */
static int su_seg_id_bytes(const char *id, unsigned char out[SU_SEG_ID_LEN])
{
    int i;

    if (id == NULL || strlen(id) != 2 * SU_SEG_ID_LEN)
        return 0;
    for (i = 0; i < SU_SEG_ID_LEN; i++) {
        int hi = su_util_hexval((unsigned char)id[2 * i]);
        int lo = su_util_hexval((unsigned char)id[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return 0;
        out[i] = (unsigned char)(hi << 4 | lo);
    }
    return 1;
}

/* ---- header fields ---- */

int su_seg_size_ok(uint32_t segsize)
{
    return segsize >= SU_SEG_SIZE_MIN && segsize <= SU_SEG_SIZE_MAX
           && segsize % SU_CRYPTO_BLOCK == 0;
}

int su_seg_is_v2(const unsigned char *h, size_t len)
{
    return len >= SU_SEG_MAGIC_LEN && memcmp(h, SU_SEG_MAGIC, SU_SEG_MAGIC_LEN) == 0;
}

uint32_t su_seg_header_size(const unsigned char h[SU_SEG_HEADER_LEN])
{
    const unsigned char *p = h + SU_SEG_OFF_SIZE;
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

uint32_t su_seg_size(const su_seg_file_t *f)
{
    return f->segsize;
}

const unsigned char *su_seg_nonce(const su_seg_file_t *f)
{
    return f->nonce;
}

/* ---- keys ---- */

/* Free a file's or a thread's contexts: that wipes the keys they hold. */
static void su_seg_free(EVP_CIPHER_CTX **enc, EVP_CIPHER_CTX **dec, EVP_MAC_CTX **mac)
{
    EVP_CIPHER_CTX_free(*enc);
    EVP_CIPHER_CTX_free(*dec);
    EVP_MAC_CTX_free(*mac);
    *enc = *dec = NULL;
    *mac = NULL;
}

static apr_status_t su_seg_file_cleanup(void *data)
{
    su_seg_file_t *f = data;

    su_seg_free(&f->enc, &f->dec, &f->mac);
    return APR_SUCCESS;
}

static EVP_CIPHER_CTX *su_seg_cipher(const unsigned char *key, int encrypt)
{
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();

    if (c != NULL && EVP_CipherInit_ex(c, EVP_aes_256_cbc(), NULL, key, NULL,
                                       encrypt) != 1) {
        EVP_CIPHER_CTX_free(c);
        c = NULL;
    }
    return c;
}

/* f's contexts from the data key (which the caller wipes). */
static su_err_t su_seg_file_keys(apr_pool_t *p, const unsigned char *datakey,
                                 const char *id, const unsigned char *h,
                                 su_seg_file_t **out)
{
    su_seg_file_t *f = apr_pcalloc(p, sizeof *f);

    *out = NULL;
    apr_pool_cleanup_register(p, f, su_seg_file_cleanup, apr_pool_cleanup_null);
    f->prefix[0] = SU_SEG_DOMAIN_SEGMENT;
    if (!su_seg_id_bytes(id, f->prefix + 1))
        return SU_ERR_INTERNAL;
    memcpy(f->prefix + 1 + SU_SEG_ID_LEN, h + SU_SEG_OFF_NONCE, SU_SEG_NONCE_LEN);
    memcpy(f->nonce, h + SU_SEG_OFF_NONCE, SU_SEG_NONCE_LEN);
    f->segsize = su_seg_header_size(h);
    f->enc = su_seg_cipher(datakey, 1);
    f->dec = su_seg_cipher(datakey, 0);
    f->mac = su_crypto_hmac_new(datakey);
    if (f->enc == NULL || f->dec == NULL || f->mac == NULL)
        return SU_ERR_INTERNAL;
    *out = f;
    return SU_OK;
}

/* The header tag of h (its first 108 bytes) under f's MAC key and id. */
static su_err_t su_seg_header_tag(const su_seg_file_t *f, const unsigned char *h,
                                  unsigned char tag[SU_CRYPTO_TAG_LEN])
{
    unsigned char lead = SU_SEG_DOMAIN_HEADER;
    EVP_MAC_CTX *m = EVP_MAC_CTX_dup(f->mac);
    int ok = m != NULL
             && EVP_MAC_update(m, &lead, 1) == 1
             && EVP_MAC_update(m, f->prefix + 1, SU_SEG_ID_LEN) == 1
             && EVP_MAC_update(m, h, SU_SEG_HDR_SIGNED) == 1
             && su_crypto_hmac_final(m, tag);

    EVP_MAC_CTX_free(m);
    return ok ? SU_OK : SU_ERR_INTERNAL;
}

/* Wrap datakey under kek into h and sign h: everything but the nonce and size. */
static su_err_t su_seg_seal_header(const su_seg_file_t *f, const su_kek_t *kek,
                                   const unsigned char *datakey, unsigned char *h)
{
    su_err_t rv;

    memcpy(h, SU_SEG_MAGIC, SU_SEG_MAGIC_LEN);
    memcpy(h + SU_SEG_OFF_KEYID, kek->id, SU_KEY_ID_LEN);
    rv = su_crypto_wrap(kek->key, datakey, SU_CRYPTO_DATAKEY_LEN,
                        h + SU_SEG_OFF_WRAPPED);
    return rv == SU_OK ? su_seg_header_tag(f, h, h + SU_SEG_OFF_TAG) : rv;
}

su_err_t su_seg_create(apr_pool_t *p, const su_kek_t *kek, const char *id,
                       uint32_t segsize, const unsigned char *nonce,
                       unsigned char header[SU_SEG_HEADER_LEN],
                       su_seg_file_t **out)
{
    unsigned char datakey[SU_CRYPTO_DATAKEY_LEN];
    su_err_t rv = SU_ERR_INTERNAL;

    *out = NULL;
    if (!su_seg_size_ok(segsize))
        return SU_ERR_INTERNAL;
    su_seg_put32(header + SU_SEG_OFF_SIZE, segsize);
    if (nonce != NULL)
        memcpy(header + SU_SEG_OFF_NONCE, nonce, SU_SEG_NONCE_LEN);
    if (!su_fault("rand") && RAND_bytes(datakey, sizeof datakey) == 1
        && (nonce != NULL
            || RAND_bytes(header + SU_SEG_OFF_NONCE, SU_SEG_NONCE_LEN) == 1))
        rv = su_seg_file_keys(p, datakey, id, header, out);
    if (rv == SU_OK)
        rv = su_seg_seal_header(*out, kek, datakey, header);
    su_util_wipe(datakey, sizeof datakey);
    if (rv != SU_OK)
        *out = NULL;
    return rv;
}

/* The data key from h under one of keks whose id matches and whose unwrap
 * passes RFC 3394's check (two keys may share an id prefix). */
static su_err_t su_seg_unwrap(const su_kek_t *const *keks, int nkeks,
                              const unsigned char *h,
                              unsigned char datakey[SU_CRYPTO_DATAKEY_LEN],
                              const su_kek_t **used)
{
    int i;

    for (i = 0; i < nkeks; i++) {
        size_t len = 0;
        if (keks[i] == NULL
            || memcmp(keks[i]->id, h + SU_SEG_OFF_KEYID, SU_KEY_ID_LEN) != 0)
            continue;
        if (su_crypto_unwrap(keks[i]->key, h + SU_SEG_OFF_WRAPPED,
                             SU_CRYPTO_WRAPPED_LEN, datakey, &len) == SU_OK
            && len == SU_CRYPTO_DATAKEY_LEN) {
            *used = keks[i];
            return SU_OK;
        }
        su_util_wipe(datakey, SU_CRYPTO_DATAKEY_LEN);
    }
    return SU_ERR_INTEGRITY;
}

/* Open h's keys into *f and check its tag; datakey is left for the caller
 * (a rewrap wraps it again) to wipe. */
static su_err_t su_seg_open_keys(apr_pool_t *p, const su_kek_t *const *keks,
                                 int nkeks, const char *id, const unsigned char *h,
                                 unsigned char datakey[SU_CRYPTO_DATAKEY_LEN],
                                 su_seg_file_t **f, const su_kek_t **used)
{
    unsigned char tag[SU_CRYPTO_TAG_LEN];
    su_err_t rv;

    *f = NULL;
    if (!su_seg_is_v2(h, SU_SEG_HEADER_LEN)
        || !su_seg_size_ok(su_seg_header_size(h)))
        return SU_ERR_INTEGRITY;
    rv = su_seg_unwrap(keks, nkeks, h, datakey, used);
    if (rv == SU_OK)
        rv = su_seg_file_keys(p, datakey, id, h, f);
    if (rv == SU_OK)
        rv = su_seg_header_tag(*f, h, tag);
    if (rv == SU_OK && CRYPTO_memcmp(tag, h + SU_SEG_OFF_TAG, sizeof tag) != 0)
        rv = SU_ERR_INTEGRITY;
    if (rv != SU_OK)
        *f = NULL;
    return rv;
}

su_err_t su_seg_open(apr_pool_t *p, const su_kek_t *const *keks, int nkeks,
                     const char *id, const unsigned char header[SU_SEG_HEADER_LEN],
                     su_seg_file_t **out, const su_kek_t **kek)
{
    unsigned char datakey[SU_CRYPTO_DATAKEY_LEN];
    const su_kek_t *used = NULL;
    su_err_t rv;

    rv = su_seg_open_keys(p, keks, nkeks, id, header, datakey, out, &used);
    su_util_wipe(datakey, sizeof datakey);
    if (rv == SU_OK && kek != NULL)
        *kek = used;
    return rv;
}

su_err_t su_seg_rewrap(apr_pool_t *p, const su_kek_t *const *keks, int nkeks,
                       const char *id, const unsigned char header[SU_SEG_HEADER_LEN],
                       const su_kek_t *newkek, unsigned char out[SU_SEG_HEADER_LEN])
{
    unsigned char datakey[SU_CRYPTO_DATAKEY_LEN];
    const su_kek_t *used = NULL;
    su_seg_file_t *f = NULL;
    su_err_t rv;

    rv = su_seg_open_keys(p, keks, nkeks, id, header, datakey, &f, &used);
    if (rv == SU_OK) {
        memcpy(out, header, SU_SEG_HEADER_LEN);
        rv = su_seg_seal_header(f, newkek, datakey, out);
    }
    su_util_wipe(datakey, sizeof datakey);
    return rv;
}

/* ---- segments ---- */

static apr_status_t su_seg_ctx_cleanup(void *data)
{
    su_seg_ctx_t *c = data;

    su_seg_free(&c->enc, &c->dec, &c->mac);
    return APR_SUCCESS;
}

su_err_t su_seg_ctx_create(apr_pool_t *p, const su_seg_file_t *f,
                           su_seg_ctx_t **out)
{
    su_seg_ctx_t *c = apr_pcalloc(p, sizeof *c);

    *out = NULL;
    c->f = f;
    apr_pool_cleanup_register(p, c, su_seg_ctx_cleanup, apr_pool_cleanup_null);
    c->enc = EVP_CIPHER_CTX_new();
    c->mac = EVP_MAC_CTX_dup(f->mac);
    if (c->enc == NULL || c->mac == NULL || EVP_CIPHER_CTX_copy(c->enc, f->enc) != 1)
        return SU_ERR_INTERNAL;
    *out = c;
    return SU_OK;
}

/* The decrypting context, copied at the first segment opened: a writer
 * (every upload) never needs it, and the copy counted in small uploads. */
static EVP_CIPHER_CTX *su_seg_dec(su_seg_ctx_t *c)
{
    if (c->dec == NULL) {
        c->dec = EVP_CIPHER_CTX_new();
        if (c->dec != NULL && EVP_CIPHER_CTX_copy(c->dec, c->f->dec) != 1) {
            EVP_CIPHER_CTX_free(c->dec);
            c->dec = NULL;
        }
    }
    return c->dec;
}

/* The tag of segment index: over prefix, index, flag, IV and ciphertext. */
static int su_seg_tag(su_seg_ctx_t *c, uint64_t index, su_seg_flag_t flag,
                      const unsigned char *ivct, size_t len,
                      unsigned char tag[SU_CRYPTO_TAG_LEN])
{
    unsigned char pos[9];

    su_seg_put64(pos, index);
    pos[8] = (unsigned char)flag;
    /* a NULL key starts again under the key the context holds */
    return EVP_MAC_init(c->mac, NULL, 0, NULL) == 1
           && EVP_MAC_update(c->mac, c->f->prefix, SU_SEG_PREFIX_LEN) == 1
           && EVP_MAC_update(c->mac, pos, sizeof pos) == 1
           && EVP_MAC_update(c->mac, ivct, len) == 1
           && su_crypto_hmac_final(c->mac, tag);
}

/* AES-256-CBC over in (padded only for the last or a pending segment). */
static int su_seg_cipher_run(EVP_CIPHER_CTX *x, const unsigned char *iv, int pad,
                             const unsigned char *in, size_t len,
                             unsigned char *out, size_t *outlen)
{
    int n1 = 0, n2 = 0;

    if (len > INT_MAX - SU_CRYPTO_BLOCK
        || EVP_CipherInit_ex(x, NULL, NULL, NULL, iv, -1) != 1
        || EVP_CIPHER_CTX_set_padding(x, pad) != 1
        || EVP_CipherUpdate(x, out, &n1, in, (int)len) != 1
        || EVP_CipherFinal_ex(x, out + n1, &n2) != 1)
        return 0;
    *outlen = (size_t)n1 + (size_t)n2;
    return 1;
}

su_err_t su_seg_seal(su_seg_ctx_t *c, uint64_t index, su_seg_flag_t flag,
                     const unsigned char *in, size_t len,
                     unsigned char *out, size_t *outlen)
{
    size_t ctlen = 0;

    *outlen = 0;
    if (len > c->f->segsize || (flag == SU_SEG_MORE && len != c->f->segsize))
        return SU_ERR_INTERNAL;
    if (su_fault("rand") || RAND_bytes(out, SU_CRYPTO_IV_LEN) != 1)
        return SU_ERR_INTERNAL;
    if (!su_seg_cipher_run(c->enc, out, flag != SU_SEG_MORE, in, len,
                           out + SU_CRYPTO_IV_LEN, &ctlen)
        || !su_seg_tag(c, index, flag, out, SU_CRYPTO_IV_LEN + ctlen,
                       out + SU_CRYPTO_IV_LEN + ctlen))
        return SU_ERR_INTERNAL;
    *outlen = SU_CRYPTO_IV_LEN + ctlen + SU_CRYPTO_TAG_LEN;
    return SU_OK;
}

/* Can a segment stored in inlen bytes carry this flag? */
static int su_seg_len_ok(uint32_t segsize, su_seg_flag_t flag, size_t inlen)
{
    size_t ct;

    if (inlen < SU_SEG_MIN_STORED || (inlen - SU_SEG_OVERHEAD) % SU_CRYPTO_BLOCK)
        return 0;
    ct = inlen - SU_SEG_OVERHEAD;
    return flag == SU_SEG_MORE ? ct == segsize : ct <= (size_t)segsize + SU_CRYPTO_BLOCK;
}

su_err_t su_seg_unseal(su_seg_ctx_t *c, uint64_t index, su_seg_flag_t flag,
                       const unsigned char *in, size_t inlen,
                       unsigned char *out, size_t *outlen)
{
    unsigned char tag[SU_CRYPTO_TAG_LEN];
    size_t ctlen;

    *outlen = 0;
    if (!su_seg_len_ok(c->f->segsize, flag, inlen))
        return SU_ERR_INTEGRITY;
    ctlen = inlen - SU_SEG_OVERHEAD;
    if (!su_seg_tag(c, index, flag, in, SU_CRYPTO_IV_LEN + ctlen, tag))
        return SU_ERR_INTERNAL;
    if (CRYPTO_memcmp(tag, in + SU_CRYPTO_IV_LEN + ctlen, sizeof tag) != 0)
        return SU_ERR_INTEGRITY;
    if (su_seg_dec(c) == NULL)
        return SU_ERR_INTERNAL;
    if (!su_seg_cipher_run(c->dec, in, flag != SU_SEG_MORE,
                           in + SU_CRYPTO_IV_LEN, ctlen, out, outlen)) {
        /* a verified segment with bad padding: only a writer's bug */
        su_util_wipe(out, ctlen);
        *outlen = 0;
        return SU_ERR_INTEGRITY;
    }
    return SU_OK;
}

/* ---- where things are ---- */

uint64_t su_seg_offset(uint32_t segsize, uint64_t index)
{
    return SU_SEG_HEADER_LEN + index * ((uint64_t)segsize + SU_SEG_OVERHEAD);
}

size_t su_seg_stored_len(uint32_t segsize, size_t len, su_seg_flag_t flag)
{
    if (flag == SU_SEG_MORE)
        return (size_t)segsize + SU_SEG_OVERHEAD;
    return (len / SU_CRYPTO_BLOCK + 1) * SU_CRYPTO_BLOCK + SU_SEG_OVERHEAD;
}

/*
 * A last segment stores 64 .. size + 64 bytes and the others size + 48
 * each; as that range is shorter than the stride, a file's size fits at
 * most one count of segments.
 */
su_err_t su_seg_count(uint64_t file_size, uint32_t segsize,
                      uint64_t *nseg, size_t *last_stored)
{
    uint64_t stride = (uint64_t)segsize + SU_SEG_OVERHEAD, body, k, last;

    if (!su_seg_size_ok(segsize) || file_size < SU_SEG_HEADER_LEN + SU_SEG_MIN_STORED)
        return SU_ERR_INTEGRITY;
    body = file_size - SU_SEG_HEADER_LEN;
    k = (body - SU_SEG_MIN_STORED) / stride;
    last = body - k * stride;
    if (last > (uint64_t)segsize + SU_CRYPTO_BLOCK + SU_SEG_OVERHEAD
        || (last - SU_SEG_OVERHEAD) % SU_CRYPTO_BLOCK != 0)
        return SU_ERR_INTEGRITY;
    *nseg = k + 1;
    *last_stored = (size_t)last;
    return SU_OK;
}

uint64_t su_seg_plain_size(uint32_t segsize, uint64_t nseg, size_t last_plain)
{
    return (nseg - 1) * (uint64_t)segsize + last_plain;
}

uint64_t su_seg_file_size(uint32_t segsize, uint64_t plain_size)
{
    /* every full segment but a last one that fills exactly */
    uint64_t full = plain_size / segsize;
    size_t rest = (size_t)(plain_size % segsize);

    if (full > 0 && rest == 0) {
        full--;
        rest = segsize;
    }
    return su_seg_offset(segsize, full) + su_seg_stored_len(segsize, rest, SU_SEG_LAST);
}
