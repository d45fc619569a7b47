/* SPDX-License-Identifier: Apache-2.0 */
/* test_tags.c - tag names and tag lists. */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "region.h"

Test(tags, valid_names)
{
	char longest[TAG_MAX];

	memset(longest, 'a', TAG_MAX - 1);
	longest[TAG_MAX - 1] = '\0';
	cr_assert(tag_valid("weights"));
	cr_assert(tag_valid("kv_cache.0-a"));
	cr_assert(tag_valid(longest));
	longest[TAG_MAX - 2] = '/';
	cr_assert(not(tag_valid(longest)));
	cr_assert(not(tag_valid("")));
	cr_assert(not(tag_valid(NULL)));
	cr_assert(not(tag_valid("a b")));
	cr_assert(not(tag_valid("a\"b")));
}

Test(tags, too_long_is_refused)
{
	char name[TAG_MAX + 1];

	memset(name, 'a', TAG_MAX);
	name[TAG_MAX] = '\0';
	cr_assert(not(tag_valid(name)));
}

Test(tags, lists_parse_dedupe_and_format)
{
	struct region_err err;
	struct tagset ts;
	char buf[128];

	cr_assert(eq(int, tagset_parse("weights,kv_cache,weights", &ts, &err), 0));
	cr_assert(eq(int, ts.n, 2));
	cr_assert(tagset_has(&ts, "kv_cache"));
	cr_assert(not(tagset_has(&ts, "cuda_graph")));
	tagset_format(&ts, buf, sizeof(buf));
	cr_assert(eq(str, buf, "weights,kv_cache"));
	cr_assert(eq(int, tagset_parse("", &ts, &err), 0));
	cr_assert(ts.all);
	cr_assert(tagset_has(&ts, "anything"));
	cr_assert(eq(int, tagset_parse(NULL, &ts, &err), 0));
	cr_assert(ts.all);
}

Test(tags, malformed_lists_are_einval)
{
	static const char *bad[] = { ",", "a,", ",a", "a,,b", "a b", "a;b", "é" };
	struct region_err err;
	struct tagset ts;
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_assert(eq(int, tagset_parse(bad[i], &ts, &err), -EINVAL), "'%s'", bad[i]);
}

Test(tags, at_most_sixteen_in_a_request)
{
	struct region_err err;
	struct tagset ts;
	char spec[256] = "";
	int i;

	for (i = 0; i < TAGSET_MAX + 1; i++)
		snprintf(spec + strlen(spec), sizeof(spec) - strlen(spec), "%st%d", i ? "," : "", i);
	cr_assert(eq(int, tagset_parse(spec, &ts, &err), -EINVAL));
}
