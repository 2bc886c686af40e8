//! On-disk site cache: the sites found in one executable section of one file version,
//! so the next process that maps it patches them without decoding a byte.
//!
//! Decoding dominates start-up (about 9 ms per exec of a libc-linked program). Each
//! cache file holds a header identifying the file version and the section range
//! (device, inode, size, mtime, ctime, file offsets) and then one `u64` per site:
//! `offset_in_range << 8 | length`. Entries are never trusted: every cached site must
//! still hold `syscall`/`sysenter` before it is patched ([`rewriter::live::patch_sites`]),
//! and a stale or damaged file sends us back to decoding. The directory must belong to
//! us and be private (0700), so no other user can feed us sites. It is reached by path: a
//! descriptor kept open would show in the program's fd table.
//!
//! Raw syscalls and stack buffers only: this runs in the hook.

use std::sync::OnceLock;

use rewriter::{Site, SiteKind};

use crate::sys::{AT_FDCWD, O_CLOEXEC, O_CREAT, O_EXCL, O_RDONLY, O_WRONLY};
use crate::{sys, syscall6};

/// Bump when what counts as a site changes, so old caches are ignored.
const MAGIC: u64 = u64::from_le_bytes(*b"ZPSITE02");
/// The same for a file of the backend's (an LKL file): its device and inode numbers
/// are the backend's, a name space apart from the host's.
const MAGIC_BACKEND: u64 = u64::from_le_bytes(*b"ZPSITB02");
const KEY_WORDS: usize = 9;
const HEADER: usize = (KEY_WORDS + 1) * 8;

/// The cache directory's path. No descriptor is kept open: the program would see it
/// (in /proc/self/fd, or a test of the fds it passes to children).
static DIR: OnceLock<Vec<u8>> = OnceLock::new();
/// Longest cache directory path we use; longer ones turn the cache off.
const DIR_MAX: usize = 256;
/// Room for `DIR/.tmp-PID-TID-HASH` and a NUL.
const PATH_BUF: usize = DIR_MAX + 80;

/// Uses `dir` (created 0700 if missing) as the site cache directory for this process.
///
/// # Errors
/// When the directory cannot be created, is not private to us, or its path is longer
/// than 256 bytes.
pub fn use_dir(dir: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let dir = std::fs::canonicalize(dir)?;
    let meta = std::fs::metadata(&dir)?;
    // SAFETY: geteuid has no arguments.
    let euid = unsafe { syscall6(sys::NR_GETEUID, [0; 6]) } as u32;
    if meta.uid() != euid || meta.mode() & 0o077 != 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!("{} is not private to uid {euid}", dir.display()),
        ));
    }
    let bytes = dir.as_os_str().as_bytes();
    if bytes.len() > DIR_MAX {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{}: path too long for the site cache", dir.display()),
        ));
    }
    let _ = DIR.set(bytes.to_vec());
    Ok(())
}

/// Writes `DIR/name` and a NUL into `buf`; returns its address.
fn path_of(name: &[u8], buf: &mut [u8; PATH_BUF]) -> Option<u64> {
    let dir = DIR.get()?;
    let name = &name[..name.iter().position(|&c| c == 0).unwrap_or(name.len())];
    let total = dir.len() + 1 + name.len();
    if total + 1 > buf.len() {
        return None;
    }
    buf[..dir.len()].copy_from_slice(dir);
    buf[dir.len()] = b'/';
    buf[dir.len() + 1..total].copy_from_slice(name);
    buf[total] = 0;
    Some(buf.as_ptr() as u64)
}

/// Identity of one section range of one file version.
#[derive(Clone, Copy)]
pub(crate) struct Key([u64; KEY_WORDS]);

impl Key {
    /// The key for file offsets `[lo, hi)` of `file` (a host file, or one of the
    /// backend's, keyed by the backend's identity of it, never its placeholder's).
    pub(crate) fn new(file: &crate::mapfile::MapFile, lo: u64, hi: u64) -> Option<Key> {
        DIR.get()?;
        let mut st = [0u64; 18];
        if file.fstat(&mut st) < 0 {
            return None;
        }
        let magic = if file.is_backend() {
            MAGIC_BACKEND
        } else {
            MAGIC
        };
        // st_dev, st_ino, st_size, st_mtime, st_mtime_nsec, st_ctime
        Some(Key([
            magic, st[0], st[1], st[6], st[11], st[12], st[13], lo, hi,
        ]))
    }

    /// File name: FNV-1a of the key, in hex.
    fn name(&self) -> [u8; 17] {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for w in self.0 {
            for b in w.to_le_bytes() {
                h ^= u64::from(b);
                h = h.wrapping_mul(0x100_0000_01b3);
            }
        }
        let mut out = [0u8; 17];
        for (i, o) in out.iter_mut().take(16).enumerate() {
            *o = b"0123456789abcdef"[(h >> (60 - 4 * i)) as usize & 0xf];
        }
        out
    }

    fn len(&self) -> u64 {
        self.0[8] - self.0[7]
    }
}

/// Patches the cached sites of `key`, whose range starts at address `base`. `None`:
/// no usable cache file; `Some(Err)`: a cached site was stale (those before it stay
/// patched; decode the range to finish).
pub(crate) fn patch_cached(
    key: &Key,
    base: u64,
    prot: i32,
) -> Option<Result<usize, rewriter::Error>> {
    let mut buf = [0u8; PATH_BUF];
    let path = path_of(&key.name(), &mut buf)?;
    // SAFETY: opening a NUL-terminated path in our cache directory.
    let fd = unsafe {
        syscall6(
            sys::NR_OPENAT,
            [AT_FDCWD, path, O_RDONLY | O_CLOEXEC, 0, 0, 0],
        )
    };
    if fd < 0 {
        return None;
    }
    let mut st = [0u64; 18];
    // SAFETY: fstat into our buffer.
    let ok = unsafe {
        syscall6(
            sys::NR_FSTAT,
            [fd as u64, st.as_mut_ptr() as u64, 0, 0, 0, 0],
        )
    } == 0;
    let size = st[6];
    let map = if ok && size >= HEADER as u64 && (size - HEADER as u64) & 7 == 0 {
        // SAFETY: a private read-only mapping of our cache file.
        unsafe {
            syscall6(
                sys::NR_MMAP,
                [0, size, sys::PROT_READ, sys::MAP_PRIVATE, fd as u64, 0],
            )
        }
    } else {
        -1
    };
    // SAFETY: closing our descriptor; the mapping stays valid.
    unsafe { syscall6(sys::NR_CLOSE, [fd as u64, 0, 0, 0, 0, 0]) };
    if map < 0 {
        return None;
    }
    // SAFETY: the mapping holds `size` readable bytes, 8-byte aligned (page aligned).
    let words = unsafe { core::slice::from_raw_parts(map as *const u64, size as usize / 8) };
    let count = (size as usize - HEADER) / 8;
    let result = if words[..KEY_WORDS] == key.0 && words[KEY_WORDS] == count as u64 {
        let limit = key.len();
        let sites = words[KEY_WORDS + 1..].iter().map(|&e| {
            let (off, len) = (e >> 8, (e & 0xff) as u8);
            Site {
                addr: base + off,
                // An entry outside the range becomes a length-0 site, which
                // `patch_sites` refuses as stale.
                len: if off + u64::from(len) <= limit {
                    len
                } else {
                    0
                },
                kind: SiteKind::Syscall,
            }
        });
        // SAFETY: the sites lie in the range the caller mapped at `base` (checked above
        // against the range length), in the order they were found.
        Some(unsafe { rewriter::live::patch_sites(sites, prot) })
    } else {
        None
    };
    // SAFETY: unmapping our own mapping.
    unsafe { syscall6(sys::NR_MUNMAP, [map as u64, size, 0, 0, 0, 0]) };
    result
}

/// Writes a cache file for one range while it is being decoded.
pub(crate) struct Writer {
    fd: i32,
    tmp: [u8; PATH_BUF],
    name: [u8; PATH_BUF],
    buf: [u64; 128],
    n: usize,
    count: u64,
    ok: bool,
}

impl Writer {
    /// Starts a cache file for `key` (a temporary file, renamed into place at the end).
    pub(crate) fn begin(key: &Key) -> Option<Writer> {
        use core::fmt::Write;
        let name = key.name();
        let mut l = crate::trace::Line::new();
        // SAFETY: getpid/gettid have no arguments.
        let (pid, tid) = unsafe {
            (
                syscall6(sys::NR_GETPID, [0; 6]),
                syscall6(sys::NR_GETTID, [0; 6]),
            )
        };
        let _ = write!(l, ".tmp-{pid}-{tid}-");
        let mut tmp = [0u8; 64];
        let head = l.bytes();
        tmp[..head.len()].copy_from_slice(head);
        tmp[head.len()..head.len() + 16].copy_from_slice(&name[..16]);
        let flags = O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC;
        let mut tmp_path = [0u8; PATH_BUF];
        let mut final_path = [0u8; PATH_BUF];
        let tp = path_of(&tmp, &mut tmp_path)?;
        path_of(&name, &mut final_path)?;
        // SAFETY: creating a NUL-terminated path in our cache directory.
        let fd = unsafe { syscall6(sys::NR_OPENAT, [AT_FDCWD, tp, flags, 0o600, 0, 0]) };
        if fd < 0 {
            return None;
        }
        let mut w = Writer {
            fd: fd as i32,
            tmp: tmp_path,
            name: final_path,
            buf: [0; 128],
            n: 0,
            count: 0,
            ok: true,
        };
        let mut header = [0u64; KEY_WORDS + 1];
        header[..KEY_WORDS].copy_from_slice(&key.0);
        w.write(&header);
        Some(w)
    }

    fn write(&mut self, words: &[u64]) {
        let bytes = words.len() * 8;
        // SAFETY: writing our own buffer to our temporary file.
        let r = unsafe {
            syscall6(
                sys::NR_WRITE,
                [self.fd as u64, words.as_ptr() as u64, bytes as u64, 0, 0, 0],
            )
        };
        self.ok &= r == bytes as i64;
    }

    /// Records a site at `offset` from the start of the range.
    pub(crate) fn push(&mut self, offset: u64, len: u8) {
        self.buf[self.n] = offset << 8 | u64::from(len);
        self.n += 1;
        self.count += 1;
        if self.n == self.buf.len() {
            let buf = self.buf;
            self.write(&buf);
            self.n = 0;
        }
    }

    /// Completes the file and renames it into place when `success`, else drops it.
    pub(crate) fn finish(mut self, success: bool) {
        let dir = AT_FDCWD;
        if self.n > 0 {
            let buf = self.buf;
            self.write(&buf[..self.n]);
        }
        let count = self.count;
        // SAFETY: pwrite of the count into the header of our temporary file.
        let r = unsafe {
            syscall6(
                sys::NR_PWRITE64,
                [
                    self.fd as u64,
                    &count as *const u64 as u64,
                    8,
                    KEY_WORDS as u64 * 8,
                    0,
                    0,
                ],
            )
        };
        self.ok &= r == 8;
        // SAFETY: closing our temporary file.
        unsafe { syscall6(sys::NR_CLOSE, [self.fd as u64, 0, 0, 0, 0, 0]) };
        // SAFETY: rename or unlink of NUL-terminated names in our cache directory.
        unsafe {
            if success && self.ok {
                syscall6(
                    sys::NR_RENAMEAT,
                    [
                        dir,
                        self.tmp.as_ptr() as u64,
                        dir,
                        self.name.as_ptr() as u64,
                        0,
                        0,
                    ],
                );
            } else {
                syscall6(
                    sys::NR_UNLINKAT,
                    [dir, self.tmp.as_ptr() as u64, 0, 0, 0, 0],
                );
            }
        }
    }
}
