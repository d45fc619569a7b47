/* SPDX-License-Identifier: Apache-2.0 */
/*
 * test_region_faults.c - every driver call of every path, failed in turn.
 *
 * For each path (allocate, free in each state, pause, staged pause with new
 * and with kept buffers, a pause staging only the allocations made to be
 * staged, resume from staged and from paused, allocation and resume under
 * a margin, prepare, release_host) and each driver entry point, the k-th call is failed for
 * k = 1, 2, ... until the path no longer makes a k-th call (the simulated
 * driver says whether the fault fired). Each run is a fresh child process,
 * so calls made once per process (granularity, streams, the primary
 * context) are failed too. After the failure the registry must match the
 * driver's own count of handles, mappings, reservations and pinned host
 * buffers; an allocation it calls active must be readable with its bytes
 * intact, one it calls paused or staged must fault; then a retry must
 * complete the job, every staged byte must come back bit-identical, and
 * freeing everything must leave the driver holding nothing.
 */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>
#include <criterion/parameterized.h>
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <sys/wait.h>

#include "../faultmatrix.h"
#include "fixture.h"

#define MiB (1ull << 20)
#define N 3

/* No fixture in the test's own process: each fault runs in a child that
 * starts the driver itself, since a forked child cannot use a driver its
 * parent started (neither can a GPU's). */
TestSuite(faults, .timeout = 600);

/* Every entry point the driver binding uses, and the error each returns
 * when failed: out of memory where the driver can run out, a sticky
 * device fault for the waits, an unknown error for the rest. */
static const struct faultmatrix_call calls[] = {
	{ "cuDeviceGet", "unknown" },
	{ "cuDevicePrimaryCtxRetain", "unknown" },
	{ "cuCtxGetCurrent", "unknown" },
	{ "cuCtxSetCurrent", "unknown" },
	{ "cuCtxPushCurrent", "unknown" },
	{ "cuCtxPopCurrent", "unknown" },
	{ "cuCtxSynchronize", "illegal" },
	{ "cuMemGetAllocationGranularity", "inval" },
	{ "cuMemAddressReserve", "oom" },
	{ "cuMemAddressFree", "unknown" },
	{ "cuMemCreate", "oom" },
	{ "cuMemRelease", "unknown" },
	{ "cuMemMap", "unknown" },
	{ "cuMemUnmap", "unknown" },
	{ "cuMemSetAccess", "unknown" },
	{ "cuStreamCreate", "unknown" },
	{ "cuStreamSynchronize", "illegal" },
	{ "cuMemcpyDtoHAsync", "unknown" },
	{ "cuMemcpyHtoDAsync", "unknown" },
	{ "cuMemHostRegister", "oom" },
	{ "cuMemHostUnregister", "unknown" },
	{ "cuMemGetInfo", "unknown" },
	{ "cuEventCreate", "unknown" },
	{ "cuEventDestroy", "unknown" },
	{ "cuEventRecord", "unknown" },
	{ "cuEventSynchronize", "illegal" },
};

enum path {
	P_ALLOC, P_FREE_ACTIVE, P_FREE_PAUSED, P_FREE_STAGED, P_PAUSE, P_PAUSE_STAGED,
	P_PAUSE_KEPT, P_RESUME_STAGED, P_RESUME_PAUSED, P_PREPARE, P_RELEASE_HOST,
	P_PAUSE_MIXED, P_ALLOC_MARGIN, P_RESUME_MARGIN,
};

static const char *const path_names[] = {
	"alloc", "free active", "free paused", "free staged", "pause", "staged pause",
	"staged pause into kept buffers", "resume staged (release host)", "resume paused",
	"prepare", "release_host", "pause staging the allocations made to be staged",
	"alloc under a margin", "resume under a margin",
};

/* Three allocations of one, four and one chunk, each with its own tag. */
static const size_t msize[N] = { MiB, 3 * MiB + 100, 64 << 10 };
static const char *const mtag[N] = { "m0", "m1", "m2" };
static uint64_t mva[N];

/* The mixed path: the first and the last are made to be staged by every
 * pause, the middle one is not. */
static unsigned mflags(enum path p, int i)
{
	return p == P_PAUSE_MIXED && i != 1 ? MEMCTL_REGION_STAGE_CPU : 0;
}

/* Whether allocation i keeps its bytes across the path's pause. */
static int kept(enum path p, int i)
{
	return p != P_PAUSE_MIXED || i != 1;
}

static int request(int (*fn)(const struct region_req *, struct region_report *,
			     struct region_err *), unsigned flags, struct region_err *err)
{
	struct region_req rq = { .tags = { .all = 1 }, .flags = flags };
	struct region_report rep;

	return fn(&rq, &rep, err);
}

static int is_free(enum path p)
{
	return p == P_FREE_ACTIVE || p == P_FREE_PAUSED || p == P_FREE_STAGED;
}

static int setup(enum path p)
{
	struct region_err err = { 0, "" };
	int i, rc = 0;

	/* A margin well inside the simulated 1G, so that each allocation
	 * and resume reads free memory (and that read can fail). */
	region_set_margin(p == P_ALLOC_MARGIN || p == P_RESUME_MARGIN ? 64 * MiB : 0);
	if (p == P_ALLOC || p == P_ALLOC_MARGIN)
		return 0;
	for (i = 0; i < N; i++) {
		CHECK(region_alloc(mtag[i], mflags(p, i), 0, msize[i], &mva[i], &err) == 0,
		      "setup: %s", err.msg);
		fill(mva[i], msize[i], (unsigned)i);
	}
	if (p == P_FREE_PAUSED || p == P_RESUME_PAUSED)
		rc = request(region_pause, 0, &err);
	else if (p == P_FREE_STAGED || p == P_RESUME_STAGED || p == P_RESUME_MARGIN)
		rc = request(region_pause, MEMCTL_STAGE_CPU, &err);
	else if (p == P_PAUSE_KEPT || p == P_RELEASE_HOST)
		rc = request(region_prepare, 0, &err);
	CHECK(rc == 0, "setup: %s", err.msg);
	return 0;
}

static int run_path(enum path p, struct region_err *err)
{
	int i, rc;

	switch (p) {
	case P_ALLOC: case P_ALLOC_MARGIN:
		for (i = 0; i < N; i++)
			if (mva[i] == 0 &&
			    (rc = region_alloc(mtag[i], 0, 0, msize[i], &mva[i], err)) < 0)
				return rc;
		return 0;
	case P_FREE_ACTIVE: case P_FREE_PAUSED: case P_FREE_STAGED:
		snprintf(err->msg, sizeof(err->msg), "region_free");
		return region_free(mva[1]);
	case P_PAUSE: case P_PAUSE_MIXED:
		return request(region_pause, 0, err);
	case P_PAUSE_STAGED: case P_PAUSE_KEPT:
		return request(region_pause, MEMCTL_STAGE_CPU, err);
	case P_RESUME_MARGIN:
		return request(region_resume, 0, err);
	case P_RESUME_STAGED:
		return request(region_resume, MEMCTL_RELEASE_HOST, err);
	case P_RESUME_PAUSED:
		return request(region_resume, 0, err);
	case P_PREPARE:
		return request(region_prepare, 0, err);
	case P_RELEASE_HOST:
		return request(region_release_host, 0, err);
	}
	return -EINVAL;
}

/* The registry's view of the driver equals the driver's own. */
static int census_true(struct region_census *c)
{
	region_census(c);
	CHECK(c->handles == (uint64_t)fakecuda_live_handles(), "handles %llu, driver %ld",
	      (unsigned long long)c->handles, fakecuda_live_handles());
	CHECK(c->mappings == (uint64_t)fakecuda_live_mappings(), "mappings %llu, driver %ld",
	      (unsigned long long)c->mappings, fakecuda_live_mappings());
	CHECK(c->reservations == (uint64_t)fakecuda_live_reservations(),
	      "reservations %llu, driver %ld", (unsigned long long)c->reservations,
	      fakecuda_live_reservations());
	CHECK(c->host_pinned == (uint64_t)fakecuda_live_host_registrations(),
	      "pinned buffers %llu, driver %ld", (unsigned long long)c->host_pinned,
	      fakecuda_live_host_registrations());
	CHECK(c->handle_bytes == fakecuda_used(), "device bytes %llu, driver %llu",
	      (unsigned long long)c->handle_bytes, (unsigned long long)fakecuda_used());
	return 0;
}

/* 1 active, 0 not, -1 not live. */
static int is_active(int i)
{
	struct region_err err;
	struct memctl_stat st;
	struct tagset ts;

	if (tagset_parse(mtag[i], &ts, &err) < 0 || region_stat(&ts, &st) < 0)
		return -1;
	return st.active_bytes > 0;
}

/* Active means readable (a fault would kill this child) with the bytes it
 * had, where the path keeps them; paused or staged means not accessible. */
static int truth(enum path p)
{
	struct region_census c;
	int i, act;

	if (census_true(&c) < 0)
		return -1;
	for (i = 0; i < N; i++) {
		if (mva[i] == 0 || (i == 1 && is_free(p)))
			continue;
		act = is_active(i);
		CHECK(act >= 0, "allocation %d lost from the registry", i);
		if (act && p != P_ALLOC && p != P_ALLOC_MARGIN && p != P_RESUME_PAUSED)
			CHECK(same(mva[i], msize[i], (unsigned)i), "active allocation %d differs", i);
		else if (act)
			(void)*(volatile const char *)(uintptr_t)mva[i];
		else
			CHECK(faults(mva[i]), "allocation %d is accessible but recorded paused", i);
	}
	return 0;
}

/* Every allocation active (want 1) or not; with `intact`, those the path
 * keeps (kept()) hold their bytes. */
static int all_active(enum path p, int want, int intact)
{
	int i;

	for (i = 0; i < N; i++) {
		if (mva[i] == 0)
			continue;
		CHECK(is_active(i) == want, "allocation %d: active %d, expected %d", i,
		      is_active(i), want);
		if (intact && kept(p, i))
			CHECK(same(mva[i], msize[i], (unsigned)i), "allocation %d differs", i);
	}
	return 0;
}

/* After the retry: the job is done, nothing is left over. */
static int finished(enum path p)
{
	struct region_err err = { 0, "" };
	struct region_census c;

	if (census_true(&c) < 0)
		return -1;
	CHECK(c.leftovers == 0 && c.unfinished_frees == 0, "leftovers %llu, unfinished %llu",
	      (unsigned long long)c.leftovers, (unsigned long long)c.unfinished_frees);
	if (is_free(p)) {
		CHECK(is_active(1) == -1, "freed allocation still live");
		mva[1] = 0;
		if (p != P_FREE_ACTIVE)
			CHECK(request(region_resume, 0, &err) == 0, "resume: %s", err.msg);
		return all_active(p, 1, p != P_FREE_PAUSED);
	}
	switch (p) {
	case P_PAUSE:
		return all_active(p, 0, 0);
	case P_PAUSE_STAGED: case P_PAUSE_KEPT: case P_PAUSE_MIXED:
		if (all_active(p, 0, 0) < 0)
			return -1;
		CHECK(request(region_resume, 0, &err) == 0, "resume: %s", err.msg);
		return all_active(p, 1, 1);
	case P_RESUME_STAGED: case P_RELEASE_HOST:
		CHECK(c.host_buffers == 0, "%llu host buffers left", (unsigned long long)c.host_buffers);
		return all_active(p, 1, 1);
	case P_RESUME_MARGIN:
		return all_active(p, 1, 1);
	case P_PREPARE:
		CHECK(c.host_pinned == N, "%llu pinned buffers", (unsigned long long)c.host_pinned);
		return all_active(p, 1, 1);
	default:
		return all_active(p, 1, 0);
	}
}

/* Free everything; the driver must hold nothing afterwards. */
static int nothing_left(void)
{
	struct region_census c;
	int i;

	for (i = 0; i < N; i++)
		if (mva[i] != 0)
			CHECK(region_free(mva[i]) == 0, "free of allocation %d failed", i);
	region_census(&c);
	CHECK(c.handles + c.mappings + c.reservations + c.host_buffers + c.unfinished_frees == 0,
	      "the registry still holds something");
	CHECK(faultmatrix_driver_empty(), "the driver still holds something: a leak");
	return 0;
}

/* One run with `spec` failed: 0 checked, 1 the call was not made that
 * often, -1 wrong (why says how). */
static int one_run(enum path p, const char *spec)
{
	struct region_err err = { 0, "" };
	int rc, fired;

	if (setup(p) < 0)
		return -1;
	fakecuda_set_fail(spec);
	rc = run_path(p, &err);
	fired = fakecuda_faults_fired() > 0;
	fakecuda_set_fail(NULL);
	if (!fired) {
		CHECK(rc == 0, "failed with no fault: %s", err.msg);
		if (is_free(p))
			mva[1] = 0;
		return nothing_left() < 0 ? -1 : 1;
	}
	if (truth(p) < 0)
		return -1;
	if (rc < 0) {
		char first[256];

		snprintf(first, sizeof(first), "%s", err.msg);
		rc = run_path(p, &err);
		CHECK(rc == 0, "retry after \"%s\" failed: %s", first, err.msg);
	}
	if (finished(p) < 0 || nothing_left() < 0)
		return -1;
	return 0;
}

/* One fault, in the child faultmatrix_every_call forks: a driver of its
 * own (a forked child cannot use its parent's). */
static int in_child(int p, const char *spec)
{
	int r;

	fixture_setup();
	r = one_run((enum path)p, spec);
	fixture_teardown();
	return r;
}

ParameterizedTestParameters(faults, every_driver_call)
{
	static enum path paths[] = {
		P_ALLOC, P_FREE_ACTIVE, P_FREE_PAUSED, P_FREE_STAGED, P_PAUSE, P_PAUSE_STAGED,
		P_PAUSE_KEPT, P_RESUME_STAGED, P_RESUME_PAUSED, P_PREPARE, P_RELEASE_HOST,
		P_PAUSE_MIXED, P_ALLOC_MARGIN, P_RESUME_MARGIN,
	};
	return cr_make_param_array(enum path, paths, sizeof(paths) / sizeof(paths[0]));
}

ParameterizedTest(enum path *p, faults, every_driver_call)
{
	faultmatrix_every_call(calls, sizeof(calls) / sizeof(calls[0]), in_child, *p,
			       path_names[*p]);
}
