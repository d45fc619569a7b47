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
 * memory directly. FAKECUDA_FAIL=fn:n[:err][,...] makes the n-th call of any
 * entry point fn fail (with CUDA_ERROR_OUT_OF_MEMORY, or err: inval,
 * illegal, unknown). FAKECUDA_HOLD=fn:path[,...] makes calls of fn wait on
 * entry while the file path exists. Copies run synchronously.
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
	CUresult err;
};

/* A call held open: callers of `fn` block on entry while it is set
 * (fakecuda_hold), or while the file `path` exists (FAKECUDA_HOLD, for
 * other processes). */
struct hold {
	char fn[48];
	char path[200];
	int waiting;
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
	int armed;             /* rules or holds exist: entry points look */
	struct hold holds[8];
	int nholds;
	long live_handles, syncs;
	long faults_fired;     /* failures returned since the plan was set */
} F = { .lock = PTHREAD_MUTEX_INITIALIZER };

#define LOCKED_INIT() do { pthread_mutex_lock(&F.lock); init_locked(); } while (0)
#define UNLOCK() pthread_mutex_unlock(&F.lock)

static void init_locked(void);

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

/* The error a fault rule returns: "oom" (the default), "inval",
 * "illegal" (a sticky device fault) or "unknown". */
static CUresult error_named(const char *s)
{
	if (strncmp(s, "inval", 5) == 0)
		return CUDA_ERROR_INVALID_VALUE;
	if (strncmp(s, "illegal", 7) == 0)
		return CUDA_ERROR_ILLEGAL_ADDRESS;
	if (strncmp(s, "unknown", 7) == 0)
		return CUDA_ERROR_UNKNOWN;
	return CUDA_ERROR_OUT_OF_MEMORY;
}

static void arm_locked(void)
{
	__atomic_store_n(&F.armed, F.nrules > 0 || F.nholds > 0, __ATOMIC_RELEASE);
}

static void set_fail_locked(const char *spec)
{
	const char *p = spec;
	char *end;

	F.nrules = 0;
	F.faults_fired = 0;
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
		r->at = strtol(colon + 1, &end, 10);
		r->calls = 0;
		r->err = CUDA_ERROR_OUT_OF_MEMORY;
		if (*end == ':')
			r->err = error_named(end + 1);
		F.nrules++;
		p = comma ? comma + 1 : NULL;
	}
	arm_locked();
}

/* FAKECUDA_HOLD=fn:path[,fn:path]: calls of fn block while path exists. */
static void hold_env_locked(const char *spec)
{
	const char *p = spec;

	while (p != NULL && *p != '\0' && F.nholds < 8) {
		struct hold *h = &F.holds[F.nholds];
		const char *colon = strchr(p, ':');
		const char *comma;
		size_t len;

		if (colon == NULL)
			break;
		comma = strchr(colon, ',');
		memset(h, 0, sizeof(*h));
		len = (size_t)(colon - p) < sizeof(h->fn) ? (size_t)(colon - p) : sizeof(h->fn) - 1;
		memcpy(h->fn, p, len);
		len = comma ? (size_t)(comma - colon - 1) : strlen(colon + 1);
		if (len == 0 || len >= sizeof(h->path))
			break;
		memcpy(h->path, colon + 1, len);
		F.nholds++;
		p = comma ? comma + 1 : NULL;
	}
	arm_locked();
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
	hold_env_locked(getenv("FAKECUDA_HOLD"));
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


/* Count a call of fn; its error if the fault plan says this one fails,
 * else CUDA_SUCCESS. */
static CUresult should_fail_locked(const char *fn)
{
	int i;

	for (i = 0; i < F.nrules; i++)
		if (strcmp(F.rules[i].fn, fn) == 0 && ++F.rules[i].calls == F.rules[i].at) {
			F.faults_fired++;
			return F.rules[i].err;
		}
	return CUDA_SUCCESS;
}

static int held_locked(struct hold *h)
{
	if (h->path[0] == '\0')
		return 1;
	return access(h->path, F_OK) == 0;
}

/* Block while a hold names fn (without the driver lock, so other calls
 * go on), then consult the fault plan. Every entry point starts here;
 * when nothing is armed it costs one atomic load. */
static CUresult enter_call(const char *fn)
{
	CUresult r;
	int i;

	if (!__atomic_load_n(&F.armed, __ATOMIC_ACQUIRE))
		return CUDA_SUCCESS;
	LOCKED_INIT();
	for (i = 0; i < F.nholds; i++) {
		struct hold *h = &F.holds[i];

		if (strcmp(h->fn, fn) != 0)
			continue;
		h->waiting++;
		while (i < F.nholds && strcmp(h->fn, fn) == 0 && held_locked(h)) {
			UNLOCK();
			usleep(1000);
			pthread_mutex_lock(&F.lock);
		}
		if (i < F.nholds && strcmp(h->fn, fn) == 0)
			h->waiting--;
		break;
	}
	r = should_fail_locked(fn);
	UNLOCK();
	return r;
}

/* At the top of every driver entry point. */
#define ENTER(fn)                                   \
	do {                                        \
		CUresult fault_ = enter_call(fn);   \
		if (fault_ != CUDA_SUCCESS)         \
			return fault_;              \
	} while (0)

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

EXPORT void fakecuda_hold(const char *fn)
{
	struct hold *h;

	LOCKED_INIT();
	if (F.nholds < 8) {
		h = &F.holds[F.nholds++];
		memset(h, 0, sizeof(*h));
		snprintf(h->fn, sizeof(h->fn), "%s", fn);
	}
	arm_locked();
	UNLOCK();
}

EXPORT void fakecuda_unhold(void)
{
	int i, k = 0;

	LOCKED_INIT();
	/* Holds that came from the environment (with a path) stay. */
	for (i = 0; i < F.nholds; i++)
		if (F.holds[i].path[0] != '\0')
			F.holds[k++] = F.holds[i];
	F.nholds = k;
	arm_locked();
	UNLOCK();
}

EXPORT int fakecuda_held(const char *fn)
{
	int i, n = 0;

	LOCKED_INIT();
	for (i = 0; i < F.nholds; i++)
		if (strcmp(F.holds[i].fn, fn) == 0)
			n += F.holds[i].waiting;
	UNLOCK();
	return n;
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
EXPORT long fakecuda_live_reservations(void) { return count_kind(RANGE_RESERVED); }
EXPORT long fakecuda_faults_fired(void)
{
	long n;

	LOCKED_INIT();
	n = F.faults_fired;
	UNLOCK();
	return n;
}
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
	ENTER("cuInit");
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
	ENTER("cuDeviceGetCount");
	LOCKED_INIT();
	*count = F.devices;
	UNLOCK();
	return CUDA_SUCCESS;
}

EXPORT CUresult cuDeviceGet(CUdevice *dev, int ordinal)
{
	ENTER("cuDeviceGet");
	if (ordinal < 0 || ordinal >= F.devices)
		return CUDA_ERROR_INVALID_DEVICE;
	*dev = ordinal;
	return CUDA_SUCCESS;
}

static char fake_ctx[16];

EXPORT CUresult cuDevicePrimaryCtxRetain(CUcontext *ctx, CUdevice dev)
{
	ENTER("cuDevicePrimaryCtxRetain");
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
	ENTER("cuCtxGetCurrent");
	*ctx = ctx_current;
	return CUDA_SUCCESS;
}

EXPORT CUresult cuCtxSetCurrent(CUcontext ctx)
{
	ENTER("cuCtxSetCurrent");
	ctx_current = ctx;
	return CUDA_SUCCESS;
}

EXPORT CUresult cuCtxPushCurrent(CUcontext ctx)
{
	ENTER("cuCtxPushCurrent");
	if (ctx == NULL || ctx_depth == 1)
		return CUDA_ERROR_INVALID_VALUE;
	ctx_depth++;
	ctx_saved = ctx_current;
	ctx_current = ctx;
	return CUDA_SUCCESS;
}

EXPORT CUresult cuCtxPopCurrent(CUcontext *ctx)
{
	ENTER("cuCtxPopCurrent");
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
	ENTER("cuCtxSynchronize");
	__atomic_add_fetch(&F.syncs, 1, __ATOMIC_RELAXED);
	return CUDA_SUCCESS;
}

EXPORT CUresult cuMemGetAllocationGranularity(size_t *g, const CUmemAllocationProp *prop,
					      CUmemAllocationGranularity_flags option)
{
	ENTER("cuMemGetAllocationGranularity");
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

	ENTER("cuMemAddressReserve");
	(void)addr;
	(void)flags;
	if (size == 0 || size % GRANULARITY)
		return CUDA_ERROR_INVALID_VALUE;
	if (align < GRANULARITY)
		align = GRANULARITY;
	LOCKED_INIT();
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

	ENTER("cuMemAddressFree");
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

	ENTER("cuMemCreate");
	(void)flags;
	if (size == 0 || size % GRANULARITY || prop == NULL ||
	    prop->location.id < 0 || prop->location.id >= F.devices)
		return CUDA_ERROR_INVALID_VALUE;
	LOCKED_INIT();
	if (take(size) < 0) {
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

	ENTER("cuMemRelease");
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

	ENTER("cuMemMap");
	(void)flags;
	if (p == NULL || offset != 0 || size != p->size)
		return CUDA_ERROR_INVALID_VALUE;
	LOCKED_INIT();
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

	ENTER("cuMemUnmap");
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

	ENTER("cuMemSetAccess");
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
	ENTER("cuStreamCreate");
	(void)flags;
	*s = malloc(16);
	return *s ? CUDA_SUCCESS : CUDA_ERROR_OUT_OF_MEMORY;
}

EXPORT CUresult cuStreamDestroy(CUstream s)
{
	ENTER("cuStreamDestroy");
	free(s);
	return CUDA_SUCCESS;
}

EXPORT CUresult cuStreamSynchronize(CUstream s)
{
	ENTER("cuStreamSynchronize");
	return s ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
}

/* Copies run synchronously, so an event is complete once recorded. */
EXPORT CUresult cuEventCreate(CUevent *e, unsigned int flags)
{
	ENTER("cuEventCreate");
	(void)flags;
	*e = malloc(16);
	return *e ? CUDA_SUCCESS : CUDA_ERROR_OUT_OF_MEMORY;
}

EXPORT CUresult cuEventDestroy(CUevent e)
{
	ENTER("cuEventDestroy");
	free(e);
	return CUDA_SUCCESS;
}

EXPORT CUresult cuEventRecord(CUevent e, CUstream s)
{
	ENTER("cuEventRecord");
	return e && s ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
}

EXPORT CUresult cuEventSynchronize(CUevent e)
{
	ENTER("cuEventSynchronize");
	return e ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
}

/* Copies check the device side is mapped and accessible, as the real
 * driver would report an illegal address rather than crash. */
static CUresult copy(void *dst, const void *src, uint64_t dev, size_t n)
{
	struct range *m;
	CUresult r = CUDA_SUCCESS;

	LOCKED_INIT();
	m = containing_locked(RANGE_MAPPED, dev, n);
	if (m == NULL)
		m = containing_locked(RANGE_ALLOC, dev, n);
	if (m == NULL)
		r = CUDA_ERROR_INVALID_VALUE;
	UNLOCK();
	if (r == CUDA_SUCCESS)
		memcpy(dst, src, n);
	return r;
}

EXPORT CUresult cuMemcpyDtoHAsync(void *dst, CUdeviceptr src, size_t n, CUstream s)
{
	ENTER("cuMemcpyDtoHAsync");
	(void)s;
	return copy(dst, (const void *)(uintptr_t)src, src, n);
}

EXPORT CUresult cuMemcpyHtoDAsync(CUdeviceptr dst, const void *src, size_t n, CUstream s)
{
	ENTER("cuMemcpyHtoDAsync");
	(void)s;
	return copy((void *)(uintptr_t)dst, src, dst, n);
}

EXPORT CUresult cuMemHostRegister(void *p, size_t n, unsigned int flags)
{
	CUresult r = CUDA_SUCCESS;

	ENTER("cuMemHostRegister");
	(void)flags;
	LOCKED_INIT();
	if (overlaps_locked(RANGE_HOSTREG, (uint64_t)(uintptr_t)p, n))
		r = CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED;
	else if (add_locked(RANGE_HOSTREG, (uint64_t)(uintptr_t)p, n) == NULL)
		r = CUDA_ERROR_OUT_OF_MEMORY;
	UNLOCK();
	return r;
}

EXPORT CUresult cuMemHostUnregister(void *p)
{
	struct range *r;
	CUresult res = CUDA_SUCCESS;

	ENTER("cuMemHostUnregister");
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

	ENTER("cuMemGetInfo");
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

	ENTER("cuMemAlloc");
	if (size == 0)
		return CUDA_ERROR_INVALID_VALUE;
	LOCKED_INIT();
	if (take(rounded) < 0) {
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

	ENTER("cuMemFree");
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
