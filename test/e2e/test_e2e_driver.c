/* SPDX-License-Identifier: Apache-2.0 */
/*
 * test_e2e_driver.c - the driver layer in a program under LD_PRELOAD: the
 * driver's allocation calls, called directly (this program links the
 * simulated libcuda.so.1) or found through cuGetProcAddress, dlsym on the
 * driver's handle and cudaGetDriverEntryPoint, are tagged inside a region
 * and pass through outside one; lookups of everything else are untouched.
 * Simulated driver only (device memory is read directly, faults injected).
 */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>
#include <cuda.h>
#include <cuda_runtime_api.h>
#include <cudaTypedefs.h>
#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <unistd.h>

#include "e2e_driver.h"
#include "e2e_suite.h"
#include "fakecuda.h"

#undef cuGetProcAddress /* the 11.3 ABI, by its own name */

#define MiB (1ull << 20)
#define GRAN (2 * MiB)

static char state_path[64];
static void *cu; /* the driver's handle, as a program opening it gets it */

static void setup(void)
{
	CUcontext ctx;

	snprintf(state_path, sizeof(state_path), "/tmp/fakecuda-drv-%d.state", (int)getpid());
	unlink(state_path);
	setenv("FAKECUDA_STATE", state_path, 1);
	setenv("FAKECUDA_MEMORY", "1G", 1);
	setenv("MEMCTL_SOCKET", "0", 1);
	cr_assert(eq(int, memctl_api_load(&M), 0), "libmemctl.so is not preloaded");
	cu = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
	cr_assert(not(eq(ptr, cu, NULL)));
	cr_assert(eq(int, cuInit(0), CUDA_SUCCESS));
	cr_assert(eq(int, cuDevicePrimaryCtxRetain(&ctx, 0), CUDA_SUCCESS));
	cr_assert(eq(int, cuCtxSetCurrent(ctx), CUDA_SUCCESS));
}

static void teardown(void)
{
	unlink(state_path);
}

TestSuite(driver, .init = setup, .fini = teardown, .timeout = 60);

/* memctl's function of an ABI name (its export) and the driver's own. */
static void *memctl_fn(const char *abi)
{
	return dlsym(RTLD_DEFAULT, abi);
}

static void *driver_fn(const char *abi)
{
	return raw_dlsym(cu, abi);
}

static CUdeviceptr drv_tagged(const char *tag, size_t n)
{
	CUdeviceptr p = 0;

	cr_assert(eq(int, M.region_begin(tag), 0));
	cr_assert(eq(int, cuMemAlloc(&p, n), CUDA_SUCCESS));
	cr_assert(eq(int, M.region_end(), 0));
	return p;
}

static void *host(CUdeviceptr p)
{
	return (void *)(uintptr_t)p;
}

Test(driver, cuMemAlloc_in_a_region_is_tagged_and_comes_back_bit_identical)
{
	CUdeviceptr p[3];
	struct memctl_stat st;
	long handles = fakecuda_live_handles();
	uint64_t used;
	int i;

	for (i = 0; i < 3; i++) {
		p[i] = drv_tagged("weights", (size_t)(i + 1) * MiB + 17);
		fill(host(p[i]), (size_t)(i + 1) * MiB + 17, 40u + (unsigned)i);
	}
	cr_assert(eq(int, M.stat("weights", &st), 0));
	cr_assert(eq(u64, st.allocations, 3));
	cr_assert(eq(u64, st.active_bytes, GRAN + 2 * GRAN + 2 * GRAN)); /* rounded up */
	cr_assert(eq(long, fakecuda_live_handles(), handles + 3));
	used = fakecuda_used();

	cr_assert(eq(int, M.pause("weights", MEMCTL_STAGE_CPU), 0));
	cr_assert(eq(u64, used - fakecuda_used(), 5 * GRAN));
	for (i = 0; i < 3; i++)
		cr_assert(released(host(p[i])));
	cr_assert(eq(int, M.resume("weights", 0), 0));
	for (i = 0; i < 3; i++)
		cr_assert(eq(long, check(host(p[i]), (size_t)(i + 1) * MiB + 17, 40u + (unsigned)i),
			     -1));

	/* cuMemFree of a paused allocation and of an active one: gone, all
	 * physical memory back. */
	cr_assert(eq(int, M.pause("weights", 0), 0));
	for (i = 0; i < 3; i++)
		cr_assert(eq(int, cuMemFree(p[i]), CUDA_SUCCESS));
	cr_assert(eq(int, M.stat("weights", &st), -ENOENT));
	cr_assert(eq(long, fakecuda_live_handles(), handles));
	cr_assert(eq(long, fakecuda_live_mappings(), 0));
}

Test(driver, cuMemAllocPitch_in_a_region_gets_rows_of_512_bytes_and_is_pausable)
{
	CUdeviceptr p = 0;
	size_t pitch = 0;
	struct memctl_stat st;

	cr_assert(eq(int, M.region_begin("images"), 0));
	cr_assert(eq(int, cuMemAllocPitch(&p, &pitch, 1000, 300, 4), CUDA_SUCCESS));
	/* An element size the driver refuses is refused as the driver does. */
	cr_assert(eq(int, cuMemAllocPitch(&p, &pitch, 1000, 300, 3), CUDA_ERROR_INVALID_VALUE));
	cr_assert(eq(int, M.region_end(), 0));
	cr_assert(eq(sz, pitch, 1024));
	cr_assert(eq(int, M.stat("images", &st), 0));
	cr_assert(eq(u64, st.allocations, 1));
	fill(host(p), 1024 * 300, 9);
	cr_assert(eq(int, M.pause("images", MEMCTL_STAGE_CPU), 0));
	cr_assert(released(host(p)));
	cr_assert(eq(int, M.resume("images", 0), 0));
	cr_assert(eq(long, check(host(p), 1024 * 300, 9), -1));
	cr_assert(eq(int, cuMemFree(p), CUDA_SUCCESS));
}

Test(driver, untagged_driver_calls_pass_through_to_the_driver)
{
	CUdeviceptr p = 0, q = 0;
	struct memctl_stat st;
	long handles = fakecuda_live_handles();
	uint64_t used = fakecuda_used();
	size_t pitch = 0;

	cr_assert(eq(int, cuMemAlloc(&p, 3 * MiB), CUDA_SUCCESS));
	cr_assert(eq(int, cuMemAllocPitch(&q, &pitch, 100, 10, 8), CUDA_SUCCESS));
	cr_assert(eq(sz, pitch, 512));
	/* Plain driver memory: no VMM handle, nothing tagged. */
	cr_assert(eq(long, fakecuda_live_handles(), handles));
	cr_assert(eq(u64, fakecuda_used() - used, 3 * MiB + 8192));
	cr_assert(eq(int, M.stat(NULL, &st), -ENOENT));
	fill(host(p), 3 * MiB, 1);
	cr_assert(eq(long, check(host(p), 3 * MiB, 1), -1));
	cr_assert(eq(int, cuMemFree(p), CUDA_SUCCESS));
	cr_assert(eq(int, cuMemFree(q), CUDA_SUCCESS));
	cr_assert(eq(u64, fakecuda_used(), used));
	/* The driver's own answers, unchanged: a pointer it never gave, a
	 * zero size (also inside a region: nothing is tagged). */
	cr_assert(eq(int, cuMemFree(p), CUDA_ERROR_INVALID_VALUE));
	cr_assert(eq(int, M.region_begin("weights"), 0));
	cr_assert(eq(int, cuMemAlloc(&p, 0), CUDA_ERROR_INVALID_VALUE));
	cr_assert(eq(int, M.region_end(), 0));
	cr_assert(eq(int, M.stat(NULL, &st), -ENOENT));
}

Test(driver, the_default_tag_covers_driver_allocations)
{
	CUdeviceptr p;
	struct memctl_stat st;

	cr_assert(eq(int, M.set_default_tag("model"), 0));
	cr_assert(eq(int, cuMemAlloc(&p, MiB), CUDA_SUCCESS));
	cr_assert(eq(int, M.set_default_tag(NULL), 0));
	cr_assert(eq(int, M.stat("model", &st), 0));
	cr_assert(eq(u64, st.allocations, 1));
	fill(host(p), MiB, 5);
	cr_assert(eq(int, M.pause("model", MEMCTL_STAGE_CPU), 0));
	cr_assert(released(host(p)));
	cr_assert(eq(int, M.resume("model", 0), 0));
	cr_assert(eq(long, check(host(p), MiB, 5), -1));
	cr_assert(eq(int, cuMemFree(p), CUDA_SUCCESS));
}

Test(driver, a_thread_without_a_context_gets_the_drivers_answer_and_nothing_tagged)
{
	CUdeviceptr p = 0;
	struct memctl_stat st;

	cr_assert(eq(int, cuCtxSetCurrent(NULL), CUDA_SUCCESS));
	cr_assert(eq(int, M.region_begin("weights"), 0));
	/* The driver refuses an allocation without a context, as a GPU's
	 * does; memctl leaves that answer to it and tags nothing. */
	cr_assert(eq(int, cuMemAlloc(&p, MiB), CUDA_ERROR_INVALID_CONTEXT));
	cr_assert(eq(int, M.region_end(), 0));
	cr_assert(eq(int, M.stat(NULL, &st), -ENOENT));
}

Test(driver, device_full_fails_the_allocation_and_leaks_nothing)
{
	CUdeviceptr p = 0;
	struct memctl_stat st;
	long handles = fakecuda_live_handles();

	fakecuda_set_fail("cuMemCreate:1");
	cr_assert(eq(int, M.region_begin("weights"), 0));
	cr_assert(eq(int, cuMemAlloc(&p, MiB), CUDA_ERROR_OUT_OF_MEMORY));
	cr_assert(eq(int, M.region_end(), 0));
	fakecuda_set_fail(NULL);
	cr_assert(eq(long, fakecuda_live_handles(), handles));
	cr_assert(eq(int, M.stat(NULL, &st), -ENOENT));
}

/* A cuMemFree that failed part way is finished by repeating it, even when
 * it was the last tagged allocation (as cudaFree's is). */
Test(driver, a_failed_cuMemFree_of_the_last_allocation_is_finished_by_a_retry)
{
	CUdeviceptr p = drv_tagged("weights", MiB);
	long handles = fakecuda_live_handles();

	fakecuda_set_fail("cuMemRelease:1:unknown");
	cr_assert(not(eq(int, cuMemFree(p), CUDA_SUCCESS)));
	fakecuda_set_fail(NULL);
	cr_assert(eq(long, fakecuda_live_handles(), handles), "the handle is kept to retry");
	cr_assert(eq(int, cuMemFree(p), CUDA_SUCCESS));
	cr_assert(eq(long, fakecuda_live_handles(), handles - 1));
	cr_assert(eq(long, fakecuda_live_reservations(), 0));
}

Test(driver, cuGetProcAddress_answers_with_memctls_functions_per_abi_version)
{
	PFN_cuGetProcAddress_v12000 gpa = (PFN_cuGetProcAddress_v12000)dlsym(cu, "cuGetProcAddress_v2");
	PFN_cuGetProcAddress_v11030 gpa1 = (PFN_cuGetProcAddress_v11030)dlsym(cu, "cuGetProcAddress");
	CUdriverProcAddressQueryResult st = CU_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND;
	void *fn = NULL;

	cr_assert(eq(ptr, (void *)gpa, memctl_fn("cuGetProcAddress_v2")));
	cr_assert(eq(ptr, (void *)gpa1, memctl_fn("cuGetProcAddress")));
	cr_assert(not(eq(ptr, (void *)gpa, driver_fn("cuGetProcAddress_v2"))));

	/* Wrapped: "cuMemAlloc" at 3020 and later is cuMemAlloc_v2, memctl's. */
	cr_assert(eq(int, gpa("cuMemAlloc", &fn, 12000, 0, &st), CUDA_SUCCESS));
	cr_assert(eq(int, st, CU_GET_PROC_ADDRESS_SUCCESS));
	cr_assert(eq(ptr, fn, memctl_fn("cuMemAlloc_v2")));
	cr_assert(eq(int, gpa("cuMemFree", &fn, 3020, CU_GET_PROC_ADDRESS_LEGACY_STREAM, NULL),
		     CUDA_SUCCESS));
	cr_assert(eq(ptr, fn, memctl_fn("cuMemFree_v2")));
	/* No per-thread variant: the legacy one, still memctl's. */
	cr_assert(eq(int, gpa("cuMemAllocPitch", &fn, 12000,
			      CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM, NULL), CUDA_SUCCESS));
	cr_assert(eq(ptr, fn, memctl_fn("cuMemAllocPitch_v2")));
	cr_assert(eq(int, gpa1("cuMemAlloc", &fn, 11030, 0), CUDA_SUCCESS));
	cr_assert(eq(ptr, fn, memctl_fn("cuMemAlloc_v2")));
	/* The lookup itself, both ABIs, as a runtime re-resolves it. */
	cr_assert(eq(int, gpa("cuGetProcAddress", &fn, 12000, 0, NULL), CUDA_SUCCESS));
	cr_assert(eq(ptr, fn, memctl_fn("cuGetProcAddress_v2")));
	cr_assert(eq(int, gpa("cuGetProcAddress", &fn, 11030, 0, NULL), CUDA_SUCCESS));
	cr_assert(eq(ptr, fn, memctl_fn("cuGetProcAddress")));

	/* Not wrapped: the driver's own, and the driver's answers to misses. */
	cr_assert(eq(int, gpa("cuMemGetInfo", &fn, 12000, 0, &st), CUDA_SUCCESS));
	cr_assert(eq(ptr, fn, driver_fn("cuMemGetInfo_v2")));
	cr_assert(eq(int, gpa("cuMemAlloc", &fn, 3000, 0, &st), CUDA_SUCCESS));
	cr_assert(eq(ptr, fn, NULL));
	cr_assert(eq(int, st, CU_GET_PROC_ADDRESS_VERSION_NOT_SUFFICIENT));
	cr_assert(eq(int, gpa("cuNoSuchCall", &fn, 12000, 0, &st), CUDA_SUCCESS));
	cr_assert(eq(ptr, fn, NULL));
	cr_assert(eq(int, st, CU_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND));
	cr_assert(eq(int, gpa1("cuNoSuchCall", &fn, 12000, 0), CUDA_ERROR_NOT_FOUND));
	cr_assert(eq(int, gpa("cuMemAlloc", &fn, 99000, 0, &st), CUDA_ERROR_INVALID_VALUE));
}

Test(driver, memory_allocated_through_a_looked_up_function_is_tagged)
{
	PFN_cuMemAlloc_v3020 alloc = NULL;
	PFN_cuMemFree_v3020 mfree = NULL;
	CUdeviceptr p = 0;
	struct memctl_stat st;

	cr_assert(eq(int, cuGetProcAddress_v2("cuMemAlloc", (void **)&alloc, 12000, 0, NULL),
		     CUDA_SUCCESS));
	cr_assert(eq(int, cuGetProcAddress_v2("cuMemFree", (void **)&mfree, 12000, 0, NULL),
		     CUDA_SUCCESS));
	cr_assert(eq(int, M.region_begin("kv_cache"), 0));
	cr_assert(eq(int, alloc(&p, 5 * MiB), CUDA_SUCCESS));
	cr_assert(eq(int, M.region_end(), 0));
	cr_assert(eq(int, M.stat("kv_cache", &st), 0));
	cr_assert(eq(u64, st.active_bytes, 6 * MiB));
	cr_assert(eq(int, mfree(p), CUDA_SUCCESS));
	cr_assert(eq(int, M.stat("kv_cache", &st), -ENOENT));
}

Test(driver, dlsym_redirects_only_wrapped_names_on_the_drivers_handle)
{
	void *rt = dlopen("libcudart.so.13", RTLD_NOW | RTLD_NOLOAD);
	void *again = dlopen("libcuda.so", RTLD_NOW); /* another name, same object */
	void *p;

	cr_assert(eq(ptr, dlsym(cu, "cuMemAlloc_v2"), memctl_fn("cuMemAlloc_v2")));
	cr_assert(not(eq(ptr, dlsym(cu, "cuMemAlloc_v2"), driver_fn("cuMemAlloc_v2"))));
	cr_assert(eq(ptr, dlsym(again, "cuMemFree_v2"), memctl_fn("cuMemFree_v2")));
	cr_assert(eq(ptr, dlsym(cu, "cuMemAllocPitch_v2"), memctl_fn("cuMemAllocPitch_v2")));
	/* Not wrapped, or another ABI: the driver's own. */
	cr_assert(eq(ptr, dlsym(cu, "cuInit"), driver_fn("cuInit")));
	cr_assert(eq(ptr, dlsym(cu, "cuMemGetInfo_v2"), driver_fn("cuMemGetInfo_v2")));
	cr_assert(eq(ptr, dlsym(cu, "fakecuda_used"), driver_fn("fakecuda_used")));
	/* A miss is the driver's miss, with its message. */
	(void)dlerror();
	p = dlsym(cu, "cuMemAlloc"); /* the 32-bit ABI: this driver has none */
	cr_assert(eq(ptr, p, NULL));
	cr_assert(not(eq(ptr, strstr(dlerror(), "cuMemAlloc"), NULL)));
	/* Other handles and pseudo-handles: glibc's answers. */
	cr_assert(not(eq(ptr, rt, NULL)));
	cr_assert(eq(ptr, dlsym(rt, "cudaMalloc"), raw_dlsym(rt, "cudaMalloc")));
	cr_assert(not(eq(ptr, dlsym(rt, "cudaMalloc"), memctl_fn("cudaMalloc"))));
	cr_assert(eq(ptr, dlsym(RTLD_DEFAULT, "cuMemAlloc_v2"), memctl_fn("cuMemAlloc_v2")));
	/* RTLD_NEXT still means "after this program": libmemctl.so comes
	 * next, so its cudaMalloc, not the runtime's. Were the hook's forward
	 * not a tail call, glibc would search after libmemctl.so instead. */
	cr_assert(eq(ptr, dlsym(RTLD_NEXT, "cudaMalloc"), memctl_fn("cudaMalloc")));
	cr_assert(eq(ptr, dlsym(RTLD_NEXT, "cudaMalloc"), raw_dlsym(RTLD_NEXT, "cudaMalloc")));
	dlclose(again);
	dlclose(rt);
}

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
Test(driver, cudaGetDriverEntryPoint_answers_with_memctls_functions)
{
	enum cudaDriverEntryPointQueryResult st = cudaDriverEntryPointSymbolNotFound;
	PFN_cuMemAlloc_v3020 alloc = NULL;
	CUdeviceptr p = 0;
	struct memctl_stat ms;
	void *fn = NULL;

	cr_assert(eq(int, cudaGetDriverEntryPoint("cuMemAlloc", (void **)&alloc,
						  cudaEnableDefault, &st), cudaSuccess));
	cr_assert(eq(int, st, cudaDriverEntryPointSuccess));
	cr_assert(eq(ptr, (void *)alloc, memctl_fn("cuMemAlloc_v2")));
	cr_assert(eq(int, cudaGetDriverEntryPointByVersion("cuMemFree", &fn, 12000,
							   cudaEnableDefault, &st), cudaSuccess));
	cr_assert(eq(ptr, fn, memctl_fn("cuMemFree_v2")));
	cr_assert(eq(int, cudaGetDriverEntryPointByVersion("cuInit", &fn, 12000,
							   cudaEnableDefault, &st), cudaSuccess));
	cr_assert(eq(ptr, fn, driver_fn("cuInit")));
	cr_assert(eq(int, cudaGetDriverEntryPointByVersion("cuNoSuchCall", &fn, 12000,
							   cudaEnableDefault, &st), cudaSuccess));
	cr_assert(eq(ptr, fn, NULL));
	cr_assert(eq(int, st, cudaDriverEntryPointSymbolNotFound));

	cr_assert(eq(int, M.region_begin("weights"), 0));
	cr_assert(eq(int, alloc(&p, MiB), CUDA_SUCCESS));
	cr_assert(eq(int, M.region_end(), 0));
	cr_assert(eq(int, M.stat("weights", &ms), 0));
	cr_assert(eq(u64, ms.allocations, 1));
	cr_assert(eq(int, cuMemFree(p), CUDA_SUCCESS));
}
#pragma GCC diagnostic pop

Test(driver, the_runtime_and_the_driver_layer_tag_a_cudaMalloc_once)
{
	struct memctl_stat st;
	void *p = NULL;
	long handles = fakecuda_live_handles();

	/* The simulated runtime's cudaMalloc is cuMemAlloc_v2 underneath, as
	 * the real one's is: inside a region memctl serves it at the runtime
	 * layer, and outside it passes both layers untouched. */
	cr_assert(eq(int, M.region_begin("weights"), 0));
	cr_assert(eq(int, cudaMalloc(&p, MiB), cudaSuccess));
	cr_assert(eq(int, M.region_end(), 0));
	cr_assert(eq(int, M.stat("weights", &st), 0));
	cr_assert(eq(u64, st.allocations, 1));
	cr_assert(eq(long, fakecuda_live_handles(), handles + 1));
	cr_assert(eq(int, cudaFree(p), cudaSuccess));
	cr_assert(eq(int, cudaMalloc(&p, MiB), cudaSuccess));
	cr_assert(eq(int, M.stat(NULL, &st), -ENOENT));
	cr_assert(eq(int, cudaFree(p), cudaSuccess));
}

struct racer {
	pthread_barrier_t *go;
	void *found;
	CUresult alloc_rc, free_rc;
};

static void *race(void *arg)
{
	struct racer *r = arg;
	PFN_cuMemAlloc_v3020 alloc;
	CUcontext ctx;
	CUdeviceptr p = 0;

	cuDevicePrimaryCtxRetain(&ctx, 0);
	cuCtxSetCurrent(ctx);
	pthread_barrier_wait(r->go);
	if (cuGetProcAddress_v2("cuMemAlloc", &r->found, 12000, 0, NULL) != CUDA_SUCCESS)
		return NULL;
	alloc = (PFN_cuMemAlloc_v3020)r->found;
	M.region_begin("weights");
	r->alloc_rc = alloc(&p, MiB);
	M.region_end();
	r->free_rc = cuMemFree(p);
	return NULL;
}

Test(driver, threads_looking_up_and_allocating_at_first_use_all_get_memctls_functions)
{
	pthread_barrier_t go;
	pthread_t tid[8];
	struct racer r[8];
	struct memctl_stat st;
	long handles = fakecuda_live_handles();
	int i;

	pthread_barrier_init(&go, NULL, 8);
	for (i = 0; i < 8; i++) {
		r[i] = (struct racer){ .go = &go, .alloc_rc = CUDA_ERROR_UNKNOWN,
				       .free_rc = CUDA_ERROR_UNKNOWN };
		pthread_create(&tid[i], NULL, race, &r[i]);
	}
	for (i = 0; i < 8; i++) {
		pthread_join(tid[i], NULL);
		cr_assert(eq(ptr, r[i].found, memctl_fn("cuMemAlloc_v2")), "thread %d", i);
		cr_assert(eq(int, r[i].alloc_rc, CUDA_SUCCESS), "thread %d", i);
		cr_assert(eq(int, r[i].free_rc, CUDA_SUCCESS), "thread %d", i);
	}
	pthread_barrier_destroy(&go);
	cr_assert(eq(int, M.stat(NULL, &st), -ENOENT));
	cr_assert(eq(long, fakecuda_live_handles(), handles));
}

/* ---- memory the application maps itself, called directly ------------- */

static CUmemGenericAllocationHandle mapped(const char *tag, CUdeviceptr at, size_t n)
{
	CUmemAllocationProp prop = { .type = CU_MEM_ALLOCATION_TYPE_PINNED,
				     .requestedHandleTypes = CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR,
				     .location = { CU_MEM_LOCATION_TYPE_DEVICE, 0 } };
	CUmemAccessDesc acc = { .location = { CU_MEM_LOCATION_TYPE_DEVICE, 0 },
				.flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE };
	CUmemGenericAllocationHandle h;

	cr_assert(eq(int, M.region_begin(tag), 0));
	cr_assert(eq(int, cuMemCreate(&h, n, &prop, 0), CUDA_SUCCESS));
	cr_assert(eq(int, M.region_end(), 0));
	cr_assert(eq(int, cuMemMap(at, n, 0, h, 0), CUDA_SUCCESS));
	cr_assert(eq(int, cuMemSetAccess(at, n, &acc, 1), CUDA_SUCCESS));
	return h;
}

Test(driver, memory_another_process_or_device_may_map_stays_resident_and_is_not_shared_paused)
{
	CUmulticastObjectProp mp = { .numDevices = 1, .size = GRAN };
	CUmemGenericAllocationHandle h[4], mc;
	CUdeviceptr base, own = 0;
	struct memctl_stat st;
	int fd = -1, i;

	cr_assert(eq(int, cuMemAddressReserve(&base, 16 * MiB, 0, 0, 0), CUDA_SUCCESS));
	for (i = 0; i < 4; i++) {
		h[i] = mapped("w", base + (uint64_t)i * GRAN, GRAN);
		fill(host(base + (uint64_t)i * GRAN), GRAN, 20u + (unsigned)i);
	}
	own = drv_tagged("w", MiB); /* memctl's own allocation, cuMemAlloc */
	cr_assert(eq(int, cuMulticastCreate(&mc, &mp), CUDA_SUCCESS));
	/* Handle 0 bound by value, handle 1 exported, cuMemAlloc'ed memory
	 * bound by address: each translated for the driver (which refuses
	 * memctl's own values) and resident from now on. */
	cr_assert(eq(int, cuMulticastBindMem(mc, 0, h[0], 0, GRAN, 0), CUDA_SUCCESS));
	cr_assert(eq(int, cuMemExportToShareableHandle(&fd, h[1],
						       CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR, 0),
		     CUDA_SUCCESS));
	cr_assert(ge(int, fd, 0));
	close(fd);
	cr_assert(eq(int, cuMulticastBindAddr(mc, 0, own, MiB, 0), CUDA_SUCCESS));
	cr_assert(eq(int, M.pause("w", MEMCTL_STAGE_CPU), 0));
	cr_assert(eq(int, M.stat("w", &st), 0));
	cr_assert(eq(u64, st.active_bytes, 3 * GRAN), "the three stay");
	cr_assert(eq(u64, st.paused_bytes, 2 * GRAN));
	cr_assert(eq(long, check(host(base), GRAN, 20), -1));
	cr_assert(released(host(base + 2 * GRAN)));
	/* Paused memory cannot be shared: it does not exist now. */
	cr_assert(eq(int, cuMemExportToShareableHandle(&fd, h[2],
						       CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR, 0),
		     CUDA_ERROR_NOT_PERMITTED));
	cr_assert(eq(int, cuMulticastBindMem(mc, 0, h[3], 0, GRAN, 0), CUDA_ERROR_NOT_PERMITTED));
	cr_assert(eq(int, M.resume("w", 0), 0));
	for (i = 0; i < 4; i++)
		cr_assert(eq(long, check(host(base + (uint64_t)i * GRAN), GRAN, 20u + (unsigned)i), -1));
	for (i = 0; i < 4; i++) {
		cr_assert(eq(int, cuMemUnmap(base + (uint64_t)i * GRAN, GRAN), CUDA_SUCCESS));
		cr_assert(eq(int, cuMemRelease(h[i]), CUDA_SUCCESS));
	}
	cr_assert(eq(int, cuMemAddressFree(base, 16 * MiB), CUDA_SUCCESS));
	cr_assert(eq(int, cuMemFree(own), CUDA_SUCCESS));
	cr_assert(eq(int, M.stat("w", &st), -ENOENT));
	cr_assert(eq(long, fakecuda_live_handles(), 0));
}

Test(driver, handle_values_the_application_holds_are_translated_in_every_call)
{
	CUdeviceptr base, b = 0;
	CUmemGenericAllocationHandle h, again = 0;
	CUmemAllocationProp got;
	size_t n = 0;

	cr_assert(eq(int, cuMemAddressReserve(&base, 8 * MiB, 0, 0, 0), CUDA_SUCCESS));
	h = mapped("w", base, 2 * GRAN);
	cr_assert(eq(int, cuMemRetainAllocationHandle(&again, (void *)(uintptr_t)(base + 12345)),
		     CUDA_SUCCESS));
	cr_assert(eq(u64, (uint64_t)again, (uint64_t)h));
	cr_assert(eq(int, cuMemRelease(again), CUDA_SUCCESS));
	cr_assert(eq(int, M.pause("w", MEMCTL_STAGE_CPU), 0));
	/* While paused: the driver has nothing, memctl answers. */
	cr_assert(eq(int, cuMemGetAllocationPropertiesFromHandle(&got, h), CUDA_SUCCESS));
	cr_assert(eq(int, got.requestedHandleTypes, CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR));
	cr_assert(eq(int, cuMemGetAddressRange(&b, &n, base + 5), CUDA_SUCCESS));
	cr_assert(eq(u64, (uint64_t)b, (uint64_t)base));
	cr_assert(eq(sz, n, 2 * GRAN));
	cr_assert(eq(int, M.resume("w", 0), 0));
	cr_assert(eq(int, cuMemGetAddressRange(&b, &n, base + 5), CUDA_SUCCESS));
	cr_assert(eq(sz, n, 2 * GRAN), "the driver's own answer now");
	cr_assert(eq(int, cuMemRelease(h), CUDA_SUCCESS));
	cr_assert(eq(int, cuMemUnmap(base, 2 * GRAN), CUDA_SUCCESS));
	cr_assert(eq(int, cuMemAddressFree(base, 8 * MiB), CUDA_SUCCESS));
	cr_assert(eq(long, fakecuda_live_handles(), 0));
}
