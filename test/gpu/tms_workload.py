# SPDX-License-Identifier: Apache-2.0
"""An RL step written against torch_memory_saver's API, as SGLang, verl and
slime use it; test/gpu/test_tms.py runs it on memctl.

The inference engine keeps its weights in region("weights",
enable_cpu_backup=True), its KV cache in a nested region("kv_cache") (no
backup: rebuilt for every rollout), a lookup table made under disable()
after a freed temporary of the weights' region (never paused: read while
the engine is paused), and its decode step in a CUDA graph captured with
cuda_graph(tag="cuda_graph"). The trainer keeps its parameters and
optimizer state in region("train", enable_cpu_backup=True). Each
iteration, in verl's order: rollout (engine active, trainer paused) ->
pause the engine's weights, KV cache and graph -> resume the trainer,
train in the freed memory -> resume the engine's weights, push the
trained weights into them -> pause the trainer (not before: the push
reads its weights, and paused memory faults, as with torch_memory_saver)
-> resume the KV cache and graph. Prints one JSON line of results, which
must be bit-identical to a run that never paused.

Environment (set by the runner):
  TMS_WORKLOAD_NO_PAUSE=1    the reference: the same work, never paused
  TMS_WORKLOAD_HANDSHAKE=1   at checkpoints print {"checkpoint": ...} and
                             wait for a line on stdin (the runner looks
                             from outside with the memctl CLI meanwhile)
  TMS_WORKLOAD_HOOK_MODE=torch  hook_mode "torch": no LD_PRELOAD; the
                             graph is then captured with torch.cuda.graph
                             (torch_memory_saver too refuses a pauseable
                             graph in that mode)
  TMS_WORKLOAD_DIAG=1        diagnostics: before each step, print where
                             memctl has the memory of the tensors the step
                             reads (untagged, active, paused), and exit 3
                             instead of reading paused memory
"""
import ctypes
import errno
import hashlib
import json
import os
import struct
import sys

# Bit-identical results need deterministic cuBLAS, set before its first use.
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
import torch  # noqa: E402
from torch_memory_saver import torch_memory_saver  # noqa: E402

NO_PAUSE = os.environ.get("TMS_WORKLOAD_NO_PAUSE") == "1"
HANDSHAKE = os.environ.get("TMS_WORKLOAD_HANDSHAKE") == "1"
TORCH_MODE = os.environ.get("TMS_WORKLOAD_HOOK_MODE") == "torch"
DIAG = os.environ.get("TMS_WORKLOAD_DIAG") == "1"
if TORCH_MODE:
    torch_memory_saver.hook_mode = "torch"

H, F, LAYERS, VOCAB = 2048, 5632, 12, 8192
BATCH, STEPS, ITERATIONS, TRAIN_STEPS = 8, 24, 3, 4
ENGINE_TAGS = ("weights", "kv_cache", "cuda_graph")

torch.use_deterministic_algorithms(True)
torch.manual_seed(0)
gen = torch.Generator(device="cuda").manual_seed(0)
report = {"released": [], "backup_ok": None}


def checkpoint(name, **info):
    if not HANDSHAKE:
        return
    print(json.dumps(dict(checkpoint=name, pid=os.getpid(), **info)), flush=True)
    sys.stdin.readline()


def pause(tag):
    if not NO_PAUSE:
        torch_memory_saver.pause(tag)


def resume(tag):
    if not NO_PAUSE:
        torch_memory_saver.resume(tag)


def where(t):
    """Where memctl has t's memory (diagnostics only)."""
    import memctl
    host = ctypes.c_void_p()
    rc = memctl._load().memctl_host_copy(t.data_ptr(), 1, ctypes.byref(host))
    return {0: "paused(staged)", -errno.ENODATA: "paused(dropped)", -errno.EBUSY: "active",
            -errno.ENOENT: "untagged"}.get(rc, "error %d" % rc)


def guard(step, **tensors):
    """With TMS_WORKLOAD_DIAG=1: say where the tensors `step` reads are, and
    exit 3 rather than read paused memory (which faults, and the fault
    surfaces later, at some unrelated call)."""
    if not DIAG:
        return
    states = {name: where(t) for name, t in tensors.items()}
    print("diag %s: %s" % (step, " ".join("%s=%s" % kv for kv in states.items())), flush=True)
    paused = [name for name, state in states.items() if state.startswith("paused")]
    if paused:
        print("diag FAIL: %s reads paused memory: %s" % (step, ", ".join(paused)), flush=True)
        sys.exit(3)


def rand(*shape, dtype=torch.bfloat16, scale=0.02):
    return torch.empty(*shape, device="cuda", dtype=dtype).normal_(0.0, scale, generator=gen)


def digest(tensors):
    """A hash of the tensors' bytes (no numpy needed)."""
    h = hashlib.blake2b(digest_size=16)
    for t in tensors:
        c = t.detach().contiguous().cpu()
        h.update(ctypes.string_at(c.data_ptr(), c.numel() * c.element_size()))
    return h.hexdigest()


def warm_cublas():
    """cuBLAS takes its workspace from the caching allocator on first use
    (and again after a graph capture may have dropped it): outside every
    region, so that no pause takes it away."""
    torch.ones(64, 64, device="cuda") @ torch.ones(64, 64, device="cuda")


warm_cublas()
if DIAG:
    import memctl.tms
    print("diag torch %s; memctl.tms routes its MemPools itself: %s" % (
        torch.__version__, memctl.tms._route_calls(torch) is not None), flush=True)

# ---- the engine -----------------------------------------------------------
with torch_memory_saver.region(tag="weights", enable_cpu_backup=True):
    W = {"emb": rand(VOCAB, H), "head": rand(H, VOCAB)}
    with torch_memory_saver.region(tag="kv_cache"):            # nested: no backup
        KV = torch.zeros(LAYERS, BATCH, STEPS, H, device="cuda", dtype=torch.bfloat16)
    scratch = torch.empty(VOCAB, device="cuda", dtype=torch.int64)  # a loader's
    del scratch                                                # temporary, cached
    with torch_memory_saver.disable():                         # untagged
        LUT = torch.arange(VOCAB, device="cuda", dtype=torch.int64).flip(0).contiguous()
    for l in range(LAYERS):                                    # "weights" again
        W["w1_%d" % l] = rand(H, F)
        W["w2_%d" % l] = rand(F, H)
LUT_REF = LUT.clone()
guard("engine made", LUT=LUT, KV=KV, head=W["head"])
static_in = torch.zeros(BATCH, H, device="cuda", dtype=torch.bfloat16)


def mlp_head(x):
    for l in range(LAYERS):
        x = x + torch.nn.functional.gelu(x @ W["w1_%d" % l]) @ W["w2_%d" % l]
    return x @ W["head"]


def attend(h, l, t):
    KV[l, :, t] = h
    ctx = KV[l, :, : t + 1].float()                            # [B, t+1, H]
    s = torch.softmax(torch.einsum("bh,bth->bt", h.float(), ctx) / H ** 0.5, dim=-1)
    return torch.einsum("bt,bth->bh", s, ctx).to(torch.bfloat16)


side = torch.cuda.Stream()
side.wait_stream(torch.cuda.current_stream())
with torch.cuda.stream(side):
    for _ in range(3):
        mlp_head(static_in)
torch.cuda.current_stream().wait_stream(side)
graph = torch.cuda.CUDAGraph()
if TORCH_MODE:
    with torch.cuda.graph(graph):
        static_logits = mlp_head(static_in)
else:
    with torch_memory_saver.cuda_graph(graph, tag="cuda_graph"):
        static_logits = mlp_head(static_in)
warm_cublas()


def rollout(prompt):
    guard("rollout", KV=KV, emb=W["emb"], head=W["head"], LUT=LUT, logits=static_logits)
    KV.zero_()                        # the cache holds nothing across rollouts
    tok, out = prompt, [prompt]
    for t in range(STEPS - 1):
        h = W["emb"][tok]
        for l in range(LAYERS):
            h = h + attend(h, l, t)
        static_in.copy_(h)
        graph.replay()
        tok = LUT[static_logits.float().argmax(-1)]
        out.append(tok)
    return torch.stack(out, 1)        # [B, STEPS]


# ---- the trainer ------------------------------------------------------------
with torch_memory_saver.region(tag="train", enable_cpu_backup=True):
    T_in = rand(VOCAB, H, dtype=torch.float32).requires_grad_()
    T_out = rand(H, VOCAB, dtype=torch.float32).requires_grad_()
    opt = torch.optim.Adam([T_in, T_out], lr=1e-3, foreach=True)


def train(tokens):
    guard("train", T_in=T_in, T_out=T_out, tokens=tokens)
    losses = []
    with torch_memory_saver.region(tag="train", enable_cpu_backup=True):
        x = torch.nn.functional.one_hot(tokens[:, :-1].reshape(-1), VOCAB).float()
        y = tokens[:, 1:].reshape(-1)
        for _ in range(TRAIN_STEPS):
            opt.zero_grad(set_to_none=False)
            loss = torch.nn.functional.cross_entropy(torch.tanh(x @ T_in) @ T_out, y)
            loss.backward()
            opt.step()
            losses.append(struct.pack("<f", loss.item()).hex())
        del x, y, loss
    return losses


def push_weights():
    """The trained weights into the engine (update_weights_from_tensor)."""
    guard("push_weights", T_out=T_out, head=W["head"])
    with torch.no_grad():
        W["head"].add_((T_out.detach() * 1e-2).to(torch.bfloat16))


def free_bytes():
    torch.cuda.synchronize()
    return torch.cuda.mem_get_info()[0]


def check_backup():
    """While paused: the staged weights read back as CPU tensors."""
    ref = W["head"].detach().cpu()
    pause("weights")
    copied = torch_memory_saver.get_cpu_backup(W["head"])
    view = torch_memory_saver.get_cpu_backup(W["emb"], zero_copy=True)
    ok = copied is not None and torch.equal(copied, ref) and view is not None
    ok = ok and view.shape == W["emb"].shape and view.dtype == W["emb"].dtype
    resume("weights")
    ok = ok and torch.equal(view, W["emb"].cpu())
    del view
    return bool(ok)


pause("train")
torch.cuda.synchronize()
checkpoint("ready")
if not NO_PAUSE and not TORCH_MODE:
    report["backup_ok"] = check_backup()

all_tokens, all_losses, lut_ok = [], [], True
prompt = torch.randint(0, VOCAB, (BATCH,), device="cuda", generator=gen)
for it in range(ITERATIONS):
    with torch.no_grad():
        tokens = rollout(prompt)
    all_tokens.append(tokens)
    before = free_bytes()
    for tag in ENGINE_TAGS:
        pause(tag)
    report["released"].append(free_bytes() - before)
    if it == 0:
        checkpoint("engine_paused", released=report["released"][0])
    guard("the engine paused", LUT=LUT)
    lut_ok = lut_ok and torch.equal(LUT, LUT_REF)  # untagged: never paused
    resume("train")
    all_losses += train(tokens)
    resume("weights")                 # verl's order: the weights first,
    push_weights()                    # the trained weights into them,
    pause("train")                    # then the trainer out
    resume("kv_cache")
    resume("cuda_graph")
    guard("the engine resumed", LUT=LUT, KV=KV, head=W["head"])
    lut_ok = lut_ok and torch.equal(LUT, LUT_REF)
    prompt = tokens[:, -1]

torch.cuda.synchronize()
resume("train")
guard("digests", T_in=T_in, T_out=T_out, emb=W["emb"], head=W["head"])
report.update(
    tokens=digest(all_tokens),
    losses=all_losses,
    engine=digest(W[k] for k in sorted(W)),
    trainer=digest([T_in, T_out]),
    lut_ok=bool(lut_ok),
    weight_bytes=sum(t.numel() * t.element_size() for t in W.values()),
    kv_bytes=KV.numel() * KV.element_size(),
)
print(json.dumps(report), flush=True)
