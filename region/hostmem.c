/* SPDX-License-Identifier: Apache-2.0 */
/*
 * hostmem.c - how much host memory a staged pause may take without meeting
 * the OOM killer.
 *
 * MemAvailable speaks for the machine, not for a container: inside a
 * memory cgroup the kernel kills at the cgroup's limit, however much the
 * machine has free. So the room is the least of MemAvailable and, for the
 * process's memory cgroup and each of its ancestors, the limit less what
 * is in use; the inactive page cache counts as free, because reclaim gives
 * it back before it kills (the "working set" that container runtimes
 * report). cgroup v2 (memory.max, memory.current) and v1
 * (memory.limit_in_bytes, memory.usage_in_bytes) are both read. Pinned
 * pages cannot be swapped, so swap does not count.
 *
 * Reads /proc and the cgroup files only; the cgroup directory can be given
 * (a test hands a directory it made), otherwise it is found through
 * /proc/self/cgroup and /proc/self/mountinfo.
 */
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

struct cg_kind {
	const char *limit;    /* file holding the limit */
	const char *usage;    /* file holding what is in use */
	const char *inactive; /* memory.stat key of the inactive page cache */
};

static const struct cg_kind cg_v2 = { "memory.max", "memory.current", "inactive_file" };
static const struct cg_kind cg_v1 = { "memory.limit_in_bytes", "memory.usage_in_bytes",
				      "total_inactive_file" };

/* Read one number from dir/file; "max" is no limit. 0 or -1. */
static int read_u64(const char *dir, const char *file, uint64_t *out)
{
	char path[PATH_MAX + 64], word[32];
	FILE *f;
	int ok;

	snprintf(path, sizeof(path), "%s/%s", dir, file);
	f = fopen(path, "re");
	if (f == NULL)
		return -1;
	ok = fscanf(f, "%31s", word) == 1;
	fclose(f);
	if (!ok)
		return -1;
	if (strcmp(word, "max") == 0) {
		*out = UINT64_MAX;
		return 0;
	}
	*out = strtoull(word, NULL, 10);
	return 0;
}

/* The value of `key` in dir/memory.stat, or 0. */
static uint64_t stat_value(const char *dir, const char *key)
{
	char path[PATH_MAX + 64], name[64];
	unsigned long long v;
	uint64_t found = 0;
	FILE *f;

	snprintf(path, sizeof(path), "%s/memory.stat", dir);
	f = fopen(path, "re");
	if (f == NULL)
		return 0;
	while (fscanf(f, "%63s %llu", name, &v) == 2)
		if (strcmp(name, key) == 0) {
			found = v;
			break;
		}
	fclose(f);
	return found;
}

static int has_file(const char *dir, const char *file)
{
	char path[PATH_MAX + 64];

	snprintf(path, sizeof(path), "%s/%s", dir, file);
	return access(path, R_OK) == 0;
}

/* Take one cgroup level into account. */
static void consider_level(const char *dir, const struct cg_kind *k, struct host_room *out)
{
	uint64_t limit, usage, inactive, room;

	if (read_u64(dir, k->limit, &limit) < 0 || limit == UINT64_MAX ||
	    read_u64(dir, k->usage, &usage) < 0)
		return;
	inactive = stat_value(dir, k->inactive);
	usage = usage > inactive ? usage - inactive : 0;
	room = limit > usage ? limit - usage : 0;
	if (room >= out->bytes)
		return;
	out->bytes = room;
	snprintf(out->limit, sizeof(out->limit), "memory cgroup %.80s: %s %llu, in use %llu",
		 dir, k->limit, (unsigned long long)limit, (unsigned long long)usage);
}

/* The cgroup at `leaf` and every ancestor that is a cgroup of the same
 * kind (the walk ends where the files end: at the hierarchy's root, or at
 * the top of a directory a test made). */
static void consider_tree(const char *leaf, struct host_room *out)
{
	const struct cg_kind *k = has_file(leaf, cg_v2.usage) ? &cg_v2 : &cg_v1;
	char dir[PATH_MAX];
	char *slash;

	if (!has_file(leaf, k->usage))
		return;
	snprintf(dir, sizeof(dir), "%s", leaf);
	for (;;) {
		consider_level(dir, k, out);
		slash = strrchr(dir, '/');
		if (slash == NULL || slash == dir)
			return;
		*slash = '\0';
		if (!has_file(dir, k->usage))
			return;
	}
}

/* The mount point of the v2 hierarchy, or of the v1 one with the memory
 * controller, and the root it shows, from /proc/self/mountinfo. */
static int find_mount(int v2, char *mnt, size_t mlen, char *root, size_t rlen)
{
	char line[1024], r[PATH_MAX], m[PATH_MAX], type[64], opts[512];
	const char *sep;
	FILE *f = fopen("/proc/self/mountinfo", "re");
	int found = 0;

	if (f == NULL)
		return 0;
	while (!found && fgets(line, sizeof(line), f) != NULL) {
		sep = strstr(line, " - ");
		if (sep == NULL || sscanf(line, "%*s %*s %*s %4095s %4095s", r, m) != 2 ||
		    sscanf(sep + 3, "%63s %*s %511s", type, opts) != 2)
			continue;
		if (v2 ? strcmp(type, "cgroup2") == 0
		       : strcmp(type, "cgroup") == 0 && strstr(opts, "memory") != NULL) {
			snprintf(mnt, mlen, "%s", m);
			snprintf(root, rlen, "%s", r);
			found = 1;
		}
	}
	fclose(f);
	return found;
}

/* Directory of the process's own cgroup (v2, or v1 memory). 1 if found. */
static int own_cgroup(int v2, char *dir, size_t len)
{
	char line[1024], mnt[PATH_MAX], root[PATH_MAX];
	char *path = NULL, *ctrl;
	size_t rl;
	FILE *f = fopen("/proc/self/cgroup", "re");

	if (f == NULL)
		return 0;
	while (path == NULL && fgets(line, sizeof(line), f) != NULL) {
		line[strcspn(line, "\n")] = '\0';
		ctrl = strchr(line, ':');
		if (ctrl == NULL || strchr(ctrl + 1, ':') == NULL)
			continue;
		if (v2 ? strncmp(line, "0::", 3) == 0
		       : strstr(ctrl, "memory") != NULL && strncmp(line, "0::", 3) != 0)
			path = strchr(ctrl + 1, ':') + 1;
	}
	fclose(f);
	if (path == NULL || !find_mount(v2, mnt, sizeof(mnt), root, sizeof(root)))
		return 0;
	/* Without a cgroup namespace the mount shows a sub-tree, and the
	 * path in /proc/self/cgroup starts with its root. */
	rl = strlen(root);
	if (strcmp(root, "/") != 0 && strncmp(path, root, rl) == 0)
		path += rl;
	snprintf(dir, len, "%s%s", mnt, strcmp(path, "/") == 0 ? "" : path);
	return 1;
}

static uint64_t mem_available(void)
{
	char line[128];
	unsigned long long kb;
	uint64_t avail = UINT64_MAX;
	FILE *f = fopen("/proc/meminfo", "re");

	if (f == NULL)
		return avail;
	while (fgets(line, sizeof(line), f) != NULL)
		if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1) {
			avail = (uint64_t)kb * 1024;
			break;
		}
	fclose(f);
	return avail;
}

void host_room(const char *cgroup_dir, struct host_room *out)
{
	char dir[PATH_MAX];

	out->bytes = mem_available();
	snprintf(out->limit, sizeof(out->limit), "MemAvailable");
	if (cgroup_dir != NULL && cgroup_dir[0] != '\0') {
		consider_tree(cgroup_dir, out);
		return;
	}
	if (own_cgroup(1, dir, sizeof(dir)))
		consider_tree(dir, out);
	if (own_cgroup(0, dir, sizeof(dir)))
		consider_tree(dir, out);
}
