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

enum preload_request {
	REQ_PAUSE,        /* flags: MEMCTL_STAGE_CPU */
	REQ_RESUME,       /* flags: MEMCTL_RELEASE_HOST */
	REQ_PREPARE,
	REQ_RELEASE_HOST,
};

/* One request on the registry, as the C API and the control server both
 * run it: init, tags parsed ("" or NULL: all), driver loaded where tagged
 * memory exists, the region_* call. 0 or a negative errno with err filled. */
int preload_request(enum preload_request req, const char *tags, unsigned flags,
		    struct region_report *rep, struct region_err *err);

#endif /* MEMCTL_PRELOAD_H */
