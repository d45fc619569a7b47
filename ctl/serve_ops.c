/* SPDX-License-Identifier: Apache-2.0 */
/*
 * serve_ops.c - what each endpoint of memctl serve asks the processes.
 *
 * Every endpoint first asks every target for its status (the CLI's
 * fan-out, bounded per process). A change request goes out only when every
 * target answered and carries every tag it names: a process that cannot be
 * reached, or that lacks a tag, is reported and nothing is sent to any
 * process, so a group is never left half changed by a request that could
 * not have succeeded everywhere. Once sent, each process's result is
 * reported, and the HTTP status is 200 only if every process succeeded:
 * a failure is never swallowed (seed review). memctl serve does not undo
 * what the other processes did; the body says which did what.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "serve.h"
#include "sockdir.h"

/* A change as the processes receive it: one or two requests, the second
 * going to the processes the first succeeded on. */
struct step {
	enum verb verb;
	struct tagset tags;
	unsigned flags;
};

struct change {
	struct step step[2];
	int nsteps;
	struct tagset need;  /* tags every target must carry (all: at least one) */
};

/* ---- the processes ------------------------------------------------------- */

/* The targets with their status replies; NULL with `out` filled when
 * there are none to ask: no memory, or a socket directory that is not
 * ours alone (checked for every request, as the CLI checks it). */
static struct target *survey(const struct serve_config *cfg, int *n, struct serve_reply *out)
{
	struct fanout f = { cfg->dir, VERB_STATUS, { .verb = VERB_STATUS }, cfg->view_timeout_s };
	struct region_err err;
	struct target *ts;
	int rc = sockdir_check(cfg->dir, geteuid(), &err);

	*n = 0;
	if (rc < 0 && rc != -ENOENT) {
		serve_error(out, 500, "socket_dir_refused", "%s; nothing was done", err.msg);
		return NULL;
	}
	ts = calloc(FANOUT_MAX_TARGETS, sizeof(*ts));
	if (ts == NULL) {
		serve_error(out, 500, "internal", "out of memory; nothing was done");
		return NULL;
	}
	*n = fanout_select(cfg->dir, cfg->group, NULL, 0, ts, FANOUT_MAX_TARGETS);
	fanout_run(&f, ts, *n);
	/* A dead process's socket, its pid reused, is no target (as in the
	 * CLI): it neither fails a view nor holds back a change. */
	*n = fanout_drop_stale(cfg->dir, ts, *n);
	return ts;
}

static void end_survey(struct target *ts, int n)
{
	if (ts != NULL)
		fanout_release(ts, n);
	free(ts);
}

/* 504 when every failure was a timeout (a stopped or wedged process),
 * else 502. */
static int failure_status(const int *codes, int n)
{
	int i, timeouts = 0, failed = 0;

	for (i = 0; i < n; i++) {
		failed += codes[i] != 0;
		timeouts += codes[i] == -ETIMEDOUT;
	}
	return failed > 0 && timeouts == failed ? 504 : 502;
}

static const char *text_of(const json_t *obj, const char *key)
{
	const char *s = json_string_value(json_object_get(obj, key));

	return s ? s : "";
}

/* The error body naming every process that failed, with `processes`. */
static void failed_body(struct serve_reply *out, int status, json_t *processes,
			const char *what, int sent)
{
	char msg[600] = "";
	size_t i, used = 0, failed = 0, n = json_array_size(processes);
	json_t *p;

	json_array_foreach(processes, i, p) {
		if (json_is_true(json_object_get(p, "ok")))
			continue;
		if (failed++ < 4 && used < sizeof(msg))
			used += (size_t)snprintf(msg + used, sizeof(msg) - used, "%spid %lld: %s: %s",
				used ? "; " : "",
				(long long)json_integer_value(json_object_get(p, "pid")),
				text_of(p, "error"), text_of(p, "message"));
	}
	serve_error(out, status, sent ? "process_failed" : "target_unreachable",
		    "%zu of %zu processes failed%s: %s", failed, n, what, msg);
	json_object_set_new(out->body, "sent", json_boolean(sent));
	json_object_set_new(out->body, "processes", processes);
}

/* What each target's status fan-out gave, as `memctl status --json`
 * prints it; the failures' codes in codes[]. */
static json_t *survey_json(const struct serve_config *cfg, const struct target *ts, int n,
			   int *codes)
{
	struct fanout f = { cfg->dir, VERB_STATUS, { .verb = VERB_STATUS }, cfg->view_timeout_s };
	json_t *a = json_array();
	int i;

	for (i = 0; i < n; i++) {
		json_array_append_new(a, fanout_json(&f, &ts[i]));
		codes[i] = ts[i].err.code;
	}
	return a;
}

/* ---- tags ---------------------------------------------------------------- */

/* Tag names as given in a body or a query into `ts`; none at all is
 * refused (an empty list names nothing: leave it out for every tag). */
static int tags_of(const char *const *names, size_t n, struct tagset *ts, struct serve_reply *out)
{
	char list[TAGSET_TEXT_MAX + TAGSET_MAX];
	struct region_err err;
	size_t i, used = 0;

	if (n == 0) {
		serve_error(out, 400, "bad_tags", "an empty list of tags names nothing; leave tags "
			    "out (or null) for every tag");
		return -1;
	}
	if (n > TAGSET_MAX) {
		serve_error(out, 400, "bad_tags", "at most %d tags", TAGSET_MAX);
		return -1;
	}
	for (i = 0; i < n; i++) {
		if (!tag_valid(names[i])) {
			serve_error(out, 400, "bad_tags", "'%.64s' is not a tag name (1 to 63 of "
				    "A-Z a-z 0-9 _ . -)", names[i]);
			return -1;
		}
		used += (size_t)snprintf(list + used, sizeof(list) - used, "%s%s", i ? "," : "",
					 names[i]);
	}
	if (tagset_parse(list, ts, &err) < 0) {
		serve_error(out, 400, "bad_tags", "%s", err.msg);
		return -1;
	}
	return 0;
}

/* "tags" of a body: absent or null for every tag, else a list of names. */
static int body_tags(const json_t *body, struct tagset *ts, struct serve_reply *out)
{
	const json_t *v = body ? json_object_get(body, "tags") : NULL, *e;
	const char *names[TAGSET_MAX + 1];
	size_t i;

	memset(ts, 0, sizeof(*ts));
	if (v == NULL || json_is_null(v)) {
		ts->all = 1;
		return 0;
	}
	if (!json_is_array(v)) {
		serve_error(out, 400, "bad_tags", "tags must be a list of tag names (or left out "
			    "for every tag)");
		return -1;
	}
	json_array_foreach(v, i, e) {
		if (!json_is_string(e)) {
			serve_error(out, 400, "bad_tags", "tags must be a list of strings");
			return -1;
		}
		if (i <= TAGSET_MAX)
			names[i] = json_string_value(e);
	}
	return tags_of(names, json_array_size(v), ts, out);
}

/* The tags of `need` that a status reply does not list, as a JSON list. */
static json_t *missing(const json_t *status, const struct tagset *need)
{
	const json_t *rows = json_object_get(status, "tags"), *row;
	json_t *lack = json_array();
	int k;
	size_t i;

	if (need->all && json_array_size(rows) == 0)
		json_array_append_new(lack, json_string("any tag"));
	for (k = 0; !need->all && k < need->n; k++) {
		int found = 0;

		json_array_foreach(rows, i, row)
			found |= strcmp(text_of(row, "tag"), need->names[k]) == 0;
		if (!found)
			json_array_append_new(lack, json_string(need->names[k]));
	}
	return lack;
}

/* 0 when every target carries every tag `need` names; else -1 with a 400
 * that names, per process, what it lacks. */
static int check_tags(const struct target *ts, int n, const struct tagset *need,
		      struct serve_reply *out)
{
	json_t *lacking = json_array(), *first = NULL;
	int i, first_pid = 0;

	for (i = 0; i < n; i++) {
		json_t *lack = missing(ts[i].reply, need);

		if (json_array_size(lack) == 0) {
			json_decref(lack);
			continue;
		}
		if (first == NULL)
			first = lack, first_pid = ts[i].pid;
		json_array_append_new(lacking, json_pack("{s:i, s:s, s:O}", "pid", ts[i].pid,
							 "group", ts[i].group, "missing", lack));
		json_decref(lack);
	}
	if (first == NULL) {
		json_decref(lacking);
		return 0;
	}
	serve_error(out, 400, "unknown_tag", "pid %d carries no %s%s%s%s; nothing was done",
		    first_pid, need->all ? "tagged memory" : "tag '",
		    need->all ? "" : json_string_value(json_array_get(first, 0)),
		    need->all ? "" : "'", json_array_size(lacking) > 1 ?
		    " (nor do others: see processes)" : "");
	json_object_set_new(out->body, "processes", lacking);
	return -1;
}

/* ---- changes ------------------------------------------------------------- */

/* Send one step to every target that has not failed; append each
 * process's result to its steps. */
static void run_step(const struct serve_config *cfg, const struct step *s,
		     const struct target *ts, int n, json_t **steps, int *codes)
{
	struct target *live = calloc((size_t)n, sizeof(*live));
	struct fanout f = { cfg->dir, s->verb, { s->verb, { s->tags, s->flags, 0, NULL }, 0 },
			    cfg->timeout_s };
	int *which = calloc((size_t)n, sizeof(*which)), i, m = 0;

	for (i = 0; live != NULL && which != NULL && i < n; i++) {
		if (codes[i] != 0)
			continue;
		live[m].pid = ts[i].pid;
		memcpy(live[m].group, ts[i].group, sizeof(live[m].group));
		memcpy(live[m].command, ts[i].command, sizeof(live[m].command));
		which[m++] = i;
	}
	if (live == NULL || which == NULL)
		for (i = 0; i < n; i++)
			codes[i] = codes[i] ? codes[i] : -ENOMEM;
	fanout_run(&f, live, m);
	for (i = 0; i < m; i++) {
		json_array_append_new(steps[which[i]], fanout_json(&f, &live[i]));
		codes[which[i]] = live[i].err.code;
	}
	if (live != NULL)
		fanout_release(live, m);
	free(live);
	free(which);
}

/* A process's entry: its steps, and when it failed, the last step's
 * error beside them. */
static json_t *process_result(const struct target *t, json_t *steps, int code)
{
	json_t *last = json_array_get(steps, json_array_size(steps) - 1);
	json_t *p = json_pack("{s:i, s:s, s:b, s:o}", "pid", t->pid, "group", t->group,
			      "ok", code == 0, "steps", steps);

	if (p != NULL && code != 0 && last != NULL) {
		json_object_set(p, "error", json_object_get(last, "error"));
		json_object_set(p, "message", json_object_get(last, "message"));
	}
	return p;
}

static void change_body(const struct target *ts, int n, json_t **steps, const int *codes,
			struct serve_reply *out)
{
	json_t *procs = json_array();
	int i, failed = 0;

	for (i = 0; i < n; i++) {
		json_array_append_new(procs, process_result(&ts[i], steps[i], codes[i]));
		failed += codes[i] != 0;
	}
	if (failed == 0) {
		out->status = 200;
		out->body = json_pack("{s:b, s:i, s:o}", "ok", 1, "targets", n, "processes", procs);
	} else {
		failed_body(out, failure_status(codes, n), procs, "", 1);
	}
}

/* Every target answered and carries what the change needs: send it. */
static void send_change(const struct serve_config *cfg, const struct change *c,
			const struct target *ts, int n, int *codes, struct serve_reply *out)
{
	json_t **steps = calloc((size_t)n, sizeof(*steps));
	int i, s;

	if (steps == NULL) {
		serve_error(out, 500, "internal", "out of memory; nothing was done");
		return;
	}
	for (i = 0; i < n; i++)
		steps[i] = json_array();
	for (s = 0; s < c->nsteps; s++)
		run_step(cfg, &c->step[s], ts, n, steps, codes);
	change_body(ts, n, steps, codes, out);
	free(steps);
}

static void run_change(const struct serve_config *cfg, const struct change *c,
		       struct serve_reply *out)
{
	int n, i, *codes;
	struct target *ts = survey(cfg, &n, out);
	json_t *looked;

	if (ts == NULL)
		return;
	codes = calloc((size_t)n + 1, sizeof(*codes));
	if (codes == NULL) {
		serve_error(out, 500, "internal", "out of memory; nothing was done");
	} else if (n == 0) {
		serve_error(out, 503, "no_target", "no process to control%s%s (sockets in %s); "
			    "nothing was done", cfg->group ? " in group " : "",
			    cfg->group ? cfg->group : "", cfg->dir);
	} else {
		looked = survey_json(cfg, ts, n, codes);
		for (i = 0; i < n && codes[i] == 0; i++)
			;
		if (i < n) {
			failed_body(out, failure_status(codes, n), looked,
				    " to answer status; nothing was sent to any process", 0);
		} else {
			json_decref(looked);
			if (check_tags(ts, n, &c->need, out) == 0)
				send_change(cfg, c, ts, n, codes, out);
		}
	}
	end_survey(ts, n);
	free(codes);
}

static struct change one_step(enum verb verb, const struct tagset *tags, unsigned flags)
{
	struct change c = { .nsteps = 1 };

	c.step[0] = (struct step){ verb, *tags, flags };
	c.need = *tags;
	return c;
}

/* The work a process already submitted drains first either way (at most
 * the request's timeout; past it nothing is released). With --gate, as the
 * CLI's pauses, its GPU calls then wait until every tag is resumed: not the
 * default here, because the flows these endpoints serve resume the weights
 * alone and update them before resuming the KV cache (docs/http.md). */
static unsigned pause_gate(const struct serve_config *cfg)
{
	return cfg->gate ? MEMCTL_GATE : 0;
}

void serve_release(const struct serve_config *cfg, const json_t *body,
		   const struct serve_query *q, struct serve_reply *out)
{
	const json_t *stage = body ? json_object_get(body, "stage_to_cpu") : NULL;
	struct change c;
	struct tagset tags;

	(void)q;
	if (stage != NULL && !json_is_boolean(stage)) {
		serve_error(out, 400, "bad_request", "stage_to_cpu must be true or false");
		return;
	}
	if (body_tags(body, &tags, out) < 0)
		return;
	c = one_step(VERB_PAUSE, &tags,
		     (json_is_true(stage) ? MEMCTL_STAGE_CPU : 0) | pause_gate(cfg));
	run_change(cfg, &c, out);
}

void serve_resume(const struct serve_config *cfg, const json_t *body,
		  const struct serve_query *q, struct serve_reply *out)
{
	struct change c;
	struct tagset tags;

	(void)q;
	if (body_tags(body, &tags, out) < 0)
		return;
	c = one_step(VERB_RESUME, &tags, 0);
	run_change(cfg, &c, out);
}

/* Level N stages cfg->level_stage[N] and releases every other tag: a
 * staged pause of those tags, then an unstaged pause of every tag (which
 * leaves what the first step staged as it is). */
void serve_sleep(const struct serve_config *cfg, const json_t *body,
		 const struct serve_query *q, struct serve_reply *out)
{
	const char *level = q->level ? q->level : "1";
	struct tagset all = { .all = 1 };
	const struct tagset *stage;
	struct change c;

	(void)body;
	if (strcmp(level, "1") != 0 && strcmp(level, "2") != 0) {
		serve_error(out, 400, "bad_level", "level must be 1 or 2, not '%.20s'", level);
		return;
	}
	stage = &cfg->level_stage[level[0] - '0'];
	if (!stage->all && stage->n == 0) {
		c = one_step(VERB_PAUSE, &all, pause_gate(cfg));
	} else {
		c = one_step(VERB_PAUSE, stage, MEMCTL_STAGE_CPU | pause_gate(cfg));
		c.step[c.nsteps++] = (struct step){ VERB_PAUSE, all, pause_gate(cfg) };
	}
	run_change(cfg, &c, out);
}

void serve_wake_up(const struct serve_config *cfg, const json_t *body,
		   const struct serve_query *q, struct serve_reply *out)
{
	struct tagset tags = { .all = 1 };
	struct change c;

	(void)body;
	if (q->ntags > 0 && tags_of(q->tags, (size_t)q->ntags, &tags, out) < 0)
		return;
	c = one_step(VERB_RESUME, &tags, 0);
	run_change(cfg, &c, out);
}

/* ---- views --------------------------------------------------------------- */

void serve_status(const struct serve_config *cfg, const json_t *body,
		  const struct serve_query *q, struct serve_reply *out)
{
	int n, i, *codes = NULL, failed = 0;
	struct target *ts = survey(cfg, &n, out);
	json_t *procs;

	(void)body;
	(void)q;
	if (ts == NULL)
		return;
	if ((codes = calloc((size_t)n + 1, sizeof(*codes))) == NULL) {
		serve_error(out, 500, "internal", "out of memory");
	} else {
		procs = survey_json(cfg, ts, n, codes);
		for (i = 0; i < n; i++)
			failed += codes[i] != 0;
		if (failed) {
			failed_body(out, failure_status(codes, n), procs, "", 0);
		} else {
			out->status = 200;
			out->body = json_pack("{s:b, s:i, s:o}", "ok", 1, "targets", n,
					      "processes", procs);
		}
	}
	end_survey(ts, n);
	free(codes);
}

/* vLLM's is_sleeping: true while any memory of any target is paused. */
void serve_is_sleeping(const struct serve_config *cfg, const json_t *body,
		       const struct serve_query *q, struct serve_reply *out)
{
	int n, i, *codes = NULL, sleeping = 0;
	struct target *ts = survey(cfg, &n, out);

	(void)body;
	(void)q;
	if (ts == NULL)
		return;
	if ((codes = calloc((size_t)n + 1, sizeof(*codes))) == NULL) {
		serve_error(out, 500, "internal", "out of memory");
	} else if (n == 0) {
		serve_error(out, 503, "no_target", "no process to control%s%s (sockets in %s)",
			    cfg->group ? " in group " : "", cfg->group ? cfg->group : "", cfg->dir);
	} else {
		for (i = 0; i < n && ts[i].err.code == 0; i++)
			sleeping |= json_integer_value(json_object_get(ts[i].reply,
								       "paused_bytes")) > 0;
		if (i < n) {
			json_t *procs = survey_json(cfg, ts, n, codes);

			failed_body(out, failure_status(codes, n), procs, "", 0);
		} else {
			out->status = 200;
			out->body = json_pack("{s:b}", "is_sleeping", sleeping);
		}
	}
	end_survey(ts, n);
	free(codes);
}

/* Always 200 while memctl serve works: a process that does not answer
 * shows as memctl_up 0, so that one stopped process does not blind the
 * whole scrape. */
void serve_metrics(const struct serve_config *cfg, const json_t *body,
		   const struct serve_query *q, struct serve_reply *out)
{
	int n;
	struct target *ts = survey(cfg, &n, out);

	(void)body;
	(void)q;
	if (ts == NULL)
		return;
	out->text = metrics_render(ts, n);
	if (out->text == NULL) {
		serve_error(out, 500, "internal", "out of memory");
	} else {
		out->status = 200;
		out->content_type = "text/plain; version=0.0.4; charset=utf-8";
	}
	end_survey(ts, n);
}
