/* SPDX-License-Identifier: Apache-2.0 */
/* test_options.c - the MEMCTL_* environment table. */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>
#include <errno.h>
#include <stdlib.h>

#include "options.h"

Test(options, sizes_with_suffixes_and_overflow)
{
	size_t v = 0;

	cr_assert(eq(int, options_parse_size("4096", &v), 0));
	cr_assert(eq(sz, v, 4096));
	cr_assert(eq(int, options_parse_size("64M", &v), 0));
	cr_assert(eq(sz, v, 64u << 20));
	cr_assert(eq(int, options_parse_size("2GiB", &v), 0));
	cr_assert(eq(sz, v, 2ull << 30));
	cr_assert(eq(int, options_parse_size("1k", &v), 0));
	cr_assert(eq(sz, v, 1024));
	cr_assert(eq(int, options_parse_size("99999999999T", &v), -ERANGE));
	cr_assert(eq(int, options_parse_size("99999999999999999999999", &v), -ERANGE));
	cr_assert(eq(int, options_parse_size("12Q", &v), -EINVAL));
	cr_assert(eq(int, options_parse_size("-1", &v), -EINVAL));
	cr_assert(eq(int, options_parse_size("", &v), -EINVAL));
}

Test(options, defaults_and_valid_values)
{
	struct options o;

	setenv("MEMCTL_DEFAULT_TAG", "weights", 1);
	setenv("MEMCTL_DEFAULT_STAGE", "1", 1);
	setenv("MEMCTL_CHUNK", "16M", 1);
	setenv("MEMCTL_STREAMS", "8", 1);
	setenv("MEMCTL_GROUP", "server", 1);
	setenv("MEMCTL_RUNTIME_DIR", "/tmp/x", 1);
	setenv("MEMCTL_PREPARE", "weights,kv_cache", 1);
	options_load(&o);
	cr_assert(eq(str, o.default_tag, "weights"));
	cr_assert(eq(int, o.default_stage, 1));
	cr_assert(eq(sz, o.chunk_bytes, 16u << 20));
	cr_assert(eq(int, o.streams, 8));
	cr_assert(eq(str, o.group, "server"));
	cr_assert(eq(str, o.runtime_dir, "/tmp/x"));
	cr_assert(eq(str, o.prepare, "weights,kv_cache"));
	cr_assert(eq(int, o.socket, 1));
}

Test(options, invalid_values_fall_back_to_defaults)
{
	struct options o;

	setenv("MEMCTL_DEFAULT_TAG", "bad tag", 1);
	setenv("MEMCTL_DEFAULT_STAGE", "yes", 1);
	setenv("MEMCTL_CHUNK", "12", 1);
	setenv("MEMCTL_STREAMS", "99", 1);
	setenv("MEMCTL_LOG", "loud", 1);
	setenv("MEMCTL_SOCKET", "maybe", 1);
	setenv("MEMCTL_PREPARE", "weights,,kv", 1);
	unsetenv("MEMCTL_RUNTIME_DIR");
	unsetenv("XDG_RUNTIME_DIR");
	options_load(&o);
	cr_assert(eq(str, o.default_tag, ""));
	cr_assert(eq(int, o.default_stage, 0));
	cr_assert(eq(sz, o.chunk_bytes, 32u << 20));
	cr_assert(eq(int, o.streams, 4));
	cr_assert(eq(int, o.log_level, 1));
	cr_assert(eq(int, o.socket, 1));
	cr_assert(eq(str, o.prepare, ""));
	cr_assert(eq(int, strncmp(o.runtime_dir, "/tmp/memctl-", 12), 0));
}
