/* SPDX-License-Identifier: Apache-2.0 */
/*
 * test_e2e_static.c - processes that never call the shared runtime's
 * cudaMalloc, driven by the memctl CLI and the C API on the simulated
 * driver: prog_drv reaches the driver only as a statically linked runtime
 * does (dlopen, dlsym(handle, "cuGetProcAddress_v2"), cuGetProcAddress),
 * prog_drv_link calls the driver it is linked against. Both must be
 * tagged, paused and resumed bit-identical, and memctl must become active
 * on their first driver allocation.
 */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>
#include <stdarg.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "e2e.h"
#include "fakecuda.h"
#include "tenant.h"

#define MiB (1ull << 20)
#define GRAN (2 * MiB)

static char state_path[96];

static void setup(void)
{
	const char *b = getenv("MEMCTL_BUILD");

	cr_assert(b != NULL, "MEMCTL_BUILD not set");
	snprintf(build, sizeof(build), "%s", b);
	snprintf(dir, sizeof(dir), "/tmp/memctl-static-XXXXXX");
	cr_assert(not(eq(ptr, mkdtemp(dir), NULL)));
	snprintf(state_path, sizeof(state_path), "%s.state", dir);
	setenv("FAKECUDA_STATE", state_path, 1);
	setenv("FAKECUDA_MEMORY", "4G", 1);
	setenv("MEMCTL_RUNTIME_DIR", dir, 1);
	unsetenv("MEMCTL_SOCKET");
	unsetenv("MEMCTL_DEFAULT_TAG");
}

static void teardown(void)
{
	char cmd[200];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s' '%s'", dir, state_path);
	if (system(cmd) != 0)
		fprintf(stderr, "cleanup of %s failed\n", dir);
}

TestSuite(lookup, .init = setup, .fini = teardown, .timeout = 60);

/* Start build/test/<prog> with 4 weights of wbytes and 3 kv_cache of 1 MiB,
 * the environment given as "NAME=value" strings, NULL-terminated; wait for
 * its first line, which must start with `first`. */
static struct tenant spawn(const char *prog, size_t wbytes, const char *first, ...)
{
	char path[600], wb[32], weights[] = "4", kv[] = "3", kv_bytes[] = "1048576";
	char *argv[] = { path, weights, wb, kv, kv_bytes, NULL };
	const char *env[8];
	size_t n = 0;
	va_list ap;

	va_start(ap, first);
	while ((env[n] = va_arg(ap, const char *)) != NULL) {
		n++;
		cr_assert(lt(sz, n, sizeof(env) / sizeof(env[0])), "too many variables");
	}
	va_end(ap);
	snprintf(path, sizeof(path), "%s/test/%s", build, prog);
	snprintf(wb, sizeof(wb), "%zu", wbytes);
	return tenant_start(argv, NULL, env, first);
}

static void finish(struct tenant *t)
{
	cr_assert(eq(int, tenant_quit(t), 0), "cuMemFree failed at exit");
}

static int has_socket(pid_t pid)
{
	char path[128];

	snprintf(path, sizeof(path), "%s/%d.sock", dir, (int)pid);
	return access(path, F_OK) == 0;
}

/* Bytes of the 4 weights prog_drv allocates: wbytes + i * 4097 each, the
 * third pitched (rows of 4196 bytes at a pitch of 4608), rounded up to the
 * allocation granularity. */
static uint64_t weight_bytes(size_t wbytes)
{
	uint64_t sum = 0;
	size_t i, bytes;

	for (i = 0; i < 4; i++) {
		bytes = wbytes + i * 4097;
		if (i % 3 == 2)
			bytes = (bytes / 4196 + 1) * 4608;
		sum += (bytes + GRAN - 1) / GRAN * GRAN;
	}
	return sum;
}

/* The CLI pauses `tag` staged and resumes it; the tenant's bytes are all
 * back and the device memory was really given back meanwhile. */
static void cli_roundtrip(struct tenant *t, const char *tag, uint64_t bytes, const char *probe)
{
	char out[8192], line[128];
	uint64_t used = fakecuda_used();

	cr_assert(eq(int, cli(out, sizeof(out), "pause --tags %s --stage cpu -p %d", tag, t->pid),
		     0), "%s", out);
	cr_assert(eq(u64, used - fakecuda_used(), bytes));
	ask(t, "probe", line, sizeof(line));
	cr_assert(eq(int, strcmp(line, probe), 0), "%s", line);
	cr_assert(eq(int, cli(out, sizeof(out), "resume --tags %s -p %d", tag, t->pid), 0), "%s",
		  out);
	cr_assert(eq(u64, fakecuda_used(), used));
	ask(t, "check", line, sizeof(line));
	cr_assert(eq(str, line, "ok"));
	ask(t, "probe", line, sizeof(line));
	cr_assert(eq(str, line, "weights=mapped kv_cache=mapped"));
}

/* The same through the C API, called inside the tenant. */
static void api_roundtrip(struct tenant *t, const char *tag)
{
	char line[128], cmd[96];

	snprintf(cmd, sizeof(cmd), "pause %s cpu", tag);
	ask(t, cmd, line, sizeof(line));
	cr_assert(eq(str, line, "0"));
	ask(t, "probe", line, sizeof(line));
	cr_assert(eq(str, line, "weights=released kv_cache=mapped"));
	snprintf(cmd, sizeof(cmd), "resume %s", tag);
	ask(t, cmd, line, sizeof(line));
	cr_assert(eq(str, line, "0"));
	ask(t, "check", line, sizeof(line));
	cr_assert(eq(str, line, "ok"));
}

Test(lookup, a_program_finding_the_driver_only_by_lookup_is_paused_by_the_cli_bit_identical)
{
	struct tenant t = spawn("prog_drv", 3 * MiB, "ready", NULL);
	char out[8192], line[128];

	ask(&t, "stat weights", line, sizeof(line));
	cr_assert(eq(int, strncmp(line, "0 4 ", 4), 0), "%s", line);
	cr_assert(eq(int, cli(out, sizeof(out), "status -p %d", t.pid), 0), "%s", out);
	cr_assert(not(eq(ptr, strstr(out, "weights"), NULL)), "%s", out);
	cli_roundtrip(&t, "weights", weight_bytes(3 * MiB), "weights=released kv_cache=mapped");
	api_roundtrip(&t, "weights");
	finish(&t);
}

Test(lookup, the_cuda_11_3_lookup_is_answered_with_memctls_functions_too)
{
	struct tenant t = spawn("prog_drv", 2 * MiB, "ready", "PROG_LOOKUP=v1", NULL);

	cli_roundtrip(&t, "weights", weight_bytes(2 * MiB), "weights=released kv_cache=mapped");
	api_roundtrip(&t, "weights");
	finish(&t);
}

Test(lookup, a_program_linked_against_the_driver_is_paused_by_the_cli_and_the_api)
{
	struct tenant t = spawn("prog_drv_link", 3 * MiB, "ready", NULL);

	cli_roundtrip(&t, "weights", weight_bytes(3 * MiB), "weights=released kv_cache=mapped");
	api_roundtrip(&t, "weights");
	finish(&t);
}

Test(lookup, under_the_default_tag_every_driver_allocation_is_tagged)
{
	struct tenant t = spawn("prog_drv", 3 * MiB, "ready", "PROG_REGIONS=0",
				"MEMCTL_DEFAULT_TAG=model", NULL);
	/* kv_cache: 1 MiB, 1 MiB + 4097, the third pitched: 2 MiB each. */
	uint64_t kv = 3 * GRAN;

	cli_roundtrip(&t, "model", weight_bytes(3 * MiB) + kv,
		      "weights=released kv_cache=released");
	finish(&t);
}

/* MEMCTL_SLAB: the 7 small allocations of 1 MiB and a little (one granule
 * each) are carved out of one slab of 16 MiB, which the CLI pauses and
 * resumes whole, every byte back; at exit each cuMemFree of them works. */
Test(lookup, small_allocations_in_one_slab_are_paused_and_freed_one_by_one)
{
	struct tenant t = spawn("prog_drv", MiB, "ready", "PROG_REGIONS=0",
				"MEMCTL_DEFAULT_TAG=model", "MEMCTL_SLAB=16M", NULL);
	char out[8192];

	cli_roundtrip(&t, "model", 16 * MiB, "weights=released kv_cache=released");
	cr_assert(eq(int, cli(out, sizeof(out), "status -p %d", t.pid), 0), "%s", out);
	cr_assert(not(eq(ptr, strstr(out, "model"), NULL)), "%s", out);
	finish(&t);
}

Test(lookup, the_first_driver_allocation_activates_memctl)
{
	/* Tagged by the default tag, and untagged: either way memctl comes up
	 * with the first allocation, and not before (lookups, cuInit and a
	 * context are not enough). No memctl_* call is made. */
	static const char *tags[] = { "MEMCTL_DEFAULT_TAG=model", NULL /* no tag */ };
	char out[8192], line[128];
	int i;

	for (i = 0; i < 2; i++) {
		struct tenant t = spawn("prog_drv", MiB, "resolved", "PROG_REGIONS=0",
					"PROG_WAIT=1", tags[i], NULL);

		cr_assert(not(has_socket(t.pid)));
		cr_assert(eq(int, cli(out, sizeof(out), "status -p %d", t.pid), 1), "%s", out);
		fprintf(t.in, "alloc\n");
		fflush(t.in);
		cr_assert(not(eq(ptr, fgets(line, sizeof(line), t.out), NULL)));
		cr_assert(eq(int, strncmp(line, "ready", 5), 0), "%s", line);
		cr_assert(has_socket(t.pid));
		cr_assert(eq(int, cli(out, sizeof(out), "status -p %d", t.pid), 0), "%s", out);
		if (i == 0)
			cr_assert(not(eq(ptr, strstr(out, "model"), NULL)), "%s", out);
		finish(&t);
	}
}

/* ---- memory the application maps itself, stream-ordered allocation ---- */

/* Bytes of prog_drv's 4 weights in the modes that do not pitch (vmm,
 * async): wbytes + i * 4097 each, rounded up to the granularity. */
static uint64_t weight_bytes_unpitched(size_t wbytes)
{
	uint64_t sum = 0;
	size_t i;

	for (i = 0; i < 4; i++)
		sum += (wbytes + i * 4097 + GRAN - 1) / GRAN * GRAN;
	return sum;
}

Test(lookup, a_program_mapping_memory_itself_like_expandable_segments_is_paused_bit_identical)
{
	static const char *progs[] = { "prog_drv", "prog_drv_link" };
	int i;

	for (i = 0; i < 2; i++) {
		struct tenant t = spawn(progs[i], 3 * MiB, "ready", "PROG_ALLOC=vmm", NULL);
		char out[8192], line[128];

		ask(&t, "stat weights", line, sizeof(line));
		/* 4 buffers of 4 MiB, each two handles side by side. */
		cr_assert(eq(str, line, "0 8 16777216 0 0"), "%s", line);
		cli_roundtrip(&t, "weights", weight_bytes_unpitched(3 * MiB),
			      "weights=released kv_cache=mapped");
		api_roundtrip(&t, "weights");
		cr_assert(eq(int, cli(out, sizeof(out), "status -p %d", t.pid), 0), "%s", out);
		cr_assert(not(eq(ptr, strstr(out, "weights"), NULL)), "%s", out);
		finish(&t);
	}
}

Test(lookup, handles_the_program_unmaps_and_releases_while_paused_or_resumed_leak_nothing)
{
	struct tenant t = spawn("prog_drv", 3 * MiB, "ready", "PROG_ALLOC=vmm", NULL);
	char out[8192], line[128];

	ask(&t, "count", line, sizeof(line));
	cr_assert(eq(str, line, "11 11"), "8 handles of weights, 3 of kv_cache: %s", line);
	cr_assert(eq(int, cli(out, sizeof(out), "pause --tags weights --stage cpu -p %d", t.pid),
		     0), "%s", out);
	ask(&t, "count", line, sizeof(line));
	cr_assert(eq(str, line, "3 3"), "%s", line);
	/* Buffer 0: each handle unmapped and released in turn; buffer 1:
	 * released while mapped, then one unmap over both handles. */
	ask(&t, "drop 0", line, sizeof(line));
	cr_assert(eq(str, line, "0"));
	ask(&t, "drop 1", line, sizeof(line));
	cr_assert(eq(str, line, "0"));
	cr_assert(eq(int, cli(out, sizeof(out), "resume --tags weights -p %d", t.pid), 0), "%s",
		  out);
	ask(&t, "count", line, sizeof(line));
	cr_assert(eq(str, line, "7 7"), "only what is still the program's comes back: %s", line);
	ask(&t, "check", line, sizeof(line));
	cr_assert(eq(str, line, "ok"));
	/* Resumed memory given back in both orders too. */
	ask(&t, "drop 2", line, sizeof(line));
	cr_assert(eq(str, line, "0"));
	ask(&t, "drop 3", line, sizeof(line));
	cr_assert(eq(str, line, "0"));
	ask(&t, "count", line, sizeof(line));
	cr_assert(eq(str, line, "3 3"), "%s", line);
	cr_assert(eq(int, cli(out, sizeof(out), "pause --tags weights -p %d", t.pid), 1),
		  "nothing of weights is left: %s", out);
	finish(&t);
}

Test(lookup, under_the_default_tag_mapped_and_stream_ordered_memory_is_tagged)
{
	static const char *modes[] = { "PROG_ALLOC=vmm", "PROG_ALLOC=async" };
	int i;

	for (i = 0; i < 2; i++) {
		struct tenant t = spawn("prog_drv", 3 * MiB, "ready", "PROG_REGIONS=0",
					"MEMCTL_DEFAULT_TAG=model", modes[i], NULL);

		cli_roundtrip(&t, "model", weight_bytes_unpitched(3 * MiB) + 3 * GRAN,
			      "weights=released kv_cache=released");
		finish(&t);
	}
}

Test(lookup, stream_ordered_allocations_are_paused_and_freed_while_paused)
{
	struct tenant t = spawn("prog_drv_link", 3 * MiB, "ready", "PROG_ALLOC=async", NULL);
	char out[8192], line[128];
	uint64_t used;

	cli_roundtrip(&t, "weights", weight_bytes_unpitched(3 * MiB),
		      "weights=released kv_cache=mapped");
	cr_assert(eq(int, cli(out, sizeof(out), "pause --tags weights --stage cpu -p %d", t.pid),
		     0), "%s", out);
	used = fakecuda_used();
	/* cuMemFreeAsync of paused memory, then the stream synchronised. */
	ask(&t, "drop 0", line, sizeof(line));
	cr_assert(eq(str, line, "0"));
	cr_assert(eq(u64, fakecuda_used(), used), "paused memory was already given back");
	cr_assert(eq(int, cli(out, sizeof(out), "resume --tags weights -p %d", t.pid), 0), "%s",
		  out);
	cr_assert(eq(u64, fakecuda_used(), used + 3 * 4 * MiB));
	ask(&t, "check", line, sizeof(line));
	cr_assert(eq(str, line, "ok"));
	finish(&t);
}

/* The figure `status` gives for what a pause would not touch. */
static uint64_t json_u64(const char *json, const char *key)
{
	char pat[64];
	const char *p;

	snprintf(pat, sizeof(pat), "\"%s\":", key);
	p = strstr(json, pat);
	cr_assert(p != NULL, "%s not in %s", key, json);
	return strtoull(p + strlen(pat), NULL, 10);
}

Test(lookup, status_shows_the_device_memory_memctl_does_not_control_by_call)
{
	/* Untagged (no region, no default tag): everything is left alone
	 * and counted, by the call that made it. */
	static const struct { const char *mode, *key; } cases[] = {
		{ "PROG_ALLOC=plain", "alloc_bytes" },
		{ "PROG_ALLOC=vmm", "create_bytes" },
		{ "PROG_ALLOC=async", "async_bytes" },
	};
	char out[8192], line[128];
	uint64_t want;
	size_t i, k;

	for (i = 0; i < 3; i++) {
		struct tenant t = spawn("prog_drv", 3 * MiB, "ready", "PROG_REGIONS=0",
					cases[i].mode, NULL);

		/* What the program asked for (vmm: its whole handles). */
		want = 0;
		for (k = 0; k < 4; k++)
			want += i == 1 ? (3 * MiB + k * 4097 + GRAN - 1) / GRAN * GRAN
				: k % 3 == 2 && i == 0 ? (((3 * MiB + k * 4097) / 4196 + 1) * 4608)
				: 3 * MiB + k * 4097;
		for (k = 0; k < 3; k++)
			want += i == 1 ? GRAN
				: k % 3 == 2 && i == 0 ? ((MiB + k * 4097) / 4196 + 1) * 4608
				: MiB + k * 4097;
		cr_assert(eq(int, cli(out, sizeof(out), "status --json -p %d", t.pid), 0), "%s",
			  out);
		cr_assert(eq(u64, json_u64(out, "uncontrolled_bytes"), want), "%s", out);
		cr_assert(eq(u64, json_u64(out, cases[i].key), want), "%s", out);
		/* Freed memory leaves the figure. */
		ask(&t, "drop 0", line, sizeof(line));
		cr_assert(eq(str, line, "0"));
		cr_assert(eq(int, cli(out, sizeof(out), "status --json -p %d", t.pid), 0), "%s",
			  out);
		cr_assert(lt(u64, json_u64(out, "uncontrolled_bytes"), want), "%s", out);
		cr_assert(eq(int, cli(out, sizeof(out), "status -p %d", t.pid), 0), "%s", out);
		cr_assert(not(eq(ptr, strstr(out, "not controlled"), NULL)), "%s", out);
		finish(&t);
	}
}
