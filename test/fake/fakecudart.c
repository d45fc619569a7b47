/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fakecudart.c - a simulated CUDA runtime (libcudart.so.13) on top of the
 * simulated driver. Linked with a version script so that its symbols carry
 * the version libcudart.so.13 like the real runtime's: programs linked
 * against it reference cudaMalloc@libcudart.so.13, as PyTorch does.
 */
#include <cuda.h>
#include <cuda_runtime_api.h>
#include <string.h>

static __thread int current_device;
static __thread cudaError_t last_error;

static cudaError_t from_cu(CUresult r)
{
	cudaError_t e;

	switch (r) {
	case CUDA_SUCCESS: e = cudaSuccess; break;
	case CUDA_ERROR_OUT_OF_MEMORY: e = cudaErrorMemoryAllocation; break;
	case CUDA_ERROR_INVALID_VALUE: e = cudaErrorInvalidValue; break;
	default: e = cudaErrorUnknown; break;
	}
	if (e != cudaSuccess)
		last_error = e;
	return e;
}

cudaError_t cudaMalloc(void **ptr, size_t size)
{
	CUdeviceptr p = 0;
	cudaError_t e;

	if (size == 0) {
		*ptr = NULL;
		return cudaSuccess;
	}
	e = from_cu(cuMemAlloc(&p, size));
	if (e == cudaSuccess)
		*ptr = (void *)(uintptr_t)p;
	return e;
}

cudaError_t cudaFree(void *ptr)
{
	if (ptr == NULL)
		return cudaSuccess;
	return from_cu(cuMemFree((CUdeviceptr)(uintptr_t)ptr));
}

cudaError_t cudaGetDevice(int *dev)
{
	*dev = current_device;
	return cudaSuccess;
}

cudaError_t cudaSetDevice(int dev)
{
	int n = 0;

	cuDeviceGetCount(&n);
	if (dev < 0 || dev >= n)
		return last_error = cudaErrorInvalidDevice;
	current_device = dev;
	return cudaSuccess;
}

cudaError_t cudaGetDeviceCount(int *n)
{
	return from_cu(cuDeviceGetCount(n));
}

cudaError_t cudaMemGetInfo(size_t *free_bytes, size_t *total)
{
	return from_cu(cuMemGetInfo(free_bytes, total));
}

cudaError_t cudaDeviceSynchronize(void)
{
	return from_cu(cuCtxSynchronize());
}

cudaError_t cudaMemcpy(void *dst, const void *src, size_t n, enum cudaMemcpyKind kind)
{
	(void)kind;
	memmove(dst, src, n);
	return cudaSuccess;
}

cudaError_t cudaMemset(void *dst, int value, size_t n)
{
	memset(dst, value, n);
	return cudaSuccess;
}

cudaError_t cudaGetLastError(void)
{
	cudaError_t e = last_error;

	last_error = cudaSuccess;
	return e;
}

const char *cudaGetErrorString(cudaError_t e)
{
	switch (e) {
	case cudaSuccess: return "no error";
	case cudaErrorMemoryAllocation: return "out of memory";
	case cudaErrorInvalidValue: return "invalid argument";
	default: return "unknown error";
	}
}

/* ---- driver entry points (the driver layer's tests) ----------------- */

/* As the real runtime: through the driver's cuGetProcAddress_v2, at the
 * runtime's version for cudaGetDriverEntryPoint. */
static cudaError_t entry_point(const char *symbol, void **fn, unsigned int version,
			       unsigned long long flags,
			       enum cudaDriverEntryPointQueryResult *status)
{
	CUdriverProcAddressQueryResult st = CU_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND;
	CUresult r = cuGetProcAddress_v2(symbol, fn, (int)version, flags, &st);

	if (status != NULL)
		*status = st == CU_GET_PROC_ADDRESS_SUCCESS ? cudaDriverEntryPointSuccess
			: st == CU_GET_PROC_ADDRESS_VERSION_NOT_SUFFICIENT
				? cudaDriverEntryPointVersionNotSufficent
				: cudaDriverEntryPointSymbolNotFound;
	return from_cu(r);
}

cudaError_t cudaGetDriverEntryPoint(const char *symbol, void **fn, unsigned long long flags,
				    enum cudaDriverEntryPointQueryResult *status)
{
	return entry_point(symbol, fn, CUDART_VERSION, flags, status);
}

cudaError_t cudaGetDriverEntryPointByVersion(const char *symbol, void **fn,
					     unsigned int version, unsigned long long flags,
					     enum cudaDriverEntryPointQueryResult *status)
{
	return entry_point(symbol, fn, version, flags, status);
}
