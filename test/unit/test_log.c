/* SPDX-License-Identifier: Apache-2.0 */
/*
 * test_log.c - memctl's messages never kill the process they are written
 * in: a stderr that is a pipe nobody reads raises no SIGPIPE from them.
 */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>
#include <errno.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log.h"

/* In a child with SIGPIPE's default action (death) and stderr a pipe
 * without a reader: log once, then say whether errno survived and whether
 * a SIGPIPE of the child's own, pending before, is still there. */
static int log_into_broken_pipe(int own_pending)
{
	sigset_t pipe_only, pending;
	pid_t pid;
	int p[2], st;

	pid = fork();
	if (pid == 0) {
		signal(SIGPIPE, SIG_DFL);
		sigemptyset(&pipe_only);
		sigaddset(&pipe_only, SIGPIPE);
		if (pipe(p) != 0)
			_exit(10);
		close(p[0]);
		dup2(p[1], STDERR_FILENO);
		if (own_pending) { /* the application's own, blocked and pending */
			sigprocmask(SIG_BLOCK, &pipe_only, NULL);
			raise(SIGPIPE);
		}
		errno = 42;
		memctl_log_warnx("a message nobody reads");
		if (errno != 42)
			_exit(11);
		sigpending(&pending);
		if (own_pending && sigismember(&pending, SIGPIPE) != 1)
			_exit(12);
		_exit(0);
	}
	cr_assert(gt(int, pid, 0));
	cr_assert(eq(int, waitpid(pid, &st, 0), pid));
	cr_assert(eq(int, WIFSIGNALED(st) ? WTERMSIG(st) : 0, 0), "killed by a signal");
	return WEXITSTATUS(st);
}

Test(log, a_message_to_a_stderr_nobody_reads_does_not_kill_the_process)
{
	cr_assert(eq(int, log_into_broken_pipe(0), 0));
}

Test(log, the_applications_own_pending_sigpipe_is_left_alone)
{
	cr_assert(eq(int, log_into_broken_pipe(1), 0));
}
