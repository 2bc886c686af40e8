/* SPDX-License-Identifier: GPL-2.0 */
#ifndef _ASM_LKL_VMALLOC_H
#define _ASM_LKL_VMALLOC_H

/* vmalloc is kmalloc without an MMU: nothing architecture-specific. */

#endif
