/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
#ifndef _ASM_UAPI_LKL_PTRACE_H
#define _ASM_UAPI_LKL_PTRACE_H

/* There is no user mode to trace: the registers are a placeholder. */
#ifndef __ASSEMBLY__
struct user_pt_regs {
	unsigned long regs[1];
};
#endif

#endif
