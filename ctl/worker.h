/* SPDX-License-Identifier: Apache-2.0 */
/*
 * worker.h - the thread that runs change requests (pause, resume,
 * prepare, release_host) for the control server, one at a time, in the
 * order they came, so that the socket thread stays free to answer hello
 * and status and to notice clients that leave.
 *
 * Jobs go in with worker_submit and come back, finished or never started,
 * through worker_take_done; the notify descriptor is readable while any
 * are waiting there. Every function but worker_after_fork is called from
 * the socket thread.
 */
#ifndef MEMCTL_WORKER_H
#define MEMCTL_WORKER_H

#include "proto.h"

typedef int (*worker_run_fn)(enum verb verb, const struct region_req *rq,
			     struct region_report *rep, struct region_err *err);

struct job {
	struct job *next;
	struct proto_req req;   /* rq.deadline_ms and rq.cancel filled at submit */
	char line[PROTO_MAX_LINE]; /* the request as a line, for status and logs */
	int cancel;             /* set atomically: nobody waits, or the deadline passed */
	void *owner;            /* who waits for the reply; NULL: nobody */
	long long queued_ms, started_ms, finished_ms; /* CLOCK_MONOTONIC */
	double ran_ms;          /* how long it ran, to the microsecond */
	double started_at;      /* CLOCK_REALTIME, seconds: "since when" */
	int started;            /* 0: came back without running */
	int background;         /* MEMCTL_PREPARE's, not a client's */
	int in_process;         /* made by the process itself (the C API), run on its thread */
	int rc;
	struct region_report rep;
	struct region_err err;
};

/* What status and hello show of a job: the one running, or the last that
 * ran to its end (valid 0: none). */
struct job_view {
	int valid;
	enum verb verb;
	char tags[TAGSET_TEXT_MAX];
	char line[PROTO_MAX_LINE];
	double started_at;   /* unix seconds */
	double ms;           /* running so far, or how long it ran */
	double ago_ms;       /* finished this long ago (last only) */
	int cancelled;
	int client_waiting;  /* running: its client still waits; last: it got the reply */
	int in_process;      /* made by the process itself, not through the socket */
	int rc;
	char message[256];
};

struct worker_view {
	struct job_view running, last;
	int queued;
};

/* What the worker counts of the requests it ran or gave back, whoever
 * sent them (status and hello report it; memctl serve turns it into
 * metrics). Change verbs only. */
#define WORKER_BUCKETS 12
#define WORKER_RESULTS 20 /* distinct results per verb: "ok" and error names */

extern const double worker_bucket_ms[WORKER_BUCKETS]; /* upper bounds */

struct verb_counts {
	const char *result[WORKER_RESULTS]; /* "ok" or proto_errname(); NULL: free */
	uint64_t count[WORKER_RESULTS];     /* requests that ended so */
	uint64_t ran;                       /* of them, those that started */
	double ms_sum;                      /* how long those ran */
	uint64_t bucket[WORKER_BUCKETS];    /* those that ran <= worker_bucket_ms[i] */
};

/* The last staged transfer: a staged pause, or a resume that copied. */
struct transfer {
	int valid;
	uint64_t bytes;   /* copied */
	double ms;        /* the whole request */
	double at;        /* when it finished, unix seconds */
};

struct worker_counters {
	struct verb_counts verbs[VERB_COUNT];
	struct transfer last_staged_pause, last_staged_resume;
};

long long worker_now_ms(void);

/* Start the thread; `run` executes one request. 0 or a negative errno. */
int worker_start(worker_run_fn run);
/* Readable while finished jobs wait for worker_take_done. */
int worker_notify_fd(void);
/* Queue `j` (allocated by the caller, owned by the worker until it comes
 * back). Its deadline is now + its timeout_ms, when it has one. */
void worker_submit(struct job *j);
/* Every job that came back, linked through `next`, oldest first. */
struct job *worker_take_done(void);
/* Nobody waits for `owner`'s job any more: a queued one comes back
 * unstarted (-ECANCELED), a running one is told to stop at its next safe
 * point, a finished one is not delivered. Its owner becomes NULL. */
void worker_abandon(const void *owner);
/* Queued jobs past their deadline come back unstarted (-ETIMEDOUT); a
 * running one past it is told to stop. Returns the next deadline to wake
 * for (CLOCK_MONOTONIC ms), or 0 when none. */
long long worker_expire(long long now_ms);
/* Nothing running or queued. */
int worker_idle(void);
void worker_view(struct worker_view *v);
/* A copy of the counters, consistent with each other. */
void worker_counters(struct worker_counters *out);
/* A change request the process makes itself (the C API, so Python and
 * memctl.tms too), run on the caller's thread, not the worker's: status
 * shows it while it runs (when no socket request runs), and it counts in
 * `last` and the counters as the socket's requests do. begin returns NULL
 * when there is no memory to record it (it then runs unrecorded); end
 * frees what begin returned. Any thread. */
struct job *worker_inproc_begin(const struct proto_req *req);
void worker_inproc_end(struct job *j, int rc, const struct region_report *rep,
		       const struct region_err *err);
/* In a forked child: no worker thread exists there; forget every job. */
void worker_after_fork(void);

#endif /* MEMCTL_WORKER_H */
