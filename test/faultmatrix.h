/* SPDX-License-Identifier: Apache-2.0 */
/*
 * faultmatrix.h - the method the fault-matrix suites share
 * (unit/test_region_faults.c, unit/test_region_app_faults.c,
 * e2e/test_e2e_fault.c): for one path and each driver entry point in a
 * table, the k-th call is failed for k = 1, 2, ... until the path no longer
 * makes a k-th call. Each run is a fresh child process (calls made once
 * per process are failed too, and a fault that kills the child is a
 * verdict, not a crash of the suite); the child's verdict comes back in its
 * exit status and its reason through a pipe.
 *
 * What a run sets up, does and checks is the suite's own: it hands a
 * faultmatrix_run function to faultmatrix_every_call.
 */
#ifndef TEST_FAULTMATRIX_H
#define TEST_FAULTMATRIX_H

#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <criterion/new/assert.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fakecuda.h"

/* A driver entry point and the error it returns when failed, as
 * FAKECUDA_FAIL spells it (oom, inval, illegal, unknown). */
struct faultmatrix_call {
	const char *fn, *err;
};

/* One run in the child with `spec` (fn:k:err) failed: 0 checked, 1 the
 * path did not make that call that often, -1 wrong (CHECK said why). */
typedef int (*faultmatrix_run)(int path, const char *spec);

/* In the child: where CHECK writes why the run failed. */
static char *faultmatrix_why;
static size_t faultmatrix_why_len;

/* In the child: note what went wrong and fail the run. */
#define CHECK(cond, ...)                                                          \
	do {                                                                      \
		if (!(cond)) {                                                    \
			snprintf(faultmatrix_why, faultmatrix_why_len, __VA_ARGS__); \
			return -1;                                                \
		}                                                                 \
	} while (0)

/* 1 when the simulated driver holds nothing: no handle, mapping,
 * reservation, pinned host buffer or device byte. */
static inline int faultmatrix_driver_empty(void)
{
	return fakecuda_live_handles() == 0 && fakecuda_live_mappings() == 0 &&
	       fakecuda_live_reservations() == 0 && fakecuda_live_host_registrations() == 0 &&
	       fakecuda_used() == 0;
}

/* Runs `run` in a child; returns its verdict (2 for wrong or killed) with
 * the child's reason in msg. */
static inline int faultmatrix_in_child(faultmatrix_run run, int path, const char *spec,
				       char *msg, size_t len)
{
	int fds[2], st, r;
	ssize_t n;
	pid_t pid;

	cr_assert(eq(int, pipe(fds), 0));
	pid = fork();
	if (pid == 0) {
		char buf[512] = "";

		faultmatrix_why = buf;
		faultmatrix_why_len = sizeof(buf);
		r = run(path, spec);
		if (write(fds[1], buf, strlen(buf)) < 0)
			r = -1;
		_exit(r == 0 ? 0 : r == 1 ? 1 : 2);
	}
	close(fds[1]);
	n = read(fds[0], msg, len - 1);
	msg[n > 0 ? n : 0] = '\0';
	close(fds[0]);
	waitpid(pid, &st, 0);
	if (WIFSIGNALED(st)) {
		snprintf(msg, len, "killed by signal %d", WTERMSIG(st));
		return 2;
	}
	return WEXITSTATUS(st);
}

/* Fails every call of every entry point in `calls` in turn on the path
 * named `name`; asserts each run checked out and that the path made at
 * least one driver call. */
static inline void faultmatrix_every_call(const struct faultmatrix_call *calls, size_t ncalls,
					  faultmatrix_run run, int path, const char *name)
{
	char spec[96], msg[512];
	size_t f;
	int k, r, total = 0;

	for (f = 0; f < ncalls; f++) {
		for (k = 1;; k++) {
			snprintf(spec, sizeof(spec), "%s:%d:%s", calls[f].fn, k, calls[f].err);
			r = faultmatrix_in_child(run, path, spec, msg, sizeof(msg));
			if (r == 1)
				break;
			cr_assert(eq(int, r, 0), "%s, %s: %s", name, spec, msg);
		}
		total += k - 1;
		if (k > 1)
			cr_log_info("%s: %d calls of %s", name, k - 1, calls[f].fn);
	}
	/* Every path makes driver calls; a count of 0 means the loop saw none. */
	cr_assert(gt(int, total, 0), "%s made no driver call", name);
}

#endif
