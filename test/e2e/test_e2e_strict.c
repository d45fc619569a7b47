/* SPDX-License-Identifier: Apache-2.0 */
/*
 * test_e2e_strict.c - the simulated runtime and driver as strict as the
 * GPU, seen by an application under LD_PRELOAD=libmemctl.so: the runtime's
 * documented synchronisation, memctl's ordering promises through the
 * runtime, CUDA graphs and stream-ordered allocation, and device memory of
 * a tenant killed with SIGKILL coming back. Simulated driver only.
 */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>
#include <cuda_runtime_api.h>
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include "e2e_suite.h"
#include "fakecuda.h"

#define MiB (1ull << 20)

static char state_path[64];

static void setup(void)
{
	snprintf(state_path, sizeof(state_path), "/tmp/fakecuda-strict-%d.state", (int)getpid());
	unlink(state_path);
	setenv("FAKECUDA_STATE", state_path, 1);
	setenv("FAKECUDA_MEMORY", "1G", 1);
	setenv("MEMCTL_SOCKET", "0", 1);
	cr_assert(eq(int, memctl_api_load(&M), 0), "libmemctl.so is not preloaded");
	e2e_strict();
	cr_assert(eq(int, fakecuda_set_async("lazy"), 0));
}

static void teardown(void)
{
	unlink(state_path);
}

TestSuite(strict_rt, .init = setup, .fini = teardown, .timeout = 60);

static int every_byte(const void *p, size_t n, unsigned char b)
{
	const unsigned char *c = p;
	size_t i;

	for (i = 0; i < n; i++)
		if (c[i] != b)
			return 0;
	return 1;
}

/* Device bytes as the application reads them (cudaMemcpy). */
static int device_bytes(const void *dev, size_t n, unsigned char b)
{
	unsigned char *h = malloc(n);
	int ok;

	cr_assert(not(eq(ptr, h, NULL)));
	cr_assert(eq(int, cudaMemcpy(h, dev, n, cudaMemcpyDeviceToHost), cudaSuccess));
	ok = every_byte(h, n, b);
	free(h);
	return ok;
}

Test(strict_rt, cudaMalloc_into_a_NULL_pointer_is_invalid_value)
{
	cr_assert(eq(int, cudaMalloc(NULL, 4096), cudaErrorInvalidValue));
	cr_assert(eq(int, cudaGetLastError(), cudaErrorInvalidValue));
	cr_assert(eq(int, M.region_begin("w"), 0));
	cr_assert(eq(int, cudaMalloc(NULL, 4096), cudaErrorInvalidValue));
	cr_assert(eq(int, M.region_end(), 0));
}

Test(strict_rt, runtime_copies_and_memsets_keep_their_documented_synchronisation)
{
	static unsigned char h[4096];
	cudaStream_t s;
	void *p = NULL;

	cr_assert(eq(int, cudaMalloc(&p, 4096), cudaSuccess));
	cr_assert(eq(int, cudaStreamCreate(&s), cudaSuccess));
	/* cudaMemset returns before the device has the bytes. */
	cr_assert(eq(int, cudaMemset(p, 7, 4096), cudaSuccess));
	cr_assert(every_byte(p, 4096, 0));
	cr_assert(device_bytes(p, 4096, 7)); /* a copy to the host waits */
	/* From pageable memory: the source is taken at once, the device may
	 * have it later. */
	memset(h, 9, sizeof(h));
	cr_assert(eq(int, cudaMemcpy(p, h, 4096, cudaMemcpyHostToDevice), cudaSuccess));
	memset(h, 1, sizeof(h));
	cr_assert(every_byte(p, 4096, 7));
	cr_assert(eq(int, cudaDeviceSynchronize(), cudaSuccess));
	cr_assert(every_byte(p, 4096, 9));
	/* Async on a stream: only when that stream is waited for. */
	cr_assert(eq(int, cudaMemsetAsync(p, 2, 4096, s), cudaSuccess));
	cr_assert(eq(int, cudaMemcpyAsync(h, p, 4096, cudaMemcpyDeviceToHost, s), cudaSuccess));
	cr_assert(every_byte(h, 4096, 1));
	cr_assert(eq(int, cudaStreamSynchronize(s), cudaSuccess));
	cr_assert(every_byte(h, 4096, 2));
	/* cudaFree does not wait for work still queued on the memory. */
	fakecuda_violations_fatal(0);
	cr_assert(eq(int, cudaMemsetAsync(p, 3, 4096, s), cudaSuccess));
	cr_assert(eq(int, cudaFree(p), cudaSuccess));
	cr_assert(eq(long, fakecuda_violations(), 1));
	cr_assert(eq(int, cudaStreamSynchronize(s), cudaErrorIllegalAddress));
	fakecuda_clear_violations();
}

/* Work the application queued on tagged memory and has not waited for:
 * a pause drains it before unmapping, a cudaFree before freeing. */
Test(strict_rt, pause_and_free_of_tagged_memory_wait_for_the_application_s_work)
{
	char *p = tagged("w", 4 * MiB);
	cudaStream_t s;

	cr_assert(eq(int, cudaStreamCreate(&s), cudaSuccess));
	cr_assert(eq(int, cudaMemsetAsync(p, 5, 4 * MiB, s), cudaSuccess));
	cr_assert(eq(int, M.pause("w", MEMCTL_STAGE_CPU), 0));
	cr_assert(eq(int, M.resume("w", 0), 0));
	cr_assert(device_bytes(p, 4 * MiB, 5));
	cr_assert(eq(int, cudaMemsetAsync(p + MiB, 6, MiB, s), cudaSuccess));
	cr_assert(eq(int, M.pause("w", 0), 0));
	cr_assert(eq(int, M.resume("w", 0), 0));
	cr_assert(eq(int, cudaMemsetAsync(p, 6, 4 * MiB, s), cudaSuccess));
	cr_assert(eq(int, cudaFree(p), cudaSuccess));
	cr_assert(eq(long, fakecuda_violations(), 0));
	cr_assert(eq(int, cudaStreamDestroy(s), cudaSuccess));
}

/* The application's next copy (on the NULL stream, which does not wait
 * for memctl's non-blocking streams) sees every restored byte. */
Test(strict_rt, resume_is_complete_when_it_returns)
{
	void *p[4];
	int i;

	for (i = 0; i < 4; i++) {
		p[i] = tagged("w", (size_t)(i + 1) * MiB + 99);
		cr_assert(eq(int, dev_fill(p[i], (size_t)(i + 1) * MiB + 99, (unsigned)i), 0));
	}
	cr_assert(eq(int, M.pause("w", MEMCTL_STAGE_CPU), 0));
	cr_assert(eq(int, M.resume("w", MEMCTL_RELEASE_HOST), 0));
	for (i = 0; i < 4; i++)
		cr_assert(eq(long, dev_check(p[i], (size_t)(i + 1) * MiB + 99, (unsigned)i), -1),
			  "allocation %d", i);
}

/* A graph captured over tagged memory replays after pause and resume:
 * its addresses stayed valid. */
Test(strict_rt, a_cuda_graph_over_tagged_memory_replays_after_pause_and_resume)
{
	cudaGraphExec_t exec;
	cudaGraph_t graph;
	cudaStream_t s;
	size_t n = 2 * MiB;
	void *p = tagged("w", n);
	int delta = 1;
	void *args[] = { &p, &n, &delta };
	dim3 one = { 1, 1, 1 };

	cr_assert(eq(int, cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), cudaSuccess));
	cr_assert(eq(int, cudaMemset(p, 10, n), cudaSuccess));
	cr_assert(eq(int, cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal), cudaSuccess));
	cr_assert(eq(int, cudaLaunchKernel(fakecuda_kernel("add"), one, one, args, 0, s),
		     cudaSuccess));
	cr_assert(eq(int, cudaStreamEndCapture(s, &graph), cudaSuccess));
	cr_assert(eq(int, cudaGraphInstantiate(&exec, graph, 0), cudaSuccess));
	cr_assert(eq(int, M.pause("w", MEMCTL_STAGE_CPU), 0));
	cr_assert(eq(int, M.resume("w", 0), 0));
	cr_assert(eq(int, cudaGraphLaunch(exec, s), cudaSuccess));
	cr_assert(eq(int, cudaGraphLaunch(exec, s), cudaSuccess));
	cr_assert(eq(int, cudaStreamSynchronize(s), cudaSuccess));
	cr_assert(device_bytes(p, n, 12));
	cr_assert(eq(int, cudaGraphExecDestroy(exec), cudaSuccess));
	cr_assert(eq(int, cudaGraphDestroy(graph), cudaSuccess));
}

Test(strict_rt, stream_ordered_allocation_through_the_runtime)
{
	static unsigned char h[MiB];
	uint64_t used0 = fakecuda_used();
	struct cudaMemPoolProps props;
	cudaMemPool_t pool;
	cudaStream_t s;
	void *q = NULL;

	memset(&props, 0, sizeof(props));
	cr_assert(eq(int, cudaStreamCreate(&s), cudaSuccess));
	cr_assert(eq(int, cudaMallocAsync(&q, MiB, s), cudaSuccess));
	cr_assert(eq(int, cudaMemsetAsync(q, 3, MiB, s), cudaSuccess));
	cr_assert(eq(int, cudaMemcpyAsync(h, q, MiB, cudaMemcpyDeviceToHost, s), cudaSuccess));
	cr_assert(eq(int, cudaFreeAsync(q, s), cudaSuccess));
	cr_assert(eq(u64, fakecuda_used(), used0 + MiB));
	cr_assert(eq(int, cudaStreamSynchronize(s), cudaSuccess));
	cr_assert(every_byte(h, MiB, 3));
	cr_assert(eq(u64, fakecuda_used(), used0));

	props.allocType = cudaMemAllocationTypePinned;
	props.location.type = cudaMemLocationTypeDevice;
	props.location.id = 0;
	cr_assert(eq(int, cudaMemPoolCreate(&pool, &props), cudaSuccess));
	cr_assert(eq(int, cudaMallocFromPoolAsync(&q, MiB, pool, s), cudaSuccess));
	cr_assert(eq(int, cudaFreeAsync(q, s), cudaSuccess));
	cr_assert(eq(int, cudaMemPoolDestroy(pool), cudaSuccess));
	cr_assert(eq(int, cudaStreamSynchronize(s), cudaSuccess));
	cr_assert(eq(u64, fakecuda_used(), used0));
}

/* The answers the real driver gives (checked on an H100 with the same
 * program, docs/testing.md) are the simulated driver's answers too. */
Test(strict_rt, the_simulated_driver_answers_as_the_real_one)
{
	const char *b = getenv("MEMCTL_BUILD");
	char cmd[700];

	cr_assert(b != NULL, "MEMCTL_BUILD not set");
	snprintf(cmd, sizeof(cmd), "'%s/test/prog_driver_rules' >/dev/null", b);
	cr_assert(eq(int, system(cmd), 0), "run %s/test/prog_driver_rules to see which differ", b);
}

/* A tenant that dies without freeing (SIGKILL) gives its device memory
 * back, as the real driver does at exit; already while it is a zombie. */
Test(strict_rt, a_tenant_killed_with_SIGKILL_gives_its_device_memory_back)
{
	const char *b = getenv("MEMCTL_BUILD");
	char prog[600], line[64];
	uint64_t used, held;
	siginfo_t info;
	int out[2];
	FILE *f;
	pid_t pid;

	cr_assert(b != NULL, "MEMCTL_BUILD not set");
	snprintf(prog, sizeof(prog), "%s/test/prog_tenant", b);
	cr_assert(eq(int, pipe(out), 0));
	pid = fork();
	if (pid == 0) {
		dup2(out[1], 1);
		close(out[0]);
		execl(prog, prog, "3", "4194304", "2", "1048576", (char *)NULL);
		_exit(127);
	}
	close(out[1]);
	f = fdopen(out[0], "r");
	cr_assert(not(eq(ptr, fgets(line, sizeof(line), f), NULL)), "tenant did not start");
	cr_assert(eq(int, strncmp(line, "ready", 5), 0), "%s", line);
	held = fakecuda_process_used(pid);
	used = fakecuda_used();
	cr_assert(ge(u64, held, 3 * 4 * MiB + 2 * 2 * MiB));
	cr_assert(eq(int, kill(pid, SIGKILL), 0));
	cr_assert(eq(int, waitid(P_PID, (id_t)pid, &info, WEXITED | WNOWAIT), 0));
	cr_assert(eq(u64, fakecuda_used(), used - held));
	cr_assert(eq(u64, fakecuda_process_used(pid), 0));
	cr_assert(eq(int, (int)waitpid(pid, NULL, 0), (int)pid));
	cr_assert(eq(sz, dev_free(), (size_t)(fakecuda_capacity() - fakecuda_used())));
	fclose(f);
}
