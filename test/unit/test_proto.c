/* SPDX-License-Identifier: Apache-2.0 */
/* test_proto.c - the verb table, request lines read and written back. */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>
#include <errno.h>
#include <string.h>

#include "proto.h"

static int parse(const char *line, struct proto_req *req, struct region_err *err)
{
	return proto_parse(line, strlen(line), req, err);
}

/* Every name once; every change verb runs on the registry and reports. */
Test(proto, the_verb_table_is_consistent)
{
	int v, w;

	for (v = 0; v < VERB_COUNT; v++) {
		const struct verb_def *d = &proto_verbs[v];

		cr_assert(d->wire != NULL || d->cli != NULL, "verb %d has no name", v);
		cr_assert(proto_verbs[d->sends].wire != NULL, "verb %d", v);
		cr_assert(eq(int, d->changes, d->figures != 0));
		cr_assert(eq(int, d->changes, (d->keys & KEY_BIT(KEY_TAGS)) != 0));
		if (d->cli != NULL)
			cr_assert(eq(int, proto_verb_by_cli(d->cli), v));
		for (w = 0; w < v; w++) {
			if (d->wire != NULL && proto_verbs[w].wire != NULL)
				cr_assert(strcmp(d->wire, proto_verbs[w].wire) != 0, "%s", d->wire);
			if (d->cli != NULL && proto_verbs[w].cli != NULL)
				cr_assert(strcmp(d->cli, proto_verbs[w].cli) != 0, "%s", d->cli);
		}
	}
	cr_assert(eq(int, proto_verb_by_cli("release_host"), -1));
	cr_assert(eq(int, proto_verb_by_cli("release-host"), VERB_RELEASE_HOST));
	cr_assert(eq(int, proto_verbs[VERB_LS].sends, VERB_STATUS));
}

Test(proto, requests_are_read_into_one_struct)
{
	struct region_err err = { 0, "" };
	struct proto_req req;

	cr_assert(eq(int, parse("pause tags=weights,kv_cache stage=cpu timeout_ms=2500", &req,
				&err), 0), "%s", err.msg);
	cr_assert(eq(int, req.verb, VERB_PAUSE));
	cr_assert(eq(int, req.rq.tags.n, 2));
	cr_assert(eq(str, req.rq.tags.names[1], "kv_cache"));
	cr_assert(eq(u32, req.rq.flags, MEMCTL_STAGE_CPU));
	cr_assert(eq(i64, req.timeout_ms, 2500));
	cr_assert(eq(i64, req.rq.deadline_ms, 0));
	cr_assert(eq(int, parse("  resume   tags=all release_host=1\r", &req, &err), 0));
	cr_assert(eq(int, req.rq.tags.all, 1));
	cr_assert(eq(u32, req.rq.flags, MEMCTL_RELEASE_HOST));
	cr_assert(eq(int, parse("status timeout_ms=86400000", &req, &err), 0));
	cr_assert(eq(int, req.verb, VERB_STATUS));
	/* The gate: off unless asked (the CLI asks), and gate=0 is its default. */
	cr_assert(eq(int, parse("pause tags=w gate=1", &req, &err), 0));
	cr_assert(eq(u32, req.rq.flags, MEMCTL_GATE));
	cr_assert(eq(int, parse("pause tags=w gate=0", &req, &err), 0));
	cr_assert(eq(u32, req.rq.flags, 0));
	cr_assert(eq(int, parse("gate tags=w stage=cpu", &req, &err), 0));
	cr_assert(eq(int, req.verb, VERB_GATE));
	cr_assert(eq(int, proto_verbs[VERB_GATE].changes, 1));
	cr_assert(eq(int, parse("ungate", &req, &err), 0));
	cr_assert(eq(int, proto_verbs[VERB_UNGATE].changes, 0));
}

Test(proto, every_mistake_is_einval_with_a_reason)
{
	static const struct { const char *line, *says; } bad[] = {
		{ "", "empty request" },
		{ "frob", "unknown verb 'frob'" },
		{ "ls", "unknown verb 'ls'" },
		{ "pause", "pause needs tags=" },
		{ "pause tags=", "tags= needs a value" },
		{ "pause tags=,", "empty tag list" },
		{ "pause tags=all,w", "means every tag" },
		{ "pause tags=w stage=cpu stage=none", "key 'stage' given twice" },
		{ "pause tags=w tags=w", "key 'tags' given twice" },
		{ "resume tags=w stage=cpu", "stage= does not apply to resume" },
		{ "status tags=w", "tags= does not apply to status" },
		{ "hello release_host=1", "release_host= does not apply to hello" },
		{ "pause tags=w color=red", "unknown key 'color'" },
		{ "pause tags=w stage", "expected key=value" },
		{ "pause tags=w stage=gpu", "stage must be cpu or none" },
		{ "resume tags=w release_host=yes", "release_host must be 0 or 1" },
		{ "pause tags=w gate=yes", "gate must be 0 or 1" },
		{ "resume tags=w gate=1", "gate= does not apply to resume" },
		{ "gate tags=w gate=1", "gate= does not apply to gate" },
		{ "ungate tags=w", "tags= does not apply to ungate" },
		{ "gate", "gate needs tags=" },
		{ "status timeout_ms=0", "timeout_ms must be" },
		{ "status timeout_ms=-5", "timeout_ms must be" },
		{ "status timeout_ms=86400001", "timeout_ms must be" },
		{ "status timeout_ms=99999999999999999999999", "timeout_ms must be" },
		{ "status timeout_ms=1e3", "timeout_ms must be" },
		{ "status\x01", "control or non-ASCII" },
	};
	struct region_err err;
	struct proto_req req;
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err.msg[0] = '\0';
		cr_assert(eq(int, parse(bad[i].line, &req, &err), -EINVAL), "'%s'", bad[i].line);
		cr_assert(not(eq(ptr, strstr(err.msg, bad[i].says), NULL)), "'%s': %s",
			  bad[i].line, err.msg);
	}
}

/* What the CLI sends is what the server reads. */
Test(proto, a_request_written_back_reads_the_same)
{
	static const char *lines[] = {
		"pause tags=weights stage=none", "pause tags=all stage=cpu timeout_ms=60000",
		"resume tags=a,b,c release_host=1", "resume tags=kv", "prepare tags=x.y-z_0",
		"release_host tags=all timeout_ms=1", "hello", "status timeout_ms=10000",
		"pause tags=weights stage=cpu gate=1 timeout_ms=5", "gate tags=w stage=none",
		"gate tags=a,b stage=cpu timeout_ms=100", "ungate",
	};
	struct region_err err = { 0, "" };
	struct proto_req req, again;
	char buf[PROTO_MAX_LINE];
	size_t i;

	for (i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
		cr_assert(eq(int, parse(lines[i], &req, &err), 0), "%s: %s", lines[i], err.msg);
		cr_assert(eq(int, proto_format(&req, buf, sizeof(buf)), (int)strlen(lines[i])));
		cr_assert(eq(int, strcmp(buf, lines[i]), 0), "%s", buf);
		cr_assert(eq(int, parse(buf, &again, &err), 0));
		cr_assert(eq(int, again.verb, req.verb));
		cr_assert(eq(u32, again.rq.flags, req.rq.flags));
	}
	memset(&req, 0, sizeof(req));
	req.verb = VERB_LS;
	cr_assert(eq(int, proto_format(&req, buf, sizeof(buf)), 6));
	cr_assert(eq(str, buf, "status"));
	cr_assert(eq(int, proto_format(&req, buf, 4), -E2BIG));
}

Test(proto, replies_grow_as_needed_up_to_their_bound)
{
	struct jbuf j;
	int i;

	jb_init_grow(&j, 1 << 20);
	jb_raw(&j, "{");
	jb_open(&j, "tags", '[');
	for (i = 0; i < 5000; i++) {
		jb_open(&j, NULL, '{');
		jb_str(&j, "tag", "a\"b\\c\n");
		jb_u64(&j, "bytes", 1ull << 40);
		jb_close(&j, '}');
	}
	jb_close(&j, ']');
	jb_null(&j, "running");
	jb_raw(&j, "}");
	cr_assert(eq(int, j.overflow, 0));
	cr_assert(eq(int, strncmp(j.buf, "{\"tags\":[{\"tag\":\"a\\\"b\\\\c\\u000a\"", 31), 0), "%.40s",
		  j.buf);
	cr_assert(not(eq(ptr, strstr(j.buf, "],\"running\":null}"), NULL)));
	jb_free(&j);
	jb_init_grow(&j, 64);
	for (i = 0; i < 10; i++)
		jb_str(&j, "k", "0123456789");
	cr_assert(eq(int, j.overflow, 1));
	jb_free(&j);
}
