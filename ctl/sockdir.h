/* SPDX-License-Identifier: Apache-2.0 */
/*
 * sockdir.h - the rule for the socket directory, applied by the server
 * before it creates its socket and by the CLI before it trusts one.
 */
#ifndef MEMCTL_SOCKDIR_H
#define MEMCTL_SOCKDIR_H

#include <sys/types.h>

#include "region.h"

/* 0 when `dir` is a directory (not a symbolic link) owned by `uid` that
 * grants nothing to group or others. Otherwise -ENOENT (it does not
 * exist), -EACCES (it breaks the rule) or another -errno from lstat, with
 * a one-line reason in err. */
int sockdir_check(const char *dir, uid_t uid, struct region_err *err);

#endif /* MEMCTL_SOCKDIR_H */
