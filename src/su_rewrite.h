/*
 * A stored file rewritten in place, through the store's one atomic write
 * (su_store_replace: a copy beside it owned like it, fsynced, renamed over
 * it, the directory fsynced), under an exclusive lock on the file so that
 * one rewriter at a time works on it: a crash at any point leaves the old
 * file or the new one, both complete.
 *
 *   convert: a version 1 file (su_format.h) to version 2 (su_seg.h), under
 *            the same KEK, its IV kept as the nonce (what binds it to its id
 *            stays the same, so its metadata stays valid)
 *   rewrap2: a version 2 file's header under a new KEK (su_seg_rewrap); the
 *            segments are copied unchanged, each verified on the way
 *
 * id is the file's id (32 hex digits): version 2 binds it in every tag.
 */
#ifndef SU_REWRITE_H
#define SU_REWRITE_H

#include <apr_pools.h>
#include "su_common.h"
#include "su_key.h"

/* What became of a file. */
typedef enum su_rewrite_outcome {
    SU_REWRITE_DONE = 0,     /* rewritten (or, dry, would be) */
    SU_REWRITE_SKIPPED       /* nothing to do: already version 2 / under newkek */
} su_rewrite_outcome_t;

/* Is the file at path version 2 (its magic; nothing verified)? -1 if it
 * cannot be read. */
int su_rewrite_is_v2(const char *path);

/*
 * Version 1 to 2: the whole file verified with keks first (no plaintext
 * before that), then written anew. SU_ERR_INTEGRITY if it does not verify
 * (it is left as it was); a version 2 file is SKIPPED. dry: verify only.
 */
su_err_t su_rewrite_convert(apr_pool_t *p, const char *path, const char *id,
                            const su_kek_t *const *keks, int nkeks, int dry,
                            su_rewrite_outcome_t *outcome);

/*
 * A version 2 file's header under newkek: the header opened with keks,
 * every segment verified while it is copied (so a damaged file is reported
 * and left). SKIPPED if it is under newkek already. dry: verify only.
 */
su_err_t su_rewrite_rewrap2(apr_pool_t *p, const char *path, const char *id,
                            const su_kek_t *const *keks, int nkeks,
                            const su_kek_t *newkek, int dry,
                            su_rewrite_outcome_t *outcome);

#endif
