/* SPDX-License-Identifier: Apache-2.0 */
/*
 * request.c - pause, resume, prepare and release_host.
 *
 * One request runs at a time (the turn); the next waits, and gives up at
 * its own deadline or cancel flag without having done anything. A request
 * claims the allocations it works on and runs without the table lock; it
 * skips any that the application frees meanwhile. It stops at safe points
 * when its deadline passes or its cancel flag is set, and rolls back what
 * it did: a staged pause maps back what it released and copies the
 * contents back, a resume unmaps what it mapped, a prepare frees what it
 * pinned. A driver failure leaves each record telling the truth, and the
 * error names the call; repeating the request finishes the job.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"

#define CANCEL_POLL_MS 20 /* how often a wait looks at a cancel flag */

static struct {
	pthread_mutex_t lock;
	pthread_cond_t done; /* CLOCK_MONOTONIC */
	int running;
} turn = { .lock = PTHREAD_MUTEX_INITIALIZER };

static pthread_once_t turn_once = PTHREAD_ONCE_INIT;

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

void cond_init_monotonic(pthread_cond_t *c)
{
	pthread_condattr_t attr;

	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(c, &attr);
	pthread_condattr_destroy(&attr);
}

static void turn_init(void)
{
	cond_init_monotonic(&turn.done);
}

void request_forget(void)
{
	pthread_mutex_init(&turn.lock, NULL);
	cond_init_monotonic(&turn.done);
	turn.running = 0;
}

int request_stop(const struct region_req *rq, const char *where, struct region_err *err)
{
	long long deadline;

	if (rq->cancel != NULL && __atomic_load_n(rq->cancel, __ATOMIC_ACQUIRE))
		return region_fail(err, -ECANCELED, "cancelled %s", where);
	deadline = __atomic_load_n(&rq->deadline_ms, __ATOMIC_ACQUIRE);
	if (deadline > 0 && now_ms() >= (double)deadline)
		return region_fail(err, -ETIMEDOUT, "deadline passed %s", where);
	return 0;
}

void request_wait(const struct region_req *rq, pthread_cond_t *c, pthread_mutex_t *m)
{
	long long deadline = __atomic_load_n(&rq->deadline_ms, __ATOMIC_ACQUIRE);
	double until = deadline > 0 ? (double)deadline : 0;
	struct timespec ts;

	if (rq->cancel != NULL && (until == 0 || until > now_ms() + CANCEL_POLL_MS))
		until = now_ms() + CANCEL_POLL_MS;
	if (until == 0) {
		pthread_cond_wait(c, m);
		return;
	}
	ts.tv_sec = (time_t)(until / 1e3);
	ts.tv_nsec = (long)((until - (double)ts.tv_sec * 1e3) * 1e6);
	pthread_cond_timedwait(c, m, &ts);
}

static void request_end(void)
{
	pthread_mutex_lock(&turn.lock);
	turn.running = 0;
	pthread_cond_broadcast(&turn.done);
	pthread_mutex_unlock(&turn.lock);
}

/* Wait for the running request to end, then run; tidy what earlier
 * failures left. Gives up without doing anything at rq's deadline. */
static int request_begin(const struct region_req *rq, struct region_err *err)
{
	int rc = 0;

	pthread_once(&turn_once, turn_init);
	pthread_mutex_lock(&turn.lock);
	while (turn.running &&
	       (rc = request_stop(rq, "while waiting for the running request", err)) == 0)
		request_wait(rq, &turn.done, &turn.lock);
	if (rc == 0)
		turn.running = 1;
	pthread_mutex_unlock(&turn.lock);
	if (rc == 0 && (rc = request_stop(rq, "before it started", err)) < 0)
		request_end();
	if (rc < 0) {
		region_append(err, "; nothing done");
		return rc;
	}
	unfinished_tidy(1); /* stream-ordered frees: wait for their streams */
	return 0;
}

/* What each driver failure means for the allocation it hit. */
static const char *left_as(const char *call)
{
	if (strcmp(call, "cuMemUnmap") == 0 || strcmp(call, "cuEventSynchronize") == 0)
		return "it is still mapped and active";
	if (strcmp(call, "cuMemRelease") == 0)
		return "it is unmapped but its device memory is still held";
	return "its state is as recorded";
}

/* ---- pause ----------------------------------------------------------- */

static int sync_devices(struct claim *c)
{
	uint32_t seen = 0;
	size_t i;
	int rc;

	for (i = 0; i < c->n; i++) {
		uint32_t bit = 1u << c->list[i]->dev;

		if (seen & bit)
			continue;
		seen |= bit;
		rc = registry_ops()->device_sync(c->list[i]->dev);
		if (rc < 0)
			return rc;
	}
	return 0;
}

/* Release one allocation's device memory: for a staged pause once its
 * copies have landed. Marks *changed when it went from active to `to`;
 * counts its bytes as released once its handle is (a leftover's too). */
static int release_one(struct alloc *a, enum alloc_state to, unsigned char *changed,
		       struct region_report *rep, const char **failed)
{
	int rc = 0, was_active, held;

	pthread_mutex_lock(&a->lock);
	if (alloc_freed(a) || a->resident)
		goto out;
	was_active = a->state == ALLOC_ACTIVE;
	/* Its contents must be on their way to the host: an application's
	 * handle unmapped everywhere before its copy was queued stays. */
	if (was_active && to == ALLOC_STAGED && !a->dtoh_queued)
		goto out;
	if (was_active && to == ALLOC_STAGED && (rc = stage_wait(a)) < 0) {
		*failed = "cuEventSynchronize";
		goto out;
	}
	held = a->handle != 0;
	rc = device_detach(a, to, failed);
	if (held && a->handle == 0)
		rep->device_bytes += a->mapped;
	if (was_active && a->state != ALLOC_ACTIVE) {
		*changed = 1;
		rep->allocations++;
		if (to == ALLOC_STAGED)
			rep->copied_bytes += a->size;
	}
out:
	pthread_mutex_unlock(&a->lock);
	return rc;
}

/* The releases of a pass that failed: a failure on one allocation does not
 * stop the others, and the first is the one reported. */
struct release_failures {
	size_t n;            /* how many failed */
	int rc;              /* the first failure's error; 0 while none */
	struct alloc *first; /* the allocation it hit */
	const char *call;    /* the driver call that failed there */
};

static void note_failure(struct release_failures *f, int rc, struct alloc *a, const char *call)
{
	if (f->n++ > 0)
		return;
	f->rc = rc;
	f->first = a;
	f->call = call;
}

/* 0 when nothing failed; else say which driver call failed, where, and
 * what everything is now, and return the first failure's error. */
static int release_failed(struct claim *c, const struct release_failures *f,
			  const struct region_report *rep, struct region_err *err)
{
	if (f->rc == 0)
		return 0;
	return region_fail(err, f->rc,
			   "pause: %s failed for %zu of %zu allocations (first at 0x%llx: %s); "
			   "%llu others released; pause again to finish",
			   f->call, f->n, c->n, (unsigned long long)f->first->va,
			   left_as(f->call), (unsigned long long)rep->allocations);
}

/* Release every claimed allocation; a failure on one does not stop the
 * others (what is released stays so; a repeated pause finishes). */
static int release_all(struct claim *c, struct region_report *rep, struct region_err *err)
{
	struct release_failures failed = { 0 };
	const char *call = "";
	size_t i;
	int r;

	for (i = 0; i < c->n; i++) {
		r = release_one(c->list[i], ALLOC_PAUSED, &c->changed[i], rep, &call);
		if (r < 0)
			note_failure(&failed, r, c->list[i], call);
	}
	return release_failed(c, &failed, rep, err);
}

/* ---- staged pause ---------------------------------------------------- */

/* host_obtain's callback: queue a new buffer's copies as soon as it is
 * pinned, unless the application freed the allocation meanwhile. */
static int queue_dtoh(struct alloc *a, void *batch)
{
	int rc = 0;

	pthread_mutex_lock(&a->lock);
	if (!alloc_freed(a) && (a->kind == KIND_OWN ? a->state == ALLOC_ACTIVE : app_pausable(a))) {
		rc = stage_queue(batch, a, COPY_DTOH);
		a->dtoh_queued = rc == 0;
	}
	pthread_mutex_unlock(&a->lock);
	return rc;
}

/* Queue every copy: kept buffers at once, new ones as each is pinned. */
static int queue_all_copies(const struct region_req *rq, struct claim *c,
			    struct stage_batch *b, struct region_report *rep,
			    struct region_err *err)
{
	struct alloc **active;
	size_t i, n = 0;
	double t0;
	int rc;

	active = malloc(sizeof(*active) * (c->n ? c->n : 1));
	if (active == NULL)
		return region_fail(err, -ENOMEM, "host memory: no room for the request");
	for (i = 0; i < c->n; i++) {
		if (c->list[i]->state != ALLOC_ACTIVE)
			continue; /* a leftover: only its release is due */
		active[n++] = c->list[i];
		if (c->had_host[i] && b->rc == 0)
			(void)queue_dtoh(c->list[i], b);
	}
	t0 = now_ms();
	rc = b->rc < 0 ? 0 : host_obtain(rq, active, n, &rep->host_new_bytes, queue_dtoh, b, err);
	rep->ms_host = now_ms() - t0;
	free(active);
	if (b->rc < 0)
		return region_fail(err, b->rc, "device-to-host copy could not be queued (%s)",
				   b->failed);
	return rc;
}

/* Drop the host buffers this request obtained, except where they now
 * hold staged contents. */
static void drop_new_host(struct claim *c)
{
	size_t i;

	for (i = 0; i < c->n; i++) {
		struct alloc *a = c->list[i];

		pthread_mutex_lock(&a->lock);
		if (!c->had_host[i] && !alloc_freed(a) && a->state != ALLOC_STAGED)
			(void)host_drop(a); /* if refused, it stays a kept buffer */
		pthread_mutex_unlock(&a->lock);
	}
}

static int resume_claimed(const struct region_req *rq, struct claim *c,
			  struct region_report *rep, struct region_err *err);

/* The release phase was abandoned: map back what this request released
 * and copy the contents back (they were staged by it, so they are all
 * in host memory). What cannot be mapped back stays staged: no byte is
 * lost, and the message says so. */
static int undo_release(struct claim *c, struct stage_batch *b, int stop,
			struct region_err *err)
{
	struct region_req again = { .tags = { .all = 1 } }; /* no deadline */
	struct claim back = { 0 };
	struct region_report scratch;
	struct region_err rerr = { 0, "" };
	size_t i;
	int rc;

	(void)stage_finish(b); /* copies into buffers we may drop must land */
	back.list = malloc(sizeof(*back.list) * (c->n ? c->n : 1));
	back.changed = calloc(c->n ? c->n : 1, 1);
	if (back.list == NULL || back.changed == NULL) {
		rc = -ENOMEM;
		snprintf(rerr.msg, sizeof(rerr.msg), "no host memory to list them");
	} else {
		for (i = 0; i < c->n; i++)
			if (c->changed[i])
				back.list[back.n++] = c->list[i];
		memset(&scratch, 0, sizeof(scratch));
		rc = resume_claimed(&again, &back, &scratch, &rerr);
	}
	free(back.list);
	free(back.changed);
	drop_new_host(c);
	if (rc == 0)
		region_append(err, "; everything it released was mapped back with its contents");
	else
		region_append(err, "; what it released stays staged, every byte in host "
			      "memory: resume it (mapping back failed: %s)", rerr.msg);
	return stop;
}

/* Release each allocation as soon as its own copies have landed, while
 * later copies still run; between allocations, a safe point. */
static int release_phase(const struct region_req *rq, struct claim *c, struct stage_batch *b,
			 struct region_report *rep, struct region_err *err)
{
	struct release_failures failed = { 0 };
	const char *call = "";
	size_t i;
	int r;

	for (i = 0; i < c->n; i++) {
		if (i > 0 && (r = request_stop(rq, "in the release phase (a pause)", err)) < 0)
			return undo_release(c, b, r, err);
		r = release_one(c->list[i], ALLOC_STAGED, &c->changed[i], rep, &call);
		if (r < 0 && strcmp(call, "cuEventSynchronize") == 0)
			/* The device failed mid-copy (a sticky error): what was
			 * released stays staged, the rest is still active;
			 * nothing is lost. */
			return region_fail(err, r,
					   "device failed while staging (cuEventSynchronize "
					   "failed): %llu of %zu allocations staged and released, "
					   "the rest still active; nothing lost",
					   (unsigned long long)rep->allocations, c->n);
		if (r < 0)
			note_failure(&failed, r, c->list[i], call);
	}
	return release_failed(c, &failed, rep, err);
}

static int pause_staged(const struct region_req *rq, struct claim *c,
			struct region_report *rep, struct region_err *err)
{
	struct stage_batch batch = { 0 };
	int rc;

	/* Nothing is released before every copy is queued. */
	rc = queue_all_copies(rq, c, &batch, rep, err);
	if (rc == 0)
		rc = request_stop(rq, "before the release phase (a pause)", err);
	if (rc < 0) {
		(void)stage_finish(&batch);
		drop_new_host(c);
		rep->host_new_bytes = 0;
		region_append(err, "; nothing released");
		return rc;
	}
	rc = release_phase(rq, c, &batch, rep, err);
	/* Each released allocation's copies were waited for; this only
	 * drains the streams before the next request. */
	(void)stage_finish(&batch);
	return rc;
}

static int pause_wants(const struct alloc *a, unsigned flags)
{
	(void)flags;
	if (alloc_has_leftover(a))
		return 1;
	return a->kind == KIND_OWN ? a->state == ALLOC_ACTIVE && !a->resident : app_pausable(a);
}

/* A staged pause must not pretend to keep contents already discarded. */
static int pause_check(const struct region_req *rq, struct region_err *err)
{
	char names[128];
	uint64_t bytes;
	size_t count;

	if (!(rq->flags & MEMCTL_STAGE_CPU))
		return 0;
	discarded_scan(&rq->tags, &count, &bytes, names, sizeof(names));
	if (count == 0)
		return 0;
	return region_fail(err, -ENODATA,
			   "pause with staging: %zu allocations (%llu bytes) of tags '%s' were "
			   "paused without staging, their contents are gone; nothing changed. "
			   "Resume and refill them first, or leave those tags out",
			   count, (unsigned long long)bytes, names);
}

/* Move the allocations this pause stages to the front of the claim: all
 * of them with MEMCTL_STAGE_CPU, else those made to be staged always
 * (MEMCTL_REGION_STAGE_CPU). Returns how many. */
static size_t stage_first(struct claim *c, unsigned flags)
{
	size_t i, n = 0;

	for (i = 0; i < c->n; i++) {
		struct alloc *a = c->list[i];
		unsigned char had = c->had_host[i];

		if (!(flags & MEMCTL_STAGE_CPU) && !a->stage_always)
			continue;
		c->list[i] = c->list[n];
		c->had_host[i] = c->had_host[n];
		c->list[n] = a;
		c->had_host[n] = had;
		n++;
	}
	return n;
}

/* The staged part first, all or nothing with its rollback; then the
 * unstaged part, whose release cannot be undone. A failure of the first
 * leaves the second untouched. */
static int pause_mixed(const struct region_req *rq, struct claim *c,
		       struct region_report *rep, struct region_err *err)
{
	size_t n = stage_first(c, rq->flags);
	struct claim staged = { c->list, n, c->had_host, c->changed };
	struct claim rest = { c->list + n, c->n - n, c->had_host + n, c->changed + n };
	int rc;

	if (staged.n > 0 && (rc = pause_staged(rq, &staged, rep, err)) < 0)
		return rc;
	return rest.n > 0 ? release_all(&rest, rep, err) : 0;
}

static int pause_claimed(const struct region_req *rq, struct claim *c,
			 struct region_report *rep, struct region_err *err)
{
	double t0 = now_ms();
	int rc;

	/* An in-flight kernel reading memory we unmap takes the context down
	 * with an illegal address: let the devices drain first. */
	rc = sync_devices(c);
	rep->ms_sync = now_ms() - t0;
	if (rc < 0)
		return region_fail(err, rc, "device synchronisation failed (cuCtxSynchronize); "
				   "nothing released");
	rc = request_stop(rq, "after synchronising the devices (a pause)", err);
	if (rc < 0) {
		region_append(err, "; nothing released");
		return rc;
	}
	return pause_mixed(rq, c, rep, err);
}

/* ---- resume ---------------------------------------------------------- */

/* Map one allocation and queue its copy back; marks *mapped. */
static int map_one(struct alloc *a, struct stage_batch *b, unsigned char *mapped,
		   const char **failed)
{
	int rc = 0;

	pthread_mutex_lock(&a->lock);
	if (alloc_freed(a) || a->state == ALLOC_ACTIVE ||
	    (a->kind == KIND_APP && !app_resumable(a)))
		goto out; /* an application's handle unmapped meanwhile stays */
	rc = device_attach(a, failed);
	if (rc < 0)
		goto out;
	*mapped = 1;
	if (a->state == ALLOC_STAGED && (rc = stage_queue(b, a, COPY_HTOD)) < 0)
		*failed = b->failed;
out:
	pthread_mutex_unlock(&a->lock);
	return rc;
}

/* Free device memory, summed over the devices of the claim. */
static size_t free_device_bytes(struct claim *c)
{
	uint32_t seen = 0;
	size_t i, sum = 0;

	for (i = 0; i < c->n; i++) {
		size_t fr = 0, tot = 0;

		if (seen & (1u << c->list[i]->dev))
			continue;
		seen |= 1u << c->list[i]->dev;
		if (registry_ops()->mem_info(c->list[i]->dev, &fr, &tot) == 0)
			sum += fr;
	}
	return sum;
}

/* Unmap what this resume mapped, once the copies into it have landed;
 * each keeps its state (staged contents stay in host memory). Returns how
 * many the driver would not give back (they stay recorded as held). */
static size_t unmap_mapped(struct claim *c, struct stage_batch *b)
{
	const char *ignored;
	size_t i, stuck = 0;

	(void)stage_finish(b);
	for (i = 0; i < c->n; i++) {
		struct alloc *a = c->list[i];

		if (!c->changed[i])
			continue;
		pthread_mutex_lock(&a->lock);
		if (!alloc_freed(a) && device_detach(a, a->state, &ignored) < 0)
			stuck++;
		pthread_mutex_unlock(&a->lock);
		c->changed[i] = 0;
	}
	return stuck;
}

static int resume_failed(struct claim *c, struct stage_batch *b, int rc, const char *call,
			 struct alloc *bad, uint64_t need, struct region_err *err)
{
	size_t stuck = unmap_mapped(c, b);

	if (rc == -ECANCELED || rc == -ETIMEDOUT)
		region_append(err, "; nothing resumed, staged contents kept");
	else if (rc == -ENOMEM && bad != NULL && strcmp(call, "cuMemCreate") == 0)
		/* Measured after giving back what we took: what a retry finds. */
		region_fail(err, rc, "device memory: resume needs %llu bytes, %zu free; "
			    "nothing resumed, staged contents kept",
			    (unsigned long long)need, free_device_bytes(c));
	else if (bad != NULL)
		region_fail(err, rc, "resume: %s failed for the allocation at 0x%llx; nothing "
			    "resumed, staged contents kept", call, (unsigned long long)bad->va);
	else
		region_fail(err, rc, "resume: %s failed while copying back; nothing resumed, "
			    "staged contents kept", call);
	if (stuck > 0)
		region_append(err, "; %zu allocations could not be unmapped again (they stay "
			      "paused, the next request gives their memory back)", stuck);
	return rc;
}

static int resume_claimed(const struct region_req *rq, struct claim *c,
			  struct region_report *rep, struct region_err *err)
{
	struct stage_batch batch = { 0 };
	const char *call = "";
	uint64_t need = 0;
	size_t i;
	int rc = 0;

	for (i = 0; i < c->n; i++)
		if (c->list[i]->state != ALLOC_ACTIVE)
			need += c->list[i]->mapped;
	/* Map and queue each copy at once, so the copy engines work while
	 * the driver maps the next one. */
	for (i = 0; i < c->n; i++) {
		if ((rc = request_stop(rq, "while mapping (a resume)", err)) < 0)
			return resume_failed(c, &batch, rc, call, NULL, need, err);
		if ((rc = map_one(c->list[i], &batch, &c->changed[i], &call)) < 0)
			return resume_failed(c, &batch, rc, call, c->list[i], need, err);
	}
	if ((rc = stage_finish(&batch)) < 0)
		return resume_failed(c, &batch, rc, batch.failed, NULL, need, err);
	for (i = 0; i < c->n; i++) {
		struct alloc *a = c->list[i];

		if (!c->changed[i])
			continue;
		pthread_mutex_lock(&a->lock);
		if (!alloc_freed(a)) {
			if (a->state == ALLOC_STAGED)
				rep->copied_bytes += a->size;
			alloc_set_state(a, ALLOC_ACTIVE);
			rep->allocations++;
			rep->device_bytes += a->mapped;
		}
		pthread_mutex_unlock(&a->lock);
	}
	return 0;
}

/* MEMCTL_RELEASE_HOST: give back the host buffers of what was resumed. */
static int drop_resumed_host(struct claim *c, struct region_report *rep,
			     struct region_err *err)
{
	size_t i, kept = 0;

	for (i = 0; i < c->n; i++) {
		struct alloc *a = c->list[i];

		pthread_mutex_lock(&a->lock);
		if (!alloc_freed(a) && a->state == ALLOC_ACTIVE) {
			size_t n = a->host_size;

			if (host_drop(a) < 0)
				kept++;
			else
				rep->host_freed_bytes += n;
		}
		pthread_mutex_unlock(&a->lock);
	}
	if (kept == 0)
		return 0;
	return region_fail(err, -EIO, "resumed %llu allocations, but giving back their host "
			   "buffers failed (cuMemHostUnregister) for %zu: they are kept; "
			   "resume again with release of host memory to finish", (unsigned long long)rep->allocations, kept);
}

/* With MEMCTL_RELEASE_HOST also the active ones that keep a buffer, so
 * that repeating a resume whose unpinning failed finishes the job. */
static int resume_wants(const struct alloc *a, unsigned flags)
{
	if ((flags & MEMCTL_RELEASE_HOST) && a->state == ALLOC_ACTIVE && a->host != NULL)
		return 1;
	return a->state != ALLOC_ACTIVE && (a->kind == KIND_OWN || app_resumable(a));
}

/* Each device must keep the margin free beyond what this resume maps
 * (region_set_margin); checked before anything is mapped. */
static int resume_margin(struct claim *c, struct region_err *err)
{
	uint64_t need[REGION_MAX_DEV] = { 0 };
	size_t i, fr;
	int dev, rc;

	if (region_margin() == 0)
		return 0;
	for (i = 0; i < c->n; i++)
		if (c->list[i]->state != ALLOC_ACTIVE && c->list[i]->handle == 0)
			need[c->list[i]->dev] += c->list[i]->mapped;
	for (dev = 0; dev < REGION_MAX_DEV; dev++) {
		if (need[dev] == 0)
			continue;
		rc = margin_short(dev, need[dev], &fr);
		if (rc == -ENOMEM)
			return region_fail(err, rc, "device memory: resume needs %llu bytes and a "
					   "margin of %llu, %zu free on device %d; nothing "
					   "resumed, staged contents kept",
					   (unsigned long long)need[dev],
					   (unsigned long long)region_margin(), fr, dev);
		if (rc < 0)
			return region_fail(err, rc, "device %d: free memory unknown (cuMemGetInfo "
					   "failed), needed to keep the margin; nothing resumed",
					   dev);
	}
	return 0;
}

static int resume_body(const struct region_req *rq, struct claim *c,
		       struct region_report *rep, struct region_err *err)
{
	int rc = resume_margin(c, err);

	if (rc == 0)
		rc = resume_claimed(rq, c, rep, err);

	if (rc == 0 && (rq->flags & MEMCTL_RELEASE_HOST))
		rc = drop_resumed_host(c, rep, err);
	return rc;
}

/* ---- prepare and release_host ---------------------------------------- */

static int prepare_wants(const struct alloc *a, unsigned flags)
{
	(void)flags;
	return a->host == NULL && !a->resident && (a->kind == KIND_OWN || app_pausable(a));
}

static int prepare_body(const struct region_req *rq, struct claim *c,
			struct region_report *rep, struct region_err *err)
{
	double t0 = now_ms();
	int rc = host_obtain(rq, c->list, c->n, &rep->host_new_bytes, NULL, NULL, err);

	rep->ms_host = now_ms() - t0;
	if (rc < 0) { /* all or nothing */
		drop_new_host(c);
		rep->host_new_bytes = 0;
		region_append(err, "; nothing kept");
		return rc;
	}
	rep->allocations = c->n;
	return 0;
}

static int release_host_wants(const struct alloc *a, unsigned flags)
{
	(void)flags;
	/* Staged contents live only there: never drop them. */
	return a->host != NULL && a->state != ALLOC_STAGED;
}

static int release_host_body(const struct region_req *rq, struct claim *c,
			     struct region_report *rep, struct region_err *err)
{
	size_t i, kept = 0;

	(void)rq; /* quick, and freeing cannot be undone: no safe point */
	for (i = 0; i < c->n; i++) {
		struct alloc *a = c->list[i];
		size_t n = a->host_size;

		pthread_mutex_lock(&a->lock);
		if (alloc_freed(a) || a->host == NULL) {
			pthread_mutex_unlock(&a->lock);
			continue;
		}
		if (host_drop(a) < 0) {
			kept++;
		} else {
			rep->allocations++;
			rep->host_freed_bytes += n;
		}
		pthread_mutex_unlock(&a->lock);
	}
	if (kept == 0)
		return 0;
	return region_fail(err, -EIO, "release_host: cuMemHostUnregister failed for %zu "
			   "buffers (kept, still pinned); %llu others freed; run it again to "
			   "finish", kept, (unsigned long long)rep->allocations);
}

/* ---- one frame for all four ------------------------------------------ */

struct request_kind {
	const char *verb;
	unsigned flags;                                  /* allowed */
	int (*check)(const struct region_req *, struct region_err *); /* before claiming */
	int (*wants)(const struct alloc *, unsigned flags);
	int (*body)(const struct region_req *, struct claim *, struct region_report *,
		    struct region_err *);
};

static int run(const struct request_kind *k, const struct region_req *rq,
	       struct region_report *rep, struct region_err *err)
{
	struct claim c = { 0 };
	double t0 = now_ms();
	int rc;

	memset(rep, 0, sizeof(*rep));
	if (rq->flags & ~k->flags)
		return region_fail(err, -EINVAL, "%s: unknown flags 0x%x", k->verb, rq->flags);
	rc = request_begin(rq, err);
	if (rc < 0)
		return rc;
	if (k->check != NULL)
		rc = k->check(rq, err);
	if (rc == 0)
		rc = claim(&rq->tags, k->wants, rq->flags, &c, err);
	if (rc == 0 && c.n > 0)
		rc = k->body(rq, &c, rep, err);
	let_go(&c);
	request_end();
	rep->ms = now_ms() - t0;
	return rc;
}

int region_pause(const struct region_req *rq, struct region_report *rep,
		 struct region_err *err)
{
	static const struct request_kind k = { "pause", MEMCTL_STAGE_CPU, pause_check,
					       pause_wants, pause_claimed };

	return run(&k, rq, rep, err);
}

int region_resume(const struct region_req *rq, struct region_report *rep,
		  struct region_err *err)
{
	static const struct request_kind k = { "resume", MEMCTL_RELEASE_HOST, NULL,
					       resume_wants, resume_body };

	return run(&k, rq, rep, err);
}

int region_prepare(const struct region_req *rq, struct region_report *rep,
		   struct region_err *err)
{
	static const struct request_kind k = { "prepare", 0, NULL, prepare_wants,
					       prepare_body };

	return run(&k, rq, rep, err);
}

int region_release_host(const struct region_req *rq, struct region_report *rep,
			struct region_err *err)
{
	static const struct request_kind k = { "release_host", 0, NULL, release_host_wants,
					       release_host_body };

	return run(&k, rq, rep, err);
}
