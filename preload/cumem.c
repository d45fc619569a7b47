/* SPDX-License-Identifier: Apache-2.0 */
/*
 * cumem.c - the driver's own allocation calls: cuMemAlloc_v2,
 * cuMemAllocPitch_v2 and cuMemFree_v2, and the stream-ordered
 * cuMemAllocAsync, cuMemFreeAsync and cuMemAllocFromPoolAsync (with their
 * per-thread-stream _ptsz variants), however the caller reached them
 * (linked, dlsym on the driver's handle, cuGetProcAddress).
 *
 * Inside a region, or under the default tag, an allocation is served by
 * region/ exactly as a tagged cudaMalloc is: one VMM allocation, pausable,
 * on the current context's device. Everything else goes to the driver
 * untouched, and so does a call memctl could not serve as the driver
 * would (no current context, a zero size, an unsupported pitch element):
 * the driver then gives its own answer. Like cudaMalloc, the first call
 * starts memctl (options, control thread): this is how a process that
 * never calls the shared runtime's cudaMalloc - JAX, a C++ engine on the
 * driver API, a statically linked runtime - becomes visible. What passes
 * through untagged is counted (region_untagged_add), for status.
 *
 * Stream-ordered allocation under a tag is served the same way: VMM
 * memory, valid at once (earlier than stream order requires, which no
 * caller can tell). Its free must wait for the work queued on its stream
 * before it: region_free_async records an event there and gives the
 * memory back once the stream has got that far, without making the
 * caller wait. Left to the driver (and resident): allocations inside
 * stream capture (they belong to the graph), allocations while the
 * application made a pool of its own the device's current one, and every
 * cuMemAllocFromPoolAsync: a pool the application creates carries
 * properties memctl cannot give VMM memory (IPC export of pool pointers,
 * per-pool access, its own release threshold).
 */
#include <cuda.h>
#include <cudaTypedefs.h>
#include <errno.h>
#include <stdint.h>

#include "log.h"
#include "preload.h"
#include "proc.h"
#include "region.h"

/* Pitch granularity of tagged cuMemAllocPitch: a multiple of every
 * device's texture pitch alignment (32 on current GPUs), and what the
 * driver itself picks there. */
#define PITCH_ALIGN 512

/* The one place a memctl errno becomes a driver result. */
static CUresult to_cu(int rc)
{
	switch (rc) {
	case 0:
		return CUDA_SUCCESS;
	case -ENOMEM:
		return CUDA_ERROR_OUT_OF_MEMORY;
	case -EINVAL:
		return CUDA_ERROR_INVALID_VALUE;
	case -ENOSYS:
		return CUDA_ERROR_NOT_INITIALIZED;
	default:
		return CUDA_ERROR_UNKNOWN;
	}
}

/* The device of the calling thread's current context, as the driver
 * allocates on it; -1 when there is none. */
static int current_device(void)
{
	PFN_cuCtxGetDevice_v2000 get = (PFN_cuCtxGetDevice_v2000)proc_real(PROC_CTX_GET_DEVICE);
	CUdevice dev;

	if (get == NULL || get(&dev) != CUDA_SUCCESS)
		return -1;
	return (int)dev;
}

/* Serve `size` bytes under `tag` (with its region's flags) on the current
 * device. 0 when memctl does not serve it (no current context: the driver
 * answers); else 1 with the result in *r. */
static int alloc_tagged(const char *tag, unsigned flags, size_t size, CUdeviceptr *dptr,
			CUresult *r)
{
	struct region_err err;
	uint64_t va = 0;
	int dev = current_device(), rc;

	if (dev < 0)
		return 0;
	rc = preload_driver();
	if (rc == 0)
		rc = region_alloc(tag, flags, dev, size, &va, &err);
	if (rc < 0)
		memctl_log_debug("tagged driver allocation of %zu bytes ('%s'): %s", size, tag,
				 rc == -ENOSYS ? "no driver" : err.msg);
	else
		*dptr = (CUdeviceptr)va;
	*r = to_cu(rc);
	return 1;
}

CUresult cumem_alloc(CUdeviceptr *dptr, size_t bytesize)
{
	PFN_cuMemAlloc_v3020 real;
	char tag[TAG_MAX];
	unsigned flags;
	CUresult r;

	preload_activate();
	if (dptr != NULL && bytesize > 0 && preload_tag(tag, &flags) &&
	    alloc_tagged(tag, flags, bytesize, dptr, &r))
		return r;
	real = (PFN_cuMemAlloc_v3020)proc_real(PROC_MEM_ALLOC);
	if (real == NULL)
		return CUDA_ERROR_NOT_INITIALIZED;
	r = real(dptr, bytesize);
	if (r == CUDA_SUCCESS)
		region_untagged_add(UNTAGGED_ALLOC, (uint64_t)*dptr, bytesize);
	return r;
}
PROC_EXPORT(cumem_alloc, cuMemAlloc_v2, PFN_cuMemAlloc_v3020);

/* The pitch and size of a tagged pitched allocation; 0 when the request
 * is one for the driver to judge (and refuse or serve untagged). */
static int pitched(size_t width, size_t height, unsigned int element_bytes, size_t *pitch,
		   size_t *size)
{
	if (width == 0 || height == 0 || width > SIZE_MAX - PITCH_ALIGN ||
	    (element_bytes != 4 && element_bytes != 8 && element_bytes != 16))
		return 0;
	*pitch = (width + PITCH_ALIGN - 1) / PITCH_ALIGN * PITCH_ALIGN;
	if (height > SIZE_MAX / *pitch)
		return 0;
	*size = *pitch * height;
	return 1;
}

CUresult cumem_alloc_pitch(CUdeviceptr *dptr, size_t *pitch, size_t width, size_t height,
			   unsigned int element_bytes)
{
	PFN_cuMemAllocPitch_v3020 real;
	char tag[TAG_MAX];
	unsigned flags;
	size_t p, size;
	CUresult r;

	preload_activate();
	if (dptr != NULL && pitch != NULL && pitched(width, height, element_bytes, &p, &size) &&
	    preload_tag(tag, &flags) && alloc_tagged(tag, flags, size, dptr, &r)) {
		if (r == CUDA_SUCCESS)
			*pitch = p;
		return r;
	}
	real = (PFN_cuMemAllocPitch_v3020)proc_real(PROC_MEM_ALLOC_PITCH);
	if (real == NULL)
		return CUDA_ERROR_NOT_INITIALIZED;
	r = real(dptr, pitch, width, height, element_bytes);
	if (r == CUDA_SUCCESS)
		region_untagged_add(UNTAGGED_ALLOC, (uint64_t)*dptr, *pitch * height);
	return r;
}
PROC_EXPORT(cumem_alloc_pitch, cuMemAllocPitch_v2, PFN_cuMemAllocPitch_v3020);

CUresult cumem_free(CUdeviceptr dptr)
{
	PFN_cuMemFree_v3020 real;
	CUresult r;
	int rc;

	if (dptr != 0 && region_may_own()) {
		rc = region_free((uint64_t)dptr);
		if (rc != -ENOENT)
			return to_cu(rc);
	}
	real = (PFN_cuMemFree_v3020)proc_real(PROC_MEM_FREE);
	if (real == NULL)
		return CUDA_ERROR_NOT_INITIALIZED;
	r = real(dptr);
	if (r == CUDA_SUCCESS && dptr != 0)
		(void)region_untagged_drop((uint64_t)dptr);
	return r;
}
PROC_EXPORT(cumem_free, cuMemFree_v2, PFN_cuMemFree_v3020);

/* ---- stream-ordered allocation ---------------------------------------- */

/* The stream a call means: a _ptsz variant's NULL is the calling thread's
 * per-thread stream, which memctl's own calls must name explicitly. */
static CUstream stream_of(CUstream stream, int per_thread)
{
	return stream == NULL && per_thread ? CU_STREAM_PER_THREAD : stream;
}

/* Work queued on `stream` now goes into a graph, not to the device. */
static int capturing(CUstream stream)
{
	PFN_cuStreamIsCapturing_v10000 is =
		(PFN_cuStreamIsCapturing_v10000)proc_real(PROC_STREAM_IS_CAPTURING);
	CUstreamCaptureStatus st = CU_STREAM_CAPTURE_STATUS_NONE;

	/* Unknown counts as capturing: then the driver does it all. */
	return is == NULL || is(stream, &st) != CUDA_SUCCESS || st != CU_STREAM_CAPTURE_STATUS_NONE;
}

/* The device's current pool is its default one, not the application's. */
static int default_pool_current(void)
{
	PFN_cuDeviceGetMemPool_v11020 cur =
		(PFN_cuDeviceGetMemPool_v11020)proc_real(PROC_DEVICE_GET_MEM_POOL);
	PFN_cuDeviceGetDefaultMemPool_v11020 def =
		(PFN_cuDeviceGetDefaultMemPool_v11020)proc_real(PROC_DEVICE_DEFAULT_POOL);
	CUmemoryPool a = NULL, b = NULL;
	int dev = current_device();

	return dev >= 0 && cur != NULL && def != NULL && cur(&a, dev) == CUDA_SUCCESS &&
	       def(&b, dev) == CUDA_SUCCESS && a == b;
}

static CUresult alloc_async(enum proc_id id, CUdeviceptr *dptr, size_t size, CUstream stream,
			    int per_thread)
{
	PFN_cuMemAllocAsync_v11020 real = (PFN_cuMemAllocAsync_v11020)proc_real(id);
	char tag[TAG_MAX];
	unsigned flags = 0;
	CUresult r;

	preload_activate();
	if (dptr != NULL && size > 0 && preload_tag(tag, &flags) &&
	    !capturing(stream_of(stream, per_thread)) && default_pool_current() &&
	    alloc_tagged(tag, flags, size, dptr, &r))
		return r;
	if (real == NULL)
		return CUDA_ERROR_NOT_INITIALIZED;
	r = real(dptr, size, stream);
	if (r == CUDA_SUCCESS)
		region_untagged_add(UNTAGGED_ASYNC, (uint64_t)*dptr, size);
	return r;
}

CUresult cumem_alloc_async(CUdeviceptr *dptr, size_t bytesize, CUstream stream)
{
	return alloc_async(PROC_MEM_ALLOC_ASYNC, dptr, bytesize, stream, 0);
}
PROC_EXPORT(cumem_alloc_async, cuMemAllocAsync, PFN_cuMemAllocAsync_v11020);

CUresult cumem_alloc_async_ptsz(CUdeviceptr *dptr, size_t bytesize, CUstream stream)
{
	return alloc_async(PROC_MEM_ALLOC_ASYNC_PTSZ, dptr, bytesize, stream, 1);
}
PROC_EXPORT(cumem_alloc_async_ptsz, cuMemAllocAsync_ptsz, PFN_cuMemAllocAsync_v11020_ptsz);

static CUresult free_async(enum proc_id id, CUdeviceptr dptr, CUstream stream, int per_thread)
{
	PFN_cuMemFreeAsync_v11020 real = (PFN_cuMemFreeAsync_v11020)proc_real(id);
	CUresult r;

	if (dptr != 0 && region_owns((uint64_t)dptr)) {
		/* A free recorded into a graph would run at each launch, on
		 * memory memctl gives back once: no translation is safe. */
		if (capturing(stream_of(stream, per_thread))) {
			memctl_log_warnx("cuMemFreeAsync of tagged memory inside stream "
					 "capture refused: free it outside the capture");
			return CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED;
		}
		return to_cu(region_free_async((uint64_t)dptr, stream_of(stream, per_thread)));
	}
	if (real == NULL)
		return CUDA_ERROR_NOT_INITIALIZED;
	r = real(dptr, stream);
	if (r == CUDA_SUCCESS)
		(void)region_untagged_drop((uint64_t)dptr);
	return r;
}

CUresult cumem_free_async(CUdeviceptr dptr, CUstream stream)
{
	return free_async(PROC_MEM_FREE_ASYNC, dptr, stream, 0);
}
PROC_EXPORT(cumem_free_async, cuMemFreeAsync, PFN_cuMemFreeAsync_v11020);

CUresult cumem_free_async_ptsz(CUdeviceptr dptr, CUstream stream)
{
	return free_async(PROC_MEM_FREE_ASYNC_PTSZ, dptr, stream, 1);
}
PROC_EXPORT(cumem_free_async_ptsz, cuMemFreeAsync_ptsz, PFN_cuMemFreeAsync_v11020_ptsz);

/* Pools the application made: left to the driver, counted. */
static CUresult alloc_pool(enum proc_id id, CUdeviceptr *dptr, size_t size, CUmemoryPool pool,
			   CUstream stream)
{
	PFN_cuMemAllocFromPoolAsync_v11020 real = (PFN_cuMemAllocFromPoolAsync_v11020)proc_real(id);
	CUresult r;

	preload_activate();
	if (real == NULL)
		return CUDA_ERROR_NOT_INITIALIZED;
	r = real(dptr, size, pool, stream);
	if (r == CUDA_SUCCESS)
		region_untagged_add(UNTAGGED_POOL, (uint64_t)*dptr, size);
	return r;
}

CUresult cumem_alloc_pool(CUdeviceptr *dptr, size_t bytesize, CUmemoryPool pool, CUstream stream)
{
	return alloc_pool(PROC_MEM_ALLOC_POOL, dptr, bytesize, pool, stream);
}
PROC_EXPORT(cumem_alloc_pool, cuMemAllocFromPoolAsync, PFN_cuMemAllocFromPoolAsync_v11020);

CUresult cumem_alloc_pool_ptsz(CUdeviceptr *dptr, size_t bytesize, CUmemoryPool pool,
			       CUstream stream)
{
	return alloc_pool(PROC_MEM_ALLOC_POOL_PTSZ, dptr, bytesize, pool, stream);
}
PROC_EXPORT(cumem_alloc_pool_ptsz, cuMemAllocFromPoolAsync_ptsz,
	    PFN_cuMemAllocFromPoolAsync_v11020_ptsz);
