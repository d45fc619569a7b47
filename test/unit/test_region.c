/* SPDX-License-Identifier: Apache-2.0 */
/*
 * test_region.c - the registry and its state machine, on the simulated
 * driver through the real driver binding.
 */
#include <criterion/criterion.h>
#include <cuda.h>
#include <criterion/new/assert.h>
#include <criterion/parameterized.h>
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <sys/wait.h>

#include "fixture.h"

#define MiB (1ull << 20)

TestSuite(region, .init = fixture_setup, .fini = fixture_teardown, .timeout = 30);

static struct tagset tags(const char *spec)
{
	struct region_err err;
	struct tagset ts;

	cr_assert(eq(int, tagset_parse(spec, &ts, &err), 0), "%s", err.msg);
	return ts;
}

static uint64_t alloc(const char *tag, size_t size)
{
	struct region_err err;
	uint64_t va = 0;

	cr_assert(eq(int, region_alloc(tag, 0, size, &va, &err), 0), "%s", err.msg);
	return va;
}

static void fill(uint64_t va, size_t size, unsigned seed)
{
	unsigned char *p = (unsigned char *)(uintptr_t)va;
	size_t i;

	for (i = 0; i < size; i++)
		p[i] = (unsigned char)((i * 2654435761u + seed) >> 7);
}

static int same(uint64_t va, size_t size, unsigned seed)
{
	const unsigned char *p = (const unsigned char *)(uintptr_t)va;
	size_t i;

	for (i = 0; i < size; i++)
		if (p[i] != (unsigned char)((i * 2654435761u + seed) >> 7))
			return 0;
	return 1;
}

/* 1 if touching va kills a child with SIGSEGV (memory released). */
static int faults(uint64_t va)
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

/* A request without deadline on the tag set ts_. */
#define REQ(ts_, flags_) (&(struct region_req){ .tags = (ts_), .flags = (flags_) })

static int do_pause(const char *spec, unsigned flags, struct region_err *err)
{
	struct region_report rep;
	struct tagset ts = tags(spec);

	return region_pause(REQ(ts, flags), &rep, err);
}

static int do_resume(const char *spec, unsigned flags, struct region_err *err)
{
	struct region_report rep;
	struct tagset ts = tags(spec);

	return region_resume(REQ(ts, flags), &rep, err);
}

Test(region, alloc_rounds_to_granularity_and_counts_device_memory)
{
	uint64_t before = fakecuda_used(), va;

	va = alloc("weights", 3 * MiB + 5);
	cr_assert(eq(u64, fakecuda_used() - before, 4 * MiB));
	cr_assert(eq(u64, va % (2 * MiB), 0));
	cr_assert(eq(int, region_free(va), 0));
	cr_assert(eq(u64, fakecuda_used(), before));
	cr_assert(eq(long, fakecuda_live_handles(), 0));
}

Test(region, free_of_unknown_pointer_is_enoent)
{
	cr_assert(eq(int, region_free(0x1234), -ENOENT));
}

Test(region, staged_pause_releases_exactly_that_tag_and_resume_restores_bytes)
{
	struct region_err err;
	struct memctl_stat st;
	struct tagset w = tags("weights"), kv = tags("kv_cache");
	uint64_t wv[8], kvv[3], used0;
	size_t sizes[8] = { 1, 4096, 2 * MiB, 2 * MiB + 1, 5 * MiB, 777, 3 * MiB, 64 };
	uint64_t rounded = 0;
	int i;

	for (i = 0; i < 8; i++) {
		wv[i] = alloc("weights", sizes[i]);
		fill(wv[i], sizes[i], (unsigned)i);
		rounded += (sizes[i] + 2 * MiB - 1) / (2 * MiB) * (2 * MiB);
	}
	for (i = 0; i < 3; i++) {
		kvv[i] = alloc("kv_cache", MiB);
		fill(kvv[i], MiB, 100u + (unsigned)i);
	}
	used0 = fakecuda_used();
	cr_assert(eq(int, do_pause("weights", MEMCTL_STAGE_CPU, &err), 0), "%s", err.msg);
	cr_assert(eq(u64, used0 - fakecuda_used(), rounded));
	cr_assert(eq(int, region_stat(&w, &st), 0));
	cr_assert(eq(u64, st.paused_bytes, rounded));
	cr_assert(eq(u64, st.active_bytes, 0));
	cr_assert(gt(u64, st.staged_bytes, 0));
	cr_assert(eq(int, region_stat(&kv, &st), 0));
	cr_assert(eq(u64, st.active_bytes, 3 * 2 * MiB));
	for (i = 0; i < 3; i++)
		cr_assert(same(kvv[i], MiB, 100u + (unsigned)i));
	cr_assert(faults(wv[4]));
	cr_assert(not(faults(kvv[0])));

	cr_assert(eq(int, do_resume("weights", 0, &err), 0), "%s", err.msg);
	cr_assert(eq(u64, fakecuda_used(), used0));
	for (i = 0; i < 8; i++)
		cr_assert(same(wv[i], sizes[i], (unsigned)i), "allocation %d differs", i);
}

Test(region, unknown_tags_are_enoent_and_malformed_are_einval)
{
	struct region_err err;
	struct tagset ts;

	(void)alloc("weights", MiB);
	cr_assert(eq(int, do_pause("kv_cache", 0, &err), -ENOENT));
	cr_assert(not(eq(ptr, strstr(err.msg, "kv_cache"), NULL)), "%s", err.msg);
	cr_assert(eq(int, tagset_parse("weights,,x", &ts, &err), -EINVAL));
	cr_assert(eq(int, tagset_parse("we ights", &ts, &err), -EINVAL));
	cr_assert(eq(int, do_pause("weights", 0x80, &err), -EINVAL));
}

Test(region, host_pin_failure_releases_nothing)
{
	struct region_err err;
	struct tagset w = tags("weights");
	struct memctl_stat st;
	uint64_t va[4], used0;
	int i;

	for (i = 0; i < 4; i++) {
		va[i] = alloc("weights", 3 * MiB);
		fill(va[i], 3 * MiB, (unsigned)i);
	}
	used0 = fakecuda_used();
	fakecuda_set_fail("cuMemHostRegister:3");
	cr_assert(eq(int, do_pause("weights", MEMCTL_STAGE_CPU, &err), -ENOMEM));
	cr_assert(not(eq(ptr, strstr(err.msg, "host memory"), NULL)), "%s", err.msg);
	cr_assert(eq(u64, fakecuda_used(), used0));
	cr_assert(eq(long, fakecuda_live_host_registrations(), 0));
	cr_assert(eq(int, region_stat(&w, &st), 0));
	cr_assert(eq(u64, st.active_bytes, 4 * 4 * MiB));
	cr_assert(eq(u64, st.staged_bytes, 0));
	for (i = 0; i < 4; i++)
		cr_assert(same(va[i], 3 * MiB, (unsigned)i));
}

Test(region, copy_failure_during_staged_pause_releases_nothing)
{
	struct region_err err;
	uint64_t va = alloc("weights", 5 * MiB), used0;

	fill(va, 5 * MiB, 9);
	used0 = fakecuda_used();
	fakecuda_set_fail("cuMemcpyDtoHAsync:4");
	cr_assert(eq(int, do_pause("weights", MEMCTL_STAGE_CPU, &err), -ENOMEM));
	cr_assert(not(eq(ptr, strstr(err.msg, "device-to-host copy could not be queued "
					 "(cuMemcpyDtoHAsync); nothing released"), NULL)), "%s", err.msg);
	cr_assert(eq(u64, fakecuda_used(), used0));
	cr_assert(same(va, 5 * MiB, 9));
	cr_assert(eq(long, fakecuda_live_host_registrations(), 0));
}

Test(region, resume_oom_at_each_create_rolls_back_and_retry_succeeds)
{
	struct region_err err;
	uint64_t va[6];
	long handles;
	int i, k;

	for (i = 0; i < 6; i++) {
		va[i] = alloc("weights", (size_t)(i + 1) * MiB);
		fill(va[i], (size_t)(i + 1) * MiB, (unsigned)i);
	}
	cr_assert(eq(int, do_pause("weights", MEMCTL_STAGE_CPU, &err), 0), "%s", err.msg);
	handles = fakecuda_live_handles();
	for (k = 1; k <= 6; k++) {
		fakecuda_set_fail(NULL);
		char spec[32];

		snprintf(spec, sizeof(spec), "cuMemCreate:%d", k);
		fakecuda_set_fail(spec);
		cr_assert(eq(int, do_resume("weights", 0, &err), -ENOMEM), "k=%d", k);
		cr_assert(not(eq(ptr, strstr(err.msg, "device memory"), NULL)), "%s", err.msg);
		cr_assert(eq(long, fakecuda_live_handles(), handles), "k=%d leaked", k);
		cr_assert(eq(long, fakecuda_live_mappings(), 0));
	}
	fakecuda_set_fail(NULL);
	cr_assert(eq(int, do_resume("weights", 0, &err), 0), "%s", err.msg);
	for (i = 0; i < 6; i++)
		cr_assert(same(va[i], (size_t)(i + 1) * MiB, (unsigned)i));
}

Test(region, resume_waits_for_another_tenant_and_says_how_much)
{
	struct region_err err;
	uint64_t va = alloc("weights", 64 * MiB), stolen;

	fill(va, 64 * MiB, 3);
	cr_assert(eq(int, do_pause("weights", MEMCTL_STAGE_CPU, &err), 0));
	stolen = fakecuda_capacity() - fakecuda_used() - 32 * MiB;
	cr_assert(eq(int, fakecuda_tenant_take(stolen), 0));
	cr_assert(eq(int, do_resume("weights", 0, &err), -ENOMEM));
	cr_assert(not(eq(ptr, strstr(err.msg, "needs 67108864 bytes, 33554432 free"), NULL)),
		  "%s", err.msg);
	fakecuda_tenant_give(stolen);
	cr_assert(eq(int, do_resume("weights", 0, &err), 0), "%s", err.msg);
	cr_assert(same(va, 64 * MiB, 3));
}

Test(region, host_buffers_are_kept_and_reused_then_released_on_request)
{
	struct region_err err;
	struct region_report rep;
	struct tagset w = tags("weights");
	uint64_t va = alloc("weights", 4 * MiB);
	int cycle;

	for (cycle = 0; cycle < 3; cycle++) {
		fill(va, 4 * MiB, (unsigned)cycle);
		cr_assert(eq(int, region_pause(REQ(w, MEMCTL_STAGE_CPU), &rep, &err), 0));
		cr_assert(eq(u64, rep.host_new_bytes, cycle == 0 ? 4 * MiB : 0));
		cr_assert(eq(int, region_resume(REQ(w, 0), &rep, &err), 0));
		cr_assert(same(va, 4 * MiB, (unsigned)cycle));
		cr_assert(eq(long, fakecuda_live_host_registrations(), 1));
	}
	/* Staged contents are never dropped by release_host. */
	cr_assert(eq(int, region_pause(REQ(w, MEMCTL_STAGE_CPU), &rep, &err), 0));
	cr_assert(eq(int, region_release_host(REQ(w, 0), &rep, &err), 0));
	cr_assert(eq(u64, rep.allocations, 0));
	cr_assert(eq(long, fakecuda_live_host_registrations(), 1));
	cr_assert(eq(int, region_resume(REQ(w, 0), &rep, &err), 0));
	cr_assert(eq(int, region_release_host(REQ(w, 0), &rep, &err), 0));
	cr_assert(eq(u64, rep.allocations, 1));
	cr_assert(eq(long, fakecuda_live_host_registrations(), 0));
	/* And resume can drop them itself. */
	cr_assert(eq(int, region_pause(REQ(w, MEMCTL_STAGE_CPU), &rep, &err), 0));
	cr_assert(eq(int, region_resume(REQ(w, MEMCTL_RELEASE_HOST), &rep, &err), 0));
	cr_assert(eq(long, fakecuda_live_host_registrations(), 0));
	cr_assert(same(va, 4 * MiB, 2));
}

Test(region, prepare_pins_ahead_so_the_first_pause_obtains_nothing)
{
	struct region_err err;
	struct region_report rep;
	struct tagset w = tags("weights");

	(void)alloc("weights", 6 * MiB);
	(void)alloc("weights", MiB);
	cr_assert(eq(int, region_prepare(REQ(w, 0), &rep, &err), 0), "%s", err.msg);
	cr_assert(eq(u64, rep.host_new_bytes, 7 * MiB));
	cr_assert(eq(int, region_pause(REQ(w, MEMCTL_STAGE_CPU), &rep, &err), 0));
	cr_assert(eq(u64, rep.host_new_bytes, 0));
	cr_assert(eq(u64, rep.copied_bytes, 7 * MiB));
}

Test(region, pause_synchronises_the_device_before_unmapping)
{
	struct region_err err;
	long syncs;

	(void)alloc("weights", MiB);
	syncs = fakecuda_syncs();
	cr_assert(eq(int, do_pause("weights", 0, &err), 0));
	cr_assert(gt(long, fakecuda_syncs(), syncs));
}

Test(region, free_in_every_state_releases_everything)
{
	struct region_err err;
	uint64_t a = alloc("t", MiB), b = alloc("u", MiB), c = alloc("v", MiB);

	cr_assert(eq(int, do_pause("u", 0, &err), 0));
	cr_assert(eq(int, do_pause("v", MEMCTL_STAGE_CPU, &err), 0));
	cr_assert(eq(int, region_free(a), 0));
	cr_assert(eq(int, region_free(b), 0));
	cr_assert(eq(int, region_free(c), 0));
	cr_assert(eq(u64, fakecuda_used(), 0));
	cr_assert(eq(long, fakecuda_live_handles(), 0));
	cr_assert(eq(long, fakecuda_live_mappings(), 0));
	cr_assert(eq(long, fakecuda_live_host_registrations(), 0));
	cr_assert(eq(u64, region_count(), 0));
}

/* The state machine as a table: from a state, an operation, to a state. */
enum op { OP_PAUSE, OP_PAUSE_STAGE, OP_RESUME };
enum st { ST_ACTIVE, ST_PAUSED, ST_STAGED };

struct transition {
	enum st from;
	enum op op;
	enum st to;
	int bytes_kept; /* contents identical after returning to active */
	int rc;         /* what the operation returns */
};

ParameterizedTestParameters(region, transitions)
{
	static struct transition table[] = {
		{ ST_ACTIVE, OP_PAUSE, ST_PAUSED, 0, 0 },
		{ ST_ACTIVE, OP_PAUSE_STAGE, ST_STAGED, 1, 0 },
		{ ST_ACTIVE, OP_RESUME, ST_ACTIVE, 1, 0 },
		{ ST_PAUSED, OP_PAUSE, ST_PAUSED, 0, 0 },
		/* Contents already gone: a staged pause must not look kept. */
		{ ST_PAUSED, OP_PAUSE_STAGE, ST_PAUSED, 0, -ENODATA },
		{ ST_PAUSED, OP_RESUME, ST_ACTIVE, 0, 0 },
		{ ST_STAGED, OP_PAUSE, ST_STAGED, 1, 0 },
		{ ST_STAGED, OP_PAUSE_STAGE, ST_STAGED, 1, 0 },
		{ ST_STAGED, OP_RESUME, ST_ACTIVE, 1, 0 },
	};
	return cr_make_param_array(struct transition, table, sizeof(table) / sizeof(table[0]));
}

static enum st state_of(void)
{
	struct tagset ts = tags("x");
	struct memctl_stat st;

	cr_assert(eq(int, region_stat(&ts, &st), 0));
	if (st.active_bytes)
		return ST_ACTIVE;
	return st.staged_bytes ? ST_STAGED : ST_PAUSED;
}

static void apply_expect(enum op op, int expect)
{
	struct region_err err = { 0, "" };
	int rc = op == OP_RESUME ? do_resume("x", 0, &err)
		 : do_pause("x", op == OP_PAUSE_STAGE ? MEMCTL_STAGE_CPU : 0, &err);

	cr_assert(eq(int, rc, expect), "%s", err.msg);
}

static void apply(enum op op)
{
	apply_expect(op, 0);
}

ParameterizedTest(struct transition *t, region, transitions)
{
	uint64_t va = alloc("x", 3 * MiB);

	fill(va, 3 * MiB, 42);
	if (t->from == ST_PAUSED)
		apply(OP_PAUSE);
	else if (t->from == ST_STAGED)
		apply(OP_PAUSE_STAGE);
	cr_assert(eq(int, state_of(), t->from));
	apply_expect(t->op, t->rc);
	cr_assert(eq(int, state_of(), t->to));
	if (t->to != ST_ACTIVE)
		cr_assert(faults(va));
	apply(OP_RESUME);
	cr_assert(eq(int, same(va, 3 * MiB, 42), t->bytes_kept));
}

Test(region, device_failure_mid_staging_keeps_every_byte)
{
	struct region_err err;
	struct tagset w = tags("weights");
	struct memctl_stat st;
	uint64_t va[5];
	int i;

	for (i = 0; i < 5; i++) {
		va[i] = alloc("weights", MiB); /* one chunk, one event each */
		fill(va[i], MiB, (unsigned)i);
	}
	/* The 3rd allocation's copy completion reports a device fault. */
	fakecuda_set_fail("cuEventSynchronize:3:illegal");
	cr_assert(eq(int, do_pause("weights", MEMCTL_STAGE_CPU, &err), -EIO));
	cr_assert(not(eq(ptr, strstr(err.msg, "2 of 5"), NULL)), "%s", err.msg);
	cr_assert(eq(int, region_stat(&w, &st), 0));
	cr_assert(eq(u64, st.paused_bytes, 2 * 2 * MiB));
	cr_assert(eq(u64, st.active_bytes, 3 * 2 * MiB));
	fakecuda_set_fail(NULL);
	cr_assert(eq(int, do_resume("weights", 0, &err), 0), "%s", err.msg);
	for (i = 0; i < 5; i++)
		cr_assert(same(va[i], MiB, (unsigned)i), "allocation %d", i);
}

Test(region, kept_and_new_buffers_mixed_in_one_staged_pause)
{
	struct region_err err;
	struct region_report rep;
	struct tagset a = tags("w_a"), both = tags("w_a,w_b");
	uint64_t va[6];
	int i;

	for (i = 0; i < 6; i++) {
		va[i] = alloc(i < 3 ? "w_a" : "w_b", (size_t)(i + 1) * MiB + 123);
		fill(va[i], (size_t)(i + 1) * MiB + 123, (unsigned)i);
	}
	/* A failed prepare keeps nothing. */
	fakecuda_set_fail("cuMemHostRegister:2");
	cr_assert(eq(int, region_prepare(REQ(a, 0), &rep, &err), -ENOMEM));
	cr_assert(eq(long, fakecuda_live_host_registrations(), 0));
	fakecuda_set_fail(NULL);
	/* Three buffers kept ahead; the pause obtains the other three while
	 * the first copies already run. */
	cr_assert(eq(int, region_prepare(REQ(a, 0), &rep, &err), 0), "%s", err.msg);
	cr_assert(eq(int, region_pause(REQ(both, MEMCTL_STAGE_CPU), &rep, &err), 0), "%s", err.msg);
	cr_assert(eq(u64, rep.allocations, 6));
	cr_assert(eq(u64, rep.host_new_bytes, (4 + 5 + 6) * MiB + 3 * 4096));
	cr_assert(eq(int, region_resume(REQ(both, 0), &rep, &err), 0));
	for (i = 0; i < 6; i++)
		cr_assert(same(va[i], (size_t)(i + 1) * MiB + 123, (unsigned)i), "allocation %d", i);
}

/* The application's own current context is never changed under it. */
Test(region, an_application_context_is_left_current)
{
	static char app_ctx_storage[8];
	CUcontext app = (CUcontext)(void *)app_ctx_storage, cur = NULL;
	struct region_err err;
	uint64_t va;

	cr_assert(eq(int, cuCtxSetCurrent(app), CUDA_SUCCESS));
	va = alloc("weights", MiB);
	cr_assert(eq(int, do_pause("weights", MEMCTL_STAGE_CPU, &err), 0));
	cr_assert(eq(int, do_resume("weights", 0, &err), 0));
	cr_assert(eq(int, region_free(va), 0));
	cr_assert(eq(int, cuCtxGetCurrent(&cur), CUDA_SUCCESS));
	cr_assert(eq(ptr, (void *)cur, (void *)app));
	/* A thread without a context gets the primary one, as the runtime
	 * would give it, and keeps it. */
	cr_assert(eq(int, cuCtxSetCurrent(NULL), CUDA_SUCCESS));
	va = alloc("weights", MiB);
	cr_assert(eq(int, cuCtxGetCurrent(&cur), CUDA_SUCCESS));
	cr_assert(not(eq(ptr, (void *)cur, NULL)));
	cr_assert(not(eq(ptr, (void *)cur, (void *)app)));
	cr_assert(eq(int, region_free(va), 0));
}
