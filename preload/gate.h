/* SPDX-License-Identifier: Apache-2.0 */
/*
 * gate.h - the gate in front of every way the process submits GPU work
 * (launches, graph launches, copies, memsets: gated.h lists them).
 *
 * Open, a submission costs a thread-local load, two stores and one load of
 * the gate word (with membarrier; a fence as well where the kernel lacks
 * it). Closed, it waits in its own thread until the gate opens, then
 * proceeds: nothing fails and nothing is lost. The gate is closed while
 * any of these holds:
 *   - a gated request is draining (gate_drain_begin .. gate_drain_end);
 *   - memory paused with gating is still paused (the held tags);
 *   - a lease taken by a group pause's first phase has not run out.
 * Waiting holds no lock that the control path needs: waiters sleep on the
 * gate's own condition variable, which every control call takes only
 * briefly.
 *
 * A thread counts as inside the gate from its check until the driver call
 * returns, so gate_quiesce can wait for submissions that passed the check
 * just before the gate closed (a launch racing with a pause).
 *
 * Nothing here calls the driver or region/ (the held tags are kept as
 * names; gate_forget_resumed asks the caller what is still paused).
 */
#ifndef MEMCTL_GATE_H
#define MEMCTL_GATE_H

#include <stdint.h>

#include "region.h"

struct gate_slot {
	int inside;               /* 1 while its thread is in a gated call (atomic) */
	int depth;                /* nesting of gated calls, its thread's alone */
	struct gate_slot *prev, *next; /* the list the drain scans */
	int listed;
};

/* Hidden: the fast path reads them directly, not through the GOT. */
#define GATE_HIDDEN __attribute__((visibility("hidden")))
extern int gate_word GATE_HIDDEN;    /* non-zero while closed; the fast path's one load */
extern int gate_fenced GATE_HIDDEN;  /* 1: no membarrier here, the fast path fences */
extern __thread struct gate_slot *gate_self GATE_HIDDEN
	__attribute__((tls_model("initial-exec")));

/* The slow paths: a thread's first gated call, and waiting while closed. */
struct gate_slot *gate_join(void);
void gate_wait(struct gate_slot *s);

/* Enter the gate before submitting GPU work; waits while it is closed. */
static inline struct gate_slot *gate_enter(void)
{
	struct gate_slot *s = gate_self;

	if (__builtin_expect(s == NULL, 0))
		s = gate_join();
	if (s->depth++ > 0)
		return s; /* the outer call passed it */
	__atomic_store_n(&s->inside, 1, __ATOMIC_RELAXED);
	if (gate_fenced)
		__atomic_thread_fence(__ATOMIC_SEQ_CST);
	else
		__atomic_signal_fence(__ATOMIC_SEQ_CST);
	if (__builtin_expect(__atomic_load_n(&gate_word, __ATOMIC_RELAXED) != 0, 0))
		gate_wait(s);
	return s;
}

/* Leave it once the driver call returned. */
static inline void gate_leave(struct gate_slot *s)
{
	if (--s->depth == 0)
		__atomic_store_n(&s->inside, 0, __ATOMIC_RELEASE);
}

/* ---- the control side: each call takes the gate's lock briefly ---- */

/* A gated request closes the gate while it drains and releases. */
void gate_drain_begin(void);
/* It ends: with `held` (tags now paused with gating, or NULL) the gate
 * stays closed for them; with `end_lease` any lease ends too (a pause
 * takes over from the first phase of a group pause). */
void gate_drain_end(const struct tagset *held, int end_lease);

/* The first phase of a group pause: closed until `until_ms`
 * (CLOCK_MONOTONIC) at the latest. Returns the lease's number. */
unsigned gate_lease(long long until_ms);
/* 1 while lease `id` is the one in force. */
int gate_lease_current(unsigned id);
/* End lease `id` (if it is still in force). */
void gate_lease_end(unsigned id);
/* End whatever lease is in force (ungate). */
void gate_ungate(void);

/* After a resume: forget held tags whose memory is no longer paused.
 * `paused(ts)` returns 1 when memory carrying `ts` is paused; it is called
 * without the gate's lock. */
void gate_forget_resumed(int (*paused)(const struct tagset *ts));

/* Wait until no thread is inside a gated call that began before the gate
 * closed (call with the gate closed). 0; -ETIMEDOUT at deadline_ms
 * (CLOCK_MONOTONIC, 0: none) or -ECANCELED once *cancel is set, with
 * *inside the threads still inside. */
int gate_quiesce(long long deadline_ms, const int *cancel, int *inside);

struct gate_view {
	int closed;
	int waiting;            /* threads waiting at the gate now */
	int draining;           /* gated requests draining now */
	char held[TAGSET_TEXT_MAX]; /* tags paused with gating; "" none */
	long long lease_ms;     /* a first phase's lease: ms left; 0 none */
	uint64_t waits;         /* submissions that waited, since the start */
};
void gate_view(struct gate_view *v);

/* In a forked child: open, no waiters, no other threads. */
void gate_after_fork(void);

#endif /* MEMCTL_GATE_H */
