/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fake_kernel.c - GPU work other than copies: a few built-in kernels
 * (fakecuda.h lists them), launched through cuLaunchKernel[Ex] after
 * cuModuleGetFunction, host functions, and CUDA graphs made by stream
 * capture and replayed with cuGraphLaunch.
 *
 * A module is any image: every module holds every built-in kernel. A
 * kernel copies its arguments when launched, as the real driver does, and
 * touches device memory only when it runs. Stream capture records the
 * work queued on the capturing stream into a graph (a straight line of
 * it; events across streams are not modelled and refused) and a launch of
 * the instantiated graph queues the same work again.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fake.h"
#include "fakecuda.h"

#define GRAPH_MAGIC 0x47524150u
#define EXEC_MAGIC 0x45584543u

struct kernel {
	const char *name;
	int nargs;
	size_t argsize[4];
	void (*plan)(struct op *op);  /* the memory it touches */
	void (*run)(struct op *op);   /* its effect */
	int spins;                    /* waits for a host flag first */
};

static uint64_t fnv1a(const unsigned char *p, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ull;
	size_t i;

	for (i = 0; i < n; i++)
		h = (h ^ p[i]) * 0x100000001b3ull;
	return h;
}

EXPORT uint64_t fakecuda_checksum(const void *p, size_t n)
{
	return fnv1a(p, n);
}

#define ARG_PTR(op, i) ((unsigned char *)(uintptr_t)(op)->u.kern.arg[i])

static void plan_p_n(struct op *op)
{
	op_touch(op, op->u.kern.arg[0], (size_t)op->u.kern.arg[1], 1);
}

static void run_fill(struct op *op)
{
	memset(ARG_PTR(op, 0), (int)op->u.kern.arg[2], (size_t)op->u.kern.arg[1]);
}

static void run_add(struct op *op)
{
	unsigned char *p = ARG_PTR(op, 0);
	size_t i;

	for (i = 0; i < (size_t)op->u.kern.arg[1]; i++)
		p[i] = (unsigned char)(p[i] + (int)op->u.kern.arg[2]);
}

static void plan_copy(struct op *op)
{
	op_touch(op, op->u.kern.arg[0], (size_t)op->u.kern.arg[2], 1);
	op_touch(op, op->u.kern.arg[1], (size_t)op->u.kern.arg[2], 1);
}

static void run_copy(struct op *op)
{
	memmove(ARG_PTR(op, 0), ARG_PTR(op, 1), (size_t)op->u.kern.arg[2]);
}

static void plan_checksum(struct op *op)
{
	plan_p_n(op);
	op_touch(op, op->u.kern.arg[2], sizeof(uint64_t), 1);
}

static void run_checksum(struct op *op)
{
	uint64_t h = fnv1a(ARG_PTR(op, 0), (size_t)op->u.kern.arg[1]);

	memcpy(ARG_PTR(op, 2), &h, sizeof(h));
}

static void plan_spin(struct op *op)
{
	op_touch(op, op->u.kern.arg[1], (size_t)op->u.kern.arg[2], 1);
}

static void run_spin(struct op *op)
{
	volatile uint64_t h = fnv1a(ARG_PTR(op, 1), (size_t)op->u.kern.arg[2]);

	(void)h;
}

static const struct kernel kernels[] = {
	{ "fill", 3, { 8, 8, 4 }, plan_p_n, run_fill, 0 },
	{ "add", 3, { 8, 8, 4 }, plan_p_n, run_add, 0 },
	{ "copy", 3, { 8, 8, 8 }, plan_copy, run_copy, 0 },
	{ "checksum", 3, { 8, 8, 8 }, plan_checksum, run_checksum, 0 },
	{ "spin", 3, { 8, 8, 8 }, plan_spin, run_spin, 1 },
};
#define NKERNELS (sizeof(kernels) / sizeof(kernels[0]))

static int running[NKERNELS];

static const struct kernel *kernel_of(CUfunction f)
{
	const struct kernel *k = (const struct kernel *)(const void *)f;

	if (k < kernels || k >= kernels + NKERNELS)
		return NULL;
	return k;
}

EXPORT void *fakecuda_kernel(const char *name)
{
	size_t i;

	for (i = 0; i < NKERNELS; i++)
		if (strcmp(kernels[i].name, name) == 0)
			return (void *)(uintptr_t)&kernels[i];
	return NULL;
}

EXPORT int fakecuda_running(const char *name)
{
	size_t i;

	for (i = 0; i < NKERNELS; i++)
		if (strcmp(kernels[i].name, name) == 0)
			return __atomic_load_n(&running[i], __ATOMIC_ACQUIRE);
	return 0;
}

void kernel_started(const struct op *op, int delta)
{
	__atomic_add_fetch(&running[op->u.kern.k - kernels], delta, __ATOMIC_ACQ_REL);
}

static int released(const struct op *op)
{
	return __atomic_load_n((const int *)(uintptr_t)op->u.kern.arg[0], __ATOMIC_ACQUIRE) != 0;
}

int kernel_would_block(const struct op *op)
{
	return op->kind == OP_KERNEL && op->u.kern.k->spins && !released(op);
}

/* Called without the driver lock: a spinning kernel holds nothing. */
void kernel_spin(const struct op *op)
{
	const struct timespec tick = { 0, 200000 };

	while (op->u.kern.k->spins && !released(op))
		nanosleep(&tick, NULL);
}

void kernel_run(struct op *op)
{
	op->u.kern.k->run(op);
}

/* ---- modules and launches ----------------------------------------------- */

static char modules[CTX_MAX];

static CUresult module_load(CUmodule *mod, const void *image)
{
	struct fctx *x = ctx_current();

	if (x == NULL)
		return CUDA_ERROR_INVALID_CONTEXT;
	if (mod == NULL || image == NULL)
		return CUDA_ERROR_INVALID_VALUE;
	*mod = (CUmodule)(void *)&modules[x - sim.ctxs];
	return CUDA_SUCCESS;
}

EXPORT CUresult cuModuleLoadData(CUmodule *mod, const void *image)
{
	ENTER_LIVE("cuModuleLoadData");
	return module_load(mod, image);
}

EXPORT CUresult cuModuleLoad(CUmodule *mod, const char *fname)
{
	ENTER_LIVE("cuModuleLoad");
	return module_load(mod, fname);
}

EXPORT CUresult cuModuleUnload(CUmodule mod)
{
	const char *m = (const char *)(void *)mod;

	ENTER("cuModuleUnload");
	return m >= modules && m < modules + CTX_MAX ? CUDA_SUCCESS : CUDA_ERROR_INVALID_HANDLE;
}

EXPORT CUresult cuModuleGetFunction(CUfunction *f, CUmodule mod, const char *name)
{
	const char *m = (const char *)(void *)mod;
	void *k;

	ENTER_LIVE("cuModuleGetFunction");
	if (ctx_current() == NULL)
		return CUDA_ERROR_INVALID_CONTEXT;
	if (f == NULL || name == NULL || m < modules || m >= modules + CTX_MAX)
		return CUDA_ERROR_INVALID_VALUE;
	k = fakecuda_kernel(name);
	if (k == NULL)
		return CUDA_ERROR_NOT_FOUND;
	*f = (CUfunction)k;
	return CUDA_SUCCESS;
}

static CUresult launch(const char *what, CUfunction f, unsigned grid, unsigned block,
		       CUstream hs, void **params, void **extra)
{
	const struct kernel *k = kernel_of(f);
	struct fstream *s;
	struct op *op;
	CUresult r;
	int i;

	(void)what;
	if (k == NULL)
		return CUDA_ERROR_INVALID_HANDLE;
	if (grid == 0 || block == 0 || extra != NULL || (k->nargs > 0 && params == NULL))
		return CUDA_ERROR_INVALID_VALUE;
	op = op_new(OP_KERNEL, k->name);
	if (op == NULL)
		return CUDA_ERROR_OUT_OF_MEMORY;
	op->u.kern.k = k;
	for (i = 0; i < k->nargs; i++)
		memcpy(&op->u.kern.arg[i], params[i], k->argsize[i]);
	LOCK();
	r = stream_get(hs, &s);
	if (r == CUDA_SUCCESS) {
		k->plan(op);
		r = submit_locked(s, op);
	} else {
		free(op);
	}
	UNLOCK();
	return r;
}

EXPORT CUresult cuLaunchKernel(CUfunction f, unsigned gx, unsigned gy, unsigned gz,
			       unsigned bx, unsigned by, unsigned bz, unsigned shmem,
			       CUstream hs, void **params, void **extra)
{
	ENTER_LIVE("cuLaunchKernel");
	(void)shmem;
	return launch("cuLaunchKernel", f, gx * gy * gz, bx * by * bz, hs, params, extra);
}

EXPORT CUresult cuLaunchKernelEx(const CUlaunchConfig *c, CUfunction f, void **params,
				 void **extra)
{
	ENTER_LIVE("cuLaunchKernelEx");
	if (c == NULL)
		return CUDA_ERROR_INVALID_VALUE;
	return launch("cuLaunchKernelEx", f, c->gridDimX * c->gridDimY * c->gridDimZ,
		      c->blockDimX * c->blockDimY * c->blockDimZ, c->hStream, params, extra);
}

EXPORT CUresult cuLaunchHostFunc(CUstream hs, CUhostFn fn, void *data)
{
	struct fstream *s;
	struct op *op;
	CUresult r;

	ENTER_LIVE("cuLaunchHostFunc");
	if (fn == NULL)
		return CUDA_ERROR_INVALID_VALUE;
	op = op_new(OP_HOST_FN, "host function");
	if (op == NULL)
		return CUDA_ERROR_OUT_OF_MEMORY;
	op->u.host.fn = fn;
	op->u.host.data = data;
	LOCK();
	r = stream_get(hs, &s);
	if (r == CUDA_SUCCESS)
		r = submit_locked(s, op);
	else
		free(op);
	UNLOCK();
	return r;
}

/* ---- stream capture and graphs ----------------------------------------- */

EXPORT CUresult cuStreamBeginCapture(CUstream hs, CUstreamCaptureMode mode)
{
	struct fstream *s;
	struct fgraph *g;
	CUresult r;

	ENTER_LIVE("cuStreamBeginCapture");
	g = calloc(1, sizeof(*g));
	if (g == NULL)
		return CUDA_ERROR_OUT_OF_MEMORY;
	g->magic = GRAPH_MAGIC;
	LOCK();
	r = stream_get(hs, &s);
	if (r == CUDA_SUCCESS && s->kind == STREAM_LEGACY)
		r = CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED;
	else if (r == CUDA_SUCCESS && s->capture != NULL)
		r = CUDA_ERROR_ILLEGAL_STATE;
	if (r == CUDA_SUCCESS) {
		s->capture = g;
		s->capture_mode = mode;
		s->capture_thread = pthread_self();
		s->capture_invalid = 0;
	}
	UNLOCK();
	if (r != CUDA_SUCCESS)
		free(g);
	return r;
}

static void graph_free(struct fgraph *g)
{
	size_t i;

	for (i = 0; i < g->n; i++)
		if (g->ops[i].kind == OP_COPY)
			free(g->ops[i].u.copy.staging);
	free(g->ops);
	g->magic = 0;
	free(g);
}

EXPORT CUresult cuStreamEndCapture(CUstream hs, CUgraph *graph)
{
	struct fstream *s;
	struct fgraph *g = NULL;
	CUresult r;

	ENTER_LIVE("cuStreamEndCapture");
	if (graph == NULL)
		return CUDA_ERROR_INVALID_VALUE;
	LOCK();
	r = stream_get(hs, &s);
	if (r == CUDA_SUCCESS && s->capture == NULL)
		r = CUDA_ERROR_ILLEGAL_STATE;
	if (r == CUDA_SUCCESS) {
		g = s->capture;
		s->capture = NULL;
		if (s->capture_invalid) {
			graph_free(g);
			g = NULL;
			r = CUDA_ERROR_STREAM_CAPTURE_INVALIDATED;
		}
	}
	UNLOCK();
	*graph = (CUgraph)(void *)g;
	return r;
}

EXPORT CUresult cuStreamIsCapturing(CUstream hs, CUstreamCaptureStatus *status)
{
	struct fstream *s;
	CUresult r;

	ENTER_LIVE("cuStreamIsCapturing");
	if (status == NULL)
		return CUDA_ERROR_INVALID_VALUE;
	LOCK();
	r = stream_get(hs, &s);
	if (r == CUDA_SUCCESS)
		*status = s->capture == NULL ? CU_STREAM_CAPTURE_STATUS_NONE
			  : s->capture_invalid ? CU_STREAM_CAPTURE_STATUS_INVALIDATED
			  : CU_STREAM_CAPTURE_STATUS_ACTIVE;
	UNLOCK();
	return r;
}

static struct fgraph *graph_of(void *h, uint32_t magic)
{
	struct fgraph *g = h;

	return g != NULL && g->magic == magic ? g : NULL;
}

EXPORT CUresult cuGraphInstantiate(CUgraphExec *exec, CUgraph graph, unsigned long long flags)
{
	struct fgraph *g, *e;
	size_t i;

	ENTER_LIVE("cuGraphInstantiate");
	(void)flags;
	g = graph_of((void *)graph, GRAPH_MAGIC);
	if (exec == NULL || g == NULL)
		return CUDA_ERROR_INVALID_VALUE;
	e = calloc(1, sizeof(*e));
	if (e == NULL || (g->n > 0 && (e->ops = calloc(g->n, sizeof(*e->ops))) == NULL)) {
		free(e);
		return CUDA_ERROR_OUT_OF_MEMORY;
	}
	e->magic = EXEC_MAGIC;
	for (i = 0; i < g->n; i++) {
		e->ops[i] = g->ops[i];
		if (e->ops[i].kind == OP_COPY && g->ops[i].u.copy.staging != NULL) {
			e->ops[i].u.copy.staging = malloc(g->ops[i].u.copy.n);
			if (e->ops[i].u.copy.staging != NULL)
				memcpy(e->ops[i].u.copy.staging, g->ops[i].u.copy.staging,
				       g->ops[i].u.copy.n);
		}
		e->n++;
	}
	*exec = (CUgraphExec)(void *)e;
	return CUDA_SUCCESS;
}

/* The captured work is queued again, in capture order. */
EXPORT CUresult cuGraphLaunch(CUgraphExec exec, CUstream hs)
{
	struct fgraph *e;
	struct fstream *s;
	CUresult r;
	size_t i;

	ENTER_LIVE("cuGraphLaunch");
	e = graph_of((void *)exec, EXEC_MAGIC);
	if (e == NULL)
		return CUDA_ERROR_INVALID_VALUE;
	LOCK();
	r = stream_get(hs, &s);
	for (i = 0; r == CUDA_SUCCESS && i < e->n; i++) {
		struct op *op = malloc(sizeof(*op));

		if (op == NULL) {
			r = CUDA_ERROR_OUT_OF_MEMORY;
			break;
		}
		*op = e->ops[i];
		op->next = NULL;
		if (op->kind == OP_COPY && op->u.copy.staging != NULL) {
			op->u.copy.staging = malloc(op->u.copy.n);
			if (op->u.copy.staging != NULL)
				memcpy(op->u.copy.staging, e->ops[i].u.copy.staging,
				       op->u.copy.n);
		}
		r = submit_locked(s, op);
	}
	UNLOCK();
	return r;
}

EXPORT CUresult cuGraphExecDestroy(CUgraphExec exec)
{
	struct fgraph *e;

	ENTER("cuGraphExecDestroy");
	e = graph_of((void *)exec, EXEC_MAGIC);
	if (e == NULL)
		return CUDA_ERROR_INVALID_VALUE;
	graph_free(e);
	return CUDA_SUCCESS;
}

EXPORT CUresult cuGraphDestroy(CUgraph graph)
{
	struct fgraph *g;

	ENTER("cuGraphDestroy");
	g = graph_of((void *)graph, GRAPH_MAGIC);
	if (g == NULL)
		return CUDA_ERROR_INVALID_VALUE;
	graph_free(g);
	return CUDA_SUCCESS;
}
