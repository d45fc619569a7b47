/* SPDX-License-Identifier: Apache-2.0 */
/*
 * serve.h - memctl serve: the HTTP endpoints of docs/http.md for one
 * machine, in front of the processes' control sockets.
 *
 * serve.c reads the options and runs the server; serve_http.c is the HTTP
 * side (libmicrohttpd: authentication, routing, bodies, one JSON reply per
 * request); serve_ops.c turns each endpoint into requests fanned out to the
 * processes (fanout.h); metrics.c writes the Prometheus text. Every
 * endpoint runs on the connection's own thread; change requests run one at
 * a time.
 */
#ifndef MEMCTL_SERVE_H
#define MEMCTL_SERVE_H

#include <jansson.h>

#include "fanout.h"

#define SERVE_MAX_BODY (16u << 10)  /* request bodies; tags fit in 1.1 KiB */
#define SERVE_MAX_TOKEN 4096
#define SERVE_VIEW_TIMEOUT_S 10.0   /* status, metrics, is_sleeping: at most */

struct serve_config {
	const char *group;        /* --group, or NULL: every process of the user */
	double timeout_s;         /* change requests, per process */
	double view_timeout_s;    /* status and the check before a change */
	const char *token;        /* required bearer token, or NULL */
	int gate;                 /* --gate: pauses hold GPU calls made while paused */
	/* /sleep?level=N stages level_stage[N] to host memory and releases
	 * every other tag; an empty set (n == 0, all == 0) stages nothing. */
	struct tagset level_stage[3];
	char dir[FANOUT_DIR_MAX]; /* the socket directory */
};

/* What an endpoint answers: an HTTP status and a JSON body, or text. */
struct serve_reply {
	int status;
	json_t *body;          /* owned; NULL when text is set */
	char *text;            /* owned (malloc), for /metrics */
	const char *content_type;
};

/* The query parameters an endpoint takes, as given (URL-decoded). */
struct serve_query {
	const char *level;
	const char *tags[TAGSET_MAX + 1];
	int ntags;             /* may exceed TAGSET_MAX by one: too many */
};

/* serve_ops.c: the endpoints. `body` is the request's JSON object (NULL
 * without one), its keys already checked against what the endpoint takes.
 * Each fills `out` (status 200 on success, 4xx when the request was
 * refused and nothing was sent to any process, 5xx with every process's
 * result when a process failed). */
typedef void (*serve_op)(const struct serve_config *cfg, const json_t *body,
			 const struct serve_query *q, struct serve_reply *out);

void serve_release(const struct serve_config *cfg, const json_t *body,
		   const struct serve_query *q, struct serve_reply *out);
void serve_resume(const struct serve_config *cfg, const json_t *body,
		  const struct serve_query *q, struct serve_reply *out);
void serve_sleep(const struct serve_config *cfg, const json_t *body,
		 const struct serve_query *q, struct serve_reply *out);
void serve_wake_up(const struct serve_config *cfg, const json_t *body,
		   const struct serve_query *q, struct serve_reply *out);
void serve_is_sleeping(const struct serve_config *cfg, const json_t *body,
		       const struct serve_query *q, struct serve_reply *out);
void serve_status(const struct serve_config *cfg, const json_t *body,
		  const struct serve_query *q, struct serve_reply *out);
void serve_metrics(const struct serve_config *cfg, const json_t *body,
		   const struct serve_query *q, struct serve_reply *out);

/* A refusal: {"ok": false, "error": name, "message": ...}. */
void serve_error(struct serve_reply *out, int status, const char *name, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* serve_http.c: serve on the listening socket `fd` until SIGINT or
 * SIGTERM. Returns the exit status. */
int serve_http_run(const struct serve_config *cfg, int fd);

/* metrics.c */
/* Count one HTTP request that memctl serve answered. Thread-safe;
 * `endpoint` is a string that lives as long as the process. */
void metrics_count_http(const char *endpoint, int status, double seconds);
/* The Prometheus text for the targets of a status fan-out (each with
 * its status reply, or an error) and memctl serve's own counters;
 * malloc'ed, or NULL without memory. */
char *metrics_render(const struct target *ts, int n);

#endif /* MEMCTL_SERVE_H */
