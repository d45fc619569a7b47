# SPDX-License-Identifier: Apache-2.0
"""The same workload through torch_memory_saver's API (memctl.tms) and
through memctl's own Python API, on a GPU: the compatibility layer must
cost no more than 5%.

Workload: WEIGHTS GiB of bf16 weights in ALLOCS tensors, made to keep
their contents (region(enable_cpu_backup=True) / memctl.region(stage=True)),
and half that of KV cache that need not; one cycle pauses both tags and
resumes both. Two settings:
  kept    host buffers kept across cycles (retain_cpu_backup=True; memctl's
          default), so a pause copies at once;
  given   host buffers given back at each resume (torch_memory_saver's
          default; memctl.resume(release_host=True)), so every pause pins
          fresh host memory.
The two APIs run in alternating cycles on the same process and device,
after one warm-up cycle each; medians of REPEAT cycles.

usage: make bench-tms [BENCH_TMS_ARGS="WEIGHTS_GIB ALLOCS REPEAT"]
       (LD_PRELOAD=build/libmemctl.so PYTHONPATH=python python3 bench/tms_bench.py 4 64 5)
Exits 1 when a median through memctl.tms is more than 5% slower.
"""
import statistics
import sys
import time

import torch

import memctl
from memctl.tms import torch_memory_saver as tms

GIB = float(1 << 30)
weights_gib = float(sys.argv[1]) if len(sys.argv) > 1 else 4.0
allocs = int(sys.argv[2]) if len(sys.argv) > 2 else 64
repeat = int(sys.argv[3]) if len(sys.argv) > 3 else 5
per = int(weights_gib * (1 << 30)) // allocs // 2  # bf16 elements per tensor


def make(region, n):
    with region:
        return [torch.empty(n, device="cuda", dtype=torch.bfloat16).normal_() for _ in range(allocs)]


keep = {
    "tms": make(tms.region(tag="w_tms", enable_cpu_backup=True), per),
    "api": make(memctl.region("w_api", stage=True), per),
}
drop = {
    "tms": make(tms.region(tag="kv_tms"), per // 2),
    "api": make(memctl.region("kv_api"), per // 2),
}
sums = {k: [float(t.float().sum()) for t in v[:4]] for k, v in keep.items()}


def cycle(api, kept):
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    if api == "tms":
        tms.retain_cpu_backup = kept
        tms.pause("w_tms")
        tms.pause("kv_tms")
        t1 = time.perf_counter()
        tms.resume("w_tms")
        tms.resume("kv_tms")
    else:
        memctl.pause("w_api")      # staged: made with stage=True
        memctl.pause("kv_api")
        t1 = time.perf_counter()
        memctl.resume("w_api", release_host=not kept)
        memctl.resume("kv_api", release_host=not kept)
    t2 = time.perf_counter()
    return t1 - t0, t2 - t1


rows, slow = [], False
for kept in (True, False):
    times = {"tms": [], "api": []}
    for api in ("tms", "api"):
        cycle(api, kept)  # warm-up: for "kept", the buffers get pinned here
    for _ in range(repeat):
        for api in ("tms", "api"):
            times[api].append(cycle(api, kept))
    for i, what in enumerate(("pause", "resume")):
        m = {api: statistics.median(t[i] for t in times[api]) for api in times}
        ratio = m["tms"] / m["api"]
        slow = slow or ratio > 1.05
        rows.append((("kept" if kept else "given back"), what, m["tms"], m["api"], ratio))

ok = all([float(t.float().sum()) for t in v[:4]] == sums[k] for k, v in keep.items())
name = torch.cuda.get_device_name()
print("\n%.1f GiB weights (staged) + %.1f GiB KV cache (dropped) in %d + %d tensors, %s, "
      "medians of %d" % (weights_gib, weights_gib / 2, allocs, allocs, name, repeat))
print("| host buffers | step | memctl.tms | memctl API | ratio |\n|---|---|---|---|---|")
for kept, what, a, b, r in rows:
    print("| %s | %s | %.1f ms (%.1f GiB/s) | %.1f ms | %.3f |" % (
        kept, what, a * 1e3, weights_gib / a, b * 1e3, r))
print("contents intact: %s; memctl.tms within 5%%: %s" % (ok, "yes" if not slow else "NO"))
sys.exit(0 if ok and not slow else 1)
