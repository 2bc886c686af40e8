// SPDX-License-Identifier: GPL-2.0
/*
 * Memory: one block from the host, sized by mem=, given whole to memblock
 * as ZONE_NORMAL and handed back at halt.
 */
#include <linux/memblock.h>
#include <linux/mm.h>
#include <linux/swap.h>
#include <asm/lkl.h>

unsigned long memory_start, memory_end;
static void *host_block;
static unsigned long host_block_size;
static unsigned long memory_size;

void *empty_zero_page;

/*
 * The buddy allocator works on blocks of MAX_ORDER_NR_PAGES aligned by pfn:
 * start the memory on such a boundary, so every block is whole.
 */
#define LKL_MEM_ALIGN	(MAX_ORDER_NR_PAGES << PAGE_SHIFT)

/**
 * bootmem_alloc - get the kernel's memory from the host, before boot
 *
 * Called by lkl_start_kernel() with the size mem= asks for, so that a host
 * that cannot give it fails the start with a message instead of a panic
 * half-way through boot.
 */
int bootmem_alloc(unsigned long mem_size)
{
	mem_size = PAGE_ALIGN(mem_size);
	host_block_size = mem_size + LKL_MEM_ALIGN;
	if (lkl_ops->page_alloc)
		host_block = lkl_ops->page_alloc(host_block_size);
	else
		host_block = lkl_ops->mem_alloc(host_block_size);
	if (!host_block) {
		lkl_printf("lkl: mem=%luM: the host gave no block of %lu MiB: ask for less with mem=\n",
			   mem_size >> 20, host_block_size >> 20);
		return -ENOMEM;
	}
	memory_size = mem_size;
	return 0;
}

void __init bootmem_init(void)
{
	unsigned long max_zone_pfn[MAX_NR_ZONES] = { 0 };
	unsigned long mem_size = memory_size;

	memory_start = ALIGN((unsigned long)host_block, LKL_MEM_ALIGN);
	memory_end = memory_start + mem_size;

	memblock_add(__pa(memory_start), mem_size);

	min_low_pfn = virt_to_pfn((void *)memory_start);
	max_low_pfn = max_pfn = virt_to_pfn((void *)memory_end);
	set_max_mapnr(max_pfn - ARCH_PFN_OFFSET);

	empty_zero_page = memblock_alloc(PAGE_SIZE, PAGE_SIZE);
	memset(empty_zero_page, 0, PAGE_SIZE);

	max_zone_pfn[ZONE_NORMAL] = max_low_pfn;
	free_area_init(max_zone_pfn);
}

void __init mem_init(void)
{
	memblock_free_all();
}

/* __init memory stays with the library: nothing to free. */
void free_initmem(void)
{
}

void bootmem_cleanup(void)
{
	if (lkl_ops->page_free)
		lkl_ops->page_free(host_block, host_block_size);
	else
		lkl_ops->mem_free(host_block);
	host_block = NULL;
}
