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
	.flags	= CON_PRINTBUFFER | CON_BOOT | CON_ENABLED,
	.index	= -1,
};

/* Registered from setup_arch(), so even the earliest messages get out. */
void __init lkl_console_init(void)
{
	register_console(&lkl_console);
}
