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
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
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

static void phys_put_locked(struct phys *p)
{
	if (!p->released || p->maps > 0)
		return;
	close(p->fd);
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
	if (handle == NULL || size == 0 || size % GRANULARITY || prop == NULL)
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
	p->size = size;
	sim.live_handles++;
	*handle = (CUmemGenericAllocationHandle)(uintptr_t)p;
out:
	UNLOCK();
	return r;
}

/* The memory goes when it is also unmapped; an unmap checks for work. */
EXPORT CUresult cuMemRelease(CUmemGenericAllocationHandle handle)
{
	struct phys *p = (struct phys *)(uintptr_t)handle;

	ENTER_LIVE("cuMemRelease");
	if (p == NULL)
		return CUDA_ERROR_INVALID_VALUE;
	LOCK();
	if (p->released) {
		UNLOCK();
		return CUDA_ERROR_INVALID_VALUE;
	}
	p->released = 1;
	sim.live_handles--;
	phys_put_locked(p);
	UNLOCK();
	return CUDA_SUCCESS;
}

EXPORT CUresult cuMemMap(CUdeviceptr ptr, size_t size, size_t offset,
			 CUmemGenericAllocationHandle handle, unsigned long long flags)
{
	struct phys *p = (struct phys *)(uintptr_t)handle;
	struct range *m;
	CUresult r = CUDA_SUCCESS;

	ENTER_LIVE("cuMemMap");
	(void)flags;
	if (p == NULL || offset != 0 || size != p->size)
		return CUDA_ERROR_INVALID_VALUE;
	LOCK();
	if (p->released || containing_locked(RANGE_RESERVED, ptr, size) == NULL ||
	    overlaps_locked(RANGE_MAPPED, ptr, size)) {
		r = CUDA_ERROR_INVALID_VALUE;
		goto out;
	}
	if (mmap((void *)(uintptr_t)ptr, size, PROT_NONE, MAP_SHARED | MAP_FIXED,
		 p->fd, 0) == MAP_FAILED) {
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
	p->maps++;
out:
	UNLOCK();
	return r;
}

EXPORT CUresult cuMemUnmap(CUdeviceptr ptr, size_t size)
{
	struct range *m;
	struct phys *p;
	CUresult r = CUDA_SUCCESS;

	ENTER_LIVE("cuMemUnmap");
	LOCK();
	m = range_find_locked(RANGE_MAPPED, ptr);
	if (m != NULL && m->size == size)
		check_unused_locked("cuMemUnmap", ptr, size, NULL);
	UNLOCK();
	/* Work that runs right now finishes first; later work finds it gone. */
	pthread_rwlock_wrlock(&sim.mem);
	LOCK();
	m = range_find_locked(RANGE_MAPPED, ptr);
	if (m == NULL || m->size != size) {
		r = CUDA_ERROR_INVALID_VALUE;
		goto out;
	}
	/* Back to a bare reservation: any touch now faults. */
	mmap((void *)(uintptr_t)ptr, size, PROT_NONE,
	     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0);
	p = m->phys;
	range_del_locked(m);
	p->maps--;
	phys_put_locked(p);
out:
	UNLOCK();
	pthread_rwlock_unlock(&sim.mem);
	return r;
}

EXPORT CUresult cuMemSetAccess(CUdeviceptr ptr, size_t size, const CUmemAccessDesc *desc,
			       size_t count)
{
	struct range *m;
	CUresult r = CUDA_SUCCESS;

	ENTER_LIVE("cuMemSetAccess");
	if (desc == NULL || count == 0)
		return CUDA_ERROR_INVALID_VALUE;
	LOCK();
	m = containing_locked(RANGE_MAPPED, ptr, size);
	if (m == NULL || mprotect((void *)(uintptr_t)ptr, size, PROT_READ | PROT_WRITE) < 0)
		r = CUDA_ERROR_INVALID_VALUE;
	else
		m->access = 1;
	UNLOCK();
	return r;
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
			pool_forget_locked(r->pool);
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
