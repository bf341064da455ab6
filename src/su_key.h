/*
 * Key-encryption keys (KEKs): loading key files and keeping the key bytes in
 * memory that is locked (never swapped) and left out of core dumps.
 */
#ifndef SU_KEY_H
#define SU_KEY_H

#include <apr_pools.h>
#include "su_common.h"

#define SU_KEY_LEN    32   /* a KEK is 256 bits */
#define SU_KEY_ID_LEN 8    /* first 8 bytes of SHA-256(KEK) */

typedef struct su_kek {
    unsigned char key[SU_KEY_LEN];
    unsigned char id[SU_KEY_ID_LEN];
    char id_hex[2 * SU_KEY_ID_LEN + 1];
    const char *path;          /* where it was loaded from (for messages) */
} su_kek_t;

/*
 * Load a key file: 64 hex digits (either case), optionally followed by one
 * newline ("\n" or "\r\n"); nothing else. The file must be a regular file not
 * readable, writable or executable by group or other.
 * The su_kek_t lives in locked, non-dumpable memory that a cleanup on pool p
 * wipes (su_util_wipe) and frees.
 * On failure returns SU_ERR_INTERNAL and sets *err (allocated from p) to a
 * message naming the path and the reason, never the key material.
 */
su_err_t su_key_load(apr_pool_t *p, const char *path, su_kek_t **out,
                     const char **err);

/*
 * Generate a fresh KEK from the CSPRNG and write it to path as 64 lowercase
 * hex digits and "\n", created with O_EXCL and mode 0400 (never overwrites).
 */
su_err_t su_key_generate_file(apr_pool_t *p, const char *path, const char **err);

/* Lock the key's pages again: a forked child (an Apache worker process)
 * does not inherit the parent's memory locks. Failure is tolerated. */
void su_key_relock(const su_kek_t *kek);

/* Fill kek->id and kek->id_hex from kek->key. */
void su_key_compute_id(su_kek_t *kek);

#endif
