/* SPDX-License-Identifier: Apache-2.0 */
/*
 * reply.c - writing the server's replies.
 *
 * Each figure has one name and one meaning on the wire (proto.h):
 * copied_bytes is what a request copied, staged_bytes the host memory that
 * holds staged contents, host_bytes all host memory held (staged or kept
 * for the next pause). Totals are summed over every tag; nothing is cut.
 */
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#include "reply.h"

#define MAX_DEVICES 64

static void head(struct jbuf *j, const struct reply_ctx *x, int ok, const char *verb)
{
	jb_raw(j, "{");
	jb_bool(j, "ok", ok);
	jb_str(j, "verb", verb);
	jb_i64(j, "pid", (int64_t)getpid());
	jb_str(j, "group", x->group);
}

void reply_error(struct jbuf *j, const struct reply_ctx *x, const char *verb, int code,
		 const char *msg)
{
	head(j, x, 0, verb);
	jb_str(j, "error", proto_errname(code));
	jb_i64(j, "code", code);
	jb_str(j, "message", msg);
	jb_raw(j, "}");
}

/* A job as status and hello show it; null when there is none. */
static void put_job(struct jbuf *j, const char *key, const struct job_view *v, int last)
{
	if (!v->valid) {
		jb_null(j, key);
		return;
	}
	jb_open(j, key, '{');
	jb_str(j, "verb", proto_verbs[v->verb].wire);
	jb_str(j, "tags", v->tags);
	jb_str(j, "request", v->line);
	jb_double(j, "since", v->started_at);
	jb_double(j, last ? "ms" : "running_ms", v->ms);
	jb_bool(j, "cancelled", v->cancelled);
	jb_bool(j, "in_process", v->in_process);
	if (!last) {
		jb_bool(j, "client_waiting", v->client_waiting);
	} else {
		jb_double(j, "ago_ms", v->ago_ms);
		jb_bool(j, "answered", v->client_waiting);
		jb_bool(j, "ok", v->rc == 0);
		jb_str(j, "error", v->rc < 0 ? proto_errname(v->rc) : "");
		jb_str(j, "message", v->message);
	}
	jb_close(j, '}');
}

static void put_gate(struct jbuf *j, const struct ctl_backend *be)
{
	struct ctl_gate g;

	be->gate(&g);
	jb_open(j, "gate", '{');
	jb_bool(j, "closed", g.closed);
	jb_i64(j, "waiting", g.waiting);
	jb_str(j, "paused_tags", g.held);
	jb_i64(j, "lease_ms", g.lease_ms);
	jb_i64(j, "draining", g.draining);
	jb_u64(j, "waits", g.waits);
	jb_i64(j, "stuck_drains", g.stuck_drains);
	jb_close(j, '}');
}

static void put_transfer(struct jbuf *j, const char *key, const struct transfer *t)
{
	if (!t->valid) {
		jb_null(j, key);
		return;
	}
	jb_open(j, key, '{');
	jb_u64(j, "bytes", t->bytes);
	jb_double(j, "ms", t->ms);
	jb_double(j, "at", t->at);
	jb_close(j, '}');
}

static void put_verb_counts(struct jbuf *j, const struct verb_counts *v)
{
	int i;

	jb_open(j, "results", '{');
	for (i = 0; i < WORKER_RESULTS && v->result[i] != NULL; i++)
		jb_u64(j, v->result[i], v->count[i]);
	jb_close(j, '}');
	jb_u64(j, "ran", v->ran);
	jb_double(j, "ms_sum", v->ms_sum);
	jb_open(j, "buckets", '[');
	for (i = 0; i < WORKER_BUCKETS; i++)
		jb_u64(j, NULL, v->bucket[i]);
	jb_close(j, ']');
}

/* What the worker counted of the change requests it ran or gave back,
 * whoever sent them: results, a duration histogram (cumulative counts
 * under buckets_ms), the last staged transfers. */
static void put_counters(struct jbuf *j)
{
	struct worker_counters *c = malloc(sizeof(*c));
	int v, i;

	if (c == NULL) {
		jb_null(j, "counters");
		return;
	}
	worker_counters(c);
	jb_open(j, "counters", '{');
	jb_open(j, "buckets_ms", '[');
	for (i = 0; i < WORKER_BUCKETS; i++)
		jb_double(j, NULL, worker_bucket_ms[i]);
	jb_close(j, ']');
	jb_open(j, "verbs", '{');
	for (v = 0; v < VERB_COUNT; v++) {
		if (!proto_verbs[v].changes || proto_verbs[v].wire == NULL)
			continue;
		jb_open(j, proto_verbs[v].wire, '{');
		put_verb_counts(j, &c->verbs[v]);
		jb_close(j, '}');
	}
	jb_close(j, '}');
	put_transfer(j, "last_staged_pause", &c->last_staged_pause);
	put_transfer(j, "last_staged_resume", &c->last_staged_resume);
	jb_close(j, '}');
	free(c);
}

void reply_hello(struct jbuf *j, const struct reply_ctx *x)
{
	struct worker_view w;

	worker_view(&w);
	head(j, x, 1, "hello");
	jb_i64(j, "protocol", PROTO_VERSION);
	jb_str(j, "version", MEMCTL_VERSION);
	jb_str(j, "command", x->command);
	jb_i64(j, "uid", (int64_t)getuid());
	jb_i64(j, "driver_devices", x->be->driver_devices());
	jb_u64(j, "allocations", x->be->allocations());
	put_job(j, "running", &w.running, 0);
	jb_i64(j, "queued", w.queued);
	put_gate(j, x->be);
	put_counters(j);
	jb_raw(j, "}");
}

void reply_ungate(struct jbuf *j, const struct reply_ctx *x)
{
	head(j, x, 1, "ungate");
	put_gate(j, x->be);
	jb_raw(j, "}");
}

/* "staged" promises every paused byte in host memory: a tag with some
 * contents staged and some discarded is "mixed", as one partly active. */
static const char *state_word(const struct region_tag_stat *r)
{
	if (r->paused_bytes == 0)
		return "active";
	if (r->active_bytes != 0)
		return "mixed";
	if (r->discarded == 0)
		return "staged";
	return r->staged_bytes ? "mixed" : "paused";
}

static void put_figures(struct jbuf *j, const struct region_tag_stat *r)
{
	jb_u64(j, "allocations", r->allocations);
	jb_u64(j, "active_bytes", r->active_bytes);
	jb_u64(j, "paused_bytes", r->paused_bytes);
	jb_u64(j, "staged_bytes", r->staged_bytes);
	jb_u64(j, "host_bytes", r->host_bytes);
	jb_u64(j, "resident_bytes", r->resident_bytes);
}

static void put_tags(struct jbuf *j, const struct region_tag_stat *rows, size_t n,
		     uint64_t *resident)
{
	struct region_tag_stat total = { .name = "" };
	size_t i;

	for (i = 0; i < n; i++) {
		total.allocations += rows[i].allocations;
		total.active_bytes += rows[i].active_bytes;
		total.paused_bytes += rows[i].paused_bytes;
		total.staged_bytes += rows[i].staged_bytes;
		total.host_bytes += rows[i].host_bytes;
		total.resident_bytes += rows[i].resident_bytes;
	}
	put_figures(j, &total);
	*resident = total.resident_bytes;
	jb_open(j, "tags", '[');
	for (i = 0; i < n; i++) {
		jb_open(j, NULL, '{');
		jb_str(j, "tag", rows[i].name);
		jb_str(j, "state", state_word(&rows[i]));
		put_figures(j, &rows[i]);
		jb_close(j, '}');
	}
	jb_close(j, ']');
}

/*
 * What a pause of every tag would leave on the device, as far as memctl
 * can know: the memory it let pass untagged (by the call that made it),
 * plus tagged memory held resident (exported for IPC). Not included: the
 * CUDA context, and memory made by calls memctl does not interpose
 * (managed memory, arrays, graph allocations, IPC imports).
 */
static void put_uncontrolled(struct jbuf *j, const struct ctl_backend *be, uint64_t resident)
{
	static const char *const names[UNTAGGED_KINDS] = {
		[UNTAGGED_ALLOC] = "alloc_bytes", [UNTAGGED_CREATE] = "create_bytes",
		[UNTAGGED_ASYNC] = "async_bytes", [UNTAGGED_POOL] = "pool_bytes",
	};
	uint64_t bytes[UNTAGGED_KINDS] = { 0 }, sum = 0;
	int k;

	if (be->untagged != NULL)
		be->untagged(bytes);
	for (k = 0; k < UNTAGGED_KINDS; k++)
		sum += bytes[k];
	jb_u64(j, "uncontrolled_bytes", sum + resident);
	jb_open(j, "untagged", '{');
	jb_u64(j, "bytes", sum);
	for (k = 0; k < UNTAGGED_KINDS; k++)
		jb_u64(j, names[k], bytes[k]);
	jb_close(j, '}');
}

static void put_devices(struct jbuf *j, const struct ctl_backend *be)
{
	struct ctl_device devs[MAX_DEVICES];
	int n = be->devices(devs, MAX_DEVICES), d;

	jb_open(j, "devices", '[');
	for (d = 0; d < n; d++) {
		jb_open(j, NULL, '{');
		jb_i64(j, "id", devs[d].id);
		jb_u64(j, "free_bytes", devs[d].free_bytes);
		jb_u64(j, "total_bytes", devs[d].total_bytes);
		jb_close(j, '}');
	}
	jb_close(j, ']');
}

void reply_status(struct jbuf *j, const struct reply_ctx *x)
{
	struct region_tag_stat *rows = NULL;
	struct worker_view w;
	uint64_t resident = 0;
	size_t n = 0;
	int rc = x->be->tag_stats(&rows, &n);

	if (rc < 0) {
		reply_error(j, x, "status", rc, "host memory: no room to list the tags");
		return;
	}
	worker_view(&w);
	head(j, x, 1, "status");
	put_tags(j, rows, n, &resident);
	free(rows);
	put_uncontrolled(j, x->be, resident);
	put_devices(j, x->be);
	put_job(j, "running", &w.running, 0);
	jb_i64(j, "queued", w.queued);
	put_job(j, "last", &w.last, 1);
	put_gate(j, x->be);
	put_counters(j);
	jb_raw(j, "}");
}

void reply_change(struct jbuf *j, const struct reply_ctx *x, const struct job *job)
{
	const struct verb_def *v = &proto_verbs[job->req.verb];
	char tags[TAGSET_TEXT_MAX];
	int f;

	if (job->rc < 0) {
		reply_error(j, x, v->wire, job->rc, job->err.msg);
		return;
	}
	tagset_format(&job->req.rq.tags, tags, sizeof(tags));
	head(j, x, 1, v->wire);
	jb_str(j, "tags", tags);
	for (f = 0; f < FIG_COUNT; f++)
		if (v->figures & FIG_BIT(f))
			jb_u64(j, proto_figures[f].wire,
			       proto_figure_value((enum proto_figure)f, &job->rep));
	jb_double(j, "ms", job->rep.ms);
	jb_raw(j, "}");
}
