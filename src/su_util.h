/* Small helpers shared by the core's files: hex, wipes, printable text,
 * directory fsync. */
#ifndef SU_UTIL_H
#define SU_UTIL_H

#include <stddef.h>
#include <apr_pools.h>

/* Lowercase hex of n bytes into out, which holds 2n+1 bytes. */
void su_util_hex(char *out, const unsigned char *in, size_t n);

/* The value of hex digit c (either case), or -1. */
int su_util_hexval(unsigned char c);

/*
 * Make s[0..len) fit one line of a log or a report, in place: control bytes
 * (CR, LF, ...) and DEL become '?', and so does every byte past ASCII when
 * ascii_only (text from a server); without it, names keep their UTF-8.
 */
void su_util_printable(char *s, size_t len, int ascii_only);

/*
 * Wipe secret bytes (plaintext, keys, passwords) before their memory is
 * reused; the compiler may not drop it. Every wipe goes through here.
 * explicit_bzero where the C library has it: it runs at memset speed, which
 * counts for every piece of a large transfer. Built with SU_WIPE_CHECKED
 * (--enable-sanitizers, fuzz/run) it is a memset that AddressSanitizer
 * checks, so a wipe past the end of its buffer is caught.
 */
void su_util_wipe(void *p, size_t n);

/*
 * A whole decimal number from min to max, as written in a directive or an
 * option: digits only, no sign, blank or anything else around them. 1 and
 * *out set, or 0.
 */
int su_util_parse_num(const char *s, apr_int64_t min, apr_int64_t max,
                      apr_int64_t *out);

/*
 * Exactly the len bytes at s (none of them a NUL or anything past them
 * looked at), all decimal digits, at least one, as a number up to max (9
 * or more): leading zeros allowed, no sign or blank. 1 and *out set, or 0.
 */
int su_util_parse_digits(const char *s, apr_size_t len, apr_uint64_t max,
                         apr_uint64_t *out);

/*
 * A size in bytes: such a number, followed by nothing or by one K, M or G
 * (any case) for KiB, MiB or GiB; from 1 byte to max. 1 and *out set, or 0.
 */
int su_util_parse_size(const char *s, apr_uint64_t max, apr_uint64_t *out);

/* fsync a directory, so that entries made or removed in it are durable.
 * 0, or -1 with errno set. */
int su_util_fsync_dir(const char *dir);

/* The directory that holds path ("." for a bare name). */
const char *su_util_parent(apr_pool_t *p, const char *path);

/* fsync the directory that holds path. 0, or -1 with errno set. */
int su_util_fsync_parent(apr_pool_t *p, const char *path);

#endif
