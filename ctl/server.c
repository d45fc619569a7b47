/* SPDX-License-Identifier: Apache-2.0 */
/*
 * server.c - the control socket: a private Unix socket inside the process
 * that answers the protocol of docs/protocol.md.
 *
 * Started on first CUDA use, never at load time. The socket lives at
 * <dir>/<pid>.sock in a directory of mode 0700 owned by us (sockdir.c),
 * next to <pid>.info which names the group and command so the CLI can
 * select processes without talking to them. Peers must have our uid or be
 * root (SO_PEERCRED).
 *
 * One thread serves every client with poll and never blocks on any of
 * them: requests are bounded lines; replies wait in the client's buffer
 * until it reads them, and a client that leaves MAX_UNSENT_REPLIES of them
 * unread is not read any more, and is dropped once CLIENT_TIMEOUT_MS pass
 * without progress. hello and status are answered on this thread; change
 * requests go to the worker (worker.c), one at a time, while this thread
 * watches their clients: a client that leaves has its request abandoned,
 * not run late. The threads block every signal and install no handler.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "reply.h"
#include "server.h"
#include "sockdir.h"
#include "worker.h"

#define MAX_CLIENTS 64
#define CLIENT_TIMEOUT_MS 5000 /* to send a complete line, or to read our replies */
#define MAX_UNSENT_REPLIES 8
#define TICK_MS 1000

struct client {
	int fd;                /* -1: a free slot */
	int peer_done;         /* it shut its writing side: no more requests */
	int closing;           /* close once the output is sent */
	struct job *job;       /* its change request, queued or running */
	long long deadline_ms; /* the next line, or progress on our output, by then */
	size_t in_len;
	char in[PROTO_MAX_LINE + 2];
	struct jbuf out;       /* replies not yet sent */
	int unsent;            /* replies in `out`, wholly or partly unsent */
};

static struct {
	int started;     /* set once per process (and reset in a forked child) */
	pid_t owner;     /* pid that created the socket */
	int listen_fd;
	char sock_path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	char info_path[512];
	char command[256];
	struct ctl_config cfg;
	struct reply_ctx ctx;
	struct client clients[MAX_CLIENTS];
	int refused_logged;
	uint64_t prepared_at_count, last_count; /* MEMCTL_PREPARE's bookkeeping */
} server = { .listen_fd = -1 };

static void say(enum ctl_log level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* One line to the process's log, through the backend. */
static void say(enum ctl_log level, const char *fmt, ...)
{
	char line[768];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	server.ctx.be->log(level, line);
}

/* ---- one client ------------------------------------------------------ */

static void client_reset(struct client *c)
{
	c->fd = -1;
	c->peer_done = c->closing = 0;
	c->job = NULL;
	c->in_len = 0;
	jb_free(&c->out);
	jb_init_grow(&c->out, (size_t)MAX_UNSENT_REPLIES * PROTO_MAX_REPLY);
	c->unsent = 0;
}

/* Close now; its queued request never runs, its running one is told to
 * stop at its next safe point. */
static void client_drop(struct client *c)
{
	if (c->job != NULL)
		worker_abandon(c);
	close(c->fd);
	client_reset(c);
}

static void queue_reply(struct client *c, struct jbuf *r, const char *verb)
{
	if (r->overflow) {
		jb_free(r);
		jb_init_grow(r, 4096);
		reply_error(r, &server.ctx, verb, -E2BIG, "reply too large");
	}
	jb_raw(&c->out, r->buf ? r->buf : "");
	jb_raw(&c->out, "\n");
	c->unsent++;
	c->deadline_ms = worker_now_ms() + CLIENT_TIMEOUT_MS;
	jb_free(r);
}

/* Send what the socket takes now. -1 when the client is gone (dropped). */
static int client_flush(struct client *c)
{
	while (c->out.len > 0) {
		ssize_t w = send(c->fd, c->out.buf, c->out.len, MSG_NOSIGNAL | MSG_DONTWAIT);
		ssize_t i;

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return 0;
		if (w <= 0) {
			client_drop(c);
			return -1;
		}
		for (i = 0; i < w; i++)
			if (c->out.buf[i] == '\n')
				c->unsent--;
		memmove(c->out.buf, c->out.buf + w, c->out.len - (size_t)w + 1);
		c->out.len -= (size_t)w;
		c->deadline_ms = worker_now_ms() + CLIENT_TIMEOUT_MS;
	}
	return 0;
}

/* A change request goes to the worker; the client waits for it. */
static void submit(struct client *c, const struct proto_req *req)
{
	struct job *j = calloc(1, sizeof(*j));
	struct jbuf r;

	if (j == NULL) {
		jb_init_grow(&r, 4096);
		reply_error(&r, &server.ctx, proto_verbs[req->verb].wire, -ENOMEM,
			    "host memory: no room for the request");
		queue_reply(c, &r, "error");
		return;
	}
	j->req = *req;
	if (proto_format(req, j->line, sizeof(j->line)) < 0)
		snprintf(j->line, sizeof(j->line), "%s", proto_verbs[req->verb].wire);
	j->owner = c;
	c->job = j;
	worker_submit(j);
}

static void run_line(struct client *c, const char *line, size_t n)
{
	struct region_err err = { 0, "" };
	struct proto_req req;
	struct jbuf r;

	jb_init_grow(&r, PROTO_MAX_REPLY);
	if (proto_parse(line, n, &req, &err) < 0) {
		reply_error(&r, &server.ctx, "error", -EINVAL, err.msg);
	} else if (proto_verbs[req.verb].changes) {
		jb_free(&r);
		submit(c, &req);
		return;
	} else if (req.verb == VERB_HELLO) {
		reply_hello(&r, &server.ctx);
	} else if (req.verb == VERB_UNGATE) {
		/* At once, never behind a running request: it only ends a lease. */
		server.ctx.be->ungate();
		reply_ungate(&r, &server.ctx);
	} else {
		reply_status(&r, &server.ctx);
	}
	queue_reply(c, &r, proto_verbs[req.verb].wire);
}

/* Run the complete lines it sent while it may have more, send, and close
 * a client that is done. */
static void client_progress(struct client *c)
{
	char *nl;

	while (c->job == NULL && !c->closing && c->unsent < MAX_UNSENT_REPLIES &&
	       (nl = memchr(c->in, '\n', c->in_len)) != NULL) {
		size_t n = (size_t)(nl - c->in);

		run_line(c, c->in, n);
		memmove(c->in, nl + 1, c->in_len - n - 1);
		c->in_len -= n + 1;
	}
	if (c->job == NULL && !c->closing && c->in_len >= PROTO_MAX_LINE + 1 &&
	    memchr(c->in, '\n', c->in_len) == NULL) {
		struct jbuf r;

		jb_init_grow(&r, 4096);
		reply_error(&r, &server.ctx, "error", -E2BIG, "request longer than 4096 bytes");
		queue_reply(c, &r, "error");
		c->closing = 1;
	}
	if (client_flush(c) < 0)
		return;
	if (c->job == NULL && c->out.len == 0 &&
	    (c->closing || (c->peer_done && memchr(c->in, '\n', c->in_len) == NULL)))
		client_drop(c);
}

static int client_wants_input(const struct client *c)
{
	return c->job == NULL && !c->closing && !c->peer_done &&
	       c->unsent < MAX_UNSENT_REPLIES && c->in_len < sizeof(c->in) - 1;
}

static void client_read(struct client *c)
{
	ssize_t r;

	do
		r = recv(c->fd, c->in + c->in_len, sizeof(c->in) - 1 - c->in_len, 0);
	while (r < 0 && errno == EINTR);
	if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
		return;
	if (r < 0) {
		client_drop(c);
		return;
	}
	if (r == 0)
		c->peer_done = 1;
	c->in_len += (size_t)r;
}

/* Its deadline passed: it sent no line in time, or stopped reading. */
static void client_expire(struct client *c)
{
	struct jbuf r;

	if (c->out.len > 0) {
		say(CTL_INFO, "dropped a control client that stopped reading its replies");
		client_drop(c);
		return;
	}
	jb_init_grow(&r, 4096);
	reply_error(&r, &server.ctx, "error", -ETIMEDOUT, "timed out waiting for a request line");
	queue_reply(c, &r, "error");
	if (client_flush(c) == 0)
		client_drop(c);
}

/* ---- requests coming back from the worker ----------------------------- */

static void log_job(const struct job *j)
{
	char tags[TAGSET_TEXT_MAX];

	if (j->background) {
		tagset_format(&j->req.rq.tags, tags, sizeof(tags));
		if (j->rc == 0)
			say(CTL_INFO, "prepared %llu host bytes for '%s' in %.1f ms",
			    (unsigned long long)j->rep.host_new_bytes, tags, j->rep.ms);
		else if (j->rc != -ENOENT)
			say(CTL_WARN, "prepare '%s': %s", tags, j->err.msg);
	} else if (j->rc < 0) {
		say(CTL_INFO, "%s: %s%s", j->line, j->err.msg,
		    j->owner ? "" : " (its client had left)");
	} else {
		say(CTL_INFO, "%s: %llu allocations, %llu bytes in %.1f ms%s", j->line,
		    (unsigned long long)j->rep.allocations,
		    (unsigned long long)j->rep.device_bytes, j->rep.ms,
		    j->owner ? "" : "; its client had left");
	}
}

static void deliver_done(void)
{
	struct job *j = worker_take_done(), *next;

	for (; j != NULL; j = next) {
		struct client *c = j->owner;

		next = j->next;
		if (j->started)
			log_job(j);
		if (c != NULL && c->job == j) {
			struct jbuf r;

			jb_init_grow(&r, PROTO_MAX_REPLY);
			reply_change(&r, &server.ctx, j);
			c->job = NULL;
			queue_reply(c, &r, proto_verbs[j->req.verb].wire);
			client_progress(c);
		}
		free(j);
	}
}

/* MEMCTL_PREPARE: once tagged allocations stop changing for a tick,
 * prepare host buffers for those tags in the background. */
static void auto_prepare(void)
{
	uint64_t count = server.ctx.be->allocations();
	struct job *j;

	if (server.cfg.prepare != NULL && count != 0 && count == server.last_count &&
	    count != server.prepared_at_count && worker_idle() &&
	    (j = calloc(1, sizeof(*j))) != NULL) {
		server.prepared_at_count = count;
		j->background = 1;
		j->req.verb = VERB_PREPARE;
		j->req.rq.tags = *server.cfg.prepare;
		(void)proto_format(&j->req, j->line, sizeof(j->line));
		worker_submit(j);
	}
	server.last_count = count;
}

/* ---- accepting -------------------------------------------------------- */

/* Best effort and never waiting: one error line, then close. */
static void refuse(int fd, int code, const char *msg)
{
	struct jbuf r;

	jb_init_grow(&r, 4096);
	reply_error(&r, &server.ctx, "error", code, msg);
	jb_raw(&r, "\n");
	if (!r.overflow && send(fd, r.buf, r.len, MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
		say(CTL_DEBUG, "could not tell a refused client why");
	jb_free(&r);
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
	if (!server.refused_logged) {
		say(CTL_WARN, "refused a control connection from uid %u (pid %d)",
		    (unsigned)cred.uid, (int)cred.pid);
		server.refused_logged = 1;
	}
	return 0;
}

static void accept_one(void)
{
	int fd, i;

	fd = accept4(server.listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
	if (fd < 0)
		return;
	if (!peer_allowed(fd)) {
		refuse(fd, -EACCES, "permission denied: not the same user");
		return;
	}
	for (i = 0; i < MAX_CLIENTS; i++)
		if (server.clients[i].fd < 0) {
			server.clients[i].fd = fd;
			server.clients[i].deadline_ms = worker_now_ms() + CLIENT_TIMEOUT_MS;
			return;
		}
	refuse(fd, -EBUSY, "busy: too many clients, try again");
}

/* ---- the loop ---------------------------------------------------------- */

/* Fill the poll set; returns how long poll may sleep. */
static int poll_set(struct pollfd *pfd, struct client **who, int *n, long long next_tick)
{
	long long now = worker_now_ms(), wake = worker_expire(now);
	long long until = next_tick;
	int i;

	if (wake != 0 && wake < until)
		until = wake;
	*n = 0;
	pfd[*n] = (struct pollfd){ .fd = server.listen_fd, .events = POLLIN };
	who[(*n)++] = NULL;
	pfd[*n] = (struct pollfd){ .fd = worker_notify_fd(), .events = POLLIN };
	who[(*n)++] = NULL;
	for (i = 0; i < MAX_CLIENTS; i++) {
		struct client *c = &server.clients[i];

		if (c->fd < 0)
			continue;
		if (c->job == NULL && c->deadline_ms <= now) {
			client_expire(c);
			continue;
		}
		if (c->job == NULL && c->deadline_ms < until)
			until = c->deadline_ms;
		/* No events still reports a hang-up: a client that leaves
		 * while its request runs is noticed at once. */
		pfd[*n] = (struct pollfd){ .fd = c->fd,
			.events = (short)((client_wants_input(c) ? POLLIN : 0) |
					  (c->out.len ? POLLOUT : 0)) };
		who[(*n)++] = c;
	}
	return until <= now ? 0 : (int)(until - now);
}

static void serve_ready(struct pollfd *pfd, struct client **who, int n)
{
	int i;

	if (pfd[1].revents & POLLIN)
		deliver_done();
	for (i = 2; i < n; i++) {
		struct client *c = who[i];

		if (pfd[i].revents == 0 || c->fd != pfd[i].fd)
			continue;
		if (pfd[i].revents & (POLLHUP | POLLERR | POLLNVAL)) {
			/* It left: a request not begun is dropped, not run
			 * late; a running one is abandoned. */
			client_drop(c);
			continue;
		}
		if (pfd[i].revents & POLLIN)
			client_read(c);
		if (c->fd >= 0)
			client_progress(c);
	}
	if (pfd[0].revents & POLLIN)
		accept_one();
}

static void *server_main(void *arg)
{
	struct pollfd pfd[MAX_CLIENTS + 2];
	struct client *who[MAX_CLIENTS + 2];
	long long next_tick = worker_now_ms() + TICK_MS;

	(void)arg;
	for (;;) {
		int n, wait = poll_set(pfd, who, &n, next_tick);
		int rc = poll(pfd, (nfds_t)n, wait);

		if (rc < 0 && errno != EINTR)
			break;
		if (rc > 0)
			serve_ready(pfd, who, n);
		if (worker_now_ms() >= next_tick) {
			auto_prepare();
			next_tick = worker_now_ms() + TICK_MS;
		}
	}
	say(CTL_WARN, "control server stopped: %s", strerror(errno));
	return NULL;
}

/* ---- starting ------------------------------------------------------------ */

static int make_dir(const char *dir)
{
	struct region_err err;

	if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
		say(CTL_WARN, "cannot create %s: %s", dir, strerror(errno));
		return -1;
	}
	if (sockdir_check(dir, getuid(), &err) < 0) {
		say(CTL_WARN, "%s; no control socket", err.msg);
		return -1;
	}
	return 0;
}

static void read_command(void)
{
	int fd = open("/proc/self/cmdline", O_RDONLY | O_CLOEXEC);
	ssize_t n, i;

	server.command[0] = '\0';
	if (fd < 0)
		return;
	n = read(fd, server.command, sizeof(server.command) - 1);
	close(fd);
	if (n <= 0)
		return;
	/* The arguments' separators become spaces, and so does any control
	 * character in them: a newline would start a line of its own in
	 * <pid>.info ("group=..."), which the CLI reads line by line. */
	for (i = 0; i < n - 1; i++)
		if ((unsigned char)server.command[i] < 0x20 || server.command[i] == 0x7f)
			server.command[i] = ' ';
	server.command[n] = '\0';
}

static void write_info(void)
{
	char tmp[600];
	FILE *f;

	snprintf(tmp, sizeof(tmp), "%s.tmp", server.info_path);
	f = fopen(tmp, "we");
	if (f == NULL)
		return;
	fprintf(f, "pid=%d\ngroup=%s\ncommand=%s\n", (int)getpid(), server.cfg.group,
		server.command);
	if (fclose(f) == 0)
		rename(tmp, server.info_path);
	else
		unlink(tmp);
}

static void remove_files(void)
{
	if (server.owner != getpid())
		return; /* a forked child never removes the parent's socket */
	unlink(server.sock_path);
	unlink(server.info_path);
}

/* The socket and its info file; the listening descriptor, or -1. The
 * socket is bound under a temporary name and renamed into place once it
 * listens: a <pid>.sock that refuses connections is then always a dead
 * process's, which the CLI removes (docs/memctl.1). */
static int open_socket(const char *dir)
{
	struct sockaddr_un addr;
	int fd, n;

	n = snprintf(server.sock_path, sizeof(server.sock_path), "%s/%d.sock", dir,
		     (int)getpid());
	memset(&addr, 0, sizeof(addr));
	addr.sun_family = AF_UNIX;
	if (n < 0 || (size_t)n + 4 >= sizeof(addr.sun_path)) {
		say(CTL_WARN, "socket path too long under %s", dir);
		return -1;
	}
	snprintf(server.info_path, sizeof(server.info_path), "%s/%d.info", dir, (int)getpid());
	memcpy(addr.sun_path, server.sock_path, (size_t)n);
	memcpy(addr.sun_path + n, ".new", 5);
	/* Our pid is ours: whatever sits at these paths is a dead process's. */
	unlink(addr.sun_path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0) {
		say(CTL_WARN, "control socket: %s", strerror(errno));
		return -1;
	}
	if (bind(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0 ||
	    chmod(addr.sun_path, 0600) < 0 || listen(fd, 64) < 0 ||
	    rename(addr.sun_path, server.sock_path) < 0) {
		say(CTL_WARN, "control socket %s: %s", server.sock_path, strerror(errno));
		close(fd);
		unlink(addr.sun_path);
		return -1;
	}
	return fd;
}

/* The worker and the socket thread, with every signal blocked: signals
 * are the application's business. */
static int start_threads(void)
{
	sigset_t all, old;
	pthread_attr_t attr;
	pthread_t tid;
	int rc;

	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	rc = worker_start(server.ctx.be->request);
	if (rc == 0) {
		pthread_attr_init(&attr);
		pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
		rc = -pthread_create(&tid, &attr, server_main, NULL);
		pthread_attr_destroy(&attr);
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return rc;
}

static void start(const struct ctl_config *cfg, const struct ctl_backend *be)
{
	int i;

	server.cfg = *cfg;
	server.ctx = (struct reply_ctx){ cfg->group, server.command, be };
	for (i = 0; i < MAX_CLIENTS; i++)
		client_reset(&server.clients[i]);
	if (make_dir(cfg->runtime_dir) < 0)
		return;
	server.listen_fd = open_socket(cfg->runtime_dir);
	if (server.listen_fd < 0)
		return;
	server.owner = getpid();
	read_command();
	write_info();
	atexit(remove_files);
	if (start_threads() < 0) {
		say(CTL_WARN, "cannot start the control threads");
		close(server.listen_fd);
		server.listen_fd = -1;
		remove_files();
	}
}

void ctl_server_start(const struct ctl_config *cfg, const struct ctl_backend *be)
{
	if (__atomic_load_n(&server.started, __ATOMIC_ACQUIRE))
		return;
	if (__atomic_exchange_n(&server.started, 1, __ATOMIC_ACQ_REL))
		return;
	if (cfg->serve)
		start(cfg, be);
}

void *ctl_inproc_begin(enum verb verb, const struct region_req *rq)
{
	struct proto_req req = { .verb = verb, .rq = *rq };

	return worker_inproc_begin(&req);
}

void ctl_inproc_end(void *token, int rc, const struct region_report *rep,
		    const struct region_err *err)
{
	worker_inproc_end(token, rc, rep, err);
}

void ctl_server_after_fork(void)
{
	int i;

	if (server.listen_fd >= 0)
		close(server.listen_fd);
	server.listen_fd = -1;
	for (i = 0; i < MAX_CLIENTS; i++) {
		struct client *c = &server.clients[i];

		if (c->fd >= 0)
			close(c->fd);
		/* The socket thread may have been growing or freeing a reply
		 * buffer when the parent forked: forget the buffers (a few
		 * bytes left behind) rather than free them, as the registry
		 * and the worker forget theirs. */
		memset(c, 0, sizeof(*c));
		c->fd = -1;
	}
	worker_after_fork();
	__atomic_store_n(&server.started, 0, __ATOMIC_RELEASE);
}
