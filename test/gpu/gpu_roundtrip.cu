// SPDX-License-Identifier: Apache-2.0
//
// gpu_roundtrip.cu - the product on a real GPU: tagged memory filled by a
// kernel, a CUDA graph captured over it, staged pause (cuMemGetInfo must
// show the memory back on the device), resume, and the graph's replay and
// a kernel verify every byte. Then the same without staging: addresses
// stay valid and usable. Built with -cudart shared (the static runtime has
// its own tenant, prog_tenant_static) and run under LD_PRELOAD=libmemctl.so.
#include <cuda.h>
#include <cuda_runtime.h>
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>

#include "memctl.h"
#include "pattern.cuh"

#define CHECK(x) do { cudaError_t e_ = (x); if (e_ != cudaSuccess) { \
	fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(e_)); \
	exit(1); } } while (0)

typedef int (*api1)(const char *);
typedef int (*api2)(const char *, unsigned);
typedef int (*api0)(void);


static size_t driver_free(void)
{
	typedef CUresult (*meminfo)(size_t *, size_t *);
	static meminfo fn;
	size_t fr = 0, tot = 0;

	if (fn == NULL)
		fn = (meminfo)dlsym(dlopen("libcuda.so.1", RTLD_LAZY), "cuMemGetInfo_v2");
	fn(&fr, &tot);
	return fr;
}

int main(void)
{
	const int nbuf = 8;
	const size_t bytes = 512ull << 20, words = bytes / 4;
	unsigned *buf[nbuf];
	unsigned long long *bad, host_bad;
	api1 begin = (api1)dlsym(RTLD_DEFAULT, "memctl_region_begin");
	api0 end = (api0)dlsym(RTLD_DEFAULT, "memctl_region_end");
	api2 pause = (api2)dlsym(RTLD_DEFAULT, "memctl_pause");
	api2 resume = (api2)dlsym(RTLD_DEFAULT, "memctl_resume");
	cudaGraph_t graph;
	cudaGraphExec_t exec;
	cudaStream_t s;
	size_t free0, free1;
	int failures = 0, i;

	if (begin == NULL || pause == NULL) {
		fprintf(stderr, "gpu_roundtrip: libmemctl.so is not preloaded\n");
		return 2;
	}
	CHECK(cudaSetDevice(0));
	CHECK(cudaStreamCreate(&s));
	CHECK(cudaMalloc(&bad, sizeof(*bad)));
	begin("weights");
	for (i = 0; i < nbuf; i++)
		CHECK(cudaMalloc(&buf[i], bytes));
	end();
	for (i = 0; i < nbuf; i++)
		pattern_fill<<<264, 512, 0, s>>>(buf[i], words, 17u * (unsigned)i);
	CHECK(cudaStreamSynchronize(s));

	// A graph whose kernels hold the tagged pointers.
	CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal));
	cudaMemsetAsync(bad, 0, sizeof(*bad), s);
	for (i = 0; i < nbuf; i++)
		pattern_verify<<<264, 512, 0, s>>>(buf[i], words, 17u * (unsigned)i, bad);
	CHECK(cudaStreamEndCapture(s, &graph));
	CHECK(cudaGraphInstantiate(&exec, graph, 0));

	for (int staged = 1; staged >= 0; staged--) {
		free0 = driver_free();
		if (pause("weights", staged ? MEMCTL_STAGE_CPU : 0) != 0) {
			fprintf(stderr, "pause failed\n");
			return 1;
		}
		free1 = driver_free();
		printf("%-8s pause: cuMemGetInfo free %.2f -> %.2f GiB (+%.2f GiB, tagged %.2f GiB)\n",
		       staged ? "staged" : "unstaged", free0 / 1073741824.0, free1 / 1073741824.0,
		       (double)(free1 - free0) / 1073741824.0, nbuf * bytes / 1073741824.0);
		if (free1 < free0 + nbuf * bytes - (64ull << 20)) {
			printf("FAIL: device memory did not come back\n");
			failures++;
		}
		if (resume("weights", 0) != 0) {
			fprintf(stderr, "resume failed\n");
			return 1;
		}
		if (!staged) // contents undefined: write them again
			for (i = 0; i < nbuf; i++)
				pattern_fill<<<264, 512, 0, s>>>(buf[i], words, 17u * (unsigned)i);
		CHECK(cudaGraphLaunch(exec, s));
		CHECK(cudaStreamSynchronize(s));
		CHECK(cudaMemcpy(&host_bad, bad, sizeof(host_bad), cudaMemcpyDeviceToHost));
		printf("%-8s resume: graph replay found %llu wrong words of %zu\n",
		       staged ? "staged" : "unstaged", host_bad, nbuf * words);
		if (host_bad != 0)
			failures++;
		if (driver_free() > free0 + (64ull << 20)) {
			printf("FAIL: memory not mapped again\n");
			failures++;
		}
	}
	for (i = 0; i < nbuf; i++)
		CHECK(cudaFree(buf[i]));
	printf("gpu_roundtrip: %d passed, %d failed\n", failures ? 0 : 1, failures ? 1 : 0);
	return failures ? 1 : 0;
}
