# SPDX-License-Identifier: Apache-2.0
"""torch_memory_saver's API on memctl (memctl.tms and the compatibility
package), on the simulated driver (make test): run under
LD_PRELOAD=libmemctl.so with the simulated libcudart.so.13 on the path.

There is no torch here: allocations are made with cudaMalloc through
ctypes, exactly what PyTorch's caching allocator does inside a region, and
the tests check what memctl did with them (tags, staging, bytes, host
buffers). The torch-only parts (MemPools, torch.cuda.graph, the CPU tensor
of get_cpu_backup) are thin and run in test/gpu/tms_workload.py."""
import ctypes
import errno
import gc
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..", "..")
PYPATH = [os.path.join(ROOT, "python"), os.path.join(ROOT, "python", "compat")]
sys.path[:0] = PYPATH
import memctl  # noqa: E402
import memctl.tms  # noqa: E402
import torch_memory_saver as tms_pkg  # noqa: E402
from torch_memory_saver import configure_subprocess, torch_memory_saver  # noqa: E402

MiB = 1 << 20
tms = torch_memory_saver


class Cuda:
    """cudaMalloc as the application binds it (memctl's), the simulated
    runtime's cudaMemcpy, and the simulated driver's own counters."""

    def __init__(self):
        self.rt = ctypes.CDLL("libcudart.so.13", mode=ctypes.RTLD_GLOBAL)
        self.glob = ctypes.CDLL(None)
        self.glob.cudaMalloc.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_size_t]
        self.glob.cudaFree.argtypes = [ctypes.c_void_p]
        self.rt.cudaMemcpy.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t,
                                       ctypes.c_int]
        self.fake = ctypes.CDLL("libcuda.so.1")
        self.fake.fakecuda_set_fail.argtypes = [ctypes.c_char_p]
        for name in ("fakecuda_used", "fakecuda_capacity"):
            getattr(self.fake, name).restype = ctypes.c_uint64
        self.fake.fakecuda_live_host_registrations.restype = ctypes.c_long
        self.fake.fakecuda_tenant_take.argtypes = [ctypes.c_uint64]
        self.fake.fakecuda_tenant_give.argtypes = [ctypes.c_uint64]

    def malloc(self, n):
        p = ctypes.c_void_p()
        rc = self.glob.cudaMalloc(ctypes.byref(p), n)
        if rc != 0:
            raise MemoryError("cudaMalloc(%d): error %d" % (n, rc))
        return p.value

    def free(self, p):
        assert self.glob.cudaFree(p) == 0

    def put(self, dev, data):
        buf = ctypes.create_string_buffer(data, len(data))
        assert self.rt.cudaMemcpy(dev, buf, len(data), 1) == 0

    def get(self, dev, n):
        buf = ctypes.create_string_buffer(n)
        assert self.rt.cudaMemcpy(buf, dev, n, 2) == 0
        return buf.raw

    def free_bytes(self):
        return self.fake.fakecuda_capacity() - self.fake.fakecuda_used()

    def pinned(self):
        return self.fake.fakecuda_live_host_registrations()


def released(addr):
    """Touching released memory faults on the simulated driver: try in a child."""
    pid = os.fork()
    if pid == 0:
        ctypes.string_at(addr, 1)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    return os.WIFSIGNALED(status)


def child(code, env_extra=None, preload=True):
    """Run `code` in a fresh Python with the packages on its path; its
    stdout's last line, parsed as JSON."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(PYPATH)
    if not preload:
        env.pop("LD_PRELOAD", None)
    env.update(env_extra or {})
    prelude = textwrap.dedent("""
        import ctypes, json, os, sys
        sys.path[:0] = %r
        sys.path.insert(0, %r)
        from test_tms import Cuda, released
        """ % (PYPATH, HERE))
    out = subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code)], env=env,
                         capture_output=True, text=True, timeout=120)
    if out.returncode != 0:
        raise AssertionError("child failed (%d): %s%s" % (out.returncode, out.stdout,
                                                           out.stderr))
    return json.loads(out.stdout.strip().splitlines()[-1])


class Base(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.cuda = Cuda()

    def setUp(self):
        self.live = []

    def tearDown(self):
        tms.resume()
        for p in self.live:
            self.cuda.free(p)
        tms.retain_cpu_backup = False
        tms.memory_margin_bytes = 0
        self.cuda.fake.fakecuda_set_fail(None)
        gc.collect()
        self.assertEqual(memctl.tms._Process.views, 0)

    def alloc(self, n, data=None):
        p = self.cuda.malloc(n)
        self.live.append(p)
        if data is not None:
            self.cuda.put(p, data)
        return p

    def filled(self, n):
        data = os.urandom(n)
        return self.alloc(n, data), data


class Api(Base):
    def test_the_compatibility_package_is_memctl_and_one_singleton(self):
        self.assertIs(tms, memctl.tms.torch_memory_saver)
        self.assertIs(tms_pkg.memory_saver, tms)
        self.assertIs(configure_subprocess, memctl.tms.configure_subprocess)
        self.assertIsInstance(tms, tms_pkg.TorchMemorySaver)
        self.assertTrue(tms_pkg.__memctl_compat__)
        self.assertTrue(tms.enabled)
        with self.assertRaises(NotImplementedError):
            tms_pkg.register_hook_mode("custom", object)

    def test_region_tags_allocations_default_tag_is_default(self):
        with tms.region():
            self.alloc(MiB)
        with tms.region(tag="tms_weights"):
            self.alloc(3 * MiB)
        self.alloc(MiB)  # outside any region: untagged
        self.assertEqual(memctl.stat("default")["allocations"], 1)
        self.assertEqual(memctl.stat("tms_weights")["active_bytes"], 4 * MiB)
        self.assertEqual(memctl.stat("all")["allocations"], 2)

    def test_cpu_backup_is_per_allocation_even_within_one_tag(self):
        with tms.region(tag="tms_shared", enable_cpu_backup=True):
            keep, data = self.filled(3 * MiB + 5)
        with tms.region(tag="tms_shared"):
            drop, _ = self.filled(2 * MiB)
        used = self.cuda.fake.fakecuda_used()
        tms.pause("tms_shared")
        self.assertEqual(used - self.cuda.fake.fakecuda_used(), 4 * MiB + 2 * MiB)
        st = memctl.stat("tms_shared")
        self.assertEqual(st["active_bytes"], 0)
        self.assertEqual(st["staged_bytes"], 3 * MiB + 4096)
        self.assertTrue(released(keep) and released(drop))
        tms.resume("tms_shared")
        self.assertEqual(self.cuda.get(keep, len(data)), data)

    def test_nested_regions_innermost_tag_and_backup_apply(self):
        with tms.region(tag="tms_outer", enable_cpu_backup=True):
            a, adata = self.filled(MiB)
            with tms.region(tag="tms_inner"):
                self.alloc(MiB)
                with tms.region(tag="tms_outer"):  # same tag, no backup
                    self.alloc(MiB)
            b, bdata = self.filled(MiB)
        self.assertEqual(memctl.stat("tms_outer")["allocations"], 3)
        self.assertEqual(memctl.stat("tms_inner")["allocations"], 1)
        tms.pause()
        self.assertEqual(memctl.stat("tms_outer")["staged_bytes"], 2 * MiB)
        self.assertEqual(memctl.stat("tms_inner")["staged_bytes"], 0)
        tms.resume()
        self.assertEqual(self.cuda.get(a, MiB), adata)
        self.assertEqual(self.cuda.get(b, MiB), bdata)

    def test_regions_end_on_exceptions(self):
        with self.assertRaises(KeyError):
            with tms.region(tag="tms_boom"):
                raise KeyError
        self.alloc(MiB)  # after the region ended: untagged
        with self.assertRaises(memctl.MemctlError) as cm:
            memctl.stat("tms_boom")
        self.assertEqual(cm.exception.errno, errno.ENOENT)

    def test_disable_leaves_allocations_untagged_even_in_a_region(self):
        with tms.region(tag="tms_dis"):
            with tms.disable():
                untagged = self.alloc(MiB)
                with tms.region(tag="tms_again"):
                    self.alloc(MiB)
            self.alloc(MiB)
        self.assertEqual(memctl.stat("tms_dis")["allocations"], 1)
        self.assertEqual(memctl.stat("tms_again")["allocations"], 1)
        tms.pause()
        self.assertFalse(released(untagged))

    def test_pause_and_resume_one_tag_or_every_tag(self):
        with tms.region(tag="tms_a", enable_cpu_backup=True):
            a, adata = self.filled(MiB)
        with tms.region(tag="tms_b", enable_cpu_backup=True):
            b, bdata = self.filled(MiB)
        tms.pause("tms_a")
        self.assertTrue(released(a))
        self.assertFalse(released(b))
        tms.resume("tms_a")
        tms.pause(None)
        self.assertTrue(released(a) and released(b))
        tms.resume("")  # torch_memory_saver reads "" as every tag too
        self.assertEqual(self.cuda.get(a, MiB) + self.cuda.get(b, MiB), adata + bdata)

    def test_pause_and_resume_twice_or_of_nothing_do_nothing(self):
        # torch_memory_saver exits the process on the first two; memctl
        # leaves paused memory paused and active memory active.
        with tms.region(tag="tms_twice", enable_cpu_backup=True):
            p, data = self.filled(MiB)
        tms.pause("tms_twice")
        tms.pause("tms_twice")
        tms.resume("tms_twice")
        tms.resume("tms_twice")
        tms.pause("tms_nothing_carries_this")
        tms.resume("tms_nothing_carries_this")
        self.assertEqual(self.cuda.get(p, MiB), data)

    def test_tags_memctl_cannot_spell_are_refused(self):
        for tag in ("bad tag", "a,b", "all", "", "x" * 64):
            with self.assertRaises(ValueError, msg=repr(tag)):
                with tms.region(tag=tag):
                    pass
        with self.assertRaises(ValueError):
            tms.pause("a,b")  # one tag to torch_memory_saver, two to memctl

    def test_backup_options_memctl_cannot_honour_are_refused_clearly(self):
        with tms.region(tag="tms_pinned", enable_cpu_backup=True, cpu_backup_backend="pinned"):
            self.alloc(MiB)
        cases = [
            (dict(enable_disk_backup=True), NotImplementedError, "pinned host memory"),
            (dict(enable_cpu_backup=True, enable_disk_backup=True), ValueError, "exclusive"),
            (dict(enable_cpu_backup=True, cpu_backup_backend="mmap"), NotImplementedError,
             "mmap"),
            (dict(cpu_backup_backend="pinned"), ValueError, "requires enable_cpu_backup"),
            (dict(enable_cpu_backup=True, cpu_backup_backend="disk"), ValueError, "expected"),
        ]
        for kwargs, exc, text in cases:
            with self.assertRaises(exc, msg=repr(kwargs)) as cm:
                with tms.region(tag="tms_refused", **kwargs):
                    self.fail("entered")
            self.assertIn(text, str(cm.exception))
        with self.assertRaises(NotImplementedError):
            tms.set_disk_backup_dir("/tmp")
        with self.assertRaises(memctl.MemctlError):
            memctl.stat("tms_refused")

    def test_hook_mode_takes_preload_and_torch_before_first_use(self):
        self.assertEqual(tms.hook_mode, "preload")
        tms.hook_mode = "preload"
        with self.assertRaises(ValueError):
            tms.hook_mode = "custom"
        with self.assertRaises(RuntimeError):
            tms.hook_mode = "torch"  # the singleton is in use by now
        fresh = memctl.tms.TorchMemorySaver()
        fresh.hook_mode = "torch"
        self.assertEqual(fresh.hook_mode, "torch")


class Failures(Base):
    def test_a_resume_without_device_memory_raises_and_loses_nothing(self):
        with tms.region(tag="tms_oom", enable_cpu_backup=True):
            p, data = self.filled(64 * MiB)
        tms.pause("tms_oom")
        stolen = self.cuda.free_bytes() - 32 * MiB
        self.assertEqual(self.cuda.fake.fakecuda_tenant_take(stolen), 0)
        try:
            with self.assertRaises(memctl.tms.TorchMemorySaverError) as cm:
                tms.resume("tms_oom")
        finally:
            self.cuda.fake.fakecuda_tenant_give(stolen)
        e = cm.exception
        self.assertEqual(e.errno, errno.ENOMEM)
        self.assertIsInstance(e, RuntimeError)
        self.assertIn("resume(tag='tms_oom')", str(e))
        self.assertIn("needs 67108864 bytes", str(e))
        st = memctl.stat("tms_oom")
        self.assertEqual((st["active_bytes"], st["staged_bytes"]), (0, 64 * MiB))
        tms.resume("tms_oom")
        self.assertEqual(self.cuda.get(p, len(data)), data)

    def test_a_pause_without_host_memory_raises_and_releases_nothing(self):
        with tms.region(tag="tms_nohost", enable_cpu_backup=True):
            p, data = self.filled(4 * MiB)
        with tms.region(tag="tms_nohost"):
            q = self.alloc(MiB)
        self.cuda.fake.fakecuda_set_fail(b"cuMemHostRegister:1")
        with self.assertRaises(memctl.tms.TorchMemorySaverError) as cm:
            tms.pause("tms_nohost")
        self.assertEqual(cm.exception.errno, errno.ENOMEM)
        self.assertIn("nothing released", str(cm.exception))
        self.assertFalse(released(p) or released(q))
        tms.pause("tms_nohost")
        tms.resume("tms_nohost")
        self.assertEqual(self.cuda.get(p, len(data)), data)

    def test_memory_margin_bytes_guards_allocations_and_resumes(self):
        with tms.region(tag="tms_margin", enable_cpu_backup=True):
            p, data = self.filled(16 * MiB)
        tms.memory_margin_bytes = self.cuda.free_bytes() - 8 * MiB
        self.assertEqual(tms.memory_margin_bytes, self.cuda.free_bytes() - 8 * MiB)
        with tms.region(tag="tms_margin2"):
            with self.assertRaises(MemoryError):  # cudaMalloc: out of memory
                self.alloc(16 * MiB)
        tms.memory_margin_bytes = 0
        tms.pause("tms_margin")
        tms.memory_margin_bytes = self.cuda.free_bytes() - 8 * MiB
        with self.assertRaises(memctl.tms.TorchMemorySaverError) as cm:
            tms.resume("tms_margin")
        self.assertEqual(cm.exception.errno, errno.ENOMEM)
        self.assertIn("margin", str(cm.exception))
        self.assertTrue(released(p))
        tms.memory_margin_bytes = self.cuda.free_bytes() - 16 * MiB
        tms.resume("tms_margin")
        self.assertEqual(self.cuda.get(p, len(data)), data)
        with self.assertRaises(ValueError):
            tms.memory_margin_bytes = -1


class Backups(Base):
    def test_retain_cpu_backup_keeps_host_buffers_across_resume_or_gives_them_back(self):
        with tms.region(tag="tms_retain", enable_cpu_backup=True):
            p, data = self.filled(2 * MiB)
        self.assertFalse(tms.retain_cpu_backup)
        tms.pause("tms_retain")
        self.assertEqual(self.cuda.pinned(), 1)
        tms.resume("tms_retain")
        self.assertEqual(self.cuda.pinned(), 0)  # given back, as torch_memory_saver does
        tms.retain_cpu_backup = True
        tms.pause("tms_retain")
        tms.resume("tms_retain")
        self.assertEqual(self.cuda.pinned(), 1)  # kept for the next pause
        tms.retain_cpu_backup = False
        self.assertEqual(self.cuda.pinned(), 1)  # not eagerly
        tms.resume("tms_retain")  # the next resume that does not retain
        self.assertEqual(self.cuda.pinned(), 0)
        self.assertEqual(self.cuda.get(p, len(data)), data)

    def test_the_backup_of_a_paused_tensor_is_read_while_paused(self):
        with tms.region(tag="tms_get", enable_cpu_backup=True):
            p, data = self.filled(3 * MiB)
        with tms.region(tag="tms_get_nobackup"):
            q = self.alloc(MiB)
        self.assertIsNone(tms._backup_address(p, 16))  # active: None
        tms.pause()
        out = ctypes.create_string_buffer(MiB)
        # A tensor inside the block: offset and length of its own.
        self.assertTrue(tms._backup_into(p + MiB, MiB, ctypes.addressof(out)))
        self.assertEqual(out.raw, data[MiB:2 * MiB])
        addr = tms._backup_address(p + 5, 100)
        self.assertEqual(ctypes.string_at(addr, 100), data[5:105])
        for ptr, n, err in ((q, 1, errno.ENODATA), (p + 1, 3 * MiB, errno.EINVAL),
                            (0x1000, 1, errno.ENOENT)):
            with self.assertRaises(memctl.tms.TorchMemorySaverError) as cm:
                tms._backup_address(ptr, n)
            self.assertEqual(cm.exception.errno, err)
        self.assertIn("without staging", str(_raised(tms._backup_into, q, 1,
                                                     ctypes.addressof(out))))
        tms.resume()
        self.assertFalse(tms._backup_into(p, 1, ctypes.addressof(out)))

    def test_a_zero_copy_backup_stays_readable_until_dropped(self):
        with tms.region(tag="tms_view", enable_cpu_backup=True):
            p, data = self.filled(2 * MiB)
        tms.pause("tms_view")
        view = tms._backup_view(p, 2 * MiB)
        self.assertEqual(bytes(view), data)
        # retain_cpu_backup is off, but the view keeps its buffer mapped.
        tms.resume("tms_view")
        self.assertEqual(self.cuda.pinned(), 1)
        self.assertEqual(bytes(view), data)
        del view
        gc.collect()
        tms.pause("tms_view")
        tms.resume("tms_view")
        self.assertEqual(self.cuda.pinned(), 0)
        self.assertEqual(self.cuda.get(p, len(data)), data)


def _raised(fn, *args):
    try:
        fn(*args)
    except Exception as e:  # noqa: BLE001
        return e
    raise AssertionError("%s did not raise" % fn)


class CachedBlocks(Base):
    """PyTorch's caching allocator reuses freed blocks of the pool it routes
    to; a block keeps the tag of the region that made its segment. With
    nested regions or disable() inside a region, each allocation must
    still come from the innermost one's pool (test/python/fake_torch.py
    models the allocator's choice, in a child with the stand-in torch)."""

    PRELUDE = """
        import fake_torch
        torch = fake_torch.install(Cuda(), lifo=%r, route_calls=%r)
        alloc, free = torch.cuda.caching_allocator_alloc, torch.cuda.caching_allocator_delete
        from torch_memory_saver import torch_memory_saver as tms
        import memctl
        n = 1 << 20
        def balanced():
            # every pool back to the one reference its MemPool holds, none open
            return (torch.allocator.routes == [] and
                    all(u == 1 for u in torch.allocator.uses.values()))
        """

    def run_child(self, code, lifo=False, route_calls=True):
        return child(textwrap.dedent(self.PRELUDE % (lifo, route_calls)) + textwrap.dedent(code))

    DISABLE = """
        with tms.region(tag="weights", enable_cpu_backup=True):
            scratch = alloc(n)     # a loader's temporary, freed: cached in
            free(scratch)          # the region's pool, tagged "weights"
            with tms.disable():
                lut = alloc(n)     # must not get that block
        tms.pause()
        gone = released(lut)
        tms.resume()
        print(json.dumps({"gone": gone, "balanced": balanced()}))
        """

    def test_a_tensor_under_disable_never_takes_a_cached_block_of_the_region(self):
        for lifo in (False, True):
            got = self.run_child(self.DISABLE, lifo=lifo)
            self.assertEqual(got, {"gone": False, "balanced": True}, "lifo=%s" % lifo)

    def test_a_region_nested_in_another_never_shares_its_cached_blocks(self):
        got = self.run_child("""
            with tms.region(tag="weights", enable_cpu_backup=True):
                with tms.region(tag="kv_cache"):
                    free(alloc(n))         # cached in the KV cache's pool
                w = alloc(n)               # a weight: must not get that block
                data = os.urandom(n)
                Cuda().put(w, data)
            tms.pause("kv_cache")
            gone = released(w)
            tms.pause()
            tms.resume()
            print(json.dumps({"gone": gone, "same": Cuda().get(w, n) == data,
                              "balanced": balanced()}))
            """)
        self.assertEqual(got, {"gone": False, "same": True, "balanced": True})

    def test_a_region_nests_in_itself(self):
        # PyTorch refuses to open a MemPool twice; the region's pool is
        # closed while the inner one (the same pool) is open.
        got = self.run_child("""
            with tms.region(tag="weights", enable_cpu_backup=True):
                with tms.region(tag="weights", enable_cpu_backup=True):
                    alloc(n)
                alloc(n)
            print(json.dumps({"weights": memctl.stat("weights")["allocations"],
                              "balanced": balanced()}))
            """)
        self.assertEqual(got, {"weights": 2, "balanced": True})

    def test_a_torch_without_the_routing_calls_gets_use_mem_pool(self):
        got = self.run_child("""
            with tms.region(tag="weights", enable_cpu_backup=True):
                w = alloc(n)
            with tms.disable():
                lut = alloc(n)
            tms.pause()
            print(json.dumps({"w": released(w), "lut": released(lut),
                              "balanced": balanced()}))
            tms.resume()
            """, route_calls=False)
        self.assertEqual(got, {"w": True, "lut": False, "balanced": True})


class Processes(Base):
    def test_tms_init_enable_tags_everything_default_and_keeps_contents(self):
        got = child("""
            from torch_memory_saver import torch_memory_saver as tms
            import memctl
            cuda = Cuda()
            tms.pause()                       # first use reads TMS_INIT_*
            p = cuda.malloc(1 << 20)
            data = os.urandom(1 << 20)
            cuda.put(p, data)
            with tms.disable():
                q = cuda.malloc(1 << 20)
            tms.pause()
            gone = released(p)
            tms.resume()
            print(json.dumps({"tags": memctl.stat("default")["allocations"], "gone": gone,
                              "same": cuda.get(p, 1 << 20) == data,
                              "untagged": not released(q)}))
            """, {"TMS_INIT_ENABLE": "1", "TMS_INIT_ENABLE_CPU_BACKUP": "true"})
        self.assertEqual(got, {"tags": 1, "gone": True, "same": True, "untagged": True})

    def test_tms_retain_cpu_backup_from_the_environment(self):
        got = child("""
            from torch_memory_saver import torch_memory_saver as tms
            cuda = Cuda()
            with tms.region(enable_cpu_backup=True):
                p = cuda.malloc(1 << 20)
            tms.pause()
            tms.resume()
            print(json.dumps([tms.retain_cpu_backup, cuda.pinned()]))
            """, {"TMS_RETAIN_CPU_BACKUP": "YES"})
        self.assertEqual(got, [True, 1])

    def test_environment_values_torch_memory_saver_would_refuse_are_errors(self):
        got = child("""
            from torch_memory_saver import torch_memory_saver as tms
            out = []
            try:
                tms.pause()
            except ValueError as e:
                out.append(str(e))
            print(json.dumps(out))
            """, {"TMS_RETAIN_CPU_BACKUP": "maybe"})
        self.assertEqual(len(got), 1)
        self.assertIn("TMS_RETAIN_CPU_BACKUP", got[0])
        got = child("""
            from torch_memory_saver import torch_memory_saver as tms
            try:
                with tms.region(enable_cpu_backup=True):
                    pass
                print(json.dumps("entered"))
            except NotImplementedError as e:
                print(json.dumps(str(e)))
            """, {"TMS_INIT_CPU_BACKUP_BACKEND": "mmap"})
        self.assertIn("mmap", got)

    def test_expandable_segments_are_refused_as_torch_memory_saver_refuses_them(self):
        got = child("""
            from torch_memory_saver import torch_memory_saver as tms
            try:
                with tms.region():
                    pass
                print(json.dumps("entered"))
            except RuntimeError as e:
                print(json.dumps([e.errno, str(e)]))
            """, {"PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:True"})
        self.assertEqual(got[0], errno.EINVAL)
        self.assertIn("expandable_segments", got[1])

    def test_configure_subprocess_preloads_memctl_in_children_and_restores(self):
        got = child("""
            import subprocess
            from torch_memory_saver import configure_subprocess
            import memctl
            before = dict(os.environ)
            with configure_subprocess():
                inside = dict(os.environ)
                kid = subprocess.run([sys.executable, "-c",
                    "import sys; sys.path[:0] = %r; import memctl; "
                    "print(memctl.preloaded())" % sys.path[:2]],
                    capture_output=True, text=True).stdout.strip()
            print(json.dumps({"kid": kid, "restored": dict(os.environ) == before,
                              "preload": inside["LD_PRELOAD"].split(":")[0],
                              "tag": inside.get("MEMCTL_DEFAULT_TAG")}))
            """, {"TMS_INIT_ENABLE": "1", "LD_PRELOAD": ""}, preload=True)
        self.assertEqual(got["kid"], "True")
        self.assertTrue(got["restored"])
        self.assertTrue(got["preload"].endswith("libmemctl.so"))
        self.assertEqual(got["tag"], "default")

    def test_hook_mode_torch_works_without_any_preload(self):
        # PyTorch's pluggable allocator calls memctl_pool_alloc/free in a
        # process that loaded libmemctl.so itself: called here as it would.
        got = child("""
            import memctl, memctl.tms
            tms = memctl.tms.torch_memory_saver
            tms.hook_mode = "torch"
            cuda = Cuda()
            assert not memctl.preloaded()
            with tms.region(tag="w", enable_cpu_backup=True):
                lib = memctl._load()
                lib.memctl_pool_alloc.restype = ctypes.c_void_p
                lib.memctl_pool_alloc.argtypes = [ctypes.c_size_t, ctypes.c_int, ctypes.c_void_p]
                lib.memctl_pool_free.argtypes = [ctypes.c_void_p, ctypes.c_size_t,
                                                 ctypes.c_int, ctypes.c_void_p]
                p = lib.memctl_pool_alloc(1 << 20, 0, None)
            data = os.urandom(1 << 20)
            cuda.put(p, data)
            tms.pause("w")
            gone = released(p)
            tms.resume("w")
            same = cuda.get(p, 1 << 20) == data
            graph = ""
            try:
                with tms.cuda_graph(None):
                    pass
            except NotImplementedError as e:
                graph = str(e)
            lib.memctl_pool_free(p, 1 << 20, 0, None)
            print(json.dumps({"gone": gone, "same": same, "graph": graph,
                              "left": lib.memctl_stat(None, ctypes.byref(memctl._Stat()))}))
            """, preload=False)
        self.assertTrue(got["gone"])
        self.assertTrue(got["same"])
        self.assertIn("preloaded", got["graph"])
        self.assertEqual(got["left"], -errno.ENOENT)

    def test_the_cli_sees_and_controls_the_same_tags(self):
        build = os.environ["MEMCTL_BUILD"]
        script = textwrap.dedent("""
            import ctypes, json, os, sys
            sys.path[:0] = %r
            sys.path.insert(0, %r)
            from test_tms import Cuda
            from torch_memory_saver import torch_memory_saver as tms
            import memctl
            cuda = Cuda()
            with tms.region(tag="weights", enable_cpu_backup=True):
                w = cuda.malloc(4 << 20)
            with tms.region(tag="kv_cache"):
                kv = cuda.malloc(2 << 20)
            data = os.urandom(4 << 20)
            cuda.put(w, data)
            print(os.getpid(), flush=True)
            sys.stdin.readline()              # the CLI pauses from outside
            st = memctl.stat("weights")
            tms.resume()                      # the application resumes
            print(json.dumps({"paused": st["paused_bytes"], "staged": st["staged_bytes"],
                              "same": cuda.get(w, 4 << 20) == data}), flush=True)
            sys.stdin.readline()
            """ % (PYPATH, HERE))
        run_dir = tempfile.mkdtemp(prefix="memctl-tms-")  # mode 0700, as memctl insists
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(PYPATH), MEMCTL_SOCKET="1",
                   MEMCTL_RUNTIME_DIR=run_dir)
        proc = subprocess.Popen([sys.executable, "-c", script], env=env, text=True,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        try:
            pid = proc.stdout.readline().strip()
            cli = os.path.join(build, "memctl")
            status = subprocess.run([cli, "status", "--json", "-p", pid], env=env,
                                    capture_output=True, text=True, timeout=60)
            tags = {t["tag"]: t for t in json.loads(status.stdout.splitlines()[0])["tags"]}
            self.assertEqual(sorted(tags), ["kv_cache", "weights"], status.stdout)
            # A plain pause from outside keeps what was made with a backup.
            rc = subprocess.run([cli, "pause", "--tags", "all", "-p", pid], env=env,
                                capture_output=True, text=True, timeout=60)
            self.assertEqual(rc.returncode, 0, rc.stdout + rc.stderr)
            proc.stdin.write("\n")
            proc.stdin.flush()
            got = json.loads(proc.stdout.readline())
            self.assertEqual(got, {"paused": 4 << 20, "staged": 4 << 20, "same": True})
        finally:
            proc.stdin.write("\n")
            proc.stdin.close()
            proc.wait(timeout=60)
            proc.stdout.close()
            shutil.rmtree(run_dir, ignore_errors=True)


if __name__ == "__main__":
    result = unittest.main(exit=False, verbosity=2).result
    failed = len(result.failures) + len(result.errors)
    print("tms: %d passed, %d failed" % (result.testsRun - failed, failed))
    sys.exit(1 if failed else 0)
