# SPDX-License-Identifier: Apache-2.0
"""A small decoder-only transformer server for the GPU suite.

Random bf16 weights (about 4.6 GiB with the default 10 layers; no
downloads) built inside memctl.region("weights"), a KV cache inside
memctl.region("kv_cache"), one decode step captured in a CUDA graph. With
--no-import it never imports memctl: run it with MEMCTL_DEFAULT_TAG
instead. --layers N sets the depth; --no-pool opens the regions without a
per-tag MemPool (memory PyTorch maps itself is then tagged as it is mapped).

stdin commands, one JSON line answered to each:
  check  re-run the prefill (the KV cache is scratch), replay the graph,
         compare the logits with those taken before any pause, bit for bit
  mem    free/total device memory as the driver reports it
  pool   the MemPool trap: see test_pool_isolation in test_torch.py
  quit
"""
import json
import math
import os
import sys

import torch

USE_MEMCTL = "--no-import" not in sys.argv
USE_POOL = "--no-pool" not in sys.argv
if USE_MEMCTL:
    import memctl


def flag_value(name, default):
    if name in sys.argv and sys.argv.index(name) + 1 < len(sys.argv):
        return int(sys.argv[sys.argv.index(name) + 1])
    return default


H, LAYERS, HEADS, FFN, VOCAB = 4096, flag_value("--layers", 10), 32, 11008, 32000
BATCH, SEQ, PROMPT = 8, 256, 16
HD = H // HEADS


def region(tag):
    if USE_MEMCTL:
        return memctl.region(tag, pool=USE_POOL)
    import contextlib
    return contextlib.nullcontext()


def say(**kw):
    sys.stdout.write(json.dumps(kw) + "\n")
    sys.stdout.flush()


torch.manual_seed(1234)
gen = torch.Generator(device="cuda").manual_seed(1234)


def rand(*shape):
    # In place: no float32 temporaries cached in the weights pool.
    return torch.empty(*shape, device="cuda", dtype=torch.bfloat16).normal_(0.0, 0.02, generator=gen)


with region("weights"):
    W = {"emb": rand(VOCAB, H), "head": rand(H, VOCAB), "norm": torch.ones(H, device="cuda", dtype=torch.bfloat16)}
    for l in range(LAYERS):
        for name, shape in (("wq", (H, H)), ("wk", (H, H)), ("wv", (H, H)), ("wo", (H, H)),
                            ("w1", (H, FFN)), ("w3", (H, FFN)), ("w2", (FFN, H))):
            W["%s%d" % (name, l)] = rand(*shape)
        W["n1_%d" % l] = torch.ones(H, device="cuda", dtype=torch.bfloat16)
        W["n2_%d" % l] = torch.ones(H, device="cuda", dtype=torch.bfloat16)
weight_bytes = sum(t.numel() * t.element_size() for t in W.values())

with region("kv_cache"):
    KV = torch.zeros(LAYERS, 2, BATCH, SEQ, HEADS, HD, device="cuda", dtype=torch.bfloat16)
kv_bytes = KV.numel() * KV.element_size()

tok = torch.zeros(BATCH, dtype=torch.long, device="cuda")
pos = torch.zeros((), dtype=torch.long, device="cuda")
prompt = torch.randint(0, VOCAB, (BATCH, PROMPT + 1), device="cuda", generator=gen)
positions = torch.arange(SEQ, device="cuda")


def rms(x, w):
    xf = x.float()
    return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + 1e-6)).to(x.dtype) * w


def step():
    x = W["emb"][tok]
    valid = positions <= pos                                  # [SEQ]
    for l in range(LAYERS):
        h = rms(x, W["n1_%d" % l])
        q = (h @ W["wq%d" % l]).view(BATCH, HEADS, HD)
        k = (h @ W["wk%d" % l]).view(BATCH, 1, HEADS, HD)
        v = (h @ W["wv%d" % l]).view(BATCH, 1, HEADS, HD)
        KV[l, 0].index_copy_(1, pos.view(1), k)
        KV[l, 1].index_copy_(1, pos.view(1), v)
        # where(), not multiplication: unwritten cache slots may hold
        # anything (NaN too) and must not leak into the result.
        keys = torch.where(valid.view(1, SEQ, 1, 1), KV[l, 0], 0)
        vals = torch.where(valid.view(1, SEQ, 1, 1), KV[l, 1], 0)
        s = torch.einsum("bhd,bshd->bhs", q.float(), keys.float()) / math.sqrt(HD)
        s = torch.where(valid.view(1, 1, SEQ), s, float("-inf"))
        p = torch.softmax(s, dim=-1)
        att = torch.einsum("bhs,bshd->bhd", p, vals.float()).to(torch.bfloat16)
        x = x + att.reshape(BATCH, H) @ W["wo%d" % l]
        h = rms(x, W["n2_%d" % l])
        x = x + (torch.nn.functional.silu(h @ W["w1%d" % l]) * (h @ W["w3%d" % l])) @ W["w2%d" % l]
    return rms(x, W["norm"]) @ W["head"]


def prefill():
    for t in range(PROMPT):
        tok.copy_(prompt[:, t])
        pos.fill_(t)
        step()
    tok.copy_(prompt[:, PROMPT])
    pos.fill_(PROMPT)


with torch.no_grad():
    prefill()
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        logits = step()
    prefill()
    graph.replay()
    torch.cuda.synchronize()
    reference = logits.clone()

free, total = torch.cuda.mem_get_info()
say(ready=True, pid=os.getpid(), weight_bytes=weight_bytes, kv_bytes=kv_bytes,
    free=free, total=total, logits_sum=float(reference.float().sum()))

for line in sys.stdin:
    cmd = line.strip()
    if cmd == "check":
        with torch.no_grad():
            prefill()
            graph.replay()
            torch.cuda.synchronize()
        same = bool(torch.equal(logits, reference))
        diff = float((logits.float() - reference.float()).abs().max())
        say(identical=same, max_diff=diff, finite=bool(torch.isfinite(logits).all()))
    elif cmd == "mem":
        free, total = torch.cuda.mem_get_info()
        say(free=free, total=total, reserved=torch.cuda.memory_reserved())
    elif cmd == "pool":
        # The caching allocator's trap: a block freed under one tag is
        # reused for a tensor of another unless each tag has its own pool.
        out = {}
        for use_pool in (False, True):
            # A tag of its own per round: the first round's tagged block
            # stays in the default pool's cache afterwards.
            tag = "trap_pool" if use_pool else "trap_nopool"
            with memctl.region(tag, pool=use_pool):
                a = torch.empty(64 << 20, dtype=torch.uint8, device="cuda")
            old = a.data_ptr()
            del a
            b = torch.full((64 << 20,), 7, dtype=torch.uint8, device="cuda")
            out["pool" if use_pool else "no_pool"] = (b.data_ptr() == old)
            if use_pool:
                torch.cuda.synchronize()
                memctl.pause(tag)
                out["untagged_survives_pause"] = bool((b == 7).all())
                memctl.resume(tag)
            del b
            torch.cuda.synchronize()
        say(reused=out)
    elif cmd == "quit":
        break
