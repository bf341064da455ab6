/*
 * The on-disk formats, version 1 and, read through su_segr.h, version 2
 * (su_seg.h): every whole-file operation and the reader below serve both,
 * by the file's magic. Version 1 (docs/format.md):
 *   0   8  magic "SECUPLD" 0x01
 *   8   8  key id (first 8 bytes of SHA-256 of the KEK)
 *   16  72 RFC 3394 AES-256 key wrap (default IV) of the 64-byte data key
 *          (32-byte AES key || 32-byte HMAC key)
 *   88  16 IV
 *   104 n  AES-256-CBC/PKCS#7 ciphertext
 *   104+n 32 HMAC-SHA256 (MAC key) over bytes 0 .. 104+n-1
 *
 * The header, and the whole-file operations: verify, decrypt, the
 * streaming reader, rewrap. The cryptography itself (key wrap, the
 * streaming encryptor and decryptor) is su_crypto.h's.
 */
#ifndef SU_FORMAT_H
#define SU_FORMAT_H

#include <apr_pools.h>
#include "su_common.h"
#include "su_crypto.h"
#include "su_key.h"

#define SU_FMT_MAGIC       "SECUPLD\x01"
#define SU_FMT_MAGIC_LEN   8
#define SU_FMT_WRAPPED_LEN SU_CRYPTO_WRAPPED_LEN
#define SU_FMT_DATAKEY_LEN SU_CRYPTO_DATAKEY_LEN
#define SU_FMT_IV_LEN      SU_CRYPTO_IV_LEN
#define SU_FMT_HEADER_LEN  104
#define SU_FMT_TAG_LEN     SU_CRYPTO_TAG_LEN
#define SU_FMT_BLOCK       SU_CRYPTO_BLOCK
/* the smallest valid file: header, one padding block, tag */
#define SU_FMT_MIN_FILE    (SU_FMT_HEADER_LEN + SU_FMT_BLOCK + SU_FMT_TAG_LEN)

/*
 * Start a file: a fresh data key and IV from the CSPRNG, the data key wrapped
 * under kek. Writes the 104-byte header into header[] (the caller stores it
 * first) and gives the encryptor (su_crypto.h), whose HMAC already covers
 * the header.
 */
su_err_t su_fmt_enc_create(apr_pool_t *p, const su_kek_t *kek, su_enc_t **out,
                           unsigned char header[SU_FMT_HEADER_LEN]);

/*
 * Open a file for decryption: check the magic, find a KEK whose id matches
 * the header among keks[0..n-1] and unwrap the data key (a KEK whose unwrap
 * fails is skipped); the decryptor's HMAC starts with the header.
 * SU_ERR_INTEGRITY if the header is bad or no key opens it. *kek (if not
 * NULL) gets the KEK that opened it.
 */
su_err_t su_fmt_dec_create(apr_pool_t *p, const su_kek_t *const *keks, int nkeks,
                           const unsigned char header[SU_FMT_HEADER_LEN],
                           su_dec_t **out, const su_kek_t **kek);

/* ---- what binds a file to its id ---- */

/*
 * A stored file's IV, as SU_FMT_IV_HEX_LEN lowercase hex digits and a NUL:
 * recorded with the file's metadata at upload (Redis field `iv`), and
 * compared before the file is served as that id. It identifies the upload:
 * 128 bits from the CSPRNG for every file, covered by the tag (no file
 * with another's IV verifies without the data key), and kept by a rewrap,
 * which rewrites the header's key fields and the tag but not the IV or the
 * ciphertext.
 */
#define SU_FMT_IV_HEX_LEN (2 * SU_FMT_IV_LEN)
void su_fmt_header_iv_hex(const unsigned char header[SU_FMT_HEADER_LEN],
                          char out[SU_FMT_IV_HEX_LEN + 1]);

/* ---- whole files (CLI, files handler) ---- */

/*
 * Verify a stored file completely (magic, key, tag, padding) without writing
 * any plaintext anywhere. *plain_size gets the exact plaintext length.
 */
su_err_t su_fmt_file_verify(apr_pool_t *p, const char *path,
                            const su_kek_t *const *keks, int nkeks,
                            uint64_t *plain_size);
/*
 * The same under an id of the caller's. Every tag of a v2 file binds its
 * id: without one (id NULL) it is the file name's (<id>.enc, and the
 * store's temp names), and a v2 file whose name gives none fails. A v1
 * file ignores it. Likewise su_fmt_file_decrypt_id, su_fmt_reader_open_id.
 */
su_err_t su_fmt_file_verify_id(apr_pool_t *p, const char *path, const char *id,
                               const su_kek_t *const *keks, int nkeks,
                               uint64_t *plain_size);

/*
 * The IV from a stored file's header (a v2 file's nonce), *not* verified (a report without
 * keys): SU_ERR_NOT_FOUND if there is no file, SU_ERR_INTEGRITY if it
 * does not have the size or magic of a stored file.
 */
su_err_t su_fmt_file_iv_hex(apr_pool_t *p, const char *path,
                            char out[SU_FMT_IV_HEX_LEN + 1]);

/*
 * What a stored file shows without any key, from its size and its first 16
 * bytes alone: why it fails (for a report that never depends on secret
 * material), and the id of the key it is under.
 */
typedef enum su_fmt_look {
    SU_FMT_LOOKS_STORED = 0, /* the size, magic and key id of a stored file */
    SU_FMT_NO_FILE,
    SU_FMT_UNREADABLE,       /* cannot be opened or read: open_errno */
    SU_FMT_NOT_REGULAR,
    SU_FMT_TOO_SHORT,        /* not even magic and key id */
    SU_FMT_BAD_MAGIC,        /* not a stored file, or an unknown version */
    SU_FMT_BAD_SIZE          /* truncated or extended */
} su_fmt_look_t;

typedef struct su_fmt_head {
    su_fmt_look_t look;
    int open_errno;
    int has_key_id;          /* LOOKS_STORED and BAD_SIZE */
    unsigned char key_id[SU_KEY_ID_LEN];
} su_fmt_head_t;

void su_fmt_file_look(const char *path, su_fmt_head_t *h);

/* Is one of keks[0..n-1] the key with this id? */
int su_fmt_have_key(const su_kek_t *const *keks, int nkeks,
                    const unsigned char id[SU_KEY_ID_LEN]);

/* Callback for decrypted bytes; return non-zero to stop (then SU_ERR_ABORTED). */
typedef int (*su_fmt_sink_fn)(void *ctx, const unsigned char *buf, size_t len);

/*
 * Two passes: verify the tag over the whole file, then decrypt it to sink.
 * No plaintext reaches sink before the tag has been verified.
 */
su_err_t su_fmt_file_decrypt(apr_pool_t *p, const char *path,
                             const su_kek_t *const *keks, int nkeks,
                             su_fmt_sink_fn sink, void *ctx);
/* A v2 file is decrypted segment by segment, each verified before its
 * bytes reach sink: a segment that fails after others went out is
 * SU_ERR_INTEGRITY with a part of the plaintext already written. */
su_err_t su_fmt_file_decrypt_id(apr_pool_t *p, const char *path, const char *id,
                                const su_kek_t *const *keks, int nkeks,
                                su_fmt_sink_fn sink, void *ctx);

/*
 * Rewrap a file in place under newkek (key rotation): verify with keks, build
 * the new header and tag, and replace the file atomically (a copy in the same
 * directory, fsynced, renamed over the original, directory fsynced), so that a
 * crash at any point leaves either the old or the new file, both complete.
 */
su_err_t su_fmt_file_rewrap(apr_pool_t *p, const char *path,
                            const su_kek_t *const *keks, int nkeks,
                            const su_kek_t *newkek);

/*
 * A stored file read for an answer: su_fmt_reader_open verifies the whole
 * file (tag and padding) and gives the exact plaintext size before any
 * plaintext exists; su_fmt_reader_next then decrypts the next piece (at most
 * 1 MiB, valid until the next call; *len 0 at the end). Both passes read
 * one descriptor, so a rewrap renamed over the file meanwhile changes
 * nothing. The reader lives in a subpool of p; su_fmt_reader_close frees it
 * early and wipes the plaintext buffer.
 */
typedef struct su_fmt_reader su_fmt_reader_t;
su_err_t su_fmt_reader_open(apr_pool_t *p, const char *path,
                            const su_kek_t *const *keks, int nkeks,
                            su_fmt_reader_t **out, uint64_t *plain_size);
/*
 * Both passes read mapped 4 MiB windows of the file (no copy). Like
 * Apache's own EnableMMAP, that assumes files are not truncated in place
 * while read (the module never does: it replaces files by rename); a
 * truncation by someone else would end the reading process with SIGBUS.
 * SU_FMT_NO_MAP reads with pread(2) instead (for EnableMMAP Off, e.g.
 * storage on NFS), where a truncation is only an integrity error.
 */
#define SU_FMT_NO_MAP 1
su_err_t su_fmt_reader_open_ex(apr_pool_t *p, const char *path,
                               const su_kek_t *const *keks, int nkeks, int flags,
                               su_fmt_reader_t **out, uint64_t *plain_size);
/*
 * Any version, under id (NULL: the file name's, see su_fmt_file_verify_id).
 * A v2 file is not verified whole at open: its header and last segment are
 * (so the size is exact and a truncated or extended file refused), and
 * then every segment as it is read, before its bytes are given out, so
 * that a later piece may still fail with SU_ERR_INTEGRITY. A v2 file is
 * never mapped (SU_FMT_NO_MAP changes nothing): each segment is read
 * into memory of the reader's and verified there.
 */
su_err_t su_fmt_reader_open_id(apr_pool_t *p, const char *path, const char *id,
                               const su_kek_t *const *keks, int nkeks, int flags,
                               su_fmt_reader_t **out, uint64_t *plain_size);
/* 1 or 2. */
int su_fmt_reader_version(const su_fmt_reader_t *rd);
/*
 * From now on give plaintext bytes [off, off + len) only (before the first
 * piece; within the file). A v2 reader then reads, verifies and decrypts
 * only the segments the range covers. A v1 file can only be given whole:
 * any other range is SU_ERR_INTERNAL.
 */
su_err_t su_fmt_reader_range(su_fmt_reader_t *rd, uint64_t off, uint64_t len);
su_err_t su_fmt_reader_next(su_fmt_reader_t *rd, const unsigned char **data,
                            size_t *len);
void su_fmt_reader_close(su_fmt_reader_t *rd);
/* The IV of the file a reader opened (verified, like all of it), or a v2
 * file's nonce (verified with its header): what binds it to its id. */
void su_fmt_reader_iv_hex(const su_fmt_reader_t *rd,
                          char out[SU_FMT_IV_HEX_LEN + 1]);
/* The same, decrypting into the caller's buffer of SU_FMT_READ_MAX bytes
 * (so that an answer can be sent without another copy). */
#define SU_FMT_READ_MAX (1024 * 1024 + 2 * SU_FMT_BLOCK)
su_err_t su_fmt_reader_next_into(su_fmt_reader_t *rd, unsigned char *out,
                                 size_t *len);

/*
 * The same, split in two so that the next piece is decrypted (on a thread
 * of the reader's own, for files past their first MiB) while the caller
 * sends the one before: begin starts decrypting into out (SU_FMT_READ_MAX
 * bytes), end waits for it and gives what su_fmt_reader_next_into would
 * have. In between, rd and out are the reader's alone; every begin needs
 * its end before out is freed or rd closed.
 */
void su_fmt_reader_begin(su_fmt_reader_t *rd, unsigned char *out);
su_err_t su_fmt_reader_end(su_fmt_reader_t *rd, size_t *len);

#endif
