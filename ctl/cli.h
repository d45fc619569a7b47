/* SPDX-License-Identifier: Apache-2.0 */
/*
 * cli.h - what the memctl CLI's files share: the command as parsed from
 * argv (once, into the verb enum and a struct proto_req). The targets and
 * the fan-out are fanout.h's, shared with memctl serve.
 */
#ifndef MEMCTL_CLI_H
#define MEMCTL_CLI_H

#include "fanout.h"

struct cli {
	enum verb verb;             /* what the command line asks */
	struct proto_req req;       /* what goes on the wire */
	double timeout_s;           /* per process */
	int json;
	const char *group;          /* -g, or NULL */
	int pids[FANOUT_MAX_TARGETS]; /* -p, without repeats */
	int npids;
	char dir[FANOUT_DIR_MAX];   /* the socket directory */
};

/* cli.c: seconds as digits with an optional fraction ("2", "0.5"): no
 * sign, no exponent; 0.001 to 86400. 0, -EINVAL or -ERANGE. */
int cli_parse_seconds(const char *s, double *out);

/* cli_group.c: `memctl --group G pause` with the gate: every process is
 * gated and drained first, then all release; if any fails, every one is
 * put back. Prints the outcome; returns the exit status. */
int cli_group_pause(const struct cli *c, struct target *ts, int n);

/* cli_print.c */
void cli_print_header(const struct cli *c);
void cli_print_result(const struct cli *c, const struct fanout *f, const struct target *t);
void cli_print_summary(const struct cli *c, int n, int failed);

/* serve.c: memctl serve, argv[0] being "serve". Returns the exit status. */
int serve_main(int argc, char **argv);

#endif /* MEMCTL_CLI_H */
