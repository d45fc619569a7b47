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
 * Device memory is read and written with cuMemcpyHtoD/DtoH on a GPU and
 * directly on the simulated driver.
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
} D;

static struct memctl_api M;
static int fake;

struct buf {
	CUdeviceptr p;
	size_t bytes;
	unsigned seed;
};

static struct buf w[MAXA], kv[MAXA];
static size_t nw, nkv;

#ifdef PROG_DRV_LINKED
static int resolve(void)
{
	D.init = cuInit;
	D.device_get = cuDeviceGet;
	D.ctx_retain = cuDevicePrimaryCtxRetain;
	D.ctx_set = cuCtxSetCurrent;
	D.alloc = cuMemAlloc;
	D.alloc_pitch = cuMemAllocPitch;
	D.free = cuMemFree;
	/* Copies the simulated driver lacks: found, not linked. */
	*(void **)&D.htod = dlsym(RTLD_DEFAULT, "cuMemcpyHtoD_v2");
	*(void **)&D.dtoh = dlsym(RTLD_DEFAULT, "cuMemcpyDtoH_v2");
	fake = dlsym(RTLD_DEFAULT, "fakecuda_used") != NULL;
	return fake || (D.htod != NULL && D.dtoh != NULL) ? 0 : -1;
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
	if (lookup("cuInit", (void **)&D.init) < 0 ||
	    lookup("cuDeviceGet", (void **)&D.device_get) < 0 ||
	    lookup("cuDevicePrimaryCtxRetain", (void **)&D.ctx_retain) < 0 ||
	    lookup("cuCtxSetCurrent", (void **)&D.ctx_set) < 0 ||
	    lookup("cuMemAlloc", (void **)&D.alloc) < 0 ||
	    lookup("cuMemAllocPitch", (void **)&D.alloc_pitch) < 0 ||
	    lookup("cuMemFree", (void **)&D.free) < 0)
		return -1;
	if (!fake && (lookup("cuMemcpyHtoD", (void **)&D.htod) < 0 ||
		      lookup("cuMemcpyDtoH", (void **)&D.dtoh) < 0))
		return -1;
	return 0;
}
#endif

static int start(void)
{
	CUdevice dev;
	CUcontext ctx;

	if (D.init(0) != CUDA_SUCCESS || D.device_get(&dev, 0) != CUDA_SUCCESS ||
	    D.ctx_retain(&ctx, dev) != CUDA_SUCCESS || D.ctx_set(ctx) != CUDA_SUCCESS)
		return -1;
	return 0;
}

/* Every third allocation is pitched: rows of an odd width. */
static int alloc_one(struct buf *b, size_t bytes, unsigned seed, int i)
{
	size_t pitch = 0, width = 4096 + 100, height = bytes / width + 1;

	b->seed = seed;
	if (i % 3 != 2) {
		b->bytes = bytes;
		return D.alloc(&b->p, bytes) == CUDA_SUCCESS ? 0 : -1;
	}
	if (D.alloc_pitch(&b->p, &pitch, width, height, 4) != CUDA_SUCCESS || pitch < width)
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
	rc = D.htod(b->p, h, b->bytes) == CUDA_SUCCESS ? 0 : -1;
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
	if (D.dtoh(h, b->p, b->bytes) == CUDA_SUCCESS)
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
		return D.dtoh(&byte, b->p, 1) == CUDA_SUCCESS ? "mapped" : "released";
	pid = fork();
	if (pid == 0) {
		(void)*(volatile const char *)(uintptr_t)b->p;
		_exit(0);
	}
	waitpid(pid, &st, 0);
	return WIFSIGNALED(st) ? "released" : "mapped";
}

static int allocate(size_t wbytes, size_t kvbytes, int regions)
{
	size_t i;

	if (regions)
		M.region_begin("weights");
	for (i = 0; i < nw; i++)
		if (alloc_one(&w[i], wbytes + i * 4097, (unsigned)getpid() + (unsigned)i, (int)i) < 0 ||
		    put(&w[i]) < 0)
			return -1;
	if (regions) {
		M.region_end();
		M.region_begin("kv_cache");
	}
	for (i = 0; i < nkv; i++)
		if (alloc_one(&kv[i], kvbytes + i * 4097, 7u + (unsigned)i, (int)i) < 0 ||
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
		if ((bad = get(&w[i])) != -1)
			printf("bad weights %zu at %ld\n", i, bad);
	for (i = 0; i < nkv && bad < 0; i++)
		if ((bad = get(&kv[i])) != -1)
			printf("bad kv_cache %zu at %ld\n", i, bad);
	if (bad == -1)
		printf("ok\n");
}

static int quit(void)
{
	int rc = 0;
	size_t i;

	for (i = 0; i < nw; i++)
		rc |= D.free(w[i].p) != CUDA_SUCCESS;
	for (i = 0; i < nkv; i++)
		rc |= D.free(kv[i].p) != CUDA_SUCCESS;
	return rc ? 5 : 0;
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
