/*
 * Fault injection for tests, compiled in only with
 * ./configure --enable-fault-injection. The environment variable
 * SECUPLOAD_FAULTS is a comma-separated list of points:
 *   rand              su_fault("rand") is true: the CSPRNG fails
 *   fsync             su_fault("fsync") is true: the fsync of a stored file
 *                     fails with EIO
 *   rewrap-rename=N   su_fault_exit("rewrap-rename") ends the process
 *                     (_exit(99)) on its N-th call in this process: right
 *                     before a rewrap or a convert renames its copy over a
 *                     file, for the crash-safety tests of both
 * In a normal build every su_fault() is constant 0 and su_fault_exit()
 * nothing: no shipped binary reads the variable.
 */
#ifndef SU_FAULT_H
#define SU_FAULT_H

#ifdef SU_FAULT_INJECTION
int su_fault(const char *point);
void su_fault_exit(const char *point);
#else
#define su_fault(point) 0
#define su_fault_exit(point) ((void)0)
#endif

#endif
