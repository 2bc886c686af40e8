/* SPDX-License-Identifier: GPL-2.0 */
#ifndef _ASM_LKL_THREAD_INFO_H
#define _ASM_LKL_THREAD_INFO_H

/*
 * Kernel tasks run on host threads and use the host thread's stack, so a
 * task's "stack" is only its thread_info, allocated with kmalloc by the
 * arch thread-stack allocator.
 */
#define THREAD_SIZE		(4096)

#ifndef __ASSEMBLY__
#include <asm/types.h>
#include <asm/processor.h>
#include <asm/host_ops.h>

struct thread_info {
	struct task_struct *task;
	unsigned long flags;
	int preempt_count;
	/* the task's host thread waits here while another task runs */
	struct lkl_sem *sched_sem;
	/* where a detached schedule() returns to; see lkl_sched_detach() */
	struct lkl_jmp_buf sched_jb;
	/* set when the task is dead and its host thread must exit */
	bool dead;
	lkl_thread_t tid;
	/* the task that ran before this one was switched in */
	struct task_struct *prev_sched;
	/*
	 * Host tasks: the system call in progress, and where to leave it if
	 * the kernel halts while the call is blocked (see lkl_syscall()).
	 */
	struct lkl_syscall_frame *syscall;
	/* a host thread waits on sched_sem inside a system call */
	bool blocked;
	/*
	 * Host tasks: queued in lkl_cpu_enter() while another thread holds
	 * the CPU (see cpu.c); the link, the state and the woken list's link.
	 */
	struct thread_info *entry_next;
	struct thread_info *entry_wake_next;
	int entry_state;
	/*
	 * Whose memory the task's user pointers refer to: 0 for the host
	 * process LKL runs in, otherwise a cookie for the host's user_read
	 * and user_write operations (see asm/uaccess.h).
	 */
	unsigned long user;
	unsigned long stackend;
};

#define INIT_THREAD_INFO(tsk)				\
{							\
	.task		= &tsk,				\
	.preempt_count	= INIT_PREEMPT_COUNT,		\
	.flags		= 0,				\
}

extern struct thread_info *lkl_current_ti;

static inline struct thread_info *current_thread_info(void)
{
	return lkl_current_ti;
}

unsigned long *arch_alloc_thread_stack_node(struct task_struct *tsk, int node);
void arch_free_thread_stack(struct task_struct *tsk);

#define __HAVE_THREAD_FUNCTIONS
#define task_thread_info(task)	((struct thread_info *)(task)->stack)
#define task_stack_page(task)	((task)->stack)
void setup_thread_stack(struct task_struct *p, struct task_struct *org);
#define end_of_stack(p)		(&task_thread_info(p)->stackend)

#endif /* __ASSEMBLY__ */

#define TIF_SYSCALL_TRACE	0
#define TIF_NOTIFY_RESUME	1
#define TIF_SIGPENDING		2
#define TIF_NEED_RESCHED	3
#define TIF_RESTORE_SIGMASK	4
#define TIF_MEMDIE		5
#define TIF_NOHZ		6
/* schedule() away from this task returns through sched_jb */
#define TIF_SCHED_JB		7
/* the task stands for a host (application) thread */
#define TIF_HOST_THREAD		8
#define TIF_NOTIFY_SIGNAL	9
/* the leader of a process made by lkl_proc_create() */
#define TIF_PROC_LEADER		10
/* when the task dies, its host thread returns through sched_jb */
#define TIF_EXIT_JB		11

#define _TIF_SIGPENDING		(1 << TIF_SIGPENDING)
#define _TIF_NEED_RESCHED	(1 << TIF_NEED_RESCHED)
#define _TIF_NOTIFY_SIGNAL	(1 << TIF_NOTIFY_SIGNAL)

#endif
