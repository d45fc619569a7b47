/* SPDX-License-Identifier: Apache-2.0 */
/*
 * test_gate.c - the gate (preload/gate.c) and the drain (preload/drain.c)
 * on the simulated driver: who waits, when it opens, what a drain waits
 * for and how it gives up. Nothing here waits for a guessed duration: a
 * thread "inside" a driver call is held there by the test, and every
 * "has it happened yet" is asked of the gate's own counts.
 */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>
#include <cuda.h>
#include <errno.h>
#include <pthread.h>
#include <time.h>

#include "drain.h"
#include "fixture.h"
#include "gate.h"

#define MiB (1ull << 20)

static void setup(void)
{
	setenv("MEMCTL_SOCKET", "0", 1);
	fixture_setup();
	cr_assert(eq(int, fakecuda_set_async("lazy"), 0));
}

static void teardown(void)
{
	gate_ungate();
	fixture_teardown();
}

TestSuite(gate, .init = setup, .fini = teardown, .timeout = 30);

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static struct gate_view view(void)
{
	struct gate_view v;

	gate_view(&v);
	return v;
}

/* Until `n` threads wait at the gate (the suite's timeout bounds it). */
static void until_waiting(int n)
{
	while (view().waiting != n)
		usleep(1000);
}

/* A thread that passes the gate once, as a gated driver call does, and
 * then stays inside until told to leave. */
struct passer {
	pthread_t tid;
	int passed;       /* it is past the gate */
	int leave;        /* set by the test */
	int left;
};

static void *pass(void *arg)
{
	struct passer *p = arg;
	struct gate_slot *s = gate_enter();

	__atomic_store_n(&p->passed, 1, __ATOMIC_RELEASE);
	while (!__atomic_load_n(&p->leave, __ATOMIC_ACQUIRE))
		usleep(500);
	gate_leave(s);
	__atomic_store_n(&p->left, 1, __ATOMIC_RELEASE);
	return NULL;
}

static void start(struct passer *p, int leave_at_once)
{
	memset(p, 0, sizeof(*p));
	p->leave = leave_at_once;
	cr_assert(eq(int, pthread_create(&p->tid, NULL, pass, p), 0));
}

static struct tagset tags_of(const char *spec)
{
	struct tagset ts;

	cr_assert(eq(int, tagset_parse(spec, &ts, NULL), 0));
	return ts;
}

Test(gate, open_it_costs_nothing_and_nobody_waits)
{
	struct passer p;

	cr_assert(eq(int, view().closed, 0));
	start(&p, 1);
	pthread_join(p.tid, NULL);
	cr_assert(eq(int, p.left, 1));
	cr_assert(eq(u64, view().waits, 0));
}

Test(gate, closed_while_a_request_drains_then_open_again)
{
	struct passer p;

	gate_drain_begin();
	cr_assert(eq(int, view().closed, 1));
	start(&p, 1);
	until_waiting(1);
	cr_assert(eq(int, __atomic_load_n(&p.passed, __ATOMIC_ACQUIRE), 0));
	gate_drain_end(NULL, 0);
	pthread_join(p.tid, NULL);
	cr_assert(eq(int, p.left, 1));
	cr_assert(eq(int, view().closed, 0));
	cr_assert(eq(int, view().waiting, 0));
	cr_assert(eq(u64, view().waits, 1));
}

/* The tags a gated pause released keep it closed until they are resumed;
 * a resume of other tags does not open it. */
static const char *still_paused_tag;

static int paused_if_named(const struct tagset *ts)
{
	int i;

	if (still_paused_tag == NULL)
		return 0;
	if (ts->all)
		return 1;
	for (i = 0; i < ts->n; i++)
		if (strcmp(ts->names[i], still_paused_tag) == 0)
			return 1;
	return 0;
}

Test(gate, paused_tags_hold_it_until_resumed)
{
	struct tagset ts = tags_of("weights,kv_cache");
	struct passer p;

	gate_drain_begin();
	gate_drain_end(&ts, 1);
	cr_assert(eq(str, view().held, "weights,kv_cache"));
	start(&p, 1);
	until_waiting(1);
	still_paused_tag = "kv_cache";
	gate_forget_resumed(paused_if_named);
	cr_assert(eq(str, view().held, "kv_cache"));
	cr_assert(eq(int, view().closed, 1));
	cr_assert(eq(int, view().waiting, 1));
	still_paused_tag = NULL;
	gate_forget_resumed(paused_if_named);
	pthread_join(p.tid, NULL);
	cr_assert(eq(int, view().closed, 0));
	cr_assert(eq(str, view().held, ""));
}

/* A group pause's first phase: closed by a lease that opens by itself,
 * so that a CLI that dies between the phases leaves nothing waiting. */
Test(gate, a_lease_that_runs_out_opens_it_by_itself)
{
	struct passer p;
	unsigned id = gate_lease(now_ms() + 200);

	cr_assert(eq(int, view().closed, 1));
	cr_assert(eq(int, gate_lease_current(id), 1));
	start(&p, 1);
	/* Nobody else acts: the waiter itself notices the end of the lease. */
	pthread_join(p.tid, NULL);
	cr_assert(eq(int, p.left, 1));
	cr_assert(eq(int, view().closed, 0));
	cr_assert(eq(int, gate_lease_current(id), 0));
}

Test(gate, ungate_ends_the_lease_and_a_pause_takes_it_over)
{
	struct passer p;
	unsigned id = gate_lease(now_ms() + 600000);

	start(&p, 1);
	until_waiting(1);
	gate_ungate();
	pthread_join(p.tid, NULL);
	cr_assert(eq(int, gate_lease_current(id), 0));
	/* A pause ends the lease it found, and holds by its tags instead. */
	id = gate_lease(now_ms() + 600000);
	gate_drain_begin();
	{
		struct tagset ts = tags_of("weights");

		gate_drain_end(&ts, 1);
	}
	cr_assert(eq(int, gate_lease_current(id), 0));
	cr_assert(eq(int, view().closed, 1));
	cr_assert(eq(long, (long)view().lease_ms, 0));
	still_paused_tag = NULL;
	gate_forget_resumed(paused_if_named);
	cr_assert(eq(int, view().closed, 0));
}

/* A submission that passed the check just before the gate closed is
 * waited for: the drain may not start while it is still in the driver. */
Test(gate, quiesce_waits_for_a_call_already_past_the_gate)
{
	struct passer p;
	int inside = -1;

	start(&p, 0);
	while (!__atomic_load_n(&p.passed, __ATOMIC_ACQUIRE))
		usleep(500);
	gate_drain_begin();
	cr_assert(eq(int, gate_quiesce(now_ms() + 50, NULL, &inside), -ETIMEDOUT));
	cr_assert(eq(int, inside, 1));
	__atomic_store_n(&p.leave, 1, __ATOMIC_RELEASE);
	cr_assert(eq(int, gate_quiesce(0, NULL, &inside), 0));
	cr_assert(eq(int, inside, 0));
	cr_assert(eq(int, __atomic_load_n(&p.left, __ATOMIC_ACQUIRE), 1));
	gate_drain_end(NULL, 0);
	pthread_join(p.tid, NULL);
}

Test(gate, quiesce_stops_when_cancelled)
{
	struct passer p;
	int inside, cancel = 1;

	start(&p, 0);
	while (!__atomic_load_n(&p.passed, __ATOMIC_ACQUIRE))
		usleep(500);
	gate_drain_begin();
	cr_assert(eq(int, gate_quiesce(0, &cancel, &inside), -ECANCELED));
	__atomic_store_n(&p.leave, 1, __ATOMIC_RELEASE);
	pthread_join(p.tid, NULL);
	gate_drain_end(NULL, 0);
}

/* A thread waiting at the gate is not inside it: a drain never waits for
 * a thread that waits for the drain. */
Test(gate, a_waiting_thread_does_not_hold_up_the_drain)
{
	struct passer p;
	int inside = -1;

	gate_drain_begin();
	start(&p, 1);
	until_waiting(1);
	cr_assert(eq(int, gate_quiesce(0, NULL, &inside), 0));
	cr_assert(eq(int, inside, 0));
	gate_drain_end(NULL, 0);
	pthread_join(p.tid, NULL);
}

/* Nested gated calls (a runtime call that calls the driver) pass once. */
Test(gate, a_nested_call_does_not_wait_for_its_own_outer_call)
{
	struct gate_slot *outer = gate_enter(), *inner;
	int inside;

	gate_drain_begin();
	inner = gate_enter(); /* would wait forever if it checked again */
	gate_leave(inner);
	cr_assert(eq(int, gate_quiesce(now_ms() + 20, NULL, &inside), -ETIMEDOUT));
	gate_leave(outer);
	cr_assert(eq(int, gate_quiesce(0, NULL, &inside), 0));
	gate_drain_end(NULL, 0);
}

/* ---- the wrappers, through the driver's own symbols ------------------- */

static CUdeviceptr dev_alloc(size_t n)
{
	CUcontext ctx;
	CUdeviceptr p;

	cr_assert(eq(int, cuDevicePrimaryCtxRetain(&ctx, 0), CUDA_SUCCESS));
	cr_assert(eq(int, cuCtxSetCurrent(ctx), CUDA_SUCCESS));
	cr_assert(eq(int, cuMemAlloc(&p, n), CUDA_SUCCESS));
	return p;
}

struct launcher {
	CUdeviceptr p;
	size_t n;
	int done;
	CUresult r;
};

static void *launch_fill(void *arg)
{
	struct launcher *l = arg;
	CUfunction fill = (CUfunction)fakecuda_kernel("fill");
	int byte = 0x5a;
	void *args[] = { &l->p, &l->n, &byte };
	CUcontext ctx;

	cuDevicePrimaryCtxRetain(&ctx, 0);
	cuCtxSetCurrent(ctx);
	l->r = cuLaunchKernel(fill, 1, 1, 1, 1, 1, 1, 0, NULL, args, NULL);
	if (l->r == CUDA_SUCCESS)
		l->r = cuStreamSynchronize(NULL);
	__atomic_store_n(&l->done, 1, __ATOMIC_RELEASE);
	return NULL;
}

Test(gate, cuLaunchKernel_waits_while_closed_and_runs_after)
{
	struct launcher l = { .n = MiB };
	pthread_t t;

	l.p = dev_alloc(l.n);
	memset((void *)(uintptr_t)l.p, 0, l.n);
	gate_drain_begin();
	cr_assert(eq(int, pthread_create(&t, NULL, launch_fill, &l), 0));
	until_waiting(1);
	cr_assert(eq(int, __atomic_load_n(&l.done, __ATOMIC_ACQUIRE), 0));
	cr_assert(eq(int, ((unsigned char *)(uintptr_t)l.p)[0], 0));
	gate_drain_end(NULL, 0);
	pthread_join(t, NULL);
	cr_assert(eq(int, l.r, CUDA_SUCCESS));
	cr_assert(eq(int, ((unsigned char *)(uintptr_t)l.p)[l.n - 1], 0x5a));
	cr_assert(eq(int, cuMemFree(l.p), CUDA_SUCCESS));
}

/* Queries and host-only calls pass a closed gate (this thread would wait
 * for ever otherwise). */
Test(gate, queries_and_host_calls_do_not_wait)
{
	CUdeviceptr p = dev_alloc(MiB);
	size_t fr, tot;
	CUevent ev;
	CUstream s;

	gate_drain_begin();
	cr_assert(eq(int, cuMemGetInfo(&fr, &tot), CUDA_SUCCESS));
	cr_assert(eq(int, cuStreamCreate(&s, 0), CUDA_SUCCESS));
	cr_assert(eq(int, cuEventCreate(&ev, 0), CUDA_SUCCESS));
	cr_assert(eq(int, cuEventRecord(ev, s), CUDA_SUCCESS));
	cr_assert(le(int, (int)cuStreamQuery(s), (int)CUDA_ERROR_NOT_READY));
	cr_assert(eq(int, cuStreamSynchronize(s), CUDA_SUCCESS));
	cr_assert(eq(int, cuEventDestroy(ev), CUDA_SUCCESS));
	cr_assert(eq(int, cuStreamDestroy(s), CUDA_SUCCESS));
	gate_drain_end(NULL, 0);
	cr_assert(eq(int, view().waiting, 0));
	cr_assert(eq(int, cuMemFree(p), CUDA_SUCCESS));
}

/* ---- the drain ------------------------------------------------------- */

/* Tagged memory on device 0, as a pause would find it. */
static CUdeviceptr tagged_alloc(size_t n)
{
	struct region_err err;
	uint64_t va;

	(void)dev_alloc(1); /* a current context for this thread's launches */
	cr_assert(eq(int, region_alloc("weights", 0, 0, n, &va, &err), 0), "%s", err.msg);
	return (CUdeviceptr)va;
}

static struct region_req req_until(long long deadline, const int *cancel)
{
	struct region_req rq;

	memset(&rq, 0, sizeof(rq));
	rq.tags.all = 1;
	rq.deadline_ms = deadline;
	rq.cancel = cancel;
	return rq;
}

/* A spin kernel stands for a collective waiting for a peer: the drain
 * gives up at the deadline, and a second drain is not stuck behind the
 * first one's abandoned synchronisation. */
Test(gate, a_drain_gives_up_at_its_deadline_and_the_next_is_not_stuck)
{
	CUfunction spin = (CUfunction)fakecuda_kernel("spin");
	CUdeviceptr p = tagged_alloc(MiB);
	static int flag;
	int *fp = &flag;
	size_t n = MiB;
	void *args[] = { &fp, &p, &n };
	struct region_req rq;
	struct region_err err;

	cr_assert(eq(int, cuLaunchKernel(spin, 1, 1, 1, 1, 1, 1, 0, NULL, args, NULL),
		     CUDA_SUCCESS));
	rq = req_until(now_ms() + 100, NULL);
	cr_assert(eq(int, drain_work(&rq, 0, &err), -ETIMEDOUT));
	cr_assert(not(eq(ptr, strstr(err.msg, "GPU work still running after"), NULL)), "%s",
		  err.msg);
	cr_assert(not(eq(ptr, strstr(err.msg, "a collective waiting for a peer?"), NULL)));
	cr_assert(eq(int, drain_stuck(), 1));
	rq = req_until(now_ms() + 100, NULL);
	cr_assert(eq(int, drain_work(&rq, 0, &err), -ETIMEDOUT));
	cr_assert(eq(int, drain_stuck(), 2));
	/* The peer comes: the work finishes, and with it both helpers. */
	__atomic_store_n(&flag, 1, __ATOMIC_RELEASE);
	while (drain_stuck() != 0)
		usleep(1000);
	rq = req_until(0, NULL);
	cr_assert(eq(int, drain_work(&rq, 0, &err), 0));
	cr_assert(eq(int, region_free(p), 0));
}

Test(gate, a_drain_whose_client_leaves_stops_waiting)
{
	CUfunction spin = (CUfunction)fakecuda_kernel("spin");
	CUdeviceptr p = tagged_alloc(MiB);
	static int flag;
	int *fp = &flag, cancel = 1;
	size_t n = MiB;
	void *args[] = { &fp, &p, &n };
	struct region_req rq = req_until(0, &cancel);
	struct region_err err;

	cr_assert(eq(int, cuLaunchKernel(spin, 1, 1, 1, 1, 1, 1, 0, NULL, args, NULL),
		     CUDA_SUCCESS));
	cr_assert(eq(int, drain_work(&rq, 0, &err), -ECANCELED));
	__atomic_store_n(&flag, 1, __ATOMIC_RELEASE);
	while (drain_stuck() != 0)
		usleep(1000);
	cr_assert(eq(int, region_free(p), 0));
}

/* The strict fake's finding: synchronising the primary context does not
 * wait for work in a context the application created itself. memctl
 * remembers those (cuCtxCreate) and drains them too. */
Test(gate, a_drain_waits_for_work_in_the_applications_own_context)
{
	CUdeviceptr p = tagged_alloc(MiB);
	CUfunction fill = (CUfunction)fakecuda_kernel("fill");
	CUcontext own, popped;
	size_t n = MiB;
	int byte = 0x77;
	void *args[] = { &p, &n, &byte };
	struct region_req rq = req_until(0, NULL);
	struct region_err err;

	memset((void *)(uintptr_t)p, 0, MiB);
	cr_assert(eq(int, cuCtxCreate(&own, NULL, 0, 0), CUDA_SUCCESS));
	cr_assert(eq(int, cuLaunchKernel(fill, 1, 1, 1, 1, 1, 1, 0, NULL, args, NULL),
		     CUDA_SUCCESS));
	cr_assert(eq(int, cuCtxPopCurrent(&popped), CUDA_SUCCESS));
	cr_assert(eq(ptr, (void *)popped, (void *)own));
	cr_assert(eq(int, ((unsigned char *)(uintptr_t)p)[0], 0)); /* lazy: queued */
	cr_assert(eq(int, drain_work(&rq, 0, &err), 0));
	cr_assert(eq(int, ((unsigned char *)(uintptr_t)p)[MiB - 1], 0x77));
	cr_assert(eq(int, cuCtxDestroy(own), CUDA_SUCCESS));
	cr_assert(eq(int, region_free(p), 0));
}
