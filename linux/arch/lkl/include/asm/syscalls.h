/* SPDX-License-Identifier: GPL-2.0 */
#ifndef _ASM_LKL_SYSCALLS_H
#define _ASM_LKL_SYSCALLS_H

/* Calls that need a user context of their own have no meaning here. */
#define sys_mmap		sys_ni_syscall
#define sys_clone		sys_ni_syscall
#define sys_clone3		sys_ni_syscall
#define sys_vfork		sys_ni_syscall
#define sys_rt_sigreturn	sys_ni_syscall

#include <asm-generic/syscalls.h>

#endif
