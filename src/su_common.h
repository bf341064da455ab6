/*
 * Shared definitions of the mod_secupload core: the error kinds that travel
 * from the core up to the one place that maps them onto HTTP.
 */
#ifndef SU_COMMON_H
#define SU_COMMON_H

#include <stddef.h>
#include <stdint.h>

typedef enum su_err {
    SU_OK = 0,
    SU_ERR_BAD_REQUEST,      /* 400 bad_request */
    SU_ERR_NOT_FOUND,        /* 404 not_found */
    SU_ERR_METHOD,           /* 405 method_not_allowed */
    SU_ERR_TIMEOUT,          /* 408 request_timeout: the body came too slowly */
    SU_ERR_TOO_LARGE,        /* 413 too_large */
    SU_ERR_UNSUPPORTED_TYPE, /* 415 unsupported_type */
    SU_ERR_INTERNAL,         /* 500 internal_error */
    SU_ERR_INTEGRITY,        /* 500 internal_error: stored file failed verification */
    SU_ERR_UNAVAILABLE,      /* 503 unavailable (Redis) */
    SU_ERR_NO_SPACE,         /* 507 insufficient_storage */
    SU_ERR_ABORTED           /* client went away: nothing is answered */
} su_err_t;

/* HTTP status for an error kind (200 for SU_OK). */
int su_err_status(su_err_t e);
/* The JSON "code" string for an error kind. */
const char *su_err_code(su_err_t e);

#endif
