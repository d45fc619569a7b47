/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fake_proc.c - entry-point lookup in the simulated driver, as the real
 * driver does it: cuGetProcAddress (the CUDA 11.3 ABI) and
 * cuGetProcAddress_v2 (12.0) take a base name and a CUDA version and
 * answer with the newest ABI variant introduced at or before that version
 * ("cuMemAlloc" at 3020 and later is cuMemAlloc_v2), a per-thread variant
 * where CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM asks for one and it
 * exists. The library is linked -Bsymbolic-functions, so the addresses in
 * the table are the fake's own functions even where an LD_PRELOAD'ed
 * library defines the same names: like the real driver, the fake knows
 * nothing of interposers, and a test passes only if memctl translates.
 *
 * Every function of the fake that a program may look up needs its row;
 * a name without one is answered as the real driver answers an unknown
 * symbol.
 *
 * Also a call memctl's driver layer needs that the rest of the fake
 * lacks: cuMemAllocPitch_v2.
 */
#include <cuda.h>
#include <string.h>

#include "fakecuda.h"

/* cuda.h maps cuGetProcAddress to _v2; the 11.3 ABI has its own symbol. */
#undef cuGetProcAddress
CUresult cuGetProcAddress(const char *symbol, void **pfn, int cuda_version, cuuint64_t flags);

#define EXPORT __attribute__((visibility("default")))
#define DRIVER_VERSION 13000 /* the CUDA version this fake claims to be */
#define PITCH_ALIGN 512

struct proc {
	const char *name; /* the base name callers ask for */
	int since;        /* the CUDA version that introduced this ABI variant */
	int per_thread;   /* a _ptsz/_ptds variant */
	void *fn;
};

#define P(name, since, fn) { name, since, 0, (void *)(fn) }
#define PT(name, since, fn) { name, since, 1, (void *)(fn) }

/* Declared by cuda.h only for per-thread builds. */
CUresult cuMemAllocAsync_ptsz(CUdeviceptr *dptr, size_t size, CUstream hs);
CUresult cuMemFreeAsync_ptsz(CUdeviceptr dptr, CUstream hs);

static const struct proc procs[] = {
	P("cuGetProcAddress", 11030, cuGetProcAddress),
	P("cuGetProcAddress", 12000, cuGetProcAddress_v2),
	P("cuInit", 2000, cuInit),
	P("cuGetErrorName", 6000, cuGetErrorName),
	P("cuGetErrorString", 6000, cuGetErrorString),
	P("cuDeviceGetCount", 2000, cuDeviceGetCount),
	P("cuDeviceGet", 2000, cuDeviceGet),
	P("cuDevicePrimaryCtxRetain", 7000, cuDevicePrimaryCtxRetain),
	P("cuCtxGetCurrent", 4000, cuCtxGetCurrent),
	P("cuCtxSetCurrent", 4000, cuCtxSetCurrent),
	P("cuCtxGetDevice", 2000, cuCtxGetDevice),
	P("cuCtxPushCurrent", 4000, cuCtxPushCurrent_v2),
	P("cuCtxPopCurrent", 4000, cuCtxPopCurrent_v2),
	P("cuCtxSynchronize", 2000, cuCtxSynchronize),
	P("cuMemGetAllocationGranularity", 10020, cuMemGetAllocationGranularity),
	P("cuMemAddressReserve", 10020, cuMemAddressReserve),
	P("cuMemAddressFree", 10020, cuMemAddressFree),
	P("cuMemCreate", 10020, cuMemCreate),
	P("cuMemRelease", 10020, cuMemRelease),
	P("cuMemMap", 10020, cuMemMap),
	P("cuMemUnmap", 10020, cuMemUnmap),
	P("cuMemSetAccess", 10020, cuMemSetAccess),
	P("cuStreamCreate", 2000, cuStreamCreate),
	P("cuStreamDestroy", 4000, cuStreamDestroy_v2),
	P("cuStreamSynchronize", 2000, cuStreamSynchronize),
	P("cuEventCreate", 2000, cuEventCreate),
	P("cuEventDestroy", 4000, cuEventDestroy_v2),
	P("cuEventRecord", 2000, cuEventRecord),
	P("cuEventSynchronize", 2000, cuEventSynchronize),
	P("cuMemcpyDtoHAsync", 3020, cuMemcpyDtoHAsync_v2),
	P("cuMemcpyHtoDAsync", 3020, cuMemcpyHtoDAsync_v2),
	P("cuMemHostRegister", 6050, cuMemHostRegister_v2),
	P("cuMemHostUnregister", 4000, cuMemHostUnregister),
	P("cuMemGetInfo", 3020, cuMemGetInfo_v2),
	P("cuMemAlloc", 3020, cuMemAlloc_v2),
	P("cuMemAllocPitch", 3020, cuMemAllocPitch_v2),
	P("cuMemFree", 3020, cuMemFree_v2),
	P("cuDriverGetVersion", 2020, cuDriverGetVersion),
	P("cuDevicePrimaryCtxRelease", 11000, cuDevicePrimaryCtxRelease),
	P("cuDeviceGetDefaultMemPool", 11020, cuDeviceGetDefaultMemPool),
	P("cuCtxCreate", 12050, cuCtxCreate),
	P("cuCtxDestroy", 4000, cuCtxDestroy),
	P("cuEventQuery", 2000, cuEventQuery),
	P("cuStreamQuery", 2000, cuStreamQuery),
	P("cuStreamWaitEvent", 3020, cuStreamWaitEvent),
	P("cuStreamBeginCapture", 10010, cuStreamBeginCapture),
	P("cuStreamEndCapture", 10000, cuStreamEndCapture),
	P("cuStreamIsCapturing", 10000, cuStreamIsCapturing),
	P("cuGraphInstantiate", 12000, cuGraphInstantiate),
	P("cuGraphLaunch", 10000, cuGraphLaunch),
	P("cuGraphExecDestroy", 10000, cuGraphExecDestroy),
	P("cuGraphDestroy", 10000, cuGraphDestroy),
	P("cuModuleLoad", 2000, cuModuleLoad),
	P("cuModuleLoadData", 2000, cuModuleLoadData),
	P("cuModuleUnload", 2000, cuModuleUnload),
	P("cuModuleGetFunction", 2000, cuModuleGetFunction),
	P("cuLaunchKernel", 4000, cuLaunchKernel),
	P("cuLaunchKernelEx", 11060, cuLaunchKernelEx),
	P("cuLaunchHostFunc", 10000, cuLaunchHostFunc),
	P("cuMemcpy", 4000, cuMemcpy),
	P("cuMemcpyAsync", 4000, cuMemcpyAsync),
	P("cuMemcpyDtoD", 3020, cuMemcpyDtoD),
	P("cuMemcpyDtoDAsync", 3020, cuMemcpyDtoDAsync),
	P("cuMemcpyDtoH", 3020, cuMemcpyDtoH),
	P("cuMemcpyHtoD", 3020, cuMemcpyHtoD),
	P("cuMemsetD8", 3020, cuMemsetD8),
	P("cuMemsetD8Async", 3020, cuMemsetD8Async),
	P("cuMemsetD32", 3020, cuMemsetD32),
	P("cuMemsetD32Async", 3020, cuMemsetD32Async),
	P("cuMemAllocAsync", 11020, cuMemAllocAsync),
	P("cuMemAllocFromPoolAsync", 11020, cuMemAllocFromPoolAsync),
	P("cuMemFreeAsync", 11020, cuMemFreeAsync),
	P("cuMemPoolCreate", 11020, cuMemPoolCreate),
	P("cuMemPoolDestroy", 11020, cuMemPoolDestroy),
	P("cuMemPoolSetAttribute", 11020, cuMemPoolSetAttribute),
	P("cuMemPoolTrimTo", 11020, cuMemPoolTrimTo),
	P("cuPointerGetAttribute", 4000, cuPointerGetAttribute),
	PT("cuMemAllocAsync", 11020, cuMemAllocAsync_ptsz),
	PT("cuMemFreeAsync", 11020, cuMemFreeAsync_ptsz),
	P("cuDeviceGetMemPool", 11020, cuDeviceGetMemPool),
	P("cuDeviceSetMemPool", 11020, cuDeviceSetMemPool),
	P("cuMemPoolGetAttribute", 11020, cuMemPoolGetAttribute),
	P("cuMemGetAccess", 10020, cuMemGetAccess),
	P("cuMemRetainAllocationHandle", 11000, cuMemRetainAllocationHandle),
	P("cuMemGetAllocationPropertiesFromHandle", 10020, cuMemGetAllocationPropertiesFromHandle),
	P("cuMemExportToShareableHandle", 10020, cuMemExportToShareableHandle),
	P("cuMemImportFromShareableHandle", 10020, cuMemImportFromShareableHandle),
	P("cuMemGetAddressRange", 3020, cuMemGetAddressRange_v2),
	P("cuMulticastCreate", 12010, cuMulticastCreate),
	P("cuMulticastBindMem", 12010, cuMulticastBindMem),
	P("cuMulticastBindAddr", 12010, cuMulticastBindAddr),
};

#undef P
#undef PT

/* The variant a lookup gets, or NULL with *status saying why not. */
static const struct proc *lookup(const char *symbol, int version, cuuint64_t flags,
				 CUdriverProcAddressQueryResult *status)
{
	int per_thread = (flags & CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM) != 0;
	const struct proc *best = NULL;
	int named = 0;
	size_t i;

	for (i = 0; i < sizeof(procs) / sizeof(procs[0]); i++) {
		const struct proc *p = &procs[i];

		if (strcmp(p->name, symbol) != 0)
			continue;
		named = 1;
		if (p->since > version || (p->per_thread && !per_thread))
			continue;
		if (best == NULL || p->since > best->since ||
		    (p->since == best->since && p->per_thread))
			best = p;
	}
	*status = best != NULL ? CU_GET_PROC_ADDRESS_SUCCESS
		: named ? CU_GET_PROC_ADDRESS_VERSION_NOT_SUFFICIENT
			: CU_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND;
	return best;
}

/* 12.0: found or not, CUDA_SUCCESS; a miss leaves *pfn NULL. */
EXPORT CUresult cuGetProcAddress_v2(const char *symbol, void **pfn, int cuda_version,
				    cuuint64_t flags, CUdriverProcAddressQueryResult *status)
{
	CUdriverProcAddressQueryResult st;
	const struct proc *p;

	if (symbol == NULL || pfn == NULL || cuda_version > DRIVER_VERSION)
		return CUDA_ERROR_INVALID_VALUE;
	p = lookup(symbol, cuda_version, flags, &st);
	*pfn = p != NULL ? p->fn : NULL;
	if (status != NULL)
		*status = st;
	return CUDA_SUCCESS;
}

/* 11.3: a miss is CUDA_ERROR_NOT_FOUND. */
EXPORT CUresult cuGetProcAddress(const char *symbol, void **pfn, int cuda_version,
				 cuuint64_t flags)
{
	CUdriverProcAddressQueryResult st;
	CUresult r = cuGetProcAddress_v2(symbol, pfn, cuda_version, flags, &st);

	if (r == CUDA_SUCCESS && *pfn == NULL)
		return CUDA_ERROR_NOT_FOUND;
	return r;
}

/* Rows of `width` bytes, `height` of them, each starting at a multiple of
 * 512 bytes, as the real driver lays them out. */
EXPORT CUresult cuMemAllocPitch_v2(CUdeviceptr *dptr, size_t *pitch, size_t width,
				   size_t height, unsigned int element_bytes)
{
	size_t p;
	CUresult r;

	if (dptr == NULL || pitch == NULL || width == 0 || height == 0 ||
	    (element_bytes != 4 && element_bytes != 8 && element_bytes != 16) ||
	    width > ((size_t)1 << 31))
		return CUDA_ERROR_INVALID_VALUE;
	p = (width + PITCH_ALIGN - 1) / PITCH_ALIGN * PITCH_ALIGN;
	if (height > ((size_t)1 << 40) / p)
		return CUDA_ERROR_INVALID_VALUE;
	r = cuMemAlloc_v2(dptr, p * height);
	if (r == CUDA_SUCCESS)
		*pitch = p;
	return r;
}
