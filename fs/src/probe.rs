//! `blkid`-style detection of a file system, and the partition tables
//! (MBR, GPT) in front of it, from the bytes of an image.
//!
//! Every check reads fixed offsets; nothing here trusts a length read from
//! the image without bounds checks, so any bytes give an answer or `None`.
//! Offsets and their sources are listed in `docs/fs-tools.md`:
//!
//! | file system | where | what |
//! |---|---|---|
//! | ext2/3/4 | byte 1024 + 0x38 | `s_magic` = 0xEF53 (LE); features at 1024 + 0x5C/0x60/0x64 |
//! | btrfs | byte 0x10000 + 0x40 | `_BHRfS_M` |
//! | xfs | byte 0 | `XFSB` |
//! | vfat | byte 510 | 0x55 0xAA, and `FAT32   ` at 0x52 or `FAT1x   `/`FAT     ` at 0x36 |
//! | GPT | LBA 1 | `EFI PART`, entries at the header's LBA |
//! | MBR | byte 446 | four 16-byte entries, 0x55 0xAA at 510 |

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::FsError;

/// A file system this crate can recognise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FsType {
    /// ext2: no journal, no ext4-only feature.
    Ext2,
    /// ext3: a journal, no ext4-only feature.
    Ext3,
    /// ext4: extents, 64-bit, flex_bg or another ext4-only feature.
    Ext4,
    /// btrfs.
    Btrfs,
    /// XFS.
    Xfs,
    /// FAT12, FAT16 or FAT32 (mounted as `vfat`).
    Vfat,
}

impl FsType {
    /// The kernel's name for it, as `mount -t` takes it.
    pub fn name(self) -> &'static str {
        match self {
            FsType::Ext2 => "ext2",
            FsType::Ext3 => "ext3",
            FsType::Ext4 => "ext4",
            FsType::Btrfs => "btrfs",
            FsType::Xfs => "xfs",
            FsType::Vfat => "vfat",
        }
    }
}

impl std::fmt::Display for FsType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The bytes [`probe_bytes`] needs: up to the btrfs superblock's magic.
pub const PROBE_LEN: usize = 0x10000 + 0x48;

/// ext2/3/4: the superblock is at byte 1024; `s_magic` (0xEF53) at 0x38
/// in it (Linux `fs/ext4/ext4.h`, `struct ext4_super_block`).
const EXT_SB: usize = 1024;
const EXT_MAGIC: u16 = 0xEF53;
/// `s_feature_compat`, `s_feature_incompat`, `s_feature_ro_compat`.
const EXT_COMPAT: usize = EXT_SB + 0x5C;
const EXT_INCOMPAT: usize = EXT_SB + 0x60;
const EXT_RO_COMPAT: usize = EXT_SB + 0x64;
/// `EXT3_FEATURE_COMPAT_HAS_JOURNAL`.
const EXT_HAS_JOURNAL: u32 = 0x4;
/// Incompat features ext3 does not know (everything past
/// `EXT3_FEATURE_INCOMPAT_SUPP` = FILETYPE|RECOVER|META_BG, 0x16), as
/// util-linux's `libblkid/src/superblocks/ext.c` decides.
const EXT3_INCOMPAT_SUPP: u32 = 0x0002 | 0x0004 | 0x0010;
/// Read-only-compat features ext3 knows (SPARSE_SUPER|LARGE_FILE|BTREE_DIR).
const EXT3_RO_COMPAT_SUPP: u32 = 0x1 | 0x2 | 0x4;
/// btrfs: superblock at 64 KiB, magic `_BHRfS_M` at 0x40 in it (Linux
/// `fs/btrfs/accessors.h`/`BTRFS_MAGIC`, `struct btrfs_super_block`).
const BTRFS_MAGIC_AT: usize = 0x10000 + 0x40;
const BTRFS_MAGIC: &[u8; 8] = b"_BHRfS_M";
/// XFS: `sb_magicnum` `XFSB` at byte 0 (Linux `fs/xfs/libxfs/xfs_format.h`).
const XFS_MAGIC: &[u8; 4] = b"XFSB";

fn le16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn le32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn le64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// The file system whose signature starts `bytes` (the first
/// [`PROBE_LEN`] bytes of a device or partition; fewer is fine, later
/// signatures are then not seen).
pub fn probe_bytes(bytes: &[u8]) -> Option<FsType> {
    if bytes.get(..4) == Some(XFS_MAGIC) {
        return Some(FsType::Xfs);
    }
    if bytes.get(BTRFS_MAGIC_AT..BTRFS_MAGIC_AT + 8) == Some(BTRFS_MAGIC) {
        return Some(FsType::Btrfs);
    }
    if le16(bytes, EXT_SB + 0x38) == Some(EXT_MAGIC) {
        let compat = le32(bytes, EXT_COMPAT)?;
        let incompat = le32(bytes, EXT_INCOMPAT)?;
        let ro_compat = le32(bytes, EXT_RO_COMPAT)?;
        let ext4_only =
            incompat & !EXT3_INCOMPAT_SUPP != 0 || ro_compat & !EXT3_RO_COMPAT_SUPP != 0;
        return Some(if ext4_only {
            FsType::Ext4
        } else if compat & EXT_HAS_JOURNAL != 0 {
            FsType::Ext3
        } else {
            FsType::Ext2
        });
    }
    if is_fat(bytes) {
        return Some(FsType::Vfat);
    }
    None
}

/// A FAT boot sector: the 0x55AA signature, a file system type string
/// (FAT32 at 0x52, FAT12/16 at 0x36, as mkfs.fat writes them; util-linux
/// `libblkid/src/superblocks/vfat.c` checks the same strings), and sane
/// BPB geometry (bytes per sector a power of two 512..4096, sectors per
/// cluster a power of two, at least one FAT).
fn is_fat(b: &[u8]) -> bool {
    if b.get(510..512) != Some(&[0x55, 0xAA]) {
        return false;
    }
    let named = b.get(0x52..0x5A) == Some(b"FAT32   ")
        || matches!(
            b.get(0x36..0x3E),
            Some(b"FAT12   ") | Some(b"FAT16   ") | Some(b"FAT     ")
        );
    let Some(bps) = le16(b, 11) else { return false };
    let spc = b[13];
    let fats = b[16];
    named
        && bps.is_power_of_two()
        && (512..=4096).contains(&bps)
        && spc.is_power_of_two()
        && fats >= 1
}

/// A partition: its number (as Linux numbers it) and byte range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Partition {
    /// 1-based: the MBR slot, or the GPT entry index plus one.
    pub number: u32,
    /// First byte.
    pub start: u64,
    /// Length in bytes.
    pub len: u64,
}

/// The partitions of a disk whose first sectors are `head` (at least
/// 34 sectors for GPT: the header and the usual entry array; [`read_partitions`] reads what
/// the header asks for). Only the primary MBR slots are read (no
/// extended/logical partitions). An empty list means no partition table.
pub fn parse_mbr(head: &[u8]) -> Vec<Partition> {
    if head.get(510..512) != Some(&[0x55, 0xAA]) || is_fat(head) {
        return Vec::new();
    }
    let mut out = Vec::new();
    for i in 0..4 {
        let at = 446 + 16 * i;
        let (Some(&ty), Some(start), Some(count)) =
            (head.get(at + 4), le32(head, at + 8), le32(head, at + 12))
        else {
            return Vec::new();
        };
        if ty == 0 || count == 0 {
            continue;
        }
        out.push(Partition {
            number: i as u32 + 1,
            start: u64::from(start) * 512,
            len: u64::from(count) * 512,
        });
    }
    out
}

/// Whether the MBR is GPT's protective one (a slot of type 0xEE).
fn protective(head: &[u8]) -> bool {
    head.get(510..512) == Some(&[0x55, 0xAA])
        && (0..4).any(|i| head.get(446 + 16 * i + 4) == Some(&0xEE))
}

/// The most GPT entries read (the usual array holds 128).
const GPT_MAX_ENTRIES: u32 = 1024;

/// Reads the partition table of `file` (GPT if the MBR is protective and
/// the header at LBA 1 says `EFI PART`, else the MBR's primary slots).
///
/// # Errors
/// [`FsError::Read`] if the file cannot be read.
pub fn read_partitions(file: &File, path: &Path) -> Result<Vec<Partition>, FsError> {
    let head = read_at(file, path, 0, 1024)?;
    if protective(&head) && head.get(512..520) == Some(b"EFI PART") {
        let hdr = &head[512..];
        let (Some(lba), Some(count), Some(size)) = (le64(hdr, 72), le32(hdr, 80), le32(hdr, 84))
        else {
            return Ok(Vec::new());
        };
        if !(128..=4096).contains(&size) || count == 0 {
            return Ok(Vec::new());
        }
        let count = count.min(GPT_MAX_ENTRIES);
        let Some(at) = lba.checked_mul(512) else {
            return Ok(Vec::new());
        };
        let table = read_at(file, path, at, count as usize * size as usize)?;
        let mut out = Vec::new();
        for i in 0..count {
            let e = &table[(i * size) as usize..((i + 1) * size) as usize];
            if e[..16].iter().all(|&b| b == 0) {
                continue;
            }
            let (Some(first), Some(last)) = (le64(e, 32), le64(e, 40)) else {
                continue;
            };
            if last < first || last > u64::MAX / 512 - 1 {
                continue;
            }
            out.push(Partition {
                number: i + 1,
                start: first * 512,
                len: (last - first + 1) * 512,
            });
        }
        return Ok(out);
    }
    Ok(parse_mbr(&head))
}

/// Reads up to `len` bytes at `offset` (fewer at the end of the file;
/// missing bytes are zeros).
fn read_at(file: &File, path: &Path, offset: u64, len: usize) -> Result<Vec<u8>, FsError> {
    let mut buf = vec![0u8; len];
    let mut done = 0;
    while done < len {
        match file.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(source) => {
                return Err(FsError::Read {
                    path: path.to_path_buf(),
                    error: source,
                })
            }
        }
    }
    Ok(buf)
}

/// Detects the file system of image `path`, or of its partition
/// `partition` (1-based, MBR or GPT).
///
/// # Errors
/// [`FsError::Read`] if the image cannot be read, [`FsError::Disk`] if it
/// is a fifo, socket, character device or directory, [`FsError::NoPartition`]
/// if it has no such partition, [`FsError::UnknownFs`] if no signature
/// matches.
/// Opens an image to read it: without waiting (a fifo would wait for a
/// writer), then refusing what cannot be an image (a fifo, socket,
/// character device or directory: [`lkl::check_image_type`]).
///
/// # Errors
/// [`FsError::Read`] if it cannot be opened, [`FsError::Disk`] for a
/// path of the wrong type.
pub fn open_image(path: &Path) -> Result<File, FsError> {
    use std::os::unix::fs::OpenOptionsExt;
    let read_err = |error| FsError::Read {
        path: path.to_path_buf(),
        error,
    };
    lkl::check_image_type(path, &std::fs::metadata(path).map_err(read_err)?)?;
    let file = File::options()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(read_err)?;
    lkl::check_image_type(path, &file.metadata().map_err(read_err)?)?;
    Ok(file)
}

pub fn probe_image(path: &Path, partition: Option<u32>) -> Result<FsType, FsError> {
    let file = open_image(path)?;
    let start = match partition {
        None => 0,
        Some(n) => {
            let parts = read_partitions(&file, path)?;
            let found = parts.iter().find(|p| p.number == n);
            match found {
                Some(p) => p.start,
                None => {
                    return Err(FsError::NoPartition {
                        path: path.to_path_buf(),
                        partition: n,
                        found: parts.iter().map(|p| p.number).collect(),
                    })
                }
            }
        }
    };
    let head = read_at(&file, path, start, PROBE_LEN)?;
    if let Some(t) = probe_bytes(&head) {
        return Ok(t);
    }
    let partitioned = partition.is_none() && !read_partitions(&file, path)?.is_empty();
    Err(FsError::UnknownFs {
        path: path.to_path_buf(),
        partition,
        partitioned,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ext(compat: u32, incompat: u32, ro: u32) -> Vec<u8> {
        let mut b = vec![0u8; 4096];
        b[EXT_SB + 0x38..EXT_SB + 0x3A].copy_from_slice(&EXT_MAGIC.to_le_bytes());
        b[EXT_COMPAT..EXT_COMPAT + 4].copy_from_slice(&compat.to_le_bytes());
        b[EXT_INCOMPAT..EXT_INCOMPAT + 4].copy_from_slice(&incompat.to_le_bytes());
        b[EXT_RO_COMPAT..EXT_RO_COMPAT + 4].copy_from_slice(&ro.to_le_bytes());
        b
    }

    #[test]
    fn ext_generations() {
        assert_eq!(probe_bytes(&ext(0, 0x2, 0x3)), Some(FsType::Ext2));
        assert_eq!(probe_bytes(&ext(0x4, 0x2, 0x3)), Some(FsType::Ext3));
        assert_eq!(probe_bytes(&ext(0x4, 0x2 | 0x40, 0x3)), Some(FsType::Ext4));
        assert_eq!(probe_bytes(&ext(0x4, 0x2, 0x3 | 0x8)), Some(FsType::Ext4));
    }

    #[test]
    fn others_and_nothing() {
        let mut b = vec![0u8; PROBE_LEN];
        assert_eq!(probe_bytes(&b), None);
        b[BTRFS_MAGIC_AT..BTRFS_MAGIC_AT + 8].copy_from_slice(BTRFS_MAGIC);
        assert_eq!(probe_bytes(&b), Some(FsType::Btrfs));
        // Too short to see the btrfs magic.
        assert_eq!(probe_bytes(&b[..4096]), None);
        let mut x = vec![0u8; 512];
        x[..4].copy_from_slice(b"XFSB");
        assert_eq!(probe_bytes(&x), Some(FsType::Xfs));
        let mut f = vec![0u8; 512];
        f[11..13].copy_from_slice(&512u16.to_le_bytes());
        f[13] = 4;
        f[16] = 2;
        f[0x52..0x5A].copy_from_slice(b"FAT32   ");
        assert_eq!(probe_bytes(&f), None, "no 0x55AA");
        f[510] = 0x55;
        f[511] = 0xAA;
        assert_eq!(probe_bytes(&f), Some(FsType::Vfat));
        assert!(parse_mbr(&f).is_empty(), "a FAT boot sector is no MBR");
        f[13] = 3;
        assert_eq!(probe_bytes(&f), None, "3 sectors per cluster");
    }

    #[test]
    fn mbr_slots() {
        let mut b = vec![0u8; 512];
        b[510] = 0x55;
        b[511] = 0xAA;
        b[446 + 16 + 4] = 0x83;
        b[446 + 16 + 8..446 + 16 + 12].copy_from_slice(&2048u32.to_le_bytes());
        b[446 + 16 + 12..446 + 16 + 16].copy_from_slice(&100u32.to_le_bytes());
        assert_eq!(
            parse_mbr(&b),
            vec![Partition {
                number: 2,
                start: 2048 * 512,
                len: 100 * 512
            }]
        );
    }

    #[test]
    fn any_bytes_are_safe() {
        let mut x = 0x1234_5678_9abc_def1u64;
        for len in [0usize, 1, 511, 512, 1100, 4096, PROBE_LEN] {
            for _ in 0..50 {
                let b: Vec<u8> = (0..len)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        x as u8
                    })
                    .collect();
                let _ = probe_bytes(&b);
                let _ = parse_mbr(&b);
            }
        }
    }
}
