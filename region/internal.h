/* SPDX-License-Identifier: Apache-2.0 */
/*
 * internal.h - what region.c and stage.c share: the allocation record and
 * the staging engine's entry points. Not for use outside region/.
 */
#ifndef MEMCTL_REGION_INTERNAL_H
#define MEMCTL_REGION_INTERNAL_H

#include <uthash.h>

#include "region.h"

#define STREAMS_MAX 16

enum alloc_state {
	ALLOC_ACTIVE, /* physical memory mapped */
	ALLOC_PAUSED, /* released; contents undefined on resume */
	ALLOC_STAGED, /* released; contents held in `host` */
};

struct alloc {
	uint64_t va;       /* key: the device address handed out */
	size_t size;       /* bytes the application asked for */
	size_t mapped;     /* size rounded up to the granularity */
	int dev;
	enum alloc_state state;
	uint64_t handle;   /* physical memory while active */
	void *host;        /* pinned host buffer, kept across cycles; or NULL */
	size_t host_size;  /* bytes of `host` (size rounded to a page) */
	void *ev[STREAMS_MAX]; /* per staging stream, created on first use */
	uint32_t ev_used;  /* streams whose event marks this allocation's copies */
	char tag[TAG_MAX];
	UT_hash_handle hh;
};

enum copy_dir { COPY_DTOH, COPY_HTOD };

/* stage.c */
void stage_init(const struct drv_ops *ops, const struct region_opts *opts);
/* Give each of `list` without a host buffer a new pinned one, populating
 * and pinning on several threads. With `ready`, each new buffer is handed to
 * it (in list order, on the calling thread) as soon as it is pinned; a
 * failure of ready stops the work and is returned. Adds the bytes obtained
 * to *new_bytes. On failure the buffers pinned so far stay attached (copies
 * may still be in flight into them): the caller frees them afterwards. */
int stage_host_get(struct alloc **list, size_t n, uint64_t *new_bytes,
		   int (*ready)(struct alloc *, void *), void *ctx,
		   struct region_err *err) MUST_CHECK;
/* Unpin and free one allocation's host buffer (if any). */
void stage_host_put(struct alloc *a);
/* A set of queued copies; zero-initialise, queue, then finish once. */
struct stage_batch {
	uint32_t used;   /* devices with queued copies */
	unsigned turn;   /* next stream, round-robin */
	enum copy_dir dir;
	int rc;          /* first failure */
};

/* Queue the copies of one allocation (its `size` bytes) between device and
 * host buffer; returns at once. After a failure, later calls do nothing. */
int stage_queue(struct stage_batch *b, struct alloc *a, enum copy_dir dir);
/* Block until the copies queued for `a` have finished (pause releases it
 * then, while the copies of later allocations still run). */
int stage_wait(struct alloc *a);
/* Destroy `a`'s events (when it is freed). */
void stage_alloc_done(struct alloc *a);
/* Wait for all queued copies; the first failure, with a message in err
 * (err NULL: just drain, the caller already has its story). */
int stage_finish(struct stage_batch *b, struct region_err *err);
/* Forget streams without calling the driver (forked child). */
void stage_forget(void);

#endif /* MEMCTL_REGION_INTERNAL_H */
