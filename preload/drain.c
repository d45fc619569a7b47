/* SPDX-License-Identifier: Apache-2.0 */
/*
 * drain.c - waiting, with a deadline, for the GPU work a process has
 * submitted: before a pause releases memory, every kernel, copy and graph
 * already queued must have finished, or it would touch unmapped memory and
 * take the context down with an illegal address.
 *
 * What is waited for: the primary context of every device memctl holds
 * (where its tagged memory lives), and every context the application made
 * itself with cuCtxCreate, which memctl remembers here (a synchronisation
 * of the primary context does not wait for those). Green contexts and
 * primary contexts of devices without tagged memory are not drained.
 *
 * cuCtxSynchronize cannot be cancelled. So the synchronisations run in a
 * helper thread of their own and the request waits for it until its
 * deadline or its cancel flag. A request that gives up leaves the helper
 * behind, still inside the driver: it finishes (and goes) whenever the
 * work does, and the request's thread is free at once. A later drain
 * starts a helper of its own and never waits for an abandoned one; at
 * most DRAIN_STUCK_MAX helpers may be left waiting at a time, after which
 * drains fail at once until one of them returns.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "drain.h"
#include "drv_cuda.h"
#include "gate.h"
#include "log.h"
#include "preload.h"
#include "proc.h"

#define DRAIN_STUCK_MAX 8
#define DRAIN_TICK_MS 50 /* how often a waiting request looks at its cancel flag */

/* ---- the application's own contexts ------------------------------------- */

struct app_ctx {
	CUcontext ctx;
	int syncing;   /* drains synchronising it now */
};

static struct {
	pthread_mutex_t lock;
	pthread_cond_t synced;   /* a drain finished with a context */
	struct app_ctx *list;
	size_t n, cap;
} app_ctxs = { .lock = PTHREAD_MUTEX_INITIALIZER, .synced = PTHREAD_COND_INITIALIZER };

static void remember(CUcontext ctx)
{
	static int warned;

	pthread_mutex_lock(&app_ctxs.lock);
	if (app_ctxs.n == app_ctxs.cap) {
		size_t cap = app_ctxs.cap ? app_ctxs.cap * 2 : 8;
		struct app_ctx *list = realloc(app_ctxs.list, cap * sizeof(*list));

		if (list == NULL) {
			pthread_mutex_unlock(&app_ctxs.lock);
			if (!__atomic_exchange_n(&warned, 1, __ATOMIC_ACQ_REL))
				memctl_log_warnx("no memory to remember a CUDA context: a pause "
						 "will not wait for its work");
			return;
		}
		app_ctxs.list = list;
		app_ctxs.cap = cap;
	}
	app_ctxs.list[app_ctxs.n++] = (struct app_ctx){ .ctx = ctx };
	pthread_mutex_unlock(&app_ctxs.lock);
}

/* Forget `ctx` before the driver destroys it. A drain synchronising it
 * now is waited for: the driver must not see it destroyed under its feet
 * (cuCtxDestroy waits for the context's work anyway). */
static void forget(CUcontext ctx)
{
	size_t i;

	pthread_mutex_lock(&app_ctxs.lock);
	for (i = 0; i < app_ctxs.n; i++) {
		if (app_ctxs.list[i].ctx != ctx)
			continue;
		while (app_ctxs.list[i].syncing > 0)
			pthread_cond_wait(&app_ctxs.synced, &app_ctxs.lock);
		app_ctxs.list[i] = app_ctxs.list[--app_ctxs.n];
		break;
	}
	pthread_mutex_unlock(&app_ctxs.lock);
}

CUresult drain_ctx_create_v2(CUcontext *pctx, unsigned int flags, CUdevice dev)
{
	PFN_cuCtxCreate_v3020 real = (PFN_cuCtxCreate_v3020)proc_real(PROC_CTX_CREATE_V2);
	CUresult r = real != NULL ? real(pctx, flags, dev) : CUDA_ERROR_NOT_INITIALIZED;

	if (r == CUDA_SUCCESS && pctx != NULL)
		remember(*pctx);
	return r;
}
PROC_EXPORT_AS(drain_ctx_create_v2, "cuCtxCreate_v2", PFN_cuCtxCreate_v3020);

CUresult drain_ctx_create_v3(CUcontext *pctx, CUexecAffinityParam *params, int nparams,
			     unsigned int flags, CUdevice dev)
{
	PFN_cuCtxCreate_v11040 real = (PFN_cuCtxCreate_v11040)proc_real(PROC_CTX_CREATE_V3);
	CUresult r = real != NULL ? real(pctx, params, nparams, flags, dev)
				  : CUDA_ERROR_NOT_INITIALIZED;

	if (r == CUDA_SUCCESS && pctx != NULL)
		remember(*pctx);
	return r;
}
PROC_EXPORT_AS(drain_ctx_create_v3, "cuCtxCreate_v3", PFN_cuCtxCreate_v11040);

#if CUDA_VERSION >= 12050
CUresult drain_ctx_create_v4(CUcontext *pctx, CUctxCreateParams *params, unsigned int flags,
			     CUdevice dev)
{
	PFN_cuCtxCreate_v12050 real = (PFN_cuCtxCreate_v12050)proc_real(PROC_CTX_CREATE_V4);
	CUresult r = real != NULL ? real(pctx, params, flags, dev) : CUDA_ERROR_NOT_INITIALIZED;

	if (r == CUDA_SUCCESS && pctx != NULL)
		remember(*pctx);
	return r;
}
PROC_EXPORT_AS(drain_ctx_create_v4, "cuCtxCreate_v4", PFN_cuCtxCreate_v12050);
#endif

CUresult drain_ctx_destroy(CUcontext ctx)
{
	PFN_cuCtxDestroy_v4000 real = (PFN_cuCtxDestroy_v4000)proc_real(PROC_CTX_DESTROY_V2);

	forget(ctx);
	return real != NULL ? real(ctx) : CUDA_ERROR_NOT_INITIALIZED;
}
PROC_EXPORT_AS(drain_ctx_destroy, "cuCtxDestroy_v2", PFN_cuCtxDestroy_v4000);

/* ---- one drain: a helper thread and the request waiting for it ------------ */

struct drain_job {
	pthread_mutex_t lock;
	pthread_cond_t done_cond;
	int refs;            /* the helper and the request */
	int done, rc, abandoned;
	uint32_t devs;
	size_t nctx;
	CUcontext *ctxs;     /* the application's contexts when it started */
	char what[64];       /* what failed */
};

static int stuck; /* helpers whose request gave up and that still wait */

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void put(struct drain_job *j)
{
	int last;

	pthread_mutex_lock(&j->lock);
	last = --j->refs == 0;
	pthread_mutex_unlock(&j->lock);
	if (!last)
		return;
	pthread_mutex_destroy(&j->lock);
	pthread_cond_destroy(&j->done_cond);
	free(j->ctxs);
	free(j);
}

/* Mark `ctx` as being synchronised, if the application still has it
 * (a cuCtxDestroy waits until unpin). 0 when it is gone. */
static int pin(CUcontext ctx)
{
	size_t i;
	int found = 0;

	pthread_mutex_lock(&app_ctxs.lock);
	for (i = 0; i < app_ctxs.n && !found; i++)
		if (app_ctxs.list[i].ctx == ctx) {
			app_ctxs.list[i].syncing++;
			found = 1;
		}
	pthread_mutex_unlock(&app_ctxs.lock);
	return found;
}

static void unpin(CUcontext ctx)
{
	size_t i;

	pthread_mutex_lock(&app_ctxs.lock);
	for (i = 0; i < app_ctxs.n; i++)
		if (app_ctxs.list[i].ctx == ctx && app_ctxs.list[i].syncing > 0) {
			app_ctxs.list[i].syncing--;
			break;
		}
	pthread_cond_broadcast(&app_ctxs.synced);
	pthread_mutex_unlock(&app_ctxs.lock);
}

/* The contexts the application has now. */
static int take_contexts(struct drain_job *j)
{
	size_t i;

	pthread_mutex_lock(&app_ctxs.lock);
	j->ctxs = calloc(app_ctxs.n ? app_ctxs.n : 1, sizeof(*j->ctxs));
	for (i = 0; j->ctxs != NULL && i < app_ctxs.n; i++)
		j->ctxs[j->nctx++] = app_ctxs.list[i].ctx;
	pthread_mutex_unlock(&app_ctxs.lock);
	return j->ctxs != NULL ? 0 : -ENOMEM;
}

static int sync_all(struct drain_job *j)
{
	const struct drv_ops *ops = drv_cuda_load();
	int d, rc = 0;
	size_t i;

	for (d = 0; ops != NULL && rc == 0 && d < REGION_MAX_DEV; d++)
		if ((j->devs & (1u << d)) && (rc = ops->device_sync(d)) < 0)
			snprintf(j->what, sizeof(j->what), "device %d", d);
	for (i = 0; rc == 0 && i < j->nctx; i++) {
		if (!pin(j->ctxs[i]))
			continue; /* destroyed meanwhile: its work is done */
		if ((rc = drv_cuda_ctx_sync(j->ctxs[i])) < 0)
			snprintf(j->what, sizeof(j->what), "a context of the application");
		unpin(j->ctxs[i]);
	}
	return rc;
}

static void *helper(void *arg)
{
	struct drain_job *j = arg;
	int rc = sync_all(j), abandoned;

	pthread_mutex_lock(&j->lock);
	j->done = 1;
	j->rc = rc;
	abandoned = j->abandoned;
	pthread_cond_broadcast(&j->done_cond);
	pthread_mutex_unlock(&j->lock);
	if (abandoned) {
		__atomic_sub_fetch(&stuck, 1, __ATOMIC_ACQ_REL);
		memctl_log_info("GPU work a pause gave up on has finished");
	}
	put(j);
	return NULL;
}

static struct drain_job *job_new(uint32_t devs)
{
	struct drain_job *j = calloc(1, sizeof(*j));
	pthread_condattr_t attr;

	if (j == NULL)
		return NULL;
	if (take_contexts(j) < 0) {
		free(j);
		return NULL;
	}
	pthread_mutex_init(&j->lock, NULL);
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&j->done_cond, &attr);
	pthread_condattr_destroy(&attr);
	j->devs = devs;
	j->refs = 2;
	return j;
}

/* The helper runs with every signal blocked, like memctl's other threads. */
static int start_helper(struct drain_job *j)
{
	sigset_t all, old;
	pthread_attr_t attr;
	pthread_t tid;
	int rc;

	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	rc = pthread_create(&tid, &attr, helper, j);
	pthread_attr_destroy(&attr);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return -rc;
}

/* Wait for the helper until the request's deadline (read each time: it
 * may be moved) or its cancel flag. 0 when it finished. */
static int wait_helper(struct drain_job *j, const struct region_req *rq)
{
	int rc = 0;

	pthread_mutex_lock(&j->lock);
	while (!j->done) {
		long long dl = __atomic_load_n(&rq->deadline_ms, __ATOMIC_ACQUIRE);
		long long wake = now_ms() + DRAIN_TICK_MS;
		struct timespec ts;

		/* The deadline first: the server also raises the cancel flag
		 * when it passes, and that is a timeout, not a client gone. */
		if (dl != 0 && now_ms() >= dl) {
			rc = -ETIMEDOUT;
			break;
		}
		if (rq->cancel != NULL && __atomic_load_n(rq->cancel, __ATOMIC_ACQUIRE)) {
			rc = -ECANCELED;
			break;
		}
		if (dl != 0 && dl < wake)
			wake = dl;
		ts.tv_sec = (time_t)(wake / 1000);
		ts.tv_nsec = (long)(wake % 1000) * 1000000;
		pthread_cond_timedwait(&j->done_cond, &j->lock, &ts);
	}
	if (j->done)
		rc = 0;
	else
		j->abandoned = 1;
	pthread_mutex_unlock(&j->lock);
	if (rc < 0)
		__atomic_add_fetch(&stuck, 1, __ATOMIC_ACQ_REL);
	return rc;
}

static int gave_up(int rc, long long t0, int inside, struct region_err *err)
{
	double s = (double)(now_ms() - t0) / 1e3;

	if (rc == -ECANCELED)
		return region_err_set(err, rc, "abandoned while waiting %.1f s for GPU work "
				      "to finish (its client left or it was cancelled)", s);
	if (inside > 0)
		return region_err_set(err, rc, "GPU work still running after %.1f s (%d thread%s "
				      "in a synchronous GPU call); a collective waiting for a "
				      "peer?", s, inside, inside == 1 ? "" : "s");
	return region_err_set(err, rc, "GPU work still running after %.1f s; a collective "
			      "waiting for a peer?", s);
}

static int sync_devices(const struct region_req *rq, long long t0, struct region_err *err)
{
	uint32_t devs = drv_cuda_primary_devices() | region_devices();
	struct drain_job *j;
	int rc;

	if (__atomic_load_n(&stuck, __ATOMIC_ACQUIRE) >= DRAIN_STUCK_MAX)
		return region_err_set(err, -EBUSY, "%d earlier pauses still wait for GPU work "
				      "that has not finished (a collective waiting for a peer?); "
				      "retry once it has", DRAIN_STUCK_MAX);
	j = job_new(devs);
	if (j == NULL)
		return region_err_set(err, -ENOMEM, "host memory: no room to drain the GPU");
	/* Nothing can stop the request (the C API), or no thread to spare:
	 * wait here, unbounded, as a pause always did. */
	rc = rq->deadline_ms == 0 && rq->cancel == NULL ? -1 : start_helper(j);
	if (rc < 0) {
		j->refs = 1;
		rc = sync_all(j);
		if (rc < 0)
			region_err_set(err, rc, "device synchronisation failed on %s "
				       "(cuCtxSynchronize)", j->what);
		put(j);
		return rc;
	}
	rc = wait_helper(j, rq);
	if (rc == 0 && j->rc < 0)
		rc = region_err_set(err, j->rc, "device synchronisation failed on %s "
				    "(cuCtxSynchronize)", j->what);
	else if (rc < 0)
		gave_up(rc, t0, 0, err);
	put(j);
	return rc;
}

int drain_work(const struct region_req *rq, int gated, struct region_err *err)
{
	long long t0 = now_ms();
	int inside = 0, rc;

	if (gated) {
		rc = gate_quiesce(__atomic_load_n(&rq->deadline_ms, __ATOMIC_ACQUIRE), rq->cancel,
				  &inside);
		if (rc < 0)
			return gave_up(rc, t0, inside, err);
	}
	if (drv_cuda_load() == NULL)
		return 0; /* no driver, no work */
	return sync_devices(rq, t0, err);
}

int drain_stuck(void)
{
	return __atomic_load_n(&stuck, __ATOMIC_ACQUIRE);
}

void drain_after_fork(void)
{
	/* The parent's contexts and helpers are not the child's. */
	pthread_mutex_init(&app_ctxs.lock, NULL);
	pthread_cond_init(&app_ctxs.synced, NULL);
	app_ctxs.n = 0;
	__atomic_store_n(&stuck, 0, __ATOMIC_RELEASE);
}
