/* SPDX-License-Identifier: GPL-2.0 */
#ifndef _ASM_LKL_HOST_OPS_H
#define _ASM_LKL_HOST_OPS_H

#include <uapi/asm/host_ops.h>

/* The table the host gave lkl_init(); the only way to reach the host. */
extern struct lkl_host_operations *lkl_ops;

int lkl_printf(const char *fmt, ...) __printf(1, 2);
void lkl_bug(const char *fmt, ...) __printf(1, 2) __noreturn;

#endif
