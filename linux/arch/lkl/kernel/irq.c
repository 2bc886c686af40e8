// SPDX-License-Identifier: GPL-2.0
/*
 * Interrupts.  Any host thread may raise one with lkl_trigger_irq().  If the
 * CPU is free (or already ours) and interrupts are enabled, the handler runs
 * at once on the calling thread; otherwise the line is marked pending and
 * whoever holds the CPU runs it when enabling interrupts or giving the CPU
 * back.
 *
 * Pending lines live in a two-level bitmap: a summary word with one bit
 * per word of line bits, so finding pending lines touches few words.
 */
#include <linux/kernel.h>
#include <linux/init.h>
#include <linux/irq.h>
#include <linux/hardirq.h>
#include <linux/interrupt.h>
#include <linux/sched.h>
#include <linux/seq_file.h>
#include <asm/irq_regs.h>
#include <asm/lkl.h>

static unsigned long irq_pending[NR_IRQS / IRQ_STATUS_BITS];
static unsigned long irq_pending_summary;

static const char *irq_owner[NR_IRQS];

/* ARCH_IRQ_ENABLED or ARCH_IRQ_DISABLED */
static unsigned long irqs_enabled;

static struct pt_regs irq_dummy_regs;

void set_irq_pending(int irq)
{
	int word = irq / IRQ_STATUS_BITS;
	int bit = irq % IRQ_STATUS_BITS;

	__sync_fetch_and_or(&irq_pending[word], BIT(bit));
	__sync_fetch_and_or(&irq_pending_summary, BIT(word));
}

/* Whether a line is marked pending (callers hold the CPU state lock). */
bool lkl_irqs_pending(void)
{
	return READ_ONCE(irq_pending_summary) != 0;
}

static void run_irq(int irq)
{
	unsigned long flags;
	struct pt_regs *old_regs = set_irq_regs(&irq_dummy_regs);

	/* handlers run with interrupts off, like on hardware */
	local_irq_save(flags);
	irq_enter();
	generic_handle_irq(irq);
	irq_exit();
	set_irq_regs(old_regs);
	local_irq_restore(flags);
}

/* Run every pending interrupt. */
void run_irqs(void)
{
	unsigned long summary, bits;
	int word, bit;

	/* threads queued to enter the kernel: let the scheduler see them */
	lkl_cpu_wake_entries();

	if (!READ_ONCE(irq_pending_summary))
		return;

	summary = __sync_fetch_and_and(&irq_pending_summary, 0);
	while (summary) {
		word = __ffs(summary);
		summary &= ~BIT(word);

		bits = __sync_fetch_and_and(&irq_pending[word], 0);
		while (bits) {
			bit = __ffs(bits);
			bits &= ~BIT(bit);
			run_irq(word * IRQ_STATUS_BITS + bit);
		}
	}
}

/**
 * lkl_trigger_irq - raise interrupt line @irq
 *
 * Callable from any host thread, including from inside the kernel.  Makes
 * no kernel call unless it got the CPU.
 */
int lkl_trigger_irq(int irq)
{
	int ret;

	if (irq <= 0 || irq >= NR_IRQS)
		return -EINVAL;

	ret = lkl_cpu_try_run_irq(irq);
	if (ret <= 0)
		return ret;

	/* We may be in kernel context already, with interrupts off. */
	if (irqs_enabled == ARCH_IRQ_DISABLED) {
		set_irq_pending(irq);
		lkl_cpu_put();
		return 0;
	}

	run_irq(irq);
	lkl_cpu_put();
	return 0;
}

/*
 * Set once init_IRQ() has made the interrupt descriptors usable: lines taken
 * before that (devices added before boot) get their chip in init_IRQ(), and
 * lines taken after the halt get none (the kernel is gone).
 */
static bool irq_chips_ready;

int lkl_get_free_irq(const char *user)
{
	int i;

	/* line 0 is not valid */
	for (i = 1; i < NR_IRQS; i++) {
		if (!cmpxchg(&irq_owner[i], NULL, user)) {
			if (smp_load_acquire(&irq_chips_ready) &&
			    !lkl_cpu_is_shut_down())
				irq_set_chip_and_handler(i, &dummy_irq_chip,
							 handle_simple_irq);
			return i;
		}
	}
	return -EBUSY;
}

void lkl_put_irq(int irq, const char *user)
{
	if (irq <= 0 || irq >= NR_IRQS || irq_owner[irq] != user) {
		WARN(1, "lkl: %s released irq %d it does not own\n", user, irq);
		return;
	}
	irq_owner[irq] = NULL;
}

unsigned long arch_local_save_flags(void)
{
	return irqs_enabled;
}

void arch_local_irq_restore(unsigned long flags)
{
	if (flags == ARCH_IRQ_ENABLED && irqs_enabled == ARCH_IRQ_DISABLED &&
	    !in_interrupt())
		run_irqs();
	irqs_enabled = flags;
}

int arch_show_interrupts(struct seq_file *p, int prec)
{
	return 0;
}

/*
 * Only the lines in use get a chip: a line without one has no /proc/irq
 * directory, and making one for each of the NR_IRQS lines at boot
 * (init_irq_proc()) would cost thousands of proc entries.  A line taken
 * later gets its chip in lkl_get_free_irq(); one taken while this runs may
 * be set twice, which is harmless.
 */
void __init init_IRQ(void)
{
	int i;

	smp_store_release(&irq_chips_ready, true);
	for (i = 1; i < NR_IRQS; i++)
		if (READ_ONCE(irq_owner[i]))
			irq_set_chip_and_handler(i, &dummy_irq_chip,
						 handle_simple_irq);
}
