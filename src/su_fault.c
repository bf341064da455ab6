/* Fault injection for tests (su_fault.h): only in --enable-fault-injection builds. */
#include "su_fault.h"

#ifdef SU_FAULT_INJECTION
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The entry of SECUPLOAD_FAULTS that names point: a pointer just past the
 * name, at ',', '=' or the end; NULL if the list does not name it. */
static const char *su_fault_find(const char *point)
{
    const char *list = getenv("SECUPLOAD_FAULTS");
    size_t n = strlen(point);

    while (list && *list) {
        if (strncmp(list, point, n) == 0
            && (list[n] == ',' || list[n] == '=' || list[n] == '\0'))
            return list + n;
        list = strchr(list, ',');
        if (list)
            list++;
    }
    return NULL;
}

int su_fault(const char *point)
{
    const char *at = su_fault_find(point);

    return at != NULL && *at != '=';
}

/* One count for the process: the tests name a single such point at a time. */
void su_fault_exit(const char *point)
{
    static unsigned long count;
    const char *at = su_fault_find(point);
    char *end = NULL;
    unsigned long n;

    if (at == NULL || *at != '=')
        return;
    n = strtoul(at + 1, &end, 10);
    if (n == 0 || (*end != ',' && *end != '\0'))
        return;
    if (++count == n)
        _exit(99);
}
#else
/* an empty translation unit is not ISO C */
typedef int su_fault_unused_t;
#endif
