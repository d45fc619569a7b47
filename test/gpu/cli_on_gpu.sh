#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# The memctl CLI against a CUDA program on a GPU: status, staged pause,
# resume, unstaged pause, resume, with nvidia-smi at each step.
# usage: test/gpu/cli_on_gpu.sh BUILD_DIR [TENANT]
# TENANT is a program in BUILD_DIR/gpu with prog_tenant's interface:
# prog_tenant (the shared runtime, the default), prog_tenant_static (the
# runtime linked statically), prog_drv (the driver found only through
# cuGetProcAddress), prog_drv_link (cuMemAlloc, linked). The tenant's own
# variables pass through: PROG_ALLOC=vmm|async (prog_drv), PROG_ASYNC=1
# (prog_tenant: cudaMallocAsync).
set -u
B=$(cd "${1:-build}" && pwd)
tenant=${2:-prog_tenant}
export MEMCTL_RUNTIME_DIR=$(mktemp -d /tmp/memctl-cli-XXXXXX)
fail=0
used() { nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits | head -1; }
smi() { last=$(used); printf '  nvidia-smi after %-22s %s MiB used\n' "$1" "$last"; }
step() { echo "\$ memctl $*"; "$B/memctl" "$@" || { echo "  exit $?"; fail=1; }; }

smi "nothing running:"
mkfifo "$MEMCTL_RUNTIME_DIR/in"
LD_PRELOAD="$B/libmemctl.so" "$B/gpu/$tenant" 16 536870912 4 67108864 \
	<"$MEMCTL_RUNTIME_DIR/in" >"$MEMCTL_RUNTIME_DIR/out" &
pid=$!
exec 3>"$MEMCTL_RUNTIME_DIR/in"
while ! grep -q ready "$MEMCTL_RUNTIME_DIR/out" 2>/dev/null; do
	kill -0 $pid 2>/dev/null || { echo "$tenant exited before it was ready"; exit 1; }
	sleep 0.2
done
smi "start (8 GiB weights):"
start=$last
step status -p $pid
step pause --tags weights --stage cpu -p $pid
smi "staged pause:"
# The weights are 8 GiB: nearly all of it must be back on the device.
if [ $((start - last)) -lt 7680 ]; then
	echo "  only $((start - last)) MiB released: were the weights tagged?"; fail=1
fi
step status -p $pid
step resume --tags weights -p $pid
smi "resume:"
echo check >&3
while [ "$(wc -l <"$MEMCTL_RUNTIME_DIR/out")" -lt 2 ]; do sleep 0.2; done
step pause --tags weights -p $pid
smi "unstaged pause:"
step resume --tags weights -p $pid
smi "resume:"
echo "\$ memctl pause --tags nothing_here -p $pid   (must fail, exit 1)"
"$B/memctl" pause --tags nothing_here -p $pid; [ $? -eq 1 ] || fail=1
echo quit >&3
wait $pid
echo "--- tenant said:"; cat "$MEMCTL_RUNTIME_DIR/out"
grep -q '^ok$' "$MEMCTL_RUNTIME_DIR/out" || { echo "contents differ after staged resume"; fail=1; }
rm -rf "$MEMCTL_RUNTIME_DIR"
[ $fail -eq 0 ] && echo "cli_on_gpu ($tenant): 1 passed, 0 failed" ||
	echo "cli_on_gpu ($tenant): 0 passed, 1 failed"
exit $fail
