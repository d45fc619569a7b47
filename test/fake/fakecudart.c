/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fakecudart.c - a simulated CUDA runtime (libcudart.so.13) on top of the
 * simulated driver. Linked with a version script so that its symbols carry
 * the version libcudart.so.13 like the real runtime's: programs linked
 * against it reference cudaMalloc@libcudart.so.13, as PyTorch does.
 *
 * Like the real runtime it initialises the driver on first use and makes
 * the current device's primary context current in a thread that has no
 * context (a thread that has one, the application's own, keeps it). Its
 * calls keep the documented synchronisation of the real ones: cudaMemcpy
 * from pageable memory and cudaMemset may return before the device has
 * the bytes, cudaFree does not wait for work, cudaDeviceSynchronize waits
 * for everything. Kernels are the simulated driver's built-in ones
 * (fakecuda_kernel() gives the `func` for cudaLaunchKernel).
 */
#include <cuda.h>
#include <cuda_runtime_api.h>
#include <pthread.h>
#include <string.h>

#define MAX_DEVICES 16

static __thread int current_device;
static __thread cudaError_t last_error;
static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static CUresult init_rc;
static CUcontext primary[MAX_DEVICES];
static pthread_mutex_t primary_lock = PTHREAD_MUTEX_INITIALIZER;

static cudaError_t from_cu(CUresult r)
{
	cudaError_t e;

	switch (r) {
	case CUDA_SUCCESS: e = cudaSuccess; break;
	case CUDA_ERROR_OUT_OF_MEMORY: e = cudaErrorMemoryAllocation; break;
	case CUDA_ERROR_INVALID_VALUE: e = cudaErrorInvalidValue; break;
	case CUDA_ERROR_NOT_INITIALIZED: e = cudaErrorInitializationError; break;
	case CUDA_ERROR_INVALID_DEVICE: e = cudaErrorInvalidDevice; break;
	case CUDA_ERROR_INVALID_CONTEXT: e = cudaErrorDeviceUninitialized; break;
	case CUDA_ERROR_INVALID_HANDLE: e = cudaErrorInvalidResourceHandle; break;
	case CUDA_ERROR_NOT_FOUND: e = cudaErrorSymbolNotFound; break;
	case CUDA_ERROR_NOT_READY: e = cudaErrorNotReady; break;
	case CUDA_ERROR_ILLEGAL_ADDRESS: e = cudaErrorIllegalAddress; break;
	case CUDA_ERROR_ILLEGAL_STATE: e = cudaErrorIllegalState; break;
	case CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED: e = cudaErrorStreamCaptureUnsupported; break;
	case CUDA_ERROR_STREAM_CAPTURE_INVALIDATED: e = cudaErrorStreamCaptureInvalidated; break;
	case CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED:
		e = cudaErrorHostMemoryAlreadyRegistered; break;
	case CUDA_ERROR_HOST_MEMORY_NOT_REGISTERED: e = cudaErrorHostMemoryNotRegistered; break;
	default: e = cudaErrorUnknown; break;
	}
	/* "Not ready" is an answer, not an error to remember. */
	if (e != cudaSuccess && e != cudaErrorNotReady)
		last_error = e;
	return e;
}

static void init(void)
{
	init_rc = cuInit(0);
}

static CUresult primary_of(int dev, CUcontext *ctx)
{
	CUresult r = CUDA_SUCCESS;

	if (dev < 0 || dev >= MAX_DEVICES)
		return CUDA_ERROR_INVALID_DEVICE;
	pthread_mutex_lock(&primary_lock);
	if (primary[dev] == NULL)
		r = cuDevicePrimaryCtxRetain(&primary[dev], dev);
	*ctx = primary[dev];
	pthread_mutex_unlock(&primary_lock);
	return r;
}

/* What every runtime call that works on the device does first. */
static CUresult enter(void)
{
	CUcontext cur = NULL, ctx;
	CUresult r;

	pthread_once(&init_once, init);
	if (init_rc != CUDA_SUCCESS)
		return init_rc;
	r = cuCtxGetCurrent(&cur);
	if (r != CUDA_SUCCESS || cur != NULL)
		return r;
	r = primary_of(current_device, &ctx);
	return r != CUDA_SUCCESS ? r : cuCtxSetCurrent(ctx);
}

/* Evaluates to the cudaError_t of `call` run after enter(). */
#define RT(call) ({ CUresult r_ = enter(); from_cu(r_ != CUDA_SUCCESS ? r_ : (call)); })

cudaError_t cudaMalloc(void **ptr, size_t size)
{
	CUdeviceptr p = 0;
	cudaError_t e;

	if (ptr == NULL)
		return last_error = cudaErrorInvalidValue;
	if (size == 0) {
		*ptr = NULL;
		return cudaSuccess;
	}
	e = RT(cuMemAlloc(&p, size));
	if (e == cudaSuccess)
		*ptr = (void *)(uintptr_t)p;
	return e;
}

cudaError_t cudaFree(void *ptr)
{
	if (ptr == NULL)
		return cudaSuccess;
	return RT(cuMemFree((CUdeviceptr)(uintptr_t)ptr));
}

cudaError_t cudaGetDevice(int *dev)
{
	CUcontext cur = NULL;
	CUdevice d;

	if (dev == NULL)
		return last_error = cudaErrorInvalidValue;
	pthread_once(&init_once, init);
	/* The current context's device, as the real runtime answers. */
	if (init_rc == CUDA_SUCCESS && cuCtxGetCurrent(&cur) == CUDA_SUCCESS && cur != NULL &&
	    cuCtxGetDevice(&d) == CUDA_SUCCESS) {
		*dev = d;
		return cudaSuccess;
	}
	*dev = current_device;
	return cudaSuccess;
}

cudaError_t cudaSetDevice(int dev)
{
	CUcontext ctx;
	int n = 0;
	CUresult r;

	pthread_once(&init_once, init);
	if (init_rc != CUDA_SUCCESS)
		return from_cu(init_rc);
	if (cuDeviceGetCount(&n) != CUDA_SUCCESS || dev < 0 || dev >= n)
		return last_error = cudaErrorInvalidDevice;
	current_device = dev;
	r = primary_of(dev, &ctx);
	return from_cu(r != CUDA_SUCCESS ? r : cuCtxSetCurrent(ctx));
}

cudaError_t cudaGetDeviceCount(int *n)
{
	pthread_once(&init_once, init);
	if (init_rc != CUDA_SUCCESS)
		return from_cu(init_rc);
	return from_cu(cuDeviceGetCount(n));
}

cudaError_t cudaMemGetInfo(size_t *free_bytes, size_t *total)
{
	return RT(cuMemGetInfo(free_bytes, total));
}

cudaError_t cudaDeviceSynchronize(void)
{
	return RT(cuCtxSynchronize());
}

cudaError_t cudaMemcpy(void *dst, const void *src, size_t n, enum cudaMemcpyKind kind)
{
	CUdeviceptr d = (CUdeviceptr)(uintptr_t)dst, s = (CUdeviceptr)(uintptr_t)src;

	switch (kind) {
	case cudaMemcpyHostToHost:
		memmove(dst, src, n);
		return cudaSuccess;
	case cudaMemcpyHostToDevice:
		return RT(cuMemcpyHtoD(d, src, n));
	case cudaMemcpyDeviceToHost:
		return RT(cuMemcpyDtoH(dst, s, n));
	case cudaMemcpyDeviceToDevice:
		return RT(cuMemcpyDtoD(d, s, n));
	default: /* unified addressing: the driver tells the sides apart */
		return RT(cuMemcpy(d, s, n));
	}
}

cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t n, enum cudaMemcpyKind kind,
			    cudaStream_t stream)
{
	CUdeviceptr d = (CUdeviceptr)(uintptr_t)dst, s = (CUdeviceptr)(uintptr_t)src;

	switch (kind) {
	case cudaMemcpyHostToHost:
		memmove(dst, src, n);
		return cudaSuccess;
	case cudaMemcpyHostToDevice:
		return RT(cuMemcpyHtoDAsync(d, src, n, stream));
	case cudaMemcpyDeviceToHost:
		return RT(cuMemcpyDtoHAsync(dst, s, n, stream));
	case cudaMemcpyDeviceToDevice:
		return RT(cuMemcpyDtoDAsync(d, s, n, stream));
	default:
		return RT(cuMemcpyAsync(d, s, n, stream));
	}
}

cudaError_t cudaMemset(void *dst, int value, size_t n)
{
	return RT(cuMemsetD8((CUdeviceptr)(uintptr_t)dst, (unsigned char)value, n));
}

cudaError_t cudaMemsetAsync(void *dst, int value, size_t n, cudaStream_t stream)
{
	return RT(cuMemsetD8Async((CUdeviceptr)(uintptr_t)dst, (unsigned char)value, n, stream));
}

cudaError_t cudaHostRegister(void *p, size_t n, unsigned int flags)
{
	return RT(cuMemHostRegister(p, n, flags));
}

cudaError_t cudaHostUnregister(void *p)
{
	return RT(cuMemHostUnregister(p));
}

/* ---- streams and events ---- */

cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned int flags)
{
	return RT(cuStreamCreate(s, flags & cudaStreamNonBlocking ? CU_STREAM_NON_BLOCKING : 0));
}

cudaError_t cudaStreamCreate(cudaStream_t *s)
{
	return cudaStreamCreateWithFlags(s, cudaStreamDefault);
}

cudaError_t cudaStreamDestroy(cudaStream_t s)
{
	return RT(cuStreamDestroy(s));
}

cudaError_t cudaStreamSynchronize(cudaStream_t s)
{
	return RT(cuStreamSynchronize(s));
}

cudaError_t cudaStreamQuery(cudaStream_t s)
{
	return RT(cuStreamQuery(s));
}

cudaError_t cudaStreamWaitEvent(cudaStream_t s, cudaEvent_t e, unsigned int flags)
{
	return RT(cuStreamWaitEvent(s, e, flags));
}

cudaError_t cudaEventCreateWithFlags(cudaEvent_t *e, unsigned int flags)
{
	return RT(cuEventCreate(e, flags));
}

cudaError_t cudaEventCreate(cudaEvent_t *e)
{
	return cudaEventCreateWithFlags(e, cudaEventDefault);
}

cudaError_t cudaEventDestroy(cudaEvent_t e)
{
	return RT(cuEventDestroy(e));
}

cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s)
{
	return RT(cuEventRecord(e, s));
}

cudaError_t cudaEventSynchronize(cudaEvent_t e)
{
	return RT(cuEventSynchronize(e));
}

cudaError_t cudaEventQuery(cudaEvent_t e)
{
	return RT(cuEventQuery(e));
}

/* ---- launches and graphs ---- */

cudaError_t cudaLaunchKernel(const void *func, dim3 grid, dim3 block, void **args,
			     size_t shmem, cudaStream_t s)
{
	return RT(cuLaunchKernel((CUfunction)(uintptr_t)func, grid.x, grid.y, grid.z, block.x,
				 block.y, block.z, (unsigned)shmem, s, args, NULL));
}

cudaError_t cudaLaunchHostFunc(cudaStream_t s, cudaHostFn_t fn, void *data)
{
	return RT(cuLaunchHostFunc(s, fn, data));
}

cudaError_t cudaStreamBeginCapture(cudaStream_t s, enum cudaStreamCaptureMode mode)
{
	return RT(cuStreamBeginCapture(s, (CUstreamCaptureMode)mode));
}

cudaError_t cudaStreamEndCapture(cudaStream_t s, cudaGraph_t *graph)
{
	return RT(cuStreamEndCapture(s, graph));
}

cudaError_t cudaStreamIsCapturing(cudaStream_t s, enum cudaStreamCaptureStatus *status)
{
	return RT(cuStreamIsCapturing(s, (CUstreamCaptureStatus *)status));
}

cudaError_t cudaGraphInstantiate(cudaGraphExec_t *exec, cudaGraph_t graph,
				 unsigned long long flags)
{
	return RT(cuGraphInstantiate(exec, graph, flags));
}

cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t s)
{
	return RT(cuGraphLaunch(exec, s));
}

cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec)
{
	return RT(cuGraphExecDestroy(exec));
}

cudaError_t cudaGraphDestroy(cudaGraph_t graph)
{
	return RT(cuGraphDestroy(graph));
}

/* ---- stream-ordered allocation ---- */

cudaError_t cudaMallocAsync(void **ptr, size_t size, cudaStream_t s)
{
	CUdeviceptr p = 0;
	cudaError_t e;

	if (ptr == NULL)
		return last_error = cudaErrorInvalidValue;
	e = RT(cuMemAllocAsync(&p, size, s));
	if (e == cudaSuccess)
		*ptr = (void *)(uintptr_t)p;
	return e;
}

cudaError_t cudaMallocFromPoolAsync(void **ptr, size_t size, cudaMemPool_t pool,
				    cudaStream_t s)
{
	CUdeviceptr p = 0;
	cudaError_t e;

	if (ptr == NULL)
		return last_error = cudaErrorInvalidValue;
	e = RT(cuMemAllocFromPoolAsync(&p, size, pool, s));
	if (e == cudaSuccess)
		*ptr = (void *)(uintptr_t)p;
	return e;
}

cudaError_t cudaFreeAsync(void *ptr, cudaStream_t s)
{
	return RT(cuMemFreeAsync((CUdeviceptr)(uintptr_t)ptr, s));
}

cudaError_t cudaMemPoolCreate(cudaMemPool_t *pool, const struct cudaMemPoolProps *props)
{
	CUmemPoolProps p;

	if (props == NULL)
		return last_error = cudaErrorInvalidValue;
	memset(&p, 0, sizeof(p));
	p.allocType = (CUmemAllocationType)props->allocType;
	p.location.type = (CUmemLocationType)props->location.type;
	p.location.id = props->location.id;
	return RT(cuMemPoolCreate(pool, &p));
}

cudaError_t cudaMemPoolDestroy(cudaMemPool_t pool)
{
	return RT(cuMemPoolDestroy(pool));
}

cudaError_t cudaDeviceGetDefaultMemPool(cudaMemPool_t *pool, int dev)
{
	return RT(cuDeviceGetDefaultMemPool(pool, dev));
}

/* ---- errors ---- */

cudaError_t cudaGetLastError(void)
{
	cudaError_t e = last_error;

	last_error = cudaSuccess;
	return e;
}

cudaError_t cudaPeekAtLastError(void)
{
	return last_error;
}

const char *cudaGetErrorName(cudaError_t e)
{
	switch (e) {
	case cudaSuccess: return "cudaSuccess";
	case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
	case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
	case cudaErrorInitializationError: return "cudaErrorInitializationError";
	case cudaErrorIllegalAddress: return "cudaErrorIllegalAddress";
	case cudaErrorNotReady: return "cudaErrorNotReady";
	default: return "cudaErrorUnknown";
	}
}

const char *cudaGetErrorString(cudaError_t e)
{
	switch (e) {
	case cudaSuccess: return "no error";
	case cudaErrorMemoryAllocation: return "out of memory";
	case cudaErrorInvalidValue: return "invalid argument";
	case cudaErrorInitializationError: return "initialization error";
	case cudaErrorIllegalAddress: return "an illegal memory access was encountered";
	case cudaErrorNotReady: return "device not ready";
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
