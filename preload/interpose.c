/* SPDX-License-Identifier: Apache-2.0 */
/*
 * interpose.c - the exported symbols: cudaMalloc/cudaFree and the memctl_*
 * API, and what the driver layer (cumem.c, proc.c) shares with them: init,
 * activation and the calling thread's tag.
 *
 * Loaded into every child of an LD_PRELOAD'ed process, so nothing happens at
 * load time: no constructor, no thread. The first interposed call runs the
 * one-time init (options, real functions, fork handler); the driver is
 * loaded only when a tagged allocation or an API call needs it; the control
 * thread starts with the first device allocation (by any path: cudaMalloc
 * here, the driver's allocation calls in cumem.c) or API call.
 *
 * The interposed symbols are unversioned on purpose: PyTorch references
 * cudaMalloc@libcudart.so.13, which an unversioned definition satisfies.
 */
#include <cuda_runtime_api.h>
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "drain.h"
#include "drv_cuda.h"
#include "gate.h"
#include "log.h"
#include "preload.h"
#include "proc.h"
#include "proto.h"
#include "region.h"
#include "server.h"

#define REGION_DEPTH 16

typedef cudaError_t (*malloc_fn)(void **, size_t);
typedef cudaError_t (*free_fn)(void *);
typedef cudaError_t (*get_device_fn)(int *);

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static pthread_once_t driver_once = PTHREAD_ONCE_INIT;
static struct options opts;
static int driver_rc = -ENOSYS;

static struct ctl_config server_config; /* from opts, at init */

static malloc_fn real_malloc;
static free_fn real_free;
static get_device_fn real_get_device;

/* Default tag and its flags; default_set is read without a lock on the
 * hot path. */
static pthread_mutex_t default_lock = PTHREAD_MUTEX_INITIALIZER;
static char default_tag[TAG_MAX];
static unsigned default_flags;
static int default_set;

/* The calling thread's open regions: tag and MEMCTL_REGION_* flags. */
static __thread int region_depth;
static __thread char region_tags[REGION_DEPTH][TAG_MAX];
static __thread unsigned region_flags[REGION_DEPTH];
static __thread struct region_err last_err;

/* The runtime may be in the global scope (found with RTLD_NEXT) or loaded
 * RTLD_LOCAL by a framework: then find it by soname among loaded objects. */
void *preload_runtime_sym(const char *name)
{
	static const char *sonames[] = { "libcudart.so.13", "libcudart.so.12",
					 "libcudart.so" };
	void *fn = preload_dlsym(RTLD_NEXT, name);
	size_t i;

	for (i = 0; fn == NULL && i < sizeof(sonames) / sizeof(sonames[0]); i++) {
		void *h = dlopen(sonames[i], RTLD_LAZY | RTLD_NOLOAD);

		if (h != NULL) {
			fn = preload_dlsym(h, name);
			dlclose(h);
		}
	}
	return fn;
}

static void resolve_real(void)
{
	if (real_malloc == NULL)
		real_malloc = (malloc_fn)preload_runtime_sym("cudaMalloc");
	if (real_free == NULL)
		real_free = (free_fn)preload_runtime_sym("cudaFree");
	if (real_get_device == NULL)
		real_get_device = (get_device_fn)preload_runtime_sym("cudaGetDevice");
}

static void atfork_child(void)
{
	/* The child's CUDA state is unusable and the parent's allocations are
	 * not the child's to pause: forget them and the parent's socket. */
	region_forget_all();
	drv_cuda_forget();
	gate_after_fork();
	drain_after_fork();
	region_depth = 0;
	/* Another thread may have held it at the fork: it is gone here. */
	pthread_mutex_init(&default_lock, NULL);
	ctl_server_after_fork();
}

static void init(void)
{
	options_load(&opts);
	server_config.runtime_dir = opts.runtime_dir;
	server_config.group = opts.group;
	server_config.serve = opts.socket;
	server_config.prepare = opts.prepare[0] ? &opts.prepare_tags : NULL;
	memctl_log_set_level((enum log_level)opts.log_level);
	if (opts.default_tag[0] != '\0') {
		snprintf(default_tag, sizeof(default_tag), "%s", opts.default_tag);
		default_flags = opts.default_stage ? MEMCTL_REGION_STAGE_CPU : 0;
		__atomic_store_n(&default_set, 1, __ATOMIC_RELEASE);
	}
	pthread_atfork(NULL, NULL, atfork_child);
}

const struct options *preload_options(void)
{
	pthread_once(&init_once, init);
	return &opts;
}

static void load_driver(void)
{
	const struct drv_ops *ops = drv_cuda_load();
	struct region_opts ro = { 0 }; /* cgroup_dir NULL: the process's own */

	if (ops == NULL)
		return;
	ro.chunk_bytes = opts.chunk_bytes;
	ro.streams = opts.streams;
	ro.pin_threads = opts.pin_threads;
	ro.hugepages = opts.hugepages;
	ro.slab_bytes = opts.slab_bytes;
	region_init(ops, &ro);
	driver_rc = 0;
}

int preload_driver(void)
{
	pthread_once(&init_once, init);
	pthread_once(&driver_once, load_driver);
	return driver_rc;
}

/* ---- what the control server may ask of the process ------------------ */

static int server_devices(struct ctl_device *out, int max)
{
	const struct drv_ops *ops = region_count() ? drv_cuda_load() : NULL;
	uint32_t mask = ops ? region_devices() : 0;
	int d, n = 0;

	for (d = 0; d < REGION_MAX_DEV && n < max; d++) {
		size_t fr = 0, tot = 0;

		if (!(mask & (1u << d)) || ops->mem_info(d, &fr, &tot) < 0)
			continue;
		out[n++] = (struct ctl_device){ .id = d, .free_bytes = fr, .total_bytes = tot };
	}
	return n;
}

static void server_log(enum ctl_log level, const char *line)
{
	if (level == CTL_WARN)
		memctl_log_warnx("%s", line);
	else if (level == CTL_INFO)
		memctl_log_info("%s", line);
	else
		memctl_log_debug("%s", line);
}

static void server_gate(struct ctl_gate *out)
{
	struct gate_view v;

	gate_view(&v);
	out->closed = v.closed;
	out->waiting = v.waiting;
	out->draining = v.draining;
	memcpy(out->held, v.held, sizeof(out->held));
	out->lease_ms = v.lease_ms;
	out->waits = v.waits;
	out->stuck_drains = drain_stuck();
}

static const struct ctl_backend server_backend = {
	.request = preload_request,
	.tag_stats = region_tag_stats,
	.allocations = region_count,
	.devices = server_devices,
	.driver_devices = drv_cuda_device_count,
	.untagged = region_untagged_totals,
	.gate = server_gate,
	.ungate = gate_ungate,
	.log = server_log,
};

/* Started with the first CUDA allocation or API call, never at load. */
static void server_start(void)
{
	ctl_server_start(&server_config, &server_backend);
}

const struct options *preload_activate(void)
{
	pthread_once(&init_once, init);
	server_start();
	return &opts;
}

int preload_tag(char tag[TAG_MAX], unsigned *flags)
{
	if (region_depth > 0) {
		*flags = region_flags[region_depth - 1];
		if (*flags & MEMCTL_REGION_UNTAGGED)
			return 0;
		memcpy(tag, region_tags[region_depth - 1], TAG_MAX);
		return 1;
	}
	if (!__atomic_load_n(&default_set, __ATOMIC_ACQUIRE))
		return 0;
	/* Copied under the lock: memctl_set_default_tag may race. */
	pthread_mutex_lock(&default_lock);
	snprintf(tag, TAG_MAX, "%s", default_tag);
	*flags = default_flags;
	pthread_mutex_unlock(&default_lock);
	return 1;
}

static cudaError_t to_cuda(int rc)
{
	switch (rc) {
	case 0:
		return cudaSuccess;
	case -ENOMEM:
		return cudaErrorMemoryAllocation;
	case -EINVAL:
		return cudaErrorInvalidValue;
	case -ENOSYS:
		return cudaErrorInitializationError;
	default:
		return cudaErrorUnknown;
	}
}

MEMCTL_EXPORT cudaError_t cudaMalloc(void **ptr, size_t size)
{
	char tag[TAG_MAX];
	struct region_err err;
	unsigned flags;
	uint64_t va;
	int dev = 0, rc;

	preload_activate();
	if (size == 0 || ptr == NULL || !preload_tag(tag, &flags)) {
		resolve_real();
		if (real_malloc == NULL)
			return cudaErrorInitializationError;
		return real_malloc(ptr, size);
	}
	resolve_real();
	if (real_get_device != NULL && real_get_device(&dev) != cudaSuccess)
		dev = 0;
	rc = preload_driver();
	if (rc == 0)
		rc = region_alloc(tag, flags, dev, size, &va, &err);
	if (rc < 0) {
		memctl_log_debug("tagged cudaMalloc of %zu bytes ('%s'): %s", size, tag,
				 rc == -ENOSYS ? "no driver" : err.msg);
		return to_cuda(rc);
	}
	*ptr = (void *)(uintptr_t)va;
	return cudaSuccess;
}

/* Free `ptr`, tagged or not. This library calls it, never its exported
 * cudaFree: loaded without LD_PRELOAD (memctl_pool_free's case), that
 * name would bind to the runtime's own cudaFree. */
static cudaError_t free_any(void *ptr)
{
	int rc;

	if (ptr != NULL && region_may_own()) {
		rc = region_free((uint64_t)(uintptr_t)ptr);
		if (rc != -ENOENT)
			return to_cuda(rc);
	}
	resolve_real();
	if (real_free == NULL)
		return cudaErrorInitializationError;
	return real_free(ptr);
}

MEMCTL_EXPORT cudaError_t cudaFree(void *ptr)
{
	return free_any(ptr);
}

/* ---- PyTorch's pluggable allocator ---------------------------------- */

/* For torch.cuda.memory.CUDAPluggableAllocator, in processes that load
 * libmemctl.so without preloading it: the same tags as cudaMalloc here,
 * on the device PyTorch names. NULL when it cannot be served (PyTorch then
 * frees its cache and retries, or raises its out-of-memory error). */
MEMCTL_EXPORT void *memctl_pool_alloc(size_t size, int device, void *stream)
{
	char tag[TAG_MAX];
	struct region_err err;
	unsigned flags;
	void *p = NULL;
	uint64_t va;
	int rc;

	(void)stream; /* VMM mapping is not stream-ordered */
	preload_activate();
	if (size == 0)
		return NULL;
	if (!preload_tag(tag, &flags)) {
		resolve_real();
		return real_malloc != NULL && real_malloc(&p, size) == cudaSuccess ? p : NULL;
	}
	rc = preload_driver();
	if (rc == 0)
		rc = region_alloc(tag, flags, device, size, &va, &err);
	if (rc < 0) {
		memctl_log_debug("pool allocation of %zu bytes ('%s'): %s", size, tag,
				 rc == -ENOSYS ? "no driver" : err.msg);
		return NULL;
	}
	return (void *)(uintptr_t)va;
}

MEMCTL_EXPORT void memctl_pool_free(void *ptr, size_t size, int device, void *stream)
{
	(void)size;
	(void)device;
	(void)stream;
	(void)free_any(ptr);
}

/* ---- the memctl_* API ---------------------------------------------- */

static int api_fail(int rc, const struct region_err *err, const char *what)
{
	last_err.code = rc;
	snprintf(last_err.msg, sizeof(last_err.msg), "%s", err->msg);
	memctl_log_info("%s: %s", what, err->msg);
	return rc;
}

/* Common entry: init, control thread, the tags parsed (once, here), and
 * the driver where the registry needs it. */
static int api_enter(const char *tags, struct tagset *ts, struct region_err *err)
{
	int rc;

	pthread_once(&init_once, init);
	server_start();
	rc = tagset_parse(tags, ts, err);
	if (rc < 0)
		return rc;
	if (preload_driver() < 0 && region_count() > 0)
		return region_err_set(err, -ENOSYS, "the CUDA driver is not available");
	return 0;
}

/* The call of each change verb: proto.h's table, expanded (region/, or
 * drain.h's where the gate is involved). */
typedef int (*region_call)(const struct region_req *, struct region_report *,
			   struct region_err *);
static const region_call verb_calls[VERB_COUNT] = {
#define VERB_CALL(id, wire, cli, sends, keys, run, figs, help) [VERB_##id] = run,
	PROTO_VERBS(VERB_CALL)
#undef VERB_CALL
};

int preload_request(enum verb verb, const struct region_req *rq,
		    struct region_report *rep, struct region_err *err)
{
	char tags[TAGSET_TEXT_MAX];
	int rc;

	memset(rep, 0, sizeof(*rep));
	if ((unsigned)verb >= VERB_COUNT || verb_calls[verb] == NULL)
		return region_err_set(err, -EINVAL, "not a change request");
	pthread_once(&init_once, init);
	if (preload_driver() < 0 && region_count() > 0)
		return region_err_set(err, -ENOSYS, "the CUDA driver is not available");
	rc = verb_calls[verb](rq, rep, err);
	tagset_format(&rq->tags, tags, sizeof(tags));
	/* A failed request's message (region/) says what it did to the
	 * others, so the registry and its message tell the same story. */
	if (rc == 0)
		memctl_log_debug("%s %s: %llu allocations, %llu bytes in %.2f ms "
				 "(host buffers %.2f, sync %.2f)", proto_verbs[verb].wire, tags,
				 (unsigned long long)rep->allocations,
				 (unsigned long long)rep->device_bytes, rep->ms, rep->ms_host,
				 rep->ms_sync);
	return rc;
}

/* A tagged region (tag valid, flags 0 or STAGE_CPU), or an untagged one
 * (tag NULL, flags exactly UNTAGGED). */
static int region_args_valid(const char *tag, unsigned flags)
{
	if (flags == MEMCTL_REGION_UNTAGGED)
		return tag == NULL;
	return (flags & ~MEMCTL_REGION_STAGE_CPU) == 0 && tag_valid(tag);
}

static int region_begin(const char *tag, unsigned flags)
{
	pthread_once(&init_once, init);
	server_start();
	if (!region_args_valid(tag, flags))
		return -EINVAL;
	if (region_depth == REGION_DEPTH)
		return -EOVERFLOW;
	snprintf(region_tags[region_depth], TAG_MAX, "%s", tag != NULL ? tag : "");
	region_flags[region_depth] = flags;
	region_depth++;
	return 0;
}

MEMCTL_EXPORT int memctl_region_begin_flags(const char *tag, unsigned flags)
{
	return region_begin(tag, flags);
}

MEMCTL_EXPORT int memctl_region_begin(const char *tag)
{
	return region_begin(tag, 0);
}

MEMCTL_EXPORT int memctl_region_end(void)
{
	if (region_depth == 0)
		return -EINVAL;
	region_depth--;
	return 0;
}

static int set_default_tag(const char *tag, unsigned flags)
{
	pthread_once(&init_once, init);
	if ((tag != NULL && !tag_valid(tag)) || (flags & ~MEMCTL_REGION_STAGE_CPU) ||
	    (tag == NULL && flags != 0))
		return -EINVAL;
	pthread_mutex_lock(&default_lock);
	if (tag == NULL) {
		__atomic_store_n(&default_set, 0, __ATOMIC_RELEASE);
	} else {
		snprintf(default_tag, sizeof(default_tag), "%s", tag);
		default_flags = flags;
		__atomic_store_n(&default_set, 1, __ATOMIC_RELEASE);
	}
	pthread_mutex_unlock(&default_lock);
	return 0;
}

MEMCTL_EXPORT int memctl_set_default_tag_flags(const char *tag, unsigned flags)
{
	return set_default_tag(tag, flags);
}

MEMCTL_EXPORT int memctl_set_default_tag(const char *tag)
{
	return set_default_tag(tag, 0);
}

MEMCTL_EXPORT int memctl_set_margin(uint64_t bytes)
{
	pthread_once(&init_once, init);
	region_set_margin(bytes);
	return 0;
}

static int api_request(enum verb verb, const char *tags, unsigned flags)
{
	struct region_req rq = { .flags = flags };
	struct region_report rep;
	struct region_err err = { 0, "" };
	int rc = api_enter(tags, &rq.tags, &err);
	void *seen;

	if (rc == 0) {
		/* Status shows it while it runs; the counters count it. */
		seen = ctl_inproc_begin(verb, &rq);
		rc = preload_request(verb, &rq, &rep, &err);
		ctl_inproc_end(seen, rc, &rep, &err);
	}
	return rc < 0 ? api_fail(rc, &err, proto_verbs[verb].wire) : 0;
}

MEMCTL_EXPORT int memctl_pause(const char *tags, unsigned flags)
{
	return api_request(VERB_PAUSE, tags, flags);
}

MEMCTL_EXPORT int memctl_resume(const char *tags, unsigned flags)
{
	return api_request(VERB_RESUME, tags, flags);
}

MEMCTL_EXPORT int memctl_prepare(const char *tags)
{
	return api_request(VERB_PREPARE, tags, 0);
}

MEMCTL_EXPORT int memctl_release_host(const char *tags)
{
	return api_request(VERB_RELEASE_HOST, tags, 0);
}

MEMCTL_EXPORT int memctl_stat(const char *tags, struct memctl_stat *out)
{
	struct region_err err;
	struct tagset ts;
	int rc;

	if (out == NULL)
		return -EINVAL;
	memset(out, 0, sizeof(*out));
	rc = api_enter(tags, &ts, &err);
	if (rc < 0)
		return api_fail(rc, &err, "stat");
	return region_stat(&ts, out);
}

static int api_host_copy(const void *dptr, size_t size, void *dst, void **host)
{
	struct region_err err;
	int rc;

	pthread_once(&init_once, init);
	if (dptr == NULL || (dst == NULL && host == NULL))
		return -EINVAL;
	rc = region_host_copy((uint64_t)(uintptr_t)dptr, size, dst, host, &err);
	return rc < 0 ? api_fail(rc, &err, "host copy") : 0;
}

MEMCTL_EXPORT int memctl_host_copy(const void *dptr, size_t size, void **host)
{
	if (host == NULL)
		return -EINVAL;
	return api_host_copy(dptr, size, NULL, host);
}

MEMCTL_EXPORT int memctl_host_read(const void *dptr, size_t size, void *dst)
{
	if (dst == NULL)
		return -EINVAL;
	return api_host_copy(dptr, size, dst, NULL);
}

MEMCTL_EXPORT const char *memctl_strerror(int err)
{
	if (err < 0 && err == last_err.code && last_err.msg[0] != '\0')
		return last_err.msg;
	switch (err) {
	case 0:
		return "success";
	case -ENOENT:
		return "nothing carries the requested tags";
	case -EINVAL:
		return "invalid argument (malformed tag, flags, or unbalanced region_end)";
	case -EOVERFLOW:
		return "regions nested too deep";
	case -ENOMEM:
		return "out of memory";
	case -ENOSYS:
		return "memctl is not active: the CUDA driver could not be loaded";
	case -EIO:
		return "CUDA driver error";
	case -ENODATA:
		return "no staged contents (paused without staging, or not paused)";
	default:
		return err < 0 ? strerror(-err) : "not an error code";
	}
}
