/* SPDX-License-Identifier: Apache-2.0 */
/*
 * serve_http.c - the HTTP side of memctl serve, on libmicrohttpd.
 *
 * libmicrohttpd parses HTTP; this file decides who may ask what: the bearer
 * token, the endpoint and its method, the size of the body, the query
 * parameters and body fields each endpoint takes. Everything it refuses
 * is refused before any process is asked anything, with one JSON error.
 * Each connection has a thread of its own, so a change request that waits
 * for its processes (each bounded by its timeout) holds up no status or
 * metrics scrape; change requests run one at a time, and a second one
 * meanwhile is answered 409 at once.
 */
#include <errno.h>
#include <microhttpd.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "serve.h"

struct endpoint {
	const char *path;
	const char *method;
	int changes;        /* one at a time; logged */
	const char *query;  /* the parameters it takes, comma-separated */
	const char *fields; /* the body fields it takes, comma-separated */
	serve_op op;
};

static const struct endpoint endpoints[] = {
	{ "/release_memory_occupation", "POST", 1, "", "tags,stage_to_cpu", serve_release },
	{ "/resume_memory_occupation", "POST", 1, "", "tags", serve_resume },
	{ "/sleep", "POST", 1, "level", "", serve_sleep },
	{ "/wake_up", "POST", 1, "tags", "", serve_wake_up },
	{ "/is_sleeping", "GET", 0, "", "", serve_is_sleeping },
	{ "/status", "GET", 0, "", "", serve_status },
	{ "/metrics", "GET", 0, "", "", serve_metrics },
};
#define N_ENDPOINTS (sizeof(endpoints) / sizeof(endpoints[0]))

/* One HTTP request, from its headers to its reply. */
struct exchange {
	const struct endpoint *ep; /* NULL: none matched */
	char *body;
	size_t len;
	int too_big;
	int answered;              /* a reply is queued: ignore what follows */
	double started;
	char method[16];
	char url[128];             /* for the log, cut */
};

static const struct serve_config *config;

/* The change request running now, for the 409 of the next one. */
static struct {
	pthread_mutex_t lock;
	const char *path;
	double since;
} running = { PTHREAD_MUTEX_INITIALIZER, NULL, 0 };

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void serve_error(struct serve_reply *out, int status, const char *name, const char *fmt, ...)
{
	char msg[600];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	out->status = status;
	out->body = json_pack("{s:b, s:s, s:s}", "ok", 0, "error", name, "message", msg);
}

/* 1 when `word` is one of the comma-separated `list`. */
static int listed(const char *list, const char *word)
{
	size_t n = strlen(word);

	for (;;) {
		size_t len = strcspn(list, ",");

		if (len == n && n > 0 && strncmp(list, word, n) == 0)
			return 1;
		if (list[len] == '\0')
			return 0;
		list += len + 1;
	}
}

/* ---- replying ---------------------------------------------------------- */

static enum MHD_Result send_reply(struct MHD_Connection *conn, struct exchange *x,
				  struct serve_reply *r)
{
	static char nothing[1];
	char *text = r->text ? r->text :
		     r->body ? json_dumps(r->body, JSON_COMPACT | JSON_REAL_PRECISION(12)) : NULL;
	struct MHD_Response *resp;
	enum MHD_Result rc;

	if (text == NULL) { /* out of memory: still an answer */
		r->status = 500;
		r->content_type = NULL;
		text = strdup("{\"ok\":false,\"error\":\"internal\",\"message\":\"out of memory\"}");
	}
	resp = MHD_create_response_from_buffer(text ? strlen(text) : 0, text ? text : nothing,
					       MHD_RESPMEM_MUST_COPY);
	if (resp == NULL) {
		free(text);
		return MHD_NO;
	}
	MHD_add_response_header(resp, "Content-Type",
				r->content_type ? r->content_type : "application/json");
	if (r->status == 401)
		MHD_add_response_header(resp, "WWW-Authenticate", "Bearer realm=\"memctl\"");
	if (r->status == 405 && x->ep != NULL)
		MHD_add_response_header(resp, "Allow", x->ep->method);
	rc = MHD_queue_response(conn, (unsigned)r->status, resp);
	MHD_destroy_response(resp);
	metrics_count_http(x->ep ? x->ep->path : "other", r->status, now_s() - x->started);
	free(text);
	json_decref(r->body);
	r->body = NULL;
	r->text = NULL;
	x->answered = 1;
	return rc;
}

/* One line per change request and per refusal: what an operator looks
 * for in the log. */
static void log_request(const struct exchange *x, const struct serve_reply *r)
{
	const char *msg = r->body ? json_string_value(json_object_get(r->body, "message")) : NULL;
	char line[900];
	size_t i;

	if (r->status < 400 && (x->ep == NULL || !x->ep->changes))
		return;
	snprintf(line, sizeof(line), "%s %s: %d in %.1f ms%s%s", x->method, x->url, r->status,
		 (now_s() - x->started) * 1e3, msg ? ": " : "", msg ? msg : "");
	/* What a client sent is echoed: no control bytes into the log. */
	for (i = 0; line[i] != '\0'; i++)
		if ((unsigned char)line[i] < 0x20 || line[i] == 0x7f)
			line[i] = '?';
	fprintf(stderr, "memctl serve: %s\n", line);
}

static enum MHD_Result refuse(struct MHD_Connection *conn, struct exchange *x, int status,
			      const char *name, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));

static enum MHD_Result refuse(struct MHD_Connection *conn, struct exchange *x, int status,
			      const char *name, const char *fmt, ...)
{
	struct serve_reply r = { 0 };
	char msg[600];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	serve_error(&r, status, name, "%s", msg);
	log_request(x, &r);
	return send_reply(conn, x, &r);
}

/* ---- what is checked before the body is read ---------------------------- */

/* Compare without stopping at the first difference: the time taken says
 * nothing about the token. */
static int same_secret(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b), i;
	unsigned char diff = la != lb;

	for (i = 0; i < la; i++)
		diff |= (unsigned char)(a[i] ^ b[i % (lb ? lb : 1)]);
	return diff == 0 && lb > 0;
}

static int authorized(struct MHD_Connection *conn)
{
	const char *h;

	if (config->token == NULL)
		return 1;
	h = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Authorization");
	if (h == NULL || strncasecmp(h, "Bearer ", 7) != 0)
		return 0;
	h += 7;
	while (*h == ' ')
		h++;
	return same_secret(h, config->token);
}

static const struct endpoint *route(const char *url)
{
	size_t i;

	for (i = 0; i < N_ENDPOINTS; i++)
		if (strcmp(url, endpoints[i].path) == 0)
			return &endpoints[i];
	return NULL;
}

/* The first call for a request: its headers are in, its body not yet. */
static enum MHD_Result begin(struct MHD_Connection *conn, const char *url, const char *method,
			     void **ctx)
{
	struct exchange *x = calloc(1, sizeof(*x));
	const char *cl;

	if (x == NULL)
		return MHD_NO;
	*ctx = x;
	x->started = now_s();
	x->ep = route(url);
	snprintf(x->method, sizeof(x->method), "%s", method);
	snprintf(x->url, sizeof(x->url), "%s", url);
	if (!authorized(conn))
		return refuse(conn, x, 401, "unauthorized",
			      "a valid 'Authorization: Bearer <token>' header is required");
	if (x->ep == NULL)
		return refuse(conn, x, 404, "not_found", "no endpoint %.100s (docs/http.md)", url);
	if (strcmp(method, x->ep->method) != 0)
		return refuse(conn, x, 405, "method_not_allowed", "%s takes %s, not %.16s",
			      x->ep->path, x->ep->method, method);
	cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
	if (cl != NULL && strtoull(cl, NULL, 10) > SERVE_MAX_BODY)
		return refuse(conn, x, 413, "body_too_large", "bodies are limited to %u bytes",
			      SERVE_MAX_BODY);
	return MHD_YES;
}

/* Body bytes as they arrive; past the limit they are dropped. */
static void take(struct exchange *x, const char *data, size_t n)
{
	char *b;

	if (x->too_big || x->len + n > SERVE_MAX_BODY) {
		x->too_big = 1;
		return;
	}
	b = realloc(x->body, x->len + n + 1);
	if (b == NULL) {
		x->too_big = 1;
		return;
	}
	memcpy(b + x->len, data, n);
	x->len += n;
	b[x->len] = '\0';
	x->body = b;
}

/* ---- the request, complete ---------------------------------------------- */

struct query_scan {
	const struct endpoint *ep;
	struct serve_query q;
	char bad[80];      /* the first parameter it does not take */
	int level_twice;
};

static enum MHD_Result scan_arg(void *cls, enum MHD_ValueKind kind, const char *key,
				const char *value)
{
	struct query_scan *s = cls;

	(void)kind;
	if (!listed(s->ep->query, key)) {
		if (s->bad[0] == '\0')
			snprintf(s->bad, sizeof(s->bad), "%.60s", key);
	} else if (strcmp(key, "level") == 0) {
		s->level_twice |= s->q.level != NULL;
		s->q.level = value ? value : "";
	} else if (s->q.ntags <= TAGSET_MAX) {
		s->q.tags[s->q.ntags++] = value ? value : "";
	}
	return MHD_YES;
}

/* The body: absent, or a JSON object with only the fields the endpoint
 * takes (duplicates refused). 0, or -1 with `out` set to the refusal. */
static int parse_body(const struct exchange *x, json_t **body, struct serve_reply *out)
{
	json_error_t jerr;
	const char *key;
	json_t *val;

	*body = NULL;
	if (x->len == 0)
		return 0;
	*body = json_loadb(x->body, x->len, JSON_REJECT_DUPLICATES, &jerr);
	if (*body == NULL) {
		serve_error(out, 400, "malformed_json", "the body is not JSON: %s (line %d, "
			    "column %d)", jerr.text, jerr.line, jerr.column);
		return -1;
	}
	if (!json_is_object(*body)) {
		serve_error(out, 400, "malformed_json", "the body must be a JSON object");
		return -1;
	}
	json_object_foreach(*body, key, val)
		if (!listed(x->ep->fields, key)) {
			serve_error(out, 400, "unknown_field", "%s takes no field '%.60s'%s%s",
				    x->ep->path, key, x->ep->fields[0] ? "; it takes: " :
				    " (it takes no body)", x->ep->fields);
			return -1;
		}
	return 0;
}

/* Only one change at a time: 0 with the slot taken, or -1 with a 409. */
static int claim(const struct endpoint *ep, struct serve_reply *out)
{
	int busy;

	pthread_mutex_lock(&running.lock);
	busy = running.path != NULL;
	if (busy)
		serve_error(out, 409, "busy", "another change request is running (%s, for %.1f s); "
			    "nothing was done: retry when it has finished", running.path,
			    now_s() - running.since);
	else
		running.path = ep->path, running.since = now_s();
	pthread_mutex_unlock(&running.lock);
	return busy ? -1 : 0;
}

static void unclaim(void)
{
	pthread_mutex_lock(&running.lock);
	running.path = NULL;
	pthread_mutex_unlock(&running.lock);
}

static void run_endpoint(struct MHD_Connection *conn, struct exchange *x,
			 struct serve_reply *r)
{
	struct query_scan s = { .ep = x->ep };
	json_t *body = NULL;

	MHD_get_connection_values(conn, MHD_GET_ARGUMENT_KIND, scan_arg, &s);
	if (x->too_big)
		serve_error(r, 413, "body_too_large", "bodies are limited to %u bytes",
			    SERVE_MAX_BODY);
	else if (s.bad[0] != '\0')
		serve_error(r, 400, "unknown_parameter", "%s takes no parameter '%s'%s%s",
			    x->ep->path, s.bad, x->ep->query[0] ? "; it takes: " : "",
			    x->ep->query);
	else if (s.level_twice)
		serve_error(r, 400, "bad_request", "level given twice");
	else if (parse_body(x, &body, r) == 0 && (!x->ep->changes || claim(x->ep, r) == 0)) {
		x->ep->op(config, body, &s.q, r);
		if (x->ep->changes)
			unclaim();
	}
	json_decref(body);
}

static enum MHD_Result finish(struct MHD_Connection *conn, struct exchange *x)
{
	struct serve_reply r = { 0 };

	run_endpoint(conn, x, &r);
	log_request(x, &r);
	return send_reply(conn, x, &r);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
				  const char *method, const char *version, const char *data,
				  size_t *size, void **ctx)
{
	struct exchange *x = *ctx;

	(void)cls;
	(void)version;
	if (x == NULL)
		return begin(conn, url, method, ctx);
	if (*size > 0) {
		if (!x->answered)
			take(x, data, *size);
		*size = 0;
		return MHD_YES;
	}
	return x->answered ? MHD_YES : finish(conn, x);
}

static void on_done(void *cls, struct MHD_Connection *conn, void **ctx,
		    enum MHD_RequestTerminationCode code)
{
	struct exchange *x = *ctx;

	(void)cls;
	(void)conn;
	(void)code;
	if (x != NULL) {
		free(x->body);
		free(x);
	}
	*ctx = NULL;
}

/* ---- running ------------------------------------------------------------- */

int serve_http_run(const struct serve_config *cfg, int fd)
{
	struct MHD_Daemon *d;
	sigset_t stop;
	int sig = 0;

	config = cfg;
	/* Every thread, libmicrohttpd's included, inherits this mask: the
	 * signals that end the server reach sigwait below and nobody else. */
	sigemptyset(&stop);
	sigaddset(&stop, SIGINT);
	sigaddset(&stop, SIGTERM);
	sigaddset(&stop, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &stop, NULL);
	signal(SIGPIPE, SIG_IGN);
	d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION |
			     MHD_USE_ERROR_LOG, 0, NULL, NULL, on_request, NULL,
			     MHD_OPTION_LISTEN_SOCKET, fd,
			     MHD_OPTION_NOTIFY_COMPLETED, on_done, NULL,
			     MHD_OPTION_CONNECTION_LIMIT, (unsigned)64,
			     MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)30,
			     MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(64u << 10),
			     MHD_OPTION_END);
	if (d == NULL) {
		fprintf(stderr, "memctl serve: libmicrohttpd would not start\n");
		close(fd);
		return 1;
	}
	while (sigwait(&stop, &sig) != 0)
		;
	fprintf(stderr, "memctl serve: %s, stopping\n", strsignal(sig));
	MHD_stop_daemon(d);
	close(fd);
	return 0;
}
