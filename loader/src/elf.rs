//! ELF → validated load plan. Safe code only: parsing with goblin, checks, and the
//! arithmetic of where each segment goes.
#![forbid(unsafe_code)]

use goblin::container::{Container, Ctx, Endian};
use goblin::elf::header::Header;
use goblin::elf::header::{EM_X86_64, ET_DYN, ET_EXEC};
use goblin::elf::program_header::ProgramHeader;
use goblin::elf::program_header::{PF_R, PF_W, PF_X, PT_INTERP, PT_LOAD, PT_PHDR};

use crate::Error;

/// Page size the plan aligns to.
pub const PAGE: u64 = 4096;

/// One `PT_LOAD` segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// `p_vaddr`.
    pub vaddr: u64,
    /// `p_memsz`.
    pub memsz: u64,
    /// `p_filesz`.
    pub filesz: u64,
    /// `p_offset`.
    pub offset: u64,
    /// `PROT_*` bits derived from `p_flags`.
    pub prot: i32,
}

impl Segment {
    /// True for segments holding code.
    pub fn is_exec(&self) -> bool {
        self.prot & 4 != 0
    }
}

/// What the loader needs to know about one ELF file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// `ET_DYN` (PIE or shared object): may be placed anywhere.
    pub relocatable: bool,
    /// `e_entry`.
    pub entry: u64,
    /// Virtual address of the program headers (`PT_PHDR`, or derived from `e_phoff`).
    pub phdr_vaddr: u64,
    /// `e_phentsize`.
    pub phent: u64,
    /// `e_phnum`.
    pub phnum: u64,
    /// The `PT_LOAD` segments in file order.
    pub segments: Vec<Segment>,
    /// `PT_INTERP`, if any.
    pub interp: Option<String>,
}

impl Image {
    /// Lowest page-aligned address the image covers (before bias).
    pub fn min_vaddr(&self) -> u64 {
        self.segments
            .iter()
            .map(|s| s.vaddr & !(PAGE - 1))
            .min()
            .unwrap_or(0)
    }

    /// End of the highest segment, page-aligned (before bias).
    pub fn max_vaddr(&self) -> u64 {
        self.segments
            .iter()
            .map(|s| (s.vaddr + s.memsz + PAGE - 1) & !(PAGE - 1))
            .max()
            .unwrap_or(0)
    }
}

fn prot(flags: u32) -> i32 {
    let mut p = 0;
    if flags & PF_R != 0 {
        p |= 1;
    }
    if flags & PF_W != 0 {
        p |= 2;
    }
    if flags & PF_X != 0 {
        p |= 4;
    }
    p
}

/// Parses and validates `bytes`, the contents of `path`.
///
/// # Errors
/// [`Error::NotElf`] for anything that is not an ELF file, [`Error::WrongArch`] for ELF
/// files that are not x86-64 executables, [`Error::BadElf`] for inconsistent headers.
pub fn parse(path: &str, bytes: &[u8]) -> Result<Image, Error> {
    parse_prefix(path, bytes, bytes.len() as u64)
}

/// Like [`parse`], from the first bytes of a file of `file_len` bytes: only the ELF
/// header, the program headers and `PT_INTERP` are read (no section or symbol tables,
/// which can be megabytes).
///
/// # Errors
/// As for [`parse`], plus [`Error::Short`] when the headers lie past `prefix`: read
/// more of the file and try again.
pub fn parse_prefix(path: &str, bytes: &[u8], file_len: u64) -> Result<Image, Error> {
    if bytes.len() < 4 || &bytes[..4] != b"\x7fELF" {
        return Err(Error::NotElf(path.to_string()));
    }
    let bad = |e: goblin::error::Error| Error::BadElf(path.to_string(), e.to_string());
    match bytes.get(4) {
        Some(1) => {
            return Err(Error::WrongArch(
                path.to_string(),
                "a 32-bit ELF program".into(),
            ))
        }
        Some(2) if bytes.len() >= 64 => {}
        Some(2) => {
            return Err(Error::BadElf(
                path.to_string(),
                "truncated ELF header".into(),
            ))
        }
        _ => return Err(Error::BadElf(path.to_string(), "unknown ELF class".into())),
    }
    let header: Header = goblin::elf::Elf::parse_header(bytes).map_err(bad)?;
    if header.e_machine != EM_X86_64 {
        return Err(Error::WrongArch(
            path.to_string(),
            format!(
                "an ELF program for {}",
                goblin::elf::header::machine_to_str(header.e_machine)
            ),
        ));
    }
    let relocatable = match header.e_type {
        ET_DYN => true,
        ET_EXEC => false,
        t => {
            let what = match t {
                goblin::elf::header::ET_REL => {
                    "an object file (ELF type 1): link it into a program"
                }
                goblin::elf::header::ET_CORE => "a core dump (ELF type 4)",
                _ => "not an executable ELF type",
            };
            return Err(Error::BadElf(path.to_string(), what.into()));
        }
    };
    let ph_end = header.e_phoff + u64::from(header.e_phnum) * u64::from(header.e_phentsize);
    if header.e_phentsize != 56 || ph_end > file_len {
        return Err(Error::BadElf(
            path.to_string(),
            "bad program header table".into(),
        ));
    }
    if ph_end > bytes.len() as u64 {
        return Err(Error::Short(path.to_string()));
    }
    let ctx = Ctx::new(Container::Big, Endian::Little);
    let phdrs = ProgramHeader::parse(bytes, header.e_phoff as usize, header.e_phnum as usize, ctx)
        .map_err(bad)?;
    let mut segments = Vec::new();
    let mut interp = None;
    let mut phdr = None;
    for ph in &phdrs {
        match ph.p_type {
            PT_LOAD => {
                if ph.p_filesz > ph.p_memsz || ph.p_offset % PAGE != ph.p_vaddr % PAGE {
                    return Err(Error::BadElf(path.to_string(), "misaligned PT_LOAD".into()));
                }
                let end = ph.p_offset.checked_add(ph.p_filesz);
                if end.is_none_or(|e| e > file_len) {
                    return Err(Error::BadElf(
                        path.to_string(),
                        "PT_LOAD past end of file".into(),
                    ));
                }
                segments.push(Segment {
                    vaddr: ph.p_vaddr,
                    memsz: ph.p_memsz,
                    filesz: ph.p_filesz,
                    offset: ph.p_offset,
                    prot: prot(ph.p_flags),
                });
            }
            PT_INTERP => {
                let r = ph.file_range();
                let raw = bytes
                    .get(r)
                    .ok_or_else(|| Error::BadElf(path.to_string(), "bad PT_INTERP".into()))?;
                let s = raw.split(|&b| b == 0).next().unwrap_or(&[]);
                interp = Some(String::from_utf8_lossy(s).into_owned());
            }
            PT_PHDR => phdr = Some(ph.p_vaddr),
            _ => {}
        }
    }
    if segments.is_empty() {
        return Err(Error::BadElf(path.to_string(), "no PT_LOAD segment".into()));
    }
    let phoff = header.e_phoff;
    let phdr_vaddr = match phdr {
        Some(v) => v,
        None => segments
            .iter()
            .find(|s| s.offset <= phoff && phoff < s.offset + s.filesz)
            .map(|s| s.vaddr + (phoff - s.offset))
            .ok_or_else(|| Error::BadElf(path.to_string(), "program headers not loaded".into()))?,
    };
    Ok(Image {
        relocatable,
        entry: header.e_entry,
        phdr_vaddr,
        phent: u64::from(header.e_phentsize),
        phnum: u64::from(header.e_phnum),
        segments,
        interp,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_non_elf() {
        assert!(matches!(parse("x", b"#!/bin/sh\n"), Err(Error::NotElf(_))));
        assert!(matches!(parse("x", b""), Err(Error::NotElf(_))));
    }

    #[test]
    fn parses_our_own_binary() {
        let exe = std::fs::read("/proc/self/exe").unwrap();
        let img = parse("self", &exe).unwrap();
        assert!(img.relocatable);
        assert!(img.segments.iter().any(Segment::is_exec));
        assert_eq!(img.phent, 56);
    }

    #[test]
    fn a_prefix_is_enough_or_asks_for_more() {
        let exe = std::fs::read("/proc/self/exe").unwrap();
        let len = exe.len() as u64;
        assert_eq!(
            parse_prefix("self", &exe[..4096], len).unwrap(),
            parse("self", &exe).unwrap()
        );
        assert!(matches!(
            parse_prefix("self", &exe[..80], len),
            Err(Error::Short(_))
        ));
    }

    #[test]
    fn rejects_other_architectures() {
        let mut exe = std::fs::read("/proc/self/exe").unwrap();
        exe[18] = 0xB7; // e_machine = EM_AARCH64
        exe[19] = 0;
        assert!(matches!(parse("x", &exe), Err(Error::WrongArch(..))));
        exe[4] = 1; // ELFCLASS32
        let e = parse("x", &exe).unwrap_err();
        assert!(e.to_string().contains("a 32-bit ELF program"), "{e}");
    }
}
