/* SPDX-License-Identifier: Apache-2.0 */
/*
 * log.c - see log.h. errno is preserved across every call.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

static enum log_level level = LOG_WARN;

void memctl_log_set_level(enum log_level l)
{
	level = l;
}

/* Write to stderr without raising SIGPIPE: a process whose stderr is a pipe
 * nobody reads must not be killed by a message of memctl's (its own writes
 * are its business). SIGPIPE is blocked in this thread for the write, and
 * the one the write raised is taken back, unless one was pending before. */
static void write_stderr(const char *buf, size_t n)
{
	static const struct timespec now = { 0, 0 };
	sigset_t pipe_only, old, pending;
	int was_pending, failed;

	sigemptyset(&pipe_only);
	sigaddset(&pipe_only, SIGPIPE);
	sigemptyset(&pending);
	(void)sigpending(&pending);
	was_pending = sigismember(&pending, SIGPIPE) == 1;
	pthread_sigmask(SIG_BLOCK, &pipe_only, &old);
	while ((failed = write(STDERR_FILENO, buf, n) < 0) && errno == EINTR)
		;
	if (failed && errno == EPIPE && !was_pending)
		(void)sigtimedwait(&pipe_only, NULL, &now);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
}

static void emit(enum log_level at, int with_errno, const char *fmt, va_list ap)
{
	char buf[512];
	int saved = errno, n, m;

	if (at > level)
		return;
	n = snprintf(buf, sizeof(buf), "memctl[%d]: ", (int)getpid());
	m = vsnprintf(buf + n, sizeof(buf) - (size_t)n, fmt, ap);
	if (m < 0)
		m = 0;
	n += m;
	if (n > (int)sizeof(buf) - 2)
		n = (int)sizeof(buf) - 2;
	if (with_errno) {
		m = snprintf(buf + n, sizeof(buf) - (size_t)n, ": %s", strerror(saved));
		n += m > 0 ? m : 0;
		if (n > (int)sizeof(buf) - 2)
			n = (int)sizeof(buf) - 2;
	}
	buf[n++] = '\n';
	write_stderr(buf, (size_t)n);
	errno = saved;
}

#define LOG_FN(name, at, with_errno)              \
	void name(const char *fmt, ...)            \
	{                                          \
		va_list ap;                        \
		va_start(ap, fmt);                 \
		emit(at, with_errno, fmt, ap);     \
		va_end(ap);                        \
	}

LOG_FN(memctl_log_warn, LOG_WARN, 1)
LOG_FN(memctl_log_warnx, LOG_WARN, 0)
LOG_FN(memctl_log_info, LOG_INFO, 0)
LOG_FN(memctl_log_debug, LOG_DEBUG, 0)
