/* SPDX-License-Identifier: Apache-2.0 */
/*
 * sockdir.h - the rule for the socket directory, applied by the server
 * before it creates its socket and by the CLI before it trusts one.
 */
#ifndef MEMCTL_SOCKDIR_H
#define MEMCTL_SOCKDIR_H

#include <stddef.h>
#include <sys/types.h>

#include "region.h"

/* The socket directory from MEMCTL_RUNTIME_DIR, XDG_RUNTIME_DIR or
 * /tmp/memctl-<uid>, as the library and the CLI both derive it. A relative
 * MEMCTL_RUNTIME_DIR is ignored: then `why` (when not NULL) says so in one
 * line for the caller to warn with; else it is set to "". */
void sockdir_path(char *buf, size_t len, char *why, size_t whylen);

/* 0 when `dir` is a directory (not a symbolic link) owned by `uid` that
 * grants nothing to group or others. Otherwise -ENOENT (it does not
 * exist), -EACCES (it breaks the rule) or another -errno from lstat, with
 * a one-line reason in err. */
int sockdir_check(const char *dir, uid_t uid, struct region_err *err);

#endif /* MEMCTL_SOCKDIR_H */
