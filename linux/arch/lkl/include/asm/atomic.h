/* SPDX-License-Identifier: GPL-2.0 */
#ifndef _ASM_LKL_ATOMIC_H
#define _ASM_LKL_ATOMIC_H

/*
 * Atomics from the compiler's builtins, for 32 and 64 bits alike.  Kernel
 * code runs on one host thread at a time, but interrupts are raised from
 * other host threads, so the operations are real atomics.  The generic
 * fallbacks build the rest (inc, dec_and_test, try_cmpxchg, ...).
 */
#include <linux/types.h>
#include <asm/cmpxchg.h>
#include <asm/barrier.h>

#define LKL_ATOMIC_OPS(pfx, atomic_t, int_t)				\
static inline int_t arch_##pfx##_read(const atomic_t *v)		\
{									\
	return __atomic_load_n(&v->counter, __ATOMIC_RELAXED);		\
}									\
static inline void arch_##pfx##_set(atomic_t *v, int_t i)		\
{									\
	__atomic_store_n(&v->counter, i, __ATOMIC_RELAXED);		\
}									\
static inline void arch_##pfx##_add(int_t i, atomic_t *v)		\
{									\
	__atomic_fetch_add(&v->counter, i, __ATOMIC_RELAXED);		\
}									\
static inline void arch_##pfx##_sub(int_t i, atomic_t *v)		\
{									\
	__atomic_fetch_sub(&v->counter, i, __ATOMIC_RELAXED);		\
}									\
static inline void arch_##pfx##_and(int_t i, atomic_t *v)		\
{									\
	__atomic_fetch_and(&v->counter, i, __ATOMIC_RELAXED);		\
}									\
static inline void arch_##pfx##_or(int_t i, atomic_t *v)		\
{									\
	__atomic_fetch_or(&v->counter, i, __ATOMIC_RELAXED);		\
}									\
static inline void arch_##pfx##_xor(int_t i, atomic_t *v)		\
{									\
	__atomic_fetch_xor(&v->counter, i, __ATOMIC_RELAXED);		\
}									\
static inline int_t arch_##pfx##_fetch_add(int_t i, atomic_t *v)	\
{									\
	return __atomic_fetch_add(&v->counter, i, __ATOMIC_SEQ_CST);	\
}									\
static inline int_t arch_##pfx##_fetch_sub(int_t i, atomic_t *v)	\
{									\
	return __atomic_fetch_sub(&v->counter, i, __ATOMIC_SEQ_CST);	\
}									\
static inline int_t arch_##pfx##_fetch_and(int_t i, atomic_t *v)	\
{									\
	return __atomic_fetch_and(&v->counter, i, __ATOMIC_SEQ_CST);	\
}									\
static inline int_t arch_##pfx##_fetch_or(int_t i, atomic_t *v)	\
{									\
	return __atomic_fetch_or(&v->counter, i, __ATOMIC_SEQ_CST);	\
}									\
static inline int_t arch_##pfx##_fetch_xor(int_t i, atomic_t *v)	\
{									\
	return __atomic_fetch_xor(&v->counter, i, __ATOMIC_SEQ_CST);	\
}									\
static inline int_t arch_##pfx##_add_return(int_t i, atomic_t *v)	\
{									\
	return __atomic_add_fetch(&v->counter, i, __ATOMIC_SEQ_CST);	\
}									\
static inline int_t arch_##pfx##_sub_return(int_t i, atomic_t *v)	\
{									\
	return __atomic_sub_fetch(&v->counter, i, __ATOMIC_SEQ_CST);	\
}									\
static inline int_t arch_##pfx##_xchg(atomic_t *v, int_t i)		\
{									\
	return __atomic_exchange_n(&v->counter, i, __ATOMIC_SEQ_CST);	\
}									\
static inline int_t arch_##pfx##_cmpxchg(atomic_t *v, int_t old,	\
					 int_t new)			\
{									\
	__atomic_compare_exchange_n(&v->counter, &old, new, false,	\
				    __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST); \
	return old;							\
}

#define ATOMIC64_INIT(i)	{ (i) }

LKL_ATOMIC_OPS(atomic, atomic_t, int)
LKL_ATOMIC_OPS(atomic64, atomic64_t, s64)

#define arch_atomic_read		arch_atomic_read
#define arch_atomic_set			arch_atomic_set
#define arch_atomic_add			arch_atomic_add
#define arch_atomic_sub			arch_atomic_sub
#define arch_atomic_and			arch_atomic_and
#define arch_atomic_or			arch_atomic_or
#define arch_atomic_xor			arch_atomic_xor
#define arch_atomic_fetch_add		arch_atomic_fetch_add
#define arch_atomic_fetch_sub		arch_atomic_fetch_sub
#define arch_atomic_fetch_and		arch_atomic_fetch_and
#define arch_atomic_fetch_or		arch_atomic_fetch_or
#define arch_atomic_fetch_xor		arch_atomic_fetch_xor
#define arch_atomic_add_return		arch_atomic_add_return
#define arch_atomic_sub_return		arch_atomic_sub_return
#define arch_atomic_xchg		arch_atomic_xchg
#define arch_atomic_cmpxchg		arch_atomic_cmpxchg

#define arch_atomic64_read		arch_atomic64_read
#define arch_atomic64_set		arch_atomic64_set
#define arch_atomic64_add		arch_atomic64_add
#define arch_atomic64_sub		arch_atomic64_sub
#define arch_atomic64_and		arch_atomic64_and
#define arch_atomic64_or		arch_atomic64_or
#define arch_atomic64_xor		arch_atomic64_xor
#define arch_atomic64_fetch_add		arch_atomic64_fetch_add
#define arch_atomic64_fetch_sub		arch_atomic64_fetch_sub
#define arch_atomic64_fetch_and		arch_atomic64_fetch_and
#define arch_atomic64_fetch_or		arch_atomic64_fetch_or
#define arch_atomic64_fetch_xor		arch_atomic64_fetch_xor
#define arch_atomic64_add_return	arch_atomic64_add_return
#define arch_atomic64_sub_return	arch_atomic64_sub_return
#define arch_atomic64_xchg		arch_atomic64_xchg
#define arch_atomic64_cmpxchg		arch_atomic64_cmpxchg

#endif
