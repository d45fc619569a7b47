/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fakecuda.h - test-only controls of the simulated driver
 * (build/fake/libcuda.so.1). Never part of the product.
 */
#ifndef FAKECUDA_H
#define FAKECUDA_H

#include <stddef.h>
#include <stdint.h>

/* Replace the fault plan: "cuMemCreate:3,cuMemHostRegister:1" makes the 3rd
 * call of cuMemCreate (counted from now) and the 1st of cuMemHostRegister
 * fail with CUDA_ERROR_OUT_OF_MEMORY. Any entry point can be named, by its
 * name without the _v2 suffix; "cuMemRelease:1:unknown" picks the error
 * (oom, inval, illegal, unknown). NULL or "" clears it. */
void fakecuda_set_fail(const char *spec);
/* Make every later call of `fn` block on entry, without holding the
 * driver's lock, until fakecuda_unhold(): a request held open at a known
 * point, whatever the machine's speed. */
void fakecuda_hold(const char *fn);
void fakecuda_unhold(void);
/* Callers blocked in `fn` by a hold right now. */
int fakecuda_held(const char *fn);
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
/* Device bytes in use on the machine (shared by all processes). */
uint64_t fakecuda_used(void);
/* Device capacity of this process's view, bytes. */
uint64_t fakecuda_capacity(void);
/* Take or give back device bytes as another tenant would. Returns 0 or -1
 * when the capacity does not allow it. */
int fakecuda_tenant_take(uint64_t bytes);
void fakecuda_tenant_give(uint64_t bytes);

#endif /* FAKECUDA_H */
