#include "su_json.h"

#include <stdlib.h>
#include <string.h>

#include <apr_strings.h>
#include <jansson.h>

/* Move jansson's malloc'ed text into the pool, so callers own nothing. */
static const char *su_json_dump(apr_pool_t *p, json_t *obj)
{
    char *s = obj ? json_dumps(obj, JSON_COMPACT | JSON_ENSURE_ASCII) : NULL;
    const char *out;

    if (obj)
        json_decref(obj);
    /* out of memory: a constant answer, which needs none (the words of
     * SU_ERR_INTERNAL, as su_common.c has them) */
    if (s == NULL)
        return "{\"status\":\"error\",\"code\":\"internal_error\","
               "\"message\":\"Internal error.\"}";
    out = apr_pstrcat(p, s, "\n", NULL);
    free(s);
    return out;
}

/* Client strings may hold invalid UTF-8 that jansson would refuse. */
static json_t *su_json_str(const char *s)
{
    json_t *j = json_string(s ? s : "");
    return j ? j : json_string("");
}

const char *su_json_error(apr_pool_t *p, su_err_t e, const char *message)
{
    return su_json_error_id(p, e, message, NULL);
}

const char *su_json_error_id(apr_pool_t *p, su_err_t e, const char *message,
                             const char *request_id)
{
    json_t *o = json_object();
    if (o == NULL)
        return su_json_dump(p, NULL);
    json_object_set_new(o, "status", json_string("error"));
    json_object_set_new(o, "code", json_string(su_err_code(e)));
    json_object_set_new(o, "message",
                        su_json_str(message ? message : su_err_message(e)));
    if (request_id && *request_id)
        json_object_set_new(o, "request_id", su_json_str(request_id));
    return su_json_dump(p, o);
}

const char *su_json_uploaded(apr_pool_t *p, const char *id, const char *name,
                             apr_uint64_t size, const char *sha256_hex,
                             const char *content_type)
{
    json_t *o = json_object();
    if (o == NULL)
        return su_json_dump(p, NULL);
    json_object_set_new(o, "status", json_string("ok"));
    json_object_set_new(o, "message", json_string("File uploaded and encrypted."));
    json_object_set_new(o, "id", su_json_str(id));
    json_object_set_new(o, "name", su_json_str(name));
    json_object_set_new(o, "size", json_integer((json_int_t)size));
    json_object_set_new(o, "sha256", su_json_str(sha256_hex));
    json_object_set_new(o, "content_type", su_json_str(content_type));
    return su_json_dump(p, o);
}

static int su_json_in(const char *key, const char *const *list)
{
    for (; list && *list; list++)
        if (strcmp(key, *list) == 0)
            return 1;
    return 0;
}

const char *su_json_table(apr_pool_t *p, const apr_table_t *t,
                          const char *const *numeric, const char *const *hidden)
{
    const apr_array_header_t *arr = apr_table_elts(t);
    const apr_table_entry_t *e = (const apr_table_entry_t *)arr->elts;
    json_t *o = json_object();
    int i;

    if (o == NULL)
        return su_json_dump(p, NULL);
    for (i = 0; i < arr->nelts; i++) {
        if (e[i].key == NULL || su_json_in(e[i].key, hidden))
            continue;
        if (su_json_in(e[i].key, numeric))
            json_object_set_new(o, e[i].key,
                                json_integer(apr_atoi64(e[i].val ? e[i].val : "0")));
        else
            json_object_set_new(o, e[i].key, su_json_str(e[i].val));
    }
    return su_json_dump(p, o);
}

apr_table_t *su_json_parse_table(apr_pool_t *p, const char *text)
{
    json_t *o = text ? json_loads(text, JSON_REJECT_DUPLICATES, NULL) : NULL;
    apr_table_t *t = NULL;
    const char *k;
    json_t *v;

    if (o && json_is_object(o)) {
        t = apr_table_make(p, (int)json_object_size(o));
        json_object_foreach(o, k, v)
            if (json_is_string(v))
                apr_table_set(t, k, json_string_value(v));
    }
    if (o)
        json_decref(o);
    return t;
}
