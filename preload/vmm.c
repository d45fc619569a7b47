/* SPDX-License-Identifier: Apache-2.0 */
/*
 * vmm.c - the driver's virtual memory calls, for applications that map
 * memory themselves (PyTorch's expandable segments, NCCL's buffers):
 * cuMemCreate, cuMemMap, cuMemSetAccess, cuMemUnmap, cuMemRelease,
 * cuMemAddressFree and the calls that take a handle or name a mapped
 * address, however the caller reached them.
 *
 * A cuMemCreate of device memory inside a region or under the default tag
 * is adopted by region/app.c: the application gets a handle value of
 * memctl's, which every call below translates, and its mappings become
 * pausable with the rest of the tag. Everything else goes to the driver
 * untouched (and is counted as untagged: status shows it). The driver's
 * own answer reaches the application wherever the driver was asked;
 * memctl answers only for what it took away (a paused mapping).
 *
 * An export for IPC (cuMemExportToShareableHandle) of a tagged handle, or
 * its binding to a multicast object (cuMulticastBindMem, or
 * cuMulticastBindAddr of tagged memory of either kind: NCCL's NVLS), makes
 * it resident for good: another process or device may map it, and memctl
 * cannot release memory under it. Doing so while it is paused is refused:
 * its memory does not exist.
 */
#include <cuda.h>
#include <cudaTypedefs.h>
#include <errno.h>
#include <stdint.h>

#include "drv_cuda.h"
#include "log.h"
#include "preload.h"
#include "proc.h"
#include "region.h"

/* The driver's function of a row, typed: NOT_INITIALIZED when absent. */
#define REAL(id, pfn) ((pfn)proc_real(id))

/* region/'s answer on the application's behalf, as a driver result. */
static CUresult answer(int rc)
{
	return drv_cuda_result(rc);
}

/* Device memory on a device, the only kind a pause can take away. */
static int device_memory(const CUmemAllocationProp *prop)
{
	return prop != NULL && prop->type == CU_MEM_ALLOCATION_TYPE_PINNED &&
	       prop->location.type == CU_MEM_LOCATION_TYPE_DEVICE;
}

/* Hand the new handle to region/ under `tag`. A record memctl cannot make
 * (host memory) fails the call as the driver would when short of memory:
 * untagged memory under a tag would never be paused. */
static CUresult adopt(const char *tag, unsigned flags, CUmemGenericAllocationHandle *handle,
		      size_t size, const CUmemAllocationProp *prop)
{
	PFN_cuMemRelease_v10020 release = REAL(PROC_MEM_RELEASE, PFN_cuMemRelease_v10020);
	struct region_err err;
	uint64_t id;
	int rc = preload_driver();

	if (rc == 0)
		rc = region_app_adopt(tag, flags, prop->location.id, size, prop, sizeof(*prop),
				      (uint64_t)*handle, &id, &err);
	if (rc == 0) {
		*handle = (CUmemGenericAllocationHandle)id;
		return CUDA_SUCCESS;
	}
	memctl_log_debug("tagged cuMemCreate of %zu bytes ('%s'): %s", size, tag,
			 rc == -ENOSYS ? "no driver" : err.msg);
	if (release != NULL)
		(void)release(*handle);
	return rc == -ENOSYS ? CUDA_ERROR_NOT_INITIALIZED : CUDA_ERROR_OUT_OF_MEMORY;
}

CUresult vmm_create(CUmemGenericAllocationHandle *handle, size_t size,
		    const CUmemAllocationProp *prop, unsigned long long flags)
{
	PFN_cuMemCreate_v10020 real = REAL(PROC_MEM_CREATE, PFN_cuMemCreate_v10020);
	char tag[TAG_MAX];
	unsigned tag_flags = 0;
	CUresult r;

	preload_activate();
	if (real == NULL)
		return CUDA_ERROR_NOT_INITIALIZED;
	/* The driver judges the request and makes the memory; memctl only
	 * takes it over. */
	r = real(handle, size, prop, flags);
	if (r != CUDA_SUCCESS || !device_memory(prop))
		return r;
	if (preload_tag(tag, &tag_flags))
		return adopt(tag, tag_flags, handle, size, prop);
	region_untagged_add(UNTAGGED_CREATE, (uint64_t)*handle, size);
	return r;
}
PROC_EXPORT(vmm_create, cuMemCreate, PFN_cuMemCreate_v10020);

CUresult vmm_release(CUmemGenericAllocationHandle handle)
{
	PFN_cuMemRelease_v10020 real = REAL(PROC_MEM_RELEASE, PFN_cuMemRelease_v10020);
	CUresult r;
	int rc;

	/* Also a release the driver refused earlier, retried. */
	if (region_app_count() > 0 || region_may_own()) {
		(void)drv_cuda_result(0);
		if ((rc = region_app_release((uint64_t)handle)) != -ENOENT)
			return answer(rc);
	}
	if (real == NULL)
		return CUDA_ERROR_NOT_INITIALIZED;
	r = real(handle);
	if (r == CUDA_SUCCESS)
		(void)region_untagged_drop((uint64_t)handle);
	return r;
}
PROC_EXPORT(vmm_release, cuMemRelease, PFN_cuMemRelease_v10020);

CUresult vmm_map(CUdeviceptr ptr, size_t size, size_t offset, CUmemGenericAllocationHandle handle,
		 unsigned long long flags)
{
	PFN_cuMemMap_v10020 real = REAL(PROC_MEM_MAP, PFN_cuMemMap_v10020);
	int rc;

	if (region_app_count() > 0 && region_app_is((uint64_t)handle)) {
		if (flags != 0)
			return CUDA_ERROR_INVALID_VALUE; /* "must be zero" */
		(void)drv_cuda_result(0);
		rc = region_app_map((uint64_t)handle, (uint64_t)ptr, size, offset);
		return answer(rc);
	}
	return real != NULL ? real(ptr, size, offset, handle, flags) : CUDA_ERROR_NOT_INITIALIZED;
}
PROC_EXPORT(vmm_map, cuMemMap, PFN_cuMemMap_v10020);

CUresult vmm_unmap(CUdeviceptr ptr, size_t size)
{
	PFN_cuMemUnmap_v10020 real = REAL(PROC_MEM_UNMAP, PFN_cuMemUnmap_v10020);
	int rc;

	(void)drv_cuda_result(0);
	if ((rc = region_app_unmap((uint64_t)ptr, size)) != -ENOENT)
		return answer(rc);
	return real != NULL ? real(ptr, size) : CUDA_ERROR_NOT_INITIALIZED;
}
PROC_EXPORT(vmm_unmap, cuMemUnmap, PFN_cuMemUnmap_v10020);

CUresult vmm_set_access(CUdeviceptr ptr, size_t size, const CUmemAccessDesc *desc, size_t count)
{
	PFN_cuMemSetAccess_v10020 real = REAL(PROC_MEM_SET_ACCESS, PFN_cuMemSetAccess_v10020);
	struct region_access acc[REGION_ACCESS_MAX];
	size_t i;
	int rc;

	if (region_app_count() > 0 && desc != NULL && count > 0 && count <= REGION_ACCESS_MAX) {
		for (i = 0; i < count; i++)
			acc[i] = (struct region_access){ .type = (int)desc[i].location.type,
							 .id = desc[i].location.id,
							 .flags = (unsigned)desc[i].flags };
		(void)drv_cuda_result(0);
		rc = region_app_set_access((uint64_t)ptr, size, acc, (int)count);
		if (rc != -ENOENT)
			return answer(rc);
	}
	return real != NULL ? real(ptr, size, desc, count) : CUDA_ERROR_NOT_INITIALIZED;
}
PROC_EXPORT(vmm_set_access, cuMemSetAccess, PFN_cuMemSetAccess_v10020);

CUresult vmm_address_free(CUdeviceptr ptr, size_t size)
{
	PFN_cuMemAddressFree_v10020 real = REAL(PROC_MEM_ADDRESS_FREE, PFN_cuMemAddressFree_v10020);
	int rc;

	(void)drv_cuda_result(0);
	if ((rc = region_app_address_free((uint64_t)ptr, size)) != -ENOENT)
		return answer(rc);
	return real != NULL ? real(ptr, size) : CUDA_ERROR_NOT_INITIALIZED;
}
PROC_EXPORT(vmm_address_free, cuMemAddressFree, PFN_cuMemAddressFree_v10020);

CUresult vmm_retain(CUmemGenericAllocationHandle *handle, void *addr)
{
	PFN_cuMemRetainAllocationHandle_v11000 real =
		REAL(PROC_MEM_RETAIN, PFN_cuMemRetainAllocationHandle_v11000);
	uint64_t id;

	if (handle != NULL && region_app_retain((uint64_t)(uintptr_t)addr, &id) == 0) {
		*handle = (CUmemGenericAllocationHandle)id;
		return CUDA_SUCCESS;
	}
	return real != NULL ? real(handle, addr) : CUDA_ERROR_NOT_INITIALIZED;
}
PROC_EXPORT(vmm_retain, cuMemRetainAllocationHandle, PFN_cuMemRetainAllocationHandle_v11000);

CUresult vmm_props(CUmemAllocationProp *prop, CUmemGenericAllocationHandle handle)
{
	PFN_cuMemGetAllocationPropertiesFromHandle_v10020 real =
		REAL(PROC_MEM_PROPS, PFN_cuMemGetAllocationPropertiesFromHandle_v10020);

	/* Answered from the record: the real handle may be released now. */
	if (prop != NULL && region_app_props((uint64_t)handle, prop, sizeof(*prop)) == 0)
		return CUDA_SUCCESS;
	return real != NULL ? real(prop, handle) : CUDA_ERROR_NOT_INITIALIZED;
}
PROC_EXPORT(vmm_props, cuMemGetAllocationPropertiesFromHandle,
	    PFN_cuMemGetAllocationPropertiesFromHandle_v10020);

static CUresult paused_refusal(const char *call);

CUresult vmm_export(void *shareable, CUmemGenericAllocationHandle handle,
		    CUmemAllocationHandleType type, unsigned long long flags)
{
	PFN_cuMemExportToShareableHandle_v10020 real =
		REAL(PROC_MEM_EXPORT, PFN_cuMemExportToShareableHandle_v10020);
	uint64_t h = 0;
	CUresult r;
	int pinned;

	if (real == NULL)
		return CUDA_ERROR_NOT_INITIALIZED;
	if (region_app_count() == 0 || !region_app_is((uint64_t)handle))
		return real(shareable, handle, type, flags);
	pinned = region_app_pin((uint64_t)handle, &h);
	if (pinned == -EBUSY)
		return paused_refusal("cuMemExportToShareableHandle");
	if (pinned < 0)
		return real(shareable, handle, type, flags);
	r = real(shareable, (CUmemGenericAllocationHandle)h, type, flags);
	if (r != CUDA_SUCCESS && pinned == 1)
		region_app_unpin((uint64_t)handle);
	else if (r == CUDA_SUCCESS && pinned == 1)
		memctl_log_info("a tagged handle was exported for IPC: it stays resident, "
				"pauses leave it in place");
	return r;
}
PROC_EXPORT(vmm_export, cuMemExportToShareableHandle, PFN_cuMemExportToShareableHandle_v10020);

/* The refusal for memory that is paused right now. */
static CUresult paused_refusal(const char *call)
{
	memctl_log_warnx("%s refused: this memory is paused by memctl (resume its tag first)",
			 call);
	return CUDA_ERROR_NOT_PERMITTED;
}

CUresult vmm_bind_mem(CUmemGenericAllocationHandle mc, size_t mc_offset,
		      CUmemGenericAllocationHandle mem, size_t mem_offset, size_t size,
		      unsigned long long flags)
{
	PFN_cuMulticastBindMem_v12010 real =
		REAL(PROC_MULTICAST_BIND_MEM, PFN_cuMulticastBindMem_v12010);
	uint64_t h = 0;
	CUresult r;
	int pinned;

	if (real == NULL)
		return CUDA_ERROR_NOT_INITIALIZED;
	if (region_app_count() == 0 || !region_app_is((uint64_t)mem))
		return real(mc, mc_offset, mem, mem_offset, size, flags);
	pinned = region_app_pin((uint64_t)mem, &h);
	if (pinned == -EBUSY)
		return paused_refusal("cuMulticastBindMem");
	if (pinned < 0)
		return real(mc, mc_offset, mem, mem_offset, size, flags);
	r = real(mc, mc_offset, (CUmemGenericAllocationHandle)h, mem_offset, size, flags);
	if (r != CUDA_SUCCESS && pinned == 1)
		region_app_unpin((uint64_t)mem);
	return r;
}
PROC_EXPORT(vmm_bind_mem, cuMulticastBindMem, PFN_cuMulticastBindMem_v12010);

CUresult vmm_bind_addr(CUmemGenericAllocationHandle mc, size_t mc_offset, CUdeviceptr memptr,
		       size_t size, unsigned long long flags)
{
	PFN_cuMulticastBindAddr_v12010 real =
		REAL(PROC_MULTICAST_BIND_ADDR, PFN_cuMulticastBindAddr_v12010);
	CUresult r;
	int pinned;

	if (real == NULL)
		return CUDA_ERROR_NOT_INITIALIZED;
	pinned = region_pin_addr((uint64_t)memptr);
	if (pinned == -EBUSY)
		return paused_refusal("cuMulticastBindAddr");
	r = real(mc, mc_offset, memptr, size, flags);
	if (r != CUDA_SUCCESS && pinned == 1)
		region_unpin_addr((uint64_t)memptr);
	return r;
}
PROC_EXPORT(vmm_bind_addr, cuMulticastBindAddr, PFN_cuMulticastBindAddr_v12010);

CUresult vmm_address_range(CUdeviceptr *base, size_t *size, CUdeviceptr dptr)
{
	PFN_cuMemGetAddressRange_v3020 real =
		REAL(PROC_MEM_ADDRESS_RANGE, PFN_cuMemGetAddressRange_v3020);
	uint64_t b;
	size_t n;

	/* A paused mapping: the driver has nothing there now. */
	if (region_app_range((uint64_t)dptr, &b, &n) == 0) {
		if (base != NULL)
			*base = (CUdeviceptr)b;
		if (size != NULL)
			*size = n;
		return CUDA_SUCCESS;
	}
	return real != NULL ? real(base, size, dptr) : CUDA_ERROR_NOT_INITIALIZED;
}
PROC_EXPORT(vmm_address_range, cuMemGetAddressRange_v2, PFN_cuMemGetAddressRange_v3020);
