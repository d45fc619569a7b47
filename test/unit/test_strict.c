/* SPDX-License-Identifier: Apache-2.0 */
/*
 * test_strict.c - the simulated driver is at least as strict as the GPU,
 * and the registry keeps its ordering promises there.
 *
 * The first tests prove the simulated driver itself: queued work runs only
 * when waited for, memory taken away under queued work is a violation,
 * work on unmapped memory loses the context, calls without a context fail,
 * device memory of dead processes comes back, a forked child never
 * deadlocks, kernels, graphs and stream-ordered allocation behave. The
 * last ones hold the registry to each ordering it must keep; each fails
 * when the matching mistake is planted in region/ (docs/testing.md).
 */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>
#include <cuda.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <sys/wait.h>

#include "fixture.h"

#define MiB (1ull << 20)

/* Queued work runs only when waited for (FAKECUDA_ASYNC=lazy), whatever
 * the environment says: these tests assert what has not run yet. */
static void setup(void)
{
	fixture_setup();
	cr_assert(eq(int, fakecuda_set_async("lazy"), 0));
}

TestSuite(strict, .init = setup, .fini = fixture_teardown, .timeout = 30);

/* The primary context, current in the calling thread as the runtime makes it. */
static CUcontext primary(void)
{
	CUcontext ctx = NULL;

	cr_assert(eq(int, cuDevicePrimaryCtxRetain(&ctx, 0), CUDA_SUCCESS));
	cr_assert(eq(int, cuCtxSetCurrent(ctx), CUDA_SUCCESS));
	return ctx;
}

static CUstream stream(unsigned flags)
{
	CUstream s = NULL;

	cr_assert(eq(int, cuStreamCreate(&s, flags), CUDA_SUCCESS));
	return s;
}

static CUdeviceptr dev_alloc(size_t n)
{
	CUdeviceptr p = 0;

	cr_assert(eq(int, cuMemAlloc(&p, n), CUDA_SUCCESS));
	return p;
}

/* Launch a built-in kernel with (pointer, size, int) parameters. */
static CUresult launch(const char *kernel, CUstream s, uint64_t p, size_t n, int v)
{
	void *args[] = { &p, &n, &v };

	return cuLaunchKernel((CUfunction)fakecuda_kernel(kernel), 1, 1, 1, 1, 1, 1, 0, s,
			      args, NULL);
}

/* 1 if every byte of [p, p+n) is b. */
static int every_byte(uint64_t p, size_t n, unsigned char b)
{
	const unsigned char *c = (const unsigned char *)(uintptr_t)p;
	size_t i;

	for (i = 0; i < n; i++)
		if (c[i] != b)
			return 0;
	return 1;
}

static uint64_t tagged(const char *tag, size_t n)
{
	struct region_err err;
	uint64_t va = 0;

	cr_assert(eq(int, region_alloc(tag, 0, 0, n, &va, &err), 0), "%s", err.msg);
	return va;
}

static struct region_req req(const char *spec, unsigned flags)
{
	struct region_req rq = { .flags = flags };
	struct region_err err;

	cr_assert(eq(int, tagset_parse(spec, &rq.tags, &err), 0));
	return rq;
}

static void pause_tags(const char *spec, unsigned flags)
{
	struct region_req rq = req(spec, flags);
	struct region_report rep;
	struct region_err err;

	cr_assert(eq(int, region_pause(&rq, &rep, &err), 0), "%s", err.msg);
}

static void resume_tags(const char *spec, unsigned flags)
{
	struct region_req rq = req(spec, flags);
	struct region_report rep;
	struct region_err err;

	cr_assert(eq(int, region_resume(&rq, &rep, &err), 0), "%s", err.msg);
}

/* ---- the simulated driver ------------------------------------------------ */

Test(strict, queued_copies_and_memsets_run_only_when_waited_for)
{
	CUstream s;
	CUevent ev;
	CUdeviceptr p;
	unsigned char host[4096];

	primary();
	s = stream(0);
	p = dev_alloc(4096);
	memset(host, 5, sizeof(host));
	cr_assert(eq(int, cuMemcpyHtoDAsync(p, host, 4096, s), CUDA_SUCCESS));
	cr_assert(eq(int, cuEventCreate(&ev, 0), CUDA_SUCCESS));
	cr_assert(eq(int, cuEventRecord(ev, s), CUDA_SUCCESS));
	cr_assert(every_byte(p, 4096, 0), "a queued copy ran before anything waited for it");
	cr_assert(eq(int, cuEventSynchronize(ev), CUDA_SUCCESS));
	cr_assert(every_byte(p, 4096, 5));

	cr_assert(eq(int, cuMemsetD8Async(p, 9, 4096, s), CUDA_SUCCESS));
	cr_assert(every_byte(p, 4096, 5));
	cr_assert(eq(int, cuCtxSynchronize(), CUDA_SUCCESS));
	cr_assert(every_byte(p, 4096, 9));

	/* A query runs what it can, and says "not ready" once when it did. */
	cr_assert(eq(int, cuMemsetD8Async(p, 3, 4096, s), CUDA_SUCCESS));
	cr_assert(eq(int, cuStreamQuery(s), CUDA_ERROR_NOT_READY));
	cr_assert(eq(int, cuStreamQuery(s), CUDA_SUCCESS));
	cr_assert(every_byte(p, 4096, 3));
	cr_assert(eq(int, cuStreamDestroy(s), CUDA_SUCCESS));
	cr_assert(eq(int, cuEventDestroy(ev), CUDA_SUCCESS));
	cr_assert(eq(int, cuMemFree(p), CUDA_SUCCESS));
}

Test(strict, the_null_stream_orders_with_blocking_streams_only)
{
	CUstream blocking, nonblocking;
	CUdeviceptr p = 0, q = 0;

	primary();
	blocking = stream(0);
	nonblocking = stream(CU_STREAM_NON_BLOCKING);
	p = dev_alloc(4096);
	q = dev_alloc(4096);
	/* NULL stream: p = 1; blocking stream: p += 1 must see it. */
	cr_assert(eq(int, cuMemsetD8Async(p, 1, 4096, NULL), CUDA_SUCCESS));
	cr_assert(eq(int, launch("add", blocking, p, 4096, 1), CUDA_SUCCESS));
	cr_assert(eq(int, cuStreamSynchronize(blocking), CUDA_SUCCESS));
	cr_assert(every_byte(p, 4096, 2));
	/* A non-blocking stream does not wait for the NULL stream. */
	cr_assert(eq(int, cuMemsetD8Async(q, 1, 4096, NULL), CUDA_SUCCESS));
	cr_assert(eq(int, launch("add", nonblocking, p, 4096, 1), CUDA_SUCCESS));
	cr_assert(eq(int, cuStreamSynchronize(nonblocking), CUDA_SUCCESS));
	cr_assert(every_byte(p, 4096, 3));
	cr_assert(every_byte(q, 4096, 0));
	cr_assert(eq(int, cuStreamSynchronize(NULL), CUDA_SUCCESS));
	cr_assert(every_byte(q, 4096, 1));
}

Test(strict, unmap_under_queued_work_is_a_violation_and_the_work_loses_the_context)
{
	uint64_t va = tagged("w", MiB);
	CUdeviceptr p;

	primary();
	fakecuda_violations_fatal(0);
	cr_assert(eq(int, launch("fill", NULL, va, MiB, 7), CUDA_SUCCESS));
	/* Pulled from under the kernel: what a pause without a drain does. */
	cr_assert(eq(int, cuMemUnmap(va, 2 * MiB), CUDA_SUCCESS));
	cr_assert(eq(long, fakecuda_violations(), 1));
	cr_assert(eq(int, cuCtxSynchronize(), CUDA_ERROR_ILLEGAL_ADDRESS));
	cr_assert(eq(long, fakecuda_illegal_accesses(), 1));
	cr_assert(eq(int, fakecuda_sticky_error(), CUDA_ERROR_ILLEGAL_ADDRESS));
	/* Sticky: every later call of the process fails with it. */
	cr_assert(eq(int, cuMemAlloc(&p, 4096), CUDA_ERROR_ILLEGAL_ADDRESS));
	cr_assert(eq(int, cuStreamSynchronize(NULL), CUDA_ERROR_ILLEGAL_ADDRESS));
	fakecuda_clear_violations();
}

Test(strict, free_and_unregister_under_queued_work_are_violations)
{
	static unsigned char host[8192];
	CUdeviceptr p;

	primary();
	fakecuda_violations_fatal(0);
	p = dev_alloc(8192);
	cr_assert(eq(int, cuMemHostRegister(host, sizeof(host), 0), CUDA_SUCCESS));
	cr_assert(eq(int, cuMemcpyDtoHAsync(host, p, 8192, NULL), CUDA_SUCCESS));
	cr_assert(eq(int, cuMemHostUnregister(host), CUDA_SUCCESS));
	cr_assert(eq(long, fakecuda_violations(), 1));
	cr_assert(eq(int, cuMemFree(p), CUDA_SUCCESS));
	cr_assert(eq(long, fakecuda_violations(), 2));
	/* The copy then finds both sides gone. */
	cr_assert(eq(int, cuCtxSynchronize(), CUDA_ERROR_ILLEGAL_ADDRESS));
	fakecuda_clear_violations();
}

static void *no_context_calls(void *arg)
{
	CUstream s = arg, t = NULL;
	CUmemAllocationProp prop = { .type = CU_MEM_ALLOCATION_TYPE_PINNED,
				     .location = { CU_MEM_LOCATION_TYPE_DEVICE, 0 } };
	CUmemAccessDesc acc = { .location = { CU_MEM_LOCATION_TYPE_DEVICE, 0 },
				.flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE };
	CUmemGenericAllocationHandle h;
	CUdeviceptr p = 0, va = 0;
	CUcontext ctx = (CUcontext)1;
	size_t fr, tot;
	int bad = 0;

	/* What works on "the current context" fails without one... */
	bad |= cuMemAlloc(&p, 4096) != CUDA_ERROR_INVALID_CONTEXT;
	bad |= cuMemGetInfo(&fr, &tot) != CUDA_ERROR_INVALID_CONTEXT;
	bad |= cuStreamCreate(&t, 0) != CUDA_ERROR_INVALID_CONTEXT;
	bad |= cuCtxSynchronize() != CUDA_ERROR_INVALID_CONTEXT;
	bad |= cuMemsetD8Async(0x1000, 0, 1, NULL) != CUDA_ERROR_INVALID_CONTEXT;
	bad |= launch("fill", NULL, 0x1000, 1, 0) != CUDA_ERROR_INVALID_CONTEXT;
	bad |= cuMemHostRegister(&fr, sizeof(fr), 0) != CUDA_ERROR_INVALID_CONTEXT;
	bad |= cuCtxPopCurrent(&ctx) != CUDA_ERROR_INVALID_CONTEXT;
	bad |= cuCtxGetCurrent(&ctx) != CUDA_SUCCESS || ctx != NULL;
	/* ...what names its device or its stream does not need one. */
	bad |= cuMemAddressReserve(&va, 2 * MiB, 0, 0, 0) != CUDA_SUCCESS;
	bad |= cuMemCreate(&h, 2 * MiB, &prop, 0) != CUDA_SUCCESS;
	bad |= cuMemMap(va, 2 * MiB, 0, h, 0) != CUDA_SUCCESS;
	bad |= cuMemSetAccess(va, 2 * MiB, &acc, 1) != CUDA_SUCCESS;
	bad |= cuMemsetD8Async(va, 4, 2 * MiB, s) != CUDA_SUCCESS;
	bad |= cuStreamSynchronize(s) != CUDA_SUCCESS;
	bad |= !every_byte(va, 2 * MiB, 4);
	bad |= cuMemUnmap(va, 2 * MiB) != CUDA_SUCCESS;
	bad |= cuMemRelease(h) != CUDA_SUCCESS;
	bad |= cuMemAddressFree(va, 2 * MiB) != CUDA_SUCCESS;
	return (void *)(intptr_t)bad;
}

Test(strict, calls_without_a_current_context_fail_as_on_the_gpu)
{
	pthread_t t;
	void *bad = (void *)1;

	primary();
	cr_assert(eq(int, pthread_create(&t, NULL, no_context_calls, stream(0)), 0));
	pthread_join(t, &bad);
	cr_assert(eq(ptr, bad, NULL));
}

/* An application stack of contexts is left exactly as it was. */
Test(strict, memctl_works_under_a_deep_application_context_stack)
{
	CUcontext app[6], top = NULL;
	uint64_t va;
	int i;

	for (i = 0; i < 6; i++)
		cr_assert(eq(int, cuCtxCreate(&app[i], NULL, 0, 0), CUDA_SUCCESS));
	va = tagged("w", 3 * MiB);
	memset((void *)(uintptr_t)va, 0x5a, 3 * MiB);
	pause_tags("w", MEMCTL_STAGE_CPU);
	resume_tags("w", 0);
	cr_assert(every_byte(va, 3 * MiB, 0x5a));
	cr_assert(eq(int, region_free(va), 0));
	for (i = 5; i >= 0; i--) {
		cr_assert(eq(int, cuCtxPopCurrent(&top), CUDA_SUCCESS));
		cr_assert(eq(ptr, (void *)top, (void *)app[i]), "stack disturbed at %d", i);
	}
	cr_assert(eq(int, cuCtxPopCurrent(&top), CUDA_ERROR_INVALID_CONTEXT));
	for (i = 0; i < 6; i++)
		cr_assert(eq(int, cuCtxDestroy(app[i]), CUDA_SUCCESS));
}

/* Field 22 of /proc/PID/stat. */
static unsigned long long start_of(int pid)
{
	char path[64], buf[1024], *p;
	unsigned long long v = 0;
	FILE *f;
	int i;

	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	f = fopen(path, "r");
	cr_assert(not(eq(ptr, f, NULL)));
	cr_assert(not(eq(ptr, fgets(buf, sizeof(buf), f), NULL)));
	fclose(f);
	p = strrchr(buf, ')') + 2;
	for (i = 3; i < 22; i++)
		p = strchr(p, ' ') + 1;
	sscanf(p, "%llu", &v);
	return v;
}

Test(strict, device_memory_of_dead_processes_comes_back_and_pid_reuse_is_seen)
{
	int self = (int)getpid();
	uint64_t used0 = fakecuda_used();
	pid_t dead = fork();

	if (dead == 0)
		_exit(0);
	waitpid(dead, NULL, 0);
	/* Alive: kept. */
	cr_assert(eq(int, fakecuda_plant_owner(self, start_of(self), 8 * MiB), 0));
	/* Dead and reaped: given back. */
	cr_assert(eq(int, fakecuda_plant_owner(dead, 1, 16 * MiB), 0));
	/* Our pid, but a process that started earlier: its owner died and
	 * the pid was reused by us. */
	cr_assert(eq(int, fakecuda_plant_owner(self, start_of(self) - 1, 32 * MiB), 0));
	cr_assert(eq(u64, fakecuda_used(), used0 + 8 * MiB));
	cr_assert(eq(u64, fakecuda_process_used(dead), 0));
}

static void *in_driver(void *arg)
{
	size_t fr, tot;

	(void)arg;
	primary();
	return (void *)(intptr_t)cuMemGetInfo(&fr, &tot);
}

/* The child of a process that has a thread inside the driver. */
static int child_after_fork(void)
{
	void *p = NULL;
	size_t fr, tot;

	if (cuMemGetInfo(&fr, &tot) != CUDA_ERROR_NOT_INITIALIZED)
		return 1;
	if (cuMemAlloc((CUdeviceptr *)&p, 4096) != CUDA_ERROR_NOT_INITIALIZED)
		return 2;
	(void)fakecuda_used(); /* the driver's lock is usable */
	return 0;
}

Test(strict, a_forked_child_never_deadlocks_on_the_driver_lock)
{
	pthread_t t;
	void *rc = NULL;
	pid_t pid;
	int st = -1;

	primary();
	fakecuda_hold_in_lock("cuMemGetInfo");
	cr_assert(eq(int, pthread_create(&t, NULL, in_driver, NULL), 0));
	while (fakecuda_held("cuMemGetInfo") == 0)
		usleep(1000);
	pid = fork();
	if (pid == 0)
		_exit(child_after_fork());
	cr_assert(eq(int, (int)waitpid(pid, &st, 0), (int)pid));
	cr_assert(eq(int, st, 0), "child status 0x%x", st);
	fakecuda_unhold();
	pthread_join(t, &rc);
	cr_assert(eq(ptr, rc, (void *)(intptr_t)CUDA_SUCCESS));
}

Test(strict, kernels_from_a_module_and_graphs_replay_captured_work)
{
	CUmodule mod;
	CUfunction sum;
	CUgraph g;
	CUgraphExec ge;
	CUstreamCaptureStatus cs;
	CUdeviceptr p, out;
	CUstream s;
	uint64_t h = 0;
	size_t n = 65536;
	void *args[] = { &p, &n, &out };
	CUlaunchConfig cfg = { .gridDimX = 1, .gridDimY = 1, .gridDimZ = 1,
			       .blockDimX = 1, .blockDimY = 1, .blockDimZ = 1 };

	primary();
	s = stream(0);
	p = dev_alloc(n);
	out = dev_alloc(8);
	cr_assert(eq(int, cuModuleLoadData(&mod, "any image"), CUDA_SUCCESS));
	cr_assert(eq(int, cuModuleGetFunction(&sum, mod, "checksum"), CUDA_SUCCESS));
	cr_assert(eq(int, cuModuleGetFunction(&sum, mod, "nope"), CUDA_ERROR_NOT_FOUND));
	cr_assert(eq(int, cuModuleGetFunction(&sum, mod, "checksum"), CUDA_SUCCESS));

	cr_assert(eq(int, cuStreamBeginCapture(s, CU_STREAM_CAPTURE_MODE_GLOBAL), CUDA_SUCCESS));
	cr_assert(eq(int, launch("fill", s, p, n, 10), CUDA_SUCCESS));
	cr_assert(eq(int, launch("add", s, p, n, 3), CUDA_SUCCESS));
	cr_assert(eq(int, cuStreamIsCapturing(s, &cs), CUDA_SUCCESS));
	cr_assert(eq(int, cs, CU_STREAM_CAPTURE_STATUS_ACTIVE));
	/* Waiting on a capturing stream is refused and spoils the capture. */
	cr_assert(eq(int, cuCtxSynchronize(), CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED));
	cr_assert(eq(int, cuStreamEndCapture(s, &g), CUDA_ERROR_STREAM_CAPTURE_INVALIDATED));

	cr_assert(eq(int, cuStreamBeginCapture(s, CU_STREAM_CAPTURE_MODE_GLOBAL), CUDA_SUCCESS));
	cr_assert(eq(int, launch("fill", s, p, n, 10), CUDA_SUCCESS));
	cr_assert(eq(int, launch("add", s, p, n, 3), CUDA_SUCCESS));
	cfg.hStream = s;
	cr_assert(eq(int, cuLaunchKernelEx(&cfg, sum, args, NULL), CUDA_SUCCESS));
	cr_assert(eq(int, cuStreamEndCapture(s, &g), CUDA_SUCCESS));
	cr_assert(every_byte(p, n, 0), "captured work ran");
	cr_assert(eq(int, cuGraphInstantiate(&ge, g, 0), CUDA_SUCCESS));
	cr_assert(eq(int, cuGraphLaunch(ge, s), CUDA_SUCCESS));
	cr_assert(eq(int, cuGraphLaunch(ge, s), CUDA_SUCCESS));
	cr_assert(eq(int, cuStreamSynchronize(s), CUDA_SUCCESS));
	cr_assert(every_byte(p, n, 13));
	cr_assert(eq(int, cuMemcpyDtoH(&h, out, 8), CUDA_SUCCESS));
	cr_assert(eq(u64, h, fakecuda_checksum((void *)(uintptr_t)p, n)));
	cr_assert(eq(int, cuGraphExecDestroy(ge), CUDA_SUCCESS));
	cr_assert(eq(int, cuGraphDestroy(g), CUDA_SUCCESS));
}

struct seen {
	CUdeviceptr p;
	int byte;
};

static void CUDA_CB look(void *arg)
{
	struct seen *s = arg;

	s->byte = *(volatile unsigned char *)(uintptr_t)s->p;
}

Test(strict, host_functions_run_in_stream_order)
{
	struct seen seen = { .byte = -1 };
	CUstream s;

	primary();
	s = stream(0);
	seen.p = dev_alloc(4096);
	cr_assert(eq(int, cuMemsetD8Async(seen.p, 0x21, 4096, s), CUDA_SUCCESS));
	cr_assert(eq(int, cuLaunchHostFunc(s, look, &seen), CUDA_SUCCESS));
	cr_assert(eq(int, cuMemsetD8Async(seen.p, 0x22, 4096, s), CUDA_SUCCESS));
	cr_assert(eq(int, seen.byte, -1));
	cr_assert(eq(int, cuStreamSynchronize(s), CUDA_SUCCESS));
	cr_assert(eq(int, seen.byte, 0x21));
	cr_assert(every_byte(seen.p, 4096, 0x22));
}

static void *wait_device(void *arg)
{
	int *done = arg;
	CUresult r;

	primary();
	r = cuCtxSynchronize();
	__atomic_store_n(done, 1, __ATOMIC_RELEASE);
	return (void *)(intptr_t)r;
}

/* A launch that runs until released: a drain waits for it, a query does
 * not, and nothing is touched before it ends. */
Test(strict, a_spin_kernel_holds_a_synchronisation_until_released)
{
	static int flag;
	uint64_t va = tagged("w", MiB);
	void *args[3];
	size_t n = MiB;
	int done = 0;
	pthread_t t;
	void *rc;

	primary();
	args[0] = &(const int *){ &flag };
	args[1] = &va;
	args[2] = &n;
	cr_assert(eq(int, cuLaunchKernel((CUfunction)fakecuda_kernel("spin"), 1, 1, 1, 1, 1, 1, 0,
					 NULL, args, NULL), CUDA_SUCCESS));
	cr_assert(eq(int, cuStreamQuery(NULL), CUDA_ERROR_NOT_READY));
	cr_assert(eq(int, fakecuda_running("spin"), 0));
	cr_assert(eq(int, pthread_create(&t, NULL, wait_device, &done), 0));
	while (fakecuda_running("spin") == 0)
		usleep(1000);
	cr_assert(eq(int, __atomic_load_n(&done, __ATOMIC_ACQUIRE), 0));
	cr_assert(eq(int, cuStreamQuery(NULL), CUDA_ERROR_NOT_READY));
	__atomic_store_n(&flag, 1, __ATOMIC_RELEASE);
	pthread_join(t, &rc);
	cr_assert(eq(ptr, rc, (void *)(intptr_t)CUDA_SUCCESS));
	cr_assert(eq(int, fakecuda_running("spin"), 0));
	cr_assert(eq(int, cuStreamQuery(NULL), CUDA_SUCCESS));
}

Test(strict, stream_ordered_memory_lives_between_its_allocation_and_free)
{
	CUmemPoolProps props = { .allocType = CU_MEM_ALLOCATION_TYPE_PINNED,
				 .location = { CU_MEM_LOCATION_TYPE_DEVICE, 0 } };
	CUmemoryPool pool;
	CUdeviceptr p, q;
	CUstream s, other;
	uint64_t used0 = fakecuda_used();

	primary();
	s = stream(0);
	other = stream(CU_STREAM_NON_BLOCKING);
	cr_assert(eq(int, cuMemAllocAsync(&p, MiB, s), CUDA_SUCCESS));
	cr_assert(eq(u64, fakecuda_used(), used0 + MiB));
	cr_assert(eq(int, launch("fill", s, p, MiB, 6), CUDA_SUCCESS));
	cr_assert(eq(int, cuMemFreeAsync(p, s), CUDA_SUCCESS));
	cr_assert(eq(u64, fakecuda_used(), used0 + MiB), "freed before its turn");
	cr_assert(eq(int, cuStreamSynchronize(s), CUDA_SUCCESS));
	cr_assert(eq(u64, fakecuda_used(), used0));

	cr_assert(eq(int, cuMemPoolCreate(&pool, &props), CUDA_SUCCESS));
	cr_assert(eq(int, cuMemAllocFromPoolAsync(&q, MiB, pool, s), CUDA_SUCCESS));
	cr_assert(eq(int, cuMemFreeAsync(q, s), CUDA_SUCCESS));
	cr_assert(eq(int, cuMemPoolDestroy(pool), CUDA_SUCCESS));
	cr_assert(eq(int, cuStreamSynchronize(s), CUDA_SUCCESS));
	cr_assert(eq(u64, fakecuda_used(), used0));

	/* Used on another stream after the free took effect: lost context. */
	fakecuda_violations_fatal(0);
	cr_assert(eq(int, cuMemAllocAsync(&p, MiB, s), CUDA_SUCCESS));
	cr_assert(eq(int, cuMemFreeAsync(p, s), CUDA_SUCCESS));
	cr_assert(eq(int, cuStreamSynchronize(s), CUDA_SUCCESS));
	cr_assert(eq(int, launch("fill", other, p, MiB, 1), CUDA_SUCCESS));
	cr_assert(eq(int, cuStreamSynchronize(other), CUDA_ERROR_ILLEGAL_ADDRESS));
	fakecuda_clear_violations();
}

Test(strict, in_delay_mode_work_finishes_by_itself)
{
	CUdeviceptr p;
	CUstream s;

	primary();
	cr_assert(eq(int, fakecuda_set_async("delay"), 0));
	s = stream(0);
	p = dev_alloc(4096);
	cr_assert(eq(int, cuMemsetD8Async(p, 8, 4096, s), CUDA_SUCCESS));
	while (cuStreamQuery(s) == CUDA_ERROR_NOT_READY)
		usleep(100);
	cr_assert(every_byte(p, 4096, 8));
	cr_assert(eq(int, fakecuda_set_async("lazy"), 0));
}

/* ---- the registry's ordering promises ----------------------------------------- */

/* (a) A pause drains the device before it unmaps: work queued on the
 * allocation completes, and a staged pause keeps its result. */
Test(strict, pause_drains_queued_work_before_unmapping)
{
	uint64_t a = tagged("w", MiB), b = tagged("u", MiB);
	CUstream s;

	primary();
	s = stream(0);
	cr_assert(eq(int, launch("fill", NULL, a, MiB, 1), CUDA_SUCCESS));
	cr_assert(eq(int, launch("add", s, a, MiB, 2), CUDA_SUCCESS));
	cr_assert(eq(int, launch("fill", s, b, MiB, 4), CUDA_SUCCESS));
	pause_tags("w", MEMCTL_STAGE_CPU);
	pause_tags("u", 0);
	resume_tags("w,u", 0);
	cr_assert(every_byte(a, MiB, 3));
}

/* (b) A resume returns only when its copies have landed: the
 * application's next work, on its own stream, sees the contents. */
Test(strict, resume_returns_with_its_copies_landed)
{
	uint64_t va[3], out, h = 0;
	size_t n = 3 * MiB + 17;
	void *args[3];
	CUstream s;
	int i;

	primary();
	s = stream(0);
	out = dev_alloc(8);
	for (i = 0; i < 3; i++) {
		va[i] = tagged("w", n);
		memset((void *)(uintptr_t)va[i], 0x30 + i, n);
	}
	pause_tags("w", MEMCTL_STAGE_CPU);
	resume_tags("w", MEMCTL_RELEASE_HOST);
	args[0] = &va[2];
	args[1] = &n;
	args[2] = &out;
	cr_assert(eq(int, cuLaunchKernel((CUfunction)fakecuda_kernel("checksum"), 1, 1, 1, 1, 1,
					 1, 0, s, args, NULL), CUDA_SUCCESS));
	cr_assert(eq(int, cuStreamSynchronize(s), CUDA_SUCCESS));
	cr_assert(eq(int, cuMemcpyDtoH(&h, out, 8), CUDA_SUCCESS));
	for (i = 0; i < 3; i++)
		cr_assert(every_byte(va[i], n, (unsigned char)(0x30 + i)), "allocation %d", i);
	cr_assert(eq(u64, h, fakecuda_checksum((void *)(uintptr_t)va[2], n)));
}

/* (c) Freeing tagged memory waits for the work queued on it, as
 * cudaFree may. */
Test(strict, free_of_tagged_memory_waits_for_queued_work)
{
	uint64_t va = tagged("w", 4 * MiB);
	CUstream s;

	primary();
	s = stream(0);
	cr_assert(eq(int, launch("fill", s, va, 4 * MiB, 1), CUDA_SUCCESS));
	cr_assert(eq(int, launch("add", NULL, va, 4 * MiB, 1), CUDA_SUCCESS));
	cr_assert(eq(int, region_free(va), 0));
	cr_assert(eq(long, fakecuda_live_mappings(), 0));
}

/* (d) A staged pause releases each allocation only after its own copies
 * have landed, while later ones are still copying. */
Test(strict, staged_pause_releases_each_allocation_after_its_copies)
{
	uint64_t va[6];
	int i;

	for (i = 0; i < 6; i++) {
		va[i] = tagged("w", (size_t)(i + 1) * MiB + 4099);
		memset((void *)(uintptr_t)va[i], 0x40 + i, (size_t)(i + 1) * MiB + 4099);
	}
	pause_tags("w", MEMCTL_STAGE_CPU);
	resume_tags("w", 0);
	for (i = 0; i < 6; i++)
		cr_assert(every_byte(va[i], (size_t)(i + 1) * MiB + 4099, (unsigned char)(0x40 + i)),
			  "allocation %d", i);
}

/* (e) A resume that fails midway unmaps what it mapped only after the
 * copies into it have landed. */
Test(strict, failed_resume_rolls_back_after_its_copies)
{
	uint64_t va[4];
	int i;

	for (i = 0; i < 4; i++) {
		va[i] = tagged("w", 2 * MiB);
		memset((void *)(uintptr_t)va[i], 0x60 + i, 2 * MiB);
	}
	pause_tags("w", MEMCTL_STAGE_CPU);
	fakecuda_set_fail("cuMemCreate:3");
	{
		struct region_req rq = req("w", 0);
		struct region_report rep;
		struct region_err err;

		cr_assert(eq(int, region_resume(&rq, &rep, &err), -ENOMEM));
	}
	fakecuda_set_fail(NULL);
	resume_tags("w", 0);
	for (i = 0; i < 4; i++)
		cr_assert(every_byte(va[i], 2 * MiB, (unsigned char)(0x60 + i)), "allocation %d", i);
}
