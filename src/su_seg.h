/*
 * The segmented format, version 2 (docs/format.md): a header that can be
 * read and checked without the body, then fixed-size plaintext segments,
 * each AES-256-CBC under an IV of its own and tagged with HMAC-SHA256
 * (the STREAM construction: every tag binds the file's id, the header's
 * nonce, the segment's index and whether it is the last).
 *
 *   header, SU_SEG_HEADER_LEN bytes:
 *     0    8  magic "SECUPLD" 0x02
 *     8    8  key id (first 8 bytes of SHA-256 of the KEK)
 *     16  72  RFC 3394 AES-256 key wrap of the 64-byte data key
 *     88   4  segment size: plaintext bytes per segment, big-endian
 *     92  16  nonce: fresh for every file (the upload's identity)
 *     108 32  header tag: HMAC-SHA256 (MAC key) over
 *             0x01 || id (16 bytes) || bytes 0 .. 107
 *   then segment i (i = 0, 1, ...), at SU_SEG_HEADER_LEN + i * (size + 48):
 *     16  IV, fresh from the CSPRNG
 *     n   AES-256-CBC ciphertext: n = size for every segment but the
 *         last (no padding); the last is PKCS#7-padded (16 .. size + 16)
 *     32  tag: HMAC-SHA256 (MAC key) over
 *         0x02 || id || nonce || index (8 bytes, big-endian) || flag (1 byte)
 *         || IV || ciphertext
 *
 * Key material lives in OpenSSL contexts only (the data key is wiped once
 * they hold it); every context is freed, and so wiped, by a cleanup on the
 * pool it was made in. Functions here know nothing of files on disk.
 */
#ifndef SU_SEG_H
#define SU_SEG_H

#include <apr_pools.h>
#include <stdint.h>
#include "su_common.h"
#include "su_crypto.h"
#include "su_key.h"

#define SU_SEG_MAGIC        "SECUPLD\x02"
#define SU_SEG_MAGIC_LEN    8
#define SU_SEG_OFF_KEYID    8
#define SU_SEG_OFF_WRAPPED  16
#define SU_SEG_OFF_SIZE     88
#define SU_SEG_OFF_NONCE    92
#define SU_SEG_OFF_TAG      108
#define SU_SEG_NONCE_LEN    16
#define SU_SEG_HEADER_LEN   140
#define SU_SEG_ID_LEN       16          /* a file id's 128 bits */
/* what a segment adds to its plaintext, besides the last one's padding */
#define SU_SEG_OVERHEAD     (SU_CRYPTO_IV_LEN + SU_CRYPTO_TAG_LEN)
/* the smallest stored segment: IV, one padding block, tag */
#define SU_SEG_MIN_STORED   (SU_SEG_OVERHEAD + SU_CRYPTO_BLOCK)

/* Segment sizes a header may carry: multiples of 16 in this range
 * (a hostile header cannot make a reader allocate more). */
#define SU_SEG_SIZE_MIN     4096u
#define SU_SEG_SIZE_MAX     (16u * 1024 * 1024)
/* What new files use (docs/performance.md: how it was chosen). */
#define SU_SEG_SIZE_DEFAULT 65536u

/* The flag byte of a segment's tag. A file's last segment is LAST, every
 * other one MORE. PENDING marks a partial segment kept between the
 * requests of a resumable upload: no complete file ever accepts it, so a
 * kept partial segment can never stand in for the end of a file. */
typedef enum su_seg_flag {
    SU_SEG_MORE = 0,
    SU_SEG_LAST = 1,
    SU_SEG_PENDING = 2
} su_seg_flag_t;

/* The keys of one file, as OpenSSL contexts. */
typedef struct su_seg_file su_seg_file_t;

/*
 * A new file: a fresh data key (and nonce, unless nonce is given: a v1
 * file converted keeps its IV as its nonce, so that what binds it to its
 * id stays the same), wrapped under kek. header[] gets the whole header.
 * id: the file's 32 hex digits.
 */
su_err_t su_seg_create(apr_pool_t *p, const su_kek_t *kek, const char *id,
                       uint32_t segsize, const unsigned char *nonce,
                       unsigned char header[SU_SEG_HEADER_LEN],
                       su_seg_file_t **out);

/*
 * An existing file's header, checked: magic, segment size, a KEK among
 * keks[0..n-1] whose id matches and whose unwrap passes, then the header
 * tag (constant-time) under id. SU_ERR_INTEGRITY otherwise. *kek (if not
 * NULL) gets the KEK that opened it.
 */
su_err_t su_seg_open(apr_pool_t *p, const su_kek_t *const *keks, int nkeks,
                     const char *id, const unsigned char header[SU_SEG_HEADER_LEN],
                     su_seg_file_t **out, const su_kek_t **kek);

/*
 * Key rotation: the header of the same file under newkek (key id, wrapped
 * key and header tag change; segment size, nonce and every segment stay),
 * after checking the old header as su_seg_open does.
 */
su_err_t su_seg_rewrap(apr_pool_t *p, const su_kek_t *const *keks, int nkeks,
                       const char *id, const unsigned char header[SU_SEG_HEADER_LEN],
                       const su_kek_t *newkek, unsigned char out[SU_SEG_HEADER_LEN]);

/* Header fields, without any key (the header is not verified by these). */
int su_seg_is_v2(const unsigned char *h, size_t len);
uint32_t su_seg_header_size(const unsigned char h[SU_SEG_HEADER_LEN]);
int su_seg_size_ok(uint32_t segsize);

uint32_t su_seg_size(const su_seg_file_t *f);
const unsigned char *su_seg_nonce(const su_seg_file_t *f);

/*
 * What one thread seals or opens segments with: contexts of its own
 * (OpenSSL contexts are not shared between threads), made from f's in
 * pool p (a thread's own pool, or f's).
 */
typedef struct su_seg_ctx su_seg_ctx_t;
su_err_t su_seg_ctx_create(apr_pool_t *p, const su_seg_file_t *f,
                           su_seg_ctx_t **out);

/*
 * Seal segment index: len plaintext bytes (exactly the segment size for
 * MORE; at most that for LAST and PENDING) into out, which needs
 * su_seg_stored_len(segsize, len, flag) bytes; *outlen gets that length.
 * A fresh IV comes from the CSPRNG.
 */
su_err_t su_seg_seal(su_seg_ctx_t *c, uint64_t index, su_seg_flag_t flag,
                     const unsigned char *in, size_t len,
                     unsigned char *out, size_t *outlen);

/*
 * Open stored segment index (inlen bytes at in) as flag: its length is
 * checked, then its tag (constant-time), and only then is it decrypted
 * into out (inlen - SU_SEG_OVERHEAD bytes of room). SU_ERR_INTEGRITY if
 * any of it fails; out is then wiped.
 */
su_err_t su_seg_unseal(su_seg_ctx_t *c, uint64_t index, su_seg_flag_t flag,
                       const unsigned char *in, size_t inlen,
                       unsigned char *out, size_t *outlen);

/* ---- where things are (no keys needed) ---- */

/* Where segment index starts in the file. */
uint64_t su_seg_offset(uint32_t segsize, uint64_t index);

/* The stored length of a segment of len plaintext bytes. */
size_t su_seg_stored_len(uint32_t segsize, size_t len, su_seg_flag_t flag);

/*
 * The segments of a complete file of file_size bytes: their count and the
 * stored length of the last one. SU_ERR_INTEGRITY when no file of this
 * segment size has that size (truncated or extended). The length is
 * exact: every segment but the last is full.
 */
su_err_t su_seg_count(uint64_t file_size, uint32_t segsize,
                      uint64_t *nseg, size_t *last_stored);

/* The plaintext size of a file of nseg segments whose last holds last_plain. */
uint64_t su_seg_plain_size(uint32_t segsize, uint64_t nseg, size_t last_plain);

/* The stored size of a complete file of plain_size bytes. */
uint64_t su_seg_file_size(uint32_t segsize, uint64_t plain_size);

#endif
