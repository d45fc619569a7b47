/* SPDX-License-Identifier: Apache-2.0 */
/*
 * e2e_suite.h - what the Criterion suites that run under LD_PRELOAD share:
 * the API table, small asserting helpers, and the simulated driver's
 * strictness switched on.
 */
#ifndef TEST_E2E_SUITE_H
#define TEST_E2E_SUITE_H

#include <criterion/criterion.h>
#include <criterion/new/assert.h>

#include "e2e.h"

static struct memctl_api M;

/* cudaMalloc of n bytes inside region `tag`. */
static inline void *tagged(const char *tag, size_t n)
{
	void *p = NULL;

	cr_assert(eq(int, M.region_begin(tag), 0));
	cr_assert(eq(int, cudaMalloc(&p, n), cudaSuccess));
	cr_assert(eq(int, M.region_end(), 0));
	return p;
}

/* On the simulated driver: memory taken away under queued work, or work
 * touching unmapped memory, aborts the test where it happens (Criterion
 * does not count failures in .fini). Nothing on a GPU. */
static inline void e2e_strict(void)
{
	int (*fatal)(int);

	*(void **)&fatal = dlsym(RTLD_DEFAULT, "fakecuda_violations_fatal");
	if (fatal != NULL)
		fatal(1);
}

/* Free device memory as the runtime reports it. */
static inline size_t dev_free(void)
{
	size_t fr, tot;

	cr_assert(eq(int, cudaMemGetInfo(&fr, &tot), cudaSuccess));
	return fr;
}

#endif
