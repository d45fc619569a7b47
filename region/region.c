/* SPDX-License-Identifier: Apache-2.0 */
/*
 * region.c - the registry of tagged allocations and the per-allocation
 * state machine (active -> paused | staged -> active).
 *
 * Requests are all-or-nothing: a staged pause obtains every host buffer
 * before it releases anything, and a resume that runs out of device memory
 * unmaps what it mapped and leaves every staged byte where it was. The
 * registry mutex is held for a whole request, so cudaMalloc/cudaFree on
 * other threads wait rather than race with an unmap.
 */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"

static struct {
	pthread_mutex_t lock;
	const struct drv_ops *ops;
	struct alloc *allocs; /* uthash head, keyed by va */
	uint64_t count;       /* live allocations; read without the lock */
	size_t gran[REGION_MAX_DEV];
} R = { .lock = PTHREAD_MUTEX_INITIALIZER };

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int fail_msg(struct region_err *err, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int fail_msg(struct region_err *err, int code, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
	va_end(ap);
	return err->code = code;
}

void region_init(const struct drv_ops *ops, const struct region_opts *opts)
{
	pthread_mutex_lock(&R.lock);
	R.ops = ops;
	memset(R.gran, 0, sizeof(R.gran));
	stage_init(ops, opts);
	pthread_mutex_unlock(&R.lock);
}

void region_forget_all(void)
{
	struct alloc *a, *tmp;

	/* A forked child may inherit the mutex locked by a thread that no
	 * longer exists in it: start from a fresh one. */
	pthread_mutex_init(&R.lock, NULL);
	HASH_ITER(hh, R.allocs, a, tmp) {
		HASH_DEL(R.allocs, a);
		free(a);
	}
	__atomic_store_n(&R.count, 0, __ATOMIC_RELAXED);
	stage_forget();
}

uint64_t region_count(void)
{
	return __atomic_load_n(&R.count, __ATOMIC_RELAXED);
}

static int granularity(int dev, size_t *out)
{
	int rc;

	size_t g;

	if (dev < 0 || dev >= REGION_MAX_DEV)
		return -EINVAL;
	/* Asked once per device; threads that race here store the same value. */
	g = __atomic_load_n(&R.gran[dev], __ATOMIC_RELAXED);
	if (g == 0) {
		rc = R.ops->granularity(dev, &g);
		if (rc < 0)
			return rc;
		__atomic_store_n(&R.gran[dev], g, __ATOMIC_RELAXED);
	}
	*out = g;
	return 0;
}

/* Create physical memory for `a` and map it at its address. */
static int back(struct alloc *a)
{
	const struct drv_ops *ops = R.ops;
	uint64_t h;
	int rc;

	rc = ops->create(a->dev, a->mapped, &h);
	if (rc < 0)
		return rc;
	rc = ops->map(a->dev, a->va, a->mapped, h);
	if (rc < 0)
		goto fail_release;
	rc = ops->set_access(a->dev, a->va, a->mapped);
	if (rc < 0)
		goto fail_unmap;
	a->handle = h;
	return 0;

fail_unmap:
	(void)ops->unmap(a->dev, a->va, a->mapped);
fail_release:
	(void)ops->release(a->dev, h);
	return rc;
}

/* Unmap and release `a`'s physical memory; the address stays reserved. */
static int unback(struct alloc *a)
{
	int rc = R.ops->unmap(a->dev, a->va, a->mapped);

	if (rc < 0)
		return rc;
	rc = R.ops->release(a->dev, a->handle);
	a->handle = 0;
	return rc;
}

int region_alloc(const char *tag, int dev, size_t size, uint64_t *va,
		 struct region_err *err)
{
	struct alloc *a;
	size_t gran;
	int rc;

	if (!tag_valid(tag) || size == 0)
		return fail_msg(err, -EINVAL, "bad tag or size");
	rc = granularity(dev, &gran);
	if (rc < 0)
		return fail_msg(err, rc, "device %d: no allocation granularity", dev);
	if (size > SIZE_MAX - gran)
		return fail_msg(err, -ENOMEM, "device memory: %zu bytes is too large", size);
	a = calloc(1, sizeof(*a));
	if (a == NULL)
		return fail_msg(err, -ENOMEM, "host memory: no room for a record");
	a->size = size;
	a->mapped = (size + gran - 1) / gran * gran;
	a->dev = dev;
	a->state = ALLOC_ACTIVE;
	snprintf(a->tag, sizeof(a->tag), "%s", tag);

	rc = R.ops->reserve(dev, a->mapped, gran, &a->va);
	if (rc < 0) {
		fail_msg(err, rc, "device address space: cannot reserve %zu bytes",
			 a->mapped);
		goto fail_free;
	}
	rc = back(a);
	if (rc < 0) {
		fail_msg(err, rc, "device memory: cannot map %zu bytes on device %d",
			 a->mapped, dev);
		goto fail_unreserve;
	}
	pthread_mutex_lock(&R.lock);
	HASH_ADD(hh, R.allocs, va, sizeof(a->va), a);
	__atomic_add_fetch(&R.count, 1, __ATOMIC_RELAXED);
	pthread_mutex_unlock(&R.lock);
	*va = a->va;
	return 0;

fail_unreserve:
	(void)R.ops->unreserve(a->dev, a->va, a->mapped);
fail_free:
	free(a);
	return rc;
}

int region_free(uint64_t va)
{
	struct alloc *a;
	int rc = 0;

	pthread_mutex_lock(&R.lock);
	HASH_FIND(hh, R.allocs, &va, sizeof(va), a);
	if (a != NULL) {
		HASH_DEL(R.allocs, a);
		__atomic_sub_fetch(&R.count, 1, __ATOMIC_RELAXED);
	}
	pthread_mutex_unlock(&R.lock);
	if (a == NULL)
		return -ENOENT;

	if (a->state == ALLOC_ACTIVE) {
		/* cudaFree synchronises; so do we, before pulling the pages. */
		(void)R.ops->device_sync(a->dev);
		rc = unback(a);
	}
	if (rc == 0)
		rc = R.ops->unreserve(a->dev, a->va, a->mapped);
	stage_host_put(a);
	stage_alloc_done(a);
	free(a);
	return rc;
}

static int nothing_tagged(const struct tagset *ts, struct region_err *err)
{
	char names[256];

	tagset_format(ts, names, sizeof(names));
	if (ts->all)
		return fail_msg(err, -ENOENT, "nothing tagged: no tagged allocation is live");
	return fail_msg(err, -ENOENT, "nothing tagged '%s'", names);
}

/*
 * Collect the allocations matching `ts` into a fresh array (*out, caller
 * frees). With `want` >= 0 only those in that state class are listed
 * (0: active, 1: not active). -ENOENT, with the request's message, when no
 * live allocation matches at all, whatever its state. Called with the lock
 * held.
 */
static int select_allocs(const struct tagset *ts, int want, struct alloc ***out,
			 size_t *n, struct region_err *err)
{
	struct alloc *a, *tmp, **list;
	size_t k = 0, matched = 0;

	*out = NULL;
	*n = 0;
	list = malloc(sizeof(*list) * (R.count ? R.count : 1));
	if (list == NULL)
		return fail_msg(err, -ENOMEM, "host memory: no room to list allocations");
	HASH_ITER(hh, R.allocs, a, tmp) {
		if (!tagset_has(ts, a->tag))
			continue;
		matched++;
		if (want == 0 && a->state != ALLOC_ACTIVE)
			continue;
		if (want == 1 && a->state == ALLOC_ACTIVE)
			continue;
		list[k++] = a;
	}
	if (matched == 0) {
		free(list);
		return nothing_tagged(ts, err);
	}
	*out = list;
	*n = k;
	return 0;
}

/* Which of `list` have a host buffer now, so that a failed request frees
 * only the ones it obtained (put_new_host). */
static int note_host(struct alloc **list, size_t n, unsigned char **had,
		     struct region_err *err)
{
	size_t i;

	*had = calloc(n ? n : 1, 1);
	if (*had == NULL)
		return fail_msg(err, -ENOMEM, "host memory: no room for the request");
	for (i = 0; i < n; i++)
		(*had)[i] = list[i]->host != NULL;
	return 0;
}

/* Unmap one allocation and mark it; on failure it stays active and the
 * first error of the request is kept in *rc. */
static void release_one(struct alloc *a, enum alloc_state to, struct region_report *rep,
			struct region_err *err, int *rc)
{
	int urc = unback(a);

	if (urc < 0) {
		if (*rc == 0)
			*rc = fail_msg(err, urc, "unmap of %zu bytes at 0x%llx failed",
				       a->mapped, (unsigned long long)a->va);
		return;
	}
	a->state = to;
	rep->allocations++;
	rep->device_bytes += a->mapped;
	if (to == ALLOC_STAGED)
		rep->staged_bytes += a->size;
}

static int sync_devices(struct alloc **list, size_t n)
{
	uint32_t seen = 0;
	size_t i;
	int rc;

	for (i = 0; i < n; i++) {
		uint32_t bit = 1u << list[i]->dev;

		if (seen & bit)
			continue;
		seen |= bit;
		rc = R.ops->device_sync(list[i]->dev);
		if (rc < 0)
			return rc;
	}
	return 0;
}

/* Free the host buffers of list[i] that were not there before (had[i]==0). */
static void put_new_host(struct alloc **list, size_t n, const unsigned char *had)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (!had[i])
			stage_host_put(list[i]);
}

/* stage_host_get's callback in a staged pause: queue the copies of a
 * buffer as soon as it is pinned. */
static int queue_dtoh(struct alloc *a, void *batch)
{
	return stage_queue(batch, a, COPY_DTOH);
}

int region_pause(const struct region_req *rq, struct region_report *rep,
		 struct region_err *err)
{
	const struct tagset *ts = &rq->tags;
	unsigned flags = rq->flags;
	struct stage_batch batch = { 0 };
	struct alloc **list = NULL;
	unsigned char *had = NULL;
	size_t n, i;
	double t0 = now_ms();
	int stage = (flags & MEMCTL_STAGE_CPU) != 0;
	int rc;

	memset(rep, 0, sizeof(*rep));
	if (flags & ~MEMCTL_STAGE_CPU)
		return fail_msg(err, -EINVAL, "pause: unknown flags 0x%x", flags);
	pthread_mutex_lock(&R.lock);
	rc = select_allocs(ts, 0, &list, &n, err);
	if (rc < 0 || n == 0)
		goto out;
	rc = note_host(list, n, &had, err);
	if (rc < 0)
		goto out;
	/* An in-flight kernel reading memory we unmap takes the context down
	 * with an illegal address: let the devices drain first. */
	rep->ms_sync = now_ms();
	rc = sync_devices(list, n);
	rep->ms_sync = now_ms() - rep->ms_sync;
	if (rc < 0) {
		fail_msg(err, rc, "device synchronisation failed; nothing released");
		goto out;
	}
	if (!stage) {
		for (i = 0; i < n; i++)
			release_one(list[i], ALLOC_PAUSED, rep, err, &rc);
		goto out;
	}

	/* Queue every copy before releasing anything: kept buffers at once,
	 * new ones as soon as each is pinned. If host memory cannot be had or
	 * a copy cannot be queued, nothing is released. */
	for (i = 0; i < n && batch.rc == 0; i++)
		if (had[i])
			(void)stage_queue(&batch, list[i], COPY_DTOH);
	if (batch.rc == 0) {
		double th = now_ms();

		rc = stage_host_get(list, n, &rep->host_new_bytes, queue_dtoh, &batch, err);
		rep->ms_host = now_ms() - th;
	}
	if (rc < 0 || batch.rc < 0) {
		/* Copies into the new buffers must land before they go. A
		 * copy that could not be queued tells the story; otherwise
		 * host memory did, and err already says so. */
		if (batch.rc < 0)
			rc = stage_finish(&batch, err);
		else
			(void)stage_finish(&batch, NULL);
		goto fail_host;
	}
	/* Release each allocation as soon as its own copies are done, while
	 * the copy engines work on the next ones. */
	for (i = 0; i < n; i++) {
		int wrc = stage_wait(list[i]);

		if (wrc < 0) {
			/* The device failed mid-copy (a sticky error): what was
			 * released stays staged, the rest is still active;
			 * nothing is lost. */
			rc = fail_msg(err, wrc,
				      "device failed while staging: %zu of %zu allocations "
				      "staged and released, the rest still active", i, n);
			break;
		}
		release_one(list[i], ALLOC_STAGED, rep, err, &rc);
	}
	if (rc == 0)
		rc = stage_finish(&batch, err);
	else
		(void)stage_finish(&batch, NULL);
	goto out;

fail_host:
	put_new_host(list, n, had);
	rep->host_new_bytes = 0;
out:
	pthread_mutex_unlock(&R.lock);
	free(had);
	free(list);
	rep->ms = now_ms() - t0;
	return rc;
}

/* Free device memory, summed over the devices of `list`. */
static size_t free_device_bytes(struct alloc **list, size_t n)
{
	uint32_t seen = 0;
	size_t i, sum = 0;

	for (i = 0; i < n; i++) {
		size_t fr = 0, tot = 0;

		if (seen & (1u << list[i]->dev))
			continue;
		seen |= 1u << list[i]->dev;
		if (R.ops->mem_info(list[i]->dev, &fr, &tot) == 0)
			sum += fr;
	}
	return sum;
}

int region_resume(const struct region_req *rq, struct region_report *rep,
		  struct region_err *err)
{
	const struct tagset *ts = &rq->tags;
	unsigned flags = rq->flags;
	struct stage_batch batch = { 0 };
	struct alloc **list = NULL;
	size_t n, i, mapped = 0;
	uint64_t need = 0;
	double t0 = now_ms();
	int rc;

	memset(rep, 0, sizeof(*rep));
	if (flags & ~MEMCTL_RELEASE_HOST)
		return fail_msg(err, -EINVAL, "resume: unknown flags 0x%x", flags);
	pthread_mutex_lock(&R.lock);
	rc = select_allocs(ts, 1, &list, &n, err);
	if (rc < 0)
		goto out;
	for (i = 0; i < n; i++)
		need += list[i]->mapped;
	/* Map and queue each allocation's copy at once, so the copy engines
	 * work while the driver maps the next one. */
	for (mapped = 0; mapped < n; mapped++) {
		rc = back(list[mapped]);
		if (rc < 0)
			break;
		if (list[mapped]->state == ALLOC_STAGED)
			(void)stage_queue(&batch, list[mapped], COPY_HTOD);
	}
	if (rc < 0) {
		/* Copies into what we are about to unmap must land first. */
		(void)stage_finish(&batch, NULL);
		while (mapped > 0)
			(void)unback(list[--mapped]);
		if (rc == -ENOMEM)
			/* Measured after giving back what we took: that is
			 * what a retry will find. */
			fail_msg(err, -ENOMEM,
				 "device memory: resume needs %llu bytes, %zu free; "
				 "nothing resumed, staged contents kept",
				 (unsigned long long)need, free_device_bytes(list, n));
		else
			fail_msg(err, rc, "device memory: mapping failed; nothing resumed");
		goto out;
	}
	rc = stage_finish(&batch, err);
	if (rc < 0) {
		while (mapped > 0)
			(void)unback(list[--mapped]);
		goto out;
	}
	for (i = 0; i < n; i++) {
		if (list[i]->state == ALLOC_STAGED)
			rep->staged_bytes += list[i]->size;
		list[i]->state = ALLOC_ACTIVE;
		rep->allocations++;
		rep->device_bytes += list[i]->mapped;
		if (flags & MEMCTL_RELEASE_HOST)
			stage_host_put(list[i]);
	}
out:
	pthread_mutex_unlock(&R.lock);
	free(list);
	rep->ms = now_ms() - t0;
	return rc;
}

int region_prepare(const struct region_req *rq, struct region_report *rep,
		   struct region_err *err)
{
	const struct tagset *ts = &rq->tags;
	struct alloc **list = NULL;
	unsigned char *had = NULL;
	size_t n;
	double t0 = now_ms();
	int rc;

	memset(rep, 0, sizeof(*rep));
	pthread_mutex_lock(&R.lock);
	rc = select_allocs(ts, -1, &list, &n, err);
	if (rc < 0)
		goto out;
	rc = note_host(list, n, &had, err);
	if (rc < 0)
		goto out;
	rc = stage_host_get(list, n, &rep->host_new_bytes, NULL, NULL, err);
	if (rc < 0)
		put_new_host(list, n, had); /* all or nothing */
out:
	pthread_mutex_unlock(&R.lock);
	free(had);
	free(list);
	rep->ms = now_ms() - t0;
	return rc;
}

int region_release_host(const struct region_req *rq, struct region_report *rep,
			struct region_err *err)
{
	const struct tagset *ts = &rq->tags;
	struct alloc **list = NULL;
	size_t n, i;
	double t0 = now_ms();
	int rc;

	memset(rep, 0, sizeof(*rep));
	pthread_mutex_lock(&R.lock);
	rc = select_allocs(ts, -1, &list, &n, err);
	for (i = 0; rc == 0 && i < n; i++) {
		/* Staged contents live only there: never drop them. */
		if (list[i]->state == ALLOC_STAGED || list[i]->host == NULL)
			continue;
		rep->allocations++;
		rep->host_freed_bytes += list[i]->host_size;
		stage_host_put(list[i]);
	}
	pthread_mutex_unlock(&R.lock);
	free(list);
	rep->ms = now_ms() - t0;
	return rc;
}

int region_stat(const struct tagset *ts, struct memctl_stat *out)
{
	struct alloc *a, *tmp;
	int found = 0;

	memset(out, 0, sizeof(*out));
	pthread_mutex_lock(&R.lock);
	HASH_ITER(hh, R.allocs, a, tmp) {
		if (!tagset_has(ts, a->tag))
			continue;
		found = 1;
		out->allocations++;
		if (a->state == ALLOC_ACTIVE)
			out->active_bytes += a->mapped;
		else
			out->paused_bytes += a->mapped;
		if (a->state == ALLOC_STAGED)
			out->host_bytes += a->host_size;
	}
	pthread_mutex_unlock(&R.lock);
	return found ? 0 : -ENOENT;
}

static int row_cmp(const void *x, const void *y)
{
	return strcmp(((const struct region_tag_stat *)x)->name,
		      ((const struct region_tag_stat *)y)->name);
}

/* Add `from` into `to` (same tag). */
static void row_add(struct region_tag_stat *to, const struct region_tag_stat *from)
{
	to->allocations += from->allocations;
	to->active_bytes += from->active_bytes;
	to->paused_bytes += from->paused_bytes;
	to->staged_bytes += from->staged_bytes;
	to->host_bytes += from->host_bytes;
}

int region_tag_stats(struct region_tag_stat **rows, size_t *n)
{
	struct region_tag_stat *r;
	struct alloc *a, *tmp;
	size_t k = 0, i, out = 0;

	*rows = NULL;
	*n = 0;
	/* One row per allocation, sorted by tag, then folded: every tag
	 * whatever their number, in O(n log n) under the lock. */
	pthread_mutex_lock(&R.lock);
	r = calloc(R.count ? R.count : 1, sizeof(*r));
	if (r == NULL) {
		pthread_mutex_unlock(&R.lock);
		return -ENOMEM;
	}
	HASH_ITER(hh, R.allocs, a, tmp) {
		struct region_tag_stat *row = &r[k++];

		snprintf(row->name, sizeof(row->name), "%s", a->tag);
		row->allocations = 1;
		if (a->state == ALLOC_ACTIVE)
			row->active_bytes = a->mapped;
		else
			row->paused_bytes = a->mapped;
		if (a->state == ALLOC_STAGED)
			row->staged_bytes = a->host_size;
		if (a->host != NULL)
			row->host_bytes = a->host_size;
	}
	pthread_mutex_unlock(&R.lock);
	qsort(r, k, sizeof(*r), row_cmp);
	for (i = 0; i < k; i++) {
		if (out > 0 && strcmp(r[out - 1].name, r[i].name) == 0)
			row_add(&r[out - 1], &r[i]);
		else
			r[out++] = r[i];
	}
	if (out == 0) {
		free(r);
		return 0;
	}
	*rows = r;
	*n = out;
	return 0;
}

uint32_t region_devices(void)
{
	struct alloc *a, *tmp;
	uint32_t mask = 0;

	pthread_mutex_lock(&R.lock);
	HASH_ITER(hh, R.allocs, a, tmp)
		mask |= 1u << a->dev;
	pthread_mutex_unlock(&R.lock);
	return mask;
}
