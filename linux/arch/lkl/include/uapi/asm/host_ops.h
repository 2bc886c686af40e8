/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * The host operations table: everything the LKL kernel needs from the
 * program it runs in.  The host fills one of these in and passes it to
 * lkl_init(); the kernel never reaches the host any other way.
 *
 * Every hook may be called from any host thread.  Hooks marked "optional"
 * may be NULL.
 */
#ifndef _ASM_UAPI_LKL_HOST_OPS_H
#define _ASM_UAPI_LKL_HOST_OPS_H

/* Opaque host objects. */
struct lkl_mutex;
struct lkl_sem;
struct lkl_tls_key;

/* A host thread id.  0 never names a thread. */
typedef unsigned long lkl_thread_t;

/* Room for the callee-saved registers, stack and return point. */
struct lkl_jmp_buf {
	unsigned long buf[32];
};

/**
 * struct lkl_host_operations - the host services LKL runs on
 *
 * @virtio_devices: string appended to the kernel command line, announcing
 *	the virtio-mmio devices registered before boot (optional)
 *
 * @print: write @len bytes of kernel log text
 * @panic: the kernel panicked: stop the process
 *
 * @sem_alloc: a counting semaphore starting at @count; NULL on failure
 * @sem_free: destroy a semaphore
 * @sem_up: post
 * @sem_down: wait
 *
 * @mutex_alloc: a mutex, recursive if @recursive; NULL on failure
 * @mutex_lock: lock
 * @mutex_unlock: unlock
 * @mutex_free: destroy
 *
 * @thread_create: start a host thread running @f(@arg); 0 on failure
 * @thread_detach: detach the calling thread
 * @thread_exit: end the calling thread (only called on threads made by
 *	@thread_create)
 * @thread_join: wait for a thread made by @thread_create; 0 on success
 * @thread_self: the calling thread's id
 * @thread_equal: whether two ids name the same thread
 * @thread_stack: the calling thread's stack base, size in @size (optional)
 *
 * @tls_alloc: a thread-local key whose @destructor runs, with the value,
 *	when a thread holding a non-NULL value exits; NULL on failure
 * @tls_free: destroy a key
 * @tls_set: set the calling thread's value; 0 on success
 * @tls_get: the calling thread's value
 *
 * @mem_alloc: malloc-like allocation
 * @mem_free: free what @mem_alloc returned
 * @page_alloc: page-aligned, zeroed allocation of @size bytes (optional)
 * @page_free: free what @page_alloc returned
 *
 * @time: monotonic time in nanoseconds
 * @timer_alloc: a one-shot timer that calls @fn(@arg) on a host thread
 * @timer_set_oneshot: arm the timer to fire once after @delta ns
 * @timer_free: disarm and destroy the timer, waiting for a running @fn
 *
 * @ioremap: map the MMIO window of a virtio device (optional)
 * @iomem_access: read or write @size bytes of an MMIO window (optional)
 *
 * @gettid: the host's id for the calling thread, for diagnostics (optional)
 *
 * @jmp_buf_set: save a return point in @jmpb and call @f; returns when @f
 *	returns or when jmp_buf_longjmp() is called on @jmpb
 * @jmp_buf_longjmp: return to the point saved in @jmpb
 *
 * @memcpy, @memset, @memmove: fast host versions (optional)
 *
 * @user_read: copy @n bytes at address @from of the user memory named by
 *	the cookie @user (see lkl_thread_join()) to the kernel buffer @to;
 *	returns the number of bytes not copied, 0 on success (optional:
 *	without it and @user_write, threads cannot join with a cookie)
 * @user_write: copy @n bytes of the kernel buffer @from to address @to of
 *	the user memory named by @user; returns the number of bytes not
 *	copied, 0 on success (optional, see @user_read)
 */
struct lkl_host_operations {
	const char *virtio_devices;

	void (*print)(const char *str, int len);
	void (*panic)(void);

	struct lkl_sem *(*sem_alloc)(int count);
	void (*sem_free)(struct lkl_sem *sem);
	void (*sem_up)(struct lkl_sem *sem);
	void (*sem_down)(struct lkl_sem *sem);

	struct lkl_mutex *(*mutex_alloc)(int recursive);
	void (*mutex_free)(struct lkl_mutex *mutex);
	void (*mutex_lock)(struct lkl_mutex *mutex);
	void (*mutex_unlock)(struct lkl_mutex *mutex);

	lkl_thread_t (*thread_create)(void (*f)(void *), void *arg);
	void (*thread_detach)(void);
	void (*thread_exit)(void);
	int (*thread_join)(lkl_thread_t tid);
	lkl_thread_t (*thread_self)(void);
	int (*thread_equal)(lkl_thread_t a, lkl_thread_t b);
	void *(*thread_stack)(unsigned long *size);

	struct lkl_tls_key *(*tls_alloc)(void (*destructor)(void *));
	void (*tls_free)(struct lkl_tls_key *key);
	int (*tls_set)(struct lkl_tls_key *key, void *data);
	void *(*tls_get)(struct lkl_tls_key *key);

	void *(*mem_alloc)(unsigned long size);
	void (*mem_free)(void *ptr);
	void *(*page_alloc)(unsigned long size);
	void (*page_free)(void *addr, unsigned long size);

	unsigned long long (*time)(void);

	void *(*timer_alloc)(void (*fn)(void *), void *arg);
	int (*timer_set_oneshot)(void *timer, unsigned long delta);
	void (*timer_free)(void *timer);

	void *(*ioremap)(long addr, int size);
	int (*iomem_access)(const volatile void *addr, void *val, int size,
			    int write);

	long (*gettid)(void);

	void (*jmp_buf_set)(struct lkl_jmp_buf *jmpb, void (*f)(void));
	void (*jmp_buf_longjmp)(struct lkl_jmp_buf *jmpb, int val);

	void *(*memcpy)(void *dest, const void *src, unsigned long count);
	void *(*memset)(void *s, int c, unsigned long count);
	void *(*memmove)(void *dest, const void *src, unsigned long count);

	unsigned long (*user_read)(unsigned long user, void *to,
				   const void *from, unsigned long n);
	unsigned long (*user_write)(unsigned long user, void *to,
				    const void *from, unsigned long n);
};

/**
 * lkl_init - store the host operations; call once before lkl_start_kernel
 * Returns 0, or a negative errno if a mandatory operation is missing.
 */
int lkl_init(struct lkl_host_operations *ops);

/**
 * lkl_cleanup - forget the host operations after lkl_sys_halt()
 */
void lkl_cleanup(void);

/**
 * lkl_start_kernel - boot the kernel
 * @cmd_line: printf-style kernel command line (e.g. "mem=64M loglevel=4")
 *
 * Returns 0 once the kernel is ready for system calls, a negative errno
 * otherwise.  The calling thread becomes the kernel's init task.
 */
int lkl_start_kernel(const char *cmd_line, ...);

/**
 * lkl_is_running - whether the kernel is booted and not halted
 */
int lkl_is_running(void);

/**
 * lkl_syscall - run system call @no with the six arguments in @params
 * Returns the result, a negative errno on failure (-ENOSYS if the kernel
 * is not running).
 */
long lkl_syscall(long no, long *params);

/**
 * lkl_sys_halt - shut the kernel down and join every thread it made
 */
long lkl_sys_halt(void);

/**
 * lkl_trigger_irq - raise interrupt @irq; callable from any host thread
 */
int lkl_trigger_irq(int irq);

/**
 * lkl_get_free_irq - reserve an unused interrupt line for @user
 */
int lkl_get_free_irq(const char *user);

/**
 * lkl_put_irq - give back a line reserved by lkl_get_free_irq()
 */
void lkl_put_irq(int irq, const char *user);

/**
 * lkl_virtio_mmio_add - announce a virtio-mmio device after boot
 * Returns the platform device id, or a negative errno.
 */
long lkl_virtio_mmio_add(unsigned long base, unsigned long size, int irq);

/*
 * Processes.  A kernel server runs LKL for a tree of client processes: each
 * client process is an LKL process of its own, each client thread is served
 * by a host thread that joins that process and makes its system calls.
 * These calls may be made from any host thread (joined or not) unless said
 * otherwise, and return a negative errno on failure.
 *
 * A process's leader never makes system calls itself: it holds what the
 * process owns (file table, cwd, root, umask, credentials, limits, signal
 * handlers) while threads come and go.  The kernel reaps processes and
 * threads itself: no zombie is left.  Ending a process: lkl_proc_kill(),
 * then lkl_thread_leave() on each host thread joined to it (in any order;
 * its files are closed once both are done).  The system calls exit and
 * exit_group must not be made on a joined thread.
 */

/**
 * lkl_proc_create - make a process
 * @parent: 0 for a fresh process (no open files, cwd and root "/", umask
 *	022, init's credentials, RLIMIT_NOFILE 65536); otherwise the pid of a
 *	process to fork: the new one gets a copy of its file table (FD_CLOEXEC
 *	kept), cwd, root, umask, limits and credentials (those of the calling
 *	thread if it is joined to @parent, else those of @parent's leader)
 *
 * Returns the new process's pid (> 0), -ESRCH if @parent is no live process.
 */
long lkl_proc_create(long parent);

/**
 * lkl_thread_join - make the calling host thread a thread of process @pid
 * @pid: a process made by lkl_proc_create()
 * @user: whose memory the thread's user pointers refer to: 0 for this host
 *	process's, otherwise a cookie passed to the user_read and user_write
 *	host operations (-EOPNOTSUPP if the host has none)
 *
 * From then on, lkl_syscall() on this host thread runs as the new thread.
 * Returns its tid (> 0), -EBUSY if the calling thread already has a task
 * (it must lkl_thread_leave() first), -ESRCH if @pid is no live process.
 */
long lkl_thread_join(long pid, unsigned long user);

/**
 * lkl_thread_leave - the calling host thread's task exits
 *
 * A thread exit: the process lives on (its leader holds its files) until
 * lkl_proc_kill().  The host thread may join again or exit afterwards.
 * Returns 0, -ESRCH if the thread has no task.
 */
long lkl_thread_leave(void);

/**
 * lkl_proc_exec - what execve() does to the calling thread's process
 *
 * The file table is unshared from any other process sharing it, the
 * FD_CLOEXEC descriptors are closed and the signal handlers are reset.
 * Returns 0, -ESRCH if the thread has no task.
 */
long lkl_proc_exec(void);

/**
 * lkl_proc_kill - end process @pid, as SIGKILL does
 *
 * Every thread of it blocked in a system call wakes and its call returns
 * (-EINTR, or the call's own error); later calls of its threads may fail
 * the same way.  Each of its threads must then lkl_thread_leave().  The
 * calling thread's own task, if any, is not disturbed (unless it belongs to
 * @pid).  A process that a fatal signal reached from inside the kernel (a
 * kill system call) has its calls interrupted the same way but lives on
 * until lkl_proc_kill(), which also ends it.  Returns 0, -ESRCH if @pid is
 * no process (or one lkl_proc_kill() already ended).
 */
long lkl_proc_kill(long pid);

/**
 * lkl_thread_interrupt - interrupt the blocked system call of thread @tid
 *
 * The call returns -EINTR as if a signal had interrupted it; nothing
 * happens if the thread is not waiting interruptibly inside a call.
 * Returns 0, -ESRCH if there is no such thread.
 */
long lkl_thread_interrupt(long tid);

#endif /* _ASM_UAPI_LKL_HOST_OPS_H */
