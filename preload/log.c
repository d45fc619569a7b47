/* SPDX-License-Identifier: Apache-2.0 */
/*
 * log.c - see log.h. errno is preserved across every call.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

static enum log_level level = LOG_WARN;

void memctl_log_set_level(enum log_level l)
{
	level = l;
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
	while (write(STDERR_FILENO, buf, (size_t)n) < 0 && errno == EINTR)
		;
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
