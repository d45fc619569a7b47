# SPDX-License-Identifier: Apache-2.0
"""The PyTorch case of issue 12: a transformer of >= 8 GiB of bf16 weights,
paused and resumed from outside with the memctl CLI, against the pinned copy
limits measured in the same worker process.

A worker process (this script with --worker) runs under
LD_PRELOAD=libmemctl.so with MEMCTL_LOG=debug and builds a random-init
model on the GPU from a config, nothing downloaded: transformers'
LlamaForCausalLM (hidden 4096, intermediate 14336, 32 heads, vocab 32000,
LAYERS layers: 8.65 GiB with the default 18), or, where transformers is not
importable, a stack of torch.nn.Linear of the same shapes (said so). Before
the model it measures the copy limits: 4 GiB between a pinned host tensor
and the device, one copy or 64 MiB pieces on 4 streams, best of 3 after a
warm-up. Two modes, one worker each, one after the other:
  regions      the model built inside memctl.region("weights");
  default tag  the same model unmodified, under MEMCTL_DEFAULT_TAG=model
               (every allocation tagged as the caching allocator makes it).
Each: `memctl pause --tags TAG --stage cpu` and `memctl resume --tags TAG`
from outside, the first pause with nothing prepared, then CYCLES warm
cycles (medians); after every resume every parameter's bytes (weighted sums
over 8 MiB pieces) and a forward pass's logits must be bit-identical to
those taken before the first pause. memctl's time of each request comes
from its debug log line (`pause TAG: N allocations, B bytes in X ms (host
buffers Y, sync Z)`, without the CLI's start-up); the CLI call's wall time
is shown beside it.

Targets (ratios to the limit of the same worker): first staged pause in
regions mode >= 0.50, warm staged pause and resume in default-tag mode
>= 0.90, host RSS growth while staged <= staged bytes x 1.02 + 256 MiB; the
rest reported. A missed target is reported (MISSED), not a failure; the exit
status is 1 only when something failed (a CLI call, contents not identical,
the worker).

BENCH_TORCH_MODES=regions or =default runs one mode only; MEMCTL_* variables
in the environment (MEMCTL_SLAB=128M, say) reach the workers.

usage: make bench-torch [BENCH_TORCH_ARGS="LAYERS CYCLES"]
       python3 bench/torch_bench.py [BUILD_DIR [LAYERS [CYCLES]]]   (build 18 5)
Without an NVIDIA GPU, or without torch with CUDA, says so and exits 0.
"""
import contextlib
import json
import os
import queue
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
GiB = float(1 << 30)
MiB = float(1 << 20)
H, FFN, HEADS, VOCAB = 4096, 14336, 32, 32000
LIMIT_BYTES = 4 << 30
PIECE = 8 << 20          # bytes per checksum piece
CLI_TIMEOUT_S = 120      # memctl --timeout, per request
LOG_LINE = re.compile(r"memctl\[(\d+)\]: (pause|resume) (\S+): (\d+) allocations, (\d+) bytes "
                      r"in ([0-9.]+) ms \(host buffers ([0-9.]+), sync ([0-9.]+)\)")
# key (the worker's argument), label, tag, target of the first staged pause,
# target of the warm staged pause and resume (None: reported).
MODES = (("regions", "regions", "weights", 0.50, None),
         ("default", "default tag", "model", None, 0.90))


# ---- what needs no GPU: the debug log, the table, /proc -----------------

def log_entries(text, pid):
    """memctl's debug lines of pid's pause/resume requests, in order."""
    out = []
    for m in LOG_LINE.finditer(text):
        if int(m.group(1)) == pid:
            out.append({"verb": m.group(2), "tags": m.group(3), "allocations": int(m.group(4)),
                        "bytes": int(m.group(5)), "ms": float(m.group(6)),
                        "host_ms": float(m.group(7)), "sync_ms": float(m.group(8))})
    return out


def row(figure, value, limit, ratio, op=None, bound=None):
    """A table row; op is ">=" or "<=" against bound, or None (reported)."""
    if op is None:
        target, ok = "report", None
    else:
        target = "%s %.2f" % (op, bound)
        ok = ratio is not None and (ratio >= bound if op == ">=" else ratio <= bound)
    return {"figure": figure, "value": value, "limit": limit, "ratio": ratio,
            "target": target, "ok": ok}


def table(rows):
    lines = ["| figure | memctl | limit, same run | ratio | target | |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        ratio = "-" if r["ratio"] is None else "%.3f" % r["ratio"]
        verdict = "" if r["ok"] is None else "met" if r["ok"] else "MISSED"
        lines.append("| %s | %s | %s | %s | %s | %s |" % (
            r["figure"], r["value"], r["limit"], ratio, r["target"], verdict))
    return "\n".join(lines)


def rss_bytes(pid):
    """VmRSS of pid in bytes, or None."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def ratio_of(a, b):
    return a / b if a is not None and b else None


def median_step(steps):
    """The step of median memctl time (the upper one of an even count)."""
    ordered = sorted(steps, key=lambda s: s["s"])
    return ordered[len(ordered) // 2] if ordered else None


def split_text(s):
    """How a request's time splits, from its debug line."""
    if s is None:
        return "not measured"
    if s["log"] is None:
        return "%.1f ms (%s; no debug line found), CLI call %.1f ms" % (
            s["s"] * 1e3, s["source"], s["wall"] * 1e3)
    lg = s["log"]
    rest = lg["ms"] - lg["host_ms"] - lg["sync_ms"]
    return ("%.1f ms in memctl: host buffers %.1f ms (%.0f%%), sync %.1f ms, the rest %.1f ms "
            "(%d allocations); CLI call %.1f ms" % (
                lg["ms"], lg["host_ms"], 100.0 * lg["host_ms"] / lg["ms"] if lg["ms"] else 0.0,
                lg["sync_ms"], rest, lg["allocations"], s["wall"] * 1e3))


# ---- the worker: runs under LD_PRELOAD, answers JSON lines --------------

def copy_limits(torch):
    """Pinned copy bandwidth each way, GiB/s: one copy or 64 MiB pieces on 4
    streams, best of 3 after a warm-up; everything given back after."""
    dev = torch.empty(LIMIT_BYTES, dtype=torch.uint8, device="cuda")
    host = torch.empty(LIMIT_BYTES, dtype=torch.uint8, pin_memory=True)
    dev.fill_(1)
    streams = [torch.cuda.Stream() for _ in range(4)]

    def best(d2h, nstreams, piece):
        top = 0.0
        for rep in range(4):
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            for i, off in enumerate(range(0, LIMIT_BYTES, piece)):
                with torch.cuda.stream(streams[i % nstreams]):
                    if d2h:
                        host[off:off + piece].copy_(dev[off:off + piece], non_blocking=True)
                    else:
                        dev[off:off + piece].copy_(host[off:off + piece], non_blocking=True)
            torch.cuda.synchronize()
            if rep > 0:
                top = max(top, LIMIT_BYTES / GiB / (time.perf_counter() - t0))
        return top

    d2h = max(best(True, 1, LIMIT_BYTES), best(True, 4, 64 << 20))
    h2d = max(best(False, 1, LIMIT_BYTES), best(False, 4, 64 << 20))
    del dev, host, streams
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    host_empty = getattr(torch._C, "_host_emptyCache", None)
    if host_empty is not None:
        host_empty()  # the pinned 4 GiB back to the system, out of the RSS
    return d2h, h2d


def linear_stack(torch, layers):
    """The fallback model: Llama's shapes in plain torch.nn.Linear layers."""
    nn, F = torch.nn, torch.nn.functional

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.q, self.k, self.v, self.o = (nn.Linear(H, H, bias=False) for _ in range(4))
            self.gate = nn.Linear(H, FFN, bias=False)
            self.up = nn.Linear(H, FFN, bias=False)
            self.down = nn.Linear(FFN, H, bias=False)

        def forward(self, x):
            h = F.layer_norm(x, (H,))
            x = x + self.o(self.q(h) + self.k(h) + self.v(h))
            h = F.layer_norm(x, (H,))
            return x + self.down(F.silu(self.gate(h)) * self.up(h))

    class Stack(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(VOCAB, H)
            self.blocks = nn.ModuleList(Block() for _ in range(layers))
            self.head = nn.Linear(H, VOCAB, bias=False)

        def forward(self, ids):
            x = self.emb(ids)
            for b in self.blocks:
                x = b(x)
            return self.head(F.layer_norm(x, (H,)))

    return Stack()


def hf_forward(model):
    def forward(ids):
        try:
            out = model(input_ids=ids, use_cache=False)
        except TypeError:  # a version without use_cache
            out = model(input_ids=ids)
        return out.logits if hasattr(out, "logits") else out[0]
    return forward


def build_model(torch, memctl, layers):
    """(model, forward(ids) -> logits, what was built), in bf16 on the GPU,
    inside region("weights") when memctl is given."""
    try:
        import transformers
        from transformers import LlamaConfig, LlamaForCausalLM
        why = None
    except Exception as e:  # any failure to import is a reason to fall back
        why = "transformers not importable: %s" % e
    region = memctl.region("weights") if memctl is not None else contextlib.nullcontext()
    old = torch.get_default_dtype()
    torch.manual_seed(1234)
    torch.set_default_dtype(torch.bfloat16)
    try:
        with region, torch.device("cuda"):
            if why is None:
                try:
                    config = LlamaConfig(vocab_size=VOCAB, hidden_size=H, intermediate_size=FFN,
                                         num_hidden_layers=layers, num_attention_heads=HEADS,
                                         num_key_value_heads=HEADS, max_position_embeddings=2048,
                                         tie_word_embeddings=False)
                    model = LlamaForCausalLM(config)
                    return (model.eval(), hf_forward(model),
                            "transformers %s LlamaForCausalLM" % transformers.__version__)
                except Exception as e:
                    why = "LlamaForCausalLM(config) failed: %s" % e
                    model = None
            model = linear_stack(torch, layers)
            return model.eval(), model, "a stack of torch.nn.Linear (%s)" % why
    finally:
        torch.set_default_dtype(old)


class Probe:
    """Every parameter's and buffer's bytes, as a weighted and a plain sum
    per 8 MiB piece (a piece moved or changed changes them), and the logits
    of one forward pass; taken once before any pause, compared after."""

    def __init__(self, torch, model, forward):
        self.torch = torch
        self.tensors = list(model.parameters()) + list(model.buffers())
        self.forward = forward
        gen = torch.Generator(device="cuda").manual_seed(1234)
        self.ids = torch.randint(0, VOCAB, (1, 64), device="cuda", generator=gen)
        self.weights = torch.arange(PIECE, device="cuda", dtype=torch.int64) % 65521 + 1
        self.ref_sums, self.bounds = self.sums()
        # A forward pass that fails or differs from itself before any pause
        # leaves the parameters' bytes as the only check (said in the report).
        self.forward_error, self.deterministic = None, False
        try:
            first, second = self.logits(), self.logits()
            self.deterministic = self.same(first, second)
            self.ref_logits = first
        except Exception as e:
            self.forward_error = "%s: %s" % (type(e).__name__, e)

    def sums(self):
        torch, out, bounds = self.torch, [], [0]
        for t in self.tensors:
            flat = t.detach().reshape(-1).view(torch.uint8)
            for off in range(0, flat.numel(), PIECE):
                v = flat[off:off + PIECE].to(torch.int64)
                out.append(v.sum())
                out.append((v * self.weights[:v.numel()]).sum())
            bounds.append(len(out))
        return torch.stack(out).cpu(), bounds

    def logits(self):
        with self.torch.no_grad():
            out = self.forward(self.ids)
        self.torch.cuda.synchronize()
        return out

    def same(self, a, b):
        torch = self.torch
        return a.shape == b.shape and a.dtype == b.dtype and torch.equal(
            a.detach().reshape(-1).view(torch.uint8), b.detach().reshape(-1).view(torch.uint8))

    def check(self):
        sums, _ = self.sums()
        b = self.bounds
        bad = [i for i in range(len(b) - 1)
               if not self.torch.equal(sums[b[i]:b[i + 1]], self.ref_sums[b[i]:b[i + 1]])]
        logits = self.same(self.logits(), self.ref_logits) if self.deterministic else None
        return {"params_identical": not bad, "bad_tensors": len(bad),
                "first_bad": bad[0] if bad else None, "logits_identical": logits}


def worker_ready(torch, memctl, layers):
    d2h, h2d = copy_limits(torch)
    t0 = time.perf_counter()
    model, forward, builder = build_model(torch, memctl, layers)
    torch.cuda.synchronize()
    build_s = time.perf_counter() - t0
    probe = Probe(torch, model, forward)
    params = list(model.parameters())
    free, total = torch.cuda.mem_get_info()
    info = {"ready": True, "pid": os.getpid(), "builder": builder, "layers": layers,
            "param_bytes": sum(p.numel() * p.element_size() for p in params),
            "param_tensors": len(params), "dtypes": sorted({str(p.dtype) for p in params}),
            "build_s": build_s, "d2h": d2h, "h2d": h2d, "deterministic": probe.deterministic,
            "forward_error": probe.forward_error,
            "torch": torch.__version__, "device": torch.cuda.get_device_name(),
            "free": free, "total": total}
    return probe, info


def worker(mode, layers):
    # stdout carries the answers alone: anything a library prints goes to stderr.
    proto = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    def say(**kw):
        proto.write(json.dumps(kw) + "\n")
        proto.flush()

    try:
        import torch
    except Exception as e:
        return say(error="torch is not importable: %s" % e, skip=True)
    if not torch.cuda.is_available():
        return say(error="torch sees no CUDA device", skip=True)
    try:
        memctl = None
        if mode == "regions":
            import memctl
        probe, info = worker_ready(torch, memctl, layers)
    except Exception:
        return say(error=traceback.format_exc())
    say(**info)
    for line in sys.stdin:
        cmd = line.strip()
        if cmd == "check":
            try:
                say(**probe.check())
            except Exception:
                say(error=traceback.format_exc())
        elif cmd == "quit":
            break


# ---- the driver: starts workers, runs the CLI, prints the table ---------

class Worker:
    """A worker process: answers on stdout (read by a thread, so that every
    wait has a deadline), memctl's debug log on stderr, kept in a file."""

    def __init__(self, argv, env, err_path):
        self.err_path, self.pos = err_path, 0
        self.err = open(err_path, "wb")
        self.p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=self.err, text=True, env=env)
        self.lines = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.pid = self.p.pid

    def _read(self):
        for line in self.p.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def answer(self, timeout):
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise RuntimeError("no answer from the worker within %d s; its stderr ends:\n%s"
                                   % (timeout, self.tail()))
            if line is None:
                self.p.wait(timeout=30)
                raise RuntimeError("the worker exited (status %s); its stderr ends:\n%s"
                                   % (self.p.returncode, self.tail()))
            line = line.strip()
            if line.startswith("{"):
                try:
                    return json.loads(line)
                except ValueError:
                    pass

    def ask(self, cmd, timeout=300):
        try:
            self.p.stdin.write(cmd + "\n")
            self.p.stdin.flush()
        except OSError as e:
            raise RuntimeError("cannot talk to the worker (%s); its stderr ends:\n%s"
                               % (e, self.tail()))
        return self.answer(timeout)

    def new_log(self):
        """Whole lines its stderr gained since the last call."""
        with open(self.err_path, "rb") as f:
            f.seek(self.pos)
            data = f.read()
        end = data.rfind(b"\n") + 1
        self.pos += end
        return data[:end].decode("utf-8", "replace")

    def tail(self, n=3000):
        try:
            with open(self.err_path, "rb") as f:
                return f.read().decode("utf-8", "replace")[-n:]
        except OSError:
            return ""

    def stop(self):
        try:
            self.p.stdin.write("quit\n")
            self.p.stdin.flush()
        except OSError:
            pass
        try:
            self.p.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait(timeout=30)
        self.err.close()


def cli_lib_path(build, memctl_bin, into):
    """The directory of the CLI's libraries this machine lacks (copied from
    BUILD/gpu/cli-lib, as test/gpu/run.sh does), or None when none lack."""
    src = os.path.join(build, "gpu", "cli-lib")
    if not os.path.isdir(src) or shutil.which("ldd") is None:
        return None
    os.makedirs(into, exist_ok=True)
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = into + (":" + env["LD_LIBRARY_PATH"] if env.get("LD_LIBRARY_PATH") else "")
    for _ in range(6):
        out = subprocess.run(["ldd", memctl_bin], capture_output=True, text=True, env=env).stdout
        missing = [line.split()[0] for line in out.splitlines() if "not found" in line]
        if not missing:
            break
        for lib in missing:
            if not os.path.exists(os.path.join(src, lib)):
                return into if os.listdir(into) else None
            shutil.copy(os.path.join(src, lib), os.path.join(into, lib))
    return into if os.listdir(into) else None


class Cli:
    def __init__(self, build, work):
        self.bin = os.path.join(build, "memctl")
        self.env = dict(os.environ)
        self.env.pop("LD_PRELOAD", None)
        self.env["MEMCTL_RUNTIME_DIR"] = os.path.join(work, "run")
        libs = cli_lib_path(build, self.bin, os.path.join(work, "cli-lib"))
        if libs:
            old = self.env.get("LD_LIBRARY_PATH")
            self.env["LD_LIBRARY_PATH"] = libs + (":" + old if old else "")

    def __call__(self, *args, timeout=CLI_TIMEOUT_S + 60):
        t0 = time.perf_counter()
        try:
            r = subprocess.run([self.bin] + list(args), capture_output=True, text=True,
                               env=self.env, timeout=timeout)
            rc, out = r.returncode, r.stdout + r.stderr
        except (subprocess.TimeoutExpired, OSError) as e:
            rc, out = -1, "memctl %s: %s" % (" ".join(args), e)
        return rc, out, time.perf_counter() - t0


def reply_of(out, pid):
    """The JSON line the CLI printed for pid (--json), or None."""
    for line in out.splitlines():
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if isinstance(obj, dict) and obj.get("pid") == pid:
            return obj
    return None


def tag_status(cli, pid, tag):
    """(the tag's row, the whole reply) of memctl status; ({}, {}) if it failed."""
    rc, out, _ = cli("status", "--json", "-p", str(pid))
    st = reply_of(out, pid) or {}
    for t in st.get("tags", []):
        if t.get("tag") == tag:
            return t, st
    return {}, st


def step(cli, w, verb, tag):
    """One CLI request against the worker, with memctl's own time of it."""
    args = [verb, "--tags", tag] + (["--stage", "cpu"] if verb == "pause" else [])
    rc, out, wall = cli(*(args + ["-p", str(w.pid), "--json", "--timeout", str(CLI_TIMEOUT_S)]))
    reply = reply_of(out, w.pid)
    log, deadline = None, time.monotonic() + 2.0
    while log is None and time.monotonic() < deadline:
        found = [e for e in log_entries(w.new_log(), w.pid) if e["verb"] == verb]
        log = found[-1] if found else None
        if log is None:
            time.sleep(0.05)
    if log is not None:
        s, source = log["ms"] / 1e3, "debug log"
    elif reply is not None and "ms" in reply:
        s, source = float(reply["ms"]) / 1e3, "reply"
    else:
        s, source = wall, "CLI wall"
    nbytes = (reply or {}).get("copied_bytes") or (log or {}).get("bytes") or 0
    ok = rc == 0 and reply is not None and reply.get("ok") is True
    return {"verb": verb, "ok": ok, "rc": rc, "out": out.strip(), "wall": wall, "reply": reply,
            "log": log, "s": s, "source": source, "bytes": nbytes}


class Mode:
    """One worker's run: what was measured and what failed."""

    def __init__(self, key, label, tag):
        self.key, self.label, self.tag = key, label, tag
        self.info, self.failures, self.notes = {}, [], []
        self.first_pause = self.first_resume = None
        self.warm = []          # (pause step, resume step)
        self.tagged = self.staged_status = {}
        self.untagged = None
        self.rss_before, self.rss_staged = None, []
        self.checks, self.contents_bad = 0, False

    def fail(self, what):
        self.failures.append(what)
        print("  FAIL %s" % what, flush=True)


def verify(w, m, when):
    chk = w.ask("check")
    m.checks += 1
    if "error" in chk:
        m.fail("%s: the check raised: %s" % (when, chk["error"]))
        return
    m.contents_bad |= not chk["params_identical"] or chk["logits_identical"] is False
    if not chk["params_identical"]:
        m.fail("%s: %d parameter tensors differ (first: #%s)"
               % (when, chk["bad_tensors"], chk["first_bad"]))
    elif chk["logits_identical"] is False:
        m.fail("%s: parameters identical but the logits differ" % when)


def cycle(cli, w, m, when):
    """A staged pause and a resume; (pause step, resume step), or None on failure."""
    p = step(cli, w, "pause", m.tag)
    print("  %s: pause %s" % (when, split_text(p)), flush=True)
    if not p["ok"]:
        m.fail("%s: memctl pause exited %d: %s" % (when, p["rc"], p["out"][-500:]))
        return None
    rss = rss_bytes(w.pid)
    if rss is not None:
        m.rss_staged.append(rss)
    if not m.staged_status:
        m.staged_status = tag_status(cli, w.pid, m.tag)[0]
    r = step(cli, w, "resume", m.tag)
    print("  %s: resume %s" % (when, split_text(r)), flush=True)
    if not r["ok"]:
        m.fail("%s: memctl resume exited %d: %s" % (when, r["rc"], r["out"][-500:]))
        return None
    verify(w, m, when)
    return p, r


def run_cycles(cli, w, m, cycles):
    m.tagged, st = tag_status(cli, w.pid, m.tag)
    m.untagged = (st.get("untagged") or {}).get("bytes")
    if not m.tagged:
        m.fail("memctl status shows nothing tagged '%s'" % m.tag)
        return
    m.rss_before = rss_bytes(w.pid)
    first = cycle(cli, w, m, "first cycle (nothing prepared)")
    if first is None:
        return
    m.first_pause, m.first_resume = first
    for i in range(cycles):
        warm = cycle(cli, w, m, "warm cycle %d" % (i + 1))
        if warm is None:
            return
        m.warm.append(warm)


def worker_env(key, build, work):
    env = dict(os.environ)
    env.update({"LD_PRELOAD": os.path.join(build, "libmemctl.so"),
                "MEMCTL_RUNTIME_DIR": os.path.join(work, "run"),
                "PYTHONPATH": os.path.join(ROOT, "python"), "MEMCTL_LOG": "debug",
                "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})
    env.pop("MEMCTL_DEFAULT_TAG", None)
    if key == "default":
        env["MEMCTL_DEFAULT_TAG"] = "model"
    return env


def worker_argv(key, layers):
    return [sys.executable, os.path.abspath(__file__), "--worker", key, str(layers)]


def run_mode(cli, build, work, spec, layers, cycles):
    key, label, tag = spec[:3]
    m = Mode(key, label, tag)
    print("\n[%s] a worker under LD_PRELOAD, MEMCTL_LOG=debug, %s" % (
        label, "MEMCTL_DEFAULT_TAG=model" if key == "default" else "memctl.region(\"weights\")"),
        flush=True)
    w = Worker(worker_argv(key, layers), worker_env(key, build, work),
               os.path.join(work, "worker-%s.err" % key))
    try:
        m.info = w.answer(300)
        if "error" in m.info:
            if not m.info.get("skip"):
                m.fail("the worker failed to start: %s" % m.info["error"])
            return m
        i = m.info
        print("  %s: %.2f GiB of parameters (%s) in %d tensors, built in %.1f s; limits D2H "
              "%.1f, H2D %.1f GiB/s" % (i["builder"], i["param_bytes"] / GiB, ",".join(i["dtypes"]),
                                        i["param_tensors"], i["build_s"], i["d2h"], i["h2d"]),
              flush=True)
        if i["param_bytes"] < 8 * GiB:
            m.notes.append("%.2f GiB of parameters: below issue 12's 8 GiB (more LAYERS)"
                           % (i["param_bytes"] / GiB))
        if i.get("forward_error"):
            m.notes.append("the forward pass failed (%s): logits not compared, parameters only"
                           % i["forward_error"][:300])
        elif not i["deterministic"]:
            m.notes.append("two forward passes before any pause differed: logits not compared, "
                           "parameters only")
        run_cycles(cli, w, m, cycles)
    except Exception as e:  # a crash of this mode is a failure, reported with the rest
        m.fail("%s: %s" % (type(e).__name__, e))
    finally:
        w.stop()
        # memctl's other messages from the worker (warnings), for the record
        others = [line.strip()[:300] for line in w.tail(200000).splitlines()
                  if line.startswith("memctl") and " allocations, " not in line]
        m.notes += ["worker log: " + line for line in others[:20]]
    return m


# ---- the report -----------------------------------------------------------

def gibs(nbytes, s):
    return nbytes / GiB / s if s else 0.0


def speed_row(m, what, s_step, limit_name, limit, op=None, bound=None):
    if s_step is None:
        return row("[%s] %s" % (m.label, what), "not measured", limit_name, None, op, bound)
    v = gibs(s_step["bytes"], s_step["s"])
    value = "%.2f GiB/s (%.0f ms; CLI call %.0f ms)" % (v, s_step["s"] * 1e3, s_step["wall"] * 1e3)
    return row("[%s] %s" % (m.label, what), value, "%s %.1f GiB/s" % (limit_name, limit),
               ratio_of(v, limit), op, bound)


def median_speed_step(steps):
    """A stand-in step with the median time of steps (bytes of the first)."""
    if not steps:
        return None
    return {"bytes": steps[0]["bytes"], "s": statistics.median(s["s"] for s in steps),
            "wall": statistics.median(s["wall"] for s in steps)}


def rss_row(m):
    staged = m.staged_status.get("staged_bytes") or (m.first_pause or {}).get("bytes") or 0
    label = "[%s] host RSS growth while staged" % m.label
    if m.rss_before is None or not m.rss_staged or not staged:
        return row(label, "not measured", "staged bytes x 1.02 + 256 MiB", None, "<=", 1.0)
    growth = max(m.rss_staged) - m.rss_before
    bound = staged * 1.02 + 256 * MiB
    return row(label, "%+.2f GiB (%.2f -> %.2f GiB)" % (
        growth / GiB, m.rss_before / GiB, max(m.rss_staged) / GiB),
        "%.2f GiB staged: bound %.2f GiB" % (staged / GiB, bound / GiB), growth / bound, "<=", 1.0)


def mode_rows(m, spec):
    first_target, warm_target = spec[3], spec[4]
    d2h, h2d = m.info.get("d2h", 0.0), m.info.get("h2d", 0.0)
    fop = ">=" if first_target is not None else None
    wop = ">=" if warm_target is not None else None
    return [
        speed_row(m, "first staged pause (nothing prepared)", m.first_pause, "D2H", d2h,
                  fop, first_target),
        speed_row(m, "first staged resume", m.first_resume, "H2D", h2d),
        speed_row(m, "staged pause, warm, median of %d" % len(m.warm),
                  median_speed_step([p for p, _ in m.warm]), "D2H", d2h, wop, warm_target),
        speed_row(m, "staged resume, warm, median of %d" % len(m.warm),
                  median_speed_step([r for _, r in m.warm]), "H2D", h2d, wop, warm_target),
        rss_row(m),
    ]


def mode_lines(m):
    t = m.tagged
    lines = ["[%s] tagged '%s': %s allocations, %.2f GiB (untagged device memory %s); "
             "staged while paused: %.2f GiB" % (
                 m.label, m.tag, t.get("allocations", "?"),
                 (t.get("active_bytes", 0) + t.get("paused_bytes", 0)) / GiB,
                 "?" if m.untagged is None else "%.2f GiB" % (m.untagged / GiB),
                 m.staged_status.get("staged_bytes", 0) / GiB)]
    lines.append("[%s] first pause: %s" % (m.label, split_text(m.first_pause)))
    lines.append("[%s] median warm pause: %s" % (
        m.label, split_text(median_step([p for p, _ in m.warm]))))
    lines.append("[%s] first resume: %s" % (m.label, split_text(m.first_resume)))
    if m.warm:
        lines.append("[%s] warm pauses, ms in memctl: %s; resumes: %s" % (
            m.label, ", ".join("%.0f" % (p["s"] * 1e3) for p, _ in m.warm),
            ", ".join("%.0f" % (r["s"] * 1e3) for _, r in m.warm)))
    lines += ["[%s] note: %s" % (m.label, n) for n in m.notes]
    return lines


def gpu_line():
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total",
                              "--format=csv,noheader"], capture_output=True, text=True,
                             timeout=60).stdout.strip().splitlines()
        return out[0] if out else "unknown GPU"
    except (OSError, subprocess.TimeoutExpired):
        return "unknown GPU"


def gpu_present():
    try:
        return subprocess.run(["nvidia-smi", "-L"], capture_output=True,
                              timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def report(modes):
    rows, failures = [], []
    for m, spec in modes:
        rows += mode_rows(m, spec)
        failures += ["[%s] %s" % (m.label, f) for f in m.failures]
    i = next((m.info for m, _ in modes if m.info.get("ready")), {})
    print("\n## memctl bench-torch: %s\n" % gpu_line())
    print("model: %s, %s layers, %.2f GiB of parameters in %s tensors; torch %s" % (
        i.get("builder", "?"), i.get("layers", "?"), i.get("param_bytes", 0) / GiB,
        i.get("param_tensors", "?"), i.get("torch", "?")))
    print("limits, pinned 4 GiB in each worker: " + "; ".join(
        "%s D2H %.1f, H2D %.1f GiB/s" % (m.label, m.info.get("d2h", 0), m.info.get("h2d", 0))
        for m, _ in modes))
    settings = " ".join("%s=%s" % (k, v) for k, v in sorted(os.environ.items())
                        if k.startswith("MEMCTL_"))
    print("memctl settings from the environment: %s" % (settings or "none (defaults)"))
    print("ratios use memctl's own time from its debug log line; the CLI call's wall time "
          "(its start-up included) is in brackets\n")
    print(table(rows))
    print()
    for m, _ in modes:
        for line in mode_lines(m):
            print(line)
    checks = sum(m.checks for m, _ in modes)
    bad = any(m.contents_bad for m, _ in modes)
    print("\ncontents verified after every resume (%d checks): %s" % (checks, "NO" if bad else "yes"))
    met = sum(1 for r in rows if r["ok"] is True)
    missed = sum(1 for r in rows if r["ok"] is False)
    print("targets: %d met, %d missed" % (met, missed))
    for f in failures:
        print("FAILED: %s" % f)
    return 1 if failures else 0


def main(argv):
    build = os.path.abspath(argv[0] if argv else os.path.join(ROOT, "build"))
    layers = int(argv[1]) if len(argv) > 1 else 18
    cycles = int(argv[2]) if len(argv) > 2 else 5
    if not gpu_present():
        print("bench-torch: no NVIDIA GPU on this machine; nothing measured")
        return 0
    for name in ("libmemctl.so", "memctl"):
        if not os.path.exists(os.path.join(build, name)):
            print("bench-torch: %s/%s is missing (make all)" % (build, name))
            return 1
    started = time.monotonic()
    work = tempfile.mkdtemp(prefix="memctl-bench-torch-")
    os.mkdir(os.path.join(work, "run"), 0o700)
    try:
        cli = Cli(build, work)
        rc, out, _ = cli("--version", timeout=60)
        if rc != 0:
            print("bench-torch: the memctl CLI does not run here: %s" % out.strip()[-500:])
            return 1
        print("bench-torch: %s, %d layers, %d warm cycles; build %s" % (
            gpu_line(), layers, cycles, build), flush=True)
        modes = []
        only = os.environ.get("BENCH_TORCH_MODES", "").split(",")
        for spec in MODES:
            if only != [""] and spec[0] not in only:
                continue
            m = run_mode(cli, build, work, spec, layers, cycles)
            if m.info.get("skip"):
                print("bench-torch: %s; nothing measured" % m.info["error"])
                return 0
            modes.append((m, spec))
        rc = report(modes)
        print("bench-torch: %.0f s in all" % (time.monotonic() - started))
        return rc
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(sys.argv[2], int(sys.argv[3]))
    else:
        sys.exit(main(sys.argv[1:]))
