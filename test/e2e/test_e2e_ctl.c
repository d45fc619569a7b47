/* SPDX-License-Identifier: Apache-2.0 */
/*
 * test_e2e_ctl.c - the control socket and the memctl CLI against live
 * tenant processes (prog_tenant) on the simulated driver.
 */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "e2e.h"
#include "fakecuda.h"

#define MiB (1ull << 20)
#define GRAN (2 * MiB)

struct tenant {
	pid_t pid;
	FILE *in, *out;
};

static char dir[64], state_path[96], build[512];

static void setup(void)
{
	const char *b = getenv("MEMCTL_BUILD");

	cr_assert(b != NULL, "MEMCTL_BUILD not set");
	snprintf(build, sizeof(build), "%s", b);
	snprintf(dir, sizeof(dir), "/tmp/memctl-e2e-XXXXXX");
	cr_assert(not(eq(ptr, mkdtemp(dir), NULL)));
	snprintf(state_path, sizeof(state_path), "%s.state", dir);
	setenv("FAKECUDA_STATE", state_path, 1);
	setenv("FAKECUDA_MEMORY", "8G", 1);
	setenv("MEMCTL_RUNTIME_DIR", dir, 1);
	unsetenv("MEMCTL_SOCKET");
	unsetenv("MEMCTL_GROUP");
}

static void teardown(void)
{
	char cmd[200];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s' '%s'", dir, state_path);
	if (system(cmd) != 0)
		fprintf(stderr, "cleanup of %s failed\n", dir);
}

TestSuite(ctl, .init = setup, .fini = teardown, .timeout = 60);

static struct tenant spawn(const char *group, int nw, size_t wbytes)
{
	int to[2], from[2];
	struct tenant t;
	char a[4][32], line[64];

	cr_assert(eq(int, pipe(to), 0));
	cr_assert(eq(int, pipe(from), 0));
	t.pid = fork();
	if (t.pid == 0) {
		char prog[600];

		dup2(to[0], 0);
		dup2(from[1], 1);
		close(to[1]);
		close(from[0]);
		if (group)
			setenv("MEMCTL_GROUP", group, 1);
		snprintf(prog, sizeof(prog), "%s/test/prog_tenant", build);
		snprintf(a[0], 32, "%d", nw);
		snprintf(a[1], 32, "%zu", wbytes);
		snprintf(a[2], 32, "%d", 4);
		snprintf(a[3], 32, "%zu", (size_t)MiB);
		execl(prog, prog, a[0], a[1], a[2], a[3], (char *)NULL);
		_exit(127);
	}
	close(to[0]);
	close(from[1]);
	t.in = fdopen(to[1], "w");
	t.out = fdopen(from[0], "r");
	setvbuf(t.in, NULL, _IOLBF, 0);
	cr_assert(not(eq(ptr, fgets(line, sizeof(line), t.out), NULL)), "tenant did not start");
	cr_assert(eq(int, strncmp(line, "ready", 5), 0), "%s", line);
	return t;
}

static void ask(struct tenant *t, const char *cmd, char *out, size_t len)
{
	fprintf(t->in, "%s\n", cmd);
	fflush(t->in);
	cr_assert(not(eq(ptr, fgets(out, (int)len, t->out), NULL)));
	out[strcspn(out, "\n")] = '\0';
}

static void finish(struct tenant *t)
{
	char path[128];
	int st;

	fprintf(t->in, "quit\n");
	fclose(t->in);
	fclose(t->out);
	waitpid(t->pid, &st, 0);
	cr_assert(eq(int, WIFEXITED(st) ? WEXITSTATUS(st) : -1, 0));
	/* Nor did any tenant break the simulated driver's rules. */
	cr_assert(eq(long, fakecuda_machine_violations(), 0));
	/* A process that exits removes its socket and info file. */
	snprintf(path, sizeof(path), "%s/%d.sock", dir, (int)t->pid);
	cr_assert(ne(int, access(path, F_OK), 0), "%s left behind", path);
	snprintf(path, sizeof(path), "%s/%d.info", dir, (int)t->pid);
	cr_assert(ne(int, access(path, F_OK), 0), "%s left behind", path);
}

/* Run the CLI; its output lands in out, its exit status is returned. */
static int run(char *out, size_t len, const char *cmd)
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

static int cli(char *out, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int cli(char *out, size_t len, const char *fmt, ...)
{
	char args[512], cmd[1200];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(args, sizeof(args), fmt, ap);
	va_end(ap);
	snprintf(cmd, sizeof(cmd), "%s/memctl %s 2>&1", build, args);
	return run(out, len, cmd);
}

static size_t weight_bytes(int nw, size_t wbytes)
{
	size_t sum = 0;
	int i;

	for (i = 0; i < nw; i++)
		sum += (wbytes + (size_t)i * 4097 + GRAN - 1) / GRAN * GRAN;
	return sum;
}

static int json_u64(const char *json, const char *key, uint64_t *out)
{
	char pat[64];
	const char *p;

	snprintf(pat, sizeof(pat), "\"%s\":", key);
	p = strstr(json, pat);
	if (p == NULL)
		return -1;
	*out = strtoull(p + strlen(pat), NULL, 10);
	return 0;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

Test(ctl, three_processes_pause_staged_and_resume_bit_identical)
{
	struct tenant t[3];
	char out[16384], line[128], *p;
	uint64_t used0;
	int i, rows = 0;

	for (i = 0; i < 3; i++)
		t[i] = spawn(NULL, 8, 3 * MiB);

	cr_assert(eq(int, cli(out, sizeof(out), "ls"), 0), "%s", out);
	for (i = 0; i < 3; i++) {
		char pid[16];

		snprintf(pid, sizeof(pid), "%d ", t[i].pid);
		cr_assert(not(eq(ptr, strstr(out, pid), NULL)), "pid %d missing:\n%s", t[i].pid, out);
	}
	cr_assert(not(eq(ptr, strstr(out, "weights:active"), NULL)), "%s", out);

	cr_assert(eq(int, cli(out, sizeof(out), "status --json"), 0), "%s", out);
	for (p = out; (p = strstr(p, "{\"ok\":true,\"verb\":\"status\"")) != NULL; p++) {
		uint64_t allocs = 0, active = 0;

		cr_assert(eq(int, json_u64(p, "allocations", &allocs), 0));
		cr_assert(eq(u64, allocs, 12));
		cr_assert(eq(int, json_u64(p, "active_bytes", &active), 0));
		cr_assert(eq(u64, active, weight_bytes(8, 3 * MiB) + 4 * GRAN));
		rows++;
	}
	cr_assert(eq(int, rows, 3), "%s", out);

	used0 = fakecuda_used();
	cr_assert(eq(int, cli(out, sizeof(out), "pause --tags weights --stage cpu"), 0), "%s", out);
	cr_assert(not(eq(ptr, strstr(out, "3 of 3 processes succeeded"), NULL)), "%s", out);
	cr_assert(eq(u64, used0 - fakecuda_used(), 3 * weight_bytes(8, 3 * MiB)));
	for (i = 0; i < 3; i++) {
		ask(&t[i], "probe", line, sizeof(line));
		cr_assert(eq(str, line, "weights=released kv_cache=mapped"));
	}
	cr_assert(eq(int, cli(out, sizeof(out), "status"), 0), "%s", out);
	cr_assert(not(eq(ptr, strstr(out, "staged"), NULL)), "%s", out);

	cr_assert(eq(int, cli(out, sizeof(out), "resume --tags weights"), 0), "%s", out);
	cr_assert(eq(u64, fakecuda_used(), used0));
	for (i = 0; i < 3; i++) {
		ask(&t[i], "check", line, sizeof(line));
		cr_assert(eq(str, line, "ok"));
		ask(&t[i], "probe", line, sizeof(line));
		cr_assert(eq(str, line, "weights=mapped kv_cache=mapped"));
		finish(&t[i]);
	}
}

Test(ctl, a_stopped_process_costs_the_timeout_and_is_reported)
{
	struct tenant t[3];
	char out[8192], line[128], pid[32];
	double t0, took;
	int i;

	for (i = 0; i < 3; i++)
		t[i] = spawn(NULL, 2, MiB);
	kill(t[1].pid, SIGSTOP);
	t0 = now_s();
	cr_assert(eq(int, cli(out, sizeof(out), "pause --tags weights --timeout 2"), 1), "%s", out);
	took = now_s() - t0;
	cr_assert(lt(dbl, took, 3.5), "took %.2f s", took);
	snprintf(pid, sizeof(pid), "%d", t[1].pid);
	cr_assert(not(eq(ptr, strstr(out, "ETIMEDOUT"), NULL)), "%s", out);
	cr_assert(not(eq(ptr, strstr(out, pid), NULL)), "%s", out);
	cr_assert(not(eq(ptr, strstr(out, "2 of 3 processes succeeded"), NULL)), "%s", out);
	ask(&t[0], "probe", line, sizeof(line));
	cr_assert(eq(str, line, "weights=released kv_cache=mapped"));
	ask(&t[2], "probe", line, sizeof(line));
	cr_assert(eq(str, line, "weights=released kv_cache=mapped"));
	kill(t[1].pid, SIGCONT);
	/* The request it never read was given up by the CLI: not run late. */
	ask(&t[1], "probe", line, sizeof(line));
	cr_assert(eq(str, line, "weights=mapped kv_cache=mapped"));
	cr_assert(eq(int, cli(out, sizeof(out), "pause --tags weights -p %d", t[1].pid), 0), "%s", out);
	ask(&t[1], "probe", line, sizeof(line));
	cr_assert(eq(str, line, "weights=released kv_cache=mapped"));
	for (i = 0; i < 3; i++)
		finish(&t[i]);
}

Test(ctl, groups_select_processes)
{
	struct tenant a = spawn("alpha", 2, MiB), b = spawn("beta", 2, MiB);
	char out[4096], line[128];

	cr_assert(eq(int, cli(out, sizeof(out), "pause --tags weights --group alpha"), 0), "%s", out);
	ask(&a, "probe", line, sizeof(line));
	cr_assert(eq(str, line, "weights=released kv_cache=mapped"));
	ask(&b, "probe", line, sizeof(line));
	cr_assert(eq(str, line, "weights=mapped kv_cache=mapped"));
	cr_assert(eq(int, cli(out, sizeof(out), "status --group nobody-here"), 3), "%s", out);
	finish(&a);
	finish(&b);
}

Test(ctl, errors_are_reported_and_change_nothing)
{
	struct tenant t = spawn(NULL, 2, MiB);
	char out[4096], line[128];
	int me = (int)getpid();

	cr_assert(eq(int, cli(out, sizeof(out), "pause --tags nothing_here -p %d", t.pid), 1), "%s", out);
	cr_assert(not(eq(ptr, strstr(out, "nothing tagged 'nothing_here'"), NULL)), "%s", out);
	cr_assert(eq(int, cli(out, sizeof(out), "pause --tags 'bad tag'"), 2), "%s", out);
	cr_assert(eq(int, cli(out, sizeof(out), "pause"), 2), "%s", out);
	cr_assert(eq(int, cli(out, sizeof(out), "frobnicate"), 2), "%s", out);
	cr_assert(eq(int, cli(out, sizeof(out), "resume --tags weights --stage cpu"), 2), "%s", out);
	/* A process without memctl, and one that does not exist. */
	cr_assert(eq(int, cli(out, sizeof(out), "status -p %d", me), 1), "%s", out);
	cr_assert(not(eq(ptr, strstr(out, "not active"), NULL)), "%s", out);
	cr_assert(eq(int, cli(out, sizeof(out), "status -p 4194000"), 1), "%s", out);
	cr_assert(not(eq(ptr, strstr(out, "no such process"), NULL)), "%s", out);
	ask(&t, "probe", line, sizeof(line));
	cr_assert(eq(str, line, "weights=mapped kv_cache=mapped"));
	ask(&t, "check", line, sizeof(line));
	cr_assert(eq(str, line, "ok"));
	finish(&t);
}

Test(ctl, stale_sockets_are_removed_and_never_listed)
{
	char path[128], out[4096];
	int fd;

	snprintf(path, sizeof(path), "%s/4194001.sock", dir);
	fd = open(path, O_CREAT | O_WRONLY, 0600);
	cr_assert(ge(int, fd, 0));
	close(fd);
	cr_assert(eq(int, cli(out, sizeof(out), "ls"), 3), "%s", out);
	cr_assert(eq(ptr, strstr(out, "4194001"), NULL), "%s", out);
	cr_assert(ne(int, access(path, F_OK), 0));
}

/* ---- raw protocol ---- */

static int raw_connect(pid_t pid)
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

static void raw_reply(int fd, char *buf, size_t len)
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

static void roundtrip(pid_t pid, const char *req, char *buf, size_t len)
{
	int fd = raw_connect(pid);

	cr_assert(eq(long, (long)send(fd, req, strlen(req), 0), (long)strlen(req)));
	raw_reply(fd, buf, len);
	close(fd);
}

Test(ctl, protocol_rejects_bad_requests_and_keeps_serving)
{
	struct tenant t = spawn(NULL, 2, MiB);
	char buf[8192], big[6000], line[128];
	int silent, fd;

	roundtrip(t.pid, "hello\n", buf, sizeof(buf));
	cr_assert(not(eq(ptr, strstr(buf, "\"ok\":true"), NULL)), "%s", buf);
	cr_assert(not(eq(ptr, strstr(buf, "\"protocol\":1"), NULL)), "%s", buf);
	roundtrip(t.pid, "frobnicate\n", buf, sizeof(buf));
	cr_assert(not(eq(ptr, strstr(buf, "unknown verb"), NULL)), "%s", buf);
	roundtrip(t.pid, "pause tags=a,,b\n", buf, sizeof(buf));
	cr_assert(not(eq(ptr, strstr(buf, "\"error\":\"EINVAL\""), NULL)), "%s", buf);
	roundtrip(t.pid, "pause tags=weights stage=gpu\n", buf, sizeof(buf));
	cr_assert(not(eq(ptr, strstr(buf, "\"error\":\"EINVAL\""), NULL)), "%s", buf);
	roundtrip(t.pid, "pause tags=nope\n", buf, sizeof(buf));
	cr_assert(not(eq(ptr, strstr(buf, "\"error\":\"ENOENT\""), NULL)), "%s", buf);
	roundtrip(t.pid, "pause\x01 tags=weights\n", buf, sizeof(buf));
	cr_assert(not(eq(ptr, strstr(buf, "\"ok\":false"), NULL)), "%s", buf);
	memset(big, 'x', sizeof(big));
	big[sizeof(big) - 1] = '\n';
	fd = raw_connect(t.pid);
	cr_assert(eq(long, (long)send(fd, big, sizeof(big), MSG_NOSIGNAL), (long)sizeof(big)));
	raw_reply(fd, buf, sizeof(buf));
	close(fd);
	cr_assert(not(eq(ptr, strstr(buf, "E2BIG"), NULL)), "%s", buf);

	/* A client that sends nothing holds nobody up. */
	silent = raw_connect(t.pid);
	roundtrip(t.pid, "status\n", buf, sizeof(buf));
	cr_assert(not(eq(ptr, strstr(buf, "\"ok\":true"), NULL)), "%s", buf);
	raw_reply(silent, buf, sizeof(buf)); /* times out after 5 s */
	cr_assert(not(eq(ptr, strstr(buf, "ETIMEDOUT"), NULL)), "%s", buf);
	close(silent);

	/* Several requests on one connection, half-closed, are all answered. */
	fd = raw_connect(t.pid);
	cr_assert(eq(long, (long)send(fd, "hello\nstatus\n", 13, 0), 13L));
	shutdown(fd, SHUT_WR);
	{
		size_t n = 0;
		ssize_t r;

		while ((r = recv(fd, buf + n, sizeof(buf) - 1 - n, 0)) > 0)
			n += (size_t)r;
		buf[n] = '\0';
	}
	close(fd);
	cr_assert(not(eq(ptr, strstr(buf, "\"verb\":\"hello\""), NULL)), "%s", buf);
	cr_assert(not(eq(ptr, strstr(buf, "\"verb\":\"status\""), NULL)), "%s", buf);

	ask(&t, "probe", line, sizeof(line));
	cr_assert(eq(str, line, "weights=mapped kv_cache=mapped"));
	finish(&t);
}

struct many {
	pid_t pid;
	char reply[4096];
};

static void *one_client(void *arg)
{
	struct many *m = arg;

	roundtrip(m->pid, "status\n", m->reply, sizeof(m->reply));
	return NULL;
}

Test(ctl, thirty_two_clients_at_once)
{
	struct tenant t = spawn(NULL, 2, MiB);
	static struct many m[32];
	pthread_t tid[32];
	int i;

	for (i = 0; i < 32; i++) {
		m[i].pid = t.pid;
		pthread_create(&tid[i], NULL, one_client, &m[i]);
	}
	for (i = 0; i < 32; i++) {
		pthread_join(tid[i], NULL);
		cr_assert(not(eq(ptr, strstr(m[i].reply, "\"ok\":true"), NULL)), "%d: %s", i,
			  m[i].reply);
	}
	finish(&t);
}

Test(ctl, a_client_that_leaves_mid_command_does_not_corrupt_it)
{
	struct tenant t = spawn(NULL, 16, 32 * MiB);
	char buf[4096], line[128];
	int fd = raw_connect(t.pid);

	cr_assert(eq(long, (long)send(fd, "pause tags=weights stage=cpu\n", 29, 0), 29L));
	usleep(20000);
	close(fd);
	/* Whatever the timing, the state is whole: resume brings it all back. */
	roundtrip(t.pid, "resume tags=weights\n", buf, sizeof(buf));
	cr_assert(not(eq(ptr, strstr(buf, "\"ok\":true"), NULL)), "%s", buf);
	ask(&t, "check", line, sizeof(line));
	cr_assert(eq(str, line, "ok"));
	finish(&t);
}

Test(ctl, another_user_is_refused)
{
	struct tenant t = spawn(NULL, 2, MiB);
	char out[4096], path[128], line[128], cmd[1024];

	if (getuid() != 0) {
		finish(&t);
		cr_skip_test("needs root to run a client as another user");
	}
	/* Open the way on purpose so only SO_PEERCRED stands between. */
	cr_assert(eq(int, chmod(dir, 0711), 0));
	snprintf(path, sizeof(path), "%s/%d.sock", dir, t.pid);
	cr_assert(eq(int, chmod(path, 0666), 0));
	snprintf(cmd, sizeof(cmd),
		 "MEMCTL_RUNTIME_DIR=%s setpriv --reuid=65534 --regid=65534 --clear-groups "
		 "%s/memctl pause --tags weights -p %d 2>&1", dir, build, (int)t.pid);
	cr_assert(eq(int, run(out, sizeof(out), cmd), 1), "%s", out);
	cr_assert(not(eq(ptr, strstr(out, "EACCES"), NULL)), "%s", out);
	ask(&t, "probe", line, sizeof(line));
	cr_assert(eq(str, line, "weights=mapped kv_cache=mapped"));
	finish(&t);
}

Test(ctl, expandable_segments_is_warned_about_once)
{
	char out[8192], cmd[1400];
	const char *p;
	int n = 0;

	snprintf(cmd, sizeof(cmd),
		 "echo quit | PYTORCH_CUDA_ALLOC_CONF=garbage_collection_threshold:0.6,"
		 "expandable_segments:True LD_PRELOAD=%s/libmemctl.so %s/test/prog_tenant "
		 "2 1048576 1 1048576 2>&1 >/dev/null", build, build);
	cr_assert(eq(int, run(out, sizeof(out), cmd), 0), "%s", out);
	for (p = out; (p = strstr(p, "expandable_segments:True")) != NULL; p++)
		n++;
	cr_assert(eq(int, n, 1), "%s", out);
}

Test(ctl, memctl_prepare_pins_host_buffers_once_allocations_settle)
{
	struct tenant t;
	char buf[8192];
	uint64_t host = 0, active = 0;
	int i;

	setenv("MEMCTL_PREPARE", "weights", 1);
	t = spawn(NULL, 4, MiB);
	unsetenv("MEMCTL_PREPARE");
	/* Allocations settle, then within a tick or two the buffers appear. */
	for (i = 0; i < 40 && host == 0; i++) {
		usleep(100000);
		roundtrip(t.pid, "status\n", buf, sizeof(buf));
		json_u64(buf, "host_bytes", &host);
	}
	cr_assert(gt(u64, host, 4 * MiB), "%s", buf);
	json_u64(buf, "active_bytes", &active);
	cr_assert(eq(u64, active, 8 * GRAN), "still active: %s", buf);
	roundtrip(t.pid, "pause tags=weights stage=cpu\n", buf, sizeof(buf));
	cr_assert(not(eq(ptr, strstr(buf, "\"host_new_bytes\":0"), NULL)), "%s", buf);
	roundtrip(t.pid, "pause tags=\n", buf, sizeof(buf));
	cr_assert(not(eq(ptr, strstr(buf, "EINVAL"), NULL)), "%s", buf);
	roundtrip(t.pid, "resume tags=*\n", buf, sizeof(buf));
	cr_assert(not(eq(ptr, strstr(buf, "\"ok\":true"), NULL)), "%s", buf);
	finish(&t);
}

Test(ctl, a_forked_child_leaves_the_parents_socket_alone)
{
	struct tenant t = spawn(NULL, 2, MiB);
	char line[128], buf[4096];

	ask(&t, "forkexit", line, sizeof(line));
	cr_assert(eq(str, line, "forked"));
	roundtrip(t.pid, "hello\n", buf, sizeof(buf));
	cr_assert(not(eq(ptr, strstr(buf, "\"ok\":true"), NULL)), "%s", buf);
	finish(&t);
}

Test(ctl, a_socket_directory_others_can_write_is_refused)
{
	char out[4096], line[128];
	struct tenant t;

	cr_assert(eq(int, chmod(dir, 0777), 0));
	t = spawn(NULL, 2, MiB);
	/* The process runs on, without a socket; the CLI finds nothing. */
	cr_assert(eq(int, cli(out, sizeof(out), "ls"), 3), "%s", out);
	ask(&t, "check", line, sizeof(line));
	cr_assert(eq(str, line, "ok"));
	cr_assert(eq(int, chmod(dir, 0700), 0));
	finish(&t);
}
