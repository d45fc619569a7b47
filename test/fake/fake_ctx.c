/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fake_ctx.c - contexts of the simulated driver: one primary context per
 * device, contexts of the application's own (cuCtxCreate), and the
 * per-thread context stack.
 *
 * As on the real driver, the calls that work on "the current context"
 * (allocation, streams, events, launches on the NULL stream, context
 * synchronisation) fail with CUDA_ERROR_INVALID_CONTEXT in a thread that
 * has none. Calls that name what they work on do not need one: the
 * virtual memory calls (cuMemCreate, cuMemMap, ...) name a device,
 * cuMemFree and cuMemHostUnregister a pointer, and calls on an explicit
 * stream or event use that handle's context (test/e2e/prog_driver_rules.c
 * asks a real driver the same questions). The stack is as deep as an
 * application may push (CTX_STACK_MAX).
 */
#include <string.h>

#include "fake.h"

static __thread struct fctx *ctx_stack[CTX_STACK_MAX];
static __thread int ctx_depth;

struct fctx *ctx_current(void)
{
	return ctx_depth > 0 ? ctx_stack[ctx_depth - 1] : NULL;
}

struct fctx *ctx_of(CUcontext c)
{
	struct fctx *x = (struct fctx *)(void *)c;
	uintptr_t off = (uintptr_t)x - (uintptr_t)sim.ctxs;

	if ((uintptr_t)x < (uintptr_t)sim.ctxs || off >= sizeof(sim.ctxs) ||
	    off % sizeof(sim.ctxs[0]) != 0 || !x->used)
		return NULL;
	return x;
}

static void ctx_open_locked(struct fctx *x, int dev, int primary)
{
	memset(x, 0, sizeof(*x));
	x->used = 1;
	x->dev = dev;
	x->primary = primary;
	x->legacy = stream_new_locked(x, STREAM_LEGACY);
}

EXPORT CUresult cuDevicePrimaryCtxRetain(CUcontext *ctx, CUdevice dev)
{
	struct fctx *x;

	ENTER("cuDevicePrimaryCtxRetain");
	if (ctx == NULL)
		return CUDA_ERROR_INVALID_VALUE;
	if (dev < 0 || dev >= sim.devices)
		return CUDA_ERROR_INVALID_DEVICE;
	LOCK();
	x = &sim.ctxs[dev];
	if (!x->used)
		ctx_open_locked(x, dev, 1);
	x->refs++;
	UNLOCK();
	*ctx = (CUcontext)(void *)x;
	return CUDA_SUCCESS;
}

/* The primary context stays alive: memctl and the runtime retain it for
 * the life of the process, and nothing here frees device memory with it. */
EXPORT CUresult cuDevicePrimaryCtxRelease(CUdevice dev)
{
	ENTER("cuDevicePrimaryCtxRelease");
	if (dev < 0 || dev >= sim.devices)
		return CUDA_ERROR_INVALID_DEVICE;
	LOCK();
	if (sim.ctxs[dev].refs > 0)
		sim.ctxs[dev].refs--;
	UNLOCK();
	return CUDA_SUCCESS;
}

static CUresult push(struct fctx *x)
{
	if (ctx_depth == CTX_STACK_MAX)
		return CUDA_ERROR_OUT_OF_MEMORY;
	ctx_stack[ctx_depth++] = x;
	return CUDA_SUCCESS;
}

EXPORT CUresult cuCtxCreate(CUcontext *pctx, CUctxCreateParams *params, unsigned int flags,
			    CUdevice dev)
{
	struct fctx *x = NULL;
	int i;

	ENTER_LIVE("cuCtxCreate");
	(void)params;
	(void)flags;
	if (pctx == NULL)
		return CUDA_ERROR_INVALID_VALUE;
	if (dev < 0 || dev >= sim.devices)
		return CUDA_ERROR_INVALID_DEVICE;
	if (ctx_depth == CTX_STACK_MAX)
		return CUDA_ERROR_OUT_OF_MEMORY;
	LOCK();
	for (i = DEVICES_MAX; i < CTX_MAX && x == NULL; i++)
		if (!sim.ctxs[i].used)
			x = &sim.ctxs[i];
	if (x != NULL)
		ctx_open_locked(x, dev, 0);
	UNLOCK();
	if (x == NULL)
		return CUDA_ERROR_OUT_OF_MEMORY;
	*pctx = (CUcontext)(void *)x;
	return push(x);
}

EXPORT CUresult cuCtxDestroy(CUcontext ctx)
{
	struct fctx *x;
	int i, k = 0;

	ENTER("cuCtxDestroy");
	LOCK();
	x = ctx_of(ctx);
	if (x == NULL || x->primary) {
		UNLOCK();
		return CUDA_ERROR_INVALID_CONTEXT;
	}
	ctx_sync_locked(x);
	x->used = 0;
	UNLOCK();
	for (i = 0; i < ctx_depth; i++)
		if (ctx_stack[i] != x)
			ctx_stack[k++] = ctx_stack[i];
	ctx_depth = k;
	return CUDA_SUCCESS;
}

EXPORT CUresult cuCtxGetCurrent(CUcontext *ctx)
{
	ENTER("cuCtxGetCurrent");
	if (ctx == NULL)
		return CUDA_ERROR_INVALID_VALUE;
	*ctx = (CUcontext)(void *)ctx_current();
	return CUDA_SUCCESS;
}

/* Replaces the top of the stack; NULL pops it. */
EXPORT CUresult cuCtxSetCurrent(CUcontext ctx)
{
	struct fctx *x;

	ENTER("cuCtxSetCurrent");
	if (ctx == NULL) {
		if (ctx_depth > 0)
			ctx_depth--;
		return CUDA_SUCCESS;
	}
	LOCK();
	x = ctx_of(ctx);
	UNLOCK();
	if (x == NULL)
		return CUDA_ERROR_INVALID_CONTEXT;
	if (ctx_depth == 0)
		return push(x);
	ctx_stack[ctx_depth - 1] = x;
	return CUDA_SUCCESS;
}

EXPORT CUresult cuCtxPushCurrent(CUcontext ctx)
{
	struct fctx *x;

	ENTER("cuCtxPushCurrent");
	LOCK();
	x = ctx_of(ctx);
	UNLOCK();
	if (x == NULL)
		return CUDA_ERROR_INVALID_CONTEXT;
	return push(x);
}

EXPORT CUresult cuCtxPopCurrent(CUcontext *ctx)
{
	ENTER("cuCtxPopCurrent");
	if (ctx_depth == 0)
		return CUDA_ERROR_INVALID_CONTEXT;
	ctx_depth--;
	if (ctx != NULL)
		*ctx = (CUcontext)(void *)ctx_stack[ctx_depth];
	return CUDA_SUCCESS;
}

EXPORT CUresult cuCtxGetDevice(CUdevice *dev)
{
	struct fctx *x;

	ENTER("cuCtxGetDevice");
	x = ctx_current();
	if (x == NULL)
		return CUDA_ERROR_INVALID_CONTEXT;
	if (dev == NULL)
		return CUDA_ERROR_INVALID_VALUE;
	*dev = x->dev;
	return CUDA_SUCCESS;
}
