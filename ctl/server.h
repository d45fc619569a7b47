/* SPDX-License-Identifier: Apache-2.0 */
/*
 * server.h - the control server inside the process: a socket thread that
 * answers the protocol of docs/protocol.md and a worker that runs change
 * requests one at a time.
 *
 * The server knows nothing of how the process is put together: what it
 * needs (running a request, the registry's figures, device memory) comes
 * in through struct ctl_backend, handed over by preload/ at start. ctl/
 * depends on region/'s types only.
 */
#ifndef MEMCTL_SERVER_H
#define MEMCTL_SERVER_H

#include <stdint.h>

#include "proto.h"

/* A device that owns tagged memory, for status. */
struct ctl_device {
	int id;
	uint64_t free_bytes, total_bytes;
};

enum ctl_log { CTL_WARN, CTL_INFO, CTL_DEBUG };

/* The gate in front of the process's GPU work, for status and hello. */
struct ctl_gate {
	int closed;             /* GPU work waits now */
	int waiting;            /* threads waiting at it now */
	int draining;           /* gated requests draining now */
	char held[TAGSET_TEXT_MAX]; /* tags paused with gating; "" none */
	long long lease_ms;     /* a group pause's first phase: ms left; 0 none */
	uint64_t waits;         /* submissions that waited, since the start */
	int stuck_drains;       /* drains given up on, still waiting for work */
};

struct ctl_backend {
	/* Run one change request (a verb with figures) as the C API does.
	 * Called on the worker thread only; may take long; honours
	 * rq->deadline_ms and *rq->cancel at its safe points. */
	int (*request)(enum verb verb, const struct region_req *rq,
		       struct region_report *rep, struct region_err *err);
	/* Every tag's figures (region_tag_stats: *rows malloc'ed). */
	int (*tag_stats)(struct region_tag_stat **rows, size_t *n);
	/* Live tagged allocations; never blocks. */
	uint64_t (*allocations)(void);
	/* Up to `max` devices owning tagged memory; returns how many. */
	int (*devices)(struct ctl_device *out, int max);
	/* Devices the driver sees; 0 when it is not loaded. */
	int (*driver_devices)(void);
	/* Device bytes the process allocated untagged through the calls
	 * memctl interposes, live now, per kind (region_untagged_totals);
	 * never blocks. */
	void (*untagged)(uint64_t bytes[UNTAGGED_KINDS]);
	/* The gate's state; never blocks. */
	void (*gate)(struct ctl_gate *out);
	/* End the lease of a group pause's first phase (ungate): its gate
	 * opens unless paused memory still holds it. Never blocks. */
	void (*ungate)(void);
	/* One line for the process's log (the level filters it). */
	void (*log)(enum ctl_log level, const char *line);
};

struct ctl_config {
	const char *runtime_dir;     /* absolute path of the socket directory */
	const char *group;           /* MEMCTL_GROUP, "" for none */
	int serve;                   /* 0: MEMCTL_SOCKET=0, start nothing */
	const struct tagset *prepare; /* MEMCTL_PREPARE, or NULL */
};

/* Start the control server once per process (no-op when cfg->serve is 0
 * or it runs already). `cfg`, what it points to, and `be` must live as
 * long as the process. Never fails the caller: problems are logged. */
void ctl_server_start(const struct ctl_config *cfg, const struct ctl_backend *be);

/* In a forked child: close the parent's sockets without unlinking them and
 * forget the server and its jobs, so the child may start its own. */
void ctl_server_after_fork(void);
/* A change request the process makes itself (the C API), run on the
 * caller's thread: begin before it runs, end after with its outcome, so
 * that status shows it running and the counters count it. begin may
 * return NULL (no memory to record it); end takes that too. */
void *ctl_inproc_begin(enum verb verb, const struct region_req *rq);
void ctl_inproc_end(void *token, int rc, const struct region_report *rep,
		    const struct region_err *err);

#endif /* MEMCTL_SERVER_H */
