/* SPDX-License-Identifier: Apache-2.0 */
/*
 * test_e2e_gate_cli.c - the gate driven from outside: the memctl CLI and
 * the raw protocol against busy tenant processes (prog_gate) on the
 * simulated driver. The CLI gates by default and status shows who waits;
 * a group pause is all-or-nothing (a rank that cannot drain puts every
 * rank back), and a gate closed by a group pause's first phase opens by
 * itself when the CLI dies. Every wait is for an event the tenants or
 * their sockets report; the suite's timeout is the only clock.
 */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "e2e.h"
#include "fakecuda.h"
#include "tenant.h"

#define MiB (1ull << 20)

static char state_path[96], hold_path[96];

static void setup(void)
{
	const char *b = getenv("MEMCTL_BUILD");

	cr_assert(b != NULL, "MEMCTL_BUILD not set");
	snprintf(build, sizeof(build), "%s", b);
	snprintf(dir, sizeof(dir), "/tmp/memctl-gatecli-XXXXXX");
	cr_assert(not(eq(ptr, mkdtemp(dir), NULL)));
	snprintf(state_path, sizeof(state_path), "%s.state", dir);
	snprintf(hold_path, sizeof(hold_path), "%s.hold", dir);
	setenv("FAKECUDA_STATE", state_path, 1);
	setenv("FAKECUDA_MEMORY", "4G", 1);
	setenv("MEMCTL_RUNTIME_DIR", dir, 1);
	unsetenv("MEMCTL_SOCKET");
	unsetenv("MEMCTL_GROUP");
	unsetenv("FAKECUDA_ASYNC"); /* lazy: a spin kernel runs only when drained */
}

static void teardown(void)
{
	char cmd[400];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s' '%s' '%s'", dir, state_path, hold_path);
	if (system(cmd) != 0)
		fprintf(stderr, "cleanup of %s failed\n", dir);
}

TestSuite(gate_cli, .init = setup, .fini = teardown, .timeout = 60);

/* A tenant in `group` (or none), with `env` ("NAME=value", or NULL). */
static struct tenant spawn(const char *group, const char *env)
{
	char prog[600], threads[] = "3", bytes[] = "1048576";
	char *argv[] = { prog, threads, bytes, NULL };
	const char *envs[] = { env, NULL };

	snprintf(prog, sizeof(prog), "%s/test/prog_gate", build);
	return tenant_start(argv, group, envs, "ready");
}

static void expect(struct tenant *t, const char *cmd, const char *answer)
{
	char line[128];

	ask(t, cmd, line, sizeof(line));
	cr_assert(eq(int, strcmp(line, answer), 0), "%s -> %s, not %s", cmd, line, answer);
}

static void finish(struct tenant *t)
{
	cr_assert(eq(int, tenant_quit(t), 0));
	cr_assert(eq(long, fakecuda_machine_violations(), 0));
}

static int has(const char *hay, const char *needle)
{
	return strstr(hay, needle) != NULL;
}

/* ---- one process ---------------------------------------------------------- */

Test(gate_cli, the_cli_gates_by_default_and_status_shows_who_waits)
{
	struct tenant t = spawn(NULL, NULL);
	char out[8192];

	expect(&t, "launch", "launching");
	expect(&t, "joined", "launched 0");
	cr_assert(eq(int, cli(out, sizeof(out), "pause --tags weights --stage cpu -p %d", t.pid), 0),
		  "%s", out);
	expect(&t, "probe", "weights=released");
	expect(&t, "launch", "launching");
	wait_hello(t.pid, "\"waiting\":1");
	cr_assert(eq(int, cli(out, sizeof(out), "status -p %d", t.pid), 0), "%s", out);
	cr_assert(has(out, "gate: closed (paused: weights), 1 thread waiting"), "%s", out);
	cr_assert(eq(int, cli(out, sizeof(out), "status --json -p %d", t.pid), 0), "%s", out);
	cr_assert(has(out, "\"gate\":{\"closed\":true,\"waiting\":1,\"paused_tags\":\"weights\""),
		  "%s", out);
	cr_assert(eq(int, cli(out, sizeof(out), "resume --tags weights -p %d", t.pid), 0), "%s", out);
	expect(&t, "joined", "launched 0");
	/* Both launches ran, the second after the contents came back. */
	expect(&t, "check", "ok");
	cr_assert(eq(int, cli(out, sizeof(out), "status -p %d", t.pid), 0), "%s", out);
	cr_assert(has(out, "gate: open\n"), "%s", out);
	finish(&t);
}

Test(gate_cli, no_gate_leaves_the_work_running)
{
	struct tenant t = spawn(NULL, NULL);
	char out[8192];

	cr_assert(eq(int, cli(out, sizeof(out), "pause --tags weights --stage cpu --no-gate -p %d",
			      t.pid), 0), "%s", out);
	cr_assert(eq(int, cli(out, sizeof(out), "status -p %d", t.pid), 0), "%s", out);
	cr_assert(has(out, "gate: open\n"), "%s", out);
	cr_assert(eq(int, cli(out, sizeof(out), "resume --no-gate --tags weights -p %d", t.pid), 2),
		  "%s", out);
	cr_assert(has(out, "--no-gate does not apply to resume"), "%s", out);
	cr_assert(eq(int, cli(out, sizeof(out), "resume --tags weights -p %d", t.pid), 0), "%s", out);
	expect(&t, "check", "ok");
	finish(&t);
}

/* A collective waiting for a peer, from outside: the CLI's pause fails
 * within its timeout, nothing is released, the gate is open, and the
 * process answers the next request at once. */
Test(gate_cli, a_pause_that_cannot_drain_fails_cleanly_within_its_timeout)
{
	struct tenant t = spawn(NULL, NULL);
	char out[8192];

	expect(&t, "spin", "spinning");
	cr_assert(eq(int, cli(out, sizeof(out), "pause --tags weights --stage cpu -t 0.5 -p %d",
			      t.pid), 1), "%s", out);
	cr_assert(has(out, "ETIMEDOUT"), "%s", out);
	cr_assert(has(out, "GPU work still running after"), "%s", out);
	cr_assert(has(out, "a collective waiting for a peer?"), "%s", out);
	cr_assert(eq(int, has(out, "outcome unknown"), 0), "%s", out); /* the process said so */
	expect(&t, "probe", "weights=mapped");
	cr_assert(eq(int, cli(out, sizeof(out), "prepare --tags weights -t 5 -p %d", t.pid), 0),
		  "%s", out);
	cr_assert(eq(int, cli(out, sizeof(out), "status -p %d", t.pid), 0), "%s", out);
	cr_assert(has(out, "gate: open, 1 drain given up on still waiting for GPU work"), "%s", out);
	expect(&t, "launch", "launching");
	expect(&t, "joined", "launched 0");
	expect(&t, "unspin", "unspun");
	wait_hello(t.pid, "\"stuck_drains\":0");
	cr_assert(eq(int, cli(out, sizeof(out), "pause --tags weights --stage cpu -p %d", t.pid), 0),
		  "%s", out);
	cr_assert(eq(int, cli(out, sizeof(out), "resume --tags weights -p %d", t.pid), 0), "%s", out);
	expect(&t, "check", "ok");
	finish(&t);
}

/* ---- groups --------------------------------------------------------------- */

Test(gate_cli, a_group_pause_releases_every_rank)
{
	struct tenant t[2] = { spawn("tp", NULL), spawn("tp", NULL) };
	char out[8192];
	int i;

	cr_assert(eq(int, cli(out, sizeof(out), "--group tp pause --tags weights --stage cpu"), 0),
		  "%s", out);
	cr_assert(has(out, "2 of 2 processes succeeded"), "%s", out);
	for (i = 0; i < 2; i++)
		expect(&t[i], "probe", "weights=released");
	cr_assert(eq(int, cli(out, sizeof(out), "--group tp resume --tags weights"), 0), "%s", out);
	for (i = 0; i < 2; i++) {
		expect(&t[i], "check", "ok");
		finish(&t[i]);
	}
}

/* One rank of three is caught in a collective: the group pause fails
 * there, and every rank is put back as it was. */
Test(gate_cli, a_group_with_a_rank_that_cannot_drain_is_put_back_whole)
{
	struct tenant t[3] = { spawn("tp", NULL), spawn("tp", NULL), spawn("tp", NULL) };
	char out[8192], want[64], buf[8192];
	int i;

	expect(&t[2], "spin", "spinning");
	cr_assert(eq(int, cli(out, sizeof(out), "--group tp pause --tags weights --stage cpu "
			      "--timeout 0.5"), 1), "%s", out);
	snprintf(want, sizeof(want), "pause failed at pid %d (ETIMEDOUT: GPU work still running",
		 t[2].pid);
	cr_assert(has(out, want), "%s", out);
	cr_assert(has(out, "every process was put back (gates open, nothing released)"), "%s", out);
	for (i = 0; i < 2; i++) {
		snprintf(want, sizeof(want), "%d ", t[i].pid);
		cr_assert(has(strstr(out, want) ? strstr(out, want) : "", "put back: gate open, "
			      "nothing released"), "%s", out);
	}
	for (i = 0; i < 3; i++) {
		expect(&t[i], "probe", "weights=mapped");
		roundtrip(t[i].pid, "status\n", buf, sizeof(buf));
		cr_assert(has(buf, "\"gate\":{\"closed\":false"), "%s", buf);
	}
	/* Nothing waits: work goes on everywhere. */
	for (i = 0; i < 3; i++) {
		expect(&t[i], "launch", "launching");
		expect(&t[i], "joined", "launched 0");
	}
	/* The peer arrives; once idle, the retry succeeds on all three. */
	expect(&t[2], "unspin", "unspun");
	wait_hello(t[2].pid, "\"stuck_drains\":0");
	cr_assert(eq(int, cli(out, sizeof(out), "--group tp pause --tags weights --stage cpu"), 0),
		  "%s", out);
	for (i = 0; i < 3; i++)
		expect(&t[i], "probe", "weights=released");
	cr_assert(eq(int, cli(out, sizeof(out), "--group tp resume --tags weights"), 0), "%s", out);
	for (i = 0; i < 3; i++) {
		expect(&t[i], "check", "ok");
		finish(&t[i]);
	}
}

/* The second phase fails on one rank (the driver refuses an unmap there)
 * after the other released: both are resumed, staged bytes come back, and
 * every gate opens. */
Test(gate_cli, a_group_pause_failing_while_releasing_is_resumed_everywhere)
{
	struct tenant t[2] = { spawn("tp", NULL), spawn("tp", "FAKECUDA_FAIL=cuMemUnmap:1:unknown") };
	char out[8192], want[96], buf[8192];
	int i;

	cr_assert(eq(int, cli(out, sizeof(out), "--group tp pause --tags weights --stage cpu"), 1),
		  "%s", out);
	snprintf(want, sizeof(want), "pause failed at pid %d (EIO", t[1].pid);
	cr_assert(has(out, want), "%s", out);
	cr_assert(has(out, "every process was put back (memory resumed, gates open)"), "%s", out);
	cr_assert(has(out, "put back: resumed, gate open"), "%s", out);
	for (i = 0; i < 2; i++) {
		expect(&t[i], "probe", "weights=mapped");
		roundtrip(t[i].pid, "status\n", buf, sizeof(buf));
		cr_assert(has(buf, "\"gate\":{\"closed\":false"), "%s", buf);
		cr_assert(has(buf, "\"paused_bytes\":0,"), "%s", buf);
		expect(&t[i], "check", "ok");
		finish(&t[i]);
	}
}

/* A tag nothing carries fails the first phase, before any gate closes. */
Test(gate_cli, a_group_pause_of_a_tag_nothing_carries_releases_nothing)
{
	struct tenant t[2] = { spawn("tp", NULL), spawn("tp", NULL) };
	char out[8192];
	int i;

	cr_assert(eq(int, cli(out, sizeof(out), "--group tp pause --tags nothing_here"), 1), "%s", out);
	cr_assert(has(out, "nothing tagged 'nothing_here'"), "%s", out);
	for (i = 0; i < 2; i++) {
		expect(&t[i], "probe", "weights=mapped");
		expect(&t[i], "check", "ok");
		finish(&t[i]);
	}
}

/* ---- the first phase's lease ---------------------------------------------- */

/* What a CLI that dies between the phases leaves behind: a gate closed by
 * the first phase, which opens by itself when its lease runs out (as long
 * again as the request's timeout, after its deadline); ungate opens it at
 * once. */
Test(gate_cli, the_first_phase_holds_the_gate_for_a_lease_only)
{
	struct tenant t = spawn(NULL, NULL);
	char buf[8192];

	roundtrip(t.pid, "gate tags=weights timeout_ms=1500\n", buf, sizeof(buf));
	cr_assert(has(buf, "\"ok\":true,\"verb\":\"gate\""), "%s", buf);
	roundtrip(t.pid, "status\n", buf, sizeof(buf));
	cr_assert(has(buf, "\"gate\":{\"closed\":true"), "%s", buf);
	expect(&t, "probe", "weights=mapped");
	expect(&t, "launch", "launching");
	wait_hello(t.pid, "\"waiting\":1");
	/* Nobody follows up: the lease runs out and the launch proceeds. */
	expect(&t, "joined", "launched 0");
	roundtrip(t.pid, "status\n", buf, sizeof(buf));
	cr_assert(has(buf, "\"gate\":{\"closed\":false"), "%s", buf);
	/* ungate opens it at once, even with a long lease. */
	roundtrip(t.pid, "gate tags=weights timeout_ms=600000\n", buf, sizeof(buf));
	cr_assert(has(buf, "\"ok\":true"), "%s", buf);
	expect(&t, "launch", "launching");
	wait_hello(t.pid, "\"waiting\":1");
	roundtrip(t.pid, "ungate\n", buf, sizeof(buf));
	cr_assert(has(buf, "\"ok\":true,\"verb\":\"ungate\""), "%s", buf);
	expect(&t, "joined", "launched 0");
	expect(&t, "check", "ok");
	finish(&t);
}

/* The real CLI killed while one rank has passed the first phase and the
 * other is still draining (held inside its synchronisation): the waiting
 * rank's request is abandoned when its client goes, the drained rank's
 * lease runs out, and both end open with nothing released. */
Test(gate_cli, a_cli_killed_between_the_phases_leaves_no_gate_closed)
{
	char env[160], cmd[700], buf[8192];
	struct tenant a, b;
	pid_t cli_pid;
	int fd, st;

	snprintf(env, sizeof(env), "FAKECUDA_HOLD=cuCtxSynchronize:%s", hold_path);
	a = spawn("tp", NULL);
	b = spawn("tp", env);
	fd = open(hold_path, O_CREAT | O_WRONLY, 0600);
	cr_assert(ge(int, fd, 0));
	close(fd);
	cli_pid = fork();
	if (cli_pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		snprintf(cmd, sizeof(cmd), "%s/memctl", build);
		execl(cmd, cmd, "--group", "tp", "pause", "--tags", "weights", "--timeout", "2",
		      (char *)NULL);
		_exit(127);
	}
	wait_hello(a.pid, "\"gate\":{\"closed\":true");
	wait_hello(b.pid, "\"request\":\"gate tags=weights");
	kill(cli_pid, SIGKILL);
	waitpid(cli_pid, &st, 0);
	expect(&a, "launch", "launching");
	expect(&b, "launch", "launching");
	/* b: its client left, it stops draining at once; a: the lease ends. */
	expect(&b, "joined", "launched 0");
	expect(&a, "joined", "launched 0");
	roundtrip(a.pid, "status\n", buf, sizeof(buf));
	cr_assert(has(buf, "\"gate\":{\"closed\":false"), "%s", buf);
	roundtrip(b.pid, "status\n", buf, sizeof(buf));
	cr_assert(has(buf, "\"gate\":{\"closed\":false"), "%s", buf);
	expect(&a, "probe", "weights=mapped");
	expect(&b, "probe", "weights=mapped");
	cr_assert(eq(int, unlink(hold_path), 0));
	wait_hello(b.pid, "\"stuck_drains\":0");
	expect(&a, "check", "ok");
	expect(&b, "check", "ok");
	finish(&a);
	finish(&b);
}
