/* SPDX-License-Identifier: Apache-2.0 */
/*
 * app.c - memory the application maps itself: handles it creates with
 * cuMemCreate under a tag and maps with cuMemMap into reservations of its
 * own (PyTorch's expandable segments: one handle per 2 MiB or 20 MiB
 * segment, side by side in one large reservation, mapped, unmapped and
 * released in any order).
 *
 * Each handle is a record of the registry (KIND_APP), keyed by the value
 * the application was given: the record's own address, which no live
 * driver handle can share, and which stays the same while the real handle
 * behind it is released at a pause and created anew at a resume. Beside
 * the record memctl keeps what it needs to rebuild the application's view:
 * the properties the handle was created with, its mappings (in a table of
 * their own, keyed by address, for the calls that name addresses) and the
 * access granted to each. A pause then unmaps every mapping and releases
 * the real handle, staging the contents first through a mapping of the
 * whole handle; a resume creates memory with the same properties, maps it
 * at the same places, grants the same access and copies the contents
 * back.
 *
 * The application's own calls keep working whatever state the memory is
 * in: what the driver holds, the driver does (the answer is the driver's);
 * what memctl took away, memctl answers for (a paused mapping that the
 * application unmaps is simply forgotten). These calls take turns under
 * the app lock and lock the records they touch, so they wait for a
 * running request's step on those records, never for the request.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static struct {
	pthread_mutex_t lock;  /* the app lock: the application's calls take turns */
	struct app_map *maps;  /* every mapping of a handle of memctl's; table lock */
	uint64_t count;        /* live handle records, read without a lock */
} apps = { .lock = PTHREAD_MUTEX_INITIALIZER };

/* Run `stmt` under the table lock: how map fields are published. */
#define PUBLISH(stmt)            \
	do {                     \
		table_lock();    \
		stmt;            \
		table_unlock();  \
	} while (0)

uint64_t region_app_count(void)
{
	return __atomic_load_n(&apps.count, __ATOMIC_RELAXED);
}

/* ---- what a pause and a resume do with a handle ----------------------- */

size_t app_mappings(const struct alloc *a)
{
	size_t i, n = 0;

	for (i = 0; i < a->app->nmaps; i++)
		n += a->app->maps[i]->mapped != 0;
	return n;
}

/* The mapping of the whole handle through which contents are copied. */
static const struct app_map *window_map(const struct alloc *a)
{
	uint64_t w = alloc_window(a);
	size_t i;

	for (i = 0; w != 0 && i < a->app->nmaps; i++)
		if (a->app->maps[i]->va == w)
			return a->app->maps[i];
	return NULL;
}

/* The device may read and write all of mapping m (a copy needs both). */
static int read_write(const struct app_map *m, int dev)
{
	int g, k;

	for (g = 0; g < m->ngrants; g++) {
		const struct app_grant *gr = &m->grants[g];

		if (gr->va != m->va || gr->size != m->size)
			continue;
		for (k = 0; k < gr->n; k++)
			if (gr->acc[k].type == REGION_LOC_DEVICE && gr->acc[k].id == dev &&
			    gr->acc[k].flags == REGION_ACCESS_RW)
				return 1;
	}
	return 0;
}

int app_pausable(const struct alloc *a)
{
	const struct app_map *w;

	if (a->state != ALLOC_ACTIVE || a->resident || a->handle == 0)
		return 0;
	w = window_map(a);
	return w != NULL && read_write(w, a->dev) && app_mappings(a) == a->app->nmaps;
}

int app_resumable(const struct alloc *a)
{
	return a->state != ALLOC_ACTIVE && a->app->nmaps > 0 &&
	       (a->state == ALLOC_PAUSED || alloc_window(a) != 0);
}

int app_attach(struct alloc *a, const char **failed)
{
	const struct drv_ops *ops = registry_ops();
	const char *ignored;
	uint64_t h = a->handle;
	size_t i;
	int g, rc;

	if (h == 0) { /* a handle still held from a failed release is reused */
		rc = ops->create_as(a->dev, a->mapped, a->app->prop, &h);
		if (rc < 0)
			return *failed = "cuMemCreate", rc;
		PUBLISH(a->handle = h);
	}
	for (i = 0; i < a->app->nmaps; i++) {
		struct app_map *m = a->app->maps[i];

		if (m->mapped)
			continue;
		rc = ops->map(a->dev, m->va, m->size, m->offset, h);
		if (rc < 0) {
			*failed = "cuMemMap";
			goto undo;
		}
		PUBLISH(m->mapped = 1; a->dev_mapped = 1);
	}
	/* Every mapping starts with no access: grant what the application
	 * granted, in the order it did. */
	for (i = 0; i < a->app->nmaps; i++) {
		const struct app_map *m = a->app->maps[i];

		for (g = 0; g < m->ngrants; g++) {
			const struct app_grant *gr = &m->grants[g];

			rc = ops->set_access_as(a->dev, gr->va, gr->size, gr->acc, gr->n);
			if (rc < 0) {
				*failed = "cuMemSetAccess";
				goto undo;
			}
		}
	}
	return 0;
undo:
	(void)app_detach(a, a->state, &ignored);
	return rc;
}

int app_detach(struct alloc *a, enum alloc_state to, const char **failed)
{
	const struct drv_ops *ops = registry_ops();
	size_t i;
	int rc;

	for (i = 0; i < a->app->nmaps; i++) {
		struct app_map *m = a->app->maps[i];

		if (!m->mapped)
			continue;
		rc = ops->unmap(a->dev, m->va, m->size);
		if (rc < 0)
			return *failed = "cuMemUnmap", rc;
		/* Not mapped everywhere any more: not active. */
		PUBLISH(m->mapped = 0; a->dev_mapped = app_mappings(a) > 0;
			if (a->state == ALLOC_ACTIVE) a->state = to);
	}
	if (a->handle != 0) {
		rc = ops->release(a->dev, a->handle);
		if (rc < 0)
			return *failed = "cuMemRelease", rc;
		/* Mapped nowhere, it may have been active until now: with its
		 * memory gone it is not. */
		PUBLISH(a->handle = 0; if (a->state == ALLOC_ACTIVE) a->state = to);
	}
	return 0;
}

/* ---- records and mappings --------------------------------------------- */

static void map_destroy(struct app_map *m)
{
	free(m->grants);
	free(m);
}

void app_free(struct alloc *a)
{
	free(a->app->maps);
	free(a->app);
	a->app = NULL;
}

void app_forget(void)
{
	/* As region_forget_all: the table may be mid-change in the child;
	 * start empty without walking or freeing what was inherited. */
	pthread_mutex_init(&apps.lock, NULL);
	apps.maps = NULL;
	__atomic_store_n(&apps.count, 0, __ATOMIC_RELAXED);
}

int region_app_adopt(const char *tag, unsigned flags, int dev, size_t size, const void *prop,
		     size_t prop_len, uint64_t real, uint64_t *id, struct region_err *err)
{
	struct alloc *a;
	int rc;

	if (!tag_valid(tag) || size == 0 || prop_len > REGION_PROP_MAX || real == 0)
		return region_fail(err, -EINVAL, "bad tag, size or properties");
	a = alloc_new(tag, flags, dev, size, 1);
	if (a != NULL && (a->app = calloc(1, sizeof(*a->app))) == NULL) {
		alloc_destroy(a);
		a = NULL;
	}
	if (a == NULL)
		return region_fail(err, -ENOMEM, "host memory: no room for a record");
	a->kind = KIND_APP;
	memcpy(a->app->prop, prop, prop_len);
	a->app->refs = 1;
	a->va = (uint64_t)(uintptr_t)a;
	a->handle = real;
	a->state = ALLOC_ACTIVE; /* its memory exists; mapped nowhere yet */
	PUBLISH(rc = live_add_locked(a));
	if (rc < 0) {
		alloc_destroy(a);
		return region_fail(err, rc, "host memory: no room to record the handle");
	}
	__atomic_add_fetch(&apps.count, 1, __ATOMIC_RELAXED);
	*id = a->va;
	return 0;
}

/* The live handle record `id`, with a reference; NULL if none. */
static struct alloc *handle_get(uint64_t id)
{
	struct alloc *a;

	if (region_app_count() == 0)
		return NULL;
	table_lock();
	a = live_find_locked(id);
	if (a != NULL && a->kind == KIND_APP)
		a->refs++;
	else
		a = NULL;
	table_unlock();
	return a;
}

int region_app_is(uint64_t id)
{
	struct alloc *a = handle_get(id);

	if (a == NULL)
		return 0;
	alloc_put(a);
	return 1;
}

/* Add a mapping to its owner's list and the table. Owner's lock held. */
static int map_add(struct alloc *a, uint64_t va, size_t size, size_t offset, int mapped)
{
	struct app_mem *am = a->app;
	struct app_map *m = calloc(1, sizeof(*m));
	int added;

	if (m == NULL)
		return -ENOMEM;
	if (am->nmaps == am->cap) {
		size_t cap = am->cap ? am->cap * 2 : 2;
		struct app_map **l = realloc(am->maps, cap * sizeof(*l));

		if (l == NULL) {
			free(m);
			return -ENOMEM;
		}
		am->maps = l;
		am->cap = cap;
	}
	m->va = va;
	m->size = size;
	m->offset = offset;
	m->mapped = mapped;
	m->owner = a;
	table_lock();
	HASH_ADD(hh, apps.maps, va, sizeof(m->va), m);
	added = m->hh.tbl != NULL;
	if (added) {
		am->maps[am->nmaps++] = m;
		if (mapped)
			a->dev_mapped = 1;
	}
	table_unlock();
	if (!added) {
		free(m); /* the hash could not grow */
		return -ENOMEM;
	}
	return 0;
}

/* Forget one mapping. Owner's lock held. */
static void map_forget(struct app_map *m)
{
	struct app_mem *am = m->owner->app;
	size_t i;

	table_lock();
	HASH_DEL(apps.maps, m);
	for (i = 0; i < am->nmaps && am->maps[i] != m; i++)
		;
	if (i < am->nmaps)
		am->maps[i] = am->maps[--am->nmaps];
	m->owner->dev_mapped = app_mappings(m->owner) > 0;
	table_unlock();
	map_destroy(m);
}

/* Whether [va, va+size) overlaps a mapping of memctl's. Table lock held. */
static int overlaps_locked(uint64_t va, size_t size)
{
	struct app_map *m, *tmp;

	HASH_ITER(hh, apps.maps, m, tmp)
		if (m->va < va + size && va < m->va + m->size)
			return 1;
	return 0;
}

/* The application's mapping that holds addr, or NULL. Table lock held. */
static struct app_map *map_containing_locked(uint64_t addr)
{
	struct app_map *m, *tmp;

	HASH_ITER(hh, apps.maps, m, tmp)
		if (addr >= m->va && addr < m->va + m->size)
			return m;
	return NULL;
}

/* The record whose memory holds addr: an application's mapping's, else
 * one of memctl's own allocations; NULL if none. Table lock held. */
static struct alloc *owner_containing_locked(uint64_t addr)
{
	struct app_map *m = map_containing_locked(addr);

	if (m != NULL && m->owner != NULL)
		return m->owner;
	return live_containing_locked(addr);
}

int region_app_map(uint64_t id, uint64_t va, size_t size, size_t offset)
{
	struct alloc *a;
	int rc = 0, busy;

	pthread_mutex_lock(&apps.lock);
	a = handle_get(id);
	if (a == NULL) {
		pthread_mutex_unlock(&apps.lock);
		return -ENOENT;
	}
	pthread_mutex_lock(&a->lock);
	table_lock();
	busy = overlaps_locked(va, size);
	table_unlock();
	if (size == 0 || offset > a->mapped || size > a->mapped - offset || busy)
		rc = -EINVAL; /* as the driver would answer */
	else if (a->state == ALLOC_ACTIVE)
		rc = registry_ops()->map(a->dev, va, size, offset, a->handle);
	/* Paused: recorded only, mapped by the next resume. */
	if (rc == 0 && (rc = map_add(a, va, size, offset, a->state == ALLOC_ACTIVE)) < 0 &&
	    a->state == ALLOC_ACTIVE)
		(void)registry_ops()->unmap(a->dev, va, size);
	pthread_mutex_unlock(&a->lock);
	alloc_put(a);
	pthread_mutex_unlock(&apps.lock);
	return rc;
}

/* ---- calls that name a range: the mappings of memctl's in it ---------- */

struct hits {
	struct app_map **m;   /* overlapping mappings, by address */
	size_t n;
	struct alloc **own;   /* their owners, each once, with a reference,
				 by record address (the order they are locked in) */
	size_t nown;
};

static int by_va(const void *x, const void *y)
{
	uint64_t a = (*(struct app_map *const *)x)->va, b = (*(struct app_map *const *)y)->va;

	return a < b ? -1 : a > b;
}

static int by_address(const void *x, const void *y)
{
	uintptr_t a = (uintptr_t)*(struct alloc *const *)x, b = (uintptr_t)*(struct alloc *const *)y;

	return a < b ? -1 : a > b;
}

/* Collect the mappings overlapping [va, va+size) and their owners; -ENOENT
 * if there are none. App lock held: the set cannot change until it is let
 * go (hits_done). */
static int collect(uint64_t va, size_t size, struct hits *h)
{
	struct app_map *m, *tmp;
	size_t cap, i;

	memset(h, 0, sizeof(*h));
	table_lock();
	cap = HASH_COUNT(apps.maps);
	h->m = malloc(sizeof(*h->m) * (cap ? cap : 1));
	h->own = malloc(sizeof(*h->own) * (cap ? cap : 1));
	if (h->m == NULL || h->own == NULL) {
		table_unlock();
		free(h->m);
		free(h->own);
		return -ENOMEM;
	}
	HASH_FIND(hh, apps.maps, &va, sizeof(va), m);
	if (m != NULL && m->size >= size) { /* the common case: one whole mapping */
		h->m[h->n++] = m;
	} else {
		HASH_ITER(hh, apps.maps, m, tmp)
			if (m->va < va + size && va < m->va + m->size)
				h->m[h->n++] = m;
	}
	for (i = 0; i < h->n; i++)
		h->own[i] = h->m[i]->owner;
	qsort(h->own, h->n, sizeof(*h->own), by_address);
	for (i = 0; i < h->n; i++)
		if (h->nown == 0 || h->own[i] != h->own[h->nown - 1])
			h->own[h->nown++] = h->own[i];
	for (i = 0; i < h->nown; i++)
		h->own[i]->refs++;
	table_unlock();
	if (h->n == 0) {
		free(h->m);
		free(h->own);
		return -ENOENT;
	}
	qsort(h->m, h->n, sizeof(*h->m), by_va);
	return 0;
}

static void owners_lock(struct hits *h)
{
	size_t i;

	for (i = 0; i < h->nown; i++)
		pthread_mutex_lock(&h->own[i]->lock);
}

static void owners_unlock(struct hits *h)
{
	size_t i = h->nown;

	while (i-- > 0)
		pthread_mutex_unlock(&h->own[i]->lock);
}

/* The handle is gone for the application: no reference, no mapping. */
static int unused(struct alloc *a)
{
	int gone;

	table_lock();
	gone = a->app->refs == 0 && a->app->nmaps == 0 && !alloc_freed(a);
	table_unlock();
	return gone;
}

/* Give back the memory of handles the application has finished with. */
static int retire_unused(struct alloc *a)
{
	if (!unused(a))
		return 0;
	__atomic_sub_fetch(&apps.count, 1, __ATOMIC_RELAXED);
	return region_free_key(a->va, KIND_APP);
}

/* Let the owners go, giving back those now unused. */
static int hits_done(struct hits *h)
{
	size_t i;
	int rc = 0, r;

	for (i = 0; i < h->nown; i++) {
		r = retire_unused(h->own[i]);
		if (rc == 0)
			rc = r;
		alloc_put(h->own[i]);
	}
	free(h->m);
	free(h->own);
	return rc;
}

/*
 * Call `op` on the parts of [va, va+size) the driver holds something in:
 * all of it when every mapping of memctl's there is mapped, else the
 * pieces between the paused ones (the driver has nothing where those
 * are). Forgets, with `forget`, the mappings each successful piece
 * covered. Owners locked.
 */
static int over_pieces(uint64_t va, size_t size, struct hits *h,
		       int (*op)(int dev, uint64_t va, size_t size, const void *arg),
		       const void *arg, int forget)
{
	uint64_t at = va, end = va + size;
	size_t i, k;
	int rc;

	for (i = 0; i <= h->n; i++) {
		uint64_t stop = end;

		if (i < h->n && h->m[i]->mapped)
			continue;
		if (i < h->n)
			stop = h->m[i]->va > va ? h->m[i]->va : va;
		if (stop > at) {
			rc = op(h->own[0]->dev, at, stop - at, arg);
			if (rc < 0)
				return rc;
			for (k = 0; forget && k < h->n; k++)
				if (h->m[k] != NULL && h->m[k]->mapped && h->m[k]->va >= at &&
				    h->m[k]->va < stop) {
					map_forget(h->m[k]);
					h->m[k] = NULL;
				}
		}
		if (i < h->n)
			at = h->m[i]->va + h->m[i]->size;
	}
	return 0;
}

static int op_unmap(int dev, uint64_t va, size_t size, const void *arg)
{
	(void)arg;
	return registry_ops()->unmap(dev, va, size);
}

int region_app_unmap(uint64_t va, size_t size)
{
	struct hits h;
	size_t i;
	int rc, done, partial = 0, paused = 0;

	if (region_app_count() == 0)
		return -ENOENT;
	pthread_mutex_lock(&apps.lock);
	rc = collect(va, size, &h);
	if (rc < 0)
		goto out;
	owners_lock(&h);
	for (i = 0; i < h.n; i++) {
		partial |= h.m[i]->va < va || h.m[i]->va + h.m[i]->size > va + size;
		paused |= !h.m[i]->mapped;
	}
	if (partial && paused) {
		rc = -EINVAL; /* part of a mapping: the driver refuses that */
	} else {
		/* memctl's own copies through these mappings land first. */
		for (i = 0; i < h.nown; i++)
			(void)stage_wait(h.own[i]);
		rc = over_pieces(va, size, &h, op_unmap, NULL, 1);
	}
	/* Paused mappings go once the driver has done its part. */
	for (i = 0; rc == 0 && i < h.n; i++)
		if (h.m[i] != NULL)
			map_forget(h.m[i]);
	owners_unlock(&h);
	done = hits_done(&h);
	if (rc == 0)
		rc = done;
out:
	pthread_mutex_unlock(&apps.lock);
	return rc;
}

/* ---- access ----------------------------------------------------------- */

struct access_arg {
	const struct region_access *acc;
	int n;
};

static int op_access(int dev, uint64_t va, size_t size, const void *arg)
{
	const struct access_arg *x = arg;

	return registry_ops()->set_access_as(dev, va, size, x->acc, x->n);
}

/* Merge a grant over [va, va+size) (clipped to m) into m's list: a grant
 * of the same range is updated per location, another range appended. */
static int grant_add(struct app_map *m, uint64_t va, size_t size,
		     const struct region_access *acc, int n)
{
	uint64_t from = va > m->va ? va : m->va;
	uint64_t to = va + size < m->va + m->size ? va + size : m->va + m->size;
	struct app_grant *g = NULL;
	int i, k;

	table_lock(); /* readers of the list hold it */
	for (i = 0; i < m->ngrants && g == NULL; i++)
		if (m->grants[i].va == from && m->grants[i].size == to - from)
			g = &m->grants[i];
	if (g == NULL) {
		struct app_grant *l = realloc(m->grants, sizeof(*l) * (size_t)(m->ngrants + 1));

		if (l == NULL) {
			table_unlock();
			return -ENOMEM;
		}
		m->grants = l;
		g = &l[m->ngrants++];
		memset(g, 0, sizeof(*g));
		g->va = from;
		g->size = to - from;
	}
	for (i = 0; i < n; i++) {
		for (k = 0; k < g->n; k++)
			if (g->acc[k].type == acc[i].type && g->acc[k].id == acc[i].id)
				break;
		if (k == g->n && g->n == REGION_ACCESS_MAX)
			continue;
		g->acc[k] = acc[i];
		if (k == g->n)
			g->n++;
	}
	table_unlock();
	return 0;
}

int region_app_set_access(uint64_t va, size_t size, const struct region_access *acc, int n)
{
	struct access_arg arg = { acc, n };
	struct hits h;
	size_t i;
	int rc;

	if (region_app_count() == 0)
		return -ENOENT;
	pthread_mutex_lock(&apps.lock);
	rc = collect(va, size, &h);
	if (rc < 0)
		goto out;
	owners_lock(&h);
	rc = over_pieces(va, size, &h, op_access, &arg, 0);
	for (i = 0; rc == 0 && i < h.n; i++)
		rc = grant_add(h.m[i], va, size, acc, n);
	owners_unlock(&h);
	(void)hits_done(&h);
out:
	pthread_mutex_unlock(&apps.lock);
	return rc;
}

/* ---- references, properties, export ----------------------------------- */

int region_app_release(uint64_t id)
{
	struct alloc *a;
	int rc = 0;

	pthread_mutex_lock(&apps.lock);
	a = handle_get(id);
	if (a == NULL) {
		/* A release the driver refused before: retry it. */
		rc = region_free_key(id, KIND_APP);
		pthread_mutex_unlock(&apps.lock);
		return rc;
	}
	table_lock();
	if (a->app->refs <= 0)
		rc = -EINVAL;
	else
		a->app->refs--;
	table_unlock();
	if (rc == 0)
		rc = retire_unused(a);
	alloc_put(a);
	pthread_mutex_unlock(&apps.lock);
	return rc;
}

int region_app_retain(uint64_t addr, uint64_t *id)
{
	struct app_map *m;
	int rc = -ENOENT;

	if (region_app_count() == 0)
		return -ENOENT;
	pthread_mutex_lock(&apps.lock);
	table_lock();
	m = map_containing_locked(addr);
	if (m != NULL) {
		m->owner->app->refs++;
		*id = m->owner->va;
		rc = 0;
	}
	table_unlock();
	pthread_mutex_unlock(&apps.lock);
	return rc;
}

int region_app_props(uint64_t id, void *prop, size_t len)
{
	struct alloc *a = handle_get(id);

	if (a == NULL)
		return -ENOENT;
	memcpy(prop, a->app->prop, len < REGION_PROP_MAX ? len : REGION_PROP_MAX);
	alloc_put(a);
	return 0;
}

/* Mark `a` resident for good (a reference of the caller's): 1 newly, 0
 * already, -EBUSY while it is paused (its memory does not exist now). */
static int pin(struct alloc *a, uint64_t *real)
{
	int rc;

	pthread_mutex_lock(&a->lock);
	if (a->state != ALLOC_ACTIVE || a->handle == 0) {
		rc = -EBUSY;
	} else {
		rc = a->resident ? 0 : 1;
		PUBLISH(a->resident = 1);
		if (real != NULL)
			*real = a->handle;
	}
	pthread_mutex_unlock(&a->lock);
	return rc;
}

int region_app_pin(uint64_t id, uint64_t *real)
{
	struct alloc *a;
	int rc;

	pthread_mutex_lock(&apps.lock);
	a = handle_get(id);
	rc = a != NULL ? pin(a, real) : -ENOENT;
	if (a != NULL)
		alloc_put(a);
	pthread_mutex_unlock(&apps.lock);
	return rc;
}

void region_app_unpin(uint64_t id)
{
	struct alloc *a = handle_get(id);

	if (a == NULL)
		return;
	PUBLISH(a->resident = 0);
	alloc_put(a);
}

int region_pin_addr(uint64_t addr)
{
	struct alloc *a;
	int rc;

	if (region_count() == 0)
		return -ENOENT;
	pthread_mutex_lock(&apps.lock);
	table_lock();
	a = owner_containing_locked(addr);
	if (a != NULL)
		a->refs++;
	table_unlock();
	rc = a != NULL ? pin(a, NULL) : -ENOENT;
	if (a != NULL)
		alloc_put(a);
	pthread_mutex_unlock(&apps.lock);
	return rc;
}

void region_unpin_addr(uint64_t addr)
{
	struct alloc *a;

	table_lock();
	a = owner_containing_locked(addr);
	if (a != NULL)
		a->resident = 0;
	table_unlock();
}

int region_app_range(uint64_t addr, uint64_t *base, size_t *size)
{
	struct app_map *m;
	int rc = -ENOENT;

	if (region_app_count() == 0)
		return -ENOENT;
	table_lock();
	m = map_containing_locked(addr);
	if (m != NULL && !m->mapped) {
		*base = m->va;
		*size = m->size;
		rc = 0;
	}
	table_unlock();
	return rc;
}

int region_app_address_free(uint64_t va, size_t size)
{
	struct hits h;
	size_t i;
	int rc, done;

	if (region_app_count() == 0)
		return -ENOENT;
	pthread_mutex_lock(&apps.lock);
	rc = collect(va, size, &h);
	if (rc < 0)
		goto out;
	owners_lock(&h);
	/* The driver judges (it refuses while something is mapped there);
	 * what it frees takes memctl's paused mappings with it. */
	rc = registry_ops()->unreserve(h.own[0]->dev, va, size);
	for (i = 0; rc == 0 && i < h.n; i++)
		map_forget(h.m[i]);
	owners_unlock(&h);
	done = hits_done(&h);
	if (rc == 0)
		rc = done;
out:
	pthread_mutex_unlock(&apps.lock);
	return rc;
}
