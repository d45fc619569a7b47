/* SPDX-License-Identifier: Apache-2.0 */
/*
 * cli_print.c - what the CLI prints for each target: one line per process
 * (status adds one per tag and per request in flight), or with --json one
 * object per process and line.
 *
 * Replies reach here checked (fanout_talk.c): every field read below exists
 * with its type. Names are the wire's: copied = bytes a request copied,
 * staged = host memory holding staged contents, host = all host memory
 * held, staged or kept for the next pause.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

#define TAGS_CELL 60 /* ls: characters of tags before "+N more" */

static uint64_t u64(const json_t *obj, const char *key)
{
	return (uint64_t)json_integer_value(json_object_get(obj, key));
}

static const char *str(const json_t *obj, const char *key)
{
	const char *s = json_string_value(json_object_get(obj, key));

	return s ? s : "";
}

static double num(const json_t *obj, const char *key)
{
	return json_number_value(json_object_get(obj, key));
}

static const char *human_bytes(uint64_t b, char *buf, size_t len)
{
	if (b >= (1ull << 30))
		snprintf(buf, len, "%.2f GiB", (double)b / (double)(1ull << 30));
	else if (b >= (1ull << 20))
		snprintf(buf, len, "%.1f MiB", (double)b / (double)(1ull << 20));
	else
		snprintf(buf, len, "%llu B", (unsigned long long)b);
	return buf;
}

static const char *group_of(const struct target *t)
{
	return t->group[0] ? t->group : "-";
}

/* "ok: pause 3 allocations, 6.0 MiB released, 6.0 MiB copied (x GiB/s)
 * in 1.2 ms": the verb's first byte figure always, the others when not 0. */
static void print_change(const struct cli *c, const struct target *t)
{
	const struct verb_def *v = &proto_verbs[c->verb];
	double ms = num(t->reply, "ms");
	int f, always = -1;

	printf("%-8d %-12s ok: %s %llu allocations", t->pid, group_of(t), v->cli,
	       (unsigned long long)u64(t->reply, "allocations"));
	for (f = FIG_ALLOCATIONS + 1; f < FIG_COUNT; f++) {
		uint64_t val = u64(t->reply, proto_figures[f].wire);
		char b[32];

		if (!(v->figures & FIG_BIT(f)))
			continue;
		if (always < 0)
			always = f;
		if (val == 0 && f != always)
			continue;
		printf(", %s %s", human_bytes(val, b, sizeof(b)), proto_figures[f].human);
		if (f == FIG_COPIED_BYTES && ms > 0)
			printf(" (%.1f GiB/s)", (double)val / (double)(1ull << 30) / (ms / 1e3));
	}
	printf(" in %.1f ms\n", ms);
}

/* ls: "weights:staged,kv_cache:active", cut with "+N more". */
static void tags_cell(const json_t *tags, char *cell, size_t len)
{
	size_t used = 0, i, n = json_array_size(tags);
	json_t *row;

	cell[0] = '\0';
	json_array_foreach(tags, i, row) {
		char one[TAG_MAX + 16];
		int w = snprintf(one, sizeof(one), "%s%s:%s", i ? "," : "", str(row, "tag"),
				 str(row, "state"));

		if (used + (size_t)w > TAGS_CELL && i > 0) {
			snprintf(cell + used, len - used, ",+%zu more", n - i);
			return;
		}
		used += (size_t)snprintf(cell + used, len - used, "%s", one);
	}
	if (n == 0)
		snprintf(cell, len, "-");
}

static void print_ls(const struct target *t)
{
	char a[32], p[32], h[32], cell[TAGS_CELL + TAG_MAX + 48];

	tags_cell(json_object_get(t->reply, "tags"), cell, sizeof(cell));
	printf("%-8d %-12s %-11s %-11s %-11s %-30s %s\n", t->pid, group_of(t),
	       human_bytes(u64(t->reply, "active_bytes"), a, sizeof(a)),
	       human_bytes(u64(t->reply, "paused_bytes"), p, sizeof(p)),
	       human_bytes(u64(t->reply, "host_bytes"), h, sizeof(h)), cell, t->command);
}

/* The request in flight and the last one that ran, as status shows them. */
static void print_jobs(const json_t *r)
{
	const json_t *run = json_object_get(r, "running"), *last = json_object_get(r, "last");
	long long queued = (long long)u64(r, "queued");

	if (json_is_object(run))
		printf("    running: %s, for %.1f s%s\n", str(run, "request"),
		       num(run, "running_ms") / 1e3,
		       json_is_true(json_object_get(run, "cancelled")) ?
		       (json_is_true(json_object_get(run, "client_waiting")) ?
			", abandoning it (its deadline passed)" :
			", abandoning it (its client left)") : "");
	if (queued > 0)
		printf("    queued: %lld more request%s\n", queued, queued == 1 ? "" : "s");
	if (!json_is_object(last))
		return;
	if (json_is_true(json_object_get(last, "ok")))
		printf("    last: %s: ok, %.1f s ago%s\n", str(last, "request"),
		       num(last, "ago_ms") / 1e3,
		       json_is_true(json_object_get(last, "answered")) ? "" :
		       " (finished after its client left)");
	else
		printf("    last: %s: failed, %s: %s, %.1f s ago\n", str(last, "request"),
		       str(last, "error"), str(last, "message"), num(last, "ago_ms") / 1e3);
}

/* What a pause would not touch; silent when there is none (and for a
 * server that does not report it). */
static void print_uncontrolled(const json_t *r)
{
	const json_t *u = json_object_get(r, "untagged");
	char a[32], b[32], c[32], d[32], e[32], f[32];

	if (u64(r, "uncontrolled_bytes") == 0)
		return;
	printf("    not controlled %s: untagged cuMemAlloc/cudaMalloc %s, cuMemCreate %s, "
	       "cuMemAllocAsync %s, pools %s; tagged but resident %s\n",
	       human_bytes(u64(r, "uncontrolled_bytes"), a, sizeof(a)),
	       human_bytes(u64(u, "alloc_bytes"), b, sizeof(b)),
	       human_bytes(u64(u, "create_bytes"), c, sizeof(c)),
	       human_bytes(u64(u, "async_bytes"), d, sizeof(d)),
	       human_bytes(u64(u, "pool_bytes"), e, sizeof(e)),
	       human_bytes(u64(r, "resident_bytes"), f, sizeof(f)));
}

/* "gate: closed (paused: weights), 2 threads waiting" */
static void print_gate(const json_t *r)
{
	const json_t *g = json_object_get(r, "gate");
	long long waiting = (long long)u64(g, "waiting"), stuck = (long long)u64(g, "stuck_drains");
	double lease = num(g, "lease_ms");
	const char *held = str(g, "paused_tags");

	if (!json_is_true(json_object_get(g, "closed"))) {
		printf("    gate: open");
	} else {
		printf("    gate: closed (");
		if (held[0])
			printf("paused: %s%s", held, lease > 0 ? "; " : "");
		if (lease > 0)
			printf("group pause, first phase: opens in %.1f s unless paused", lease / 1e3);
		if (!held[0] && lease <= 0)
			printf("a pause is draining");
		printf(")");
	}
	if (waiting > 0)
		printf(", %lld thread%s waiting", waiting, waiting == 1 ? "" : "s");
	if (stuck > 0)
		printf(", %lld drain%s given up on still waiting for GPU work", stuck,
		       stuck == 1 ? "" : "s");
	printf("\n");
}

static void print_status(const struct target *t)
{
	char a[32], p[32], s[32], h[32];
	size_t i;
	json_t *row;

	printf("%-8d %-12s active %s, paused %s, staged %s, host %s   %s\n", t->pid,
	       group_of(t), human_bytes(u64(t->reply, "active_bytes"), a, sizeof(a)),
	       human_bytes(u64(t->reply, "paused_bytes"), p, sizeof(p)),
	       human_bytes(u64(t->reply, "staged_bytes"), s, sizeof(s)),
	       human_bytes(u64(t->reply, "host_bytes"), h, sizeof(h)), t->command);
	print_gate(t->reply);
	print_jobs(t->reply);
	print_uncontrolled(t->reply);
	json_array_foreach(json_object_get(t->reply, "tags"), i, row)
		printf("    %-20s %-7s %6llu allocations  active %-11s paused %-11s "
		       "staged %-11s host %s\n", str(row, "tag"), str(row, "state"),
		       (unsigned long long)u64(row, "allocations"),
		       human_bytes(u64(row, "active_bytes"), a, sizeof(a)),
		       human_bytes(u64(row, "paused_bytes"), p, sizeof(p)),
		       human_bytes(u64(row, "staged_bytes"), s, sizeof(s)),
		       human_bytes(u64(row, "host_bytes"), h, sizeof(h)));
}

static void print_json_line(json_t *obj)
{
	char *s = json_dumps(obj, JSON_COMPACT | JSON_REAL_PRECISION(12));

	printf("%s\n", s ? s : "{\"ok\":false,\"error\":\"ENOMEM\"}");
	free(s);
}

void cli_print_header(const struct cli *c)
{
	if (!c->json && c->verb == VERB_LS)
		printf("%-8s %-12s %-11s %-11s %-11s %-30s %s\n", "PID", "GROUP", "ACTIVE",
		       "PAUSED", "HOST", "TAGS", "COMMAND");
}

void cli_print_result(const struct cli *c, const struct fanout *f, const struct target *t)
{
	if (c->json) {
		json_t *o = fanout_json(f, t);

		print_json_line(o);
		json_decref(o);
		return;
	}
	if (t->err.code != 0) {
		printf("%-8d %-12s error %s: %s\n", t->pid, group_of(t),
		       proto_errname(t->err.code), t->err.msg);
		return;
	}
	switch (c->verb) {
	case VERB_LS:
		print_ls(t);
		break;
	case VERB_STATUS:
		print_status(t);
		break;
	default:
		print_change(c, t);
		break;
	}
}

void cli_print_summary(const struct cli *c, int n, int failed)
{
	if (!c->json && n > 1 && c->verb != VERB_LS)
		printf("%d of %d processes succeeded\n", n - failed, n);
}
