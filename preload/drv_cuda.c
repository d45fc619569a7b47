/* SPDX-License-Identifier: Apache-2.0 */
/*
 * drv_cuda.c - the real driver binding.
 *
 * libmemctl.so has no DT_NEEDED on libcuda: a process that never touches
 * CUDA must load it without the driver installed. The driver is dlopen'ed
 * on first need and every entry point is resolved by its versioned ABI name
 * (cuda.h maps cuMemGetInfo to cuMemGetInfo_v2 and so on; the prototypes
 * come from the header through __typeof__, so a mismatch fails to compile),
 * with glibc's own dlsym: memctl's calls reach the driver, never memctl's
 * wrappers of it.
 * CUresult becomes a negative errno here and nowhere else.
 */
#include <cuda.h>
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <string.h>

#include "drv_cuda.h"
#include "log.h"
#include "proc.h"
#include "region.h"

#define FN(name) __typeof__(&name) name##_fn

static struct {
	FN(cuInit);
	FN(cuGetErrorName);
	FN(cuDeviceGet);
	FN(cuDeviceGetCount);
	FN(cuDevicePrimaryCtxRetain);
	FN(cuCtxGetCurrent);
	FN(cuCtxSetCurrent);
	FN(cuCtxPushCurrent);
	FN(cuCtxPopCurrent);
	FN(cuCtxSynchronize);
	FN(cuMemGetAllocationGranularity);
	FN(cuMemAddressReserve);
	FN(cuMemAddressFree);
	FN(cuMemCreate);
	FN(cuMemRelease);
	FN(cuMemMap);
	FN(cuMemUnmap);
	FN(cuMemSetAccess);
	FN(cuStreamCreate);
	FN(cuStreamSynchronize);
	FN(cuMemcpyDtoHAsync);
	FN(cuMemcpyHtoDAsync);
	FN(cuMemHostRegister);
	FN(cuMemHostUnregister);
	FN(cuMemGetInfo);
	FN(cuEventCreate);
	FN(cuEventDestroy);
	FN(cuEventRecord);
	FN(cuEventSynchronize);
	FN(cuEventQuery);
} driver; /* the driver's entry points, resolved by load() */

static const struct { const char *sym; void **slot; } syms[] = {
#define SYM(name, abi) { abi, (void **)&driver.name##_fn }
	SYM(cuInit, "cuInit"),
	SYM(cuGetErrorName, "cuGetErrorName"),
	SYM(cuDeviceGet, "cuDeviceGet"),
	SYM(cuDeviceGetCount, "cuDeviceGetCount"),
	SYM(cuDevicePrimaryCtxRetain, "cuDevicePrimaryCtxRetain"),
	SYM(cuCtxGetCurrent, "cuCtxGetCurrent"),
	SYM(cuCtxSetCurrent, "cuCtxSetCurrent"),
	SYM(cuCtxPushCurrent, "cuCtxPushCurrent_v2"),
	SYM(cuCtxPopCurrent, "cuCtxPopCurrent_v2"),
	SYM(cuCtxSynchronize, "cuCtxSynchronize"),
	SYM(cuMemGetAllocationGranularity, "cuMemGetAllocationGranularity"),
	SYM(cuMemAddressReserve, "cuMemAddressReserve"),
	SYM(cuMemAddressFree, "cuMemAddressFree"),
	SYM(cuMemCreate, "cuMemCreate"),
	SYM(cuMemRelease, "cuMemRelease"),
	SYM(cuMemMap, "cuMemMap"),
	SYM(cuMemUnmap, "cuMemUnmap"),
	SYM(cuMemSetAccess, "cuMemSetAccess"),
	SYM(cuStreamCreate, "cuStreamCreate"),
	SYM(cuStreamSynchronize, "cuStreamSynchronize"),
	SYM(cuMemcpyDtoHAsync, "cuMemcpyDtoHAsync_v2"),
	SYM(cuMemcpyHtoDAsync, "cuMemcpyHtoDAsync_v2"),
	SYM(cuMemHostRegister, "cuMemHostRegister_v2"),
	SYM(cuMemHostUnregister, "cuMemHostUnregister"),
	SYM(cuMemGetInfo, "cuMemGetInfo_v2"),
	SYM(cuEventCreate, "cuEventCreate"),
	SYM(cuEventDestroy, "cuEventDestroy_v2"),
	SYM(cuEventRecord, "cuEventRecord"),
	SYM(cuEventSynchronize, "cuEventSynchronize"),
	SYM(cuEventQuery, "cuEventQuery"),
#undef SYM
};

_Static_assert(REGION_LOC_DEVICE == CU_MEM_LOCATION_TYPE_DEVICE &&
	       REGION_ACCESS_RW == CU_MEM_ACCESS_FLAGS_PROT_READWRITE,
	       "region/drv.h numbers locations and access as cuda.h does");
_Static_assert(sizeof(CUmemAllocationProp) <= REGION_PROP_MAX,
	       "REGION_PROP_MAX holds a CUmemAllocationProp");

static pthread_once_t load_once = PTHREAD_ONCE_INIT;
/* The driver's own answer to this thread's last failed call, for callers
 * that must return it unchanged (drv_cuda_result). */
static __thread CUresult last_failure;
static pthread_mutex_t ctx_lock = PTHREAD_MUTEX_INITIALIZER;
static int loaded;
static int ndevices;
static CUcontext primary[REGION_MAX_DEV];

/* The one place CUresult turns into an errno; logs the driver's name. */
static int cu_err(CUresult r, const char *what)
{
	const char *name = "CUDA_ERROR_UNKNOWN";

	if (r == CUDA_SUCCESS)
		return 0;
	last_failure = r;
	if (r == CUDA_ERROR_NOT_READY)
		return -EAGAIN; /* an answer, not a failure: nothing to log */
	if (driver.cuGetErrorName_fn != NULL)
		(void)driver.cuGetErrorName_fn(r, &name);
	memctl_log_warnx("%s: %s", what, name);
	switch (r) {
	case CUDA_ERROR_OUT_OF_MEMORY:
		return -ENOMEM;
	case CUDA_ERROR_INVALID_VALUE:
		return -EINVAL;
	default:
		return -EIO;
	}
}

static void load(void)
{
	void *h = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
	size_t i;
	int n = 0;

	if (h == NULL) {
		memctl_log_warnx("cannot load the CUDA driver: %s", dlerror());
		return;
	}
	for (i = 0; i < sizeof(syms) / sizeof(syms[0]); i++) {
		*syms[i].slot = preload_dlsym(h, syms[i].sym);
		if (*syms[i].slot == NULL) {
			memctl_log_warnx("the CUDA driver lacks %s", syms[i].sym);
			return;
		}
	}
	if (cu_err(driver.cuInit_fn(0), "cuInit") < 0)
		return;
	if (cu_err(driver.cuDeviceGetCount_fn(&n), "cuDeviceGetCount") < 0)
		return;
	ndevices = n > REGION_MAX_DEV ? REGION_MAX_DEV : n;
	loaded = 1;
}

const struct drv_ops *drv_cuda_load(void);

CUresult drv_cuda_result(int rc)
{
	CUresult r = last_failure;

	last_failure = CUDA_SUCCESS;
	if (rc == 0)
		return CUDA_SUCCESS;
	if (r != CUDA_SUCCESS)
		return r;
	switch (rc) {
	case -ENOMEM:
		return CUDA_ERROR_OUT_OF_MEMORY;
	case -EINVAL:
		return CUDA_ERROR_INVALID_VALUE;
	case -ENOENT:
		return CUDA_ERROR_NOT_FOUND;
	case -ENOSYS:
		return CUDA_ERROR_NOT_INITIALIZED;
	default:
		return CUDA_ERROR_UNKNOWN;
	}
}

int drv_cuda_device_count(void)
{
	return loaded ? ndevices : 0;
}

void drv_cuda_forget(void)
{
	pthread_mutex_init(&ctx_lock, NULL);
	memset(primary, 0, sizeof(primary));
}

/*
 * Make dev's primary context (retained once, for the process lifetime)
 * current for one driver call. Usually it already is (the runtime makes it
 * current on application threads; the control thread keeps it): then this
 * costs one cuCtxGetCurrent. A thread with no context gets the primary one
 * set, as the runtime itself would do. Only a thread that has a context of
 * its own gets the primary one pushed, and *pushed tells to pop it again.
 */
static int enter(int dev, int *pushed)
{
	CUcontext ctx, cur = NULL;
	int rc = 0;

	*pushed = 0;
	if (dev < 0 || dev >= ndevices)
		return -EINVAL;
	ctx = __atomic_load_n(&primary[dev], __ATOMIC_ACQUIRE);
	if (ctx == NULL) {
		CUdevice d;

		pthread_mutex_lock(&ctx_lock);
		ctx = primary[dev];
		if (ctx == NULL) {
			rc = cu_err(driver.cuDeviceGet_fn(&d, dev), "cuDeviceGet");
			if (rc == 0)
				rc = cu_err(driver.cuDevicePrimaryCtxRetain_fn(&ctx, d),
					    "cuDevicePrimaryCtxRetain");
			if (rc == 0)
				__atomic_store_n(&primary[dev], ctx, __ATOMIC_RELEASE);
		}
		pthread_mutex_unlock(&ctx_lock);
		if (rc < 0)
			return rc;
	}
	if (driver.cuCtxGetCurrent_fn(&cur) == CUDA_SUCCESS && cur == ctx)
		return 0;
	if (cur == NULL)
		return cu_err(driver.cuCtxSetCurrent_fn(ctx), "cuCtxSetCurrent");
	*pushed = 1;
	return cu_err(driver.cuCtxPushCurrent_fn(ctx), "cuCtxPushCurrent");
}

static void leave(int pushed)
{
	CUcontext ctx;

	if (pushed)
		(void)driver.cuCtxPopCurrent_fn(&ctx);
}

/* Run `call` in dev's primary context; evaluates to an errno. */
#define IN_CTX(dev, what, call)                                   \
	({                                                        \
		int pushed_;                                      \
		int rc_ = enter(dev, &pushed_);                   \
		if (rc_ == 0) {                                   \
			rc_ = cu_err(call, what);                 \
			leave(pushed_);                           \
		}                                                 \
		rc_;                                              \
	})

static void pinned_prop(int dev, CUmemAllocationProp *prop)
{
	memset(prop, 0, sizeof(*prop));
	prop->type = CU_MEM_ALLOCATION_TYPE_PINNED;
	prop->location.type = CU_MEM_LOCATION_TYPE_DEVICE;
	prop->location.id = dev;
}

static int op_granularity(int dev, size_t *out)
{
	CUmemAllocationProp prop;

	pinned_prop(dev, &prop);
	return IN_CTX(dev, "cuMemGetAllocationGranularity",
		      driver.cuMemGetAllocationGranularity_fn(out, &prop,
				CU_MEM_ALLOC_GRANULARITY_MINIMUM));
}

static int op_reserve(int dev, size_t size, size_t align, uint64_t *va)
{
	CUdeviceptr p = 0;
	int rc = IN_CTX(dev, "cuMemAddressReserve",
			driver.cuMemAddressReserve_fn(&p, size, align, 0, 0));

	*va = (uint64_t)p;
	return rc;
}

static int op_unreserve(int dev, uint64_t va, size_t size)
{
	return IN_CTX(dev, "cuMemAddressFree",
		      driver.cuMemAddressFree_fn((CUdeviceptr)va, size));
}

static int op_create(int dev, size_t size, uint64_t *handle)
{
	CUmemGenericAllocationHandle h = 0;
	CUmemAllocationProp prop;
	int rc;

	pinned_prop(dev, &prop);
	rc = IN_CTX(dev, "cuMemCreate", driver.cuMemCreate_fn(&h, size, &prop, 0));
	*handle = (uint64_t)h;
	return rc;
}

static int op_create_as(int dev, size_t size, const void *prop, uint64_t *handle)
{
	CUmemGenericAllocationHandle h = 0;
	int rc = IN_CTX(dev, "cuMemCreate",
			driver.cuMemCreate_fn(&h, size, (const CUmemAllocationProp *)prop, 0));

	*handle = (uint64_t)h;
	return rc;
}

static int op_release(int dev, uint64_t handle)
{
	return IN_CTX(dev, "cuMemRelease",
		      driver.cuMemRelease_fn((CUmemGenericAllocationHandle)handle));
}

static int op_map(int dev, uint64_t va, size_t size, size_t offset, uint64_t handle)
{
	return IN_CTX(dev, "cuMemMap",
		      driver.cuMemMap_fn((CUdeviceptr)va, size, offset,
				    (CUmemGenericAllocationHandle)handle, 0));
}

static int op_unmap(int dev, uint64_t va, size_t size)
{
	return IN_CTX(dev, "cuMemUnmap", driver.cuMemUnmap_fn((CUdeviceptr)va, size));
}

static int op_set_access(int dev, uint64_t va, size_t size)
{
	CUmemAccessDesc desc;

	memset(&desc, 0, sizeof(desc));
	desc.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
	desc.location.id = dev;
	desc.flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
	return IN_CTX(dev, "cuMemSetAccess",
		      driver.cuMemSetAccess_fn((CUdeviceptr)va, size, &desc, 1));
}

static int op_set_access_as(int dev, uint64_t va, size_t size,
			    const struct region_access *acc, int n)
{
	CUmemAccessDesc desc[REGION_ACCESS_MAX];
	int i;

	if (n < 1 || n > REGION_ACCESS_MAX)
		return -EINVAL;
	memset(desc, 0, sizeof(desc));
	for (i = 0; i < n; i++) {
		desc[i].location.type = (CUmemLocationType)acc[i].type;
		desc[i].location.id = acc[i].id;
		desc[i].flags = (CUmemAccess_flags)acc[i].flags;
	}
	return IN_CTX(dev, "cuMemSetAccess",
		      driver.cuMemSetAccess_fn((CUdeviceptr)va, size, desc, (size_t)n));
}

static int op_device_sync(int dev)
{
	return IN_CTX(dev, "cuCtxSynchronize", driver.cuCtxSynchronize_fn());
}

static int op_stream_create(int dev, void **stream)
{
	CUstream s = NULL;
	int rc = IN_CTX(dev, "cuStreamCreate",
			driver.cuStreamCreate_fn(&s, CU_STREAM_NON_BLOCKING));

	*stream = s;
	return rc;
}

static int op_stream_sync(int dev, void *stream)
{
	return IN_CTX(dev, "cuStreamSynchronize",
		      driver.cuStreamSynchronize_fn((CUstream)stream));
}

static int op_copy_dtoh(int dev, void *host, uint64_t src, size_t n, void *stream)
{
	return IN_CTX(dev, "cuMemcpyDtoHAsync",
		      driver.cuMemcpyDtoHAsync_fn(host, (CUdeviceptr)src, n, (CUstream)stream));
}

static int op_copy_htod(int dev, uint64_t dst, const void *host, size_t n, void *stream)
{
	return IN_CTX(dev, "cuMemcpyHtoDAsync",
		      driver.cuMemcpyHtoDAsync_fn((CUdeviceptr)dst, host, n, (CUstream)stream));
}

static int op_host_register(int dev, void *p, size_t n)
{
	return IN_CTX(dev, "cuMemHostRegister",
		      driver.cuMemHostRegister_fn(p, n, CU_MEMHOSTREGISTER_PORTABLE));
}

static int op_host_unregister(int dev, void *p)
{
	return IN_CTX(dev, "cuMemHostUnregister", driver.cuMemHostUnregister_fn(p));
}

static int op_mem_info(int dev, size_t *free_bytes, size_t *total_bytes)
{
	return IN_CTX(dev, "cuMemGetInfo", driver.cuMemGetInfo_fn(free_bytes, total_bytes));
}

static int op_event_create(int dev, void **event)
{
	CUevent e = NULL;
	int rc = IN_CTX(dev, "cuEventCreate", driver.cuEventCreate_fn(&e, CU_EVENT_DISABLE_TIMING));

	*event = e;
	return rc;
}

static int op_event_destroy(int dev, void *event)
{
	return IN_CTX(dev, "cuEventDestroy", driver.cuEventDestroy_fn((CUevent)event));
}

static int op_event_record(int dev, void *event, void *stream)
{
	return IN_CTX(dev, "cuEventRecord", driver.cuEventRecord_fn((CUevent)event, (CUstream)stream));
}

static int op_event_sync(int dev, void *event)
{
	return IN_CTX(dev, "cuEventSynchronize", driver.cuEventSynchronize_fn((CUevent)event));
}

static int op_event_query(int dev, void *event)
{
	return IN_CTX(dev, "cuEventQuery", driver.cuEventQuery_fn((CUevent)event));
}

/* ---- for the drain (preload/drain.c), outside struct drv_ops ------- */

int drv_cuda_ctx_sync(void *ctx)
{
	CUcontext popped;
	int rc;

	if (!loaded)
		return -ENOSYS;
	rc = cu_err(driver.cuCtxPushCurrent_fn((CUcontext)ctx), "cuCtxPushCurrent");
	if (rc < 0)
		return rc;
	rc = cu_err(driver.cuCtxSynchronize_fn(), "cuCtxSynchronize");
	(void)driver.cuCtxPopCurrent_fn(&popped);
	return rc;
}

uint32_t drv_cuda_primary_devices(void)
{
	uint32_t mask = 0;
	int d;

	for (d = 0; d < REGION_MAX_DEV; d++)
		if (__atomic_load_n(&primary[d], __ATOMIC_ACQUIRE) != NULL)
			mask |= 1u << d;
	return mask;
}

static const struct drv_ops cuda_ops = {
	.granularity = op_granularity,
	.reserve = op_reserve,
	.unreserve = op_unreserve,
	.create = op_create,
	.create_as = op_create_as,
	.release = op_release,
	.map = op_map,
	.unmap = op_unmap,
	.set_access = op_set_access,
	.set_access_as = op_set_access_as,
	.device_sync = op_device_sync,
	.stream_create = op_stream_create,
	.stream_sync = op_stream_sync,
	.copy_dtoh = op_copy_dtoh,
	.copy_htod = op_copy_htod,
	.host_register = op_host_register,
	.host_unregister = op_host_unregister,
	.mem_info = op_mem_info,
	.event_create = op_event_create,
	.event_destroy = op_event_destroy,
	.event_record = op_event_record,
	.event_sync = op_event_sync,
	.event_query = op_event_query,
};

const struct drv_ops *drv_cuda_load(void)
{
	pthread_once(&load_once, load);
	return loaded ? &cuda_ops : NULL;
}
