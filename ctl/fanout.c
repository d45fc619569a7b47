/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fanout.c - finding the processes that run libmemctl.so and sending one
 * request to all of them at once (fanout_talk.c talks to one).
 *
 * A process is found by its socket, <dir>/<pid>.sock, and described by
 * <pid>.info (group, command), which can be read while the process is
 * stopped: a process that cannot answer is still selected and reported,
 * never silently left out. Each target gets a thread; the caller waits for
 * all of them, and each is bounded by its own deadline.
 */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fanout.h"
#include "sockdir.h"

#define PID_MAX 4194304 /* the kernel's PID_MAX_LIMIT */

int fanout_dir(char *dir, size_t len, char *why, size_t whylen, struct region_err *err)
{
	int rc;

	sockdir_path(dir, len, why, whylen);
	rc = sockdir_check(dir, geteuid(), err);
	return rc == -ENOENT ? 0 : rc;
}

/* The length of the UTF-8 sequence at s (as strict as JSON parsers are:
 * no overlong forms, no surrogates, nothing past U+10FFFF); 0 if none. */
static size_t utf8_len(const unsigned char *s)
{
	unsigned char lo = 0x80, hi = 0xbf;
	size_t n, i;

	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		n = 2;
	else if (s[0] >= 0xe0 && s[0] <= 0xef)
		n = 3;
	else if (s[0] >= 0xf0 && s[0] <= 0xf4)
		n = 4;
	else
		return 0;
	if (s[0] == 0xe0)
		lo = 0xa0;
	else if (s[0] == 0xed)
		hi = 0x9f;
	else if (s[0] == 0xf0)
		lo = 0x90;
	else if (s[0] == 0xf4)
		hi = 0x8f;
	if (s[1] < lo || s[1] > hi)
		return 0;
	for (i = 2; i < n; i++)
		if (s[i] < 0x80 || s[i] > 0xbf)
			return 0;
	return n;
}

/* A command line need not be UTF-8, but JSON strings and metric labels
 * must be: each byte of no UTF-8 sequence becomes '?'. */
static void make_utf8(char *text)
{
	unsigned char *s = (unsigned char *)text;

	while (*s != '\0') {
		size_t n = utf8_len(s);

		if (n == 0) {
			*s++ = '?';
			continue;
		}
		s += n;
	}
}

static void read_info(const char *dir, struct target *t)
{
	char path[FANOUT_DIR_MAX + 32], line[300];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%d.info", dir, t->pid);
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
	make_utf8(t->command);
}

static int socket_pid(const char *name)
{
	char *end;
	long pid = strtol(name, &end, 10);

	if (end == name || strcmp(end, ".sock") != 0 || pid <= 0 || pid > PID_MAX)
		return -1;
	return (int)pid;
}

static void remove_stale(const char *dir, int pid)
{
	char path[FANOUT_DIR_MAX + 32];

	snprintf(path, sizeof(path), "%s/%d.sock", dir, pid);
	unlink(path);
	snprintf(path, sizeof(path), "%s/%d.info", dir, pid);
	unlink(path);
}

/* Every live process with a socket; stale sockets are removed. */
static int discover(const char *dir, struct target *ts, int max)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int n = 0;

	if (d == NULL)
		return 0;
	while ((e = readdir(d)) != NULL && n < max) {
		int pid = socket_pid(e->d_name);

		if (pid < 0)
			continue;
		if (kill((pid_t)pid, 0) < 0 && errno == ESRCH) {
			remove_stale(dir, pid);
			continue;
		}
		memset(&ts[n], 0, sizeof(ts[n]));
		ts[n].pid = pid;
		read_info(dir, &ts[n]);
		n++;
	}
	closedir(d);
	return n;
}

/* The processes named by pid, each reported even without a socket. */
static int chosen(const char *dir, const int *pids, int npids, struct target *ts, int max)
{
	int k;

	for (k = 0; k < npids && k < max; k++) {
		struct target *t = &ts[k];
		char path[FANOUT_DIR_MAX + 32];

		memset(t, 0, sizeof(*t));
		t->pid = pids[k];
		t->named = 1;
		read_info(dir, t);
		snprintf(path, sizeof(path), "%s/%d.sock", dir, t->pid);
		if (access(path, F_OK) == 0)
			continue;
		if (kill(t->pid, 0) < 0 && errno == ESRCH)
			region_err_set(&t->err, -ESRCH, "no such process");
		else
			region_err_set(&t->err, -ENOSYS,
				       "memctl is not active in this process: no socket in %s "
				       "(start it with LD_PRELOAD=libmemctl.so; the socket "
				       "appears with its first CUDA allocation)", dir);
	}
	return k;
}

static int by_pid(const void *a, const void *b)
{
	return ((const struct target *)a)->pid - ((const struct target *)b)->pid;
}

int fanout_select(const char *dir, const char *group, const int *pids, int npids,
		  struct target *ts, int max)
{
	int n = npids ? chosen(dir, pids, npids, ts, max) : discover(dir, ts, max), i, k = 0;

	for (i = 0; i < n; i++)
		if (group == NULL || strcmp(ts[i].group, group) == 0)
			ts[k++] = ts[i];
	qsort(ts, (size_t)k, sizeof(ts[0]), by_pid);
	return k;
}

void fanout_run(const struct fanout *f, struct target *ts, int n)
{
	int i;

	for (i = 0; i < n; i++) {
		ts[i].f = f;
		if (ts[i].err.code != 0)
			continue;
		if (pthread_create(&ts[i].tid, NULL, fanout_talk, &ts[i]) == 0)
			ts[i].talking = 1;
		else
			region_err_set(&ts[i].err, -EAGAIN, "cannot start a thread");
	}
	for (i = 0; i < n; i++)
		if (ts[i].talking) {
			pthread_join(ts[i].tid, NULL);
			ts[i].talking = 0;
		}
}

int fanout_drop_stale(const char *dir, struct target *ts, int n)
{
	int i, k = 0;

	for (i = 0; i < n; i++) {
		if (ts[i].stale && !ts[i].named) {
			json_decref(ts[i].reply);
			remove_stale(dir, ts[i].pid);
			continue;
		}
		ts[k++] = ts[i];
	}
	return k;
}

void fanout_release(struct target *ts, int n)
{
	int i;

	for (i = 0; i < n; i++) {
		json_decref(ts[i].reply);
		ts[i].reply = NULL;
	}
}

/* A failure the client saw itself, as one JSON object. */
static json_t *error_json(const struct target *t)
{
	json_t *o = json_pack("{s:b, s:i, s:s, s:s, s:i, s:s}", "ok", 0, "pid", t->pid,
			      "group", t->group, "error", proto_errname(t->err.code),
			      "code", t->err.code, "message", t->err.msg);

	if (o != NULL && t->outcome_unknown)
		json_object_set_new(o, "outcome", json_string("unknown"));
	return o;
}

json_t *fanout_json(const struct fanout *f, const struct target *t)
{
	if (t->err.code != 0) {
		/* The process's own error reply as it sent it; else ours. */
		if (t->reply != NULL && t->err.code != -EPROTO)
			return json_incref(t->reply);
		return error_json(t);
	}
	if (f->verb == VERB_LS)
		return json_pack("{s:i, s:s, s:O}", "pid", t->pid, "command", t->command,
				 "status", t->reply);
	return json_incref(t->reply);
}
