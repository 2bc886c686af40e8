/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Internal interfaces between the pieces of the LKL port: the CPU lock
 * (cpu.c), tasks on host threads (threads.c), interrupts (irq.c), system
 * call entry (syscalls.c) and memory (mm/bootmem.c).
 */
#ifndef _ASM_LKL_LKL_H
#define _ASM_LKL_LKL_H

#include <asm/host_ops.h>

struct task_struct;
struct thread_info;

/* cpu.c: the one CPU that host threads take turns to hold. */
int lkl_cpu_init(void);
int lkl_cpu_get(void);
#define LKL_ENTER_TAKEN		1
#define LKL_ENTER_SWITCHED	2
int lkl_cpu_enter(struct thread_info *ti);
void lkl_cpu_wake_entries(void);
void lkl_cpu_entry_switched(struct thread_info *ti);
void lkl_cpu_put(void);
int lkl_cpu_try_run_irq(int irq);
void lkl_cpu_change_owner(lkl_thread_t owner);
void lkl_cpu_shutdown(void);
void lkl_cpu_wait_shutdown(void);
int lkl_cpu_is_shut_down(void);
void lkl_cpu_free(void);

/* threads.c: kernel tasks mapped onto host threads. */
void threads_init(void);
void threads_cleanup(void);
void switch_to_host_task(struct task_struct *task);
void lkl_sched_detach(void);
int host_task_stub(void *unused);

/* sched.c */
bool lkl_other_task_runnable(void);

/* irq.c */
void set_irq_pending(int irq);
bool lkl_irqs_pending(void);
void run_irqs(void);

/* syscalls.c */
struct lkl_syscall_frame {
	long no;
	long *params;
	long ret;
	bool aborted;
	struct lkl_jmp_buf jb;
};
void lkl_syscall_abort(struct thread_info *ti) __noreturn;
void syscalls_abort_blocked(void);
extern struct task_struct *host0;
struct task_struct *host_task_get(void);
void host_task_set(struct task_struct *task);
int enter_host_task(struct task_struct *task);
void exit_host_task(void);
int syscalls_init(void);
void syscalls_cleanup(void);
bool wakeup_idle_host_task(void);
bool lkl_is_idle_host_task(struct task_struct *task);
void idle_host_task_run(struct task_struct *prev);

/* console.c */
void lkl_console_init(void);

/* mm/bootmem.c */
int bootmem_alloc(unsigned long mem_size);
void bootmem_init(void);
void bootmem_cleanup(void);

#endif
