/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fake_pool.c - stream-ordered allocation in the simulated driver
 * (cuMemAllocAsync, cuMemAllocFromPoolAsync, cuMemFreeAsync) and minimal
 * memory pools.
 *
 * The address comes back at once and the bytes are counted against the
 * capacity at once, but the memory becomes usable only when the
 * allocation runs in its stream's order, and goes away when the free
 * does: work that touches it outside that window (on another stream,
 * without waiting) finds it unmapped and loses the context. Freed memory
 * goes straight back to the device: the pools keep nothing cached (a
 * release threshold of 0). Allocation inside stream capture is not
 * modelled and refused.
 */
#include <stdlib.h>
#include <sys/mman.h>

#include "fake.h"

#define POOL_MAGIC 0x504f4f4cu

static struct fpool *default_pool_locked(int dev)
{
	struct fpool *p = &sim.default_pool[dev];

	if (p->magic == 0) {
		p->magic = POOL_MAGIC;
		p->dev = dev;
		p->is_default = 1;
	}
	return p;
}

/* The pool cuMemAllocAsync takes from (cuDeviceSetMemPool). */
static struct fpool *current_pool_locked(int dev)
{
	struct fpool *p = sim.current_pool[dev];

	return p != NULL && !p->destroyed ? p : default_pool_locked(dev);
}

/* One allocation fewer; a destroyed pool goes with its last one. */
static void pool_put_locked(struct fpool *p, size_t bytes)
{
	p->bytes -= bytes;
	if (--p->live == 0 && p->destroyed && !p->is_default) {
		p->magic = 0;
		free(p);
	}
}

static struct fpool *pool_of(CUmemoryPool h)
{
	struct fpool *p = (struct fpool *)(void *)h;

	return p != NULL && p->magic == POOL_MAGIC && !p->destroyed ? p : NULL;
}

EXPORT CUresult cuDeviceGetDefaultMemPool(CUmemoryPool *out, CUdevice dev)
{
	ENTER_LIVE("cuDeviceGetDefaultMemPool");
	if (out == NULL)
		return CUDA_ERROR_INVALID_VALUE;
	if (dev < 0 || dev >= sim.devices)
		return CUDA_ERROR_INVALID_DEVICE;
	LOCK();
	*out = (CUmemoryPool)(void *)default_pool_locked(dev);
	UNLOCK();
	return CUDA_SUCCESS;
}

EXPORT CUresult cuMemPoolCreate(CUmemoryPool *out, const CUmemPoolProps *props)
{
	struct fpool *p;

	ENTER_LIVE("cuMemPoolCreate");
	if (out == NULL || props == NULL || props->allocType != CU_MEM_ALLOCATION_TYPE_PINNED ||
	    props->location.type != CU_MEM_LOCATION_TYPE_DEVICE ||
	    props->location.id < 0 || props->location.id >= sim.devices)
		return CUDA_ERROR_INVALID_VALUE;
	p = calloc(1, sizeof(*p));
	if (p == NULL)
		return CUDA_ERROR_OUT_OF_MEMORY;
	p->magic = POOL_MAGIC;
	p->dev = props->location.id;
	*out = (CUmemoryPool)(void *)p;
	return CUDA_SUCCESS;
}

/* Allocations still live keep their memory until freed, as documented;
 * the pool record goes with the last of them. */
EXPORT CUresult cuMemPoolDestroy(CUmemoryPool h)
{
	struct fpool *p;
	CUresult r = CUDA_ERROR_INVALID_VALUE;

	ENTER_LIVE("cuMemPoolDestroy");
	LOCK();
	p = pool_of(h);
	if (p != NULL && !p->is_default) {
		p->destroyed = 1;
		if (sim.current_pool[p->dev] == p)
			sim.current_pool[p->dev] = NULL;
		p->live++;
		pool_put_locked(p, 0);
		r = CUDA_SUCCESS;
	}
	UNLOCK();
	return r;
}

EXPORT CUresult cuMemPoolTrimTo(CUmemoryPool h, size_t keep)
{
	ENTER_LIVE("cuMemPoolTrimTo");
	(void)keep;
	return pool_of(h) != NULL ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
}

EXPORT CUresult cuMemPoolSetAttribute(CUmemoryPool h, CUmemPool_attribute attr, void *value)
{
	ENTER_LIVE("cuMemPoolSetAttribute");
	(void)attr;
	return pool_of(h) != NULL && value != NULL ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
}

static CUresult alloc_async(const char *what, CUdeviceptr *dptr, size_t size,
			    CUmemoryPool h, CUstream hs)
{
	size_t rounded = (size + 4095) & ~(size_t)4095;
	struct op *op = op_new(OP_ALLOC, what);
	struct fstream *s;
	struct fpool *pool = NULL;
	struct range *r;
	CUresult res;
	void *p;

	if (op == NULL)
		return CUDA_ERROR_OUT_OF_MEMORY;
	if (dptr == NULL || size == 0) {
		free(op);
		return CUDA_ERROR_INVALID_VALUE;
	}
	LOCK();
	res = stream_get(hs, &s);
	if (res == CUDA_SUCCESS && s->capture != NULL)
		res = CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED;
	if (res == CUDA_SUCCESS) {
		pool = h != NULL ? pool_of(h) : current_pool_locked(s->ctx->dev);
		if (pool == NULL)
			res = CUDA_ERROR_INVALID_VALUE;
	}
	if (res == CUDA_SUCCESS && sim_take(rounded) < 0)
		res = CUDA_ERROR_OUT_OF_MEMORY;
	if (res != CUDA_SUCCESS)
		goto fail;
	p = mmap(NULL, rounded, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	r = p == MAP_FAILED ? NULL
			    : range_add_locked(RANGE_ASYNC, (uint64_t)(uintptr_t)p, rounded);
	if (r == NULL) {
		if (p != MAP_FAILED)
			munmap(p, rounded);
		sim_give(rounded);
		res = CUDA_ERROR_OUT_OF_MEMORY;
		goto fail;
	}
	r->pool = pool;
	pool->live++;
	pool->bytes += rounded;
	op->u.mem.va = (uint64_t)(uintptr_t)p;
	res = submit_locked(s, op);
	UNLOCK();
	*dptr = (CUdeviceptr)(uintptr_t)p;
	return res;

fail:
	UNLOCK();
	free(op);
	return res;
}

EXPORT CUresult cuMemAllocAsync(CUdeviceptr *dptr, size_t size, CUstream hs)
{
	ENTER_LIVE("cuMemAllocAsync");
	return alloc_async("cuMemAllocAsync", dptr, size, NULL, hs);
}

/* The per-thread default stream is the legacy one here: the _ptsz
 * variants differ only in name. cuda.h declares them only for per-thread
 * builds. */
CUresult cuMemAllocAsync_ptsz(CUdeviceptr *dptr, size_t size, CUstream hs);
CUresult cuMemFreeAsync_ptsz(CUdeviceptr dptr, CUstream hs);

EXPORT CUresult cuMemAllocAsync_ptsz(CUdeviceptr *dptr, size_t size, CUstream hs)
{
	ENTER_LIVE("cuMemAllocAsync");
	return alloc_async("cuMemAllocAsync", dptr, size, NULL, hs);
}

EXPORT CUresult cuDeviceGetMemPool(CUmemoryPool *out, CUdevice dev)
{
	ENTER_LIVE("cuDeviceGetMemPool");
	if (out == NULL)
		return CUDA_ERROR_INVALID_VALUE;
	if (dev < 0 || dev >= sim.devices)
		return CUDA_ERROR_INVALID_DEVICE;
	LOCK();
	*out = (CUmemoryPool)(void *)current_pool_locked(dev);
	UNLOCK();
	return CUDA_SUCCESS;
}

EXPORT CUresult cuDeviceSetMemPool(CUdevice dev, CUmemoryPool h)
{
	struct fpool *p;
	CUresult r = CUDA_ERROR_INVALID_VALUE;

	ENTER_LIVE("cuDeviceSetMemPool");
	if (dev < 0 || dev >= sim.devices)
		return CUDA_ERROR_INVALID_DEVICE;
	LOCK();
	p = pool_of(h);
	if (p != NULL && p->dev == dev) {
		sim.current_pool[dev] = p->is_default ? NULL : p;
		r = CUDA_SUCCESS;
	}
	UNLOCK();
	return r;
}

/* The pools keep nothing cached: reserved is what is allocated. */
EXPORT CUresult cuMemPoolGetAttribute(CUmemoryPool h, CUmemPool_attribute attr, void *value)
{
	struct fpool *p;
	CUresult r = CUDA_ERROR_INVALID_VALUE;

	ENTER_LIVE("cuMemPoolGetAttribute");
	if (value == NULL)
		return r;
	LOCK();
	p = pool_of(h);
	if (p != NULL && (attr == CU_MEMPOOL_ATTR_RESERVED_MEM_CURRENT ||
			  attr == CU_MEMPOOL_ATTR_USED_MEM_CURRENT)) {
		*(cuuint64_t *)value = p->bytes;
		r = CUDA_SUCCESS;
	}
	UNLOCK();
	return r;
}

EXPORT CUresult cuMemAllocFromPoolAsync(CUdeviceptr *dptr, size_t size, CUmemoryPool pool,
					CUstream hs)
{
	ENTER_LIVE("cuMemAllocFromPoolAsync");
	if (pool == NULL)
		return CUDA_ERROR_INVALID_VALUE;
	return alloc_async("cuMemAllocFromPoolAsync", dptr, size, pool, hs);
}

EXPORT CUresult cuMemFreeAsync(CUdeviceptr dptr, CUstream hs)
{
	struct op *op = op_new(OP_FREE, "cuMemFreeAsync");
	struct fstream *s;
	struct range *r;
	CUresult res;

	ENTER_LIVE("cuMemFreeAsync");
	if (op == NULL)
		return CUDA_ERROR_OUT_OF_MEMORY;
	LOCK();
	res = stream_get(hs, &s);
	if (res == CUDA_SUCCESS && s->capture != NULL)
		res = CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED;
	r = range_find_locked(RANGE_ASYNC, dptr);
	if (res == CUDA_SUCCESS && (r == NULL || r->freeing))
		res = CUDA_ERROR_INVALID_VALUE;
	if (res != CUDA_SUCCESS) {
		UNLOCK();
		free(op);
		return res;
	}
	r->freeing = 1;
	op->u.mem.va = dptr;
	res = submit_locked(s, op);
	UNLOCK();
	return res;
}

EXPORT CUresult cuMemFreeAsync_ptsz(CUdeviceptr dptr, CUstream hs)
{
	return cuMemFreeAsync(dptr, hs);
}

void pool_forget_locked(struct fpool *p, size_t bytes)
{
	pool_put_locked(p, bytes);
}

void pool_alloc_run_locked(struct op *op)
{
	struct range *r = range_find_locked(RANGE_ASYNC, op->u.mem.va);

	if (r != NULL && mprotect((void *)(uintptr_t)r->va, r->size, PROT_READ | PROT_WRITE) == 0)
		r->live = 1;
}

/* Work not ordered before the free that still touches the memory is a
 * use after free. */
void pool_free_run_locked(struct op *op)
{
	struct range *r = range_find_locked(RANGE_ASYNC, op->u.mem.va);

	if (r == NULL)
		return;
	check_unused_locked("cuMemFreeAsync", r->va, r->size, op);
	UNLOCK();
	pthread_rwlock_wrlock(&sim.mem);
	pthread_mutex_lock(&sim.lock);
	r = range_find_locked(RANGE_ASYNC, op->u.mem.va);
	if (r != NULL) {
		munmap((void *)(uintptr_t)r->va, r->size);
		sim_give(r->size);
		if (r->pool != NULL)
			pool_put_locked(r->pool, r->size);
		range_del_locked(r);
	}
	UNLOCK();
	pthread_rwlock_unlock(&sim.mem);
	pthread_mutex_lock(&sim.lock);
}
