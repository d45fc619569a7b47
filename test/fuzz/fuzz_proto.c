/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fuzz_proto.c - libFuzzer target for what faces the control socket: the
 * request parser (proto_parse) with the tag lists it parses once per
 * request (tagset_parse), the writer that turns a request back into a line
 * (proto_format), and the JSON writer that echoes parts of requests back.
 * `make fuzz` builds it with clang and runs it for FUZZ_SECONDS.
 *
 * Besides "no crash, no sanitizer report" it checks properties: a parsed
 * request holds only what the verb table allows, and formatting it and
 * parsing the line again gives the same request.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int same_tags(const struct tagset *a, const struct tagset *b)
{
	int i;

	if (a->all != b->all || a->n != b->n)
		return 0;
	for (i = 0; i < a->n; i++)
		if (strcmp(a->names[i], b->names[i]) != 0)
			return 0;
	return 1;
}

/* What the verb table promises of any request proto_parse accepts. */
static void check_request(const struct proto_req *req)
{
	const struct verb_def *v;
	int i;

	if ((unsigned)req->verb >= VERB_COUNT)
		abort();
	v = &proto_verbs[req->verb];
	if (v->wire == NULL || req->rq.tags.n > TAGSET_MAX || req->rq.tags.n < 0)
		abort();
	if (req->rq.tags.all && req->rq.tags.n != 0)
		abort();
	for (i = 0; i < req->rq.tags.n; i++)
		if (!tag_valid(req->rq.tags.names[i]))
			abort();
	if ((req->rq.flags & MEMCTL_STAGE_CPU) && !(v->keys & KEY_BIT(KEY_STAGE)))
		abort();
	if ((req->rq.flags & MEMCTL_RELEASE_HOST) && !(v->keys & KEY_BIT(KEY_RELEASE_HOST)))
		abort();
	if ((req->rq.flags & MEMCTL_GATE) && !(v->keys & KEY_BIT(KEY_GATE)))
		abort();
	if (req->timeout_ms < 0 || req->timeout_ms > PROTO_MAX_TIMEOUT_MS)
		abort();
	if (req->rq.deadline_ms != 0 || req->rq.cancel != NULL)
		abort(); /* the server's to fill, never the client's */
}

/* proto_format, then proto_parse of its line, gives the request back. */
static void check_roundtrip(const struct proto_req *req)
{
	struct region_err err = { 0, "" };
	struct proto_req again;
	char line[PROTO_MAX_LINE];
	int n = proto_format(req, line, sizeof(line));

	if (n < 0 || (size_t)n >= sizeof(line))
		abort();
	if (proto_parse(line, (size_t)n, &again, &err) != 0)
		abort();
	if (again.verb != req->verb || again.rq.flags != req->rq.flags ||
	    again.timeout_ms != req->timeout_ms || !same_tags(&again.rq.tags, &req->rq.tags))
		abort();
}

/* The tag list parser alone, as the C API calls it (NUL-terminated). */
static void check_tagset(const char *s)
{
	struct region_err err = { 0, "" };
	struct tagset ts;
	int rc = tagset_parse(s, &ts, &err);

	if (rc != 0 && (rc != -EINVAL || err.code != -EINVAL ||
			strnlen(err.msg, sizeof(err.msg)) >= sizeof(err.msg)))
		abort();
	if (rc == 0 && !ts.all && (ts.n < 1 || ts.n > TAGSET_MAX))
		abort();
}

static void check_echo(const char *text)
{
	struct jbuf j;

	jb_init_grow(&j, 1024);
	jb_raw(&j, "{");
	jb_str(&j, "message", text);
	jb_raw(&j, "}");
	if (!j.overflow && (j.len >= j.cap || j.buf[j.len] != '\0'))
		abort();
	jb_free(&j);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct region_err err = { 0, "" };
	struct proto_req req;
	char *line, *text;
	int rc;

	/* The server hands the parser a buffer that is not NUL-terminated;
	 * copy to an exact-size heap block so ASan sees any over-read. */
	line = malloc(size ? size : 1);
	text = malloc(size + 1);
	if (line == NULL || text == NULL)
		abort();
	memcpy(line, data, size);
	rc = proto_parse(line, size, &req, &err);
	if (rc != 0 && (rc != -EINVAL || err.code != -EINVAL ||
			strnlen(err.msg, sizeof(err.msg)) >= sizeof(err.msg)))
		abort();
	if (rc == 0) {
		check_request(&req);
		check_roundtrip(&req);
	}
	memcpy(text, data, size);
	text[size] = '\0';
	check_tagset(text);
	check_echo(rc ? err.msg : text);
	free(text);
	free(line);
	return 0;
}
