# SPDX-License-Identifier: Apache-2.0
"""A Hugging Face transformers model generating in a loop, for the gate's GPU
proof (test_gate_hf.py drives it with the memctl CLI from outside).

A LlamaForCausalLM built from a config with random weights (nothing is
downloaded), its weights in memctl.region("weights"). One thread decodes
greedily, token by token, over and over: each step is a forward pass whose
next token is read back to the host, and the moment that read returns is
recorded (time.monotonic, CLOCK_MONOTONIC, the same clock as the
orchestrator's). Every generation is compared with the reference taken
before anything was paused.

stdout: one JSON line when ready ({"pid", "weight_bytes", "reference"}),
one when the first generation after start finished ({"running": true}), and
one after "stop" on stdin with everything the orchestrator checks.
"""
import json
import os
import sys
import threading
import time
import traceback

import torch
from transformers import LlamaConfig, LlamaForCausalLM

import memctl

NEW_TOKENS = 24
PROMPT = [1, 450, 4996, 17354, 1701, 29916, 432, 17204, 975, 278, 17366, 11203]


def say(**kw):
    sys.stdout.write(json.dumps(kw) + "\n")
    sys.stdout.flush()


def build():
    config = LlamaConfig(vocab_size=32000, hidden_size=2048, intermediate_size=5632,
                         num_hidden_layers=12, num_attention_heads=16, num_key_value_heads=16,
                         max_position_embeddings=512)
    torch.manual_seed(1234)
    dtype = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        with memctl.region("weights"), torch.device("cuda"):
            model = LlamaForCausalLM(config)
    finally:
        torch.set_default_dtype(dtype)
    model.eval()
    return model


def generate(model, steps):
    """Greedy decoding; `steps` gets the time each token reached the host."""
    ids = torch.tensor([PROMPT], device="cuda")
    past, out = None, []
    with torch.no_grad():
        for _ in range(NEW_TOKENS):
            res = model(input_ids=ids, past_key_values=past, use_cache=True)
            past = res.past_key_values
            nxt = res.logits[:, -1, :].argmax(-1)
            out.append(int(nxt.item()))
            steps.append(time.monotonic())
            ids = nxt.view(1, 1)
    return out


def main():
    model = build()
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    reference = generate(model, [])
    say(pid=os.getpid(), weight_bytes=weight_bytes, reference=reference)
    stop = threading.Event()
    state = {"runs": 0, "mismatches": 0, "error": None, "steps": [], "first": None}

    def loop():
        try:
            while not stop.is_set():
                got = generate(model, state["steps"])
                state["runs"] += 1
                if got != reference:
                    state["mismatches"] += 1
                    state["first"] = state["first"] or got
                if state["runs"] == 1:
                    say(running=True)
        except Exception:  # reported, not swallowed: the test fails on it
            state["error"] = traceback.format_exc()
            say(running=False, error=state["error"])

    worker = threading.Thread(target=loop)
    worker.start()
    for line in sys.stdin:
        if line.strip() == "stop":
            break
    stop.set()
    worker.join()
    torch.cuda.synchronize()
    say(runs=state["runs"], mismatches=state["mismatches"], error=state["error"],
        first_mismatch=state["first"], steps=state["steps"])


if __name__ == "__main__":
    main()
