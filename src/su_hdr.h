/*
 * Parsers of client header values: parameters (Content-Type,
 * Content-Disposition), RFC 5987 ext-values, RFC 9530 digest fields, the
 * reduction of a client's filename to a safe display name, and the tus
 * request headers (Tus-Resumable, Upload-Offset/-Length, -Metadata,
 * -Checksum).
 * Every input is hostile: lengths are bounded, nothing is trusted.
 */
#ifndef SU_HDR_H
#define SU_HDR_H

#include <apr_pools.h>
#include <apr_tables.h>
#include "su_common.h"

#define SU_NAME_MAX 255   /* bytes of UTF-8 in a stored name */

/* RFC 9110 tchar: what a token (a field or parameter name) is made of. */
int su_hdr_is_tchar(unsigned char c);
/* HTAB, SP, VCHAR or obs-text: what a field value or a quoted-pair may hold. */
int su_hdr_is_field_char(unsigned char c);

/*
 * Split "type/subtype; a=b; c=\"d\"" (or "form-data; name=...") into the
 * lowercased first token (*value) and its parameters (names lowercased, values
 * unquoted with quoted-pairs resolved) in *params. In the value of a
 * "filename" parameter only \" and \\ are quoted-pairs; any other backslash
 * stays (Windows paths). SU_ERR_BAD_REQUEST on malformed input (bad token,
 * unterminated quote, a parameter given twice).
 */
su_err_t su_hdr_params(apr_pool_t *p, const char *header, const char **value,
                       apr_table_t **params);

/*
 * Decode an RFC 5987 ext-value (charset'lang'pct-encoded); only UTF-8 and
 * ISO-8859-1 charsets (case-insensitive); the result is UTF-8.
 * SU_ERR_BAD_REQUEST if malformed.
 */
su_err_t su_hdr_ext_value(apr_pool_t *p, const char *ext, const char **out);

/*
 * The filename a Content-Disposition value carries: filename* (RFC 5987)
 * preferred over filename; *filename is NULL if neither is present. In a
 * plain filename HTML's form escapes %22, %0D and %0A (hex digits in any
 * case) are decoded, no other %XX. *disposition gets the lowercased
 * disposition type. The result is the client's string, still to be reduced
 * by su_hdr_safe_name.
 */
su_err_t su_hdr_disposition(apr_pool_t *p, const char *header,
                            const char **disposition, const char **filename);

/*
 * A display name from a client's filename: only the last path component
 * (after the last '/' or '\\'), control characters (0x00-0x1f, 0x7f) and
 * invalid UTF-8 sequences removed, cut to at most SU_NAME_MAX bytes on a
 * character boundary. "." and ".." become "". Never NULL.
 */
const char *su_hdr_safe_name(apr_pool_t *p, const char *filename);

/* digest algorithms we check */
typedef enum su_digest_alg {
    SU_DIGEST_NONE = 0,
    SU_DIGEST_SHA256,
    SU_DIGEST_SHA512,
    SU_DIGEST_MD5,         /* Content-MD5 part header only */
    SU_DIGEST_SHA1         /* tus Upload-Checksum only */
} su_digest_alg_t;

typedef struct su_digest {
    su_digest_alg_t alg;
    unsigned char value[64];
    apr_size_t len;        /* 32 for sha-256, 64 for sha-512, 16 for md5,
                              20 for sha1 */
} su_digest_t;

/*
 * Parse an RFC 9530 Content-Digest / Repr-Digest value (an RFC 8941
 * dictionary: `sha-256=:BASE64:, sha-512=:BASE64:`). Picks sha-512 if
 * present, else sha-256; unknown algorithms alone give alg SU_DIGEST_NONE
 * and SU_OK. Malformed syntax, bad base64 or a wrong digest length for a
 * known algorithm: SU_ERR_BAD_REQUEST.
 */
su_err_t su_hdr_digest(const char *header, su_digest_t *out);

/* Parse a Content-MD5 value (base64 of 16 bytes). */
su_err_t su_hdr_content_md5(const char *header, su_digest_t *out);

#define SU_HDR_TYPE_MAX 255  /* bytes of a stored media type */

/*
 * The rules every stored media type (a Content-Type value) meets: at most
 * SU_HDR_TYPE_MAX bytes, no control characters, and "type/subtype" with
 * well-formed parameters. Applied to the client's type at upload, and again
 * to the stored type before it becomes a response header. SU_OK and, if
 * media is not NULL, the lowercased "type/subtype" in *media;
 * SU_ERR_TOO_LARGE when too long, SU_ERR_BAD_REQUEST when malformed
 * (NULL and "" included).
 */
su_err_t su_hdr_valid_type(apr_pool_t *p, const char *value, const char **media);

/*
 * A pattern of an allowed-types list (SecUploadAllowedTypes): "type/subtype"
 * (an exact type) or a type then "/" "*" (any of its subtypes), each name an
 * RFC 6838 restricted-name (letters, digits, !#$&-^_.+). Not "*" "/" "*":
 * any type is the absence of a list.
 */
int su_hdr_type_pattern_ok(const char *pattern);

/* Is media type `type` (a Content-Type value; parameters ignored) allowed by a
 * pattern su_hdr_type_pattern_ok accepts? Case-insensitive. */
int su_hdr_type_matches(const char *type, const char *pattern);

/*
 * A Content-Disposition value for a download (RFC 6266): an ASCII fallback
 * filename="..." (others replaced by '_') and filename*=UTF-8''... carrying
 * the exact name. "attachment" alone for an empty name.
 */
const char *su_hdr_attachment(apr_pool_t *p, const char *name);

/* ---- tus 1.0.0 request headers (docs/tus.md) ---- */

#define SU_HDR_TUS_VERSION "1.0.0"
#define SU_HDR_TUS_METADATA_MAX 4096   /* bytes of an Upload-Metadata value */

/* Tus-Resumable: exactly SU_HDR_TUS_VERSION (NULL: no). */
int su_hdr_tus_version_ok(const char *v);

/*
 * Upload-Offset, Upload-Length (and a Content-Length the tus handler
 * compares with them): a whole decimal number from 0 to 2^63 - 1, digits
 * only (leading zeros allowed; no sign or blank). 1 and *out set, or 0
 * (NULL included).
 */
int su_hdr_tus_number(const char *v, apr_uint64_t *out);

/*
 * Upload-Metadata: "key value,key value,key", at most
 * SU_HDR_TUS_METADATA_MAX bytes. Pairs are split at ',' (empty ones
 * skipped), a pair at spaces (any number, before, between and after); a
 * pair is one key or a key and one value. A value is base64: characters of
 * the alphabet and '=' only, a length a multiple of 4; it is decoded up to
 * its first '=' (apr-util's reading: what follows and unused bits are not
 * checked), and the decoded bytes count up to their first NUL. Keys are
 * compared exactly; a key given twice counts as the last one with a value.
 * *name: filename's value through su_hdr_safe_name ("" without one);
 * *type: filetype's value, or NULL without one. SU_ERR_BAD_REQUEST if too
 * long or malformed (then *name is "" and *type NULL).
 */
su_err_t su_hdr_tus_metadata(apr_pool_t *p, const char *v, const char **name,
                             const char **type);

/*
 * Upload-Checksum: "algorithm value", one space, the algorithm sha1,
 * sha256 or sha512 (in lower case), the value base64 as in Upload-Metadata
 * decoding to exactly the digest's length (20, 32, 64 bytes).
 * SU_ERR_BAD_REQUEST for anything else (NULL included), *out zeroed.
 */
su_err_t su_hdr_tus_checksum(const char *v, su_digest_t *out);

#endif
