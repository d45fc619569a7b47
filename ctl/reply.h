/* SPDX-License-Identifier: Apache-2.0 */
/*
 * reply.h - the server's replies, written as docs/protocol.md describes
 * them. Every reply is one JSON object starting with ok, verb, pid, group.
 */
#ifndef MEMCTL_REPLY_H
#define MEMCTL_REPLY_H

#include "proto.h"
#include "server.h"
#include "worker.h"

struct reply_ctx {
	const char *group;
	const char *command;
	const struct ctl_backend *be;
};

void reply_error(struct jbuf *j, const struct reply_ctx *x, const char *verb, int code,
		 const char *msg);
void reply_hello(struct jbuf *j, const struct reply_ctx *x);
void reply_status(struct jbuf *j, const struct reply_ctx *x);
void reply_ungate(struct jbuf *j, const struct reply_ctx *x);
/* The reply to a job that came back from the worker, run or not. */
void reply_change(struct jbuf *j, const struct reply_ctx *x, const struct job *job);

#endif /* MEMCTL_REPLY_H */
