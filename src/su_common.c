/*
 * The error kinds' words: for each su_err_t its JSON "code" and the default
 * message a client is given, side by side. What a kind means in HTTP is the
 * Apache face's business (su_http_status in mod_secupload.c).
 */
#include "su_common.h"

typedef struct su_err_words {
    const char *code;
    const char *message;
} su_err_words_t;

static const su_err_words_t su_err_words[] = {
    [SU_OK]                   = { "ok", "" },
    [SU_ERR_BAD_REQUEST]      = { "bad_request", "The request body could not be read." },
    [SU_ERR_NOT_FOUND]        = { "not_found", "No such file." },
    [SU_ERR_METHOD]           = { "method_not_allowed", "Method not allowed here." },
    [SU_ERR_TIMEOUT]          = { "request_timeout", "The request body came too slowly." },
    [SU_ERR_TOO_LARGE]        = { "too_large", "The request body is larger than accepted here." },
    [SU_ERR_UNSUPPORTED_TYPE] = { "unsupported_type", "Files of this type are not accepted here." },
    [SU_ERR_INTERNAL]         = { "internal_error", "Internal error." },
    [SU_ERR_INTEGRITY]        = { "internal_error", "Internal error." },
    [SU_ERR_UNAVAILABLE]      = { "unavailable", "The metadata store is unavailable. Try again later." },
    [SU_ERR_NO_SPACE]         = { "insufficient_storage", "Insufficient storage." },
    [SU_ERR_ABORTED]          = { "aborted", "The client went away." },
};

/* An unknown value is an internal error, never a hole in the table. */
static const su_err_words_t *su_err_find(su_err_t e)
{
    if ((unsigned)e >= sizeof(su_err_words) / sizeof(su_err_words[0])
        || su_err_words[e].code == NULL)
        e = SU_ERR_INTERNAL;
    return &su_err_words[e];
}

const char *su_err_code(su_err_t e)
{
    return su_err_find(e)->code;
}

const char *su_err_message(su_err_t e)
{
    return su_err_find(e)->message;
}
