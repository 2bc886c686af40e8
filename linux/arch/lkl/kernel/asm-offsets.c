// SPDX-License-Identifier: GPL-2.0
/* LKL has no assembly that needs structure offsets. */
#include <linux/kbuild.h>

void foo(void)
{
}
