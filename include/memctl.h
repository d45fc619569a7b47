/* SPDX-License-Identifier: Apache-2.0 */
/*
 * memctl.h - the public C API of libmemctl.so.
 *
 * Allocations made through cudaMalloc inside a tagged region (or under a
 * default tag) are backed by CUDA virtual memory, so their physical memory
 * can be released and restored at the same device addresses, optionally
 * staged to pinned host memory first so the contents survive.
 *
 * Every function is thread-safe and returns 0 or a negative errno value.
 * memctl_strerror() turns that value into text; after a failure it returns
 * the detailed message of the calling thread's last failure (which memory,
 * how many bytes were needed, how many were free, which driver call failed).
 *
 * Contents of an allocation paused WITHOUT MEMCTL_STAGE_CPU are undefined
 * after resume (the addresses come back, the bytes do not), unless it was
 * made in a region with MEMCTL_REGION_STAGE_CPU: every pause stages those.
 *
 * Tags: a request's `tags` is a comma-separated list ("weights,kv_cache"),
 * or "all" (also "*") or NULL for every tag. An empty or blank list ("",
 * " ", ",") is -EINVAL, never "every tag", and so is "all" beside names.
 *
 * Requests and the application's own calls. memctl_pause, _resume,
 * _prepare and _release_host run one at a time per process, whether they
 * come from this API or from the control socket: a second one waits until
 * the running one ends. A request works on the allocations that carry its
 * tags when it starts. Meanwhile cudaMalloc and cudaFree never wait for it,
 * except a cudaFree of an allocation the request is working on, which
 * waits for the one driver step the request is doing on that allocation
 * (mapping it, waiting for its copies, unmapping it), then frees it; the
 * request leaves it alone from then on and completes for the others. A
 * cudaFree of tagged memory synchronises its device first, as the
 * runtime's cudaFree does, so it waits for copies already queued there.
 * memctl_stat never waits for a request.
 *
 * Driver failures. When a driver call fails, each allocation's record still
 * tells the truth (active only if its memory is mapped and usable), nothing
 * staged is lost, the message names the call, and repeating the request
 * finishes the job. Device memory the driver would not give back is kept
 * in the record and given back by the next request (or cudaFree).
 */
#ifndef MEMCTL_H
#define MEMCTL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MEMCTL_VERSION "0.1.0"

/* memctl_pause: copy the contents to pinned host memory before releasing
 * (without it, only allocations made in a MEMCTL_REGION_STAGE_CPU region
 * are staged). */
#define MEMCTL_STAGE_CPU 1u
/* memctl_resume: after restoring, give the host staging buffers back to the
 * system instead of keeping them for the next pause. */
#define MEMCTL_RELEASE_HOST 2u
/* memctl_pause: close the gate first. Every thread of this process that
 * then submits GPU work (a kernel or graph launch, a copy, a memset, by
 * any API) waits in that call until the memory is resumed; work already
 * submitted is waited for before anything is released. Without it (the
 * default of this API), the application itself must not touch the memory
 * while it is paused. The memctl CLI gates by default. */
#define MEMCTL_GATE 4u

/* memctl_region_begin_flags: allocations made in the region keep their
 * contents: every pause stages them, with MEMCTL_STAGE_CPU or without. */
#define MEMCTL_REGION_STAGE_CPU 1u
/* memctl_region_begin_flags: allocations made in the region are not
 * tagged (they go to the runtime untouched), even inside an enclosing
 * region or under a default tag. The tag must be NULL. */
#define MEMCTL_REGION_UNTAGGED 2u

/* Layout unchanged since 0.1.0; the 4th field was called host_bytes there
 * (it meant the same; renamed because on the socket host_bytes counts
 * every host buffer memctl holds, see docs/protocol.md) and that name
 * stays as a deprecated alias. */
struct memctl_stat {
	uint64_t allocations;  /* live tagged allocations */
	uint64_t active_bytes; /* device bytes of active allocations (mapped, usable) */
	uint64_t paused_bytes; /* device bytes of paused or staged allocations */
	union {
		uint64_t staged_bytes; /* host bytes holding staged contents */
		uint64_t host_bytes;   /* deprecated: the old name of staged_bytes */
	};
};

/*
 * Tag the calling thread's cudaMalloc calls until the matching
 * memctl_region_end(). Regions nest; the innermost tag applies. A tag is 1 to
 * 63 characters of [A-Za-z0-9_.-].
 * Returns 0, -EINVAL for a malformed tag, -EOVERFLOW past 16 levels.
 */
int memctl_region_begin(const char *tag);

/*
 * memctl_region_begin with flags, closed by memctl_region_end as well:
 *   MEMCTL_REGION_STAGE_CPU  the region's allocations keep their contents:
 *                            every pause stages them (a pause without
 *                            MEMCTL_STAGE_CPU stages these and releases
 *                            the others unstaged). Fixed per allocation
 *                            when it is made, whatever the tag: two
 *                            regions of one tag may differ.
 *   MEMCTL_REGION_UNTAGGED   `tag` must be NULL: allocations in the region
 *                            are not tagged, even inside a tagged region
 *                            or under a default tag (torch_memory_saver's
 *                            disable()).
 * Returns 0, -EINVAL for a malformed tag, an unknown flag, or a tag with
 * MEMCTL_REGION_UNTAGGED (or none without it), -EOVERFLOW past 16 levels.
 */
int memctl_region_begin_flags(const char *tag, unsigned flags);

/* Leave the innermost region. Returns 0, or -EINVAL when no region is open. */
int memctl_region_end(void);

/*
 * Tag every allocation made outside any region with `tag` (the environment
 * variable MEMCTL_DEFAULT_TAG sets the same at start). NULL: such allocations
 * pass through to the real cudaMalloc untouched.
 * Returns 0 or -EINVAL for a malformed tag.
 */
int memctl_set_default_tag(const char *tag);

/* memctl_set_default_tag with flags for those allocations: 0 or
 * MEMCTL_REGION_STAGE_CPU (also set at start by MEMCTL_DEFAULT_STAGE=1).
 * Returns 0, or -EINVAL for a malformed tag or flag (or flags without a
 * tag). */
int memctl_set_default_tag_flags(const char *tag, unsigned flags);

/*
 * Device memory to leave free: a tagged allocation that would leave less
 * than `bytes` free on its device fails as out of memory (-ENOMEM inside,
 * cudaErrorMemoryAllocation to the caller), and so does a resume, before
 * it maps anything (nothing changes, staged contents are kept; a retry
 * when memory is free succeeds). 0, the default, checks nothing. Applies
 * to the requests of the control socket too. Returns 0.
 */
int memctl_set_margin(uint64_t bytes);

/*
 * Release the physical memory of every live allocation carrying one of
 * `tags` (see Tags above; NULL or "all": every tag). Synchronises the
 * owning devices first. With MEMCTL_STAGE_CPU the contents are copied to
 * pinned host memory first; without it, so are those of allocations made
 * in a MEMCTL_REGION_STAGE_CPU region, and only the others are released
 * unstaged. Host buffers are obtained for the whole request before
 * anything is released, so on failure nothing changed (the staged part
 * goes first: when it fails, nothing unstaged was released). Host memory
 * is checked against MemAvailable and the process's memory cgroup limit.
 * Already paused allocations are left as they are, but a staged pause of
 * tags whose memory was already paused WITHOUT staging fails with -ENODATA
 * and changes nothing: those contents are gone and the call must not look
 * as if they were kept (the message names the tags; resume and refill
 * them, or leave their tags out).
 * With MEMCTL_GATE, GPU work of every thread waits from the start of the
 * call until a memctl_resume (or the CLI's resume) maps the memory back;
 * the calling thread must then not submit GPU work itself before it
 * resumes, or it waits for a resume from another thread. Without it,
 * submitted work is still waited for before anything is released.
 * Returns 0; -ENOENT when no live allocation carries any of the tags;
 * -EINVAL for malformed tags or flags; -ENOMEM when host memory for staging
 * could not be had (nothing released); -ENODATA as above; -EIO for a driver
 * failure (the message names the call and says what was released; pausing
 * again finishes the job).
 * Blocks until done (and until a request already running has ended).
 */
int memctl_pause(const char *tags, unsigned flags);

/*
 * Map new physical memory at the same addresses for every paused allocation
 * carrying one of `tags`, and copy staged contents back. All-or-nothing:
 * when device memory runs out or a driver call fails, what this call mapped
 * is released again, every staged byte is kept, and a later retry can
 * succeed.
 * flags: 0 or MEMCTL_RELEASE_HOST (which also gives back the kept host
 * buffers of allocations of those tags that were already active).
 * The gate of a MEMCTL_GATE pause opens once none of the memory it paused
 * is paused any more (whatever this call returns: a resume that fails
 * leaves GPU work waiting, since the memory is still missing).
 * Returns 0; -ENOENT when nothing carries the tags; -EINVAL; -ENOMEM when
 * device memory is short (memctl_strerror says how much was needed and
 * free); -EIO for a driver failure (also when, with MEMCTL_RELEASE_HOST,
 * a host buffer could not be given back: the resume is done, the buffer is
 * kept, and calling again finishes).
 */
int memctl_resume(const char *tags, unsigned flags);

/*
 * Obtain and pin host staging buffers for the allocations carrying `tags`
 * now, so that the first staged pause runs at copy speed. Buffers are kept
 * until memctl_release_host() or the allocation is freed.
 * Returns 0, -ENOENT, -EINVAL or -ENOMEM (host memory; nothing kept).
 */
int memctl_prepare(const char *tags);

/*
 * Give back the host buffers of allocations carrying `tags` whose contents
 * are on the device (active) or were not staged. Buffers holding staged
 * contents are never freed by this call.
 * Returns 0, -ENOENT, -EINVAL, or -EIO when the driver would not unpin a
 * buffer (it is kept; calling again retries).
 */
int memctl_release_host(const char *tags);

/* Sum the figures of the allocations carrying `tags` (NULL or "all": all).
 * Returns 0, -ENOENT (nothing carries the tags; *out zeroed) or -EINVAL. */
int memctl_stat(const char *tags, struct memctl_stat *out);

/*
 * The staged contents of a paused allocation, read in host memory.
 * [dptr, dptr + size) must lie inside one tagged allocation (anywhere in
 * it: a tensor inside a cached block) that is staged: paused with its
 * contents in host memory.
 * memctl_host_copy sets *host to the address of dptr's byte in the pinned
 * host buffer, without copying: valid while the allocation stays staged.
 * A resume keeps the buffer, with the contents as staged, unless it gives
 * host memory back (MEMCTL_RELEASE_HOST) or the allocation is freed: then
 * the address is unmapped and reading it faults.
 * memctl_host_read copies the bytes to `dst`, holding the allocation's
 * lock, so no concurrent resume or free can take them away meanwhile.
 * Neither waits for a request. Returns 0; -EINVAL (NULL pointers, or the
 * range runs past the allocation's end); -ENOENT when dptr is in no tagged
 * allocation; -EBUSY when the allocation is active (the contents are on
 * the device, in use); -ENODATA when it was paused without staging (the
 * contents are gone).
 */
int memctl_host_copy(const void *dptr, size_t size, void **host);
int memctl_host_read(const void *dptr, size_t size, void *dst);

/*
 * For PyTorch's torch.cuda.memory.CUDAPluggableAllocator in a process that
 * loads libmemctl.so without preloading it: allocations inside the calling
 * thread's region (or under the default tag) are tagged as cudaMalloc's
 * would be, on `device`; others go to the runtime's cudaMalloc. NULL when
 * the memory cannot be had. memctl_pool_free frees either kind.
 */
void *memctl_pool_alloc(size_t size, int device, void *stream);
void memctl_pool_free(void *ptr, size_t size, int device, void *stream);

/* Text for a value returned by a memctl_* call; never NULL. */
const char *memctl_strerror(int err);

#ifdef __cplusplus
}
#endif
#endif /* MEMCTL_H */
