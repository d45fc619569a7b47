# SPDX-License-Identifier: Apache-2.0
"""One rank of the gate's two-GPU proof (test_gate_nccl.py starts two).

Rank r owns GPU r. Its "weights" (memctl.region) hold known values; in a
loop it builds x from them, all-reduces x with NCCL and checks the result
on the GPU against what the sum over both ranks must be. Between
iterations it sleeps a little, as a server between requests does, so that
a group pause can find both ranks idle now and then; at any other moment
one rank may be inside a collective waiting for the other.

stdout: {"ready": rank} once initialised, and after "stop" on stdin a line
with the iterations done and the wrong results seen (both must be right).
"""
import json
import os
import sys
import threading
import time
import traceback

import torch
import torch.distributed as dist

import memctl

N = 1 << 24          # elements all-reduced per iteration
WEIGHTS = 1 << 28    # elements of weights (bf16: 512 MiB)


def say(**kw):
    sys.stdout.write(json.dumps(kw) + "\n")
    sys.stdout.flush()


def main():
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    torch.cuda.set_device(rank)
    dist.init_process_group("nccl", rank=rank, world_size=world,
                            device_id=torch.device("cuda", rank))
    src = torch.arange(WEIGHTS, device="cuda", dtype=torch.float32).remainder_(977).to(
        torch.bfloat16)
    with memctl.region("weights"):
        w = torch.empty_like(src)
    w.copy_(src)
    del src
    x = torch.empty(N, device="cuda", dtype=torch.float32)
    # sum over ranks of (w[:N] + r): world * w + sum(r)
    expected = w[:N].float() * world + sum(range(world))
    dist.barrier()
    say(ready=rank, pid=os.getpid())
    stop = threading.Event()
    state = {"iterations": 0, "wrong": 0, "error": None}

    flag = torch.zeros(1, device="cuda", dtype=torch.int32)

    def loop():
        try:
            while True:
                x.copy_(w[:N])
                x.add_(rank)
                dist.all_reduce(x)
                if not bool(torch.equal(x, expected)):
                    state["wrong"] += 1
                state["iterations"] += 1
                # Both ranks stop after the same iteration: a collective left
                # unmatched would hang the other one.
                flag.fill_(1 if stop.is_set() else 0)
                dist.all_reduce(flag, op=dist.ReduceOp.MAX)
                if int(flag.item()):
                    break
                time.sleep(0.002)
        except Exception:
            state["error"] = traceback.format_exc()

    worker = threading.Thread(target=loop)
    worker.start()
    for line in sys.stdin:
        if line.strip() == "stop":
            break
    stop.set()
    worker.join()
    # One more, after everything: the result must still be right.
    if state["error"] is None:
        try:
            torch.cuda.synchronize()
            dist.barrier()
            x.copy_(w[:N])
            x.add_(rank)
            dist.all_reduce(x)
            state["final_right"] = bool(torch.equal(x, expected))
        except Exception:
            state["error"] = traceback.format_exc()
    say(**state)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
