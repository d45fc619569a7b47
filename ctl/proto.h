/* SPDX-License-Identifier: Apache-2.0 */
/*
 * proto.h - the control protocol (docs/protocol.md), shared by the server
 * inside the process and the memctl CLI.
 *
 * A request is one line of at most PROTO_MAX_LINE bytes:
 *     <verb> [key=value]...
 * and every reply is one line holding one JSON object with "ok".
 */
#ifndef MEMCTL_PROTO_H
#define MEMCTL_PROTO_H

#include <stddef.h>
#include <stdint.h>

#define PROTO_VERSION 1
#define PROTO_MAX_LINE 4096
#define PROTO_MAX_REPLY 16384

enum proto_verb {
	VERB_HELLO,
	VERB_STATUS,
	VERB_PAUSE,
	VERB_RESUME,
	VERB_PREPARE,
	VERB_RELEASE_HOST,
};

struct proto_req {
	enum proto_verb verb;
	char tags[1024];   /* "" means all tags */
	int stage_cpu;     /* pause: stage=cpu */
	int release_host;  /* resume: release_host=1 */
};

/* Parse one request line (without its newline; need not be NUL-terminated).
 * Returns 0, or -EINVAL with a message in err. Never reads past len. */
int proto_parse(const char *line, size_t len, struct proto_req *req,
		char *err, size_t errlen);

const char *proto_verb_name(enum proto_verb v);
/* "ENOENT" for -ENOENT and so on; "EUNKNOWN" otherwise. */
const char *proto_errname(int code);

/* A bounded JSON writer: appends, and marks overflow instead of writing
 * past the end. */
struct jbuf {
	char *buf;
	size_t len, cap;
	int overflow;
	int need_comma;
};

void jb_init(struct jbuf *j, char *buf, size_t cap);
void jb_raw(struct jbuf *j, const char *s);
void jb_key(struct jbuf *j, const char *key);
void jb_str(struct jbuf *j, const char *key, const char *val);
void jb_u64(struct jbuf *j, const char *key, uint64_t val);
void jb_i64(struct jbuf *j, const char *key, int64_t val);
void jb_double(struct jbuf *j, const char *key, double val);
void jb_bool(struct jbuf *j, const char *key, int val);
void jb_open(struct jbuf *j, const char *key, char bracket); /* key NULL in arrays */
void jb_close(struct jbuf *j, char bracket);

/* Reading our own replies (CLI): the value of the first "key" at or after
 * `from`. Returns 0 or -ENOENT. */
int json_u64(const char *json, const char *key, uint64_t *out);
int json_double(const char *json, const char *key, double *out);
int json_bool(const char *json, const char *key, int *out);
int json_str(const char *json, const char *key, char *out, size_t len);

#endif /* MEMCTL_PROTO_H */
