// SPDX-License-Identifier: GPL-2.0
/*
 * User memory of another host process, and the string accessors.
 *
 * See asm/uaccess.h: a task whose thread_info has a non-zero "user" cookie
 * reaches its user memory only through the host's user_read and user_write
 * operations, which return the number of bytes they could not copy.  A
 * host without them cannot have such tasks (lkl_thread_join() refuses).
 */
#include <linux/kernel.h>
#include <linux/export.h>
#include <linux/uaccess.h>
#include <linux/minmax.h>
#include <linux/mm.h>
#include <asm/host_ops.h>

unsigned long lkl_user_read(void *to, const void __user *from,
			    unsigned long n)
{
	unsigned long user = current_thread_info()->user;

	if (!n)
		return 0;
	if (!lkl_ops->user_read)
		return n;
	return lkl_ops->user_read(user, to, (const void __force *)from, n);
}
EXPORT_SYMBOL(lkl_user_read);

unsigned long lkl_user_write(void __user *to, const void *from,
			     unsigned long n)
{
	unsigned long user = current_thread_info()->user;

	if (!n)
		return 0;
	if (!lkl_ops->user_write)
		return n;
	return lkl_ops->user_write(user, (void __force *)to, from, n);
}
EXPORT_SYMBOL(lkl_user_write);

static const char zeroes[256];

unsigned long lkl_user_clear(void __user *to, unsigned long n)
{
	while (n) {
		unsigned long len = min_t(unsigned long, n, sizeof(zeroes));
		unsigned long left = lkl_user_write(to, zeroes, len);

		n -= len - left;
		if (left)
			break;
		to += len;
	}
	return n;
}
EXPORT_SYMBOL(lkl_user_clear);

/*
 * Read the string at @src, at most @count bytes, into @dst (which may be
 * NULL to only measure it) a page-bounded chunk at a time, so that a
 * string ending just before an unmapped page is read whole.  Returns the
 * string's length (without the NUL) if it ends within @count bytes, @count
 * if it does not, -EFAULT if memory before its end could not be read.
 */
static long remote_string(char *dst, const char __user *src, long count)
{
	char buf[128];
	long done = 0;

	while (done < count) {
		unsigned long addr = (unsigned long)src + done;
		unsigned long len = min_t(unsigned long, count - done,
					  sizeof(buf));
		unsigned long got;
		char *nul;

		len = min(len, PAGE_SIZE - offset_in_page(addr));
		got = len - lkl_user_read(buf, (const void __user *)addr, len);
		nul = memchr(buf, 0, got);
		if (nul)
			got = nul - buf + 1;
		if (dst)
			memcpy(dst + done, buf, got);
		if (nul)
			return done + got - 1;
		if (got < len)
			return -EFAULT;
		done += got;
	}
	return count;
}

/**
 * strncpy_from_user - copy a NUL-terminated string from user memory
 * @dst: where to copy it
 * @src: the user string
 * @count: the size of @dst
 *
 * Returns the string's length (without the NUL, which is copied too) if
 * it is shorter than @count; @count, with @dst not terminated, if it is
 * not; -EFAULT if the memory could not be read.
 */
long strncpy_from_user(char *dst, const char __user *src, long count)
{
	size_t len;

	if (count <= 0)
		return 0;
	if (lkl_user_remote())
		return remote_string(dst, src, count);

	len = strnlen((const char __force *)src, count);
	memcpy(dst, (const char __force *)src, len < count ? len + 1 : len);
	return len;
}
EXPORT_SYMBOL(strncpy_from_user);

/**
 * strnlen_user - the size of a user string, NUL included
 * @src: the user string
 * @n: the most bytes to look at
 *
 * Returns the size including the NUL, a value larger than @n if there is
 * no NUL in the first @n bytes, and 0 if the memory could not be read.
 */
long strnlen_user(const char __user *src, long n)
{
	long len;

	if (n <= 0)
		return 0;
	if (!lkl_user_remote())
		return strnlen((const char __force *)src, n) + 1;

	len = remote_string(NULL, src, n);
	if (len < 0)
		return 0;
	return len + 1;
}
EXPORT_SYMBOL(strnlen_user);
