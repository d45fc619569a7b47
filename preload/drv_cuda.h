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

/* Forget contexts and streams in a forked child (no driver calls). */
void drv_cuda_forget(void);

#endif /* MEMCTL_DRV_CUDA_H */
