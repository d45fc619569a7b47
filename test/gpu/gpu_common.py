# SPDX-License-Identifier: Apache-2.0
"""What the Python GPU scripts share: a worker process
spoken to in JSON lines, the memctl CLI, nvidia-smi's view of a process,
memctl's view of its tags, and the verdict table.
usage: imported by test/gpu/test_torch.py, test/gpu/test_torch_driver.py and
test/gpu/test_jax.py."""
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "build"))
RUN_DIR = tempfile.mkdtemp(prefix="memctl-gpu-")
GiB = float(1 << 30)
failures = []
figures = []


def env_for(**extra):
    env = dict(os.environ)
    env["LD_PRELOAD"] = os.path.join(BUILD, "libmemctl.so")
    env["MEMCTL_RUNTIME_DIR"] = RUN_DIR
    env["PYTHONPATH"] = os.path.join(ROOT, "python")
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def expect(cond, what):
    print(("  ok   " if cond else "  FAIL ") + what, flush=True)
    if not cond:
        failures.append(what)
    return cond


class Worker:
    """A worker script answering one JSON line per command; its stderr goes
    to a file (read with stderr())."""

    def __init__(self, script, *args, **env):
        self.err = tempfile.NamedTemporaryFile(prefix="memctl-worker-", suffix=".err", delete=False)
        self.p = subprocess.Popen([sys.executable, os.path.join(ROOT, "test/gpu", script)] + list(args),
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.err,
                                  text=True, env=env_for(**env))
        line = self.p.stdout.readline()
        if not line:
            raise RuntimeError("%s exited: %s" % (script, self.stderr()[-2000:]))
        self.info = json.loads(line)
        self.pid = self.info["pid"]

    def ask(self, cmd):
        self.p.stdin.write(cmd + "\n")
        self.p.stdin.flush()
        return json.loads(self.p.stdout.readline())

    def stderr(self):
        with open(self.err.name) as f:
            return f.read()

    def quit(self):
        try:
            self.p.stdin.write("quit\n")
            self.p.stdin.flush()
            self.p.wait(timeout=60)
        finally:
            os.unlink(self.err.name)


def memctl(*args, timeout=120):
    t0 = time.time()
    r = subprocess.run([os.path.join(BUILD, "memctl")] + list(args), capture_output=True, text=True,
                       env=env_for(LD_PRELOAD=""), timeout=timeout)
    return r.returncode, r.stdout + r.stderr, time.time() - t0


def gpu_used_by(pid):
    """MiB used by pid as nvidia-smi shows it; where nvidia-smi cannot name
    processes, the device's used memory instead."""
    out = subprocess.run(["nvidia-smi", "--query-compute-apps=pid,used_memory",
                          "--format=csv,noheader,nounits"], capture_output=True, text=True).stdout
    for line in out.splitlines():
        parts = [x.strip() for x in line.split(",")]
        if len(parts) == 2 and parts[0] == str(pid) and parts[1].isdigit():
            return int(parts[1])
    out = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
                         capture_output=True, text=True).stdout
    return int(out.split()[0])


def status(pid):
    """memctl status --json of pid: (bytes per tag, the whole reply)."""
    rc, out, _ = memctl("status", "--json", "-p", str(pid))
    st = json.loads(out.splitlines()[0])
    return {t["tag"]: t["active_bytes"] + t["paused_bytes"] for t in st["tags"]}, st


def cycles(w, name, n, pause_steps, resume_tags, tagged, bound=0.99):
    """n cycles of the CLI pausing (pause_steps: lists of CLI arguments) and
    resuming resume_tags; after each, device memory must have dropped by
    >= bound (99%) of `tagged` bytes while paused and the worker's check
    must find its outputs bit-identical. Returns the worst release ratio."""
    before = gpu_used_by(w.pid)
    worst, pause_s, resume_s = 1.0, [], []
    for cycle in range(n):
        rcs, took = [], 0.0
        for step in pause_steps:
            rc, out, t = memctl("pause", *step, "-p", str(w.pid))
            rcs.append(rc)
            took += t
            if rc != 0:
                print("    " + out.strip().replace("\n", "\n    "))
        paused = gpu_used_by(w.pid)
        rc, out, t = memctl("resume", "--tags", resume_tags, "-p", str(w.pid))
        rcs.append(rc)
        after = gpu_used_by(w.pid)
        chk = w.ask("check")
        worst = min(worst, (before - paused) * float(1 << 20) / tagged)
        pause_s.append(took)
        resume_s.append(t)
        expect(all(r == 0 for r in rcs), "%s, cycle %d: CLI exit codes %s" % (name, cycle, rcs))
        expect(chk["identical"], "%s, cycle %d: outputs bit-identical after resume (%s)"
               % (name, cycle, chk.get("detail", "")))
        slack = max(64, tagged / 100 / (1 << 20))
        expect(after >= before - slack, "%s, cycle %d: memory restored (%d -> %d MiB)"
               % (name, cycle, before, after))
        if cycle == 0:
            figures.append(("%s: nvidia-smi before / paused" % name, "%d / %d MiB" % (before, paused)))
    expect(worst >= bound, "%s: device memory dropped by >= %g%% of tagged bytes (worst cycle %.4f)"
           % (name, bound * 100, worst))
    figures.append(("%s: released / tagged, worst of %d" % (name, n), "%.4f" % worst))
    figures.append(("%s: CLI pause, resume (median)" % name, "%.2f s, %.2f s"
                    % (sorted(pause_s)[n // 2], sorted(resume_s)[n // 2])))
    return worst


def run_all(title, scenarios):
    for fn in scenarios:
        try:
            fn()
        except Exception as e:  # a crash is a failure, reported with the rest
            expect(False, "%s raised %r" % (fn.__name__, e))
    print("\n| %s | value |\n|---|---|" % title)
    for k, v in figures:
        print("| %s | %s |" % (k, v))
    print("%s: %d passed, %d failed" % (title, 0 if failures else 1, 1 if failures else 0))
    sys.exit(1 if failures else 0)
