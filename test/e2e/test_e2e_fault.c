/* SPDX-License-Identifier: Apache-2.0 */
/*
 * test_e2e_fault.c - failures injected into the simulated driver under
 * LD_PRELOAD: every request either completes or changes nothing, and no
 * staged byte is ever lost. Simulated driver only (it needs FAKECUDA_FAIL).
 */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>
#include <cuda_runtime_api.h>
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "e2e_suite.h"
#include "fakecuda.h"

#define MiB (1ull << 20)
#define GRAN (2 * MiB)

static char state_path[64];

static void setup(void)
{
	snprintf(state_path, sizeof(state_path), "/tmp/fakecuda-fault-%d.state", (int)getpid());
	unlink(state_path);
	setenv("FAKECUDA_STATE", state_path, 1);
	setenv("FAKECUDA_MEMORY", "1G", 1);
	setenv("MEMCTL_SOCKET", "0", 1);
	cr_assert(eq(int, memctl_api_load(&M), 0), "libmemctl.so is not preloaded");
	e2e_strict();
}

static void teardown(void)
{
	unlink(state_path);
}

TestSuite(fault, .init = setup, .fini = teardown, .timeout = 60);

Test(fault, resume_oom_at_each_device_allocation_keeps_staged_bytes)
{
	void *p[5];
	char spec[40];
	long handles;
	int i, k;

	for (i = 0; i < 5; i++) {
		p[i] = tagged("weights", (size_t)(i + 1) * MiB);
		cr_assert(eq(int, dev_fill(p[i], (size_t)(i + 1) * MiB, (unsigned)i), 0));
	}
	cr_assert(eq(int, M.pause("weights", MEMCTL_STAGE_CPU), 0));
	handles = fakecuda_live_handles();
	for (k = 1; k <= 5; k++) {
		snprintf(spec, sizeof(spec), "cuMemCreate:%d", k);
		fakecuda_set_fail(spec);
		cr_assert(eq(int, M.resume("weights", 0), -ENOMEM));
		cr_assert(not(eq(ptr, strstr(M.strerror(-ENOMEM), "device memory"), NULL)));
		cr_assert(eq(long, fakecuda_live_handles(), handles), "k=%d leaked a handle", k);
		cr_assert(eq(long, fakecuda_live_mappings(), 0));
		cr_assert(released(p[0]));
	}
	fakecuda_set_fail(NULL);
	cr_assert(eq(int, M.resume("weights", 0), 0));
	for (i = 0; i < 5; i++)
		cr_assert(eq(long, dev_check(p[i], (size_t)(i + 1) * MiB, (unsigned)i), -1));
}

Test(fault, map_failure_during_resume_rolls_back)
{
	void *p = tagged("weights", 4 * MiB), *q = tagged("weights", 4 * MiB);
	size_t free_paused;

	cr_assert(eq(int, dev_fill(p, 4 * MiB, 1), 0));
	cr_assert(eq(int, dev_fill(q, 4 * MiB, 2), 0));
	cr_assert(eq(int, M.pause("weights", MEMCTL_STAGE_CPU), 0));
	free_paused = dev_free();
	fakecuda_set_fail("cuMemMap:2");
	cr_assert(lt(int, M.resume("weights", 0), 0));
	cr_assert(eq(sz, dev_free(), free_paused));
	cr_assert(eq(long, fakecuda_live_mappings(), 0));
	fakecuda_set_fail(NULL);
	cr_assert(eq(int, M.resume("weights", 0), 0));
	cr_assert(eq(long, dev_check(p, 4 * MiB, 1), -1));
	cr_assert(eq(long, dev_check(q, 4 * MiB, 2), -1));
}

Test(fault, host_copy_failure_during_resume_keeps_staged_bytes)
{
	void *p = tagged("weights", 6 * MiB);
	size_t free_paused;

	cr_assert(eq(int, dev_fill(p, 6 * MiB, 3), 0));
	cr_assert(eq(int, M.pause("weights", MEMCTL_STAGE_CPU), 0));
	free_paused = dev_free();
	fakecuda_set_fail("cuMemcpyHtoDAsync:1");
	cr_assert(lt(int, M.resume("weights", 0), 0));
	cr_assert(eq(sz, dev_free(), free_paused));
	fakecuda_set_fail(NULL);
	cr_assert(eq(int, M.resume("weights", 0), 0));
	cr_assert(eq(long, dev_check(p, 6 * MiB, 3), -1));
}

Test(fault, host_pinning_failure_releases_nothing)
{
	void *p = tagged("weights", 8 * MiB), *q = tagged("weights", MiB);
	size_t free0 = dev_free();
	struct memctl_stat st;

	cr_assert(eq(int, dev_fill(p, 8 * MiB, 5), 0));
	fakecuda_set_fail("cuMemHostRegister:2");
	cr_assert(eq(int, M.pause("weights", MEMCTL_STAGE_CPU), -ENOMEM));
	cr_assert(not(eq(ptr, strstr(M.strerror(-ENOMEM), "host memory"), NULL)));
	cr_assert(eq(sz, dev_free(), free0));
	cr_assert(eq(int, M.stat("weights", &st), 0));
	cr_assert(eq(u64, st.paused_bytes, 0));
	cr_assert(eq(long, fakecuda_live_host_registrations(), 0));
	cr_assert(eq(long, dev_check(p, 8 * MiB, 5), -1));
	cr_assert(not(released(q)));
}

Test(fault, tagged_allocation_oom_is_an_error_and_leaks_nothing)
{
	void *p = NULL;

	fakecuda_set_fail("cuMemCreate:1");
	cr_assert(eq(int, M.region_begin("weights"), 0));
	cr_assert(eq(int, cudaMalloc(&p, MiB), cudaErrorMemoryAllocation));
	cr_assert(eq(int, M.region_end(), 0));
	cr_assert(eq(long, fakecuda_live_handles(), 0));
	cr_assert(eq(sz, dev_free(), (size_t)1 << 30));
	cr_assert(eq(int, M.stat("weights", &(struct memctl_stat){ 0 }), -ENOENT));
}

Test(fault, another_tenant_takes_memory_while_paused)
{
	void *p = tagged("weights", 64 * MiB);
	uint64_t stolen;

	cr_assert(eq(int, dev_fill(p, 64 * MiB, 9), 0));
	cr_assert(eq(int, M.pause("weights", MEMCTL_STAGE_CPU), 0));
	stolen = fakecuda_capacity() - fakecuda_used() - 16 * MiB;
	cr_assert(eq(int, fakecuda_tenant_take(stolen), 0));
	cr_assert(eq(int, M.resume("weights", 0), -ENOMEM));
	cr_assert(not(eq(ptr, strstr(M.strerror(-ENOMEM), "needs 67108864 bytes, 16777216 free"),
			 NULL)), "%s", M.strerror(-ENOMEM));
	fakecuda_tenant_give(stolen);
	cr_assert(eq(int, M.resume("weights", 0), 0));
	cr_assert(eq(long, dev_check(p, 64 * MiB, 9), -1));
}
