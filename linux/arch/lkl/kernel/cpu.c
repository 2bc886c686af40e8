// SPDX-License-Identifier: GPL-2.0
/*
 * The LKL "CPU": the right to run kernel code.
 *
 * Exactly one host thread runs kernel code at a time.  A host thread takes
 * the CPU to make a system call (lkl_cpu_get), to run an interrupt
 * (lkl_cpu_try_run_irq) or because the scheduler switched to its task
 * (__switch_to hands ownership over with lkl_cpu_change_owner).  The owner
 * may take it again recursively.
 *
 * A plain mutex cannot do this: the CPU is often taken on one host thread
 * and given back on another (a context switch), and interrupts must be able
 * to find out, without blocking, that someone else holds it.  So the state
 * is kept explicitly under a small host mutex, and waiters sleep on a
 * semaphore.
 *
 * A host thread that enters the kernel for its task (lkl_cpu_enter) while
 * another thread holds the CPU does not sleep on the CPU semaphore: it
 * queues itself and waits on its task's own semaphore.  The holder wakes
 * the queued tasks (lkl_cpu_wake_entries) as soon as it can run kernel
 * code with interrupts on, so the scheduler sees them as runnable and
 * switches to them directly when the holder blocks or leaves: one host
 * wake-up per handoff, instead of waking a sleeper that then has to find
 * the CPU free and switch its task in (and, when the holder blocked with
 * nothing else runnable, the idle task and the idle host task in between).
 * The CPU is never left free while a thread is queued: the last holder
 * hands it to one of them, unless a thread sleeps in lkl_cpu_get() (a
 * thread's first call), which is woken first and hands it on.
 *
 * Idle: after boot the idle task hands "current" to the idle host task and
 * sleeps on its own semaphore (see syscalls.c).  During boot, before that
 * task exists, it sleeps in cpu_idle_wait() with the CPU free, and whoever
 * frees the CPU next hands it back (cpu_release()).
 *
 * Shutdown: lkl_cpu_shutdown() closes the gate for good; late callers (for
 * example TLS destructors of exiting host threads) get -ESHUTDOWN-like
 * failures instead of touching freed state.  Callers currently inside the
 * gate are counted so that the final cleanup waits for them.
 */
#include <linux/init.h>
#include <linux/kernel.h>
#include <linux/sched.h>
#include <linux/sched/stat.h>
#include <linux/irqflags.h>
#include <linux/preempt.h>
#include <asm/lkl.h>

/* Added to the gate counter when shutting down. */
#define CPU_GATE_CLOSED		(1U << 30)

/* Results of cpu_lock_state(). */
enum {
	CPU_SHUT_GATE = -2,	/* gate closed before we came in */
	CPU_SHUT_LOCKED = -1,	/* gate closed while we waited; lock held */
	CPU_BUSY = 0,		/* another thread owns the CPU; lock held */
	CPU_TAKEN = 1,		/* we own the CPU now; lock held */
};

static struct lkl_cpu {
	struct lkl_mutex *lock;		/* protects everything below */
	unsigned int gate;		/* callers inside + CPU_GATE_CLOSED */
	lkl_thread_t owner;		/* 0 when free */
	unsigned int count;		/* owner's recursion depth */
	unsigned int sleepers;		/* threads waiting on @sem */
	struct thread_info *entries;	/* lkl_cpu_enter() waiters */
	unsigned int entries_queued;	/* ... of them not woken yet */
	bool irqs_pending;		/* set_irq_pending() ran while busy */
	bool idle_waiting;		/* the idle task sleeps on @idle_sem */
	lkl_thread_t idle_tid;		/* ... on this host thread */
	struct lkl_sem *sem;
	struct lkl_sem *idle_sem;
	struct lkl_sem *shutdown_sem;	/* posted when the idle loop ends */
} cpu;

/*
 * Enter the gate (counting ourselves @n times), lock the state and try to
 * become the owner.  On every result but CPU_SHUT_GATE the state lock is
 * held and must be dropped with cpu_unlock_state().
 */
static int cpu_lock_state(int n)
{
	lkl_thread_t self;

	if (__sync_fetch_and_add(&cpu.gate, n) >= CPU_GATE_CLOSED)
		return CPU_SHUT_GATE;

	lkl_ops->mutex_lock(cpu.lock);
	if (READ_ONCE(cpu.gate) >= CPU_GATE_CLOSED)
		return CPU_SHUT_LOCKED;

	self = lkl_ops->thread_self();
	if (cpu.owner && !lkl_ops->thread_equal(cpu.owner, self))
		return CPU_BUSY;

	cpu.owner = self;
	cpu.count++;
	return CPU_TAKEN;
}

static void cpu_unlock_state(int state, int n)
{
	if (state != CPU_SHUT_GATE)
		lkl_ops->mutex_unlock(cpu.lock);
	__sync_fetch_and_sub(&cpu.gate, n);
}

/**
 * lkl_cpu_get - take the CPU, waiting for it if another thread has it
 *
 * Returns 1 when taken, a negative value when the kernel is shutting down.
 */
int lkl_cpu_get(void)
{
	int state = cpu_lock_state(1);

	while (state == CPU_BUSY) {
		cpu.sleepers++;
		cpu_unlock_state(state, 0);
		lkl_ops->sem_down(cpu.sem);
		state = cpu_lock_state(0);
	}
	cpu_unlock_state(state, 1);

	return state == CPU_TAKEN ? 1 : -ESHUTDOWN;
}

/* States of a thread_info's entry_state; see lkl_cpu_enter(). */
enum {
	ENTRY_NONE,
	ENTRY_QUEUED,	/* waiting for the holder to wake its task */
	ENTRY_WOKEN,	/* task runnable: the scheduler switches it in */
	ENTRY_HANDED,	/* the CPU was handed over as it was being freed */
	ENTRY_ABORTED,	/* the kernel is halting */
	ENTRY_SWITCHED,	/* __switch_to() switched the task in */
};

/*
 * How long a queued thread polls for its turn before sleeping on its
 * semaphore (lkl_entry_spin_ns= on the command line).
 */
static unsigned long entry_spin_ns;

static int __init entry_spin_setup(char *str)
{
	return kstrtoul(str, 0, &entry_spin_ns);
}
early_param("lkl_entry_spin_ns", entry_spin_setup);

/**
 * lkl_cpu_entry_switched - @ti's task is being switched in
 *
 * Called by __switch_to() before it posts the task's semaphore, so that a
 * queued thread polling for its turn sees it.  Only the CPU holder changes
 * an entry's state, or the waiter once posted: no lock needed.
 */
void lkl_cpu_entry_switched(struct thread_info *ti)
{
	if (ti->entry_state == ENTRY_WOKEN)
		WRITE_ONCE(ti->entry_state, ENTRY_SWITCHED);
}

static void entry_unlink(struct thread_info *ti)
{
	struct thread_info **p;

	for (p = &cpu.entries; *p; p = &(*p)->entry_next) {
		if (*p == ti) {
			*p = ti->entry_next;
			break;
		}
	}
	ti->entry_next = NULL;
}

/**
 * lkl_cpu_enter - take the CPU to run host task @ti
 *
 * The calling host thread is @ti's.  Returns LKL_ENTER_TAKEN when it got
 * the CPU (the task may not be current yet: switch_to_host_task()),
 * LKL_ENTER_SWITCHED when it waited and the scheduler switched the task in
 * (the caller finishes the switch with schedule_tail()), and a negative
 * value when the kernel is shutting down.
 */
int lkl_cpu_enter(struct thread_info *ti)
{
	int state = cpu_lock_state(1);
	int how;

	if (state != CPU_BUSY) {
		cpu_unlock_state(state, 1);
		return state == CPU_TAKEN ? LKL_ENTER_TAKEN : -ESHUTDOWN;
	}

	ti->tid = lkl_ops->thread_self();
	ti->entry_state = ENTRY_QUEUED;
	ti->entry_next = cpu.entries;
	cpu.entries = ti;
	WRITE_ONCE(cpu.entries_queued, cpu.entries_queued + 1);
	cpu_unlock_state(state, 0);

	if (entry_spin_ns) {
		unsigned long long end = lkl_ops->time() + entry_spin_ns;

		while (READ_ONCE(ti->entry_state) <= ENTRY_WOKEN &&
		       lkl_ops->time() < end)
			cpu_relax();
	}
	lkl_ops->sem_down(ti->sched_sem);

	lkl_ops->mutex_lock(cpu.lock);
	how = ti->entry_state;
	if (how == ENTRY_QUEUED)
		WRITE_ONCE(cpu.entries_queued, cpu.entries_queued - 1);
	ti->entry_state = ENTRY_NONE;
	entry_unlink(ti);
	lkl_ops->mutex_unlock(cpu.lock);
	__sync_fetch_and_sub(&cpu.gate, 1);

	switch (how) {
	case ENTRY_HANDED:
		return LKL_ENTER_TAKEN;
	case ENTRY_ABORTED:
		return -ESHUTDOWN;
	default:
		/* posted by __switch_to(): the task is current, CPU ours */
		return LKL_ENTER_SWITCHED;
	}
}

/**
 * lkl_cpu_wake_entries - make the tasks of queued threads runnable
 *
 * Called by the CPU holder where it can run kernel code: when enabling
 * interrupts and when leaving.  The current task is left queued: it is
 * switched away from first (or handed the CPU when it is freed).
 */
void lkl_cpu_wake_entries(void)
{
	struct thread_info *ti, *wake = NULL;

	if (!READ_ONCE(cpu.entries_queued))
		return;

	lkl_ops->mutex_lock(cpu.lock);
	for (ti = cpu.entries; ti; ti = ti->entry_next) {
		if (ti->entry_state != ENTRY_QUEUED || ti->task == current)
			continue;
		ti->entry_state = ENTRY_WOKEN;
		WRITE_ONCE(cpu.entries_queued, cpu.entries_queued - 1);
		ti->entry_wake_next = wake;
		wake = ti;
	}
	lkl_ops->mutex_unlock(cpu.lock);

	/*
	 * A woken waiter leaves only once its semaphore is posted, which
	 * takes a switch (made by this CPU holder) or a halt: @ti stays valid.
	 */
	while (wake) {
		ti = wake;
		wake = ti->entry_wake_next;
		wake_up_process(ti->task);
	}
}

/*
 * With the state lock held and the CPU being freed: hand it to a queued
 * thread instead, if there is one.  Returns true if handed.
 */
static bool cpu_hand_to_entry(void)
{
	struct thread_info *ti;

	for (ti = cpu.entries; ti; ti = ti->entry_next) {
		if (ti->entry_state != ENTRY_QUEUED &&
		    ti->entry_state != ENTRY_WOKEN)
			continue;
		if (ti->entry_state == ENTRY_QUEUED)
			WRITE_ONCE(cpu.entries_queued, cpu.entries_queued - 1);
		WRITE_ONCE(ti->entry_state, ENTRY_HANDED);
		cpu.owner = ti->tid;
		cpu.count = 1;
		lkl_ops->sem_up(ti->sched_sem);
		return true;
	}
	return false;
}

/*
 * With the state lock held and the CPU being freed: if the idle task sleeps
 * in cpu_idle_wait(), hand the CPU to it and wake it.  It goes round the
 * idle loop again: it schedules if an interrupt made a task runnable, and
 * reprograms the tick for timers an interrupt queued.  Returns true if
 * handed.
 */
static bool cpu_hand_to_idle(void)
{
	if (!cpu.idle_waiting)
		return false;
	cpu.idle_waiting = false;
	cpu.owner = cpu.idle_tid;
	cpu.count = 1;
	lkl_ops->sem_up(cpu.idle_sem);
	return true;
}

/*
 * With the state lock held and the count dropped to 0: free the CPU, or
 * hand it on.  A thread's first call sleeping in lkl_cpu_get() is woken
 * before anything else, or threads busy in the kernel could starve it; it
 * takes the CPU and hands it on when it leaves.  Then a queued entry, then
 * the sleeping idle task.
 */
static void cpu_release(void)
{
	if (!cpu.sleepers && (cpu_hand_to_entry() || cpu_hand_to_idle()))
		return;

	cpu.owner = 0;
	if (cpu.sleepers) {
		cpu.sleepers--;
		lkl_ops->sem_up(cpu.sem);
	}
}

/**
 * lkl_cpu_put - give the CPU back
 *
 * Runs interrupts that arrived while the CPU was busy.  A host task leaving
 * the kernel while other tasks are runnable lets them run first: it
 * schedules away without waiting to be switched back in.
 */
void lkl_cpu_put(void)
{
	lkl_ops->mutex_lock(cpu.lock);

	if (!cpu.count || !cpu.owner ||
	    !lkl_ops->thread_equal(cpu.owner, lkl_ops->thread_self())) {
		/*
		 * Once halting, a host task's thread may still pass here on
		 * its way out without holding the CPU: nothing to give back.
		 */
		if (lkl_cpu_is_shut_down()) {
			lkl_ops->mutex_unlock(cpu.lock);
			return;
		}
		lkl_bug("lkl: unbalanced CPU put\n");
	}

	while (cpu.irqs_pending && !irqs_disabled()) {
		cpu.irqs_pending = false;
		lkl_ops->mutex_unlock(cpu.lock);
		run_irqs();
		lkl_ops->mutex_lock(cpu.lock);
	}

	if (cpu.entries_queued && cpu.count == 1 && !irqs_disabled() &&
	    !in_interrupt()) {
		lkl_ops->mutex_unlock(cpu.lock);
		lkl_cpu_wake_entries();
		lkl_ops->mutex_lock(cpu.lock);
	}

	if (test_thread_flag(TIF_HOST_THREAD) && lkl_other_task_runnable() &&
	    cpu.count == 1) {
		if (in_interrupt())
			lkl_bug("lkl: CPU put in interrupt context\n");
		lkl_ops->mutex_unlock(cpu.lock);
		/* the task switched to takes the CPU over */
		lkl_sched_detach();
		return;
	}

	if (--cpu.count == 0)
		cpu_release();
	lkl_ops->mutex_unlock(cpu.lock);
}

/**
 * lkl_cpu_change_owner - hand the CPU to another host thread
 *
 * Called by __switch_to() with the CPU held exactly once.
 */
void lkl_cpu_change_owner(lkl_thread_t owner)
{
	lkl_ops->mutex_lock(cpu.lock);
	if (cpu.count > 1)
		lkl_bug("lkl: CPU handed over while held recursively\n");
	cpu.owner = owner;
	lkl_ops->mutex_unlock(cpu.lock);
}

/**
 * lkl_cpu_try_run_irq - take the CPU to run @irq, or leave it pending
 *
 * Returns 1 when the caller owns the CPU and should run the interrupt, 0
 * when it was marked pending for the current owner, and a negative value
 * when shutting down.
 */
int lkl_cpu_try_run_irq(int irq)
{
	int state = cpu_lock_state(1);

	if (state == CPU_BUSY) {
		set_irq_pending(irq);
		cpu.irqs_pending = true;
	}
	cpu_unlock_state(state, 1);

	if (state < 0)
		return -ESHUTDOWN;
	return state == CPU_TAKEN;
}

void lkl_cpu_shutdown(void)
{
	__sync_fetch_and_add(&cpu.gate, CPU_GATE_CLOSED);
}

int lkl_cpu_is_shut_down(void)
{
	return READ_ONCE(cpu.gate) >= CPU_GATE_CLOSED;
}

void lkl_cpu_wait_shutdown(void)
{
	lkl_ops->sem_down(cpu.shutdown_sem);
}

/*
 * Free the CPU state.  At halt this runs only once every host thread the
 * kernel made has been joined (lkl_sys_halt()), since a thread on its way
 * out may still take the state lock.
 */
void lkl_cpu_free(void)
{
	/* wait for threads still inside the gate */
	while (__sync_fetch_and_add(&cpu.gate, 0) > CPU_GATE_CLOSED)
		cpu_relax();

	if (cpu.shutdown_sem)
		lkl_ops->sem_free(cpu.shutdown_sem);
	if (cpu.idle_sem)
		lkl_ops->sem_free(cpu.idle_sem);
	if (cpu.sem)
		lkl_ops->sem_free(cpu.sem);
	if (cpu.lock)
		lkl_ops->mutex_free(cpu.lock);
	cpu.shutdown_sem = NULL;
	cpu.idle_sem = NULL;
	cpu.sem = NULL;
	cpu.lock = NULL;
}

/*
 * The idle task with no idle host task to stand in for it (during boot,
 * before init runs, which is where ip=dhcp waits for its answers): give the
 * CPU back and sleep until an interrupt has run, as a CPU halts until the
 * next interrupt.  Nothing else can make a task runnable meanwhile: no host
 * thread can make system calls before init runs.
 *
 * No wake-up is lost: the decision to sleep is taken under the state lock.
 * An interrupt raised before it finds the CPU busy and is marked pending,
 * which is checked here (no sleep then); one raised after it finds the CPU
 * free, runs on its own thread, and cpu_release() hands the CPU back here.
 */
static void cpu_idle_wait(void)
{
	lkl_ops->mutex_lock(cpu.lock);
	if (lkl_irqs_pending() || need_resched() || cpu.count != 1) {
		lkl_ops->mutex_unlock(cpu.lock);
		return;
	}
	cpu.count = 0;
	cpu_release();
	cpu.idle_tid = lkl_ops->thread_self();
	cpu.idle_waiting = true;
	lkl_ops->mutex_unlock(cpu.lock);

	/* cpu_hand_to_idle() posts it with the CPU ours again */
	lkl_ops->sem_down(cpu.idle_sem);
}

/*
 * The idle task: nothing is runnable.  Let the idle host task hold
 * "current" while the CPU is free (before it exists: sleep until an
 * interrupt), or, once halting, end the idle thread.
 */
void arch_cpu_idle(void)
{
	if (lkl_cpu_is_shut_down()) {
		struct thread_info *ti;

		lkl_ops->mutex_lock(cpu.lock);
		while (cpu.sleepers) {
			cpu.sleepers--;
			lkl_ops->sem_up(cpu.sem);
		}
		for (ti = cpu.entries; ti; ti = ti->entry_next) {
			/* (a switched-in or handed entry is leaving already) */
			if (ti->entry_state != ENTRY_QUEUED &&
			    ti->entry_state != ENTRY_WOKEN)
				continue;
			WRITE_ONCE(ti->entry_state, ENTRY_ABORTED);
			lkl_ops->sem_up(ti->sched_sem);
		}
		lkl_ops->mutex_unlock(cpu.lock);
		/* their semaphores are freed at halt: wait until they left */
		while (READ_ONCE(cpu.entries))
			cpu_relax();

		lkl_ops->sem_up(cpu.shutdown_sem);
		lkl_ops->thread_exit();
	}

	/* interrupts may run directly from now on */
	raw_local_irq_enable();
	if (!wakeup_idle_host_task())
		cpu_idle_wait();
}

int lkl_cpu_init(void)
{
	memset(&cpu, 0, sizeof(cpu));
	cpu.lock = lkl_ops->mutex_alloc(0);
	cpu.sem = lkl_ops->sem_alloc(0);
	cpu.idle_sem = lkl_ops->sem_alloc(0);
	cpu.shutdown_sem = lkl_ops->sem_alloc(0);

	if (!cpu.lock || !cpu.sem || !cpu.idle_sem || !cpu.shutdown_sem) {
		lkl_cpu_free();
		return -ENOMEM;
	}

	return 0;
}
