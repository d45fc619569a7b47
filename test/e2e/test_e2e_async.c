/* SPDX-License-Identifier: Apache-2.0 */
/*
 * test_e2e_async.c - stream-ordered allocation under LD_PRELOAD: inside a
 * region cuMemAllocAsync / cudaMallocAsync are tagged and pausable, and a
 * tagged cuMemFreeAsync takes effect only once the work queued before it
 * on its stream has run, without making the caller wait; a pause waits
 * for such a free and gives its memory back. Left to the driver: stream
 * capture, the application's own pools. Simulated driver only: work is
 * held open with its spin kernel, and taking memory away under queued
 * work aborts the test (strict mode).
 */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>
#include <cuda.h>
#include <cuda_runtime_api.h>
#include <cudaTypedefs.h>
#include <errno.h>
#include <pthread.h>
#include <unistd.h>

#include "e2e_suite.h"
#include "fakecuda.h"

#define MiB (1ull << 20)

static char state_path[64];
static CUstream s;

static void setup(void)
{
	CUcontext ctx;

	snprintf(state_path, sizeof(state_path), "/tmp/fakecuda-async-%d.state", (int)getpid());
	unlink(state_path);
	setenv("FAKECUDA_STATE", state_path, 1);
	setenv("FAKECUDA_MEMORY", "1G", 1);
	setenv("MEMCTL_SOCKET", "0", 1);
	cr_assert(eq(int, memctl_api_load(&M), 0), "libmemctl.so is not preloaded");
	e2e_strict();
	cr_assert(eq(int, fakecuda_set_async("lazy"), 0));
	cr_assert(eq(int, cuInit(0), CUDA_SUCCESS));
	cr_assert(eq(int, cuDevicePrimaryCtxRetain(&ctx, 0), CUDA_SUCCESS));
	cr_assert(eq(int, cuCtxSetCurrent(ctx), CUDA_SUCCESS));
	cr_assert(eq(int, cuStreamCreate(&s, CU_STREAM_NON_BLOCKING), CUDA_SUCCESS));
}

static void teardown(void)
{
	unlink(state_path);
}

TestSuite(async, .init = setup, .fini = teardown, .timeout = 60);

static CUdeviceptr tagged_async(const char *tag, size_t n)
{
	CUdeviceptr p = 0;

	cr_assert(eq(int, M.region_begin(tag), 0));
	cr_assert(eq(int, cuMemAllocAsync(&p, n, s), CUDA_SUCCESS));
	cr_assert(eq(int, M.region_end(), 0));
	return p;
}

static int flag;

/* A kernel on s that reads [p, p+n) once `flag` is set. */
static void spin(CUdeviceptr p, size_t n)
{
	const int *f = &flag;
	void *args[] = { &f, &p, &n };

	cr_assert(eq(int, cuLaunchKernel((CUfunction)fakecuda_kernel("spin"), 1, 1, 1, 1, 1, 1, 0,
					 s, args, NULL), CUDA_SUCCESS));
}

static uint64_t tagged_bytes(const char *tag)
{
	struct memctl_stat st;

	return M.stat(tag, &st) == 0 ? st.active_bytes + st.paused_bytes : 0;
}

Test(async, a_stream_ordered_free_waits_for_the_streams_earlier_work_without_blocking)
{
	CUdeviceptr a = tagged_async("w", 4 * MiB), b;
	uint64_t used;

	fill((void *)(uintptr_t)a, 4 * MiB, 3);
	cr_assert(eq(u64, tagged_bytes("w"), 4 * MiB));
	spin(a, 4 * MiB);
	used = fakecuda_used();
	/* Returns at once: the kernel before it has not even started. */
	cr_assert(eq(int, cuMemFreeAsync(a, s), CUDA_SUCCESS));
	cr_assert(eq(u64, tagged_bytes("w"), 0), "gone for the application");
	cr_assert(eq(u64, fakecuda_used(), used), "but still there for the kernel");
	b = tagged_async("w", 2 * MiB);
	cr_assert(eq(u64, fakecuda_used(), used + 2 * MiB), "not given back before the kernel ran");
	__atomic_store_n(&flag, 1, __ATOMIC_RELEASE);
	cr_assert(eq(int, cuStreamSynchronize(s), CUDA_SUCCESS));
	cr_assert(eq(long, fakecuda_illegal_accesses(), 0), "the kernel found its memory");
	/* The next call of the registry finds the stream got there. */
	cr_assert(eq(int, cuMemFreeAsync(b, s), CUDA_SUCCESS));
	cr_assert(eq(int, cuStreamSynchronize(s), CUDA_SUCCESS));
	b = tagged_async("w", 2 * MiB);
	cr_assert(eq(u64, fakecuda_used(), used - 4 * MiB + 2 * MiB));
	cr_assert(eq(int, cuMemFreeAsync(b, s), CUDA_SUCCESS));
}

struct pause_arg {
	int rc;
	int done;
};

static void *pause_thread(void *arg)
{
	struct pause_arg *pa = arg;

	pa->rc = M.pause("w", MEMCTL_STAGE_CPU);
	__atomic_store_n(&pa->done, 1, __ATOMIC_RELEASE);
	return NULL;
}

Test(async, a_pause_waits_for_a_pending_stream_ordered_free_and_gives_its_memory_back)
{
	CUdeviceptr a = tagged_async("w", 4 * MiB), b = tagged_async("w", 2 * MiB);
	struct pause_arg pa = { -1, 0 };
	pthread_t t;

	fill((void *)(uintptr_t)b, 2 * MiB, 9);
	spin(a, 4 * MiB);
	cr_assert(eq(int, cuMemFreeAsync(a, s), CUDA_SUCCESS));
	cr_assert(eq(int, pthread_create(&t, NULL, pause_thread, &pa), 0));
	/* The pause waits for the stream, which waits for the kernel. */
	while (fakecuda_running("spin") == 0)
		usleep(1000);
	cr_assert(eq(int, __atomic_load_n(&pa.done, __ATOMIC_ACQUIRE), 0));
	__atomic_store_n(&flag, 1, __ATOMIC_RELEASE);
	pthread_join(t, NULL);
	cr_assert(eq(int, pa.rc, 0), "%s", M.strerror(pa.rc));
	cr_assert(eq(u64, fakecuda_used(), 0), "the freed memory went, the rest was paused");
	cr_assert(eq(int, M.resume("w", 0), 0));
	cr_assert(eq(long, check((void *)(uintptr_t)b, 2 * MiB, 9), -1));
	cr_assert(eq(int, cuMemFreeAsync(b, s), CUDA_SUCCESS));
	cr_assert(eq(long, fakecuda_illegal_accesses(), 0));
}

Test(async, cudaMallocAsync_in_a_region_is_tagged_through_the_runtime)
{
	void *p = NULL;

	cr_assert(eq(int, M.region_begin("w"), 0));
	cr_assert(eq(int, cudaMallocAsync(&p, 3 * MiB, (cudaStream_t)s), cudaSuccess));
	cr_assert(eq(int, M.region_end(), 0));
	dev_fill(p, 3 * MiB, 4);
	cr_assert(eq(u64, tagged_bytes("w"), 4 * MiB));
	cr_assert(eq(int, M.pause("w", MEMCTL_STAGE_CPU), 0));
	cr_assert(released(p));
	cr_assert(eq(int, M.resume("w", 0), 0));
	cr_assert(eq(long, dev_check(p, 3 * MiB, 4), -1));
	cr_assert(eq(int, cudaFreeAsync(p, (cudaStream_t)s), cudaSuccess));
	cr_assert(eq(int, cudaStreamSynchronize((cudaStream_t)s), cudaSuccess));
	cr_assert(eq(u64, tagged_bytes("w"), 0));
}

Test(async, the_per_thread_stream_variants_are_tagged_too)
{
	PFN_cuMemAllocAsync_v11020_ptsz alloc;
	PFN_cuMemFreeAsync_v11020_ptsz release;
	CUdeviceptr p = 0;

	*(void **)&alloc = dlsym(RTLD_DEFAULT, "cuMemAllocAsync_ptsz");
	*(void **)&release = dlsym(RTLD_DEFAULT, "cuMemFreeAsync_ptsz");
	cr_assert(not(eq(ptr, (void *)alloc, NULL)));
	cr_assert(eq(int, M.region_begin("w"), 0));
	cr_assert(eq(int, alloc(&p, MiB, NULL), CUDA_SUCCESS));
	cr_assert(eq(int, M.region_end(), 0));
	cr_assert(eq(u64, tagged_bytes("w"), 2 * MiB));
	cr_assert(eq(int, release(p, NULL), CUDA_SUCCESS));
	cr_assert(eq(u64, tagged_bytes("w"), 0));
}

Test(async, inside_stream_capture_allocation_is_the_drivers_and_a_tagged_free_is_refused)
{
	CUdeviceptr a = tagged_async("w", MiB), p = 0;
	CUgraph g = NULL;

	cr_assert(eq(int, cuStreamBeginCapture(s, CU_STREAM_CAPTURE_MODE_RELAXED), CUDA_SUCCESS));
	cr_assert(eq(int, M.region_begin("w"), 0));
	/* Graph memory: the driver's answer (the simulated one does not
	 * model it), never a tagged allocation. */
	cr_assert(eq(int, cuMemAllocAsync(&p, MiB, s), CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED));
	cr_assert(eq(int, M.region_end(), 0));
	cr_assert(eq(int, cuMemFreeAsync(a, s), CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED));
	cr_assert(eq(int, cuStreamEndCapture(s, &g), CUDA_SUCCESS));
	if (g != NULL)
		cr_assert(eq(int, cuGraphDestroy(g), CUDA_SUCCESS));
	cr_assert(eq(u64, tagged_bytes("w"), 2 * MiB), "the allocation is still there");
	cr_assert(eq(int, cuMemFreeAsync(a, s), CUDA_SUCCESS));
}

Test(async, the_applications_own_pools_are_left_to_the_driver)
{
	CUmemPoolProps props;
	CUmemoryPool pool, def;
	CUdeviceptr a = 0, b = 0;

	memset(&props, 0, sizeof(props));
	props.allocType = CU_MEM_ALLOCATION_TYPE_PINNED;
	props.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
	props.location.id = 0;
	cr_assert(eq(int, cuMemPoolCreate(&pool, &props), CUDA_SUCCESS));
	cr_assert(eq(int, M.region_begin("w"), 0));
	cr_assert(eq(int, cuMemAllocFromPoolAsync(&a, MiB, pool, s), CUDA_SUCCESS));
	/* Its pool made the device's current one: cuMemAllocAsync takes
	 * from it, and is left to the driver too. */
	cr_assert(eq(int, cuDeviceSetMemPool(0, pool), CUDA_SUCCESS));
	cr_assert(eq(int, cuMemAllocAsync(&b, MiB, s), CUDA_SUCCESS));
	cr_assert(eq(int, M.region_end(), 0));
	cr_assert(eq(u64, tagged_bytes("w"), 0));
	cr_assert(eq(int, cuMemFreeAsync(a, s), CUDA_SUCCESS));
	cr_assert(eq(int, cuMemFreeAsync(b, s), CUDA_SUCCESS));
	cr_assert(eq(int, cuStreamSynchronize(s), CUDA_SUCCESS));
	cr_assert(eq(int, cuDeviceGetDefaultMemPool(&def, 0), CUDA_SUCCESS));
	cr_assert(eq(int, cuDeviceSetMemPool(0, def), CUDA_SUCCESS));
	cr_assert(eq(int, cuMemPoolDestroy(pool), CUDA_SUCCESS));
	cr_assert(eq(u64, fakecuda_used(), 0));
}

Test(async, memory_freed_in_stream_order_is_waited_for_when_the_device_is_full)
{
	CUdeviceptr a = tagged_async("w", 600 * MiB), b;

	/* The kernel may finish, but nobody waits for it: the free is
	 * pending when the next allocation needs its memory. */
	__atomic_store_n(&flag, 1, __ATOMIC_RELEASE);
	spin(a, 600 * MiB);
	cr_assert(eq(int, cuMemFreeAsync(a, s), CUDA_SUCCESS));
	b = tagged_async("w", 600 * MiB);
	cr_assert(eq(u64, fakecuda_used(), 600 * MiB));
	cr_assert(eq(long, fakecuda_illegal_accesses(), 0));
	cr_assert(eq(int, cuMemFreeAsync(b, s), CUDA_SUCCESS));
}

Test(async, many_pending_frees_go_back_together_once_their_stream_got_there)
{
	CUdeviceptr p[20], last;
	uint64_t used0 = fakecuda_used();
	int i;

	for (i = 0; i < 20; i++)
		p[i] = tagged_async("w", 2 * MiB);
	spin(p[0], 2 * MiB);
	for (i = 0; i < 20; i++)
		cr_assert(eq(int, cuMemFreeAsync(p[i], s), CUDA_SUCCESS));
	last = tagged_async("w", 2 * MiB);
	cr_assert(eq(u64, fakecuda_used(), used0 + 21 * 2 * MiB), "the stream is behind: all held");
	cr_assert(eq(int, cuMemFreeAsync(last, s), CUDA_SUCCESS));
	__atomic_store_n(&flag, 1, __ATOMIC_RELEASE);
	cr_assert(eq(int, cuStreamSynchronize(s), CUDA_SUCCESS));
	last = tagged_async("w", 2 * MiB);
	cr_assert(eq(u64, fakecuda_used(), used0 + 2 * MiB), "one call gave all 21 back");
	cr_assert(eq(int, cuMemFreeAsync(last, s), CUDA_SUCCESS));
	cr_assert(eq(long, fakecuda_illegal_accesses(), 0));
}
