# SPDX-License-Identifier: Apache-2.0
"""The gate on a GPU (issue 11, item 7): a Hugging Face transformers model
(gate_hf_worker.py, random weights from a config, nothing downloaded)
generates in a loop in one thread while `memctl pause --tags weights
--stage cpu` and `memctl resume --tags weights` are sent from outside 20
times. Must hold: every CLI call succeeds; no error in the generating
thread; while paused its thread waits at the gate (status) and no forward
step completes; every generated sequence is identical to the one generated
before anything was paused.
usage: python3 test/gpu/test_gate_hf.py BUILD_DIR
"""
import json
import os
import subprocess
import sys
import time

from gpu_common import BUILD, ROOT, RUN_DIR, env_for, expect, failures

CYCLES = 20
HOLD_S = 0.5  # how long each pause lasts: steps would complete meanwhile if the gate leaked


# Not gpu_common.memctl: this one waits up to 300 s for the CLI.
def memctl(*args):
    t0 = time.monotonic()
    r = subprocess.run([os.path.join(BUILD, "memctl")] + list(args), capture_output=True,
                       text=True, env=env_for(LD_PRELOAD=""), timeout=300)
    return r.returncode, r.stdout + r.stderr, time.monotonic() - t0


def gate_of(pid):
    rc, out, _ = memctl("status", "--json", "-p", str(pid))
    if rc != 0:
        return {}, {}
    st = json.loads(out.splitlines()[0])
    return st.get("gate", {}), st


def main():
    w = subprocess.Popen([sys.executable, os.path.join(ROOT, "test/gpu/gate_hf_worker.py")],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env_for())
    ready = json.loads(w.stdout.readline())
    pid = ready["pid"]
    print("worker %d: %.2f GiB of weights, reference %s..." % (
        pid, ready["weight_bytes"] / 2**30, ready["reference"][:6]), flush=True)
    running = json.loads(w.stdout.readline())
    expect(running.get("running") is True, "the generating thread runs (%s)" % running.get("error"))
    windows, pauses, resumes, waiting_seen = [], [], [], 0
    for cycle in range(CYCLES):
        rc1, out1, t1 = memctl("pause", "--tags", "weights", "--stage", "cpu", "-p", str(pid),
                               "--timeout", "60")
        paused_at = time.monotonic()
        gate, st = gate_of(pid)
        time.sleep(HOLD_S)
        gate2, _ = gate_of(pid)
        waiting_seen += max(gate.get("waiting", 0), gate2.get("waiting", 0)) >= 1
        resume_at = time.monotonic()
        rc2, out2, t2 = memctl("resume", "--tags", "weights", "-p", str(pid), "--timeout", "60")
        windows.append((paused_at, resume_at))
        pauses.append(t1)
        resumes.append(t2)
        expect(rc1 == 0 and rc2 == 0, "cycle %d: pause %d, resume %d (%s)" % (
            cycle, rc1, rc2, (out1 + out2).strip().replace("\n", " | ")[-160:]))
        expect(gate.get("closed") is True and st.get("paused_bytes", 0) > 0,
               "cycle %d: while paused the gate is closed and the weights are released" % cycle)
    w.stdin.write("stop\n")
    w.stdin.flush()
    end = json.loads(w.stdout.readline())
    w.wait(timeout=120)
    steps = end["steps"]
    inside = [t for t in steps for a, b in windows if a < t < b]
    expect(end["error"] is None, "no error in the generating thread (%s)" % end["error"])
    expect(end["mismatches"] == 0, "%d generations, all identical to the reference (first "
           "mismatch %s)" % (end["runs"], end["first_mismatch"]))
    expect(len(inside) == 0, "forward steps completed while paused: %d of %d" % (
        len(inside), len(steps)))
    expect(waiting_seen == CYCLES, "the generating thread was seen waiting at the gate in "
           "%d of %d pauses" % (waiting_seen, CYCLES))
    expect(w.returncode == 0, "the worker exited 0 (%s)" % w.returncode)
    print("\n| gate on a GPU | value |\n|---|---|")
    print("| weights (bf16) | %.2f GiB |" % (ready["weight_bytes"] / 2**30))
    print("| CLI pause (staged), median of %d | %.3f s |" % (CYCLES, sorted(pauses)[CYCLES // 2]))
    print("| CLI resume, median of %d | %.3f s |" % (CYCLES, sorted(resumes)[CYCLES // 2]))
    print("| generations / forward steps | %d / %d |" % (end["runs"], len(steps)))
    print("gate_hf: %d passed, %d failed" % (0 if failures else 1, 1 if failures else 0))
    return 1 if failures else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    finally:
        subprocess.run(["rm", "-rf", RUN_DIR])
