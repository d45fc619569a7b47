/* SPDX-License-Identifier: Apache-2.0 */
/*
 * drv.h - the only door from region/ to the GPU.
 *
 * region/ never includes a CUDA header: it sees devices through this table
 * of function pointers. preload/drv_cuda.c fills it from the real
 * libcuda.so.1; tests fill it the same way from the simulated driver.
 *
 * Every entry returns 0 or a negative errno: -ENOMEM when the driver ran out
 * of memory, -EINVAL for arguments it refused, -EIO for anything else (the
 * binding logs the driver's own error name, once, where it happens).
 * Every entry takes the device it concerns and runs in that device's
 * primary context, so any thread may call it: where the primary context is
 * already current nothing changes, a thread with no context gets it set (as
 * the runtime would), and over an application's own context it is pushed
 * and popped again, leaving that context current. Host buffers are
 * registered portable. Nothing here calls exit or abort.
 */
#ifndef MEMCTL_DRV_H
#define MEMCTL_DRV_H

#include <stddef.h>
#include <stdint.h>

/* One location's access to a mapping as the application granted it with
 * cuMemSetAccess: CUmemLocation's type and id and CUmemAccess_flags, as
 * the driver numbers them (region/ includes no CUDA header). */
struct region_access {
	int type;
	int id;
	unsigned flags;
};
#define REGION_LOC_DEVICE 1  /* CU_MEM_LOCATION_TYPE_DEVICE */
#define REGION_ACCESS_RW 3   /* CU_MEM_ACCESS_FLAGS_PROT_READWRITE */

struct drv_ops {
	/* Minimum VMM granularity of `dev`, in bytes (2 MiB on H100). */
	int (*granularity)(int dev, size_t *out);
	/* Reserve `size` bytes of device virtual address space. */
	int (*reserve)(int dev, size_t size, size_t align, uint64_t *va);
	/* Give back a reservation; nothing may be mapped in it. */
	int (*unreserve)(int dev, uint64_t va, size_t size);
	/* Create `size` bytes of physical memory on `dev`; -ENOMEM when full. */
	int (*create)(int dev, size_t size, uint64_t *handle);
	/* The same with the application's own properties: `prop` is the copy
	 * of its CUmemAllocationProp that region_app_adopt was given. */
	int (*create_as)(int dev, size_t size, const void *prop, uint64_t *handle);
	/* Drop a handle; the memory is freed once it is also unmapped. */
	int (*release)(int dev, uint64_t handle);
	/* Map bytes [offset, offset+size) of a handle at `va` (inside a
	 * reservation). */
	int (*map)(int dev, uint64_t va, size_t size, size_t offset, uint64_t handle);
	/* Unmap [va, va+size): one mapping or several side by side, never a
	 * part of one; in-flight work touching it must be finished (see sync). */
	int (*unmap)(int dev, uint64_t va, size_t size);
	/* Grant `dev` read/write access to a mapped range. */
	int (*set_access)(int dev, uint64_t va, size_t size);
	/* Grant access as the application did (cuMemSetAccess): `n` entries. */
	int (*set_access_as)(int dev, uint64_t va, size_t size,
			     const struct region_access *acc, int n);
	/* Block until all work on `dev` has finished. May block for long. */
	int (*device_sync)(int dev);
	/* Streams for staging copies, non-blocking with respect to stream 0;
	 * created once per device and kept for the life of the process. The
	 * stream calls below also accept an application's stream. */
	int (*stream_create)(int dev, void **stream);
	/* Block until everything queued on `stream` has finished. */
	int (*stream_sync)(int dev, void *stream);
	/* Queue a copy; `host` must be pinned (host_register) for it to overlap. */
	int (*copy_dtoh)(int dev, void *host, uint64_t src, size_t n, void *stream);
	int (*copy_htod)(int dev, uint64_t dst, const void *host, size_t n, void *stream);
	/* Events mark the end of one allocation's queued copies, so its pages
	 * can be released while later copies still run. */
	int (*event_create)(int dev, void **event);
	int (*event_destroy)(int dev, void *event);
	int (*event_record)(int dev, void *event, void *stream);
	/* Block until the work recorded before `event` has finished. */
	int (*event_sync)(int dev, void *event);
	/* 0 if the work recorded before `event` has finished, -EAGAIN if not
	 * yet; never blocks. */
	int (*event_query)(int dev, void *event);
	/* Page-lock host memory for DMA; -ENOMEM when it cannot be pinned. */
	int (*host_register)(int dev, void *p, size_t n);
	int (*host_unregister)(int dev, void *p);
	/* Free and total device memory, bytes. */
	int (*mem_info)(int dev, size_t *free_bytes, size_t *total_bytes);
};

#endif /* MEMCTL_DRV_H */
