/* SPDX-License-Identifier: Apache-2.0 */
/*
 * cli_group.c - `memctl --group G pause` with the gate, all-or-nothing.
 *
 * The ranks of a tensor-parallel server work in lockstep: a rank paused
 * while its peer is not leaves the peer waiting in a collective, and a
 * rank caught inside a collective cannot be drained until its peers join
 * it. So the pause runs in two phases:
 *   1. `gate` on every process in parallel: close the gate (a lease, so
 *      that it opens by itself if this CLI dies), wait for submitted GPU
 *      work within --timeout, pin host buffers for --stage cpu. Nothing is
 *      released. A rank stuck in a collective fails here, cleanly.
 *   2. only when every process passed: `pause` on every one (gated; it
 *      takes the lease over and finds nothing left to wait for).
 * If any process fails, every one is put back: those that released memory
 * are resumed (staged contents come back exactly), every gate is opened
 * (ungate), and the CLI exits 1 naming the process and the reason.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

/* An ungate is answered at once by the process's socket thread; one that
 * is slower is stopped or wedged, and its lease opens its gate anyway. */
#define UNGATE_TIMEOUT_S 0.5

/* Fresh copies of the targets for one phase (who, not what happened). */
static struct target *phase_targets(const struct target *ts, int n)
{
	struct target *p = calloc((size_t)(n ? n : 1), sizeof(*p));
	int i;

	for (i = 0; p != NULL && i < n; i++) {
		p[i].pid = ts[i].pid;
		memcpy(p[i].group, ts[i].group, sizeof(p[i].group));
		memcpy(p[i].command, ts[i].command, sizeof(p[i].command));
	}
	return p;
}

/* The first process that failed, or -1. */
static int first_failure(const struct target *ts, int n)
{
	int i;

	for (i = 0; i < n; i++)
		if (ts[i].err.code != 0)
			return i;
	return -1;
}

/* `verb` (ungate, resume) to the processes that `want` selects. */
static void undo(const struct cli *c, enum verb verb, double timeout_s, struct target *ts,
		 const int *want, int n)
{
	struct fanout u = { c->dir, verb, c->req, timeout_s };
	int i;

	u.req.verb = verb;
	u.req.rq.flags = 0;
	for (i = 0; i < n; i++)
		if (!want[i])
			region_err_set(&ts[i].err, -ECANCELED, "not needed");
	fanout_run(&u, ts, n);
	fanout_release(ts, n);
}

static void print_put_back(const struct cli *c, const struct target *t, const char *how,
			   const char *why)
{
	const char *group = t->group[0] ? t->group : "-";

	if (c->json) {
		json_t *o = json_pack("{s:b, s:s, s:i, s:s, s:s, s:i, s:s, s:b}", "ok", 0,
				      "verb", "pause", "pid", t->pid, "group", t->group,
				      "error", "ECANCELED", "code", -ECANCELED, "message", why,
				      "rolled_back", 1);
		char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;

		printf("%s\n", s ? s : "{\"ok\":false,\"error\":\"ENOMEM\"}");
		free(s);
		json_decref(o);
	} else {
		printf("%-8d %-12s put back: %s\n", t->pid, group, how);
	}
}

/*
 * Report a failed group pause: each process's own failure as it came,
 * the others as put back (or not, when the undo failed there).
 * `failed` holds the phase's results, `resumed`/`ungated` the undo's (NULL
 * when not sent).
 */
static int report(const struct cli *c, const struct fanout *f, const struct target *failed,
		  const struct target *resumed, const struct target *ungated, int n, int first)
{
	char why[600], tags[TAGSET_TEXT_MAX];
	int i, stuck = 0;

	tagset_format(&c->req.rq.tags, tags, sizeof(tags));
	snprintf(why, sizeof(why), "group '%s' pause failed at pid %d (%s: %s)", c->group,
		 failed[first].pid, proto_errname(failed[first].err.code), failed[first].err.msg);
	for (i = 0; i < n; i++) {
		const struct target *bad = resumed && resumed[i].err.code != 0 &&
					   resumed[i].err.code != -ECANCELED ? &resumed[i] :
					   ungated && ungated[i].err.code != 0 &&
					   ungated[i].err.code != -ECANCELED ? &ungated[i] : NULL;

		if (failed[i].err.code != 0) {
			/* A process that did not answer in time gets an ungate
			 * too; if it cannot take it, its lease opens the gate. */
			cli_print_result(c, f, &failed[i]);
		} else if (bad != NULL) {
			stuck++;
			printf("%-8d %-12s NOT put back: %s: %s\n", bad->pid,
			       bad->group[0] ? bad->group : "-", proto_errname(bad->err.code),
			       bad->err.msg);
		} else {
			print_put_back(c, &failed[i], resumed ? "resumed, gate open" :
				       "gate open, nothing released", why);
		}
	}
	if (c->json)
		return 1;
	if (stuck && resumed)
		fprintf(stderr, "memctl: %s; some processes could not be put back (above): "
			"memctl --group %s resume --tags %s finishes it\n", why, c->group, tags);
	else if (stuck)
		fprintf(stderr, "memctl: %s; some gates could not be opened (above): they open "
			"by themselves when the first phase's lease runs out\n", why);
	else if (resumed)
		fprintf(stderr, "memctl: %s; every process was put back (memory resumed, gates "
			"open)\n", why);
	else
		fprintf(stderr, "memctl: %s; every process was put back (gates open, nothing "
			"released); retry when the ranks are idle\n", why);
	return 1;
}

/* Phase 1 failed: open the gates of those that passed it. */
static int undo_phase1(const struct cli *c, const struct fanout *f, struct target *p1, int n,
		       int first)
{
	struct target *u = phase_targets(p1, n);
	int *want = calloc((size_t)(n ? n : 1), sizeof(*want)), i, rc;

	/* And those that may have closed it after we stopped waiting. */
	for (i = 0; u != NULL && want != NULL && i < n; i++)
		want[i] = p1[i].err.code == 0 || p1[i].outcome_unknown;
	if (u != NULL && want != NULL)
		undo(c, VERB_UNGATE, UNGATE_TIMEOUT_S, u, want, n);
	rc = report(c, f, p1, NULL, u, n, first);
	free(want);
	free(u);
	return rc;
}

/* Phase 2 failed: resume where a pause was sent, then open every gate. */
static int undo_phase2(const struct cli *c, const struct fanout *f, struct target *p2, int n,
		       int first)
{
	struct target *r = phase_targets(p2, n), *u = phase_targets(p2, n);
	int *sent = calloc((size_t)(n ? n : 1), sizeof(*sent)), i, rc;
	int *all = calloc((size_t)(n ? n : 1), sizeof(*all));

	for (i = 0; sent != NULL && all != NULL && i < n; i++) {
		sent[i] = p2[i].sent;
		all[i] = 1;
	}
	if (r != NULL && u != NULL && sent != NULL && all != NULL) {
		undo(c, VERB_RESUME, c->timeout_s, r, sent, n);
		undo(c, VERB_UNGATE, UNGATE_TIMEOUT_S, u, all, n);
	}
	rc = report(c, f, p2, r, u, n, first);
	free(sent);
	free(all);
	free(r);
	free(u);
	return rc;
}

int cli_group_pause(const struct cli *c, struct target *ts, int n)
{
	struct fanout gate = { c->dir, VERB_GATE, c->req, c->timeout_s };
	struct fanout pause = { c->dir, c->verb, c->req, c->timeout_s };
	struct target *p1 = phase_targets(ts, n);
	int first, i, rc;

	if (p1 == NULL) {
		fprintf(stderr, "memctl: out of memory\n");
		return 1;
	}
	for (i = 0; i < n; i++)
		p1[i].err = ts[i].err; /* -p of a process without memctl */
	gate.req.verb = VERB_GATE;
	gate.req.rq.flags = c->req.rq.flags & MEMCTL_STAGE_CPU;
	fanout_run(&gate, p1, n);
	first = first_failure(p1, n);
	if (first >= 0) {
		rc = undo_phase1(c, &gate, p1, n, first);
		fanout_release(p1, n);
		free(p1);
		return rc;
	}
	fanout_release(p1, n);
	free(p1);
	fanout_run(&pause, ts, n);
	first = first_failure(ts, n);
	if (first >= 0) {
		rc = undo_phase2(c, &pause, ts, n, first);
		fanout_release(ts, n);
		return rc;
	}
	cli_print_header(c);
	for (i = 0; i < n; i++)
		cli_print_result(c, &pause, &ts[i]);
	fanout_release(ts, n);
	cli_print_summary(c, n, 0);
	return 0;
}
