/* SPDX-License-Identifier: GPL-2.0 */
#ifndef _ASM_LKL_PROCESSOR_H
#define _ASM_LKL_PROCESSOR_H

struct task_struct;

static inline void cpu_relax(void)
{
	__asm__ __volatile__("" : : : "memory");
}

struct thread_struct { };

#define INIT_THREAD { }

#define task_pt_regs(tsk)	((struct pt_regs *)NULL)

static inline unsigned long __get_wchan(struct task_struct *p)
{
	return 0;
}

#define KSTK_EIP(tsk)		(0)
#define KSTK_ESP(tsk)		(0)

#define TASK_SIZE		(~0UL)
#define STACK_TOP		(~0UL)
#define STACK_TOP_MAX		STACK_TOP
#define TASK_UNMAPPED_BASE	0

#endif
