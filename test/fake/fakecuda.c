/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fakecuda.c - a simulated CUDA driver (libcuda.so.1) for machines without
 * a GPU: its core. It behaves like the device rather than answering "ok",
 * and where the GPU leaves room it takes the strictest reading:
 *
 *   memory      device memory is host memory that faults when it is not
 *               mapped (fake_mem.c), counted against a capacity shared by
 *               every process on the machine and owned per process: the
 *               bytes of a process that died are reclaimed (this file)
 *   work        copies, memsets, kernels and graphs are queued and run in
 *               stream order only when something synchronises
 *               (FAKECUDA_ASYNC=lazy, the default), after a short random
 *               delay (delay), or at once (eager) (fake_stream.c)
 *   mistakes    memory taken away under queued work is a violation;
 *               work touching unmapped memory loses the context with a
 *               sticky CUDA_ERROR_ILLEGAL_ADDRESS, as on the GPU
 *   contexts    calls that need a current context fail without one
 *               (fake_ctx.c); a forked child of an initialised process
 *               gets CUDA_ERROR_NOT_INITIALIZED, never a deadlock
 *
 * Device pointers are host addresses, so tests read and write "device"
 * memory directly. The environment (read once, at first use):
 *   FAKECUDA_STATE     the machine's state file (/tmp/fakecuda-UID.state)
 *   FAKECUDA_MEMORY    device capacity (8G); FAKECUDA_DEVICES (1)
 *   FAKECUDA_ASYNC     lazy | delay | eager; FAKECUDA_DELAY_US (2000) and
 *                      FAKECUDA_SEED for delay
 *   FAKECUDA_VIOLATIONS abort (default) | count
 *   FAKECUDA_FAIL=fn:n[:err][,...] makes the n-th call of any entry point fn
 *                      fail (with CUDA_ERROR_OUT_OF_MEMORY, or err: inval,
 *                      illegal, unknown)
 *   FAKECUDA_HOLD=fn:path[,...] makes calls of fn wait on entry while the
 *                      file path exists
 * docs/testing.md describes the whole; fakecuda.h the test controls.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "fake.h"
#include "fakecuda.h"

#define STATE_MAGIC 0x46414b4543554432ull /* "FAKECUD2": owners per process */
#define OWNERS_MAX 256

/* Device memory held by one process, in the shared state file. */
struct owner {
	int32_t pid;
	uint32_t unused;
	unsigned long long start; /* process start, clock ticks after boot */
	uint64_t bytes;           /* device memory */
	uint64_t tenant;          /* taken with fakecuda_tenant_take */
};

/* The machine's device, shared by every process through FAKECUDA_STATE. */
struct shared_state {
	uint64_t magic;
	pthread_mutex_t lock; /* robust and process-shared: a holder may die */
	uint64_t used;        /* sum of the owners' bytes and tenant */
	uint64_t violations;  /* of every process */
	uint64_t illegal;
	struct owner owners[OWNERS_MAX];
};

struct fail_rule {
	char fn[48];
	long at;   /* fail when calls reaches this */
	long calls;
	CUresult err;
};

/* A call held open: callers of `fn` block on entry while it is set
 * (fakecuda_hold), or while the file `path` exists (FAKECUDA_HOLD, for
 * other processes). */
struct hold {
	char fn[48];
	char path[200];
	int waiting;
};

struct sim sim = { .lock = PTHREAD_MUTEX_INITIALIZER,
		   .changed = PTHREAD_COND_INITIALIZER,
		   .mem = PTHREAD_RWLOCK_WRITER_NONRECURSIVE_INITIALIZER_NP,
		   .slot = -1 };

/* The fault plan and holds: read by every entry point. */
static struct {
	struct fail_rule rules[16];
	int nrules;
	int armed;             /* rules or holds exist: entry points look */
	struct hold holds[8];
	int nholds;
	char in_lock_fn[48];   /* fakecuda_hold_in_lock */
	int in_lock_armed;
	int in_lock_waiting;
	long faults_fired;     /* failures returned since the plan was set */
} plan;

static uint64_t parse_size(const char *s, uint64_t dflt)
{
	char *end;
	unsigned long long v;

	if (s == NULL || *s == '\0')
		return dflt;
	v = strtoull(s, &end, 10);
	switch (*end) {
	case 'K': case 'k': v <<= 10; break;
	case 'M': case 'm': v <<= 20; break;
	case 'G': case 'g': v <<= 30; break;
	case 'T': case 't': v <<= 40; break;
	default: break;
	}
	return v;
}

void sim_say(const char *fmt, ...)
{
	char buf[512];
	va_list ap;
	int n = snprintf(buf, sizeof(buf), "fakecuda[%d]: ", (int)getpid());

	va_start(ap, fmt);
	n += vsnprintf(buf + n, sizeof(buf) - (size_t)n - 1, fmt, ap);
	va_end(ap);
	if (n > (int)sizeof(buf) - 2)
		n = (int)sizeof(buf) - 2;
	buf[n++] = '\n';
	(void)!write(2, buf, (size_t)n);
}

uint64_t sim_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ---- the fault plan ------------------------------------------------- */

/* The error a fault rule returns: "oom" (the default), "inval",
 * "illegal" (a device fault, reported once) or "unknown". */
static CUresult error_named(const char *s)
{
	if (strncmp(s, "inval", 5) == 0)
		return CUDA_ERROR_INVALID_VALUE;
	if (strncmp(s, "illegal", 7) == 0)
		return CUDA_ERROR_ILLEGAL_ADDRESS;
	if (strncmp(s, "unknown", 7) == 0)
		return CUDA_ERROR_UNKNOWN;
	return CUDA_ERROR_OUT_OF_MEMORY;
}

static void arm_locked(void)
{
	__atomic_store_n(&plan.armed, plan.nrules > 0 || plan.nholds > 0 || plan.in_lock_armed,
			 __ATOMIC_RELEASE);
}

static void set_fail_locked(const char *spec)
{
	const char *p = spec;
	char *end;

	plan.nrules = 0;
	plan.faults_fired = 0;
	while (p != NULL && *p != '\0' && plan.nrules < 16) {
		struct fail_rule *r = &plan.rules[plan.nrules];
		const char *colon = strchr(p, ':');
		const char *comma = strchr(p, ',');
		size_t len;

		if (colon == NULL)
			break;
		len = (size_t)(colon - p);
		if (len >= sizeof(r->fn))
			len = sizeof(r->fn) - 1;
		memcpy(r->fn, p, len);
		r->fn[len] = '\0';
		r->at = strtol(colon + 1, &end, 10);
		r->calls = 0;
		r->err = CUDA_ERROR_OUT_OF_MEMORY;
		if (*end == ':')
			r->err = error_named(end + 1);
		plan.nrules++;
		p = comma ? comma + 1 : NULL;
	}
	arm_locked();
}

/* FAKECUDA_HOLD=fn:path[,fn:path]: calls of fn block while path exists. */
static void hold_env_locked(const char *spec)
{
	const char *p = spec;

	while (p != NULL && *p != '\0' && plan.nholds < 8) {
		struct hold *h = &plan.holds[plan.nholds];
		const char *colon = strchr(p, ':');
		const char *comma;
		size_t len;

		if (colon == NULL)
			break;
		comma = strchr(colon, ',');
		memset(h, 0, sizeof(*h));
		len = (size_t)(colon - p) < sizeof(h->fn) ? (size_t)(colon - p) : sizeof(h->fn) - 1;
		memcpy(h->fn, p, len);
		len = comma ? (size_t)(comma - colon - 1) : strlen(colon + 1);
		if (len == 0 || len >= sizeof(h->path))
			break;
		memcpy(h->path, colon + 1, len);
		plan.nholds++;
		p = comma ? comma + 1 : NULL;
	}
	arm_locked();
}

/* Count a call of fn; its error if the fault plan says this one fails,
 * else CUDA_SUCCESS. */
static CUresult should_fail_locked(const char *fn)
{
	int i;

	for (i = 0; i < plan.nrules; i++)
		if (strcmp(plan.rules[i].fn, fn) == 0 && ++plan.rules[i].calls == plan.rules[i].at) {
			plan.faults_fired++;
			return plan.rules[i].err;
		}
	return CUDA_SUCCESS;
}

static int held_locked(struct hold *h)
{
	if (h->path[0] == '\0')
		return 1;
	return access(h->path, F_OK) == 0;
}

/* fakecuda_hold_in_lock: wait with the driver's lock taken, as a thread
 * that is inside the driver when another one forks. */
static void wait_in_lock(const char *fn)
{
	if (!__atomic_load_n(&plan.in_lock_armed, __ATOMIC_ACQUIRE) ||
	    strcmp(plan.in_lock_fn, fn) != 0)
		return;
	pthread_mutex_lock(&sim.lock);
	__atomic_add_fetch(&plan.in_lock_waiting, 1, __ATOMIC_ACQ_REL);
	while (__atomic_load_n(&plan.in_lock_armed, __ATOMIC_ACQUIRE))
		usleep(1000);
	__atomic_sub_fetch(&plan.in_lock_waiting, 1, __ATOMIC_ACQ_REL);
	UNLOCK();
}

/* Block while a hold names fn (without the driver lock, so other calls
 * go on), then consult the fault plan. */
static CUresult planned(const char *fn)
{
	CUresult r;
	int i;

	wait_in_lock(fn);
	LOCK();
	for (i = 0; i < plan.nholds; i++) {
		struct hold *h = &plan.holds[i];

		if (strcmp(h->fn, fn) != 0)
			continue;
		h->waiting++;
		while (i < plan.nholds && strcmp(h->fn, fn) == 0 && held_locked(h)) {
			UNLOCK();
			usleep(1000);
			pthread_mutex_lock(&sim.lock);
		}
		if (i < plan.nholds && strcmp(h->fn, fn) == 0)
			h->waiting--;
		break;
	}
	r = should_fail_locked(fn);
	UNLOCK();
	return r;
}

/* When nothing is armed and nothing went wrong this costs a few atomic
 * loads. */
CUresult sim_enter(const char *fn, int level)
{
	CUresult r;

	if (__atomic_load_n(&plan.armed, __ATOMIC_ACQUIRE) && (r = planned(fn)) != CUDA_SUCCESS)
		return r;
	if (__atomic_load_n(&sim.forked, __ATOMIC_ACQUIRE))
		return CUDA_ERROR_NOT_INITIALIZED;
	if (level >= 1 && !__atomic_load_n(&sim.inited, __ATOMIC_ACQUIRE))
		return CUDA_ERROR_NOT_INITIALIZED;
	if (level >= 2 && (r = __atomic_load_n(&sim.sticky, __ATOMIC_ACQUIRE)) != CUDA_SUCCESS)
		return r;
	return CUDA_SUCCESS;
}

/* ---- device memory owned per process --------------------------------- */

/* 1 and its start time if process `pid` lives (a zombie has exited: the
 * driver frees its memory at exit, before anyone reaps it). */
static int proc_alive(int pid, unsigned long long *start)
{
	char path[64], buf[1024], *p;
	ssize_t n;
	int fd, field;

	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	p = strrchr(buf, ')'); /* the name may hold spaces and parentheses */
	if (p == NULL || p[1] == '\0')
		return 0;
	p += 2; /* field 3, the state */
	if (*p == 'Z' || *p == 'X' || *p == 'x')
		return 0;
	for (field = 3; field < 22 && p != NULL; field++) {
		p = strchr(p, ' ');
		if (p != NULL)
			p++;
	}
	if (p == NULL)
		return 0;
	*start = strtoull(p, NULL, 10);
	return 1;
}

static void shared_lock(void)
{
	int i;

	if (pthread_mutex_lock(&sim.st->lock) != EOWNERDEAD)
		return;
	/* A process died holding it: the owners are right, `used` may not be. */
	sim.st->used = 0;
	for (i = 0; i < OWNERS_MAX; i++)
		sim.st->used += sim.st->owners[i].bytes + sim.st->owners[i].tenant;
	pthread_mutex_consistent(&sim.st->lock);
}

static void shared_unlock(void)
{
	pthread_mutex_unlock(&sim.st->lock);
}

/* Give back what dead processes held: their pid is gone, a zombie, or
 * reused by a process that started later. */
static void reclaim_shared_locked(void)
{
	int i, self = (int)getpid();

	if (sim.start == 0)
		return; /* no /proc to tell the living from the dead */

	for (i = 0; i < OWNERS_MAX; i++) {
		struct owner *o = &sim.st->owners[i];
		unsigned long long start;

		if (o->pid == 0 || (o->pid == self && o->start == sim.start))
			continue;
		if (proc_alive(o->pid, &start) && start == o->start)
			continue;
		sim.st->used -= o->bytes + o->tenant;
		memset(o, 0, sizeof(*o));
	}
}

static struct owner *own_row_shared_locked(int create)
{
	struct owner *o = sim.st->owners;
	int i, self = (int)getpid();

	if (sim.slot >= 0 && o[sim.slot].pid == self && o[sim.slot].start == sim.start)
		return &o[sim.slot];
	for (i = 0; i < OWNERS_MAX; i++)
		if (o[i].pid == self && o[i].start == sim.start)
			return &o[sim.slot = i];
	if (!create)
		return NULL;
	for (i = 0; i < OWNERS_MAX && o[i].pid != 0; i++)
		;
	if (i == OWNERS_MAX) {
		reclaim_shared_locked();
		for (i = 0; i < OWNERS_MAX && o[i].pid != 0; i++)
			;
		if (i == OWNERS_MAX)
			return NULL;
	}
	o[i].pid = self;
	o[i].start = sim.start;
	return &o[sim.slot = i];
}

/* Take bytes for this process, as device memory (tenant 0) or as
 * "another tenant" (tenant 1). */
static int take_as(uint64_t bytes, int tenant)
{
	struct owner *o;
	int rc = -1;

	shared_lock();
	if (sim.st->used + bytes > sim.capacity || sim.st->used + bytes < bytes)
		reclaim_shared_locked();
	if (sim.st->used + bytes <= sim.capacity && sim.st->used + bytes >= bytes &&
	    (o = own_row_shared_locked(1)) != NULL) {
		if (tenant)
			o->tenant += bytes;
		else
			o->bytes += bytes;
		sim.st->used += bytes;
		rc = 0;
	}
	shared_unlock();
	return rc;
}

static void give_as(uint64_t bytes, int tenant)
{
	struct owner *o;
	uint64_t *held;

	shared_lock();
	o = own_row_shared_locked(0);
	if (o != NULL) {
		held = tenant ? &o->tenant : &o->bytes;
		if (bytes > *held)
			bytes = *held;
		*held -= bytes;
		sim.st->used -= bytes;
		if (o->bytes == 0 && o->tenant == 0)
			memset(o, 0, sizeof(*o));
	}
	shared_unlock();
}

int sim_take(uint64_t bytes)
{
	return take_as(bytes, 0);
}

void sim_give(uint64_t bytes)
{
	give_as(bytes, 0);
}

static uint64_t used_now(void)
{
	uint64_t used;

	shared_lock();
	reclaim_shared_locked();
	used = sim.st->used;
	shared_unlock();
	return used;
}

static void map_state(void)
{
	static struct shared_state priv;
	const char *sp = getenv("FAKECUDA_STATE");
	size_t size = (sizeof(struct shared_state) + 4095) & ~(size_t)4095;
	char path[256];
	int fd;

	if (sp == NULL || *sp == '\0') {
		snprintf(path, sizeof(path), "/tmp/fakecuda-%u.state", (unsigned)getuid());
		sp = path;
	}
	fd = open(sp, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd >= 0) {
		flock(fd, LOCK_EX);
		if (ftruncate(fd, (off_t)size) == 0)
			sim.st = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		if (sim.st == MAP_FAILED)
			sim.st = NULL;
		if (sim.st != NULL && sim.st->magic != STATE_MAGIC) {
			pthread_mutexattr_t a;

			memset(sim.st, 0, sizeof(*sim.st));
			pthread_mutexattr_init(&a);
			pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
			pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
			pthread_mutex_init(&sim.st->lock, &a);
			pthread_mutexattr_destroy(&a);
			sim.st->magic = STATE_MAGIC;
		}
		flock(fd, LOCK_UN);
		close(fd);
	}
	if (sim.st == NULL) { /* private fallback: still a working driver */
		pthread_mutex_init(&priv.lock, NULL);
		sim.st = &priv;
	}
}

/* A forked child has none of the parent's threads: every lock may be held
 * by one of them. Start from fresh ones; the driver state is the parent's,
 * so a child of an initialised process cannot use it (as with the real
 * driver, which answers CUDA_ERROR_NOT_INITIALIZED there). */
/* Waits with a deadline count on CLOCK_MONOTONIC. */
static void changed_init(void)
{
	pthread_condattr_t a;

	pthread_condattr_init(&a);
	pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
	pthread_cond_init(&sim.changed, &a);
	pthread_condattr_destroy(&a);
}

static void fork_child(void)
{
	pthread_rwlockattr_t a;

	pthread_mutex_init(&sim.lock, NULL);
	changed_init();
	pthread_rwlockattr_init(&a);
	pthread_rwlockattr_setkind_np(&a, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	pthread_rwlock_init(&sim.mem, &a);
	pthread_rwlockattr_destroy(&a);
	__atomic_store_n(&sim.forked, sim.inited, __ATOMIC_RELEASE);
	sim.executors = 0;
	sim.slot = -1;
	if (!proc_alive((int)getpid(), &sim.start))
		sim.start = 0;
	plan.in_lock_armed = 0;
	plan.in_lock_waiting = 0;
	for (int i = 0; i < plan.nholds; i++)
		plan.holds[i].waiting = 0;
}

static enum async_mode async_named(const char *s)
{
	if (s == NULL || *s == '\0' || strcmp(s, "lazy") == 0)
		return ASYNC_LAZY;
	if (strcmp(s, "delay") == 0)
		return ASYNC_DELAY;
	if (strcmp(s, "eager") == 0)
		return ASYNC_EAGER;
	sim_say("FAKECUDA_ASYNC=%s is not lazy, delay or eager: lazy", s);
	return ASYNC_LAZY;
}

void sim_init_locked(void)
{
	const char *seed = getenv("FAKECUDA_SEED");

	if (sim.ready)
		return;
	sim.capacity = parse_size(getenv("FAKECUDA_MEMORY"), 8ull << 30);
	sim.devices = (int)parse_size(getenv("FAKECUDA_DEVICES"), 1);
	if (sim.devices < 1 || sim.devices > DEVICES_MAX)
		sim.devices = 1;
	sim.async = async_named(getenv("FAKECUDA_ASYNC"));
	sim.fatal = !(getenv("FAKECUDA_VIOLATIONS") && strcmp(getenv("FAKECUDA_VIOLATIONS"), "count") == 0);
	sim.delay_us = (unsigned)parse_size(getenv("FAKECUDA_DELAY_US"), 2000);
	sim.rng = seed ? (unsigned)strtoul(seed, NULL, 10)
		       : (unsigned)getpid() ^ (unsigned)sim_now_ns();
	set_fail_locked(getenv("FAKECUDA_FAIL"));
	hold_env_locked(getenv("FAKECUDA_HOLD"));
	if (!proc_alive((int)getpid(), &sim.start))
		sim.start = 0;
	map_state();
	changed_init(); /* nobody waits before init */
	pthread_atfork(NULL, NULL, fork_child);
	sim.ready = 1;
}

/* ---- test controls -------------------------------------------------- */

EXPORT void fakecuda_set_fail(const char *spec)
{
	LOCK();
	set_fail_locked(spec);
	UNLOCK();
}

EXPORT void fakecuda_hold(const char *fn)
{
	struct hold *h;

	LOCK();
	if (plan.nholds < 8) {
		h = &plan.holds[plan.nholds++];
		memset(h, 0, sizeof(*h));
		snprintf(h->fn, sizeof(h->fn), "%s", fn);
	}
	arm_locked();
	UNLOCK();
}

EXPORT void fakecuda_hold_in_lock(const char *fn)
{
	LOCK();
	snprintf(plan.in_lock_fn, sizeof(plan.in_lock_fn), "%s", fn);
	__atomic_store_n(&plan.in_lock_armed, 1, __ATOMIC_RELEASE);
	arm_locked();
	UNLOCK();
}

EXPORT void fakecuda_unhold(void)
{
	int i, k = 0;

	/* First, without the lock: a hold in the lock owns it. */
	__atomic_store_n(&plan.in_lock_armed, 0, __ATOMIC_RELEASE);
	LOCK();
	/* Holds that came from the environment (with a path) stay. */
	for (i = 0; i < plan.nholds; i++)
		if (plan.holds[i].path[0] != '\0')
			plan.holds[k++] = plan.holds[i];
	plan.nholds = k;
	arm_locked();
	UNLOCK();
}

EXPORT int fakecuda_held(const char *fn)
{
	int i, n = 0;

	if (__atomic_load_n(&plan.in_lock_armed, __ATOMIC_ACQUIRE) &&
	    strcmp(plan.in_lock_fn, fn) == 0)
		return __atomic_load_n(&plan.in_lock_waiting, __ATOMIC_ACQUIRE);
	LOCK();
	for (i = 0; i < plan.nholds; i++)
		if (strcmp(plan.holds[i].fn, fn) == 0)
			n += plan.holds[i].waiting;
	UNLOCK();
	return n;
}

EXPORT long fakecuda_live_handles(void) { return __atomic_load_n(&sim.live_handles, __ATOMIC_RELAXED); }
EXPORT long fakecuda_faults_fired(void)
{
	long n;

	LOCK();
	n = plan.faults_fired;
	UNLOCK();
	return n;
}
EXPORT long fakecuda_syncs(void) { return __atomic_load_n(&sim.syncs, __ATOMIC_RELAXED); }
EXPORT long fakecuda_violations(void) { return __atomic_load_n(&sim.violations, __ATOMIC_RELAXED); }
EXPORT long fakecuda_illegal_accesses(void) { return __atomic_load_n(&sim.illegal, __ATOMIC_RELAXED); }
EXPORT int fakecuda_sticky_error(void) { return (int)__atomic_load_n(&sim.sticky, __ATOMIC_RELAXED); }

EXPORT void fakecuda_clear_violations(void)
{
	__atomic_store_n(&sim.violations, 0, __ATOMIC_RELAXED);
	__atomic_store_n(&sim.illegal, 0, __ATOMIC_RELAXED);
}

EXPORT long fakecuda_machine_violations(void)
{
	LOCK();
	UNLOCK();
	return (long)(__atomic_load_n(&sim.st->violations, __ATOMIC_RELAXED) +
		      __atomic_load_n(&sim.st->illegal, __ATOMIC_RELAXED));
}

/* Counted per process and for the machine (a suite can check the tenants
 * it ran). A test framework may not count a failure that it learns of
 * after the test (Criterion ignores assertions in .fini): abort on the
 * spot, where it counts as a crash of the test that did it. */
void sim_violation(int illegal, const char *fmt, ...)
{
	char msg[400];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	__atomic_add_fetch(illegal ? &sim.illegal : &sim.violations, 1, __ATOMIC_RELAXED);
	__atomic_add_fetch(illegal ? &sim.st->illegal : &sim.st->violations, 1, __ATOMIC_RELAXED);
	sim_say("%s%s", msg, sim.fatal ? " [aborting: FAKECUDA_VIOLATIONS=abort]" : "");
	if (sim.fatal)
		abort();
}

EXPORT int fakecuda_violations_fatal(int on)
{
	int was;

	LOCK();
	was = sim.fatal;
	sim.fatal = on != 0;
	UNLOCK();
	return was;
}

EXPORT int fakecuda_set_async(const char *mode)
{
	enum async_mode m;

	if (mode == NULL || (strcmp(mode, "lazy") && strcmp(mode, "delay") && strcmp(mode, "eager")))
		return -1;
	m = async_named(mode);
	LOCK();
	sim.async = m;
	pthread_cond_broadcast(&sim.changed);
	UNLOCK();
	return 0;
}

EXPORT uint64_t fakecuda_used(void)
{
	LOCK();
	UNLOCK();
	return used_now();
}

EXPORT uint64_t fakecuda_process_used(int pid)
{
	uint64_t n = 0;
	int i;

	LOCK();
	UNLOCK();
	shared_lock();
	reclaim_shared_locked();
	for (i = 0; i < OWNERS_MAX; i++)
		if (sim.st->owners[i].pid == pid)
			n += sim.st->owners[i].bytes;
	shared_unlock();
	return n;
}

EXPORT int fakecuda_plant_owner(int pid, unsigned long long start, uint64_t bytes)
{
	int i, rc = -1;

	LOCK();
	UNLOCK();
	shared_lock();
	for (i = 0; i < OWNERS_MAX; i++) {
		struct owner *o = &sim.st->owners[i];

		if (o->pid != 0)
			continue;
		o->pid = pid;
		o->start = start;
		o->bytes = bytes;
		sim.st->used += bytes;
		rc = 0;
		break;
	}
	shared_unlock();
	return rc;
}

EXPORT uint64_t fakecuda_capacity(void)
{
	LOCK();
	UNLOCK();
	return sim.capacity;
}

EXPORT int fakecuda_tenant_take(uint64_t bytes)
{
	LOCK();
	UNLOCK();
	return take_as(bytes, 1);
}

EXPORT void fakecuda_tenant_give(uint64_t bytes)
{
	LOCK();
	UNLOCK();
	give_as(bytes, 1);
}

/* ---- initialisation and devices ------------------------------------- */

EXPORT CUresult cuInit(unsigned int flags)
{
	ENTER_ANY("cuInit");
	if (flags != 0)
		return CUDA_ERROR_INVALID_VALUE;
	LOCK();
	__atomic_store_n(&sim.inited, 1, __ATOMIC_RELEASE);
	UNLOCK();
	return CUDA_SUCCESS;
}

EXPORT CUresult cuDriverGetVersion(int *version)
{
	ENTER_ANY("cuDriverGetVersion");
	if (version == NULL)
		return CUDA_ERROR_INVALID_VALUE;
	*version = CUDA_VERSION;
	return CUDA_SUCCESS;
}

EXPORT CUresult cuGetErrorName(CUresult error, const char **str)
{
	switch (error) {
	case CUDA_SUCCESS: *str = "CUDA_SUCCESS"; break;
	case CUDA_ERROR_INVALID_VALUE: *str = "CUDA_ERROR_INVALID_VALUE"; break;
	case CUDA_ERROR_OUT_OF_MEMORY: *str = "CUDA_ERROR_OUT_OF_MEMORY"; break;
	case CUDA_ERROR_NOT_INITIALIZED: *str = "CUDA_ERROR_NOT_INITIALIZED"; break;
	case CUDA_ERROR_INVALID_DEVICE: *str = "CUDA_ERROR_INVALID_DEVICE"; break;
	case CUDA_ERROR_INVALID_CONTEXT: *str = "CUDA_ERROR_INVALID_CONTEXT"; break;
	case CUDA_ERROR_INVALID_HANDLE: *str = "CUDA_ERROR_INVALID_HANDLE"; break;
	case CUDA_ERROR_NOT_FOUND: *str = "CUDA_ERROR_NOT_FOUND"; break;
	case CUDA_ERROR_NOT_READY: *str = "CUDA_ERROR_NOT_READY"; break;
	case CUDA_ERROR_ILLEGAL_ADDRESS: *str = "CUDA_ERROR_ILLEGAL_ADDRESS"; break;
	case CUDA_ERROR_ILLEGAL_STATE: *str = "CUDA_ERROR_ILLEGAL_STATE"; break;
	case CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED:
		*str = "CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED"; break;
	case CUDA_ERROR_STREAM_CAPTURE_INVALIDATED:
		*str = "CUDA_ERROR_STREAM_CAPTURE_INVALIDATED"; break;
	case CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED:
		*str = "CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED"; break;
	case CUDA_ERROR_HOST_MEMORY_NOT_REGISTERED:
		*str = "CUDA_ERROR_HOST_MEMORY_NOT_REGISTERED"; break;
	default: *str = "CUDA_ERROR_UNKNOWN"; break;
	}
	return CUDA_SUCCESS;
}

EXPORT CUresult cuGetErrorString(CUresult error, const char **str)
{
	return cuGetErrorName(error, str);
}

EXPORT CUresult cuDeviceGetCount(int *count)
{
	ENTER("cuDeviceGetCount");
	if (count == NULL)
		return CUDA_ERROR_INVALID_VALUE;
	LOCK();
	*count = sim.devices;
	UNLOCK();
	return CUDA_SUCCESS;
}

EXPORT CUresult cuDeviceGet(CUdevice *dev, int ordinal)
{
	ENTER("cuDeviceGet");
	if (dev == NULL)
		return CUDA_ERROR_INVALID_VALUE;
	if (ordinal < 0 || ordinal >= sim.devices)
		return CUDA_ERROR_INVALID_DEVICE;
	*dev = ordinal;
	return CUDA_SUCCESS;
}
