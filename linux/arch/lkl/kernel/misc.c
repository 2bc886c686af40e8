// SPDX-License-Identifier: GPL-2.0
/* Printing to the host outside the printk machinery, and fatal bugs. */
#include <linux/kernel.h>
#include <linux/stdarg.h>
#include <linux/ptrace.h>
#include <linux/seq_file.h>
#include <linux/sched/debug.h>
#include <asm/lkl.h>

static int lkl_vprintf(const char *fmt, va_list args)
{
	char buf[256];
	int n;

	if (!lkl_ops || !lkl_ops->print)
		return 0;
	n = vscnprintf(buf, sizeof(buf), fmt, args);
	lkl_ops->print(buf, n);
	return n;
}

int lkl_printf(const char *fmt, ...)
{
	va_list args;
	int n;

	va_start(args, fmt);
	n = lkl_vprintf(fmt, args);
	va_end(args);
	return n;
}

void lkl_bug(const char *fmt, ...)
{
	va_list args;

	va_start(args, fmt);
	lkl_vprintf(fmt, args);
	va_end(args);
	lkl_ops->panic();
	for (;;)
		;
}

/* No user mode: nothing to trace. */
void ptrace_disable(struct task_struct *child)
{
}

long arch_ptrace(struct task_struct *child, long request, unsigned long addr,
		 unsigned long data)
{
	return -EINVAL;
}

void show_regs(struct pt_regs *regs)
{
}

/* /proc/cpuinfo */
static int cpuinfo_show(struct seq_file *m, void *v)
{
	seq_puts(m, "processor\t: 0\nvendor_id\t: lkl\n\n");
	return 0;
}

static void *cpuinfo_start(struct seq_file *m, loff_t *pos)
{
	return *pos < 1 ? (void *)1 : NULL;
}

static void *cpuinfo_next(struct seq_file *m, void *v, loff_t *pos)
{
	++*pos;
	return NULL;
}

static void cpuinfo_stop(struct seq_file *m, void *v)
{
}

const struct seq_operations cpuinfo_op = {
	.start	= cpuinfo_start,
	.next	= cpuinfo_next,
	.stop	= cpuinfo_stop,
	.show	= cpuinfo_show,
};
