/* SPDX-License-Identifier: Apache-2.0 */
/*
 * proc.h - the driver layer's table: the driver functions memctl
 * interposes, keyed by their ABI symbol, with the real function behind
 * each, and how lookups of them (cuGetProcAddress, the runtime's
 * cudaGetDriverEntryPoint, dlsym on a handle of libcuda.so.1) are answered.
 *
 * To interpose another driver function: add an id below, its row in
 * proc.c (ABI symbol and wrapper), the wrapper (typed with the ABI
 * version's PFN_ type from cudaTypedefs.h and exported with PROC_EXPORT),
 * and the symbol to memctl.map and test/check-lib.sh. Every lookup path
 * then hands it out. A function that submits GPU work only needs its line
 * in gated.h (mk/gen-gated.py): the id, the row and the gated wrapper
 * follow from it.
 *
 * Nothing here takes a lock or calls into region/: lookups arrive from
 * inside dlopen (a library constructor calling dlsym) and from the CUDA
 * runtime's own initialisation. Everything is safe on any thread.
 */
#ifndef MEMCTL_PROC_H
#define MEMCTL_PROC_H

#include <cuda.h>
#include <cudaTypedefs.h>

#include "gated.h"

enum proc_id {
	PROC_GET_PROC_ADDRESS,    /* cuGetProcAddress, the CUDA 11.3 ABI */
	PROC_GET_PROC_ADDRESS_V2, /* cuGetProcAddress_v2, the CUDA 12.0 ABI */
	PROC_MEM_ALLOC,           /* cuMemAlloc_v2 */
	PROC_MEM_ALLOC_PITCH,     /* cuMemAllocPitch_v2 */
	PROC_MEM_FREE,            /* cuMemFree_v2 */
	PROC_CTX_GET_DEVICE,      /* cuCtxGetDevice: called by memctl, not wrapped */
	/* -- memory the application maps itself (vmm.c), stream-ordered
	 *    allocation (cumem.c): issue 10, items 4 to 6 -- */
	PROC_MEM_CREATE,          /* cuMemCreate */
	PROC_MEM_RELEASE,         /* cuMemRelease */
	PROC_MEM_MAP,             /* cuMemMap */
	PROC_MEM_UNMAP,           /* cuMemUnmap */
	PROC_MEM_SET_ACCESS,      /* cuMemSetAccess */
	PROC_MEM_ADDRESS_FREE,    /* cuMemAddressFree */
	PROC_MEM_RETAIN,          /* cuMemRetainAllocationHandle */
	PROC_MEM_PROPS,           /* cuMemGetAllocationPropertiesFromHandle */
	PROC_MEM_EXPORT,          /* cuMemExportToShareableHandle */
	PROC_MEM_ADDRESS_RANGE,   /* cuMemGetAddressRange_v2 */
	PROC_MULTICAST_BIND_MEM,  /* cuMulticastBindMem */
	PROC_MULTICAST_BIND_ADDR, /* cuMulticastBindAddr */
	PROC_MEM_ALLOC_ASYNC,     /* cuMemAllocAsync */
	PROC_MEM_ALLOC_ASYNC_PTSZ, /* cuMemAllocAsync_ptsz */
	PROC_MEM_FREE_ASYNC,      /* cuMemFreeAsync */
	PROC_MEM_FREE_ASYNC_PTSZ, /* cuMemFreeAsync_ptsz */
	PROC_MEM_ALLOC_POOL,      /* cuMemAllocFromPoolAsync */
	PROC_MEM_ALLOC_POOL_PTSZ, /* cuMemAllocFromPoolAsync_ptsz */
	PROC_STREAM_IS_CAPTURING, /* cuStreamIsCapturing: called by memctl, not wrapped */
	PROC_DEVICE_GET_MEM_POOL, /* cuDeviceGetMemPool: called by memctl, not wrapped */
	PROC_DEVICE_DEFAULT_POOL, /* cuDeviceGetDefaultMemPool: called by memctl, not wrapped */
	/* -- end of issue 10, items 4 to 6 -- */
	/* the application's own contexts, which a drain synchronises (drain.c) */
	PROC_CTX_CREATE_V2,       /* cuCtxCreate_v2, the CUDA 3.2 ABI */
	PROC_CTX_CREATE_V3,       /* cuCtxCreate_v3, 11.4: execution affinity */
	PROC_CTX_CREATE_V4,       /* cuCtxCreate_v4, 12.5: creation parameters */
	PROC_CTX_DESTROY_V2,      /* cuCtxDestroy_v2 */
	/* every way to submit GPU work: waits at the gate (gated.h, gated.c) */
#define PROC_GATED_ID(abi, pfn, params, args) PROC_##abi,
	GATED_CALLS(PROC_GATED_ID)
#undef PROC_GATED_ID
	PROC_COUNT
};

/* Export `abi` (a driver ABI symbol, `pfn` the cudaTypedefs.h type of its
 * version) as an alias of memctl's wrapper `fn`, defined in the same file.
 * The table refers to `fn` itself, so lookups hand out memctl's code even
 * where another object defines `abi` first; the alias fails to compile if
 * `fn` does not have the ABI's prototype. */
#define PROC_EXPORT(fn, abi, pfn) \
	__typeof__(*(pfn)0) abi __attribute__((visibility("default"), alias(#fn)))

/* The same with the symbol as a string: cuda.h maps some ABI names to
 * others (cuMemcpyBatchAsync is cuMemcpyBatchAsync_v2 there), which an
 * identifier would follow and a string does not. */
#define PROC_EXPORT_AS(fn, symbol, pfn)                                        \
	__typeof__(*(pfn)0) fn##_export __asm__(symbol)                         \
		__attribute__((visibility("default"), alias(#fn)))

/* The wrappers the rows hand out (cumem.c, proc.c). */
CUresult cumem_alloc(CUdeviceptr *dptr, size_t bytesize);
CUresult cumem_alloc_pitch(CUdeviceptr *dptr, size_t *pitch, size_t width, size_t height,
			   unsigned int element_bytes);
CUresult cumem_free(CUdeviceptr dptr);
CUresult cumem_alloc_async(CUdeviceptr *dptr, size_t bytesize, CUstream stream);
CUresult cumem_alloc_async_ptsz(CUdeviceptr *dptr, size_t bytesize, CUstream stream);
CUresult cumem_free_async(CUdeviceptr dptr, CUstream stream);
CUresult cumem_free_async_ptsz(CUdeviceptr dptr, CUstream stream);
CUresult cumem_alloc_pool(CUdeviceptr *dptr, size_t bytesize, CUmemoryPool pool,
			  CUstream stream);
CUresult cumem_alloc_pool_ptsz(CUdeviceptr *dptr, size_t bytesize, CUmemoryPool pool,
			       CUstream stream);
CUresult vmm_create(CUmemGenericAllocationHandle *handle, size_t size,
		    const CUmemAllocationProp *prop, unsigned long long flags);
CUresult vmm_release(CUmemGenericAllocationHandle handle);
CUresult vmm_map(CUdeviceptr ptr, size_t size, size_t offset, CUmemGenericAllocationHandle handle,
		 unsigned long long flags);
CUresult vmm_unmap(CUdeviceptr ptr, size_t size);
CUresult vmm_set_access(CUdeviceptr ptr, size_t size, const CUmemAccessDesc *desc, size_t count);
CUresult vmm_address_free(CUdeviceptr ptr, size_t size);
CUresult vmm_retain(CUmemGenericAllocationHandle *handle, void *addr);
CUresult vmm_props(CUmemAllocationProp *prop, CUmemGenericAllocationHandle handle);
CUresult vmm_export(void *shareable, CUmemGenericAllocationHandle handle,
		    CUmemAllocationHandleType type, unsigned long long flags);
CUresult vmm_address_range(CUdeviceptr *base, size_t *size, CUdeviceptr dptr);
CUresult vmm_bind_mem(CUmemGenericAllocationHandle mc, size_t mc_offset,
		      CUmemGenericAllocationHandle mem, size_t mem_offset, size_t size,
		      unsigned long long flags);
CUresult vmm_bind_addr(CUmemGenericAllocationHandle mc, size_t mc_offset, CUdeviceptr memptr,
		       size_t size, unsigned long long flags);
CUresult proc_get_address(const char *symbol, void **pfn, int cuda_version, cuuint64_t flags);
/* drain.c: the application's contexts, remembered for the drain. */
CUresult drain_ctx_create_v2(CUcontext *pctx, unsigned int flags, CUdevice dev);
CUresult drain_ctx_create_v3(CUcontext *pctx, CUexecAffinityParam *params, int nparams,
			     unsigned int flags, CUdevice dev);
#if CUDA_VERSION >= 12050
CUresult drain_ctx_create_v4(CUcontext *pctx, CUctxCreateParams *params, unsigned int flags,
			     CUdevice dev);
#endif
CUresult drain_ctx_destroy(CUcontext ctx);
/* gated.c: one wrapper per entry point of gated.h, gated_<ABI symbol>. */
#define PROC_GATED_DECL(abi, pfn, params, args) CUresult gated_##abi params;
GATED_CALLS(PROC_GATED_DECL)
#undef PROC_GATED_DECL
CUresult proc_get_address_v2(const char *symbol, void **pfn, int cuda_version,
			     cuuint64_t flags, CUdriverProcAddressQueryResult *status);

typedef void *(*dlsym_fn)(void *, const char *);

/* glibc's dlsym, found with dlvsym(RTLD_NEXT, "dlsym", <version>), so
 * never memctl's own. NULL only on a C library without dlvsym versions. */
dlsym_fn proc_real_dlsym(void);

/* dlsym for memctl's own lookups: never redirected, and RTLD_NEXT means
 * the objects after libmemctl.so. */
void *preload_dlsym(void *handle, const char *name);

/* libcuda.so.1's handle, loading the driver on first use (RTLD_LOCAL);
 * NULL when it cannot be loaded. */
void *proc_driver(void);

/* The driver's own function of row `id`; NULL when the driver lacks it or
 * cannot be loaded. One atomic load once resolved. */
void *proc_real(enum proc_id id);

/* A driver function address as a caller should get it: memctl's wrapper
 * where `fn` is the driver's function of a wrapped row, else `fn`. */
void *proc_wrapper_of(void *fn);

/* Whether `name` can be a driver function at all: every one is "cu" and a
 * capital, so "cuda*", "cublas*" and all other names leave after three
 * compares, inline in the dlsym hook. */
static inline int proc_driver_name(const char *name)
{
	return name != NULL && name[0] == 'c' && name[1] == 'u' && name[2] >= 'A' && name[2] <= 'Z';
}

/* The dlsym hook's two questions. The row whose ABI symbol is `name` and
 * that memctl wraps, else -1. Whether `handle` is libcuda.so.1's (never
 * loads it). */
int proc_row_named(const char *name);
int proc_is_driver(void *handle);

/* dlsym(handle, name of row) on the driver's handle: the driver's own
 * lookup runs (a missing symbol fails as it would, with its dlerror) and
 * a hit is answered with memctl's wrapper. */
void *proc_dlsym_driver(void *handle, int row);

#endif /* MEMCTL_PROC_H */
