/* SPDX-License-Identifier: Apache-2.0 */
/*
 * metrics.c - GET /metrics: the Prometheus text format (version 0.0.4).
 *
 * The figures of each process come from its status reply, so they are the
 * process's own and true whoever sent its requests (the CLI, a script, this
 * server): memory per tag, devices, and the counters its control server
 * keeps of the change requests it ran. memctl serve adds what only it
 * knows: the targets it found and the HTTP requests it answered. Every
 * family is written once with HELP and TYPE, its samples together, as
 * promtool check metrics wants them (docs/http.md lists them).
 */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "serve.h"

#define HTTP_ENDPOINTS 16
#define HTTP_CODES 16
#define N_BUCKETS 12

/* Seconds; the same bounds as the processes' own histograms. */
static const double bucket_s[N_BUCKETS] = {
	0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 600,
};

struct http_counts {
	const char *endpoint;      /* NULL: a free slot */
	int code[HTTP_CODES];
	uint64_t count[HTTP_CODES];
	uint64_t bucket[N_BUCKETS]; /* cumulative */
	uint64_t n;
	double sum;
};

static struct {
	pthread_mutex_t lock;
	struct http_counts ep[HTTP_ENDPOINTS];
} http = { .lock = PTHREAD_MUTEX_INITIALIZER };

void metrics_count_http(const char *endpoint, int status, double seconds)
{
	struct http_counts *e = NULL;
	int i;

	pthread_mutex_lock(&http.lock);
	for (i = 0; i < HTTP_ENDPOINTS && e == NULL; i++)
		if (http.ep[i].endpoint == NULL || strcmp(http.ep[i].endpoint, endpoint) == 0)
			e = &http.ep[i];
	if (e != NULL) {
		e->endpoint = endpoint;
		for (i = 0; i < HTTP_CODES - 1 && e->code[i] != 0 && e->code[i] != status; i++)
			;
		e->code[i] = status;
		e->count[i]++;
		e->n++;
		e->sum += seconds;
		for (i = 0; i < N_BUCKETS; i++)
			e->bucket[i] += seconds <= bucket_s[i];
	}
	pthread_mutex_unlock(&http.lock);
}

/* ---- writing ------------------------------------------------------------- */

static void put(struct jbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void put(struct jbuf *b, const char *fmt, ...)
{
	char line[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	jb_raw(b, line);
}

static void family(struct jbuf *b, const char *name, const char *type, const char *help)
{
	put(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* A label value as the text format quotes it. */
static void escape(char *out, size_t len, const char *s)
{
	size_t o = 0;

	for (; *s && o + 3 < len; s++) {
		if (*s == '\\' || *s == '"' || *s == '\n')
			out[o++] = '\\';
		out[o++] = *s == '\n' ? 'n' : *s;
	}
	out[o] = '\0';
}

/* pid="123",group="g" */
static void proc_labels(char *out, size_t len, const struct target *t)
{
	char g[2 * TAG_MAX];

	escape(g, sizeof(g), t->group);
	snprintf(out, len, "pid=\"%d\",group=\"%s\"", t->pid, g);
}

static json_t *counters_of(const struct target *t)
{
	json_t *c = t->err.code == 0 ? json_object_get(t->reply, "counters") : NULL;

	return json_is_object(c) ? c : NULL;
}

static uint64_t u64(const json_t *obj, const char *key)
{
	json_int_t v = json_integer_value(json_object_get(obj, key));

	return v > 0 ? (uint64_t)v : 0;
}

/* ---- each process -------------------------------------------------------- */

static void put_up(struct jbuf *b, const struct target *ts, int n)
{
	char l[200], cmd[600];
	int i;

	family(b, "memctl_up", "gauge",
	       "1 when the process answered status in time, 0 when not (GET /status says why)");
	for (i = 0; i < n; i++) {
		proc_labels(l, sizeof(l), &ts[i]);
		put(b, "memctl_up{%s} %d\n", l, ts[i].err.code == 0);
	}
	family(b, "memctl_process_info", "gauge", "The command line of each process, as a label");
	for (i = 0; i < n; i++) {
		proc_labels(l, sizeof(l), &ts[i]);
		escape(cmd, sizeof(cmd), ts[i].command);
		put(b, "memctl_process_info{%s,command=\"%s\"} 1\n", l, cmd);
	}
}

static const struct {
	const char *name, *key, *help;
} tag_figures[] = {
	{ "memctl_tag_allocations", "allocations", "Live allocations carrying the tag" },
	{ "memctl_tag_active_bytes", "active_bytes", "Device bytes of the tag that are mapped" },
	{ "memctl_tag_paused_bytes", "paused_bytes",
	  "Device bytes of the tag released by a pause, staged or not" },
	{ "memctl_tag_staged_bytes", "staged_bytes",
	  "Host bytes holding the staged contents of the tag" },
	{ "memctl_tag_host_bytes", "host_bytes",
	  "Host bytes held for the tag in all: staged contents and buffers kept for the next pause" },
	{ "memctl_tag_resident_bytes", "resident_bytes",
	  "Device bytes of the tag that stay resident whatever is paused (exported for IPC, or bound "
	  "to a multicast object)" },
};

static void put_tags(struct jbuf *b, const struct target *ts, int n)
{
	char l[200], tag[2 * TAG_MAX];
	json_t *row;
	size_t f, r;
	int i;

	for (f = 0; f < sizeof(tag_figures) / sizeof(tag_figures[0]); f++) {
		family(b, tag_figures[f].name, "gauge", tag_figures[f].help);
		for (i = 0; i < n; i++) {
			if (ts[i].err.code != 0)
				continue;
			proc_labels(l, sizeof(l), &ts[i]);
			json_array_foreach(json_object_get(ts[i].reply, "tags"), r, row) {
				escape(tag, sizeof(tag), json_string_value(json_object_get(row, "tag")) ?
				       json_string_value(json_object_get(row, "tag")) : "");
				put(b, "%s{%s,tag=\"%s\"} %llu\n", tag_figures[f].name, l, tag,
				    (unsigned long long)u64(row, tag_figures[f].key));
			}
		}
	}
}

/* What no pause would touch, per process and by the call that made it
 * (docs/design.md, What stays resident). */
static void put_uncontrolled(struct jbuf *b, const struct target *ts, int n)
{
	static const char *const calls[][2] = {
		{ "alloc_bytes", "cuMemAlloc" }, { "create_bytes", "cuMemCreate" },
		{ "async_bytes", "cuMemAllocAsync" }, { "pool_bytes", "cuMemAllocFromPoolAsync" },
	};
	char l[200];
	size_t k;
	int i;

	family(b, "memctl_uncontrolled_bytes", "gauge",
	       "Device bytes of the process no pause would touch: allocated untagged through the "
	       "calls memctl interposes, and tagged memory held resident");
	for (i = 0; i < n; i++)
		if (ts[i].err.code == 0) {
			proc_labels(l, sizeof(l), &ts[i]);
			put(b, "memctl_uncontrolled_bytes{%s} %llu\n", l,
			    (unsigned long long)u64(ts[i].reply, "uncontrolled_bytes"));
		}
	family(b, "memctl_untagged_bytes", "gauge",
	       "Device bytes the process allocated untagged, by the call that made them");
	for (i = 0; i < n; i++) {
		const json_t *u = json_object_get(ts[i].reply, "untagged");

		if (ts[i].err.code != 0 || !json_is_object(u))
			continue;
		proc_labels(l, sizeof(l), &ts[i]);
		for (k = 0; k < sizeof(calls) / sizeof(calls[0]); k++)
			put(b, "memctl_untagged_bytes{%s,call=\"%s\"} %llu\n", l, calls[k][1],
			    (unsigned long long)u64(u, calls[k][0]));
	}
}

static void put_devices(struct jbuf *b, const struct target *ts, int n)
{
	static const char *const keys[2] = { "free_bytes", "total_bytes" };
	char l[200];
	json_t *dev;
	size_t d;
	int i, k;

	for (k = 0; k < 2; k++) {
		family(b, k ? "memctl_device_total_bytes" : "memctl_device_free_bytes", "gauge",
		       k ? "Device memory in all, as the process's driver reports it" :
		       "Device memory free, as the process's driver reports it");
		for (i = 0; i < n; i++) {
			if (ts[i].err.code != 0)
				continue;
			proc_labels(l, sizeof(l), &ts[i]);
			json_array_foreach(json_object_get(ts[i].reply, "devices"), d, dev)
				put(b, "memctl_device_%s{%s,device=\"%llu\"} %llu\n", keys[k], l,
				    (unsigned long long)u64(dev, "id"),
				    (unsigned long long)u64(dev, keys[k]));
		}
	}
}

static void put_jobs(struct jbuf *b, const struct target *ts, int n)
{
	char l[200];
	int i;

	family(b, "memctl_request_running", "gauge", "1 while a change request runs in the process");
	for (i = 0; i < n; i++)
		if (ts[i].err.code == 0) {
			proc_labels(l, sizeof(l), &ts[i]);
			put(b, "memctl_request_running{%s} %d\n", l,
			    json_is_object(json_object_get(ts[i].reply, "running")));
		}
	family(b, "memctl_requests_queued", "gauge", "Change requests waiting in the process");
	for (i = 0; i < n; i++)
		if (ts[i].err.code == 0) {
			proc_labels(l, sizeof(l), &ts[i]);
			put(b, "memctl_requests_queued{%s} %llu\n", l,
			    (unsigned long long)u64(ts[i].reply, "queued"));
		}
}

/* memctl_requests_total: "ok" always, then every error seen. */
static void put_requests(struct jbuf *b, const struct target *ts, int n)
{
	json_t *c, *v, *count;
	const char *verb, *result;
	char l[200];
	int i;

	family(b, "memctl_requests_total", "counter",
	       "Change requests the process's control server ended, by verb and result "
	       "(ok or the error name), whoever sent them");
	for (i = 0; i < n; i++) {
		if ((c = counters_of(&ts[i])) == NULL)
			continue;
		proc_labels(l, sizeof(l), &ts[i]);
		json_object_foreach(json_object_get(c, "verbs"), verb, v) {
			put(b, "memctl_requests_total{%s,verb=\"%s\",result=\"ok\"} %llu\n", l, verb,
			    (unsigned long long)u64(json_object_get(v, "results"), "ok"));
			json_object_foreach(json_object_get(v, "results"), result, count)
				if (strcmp(result, "ok") != 0)
					put(b, "memctl_requests_total{%s,verb=\"%s\",result=\"%s\"} "
					    "%lld\n", l, verb, result,
					    (long long)json_integer_value(count));
		}
	}
}

static void put_histogram(struct jbuf *b, const char *name, const char *labels,
			  const double *le_s, const uint64_t *bucket, int nb, uint64_t count,
			  double sum_s)
{
	int k;

	for (k = 0; k < nb; k++)
		put(b, "%s_bucket{%s,le=\"%g\"} %llu\n", name, labels, le_s[k],
		    (unsigned long long)bucket[k]);
	put(b, "%s_bucket{%s,le=\"+Inf\"} %llu\n", name, labels, (unsigned long long)count);
	put(b, "%s_sum{%s} %.6f\n%s_count{%s} %llu\n", name, labels, sum_s, name, labels,
	    (unsigned long long)count);
}

static void put_durations(struct jbuf *b, const struct target *ts, int n)
{
	json_t *c, *v, *bounds;
	double le[N_BUCKETS];
	uint64_t cum[N_BUCKETS];
	const char *verb;
	char l[300], pl[200];
	int i, k, nb;

	family(b, "memctl_request_duration_seconds", "histogram",
	       "How long the change requests that ran in the process took, by verb");
	for (i = 0; i < n; i++) {
		if ((c = counters_of(&ts[i])) == NULL)
			continue;
		bounds = json_object_get(c, "buckets_ms");
		nb = (int)json_array_size(bounds) < N_BUCKETS ? (int)json_array_size(bounds) :
		     N_BUCKETS;
		for (k = 0; k < nb; k++)
			le[k] = json_number_value(json_array_get(bounds, (size_t)k)) / 1e3;
		proc_labels(pl, sizeof(pl), &ts[i]);
		json_object_foreach(json_object_get(c, "verbs"), verb, v) {
			for (k = 0; k < nb; k++)
				cum[k] = (uint64_t)json_integer_value(
					json_array_get(json_object_get(v, "buckets"), (size_t)k));
			snprintf(l, sizeof(l), "%s,verb=\"%s\"", pl, verb);
			put_histogram(b, "memctl_request_duration_seconds", l, le, cum, nb,
				      u64(v, "ran"),
				      json_number_value(json_object_get(v, "ms_sum")) / 1e3);
		}
	}
}

static void put_resume_failures(struct jbuf *b, const struct target *ts, int n)
{
	json_t *c, *results, *count;
	const char *result;
	uint64_t failed;
	char l[200];
	int i;

	family(b, "memctl_resume_failures_total", "counter",
	       "Resume requests that failed in the process (device memory short, driver errors, "
	       "abandoned)");
	for (i = 0; i < n; i++) {
		if ((c = counters_of(&ts[i])) == NULL)
			continue;
		results = json_object_get(json_object_get(json_object_get(c, "verbs"), "resume"),
					  "results");
		failed = 0;
		json_object_foreach(results, result, count)
			if (strcmp(result, "ok") != 0)
				failed += (uint64_t)json_integer_value(count);
		proc_labels(l, sizeof(l), &ts[i]);
		put(b, "memctl_resume_failures_total{%s} %llu\n", l, (unsigned long long)failed);
	}
}

/* The last staged pause or resume: its bytes and its bandwidth. */
static void put_transfer(struct jbuf *b, const struct target *ts, int n, const char *which)
{
	char name[96], l[200];
	json_t *t;
	int i, k;

	for (k = 0; k < 2; k++) {
		snprintf(name, sizeof(name), "memctl_last_staged_%s_bytes%s", which,
			 k ? "_per_second" : "");
		put(b, "# HELP %s %s of the last staged %s that succeeded in the process%s\n"
		    "# TYPE %s gauge\n", name, k ? "Bandwidth" : "Bytes copied", which,
		    k ? " (bytes copied over the whole request's time)" : "", name);
		for (i = 0; i < n; i++) {
			char key[40];

			snprintf(key, sizeof(key), "last_staged_%s", which);
			if (counters_of(&ts[i]) == NULL ||
			    !json_is_object(t = json_object_get(counters_of(&ts[i]), key)))
				continue;
			proc_labels(l, sizeof(l), &ts[i]);
			if (k == 0)
				put(b, "%s{%s} %llu\n", name, l, (unsigned long long)u64(t, "bytes"));
			else if (json_number_value(json_object_get(t, "ms")) > 0)
				put(b, "%s{%s} %.0f\n", name, l, (double)u64(t, "bytes") /
				    (json_number_value(json_object_get(t, "ms")) / 1e3));
		}
	}
}

/* ---- memctl serve's own ------------------------------------------------- */

static void put_serve(struct jbuf *b, int n)
{
	struct http_counts *c = malloc(sizeof(http.ep));
	char l[120];
	int e, k;

	family(b, "memctl_serve_targets", "gauge", "Processes memctl serve found to ask");
	put(b, "memctl_serve_targets %d\n", n);
	if (c == NULL)
		return;
	pthread_mutex_lock(&http.lock);
	memcpy(c, http.ep, sizeof(http.ep));
	pthread_mutex_unlock(&http.lock);
	family(b, "memctl_serve_http_requests_total", "counter",
	       "HTTP requests memctl serve answered, by endpoint and status code");
	for (e = 0; e < HTTP_ENDPOINTS && c[e].endpoint != NULL; e++)
		for (k = 0; k < HTTP_CODES && c[e].code[k] != 0; k++)
			put(b, "memctl_serve_http_requests_total{endpoint=\"%s\",code=\"%d\"} %llu\n",
			    c[e].endpoint, c[e].code[k], (unsigned long long)c[e].count[k]);
	family(b, "memctl_serve_http_request_duration_seconds", "histogram",
	       "How long memctl serve took to answer, by endpoint");
	for (e = 0; e < HTTP_ENDPOINTS && c[e].endpoint != NULL; e++) {
		snprintf(l, sizeof(l), "endpoint=\"%s\"", c[e].endpoint);
		put_histogram(b, "memctl_serve_http_request_duration_seconds", l, bucket_s,
			      c[e].bucket, N_BUCKETS, c[e].n, c[e].sum);
	}
	free(c);
}

char *metrics_render(const struct target *ts, int n)
{
	struct jbuf b;

	jb_init_grow(&b, 256u << 20);
	put_up(&b, ts, n);
	put_tags(&b, ts, n);
	put_uncontrolled(&b, ts, n);
	put_devices(&b, ts, n);
	put_jobs(&b, ts, n);
	put_requests(&b, ts, n);
	put_durations(&b, ts, n);
	put_resume_failures(&b, ts, n);
	put_transfer(&b, ts, n, "pause");
	put_transfer(&b, ts, n, "resume");
	put_serve(&b, n);
	if (b.overflow) {
		jb_free(&b);
		return NULL;
	}
	return b.buf;
}
