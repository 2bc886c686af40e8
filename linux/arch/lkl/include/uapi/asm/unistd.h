/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * LKL uses the asm-generic system call numbers (openat is 56, read 63,
 * getpid 172), with the "new" stat family and the rlimit pair.
 */
#define __ARCH_WANT_NEW_STAT
#define __ARCH_WANT_SET_GET_RLIMIT
#define __ARCH_WANT_RENAMEAT
#define __ARCH_WANT_SYS_CLONE3

#include <asm-generic/unistd.h>
