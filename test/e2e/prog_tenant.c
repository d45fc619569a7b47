/* SPDX-License-Identifier: Apache-2.0 */
/*
 * prog_tenant.c - a stand-in for an inference process: tagged "weights"
 * and "kv_cache" filled with known bytes, then commands on stdin:
 *   check  -> "ok" if every byte is as written, else "bad <tag> <i>"
 *   probe  -> "weights=<mapped|released> kv_cache=<...>", by touching the
 *             first byte of each tag's first allocation in a child
 *   stat   -> "<rc> <allocations> <active> <paused> <host>" for weights
 *   mem    -> "<free> <total>" device bytes (cudaMemGetInfo)
 *   forkexit -> a child forks and exits normally; "forked"
 *   tags N -> N more allocations of 1 MiB, tagged t000, t001, ...; "tagged N"
 *   more TAG -> one more allocation of 1 MiB tagged TAG; "more TAG"
 *   apause TAG -> a staged pause of TAG through the C API; "<rc>"
 *   aresume TAG -> its resume through the C API; "<rc>"
 *   held FN -> how many calls of FN the simulated driver holds open now
 *             (FAKECUDA_HOLD); -1 on a real driver
 *   quit   -> frees everything, exits 0
 * usage: prog_tenant NWEIGHTS WEIGHT_BYTES NKV KV_BYTES
 * With PROG_ASYNC=1 weights and KV cache are allocated with cudaMallocAsync
 * and freed with cudaFreeAsync on the legacy stream.
 * Runs under LD_PRELOAD=libmemctl.so and links only libcudart.so.13.
 */
#include <cuda_runtime_api.h>
#include <string.h>

#include "e2e.h"

#define MAXA 256

static struct memctl_api M;
static void *w[MAXA], *kv[MAXA], *many[1000];
static size_t nw, nkv, wsz, kvsz, nmany;

static size_t size_of(size_t base, size_t i)
{
	return base + i * 4097; /* mixed sizes */
}

static int async_alloc;

static const char *probe(void *p)
{
	return released(p) ? "released" : "mapped";
}

/* Allocated (in stream order and waited for, with PROG_ASYNC=1). */
static cudaError_t alloc(void **p, size_t n)
{
	cudaError_t e;

	if (!async_alloc)
		return cudaMalloc(p, n);
	e = cudaMallocAsync(p, n, 0);
	return e != cudaSuccess ? e : cudaStreamSynchronize(0);
}

static void release(void *p)
{
	if (!async_alloc) {
		cudaFree(p);
		return;
	}
	cudaFreeAsync(p, 0);
	cudaStreamSynchronize(0);
}

/* Allocates and fills weights and KV cache: 0, or the exit status. */
static int allocate_all(void)
{
	size_t i;

	M.region_begin("weights");
	for (i = 0; i < nw; i++) {
		if (alloc(&w[i], size_of(wsz, i)) != cudaSuccess)
			return 3;
		if (dev_fill(w[i], size_of(wsz, i), (unsigned)(getpid() + (int)i)) < 0)
			return 4;
	}
	M.region_end();
	M.region_begin("kv_cache");
	for (i = 0; i < nkv; i++) {
		if (alloc(&kv[i], size_of(kvsz, i)) != cudaSuccess)
			return 3;
		if (dev_fill(kv[i], size_of(kvsz, i), 7u + (unsigned)i) < 0)
			return 4;
	}
	M.region_end();
	return 0;
}

static void check_all(void)
{
	long bad = -1;
	size_t i;

	for (i = 0; i < nw && bad < 0; i++)
		if ((bad = dev_check(w[i], size_of(wsz, i), (unsigned)(getpid() + (int)i))) >= 0)
			printf("bad weights %zu at %ld\n", i, bad);
	for (i = 0; i < nkv && bad < 0; i++)
		if ((bad = dev_check(kv[i], size_of(kvsz, i), 7u + (unsigned)i)) >= 0)
			printf("bad kv_cache %zu at %ld\n", i, bad);
	if (bad < 0)
		printf("ok\n");
}

static void print_stat(void)
{
	struct memctl_stat st;
	int rc = M.stat("weights", &st);

	printf("%d %llu %llu %llu %llu\n", rc, (unsigned long long)st.allocations,
	       (unsigned long long)st.active_bytes, (unsigned long long)st.paused_bytes,
	       (unsigned long long)st.staged_bytes);
}

/* A child that exits normally runs the atexit handlers it inherited: it
 * must not remove the parent's socket. */
static void fork_exit(void)
{
	pid_t pid = fork();
	int st;

	if (pid == 0)
		exit(0);
	waitpid(pid, &st, 0);
	printf("forked\n");
}

/* "tags N": allocations of 1 MiB tagged t000, t001, ... up to N in all. */
static int tag_many(size_t want)
{
	char tag[16];

	for (; nmany < want && nmany < 1000; nmany++) {
		snprintf(tag, sizeof(tag), "t%03zu", nmany);
		M.region_begin(tag);
		if (cudaMalloc(&many[nmany], 1 << 20) != cudaSuccess)
			return 3;
		M.region_end();
	}
	printf("tagged %zu\n", nmany);
	return -1;
}

static int quit(void)
{
	size_t i;

	for (i = 0; i < nmany; i++)
		cudaFree(many[i]);
	for (i = 0; i < nw; i++)
		release(w[i]);
	for (i = 0; i < nkv; i++)
		release(kv[i]);
	return 0;
}

/* Answers one command (the list at the top): -1 to go on, else the exit
 * status. */
static int answer(char *line)
{
	size_t fr = 0, tot = 0;

	line[strcspn(line, "\n")] = '\0';
	if (strncmp(line, "check", 5) == 0) {
		check_all();
	} else if (strncmp(line, "probe", 5) == 0) {
		printf("weights=%s kv_cache=%s\n", probe(w[0]), probe(kv[0]));
	} else if (strncmp(line, "stat", 4) == 0) {
		print_stat();
	} else if (strncmp(line, "mem", 3) == 0) {
		cudaMemGetInfo(&fr, &tot);
		printf("%zu %zu\n", fr, tot);
	} else if (strncmp(line, "forkexit", 8) == 0) {
		fork_exit();
	} else if (strncmp(line, "tags ", 5) == 0) {
		return tag_many(strtoul(line + 5, NULL, 10));
	} else if (strncmp(line, "more ", 5) == 0 && nmany < 1000) {
		M.region_begin(line + 5);
		if (cudaMalloc(&many[nmany++], 1 << 20) != cudaSuccess)
			return 3;
		M.region_end();
		printf("more %s\n", line + 5);
	} else if (strncmp(line, "apause ", 7) == 0) {
		printf("%d\n", M.pause(line + 7, MEMCTL_STAGE_CPU));
	} else if (strncmp(line, "aresume ", 8) == 0) {
		printf("%d\n", M.resume(line + 8, 0));
	} else if (strncmp(line, "held ", 5) == 0) {
		int (*held)(const char *) = (int (*)(const char *))dlsym(RTLD_DEFAULT,
									 "fakecuda_held");

		printf("%d\n", held != NULL ? held(line + 5) : -1);
	} else if (strncmp(line, "quit", 4) == 0) {
		return quit();
	}
	return -1;
}

int main(int argc, char **argv)
{
	char line[64];
	int rc;

	if (argc != 5 || memctl_api_load(&M) < 0) {
		fprintf(stderr, "usage: prog_tenant NW WBYTES NKV KVBYTES, under LD_PRELOAD\n");
		return 2;
	}
	nw = strtoul(argv[1], NULL, 10);
	wsz = strtoul(argv[2], NULL, 10);
	nkv = strtoul(argv[3], NULL, 10);
	kvsz = strtoul(argv[4], NULL, 10);
	if (nw > MAXA || nkv > MAXA || nw == 0 || nkv == 0)
		return 2;
	setvbuf(stdout, NULL, _IOLBF, 0);
	async_alloc = getenv("PROG_ASYNC") != NULL && strcmp(getenv("PROG_ASYNC"), "1") == 0;
	rc = allocate_all();
	if (rc != 0)
		return rc;
	printf("ready %d\n", (int)getpid());
	while (fgets(line, sizeof(line), stdin) != NULL) {
		rc = answer(line);
		if (rc >= 0)
			return rc;
	}
	return 0;
}
