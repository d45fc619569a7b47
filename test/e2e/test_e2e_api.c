/* SPDX-License-Identifier: Apache-2.0 */
/*
 * test_e2e_api.c - the library as an application meets it: this program
 * links only the simulated libcudart.so.13 (so it references
 * cudaMalloc@libcudart.so.13, like PyTorch) and runs with
 * LD_PRELOAD=libmemctl.so. Each test runs in its own process.
 */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>
#include <cuda_runtime_api.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "e2e.h"
#include "fakecuda.h"

#define MiB (1ull << 20)
#define GRAN (2 * MiB)

static struct memctl_api M;
static char state_path[64];

static void setup(void)
{
	snprintf(state_path, sizeof(state_path), "/tmp/fakecuda-e2e-%d.state", (int)getpid());
	unlink(state_path);
	setenv("FAKECUDA_STATE", state_path, 1);
	setenv("FAKECUDA_MEMORY", "4G", 1);
	setenv("MEMCTL_SOCKET", "0", 1); /* the socket has its own suite */
	cr_assert(eq(int, memctl_api_load(&M), 0), "libmemctl.so is not preloaded");
}

static void teardown(void)
{
	unlink(state_path);
}

TestSuite(api, .init = setup, .fini = teardown, .timeout = 60);

static size_t rounded(size_t n)
{
	return (n + GRAN - 1) / GRAN * GRAN;
}

static void *tagged(const char *tag, size_t n)
{
	void *p = NULL;

	cr_assert(eq(int, M.region_begin(tag), 0));
	cr_assert(eq(int, cudaMalloc(&p, n), cudaSuccess));
	cr_assert(eq(int, M.region_end(), 0));
	return p;
}

static int faults(void *p)
{
	pid_t pid = fork();
	int st;

	if (pid == 0) {
		(void)*(volatile const char *)p;
		_exit(0);
	}
	waitpid(pid, &st, 0);
	return WIFSIGNALED(st) && WTERMSIG(st) == SIGSEGV;
}

static size_t dev_free(void)
{
	size_t fr, tot;

	cr_assert(eq(int, cudaMemGetInfo(&fr, &tot), cudaSuccess));
	return fr;
}

Test(api, allocations_outside_regions_pass_through)
{
	struct memctl_stat st;
	void *p = NULL;
	size_t before = dev_free();

	cr_assert(eq(int, cudaMalloc(&p, 3 * MiB), cudaSuccess));
	/* Plain cudaMalloc is charged its own size, not a VMM granule. */
	cr_assert(eq(sz, before - dev_free(), 3 * MiB));
	cr_assert(eq(int, M.stat(NULL, &st), -ENOENT));
	cr_assert(eq(u64, st.allocations, 0));
	cr_assert(eq(int, M.pause(NULL, 0), -ENOENT));
	cr_assert(eq(int, cudaFree(p), cudaSuccess));
	cr_assert(eq(sz, dev_free(), before));
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
		fill(w[i], wsz[i], (unsigned)i);
		wbytes += rounded(wsz[i]);
	}
	for (i = 0; i < 16; i++) {
		kvsz[i] = (size_t)(i + 1) * 300001;
		kv[i] = tagged("kv_cache", kvsz[i]);
		fill(kv[i], kvsz[i], 1000u + (unsigned)i);
		kvbytes += rounded(kvsz[i]);
	}
	free0 = dev_free();
	cr_assert(eq(int, M.pause("weights", MEMCTL_STAGE_CPU), 0), "%s",
		  M.strerror(-1));
	cr_assert(eq(sz, dev_free() - free0, wbytes));
	cr_assert(eq(int, M.stat("weights", &st), 0));
	cr_assert(eq(u64, st.allocations, 64));
	cr_assert(eq(u64, st.paused_bytes, wbytes));
	cr_assert(eq(int, M.stat("kv_cache", &st), 0));
	cr_assert(eq(u64, st.active_bytes, kvbytes));
	for (i = 0; i < 16; i++)
		cr_assert(eq(long, check(kv[i], kvsz[i], 1000u + (unsigned)i), -1));
	cr_assert(faults(w[0]));
	cr_assert(faults((char *)w[63] + wsz[63] - 1));
	cr_assert(not(faults(kv[0])));

	cr_assert(eq(int, M.resume("weights", 0), 0));
	cr_assert(eq(sz, dev_free(), free0));
	for (i = 0; i < 64; i++)
		cr_assert(eq(long, check(w[i], wsz[i], (unsigned)i), -1), "weights[%d]", i);
	for (i = 0; i < 64; i++)
		cr_assert(eq(int, cudaFree(w[i]), cudaSuccess));
	for (i = 0; i < 16; i++)
		cr_assert(eq(int, cudaFree(kv[i]), cudaSuccess));
	cr_assert(eq(long, fakecuda_live_handles(), 0));
}

Test(api, unstaged_pause_keeps_addresses_and_memory_works_again)
{
	char *p = tagged("kv_cache", 5 * MiB);
	size_t free0 = dev_free();

	fill(p, 5 * MiB, 1);
	cr_assert(eq(int, M.pause("kv_cache", 0), 0));
	cr_assert(eq(sz, dev_free() - free0, rounded(5 * MiB)));
	cr_assert(faults(p));
	cr_assert(eq(int, M.resume("kv_cache", 0), 0));
	/* Same pointer, writable again; contents are undefined by contract. */
	fill(p, 5 * MiB, 2);
	cr_assert(eq(long, check(p, 5 * MiB, 2), -1));
	cr_assert(eq(sz, dev_free(), free0));
}

Test(api, resume_oom_at_each_device_allocation_keeps_staged_bytes)
{
	void *p[5];
	char spec[40];
	long handles;
	int i, k;

	for (i = 0; i < 5; i++) {
		p[i] = tagged("weights", (size_t)(i + 1) * MiB);
		fill(p[i], (size_t)(i + 1) * MiB, (unsigned)i);
	}
	cr_assert(eq(int, M.pause("weights", MEMCTL_STAGE_CPU), 0));
	handles = fakecuda_live_handles();
	for (k = 1; k <= 5; k++) {
		snprintf(spec, sizeof(spec), "cuMemCreate:%d", k);
		fakecuda_set_fail(spec);
		cr_assert(eq(int, M.resume("weights", 0), -ENOMEM));
		cr_assert(not(eq(ptr, strstr(M.strerror(-ENOMEM), "device memory"), NULL)));
		cr_assert(eq(long, fakecuda_live_handles(), handles));
		cr_assert(faults(p[0]));
	}
	fakecuda_set_fail(NULL);
	cr_assert(eq(int, M.resume("weights", 0), 0));
	for (i = 0; i < 5; i++)
		cr_assert(eq(long, check(p[i], (size_t)(i + 1) * MiB, (unsigned)i), -1));
}

Test(api, host_pinning_failure_releases_nothing)
{
	void *p = tagged("weights", 8 * MiB), *q = tagged("weights", MiB);
	size_t free0 = dev_free();
	struct memctl_stat st;

	fill(p, 8 * MiB, 5);
	fakecuda_set_fail("cuMemHostRegister:2");
	cr_assert(eq(int, M.pause("weights", MEMCTL_STAGE_CPU), -ENOMEM));
	cr_assert(not(eq(ptr, strstr(M.strerror(-ENOMEM), "host memory"), NULL)));
	cr_assert(eq(sz, dev_free(), free0));
	cr_assert(eq(int, M.stat("weights", &st), 0));
	cr_assert(eq(u64, st.paused_bytes, 0));
	cr_assert(eq(long, check(p, 8 * MiB, 5), -1));
	(void)q;
}

Test(api, free_while_paused_or_staged_succeeds_and_releases_all)
{
	void *a = tagged("a", MiB), *b = tagged("b", MiB);
	size_t free0 = dev_free();

	cr_assert(eq(int, M.pause("a", 0), 0));
	cr_assert(eq(int, M.pause("b", MEMCTL_STAGE_CPU), 0));
	cr_assert(eq(int, cudaFree(a), cudaSuccess));
	cr_assert(eq(int, cudaFree(b), cudaSuccess));
	cr_assert(eq(sz, dev_free(), free0 + 2 * GRAN));
	cr_assert(eq(long, fakecuda_live_handles(), 0));
	cr_assert(eq(long, fakecuda_live_host_registrations(), 0));
	cr_assert(eq(int, M.pause("a", 0), -ENOENT));
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

	fill(p, MiB, 4);
	cr_assert(eq(int, M.resume("w", 0), 0));
	cr_assert(eq(int, M.pause("w", MEMCTL_STAGE_CPU), 0));
	cr_assert(eq(int, M.pause("w", MEMCTL_STAGE_CPU), 0));
	cr_assert(eq(int, M.pause("w", 0), 0));
	cr_assert(eq(sz, dev_free() - free0, GRAN));
	cr_assert(eq(int, M.resume("w", 0), 0));
	cr_assert(eq(int, M.resume("w", 0), 0));
	cr_assert(eq(long, check(p, MiB, 4), -1));
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
		int tag = round % 2;

		if (tag)
			M.region_begin("churn");
		if (cudaMalloc(&p, n) != cudaSuccess)
			w->errors++;
		if (tag)
			M.region_end();
		if (p != NULL) {
			fill(p, n, (unsigned)(w->id * 7 + round));
			if (check(p, n, (unsigned)(w->id * 7 + round)) != -1)
				w->errors++;
			if (cudaFree(p) != cudaSuccess)
				w->errors++;
		}
		round++;
	}
	return NULL;
}

Test(api, threads_allocate_while_another_pauses_and_resumes, .timeout = 120)
{
	pthread_t t[8];
	struct worker w[8];
	void *bg = tagged("bg", 3 * MiB);
	int i, cycle;

	fill(bg, 3 * MiB, 77);
	stop_workers = 0;
	for (i = 0; i < 8; i++) {
		w[i] = (struct worker){ .id = i };
		pthread_create(&t[i], NULL, churn, &w[i]);
	}
	for (cycle = 0; cycle < 200; cycle++) {
		cr_assert(eq(int, M.pause("bg", cycle % 2 ? MEMCTL_STAGE_CPU : 0), 0));
		cr_assert(eq(int, M.resume("bg", 0), 0));
		if (cycle % 2)
			cr_assert(eq(long, check(bg, 3 * MiB, 77), -1), "cycle %d", cycle);
		else
			fill(bg, 3 * MiB, 77);
	}
	stop_workers = 1;
	for (i = 0; i < 8; i++) {
		pthread_join(t[i], NULL);
		cr_assert(eq(int, w[i].errors, 0), "worker %d", i);
	}
	cr_assert(eq(int, M.stat("churn", &(struct memctl_stat){0}), -ENOENT));
}

Test(api, forked_child_does_not_inherit_the_registry)
{
	void *p = tagged("weights", MiB);
	struct memctl_stat st;
	pid_t pid;
	int status;

	fill(p, MiB, 8);
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
	cr_assert(eq(long, check(p, MiB, 8), -1));
}

Test(api, strerror_texts)
{
	cr_assert(not(eq(ptr, strstr(M.strerror(-ENOENT), "tag"), NULL)));
	cr_assert(eq(int, strcmp(M.strerror(0), "success"), 0));
	cr_assert(eq(int, M.pause("nope", 0), -ENOENT));
	cr_assert(not(eq(ptr, strstr(M.strerror(-ENOENT), "nope"), NULL)));
}
