# SPDX-License-Identifier: Apache-2.0
"""memctl serve on a GPU: the PyTorch worker of test_torch.py driven over
HTTP, as an SGLang- and a vLLM-speaking orchestrator would drive it.

1. POST /release_memory_occupation {"tags": ["weights"], "stage_to_cpu": true}
   and {"tags": ["kv_cache"]}: device memory drops by >= 99% of the tagged
   bytes; GET /is_sleeping is true; POST /resume_memory_occupation {}: the
   CUDA graph's logits come back bit-identical.
2. POST /sleep?level=1, /wake_up?tags=weights, /wake_up?tags=kv_cache:
   logits bit-identical again (the KV cache is scratch: check re-runs the
   prefill).
3. GET /metrics: the last staged pause and resume bandwidth as the process
   measured them; promtool check metrics where promtool is installed.
HTTP through Python's standard library (the GPU machine may lack curl).
usage: python3 test/gpu/test_http_torch.py BUILD_DIR
"""
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_torch as T  # noqa: E402  (its helpers: Worker, memctl, gpu_used_by, expect)


def start_serve():
    p = subprocess.Popen([os.path.join(T.BUILD, "memctl"), "serve", "--listen", "127.0.0.1:0"],
                         stdout=subprocess.PIPE, text=True, env=T.env_for(LD_PRELOAD=""))
    m = re.search(r"listening on (http://\S+)", p.stdout.readline())
    if not m:
        p.kill()
        raise RuntimeError("memctl serve did not start")
    return p, m.group(1)


def http(url, method="GET", body=None):
    """(status, parsed JSON or text, seconds) of one request."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json"} if data else {})
    t0 = time.time()
    try:
        with urllib.request.urlopen(req, timeout=300) as r:
            code, text = r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        code, text = e.code, e.read().decode()
    took = time.time() - t0
    try:
        return code, json.loads(text), took
    except ValueError:
        return code, text, took


def metric(text, name, pid):
    m = re.search(r'^%s\{pid="%d"[^}]*\} (\S+)$' % (name, pid), text, re.M)
    return float(m.group(1)) if m else None


def scenario_http():
    print("\n[http] the worker driven through memctl serve", flush=True)
    w = T.Worker()
    serve, url = start_serve()
    try:
        tags, _ = T.status(w.pid)
        tagged = sum(tags.values())
        before = T.gpu_used_by(w.pid)
        code, r, t_rel = http(url + "/release_memory_occupation", "POST",
                              {"tags": ["weights"], "stage_to_cpu": True})
        T.expect(code == 200, "release weights, staged: HTTP %d %s" % (code, str(r)[:200]))
        code, r, _ = http(url + "/release_memory_occupation", "POST", {"tags": ["kv_cache"]})
        T.expect(code == 200, "release kv_cache: HTTP %d" % code)
        paused = T.gpu_used_by(w.pid)
        released = (before - paused) * (1 << 20) / float(tagged)
        T.expect(released >= 0.99, "device memory dropped by >= 99%% of tagged bytes (%.4f)" % released)
        code, r, _ = http(url + "/is_sleeping")
        T.expect(code == 200 and r == {"is_sleeping": True}, "is_sleeping: %s" % r)
        code, r, t_res = http(url + "/resume_memory_occupation", "POST", {})
        T.expect(code == 200, "resume every tag: HTTP %d %s" % (code, str(r)[:200]))
        chk = w.ask("check")
        T.expect(chk["identical"], "logits bit-identical after release/resume over HTTP (max diff %g)"
                 % chk["max_diff"])

        for path in ("/sleep?level=1", "/wake_up?tags=weights", "/wake_up?tags=kv_cache"):
            code, r, _ = http(url + path, "POST")
            T.expect(code == 200, "POST %s: HTTP %d %s" % (path, code, str(r)[:200]))
        T.expect(http(url + "/is_sleeping")[1] == {"is_sleeping": False}, "awake after wake_up")
        chk = w.ask("check")
        T.expect(chk["identical"], "logits bit-identical after sleep level 1 / wake_up")

        code, text, _ = http(url + "/metrics")
        T.expect(code == 200 and isinstance(text, str), "GET /metrics: HTTP %d" % code)
        if shutil.which("promtool"):
            r = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True,
                               text=True)
            T.expect(r.returncode == 0, "promtool check metrics: %s" % (r.stdout + r.stderr)[:300])
        bw_p = metric(text, "memctl_last_staged_pause_bytes_per_second", w.pid) or 0
        bw_r = metric(text, "memctl_last_staged_resume_bytes_per_second", w.pid) or 0
        T.expect(bw_p > 0 and bw_r > 0, "metrics carry the staged bandwidths")
        T.figures.append(("HTTP release weights staged, whole request", "%.2f s" % t_rel))
        T.figures.append(("HTTP resume weights+kv_cache, whole request", "%.2f s" % t_res))
        T.figures.append(("nvidia-smi: process before / released", "%d / %d MiB" % (before, paused)))
        T.figures.append(("released / tagged", "%.4f" % released))
        T.figures.append(("last staged pause / resume, as the process measured (GiB/s)",
                          "%.1f / %.1f" % (bw_p / T.GiB, bw_r / T.GiB)))
    finally:
        serve.terminate()
        serve.wait(timeout=60)
        w.quit()


if __name__ == "__main__":
    T.main((scenario_http,), "http_torch")
