/* SPDX-License-Identifier: Apache-2.0 */
/*
 * e2e_driver.h - what the driver layer's tests share: glibc's own dlsym
 * (which memctl does not redirect, to reach the driver's functions
 * themselves) and a current context, as a driver-API program makes one.
 */
#ifndef TEST_E2E_DRIVER_H
#define TEST_E2E_DRIVER_H

#include <cuda.h>
#include <dlfcn.h>

/* glibc's dlsym: dlvsym finds only versioned definitions, so it skips the
 * unversioned one libmemctl.so exports. NULL where neither version exists. */
static inline void *raw_dlsym(void *handle, const char *name)
{
	typedef void *(*dlsym_fn)(void *, const char *);
	dlsym_fn fn = (dlsym_fn)dlvsym(RTLD_NEXT, "dlsym", "GLIBC_2.34");

	if (fn == NULL)
		fn = (dlsym_fn)dlvsym(RTLD_NEXT, "dlsym", "GLIBC_2.2.5");
	if (fn == NULL)
		fn = (dlsym_fn)dlvsym(RTLD_NEXT, "dlsym", "GLIBC_2.17");
	return fn != NULL ? fn(handle, name) : NULL;
}

#endif
