//! The FUSE wire protocol, as far as the kernel's `virtiofs` driver
//! speaks it: opcodes, flags and the request and reply structures of
//! protocol 7.31, from the kernel's public ABI (`include/uapi/linux/fuse.h`).
//!
//! Written out here rather than taken from a crate: the Rust FUSE crates
//! that carry these definitions (`fuse-backend-rs`, `fuser`'s `fuse-abi`)
//! are under licences that do not combine with GPL-2.0-only, and the
//! structures are a stable kernel ABI of plain little-endian integers.
//!
//! Every structure is `#[repr(C)]`, made only of integers and without
//! padding, so it can be read from and written to bytes whole ([`Pod`]).

use std::mem::size_of;

/// The protocol's major version.
pub const KERNEL_VERSION: u32 = 7;
/// The minor version we speak (the kernel follows the lower of its own
/// and ours).
pub const KERNEL_MINOR_VERSION: u32 = 31;
/// The root directory's node id.
pub const ROOT_ID: u64 = 1;

/// Request opcodes.
#[allow(missing_docs)]
pub mod op {
    pub const LOOKUP: u32 = 1;
    pub const FORGET: u32 = 2;
    pub const GETATTR: u32 = 3;
    pub const SETATTR: u32 = 4;
    pub const READLINK: u32 = 5;
    pub const SYMLINK: u32 = 6;
    pub const MKNOD: u32 = 8;
    pub const MKDIR: u32 = 9;
    pub const UNLINK: u32 = 10;
    pub const RMDIR: u32 = 11;
    pub const RENAME: u32 = 12;
    pub const LINK: u32 = 13;
    pub const OPEN: u32 = 14;
    pub const READ: u32 = 15;
    pub const WRITE: u32 = 16;
    pub const STATFS: u32 = 17;
    pub const RELEASE: u32 = 18;
    pub const FSYNC: u32 = 20;
    pub const SETXATTR: u32 = 21;
    pub const GETXATTR: u32 = 22;
    pub const LISTXATTR: u32 = 23;
    pub const REMOVEXATTR: u32 = 24;
    pub const FLUSH: u32 = 25;
    pub const INIT: u32 = 26;
    pub const OPENDIR: u32 = 27;
    pub const READDIR: u32 = 28;
    pub const RELEASEDIR: u32 = 29;
    pub const FSYNCDIR: u32 = 30;
    pub const ACCESS: u32 = 34;
    pub const CREATE: u32 = 35;
    pub const DESTROY: u32 = 38;
    pub const BATCH_FORGET: u32 = 42;
    pub const FALLOCATE: u32 = 43;
    pub const RENAME2: u32 = 45;
    pub const LSEEK: u32 = 46;
    pub const SYNCFS: u32 = 50;

    /// The opcode's name, as in the kernel's header less `FUSE_`
    /// (`OTHER` for those the server does not know).
    pub fn name(opcode: u32) -> &'static str {
        match opcode {
            LOOKUP => "LOOKUP",
            FORGET => "FORGET",
            GETATTR => "GETATTR",
            SETATTR => "SETATTR",
            READLINK => "READLINK",
            SYMLINK => "SYMLINK",
            MKNOD => "MKNOD",
            MKDIR => "MKDIR",
            UNLINK => "UNLINK",
            RMDIR => "RMDIR",
            RENAME => "RENAME",
            LINK => "LINK",
            OPEN => "OPEN",
            READ => "READ",
            WRITE => "WRITE",
            STATFS => "STATFS",
            RELEASE => "RELEASE",
            FSYNC => "FSYNC",
            SETXATTR => "SETXATTR",
            GETXATTR => "GETXATTR",
            LISTXATTR => "LISTXATTR",
            REMOVEXATTR => "REMOVEXATTR",
            FLUSH => "FLUSH",
            INIT => "INIT",
            OPENDIR => "OPENDIR",
            READDIR => "READDIR",
            RELEASEDIR => "RELEASEDIR",
            FSYNCDIR => "FSYNCDIR",
            ACCESS => "ACCESS",
            CREATE => "CREATE",
            DESTROY => "DESTROY",
            BATCH_FORGET => "BATCH_FORGET",
            FALLOCATE => "FALLOCATE",
            RENAME2 => "RENAME2",
            LSEEK => "LSEEK",
            SYNCFS => "SYNCFS",
            _ => "OTHER",
        }
    }
}

/// `INIT` flags (`fuse_init_in.flags`, `fuse_init_out.flags`).
#[allow(missing_docs)]
pub mod init {
    pub const ASYNC_READ: u32 = 1 << 0;
    pub const ATOMIC_O_TRUNC: u32 = 1 << 3;
    pub const BIG_WRITES: u32 = 1 << 5;
    pub const AUTO_INVAL_DATA: u32 = 1 << 12;
    pub const PARALLEL_DIROPS: u32 = 1 << 18;
    pub const MAX_PAGES: u32 = 1 << 22;
    pub const CACHE_SYMLINKS: u32 = 1 << 23;
    pub const HANDLE_KILLPRIV_V2: u32 = 1 << 28;
}

/// `fuse_write_in.write_flags`: clear the set-id bits (`HANDLE_KILLPRIV_V2`).
pub const WRITE_KILL_SUIDGID: u32 = 1 << 2;
/// `fuse_open_in.open_flags`: clear the set-id bits (an open with `O_TRUNC`).
pub const OPEN_KILL_SUIDGID: u32 = 1 << 0;

/// `SETATTR` validity bits (`fuse_setattr_in.valid`).
#[allow(missing_docs)]
pub mod fattr {
    pub const MODE: u32 = 1 << 0;
    pub const UID: u32 = 1 << 1;
    pub const GID: u32 = 1 << 2;
    pub const SIZE: u32 = 1 << 3;
    pub const ATIME: u32 = 1 << 4;
    pub const MTIME: u32 = 1 << 5;
    pub const FH: u32 = 1 << 6;
    pub const ATIME_NOW: u32 = 1 << 7;
    pub const MTIME_NOW: u32 = 1 << 8;
    pub const KILL_SUIDGID: u32 = 1 << 11;
}

/// `fuse_getattr_in.getattr_flags`: `fh` is meaningful.
pub const GETATTR_FH: u32 = 1 << 0;

/// Plain data: a `#[repr(C)]` structure of integers without padding, so
/// every byte pattern is a valid value and its bytes are all initialized.
///
/// # Safety
/// Implement only for such structures.
pub unsafe trait Pod: Copy + Default {
    /// Reads one from the start of `bytes`, or `None` if it is too short.
    fn read(bytes: &[u8]) -> Option<Self> {
        if bytes.len() < size_of::<Self>() {
            return None;
        }
        // SAFETY: `bytes` holds at least size_of::<Self>() bytes, and any
        // bytes make a valid `Self` (the trait's contract); unaligned read.
        Some(unsafe { bytes.as_ptr().cast::<Self>().read_unaligned() })
    }

    /// The value's bytes.
    fn bytes(&self) -> &[u8] {
        // SAFETY: `Self` has no padding (the trait's contract), so all of
        // its size_of bytes are initialized; the slice borrows `self`.
        unsafe { std::slice::from_raw_parts((self as *const Self).cast(), size_of::<Self>()) }
    }
}

macro_rules! pod {
    ($(#[$doc:meta] $name:ident { $($field:ident: $t:ty),* $(,)? } = $size:expr;)*) => {$(
        #[$doc]
        #[repr(C)]
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
        #[allow(missing_docs)]
        pub struct $name { $(pub $field: $t),* }
        // SAFETY: integers only; the size assertion below proves no padding.
        unsafe impl Pod for $name {}
        const _: () = assert!(size_of::<$name>() == $size && size_of::<$name>() == 0 $(+ size_of::<$t>())*);
    )*};
}

pod! {
    /// `fuse_in_header`: the start of every request.
    InHeader { len: u32, opcode: u32, unique: u64, nodeid: u64, uid: u32, gid: u32, pid: u32, total_extlen: u16, padding: u16 } = 40;
    /// `fuse_out_header`: the start of every reply.
    OutHeader { len: u32, error: i32, unique: u64 } = 16;
    /// `fuse_attr`.
    Attr { ino: u64, size: u64, blocks: u64, atime: u64, mtime: u64, ctime: u64, atimensec: u32, mtimensec: u32, ctimensec: u32, mode: u32, nlink: u32, uid: u32, gid: u32, rdev: u32, blksize: u32, flags: u32 } = 88;
    /// `fuse_entry_out`.
    EntryOut { nodeid: u64, generation: u64, entry_valid: u64, attr_valid: u64, entry_valid_nsec: u32, attr_valid_nsec: u32, attr: Attr } = 128;
    /// `fuse_attr_out`.
    AttrOut { attr_valid: u64, attr_valid_nsec: u32, dummy: u32, attr: Attr } = 104;
    /// `fuse_forget_in`.
    ForgetIn { nlookup: u64 } = 8;
    /// `fuse_forget_one`.
    ForgetOne { nodeid: u64, nlookup: u64 } = 16;
    /// `fuse_batch_forget_in`.
    BatchForgetIn { count: u32, dummy: u32 } = 8;
    /// `fuse_getattr_in`.
    GetattrIn { getattr_flags: u32, dummy: u32, fh: u64 } = 16;
    /// `fuse_mknod_in`.
    MknodIn { mode: u32, rdev: u32, umask: u32, padding: u32 } = 16;
    /// `fuse_mkdir_in`.
    MkdirIn { mode: u32, umask: u32 } = 8;
    /// `fuse_rename_in`.
    RenameIn { newdir: u64 } = 8;
    /// `fuse_rename2_in`.
    Rename2In { newdir: u64, flags: u32, padding: u32 } = 16;
    /// `fuse_link_in`.
    LinkIn { oldnodeid: u64 } = 8;
    /// `fuse_setattr_in`.
    SetattrIn { valid: u32, padding: u32, fh: u64, size: u64, lock_owner: u64, atime: u64, mtime: u64, ctime: u64, atimensec: u32, mtimensec: u32, ctimensec: u32, mode: u32, unused4: u32, uid: u32, gid: u32, unused5: u32 } = 88;
    /// `fuse_open_in`.
    OpenIn { flags: u32, open_flags: u32 } = 8;
    /// `fuse_create_in`.
    CreateIn { flags: u32, mode: u32, umask: u32, open_flags: u32 } = 16;
    /// `fuse_open_out`.
    OpenOut { fh: u64, open_flags: u32, backing_id: i32 } = 16;
    /// `fuse_release_in`.
    ReleaseIn { fh: u64, flags: u32, release_flags: u32, lock_owner: u64 } = 24;
    /// `fuse_read_in`.
    ReadIn { fh: u64, offset: u64, size: u32, read_flags: u32, lock_owner: u64, flags: u32, padding: u32 } = 40;
    /// `fuse_write_in`.
    WriteIn { fh: u64, offset: u64, size: u32, write_flags: u32, lock_owner: u64, flags: u32, padding: u32 } = 40;
    /// `fuse_write_out`.
    WriteOut { size: u32, padding: u32 } = 8;
    /// `fuse_kstatfs` (`fuse_statfs_out`).
    StatfsOut { blocks: u64, bfree: u64, bavail: u64, files: u64, ffree: u64, bsize: u32, namelen: u32, frsize: u32, padding: u32, spare: [u32; 6] } = 80;
    /// `fuse_fsync_in`.
    FsyncIn { fh: u64, fsync_flags: u32, padding: u32 } = 16;
    /// `fuse_setxattr_in` without `FUSE_SETXATTR_EXT` (8 bytes).
    SetxattrIn { size: u32, flags: u32 } = 8;
    /// `fuse_getxattr_in`.
    GetxattrIn { size: u32, padding: u32 } = 8;
    /// `fuse_getxattr_out`.
    GetxattrOut { size: u32, padding: u32 } = 8;
    /// `fuse_access_in`.
    AccessIn { mask: u32, padding: u32 } = 8;
    /// `fuse_init_in` (the first 16 bytes: all a 7.31 server reads).
    InitIn { major: u32, minor: u32, max_readahead: u32, flags: u32 } = 16;
    /// `fuse_init_out`.
    InitOut { major: u32, minor: u32, max_readahead: u32, flags: u32, max_background: u16, congestion_threshold: u16, max_write: u32, time_gran: u32, max_pages: u16, map_alignment: u16, flags2: u32, max_stack_depth: u32, unused: [u32; 6] } = 64;
    /// `fuse_fallocate_in`.
    FallocateIn { fh: u64, offset: u64, length: u64, mode: u32, padding: u32 } = 32;
    /// `fuse_lseek_in`.
    LseekIn { fh: u64, offset: u64, whence: u32, padding: u32 } = 24;
    /// `fuse_lseek_out`.
    LseekOut { offset: u64 } = 8;
    /// `fuse_dirent` without its name.
    Dirent { ino: u64, off: u64, namelen: u32, typ: u32 } = 24;
}

/// The bytes of a request after its [`InHeader`], taken apart in order.
#[derive(Debug, Clone, Copy)]
pub struct Args<'a> {
    rest: &'a [u8],
}

impl<'a> Args<'a> {
    /// The arguments in `bytes`.
    pub fn new(bytes: &'a [u8]) -> Self {
        Args { rest: bytes }
    }

    /// The next structure, or `EINVAL` if the request is too short.
    pub fn take<T: Pod>(&mut self) -> Result<T, i32> {
        let v = T::read(self.rest).ok_or(libc::EINVAL)?;
        self.rest = &self.rest[size_of::<T>()..];
        Ok(v)
    }

    /// The next NUL-terminated string (a name, an xattr name, a link
    /// target), without its NUL; `EINVAL` if there is no NUL.
    pub fn string(&mut self) -> Result<&'a [u8], i32> {
        let end = self.rest.iter().position(|&b| b == 0).ok_or(libc::EINVAL)?;
        let s = &self.rest[..end];
        self.rest = &self.rest[end + 1..];
        Ok(s)
    }

    /// The next `len` bytes (an xattr value).
    pub fn bytes(&mut self, len: usize) -> Result<&'a [u8], i32> {
        if self.rest.len() < len {
            return Err(libc::EINVAL);
        }
        let (b, rest) = self.rest.split_at(len);
        self.rest = rest;
        Ok(b)
    }
}

/// Appends one directory entry to a `READDIR` reply (`fuse_dirent`, name,
/// padding to 8 bytes), unless it would make the reply longer than `max`;
/// returns whether it did.
pub fn push_dirent(
    out: &mut Vec<u8>,
    max: usize,
    ino: u64,
    off: u64,
    typ: u32,
    name: &[u8],
) -> bool {
    let len = (size_of::<Dirent>() + name.len()).next_multiple_of(8);
    if out.len() + len > max {
        return false;
    }
    let d = Dirent {
        ino,
        off,
        namelen: name.len() as u32,
        typ,
    };
    out.extend_from_slice(d.bytes());
    out.extend_from_slice(name);
    out.resize(out.len().next_multiple_of(8), 0);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip_is_little_endian_and_packed() {
        let h = InHeader {
            len: 0x30,
            opcode: op::LOOKUP,
            unique: 0x0102_0304_0506_0708,
            nodeid: ROOT_ID,
            uid: 1000,
            gid: 100,
            pid: 7,
            total_extlen: 0,
            padding: 0,
        };
        let b = h.bytes();
        assert_eq!(b.len(), 40);
        assert_eq!(&b[..8], &[0x30, 0, 0, 0, 1, 0, 0, 0]);
        assert_eq!(&b[8..16], &0x0102_0304_0506_0708u64.to_le_bytes());
        assert_eq!(InHeader::read(b), Some(h));
        assert_eq!(InHeader::read(&b[..39]), None);
    }

    #[test]
    fn args_take_structs_and_strings_in_order() {
        let mut req = Vec::new();
        req.extend_from_slice(
            MkdirIn {
                mode: 0o755,
                umask: 0o22,
            }
            .bytes(),
        );
        req.extend_from_slice(b"dir\0");
        let mut a = Args::new(&req);
        assert_eq!(a.take::<MkdirIn>().unwrap().mode, 0o755);
        assert_eq!(a.string().unwrap(), b"dir");
        assert_eq!(a.string(), Err(libc::EINVAL));
        assert_eq!(a.take::<MkdirIn>(), Err(libc::EINVAL));
        // A symlink: two strings.
        let mut a = Args::new(b"name\0/target\0");
        assert_eq!(a.string().unwrap(), b"name");
        assert_eq!(a.string().unwrap(), b"/target");
        // A name without its NUL is refused.
        assert_eq!(Args::new(b"abc").string(), Err(libc::EINVAL));
        let mut a = Args::new(b"xyz");
        assert_eq!(a.bytes(2).unwrap(), b"xy");
        assert_eq!(a.bytes(2), Err(libc::EINVAL));
    }

    #[test]
    fn dirents_are_padded_and_bounded() {
        let mut out = Vec::new();
        assert!(push_dirent(&mut out, 4096, 5, 1, 4, b"a"));
        assert_eq!(out.len(), 32);
        assert_eq!(&out[16..24], &[1, 0, 0, 0, 4, 0, 0, 0]);
        assert_eq!(out[24], b'a');
        assert!(push_dirent(&mut out, 4096, 6, 2, 8, b"12345678"));
        assert_eq!(out.len(), 32 + 32);
        assert!(!push_dirent(&mut out, 90, 7, 3, 8, b"x"));
        assert_eq!(out.len(), 64);
    }

    #[test]
    fn sizes_are_the_abis() {
        assert_eq!(size_of::<InitOut>(), 64);
        assert_eq!(size_of::<EntryOut>(), 128);
        assert_eq!(size_of::<SetattrIn>(), 88);
    }
}
