/* SPDX-License-Identifier: GPL-2.0 */
#ifndef _ASM_LKL_IO_H
#define _ASM_LKL_IO_H

#include <asm/bug.h>
#include <asm/host_ops.h>

/*
 * MMIO goes through the host: virtio-mmio registers are emulated by the
 * host library, not backed by memory.
 */

#define LKL_MMIO_ACCESSORS(sfx, type)					\
static inline type __raw_read##sfx(const volatile void __iomem *addr)	\
{									\
	type v = 0;							\
									\
	lkl_ops->iomem_access(addr, &v, sizeof(v), 0);			\
	return v;							\
}									\
static inline void __raw_write##sfx(type v, volatile void __iomem *addr) \
{									\
	lkl_ops->iomem_access(addr, &v, sizeof(v), 1);			\
}

LKL_MMIO_ACCESSORS(b, u8)
LKL_MMIO_ACCESSORS(w, u16)
LKL_MMIO_ACCESSORS(l, u32)
LKL_MMIO_ACCESSORS(q, u64)

#define __raw_readb __raw_readb
#define __raw_readw __raw_readw
#define __raw_readl __raw_readl
#define __raw_readq __raw_readq
#define __raw_writeb __raw_writeb
#define __raw_writew __raw_writew
#define __raw_writel __raw_writel
#define __raw_writeq __raw_writeq

#define ioremap ioremap
static inline void __iomem *ioremap(phys_addr_t offset, size_t size)
{
	if (!lkl_ops->ioremap)
		return NULL;
	return (void __iomem *)lkl_ops->ioremap(offset, size);
}

#include <asm-generic/io.h>

#endif
