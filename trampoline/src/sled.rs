//! The page at address 0: a sled that sends an entry at any byte offset `nr` (a syscall
//! number) to the entry stub.
//!
//! Instead of upstream's 512 one-byte `nop`s, the sled repeats `EB 64 90`:
//! - at `EB` (offset ≡ 0 mod 3): `jmp +0x64`, which lands 102 bytes further, on the
//!   next-but-many `EB` (102 ≡ 0 mod 3);
//! - at `64` (≡ 1): `64 90` is an `fs`-prefixed `nop`, then an `EB`;
//! - at `90` (≡ 2): a `nop`, then an `EB`.
//!
//! So every entry reaches the end in at most six taken jumps instead of up to 512
//! `nop`s. Past the covered numbers, a catch zone holds short jumps (at the offsets ≡ 0
//! mod 3 where the last hops land) to a final `jmp *0(%rip)` holding the stub's
//! absolute address. Only the sled's own bytes decide the path, so `rax` is untouched.
#![forbid(unsafe_code)]

/// Highest syscall number the sled covers (inclusive).
pub const MAX_NR: usize = 512;
/// The main pattern region: offsets `[0, MAIN)`; a multiple of 3 past [`MAX_NR`].
const MAIN: usize = 513;
/// Offset of the final indirect jump.
const FINAL: usize = MAIN + 102;
/// Total sled length in bytes.
pub const LEN: usize = FINAL + 6 + 8;

/// Builds the sled for a stub at `entry`.
pub fn build(entry: u64) -> [u8; LEN] {
    let mut s = [0xCCu8; LEN];
    for (i, b) in s.iter_mut().enumerate().take(MAIN) {
        *b = [0xEB, 0x64, 0x90][i % 3];
    }
    // Catch zone: hops from the last EBs land at offsets ≡ 0 (mod 3) in [MAIN, MAIN+99],
    // and entry MAIN-1 falls through to MAIN: each such offset jumps to FINAL.
    let mut q = MAIN;
    while q + 2 <= FINAL {
        s[q] = 0xEB;
        s[q + 1] = (FINAL - (q + 2)) as u8;
        q += 3;
    }
    // jmp *0(%rip); .quad entry
    s[FINAL..FINAL + 6].copy_from_slice(&[0xFF, 0x25, 0, 0, 0, 0]);
    s[FINAL + 6..FINAL + 14].copy_from_slice(&entry.to_le_bytes());
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use iced_x86::{Decoder, DecoderOptions, FlowControl, Instruction};

    /// Follows the sled from `start` like the CPU would and returns the final target
    /// and the number of instructions executed.
    fn run(s: &[u8], start: usize) -> (u64, usize) {
        let mut ip = start as u64;
        for steps in 0..1000 {
            let mut d = Decoder::with_ip(64, &s[ip as usize..], ip, DecoderOptions::NONE);
            let mut i = Instruction::default();
            d.decode_out(&mut i);
            assert!(!i.is_invalid(), "invalid instruction at {ip}");
            match i.flow_control() {
                FlowControl::Next => ip = i.next_ip(),
                FlowControl::UnconditionalBranch => ip = i.near_branch_target(),
                FlowControl::IndirectBranch => {
                    let at = i.ip_rel_memory_address() as usize;
                    let target = u64::from_le_bytes(s[at..at + 8].try_into().unwrap());
                    return (target, steps + 1);
                }
                other => panic!("unexpected {other:?} at {ip}"),
            }
            assert!((ip as usize) < s.len());
        }
        panic!("sled loops");
    }

    #[test]
    fn every_number_reaches_the_stub_quickly() {
        let s = build(0xdead_beef_0000);
        let mut worst = 0;
        for nr in 0..=MAX_NR {
            let (target, steps) = run(&s, nr);
            assert_eq!(target, 0xdead_beef_0000, "nr {nr}");
            worst = worst.max(steps);
        }
        assert!(worst <= 9, "worst path {worst} instructions");
    }

    #[test]
    fn fits_in_one_page() {
        const { assert!(LEN < 4096) };
    }
}
