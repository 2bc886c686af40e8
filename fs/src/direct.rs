//! A file's data read straight from the image, where the file system maps
//! it.
//!
//! Reading a small file through the kernel costs a block request (a
//! virtio-blk round trip through LKL's block layer) and two copies (into
//! LKL's page cache, then out of it). On a read-only mount of a disk that
//! reads exactly as its image, the kernel can instead say where the file's
//! blocks are (`FS_IOC_FIEMAP`) and the tool reads them from the image
//! file itself, on any host thread, without the kernel's CPU.
//!
//! Only extents the kernel reports as plain data are read this way: an
//! extent that is unwritten, delayed, encoded, encrypted, inline, a tail,
//! or of unknown place, a hole, or a map that does not reach the file's
//! size gives `None`, and the caller reads the file through the kernel.
//! [`crate::Mounted::direct_reader`] offers a reader only for ext2/3/4 (whose
//! physical addresses are byte offsets on the device) on a read-only mount
//! whose disk nothing was written to.

use crate::ops::File;
use crate::FsError;

/// `FS_IOC_FIEMAP`: `_IOWR('f', 11, struct fiemap)` (32 bytes).
const FS_IOC_FIEMAP: std::ffi::c_ulong = 0xC020_660B;
/// `struct fiemap`: fm_start (u64), fm_length (u64), fm_flags (u32),
/// fm_mapped_extents (u32), fm_extent_count (u32), fm_reserved (u32).
const HEADER: usize = 32;
const MAPPED: usize = 20;
const COUNT: usize = 24;
/// `struct fiemap_extent`: fe_logical, fe_physical, fe_length (u64), two
/// reserved u64, fe_flags (u32), three reserved u32.
const EXTENT: usize = 56;
const FLAGS: usize = 40;
/// Extents asked for per call.
const BATCH: usize = 32;

/// A `struct fiemap` with room for [`BATCH`] extents, aligned as the
/// kernel's.
#[repr(C, align(8))]
struct FiemapBuf([u8; HEADER + BATCH * EXTENT]);

impl FiemapBuf {
    fn u64_at(&self, at: usize) -> u64 {
        u64::from_ne_bytes(self.0[at..at + 8].try_into().expect("8 bytes"))
    }

    fn u32_at(&self, at: usize) -> u32 {
        u32::from_ne_bytes(self.0[at..at + 4].try_into().expect("4 bytes"))
    }
}

/// The last extent of the file.
pub const FIEMAP_EXTENT_LAST: u32 = 0x1;
/// Merged from several file system blocks or extents: still plain data.
pub const FIEMAP_EXTENT_MERGED: u32 = 0x1000;
/// Shared with another file (reflinks): still plain data.
pub const FIEMAP_EXTENT_SHARED: u32 = 0x2000;
/// The flags of an extent that may be read from the device as it is.
const PLAIN: u32 = FIEMAP_EXTENT_LAST | FIEMAP_EXTENT_MERGED | FIEMAP_EXTENT_SHARED;

/// One extent of a file as `FS_IOC_FIEMAP` reports it (bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    /// Where it starts in the file.
    pub logical: u64,
    /// Where it starts on the device.
    pub physical: u64,
    /// Its length (whole file system blocks).
    pub length: u64,
    /// `FIEMAP_EXTENT_*`.
    pub flags: u32,
}

impl File {
    /// The file's extents (`ioctl(FS_IOC_FIEMAP)`), in file order.
    ///
    /// # Errors
    /// [`FsError::Sys`] (`EOPNOTSUPP` where the file system has no map).
    pub fn fiemap(&self) -> Result<Vec<Extent>, FsError> {
        let mut out = Vec::new();
        let mut buf = FiemapBuf([0; HEADER + BATCH * EXTENT]);
        let mut start = 0u64;
        loop {
            buf.0.fill(0);
            buf.0[0..8].copy_from_slice(&start.to_ne_bytes());
            buf.0[8..16].copy_from_slice(&(u64::MAX - start).to_ne_bytes());
            buf.0[COUNT..COUNT + 4].copy_from_slice(&(BATCH as u32).to_ne_bytes());
            // SAFETY: `buf` is a `struct fiemap` with room for the BATCH
            // extents fm_extent_count allows, so the kernel writes inside
            // it; it lives across the call.
            unsafe { lkl::ioctl(self.fd(), FS_IOC_FIEMAP, buf.0.as_mut_ptr().cast()) }.map_err(
                |errno| FsError::Sys {
                    op: "ioctl FS_IOC_FIEMAP",
                    path: self.path().to_path_buf(),
                    errno,
                },
            )?;
            let mapped = (buf.u32_at(MAPPED) as usize).min(BATCH);
            let mut last = false;
            for i in 0..mapped {
                let at = HEADER + i * EXTENT;
                let flags = buf.u32_at(at + FLAGS);
                out.push(Extent {
                    logical: buf.u64_at(at),
                    physical: buf.u64_at(at + 8),
                    length: buf.u64_at(at + 16),
                    flags,
                });
                last |= flags & FIEMAP_EXTENT_LAST != 0;
            }
            match out.last() {
                Some(e) if !last && mapped == BATCH => start = e.logical + e.length,
                _ => return Ok(out),
            }
        }
    }
}

/// Where `size` bytes of a file lie on the device, as `(physical, len)`
/// pieces in file order, if every byte is plain data in `extents`;
/// `None` otherwise (a hole, a flag other than [`PLAIN`]'s, a map short
/// of `size`).
pub fn plain_pieces(extents: &[Extent], size: u64) -> Option<Vec<(u64, u64)>> {
    let mut out = Vec::with_capacity(extents.len());
    let mut at = 0u64;
    for e in extents {
        if at >= size {
            break;
        }
        if e.logical != at || e.flags & !PLAIN != 0 || e.length == 0 {
            return None;
        }
        let len = e.length.min(size - at);
        match out.last_mut() {
            Some((p, l)) if *p + *l == e.physical => *l += len,
            _ => out.push((e.physical, len)),
        }
        at += len;
    }
    (at >= size).then_some(out)
}

/// Reads files' data from the disk under a read-only mount
/// ([`crate::Mounted::direct_reader`]).
#[derive(Clone)]
pub struct DirectReader {
    disk: lkl::DiskReader,
    /// The partition's first byte on the disk.
    start: u64,
}

impl DirectReader {
    pub(crate) fn new(disk: lkl::DiskReader, start: u64) -> DirectReader {
        DirectReader { disk, start }
    }

    /// Where the first `size` bytes of `f` are on the device, as
    /// `(physical, len)` pieces in file order; `None` if they cannot all
    /// be read from there (read the file through the kernel then).
    ///
    /// # Errors
    /// [`FsError::Sys`] from `FS_IOC_FIEMAP`, other than `EOPNOTSUPP`
    /// (which is `None`).
    pub fn pieces(&self, f: &File, size: u64) -> Result<Option<Vec<(u64, u64)>>, FsError> {
        if size == 0 {
            return Ok(Some(Vec::new()));
        }
        match f.fiemap() {
            Ok(extents) => Ok(plain_pieces(&extents, size)),
            Err(e) if e.errno() == Some(lkl::Errno::EOPNOTSUPP) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Reads `buf.len()` bytes at `physical` (an address from
    /// [`DirectReader::pieces`]).
    ///
    /// # Errors
    /// [`FsError::Disk`] for a failed read of the image.
    pub fn read_at(&self, physical: u64, buf: &mut [u8]) -> Result<(), FsError> {
        Ok(self.disk.read_at(self.start + physical, buf)?)
    }

    /// The first `size` bytes of `f`, read from the device; `None` as for
    /// [`DirectReader::pieces`].
    ///
    /// # Errors
    /// Those of [`DirectReader::pieces`] and [`DirectReader::read_at`].
    pub fn read_file(&self, f: &File, size: u64) -> Result<Option<Vec<u8>>, FsError> {
        let Some(pieces) = self.pieces(f, size)? else {
            return Ok(None);
        };
        let mut buf = vec![0u8; size as usize];
        let mut at = 0usize;
        for (p, l) in pieces {
            self.read_at(p, &mut buf[at..at + l as usize])?;
            at += l as usize;
        }
        Ok(Some(buf))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ext(logical: u64, physical: u64, length: u64, flags: u32) -> Extent {
        Extent {
            logical,
            physical,
            length,
            flags,
        }
    }

    #[test]
    fn plain_extents_give_pieces_up_to_the_size() {
        let e = [
            ext(0, 8192, 4096, 0),
            ext(4096, 12288, 4096, FIEMAP_EXTENT_LAST),
        ];
        assert_eq!(plain_pieces(&e, 5000), Some(vec![(8192, 5000)]));
        let e = [
            ext(0, 8192, 4096, FIEMAP_EXTENT_MERGED),
            ext(4096, 40960, 4096, FIEMAP_EXTENT_LAST | FIEMAP_EXTENT_SHARED),
        ];
        assert_eq!(
            plain_pieces(&e, 8192),
            Some(vec![(8192, 4096), (40960, 4096)])
        );
        assert_eq!(plain_pieces(&e, 100), Some(vec![(8192, 100)]));
        assert_eq!(plain_pieces(&[], 0), Some(vec![]));
    }

    #[test]
    fn anything_but_plain_data_is_refused() {
        // A hole at the start, a hole in the middle, a map short of the size.
        assert_eq!(plain_pieces(&[ext(4096, 0, 4096, 1)], 8192), None);
        let e = [ext(0, 0, 4096, 0), ext(8192, 8192, 4096, 1)];
        assert_eq!(plain_pieces(&e, 12288), None);
        assert_eq!(plain_pieces(&[ext(0, 0, 4096, 1)], 5000), None);
        assert_eq!(plain_pieces(&[], 1), None);
        // Unwritten, delayed, unknown, encoded, encrypted, inline, tail.
        for flag in [0x800, 0x4, 0x2, 0x8, 0x80, 0x200 | 0x100, 0x400] {
            assert_eq!(plain_pieces(&[ext(0, 0, 4096, flag | 1)], 100), None);
        }
    }
}
