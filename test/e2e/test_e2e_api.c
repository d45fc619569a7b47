/* SPDX-License-Identifier: Apache-2.0 */
/*
 * test_e2e_api.c - the library as an application meets it: this program
 * links only libcudart.so.13 (so it references cudaMalloc@libcudart.so.13,
 * like PyTorch) and runs with LD_PRELOAD=libmemctl.so. The same source runs
 * on the simulated driver (make test) and on a GPU (make test-gpu): device
 * memory is filled and checked through cudaMemcpy, and "released" means a
 * fault on the simulated driver and a failing copy on a GPU.
 */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>
#include <criterion/parameterized.h>
#include <cuda_runtime_api.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "e2e_suite.h"

#define MiB (1ull << 20)
#define GRAN (2 * MiB)

static char state_path[64];
/* On a GPU the driver may move free memory by a few pages of its own
 * (streams, page tables); the simulated device is exact. */
static size_t slack;

static void setup(void)
{
	snprintf(state_path, sizeof(state_path), "/tmp/fakecuda-e2e-%d.state", (int)getpid());
	unlink(state_path);
	setenv("FAKECUDA_STATE", state_path, 1);
	setenv("FAKECUDA_MEMORY", "4G", 1);
	setenv("MEMCTL_SOCKET", "0", 1); /* the socket has its own suite */
	cr_assert(eq(int, memctl_api_load(&M), 0), "libmemctl.so is not preloaded");
	e2e_strict();
	slack = on_fake() ? 0 : 16 * MiB;
}

static void teardown(void)
{
	unlink(state_path);
}

TestSuite(api, .init = setup, .fini = teardown, .timeout = 120);

static size_t rounded(size_t n)
{
	return (n + GRAN - 1) / GRAN * GRAN;
}

#define assert_near(actual, expected)                                              \
	cr_assert(le(sz, (actual) > (expected) ? (actual) - (expected)              \
					   : (expected) - (actual), slack),           \
		  "%s = %zu, expected %zu (slack %zu)", #actual, (size_t)(actual),   \
		  (size_t)(expected), slack)

Test(api, allocations_outside_regions_pass_through)
{
	struct memctl_stat st;
	void *p = NULL;
	size_t before = dev_free();

	cr_assert(eq(int, cudaMalloc(&p, 4 * MiB), cudaSuccess));
	assert_near(before - dev_free(), 4 * MiB);
	cr_assert(eq(int, M.stat(NULL, &st), -ENOENT));
	cr_assert(eq(u64, st.allocations, 0));
	cr_assert(eq(int, M.pause(NULL, 0), -ENOENT));
	cr_assert(eq(int, dev_fill(p, 4 * MiB, 3), 0));
	cr_assert(eq(long, dev_check(p, 4 * MiB, 3), -1));
	cr_assert(eq(int, cudaFree(p), cudaSuccess));
	assert_near(dev_free(), before);
}

Test(api, mixed_tags_staged_pause_releases_exact_bytes_and_restores_every_byte)
{
	void *w[64], *kv[16];
	size_t wsz[64], kvsz[16], wbytes = 0, kvbytes = 0, free0;
	struct memctl_stat st;
	int i;

	for (i = 0; i < 64; i++) {
		wsz[i] = (size_t)(i % 7) * MiB + (size_t)i * 4099 + 1;
		w[i] = tagged("weights", wsz[i]);
		cr_assert(eq(int, dev_fill(w[i], wsz[i], (unsigned)i), 0));
		wbytes += rounded(wsz[i]);
	}
	for (i = 0; i < 16; i++) {
		kvsz[i] = (size_t)(i + 1) * 300001;
		kv[i] = tagged("kv_cache", kvsz[i]);
		cr_assert(eq(int, dev_fill(kv[i], kvsz[i], 1000u + (unsigned)i), 0));
		kvbytes += rounded(kvsz[i]);
	}
	free0 = dev_free();
	cr_assert(eq(int, M.pause("weights", MEMCTL_STAGE_CPU), 0), "%s", M.strerror(-1));
	assert_near(dev_free() - free0, wbytes);
	cr_assert(eq(int, M.stat("weights", &st), 0));
	cr_assert(eq(u64, st.allocations, 64));
	cr_assert(eq(u64, st.paused_bytes, wbytes));
	cr_assert(eq(u64, st.active_bytes, 0));
	cr_assert(eq(int, M.stat("kv_cache", &st), 0));
	cr_assert(eq(u64, st.active_bytes, kvbytes));
	cr_assert(eq(u64, st.paused_bytes, 0));
	for (i = 0; i < 16; i++)
		cr_assert(eq(long, dev_check(kv[i], kvsz[i], 1000u + (unsigned)i), -1));
	cr_assert(released(w[0]));
	cr_assert(released((char *)w[63] + wsz[63] - 1));
	cr_assert(not(released(kv[0])));

	cr_assert(eq(int, M.resume("weights", 0), 0));
	assert_near(dev_free(), free0);
	for (i = 0; i < 64; i++)
		cr_assert(eq(long, dev_check(w[i], wsz[i], (unsigned)i), -1), "weights[%d]", i);
	for (i = 0; i < 64; i++)
		cr_assert(eq(int, cudaFree(w[i]), cudaSuccess));
	for (i = 0; i < 16; i++)
		cr_assert(eq(int, cudaFree(kv[i]), cudaSuccess));
	cr_assert(eq(int, M.stat(NULL, &st), -ENOENT));
}

Test(api, unstaged_pause_keeps_addresses_and_memory_works_again)
{
	char *p = tagged("kv_cache", 5 * MiB);
	size_t free0 = dev_free();

	cr_assert(eq(int, dev_fill(p, 5 * MiB, 1), 0));
	cr_assert(eq(int, M.pause("kv_cache", 0), 0));
	assert_near(dev_free() - free0, rounded(5 * MiB));
	cr_assert(released(p));
	cr_assert(eq(int, M.resume("kv_cache", 0), 0));
	/* Same pointer, writable again; contents are undefined by contract. */
	cr_assert(eq(int, dev_fill(p, 5 * MiB, 2), 0));
	cr_assert(eq(long, dev_check(p, 5 * MiB, 2), -1));
	assert_near(dev_free(), free0);
}

Test(api, free_while_paused_or_staged_succeeds_and_releases_all)
{
	void *a = tagged("a", MiB), *b = tagged("b", MiB);
	size_t free0;

	cr_assert(eq(int, dev_fill(b, MiB, 1), 0));
	free0 = dev_free();
	cr_assert(eq(int, M.pause("a", 0), 0));
	cr_assert(eq(int, M.pause("b", MEMCTL_STAGE_CPU), 0));
	assert_near(dev_free(), free0 + 2 * GRAN);
	cr_assert(eq(int, cudaFree(a), cudaSuccess));
	cr_assert(eq(int, cudaFree(b), cudaSuccess));
	assert_near(dev_free(), free0 + 2 * GRAN);
	cr_assert(eq(int, M.pause("a", 0), -ENOENT));
	cr_assert(eq(int, M.stat(NULL, &(struct memctl_stat){ 0 }), -ENOENT));
}

Test(api, regions_nest_and_unbalanced_end_is_einval)
{
	struct memctl_stat st;
	void *p = NULL, *q = NULL;

	cr_assert(eq(int, M.region_end(), -EINVAL));
	cr_assert(eq(int, M.region_begin("bad tag"), -EINVAL));
	cr_assert(eq(int, M.region_begin("outer"), 0));
	cr_assert(eq(int, M.region_begin("inner"), 0));
	cr_assert(eq(int, cudaMalloc(&p, MiB), cudaSuccess));
	cr_assert(eq(int, M.region_end(), 0));
	cr_assert(eq(int, cudaMalloc(&q, MiB), cudaSuccess));
	cr_assert(eq(int, M.region_end(), 0));
	cr_assert(eq(int, M.stat("inner", &st), 0));
	cr_assert(eq(u64, st.allocations, 1));
	cr_assert(eq(int, M.stat("outer", &st), 0));
	cr_assert(eq(u64, st.allocations, 1));
	cr_assert(eq(int, M.stat("outer,inner", &st), 0));
	cr_assert(eq(u64, st.allocations, 2));
}

Test(api, default_tag_tags_everything_outside_regions)
{
	struct memctl_stat st;
	void *p = NULL;

	cr_assert(eq(int, M.set_default_tag("everything"), 0));
	cr_assert(eq(int, cudaMalloc(&p, MiB), cudaSuccess));
	cr_assert(eq(int, M.stat("everything", &st), 0));
	cr_assert(eq(u64, st.allocations, 1));
	cr_assert(eq(int, M.set_default_tag(NULL), 0));
	cr_assert(eq(int, cudaMalloc(&p, MiB), cudaSuccess));
	cr_assert(eq(int, M.stat("everything", &st), 0));
	cr_assert(eq(u64, st.allocations, 1));
	cr_assert(eq(int, M.set_default_tag("no good"), -EINVAL));
}

Test(api, repeated_pause_and_resume_are_no_ops)
{
	void *p = tagged("w", MiB);
	size_t free0 = dev_free();

	cr_assert(eq(int, dev_fill(p, MiB, 4), 0));
	cr_assert(eq(int, M.resume("w", 0), 0));
	cr_assert(eq(int, M.pause("w", MEMCTL_STAGE_CPU), 0));
	cr_assert(eq(int, M.pause("w", MEMCTL_STAGE_CPU), 0));
	cr_assert(eq(int, M.pause("w", 0), 0));
	assert_near(dev_free() - free0, GRAN);
	cr_assert(eq(int, M.resume("w", 0), 0));
	cr_assert(eq(int, M.resume("w", 0), 0));
	cr_assert(eq(long, dev_check(p, MiB, 4), -1));
}

Test(api, host_buffers_are_kept_across_cycles_until_released)
{
	void *p = tagged("w", 8 * MiB);
	struct memctl_stat st;
	int cycle;

	for (cycle = 0; cycle < 3; cycle++) {
		cr_assert(eq(int, dev_fill(p, 8 * MiB, (unsigned)cycle), 0));
		cr_assert(eq(int, M.pause("w", MEMCTL_STAGE_CPU), 0));
		cr_assert(eq(int, M.stat("w", &st), 0));
		cr_assert(eq(u64, st.staged_bytes, 8 * MiB));
		cr_assert(eq(int, M.resume("w", 0), 0));
		cr_assert(eq(long, dev_check(p, 8 * MiB, (unsigned)cycle), -1));
	}
	cr_assert(eq(int, M.prepare("w"), 0));
	cr_assert(eq(int, M.release_host("w"), 0));
	cr_assert(eq(int, M.pause("w", MEMCTL_STAGE_CPU), 0));
	cr_assert(eq(int, M.release_host("w"), 0)); /* staged: kept */
	cr_assert(eq(int, M.resume("w", MEMCTL_RELEASE_HOST), 0));
	cr_assert(eq(long, dev_check(p, 8 * MiB, 2), -1));
	cr_assert(eq(int, M.pause("w", 0x40), -EINVAL));
	cr_assert(eq(int, M.resume("w", MEMCTL_STAGE_CPU), -EINVAL));
}

/* 8 threads allocate, write, check and free tagged and untagged memory
 * while a ninth pauses and resumes the tag "bg" 200 times. */
struct worker {
	int id;
	int errors;
};

static volatile int stop_workers;

static void *churn(void *arg)
{
	struct worker *w = arg;
	int round = 0;

	while (!stop_workers) {
		void *p = NULL;
		size_t n = (size_t)(w->id + 1) * 65536 + (size_t)round;
		unsigned seed = (unsigned)(w->id * 7 + round);

		if (round % 2)
			M.region_begin("churn");
		if (cudaMalloc(&p, n) != cudaSuccess)
			w->errors++;
		if (round % 2)
			M.region_end();
		if (p != NULL) {
			if (dev_fill(p, n, seed) != 0 || dev_check(p, n, seed) != -1)
				w->errors++;
			if (cudaFree(p) != cudaSuccess)
				w->errors++;
		}
		round++;
	}
	return NULL;
}

Test(api, threads_allocate_while_another_pauses_and_resumes, .timeout = 300)
{
	pthread_t t[8];
	struct worker w[8];
	void *bg = tagged("bg", 3 * MiB);
	int i, cycle;

	cr_assert(eq(int, dev_fill(bg, 3 * MiB, 77), 0));
	stop_workers = 0;
	for (i = 0; i < 8; i++) {
		w[i] = (struct worker){ .id = i };
		pthread_create(&t[i], NULL, churn, &w[i]);
	}
	for (cycle = 0; cycle < 200; cycle++) {
		cr_assert(eq(int, M.pause("bg", cycle % 2 ? MEMCTL_STAGE_CPU : 0), 0));
		cr_assert(eq(int, M.resume("bg", 0), 0));
		if (cycle % 2)
			cr_assert(eq(long, dev_check(bg, 3 * MiB, 77), -1), "cycle %d", cycle);
		else
			cr_assert(eq(int, dev_fill(bg, 3 * MiB, 77), 0));
	}
	stop_workers = 1;
	for (i = 0; i < 8; i++) {
		pthread_join(t[i], NULL);
		cr_assert(eq(int, w[i].errors, 0), "worker %d", i);
	}
	cr_assert(eq(int, M.stat("churn", &(struct memctl_stat){ 0 }), -ENOENT));
}

Test(api, forked_child_does_not_inherit_the_registry)
{
	void *p = tagged("weights", MiB);
	struct memctl_stat st;
	pid_t pid;
	int status;

	cr_assert(eq(int, dev_fill(p, MiB, 8), 0));
	pid = fork();
	if (pid == 0) {
		struct memctl_stat cst;
		int ok = M.stat("weights", &cst) == -ENOENT && M.pause("weights", 0) == -ENOENT;

		_exit(ok ? 0 : 1);
	}
	waitpid(pid, &status, 0);
	cr_assert(eq(int, WIFEXITED(status) ? WEXITSTATUS(status) : -1, 0));
	cr_assert(eq(int, M.stat("weights", &st), 0));
	cr_assert(eq(u64, st.active_bytes, GRAN));
	cr_assert(eq(long, dev_check(p, MiB, 8), -1));
}

static int stop_default_tags;

static void *default_tags_main(void *arg)
{
	(void)arg;
	while (!__atomic_load_n(&stop_default_tags, __ATOMIC_ACQUIRE)) {
		(void)M.set_default_tag("model");
		(void)M.set_default_tag("other");
	}
	return NULL;
}

/* A fork while another thread changes the default tag: the child must not
 * wait forever on the default tag's lock that thread held. Without the fix
 * a child hangs and the suite's timeout fails the test. The child takes
 * that lock through memctl_set_default_tag, not through an allocation:
 * a real driver's calls in a forked child are undefined (on an H200 with
 * driver 580 the 200 children of the first version took longer than the
 * 60 s timeout), and the lock is the same. */
Test(api, a_child_forked_while_the_default_tag_changes_can_change_it, .timeout = 60)
{
	pthread_t t;
	int i, status;

	cr_assert(eq(int, pthread_create(&t, NULL, default_tags_main, NULL), 0));
	for (i = 0; i < 200; i++) {
		pid_t pid = fork();

		if (pid == 0) {
			prctl(PR_SET_PDEATHSIG, SIGKILL); /* no hung child outlives a failure */
			_exit(M.set_default_tag("child") == 0 ? 0 : 1);
		}
		cr_assert(gt(int, pid, 0));
		waitpid(pid, &status, 0);
		cr_assert(eq(int, WIFEXITED(status) ? WEXITSTATUS(status) : -1, 0));
	}
	__atomic_store_n(&stop_default_tags, 1, __ATOMIC_RELEASE);
	pthread_join(t, NULL);
	cr_assert(eq(int, M.set_default_tag(NULL), 0));
}

Test(api, strerror_texts)
{
	cr_assert(not(eq(ptr, strstr(M.strerror(-ENOENT), "tag"), NULL)));
	cr_assert(eq(int, strcmp(M.strerror(0), "success"), 0));
	cr_assert(eq(int, M.pause("nope", 0), -ENOENT));
	cr_assert(not(eq(ptr, strstr(M.strerror(-ENOENT), "nope"), NULL)));
}

/* ---- per-allocation staging, untagged regions, margin, host copies -- */

/* cudaMalloc of n bytes inside a region of `tag` with `flags`. */
static void *tagged_flags(const char *tag, unsigned flags, size_t n)
{
	void *p = NULL;

	cr_assert(eq(int, M.region_begin_flags(tag, flags), 0));
	cr_assert(eq(int, cudaMalloc(&p, n), cudaSuccess));
	cr_assert(eq(int, M.region_end(), 0));
	return p;
}

Test(api, a_plain_pause_keeps_what_a_staging_region_made_and_drops_the_rest)
{
	void *keep = tagged_flags("shared", MEMCTL_REGION_STAGE_CPU, 3 * MiB + 1);
	void *drop = tagged("shared", 5 * MiB);
	size_t free0 = dev_free();
	struct memctl_stat st;

	cr_assert(eq(int, dev_fill(keep, 3 * MiB + 1, 21), 0));
	cr_assert(eq(int, dev_fill(drop, 5 * MiB, 22), 0));
	cr_assert(eq(int, M.pause("shared", 0), 0), "%s", M.strerror(-1));
	assert_near(dev_free() - free0, rounded(3 * MiB + 1) + rounded(5 * MiB));
	cr_assert(eq(int, M.stat("shared", &st), 0));
	cr_assert(eq(u64, st.staged_bytes, 3 * MiB + 4096));
	cr_assert(released(keep));
	cr_assert(released(drop));
	cr_assert(eq(int, M.resume("shared", 0), 0), "%s", M.strerror(-1));
	cr_assert(eq(long, dev_check(keep, 3 * MiB + 1, 21), -1));
	cr_assert(eq(int, cudaFree(keep), cudaSuccess));
	cr_assert(eq(int, cudaFree(drop), cudaSuccess));
}

Test(api, an_untagged_region_passes_through_inside_a_region_and_under_a_default_tag)
{
	void *p = NULL, *q = NULL, *r = NULL;
	struct memctl_stat st;

	cr_assert(eq(int, M.set_default_tag("dflt"), 0));
	cr_assert(eq(int, M.region_begin("outer"), 0));
	cr_assert(eq(int, M.region_begin_flags(NULL, MEMCTL_REGION_UNTAGGED), 0));
	cr_assert(eq(int, cudaMalloc(&p, MiB), cudaSuccess));
	cr_assert(eq(int, M.region_end(), 0));
	cr_assert(eq(int, cudaMalloc(&q, MiB), cudaSuccess));
	cr_assert(eq(int, M.region_end(), 0));
	cr_assert(eq(int, M.region_begin_flags(NULL, MEMCTL_REGION_UNTAGGED), 0));
	cr_assert(eq(int, cudaMalloc(&r, MiB), cudaSuccess));
	cr_assert(eq(int, M.region_end(), 0));
	cr_assert(eq(int, M.set_default_tag(NULL), 0));
	cr_assert(eq(int, M.stat("all", &st), 0));
	cr_assert(eq(u64, st.allocations, 1)); /* q alone */
	cr_assert(eq(int, M.stat("outer", &st), 0));
	cr_assert(eq(int, M.pause("all", 0), 0));
	cr_assert(not(released(p)));
	cr_assert(released(q));
	cr_assert(not(released(r)));
	cr_assert(eq(int, M.resume("all", 0), 0));
	cr_assert(eq(int, M.region_begin_flags("x", MEMCTL_REGION_UNTAGGED), -EINVAL));
	cr_assert(eq(int, M.region_begin_flags(NULL, 0), -EINVAL));
	cr_assert(eq(int, M.region_begin_flags(NULL, MEMCTL_REGION_UNTAGGED |
						     MEMCTL_REGION_STAGE_CPU), -EINVAL));
	cr_assert(eq(int, M.region_begin_flags("x", 0x40), -EINVAL));
	cr_assert(eq(int, M.region_end(), -EINVAL));
	cr_assert(eq(int, cudaFree(p), cudaSuccess));
	cr_assert(eq(int, cudaFree(q), cudaSuccess));
	cr_assert(eq(int, cudaFree(r), cudaSuccess));
}

Test(api, a_default_tag_can_keep_contents_too)
{
	void *p = NULL;

	cr_assert(eq(int, M.set_default_tag_flags("dflt", MEMCTL_REGION_STAGE_CPU), 0));
	cr_assert(eq(int, cudaMalloc(&p, 2 * MiB + 3), cudaSuccess));
	cr_assert(eq(int, M.set_default_tag(NULL), 0));
	cr_assert(eq(int, dev_fill(p, 2 * MiB + 3, 31), 0));
	cr_assert(eq(int, M.pause("dflt", 0), 0));
	cr_assert(released(p));
	cr_assert(eq(int, M.resume("dflt", 0), 0));
	cr_assert(eq(long, dev_check(p, 2 * MiB + 3, 31), -1));
	cr_assert(eq(int, M.set_default_tag_flags(NULL, MEMCTL_REGION_STAGE_CPU), -EINVAL));
	cr_assert(eq(int, M.set_default_tag_flags("dflt", MEMCTL_REGION_UNTAGGED), -EINVAL));
	cr_assert(eq(int, cudaFree(p), cudaSuccess));
}

Test(api, the_margin_fails_allocations_and_resumes_cleanly_and_a_retry_succeeds)
{
	void *p = NULL, *w = tagged_flags("w", MEMCTL_REGION_STAGE_CPU, 64 * MiB);
	size_t fr;

	cr_assert(eq(int, dev_fill(w, 64 * MiB, 41), 0));
	/* An allocation that would eat into the margin is out of memory. */
	cr_assert(eq(int, M.set_margin(dev_free() - 4 * MiB), 0));
	cr_assert(eq(int, M.region_begin("m"), 0));
	cr_assert(eq(int, cudaMalloc(&p, 64 * MiB), cudaErrorMemoryAllocation));
	cr_assert(eq(int, M.region_end(), 0));
	cr_assert(eq(int, M.stat("m", &(struct memctl_stat){ 0 }), -ENOENT));
	cr_assert(eq(int, M.set_margin(0), 0));
	/* A resume that would is refused before it maps anything. */
	cr_assert(eq(int, M.pause("w", 0), 0));
	fr = dev_free();
	cr_assert(eq(int, M.set_margin(fr - 32 * MiB), 0));
	cr_assert(eq(int, M.resume("w", 0), -ENOMEM));
	cr_assert(not(eq(ptr, strstr(M.strerror(-ENOMEM), "margin"), NULL)), "%s",
		  M.strerror(-ENOMEM));
	assert_near(dev_free(), fr);
	cr_assert(released(w));
	cr_assert(eq(int, M.set_margin(0), 0));
	cr_assert(eq(int, M.resume("w", 0), 0), "%s", M.strerror(-1));
	cr_assert(eq(long, dev_check(w, 64 * MiB, 41), -1));
	cr_assert(eq(int, cudaFree(w), cudaSuccess));
}

Test(api, staged_contents_are_read_in_host_memory_while_paused)
{
	char *p = tagged_flags("w", MEMCTL_REGION_STAGE_CPU, 6 * MiB);
	unsigned char *got = malloc(MiB);
	void *host = NULL;
	size_t i;

	cr_assert(eq(int, dev_fill(p, 6 * MiB, 51), 0));
	cr_assert(eq(int, M.host_read(p, 16, got), -EBUSY));
	cr_assert(eq(int, M.pause("w", 0), 0));
	cr_assert(eq(int, M.host_read(p + 5 * MiB, MiB, got), 0), "%s", M.strerror(-1));
	for (i = 0; i < MiB; i++)
		cr_assert(eq(u8, got[i], pattern(5 * MiB + i, 51)), "byte %zu", i);
	cr_assert(eq(int, M.host_copy(p + 3, 6 * MiB - 3, &host), 0), "%s", M.strerror(-1));
	cr_assert(eq(long, check((char *)host - 3, 6 * MiB, 51), -1));
	cr_assert(eq(int, M.host_copy(p + 3, 6 * MiB, &host), -EINVAL));
	cr_assert(eq(int, M.host_copy(got, 1, &host), -ENOENT));
	cr_assert(eq(int, M.host_copy(p, 1, NULL), -EINVAL));
	cr_assert(eq(int, M.host_read(p, 1, NULL), -EINVAL));
	cr_assert(eq(int, M.resume("w", 0), 0));
	cr_assert(eq(long, dev_check(p, 6 * MiB, 51), -1));
	free(got);
	cr_assert(eq(int, cudaFree(p), cudaSuccess));
}

Test(api, the_pluggable_allocator_tags_as_cudaMalloc_does)
{
	struct memctl_stat st;
	void *p, *q;

	cr_assert(eq(int, M.region_begin_flags("pool", MEMCTL_REGION_STAGE_CPU), 0));
	p = M.pool_alloc(3 * MiB, 0, NULL);
	cr_assert(eq(int, M.region_end(), 0));
	q = M.pool_alloc(MiB, 0, NULL);
	cr_assert(not(eq(ptr, p, NULL)));
	cr_assert(not(eq(ptr, q, NULL)));
	cr_assert(eq(int, M.stat("all", &st), 0));
	cr_assert(eq(u64, st.allocations, 1));
	cr_assert(eq(int, dev_fill(p, 3 * MiB, 61), 0));
	cr_assert(eq(int, M.pause("pool", 0), 0));
	cr_assert(released(p));
	cr_assert(eq(int, M.resume("pool", 0), 0));
	cr_assert(eq(long, dev_check(p, 3 * MiB, 61), -1));
	M.pool_free(p, 3 * MiB, 0, NULL);
	M.pool_free(q, MiB, 0, NULL);
	cr_assert(eq(int, M.stat("all", &st), -ENOENT));
	cr_assert(eq(ptr, M.pool_alloc(0, 0, NULL), NULL));
}

/* ---- nothing the application does waits for a request -------------- */

/* The simulated driver's holds, found at run time (a GPU has none). */
static struct {
	void (*hold)(const char *);
	void (*unhold)(void);
	int (*held)(const char *);
} fake;

static void need_holds(void)
{
	*(void **)&fake.hold = dlsym(RTLD_DEFAULT, "fakecuda_hold");
	*(void **)&fake.unhold = dlsym(RTLD_DEFAULT, "fakecuda_unhold");
	*(void **)&fake.held = dlsym(RTLD_DEFAULT, "fakecuda_held");
	if (fake.hold == NULL || fake.unhold == NULL || fake.held == NULL)
		cr_skip_test("needs the simulated driver, which can hold a call open");
}

static void wait_held(const char *fn)
{
	while (fake.held(fn) == 0)
		usleep(1000);
}

#define BIG (256 * MiB)
#define NBIG 4 /* a staged pause of 1 GiB */

struct api_pause {
	pthread_t thread;
	int rc;
};

static void *api_pause_main(void *arg)
{
	struct api_pause *b = arg;

	b->rc = M.pause("w", MEMCTL_STAGE_CPU);
	return NULL;
}

static void big_filled(void **w)
{
	int i;

	for (i = 0; i < NBIG; i++) {
		w[i] = tagged("w", BIG);
		cr_assert(eq(int, dev_fill(w[i], BIG, (unsigned)i), 0));
	}
}

/* Untagged calls, allocations and frees of another tag, and stat, all
 * return while the pause is held inside `fn`. `parked` is an allocation of
 * another tag paused beforehand. */
static void others_do_not_wait(const char *fn, void *parked)
{
	struct memctl_stat st;
	void *p = NULL, *q, *other = tagged("kv", MiB);
	/* A hold catches every caller of fn: a cudaFree of active tagged
	 * memory synchronises and unmaps (as the runtime's cudaFree
	 * synchronises), so under those holds it is freed afterwards. */
	int frees_call_fn = strcmp(fn, "cuCtxSynchronize") == 0 || strcmp(fn, "cuMemUnmap") == 0;

	cr_assert(eq(int, cudaMalloc(&p, MiB), cudaSuccess));
	cr_assert(eq(int, cudaFree(p), cudaSuccess));
	q = tagged("kv", 3 * MiB);
	cr_assert(eq(int, cudaFree(parked), cudaSuccess));
	cr_assert(eq(int, M.stat("w", &st), 0));
	cr_assert(eq(u64, st.allocations, NBIG));
	if (!frees_call_fn) {
		cr_assert(eq(int, cudaFree(q), cudaSuccess));
		cr_assert(eq(int, cudaFree(other), cudaSuccess));
	}
	cr_assert(gt(int, fake.held(fn), 0), "the pause went on while we waited");
	if (frees_call_fn) {
		fake.unhold();
		cr_assert(eq(int, cudaFree(q), cudaSuccess));
		cr_assert(eq(int, cudaFree(other), cudaSuccess));
	}
}

/* Where the pause is held: each phase of a staged pause. */
struct held_call {
	char fn[32];
};

ParameterizedTestParameters(api, nothing_else_waits_for_a_held_staged_pause)
{
	static struct held_call held[] = { { "cuCtxSynchronize" }, { "cuMemHostRegister" },
					   { "cuMemcpyDtoHAsync" }, { "cuEventSynchronize" },
					   { "cuMemUnmap" } };
	return cr_make_param_array(struct held_call, held, sizeof(held) / sizeof(held[0]));
}

ParameterizedTest(struct held_call *h, api, nothing_else_waits_for_a_held_staged_pause)
{
	void *w[NBIG], *parked;
	struct api_pause b;
	int i;

	need_holds();
	big_filled(w);
	parked = tagged("parked", MiB);
	cr_assert(eq(int, M.pause("parked", 0), 0));
	fake.hold(h->fn);
	cr_assert(eq(int, pthread_create(&b.thread, NULL, api_pause_main, &b), 0));
	wait_held(h->fn);
	others_do_not_wait(h->fn, parked);
	fake.unhold();
	pthread_join(b.thread, NULL);
	cr_assert(eq(int, b.rc, 0), "%s", M.strerror(b.rc));
	cr_assert(eq(int, M.resume("w", 0), 0));
	for (i = 0; i < NBIG; i++)
		cr_assert(eq(long, dev_check(w[i], BIG, (unsigned)i), -1), "w[%d]", i);
}

/* cudaFree of an allocation the pause is staging: that allocation's
 * staging is dropped, the free returns while the pause is still held,
 * and the rest of the pause completes. */
static void free_while_staging(const char *fn, int victim)
{
	struct memctl_stat st;
	void *w[NBIG];
	struct api_pause b;
	int i;

	need_holds();
	big_filled(w);
	fake.hold(fn);
	cr_assert(eq(int, pthread_create(&b.thread, NULL, api_pause_main, &b), 0));
	wait_held(fn);
	cr_assert(eq(int, cudaFree(w[victim]), cudaSuccess));
	cr_assert(gt(int, fake.held(fn), 0), "the free waited for the pause");
	fake.unhold();
	pthread_join(b.thread, NULL);
	cr_assert(eq(int, b.rc, 0), "%s", M.strerror(b.rc));
	cr_assert(eq(int, M.stat("w", &st), 0));
	cr_assert(eq(u64, st.allocations, NBIG - 1));
	cr_assert(eq(u64, st.active_bytes, 0));
	cr_assert(eq(int, M.resume("w", 0), 0));
	for (i = 0; i < NBIG; i++)
		if (i != victim)
			cr_assert(eq(long, dev_check(w[i], BIG, (unsigned)i), -1), "w[%d]", i);
}

Test(api, freeing_an_allocation_while_its_buffer_is_pinned_drops_only_it)
{
	free_while_staging("cuMemHostRegister", 1);
}

Test(api, freeing_an_allocation_whose_copies_are_queued_drops_only_it)
{
	free_while_staging("cuEventSynchronize", NBIG - 1);
}
