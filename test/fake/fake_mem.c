/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fake_mem.c - device memory of the simulated driver:
 *
 *   reserve     mmap(PROT_NONE, MAP_NORESERVE)
 *   create      a memfd of that size, counted against the machine's capacity
 *   map         mmap(MAP_FIXED|MAP_SHARED) of the memfd, still PROT_NONE
 *   set_access  mprotect(RW)
 *   unmap       the range goes back to PROT_NONE: touching it faults
 *   release     the memory is freed once it is also unmapped
 *   cuMemAlloc  an anonymous mapping, counted the same way
 *
 * Taking memory away (unmap, cuMemFree, cuMemAddressFree, host
 * unregistration) while queued work still touches it is a violation: it is
 * counted and reported on stderr, and the work, when it runs, finds the
 * memory gone and loses the context, as a kernel on a GPU would. cuMemFree
 * never synchronises here: the real one "may" (its documentation), which
 * is no promise to build on.
 */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fake.h"
#include "fakecuda.h"

struct range *range_find_locked(enum range_kind kind, uint64_t va)
{
	size_t i;

	for (i = 0; i < sim.nranges; i++)
		if (sim.ranges[i].kind == kind && sim.ranges[i].va == va)
			return &sim.ranges[i];
	return NULL;
}

/* The range of `kind` that contains [va, va+size), or NULL. */
static struct range *containing_locked(enum range_kind kind, uint64_t va, size_t size)
{
	size_t i;

	for (i = 0; i < sim.nranges; i++) {
		struct range *r = &sim.ranges[i];

		if (r->kind == kind && va >= r->va && va + size <= r->va + r->size)
			return r;
	}
	return NULL;
}

static int overlaps_locked(enum range_kind kind, uint64_t va, size_t size)
{
	size_t i;

	for (i = 0; i < sim.nranges; i++) {
		struct range *r = &sim.ranges[i];

		if (r->kind == kind && va < r->va + r->size && r->va < va + size)
			return 1;
	}
	return 0;
}

struct range *range_add_locked(enum range_kind kind, uint64_t va, size_t size)
{
	if (sim.nranges == sim.cap_ranges) {
		size_t cap = sim.cap_ranges ? sim.cap_ranges * 2 : 256;
		struct range *r = realloc(sim.ranges, cap * sizeof(*r));

		if (r == NULL)
			return NULL;
		sim.ranges = r;
		sim.cap_ranges = cap;
	}
	sim.ranges[sim.nranges] = (struct range){ .kind = kind, .va = va, .size = size };
	return &sim.ranges[sim.nranges++];
}

void range_del_locked(struct range *r)
{
	*r = sim.ranges[--sim.nranges];
}

/* The device-accessible range holding va, or NULL. */
static const struct range *accessible_at_locked(uint64_t va)
{
	size_t i;

	for (i = 0; i < sim.nranges; i++) {
		const struct range *r = &sim.ranges[i];

		if (va < r->va || va >= r->va + r->size)
			continue;
		if ((r->kind == RANGE_MAPPED && r->access) || r->kind == RANGE_ALLOC ||
		    r->kind == RANGE_HOSTREG || (r->kind == RANGE_ASYNC && r->live))
			return r;
	}
	return NULL;
}

/* Work may cross from one mapping into the next one of a reservation. */
uint64_t inaccessible_locked(uint64_t va, size_t n)
{
	uint64_t at = va, end = va + n;

	while (at < end) {
		const struct range *r = accessible_at_locked(at);

		if (r == NULL)
			return at ? at : 1;
		at = r->va + r->size;
	}
	return 0;
}

/* Like inaccessible_locked, but memory allocated in stream order counts
 * from the moment it is queued: work after the allocation may use it. */
int queueable_locked(uint64_t va, size_t n)
{
	uint64_t at = va, end = va + n;
	size_t i;

	while (at < end) {
		const struct range *r = accessible_at_locked(at);

		for (i = 0; r == NULL && i < sim.nranges; i++) {
			const struct range *a = &sim.ranges[i];

			if (a->kind == RANGE_ASYNC && !a->freeing && at >= a->va &&
			    at < a->va + a->size)
				r = a;
		}
		if (r == NULL)
			return 0;
		at = r->va + r->size;
	}
	return 1;
}

int host_registered_locked(uint64_t va, size_t n)
{
	return containing_locked(RANGE_HOSTREG, va, n) != NULL;
}

int device_address_locked(uint64_t va)
{
	size_t i;

	for (i = 0; i < sim.nranges; i++) {
		const struct range *r = &sim.ranges[i];

		if (r->kind != RANGE_HOSTREG && va >= r->va && va < r->va + r->size)
			return 1;
	}
	return 0;
}

void check_unused_locked(const char *call, uint64_t va, size_t n, const struct op *except)
{
	const struct op *op = queued_touching_locked(va, n, except);

	if (op == NULL)
		return;
	sim_violation(0, "violation: %s(0x%llx, %zu bytes) while queued work still uses it "
		      "(%s on stream %p)", call, (unsigned long long)va, n, op->what,
		      (void *)op->stream);
}

/* The physical allocation a handle names, or NULL when the value names
 * none (a value the driver never handed out is refused, not followed). */
static struct phys *phys_of(CUmemGenericAllocationHandle handle)
{
	struct phys *p = (struct phys *)(uintptr_t)handle;

	return p != NULL && p->magic == PHYS_MAGIC ? p : NULL;
}

static void phys_put_locked(struct phys *p)
{
	if (p->refs > 0 || p->maps > 0)
		return;
	p->magic = 0;
	close(p->fd);
	if (!p->imported)
		sim_give(p->size);
	free(p);
}

static long count_kind(enum range_kind kind)
{
	long n = 0;
	size_t i;

	LOCK();
	for (i = 0; i < sim.nranges; i++)
		n += sim.ranges[i].kind == kind;
	UNLOCK();
	return n;
}

EXPORT long fakecuda_live_mappings(void) { return count_kind(RANGE_MAPPED); }
EXPORT long fakecuda_live_host_registrations(void) { return count_kind(RANGE_HOSTREG); }
EXPORT long fakecuda_live_reservations(void) { return count_kind(RANGE_RESERVED); }

/* ---- the virtual memory API: no context needed, a device is named ---- */

EXPORT CUresult cuMemGetAllocationGranularity(size_t *g, const CUmemAllocationProp *prop,
					      CUmemAllocationGranularity_flags option)
{
	ENTER("cuMemGetAllocationGranularity");
	(void)option;
	if (g == NULL || prop == NULL || prop->location.id < 0 || prop->location.id >= sim.devices)
		return CUDA_ERROR_INVALID_VALUE;
	*g = GRANULARITY;
	return CUDA_SUCCESS;
}

EXPORT CUresult cuMemAddressReserve(CUdeviceptr *ptr, size_t size, size_t align,
				    CUdeviceptr addr, unsigned long long flags)
{
	char *p;
	uint64_t start;
	CUresult r = CUDA_SUCCESS;

	ENTER_LIVE("cuMemAddressReserve");
	(void)addr;
	(void)flags;
	if (ptr == NULL || size == 0 || size % GRANULARITY)
		return CUDA_ERROR_INVALID_VALUE;
	if (align < GRANULARITY)
		align = GRANULARITY;
	LOCK();
	p = mmap(NULL, size + align, PROT_NONE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED) {
		r = CUDA_ERROR_OUT_OF_MEMORY;
		goto out;
	}
	start = ((uint64_t)(uintptr_t)p + align - 1) / align * align;
	if (start > (uint64_t)(uintptr_t)p)
		munmap(p, start - (uint64_t)(uintptr_t)p);
	munmap((char *)(uintptr_t)start + size,
	       (uint64_t)(uintptr_t)p + size + align - (start + size));
	if (range_add_locked(RANGE_RESERVED, start, size) == NULL) {
		munmap((void *)(uintptr_t)start, size);
		r = CUDA_ERROR_OUT_OF_MEMORY;
		goto out;
	}
	*ptr = (CUdeviceptr)start;
out:
	UNLOCK();
	return r;
}

EXPORT CUresult cuMemAddressFree(CUdeviceptr ptr, size_t size)
{
	struct range *r;
	CUresult res = CUDA_SUCCESS;

	ENTER_LIVE("cuMemAddressFree");
	LOCK();
	r = range_find_locked(RANGE_RESERVED, ptr);
	if (r == NULL || r->size != size || overlaps_locked(RANGE_MAPPED, ptr, size)) {
		res = CUDA_ERROR_INVALID_VALUE;
	} else {
		check_unused_locked("cuMemAddressFree", ptr, size, NULL);
		munmap((void *)(uintptr_t)ptr, size);
		range_del_locked(r);
	}
	UNLOCK();
	return res;
}

EXPORT CUresult cuMemCreate(CUmemGenericAllocationHandle *handle, size_t size,
			    const CUmemAllocationProp *prop, unsigned long long flags)
{
	struct phys *p;
	CUresult r = CUDA_SUCCESS;

	ENTER_LIVE("cuMemCreate");
	(void)flags;
	if (handle == NULL || size == 0 || size % GRANULARITY || prop == NULL ||
	    prop->type != CU_MEM_ALLOCATION_TYPE_PINNED ||
	    prop->location.type != CU_MEM_LOCATION_TYPE_DEVICE)
		return CUDA_ERROR_INVALID_VALUE;
	if (prop->location.id < 0 || prop->location.id >= sim.devices)
		return CUDA_ERROR_INVALID_DEVICE;
	LOCK();
	if (sim_take(size) < 0) {
		r = CUDA_ERROR_OUT_OF_MEMORY;
		goto out;
	}
	p = calloc(1, sizeof(*p));
	if (p != NULL)
		p->fd = memfd_create("fakecuda", MFD_CLOEXEC);
	if (p == NULL || p->fd < 0 || ftruncate(p->fd, (off_t)size) < 0) {
		if (p != NULL && p->fd >= 0)
			close(p->fd);
		free(p);
		sim_give(size);
		r = CUDA_ERROR_OUT_OF_MEMORY;
		goto out;
	}
	p->magic = PHYS_MAGIC;
	p->size = size;
	p->refs = 1;
	p->prop = *prop;
	sim.live_handles++;
	*handle = (CUmemGenericAllocationHandle)(uintptr_t)p;
out:
	UNLOCK();
	return r;
}

/* One reference fewer; the memory goes once it is also unmapped
 * everywhere (an unmap checks for queued work). */
EXPORT CUresult cuMemRelease(CUmemGenericAllocationHandle handle)
{
	struct phys *p = phys_of(handle);

	ENTER_LIVE("cuMemRelease");
	if (p == NULL)
		return CUDA_ERROR_INVALID_VALUE;
	LOCK();
	if (p->refs <= 0) {
		UNLOCK();
		return CUDA_ERROR_INVALID_VALUE;
	}
	if (--p->refs == 0) {
		sim.live_handles--;
		phys_put_locked(p);
	}
	UNLOCK();
	return CUDA_SUCCESS;
}

/* Bytes [offset, offset+size) of the handle at ptr, inside a reservation
 * and over nothing mapped; no access until cuMemSetAccess. */
EXPORT CUresult cuMemMap(CUdeviceptr ptr, size_t size, size_t offset,
			 CUmemGenericAllocationHandle handle, unsigned long long flags)
{
	struct phys *p = phys_of(handle);
	struct range *m;
	CUresult r = CUDA_SUCCESS;

	ENTER_LIVE("cuMemMap");
	if (p == NULL || flags != 0 || size == 0 || size % GRANULARITY ||
	    offset % GRANULARITY || ptr % GRANULARITY)
		return CUDA_ERROR_INVALID_VALUE;
	LOCK();
	if (p->refs <= 0 || offset > p->size || size > p->size - offset ||
	    containing_locked(RANGE_RESERVED, ptr, size) == NULL ||
	    overlaps_locked(RANGE_MAPPED, ptr, size)) {
		r = CUDA_ERROR_INVALID_VALUE;
		goto out;
	}
	if (mmap((void *)(uintptr_t)ptr, size, PROT_NONE, MAP_SHARED | MAP_FIXED,
		 p->fd, (off_t)offset) == MAP_FAILED) {
		r = CUDA_ERROR_OUT_OF_MEMORY;
		goto out;
	}
	m = range_add_locked(RANGE_MAPPED, ptr, size);
	if (m == NULL) {
		mmap((void *)(uintptr_t)ptr, size, PROT_NONE,
		     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0);
		r = CUDA_ERROR_OUT_OF_MEMORY;
		goto out;
	}
	m->phys = p;
	m->offset = offset;
	p->maps++;
out:
	UNLOCK();
	return r;
}

/* The mapping that starts at `va` and ends by `end`, or NULL. */
static struct range *mapping_at_locked(uint64_t va, uint64_t end)
{
	struct range *m = range_find_locked(RANGE_MAPPED, va);

	return m != NULL && m->va + m->size <= end ? m : NULL;
}

/*
 * Whether [va, va+n) is made of whole mappings and nothing else. The real
 * driver accepts a range over several mappings in one call and refuses
 * part of one; a range with gaps we refuse too (the strict reading).
 */
static int whole_mappings_locked(uint64_t va, size_t n)
{
	uint64_t at = va, end = va + n;
	const struct range *m;

	if (n == 0)
		return 0;
	for (; at < end; at += m->size)
		if ((m = mapping_at_locked(at, end)) == NULL)
			return 0;
	return 1;
}

EXPORT CUresult cuMemUnmap(CUdeviceptr ptr, size_t size)
{
	uint64_t at, end = ptr + size;
	CUresult r = CUDA_SUCCESS;

	ENTER_LIVE("cuMemUnmap");
	LOCK();
	if (whole_mappings_locked(ptr, size))
		check_unused_locked("cuMemUnmap", ptr, size, NULL);
	UNLOCK();
	/* Work that runs right now finishes first; later work finds it gone. */
	pthread_rwlock_wrlock(&sim.mem);
	LOCK();
	if (!whole_mappings_locked(ptr, size)) {
		r = CUDA_ERROR_INVALID_VALUE;
		goto out;
	}
	for (at = ptr; at < end;) {
		struct range *m = mapping_at_locked(at, end);
		struct phys *p = m->phys;
		size_t len = m->size;

		/* Back to a bare reservation: any touch now faults. */
		mmap((void *)(uintptr_t)at, len, PROT_NONE,
		     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0);
		range_del_locked(m);
		p->maps--;
		phys_put_locked(p);
		at += len;
	}
out:
	UNLOCK();
	pthread_rwlock_unlock(&sim.mem);
	return r;
}

/* Access of each device named, over whole mappings (one or several).
 * Read-only access is simulated as read/write; CU_MEM_ACCESS_FLAGS_PROT_NONE
 * takes it away. */
EXPORT CUresult cuMemSetAccess(CUdeviceptr ptr, size_t size, const CUmemAccessDesc *desc,
			       size_t count)
{
	uint64_t at, end = ptr + size;
	CUresult r = CUDA_SUCCESS;
	size_t i;

	ENTER_LIVE("cuMemSetAccess");
	if (desc == NULL || count == 0)
		return CUDA_ERROR_INVALID_VALUE;
	for (i = 0; i < count; i++)
		if (desc[i].location.type != CU_MEM_LOCATION_TYPE_DEVICE ||
		    desc[i].location.id < 0 || desc[i].location.id >= sim.devices ||
		    desc[i].flags > CU_MEM_ACCESS_FLAGS_PROT_READWRITE)
			return CUDA_ERROR_INVALID_VALUE;
	LOCK();
	if (!whole_mappings_locked(ptr, size)) {
		r = CUDA_ERROR_INVALID_VALUE;
		goto out;
	}
	for (at = ptr; at < end;) {
		struct range *m = mapping_at_locked(at, end);
		int any = 0, d;

		for (i = 0; i < count; i++)
			m->flags[desc[i].location.id] = (unsigned char)desc[i].flags;
		for (d = 0; d < sim.devices; d++)
			any |= m->flags[d] != CU_MEM_ACCESS_FLAGS_PROT_NONE;
		if (mprotect((void *)(uintptr_t)at, m->size,
			     any ? PROT_READ | PROT_WRITE : PROT_NONE) < 0) {
			r = CUDA_ERROR_INVALID_VALUE;
			goto out;
		}
		m->access = any;
		at += m->size;
	}
out:
	UNLOCK();
	return r;
}

EXPORT CUresult cuMemGetAccess(unsigned long long *flags, const CUmemLocation *location,
			       CUdeviceptr ptr)
{
	struct range *m;
	CUresult r = CUDA_SUCCESS;

	ENTER_LIVE("cuMemGetAccess");
	if (flags == NULL || location == NULL || location->type != CU_MEM_LOCATION_TYPE_DEVICE ||
	    location->id < 0 || location->id >= sim.devices)
		return CUDA_ERROR_INVALID_VALUE;
	LOCK();
	m = containing_locked(RANGE_MAPPED, ptr, 1);
	if (m == NULL)
		r = CUDA_ERROR_INVALID_VALUE;
	else
		*flags = m->flags[location->id];
	UNLOCK();
	return r;
}

/* The handle mapped at addr (any address inside the mapping), with one
 * more reference that cuMemRelease must give back. */
EXPORT CUresult cuMemRetainAllocationHandle(CUmemGenericAllocationHandle *handle, void *addr)
{
	struct range *m;
	CUresult r = CUDA_SUCCESS;

	ENTER_LIVE("cuMemRetainAllocationHandle");
	if (handle == NULL)
		return CUDA_ERROR_INVALID_VALUE;
	LOCK();
	m = containing_locked(RANGE_MAPPED, (uint64_t)(uintptr_t)addr, 1);
	if (m == NULL) {
		r = CUDA_ERROR_INVALID_VALUE;
	} else {
		m->phys->refs++;
		*handle = (CUmemGenericAllocationHandle)(uintptr_t)m->phys;
	}
	UNLOCK();
	return r;
}

EXPORT CUresult cuMemGetAllocationPropertiesFromHandle(CUmemAllocationProp *prop,
						       CUmemGenericAllocationHandle handle)
{
	struct phys *p = phys_of(handle);

	ENTER_LIVE("cuMemGetAllocationPropertiesFromHandle");
	if (prop == NULL || p == NULL)
		return CUDA_ERROR_INVALID_VALUE;
	LOCK();
	if (p->refs > 0)
		*prop = p->prop;
	UNLOCK();
	return p->refs > 0 ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
}

/* A file descriptor of the memory, for a handle created to allow it. */
EXPORT CUresult cuMemExportToShareableHandle(void *out, CUmemGenericAllocationHandle handle,
					     CUmemAllocationHandleType type,
					     unsigned long long flags)
{
	struct phys *p = phys_of(handle);
	CUresult r = CUDA_SUCCESS;
	int fd;

	ENTER_LIVE("cuMemExportToShareableHandle");
	if (out == NULL || p == NULL || flags != 0 ||
	    type != CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR)
		return CUDA_ERROR_INVALID_VALUE;
	LOCK();
	if (p->refs <= 0 || !(p->prop.requestedHandleTypes & CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR))
		r = CUDA_ERROR_INVALID_VALUE;
	else if ((fd = fcntl(p->fd, F_DUPFD_CLOEXEC, 0)) < 0)
		r = CUDA_ERROR_OUT_OF_MEMORY;
	else
		*(int *)out = fd;
	UNLOCK();
	return r;
}

/* A handle of memory another process (or this one) exported: the same
 * pages, not counted again against the capacity. */
EXPORT CUresult cuMemImportFromShareableHandle(CUmemGenericAllocationHandle *handle,
					       void *os_handle, CUmemAllocationHandleType type)
{
	int fd = (int)(intptr_t)os_handle;
	struct phys *p;
	struct stat st;

	ENTER_LIVE("cuMemImportFromShareableHandle");
	if (handle == NULL || type != CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR ||
	    fstat(fd, &st) < 0 || st.st_size <= 0 || (size_t)st.st_size % GRANULARITY)
		return CUDA_ERROR_INVALID_VALUE;
	p = calloc(1, sizeof(*p));
	if (p == NULL || (p->fd = fcntl(fd, F_DUPFD_CLOEXEC, 0)) < 0) {
		free(p);
		return CUDA_ERROR_OUT_OF_MEMORY;
	}
	p->magic = PHYS_MAGIC;
	p->size = (size_t)st.st_size;
	p->refs = 1;
	p->imported = 1;
	p->prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
	p->prop.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
	p->prop.requestedHandleTypes = CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR;
	LOCK();
	sim.live_handles++;
	UNLOCK();
	*handle = (CUmemGenericAllocationHandle)(uintptr_t)p;
	return CUDA_SUCCESS;
}

/* ---- multicast objects: only what binding needs ---------------------- */

#define MC_MAGIC 0x4d43415au

struct mcast {
	uint32_t magic;
	size_t size;
};

EXPORT CUresult cuMulticastCreate(CUmemGenericAllocationHandle *mc,
				  const CUmulticastObjectProp *prop)
{
	struct mcast *m;

	ENTER_LIVE("cuMulticastCreate");
	if (mc == NULL || prop == NULL || prop->size == 0 || prop->size % GRANULARITY)
		return CUDA_ERROR_INVALID_VALUE;
	m = calloc(1, sizeof(*m));
	if (m == NULL)
		return CUDA_ERROR_OUT_OF_MEMORY;
	m->magic = MC_MAGIC;
	m->size = prop->size;
	*mc = (CUmemGenericAllocationHandle)(uintptr_t)m;
	return CUDA_SUCCESS;
}

static struct mcast *mcast_of(CUmemGenericAllocationHandle h)
{
	struct mcast *m = (struct mcast *)(uintptr_t)h;

	return m != NULL && m->magic == MC_MAGIC ? m : NULL;
}

/* Bound memory must be a live handle (by value) or mapped memory (by
 * address); nothing more is modelled. */
EXPORT CUresult cuMulticastBindMem(CUmemGenericAllocationHandle mc, size_t mc_offset,
				   CUmemGenericAllocationHandle mem, size_t mem_offset, size_t size,
				   unsigned long long flags)
{
	struct mcast *m = mcast_of(mc);
	struct phys *p = phys_of(mem);
	CUresult r = CUDA_SUCCESS;

	ENTER_LIVE("cuMulticastBindMem");
	if (m == NULL || p == NULL || flags != 0 || mc_offset + size > m->size)
		return CUDA_ERROR_INVALID_VALUE;
	LOCK();
	if (p->refs <= 0 || mem_offset + size > p->size)
		r = CUDA_ERROR_INVALID_VALUE;
	UNLOCK();
	return r;
}

EXPORT CUresult cuMulticastBindAddr(CUmemGenericAllocationHandle mc, size_t mc_offset,
				    CUdeviceptr memptr, size_t size, unsigned long long flags)
{
	struct mcast *m = mcast_of(mc);
	CUresult r = CUDA_SUCCESS;

	ENTER_LIVE("cuMulticastBindAddr");
	if (m == NULL || flags != 0 || mc_offset + size > m->size)
		return CUDA_ERROR_INVALID_VALUE;
	LOCK();
	if (inaccessible_locked(memptr, size) != 0)
		r = CUDA_ERROR_INVALID_VALUE;
	UNLOCK();
	return r;
}

/* The allocation (cuMemAlloc, stream-ordered) or mapping holding dptr. */
EXPORT CUresult cuMemGetAddressRange(CUdeviceptr *base, size_t *size, CUdeviceptr dptr)
{
	static const enum range_kind kinds[] = { RANGE_ALLOC, RANGE_ASYNC, RANGE_MAPPED };
	const struct range *r = NULL;
	size_t k;

	ENTER_LIVE("cuMemGetAddressRange");
	LOCK();
	for (k = 0; k < 3 && r == NULL; k++)
		r = containing_locked(kinds[k], dptr, 1);
	if (r != NULL) {
		if (base != NULL)
			*base = r->va;
		if (size != NULL)
			*size = r->size;
	}
	UNLOCK();
	return r != NULL ? CUDA_SUCCESS : CUDA_ERROR_NOT_FOUND;
}

/* ---- host registration and plain allocation: a context is needed ---- */

EXPORT CUresult cuMemHostRegister(void *p, size_t n, unsigned int flags)
{
	CUresult r = CUDA_SUCCESS;

	ENTER_LIVE("cuMemHostRegister");
	(void)flags;
	if (ctx_current() == NULL)
		return CUDA_ERROR_INVALID_CONTEXT;
	if (p == NULL || n == 0)
		return CUDA_ERROR_INVALID_VALUE;
	LOCK();
	if (overlaps_locked(RANGE_HOSTREG, (uint64_t)(uintptr_t)p, n))
		r = CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED;
	else if (range_add_locked(RANGE_HOSTREG, (uint64_t)(uintptr_t)p, n) == NULL)
		r = CUDA_ERROR_OUT_OF_MEMORY;
	UNLOCK();
	return r;
}

/* The pointer names the registration: no context needed (as on the H100). */
EXPORT CUresult cuMemHostUnregister(void *p)
{
	struct range *r;
	CUresult res = CUDA_SUCCESS;

	ENTER_LIVE("cuMemHostUnregister");
	LOCK();
	r = range_find_locked(RANGE_HOSTREG, (uint64_t)(uintptr_t)p);
	if (r == NULL) {
		res = CUDA_ERROR_HOST_MEMORY_NOT_REGISTERED;
	} else {
		check_unused_locked("cuMemHostUnregister", r->va, r->size, NULL);
		range_del_locked(r);
	}
	UNLOCK();
	return res;
}

EXPORT CUresult cuMemGetInfo(size_t *free_bytes, size_t *total)
{
	uint64_t used;

	ENTER_LIVE("cuMemGetInfo");
	if (ctx_current() == NULL)
		return CUDA_ERROR_INVALID_CONTEXT;
	if (free_bytes == NULL || total == NULL)
		return CUDA_ERROR_INVALID_VALUE;
	used = fakecuda_used();
	*total = sim.capacity;
	*free_bytes = used > sim.capacity ? 0 : sim.capacity - used;
	return CUDA_SUCCESS;
}

/* What the runtime's cudaMalloc uses: plain device memory, no VMM. */
EXPORT CUresult cuMemAlloc(CUdeviceptr *ptr, size_t size)
{
	size_t rounded = (size + 4095) & ~(size_t)4095;
	CUresult r = CUDA_SUCCESS;
	void *p;

	ENTER_LIVE("cuMemAlloc");
	if (ctx_current() == NULL)
		return CUDA_ERROR_INVALID_CONTEXT;
	if (ptr == NULL || size == 0)
		return CUDA_ERROR_INVALID_VALUE;
	LOCK();
	if (sim_take(rounded) < 0) {
		r = CUDA_ERROR_OUT_OF_MEMORY;
		goto out;
	}
	p = mmap(NULL, rounded, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED ||
	    range_add_locked(RANGE_ALLOC, (uint64_t)(uintptr_t)p, rounded) == NULL) {
		if (p != MAP_FAILED)
			munmap(p, rounded);
		sim_give(rounded);
		r = CUDA_ERROR_OUT_OF_MEMORY;
		goto out;
	}
	*ptr = (CUdeviceptr)(uintptr_t)p;
out:
	UNLOCK();
	return r;
}

/* Plain and stream-ordered allocations alike; never synchronises. The
 * pointer names its context: none need be current (as on the H100). */
EXPORT CUresult cuMemFree(CUdeviceptr ptr)
{
	struct range *r;
	CUresult res = CUDA_SUCCESS;

	ENTER_LIVE("cuMemFree");
	LOCK();
	r = range_find_locked(RANGE_ALLOC, ptr);
	if (r == NULL)
		r = range_find_locked(RANGE_ASYNC, ptr);
	if (r != NULL && !r->freeing)
		check_unused_locked("cuMemFree", r->va, r->size, NULL);
	UNLOCK();
	pthread_rwlock_wrlock(&sim.mem);
	LOCK();
	r = range_find_locked(RANGE_ALLOC, ptr);
	if (r == NULL)
		r = range_find_locked(RANGE_ASYNC, ptr);
	if (r == NULL || r->freeing) {
		res = CUDA_ERROR_INVALID_VALUE;
	} else {
		if (r->pool != NULL)
			pool_forget_locked(r->pool, r->size);
		munmap((void *)(uintptr_t)ptr, r->size);
		sim_give(r->size);
		range_del_locked(r);
	}
	UNLOCK();
	pthread_rwlock_unlock(&sim.mem);
	return res;
}

EXPORT CUresult cuPointerGetAttribute(void *data, CUpointer_attribute attribute, CUdeviceptr ptr)
{
	CUresult r = CUDA_SUCCESS;
	unsigned int type = 0;

	ENTER_LIVE("cuPointerGetAttribute");
	if (data == NULL || attribute != CU_POINTER_ATTRIBUTE_MEMORY_TYPE)
		return CUDA_ERROR_INVALID_VALUE;
	LOCK();
	if (device_address_locked(ptr))
		type = CU_MEMORYTYPE_DEVICE;
	else if (host_registered_locked(ptr, 1))
		type = CU_MEMORYTYPE_HOST;
	else
		r = CUDA_ERROR_INVALID_VALUE; /* pageable: unknown to the driver */
	UNLOCK();
	if (r == CUDA_SUCCESS)
		*(unsigned int *)data = type;
	return r;
}
