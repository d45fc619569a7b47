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
 * Before taking host memory we compare the request with what the host and
 * the process's memory cgroup can give (hostmem.c): an overcommitted
 * mapping that the kernel cannot back would otherwise end in the OOM
 * killer, and the host process must never be killed by us.
 *
 * A buffer belongs to a claimed allocation while a request works on it;
 * if the application frees the allocation meanwhile, the buffer is not
 * pinned or copied into any more, and the record's last holder drops it.
 */
#include <errno.h>
#include <limits.h>
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
	char cgroup_dir[PATH_MAX]; /* opts.cgroup_dir, copied */
	void *streams[REGION_MAX_DEV][STREAMS_MAX];
} staging;

void stage_init(const struct drv_ops *ops, const struct region_opts *opts)
{
	staging.ops = ops;
	staging.opts = *opts;
	snprintf(staging.cgroup_dir, sizeof(staging.cgroup_dir), "%s",
		 opts->cgroup_dir ? opts->cgroup_dir : "");
	staging.opts.cgroup_dir = staging.cgroup_dir;
	if (staging.opts.chunk_bytes < (1u << 20))
		staging.opts.chunk_bytes = 1u << 20;
	if (staging.opts.streams < 1)
		staging.opts.streams = 1;
	if (staging.opts.streams > STREAMS_MAX)
		staging.opts.streams = STREAMS_MAX;
	if (staging.opts.pin_threads < 1)
		staging.opts.pin_threads = 1;
	memset(staging.streams, 0, sizeof(staging.streams));
}

void stage_forget(void)
{
	memset(staging.streams, 0, sizeof(staging.streams));
}

static size_t page_round(size_t n)
{
	size_t pg = (size_t)sysconf(_SC_PAGESIZE);

	return (n + pg - 1) / pg * pg;
}

int host_drop(struct alloc *a)
{
	void *p = a->host;
	size_t n = a->host_size;
	int rc;

	if (p == NULL)
		return 0;
	/* A buffer the driver will not unpin stays, pinned and recorded:
	 * unmapping pinned pages under the driver is never safe. */
	if (a->host_pinned && (rc = staging.ops->host_unregister(a->dev, p)) < 0)
		return rc;
	alloc_set_host(a, NULL, 0, 0);
	munmap(p, n);
	return 0;
}

/*
 * Obtaining host buffers, pipelined. Pieces of every new buffer (in buffer
 * order) are touched by worker threads. For a staged pause the calling
 * thread pins each buffer, in order, once it is touched, and hands it to
 * `ready`, which queues its copies: the copy engines start while later
 * buffers are still being touched. The driver registers host memory one
 * call at a time anyway, and from the thread that queues the copies it
 * goes faster than from the workers (21-23 against 24-28 GiB/s for 16 GiB
 * on the H100 test machine, docs/benchmarks.md). For a prepare, which
 * copies nothing, the worker that touches a buffer's last piece pins it.
 * Between buffers the calling thread checks the request's deadline and
 * cancel flag.
 */
enum buf_state { BUF_PENDING, BUF_TOUCHED, BUF_PINNED, BUF_FAILED, BUF_SKIPPED };

struct pin_work {
	struct alloc **bufs;
	size_t nbufs;
	size_t *piece_buf;  /* per piece: index into bufs */
	size_t *piece_off;
	size_t npieces;
	size_t next;        /* next piece to touch */
	unsigned *left;     /* per buffer: pieces not yet touched */
	enum buf_state *state;
	pthread_mutex_t lock;
	pthread_cond_t changed; /* CLOCK_MONOTONIC */
	int rc;             /* first failure, or the request's stop */
	int pin_here;       /* the calling thread pins; else the workers do */
};

static void pin_one(struct pin_work *w, size_t b)
{
	struct alloc *a = w->bufs[b];
	enum buf_state st = BUF_PINNED;
	int rc;

	/* Once the request has failed, pinning more would only be undone;
	 * a buffer of a freed allocation is dropped by its last holder. */
	rc = __atomic_load_n(&w->rc, __ATOMIC_RELAXED);
	if (rc == 0 && alloc_freed(a))
		st = BUF_SKIPPED;
	else if (rc == 0)
		rc = staging.ops->host_register(a->dev, a->host, a->host_size);
	if (rc < 0) {
		/* Never pinned: unmapped at once, never unregistered. */
		void *p = a->host;
		size_t len = a->host_size;

		alloc_set_host(a, NULL, 0, 0);
		munmap(p, len);
		st = BUF_FAILED;
	} else if (st == BUF_PINNED) {
		alloc_set_host(a, a->host, a->host_size, 1);
	}
	pthread_mutex_lock(&w->lock);
	if (rc < 0 && w->rc == 0)
		w->rc = rc;
	w->state[b] = st;
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

		if (__atomic_load_n(&w->rc, __ATOMIC_RELAXED) == 0 && !alloc_freed(a)) {
			if (len > POPULATE_PIECE)
				len = POPULATE_PIECE;
			for (off = 0; off < len; off += pg)
				p[off] = 0;
		}
		if (__atomic_sub_fetch(&w->left[b], 1, __ATOMIC_ACQ_REL) != 0)
			continue;
		if (!w->pin_here) {
			pin_one(w, b);
			continue;
		}
		pthread_mutex_lock(&w->lock);
		w->state[b] = BUF_TOUCHED;
		pthread_cond_broadcast(&w->changed);
		pthread_mutex_unlock(&w->lock);
	}
	return NULL;
}

/* Cut every buffer into pieces for the workers. -ENOMEM. */
static int pin_work_init(struct pin_work *w, struct alloc **bufs, size_t nbufs)
{
	size_t i, off, k = 0, total = 0;

	memset(w, 0, sizeof(*w));
	w->bufs = bufs;
	w->nbufs = nbufs;
	for (i = 0; i < nbufs; i++)
		total += (bufs[i]->host_size + POPULATE_PIECE - 1) / POPULATE_PIECE;
	w->piece_buf = malloc(sizeof(size_t) * (total ? total : 1));
	w->piece_off = malloc(sizeof(size_t) * (total ? total : 1));
	w->left = calloc(nbufs ? nbufs : 1, sizeof(unsigned));
	w->state = calloc(nbufs ? nbufs : 1, sizeof(*w->state));
	if (w->piece_buf == NULL || w->piece_off == NULL || w->left == NULL || w->state == NULL)
		return -ENOMEM;
	for (i = 0; i < nbufs; i++)
		for (off = 0; off < bufs[i]->host_size; off += POPULATE_PIECE) {
			w->piece_buf[k] = i;
			w->piece_off[k++] = off;
			w->left[i]++;
		}
	w->npieces = k;
	pthread_mutex_init(&w->lock, NULL);
	cond_init_monotonic(&w->changed);
	return 0;
}

static void pin_work_free(struct pin_work *w)
{
	free(w->piece_buf);
	free(w->piece_off);
	free(w->left);
	free(w->state);
}

/* Stop the workers touching pages nobody will use. */
static void pin_work_stop(struct pin_work *w, int rc)
{
	int zero = 0;

	__atomic_compare_exchange_n(&w->rc, &zero, rc, 0, __ATOMIC_RELAXED, __ATOMIC_RELAXED);
}

/* Wait for buffer b to be pinned, failed or skipped; or for rq to stop. */
static int pin_wait(const struct region_req *rq, struct pin_work *w, size_t b,
		    enum buf_state *st, struct region_err *err)
{
	int rc = 0;

	pthread_mutex_lock(&w->lock);
	while ((*st = w->state[b]) == BUF_PENDING &&
	       (rc = request_stop(rq, "while pinning host buffers", err)) == 0)
		request_wait(rq, &w->changed, &w->lock);
	pthread_mutex_unlock(&w->lock);
	if (rc == 0 && b > 0 && *st != BUF_FAILED)
		rc = request_stop(rq, "between host buffers", err);
	return rc;
}

/* Hand each pinned buffer to ready() in order. The first failure: a
 * buffer that could not be pinned (-ENOMEM), ready's (*why = 1) or the
 * request's stop (*why = 2). Adds pinned bytes to *pinned. */
static int pin_handover(const struct region_req *rq, struct pin_work *w,
			int (*ready)(struct alloc *, void *), void *ctx, uint64_t *pinned,
			int *why, struct region_err *err)
{
	enum buf_state st;
	size_t i;
	int rc;

	for (i = 0; i < w->nbufs; i++) {
		if ((rc = pin_wait(rq, w, i, &st, err)) < 0) {
			*why = 2;
			return rc;
		}
		if (st == BUF_TOUCHED) {
			pin_one(w, i);
			st = w->state[i]; /* written by this thread */
		}
		if (st == BUF_FAILED)
			return -ENOMEM;
		if (st == BUF_SKIPPED)
			continue;
		*pinned += w->bufs[i]->host_size;
		if (ready != NULL && (rc = ready(w->bufs[i], ctx)) < 0) {
			*why = 1;
			return rc;
		}
	}
	return 0;
}

/* Touch and pin `bufs` on worker threads; hand each to ready() in order. */
static int populate_and_pin(const struct region_req *rq, struct alloc **bufs, size_t nbufs,
			    int (*ready)(struct alloc *, void *), void *ctx,
			    uint64_t *pinned, int *why, struct region_err *err)
{
	pthread_t tids[64];
	struct pin_work w;
	int t, started = 0, nthreads = staging.opts.pin_threads, rc;

	rc = pin_work_init(&w, bufs, nbufs);
	if (rc < 0) {
		pin_work_free(&w);
		return rc;
	}
	w.pin_here = ready != NULL;
	if ((size_t)nthreads > w.npieces)
		nthreads = (int)w.npieces;
	for (t = 0; t < nthreads && t < 64; t++) {
		if (pthread_create(&tids[t], NULL, pin_worker, &w) != 0)
			break;
		started++;
	}
	if (started == 0)
		pin_worker(&w); /* no thread to be had: do it here */
	rc = pin_handover(rq, &w, ready, ctx, pinned, why, err);
	if (rc < 0)
		pin_work_stop(&w, rc);
	/* A driver call in progress cannot be interrupted: the workers end
	 * their current piece first. */
	for (t = 0; t < started; t++)
		pthread_join(tids[t], NULL);
	if (rc == 0)
		rc = w.rc;
	pthread_cond_destroy(&w.changed);
	pthread_mutex_destroy(&w.lock);
	pin_work_free(&w);
	return rc;
}

/* Map an unpinned buffer for each of `fresh`. -ENOMEM, none kept. */
static int map_fresh(struct alloc **fresh, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		size_t len = page_round(fresh[i]->size);
		void *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

		if (p == MAP_FAILED) {
			while (i-- > 0) {
				p = fresh[i]->host;
				alloc_set_host(fresh[i], NULL, 0, 0);
				munmap(p, page_round(fresh[i]->size));
			}
			return -ENOMEM;
		}
		if (staging.opts.hugepages)
			(void)madvise(p, len, MADV_HUGEPAGE);
		alloc_set_host(fresh[i], p, len, 0);
	}
	return 0;
}

/* The allocations of `list` that need a buffer, and the bytes they need. */
static size_t pick_fresh(struct alloc **list, size_t n, struct alloc **fresh, uint64_t *need)
{
	size_t i, k = 0;

	*need = 0;
	for (i = 0; i < n; i++)
		if (list[i]->host == NULL && !alloc_freed(list[i])) {
			fresh[k++] = list[i];
			*need += page_round(list[i]->size);
		}
	return k;
}

int host_obtain(const struct region_req *rq, struct alloc **list, size_t n,
		uint64_t *new_bytes, int (*ready)(struct alloc *, void *), void *ctx,
		struct region_err *err)
{
	struct host_room room;
	struct alloc **fresh;
	uint64_t need, pinned = 0;
	size_t nfresh;
	int rc = 0, why = 0;

	fresh = malloc(sizeof(*fresh) * (n ? n : 1));
	if (fresh == NULL)
		return region_fail(err, -ENOMEM, "host memory: no room for the request");
	nfresh = pick_fresh(list, n, fresh, &need);
	if (nfresh == 0)
		goto out;
	host_room(staging.cgroup_dir, &room);
	if (need > room.bytes) {
		rc = region_fail(err, -ENOMEM, "host memory: staging needs %llu bytes, %llu "
				 "available (%s)", (unsigned long long)need,
				 (unsigned long long)room.bytes, room.limit);
		goto out;
	}
	rc = map_fresh(fresh, nfresh);
	if (rc == 0)
		rc = populate_and_pin(rq, fresh, nfresh, ready, ctx, &pinned, &why, err);
	if (rc < 0 && why == 0)
		region_fail(err, -ENOMEM, "host memory: cannot obtain and pin %llu bytes for "
			    "staging (mmap or cuMemHostRegister failed)", (unsigned long long)need);
	if (rc < 0 && why == 0)
		rc = -ENOMEM;
	if (rc == 0)
		*new_bytes += pinned;
out:
	free(fresh);
	return rc;
}

static int streams_for(int dev, void ***out)
{
	int k, rc;

	for (k = 0; k < staging.opts.streams; k++) {
		if (staging.streams[dev][k] != NULL)
			continue;
		rc = staging.ops->stream_create(dev, &staging.streams[dev][k]);
		if (rc < 0)
			return rc;
	}
	*out = staging.streams[dev];
	return 0;
}

/* Note the first failure of a batch and the driver call that failed. */
static int batch_fail(struct stage_batch *b, int rc, const char *call)
{
	if (b->rc == 0) {
		b->rc = rc;
		b->failed = call;
	}
	return b->rc;
}

/* Queue a's chunks on the device's streams, round-robin. */
int stage_queue(struct stage_batch *b, struct alloc *a, enum copy_dir dir)
{
	size_t off, chunk = staging.opts.chunk_bytes;
	uint64_t base = alloc_window(a);
	uint32_t used = 0;
	void **streams;
	int rc, k;

	if (b->rc < 0)
		return b->rc;
	if (base == 0)
		return batch_fail(b, -EINVAL, "(no mapping to copy through)");
	if ((rc = streams_for(a->dev, &streams)) < 0)
		return batch_fail(b, rc, "cuStreamCreate");
	b->used |= 1u << a->dev;
	for (off = 0; off < a->size; off += chunk) {
		size_t len = a->size - off < chunk ? a->size - off : chunk;

		k = (int)(b->turn++ % (unsigned)staging.opts.streams);
		used |= 1u << k;
		if (dir == COPY_DTOH)
			rc = staging.ops->copy_dtoh(a->dev, (char *)a->host + off, base + off,
						    len, streams[k]);
		else
			rc = staging.ops->copy_htod(a->dev, base + off, (char *)a->host + off,
						    len, streams[k]);
		if (rc < 0)
			return batch_fail(b, rc, dir == COPY_DTOH ? "cuMemcpyDtoHAsync"
								   : "cuMemcpyHtoDAsync");
	}
	/* Mark the end of this allocation's copies on every stream used. */
	a->ev_used = 0;
	for (k = 0; k < staging.opts.streams; k++) {
		if (!(used & (1u << k)))
			continue;
		if (a->ev[k] == NULL && (rc = staging.ops->event_create(a->dev, &a->ev[k])) < 0)
			return batch_fail(b, rc, "cuEventCreate");
		if ((rc = staging.ops->event_record(a->dev, a->ev[k], streams[k])) < 0)
			return batch_fail(b, rc, "cuEventRecord");
		a->ev_used |= 1u << k;
	}
	return 0;
}

int stage_wait(struct alloc *a)
{
	int k, rc;

	for (k = 0; k < STREAMS_MAX; k++)
		if ((a->ev_used & (1u << k)) && (rc = staging.ops->event_sync(a->dev, a->ev[k])) < 0)
			return rc;
	a->ev_used = 0;
	return 0;
}

void stage_alloc_done(struct alloc *a)
{
	int k;

	for (k = 0; k < STREAMS_MAX; k++)
		if (a->ev[k] != NULL) {
			(void)staging.ops->event_destroy(a->dev, a->ev[k]);
			a->ev[k] = NULL;
		}
}

int stage_finish(struct stage_batch *b)
{
	int dev, k, rc;

	/* Wait for everything queued, even after a failure: a copy still in
	 * flight must not outlive the memory the caller may unmap next. */
	for (dev = 0; dev < REGION_MAX_DEV; dev++) {
		int failed = 0;

		if (!(b->used & (1u << dev)))
			continue;
		for (k = 0; k < staging.opts.streams; k++)
			if ((rc = staging.ops->stream_sync(dev, staging.streams[dev][k])) < 0) {
				(void)batch_fail(b, rc, "cuStreamSynchronize");
				failed = 1;
			}
		/* A failed wait may leave copies in flight: wait for the whole
		 * device before the caller unmaps. Should that fail too, the
		 * context is lost and nothing queued will run again. */
		if (failed)
			(void)staging.ops->device_sync(dev);
	}
	b->used = 0;
	return b->rc;
}
