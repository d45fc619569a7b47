# SPDX-License-Identifier: Apache-2.0
"""A stand-in for the few parts of PyTorch that memctl.tms routes through
(torch.cuda.MemPool, use_mem_pool and the calls behind it), with a model of
the caching allocator's choice of pool, for test_tms.py on the simulated
driver, where there is no torch.

The model follows c10/cuda/CUDACachingAllocator.cpp (PyTorch 2.8 on): each
open pool is an entry (pool, thread) in the order opened; an allocation of
a thread is served from the first of its entries ("captures_underway";
with lifo=True the last, as PyTorch's later LIFO change has it), or from
the default pool; by a cached free block of that pool when one fits, else
by a new segment from cudaMalloc (memctl's, which tags it by the region
then open); a freed block goes back to the cache of its pool. Opening a
pool that is open already is refused, and so is a pool whose use count
fell to zero, as PyTorch refuses them. Blocks are never split: tests use
one size. Allocate with torch.cuda.caching_allocator_alloc(size) and free
with torch.cuda.caching_allocator_delete(ptr), as in PyTorch."""
import contextlib
import sys
import threading
import types

DEFAULT_POOL = (0, 0)


class CachingAllocator:
    def __init__(self, cuda, lifo):
        self.cuda = cuda
        self.lifo = lifo
        self.routes = []   # (pool id, thread id), in the order opened
        self.uses = {}     # pool id -> use count
        self.cached = {}   # pool id -> [(ptr, size)] free blocks
        self.blocks = {}   # ptr -> (pool id, size) of a block in use
        self.ids = 0

    def new_pool(self):
        self.ids += 1
        pool_id = (0, self.ids)
        self.uses[pool_id] = 1
        return pool_id

    def begin(self, device, pool_id):
        if any(open_id == pool_id for open_id, _ in self.routes):
            raise RuntimeError("beginAllocateToPool: already recording to mempool_id")
        if self.uses.get(pool_id, 0) <= 0:
            raise RuntimeError("INTERNAL ASSERT FAILED: use_count > 0")
        self.uses[pool_id] += 1
        self.routes.append((pool_id, threading.get_ident()))

    def end(self, device, pool_id):
        for i, (open_id, _) in enumerate(self.routes):
            if open_id == pool_id:
                del self.routes[i]
                return
        raise RuntimeError("endAllocatePool: not currently recording to mempool_id")

    def release(self, device, pool_id):
        self.uses[pool_id] -= 1
        if self.uses[pool_id] < 0:
            raise RuntimeError("INTERNAL ASSERT FAILED: uc >= 0")

    def pool_now(self):
        mine = [p for p, thread in self.routes if thread == threading.get_ident()]
        if not mine:
            return DEFAULT_POOL
        return mine[-1] if self.lifo else mine[0]

    def alloc(self, size):
        pool_id = self.pool_now()
        free = self.cached.setdefault(pool_id, [])
        for i, (ptr, n) in enumerate(free):
            if n == size:
                del free[i]
                self.blocks[ptr] = (pool_id, size)
                return ptr
        ptr = self.cuda.malloc(size)
        self.blocks[ptr] = (pool_id, size)
        return ptr

    def free(self, ptr):
        pool_id, size = self.blocks.pop(ptr)
        self.cached.setdefault(pool_id, []).append((ptr, size))


def install(cuda, lifo=False, route_calls=True):
    """Make `import torch` give the stand-in, serving segments with `cuda`
    (test_tms.Cuda). Without route_calls, torch._C lacks the calls behind
    use_mem_pool, as in PyTorch before 2.8. Returns the torch module; its
    `allocator` is the model, for tests to look into."""
    alloc = CachingAllocator(cuda, lifo)
    torch = types.ModuleType("torch")
    c = types.ModuleType("torch._C")
    tcuda = types.ModuleType("torch.cuda")
    memory = types.ModuleType("torch.cuda.memory")
    if route_calls:
        c._cuda_beginAllocateCurrentThreadToPool = alloc.begin
        c._cuda_endAllocateToPool = alloc.end
        c._cuda_releasePool = alloc.release

    class MemPool:
        def __init__(self, allocator=None):
            self.id = alloc.new_pool()

    @contextlib.contextmanager
    def use_mem_pool(pool, device=None):
        alloc.begin(0, pool.id)
        try:
            yield
        finally:
            alloc.end(0, pool.id)
            alloc.release(0, pool.id)

    tcuda.MemPool = memory.MemPool = MemPool
    tcuda.use_mem_pool = memory.use_mem_pool = use_mem_pool
    tcuda.is_available = lambda: True
    tcuda.current_device = lambda: 0
    tcuda.caching_allocator_alloc = lambda size, device=None, stream=None: alloc.alloc(size)
    tcuda.caching_allocator_delete = alloc.free
    tcuda.memory = memory
    torch._C, torch.cuda, torch.allocator = c, tcuda, alloc
    sys.modules.update({"torch": torch, "torch._C": c, "torch.cuda": tcuda,
                        "torch.cuda.memory": memory})
    return torch
