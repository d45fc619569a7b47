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
	char buf[TAGSET_TEXT_MAX];

	cr_assert(eq(int, tagset_parse("weights,kv_cache,weights", &ts, &err), 0));
	cr_assert(eq(int, ts.n, 2));
	cr_assert(not(ts.all));
	cr_assert(tagset_has(&ts, "kv_cache"));
	cr_assert(not(tagset_has(&ts, "cuda_graph")));
	tagset_format(&ts, buf, sizeof(buf));
	cr_assert(eq(str, buf, "weights,kv_cache"));
}

/* Only an explicit all (or the C API's NULL) means every tag. */
Test(tags, every_tag_only_when_asked_by_name)
{
	static const char *every[] = { "all", "*" };
	struct region_err err;
	struct tagset ts;
	char buf[TAGSET_TEXT_MAX];
	size_t i;

	for (i = 0; i < sizeof(every) / sizeof(every[0]); i++) {
		cr_assert(eq(int, tagset_parse(every[i], &ts, &err), 0), "'%s'", every[i]);
		cr_assert(ts.all);
		cr_assert(tagset_has(&ts, "anything"));
		tagset_format(&ts, buf, sizeof(buf));
		cr_assert(eq(str, buf, "all"));
	}
	cr_assert(eq(int, tagset_parse(NULL, &ts, &err), 0));
	cr_assert(ts.all);
}

/* Issue 8 item 1: an empty list was read as "all" and paused everything. */
Test(tags, empty_and_blank_lists_are_einval)
{
	static const char *blank[] = { "", " ", ",", ",,", " , ", "\t" };
	struct region_err err;
	struct tagset ts;
	size_t i;

	for (i = 0; i < sizeof(blank) / sizeof(blank[0]); i++) {
		err.msg[0] = '\0';
		cr_assert(eq(int, tagset_parse(blank[i], &ts, &err), -EINVAL), "'%s'", blank[i]);
		cr_assert(eq(int, err.code, -EINVAL));
		cr_assert(not(eq(ptr, strstr(err.msg, "empty tag list"), NULL)), "%s", err.msg);
		cr_assert(not(ts.all), "'%s' read as every tag", blank[i]);
	}
}

/* Issue 8 item 3: `all` beside names was a tag name while `*` was refused. */
Test(tags, all_or_star_beside_names_is_refused_by_one_rule)
{
	static const char *mixed[] = { "all,weights", "weights,all", "*,weights",
				       "weights,*", "all,*", "all,all" };
	struct region_err err;
	struct tagset ts;
	size_t i;

	for (i = 0; i < sizeof(mixed) / sizeof(mixed[0]); i++) {
		cr_assert(eq(int, tagset_parse(mixed[i], &ts, &err), -EINVAL), "'%s'", mixed[i]);
		cr_assert(not(eq(ptr, strstr(err.msg, "means every tag"), NULL)), "%s", err.msg);
	}
}

Test(tags, malformed_lists_are_einval)
{
	static const char *bad[] = { "a,", ",a", "a,,b", "a b", "a;b", "é", " a", "All,b c" };
	struct region_err err;
	struct tagset ts;
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_assert(eq(int, tagset_parse(bad[i], &ts, &err), -EINVAL), "'%s'", bad[i]);
}

Test(tags, the_error_helper_accepts_null)
{
	struct region_err err;

	cr_assert(eq(int, region_err_set(NULL, -EIO, "x %d", 1), -EIO));
	cr_assert(eq(int, region_err_set(&err, -ENOMEM, "need %d bytes", 5), -ENOMEM));
	cr_assert(eq(int, err.code, -ENOMEM));
	cr_assert(eq(str, err.msg, "need 5 bytes"));
	cr_assert(eq(int, tagset_parse("", &(struct tagset){ 0 }, NULL), -EINVAL));
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
	/* Repeats are folded before they count. */
	spec[0] = '\0';
	for (i = 0; i < TAGSET_MAX; i++)
		snprintf(spec + strlen(spec), sizeof(spec) - strlen(spec), "t%d,", i);
	snprintf(spec + strlen(spec), sizeof(spec) - strlen(spec), "t0");
	cr_assert(eq(int, tagset_parse(spec, &ts, &err), 0), "%s", err.msg);
	cr_assert(eq(int, ts.n, TAGSET_MAX));
}
