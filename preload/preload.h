/* SPDX-License-Identifier: Apache-2.0 */
/*
 * preload.h - what the interposer's files share: the export mark, options,
 * the driver, the driver layer's entry points (cumem.c, proc.c), and the
 * one request path of the C API and the control server (handed to ctl/ as
 * its backend; ctl/ never includes this file).
 */
#ifndef MEMCTL_PRELOAD_H
#define MEMCTL_PRELOAD_H

#include "options.h"
#include "proto.h"

#define MEMCTL_EXPORT __attribute__((visibility("default")))

/* Options, initialised on first use of anything in the library. */
const struct options *preload_options(void);

/* What every device allocation does first, whatever path it came by:
 * init (options, fork handler) and the control thread (once). Returns the
 * options. Cheap after the first call: two atomic loads. */
const struct options *preload_activate(void);

/* The tag an allocation by the calling thread gets now: the innermost open
 * region, else the default tag. Copies it into `tag`, its flags for
 * region_alloc (MEMCTL_REGION_STAGE_CPU or 0) into *flags, and returns 1;
 * or returns 0 when there is none (no region and no default tag, or the
 * innermost region is MEMCTL_REGION_UNTAGGED): the allocation passes
 * through. */
int preload_tag(char tag[TAG_MAX], unsigned *flags);

/* A function of the CUDA runtime (libcudart), the one after libmemctl.so
 * in the global scope or one loaded RTLD_LOCAL by a framework; NULL when
 * no runtime is loaded. */
void *preload_runtime_sym(const char *name);

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
