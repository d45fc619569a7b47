/* SPDX-License-Identifier: Apache-2.0 */
/*
 * failalloc.h - host memory that runs out on demand, for unit suites
 * linked with -Wl,--wrap=malloc,--wrap=calloc (the Makefile says which;
 * a suite that defines FAILALLOC_REALLOC first wraps realloc too):
 * while `allocs_left` is not negative, that many more allocations of
 * memctl's objects (and of the suite's file) succeed and the ones after
 * return NULL. The simulated driver, a library of its own, is not
 * wrapped.
 */
#ifndef TEST_FAILALLOC_H
#define TEST_FAILALLOC_H

#include <stddef.h>

static int allocs_left = -1;
void *__real_malloc(size_t n);
void *__wrap_malloc(size_t n);
void *__real_calloc(size_t k, size_t n);
void *__wrap_calloc(size_t k, size_t n);

static int alloc_may(void)
{
	int left = __atomic_load_n(&allocs_left, __ATOMIC_ACQUIRE);

	while (left > 0 && !__atomic_compare_exchange_n(&allocs_left, &left, left - 1, 0,
							 __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
		;
	return left != 0;
}

void *__wrap_malloc(size_t n)
{
	return alloc_may() ? __real_malloc(n) : NULL;
}

void *__wrap_calloc(size_t k, size_t n)
{
	return alloc_may() ? __real_calloc(k, n) : NULL;
}

#ifdef FAILALLOC_REALLOC
void *__real_realloc(void *p, size_t n);
void *__wrap_realloc(void *p, size_t n);

void *__wrap_realloc(void *p, size_t n)
{
	return alloc_may() ? __real_realloc(p, n) : NULL;
}
#endif

#endif
