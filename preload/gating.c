/* SPDX-License-Identifier: Apache-2.0 */
/*
 * gating.c - the requests that close the gate around the registry's own
 * (drain.h lists them): the order is gate, drain, release, and on failure
 * with nothing released the gate opens again, so the application's threads
 * never wait for a pause that did not happen.
 *
 * region/ knows nothing of the gate. The gate knows tags, not
 * allocations: after a resume it asks the registry which of the tags it
 * holds are still paused.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "drain.h"
#include "gate.h"
#include "memctl.h"

#define LEASE_DEFAULT_MS 60000 /* a first phase without a deadline */

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void append(struct region_err *err, const char *what)
{
	size_t used = strlen(err->msg);

	snprintf(err->msg + used, sizeof(err->msg) - used, "%s", what);
}

/* 1 when memory carrying `ts` is paused now. */
static int paused_now(const struct tagset *ts)
{
	struct memctl_stat st;

	return region_stat(ts, &st) == 0 && st.paused_bytes > 0;
}

/* -ENOENT, said as the registry says it, when nothing carries the tags:
 * checked before the gate closes, so a typo never holds anyone up. */
static int exists(const struct tagset *ts, struct region_err *err)
{
	char names[TAGSET_TEXT_MAX];
	struct memctl_stat st;

	if (region_stat(ts, &st) == 0)
		return 0;
	if (ts->all)
		return region_err_set(err, -ENOENT, "nothing tagged: no tagged allocation is live");
	tagset_format(ts, names, sizeof(names));
	return region_err_set(err, -ENOENT, "nothing tagged '%s'", names);
}

int gating_pause(const struct region_req *rq, struct region_report *rep,
		 struct region_err *err)
{
	struct region_req plain = *rq;
	int gated = (rq->flags & MEMCTL_GATE) != 0, rc;
	long long t0 = now_ms();
	double ms_drain;

	memset(rep, 0, sizeof(*rep));
	plain.flags &= ~MEMCTL_GATE;
	if (plain.flags & ~MEMCTL_STAGE_CPU)
		return region_err_set(err, -EINVAL, "pause: unknown flags 0x%x", rq->flags);
	rc = exists(&rq->tags, err);
	if (rc < 0)
		return rc;
	if (gated)
		gate_drain_begin();
	rc = drain_work(rq, gated, err);
	ms_drain = (double)(now_ms() - t0);
	if (rc < 0)
		append(err, gated ? "; nothing released, the gate is open again"
				  : "; nothing released");
	else
		rc = region_pause(&plain, rep, err);
	/* Memory released, even by a pause that failed midway, keeps the
	 * gate closed until it is resumed. */
	if (gated)
		gate_drain_end(rc == 0 || rep->allocations > 0 ? &rq->tags : NULL, 1);
	rep->ms_sync += ms_drain;
	rep->ms = (double)(now_ms() - t0);
	return rc;
}

int gating_resume(const struct region_req *rq, struct region_report *rep,
		  struct region_err *err)
{
	int rc = region_resume(rq, rep, err);

	/* Whatever it returned: memory freed while paused, or resumed by an
	 * earlier request, opens the gate as well. */
	gate_forget_resumed(paused_now);
	return rc;
}

int gating_gate(const struct region_req *rq, struct region_report *rep,
		struct region_err *err)
{
	struct region_req prep = *rq;
	long long start = now_ms(), dl = __atomic_load_n(&rq->deadline_ms, __ATOMIC_ACQUIRE);
	long long until = dl != 0 ? dl + (dl - start) : start + LEASE_DEFAULT_MS;
	unsigned lease;
	int rc;

	memset(rep, 0, sizeof(*rep));
	if (rq->flags & ~MEMCTL_STAGE_CPU)
		return region_err_set(err, -EINVAL, "gate: unknown flags 0x%x", rq->flags);
	rc = exists(&rq->tags, err);
	if (rc < 0)
		return rc;
	lease = gate_lease(until);
	rc = drain_work(rq, 1, err);
	/* Staged: pin the host buffers now, so that the release phase cannot
	 * fail for host memory on one rank after another has released. */
	prep.flags = 0;
	if (rc == 0 && (rq->flags & MEMCTL_STAGE_CPU))
		rc = region_prepare(&prep, rep, err);
	if (rc == 0 && !gate_lease_current(lease))
		rc = region_err_set(err, -ECANCELED, "the gate was opened while this request "
				    "drained (ungate, or its lease ran out)");
	else if (rc < 0)
		append(err, "; nothing released, the gate is open again");
	if (rc < 0)
		gate_lease_end(lease);
	rep->ms = (double)(now_ms() - start);
	return rc;
}
