// SPDX-License-Identifier: Apache-2.0
//
// bench.cu - memctl against the limits of the machine it runs on, all
// measured in the same run: pinned copy bandwidth each way and both ways,
// the raw driver calls (reserve+create+map+access, unmap+release,
// cuMemAlloc, cuGetProcAddress), and the real cudaMalloc. Every memctl
// figure is printed beside its limit as a ratio. Run under
// LD_PRELOAD=libmemctl.so (make bench does). Last, 16 GiB mapped by the
// application itself as PyTorch's expandable segments map it.
//
// usage: bench [GiB,GiB,...] [count,count,...]   (default 1,16,64 16,64,256,4096)
#include <cuda.h>
#include <cuda_runtime.h>
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <vector>
#include <algorithm>

#include "memctl.h"
#include "pattern.cuh"
#include "e2e.h"
#include "e2e_driver.h"

#define CHECK(x) do { cudaError_t e_ = (x); if (e_ != cudaSuccess) { \
	fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(e_)); \
	exit(1); } } while (0)
#define CU(x) do { CUresult r_ = (x); if (r_ != CUDA_SUCCESS) { \
	fprintf(stderr, "%s:%d %s: error %d\n", __FILE__, __LINE__, #x, (int)r_); \
	exit(1); } } while (0)

static const double GiB = 1073741824.0;
// ", slab 64M" in every row's name when MEMCTL_SLAB is set.
static char slab_note[64];

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

// ---- the driver, directly ----
static struct {
	decltype(&cuMemAddressReserve) reserve;
	decltype(&cuMemAddressFree) unreserve;
	decltype(&cuMemCreate) create;
	decltype(&cuMemRelease) release;
	decltype(&cuMemMap) map;
	decltype(&cuMemUnmap) unmap;
	decltype(&cuMemSetAccess) access;
	decltype(&cuMemGetInfo_v2) meminfo;
} D;

// ---- memctl, found in the preloaded library (test/e2e/e2e.h) ----
static struct memctl_api M;

static cudaError_t (*real_malloc)(void **, size_t);
static cudaError_t (*real_free)(void *);

static void load(void)
{
	void *cu = dlopen("libcuda.so.1", RTLD_NOW);
	void *rt = dlopen("libcudart.so.13", RTLD_NOW | RTLD_NOLOAD);

	// The driver's own functions: glibc's dlsym, which memctl's driver
	// layer does not redirect (test/e2e/e2e_driver.h).
	*(void **)&D.reserve = raw_dlsym(cu, "cuMemAddressReserve");
	*(void **)&D.unreserve = raw_dlsym(cu, "cuMemAddressFree");
	*(void **)&D.create = raw_dlsym(cu, "cuMemCreate");
	*(void **)&D.release = raw_dlsym(cu, "cuMemRelease");
	*(void **)&D.map = raw_dlsym(cu, "cuMemMap");
	*(void **)&D.unmap = raw_dlsym(cu, "cuMemUnmap");
	*(void **)&D.access = raw_dlsym(cu, "cuMemSetAccess");
	*(void **)&D.meminfo = raw_dlsym(cu, "cuMemGetInfo_v2");
	// The runtime's own cudaMalloc, bypassing the interposer.
	*(void **)&real_malloc = rt ? dlsym(rt, "cudaMalloc") : NULL;
	*(void **)&real_free = rt ? dlsym(rt, "cudaFree") : NULL;
	if (memctl_api_load(&M) < 0 || !D.create || !real_malloc) {
		fprintf(stderr, "bench: run under LD_PRELOAD=libmemctl.so with the shared runtime\n");
		exit(2);
	}
}

static void must(int rc, const char *what)
{
	if (rc != 0) {
		fprintf(stderr, "bench: %s: %s\n", what, M.strerror(rc));
		exit(1);
	}
}

static long rss_kib(void)
{
	char line[256];
	long v = -1;
	FILE *f = fopen("/proc/self/status", "r");

	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "VmRSS: %ld kB", &v) == 1)
			break;
	if (f)
		fclose(f);
	return v;
}


// ---- the table ----
struct row {
	char figure[96];
	char value[32];
	char limit[40];
	double ratio;
	char target[24];
	int pass; // -1: no target
};
static std::vector<row> rows;

static void add(const char *figure, const char *value, const char *limit, double ratio,
		const char *target, int pass)
{
	row r;

	snprintf(r.figure, sizeof(r.figure), "%s", figure);
	snprintf(r.value, sizeof(r.value), "%s", value);
	snprintf(r.limit, sizeof(r.limit), "%s", limit);
	r.ratio = ratio;
	snprintf(r.target, sizeof(r.target), "%s", target);
	r.pass = pass;
	rows.push_back(r);
	printf("  %-52s %-14s %-22s %6.3f %s\n", figure, value, limit, ratio, target);
	fflush(stdout);
}

// ---- limits ----
static double lim_d2h, lim_h2d, lim_both;

static double copy_bw(void *host, char *dev, size_t bytes, int d2h, int nstreams, size_t chunk)
{
	cudaStream_t s[8];
	double t0, best = 0;
	int k, rep;

	for (k = 0; k < nstreams; k++)
		CHECK(cudaStreamCreateWithFlags(&s[k], cudaStreamNonBlocking));
	for (rep = 0; rep < 4; rep++) {
		size_t off;
		int turn = 0;

		CHECK(cudaDeviceSynchronize());
		t0 = now();
		for (off = 0; off < bytes; off += chunk) {
			size_t len = std::min(chunk, bytes - off);

			if (d2h)
				CHECK(cudaMemcpyAsync((char *)host + off, dev + off, len,
						      cudaMemcpyDeviceToHost, s[turn++ % nstreams]));
			else
				CHECK(cudaMemcpyAsync(dev + off, (char *)host + off, len,
						      cudaMemcpyHostToDevice, s[turn++ % nstreams]));
		}
		for (k = 0; k < nstreams; k++)
			CHECK(cudaStreamSynchronize(s[k]));
		if (rep > 0) // the first is warm-up
			best = std::max(best, bytes / GiB / (now() - t0));
	}
	for (k = 0; k < nstreams; k++)
		CHECK(cudaStreamDestroy(s[k]));
	return best;
}

static void limits(void)
{
	const size_t bytes = 4ull << 30;
	char *dev;
	void *host = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	cudaStream_t a, b;
	double t0, t;

	memset(host, 1, bytes);
	CHECK(cudaHostRegister(host, bytes, cudaHostRegisterPortable));
	CHECK(real_malloc((void **)&dev, bytes));
	lim_d2h = std::max(copy_bw(host, dev, bytes, 1, 1, bytes),
			   copy_bw(host, dev, bytes, 1, 4, 64ull << 20));
	lim_h2d = std::max(copy_bw(host, dev, bytes, 0, 1, bytes),
			   copy_bw(host, dev, bytes, 0, 4, 64ull << 20));
	CHECK(cudaStreamCreateWithFlags(&a, cudaStreamNonBlocking));
	CHECK(cudaStreamCreateWithFlags(&b, cudaStreamNonBlocking));
	lim_both = 0;
	for (int rep = 0; rep < 3; rep++) {
		t0 = now();
		CHECK(cudaMemcpyAsync(host, dev, bytes / 2, cudaMemcpyDeviceToHost, a));
		CHECK(cudaMemcpyAsync(dev + bytes / 2, (char *)host + bytes / 2, bytes / 2,
				      cudaMemcpyHostToDevice, b));
		CHECK(cudaStreamSynchronize(a));
		CHECK(cudaStreamSynchronize(b));
		t = now() - t0;
		lim_both = std::max(lim_both, bytes / GiB / t);
	}
	CHECK(real_free(dev));
	CHECK(cudaHostUnregister(host));
	munmap(host, bytes);
	printf("limits: pinned D2H %.1f GiB/s, H2D %.1f GiB/s, both ways at once %.1f GiB/s\n",
	       lim_d2h, lim_h2d, lim_both);
}

// cudaMalloc/cudaFree outside regions: through memctl vs the runtime's own.
// Mean time of one cudaMalloc(size) + cudaFree pair over `n`, through fn.
static double pair_time(cudaError_t (*m)(void **, size_t), cudaError_t (*f)(void *),
			size_t size, std::vector<void *> &p, int n)
{
	double t0 = now();

	for (int i = 0; i < n; i++)
		CHECK(m(&p[i], size));
	for (int i = 0; i < n; i++)
		CHECK(f(p[i]));
	return (now() - t0) / (2.0 * n);
}

// cudaMalloc/cudaFree outside regions: through memctl against the
// runtime's own functions, in alternating blocks (medians of 21 each), so
// that drift of the driver affects both alike.
static void passthrough(void)
{
	const int n = 100, reps = 21;
	std::vector<void *> p(n);
	const size_t sizes[2] = { 0, 1 << 20 };
	char v[32], l[40], name[96];

	for (int k = 0; k < 2; k++) {
		double through[reps], direct[reps], added;

		for (int rep = 0; rep < reps; rep++) {
			through[rep] = pair_time(cudaMalloc, cudaFree, sizes[k], p, n);
			direct[rep] = pair_time(real_malloc, real_free, sizes[k], p, n);
		}
		std::sort(through, through + reps);
		std::sort(direct, direct + reps);
		added = (through[reps / 2] - direct[reps / 2]) * 1e6;
		snprintf(name, sizeof(name), "cudaMalloc(%s)/cudaFree outside regions, added/call",
			 k ? "1 MiB" : "0");
		snprintf(v, sizeof(v), "%+.3f us", added);
		snprintf(l, sizeof(l), "%.3f us/call raw", direct[reps / 2] * 1e6);
		add(name, v, l, through[reps / 2] / direct[reps / 2], "<= +1 us", added <= 1.0);
	}
}

// The driver layer, untagged: cuMemAlloc_v2/cuMemFree_v2 and
// cuGetProcAddress_v2 as a caller gets them now (dlsym on the driver's
// handle: memctl's wrappers) against the driver's own functions (glibc's
// dlsym, which memctl does not redirect), alternating blocks, medians of 21.
struct drv_fns {
	decltype(&cuMemAlloc_v2) alloc;
	decltype(&cuMemFree_v2) free;
	decltype(&cuGetProcAddress_v2) lookup;
};

static double drv_pair_time(const drv_fns &d, size_t size, std::vector<CUdeviceptr> &p, int n)
{
	double t0 = now();

	for (int i = 0; i < n; i++)
		CU(d.alloc(&p[i], size));
	for (int i = 0; i < n; i++)
		CU(d.free(p[i]));
	return (now() - t0) / (2.0 * n);
}

static double lookup_time(const drv_fns &d, const char *name, int n)
{
	CUdriverProcAddressQueryResult st;
	void *fn;
	double t0 = now();

	for (int i = 0; i < n; i++)
		CU(d.lookup(name, &fn, 12000, CU_GET_PROC_ADDRESS_DEFAULT, &st));
	return (now() - t0) / n;
}

static void added_row(const char *name, double *through, double *direct, int reps)
{
	char v[32], l[40];
	double added;

	std::sort(through, through + reps);
	std::sort(direct, direct + reps);
	added = (through[reps / 2] - direct[reps / 2]) * 1e6;
	snprintf(v, sizeof(v), "%+.3f us", added);
	snprintf(l, sizeof(l), "%.3f us/call raw", direct[reps / 2] * 1e6);
	add(name, v, l, through[reps / 2] / direct[reps / 2], "<= +1 us", added <= 1.0);
}

static void driver_passthrough(void)
{
	const int n = 100, lookups = 1000, reps = 21;
	void *cu = dlopen("libcuda.so.1", RTLD_NOW | RTLD_NOLOAD);
	std::vector<CUdeviceptr> p(n);
	drv_fns via = {}, raw = {};
	double through[reps], direct[reps];
	// Wrapped by memctl, and not (answered by the driver, then looked up).
	const char *names[2] = { "cuMemAlloc", "cuDeviceGetAttribute" };
	char name[96];

	*(void **)&via.alloc = dlsym(cu, "cuMemAlloc_v2");
	*(void **)&via.free = dlsym(cu, "cuMemFree_v2");
	*(void **)&via.lookup = dlsym(cu, "cuGetProcAddress_v2");
	*(void **)&raw.alloc = raw_dlsym(cu, "cuMemAlloc_v2");
	*(void **)&raw.free = raw_dlsym(cu, "cuMemFree_v2");
	*(void **)&raw.lookup = raw_dlsym(cu, "cuGetProcAddress_v2");
	if (!via.alloc || !raw.alloc || !raw.free || !raw.lookup ||
	    (void *)via.alloc == (void *)raw.alloc) {
		printf("  driver layer rows skipped: memctl's or the driver's functions not found\n");
		return;
	}
	for (int rep = 0; rep < reps; rep++) {
		through[rep] = drv_pair_time(via, 1 << 20, p, n);
		direct[rep] = drv_pair_time(raw, 1 << 20, p, n);
	}
	added_row("cuMemAlloc(1 MiB)/cuMemFree outside regions, added/call", through, direct, reps);
	for (int k = 0; k < 2; k++) {
		for (int rep = 0; rep < reps; rep++) {
			through[rep] = lookup_time(via, names[k], lookups);
			direct[rep] = lookup_time(raw, names[k], lookups);
		}
		snprintf(name, sizeof(name), "cuGetProcAddress(\"%s\") (%s), added/call", names[k],
			 k ? "passed through" : "wrapped");
		added_row(name, through, direct, reps);
	}
}

// The gate (issue 11): a launch through memctl's cuLaunchKernel (dlsym on
// the driver's handle gives memctl's; every runtime reaches it the same way)
// while nothing is paused, against the driver's own, alternating blocks of
// back-to-back launches of an empty kernel, medians of 21.
__global__ void empty_kernel(void) {}

static double launch_time(decltype(&cuLaunchKernel) launch, CUfunction f, int n)
{
	double t0 = now();

	for (int i = 0; i < n; i++)
		CU(launch(f, 1, 1, 1, 32, 1, 1, 0, NULL, NULL, NULL));
	double t = (now() - t0) / n;
	CHECK(cudaDeviceSynchronize());
	return t;
}

static void gate_rows(void)
{
	const int n = 1000, reps = 21;
	void *cu = dlopen("libcuda.so.1", RTLD_NOW | RTLD_NOLOAD);
	decltype(&cuLaunchKernel) via, raw;
	double through[reps], direct[reps];
	cudaFunction_t fn;

	*(void **)&via = dlsym(cu, "cuLaunchKernel");
	*(void **)&raw = raw_dlsym(cu, "cuLaunchKernel");
	if (via == NULL || raw == NULL || (void *)via == (void *)raw ||
	    cudaGetFuncBySymbol(&fn, (const void *)empty_kernel) != cudaSuccess) {
		printf("  gate row skipped: memctl's or the driver's cuLaunchKernel not found\n");
		return;
	}
	(void)launch_time(raw, (CUfunction)fn, n); // warm both up
	(void)launch_time(via, (CUfunction)fn, n);
	for (int rep = 0; rep < reps; rep++) {
		through[rep] = launch_time(via, (CUfunction)fn, n);
		direct[rep] = launch_time(raw, (CUfunction)fn, n);
	}
	std::sort(through, through + reps);
	std::sort(direct, direct + reps);
	double added = (through[reps / 2] - direct[reps / 2]) * 1e6;
	char v[32], l[40];
	snprintf(v, sizeof(v), "%+.3f us", added);
	snprintf(l, sizeof(l), "%.3f us/launch raw", direct[reps / 2] * 1e6);
	add("cuLaunchKernel through the gate, nothing paused, added/launch", v, l,
	    through[reps / 2] / direct[reps / 2], "<= +0.1 us", added <= 0.1);
}

static unsigned long long *bad_dev;

// The raw driver sequence on allocations of the same shape as memctl's,
// measured interleaved with memctl's own calls so that both meet the
// driver in the same state (a create right after a release waits for the
// driver to scrub what was released; at a few milliseconds that state
// matters more than anything either side does).
struct raw_set {
	int count;
	size_t size, mapped;
	CUmemAllocationProp prop;
	CUmemAccessDesc acc;
	std::vector<CUdeviceptr> va;
	std::vector<CUmemGenericAllocationHandle> h;
};

static void raw_init(raw_set &r, int count, size_t size)
{
	size_t gran = 2u << 20;

	r.count = count;
	r.size = size;
	r.mapped = (size + gran - 1) / gran * gran;
	r.va.assign(count, 0);
	r.h.assign(count, 0);
	memset(&r.prop, 0, sizeof(r.prop));
	r.prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
	r.prop.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
	r.prop.location.id = 0;
	memset(&r.acc, 0, sizeof(r.acc));
	r.acc.location = r.prop.location;
	r.acc.flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
}

static void raw_reserve(raw_set &r)
{
	for (int i = 0; i < r.count; i++)
		CU(D.reserve(&r.va[i], r.mapped, 2u << 20, 0, 0));
}

static void raw_unreserve(raw_set &r)
{
	for (int i = 0; i < r.count; i++)
		CU(D.unreserve(r.va[i], r.mapped));
}

static double raw_create_map(raw_set &r)
{
	double t0 = now();

	for (int i = 0; i < r.count; i++) {
		CU(D.create(&r.h[i], r.mapped, &r.prop, 0));
		CU(D.map(r.va[i], r.mapped, 0, r.h[i], 0));
		CU(D.access(r.va[i], r.mapped, &r.acc, 1));
	}
	return now() - t0;
}

static double raw_unmap_release(raw_set &r)
{
	double t0 = now();

	for (int i = 0; i < r.count; i++) {
		CU(D.unmap(r.va[i], r.mapped));
		CU(D.release(r.h[i]));
	}
	return now() - t0;
}

static double median3(double *v)
{
	std::sort(v, v + 3);
	return v[1];
}

static void fill_all(std::vector<void *> &p, size_t size, unsigned seed)
{
	for (size_t i = 0; i < p.size(); i++)
		pattern_fill<<<264, 512>>>((unsigned *)p[i], size / 4, seed + (unsigned)i);
	CHECK(cudaDeviceSynchronize());
}

static unsigned long long verify_all(std::vector<void *> &p, size_t size, unsigned seed)
{
	unsigned long long bad = 0;

	CHECK(cudaMemset(bad_dev, 0, sizeof(*bad_dev)));
	for (size_t i = 0; i < p.size(); i++)
		pattern_verify<<<264, 512>>>((unsigned *)p[i], size / 4, seed + (unsigned)i, bad_dev);
	CHECK(cudaMemcpy(&bad, bad_dev, sizeof(bad), cudaMemcpyDeviceToHost));
	return bad;
}

static int wrong_bytes_total;

static void check_contents(std::vector<void *> &p, size_t size, unsigned seed, const char *when)
{
	unsigned long long bad = verify_all(p, size, seed);

	if (bad) {
		printf("  CONTENTS WRONG after %s: %llu words\n", when, bad);
		wrong_bytes_total++;
	}
}

static double timed(int (*fn)(const char *, unsigned), const char *tag, unsigned flags,
		    const char *what)
{
	double t0 = now();

	must(fn(tag, flags), what);
	return now() - t0;
}

static void scenario(double gib, int count)
{
	size_t total = (size_t)(gib * GiB), size = total / count / 4096 * 4096;
	size_t gran = 2u << 20, mapped = (size + gran - 1) / gran * gran;
	double staged = (double)size * count / GiB, t, t0;
	std::vector<void *> p(count);
	struct memctl_stat st;
	char name[96], v[32], l[40];
	long rss0, rss_paused, rss_kept, rss_after;
	double tm[3], tr[3], up[5], ur[5], rc[5], ru[5];
	double raw_unmap, raw_map;
	raw_set raw;

	printf("\n%.0f GiB in %d allocations of %.1f MiB (mapped %.2f GiB)\n", gib, count,
	       size / 1048576.0, (double)mapped * count / GiB);
	rss0 = rss_kib();
	raw_init(raw, count, size);

	// Tagged cudaMalloc against reserve+create+map+access, three rounds
	// each, alternating; the last memctl round's allocations are kept.
	for (int r = 0; r < 3; r++) {
		t0 = now();
		raw_reserve(raw);
		raw_create_map(raw);
		tr[r] = now() - t0;
		raw_unmap_release(raw);
		raw_unreserve(raw);
		t0 = now();
		must(M.region_begin("bench"), "region");
		for (int i = 0; i < count; i++)
			CHECK(cudaMalloc(&p[i], size));
		must(M.region_end(), "region end");
		tm[r] = now() - t0;
		if (r < 2)
			for (int i = 0; i < count; i++)
				CHECK(cudaFree(p[i]));
	}
	t = median3(tm);
	snprintf(name, sizeof(name), "[%gG/%d%s] tagged cudaMalloc, per call", gib, count, slab_note);
	snprintf(v, sizeof(v), "%.1f us", t / count * 1e6);
	snprintf(l, sizeof(l), "%.1f us raw sequence", median3(tr) / count * 1e6);
	add(name, v, l, t / median3(tr), "<= 1.20", t / median3(tr) <= 1.20);

	// Unstaged pause and resume against unmap+release and create+map+access
	// of a raw set of the same shape, interleaved: memctl pauses, the raw
	// set takes the memory and gives it back, memctl resumes.
	fill_all(p, size, 5);
	raw_reserve(raw);
	for (int rep = 0; rep < 5; rep++) {
		up[rep] = timed(M.pause, "bench", 0, "unstaged pause");
		rc[rep] = raw_create_map(raw);
		for (int i = 0; i < count; i++) // written pages, as memctl's are
			pattern_fill<<<264, 512>>>((unsigned *)raw.va[i], size / 4, 1);
		CHECK(cudaDeviceSynchronize());
		ru[rep] = raw_unmap_release(raw);
		ur[rep] = timed(M.resume, "bench", 0, "unstaged resume");
		fill_all(p, size, 5);
	}
	raw_unreserve(raw);
	std::sort(up, up + 5);
	std::sort(ur, ur + 5);
	std::sort(rc, rc + 5);
	std::sort(ru, ru + 5);
	raw_unmap = ru[2];
	raw_map = rc[2];
	snprintf(name, sizeof(name), "[%gG/%d%s] unstaged pause (sync+unmap+release)", gib, count, slab_note);
	snprintf(v, sizeof(v), "%.2f ms", up[2] * 1e3);
	snprintf(l, sizeof(l), "%.2f ms raw unmap+release", raw_unmap * 1e3);
	add(name, v, l, up[2] / raw_unmap, "<= 1.10", up[2] / raw_unmap <= 1.10);
	snprintf(name, sizeof(name), "[%gG/%d%s] unstaged resume (create+map+access)", gib, count, slab_note);
	snprintf(v, sizeof(v), "%.2f ms", ur[2] * 1e3);
	snprintf(l, sizeof(l), "%.2f ms raw", raw_map * 1e3);
	add(name, v, l, ur[2] / raw_map, "<= 1.10", ur[2] / raw_map <= 1.10);
	fill_all(p, size, 11);

	// First staged pause: host buffers obtained and pinned on the way.
	t = timed(M.pause, "bench", MEMCTL_STAGE_CPU, "pause 1");
	snprintf(name, sizeof(name), "[%gG/%d%s] staged pause, first (nothing prepared)", gib, count, slab_note);
	snprintf(v, sizeof(v), "%.2f GiB/s", staged / t);
	snprintf(l, sizeof(l), "D2H %.1f; tms 1.4 GiB/s", lim_d2h);
	add(name, v, l, staged / t / lim_d2h, "report", -1);
	t = timed(M.resume, "bench", 0, "resume 1");
	check_contents(p, size, 11, "resume 1");
	snprintf(name, sizeof(name), "[%gG/%d%s] staged resume, first", gib, count, slab_note);
	snprintf(v, sizeof(v), "%.2f GiB/s", staged / t);
	snprintf(l, sizeof(l), "H2D %.1f GiB/s", lim_h2d);
	add(name, v, l, staged / t / lim_h2d, "report", -1);

	// Second cycle: buffers held, gated as the CLI pauses (the gate closes,
	// the devices drain, then the copies run).
	fill_all(p, size, 23);
	t = timed(M.pause, "bench", MEMCTL_STAGE_CPU | MEMCTL_GATE, "pause 2");
	rss_paused = rss_kib();
	must(M.stat("bench", &st), "stat");
	snprintf(name, sizeof(name), "[%gG/%d%s] staged pause, buffers held, gated", gib, count, slab_note);
	snprintf(v, sizeof(v), "%.2f GiB/s", staged / t);
	snprintf(l, sizeof(l), "D2H %.1f, bound %.1f GiB/s", lim_d2h,
		 staged / std::max(staged / lim_d2h, raw_unmap));
	add(name, v, l, staged / t / lim_d2h, ">= 0.90", staged / t / lim_d2h >= 0.90);
	t = timed(M.resume, "bench", 0, "resume 2");
	check_contents(p, size, 23, "resume 2");
	rss_kept = rss_kib();
	snprintf(name, sizeof(name), "[%gG/%d%s] staged resume, buffers held", gib, count, slab_note);
	snprintf(v, sizeof(v), "%.2f GiB/s", staged / t);
	snprintf(l, sizeof(l), "H2D %.1f, bound %.1f GiB/s", lim_h2d,
		 staged / std::max(staged / lim_h2d, raw_map));
	add(name, v, l, staged / t / lim_h2d, ">= 0.90", staged / t / lim_h2d >= 0.90);

	// Prepared ahead: the first pause after memctl_prepare.
	fill_all(p, size, 37);
	must(M.release_host("bench"), "release_host");
	t0 = now();
	must(M.prepare("bench"), "prepare");
	t = now() - t0;
	printf("  prepare (populate + pin %.2f GiB): %.2f s (%.2f s/GiB)\n", staged, t, t / staged);
	t = timed(M.pause, "bench", MEMCTL_STAGE_CPU, "pause 3");
	snprintf(name, sizeof(name), "[%gG/%d%s] staged pause, first after prepare", gib, count, slab_note);
	snprintf(v, sizeof(v), "%.2f GiB/s", staged / t);
	snprintf(l, sizeof(l), "D2H %.1f GiB/s", lim_d2h);
	add(name, v, l, staged / t / lim_d2h, ">= 0.80", staged / t / lim_d2h >= 0.80);
	must(M.resume("bench", MEMCTL_RELEASE_HOST), "resume 3");
	check_contents(p, size, 37, "resume 3");
	rss_after = rss_kib();
	printf("  host memory: RSS %.2f GiB before, %.2f paused (staged %.2f GiB pinned), "
	       "%.2f after resume (buffers kept), %.2f after release\n",
	       rss0 / 1048576.0, rss_paused / 1048576.0, st.staged_bytes / GiB,
	       rss_kept / 1048576.0, rss_after / 1048576.0);
	for (int i = 0; i < count; i++)
		CHECK(cudaFree(p[i]));
}

// PyTorch's expandable segments: the application creates handles itself
// (through memctl's cuMemCreate, as its driver lookup finds it) inside a
// region, maps them side by side in one reservation of its own and grants
// access over all of them in one call. 16 GiB in handles of 2 MiB to
// 1 GiB, staged pause and resume against the copy limits of this run.
struct app_fns {
	decltype(&cuMemCreate) create;
	decltype(&cuMemRelease) release;
	decltype(&cuMemMap) map;
	decltype(&cuMemUnmap) unmap;
	decltype(&cuMemSetAccess) access;
};

static void app_fill(std::vector<CUdeviceptr> &at, std::vector<size_t> &len, unsigned seed)
{
	for (size_t i = 0; i < at.size(); i++)
		pattern_fill<<<264, 512>>>((unsigned *)at[i], len[i] / 4, seed + (unsigned)i);
	CHECK(cudaDeviceSynchronize());
}

static void app_check(std::vector<CUdeviceptr> &at, std::vector<size_t> &len, unsigned seed,
		      const char *when)
{
	unsigned long long bad = 0;

	CHECK(cudaMemset(bad_dev, 0, sizeof(*bad_dev)));
	for (size_t i = 0; i < at.size(); i++)
		pattern_verify<<<264, 512>>>((unsigned *)at[i], len[i] / 4, seed + (unsigned)i,
					     bad_dev);
	CHECK(cudaMemcpy(&bad, bad_dev, sizeof(bad), cudaMemcpyDeviceToHost));
	if (bad) {
		printf("  CONTENTS WRONG after %s: %llu words\n", when, bad);
		wrong_bytes_total++;
	}
}

// The application's segments: handles, where each is mapped, their sizes.
struct app_segments {
	std::vector<CUmemGenericAllocationHandle> h;
	std::vector<CUdeviceptr> at;
	std::vector<size_t> len;
	CUdeviceptr base;
	size_t total;
};

// 16 GiB: 12 x 1 GiB, 6 x 512 MiB, 40 x 20 MiB, 112 x 2 MiB, created in a
// region, mapped side by side, access granted over all in one call.
static void app_segments_make(const app_fns &A, app_segments &g)
{
	static const struct { int n; size_t mib; } mix[] = {
		{ 12, 1024 }, { 6, 512 }, { 40, 20 }, { 112, 2 }
	};
	CUmemAllocationProp prop;
	CUmemAccessDesc acc;
	size_t off = 0;

	memset(&prop, 0, sizeof(prop));
	prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
	prop.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
	prop.location.id = 0;
	prop.requestedHandleTypes = CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR; // as PyTorch asks
	acc.location = prop.location;
	acc.flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
	g.total = 0;
	for (auto &m : mix)
		g.total += (size_t)m.n * m.mib << 20;
	CU(D.reserve(&g.base, g.total + (64u << 20), 0, 0, 0));
	must(M.region_begin("segments"), "region");
	for (auto &m : mix)
		for (int i = 0; i < m.n; i++) {
			CUmemGenericAllocationHandle x;

			CU(A.create(&x, m.mib << 20, &prop, 0));
			g.h.push_back(x);
			g.len.push_back(m.mib << 20);
		}
	must(M.region_end(), "region end");
	for (size_t i = 0; i < g.h.size(); i++) {
		CU(A.map(g.base + off, g.len[i], 0, g.h[i], 0));
		g.at.push_back(g.base + off);
		off += g.len[i];
	}
	CU(A.access(g.base, g.total, &acc, 1));
}

// A staged pause and resume of the segments; rows with a target when the
// host buffers are held from an earlier cycle, reported otherwise.
static void app_segments_cycle(app_segments &g, unsigned seed, int held)
{
	double staged = g.total / GiB, t;
	char name[96], v[32], l[48];

	app_fill(g.at, g.len, seed);
	t = timed(M.pause, "segments", MEMCTL_STAGE_CPU, "segments pause");
	snprintf(name, sizeof(name), "[16G app-mapped/170] staged pause, %s",
		 held ? "buffers held" : "first (nothing prepared)");
	snprintf(v, sizeof(v), "%.2f GiB/s", staged / t);
	snprintf(l, sizeof(l), "D2H %.1f GiB/s", lim_d2h);
	add(name, v, l, staged / t / lim_d2h, held ? ">= 0.90" : "report",
	    held ? staged / t / lim_d2h >= 0.90 : -1);
	t = timed(M.resume, "segments", 0, "segments resume");
	app_check(g.at, g.len, seed, "segments resume");
	snprintf(name, sizeof(name), "[16G app-mapped/170] staged resume, %s",
		 held ? "buffers held" : "first");
	snprintf(v, sizeof(v), "%.2f GiB/s", staged / t);
	snprintf(l, sizeof(l), "H2D %.1f GiB/s", lim_h2d);
	add(name, v, l, staged / t / lim_h2d, held ? ">= 0.90" : "report",
	    held ? staged / t / lim_h2d >= 0.90 : -1);
}

static void expandable_scenario(void)
{
	app_segments g;
	app_fns A;

	*(void **)&A.create = dlsym(RTLD_DEFAULT, "cuMemCreate");
	*(void **)&A.release = dlsym(RTLD_DEFAULT, "cuMemRelease");
	*(void **)&A.map = dlsym(RTLD_DEFAULT, "cuMemMap");
	*(void **)&A.unmap = dlsym(RTLD_DEFAULT, "cuMemUnmap");
	*(void **)&A.access = dlsym(RTLD_DEFAULT, "cuMemSetAccess");
	if (!A.create || (void *)A.create == (void *)D.create) {
		printf("\nexpandable segments: skipped, memctl's cuMemCreate not found\n");
		return;
	}
	printf("\n16 GiB mapped by the application: 170 handles of 2 MiB to 1 GiB side by side\n");
	app_segments_make(A, g);
	app_segments_cycle(g, 41, 0);
	app_segments_cycle(g, 53, 1);
	// Given back as PyTorch does: each handle unmapped, then released.
	for (size_t i = 0; i < g.h.size(); i++) {
		CU(A.unmap(g.at[i], g.len[i]));
		CU(A.release(g.h[i]));
	}
	CU(D.unreserve(g.base, g.total + (64u << 20)));
}

int main(int argc, char **argv)
{
	std::vector<double> sizes = { 1, 16, 64 };
	std::vector<int> counts = { 16, 64, 256, 4096 };
	int dev_count = 0, failed = 0, passed = 0;
	cudaDeviceProp prop;
	size_t fr, tot;
	int drv = 0;

	if (cudaGetDeviceCount(&dev_count) != cudaSuccess || dev_count == 0) {
		printf("bench: no GPU present; nothing measured\n");
		return 0;
	}
	if (argc > 1) {
		sizes.clear();
		for (char *s = strtok(argv[1], ","); s; s = strtok(NULL, ","))
			sizes.push_back(atof(s));
	}
	if (argc > 2) {
		counts.clear();
		for (char *s = strtok(argv[2], ","); s; s = strtok(NULL, ","))
			counts.push_back(atoi(s));
	}
	if (getenv("MEMCTL_SLAB") != NULL)
		snprintf(slab_note, sizeof(slab_note), ", slab %s", getenv("MEMCTL_SLAB"));
	load();
	CHECK(cudaSetDevice(0));
	CHECK(cudaGetDeviceProperties(&prop, 0));
	CHECK(cudaDriverGetVersion(&drv));
	CHECK(cudaMemGetInfo(&fr, &tot));
	printf("device: %s, %.1f GiB, driver API %d\n", prop.name, tot / GiB, drv);
	printf("memctl: MEMCTL_CHUNK=%s MEMCTL_STREAMS=%s MEMCTL_PIN_THREADS=%s MEMCTL_HUGEPAGES=%s "
	       "MEMCTL_SLAB=%s\n",
	       getenv("MEMCTL_CHUNK") ? getenv("MEMCTL_CHUNK") : "default",
	       getenv("MEMCTL_STREAMS") ? getenv("MEMCTL_STREAMS") : "default",
	       getenv("MEMCTL_PIN_THREADS") ? getenv("MEMCTL_PIN_THREADS") : "default",
	       getenv("MEMCTL_HUGEPAGES") ? getenv("MEMCTL_HUGEPAGES") : "default",
	       getenv("MEMCTL_SLAB") ? getenv("MEMCTL_SLAB") : "default (off)");
	CHECK(real_malloc((void **)&bad_dev, sizeof(*bad_dev)));
	limits();
	printf("\n  %-52s %-14s %-22s %6s %s\n", "figure", "memctl", "limit (same run)", "ratio",
	       "target");
	{
		// Measure the untagged path with tagged allocations live, as in a
		// server: cudaFree must then look the pointer up.
		std::vector<void *> live(64);

		must(M.region_begin("live"), "region");
		for (auto &q : live)
			CHECK(cudaMalloc(&q, 2u << 20));
		must(M.region_end(), "region end");
		passthrough();
		driver_passthrough();
		gate_rows();
		for (auto q : live)
			CHECK(cudaFree(q));
	}
	for (double g : sizes)
		for (int c : counts) {
			CHECK(cudaMemGetInfo(&fr, &tot));
			if (g * GiB * 1.02 + c * (2u << 20) > fr) {
				printf("\n%.0f GiB in %d allocations: skipped, %.1f GiB free\n", g, c,
				       fr / GiB);
				continue;
			}
			scenario(g, c);
		}
	CHECK(cudaMemGetInfo(&fr, &tot));
	if (fr > 16.5 * GiB)
		expandable_scenario();
	else
		printf("\nexpandable segments: skipped, %.1f GiB free\n", fr / GiB);

	printf("\n## memctl bench: %s, driver %d\n\n", prop.name, drv);
	printf("limits: pinned D2H %.1f GiB/s, H2D %.1f GiB/s, both ways %.1f GiB/s\n\n",
	       lim_d2h, lim_h2d, lim_both);
	printf("| figure | memctl | limit, same run | ratio | target | |\n|---|---|---|---|---|---|\n");
	for (const row &r : rows) {
		printf("| %s | %s | %s | %.3f | %s | %s |\n", r.figure, r.value, r.limit, r.ratio,
		       r.target, r.pass < 0 ? "" : r.pass ? "met" : "MISSED");
		if (r.pass == 0)
			failed++;
		else if (r.pass == 1)
			passed++;
	}
	printf("\ncontents verified after every resume: %s\n", wrong_bytes_total ? "NO" : "yes");
	printf("targets: %d met, %d missed\n", passed, failed);
	return wrong_bytes_total ? 1 : 0;
}
