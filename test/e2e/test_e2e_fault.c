/* SPDX-License-Identifier: Apache-2.0 */
/*
 * test_e2e_fault.c - failures injected into the simulated driver under
 * LD_PRELOAD: every request either completes or changes nothing, and no
 * staged byte is ever lost. Simulated driver only (it needs FAKECUDA_FAIL).
 *
 * The matrix at the end fails every driver call of every path the
 * application can take (tagged cudaMalloc, cudaFree in each state, and each
 * memctl_* request), one call at a time, each in a fresh child process.
 */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>
#include <criterion/parameterized.h>
#include <cuda_runtime_api.h>
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include "../faultmatrix.h"
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

/* A cudaFree that failed part way is finished by repeating it, even when
 * it was the last tagged allocation. */
Test(fault, a_failed_free_of_the_last_allocation_is_finished_by_a_retry)
{
	void *p = tagged("weights", MiB);

	fakecuda_set_fail("cuMemRelease:1:unknown");
	cr_assert(not(eq(int, cudaFree(p), cudaSuccess)));
	fakecuda_set_fail(NULL);
	cr_assert(eq(long, fakecuda_live_handles(), 1), "the handle is kept to retry");
	cr_assert(eq(long, fakecuda_live_mappings(), 0));
	cr_assert(eq(int, M.stat(NULL, &(struct memctl_stat){ 0 }), -ENOENT));
	cr_assert(eq(int, cudaFree(p), cudaSuccess));
	cr_assert(eq(long, fakecuda_live_handles(), 0));
	cr_assert(eq(long, fakecuda_live_reservations(), 0));
	cr_assert(eq(sz, dev_free(), (size_t)1 << 30));
}

/* A failed release during a pause: the allocation is paused (not active),
 * the error names cuMemRelease, the handle is released by the next pause,
 * and the staged contents come back. */
Test(fault, a_failed_release_in_a_pause_is_told_and_finished_later)
{
	void *p = tagged("weights", 4 * MiB);
	struct memctl_stat st;

	cr_assert(eq(int, dev_fill(p, 4 * MiB, 7), 0));
	fakecuda_set_fail("cuMemRelease:1:unknown");
	cr_assert(eq(int, M.pause("weights", MEMCTL_STAGE_CPU), -EIO));
	cr_assert(not(eq(ptr, strstr(M.strerror(-EIO), "cuMemRelease"), NULL)), "%s",
		  M.strerror(-EIO));
	fakecuda_set_fail(NULL);
	cr_assert(eq(int, M.stat("weights", &st), 0));
	cr_assert(eq(u64, st.active_bytes, 0));
	cr_assert(released(p));
	cr_assert(eq(long, fakecuda_live_handles(), 1));
	cr_assert(eq(int, M.pause("weights", MEMCTL_STAGE_CPU), 0));
	cr_assert(eq(long, fakecuda_live_handles(), 0));
	cr_assert(eq(int, M.resume("weights", 0), 0));
	cr_assert(eq(long, dev_check(p, 4 * MiB, 7), -1));
}

/* ---- every driver call of every path, through the public API ----------- */

static const struct faultmatrix_call calls[] = {
	{ "cuDeviceGet", "unknown" }, { "cuDevicePrimaryCtxRetain", "unknown" },
	{ "cuCtxGetCurrent", "unknown" }, { "cuCtxSetCurrent", "unknown" },
	{ "cuCtxSynchronize", "illegal" }, { "cuMemGetAllocationGranularity", "inval" },
	{ "cuMemAddressReserve", "oom" }, { "cuMemAddressFree", "unknown" },
	{ "cuMemCreate", "oom" }, { "cuMemRelease", "unknown" }, { "cuMemMap", "unknown" },
	{ "cuMemUnmap", "unknown" }, { "cuMemSetAccess", "unknown" },
	{ "cuStreamCreate", "unknown" }, { "cuStreamSynchronize", "illegal" },
	{ "cuMemcpyDtoHAsync", "unknown" }, { "cuMemcpyHtoDAsync", "unknown" },
	{ "cuMemHostRegister", "oom" }, { "cuMemHostUnregister", "unknown" },
	{ "cuMemGetInfo", "unknown" }, { "cuEventCreate", "unknown" },
	{ "cuEventDestroy", "unknown" }, { "cuEventRecord", "unknown" },
	{ "cuEventSynchronize", "illegal" },
};

enum path {
	P_MALLOC, P_FREE_ACTIVE, P_FREE_PAUSED, P_FREE_STAGED, P_PAUSE, P_PAUSE_STAGED,
	P_PAUSE_KEPT, P_RESUME_STAGED, P_RESUME_PAUSED, P_PREPARE, P_RELEASE_HOST,
};

static const char *const path_names[] = {
	"tagged cudaMalloc", "cudaFree active", "cudaFree paused", "cudaFree staged",
	"memctl_pause", "memctl_pause staged", "memctl_pause into prepared buffers",
	"memctl_resume staged (release host)", "memctl_resume paused", "memctl_prepare",
	"memctl_release_host",
};

/* Pinned host buffers each path leaves once it has succeeded. */
static const long host_after[] = { 0, 0, 0, 2, 0, 3, 3, 0, 0, 3, 0 };

#define NM 3
static const size_t msize[NM] = { MiB, 3 * MiB + 100, 64 << 10 };
static const char *const mtag[NM] = { "m0", "m1", "m2" };
static void *mp[NM];

static int is_free(enum path p)
{
	return p == P_FREE_ACTIVE || p == P_FREE_PAUSED || p == P_FREE_STAGED;
}

static int m_malloc(int i)
{
	int rc;

	if (M.region_begin(mtag[i]) < 0)
		return -EINVAL;
	rc = cudaMalloc(&mp[i], msize[i]) == cudaSuccess ? 0 : -ENOMEM;
	M.region_end();
	if (rc < 0)
		mp[i] = NULL;
	return rc;
}

static int m_setup(enum path p)
{
	int i, rc = 0;

	if (p == P_MALLOC)
		return 0;
	for (i = 0; i < NM; i++) {
		CHECK(m_malloc(i) == 0, "setup: cudaMalloc failed");
		fill(mp[i], msize[i], (unsigned)i);
	}
	if (p == P_FREE_PAUSED || p == P_RESUME_PAUSED)
		rc = M.pause(NULL, 0);
	else if (p == P_FREE_STAGED || p == P_RESUME_STAGED)
		rc = M.pause(NULL, MEMCTL_STAGE_CPU);
	else if (p == P_PAUSE_KEPT || p == P_RELEASE_HOST)
		rc = M.prepare(NULL);
	CHECK(rc == 0, "setup: %s", M.strerror(rc));
	return 0;
}

static int m_run(enum path p)
{
	int i, rc;

	switch (p) {
	case P_MALLOC:
		for (i = 0; i < NM; i++)
			if (mp[i] == NULL && (rc = m_malloc(i)) < 0)
				return rc;
		return 0;
	case P_FREE_ACTIVE: case P_FREE_PAUSED: case P_FREE_STAGED:
		return cudaFree(mp[1]) == cudaSuccess ? 0 : -EIO;
	case P_PAUSE:
		return M.pause(NULL, 0);
	case P_PAUSE_STAGED: case P_PAUSE_KEPT:
		return M.pause(NULL, MEMCTL_STAGE_CPU);
	case P_RESUME_STAGED:
		return M.resume(NULL, MEMCTL_RELEASE_HOST);
	case P_RESUME_PAUSED:
		return M.resume(NULL, 0);
	case P_PREPARE:
		return M.prepare(NULL);
	case P_RELEASE_HOST:
		return M.release_host(NULL);
	}
	return -EINVAL;
}

/* 1 active, 0 paused or staged, -1 not live. */
static int m_active(int i)
{
	struct memctl_stat st;

	if (M.stat(mtag[i], &st) < 0)
		return -1;
	return st.active_bytes > 0;
}

/* What memctl_stat says matches the device: active memory is readable
 * with its bytes (a fault kills this child), the rest is released. */
static int m_truth(enum path p)
{
	int i, act, nact = 0;

	for (i = 0; i < NM; i++) {
		if (mp[i] == NULL || (i == 1 && is_free(p)))
			continue;
		act = m_active(i);
		CHECK(act >= 0, "allocation %d lost", i);
		nact += act;
		if (act && p != P_MALLOC && p != P_RESUME_PAUSED)
			CHECK(check(mp[i], msize[i], (unsigned)i) == -1, "active %d differs", i);
		else if (act)
			(void)*(volatile const char *)mp[i];
		else
			CHECK(released(mp[i]), "allocation %d accessible but reported paused", i);
	}
	CHECK(fakecuda_live_mappings() >= nact && fakecuda_live_handles() >= nact,
	      "fewer handles or mappings than active allocations");
	return 0;
}

static int m_all(int want, int intact)
{
	int i;

	for (i = 0; i < NM; i++) {
		if (mp[i] == NULL)
			continue;
		CHECK(m_active(i) == want, "allocation %d active %d, expected %d", i,
		      m_active(i), want);
		if (intact)
			CHECK(check(mp[i], msize[i], (unsigned)i) == -1, "allocation %d differs", i);
	}
	return 0;
}

/* After the retry: the job is done and the driver holds exactly that. */
static int m_finished(enum path p)
{
	long live = 0, act = 0;
	int i, rc = 0;

	if (is_free(p)) {
		CHECK(m_active(1) == -1, "freed allocation still live");
		mp[1] = NULL;
	}
	for (i = 0; i < NM; i++)
		if (mp[i] != NULL) {
			live++;
			act += m_active(i) == 1;
		}
	CHECK(fakecuda_live_handles() == act && fakecuda_live_mappings() == act,
	      "driver holds %ld handles, %ld mappings for %ld active allocations",
	      fakecuda_live_handles(), fakecuda_live_mappings(), act);
	CHECK(fakecuda_live_reservations() == live, "%ld reservations for %ld allocations",
	      fakecuda_live_reservations(), live);
	CHECK(fakecuda_live_host_registrations() == host_after[p],
	      "%ld pinned buffers, expected %ld", fakecuda_live_host_registrations(),
	      host_after[p]);
	if (p == P_PAUSE)
		return m_all(0, 0);
	if (p == P_PAUSE_STAGED || p == P_PAUSE_KEPT || p == P_FREE_PAUSED ||
	    p == P_FREE_STAGED)
		rc = M.resume(NULL, 0);
	CHECK(rc == 0, "resume: %s", M.strerror(rc));
	return m_all(1, p != P_MALLOC && p != P_RESUME_PAUSED && p != P_FREE_PAUSED);
}

static int m_nothing_left(void)
{
	int i;

	for (i = 0; i < NM; i++)
		if (mp[i] != NULL)
			CHECK(cudaFree(mp[i]) == cudaSuccess, "cudaFree of %d failed", i);
	CHECK(faultmatrix_driver_empty(), "the driver still holds something: a leak");
	return 0;
}

static int m_one(enum path p, const char *spec)
{
	int rc, fired;

	if (m_setup(p) < 0)
		return -1;
	fakecuda_set_fail(spec);
	rc = m_run(p);
	fired = fakecuda_faults_fired() > 0;
	fakecuda_set_fail(NULL);
	if (!fired) {
		CHECK(rc == 0, "failed with no fault: %s", M.strerror(rc));
		if (is_free(p))
			mp[1] = NULL;
		return m_nothing_left() < 0 ? -1 : 1;
	}
	/* A request's message names what failed (cudaFree/cudaMalloc have
	 * only their error code). */
	if (rc < 0 && p != P_MALLOC && !is_free(p))
		CHECK(strstr(M.strerror(rc), "cu") != NULL || strstr(M.strerror(rc), "memory"),
		      "unhelpful message: %s", M.strerror(rc));
	if (m_truth(p) < 0)
		return -1;
	if (rc < 0)
		CHECK((rc = m_run(p)) == 0, "retry failed: %s",
		      is_free(p) || p == P_MALLOC ? "" : M.strerror(rc));
	if (m_finished(p) < 0 || m_nothing_left() < 0)
		return -1;
	return 0;
}

/* One fault, in the child faultmatrix_every_call forks. */
static int m_in_child(int p, const char *spec)
{
	return m_one((enum path)p, spec);
}

ParameterizedTestParameters(fault, every_driver_call_of_every_api_path)
{
	static enum path paths[] = {
		P_MALLOC, P_FREE_ACTIVE, P_FREE_PAUSED, P_FREE_STAGED, P_PAUSE, P_PAUSE_STAGED,
		P_PAUSE_KEPT, P_RESUME_STAGED, P_RESUME_PAUSED, P_PREPARE, P_RELEASE_HOST,
	};
	return cr_make_param_array(enum path, paths, sizeof(paths) / sizeof(paths[0]));
}

ParameterizedTest(enum path *p, fault, every_driver_call_of_every_api_path, .timeout = 600)
{
	faultmatrix_every_call(calls, sizeof(calls) / sizeof(calls[0]), m_in_child, *p,
			       path_names[*p]);
}
