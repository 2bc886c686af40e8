/* SPDX-License-Identifier: GPL-2.0 */
#ifndef _ASM_LKL_PTRACE_H
#define _ASM_LKL_PTRACE_H

#include <uapi/asm/ptrace.h>

/* No user mode, so no user registers: pt_regs is a placeholder. */
struct pt_regs {
	unsigned long dummy;
};

#define user_mode(regs)			0
#define kernel_mode(regs)		1
#define profile_pc(regs)		0
#define instruction_pointer(regs)	0
#define user_stack_pointer(regs)	0
#define current_pt_regs()		((struct pt_regs *)NULL)

static inline long regs_return_value(struct pt_regs *regs)
{
	return 0;
}

#endif
