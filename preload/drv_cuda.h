/* SPDX-License-Identifier: Apache-2.0 */
/*
 * drv_cuda.h - struct drv_ops filled from the real libcuda.so.1.
 */
#ifndef MEMCTL_DRV_CUDA_H
#define MEMCTL_DRV_CUDA_H

#include "drv.h"

/* dlopen libcuda.so.1 (once), resolve the calls memctl uses and cuInit.
 * Returns the table, or NULL with a message already logged. Thread-safe. */
const struct drv_ops *drv_cuda_load(void);

/* Devices the driver sees; 0 when it is not loaded. */
int drv_cuda_device_count(void);

/* Forget contexts and streams in a forked child (no driver calls). */
void drv_cuda_forget(void);

#endif /* MEMCTL_DRV_CUDA_H */
