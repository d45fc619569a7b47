/* SPDX-License-Identifier: Apache-2.0 */
/*
 * e2e.h - what an application sees: the memctl_* API found at run time
 * (libmemctl.so comes in through LD_PRELOAD, the program does not link it),
 * and helpers to fill and check "device" memory, which on the simulated
 * driver is host-addressable.
 */
#ifndef TEST_E2E_H
#define TEST_E2E_H

#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "memctl.h"

struct memctl_api {
	int (*region_begin)(const char *);
	int (*region_end)(void);
	int (*set_default_tag)(const char *);
	int (*pause)(const char *, unsigned);
	int (*resume)(const char *, unsigned);
	int (*prepare)(const char *);
	int (*release_host)(const char *);
	int (*stat)(const char *, struct memctl_stat *);
	const char *(*strerror)(int);
};

/* Returns 0, or -1 when libmemctl.so is not preloaded. */
static inline int memctl_api_load(struct memctl_api *m)
{
#define LOAD(f) if ((*(void **)&m->f = dlsym(RTLD_DEFAULT, "memctl_" #f)) == NULL) return -1
	LOAD(region_begin); LOAD(region_end); LOAD(set_default_tag); LOAD(pause);
	LOAD(resume); LOAD(prepare); LOAD(release_host); LOAD(stat); LOAD(strerror);
#undef LOAD
	return 0;
}

static inline unsigned char pattern(size_t i, unsigned seed)
{
	return (unsigned char)(((uint64_t)i * 2654435761u + seed) >> 9);
}

static inline void fill(void *p, size_t n, unsigned seed)
{
	unsigned char *c = p;
	size_t i;

	for (i = 0; i < n; i++)
		c[i] = pattern(i, seed);
}

/* Index of the first wrong byte, or -1 when every byte is as filled. */
static inline long check(const void *p, size_t n, unsigned seed)
{
	const unsigned char *c = p;
	size_t i;

	for (i = 0; i < n; i++)
		if (c[i] != pattern(i, seed))
			return (long)i;
	return -1;
}

#endif
