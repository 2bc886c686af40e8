// SPDX-License-Identifier: GPL-2.0
/*
 * Time: a clocksource reading the host's monotonic clock in nanoseconds,
 * and a one-shot clock event device driven by a host timer whose callback
 * raises the timer interrupt.
 */
#include <linux/clocksource.h>
#include <linux/clockchips.h>
#include <linux/init.h>
#include <linux/interrupt.h>
#include <linux/irq.h>
#include <linux/delay.h>
#include <linux/sched/clock.h>
#include <linux/timekeeping.h>
#include <linux/kstrtox.h>
#include <asm/lkl.h>

static u64 boot_time;
static void *host_timer;
static int timer_irq;

void __ndelay(unsigned long nsecs)
{
	u64 end = lkl_ops->time() + nsecs;

	while (lkl_ops->time() < end)
		cpu_relax();
}

void __udelay(unsigned long usecs)
{
	__ndelay(usecs * NSEC_PER_USEC);
}

void __const_udelay(unsigned long xloops)
{
	__udelay(xloops / 0x10c7ul);
}

void calibrate_delay(void)
{
}

void read_persistent_clock64(struct timespec64 *ts)
{
	*ts = ns_to_timespec64(lkl_ops->time());
}

unsigned long long sched_clock(void)
{
	if (!boot_time)
		return 0;
	return lkl_ops->time() - boot_time;
}

static u64 lkl_clock_read(struct clocksource *cs)
{
	return lkl_ops->time();
}

static struct clocksource lkl_clocksource = {
	.name	= "lkl",
	.rating	= 499,
	.read	= lkl_clock_read,
	.flags	= CLOCK_SOURCE_IS_CONTINUOUS,
	.mask	= CLOCKSOURCE_MASK(64),
};

/* Host timer callback: runs on a host thread of the timer's own. */
static void host_timer_fired(void *arg)
{
	lkl_trigger_irq(timer_irq);
}

static int lkl_clockevent_shutdown(struct clock_event_device *evt)
{
	if (host_timer) {
		lkl_ops->timer_free(host_timer);
		host_timer = NULL;
	}
	return 0;
}

static int lkl_clockevent_oneshot(struct clock_event_device *evt)
{
	if (host_timer)
		return 0;
	host_timer = lkl_ops->timer_alloc(host_timer_fired, NULL);
	return host_timer ? 0 : -ENOMEM;
}

static int lkl_clockevent_next(unsigned long ns, struct clock_event_device *evt)
{
	return lkl_ops->timer_set_oneshot(host_timer, ns);
}

static struct clock_event_device lkl_clockevent = {
	.name			= "lkl",
	.features		= CLOCK_EVT_FEAT_ONESHOT,
	.set_state_oneshot	= lkl_clockevent_oneshot,
	.set_next_event		= lkl_clockevent_next,
	.set_state_shutdown	= lkl_clockevent_shutdown,
};

static irqreturn_t timer_interrupt(int irq, void *dev_id)
{
	struct clock_event_device *evt = dev_id;

	evt->event_handler(evt);
	return IRQ_HANDLED;
}

/*
 * CLOCK_REALTIME: the host's wall clock is its monotonic clock plus an
 * offset, which the host passes on the command line (lkl_wall_offset=, in
 * ns).  The clock is set from it inside the kernel once our clocksource
 * is in use, so that it matches the host's to within the time of this
 * call: a clock set by a system call from the host would lag by however
 * long that call took, and one set earlier would carry the jiffies
 * clocksource's error across the switch.
 */
static long long wall_offset_ns;
static bool wall_offset_given;

static int __init wall_offset_setup(char *str)
{
	if (kstrtoll(str, 10, &wall_offset_ns))
		return 0;
	wall_offset_given = true;
	return 1;
}
__setup("lkl_wall_offset=", wall_offset_setup);

static int __init set_wall_clock(void)
{
	struct timespec64 ts;

	if (!wall_offset_given)
		return 0;
	ts = ns_to_timespec64(lkl_ops->time() + wall_offset_ns);
	return do_settimeofday64(&ts);
}
late_initcall_sync(set_wall_clock);

void __init time_init(void)
{
	int ret;

	timer_irq = lkl_get_free_irq("timer");
	ret = request_irq(timer_irq, timer_interrupt,
			  IRQF_NOBALANCING | IRQF_TIMER, "timer",
			  &lkl_clockevent);
	if (ret)
		pr_err("lkl: cannot request timer irq %d: %d\n", timer_irq, ret);

	ret = clocksource_register_khz(&lkl_clocksource, 1000000);
	if (ret)
		pr_err("lkl: cannot register clocksource: %d\n", ret);

	clockevents_config_and_register(&lkl_clockevent, NSEC_PER_SEC, 1,
					ULONG_MAX);

	boot_time = lkl_ops->time();
}
