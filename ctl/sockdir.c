/* SPDX-License-Identifier: Apache-2.0 */
/*
 * sockdir.c - where the sockets are, and whose directory that is.
 *
 * A socket in a directory someone else controls can be replaced by theirs:
 * the server would serve in a place others can steer, and the CLI would
 * believe an impostor's answers (a user who made /tmp/memctl-0 before root
 * did). Both therefore insist on the same thing: a real directory, ours,
 * closed to everyone else.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sockdir.h"

void sockdir_path(char *buf, size_t len, char *why, size_t whylen)
{
	const char *dir = getenv("MEMCTL_RUNTIME_DIR");
	const char *xdg = getenv("XDG_RUNTIME_DIR");

	if (why != NULL && whylen > 0)
		why[0] = '\0';
	if (dir != NULL && dir[0] == '/') {
		snprintf(buf, len, "%s", dir);
		return;
	}
	if (xdg != NULL && xdg[0] == '/')
		snprintf(buf, len, "%s/memctl", xdg);
	else
		snprintf(buf, len, "/tmp/memctl-%u", (unsigned)getuid());
	/* The process and the CLI resolve relative paths from different
	 * working directories: one would never find the other's socket. */
	if (dir != NULL && dir[0] != '\0' && why != NULL)
		snprintf(why, whylen, "ignoring MEMCTL_RUNTIME_DIR='%.64s' (not an absolute "
			 "path); using %s", dir, buf);
}

int sockdir_check(const char *dir, uid_t uid, struct region_err *err)
{
	struct stat st;

	if (lstat(dir, &st) < 0) {
		int e = errno;

		return region_err_set(err, -e, "socket directory %s: %s", dir,
				      e == ENOENT ? "does not exist" : "cannot be read");
	}
	if (S_ISLNK(st.st_mode))
		return region_err_set(err, -EACCES,
				      "refusing socket directory %s: a symbolic link", dir);
	if (!S_ISDIR(st.st_mode))
		return region_err_set(err, -EACCES,
				      "refusing socket directory %s: not a directory", dir);
	if (st.st_uid != uid)
		return region_err_set(err, -EACCES,
				      "refusing socket directory %s: owned by uid %u, not uid %u",
				      dir, (unsigned)st.st_uid, (unsigned)uid);
	if (st.st_mode & 0077)
		return region_err_set(err, -EACCES,
				      "refusing socket directory %s: mode %04o lets others in "
				      "(must be 0700)", dir, (unsigned)(st.st_mode & 07777));
	return 0;
}
