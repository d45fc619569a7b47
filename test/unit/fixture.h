/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fixture.h - unit-suite setup: a private simulated device per test (its
 * own shared-state file), the real driver binding loaded from it, and a
 * fresh registry, with every violation of the simulated driver's rules
 * failing the test (docs/testing.md); and helpers for the simulated
 * device's memory, which is host-addressable.
 */
#ifndef TEST_FIXTURE_H
#define TEST_FIXTURE_H

#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "drv_cuda.h"
#include "fakecuda.h"
#include "region.h"

static char fixture_state[64];

static inline void fixture_setup(void)
{
	struct region_opts ro = { .chunk_bytes = 1 << 20, .streams = 3, .pin_threads = 4, .hugepages = 1 };
	const struct drv_ops *ops;

	snprintf(fixture_state, sizeof(fixture_state), "/tmp/fakecuda-unit-%d.state",
		 (int)getpid());
	unlink(fixture_state);
	setenv("FAKECUDA_STATE", fixture_state, 1);
	setenv("FAKECUDA_MEMORY", "1G", 1);
	ops = drv_cuda_load();
	if (ops == NULL)
		abort(); /* test-only: the simulated driver must load */
	fakecuda_set_fail(NULL);
	/* Memory taken away under queued work, or work touching unmapped
	 * memory, fails the test where it happens (the simulated driver
	 * aborts: Criterion does not count failures in .fini). */
	fakecuda_violations_fatal(1);
	region_init(ops, &ro);
}

static inline void fixture_teardown(void)
{
	unlink(fixture_state);
}

/* Fills size bytes at va with a pattern that depends on seed. */
static inline void fill(uint64_t va, size_t size, unsigned seed)
{
	unsigned char *p = (unsigned char *)(uintptr_t)va;
	size_t i;

	for (i = 0; i < size; i++)
		p[i] = (unsigned char)((i * 2654435761u + seed) >> 7);
}

/* 1 if the size bytes at va hold fill()'s pattern for seed, 0 if not. */
static inline int same(uint64_t va, size_t size, unsigned seed)
{
	const unsigned char *p = (const unsigned char *)(uintptr_t)va;
	size_t i;

	for (i = 0; i < size; i++)
		if (p[i] != (unsigned char)((i * 2654435761u + seed) >> 7))
			return 0;
	return 1;
}

/* 1 if touching va kills a child with SIGSEGV (memory released). */
static inline int faults(uint64_t va)
{
	pid_t pid = fork();
	int st;

	if (pid == 0) {
		(void)*(volatile const char *)(uintptr_t)va;
		_exit(0);
	}
	waitpid(pid, &st, 0);
	return WIFSIGNALED(st) && WTERMSIG(st) == SIGSEGV;
}

#endif
