/* SPDX-License-Identifier: Apache-2.0 */
/*
 * preload.h - what the interposer shares with the control server.
 */
#ifndef MEMCTL_PRELOAD_H
#define MEMCTL_PRELOAD_H

#include "options.h"

#define MEMCTL_EXPORT __attribute__((visibility("default")))

/* Options, initialised on first use of anything in the library. */
const struct options *preload_options(void);

/* Load the driver and hand its table to region/ (once). 0, or -ENOSYS
 * when the driver cannot be loaded. */
int preload_driver(void);

#endif /* MEMCTL_PRELOAD_H */
