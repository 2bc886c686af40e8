// SPDX-License-Identifier: GPL-2.0
/* Kernel messages go to the host's print operation (its stderr). */
#include <linux/console.h>
#include <linux/init.h>
#include <asm/lkl.h>

static void lkl_console_write(struct console *con, const char *str,
			      unsigned int len)
{
	if (lkl_ops->print)
		lkl_ops->print(str, len);
}

static struct console lkl_console = {
	.name	= "lkl_console",
	.write	= lkl_console_write,
	/*
	 * Not CON_BOOT: a boot console is dropped at the end of boot when it
	 * seems to lie in init memory, and in a library linked -r the init
	 * section's bounds are not where the final link puts things, so the
	 * kernel went silent after boot (no warnings, no panic message).
	 */
	.flags	= CON_PRINTBUFFER | CON_ENABLED,
	.index	= -1,
};

/* Registered from setup_arch(), so even the earliest messages get out. */
void __init lkl_console_init(void)
{
	register_console(&lkl_console);
}
