/*
 * Shared definitions of the mod_secupload core: the kinds of error that
 * travel from the core up to the command-line tool (its exit codes) and to
 * the Apache face (its HTTP answers), each with its code and its default
 * message for a client.
 */
#ifndef SU_COMMON_H
#define SU_COMMON_H

#include <stddef.h>
#include <stdint.h>

typedef enum su_err {
    SU_OK = 0,
    SU_ERR_BAD_REQUEST,      /* malformed request (headers, body, framing) */
    SU_ERR_NOT_FOUND,        /* no such file, or not shown to this user */
    SU_ERR_METHOD,           /* method not served here */
    SU_ERR_TIMEOUT,          /* the body came too slowly */
    SU_ERR_TOO_LARGE,        /* over a size limit */
    SU_ERR_UNSUPPORTED_TYPE, /* media type not accepted */
    SU_ERR_INTERNAL,         /* our own failure; details only in the log */
    SU_ERR_INTEGRITY,        /* a stored file failed verification */
    SU_ERR_UNAVAILABLE,      /* Redis unreachable or failing */
    SU_ERR_NO_SPACE,         /* disk full or over quota */
    SU_ERR_ABORTED           /* client went away: nothing is answered */
} su_err_t;

/* The JSON "code" string of an error kind (internal_error if unknown). */
const char *su_err_code(su_err_t e);
/* The message a client gets for an error kind unless a caller has a more
 * precise one (each sentence is written here only). */
const char *su_err_message(su_err_t e);

#endif
