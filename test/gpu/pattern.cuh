// SPDX-License-Identifier: Apache-2.0
//
// pattern.cuh - the known contents that GPU tests and benchmarks write into
// tagged memory with a kernel and count back after a resume.
#ifndef MEMCTL_PATTERN_CUH
#define MEMCTL_PATTERN_CUH

__global__ void pattern_fill(unsigned *p, size_t n, unsigned seed)
{
	for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
	     i += (size_t)gridDim.x * blockDim.x)
		p[i] = (unsigned)(i * 2654435761u) ^ seed;
}

// Adds the number of words that differ from pattern_fill's to *bad.
__global__ void pattern_verify(const unsigned *p, size_t n, unsigned seed,
			       unsigned long long *bad)
{
	unsigned long long local = 0;

	for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
	     i += (size_t)gridDim.x * blockDim.x)
		local += p[i] != ((unsigned)(i * 2654435761u) ^ seed);
	if (local)
		atomicAdd(bad, local);
}

#endif
