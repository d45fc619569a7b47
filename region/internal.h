/* SPDX-License-Identifier: Apache-2.0 */
/*
 * internal.h - what the files of region/ share: the allocation record, the
 * registry's locking rules, the device steps, the request machinery and the
 * staging engine. Not for use outside region/.
 *
 * Locking, in one place:
 *  - The table lock (region.c) guards the hash of live allocations, the
 *    list of unfinished frees, every record's `refs`, `claimed` and the
 *    fields that readers such as region_stat look at. It is held for
 *    lookups, inserts, deletes and single-field updates, never across a
 *    driver call.
 *  - Each record's `lock` is held across one driver step on that
 *    allocation (map it, queue its copies, wait for its copies, unmap it,
 *    free it). A cudaFree of an allocation waits for that lock only.
 *  - One request runs at a time (request.c, the "turn"); a request marks
 *    the records it works on as claimed and works without the table lock.
 *    It holds one record's lock at a time.
 *  - The application's own calls on handles it created (app.c) take turns
 *    under the app lock; such a call may hold several records' locks at
 *    once, taken in order of the records' addresses. The set of a
 *    handle's mappings changes only under the app lock, its own lock and
 *    the table lock together; a request changes only whether each one is
 *    mapped (under the record's lock).
 *  Order: the app lock, then records' locks, then the table lock.
 */
#ifndef MEMCTL_REGION_INTERNAL_H
#define MEMCTL_REGION_INTERNAL_H

#include <pthread.h>
/* uthash's answer to a failed malloc is exit(), which would kill the host
 * process: instead a failed HASH_ADD leaves the item out, with its hh.tbl
 * NULL, and the caller fails with -ENOMEM. */
#define HASH_NONFATAL_OOM 1
#include <uthash.h>

#include "region.h"

#define STREAMS_MAX 16

/* What the application would find at the allocation's address. */
enum alloc_state {
	ALLOC_ACTIVE, /* mapped and accessible: the contents are on the device */
	ALLOC_PAUSED, /* not accessible; contents undefined (paused unstaged) */
	ALLOC_STAGED, /* not accessible; contents held in the host buffer */
};

/* Who made the memory and owns its addresses. */
enum alloc_kind {
	KIND_OWN, /* memctl: reserved, created and mapped it (region_alloc) */
	KIND_APP, /* the application: created it, maps it into its own
		     reservations (app.c) */
};

/* What cuMemSetAccess granted over [va, va+size), merged per location. */
struct app_grant {
	uint64_t va;
	size_t size;
	int n;
	struct region_access acc[REGION_ACCESS_MAX];
};

/* One mapping of an application's handle, as it asked for it. */
struct app_map {
	uint64_t va;
	size_t size;
	size_t offset;        /* into the handle */
	int mapped;           /* the driver has it mapped now */
	struct app_grant *grants;
	int ngrants;
	struct alloc *owner;
	UT_hash_handle hh;    /* app.c's table of mappings, keyed by va */
};

/* What memctl keeps of a handle the application created. */
struct app_mem {
	unsigned char prop[REGION_PROP_MAX]; /* its CUmemAllocationProp */
	int refs;             /* the application's: creation and retains, less releases */
	struct app_map **maps;
	size_t nmaps, cap;
};

struct alloc {
	/* Fixed at creation. */
	uint64_t va;          /* key: KIND_OWN the device address handed out;
				 KIND_APP the handle value handed out */
	size_t size;          /* bytes the application asked for */
	size_t mapped;        /* size rounded up to the granularity */
	int dev;
	char tag[TAG_MAX];
	int stage_always;     /* MEMCTL_REGION_STAGE_CPU: every pause stages it */
	enum alloc_kind kind;
	struct app_mem *app;  /* KIND_APP */
	int slab;             /* KIND_OWN memory that slab.c carves allocations out of */
	uint64_t carved;      /* slab.c's lock: granules of a slab handed out */

	/* What the driver holds for it, as the driver last confirmed. Written
	 * by the holder of `lock` through the alloc_set_* helpers (which take
	 * the table lock), so readers holding either lock see the truth. A
	 * driver call that fails part way leaves a paused or staged record
	 * with its handle still held or still mapped: the next request, or
	 * cudaFree, that touches it finishes the job. */
	enum alloc_state state;
	uint64_t handle;      /* physical memory created, not yet released; 0 none */
	int dev_mapped;       /* `handle` mapped at va */
	int va_reserved;      /* va reserved (until the record is retired) */
	void *host;           /* host buffer, kept across cycles; or NULL */
	size_t host_size;     /* bytes of `host` (size rounded to a page) */
	int host_pinned;      /* `host` is registered with the driver */
	void *ev[STREAMS_MAX]; /* per staging stream, created on first use */
	uint32_t ev_used;     /* streams whose event marks this allocation's copies */
	int dtoh_queued;      /* the running staged pause queued its copy to host */
	int resident;         /* table lock: exported for IPC or bound to a multicast
				 object (another process or device maps it): never
				 paused again */
	void *free_event;     /* a stream-ordered free waits for it (region_free_async) */

	/* Ownership. */
	pthread_mutex_t lock; /* held across each driver step on this record */
	int refs;             /* table lock: the registry or the unfinished
				 list holds one, each request or free one */
	int claimed;          /* table lock: in the running request's set */
	int freed;            /* atomic: cudaFree took it; requests skip it */
	int on_unfinished;    /* table lock: on the list of unfinished frees */
	struct alloc *next_unfinished, *prev_unfinished;
	int on_pending;       /* table lock: a stream-ordered free waiting for its stream */
	struct alloc *next_pending;
	UT_hash_handle hh;
};

/* ---- region.c: records, their lifetime and the device steps ---------- */

const struct drv_ops *registry_ops(void);
/* The one error helper, region_err_set (tags.c), under the name region/'s
 * files have always called it: fill err (may be NULL) and return `code`. */
#define region_fail region_err_set
/* Add to err->msg (err may be NULL). */
void region_append(struct region_err *err, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* Publish a record's driver-facing fields (takes the table lock). */
void alloc_set_state(struct alloc *a, enum alloc_state st);
void alloc_set_host(struct alloc *a, void *host, size_t size, int pinned);
/* 1 if the application freed `a` (a request then leaves it alone). */
int alloc_freed(struct alloc *a);
/* Give up a reference; the last one retires the record (with `lock` not
 * held by the caller). */
void alloc_put(struct alloc *a);
/* Not active but still holding device memory or a mapping: a step of an
 * earlier request failed, the next one finishes it. */
int alloc_has_leftover(const struct alloc *a);
/* Where the contents can be read and written: KIND_OWN its address,
 * KIND_APP a mapping of the whole handle (0: none). Caller holds a->lock
 * or the table lock. */
uint64_t alloc_window(const struct alloc *a);
/* The table lock, for app.c. */
void table_lock(void);
void table_unlock(void);
/* Insert a new record (reference 1: the table's), under the table lock.
 * -ENOMEM when the hash could not grow: the record is left out, still the
 * caller's. */
int live_add_locked(struct alloc *a) __attribute__((warn_unused_result));
/* The live record with key `va`, under the table lock; NULL if none. */
struct alloc *live_find_locked(uint64_t va);
/* The live KIND_OWN record whose memory holds `addr`, under the table
 * lock (a scan); NULL if none. */
struct alloc *live_containing_locked(uint64_t addr);
/* region_free of a record of either kind: the application's handle
 * values are keys as addresses are. */
int region_free_key(uint64_t key, enum alloc_kind kind);
/* flags: MEMCTL_REGION_STAGE_CPU or 0. */
struct alloc *alloc_new(const char *tag, unsigned flags, int dev, size_t size, size_t gran);
void alloc_destroy(struct alloc *a);

/* 0 when `dev` has `bytes` free beyond the margin, or no margin is set;
 * -ENOMEM when it has not (*free_bytes says how much it has), or the
 * driver's error when free memory could not be read. */
int margin_short(int dev, uint64_t bytes, size_t *free_bytes) MUST_CHECK;

/* Create physical memory (unless a handle is still held), map it (unless
 * mapped), grant access. Caller holds a->lock. On failure, what this call
 * created is undone where the driver lets it, the record says what is
 * still held, and *failed names the driver call that failed. */
int device_attach(struct alloc *a, const char **failed) MUST_CHECK;
/* Unmap (the state then becomes `to` if it was active) and release the
 * handle, each step only if still needed. Caller holds a->lock. */
int device_detach(struct alloc *a, enum alloc_state to, const char **failed);

/* The records a request works on: each held and marked claimed. */
struct claim {
	struct alloc **list;
	size_t n;
	unsigned char *had_host; /* list[i] had a host buffer when claimed */
	unsigned char *changed;  /* request-local marks, zeroed */
};
/* Claim every live record carrying one of `ts` for which want(a, flags).
 * -ENOENT with the request's message when no live record carries the
 * tags at all (whatever its state), -ENOMEM. */
int claim(const struct tagset *ts, int (*want)(const struct alloc *, unsigned),
	  unsigned flags, struct claim *c, struct region_err *err) MUST_CHECK;
/* Unmark and put every record of the claim; frees the arrays. */
void let_go(struct claim *c);
/* Retry the driver steps of frees that failed part way, and finish the
 * stream-ordered frees whose stream has got there; with `wait`, wait for
 * those streams (a request). */
void unfinished_tidy(int wait);
/* The named tags' records paused without staging: count, bytes and their
 * tag names ("a,b") into names. */
void discarded_scan(const struct tagset *ts, size_t *count, uint64_t *bytes,
		    char *names, size_t len);

/* A KIND_OWN record of `size` bytes, made as region_alloc makes one;
 * `slab` marks it as slab.c's. */
int alloc_record(const char *tag, unsigned flags, int dev, size_t size, int slab, uint64_t *va,
		 struct region_err *err) MUST_CHECK;
/* The allocation granularity of `dev`. */
int granularity(int dev, size_t *out) MUST_CHECK;
/* Free the slab at `va` (slab.c, once nothing is carved from it); the
 * table's reference goes with it. -ENOENT if no live slab is there. */
int slab_record_free(uint64_t va);

/* ---- slab.c: small allocations carved out of larger ones ------------- */

/* Slabs of `bytes` (0: none) from now on. */
void slab_init(size_t bytes);
/* Carve `size` bytes for `tag` out of a slab: 0 and *va, or 1 when the
 * allocation is not one for a slab (slabs off, or too large) or no slab
 * could be had (device or host memory short: the caller maps memory of
 * its own), or a negative errno with err filled. */
int slab_alloc(const char *tag, unsigned flags, int dev, size_t size, uint64_t *va,
	       struct region_err *err) MUST_CHECK;
/* Free the carved allocation at `va` (the device is synchronised first,
 * as cudaFree does): 0, or -ENOENT when `va` is not one. */
int slab_free(uint64_t va);
/* The carved allocation of slab `s` whose granules hold `addr`: its
 * address and the bytes asked for; -ENOENT if none holds it. */
int slab_piece(const struct alloc *s, uint64_t addr, uint64_t *va, size_t *size);
/* The device of the carved allocation at `va`, or -ENOENT. */
int slab_device(uint64_t va);
/* Forget every slab without touching the driver (forked child). */
void slab_forget(void);

/* ---- request.c: the turn and the safe points ------------------------ */

/* 0, or -ETIMEDOUT / -ECANCELED with the message when `rq` must stop. */
int request_stop(const struct region_req *rq, const char *where, struct region_err *err)
	MUST_CHECK;
/* Wait on `c` (a CLOCK_MONOTONIC condition) no longer than until the
 * request's deadline, and in short slices when it has a cancel flag. */
void request_wait(const struct region_req *rq, pthread_cond_t *c, pthread_mutex_t *m);
void cond_init_monotonic(pthread_cond_t *c);
/* Forget a running request without waking anyone (forked child). */
void request_forget(void);

/* ---- stage.c: host buffers and copies ------------------------------ */

enum copy_dir { COPY_DTOH, COPY_HTOD };

void stage_init(const struct drv_ops *ops, const struct region_opts *opts);
/* Give each of `list` without a host buffer (and not freed) a new pinned
 * one, populating and pinning on several threads. With `ready`, each new
 * buffer is handed to it (in list order, on the calling thread) as soon as
 * it is pinned; a failure of ready stops the work and is returned. Checks
 * `rq` between buffers. Adds the bytes obtained to *new_bytes. On failure
 * the buffers had so far stay attached (copies may still be in flight into
 * them): the caller drops them afterwards. */
int host_obtain(const struct region_req *rq, struct alloc **list, size_t n,
		uint64_t *new_bytes, int (*ready)(struct alloc *, void *), void *ctx,
		struct region_err *err) MUST_CHECK;
/* Unpin and unmap a's host buffer, if any. -EIO (buffer kept, still
 * pinned) when the driver refuses to unpin it. */
int host_drop(struct alloc *a);

/* A set of queued copies; zero-initialise, queue, then finish once. */
struct stage_batch {
	uint32_t used;   /* devices with queued copies */
	unsigned turn;   /* next stream, round-robin */
	int rc;          /* first failure */
	const char *failed; /* the driver call that failed first */
};
/* Queue the copies of one allocation (its `size` bytes) between device and
 * host buffer; returns at once. After a failure, later calls do nothing.
 * Caller holds a->lock. */
int stage_queue(struct stage_batch *b, struct alloc *a, enum copy_dir dir);
/* Block until the copies queued for `a` have finished. Caller holds a->lock. */
int stage_wait(struct alloc *a);
/* Destroy `a`'s events (when the record is retired). */
void stage_alloc_done(struct alloc *a);
/* Wait for every queued copy, even after a failure; the first failure. */
int stage_finish(struct stage_batch *b);
/* Forget streams without calling the driver (forked child). */
void stage_forget(void);

/* ---- app.c: memory the application maps itself ---------------------- */

/* Map (once created, unless held) and grant access for every mapping of
 * an application's handle; unmap every mapping. The KIND_APP halves of
 * device_attach and device_detach. */
int app_attach(struct alloc *a, const char **failed) MUST_CHECK;
int app_detach(struct alloc *a, enum alloc_state to, const char **failed);
/* A pause may take it: active, not resident, mapped whole somewhere with
 * read/write access for its device. Table lock or a->lock held. */
int app_pausable(const struct alloc *a);
/* A resume can bring it back: mapped somewhere, and for staged contents
 * mapped whole. Table lock or a->lock held. */
int app_resumable(const struct alloc *a);
/* Mappings the driver holds for it now. */
size_t app_mappings(const struct alloc *a);
/* Free what a retired record kept of the application's view. */
void app_free(struct alloc *a);
/* Forget every mapping (forked child). */
void app_forget(void);

/* ---- untagged.c ------------------------------------------------------- */

/* Forget the counts (forked child: the parent's memory is not its own). */
void untagged_forget(void);

/* ---- hostmem.c: how much host memory staging may take ---------------- */

struct host_room {
	uint64_t bytes;  /* what staging may take; UINT64_MAX if nothing says */
	char limit[200]; /* which limit decided it, for messages */
};
/* The least of MemAvailable and, for the memory cgroup at `cgroup_dir`
 * (NULL or "": the process's own, v2 and v1) and each ancestor, its limit
 * less its usage (less the inactive page cache, which reclaim gives back). */
void host_room(const char *cgroup_dir, struct host_room *out);

#endif /* MEMCTL_REGION_INTERNAL_H */
