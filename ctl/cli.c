/* SPDX-License-Identifier: Apache-2.0 */
/*
 * cli.c - memctl, the command line: finds the processes that run
 * libmemctl.so (their sockets in the runtime directory), sends each one
 * request in parallel with a deadline per process, and reports every
 * result. Exit status: 0 all succeeded, 1 any failed or timed out, 2 usage,
 * 3 no target found. See docs/memctl.1.
 */
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "memctl.h"
#include "options.h"
#include "proto.h"
#include "region.h"

#define MAX_TARGETS 1024

struct target {
	int pid;
	char group[TAG_MAX];
	char command[256];
	char reply[PROTO_MAX_REPLY];
	char err_code[16];
	char err_msg[256];
	int ok;
	pthread_t tid;
};

static struct {
	char dir[256];
	char request[PROTO_MAX_LINE];
	double timeout_s;
	int json;
	const char *verb;
} C = { .timeout_s = -1 };

static void usage(FILE *f)
{
	fprintf(f,
"usage: memctl [targets] [options] <command>\n"
"\n"
"commands:\n"
"  ls                            processes that can be controlled\n"
"  status                        per-tag state and bytes of each target\n"
"  pause  --tags T[,T] [--stage cpu|none]\n"
"                                release device memory (stage cpu: keep contents)\n"
"  resume --tags T[,T] [--release-host]\n"
"                                map memory back; staged contents are copied back,\n"
"                                unstaged contents are undefined\n"
"  prepare --tags T[,T]          pin host buffers now so the first staged pause is fast\n"
"  release-host --tags T[,T]     give back kept host buffers (never staged contents)\n"
"  --tags all                    every tag\n"
"\n"
"targets (default: every live process of this user):\n"
"  -p, --pid PID                 one process (repeatable)\n"
"  -g, --group NAME              processes started with MEMCTL_GROUP=NAME\n"
"\n"
"options:\n"
"  -t, --timeout SECONDS         per process; default 10 for ls and status, 60 otherwise\n"
"  -j, --json                    one JSON object per process and line\n"
"  -h, --help, -V, --version\n"
"\n"
"exit status: 0 all succeeded, 1 any failed or timed out, 2 usage, 3 no target\n"
"sockets: $MEMCTL_RUNTIME_DIR, else $XDG_RUNTIME_DIR/memctl, else /tmp/memctl-UID\n");
}

static void target_fail(struct target *t, const char *code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void target_fail(struct target *t, const char *code, const char *fmt, ...)
{
	va_list ap;

	t->ok = 0;
	snprintf(t->err_code, sizeof(t->err_code), "%s", code);
	va_start(ap, fmt);
	vsnprintf(t->err_msg, sizeof(t->err_msg), fmt, ap);
	va_end(ap);
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void read_info(struct target *t)
{
	char path[512], line[300];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%d.info", C.dir, t->pid);
	f = fopen(path, "re");
	if (f == NULL)
		return;
	while (fgets(line, sizeof(line), f) != NULL) {
		line[strcspn(line, "\n")] = '\0';
		if (strncmp(line, "group=", 6) == 0)
			snprintf(t->group, sizeof(t->group), "%.63s", line + 6);
		else if (strncmp(line, "command=", 8) == 0)
			snprintf(t->command, sizeof(t->command), "%.255s", line + 8);
	}
	fclose(f);
}

static void remove_stale(int pid)
{
	char path[512];

	snprintf(path, sizeof(path), "%s/%d.sock", C.dir, pid);
	unlink(path);
	snprintf(path, sizeof(path), "%s/%d.info", C.dir, pid);
	unlink(path);
}

/* Every live process with a socket; stale sockets are removed. */
static int discover(struct target *ts, int max)
{
	DIR *d = opendir(C.dir);
	struct dirent *e;
	int n = 0;

	if (d == NULL)
		return 0;
	while ((e = readdir(d)) != NULL && n < max) {
		char *end;
		long pid = strtol(e->d_name, &end, 10);

		if (end == e->d_name || strcmp(end, ".sock") != 0 || pid <= 0)
			continue;
		if (kill((pid_t)pid, 0) < 0 && errno == ESRCH) {
			remove_stale((int)pid);
			continue;
		}
		memset(&ts[n], 0, sizeof(ts[n]));
		ts[n].pid = (int)pid;
		read_info(&ts[n]);
		n++;
	}
	closedir(d);
	return n;
}

static int has_socket(int pid)
{
	char path[512];

	snprintf(path, sizeof(path), "%s/%d.sock", C.dir, pid);
	return access(path, F_OK) == 0;
}

static int by_pid(const void *a, const void *b)
{
	return ((const struct target *)a)->pid - ((const struct target *)b)->pid;
}

/* One request, one reply line, all within the deadline. */
static void *talk(void *arg)
{
	struct target *t = arg;
	struct sockaddr_un addr;
	double deadline = now_s() + C.timeout_s;
	size_t len = 0, sent = 0, reqlen = strlen(C.request);
	int fd, lines = 0, want = 1, send_errno = 0;

	t->ok = 0;
	memset(&addr, 0, sizeof(addr));
	addr.sun_family = AF_UNIX;
	if ((size_t)snprintf(addr.sun_path, sizeof(addr.sun_path), "%s/%d.sock", C.dir,
			     t->pid) >= sizeof(addr.sun_path)) {
		target_fail(t, "EINVAL", "socket path too long");
		return NULL;
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0) {
		target_fail(t, "EIO", "socket: %s", strerror(errno));
		return NULL;
	}
	if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
		if (errno == ECONNREFUSED || errno == ENOENT)
			target_fail(t, "ECONNREFUSED",
				    "memctl is not serving in this process (socket %s: %s)",
				    addr.sun_path, strerror(errno));
		else
			target_fail(t, "EIO", "connect %s: %s", addr.sun_path, strerror(errno));
		close(fd);
		return NULL;
	}
	while (lines < want) {
		struct pollfd p = { .fd = fd, .events = sent < reqlen ? POLLOUT : POLLIN };
		double left = deadline - now_s();
		int rc;

		if (left <= 0) {
			target_fail(t, "ETIMEDOUT",
				    "no reply within %.1f s (process stopped or wedged?)",
				    C.timeout_s);
			break;
		}
		rc = poll(&p, 1, (int)(left * 1000) + 1);
		if (rc < 0 && errno == EINTR)
			continue;
		if (rc <= 0)
			continue;
		if (sent < reqlen) {
			ssize_t w = send(fd, C.request + sent, reqlen - sent, MSG_NOSIGNAL);

			if (w < 0 && errno != EAGAIN && errno != EINTR) {
				/* The server may have refused us and closed (another
				 * user, too many clients): its reason is waiting to be
				 * read. */
				send_errno = errno;
				sent = reqlen;
				continue;
			}
			if (w > 0)
				sent += (size_t)w;
			continue;
		}
		{
			ssize_t r = recv(fd, t->reply + len, sizeof(t->reply) - 1 - len, 0);

			if (r < 0 && (errno == EAGAIN || errno == EINTR))
				continue;
			if (r <= 0) {
				if (send_errno)
					target_fail(t, "EIO", "send: %s", strerror(send_errno));
				else
					target_fail(t, "EPROTO", "connection closed without a reply");
				break;
			}
			len += (size_t)r;
			t->reply[len] = '\0';
			if (memchr(t->reply, '\n', len) != NULL)
				lines++;
			else if (len == sizeof(t->reply) - 1) {
				target_fail(t, "E2BIG", "reply too long");
				break;
			}
		}
	}
	close(fd);
	if (lines == want) {
		t->reply[strcspn(t->reply, "\n")] = '\0';
		if (json_bool(t->reply, "ok", &t->ok) < 0)
			target_fail(t, "EPROTO", "malformed reply");
		else if (!t->ok) {
			json_str(t->reply, "error", t->err_code, sizeof(t->err_code));
			json_str(t->reply, "message", t->err_msg, sizeof(t->err_msg));
		}
	}
	return NULL;
}

static void human_bytes(uint64_t b, char *buf, size_t len)
{
	if (b >= (1ull << 30))
		snprintf(buf, len, "%.2f GiB", (double)b / (double)(1ull << 30));
	else if (b >= (1ull << 20))
		snprintf(buf, len, "%.1f MiB", (double)b / (double)(1ull << 20));
	else
		snprintf(buf, len, "%llu B", (unsigned long long)b);
}

static uint64_t field(const char *json, const char *key)
{
	uint64_t v = 0;

	(void)json_u64(json, key, &v);
	return v;
}

static void print_change(const struct target *t)
{
	char dev[32], st[32], host[32];
	double ms = 0;
	uint64_t bytes = field(t->reply, strcmp(C.verb, "pause") == 0 ? "released_bytes"
								     : "restored_bytes");
	uint64_t staged = field(t->reply, "staged_bytes");

	json_double(t->reply, "ms", &ms);
	human_bytes(bytes, dev, sizeof(dev));
	human_bytes(staged, st, sizeof(st));
	printf("%-8d %-12s ok: %s %llu allocations", t->pid, t->group[0] ? t->group : "-",
	       C.verb, (unsigned long long)field(t->reply, "allocations"));
	if (strcmp(C.verb, "pause") == 0 || strcmp(C.verb, "resume") == 0)
		printf(", %s %s", dev, strcmp(C.verb, "pause") == 0 ? "released" : "restored");
	if (staged)
		printf(", %s staged (%.1f GiB/s)", st,
		       ms > 0 ? (double)staged / (double)(1ull << 30) / (ms / 1e3) : 0.0);
	if (strcmp(C.verb, "prepare") == 0) {
		human_bytes(field(t->reply, "host_new_bytes"), host, sizeof(host));
		printf(", %s host memory pinned", host);
	}
	if (strcmp(C.verb, "release-host") == 0) {
		human_bytes(field(t->reply, "host_freed_bytes"), host, sizeof(host));
		printf(", %s host memory freed", host);
	}
	printf(" in %.1f ms\n", ms);
}

static void print_status(const struct target *t, int ls)
{
	char a[32], p[32], h[32];
	const char *row = t->reply;

	human_bytes(field(t->reply, "active_bytes"), a, sizeof(a));
	human_bytes(field(t->reply, "paused_bytes"), p, sizeof(p));
	human_bytes(field(t->reply, "host_bytes"), h, sizeof(h));
	if (ls) {
		char tags[200] = "";
		size_t used = 0;

		while ((row = strstr(row, "{\"tag\":")) != NULL) {
			char name[TAG_MAX], state[16];

			json_str(row, "tag", name, sizeof(name));
			json_str(row, "state", state, sizeof(state));
			used += (size_t)snprintf(tags + used, used < sizeof(tags) ? sizeof(tags) - used : 0,
						 "%s%s:%s", used ? "," : "", name, state);
			if (used >= sizeof(tags))
				break;
			row++;
		}
		printf("%-8d %-12s %-11s %-11s %-11s %-30s %s\n", t->pid,
		       t->group[0] ? t->group : "-", a, p, h, tags[0] ? tags : "-",
		       t->command);
		return;
	}
	printf("%-8d %-12s active %s, paused %s, host %s   %s\n", t->pid,
	       t->group[0] ? t->group : "-", a, p, h, t->command);
	while ((row = strstr(row, "{\"tag\":")) != NULL) {
		char name[TAG_MAX], state[16];

		json_str(row, "tag", name, sizeof(name));
		json_str(row, "state", state, sizeof(state));
		human_bytes(field(row, "active_bytes"), a, sizeof(a));
		human_bytes(field(row, "paused_bytes"), p, sizeof(p));
		human_bytes(field(row, "host_bytes"), h, sizeof(h));
		printf("    %-20s %-7s %6llu allocations  active %-11s paused %-11s host %s\n",
		       name, state, (unsigned long long)field(row, "allocations"), a, p, h);
		row++;
	}
}

static void print_result(const struct target *t)
{
	if (C.json) {
		if (t->ok || t->reply[0] == '{') {
			if (strcmp(C.verb, "ls") == 0) {
				char head[600];
				struct jbuf j;

				jb_init(&j, head, sizeof(head));
				jb_i64(&j, "pid", t->pid);
				jb_str(&j, "command", t->command);
				printf("{%s,\"status\":%s}\n", head, t->reply);
			} else
				printf("%s\n", t->reply);
		} else {
			char buf[512];
			struct jbuf j;

			jb_init(&j, buf, sizeof(buf));
			jb_raw(&j, "{");
			jb_bool(&j, "ok", 0);
			jb_i64(&j, "pid", t->pid);
			jb_str(&j, "group", t->group);
			jb_str(&j, "error", t->err_code);
			jb_str(&j, "message", t->err_msg);
			jb_raw(&j, "}");
			printf("%s\n", buf);
		}
		return;
	}
	if (!t->ok) {
		printf("%-8d %-12s error %s: %s\n", t->pid, t->group[0] ? t->group : "-",
		       t->err_code, t->err_msg);
		return;
	}
	if (strcmp(C.verb, "ls") == 0)
		print_status(t, 1);
	else if (strcmp(C.verb, "status") == 0)
		print_status(t, 0);
	else
		print_change(t);
}

static int add_pid(int *pids, int *npids, const char *arg)
{
	char *end;
	long v = strtol(arg, &end, 10);

	if (*arg == '\0' || *end != '\0' || v <= 0 || v > 4194304 || *npids == 64) {
		fprintf(stderr, "memctl: bad pid '%s'\n", arg);
		return -1;
	}
	pids[(*npids)++] = (int)v;
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "pid", required_argument, NULL, 'p' },
		{ "group", required_argument, NULL, 'g' },
		{ "tags", required_argument, NULL, 'T' },
		{ "stage", required_argument, NULL, 'S' },
		{ "release-host", no_argument, NULL, 'R' },
		{ "timeout", required_argument, NULL, 't' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	static struct target targets[MAX_TARGETS];
	int pids[64], npids = 0, n = 0, i, c, failed = 0, release_host = 0;
	const char *group = NULL, *tags = NULL, *stage = NULL;
	char *end;

	while ((c = getopt_long(argc, argv, "+p:g:t:jhV", longopts, NULL)) != -1 ||
	       (optind < argc && C.verb == NULL)) {
		if (c == -1) { /* the command word; options may follow it */
			C.verb = argv[optind++];
			continue;
		}
		switch (c) {
		case 'p':
			if (add_pid(pids, &npids, optarg) < 0)
				return 2;
			break;
		case 'g':
			group = optarg;
			break;
		case 'T':
			tags = optarg;
			break;
		case 'S':
			stage = optarg;
			break;
		case 'R':
			release_host = 1;
			break;
		case 't':
			C.timeout_s = strtod(optarg, &end);
			if (*end != '\0' || C.timeout_s <= 0 || C.timeout_s > 86400) {
				fprintf(stderr, "memctl: bad timeout '%s'\n", optarg);
				return 2;
			}
			break;
		case 'j':
			C.json = 1;
			break;
		case 'h':
			usage(stdout);
			return 0;
		case 'V':
			printf("memctl %s (protocol %d)\n", MEMCTL_VERSION, PROTO_VERSION);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (C.verb == NULL || optind < argc) {
		usage(stderr);
		return 2;
	}
	if (strcmp(C.verb, "ls") == 0 || strcmp(C.verb, "status") == 0) {
		snprintf(C.request, sizeof(C.request), "status\n");
	} else if (strcmp(C.verb, "pause") == 0 || strcmp(C.verb, "resume") == 0 ||
		   strcmp(C.verb, "prepare") == 0 || strcmp(C.verb, "release-host") == 0) {
		struct region_err err;
		struct tagset ts;
		const char *t = tags;

		if (tags == NULL) {
			fprintf(stderr, "memctl %s: --tags is required (--tags all for every tag)\n",
				C.verb);
			return 2;
		}
		if (strcmp(tags, "all") == 0 || strcmp(tags, "*") == 0)
			t = "";
		if (tagset_parse(t, &ts, &err) < 0) {
			fprintf(stderr, "memctl %s: %s\n", C.verb, err.msg);
			return 2;
		}
		if (stage != NULL && (strcmp(C.verb, "pause") != 0 ||
				      (strcmp(stage, "cpu") != 0 && strcmp(stage, "none") != 0))) {
			fprintf(stderr, "memctl: --stage takes cpu or none, with pause only\n");
			return 2;
		}
		if (release_host && strcmp(C.verb, "resume") != 0) {
			fprintf(stderr, "memctl: --release-host goes with resume only\n");
			return 2;
		}
		snprintf(C.request, sizeof(C.request), "%s tags=%s%s%s\n",
			 strcmp(C.verb, "release-host") == 0 ? "release_host" : C.verb,
			 t[0] ? t : "*", stage && strcmp(stage, "cpu") == 0 ? " stage=cpu" : "",
			 release_host ? " release_host=1" : "");
	} else {
		fprintf(stderr, "memctl: unknown command '%s'\n", C.verb);
		usage(stderr);
		return 2;
	}

	if (C.timeout_s < 0) /* looking should not wait as long as changing */
		C.timeout_s = strcmp(C.verb, "ls") == 0 || strcmp(C.verb, "status") == 0 ? 10 : 60;
	options_runtime_dir(C.dir, sizeof(C.dir));
	n = discover(targets, MAX_TARGETS);
	if (npids > 0) {
		static struct target chosen[64];
		int k, j;

		for (k = 0; k < npids; k++) {
			memset(&chosen[k], 0, sizeof(chosen[k]));
			chosen[k].pid = pids[k];
			chosen[k].ok = -1; /* not yet known */
			read_info(&chosen[k]);
			for (j = 0; j < n; j++)
				if (targets[j].pid == pids[k])
					chosen[k] = targets[j];
			if (chosen[k].ok == -1 && !has_socket(pids[k])) {
				if (kill(pids[k], 0) < 0 && errno == ESRCH)
					target_fail(&chosen[k], "ESRCH", "no such process");
				else
					target_fail(&chosen[k], "ENOSYS",
						    "memctl is not active in this process: no socket in %s "
						    "(start it with LD_PRELOAD=libmemctl.so; the socket "
						    "appears with its first CUDA allocation)", C.dir);
			}
		}
		memcpy(targets, chosen, sizeof(chosen[0]) * (size_t)npids);
		n = npids;
	}
	if (group != NULL) {
		int k = 0;

		for (i = 0; i < n; i++)
			if (strcmp(targets[i].group, group) == 0)
				targets[k++] = targets[i];
		n = k;
	}
	if (n == 0) {
		if (C.json)
			printf("{\"ok\":false,\"error\":\"ENOENT\",\"message\":\"no target\"}\n");
		else
			fprintf(stderr, "memctl: no process to control%s%s (sockets in %s)\n",
				group ? " in group " : "", group ? group : "", C.dir);
		return 3;
	}
	qsort(targets, (size_t)n, sizeof(targets[0]), by_pid);
	for (i = 0; i < n; i++)
		if (targets[i].err_code[0] == '\0' &&
		    pthread_create(&targets[i].tid, NULL, talk, &targets[i]) != 0)
			target_fail(&targets[i], "EAGAIN", "cannot start a thread");
	if (!C.json && strcmp(C.verb, "ls") == 0)
		printf("%-8s %-12s %-11s %-11s %-11s %-30s %s\n", "PID", "GROUP", "ACTIVE",
		       "PAUSED", "HOST", "TAGS", "COMMAND");
	for (i = 0; i < n; i++) {
		if (targets[i].tid)
			pthread_join(targets[i].tid, NULL);
		print_result(&targets[i]);
		if (!targets[i].ok)
			failed++;
	}
	if (!C.json && n > 1 && strcmp(C.verb, "ls") != 0)
		printf("%d of %d processes succeeded\n", n - failed, n);
	return failed ? 1 : 0;
}
