//! The page at address 0: a sled that sends an entry at any byte offset `nr` (a syscall
//! number) to the entry stub, or, for numbers no syscall has, off the end of the page.
//!
//! Instead of upstream's 512 one-byte `nop`s, the sled repeats `EB 64 90`:
//! - at `EB` (offset ≡ 0 mod 3): `jmp +0x64`, which lands 102 bytes further, on the
//!   next-but-many `EB` (102 ≡ 0 mod 3);
//! - at `64` (≡ 1): `64 90` is an `fs`-prefixed `nop`, then an `EB`;
//! - at `90` (≡ 2): a `nop`, then an `EB`.
//!
//! So every entry up to [`MAX_NR`] reaches the *terminal run* after at most six taken
//! jumps. The run holds back-to-back `jmp rel32` (`E9 d0 d1 d2 d3`) whose
//! displacement bytes are all segment-prefix bytes or `nop`s: entered at any of its
//! bytes, the run executes at most a prefixed `nop` and then a (prefixed) `jmp`. The
//! jumps go to the *pad*, a page of ours mapped low enough (about 0.6..1.7 GiB) for
//! `rel32` to reach, whose address is chosen so that the displacements have those
//! bytes; each target holds `jmp *slot(%rip)` to the stub. No byte of page 0 is an
//! address or a displacement that could be executed as something else, so every offset
//! of the page is a valid entry.
//!
//! After the run, the `EB 64 90` pattern goes on to the end of the page: numbers past
//! the run hop forward and fall off page 0. The fetch past it faults, and the SIGSEGV
//! handler (`crate::guard`) has the kernel answer the call (`-ENOSYS`). Only the
//! sled's own bytes decide the path, so `rax` is untouched.
#![forbid(unsafe_code)]

/// Highest syscall number the fast sled covers (inclusive).
pub const MAX_NR: usize = 512;
/// Size of page 0.
pub const PAGE: usize = 4096;
/// The main pattern region: offsets `[0, MAIN)`; a multiple of 3 past [`MAX_NR`].
const MAIN: usize = 513;
/// Number of jumps in the terminal run: the last main hops land at most at 612.
pub const TERMINALS: usize = 21;
/// First offset after the terminal run: numbers from here on fall off the page.
pub const TAIL: usize = MAIN + 5 * TERMINALS;
/// Bytes that are harmless when executed: segment-override prefixes (ignored on a
/// `nop` or a `jmp` in 64-bit mode) and `nop`.
const SOFT: [u8; 7] = [0x26, 0x2e, 0x36, 0x3e, 0x64, 0x65, 0x90];
/// Bytes of a pad stub: `jmp *rel32(%rip)`.
const STUB: usize = 6;

/// Choices for the two high bytes of every displacement (the pad's rough address):
/// the top byte must be a prefix below 0x80 (a forward jump), the next any soft byte.
pub fn candidates() -> impl Iterator<Item = (u8, u8)> {
    [0x64u8, 0x65, 0x3e, 0x36, 0x2e, 0x26]
        .into_iter()
        .flat_map(|hi| SOFT.into_iter().map(move |mid| (hi, mid)))
}

/// A sled for one pad placement.
#[derive(Debug, Clone)]
pub struct Sled {
    /// The bytes of page 0.
    pub page: Vec<u8>,
    /// Where each terminal jumps (absolute addresses in the pad).
    pub targets: [u64; TERMINALS],
}

impl Sled {
    /// The page-aligned range `[start, end)` the pad must cover: every target's stub
    /// and, after the last, the 8-byte slot holding the stub's address.
    pub fn pad_range(&self) -> (u64, u64) {
        let lo = self.targets.iter().min().copied().unwrap_or(0);
        let hi = self.slot() + 8;
        (
            lo & !(PAGE as u64 - 1),
            (hi + PAGE as u64 - 1) & !(PAGE as u64 - 1),
        )
    }

    /// Address of the slot holding the stub's address.
    fn slot(&self) -> u64 {
        let hi = self.targets.iter().max().copied().unwrap_or(0) + STUB as u64;
        (hi + 7) & !7
    }

    /// The bytes of the pad, for the range [`Sled::pad_range`]: a `jmp *slot(%rip)` at
    /// each target, the stub's address in the slot, `int3` elsewhere.
    pub fn pad(&self, entry: u64) -> Vec<u8> {
        let (start, end) = self.pad_range();
        let mut p = vec![0xCCu8; (end - start) as usize];
        let slot = self.slot();
        for &t in &self.targets {
            let at = (t - start) as usize;
            let rel = (slot - (t + STUB as u64)) as u32;
            p[at..at + 2].copy_from_slice(&[0xFF, 0x25]);
            p[at + 2..at + 6].copy_from_slice(&rel.to_le_bytes());
        }
        let at = (slot - start) as usize;
        p[at..at + 8].copy_from_slice(&entry.to_le_bytes());
        p
    }
}

/// Builds the sled whose displacements have high bytes `(hi, mid)` (see
/// [`candidates`]). `None` if the pad stubs cannot be placed without overlapping.
pub fn build((hi, mid): (u8, u8)) -> Option<Sled> {
    let mut page = vec![0u8; PAGE];
    for (i, b) in page.iter_mut().enumerate() {
        *b = [0xEB, 0x64, 0x90][i % 3];
    }
    let mut targets = [0u64; TERMINALS];
    let mut taken: Vec<u64> = Vec::with_capacity(TERMINALS);
    for (k, target) in targets.iter_mut().enumerate() {
        let f = (MAIN + 5 * k) as u64;
        // Low byte of the second-lowest: two adjacent choices keep the pad compact.
        let pick = [0x64u8, 0x65].into_iter().find_map(|b1| {
            SOFT.into_iter().find_map(|b0| {
                let d = u32::from_le_bytes([b0, b1, mid, hi]);
                let t = f + 5 + u64::from(d);
                let free = taken
                    .iter()
                    .all(|&o| t + STUB as u64 <= o || o + STUB as u64 <= t);
                free.then_some((d, t))
            })
        });
        let (d, t) = pick?;
        taken.push(t);
        *target = t;
        let f = f as usize;
        page[f] = 0xE9;
        page[f + 1..f + 5].copy_from_slice(&d.to_le_bytes());
    }
    Some(Sled { page, targets })
}

#[cfg(test)]
mod tests {
    use super::*;
    use iced_x86::{Decoder, DecoderOptions, FlowControl, Instruction, Mnemonic};

    /// Where an entry ends up.
    #[derive(Debug, PartialEq)]
    enum End {
        /// The stub, after this many instructions.
        Stub(usize),
        /// A fetch at or past the end of page 0.
        OffPage,
    }

    /// Follows the sled (and the pad) from `start` like the CPU would.
    fn run(s: &Sled, pad: &[u8], entry: u64, start: usize) -> End {
        let (pad_start, _) = s.pad_range();
        let mut ip = start as u64;
        for steps in 0..1000 {
            let (bytes, base) = if ip < PAGE as u64 {
                (&s.page[ip as usize..], ip)
            } else if ip >= pad_start {
                (&pad[(ip - pad_start) as usize..], ip)
            } else {
                return End::OffPage;
            };
            let mut d = Decoder::with_ip(64, bytes, base, DecoderOptions::NONE);
            let mut i = Instruction::default();
            d.decode_out(&mut i);
            if ip < PAGE as u64 && (i.is_invalid() || i.next_ip() > PAGE as u64) {
                // Runs into the end of the page: the fetch past it faults.
                return End::OffPage;
            }
            assert!(!i.is_invalid(), "invalid instruction at {ip:#x}");
            match i.flow_control() {
                FlowControl::Next => {
                    assert!(
                        matches!(i.mnemonic(), Mnemonic::Nop),
                        "{:?} at {ip:#x}",
                        i.mnemonic()
                    );
                    ip = i.next_ip();
                }
                FlowControl::UnconditionalBranch => ip = i.near_branch_target(),
                FlowControl::IndirectBranch => {
                    let at = (i.ip_rel_memory_address() - pad_start) as usize;
                    let target = u64::from_le_bytes(pad[at..at + 8].try_into().unwrap());
                    assert_eq!(target, entry);
                    return End::Stub(steps + 1);
                }
                other => panic!("unexpected {other:?} at {ip:#x}"),
            }
            if ip >= PAGE as u64 && ip < pad_start {
                return End::OffPage;
            }
        }
        panic!("sled loops from {start}");
    }

    #[test]
    fn every_offset_of_page_0_is_an_entry() {
        let entry = 0x7f12_3456_7890;
        for c in candidates() {
            let s = build(c).expect("pad stubs placed");
            let pad = s.pad(entry);
            let mut worst = 0;
            for nr in 0..PAGE {
                match run(&s, &pad, entry, nr) {
                    End::Stub(n) => {
                        assert!(nr < TAIL, "nr {nr} reached the stub");
                        worst = worst.max(n);
                    }
                    End::OffPage => assert!(nr > MAX_NR, "nr {nr} fell off the page"),
                }
            }
            assert!(worst <= 10, "worst path {worst} instructions");
        }
    }

    #[test]
    fn pad_is_small_and_low() {
        for c in candidates() {
            let s = build(c).unwrap();
            let (a, b) = s.pad_range();
            assert!(b - a <= 3 * PAGE as u64);
            assert!(a >= 1 << 29 && b < 1 << 31, "{a:#x}");
        }
    }
}
