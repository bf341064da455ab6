/*
 * One upload, from the first body byte to the stored file: framing (raw or
 * multipart), limits, digests, encryption and the temp file, free of Apache
 * so that it can be driven by the handler and by the unit tests alike.
 */
#ifndef SU_UPLOAD_H
#define SU_UPLOAD_H

#include <apr_pools.h>
#include <apr_tables.h>
#include <stdint.h>
#include "su_common.h"
#include "su_key.h"
#include "su_mp.h"

typedef struct su_upload_conf {
    const su_kek_t *kek;                   /* encrypts */
    const char *storage_dir;
    apr_uint64_t max_size;                 /* largest plaintext */
    const char *field_name;                /* multipart field of the file */
    const apr_array_header_t *allowed_types; /* const char *; NULL/empty: any */
    su_mp_limits_t limits;
    int sync;                              /* the file will be fsynced */
    int format;                            /* 1: version 1; else version 2 */
    uint32_t segsize;                      /* version 2; 0: SU_SEG_SIZE_DEFAULT */
    int seal_threads;                      /* version 2's workers; 0: su_seal's choice */
} su_upload_conf_t;

typedef struct su_upload_info {
    const char *id;
    const char *name;
    const char *content_type;
    const char *sha256_hex;
    const char *key_id_hex;
    const char *relpath;
    /* what binds the file to its id: version 1's IV (su_format.h),
     * version 2's nonce (su_seg.h) */
    const char *iv_hex;
    apr_uint64_t size;
} su_upload_info_t;

typedef struct su_upload su_upload_t;

/*
 * Start an upload. content_type and disposition are the request's headers
 * (either may be NULL); digests are the values of Content-Digest and
 * Repr-Digest (either may be NULL), checked against the body as received.
 * Errors come with su_upload_message() set; *out is set in any case once
 * allocation succeeded, so the message can be read.
 */
su_err_t su_upload_begin(apr_pool_t *p, const su_upload_conf_t *conf,
                         const char *content_type, const char *disposition,
                         const char *content_digest, const char *repr_digest,
                         su_upload_t **out);

/* The next body bytes, as they arrived. Errors are sticky. */
su_err_t su_upload_feed(su_upload_t *u, const char *buf, apr_size_t len);

/* End of body: framing complete, digests match, file flushed (fsync when sync). */
su_err_t su_upload_finish(su_upload_t *u, int sync);

/* Rename into place (fsync of the directory when sync). */
su_err_t su_upload_commit(su_upload_t *u, int sync);

/* Drop the temp file (also done by the pool cleanup). */
void su_upload_discard(su_upload_t *u);

const su_upload_info_t *su_upload_info(const su_upload_t *u);
/* The id chosen for this upload (known from the start, or NULL). */
const char *su_upload_id(const su_upload_t *u);
/* Body bytes fed so far. */
apr_uint64_t su_upload_received(const su_upload_t *u);
/* Why it failed, fit for the client. */
const char *su_upload_message(const su_upload_t *u);
/* What a client is told about a file over max_size bytes, whoever finds it
 * (the core while reading, the module from a declared length). */
const char *su_upload_limit_message(apr_pool_t *p, apr_uint64_t max_size);
/* Why it failed, for the admin's log (paths, errno text; never key bytes). */
const char *su_upload_detail(const su_upload_t *u);

#endif
