/*
 * Fault injection for tests, compiled in only with
 * ./configure --enable-fault-injection: su_fault("rand") is true when the
 * environment variable SECUPLOAD_FAULTS (a comma-separated list) names
 * "rand". Points: "rand" (the CSPRNG fails), "fsync" (fsync of a stored
 * file fails with EIO). In a normal build every su_fault() is constant 0.
 */
#ifndef SU_FAULT_H
#define SU_FAULT_H

#ifdef SU_FAULT_INJECTION
int su_fault(const char *point);
#else
#define su_fault(point) 0
#endif

#endif
