// SPDX-License-Identifier: Apache-2.0
//
// stagecost.cu - what a staged pause is made of, each part timed alone on
// the driver, without memctl: obtaining host memory (touching fresh pages,
// pinning them, the driver's own pinned allocation), copying out of a
// pinned bounce buffer by CPU, device-to-host copies into pinned and
// pageable memory, and the virtual-memory calls of a pause at many
// allocations (unmap, release, with and without copies in flight; whether
// a handle can be mapped at an offset, so shared by allocations). The
// answers decide how the first pause and many small allocations are made
// fast (docs/benchmarks.md, "What a staged pause is made of").
//
// usage: stagecost [GiB] [count]      (default 16 4096)
#include <cuda.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>
#include <vector>

#define CU(x) do { CUresult r_ = (x); if (r_ != CUDA_SUCCESS) { \
	fprintf(stderr, "%s:%d %s: error %d\n", __FILE__, __LINE__, #x, (int)r_); \
	exit(1); } } while (0)

static const double GiB = 1073741824.0;
static CUcontext ctx;

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void row(const char *what, double bytes, double s)
{
	printf("| %-62s | %9.1f ms | %6.2f GiB/s |\n", what, s * 1e3, bytes / GiB / s);
	fflush(stdout);
}

// ---- host side: many buffers, worked on by T threads -----------------
struct job {
	std::vector<char *> *bufs;
	size_t len;
	int what;           // 0 touch, 1 register, 2 touch+register, 3 host alloc, 4 copy
	const char *src;    // for copy: a pinned buffer of src_len bytes
	size_t src_len;
	size_t next;
};

static void touch(char *p, size_t len)
{
	for (size_t off = 0; off < len; off += 4096)
		p[off] = 0;
}

static void *worker(void *arg)
{
	job *j = (job *)arg;
	size_t i;

	CU(cuCtxSetCurrent(ctx));
	while ((i = __atomic_fetch_add(&j->next, 1, __ATOMIC_RELAXED)) < j->bufs->size()) {
		char *p = (*j->bufs)[i];

		switch (j->what) {
		case 0: touch(p, j->len); break;
		case 1: CU(cuMemHostRegister(p, j->len, 0)); break;
		case 2: touch(p, j->len); CU(cuMemHostRegister(p, j->len, 0)); break;
		case 3: CU(cuMemHostAlloc((void **)&(*j->bufs)[i], j->len, 0)); break;
		case 4:
			for (size_t off = 0; off < j->len; off += j->src_len)
				memcpy(p + off, j->src, j->len - off < j->src_len ? j->len - off : j->src_len);
			break;
		}
	}
	return NULL;
}

static double run_threads(job *j, int threads)
{
	std::vector<pthread_t> t(threads);
	double t0 = now();

	j->next = 0;
	for (int k = 0; k < threads; k++)
		pthread_create(&t[k], NULL, worker, j);
	for (int k = 0; k < threads; k++)
		pthread_join(t[k], NULL);
	return now() - t0;
}

static std::vector<char *> fresh(size_t n, size_t len)
{
	std::vector<char *> v(n);

	for (auto &p : v) {
		p = (char *)mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (p == MAP_FAILED) { perror("mmap"); exit(1); }
		madvise(p, len, MADV_HUGEPAGE);
	}
	return v;
}

static void give_back(std::vector<char *> &v, size_t len, int registered, int hostalloc)
{
	for (auto p : v) {
		if (hostalloc) { CU(cuMemFreeHost(p)); continue; }
		if (registered) CU(cuMemHostUnregister(p));
		munmap(p, len);
	}
}

static void host_side(double gib, size_t n)
{
	size_t total = (size_t)(gib * GiB), len = total / n;
	char name[128];

	for (int th : {8, 16}) {
		auto v = fresh(n, len);
		job j = {&v, len, 0};
		snprintf(name, sizeof(name), "touch fresh pages (THP madvise), %d threads", th);
		row(name, total, run_threads(&j, th));
		j.what = 1;
		snprintf(name, sizeof(name), "cuMemHostRegister, touched, %d threads", th);
		row(name, total, run_threads(&j, th));
		give_back(v, len, 1, 0);
	}
	for (int th : {1, 8}) {
		auto v = fresh(n, len);
		job j = {&v, len, 1};
		snprintf(name, sizeof(name), "cuMemHostRegister, untouched, %d threads", th);
		row(name, total, run_threads(&j, th));
		give_back(v, len, 1, 0);
	}
	{
		auto v = fresh(n, len);
		job j = {&v, len, 2};
		row("touch + cuMemHostRegister per buffer, 8 threads", total, run_threads(&j, 8));
		give_back(v, len, 1, 0);
	}
	for (int th : {1, 8}) {
		std::vector<char *> v(n);
		job j = {&v, len, 3};
		snprintf(name, sizeof(name), "cuMemHostAlloc, %d threads", th);
		row(name, total, run_threads(&j, th));
		give_back(v, len, 0, 1);
	}
	// Copy by CPU out of a pinned bounce buffer into fresh pageable pages.
	char *bounce;
	size_t blen = 64ul << 20;
	CU(cuMemHostAlloc((void **)&bounce, blen, 0));
	memset(bounce, 7, blen);
	for (int th : {8, 16}) {
		auto v = fresh(n, len);
		job j = {&v, len, 4, bounce, blen};
		snprintf(name, sizeof(name), "memcpy pinned -> fresh pageable, %d threads", th);
		row(name, total, run_threads(&j, th));
		j.next = 0;
		snprintf(name, sizeof(name), "memcpy pinned -> touched pageable, %d threads", th);
		row(name, total, run_threads(&j, th));
		give_back(v, len, 0, 0);
	}
	CU(cuMemFreeHost(bounce));
}

// ---- copies -----------------------------------------------------------
static void copies(double gib)
{
	size_t total = (size_t)(gib * GiB), chunk = 64ul << 20;
	CUdeviceptr d;
	CUstream s[4];
	char *pinned, *pageable;

	CU(cuMemAlloc(&d, total));
	CU(cuMemsetD8(d, 3, total));
	for (auto &x : s)
		CU(cuStreamCreate(&x, CU_STREAM_NON_BLOCKING));
	CU(cuMemHostAlloc((void **)&pinned, total, 0));
	for (int rep = 0; rep < 2; rep++) {
		double t0 = now();
		for (size_t off = 0, k = 0; off < total; off += chunk, k++)
			CU(cuMemcpyDtoHAsync(pinned + off, d + off, chunk, s[k % 4]));
		CU(cuCtxSynchronize());
		if (rep)
			row("D2H into pinned memory (the limit), 64 MiB chunks, 4 streams", total, now() - t0);
	}
	CU(cuMemFreeHost(pinned));
	pageable = fresh(1, total)[0];
	double t0 = now();
	CU(cuMemcpyDtoH(pageable, d, total));
	row("D2H into fresh pageable memory, one call", total, now() - t0);
	t0 = now();
	CU(cuMemcpyDtoH(pageable, d, total));
	row("D2H into touched pageable memory, one call", total, now() - t0);
	munmap(pageable, total);
	for (auto &x : s)
		CU(cuStreamDestroy(x));
	CU(cuMemFree(d));
}

// ---- the virtual-memory calls of a pause -------------------------------
struct vm {
	size_t n, len;        // allocations, bytes each
	CUdeviceptr va;       // one reservation for all
	std::vector<CUmemGenericAllocationHandle> h; // one per allocation
};

static CUmemAllocationProp prop(void)
{
	CUmemAllocationProp p;

	memset(&p, 0, sizeof(p));
	p.type = CU_MEM_ALLOCATION_TYPE_PINNED;
	p.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
	p.location.id = 0;
	return p;
}

// Create a handle per allocation and map it at the allocation's window.
static void vm_map(vm *m)
{
	CUmemAllocationProp p = prop();
	CUmemAccessDesc acc;

	memset(&acc, 0, sizeof(acc));
	acc.location = p.location;
	acc.flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
	m->h.resize(m->n);
	for (size_t i = 0; i < m->n; i++) {
		CU(cuMemCreate(&m->h[i], m->len, &p, 0));
		CU(cuMemMap(m->va + i * m->len, m->len, 0, m->h[i], 0));
		CU(cuMemSetAccess(m->va + i * m->len, m->len, &acc, 1));
	}
}

static void vm_unmap_release(vm *m, std::vector<CUevent> *ev)
{
	for (size_t i = 0; i < m->n; i++) {
		if (ev)
			CU(cuEventSynchronize((*ev)[i]));
		CU(cuMemUnmap(m->va + i * m->len, m->len));
		CU(cuMemRelease(m->h[i]));
	}
}

// Queue every allocation's copy to host, an event after each.
static void vm_copy_out(vm *m, char *pinned, CUstream *s, std::vector<CUevent> &ev)
{
	for (size_t i = 0; i < m->n; i++) {
		CU(cuMemcpyDtoHAsync(pinned + i * m->len, m->va + i * m->len, m->len, s[i % 4]));
		CU(cuEventRecord(ev[i], s[i % 4]));
	}
}

static void vm_side(double gib, size_t n)
{
	size_t total = (size_t)(gib * GiB), len = total / n;
	CUstream s[4];
	std::vector<CUevent> ev(n);
	char *pinned, name[128];
	vm m = {n, len, 0, {}};

	CU(cuMemAddressReserve(&m.va, total, 0, 0, 0));
	CU(cuMemHostAlloc((void **)&pinned, total, 0));
	for (auto &x : s)
		CU(cuStreamCreate(&x, CU_STREAM_NON_BLOCKING));
	for (auto &e : ev)
		CU(cuEventCreate(&e, CU_EVENT_DISABLE_TIMING));
	vm_map(&m);
	double t0 = now();
	vm_copy_out(&m, pinned, s, ev);
	CU(cuCtxSynchronize());
	snprintf(name, sizeof(name), "[%zu allocs, 1 per handle] copies alone", n);
	row(name, total, now() - t0);
	t0 = now();
	vm_unmap_release(&m, NULL);
	snprintf(name, sizeof(name), "[%zu allocs, 1 per handle] unmap+release alone", n);
	row(name, total, now() - t0);
	vm_map(&m);
	t0 = now();
	vm_copy_out(&m, pinned, s, ev);
	vm_unmap_release(&m, &ev);
	snprintf(name, sizeof(name), "[%zu allocs, 1 per handle] copies, release as each lands", n);
	row(name, total, now() - t0);
	vm_map(&m);
	t0 = now();
	vm_copy_out(&m, pinned, s, ev);
	CU(cuCtxSynchronize());
	vm_unmap_release(&m, NULL);
	snprintf(name, sizeof(name), "[%zu allocs, 1 per handle] copies, then unmap+release", n);
	row(name, total, now() - t0);
	// Resume: create+map+access, then copies back.
	t0 = now();
	vm_map(&m);
	for (size_t i = 0; i < n; i++)
		CU(cuMemcpyHtoDAsync(m.va + i * len, pinned + i * len, len, s[i % 4]));
	CU(cuCtxSynchronize());
	snprintf(name, sizeof(name), "[%zu allocs, 1 per handle] create+map+access, copy back", n);
	row(name, total, now() - t0);
	vm_unmap_release(&m, NULL);
	// Several allocations in one handle need cuMemMap at an offset into
	// it: allowed?
	{
		CUmemAllocationProp p = prop();
		CUmemGenericAllocationHandle h;

		CU(cuMemCreate(&h, 2 * len, &p, 0));
		CUresult r = cuMemMap(m.va + len, len, len, h, 0);
		printf("cuMemMap at an offset into a handle: %d%s\n", (int)r,
		       r == CUDA_ERROR_NOT_SUPPORTED ? " (not supported)" : "");
		if (r == CUDA_SUCCESS)
			CU(cuMemUnmap(m.va + len, len));
		CU(cuMemRelease(h));
	}
	// One unmap over windows of several handles, contiguous: allowed?
	vm_map(&m);
	CUresult r = cuMemUnmap(m.va, 2 * len);
	printf("cuMemUnmap over two adjacent mappings of two handles: %d\n", (int)r);
	if (r == CUDA_SUCCESS)
		for (size_t i = 2; i < n; i++)
			CU(cuMemUnmap(m.va + i * len, len));
	else
		for (size_t i = 0; i < n; i++)
			CU(cuMemUnmap(m.va + i * len, len));
	for (auto h : m.h)
		CU(cuMemRelease(h));
	for (auto &e : ev)
		CU(cuEventDestroy(e));
	CU(cuMemFreeHost(pinned));
	CU(cuMemAddressFree(m.va, total));
}

// ---- a first staged pause: obtaining buffers while copying into them ---
// Workers touch (and, in mode 0, pin) whole buffers; the main thread pins
// (mode 1) and queues each buffer's copy as soon as it is ready, in order.
struct pipeline {
	std::vector<char *> bufs;
	size_t len, next;
	int mode;
	std::vector<int> ready;
};

static void *pipe_worker(void *arg)
{
	pipeline *p = (pipeline *)arg;
	size_t i;

	CU(cuCtxSetCurrent(ctx));
	while ((i = __atomic_fetch_add(&p->next, 1, __ATOMIC_RELAXED)) < p->bufs.size()) {
		touch(p->bufs[i], p->len);
		if (p->mode == 0 || p->mode == 3)
			CU(cuMemHostRegister(p->bufs[i], p->len,
					     p->mode == 3 ? CU_MEMHOSTREGISTER_PORTABLE : 0));
		__atomic_store_n(&p->ready[i], 1, __ATOMIC_RELEASE);
	}
	return NULL;
}

static void first_pause(double gib, size_t n, int mode, int threads, const char *what)
{
	size_t total = (size_t)(gib * GiB), len = total / n, chunk = 32ul << 20;
	CUdeviceptr d;
	CUstream s[4];
	pipeline p;
	std::vector<pthread_t> t(threads);

	CU(cuMemAlloc(&d, total));
	for (auto &x : s)
		CU(cuStreamCreate(&x, CU_STREAM_NON_BLOCKING));
	p.bufs = fresh(n, len);
	p.len = len;
	p.next = 0;
	p.mode = mode;
	p.ready.assign(n, 0);
	double t0 = now();
	if (mode == 2) { // everything pinned first, then every copy
		job j = {&p.bufs, len, 2};
		run_threads(&j, threads);
	} else {
		for (int k = 0; k < threads; k++)
			pthread_create(&t[k], NULL, pipe_worker, &p);
	}
	for (size_t i = 0, k = 0; i < n; i++) {
		while (mode != 2 && !__atomic_load_n(&p.ready[i], __ATOMIC_ACQUIRE))
			usleep(50);
		if (mode == 1)
			CU(cuMemHostRegister(p.bufs[i], len, 0));
		for (size_t off = 0; off < len; off += chunk, k++)
			CU(cuMemcpyDtoHAsync(p.bufs[i] + off, d + i * len + off,
					     len - off < chunk ? len - off : chunk, s[k % 4]));
	}
	CU(cuCtxSynchronize());
	row(what, total, now() - t0);
	if (mode != 2)
		for (int k = 0; k < threads; k++)
			pthread_join(t[k], NULL);
	give_back(p.bufs, len, 1, 0);
	for (auto &x : s)
		CU(cuStreamDestroy(x));
	CU(cuMemFree(d));
}

// ---- a first staged pause through a pinned bounce ring -----------------
// Nothing is pinned per pause: each chunk is copied into one slot of a
// small pinned ring, and CPU threads copy the slot into the (fresh,
// pageable) host buffer, in parallel over chunks.
struct bounce {
	size_t nchunks, chunk, slots;
	char *ring;
	std::vector<CUevent> ev;
	std::vector<char *> dst;    // per chunk: where it goes on the host
	std::vector<size_t> src;    // per chunk: its offset on the device
	std::vector<int> posted, done;
	size_t next;
};

// Queue every chunk into the ring, a slot as soon as its last chunk was
// copied on by a worker.
static void bounce_submit(bounce *b, CUdeviceptr d, CUstream *s, int nstreams)
{
	for (size_t c = 0; c < b->nchunks; c++) {
		size_t slot = c % b->slots;

		while (c >= b->slots && !__atomic_load_n(&b->done[c - b->slots], __ATOMIC_ACQUIRE))
			usleep(20);
		CU(cuMemcpyDtoHAsync(b->ring + slot * b->chunk, d + b->src[c], b->chunk,
				     s[c % nstreams]));
		CU(cuEventRecord(b->ev[c], s[c % nstreams]));
		__atomic_store_n(&b->posted[c], 1, __ATOMIC_RELEASE);
	}
}

static void *bounce_worker(void *arg)
{
	bounce *b = (bounce *)arg;
	size_t c;

	CU(cuCtxSetCurrent(ctx));
	while ((c = __atomic_fetch_add(&b->next, 1, __ATOMIC_RELAXED)) < b->nchunks) {
		size_t slot = c % b->slots;

		while (!__atomic_load_n(&b->posted[c], __ATOMIC_ACQUIRE))
			usleep(20);
		CU(cuEventSynchronize(b->ev[c % b->ev.size()]));
		memcpy(b->dst[c], b->ring + slot * b->chunk, b->chunk);
		__atomic_store_n(&b->done[c], 1, __ATOMIC_RELEASE);
	}
	return NULL;
}

static void first_pause_bounce(double gib, int threads, size_t chunk_mib, size_t slots,
			       int touched)
{
	size_t total = (size_t)(gib * GiB), n = 64, len = total / n;
	bounce b;
	CUdeviceptr d;
	CUstream s[4];
	std::vector<pthread_t> t(threads);
	char name[128];

	b.chunk = chunk_mib << 20;
	b.nchunks = total / b.chunk;
	b.slots = slots;
	b.next = 0;
	CU(cuMemAlloc(&d, total));
	for (auto &x : s)
		CU(cuStreamCreate(&x, CU_STREAM_NON_BLOCKING));
	CU(cuMemHostAlloc((void **)&b.ring, b.chunk * slots, 0));
	b.ev.resize(b.nchunks);
	for (auto &e : b.ev)
		CU(cuEventCreate(&e, CU_EVENT_DISABLE_TIMING));
	auto bufs = fresh(n, len);
	if (touched)
		for (auto p : bufs)
			touch(p, len);
	for (size_t c = 0; c < b.nchunks; c++) {
		b.dst.push_back(bufs[c * b.chunk / len] + (c * b.chunk) % len);
		b.src.push_back(c * b.chunk);
	}
	b.posted.assign(b.nchunks, 0);
	b.done.assign(b.nchunks, 0);
	double t0 = now();
	for (int k = 0; k < threads; k++)
		pthread_create(&t[k], NULL, bounce_worker, &b);
	bounce_submit(&b, d, s, 4);
	for (int k = 0; k < threads; k++)
		pthread_join(t[k], NULL);
	snprintf(name, sizeof(name), "%s pause via bounce: %d threads, %zu x %zu MiB ring",
		 touched ? "warm" : "first", threads, slots, chunk_mib);
	row(name, total, now() - t0);
	give_back(bufs, len, 0, 0);
	for (auto &e : b.ev)
		CU(cuEventDestroy(e));
	CU(cuMemFreeHost(b.ring));
	for (auto &x : s)
		CU(cuStreamDestroy(x));
	CU(cuMemFree(d));
}

// ---- a first staged pause by both ways at once ---------------------------
// Of every `every` buffers one is staged through the bounce ring (CPU
// threads copy its chunks on into the fresh pageable buffer), the others
// are touched by workers and pinned by one thread, which queues their
// copies. The two share the copy engines and split the CPU.
struct hybrid {
	std::vector<char *> bufs;
	std::vector<int> direct, touched;
	size_t len, next_touch;
	CUdeviceptr d;
	bounce b;
};

static void *hybrid_toucher(void *arg)
{
	hybrid *h = (hybrid *)arg;
	size_t i;

	while ((i = __atomic_fetch_add(&h->next_touch, 1, __ATOMIC_RELAXED)) < h->bufs.size()) {
		if (!h->direct[i])
			continue;
		touch(h->bufs[i], h->len);
		__atomic_store_n(&h->touched[i], 1, __ATOMIC_RELEASE);
	}
	return NULL;
}

static void *hybrid_pinner(void *arg)
{
	hybrid *h = (hybrid *)arg;
	size_t chunk = 32ul << 20, k = 0;
	CUstream s[2];

	CU(cuCtxSetCurrent(ctx));
	for (auto &x : s)
		CU(cuStreamCreate(&x, CU_STREAM_NON_BLOCKING));
	for (size_t i = 0; i < h->bufs.size(); i++) {
		if (!h->direct[i])
			continue;
		while (!__atomic_load_n(&h->touched[i], __ATOMIC_ACQUIRE))
			usleep(20);
		CU(cuMemHostRegister(h->bufs[i], h->len, 0));
		for (size_t off = 0; off < h->len; off += chunk, k++)
			CU(cuMemcpyDtoHAsync(h->bufs[i] + off, h->d + i * h->len + off, chunk, s[k % 2]));
	}
	for (auto &x : s)
		CU(cuStreamSynchronize(x));
	return NULL;
}

static void *hybrid_bouncer(void *arg)
{
	hybrid *h = (hybrid *)arg;
	CUstream s[2];

	CU(cuCtxSetCurrent(ctx));
	for (auto &x : s)
		CU(cuStreamCreate(&x, CU_STREAM_NON_BLOCKING));
	bounce_submit(&h->b, h->d, s, 2);
	return NULL;
}

static void first_pause_hybrid(double gib, int every, int touchers, int copiers)
{
	size_t total = (size_t)(gib * GiB), n = 64, len = total / n;
	std::vector<pthread_t> tt(touchers), tc(copiers);
	pthread_t tp, tb;
	char name[160];
	hybrid h;
	bounce &b = h.b;
	int direct = 0;

	CU(cuMemAlloc(&h.d, total));
	h.bufs = fresh(n, len);
	h.len = len;
	h.next_touch = 0;
	h.direct.assign(n, 0);
	h.touched.assign(n, 0);
	b.chunk = 16ul << 20;
	b.slots = 48;
	b.next = 0;
	CU(cuMemHostAlloc((void **)&b.ring, b.chunk * b.slots, 0));
	for (size_t i = 0; i < n; i++) {
		h.direct[i] = (int)(i % every) != 0;
		direct += h.direct[i];
		if (!h.direct[i])
			for (size_t off = 0; off < len; off += b.chunk) {
				b.dst.push_back(h.bufs[i] + off);
				b.src.push_back(i * len + off);
			}
	}
	b.nchunks = b.dst.size();
	b.ev.resize(b.nchunks);
	for (auto &e : b.ev)
		CU(cuEventCreate(&e, CU_EVENT_DISABLE_TIMING));
	b.posted.assign(b.nchunks, 0);
	b.done.assign(b.nchunks, 0);
	double t0 = now();
	for (int k = 0; k < touchers; k++)
		pthread_create(&tt[k], NULL, hybrid_toucher, &h);
	for (int k = 0; k < copiers; k++)
		pthread_create(&tc[k], NULL, bounce_worker, &b);
	pthread_create(&tp, NULL, hybrid_pinner, &h);
	pthread_create(&tb, NULL, hybrid_bouncer, &h);
	for (int k = 0; k < touchers; k++)
		pthread_join(tt[k], NULL);
	for (int k = 0; k < copiers; k++)
		pthread_join(tc[k], NULL);
	pthread_join(tp, NULL);
	pthread_join(tb, NULL);
	snprintf(name, sizeof(name), "first pause, %d/64 pinned + rest by bounce, %d+%d threads",
		 direct, touchers, copiers);
	row(name, total, now() - t0);
	for (size_t i = 0; i < n; i++) {
		if (h.direct[i])
			CU(cuMemHostUnregister(h.bufs[i]));
		munmap(h.bufs[i], len);
	}
	for (auto &e : b.ev)
		CU(cuEventDestroy(e));
	CU(cuMemFreeHost(b.ring));
	CU(cuMemFree(h.d));
}

int main(int argc, char **argv)
{
	double gib = argc > 1 ? atof(argv[1]) : 16;
	size_t n = argc > 2 ? strtoul(argv[2], NULL, 10) : 4096;
	CUdevice dev;
	char buf[256] = "";
	FILE *f;

	CU(cuInit(0));
	CU(cuDeviceGet(&dev, 0));
	CU(cuDevicePrimaryCtxRetain(&ctx, dev));
	CU(cuCtxSetCurrent(ctx));
	f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");
	if (f && fgets(buf, sizeof(buf), f))
		printf("THP: %s", buf);
	if (f) fclose(f);
	printf("%.0f GiB; host buffers: 64; allocations: %zu\n", gib, n);
	printf("| part | time | rate |\n|---|---|---|\n");
	copies(gib);
	first_pause(gib, 64, 2, 8, "first pause: pin all (8 threads), then copy");
	first_pause(gib, 64, 0, 8, "first pause: workers touch+pin, copies as ready");
	first_pause(gib, 64, 3, 8, "first pause: workers touch+pin PORTABLE, copies as ready");
	first_pause(gib, 64, 1, 8, "first pause: workers touch, main pins+copies");
	first_pause(gib, 64, 1, 16, "first pause: 16 workers touch, main pins+copies");
	first_pause(gib, 512, 1, 16, "first pause, 512 bufs: 16 workers touch, main pins+copies");
	for (int th : {8, 12, 16})
		first_pause_bounce(gib, th, 16, 32, 0);
	first_pause_bounce(gib, 16, 4, 96, 0);
	first_pause_bounce(gib, 12, 16, 32, 1);
	first_pause_hybrid(gib, 2, 4, 12);
	first_pause_hybrid(gib, 2, 6, 10);
	first_pause_hybrid(gib, 3, 6, 10);
	first_pause_hybrid(gib, 3, 8, 8);
	first_pause_hybrid(gib, 4, 8, 8);
	host_side(gib, 64);
	vm_side(gib, n);
	return 0;
}
