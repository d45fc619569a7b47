/* SPDX-License-Identifier: Apache-2.0 */
/*
 * tenant.h - what the suites that drive tenant processes from outside
 * share (test_e2e_ctl, test_e2e_gate_cli, test_e2e_static): starting a
 * tenant program with a pipe to each side, asking it a line and reading
 * its answer, telling it to quit; running the memctl CLI; talking to a
 * tenant's control socket directly.
 *
 * A suite that includes it fills `build` (the build folder, from
 * MEMCTL_BUILD) and `dir` (the runtime directory it sets as
 * MEMCTL_RUNTIME_DIR) in its .init. Every helper asserts: a tenant that
 * does not start or answer fails the test.
 */
#ifndef TEST_E2E_TENANT_H
#define TEST_E2E_TENANT_H

#include <criterion/criterion.h>
#include <criterion/new/assert.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

static char dir[64], build[512];

struct tenant {
	pid_t pid;
	FILE *in, *out; /* its standard input and output */
};

/* Starts argv[0] with argv, in `group` (or none), with `env` ("NAME=value"
 * strings, NULL-terminated, or NULL) added to its environment; waits for
 * its first line, which must start with `first`. */
static inline struct tenant tenant_start(char *const argv[], const char *group,
					 const char *const *env, const char *first)
{
	int to[2], from[2];
	struct tenant t;
	char line[64];

	cr_assert(eq(int, pipe(to), 0));
	cr_assert(eq(int, pipe(from), 0));
	t.pid = fork();
	if (t.pid == 0) {
		/* A test that fails or times out leaves no tenant behind, even
		 * a stopped one. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		dup2(to[0], 0);
		dup2(from[1], 1);
		close(to[1]);
		close(from[0]);
		if (group)
			setenv("MEMCTL_GROUP", group, 1);
		for (; env != NULL && *env != NULL; env++)
			putenv(strdup(*env));
		execv(argv[0], argv);
		_exit(127);
	}
	close(to[0]);
	close(from[1]);
	t.in = fdopen(to[1], "w");
	t.out = fdopen(from[0], "r");
	setvbuf(t.in, NULL, _IOLBF, 0);
	cr_assert(not(eq(ptr, fgets(line, sizeof(line), t.out), NULL)), "%s did not start",
		  argv[0]);
	cr_assert(eq(int, strncmp(line, first, strlen(first)), 0), "%s", line);
	return t;
}

/* Sends the line `cmd`; its answer, without the newline, lands in out. */
static inline void ask(struct tenant *t, const char *cmd, char *out, size_t len)
{
	fprintf(t->in, "%s\n", cmd);
	fflush(t->in);
	cr_assert(not(eq(ptr, fgets(out, (int)len, t->out), NULL)), "no answer to %s", cmd);
	out[strcspn(out, "\n")] = '\0';
}

/* Tells the tenant to quit and waits for it: its exit status, -1 when a
 * signal ended it. */
static inline int tenant_quit(struct tenant *t)
{
	int st;

	fprintf(t->in, "quit\n");
	fclose(t->in);
	fclose(t->out);
	waitpid(t->pid, &st, 0);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* Runs the shell command `cmd`; its output lands in out, its exit status
 * is returned. */
static inline int run(char *out, size_t len, const char *cmd)
{
	size_t n = 0, r;
	FILE *p;
	int st;

	p = popen(cmd, "r");
	cr_assert(not(eq(ptr, p, NULL)));
	while (n + 1 < len && (r = fread(out + n, 1, len - 1 - n, p)) > 0)
		n += r;
	out[n] = '\0';
	st = pclose(p);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static inline int cli(char *out, size_t len, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Runs the memctl CLI with the arguments fmt says (through the shell);
 * its output, stderr included, lands in out, its exit status is returned. */
static inline int cli(char *out, size_t len, const char *fmt, ...)
{
	char args[512], cmd[1200];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(args, sizeof(args), fmt, ap);
	va_end(ap);
	snprintf(cmd, sizeof(cmd), "%s/memctl %s 2>&1", build, args);
	return run(out, len, cmd);
}

/* A connection to pid's control socket. */
static inline int raw_connect(pid_t pid)
{
	struct sockaddr_un addr;
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);

	memset(&addr, 0, sizeof(addr));
	addr.sun_family = AF_UNIX;
	snprintf(addr.sun_path, sizeof(addr.sun_path), "%s/%d.sock", dir, (int)pid);
	cr_assert(eq(int, connect(fd, (struct sockaddr *)&addr, sizeof(addr)), 0),
		  "%s", strerror(errno));
	return fd;
}

/* Reads one reply line (or what comes before the peer closes). */
static inline void raw_reply(int fd, char *buf, size_t len)
{
	size_t n = 0;

	while (n + 1 < len) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		ssize_t r;

		cr_assert(eq(int, poll(&p, 1, 10000), 1), "no reply");
		r = recv(fd, buf + n, len - 1 - n, 0);
		if (r <= 0)
			break;
		n += (size_t)r;
		if (memchr(buf, '\n', n))
			break;
	}
	buf[n] = '\0';
}

/* One request `req` to pid's socket, on a connection of its own. */
static inline void roundtrip(pid_t pid, const char *req, char *buf, size_t len)
{
	int fd = raw_connect(pid);

	cr_assert(eq(long, (long)send(fd, req, strlen(req), 0), (long)strlen(req)));
	raw_reply(fd, buf, len);
	close(fd);
}

/* Ask hello until its reply holds `needle`: waiting for an event (the
 * suite's timeout bounds it), never guessing a duration. */
static inline const char *wait_hello(pid_t pid, const char *needle)
{
	static char buf[8192];

	for (;;) {
		roundtrip(pid, "hello\n", buf, sizeof(buf));
		if (strstr(buf, needle) != NULL)
			return buf;
		usleep(5000);
	}
}

#endif
