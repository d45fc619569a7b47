/* SPDX-License-Identifier: Apache-2.0 */
/*
 * test_e2e_gate.c - the gate seen by an application under
 * LD_PRELOAD=libmemctl.so on the simulated driver: GPU work of every kind
 * waits while memory is paused with MEMCTL_GATE and then runs right; a
 * launch racing with the pause is finished before memory goes; a drain
 * gives up at its deadline with nothing released; the application's own
 * contexts are drained. The process asks its own control socket what the
 * gate says (waiting threads, paused tags), so that every "it waits" is an
 * event, never a guessed duration.
 */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>
#include <cuda.h>
#include <cuda_runtime_api.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "e2e_suite.h"
#include "fakecuda.h"

#define MiB (1ull << 20)
#define SEED 5u

static char dir[64], state_path[96];

static void setup(void)
{
	snprintf(dir, sizeof(dir), "/tmp/memctl-gate-XXXXXX");
	cr_assert(not(eq(ptr, mkdtemp(dir), NULL)));
	snprintf(state_path, sizeof(state_path), "%s.state", dir);
	setenv("FAKECUDA_STATE", state_path, 1);
	setenv("FAKECUDA_MEMORY", "1G", 1);
	setenv("MEMCTL_RUNTIME_DIR", dir, 1);
	unsetenv("MEMCTL_SOCKET");
	cr_assert(eq(int, memctl_api_load(&M), 0), "libmemctl.so is not preloaded");
	e2e_strict();
	cr_assert(eq(int, fakecuda_set_async("lazy"), 0));
}

static void teardown(void)
{
	char cmd[200];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s' '%s'", dir, state_path);
	if (system(cmd) != 0)
		fprintf(stderr, "cleanup of %s failed\n", dir);
}

TestSuite(gate, .init = setup, .fini = teardown, .timeout = 60);

/* ---- this process's own control socket -------------------------------- */

static void self_request(const char *req, char *buf, size_t len)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	size_t n = 0;

	snprintf(addr.sun_path, sizeof(addr.sun_path), "%s/%d.sock", dir, (int)getpid());
	cr_assert(eq(int, connect(fd, (struct sockaddr *)&addr, sizeof(addr)), 0));
	cr_assert(eq(long, (long)send(fd, req, strlen(req), 0), (long)strlen(req)));
	while (n + 1 < len && memchr(buf, '\n', n) == NULL) {
		ssize_t r = recv(fd, buf + n, len - 1 - n, 0);

		if (r <= 0)
			break;
		n += (size_t)r;
		buf[n] = '\0';
	}
	buf[n] = '\0';
	close(fd);
}

/* Ask status until its reply holds `needle` (the suite's timeout bounds
 * it): an event, not a duration. */
static const char *until_status(const char *needle)
{
	static char buf[16384];

	for (;;) {
		self_request("status\n", buf, sizeof(buf));
		if (strstr(buf, needle) != NULL)
			return buf;
		usleep(2000);
	}
}

static int has(const char *hay, const char *needle)
{
	return strstr(hay, needle) != NULL;
}

/* ---- device memory ------------------------------------------------------ */

static unsigned char *weights(size_t n)
{
	unsigned char *p = tagged("weights", n);

	fill(p, n, SEED); /* device memory is host memory on the simulated driver */
	return p;
}

/* Every byte is pattern(i, SEED) + delta. */
static int pattern_plus(const unsigned char *p, size_t n, int delta)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (p[i] != (unsigned char)(pattern(i, SEED) + delta))
			return 0;
	return 1;
}

static cudaError_t add(void *p, size_t n, int delta, cudaStream_t s)
{
	void *args[] = { &p, &n, &delta };
	dim3 one = { 1, 1, 1 };

	return cudaLaunchKernel(fakecuda_kernel("add"), one, one, args, 0, s);
}

struct job {
	pthread_t tid;
	void *p;
	size_t n;
	cudaError_t rc;
	int done;
};

static void *add_and_wait(void *arg)
{
	struct job *j = arg;

	j->rc = add(j->p, j->n, 1, NULL);
	if (j->rc == cudaSuccess)
		j->rc = cudaDeviceSynchronize();
	__atomic_store_n(&j->done, 1, __ATOMIC_RELEASE);
	return NULL;
}

static int done(struct job *j)
{
	return __atomic_load_n(&j->done, __ATOMIC_ACQUIRE);
}

/* ---- waiting at the gate ------------------------------------------------ */

Test(gate, a_launch_waits_at_the_gate_until_resume_then_runs)
{
	unsigned char *p = weights(MiB);
	struct job j = { .p = p, .n = MiB };
	const char *st;

	cr_assert(eq(int, M.pause("weights", MEMCTL_STAGE_CPU | MEMCTL_GATE), 0));
	cr_assert(eq(int, released(p), 1));
	cr_assert(eq(int, pthread_create(&j.tid, NULL, add_and_wait, &j), 0));
	st = until_status("\"waiting\":1");
	cr_assert(has(st, "\"gate\":{\"closed\":true"), "%s", st);
	cr_assert(has(st, "\"paused_tags\":\"weights\""), "%s", st);
	cr_assert(eq(int, done(&j), 0));
	cr_assert(eq(int, M.resume("weights", 0), 0));
	pthread_join(j.tid, NULL);
	cr_assert(eq(int, j.rc, cudaSuccess));
	/* It ran once, after the contents were back. */
	cr_assert(eq(int, pattern_plus(p, MiB, 1), 1));
	st = until_status("\"gate\":{\"closed\":false");
	cr_assert(has(st, "\"waiting\":0"), "%s", st);
	cr_assert(has(st, "\"waits\":1"), "%s", st);
	cr_assert(eq(int, cudaFree(p), cudaSuccess));
}

struct graph_job {
	pthread_t tid;
	cudaGraphExec_t exec;
	cudaStream_t s;
	cudaError_t rc;
};

static void *launch_graph(void *arg)
{
	struct graph_job *g = arg;

	g->rc = cudaGraphLaunch(g->exec, g->s);
	if (g->rc == cudaSuccess)
		g->rc = cudaStreamSynchronize(g->s);
	return NULL;
}

Test(gate, a_graph_launch_waits_and_runs_right_after_resume)
{
	unsigned char *p = weights(MiB);
	struct graph_job g;
	cudaGraph_t graph;

	cr_assert(eq(int, cudaStreamCreate(&g.s), cudaSuccess));
	cr_assert(eq(int, cudaStreamBeginCapture(g.s, cudaStreamCaptureModeGlobal), cudaSuccess));
	cr_assert(eq(int, add(p, MiB, 2, g.s), cudaSuccess));
	cr_assert(eq(int, add(p, MiB, 3, g.s), cudaSuccess));
	cr_assert(eq(int, cudaStreamEndCapture(g.s, &graph), cudaSuccess));
	cr_assert(eq(int, cudaGraphInstantiate(&g.exec, graph, 0), cudaSuccess));
	cr_assert(eq(int, M.pause("weights", MEMCTL_STAGE_CPU | MEMCTL_GATE), 0));
	cr_assert(eq(int, pthread_create(&g.tid, NULL, launch_graph, &g), 0));
	until_status("\"waiting\":1");
	cr_assert(eq(int, M.resume("weights", 0), 0));
	pthread_join(g.tid, NULL);
	cr_assert(eq(int, g.rc, cudaSuccess));
	cr_assert(eq(int, pattern_plus(p, MiB, 5), 1));
	cr_assert(eq(int, cudaGraphExecDestroy(g.exec), cudaSuccess));
	cr_assert(eq(int, cudaGraphDestroy(graph), cudaSuccess));
	cr_assert(eq(int, cudaFree(p), cudaSuccess));
}

/* Copies and memsets, through the runtime, the driver's symbols and
 * entry-point lookup: each waits in its own thread, and each lands. */
enum op { OP_MEMCPY, OP_MEMCPY_ASYNC, OP_MEMSET, OP_MEMSET_ASYNC, OP_D32_SYMBOL,
	  OP_DTOH_LOOKUP, OP_LAUNCH_EX_ENTRY, OP_D8_DLSYM, OP_COUNT };
#define SLICE 4096

struct op_job {
	pthread_t tid;
	enum op op;
	unsigned char *p;   /* its slice */
	unsigned char host[SLICE];
	int rc;
};

/* PyTorch's way to the driver (deprecated by CUDA 12.5, still used). */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
static void *entry_point(const char *name)
{
	enum cudaDriverEntryPointQueryResult q;
	void *fn = NULL;

	return cudaGetDriverEntryPoint(name, &fn, cudaEnableDefault, &q) == cudaSuccess ? fn : NULL;
}
#pragma GCC diagnostic pop

static int driver_op(struct op_job *j)
{
	CUdeviceptr d = (CUdeviceptr)(uintptr_t)j->p;
	size_t n = SLICE, f, t;
	void *fn = NULL;
	CUdriverProcAddressQueryResult st;

	(void)cudaMemGetInfo(&f, &t); /* the runtime makes the primary context current */
	if (j->op == OP_D32_SYMBOL) /* may return before the device has it */
		return cuMemsetD32(d, 0x33333333u, SLICE / 4) != CUDA_SUCCESS ? -1
		       : (int)cuCtxSynchronize();
	if (j->op == OP_D8_DLSYM) { /* a framework that opens the driver itself */
		void *h = dlopen("libcuda.so.1", RTLD_NOW | RTLD_NOLOAD);

		fn = h != NULL ? dlsym(h, "cuMemsetD8_v2") : NULL;
		if (h != NULL)
			dlclose(h);
		if (fn == NULL ||
		    ((CUresult (*)(CUdeviceptr, unsigned char, size_t))fn)(d, 0x55, SLICE) != 0)
			return -1;
		return (int)cuCtxSynchronize();
	}
	if (j->op == OP_DTOH_LOOKUP) {
		if (cuGetProcAddress("cuMemcpyDtoH", &fn, 3020, 0, &st) != CUDA_SUCCESS)
			return -1;
		return ((CUresult (*)(void *, CUdeviceptr, size_t))fn)(j->host, d, SLICE);
	}
	if ((fn = entry_point("cuLaunchKernelEx")) == NULL)
		return -1;
	{
		int byte = 0x44;
		void *args[] = { &d, &n, &byte };
		CUlaunchConfig cfg = { .gridDimX = 1, .gridDimY = 1, .gridDimZ = 1,
				       .blockDimX = 1, .blockDimY = 1, .blockDimZ = 1 };
		CUresult r = ((CUresult (*)(const CUlaunchConfig *, CUfunction, void **, void **))fn)(
			&cfg, (CUfunction)fakecuda_kernel("fill"), args, NULL);

		return r != CUDA_SUCCESS ? (int)r : (int)cuCtxSynchronize();
	}
}

static void *one_op(void *arg)
{
	struct op_job *j = arg;
	cudaStream_t s;

	memset(j->host, 0x10 + j->op, SLICE);
	switch (j->op) {
	case OP_MEMCPY: /* from pageable memory: may return before the device has it */
		j->rc = cudaMemcpy(j->p, j->host, SLICE, cudaMemcpyHostToDevice);
		if (j->rc == 0)
			j->rc = cudaDeviceSynchronize();
		break;
	case OP_MEMCPY_ASYNC:
	case OP_MEMSET_ASYNC:
		j->rc = cudaStreamCreate(&s);
		if (j->rc == 0)
			j->rc = j->op == OP_MEMSET_ASYNC ? cudaMemsetAsync(j->p, 0x22, SLICE, s)
				: cudaMemcpyAsync(j->p, j->host, SLICE, cudaMemcpyHostToDevice, s);
		if (j->rc == 0)
			j->rc = cudaStreamSynchronize(s);
		break;
	case OP_MEMSET:
		j->rc = cudaMemset(j->p, 0x11, SLICE);
		if (j->rc == 0)
			j->rc = cudaDeviceSynchronize();
		break;
	default:
		j->rc = driver_op(j);
		break;
	}
	return NULL;
}

static int every(const unsigned char *p, size_t n, unsigned char b)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (p[i] != b)
			return 0;
	return 1;
}

Test(gate, copies_and_memsets_of_every_kind_wait_and_land)
{
	unsigned char *p = weights(OP_COUNT * SLICE);
	static struct op_job jobs[OP_COUNT];
	char want[32];
	int i;

	cr_assert(eq(int, M.pause("weights", MEMCTL_STAGE_CPU | MEMCTL_GATE), 0));
	for (i = 0; i < OP_COUNT; i++) {
		jobs[i].op = (enum op)i;
		jobs[i].p = p + (size_t)i * SLICE;
		cr_assert(eq(int, pthread_create(&jobs[i].tid, NULL, one_op, &jobs[i]), 0));
	}
	snprintf(want, sizeof(want), "\"waiting\":%d", OP_COUNT);
	until_status(want);
	cr_assert(eq(int, M.resume("weights", 0), 0));
	for (i = 0; i < OP_COUNT; i++) {
		pthread_join(jobs[i].tid, NULL);
		cr_assert(eq(int, jobs[i].rc, 0), "op %d: %d", i, jobs[i].rc);
	}
	cr_assert(eq(int, every(p, SLICE, 0x10), 1));
	cr_assert(eq(int, every(p + SLICE, SLICE, 0x11), 1));
	cr_assert(eq(int, every(p + 2 * SLICE, SLICE, 0x11), 1));
	cr_assert(eq(int, every(p + 3 * SLICE, SLICE, 0x22), 1));
	cr_assert(eq(int, every(p + 4 * SLICE, SLICE, 0x33), 1));
	/* The copy to the host read the contents staged and brought back. */
	for (i = 0; i < SLICE; i++)
		cr_assert(eq(u8, jobs[OP_DTOH_LOOKUP].host[i],
			     pattern((size_t)OP_DTOH_LOOKUP * SLICE + (size_t)i, SEED)));
	cr_assert(eq(int, every(p + 6 * SLICE, SLICE, 0x44), 1));
	cr_assert(eq(int, every(p + 7 * SLICE, SLICE, 0x55), 1));
	cr_assert(eq(int, cudaFree(p), cudaSuccess));
}

/* Queries and host-only calls never wait: this thread would hang here. */
Test(gate, queries_and_host_only_calls_pass_a_closed_gate)
{
	unsigned char *p = weights(MiB);
	struct memctl_stat st;
	cudaStream_t s;
	cudaEvent_t ev;
	size_t f, t;
	void *untagged;

	cr_assert(eq(int, M.pause("weights", MEMCTL_GATE), 0));
	cr_assert(eq(int, cudaMemGetInfo(&f, &t), cudaSuccess));
	cr_assert(eq(int, cudaStreamCreate(&s), cudaSuccess));
	cr_assert(eq(int, cudaEventCreate(&ev), cudaSuccess));
	cr_assert(eq(int, cudaEventRecord(ev, s), cudaSuccess));
	(void)cudaEventQuery(ev);
	(void)cudaStreamQuery(s);
	cr_assert(eq(int, cudaStreamSynchronize(s), cudaSuccess));
	cr_assert(eq(int, cudaMalloc(&untagged, MiB), cudaSuccess));
	cr_assert(eq(int, cudaFree(untagged), cudaSuccess));
	cr_assert(eq(int, M.stat("weights", &st), 0));
	cr_assert(eq(int, cudaEventDestroy(ev), cudaSuccess));
	cr_assert(eq(int, cudaStreamDestroy(s), cudaSuccess));
	cr_assert(eq(int, M.resume("weights", 0), 0));
	cr_assert(eq(int, cudaFree(p), cudaSuccess));
}

/* The C API's default: an in-process caller (a trainer pausing its own
 * inference engine) keeps computing on memory it did not pause. */
Test(gate, a_pause_without_the_gate_flag_lets_work_run)
{
	unsigned char *p = weights(MiB), *other;
	struct job j;
	const char *st;

	cr_assert(eq(int, cudaMalloc((void **)&other, MiB), cudaSuccess));
	cr_assert(eq(int, cudaMemset(other, 0, MiB), cudaSuccess));
	cr_assert(eq(int, M.pause("weights", MEMCTL_STAGE_CPU), 0));
	st = until_status("\"gate\":{\"closed\":false");
	cr_assert(has(st, "\"paused_tags\":\"\""), "%s", st);
	j = (struct job){ .p = other, .n = MiB };
	add_and_wait(&j);
	cr_assert(eq(int, j.rc, cudaSuccess));
	cr_assert(eq(int, every(other, MiB, 1), 1));
	cr_assert(eq(int, M.resume("weights", 0), 0));
	cr_assert(eq(int, pattern_plus(p, MiB, 0), 1));
	cr_assert(eq(int, cudaFree(other), cudaSuccess));
	cr_assert(eq(int, cudaFree(p), cudaSuccess));
}

/* ---- the drain ---------------------------------------------------------- */

struct pauser {
	pthread_t tid;
	int rc;
	int order;   /* when it returned, counted with the launcher's */
};

static int returns;

static void *pause_gated(void *arg)
{
	struct pauser *q = arg;

	q->rc = M.pause("weights", MEMCTL_STAGE_CPU | MEMCTL_GATE);
	q->order = __atomic_add_fetch(&returns, 1, __ATOMIC_ACQ_REL);
	return NULL;
}

static void *launch_once(void *arg)
{
	struct job *j = arg;

	j->rc = add(j->p, j->n, 1, NULL);
	j->done = __atomic_add_fetch(&returns, 1, __ATOMIC_ACQ_REL);
	return NULL;
}

/* The race the gate must win: a launch that passed the gate just before
 * it closed (held inside the driver here) is finished before the pause
 * may drain and release. Without that, the kernel would be queued on
 * memory already gone. */
Test(gate, a_launch_racing_with_a_pause_is_submitted_before_memory_goes)
{
	unsigned char *p = weights(MiB);
	struct job l = { .p = p, .n = MiB };
	struct pauser q;
	const char *st;

	fakecuda_hold("cuLaunchKernel");
	cr_assert(eq(int, pthread_create(&l.tid, NULL, launch_once, &l), 0));
	while (fakecuda_held("cuLaunchKernel") != 1)
		usleep(1000);
	cr_assert(eq(int, pthread_create(&q.tid, NULL, pause_gated, &q), 0));
	st = until_status("\"draining\":1");
	cr_assert(has(st, "\"closed\":true"), "%s", st);
	/* The pause waits for the launch inside the driver. */
	cr_assert(eq(int, __atomic_load_n(&returns, __ATOMIC_ACQUIRE), 0));
	fakecuda_unhold();
	pthread_join(l.tid, NULL);
	pthread_join(q.tid, NULL);
	cr_assert(eq(int, l.rc, cudaSuccess));
	cr_assert(eq(int, q.rc, 0));
	cr_assert(lt(int, l.done, q.order));
	cr_assert(eq(int, released(p), 1));
	cr_assert(eq(int, M.resume("weights", 0), 0));
	/* The kernel ran before staging: its effect came back with the rest. */
	cr_assert(eq(int, pattern_plus(p, MiB, 1), 1));
	cr_assert(eq(long, fakecuda_violations(), 0));
	cr_assert(eq(int, cudaFree(p), cudaSuccess));
}

static int spin_flag;

static void spin_on(void *p, size_t n)
{
	int *flag = &spin_flag;
	void *args[] = { &flag, &p, &n };
	dim3 one = { 1, 1, 1 };
	cudaStream_t s;

	__atomic_store_n(&spin_flag, 0, __ATOMIC_RELEASE);
	cr_assert(eq(int, cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), cudaSuccess));
	cr_assert(eq(int, cudaLaunchKernel(fakecuda_kernel("spin"), one, one, args, 0, s),
		     cudaSuccess));
}

/* A kernel that never ends (a collective waiting for a peer): the pause
 * gives up at its deadline with nothing released and the gate open, the
 * next request runs at once, a second drain is not stuck behind the
 * first one's abandoned synchronisation, and once the work ends a pause
 * succeeds. */
Test(gate, a_drain_that_times_out_releases_nothing_and_frees_the_control_thread)
{
	unsigned char *p = weights(MiB);
	char buf[4096];
	const char *st;

	spin_on(p, MiB);
	self_request("pause tags=weights stage=cpu gate=1 timeout_ms=200\n", buf, sizeof(buf));
	cr_assert(has(buf, "\"error\":\"ETIMEDOUT\""), "%s", buf);
	cr_assert(has(buf, "GPU work still running after"), "%s", buf);
	cr_assert(has(buf, "a collective waiting for a peer?"), "%s", buf);
	cr_assert(has(buf, "nothing released, the gate is open again"), "%s", buf);
	cr_assert(eq(int, released(p), 0));
	cr_assert(eq(int, pattern_plus(p, MiB, 0), 1));
	st = until_status("\"stuck_drains\":1");
	cr_assert(has(st, "\"gate\":{\"closed\":false"), "%s", st);
	cr_assert(has(st, "\"running\":null"), "%s", st);
	self_request("prepare tags=weights\n", buf, sizeof(buf));
	cr_assert(has(buf, "\"ok\":true"), "%s", buf);
	self_request("pause tags=weights gate=1 timeout_ms=200\n", buf, sizeof(buf));
	cr_assert(has(buf, "\"error\":\"ETIMEDOUT\""), "%s", buf);
	until_status("\"stuck_drains\":2");
	/* The peer arrives: both abandoned synchronisations return. */
	__atomic_store_n(&spin_flag, 1, __ATOMIC_RELEASE);
	until_status("\"stuck_drains\":0");
	self_request("pause tags=weights stage=cpu gate=1 timeout_ms=5000\n", buf, sizeof(buf));
	cr_assert(has(buf, "\"ok\":true"), "%s", buf);
	cr_assert(eq(int, released(p), 1));
	cr_assert(eq(int, M.resume("weights", 0), 0));
	cr_assert(eq(int, pattern_plus(p, MiB, 0), 1));
	cr_assert(eq(int, cudaFree(p), cudaSuccess));
}

/* The strict driver's finding: synchronising the primary context does not
 * wait for work in a context the application created. The pause drains
 * that context too, so its kernel ran before the contents were staged. */
Test(gate, a_pause_drains_the_applications_own_context)
{
	unsigned char *p = weights(MiB);
	CUdeviceptr d = (CUdeviceptr)(uintptr_t)p;
	size_t n = MiB;
	int byte = 0x66;
	void *args[] = { &d, &n, &byte };
	CUcontext own, popped;

	cr_assert(eq(int, cuCtxCreate(&own, NULL, 0, 0), CUDA_SUCCESS));
	cr_assert(eq(int, cuLaunchKernel((CUfunction)fakecuda_kernel("fill"), 1, 1, 1, 1, 1, 1, 0,
				       NULL, args, NULL), CUDA_SUCCESS));
	cr_assert(eq(int, cuCtxPopCurrent(&popped), CUDA_SUCCESS));
	cr_assert(eq(int, M.pause("weights", MEMCTL_STAGE_CPU), 0));
	cr_assert(eq(int, M.resume("weights", 0), 0));
	cr_assert(eq(int, every(p, MiB, 0x66), 1));
	cr_assert(eq(int, cuCtxDestroy(own), CUDA_SUCCESS));
	cr_assert(eq(int, cudaFree(p), cudaSuccess));
}
