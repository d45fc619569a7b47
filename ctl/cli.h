/* SPDX-License-Identifier: Apache-2.0 */
/*
 * cli.h - what the memctl CLI's files share: the command as parsed from
 * argv (once, into the verb enum and a struct proto_req), and one target
 * process with its outcome.
 */
#ifndef MEMCTL_CLI_H
#define MEMCTL_CLI_H

#include <jansson.h>
#include <pthread.h>

#include "proto.h"

#define MAX_TARGETS 1024

struct cli {
	enum verb verb;             /* what the command line asks */
	struct proto_req req;       /* what goes on the wire */
	double timeout_s;           /* per process */
	int json;
	const char *group;          /* -g, or NULL */
	int pids[MAX_TARGETS];      /* -p, without repeats */
	int npids;
	char dir[256];              /* the socket directory */
};

struct target {
	int pid;
	char group[TAG_MAX];
	char command[256];
	json_t *reply;          /* the parsed reply, or NULL */
	struct region_err err;  /* code 0 while nothing failed */
	int sent;               /* the whole request reached the process */
	int outcome_unknown;    /* it may still run: we gave up after sending */
	pthread_t tid;
	int talking;            /* tid is a thread to join */
};

/* cli_talk.c: one request and its reply within the deadline (a thread
 * per target, after cli_talk_init); afterwards t->reply holds an ok reply
 * whose fields are all there with their types, or t->err says what
 * failed. cli_talk_all does it for every target without an error yet, in
 * parallel, and returns when all are done. */
void cli_talk_init(const struct cli *c);
void *cli_talk(void *target);
void cli_talk_all(const struct cli *c, struct target *ts, int n);

/* cli_group.c: `memctl --group G pause` with the gate: every process is
 * gated and drained first, then all release; if any fails, every one is
 * put back. Prints the outcome; returns the exit status. */
int cli_group_pause(const struct cli *c, struct target *ts, int n);

/* cli_print.c */
void cli_print_header(const struct cli *c);
void cli_print_result(const struct cli *c, const struct target *t);
void cli_print_summary(const struct cli *c, int n, int failed);

#endif /* MEMCTL_CLI_H */
