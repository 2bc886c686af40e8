/* SPDX-License-Identifier: GPL-2.0 */
#ifndef _ASM_LKL_SYSCALL_DEFINE_HOOK_H
#define _ASM_LKL_SYSCALL_DEFINE_HOOK_H

#include <linux/compiler.h>

/*
 * Record every system call's signature, as text, in .lkl_syscall_defs:
 * one line "NAME<TAB>NARGS<TAB>TYPE, ARG, TYPE, ARG..." each.  The build
 * extracts the section into syscall_defs.txt and drops it from lkl.o.
 */
#define __ARCH_SYSCALL_DEFINE_HOOK(x, sname, ...)			\
	static const char __lkl_syscall_def##sname[] __used		\
		__section(".lkl_syscall_defs") __aligned(1) =		\
		#sname "\t" #x "\t" #__VA_ARGS__ "\n";

#endif
