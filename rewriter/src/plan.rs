//! Patch planning: bytes in, a list of sites out. No unsafe code here.
#![forbid(unsafe_code)]

use iced_x86::{Decoder, DecoderOptions, Instruction, Mnemonic};

/// `call *%rax`: what every site becomes.
pub const CALL_RAX: [u8; 2] = [0xFF, 0xD0];
/// `syscall`.
pub const SYSCALL: [u8; 2] = [0x0F, 0x05];
/// `sysenter`.
pub const SYSENTER: [u8; 2] = [0x0F, 0x34];
/// One-byte `nop`, used to blank prefixes in front of a prefixed `syscall`.
pub const NOP: u8 = 0x90;

/// Which instruction a site held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SiteKind {
    /// `0F 05`.
    Syscall,
    /// `0F 34`.
    Sysenter,
}

/// One instruction to patch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Site {
    /// Address of the first byte of the instruction (prefixes included).
    pub addr: u64,
    /// Length of the whole instruction: 2, or more when it carries prefixes.
    pub len: u8,
    /// What the instruction was.
    pub kind: SiteKind,
}

impl Site {
    /// The bytes the site holds after patching: `nop`s over any prefixes, then `FF D0`,
    /// so the instruction after the site starts where it did before.
    pub fn replacement(&self) -> ([u8; 15], usize) {
        let mut out = [NOP; 15];
        let n = usize::from(self.len);
        out[n - 2] = CALL_RAX[0];
        out[n - 1] = CALL_RAX[1];
        (out, n)
    }

    /// Address one past the last byte of the site.
    pub fn end(&self) -> u64 {
        self.addr + u64::from(self.len)
    }
}

/// Calls `f` for every `syscall`/`sysenter` in `code`, which lives at address `base`.
///
/// This is a linear sweep (see the crate docs). It never allocates, so the live
/// patcher can use it from inside a syscall hook.
pub fn for_each_site(code: &[u8], base: u64, mut f: impl FnMut(Site)) {
    let mut decoder = Decoder::with_ip(64, code, base, DecoderOptions::NONE);
    let mut instr = Instruction::default();
    while decoder.can_decode() {
        decoder.decode_out(&mut instr);
        let kind = match instr.mnemonic() {
            Mnemonic::Syscall => SiteKind::Syscall,
            Mnemonic::Sysenter => SiteKind::Sysenter,
            _ => continue,
        };
        let len = instr.len();
        let off = (instr.ip() - base) as usize;
        let expect = match kind {
            SiteKind::Syscall => SYSCALL,
            SiteKind::Sysenter => SYSENTER,
        };
        // The opcode is always the last two bytes; anything before is a prefix.
        if len >= 2 && code.get(off + len - 2..off + len) == Some(&expect[..]) {
            f(Site {
                addr: instr.ip(),
                len: len as u8,
                kind,
            });
        }
    }
}

/// A patch plan for one region.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    sites: Vec<Site>,
}

impl Plan {
    /// Scans `code` (living at `base`) and records every site.
    pub fn scan(code: &[u8], base: u64) -> Self {
        let mut sites = Vec::new();
        for_each_site(code, base, |s| sites.push(s));
        Plan { sites }
    }

    /// The sites, in address order.
    pub fn sites(&self) -> &[Site] {
        &self.sites
    }

    /// How many sites the plan patches.
    pub fn len(&self) -> usize {
        self.sites.len()
    }

    /// True when there is nothing to patch.
    pub fn is_empty(&self) -> bool {
        self.sites.is_empty()
    }

    /// Applies the plan to a plain buffer holding the same bytes that were scanned.
    /// Returns the number of sites patched.
    pub fn apply_to(&self, code: &mut [u8], base: u64) -> usize {
        for s in &self.sites {
            let off = (s.addr - base) as usize;
            let (bytes, n) = s.replacement();
            code[off..off + n].copy_from_slice(&bytes[..n]);
        }
        self.sites.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(code: &[u8]) -> Vec<u64> {
        Plan::scan(code, 0x1000)
            .sites()
            .iter()
            .map(|s| s.addr)
            .collect()
    }

    #[test]
    fn finds_plain_syscall_and_sysenter() {
        // mov eax, 39 ; syscall ; sysenter ; ret
        let code = [0xB8, 39, 0, 0, 0, 0x0F, 0x05, 0x0F, 0x34, 0xC3];
        let plan = Plan::scan(&code, 0x1000);
        assert_eq!(plan.len(), 2);
        assert_eq!(plan.sites()[0].kind, SiteKind::Syscall);
        assert_eq!(plan.sites()[1].kind, SiteKind::Sysenter);
        let mut out = code;
        assert_eq!(plan.apply_to(&mut out, 0x1000), 2);
        assert_eq!(out, [0xB8, 39, 0, 0, 0, 0xFF, 0xD0, 0xFF, 0xD0, 0xC3]);
    }

    #[test]
    fn ignores_0f05_inside_immediate() {
        // mov eax, 0x00050F00 (bytes 00 0F 05 00) ; mov rax, imm64 with 0F 05 inside
        let code = [
            0xB8, 0x00, 0x0F, 0x05, 0x00, // mov eax, imm32
            0x48, 0xB8, 0x0F, 0x05, 0x0F, 0x05, 0x0F, 0x34, 0x0F, 0x05, // movabs
            0xC3,
        ];
        assert!(addrs(&code).is_empty());
    }

    #[test]
    fn ignores_0f05_inside_displacement() {
        // mov eax, [rip + 0x050F050F] ; lea rcx, [rax + 0x340F] ; syscall
        let code = [
            0x8B, 0x05, 0x0F, 0x05, 0x0F, 0x05, // mov eax, [rip+disp32]
            0x48, 0x8D, 0x88, 0x0F, 0x34, 0x00, 0x00, // lea rcx, [rax+disp32]
            0x0F, 0x05, // the only real syscall
        ];
        assert_eq!(addrs(&code), vec![0x1000 + 13]);
    }

    #[test]
    fn ignores_0f05_inside_modrm_and_sib_bytes() {
        // cmp byte [rdi], 0x0F ; add al, 0x05 (bytes 80 3F 0F 04 05)
        let code = [0x80, 0x3F, 0x0F, 0x04, 0x05, 0x0F, 0x05];
        assert_eq!(addrs(&code), vec![0x1005]);
    }

    #[test]
    fn prefixed_syscall_keeps_length() {
        // rex.w syscall (48 0F 05) is still a 3-byte syscall
        let code = [0x48, 0x0F, 0x05, 0xC3];
        let plan = Plan::scan(&code, 0);
        assert_eq!(plan.len(), 1);
        assert_eq!(plan.sites()[0].len, 3);
        let mut out = code;
        plan.apply_to(&mut out, 0);
        assert_eq!(out, [0x90, 0xFF, 0xD0, 0xC3]);
    }

    #[test]
    fn sysret_and_others_are_not_sites() {
        // sysretq (48 0F 07), ud2 (0F 0B), nop
        let code = [0x48, 0x0F, 0x07, 0x0F, 0x0B, 0x90];
        assert!(addrs(&code).is_empty());
    }

    #[test]
    fn truncated_syscall_at_end_is_not_a_site() {
        let code = [0x90, 0x0F];
        assert!(addrs(&code).is_empty());
    }

    /// Builds a random stream of instructions that carry 0F 05 / 0F 34 in their
    /// immediates and displacements, with real syscalls sprinkled in, and checks that
    /// exactly the real ones are found.
    #[test]
    fn randomized_streams_patch_exactly_the_real_sites() {
        let mut seed: u64 = 0x2545F4914F6CDD1D;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..200 {
            let mut code = Vec::new();
            let mut expect = Vec::new();
            for _ in 0..64 {
                let pick = next() % 6;
                let noise = [0x0F, 0x05, 0x0F, 0x34][(next() % 4) as usize];
                match pick {
                    0 => {
                        expect.push(code.len() as u64);
                        code.extend_from_slice(&SYSCALL);
                    }
                    1 => code.extend_from_slice(&[0xB8, noise, 0x0F, 0x05, noise]),
                    2 => code.extend_from_slice(&[0x48, 0x8B, 0x80, 0x0F, 0x05, noise, 0x00]),
                    3 => code.extend_from_slice(&[0x48, 0x83, 0xC0, noise]),
                    4 => code.extend_from_slice(&[0x66, 0x90]),
                    _ => {
                        expect.push(code.len() as u64);
                        code.extend_from_slice(&SYSENTER);
                    }
                }
            }
            let plan = Plan::scan(&code, 0);
            let got: Vec<u64> = plan.sites().iter().map(|s| s.addr).collect();
            assert_eq!(got, expect);
            let mut out = code.clone();
            plan.apply_to(&mut out, 0);
            assert!(Plan::scan(&out, 0).is_empty());
        }
    }

    mod props {
        use super::super::*;
        use iced_x86::{Decoder, DecoderOptions};
        use proptest::prelude::*;

        /// Instruction start addresses of a linear sweep.
        fn boundaries(code: &[u8]) -> Vec<u64> {
            let mut d = Decoder::with_ip(64, code, 0, DecoderOptions::NONE);
            d.iter().map(|i| i.ip()).collect()
        }

        /// Random bytes, with the syscall/sysenter opcodes made frequent.
        fn code() -> impl Strategy<Value = Vec<u8>> {
            prop::collection::vec(
                prop_oneof![
                    4 => any::<u8>(),
                    1 => Just(0x0F),
                    1 => Just(0x05),
                    1 => Just(0x34),
                ],
                0..512,
            )
        }

        proptest! {
            #[test]
            fn sites_are_decoded_syscalls_and_patching_keeps_boundaries(code in code()) {
                let plan = Plan::scan(&code, 0);
                let before = boundaries(&code);
                for s in plan.sites() {
                    prop_assert!(before.contains(&s.addr));
                    let tail = &code[(s.end() - 2) as usize..s.end() as usize];
                    prop_assert!(tail == SYSCALL || tail == SYSENTER);
                }
                let mut out = code.clone();
                prop_assert_eq!(plan.apply_to(&mut out, 0), plan.len());
                // Every instruction boundary survives; new ones appear only inside
                // prefixed sites (their prefixes become nops); nothing is left to
                // patch; only site bytes changed.
                let after = boundaries(&out);
                for b in &before {
                    prop_assert!(after.contains(b), "boundary {} lost", b);
                }
                for b in after.iter().filter(|b| !before.contains(b)) {
                    prop_assert!(plan.sites().iter().any(|s| s.addr < *b && *b < s.end()));
                }
                prop_assert!(Plan::scan(&out, 0).is_empty());
                for (i, (a, b)) in code.iter().zip(&out).enumerate() {
                    if a != b {
                        let i = i as u64;
                        prop_assert!(plan.sites().iter().any(|s| s.addr <= i && i < s.end()));
                    }
                }
            }
        }
    }
}
