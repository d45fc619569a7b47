# SPDX-License-Identifier: Apache-2.0
"""torch_memory_saver's API on memctl, on a GPU (make test-gpu).

Runs test/gpu/tms_workload.py, a script written against
torch_memory_saver (regions with and without CPU backup, nested regions,
disable(), a CUDA graph from cuda_graph(), an RL loop that pauses the
engine's weights, KV cache and graph, trains another model in the freed
memory, then resumes), through the torch_memory_saver package memctl
installs (python/compat here):

1. the reference: the same script, never paused;
2. on memctl, with the memctl CLI looking and acting from outside at two
   checkpoints: status sees the script's tags; a plain `memctl pause --tags
   all` and `memctl resume --tags all` in the middle of the run keep what
   the script made with a backup; while the engine is paused, status shows
   its tags released and the device really got the memory back;
3. hook_mode "torch", without LD_PRELOAD (PyTorch's pluggable allocator
   calls memctl), where torch has one.

Runs 2 and 3 must give results bit-identical to run 1: rollout tokens,
training losses, engine and trainer weights.
usage: python3 test/gpu/test_tms.py BUILD_DIR
"""
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "build"))
WORKLOAD = os.path.join(ROOT, "test", "gpu", "tms_workload.py")
RUN_DIR = tempfile.mkdtemp(prefix="memctl-tms-")
COMPARED = ("tokens", "losses", "engine", "trainer", "lut_ok")
failures = []


def expect(cond, what):
    print(("  ok   " if cond else "  FAIL ") + what, flush=True)
    if not cond:
        failures.append(what)


def env_for(preload=True, **extra):
    env = dict(os.environ)
    env.pop("LD_PRELOAD", None)
    if preload:
        env["LD_PRELOAD"] = os.path.join(BUILD, "libmemctl.so")
    env["MEMCTL_RUNTIME_DIR"] = RUN_DIR
    env["PYTHONPATH"] = os.pathsep.join([os.path.join(ROOT, "python"),
                                         os.path.join(ROOT, "python", "compat")])
    env["MEMCTL_LIBRARY"] = os.path.join(BUILD, "libmemctl.so")
    env["CUBLAS_WORKSPACE_CONFIG"] = ":4096:8"
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def memctl(*args):
    r = subprocess.run([os.path.join(BUILD, "memctl")] + list(args), capture_output=True,
                       text=True, env=env_for(preload=False), timeout=120)
    return r.returncode, r.stdout + r.stderr


def status(pid):
    rc, out = memctl("status", "--json", "-p", str(pid))
    if rc != 0:
        return {}
    return {t["tag"]: t for t in json.loads(out.splitlines()[0])["tags"]}


def run(name, on_checkpoint=None, **env):
    print("\n[%s]" % name, flush=True)
    t0 = time.time()
    p = subprocess.Popen([sys.executable, WORKLOAD], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True, env=env_for(**env))
    result = None
    for line in p.stdout:
        if not line.startswith("{"):
            print("    " + line.rstrip(), flush=True)  # anything else the script says
            continue
        msg = json.loads(line)
        if "checkpoint" in msg:
            if on_checkpoint is not None:
                on_checkpoint(msg)
            p.stdin.write("\n")
            p.stdin.flush()
        else:
            result = msg
    p.stdin.close()
    rc = p.wait(timeout=600)
    expect(rc == 0 and result is not None, "%s: exit %d in %.1f s" % (name, rc, time.time() - t0))
    return result or {}


def look_and_act(msg):
    """The CLI, from outside, at the workload's checkpoints."""
    pid = msg["pid"]
    tags = status(pid)
    if msg["checkpoint"] == "ready":
        expect(sorted(tags) == ["cuda_graph", "kv_cache", "train", "weights"],
               "status sees the script's tags: %s" % sorted(tags))
        expect(tags.get("train", {}).get("active_bytes", 1) == 0 and
               tags["train"]["staged_bytes"] > 0, "the trainer shows paused, staged")
        rc1, out1 = memctl("pause", "--tags", "all", "-p", str(pid))
        after = status(pid)
        rc2, out2 = memctl("resume", "--tags", "all", "-p", str(pid))
        expect(rc1 == 0 and rc2 == 0, "memctl pause/resume --tags all from outside: %s | %s"
               % (out1.strip().splitlines()[-1:], out2.strip().splitlines()[-1:]))
        expect(all(t["active_bytes"] == 0 for t in after.values()),
               "after the CLI's pause nothing is active")
        expect(after.get("weights", {}).get("staged_bytes", 0) > 0 and
               after.get("kv_cache", {}).get("staged_bytes", 1) == 0,
               "the CLI's plain pause staged the weights (made with backup), not the KV cache")
    elif msg["checkpoint"] == "engine_paused":
        engine = ("weights", "kv_cache", "cuda_graph")
        paused = sum(tags.get(t, {}).get("paused_bytes", 0) for t in engine)
        expect(all(tags.get(t, {}).get("active_bytes", 1) == 0 for t in engine),
               "status: the engine's tags are released")
        expect(msg["released"] >= 0.99 * paused > 0,
               "the device got the memory back: %d of %d bytes" % (msg["released"], paused))
        expect(tags.get("cuda_graph", {}).get("paused_bytes", 0) > 0,
               "the CUDA graph's private memory is tagged and released")


ref = run("reference: never paused", TMS_WORKLOAD_NO_PAUSE="1")
mem = run("memctl, the CLI looking on", look_and_act, TMS_WORKLOAD_HANDSHAKE="1")
for key in COMPARED:
    expect(key in ref and mem.get(key) == ref[key], "memctl run: %s bit-identical" % key)
expect(mem.get("lut_ok") is True, "the tensor made under disable() survived every pause")
expect(mem.get("backup_ok") is True, "get_cpu_backup (copied and zero-copy) read the staged weights")
print("    released per engine pause: %s MiB; weights %.2f GiB, KV cache %.2f GiB" % (
    [r >> 20 for r in mem.get("released", [])], mem.get("weight_bytes", 0) / 2.0 ** 30,
    mem.get("kv_bytes", 0) / 2.0 ** 30))

probe = subprocess.run([sys.executable, "-c", "import torch; assert hasattr(torch.cuda, 'MemPool') "
                        "and hasattr(torch.cuda.memory, 'CUDAPluggableAllocator')"],
                       capture_output=True)
if probe.returncode == 0:
    tm = run("hook_mode torch, no LD_PRELOAD", preload=False, TMS_WORKLOAD_HOOK_MODE="torch")
    for key in COMPARED:
        expect(key in ref and tm.get(key) == ref[key], "torch mode: %s bit-identical" % key)
else:
    print("\n[hook_mode torch] skipped: this torch has no MemPool with a pluggable allocator")

print("tms: %d passed, %d failed" % (0 if failures else 1, 1 if failures else 0))
sys.exit(1 if failures else 0)
