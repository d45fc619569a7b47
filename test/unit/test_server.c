/* SPDX-License-Identifier: Apache-2.0 */
/*
 * test_server.c - the control server (ctl/server.c) in the process, with a
 * backend that has nothing to control: what happens to it across fork.
 * The suite wraps free, to stop the socket thread inside one at a known
 * point.
 */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "server.h"

static int run_nothing(enum verb verb, const struct region_req *rq,
		       struct region_report *rep, struct region_err *err)
{
	(void)verb, (void)rq, (void)rep;
	return region_err_set(err, -ENOSYS, "nothing to run");
}

static int no_stats(struct region_tag_stat **rows, size_t *n)
{
	*rows = NULL;
	*n = 0;
	return 0;
}

static uint64_t no_allocations(void)
{
	return 0;
}

static int no_devices(struct ctl_device *out, int max)
{
	(void)out, (void)max;
	return 0;
}

static int no_driver(void)
{
	return 0;
}

static void no_untagged(uint64_t bytes[UNTAGGED_KINDS])
{
	memset(bytes, 0, sizeof(uint64_t) * UNTAGGED_KINDS);
}

static void open_gate(struct ctl_gate *out)
{
	memset(out, 0, sizeof(*out));
}

static void no_ungate(void)
{
}

static void quiet(enum ctl_log level, const char *line)
{
	(void)level, (void)line;
}

static const struct ctl_backend backend = {
	.request = run_nothing,
	.tag_stats = no_stats,
	.allocations = no_allocations,
	.devices = no_devices,
	.driver_devices = no_driver,
	.untagged = no_untagged,
	.gate = open_gate,
	.ungate = no_ungate,
	.log = quiet,
};

static char dir[64];
static struct ctl_config config = { dir, "", 1, NULL };

static void setup(void)
{
	snprintf(dir, sizeof(dir), "/tmp/memctl-server-XXXXXX");
	cr_assert(not(eq(ptr, mkdtemp(dir), NULL)));
}

static void teardown(void)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", dir);
}

TestSuite(server, .init = setup, .fini = teardown, .timeout = 30);

/* While `free_holding`, the first free made by a thread other than the
 * test's returns only once free_holding is cleared, after freeing
 * (free_held set, the pointer in `held_ptr`). In a forked child, a free
 * of held_ptr is a double free: counted in `double_frees`, not passed on. */
static pthread_t test_thread;
static int free_holding, free_claimed, free_held, in_child, double_frees;
static void *held_ptr;
void __real_free(void *p);
void __wrap_free(void *p);

void __wrap_free(void *p)
{
	if (p != NULL && in_child && p == held_ptr) {
		double_frees++;
		return;
	}
	__real_free(p);
	if (p == NULL || !__atomic_load_n(&free_holding, __ATOMIC_ACQUIRE) ||
	    pthread_equal(pthread_self(), test_thread) ||
	    __atomic_exchange_n(&free_claimed, 1, __ATOMIC_ACQ_REL))
		return;
	held_ptr = p;
	__atomic_store_n(&free_held, 1, __ATOMIC_RELEASE);
	while (__atomic_load_n(&free_holding, __ATOMIC_ACQUIRE))
		usleep(1000);
}

/* A connection to this process's socket. */
static int connect_self(void)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	cr_assert(ge(int, fd, 0));
	snprintf(addr.sun_path, sizeof(addr.sun_path), "%s/%d.sock", dir, (int)getpid());
	cr_assert(eq(int, connect(fd, (struct sockaddr *)&addr, sizeof(addr)), 0), "%s: %s",
		  addr.sun_path, strerror(errno));
	return fd;
}

/* One whole reply line into buf. */
static void read_line(int fd, char *buf, size_t len)
{
	size_t got = 0;

	while (got < len - 1 && (got == 0 || buf[got - 1] != '\n')) {
		ssize_t n = read(fd, buf + got, len - 1 - got);

		cr_assert(gt(long, (long)n, 0L));
		got += (size_t)n;
	}
	buf[got] = '\0';
}

/* A process forks while its socket thread is freeing a client's reply
 * buffer (the free done, the pointer not yet cleared): the child that
 * forgets the server, as the fork handler does, and starts its own, frees
 * nothing it inherited. It used to free that buffer a second time. */
Test(server, a_child_forked_while_a_reply_buffer_is_freed_starts_its_own_server)
{
	char reply[8192];
	pid_t pid;
	int fd, st;

	test_thread = pthread_self();
	ctl_server_start(&config, &backend);
	fd = connect_self();
	cr_assert(eq(int, (int)write(fd, "hello\n", 6), 6));
	read_line(fd, reply, sizeof(reply));
	cr_assert(not(eq(ptr, strstr(reply, "\"ok\":true"), NULL)), "%s", reply);
	/* The reply is sent, its buffer kept for the next: leaving frees it. */
	__atomic_store_n(&free_holding, 1, __ATOMIC_RELEASE);
	close(fd);
	while (!__atomic_load_n(&free_held, __ATOMIC_ACQUIRE))
		usleep(1000);
	pid = fork();
	if (pid == 0) {
		in_child = 1;
		ctl_server_after_fork();
		ctl_server_start(&config, &backend);
		_exit(double_frees ? 2 : 0);
	}
	waitpid(pid, &st, 0);
	__atomic_store_n(&free_holding, 0, __ATOMIC_RELEASE);
	cr_assert(eq(int, WIFEXITED(st) ? WEXITSTATUS(st) : -WTERMSIG(st), 0),
		  "the child freed its parent's reply buffer again");
}

/* Two requests the process makes itself run at once (two threads of the
 * C API); the first ends while the second still runs: status shows the
 * second as running, and counts both once they end. It showed nothing
 * running once the first had ended. */
Test(server, a_second_request_of_the_process_shows_once_the_first_ends)
{
	struct region_req pause = { 0 }, resume = { 0 };
	struct region_report rep = { 0 };
	struct region_err err = { 0, "" };
	struct region_err why;
	char reply[8192];
	void *a, *b;
	int fd;

	cr_assert(eq(int, tagset_parse("weights", &pause.tags, &why), 0));
	cr_assert(eq(int, tagset_parse("kv_cache", &resume.tags, &why), 0));
	ctl_server_start(&config, &backend);
	a = ctl_inproc_begin(VERB_PAUSE, &pause);
	b = ctl_inproc_begin(VERB_RESUME, &resume);
	cr_assert(not(eq(ptr, a, NULL)));
	cr_assert(not(eq(ptr, b, NULL)));
	ctl_inproc_end(a, 0, &rep, &err);
	fd = connect_self();
	cr_assert(eq(int, (int)write(fd, "status\n", 7), 7));
	read_line(fd, reply, sizeof(reply));
	cr_assert(not(eq(ptr, strstr(reply, "\"running\":{\"verb\":\"resume\""), NULL)), "%s",
		  reply);
	ctl_inproc_end(b, 0, &rep, &err);
	cr_assert(eq(int, (int)write(fd, "status\n", 7), 7));
	read_line(fd, reply, sizeof(reply));
	cr_assert(not(eq(ptr, strstr(reply, "\"running\":null"), NULL)), "%s", reply);
	cr_assert(not(eq(ptr, strstr(reply, "\"last\":{\"verb\":\"resume\""), NULL)), "%s", reply);
	close(fd);
}
