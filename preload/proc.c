/* SPDX-License-Identifier: Apache-2.0 */
/*
 * proc.c - entry-point lookup: how a caller that asks for a driver
 * function gets memctl's wrapper of it.
 *
 * A program linked against libcuda reaches memctl's exports through
 * LD_PRELOAD. Every CUDA runtime, static or shared, does not: it opens
 * libcuda.so.1 itself, takes cuGetProcAddress_v2 with dlsym on that handle
 * and resolves every other driver call through it; PyTorch asks the
 * runtime (cudaGetDriverEntryPoint). Both bypass symbol resolution, so
 * both are answered here, from one table keyed by the driver's ABI symbol.
 *
 * A lookup through cuGetProcAddress names a base name and a CUDA version
 * ("cuMemAlloc" at 3020 and later is cuMemAlloc_v2). Which ABI version
 * that means is the driver's rule, so memctl lets the driver answer and
 * recognises the answer by address: the driver hands out its exported
 * functions themselves (seen on an H200 for every memory function the CUDA
 * 13 runtime resolves). A variant memctl does not wrap (a newer _v3, a
 * per-thread _ptsz) thus passes through untouched instead of reaching a
 * wrapper with another signature.
 *
 * No locks: resolution is idempotent and published with atomic stores, so
 * a lookup that arrives from inside dlopen or from another thread at once
 * is answered the same way.
 */
#include <cuda.h>
#include <cudaTypedefs.h>
#include <cuda_runtime_api.h>
#include <dlfcn.h>
#include <string.h>

#include "log.h"
#include "preload.h"
#include "proc.h"

/* cuda.h maps cuGetProcAddress to _v2; the 11.3 ABI has its own symbol. */
#undef cuGetProcAddress

struct proc_row {
	const char *symbol; /* the driver's ABI name */
	void *wrapper;      /* memctl's function of that ABI; NULL: memctl only calls it */
	void *real;         /* the driver's, once resolved */
};

static struct proc_row rows[PROC_COUNT] = {
	[PROC_GET_PROC_ADDRESS] = { "cuGetProcAddress", (void *)proc_get_address, NULL },
	[PROC_GET_PROC_ADDRESS_V2] = { "cuGetProcAddress_v2", (void *)proc_get_address_v2, NULL },
	[PROC_MEM_ALLOC] = { "cuMemAlloc_v2", (void *)cumem_alloc, NULL },
	[PROC_MEM_ALLOC_PITCH] = { "cuMemAllocPitch_v2", (void *)cumem_alloc_pitch, NULL },
	[PROC_MEM_FREE] = { "cuMemFree_v2", (void *)cumem_free, NULL },
	[PROC_CTX_GET_DEVICE] = { "cuCtxGetDevice", NULL, NULL },
	/* -- memory the application maps itself (vmm.c), stream-ordered
	 *    allocation (cumem.c): issue 10, items 4 to 6 -- */
	[PROC_MEM_CREATE] = { "cuMemCreate", (void *)vmm_create, NULL },
	[PROC_MEM_RELEASE] = { "cuMemRelease", (void *)vmm_release, NULL },
	[PROC_MEM_MAP] = { "cuMemMap", (void *)vmm_map, NULL },
	[PROC_MEM_UNMAP] = { "cuMemUnmap", (void *)vmm_unmap, NULL },
	[PROC_MEM_SET_ACCESS] = { "cuMemSetAccess", (void *)vmm_set_access, NULL },
	[PROC_MEM_ADDRESS_FREE] = { "cuMemAddressFree", (void *)vmm_address_free, NULL },
	[PROC_MEM_RETAIN] = { "cuMemRetainAllocationHandle", (void *)vmm_retain, NULL },
	[PROC_MEM_PROPS] = { "cuMemGetAllocationPropertiesFromHandle", (void *)vmm_props, NULL },
	[PROC_MEM_EXPORT] = { "cuMemExportToShareableHandle", (void *)vmm_export, NULL },
	[PROC_MEM_ADDRESS_RANGE] = { "cuMemGetAddressRange_v2", (void *)vmm_address_range, NULL },
	[PROC_MULTICAST_BIND_MEM] = { "cuMulticastBindMem", (void *)vmm_bind_mem, NULL },
	[PROC_MULTICAST_BIND_ADDR] = { "cuMulticastBindAddr", (void *)vmm_bind_addr, NULL },
	[PROC_MEM_ALLOC_ASYNC] = { "cuMemAllocAsync", (void *)cumem_alloc_async, NULL },
	[PROC_MEM_ALLOC_ASYNC_PTSZ] = { "cuMemAllocAsync_ptsz", (void *)cumem_alloc_async_ptsz,
					NULL },
	[PROC_MEM_FREE_ASYNC] = { "cuMemFreeAsync", (void *)cumem_free_async, NULL },
	[PROC_MEM_FREE_ASYNC_PTSZ] = { "cuMemFreeAsync_ptsz", (void *)cumem_free_async_ptsz, NULL },
	[PROC_MEM_ALLOC_POOL] = { "cuMemAllocFromPoolAsync", (void *)cumem_alloc_pool, NULL },
	[PROC_MEM_ALLOC_POOL_PTSZ] = { "cuMemAllocFromPoolAsync_ptsz",
				       (void *)cumem_alloc_pool_ptsz, NULL },
	[PROC_STREAM_IS_CAPTURING] = { "cuStreamIsCapturing", NULL, NULL },
	[PROC_DEVICE_GET_MEM_POOL] = { "cuDeviceGetMemPool", NULL, NULL },
	[PROC_DEVICE_DEFAULT_POOL] = { "cuDeviceGetDefaultMemPool", NULL, NULL },
	/* -- end of issue 10, items 4 to 6 -- */
	[PROC_CTX_CREATE_V2] = { "cuCtxCreate_v2", (void *)drain_ctx_create_v2, NULL },
	[PROC_CTX_CREATE_V3] = { "cuCtxCreate_v3", (void *)drain_ctx_create_v3, NULL },
#if CUDA_VERSION >= 12050
	[PROC_CTX_CREATE_V4] = { "cuCtxCreate_v4", (void *)drain_ctx_create_v4, NULL },
#else
	[PROC_CTX_CREATE_V4] = { "cuCtxCreate_v4", NULL, NULL },
#endif
	[PROC_CTX_DESTROY_V2] = { "cuCtxDestroy_v2", (void *)drain_ctx_destroy, NULL },
#define PROC_GATED_ROW(abi, pfn, params, args) [PROC_##abi] = { #abi, (void *)gated_##abi, NULL },
	GATED_CALLS(PROC_GATED_ROW)
#undef PROC_GATED_ROW
};

static dlsym_fn real_dlsym;
static void *driver_handle;
static int resolved;

dlsym_fn proc_real_dlsym(void)
{
	/* 2.34 moved dlsym into libc under a new version; before, libdl had
	 * it under the architecture's first version only. */
	static const char *versions[] = { "GLIBC_2.34", "GLIBC_2.2.5", "GLIBC_2.17",
					  "GLIBC_2.0", "GLIBC_2.2", "GLIBC_2.27",
					  "GLIBC_2.36" };
	dlsym_fn fn = __atomic_load_n(&real_dlsym, __ATOMIC_ACQUIRE);
	size_t i;

	for (i = 0; fn == NULL && i < sizeof(versions) / sizeof(versions[0]); i++)
		fn = (dlsym_fn)dlvsym(RTLD_NEXT, "dlsym", versions[i]);
	if (fn != NULL)
		__atomic_store_n(&real_dlsym, fn, __ATOMIC_RELEASE);
	return fn;
}

void *preload_dlsym(void *handle, const char *name)
{
	dlsym_fn fn = proc_real_dlsym();

	return fn != NULL ? fn(handle, name) : NULL;
}

/* Publish a handle of libcuda.so.1 once; a second one from a racing
 * thread is the same object and is closed again. */
static void *keep_driver(void *h)
{
	void *prev = NULL;

	if (!__atomic_compare_exchange_n(&driver_handle, &prev, h, 0, __ATOMIC_ACQ_REL,
					 __ATOMIC_ACQUIRE)) {
		dlclose(h);
		return prev;
	}
	return h;
}

void *proc_driver(void)
{
	void *h = __atomic_load_n(&driver_handle, __ATOMIC_ACQUIRE);

	if (h == NULL && (h = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL)) != NULL)
		h = keep_driver(h);
	return h;
}

int proc_is_driver(void *handle)
{
	void *h = __atomic_load_n(&driver_handle, __ATOMIC_ACQUIRE);

	/* Not loaded yet: then `handle` cannot be the driver's. The driver is
	 * found by its soname, however the caller named it. */
	if (h == NULL && (h = dlopen("libcuda.so.1", RTLD_LAZY | RTLD_NOLOAD)) != NULL)
		h = keep_driver(h);
	return h != NULL && h == handle;
}

/* memctl recognises the driver's answers by address. A driver whose
 * lookups answered with other addresses than its symbols' would leave
 * everything found through them untagged or ungated: say so, once. */
static void check_one(PFN_cuGetProcAddress_v12000 lookup, const char *name, int version,
		      enum proc_id row, const char *what)
{
	void *fn = NULL;

	if (lookup(name, &fn, version, CU_GET_PROC_ADDRESS_DEFAULT, NULL) == CUDA_SUCCESS &&
	    fn != __atomic_load_n(&rows[row].real, __ATOMIC_ACQUIRE))
		memctl_log_warnx("this CUDA driver's cuGetProcAddress answers with other "
				 "addresses than its symbols: calls of %s by programs that find the "
				 "driver through it (every CUDA runtime) will not be %s", name, what);
}

static void check_addresses(void)
{
	static int checked;
	PFN_cuGetProcAddress_v12000 lookup = (PFN_cuGetProcAddress_v12000)
		__atomic_load_n(&rows[PROC_GET_PROC_ADDRESS_V2].real, __ATOMIC_ACQUIRE);

	if (lookup == NULL || __atomic_exchange_n(&checked, 1, __ATOMIC_ACQ_REL))
		return;
	check_one(lookup, "cuMemAlloc", 3020, PROC_MEM_ALLOC, "tagged");
	check_one(lookup, "cuLaunchKernel", 4000, PROC_cuLaunchKernel, "gated");
}

static void resolve_all(void)
{
	void *h = proc_driver();
	int i;

	if (h == NULL)
		return; /* tried again next time: a driver may be loaded later */
	for (i = 0; i < PROC_COUNT; i++)
		if (__atomic_load_n(&rows[i].real, __ATOMIC_ACQUIRE) == NULL)
			__atomic_store_n(&rows[i].real, preload_dlsym(h, rows[i].symbol),
					 __ATOMIC_RELEASE);
	__atomic_store_n(&resolved, 1, __ATOMIC_RELEASE);
	check_addresses();
}

void *proc_real(enum proc_id id)
{
	void *fn = __atomic_load_n(&rows[id].real, __ATOMIC_ACQUIRE);

	if (fn == NULL && !__atomic_load_n(&resolved, __ATOMIC_ACQUIRE)) {
		resolve_all();
		fn = __atomic_load_n(&rows[id].real, __ATOMIC_ACQUIRE);
	}
	return fn;
}

void *proc_wrapper_of(void *fn)
{
	int i;

	if (fn == NULL)
		return NULL;
	if (!__atomic_load_n(&resolved, __ATOMIC_ACQUIRE))
		resolve_all();
	for (i = 0; i < PROC_COUNT; i++)
		if (rows[i].wrapper != NULL && __atomic_load_n(&rows[i].real, __ATOMIC_ACQUIRE) == fn)
			return rows[i].wrapper;
	return fn;
}

int proc_row_named(const char *name)
{
	int i;

	if (!proc_driver_name(name))
		return -1;
	for (i = 0; i < PROC_COUNT; i++)
		if (rows[i].wrapper != NULL && strcmp(rows[i].symbol, name) == 0)
			return i;
	return -1;
}

void *proc_dlsym_driver(void *handle, int row)
{
	void *fn = preload_dlsym(handle, rows[row].symbol);
	void *none = NULL;

	if (fn == NULL)
		return NULL;
	__atomic_compare_exchange_n(&rows[row].real, &none, fn, 0, __ATOMIC_ACQ_REL,
				    __ATOMIC_ACQUIRE);
	return rows[row].wrapper;
}

/* ---- cuGetProcAddress, both ABIs ---------------------------------- */

CUresult proc_get_address(const char *symbol, void **pfn, int cuda_version, cuuint64_t flags)
{
	PFN_cuGetProcAddress_v11030 real =
		(PFN_cuGetProcAddress_v11030)proc_real(PROC_GET_PROC_ADDRESS);
	CUresult r;

	if (real == NULL)
		return CUDA_ERROR_NOT_INITIALIZED;
	r = real(symbol, pfn, cuda_version, flags);
	if (r == CUDA_SUCCESS && pfn != NULL)
		*pfn = proc_wrapper_of(*pfn);
	return r;
}
PROC_EXPORT(proc_get_address, cuGetProcAddress, PFN_cuGetProcAddress_v11030);

CUresult proc_get_address_v2(const char *symbol, void **pfn, int cuda_version,
			     cuuint64_t flags, CUdriverProcAddressQueryResult *status)
{
	PFN_cuGetProcAddress_v12000 real =
		(PFN_cuGetProcAddress_v12000)proc_real(PROC_GET_PROC_ADDRESS_V2);
	CUresult r;

	if (real == NULL)
		return CUDA_ERROR_NOT_INITIALIZED;
	r = real(symbol, pfn, cuda_version, flags, status);
	if (r == CUDA_SUCCESS && pfn != NULL)
		*pfn = proc_wrapper_of(*pfn);
	return r;
}
PROC_EXPORT(proc_get_address_v2, cuGetProcAddress_v2, PFN_cuGetProcAddress_v12000);

/* ---- the runtime's cudaGetDriverEntryPoint[ByVersion][_ptsz] -------- */

/*
 * The shared runtime answers these through the cuGetProcAddress it took
 * with dlsym, which is already memctl's; translating again is a no-op
 * then, and covers a runtime that resolved the driver another way. The
 * _ptsz exports are what programs built with --default-stream per-thread
 * call.
 */
typedef cudaError_t (*entry_fn)(const char *, void **, unsigned long long,
				enum cudaDriverEntryPointQueryResult *);
typedef cudaError_t (*entry_version_fn)(const char *, void **, unsigned int, unsigned long long,
					enum cudaDriverEntryPointQueryResult *);

/* Declared by cuda_runtime_api.h only for per-thread builds. */
cudaError_t cudaGetDriverEntryPoint_ptsz(const char *symbol, void **fn, unsigned long long flags,
					 enum cudaDriverEntryPointQueryResult *status);
cudaError_t cudaGetDriverEntryPointByVersion_ptsz(const char *symbol, void **fn,
						  unsigned int version, unsigned long long flags,
						  enum cudaDriverEntryPointQueryResult *status);

static void *runtime_real(void **slot, const char *name)
{
	void *fn = __atomic_load_n(slot, __ATOMIC_ACQUIRE);

	if (fn == NULL && (fn = preload_runtime_sym(name)) != NULL)
		__atomic_store_n(slot, fn, __ATOMIC_RELEASE);
	return fn;
}

static cudaError_t entry(void **slot, const char *name, const char *symbol, void **fn,
			 unsigned long long flags, enum cudaDriverEntryPointQueryResult *status)
{
	entry_fn real = (entry_fn)runtime_real(slot, name);
	cudaError_t e;

	if (real == NULL)
		return cudaErrorInitializationError;
	e = real(symbol, fn, flags, status);
	if (e == cudaSuccess && fn != NULL)
		*fn = proc_wrapper_of(*fn);
	return e;
}

static cudaError_t entry_version(void **slot, const char *name, const char *symbol,
				 void **fn, unsigned int version, unsigned long long flags,
				 enum cudaDriverEntryPointQueryResult *status)
{
	entry_version_fn real = (entry_version_fn)runtime_real(slot, name);
	cudaError_t e;

	if (real == NULL)
		return cudaErrorInitializationError;
	e = real(symbol, fn, version, flags, status);
	if (e == cudaSuccess && fn != NULL)
		*fn = proc_wrapper_of(*fn);
	return e;
}

MEMCTL_EXPORT cudaError_t cudaGetDriverEntryPoint(const char *symbol, void **fn,
						  unsigned long long flags,
						  enum cudaDriverEntryPointQueryResult *status)
{
	static void *real;

	return entry(&real, "cudaGetDriverEntryPoint", symbol, fn, flags, status);
}

MEMCTL_EXPORT cudaError_t cudaGetDriverEntryPoint_ptsz(const char *symbol, void **fn,
						       unsigned long long flags,
						       enum cudaDriverEntryPointQueryResult *status)
{
	static void *real;

	return entry(&real, "cudaGetDriverEntryPoint_ptsz", symbol, fn, flags, status);
}

MEMCTL_EXPORT cudaError_t cudaGetDriverEntryPointByVersion(
	const char *symbol, void **fn, unsigned int version, unsigned long long flags,
	enum cudaDriverEntryPointQueryResult *status)
{
	static void *real;

	return entry_version(&real, "cudaGetDriverEntryPointByVersion", symbol, fn, version,
			     flags, status);
}

MEMCTL_EXPORT cudaError_t cudaGetDriverEntryPointByVersion_ptsz(
	const char *symbol, void **fn, unsigned int version, unsigned long long flags,
	enum cudaDriverEntryPointQueryResult *status)
{
	static void *real;

	return entry_version(&real, "cudaGetDriverEntryPointByVersion_ptsz", symbol, fn,
			     version, flags, status);
}
