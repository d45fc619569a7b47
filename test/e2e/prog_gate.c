/* SPDX-License-Identifier: Apache-2.0 */
/*
 * prog_gate.c - a tenant that keeps the GPU busy, for the gate's suite
 * (simulated driver only: it launches the simulated driver's built-in
 * kernels). Tagged "weights": NW allocations of WBYTES filled with known
 * bytes, and a 4 KiB "counter" allocation (also tagged weights) that each
 * launch adds 1 to. Commands on stdin, one line answered to each:
 *   check   -> "ok" when every weight byte is as written and every counter
 *              byte equals the launches made, else "bad ..." (a copy: waits
 *              at a closed gate)
 *   probe   -> "weights=<mapped|released>" (read in a child, no CUDA call)
 *   spin    -> a kernel that runs until "unspin" is queued on a stream of
 *              its own over the counter: a collective waiting for a peer;
 *              "spinning"
 *   unspin  -> "unspun"
 *   launch  -> a thread launches one add on the counter and waits for its
 *              stream; "launching" at once
 *   joined  -> waits for that thread: "launched <cudaError_t>"
 *   quit    -> frees everything, exits 0
 * usage: prog_gate NW WBYTES, under LD_PRELOAD=libmemctl.so
 */
#include <cuda_runtime_api.h>
#include <pthread.h>
#include <string.h>

#include "e2e.h"
#include "fakecuda.h"

#define MAXW 64
#define COUNTER_BYTES 4096

static struct memctl_api M;
static void *w[MAXW], *counter;
static size_t nw, wsz;
static int adds, spin_flag, launcher_busy;
static cudaStream_t spin_stream;
static pthread_t launcher;
static cudaError_t launched;

static cudaError_t add_one(cudaStream_t s)
{
	size_t n = COUNTER_BYTES;
	int delta = 1;
	void *args[] = { &counter, &n, &delta };
	dim3 one = { 1, 1, 1 };

	return cudaLaunchKernel(fakecuda_kernel("add"), one, one, args, 0, s);
}

static void *launch_main(void *arg)
{
	cudaStream_t s;

	(void)arg;
	launched = cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking);
	if (launched == cudaSuccess)
		launched = add_one(s);
	if (launched == cudaSuccess)
		launched = cudaStreamSynchronize(s);
	return NULL;
}

static void check_all(void)
{
	unsigned char c[COUNTER_BYTES];
	size_t i, j;
	long bad;

	for (i = 0; i < nw; i++)
		if ((bad = dev_check(w[i], wsz, (unsigned)(getpid() + (int)i))) >= 0) {
			printf("bad weights %zu at %ld\n", i, bad);
			return;
		}
	if (cudaMemcpy(c, counter, sizeof(c), cudaMemcpyDeviceToHost) != cudaSuccess) {
		printf("bad counter: copy failed\n");
		return;
	}
	for (j = 0; j < sizeof(c); j++)
		if (c[j] != (unsigned char)adds) {
			printf("bad counter at %zu: %d, not %d\n", j, c[j], adds);
			return;
		}
	printf("ok\n");
}

static void spin(void)
{
	size_t n = COUNTER_BYTES;
	int *flag = &spin_flag;
	void *args[] = { &flag, &counter, &n };
	dim3 one = { 1, 1, 1 };

	__atomic_store_n(&spin_flag, 0, __ATOMIC_RELEASE);
	if (spin_stream == NULL)
		cudaStreamCreateWithFlags(&spin_stream, cudaStreamNonBlocking);
	printf(cudaLaunchKernel(fakecuda_kernel("spin"), one, one, args, 0, spin_stream) ==
	       cudaSuccess ? "spinning\n" : "spin failed\n");
}

static int setup(void)
{
	size_t i;

	M.region_begin("weights");
	for (i = 0; i < nw; i++)
		if (cudaMalloc(&w[i], wsz) != cudaSuccess ||
		    dev_fill(w[i], wsz, (unsigned)(getpid() + (int)i)) < 0)
			return -1;
	if (cudaMalloc(&counter, COUNTER_BYTES) != cudaSuccess ||
	    cudaMemset(counter, 0, COUNTER_BYTES) != cudaSuccess ||
	    cudaDeviceSynchronize() != cudaSuccess)
		return -1;
	M.region_end();
	return 0;
}

static void command(const char *line)
{
	if (strncmp(line, "check", 5) == 0) {
		check_all();
	} else if (strncmp(line, "probe", 5) == 0) {
		printf("weights=%s\n", released(w[0]) ? "released" : "mapped");
	} else if (strncmp(line, "spin", 4) == 0) {
		spin();
	} else if (strncmp(line, "unspin", 6) == 0) {
		__atomic_store_n(&spin_flag, 1, __ATOMIC_RELEASE);
		printf("unspun\n");
	} else if (strncmp(line, "launch", 6) == 0 && !launcher_busy) {
		launcher_busy = pthread_create(&launcher, NULL, launch_main, NULL) == 0;
		adds += launcher_busy;
		printf(launcher_busy ? "launching\n" : "launch failed\n");
	} else if (strncmp(line, "joined", 6) == 0 && launcher_busy) {
		pthread_join(launcher, NULL);
		launcher_busy = 0;
		printf("launched %d\n", (int)launched);
	} else {
		printf("? %s", line);
	}
}

int main(int argc, char **argv)
{
	char line[64];
	size_t i;

	if (argc != 3 || memctl_api_load(&M) < 0) {
		fprintf(stderr, "usage: prog_gate NW WBYTES, under LD_PRELOAD\n");
		return 2;
	}
	nw = strtoul(argv[1], NULL, 10);
	wsz = strtoul(argv[2], NULL, 10);
	if (nw == 0 || nw > MAXW || wsz == 0)
		return 2;
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (setup() < 0)
		return 3;
	printf("ready %d\n", (int)getpid());
	while (fgets(line, sizeof(line), stdin) != NULL && strncmp(line, "quit", 4) != 0)
		command(line);
	if (launcher_busy)
		pthread_join(launcher, NULL);
	for (i = 0; i < nw; i++)
		cudaFree(w[i]);
	cudaFree(counter);
	return 0;
}
