/* SPDX-License-Identifier: Apache-2.0 */
/*
 * sockdir.c - whose socket directory this is.
 *
 * A socket in a directory someone else controls can be replaced by theirs:
 * the server would serve in a place others can steer, and the CLI would
 * take orders' answers from an impostor (a user who made /tmp/memctl-0
 * before root did). Both therefore insist on the same thing: a real
 * directory, ours, closed to everyone else.
 */
#include <errno.h>
#include <sys/stat.h>

#include "sockdir.h"

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
