/* SPDX-License-Identifier: Apache-2.0 */
/*
 * dlsym.c - the dlsym hook. A lookup on a handle of libcuda.so.1 ignores
 * LD_PRELOAD: frameworks that open the driver themselves, and every CUDA
 * runtime taking cuGetProcAddress_v2, would get the driver's functions and
 * never memctl's. So memctl interposes dlsym itself, as few things as it
 * can: only a name memctl wraps (proc.c's table), only on the driver's
 * handle. Every other lookup is forwarded to glibc's dlsym unchanged.
 *
 * glibc's dlsym takes its caller from its return address: RTLD_NEXT means
 * "after the caller's object", and RTLD_DEFAULT searches the caller's
 * scope. The forward is therefore a tail call, so that glibc sees the
 * program's return address, not memctl's (musttail where the compiler has
 * it; a sibling call at -O1 and above otherwise; the e2e suite checks that
 * dlsym(RTLD_NEXT) from a program still means "after the program").
 *
 * Kept out of the unit suites, which link memctl's objects into their own
 * executable: a dlsym defined there would serve the sanitizer runtime's
 * lookups before it is initialised.
 */
#include <dlfcn.h>

#include "preload.h"
#include "proc.h"

#if defined(__has_attribute)
#if __has_attribute(musttail)
#define MUSTTAIL __attribute__((musttail))
#endif
#endif
#ifndef MUSTTAIL
#define MUSTTAIL
#endif

MEMCTL_EXPORT void *dlsym(void *restrict handle, const char *restrict name)
{
	dlsym_fn real = proc_real_dlsym();
	int row;

	if (real == NULL)
		return NULL;
	if (proc_driver_name(name) && handle != RTLD_DEFAULT && handle != RTLD_NEXT &&
	    (row = proc_row_named(name)) >= 0 && proc_is_driver(handle))
		return proc_dlsym_driver(handle, row);
	MUSTTAIL return real(handle, name);
}
