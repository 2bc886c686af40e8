// SPDX-License-Identifier: GPL-2.0
/*
 * Boot and halt.
 *
 * lkl_start_kernel() starts a host thread that runs start_kernel() as the
 * idle task.  The kernel boots as usual until init: a late initcall leaves
 * an empty /init in the root filesystem and registers a binary format that
 * recognises it.  "Executing" /init finishes system call setup, turns the
 * init task into the first host task and wakes lkl_start_kernel(), whose
 * thread takes the init task over.  The init task's own host thread ends
 * there.
 *
 * lkl_sys_halt() reboots the kernel: the CPU gate closes, the idle loop
 * ends its thread, and every remaining task's host thread is ended and
 * joined before the memory goes back to the host.
 */
#include <linux/binfmts.h>
#include <linux/init.h>
#include <linux/init_task.h>
#include <linux/init_syscalls.h>
#include <linux/kdev_t.h>
#include <linux/major.h>
#include <linux/personality.h>
#include <linux/printk.h>
#include <linux/reboot.h>
#include <linux/fs.h>
#include <linux/start_kernel.h>
#include <linux/syscalls.h>
#include <linux/tick.h>
#include <linux/stdarg.h>
#include <linux/pid_namespace.h>
#include <asm/setup.h>
#include <asm/unistd.h>
#include <asm/lkl.h>

struct lkl_host_operations *lkl_ops;
static char cmd_line[COMMAND_LINE_SIZE];
static struct lkl_sem *init_sem;
static int init_err;
static bool is_running;
static unsigned long mem_size = 64 * 1024 * 1024;

void (*pm_power_off)(void);

static int __init early_mem(char *str)
{
	mem_size = memparse(str, NULL);
	return 0;
}
early_param("mem", early_mem);

static long lkl_panic_blink(int state)
{
	lkl_ops->panic();
	return 0;
}

void __init setup_arch(char **cl)
{
	*cl = cmd_line;
	panic_blink = lkl_panic_blink;
	/* loglevel= first, so the console's own greeting obeys it */
	parse_early_param();
	lkl_console_init();
	bootmem_init();
}

/*
 * Checks the memory the command line asks for and takes it from the host,
 * before the boot thread starts: too little, or more than the host gives,
 * fails the start with a message instead of a panic half-way through boot.
 * The last mem= on the command line wins, as in parse_early_param().  Below
 * LKL_MIN_MEM the page allocator cannot hold the boot-time allocations.
 */
#define LKL_MIN_MEM	(16UL << 20)

static int boot_memory_alloc(const char *cl)
{
	const char *p = cl;
	unsigned long size = mem_size;

	while ((p = strstr(p, "mem=")) != NULL) {
		if (p == cl || p[-1] == ' ')
			size = memparse(p + 4, NULL);
		p += 4;
	}
	if (size < LKL_MIN_MEM) {
		lkl_printf("lkl: mem=%luK is too small: LKL needs at least %luM\n",
			   size >> 10, LKL_MIN_MEM >> 20);
		return -ENOMEM;
	}
	/* the size early_mem() will read */
	return bootmem_alloc(size);
}

/* The boot thread: it becomes the idle task once init is running. */
static void __init lkl_run_kernel(void *arg)
{
	threads_init();
	lkl_cpu_get();
	start_kernel();
}

int lkl_init(struct lkl_host_operations *ops)
{
	if (!ops || !ops->print || !ops->panic || !ops->sem_alloc ||
	    !ops->sem_free || !ops->sem_up || !ops->sem_down ||
	    !ops->mutex_alloc || !ops->mutex_free || !ops->mutex_lock ||
	    !ops->mutex_unlock || !ops->thread_create || !ops->thread_detach ||
	    !ops->thread_exit ||
	    !ops->thread_join || !ops->thread_self || !ops->thread_equal ||
	    !ops->tls_alloc || !ops->tls_free || !ops->tls_set ||
	    !ops->tls_get || !ops->mem_alloc || !ops->mem_free ||
	    !ops->time || !ops->timer_alloc || !ops->timer_set_oneshot ||
	    !ops->timer_free || !ops->jmp_buf_set || !ops->jmp_buf_longjmp)
		return -EINVAL;
	lkl_ops = ops;
	return 0;
}

void lkl_cleanup(void)
{
	if (!is_running)
		lkl_ops = NULL;
}

int __ref lkl_start_kernel(const char *fmt, ...)
{
	va_list ap;
	int len, ret;

	if (!lkl_ops)
		return -EINVAL;
	if (is_running)
		return -EBUSY;

	len = scnprintf(boot_command_line, COMMAND_LINE_SIZE, "%s ",
			CONFIG_BUILTIN_CMDLINE);
	va_start(ap, fmt);
	len += vscnprintf(boot_command_line + len, COMMAND_LINE_SIZE - len,
			  fmt, ap);
	va_end(ap);
	if (lkl_ops->virtio_devices)
		scnprintf(boot_command_line + len, COMMAND_LINE_SIZE - len,
			  " %s", lkl_ops->virtio_devices);
	memcpy(cmd_line, boot_command_line, COMMAND_LINE_SIZE);

	ret = boot_memory_alloc(boot_command_line);
	if (ret)
		return ret;

	init_sem = lkl_ops->sem_alloc(0);
	if (!init_sem) {
		bootmem_cleanup();
		return -ENOMEM;
	}

	ret = lkl_cpu_init();
	if (ret)
		goto out_free_sem;

	if (!lkl_ops->thread_create(lkl_run_kernel, NULL)) {
		ret = -ENOMEM;
		goto out_free_sem;
	}

	/* wait for /init to run, or for the boot to fail */
	lkl_ops->sem_down(init_sem);
	lkl_ops->sem_free(init_sem);
	init_sem = NULL;
	if (init_err)
		return init_err;

	/* this thread is the init task from now on */
	current_thread_info()->tid = lkl_ops->thread_self();
	lkl_cpu_change_owner(current_thread_info()->tid);
	lkl_cpu_put();
	is_running = true;
	return 0;

out_free_sem:
	lkl_ops->sem_free(init_sem);
	init_sem = NULL;
	bootmem_cleanup();
	return ret;
}

int lkl_is_running(void)
{
	return is_running;
}

void machine_halt(void)
{
	lkl_cpu_shutdown();
}

void machine_power_off(void)
{
	machine_halt();
}

void machine_restart(char *unused)
{
	machine_halt();
}

/*
 * kernel_init() opens /dev/console as init's fds 0-2. LKL has no tty layer,
 * so the console node rootfs starts with (5:1) cannot open and boot warned
 * "unable to open an initial console". Make it the null device instead:
 * init's standard streams lead nowhere, as they would anyway.
 */
static int __init console_node_init(void)
{
	init_unlink("/dev/console");
	init_mkdir("/dev", 0755);
	return init_mknod("/dev/console", S_IFCHR | 0600,
			  new_encode_dev(MKDEV(MEM_MAJOR, 3)));
}
late_initcall(console_node_init);

long lkl_sys_halt(void)
{
	long params[6] = { LINUX_REBOOT_MAGIC1, LINUX_REBOOT_MAGIC2,
			   LINUX_REBOOT_CMD_RESTART, 0, 0, 0 };
	long err;

	if (!is_running)
		return -ENODEV;

	/*
	 * The reboot prints "reboot: Restarting system" at KERN_EMERG, which
	 * is no news to the host: a console kept to warnings and worse (the
	 * default, loglevel=4) stays quiet through the halt.
	 */
	if (console_loglevel <= 4)
		console_loglevel = CONSOLE_LOGLEVEL_SILENT;

	err = lkl_syscall(__NR_reboot, params);
	if (err < 0)
		return err;

	is_running = false;
	lkl_cpu_wait_shutdown();

	syscalls_abort_blocked();
	syscalls_cleanup();
	threads_cleanup();
	/* stop the clock event device and its host timer */
	tick_suspend_local();
	bootmem_cleanup();
	lkl_ops->thread_join(init_thread_union.thread_info.tid);
	lkl_cpu_free();
	return 0;
}

static int lkl_run_init(struct linux_binprm *bprm);

static struct linux_binfmt lkl_init_binfmt = {
	.module		= THIS_MODULE,
	.load_binary	= lkl_run_init,
};

static int lkl_run_init(struct linux_binprm *bprm)
{
	int ret;

	if (strcmp("/init", bprm->filename) != 0)
		return -ENOEXEC;

	ret = begin_new_exec(bprm);
	if (ret)
		return ret;
	set_personality(PER_LINUX);
	setup_new_exec(bprm);
	set_binfmt(&lkl_init_binfmt);

	/* host tasks' children are reaped by the kernel itself */
	init_pid_ns.child_reaper = NULL;

	ret = syscalls_init();
	if (ret)
		init_err = ret;

	/*
	 * The thread that called lkl_start_kernel() takes the init task over
	 * from here, so nobody will join this one: detach it before it ends.
	 */
	lkl_ops->thread_detach();
	lkl_ops->sem_up(init_sem);
	lkl_ops->thread_exit();
	return 0;
}

/* The root filesystem is the initial ramfs: put an empty /init in it. */
static int __init lkl_fs_setup(void)
{
	struct file *file;

	/* read-only: a writer would make the exec fail with ETXTBSY */
	file = filp_open("/init", O_CREAT | O_RDONLY, 0700);
	if (IS_ERR(file)) {
		pr_err("lkl: cannot create /init: %ld\n", PTR_ERR(file));
		return PTR_ERR(file);
	}
	filp_close(file, NULL);
	register_binfmt(&lkl_init_binfmt);
	return 0;
}
late_initcall(lkl_fs_setup);
