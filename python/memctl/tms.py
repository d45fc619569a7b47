# SPDX-License-Identifier: Apache-2.0
"""torch_memory_saver's public API, answered by memctl.

Programs written for torch_memory_saver (SGLang's ``--enable-memory-saver``,
verl, slime) run unchanged::

    from torch_memory_saver import torch_memory_saver   # after make install-tms-compat
    # or, without installing the compatibility name:
    from memctl.tms import torch_memory_saver

    with torch_memory_saver.region(tag="weights", enable_cpu_backup=True):
        model = build_model().cuda()
    with torch_memory_saver.region(tag="kv_cache"):
        kv = torch.empty(...)
    torch_memory_saver.pause()            # weights staged to host memory, KV cache dropped
    torch_memory_saver.resume()           # same addresses; weights bit-identical

Every allocation made in a region is a memctl allocation of that tag, so
``memctl status`` and the rest of the CLI see and control the same tags from
outside the process. Where torch_memory_saver would exit the process (a
resume without device memory, pausing memory it cannot back up), this
module raises ``TorchMemorySaverError`` with memctl's message and nothing is
lost: a retry succeeds once the cause is gone. docs/torch_memory_saver.md
lists every call and how it differs.

The module needs no torch to import. torch is used where the API is about
tensors (MemPools, CUDA graphs, get_cpu_backup), always through the torch
the program has imported itself.
"""
import contextlib
import ctypes
import errno as _errno
import os
import re
import sys
import threading
import weakref

import memctl
from memctl import MemctlError, REGION_STAGE_CPU, REGION_UNTAGGED, RELEASE_HOST

__all__ = ["TorchMemorySaver", "TorchMemorySaverError", "torch_memory_saver",
           "memory_saver", "configure_subprocess"]

_TAG_DEFAULT = "default"
_HOOK_MODES = ("preload", "torch")
_BACKENDS = ("pinned", "mmap")
_TAG = re.compile(r"[A-Za-z0-9_.-]{1,63}\Z")
# torch_memory_saver's reading of a boolean environment variable.
_TRUE = ("1", "true", "TRUE", "yes", "YES")
_FALSE = ("0", "false", "FALSE", "no", "NO")


class TorchMemorySaverError(MemctlError, RuntimeError):
    """A call that torch_memory_saver would have answered by exiting the
    process. ``errno`` says why (ENOMEM: device memory, the margin
    included), ``str()`` carries memctl's message. Nothing was lost."""


def _env_bool(name):
    value = os.environ.get(name)
    if value is None or value in _FALSE:
        return False
    if value in _TRUE:
        return True
    raise ValueError("%s=%r: expected one of %s or %s"
                     % (name, value, "/".join(_TRUE), "/".join(_FALSE)))


def _fail(rc, what):
    raise TorchMemorySaverError(-rc, "%s: %s" % (what, memctl._load().memctl_strerror(rc).decode(
        "utf-8", "replace")))


def _tag_name(tag, what):
    """A tag as memctl spells it: 1 to 63 of [A-Za-z0-9_.-], never "all"."""
    if not isinstance(tag, str) or not _TAG.match(tag) or tag == "all":
        raise ValueError("%s: tag %r cannot be a memctl tag (1 to 63 characters of "
                         "letters, digits, '_', '.', '-'; 'all' means every tag)"
                         % (what, tag))
    return tag.encode()


def _tag_filter(tag, what):
    """pause/resume's tag: None or "" is every tag, as torch_memory_saver reads it."""
    return None if not tag else _tag_name(tag, what)


# Per thread, per device: the MemPools memctl.tms has routed allocations
# to, innermost last (only the innermost is open in PyTorch).
_routes = threading.local()


def _route_calls(torch):
    """The calls torch.cuda.use_mem_pool makes (PyTorch 2.8 on): route this
    thread's allocations on a device to a pool, end that, and drop the pool
    reference the first took. None where PyTorch routes otherwise."""
    names = ("_cuda_beginAllocateCurrentThreadToPool", "_cuda_endAllocateToPool",
             "_cuda_releasePool")
    if hasattr(torch._C, "_MemPoolContext") or not all(hasattr(torch._C, n) for n in names):
        return None
    return tuple(getattr(torch._C, n) for n in names)


def _reopen(calls, device, pool):
    """Route to `pool` again, holding the one reference it held before."""
    begin, _, release = calls
    begin(device, pool.id)
    release(device, pool.id)


@contextlib.contextmanager
def _routed_to(pool):
    """Allocations of this thread on the current device come from `pool`
    inside, also within another region's or disable()'s pool. While two
    pools are open, PyTorch's caching allocator takes the one opened first
    (c10's get_pool, before its LIFO change): nested use_mem_pool blocks
    would hand a cached block of the outer region, made under the outer
    tag, to a tensor of the inner region or of disable(), which a pause
    of the outer tag then takes away. So the outer pool is closed while
    the inner one is open, and reopened after it. (use_mem_pool's hold on
    a pool during a graph capture is not needed: this module keeps its
    pools for the life of the process.)"""
    if pool is None:
        yield
        return
    import torch
    calls = _route_calls(torch)
    if calls is None:
        with torch.cuda.use_mem_pool(pool):
            yield
        return
    begin, end, release = calls
    device = torch.cuda.current_device()
    stacks = getattr(_routes, "stacks", None)
    if stacks is None:
        stacks = _routes.stacks = {}
    stack = stacks.setdefault(device, [])
    outer = stack[-1] if stack else None
    if outer is not None:
        end(device, outer.id)  # its reference stays, dropped when its block ends
    try:
        begin(device, pool.id)
    except BaseException:
        if outer is not None:
            _reopen(calls, device, outer)
        raise
    stack.append(pool)
    try:
        yield
    finally:
        stack.pop()
        end(device, pool.id)
        release(device, pool.id)
        if outer is not None:
            _reopen(calls, device, outer)


class _Process:
    """What torch_memory_saver keeps in its library, once per process:
    every instance shares it."""
    retain = None   # retain_cpu_backup; None: TMS_RETAIN_CPU_BACKUP decides
    margin = 0      # memory_margin_bytes, as last set
    views = 0       # zero-copy backups alive


class TorchMemorySaver:
    """torch_memory_saver's facade. Use the module's singleton,
    ``torch_memory_saver``. Further instances have a hook mode and pools of
    their own and share the rest (tags, margin, retain_cpu_backup), as
    torch_memory_saver's do."""

    def __init__(self):
        self._hook_mode = "preload"
        self._lib = None
        self._pools = {}

    # ---- set-up -------------------------------------------------------

    def _ensure(self):
        """memctl's library, found once per process; the TMS_INIT_* variables
        applied. Configuration that must come first (hook_mode) is fixed
        from then on."""
        if self._lib is not None:
            return self._lib
        conf = os.environ.get("PYTORCH_CUDA_ALLOC_CONF", os.environ.get("PYTORCH_ALLOC_CONF", ""))
        if "expandable_segments:True" in conf:
            # As torch_memory_saver does: PyTorch would map that memory
            # itself, and no region could tag it.
            raise TorchMemorySaverError(
                _errno.EINVAL, "PYTORCH_CUDA_ALLOC_CONF has expandable_segments:True: PyTorch "
                "then maps memory itself and memctl can tag none of it; turn it off")
        lib = memctl._load(open_library=self._hook_mode == "torch")
        if _Process.retain is None:
            _Process.retain = _env_bool("TMS_RETAIN_CPU_BACKUP")
        if _env_bool("TMS_INIT_ENABLE"):
            stage = _env_bool("TMS_INIT_ENABLE_CPU_BACKUP")
            if stage:
                self._backend(None)
            rc = lib.memctl_set_default_tag_flags(_TAG_DEFAULT.encode(),
                                                  REGION_STAGE_CPU if stage else 0)
            if rc < 0:
                _fail(rc, "TMS_INIT_ENABLE")
        self._lib = lib
        return lib

    @staticmethod
    def _backend(cpu_backup_backend):
        """Refuse what memctl cannot honour: it stages to pinned host memory."""
        backend = cpu_backup_backend or os.environ.get("TMS_INIT_CPU_BACKUP_BACKEND") or "pinned"
        if backend not in _BACKENDS:
            raise ValueError("cpu_backup_backend=%r: expected one of %s" % (backend, _BACKENDS))
        if backend == "mmap":
            raise NotImplementedError(
                "cpu_backup_backend='mmap' (pageable host memory) is not supported by "
                "memctl, which stages to pinned host memory only (checked against "
                "MemAvailable and the memory cgroup before anything is released); "
                "use 'pinned' or leave it out")

    def _check_backup(self, enable_cpu_backup, enable_disk_backup, cpu_backup_backend):
        if enable_cpu_backup and enable_disk_backup:
            raise ValueError("enable_cpu_backup and enable_disk_backup are mutually exclusive")
        if enable_disk_backup:
            raise NotImplementedError(
                "enable_disk_backup is not supported by memctl, which keeps staged "
                "contents in pinned host memory; use enable_cpu_backup=True")
        if cpu_backup_backend is not None and not enable_cpu_backup:
            raise ValueError("cpu_backup_backend requires enable_cpu_backup=True")
        if enable_cpu_backup:
            self._backend(cpu_backup_backend)

    # ---- regions ------------------------------------------------------

    @contextlib.contextmanager
    def _tagged(self, tag, flags, what):
        lib = self._ensure()
        name = None if flags & REGION_UNTAGGED else _tag_name(tag, what)
        rc = lib.memctl_region_begin_flags(name, flags)
        if rc < 0:
            _fail(rc, what)  # EOVERFLOW: nested deeper than memctl's 16 levels
        try:
            yield
        finally:
            lib.memctl_region_end()

    def _pool(self, key):
        """A MemPool of the region's own (per tag, backup and device), so the
        caching allocator never hands one region's block to a tensor of
        another; None when torch is not in use or has no MemPool."""
        torch = sys.modules.get("torch")
        if torch is None or not hasattr(torch.cuda, "MemPool") or not torch.cuda.is_available():
            return None
        key = key + (torch.cuda.current_device(),)
        if key not in self._pools:
            if self._hook_mode == "torch":
                # No preload: memctl serves the pool's segments itself.
                alloc = torch.cuda.memory.CUDAPluggableAllocator(
                    memctl.library_path(), "memctl_pool_alloc", "memctl_pool_free")
                self._pools[key] = torch.cuda.MemPool(alloc.allocator())
            else:
                self._pools[key] = torch.cuda.MemPool()
        return self._pools[key]

    @contextlib.contextmanager
    def region(self, tag=_TAG_DEFAULT, enable_cpu_backup=False, enable_disk_backup=False,
               cpu_backup_backend=None):
        """Allocations made inside carry `tag`. With enable_cpu_backup=True they
        keep their contents across pause/resume (memctl stages them to pinned
        host memory); the others come back with undefined contents. The
        choice is per allocation, even for two regions of one tag."""
        self._check_backup(enable_cpu_backup, enable_disk_backup, cpu_backup_backend)
        flags = REGION_STAGE_CPU if enable_cpu_backup else 0
        what = "region(tag=%r)" % (tag,)
        self._ensure()
        with _routed_to(self._pool((tag, bool(enable_cpu_backup)))):
            with self._tagged(tag, flags, what):
                yield

    @contextlib.contextmanager
    def cuda_graph(self, cuda_graph, pool=None, stream=None, capture_error_mode="global",
                   tag=_TAG_DEFAULT, enable_cpu_backup=False, cpu_backup_backend=None):
        """torch.cuda.graph, with the graph's private memory carrying `tag`:
        pausing the tag releases it, and the graph replays correctly after
        resume."""
        self._check_backup(enable_cpu_backup, False, cpu_backup_backend)
        self._ensure()
        if not memctl.preloaded():
            raise NotImplementedError(
                "cuda_graph() needs libmemctl.so preloaded (hook_mode 'preload'): the "
                "graph's private pool allocates with cudaMalloc")
        import torch
        flags = REGION_STAGE_CPU if enable_cpu_backup else 0
        with torch.cuda.graph(cuda_graph, pool=pool, stream=stream,
                              capture_error_mode=capture_error_mode):
            with self._tagged(tag, flags, "cuda_graph(tag=%r)" % (tag,)):
                yield

    @contextlib.contextmanager
    def disable(self):
        """Allocations inside are not tagged, even within a region, and come
        from a MemPool of their own, apart from every tagged pool. That pool
        is kept for the life of the process, not dropped after the block as
        torch_memory_saver drops its own: PyTorch aborts the process when a
        MemPool is destroyed while a CUDA graph is being captured, and
        Python's collector may destroy a dropped pool at any moment (seen
        with torch 2.11 on an H200: a capture after disable() aborted)."""
        self._ensure()
        torch = sys.modules.get("torch")
        pool = None
        if torch is not None and hasattr(torch.cuda, "MemPool") and torch.cuda.is_available():
            key = ("", "untagged", torch.cuda.current_device())
            if key not in self._pools:
                self._pools[key] = torch.cuda.MemPool()
            pool = self._pools[key]
        with self._tagged(None, REGION_UNTAGGED, "disable()"):
            with _routed_to(pool):
                yield

    # ---- pause and resume ---------------------------------------------

    def pause(self, tag=None):
        """Release the device memory of `tag` (None: every tag). Allocations
        made with enable_cpu_backup are staged first; the rest is dropped.
        Pausing what is already paused, or a tag nothing carries, does
        nothing."""
        lib = self._ensure()
        rc = lib.memctl_pause(_tag_filter(tag, "pause"), 0)
        if rc < 0 and rc != -_errno.ENOENT:
            _fail(rc, "pause(tag=%r)" % (tag,))

    def resume(self, tag=None):
        """Map device memory back at the same addresses; staged contents are
        copied back. Without device memory (or the margin), raises
        TorchMemorySaverError (ENOMEM) with nothing changed: still paused,
        every staged byte kept; call again once memory is free."""
        lib = self._ensure()
        keep = _Process.retain or _Process.views > 0
        rc = lib.memctl_resume(_tag_filter(tag, "resume"), 0 if keep else RELEASE_HOST)
        if rc < 0 and rc != -_errno.ENOENT:
            _fail(rc, "resume(tag=%r)" % (tag,))

    # ---- settings -----------------------------------------------------

    @property
    def enabled(self):
        return True

    @property
    def hook_mode(self):
        return self._hook_mode

    @hook_mode.setter
    def hook_mode(self, mode):
        if mode not in _HOOK_MODES:
            raise ValueError("hook_mode %r: memctl answers %s" % (mode, " and ".join(_HOOK_MODES)))
        if self._lib is not None and mode != self._hook_mode:
            raise RuntimeError("hook_mode must be set before the first region, pause or resume")
        self._hook_mode = mode

    @property
    def memory_margin_bytes(self):
        return _Process.margin

    @memory_margin_bytes.setter
    def memory_margin_bytes(self, value):
        """Device memory that tagged allocations and resumes must leave free."""
        self._ensure()
        memctl.set_margin(int(value))
        _Process.margin = int(value)

    @property
    def retain_cpu_backup(self):
        self._ensure()
        return _Process.retain

    @retain_cpu_backup.setter
    def retain_cpu_backup(self, value):
        """Keep the pinned host buffers across resume (the next pause then
        copies into them at once) or give them back at each resume. Consulted
        at resume; buffers of active allocations go at the next resume that
        does not retain them."""
        self._ensure()
        _Process.retain = bool(value)

    def set_disk_backup_dir(self, path):
        raise NotImplementedError("disk backup is not supported by memctl (see enable_disk_backup)")

    # ---- staged contents ----------------------------------------------

    def _backup_address(self, ptr, nbytes):
        """Address of the staged copy of [ptr, ptr + nbytes) in pinned host
        memory; None while the allocation is active."""
        lib = self._ensure()
        host = ctypes.c_void_p()
        rc = lib.memctl_host_copy(ptr, nbytes, ctypes.byref(host))
        if rc == -_errno.EBUSY:
            return None
        if rc < 0:
            _fail(rc, "get_cpu_backup")
        return host.value

    def _backup_view(self, ptr, nbytes):
        """A ctypes array over the staged copy, tracked so that no resume gives
        its memory back while it lives; None while active."""
        addr = self._backup_address(ptr, nbytes)
        if addr is None:
            return None
        view = (ctypes.c_uint8 * nbytes).from_address(addr)
        _Process.views += 1
        weakref.finalize(view, _view_gone)
        return view

    def _backup_into(self, ptr, nbytes, dst):
        """Copy the staged bytes to address `dst`; False while active."""
        rc = self._ensure().memctl_host_read(ptr, nbytes, dst)
        if rc == -_errno.EBUSY:
            return False
        if rc < 0:
            _fail(rc, "get_cpu_backup")
        return True

    def get_cpu_backup(self, x, zero_copy=False):
        """The staged contents of a paused CUDA tensor, as a CPU tensor of its
        dtype and shape; None while it is active (its contents are on the
        device). With zero_copy the tensor shares the pinned host buffer:
        it shows the contents as of the last pause, and no resume gives that
        buffer back while the tensor lives."""
        import torch
        if not x.is_cuda:
            raise ValueError("get_cpu_backup: %s is not a CUDA tensor" % (x.device,))
        if not x.is_contiguous():
            raise ValueError("get_cpu_backup: the tensor must be contiguous")
        nbytes = x.numel() * x.element_size()
        if nbytes == 0:
            return torch.empty_like(x, device="cpu")
        if zero_copy:
            view = self._backup_view(x.data_ptr(), nbytes)
            if view is None:
                return None
            raw = torch.frombuffer(view, dtype=torch.uint8)
        else:
            raw = torch.empty(nbytes, dtype=torch.uint8)
            if not self._backup_into(x.data_ptr(), nbytes, raw.data_ptr()):
                return None
        return raw.view(x.dtype).view(x.shape)


def _view_gone():
    _Process.views -= 1


@contextlib.contextmanager
def configure_subprocess():
    """Child processes started inside start with libmemctl.so preloaded
    (and TMS_INIT_ENABLE / TMS_INIT_ENABLE_CPU_BACKUP carried over as
    MEMCTL_DEFAULT_TAG=default / MEMCTL_DEFAULT_STAGE=1, for children that
    allocate before they import this module). The environment is restored
    afterwards."""
    env = memctl.preload_env()
    if _env_bool("TMS_INIT_ENABLE"):
        env["MEMCTL_DEFAULT_TAG"] = _TAG_DEFAULT
        if _env_bool("TMS_INIT_ENABLE_CPU_BACKUP"):
            env["MEMCTL_DEFAULT_STAGE"] = "1"
    changed = {k: os.environ.get(k) for k in env if os.environ.get(k) != env[k]}
    os.environ.update({k: env[k] for k in changed})
    try:
        yield
    finally:
        for key, old in changed.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


torch_memory_saver = TorchMemorySaver()
memory_saver = torch_memory_saver  # the name of early torch_memory_saver releases
