#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# make test-gpu: every GPU suite against the real driver, in one go, with a
# summary at the end. Runs prebuilt binaries (make gpu-build), so it also
# runs on a GPU machine without Criterion's headers.
# usage: sh test/gpu/run.sh BUILD_DIR
# MEMCTL_GPU_ONLY=TEXT runs only the checks whose name contains TEXT.
set -u
B=$(cd "${1:-build}" && pwd)
CUDA_HOME=${CUDA_HOME:-/usr/local/cuda}
export MEMCTL_RUNTIME_DIR=$(mktemp -d /tmp/memctl-gpu-XXXXXX)
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || exit 1

# The memctl CLI's libraries that this machine lacks (jansson,
# libmicrohttpd, theirs), from build/gpu/cli-lib: only those, so that
# nothing the machine has is shadowed for the programs under test.
need_cli_libs() {
	dir="$MEMCTL_RUNTIME_DIR/cli-lib"
	mkdir -p "$dir"
	for _ in 1 2 3 4 5 6; do
		missing=$(LD_LIBRARY_PATH="$dir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" ldd "$B/memctl" |
			awk '/not found/ {print $1}')
		[ -n "$missing" ] || break
		for lib in $missing; do
			cp -L "$B/gpu/cli-lib/$lib" "$dir/" ||
				{ echo "memctl needs $lib, which is not in $B/gpu/cli-lib"; return 1; }
		done
	done
	[ -z "$(ls "$dir")" ] || export LD_LIBRARY_PATH="$dir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
}
need_cli_libs || exit 1
# Our C programs find the shared runtime here; Criterion's libraries are
# given to its suite alone, so they never shadow anything Python loads.
CLIB="$CUDA_HOME/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
results=""
# A check that cannot run here (two GPUs on a one-GPU machine) exits 77:
# SKIP, not PASS.
run() {
	name=$1; shift
	case "$name" in *"${MEMCTL_GPU_ONLY:-}"*) ;; *) return 0 ;; esac
	echo; echo "=== $name"
	"$@"
	case $? in
	0) results="$results\n  PASS  $name" ;;
	77) results="$results\n  SKIP  $name" ;;
	*) results="$results\n  FAIL  $name" ;;
	esac
}
run "API suite (Criterion, real driver)" env LD_LIBRARY_PATH="$B/gpu/lib:$CLIB" \
	LD_PRELOAD="$B/libmemctl.so" "$B/gpu/test_e2e_api" --jobs 1
run "the simulated driver's rules hold on this driver" "$B/gpu/prog_driver_rules"
run "CUDA kernel + graph roundtrip" env LD_LIBRARY_PATH="$CLIB" LD_PRELOAD="$B/libmemctl.so" \
	"$B/gpu/gpu_roundtrip"
run "CLI against a CUDA program" env LD_LIBRARY_PATH="$CLIB" sh "$(dirname "$0")/cli_on_gpu.sh" "$B"
# The driver layer: programs that never call the shared runtime's cudaMalloc.
run "CLI against cuMemAlloc (linked driver)" sh "$(dirname "$0")/cli_on_gpu.sh" "$B" prog_drv_link
run "CLI against a program finding the driver only by cuGetProcAddress" \
	sh "$(dirname "$0")/cli_on_gpu.sh" "$B" prog_drv
run "CLI against the same, 11.3 cuGetProcAddress" env PROG_LOOKUP=v1 \
	sh "$(dirname "$0")/cli_on_gpu.sh" "$B" prog_drv
run "CLI against nvcc -cudart static (cudaMalloc)" sh "$(dirname "$0")/cli_on_gpu.sh" "$B" \
	prog_tenant_static
# Memory the program maps itself, and stream-ordered allocation.
run "CLI against a program mapping memory itself (cuMemCreate/cuMemMap, by lookup)" \
	env PROG_ALLOC=vmm sh "$(dirname "$0")/cli_on_gpu.sh" "$B" prog_drv
run "CLI against the same, linked" env PROG_ALLOC=vmm sh "$(dirname "$0")/cli_on_gpu.sh" "$B" \
	prog_drv_link
run "CLI against cuMemAllocAsync (driver API)" env PROG_ALLOC=async \
	sh "$(dirname "$0")/cli_on_gpu.sh" "$B" prog_drv
run "CLI against cudaMallocAsync (shared runtime)" env PROG_ASYNC=1 LD_LIBRARY_PATH="$CLIB" \
	sh "$(dirname "$0")/cli_on_gpu.sh" "$B"
run "CLI against cudaMallocAsync (nvcc -cudart static)" env PROG_ASYNC=1 \
	sh "$(dirname "$0")/cli_on_gpu.sh" "$B" prog_tenant_static
if python3 -c "import torch; assert torch.cuda.is_available()" 2>/dev/null; then
	run "PyTorch: regions, CUDA graph, default tag, group" python3 "$(dirname "$0")/test_torch.py" "$B"
	run "PyTorch driven through memctl serve (HTTP)" python3 "$(dirname "$0")/test_http_torch.py" "$B"
	run "torch_memory_saver's API: RL loop bit-identical, CLI from outside" \
		python3 "$(dirname "$0")/test_tms.py" "$B"
	run "PyTorch: expandable segments, cudaMallocAsync (driver layer)" \
		python3 "$(dirname "$0")/test_torch_driver.py" "$B"
	# The gate (issue 11): GPU work waits while paused, groups all-or-nothing.
	run "gate: NCCL all-reduces on two GPUs, group pause all-or-nothing" \
		python3 "$(dirname "$0")/test_gate_nccl.py" "$B"
else
	results="$results\n  SKIP  PyTorch and torch_memory_saver (torch with CUDA not importable)"
fi
if python3 -c "import jax; assert jax.default_backend() == 'gpu'" 2>/dev/null; then
	run "JAX: default tag, preallocation on and off" python3 "$(dirname "$0")/test_jax.py" "$B"
else
	results="$results\n  SKIP  JAX (jax with a GPU backend not importable)"
fi
if python3 -c "import torch, transformers; assert torch.cuda.is_available()" 2>/dev/null; then
	run "gate: transformers generating while the CLI pauses and resumes 20 times" \
		python3 "$(dirname "$0")/test_gate_hf.py" "$B"
else
	results="$results\n  SKIP  gate with transformers (torch with CUDA or transformers not importable)"
fi
rm -rf "$MEMCTL_RUNTIME_DIR"
printf "\n=== test-gpu summary$results\n"
case "$results" in *FAIL*) exit 1 ;; esac
exit 0
