/* SPDX-License-Identifier: Apache-2.0 */
/*
 * gated.c - one wrapper per driver entry point that submits GPU work
 * (gated.h lists them): enter the gate, call the driver, leave the gate.
 * Every lookup path (linked symbol, dlsym on the driver's handle,
 * cuGetProcAddress, cudaGetDriverEntryPoint) hands these out through
 * proc.c's table, so the runtime's cudaLaunchKernel, cudaMemcpyAsync and
 * cudaGraphLaunch, which reach the driver by entry-point lookup, pass the
 * gate too.
 *
 * memctl's own copies (staging) call the driver's functions directly
 * (drv_cuda.c resolves them with glibc's dlsym) and never meet the gate.
 * A thread stays inside the gate until the driver returns: a synchronous
 * copy that waits for earlier work keeps a drain waiting, as it must.
 */
#include <cuda.h>
#include <cudaTypedefs.h>

#include "gate.h"
#include "gated.h"
#include "proc.h"

#define GATED_WRAPPER(abi, pfn, params, args)                       \
	CUresult gated_##abi params                                 \
	{                                                           \
		pfn real_ = (pfn)proc_real(PROC_##abi);             \
		struct gate_slot *slot_;                            \
		CUresult r_;                                        \
                                                                    \
		if (real_ == NULL)                                  \
			return CUDA_ERROR_NOT_INITIALIZED;          \
		slot_ = gate_enter();                               \
		r_ = real_ args;                                    \
		gate_leave(slot_);                                  \
		return r_;                                          \
	}                                                           \
	PROC_EXPORT_AS(gated_##abi, #abi, pfn);

GATED_CALLS(GATED_WRAPPER)
