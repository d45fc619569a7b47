#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Tuning sweep behind memctl's staging defaults: one scenario (default
# 16 GiB in 64 allocations) under several MEMCTL_CHUNK / MEMCTL_STREAMS /
# MEMCTL_HUGEPAGES settings, each in a fresh process, with the limits
# measured again in every run. Prints the staged rows of each run.
# usage: sh bench/sweep.sh BUILD_DIR [GiB] [count]
set -u
B=$(cd "${1:-build}" && pwd)
G=${2:-16}
N=${3:-64}
for cfg in "MEMCTL_CHUNK=64M" "MEMCTL_CHUNK=8M" "MEMCTL_CHUNK=16M" "MEMCTL_CHUNK=32M" \
	   "MEMCTL_CHUNK=256M" "MEMCTL_CHUNK=16M MEMCTL_STREAMS=2" "MEMCTL_CHUNK=16M MEMCTL_STREAMS=8" \
	   "MEMCTL_HUGEPAGES=0" "MEMCTL_HUGEPAGES=1"; do
	echo "--- $cfg"
	env $cfg LD_PRELOAD="$B/libmemctl.so" "$B/gpu/bench" "$G" "$N" |
		grep -E '^limits:|staged (pause|resume)|prepare \(' | grep -v '^|'
done
