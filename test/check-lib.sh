#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# make check: libmemctl.so exports only the interposed CUDA calls, the
# entry-point lookups, dlsym and the memctl_* API (the list in
# preload/memctl.map), needs no CUDA library, has no constructor doing work,
# and stays invisible in processes that never touch CUDA: no output, same
# exit status, no socket, however much they load and look up.
set -u
lib=$1
fail=0
exports="cudaMalloc cudaFree cuMemAlloc_v2 cuMemAllocPitch_v2 cuMemFree_v2
	cuGetProcAddress cuGetProcAddress_v2 cudaGetDriverEntryPoint
	cudaGetDriverEntryPoint_ptsz cudaGetDriverEntryPointByVersion
	cudaGetDriverEntryPointByVersion_ptsz dlsym
	cuMemCreate cuMemRelease cuMemMap cuMemUnmap cuMemSetAccess cuMemAddressFree
	cuMemRetainAllocationHandle cuMemGetAllocationPropertiesFromHandle
	cuMemExportToShareableHandle cuMemGetAddressRange_v2 cuMemAllocAsync
	cuMemAllocAsync_ptsz cuMemFreeAsync cuMemFreeAsync_ptsz cuMemAllocFromPoolAsync
	cuMemAllocFromPoolAsync_ptsz cuMulticastBindMem cuMulticastBindAddr"

defined=$(nm -D --defined-only "$lib" | awk '{print $3}')
for s in $defined; do
	case " $(echo $exports) " in *" $s "*) continue ;; esac
	case "$s" in memctl_[a-z_]*) continue ;; esac
	echo "check: unexpected export: $s"; fail=1
done
for s in $exports memctl_pause memctl_resume memctl_stat memctl_strerror \
	 memctl_region_begin memctl_region_end memctl_set_default_tag; do
	echo "$defined" | grep -qx "$s" || { echo "check: $s is not exported"; fail=1; }
done
if readelf -V "$lib" | grep -q 'Version definition'; then
	echo "check: the library defines symbol versions; interposed symbols must stay unversioned"
	fail=1
fi
needed=$(readelf -d "$lib" | grep NEEDED | grep -E 'libcuda|libcudart')
if [ -n "$needed" ]; then
	echo "check: DT_NEEDED on CUDA: $needed"; fail=1
fi
# Constructors: the only .init_array entries allowed are the compiler's own
# (frame_dummy); anything beyond one entry is ours.
init=$(readelf -S -W "$lib" | sed -n 's/.*\.init_array *[A-Z_]* *[0-9a-f]* *[0-9a-f]* *\([0-9a-f]*\).*/\1/p')
if [ -n "$init" ] && [ $((0x$init)) -gt 8 ]; then
	echo "check: .init_array has $((0x$init / 8)) entries: a constructor does work"; fail=1
fi
if nm "$lib" | grep -q -i -E ' t .*(constructor|_GLOBAL__sub_I)'; then
	echo "check: a constructor function is present"; fail=1
fi
# Processes that never touch CUDA, some of them loading extension modules
# and looking symbols up (through memctl's dlsym): untouched.
run=$(mktemp -d /tmp/memctl-check-XXXXXX)
chmod 700 "$run"
untouched() { # expected exit status, then the command
	want=$1; shift
	out=$(MEMCTL_RUNTIME_DIR="$run" LD_PRELOAD="$(realpath "$lib")" "$@" 2>&1); rc=$?
	if [ $rc -ne "$want" ] || [ -n "$out" ]; then
		echo "check: LD_PRELOAD=$lib $*: exit $rc, output '$out'"; fail=1
	fi
}
untouched 0 /bin/true
untouched 0 sh -c true
untouched 3 sh -c 'exit 3'
untouched 0 python3 -c 1
untouched 0 python3 -c 'import ctypes, json, hashlib, socket; ctypes.CDLL(None).getpid()'
if [ -n "$(ls -A "$run")" ]; then
	echo "check: a process that never touched CUDA created: $(ls -A "$run")"; fail=1
fi
rm -rf "$run"
[ $fail -eq 0 ] && echo "check: libmemctl.so exports, dependencies and init are clean"
exit $fail
