// SPDX-License-Identifier: GPL-2.0
/*
 * Processes for the host: one kernel shared by a tree of host processes.
 *
 * A kernel server runs LKL for several client processes.  Each client
 * process is an LKL process of its own, made by lkl_proc_create(), fresh
 * or as a fork of another; each client thread is served by a host thread
 * of the server that joins that process with lkl_thread_join() and then
 * makes the client's system calls with lkl_syscall().
 *
 * A process's leader task holds what the process owns (file table, fs,
 * credentials, signal handlers) and never runs system calls: it is parked
 * like host0, and borrowed by whichever host thread forks, joins or kills
 * the process (switch_to_host_task() runs it on the calling thread).
 * Leaders are children of init, whose SIGCHLD is ignored: the kernel reaps
 * them itself, and their threads, when they exit.
 *
 * lkl_proc_kill() sends SIGKILL to the whole process and lets the leader
 * exit: blocked calls of its threads return, and the process's files are
 * released when the last of its threads has left (lkl_thread_leave()).
 */
#include <linux/kernel.h>
#include <linux/errno.h>
#include <linux/sched.h>
#include <linux/sched/task.h>
#include <linux/sched/signal.h>
#include <linux/fdtable.h>
#include <linux/fs_struct.h>
#include <linux/file.h>
#include <linux/path.h>
#include <linux/rcupdate.h>
#include <linux/resource.h>
#include <linux/task_work.h>
#include <asm/lkl.h>

/* the RLIMIT_NOFILE of a fresh process */
#define PROC_NOFILE		65536

#define PROC_THREAD_FLAGS	(CLONE_VM | CLONE_FS | CLONE_FILES | \
				 CLONE_SIGHAND | CLONE_THREAD)

/*
 * Take the CPU as the calling host thread's task, or, for a thread without
 * one, with whatever host task is current.  Returns 0 with the CPU held.
 */
static int proc_enter(void)
{
	struct task_struct *task = host_task_get();

	if (task)
		return enter_host_task(task) < 0 ? -ENOSYS : 0;
	return lkl_cpu_get() < 0 ? -ENOSYS : 0;
}

/* Whether @task's process is on its way out. */
static bool proc_dying(struct task_struct *task)
{
	return (task->flags & PF_EXITING) ||
	       (task->signal->flags & SIGNAL_GROUP_EXIT);
}

/*
 * The leader of process @pid, with a reference, or NULL.  Unless @dying,
 * NULL too if the process is on its way out.  A process a fatal signal
 * reached (kill() from inside the kernel) is dying, but its parked leader
 * still has to be ended by lkl_proc_kill().
 */
static struct task_struct *get_leader(long pid, bool dying)
{
	struct task_struct *task;

	if (pid <= 0 || pid > INT_MAX)
		return NULL;
	rcu_read_lock();
	task = find_task_by_vpid(pid);
	if (task && (!test_tsk_thread_flag(task, TIF_PROC_LEADER) ||
		     (task->flags & PF_EXITING) ||
		     (!dying && proc_dying(task))))
		task = NULL;
	if (task)
		get_task_struct(task);
	rcu_read_unlock();
	return task;
}

/*
 * Run as @task (a leader, borrowed, or the caller's own task) on this host
 * thread; false if its process is exiting meanwhile.
 */
static bool run_as(struct task_struct *task)
{
	switch_to_host_task(task);
	return !proc_dying(task);
}

/*
 * The task a fork of process @parent is cloned from: the calling host
 * thread's own task if it is a thread of @parent (a fork copies the
 * forking thread's credentials), else @parent's leader.  With a
 * reference, or NULL if there is no such live process.
 */
static struct task_struct *get_fork_source(long parent)
{
	struct task_struct *self = host_task_get();

	if (self && task_tgid_vnr(self) == parent && !proc_dying(self)) {
		get_task_struct(self);
		return self;
	}
	return get_leader(parent, false);
}

/* A new task cloned from current with @flags, or an ERR_PTR. */
static struct task_struct *clone_host_task(unsigned long flags)
{
	struct task_struct *task;
	pid_t pid;

	pid = user_mode_thread(host_task_stub, NULL, flags);
	if (pid < 0)
		return ERR_PTR(pid);
	rcu_read_lock();
	task = find_task_by_vpid(pid);
	get_task_struct(task);
	rcu_read_unlock();
	return task;
}

/* What a fresh process has that a copy of init's does not. */
static void fresh_process_setup(void)
{
	struct fs_struct *fs = current->fs;
	struct rlimit *nofile = &current->signal->rlim[RLIMIT_NOFILE];
	struct path root;

	__close_range(0, ~0U, 0);

	get_fs_root(fs, &root);
	set_fs_pwd(fs, &root);
	path_put(&root);
	fs->umask = 0022;

	task_lock(current->group_leader);
	nofile->rlim_cur = PROC_NOFILE;
	nofile->rlim_max = PROC_NOFILE;
	task_unlock(current->group_leader);

	/* the closes' last fputs, if any */
	task_work_run();
}

/**
 * lkl_proc_create - make a process
 * @parent: 0 for a fresh process, else the pid of the process to fork
 *
 * See the uapi header.  Returns the new process's pid or a negative errno.
 */
long lkl_proc_create(long parent)
{
	struct task_struct *from = host0, *leader;
	unsigned long flags = SIGCHLD;
	long ret;

	if (parent < 0)
		return -EINVAL;
	ret = proc_enter();
	if (ret)
		return ret;

	if (parent) {
		from = get_fork_source(parent);
		if (!from) {
			ret = -ESRCH;
			goto out;
		}
		/* a sibling: a child of init, reaped by the kernel */
		flags |= CLONE_PARENT;
	}
	if (!run_as(from)) {
		ret = -ESRCH;
		goto out_put;
	}

	leader = clone_host_task(flags);
	if (IS_ERR(leader)) {
		ret = PTR_ERR(leader);
		goto out_put;
	}
	set_tsk_thread_flag(leader, TIF_PROC_LEADER);
	snprintf(leader->comm, sizeof(leader->comm), "proc%d", leader->pid);
	ret = leader->pid;

	switch_to_host_task(leader);
	if (!parent)
		fresh_process_setup();
	put_task_struct(leader);

out_put:
	if (parent)
		put_task_struct(from);
out:
	lkl_cpu_put();
	return ret;
}

/**
 * lkl_thread_join - make the calling host thread a thread of process @pid
 * @pid: a process made by lkl_proc_create()
 * @user: whose memory the thread's user pointers refer to (0: this host
 *	process's; otherwise the cookie passed to user_read and user_write)
 *
 * Returns the new thread's tid or a negative errno.
 */
long lkl_thread_join(long pid, unsigned long user)
{
	struct task_struct *leader, *task;
	long ret;

	if (host_task_get())
		return -EBUSY;
	if (user && (!lkl_ops->user_read || !lkl_ops->user_write))
		return -EOPNOTSUPP;
	if (lkl_cpu_get() < 0)
		return -ENOSYS;

	leader = get_leader(pid, false);
	if (!leader) {
		ret = -ESRCH;
		goto out;
	}
	if (!run_as(leader)) {
		ret = -ESRCH;
		goto out_put;
	}

	task = clone_host_task(PROC_THREAD_FLAGS);
	if (IS_ERR(task)) {
		ret = PTR_ERR(task);
		goto out_put;
	}
	task_thread_info(task)->user = user;
	host_task_set(task);
	switch_to_host_task(task);
	ret = task->pid;
	put_task_struct(task);

out_put:
	put_task_struct(leader);
out:
	lkl_cpu_put();
	return ret;
}

/**
 * lkl_thread_leave - end the calling host thread's task
 *
 * Returns 0, or a negative errno if the thread has no task.
 */
long lkl_thread_leave(void)
{
	struct task_struct *task = host_task_get();
	struct thread_info *ti;

	if (!task)
		return -ESRCH;
	if (enter_host_task(task) < 0)
		return -ENOSYS;
	host_task_set(NULL);

	/* do_exit() schedules away for good: return here, CPU handed over */
	ti = task_thread_info(task);
	set_ti_thread_flag(ti, TIF_EXIT_JB);
	lkl_ops->jmp_buf_set(&ti->sched_jb, exit_host_task);
	return 0;
}

/*
 * Give the process of current a file table of its own if another process
 * shares it: every thread of the process moves to the copy.
 */
static int exec_unshare_files(void)
{
	struct files_struct *old = current->files, *new;
	struct task_struct *t;
	int users = 0, moved = 0;

	rcu_read_lock();
	for_each_thread(current, t)
		if (t->files == old)
			users++;
	rcu_read_unlock();
	if (atomic_read(&old->count) <= users)
		return 0;

	new = dup_fd(old, NULL);
	if (IS_ERR(new))
		return PTR_ERR(new);
	rcu_read_lock();
	for_each_thread(current, t) {
		if (t->files != old)
			continue;
		if (moved++)
			atomic_inc(&new->count);
		task_lock(t);
		t->files = new;
		task_unlock(t);
	}
	rcu_read_unlock();
	/* another process still holds @old: these are not the last puts */
	while (moved--)
		put_files_struct(old);
	return 0;
}

/**
 * lkl_proc_exec - what execve() does to the calling thread's process
 *
 * Returns 0 or a negative errno.
 */
long lkl_proc_exec(void)
{
	struct task_struct *task = host_task_get();
	long ret;

	if (!task)
		return -ESRCH;
	if (enter_host_task(task) < 0)
		return -ENOSYS;

	ret = exec_unshare_files();
	if (!ret) {
		do_close_on_exec(current->files);
		flush_signal_handlers(current, 0);
		/* close now: a closed socket's port is free on return */
		task_work_run();
	}
	lkl_cpu_put();
	return ret;
}

static void kill_leader(void)
{
	do_group_exit(SIGKILL);
}

/**
 * lkl_proc_kill - end process @pid
 *
 * Returns 0, or -ESRCH if there is no such live process.
 */
long lkl_proc_kill(long pid)
{
	struct task_struct *leader;
	struct thread_info *ti;
	long ret;

	ret = proc_enter();
	if (ret)
		return ret;
	leader = get_leader(pid, true);
	if (!leader) {
		lkl_cpu_put();
		return -ESRCH;
	}
	switch_to_host_task(leader);
	if (leader->flags & PF_EXITING) {
		put_task_struct(leader);
		lkl_cpu_put();
		return -ESRCH;
	}
	/* the leader is current: it stays alive until it has exited */
	put_task_struct(leader);

	/*
	 * SIGKILL to every thread, and the leader exits; the calling host
	 * thread returns here once the leader is dead, CPU handed over.
	 */
	ti = task_thread_info(leader);
	set_ti_thread_flag(ti, TIF_EXIT_JB);
	lkl_ops->jmp_buf_set(&ti->sched_jb, kill_leader);
	return 0;
}

/**
 * lkl_thread_interrupt - interrupt the blocked system call of task @tid
 *
 * Returns 0 (also when the task is not blocked in a call) or -ESRCH.
 */
long lkl_thread_interrupt(long tid)
{
	struct task_struct *task;
	struct thread_info *ti;
	long ret;

	if (tid <= 0 || tid > INT_MAX)
		return -ESRCH;
	ret = proc_enter();
	if (ret)
		return ret;

	ret = -ESRCH;
	rcu_read_lock();
	task = find_task_by_vpid(tid);
	if (task && test_tsk_thread_flag(task, TIF_HOST_THREAD)) {
		ti = task_thread_info(task);
		/* asleep inside a call, and a signal would wake it */
		if (ti->syscall && task != current &&
		    (READ_ONCE(task->__state) & TASK_INTERRUPTIBLE))
			set_notify_signal(task);
		ret = 0;
	}
	rcu_read_unlock();
	lkl_cpu_put();
	return ret;
}
