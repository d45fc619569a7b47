/* SPDX-License-Identifier: Apache-2.0 */
/*
 * e2e.h - what an application sees: the memctl_* API found at run time
 * (libmemctl.so comes in through LD_PRELOAD, the program does not link it),
 * and helpers to fill and check "device" memory, which on the simulated
 * driver is host-addressable.
 */
#ifndef TEST_E2E_H
#define TEST_E2E_H

#include <cuda_runtime_api.h>
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

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
	int (*region_begin_flags)(const char *, unsigned);
	int (*set_default_tag_flags)(const char *, unsigned);
	int (*set_margin)(uint64_t);
	int (*host_copy)(const void *, size_t, void **);
	int (*host_read)(const void *, size_t, void *);
	void *(*pool_alloc)(size_t, int, void *);
	void (*pool_free)(void *, size_t, int, void *);
};

/* Returns 0, or -1 when libmemctl.so is not preloaded (or lacks a call:
 * the first missing one is said on stderr). */
static inline int memctl_api_load(struct memctl_api *m)
{
#define LOAD(f)                                                                  \
	if ((*(void **)&m->f = dlsym(RTLD_DEFAULT, "memctl_" #f)) == NULL) {     \
		fprintf(stderr, "memctl_" #f " not found: %s (LD_PRELOAD=%s)\n", \
			dlerror(), getenv("LD_PRELOAD") ? getenv("LD_PRELOAD") : ""); \
		return -1;                                                       \
	}
	LOAD(region_begin); LOAD(region_end); LOAD(set_default_tag); LOAD(pause);
	LOAD(resume); LOAD(prepare); LOAD(release_host); LOAD(stat); LOAD(strerror);
	LOAD(region_begin_flags); LOAD(set_default_tag_flags); LOAD(set_margin);
	LOAD(host_copy); LOAD(host_read); LOAD(pool_alloc); LOAD(pool_free);
#undef LOAD
	return 0;
}

static inline unsigned char pattern(size_t i, unsigned seed)
{
	return (unsigned char)(((uint64_t)i * 2654435761u + seed) >> 9);
}

static inline void fill(void *p, size_t n, unsigned seed)
{
	unsigned char *c = (unsigned char *)p;
	size_t i;

	for (i = 0; i < n; i++)
		c[i] = pattern(i, seed);
}

/* Index of the first wrong byte, or -1 when every byte is as filled. */
static inline long check(const void *p, size_t n, unsigned seed)
{
	const unsigned char *c = (const unsigned char *)p;
	size_t i;

	for (i = 0; i < n; i++)
		if (c[i] != pattern(i, seed))
			return (long)i;
	return -1;
}

/* 1 on the simulated driver (device memory is host memory there). */
static inline int on_fake(void)
{
	return dlsym(RTLD_DEFAULT, "fakecuda_used") != NULL;
}

/* Fill and check device memory through cudaMemcpy, so the same test runs
 * on the simulated driver and on a GPU. */
static inline int dev_fill(void *dev, size_t n, unsigned seed)
{
	unsigned char *h = (unsigned char *)malloc(n ? n : 1);
	int rc;

	if (h == NULL)
		return -1;
	fill(h, n, seed);
	rc = cudaMemcpy(dev, h, n, cudaMemcpyHostToDevice) == cudaSuccess ? 0 : -1;
	free(h);
	return rc;
}

/* -1 when every byte is as filled; the first wrong index; -2 on error. */
static inline long dev_check(const void *dev, size_t n, unsigned seed)
{
	unsigned char *h = (unsigned char *)malloc(n ? n : 1);
	long bad = -2;

	if (h == NULL)
		return -2;
	if (cudaMemcpy(h, dev, n, cudaMemcpyDeviceToHost) == cudaSuccess)
		bad = check(h, n, seed);
	free(h);
	return bad;
}

/* 1 if the device memory at p is released: on the simulated driver a
 * read faults (tried in a child), on a GPU a copy from it fails. */
static inline int released(const void *p)
{
	if (on_fake()) {
		pid_t pid = fork();
		int st;

		if (pid == 0) {
			(void)*(volatile const char *)p;
			_exit(0);
		}
		waitpid(pid, &st, 0);
		return WIFSIGNALED(st);
	} else {
		unsigned char b;
		int bad = cudaMemcpy(&b, p, 1, cudaMemcpyDeviceToHost) != cudaSuccess;

		(void)cudaGetLastError();
		return bad;
	}
}

#endif
