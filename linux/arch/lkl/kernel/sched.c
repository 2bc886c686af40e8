// SPDX-License-Identifier: GPL-2.0
/*
 * What the port needs to know from the scheduler's run queue.
 *
 * A host task leaving the kernel lets other runnable tasks run first
 * (lkl_cpu_put()).  single_task_running() cannot tell: since 6.12 a fair
 * task that blocks with negative lag stays queued, "delayed", until its lag
 * is spent, and nr_running counts it.  Trusting it made the leaving thread
 * schedule away for nothing: the scheduler dequeued the delayed task, found
 * nothing else and went idle, which woke the idle task's thread for every
 * system call for as long as such lag lasted (the slow period after boot).
 */
#include "../../../kernel/sched/sched.h"
#include <asm/lkl.h>

/* Is a task other than current runnable? */
bool lkl_other_task_runnable(void)
{
	struct rq *rq = this_rq();

	return rq->nr_running - rq->cfs.h_nr_delayed > 1;
}
