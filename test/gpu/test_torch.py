# SPDX-License-Identifier: Apache-2.0
"""memctl with PyTorch on a GPU, driven from outside with the memctl CLI.

1. torch_worker.py (weights in region("weights"), KV cache in
   region("kv_cache"), decode step in a CUDA graph): ten cycles of
   `memctl pause --tags weights --stage cpu` + `memctl pause --tags kv_cache`
   + `memctl resume`; device memory must drop by >= 99% of the tagged bytes
   and the graph's logits must come back bit-identical.
2. The same model without `import memctl`, tagged by MEMCTL_DEFAULT_TAG.
3. Two workers in MEMCTL_GROUP=server, paused and resumed together; then one
   stopped with SIGSTOP: reported within the timeout, exit 1, the other put
   back as it was (the group pause is all-or-nothing); after SIGCONT a retry
   succeeds.
Prints a table of figures; exits non-zero on any failure.
usage: python3 test/gpu/test_torch.py BUILD_DIR
"""
import json
import os
import signal
import subprocess
import sys

# BUILD and env_for are not used here: test_http_torch.py takes them from this module.
from gpu_common import BUILD, GiB, ROOT, env_for, expect, failures, figures, gpu_used_by, memctl, status  # noqa: F401


class Worker:
    def __init__(self, *args, **env):
        self.p = subprocess.Popen([sys.executable, os.path.join(ROOT, "test/gpu/torch_worker.py")] + list(args),
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                  env=env_for(**env))
        self.info = json.loads(self.p.stdout.readline())
        self.pid = self.info["pid"]

    def ask(self, cmd):
        self.p.stdin.write(cmd + "\n")
        self.p.stdin.flush()
        return json.loads(self.p.stdout.readline())

    def quit(self):
        self.p.stdin.write("quit\n")
        self.p.stdin.flush()
        self.p.wait(timeout=60)


def scenario_tagged():
    print("\n[1] regions from the helper, CUDA graph, ten cycles", flush=True)
    w = Worker()
    tags, _ = status(w.pid)
    tagged = sum(tags.values())
    figures.append(("weights bytes (model)", "%.2f GiB" % (w.info["weight_bytes"] / GiB)))
    figures.append(("tagged bytes: weights / kv_cache", "%.2f / %.2f GiB" % (
        tags.get("weights", 0) / GiB, tags.get("kv_cache", 0) / GiB)))
    trap = w.ask("pool")["reused"]
    expect(trap["no_pool"] is True, "without a pool the caching allocator reuses a tagged block for an untagged tensor (the trap is real)")
    expect(trap["pool"] is False, "with region()'s MemPool the tagged block is not reused")
    expect(trap["untagged_survives_pause"], "an untagged tensor survives pausing the tag")
    before = gpu_used_by(w.pid)
    worst_release, pause_s, resume_s = 1.0, [], []
    for cycle in range(10):
        rc1, out1, t1 = memctl("pause", "--tags", "weights", "--stage", "cpu", "-p", str(w.pid))
        rc2, out2, t2 = memctl("pause", "--tags", "kv_cache", "-p", str(w.pid))
        paused = gpu_used_by(w.pid)
        rc3, out3, t3 = memctl("resume", "--tags", "weights,kv_cache", "-p", str(w.pid))
        chk = w.ask("check")
        released = (before - paused) * (1 << 20)
        worst_release = min(worst_release, released / tagged)
        pause_s.append(t1)
        resume_s.append(t3)
        expect(rc1 == 0 and rc2 == 0 and rc3 == 0, "cycle %d: CLI exit codes %d %d %d" % (cycle, rc1, rc2, rc3))
        expect(chk["identical"], "cycle %d: logits bit-identical after resume (max diff %g)" % (cycle, chk["max_diff"]))
        if cycle == 0:
            print("    " + out1.strip().replace("\n", "\n    "))
            print("    " + out3.strip().replace("\n", "\n    "))
            figures.append(("nvidia-smi: process before / paused", "%d / %d MiB" % (before, paused)))
            figures.append(("residual while paused (context + untagged)", "%d MiB" % paused))
    expect(worst_release >= 0.99, "device memory dropped by >= 99%% of tagged bytes (worst cycle %.4f)" % worst_release)
    figures.append(("released / tagged, worst of 10 cycles", "%.4f" % worst_release))
    figures.append(("CLI pause weights staged, median", "%.2f s" % sorted(pause_s)[5]))
    figures.append(("CLI resume weights+kv, median", "%.2f s" % sorted(resume_s)[5]))
    w.quit()


def scenario_default_tag():
    print("\n[2] unmodified script, MEMCTL_DEFAULT_TAG=model", flush=True)
    w = Worker("--no-import", MEMCTL_DEFAULT_TAG="model")
    tags, _ = status(w.pid)
    before = gpu_used_by(w.pid)
    for cycle in range(3):
        rc1, out1, _ = memctl("pause", "--tags", "model", "--stage", "cpu", "-p", str(w.pid))
        paused = gpu_used_by(w.pid)
        rc2, out2, _ = memctl("resume", "--tags", "model", "-p", str(w.pid))
        chk = w.ask("check")
        expect(rc1 == 0 and rc2 == 0, "cycle %d: pause/resume from the CLI (%s)" % (cycle, out1.strip()[-80:]))
        expect(chk["identical"], "cycle %d: identical outputs" % cycle)
    figures.append(("default tag: tagged / nvidia-smi before / paused",
                    "%.2f GiB / %d / %d MiB" % (tags.get("model", 0) / GiB, before, paused)))
    w.quit()


def scenario_group():
    print("\n[3] two ranks in MEMCTL_GROUP=server, one stopped", flush=True)
    a = Worker(MEMCTL_GROUP="server")
    b = Worker(MEMCTL_GROUP="server")
    rc, out, _ = memctl("pause", "--group", "server", "--tags", "weights", "--stage", "cpu")
    expect(rc == 0 and "2 of 2" in out, "group pause: %s" % out.strip().splitlines()[-1])
    rc, out, _ = memctl("resume", "--group", "server", "--tags", "weights")
    expect(rc == 0, "group resume")
    expect(a.ask("check")["identical"] and b.ask("check")["identical"], "both ranks identical after resume")
    a_before = gpu_used_by(a.pid)
    os.kill(b.pid, signal.SIGSTOP)
    rc, out, took = memctl("pause", "--group", "server", "--tags", "weights", "--stage", "cpu",
                           "--timeout", "5")
    expect(rc == 1, "exit 1 with a stopped rank (got %d)" % rc)
    expect(took < 7.0, "returned within the timeout plus margin (%.2f s)" % took)
    expect(("%d" % b.pid) in out and "ETIMEDOUT" in out, "the stopped rank is named: %s" % out.strip().replace("\n", " | "))
    a_paused = gpu_used_by(a.pid)
    # All-or-nothing: the stopped rank cannot take part, so the running
    # one is put back (its gate opened, nothing released).
    expect(abs(a_before - a_paused) < 1000, "the running rank was put back, nothing released "
           "(%d -> %d MiB)" % (a_before, a_paused))
    expect("put back" in out, "the CLI says the others were put back: %s" % out.strip().replace("\n", " | "))
    figures.append(("group pause with a stopped rank: time, exit", "%.2f s, %d" % (took, rc)))
    os.kill(b.pid, signal.SIGCONT)
    rc, out, _ = memctl("pause", "--group", "server", "--tags", "weights", "--stage", "cpu")
    expect(rc == 0, "retry after SIGCONT succeeds: %s" % out.strip().splitlines()[-1])
    rc, out, _ = memctl("resume", "--group", "server", "--tags", "weights")
    expect(rc == 0, "group resume after retry")
    expect(a.ask("check")["identical"] and b.ask("check")["identical"], "both ranks identical at the end")
    a.quit()
    b.quit()


def main(scenarios, name):
    for fn in scenarios:
        try:
            fn()
        except Exception as e:  # a crash is a failure, reported with the rest
            expect(False, "%s raised %r" % (fn.__name__, e))
    card = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                          capture_output=True, text=True).stdout.strip().splitlines()
    print("\n| %s figure (%s) | value |\n|---|---|" % (name, card[0] if card else "GPU"))
    for k, v in figures:
        print("| %s | %s |" % (k, v))
    print("%s: %d passed, %d failed" % (name, 0 if failures else 1, 1 if failures else 0))
    sys.exit(1 if failures else 0)


# test/gpu/test_http_torch.py imports the helpers above.
if __name__ == "__main__":
    main((scenario_tagged, scenario_default_tag, scenario_group), "torch")
