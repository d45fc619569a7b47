#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# make demo: a workload with tagged "weights" and "kv_cache" runs under
# LD_PRELOAD=libmemctl.so and the real memctl CLI drives it: status, staged
# pause, memory figures, resume, contents verified, a summary. Uses the
# NVIDIA GPU when there is one, the simulated device otherwise.
# usage: sh test/demo/demo.sh BUILD_DIR
set -u
B=$(cd "${1:-build}" && pwd)
CUDA_HOME=${CUDA_HOME:-/usr/local/cuda}
W=$(mktemp -d /tmp/memctl-demo-XXXXXX)
export MEMCTL_RUNTIME_DIR="$W/run"
mkdir -m 700 "$MEMCTL_RUNTIME_DIR"
trap 'rm -rf "$W"' EXIT

if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 &&
   [ -x "$B/gpu/prog_tenant" ]; then
	mode="GPU: $(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)"
	prog="$B/gpu/prog_tenant"
	export LD_LIBRARY_PATH="$CUDA_HOME/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
	nw=16 wsize=268435456   # 4 GiB of weights
else
	mode="simulated device (no NVIDIA GPU here; build/fake/libcuda.so.1 stands in)"
	prog="$B/test/prog_tenant"
	export LD_LIBRARY_PATH="$B/fake${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
	export FAKECUDA_STATE="$W/fakecuda.state" FAKECUDA_MEMORY=8G
	nw=8 wsize=134217728    # 1 GiB of weights
fi
echo "memctl demo on the $mode"
say() { printf '\n== %s\n' "$*"; }
cli() { printf '$ memctl %s\n' "$*"; "$B/memctl" "$@"; }
gib() { awk -v b="$1" 'BEGIN { printf "%.2f GiB", b / 1073741824 }'; }

mkfifo "$W/in"
LD_PRELOAD="$B/libmemctl.so" MEMCTL_GROUP=demo "$prog" "$nw" "$wsize" 4 67108864 \
	<"$W/in" >"$W/out" 2>"$W/err" &
pid=$!
exec 3>"$W/in"
ask() { # send a command to the workload, print its answer
	n=$(wc -l <"$W/out")
	echo "$1" >&3
	while [ "$(wc -l <"$W/out")" -le "$n" ]; do
		kill -0 $pid 2>/dev/null || { echo "workload died:"; cat "$W/err"; exit 1; }
		sleep 0.1
	done
	tail -n 1 "$W/out"
}
while ! grep -q ready "$W/out" 2>/dev/null; do
	kill -0 $pid 2>/dev/null || { echo "workload failed to start:"; cat "$W/err"; exit 1; }
	sleep 0.1
done
fail=0

say "a workload (pid $pid) allocated tagged memory under LD_PRELOAD=libmemctl.so"
cli ls || fail=1
set -- $(ask mem); free0=$1; total=$2
echo "device memory free: $(gib "$free0") of $(gib "$total")"

say "release the weights, keeping their contents in host memory"
cli pause --tags weights --stage cpu || fail=1
set -- $(ask mem); free1=$1
echo "device memory free: $(gib "$free1")  (+$(gib $((free1 - free0))) given back)"
echo "workload sees its weights: $(ask probe)"
cli status || fail=1

say "bring them back at the same addresses"
cli resume --tags weights || fail=1
set -- $(ask mem); free2=$1
echo "device memory free: $(gib "$free2")"
verdict=$(ask check)
echo "workload checked every byte: $verdict"
[ "$verdict" = ok ] || fail=1

say "kv_cache without staging (contents are scratch: undefined after resume)"
cli pause --tags kv_cache || fail=1
cli resume --tags kv_cache || fail=1

say "a tag nothing carries is an error, not a silent success"
cli pause --tags nothing_here; rc=$?
[ $rc -eq 1 ] || fail=1

echo quit >&3
wait $pid
say "summary"
echo "  weights released:   $(gib $((free1 - free0)))"
echo "  contents restored:  $( [ "$verdict" = ok ] && echo bit-identical || echo DIFFERENT)"
echo "  device on: $mode"
[ $fail -eq 0 ] && echo "demo: 1 passed, 0 failed" || echo "demo: 0 passed, 1 failed"
exit $fail
