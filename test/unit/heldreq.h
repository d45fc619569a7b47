/* SPDX-License-Identifier: Apache-2.0 */
/*
 * heldreq.h - requests run on a thread of their own while the simulated
 * driver holds one of their calls open (fakecuda_hold): started, cancelled,
 * expired and joined by the test, which waits on events, never on a guess
 * of time; and the check that the registry's census equals what the
 * driver holds. For the unit suites of the registry (test_region.c,
 * test_slab.c); include after fixture.h.
 */
#ifndef TEST_HELDREQ_H
#define TEST_HELDREQ_H

#include <pthread.h>
#include <time.h>
#include <unistd.h>

typedef int (*request_fn)(const struct region_req *, struct region_report *,
			  struct region_err *);

/* A request running on its own thread. */
struct bg {
	pthread_t thread;
	request_fn fn;
	struct region_req rq;
	struct region_report rep;
	struct region_err err;
	int cancel;
	int rc;
	int done;
};

static void *bg_main(void *arg)
{
	struct bg *b = arg;

	b->rc = b->fn(&b->rq, &b->rep, &b->err);
	__atomic_store_n(&b->done, 1, __ATOMIC_RELEASE);
	return NULL;
}

static inline void bg_start(struct bg *b, request_fn fn, const char *spec, unsigned flags)
{
	memset(b, 0, sizeof(*b));
	b->fn = fn;
	cr_assert(eq(int, tagset_parse(spec, &b->rq.tags, &b->err), 0), "%s", b->err.msg);
	b->rq.flags = flags;
	b->rq.cancel = &b->cancel;
	cr_assert(eq(int, pthread_create(&b->thread, NULL, bg_main, b), 0));
}

static inline int bg_join(struct bg *b)
{
	pthread_join(b->thread, NULL);
	return b->rc;
}

static inline void bg_cancel(struct bg *b)
{
	__atomic_store_n(&b->cancel, 1, __ATOMIC_RELEASE);
}

static inline long long mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Move the request's deadline into the past. */
static inline void bg_expire(struct bg *b)
{
	__atomic_store_n(&b->rq.deadline_ms, mono_ms() - 1, __ATOMIC_RELEASE);
}

/* Wait (on the event, not on a guess of time) until a call of fn is held. */
static inline void wait_held(const char *fn)
{
	while (fakecuda_held(fn) == 0)
		usleep(1000);
}

/* What the registry believes equals what the simulated driver holds. */
static inline void assert_census_true(void)
{
	struct region_census c;

	region_census(&c);
	cr_assert(eq(u64, c.handles, (uint64_t)fakecuda_live_handles()));
	cr_assert(eq(u64, c.mappings, (uint64_t)fakecuda_live_mappings()));
	cr_assert(eq(u64, c.reservations, (uint64_t)fakecuda_live_reservations()));
	cr_assert(eq(u64, c.host_pinned, (uint64_t)fakecuda_live_host_registrations()));
	cr_assert(eq(u64, c.handle_bytes, fakecuda_used()));
}

#endif
