/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fanout.h - one request to many memctl processes: what the memctl CLI and
 * memctl serve share.
 *
 * Targets are found in the socket directory (checked as the library checks
 * it), by pid or by group; the request goes to each of them on a thread of
 * its own with a deadline per process, so a stopped or wedged process costs
 * its deadline and nothing more; every target ends with a checked reply or
 * an error of its own. Nothing here prints: the CLI and the HTTP server
 * each report the results their way (fanout_json is the JSON both use).
 */
#ifndef MEMCTL_FANOUT_H
#define MEMCTL_FANOUT_H

#include <jansson.h>
#include <pthread.h>

#include "proto.h"

#define FANOUT_MAX_TARGETS 1024
#define FANOUT_DIR_MAX 256

/* The request, as every target receives it. */
struct fanout {
	const char *dir;       /* the socket directory */
	enum verb verb;        /* what is asked: decides what a reply must hold */
	struct proto_req req;  /* what goes on the wire (timeout_ms is set per target) */
	double timeout_s;      /* per process */
};

/* One process and its outcome. */
struct target {
	int pid;
	char group[TAG_MAX];
	char command[256];
	json_t *reply;          /* the parsed reply, or NULL */
	struct region_err err;  /* code 0 while nothing failed */
	int sent;               /* the whole request reached the process */
	int outcome_unknown;    /* it may still run: we gave up after sending */
	const struct fanout *f; /* set by fanout_run */
	pthread_t tid;
	int talking;            /* tid is a thread to join */
};

/* The socket directory, as the library derives it, into dir. `why` gets a
 * warning to show (a relative MEMCTL_RUNTIME_DIR was ignored) or "".
 * Returns 0 when it may be trusted or does not exist yet; -EACCES (or
 * another -errno) with a reason in err when it is not ours alone: then
 * nothing may be sent. */
int fanout_dir(char *dir, size_t len, char *why, size_t whylen, struct region_err *err);

/* The targets, sorted by pid: the `npids` processes of `pids` when npids >
 * 0 (each reported, with an error when it has no socket), else every live
 * process with a socket in `dir` (stale sockets are removed); of those,
 * only group `group` when it is not NULL. Fills at most `max` of `ts`;
 * returns how many. */
int fanout_select(const char *dir, const char *group, const int *pids, int npids,
		  struct target *ts, int max);

/* Send f's request to every target without an error yet, in parallel, and
 * wait for all of them: each ends within f->timeout_s (plus thread start).
 * Afterwards t->reply holds an ok reply whose fields are all there with
 * their types, or t->err says what failed (and t->reply may hold the
 * process's own error reply). */
void fanout_run(const struct fanout *f, struct target *ts, int n);

/* fanout_talk.c: the thread fanout_run starts for one target. */
void *fanout_talk(void *target);

/* Drop the replies of ts[0..n). */
void fanout_release(struct target *ts, int n);

/* What `memctl --json` prints for a target after fanout_run: the process's
 * reply (for ls: wrapped with pid and command), its own error reply, or an
 * error object the client made ({ok, pid, group, error, code, message,
 * [outcome: "unknown"]}). A new reference, or NULL without memory. */
json_t *fanout_json(const struct fanout *f, const struct target *t);

#endif /* MEMCTL_FANOUT_H */
