/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fake_stream.c - queued work of the simulated driver: streams, events,
 * and the copies and memsets that run on them.
 *
 * Work is queued per stream and runs in stream order. When it runs depends
 * on FAKECUDA_ASYNC:
 *
 *   lazy   (default) only when the program waits for it: a stream, an event
 *          recorded after it, or its context is synchronised (a query runs
 *          what it can without blocking, and says "not ready" once when it
 *          ran anything). A program that forgets to wait sees the work not
 *          done, every time: at least as strict as any GPU.
 *   delay  a few executor threads run it after a random delay of up to
 *          FAKECUDA_DELAY_US (2000) microseconds, seeded by FAKECUDA_SEED;
 *          waiting runs it at once. For races that only show when work
 *          finishes while the program does something else.
 *   eager  at once, in the submitting thread (the old behaviour; for
 *          comparison only: it forgives every missing wait).
 *
 * Streams of a context run independently, except as on the GPU: the NULL
 * (legacy) stream waits for earlier work of every blocking stream, and
 * blocking streams wait for earlier work of the NULL stream; streams
 * created CU_STREAM_NON_BLOCKING wait for nobody. The per-thread default
 * stream is taken as the legacy one.
 *
 * Every piece of work names the memory it touches. When it runs, device
 * memory it touches must be mapped and accessible (a stream-ordered
 * allocation: allocated by then), and pinned host memory must still be
 * pinned; otherwise the context is lost with a sticky
 * CUDA_ERROR_ILLEGAL_ADDRESS and the work does nothing. After that every
 * later call of the process fails with that error, as on a GPU.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "fake.h"

#define EXECUTORS 4

/* ---- streams and their queues ----------------------------------------- */

struct fstream *stream_new_locked(struct fctx *ctx, enum stream_kind kind)
{
	struct fstream *s = calloc(1, sizeof(*s));

	if (s == NULL)
		return NULL;
	s->magic = STREAM_MAGIC;
	s->ctx = ctx;
	s->kind = kind;
	s->next = ctx->streams;
	ctx->streams = s;
	return s;
}

CUresult stream_get(CUstream h, struct fstream **out)
{
	struct fstream *s = (struct fstream *)(void *)h;
	struct fctx *x;

	if (h == NULL || h == CU_STREAM_LEGACY || h == CU_STREAM_PER_THREAD) {
		x = ctx_current();
		if (x == NULL)
			return CUDA_ERROR_INVALID_CONTEXT;
		*out = x->legacy;
		return *out != NULL ? CUDA_SUCCESS : CUDA_ERROR_OUT_OF_MEMORY;
	}
	if (s->magic != STREAM_MAGIC || s->destroyed)
		return CUDA_ERROR_INVALID_HANDLE;
	*out = s;
	return CUDA_SUCCESS;
}

struct op *op_new(enum op_kind kind, const char *what)
{
	struct op *op = calloc(1, sizeof(*op));

	if (op != NULL) {
		op->kind = kind;
		op->what = what;
	}
	return op;
}

void op_touch(struct op *op, uint64_t va, size_t n, int device)
{
	struct touch *t = &op->touch[op->ntouch++];

	t->va = va;
	t->n = n;
	t->device = device;
	t->pinned = !device && host_registered_locked(va, n);
}

static void op_free(struct op *op)
{
	if (op->kind == OP_COPY)
		free(op->u.copy.staging);
	free(op);
}

/* Queued ops are iterated through every stream of every context. */
#define FOR_EACH_STREAM(x, s)                                          \
	for (x = sim.ctxs; x < sim.ctxs + CTX_MAX; x++)                 \
		if (x->used || x->streams != NULL)                       \
			for (s = x->streams; s != NULL; s = s->next)

const struct op *queued_touching_locked(uint64_t va, size_t n, const struct op *except)
{
	const struct fctx *x;
	const struct fstream *s;
	const struct op *op;
	int i;

	FOR_EACH_STREAM(x, s)
		for (op = s->head; op != NULL; op = op->next) {
			if (op == except)
				continue;
			for (i = 0; i < op->ntouch; i++)
				if (va < op->touch[i].va + op->touch[i].n &&
				    op->touch[i].va < va + n)
					return op;
			if ((op->kind == OP_ALLOC || op->kind == OP_FREE) &&
			    op->u.mem.va >= va && op->u.mem.va < va + n)
				return op;
		}
	return NULL;
}

/* A stream's head op may run when the work it waits for has finished;
 * otherwise the stream to run first, and up to which op. */
static struct fstream *blocker_locked(const struct op *op, uint64_t *upto)
{
	const struct fstream *s = op->stream;
	struct fstream *d;

	if (op->kind == OP_WAIT) {
		d = op->u.wait.s;
		if (d->head != NULL && d->head->seq <= op->u.wait.seq) {
			*upto = op->u.wait.seq;
			return d;
		}
	}
	*upto = op->seq - 1;
	if (s->kind == STREAM_BLOCKING) {
		d = s->ctx->legacy;
		if (d != NULL && d->head != NULL && d->head->seq < op->seq)
			return d;
	} else if (s->kind == STREAM_LEGACY) {
		for (d = s->ctx->streams; d != NULL; d = d->next)
			if (d->kind == STREAM_BLOCKING && d->head != NULL &&
			    d->head->seq < op->seq)
				return d;
	}
	return NULL;
}

void illegal_locked(const struct op *op, uint64_t va)
{
	if (__atomic_load_n(&sim.sticky, __ATOMIC_RELAXED) == CUDA_SUCCESS)
		__atomic_store_n(&sim.sticky, CUDA_ERROR_ILLEGAL_ADDRESS, __ATOMIC_RELEASE);
	sim_violation(1, "illegal address: %s on stream %p touched 0x%llx, which is not "
		      "mapped for the device: the context is lost (CUDA_ERROR_ILLEGAL_ADDRESS)",
		      op->what, (void *)op->stream, (unsigned long long)va);
}

/* The first address op may not touch now, or 0. */
static uint64_t bad_touch_locked(const struct op *op)
{
	uint64_t bad;
	int i;

	for (i = 0; i < op->ntouch; i++) {
		const struct touch *t = &op->touch[i];

		if (t->n == 0)
			continue;
		if (t->device && (bad = inaccessible_locked(t->va, t->n)) != 0)
			return bad;
		if (t->pinned && !host_registered_locked(t->va, t->n))
			return t->va;
	}
	return 0;
}

static void effect(struct op *op)
{
	size_t i;

	switch (op->kind) {
	case OP_COPY:
		memmove(op->u.copy.dst, op->u.copy.staging ? op->u.copy.staging : op->u.copy.src,
			op->u.copy.n);
		break;
	case OP_MEMSET:
		if (op->u.set.width == 1)
			memset(op->u.set.dst, (int)op->u.set.value, op->u.set.count);
		else
			for (i = 0; i < op->u.set.count; i++)
				((uint32_t *)op->u.set.dst)[i] = op->u.set.value;
		break;
	case OP_KERNEL:
		kernel_run(op);
		break;
	default:
		break;
	}
}

/* Touch memory under the shared memory lock, so that nobody unmaps it
 * midway; the driver lock is free meanwhile. */
static void run_memory_locked(struct op *op)
{
	uint64_t bad;

	UNLOCK();
	pthread_rwlock_rdlock(&sim.mem);
	pthread_mutex_lock(&sim.lock);
	if (__atomic_load_n(&sim.sticky, __ATOMIC_ACQUIRE) == CUDA_SUCCESS) {
		bad = bad_touch_locked(op);
		if (bad != 0) {
			illegal_locked(op, bad);
		} else {
			UNLOCK();
			effect(op);
			pthread_mutex_lock(&sim.lock);
		}
	}
	UNLOCK();
	pthread_rwlock_unlock(&sim.mem);
	pthread_mutex_lock(&sim.lock);
}

/* Execute s's head op (s->busy is ours) and retire it. */
static void run_head_locked(struct fstream *s)
{
	struct op *op = s->head;
	int lost = __atomic_load_n(&sim.sticky, __ATOMIC_ACQUIRE) != CUDA_SUCCESS;

	if (!lost) {
		switch (op->kind) {
		case OP_HOST_FN:
			UNLOCK();
			op->u.host.fn(op->u.host.data);
			pthread_mutex_lock(&sim.lock);
			break;
		case OP_KERNEL:
			kernel_started(op, 1);
			UNLOCK();
			kernel_spin(op);
			pthread_mutex_lock(&sim.lock);
			run_memory_locked(op);
			kernel_started(op, -1);
			break;
		case OP_COPY:
		case OP_MEMSET:
			run_memory_locked(op);
			break;
		case OP_ALLOC:
			pool_alloc_run_locked(op);
			break;
		case OP_FREE:
			pool_free_run_locked(op);
			break;
		default:
			break;
		}
	}
	s->head = op->next;
	if (s->head == NULL)
		s->tail = NULL;
	s->busy = 0;
	pthread_cond_broadcast(&sim.changed);
	op_free(op);
}

/* Run s up to seq `upto`. Without `block`, stop (returning 1) rather than
 * wait for another thread or a kernel that spins; *ran counts ops run. */
static int run_locked(struct fstream *s, uint64_t upto, int block, int *ran)
{
	struct fstream *d;
	uint64_t dupto;

	for (;;) {
		struct op *op = s->head;

		if (op == NULL || op->seq > upto)
			return 0;
		if (s->busy) {
			if (!block)
				return 1;
			pthread_cond_wait(&sim.changed, &sim.lock);
			continue;
		}
		d = blocker_locked(op, &dupto);
		if (d != NULL) {
			if (run_locked(d, dupto, block, ran))
				return 1;
			continue;
		}
		if (!block && kernel_would_block(op))
			return 1;
		s->busy = 1;
		run_head_locked(s);
		(*ran)++;
	}
}

void run_stream_locked(struct fstream *s, uint64_t upto)
{
	int ran = 0;

	(void)run_locked(s, upto, 1, &ran);
}

/* Streams may come and go while work runs (the lock is dropped then):
 * look for one with work due from the start of the list each time. */
void ctx_sync_locked(struct fctx *ctx)
{
	uint64_t upto = sim.seq;
	struct fstream *s, **link;

	for (;;) {
		for (s = ctx->streams; s != NULL; s = s->next)
			if (s->head != NULL && s->head->seq <= upto)
				break;
		if (s == NULL)
			break;
		run_stream_locked(s, upto);
	}
	/* Destroyed streams leave the list once empty; events may still
	 * point at them, so they are kept (on sim.retired), never freed. */
	for (link = &ctx->streams; (s = *link) != NULL;) {
		if (s->destroyed && s->head == NULL) {
			*link = s->next;
			s->next = sim.retired;
			sim.retired = s;
		} else {
			link = &s->next;
		}
	}
}

/* ---- the delay executor -------------------------------------------------- */

static struct fstream *ready_stream_locked(uint64_t now, uint64_t *next)
{
	struct fctx *x;
	struct fstream *s;
	uint64_t dupto;

	FOR_EACH_STREAM(x, s) {
		struct op *op = s->head;

		if (op == NULL || s->busy)
			continue;
		if (op->ready_ns > now) {
			if (*next == 0 || op->ready_ns < *next)
				*next = op->ready_ns;
			continue;
		}
		if (blocker_locked(op, &dupto) == NULL)
			return s;
	}
	return NULL;
}

static void *executor(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&sim.lock);
	for (;;) {
		uint64_t next = 0;
		struct fstream *s = NULL;

		if (sim.async == ASYNC_DELAY)
			s = ready_stream_locked(sim_now_ns(), &next);
		if (s != NULL) {
			s->busy = 1;
			run_head_locked(s);
		} else if (next != 0) {
			struct timespec ts = { .tv_sec = (time_t)(next / 1000000000ull),
					       .tv_nsec = (long)(next % 1000000000ull) };

			pthread_cond_timedwait(&sim.changed, &sim.lock, &ts);
		} else {
			pthread_cond_wait(&sim.changed, &sim.lock);
		}
	}
	return NULL;
}

static void start_executors_locked(void)
{
	pthread_t t;

	while (sim.executors < EXECUTORS && pthread_create(&t, NULL, executor, NULL) == 0) {
		pthread_detach(t);
		sim.executors++;
	}
}

CUresult submit_locked(struct fstream *s, struct op *op)
{
	struct fgraph *g = s->capture;

	if (g != NULL) { /* captured into a graph instead */
		if (g->n == g->cap) {
			size_t cap = g->cap ? g->cap * 2 : 16;
			struct op *ops = realloc(g->ops, cap * sizeof(*ops));

			if (ops == NULL) {
				op_free(op);
				return CUDA_ERROR_OUT_OF_MEMORY;
			}
			g->ops = ops;
			g->cap = cap;
		}
		g->ops[g->n++] = *op;
		free(op); /* the template keeps its staging buffer, if any */
		return CUDA_SUCCESS;
	}
	op->seq = ++sim.seq;
	op->stream = s;
	if (s->tail != NULL)
		s->tail->next = op;
	else
		s->head = op;
	s->tail = op;
	if (sim.async == ASYNC_DELAY) {
		op->ready_ns = sim_now_ns() +
			       (sim.delay_us ? (uint64_t)(rand_r(&sim.rng) % sim.delay_us) * 1000 : 0);
		start_executors_locked();
	} else if (sim.async == ASYNC_EAGER) {
		run_stream_locked(s, op->seq);
	}
	pthread_cond_broadcast(&sim.changed);
	return CUDA_SUCCESS;
}

/* ---- streams ----------------------------------------------------------- */

EXPORT CUresult cuStreamCreate(CUstream *ps, unsigned int flags)
{
	struct fctx *x;
	struct fstream *s;

	ENTER_LIVE("cuStreamCreate");
	x = ctx_current();
	if (x == NULL)
		return CUDA_ERROR_INVALID_CONTEXT;
	if (ps == NULL || (flags & ~(unsigned)CU_STREAM_NON_BLOCKING))
		return CUDA_ERROR_INVALID_VALUE;
	LOCK();
	s = stream_new_locked(x, flags & CU_STREAM_NON_BLOCKING ? STREAM_NONBLOCKING
							       : STREAM_BLOCKING);
	UNLOCK();
	if (s == NULL)
		return CUDA_ERROR_OUT_OF_MEMORY;
	*ps = (CUstream)(void *)s;
	return CUDA_SUCCESS;
}

/* Queued work still runs (at the next context synchronisation). */
EXPORT CUresult cuStreamDestroy(CUstream h)
{
	struct fstream *s;
	CUresult r;

	ENTER("cuStreamDestroy");
	if (h == NULL || h == CU_STREAM_LEGACY || h == CU_STREAM_PER_THREAD)
		return CUDA_ERROR_INVALID_HANDLE;
	LOCK();
	r = stream_get(h, &s);
	if (r == CUDA_SUCCESS)
		s->destroyed = 1;
	UNLOCK();
	return r;
}

static int capture_forbids_sync_locked(struct fctx *x, struct fstream *only)
{
	struct fstream *s;

	for (s = x->streams; s != NULL; s = s->next) {
		if (s->capture == NULL || (only != NULL && s != only))
			continue;
		if (only != NULL || s->capture_mode == CU_STREAM_CAPTURE_MODE_GLOBAL ||
		    (s->capture_mode == CU_STREAM_CAPTURE_MODE_THREAD_LOCAL &&
		     pthread_equal(s->capture_thread, pthread_self()))) {
			s->capture_invalid = 1;
			return 1;
		}
	}
	return 0;
}

EXPORT CUresult cuStreamSynchronize(CUstream h)
{
	struct fstream *s;
	CUresult r;

	ENTER_LIVE("cuStreamSynchronize");
	LOCK();
	r = stream_get(h, &s);
	if (r == CUDA_SUCCESS && capture_forbids_sync_locked(s->ctx, s))
		r = CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED;
	if (r == CUDA_SUCCESS) {
		run_stream_locked(s, sim.seq);
		r = __atomic_load_n(&sim.sticky, __ATOMIC_ACQUIRE);
	}
	UNLOCK();
	return r;
}

/* Run what can run now; "not ready" while anything is left, and once
 * more when this call ran something (a GPU would not have finished it
 * the instant it was asked either). */
static CUresult query_locked(struct fstream *s, uint64_t upto)
{
	int ran = 0, stuck = 0;

	if (sim.async != ASYNC_DELAY)
		stuck = run_locked(s, upto, 0, &ran);
	if (sim.sticky != CUDA_SUCCESS)
		return sim.sticky;
	if (stuck || ran > 0 || (s->head != NULL && s->head->seq <= upto))
		return CUDA_ERROR_NOT_READY;
	return CUDA_SUCCESS;
}

EXPORT CUresult cuStreamQuery(CUstream h)
{
	struct fstream *s;
	CUresult r;

	ENTER_LIVE("cuStreamQuery");
	LOCK();
	r = stream_get(h, &s);
	if (r == CUDA_SUCCESS)
		r = query_locked(s, sim.seq);
	UNLOCK();
	return r;
}

EXPORT CUresult cuCtxSynchronize(void)
{
	struct fctx *x;
	CUresult r = CUDA_SUCCESS;

	ENTER_LIVE("cuCtxSynchronize");
	x = ctx_current();
	if (x == NULL)
		return CUDA_ERROR_INVALID_CONTEXT;
	__atomic_add_fetch(&sim.syncs, 1, __ATOMIC_RELAXED);
	LOCK();
	if (capture_forbids_sync_locked(x, NULL))
		r = CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED;
	else
		ctx_sync_locked(x);
	UNLOCK();
	return r != CUDA_SUCCESS ? r : __atomic_load_n(&sim.sticky, __ATOMIC_ACQUIRE);
}

/* ---- events ------------------------------------------------------------ */

static CUresult event_get(CUevent h, struct fevent **out)
{
	struct fevent *e = (struct fevent *)(void *)h;

	if (e == NULL || e->magic != EVENT_MAGIC)
		return CUDA_ERROR_INVALID_HANDLE;
	*out = e;
	return CUDA_SUCCESS;
}

EXPORT CUresult cuEventCreate(CUevent *pe, unsigned int flags)
{
	struct fevent *e;

	ENTER_LIVE("cuEventCreate");
	(void)flags;
	if (ctx_current() == NULL)
		return CUDA_ERROR_INVALID_CONTEXT;
	if (pe == NULL)
		return CUDA_ERROR_INVALID_VALUE;
	e = calloc(1, sizeof(*e));
	if (e == NULL)
		return CUDA_ERROR_OUT_OF_MEMORY;
	e->magic = EVENT_MAGIC;
	e->ctx = ctx_current();
	*pe = (CUevent)(void *)e;
	return CUDA_SUCCESS;
}

/* A pending record still completes; nothing waits on the event itself. */
EXPORT CUresult cuEventDestroy(CUevent h)
{
	struct fevent *e;
	CUresult r;

	ENTER("cuEventDestroy");
	LOCK();
	r = event_get(h, &e);
	if (r == CUDA_SUCCESS) {
		e->magic = 0;
		free(e);
	}
	UNLOCK();
	return r;
}

EXPORT CUresult cuEventRecord(CUevent h, CUstream hs)
{
	struct fevent *e;
	struct fstream *s;
	struct op *op;
	CUresult r;

	ENTER_LIVE("cuEventRecord");
	op = op_new(OP_EVENT, "cuEventRecord");
	if (op == NULL)
		return CUDA_ERROR_OUT_OF_MEMORY;
	LOCK();
	r = event_get(h, &e);
	if (r == CUDA_SUCCESS)
		r = stream_get(hs, &s);
	if (r != CUDA_SUCCESS) {
		UNLOCK();
		free(op);
		return r;
	}
	r = submit_locked(s, op);
	if (r == CUDA_SUCCESS && s->capture == NULL) {
		e->stream = s;
		e->seq = sim.seq;
	}
	UNLOCK();
	return r;
}

EXPORT CUresult cuEventSynchronize(CUevent h)
{
	struct fevent *e;
	CUresult r;

	ENTER_LIVE("cuEventSynchronize");
	LOCK();
	r = event_get(h, &e);
	if (r == CUDA_SUCCESS && e->stream != NULL)
		run_stream_locked(e->stream, e->seq);
	UNLOCK();
	return r != CUDA_SUCCESS ? r : __atomic_load_n(&sim.sticky, __ATOMIC_ACQUIRE);
}

EXPORT CUresult cuEventQuery(CUevent h)
{
	struct fevent *e;
	CUresult r;

	ENTER_LIVE("cuEventQuery");
	LOCK();
	r = event_get(h, &e);
	if (r == CUDA_SUCCESS && e->stream != NULL)
		r = query_locked(e->stream, e->seq);
	UNLOCK();
	return r;
}

EXPORT CUresult cuStreamWaitEvent(CUstream hs, CUevent h, unsigned int flags)
{
	struct fevent *e;
	struct fstream *s;
	struct op *op;
	CUresult r;

	ENTER_LIVE("cuStreamWaitEvent");
	(void)flags;
	op = op_new(OP_WAIT, "cuStreamWaitEvent");
	if (op == NULL)
		return CUDA_ERROR_OUT_OF_MEMORY;
	LOCK();
	r = event_get(h, &e);
	if (r == CUDA_SUCCESS)
		r = stream_get(hs, &s);
	if (r == CUDA_SUCCESS && s->capture != NULL)
		r = CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED; /* not modelled */
	if (r != CUDA_SUCCESS || e->stream == NULL) {
		UNLOCK();
		free(op);
		return r;
	}
	op->u.wait.s = e->stream;
	op->u.wait.seq = e->seq;
	r = submit_locked(s, op);
	UNLOCK();
	return r;
}

/* ---- copies and memsets -------------------------------------------------- */

/* Copies check their device side when queued (a copy from memory that is
 * not mapped fails at once, as the real driver's does) and again when
 * they run. */
static CUresult queue_copy(const char *what, CUstream hs, void *dst, int dst_dev,
			   const void *src, int src_dev, size_t n, int snapshot,
			   struct fstream **sp, uint64_t *seq)
{
	struct fstream *s;
	struct op *op = op_new(OP_COPY, what);
	CUresult r;

	if (op == NULL)
		return CUDA_ERROR_OUT_OF_MEMORY;
	op->u.copy.dst = dst;
	op->u.copy.src = src;
	op->u.copy.n = n;
	LOCK();
	r = stream_get(hs, &s);
	if (r == CUDA_SUCCESS &&
	    ((dst_dev && !queueable_locked((uint64_t)(uintptr_t)dst, n)) ||
	     (src_dev && !queueable_locked((uint64_t)(uintptr_t)src, n))))
		r = CUDA_ERROR_INVALID_VALUE;
	if (r == CUDA_SUCCESS && snapshot) {
		/* Pageable source: staged now, the DMA may come later. */
		op->u.copy.staging = malloc(n ? n : 1);
		if (op->u.copy.staging == NULL)
			r = CUDA_ERROR_OUT_OF_MEMORY;
		else
			memcpy(op->u.copy.staging, src, n);
	}
	if (r != CUDA_SUCCESS) {
		UNLOCK();
		op_free(op);
		return r;
	}
	op_touch(op, (uint64_t)(uintptr_t)dst, n, dst_dev);
	if (!snapshot)
		op_touch(op, (uint64_t)(uintptr_t)src, n, src_dev);
	r = submit_locked(s, op);
	if (sp != NULL) {
		*sp = s;
		*seq = sim.seq;
	}
	UNLOCK();
	return r;
}

EXPORT CUresult cuMemcpyHtoDAsync(CUdeviceptr dst, const void *src, size_t n, CUstream hs)
{
	ENTER_LIVE("cuMemcpyHtoDAsync");
	return queue_copy("cuMemcpyHtoDAsync", hs, (void *)(uintptr_t)dst, 1, src, 0, n, 0,
			  NULL, NULL);
}

EXPORT CUresult cuMemcpyDtoHAsync(void *dst, CUdeviceptr src, size_t n, CUstream hs)
{
	ENTER_LIVE("cuMemcpyDtoHAsync");
	return queue_copy("cuMemcpyDtoHAsync", hs, dst, 0, (const void *)(uintptr_t)src, 1, n, 0,
			  NULL, NULL);
}

EXPORT CUresult cuMemcpyDtoDAsync(CUdeviceptr dst, CUdeviceptr src, size_t n, CUstream hs)
{
	ENTER_LIVE("cuMemcpyDtoDAsync");
	return queue_copy("cuMemcpyDtoDAsync", hs, (void *)(uintptr_t)dst, 1,
			  (const void *)(uintptr_t)src, 1, n, 0, NULL, NULL);
}

static int is_device_locked(uint64_t p)
{
	return device_address_locked(p);
}

/* Unified addressing: the driver tells the sides apart by the pointers. */
EXPORT CUresult cuMemcpyAsync(CUdeviceptr dst, CUdeviceptr src, size_t n, CUstream hs)
{
	int dd, sd;

	ENTER_LIVE("cuMemcpyAsync");
	LOCK();
	dd = is_device_locked(dst);
	sd = is_device_locked(src);
	UNLOCK();
	return queue_copy("cuMemcpyAsync", hs, (void *)(uintptr_t)dst, dd,
			  (const void *)(uintptr_t)src, sd, n, 0, NULL, NULL);
}

/* Wait for one queued op (the synchronous calls). */
static CUresult finish(struct fstream *s, uint64_t seq)
{
	LOCK();
	run_stream_locked(s, seq);
	UNLOCK();
	return __atomic_load_n(&sim.sticky, __ATOMIC_ACQUIRE);
}

/* Run the NULL stream's earlier work ("a stream sync is performed before
 * the copy is initiated"). */
static CUresult sync_legacy(void)
{
	struct fstream *s;
	CUresult r;

	LOCK();
	r = stream_get(NULL, &s);
	if (r == CUDA_SUCCESS)
		run_stream_locked(s, sim.seq);
	UNLOCK();
	return r;
}

/* The synchronous copies keep the documented API synchronisation
 * behaviour, in its strictest reading: from pageable host memory the
 * source is staged and the call returns before the copy lands; from
 * pinned memory and towards the host it returns when done; device to
 * device does not wait at all. */
static CUresult copy_sync(const char *what, void *dst, int dd, const void *src, int sd,
			  size_t n)
{
	struct fstream *s;
	uint64_t seq;
	int pinned;
	CUresult r;

	if (!dd && !sd) {
		memmove(dst, src, n);
		return CUDA_SUCCESS;
	}
	if (dd && sd)
		return queue_copy(what, NULL, dst, 1, src, 1, n, 0, NULL, NULL);
	LOCK();
	pinned = host_registered_locked((uint64_t)(uintptr_t)(dd ? src : dst), n);
	UNLOCK();
	if (dd && !pinned) {
		r = sync_legacy();
		if (r == CUDA_SUCCESS)
			r = queue_copy(what, NULL, dst, 1, src, 0, n, 1, NULL, NULL);
		return r;
	}
	r = queue_copy(what, NULL, dst, dd, src, sd, n, 0, &s, &seq);
	return r != CUDA_SUCCESS ? r : finish(s, seq);
}

EXPORT CUresult cuMemcpyHtoD(CUdeviceptr dst, const void *src, size_t n)
{
	ENTER_LIVE("cuMemcpyHtoD");
	return copy_sync("cuMemcpyHtoD", (void *)(uintptr_t)dst, 1, src, 0, n);
}

EXPORT CUresult cuMemcpyDtoH(void *dst, CUdeviceptr src, size_t n)
{
	ENTER_LIVE("cuMemcpyDtoH");
	return copy_sync("cuMemcpyDtoH", dst, 0, (const void *)(uintptr_t)src, 1, n);
}

EXPORT CUresult cuMemcpyDtoD(CUdeviceptr dst, CUdeviceptr src, size_t n)
{
	ENTER_LIVE("cuMemcpyDtoD");
	return copy_sync("cuMemcpyDtoD", (void *)(uintptr_t)dst, 1,
			 (const void *)(uintptr_t)src, 1, n);
}

EXPORT CUresult cuMemcpy(CUdeviceptr dst, CUdeviceptr src, size_t n)
{
	int dd, sd;

	ENTER_LIVE("cuMemcpy");
	if (ctx_current() == NULL)
		return CUDA_ERROR_INVALID_CONTEXT;
	LOCK();
	dd = is_device_locked(dst);
	sd = is_device_locked(src);
	UNLOCK();
	return copy_sync("cuMemcpy", (void *)(uintptr_t)dst, dd, (const void *)(uintptr_t)src,
			 sd, n);
}

static CUresult queue_memset(const char *what, CUstream hs, CUdeviceptr dst, uint32_t value,
			     int width, size_t count, int wait)
{
	struct fstream *s;
	struct op *op = op_new(OP_MEMSET, what);
	int pinned;
	uint64_t seq;
	CUresult r;

	if (op == NULL)
		return CUDA_ERROR_OUT_OF_MEMORY;
	op->u.set.dst = (void *)(uintptr_t)dst;
	op->u.set.value = value;
	op->u.set.width = width;
	op->u.set.count = count;
	LOCK();
	r = stream_get(hs, &s);
	pinned = host_registered_locked(dst, count * (size_t)width);
	if (r == CUDA_SUCCESS && !pinned && !queueable_locked(dst, count * (size_t)width))
		r = CUDA_ERROR_INVALID_VALUE;
	if (r != CUDA_SUCCESS) {
		UNLOCK();
		op_free(op);
		return r;
	}
	op_touch(op, dst, count * (size_t)width, 1);
	r = submit_locked(s, op);
	seq = sim.seq;
	UNLOCK();
	/* "Asynchronous with respect to the host except when the target is
	 * pinned host memory". */
	if (r == CUDA_SUCCESS && wait && pinned)
		r = finish(s, seq);
	return r;
}

EXPORT CUresult cuMemsetD8Async(CUdeviceptr dst, unsigned char uc, size_t n, CUstream hs)
{
	ENTER_LIVE("cuMemsetD8Async");
	return queue_memset("cuMemsetD8Async", hs, dst, uc, 1, n, 0);
}

EXPORT CUresult cuMemsetD32Async(CUdeviceptr dst, unsigned int ui, size_t n, CUstream hs)
{
	ENTER_LIVE("cuMemsetD32Async");
	if (dst % 4)
		return CUDA_ERROR_INVALID_VALUE;
	return queue_memset("cuMemsetD32Async", hs, dst, ui, 4, n, 0);
}

EXPORT CUresult cuMemsetD8(CUdeviceptr dst, unsigned char uc, size_t n)
{
	ENTER_LIVE("cuMemsetD8");
	return queue_memset("cuMemsetD8", NULL, dst, uc, 1, n, 1);
}

EXPORT CUresult cuMemsetD32(CUdeviceptr dst, unsigned int ui, size_t n)
{
	ENTER_LIVE("cuMemsetD32");
	if (dst % 4)
		return CUDA_ERROR_INVALID_VALUE;
	return queue_memset("cuMemsetD32", NULL, dst, ui, 4, n, 1);
}
