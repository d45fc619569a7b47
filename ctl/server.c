/* SPDX-License-Identifier: Apache-2.0 */
/*
 * server.c - the control thread: a private Unix socket inside the process
 * that answers the protocol of docs/protocol.md.
 *
 * Started on first CUDA use, never at load time. The socket lives at
 * <dir>/<pid>.sock in a directory of mode 0700 owned by us (we refuse one
 * that is not), next to <pid>.info which names the group and command so the
 * CLI can select processes without talking to them. Peers must have our uid
 * or be root (SO_PEERCRED). Requests are bounded lines; a client that is
 * slow to send times out on its own without holding up others, because the
 * thread multiplexes readers with poll and executes complete requests one
 * at a time. Replies are sent with MSG_NOSIGNAL: a client that went away
 * mid-command never stops the command. The thread blocks every signal and
 * installs no handler.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "drv_cuda.h"
#include "log.h"
#include "preload.h"
#include "proto.h"
#include "region.h"
#include "server.h"

#define MAX_CLIENTS 64
#define READ_TIMEOUT_MS 5000
#define TICK_MS 1000
#define MAX_TAG_ROWS 64

struct client {
	int fd;
	size_t len;
	long long deadline_ms;
	char buf[PROTO_MAX_LINE + 2];
};

static struct {
	int started;     /* set once per process (and reset in a forked child) */
	pid_t owner;     /* pid that created the socket */
	int listen_fd;
	char sock_path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	char info_path[512];
	char command[256];
	const struct options *opts;
	struct client clients[MAX_CLIENTS];
	int refused_logged;
	uint64_t prepared_at_count, last_count;
} S = { .listen_fd = -1 };

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- the request handlers ---------------------------------------------- */

static void reply_head(struct jbuf *j, int ok, const char *verb)
{
	jb_raw(j, "{");
	jb_bool(j, "ok", ok);
	jb_str(j, "verb", verb);
	jb_i64(j, "pid", (int64_t)getpid());
	jb_str(j, "group", S.opts->group);
}

static void reply_error(struct jbuf *j, const char *verb, int code, const char *msg)
{
	reply_head(j, 0, verb);
	jb_str(j, "error", proto_errname(code));
	jb_i64(j, "code", code);
	jb_str(j, "message", msg);
	jb_raw(j, "}");
}

static void add_devices(struct jbuf *j)
{
	const struct drv_ops *ops = region_count() ? drv_cuda_load() : NULL;
	uint32_t mask = ops ? region_devices() : 0;
	int d;

	jb_open(j, "devices", '[');
	for (d = 0; d < REGION_MAX_DEV; d++) {
		size_t fr = 0, tot = 0;

		if (!(mask & (1u << d)) || ops->mem_info(d, &fr, &tot) < 0)
			continue;
		jb_open(j, NULL, '{');
		jb_i64(j, "id", d);
		jb_u64(j, "free_bytes", fr);
		jb_u64(j, "total_bytes", tot);
		jb_close(j, '}');
	}
	jb_close(j, ']');
}

static void do_hello(struct jbuf *j)
{
	reply_head(j, 1, "hello");
	jb_i64(j, "protocol", PROTO_VERSION);
	jb_str(j, "version", MEMCTL_VERSION);
	jb_str(j, "command", S.command);
	jb_i64(j, "uid", (int64_t)getuid());
	jb_i64(j, "driver_devices", drv_cuda_device_count());
	jb_u64(j, "allocations", region_count());
	jb_raw(j, "}");
}

static const char *state_word(const struct region_tag_stat *r)
{
	if (r->paused_bytes == 0)
		return "active";
	if (r->active_bytes != 0)
		return "mixed";
	return r->staged_bytes ? "staged" : "paused";
}

static void do_status(struct jbuf *j)
{
	struct region_tag_stat rows[MAX_TAG_ROWS];
	uint64_t alloc = 0, active = 0, paused = 0, staged = 0, host = 0;
	int n = 0, i, truncated;

	truncated = region_tag_stats(rows, MAX_TAG_ROWS, &n) == -E2BIG;
	for (i = 0; i < n; i++) {
		alloc += rows[i].allocations;
		active += rows[i].active_bytes;
		paused += rows[i].paused_bytes;
		staged += rows[i].staged_bytes;
		host += rows[i].host_bytes;
	}
	/* Totals first, so a reader that takes the first match of a key
	 * gets the process's figures, not a tag's. */
	reply_head(j, 1, "status");
	jb_u64(j, "allocations", alloc);
	jb_u64(j, "active_bytes", active);
	jb_u64(j, "paused_bytes", paused);
	jb_u64(j, "staged_bytes", staged);
	jb_u64(j, "host_bytes", host);
	jb_bool(j, "truncated", truncated);
	jb_open(j, "tags", '[');
	for (i = 0; i < n; i++) {
		jb_open(j, NULL, '{');
		jb_str(j, "tag", rows[i].name);
		jb_str(j, "state", state_word(&rows[i]));
		jb_u64(j, "allocations", rows[i].allocations);
		jb_u64(j, "active_bytes", rows[i].active_bytes);
		jb_u64(j, "paused_bytes", rows[i].paused_bytes);
		jb_u64(j, "staged_bytes", rows[i].staged_bytes);
		jb_u64(j, "host_bytes", rows[i].host_bytes);
		jb_close(j, '}');
	}
	jb_close(j, ']');
	add_devices(j);
	jb_raw(j, "}");
}

static void do_change(struct jbuf *j, const struct proto_req *req)
{
	const char *verb = proto_verb_name(req->verb);
	struct region_report rep;
	struct region_err err = { 0, "" };
	int rc;

	switch (req->verb) {
	case VERB_PAUSE:
		rc = preload_request(REQ_PAUSE, req->tags,
				     req->stage_cpu ? MEMCTL_STAGE_CPU : 0, &rep, &err);
		break;
	case VERB_RESUME:
		rc = preload_request(REQ_RESUME, req->tags,
				     req->release_host ? MEMCTL_RELEASE_HOST : 0, &rep, &err);
		break;
	case VERB_PREPARE:
		rc = preload_request(REQ_PREPARE, req->tags, 0, &rep, &err);
		break;
	default:
		rc = preload_request(REQ_RELEASE_HOST, req->tags, 0, &rep, &err);
		break;
	}
	if (rc < 0) {
		memctl_log_info("%s tags=%s: %s", verb, req->tags[0] ? req->tags : "*", err.msg);
		reply_error(j, verb, rc, err.msg);
		return;
	}
	memctl_log_info("%s tags=%s: %llu allocations, %llu bytes in %.1f ms", verb,
			req->tags[0] ? req->tags : "*", (unsigned long long)rep.allocations,
			(unsigned long long)rep.device_bytes, rep.ms);
	reply_head(j, 1, verb);
	jb_str(j, "tags", req->tags[0] ? req->tags : "*");
	jb_u64(j, "allocations", rep.allocations);
	if (req->verb == VERB_PAUSE || req->verb == VERB_RESUME)
		jb_u64(j, req->verb == VERB_PAUSE ? "released_bytes" : "restored_bytes",
		       rep.device_bytes);
	jb_u64(j, "staged_bytes", rep.copied_bytes);
	if (req->verb == VERB_RELEASE_HOST)
		jb_u64(j, "host_freed_bytes", rep.host_freed_bytes);
	else
		jb_u64(j, "host_new_bytes", rep.host_new_bytes);
	jb_double(j, "ms", rep.ms);
	jb_raw(j, "}");
}

/* Run one complete request line and write the reply into j. */
static void execute(const char *line, size_t len, struct jbuf *j)
{
	struct proto_req req;
	char err[256];

	if (proto_parse(line, len, &req, err, sizeof(err)) < 0) {
		reply_error(j, "error", -EINVAL, err);
		return;
	}
	switch (req.verb) {
	case VERB_HELLO:
		do_hello(j);
		break;
	case VERB_STATUS:
		do_status(j);
		break;
	case VERB_PAUSE:
	case VERB_RESUME:
	case VERB_PREPARE:
	case VERB_RELEASE_HOST:
		do_change(j, &req);
		break;
	}
	if (j->overflow) {
		jb_init(j, j->buf, j->cap);
		reply_error(j, proto_verb_name(req.verb), -E2BIG, "reply too large");
	}
}

/* ---- the socket ------------------------------------------------------- */

static void send_line(int fd, const char *s, size_t n)
{
	/* Best effort and bounded: a peer that stopped reading loses its
	 * reply, and nothing else happens. */
	while (n > 0) {
		struct pollfd p = { .fd = fd, .events = POLLOUT };
		ssize_t w;

		if (poll(&p, 1, READ_TIMEOUT_MS) <= 0)
			return;
		w = send(fd, s, n, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (w < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			return;
		}
		s += w;
		n -= (size_t)w;
	}
}

static void reply_and_close(int fd, int code, const char *msg)
{
	char buf[512];
	struct jbuf j;

	jb_init(&j, buf, sizeof(buf) - 1);
	reply_error(&j, "error", code, msg);
	jb_raw(&j, "\n");
	send_line(fd, buf, j.len);
	close(fd);
}

static int peer_allowed(int fd)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
		return 0;
	if (cred.uid == getuid() || cred.uid == 0)
		return 1;
	if (!S.refused_logged) {
		memctl_log_warnx("refused a control connection from uid %u (pid %d)",
				 (unsigned)cred.uid, (int)cred.pid);
		S.refused_logged = 1;
	}
	return 0;
}

static void accept_one(void)
{
	int fd, i;

	fd = accept4(S.listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
	if (fd < 0)
		return;
	if (!peer_allowed(fd)) {
		reply_and_close(fd, -EACCES, "permission denied: not the same user");
		return;
	}
	for (i = 0; i < MAX_CLIENTS; i++)
		if (S.clients[i].fd < 0) {
			S.clients[i].fd = fd;
			S.clients[i].len = 0;
			S.clients[i].deadline_ms = now_ms() + READ_TIMEOUT_MS;
			return;
		}
	reply_and_close(fd, -EBUSY, "busy: too many clients, try again");
}

static void drop(struct client *c)
{
	close(c->fd);
	c->fd = -1;
	c->len = 0;
}

/* Read what is there; run every complete line; drop on EOF or overflow. */
static void serve(struct client *c)
{
	static char reply[PROTO_MAX_REPLY];

	for (;;) {
		ssize_t r;
		char *nl;

		r = recv(c->fd, c->buf + c->len, sizeof(c->buf) - 1 - c->len, 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 && errno == EAGAIN)
			return;
		if (r <= 0) {
			drop(c);
			return;
		}
		c->len += (size_t)r;
		while ((nl = memchr(c->buf, '\n', c->len)) != NULL) {
			size_t n = (size_t)(nl - c->buf);
			struct pollfd hup = { .fd = c->fd, .events = 0 };
			struct jbuf j;

			/* A client that closed before its command began (the
			 * CLI after a timeout) has given up on it: running it
			 * now would surprise whoever retries. A half-close
			 * (shutdown of writing) is not giving up. */
			if (poll(&hup, 1, 0) == 1 && (hup.revents & POLLHUP)) {
				memctl_log_info("client left before its request ran; dropped");
				drop(c);
				return;
			}

			jb_init(&j, reply, sizeof(reply) - 1);
			execute(c->buf, n, &j);
			jb_raw(&j, "\n");
			send_line(c->fd, reply, j.len);
			memmove(c->buf, nl + 1, c->len - n - 1);
			c->len -= n + 1;
			c->deadline_ms = now_ms() + READ_TIMEOUT_MS;
		}
		if (c->len >= PROTO_MAX_LINE + 1) {
			reply_and_close(c->fd, -E2BIG, "request longer than 4096 bytes");
			c->fd = -1;
			c->len = 0;
			return;
		}
	}
}

/* MEMCTL_PREPARE: once tagged allocations stop changing for a tick,
 * prepare host buffers for those tags in the background. */
static void auto_prepare(void)
{
	uint64_t count = region_count();
	struct region_report rep;
	struct region_err err;

	if (S.opts->prepare[0] == '\0' || count == 0)
		return;
	if (count == S.last_count && count != S.prepared_at_count) {
		S.prepared_at_count = count;
		if (preload_request(REQ_PREPARE, S.opts->prepare, 0, &rep, &err) == 0)
			memctl_log_info("prepared %llu host bytes for '%s' in %.1f ms",
					(unsigned long long)rep.host_new_bytes,
					S.opts->prepare, rep.ms);
		else if (err.code != -ENOENT)
			memctl_log_warnx("prepare '%s': %s", S.opts->prepare, err.msg);
	}
	S.last_count = count;
}

static void *server_main(void *arg)
{
	struct pollfd pfd[MAX_CLIENTS + 1];
	struct client *who[MAX_CLIENTS + 1];
	long long next_tick = now_ms() + TICK_MS;

	(void)arg;
	for (;;) {
		long long now = now_ms(), wait = next_tick - now;
		int n = 0, i, rc;

		pfd[n].fd = S.listen_fd;
		pfd[n].events = POLLIN;
		who[n++] = NULL;
		for (i = 0; i < MAX_CLIENTS; i++) {
			struct client *c = &S.clients[i];

			if (c->fd < 0)
				continue;
			if (c->deadline_ms <= now) {
				reply_and_close(c->fd, -ETIMEDOUT, "timed out waiting for a request line");
				c->fd = -1;
				continue;
			}
			if (c->deadline_ms - now < wait)
				wait = c->deadline_ms - now;
			pfd[n].fd = c->fd;
			pfd[n].events = POLLIN;
			who[n++] = c;
		}
		rc = poll(pfd, (nfds_t)n, wait < 0 ? 0 : (int)wait);
		if (rc < 0 && errno != EINTR)
			break;
		for (i = 1; rc > 0 && i < n; i++)
			if (pfd[i].revents)
				serve(who[i]);
		if (rc > 0 && (pfd[0].revents & POLLIN))
			accept_one();
		if (now_ms() >= next_tick) {
			auto_prepare();
			next_tick = now_ms() + TICK_MS;
		}
	}
	memctl_log_warn("control server stopped");
	return NULL;
}

/* The socket directory must be ours alone. */
static int check_dir(const char *dir)
{
	struct stat st;

	if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
		memctl_log_warn("cannot create %s", dir);
		return -1;
	}
	if (lstat(dir, &st) < 0) {
		memctl_log_warn("cannot stat %s", dir);
		return -1;
	}
	if (!S_ISDIR(st.st_mode) || st.st_uid != getuid() || (st.st_mode & 0077)) {
		memctl_log_warnx("refusing socket directory %s: not a directory of mode 0700 "
				 "owned by uid %u", dir, (unsigned)getuid());
		return -1;
	}
	return 0;
}

static void read_command(void)
{
	int fd = open("/proc/self/cmdline", O_RDONLY | O_CLOEXEC);
	ssize_t n, i;

	S.command[0] = '\0';
	if (fd < 0)
		return;
	n = read(fd, S.command, sizeof(S.command) - 1);
	close(fd);
	if (n <= 0)
		return;
	for (i = 0; i < n - 1; i++)
		if (S.command[i] == '\0')
			S.command[i] = ' ';
	S.command[n] = '\0';
}

static void write_info(void)
{
	char tmp[600];
	FILE *f;

	snprintf(tmp, sizeof(tmp), "%s.tmp", S.info_path);
	f = fopen(tmp, "we");
	if (f == NULL)
		return;
	fprintf(f, "pid=%d\ngroup=%s\ncommand=%s\n", (int)getpid(), S.opts->group, S.command);
	if (fclose(f) == 0)
		rename(tmp, S.info_path);
	else
		unlink(tmp);
}

static void remove_files(void)
{
	if (S.owner != getpid())
		return; /* a forked child never removes the parent's socket */
	unlink(S.sock_path);
	unlink(S.info_path);
}

static void start(const struct options *o)
{
	struct sockaddr_un addr;
	sigset_t all, old;
	pthread_attr_t attr;
	pthread_t tid;
	int fd, i, n;

	S.opts = o;
	for (i = 0; i < MAX_CLIENTS; i++)
		S.clients[i].fd = -1;
	if (check_dir(o->runtime_dir) < 0)
		return;
	n = snprintf(S.sock_path, sizeof(S.sock_path), "%s/%d.sock", o->runtime_dir,
		     (int)getpid());
	if (n < 0 || (size_t)n >= sizeof(S.sock_path)) {
		memctl_log_warnx("socket path too long under %s", o->runtime_dir);
		return;
	}
	snprintf(S.info_path, sizeof(S.info_path), "%s/%d.info", o->runtime_dir,
		 (int)getpid());
	/* Our pid is ours: whatever sits at this path is a dead process's. */
	unlink(S.sock_path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0) {
		memctl_log_warn("control socket");
		return;
	}
	memset(&addr, 0, sizeof(addr));
	addr.sun_family = AF_UNIX;
	memcpy(addr.sun_path, S.sock_path, strlen(S.sock_path) + 1);
	if (bind(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0 ||
	    chmod(S.sock_path, 0600) < 0 || listen(fd, 64) < 0) {
		memctl_log_warn("control socket %s", S.sock_path);
		close(fd);
		unlink(S.sock_path);
		return;
	}
	S.listen_fd = fd;
	S.owner = getpid();
	read_command();
	write_info();
	atexit(remove_files);

	/* The thread inherits a mask that blocks every signal: signals are the
	 * application's business. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	if (pthread_create(&tid, &attr, server_main, NULL) != 0) {
		memctl_log_warnx("cannot start the control thread");
		close(fd);
		S.listen_fd = -1;
		remove_files();
	}
	pthread_attr_destroy(&attr);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
}

void ctl_server_start(const struct options *o)
{
	if (__atomic_load_n(&S.started, __ATOMIC_ACQUIRE))
		return;
	if (__atomic_exchange_n(&S.started, 1, __ATOMIC_ACQ_REL))
		return;
	if (o->socket)
		start(o);
}

void ctl_server_after_fork(void)
{
	int i;

	if (S.listen_fd >= 0)
		close(S.listen_fd);
	S.listen_fd = -1;
	for (i = 0; i < MAX_CLIENTS; i++)
		if (S.clients[i].fd >= 0) {
			close(S.clients[i].fd);
			S.clients[i].fd = -1;
		}
	__atomic_store_n(&S.started, 0, __ATOMIC_RELEASE);
}
