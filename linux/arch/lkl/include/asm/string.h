/* SPDX-License-Identifier: GPL-2.0 */
#ifndef _ASM_LKL_STRING_H
#define _ASM_LKL_STRING_H

/*
 * The generic lib/string.c copies a byte at a time; the host's versions are
 * much faster, so memcpy, memset and memmove go to the host when it offers
 * them (lib/lkl_string.c).
 */
#define __HAVE_ARCH_MEMCPY
#define __HAVE_ARCH_MEMSET
#define __HAVE_ARCH_MEMMOVE

void *memcpy(void *dest, const void *src, __kernel_size_t count);
void *memset(void *s, int c, __kernel_size_t count);
void *memmove(void *dest, const void *src, __kernel_size_t count);

#endif
