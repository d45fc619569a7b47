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

#include "fixture.h"

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

Test(slab, a_slab_the_device_cannot_hold_fails_cleanly)
{
	uint64_t before = fakecuda_used(), va = 0;
	struct region_err err;

	fakecuda_set_fail("cuMemCreate:1:oom");
	cr_assert(eq(int, region_alloc("w", 0, 0, MiB, &va, &err), -ENOMEM));
	fakecuda_set_fail(NULL);
	cr_assert(eq(u64, fakecuda_used(), before));
	cr_assert(eq(long, fakecuda_live_handles(), 0));
	va = alloc("w", MiB); /* and the next one works */
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
