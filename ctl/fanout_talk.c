/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fanout_talk.c - one request to one process, and its reply, within the
 * deadline: the thread fanout_run starts for each target.
 *
 * Before anything is sent the client (the CLI, memctl serve) checks who
 * serves the socket (SO_PEERCRED): only a process of its own user is
 * believed, so a socket planted by someone else can neither receive the
 * request nor answer "ok". The deadline travels with the request
 * (timeout_ms), so the process abandons what the client gave up on. Replies are parsed with
 * jansson and checked against what the verb's reply must hold before any
 * figure is read.
 */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "fanout.h"

/* A change request's reply may arrive this long after its deadline: the
 * process gives up at the deadline itself and then says so. */
#define REPLY_GRACE_MS 1000

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* -1 with t->err set when it cannot be reached. */
static int connect_target(struct target *t)
{
	const char *dir = t->f->dir;
	struct sockaddr_un addr;
	int fd;

	memset(&addr, 0, sizeof(addr));
	addr.sun_family = AF_UNIX;
	if ((size_t)snprintf(addr.sun_path, sizeof(addr.sun_path), "%s/%d.sock", dir,
			     t->pid) >= sizeof(addr.sun_path))
		return region_err_set(&t->err, -EINVAL, "socket path too long"), -1;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return region_err_set(&t->err, -EIO, "socket: %s", strerror(errno)), -1;
	if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) == 0)
		return fd;
	if (errno == ECONNREFUSED || errno == ENOENT)
		region_err_set(&t->err, -ECONNREFUSED,
			       "memctl is not serving in this process (socket %s: %s)",
			       addr.sun_path, strerror(errno));
	else if (errno == EAGAIN)
		region_err_set(&t->err, -EBUSY, "the process's control socket is full; try again");
	else
		region_err_set(&t->err, -EIO, "connect %s: %s", addr.sun_path, strerror(errno));
	close(fd);
	return -1;
}

/* Only a server of our own user is believed (docs/memctl.1, SECURITY). */
static int check_server(int fd, struct target *t)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
		return region_err_set(&t->err, -EIO, "cannot tell who serves the socket: %s",
				      strerror(errno));
	if (cred.uid != geteuid())
		return region_err_set(&t->err, -EACCES,
				      "refused: its socket is served by uid %u (pid %d), not by "
				      "you (uid %u); nothing sent", (unsigned)cred.uid,
				      (int)cred.pid, (unsigned)geteuid());
	return 0;
}

static int wait_for(int fd, short events, long long deadline)
{
	struct pollfd p = { .fd = fd, .events = events };
	long long left = deadline - now_ms();
	int rc;

	if (left <= 0)
		return 0;
	do
		rc = poll(&p, 1, left > 1000000 ? 1000000 : (int)left);
	while (rc < 0 && errno == EINTR);
	return rc;
}

static void timed_out(struct target *t)
{
	const struct fanout *f = t->f;

	if (t->sent && proto_verbs[f->verb].changes) {
		t->outcome_unknown = 1;
		region_err_set(&t->err, -ETIMEDOUT,
			       "no reply within %.1f s: outcome unknown (the process abandons "
			       "the request at its next safe point unless it has finished); "
			       "memctl status -p %d shows it", f->timeout_s, t->pid);
	} else {
		region_err_set(&t->err, -ETIMEDOUT,
			       "no reply within %.1f s (process stopped or wedged?)",
			       f->timeout_s);
	}
}

/* The request, carrying what is left of the deadline. 0 when it was
 * sent or the server closed on us (its reason is then waiting to be
 * read); -1 with t->err set otherwise. */
static int send_request(int fd, struct target *t, long long deadline)
{
	struct proto_req req = t->f->req;
	char line[PROTO_MAX_LINE + 1];
	size_t sent = 0;
	int n;

	req.timeout_ms = deadline - now_ms() > 0 ? deadline - now_ms() : 1;
	n = proto_format(&req, line, sizeof(line) - 1);
	if (n < 0)
		return region_err_set(&t->err, -E2BIG, "request too long"), -1;
	line[n++] = '\n';
	while (sent < (size_t)n) {
		ssize_t w;

		if (wait_for(fd, POLLOUT, deadline) <= 0)
			return timed_out(t), -1;
		w = send(fd, line + sent, (size_t)n - sent, MSG_NOSIGNAL);
		if (w < 0 && errno != EAGAIN && errno != EINTR)
			return 0;
		if (w > 0)
			sent += (size_t)w;
	}
	t->sent = 1;
	return 0;
}

/* One reply line, malloc'ed, or NULL with t->err set. */
static char *recv_line(int fd, struct target *t, long long deadline)
{
	size_t len = 0, cap = 4096;
	char *buf = malloc(cap), *b;

	while (buf != NULL) {
		ssize_t r;

		if (memchr(buf, '\n', len) != NULL) {
			*(char *)memchr(buf, '\n', len) = '\0';
			return buf;
		}
		if (len + 1 >= cap) {
			if (cap >= PROTO_MAX_REPLY) {
				region_err_set(&t->err, -E2BIG, "reply longer than %u bytes",
					       PROTO_MAX_REPLY);
				break;
			}
			b = realloc(buf, cap * 2);
			if (b == NULL)
				break;
			buf = b;
			cap *= 2;
		}
		if (wait_for(fd, POLLIN, deadline) <= 0) {
			timed_out(t);
			break;
		}
		r = recv(fd, buf + len, cap - 1 - len, 0);
		if (r < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		if (r <= 0) {
			region_err_set(&t->err, -EPROTO, "connection closed without a reply%s",
				       t->sent ? " (the process may have exited)" : "");
			break;
		}
		len += (size_t)r;
	}
	if (buf == NULL || t->err.code == 0)
		region_err_set(&t->err, -ENOMEM, "out of memory reading the reply");
	free(buf);
	return NULL;
}

/* What a reply must hold: key and kind, per part. */
enum jkind { J_INT, J_CODE, J_NUM, J_STR, J_BOOL, J_ARRAY, J_OBJECT_OR_NULL };
struct jfield {
	const char *key;
	enum jkind kind;
};

static const struct jfield error_fields[] = {
	{ "error", J_STR }, { "code", J_CODE }, { "message", J_STR }, { NULL, J_INT } };
static const struct jfield hello_fields[] = {
	{ "protocol", J_INT }, { "version", J_STR }, { "allocations", J_INT },
	{ "running", J_OBJECT_OR_NULL }, { "queued", J_INT }, { NULL, J_INT } };
static const struct jfield figure_fields[] = {
	{ "allocations", J_INT }, { "active_bytes", J_INT }, { "paused_bytes", J_INT },
	{ "staged_bytes", J_INT }, { "host_bytes", J_INT }, { NULL, J_INT } };
static const struct jfield status_fields[] = {
	{ "tags", J_ARRAY }, { "devices", J_ARRAY }, { "running", J_OBJECT_OR_NULL },
	{ "queued", J_INT }, { "last", J_OBJECT_OR_NULL }, { NULL, J_INT } };
static const struct jfield row_fields[] = {
	{ "tag", J_STR }, { "state", J_STR }, { NULL, J_INT } };
static const struct jfield running_fields[] = {
	{ "request", J_STR }, { "running_ms", J_NUM }, { "cancelled", J_BOOL },
	{ "client_waiting", J_BOOL }, { NULL, J_INT } };
static const struct jfield last_fields[] = {
	{ "request", J_STR }, { "ago_ms", J_NUM }, { "answered", J_BOOL }, { "ok", J_BOOL },
	{ "message", J_STR }, { NULL, J_INT } };
static const struct jfield change_fields[] = {
	{ "tags", J_STR }, { "ms", J_NUM }, { NULL, J_INT } };
static const struct jfield gate_fields[] = {
	{ "closed", J_BOOL }, { "waiting", J_INT }, { "paused_tags", J_STR },
	{ "lease_ms", J_NUM }, { "stuck_drains", J_INT }, { NULL, J_INT } };

static int has_kind(const json_t *v, enum jkind kind)
{
	switch (kind) {
	case J_INT: return json_is_integer(v) && json_integer_value(v) >= 0;
	case J_CODE: return json_is_integer(v) && json_integer_value(v) < 0 &&
			    json_integer_value(v) > -4096;
	case J_NUM: return json_is_number(v);
	case J_STR: return json_is_string(v);
	case J_BOOL: return json_is_boolean(v);
	case J_ARRAY: return json_is_array(v);
	case J_OBJECT_OR_NULL: return json_is_object(v) || json_is_null(v);
	}
	return 0;
}

/* NULL when `obj` holds every field; else the first one missing. */
static const char *lacks(const json_t *obj, const struct jfield *f)
{
	for (; f->key != NULL; f++)
		if (!has_kind(json_object_get(obj, f->key), f->kind))
			return f->key;
	return NULL;
}

static const char *lacks_gate(const json_t *r)
{
	const json_t *g = json_object_get(r, "gate");

	return json_is_object(g) ? lacks(g, gate_fields) : "gate";
}

static const char *lacks_status(const json_t *r)
{
	const char *bad = lacks(r, figure_fields);
	json_t *row, *job;
	size_t i;

	if (bad == NULL)
		bad = lacks(r, status_fields);
	json_array_foreach(json_object_get(r, "tags"), i, row)
		if (bad == NULL && (bad = lacks(row, row_fields)) == NULL)
			bad = lacks(row, figure_fields);
	if (bad == NULL && json_is_object(job = json_object_get(r, "running")))
		bad = lacks(job, running_fields);
	if (bad == NULL && json_is_object(job = json_object_get(r, "last")))
		bad = lacks(job, last_fields);
	if (bad == NULL)
		bad = lacks_gate(r);
	return bad;
}

static const char *lacks_change(const json_t *r, enum verb verb)
{
	unsigned figs = proto_verbs[verb].figures;
	const char *bad = lacks(r, change_fields);
	int f;

	for (f = 0; bad == NULL && f < FIG_COUNT; f++)
		if ((figs & FIG_BIT(f)) &&
		    !has_kind(json_object_get(r, proto_figures[f].wire), J_INT))
			bad = proto_figures[f].wire;
	return bad;
}

/* Keep an ok reply that holds what its verb promises; an error reply
 * becomes t->err. */
static void take_reply(struct target *t, const char *line)
{
	json_error_t jerr;
	json_t *r = json_loads(line, 0, &jerr), *ok = json_object_get(r, "ok");
	const char *bad;

	if (!json_is_object(r) || !json_is_boolean(ok)) {
		region_err_set(&t->err, -EPROTO, "malformed reply: %s",
			       r ? "no \"ok\"" : jerr.text);
	} else if (!json_is_true(ok)) {
		if ((bad = lacks(r, error_fields)) != NULL)
			region_err_set(&t->err, -EPROTO, "malformed error reply: no valid '%s'",
				       bad);
		else
			region_err_set(&t->err, (int)json_integer_value(json_object_get(r, "code")),
				       "%s", json_string_value(json_object_get(r, "message")));
	} else {
		enum verb sends = proto_verbs[t->f->verb].sends;

		bad = sends == VERB_STATUS ? lacks_status(r) :
		      sends == VERB_HELLO ? lacks(r, hello_fields) :
		      sends == VERB_UNGATE ? lacks_gate(r) : lacks_change(r, t->f->verb);
		if (bad != NULL)
			region_err_set(&t->err, -EPROTO, "malformed reply: no valid '%s' "
				       "(a memctl library of another version?)", bad);
	}
	t->reply = r;
}

void *fanout_talk(void *arg)
{
	struct target *t = arg;
	long long deadline = now_ms() + (long long)(t->f->timeout_s * 1000.0);
	long long grace = proto_verbs[t->f->verb].changes ? REPLY_GRACE_MS : 0;
	int fd = connect_target(t);
	char *line;

	if (fd < 0)
		return NULL;
	if (check_server(fd, t) == 0 && send_request(fd, t, deadline) == 0 &&
	    (line = recv_line(fd, t, deadline + grace)) != NULL) {
		take_reply(t, line);
		free(line);
	}
	close(fd);
	return NULL;
}
