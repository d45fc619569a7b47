/* SPDX-License-Identifier: Apache-2.0 */
/*
 * cumem.c - the driver's own allocation calls: cuMemAlloc_v2,
 * cuMemAllocPitch_v2 and cuMemFree_v2, however the caller reached them
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
 * driver API, a statically linked runtime - becomes visible.
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
	return real != NULL ? real(dptr, bytesize) : CUDA_ERROR_NOT_INITIALIZED;
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
	return real != NULL ? real(dptr, pitch, width, height, element_bytes)
			    : CUDA_ERROR_NOT_INITIALIZED;
}
PROC_EXPORT(cumem_alloc_pitch, cuMemAllocPitch_v2, PFN_cuMemAllocPitch_v3020);

CUresult cumem_free(CUdeviceptr dptr)
{
	PFN_cuMemFree_v3020 real;
	int rc;

	if (dptr != 0 && region_count() > 0) {
		rc = region_free((uint64_t)dptr);
		if (rc != -ENOENT)
			return to_cu(rc);
	}
	real = (PFN_cuMemFree_v3020)proc_real(PROC_MEM_FREE);
	return real != NULL ? real(dptr) : CUDA_ERROR_NOT_INITIALIZED;
}
PROC_EXPORT(cumem_free, cuMemFree_v2, PFN_cuMemFree_v3020);
