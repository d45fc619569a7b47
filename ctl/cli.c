/* SPDX-License-Identifier: Apache-2.0 */
/*
 * cli.c - memctl, the command line: turns argv into a request once (the
 * verb table of proto.h), finds the processes that run libmemctl.so (their
 * sockets in the runtime directory, checked as the library checks it),
 * sends each one the request in parallel with a deadline per process, and
 * reports every result. Exit status: 0 all succeeded, 1 any failed or
 * timed out, 2 usage, 3 no target found. See docs/memctl.1.
 */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "memctl.h"

#define PID_MAX 4194304 /* the kernel's PID_MAX_LIMIT */

/* The options as given, before the command word is known. */
struct given {
	const char *tags, *stage, *group, *timeout;
	int release_host, no_gate;
	unsigned keys; /* KEY_BIT()s of the options given */
};

static void usage(FILE *f)
{
	int v, k;

	fprintf(f, "usage: memctl [targets] [options] <command>\n\ncommands:\n");
	for (v = 0; v < VERB_COUNT; v++) {
		char synopsis[160];
		size_t used;

		if (proto_verbs[v].cli == NULL)
			continue;
		used = (size_t)snprintf(synopsis, sizeof(synopsis), "%s", proto_verbs[v].cli);
		for (k = 0; k < KEY_COUNT; k++)
			if (proto_verbs[v].keys & KEY_BIT(k))
				used += (size_t)snprintf(synopsis + used, sizeof(synopsis) - used,
							 " %s", proto_keys[k].synopsis);
		if (used > 29)
			fprintf(f, "  %s\n  %-30s%s\n", synopsis, "", proto_verbs[v].help);
		else
			fprintf(f, "  %-30s%s\n", synopsis, proto_verbs[v].help);
	}
	fprintf(f,
"  serve [options]               HTTP endpoints for orchestrators and Prometheus\n"
"                                (memctl serve --help; docs/http.md)\n"
"  --tags all                    every tag (an empty list is an error)\n"
"  --no-gate                     pause: let the process's GPU work run on (its own\n"
"                                business to keep off the memory); by default it waits\n"
"                                until resume, and a --group pause is all-or-nothing\n"
"\n"
"targets (default: every live process of this user):\n"
"  -p, --pid PID                 one process (repeatable)\n"
"  -g, --group NAME              processes started with MEMCTL_GROUP=NAME\n"
"\n"
"options:\n"
"  -t, --timeout SECONDS         per process; default 10 for ls and status, 60 otherwise\n"
"  -j, --json                    one JSON object per process and line\n"
"  -h, --help, -V, --version\n"
"\n"
"exit status: 0 all succeeded, 1 any failed or timed out, 2 usage, 3 no target\n"
"sockets: $MEMCTL_RUNTIME_DIR, else $XDG_RUNTIME_DIR/memctl, else /tmp/memctl-UID\n");
}

/* One line on stderr; -1 (exit 2). */
static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int usage_error(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "memctl: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n");
	return -1;
}

static int digits_only(const char *s)
{
	return s[0] != '\0' && s[strspn(s, "0123456789")] == '\0';
}

/* A pid: decimal digits, 1..PID_MAX. */
static int parse_pid(const char *s, int *out)
{
	long v;

	if (!digits_only(s) || strlen(s) > 7)
		return -EINVAL;
	v = strtol(s, NULL, 10);
	if (v < 1 || v > PID_MAX)
		return -ERANGE;
	*out = (int)v;
	return 0;
}

/* Seconds as digits with an optional fraction ("2", "0.5"): no sign, no
 * exponent, no nan or inf; 0.001 to 86400. */
int cli_parse_seconds(const char *s, double *out)
{
	size_t ip = strspn(s, "0123456789"), fp = 0;
	double v;

	if (s[ip] == '.')
		fp = strspn(s + ip + 1, "0123456789") + 1;
	if (ip + fp == 0 || (ip == 0 && fp == 1) || s[ip + fp] != '\0' || ip > 9)
		return -EINVAL;
	v = strtod(s, NULL);
	if (v < 0.001 || v > (double)PROTO_MAX_TIMEOUT_MS / 1000)
		return -ERANGE;
	*out = v;
	return 0;
}

static int add_pid(struct cli *c, const char *arg)
{
	int pid, i;

	if (parse_pid(arg, &pid) < 0)
		return usage_error("-p takes a process id (1 to %d), not '%s'", PID_MAX, arg);
	for (i = 0; i < c->npids; i++)
		if (c->pids[i] == pid)
			return 0; /* named twice, asked once */
	if (c->npids == FANOUT_MAX_TARGETS)
		return usage_error("too many processes: at most %d -p options", FANOUT_MAX_TARGETS);
	c->pids[c->npids++] = pid;
	return 0;
}

/* Remember a value option; a second one is a mistake, not an override. */
static int once(const char **slot, const char *name, const char *arg)
{
	if (*slot != NULL)
		return usage_error("%s given twice ('%s' and '%s')", name, *slot, arg);
	*slot = arg;
	return 0;
}

/* One option: 0, 1 to exit 0 (help, version), -1 for a usage error. */
static int take_option(struct cli *c, struct given *g, int ch, const char *arg,
		       const char *word)
{
	switch (ch) {
	case 'p': return add_pid(c, arg);
	case 'g': return once(&g->group, "-g/--group", arg);
	case 't': return once(&g->timeout, "-t/--timeout", arg);
	case 'T': g->keys |= KEY_BIT(KEY_TAGS); return once(&g->tags, "--tags", arg);
	case 'S': g->keys |= KEY_BIT(KEY_STAGE); return once(&g->stage, "--stage", arg);
	case 'R': g->keys |= KEY_BIT(KEY_RELEASE_HOST); g->release_host = 1; return 0;
	case 'N': g->keys |= KEY_BIT(KEY_GATE); g->no_gate = 1; return 0;
	case 'j': c->json = 1; return 0;
	case 'h': usage(stdout); return 1;
	case 'V': printf("memctl %s (protocol %d)\n", MEMCTL_VERSION, PROTO_VERSION); return 1;
	case ':': return usage_error("option '%s' needs a value", word);
	default: return usage_error("unknown option '%s' (memctl --help lists them)", word);
	}
}

/* The command word into the verb enum, once. */
static int take_command(struct cli *c, const char *word)
{
	int v = proto_verb_by_cli(word);

	if (v >= 0) {
		c->verb = (enum verb)v;
		return 0;
	}
	if (strcmp(word, "serve") == 0)
		return usage_error("serve comes first and takes its own options: "
				   "memctl serve [--group NAME] ... (memctl serve --help)");
	if (digits_only(word) && c->npids > 0)
		return usage_error("'%s' is not a command: give each process its own -p "
				   "(-p %d -p %s)", word, c->pids[c->npids - 1], word);
	return usage_error("unknown command '%s' (memctl --help lists the commands)", word);
}

/* What was given, checked against what the command takes, into the
 * request. */
static int build_request(struct cli *c, const struct given *g)
{
	const struct verb_def *v = &proto_verbs[c->verb];
	struct region_err err;
	int k;

	for (k = 0; k < KEY_COUNT; k++)
		if ((g->keys & KEY_BIT(k)) && !(v->keys & KEY_BIT(k)))
			return usage_error("%s does not apply to %s", proto_keys[k].option, v->cli);
	if ((v->keys & KEY_BIT(KEY_TAGS)) && g->tags == NULL)
		return usage_error("%s needs --tags (--tags all for every tag)", v->cli);
	c->req.verb = v->sends;
	c->req.rq.tags.all = 1;
	if (g->tags != NULL && tagset_parse(g->tags, &c->req.rq.tags, &err) < 0)
		return usage_error("%s --tags: %s", v->cli, err.msg);
	if (g->stage != NULL && strcmp(g->stage, "cpu") != 0 && strcmp(g->stage, "none") != 0)
		return usage_error("--stage takes cpu or none, not '%s'", g->stage);
	if (g->stage != NULL && strcmp(g->stage, "cpu") == 0)
		c->req.rq.flags |= MEMCTL_STAGE_CPU;
	if (g->release_host)
		c->req.rq.flags |= MEMCTL_RELEASE_HOST;
	/* From outside, nobody can stop the application's GPU work but the
	 * gate: on unless asked otherwise. */
	if ((v->keys & KEY_BIT(KEY_GATE)) && !g->no_gate)
		c->req.rq.flags |= MEMCTL_GATE;
	c->group = g->group;
	c->timeout_s = v->changes ? 60 : 10; /* looking should not wait as long */
	if (g->timeout != NULL && cli_parse_seconds(g->timeout, &c->timeout_s) < 0)
		return usage_error("-t takes seconds, 0.001 to 86400 (like 2 or 0.5), not '%s'",
				   g->timeout);
	return 0;
}

/* 0 to go on, 1 to exit 0, -1 to exit 2. */
static int parse_args(int argc, char **argv, struct cli *c)
{
	static const struct option longopts[] = {
		{ "pid", required_argument, NULL, 'p' },
		{ "group", required_argument, NULL, 'g' },
		{ "tags", required_argument, NULL, 'T' },
		{ "stage", required_argument, NULL, 'S' },
		{ "release-host", no_argument, NULL, 'R' },
		{ "no-gate", no_argument, NULL, 'N' },
		{ "timeout", required_argument, NULL, 't' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	struct given g = { 0 };
	const char *command = NULL;
	int ch, rc;

	opterr = 0;
	while ((ch = getopt_long(argc, argv, "+:p:g:t:jhV", longopts, NULL)) != -1 ||
	       optind < argc) {
		if (ch == -1) { /* the command word; options may follow it */
			if (command != NULL)
				return usage_error("%s: unexpected argument '%s'", command,
						   argv[optind]);
			command = argv[optind++];
			if (take_command(c, command) < 0)
				return -1;
			continue;
		}
		rc = take_option(c, &g, ch, optarg, argv[optind - 1]);
		if (rc != 0)
			return rc;
	}
	if (command == NULL)
		return usage_error("no command (memctl --help lists the commands)");
	return build_request(c, &g);
}

/* ---- finding the targets and running --------------------------------- */

/* The socket directory, warned about and checked as the library does.
 * 0, or -1 (exit 1) when it is not ours alone. */
static int find_dir(struct cli *c)
{
	struct region_err err;
	char why[400];
	int rc = fanout_dir(c->dir, sizeof(c->dir), why, sizeof(why), &err);

	if (why[0] != '\0')
		fprintf(stderr, "memctl: %s\n", why);
	if (rc < 0) {
		fprintf(stderr, "memctl: %s; nothing sent\n", err.msg);
		return -1;
	}
	return 0;
}

static int no_target(const struct cli *c)
{
	if (c->json)
		printf("{\"ok\":false,\"error\":\"ENOENT\",\"message\":\"no target\"}\n");
	else
		fprintf(stderr, "memctl: no process to control%s%s (sockets in %s)\n",
			c->group ? " in group " : "", c->group ? c->group : "", c->dir);
	return 3;
}

static int run_all(const struct cli *c, struct target *ts, int n)
{
	struct fanout f = { c->dir, c->verb, c->req, c->timeout_s };
	int i, failed = 0;

	/* A group pause that gates is all-or-nothing: two phases. */
	if (c->group != NULL && c->verb == VERB_PAUSE && (c->req.rq.flags & MEMCTL_GATE))
		return cli_group_pause(c, ts, n);
	fanout_run(&f, ts, n);
	cli_print_header(c);
	for (i = 0; i < n; i++) {
		cli_print_result(c, &f, &ts[i]);
		failed += ts[i].err.code != 0;
	}
	fanout_release(ts, n);
	cli_print_summary(c, n, failed);
	return failed ? 1 : 0;
}

int main(int argc, char **argv)
{
	static struct target targets[FANOUT_MAX_TARGETS];
	static struct cli command;
	int rc, n;

	if (argc > 1 && strcmp(argv[1], "serve") == 0)
		return serve_main(argc - 1, argv + 1);
	rc = parse_args(argc, argv, &command);
	if (rc != 0)
		return rc < 0 ? 2 : 0;
	if (find_dir(&command) < 0)
		return 1;
	n = fanout_select(command.dir, command.group, command.pids, command.npids, targets,
			  FANOUT_MAX_TARGETS);
	if (n == 0)
		return no_target(&command);
	return run_all(&command, targets, n);
}
