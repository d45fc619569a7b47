/* SPDX-License-Identifier: Apache-2.0 */
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

#define GATED_BASE(X) \
	X(cuLaunch, PFN_cuLaunch_v2000, \
	  (CUfunction f), \
	  (f)) \
	X(cuLaunchGrid, PFN_cuLaunchGrid_v2000, \
	  (CUfunction f, int grid_width, int grid_height), \
	  (f, grid_width, grid_height)) \
	X(cuLaunchGridAsync, PFN_cuLaunchGridAsync_v2000, \
	  (CUfunction f, int grid_width, int grid_height, CUstream hStream), \
	  (f, grid_width, grid_height, hStream)) \
	X(cuLaunchKernel, PFN_cuLaunchKernel_v4000, \
	  (CUfunction f, unsigned int gridDimX, unsigned int gridDimY, unsigned int gridDimZ, \
	  unsigned int blockDimX, unsigned int blockDimY, unsigned int blockDimZ, \
	  unsigned int sharedMemBytes, CUstream hStream, void **kernelParams, void **extra), \
	  (f, gridDimX, gridDimY, gridDimZ, blockDimX, blockDimY, blockDimZ, sharedMemBytes, \
	  hStream, kernelParams, extra)) \
	X(cuLaunchKernel_ptsz, PFN_cuLaunchKernel_v7000_ptsz, \
	  (CUfunction f, unsigned int gridDimX, unsigned int gridDimY, unsigned int gridDimZ, \
	  unsigned int blockDimX, unsigned int blockDimY, unsigned int blockDimZ, \
	  unsigned int sharedMemBytes, CUstream hStream, void **kernelParams, void **extra), \
	  (f, gridDimX, gridDimY, gridDimZ, blockDimX, blockDimY, blockDimZ, sharedMemBytes, \
	  hStream, kernelParams, extra)) \
	X(cuLaunchCooperativeKernel, PFN_cuLaunchCooperativeKernel_v9000, \
	  (CUfunction f, unsigned int gridDimX, unsigned int gridDimY, unsigned int gridDimZ, \
	  unsigned int blockDimX, unsigned int blockDimY, unsigned int blockDimZ, \
	  unsigned int sharedMemBytes, CUstream hStream, void **kernelParams), \
	  (f, gridDimX, gridDimY, gridDimZ, blockDimX, blockDimY, blockDimZ, sharedMemBytes, \
	  hStream, kernelParams)) \
	X(cuLaunchCooperativeKernel_ptsz, PFN_cuLaunchCooperativeKernel_v9000_ptsz, \
	  (CUfunction f, unsigned int gridDimX, unsigned int gridDimY, unsigned int gridDimZ, \
	  unsigned int blockDimX, unsigned int blockDimY, unsigned int blockDimZ, \
	  unsigned int sharedMemBytes, CUstream hStream, void **kernelParams), \
	  (f, gridDimX, gridDimY, gridDimZ, blockDimX, blockDimY, blockDimZ, sharedMemBytes, \
	  hStream, kernelParams)) \
	X(cuLaunchCooperativeKernelMultiDevice, PFN_cuLaunchCooperativeKernelMultiDevice_v9000, \
	  (CUDA_LAUNCH_PARAMS_v1 *launchParamsList, unsigned int numDevices, unsigned int flags), \
	  (launchParamsList, numDevices, flags)) \
	X(cuLaunchKernelEx, PFN_cuLaunchKernelEx_v11060, \
	  (const CUlaunchConfig *config, CUfunction f, void **kernelParams, void **extra), \
	  (config, f, kernelParams, extra)) \
	X(cuLaunchKernelEx_ptsz, PFN_cuLaunchKernelEx_v11060_ptsz, \
	  (const CUlaunchConfig *config, CUfunction f, void **kernelParams, void **extra), \
	  (config, f, kernelParams, extra)) \
	X(cuGraphLaunch, PFN_cuGraphLaunch_v10000, \
	  (CUgraphExec hGraph, CUstream hStream), \
	  (hGraph, hStream)) \
	X(cuGraphLaunch_ptsz, PFN_cuGraphLaunch_v10000_ptsz, \
	  (CUgraphExec hGraphExec, CUstream hStream), \
	  (hGraphExec, hStream)) \
	X(cuMemcpy, PFN_cuMemcpy_v4000, \
	  (CUdeviceptr_v2 dst, CUdeviceptr_v2 src, size_t ByteCount), \
	  (dst, src, ByteCount)) \
	X(cuMemcpy_ptds, PFN_cuMemcpy_v7000_ptds, \
	  (CUdeviceptr_v2 dst, CUdeviceptr_v2 src, size_t ByteCount), \
	  (dst, src, ByteCount)) \
	X(cuMemcpyPeer, PFN_cuMemcpyPeer_v4000, \
	  (CUdeviceptr_v2 dstDevice, CUcontext dstContext, CUdeviceptr_v2 srcDevice, \
	  CUcontext srcContext, size_t ByteCount), \
	  (dstDevice, dstContext, srcDevice, srcContext, ByteCount)) \
	X(cuMemcpyPeer_ptds, PFN_cuMemcpyPeer_v7000_ptds, \
	  (CUdeviceptr_v2 dstDevice, CUcontext dstContext, CUdeviceptr_v2 srcDevice, \
	  CUcontext srcContext, size_t ByteCount), \
	  (dstDevice, dstContext, srcDevice, srcContext, ByteCount)) \
	X(cuMemcpy3DPeer, PFN_cuMemcpy3DPeer_v4000, \
	  (const CUDA_MEMCPY3D_PEER_v1 *pCopy), \
	  (pCopy)) \
	X(cuMemcpy3DPeer_ptds, PFN_cuMemcpy3DPeer_v7000_ptds, \
	  (const CUDA_MEMCPY3D_PEER_v1 *pCopy), \
	  (pCopy)) \
	X(cuMemcpyHtoD_v2, PFN_cuMemcpyHtoD_v3020, \
	  (CUdeviceptr_v2 dstDevice, const void *srcHost, size_t ByteCount), \
	  (dstDevice, srcHost, ByteCount)) \
	X(cuMemcpyHtoD_v2_ptds, PFN_cuMemcpyHtoD_v7000_ptds, \
	  (CUdeviceptr_v2 dstDevice, const void *srcHost, size_t ByteCount), \
	  (dstDevice, srcHost, ByteCount)) \
	X(cuMemcpyDtoH_v2, PFN_cuMemcpyDtoH_v3020, \
	  (void *dstHost, CUdeviceptr_v2 srcDevice, size_t ByteCount), \
	  (dstHost, srcDevice, ByteCount)) \
	X(cuMemcpyDtoH_v2_ptds, PFN_cuMemcpyDtoH_v7000_ptds, \
	  (void *dstHost, CUdeviceptr_v2 srcDevice, size_t ByteCount), \
	  (dstHost, srcDevice, ByteCount)) \
	X(cuMemcpyDtoD_v2, PFN_cuMemcpyDtoD_v3020, \
	  (CUdeviceptr_v2 dstDevice, CUdeviceptr_v2 srcDevice, size_t ByteCount), \
	  (dstDevice, srcDevice, ByteCount)) \
	X(cuMemcpyDtoD_v2_ptds, PFN_cuMemcpyDtoD_v7000_ptds, \
	  (CUdeviceptr_v2 dstDevice, CUdeviceptr_v2 srcDevice, size_t ByteCount), \
	  (dstDevice, srcDevice, ByteCount)) \
	X(cuMemcpyDtoA_v2, PFN_cuMemcpyDtoA_v3020, \
	  (CUarray dstArray, size_t dstOffset, CUdeviceptr_v2 srcDevice, size_t ByteCount), \
	  (dstArray, dstOffset, srcDevice, ByteCount)) \
	X(cuMemcpyDtoA_v2_ptds, PFN_cuMemcpyDtoA_v7000_ptds, \
	  (CUarray dstArray, size_t dstOffset, CUdeviceptr_v2 srcDevice, size_t ByteCount), \
	  (dstArray, dstOffset, srcDevice, ByteCount)) \
	X(cuMemcpyAtoD_v2, PFN_cuMemcpyAtoD_v3020, \
	  (CUdeviceptr_v2 dstDevice, CUarray srcArray, size_t srcOffset, size_t ByteCount), \
	  (dstDevice, srcArray, srcOffset, ByteCount)) \
	X(cuMemcpyAtoD_v2_ptds, PFN_cuMemcpyAtoD_v7000_ptds, \
	  (CUdeviceptr_v2 dstDevice, CUarray srcArray, size_t srcOffset, size_t ByteCount), \
	  (dstDevice, srcArray, srcOffset, ByteCount)) \
	X(cuMemcpyHtoA_v2, PFN_cuMemcpyHtoA_v3020, \
	  (CUarray dstArray, size_t dstOffset, const void *srcHost, size_t ByteCount), \
	  (dstArray, dstOffset, srcHost, ByteCount)) \
	X(cuMemcpyHtoA_v2_ptds, PFN_cuMemcpyHtoA_v7000_ptds, \
	  (CUarray dstArray, size_t dstOffset, const void *srcHost, size_t ByteCount), \
	  (dstArray, dstOffset, srcHost, ByteCount)) \
	X(cuMemcpyAtoH_v2, PFN_cuMemcpyAtoH_v3020, \
	  (void *dstHost, CUarray srcArray, size_t srcOffset, size_t ByteCount), \
	  (dstHost, srcArray, srcOffset, ByteCount)) \
	X(cuMemcpyAtoH_v2_ptds, PFN_cuMemcpyAtoH_v7000_ptds, \
	  (void *dstHost, CUarray srcArray, size_t srcOffset, size_t ByteCount), \
	  (dstHost, srcArray, srcOffset, ByteCount)) \
	X(cuMemcpyAtoA_v2, PFN_cuMemcpyAtoA_v3020, \
	  (CUarray dstArray, size_t dstOffset, CUarray srcArray, size_t srcOffset, \
	  size_t ByteCount), \
	  (dstArray, dstOffset, srcArray, srcOffset, ByteCount)) \
	X(cuMemcpyAtoA_v2_ptds, PFN_cuMemcpyAtoA_v7000_ptds, \
	  (CUarray dstArray, size_t dstOffset, CUarray srcArray, size_t srcOffset, \
	  size_t ByteCount), \
	  (dstArray, dstOffset, srcArray, srcOffset, ByteCount)) \
	X(cuMemcpy2D_v2, PFN_cuMemcpy2D_v3020, \
	  (const CUDA_MEMCPY2D_v2 *pCopy), \
	  (pCopy)) \
	X(cuMemcpy2D_v2_ptds, PFN_cuMemcpy2D_v7000_ptds, \
	  (const CUDA_MEMCPY2D_v2 *pCopy), \
	  (pCopy)) \
	X(cuMemcpy2DUnaligned_v2, PFN_cuMemcpy2DUnaligned_v3020, \
	  (const CUDA_MEMCPY2D_v2 *pCopy), \
	  (pCopy)) \
	X(cuMemcpy2DUnaligned_v2_ptds, PFN_cuMemcpy2DUnaligned_v7000_ptds, \
	  (const CUDA_MEMCPY2D_v2 *pCopy), \
	  (pCopy)) \
	X(cuMemcpy3D_v2, PFN_cuMemcpy3D_v3020, \
	  (const CUDA_MEMCPY3D_v2 *pCopy), \
	  (pCopy)) \
	X(cuMemcpy3D_v2_ptds, PFN_cuMemcpy3D_v7000_ptds, \
	  (const CUDA_MEMCPY3D_v2 *pCopy), \
	  (pCopy)) \
	X(cuMemcpyAsync, PFN_cuMemcpyAsync_v4000, \
	  (CUdeviceptr_v2 dst, CUdeviceptr_v2 src, size_t ByteCount, CUstream hStream), \
	  (dst, src, ByteCount, hStream)) \
	X(cuMemcpyAsync_ptsz, PFN_cuMemcpyAsync_v7000_ptsz, \
	  (CUdeviceptr_v2 dst, CUdeviceptr_v2 src, size_t ByteCount, CUstream hStream), \
	  (dst, src, ByteCount, hStream)) \
	X(cuMemcpyPeerAsync, PFN_cuMemcpyPeerAsync_v4000, \
	  (CUdeviceptr_v2 dstDevice, CUcontext dstContext, CUdeviceptr_v2 srcDevice, \
	  CUcontext srcContext, size_t ByteCount, CUstream hStream), \
	  (dstDevice, dstContext, srcDevice, srcContext, ByteCount, hStream)) \
	X(cuMemcpyPeerAsync_ptsz, PFN_cuMemcpyPeerAsync_v7000_ptsz, \
	  (CUdeviceptr_v2 dstDevice, CUcontext dstContext, CUdeviceptr_v2 srcDevice, \
	  CUcontext srcContext, size_t ByteCount, CUstream hStream), \
	  (dstDevice, dstContext, srcDevice, srcContext, ByteCount, hStream)) \
	X(cuMemcpy3DPeerAsync, PFN_cuMemcpy3DPeerAsync_v4000, \
	  (const CUDA_MEMCPY3D_PEER_v1 *pCopy, CUstream hStream), \
	  (pCopy, hStream)) \
	X(cuMemcpy3DPeerAsync_ptsz, PFN_cuMemcpy3DPeerAsync_v7000_ptsz, \
	  (const CUDA_MEMCPY3D_PEER_v1 *pCopy, CUstream hStream), \
	  (pCopy, hStream)) \
	X(cuMemcpyHtoDAsync_v2, PFN_cuMemcpyHtoDAsync_v3020, \
	  (CUdeviceptr_v2 dstDevice, const void *srcHost, size_t ByteCount, CUstream hStream), \
	  (dstDevice, srcHost, ByteCount, hStream)) \
	X(cuMemcpyHtoDAsync_v2_ptsz, PFN_cuMemcpyHtoDAsync_v7000_ptsz, \
	  (CUdeviceptr_v2 dstDevice, const void *srcHost, size_t ByteCount, CUstream hStream), \
	  (dstDevice, srcHost, ByteCount, hStream)) \
	X(cuMemcpyDtoHAsync_v2, PFN_cuMemcpyDtoHAsync_v3020, \
	  (void *dstHost, CUdeviceptr_v2 srcDevice, size_t ByteCount, CUstream hStream), \
	  (dstHost, srcDevice, ByteCount, hStream)) \
	X(cuMemcpyDtoHAsync_v2_ptsz, PFN_cuMemcpyDtoHAsync_v7000_ptsz, \
	  (void *dstHost, CUdeviceptr_v2 srcDevice, size_t ByteCount, CUstream hStream), \
	  (dstHost, srcDevice, ByteCount, hStream)) \
	X(cuMemcpyDtoDAsync_v2, PFN_cuMemcpyDtoDAsync_v3020, \
	  (CUdeviceptr_v2 dstDevice, CUdeviceptr_v2 srcDevice, size_t ByteCount, CUstream hStream), \
	  (dstDevice, srcDevice, ByteCount, hStream)) \
	X(cuMemcpyDtoDAsync_v2_ptsz, PFN_cuMemcpyDtoDAsync_v7000_ptsz, \
	  (CUdeviceptr_v2 dstDevice, CUdeviceptr_v2 srcDevice, size_t ByteCount, CUstream hStream), \
	  (dstDevice, srcDevice, ByteCount, hStream)) \
	X(cuMemcpyHtoAAsync_v2, PFN_cuMemcpyHtoAAsync_v3020, \
	  (CUarray dstArray, size_t dstOffset, const void *srcHost, size_t ByteCount, \
	  CUstream hStream), \
	  (dstArray, dstOffset, srcHost, ByteCount, hStream)) \
	X(cuMemcpyHtoAAsync_v2_ptsz, PFN_cuMemcpyHtoAAsync_v7000_ptsz, \
	  (CUarray dstArray, size_t dstOffset, const void *srcHost, size_t ByteCount, \
	  CUstream hStream), \
	  (dstArray, dstOffset, srcHost, ByteCount, hStream)) \
	X(cuMemcpyAtoHAsync_v2, PFN_cuMemcpyAtoHAsync_v3020, \
	  (void *dstHost, CUarray srcArray, size_t srcOffset, size_t ByteCount, CUstream hStream), \
	  (dstHost, srcArray, srcOffset, ByteCount, hStream)) \
	X(cuMemcpyAtoHAsync_v2_ptsz, PFN_cuMemcpyAtoHAsync_v7000_ptsz, \
	  (void *dstHost, CUarray srcArray, size_t srcOffset, size_t ByteCount, CUstream hStream), \
	  (dstHost, srcArray, srcOffset, ByteCount, hStream)) \
	X(cuMemcpy2DAsync_v2, PFN_cuMemcpy2DAsync_v3020, \
	  (const CUDA_MEMCPY2D_v2 *pCopy, CUstream hStream), \
	  (pCopy, hStream)) \
	X(cuMemcpy2DAsync_v2_ptsz, PFN_cuMemcpy2DAsync_v7000_ptsz, \
	  (const CUDA_MEMCPY2D_v2 *pCopy, CUstream hStream), \
	  (pCopy, hStream)) \
	X(cuMemcpy3DAsync_v2, PFN_cuMemcpy3DAsync_v3020, \
	  (const CUDA_MEMCPY3D_v2 *pCopy, CUstream hStream), \
	  (pCopy, hStream)) \
	X(cuMemcpy3DAsync_v2_ptsz, PFN_cuMemcpy3DAsync_v7000_ptsz, \
	  (const CUDA_MEMCPY3D_v2 *pCopy, CUstream hStream), \
	  (pCopy, hStream)) \
	X(cuMemsetD8_v2, PFN_cuMemsetD8_v3020, \
	  (CUdeviceptr_v2 dstDevice, unsigned char uc, size_t N), \
	  (dstDevice, uc, N)) \
	X(cuMemsetD8_v2_ptds, PFN_cuMemsetD8_v7000_ptds, \
	  (CUdeviceptr_v2 dstDevice, unsigned char uc, size_t N), \
	  (dstDevice, uc, N)) \
	X(cuMemsetD8Async, PFN_cuMemsetD8Async_v3020, \
	  (CUdeviceptr_v2 dstDevice, unsigned char uc, size_t N, CUstream hStream), \
	  (dstDevice, uc, N, hStream)) \
	X(cuMemsetD8Async_ptsz, PFN_cuMemsetD8Async_v7000_ptsz, \
	  (CUdeviceptr_v2 dstDevice, unsigned char uc, size_t N, CUstream hStream), \
	  (dstDevice, uc, N, hStream)) \
	X(cuMemsetD16_v2, PFN_cuMemsetD16_v3020, \
	  (CUdeviceptr_v2 dstDevice, unsigned short us, size_t N), \
	  (dstDevice, us, N)) \
	X(cuMemsetD16_v2_ptds, PFN_cuMemsetD16_v7000_ptds, \
	  (CUdeviceptr_v2 dstDevice, unsigned short us, size_t N), \
	  (dstDevice, us, N)) \
	X(cuMemsetD16Async, PFN_cuMemsetD16Async_v3020, \
	  (CUdeviceptr_v2 dstDevice, unsigned short us, size_t N, CUstream hStream), \
	  (dstDevice, us, N, hStream)) \
	X(cuMemsetD16Async_ptsz, PFN_cuMemsetD16Async_v7000_ptsz, \
	  (CUdeviceptr_v2 dstDevice, unsigned short us, size_t N, CUstream hStream), \
	  (dstDevice, us, N, hStream)) \
	X(cuMemsetD32_v2, PFN_cuMemsetD32_v3020, \
	  (CUdeviceptr_v2 dstDevice, unsigned int ui, size_t N), \
	  (dstDevice, ui, N)) \
	X(cuMemsetD32_v2_ptds, PFN_cuMemsetD32_v7000_ptds, \
	  (CUdeviceptr_v2 dstDevice, unsigned int ui, size_t N), \
	  (dstDevice, ui, N)) \
	X(cuMemsetD32Async, PFN_cuMemsetD32Async_v3020, \
	  (CUdeviceptr_v2 dstDevice, unsigned int ui, size_t N, CUstream hStream), \
	  (dstDevice, ui, N, hStream)) \
	X(cuMemsetD32Async_ptsz, PFN_cuMemsetD32Async_v7000_ptsz, \
	  (CUdeviceptr_v2 dstDevice, unsigned int ui, size_t N, CUstream hStream), \
	  (dstDevice, ui, N, hStream)) \
	X(cuMemsetD2D8_v2, PFN_cuMemsetD2D8_v3020, \
	  (CUdeviceptr_v2 dstDevice, size_t dstPitch, unsigned char uc, size_t Width, \
	  size_t Height), \
	  (dstDevice, dstPitch, uc, Width, Height)) \
	X(cuMemsetD2D8_v2_ptds, PFN_cuMemsetD2D8_v7000_ptds, \
	  (CUdeviceptr_v2 dstDevice, size_t dstPitch, unsigned char uc, size_t Width, \
	  size_t Height), \
	  (dstDevice, dstPitch, uc, Width, Height)) \
	X(cuMemsetD2D8Async, PFN_cuMemsetD2D8Async_v3020, \
	  (CUdeviceptr_v2 dstDevice, size_t dstPitch, unsigned char uc, size_t Width, size_t Height, \
	  CUstream hStream), \
	  (dstDevice, dstPitch, uc, Width, Height, hStream)) \
	X(cuMemsetD2D8Async_ptsz, PFN_cuMemsetD2D8Async_v7000_ptsz, \
	  (CUdeviceptr_v2 dstDevice, size_t dstPitch, unsigned char uc, size_t Width, size_t Height, \
	  CUstream hStream), \
	  (dstDevice, dstPitch, uc, Width, Height, hStream)) \
	X(cuMemsetD2D16_v2, PFN_cuMemsetD2D16_v3020, \
	  (CUdeviceptr_v2 dstDevice, size_t dstPitch, unsigned short us, size_t Width, \
	  size_t Height), \
	  (dstDevice, dstPitch, us, Width, Height)) \
	X(cuMemsetD2D16_v2_ptds, PFN_cuMemsetD2D16_v7000_ptds, \
	  (CUdeviceptr_v2 dstDevice, size_t dstPitch, unsigned short us, size_t Width, \
	  size_t Height), \
	  (dstDevice, dstPitch, us, Width, Height)) \
	X(cuMemsetD2D16Async, PFN_cuMemsetD2D16Async_v3020, \
	  (CUdeviceptr_v2 dstDevice, size_t dstPitch, unsigned short us, size_t Width, \
	  size_t Height, CUstream hStream), \
	  (dstDevice, dstPitch, us, Width, Height, hStream)) \
	X(cuMemsetD2D16Async_ptsz, PFN_cuMemsetD2D16Async_v7000_ptsz, \
	  (CUdeviceptr_v2 dstDevice, size_t dstPitch, unsigned short us, size_t Width, \
	  size_t Height, CUstream hStream), \
	  (dstDevice, dstPitch, us, Width, Height, hStream)) \
	X(cuMemsetD2D32_v2, PFN_cuMemsetD2D32_v3020, \
	  (CUdeviceptr_v2 dstDevice, size_t dstPitch, unsigned int ui, size_t Width, size_t Height), \
	  (dstDevice, dstPitch, ui, Width, Height)) \
	X(cuMemsetD2D32_v2_ptds, PFN_cuMemsetD2D32_v7000_ptds, \
	  (CUdeviceptr_v2 dstDevice, size_t dstPitch, unsigned int ui, size_t Width, size_t Height), \
	  (dstDevice, dstPitch, ui, Width, Height)) \
	X(cuMemsetD2D32Async, PFN_cuMemsetD2D32Async_v3020, \
	  (CUdeviceptr_v2 dstDevice, size_t dstPitch, unsigned int ui, size_t Width, size_t Height, \
	  CUstream hStream), \
	  (dstDevice, dstPitch, ui, Width, Height, hStream)) \
	X(cuMemsetD2D32Async_ptsz, PFN_cuMemsetD2D32Async_v7000_ptsz, \
	  (CUdeviceptr_v2 dstDevice, size_t dstPitch, unsigned int ui, size_t Width, size_t Height, \
	  CUstream hStream), \
	  (dstDevice, dstPitch, ui, Width, Height, hStream)) \
	X(cuStreamWriteValue32, PFN_cuStreamWriteValue32_v8000, \
	  (CUstream stream, CUdeviceptr_v2 addr, cuuint32_t value, unsigned int flags), \
	  (stream, addr, value, flags)) \
	X(cuStreamWriteValue32_ptsz, PFN_cuStreamWriteValue32_v8000_ptsz, \
	  (CUstream stream, CUdeviceptr_v2 addr, cuuint32_t value, unsigned int flags), \
	  (stream, addr, value, flags)) \
	X(cuStreamWriteValue32_v2, PFN_cuStreamWriteValue32_v11070, \
	  (CUstream stream, CUdeviceptr_v2 addr, cuuint32_t value, unsigned int flags), \
	  (stream, addr, value, flags)) \
	X(cuStreamWriteValue32_v2_ptsz, PFN_cuStreamWriteValue32_v11070_ptsz, \
	  (CUstream stream, CUdeviceptr_v2 addr, cuuint32_t value, unsigned int flags), \
	  (stream, addr, value, flags)) \
	X(cuStreamWriteValue64, PFN_cuStreamWriteValue64_v9000, \
	  (CUstream stream, CUdeviceptr_v2 addr, cuuint64_t value, unsigned int flags), \
	  (stream, addr, value, flags)) \
	X(cuStreamWriteValue64_ptsz, PFN_cuStreamWriteValue64_v9000_ptsz, \
	  (CUstream stream, CUdeviceptr_v2 addr, cuuint64_t value, unsigned int flags), \
	  (stream, addr, value, flags)) \
	X(cuStreamWriteValue64_v2, PFN_cuStreamWriteValue64_v11070, \
	  (CUstream stream, CUdeviceptr_v2 addr, cuuint64_t value, unsigned int flags), \
	  (stream, addr, value, flags)) \
	X(cuStreamWriteValue64_v2_ptsz, PFN_cuStreamWriteValue64_v11070_ptsz, \
	  (CUstream stream, CUdeviceptr_v2 addr, cuuint64_t value, unsigned int flags), \
	  (stream, addr, value, flags)) \
	X(cuStreamWaitValue32, PFN_cuStreamWaitValue32_v8000, \
	  (CUstream stream, CUdeviceptr_v2 addr, cuuint32_t value, unsigned int flags), \
	  (stream, addr, value, flags)) \
	X(cuStreamWaitValue32_ptsz, PFN_cuStreamWaitValue32_v8000_ptsz, \
	  (CUstream stream, CUdeviceptr_v2 addr, cuuint32_t value, unsigned int flags), \
	  (stream, addr, value, flags)) \
	X(cuStreamWaitValue32_v2, PFN_cuStreamWaitValue32_v11070, \
	  (CUstream stream, CUdeviceptr_v2 addr, cuuint32_t value, unsigned int flags), \
	  (stream, addr, value, flags)) \
	X(cuStreamWaitValue32_v2_ptsz, PFN_cuStreamWaitValue32_v11070_ptsz, \
	  (CUstream stream, CUdeviceptr_v2 addr, cuuint32_t value, unsigned int flags), \
	  (stream, addr, value, flags)) \
	X(cuStreamWaitValue64, PFN_cuStreamWaitValue64_v9000, \
	  (CUstream stream, CUdeviceptr_v2 addr, cuuint64_t value, unsigned int flags), \
	  (stream, addr, value, flags)) \
	X(cuStreamWaitValue64_ptsz, PFN_cuStreamWaitValue64_v9000_ptsz, \
	  (CUstream stream, CUdeviceptr_v2 addr, cuuint64_t value, unsigned int flags), \
	  (stream, addr, value, flags)) \
	X(cuStreamWaitValue64_v2, PFN_cuStreamWaitValue64_v11070, \
	  (CUstream stream, CUdeviceptr_v2 addr, cuuint64_t value, unsigned int flags), \
	  (stream, addr, value, flags)) \
	X(cuStreamWaitValue64_v2_ptsz, PFN_cuStreamWaitValue64_v11070_ptsz, \
	  (CUstream stream, CUdeviceptr_v2 addr, cuuint64_t value, unsigned int flags), \
	  (stream, addr, value, flags)) \
	X(cuStreamBatchMemOp, PFN_cuStreamBatchMemOp_v8000, \
	  (CUstream stream, unsigned int count, CUstreamBatchMemOpParams *paramArray, \
	  unsigned int flags), \
	  (stream, count, paramArray, flags)) \
	X(cuStreamBatchMemOp_ptsz, PFN_cuStreamBatchMemOp_v8000_ptsz, \
	  (CUstream stream, unsigned int count, CUstreamBatchMemOpParams_v1 *paramArray, \
	  unsigned int flags), \
	  (stream, count, paramArray, flags)) \
	X(cuStreamBatchMemOp_v2, PFN_cuStreamBatchMemOp_v11070, \
	  (CUstream stream, unsigned int count, CUstreamBatchMemOpParams *paramArray, \
	  unsigned int flags), \
	  (stream, count, paramArray, flags)) \
	X(cuStreamBatchMemOp_v2_ptsz, PFN_cuStreamBatchMemOp_v11070_ptsz, \
	  (CUstream stream, unsigned int count, CUstreamBatchMemOpParams *paramArray, \
	  unsigned int flags), \
	  (stream, count, paramArray, flags))

#if CUDA_VERSION >= 12080
#define GATED_12080(X) \
	X(cuMemcpyBatchAsync, PFN_cuMemcpyBatchAsync_v12080, \
	  (CUdeviceptr_v2 *dsts, CUdeviceptr_v2 *srcs, size_t *sizes, size_t count, \
	  CUmemcpyAttributes_v1 *attrs, size_t *attrIdxs, size_t numAttrs, size_t *failIdx, \
	  CUstream hStream), \
	  (dsts, srcs, sizes, count, attrs, attrIdxs, numAttrs, failIdx, hStream)) \
	X(cuMemcpyBatchAsync_ptsz, PFN_cuMemcpyBatchAsync_v12080_ptsz, \
	  (CUdeviceptr_v2 *dsts, CUdeviceptr_v2 *srcs, size_t *sizes, size_t count, \
	  CUmemcpyAttributes_v1 *attrs, size_t *attrIdxs, size_t numAttrs, size_t *failIdx, \
	  CUstream hStream), \
	  (dsts, srcs, sizes, count, attrs, attrIdxs, numAttrs, failIdx, hStream)) \
	X(cuMemcpy3DBatchAsync, PFN_cuMemcpy3DBatchAsync_v12080, \
	  (size_t numParams, CUDA_MEMCPY3D_BATCH_OP_v1 *opList, size_t *failIdx, \
	  unsigned long long flags, CUstream hStream), \
	  (numParams, opList, failIdx, flags, hStream)) \
	X(cuMemcpy3DBatchAsync_ptsz, PFN_cuMemcpy3DBatchAsync_v12080_ptsz, \
	  (size_t numParams, CUDA_MEMCPY3D_BATCH_OP_v1 *opList, size_t *failIdx, \
	  unsigned long long flags, CUstream hStream), \
	  (numParams, opList, failIdx, flags, hStream))
#else
#define GATED_12080(X)
#endif

#if CUDA_VERSION >= 13000
#define GATED_13000(X) \
	X(cuMemcpyBatchAsync_v2, PFN_cuMemcpyBatchAsync_v13000, \
	  (CUdeviceptr_v2 *dsts, CUdeviceptr_v2 *srcs, size_t *sizes, size_t count, \
	  CUmemcpyAttributes_v1 *attrs, size_t *attrIdxs, size_t numAttrs, CUstream hStream), \
	  (dsts, srcs, sizes, count, attrs, attrIdxs, numAttrs, hStream)) \
	X(cuMemcpyBatchAsync_v2_ptsz, PFN_cuMemcpyBatchAsync_v13000_ptsz, \
	  (CUdeviceptr_v2 *dsts, CUdeviceptr_v2 *srcs, size_t *sizes, size_t count, \
	  CUmemcpyAttributes_v1 *attrs, size_t *attrIdxs, size_t numAttrs, CUstream hStream), \
	  (dsts, srcs, sizes, count, attrs, attrIdxs, numAttrs, hStream)) \
	X(cuMemcpy3DBatchAsync_v2, PFN_cuMemcpy3DBatchAsync_v13000, \
	  (size_t numParams, CUDA_MEMCPY3D_BATCH_OP_v1 *opList, unsigned long long flags, \
	  CUstream hStream), \
	  (numParams, opList, flags, hStream)) \
	X(cuMemcpy3DBatchAsync_v2_ptsz, PFN_cuMemcpy3DBatchAsync_v13000_ptsz, \
	  (size_t numParams, CUDA_MEMCPY3D_BATCH_OP_v1 *opList, unsigned long long flags, \
	  CUstream hStream), \
	  (numParams, opList, flags, hStream))
#else
#define GATED_13000(X)
#endif

#define GATED_CALLS(X) GATED_BASE(X) GATED_12080(X) GATED_13000(X)

#endif /* MEMCTL_GATED_H */
