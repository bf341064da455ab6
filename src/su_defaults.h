/*
 * The defaults of the settings, defined once: the module applies them to
 * what its configuration leaves unset, and the secupload tool to what its
 * options leave unset. docs/configuration.md and docs/cli.md describe them.
 */
#ifndef SU_DEFAULTS_H
#define SU_DEFAULTS_H

#include <stdint.h>

/* Redis (SecUploadRedis*; secupload fsck --redis, --db, --timeout, --prefix) */
#define SU_DEFAULT_REDIS_HOST       "127.0.0.1"
#define SU_DEFAULT_REDIS_PORT       6379
#define SU_DEFAULT_REDIS_DB         0
#define SU_DEFAULT_REDIS_TIMEOUT_MS 2000
#define SU_DEFAULT_REDIS_PREFIX     "secupload:"
#define SU_DEFAULT_AUDIT_MAXLEN     1000000L
#define SU_DEFAULT_SENTINEL_PORT    26379
#define SU_DEFAULT_WAIT_REPLICAS    0

/* uploads (SecUploadMaxSize, SecUploadFieldName, SecUploadSync) */
#define SU_DEFAULT_MAX_SIZE         ((uint64_t)1 << 30)
#define SU_DEFAULT_FIELD_NAME       "file"
#define SU_DEFAULT_SYNC             1
/* resumable uploads (SecUploadTusExpire): seconds kept unfinished */
#define SU_DEFAULT_TUS_EXPIRE       86400
#define SU_MAX_TUS_EXPIRE           31536000

/* the format of new files (SecUploadFormatVersion): 2, the segmented one;
 * 1 while nodes that read only version 1 share the storage */
#define SU_DEFAULT_FORMAT_VERSION   2

/* files (SecUploadOwnerOnly) */
#define SU_DEFAULT_OWNER_ONLY       0

/* A number default as text, for help messages: SU_STR(SU_DEFAULT_REDIS_PORT). */
#define SU_STR_(x) #x
#define SU_STR(x)  SU_STR_(x)

#endif
