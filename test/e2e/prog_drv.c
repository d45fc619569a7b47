/* SPDX-License-Identifier: Apache-2.0 */
/*
 * prog_drv.c - a tenant that reaches the driver as a statically linked
 * CUDA runtime does: it links no CUDA library, opens libcuda.so.1 itself,
 * takes cuGetProcAddress_v2 with dlsym on that handle (the 11.3
 * "cuGetProcAddress" with PROG_LOOKUP=v1), re-resolves the lookup through
 * itself and finds every other call through it. Built a second time with
 * -DPROG_DRV_LINKED (prog_drv_link): then it calls the driver's exported
 * functions directly, linked against libcuda, as a C++ engine on the
 * driver API does.
 *
 * The interface is prog_tenant's, so the same scripts drive both:
 *   usage: prog_drv NWEIGHTS WEIGHT_BYTES NKV KV_BYTES
 * "weights" and "kv_cache" are allocated with cuMemAlloc (every third one
 * with cuMemAllocPitch) inside regions, or with PROG_REGIONS=0 outside any
 * (then MEMCTL_DEFAULT_TAG decides), filled with known bytes, and then
 * "ready <pid>" is printed. With PROG_WAIT=1 it first prints "resolved"
 * once the driver is initialised and a context current, and allocates only
 * after an "alloc" line. Commands on stdin:
 *   check          -> "ok" if every byte is as written, else "bad <what> <i> <at>"
 *   probe          -> "weights=<mapped|released> kv_cache=<...>"
 *   stat TAG       -> "<rc> <allocations> <active> <paused> <host>" (memctl_stat)
 *   pause TAG [cpu], resume TAG -> "<rc>" of memctl_pause / memctl_resume
 *   quit           -> frees everything with cuMemFree, exits 0 (5 if a free failed)
 *   drop N         -> frees weights N now (as quit does; "0" or the error)
 *   count          -> "<handles> <mappings>" the simulated driver holds
 * Device memory is read and written with cuMemcpyHtoD/DtoH on a GPU and
 * directly on the simulated driver.
 *
 * PROG_ALLOC picks how memory is allocated (the CUDA layer underneath a
 * framework):
 *   plain  cuMemAlloc / cuMemAllocPitch (the default)
 *   vmm    as PyTorch's expandable segments: one reservation per tag, each
 *          buffer made of several handles (1, 2, 3 units of an eighth of
 *          it, at least 2 MiB, and what is left) mapped side by
 *          side, access granted over the whole buffer in one call; freed
 *          by unmapping handle by handle and releasing each (even buffers)
 *          or releasing every handle first and unmapping the whole buffer
 *          in one call (odd ones); the reservations go at quit
 *   async  cuMemAllocAsync / cuMemFreeAsync on a stream of its own
 */
#include <cuda.h>
#include <cudaTypedefs.h>
#include <string.h>

#include "e2e.h"

#define MAXA 256
#define CUDA_AT 12000 /* the version this "runtime" was built against */

static struct {
	PFN_cuInit_v2000 init;
	PFN_cuDeviceGet_v2000 device_get;
	PFN_cuDevicePrimaryCtxRetain_v7000 ctx_retain;
	PFN_cuCtxSetCurrent_v4000 ctx_set;
	PFN_cuMemAlloc_v3020 alloc;
	PFN_cuMemAllocPitch_v3020 alloc_pitch;
	PFN_cuMemFree_v3020 free;
	PFN_cuMemcpyHtoD_v3020 htod; /* NULL on the simulated driver */
	PFN_cuMemcpyDtoH_v3020 dtoh;
	PFN_cuMemAddressReserve_v10020 reserve;
	PFN_cuMemAddressFree_v10020 unreserve;
	PFN_cuMemCreate_v10020 create;
	PFN_cuMemRelease_v10020 release;
	PFN_cuMemMap_v10020 map;
	PFN_cuMemUnmap_v10020 unmap;
	PFN_cuMemSetAccess_v10020 access;
	PFN_cuMemAllocAsync_v11020 alloc_async;
	PFN_cuMemFreeAsync_v11020 free_async;
	PFN_cuStreamCreate_v2000 stream_create;
	PFN_cuStreamSynchronize_v2000 stream_sync;
} drv;

enum mode { PLAIN, VMM, ASYNC };
static enum mode mode;
static CUstream stream; /* ASYNC */
static void *driver = RTLD_DEFAULT; /* where the driver's symbols are found */

#define GRAN (2ul << 20)
#define HANDLES_MAX 64

/* A tag's reservation (VMM). */
struct space {
	CUdeviceptr base;
	size_t size, used;
};
static struct space spaces[2]; /* weights, kv_cache */

static struct memctl_api M;
static int fake;

struct buf {
	CUdeviceptr p;
	size_t bytes;
	unsigned seed;
	int freed;
	CUmemGenericAllocationHandle h[HANDLES_MAX]; /* VMM: side by side from p */
	size_t hsize[HANDLES_MAX];
	int nh;
};

static struct buf w[MAXA], kv[MAXA];
static size_t nw, nkv;

#ifdef PROG_DRV_LINKED
static int resolve(void)
{
	drv.init = cuInit;
	drv.device_get = cuDeviceGet;
	drv.ctx_retain = cuDevicePrimaryCtxRetain;
	drv.ctx_set = cuCtxSetCurrent;
	drv.alloc = cuMemAlloc;
	drv.alloc_pitch = cuMemAllocPitch;
	drv.free = cuMemFree;
	drv.reserve = cuMemAddressReserve;
	drv.unreserve = cuMemAddressFree;
	drv.create = cuMemCreate;
	drv.release = cuMemRelease;
	drv.map = cuMemMap;
	drv.unmap = cuMemUnmap;
	drv.access = cuMemSetAccess;
	drv.alloc_async = cuMemAllocAsync;
	drv.free_async = cuMemFreeAsync;
	drv.stream_create = cuStreamCreate;
	drv.stream_sync = cuStreamSynchronize;
	/* Copies the simulated driver lacks: found, not linked. */
	*(void **)&drv.htod = dlsym(RTLD_DEFAULT, "cuMemcpyHtoD_v2");
	*(void **)&drv.dtoh = dlsym(RTLD_DEFAULT, "cuMemcpyDtoH_v2");
	fake = dlsym(RTLD_DEFAULT, "fakecuda_used") != NULL;
	return fake || (drv.htod != NULL && drv.dtoh != NULL) ? 0 : -1;
}
#else
static PFN_cuGetProcAddress_v12000 gpa;

static int lookup(const char *name, void **fn)
{
	CUdriverProcAddressQueryResult st;
	void *found = NULL;

	if (gpa(name, &found, CUDA_AT, CU_GET_PROC_ADDRESS_DEFAULT, &st) != CUDA_SUCCESS ||
	    found == NULL)
		return -1;
	*fn = found;
	return 0;
}

/* The driver's handle, then the lookup (whichever ABI this "runtime"
 * knows), then the lookup again through itself, as the CUDA runtime does. */
static int resolve(void)
{
	const char *env = getenv("PROG_LOOKUP");
	void *h = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);

	if (h == NULL)
		return -1;
	driver = h;
	fake = dlsym(h, "fakecuda_used") != NULL;
	if (env != NULL && strcmp(env, "v1") == 0) {
		PFN_cuGetProcAddress_v11030 v1 =
			(PFN_cuGetProcAddress_v11030)dlsym(h, "cuGetProcAddress");

		if (v1 == NULL || v1("cuGetProcAddress", (void **)&gpa, CUDA_AT, 0) != CUDA_SUCCESS)
			return -1;
	} else {
		gpa = (PFN_cuGetProcAddress_v12000)dlsym(h, "cuGetProcAddress_v2");
		if (gpa == NULL || lookup("cuGetProcAddress", (void **)&gpa) < 0)
			return -1;
	}
	if (lookup("cuInit", (void **)&drv.init) < 0 ||
	    lookup("cuDeviceGet", (void **)&drv.device_get) < 0 ||
	    lookup("cuDevicePrimaryCtxRetain", (void **)&drv.ctx_retain) < 0 ||
	    lookup("cuCtxSetCurrent", (void **)&drv.ctx_set) < 0 ||
	    lookup("cuMemAlloc", (void **)&drv.alloc) < 0 ||
	    lookup("cuMemAllocPitch", (void **)&drv.alloc_pitch) < 0 ||
	    lookup("cuMemFree", (void **)&drv.free) < 0 ||
	    lookup("cuMemAddressReserve", (void **)&drv.reserve) < 0 ||
	    lookup("cuMemAddressFree", (void **)&drv.unreserve) < 0 ||
	    lookup("cuMemCreate", (void **)&drv.create) < 0 ||
	    lookup("cuMemRelease", (void **)&drv.release) < 0 ||
	    lookup("cuMemMap", (void **)&drv.map) < 0 ||
	    lookup("cuMemUnmap", (void **)&drv.unmap) < 0 ||
	    lookup("cuMemSetAccess", (void **)&drv.access) < 0 ||
	    lookup("cuMemAllocAsync", (void **)&drv.alloc_async) < 0 ||
	    lookup("cuMemFreeAsync", (void **)&drv.free_async) < 0 ||
	    lookup("cuStreamCreate", (void **)&drv.stream_create) < 0 ||
	    lookup("cuStreamSynchronize", (void **)&drv.stream_sync) < 0)
		return -1;
	if (!fake && (lookup("cuMemcpyHtoD", (void **)&drv.htod) < 0 ||
		      lookup("cuMemcpyDtoH", (void **)&drv.dtoh) < 0))
		return -1;
	return 0;
}
#endif

static int start(void)
{
	const char *m = getenv("PROG_ALLOC");
	CUdevice dev;
	CUcontext ctx;

	mode = m == NULL || strcmp(m, "plain") == 0 ? PLAIN
	       : strcmp(m, "vmm") == 0 ? VMM : strcmp(m, "async") == 0 ? ASYNC : (enum mode)-1;
	if ((int)mode < 0)
		return -1;
	if (drv.init(0) != CUDA_SUCCESS || drv.device_get(&dev, 0) != CUDA_SUCCESS ||
	    drv.ctx_retain(&ctx, dev) != CUDA_SUCCESS || drv.ctx_set(ctx) != CUDA_SUCCESS)
		return -1;
	if (mode == ASYNC && drv.stream_create(&stream, CU_STREAM_NON_BLOCKING) != CUDA_SUCCESS)
		return -1;
	return 0;
}

static size_t round_up(size_t n)
{
	return (n + GRAN - 1) / GRAN * GRAN;
}

/* As PyTorch grows an expandable segment: handles created and mapped side
 * by side, then access for the whole range in one call. */
static int alloc_vmm(struct buf *b, size_t bytes, struct space *sp)
{
	CUmemAllocationProp prop;
	CUmemAccessDesc acc;
	size_t left = round_up(bytes), off = 0;

	if (sp->used + left > sp->size)
		return -1;
	memset(&prop, 0, sizeof(prop));
	prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
	prop.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
	prop.location.id = 0;
	b->p = sp->base + sp->used;
	b->bytes = bytes;
	/* Handles of one, two and three units side by side, a unit being an
	 * eighth of the buffer (at least the granularity). */
	size_t unit = round_up(left / 8);

	for (b->nh = 0; left > 0 && b->nh < HANDLES_MAX; b->nh++) {
		size_t n = unit * (size_t)(b->nh % 3 + 1);

		n = n < left ? n : left;
		if (drv.create(&b->h[b->nh], n, &prop, 0) != CUDA_SUCCESS ||
		    drv.map(b->p + off, n, 0, b->h[b->nh], 0) != CUDA_SUCCESS)
			return -1;
		b->hsize[b->nh] = n;
		off += n;
		left -= n;
	}
	memset(&acc, 0, sizeof(acc));
	acc.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
	acc.location.id = 0;
	acc.flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
	if (left > 0 || drv.access(b->p, off, &acc, 1) != CUDA_SUCCESS)
		return -1;
	sp->used += off;
	return 0;
}

/* Even buffers: each handle unmapped and released in turn, last first.
 * Odd ones: every handle released while still mapped, then one unmap over
 * all of them. */
static int free_vmm(struct buf *b, int i)
{
	int k, rc = 0;

	if (i % 2 == 0) {
		size_t off = b->bytes ? round_up(b->bytes) : 0;

		for (k = b->nh - 1; k >= 0; k--) {
			off -= b->hsize[k];
			rc |= drv.unmap(b->p + off, b->hsize[k]) != CUDA_SUCCESS;
			rc |= drv.release(b->h[k]) != CUDA_SUCCESS;
		}
		return rc;
	}
	for (k = 0; k < b->nh; k++)
		rc |= drv.release(b->h[k]) != CUDA_SUCCESS;
	return rc | (drv.unmap(b->p, round_up(b->bytes)) != CUDA_SUCCESS);
}

static int free_one(struct buf *b, int i)
{
	int rc;

	if (b->freed)
		return 0;
	b->freed = 1;
	if (mode == VMM)
		return free_vmm(b, i);
	if (mode == PLAIN)
		return drv.free(b->p) != CUDA_SUCCESS;
	rc = drv.free_async(b->p, stream) != CUDA_SUCCESS;
	return rc | (drv.stream_sync(stream) != CUDA_SUCCESS);
}

/* Every third allocation is pitched: rows of an odd width. */
static int alloc_one(struct buf *b, size_t bytes, unsigned seed, int i, struct space *sp)
{
	size_t pitch = 0, width = 4096 + 100, height = bytes / width + 1;

	b->seed = seed;
	if (mode == VMM)
		return alloc_vmm(b, bytes, sp);
	if (mode == ASYNC) {
		b->bytes = bytes;
		if (drv.alloc_async(&b->p, bytes, stream) != CUDA_SUCCESS)
			return -1;
		/* Usable once the allocation has run in stream order. */
		return drv.stream_sync(stream) == CUDA_SUCCESS ? 0 : -1;
	}
	if (i % 3 != 2) {
		b->bytes = bytes;
		return drv.alloc(&b->p, bytes) == CUDA_SUCCESS ? 0 : -1;
	}
	if (drv.alloc_pitch(&b->p, &pitch, width, height, 4) != CUDA_SUCCESS || pitch < width)
		return -1;
	b->bytes = pitch * height;
	return 0;
}

static int put(const struct buf *b)
{
	unsigned char *h;
	int rc;

	if (fake) {
		fill((void *)(uintptr_t)b->p, b->bytes, b->seed);
		return 0;
	}
	h = malloc(b->bytes);
	if (h == NULL)
		return -1;
	fill(h, b->bytes, b->seed);
	rc = drv.htod(b->p, h, b->bytes) == CUDA_SUCCESS ? 0 : -1;
	free(h);
	return rc;
}

/* -1 when every byte is as written, the first wrong index, -2 on error. */
static long get(const struct buf *b)
{
	unsigned char *h;
	long bad = -2;

	if (fake)
		return check((void *)(uintptr_t)b->p, b->bytes, b->seed);
	h = malloc(b->bytes);
	if (h == NULL)
		return -2;
	if (drv.dtoh(h, b->p, b->bytes) == CUDA_SUCCESS)
		bad = check(h, b->bytes, b->seed);
	free(h);
	return bad;
}

/* Released: touching it faults (simulated driver, tried in a child), or
 * a copy from it fails (GPU). */
static const char *probe(const struct buf *b)
{
	unsigned char byte;
	pid_t pid;
	int st;

	if (!fake)
		return drv.dtoh(&byte, b->p, 1) == CUDA_SUCCESS ? "mapped" : "released";
	pid = fork();
	if (pid == 0) {
		(void)*(volatile const char *)(uintptr_t)b->p;
		_exit(0);
	}
	waitpid(pid, &st, 0);
	return WIFSIGNALED(st) ? "released" : "mapped";
}

/* VMM: a reservation per tag, for all its buffers, made outside any region
 * (reservations are not memory). */
static int reserve_spaces(size_t wbytes, size_t kvbytes)
{
	size_t i, n[2] = { 0, 0 };
	int t;

	if (mode != VMM)
		return 0;
	for (i = 0; i < nw; i++)
		n[0] += round_up(wbytes + i * 4097);
	for (i = 0; i < nkv; i++)
		n[1] += round_up(kvbytes + i * 4097);
	for (t = 0; t < 2; t++) {
		spaces[t].size = n[t];
		if (drv.reserve(&spaces[t].base, n[t], 0, 0, 0) != CUDA_SUCCESS)
			return -1;
	}
	return 0;
}

static int allocate(size_t wbytes, size_t kvbytes, int regions)
{
	size_t i;

	if (reserve_spaces(wbytes, kvbytes) < 0)
		return -1;
	if (regions)
		M.region_begin("weights");
	for (i = 0; i < nw; i++)
		if (alloc_one(&w[i], wbytes + i * 4097, (unsigned)getpid() + (unsigned)i, (int)i,
			      &spaces[0]) < 0 ||
		    put(&w[i]) < 0)
			return -1;
	if (regions) {
		M.region_end();
		M.region_begin("kv_cache");
	}
	for (i = 0; i < nkv; i++)
		if (alloc_one(&kv[i], kvbytes + i * 4097, 7u + (unsigned)i, (int)i, &spaces[1]) < 0 ||
		    put(&kv[i]) < 0)
			return -1;
	if (regions)
		M.region_end();
	return 0;
}

static void check_all(void)
{
	long bad = -1;
	size_t i;

	for (i = 0; i < nw && bad < 0; i++)
		if (!w[i].freed && (bad = get(&w[i])) != -1)
			printf("bad weights %zu at %ld\n", i, bad);
	for (i = 0; i < nkv && bad < 0; i++)
		if ((bad = get(&kv[i])) != -1)
			printf("bad kv_cache %zu at %ld\n", i, bad);
	if (bad == -1)
		printf("ok\n");
}

static int quit(void)
{
	int rc = 0, t;
	size_t i;

	for (i = 0; i < nw; i++)
		rc |= free_one(&w[i], (int)i);
	for (i = 0; i < nkv; i++)
		rc |= free_one(&kv[i], (int)i);
	for (t = 0; mode == VMM && t < 2; t++)
		rc |= drv.unreserve(spaces[t].base, spaces[t].size) != CUDA_SUCCESS;
	return rc ? 5 : 0;
}

/* What the simulated driver holds: "<handles> <mappings>" ("- -" on a GPU). */
static void count(void)
{
	long (*handles)(void), (*mappings)(void);

	*(void **)&handles = dlsym(driver, "fakecuda_live_handles");
	*(void **)&mappings = dlsym(driver, "fakecuda_live_mappings");
	if (handles == NULL || mappings == NULL)
		printf("- -\n");
	else
		printf("%ld %ld\n", handles(), mappings());
}

static void command(const char *line)
{
	struct memctl_stat st;
	char tag[64] = "", arg[16] = "";
	int n = sscanf(line, "%*s %63s %15s", tag, arg);

	if (strncmp(line, "check", 5) == 0) {
		check_all();
	} else if (strncmp(line, "probe", 5) == 0) {
		printf("weights=%s kv_cache=%s\n", probe(&w[0]), probe(&kv[0]));
	} else if (strncmp(line, "stat", 4) == 0 && n >= 1) {
		int rc = M.stat(tag, &st);

		printf("%d %llu %llu %llu %llu\n", rc, (unsigned long long)st.allocations,
		       (unsigned long long)st.active_bytes, (unsigned long long)st.paused_bytes,
		       (unsigned long long)st.host_bytes);
	} else if (strncmp(line, "pause", 5) == 0 && n >= 1) {
		printf("%d\n", M.pause(tag, strcmp(arg, "cpu") == 0 ? MEMCTL_STAGE_CPU : 0));
	} else if (strncmp(line, "resume", 6) == 0 && n >= 1) {
		printf("%d\n", M.resume(tag, 0));
	} else if (strncmp(line, "drop", 4) == 0 && n >= 1 && strtoul(tag, NULL, 10) < nw) {
		printf("%d\n", free_one(&w[strtoul(tag, NULL, 10)], (int)strtoul(tag, NULL, 10)));
	} else if (strncmp(line, "count", 5) == 0) {
		count();
	} else {
		printf("unknown command\n");
	}
}

int main(int argc, char **argv)
{
	const char *regions = getenv("PROG_REGIONS"), *wait = getenv("PROG_WAIT");
	char line[128];

	if (argc != 5 || memctl_api_load(&M) < 0) {
		fprintf(stderr, "usage: prog_drv NW WBYTES NKV KVBYTES, under LD_PRELOAD\n");
		return 2;
	}
	nw = strtoul(argv[1], NULL, 10);
	nkv = strtoul(argv[3], NULL, 10);
	if (nw > MAXA || nkv > MAXA || nw == 0 || nkv == 0)
		return 2;
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (resolve() < 0 || start() < 0) {
		fprintf(stderr, "prog_drv: the driver could not be resolved or started\n");
		return 3;
	}
	if (wait != NULL && strcmp(wait, "1") == 0) {
		printf("resolved\n");
		if (fgets(line, sizeof(line), stdin) == NULL || strncmp(line, "alloc", 5) != 0)
			return 0;
	}
	if (allocate(strtoul(argv[2], NULL, 10), strtoul(argv[4], NULL, 10),
		     regions == NULL || strcmp(regions, "0") != 0) < 0) {
		fprintf(stderr, "prog_drv: allocation failed\n");
		return 4;
	}
	printf("ready %d\n", (int)getpid());
	while (fgets(line, sizeof(line), stdin) != NULL) {
		if (strncmp(line, "quit", 4) == 0)
			return quit();
		command(line);
	}
	return 0;
}
