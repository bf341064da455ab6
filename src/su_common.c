#include "su_common.h"

int su_err_status(su_err_t e)
{
    switch (e) {
    case SU_OK:                   return 200;
    case SU_ERR_BAD_REQUEST:      return 400;
    case SU_ERR_NOT_FOUND:        return 404;
    case SU_ERR_METHOD:           return 405;
    case SU_ERR_TIMEOUT:          return 408;
    case SU_ERR_TOO_LARGE:        return 413;
    case SU_ERR_UNSUPPORTED_TYPE: return 415;
    case SU_ERR_UNAVAILABLE:      return 503;
    case SU_ERR_NO_SPACE:         return 507;
    case SU_ERR_ABORTED:          return 400;
    case SU_ERR_INTERNAL:
    case SU_ERR_INTEGRITY:
    default:                      return 500;
    }
}

const char *su_err_code(su_err_t e)
{
    switch (e) {
    case SU_OK:                   return "ok";
    case SU_ERR_BAD_REQUEST:      return "bad_request";
    case SU_ERR_NOT_FOUND:        return "not_found";
    case SU_ERR_METHOD:           return "method_not_allowed";
    case SU_ERR_TIMEOUT:          return "request_timeout";
    case SU_ERR_TOO_LARGE:        return "too_large";
    case SU_ERR_UNSUPPORTED_TYPE: return "unsupported_type";
    case SU_ERR_UNAVAILABLE:      return "unavailable";
    case SU_ERR_NO_SPACE:         return "insufficient_storage";
    case SU_ERR_ABORTED:          return "aborted";
    case SU_ERR_INTERNAL:
    case SU_ERR_INTEGRITY:
    default:                      return "internal_error";
    }
}
