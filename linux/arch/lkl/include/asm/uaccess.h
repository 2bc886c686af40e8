/* SPDX-License-Identifier: GPL-2.0 */
#ifndef _ASM_LKL_UACCESS_H
#define _ASM_LKL_UACCESS_H

/*
 * User memory.
 *
 * A task's user pointers refer to the memory of the host process named by
 * its thread_info's "user" cookie.  0 is the host process LKL runs in:
 * user memory is ordinary memory, copied with memcpy.  Any other value is
 * another host process (a client of a kernel server; see lkl_thread_join()):
 * every access goes through the host's user_read and user_write
 * operations, and a failed access is -EFAULT as on Linux.
 *
 * The single-value accessors (get_user() and friends) fall back to the
 * raw copies below; strncpy_from_user(), strnlen_user() and clear_user()
 * live in kernel/uaccess.c.
 */
#include <linux/compiler.h>
#include <linux/string.h>
#include <asm/thread_info.h>

unsigned long lkl_user_read(void *to, const void __user *from,
			    unsigned long n);
unsigned long lkl_user_write(void __user *to, const void *from,
			     unsigned long n);
unsigned long lkl_user_clear(void __user *to, unsigned long n);

/* whether the current task's user memory is another host process's */
static __always_inline bool lkl_user_remote(void)
{
	return unlikely(current_thread_info()->user != 0);
}

static inline __must_check unsigned long
raw_copy_from_user(void *to, const void __user *from, unsigned long n)
{
	if (lkl_user_remote())
		return lkl_user_read(to, from, n);
	memcpy(to, (const void __force *)from, n);
	return 0;
}

static inline __must_check unsigned long
raw_copy_to_user(void __user *to, const void *from, unsigned long n)
{
	if (lkl_user_remote())
		return lkl_user_write(to, from, n);
	memcpy((void __force *)to, from, n);
	return 0;
}
#define INLINE_COPY_FROM_USER
#define INLINE_COPY_TO_USER

static inline __must_check unsigned long
__clear_user(void __user *to, unsigned long n)
{
	if (lkl_user_remote())
		return lkl_user_clear(to, n);
	memset((void __force *)to, 0, n);
	return 0;
}
#define __clear_user __clear_user

/* Kernel memory is always ours. */
#define __get_kernel_nofault(dst, src, type, err_label)			\
do {									\
	*((type *)(dst)) = get_unaligned((type *)(src));		\
	if (0) /* make sure the label looks used to the compiler */	\
		goto err_label;						\
} while (0)

#define __put_kernel_nofault(dst, src, type, err_label)			\
do {									\
	put_unaligned(*((type *)(src)), (type *)(dst));			\
	if (0) /* make sure the label looks used to the compiler */	\
		goto err_label;						\
} while (0)

#include <linux/unaligned.h>
#include <asm-generic/uaccess.h>

#endif
