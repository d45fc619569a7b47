/* SPDX-License-Identifier: Apache-2.0 */
/*
 * worker.c - change requests run here, one at a time, off the socket
 * thread.
 *
 * A request may take seconds (a staged pause copies gigabytes). Running it
 * on the socket thread would leave every other client, and every `status`,
 * waiting behind it, and would leave nobody to notice that its own client
 * gave up. So the socket thread queues it here and goes back to its
 * sockets; when the client leaves or the request's deadline passes, the
 * socket thread raises the job's cancel flag, which region/ checks at its
 * safe points. A job that has not started when nobody wants it any more
 * never starts. One lock guards the queues; the worker never holds it
 * while a request runs.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "worker.h"

static struct {
	pthread_mutex_t lock;
	pthread_cond_t queued_cond;        /* a job was queued */
	struct job *queued, *queued_tail;  /* waiting to run, oldest first */
	struct job *running;
	struct job *inproc;                /* the process's own, running, oldest first */
	struct job *done, *done_tail;      /* back for the socket thread */
	struct job_view last;              /* the last job that ran */
	struct worker_counters counters;
	long long last_finished_ms;
	int notify[2];                     /* pipe: a byte per job put in done */
	worker_run_fn run;
	int started;
} jobs = {
	.lock = PTHREAD_MUTEX_INITIALIZER,
	.queued_cond = PTHREAD_COND_INITIALIZER,
	.notify = { -1, -1 },
};

long long worker_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* CLOCK_MONOTONIC in milliseconds, to the microsecond. */
static double precise_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static double wall_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Histogram bounds: from a millisecond (an unstaged pause) to ten
 * minutes (a staged pause of a large model on a slow bus). */
const double worker_bucket_ms[WORKER_BUCKETS] = {
	1, 5, 10, 50, 100, 500, 1000, 5000, 10000, 30000, 60000, 600000,
};

/* Count a job that ended, run or not (lock held). */
static void count(const struct job *j)
{
	struct verb_counts *v = &jobs.counters.verbs[j->req.verb];
	const char *result = j->rc == 0 ? "ok" : proto_errname(j->rc);
	int i;

	for (i = 0; i < WORKER_RESULTS - 1 && v->result[i] != NULL; i++)
		if (strcmp(v->result[i], result) == 0)
			break;
	v->result[i] = v->result[i] ? v->result[i] : result;
	v->count[i]++;
	if (!j->started)
		return;
	v->ran++;
	v->ms_sum += j->ran_ms;
	for (i = 0; i < WORKER_BUCKETS; i++)
		if (j->ran_ms <= worker_bucket_ms[i])
			v->bucket[i]++;
	if (j->rc == 0 && j->rep.copied_bytes > 0 &&
	    (j->req.verb == VERB_PAUSE || j->req.verb == VERB_RESUME)) {
		struct transfer *t = j->req.verb == VERB_PAUSE ? &jobs.counters.last_staged_pause :
				     &jobs.counters.last_staged_resume;

		*t = (struct transfer){ 1, j->rep.copied_bytes, j->rep.ms, wall_now() };
	}
}

/* Called with the lock held. */
static void put_done(struct job *j)
{
	char byte = 1;

	j->next = NULL;
	if (jobs.done_tail != NULL)
		jobs.done_tail->next = j;
	else
		jobs.done = j;
	jobs.done_tail = j;
	/* A full pipe is already readable: the byte is not needed then. */
	if (write(jobs.notify[1], &byte, 1) < 0)
		return;
}

/* Take `j` out of the queue (lock held). */
static void unqueue(struct job *j)
{
	struct job **p, *prev = NULL;

	for (p = &jobs.queued; *p != NULL; prev = *p, p = &(*p)->next)
		if (*p == j) {
			*p = j->next;
			if (jobs.queued_tail == j)
				jobs.queued_tail = prev;
			return;
		}
}

/* A queued job comes back without having run (lock held). */
static void give_back_unstarted(struct job *j, int code, const char *why)
{
	unqueue(j);
	j->started = 0;
	j->rc = region_err_set(&j->err, code, "%s", why);
	count(j);
	put_done(j);
}

static void view_of(const struct job *j, struct job_view *v, long long now)
{
	memset(v, 0, sizeof(*v));
	v->valid = 1;
	v->verb = j->req.verb;
	tagset_format(&j->req.rq.tags, v->tags, sizeof(v->tags));
	snprintf(v->line, sizeof(v->line), "%s", j->line);
	v->started_at = j->started_at;
	v->ms = (double)((j->finished_ms ? j->finished_ms : now) - j->started_ms);
	v->cancelled = __atomic_load_n(&j->cancel, __ATOMIC_ACQUIRE);
	v->client_waiting = j->owner != NULL;
	v->in_process = j->in_process;
	v->rc = j->rc;
	if (j->rc < 0)
		snprintf(v->message, sizeof(v->message), "%s", j->err.msg);
}

/* A job starts running: on the worker (lock held) or on its caller's thread. */
static void job_start(struct job *j)
{
	j->started = 1;
	j->started_ms = worker_now_ms();
	j->started_at = wall_now();
	j->ran_ms = precise_ms();
}

/* A job that ran comes to its end: it becomes the last one and is counted
 * (lock held; j->ran_ms taken before). */
static void job_end_locked(struct job *j)
{
	j->finished_ms = worker_now_ms();
	view_of(j, &jobs.last, j->finished_ms);
	jobs.last_finished_ms = j->finished_ms;
	count(j);
}

static void *worker_main(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&jobs.lock);
	for (;;) {
		struct job *j;

		while (jobs.queued == NULL)
			pthread_cond_wait(&jobs.queued_cond, &jobs.lock);
		j = jobs.queued;
		unqueue(j);
		jobs.running = j;
		job_start(j);
		pthread_mutex_unlock(&jobs.lock);

		j->rc = jobs.run(j->req.verb, &j->req.rq, &j->rep, &j->err);
		j->ran_ms = precise_ms() - j->ran_ms;

		pthread_mutex_lock(&jobs.lock);
		jobs.running = NULL;
		job_end_locked(j);
		put_done(j);
	}
	return NULL;
}

int worker_start(worker_run_fn run)
{
	pthread_attr_t attr;
	pthread_t tid;
	int rc;

	if (jobs.started)
		return 0;
	if (pipe2(jobs.notify, O_CLOEXEC | O_NONBLOCK) < 0)
		return -errno;
	jobs.run = run;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	rc = pthread_create(&tid, &attr, worker_main, NULL);
	pthread_attr_destroy(&attr);
	if (rc != 0) {
		close(jobs.notify[0]);
		close(jobs.notify[1]);
		jobs.notify[0] = jobs.notify[1] = -1;
		return -rc;
	}
	jobs.started = 1;
	return 0;
}

int worker_notify_fd(void)
{
	return jobs.notify[0];
}

void worker_submit(struct job *j)
{
	j->next = NULL;
	j->started = 0;
	j->finished_ms = 0;
	j->ran_ms = 0;
	j->cancel = 0;
	j->queued_ms = worker_now_ms();
	j->req.rq.cancel = &j->cancel;
	j->req.rq.deadline_ms = j->req.timeout_ms > 0 ? j->queued_ms + j->req.timeout_ms : 0;
	pthread_mutex_lock(&jobs.lock);
	if (jobs.queued_tail != NULL)
		jobs.queued_tail->next = j;
	else
		jobs.queued = j;
	jobs.queued_tail = j;
	pthread_cond_signal(&jobs.queued_cond);
	pthread_mutex_unlock(&jobs.lock);
}

struct job *worker_take_done(void)
{
	char drain[64];
	struct job *list;

	/* Drain first: a job put in after this wakes the next poll. */
	while (read(jobs.notify[0], drain, sizeof(drain)) > 0)
		;
	pthread_mutex_lock(&jobs.lock);
	list = jobs.done;
	jobs.done = jobs.done_tail = NULL;
	pthread_mutex_unlock(&jobs.lock);
	return list;
}

void worker_abandon(const void *owner)
{
	struct job *j, *next;

	pthread_mutex_lock(&jobs.lock);
	for (j = jobs.queued; j != NULL; j = next) {
		next = j->next;
		if (j->owner == owner) {
			j->owner = NULL;
			give_back_unstarted(j, -ECANCELED, "not started: its client left");
		}
	}
	if (jobs.running != NULL && jobs.running->owner == owner) {
		jobs.running->owner = NULL;
		__atomic_store_n(&jobs.running->cancel, 1, __ATOMIC_RELEASE);
	}
	/* Finished but not yet taken: its reply must not reach whoever
	 * gets the owner's slot next. */
	for (j = jobs.done; j != NULL; j = j->next)
		if (j->owner == owner)
			j->owner = NULL;
	pthread_mutex_unlock(&jobs.lock);
}

long long worker_expire(long long now)
{
	struct job *j, *next;
	long long wake = 0;

	pthread_mutex_lock(&jobs.lock);
	for (j = jobs.queued; j != NULL; j = next) {
		long long dl = j->req.rq.deadline_ms;

		next = j->next;
		if (dl == 0)
			continue;
		if (now >= dl)
			give_back_unstarted(j, -ETIMEDOUT, "not started: its deadline passed "
					    "while another request ran; nothing changed");
		else if (wake == 0 || dl < wake)
			wake = dl;
	}
	j = jobs.running;
	if (j != NULL && j->req.rq.deadline_ms != 0 &&
	    !__atomic_load_n(&j->cancel, __ATOMIC_ACQUIRE)) {
		if (now >= j->req.rq.deadline_ms)
			__atomic_store_n(&j->cancel, 1, __ATOMIC_RELEASE);
		else if (wake == 0 || j->req.rq.deadline_ms < wake)
			wake = j->req.rq.deadline_ms;
	}
	pthread_mutex_unlock(&jobs.lock);
	return wake;
}

/* Several threads of the process may make requests at once: each is
 * listed until it ends, so status shows one still running (the oldest)
 * after another ends. */
struct job *worker_inproc_begin(const struct proto_req *req)
{
	struct job *j = calloc(1, sizeof(*j)), **p;

	if (j == NULL)
		return NULL;
	j->req = *req;
	if (proto_format(req, j->line, sizeof(j->line)) < 0)
		j->line[0] = '\0';
	j->in_process = 1;
	j->owner = j; /* its caller waits for it */
	job_start(j);
	pthread_mutex_lock(&jobs.lock);
	for (p = &jobs.inproc; *p != NULL; p = &(*p)->next)
		;
	*p = j;
	pthread_mutex_unlock(&jobs.lock);
	return j;
}

void worker_inproc_end(struct job *j, int rc, const struct region_report *rep,
		       const struct region_err *err)
{
	struct job **p;

	if (j == NULL)
		return;
	j->ran_ms = precise_ms() - j->ran_ms;
	pthread_mutex_lock(&jobs.lock);
	/* Under the lock: status may be reading this job meanwhile. */
	j->rc = rc;
	j->rep = *rep;
	j->err = *err;
	for (p = &jobs.inproc; *p != NULL; p = &(*p)->next)
		if (*p == j) {
			*p = j->next;
			break;
		}
	job_end_locked(j);
	pthread_mutex_unlock(&jobs.lock);
	free(j);
}

int worker_idle(void)
{
	int idle;

	pthread_mutex_lock(&jobs.lock);
	idle = jobs.running == NULL && jobs.queued == NULL;
	pthread_mutex_unlock(&jobs.lock);
	return idle;
}

void worker_view(struct worker_view *v)
{
	long long now = worker_now_ms();
	struct job *j;

	memset(v, 0, sizeof(*v));
	pthread_mutex_lock(&jobs.lock);
	if (jobs.running != NULL)
		view_of(jobs.running, &v->running, now);
	else if (jobs.inproc != NULL)
		view_of(jobs.inproc, &v->running, now);
	v->last = jobs.last;
	if (v->last.valid)
		v->last.ago_ms = (double)(now - jobs.last_finished_ms);
	for (j = jobs.queued; j != NULL; j = j->next)
		v->queued++;
	pthread_mutex_unlock(&jobs.lock);
}

void worker_counters(struct worker_counters *out)
{
	pthread_mutex_lock(&jobs.lock);
	*out = jobs.counters;
	pthread_mutex_unlock(&jobs.lock);
}

void worker_after_fork(void)
{
	/* The parent's threads do not exist here, and a list may have been
	 * mid-change when it forked: forget the jobs (a few bytes left behind)
	 * rather than walk them. */
	pthread_mutex_init(&jobs.lock, NULL);
	pthread_cond_init(&jobs.queued_cond, NULL);
	if (jobs.notify[0] >= 0) {
		close(jobs.notify[0]);
		close(jobs.notify[1]);
	}
	jobs.notify[0] = jobs.notify[1] = -1;
	jobs.queued = jobs.queued_tail = jobs.running = jobs.inproc = NULL;
	jobs.done = jobs.done_tail = NULL;
	memset(&jobs.last, 0, sizeof(jobs.last));
	memset(&jobs.counters, 0, sizeof(jobs.counters));
	jobs.started = 0;
}
