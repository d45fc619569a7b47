/* SPDX-License-Identifier: Apache-2.0 */
/*
 * gate.c - the gate's state, its slow paths and the control side
 * (gate.h says what the gate is).
 *
 * The fast path is asymmetric on purpose. A submitting thread marks its
 * slot inside and then reads the gate word, with nothing but a compiler
 * barrier between (where the kernel has membarrier); the drain, which runs
 * a few times an hour, closes the word and then makes every running thread
 * of the process execute a full barrier (membarrier PRIVATE_EXPEDITED)
 * before it reads the slots. Either the submitter sees the gate closed, or
 * the drain sees the submitter inside: a launch can never slip between the
 * check and the drain unseen. Without membarrier (an old kernel, a seccomp
 * filter) the fast path fences instead, which is correct and a little
 * slower.
 *
 * Slots live in each thread's TLS and are listed while their thread
 * lives (a pthread key's destructor unlists them), so the drain sees every
 * thread that ever submitted work and nothing is allocated.
 */
#include <errno.h>
#include <linux/membarrier.h>
#include <pthread.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "gate.h"
#include "log.h"

#define LEASE_ANY 0u

int gate_word;
int gate_fenced = 1; /* until membarrier is known to work */
__thread struct gate_slot *gate_self __attribute__((tls_model("initial-exec")));
static __thread struct gate_slot own_slot __attribute__((tls_model("initial-exec")));

/* What keeps the gate closed (drains, tags paused with gating, a group
 * pause's lease) and who waits at it: the slow paths' state, under its
 * lock. gate_word mirrors whether it is closed for the fast path. */
static struct {
	pthread_mutex_t lock;
	pthread_cond_t opened;    /* broadcast whenever the gate may have opened */
	int draining;
	struct tagset held;       /* tags paused with gating */
	unsigned held_gen;        /* bumped whenever held grows */
	long long lease_until;    /* CLOCK_MONOTONIC ms; 0: no lease */
	unsigned lease_id, next_lease;
	int waiting;
	uint64_t waits;
} gate_state = { .lock = PTHREAD_MUTEX_INITIALIZER, .opened = PTHREAD_COND_INITIALIZER };

static struct {
	pthread_mutex_t lock;
	struct gate_slot *head;
} slots = { .lock = PTHREAD_MUTEX_INITIALIZER };

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static pthread_key_t slot_key;

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int membarrier(int cmd)
{
#ifdef __NR_membarrier
	return (int)syscall(__NR_membarrier, cmd, 0, 0);
#else
	(void)cmd;
	errno = ENOSYS;
	return -1;
#endif
}

static void unlist(void *arg)
{
	struct gate_slot *s = arg;

	pthread_mutex_lock(&slots.lock);
	if (s->listed) {
		if (s->prev != NULL)
			s->prev->next = s->next;
		else
			slots.head = s->next;
		if (s->next != NULL)
			s->next->prev = s->prev;
		s->listed = 0;
	}
	pthread_mutex_unlock(&slots.lock);
	gate_self = NULL; /* a later gated call in this exiting thread lists it again */
}

/* Waiting for a lease to run out must not follow the wall clock. */
static void init_cond(void)
{
	pthread_condattr_t attr;

	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&gate_state.opened, &attr);
	pthread_condattr_destroy(&attr);
}

static void init(void)
{
	/* Under the lock: ungate may broadcast on it meanwhile. */
	pthread_mutex_lock(&gate_state.lock);
	init_cond();
	pthread_mutex_unlock(&gate_state.lock);
	(void)pthread_key_create(&slot_key, unlist);
#ifdef MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED
	if (membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED) == 0)
		__atomic_store_n(&gate_fenced, 0, __ATOMIC_RELEASE);
#endif
}

struct gate_slot *gate_join(void)
{
	struct gate_slot *s = &own_slot;

	pthread_once(&init_once, init);
	pthread_mutex_lock(&slots.lock);
	if (!s->listed) {
		s->prev = NULL;
		s->next = slots.head;
		if (slots.head != NULL)
			slots.head->prev = s;
		slots.head = s;
		s->listed = 1;
	}
	pthread_mutex_unlock(&slots.lock);
	(void)pthread_setspecific(slot_key, s);
	gate_self = s;
	return s;
}

/* ---- the state and the gate word --------------------------------------- */

static int held_empty(const struct tagset *ts)
{
	return !ts->all && ts->n == 0;
}

/* Why it is closed now (0: open); a lease that ran out ends here. */
static int closed_locked(long long now)
{
	if (gate_state.lease_until != 0 && now >= gate_state.lease_until)
		gate_state.lease_until = 0;
	return gate_state.draining > 0 || !held_empty(&gate_state.held) || gate_state.lease_until != 0;
}

/* Store the gate word after a change; wake the waiters when it opened. */
static void publish_locked(void)
{
	int closed = closed_locked(now_ms());

	__atomic_store_n(&gate_word, closed, __ATOMIC_SEQ_CST);
	if (!closed)
		pthread_cond_broadcast(&gate_state.opened);
}

static void wait_open(void)
{
	long long now;

	pthread_mutex_lock(&gate_state.lock);
	gate_state.waiting++;
	gate_state.waits++;
	while (closed_locked(now = now_ms())) {
		if (gate_state.draining == 0 && held_empty(&gate_state.held)) {
			/* Only a lease keeps it closed: it may run out with
			 * nobody else to notice. */
			struct timespec ts = { .tv_sec = (time_t)(gate_state.lease_until / 1000),
					       .tv_nsec = (long)(gate_state.lease_until % 1000) * 1000000 };

			pthread_cond_timedwait(&gate_state.opened, &gate_state.lock, &ts);
		} else {
			pthread_cond_wait(&gate_state.opened, &gate_state.lock);
		}
	}
	publish_locked(); /* a lease that ran out opened it */
	gate_state.waiting--;
	pthread_mutex_unlock(&gate_state.lock);
}

void gate_wait(struct gate_slot *s)
{
	do {
		/* Not inside while waiting: a drain must not wait for us. */
		__atomic_store_n(&s->inside, 0, __ATOMIC_RELEASE);
		wait_open();
		__atomic_store_n(&s->inside, 1, __ATOMIC_RELAXED);
		__atomic_thread_fence(__ATOMIC_SEQ_CST);
	} while (__atomic_load_n(&gate_word, __ATOMIC_RELAXED) != 0);
}

/* ---- the control side -------------------------------------------------- */

static void hold_tags_locked(const struct tagset *ts)
{
	int i, k;

	gate_state.held_gen++;
	if (ts->all || gate_state.held.all) {
		gate_state.held.all = 1;
		gate_state.held.n = 0;
		return;
	}
	for (i = 0; i < ts->n; i++) {
		for (k = 0; k < gate_state.held.n; k++)
			if (strcmp(gate_state.held.names[k], ts->names[i]) == 0)
				break;
		if (k < gate_state.held.n)
			continue;
		if (gate_state.held.n == TAGSET_MAX) { /* no room: closed until all resume */
			gate_state.held.all = 1;
			gate_state.held.n = 0;
			return;
		}
		memcpy(gate_state.held.names[gate_state.held.n++], ts->names[i], TAG_MAX);
	}
}

void gate_drain_begin(void)
{
	pthread_once(&init_once, init);
	pthread_mutex_lock(&gate_state.lock);
	gate_state.draining++;
	publish_locked();
	pthread_mutex_unlock(&gate_state.lock);
}

void gate_drain_end(const struct tagset *held, int end_lease)
{
	pthread_mutex_lock(&gate_state.lock);
	gate_state.draining--;
	if (held != NULL)
		hold_tags_locked(held);
	if (end_lease)
		gate_state.lease_until = 0;
	publish_locked();
	pthread_mutex_unlock(&gate_state.lock);
}

unsigned gate_lease(long long until_ms)
{
	unsigned id;

	pthread_once(&init_once, init);
	pthread_mutex_lock(&gate_state.lock);
	if (++gate_state.next_lease == LEASE_ANY)
		gate_state.next_lease++;
	id = gate_state.lease_id = gate_state.next_lease;
	gate_state.lease_until = until_ms;
	publish_locked();
	pthread_mutex_unlock(&gate_state.lock);
	return id;
}

int gate_lease_current(unsigned id)
{
	int current;

	pthread_mutex_lock(&gate_state.lock);
	(void)closed_locked(now_ms()); /* ends it if it ran out */
	current = gate_state.lease_id == id && gate_state.lease_until != 0;
	pthread_mutex_unlock(&gate_state.lock);
	return current;
}

void gate_lease_end(unsigned id)
{
	pthread_mutex_lock(&gate_state.lock);
	if (id == LEASE_ANY || gate_state.lease_id == id)
		gate_state.lease_until = 0;
	publish_locked();
	pthread_mutex_unlock(&gate_state.lock);
}

void gate_ungate(void)
{
	gate_lease_end(LEASE_ANY);
}

/* The held tags that `paused` says are still paused. */
static void still_paused(const struct tagset *held, int (*paused)(const struct tagset *),
			 struct tagset *keep)
{
	int i;

	memset(keep, 0, sizeof(*keep));
	if (held->all) {
		keep->all = paused(held);
		return;
	}
	for (i = 0; i < held->n; i++) {
		struct tagset one = { .n = 1 };

		memcpy(one.names[0], held->names[i], TAG_MAX);
		if (paused(&one))
			memcpy(keep->names[keep->n++], held->names[i], TAG_MAX);
	}
}

void gate_forget_resumed(int (*paused)(const struct tagset *ts))
{
	for (;;) {
		struct tagset held, keep;
		unsigned gen;

		pthread_mutex_lock(&gate_state.lock);
		held = gate_state.held;
		gen = gate_state.held_gen;
		pthread_mutex_unlock(&gate_state.lock);
		if (held_empty(&held))
			return;
		/* Asked without the gate's lock: the registry has its own. A
		 * gated pause that ends meanwhile bumps held_gen: ask again. */
		still_paused(&held, paused, &keep);
		pthread_mutex_lock(&gate_state.lock);
		if (gen == gate_state.held_gen) {
			gate_state.held = keep;
			publish_locked();
			pthread_mutex_unlock(&gate_state.lock);
			return;
		}
		pthread_mutex_unlock(&gate_state.lock);
	}
}

/* Threads inside a gated call now. */
static int count_inside(void)
{
	struct gate_slot *s;
	int n = 0;

	pthread_mutex_lock(&slots.lock);
	for (s = slots.head; s != NULL; s = s->next)
		n += __atomic_load_n(&s->inside, __ATOMIC_ACQUIRE) != 0;
	pthread_mutex_unlock(&slots.lock);
	return n;
}

int gate_quiesce(long long deadline_ms, const int *cancel, int *inside)
{
	struct timespec pause = { 0, 20000 };

	/* The gate word is closed: make every running thread's view of its
	 * own slot and of the word ordered before we look at the slots. */
	if (!__atomic_load_n(&gate_fenced, __ATOMIC_ACQUIRE) &&
	    membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED) != 0) {
		memctl_log_warnx("membarrier failed: gated calls fence from now on");
		__atomic_store_n(&gate_fenced, 1, __ATOMIC_SEQ_CST);
		usleep(1000); /* calls already past their check see it by now */
	}
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	for (;;) {
		*inside = count_inside();
		if (*inside == 0)
			return 0;
		/* The deadline before the flag: the server raises it at the
		 * deadline too, and that is a timeout. */
		if (deadline_ms != 0 && now_ms() >= deadline_ms)
			return -ETIMEDOUT;
		if (cancel != NULL && __atomic_load_n(cancel, __ATOMIC_ACQUIRE))
			return -ECANCELED;
		nanosleep(&pause, NULL);
		if (pause.tv_nsec < 2000000)
			pause.tv_nsec *= 2;
	}
}

void gate_view(struct gate_view *v)
{
	long long now = now_ms();

	memset(v, 0, sizeof(*v));
	pthread_mutex_lock(&gate_state.lock);
	v->closed = closed_locked(now);
	v->waiting = gate_state.waiting;
	v->draining = gate_state.draining;
	tagset_format(&gate_state.held, v->held, sizeof(v->held));
	if (held_empty(&gate_state.held))
		v->held[0] = '\0';
	v->lease_ms = gate_state.lease_until ? gate_state.lease_until - now : 0;
	v->waits = gate_state.waits;
	pthread_mutex_unlock(&gate_state.lock);
}

void gate_after_fork(void)
{
	struct gate_slot *s = gate_self;

	/* The parent's other threads do not exist here, and their locks may
	 * have been held: start over with this thread alone. */
	pthread_mutex_init(&gate_state.lock, NULL);
	pthread_mutex_init(&slots.lock, NULL);
	init_cond();
	gate_state.draining = gate_state.waiting = 0;
	memset(&gate_state.held, 0, sizeof(gate_state.held));
	gate_state.lease_until = 0;
	__atomic_store_n(&gate_word, 0, __ATOMIC_SEQ_CST);
	/* membarrier registration does not survive fork. */
	__atomic_store_n(&gate_fenced, 1, __ATOMIC_SEQ_CST);
	slots.head = NULL;
	if (s != NULL) {
		s->prev = s->next = NULL;
		s->inside = s->depth > 0;
		slots.head = s;
	}
}
