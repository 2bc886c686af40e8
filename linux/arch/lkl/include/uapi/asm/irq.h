/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
#ifndef _ASM_UAPI_LKL_IRQ_H
#define _ASM_UAPI_LKL_IRQ_H

/*
 * Pending interrupts are kept in a two-level bitmap: one word of summary
 * bits, each covering one word of interrupt bits.  64 x 64 lines.
 */
#define IRQ_STATUS_BITS		(8 * sizeof(unsigned long))
#define NR_IRQS			((int)(IRQ_STATUS_BITS * IRQ_STATUS_BITS))

#endif
