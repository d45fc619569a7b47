/* SPDX-License-Identifier: Apache-2.0 */
/*
 * stage.c - moving contents between device and pinned host memory at the
 * speed of the bus.
 *
 * Host buffers are anonymous mappings, populated by several threads at once
 * (first-touch of fresh pages is the slow part of pinning) and page-locked
 * with host_register as each is complete, so that a pause can start copying
 * into the first buffers while later ones are still being pinned; they are
 * kept across cycles so that a second pause pays only for the copy. Copies
 * are cut into large chunks and spread round-robin over a few streams per
 * device, all queued before the first wait, so the copy engines never idle
 * between allocations.
 *
 * Before taking host memory we compare the request with MemAvailable: an
 * overcommitted mapping that the kernel cannot back would otherwise end in
 * the OOM killer, and the host process must never be killed by us.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "internal.h"

#define POPULATE_PIECE (256ul << 20)

static struct {
	const struct drv_ops *ops;
	struct region_opts opts;
	void *streams[REGION_MAX_DEV][STREAMS_MAX];
} S;

void stage_init(const struct drv_ops *ops, const struct region_opts *opts)
{
	S.ops = ops;
	S.opts = *opts;
	if (S.opts.chunk_bytes < (1u << 20))
		S.opts.chunk_bytes = 1u << 20;
	if (S.opts.streams < 1)
		S.opts.streams = 1;
	if (S.opts.streams > STREAMS_MAX)
		S.opts.streams = STREAMS_MAX;
	if (S.opts.pin_threads < 1)
		S.opts.pin_threads = 1;
	memset(S.streams, 0, sizeof(S.streams));
}

void stage_forget(void)
{
	memset(S.streams, 0, sizeof(S.streams));
}

static size_t page_round(size_t n)
{
	size_t pg = (size_t)sysconf(_SC_PAGESIZE);

	return (n + pg - 1) / pg * pg;
}

/* Bytes the kernel says it can give without swapping; SIZE_MAX if unknown. */
static size_t host_available(void)
{
	char line[128];
	unsigned long long kb;
	size_t avail = SIZE_MAX;
	FILE *f = fopen("/proc/meminfo", "re");

	if (f == NULL)
		return avail;
	while (fgets(line, sizeof(line), f) != NULL)
		if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1) {
			avail = (size_t)kb * 1024;
			break;
		}
	fclose(f);
	return avail;
}

void stage_host_put(struct alloc *a)
{
	if (a->host == NULL)
		return;
	(void)S.ops->host_unregister(a->dev, a->host);
	munmap(a->host, a->host_size);
	a->host = NULL;
	a->host_size = 0;
}

/*
 * Obtaining host buffers, pipelined. Pieces of every new buffer (in buffer
 * order) are touched by worker threads; the worker that touches a buffer's
 * last piece pins it and marks it ready. The calling thread meanwhile hands
 * each buffer, in order, to `ready` as soon as it is pinned: a staged pause
 * queues its copies there, so the copy engines start while later buffers
 * are still being pinned.
 */
struct pin_work {
	struct alloc **bufs;
	size_t nbufs;
	size_t *piece_buf;  /* per piece: index into bufs */
	size_t *piece_off;
	size_t npieces;
	size_t next;        /* next piece to touch */
	unsigned *left;     /* per buffer: pieces not yet touched */
	int *state;         /* per buffer: 0 pending, 1 pinned, -1 failed */
	pthread_mutex_t lock;
	pthread_cond_t changed;
	int rc;             /* first failure */
};

static void pin_one(struct pin_work *w, size_t b)
{
	struct alloc *a = w->bufs[b];
	int rc;

	/* Once the request has failed, pinning more would only be undone. */
	rc = __atomic_load_n(&w->rc, __ATOMIC_RELAXED);
	if (rc == 0)
		rc = S.ops->host_register(a->dev, a->host, a->host_size);

	pthread_mutex_lock(&w->lock);
	if (rc < 0) {
		/* A buffer that is not pinned must never be unregistered. */
		munmap(a->host, a->host_size);
		a->host = NULL;
		if (w->rc == 0)
			w->rc = rc;
	}
	w->state[b] = rc < 0 ? -1 : 1;
	pthread_cond_broadcast(&w->changed);
	pthread_mutex_unlock(&w->lock);
}

static void *pin_worker(void *arg)
{
	struct pin_work *w = arg;
	size_t pg = (size_t)sysconf(_SC_PAGESIZE);
	size_t i;

	while ((i = __atomic_fetch_add(&w->next, 1, __ATOMIC_RELAXED)) < w->npieces) {
		size_t b = w->piece_buf[i];
		struct alloc *a = w->bufs[b];
		char *p = (char *)a->host + w->piece_off[i];
		size_t len = a->host_size - w->piece_off[i], off;

		if (__atomic_load_n(&w->rc, __ATOMIC_RELAXED) == 0) {
			if (len > POPULATE_PIECE)
				len = POPULATE_PIECE;
			for (off = 0; off < len; off += pg)
				p[off] = 0;
		}
		if (__atomic_sub_fetch(&w->left[b], 1, __ATOMIC_ACQ_REL) == 0)
			pin_one(w, b);
	}
	return NULL;
}

/* Touch and pin `bufs`; call ready(bufs[i]) in order as each is pinned.
 * *ready_rc gets ready's failure, if that is what stopped it. */
static int populate_and_pin(struct alloc **bufs, size_t nbufs,
			    int (*ready)(struct alloc *, void *), void *ctx, int *ready_rc)
{
	pthread_t tids[64];
	struct pin_work w;
	size_t i, k = 0, total = 0;
	int t, started = 0, nthreads = S.opts.pin_threads, rc = 0;

	memset(&w, 0, sizeof(w));
	w.bufs = bufs;
	w.nbufs = nbufs;
	for (i = 0; i < nbufs; i++)
		total += (bufs[i]->host_size + POPULATE_PIECE - 1) / POPULATE_PIECE;
	w.piece_buf = malloc(sizeof(size_t) * (total ? total : 1));
	w.piece_off = malloc(sizeof(size_t) * (total ? total : 1));
	w.left = calloc(nbufs ? nbufs : 1, sizeof(unsigned));
	w.state = calloc(nbufs ? nbufs : 1, sizeof(int));
	if (w.piece_buf == NULL || w.piece_off == NULL || w.left == NULL || w.state == NULL) {
		rc = -ENOMEM;
		goto out;
	}
	for (i = 0; i < nbufs; i++) {
		size_t off;

		for (off = 0; off < bufs[i]->host_size; off += POPULATE_PIECE) {
			w.piece_buf[k] = i;
			w.piece_off[k++] = off;
			w.left[i]++;
		}
	}
	w.npieces = k;
	pthread_mutex_init(&w.lock, NULL);
	pthread_cond_init(&w.changed, NULL);
	if ((size_t)nthreads > k)
		nthreads = (int)k;
	for (t = 0; t < nthreads && t < 64; t++) {
		if (pthread_create(&tids[t], NULL, pin_worker, &w) != 0)
			break;
		started++;
	}
	if (started == 0)
		pin_worker(&w); /* no thread to be had: do it here */
	for (i = 0; i < nbufs; i++) {
		int st;

		pthread_mutex_lock(&w.lock);
		while ((st = w.state[i]) == 0)
			pthread_cond_wait(&w.changed, &w.lock);
		pthread_mutex_unlock(&w.lock);
		if (st < 0 || (ready != NULL && (*ready_rc = rc = ready(bufs[i], ctx)) < 0)) {
			/* Stop the workers touching pages nobody will use. */
			int zero = 0;

			__atomic_compare_exchange_n(&w.rc, &zero, rc < 0 ? rc : -ENOMEM, 0,
						    __ATOMIC_RELAXED, __ATOMIC_RELAXED);
			break;
		}
	}
	for (t = 0; t < started; t++)
		pthread_join(tids[t], NULL);
	if (rc == 0)
		rc = w.rc;
	pthread_cond_destroy(&w.changed);
	pthread_mutex_destroy(&w.lock);
out:
	free(w.piece_buf);
	free(w.piece_off);
	free(w.left);
	free(w.state);
	return rc;
}

int stage_host_get(struct alloc **list, size_t n, uint64_t *new_bytes,
		   int (*ready)(struct alloc *, void *), void *ctx,
		   struct region_err *err)
{
	struct alloc **fresh;
	size_t nfresh = 0, need = 0, avail, i;
	int rc = 0, ready_rc = 0;

	fresh = malloc(sizeof(*fresh) * (n ? n : 1));
	if (fresh == NULL)
		goto fail_nomem;
	for (i = 0; i < n; i++)
		if (list[i]->host == NULL) {
			fresh[nfresh++] = list[i];
			need += page_round(list[i]->size);
		}
	if (nfresh == 0)
		goto out;
	avail = host_available();
	if (need > avail) {
		snprintf(err->msg, sizeof(err->msg),
			 "host memory: staging needs %zu bytes, %zu available; nothing released",
			 need, avail);
		rc = err->code = -ENOMEM;
		goto out;
	}
	for (i = 0; i < nfresh; i++) {
		struct alloc *a = fresh[i];
		void *p;

		a->host_size = page_round(a->size);
		p = mmap(NULL, a->host_size, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (p == MAP_FAILED) {
			while (i-- > 0) { /* mapped, not yet pinned */
				munmap(fresh[i]->host, fresh[i]->host_size);
				fresh[i]->host = NULL;
			}
			nfresh = 0;
			rc = -ENOMEM;
			break;
		}
		if (S.opts.hugepages)
			(void)madvise(p, a->host_size, MADV_HUGEPAGE);
		a->host = p;
	}
	if (rc == 0)
		rc = populate_and_pin(fresh, nfresh, ready, ctx, &ready_rc);
	if (rc < 0) {
		/* Buffers pinned so far stay with their allocations: copies may
		 * be in flight into them, and the caller frees them once those
		 * have landed. */
		for (i = 0; i < nfresh; i++)
			if (fresh[i]->host == NULL)
				fresh[i]->host_size = 0;
		if (ready_rc < 0)
			return free(fresh), ready_rc; /* the caller has the story */
		snprintf(err->msg, sizeof(err->msg),
			 "host memory: cannot obtain and pin %zu bytes for staging; nothing released",
			 need);
		rc = err->code = -ENOMEM;
		goto out;
	}
	*new_bytes += need;
out:
	free(fresh);
	return rc;

fail_nomem:
	snprintf(err->msg, sizeof(err->msg), "host memory: no room for the request");
	return err->code = -ENOMEM;
}

static int streams_for(int dev, void ***out)
{
	int k, rc;

	for (k = 0; k < S.opts.streams; k++) {
		if (S.streams[dev][k] != NULL)
			continue;
		rc = S.ops->stream_create(dev, &S.streams[dev][k]);
		if (rc < 0)
			return rc;
	}
	*out = S.streams[dev];
	return 0;
}

/* Queue a's chunks on the device's streams, round-robin. */
int stage_queue(struct stage_batch *b, struct alloc *a, enum copy_dir dir)
{
	size_t off, chunk = S.opts.chunk_bytes;
	uint32_t used = 0;
	void **streams;
	int rc, k;

	if (b->rc < 0)
		return b->rc;
	b->dir = dir;
	rc = streams_for(a->dev, &streams);
	if (rc < 0)
		return b->rc = rc;
	b->used |= 1u << a->dev;
	for (off = 0; off < a->size; off += chunk) {
		size_t len = a->size - off < chunk ? a->size - off : chunk;

		k = (int)(b->turn++ % (unsigned)S.opts.streams);
		used |= 1u << k;
		if (dir == COPY_DTOH)
			rc = S.ops->copy_dtoh(a->dev, (char *)a->host + off, a->va + off, len,
					      streams[k]);
		else
			rc = S.ops->copy_htod(a->dev, a->va + off, (char *)a->host + off, len,
					      streams[k]);
		if (rc < 0)
			return b->rc = rc;
	}
	/* Mark the end of this allocation's copies on every stream used. */
	a->ev_used = 0;
	for (k = 0; k < S.opts.streams; k++) {
		if (!(used & (1u << k)))
			continue;
		if (a->ev[k] == NULL && (rc = S.ops->event_create(a->dev, &a->ev[k])) < 0)
			return b->rc = rc;
		if ((rc = S.ops->event_record(a->dev, a->ev[k], streams[k])) < 0)
			return b->rc = rc;
		a->ev_used |= 1u << k;
	}
	return 0;
}

int stage_wait(struct alloc *a)
{
	int k, rc;

	for (k = 0; k < STREAMS_MAX; k++)
		if ((a->ev_used & (1u << k)) && (rc = S.ops->event_sync(a->dev, a->ev[k])) < 0)
			return rc;
	a->ev_used = 0;
	return 0;
}

void stage_alloc_done(struct alloc *a)
{
	int k;

	for (k = 0; k < STREAMS_MAX; k++)
		if (a->ev[k] != NULL) {
			(void)S.ops->event_destroy(a->dev, a->ev[k]);
			a->ev[k] = NULL;
		}
}

int stage_finish(struct stage_batch *b, struct region_err *err)
{
	int dev, k;

	/* Wait for everything queued, even after a failure: a copy still in
	 * flight must not outlive the memory the caller may unmap next. */
	for (dev = 0; dev < REGION_MAX_DEV; dev++) {
		if (!(b->used & (1u << dev)))
			continue;
		for (k = 0; k < S.opts.streams; k++) {
			int rc = S.ops->stream_sync(dev, S.streams[dev][k]);

			if (b->rc == 0)
				b->rc = rc;
		}
	}
	b->used = 0;
	if (b->rc < 0 && err != NULL) {
		snprintf(err->msg, sizeof(err->msg), "%s copy failed; nothing changed",
			 b->dir == COPY_DTOH ? "device-to-host" : "host-to-device");
		err->code = b->rc;
	}
	return b->rc;
}
