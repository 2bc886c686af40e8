// SPDX-License-Identifier: GPL-2.0
/*
 * CRC-32C (Castagnoli) with the x86-64 crc32 instruction, for LKL hosts
 * whose CPU has SSE4.2.
 *
 * ext4 and btrfs checksum every metadata block they write or read with
 * the "crc32c" shash, and xfs through libcrc32c, which takes the same
 * algorithm. The generic table code costs several cycles a byte; the
 * instruction takes eight bytes at a time. The crc32 instruction works on
 * general registers only, so no FPU or vector state is touched and the
 * host threads LKL runs on need nothing saved.
 *
 * The algorithm is registered under the generic one's name with a higher
 * priority, and only when the CPU has the instruction and it gives the
 * standard check value; otherwise the generic code stays in use.
 */

#include <crypto/internal/hash.h>
#include <linux/init.h>
#include <linux/kernel.h>
#include <linux/string.h>
#include <linux/unaligned.h>

#ifdef __x86_64__

/* The seed, little-endian, settable as the algorithm's optional key. */
struct lkl_crc32c_key {
	u32 seed;
};

/*
 * The running value, not inverted; its layout is an ABI: ext4 and
 * libcrc32c set and read this u32 directly around crypto_shash_update().
 */
struct lkl_crc32c_state {
	u32 crc;
};

/* Folds @len bytes at @p into @crc (reflected CRC-32C, no inversion). */
static u32 lkl_crc32c_update(u32 crc, const u8 *p, size_t len)
{
	u64 c = crc;

	for (; len >= 8; len -= 8, p += 8)
		asm("crc32q %1, %0" : "+r"(c) : "rm"(get_unaligned((const u64 *)p)));
	crc = c;
	for (; len; len--, p++)
		asm("crc32b %1, %0" : "+r"(crc) : "rm"(*p));
	return crc;
}

static int lkl_crc32c_init_tfm(struct crypto_tfm *tfm)
{
	struct lkl_crc32c_key *key = crypto_tfm_ctx(tfm);

	key->seed = ~0U;
	return 0;
}

static int lkl_crc32c_setkey(struct crypto_shash *tfm, const u8 *k,
			     unsigned int keylen)
{
	struct lkl_crc32c_key *key = crypto_shash_ctx(tfm);

	if (keylen != sizeof(u32))
		return -EINVAL;
	key->seed = get_unaligned_le32(k);
	return 0;
}

static int lkl_crc32c_init(struct shash_desc *desc)
{
	struct lkl_crc32c_key *key = crypto_shash_ctx(desc->tfm);
	struct lkl_crc32c_state *st = shash_desc_ctx(desc);

	st->crc = key->seed;
	return 0;
}

static int lkl_crc32c_hash(struct shash_desc *desc, const u8 *data,
			   unsigned int len)
{
	struct lkl_crc32c_state *st = shash_desc_ctx(desc);

	st->crc = lkl_crc32c_update(st->crc, data, len);
	return 0;
}

static int lkl_crc32c_final(struct shash_desc *desc, u8 *out)
{
	struct lkl_crc32c_state *st = shash_desc_ctx(desc);

	put_unaligned_le32(~st->crc, out);
	return 0;
}

static struct shash_alg lkl_crc32c_alg = {
	.digestsize = sizeof(u32),
	.setkey = lkl_crc32c_setkey,
	.init = lkl_crc32c_init,
	.update = lkl_crc32c_hash,
	.final = lkl_crc32c_final,
	.descsize = sizeof(struct lkl_crc32c_state),
	.base = {
		.cra_name = "crc32c",
		.cra_driver_name = "crc32c-lkl-insn",
		/* Above crc32c-generic (100). */
		.cra_priority = 200,
		.cra_flags = CRYPTO_ALG_OPTIONAL_KEY,
		.cra_blocksize = 1,
		.cra_ctxsize = sizeof(struct lkl_crc32c_key),
		.cra_module = THIS_MODULE,
		.cra_init = lkl_crc32c_init_tfm,
	},
};

/* CPUID leaf 1, ECX bit 20: SSE4.2, which brings the crc32 instruction. */
static bool lkl_cpu_has_crc32(void)
{
	u32 eax = 1, ebx, ecx = 0, edx;

	asm volatile("cpuid"
		     : "+a"(eax), "=b"(ebx), "+c"(ecx), "=d"(edx));
	return ecx & (1U << 20);
}

static int __init lkl_crc32c_register(void)
{
	static const char check[] = "123456789";

	if (!lkl_cpu_has_crc32())
		return 0;
	/* The standard check value of CRC-32C over "123456789". */
	if (~lkl_crc32c_update(~0U, (const u8 *)check, strlen(check)) !=
	    0xe3069283) {
		pr_warn("crc32c: the crc32 instruction gave a wrong check value; using the generic code\n");
		return 0;
	}
	return crypto_register_shash(&lkl_crc32c_alg);
}
/* After the crypto manager, before libcrc32c takes its transform. */
fs_initcall(lkl_crc32c_register);

#endif /* __x86_64__ */
