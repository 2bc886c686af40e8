// SPDX-License-Identifier: GPL-2.0
/*
 * System call entry.
 *
 * lkl_syscall() takes the CPU, finds the calling host thread's kernel task
 * through a host TLS key (creating it on the thread's first call), makes
 * it current, runs the handler from the table and gives the CPU back.  A
 * host thread's task is a thread of the init process ("hostN") unless the
 * thread joined a process of its own (lkl_thread_join(), process.c); the
 * TLS key's destructor makes it exit when the host thread ends.
 *
 * While the CPU is free, "current" is a host task: the idle host task
 * stands in when no application thread is in the kernel, so the idle task
 * never has to be switched away from on a foreign thread.
 */
#include <linux/kernel.h>
#include <linux/errno.h>
#include <linux/sched.h>
#include <linux/sched/task.h>
#include <linux/sched/signal.h>
#include <linux/task_work.h>
#include <linux/syscalls.h>
#include <linux/platform_device.h>
#include <linux/pid_namespace.h>
#include <asm/unistd.h>
#include <asm/syscalls.h>
#include <asm/lkl.h>

typedef long (*syscall_fn_t)(long, long, long, long, long, long);

#undef __SYSCALL
#define __SYSCALL(nr, sym)	[nr] = (void *)sym,

static void *syscall_table[__NR_syscalls] = {
	[0 ... __NR_syscalls - 1] = (void *)sys_ni_syscall,
#include <uapi/asm/unistd.h>
};

#define HOST_TASK_CLONE_FLAGS (CLONE_VM | CLONE_FS | CLONE_FILES | \
			       CLONE_THREAD | CLONE_SIGHAND | SIGCHLD)

struct task_struct *host0;
static struct task_struct *idle_host_task;
static struct lkl_tls_key *task_key;
static atomic_t host_task_seq = ATOMIC_INIT(0);

static int new_host_task(struct task_struct **task)
{
	pid_t pid;

	/* fork from host0 so that every host task joins init's group */
	switch_to_host_task(host0);

	/*
	 * A user-mode thread, not a kthread: the last fput() of a file (and
	 * so an unmount) then runs as task work when the call returns, as for
	 * any process, instead of being deferred to a worker a tick later.
	 */
	pid = user_mode_thread(host_task_stub, NULL, HOST_TASK_CLONE_FLAGS);
	if (pid < 0)
		return pid;

	rcu_read_lock();
	*task = find_task_by_pid_ns(pid, &init_pid_ns);
	rcu_read_unlock();

	snprintf((*task)->comm, sizeof((*task)->comm), "host%d",
		 atomic_inc_return(&host_task_seq));
	return 0;
}

void exit_host_task(void)
{
	do_exit(0);
}

/* The calling host thread's task, NULL if it has none (yet). */
struct task_struct *host_task_get(void)
{
	return task_key ? lkl_ops->tls_get(task_key) : NULL;
}

void host_task_set(struct task_struct *task)
{
	lkl_ops->tls_set(task_key, task);
}

/*
 * Take the CPU for host task @task of the calling thread and make it
 * current.  Returns 0, or a negative value when the kernel is halting.
 */
int enter_host_task(struct task_struct *task)
{
	struct thread_info *ti = task_thread_info(task);
	int ret = lkl_cpu_enter(ti);

	if (ret < 0)
		return ret;
	if (ret == LKL_ENTER_SWITCHED) {
		/* the scheduler switched @task in: finish that switch */
		schedule_tail(ti->prev_sched);
		return 0;
	}
	switch_to_host_task(task);
	return 0;
}

/* TLS destructor: the host thread of @arg's task is exiting. */
static void del_host_task(void *arg)
{
	struct task_struct *task = arg;
	struct thread_info *ti = task_thread_info(task);

	if (enter_host_task(task) < 0)
		return;

	/* do_exit() schedules away for good: return here, CPU handed over */
	set_ti_thread_flag(ti, TIF_EXIT_JB);
	lkl_ops->jmp_buf_set(&ti->sched_jb, exit_host_task);
}

/*
 * Enter the kernel as the calling host thread's task.  Returns with the
 * CPU held and that task current, or an error with the CPU not held.
 */
static long enter_kernel(void)
{
	struct task_struct *task;
	long ret;

	task = lkl_ops->tls_get(task_key);
	if (task)
		return enter_host_task(task) < 0 ? -ENOSYS : 0;

	/* the thread's first call: make its task */
	ret = lkl_cpu_get();
	if (ret < 0)
		return -ENOSYS;
	ret = new_host_task(&task);
	if (ret) {
		lkl_cpu_put();
		return ret;
	}
	lkl_ops->tls_set(task_key, task);
	switch_to_host_task(task);
	return 0;
}

/* Threads blocked in system calls when the kernel halted, and gone since. */
static atomic_t aborted_calls = ATOMIC_INIT(0);

/* Runs the current host task's system call; see lkl_syscall(). */
static void run_syscall(void)
{
	struct lkl_syscall_frame *frame = current_thread_info()->syscall;
	syscall_fn_t fn = (syscall_fn_t)syscall_table[frame->no];
	long *p = frame->params;

	frame->ret = fn(p[0], p[1], p[2], p[3], p[4], p[5]);
	/* lkl_thread_interrupt() interrupts one call, not the next one */
	clear_notify_signal();
	task_work_run();
}

/**
 * lkl_syscall_abort - leave a system call blocked when the kernel halted
 *
 * Called on the host thread of a host task woken by
 * syscalls_abort_blocked(): it jumps back to lkl_syscall(), which returns
 * -ESHUTDOWN, and never touches kernel memory again.
 */
void lkl_syscall_abort(struct thread_info *ti)
{
	struct lkl_syscall_frame *frame = ti->syscall;

	frame->ret = -ESHUTDOWN;
	frame->aborted = true;
	/* from here on, this thread touches only its own stack */
	atomic_inc(&aborted_calls);
	lkl_ops->jmp_buf_longjmp(&frame->jb, 1);
	unreachable();
}

/**
 * syscalls_abort_blocked - end the system calls blocked at halt
 *
 * Runs in lkl_sys_halt() once the CPU is shut down: every host thread
 * waiting inside a system call is woken to leave it, and this waits until
 * all have left, so that the kernel's memory can go.
 */
void syscalls_abort_blocked(void)
{
	struct task_struct *p, *t;
	int blocked = 0;

	for_each_process_thread(p, t) {
		struct thread_info *ti = task_thread_info(t);

		if (!test_ti_thread_flag(ti, TIF_HOST_THREAD) ||
		    !READ_ONCE(ti->blocked) || !ti->syscall)
			continue;
		ti->dead = true;
		blocked++;
		lkl_ops->sem_up(ti->sched_sem);
	}
	while (atomic_read(&aborted_calls) < blocked)
		cpu_relax();
	atomic_set(&aborted_calls, 0);
}

long lkl_syscall(long no, long *params)
{
	struct lkl_syscall_frame frame = { .no = no, .params = params };
	struct thread_info *ti;
	long ret;

	if (no < 0 || no >= __NR_syscalls)
		return -ENOSYS;
	if (!task_key)
		return -ENOSYS;

	ret = enter_kernel();
	if (ret)
		return ret;

	/*
	 * Run the call under a return point: if the kernel halts while the
	 * call is blocked, this thread jumps back here (lkl_syscall_abort()).
	 */
	ti = current_thread_info();
	ti->syscall = &frame;
	lkl_ops->jmp_buf_set(&frame.jb, run_syscall);
	if (frame.aborted)
		return frame.ret;
	ti->syscall = NULL;
	ret = frame.ret;

	/*
	 * A call a signal interrupted: there is no handler to run and
	 * restart it after, so it fails as one without SA_RESTART does.
	 */
	if (ret == -ERESTARTSYS || ret == -ERESTARTNOINTR ||
	    ret == -ERESTARTNOHAND || ret == -ERESTART_RESTARTBLOCK)
		ret = -EINTR;

	if (no == __NR_reboot) {
		/* halting: leave the CPU to the idle loop, which ends it */
		lkl_sched_detach();
		return ret;
	}

	lkl_cpu_put();
	return ret;
}

static long virtio_mmio_add(unsigned long base, unsigned long size, int irq)
{
	struct platform_device *pdev;
	struct resource res[] = {
		DEFINE_RES_MEM(base, size),
		DEFINE_RES_IRQ(irq),
	};
	int ret;

	pdev = platform_device_alloc("virtio-mmio", PLATFORM_DEVID_AUTO);
	if (!pdev)
		return -ENOMEM;

	ret = platform_device_add_resources(pdev, res, ARRAY_SIZE(res));
	if (ret)
		goto out_put;
	ret = platform_device_add(pdev);
	if (ret)
		goto out_put;
	return pdev->id;

out_put:
	platform_device_put(pdev);
	return ret;
}

long lkl_virtio_mmio_add(unsigned long base, unsigned long size, int irq)
{
	long ret;

	if (!task_key)
		return -ENOSYS;
	ret = enter_kernel();
	if (ret)
		return ret;
	ret = virtio_mmio_add(base, size, irq);
	lkl_cpu_put();
	return ret;
}

/*
 * Called from the idle loop: must neither fail nor block.  Returns false
 * while there is no idle host task yet (during boot, before init runs).
 */
bool wakeup_idle_host_task(void)
{
	if (!idle_host_task)
		return false;
	if (!need_resched())
		wake_up_process(idle_host_task);
	return true;
}

bool lkl_is_idle_host_task(struct task_struct *task)
{
	return task == idle_host_task;
}

/*
 * What the idle host task does each time it is switched in: finish the
 * switch from @prev and give the CPU back (or let runnable tasks run).  The
 * idle task's thread runs this itself when it switches to the idle host
 * task (see __switch_to()), so going idle wakes no other host thread.
 */
void idle_host_task_run(struct task_struct *prev)
{
	schedule_tail(prev);
	lkl_cpu_put();
}

static int idle_host_task_loop(void *unused)
{
	struct thread_info *ti = current_thread_info();

	snprintf(current->comm, sizeof(current->comm), "idle_host_task");
	set_thread_flag(TIF_HOST_THREAD);
	idle_host_task = current;

	lkl_cpu_put();
	for (;;) {
		lkl_ops->sem_down(ti->sched_sem);
		if (!idle_host_task)
			break;
		idle_host_task_run(ti->prev_sched);
	}
	lkl_ops->thread_exit();
	return 0;
}

int syscalls_init(void)
{
	snprintf(current->comm, sizeof(current->comm), "host0");
	set_thread_flag(TIF_HOST_THREAD);
	host0 = current;

	/* nobody waits for host tasks: let the kernel reap them */
	kernel_sigaction(SIGCHLD, SIG_IGN);

	task_key = lkl_ops->tls_alloc(del_host_task);
	if (!task_key)
		return -ENOMEM;

	if (kernel_thread(idle_host_task_loop, NULL, NULL,
			  HOST_TASK_CLONE_FLAGS) < 0) {
		lkl_ops->tls_free(task_key);
		task_key = NULL;
		return -ENOMEM;
	}
	return 0;
}

void syscalls_cleanup(void)
{
	if (idle_host_task) {
		struct thread_info *ti = task_thread_info(idle_host_task);

		idle_host_task = NULL;
		lkl_ops->sem_up(ti->sched_sem);
		lkl_ops->thread_join(ti->tid);
		ti->tid = 0;
	}
	if (task_key) {
		lkl_ops->tls_free(task_key);
		task_key = NULL;
	}
}
