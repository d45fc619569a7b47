#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# make check: libmemctl.so exports only the interposed CUDA calls and the
# memctl_* API, needs no CUDA library, has no constructor doing work, and
# stays invisible in processes that never touch CUDA.
set -u
lib=$1
fail=0

extra=$(nm -D --defined-only "$lib" | awk '{print $3}' |
	grep -v -E '^(cudaMalloc|cudaFree|memctl_[a-z_]+)$')
if [ -n "$extra" ]; then
	echo "check: unexpected exports:"; echo "$extra"; fail=1
fi
for s in cudaMalloc cudaFree memctl_pause memctl_resume memctl_stat memctl_strerror \
	 memctl_region_begin memctl_region_end memctl_set_default_tag; do
	nm -D --defined-only "$lib" | awk '{print $3}' | grep -qx "$s" ||
		{ echo "check: $s is not exported"; fail=1; }
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
for cmd in "/bin/true" "sh -c true" "python3 -c 1"; do
	out=$(LD_PRELOAD="$(realpath "$lib")" $cmd 2>&1); rc=$?
	if [ $rc -ne 0 ] || [ -n "$out" ]; then
		echo "check: LD_PRELOAD=$lib $cmd: exit $rc, output '$out'"; fail=1
	fi
done
[ $fail -eq 0 ] && echo "check: libmemctl.so exports, dependencies and init are clean"
exit $fail
