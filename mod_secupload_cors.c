/*
 * mod_secupload: CORS for the upload and files handlers (docs/api.md,
 * "Cross-origin requests"). Nothing is allowed unless SecUploadCorsOrigins
 * names the origin. It runs as a header parser, after the <Location> walk
 * and before authentication, so that a preflight (which never carries
 * credentials) is answered even where the handler needs a user, and so that
 * the allow headers are on every answer, a 401 or 413 included, which a
 * page could not read otherwise.
 */
#include "httpd.h"
#include "http_config.h"
#include "http_log.h"
#include "http_protocol.h"

#include <apr_lib.h>
#include <apr_strings.h>

#include "mod_secupload.h"

#define SU_CORS_MAX_AGE        "600"
#define SU_CORS_ALLOW_HEADERS  \
    "Content-Type, Content-Disposition, Content-Digest, Repr-Digest, Authorization"
/* Upload-*: for resumable uploads, so that pages need no new settings */
#define SU_CORS_EXPOSE_HEADERS \
    "Location, X-Request-Id, Content-Disposition, Content-Length, " \
    "Repr-Digest, Retry-After, Upload-Offset, Upload-Length, " \
    "Upload-Complete, Upload-Limit"
#define SU_CORS_UPLOAD_METHODS "POST"
#define SU_CORS_FILES_METHODS  "GET, HEAD, DELETE"
/* resumable uploads (the tus protocol): its requests' and answers' headers */
#define SU_CORS_TUS_METHODS    "POST, HEAD, PATCH, DELETE, OPTIONS"
#define SU_CORS_TUS_ALLOW_HEADERS SU_CORS_ALLOW_HEADERS \
    ", Tus-Resumable, Upload-Length, Upload-Offset, Upload-Metadata, " \
    "Upload-Checksum, Upload-Defer-Length, Upload-Concat, X-Requested-With, " \
    "X-HTTP-Method-Override"
#define SU_CORS_TUS_EXPOSE_HEADERS SU_CORS_EXPOSE_HEADERS \
    ", Upload-Metadata, Upload-Expires, Tus-Resumable, Tus-Version, " \
    "Tus-Extension, Tus-Max-Size, Tus-Checksum-Algorithm, X-Secupload-Id"

/* The scheme of an origin: a letter, then letters, digits, + - . */
static const char *su_cors_scheme_end(const char *s)
{
    if (!apr_isalpha(*s))
        return NULL;
    while (apr_isalnum(*s) || *s == '+' || *s == '-' || *s == '.')
        s++;
    return strncmp(s, "://", 3) == 0 ? s + 3 : NULL;
}

/*
 * What a browser sends as Origin: scheme://host[:port], nothing after it
 * (no path, not even "/"). "null" (sandboxed pages, file:) is refused: any
 * page can make itself one. NULL when origin is one, else why not.
 */
const char *su_cors_origin_check(apr_pool_t *p, const char *origin)
{
    const char *host = su_cors_scheme_end(origin);
    const char *s;

    if (strcmp(origin, "*") == 0)
        return NULL;
    for (s = host; s && *s; s++)
        if (!apr_isalnum(*s) && !strchr("-._~[]:", *s))
            break;
    if (host == NULL || *host == '\0' || (s && *s))
        return apr_pstrcat(p, "'", origin, "' is not an origin "
                           "(scheme://host or scheme://host:port, no path, "
                           "no final slash; or *)", NULL);
    return NULL;
}

/* How origin is allowed here: 2 named, 1 by *, 0 not at all. */
static int su_cors_allowed(const apr_array_header_t *list, const char *origin)
{
    int i, any = 0;

    for (i = 0; list && i < list->nelts; i++) {
        const char *o = APR_ARRAY_IDX(list, i, const char *);
        if (strcmp(o, "*") == 0)
            any = 1;
        else if (strcasecmp(o, origin) == 0)
            return 2;
    }
    return any;
}

/*
 * A named origin is echoed and may send credentials (cookies, a user's
 * Basic login); * lets any page read the answers, without credentials,
 * which browsers never combine with *.
 */
static void su_cors_allow_origin(request_rec *r, const char *origin, int how)
{
    apr_table_setn(r->err_headers_out, "Access-Control-Allow-Origin",
                   how == 2 ? origin : "*");
    if (how == 2)
        apr_table_setn(r->err_headers_out, "Access-Control-Allow-Credentials",
                       "true");
}

/* A preflight: 204, the allow headers only for an allowed origin. */
static int su_cors_preflight(request_rec *r, const char *origin, int how,
                             const char *methods, int tus)
{
    if (how) {
        su_cors_allow_origin(r, origin, how);
        apr_table_setn(r->err_headers_out, "Access-Control-Allow-Methods", methods);
        apr_table_setn(r->err_headers_out, "Access-Control-Allow-Headers",
                       tus ? SU_CORS_TUS_ALLOW_HEADERS : SU_CORS_ALLOW_HEADERS);
        apr_table_setn(r->err_headers_out, "Access-Control-Max-Age",
                       SU_CORS_MAX_AGE);
    } else {
        ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r, SU_LOGNO(00380)
                      "CORS preflight from origin %s: not allowed here "
                      "(SecUploadCorsOrigins); answered without allow headers",
                      origin);
    }
    apr_table_setn(r->err_headers_out, "Allow", methods);
    su_note(r, NULL, how ? "preflight" : "preflight_refused", NULL);
    r->status = HTTP_NO_CONTENT;
    return DONE;
}

/*
 * The header parser: where SecUploadEnable serves and origins are
 * configured, answers a preflight itself, and adds the allow headers to
 * the answer of any other request from an allowed origin.
 */
int su_cors(request_rec *r)
{
    const su_dir_conf_t *d = ap_get_module_config(r->per_dir_config,
                                                  &secupload_module);
    const apr_array_header_t *list = d ? su_conf_cors_origins(d) : NULL;
    const char *origin = apr_table_get(r->headers_in, "Origin");
    int how;

    if (list == NULL || list->nelts == 0
        || (d->enable != SU_ENABLE_UPLOAD && d->enable != SU_ENABLE_FILES
            && d->enable != SU_ENABLE_TUS))
        return DECLINED;
    /* whether the answer carries allow headers depends on Origin */
    apr_table_mergen(r->err_headers_out, "Vary", "Origin");
    if (origin == NULL)
        return DECLINED;
    how = su_cors_allowed(list, origin);
    if (r->method_number == M_OPTIONS
        && apr_table_get(r->headers_in, "Access-Control-Request-Method"))
        return su_cors_preflight(r, origin, how,
                                 d->enable == SU_ENABLE_UPLOAD ? SU_CORS_UPLOAD_METHODS
                                 : d->enable == SU_ENABLE_TUS ? SU_CORS_TUS_METHODS
                                 : SU_CORS_FILES_METHODS,
                                 d->enable == SU_ENABLE_TUS);
    if (how) {
        su_cors_allow_origin(r, origin, how);
        apr_table_setn(r->err_headers_out, "Access-Control-Expose-Headers",
                       d->enable == SU_ENABLE_TUS ? SU_CORS_TUS_EXPOSE_HEADERS
                       : SU_CORS_EXPOSE_HEADERS);
    }
    return DECLINED;
}
