/* SPDX-License-Identifier: Apache-2.0 */
/*
 * test_region_app_faults.c - memory the application maps itself, with
 * every driver call of every path failed in turn (the method of
 * test_region_faults.c, for region/app.c).
 *
 * The application here is PyTorch's expandable segments: one reservation
 * of its own, three handles (2, 4 and 2 MiB, one tag each) mapped side by
 * side, access granted over all three in one call, and a fourth handle
 * created but not yet mapped. Paths: pause, staged pause, resume from
 * staged and from paused, and the application's own calls - mapping
 * while active, granting access while active, unmapping while active and
 * while paused (then resuming the rest), releasing while staged, freeing
 * the reservation while staged. For each, the k-th call of each driver entry point is failed in
 * a fresh child. Then the registry must say what the driver holds (its
 * handles, mappings, pinned buffers and bytes; the reservation is the
 * application's), each handle it calls active must be readable with its
 * bytes, each it calls paused must fault; a retry must complete the job;
 * and once the application has given everything back the driver must
 * hold nothing.
 */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>
#include <criterion/parameterized.h>
#include <cuda.h>
#include <dlfcn.h>
#include <errno.h>
#include <signal.h>
#include <sys/wait.h>

#include "../faultmatrix.h"
#include "fixture.h"

#define MiB (1ull << 20)
#define N 3

TestSuite(app_faults, .timeout = 600);

static const struct faultmatrix_call calls[] = {
	{ "cuDeviceGet", "unknown" },
	{ "cuDevicePrimaryCtxRetain", "unknown" },
	{ "cuCtxGetCurrent", "unknown" },
	{ "cuCtxSetCurrent", "unknown" },
	{ "cuCtxSynchronize", "illegal" },
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
	{ "cuEventRecord", "unknown" },
	{ "cuEventSynchronize", "illegal" },
};

enum path {
	P_PAUSE, P_PAUSE_STAGED, P_RESUME_STAGED, P_RESUME_PAUSED, P_MAP_ACTIVE,
	P_ACCESS_ACTIVE, P_UNMAP_ACTIVE, P_UNMAP_PAUSED, P_RELEASE_STAGED, P_ADDRESS_FREE,
};

static const char *const path_names[] = {
	"pause", "staged pause", "resume staged", "resume paused", "map while active",
	"grant access while active", "unmap while active", "unmap while paused, resume",
	"release while staged", "free the reservation while staged",
};

static const size_t hsize[N] = { 2 * MiB, 4 * MiB, 2 * MiB };
static const char *const htag[N] = { "h0", "h1", "h2" };

/* The application's view. */
static struct {
	CUdeviceptr base;        /* its reservation (64 MiB) */
	int reserved;
	uint64_t id[N + 1];      /* N mapped handles and a spare one */
	uint64_t at[N + 1];      /* where each is mapped, 0 if nowhere */
	int released[N + 1];
} app;

static __typeof__(&cuMemAddressReserve) drv_reserve;
static __typeof__(&cuMemAddressFree) drv_unreserve;
static __typeof__(&cuMemCreate) drv_create;

static int request(int (*fn)(const struct region_req *, struct region_report *,
			     struct region_err *), unsigned flags, struct region_err *err)
{
	struct region_req rq = { .tags = { .all = 1 }, .flags = flags };
	struct region_report rep;

	return fn(&rq, &rep, err);
}

static int grant_all(void)
{
	struct region_access acc = { CU_MEM_LOCATION_TYPE_DEVICE, 0,
				     CU_MEM_ACCESS_FLAGS_PROT_READWRITE };

	return region_app_set_access(app.base, 8 * MiB, &acc, 1);
}

static int create(const char *tag, size_t size, uint64_t *id)
{
	CUmemAllocationProp p;
	CUmemGenericAllocationHandle h;
	struct region_err err;

	memset(&p, 0, sizeof(p));
	p.type = CU_MEM_ALLOCATION_TYPE_PINNED;
	p.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
	CHECK(drv_create(&h, size, &p, 0) == CUDA_SUCCESS, "setup: cuMemCreate");
	CHECK(region_app_adopt(tag, 0, 0, size, &p, sizeof(p), (uint64_t)h, id, &err) == 0,
	      "setup: %s", err.msg);
	return 0;
}

static int setup(enum path p)
{
	struct region_err err = { 0, "" };
	uint64_t off = 0;
	void *h = dlopen("libcuda.so.1", RTLD_NOW | RTLD_NOLOAD);
	int i, rc = 0;

	*(void **)&drv_reserve = dlsym(h, "cuMemAddressReserve");
	*(void **)&drv_unreserve = dlsym(h, "cuMemAddressFree");
	*(void **)&drv_create = dlsym(h, "cuMemCreate");
	memset(&app, 0, sizeof(app));
	CHECK(drv_reserve(&app.base, 64 * MiB, 0, 0, 0) == CUDA_SUCCESS, "setup: reserve");
	app.reserved = 1;
	for (i = 0; i < N; i++) {
		if (create(htag[i], hsize[i], &app.id[i]) < 0)
			return -1;
		app.at[i] = app.base + off;
		CHECK(region_app_map(app.id[i], app.at[i], hsize[i], 0) == 0, "setup: map");
		off += hsize[i];
	}
	if (create("h3", 2 * MiB, &app.id[N]) < 0)
		return -1;
	CHECK(grant_all() == 0, "setup: access");
	for (i = 0; i < N; i++)
		fill(app.at[i], hsize[i], (unsigned)i);
	if (p == P_RESUME_PAUSED || p == P_UNMAP_PAUSED)
		rc = request(region_pause, 0, &err);
	else if (p == P_RESUME_STAGED || p == P_RELEASE_STAGED || p == P_ADDRESS_FREE)
		rc = request(region_pause, MEMCTL_STAGE_CPU, &err);
	CHECK(rc == 0, "setup: %s", err.msg);
	return 0;
}

static int run_path(enum path p, struct region_err *err)
{
	snprintf(err->msg, sizeof(err->msg), "%s", path_names[p]);
	switch (p) {
	case P_PAUSE:
		return request(region_pause, 0, err);
	case P_PAUSE_STAGED:
		return request(region_pause, MEMCTL_STAGE_CPU, err);
	case P_RESUME_STAGED:
		return request(region_resume, MEMCTL_RELEASE_HOST, err);
	case P_RESUME_PAUSED:
		return request(region_resume, 0, err);
	case P_MAP_ACTIVE:
		if (app.at[N] != 0)
			return 0;
		if (region_app_map(app.id[N], app.base + 32 * MiB, 2 * MiB, 0) < 0)
			return -EIO;
		app.at[N] = app.base + 32 * MiB;
		return 0;
	case P_ACCESS_ACTIVE:
		return grant_all();
	case P_UNMAP_ACTIVE: case P_UNMAP_PAUSED:
		if (app.at[1] != 0) {
			if (region_app_unmap(app.at[1], hsize[1]) < 0)
				return -EIO;
			app.at[1] = 0;
		}
		/* A paused mapping is forgotten with no driver call: the
		 * resume after it is the path's driver work. */
		return p == P_UNMAP_PAUSED ? request(region_resume, 0, err) : 0;
	case P_RELEASE_STAGED:
		if (app.at[1] != 0) {
			if (region_app_unmap(app.at[1], hsize[1]) < 0)
				return -EIO;
			app.at[1] = 0;
		}
		if (region_app_release(app.id[1]) < 0)
			return -EIO;
		app.released[1] = 1;
		return 0;
	case P_ADDRESS_FREE:
		if (!app.reserved)
			return 0;
		if (region_app_address_free(app.base, 64 * MiB) < 0)
			return -EIO;
		app.reserved = 0;
		memset(app.at, 0, sizeof(app.at));
		return 0;
	}
	return -EINVAL;
}

/* The registry's view equals the driver's; the reservation is the
 * application's own. */
static int census_true(struct region_census *c)
{
	region_census(c);
	CHECK(c->handles == (uint64_t)fakecuda_live_handles(), "handles %llu, driver %ld",
	      (unsigned long long)c->handles, fakecuda_live_handles());
	CHECK(c->mappings == (uint64_t)fakecuda_live_mappings(), "mappings %llu, driver %ld",
	      (unsigned long long)c->mappings, fakecuda_live_mappings());
	CHECK((uint64_t)app.reserved == (uint64_t)fakecuda_live_reservations(),
	      "reservations: driver %ld", fakecuda_live_reservations());
	CHECK(c->host_pinned == (uint64_t)fakecuda_live_host_registrations(),
	      "pinned buffers %llu, driver %ld", (unsigned long long)c->host_pinned,
	      fakecuda_live_host_registrations());
	CHECK(c->handle_bytes == fakecuda_used(), "device bytes %llu, driver %llu",
	      (unsigned long long)c->handle_bytes, (unsigned long long)fakecuda_used());
	return 0;
}

/* The path keeps contents (no unstaged pause in it). */
static int keeps_bytes(enum path p)
{
	return p != P_RESUME_PAUSED && p != P_UNMAP_PAUSED;
}

/* 1 active, 0 not, -1 not live. */
static int is_active(int i)
{
	struct region_err err;
	struct memctl_stat st;
	struct tagset ts;

	if (tagset_parse(htag[i], &ts, &err) < 0 || region_stat(&ts, &st) < 0)
		return -1;
	return st.active_bytes > 0;
}

/* Active and mapped: readable, with its bytes where the path keeps them;
 * paused: its mapping faults. */
static int truth(enum path p)
{
	struct region_census c;
	int i, act;

	if (census_true(&c) < 0)
		return -1;
	for (i = 0; i < N; i++) {
		if (app.released[i] || app.at[i] == 0)
			continue;
		act = is_active(i);
		CHECK(act >= 0, "handle %d lost from the registry", i);
		if (act && keeps_bytes(p))
			CHECK(same(app.at[i], hsize[i], (unsigned)i), "active handle %d differs", i);
		else if (act)
			(void)*(volatile const char *)(uintptr_t)app.at[i];
		else
			CHECK(faults(app.at[i]), "handle %d is accessible but recorded paused", i);
	}
	return 0;
}

static int expect(int i, int active, int intact)
{
	CHECK(is_active(i) == active, "handle %d: active %d, expected %d", i, is_active(i),
	      active);
	if (intact)
		CHECK(same(app.at[i], hsize[i], (unsigned)i), "handle %d differs", i);
	return 0;
}

/* After the retry: the job is done, nothing is left over. */
static int finished(enum path p)
{
	struct region_err err = { 0, "" };
	struct region_census c;
	int i;

	if (census_true(&c) < 0)
		return -1;
	CHECK(c.leftovers == 0 && c.unfinished_frees == 0, "leftovers %llu, unfinished %llu",
	      (unsigned long long)c.leftovers, (unsigned long long)c.unfinished_frees);
	switch (p) {
	case P_PAUSE:
		for (i = 0; i < N; i++)
			if (expect(i, 0, 0) < 0)
				return -1;
		return 0;
	case P_PAUSE_STAGED: case P_UNMAP_PAUSED: case P_RELEASE_STAGED: case P_ADDRESS_FREE:
		CHECK(request(region_resume, 0, &err) == 0, "resume: %s", err.msg);
		break;
	default:
		break;
	}
	for (i = 0; i < N; i++) {
		if (app.released[i])
			continue;
		if (app.at[i] == 0) /* mapped nowhere: left as it was */
			CHECK(is_active(i) == (p == P_UNMAP_ACTIVE), "handle %d: active %d", i,
			      is_active(i));
		else if (expect(i, 1, keeps_bytes(p)) < 0)
			return -1;
	}
	return 0;
}

/* The application gives everything back; the driver then holds nothing. */
static int nothing_left(void)
{
	struct region_census c;
	int i;

	for (i = 0; i <= N; i++) {
		if (app.at[i] != 0)
			CHECK(region_app_unmap(app.at[i], i < N ? hsize[i] : 2 * MiB) == 0,
			      "unmap of handle %d failed", i);
		if (!app.released[i])
			CHECK(region_app_release(app.id[i]) == 0, "release of handle %d failed", i);
	}
	if (app.reserved)
		CHECK(drv_unreserve(app.base, 64 * MiB) == CUDA_SUCCESS, "the reservation is stuck");
	region_census(&c);
	CHECK(c.allocations + c.handles + c.mappings + c.host_buffers + c.unfinished_frees == 0,
	      "the registry still holds something");
	CHECK(faultmatrix_driver_empty(), "the driver still holds something: a leak");
	return 0;
}

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

ParameterizedTestParameters(app_faults, every_driver_call)
{
	static enum path paths[] = {
		P_PAUSE, P_PAUSE_STAGED, P_RESUME_STAGED, P_RESUME_PAUSED, P_MAP_ACTIVE,
		P_ACCESS_ACTIVE, P_UNMAP_ACTIVE, P_UNMAP_PAUSED, P_RELEASE_STAGED,
		P_ADDRESS_FREE,
	};
	return cr_make_param_array(enum path, paths, sizeof(paths) / sizeof(paths[0]));
}

ParameterizedTest(enum path *p, app_faults, every_driver_call)
{
	faultmatrix_every_call(calls, sizeof(calls) / sizeof(calls[0]), in_child, *p,
			       path_names[*p]);
}
