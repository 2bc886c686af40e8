/* SPDX-License-Identifier: GPL-2.0 */
#ifndef _ASM_LKL_VMLINUX_LDS_H
#define _ASM_LKL_VMLINUX_LDS_H

/* The host loads LKL wherever it likes: no fixed load address. */
#define RO_EXCEPTION_TABLE_ALIGN 16

#include <asm-generic/vmlinux.lds.h>

#endif
