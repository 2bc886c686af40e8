// SPDX-License-Identifier: GPL-2.0
/*
 * memcpy, memset and memmove: the host's versions when it offers them (they
 * are vectorised; the kernel's generic ones copy a byte at a time).
 */
#include <linux/string.h>
#include <linux/export.h>
#include <asm/lkl.h>

void *memcpy(void *dest, const void *src, size_t count)
{
	char *d = dest;
	const char *s = src;

	if (lkl_ops && lkl_ops->memcpy)
		return lkl_ops->memcpy(dest, src, count);
	while (count--)
		*d++ = *s++;
	return dest;
}
EXPORT_SYMBOL(memcpy);

void *memset(void *s, int c, size_t count)
{
	char *p = s;

	if (lkl_ops && lkl_ops->memset)
		return lkl_ops->memset(s, c, count);
	while (count--)
		*p++ = c;
	return s;
}
EXPORT_SYMBOL(memset);

void *memmove(void *dest, const void *src, size_t count)
{
	char *d = dest;
	const char *s = src;

	if (lkl_ops && lkl_ops->memmove)
		return lkl_ops->memmove(dest, src, count);
	if (d <= s) {
		while (count--)
			*d++ = *s++;
	} else {
		d += count;
		s += count;
		while (count--)
			*--d = *--s;
	}
	return dest;
}
EXPORT_SYMBOL(memmove);
