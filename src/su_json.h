/*
 * The JSON bodies of the HTTP API, built with jansson so that every string a
 * client supplied (names, types) is escaped correctly.
 */
#ifndef SU_JSON_H
#define SU_JSON_H

#include <apr_pools.h>
#include <apr_tables.h>
#include "su_common.h"

/* {"status":"error","code":...,"message":...}; message NULL: the kind's
 * default (su_err_message). */
const char *su_json_error(apr_pool_t *p, su_err_t e, const char *message);
/* The same with "request_id", the id the server's log lines carry. */
const char *su_json_error_id(apr_pool_t *p, su_err_t e, const char *message,
                             const char *request_id);

/* The 201 body of an upload (docs/api.md, "Success: 201"). */
const char *su_json_uploaded(apr_pool_t *p, const char *id, const char *name,
                             apr_uint64_t size, const char *sha256_hex,
                             const char *content_type);

/* An object of string fields (metadata), numbers for the keys in numeric[]
 * (NULL-terminated), leaving out the keys in hidden[] (NULL-terminated). */
const char *su_json_table(apr_pool_t *p, const apr_table_t *t,
                          const char *const *numeric, const char *const *hidden);

/* The string members of a JSON object, or NULL if text is not one. */
apr_table_t *su_json_parse_table(apr_pool_t *p, const char *text);

#endif
