/* SPDX-License-Identifier: Apache-2.0 */
/*
 * test_slab.c - small tagged allocations carved out of slabs (MEMCTL_SLAB,
 * region/slab.c), on the simulated driver: they share mappings, keep
 * their bytes across a staged pause, are freed one by one with the slab
 * going when the last one goes, and never land in memory a pause is
 * taking away.
 */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>
#include <errno.h>

#define FAILALLOC_REALLOC
#include "failalloc.h"
#include "fixture.h"
#include "heldreq.h"

#define MiB (1ull << 20)
#define SLAB (16 * MiB) /* 8 granules of 2 MiB: at most 4 MiB is carved */

static void slab_setup(void)
{
	struct region_opts ro = { .chunk_bytes = 1 << 20, .streams = 3, .pin_threads = 4,
				  .hugepages = 1, .slab_bytes = SLAB };

	fixture_setup();
	region_init(drv_cuda_load(), &ro);
}

TestSuite(slab, .init = slab_setup, .fini = fixture_teardown, .timeout = 30);

static uint64_t alloc_flags(const char *tag, unsigned flags, size_t size)
{
	struct region_err err;
	uint64_t va = 0;

	cr_assert(eq(int, region_alloc(tag, flags, 0, size, &va, &err), 0), "%s", err.msg);
	return va;
}

static uint64_t alloc(const char *tag, size_t size)
{
	return alloc_flags(tag, 0, size);
}

static int pause_tag(const char *tag, unsigned flags)
{
	struct region_report rep;
	struct region_err err;
	struct tagset ts;

	cr_assert(eq(int, tagset_parse(tag, &ts, &err), 0));
	return region_pause(&(struct region_req){ .tags = ts, .flags = flags }, &rep, &err);
}

static int resume_tag(const char *tag)
{
	struct region_report rep;
	struct region_err err;
	struct tagset ts;

	cr_assert(eq(int, tagset_parse(tag, &ts, &err), 0));
	return region_resume(&(struct region_req){ .tags = ts }, &rep, &err);
}

Test(slab, small_allocations_share_one_mapping)
{
	uint64_t before = fakecuda_used(), va[6];
	int i;

	for (i = 0; i < 6; i++)
		va[i] = alloc("w", i == 5 ? 3 * MiB : MiB);
	/* 5 granules + 2 granules of one 16 MiB slab: one handle. */
	cr_assert(eq(u64, fakecuda_used() - before, SLAB));
	cr_assert(eq(long, fakecuda_live_handles(), 1));
	for (i = 0; i < 6; i++) {
		cr_assert(eq(u64, va[i] % (2 * MiB), 0));
		cr_assert(eq(u64, va[i] - va[0], (uint64_t)i * 2 * MiB), "allocation %d", i);
		fill(va[i], i == 5 ? 3 * MiB : MiB, 10 + i);
	}
	for (i = 0; i < 6; i++)
		cr_assert(same(va[i], i == 5 ? 3 * MiB : MiB, 10 + i), "%d", i);
	cr_assert(eq(int, region_owns(va[3]), 1));
}

Test(slab, a_staged_pause_releases_the_slabs_and_a_resume_restores_every_byte)
{
	uint64_t before = fakecuda_used(), va[12];
	int i;

	for (i = 0; i < 12; i++) { /* 8 per slab: two slabs */
		va[i] = alloc("w", 2 * MiB);
		fill(va[i], 2 * MiB, 40 + i);
	}
	cr_assert(eq(u64, fakecuda_used() - before, 2 * SLAB));
	cr_assert(eq(int, pause_tag("w", MEMCTL_STAGE_CPU), 0));
	cr_assert(eq(u64, fakecuda_used(), before));
	cr_assert(eq(long, fakecuda_live_handles(), 0));
	cr_assert(eq(int, resume_tag("w"), 0));
	for (i = 0; i < 12; i++)
		cr_assert(same(va[i], 2 * MiB, 40 + i), "allocation %d", i);
}

Test(slab, the_last_free_of_a_slab_frees_it_and_a_second_free_is_refused)
{
	uint64_t before = fakecuda_used(), a, b;

	a = alloc("w", MiB);
	b = alloc("w", MiB);
	cr_assert(eq(int, region_free(a), 0));
	cr_assert(eq(u64, fakecuda_used() - before, SLAB));
	fill(b, MiB, 3); /* still mapped */
	cr_assert(eq(int, region_free(a), -ENOENT));
	cr_assert(same(b, MiB, 3));
	cr_assert(eq(int, region_free(b), 0));
	cr_assert(eq(u64, fakecuda_used(), before));
	cr_assert(eq(long, fakecuda_live_handles(), 0));
	cr_assert(eq(int, region_owns(b), 0));
}

/* The first allocation's address is the slab's own: freeing it must free
 * that allocation only, never the slab under the others. */
Test(slab, freeing_the_allocation_at_the_slabs_address_leaves_the_others)
{
	uint64_t before = fakecuda_used(), a, b, c;

	a = alloc("w", MiB);
	b = alloc("w", MiB);
	fill(b, MiB, 5);
	cr_assert(eq(int, region_free(a), 0));
	cr_assert(eq(u64, fakecuda_used() - before, SLAB));
	cr_assert(same(b, MiB, 5));
	c = alloc("w", MiB); /* the granule is carved again */
	cr_assert(eq(u64, c, a));
	cr_assert(eq(u64, fakecuda_used() - before, SLAB));
	cr_assert(eq(int, region_free(b), 0));
	cr_assert(eq(int, region_free(c), 0));
	cr_assert(eq(u64, fakecuda_used(), before));
}

Test(slab, nothing_is_carved_from_a_paused_slab)
{
	uint64_t before = fakecuda_used(), a, b;
	struct memctl_stat st;
	struct tagset ts;

	a = alloc("w", MiB);
	fill(a, MiB, 7);
	cr_assert(eq(int, pause_tag("w", MEMCTL_STAGE_CPU), 0));
	b = alloc("w", MiB); /* usable at once: a new slab */
	fill(b, MiB, 8);
	cr_assert(eq(u64, fakecuda_used() - before, SLAB));
	cr_assert(eq(int, tagset_parse("w", &ts, NULL), 0));
	cr_assert(eq(int, region_stat(&ts, &st), 0));
	cr_assert(eq(u64, st.allocations, 2)); /* slabs are counted */
	cr_assert(eq(u64, st.active_bytes, SLAB));
	cr_assert(eq(u64, st.paused_bytes, SLAB));
	cr_assert(eq(int, resume_tag("w"), 0));
	cr_assert(same(a, MiB, 7));
	cr_assert(same(b, MiB, 8));
}

Test(slab, tags_and_staging_flags_never_share_a_slab)
{
	uint64_t before = fakecuda_used(), a, b, c;

	a = alloc("a", MiB);
	b = alloc("b", MiB);
	c = alloc_flags("a", MEMCTL_REGION_STAGE_CPU, MiB);
	cr_assert(eq(u64, fakecuda_used() - before, 3 * SLAB));
	fill(b, MiB, 9);
	fill(c, MiB, 10);
	cr_assert(eq(int, pause_tag("a", 0), 0)); /* c is staged: its flag says so */
	cr_assert(same(b, MiB, 9));
	cr_assert(eq(int, resume_tag("a"), 0));
	cr_assert(same(c, MiB, 10));
	(void)a;
}

Test(slab, large_allocations_map_memory_of_their_own)
{
	uint64_t before = fakecuda_used(), va;

	va = alloc("w", 5 * MiB); /* more than a quarter of a slab */
	cr_assert(eq(u64, fakecuda_used() - before, 6 * MiB));
	cr_assert(eq(int, region_free(va), 0));
	cr_assert(eq(u64, fakecuda_used(), before));
}

/* The slab's memory cannot be had: the allocation gets memory of its own;
 * where that cannot be had either, it fails cleanly. */
Test(slab, a_slab_the_device_cannot_hold_fails_cleanly)
{
	uint64_t before = fakecuda_used(), va = 0, room = MiB;
	struct region_err err;

	fakecuda_set_fail("cuMemCreate:1:oom");
	cr_assert(eq(int, region_alloc("w", 0, 0, MiB, &va, &err), 0), "%s", err.msg);
	fakecuda_set_fail(NULL);
	cr_assert(eq(u64, fakecuda_used() - before, 2 * MiB)); /* not a slab */
	cr_assert(eq(int, region_free(va), 0));
	cr_assert(eq(int, fakecuda_tenant_take(fakecuda_capacity() - before - room), 0));
	cr_assert(eq(int, region_alloc("w", 0, 0, MiB, &va, &err), -ENOMEM));
	fakecuda_tenant_give(fakecuda_capacity() - before - room);
	cr_assert(eq(u64, fakecuda_used(), before));
	cr_assert(eq(long, fakecuda_live_handles(), 0));
	cr_assert(eq(long, fakecuda_live_reservations(), 0));
	va = alloc("w", MiB); /* and the next one works */
	cr_assert(eq(u64, fakecuda_used() - before, SLAB));
	cr_assert(eq(int, region_free(va), 0));
}

Test(slab, a_stream_ordered_free_of_a_carved_allocation)
{
	uint64_t before = fakecuda_used(), a, b;

	a = alloc("w", MiB);
	b = alloc("w", MiB);
	cr_assert(eq(int, region_free_async(a, NULL), 0));
	cr_assert(eq(int, region_owns(a), 0));
	cr_assert(eq(int, region_free_async(b, NULL), 0));
	cr_assert(eq(u64, fakecuda_used(), before));
}

/* ---- adversarial: review of slab.c ---------------------------------- */

/* Nothing left anywhere: the registry and the driver are empty. */
static void assert_all_gone(uint64_t before)
{
	struct region_census c;

	region_census(&c);
	cr_assert(eq(u64, c.allocations, 0));
	cr_assert(eq(u64, c.unfinished_frees, 0));
	cr_assert(eq(u64, c.host_buffers, 0));
	cr_assert(eq(u64, region_count(), 0));
	cr_assert(eq(u64, fakecuda_used(), before));
	cr_assert(eq(long, fakecuda_live_handles(), 0));
	cr_assert(eq(long, fakecuda_live_mappings(), 0));
	cr_assert(eq(long, fakecuda_live_reservations(), 0));
	cr_assert(eq(long, fakecuda_live_host_registrations(), 0));
}

Test(slab, freeing_every_allocation_of_a_paused_slab_frees_it)
{
	uint64_t before = fakecuda_used(), a, b;
	struct region_report rep;
	struct region_err err;
	struct tagset ts;

	a = alloc("w", MiB);
	b = alloc("w", 2 * MiB);
	cr_assert(eq(int, pause_tag("w", MEMCTL_STAGE_CPU), 0));
	cr_assert(eq(int, region_free(b), 0));
	assert_census_true();
	cr_assert(eq(int, region_free(a), 0));
	assert_all_gone(before);
	cr_assert(eq(int, tagset_parse("w", &ts, &err), 0));
	cr_assert(eq(int, region_resume(&(struct region_req){ .tags = ts }, &rep, &err), -ENOENT));
}

/* An interior address of a carved allocation, or the slab's address once
 * the allocation there is freed, is no allocation: refused, and nothing
 * else is touched. */
Test(slab, freeing_an_address_that_is_no_carved_allocation_touches_nothing)
{
	uint64_t a, b;

	a = alloc("w", MiB);
	b = alloc("w", MiB);
	fill(b, MiB, 4);
	cr_assert(eq(int, region_free(b + 4096), -ENOENT));
	cr_assert(eq(int, region_free_async(b + 4096, NULL), -ENOENT));
	cr_assert(eq(int, region_owns(b + 4096), 0));
	cr_assert(eq(int, region_free(a), 0));
	cr_assert(eq(int, region_free(a), -ENOENT));
	cr_assert(eq(int, region_free_async(a, NULL), -ENOENT));
	cr_assert(eq(int, region_owns(a), 0));
	cr_assert(same(b, MiB, 4));
	cr_assert(eq(int, region_free(b), 0));
}

/* A slab kept resident (a multicast binding of one of its allocations)
 * is never paused: a new allocation carved from it would never be
 * paused either, so it gets a slab of its own. */
Test(slab, nothing_is_carved_from_a_resident_slab)
{
	uint64_t before = fakecuda_used(), a, b;

	a = alloc("w", MiB);
	cr_assert(eq(int, region_pin_addr(a), 1));
	b = alloc("w", MiB);
	cr_assert(eq(u64, fakecuda_used() - before, 2 * SLAB));
	fill(b, MiB, 30);
	cr_assert(eq(int, pause_tag("w", MEMCTL_STAGE_CPU), 0));
	cr_assert(eq(u64, fakecuda_used() - before, SLAB)); /* b's slab released */
	cr_assert(eq(int, resume_tag("w"), 0));
	cr_assert(same(b, MiB, 30));
}

/* Staged contents read in place: a carved allocation's own bytes, not its
 * neighbour's, and nothing once it is freed. */
Test(slab, host_reads_of_a_carved_allocation_stay_inside_it)
{
	unsigned char buf[64];
	struct region_err err;
	uint64_t a, b;

	a = alloc("w", MiB);
	b = alloc("w", MiB);
	fill(a, MiB, 21);
	fill(b, MiB, 22);
	cr_assert(eq(int, pause_tag("w", MEMCTL_STAGE_CPU), 0));
	cr_assert(eq(int, region_host_copy(b + 16, sizeof(buf), buf, NULL, &err), 0), "%s",
		  err.msg);
	/* b's bytes at offset 16 */
	{
		unsigned char want[64];
		size_t i;

		for (i = 0; i < sizeof(want); i++)
			want[i] = (unsigned char)(((i + 16) * 2654435761u + 22) >> 7);
		cr_assert(eq(int, memcmp(buf, want, sizeof(buf)), 0));
	}
	/* Past the end of a (1 MiB asked) into its granule's tail and b. */
	cr_assert(eq(int, region_host_copy(a + MiB - 8, 64, buf, NULL, &err), -EINVAL), "%s",
		  err.msg);
	cr_assert(eq(int, region_free(a), 0));
	cr_assert(eq(int, region_host_copy(a, 64, buf, NULL, &err), -ENOENT), "%s", err.msg);
	cr_assert(eq(int, region_host_copy(a + 4096, 64, buf, NULL, &err), -ENOENT), "%s",
		  err.msg);
	cr_assert(eq(int, region_host_copy(b, 64, buf, NULL, &err), 0), "%s", err.msg);
}

/* A device with room for the allocation but not for a whole new slab:
 * the allocation is served with memory of its own, as without slabs. */
Test(slab, a_small_allocation_fits_where_a_new_slab_does_not)
{
	uint64_t before = fakecuda_used(), va = 0, room = 4 * MiB;
	struct region_err err;

	cr_assert(eq(int, fakecuda_tenant_take(fakecuda_capacity() - before - room), 0));
	cr_assert(eq(int, region_alloc("w", 0, 0, MiB, &va, &err), 0), "%s", err.msg);
	fill(va, MiB, 31);
	cr_assert(same(va, MiB, 31));
	cr_assert(eq(int, region_free(va), 0));
	fakecuda_tenant_give(fakecuda_capacity() - before - room);
	cr_assert(eq(u64, fakecuda_used(), before));
}

/* Slab sizes at the edges: fewer than 4 granules is off; more than 64
 * granules is taken as 64; a size between granules is rounded down. */
static void reinit(size_t slab)
{
	struct region_opts ro = { .chunk_bytes = 1 << 20, .streams = 3, .pin_threads = 4,
				  .hugepages = 1, .slab_bytes = slab };

	region_init(drv_cuda_load(), &ro);
}

Test(slab, slab_sizes_at_the_edges)
{
	uint64_t before = fakecuda_used(), a, b;

	reinit(7 * MiB); /* 3 granules: off */
	a = alloc("w", MiB);
	cr_assert(eq(u64, fakecuda_used() - before, 2 * MiB));
	cr_assert(eq(int, region_free(a), 0));

	reinit(17 * MiB + 5); /* 8 granules, 4 MiB carved at most */
	a = alloc("w", 4 * MiB);
	cr_assert(eq(u64, fakecuda_used() - before, 16 * MiB));
	b = alloc("w", 4 * MiB + 1);
	cr_assert(eq(u64, fakecuda_used() - before, 16 * MiB + 6 * MiB));
	cr_assert(eq(int, region_free(a), 0));
	cr_assert(eq(int, region_free(b), 0));
	cr_assert(eq(u64, fakecuda_used(), before));

	reinit(512 * MiB); /* 64 granules: 128 MiB slabs, 32 MiB carved at most */
	a = alloc("w", 32 * MiB);
	cr_assert(eq(u64, fakecuda_used() - before, 128 * MiB));
	b = alloc("w", 32 * MiB + 1);
	cr_assert(eq(u64, fakecuda_used() - before, 128 * MiB + 34 * MiB));
	cr_assert(eq(int, region_free(a), 0));
	cr_assert(eq(int, region_free(b), 0));
	assert_all_gone(before);
}

/* A child forgets the parent's slabs: none of its addresses is freed
 * there. */
Test(slab, a_forked_child_forgets_the_slabs)
{
	uint64_t a = alloc("w", MiB);
	pid_t pid;
	int st;

	pid = fork();
	if (pid == 0) {
		region_forget_all();
		_exit(region_free(a) == -ENOENT && region_owns(a) == 0 ? 0 : 1);
	}
	waitpid(pid, &st, 0);
	cr_assert(eq(int, WIFEXITED(st) ? WEXITSTATUS(st) : -WTERMSIG(st), 0));
	fill(a, MiB, 3);
	cr_assert(eq(int, region_free(a), 0));
}

/* ---- concurrency: application threads against requests ----------- */

#include <pthread.h>

struct hammer {
	pthread_t t;
	unsigned seed;
	int stop, rounds, bad;
};

/* Allocate and free small allocations as fast as possible: those of tag
 * "h" (never paused) are filled and checked, so two allocations handed
 * the same granules would show; those of tag "w" (paused and resumed
 * meanwhile) are only allocated and freed, some in stream order. */
static void *hammer_main(void *arg)
{
	struct hammer *h = arg;
	struct region_err err;
	uint64_t hv[4] = { 0 }, wv[4] = { 0 }, va;
	unsigned r = h->seed;
	int i, k;

	while (!__atomic_load_n(&h->stop, __ATOMIC_ACQUIRE) || h->rounds < 50) {
		r = r * 1103515245u + 12345u;
		k = (int)((r >> 8) % 4);
		if (hv[k] != 0) {
			if (!same(hv[k], 64 * 1024, h->seed + (unsigned)k))
				h->bad++;
			if (region_free(hv[k]) != 0)
				h->bad++;
			hv[k] = 0;
		} else if (region_alloc("h", 0, 0, ((r >> 12) % 4 + 1) * MiB / 2, &va, &err) == 0) {
			hv[k] = va;
			fill(va, 64 * 1024, h->seed + (unsigned)k);
		} else {
			h->bad++;
		}
		if (wv[k] != 0) {
			if ((r >> 20) % 2 ? region_free(wv[k]) : region_free_async(wv[k], NULL))
				h->bad++;
			wv[k] = 0;
		} else if (region_alloc("w", 0, 0, ((r >> 14) % 4 + 1) * MiB, &va, &err) == 0) {
			wv[k] = va;
		} else {
			h->bad++;
		}
		h->rounds++;
	}
	for (i = 0; i < 4; i++) {
		if (hv[i] != 0 && (!same(hv[i], 64 * 1024, h->seed + (unsigned)i) ||
				   region_free(hv[i]) != 0))
			h->bad++;
		if (wv[i] != 0 && region_free(wv[i]) != 0)
			h->bad++;
	}
	return NULL;
}

static int request_tag(int which, const char *tag)
{
	struct region_report rep;
	struct region_err err;
	struct tagset ts;
	struct region_req rq = { 0 };

	cr_assert(eq(int, tagset_parse(tag, &ts, &err), 0));
	rq.tags = ts;
	switch (which) {
	case 0:
		rq.flags = MEMCTL_STAGE_CPU;
		return region_pause(&rq, &rep, &err);
	case 1:
		return region_resume(&rq, &rep, &err);
	case 2:
		return region_prepare(&rq, &rep, &err);
	default:
		return region_release_host(&rq, &rep, &err);
	}
}

Test(slab, threads_allocating_and_freeing_while_requests_run, .timeout = 120)
{
	uint64_t before = fakecuda_used(), keep[6];
	struct hammer h[3];
	int i, cycle;

	for (i = 0; i < 6; i++) {
		keep[i] = alloc("w", (size_t)(i % 3 + 1) * MiB);
		fill(keep[i], (size_t)(i % 3 + 1) * MiB, 60 + i);
	}
	for (i = 0; i < 3; i++) {
		memset(&h[i], 0, sizeof(h[i]));
		h[i].seed = 1000u * (unsigned)(i + 1);
		cr_assert(eq(int, pthread_create(&h[i].t, NULL, hammer_main, &h[i]), 0));
	}
	for (cycle = 0; cycle < 20; cycle++) {
		int rc;

		(void)request_tag(2, "w");
		rc = request_tag(0, "w");
		cr_assert(eq(int, rc, 0), "pause %d", cycle);
		rc = request_tag(1, "w");
		cr_assert(eq(int, rc, 0), "resume %d", cycle);
		for (i = 0; i < 6; i++)
			cr_assert(same(keep[i], (size_t)(i % 3 + 1) * MiB, 60 + i),
				  "cycle %d allocation %d", cycle, i);
		(void)request_tag(3, "w");
	}
	for (i = 0; i < 3; i++) {
		__atomic_store_n(&h[i].stop, 1, __ATOMIC_RELEASE);
		pthread_join(h[i].t, NULL);
		cr_assert(eq(int, h[i].bad, 0), "thread %d", i);
	}
	for (i = 0; i < 6; i++)
		cr_assert(eq(int, region_free(keep[i]), 0));
	assert_all_gone(before);
}

/* ---- requests held open at known points ---------------------------- */

#define NP 6
static uint64_t pva[NP];

/* Six carved allocations of tag w, one slab, filled. */
static void six_filled(void)
{
	int i;

	for (i = 0; i < NP; i++) {
		pva[i] = alloc("w", MiB);
		fill(pva[i], MiB, 70 + (unsigned)i);
	}
}

static void assert_six_intact_but(unsigned gone)
{
	int i;

	for (i = 0; i < NP; i++)
		if (!(gone & (1u << i)))
			cr_assert(same(pva[i], MiB, 70 + (unsigned)i), "allocation %d", i);
}

Test(slab, freeing_carved_allocations_while_their_slab_is_being_staged)
{
	uint64_t before = fakecuda_used(), va;
	struct bg b;
	int i;

	six_filled();
	fakecuda_hold("cuMemHostRegister");
	bg_start(&b, region_pause, "w", MEMCTL_STAGE_CPU);
	wait_held("cuMemHostRegister");
	cr_assert(eq(int, region_free(pva[0]), 0));
	cr_assert(eq(int, region_free_async(pva[3], NULL), 0));
	va = alloc("w", MiB); /* the slab is claimed: a new one */
	cr_assert(not(eq(u64, va, pva[0])));
	fill(va, MiB, 99);
	fakecuda_unhold();
	cr_assert(eq(int, bg_join(&b), 0), "%s", b.err.msg);
	cr_assert(same(va, MiB, 99)); /* not paused by the running pause */
	assert_census_true();
	cr_assert(eq(int, resume_tag("w"), 0));
	assert_six_intact_but(1u << 0 | 1u << 3);
	cr_assert(eq(int, region_free(va), 0));
	for (i = 0; i < NP; i++)
		if (i != 0 && i != 3)
			cr_assert(eq(int, region_free(pva[i]), 0));
	assert_all_gone(before);
}

Test(slab, freeing_every_carved_allocation_while_their_slab_is_being_staged)
{
	uint64_t before = fakecuda_used();
	struct bg b;
	int i;

	six_filled();
	fakecuda_hold("cuMemHostRegister");
	bg_start(&b, region_pause, "w", MEMCTL_STAGE_CPU);
	wait_held("cuMemHostRegister");
	for (i = 0; i < NP; i++)
		cr_assert(eq(int, region_free(pva[i]), 0));
	fakecuda_unhold();
	(void)bg_join(&b);
	assert_all_gone(before);
}

Test(slab, freeing_carved_allocations_while_their_slab_is_copied_back)
{
	uint64_t before = fakecuda_used();
	struct bg b;
	int i;

	six_filled();
	cr_assert(eq(int, pause_tag("w", MEMCTL_STAGE_CPU), 0));
	fakecuda_hold("cuStreamSynchronize");
	bg_start(&b, region_resume, "w", 0);
	wait_held("cuStreamSynchronize");
	cr_assert(eq(int, region_free(pva[2]), 0));
	cr_assert(eq(long, fakecuda_violations(), 0));
	fakecuda_unhold();
	cr_assert(eq(int, bg_join(&b), 0), "%s", b.err.msg);
	assert_six_intact_but(1u << 2);
	/* freed granules are carved again, once the slab is active */
	cr_assert(eq(u64, alloc("w", MiB), pva[2]));
	cr_assert(eq(int, region_free(pva[2]), 0));
	for (i = 0; i < NP; i++)
		if (i != 2)
			cr_assert(eq(int, region_free(pva[i]), 0));
	assert_all_gone(before);
}

Test(slab, a_staged_pause_cancelled_while_pinning_keeps_every_byte)
{
	uint64_t used;
	struct bg b;

	six_filled();
	used = fakecuda_used();
	fakecuda_hold("cuMemHostRegister");
	bg_start(&b, region_pause, "w", MEMCTL_STAGE_CPU);
	wait_held("cuMemHostRegister");
	bg_cancel(&b);
	fakecuda_unhold();
	cr_assert(eq(int, bg_join(&b), -ECANCELED), "%s", b.err.msg);
	cr_assert(eq(u64, fakecuda_used(), used));
	cr_assert(eq(long, fakecuda_live_host_registrations(), 0));
	assert_census_true();
	assert_six_intact_but(0);
	cr_assert(eq(int, region_free(pva[1]), 0));
	cr_assert(eq(u64, alloc("w", MiB), pva[1])); /* still carved from */
}

Test(slab, a_pause_past_its_deadline_in_the_release_phase_maps_the_slab_back)
{
	struct region_census c;
	struct bg b;
	int i;

	for (i = 0; i < NP; i++) { /* three slabs */
		pva[i] = alloc("w", 4 * MiB);
		fill(pva[i], 4 * MiB, 80 + (unsigned)i);
	}
	fakecuda_hold("cuEventSynchronize");
	bg_start(&b, region_pause, "w", MEMCTL_STAGE_CPU);
	wait_held("cuEventSynchronize");
	bg_cancel(&b);
	fakecuda_unhold();
	cr_assert(eq(int, bg_join(&b), -ECANCELED), "%s", b.err.msg);
	assert_census_true();
	region_census(&c);
	cr_assert(eq(u64, c.leftovers, 0));
	for (i = 0; i < NP; i++)
		cr_assert(same(pva[i], 4 * MiB, 80 + (unsigned)i), "allocation %d", i);
	cr_assert(eq(u64, alloc("w", MiB), pva[5] + 4 * MiB)); /* still carved from */
}

/* Host memory runs out at each allocation a new slab makes in turn (its
 * record, the registry's hash, the list of slabs, the carved allocation's
 * record, the hash of those): it fails cleanly, leaving nothing behind. */
Test(slab, a_slab_that_cannot_be_recorded_fails_and_leaks_nothing)
{
	uint64_t before = fakecuda_used(), va = 0;
	struct region_err err;
	int k, rc = -ENOMEM;

	for (k = 0; rc == -ENOMEM; k++) {
		__atomic_store_n(&allocs_left, k, __ATOMIC_RELEASE);
		rc = region_alloc("w", 0, 0, MiB, &va, &err);
		__atomic_store_n(&allocs_left, -1, __ATOMIC_RELEASE);
		if (rc == 0)
			break;
		cr_assert(eq(int, rc, -ENOMEM), "allocation %d failed: %s", k, err.msg);
		cr_assert(eq(u64, region_count(), 0), "allocation %d failed", k);
		cr_assert(eq(u64, fakecuda_used(), before), "allocation %d failed", k);
		cr_assert(eq(long, fakecuda_live_reservations(), 0), "allocation %d failed", k);
	}
	cr_assert(ge(int, k, 4), "every allocation was failed");
	fill(va, MiB, 1);
	cr_assert(eq(int, region_free(va), 0));
	assert_all_gone(before);
}

/* The driver refuses to unmap a slab at its last allocation's free: that
 * allocation is freed all the same (a retry of the free would find
 * nothing to free), and the slab, left on the unfinished frees, is given
 * back by a later call. */
Test(slab, a_slab_the_driver_will_not_unmap_is_given_back_later)
{
	uint64_t before = fakecuda_used(), a, b;
	struct region_census c;

	a = alloc("w", MiB);
	b = alloc("w", MiB);
	cr_assert(eq(int, region_free(a), 0));
	fakecuda_set_fail("cuMemUnmap:1:unknown");
	cr_assert(eq(int, region_free(b), 0));
	fakecuda_set_fail(NULL);
	cr_assert(eq(int, region_free(b), -ENOENT));
	region_census(&c);
	cr_assert(eq(u64, c.unfinished_frees, 1));
	assert_census_true();
	a = alloc("w", MiB); /* tidies the refused free */
	cr_assert(eq(int, region_free(a), 0));
	assert_all_gone(before);
}

/* A staged pause of several slabs cancelled while the request's thread
 * pins the first host buffer: the buffers the workers touched meanwhile,
 * never pinned, are not kept either. */
Test(slab, a_pause_cancelled_while_pinning_keeps_no_host_buffer)
{
	struct region_census c;
	uint64_t used;
	struct bg b;
	int i;

	for (i = 0; i < NP; i++) { /* three slabs */
		pva[i] = alloc("w", 4 * MiB);
		fill(pva[i], 4 * MiB, 90 + (unsigned)i);
	}
	used = fakecuda_used();
	fakecuda_hold("cuMemHostRegister");
	bg_start(&b, region_pause, "w", MEMCTL_STAGE_CPU);
	wait_held("cuMemHostRegister");
	bg_cancel(&b);
	fakecuda_unhold();
	cr_assert(eq(int, bg_join(&b), -ECANCELED), "%s", b.err.msg);
	region_census(&c);
	cr_assert(eq(u64, c.host_buffers, 0));
	cr_assert(eq(u64, fakecuda_used(), used));
	assert_census_true();
	for (i = 0; i < NP; i++)
		cr_assert(same(pva[i], 4 * MiB, 90 + (unsigned)i), "allocation %d", i);
}
