/* SPDX-License-Identifier: Apache-2.0 */
/*
 * prog_driver_rules.c - asks the CUDA driver the questions on which the
 * simulated driver chose to be strict, and checks the answers it gives:
 * which calls need a current context, the context stack, what a copy from
 * unmapped memory returns, what is refused during stream capture, what a
 * forked child gets. The same program runs against the simulated driver
 * (test_e2e_strict) and against a real one (docs/testing.md says how), so
 * the simulated driver is held to the GPU's answers, not to our guesses.
 * Prints one line per question; exits 1 if any answer differs.
 * Uses the driver API only.
 */
#include <cuda.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define MiB (1ull << 20)

static int differ;

static void expect(const char *what, CUresult got, CUresult want)
{
	const char *g = "?", *w = "?";

	cuGetErrorName(got, &g);
	cuGetErrorName(want, &w);
	if (got == want) {
		printf("ok    %s: %s\n", what, g);
	} else {
		printf("DIFF  %s: %s (%d), expected %s (%d)\n", what, g, (int)got, w, (int)want);
		differ = 1;
	}
}

static CUcontext primary;
static CUstream stream;
static CUevent event;
static CUdeviceptr dev;
static char pinned[4096];

/* Calls in a thread that has no current context. */
static void *without_context(void *arg)
{
	CUmemAllocationProp prop = { .type = CU_MEM_ALLOCATION_TYPE_PINNED,
				     .location = { CU_MEM_LOCATION_TYPE_DEVICE, 0 } };
	CUmemAccessDesc acc = { .location = { CU_MEM_LOCATION_TYPE_DEVICE, 0 },
				.flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE };
	static char host[4096];
	CUmemGenericAllocationHandle h = 0;
	CUdeviceptr p = 0, va = 0;
	CUcontext ctx = NULL;
	CUstream s = NULL;
	CUevent e = NULL;
	size_t fr, tot, g;

	(void)arg;
	expect("no context: cuMemAlloc", cuMemAlloc(&p, 4096), CUDA_ERROR_INVALID_CONTEXT);
	expect("no context: cuMemGetInfo", cuMemGetInfo(&fr, &tot), CUDA_ERROR_INVALID_CONTEXT);
	expect("no context: cuStreamCreate", cuStreamCreate(&s, 0), CUDA_ERROR_INVALID_CONTEXT);
	expect("no context: cuEventCreate", cuEventCreate(&e, 0), CUDA_ERROR_INVALID_CONTEXT);
	expect("no context: cuCtxSynchronize", cuCtxSynchronize(), CUDA_ERROR_INVALID_CONTEXT);
	expect("no context: cuMemHostRegister", cuMemHostRegister(host, sizeof(host), 0),
	       CUDA_ERROR_INVALID_CONTEXT);
	expect("no context: cuMemsetD8Async on the NULL stream",
	       cuMemsetD8Async(dev, 1, 4096, NULL), CUDA_ERROR_INVALID_CONTEXT);
	expect("no context: cuCtxPopCurrent", cuCtxPopCurrent(&ctx), CUDA_ERROR_INVALID_CONTEXT);
	expect("no context: cuMemGetAllocationGranularity",
	       cuMemGetAllocationGranularity(&g, &prop, CU_MEM_ALLOC_GRANULARITY_MINIMUM),
	       CUDA_SUCCESS);
	expect("no context: cuMemAddressReserve", cuMemAddressReserve(&va, 2 * MiB, 0, 0, 0),
	       CUDA_SUCCESS);
	expect("no context: cuMemCreate", cuMemCreate(&h, 2 * MiB, &prop, 0), CUDA_SUCCESS);
	expect("no context: cuMemMap", cuMemMap(va, 2 * MiB, 0, h, 0), CUDA_SUCCESS);
	expect("no context: cuMemSetAccess", cuMemSetAccess(va, 2 * MiB, &acc, 1), CUDA_SUCCESS);
	expect("no context: cuMemsetD8Async on an explicit stream",
	       cuMemsetD8Async(va, 2, 2 * MiB, stream), CUDA_SUCCESS);
	expect("no context: cuStreamSynchronize of an explicit stream",
	       cuStreamSynchronize(stream), CUDA_SUCCESS);
	expect("no context: cuMemUnmap", cuMemUnmap(va, 2 * MiB), CUDA_SUCCESS);
	expect("no context: cuMemRelease", cuMemRelease(h), CUDA_SUCCESS);
	expect("no context: cuMemAddressFree", cuMemAddressFree(va, 2 * MiB), CUDA_SUCCESS);
	expect("no context: cuMemcpyHtoDAsync on an explicit stream",
	       cuMemcpyHtoDAsync(dev, pinned, sizeof(pinned), stream), CUDA_SUCCESS);
	expect("no context: cuEventRecord on an explicit stream", cuEventRecord(event, stream),
	       CUDA_SUCCESS);
	expect("no context: cuEventSynchronize", cuEventSynchronize(event), CUDA_SUCCESS);
	expect("no context: cuEventQuery", cuEventQuery(event), CUDA_SUCCESS);
	expect("no context: cuStreamQuery", cuStreamQuery(stream), CUDA_SUCCESS);
	expect("no context: cuMemAllocAsync on an explicit stream",
	       cuMemAllocAsync(&p, 4096, stream), CUDA_SUCCESS);
	expect("no context: cuMemFreeAsync on an explicit stream", cuMemFreeAsync(p, stream),
	       CUDA_SUCCESS);
	expect("no context: cuMemAllocAsync on the NULL stream", cuMemAllocAsync(&p, 4096, NULL),
	       CUDA_ERROR_INVALID_CONTEXT);
	expect("no context: cuStreamSynchronize of the NULL stream", cuStreamSynchronize(NULL),
	       CUDA_ERROR_INVALID_CONTEXT);
	expect("no context: cuMemHostUnregister", cuMemHostUnregister(pinned), CUDA_SUCCESS);
	expect("no context: cuMemFree (the pointer names its context)", cuMemFree(dev),
	       CUDA_SUCCESS);
	return NULL;
}

/* Pop, and check what came off the stack. */
static void pop_is(const char *what, CUcontext want)
{
	CUcontext top = NULL;
	CUresult r = cuCtxPopCurrent(&top);

	expect(what, r == CUDA_SUCCESS && top != want ? CUDA_ERROR_INVALID_CONTEXT : r,
	       CUDA_SUCCESS);
}

static void context_stack(void)
{
	CUcontext a = NULL, b = NULL, top = NULL;

	expect("cuCtxCreate", cuCtxCreate(&a, NULL, 0, 0), CUDA_SUCCESS);
	expect("cuCtxCreate", cuCtxCreate(&b, NULL, 0, 0), CUDA_SUCCESS);
	expect("cuCtxPushCurrent(primary)", cuCtxPushCurrent(primary), CUDA_SUCCESS);
	pop_is("pop returns the primary context", primary);
	pop_is("pop returns the second context", b);
	pop_is("pop returns the first context", a);
	pop_is("pop returns the primary context set current", primary);
	expect("pop of an empty stack", cuCtxPopCurrent(&top), CUDA_ERROR_INVALID_CONTEXT);
	expect("cuCtxSetCurrent(primary)", cuCtxSetCurrent(primary), CUDA_SUCCESS);
	expect("cuCtxDestroy", cuCtxDestroy(a), CUDA_SUCCESS);
	expect("cuCtxDestroy", cuCtxDestroy(b), CUDA_SUCCESS);
	expect("cuCtxGetCurrent", cuCtxGetCurrent(&top), CUDA_SUCCESS);
	expect("the primary context is still current",
	       top == primary ? CUDA_SUCCESS : CUDA_ERROR_INVALID_CONTEXT, CUDA_SUCCESS);
}

/* A copy from a reserved range with nothing mapped fails when issued, and
 * the context survives it. */
static void copy_from_unmapped(void)
{
	CUdeviceptr va = 0, p = 0;
	char buf[64];

	expect("cuMemAddressReserve", cuMemAddressReserve(&va, 2 * MiB, 0, 0, 0), CUDA_SUCCESS);
	expect("cuMemcpyDtoH from unmapped memory", cuMemcpyDtoH(buf, va, sizeof(buf)),
	       CUDA_ERROR_INVALID_VALUE);
	expect("the context survives it: cuMemAlloc", cuMemAlloc(&p, 4096), CUDA_SUCCESS);
	expect("cuMemFree", cuMemFree(p), CUDA_SUCCESS);
	expect("cuMemAddressFree", cuMemAddressFree(va, 2 * MiB), CUDA_SUCCESS);
}

static void capture(void)
{
	CUstreamCaptureStatus st;
	CUgraph g = NULL;

	expect("capture of the NULL stream",
	       cuStreamBeginCapture(NULL, CU_STREAM_CAPTURE_MODE_GLOBAL),
	       CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED);
	expect("cuStreamBeginCapture", cuStreamBeginCapture(stream, CU_STREAM_CAPTURE_MODE_GLOBAL),
	       CUDA_SUCCESS);
	expect("captured cuMemsetD8Async", cuMemsetD8Async(dev, 3, 4096, stream), CUDA_SUCCESS);
	expect("cuCtxSynchronize while capturing (global)", cuCtxSynchronize(),
	       CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED);
	expect("cuStreamIsCapturing", cuStreamIsCapturing(stream, &st), CUDA_SUCCESS);
	expect("the capture is spoilt", st == CU_STREAM_CAPTURE_STATUS_INVALIDATED ? CUDA_SUCCESS
	       : CUDA_ERROR_UNKNOWN, CUDA_SUCCESS);
	expect("cuStreamEndCapture", cuStreamEndCapture(stream, &g),
	       CUDA_ERROR_STREAM_CAPTURE_INVALIDATED);
}

static void forked_child(void)
{
	size_t fr, tot;
	pid_t pid = fork();
	int st = -1;

	if (pid == 0) {
		int bad = cuMemGetInfo(&fr, &tot) != CUDA_ERROR_NOT_INITIALIZED;

		bad |= (cuInit(0) != CUDA_ERROR_NOT_INITIALIZED) << 1;
		_exit(bad);
	}
	waitpid(pid, &st, 0);
	expect("forked child: cuMemGetInfo is CUDA_ERROR_NOT_INITIALIZED",
	       WIFEXITED(st) && !(WEXITSTATUS(st) & 1) ? CUDA_SUCCESS : CUDA_ERROR_UNKNOWN,
	       CUDA_SUCCESS);
	expect("forked child: cuInit is CUDA_ERROR_NOT_INITIALIZED",
	       WIFEXITED(st) && !(WEXITSTATUS(st) & 2) ? CUDA_SUCCESS : CUDA_ERROR_UNKNOWN,
	       CUDA_SUCCESS);
}

int main(void)
{
	pthread_t t;
	int n = 0;

	setvbuf(stdout, NULL, _IOLBF, 0);
	expect("cuDeviceGetCount before cuInit", cuDeviceGetCount(&n), CUDA_ERROR_NOT_INITIALIZED);
	expect("cuInit", cuInit(0), CUDA_SUCCESS);
	expect("cuDevicePrimaryCtxRetain", cuDevicePrimaryCtxRetain(&primary, 0), CUDA_SUCCESS);
	expect("cuCtxSetCurrent", cuCtxSetCurrent(primary), CUDA_SUCCESS);
	expect("cuStreamCreate", cuStreamCreate(&stream, CU_STREAM_NON_BLOCKING), CUDA_SUCCESS);
	expect("cuMemAlloc", cuMemAlloc(&dev, 4096), CUDA_SUCCESS);
	expect("cuEventCreate", cuEventCreate(&event, 0), CUDA_SUCCESS);
	expect("cuMemHostRegister", cuMemHostRegister(pinned, sizeof(pinned), 0), CUDA_SUCCESS);
	pthread_create(&t, NULL, without_context, NULL);
	pthread_join(t, NULL);
	expect("cuMemAlloc", cuMemAlloc(&dev, 4096), CUDA_SUCCESS);
	context_stack();
	copy_from_unmapped();
	capture();
	forked_child();
	expect("cuMemFree", cuMemFree(dev), CUDA_SUCCESS);
	printf("%s\n", differ ? "driver rules: some answers differ" : "driver rules: all as expected");
	return differ;
}
