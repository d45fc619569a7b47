/* SPDX-License-Identifier: Apache-2.0 */
/*
 * slab.c - small tagged allocations carved out of larger ones
 * (MEMCTL_SLAB, off by default).
 *
 * The driver charges each mapping a fixed cost to unmap and release it
 * (about 30 us on an H100) and to create and map it again (about 45 us),
 * whatever its size: at 4 MiB per allocation that is a third of what
 * copying its contents takes, and a staged pause of thousands of small
 * allocations stays far below the bus speed (docs/benchmarks.md). With
 * slabs on, an allocation of at most a quarter of a slab is carved, in
 * whole granules (so its address is aligned as before), out of a slab: a
 * registry record of the slab's size with the same tag, device and
 * staging flag. Pause, resume, prepare and release-host work on slabs as
 * on any record; the application's address and size of each carved
 * allocation live only here.
 *
 * A slab is carved from only while it is active and no request has
 * claimed it, so a new allocation is always usable at once. The last
 * free of a slab's allocations frees the slab. The trade-offs
 * (docs/design.md, "Slabs"): a slab holds its memory until its last
 * allocation is freed; granules not carved count in their tag's bytes and
 * are copied by a staged pause; figures count slabs, not the allocations
 * carved from them.
 *
 * Locking: the slab lock guards the carved allocations, the list of slabs
 * and every slab's `carved`; it is taken before the table lock, never
 * after, and never held across a driver call.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define SLAB_GRANULES_MAX 64 /* bits of `carved` */

/* One allocation carved out of a slab. */
struct piece {
	uint64_t va;           /* key: the address handed out */
	size_t size;           /* bytes the application asked for */
	struct alloc *slab;
	unsigned first, count; /* its granules in the slab */
	UT_hash_handle hh;
};

static struct {
	pthread_mutex_t lock;
	size_t bytes;          /* slab size; 0: off */
	struct piece *pieces;  /* uthash, keyed by va */
	struct alloc **list;   /* slabs that may be carved from (one reference each) */
	size_t n, cap;
} slabs = { .lock = PTHREAD_MUTEX_INITIALIZER };

void slab_init(size_t bytes)
{
	slabs.bytes = bytes;
}

void slab_forget(void)
{
	/* Inherited half-changed, perhaps: left behind, never walked. */
	pthread_mutex_init(&slabs.lock, NULL);
	slabs.pieces = NULL;
	slabs.list = NULL;
	slabs.n = slabs.cap = 0;
}

/* Granules of a slab on a device of granularity gran. */
static unsigned granules(size_t gran)
{
	size_t n = slabs.bytes / gran;

	return n > SLAB_GRANULES_MAX ? SLAB_GRANULES_MAX : (unsigned)n;
}

/* The first run of `count` granules not carved out of `s`, or -1. */
static int find_run(const struct alloc *s, unsigned total, unsigned count)
{
	unsigned i, run = 0;

	for (i = 0; i < total; i++) {
		run = (s->carved & (1ull << i)) ? 0 : run + 1;
		if (run == count)
			return (int)(i + 1 - count);
	}
	return -1;
}

static uint64_t run_mask(unsigned first, unsigned count)
{
	uint64_t m = count >= 64 ? ~0ull : (1ull << count) - 1;

	return m << first;
}

/* A slab carved from now must be usable at once: active, and no request
 * is about to take its memory away; and pausable, unless kept resident
 * (exported or bound to a multicast object): an allocation carved from a
 * resident slab would never be paused. Slab lock held. */
static int slab_open(struct alloc *s, const char *tag, unsigned flags, int dev)
{
	int open;

	if (s->dev != dev || strcmp(s->tag, tag) != 0 ||
	    s->stage_always != ((flags & MEMCTL_REGION_STAGE_CPU) != 0))
		return 0;
	table_lock();
	open = s->state == ALLOC_ACTIVE && !s->claimed && !s->resident && !alloc_freed(s) &&
	       !alloc_has_leftover(s);
	table_unlock();
	return open;
}

/* Record a piece of `size` bytes of `s` at granules [first, first+count).
 * Slab lock held. */
static int carve(struct alloc *s, unsigned first, unsigned count, size_t gran, size_t size,
		 uint64_t *va)
{
	struct piece *p = calloc(1, sizeof(*p));

	if (p == NULL)
		return -ENOMEM;
	p->va = s->va + (uint64_t)first * gran;
	p->size = size;
	p->slab = s;
	p->first = first;
	p->count = count;
	HASH_ADD(hh, slabs.pieces, va, sizeof(p->va), p);
	if (p->hh.tbl == NULL) {
		free(p);
		return -ENOMEM;
	}
	s->carved |= run_mask(first, count);
	*va = p->va;
	return 0;
}

/* Carve out of a listed slab; -ENOSPC when none has room. Slab lock held. */
static int carve_listed(const char *tag, unsigned flags, int dev, size_t size, size_t gran,
			uint64_t *va)
{
	unsigned count = (unsigned)((size + gran - 1) / gran);
	size_t i;
	int first;

	for (i = 0; i < slabs.n; i++) {
		struct alloc *s = slabs.list[i];

		if (!slab_open(s, tag, flags, dev))
			continue;
		first = find_run(s, (unsigned)(s->mapped / gran), count);
		if (first >= 0)
			return carve(s, (unsigned)first, count, gran, size, va);
	}
	return -ENOSPC;
}

/* Add the new slab at `sva` to the list, with a reference. Slab lock held. */
static struct alloc *list_add(uint64_t sva)
{
	struct alloc *s, **grown;

	if (slabs.n == slabs.cap) {
		size_t cap = slabs.cap ? slabs.cap * 2 : 16;

		grown = realloc(slabs.list, cap * sizeof(*grown));
		if (grown == NULL)
			return NULL;
		slabs.list = grown;
		slabs.cap = cap;
	}
	table_lock();
	s = live_find_locked(sva);
	if (s != NULL)
		s->refs++;
	table_unlock();
	if (s != NULL)
		slabs.list[slabs.n++] = s;
	return s;
}

/* Take `s` off the list (its reference is the caller's now). Slab lock held. */
static void list_del(struct alloc *s)
{
	size_t i;

	for (i = 0; i < slabs.n; i++)
		if (slabs.list[i] == s) {
			slabs.list[i] = slabs.list[--slabs.n];
			return;
		}
}

/* A new slab, carved from at once. */
static int carve_new(const char *tag, unsigned flags, int dev, size_t size, size_t gran,
		     uint64_t *va, struct region_err *err)
{
	struct alloc *s;
	uint64_t sva;
	int rc;

	rc = alloc_record(tag, flags, dev, (size_t)granules(gran) * gran, 1, &sva, err);
	if (rc < 0)
		return rc;
	pthread_mutex_lock(&slabs.lock);
	s = list_add(sva);
	rc = s != NULL ? carve(s, 0, (unsigned)((size + gran - 1) / gran), gran, size, va)
		       : -ENOMEM;
	if (rc < 0 && s != NULL)
		list_del(s);
	pthread_mutex_unlock(&slabs.lock);
	if (rc == 0)
		return 0;
	/* Nothing carved from it: freed at once, whether or not the list
	 * took its reference (it could not grow). */
	(void)slab_record_free(sva);
	if (s != NULL)
		alloc_put(s);
	return region_fail(err, rc, "host memory: no room to record the allocation");
}

int slab_alloc(const char *tag, unsigned flags, int dev, size_t size, uint64_t *va,
	       struct region_err *err)
{
	size_t gran;
	int rc;

	if (slabs.bytes == 0)
		return 1;
	rc = granularity(dev, &gran);
	if (rc < 0)
		return region_fail(err, rc, "device %d: no allocation granularity", dev);
	if (granules(gran) < 4 || size > (size_t)granules(gran) * gran / 4)
		return 1;
	pthread_mutex_lock(&slabs.lock);
	rc = carve_listed(tag, flags, dev, size, gran, va);
	pthread_mutex_unlock(&slabs.lock);
	if (rc == -ENOSPC)
		rc = carve_new(tag, flags, dev, size, gran, va, err);
	/* A device with room for this allocation but not for a new slab (or
	 * host memory short of recording one): memory of its own, as
	 * without slabs. */
	return rc == -ENOMEM ? 1 : rc;
}

int slab_device(uint64_t va)
{
	struct piece *p;
	int dev = -ENOENT;

	if (__atomic_load_n(&slabs.bytes, __ATOMIC_RELAXED) == 0)
		return -ENOENT;
	pthread_mutex_lock(&slabs.lock);
	HASH_FIND(hh, slabs.pieces, &va, sizeof(va), p);
	if (p != NULL)
		dev = p->slab->dev;
	pthread_mutex_unlock(&slabs.lock);
	return dev;
}

int slab_piece(const struct alloc *s, uint64_t addr, uint64_t *va, size_t *size)
{
	struct piece *p = NULL;
	uint64_t key;
	size_t gran;
	unsigned i;
	int rc = -ENOENT;

	if (addr < s->va || addr - s->va >= s->mapped || granularity(s->dev, &gran) < 0)
		return -ENOENT;
	pthread_mutex_lock(&slabs.lock);
	/* The nearest piece at or below addr is the only one that can hold it. */
	for (i = (unsigned)((addr - s->va) / gran) + 1; p == NULL && i-- > 0;) {
		key = s->va + (uint64_t)i * gran;
		HASH_FIND(hh, slabs.pieces, &key, sizeof(key), p);
	}
	if (p != NULL && p->slab == s && addr - p->va < (uint64_t)p->count * gran) {
		*va = p->va;
		*size = p->size;
		rc = 0;
	}
	pthread_mutex_unlock(&slabs.lock);
	return rc;
}

int slab_free(uint64_t va)
{
	struct piece *p;
	struct alloc *s;
	int empty;

	if (__atomic_load_n(&slabs.bytes, __ATOMIC_RELAXED) == 0)
		return -ENOENT;
	pthread_mutex_lock(&slabs.lock);
	HASH_FIND(hh, slabs.pieces, &va, sizeof(va), p);
	if (p != NULL)
		HASH_DEL(slabs.pieces, p); /* a second free of va finds nothing */
	pthread_mutex_unlock(&slabs.lock);
	if (p == NULL)
		return -ENOENT;
	s = p->slab;
	/* As cudaFree: work queued on the memory finishes before its
	 * granules can be carved again. */
	(void)registry_ops()->device_sync(s->dev);
	pthread_mutex_lock(&slabs.lock);
	s->carved &= ~run_mask(p->first, p->count);
	empty = s->carved == 0;
	if (empty)
		list_del(s);
	pthread_mutex_unlock(&slabs.lock);
	free(p);
	/* The allocation is freed whatever the slab's fate: a slab the
	 * driver would not give back waits on the unfinished frees, tried
	 * again by later calls (the application's retry would find nothing). */
	if (empty) {
		(void)slab_record_free(s->va);
		alloc_put(s);
	}
	return 0;
}
