/*
 * libFuzzer target: su_key_load on a key file holding the input, mode 0600.
 *
 * Invariants: a key loads exactly when the input is 64 hex digits followed
 * by nothing, "\n" or "\r\n", and then holds those bytes and their id; a
 * failure gives a non-empty message that does not repeat the key text.
 */
#include <string.h>

#include "fz_common.h"
#include "su_key.h"

static int fz_hex(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* What a valid key file is, written apart from the code under test. */
static int fz_expect_key(const uint8_t *d, size_t n, unsigned char key[SU_KEY_LEN])
{
    size_t i;

    if (!(n == 64 || (n == 65 && d[64] == '\n') ||
          (n == 66 && d[64] == '\r' && d[65] == '\n')))
        return 0;
    for (i = 0; i < 64; i++)
        if (fz_hex(d[i]) < 0)
            return 0;
    for (i = 0; i < SU_KEY_LEN; i++)
        key[i] = (unsigned char)(fz_hex(d[2 * i]) << 4 | fz_hex(d[2 * i + 1]));
    return 1;
}

FZ_INITIALIZE_APR

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    apr_pool_t *p = fz_pool_new();
    const char *path = fz_path("key");
    unsigned char want[SU_KEY_LEN];
    su_kek_t *kek = NULL, check;
    const char *err = NULL;
    su_err_t rv;
    int valid = fz_expect_key(data, size, want);

    fz_write_file(path, data, size, 0600);
    rv = su_key_load(p, path, &kek, &err);
    if (valid) {
        FZ_CHECK(rv == SU_OK && kek != NULL, "a valid key file did not load");
        FZ_CHECK(memcmp(kek->key, want, SU_KEY_LEN) == 0, "wrong key bytes");
        memset(&check, 0, sizeof check);
        memcpy(check.key, want, SU_KEY_LEN);
        su_key_compute_id(&check);
        FZ_CHECK(memcmp(kek->id, check.id, SU_KEY_ID_LEN) == 0 &&
                 strcmp(kek->id_hex, check.id_hex) == 0 &&
                 strlen(kek->id_hex) == 2 * SU_KEY_ID_LEN, "wrong key id");
        FZ_CHECK(kek->path != NULL && strcmp(kek->path, path) == 0, "wrong key path");
    } else {
        FZ_CHECK(rv != SU_OK && kek == NULL, "an invalid key file loaded");
        FZ_CHECK(err != NULL && err[0] != '\0', "a failure without a message");
        if (size >= 64)
            FZ_CHECK(memmem(err, strlen(err), data, 64) == NULL,
                     "the message repeats the key text");
    }
    apr_pool_destroy(p);
    return 0;
}
