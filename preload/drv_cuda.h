/* SPDX-License-Identifier: Apache-2.0 */
/*
 * drv_cuda.h - struct drv_ops filled from the real libcuda.so.1.
 */
#ifndef MEMCTL_DRV_CUDA_H
#define MEMCTL_DRV_CUDA_H

#include <cuda.h>

#include "drv.h"

/* dlopen libcuda.so.1 (once), resolve the calls memctl uses and cuInit.
 * Returns the table, or NULL with a message already logged. Thread-safe. */
const struct drv_ops *drv_cuda_load(void);

/* The CUresult to give an application for a region/ call that returned
 * `rc` on its behalf, in the calling thread: the driver's own answer when
 * a driver call failed (the thread's last failure, then forgotten), else
 * `rc` translated. CUDA_SUCCESS for 0. */
CUresult drv_cuda_result(int rc);

/* Devices the driver sees; 0 when it is not loaded. */
int drv_cuda_device_count(void);

/* Synchronise the application's context `ctx` (a CUcontext) from any
 * thread: pushed, synchronised, popped. May block for as long as its work
 * runs. 0, -ENOSYS (driver not loaded) or the driver's error. */
int drv_cuda_ctx_sync(void *ctx);

/* Devices whose primary context memctl holds, as a bit mask. */
uint32_t drv_cuda_primary_devices(void);

/* Forget contexts and streams in a forked child (no driver calls). */
void drv_cuda_forget(void);

#endif /* MEMCTL_DRV_CUDA_H */
