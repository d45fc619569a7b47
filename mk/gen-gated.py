#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Write preload/gated.h, the list of driver entry points that submit GPU
work, with each one's parameters taken from the PFN type of its ABI
version in cudaTypedefs.h.

    python3 mk/gen-gated.py /usr/local/cuda/include/cudaTypedefs.h > preload/gated.h

Run it again when a CUDA release adds a way to submit work; the compiler
then checks every wrapper against its PFN type (PROC_EXPORT_AS).
"""
import re
import sys

# (ABI symbol, PFN type, the CUDA version whose headers first declare it)
PTDS_COPIES = ["HtoD", "DtoH", "DtoD", "DtoA", "AtoD", "HtoA", "AtoH", "AtoA",
               "2D", "2DUnaligned", "3D"]
ASYNC_COPIES = ["HtoD", "DtoH", "DtoD", "HtoA", "AtoH", "2D", "3D"]
SETS = ["D8", "D16", "D32", "D2D8", "D2D16", "D2D32"]


def calls():
    out = []
    add = lambda abi, pfn, since=0: out.append((abi, pfn, since))
    # launches, every generation
    add("cuLaunch", "PFN_cuLaunch_v2000")
    add("cuLaunchGrid", "PFN_cuLaunchGrid_v2000")
    add("cuLaunchGridAsync", "PFN_cuLaunchGridAsync_v2000")
    add("cuLaunchKernel", "PFN_cuLaunchKernel_v4000")
    add("cuLaunchKernel_ptsz", "PFN_cuLaunchKernel_v7000_ptsz")
    add("cuLaunchCooperativeKernel", "PFN_cuLaunchCooperativeKernel_v9000")
    add("cuLaunchCooperativeKernel_ptsz", "PFN_cuLaunchCooperativeKernel_v9000_ptsz")
    add("cuLaunchCooperativeKernelMultiDevice", "PFN_cuLaunchCooperativeKernelMultiDevice_v9000")
    add("cuLaunchKernelEx", "PFN_cuLaunchKernelEx_v11060")
    add("cuLaunchKernelEx_ptsz", "PFN_cuLaunchKernelEx_v11060_ptsz")
    # graphs
    add("cuGraphLaunch", "PFN_cuGraphLaunch_v10000")
    add("cuGraphLaunch_ptsz", "PFN_cuGraphLaunch_v10000_ptsz")
    # copies
    for base, suffix in (("cuMemcpy", "v4000"), ("cuMemcpyPeer", "v4000"),
                         ("cuMemcpy3DPeer", "v4000")):
        add(base, "PFN_%s_%s" % (base, suffix))
        add(base + "_ptds", "PFN_%s_v7000_ptds" % base)
    for k in PTDS_COPIES:
        add("cuMemcpy%s_v2" % k, "PFN_cuMemcpy%s_v3020" % k)
        add("cuMemcpy%s_v2_ptds" % k, "PFN_cuMemcpy%s_v7000_ptds" % k)
    for base in ("cuMemcpyAsync", "cuMemcpyPeerAsync", "cuMemcpy3DPeerAsync"):
        add(base, "PFN_%s_v4000" % base)
        add(base + "_ptsz", "PFN_%s_v7000_ptsz" % base)
    for k in ASYNC_COPIES:
        add("cuMemcpy%sAsync_v2" % k, "PFN_cuMemcpy%sAsync_v3020" % k)
        add("cuMemcpy%sAsync_v2_ptsz" % k, "PFN_cuMemcpy%sAsync_v7000_ptsz" % k)
    for base in ("cuMemcpyBatchAsync", "cuMemcpy3DBatchAsync"):
        add(base, "PFN_%s_v12080" % base, 12080)
        add(base + "_ptsz", "PFN_%s_v12080_ptsz" % base, 12080)
        add(base + "_v2", "PFN_%s_v13000" % base, 13000)
        add(base + "_v2_ptsz", "PFN_%s_v13000_ptsz" % base, 13000)
    # memsets
    for k in SETS:
        add("cuMemset%s_v2" % k, "PFN_cuMemset%s_v3020" % k)
        add("cuMemset%s_v2_ptds" % k, "PFN_cuMemset%s_v7000_ptds" % k)
        add("cuMemset%sAsync" % k, "PFN_cuMemset%sAsync_v3020" % k)
        add("cuMemset%sAsync_ptsz" % k, "PFN_cuMemset%sAsync_v7000_ptsz" % k)
    # stream memory operations (they read or write device memory)
    for op, v1 in (("WriteValue32", "v8000"), ("WriteValue64", "v9000"),
                   ("WaitValue32", "v8000"), ("WaitValue64", "v9000"),
                   ("BatchMemOp", "v8000")):
        add("cuStream%s" % op, "PFN_cuStream%s_%s" % (op, v1))
        add("cuStream%s_ptsz" % op, "PFN_cuStream%s_%s_ptsz" % (op, v1))
        add("cuStream%s_v2" % op, "PFN_cuStream%s_v11070" % op)
        add("cuStream%s_v2_ptsz" % op, "PFN_cuStream%s_v11070_ptsz" % op)
    return out


def params_of(text, pfn):
    m = re.search(r"\(CUDAAPI \*%s\)\((.*?)\);" % re.escape(pfn), text, re.S)
    if m is None:
        sys.exit("gen-gated: %s not in cudaTypedefs.h" % pfn)
    decl = " ".join(m.group(1).split())
    names = []
    for p in decl.split(","):
        name = re.search(r"([A-Za-z_][A-Za-z0-9_]*)\s*$", p.strip())
        names.append(name.group(1))
    return decl, ", ".join(names)


def wrap(text, width=92):
    """Break a parenthesised list after commas, lines of the macro body."""
    lines, cur = [], "\t  "
    for part in text.split(", "):
        piece = part if cur.endswith("  ") else ", " + part
        if len(cur) + len(piece) > width and not cur.endswith("  "):
            lines.append(cur + ",")
            cur = "\t  " + part
        else:
            cur += piece
    lines.append(cur)
    return " \\\n".join(lines)


def main():
    text = open(sys.argv[1]).read()
    groups = {}
    for abi, pfn, since in calls():
        decl, args = params_of(text, pfn)
        line = "\tX(%s, %s, \\\n%s, \\\n%s)" % (abi, pfn, wrap("(%s)" % decl),
                                            wrap("(%s)" % args))
        groups.setdefault(since, []).append(line)
    print(HEAD)
    for since in sorted(groups):
        name = "GATED_BASE" if since == 0 else "GATED_%d" % since
        if since:
            print("#if CUDA_VERSION >= %d" % since)
        print("#define %s(X) \\" % name)
        print(" \\\n".join(groups[since]))
        if since:
            print("#else\n#define %s(X)\n#endif" % name)
        print()
    print("#define GATED_CALLS(X) GATED_BASE(X) %s" %
          " ".join("GATED_%d(X)" % s for s in sorted(groups) if s))
    print("\n#endif /* MEMCTL_GATED_H */")


HEAD = """/* SPDX-License-Identifier: Apache-2.0 */
/*
 * gated.h - every driver entry point that submits GPU work memctl gates:
 * kernel launches of every API generation, graph launches, copies,
 * memsets and stream memory operations, each ABI variant of its own
 * (_v2, per-thread _ptds/_ptsz). Written by mk/gen-gated.py from the PFN
 * types of cudaTypedefs.h:
 *     X(ABI symbol, PFN type, (parameters), (arguments))
 * Entry points that newer headers declare are listed only where the
 * headers have them. The pre-3.2 ABIs with 32-bit device pointers are not
 * listed (no 64-bit program reaches them).
 */
#ifndef MEMCTL_GATED_H
#define MEMCTL_GATED_H

#include <cuda.h>
#include <cudaTypedefs.h>
"""

main()
