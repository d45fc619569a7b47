/* SPDX-License-Identifier: Apache-2.0 */
/*
 * test_region_app.c - memory the application maps itself (region/app.c),
 * on the simulated driver: the test plays PyTorch's expandable segments,
 * creating handles with the driver, handing them to the registry as the
 * driver layer does, mapping several side by side in one reservation of
 * its own and unmapping and releasing them in every order, paused and
 * active. The driver's own functions are called past memctl's wrappers
 * (which this executable links).
 */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>
#include <cuda.h>
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>

#include "failalloc.h"
#include "fixture.h"

#define MiB (1ull << 20)
#define GRAN (2 * MiB)

/* The simulated driver's own functions, never memctl's. */
static struct {
	__typeof__(&cuMemAddressReserve) reserve;
	__typeof__(&cuMemAddressFree) unreserve;
	__typeof__(&cuMemCreate) create;
	__typeof__(&cuMemRelease) release;
	__typeof__(&cuMemMap) map;
	__typeof__(&cuMemUnmap) unmap;
	__typeof__(&cuMemSetAccess) access;
	__typeof__(&cuMemGetAccess) get_access;
	__typeof__(&cuMemGetAllocationPropertiesFromHandle) props;
	__typeof__(&cuMemExportToShareableHandle) export_fd;
} drv;

static void setup(void)
{
	void *h;

	fixture_setup();
	h = dlopen("libcuda.so.1", RTLD_NOW | RTLD_NOLOAD);
	cr_assert(not(eq(ptr, h, NULL)));
#define SYM(f, name) cr_assert(not(eq(ptr, *(void **)&drv.f = dlsym(h, name), NULL)))
	SYM(reserve, "cuMemAddressReserve");
	SYM(unreserve, "cuMemAddressFree");
	SYM(create, "cuMemCreate");
	SYM(release, "cuMemRelease");
	SYM(map, "cuMemMap");
	SYM(unmap, "cuMemUnmap");
	SYM(access, "cuMemSetAccess");
	SYM(get_access, "cuMemGetAccess");
	SYM(props, "cuMemGetAllocationPropertiesFromHandle");
	SYM(export_fd, "cuMemExportToShareableHandle");
#undef SYM
}

static void two_devices(void)
{
	setenv("FAKECUDA_DEVICES", "2", 1);
	setup();
}

TestSuite(app, .init = setup, .fini = fixture_teardown, .timeout = 30);

static CUmemAllocationProp prop_of(int dev, int shareable)
{
	CUmemAllocationProp p;

	memset(&p, 0, sizeof(p));
	p.type = CU_MEM_ALLOCATION_TYPE_PINNED;
	p.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
	p.location.id = dev;
	if (shareable)
		p.requestedHandleTypes = CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR;
	return p;
}

/* cuMemCreate under `tag`, as the driver layer does it: the driver makes
 * it, the registry adopts it, the application gets memctl's value. */
static uint64_t create(const char *tag, size_t size)
{
	CUmemAllocationProp p = prop_of(0, 1);
	CUmemGenericAllocationHandle h;
	struct region_err err;
	uint64_t id;

	cr_assert(eq(int, drv.create(&h, size, &p, 0), CUDA_SUCCESS));
	cr_assert(eq(int, region_app_adopt(tag, 0, 0, size, &p, sizeof(p), (uint64_t)h, &id, &err), 0),
		  "%s", err.msg);
	cr_assert(not(eq(u64, id, (uint64_t)h)), "the application keeps memctl's value");
	return id;
}

static CUdeviceptr reserve(size_t size)
{
	CUdeviceptr va;

	cr_assert(eq(int, drv.reserve(&va, size, 0, 0, 0), CUDA_SUCCESS));
	return va;
}

/* Host memory runs out at each allocation that adopting a handle, then
 * mapping it, makes in turn (the record and its handle's data, the
 * registry's hash; the mapping, the hash of mappings): each fails with
 * ENOMEM and leaves nothing of memctl's behind, the handle the caller's
 * and no mapping. A full hash used to go unnoticed: the handle looked
 * adopted but was in no table (uthash's own handler would have exited). */
Test(app, a_handle_or_mapping_the_registry_cannot_record_fails_and_leaks_nothing)
{
	CUmemAllocationProp p = prop_of(0, 0);
	CUmemGenericAllocationHandle h;
	CUdeviceptr va = reserve(GRAN);
	struct region_err err;
	uint64_t id = 0;
	int k, rc = -ENOMEM;

	for (k = 0; rc == -ENOMEM; k++) {
		cr_assert(eq(int, drv.create(&h, GRAN, &p, 0), CUDA_SUCCESS));
		__atomic_store_n(&allocs_left, k, __ATOMIC_RELEASE);
		rc = region_app_adopt("weights", 0, 0, GRAN, &p, sizeof(p), (uint64_t)h, &id, &err);
		__atomic_store_n(&allocs_left, -1, __ATOMIC_RELEASE);
		if (rc == 0)
			break;
		cr_assert(eq(int, rc, -ENOMEM), "allocation %d failed: %s", k, err.msg);
		cr_assert(eq(u64, region_app_count(), 0));
		cr_assert(eq(u64, region_count(), 0));
		cr_assert(eq(int, drv.release(h), CUDA_SUCCESS),
			  "the handle is still the caller's");
	}
	cr_assert(ge(int, k, 3), "the record, its data and the hash were all failed");
	for (k = 0, rc = -ENOMEM; rc == -ENOMEM; k++) {
		__atomic_store_n(&allocs_left, k, __ATOMIC_RELEASE);
		rc = region_app_map(id, va, GRAN, 0);
		__atomic_store_n(&allocs_left, -1, __ATOMIC_RELEASE);
		if (rc == 0)
			break;
		cr_assert(eq(int, rc, -ENOMEM), "allocation %d", k);
		cr_assert(eq(long, fakecuda_live_mappings(), 0), "mapped though it failed");
	}
	cr_assert(ge(int, k, 2), "the mapping and the hash were both failed");
	cr_assert(eq(long, fakecuda_live_mappings(), 1));
	cr_assert(eq(int, region_app_unmap(va, GRAN), 0));
	cr_assert(eq(int, region_app_release(id), 0));
	cr_assert(eq(int, drv.unreserve(va, GRAN), CUDA_SUCCESS));
	cr_assert(eq(long, fakecuda_live_handles(), 0));
	cr_assert(eq(u64, region_app_count(), 0));
}

static void grant(uint64_t va, size_t size, int dev)
{
	struct region_access acc = { CU_MEM_LOCATION_TYPE_DEVICE, dev,
				     CU_MEM_ACCESS_FLAGS_PROT_READWRITE };

	cr_assert(eq(int, region_app_set_access(va, size, &acc, 1), 0));
}

static unsigned long long access_of(uint64_t va, int dev)
{
	CUmemLocation loc = { .type = CU_MEM_LOCATION_TYPE_DEVICE, .id = dev };
	unsigned long long flags = 99;

	if (drv.get_access(&flags, &loc, (CUdeviceptr)va) != CUDA_SUCCESS)
		return 99;
	return flags;
}

static int request(int (*fn)(const struct region_req *, struct region_report *,
			     struct region_err *), const char *tags, unsigned flags,
		   struct region_report *rep)
{
	struct region_req rq = { .flags = flags };
	struct region_report scratch;
	struct region_err err = { 0, "" };
	int rc;

	cr_assert(eq(int, tagset_parse(tags, &rq.tags, &err), 0));
	rc = fn(&rq, rep != NULL ? rep : &scratch, &err);
	if (rc < 0)
		cr_log_info("%s", err.msg);
	return rc;
}

/* A segment like PyTorch's: handles of 2, 4 and 2 MiB side by side at
 * the start of a 64 MiB reservation, access granted over all three in
 * one call. */
struct segment {
	CUdeviceptr base;
	uint64_t id[3];
	size_t size[3];
	uint64_t at[3];
};

static struct segment segment(const char *tag)
{
	struct segment s = { .size = { GRAN, 2 * GRAN, GRAN } };
	size_t off = 0;
	int i;

	s.base = reserve(64 * MiB);
	for (i = 0; i < 3; i++) {
		s.id[i] = create(tag, s.size[i]);
		s.at[i] = s.base + off;
		cr_assert(eq(int, region_app_map(s.id[i], s.at[i], s.size[i], 0), 0));
		off += s.size[i];
	}
	grant(s.base, off, 0);
	for (i = 0; i < 3; i++)
		fill(s.at[i], s.size[i], 10u + (unsigned)i);
	return s;
}

/* Nothing left anywhere: the registry and the driver hold nothing. */
static void nothing_left(void)
{
	struct region_census c;

	region_census(&c);
	cr_assert(eq(u64, c.allocations + c.handles + c.mappings + c.unfinished_frees, 0));
	cr_assert(eq(long, fakecuda_live_handles(), 0));
	cr_assert(eq(long, fakecuda_live_mappings(), 0));
	cr_assert(eq(u64, fakecuda_used(), 0));
	cr_assert(eq(u64, region_app_count(), 0));
}

Test(app, a_segment_of_three_handles_pauses_and_resumes_bit_identical_with_the_same_access)
{
	struct segment s = segment("w");
	struct region_report rep;
	CUmemAllocationProp p;
	int i;

	cr_assert(eq(u64, fakecuda_used(), 8 * MiB));
	cr_assert(eq(int, request(region_pause, "w", MEMCTL_STAGE_CPU, &rep), 0));
	cr_assert(eq(u64, rep.allocations, 3));
	cr_assert(eq(u64, rep.device_bytes, 8 * MiB));
	cr_assert(eq(u64, fakecuda_used(), 0), "the physical memory is given back");
	cr_assert(eq(long, fakecuda_live_handles(), 0));
	for (i = 0; i < 3; i++) {
		cr_assert(faults(s.at[i]));
		/* Answered from the record while the real handle is gone. */
		cr_assert(eq(int, region_app_props(s.id[i], &p, sizeof(p)), 0));
		cr_assert(eq(int, p.requestedHandleTypes, CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR));
	}
	cr_assert(eq(int, request(region_resume, "w", 0, &rep), 0));
	cr_assert(eq(u64, rep.allocations, 3));
	cr_assert(eq(u64, fakecuda_used(), 8 * MiB));
	for (i = 0; i < 3; i++) {
		cr_assert(same(s.at[i], s.size[i], 10u + (unsigned)i), "handle %d differs", i);
		cr_assert(eq(u64, access_of(s.at[i], 0), CU_MEM_ACCESS_FLAGS_PROT_READWRITE));
	}
	/* Ten more cycles: every byte survives each. */
	for (i = 0; i < 10; i++) {
		cr_assert(eq(int, request(region_pause, "w", MEMCTL_STAGE_CPU, NULL), 0));
		cr_assert(eq(int, request(region_resume, "w", 0, NULL), 0));
	}
	for (i = 0; i < 3; i++)
		cr_assert(same(s.at[i], s.size[i], 10u + (unsigned)i));
	for (i = 0; i < 3; i++) {
		cr_assert(eq(int, region_app_unmap(s.at[i], s.size[i]), 0));
		cr_assert(eq(int, region_app_release(s.id[i]), 0));
	}
	cr_assert(eq(int, drv.unreserve(s.base, 64 * MiB), CUDA_SUCCESS));
	nothing_left();
}

/* The orders an application may give its memory back in. */
enum order {
	UNMAP_EACH_THEN_RELEASE, /* PyTorch: unmap a handle, release it, next */
	RELEASE_THEN_UNMAP_ALL,  /* release every handle while mapped, one unmap over all */
	UNMAP_ALL_THEN_RELEASE,  /* one unmap over all, then the releases */
	RELEASE_LAST_FIRST,      /* each handle unmapped, released in reverse */
	ORDERS
};

static const char *const order_names[ORDERS] = {
	"unmap each then release", "release then one unmap", "one unmap then release",
	"release in reverse",
};

static void give_back(struct segment *s, enum order o)
{
	int i;

	switch (o) {
	case UNMAP_EACH_THEN_RELEASE:
		for (i = 0; i < 3; i++) {
			cr_assert(eq(int, region_app_unmap(s->at[i], s->size[i]), 0));
			cr_assert(eq(int, region_app_release(s->id[i]), 0));
		}
		break;
	case RELEASE_THEN_UNMAP_ALL:
		for (i = 0; i < 3; i++)
			cr_assert(eq(int, region_app_release(s->id[i]), 0));
		cr_assert(eq(int, region_app_unmap(s->base, 8 * MiB), 0));
		break;
	case UNMAP_ALL_THEN_RELEASE:
		cr_assert(eq(int, region_app_unmap(s->base, 8 * MiB), 0));
		for (i = 0; i < 3; i++)
			cr_assert(eq(int, region_app_release(s->id[i]), 0));
		break;
	default:
		for (i = 0; i < 3; i++)
			cr_assert(eq(int, region_app_unmap(s->at[i], s->size[i]), 0));
		for (i = 2; i >= 0; i--)
			cr_assert(eq(int, region_app_release(s->id[i]), 0));
		break;
	}
	cr_assert(eq(int, drv.unreserve(s->base, 64 * MiB), CUDA_SUCCESS));
}

/* 0 active, 1 paused, 2 staged, 3 resumed after staging. */
Test(app, every_order_of_giving_memory_back_works_in_every_state_and_leaks_nothing)
{
	static const char *const states[] = { "active", "paused", "staged", "resumed" };
	int o, st;

	for (o = 0; o < ORDERS; o++) {
		for (st = 0; st < 4; st++) {
			struct segment s = segment("w");

			if (st == 1)
				cr_assert(eq(int, request(region_pause, "w", 0, NULL), 0));
			if (st >= 2)
				cr_assert(eq(int, request(region_pause, "w", MEMCTL_STAGE_CPU,
							  NULL), 0));
			if (st == 3)
				cr_assert(eq(int, request(region_resume, "w", 0, NULL), 0));
			give_back(&s, (enum order)o);
			cr_log_info("%s, %s: nothing left", order_names[o], states[st]);
			nothing_left();
		}
	}
}

Test(app, part_of_a_paused_mapping_cannot_be_unmapped)
{
	struct segment s = segment("w");

	cr_assert(eq(int, request(region_pause, "w", 0, NULL), 0));
	cr_assert(eq(int, region_app_unmap(s.at[1], GRAN), -EINVAL));
	cr_assert(eq(int, region_app_unmap(s.at[0], 3 * MiB), -EINVAL));
	/* Nothing of memctl's there: the driver's to answer. */
	cr_assert(eq(int, region_app_unmap(s.base + 32 * MiB, GRAN), -ENOENT));
	give_back(&s, UNMAP_EACH_THEN_RELEASE);
	nothing_left();
}

Test(app, a_range_with_untagged_and_paused_mappings_is_unmapped_in_the_drivers_pieces)
{
	CUmemAllocationProp p = prop_of(0, 0);
	CUmemGenericAllocationHandle mine;
	CUmemAccessDesc acc = { .location = { CU_MEM_LOCATION_TYPE_DEVICE, 0 },
				.flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE };
	struct segment s = segment("w");
	uint64_t untagged = s.base + 8 * MiB, last;

	/* An untagged handle after the segment, then a tagged one after it. */
	cr_assert(eq(int, drv.create(&mine, GRAN, &p, 0), CUDA_SUCCESS));
	cr_assert(eq(int, drv.map(untagged, GRAN, 0, mine, 0), CUDA_SUCCESS));
	cr_assert(eq(int, drv.access(untagged, GRAN, &acc, 1), CUDA_SUCCESS));
	last = create("w", GRAN);
	cr_assert(eq(int, region_app_map(last, untagged + GRAN, GRAN, 0), 0));
	grant(untagged + GRAN, GRAN, 0);
	fill(untagged, GRAN, 5);
	cr_assert(eq(int, request(region_pause, "w", MEMCTL_STAGE_CPU, NULL), 0));
	cr_assert(same(untagged, GRAN, 5), "untagged memory is left alone");
	cr_assert(eq(long, fakecuda_live_mappings(), 1));
	/* One unmap over all five mappings: the driver gets the one it holds. */
	cr_assert(eq(int, region_app_unmap(s.base, 12 * MiB), 0));
	cr_assert(eq(long, fakecuda_live_mappings(), 0));
	cr_assert(eq(int, drv.release(mine), CUDA_SUCCESS));
	cr_assert(eq(int, region_app_release(last), 0));
	for (int i = 0; i < 3; i++)
		cr_assert(eq(int, region_app_release(s.id[i]), 0));
	cr_assert(eq(int, drv.unreserve(s.base, 64 * MiB), CUDA_SUCCESS));
	nothing_left();
}

Test(app, freeing_the_reservation_forgets_paused_mappings_and_the_last_release_frees_the_rest)
{
	struct segment s = segment("w");
	int i;

	cr_assert(eq(int, request(region_pause, "w", MEMCTL_STAGE_CPU, NULL), 0));
	/* The driver holds nothing in it now: it frees the reservation. */
	cr_assert(eq(int, region_app_address_free(s.base, 64 * MiB), 0));
	cr_assert(eq(long, fakecuda_live_reservations(), 0));
	for (i = 0; i < 3; i++)
		cr_assert(eq(int, region_app_release(s.id[i]), 0));
	nothing_left();
}

Test(app, an_active_mapping_keeps_its_reservation_as_the_driver_says)
{
	struct segment s = segment("w");

	cr_assert(eq(int, region_app_address_free(s.base, 64 * MiB), -EINVAL));
	cr_assert(eq(long, fakecuda_live_reservations(), 1));
	give_back(&s, UNMAP_ALL_THEN_RELEASE);
	nothing_left();
}

TestSuite(app2, .init = two_devices, .fini = fixture_teardown, .timeout = 30);

Test(app2, access_granted_while_paused_is_recorded_and_given_at_resume)
{
	struct segment s = segment("w");
	int i;

	cr_assert(eq(int, request(region_pause, "w", MEMCTL_STAGE_CPU, NULL), 0));
	/* A peer gets access, as PyTorch's enablePeerAccess does: recorded. */
	grant(s.base, 8 * MiB, 1);
	cr_assert(eq(int, request(region_resume, "w", 0, NULL), 0));
	for (i = 0; i < 3; i++) {
		cr_assert(eq(u64, access_of(s.at[i], 0), CU_MEM_ACCESS_FLAGS_PROT_READWRITE));
		cr_assert(eq(u64, access_of(s.at[i], 1), CU_MEM_ACCESS_FLAGS_PROT_READWRITE));
		cr_assert(same(s.at[i], s.size[i], 10u + (unsigned)i));
	}
	give_back(&s, RELEASE_THEN_UNMAP_ALL);
	nothing_left();
}

Test(app, a_retained_handle_is_memctls_value_and_needs_its_own_release)
{
	struct segment s = segment("w");
	uint64_t id = 0;

	cr_assert(eq(int, request(region_pause, "w", 0, NULL), 0));
	cr_assert(eq(int, region_app_retain(s.at[1] + 12345, &id), 0));
	cr_assert(eq(u64, id, s.id[1]), "the same value the application mapped");
	give_back(&s, UNMAP_EACH_THEN_RELEASE);
	cr_assert(eq(u64, region_app_count(), 1), "one reference still held");
	cr_assert(eq(int, region_app_release(id), 0));
	nothing_left();
	cr_assert(eq(int, region_app_retain(s.at[1], &id), -ENOENT));
}

Test(app, an_exported_handle_stays_resident_and_a_paused_one_is_not_exported)
{
	struct segment s = segment("w");
	struct region_tag_stat *rows;
	struct region_report rep;
	uint64_t real = 0;
	size_t n;
	int fd = -1;

	cr_assert(eq(int, region_app_pin(s.id[0], &real), 1));
	cr_assert(eq(int, drv.export_fd(&fd, (CUmemGenericAllocationHandle)real,
				       CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR, 0), CUDA_SUCCESS));
	close(fd);
	cr_assert(eq(int, region_app_pin(s.id[0], &real), 0), "already resident");
	cr_assert(eq(int, request(region_pause, "w", MEMCTL_STAGE_CPU, &rep), 0));
	cr_assert(eq(u64, rep.allocations, 2));
	cr_assert(eq(u64, fakecuda_used(), GRAN), "the exported handle stays");
	cr_assert(same(s.at[0], s.size[0], 10));
	cr_assert(eq(int, region_tag_stats(&rows, &n), 0));
	cr_assert(eq(u64, rows[0].resident_bytes, GRAN));
	cr_assert(eq(u64, rows[0].active_bytes, GRAN));
	free(rows);
	cr_assert(eq(int, region_app_pin(s.id[1], &real), -EBUSY), "paused: no memory to export");
	cr_assert(eq(int, request(region_resume, "w", 0, NULL), 0));
	give_back(&s, UNMAP_EACH_THEN_RELEASE);
	nothing_left();
}

Test(app, handles_not_mapped_whole_with_access_are_left_as_they_are)
{
	CUdeviceptr base = reserve(16 * MiB);
	uint64_t bare = create("w", GRAN), half = create("w", 2 * GRAN),
		 blind = create("w", GRAN);
	struct region_report rep;

	/* bare: mapped nowhere; half: only its first half mapped; blind:
	 * mapped without access yet. None can be staged through a mapping. */
	cr_assert(eq(int, region_app_map(half, base, GRAN, 0), 0));
	grant(base, GRAN, 0);
	cr_assert(eq(int, region_app_map(blind, base + 4 * MiB, GRAN, 0), 0));
	cr_assert(eq(int, request(region_pause, "w", MEMCTL_STAGE_CPU, &rep), 0));
	cr_assert(eq(u64, rep.allocations, 0));
	cr_assert(eq(u64, fakecuda_used(), 8 * MiB), "all three stay");
	cr_assert(eq(int, region_app_unmap(base, GRAN), 0));
	cr_assert(eq(int, region_app_unmap(base + 4 * MiB, GRAN), 0));
	cr_assert(eq(int, region_app_release(bare), 0));
	cr_assert(eq(int, region_app_release(half), 0));
	cr_assert(eq(int, region_app_release(blind), 0));
	cr_assert(eq(int, drv.unreserve(base, 16 * MiB), CUDA_SUCCESS));
	nothing_left();
}

Test(app, a_handle_mapped_again_while_paused_is_mapped_there_by_the_resume)
{
	struct segment s = segment("w");

	cr_assert(eq(int, request(region_pause, "w", MEMCTL_STAGE_CPU, NULL), 0));
	/* Moved, as an allocator compacting its segment might. */
	cr_assert(eq(int, region_app_unmap(s.at[2], GRAN), 0));
	cr_assert(eq(int, region_app_map(s.id[2], s.base + 32 * MiB, GRAN, 0), 0));
	grant(s.base + 32 * MiB, GRAN, 0);
	cr_assert(faults(s.base + 32 * MiB));
	cr_assert(eq(int, request(region_resume, "w", 0, NULL), 0));
	cr_assert(same(s.base + 32 * MiB, GRAN, 12), "its contents followed it");
	s.at[2] = s.base + 32 * MiB;
	give_back(&s, UNMAP_EACH_THEN_RELEASE);
	nothing_left();
}

Test(app, handle_values_are_never_addresses_cudaFree_takes)
{
	struct segment s = segment("w");

	cr_assert(eq(int, region_free(s.id[0]), -ENOENT));
	cr_assert(eq(int, region_app_release(s.at[0]), -ENOENT));
	give_back(&s, UNMAP_EACH_THEN_RELEASE);
	nothing_left();
}

struct pause_arg {
	int rc;
};

static void *pause_thread(void *arg)
{
	struct pause_arg *pa = arg;

	pa->rc = request(region_pause, "w", 0, NULL);
	return NULL;
}

Test(app, a_handle_the_application_unmaps_while_a_pause_runs_is_recorded_as_it_is)
{
	struct segment s = segment("w");
	struct pause_arg pa = { -1 };
	struct memctl_stat st;
	struct tagset ts;
	struct region_err err;
	pthread_t t;

	/* The pause has chosen its handles and waits for the device; the
	 * application unmaps one of them everywhere meanwhile. */
	fakecuda_hold("cuCtxSynchronize");
	cr_assert(eq(int, pthread_create(&t, NULL, pause_thread, &pa), 0));
	while (fakecuda_held("cuCtxSynchronize") == 0)
		usleep(1000);
	cr_assert(eq(int, region_app_unmap(s.at[2], s.size[2]), 0));
	fakecuda_unhold();
	pthread_join(t, NULL);
	cr_assert(eq(int, pa.rc, 0));
	/* Its memory went too, and the record says so: nothing is called
	 * active that holds no memory. */
	cr_assert(eq(u64, fakecuda_used(), 0));
	cr_assert(eq(int, tagset_parse("w", &ts, &err), 0));
	cr_assert(eq(int, region_stat(&ts, &st), 0));
	cr_assert(eq(u64, st.active_bytes, 0));
	cr_assert(eq(u64, st.paused_bytes, 8 * MiB));
	/* Mapped again, it comes back with the resume, with memory. */
	cr_assert(eq(int, region_app_map(s.id[2], s.at[2], s.size[2], 0), 0));
	grant(s.at[2], s.size[2], 0);
	cr_assert(eq(int, request(region_resume, "w", 0, NULL), 0));
	cr_assert(eq(u64, fakecuda_used(), 8 * MiB));
	fill(s.at[2], s.size[2], 1);
	give_back(&s, UNMAP_EACH_THEN_RELEASE);
	nothing_left();
}

Test(app, memory_bound_by_address_stays_resident_whatever_made_it)
{
	struct segment s = segment("w");
	struct region_report rep;
	struct region_err err;
	uint64_t own = 0;

	cr_assert(eq(int, region_alloc("w", 0, 0, 3 * MiB, &own, &err), 0), "%s", err.msg);
	cr_assert(eq(int, region_pin_addr(own + 5), 1));
	cr_assert(eq(int, region_pin_addr(s.at[1] + 7), 1));
	cr_assert(eq(int, region_pin_addr(s.at[1]), 0), "already");
	cr_assert(eq(int, region_pin_addr(s.base + 48 * MiB), -ENOENT));
	cr_assert(eq(int, request(region_pause, "w", MEMCTL_STAGE_CPU, &rep), 0));
	cr_assert(eq(u64, rep.allocations, 2), "handles 0 and 2 only");
	cr_assert(eq(u64, fakecuda_used(), 4 * MiB + 4 * MiB));
	cr_assert(eq(int, region_pin_addr(s.at[0]), -EBUSY), "paused: nothing to bind");
	cr_assert(eq(int, request(region_resume, "w", 0, NULL), 0));
	cr_assert(eq(int, region_free(own), 0));
	give_back(&s, UNMAP_EACH_THEN_RELEASE);
	nothing_left();
}
