/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fakecuda.c - a simulated CUDA driver (libcuda.so.1) for machines without
 * a GPU. It behaves like the device rather than answering "ok":
 *
 *   reserve     mmap(PROT_NONE, MAP_NORESERVE)
 *   create      a memfd of that size, counted against a capacity shared by
 *               every process on the machine (FAKECUDA_MEMORY, FAKECUDA_STATE)
 *   map         mmap(MAP_FIXED|MAP_SHARED) of the memfd, still PROT_NONE
 *   set_access  mprotect(RW)
 *   unmap       the range goes back to PROT_NONE: touching it faults
 *   release     the memory is freed once it is also unmapped
 *
 * Device pointers are host addresses, so tests read and write "device"
 * memory directly. FAKECUDA_FAIL=fn:n[,fn:n] makes the n-th call of fn fail
 * with CUDA_ERROR_OUT_OF_MEMORY. Copies run synchronously.
 */
#include <cuda.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fakecuda.h"

#define EXPORT __attribute__((visibility("default")))
#define GRANULARITY (2ul << 20)
#define STATE_MAGIC 0x46414b4543554441ull /* "FAKECUDA" */

struct shared_state {
	uint64_t magic;
	uint64_t used; /* device bytes in use, all processes */
};

struct phys {
	int fd;
	size_t size;
	int maps;
	int released;
};

enum range_kind { RANGE_RESERVED, RANGE_MAPPED, RANGE_ALLOC, RANGE_HOSTREG };

struct range {
	enum range_kind kind;
	uint64_t va;
	size_t size;
	struct phys *phys; /* RANGE_MAPPED */
};

struct fail_rule {
	char fn[48];
	long at;   /* fail when calls reaches this */
	long calls;
};

static struct {
	pthread_mutex_t lock;
	int ready;
	struct shared_state *st;
	uint64_t capacity;
	int devices;
	struct range *ranges;
	size_t nranges, cap_ranges;
	struct fail_rule rules[16];
	int nrules;
	long live_handles, syncs;
} F = { .lock = PTHREAD_MUTEX_INITIALIZER };

static __thread int ctx_depth;
static __thread CUcontext ctx_current;

static uint64_t parse_size(const char *s, uint64_t dflt)
{
	char *end;
	unsigned long long v;

	if (s == NULL || *s == '\0')
		return dflt;
	v = strtoull(s, &end, 10);
	switch (*end) {
	case 'K': case 'k': v <<= 10; break;
	case 'M': case 'm': v <<= 20; break;
	case 'G': case 'g': v <<= 30; break;
	case 'T': case 't': v <<= 40; break;
	default: break;
	}
	return v;
}

static void set_fail_locked(const char *spec)
{
	const char *p = spec;

	F.nrules = 0;
	while (p != NULL && *p != '\0' && F.nrules < 16) {
		struct fail_rule *r = &F.rules[F.nrules];
		const char *colon = strchr(p, ':');
		const char *comma = strchr(p, ',');
		size_t len;

		if (colon == NULL)
			break;
		len = (size_t)(colon - p);
		if (len >= sizeof(r->fn))
			len = sizeof(r->fn) - 1;
		memcpy(r->fn, p, len);
		r->fn[len] = '\0';
		r->at = strtol(colon + 1, NULL, 10);
		r->calls = 0;
		F.nrules++;
		p = comma ? comma + 1 : NULL;
	}
}

static void init_locked(void)
{
	char path[256];
	const char *sp = getenv("FAKECUDA_STATE");
	int fd;

	if (F.ready)
		return;
	F.capacity = parse_size(getenv("FAKECUDA_MEMORY"), 8ull << 30);
	F.devices = (int)parse_size(getenv("FAKECUDA_DEVICES"), 1);
	set_fail_locked(getenv("FAKECUDA_FAIL"));
	if (sp == NULL || *sp == '\0') {
		snprintf(path, sizeof(path), "/tmp/fakecuda-%u.state", (unsigned)getuid());
		sp = path;
	}
	fd = open(sp, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd >= 0) {
		flock(fd, LOCK_EX);
		if (ftruncate(fd, 4096) == 0)
			F.st = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		if (F.st == MAP_FAILED)
			F.st = NULL;
		if (F.st != NULL && F.st->magic != STATE_MAGIC) {
			F.st->used = 0;
			F.st->magic = STATE_MAGIC;
		}
		flock(fd, LOCK_UN);
		close(fd);
	}
	if (F.st == NULL) { /* private fallback: still a working driver */
		static struct shared_state priv;

		F.st = &priv;
	}
	F.ready = 1;
}

#define LOCKED_INIT() do { pthread_mutex_lock(&F.lock); init_locked(); } while (0)
#define UNLOCK() pthread_mutex_unlock(&F.lock)

/* Count a call of fn; 1 if the fault plan says this one fails. */
static int should_fail_locked(const char *fn)
{
	int i;

	for (i = 0; i < F.nrules; i++)
		if (strcmp(F.rules[i].fn, fn) == 0 && ++F.rules[i].calls == F.rules[i].at)
			return 1;
	return 0;
}

static int take(uint64_t bytes)
{
	uint64_t used = __atomic_load_n(&F.st->used, __ATOMIC_RELAXED);

	do {
		if (used + bytes > F.capacity || used + bytes < used)
			return -1;
	} while (!__atomic_compare_exchange_n(&F.st->used, &used, used + bytes, 0,
					      __ATOMIC_RELAXED, __ATOMIC_RELAXED));
	return 0;
}

static void give(uint64_t bytes)
{
	__atomic_sub_fetch(&F.st->used, bytes, __ATOMIC_RELAXED);
}

static struct range *find_locked(enum range_kind kind, uint64_t va)
{
	size_t i;

	for (i = 0; i < F.nranges; i++)
		if (F.ranges[i].kind == kind && F.ranges[i].va == va)
			return &F.ranges[i];
	return NULL;
}

/* The range of `kind` that contains [va, va+size), or NULL. */
static struct range *containing_locked(enum range_kind kind, uint64_t va, size_t size)
{
	size_t i;

	for (i = 0; i < F.nranges; i++) {
		struct range *r = &F.ranges[i];

		if (r->kind == kind && va >= r->va && va + size <= r->va + r->size)
			return r;
	}
	return NULL;
}

static int overlaps_locked(enum range_kind kind, uint64_t va, size_t size)
{
	size_t i;

	for (i = 0; i < F.nranges; i++) {
		struct range *r = &F.ranges[i];

		if (r->kind == kind && va < r->va + r->size && r->va < va + size)
			return 1;
	}
	return 0;
}

static struct range *add_locked(enum range_kind kind, uint64_t va, size_t size)
{
	if (F.nranges == F.cap_ranges) {
		size_t cap = F.cap_ranges ? F.cap_ranges * 2 : 256;
		struct range *r = realloc(F.ranges, cap * sizeof(*r));

		if (r == NULL)
			return NULL;
		F.ranges = r;
		F.cap_ranges = cap;
	}
	F.ranges[F.nranges] = (struct range){ .kind = kind, .va = va, .size = size };
	return &F.ranges[F.nranges++];
}

static void del_locked(struct range *r)
{
	*r = F.ranges[--F.nranges];
}

static void phys_put_locked(struct phys *p)
{
	if (!p->released || p->maps > 0)
		return;
	close(p->fd);
	give(p->size);
	free(p);
}

/* ---- test controls -------------------------------------------------- */

EXPORT void fakecuda_set_fail(const char *spec)
{
	LOCKED_INIT();
	set_fail_locked(spec);
	UNLOCK();
}

static long count_kind(enum range_kind kind)
{
	long n = 0;
	size_t i;

	LOCKED_INIT();
	for (i = 0; i < F.nranges; i++)
		n += F.ranges[i].kind == kind;
	UNLOCK();
	return n;
}

EXPORT long fakecuda_live_handles(void) { return __atomic_load_n(&F.live_handles, __ATOMIC_RELAXED); }
EXPORT long fakecuda_live_mappings(void) { return count_kind(RANGE_MAPPED); }
EXPORT long fakecuda_live_host_registrations(void) { return count_kind(RANGE_HOSTREG); }
EXPORT long fakecuda_syncs(void) { return __atomic_load_n(&F.syncs, __ATOMIC_RELAXED); }

EXPORT uint64_t fakecuda_used(void)
{
	LOCKED_INIT();
	UNLOCK();
	return __atomic_load_n(&F.st->used, __ATOMIC_RELAXED);
}

EXPORT uint64_t fakecuda_capacity(void)
{
	LOCKED_INIT();
	UNLOCK();
	return F.capacity;
}

EXPORT int fakecuda_tenant_take(uint64_t bytes)
{
	LOCKED_INIT();
	UNLOCK();
	return take(bytes);
}

EXPORT void fakecuda_tenant_give(uint64_t bytes)
{
	give(bytes);
}

/* ---- the driver API subset ------------------------------------------ */

EXPORT CUresult cuInit(unsigned int flags)
{
	(void)flags;
	LOCKED_INIT();
	UNLOCK();
	return CUDA_SUCCESS;
}

EXPORT CUresult cuGetErrorName(CUresult error, const char **str)
{
	switch (error) {
	case CUDA_SUCCESS: *str = "CUDA_SUCCESS"; break;
	case CUDA_ERROR_INVALID_VALUE: *str = "CUDA_ERROR_INVALID_VALUE"; break;
	case CUDA_ERROR_OUT_OF_MEMORY: *str = "CUDA_ERROR_OUT_OF_MEMORY"; break;
	case CUDA_ERROR_NOT_INITIALIZED: *str = "CUDA_ERROR_NOT_INITIALIZED"; break;
	case CUDA_ERROR_INVALID_DEVICE: *str = "CUDA_ERROR_INVALID_DEVICE"; break;
	default: *str = "CUDA_ERROR_UNKNOWN"; break;
	}
	return CUDA_SUCCESS;
}

EXPORT CUresult cuGetErrorString(CUresult error, const char **str)
{
	return cuGetErrorName(error, str);
}

EXPORT CUresult cuDeviceGetCount(int *count)
{
	LOCKED_INIT();
	*count = F.devices;
	UNLOCK();
	return CUDA_SUCCESS;
}

EXPORT CUresult cuDeviceGet(CUdevice *dev, int ordinal)
{
	if (ordinal < 0 || ordinal >= F.devices)
		return CUDA_ERROR_INVALID_DEVICE;
	*dev = ordinal;
	return CUDA_SUCCESS;
}

static char fake_ctx[16];

EXPORT CUresult cuDevicePrimaryCtxRetain(CUcontext *ctx, CUdevice dev)
{
	if (dev < 0 || dev >= 16)
		return CUDA_ERROR_INVALID_DEVICE;
	*ctx = (CUcontext)(void *)&fake_ctx[dev];
	return CUDA_SUCCESS;
}

/* A one-level context stack per thread is all memctl needs: it pushes
 * only over a context of the application's own. */
static __thread CUcontext ctx_saved;

EXPORT CUresult cuCtxGetCurrent(CUcontext *ctx)
{
	*ctx = ctx_current;
	return CUDA_SUCCESS;
}

EXPORT CUresult cuCtxSetCurrent(CUcontext ctx)
{
	ctx_current = ctx;
	return CUDA_SUCCESS;
}

EXPORT CUresult cuCtxPushCurrent(CUcontext ctx)
{
	if (ctx == NULL || ctx_depth == 1)
		return CUDA_ERROR_INVALID_VALUE;
	ctx_depth++;
	ctx_saved = ctx_current;
	ctx_current = ctx;
	return CUDA_SUCCESS;
}

EXPORT CUresult cuCtxPopCurrent(CUcontext *ctx)
{
	if (ctx_depth == 0)
		return CUDA_ERROR_INVALID_VALUE;
	ctx_depth--;
	if (ctx != NULL)
		*ctx = ctx_current;
	ctx_current = ctx_saved;
	return CUDA_SUCCESS;
}

EXPORT CUresult cuCtxSynchronize(void)
{
	__atomic_add_fetch(&F.syncs, 1, __ATOMIC_RELAXED);
	return CUDA_SUCCESS;
}

EXPORT CUresult cuMemGetAllocationGranularity(size_t *g, const CUmemAllocationProp *prop,
					      CUmemAllocationGranularity_flags option)
{
	(void)option;
	if (prop == NULL || prop->location.id < 0 || prop->location.id >= F.devices)
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

	(void)addr;
	(void)flags;
	if (size == 0 || size % GRANULARITY)
		return CUDA_ERROR_INVALID_VALUE;
	if (align < GRANULARITY)
		align = GRANULARITY;
	LOCKED_INIT();
	if (should_fail_locked("cuMemAddressReserve")) {
		r = CUDA_ERROR_OUT_OF_MEMORY;
		goto out;
	}
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
	if (add_locked(RANGE_RESERVED, start, size) == NULL) {
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

	LOCKED_INIT();
	r = find_locked(RANGE_RESERVED, ptr);
	if (r == NULL || r->size != size || overlaps_locked(RANGE_MAPPED, ptr, size)) {
		res = CUDA_ERROR_INVALID_VALUE;
	} else {
		munmap((void *)(uintptr_t)ptr, size);
		del_locked(r);
	}
	UNLOCK();
	return res;
}

EXPORT CUresult cuMemCreate(CUmemGenericAllocationHandle *handle, size_t size,
			    const CUmemAllocationProp *prop, unsigned long long flags)
{
	struct phys *p;
	CUresult r = CUDA_SUCCESS;

	(void)flags;
	if (size == 0 || size % GRANULARITY || prop == NULL ||
	    prop->location.id < 0 || prop->location.id >= F.devices)
		return CUDA_ERROR_INVALID_VALUE;
	LOCKED_INIT();
	if (should_fail_locked("cuMemCreate") || take(size) < 0) {
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
		give(size);
		r = CUDA_ERROR_OUT_OF_MEMORY;
		goto out;
	}
	p->size = size;
	F.live_handles++;
	*handle = (CUmemGenericAllocationHandle)(uintptr_t)p;
out:
	UNLOCK();
	return r;
}

EXPORT CUresult cuMemRelease(CUmemGenericAllocationHandle handle)
{
	struct phys *p = (struct phys *)(uintptr_t)handle;

	if (p == NULL)
		return CUDA_ERROR_INVALID_VALUE;
	LOCKED_INIT();
	if (p->released) {
		UNLOCK();
		return CUDA_ERROR_INVALID_VALUE;
	}
	p->released = 1;
	F.live_handles--;
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

	(void)flags;
	if (p == NULL || offset != 0 || size != p->size)
		return CUDA_ERROR_INVALID_VALUE;
	LOCKED_INIT();
	if (p->released || containing_locked(RANGE_RESERVED, ptr, size) == NULL ||
	    overlaps_locked(RANGE_MAPPED, ptr, size)) {
		r = CUDA_ERROR_INVALID_VALUE;
		goto out;
	}
	if (should_fail_locked("cuMemMap")) {
		r = CUDA_ERROR_OUT_OF_MEMORY;
		goto out;
	}
	if (mmap((void *)(uintptr_t)ptr, size, PROT_NONE, MAP_SHARED | MAP_FIXED,
		 p->fd, 0) == MAP_FAILED) {
		r = CUDA_ERROR_OUT_OF_MEMORY;
		goto out;
	}
	m = add_locked(RANGE_MAPPED, ptr, size);
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

	LOCKED_INIT();
	m = find_locked(RANGE_MAPPED, ptr);
	if (m == NULL || m->size != size) {
		UNLOCK();
		return CUDA_ERROR_INVALID_VALUE;
	}
	/* Back to a bare reservation: any touch now faults. */
	mmap((void *)(uintptr_t)ptr, size, PROT_NONE,
	     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0);
	p = m->phys;
	del_locked(m);
	p->maps--;
	phys_put_locked(p);
	UNLOCK();
	return CUDA_SUCCESS;
}

EXPORT CUresult cuMemSetAccess(CUdeviceptr ptr, size_t size, const CUmemAccessDesc *desc,
			       size_t count)
{
	CUresult r = CUDA_SUCCESS;

	if (desc == NULL || count == 0)
		return CUDA_ERROR_INVALID_VALUE;
	LOCKED_INIT();
	if (containing_locked(RANGE_MAPPED, ptr, size) == NULL)
		r = CUDA_ERROR_INVALID_VALUE;
	else if (mprotect((void *)(uintptr_t)ptr, size, PROT_READ | PROT_WRITE) < 0)
		r = CUDA_ERROR_INVALID_VALUE;
	UNLOCK();
	return r;
}

EXPORT CUresult cuStreamCreate(CUstream *s, unsigned int flags)
{
	(void)flags;
	*s = malloc(16);
	return *s ? CUDA_SUCCESS : CUDA_ERROR_OUT_OF_MEMORY;
}

EXPORT CUresult cuStreamDestroy(CUstream s)
{
	free(s);
	return CUDA_SUCCESS;
}

EXPORT CUresult cuStreamSynchronize(CUstream s)
{
	return s ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
}

/* Copies run synchronously, so an event is complete once recorded. */
EXPORT CUresult cuEventCreate(CUevent *e, unsigned int flags)
{
	(void)flags;
	*e = malloc(16);
	return *e ? CUDA_SUCCESS : CUDA_ERROR_OUT_OF_MEMORY;
}

EXPORT CUresult cuEventDestroy(CUevent e)
{
	free(e);
	return CUDA_SUCCESS;
}

EXPORT CUresult cuEventRecord(CUevent e, CUstream s)
{
	return e && s ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
}

EXPORT CUresult cuEventSynchronize(CUevent e)
{
	CUresult r = CUDA_SUCCESS;

	if (e == NULL)
		return CUDA_ERROR_INVALID_VALUE;
	LOCKED_INIT();
	if (should_fail_locked("cuEventSynchronize"))
		r = CUDA_ERROR_ILLEGAL_ADDRESS; /* as a device failing mid-copy */
	UNLOCK();
	return r;
}

/* Copies check the device side is mapped and accessible, as the real
 * driver would report an illegal address rather than crash. */
static CUresult copy(void *dst, const void *src, uint64_t dev, size_t n, const char *fn)
{
	struct range *m;
	CUresult r = CUDA_SUCCESS;

	LOCKED_INIT();
	m = containing_locked(RANGE_MAPPED, dev, n);
	if (m == NULL)
		m = containing_locked(RANGE_ALLOC, dev, n);
	if (m == NULL)
		r = CUDA_ERROR_INVALID_VALUE;
	else if (should_fail_locked(fn))
		r = CUDA_ERROR_OUT_OF_MEMORY;
	UNLOCK();
	if (r == CUDA_SUCCESS)
		memcpy(dst, src, n);
	return r;
}

EXPORT CUresult cuMemcpyDtoHAsync(void *dst, CUdeviceptr src, size_t n, CUstream s)
{
	(void)s;
	return copy(dst, (const void *)(uintptr_t)src, src, n, "cuMemcpyDtoHAsync");
}

EXPORT CUresult cuMemcpyHtoDAsync(CUdeviceptr dst, const void *src, size_t n, CUstream s)
{
	(void)s;
	return copy((void *)(uintptr_t)dst, src, dst, n, "cuMemcpyHtoDAsync");
}

EXPORT CUresult cuMemHostRegister(void *p, size_t n, unsigned int flags)
{
	CUresult r = CUDA_SUCCESS;

	(void)flags;
	LOCKED_INIT();
	if (overlaps_locked(RANGE_HOSTREG, (uint64_t)(uintptr_t)p, n))
		r = CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED;
	else if (should_fail_locked("cuMemHostRegister"))
		r = CUDA_ERROR_OUT_OF_MEMORY;
	else if (add_locked(RANGE_HOSTREG, (uint64_t)(uintptr_t)p, n) == NULL)
		r = CUDA_ERROR_OUT_OF_MEMORY;
	UNLOCK();
	return r;
}

EXPORT CUresult cuMemHostUnregister(void *p)
{
	struct range *r;
	CUresult res = CUDA_SUCCESS;

	LOCKED_INIT();
	r = find_locked(RANGE_HOSTREG, (uint64_t)(uintptr_t)p);
	if (r == NULL)
		res = CUDA_ERROR_HOST_MEMORY_NOT_REGISTERED;
	else
		del_locked(r);
	UNLOCK();
	return res;
}

EXPORT CUresult cuMemGetInfo(size_t *free_bytes, size_t *total)
{
	uint64_t used;

	LOCKED_INIT();
	UNLOCK();
	used = __atomic_load_n(&F.st->used, __ATOMIC_RELAXED);
	*total = F.capacity;
	*free_bytes = used > F.capacity ? 0 : F.capacity - used;
	return CUDA_SUCCESS;
}

/* What the runtime's cudaMalloc uses: plain device memory, no VMM. */
EXPORT CUresult cuMemAlloc(CUdeviceptr *ptr, size_t size)
{
	size_t rounded = (size + 4095) & ~(size_t)4095;
	CUresult r = CUDA_SUCCESS;
	void *p;

	if (size == 0)
		return CUDA_ERROR_INVALID_VALUE;
	LOCKED_INIT();
	if (should_fail_locked("cuMemAlloc") || take(rounded) < 0) {
		r = CUDA_ERROR_OUT_OF_MEMORY;
		goto out;
	}
	p = mmap(NULL, rounded, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED || add_locked(RANGE_ALLOC, (uint64_t)(uintptr_t)p, rounded) == NULL) {
		if (p != MAP_FAILED)
			munmap(p, rounded);
		give(rounded);
		r = CUDA_ERROR_OUT_OF_MEMORY;
		goto out;
	}
	*ptr = (CUdeviceptr)(uintptr_t)p;
out:
	UNLOCK();
	return r;
}

EXPORT CUresult cuMemFree(CUdeviceptr ptr)
{
	struct range *r;
	CUresult res = CUDA_SUCCESS;

	LOCKED_INIT();
	r = find_locked(RANGE_ALLOC, ptr);
	if (r == NULL) {
		res = CUDA_ERROR_INVALID_VALUE;
	} else {
		munmap((void *)(uintptr_t)ptr, r->size);
		give(r->size);
		del_locked(r);
	}
	UNLOCK();
	return res;
}
