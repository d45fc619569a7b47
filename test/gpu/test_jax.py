# SPDX-License-Identifier: Apache-2.0
"""JAX through memctl's driver layer on a GPU: XLA allocates with the
driver's cuMemAlloc (found by lookup), never with cudaMalloc. jax_worker.py
(about 1 GiB of parameters, a jitted function) runs unchanged under
MEMCTL_DEFAULT_TAG=model, once with XLA_PYTHON_CLIENT_PREALLOCATE=true (XLA
takes a share of the device at start, here 15%) and once with false (XLA
grows as it needs). Each: three cycles of a staged pause of "model" from
the CLI; device memory down by >= 99% of what XLA allocated (memctl's
tagged bytes, which must cover the parameters) and back after resume; the
function's result and the parameters bit-identical after every resume.
usage: python3 test/gpu/test_jax.py BUILD_DIR
"""
from gpu_common import GiB, Worker, cycles, expect, figures, run_all, status


def one(prealloc):
    name = "JAX, preallocate=%s" % prealloc
    print("\n[%s] XLA_PYTHON_CLIENT_PREALLOCATE=%s, MEMCTL_DEFAULT_TAG=model" % (name, prealloc),
          flush=True)
    w = Worker("jax_worker.py", MEMCTL_DEFAULT_TAG="model", XLA_PYTHON_CLIENT_PREALLOCATE=prealloc,
               XLA_PYTHON_CLIENT_MEM_FRACTION="0.15")
    tags, st = status(w.pid)
    tagged = tags.get("model", 0)
    expect(w.info["backend"] == "gpu", "%s: JAX runs on the GPU (%s)" % (name, w.info["device"]))
    expect(tagged >= w.info["param_bytes"], "%s: what XLA allocated is tagged (%.2f GiB tagged, "
           "%.2f GiB of parameters)" % (name, tagged / GiB, w.info["param_bytes"] / GiB))
    figures.append(("%s: tagged, not controlled" % name, "%.2f GiB, %.2f GiB"
                    % (tagged / GiB, st.get("uncontrolled_bytes", 0) / GiB)))
    if tagged > 0:
        cycles(w, name, 3, [["--tags", "model", "--stage", "cpu"]], "model", tagged)
    w.quit()


def scenario_preallocated():
    one("true")


def scenario_on_demand():
    one("false")


run_all("jax through the driver layer", (scenario_preallocated, scenario_on_demand))
