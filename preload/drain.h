/* SPDX-License-Identifier: Apache-2.0 */
/*
 * drain.h - waiting for submitted GPU work, bounded by a request's
 * deadline (drain.c says how), and the requests that close the gate
 * around it (gating.c).
 */
#ifndef MEMCTL_DRAIN_H
#define MEMCTL_DRAIN_H

#include "region.h"

/*
 * Wait until the GPU work submitted so far has finished: on every device
 * whose primary context memctl holds and in every context the application
 * created. With `gated` (the gate is closed), first until no thread is
 * still inside a gated call. Honours rq->deadline_ms and rq->cancel;
 * changes nothing. 0, or with err filled: -ETIMEDOUT ("GPU work still
 * running after N s; ..."), -ECANCELED, -EBUSY (too many earlier drains
 * still wait for work), -ENOMEM, or the driver's error.
 */
int drain_work(const struct region_req *rq, int gated, struct region_err *err);
/* Drains given up on whose synchronisation has not returned yet. */
int drain_stuck(void);
/* In a forked child: forget the parent's contexts and helpers. */
void drain_after_fork(void);

/*
 * The change requests that involve the gate, as preload_request runs them
 * (proto.h's verb table names them):
 *   gating_pause   MEMCTL_GATE in rq->flags: close the gate, drain, release,
 *                  and keep it closed while the memory stays paused; on
 *                  failure with nothing released, open it again. Without:
 *                  drain (bounded), release.
 *   gating_resume  resume, then open the gate if none of the memory paused
 *                  with gating is still paused.
 *   gating_gate    a group pause's first phase: close the gate with a lease,
 *                  drain, and with MEMCTL_STAGE_CPU pin the host buffers;
 *                  release nothing. The lease ends when a pause takes over,
 *                  on ungate, or once as long again as the request's
 *                  timeout has passed after its deadline (60 s without one).
 * Each returns 0 or a negative errno with err filled.
 */
int gating_pause(const struct region_req *rq, struct region_report *rep,
		 struct region_err *err);
int gating_resume(const struct region_req *rq, struct region_report *rep,
		  struct region_err *err);
int gating_gate(const struct region_req *rq, struct region_report *rep,
		struct region_err *err);

#endif /* MEMCTL_DRAIN_H */
