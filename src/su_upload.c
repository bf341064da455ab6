/*
 * One upload (su_upload.h): the body's framing (raw or multipart), its
 * limits, digests and content type, the encryption and the store's temp
 * file, fed bytes from the Apache face or from the unit tests.
 */
#include "su_upload.h"

#include <string.h>

#include <apr_strings.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "su_format.h"
#include "su_hasher.h"
#include "su_hdr.h"
#include "su_seal.h"
#include "su_store.h"
#include "su_util.h"

/* Encrypt in slices of this size so the scratch buffer stays small. */
#define SU_UPLOAD_SLICE (64 * 1024)

/* A digest the client declared, and the running hash that must match it. */
typedef struct su_upload_check {
    su_digest_t want;
    EVP_MD_CTX *ctx;
    const char *label;
} su_upload_check_t;

struct su_upload {
    apr_pool_t *pool;
    const su_upload_conf_t *conf;
    su_err_t err;
    const char *message;
    const char *detail;

    su_mp_t *mp;                 /* NULL for a raw body */
    int bare;                    /* raw, without Content-Type or -Disposition */
    int in_file_part;            /* multipart: the current part is the file */
    int file_parts;
    apr_uint64_t received;

    su_enc_t *enc;               /* version 1 */
    su_seal_t *seal;             /* version 2: segments sealed on workers */
    su_hasher_t *hasher;         /* SHA-256 of the plaintext, maybe threaded */
    su_store_file_t *file;
    char id[SU_ID_HEX_LEN + 1];

    su_upload_check_t body_checks[2];
    int nbody_checks;
    su_upload_check_t part_check;  /* on the file part, if declared */
    int has_part_check;

    su_upload_info_t info;
};

/* The first failure sticks. message NULL: the kind's default words. */
static su_err_t su_upload_fail(su_upload_t *u, su_err_t e, const char *message,
                               const char *detail)
{
    if (u->err == SU_OK) {
        u->err = e;
        u->message = message ? message : su_err_message(e);
        u->detail = detail ? detail : u->message;
    }
    return u->err;
}

static apr_status_t su_upload_check_cleanup(void *data)
{
    su_upload_check_t *c = data;
    if (c->ctx) {
        EVP_MD_CTX_free(c->ctx);
        c->ctx = NULL;
    }
    return APR_SUCCESS;
}

static const EVP_MD *su_upload_md(su_digest_alg_t alg)
{
    switch (alg) {
    case SU_DIGEST_SHA256: return EVP_sha256();
    case SU_DIGEST_SHA512: return EVP_sha512();
    case SU_DIGEST_MD5:    return EVP_md5();
    default:               return NULL;
    }
}

static su_err_t su_upload_check_init(su_upload_t *u, su_upload_check_t *c,
                                     const char *label)
{
    const EVP_MD *md = su_upload_md(c->want.alg);

    c->label = label;
    if (md == NULL)
        return SU_OK;  /* an unknown algorithm alone is ignored */
    c->ctx = EVP_MD_CTX_new();
    if (c->ctx == NULL || EVP_DigestInit_ex(c->ctx, md, NULL) != 1)
        return su_upload_fail(u, SU_ERR_INTERNAL, NULL,
                              "digest initialisation failed");
    apr_pool_cleanup_register(u->pool, c, su_upload_check_cleanup,
                              apr_pool_cleanup_null);
    return SU_OK;
}

static void su_upload_check_update(su_upload_check_t *c, const void *buf,
                                   apr_size_t len)
{
    if (c->ctx && len)
        EVP_DigestUpdate(c->ctx, buf, len);
}

static su_err_t su_upload_check_final(su_upload_t *u, su_upload_check_t *c)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;

    if (c->ctx == NULL)
        return SU_OK;
    if (EVP_DigestFinal_ex(c->ctx, md, &mdlen) != 1)
        return su_upload_fail(u, SU_ERR_INTERNAL, NULL,
                              "digest computation failed");
    if (mdlen != c->want.len || CRYPTO_memcmp(md, c->want.value, mdlen) != 0)
        return su_upload_fail(u, SU_ERR_BAD_REQUEST,
                              apr_psprintf(u->pool, "%s does not match the data received.",
                                           c->label), NULL);
    return SU_OK;
}

static int su_upload_type_allowed(const su_upload_t *u, const char *type)
{
    const apr_array_header_t *a = u->conf->allowed_types;
    int i;

    if (a == NULL || a->nelts == 0)
        return 1;
    for (i = 0; i < a->nelts; i++)
        if (su_hdr_type_matches(type, APR_ARRAY_IDX(a, i, const char *)))
            return 1;
    return 0;
}

/* The stored type: the client's value, bounded and free of control bytes. */
static su_err_t su_upload_content_type(su_upload_t *u, const char *given,
                                       const char **out)
{
    const char *media = NULL;
    su_err_t rv;

    /* no type given is application/octet-stream, and is checked as such */
    if (given == NULL || *given == '\0')
        given = "application/octet-stream";
    rv = su_hdr_valid_type(u->pool, given, &media);
    if (rv == SU_ERR_TOO_LARGE)
        return su_upload_fail(u, SU_ERR_BAD_REQUEST, "Content-Type is too long.", NULL);
    if (rv != SU_OK)
        return su_upload_fail(u, SU_ERR_BAD_REQUEST, "Malformed Content-Type.", NULL);
    if (!su_upload_type_allowed(u, media))
        return su_upload_fail(u, SU_ERR_UNSUPPORTED_TYPE,
                              apr_psprintf(u->pool, "Files of type %s are not accepted here.",
                                           media), NULL);
    *out = apr_pstrdup(u->pool, given);
    return SU_OK;
}

static su_err_t su_upload_store(su_upload_t *u, const unsigned char *buf,
                                apr_size_t len)
{
    const char *err = NULL;
    su_err_t rv = su_store_write(u->file, buf, len, &err);
    if (rv != SU_OK)
        return su_upload_fail(u, rv, NULL, err);
    return SU_OK;
}

/* Where the version 2 writer's bytes go: the temp file (whose errors
 * become the upload's, with their detail). */
static su_err_t su_upload_seal_out(void *ctx, const unsigned char *buf, size_t len)
{
    return su_upload_store(ctx, buf, len);
}

/* Version 1: the header goes out first, the encryptor keeps the rest. */
static su_err_t su_upload_start_v1(su_upload_t *u)
{
    unsigned char header[SU_FMT_HEADER_LEN];
    char *iv = apr_palloc(u->pool, SU_FMT_IV_HEX_LEN + 1);
    su_err_t rv;

    /* AES-CBC, its HMAC and the plaintext digest: three cores' worth of
     * work for a large file, when there are cores to spare */
    rv = su_fmt_enc_create(u->pool, u->conf->kek, &u->enc, header);
    if (rv == SU_OK)
        rv = su_enc_mac_beside(u->enc);
    if (rv != SU_OK)
        return su_upload_fail(u, SU_ERR_INTERNAL, NULL, "cannot start encryption");
    su_fmt_header_iv_hex(header, iv);
    u->info.iv_hex = iv;
    return su_upload_store(u, header, sizeof header);
}

/* Version 2: the writer sends its header at once; the nonce binds the id. */
static su_err_t su_upload_start_v2(su_upload_t *u)
{
    uint32_t segsize = u->conf->segsize ? u->conf->segsize : SU_SEG_SIZE_DEFAULT;
    char *nonce = apr_palloc(u->pool, 2 * SU_SEG_NONCE_LEN + 1);
    su_err_t rv;

    rv = su_seal_create(u->pool, u->conf->kek, u->id, segsize, NULL,
                        u->conf->seal_threads, su_upload_seal_out, u, &u->seal);
    if (rv != SU_OK)
        return su_upload_fail(u, SU_ERR_INTERNAL, NULL, "cannot start encryption");
    su_util_hex(nonce, su_seal_header(u->seal) + SU_SEG_OFF_NONCE, SU_SEG_NONCE_LEN);
    u->info.iv_hex = nonce;
    return SU_OK;
}

/* Open the temp file, then the encryption, which writes the header. */
static su_err_t su_upload_open_file(su_upload_t *u, const char *filename,
                                    const char *content_type)
{
    const char *err = NULL;
    su_err_t rv;

    if (su_upload_content_type(u, content_type, &u->info.content_type) != SU_OK)
        return u->err;
    u->info.name = su_hdr_safe_name(u->pool, filename ? filename : "");
    if (su_hasher_create(u->pool, &u->hasher) != SU_OK)
        return su_upload_fail(u, SU_ERR_INTERNAL, NULL, "cannot start encryption");
    rv = su_store_create(u->pool, u->conf->storage_dir, u->id, &u->file, &err);
    if (rv != SU_OK)
        return su_upload_fail(u, rv, NULL, err);
    if (u->conf->sync)
        su_store_writeback(u->file);
    return u->conf->format == 1 ? su_upload_start_v1(u) : su_upload_start_v2(u);
}

/* Version 2: segments sealed as they fill (a store error is already the
 * upload's, with its detail). */
static su_err_t su_upload_seal_more(su_upload_t *u, const unsigned char *in,
                                    apr_size_t len)
{
    if (su_seal_write(u->seal, in, len) != SU_OK)
        return su_upload_fail(u, SU_ERR_INTERNAL, NULL, "encryption failed");
    return SU_OK;
}

/* Plaintext of the file: count, bound, encrypt, store. */
static su_err_t su_upload_plain(su_upload_t *u, const char *buf, apr_size_t len)
{
    const unsigned char *in = (const unsigned char *)buf;

    if (len > u->conf->max_size - u->info.size)
        return su_upload_fail(u, SU_ERR_TOO_LARGE,
                              su_upload_limit_message(u->pool, u->conf->max_size),
                              NULL);
    u->info.size += len;
    if (u->has_part_check)
        su_upload_check_update(&u->part_check, buf, len);
    if (su_hasher_update(u->hasher, buf, len) != SU_OK)
        return su_upload_fail(u, SU_ERR_INTERNAL, NULL,
                              "digest computation failed");
    if (u->seal != NULL)
        return su_upload_seal_more(u, in, len);
    /* ciphertext is produced straight into the store's write buffer */
    while (len > 0) {
        apr_size_t n = len < SU_UPLOAD_SLICE ? len : SU_UPLOAD_SLICE;
        unsigned char *at = NULL;
        const char *err = NULL;
        size_t outlen = 0;
        su_err_t rv = su_store_space(u->file, n + SU_FMT_BLOCK, &at, &err);

        if (rv != SU_OK)
            return su_upload_fail(u, rv, NULL, err);
        if (su_enc_update(u->enc, in, n, at, &outlen) != SU_OK)
            return su_upload_fail(u, SU_ERR_INTERNAL, NULL,
                                  "encryption failed");
        su_store_advance(u->file, outlen);
        in += n;
        len -= n;
    }
    return SU_OK;
}

/* ---- multipart callbacks ---- */

static su_err_t su_upload_part_digest(su_upload_t *u, const su_mp_part_t *part)
{
    const char *cd = apr_table_get(part->headers, "Content-Digest");
    const char *md5 = apr_table_get(part->headers, "Content-MD5");

    if (cd) {
        if (su_hdr_digest(cd, &u->part_check.want) != SU_OK)
            return su_upload_fail(u, SU_ERR_BAD_REQUEST,
                                  "Malformed Content-Digest part header.", NULL);
        u->has_part_check = u->part_check.want.alg != SU_DIGEST_NONE;
        if (u->has_part_check)
            return su_upload_check_init(u, &u->part_check, "Content-Digest of the file part");
    }
    if (md5) {
        if (su_hdr_content_md5(md5, &u->part_check.want) != SU_OK)
            return su_upload_fail(u, SU_ERR_BAD_REQUEST,
                                  "Malformed Content-MD5 part header.", NULL);
        u->has_part_check = 1;
        return su_upload_check_init(u, &u->part_check, "Content-MD5 of the file part");
    }
    return SU_OK;
}

static int su_upload_on_part_begin(void *ctx, const su_mp_part_t *part)
{
    su_upload_t *u = ctx;

    u->in_file_part = part->name && strcmp(part->name, u->conf->field_name) == 0;
    if (!u->in_file_part)
        return SU_OK;
    if (++u->file_parts > 1)
        return su_upload_fail(u, SU_ERR_BAD_REQUEST,
                              apr_psprintf(u->pool, "More than one part named '%s'.",
                                           u->conf->field_name), NULL);
    if (su_upload_part_digest(u, part) != SU_OK)
        return u->err;
    return su_upload_open_file(u, part->filename, part->content_type);
}

static int su_upload_on_part_data(void *ctx, const char *buf, apr_size_t len)
{
    su_upload_t *u = ctx;
    return u->in_file_part ? su_upload_plain(u, buf, len) : SU_OK;
}

static int su_upload_on_part_end(void *ctx)
{
    su_upload_t *u = ctx;

    if (!u->in_file_part)
        return SU_OK;
    u->in_file_part = 0;
    return u->has_part_check ? su_upload_check_final(u, &u->part_check) : SU_OK;
}

static const su_mp_callbacks_t su_upload_mp_cb = {
    su_upload_on_part_begin, su_upload_on_part_data, su_upload_on_part_end
};

/* ---- the public face ---- */

static su_err_t su_upload_body_digest(su_upload_t *u, const char *value,
                                      const char *label)
{
    su_upload_check_t *c;

    if (value == NULL)
        return SU_OK;
    c = &u->body_checks[u->nbody_checks];
    if (su_hdr_digest(value, &c->want) != SU_OK)
        return su_upload_fail(u, SU_ERR_BAD_REQUEST,
                              apr_psprintf(u->pool, "Malformed %s header.", label), NULL);
    if (c->want.alg == SU_DIGEST_NONE)
        return SU_OK;
    u->nbody_checks++;
    return su_upload_check_init(u, c, label);
}

static int su_upload_is_multipart(const char *content_type)
{
    apr_size_t n = sizeof("multipart/") - 1;
    return content_type && strncasecmp(content_type, "multipart/", n) == 0;
}

su_err_t su_upload_begin(apr_pool_t *p, const su_upload_conf_t *conf,
                         const char *content_type, const char *disposition,
                         const char *content_digest, const char *repr_digest,
                         su_upload_t **out)
{
    su_upload_t *u = apr_pcalloc(p, sizeof(*u));
    const char *boundary, *dtype, *filename = NULL;

    u->pool = p;
    u->conf = conf;
    *out = u;
    if (su_store_new_id(u->id) != SU_OK)
        return su_upload_fail(u, SU_ERR_INTERNAL, NULL,
                              "the random generator failed");
    u->info.id = u->id;
    u->info.relpath = su_store_relpath(p, u->id);
    u->info.key_id_hex = conf->kek->id_hex;

    if (su_upload_body_digest(u, content_digest, "Content-Digest") != SU_OK
        || su_upload_body_digest(u, repr_digest, "Repr-Digest") != SU_OK)
        return u->err;

    if (su_upload_is_multipart(content_type)) {
        if (su_mp_boundary(p, content_type, &boundary) != SU_OK)
            return su_upload_fail(u, SU_ERR_BAD_REQUEST,
                                  "Malformed multipart/form-data Content-Type "
                                  "(a boundary of 1-70 characters is required).", NULL);
        u->mp = su_mp_create(p, boundary, &conf->limits, &su_upload_mp_cb, u);
        return SU_OK;
    }
    if (disposition
        && su_hdr_disposition(p, disposition, &dtype, &filename) != SU_OK)
        return su_upload_fail(u, SU_ERR_BAD_REQUEST,
                              "Malformed Content-Disposition header.", NULL);
    u->bare = (content_type == NULL || *content_type == '\0') && disposition == NULL;
    return su_upload_open_file(u, filename, content_type);
}

su_err_t su_upload_feed(su_upload_t *u, const char *buf, apr_size_t len)
{
    su_err_t rv;
    int i;

    if (u->err != SU_OK)
        return u->err;
    u->received += len;
    for (i = 0; i < u->nbody_checks; i++)
        su_upload_check_update(&u->body_checks[i], buf, len);
    if (u->mp == NULL)
        return su_upload_plain(u, buf, len);
    rv = su_mp_feed(u->mp, buf, len);
    if (rv != SU_OK && u->err == SU_OK)
        su_upload_fail(u, rv, su_mp_error(u->mp), NULL);
    return u->err;
}


/* The end of the ciphertext: version 1's last blocks and tag, version 2's
 * last segment. */
static su_err_t su_upload_seal_end(su_upload_t *u)
{
    unsigned char tail[SU_FMT_BLOCK + SU_FMT_TAG_LEN];
    size_t n = 0;

    if (u->seal != NULL) {
        if (su_seal_finish(u->seal) != SU_OK)
            return su_upload_fail(u, SU_ERR_INTERNAL, NULL, "encryption failed");
        return SU_OK;
    }
    if (su_enc_final(u->enc, tail, &n) != SU_OK)
        return su_upload_fail(u, SU_ERR_INTERNAL, NULL,
                              "encryption failed");
    return su_upload_store(u, tail, n);
}

static su_err_t su_upload_seal(su_upload_t *u)
{
    unsigned char sha[32];
    char *hex;

    if (su_upload_seal_end(u) != SU_OK)
        return u->err;
    if (su_hasher_final(u->hasher, sha) != SU_OK)
        return su_upload_fail(u, SU_ERR_INTERNAL, NULL,
                              "digest computation failed");
    hex = apr_palloc(u->pool, 65);
    su_util_hex(hex, sha, sizeof(sha));
    u->info.sha256_hex = hex;
    return SU_OK;
}

su_err_t su_upload_finish(su_upload_t *u, int sync)
{
    const char *err = NULL;
    su_err_t rv;
    int i;

    if (u->err != SU_OK)
        return u->err;
    /* a POST with nothing at all is a mistake, not a file: an empty file is
     * one the client names or types (a form part, a Content-Type, a
     * Content-Disposition) */
    if (u->mp == NULL && u->bare && u->received == 0)
        return su_upload_fail(u, SU_ERR_BAD_REQUEST,
                              "The request has no body and no Content-Type: "
                              "there is no file to upload.",
                              "empty raw body without Content-Type");
    if (u->mp) {
        rv = su_mp_finish(u->mp);
        if (rv != SU_OK)
            return su_upload_fail(u, rv, su_mp_error(u->mp), NULL);
        if (u->file_parts == 0)
            return su_upload_fail(u, SU_ERR_BAD_REQUEST,
                                  apr_psprintf(u->pool, "No part named '%s' in the form.",
                                               u->conf->field_name), NULL);
    }
    for (i = 0; i < u->nbody_checks; i++)
        if (su_upload_check_final(u, &u->body_checks[i]) != SU_OK)
            return u->err;
    if (su_upload_seal(u) != SU_OK)
        return u->err;
    rv = su_store_flush(u->file, sync, &err);
    if (rv != SU_OK)
        return su_upload_fail(u, rv, NULL, err);
    return SU_OK;
}

su_err_t su_upload_commit(su_upload_t *u, int sync)
{
    const char *err = NULL;
    su_err_t rv;

    if (u->err != SU_OK)
        return u->err;
    rv = su_store_commit(u->file, sync, &err);
    if (rv != SU_OK)
        return su_upload_fail(u, rv, NULL, err);
    return SU_OK;
}

void su_upload_discard(su_upload_t *u)
{
    if (u->file)
        su_store_discard(u->file);
}

const char *su_upload_limit_message(apr_pool_t *p, apr_uint64_t max_size)
{
    return apr_psprintf(p, "The file is larger than the %" APR_UINT64_T_FMT
                        " bytes accepted here.", max_size);
}

const su_upload_info_t *su_upload_info(const su_upload_t *u) { return &u->info; }
const char *su_upload_id(const su_upload_t *u) { return u->id; }
apr_uint64_t su_upload_received(const su_upload_t *u) { return u->received; }
const char *su_upload_message(const su_upload_t *u)
{
    return u->message ? u->message : "";
}
const char *su_upload_detail(const su_upload_t *u)
{
    return u->detail ? u->detail : "";
}
