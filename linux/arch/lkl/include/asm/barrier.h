/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Memory barriers.  LKL is built for one CPU, but host threads run beside
 * it on other host CPUs and share memory with it: a network device's
 * receive thread fills its receive ring while kernel code runs on another
 * host thread.  The barriers that order virtio ring
 * accesses against such a device (virt_mb() and friends, which fall back
 * on mb()) must therefore be real fences, not the compiler barriers
 * asm-generic gives a uniprocessor: on x86 a store followed by a load may
 * otherwise pass each other, and the driver and the device then both miss
 * the other's update (a lost notification or interrupt, and a stalled
 * queue).  The smp_*() barriers stay compiler barriers: kernel code runs
 * on one host thread at a time.
 */
#ifndef _ASM_LKL_BARRIER_H
#define _ASM_LKL_BARRIER_H

#define mb()	__atomic_thread_fence(__ATOMIC_SEQ_CST)
#define rmb()	__atomic_thread_fence(__ATOMIC_ACQUIRE)
#define wmb()	__atomic_thread_fence(__ATOMIC_RELEASE)

#include <asm-generic/barrier.h>

#endif /* _ASM_LKL_BARRIER_H */
