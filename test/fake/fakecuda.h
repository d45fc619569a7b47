/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fakecuda.h - test-only controls of the simulated driver
 * (build/fake/libcuda.so.1). Never part of the product. docs/testing.md
 * describes how the simulated driver behaves.
 */
#ifndef FAKECUDA_H
#define FAKECUDA_H

#include <stddef.h>
#include <stdint.h>

/* ---- faults and holds ---- */

/* Replace the fault plan: "cuMemCreate:3,cuMemHostRegister:1" makes the 3rd
 * call of cuMemCreate (counted from now) and the 1st of cuMemHostRegister
 * fail with CUDA_ERROR_OUT_OF_MEMORY. Any entry point can be named, by its
 * name without the _v2 suffix; "cuMemRelease:1:unknown" picks the error
 * (oom, inval, illegal, unknown). An injected error is returned once and
 * loses nothing. NULL or "" clears it. */
void fakecuda_set_fail(const char *spec);
/* Make every later call of `fn` block on entry, without holding the
 * driver's lock, until fakecuda_unhold(): a request held open at a known
 * point, whatever the machine's speed. */
void fakecuda_hold(const char *fn);
/* The same, but the blocked caller holds the driver's lock, as a thread
 * caught inside the driver by another thread's fork. Every other call of
 * the process waits meanwhile; fakecuda_held and fakecuda_unhold work. */
void fakecuda_hold_in_lock(const char *fn);
void fakecuda_unhold(void);
/* Callers blocked in `fn` by a hold right now. */
int fakecuda_held(const char *fn);

/* ---- when queued work runs ---- */

/* "lazy" (the default, or FAKECUDA_ASYNC): only when the program waits
 * for it; "delay": by executor threads after a random delay of up to
 * FAKECUDA_DELAY_US microseconds; "eager": at once. Returns 0, or -1 for
 * another name. */
int fakecuda_set_async(const char *mode);

/* ---- what went wrong ---- */

/* With `on` (the default, unless FAKECUDA_VIOLATIONS=count), a violation
 * or an illegal access aborts the process right after its stderr line, so
 * that the test that caused it fails as it happens. Tests that provoke
 * them on purpose turn it off. Returns the previous setting. */
int fakecuda_violations_fatal(int on);

/* Memory taken away (cuMemUnmap, cuMemFree, cuMemAddressFree,
 * cuMemHostUnregister, a stream-ordered free) while queued work of this
 * process still touched it. Each is also reported on stderr. */
long fakecuda_violations(void);
/* Work of this process that ran on memory that was not mapped: each lost
 * the context (reported on stderr). */
long fakecuda_illegal_accesses(void);
/* The sticky error every call of this process now fails with
 * (CUDA_ERROR_ILLEGAL_ADDRESS), or 0. */
int fakecuda_sticky_error(void);
/* For tests that provoke them on purpose: zero the two counts above (the
 * context stays lost). */
void fakecuda_clear_violations(void);
/* Violations and illegal accesses of every process that used this
 * FAKECUDA_STATE file (tenants of a suite included). */
long fakecuda_machine_violations(void);

/* ---- built-in kernels ---- */

/* A kernel for cuLaunchKernel (as a CUfunction) or cudaLaunchKernel (as
 * `func`), the same handle cuModuleGetFunction gives for that name; NULL
 * for an unknown name. Parameters, in order:
 *   fill     (CUdeviceptr p, size_t n, int byte)     p[0..n) = byte
 *   add      (CUdeviceptr p, size_t n, int delta)    p[i] += delta
 *   copy     (CUdeviceptr dst, CUdeviceptr src, size_t n)
 *   checksum (CUdeviceptr p, size_t n, CUdeviceptr out)
 *            *(uint64_t *)out = fakecuda_checksum(p, n)
 *   spin     (const int *flag, CUdeviceptr p, size_t n)
 *            waits until *flag (host memory) is non-zero, then reads
 *            p[0..n): a launch that runs until the test releases it */
void *fakecuda_kernel(const char *name);
/* Launches of kernel `name` running right now (a spin kernel counts from
 * the moment it starts waiting). */
int fakecuda_running(const char *name);
/* The checksum kernel's function (64-bit FNV-1a), on the host. */
uint64_t fakecuda_checksum(const void *p, size_t n);

/* ---- device memory ---- */

/* Physical allocations created and not yet released (cuMemCreate). */
long fakecuda_live_handles(void);
/* Ranges currently mapped (cuMemMap). */
long fakecuda_live_mappings(void);
/* Host ranges currently registered (cuMemHostRegister). */
long fakecuda_live_host_registrations(void);
/* Address ranges currently reserved (cuMemAddressReserve). */
long fakecuda_live_reservations(void);
/* Injected failures returned since the fault plan was last set: 0 after a
 * run means the call it names was not made that many times. */
long fakecuda_faults_fired(void);
/* Calls of cuCtxSynchronize so far. */
long fakecuda_syncs(void);
/* Device bytes in use on the machine (shared by all processes); what dead
 * processes held is given back first. */
uint64_t fakecuda_used(void);
/* Device bytes that process `pid` holds (its allocations; tenant bytes
 * not included). */
uint64_t fakecuda_process_used(int pid);
/* Device capacity of this process's view, bytes. */
uint64_t fakecuda_capacity(void);
/* Take or give back device bytes as another tenant would (owned by this
 * process). Returns 0 or -1 when the capacity does not allow it. */
int fakecuda_tenant_take(uint64_t bytes);
void fakecuda_tenant_give(uint64_t bytes);
/* Record `bytes` as held by process `pid` started at `start` (clock ticks
 * after boot, field 22 of /proc/PID/stat), as if it had allocated them:
 * for testing that the bytes of a dead process, or of a pid now reused by
 * a younger process, are reclaimed. Returns 0, or -1 if the table is
 * full. */
int fakecuda_plant_owner(int pid, unsigned long long start, uint64_t bytes);

#endif /* FAKECUDA_H */
