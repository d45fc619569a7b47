# SPDX-License-Identifier: Apache-2.0
"""memctl for Python: tag, pause and resume GPU memory in this process.

The process must run with libmemctl.so preloaded::

    LD_PRELOAD=/usr/local/lib/libmemctl.so python serve.py

Then::

    import memctl
    with memctl.region("weights"):
        model = build_model().cuda()        # these allocations are tagged
    memctl.pause("weights", stage=True)     # device memory released, contents on the host
    memctl.resume("weights")                # same addresses, same bytes

With PyTorch, ``region`` also routes the tag's allocations into a
``torch.cuda.MemPool`` of its own, so the caching allocator never hands a
block of one tag to a tensor of another. Where PyTorch has no MemPool
(``PYTORCH_CUDA_ALLOC_CONF=backend:cudaMallocAsync``) it tags without one,
and says so once on stderr: that backend keeps no cache of its own, and
memctl serves each tagged allocation itself, so no block is shared between
tags. With ``expandable_segments:True`` (``PYTORCH_CUDA_ALLOC_CONF`` or
``PYTORCH_ALLOC_CONF``) PyTorch's MemPools do not map memory themselves
(recent versions refuse to), so ``region`` turns expandable segments off
while the outermost region is open and on again after it: the tag's
tensors then come from its pool, the rest of the program keeps its
expandable segments (under ``MEMCTL_DEFAULT_TAG`` every segment PyTorch
maps is tagged as it is). Standard library only; torch is used only when
the program has already imported it.

Contents of memory paused without ``stage=True`` are undefined after resume.

Tags are given as a string ("weights,kv_cache"), a list of names, or
"all" (``None``, the default, also means every tag). An empty or blank list
(``""``, ``" "``, ``","``, ``[]``) raises ``MemctlError`` (EINVAL): it is
never read as "every tag".
"""
import contextlib
import ctypes
import errno as _errno
import os
import sys

__all__ = ["MemctlError", "available", "preloaded", "region", "pause", "resume", "prepare",
           "release_host", "stat", "set_margin", "library_path", "preload_env"]

__version__ = "0.1.0"

STAGE_CPU = 1
RELEASE_HOST = 2
GATE = 4
# memctl_region_begin_flags
REGION_STAGE_CPU = 1
REGION_UNTAGGED = 2


class MemctlError(OSError):
    """A memctl call failed; ``errno`` holds the error, ``str()`` the library's message."""


class _Stat(ctypes.Structure):
    # staged_bytes: host bytes holding staged contents, as in status and the C API.
    _fields_ = [("allocations", ctypes.c_uint64), ("active_bytes", ctypes.c_uint64),
                ("paused_bytes", ctypes.c_uint64), ("staged_bytes", ctypes.c_uint64)]


_lib = None
_pools = {}
_said = set()
_open_regions = 0  # with pools and expandable segments: the outermost toggles them


def _say_once(key, msg):
    if key not in _said:
        _said.add(key)
        sys.stderr.write("memctl: %s\n" % msg)


def _declare(lib):
    for name in ("memctl_region_begin", "memctl_set_default_tag", "memctl_prepare",
                 "memctl_release_host"):
        getattr(lib, name).argtypes = [ctypes.c_char_p]
    lib.memctl_region_begin_flags.argtypes = [ctypes.c_char_p, ctypes.c_uint]
    lib.memctl_set_default_tag_flags.argtypes = [ctypes.c_char_p, ctypes.c_uint]
    lib.memctl_region_end.argtypes = []
    lib.memctl_pause.argtypes = lib.memctl_resume.argtypes = [ctypes.c_char_p, ctypes.c_uint]
    lib.memctl_stat.argtypes = [ctypes.c_char_p, ctypes.POINTER(_Stat)]
    lib.memctl_set_margin.argtypes = [ctypes.c_uint64]
    lib.memctl_host_copy.argtypes = [ctypes.c_void_p, ctypes.c_size_t,
                                     ctypes.POINTER(ctypes.c_void_p)]
    lib.memctl_host_read.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
    lib.memctl_strerror.argtypes = [ctypes.c_int]
    lib.memctl_strerror.restype = ctypes.c_char_p


def _load(open_library=False):
    """The library's functions: from the process's global scope, where
    LD_PRELOAD put it; with ``open_library``, loaded from library_path()
    when it is not preloaded (for PyTorch's pluggable allocator, which
    needs no preload)."""
    global _lib
    if _lib is not None:
        return _lib
    lib = ctypes.CDLL(None)  # the process's global scope: preloaded objects are there
    if not hasattr(lib, "memctl_pause"):
        path = library_path() if open_library else None
        if path is None:
            raise MemctlError(_errno.ENOSYS,
                              "libmemctl.so is not preloaded in this process: start it with "
                              "LD_PRELOAD=%s (memctl.preload_env() builds that environment)"
                              % (library_path() or "/path/to/libmemctl.so"))
        lib = ctypes.CDLL(path)
    _declare(lib)
    _lib = lib
    return lib


def preloaded():
    """True when libmemctl.so is in the process's global scope (LD_PRELOAD)."""
    return hasattr(ctypes.CDLL(None), "memctl_pause")


def available():
    """True when libmemctl.so is preloaded in this process (or was loaded by
    memctl.tms for PyTorch's pluggable allocator)."""
    return _lib is not None or preloaded()


def _check(rc, what):
    if rc < 0:
        msg = _load().memctl_strerror(rc).decode("utf-8", "replace")
        raise MemctlError(-rc, "%s: %s" % (what, msg))
    return rc


def _tags(tags):
    """The C API's tag list: None stays NULL (every tag); a list is joined, so an
    empty one becomes "" and the library refuses it, as it refuses "" itself."""
    if tags is None:
        return None
    if isinstance(tags, (list, tuple, set, frozenset)):
        tags = ",".join(tags)
    if not isinstance(tags, str):
        raise TypeError("tags must be a string, a list of names, or None")
    return tags.encode()


def _no_pool(why):
    _say_once("pool", "region() tags without a torch.cuda.MemPool: %s; memctl serves each "
              "tagged allocation itself, so no block is shared between tags" % why)
    return None


def _torch_pool(tag, stage=False):
    """A MemPool for (tag, stage, current device), when torch is already in
    use and its allocator has them; else None (said once)."""
    torch = sys.modules.get("torch")
    if torch is None or not hasattr(torch.cuda, "MemPool") or not torch.cuda.is_available():
        return None
    backend = getattr(torch.cuda, "get_allocator_backend", lambda: "native")()
    if backend != "native":
        return _no_pool("PyTorch's %s allocator has none" % backend)
    key = (tag, stage, torch.cuda.current_device())
    if key not in _pools:
        try:
            _pools[key] = torch.cuda.MemPool()
        except (RuntimeError, TypeError, NotImplementedError) as e:
            return _no_pool("this PyTorch refused one (%s)" % e)
    return _pools[key]


def _expandable_segments():
    conf = os.environ.get("PYTORCH_CUDA_ALLOC_CONF") or os.environ.get("PYTORCH_ALLOC_CONF") or ""
    return "expandable_segments:True" in conf.replace(" ", "")


def _set_expandable(torch, on):
    try:
        torch.cuda.memory._set_allocator_settings("expandable_segments:%s" % on)
    except (AttributeError, RuntimeError) as e:
        _say_once("expandable", "cannot switch expandable segments %s around a region (%s)"
                  % ("on" if on else "off", e))


def _pool_scope(stack, torch, mem_pool):
    """Enter mem_pool on stack; expandable segments off meanwhile (outermost region)."""
    global _open_regions
    if _expandable_segments():
        if _open_regions == 0:
            _set_expandable(torch, False)
        _open_regions += 1

        def close():
            global _open_regions
            _open_regions -= 1
            if _open_regions == 0:
                _set_expandable(torch, True)
        stack.callback(close)
    try:
        stack.enter_context(torch.cuda.use_mem_pool(mem_pool))
    except (RuntimeError, NotImplementedError) as e:
        _no_pool("this PyTorch would not use one (%s)" % e)


@contextlib.contextmanager
def region(tag, pool=True, stage=False):
    """Tag the cudaMalloc calls of this thread inside the block.

    With torch imported and ``pool`` true, the block's tensors come from a
    MemPool of this tag, so the caching allocator keeps the tag's blocks to
    itself (without it, a freed weights block can be reused by any tensor,
    which pausing "weights" would then take away).

    With ``stage=True`` the block's allocations keep their contents: every
    pause stages them, ``stage=True`` or not (and they get a pool of their
    own, apart from the tag's other blocks).
    """
    lib = _load()
    _check(lib.memctl_region_begin_flags(tag.encode(), REGION_STAGE_CPU if stage else 0),
           "region(%r)" % tag)
    try:
        with contextlib.ExitStack() as stack:
            mem_pool = _torch_pool(tag, stage) if pool else None
            if mem_pool is not None:
                _pool_scope(stack, sys.modules["torch"], mem_pool)
            yield
    finally:
        lib.memctl_region_end()


def pause(tags=None, stage=False, gate=False):
    """Release the device memory of ``tags`` ("weights,kv_cache", a list, "all" or None).

    With ``stage=True`` the contents are copied to pinned host memory first
    and come back on resume. GPU work already submitted is waited for first.

    With ``gate=True`` every thread of this process that submits GPU work
    (kernels, graphs, copies, memsets) waits until the memory is resumed,
    then proceeds. The default is ``False``: in-process callers (a trainer
    that pauses its own inference engine and keeps computing) keep running,
    and must themselves keep their GPU work off the paused memory. With
    the gate, this thread must not submit GPU work before it resumes (it
    would wait for a resume only another thread or ``memctl resume`` can
    send); the ``memctl`` CLI gates by default.
    """
    flags = (STAGE_CPU if stage else 0) | (GATE if gate else 0)
    _check(_load().memctl_pause(_tags(tags), flags), "pause")


def resume(tags=None, release_host=False):
    """Map memory back at the same addresses; staged contents are copied back.

    GPU work waiting at the gate of a ``gate=True`` pause proceeds once none
    of the memory that pause released is paused any more."""
    _check(_load().memctl_resume(_tags(tags), RELEASE_HOST if release_host else 0), "resume")


def prepare(tags=None):
    """Obtain and pin host staging buffers now, so the first staged pause runs at copy speed."""
    _check(_load().memctl_prepare(_tags(tags)), "prepare")


def release_host(tags=None):
    """Give back kept host buffers (never those that hold staged contents)."""
    _check(_load().memctl_release_host(_tags(tags)), "release_host")


def set_margin(nbytes):
    """Device memory that tagged allocations and resumes must leave free (0: none)."""
    if not 0 <= nbytes < 1 << 64:
        raise ValueError("the margin is a number of bytes, not %r" % (nbytes,))
    _check(_load().memctl_set_margin(nbytes), "set_margin")


def stat(tags=None):
    """Figures of the allocations carrying ``tags``, as a dict."""
    s = _Stat()
    _check(_load().memctl_stat(_tags(tags), ctypes.byref(s)), "stat")
    return {name: getattr(s, name) for name, _ in _Stat._fields_}


def library_path():
    """Path of libmemctl.so: loaded in this process, $MEMCTL_LIBRARY, or installed."""
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                if line.rstrip().endswith("/libmemctl.so"):
                    return line.split()[-1]
    except OSError:
        pass
    here = os.path.dirname(os.path.abspath(__file__))
    for cand in (os.environ.get("MEMCTL_LIBRARY"),
                 os.path.join(here, "..", "..", "build", "libmemctl.so"),
                 # installed: PREFIX/lib/python*/*-packages/memctl -> PREFIX/lib
                 os.path.join(here, "..", "..", "..", "libmemctl.so"),
                 "/usr/local/lib/libmemctl.so", "/usr/lib/libmemctl.so"):
        if cand and os.path.exists(cand):
            return os.path.realpath(cand)
    return None


def preload_env(env=None, default_tag=None, group=None):
    """A copy of ``env`` (default os.environ) for starting a child with memctl preloaded."""
    env = dict(os.environ if env is None else env)
    path = library_path()
    if path is None:
        raise MemctlError(_errno.ENOENT, "libmemctl.so not found: set MEMCTL_LIBRARY")
    old = env.get("LD_PRELOAD", "")
    if path not in old.split(":"):
        env["LD_PRELOAD"] = path + (":" + old if old else "")
    if default_tag:
        env["MEMCTL_DEFAULT_TAG"] = default_tag
    if group:
        env["MEMCTL_GROUP"] = group
    return env
