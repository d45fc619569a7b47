# SPDX-License-Identifier: Apache-2.0
"""A JAX program that knows nothing of memctl, for test_jax.py: about 1 GiB
of float32 parameters on the device, a jitted function of them and an
input, its result taken once as the reference. Run under
LD_PRELOAD=libmemctl.so with MEMCTL_DEFAULT_TAG.

stdin commands, one JSON line answered to each:
  check  run the function again and read the parameters back: both must
         equal the reference bit for bit
  quit
"""
import json
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np


def say(**kw):
    sys.stdout.write(json.dumps(kw) + "\n")
    sys.stdout.flush()


D, LAYERS = 4096, 16  # 16 matrices of 64 MiB
keys = jax.random.split(jax.random.PRNGKey(1234), LAYERS + 1)
params = [jax.random.normal(k, (D, D), dtype=jnp.float32) / 64.0 for k in keys[:LAYERS]]
x = jax.random.normal(keys[LAYERS], (256, D), dtype=jnp.float32)


@jax.jit
def forward(ps, v):
    for w in ps:
        v = jnp.tanh(v @ w)
    return v


reference = np.asarray(forward(params, x))
host_params = [np.asarray(p) for p in params]
param_bytes = sum(p.size * p.dtype.itemsize for p in params)
say(ready=True, pid=os.getpid(), param_bytes=param_bytes, device=str(jax.devices()[0]),
    backend=jax.default_backend())

for line in sys.stdin:
    cmd = line.strip()
    if cmd == "check":
        out = np.asarray(forward(params, x))
        same_out = bool(np.array_equal(out, reference))
        same_params = all(np.array_equal(np.asarray(p), h) for p, h in zip(params, host_params))
        say(identical=same_out and same_params,
            detail="result %s, parameters %s" % ("same" if same_out else "DIFFERENT",
                                                 "same" if same_params else "DIFFERENT"))
    elif cmd == "quit":
        break
