#include "su_fault.h"

#ifdef SU_FAULT_INJECTION
#include <stdlib.h>
#include <string.h>

int su_fault(const char *point)
{
    const char *list = getenv("SECUPLOAD_FAULTS");
    size_t n = strlen(point);

    while (list && *list) {
        if (strncmp(list, point, n) == 0 && (list[n] == ',' || list[n] == '\0'))
            return 1;
        list = strchr(list, ',');
        if (list)
            list++;
    }
    return 0;
}
#else
/* an empty translation unit is not ISO C */
typedef int su_fault_unused_t;
#endif
