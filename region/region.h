/* SPDX-License-Identifier: Apache-2.0 */
/*
 * region.h - the allocation registry and its pause/resume state machine.
 *
 * Pure logic: talks to the GPU only through struct drv_ops, reads no
 * environment, opens no socket. A short table lock guards lookups, inserts
 * and deletes; a request marks the allocations it works on and runs
 * without it, so application threads never wait for a request they are not
 * part of: a cudaFree of an allocation the running request holds waits for
 * the driver step on that allocation only (internal.h has the rules).
 * Requests (pause, resume, prepare, release_host) run one at a time.
 *
 * Every function returns 0 or a negative errno. Functions that take a
 * `struct region_err *` fill it with a human-readable message on failure.
 */
#ifndef MEMCTL_REGION_H
#define MEMCTL_REGION_H

#include <stddef.h>
#include <stdint.h>

#include "drv.h"
#include "memctl.h"

#define TAG_MAX 64      /* bytes in a tag name, with its NUL */
#define TAGSET_MAX 16   /* tags in one request */
#define TAGSET_TEXT_MAX (TAGSET_MAX * TAG_MAX) /* tagset_format's longest, with NUL */
#define REGION_MAX_DEV 16

#define MUST_CHECK __attribute__((warn_unused_result))

struct region_err {
	int code;
	char msg[256];
};

/* Fill err (when not NULL) with `code` and a one-line message; returns
 * `code`. The one way every module reports a failure. */
int region_err_set(struct region_err *err, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* A parsed list of tags (tagset_parse); `all` set for every tag. */
struct tagset {
	int all;
	int n;
	char names[TAGSET_MAX][TAG_MAX];
};

struct region_opts {
	size_t chunk_bytes; /* one staging copy, bytes */
	int streams;        /* staging streams per device */
	int pin_threads;    /* threads that populate and pin host buffers */
	int hugepages;      /* ask for transparent huge pages for host buffers */
	/* Memory cgroup whose limit staging respects, as a directory (v2:
	 * memory.max, v1: memory.limit_in_bytes; ancestors are checked too).
	 * NULL or "": the process's own cgroups. Copied by region_init. */
	const char *cgroup_dir;
	/* Slab size (MEMCTL_SLAB): tagged allocations of at most a quarter of
	 * it are carved out of slabs of this size; 0: every allocation maps
	 * memory of its own. */
	size_t slab_bytes;
};

/*
 * One request on the registry: the tags it concerns, its flags
 * (MEMCTL_STAGE_CPU for pause, MEMCTL_RELEASE_HOST for resume), and how it
 * may be stopped from outside: an absolute deadline on CLOCK_MONOTONIC in
 * milliseconds (0: none) and an optional flag another thread sets to
 * abandon it. A request checks both at its safe points (both are read
 * atomically, so another thread may also move the deadline); an abandoned
 * request rolls back what it did and fails with -ETIMEDOUT (deadline) or
 * -ECANCELED (flag). docs/design.md lists the safe points and what
 * "rolled back" means at each.
 */
struct region_req {
	struct tagset tags;
	unsigned flags;
	long long deadline_ms;
	const int *cancel;
};

/* What one request did, for the caller's reply. */
struct region_report {
	uint64_t allocations; /* allocations whose state changed */
	uint64_t device_bytes; /* device bytes released (pause) or mapped (resume) */
	uint64_t copied_bytes; /* bytes copied between host and device */
	uint64_t host_new_bytes; /* host bytes obtained and pinned for it */
	uint64_t host_freed_bytes; /* host bytes given back (release_host) */
	double ms;            /* wall time of the request */
	double ms_host;       /* of which: obtaining and pinning host buffers */
	double ms_sync;       /* device synchronisation */
};

/* What the registry believes the driver holds for it, for checks against
 * the driver's own view (tests) and for reports. */
struct region_census {
	uint64_t allocations;  /* live tagged allocations */
	uint64_t handles;      /* physical handles held (live and unfinished) */
	uint64_t handle_bytes; /* device bytes those handles hold */
	uint64_t mappings;     /* handles mapped */
	uint64_t reservations; /* address ranges reserved */
	uint64_t host_buffers; /* host buffers held */
	uint64_t host_pinned;  /* of which registered with the driver */
	uint64_t leftovers;    /* live allocations not active yet holding device memory */
	uint64_t unfinished_frees; /* freed by the application, driver steps pending */
};

/* Per-tag figures for status. */
struct region_tag_stat {
	char name[TAG_MAX];
	uint64_t allocations;
	uint64_t active_bytes;
	uint64_t paused_bytes;
	uint64_t staged_bytes; /* host bytes holding staged contents */
	uint64_t host_bytes;   /* host bytes held in all, staged or kept */
	uint64_t discarded;    /* allocations paused without staging */
	uint64_t resident_bytes; /* of active_bytes: exported, never paused */
};

/* tags.c */
/* 1 if `tag` is 1..63 characters of [A-Za-z0-9_.-], else 0. */
int tag_valid(const char *tag);
/*
 * Parse a tag list, the same way for the C API, the wire and the CLI:
 *   NULL           every tag (the C API's documented default)
 *   "all" or "*"   every tag
 *   "a,b,c"        those tags, duplicates folded, at most TAGSET_MAX
 * Anything else is -EINVAL with a one-line reason in err: an empty or blank
 * list ("", " ", ","), an empty name ("a,,b"), a malformed name, or
 * "all"/"*" beside names.
 */
int tagset_parse(const char *spec, struct tagset *out, struct region_err *err) MUST_CHECK;
int tagset_has(const struct tagset *ts, const char *tag);
/* Write the list as tagset_parse reads it back: "a,b,c", or "all". */
void tagset_format(const struct tagset *ts, char *buf, size_t len);

/* region.c */
/* Install the driver table and options. Safe to call again (replaces both);
 * the registry must then be empty and no request running. `ops` must
 * outlive the registry. */
void region_init(const struct drv_ops *ops, const struct region_opts *opts);
/* Forget every allocation without touching the driver or walking the
 * registry (its records are left behind, not freed): for a forked child,
 * whose CUDA state is unusable and whose registry another thread may have
 * been changing at the fork, and for tests. */
void region_forget_all(void);
/* Number of live tagged allocations, without taking the lock. */
uint64_t region_count(void);
/* 1 if a pointer might be memctl's (a live allocation, or one whose free
 * is unfinished), without taking the lock: cudaFree asks region_free only
 * then. */
int region_may_own(void);

/* Reserve, create, map and grant access for one tagged allocation of
 * `size` bytes on `dev`; *va is the device address. `flags`: 0 or
 * MEMCTL_REGION_STAGE_CPU (every pause stages this allocation, asked to
 * or not). -ENOMEM when the device is full, or when the allocation would
 * leave less free than the margin (region_set_margin); -EINVAL for a bad
 * tag, size or flag. Never waits for a request. On failure nothing is
 * left behind, or what the driver refused to give back is kept for a
 * later retry. */
int region_alloc(const char *tag, unsigned flags, int dev, size_t size, uint64_t *va,
		 struct region_err *err) MUST_CHECK;
/*
 * Free a tagged allocation in any state, with its host buffer: synchronise
 * the device if it is active, unmap, release, unreserve. -ENOENT if `va` is
 * not the start of a tagged allocation. Waits only for the driver step the
 * running request may be doing on this same allocation; the request then
 * leaves it alone. A driver failure returns its errno (the driver binding
 * logs which call): the allocation is gone for the application, what the
 * driver still holds is kept and retried by a repeated free of `va`, by
 * the next request, or by the next free.
 */
int region_free(uint64_t va) MUST_CHECK;

/*
 * The requests. Each waits its turn behind a running request (honouring
 * rq's deadline and cancel flag meanwhile), works only on the allocations
 * that carry rq->tags when it starts, and returns 0 or a negative errno
 * with err->msg saying what happened and what state things are in:
 * -ENOENT nothing carries the tags; -EINVAL bad flags; -ENOMEM host memory
 * (pause) or device memory (resume) short, nothing changed; -ETIMEDOUT /
 * -ECANCELED abandoned, rolled back as docs/design.md says; -ENODATA a
 * staged pause of memory already paused without staging (nothing changed);
 * -EIO a driver call failed (err names it; a retry completes the job).
 */
int region_pause(const struct region_req *rq, struct region_report *rep,
		 struct region_err *err) MUST_CHECK;
int region_resume(const struct region_req *rq, struct region_report *rep,
		  struct region_err *err) MUST_CHECK;
int region_prepare(const struct region_req *rq, struct region_report *rep,
		   struct region_err *err) MUST_CHECK;
int region_release_host(const struct region_req *rq, struct region_report *rep,
			struct region_err *err) MUST_CHECK;
int region_stat(const struct tagset *ts, struct memctl_stat *out) MUST_CHECK;

/* Device memory that a tagged allocation and a resume must leave free on
 * each device they take memory from (0, the default: none). Read once per
 * allocation or request; any thread may set it. */
void region_set_margin(uint64_t bytes);
uint64_t region_margin(void);

/*
 * The staged contents of [va, va + size), which must lie inside one live
 * tagged allocation. With `dst`, copy them there: under the allocation's
 * lock, so no request or free can take the host buffer away meanwhile.
 * Without, *host gets the address of va's byte in the pinned host buffer:
 * valid while the allocation stays staged (a resume that gives host memory
 * back, or cudaFree, ends it). Never waits for a request, only for a
 * driver step on that same allocation. Returns 0; -ENOENT when va is in no
 * tagged allocation; -EINVAL when the range runs past its end; -EBUSY
 * when it is active (the contents are on the device, in use); -ENODATA
 * when it was paused without staging (the contents are gone).
 */
int region_host_copy(uint64_t va, size_t size, void *dst, void **host,
		     struct region_err *err) MUST_CHECK;
/* Fill *out; never waits for a request. */
void region_census(struct region_census *out);
/* One row per tag carried by a live allocation, every tag, sorted by name:
 * *rows is malloc'ed (the caller frees it; NULL when *n is 0).
 * Returns 0 or -ENOMEM. */
int region_tag_stats(struct region_tag_stat **rows, size_t *n) MUST_CHECK;
/* Devices owning tagged allocations, as a bit mask. */
uint32_t region_devices(void);

/*
 * Stream-ordered allocation (cuMemAllocAsync inside a region or under the
 * default tag) is served by region_alloc: its memory is valid at once,
 * earlier than stream order requires. Its free must not take effect
 * before the work queued on the stream ahead of it has run, and must not
 * make the caller wait either:
 *
 * Free `va` once the work queued on `stream` (an application's stream on
 * dev's primary context, or NULL for its legacy stream) before this call
 * has finished. An event recorded on the stream marks that point; the
 * allocation leaves the registry at once (a pause no longer touches it)
 * and its memory is given back by whichever call of the registry first
 * finds the event complete (an allocation or free, tagged, or a request,
 * which waits for it). Where no event can be recorded, the stream is
 * synchronised and the memory given back at once. -ENOENT if `va` is not
 * a tagged allocation; otherwise as region_free.
 */
int region_free_async(uint64_t va, void *stream) MUST_CHECK;
/* 1 if `va` is the start of a live tagged allocation (no lock taken when
 * nothing is tagged). */
int region_owns(uint64_t va);

/*
 * Memory the application maps itself (app.c): handles it creates with
 * cuMemCreate inside a region or under the default tag, mapped with
 * cuMemMap into its own reservations. The application keeps the handle
 * value it was given and its addresses; memctl keeps, per handle, the
 * properties it was created with, where it is mapped and the access each
 * mapping was granted, so that a pause can release the physical memory
 * (unmap every mapping, release the handle) and a resume can create new
 * memory, map it at the same addresses with the same access and copy the
 * staged contents back. The handle value the application holds is
 * memctl's own (the record's address), translated in every call that
 * takes one; the real handle changes at each resume.
 *
 * A handle is paused with everything else of its tag when it is mapped
 * whole somewhere (offset 0, its full size) with read/write access for
 * its device: that mapping is where its contents are staged from and
 * restored to. One not mapped that way (created and not yet mapped, or
 * mapped in parts only) stays as it is. One that was exported for IPC
 * or bound to a multicast object (region_app_pin, region_pin_addr) stays
 * resident for good: another process or device may map it.
 *
 * The application's own calls on these handles and on addresses they are
 * mapped at, paused or not: region_app_map, _unmap, _set_access,
 * _release, _retain and _address_free act on memctl's record and on the
 * driver as far as the driver holds anything (a paused mapping is only
 * forgotten when the application unmaps it). They take turns among
 * themselves; each waits for the driver step a running request may be
 * doing on the handles it touches, never for the whole request. Each
 * returns 0 or the errno of the driver call that failed (the driver's own
 * error is the binding's to report), -ENOENT where nothing of memctl's is
 * concerned (the caller then asks the driver itself), -EINVAL where the
 * driver would refuse the call.
 */
#define REGION_PROP_MAX 96 /* bytes of a CUmemAllocationProp copy */
#define REGION_ACCESS_MAX REGION_MAX_DEV

/* Adopt the handle `real` the driver just created for the application
 * (`size` bytes on `dev`, created with properties `prop`, prop_len bytes)
 * under `tag` (flags: MEMCTL_REGION_STAGE_CPU or 0, as region_alloc):
 * *id is the value the application gets instead. -ENOMEM
 * (host memory) or -EINVAL; the caller then releases `real` itself. */
int region_app_adopt(const char *tag, unsigned flags, int dev, size_t size, const void *prop,
		     size_t prop_len, uint64_t real, uint64_t *id,
		     struct region_err *err) MUST_CHECK;
/* Handles adopted and not yet forgotten, without taking a lock: the
 * application's calls look any further only when it is not 0. */
uint64_t region_app_count(void);
/* 1 if `id` is a handle value memctl handed out. */
int region_app_is(uint64_t id);
/* cuMemMap(va, size, offset, id, 0): mapped at once when the handle is
 * active; recorded only (mapped on resume) when it is paused. */
int region_app_map(uint64_t id, uint64_t va, size_t size, size_t offset) MUST_CHECK;
/* cuMemUnmap(va, size) over one or several mappings, some memctl's:
 * paused ones are forgotten, the rest unmapped by the driver. */
int region_app_unmap(uint64_t va, size_t size) MUST_CHECK;
/* cuMemSetAccess(va, size, acc, n): recorded for memctl's mappings in the
 * range (and replayed at each resume), passed to the driver for what it
 * holds mapped. */
int region_app_set_access(uint64_t va, size_t size, const struct region_access *acc,
			  int n) MUST_CHECK;
/* cuMemRelease(id): one reference fewer; the physical memory goes when
 * no reference and no mapping is left. */
int region_app_release(uint64_t id) MUST_CHECK;
/* cuMemRetainAllocationHandle(addr): the handle mapped at `addr`, with one
 * more reference. -ENOENT if `addr` is in no mapping of memctl's. */
int region_app_retain(uint64_t addr, uint64_t *id) MUST_CHECK;
/* cuMemGetAllocationPropertiesFromHandle: the properties it was created
 * with (len bytes at most copied). */
int region_app_props(uint64_t id, void *prop, size_t len) MUST_CHECK;
/* Before exporting `id` for IPC or binding it to a multicast object
 * (cuMulticastBindMem): mark it resident for good and give the real handle
 * to the driver. 1 newly, 0 already resident; -EBUSY (nothing changed)
 * while it is paused: its memory does not exist. region_app_unpin undoes
 * a new pin when the driver refused. */
int region_app_pin(uint64_t id, uint64_t *real) MUST_CHECK;
void region_app_unpin(uint64_t id);
/* Before binding the memory at `addr` to a multicast object
 * (cuMulticastBindAddr; any tagged allocation or mapping of memctl's):
 * resident for good, as region_app_pin. 1 newly, 0 already, -EBUSY while
 * paused, -ENOENT when nothing of memctl's is there. region_unpin_addr
 * undoes it when the binding failed. */
int region_pin_addr(uint64_t addr) MUST_CHECK;
void region_unpin_addr(uint64_t addr);
/* cuMemGetAddressRange of an address in a paused mapping (the driver has
 * nothing there): that mapping's range. -ENOENT otherwise. */
int region_app_range(uint64_t addr, uint64_t *base, size_t *size) MUST_CHECK;
/* cuMemAddressFree(va, size) of a reservation holding mappings of
 * memctl's: the driver frees it, then those mappings are forgotten. */
int region_app_address_free(uint64_t va, size_t size) MUST_CHECK;

/*
 * Device memory the process allocated through the calls memctl
 * interposes and did not tag (ledger.c): what memctl passes through, by
 * the call that made it, live now. Counted from the allocating call to
 * the freeing one (for a stream-ordered free: the call, not the moment it
 * takes effect; for a handle: creation to its first cuMemRelease).
 */
enum untagged_kind {
	UNTAGGED_ALLOC,     /* cuMemAlloc, cuMemAllocPitch (cudaMalloc underneath) */
	UNTAGGED_CREATE,    /* cuMemCreate */
	UNTAGGED_ASYNC,     /* cuMemAllocAsync: the device's own pool */
	UNTAGGED_POOL,      /* cuMemAllocFromPoolAsync: pools the application made */
	UNTAGGED_KINDS
};
void region_untagged_add(enum untagged_kind kind, uint64_t key, uint64_t bytes);
/* Forget `key` (the address or handle); 0, or -ENOENT if not counted. */
int region_untagged_drop(uint64_t key);
/* Live bytes per kind. Never waits for a request. */
void region_untagged_totals(uint64_t bytes[UNTAGGED_KINDS]);

#endif /* MEMCTL_REGION_H */
