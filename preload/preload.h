/* SPDX-License-Identifier: Apache-2.0 */
/*
 * preload.h - what the interposer's files share: the export mark, options,
 * the driver, and the one request path of the C API and the control
 * server (handed to ctl/ as its backend; ctl/ never includes this file).
 */
#ifndef MEMCTL_PRELOAD_H
#define MEMCTL_PRELOAD_H

#include "options.h"
#include "proto.h"

#define MEMCTL_EXPORT __attribute__((visibility("default")))

/* Options, initialised on first use of anything in the library. */
const struct options *preload_options(void);

/* Load the driver and hand its table to region/ (once). 0, or -ENOSYS
 * when the driver cannot be loaded. */
int preload_driver(void);

/* One change request on the registry (a verb of proto.h with a region
 * call), as the C API and the control server both run it: the tags come
 * parsed in rq; the driver is loaded where tagged memory exists. A request
 * that fails after changing some allocations says how many in err.
 * 0 or a negative errno with err filled. */
int preload_request(enum verb verb, const struct region_req *rq,
		    struct region_report *rep, struct region_err *err);

#endif /* MEMCTL_PRELOAD_H */
