/* SPDX-License-Identifier: GPL-2.0 */
#ifndef _ASM_LKL_XOR_H
#define _ASM_LKL_XOR_H

#include <asm-generic/xor.h>

/*
 * The generic C routines only, so no speed test at boot (it costs about a
 * millisecond of every start): 8regs is as fast as any of them on the
 * 64-bit hosts LKL runs on.
 */
#define XOR_SELECT_TEMPLATE(FASTEST)	(&xor_block_8regs)

#endif
