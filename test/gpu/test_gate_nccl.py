# SPDX-License-Identifier: Apache-2.0
"""The gate and the all-or-nothing group pause on two GPUs (issue 11, item
7): two ranks (gate_nccl_worker.py, one GPU each, MEMCTL_GROUP) run NCCL
all-reduces in a loop while `memctl --group G pause --tags weights --stage
cpu --timeout 3` is sent 20 times, each success followed by a group resume.
Must hold: every group pause either succeeds on both ranks (both released,
both gates closed) or fails cleanly within --timeout + 1 s with both ranks
unchanged (nothing released, gates open); afterwards every all-reduce
result was right. Needs two GPUs: with fewer it says SKIP and exits 77.
usage: python3 test/gpu/test_gate_nccl.py BUILD_DIR
"""
import json
import os
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "build"))
CYCLES = 20
TIMEOUT_S = 3.0
GROUP = "nccl-%d" % os.getpid()
SKIP = 77
failures = []


def expect(cond, what):
    print(("  ok   " if cond else "  FAIL ") + what, flush=True)
    if not cond:
        failures.append(what)


def gpus():
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True).stdout
    except OSError:
        return 0
    return sum(1 for line in out.splitlines() if line.startswith("GPU "))


def nccl_ready():
    return subprocess.run([sys.executable, "-c", "import torch.distributed as d; "
                           "assert d.is_available() and d.is_nccl_available()"],
                          capture_output=True).returncode == 0


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def env_for(run_dir, **extra):
    env = dict(os.environ)
    env.update(LD_PRELOAD=os.path.join(BUILD, "libmemctl.so"), MEMCTL_RUNTIME_DIR=run_dir,
               PYTHONPATH=os.path.join(ROOT, "python"), PYTHONUNBUFFERED="1",
               NCCL_NVLS_ENABLE="0", MEMCTL_GROUP=GROUP)
    env.update(extra)
    return env


def memctl(run_dir, *args):
    t0 = time.monotonic()
    r = subprocess.run([os.path.join(BUILD, "memctl")] + list(args), capture_output=True,
                       text=True, env=env_for(run_dir, LD_PRELOAD=""), timeout=300)
    return r.returncode, r.stdout + r.stderr, time.monotonic() - t0


def states(run_dir, pids):
    """(paused_bytes, gate closed) of each rank, as status reports them."""
    out = []
    for pid in pids:
        rc, text, _ = memctl(run_dir, "status", "--json", "-p", str(pid))
        st = json.loads(text.splitlines()[0]) if rc == 0 else {}
        out.append((st.get("paused_bytes", -1), st.get("gate", {}).get("closed")))
    return out


def cycle(run_dir, pids, k, counts):
    rc, out, took = memctl(run_dir, "--group", GROUP, "pause", "--tags", "weights", "--stage",
                           "cpu", "--timeout", "%g" % TIMEOUT_S)
    st = states(run_dir, pids)
    if rc == 0:
        counts["ok"] += 1
        expect(all(p > 0 and closed is True for p, closed in st),
               "pause %d succeeded on both ranks: released and gated %s" % (k, st))
        time.sleep(0.3)
        rc2, out2, _ = memctl(run_dir, "--group", GROUP, "resume", "--tags", "weights")
        expect(rc2 == 0, "resume %d: %s" % (k, out2.strip().replace("\n", " | ")[-200:]))
    else:
        counts["failed"] += 1
        if counts["failed"] <= 3:
            print("    " + out.strip().replace("\n", "\n    "))
        expect(took <= TIMEOUT_S + 1.0, "pause %d failed within --timeout + 1 s (%.2f s)" % (k, took))
        expect(all(p == 0 and closed is False for p, closed in st),
               "pause %d failed with both ranks unchanged: nothing released, gates open %s" % (k, st))
    time.sleep(0.2)


def main():
    if gpus() < 2 or not nccl_ready():
        print("SKIP: needs two GPUs and torch with NCCL (found %d GPUs)" % gpus())
        return SKIP
    run_dir = tempfile.mkdtemp(prefix="memctl-gate-nccl-")
    port = str(free_port())
    ends = []
    ranks = [subprocess.Popen([sys.executable, os.path.join(ROOT, "test/gpu/gate_nccl_worker.py")],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                              env=env_for(run_dir, RANK=str(r), WORLD_SIZE="2",
                                          MASTER_ADDR="127.0.0.1", MASTER_PORT=port))
             for r in range(2)]
    try:
        pids = [json.loads(r.stdout.readline())["pid"] for r in ranks]
        counts = {"ok": 0, "failed": 0}
        for k in range(CYCLES):
            cycle(run_dir, pids, k, counts)
        for r in ranks:
            r.stdin.write("stop\n")
            r.stdin.flush()
        ends = [json.loads(r.stdout.readline()) for r in ranks]
        for r in ranks:
            r.wait(timeout=120)
    finally:
        for r in ranks:
            if r.poll() is None:
                r.kill()
        subprocess.run(["rm", "-rf", run_dir])
    for rank, end in enumerate(ends):
        expect(end["error"] is None, "rank %d: no error (%s)" % (rank, end["error"]))
        expect(end["iterations"] > 0 and end["wrong"] == 0,
               "rank %d: %d all-reduces, %d wrong" % (rank, end["iterations"], end["wrong"]))
        expect(end.get("final_right") is True, "rank %d: the all-reduce after the test is right" % rank)
    print("\n| group pause of two NCCL ranks | value |\n|---|---|")
    print("| succeeded on both / failed cleanly | %d / %d of %d |" % (counts["ok"], counts["failed"], CYCLES))
    print("| all-reduces per rank | %s |" % " / ".join(str(e["iterations"]) for e in ends))
    print("gate_nccl: %d passed, %d failed" % (0 if failures else 1, 1 if failures else 0))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
