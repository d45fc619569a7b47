/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fake.h - what the files of the simulated driver share. Not for tests
 * (they use fakecuda.h) and never part of the product.
 *
 * One mutex (sim.lock) guards every structure of the process; a
 * reader/writer lock (sim.mem) keeps device memory mapped while queued work
 * touches it: work takes it shared for its memory effect, unmap and free
 * take it exclusively. Order: sim.mem before sim.lock, never the reverse.
 */
#ifndef FAKE_H
#define FAKE_H

#include <cuda.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#define EXPORT __attribute__((visibility("default")))
#define GRANULARITY (2ul << 20)
#define DEVICES_MAX 16
#define CTX_MAX 64
#define CTX_STACK_MAX 64

enum range_kind {
	RANGE_RESERVED, /* cuMemAddressReserve */
	RANGE_MAPPED,   /* cuMemMap of a handle inside a reservation */
	RANGE_ALLOC,    /* cuMemAlloc */
	RANGE_HOSTREG,  /* cuMemHostRegister: device-accessible host memory */
	RANGE_ASYNC,    /* cuMemAllocAsync / cuMemAllocFromPoolAsync */
};

#define PHYS_MAGIC 0x50485953u

struct phys {
	uint32_t magic;        /* PHYS_MAGIC: a handle value, not anything else */
	int fd;
	size_t size;
	int maps;
	int refs;              /* cuMemCreate / import, retains, less releases */
	int imported;          /* cuMemImportFromShareableHandle: no capacity */
	CUmemAllocationProp prop;
};

struct fpool;

struct range {
	enum range_kind kind;
	uint64_t va;
	size_t size;
	struct phys *phys;  /* RANGE_MAPPED */
	size_t offset;      /* RANGE_MAPPED: into phys */
	int access;         /* RANGE_MAPPED: cuMemSetAccess granted */
	unsigned char flags[DEVICES_MAX]; /* RANGE_MAPPED: per device, as set */
	int live;           /* RANGE_ASYNC: allocated in stream order by now */
	int freeing;        /* RANGE_ASYNC: its free is queued */
	struct fpool *pool; /* RANGE_ASYNC */
};

enum stream_kind { STREAM_LEGACY, STREAM_BLOCKING, STREAM_NONBLOCKING };

struct fstream;

struct fctx {
	int used;
	int dev;
	int primary;
	int refs;                /* primary: retains */
	struct fstream *legacy;  /* the NULL stream */
	struct fstream *streams; /* every stream with work or not destroyed */
};

struct fgraph;

struct fstream {
	uint32_t magic;
	struct fctx *ctx;
	enum stream_kind kind;
	struct op *head, *tail; /* queued work, oldest first; head runs first */
	int busy;               /* a thread executes head right now */
	int destroyed;
	struct fgraph *capture; /* capturing instead of queueing */
	CUstreamCaptureMode capture_mode;
	pthread_t capture_thread;
	int capture_invalid;
	struct fstream *next;   /* in ctx->streams */
};

struct fevent {
	uint32_t magic;
	struct fctx *ctx;
	struct fstream *stream; /* where it was last recorded, or NULL */
	uint64_t seq;           /* of that record */
};

struct kernel;

enum op_kind { OP_COPY, OP_MEMSET, OP_KERNEL, OP_HOST_FN, OP_EVENT, OP_WAIT,
	       OP_ALLOC, OP_FREE };

/* Memory one piece of work touches. `device`: must be device-accessible
 * when the work runs; `pinned`: host memory registered when queued, which
 * must still be registered when the work runs. */
struct touch {
	uint64_t va;
	size_t n;
	int device;
	int pinned;
};

struct op {
	enum op_kind kind;
	const char *what;  /* entry point or kernel, for messages */
	uint64_t seq;      /* order of submission in the process */
	uint64_t ready_ns; /* FAKECUDA_ASYNC=delay: not before */
	struct fstream *stream;
	struct op *next;
	struct touch touch[3];
	int ntouch;
	union {
		struct { void *dst; const void *src; size_t n; void *staging; } copy;
		struct { void *dst; uint32_t value; int width; size_t count; } set;
		struct { const struct kernel *k; uint64_t arg[4]; } kern;
		struct { CUhostFn fn; void *data; } host;
		struct { struct fstream *s; uint64_t seq; } wait;
		struct { uint64_t va; } mem;
	} u;
};

struct fgraph {
	uint32_t magic;
	struct op *ops; /* templates, in capture order */
	size_t n, cap;
};

struct fpool {
	uint32_t magic;
	int dev;
	int is_default;
	int destroyed;
	long live;
	size_t bytes;   /* of its live allocations */
};

enum async_mode { ASYNC_LAZY, ASYNC_DELAY, ASYNC_EAGER };

struct shared_state;

struct sim {
	pthread_mutex_t lock;
	pthread_cond_t changed;  /* work finished or queued */
	pthread_rwlock_t mem;
	int ready;               /* this file's state set up */
	int inited;              /* cuInit called */
	int forked;              /* a child of an initialised process */
	struct shared_state *st;
	int slot;                /* our owner row in st, or -1 */
	unsigned long long start; /* our start time, clock ticks after boot */
	uint64_t capacity;
	int devices;
	struct range *ranges;
	size_t nranges, cap_ranges;
	long live_handles, syncs, violations, illegal;
	CUresult sticky;         /* the context is lost: every call fails */
	int fatal;               /* abort the process on a violation */
	uint64_t seq;
	enum async_mode async;
	unsigned delay_us;
	unsigned rng;
	int executors;
	struct fctx ctxs[CTX_MAX];
	struct fstream *retired; /* destroyed and empty: events may name them */
	struct fpool default_pool[DEVICES_MAX];
	struct fpool *current_pool[DEVICES_MAX]; /* cuDeviceSetMemPool; NULL: default */
};

extern struct sim sim;

#define LOCK() do { pthread_mutex_lock(&sim.lock); sim_init_locked(); } while (0)
#define UNLOCK() pthread_mutex_unlock(&sim.lock)

/* fakecuda.c */
void sim_init_locked(void);
/* Every entry point starts with one of these: holds and injected faults
 * (FAKECUDA_HOLD, FAKECUDA_FAIL), then what the real driver checks first.
 * ENTER_ANY: nothing more (cuInit). ENTER: cuInit must have run.
 * ENTER_LIVE: and the context must not be lost to a sticky error. */
CUresult sim_enter(const char *fn, int level);
#define ENTER_AT(fn, level)                                \
	do {                                               \
		CUresult enter_ = sim_enter(fn, level);    \
		if (enter_ != CUDA_SUCCESS)                \
			return enter_;                     \
	} while (0)
#define ENTER_ANY(fn) ENTER_AT(fn, 0)
#define ENTER(fn) ENTER_AT(fn, 1)
#define ENTER_LIVE(fn) ENTER_AT(fn, 2)
void sim_say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Device bytes against the machine's capacity, owned by this process. */
int sim_take(uint64_t bytes);
void sim_give(uint64_t bytes);
uint64_t sim_now_ns(void);
/* Count a violation (0) or a lost context (1), report it on stderr, and
 * abort the process when violations are fatal (the default). */
void sim_violation(int illegal, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* fake_mem.c */
struct range *range_find_locked(enum range_kind kind, uint64_t va);
struct range *range_add_locked(enum range_kind kind, uint64_t va, size_t size);
void range_del_locked(struct range *r);
/* 0 if [va, va+n) is device-accessible memory right now, else the first
 * address that is not. */
uint64_t inaccessible_locked(uint64_t va, size_t n);
/* 1 if work queued now may touch [va, va+n) on the device. */
int queueable_locked(uint64_t va, size_t n);
/* 1 if [va, va+n) lies in registered host memory. */
int host_registered_locked(uint64_t va, size_t n);
/* 1 if va belongs to any device allocation or reservation. */
int device_address_locked(uint64_t va);
/* Record a violation if queued work other than `except` touches
 * [va, va+n): `call` is about to take that memory away. */
void check_unused_locked(const char *call, uint64_t va, size_t n, const struct op *except);

/* fake_ctx.c */
struct fctx *ctx_current(void);
/* The context a handle names, or NULL if it names none alive. */
struct fctx *ctx_of(CUcontext c);
/* Run every piece of work queued in ctx (fake_stream.c). */
void ctx_sync_locked(struct fctx *ctx);

/* fake_stream.c */
#define STREAM_MAGIC 0x5354524du
#define EVENT_MAGIC 0x4556454eu
/* The stream a handle names; NULL and the legacy/per-thread handles name
 * the current context's NULL stream (CUDA_ERROR_INVALID_CONTEXT without
 * one). */
CUresult stream_get(CUstream h, struct fstream **out);
struct fstream *stream_new_locked(struct fctx *ctx, enum stream_kind kind);
struct op *op_new(enum op_kind kind, const char *what);
void op_touch(struct op *op, uint64_t va, size_t n, int device);
/* Queue op on s (or add it to the graph s captures). Takes the op. */
CUresult submit_locked(struct fstream *s, struct op *op);
/* Run s's queued work up to and including seq `upto`. */
void run_stream_locked(struct fstream *s, uint64_t upto);
/* First queued op of this process that touches [va, va+n), or NULL. */
const struct op *queued_touching_locked(uint64_t va, size_t n, const struct op *except);
/* The context is lost: record it once, with the address. */
void illegal_locked(const struct op *op, uint64_t va);

/* fake_kernel.c */
/* A kernel's effect on memory (under sim.mem, without sim.lock). */
void kernel_run(struct op *op);
/* A spin kernel's wait for its flag (without any lock); others return. */
void kernel_spin(const struct op *op);
/* 1 if op is a spin kernel whose flag is not yet set. */
int kernel_would_block(const struct op *op);
/* Count op's kernel as running (+1) or done (-1). */
void kernel_started(const struct op *op, int delta);

/* fake_pool.c: a stream-ordered allocation or free takes effect. */
void pool_alloc_run_locked(struct op *op);
void pool_free_run_locked(struct op *op);
/* An allocation of pool p is gone (cuMemFree). */
void pool_forget_locked(struct fpool *p, size_t bytes);

#endif /* FAKE_H */
