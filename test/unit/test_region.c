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
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

#include "failalloc.h"
#include "fixture.h"
#include "heldreq.h"

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

	cr_assert(eq(int, region_alloc(tag, 0, 0, size, &va, &err), 0), "%s", err.msg);
	return va;
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

/* Host memory runs out at each allocation a tagged allocation makes in
 * turn (its record, the registry's hash): it fails cleanly, leaving
 * nothing behind, never ending the process (uthash's default on a failed
 * malloc is exit). */
Test(region, an_allocation_the_registry_cannot_record_fails_and_leaks_nothing)
{
	struct region_err err;
	uint64_t va = 0;
	int k, rc = -ENOMEM;

	for (k = 0; rc == -ENOMEM; k++) {
		__atomic_store_n(&allocs_left, k, __ATOMIC_RELEASE);
		rc = region_alloc("weights", 0, 0, MiB, &va, &err);
		__atomic_store_n(&allocs_left, -1, __ATOMIC_RELEASE);
		if (rc == 0)
			break;
		cr_assert(eq(int, rc, -ENOMEM), "allocation %d failed: %s", k, err.msg);
		cr_assert(eq(u64, region_count(), 0));
		cr_assert(eq(long, fakecuda_live_handles(), 0));
		cr_assert(eq(long, fakecuda_live_mappings(), 0));
		cr_assert(eq(long, fakecuda_live_reservations(), 0));
	}
	cr_assert(ge(int, k, 2), "the record and the hash were both failed");
	cr_assert(eq(u64, region_count(), 1));
	cr_assert(eq(int, region_free(va), 0));
}

/* The figures of untagged memory, when host memory runs out at the entry
 * or at the ledger's hash: less exact, never the end of the process
 * (untagged.c included uthash without its non-fatal handler, whose
 * default is exit). */
Test(region, untagged_memory_it_cannot_record_is_left_out_of_the_figures)
{
	uint64_t bytes[UNTAGGED_KINDS];
	int k;

	for (k = 0; k < 3; k++) {
		__atomic_store_n(&allocs_left, k, __ATOMIC_RELEASE);
		region_untagged_add(UNTAGGED_ALLOC, 0x1000, MiB);
		__atomic_store_n(&allocs_left, -1, __ATOMIC_RELEASE);
		region_untagged_totals(bytes);
		cr_assert(eq(u64, bytes[UNTAGGED_ALLOC], 0), "recorded with %d allocations", k);
		cr_assert(eq(int, region_untagged_drop(0x1000), -ENOENT));
	}
	region_untagged_add(UNTAGGED_ALLOC, 0x1000, MiB);
	region_untagged_totals(bytes);
	cr_assert(eq(u64, bytes[UNTAGGED_ALLOC], MiB));
	cr_assert(eq(int, region_untagged_drop(0x1000), 0));
}

/* While `free_holding`, the frees of thread `free_hold` are counted: the
 * first ones are remembered, the `free_hold_at`-th blocks (free_held set)
 * until free_holding is cleared. A free of a remembered pointer by anyone
 * else is a double free: counted in `double_frees`, not passed on. */
static pthread_t free_hold;
static int free_holding, free_hold_at, free_count, free_held, double_frees;
static void *freed_before_hold[8];
void __real_free(void *p);
void __wrap_free(void *p);

void __wrap_free(void *p)
{
	int i;

	if (!__atomic_load_n(&free_holding, __ATOMIC_ACQUIRE) || p == NULL) {
		__real_free(p);
		return;
	}
	if (!pthread_equal(pthread_self(), free_hold)) {
		for (i = 0; i < free_count && i < 8; i++)
			if (freed_before_hold[i] == p) {
				double_frees++;
				return;
			}
	} else if (++free_count == free_hold_at) {
		__atomic_store_n(&free_held, 1, __ATOMIC_RELEASE);
		while (__atomic_load_n(&free_holding, __ATOMIC_ACQUIRE))
			usleep(1000);
	} else if (free_count < free_hold_at && free_count <= 8) {
		freed_before_hold[free_count - 1] = p;
	}
	__real_free(p);
}

static void *free_main(void *arg)
{
	free_hold = pthread_self();
	__atomic_store_n(&free_holding, 1, __ATOMIC_RELEASE);
	return (void *)(intptr_t)region_free(*(uint64_t *)arg);
}

/* A process forks while another thread is inside the registry's table,
 * deleting its last record (the hash's buckets freed, its table not yet):
 * the child forgets the registry, as the fork handler does, without
 * walking what it inherited, and lives on. */
Test(region, a_child_forked_mid_change_of_the_table_forgets_it_and_lives)
{
	uint64_t va = alloc("weights", MiB);
	pthread_t t;
	void *rc;
	pid_t pid;
	int st;

	free_hold_at = 2; /* the hash's buckets go first, then its table */
	cr_assert(eq(int, pthread_create(&t, NULL, free_main, &va), 0));
	while (!__atomic_load_n(&free_held, __ATOMIC_ACQUIRE))
		usleep(1000);
	pid = fork();
	if (pid == 0) {
		region_forget_all();
		_exit(double_frees ? 2 : region_count() == 0 && !region_may_own() ? 0 : 1);
	}
	waitpid(pid, &st, 0);
	__atomic_store_n(&free_holding, 0, __ATOMIC_RELEASE);
	pthread_join(t, &rc);
	cr_assert(eq(int, WIFEXITED(st) ? WEXITSTATUS(st) : -WTERMSIG(st), 0));
	cr_assert(eq(int, (int)(intptr_t)rc, 0));
	cr_assert(eq(long, fakecuda_live_handles(), 0));
	cr_assert(eq(long, fakecuda_live_reservations(), 0));
}

static void *drop_main(void *arg)
{
	free_hold = pthread_self();
	__atomic_store_n(&free_holding, 1, __ATOMIC_RELEASE);
	return (void *)(intptr_t)region_untagged_drop(*(uint64_t *)arg);
}

/* The same for the ledger of untagged memory, deleting its last entry:
 * the child forgets it without walking it. */
Test(region, a_child_forked_mid_change_of_the_untagged_ledger_forgets_it_and_lives)
{
	uint64_t key = 0x2000, bytes[UNTAGGED_KINDS];
	pthread_t t;
	void *rc;
	pid_t pid;
	int st;

	region_untagged_add(UNTAGGED_ALLOC, key, MiB);
	free_hold_at = 2; /* the hash's buckets go first, then its table */
	cr_assert(eq(int, pthread_create(&t, NULL, drop_main, &key), 0));
	while (!__atomic_load_n(&free_held, __ATOMIC_ACQUIRE))
		usleep(1000);
	pid = fork();
	if (pid == 0) {
		region_forget_all();
		region_untagged_totals(bytes);
		_exit(double_frees ? 2 : bytes[UNTAGGED_ALLOC] == 0 ? 0 : 1);
	}
	waitpid(pid, &st, 0);
	__atomic_store_n(&free_holding, 0, __ATOMIC_RELEASE);
	pthread_join(t, &rc);
	cr_assert(eq(int, WIFEXITED(st) ? WEXITSTATUS(st) : -WTERMSIG(st), 0));
	cr_assert(eq(int, (int)(intptr_t)rc, 0));
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

/* The application's kernel, queued on the NULL stream and not yet run
 * (the simulated driver runs queued work only when it is waited for). */
static void queue_fill(uint64_t va, size_t n, int byte)
{
	void *args[] = { &va, &n, &byte };
	CUcontext ctx;

	cr_assert(eq(int, cuDevicePrimaryCtxRetain(&ctx, 0), CUDA_SUCCESS));
	cr_assert(eq(int, cuCtxSetCurrent(ctx), CUDA_SUCCESS));
	cr_assert(eq(int, cuLaunchKernel((CUfunction)fakecuda_kernel("fill"), 1, 1, 1, 1, 1, 1,
					 0, NULL, args, NULL), CUDA_SUCCESS));
}

Test(region, pause_synchronises_the_device_before_unmapping)
{
	static unsigned char expect[MiB];
	struct region_err err;
	uint64_t w = alloc("weights", MiB), kv = alloc("kv_cache", MiB);

	/* Unmapping under the kernel would be a violation (the simulated
	 * driver aborts the test) and a staged copy would miss its bytes. */
	queue_fill(w, MiB, 0x77);
	cr_assert(eq(int, do_pause("weights", MEMCTL_STAGE_CPU, &err), 0), "%s", err.msg);
	queue_fill(kv, MiB, 0x78);
	cr_assert(eq(int, do_pause("kv_cache", 0, &err), 0), "%s", err.msg);
	cr_assert(eq(long, fakecuda_violations(), 0));
	cr_assert(eq(long, fakecuda_illegal_accesses(), 0));
	cr_assert(eq(int, do_resume("weights", 0, &err), 0), "%s", err.msg);
	memset(expect, 0x77, sizeof(expect));
	cr_assert(eq(int, memcmp((void *)(uintptr_t)w, expect, MiB), 0), "the kernel's bytes were lost");
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
	CUcontext app = NULL, cur = NULL;
	struct region_err err;
	uint64_t va;

	cr_assert(eq(int, cuCtxCreate(&app, NULL, 0, 0), CUDA_SUCCESS));
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

/* ---- requests held open by the simulated driver -------------------- */

#define NW 4
static uint64_t wva[NW];

static void four_filled(const char *tag)
{
	int i;

	for (i = 0; i < NW; i++) {
		wva[i] = alloc(tag, 8 * MiB);
		fill(wva[i], 8 * MiB, (unsigned)i);
	}
}

static void assert_four_intact(void)
{
	int i;

	for (i = 0; i < NW; i++)
		cr_assert(same(wva[i], 8 * MiB, (unsigned)i), "allocation %d differs", i);
}

static void assert_active_bytes(const char *spec, uint64_t active)
{
	struct tagset ts = tags(spec);
	struct memctl_stat st;

	cr_assert(eq(int, region_stat(&ts, &st), 0));
	cr_assert(eq(u64, st.active_bytes, active));
}

Test(region, a_staged_pause_cancelled_while_pinning_releases_nothing_and_keeps_nothing)
{
	uint64_t used = fakecuda_used();
	struct bg b;

	four_filled("w");
	used = fakecuda_used();
	fakecuda_hold("cuMemHostRegister");
	bg_start(&b, region_pause, "w", MEMCTL_STAGE_CPU);
	wait_held("cuMemHostRegister");
	bg_cancel(&b);
	fakecuda_unhold();
	cr_assert(eq(int, bg_join(&b), -ECANCELED), "%s", b.err.msg);
	cr_assert(not(eq(ptr, strstr(b.err.msg, "nothing released"), NULL)), "%s", b.err.msg);
	cr_assert(eq(u64, fakecuda_used(), used));
	cr_assert(eq(long, fakecuda_live_host_registrations(), 0));
	assert_active_bytes("w", NW * 8 * MiB);
	assert_census_true();
	assert_four_intact();
}

/* Abandoned after the first allocation was released: it is mapped back
 * and its contents copied back; new host buffers are freed, kept ones stay. */
static void release_phase_abandoned(int prepared)
{
	struct region_report rep;
	struct tagset w = tags("w");
	uint64_t used;
	struct bg b;

	four_filled("w");
	if (prepared)
		cr_assert(eq(int, region_prepare(REQ(w, 0), &rep, &b.err), 0));
	used = fakecuda_used();
	fakecuda_hold("cuEventSynchronize");
	bg_start(&b, region_pause, "w", MEMCTL_STAGE_CPU);
	wait_held("cuEventSynchronize");
	bg_expire(&b);
	fakecuda_unhold();
	cr_assert(eq(int, bg_join(&b), -ETIMEDOUT), "%s", b.err.msg);
	cr_assert(not(eq(ptr, strstr(b.err.msg, "deadline passed in the release phase"), NULL)),
		  "%s", b.err.msg);
	cr_assert(not(eq(ptr, strstr(b.err.msg, "mapped back with its contents"), NULL)),
		  "%s", b.err.msg);
	cr_assert(eq(u64, fakecuda_used(), used));
	cr_assert(eq(long, fakecuda_live_host_registrations(), prepared ? NW : 0));
	assert_active_bytes("w", NW * 8 * MiB);
	assert_census_true();
	assert_four_intact();
}

Test(region, a_deadline_in_the_release_phase_maps_back_what_was_released)
{
	release_phase_abandoned(0);
}

Test(region, a_deadline_in_the_release_phase_keeps_buffers_prepared_before)
{
	release_phase_abandoned(1);
}

/* If what was released cannot be mapped back (the device filled up), it
 * stays staged: nothing lost, and the message says what to do. */
Test(region, a_rollback_that_cannot_map_back_leaves_contents_staged)
{
	struct region_err err;
	struct bg b;

	four_filled("w");
	fakecuda_hold("cuEventSynchronize");
	bg_start(&b, region_pause, "w", MEMCTL_STAGE_CPU);
	wait_held("cuEventSynchronize");
	bg_cancel(&b);
	fakecuda_set_fail("cuMemCreate:1"); /* the rollback's first mapping */
	fakecuda_unhold();
	cr_assert(eq(int, bg_join(&b), -ECANCELED), "%s", b.err.msg);
	cr_assert(not(eq(ptr, strstr(b.err.msg, "stays staged, every byte in host memory"), NULL)), "%s", b.err.msg);
	fakecuda_set_fail(NULL);
	assert_active_bytes("w", (NW - 1) * 8 * MiB);
	assert_census_true();
	cr_assert(eq(int, do_resume("w", 0, &err), 0), "%s", err.msg);
	assert_four_intact();
}

Test(region, a_cancelled_resume_unmaps_what_it_mapped_and_keeps_staged_bytes)
{
	struct region_err err;
	uint64_t used;
	struct bg b;

	four_filled("w");
	cr_assert(eq(int, do_pause("w", MEMCTL_STAGE_CPU, &err), 0), "%s", err.msg);
	used = fakecuda_used();
	fakecuda_hold("cuMemMap");
	bg_start(&b, region_resume, "w", 0);
	wait_held("cuMemMap");
	bg_cancel(&b);
	fakecuda_unhold();
	cr_assert(eq(int, bg_join(&b), -ECANCELED), "%s", b.err.msg);
	cr_assert(not(eq(ptr, strstr(b.err.msg, "nothing resumed"), NULL)), "%s", b.err.msg);
	cr_assert(eq(u64, fakecuda_used(), used));
	cr_assert(eq(long, fakecuda_live_mappings(), 0));
	assert_active_bytes("w", 0);
	assert_census_true();
	cr_assert(eq(int, do_resume("w", 0, &err), 0), "%s", err.msg);
	assert_four_intact();
}

Test(region, a_cancelled_prepare_keeps_no_host_buffer)
{
	struct region_census c;
	struct bg b;

	four_filled("w");
	fakecuda_hold("cuMemHostRegister");
	bg_start(&b, region_prepare, "w", 0);
	wait_held("cuMemHostRegister");
	bg_cancel(&b);
	fakecuda_unhold();
	cr_assert(eq(int, bg_join(&b), -ECANCELED), "%s", b.err.msg);
	region_census(&c);
	cr_assert(eq(u64, c.host_buffers, 0));
	assert_census_true();
}

Test(region, an_unstaged_pause_cancelled_while_synchronising_releases_nothing)
{
	struct bg b;

	four_filled("w");
	fakecuda_hold("cuCtxSynchronize");
	bg_start(&b, region_pause, "w", 0);
	wait_held("cuCtxSynchronize");
	bg_cancel(&b);
	fakecuda_unhold();
	cr_assert(eq(int, bg_join(&b), -ECANCELED), "%s", b.err.msg);
	cr_assert(not(eq(ptr, strstr(b.err.msg, "nothing released"), NULL)), "%s", b.err.msg);
	assert_active_bytes("w", NW * 8 * MiB);
	assert_four_intact();
}

/* Requests take turns; one waiting for its turn gives up at its deadline
 * without doing anything, while the running one is still held. */
Test(region, a_request_waiting_its_turn_gives_up_at_its_deadline)
{
	struct bg first, second;

	four_filled("w");
	(void)alloc("kv", MiB);
	fakecuda_hold("cuMemHostRegister");
	bg_start(&first, region_pause, "w", MEMCTL_STAGE_CPU);
	wait_held("cuMemHostRegister");
	bg_start(&second, region_pause, "kv", 0);
	bg_expire(&second);
	cr_assert(eq(int, bg_join(&second), -ETIMEDOUT), "%s", second.err.msg);
	cr_assert(not(eq(ptr, strstr(second.err.msg, "waiting for the running request"), NULL)),
		  "%s", second.err.msg);
	cr_assert(gt(int, fakecuda_held("cuMemHostRegister"), 0));
	assert_active_bytes("kv", 2 * MiB);
	/* Giving up did not end the running request's turn. */
	bg_start(&second, region_pause, "kv", 0);
	bg_expire(&second);
	cr_assert(eq(int, bg_join(&second), -ETIMEDOUT), "%s", second.err.msg);
	cr_assert(not(eq(ptr, strstr(second.err.msg, "waiting for the running request"), NULL)),
		  "%s", second.err.msg);
	fakecuda_unhold();
	cr_assert(eq(int, bg_join(&first), 0), "%s", first.err.msg);
}

Test(region, two_requests_run_one_after_the_other)
{
	struct bg first, second;

	four_filled("w");
	(void)alloc("kv", MiB);
	fakecuda_hold("cuMemHostRegister");
	bg_start(&first, region_pause, "w", MEMCTL_STAGE_CPU);
	wait_held("cuMemHostRegister");
	bg_start(&second, region_pause, "kv", 0);
	/* However long the first is held, the second does not finish. */
	cr_assert(eq(int, __atomic_load_n(&second.done, __ATOMIC_ACQUIRE), 0));
	fakecuda_unhold();
	cr_assert(eq(int, bg_join(&first), 0), "%s", first.err.msg);
	cr_assert(eq(int, bg_join(&second), 0), "%s", second.err.msg);
	cr_assert(eq(int, first.done && second.done, 1));
	assert_active_bytes("kv", 0);
}

/* cudaFree of allocations a request holds: defined outcomes. */
Test(region, freeing_an_allocation_being_staged_drops_it_and_the_rest_completes)
{
	struct region_err err;
	struct bg b;

	four_filled("w");
	fakecuda_hold("cuMemHostRegister");
	bg_start(&b, region_pause, "w", MEMCTL_STAGE_CPU);
	wait_held("cuMemHostRegister");
	cr_assert(eq(int, region_free(wva[2]), 0));
	cr_assert(gt(int, fakecuda_held("cuMemHostRegister"), 0));
	fakecuda_unhold();
	cr_assert(eq(int, bg_join(&b), 0), "%s", b.err.msg);
	cr_assert(eq(u64, b.rep.allocations, NW - 1));
	assert_census_true();
	cr_assert(eq(long, fakecuda_live_host_registrations(), NW - 1));
	cr_assert(eq(int, do_resume("w", 0, &err), 0), "%s", err.msg);
	cr_assert(same(wva[0], 8 * MiB, 0) && same(wva[1], 8 * MiB, 1) && same(wva[3], 8 * MiB, 3));
}

Test(region, freeing_during_a_resume_or_a_prepare_is_not_held_up)
{
	struct region_err err;
	struct bg b;

	four_filled("w");
	cr_assert(eq(int, do_pause("w", MEMCTL_STAGE_CPU, &err), 0), "%s", err.msg);
	fakecuda_hold("cuMemMap");
	bg_start(&b, region_resume, "w", 0);
	wait_held("cuMemMap"); /* mapping the first; the last is not touched yet */
	cr_assert(eq(int, region_free(wva[3]), 0));
	cr_assert(gt(int, fakecuda_held("cuMemMap"), 0));
	fakecuda_unhold();
	cr_assert(eq(int, bg_join(&b), 0), "%s", b.err.msg);
	cr_assert(same(wva[0], 8 * MiB, 0) && same(wva[1], 8 * MiB, 1) && same(wva[2], 8 * MiB, 2));
	cr_assert(eq(int, region_release_host(REQ(tags("w"), 0), &b.rep, &err), 0));

	fakecuda_hold("cuMemHostRegister");
	bg_start(&b, region_prepare, "w", 0);
	wait_held("cuMemHostRegister");
	cr_assert(eq(int, region_free(wva[0]), 0));
	cr_assert(gt(int, fakecuda_held("cuMemHostRegister"), 0));
	fakecuda_unhold();
	cr_assert(eq(int, bg_join(&b), 0), "%s", b.err.msg);
	assert_census_true();
	cr_assert(eq(long, fakecuda_live_host_registrations(), 2));
}

/* A resume has mapped every allocation and queued the copies back; it
 * waits for them (held). A free of one of them must not unmap it under its
 * queued copy (a violation: the simulated driver aborts the test). */
Test(region, freeing_an_allocation_whose_copy_back_is_queued_waits_for_the_copy)
{
	struct region_err err;
	struct bg b;

	four_filled("w");
	cr_assert(eq(int, do_pause("w", MEMCTL_STAGE_CPU, &err), 0), "%s", err.msg);
	fakecuda_hold("cuStreamSynchronize");
	bg_start(&b, region_resume, "w", 0);
	wait_held("cuStreamSynchronize");
	cr_assert(eq(int, region_free(wva[1]), 0));
	cr_assert(eq(long, fakecuda_violations(), 0));
	fakecuda_unhold();
	cr_assert(eq(int, bg_join(&b), 0), "%s", b.err.msg);
	cr_assert(eq(u64, b.rep.allocations, NW - 1));
	cr_assert(same(wva[0], 8 * MiB, 0) && same(wva[2], 8 * MiB, 2) && same(wva[3], 8 * MiB, 3));
	assert_census_true();
}

/* A pause whose cuMemRelease failed is finished by the next pause, and
 * that one's reply counts the device bytes it gave back: "0 released"
 * would tell the operator that nothing came back. */
Test(region, the_pause_that_finishes_a_failed_release_reports_the_bytes_it_released)
{
	struct region_report rep;
	struct region_err err;
	uint64_t used;

	(void)alloc("w", 4 * MiB);
	(void)alloc("w", 4 * MiB);
	used = fakecuda_used();
	fakecuda_set_fail("cuMemRelease:1:unknown");
	cr_assert(eq(int, region_pause(REQ(tags("w"), 0), &rep, &err), -EIO));
	fakecuda_set_fail(NULL);
	cr_assert(eq(u64, used - fakecuda_used(), 4 * MiB));
	cr_assert(eq(int, region_pause(REQ(tags("w"), 0), &rep, &err), 0), "%s", err.msg);
	cr_assert(eq(u64, fakecuda_used(), used - 8 * MiB));
	cr_assert(eq(u64, rep.device_bytes, 4 * MiB));
	cr_assert(eq(u64, rep.allocations, 0));
	assert_census_true();
}

/* ---- a staged pause of memory already paused without staging ------- */

Test(region, a_staged_pause_of_discarded_contents_fails_and_names_them)
{
	struct region_err err;
	uint64_t kv = alloc("kv", MiB), w = alloc("weights", MiB);

	fill(w, MiB, 5);
	(void)kv;
	cr_assert(eq(int, do_pause("kv", 0, &err), 0));
	cr_assert(eq(int, do_pause("kv,weights", MEMCTL_STAGE_CPU, &err), -ENODATA));
	cr_assert(not(eq(ptr, strstr(err.msg, "tags 'kv'"), NULL)), "%s", err.msg);
	cr_assert(not(eq(ptr, strstr(err.msg, "contents are gone"), NULL)), "%s", err.msg);
	cr_assert(not(eq(ptr, strstr(err.msg, "nothing changed"), NULL)), "%s", err.msg);
	assert_active_bytes("weights", 2 * MiB);
	/* Leaving the tag out, or staging nothing, works. */
	cr_assert(eq(int, do_pause("weights", MEMCTL_STAGE_CPU, &err), 0), "%s", err.msg);
	cr_assert(eq(int, do_pause("kv,weights", 0, &err), 0), "%s", err.msg);
	cr_assert(eq(int, do_resume("weights", 0, &err), 0), "%s", err.msg);
	cr_assert(same(w, MiB, 5));
}

/* ---- host memory limits of a container ------------------------------ */

static void put_file(const char *dir, const char *name, const char *text)
{
	char path[PATH_MAX];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "w");
	cr_assert(not(eq(ptr, f, NULL)), "%s", path);
	fputs(text, f);
	fclose(f);
}

static void reinit_with_cgroup(const char *dir)
{
	struct region_opts ro = { .chunk_bytes = 1 << 20, .streams = 3, .pin_threads = 4,
				  .cgroup_dir = dir };

	region_init(drv_cuda_load(), &ro);
}

Test(region, staging_stays_inside_a_cgroup_v2_memory_limit)
{
	char dir[] = "/tmp/memctl-cg2-XXXXXX";
	struct region_err err;
	uint64_t va;

	cr_assert(not(eq(ptr, mkdtemp(dir), NULL)));
	put_file(dir, "memory.max", "67108864\n");     /* 64 MiB */
	put_file(dir, "memory.current", "62914560\n"); /* 60 MiB, of which */
	put_file(dir, "memory.stat", "anon 1\ninactive_file 4194304\n"); /* 4 MiB cache */
	reinit_with_cgroup(dir);
	va = alloc("w", 16 * MiB);
	fill(va, 16 * MiB, 1);
	cr_assert(eq(int, do_pause("w", MEMCTL_STAGE_CPU, &err), -ENOMEM));
	cr_assert(not(eq(ptr, strstr(err.msg, "needs 16777216 bytes, 8388608 available"), NULL)),
		  "%s", err.msg);
	cr_assert(not(eq(ptr, strstr(err.msg, "memory.max"), NULL)), "%s", err.msg);
	cr_assert(not(eq(ptr, strstr(err.msg, "nothing released"), NULL)), "%s", err.msg);
	assert_active_bytes("w", 16 * MiB);
	put_file(dir, "memory.max", "max\n");
	cr_assert(eq(int, do_pause("w", MEMCTL_STAGE_CPU, &err), 0), "%s", err.msg);
	cr_assert(eq(int, do_resume("w", 0, &err), 0), "%s", err.msg);
	cr_assert(same(va, 16 * MiB, 1));
}

Test(region, a_cgroup_v1_parent_limit_counts_too)
{
	char top[] = "/tmp/memctl-cg1-XXXXXX", leaf[PATH_MAX];
	struct region_err err;

	cr_assert(not(eq(ptr, mkdtemp(top), NULL)));
	snprintf(leaf, sizeof(leaf), "%s/job", top);
	cr_assert(eq(int, mkdir(leaf, 0700), 0));
	put_file(top, "memory.limit_in_bytes", "33554432\n"); /* parent: 32 MiB */
	put_file(top, "memory.usage_in_bytes", "29360128\n"); /* 28 MiB used */
	put_file(leaf, "memory.limit_in_bytes", "9223372036854771712\n"); /* none */
	put_file(leaf, "memory.usage_in_bytes", "1048576\n");
	reinit_with_cgroup(leaf);
	(void)alloc("w", 8 * MiB);
	cr_assert(eq(int, do_pause("w", MEMCTL_STAGE_CPU, &err), -ENOMEM));
	cr_assert(not(eq(ptr, strstr(err.msg, top), NULL)), "%s", err.msg);
	cr_assert(not(eq(ptr, strstr(err.msg, "4194304 available"), NULL)), "%s", err.msg);
}

/* The memory cgroup of this process as a directory (v2 with the memory
 * controller, else v1), found the plain way; 0 if there is none. */
static int own_memory_cgroup(char *dir, size_t len, const char **limit_file)
{
	char line[1024], path[PATH_MAX + 32];
	FILE *f = fopen("/proc/self/cgroup", "r");
	int found = 0;

	if (f == NULL)
		return 0;
	while (!found && fgets(line, sizeof(line), f) != NULL) {
		char *p = strrchr(line, ':');

		line[strcspn(line, "\n")] = '\0';
		if (strncmp(line, "0::", 3) == 0) {
			snprintf(dir, len, "/sys/fs/cgroup%s", line + 3);
			snprintf(path, sizeof(path), "%s/cgroup.subtree_control", dir);
			*limit_file = "memory.max";
			found = access(path, W_OK) == 0;
		} else if (strstr(line, ":memory:") != NULL && p != NULL) {
			snprintf(dir, len, "/sys/fs/cgroup/memory%s", p + 1);
			*limit_file = "memory.limit_in_bytes";
			found = 1;
		}
	}
	fclose(f);
	return found;
}

static int write_text(const char *dir, const char *name, const char *text)
{
	char path[PATH_MAX + 64];
	int fd, ok;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ok = write(fd, text, strlen(text)) == (ssize_t)strlen(text);
	close(fd);
	return ok ? 0 : -1;
}

/* In the child: join the cgroup, fill 64 MiB, allow 16 MiB more, stage.
 * 0 ENOMEM as it should, 1 something else, 77 the machine would not. */
static int staged_pause_in_cgroup(const char *cg, const char *limit_file)
{
	char num[32], path[PATH_MAX + 64];
	struct region_err err;
	unsigned long long usage = 0;
	uint64_t va;
	FILE *f;

	snprintf(num, sizeof(num), "%d\n", (int)getpid());
	if (write_text(cg, "cgroup.procs", num) < 0)
		return 77;
	/* A forked child cannot use the driver its parent started (neither
	 * can a GPU's): this child is the one that starts it. */
	fixture_setup();
	if (region_alloc("w", 0, 0, 64 * MiB, &va, &err) < 0)
		return 1;
	fill(va, 64 * MiB, 3);
	snprintf(path, sizeof(path), "%s/%s", cg, strcmp(limit_file, "memory.max") == 0
		 ? "memory.current" : "memory.usage_in_bytes");
	f = fopen(path, "r");
	if (f == NULL || fscanf(f, "%llu", &usage) != 1)
		return 77;
	fclose(f);
	snprintf(num, sizeof(num), "%llu\n", usage + 16 * MiB);
	if (write_text(cg, limit_file, num) < 0)
		return 77;
	return do_pause("w", MEMCTL_STAGE_CPU, &err) == -ENOMEM &&
	       strstr(err.msg, "memory cgroup") != NULL ? 0 : 1;
}

/* No fixture: the driver is started in the child (see above). */
Test(cgroup, a_real_memory_cgroup_limit_gives_enomem_not_the_oom_killer, .timeout = 30)
{
	char own[PATH_MAX], cg[PATH_MAX + 32];
	const char *limit_file = NULL;
	pid_t pid;
	int st;

	if (!own_memory_cgroup(own, sizeof(own), &limit_file))
		cr_skip_test("no memory cgroup of this process found to nest a test cgroup in");
	snprintf(cg, sizeof(cg), "%s/memctl-test-%d", own, (int)getpid());
	if (mkdir(cg, 0755) < 0)
		cr_skip_test("cannot create a memory cgroup at %s: %s", cg, strerror(errno));
	pid = fork();
	if (pid == 0)
		_exit(staged_pause_in_cgroup(cg, limit_file));
	waitpid(pid, &st, 0);
	while (rmdir(cg) < 0 && errno == EBUSY)
		usleep(1000); /* the exited child leaves the cgroup */
	if (WIFEXITED(st) && WEXITSTATUS(st) == 77)
		cr_skip_test("the machine would not put a process into %s or limit it", cg);
	cr_assert(eq(int, WIFSIGNALED(st) ? WTERMSIG(st) : 0, 0),
		  "the child was killed by a signal (the OOM killer sends 9)");
	cr_assert(eq(int, WEXITSTATUS(st), 0), "the staged pause did not fail with ENOMEM");
}

/* ---- per-allocation staging, the margin, reading staged contents ------ */

static uint64_t alloc_flags(const char *tag, unsigned flags, size_t size)
{
	struct region_err err;
	uint64_t va = 0;

	cr_assert(eq(int, region_alloc(tag, flags, 0, size, &va, &err), 0), "%s", err.msg);
	return va;
}

Test(region, a_plain_pause_stages_exactly_the_allocations_made_to_be_staged)
{
	struct region_err err;
	struct region_report rep;
	struct memctl_stat st;
	struct tagset t = tags("t");
	uint64_t keep[2], drop[2], used0;
	int i;

	/* Two regions of one tag, one with staging, interleaved. */
	for (i = 0; i < 2; i++) {
		keep[i] = alloc_flags("t", MEMCTL_REGION_STAGE_CPU, 3 * MiB + 7);
		drop[i] = alloc_flags("t", 0, 2 * MiB);
		fill(keep[i], 3 * MiB + 7, (unsigned)i);
		fill(drop[i], 2 * MiB, 10u + (unsigned)i);
	}
	used0 = fakecuda_used();
	cr_assert(eq(int, region_pause(REQ(t, 0), &rep, &err), 0), "%s", err.msg);
	cr_assert(eq(u64, rep.allocations, 4));
	cr_assert(eq(u64, rep.copied_bytes, 2 * (3 * MiB + 7)));
	cr_assert(eq(u64, used0 - fakecuda_used(), 2 * 4 * MiB + 2 * 2 * MiB));
	cr_assert(eq(int, region_stat(&t, &st), 0));
	cr_assert(eq(u64, st.active_bytes, 0));
	cr_assert(eq(u64, st.staged_bytes, 2 * (3 * MiB + 4096)));
	cr_assert(eq(long, fakecuda_live_host_registrations(), 2));
	for (i = 0; i < 2; i++)
		cr_assert(faults(keep[i]) && faults(drop[i]));
	/* The unstaged ones were paused without staging: a staged pause of
	 * the tag now refuses, as for any discarded contents. */
	cr_assert(eq(int, do_pause("t", MEMCTL_STAGE_CPU, &err), -ENODATA));
	cr_assert(eq(int, do_resume("t", 0, &err), 0), "%s", err.msg);
	for (i = 0; i < 2; i++)
		cr_assert(same(keep[i], 3 * MiB + 7, (unsigned)i), "allocation %d differs", i);
	/* A pause asked to stage stages the others as well. */
	for (i = 0; i < 2; i++)
		fill(drop[i], 2 * MiB, 20u + (unsigned)i);
	cr_assert(eq(int, region_pause(REQ(t, MEMCTL_STAGE_CPU), &rep, &err), 0), "%s", err.msg);
	cr_assert(eq(u64, rep.copied_bytes, 2 * (3 * MiB + 7) + 2 * 2 * MiB));
	cr_assert(eq(int, do_resume("t", 0, &err), 0), "%s", err.msg);
	for (i = 0; i < 2; i++)
		cr_assert(same(keep[i], 3 * MiB + 7, (unsigned)i) &&
			  same(drop[i], 2 * MiB, 20u + (unsigned)i), "allocation %d differs", i);
}

Test(region, a_plain_pause_whose_staging_fails_releases_nothing_at_all)
{
	struct region_err err;
	struct memctl_stat st;
	struct tagset t = tags("t");
	uint64_t keep = alloc_flags("t", MEMCTL_REGION_STAGE_CPU, 4 * MiB);
	uint64_t drop = alloc_flags("t", 0, 4 * MiB), used0 = fakecuda_used();

	fill(keep, 4 * MiB, 1);
	fill(drop, 4 * MiB, 2);
	fakecuda_set_fail("cuMemHostRegister:1");
	cr_assert(eq(int, do_pause("t", 0, &err), -ENOMEM));
	cr_assert(not(eq(ptr, strstr(err.msg, "nothing released"), NULL)), "%s", err.msg);
	cr_assert(eq(u64, fakecuda_used(), used0));
	cr_assert(eq(int, region_stat(&t, &st), 0));
	cr_assert(eq(u64, st.active_bytes, 8 * MiB));
	cr_assert(same(keep, 4 * MiB, 1) && same(drop, 4 * MiB, 2));
	fakecuda_set_fail(NULL);
	cr_assert(eq(int, do_pause("t", 0, &err), 0), "%s", err.msg);
	cr_assert(eq(int, do_resume("t", 0, &err), 0), "%s", err.msg);
	cr_assert(same(keep, 4 * MiB, 1));
}

Test(region, an_unknown_allocation_flag_is_einval)
{
	struct region_err err;
	uint64_t va = 0;

	cr_assert(eq(int, region_alloc("t", 0x10, 0, MiB, &va, &err), -EINVAL));
	cr_assert(eq(int, region_alloc("t", MEMCTL_REGION_UNTAGGED, 0, MiB, &va, &err), -EINVAL));
	cr_assert(eq(u64, region_count(), 0));
}

Test(region, an_allocation_that_would_eat_into_the_margin_fails_and_leaves_nothing)
{
	struct region_err err;
	uint64_t fr = fakecuda_capacity() - fakecuda_used(), va = 0;

	region_set_margin(fr - 8 * MiB);
	cr_assert(eq(int, region_alloc("t", 0, 0, 8 * MiB + 1, &va, &err), -ENOMEM));
	cr_assert(not(eq(ptr, strstr(err.msg, "margin"), NULL)), "%s", err.msg);
	cr_assert(eq(u64, fakecuda_used(), 0));
	cr_assert(eq(long, fakecuda_live_reservations(), 0));
	cr_assert(eq(int, region_alloc("t", 0, 0, 8 * MiB, &va, &err), 0), "%s", err.msg);
	region_set_margin(0);
	cr_assert(eq(int, region_free(va), 0));
}

Test(region, a_resume_short_of_its_margin_changes_nothing_and_a_retry_succeeds)
{
	struct region_err err;
	struct memctl_stat st;
	struct tagset w = tags("w");
	uint64_t va[3], used, fr;
	int i;

	for (i = 0; i < 3; i++) {
		va[i] = alloc_flags("w", MEMCTL_REGION_STAGE_CPU, 5 * MiB);
		fill(va[i], 5 * MiB, (unsigned)i);
	}
	cr_assert(eq(int, do_pause("w", 0, &err), 0), "%s", err.msg);
	used = fakecuda_used();
	fr = fakecuda_capacity() - used;
	/* Mapping 18 MiB back would leave one byte less than the margin. */
	region_set_margin(fr - 18 * MiB + 1);
	cr_assert(eq(int, do_resume("w", 0, &err), -ENOMEM));
	cr_assert(not(eq(ptr, strstr(err.msg, "resume needs 18874368 bytes and a margin"), NULL)),
		  "%s", err.msg);
	cr_assert(eq(u64, fakecuda_used(), used));
	cr_assert(eq(long, fakecuda_live_handles(), 0));
	cr_assert(eq(int, region_stat(&w, &st), 0));
	cr_assert(eq(u64, st.active_bytes, 0));
	cr_assert(eq(u64, st.staged_bytes, 3 * 5 * MiB));
	region_set_margin(fr - 18 * MiB);
	cr_assert(eq(int, do_resume("w", 0, &err), 0), "%s", err.msg);
	region_set_margin(0);
	for (i = 0; i < 3; i++)
		cr_assert(same(va[i], 5 * MiB, (unsigned)i), "allocation %d differs", i);
}

Test(region, staged_contents_are_read_in_place_or_copied_out_only_while_staged)
{
	struct region_err err;
	unsigned char out[4096];
	const unsigned char *dev;
	uint64_t keep = alloc_flags("k", MEMCTL_REGION_STAGE_CPU, 6 * MiB + 9);
	uint64_t drop = alloc_flags("d", 0, MiB);
	void *host = NULL;

	fill(keep, 6 * MiB + 9, 4);
	dev = (const unsigned char *)(uintptr_t)keep;
	cr_assert(eq(int, region_host_copy(keep, 16, out, NULL, &err), -EBUSY));
	cr_assert(not(eq(ptr, strstr(err.msg, "is active"), NULL)), "%s", err.msg);
	{
		unsigned char want[4096];

		memcpy(want, dev + 5 * MiB, sizeof(want));
		cr_assert(eq(int, do_pause("k,d", 0, &err), 0), "%s", err.msg);
		/* Anywhere inside, up to the last byte. */
		cr_assert(eq(int, region_host_copy(keep + 5 * MiB, sizeof(out), out, NULL, &err),
			     0), "%s", err.msg);
		cr_assert(eq(int, memcmp(out, want, sizeof(out)), 0));
	}
	cr_assert(eq(int, region_host_copy(keep + 5 * MiB, 16, NULL, &host, &err), 0));
	cr_assert(eq(int, region_host_copy(keep, 6 * MiB + 9, NULL, &host, &err), 0));
	cr_assert(eq(int, region_host_copy(keep + 1, 6 * MiB + 9, NULL, &host, &err), -EINVAL));
	cr_assert(eq(int, region_host_copy(keep + 6 * MiB + 9, 0, NULL, &host, &err), -ENOENT));
	cr_assert(eq(int, region_host_copy(drop, 1, out, NULL, &err), -ENODATA));
	cr_assert(not(eq(ptr, strstr(err.msg, "without staging"), NULL)), "%s", err.msg);
	cr_assert(eq(int, region_host_copy(0x1000, 1, out, NULL, &err), -ENOENT));
	/* The pointer shows the staged bytes; a resume that keeps host
	 * memory keeps them readable, a resume that gives it back ends it. */
	cr_assert(eq(int, region_host_copy(keep, 1, NULL, &host, &err), 0));
	cr_assert(eq(int, do_resume("k", 0, &err), 0), "%s", err.msg);
	cr_assert(eq(int, memcmp(host, dev, 6 * MiB + 9), 0));
	cr_assert(eq(int, region_host_copy(keep, 1, out, NULL, &err), -EBUSY));
	cr_assert(eq(int, do_pause("k", 0, &err), 0), "%s", err.msg);
	cr_assert(eq(int, do_resume("k", MEMCTL_RELEASE_HOST, &err), 0), "%s", err.msg);
	cr_assert(faults((uint64_t)(uintptr_t)host));
	cr_assert(same(keep, 6 * MiB + 9, 4));
}
