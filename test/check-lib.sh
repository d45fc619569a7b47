#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# make check: libmemctl.so exports only the interposed CUDA calls (the
# allocation calls, those of memory a program maps itself, the gated ways to
# submit GPU work, context creation), the
# entry-point lookups, dlsym and the memctl_* API (the list in
# preload/memctl.map), calls nothing that exits or aborts, needs no CUDA
# library, has no constructor doing work,
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
	cuMemAllocFromPoolAsync_ptsz cuMulticastBindMem cuMulticastBindAddr
	cuCtxCreate_v2 cuCtxCreate_v3 cuCtxDestroy_v2
	cuLaunch cuLaunchGrid cuLaunchGridAsync cuLaunchKernel cuLaunchKernel_ptsz
	cuLaunchCooperativeKernel cuLaunchCooperativeKernel_ptsz
	cuLaunchCooperativeKernelMultiDevice cuLaunchKernelEx cuLaunchKernelEx_ptsz
	cuGraphLaunch cuGraphLaunch_ptsz cuMemcpy cuMemcpy_ptds cuMemcpyPeer
	cuMemcpyPeer_ptds cuMemcpy3DPeer cuMemcpy3DPeer_ptds cuMemcpyHtoD_v2
	cuMemcpyHtoD_v2_ptds cuMemcpyDtoH_v2 cuMemcpyDtoH_v2_ptds cuMemcpyDtoD_v2
	cuMemcpyDtoD_v2_ptds cuMemcpyDtoA_v2 cuMemcpyDtoA_v2_ptds cuMemcpyAtoD_v2
	cuMemcpyAtoD_v2_ptds cuMemcpyHtoA_v2 cuMemcpyHtoA_v2_ptds cuMemcpyAtoH_v2
	cuMemcpyAtoH_v2_ptds cuMemcpyAtoA_v2 cuMemcpyAtoA_v2_ptds cuMemcpy2D_v2
	cuMemcpy2D_v2_ptds cuMemcpy2DUnaligned_v2 cuMemcpy2DUnaligned_v2_ptds
	cuMemcpy3D_v2 cuMemcpy3D_v2_ptds cuMemcpyAsync cuMemcpyAsync_ptsz
	cuMemcpyPeerAsync cuMemcpyPeerAsync_ptsz cuMemcpy3DPeerAsync
	cuMemcpy3DPeerAsync_ptsz cuMemcpyHtoDAsync_v2 cuMemcpyHtoDAsync_v2_ptsz
	cuMemcpyDtoHAsync_v2 cuMemcpyDtoHAsync_v2_ptsz cuMemcpyDtoDAsync_v2
	cuMemcpyDtoDAsync_v2_ptsz cuMemcpyHtoAAsync_v2 cuMemcpyHtoAAsync_v2_ptsz
	cuMemcpyAtoHAsync_v2 cuMemcpyAtoHAsync_v2_ptsz cuMemcpy2DAsync_v2
	cuMemcpy2DAsync_v2_ptsz cuMemcpy3DAsync_v2 cuMemcpy3DAsync_v2_ptsz cuMemsetD8_v2
	cuMemsetD8_v2_ptds cuMemsetD8Async cuMemsetD8Async_ptsz cuMemsetD16_v2
	cuMemsetD16_v2_ptds cuMemsetD16Async cuMemsetD16Async_ptsz cuMemsetD32_v2
	cuMemsetD32_v2_ptds cuMemsetD32Async cuMemsetD32Async_ptsz cuMemsetD2D8_v2
	cuMemsetD2D8_v2_ptds cuMemsetD2D8Async cuMemsetD2D8Async_ptsz cuMemsetD2D16_v2
	cuMemsetD2D16_v2_ptds cuMemsetD2D16Async cuMemsetD2D16Async_ptsz
	cuMemsetD2D32_v2 cuMemsetD2D32_v2_ptds cuMemsetD2D32Async
	cuMemsetD2D32Async_ptsz cuStreamWriteValue32 cuStreamWriteValue32_ptsz
	cuStreamWriteValue32_v2 cuStreamWriteValue32_v2_ptsz cuStreamWriteValue64
	cuStreamWriteValue64_ptsz cuStreamWriteValue64_v2 cuStreamWriteValue64_v2_ptsz
	cuStreamWaitValue32 cuStreamWaitValue32_ptsz cuStreamWaitValue32_v2
	cuStreamWaitValue32_v2_ptsz cuStreamWaitValue64 cuStreamWaitValue64_ptsz
	cuStreamWaitValue64_v2 cuStreamWaitValue64_v2_ptsz cuStreamBatchMemOp
	cuStreamBatchMemOp_ptsz cuStreamBatchMemOp_v2 cuStreamBatchMemOp_v2_ptsz"
# Exported only where the CUDA headers declare them (12.5, 12.8, 13.0).
optional="cuCtxCreate_v4
	cuMemcpyBatchAsync cuMemcpyBatchAsync_ptsz cuMemcpy3DBatchAsync
	cuMemcpy3DBatchAsync_ptsz cuMemcpyBatchAsync_v2 cuMemcpyBatchAsync_v2_ptsz
	cuMemcpy3DBatchAsync_v2 cuMemcpy3DBatchAsync_v2_ptsz"

defined=$(nm -D --defined-only "$lib" | awk '{print $3}')
for s in $defined; do
	case " $(echo $exports $optional) " in *" $s "*) continue ;; esac
	case "$s" in memctl_[a-z_]*) continue ;; esac
	echo "check: unexpected export: $s"; fail=1
done
for s in $exports memctl_pause memctl_resume memctl_stat memctl_strerror \
	 memctl_region_begin memctl_region_begin_flags memctl_region_end \
	 memctl_set_default_tag memctl_set_default_tag_flags memctl_set_margin \
	 memctl_host_copy memctl_host_read memctl_pool_alloc memctl_pool_free; do
	echo "$defined" | grep -qx "$s" || { echo "check: $s is not exported"; fail=1; }
done
if readelf -V "$lib" | grep -q 'Version definition'; then
	echo "check: the library defines symbol versions; interposed symbols must stay unversioned"
	fail=1
fi
# Library code never ends the host process: nothing that exits or aborts
# may even be linked in (uthash's default out-of-memory handler is exit()).
for s in $(nm -D --undefined-only "$lib" | awk '{print $2}' | sed 's/@.*//'); do
	case "$s" in exit|_exit|_Exit|quick_exit|abort|__assert_fail|err|errx|verr|verrx)
		echo "check: the library calls $s, which would end the host process"; fail=1 ;;
	esac
done
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
