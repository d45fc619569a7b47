# SPDX-License-Identifier: Apache-2.0
"""The Python helper on the simulated driver (make test): run under
LD_PRELOAD=libmemctl.so with the simulated libcudart.so.13 on the path."""
import ctypes
import errno
import os
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "python"))
import memctl  # noqa: E402

MiB = 1 << 20


def runtime():
    rt = ctypes.CDLL("libcudart.so.13", mode=ctypes.RTLD_GLOBAL)
    glob = ctypes.CDLL(None)  # cudaMalloc as the application binds it: memctl's
    glob.cudaMalloc.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_size_t]
    glob.cudaFree.argtypes = [ctypes.c_void_p]
    rt.cudaMemcpy.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    return glob, rt


class Helper(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.glob, cls.rt = runtime()

    def alloc(self, n):
        p = ctypes.c_void_p()
        self.assertEqual(self.glob.cudaMalloc(ctypes.byref(p), n), 0)
        return p

    def put(self, dev, data):
        buf = ctypes.create_string_buffer(data, len(data))
        self.assertEqual(self.rt.cudaMemcpy(dev, buf, len(data), 1), 0)

    def get(self, dev, n):
        buf = ctypes.create_string_buffer(n)
        self.assertEqual(self.rt.cudaMemcpy(buf, dev, n, 2), 0)
        return buf.raw

    def test_region_pause_stage_resume_restores_bytes(self):
        data = os.urandom(3 * MiB)
        with memctl.region("weights"):
            p = self.alloc(len(data))
        self.put(p, data)
        self.assertEqual(memctl.stat("weights")["allocations"], 1)
        memctl.pause("weights", stage=True)
        st = memctl.stat("weights")
        self.assertEqual(st["paused_bytes"], 4 * MiB)
        self.assertEqual(st["active_bytes"], 0)
        memctl.resume(["weights"])
        self.assertEqual(self.get(p, len(data)), data)
        self.glob.cudaFree(p)

    def test_a_staging_region_keeps_contents_across_a_plain_pause(self):
        data = os.urandom(2 * MiB)
        with memctl.region("py_keep", stage=True):
            p = self.alloc(len(data))
        with memctl.region("py_keep"):
            q = self.alloc(MiB)
        self.put(p, data)
        memctl.pause("py_keep")  # no stage=True: the region asked for it
        st = memctl.stat("py_keep")
        self.assertEqual((st["active_bytes"], st["staged_bytes"]), (0, 2 * MiB))
        memctl.resume("py_keep")
        self.assertEqual(self.get(p, len(data)), data)
        self.glob.cudaFree(p)
        self.glob.cudaFree(q)

    def test_set_margin_refuses_what_is_not_a_byte_count(self):
        for bad in (-1, 1 << 64):
            with self.assertRaises(ValueError):
                memctl.set_margin(bad)
        memctl.set_margin(0)

    def test_gate_makes_other_threads_copies_wait_for_resume(self):
        import threading
        data = os.urandom(MiB)
        with memctl.region("weights"):
            p = self.alloc(MiB)
        self.put(p, bytes(MiB))
        memctl.pause("weights", stage=True, gate=True)
        # ctypes lets go of the GIL: the copy waits at the gate in its thread
        # (a copy to released memory would lose the context instead).
        copier = threading.Thread(target=self.put, args=(p, data))
        copier.start()
        memctl.resume("weights")
        copier.join()
        self.assertEqual(self.get(p, MiB), data)
        self.glob.cudaFree(p)

    def test_errors_raise_with_the_library_message(self):
        with self.assertRaises(memctl.MemctlError) as cm:
            memctl.pause("no_such_tag")
        self.assertEqual(cm.exception.errno, errno.ENOENT)
        self.assertIn("nothing tagged 'no_such_tag'", str(cm.exception))
        with self.assertRaises(memctl.MemctlError) as cm:
            with memctl.region("bad tag"):
                pass
        self.assertEqual(cm.exception.errno, errno.EINVAL)

    def test_regions_nest_and_end_on_exceptions(self):
        with self.assertRaises(RuntimeError):
            with memctl.region("outer"):
                with memctl.region("inner"):
                    q = self.alloc(MiB)
                raise RuntimeError("boom")
        p = self.alloc(MiB)  # outside any region now: untagged
        self.assertEqual(memctl.stat("inner")["allocations"], 1)
        with self.assertRaises(memctl.MemctlError):
            memctl.stat("outer")
        self.glob.cudaFree(p)
        self.glob.cudaFree(q)

    def test_empty_or_blank_tag_lists_raise_and_pause_nothing(self):
        # Issue 8 item 1: memctl.pause([]) paused every tag, unstaged.
        data = os.urandom(MiB)
        with memctl.region("py_blank"):
            p = self.alloc(len(data))
        self.put(p, data)
        for tags in ("", " ", ",", " , ", [], (), set(), ["all", "py_blank"], "all,py_blank",
                     "*,py_blank"):
            for call in (lambda: memctl.pause(tags), lambda: memctl.pause(tags, stage=True),
                         lambda: memctl.resume(tags), lambda: memctl.prepare(tags),
                         lambda: memctl.release_host(tags), lambda: memctl.stat(tags)):
                with self.assertRaises(memctl.MemctlError, msg=repr(tags)) as cm:
                    call()
                self.assertEqual(cm.exception.errno, errno.EINVAL, repr(tags))
        self.assertEqual(memctl.stat("py_blank")["paused_bytes"], 0)
        # Every tag only when asked for: "all", or None (the C API's NULL).
        memctl.pause("all", stage=True)
        self.assertEqual(memctl.stat("py_blank")["active_bytes"], 0)
        memctl.resume(None)
        self.assertEqual(self.get(p, len(data)), data)
        self.glob.cudaFree(p)

    def test_stat_calls_staged_host_memory_staged_bytes(self):
        with memctl.region("py_staged"):
            p = self.alloc(MiB)
        memctl.pause("py_staged", stage=True)
        st = memctl.stat("py_staged")
        self.assertNotIn("host_bytes", st)
        self.assertEqual(st["staged_bytes"], MiB)
        memctl.resume("py_staged", release_host=True)
        self.assertEqual(memctl.stat("py_staged")["staged_bytes"], 0)
        self.glob.cudaFree(p)

    def test_preload_env_names_the_library(self):
        env = memctl.preload_env({"LD_PRELOAD": "/x/other.so"}, default_tag="model", group="g")
        self.assertTrue(env["LD_PRELOAD"].split(":")[0].endswith("libmemctl.so"))
        self.assertIn("/x/other.so", env["LD_PRELOAD"])
        self.assertEqual(env["MEMCTL_DEFAULT_TAG"], "model")
        self.assertEqual(env["MEMCTL_GROUP"], "g")

    def test_region_tags_without_a_pool_where_torch_has_none_and_says_so_once(self):
        # PyTorch with backend:cudaMallocAsync: no MemPool. A stand-in torch
        # whose MemPool raises as that one does.
        import contextlib
        import io
        import types

        class Cuda:
            backend = "cudaMallocAsync"

            @staticmethod
            def is_available():
                return True

            @staticmethod
            def current_device():
                return 0

            @classmethod
            def get_allocator_backend(cls):
                return cls.backend

            class MemPool:
                def __init__(self):
                    raise RuntimeError("MemPool is not supported by this allocator")

            @staticmethod
            def use_mem_pool(pool):
                raise RuntimeError("no pools")

        fake = types.ModuleType("torch")
        fake.cuda = Cuda
        old = sys.modules.get("torch")
        sys.modules["torch"] = fake
        err = io.StringIO()
        try:
            with contextlib.redirect_stderr(err):
                for backend in ("cudaMallocAsync", "native"):
                    Cuda.backend = backend
                    memctl._said.clear()
                    for _ in range(3):
                        with memctl.region("py_nopool"):
                            p = self.alloc(MiB)
                        self.glob.cudaFree(p)
                    with memctl.region("py_nopool"):
                        q = self.alloc(MiB)
                    self.assertEqual(memctl.stat("py_nopool")["allocations"], 1)
                    self.glob.cudaFree(q)
        finally:
            memctl._pools.clear()
            if old is None:
                del sys.modules["torch"]
            else:
                sys.modules["torch"] = old
        said = err.getvalue().splitlines()
        self.assertEqual(len(said), 2, said)  # once per backend above
        self.assertIn("cudaMallocAsync", said[0])
        self.assertIn("refused", said[1])

    def test_expandable_segments_are_off_while_the_outermost_region_with_a_pool_is_open(self):
        import types
        calls = []

        class Memory:
            @staticmethod
            def _set_allocator_settings(s):
                calls.append(s)

        class Cuda:
            memory = Memory

            @staticmethod
            def is_available():
                return True

            @staticmethod
            def current_device():
                return 0

            @staticmethod
            def get_allocator_backend():
                return "native"

            class MemPool:
                pass

            @staticmethod
            def use_mem_pool(pool):
                calls.append("pool")
                import contextlib
                return contextlib.nullcontext()

        fake = types.ModuleType("torch")
        fake.cuda = Cuda
        old, conf = sys.modules.get("torch"), os.environ.get("PYTORCH_CUDA_ALLOC_CONF")
        sys.modules["torch"] = fake
        os.environ["PYTORCH_CUDA_ALLOC_CONF"] = "garbage_collection_threshold:0.6,expandable_segments:True"
        try:
            with memctl.region("py_outer"):
                with memctl.region("py_inner"):
                    pass
            self.assertEqual(calls, ["expandable_segments:False", "pool", "pool",
                                     "expandable_segments:True"])
            del calls[:]
            os.environ["PYTORCH_CUDA_ALLOC_CONF"] = "expandable_segments:False"
            with memctl.region("py_outer"):
                pass
            self.assertEqual(calls, ["pool"])
        finally:
            memctl._pools.clear()
            if old is None:
                del sys.modules["torch"]
            else:
                sys.modules["torch"] = old
            if conf is None:
                del os.environ["PYTORCH_CUDA_ALLOC_CONF"]
            else:
                os.environ["PYTORCH_CUDA_ALLOC_CONF"] = conf

    def test_not_preloaded_is_a_clear_error(self):
        env = dict(os.environ)
        env.pop("LD_PRELOAD", None)
        code = ("import sys; sys.path.insert(0, %r); import memctl\n"
                "print(memctl.available())\n"
                "try:\n    memctl.pause('weights')\n"
                "except memctl.MemctlError as e:\n    print(e.errno, e)\n"
                % os.path.dirname(os.path.dirname(memctl.__file__)))
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                             text=True, check=True).stdout
        self.assertIn("False", out)
        self.assertIn("%d" % errno.ENOSYS, out)
        self.assertIn("not preloaded", out)


if __name__ == "__main__":
    result = unittest.main(exit=False, verbosity=2).result
    failed = len(result.failures) + len(result.errors)
    print("python: %d passed, %d failed" % (result.testsRun - failed, failed))
    sys.exit(1 if failed else 0)
