/* SPDX-License-Identifier: Apache-2.0 */
/*
 * server.h - the control thread inside the process.
 */
#ifndef MEMCTL_SERVER_H
#define MEMCTL_SERVER_H

#include "options.h"

/* Start the control thread once (no-op when MEMCTL_SOCKET=0 or already
 * started in this process). Never fails the caller: problems are logged. */
void ctl_server_start(const struct options *o);

/* In a forked child: close the parent's socket without unlinking it and
 * forget the server, so the child may start its own. */
void ctl_server_after_fork(void);

#endif /* MEMCTL_SERVER_H */
