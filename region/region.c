/* SPDX-License-Identifier: Apache-2.0 */
/*
 * region.c - the registry of tagged allocations: the records and their
 * lifetime, the device steps that back an address with memory and take it
 * away, allocation and free, claims for requests, and the figures status
 * reads. The requests themselves live in request.c.
 *
 * The table lock is held for lookups, inserts, deletes and field updates
 * only, never across a driver call, so an application's cudaMalloc and
 * cudaFree never wait for a request (internal.h has the locking rules).
 * Each record says what the driver holds for it; a driver call that fails
 * part way leaves that truth behind, and a later step finishes the job:
 * nothing is leaked, and a record the application freed stays on the
 * list of unfinished frees until the driver has taken everything back.
 * A stream-ordered free waits on that list too, for its stream to get
 * there. Handles the application maps itself (app.c) are records of the
 * same table; their device steps are app.c's.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static struct {
	pthread_mutex_t table_lock;
	const struct drv_ops *ops;
	struct alloc *live;       /* uthash head, keyed by va */
	struct alloc *unfinished; /* freed, with driver steps still to do */
	/* Of those, the stream-ordered frees waiting for their streams, in
	 * the order they were made (oldest at the head). */
	struct alloc *pending_head, *pending_tail;
	uint64_t live_count;      /* read without the lock */
	uint64_t unfinished_count; /* read without the lock */
	uint64_t pending_count;   /* read without the lock */
	uint64_t margin;          /* region_set_margin; read without the lock */
	size_t gran[REGION_MAX_DEV];
} registry = { .table_lock = PTHREAD_MUTEX_INITIALIZER };

/* Run `stmt` under the table lock: how a record's fields are published. */
#define PUBLISH(stmt)                                          \
	do {                                                   \
		pthread_mutex_lock(&registry.table_lock);      \
		stmt;                                          \
		pthread_mutex_unlock(&registry.table_lock);    \
	} while (0)

void region_append(struct region_err *err, const char *fmt, ...)
{
	size_t used;
	va_list ap;

	if (err == NULL)
		return;
	used = strlen(err->msg);
	va_start(ap, fmt);
	vsnprintf(err->msg + used, sizeof(err->msg) - used, fmt, ap);
	va_end(ap);
}

void region_init(const struct drv_ops *ops, const struct region_opts *opts)
{
	pthread_mutex_lock(&registry.table_lock);
	registry.ops = ops;
	memset(registry.gran, 0, sizeof(registry.gran));
	stage_init(ops, opts);
	slab_init(opts->slab_bytes);
	pthread_mutex_unlock(&registry.table_lock);
}

void alloc_destroy(struct alloc *a)
{
	if (a->kind == KIND_APP)
		app_free(a);
	pthread_mutex_destroy(&a->lock);
	free(a);
}

void table_lock(void)
{
	pthread_mutex_lock(&registry.table_lock);
}

void table_unlock(void)
{
	pthread_mutex_unlock(&registry.table_lock);
}

int live_add_locked(struct alloc *a)
{
	HASH_ADD(hh, registry.live, va, sizeof(a->va), a);
	if (a->hh.tbl == NULL)
		return -ENOMEM; /* the hash could not grow: left out */
	a->refs = 1;
	__atomic_add_fetch(&registry.live_count, 1, __ATOMIC_RELAXED);
	return 0;
}

struct alloc *live_containing_locked(uint64_t addr)
{
	struct alloc *a, *tmp;

	HASH_ITER(hh, registry.live, a, tmp)
		if (a->kind == KIND_OWN && addr >= a->va && addr < a->va + a->mapped)
			return a;
	return NULL;
}

struct alloc *live_find_locked(uint64_t va)
{
	struct alloc *a;

	HASH_FIND(hh, registry.live, &va, sizeof(va), a);
	return a;
}

void region_forget_all(void)
{
	/* A forked child may inherit the table mid-change: a thread that no
	 * longer exists in it held the lock inside an insert or a delete (the
	 * hash half freed). So start from a fresh lock and an empty table
	 * without walking or freeing what was inherited: a few bytes left
	 * behind in the child, never a crash. */
	pthread_mutex_init(&registry.table_lock, NULL);
	registry.live = NULL;
	registry.unfinished = NULL;
	__atomic_store_n(&registry.live_count, 0, __ATOMIC_RELAXED);
	__atomic_store_n(&registry.unfinished_count, 0, __ATOMIC_RELAXED);
	registry.pending_head = registry.pending_tail = NULL;
	__atomic_store_n(&registry.pending_count, 0, __ATOMIC_RELAXED);
	app_forget();
	untagged_forget();
	stage_forget();
	request_forget();
	slab_forget();
}

uint64_t region_count(void)
{
	return __atomic_load_n(&registry.live_count, __ATOMIC_RELAXED);
}

int region_may_own(void)
{
	return region_count() > 0 ||
	       __atomic_load_n(&registry.unfinished_count, __ATOMIC_RELAXED) > 0;
}

const struct drv_ops *registry_ops(void)
{
	return registry.ops;
}

int granularity(int dev, size_t *out)
{
	size_t g;
	int rc;

	if (dev < 0 || dev >= REGION_MAX_DEV)
		return -EINVAL;
	/* Asked once per device; threads that race here store the same value. */
	g = __atomic_load_n(&registry.gran[dev], __ATOMIC_RELAXED);
	if (g == 0) {
		rc = registry.ops->granularity(dev, &g);
		if (rc < 0)
			return rc;
		__atomic_store_n(&registry.gran[dev], g, __ATOMIC_RELAXED);
	}
	*out = g;
	return 0;
}

void region_set_margin(uint64_t bytes)
{
	__atomic_store_n(&registry.margin, bytes, __ATOMIC_RELAXED);
}

uint64_t region_margin(void)
{
	return __atomic_load_n(&registry.margin, __ATOMIC_RELAXED);
}

int margin_short(int dev, uint64_t bytes, size_t *free_bytes)
{
	uint64_t margin = region_margin();
	size_t total;
	int rc;

	*free_bytes = 0;
	if (margin == 0)
		return 0;
	rc = registry.ops->mem_info(dev, free_bytes, &total);
	if (rc < 0)
		return rc;
	/* Written so that no sum can overflow, whatever margin was set. */
	if (*free_bytes < bytes || *free_bytes - bytes < margin)
		return -ENOMEM;
	return 0;
}

/* ---- record fields, as the driver last confirmed them ---------------- */

void alloc_set_state(struct alloc *a, enum alloc_state st)
{
	PUBLISH(a->state = st);
}

void alloc_set_host(struct alloc *a, void *host, size_t size, int pinned)
{
	PUBLISH(a->host = host; a->host_size = size; a->host_pinned = pinned);
}

int alloc_freed(struct alloc *a)
{
	return __atomic_load_n(&a->freed, __ATOMIC_ACQUIRE);
}

int alloc_has_leftover(const struct alloc *a)
{
	return a->state != ALLOC_ACTIVE && (a->handle != 0 || a->dev_mapped);
}

static int alloc_empty(const struct alloc *a)
{
	return a->handle == 0 && !a->dev_mapped && !a->va_reserved && a->host == NULL &&
	       a->free_event == NULL;
}

uint64_t alloc_window(const struct alloc *a)
{
	size_t i;

	if (a->kind == KIND_OWN)
		return a->va;
	for (i = 0; i < a->app->nmaps; i++) {
		const struct app_map *m = a->app->maps[i];

		if (m->offset == 0 && m->size == a->mapped)
			return m->va;
	}
	return 0;
}

int device_attach(struct alloc *a, const char **failed)
{
	const struct drv_ops *ops = registry.ops;
	const char *ignored;
	uint64_t h = a->handle;
	int rc;

	if (a->kind == KIND_APP)
		return app_attach(a, failed);
	if (h == 0) { /* a handle still held from a failed release is reused */
		rc = ops->create(a->dev, a->mapped, &h);
		if (rc < 0)
			return *failed = "cuMemCreate", rc;
		PUBLISH(a->handle = h);
	}
	if (!a->dev_mapped) {
		rc = ops->map(a->dev, a->va, a->mapped, 0, h);
		if (rc < 0) {
			*failed = "cuMemMap";
			goto undo;
		}
		PUBLISH(a->dev_mapped = 1);
	}
	rc = ops->set_access(a->dev, a->va, a->mapped);
	if (rc == 0)
		return 0;
	*failed = "cuMemSetAccess";
undo:
	/* Not active, so holding memory serves nothing: give it back. What
	 * the driver refuses stays recorded for the next request. */
	(void)device_detach(a, a->state, &ignored);
	return rc;
}

int device_detach(struct alloc *a, enum alloc_state to, const char **failed)
{
	const struct drv_ops *ops = registry.ops;
	int rc;

	if (a->kind == KIND_APP)
		return app_detach(a, to, failed);
	if (a->dev_mapped) {
		rc = ops->unmap(a->dev, a->va, a->mapped);
		if (rc < 0)
			return *failed = "cuMemUnmap", rc;
		PUBLISH(a->dev_mapped = 0; if (a->state == ALLOC_ACTIVE) a->state = to);
	}
	if (a->handle != 0) {
		rc = ops->release(a->dev, a->handle);
		if (rc < 0)
			return *failed = "cuMemRelease", rc;
		PUBLISH(a->handle = 0);
	}
	return 0;
}

/*
 * Give back everything the driver holds for a freed record, in the order
 * it requires, stopping at its first refusal: synchronise (cudaFree does,
 * and in-flight work must not meet an unmap: the application's on active
 * memory, a resume's copies on memory it mapped but has not yet marked
 * active), unmap, release, unpin and
 * free the host buffer (unless a request's workers may still use it), and
 * last the address range, so that the address stays ours, and a retried
 * cudaFree finds it, until nothing else is left. Caller holds a->lock.
 */
static int free_due(struct alloc *a, int wait);

static int teardown(struct alloc *a, int with_host, const char **failed)
{
	int rc = 0;

	if (a->free_event != NULL)
		(void)free_due(a, 1); /* a free repeated before its stream got there */
	if (a->dev_mapped) {
		rc = registry.ops->device_sync(a->dev);
		if (rc < 0)
			return *failed = "cuCtxSynchronize", rc;
	}
	rc = device_detach(a, ALLOC_PAUSED, failed);
	if (rc == 0 && with_host && (rc = host_drop(a)) < 0)
		*failed = "cuMemHostUnregister";
	if (rc == 0 && a->host == NULL && a->va_reserved) {
		rc = registry.ops->unreserve(a->dev, a->va, a->mapped);
		if (rc < 0)
			*failed = "cuMemAddressFree";
		else
			PUBLISH(a->va_reserved = 0);
	}
	return rc;
}

/* ---- lifetime -------------------------------------------------------- */

/* Put a freed record with driver steps left on the unfinished list; the
 * caller's reference becomes the list's. Table lock held. */
static void park_locked(struct alloc *a)
{
	a->on_unfinished = 1;
	a->prev_unfinished = NULL;
	a->next_unfinished = registry.unfinished;
	if (registry.unfinished != NULL)
		registry.unfinished->prev_unfinished = a;
	registry.unfinished = a;
	__atomic_add_fetch(&registry.unfinished_count, 1, __ATOMIC_RELAXED);
}

/* Take `a` off the unfinished list once it holds nothing more; the list's
 * reference goes with it. Table lock held. */
static void unpark_if_empty_locked(struct alloc *a)
{
	if (!a->on_unfinished || !alloc_empty(a))
		return;
	if (a->prev_unfinished != NULL)
		a->prev_unfinished->next_unfinished = a->next_unfinished;
	else
		registry.unfinished = a->next_unfinished;
	if (a->next_unfinished != NULL)
		a->next_unfinished->prev_unfinished = a->prev_unfinished;
	a->on_unfinished = 0;
	a->refs--;
	__atomic_sub_fetch(&registry.unfinished_count, 1, __ATOMIC_RELAXED);
}

/* A parked stream-ordered free joins the queue of pending ones. */
static void pending_push_locked(struct alloc *a)
{
	a->on_pending = 1;
	a->next_pending = NULL;
	if (registry.pending_tail != NULL)
		registry.pending_tail->next_pending = a;
	else
		registry.pending_head = a;
	registry.pending_tail = a;
	__atomic_add_fetch(&registry.pending_count, 1, __ATOMIC_RELAXED);
}

/* The head of the queue is due (its event completed or was waited for). */
static void pending_pop_locked(struct alloc *a)
{
	if (!a->on_pending || registry.pending_head != a)
		return; /* another thread popped it meanwhile */
	registry.pending_head = a->next_pending;
	if (registry.pending_head == NULL)
		registry.pending_tail = NULL;
	a->on_pending = 0;
	__atomic_sub_fetch(&registry.pending_count, 1, __ATOMIC_RELAXED);
}

/* The last reference is gone: free the record once the driver has
 * everything back, else keep it on the unfinished list. */
static void retire(struct alloc *a)
{
	const char *failed;

	pthread_mutex_lock(&a->lock);
	(void)teardown(a, 1, &failed);
	pthread_mutex_unlock(&a->lock);
	if (!alloc_empty(a)) {
		PUBLISH(a->refs = 1; park_locked(a));
		return;
	}
	stage_alloc_done(a);
	alloc_destroy(a);
}

void alloc_put(struct alloc *a)
{
	int last;

	pthread_mutex_lock(&registry.table_lock);
	last = --a->refs == 0;
	pthread_mutex_unlock(&registry.table_lock);
	if (last)
		retire(a);
}

/*
 * Whether a stream-ordered free may take effect: its stream has got to
 * the event recorded at the free (or, with `wait`, once it has). Then no
 * work of the application can touch the memory any more, and it is given
 * back without synchronising the device, once memctl's own copies into
 * or out of it (a request that claimed it) have landed. A failed wait
 * leaves the usual path: the device is synchronised first. Caller holds
 * a->lock.
 */
static int free_due(struct alloc *a, int wait)
{
	const struct drv_ops *ops = registry.ops;
	int rc;

	if (a->free_event == NULL)
		return 1;
	rc = wait ? ops->event_sync(a->dev, a->free_event)
		  : ops->event_query(a->dev, a->free_event);
	if (rc == -EAGAIN)
		return 0;
	(void)ops->event_destroy(a->dev, a->free_event);
	PUBLISH(a->free_event = NULL);
	if (rc == 0 && stage_wait(a) == 0 && a->state == ALLOC_ACTIVE)
		alloc_set_state(a, ALLOC_PAUSED); /* contents no longer anyone's */
	return 1;
}

/*
 * Stream-ordered frees, oldest first. Without `wait`, the first whose
 * stream has not got there yet ends the look (the later ones' streams are
 * most likely behind too): an application far ahead of its GPU pays one
 * query per call, not one per pending free.
 */
static void pending_tidy(int wait)
{
	const char *failed;
	struct alloc *a;
	int due, with_host;

	for (;;) {
		pthread_mutex_lock(&registry.table_lock);
		a = registry.pending_head;
		if (a != NULL) {
			a->refs++;
			with_host = !a->claimed;
		}
		pthread_mutex_unlock(&registry.table_lock);
		if (a == NULL)
			return;
		pthread_mutex_lock(&a->lock);
		due = free_due(a, wait);
		if (due)
			(void)teardown(a, with_host, &failed);
		pthread_mutex_unlock(&a->lock);
		PUBLISH(if (due) pending_pop_locked(a); unpark_if_empty_locked(a));
		alloc_put(a);
		if (!due)
			return;
	}
}

/* Frees the driver refused part of: each tried again. */
static void refused_tidy(void)
{
	struct alloc **snap, *a;
	size_t n = 0, i;
	int with_host;

	pthread_mutex_lock(&registry.table_lock);
	snap = malloc(sizeof(*snap) * registry.unfinished_count);
	for (a = registry.unfinished; snap != NULL && a != NULL; a = a->next_unfinished) {
		if (a->on_pending)
			continue;
		a->refs++;
		snap[n++] = a;
	}
	pthread_mutex_unlock(&registry.table_lock);
	for (i = 0; i < n; i++) {
		const char *failed;

		a = snap[i];
		PUBLISH(with_host = !a->claimed);
		pthread_mutex_lock(&a->lock);
		(void)teardown(a, with_host, &failed);
		pthread_mutex_unlock(&a->lock);
		PUBLISH(unpark_if_empty_locked(a));
		alloc_put(a);
	}
	free(snap);
}

void unfinished_tidy(int wait)
{
	if (__atomic_load_n(&registry.pending_count, __ATOMIC_RELAXED) > 0)
		pending_tidy(wait);
	if (__atomic_load_n(&registry.unfinished_count, __ATOMIC_RELAXED) >
	    __atomic_load_n(&registry.pending_count, __ATOMIC_RELAXED))
		refused_tidy();
}

/* ---- allocation and free --------------------------------------------- */

struct alloc *alloc_new(const char *tag, unsigned flags, int dev, size_t size, size_t gran)
{
	struct alloc *a = calloc(1, sizeof(*a));

	if (a == NULL)
		return NULL;
	pthread_mutex_init(&a->lock, NULL);
	a->size = size;
	a->mapped = (size + gran - 1) / gran * gran;
	a->dev = dev;
	a->stage_always = (flags & MEMCTL_REGION_STAGE_CPU) != 0;
	a->state = ALLOC_PAUSED; /* until its memory is mapped */
	snprintf(a->tag, sizeof(a->tag), "%s", tag);
	return a;
}

/* The margin (region_set_margin) for a new allocation of `mapped` bytes. */
static int alloc_margin(int dev, size_t mapped, struct region_err *err)
{
	size_t fr;
	int rc = margin_short(dev, mapped, &fr);

	if (rc == -ENOMEM)
		return region_fail(err, rc, "device memory: %zu bytes and a margin of %llu "
				   "requested, %zu free on device %d", mapped,
				   (unsigned long long)region_margin(), fr, dev);
	if (rc < 0)
		return region_fail(err, rc, "device %d: free memory unknown (cuMemGetInfo "
				   "failed), needed to keep the margin", dev);
	return 0;
}

int region_alloc(const char *tag, unsigned flags, int dev, size_t size, uint64_t *va,
		 struct region_err *err)
{
	int rc;

	if (!tag_valid(tag) || size == 0 || (flags & ~MEMCTL_REGION_STAGE_CPU))
		return region_fail(err, -EINVAL, "bad tag, size or flags");
	unfinished_tidy(0); /* stream-ordered frees that are due give memory back */
	rc = slab_alloc(tag, flags, dev, size, va, err);
	if (rc <= 0)
		return rc;
	return alloc_record(tag, flags, dev, size, 0, va, err);
}

int alloc_record(const char *tag, unsigned flags, int dev, size_t size, int slab, uint64_t *va,
		 struct region_err *err)
{
	const char *failed = "";
	struct alloc *a;
	size_t gran;
	int rc;

	rc = granularity(dev, &gran);
	if (rc < 0)
		return region_fail(err, rc, "device %d: no allocation granularity", dev);
	if (size > SIZE_MAX - gran)
		return region_fail(err, -ENOMEM, "device memory: %zu bytes is too large", size);
	a = alloc_new(tag, flags, dev, size, gran);
	if (a == NULL)
		return region_fail(err, -ENOMEM, "host memory: no room for a record");
	rc = alloc_margin(dev, a->mapped, err);
	if (rc < 0) {
		alloc_destroy(a);
		return rc;
	}
	rc = registry.ops->reserve(dev, a->mapped, gran, &a->va);
	if (rc < 0) {
		region_fail(err, rc, "device address space: cannot reserve %zu bytes",
			    a->mapped);
		alloc_destroy(a);
		return rc;
	}
	a->va_reserved = 1;
	pthread_mutex_lock(&a->lock);
	rc = device_attach(a, &failed);
	pthread_mutex_unlock(&a->lock);
	if (rc == -ENOMEM && __atomic_load_n(&registry.unfinished_count, __ATOMIC_RELAXED) > 0) {
		/* Memory freed in stream order but not given back yet: wait for
		 * those streams, as the driver's pool would reuse it. */
		unfinished_tidy(1);
		pthread_mutex_lock(&a->lock);
		rc = device_attach(a, &failed);
		pthread_mutex_unlock(&a->lock);
	}
	if (rc < 0) {
		region_fail(err, rc, "device memory: cannot map %zu bytes on device %d (%s failed)",
			    a->mapped, dev, failed);
		retire(a);
		return rc;
	}
	a->state = ALLOC_ACTIVE;
	a->slab = slab;
	PUBLISH(rc = live_add_locked(a));
	if (rc < 0) {
		region_fail(err, rc, "host memory: no room to record the allocation");
		retire(a);
		return rc;
	}
	*va = a->va;
	return 0;
}

/* Find `va` among live records of `kind` (taking it out of the table:
 * the table's reference becomes the caller's) or among unfinished frees
 * (with a new reference). *claimed: a request holds it. NULL if neither.
 * (A handle value is never an address cudaFree takes, nor the reverse.)
 * Slabs are found only by slab.c (`slab`): the application's address of
 * the first allocation carved from one is the slab's own. */
static struct alloc *take_for_free(uint64_t va, enum alloc_kind kind, int slab, int *claimed)
{
	struct alloc *a;

	pthread_mutex_lock(&registry.table_lock);
	HASH_FIND(hh, registry.live, &va, sizeof(va), a);
	if (a != NULL && (a->kind != kind || a->slab != slab)) {
		a = NULL;
	} else if (a != NULL) {
		HASH_DEL(registry.live, a);
		__atomic_sub_fetch(&registry.live_count, 1, __ATOMIC_RELAXED);
		__atomic_store_n(&a->freed, 1, __ATOMIC_RELEASE);
	} else {
		for (a = registry.unfinished; a != NULL; a = a->next_unfinished)
			if (a->va == va && a->kind == kind && a->slab == slab &&
			    (a->va_reserved || kind == KIND_APP))
				break;
		if (a != NULL)
			a->refs++;
	}
	if (a != NULL)
		*claimed = a->claimed;
	pthread_mutex_unlock(&registry.table_lock);
	return a;
}

/* Give back what the driver holds for a record taken for freeing (the
 * caller's reference goes with it). */
static int finish_free(struct alloc *a, int claimed)
{
	const char *failed = "";
	int rc;

	/* Waits only for the step a request may be doing on this record. */
	pthread_mutex_lock(&a->lock);
	rc = teardown(a, !claimed, &failed);
	pthread_mutex_unlock(&a->lock);
	pthread_mutex_lock(&registry.table_lock);
	if (rc < 0 && !a->on_unfinished) {
		park_locked(a); /* our reference becomes the list's */
		a = NULL;
	} else {
		unpark_if_empty_locked(a);
	}
	pthread_mutex_unlock(&registry.table_lock);
	if (a != NULL)
		alloc_put(a);
	/* Not right after a failure: the caller's retry of this same free
	 * must find it still here. */
	if (rc == 0)
		unfinished_tidy(0);
	return rc;
}

/* ---- staged contents, read in place ---------------------------------- */

/* The live record whose bytes include va, with a new reference; NULL if
 * none. A walk of the table: for a tensor inside a cached block, which
 * starts anywhere in the allocation. */
static struct alloc *take_containing(uint64_t va)
{
	struct alloc *a, *tmp, *hit = NULL;

	pthread_mutex_lock(&registry.table_lock);
	HASH_FIND(hh, registry.live, &va, sizeof(va), hit);
	if (hit == NULL) {
		HASH_ITER(hh, registry.live, a, tmp) {
			if (va >= a->va && va - a->va < a->size) {
				hit = a;
				break;
			}
		}
	}
	if (hit != NULL)
		hit->refs++;
	pthread_mutex_unlock(&registry.table_lock);
	return hit;
}

/* Why `a` (not staged) has no staged contents. */
static int not_staged(const struct alloc *a, struct region_err *err)
{
	if (a->state == ALLOC_ACTIVE)
		return region_fail(err, -EBUSY, "the allocation at 0x%llx ('%s') is active: "
				   "its contents are on the device, not staged",
				   (unsigned long long)a->va, a->tag);
	return region_fail(err, -ENODATA, "the allocation at 0x%llx ('%s') was paused without "
			   "staging: its contents are gone (allocations made in a region with "
			   "staging keep them)", (unsigned long long)a->va, a->tag);
}

int region_host_copy(uint64_t va, size_t size, void *dst, void **host,
		     struct region_err *err)
{
	struct alloc *a = take_containing(va);
	uint64_t base;
	size_t len;
	int rc = 0;

	/* In a slab, only slab.c knows the application's allocation. */
	if (a != NULL && a->slab && slab_piece(a, va, &base, &len) < 0) {
		alloc_put(a);
		a = NULL;
	} else if (a != NULL && !a->slab) {
		base = a->va;
		len = a->size;
	}
	if (a == NULL)
		return region_fail(err, -ENOENT, "0x%llx is in no tagged allocation",
				   (unsigned long long)va);
	/* The state and the buffer change only under this lock. */
	pthread_mutex_lock(&a->lock);
	if (alloc_freed(a))
		rc = region_fail(err, -ENOENT, "the allocation at 0x%llx was freed",
				 (unsigned long long)base);
	else if (size > len - (va - base))
		rc = region_fail(err, -EINVAL, "%zu bytes at 0x%llx run past the end of the "
				 "allocation at 0x%llx (%zu bytes)", size,
				 (unsigned long long)va, (unsigned long long)base, len);
	else if (a->state != ALLOC_STAGED)
		rc = not_staged(a, err);
	else if (dst != NULL)
		memcpy(dst, (const char *)a->host + (va - a->va), size);
	else
		*host = (char *)a->host + (va - a->va);
	pthread_mutex_unlock(&a->lock);
	alloc_put(a);
	return rc;
}

static int free_record(uint64_t key, enum alloc_kind kind, int slab)
{
	struct alloc *a;
	int claimed = 0;

	a = take_for_free(key, kind, slab, &claimed);
	if (a == NULL)
		return -ENOENT;
	return finish_free(a, claimed);
}

int region_free_key(uint64_t key, enum alloc_kind kind)
{
	return free_record(key, kind, 0);
}

int slab_record_free(uint64_t va)
{
	return free_record(va, KIND_OWN, 1);
}

int region_free(uint64_t va)
{
	int rc = slab_free(va);

	return rc == -ENOENT ? region_free_key(va, KIND_OWN) : rc;
}

int region_owns(uint64_t va)
{
	struct alloc *a;

	if (region_count() == 0)
		return 0;
	if (slab_device(va) >= 0)
		return 1;
	pthread_mutex_lock(&registry.table_lock);
	a = live_find_locked(va);
	pthread_mutex_unlock(&registry.table_lock);
	return a != NULL && a->kind == KIND_OWN && !a->slab;
}

/* The device of the live allocation at `va`; -ENOENT if none. */
static int owner_device(uint64_t va)
{
	struct alloc *a;
	int dev = -ENOENT;

	pthread_mutex_lock(&registry.table_lock);
	a = live_find_locked(va);
	if (a != NULL && a->kind == KIND_OWN && !a->slab)
		dev = a->dev;
	pthread_mutex_unlock(&registry.table_lock);
	return dev;
}

/* The stream got to the free (synchronised): give the memory back now,
 * with no device-wide wait. */
static int free_now(struct alloc *a, int claimed)
{
	pthread_mutex_lock(&a->lock);
	if (stage_wait(a) == 0 && a->state == ALLOC_ACTIVE)
		alloc_set_state(a, ALLOC_PAUSED);
	pthread_mutex_unlock(&a->lock);
	return finish_free(a, claimed);
}

int region_free_async(uint64_t va, void *stream)
{
	const struct drv_ops *ops = registry.ops;
	int dev = owner_device(va), claimed = 0, rc;
	struct alloc *a;
	void *ev = NULL;

	/* Carved from a slab: nothing is unmapped, but its granules may be
	 * carved again at once, so the stream must be past the free first
	 * (slab_free synchronises the device, as cudaFree does). */
	if (dev < 0 && slab_device(va) >= 0)
		return slab_free(va);
	if (dev < 0)
		return -ENOENT;
	rc = ops->event_create(dev, &ev);
	if (rc == 0 && (rc = ops->event_record(dev, ev, stream)) < 0) {
		(void)ops->event_destroy(dev, ev);
		ev = NULL;
	}
	/* No event (another context's stream): wait for the stream itself. */
	if (rc < 0 && (rc = ops->stream_sync(dev, stream)) < 0)
		return rc; /* nothing changed */
	a = take_for_free(va, KIND_OWN, 0, &claimed);
	if (a == NULL) { /* freed by another thread meanwhile */
		if (ev != NULL)
			(void)ops->event_destroy(dev, ev);
		return -ENOENT;
	}
	if (ev == NULL)
		return free_now(a, claimed);
	pthread_mutex_lock(&a->lock);
	a->free_event = ev;
	pthread_mutex_unlock(&a->lock);
	/* Our reference becomes the list's. */
	PUBLISH(if (a->on_unfinished) a->refs--; else park_locked(a);
		pending_push_locked(a));
	unfinished_tidy(0);
	return 0;
}

/* ---- claims ------------------------------------------------------------ */

static int nothing_tagged(const struct tagset *ts, struct region_err *err)
{
	char names[256];

	tagset_format(ts, names, sizeof(names));
	if (ts->all)
		return region_fail(err, -ENOENT, "nothing tagged: no tagged allocation is live");
	return region_fail(err, -ENOENT, "nothing tagged '%s'", names);
}

int claim(const struct tagset *ts, int (*want)(const struct alloc *, unsigned),
	  unsigned flags, struct claim *c, struct region_err *err)
{
	struct alloc *a, *tmp;
	size_t matched = 0, cap;

	memset(c, 0, sizeof(*c));
	pthread_mutex_lock(&registry.table_lock);
	cap = registry.live_count ? registry.live_count : 1;
	c->list = malloc(sizeof(*c->list) * cap);
	c->had_host = calloc(cap, 1);
	c->changed = calloc(cap, 1);
	if (c->list == NULL || c->had_host == NULL || c->changed == NULL) {
		pthread_mutex_unlock(&registry.table_lock);
		let_go(c);
		return region_fail(err, -ENOMEM, "host memory: no room to list allocations");
	}
	HASH_ITER(hh, registry.live, a, tmp) {
		if (!tagset_has(ts, a->tag))
			continue;
		matched++;
		if (!want(a, flags))
			continue;
		a->refs++;
		a->claimed = 1;
		a->dtoh_queued = 0;
		c->had_host[c->n] = a->host != NULL;
		c->list[c->n++] = a;
	}
	pthread_mutex_unlock(&registry.table_lock);
	if (matched == 0)
		return nothing_tagged(ts, err);
	return 0;
}

void let_go(struct claim *c)
{
	size_t i;

	pthread_mutex_lock(&registry.table_lock);
	for (i = 0; i < c->n; i++)
		c->list[i]->claimed = 0;
	pthread_mutex_unlock(&registry.table_lock);
	for (i = 0; i < c->n; i++)
		alloc_put(c->list[i]);
	free(c->list);
	free(c->had_host);
	free(c->changed);
	memset(c, 0, sizeof(*c));
}

/* Append `tag` to the list "a,b" in names unless it is there already. */
static void names_add(char *names, size_t len, const char *tag)
{
	size_t used = strlen(names), tl = strlen(tag);
	const char *p = names;

	while ((p = strstr(p, tag)) != NULL) {
		if ((p == names || p[-1] == ',') && (p[tl] == ',' || p[tl] == '\0'))
			return;
		p += tl;
	}
	if (used + tl + 2 < len)
		snprintf(names + used, len - used, "%s%s", used ? "," : "", tag);
}

void discarded_scan(const struct tagset *ts, size_t *count, uint64_t *bytes,
		    char *names, size_t len)
{
	struct alloc *a, *tmp;

	*count = 0;
	*bytes = 0;
	names[0] = '\0';
	pthread_mutex_lock(&registry.table_lock);
	HASH_ITER(hh, registry.live, a, tmp) {
		if (!tagset_has(ts, a->tag) || a->state != ALLOC_PAUSED)
			continue;
		(*count)++;
		*bytes += a->size;
		names_add(names, len, a->tag);
	}
	pthread_mutex_unlock(&registry.table_lock);
}

/* ---- figures --------------------------------------------------------- */

int region_stat(const struct tagset *ts, struct memctl_stat *out)
{
	struct alloc *a, *tmp;
	int found = 0;

	memset(out, 0, sizeof(*out));
	pthread_mutex_lock(&registry.table_lock);
	HASH_ITER(hh, registry.live, a, tmp) {
		if (!tagset_has(ts, a->tag))
			continue;
		found = 1;
		out->allocations++;
		if (a->state == ALLOC_ACTIVE)
			out->active_bytes += a->mapped;
		else
			out->paused_bytes += a->mapped;
		if (a->state == ALLOC_STAGED)
			out->staged_bytes += a->host_size;
	}
	pthread_mutex_unlock(&registry.table_lock);
	return found ? 0 : -ENOENT;
}

static void census_add(struct region_census *c, const struct alloc *a)
{
	c->handles += a->handle != 0;
	c->handle_bytes += a->handle != 0 ? a->mapped : 0;
	c->mappings += a->kind == KIND_APP ? app_mappings(a) : a->dev_mapped != 0;
	c->reservations += a->va_reserved != 0;
	c->host_buffers += a->host != NULL;
	c->host_pinned += a->host != NULL && a->host_pinned;
}

void region_census(struct region_census *out)
{
	struct alloc *a, *tmp;

	memset(out, 0, sizeof(*out));
	pthread_mutex_lock(&registry.table_lock);
	HASH_ITER(hh, registry.live, a, tmp) {
		out->allocations++;
		out->leftovers += alloc_has_leftover(a);
		census_add(out, a);
	}
	for (a = registry.unfinished; a != NULL; a = a->next_unfinished) {
		out->unfinished_frees++;
		census_add(out, a);
	}
	pthread_mutex_unlock(&registry.table_lock);
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
	to->discarded += from->discarded;
	to->resident_bytes += from->resident_bytes;
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
	pthread_mutex_lock(&registry.table_lock);
	r = calloc(registry.live_count ? registry.live_count : 1, sizeof(*r));
	if (r == NULL) {
		pthread_mutex_unlock(&registry.table_lock);
		return -ENOMEM;
	}
	HASH_ITER(hh, registry.live, a, tmp) {
		struct region_tag_stat *row = &r[k++];

		snprintf(row->name, sizeof(row->name), "%s", a->tag);
		row->allocations = 1;
		if (a->state == ALLOC_ACTIVE)
			row->active_bytes = a->mapped;
		else
			row->paused_bytes = a->mapped;
		if (a->state == ALLOC_STAGED)
			row->staged_bytes = a->host_size;
		row->discarded = a->state == ALLOC_PAUSED;
		if (a->host != NULL)
			row->host_bytes = a->host_size;
		if (a->resident)
			row->resident_bytes = a->mapped;
	}
	pthread_mutex_unlock(&registry.table_lock);
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

	pthread_mutex_lock(&registry.table_lock);
	HASH_ITER(hh, registry.live, a, tmp)
		mask |= 1u << a->dev;
	pthread_mutex_unlock(&registry.table_lock);
	return mask;
}
