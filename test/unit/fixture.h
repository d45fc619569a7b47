/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fixture.h - unit-suite setup: a private simulated device per test (its
 * own shared-state file), the real driver binding loaded from it, and a
 * fresh registry, with every violation of the simulated driver's rules
 * failing the test (docs/testing.md).
 */
#ifndef TEST_FIXTURE_H
#define TEST_FIXTURE_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

#endif
