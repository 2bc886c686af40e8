// SPDX-License-Identifier: GPL-2.0
/*
 * Kernel tasks on host threads.
 *
 * Every kernel thread runs on a host thread of its own, made by
 * thread_create() in copy_thread().  A task that is not running waits on
 * the semaphore in its thread_info; __switch_to() posts the next task's
 * semaphore, moves CPU ownership to its host thread and waits on its own.
 *
 * Host tasks stand for application threads that make system calls.  They
 * have no host thread of their own: the application's thread runs them.
 * When such a task is switched away from, its host thread must not wait
 * (it has to return to the application), so schedule() is entered through
 * lkl_sched_detach(), which saves a return point; __switch_to() jumps back
 * to it instead of waiting.  A host task that exits on the host thread
 * of a caller (lkl_thread_leave(), lkl_proc_kill()) returns the same way,
 * but only from its final switch (TIF_EXIT_JB): exit may sleep on the way,
 * and the host thread then waits like in any blocking call.
 */
#include <linux/sched.h>
#include <linux/sched/task.h>
#include <linux/sched/signal.h>
#include <linux/sched/task_stack.h>
#include <linux/slab.h>
#include <linux/kasan.h>
#include <asm/lkl.h>

struct thread_info *lkl_current_ti = &init_thread_union.thread_info;

/*
 * schedule() wants __switch_to() to return the task that ran before the one
 * now resuming, which is not the prev argument of the call that suspended
 * it: keep the last one switched from.
 */
static struct task_struct *last_prev = &init_task;

static int thread_info_init(struct thread_info *ti)
{
	ti->sched_sem = lkl_ops->sem_alloc(0);
	if (!ti->sched_sem)
		return -ENOMEM;
	ti->dead = false;
	ti->prev_sched = NULL;
	ti->tid = 0;
	/*
	 * kmalloc'ed: a stale "blocked" with a stale "syscall" would make the
	 * halt wait for a system call nobody is in (syscalls_abort_blocked()).
	 */
	ti->syscall = NULL;
	ti->blocked = false;
	ti->entry_next = NULL;
	ti->entry_wake_next = NULL;
	ti->entry_state = 0;
	return 0;
}

unsigned long *arch_alloc_thread_stack_node(struct task_struct *task, int node)
{
	struct thread_info *ti;

	/*
	 * Zeroed: a thread_info that is not a host task's must never look
	 * blocked in a system call (syscalls_abort_blocked() would wait for
	 * it forever), whatever the memory held before.
	 */
	ti = kzalloc_node(sizeof(*ti), GFP_KERNEL, node);
	if (!ti)
		return NULL;
	if (thread_info_init(ti)) {
		kfree(ti);
		return NULL;
	}
	ti->task = task;
	return (unsigned long *)ti;
}

/* New tasks start at a known function: only the flags are inherited. */
void setup_thread_stack(struct task_struct *p, struct task_struct *org)
{
	struct thread_info *ti = task_thread_info(p);
	struct thread_info *org_ti = task_thread_info(org);

	ti->flags = org_ti->flags & ~(1UL << TIF_SCHED_JB |
				      1UL << TIF_EXIT_JB |
				      1UL << TIF_PROC_LEADER);
	ti->preempt_count = org_ti->preempt_count;
}

/* End the host thread of a dead kernel thread and wait for it. */
static void thread_info_release(struct thread_info *ti)
{
	if (!test_ti_thread_flag(ti, TIF_HOST_THREAD) && ti->tid) {
		ti->dead = true;
		lkl_ops->sem_up(ti->sched_sem);
		lkl_ops->thread_join(ti->tid);
	}
	lkl_ops->sem_free(ti->sched_sem);
}

void arch_free_thread_stack(struct task_struct *tsk)
{
	struct thread_info *ti = task_thread_info(tsk);

	thread_info_release(ti);
	kfree(ti);
}

struct task_struct *__switch_to(struct task_struct *prev,
				struct task_struct *next)
{
	struct thread_info *prev_ti = task_thread_info(prev);
	struct thread_info *next_ti = task_thread_info(next);
	bool detach = test_ti_thread_flag(prev_ti, TIF_SCHED_JB) ||
		      (test_ti_thread_flag(prev_ti, TIF_EXIT_JB) &&
		       READ_ONCE(prev->__state) == TASK_DEAD);
	struct lkl_jmp_buf jb;

	lkl_current_ti = next_ti;
	next_ti->prev_sched = prev;
	last_prev = prev;

	/*
	 * Going idle: the idle task only wakes the idle host task, which only
	 * gives the CPU back.  Its thread does that itself and waits to be
	 * switched back in, instead of waking the idle host task's thread.
	 */
	if (is_idle_task(prev) && lkl_is_idle_host_task(next)) {
		idle_host_task_run(prev);
		lkl_ops->sem_down(prev_ti->sched_sem);
		return last_prev;
	}

	if (WARN_ON(!next_ti->tid))
		lkl_bug("lkl: switch to %s, which has no host thread\n",
			next->comm);
	lkl_cpu_change_owner(next_ti->tid);

	/*
	 * Once next runs, prev's thread_info may change under us: take what
	 * we need first.
	 */
	if (detach) {
		clear_ti_thread_flag(prev_ti, TIF_SCHED_JB);
		clear_ti_thread_flag(prev_ti, TIF_EXIT_JB);
		jb = prev_ti->sched_jb;
	}

	/*
	 * A host task that waits here is blocked inside a system call.  Say
	 * so before next runs: next may go on to halt the kernel, and the halt
	 * must find this task (syscalls_abort_blocked()).
	 */
	if (!detach && test_ti_thread_flag(prev_ti, TIF_HOST_THREAD))
		WRITE_ONCE(prev_ti->blocked, true);

	lkl_cpu_entry_switched(next_ti);
	lkl_ops->sem_up(next_ti->sched_sem);

	if (detach)
		lkl_ops->jmp_buf_longjmp(&jb, 1);

	lkl_ops->sem_down(prev_ti->sched_sem);
	WRITE_ONCE(prev_ti->blocked, false);

	if (prev_ti->dead) {
		/* halting: a blocked system call returns, a kernel thread ends */
		if (test_ti_thread_flag(prev_ti, TIF_HOST_THREAD))
			lkl_syscall_abort(prev_ti);
		lkl_ops->thread_exit();
	}

	return last_prev;
}

/**
 * lkl_sched_detach - schedule away from the current host task without
 * waiting for it to be switched back in
 *
 * The calling host thread returns once another task has the CPU; the host
 * task sleeps until switch_to_host_task() wakes it.
 */
void lkl_sched_detach(void)
{
	if (!test_thread_flag(TIF_HOST_THREAD))
		lkl_bug("lkl: detached schedule of %s, not a host task\n",
			current->comm);

	set_thread_flag(TIF_SCHED_JB);
	set_current_state(TASK_UNINTERRUPTIBLE);
	lkl_ops->jmp_buf_set(&current_thread_info()->sched_jb, schedule);
}

int host_task_stub(void *unused)
{
	return 0;
}

/**
 * switch_to_host_task - make @task current on the calling host thread
 *
 * The caller holds the CPU.  Whatever host task is current is detached and
 * the caller waits until the scheduler picks @task.
 */
void switch_to_host_task(struct task_struct *task)
{
	if (WARN_ON(!test_tsk_thread_flag(task, TIF_HOST_THREAD)))
		return;

	task_thread_info(task)->tid = lkl_ops->thread_self();

	if (current == task)
		return;

	wake_up_process(task);
	lkl_sched_detach();
	lkl_ops->sem_down(task_thread_info(task)->sched_sem);
	schedule_tail(last_prev);
}

struct thread_start {
	struct thread_info *ti;
	int (*fn)(void *);
	void *arg;
};

/* First code of a new kernel thread's host thread. */
static void thread_start(void *data)
{
	struct thread_start *start = data;
	struct thread_info *ti = start->ti;
	int (*fn)(void *) = start->fn;
	void *arg = start->arg;

	/* wait to be scheduled for the first time */
	lkl_ops->sem_down(ti->sched_sem);
	kfree(start);
	if (ti->dead)
		lkl_ops->thread_exit();
	if (ti->prev_sched)
		schedule_tail(ti->prev_sched);

	fn(arg);
	do_exit(0);
}

int copy_thread(struct task_struct *p, const struct kernel_clone_args *args)
{
	struct thread_info *ti = task_thread_info(p);
	struct thread_start *start;

	if (args->fn == host_task_stub) {
		set_ti_thread_flag(ti, TIF_HOST_THREAD);
		return 0;
	}

	start = kmalloc(sizeof(*start), GFP_KERNEL);
	if (!start)
		return -ENOMEM;
	start->ti = ti;
	start->fn = args->fn;
	start->arg = args->fn_arg;

	ti->tid = lkl_ops->thread_create(thread_start, start);
	if (!ti->tid) {
		kfree(start);
		return -ENOMEM;
	}
	return 0;
}

void flush_thread(void)
{
}

void show_stack(struct task_struct *task, unsigned long *esp,
		const char *loglvl)
{
}

/* Runs before the kernel starts: no printk, no allocation but the host's. */
void threads_init(void)
{
	struct thread_info *ti = &init_thread_union.thread_info;

	if (thread_info_init(ti))
		lkl_printf("lkl: no semaphore for the init task\n");
	ti->tid = lkl_ops->thread_self();
}

/* At halt: end the host thread of every task still alive. */
void threads_cleanup(void)
{
	struct task_struct *p, *t;

	for_each_process_thread(p, t) {
		struct thread_info *ti = task_thread_info(t);

		if (t->pid != 1 && !test_ti_thread_flag(ti, TIF_HOST_THREAD))
			WARN(!(t->flags & PF_KTHREAD),
			     "lkl: task %s is not a kernel thread\n", t->comm);
		thread_info_release(ti);
	}
	lkl_ops->sem_free(init_thread_union.thread_info.sched_sem);
}
