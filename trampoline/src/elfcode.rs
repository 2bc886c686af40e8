//! Which bytes of an executable mapping are code: the `SHF_EXECINSTR` sections of the
//! ELF file behind it.
//!
//! Older link layouts put `.rela.dyn`, `.dynsym` and `.rodata` in the same `R E`
//! segment as `.text`; a linear sweep over the whole segment would patch `0F 05` pairs
//! inside relocations and constants (rustup is such a binary). So when the mapping
//! comes from a file with section headers, only its executable sections are swept.
//! Raw `pread` into stack buffers: this also runs in the hook. A file of the
//! backend's (an LKL file) is read through the backend ([`crate::mapfile`]).

use crate::mapfile::MapFile;

/// `SHF_EXECINSTR` and `SHT_NOBITS` of `<elf.h>`.
const SHF_EXECINSTR: u64 = 0x4;
const SHT_NOBITS: u32 = 8;
const BATCH: usize = 32;

fn u16_at(b: &[u8], o: usize) -> u64 {
    u64::from(u16::from_le_bytes([b[o], b[o + 1]]))
}

fn u32_at(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}

fn u64_at(b: &[u8], o: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[o..o + 8]);
    u64::from_le_bytes(a)
}

/// Calls `f(file_offset, size)` for every executable section with file contents of the
/// 64-bit ELF file open as `fd`. Returns `false` when the file has no usable section
/// headers (the caller then sweeps the whole mapping).
pub fn for_each_exec_section(fd: i32, f: impl FnMut(u64, u64)) -> bool {
    in_file(&MapFile::of(fd), f)
}

/// [`for_each_exec_section`] of `file`, a host file or one of the backend's.
pub(crate) fn in_file(file: &MapFile, mut f: impl FnMut(u64, u64)) -> bool {
    let mut eh = [0u8; 64];
    if file.pread(&mut eh, 0) != 64 || eh[..4] != *b"\x7fELF" || eh[4] != 2 {
        return false;
    }
    let shoff = u64_at(&eh, 0x28);
    let shentsize = u16_at(&eh, 0x3A);
    let shnum = u16_at(&eh, 0x3C);
    if shoff == 0 || shnum == 0 || shentsize != 64 {
        return false;
    }
    let mut buf = [0u8; 64 * BATCH];
    let mut i = 0u64;
    while i < shnum {
        let n = (shnum - i).min(BATCH as u64) as usize;
        let want = &mut buf[..n * 64];
        if file.pread(want, shoff + i * 64) != (n * 64) as i64 {
            return false;
        }
        for k in 0..n {
            let sh = &buf[k * 64..k * 64 + 64];
            let (ty, flags, off, size) = (
                u32_at(sh, 4),
                u64_at(sh, 8),
                u64_at(sh, 0x18),
                u64_at(sh, 0x20),
            );
            if flags & SHF_EXECINSTR != 0 && ty != SHT_NOBITS && size > 0 {
                f(off, size);
            }
        }
        i += n as u64;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn finds_text_of_our_own_binary() {
        let f = std::fs::File::open("/proc/self/exe").unwrap();
        let mut secs = Vec::new();
        assert!(for_each_exec_section(f.as_raw_fd(), |o, s| secs.push((o, s))));
        assert!(!secs.is_empty());
        let len = f.metadata().unwrap().len();
        assert!(secs.iter().all(|&(o, s)| o + s <= len));
    }

    #[test]
    fn rejects_non_elf() {
        let f = std::fs::File::open("/proc/self/cmdline").unwrap();
        assert!(!for_each_exec_section(f.as_raw_fd(), |_, _| {}));
    }
}
