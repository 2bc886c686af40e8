//! Where lkl-run reads the program, its `#!` interpreters and its ELF interpreter from.
//!
//! With the host backend: the host's files, through `std` ([`Files::Host`]). With the
//! LKL backend, started before the program is looked for: every call goes through the
//! backend's routing ([`Files::Backend`]), so a path that is LKL's (`--root`,
//! `--mount`) is searched, checked and read in LKL's file system, and any other path on
//! the host as before. The host cannot map an LKL file (the program-side fd is a
//! placeholder), so it is copied into a memfd ([`Opened::file`]), while the rewriter
//! reads its code sections and its identity for the site cache through the backend
//! ([`Opened::ident`]).

use std::ffi::CString;
use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use trampoline::Backend;

/// The file system lkl-run reads from.
#[derive(Clone, Copy)]
pub enum Files {
    /// The host's, directly.
    Host,
    /// Wherever the backend routes each path.
    Backend(&'static dyn Backend),
}

/// What a path names, as far as running it goes.
#[derive(Debug, Clone, Copy)]
pub struct Meta {
    /// A directory.
    pub is_dir: bool,
}

/// An open program or interpreter.
pub struct Opened {
    /// The bytes to map: the host file itself, or a memfd copy of the backend's file.
    pub file: File,
    /// The fd the rewriter reads code sections and the cache identity from: the host
    /// file's, or the backend's fd of the file.
    pub ident: i32,
    /// The backend's fd, closed through the backend on drop.
    backend_fd: Option<(i32, &'static dyn Backend)>,
}

impl Drop for Opened {
    fn drop(&mut self) {
        if let Some((fd, b)) = self.backend_fd.take() {
            b.syscall(libc::SYS_close as u64, &[fd as u64, 0, 0, 0, 0, 0]);
        }
    }
}

/// A negative errno as an `io::Error`, a result as it is.
fn io(r: i64) -> std::io::Result<i64> {
    if r < 0 {
        Err(std::io::Error::from_raw_os_error(-r as i32))
    } else {
        Ok(r)
    }
}

fn c_path(p: &Path) -> std::io::Result<CString> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::from_raw_os_error(libc::ENOENT))
}

/// Bytes read from a backend's file per call: what the shared kernel copies through its
/// slot's data area (128 KiB, less its header) in one go.
const CHUNK: usize = 124 << 10;

impl Files {
    fn call(b: &dyn Backend, nr: libc::c_long, a: [u64; 6]) -> std::io::Result<i64> {
        io(b.syscall(nr as u64, &a))
    }

    /// `stat(p)`.
    pub fn metadata(&self, p: &Path) -> std::io::Result<Meta> {
        match self {
            Files::Host => std::fs::metadata(p).map(|m| Meta { is_dir: m.is_dir() }),
            Files::Backend(b) => {
                let c = c_path(p)?;
                // SAFETY: an all-zero struct stat is valid.
                let mut st: libc::stat = unsafe { core::mem::zeroed() };
                Self::call(
                    *b,
                    libc::SYS_newfstatat,
                    [
                        libc::AT_FDCWD as u64,
                        c.as_ptr() as u64,
                        &mut st as *mut libc::stat as u64,
                        0,
                        0,
                        0,
                    ],
                )?;
                Ok(Meta {
                    is_dir: st.st_mode & libc::S_IFMT == libc::S_IFDIR,
                })
            }
        }
    }

    /// True when `p` may be executed by this user (`access(p, X_OK)`).
    pub fn executable(&self, p: &Path) -> bool {
        let Ok(c) = c_path(p) else {
            return false;
        };
        let args = [
            libc::AT_FDCWD as u64,
            c.as_ptr() as u64,
            libc::X_OK as u64,
            0,
            0,
            0,
        ];
        match self {
            // SAFETY: faccessat of a NUL-terminated path.
            Files::Host => unsafe { trampoline::syscall6(libc::SYS_faccessat as u64, args) == 0 },
            Files::Backend(b) => b.syscall(libc::SYS_faccessat as u64, &args) == 0,
        }
    }

    /// Opens `p` read-only for mapping.
    pub fn open(&self, p: &Path) -> std::io::Result<Opened> {
        let b = match self {
            Files::Host => {
                let file = File::open(p)?;
                let ident = file.as_raw_fd();
                return Ok(Opened {
                    file,
                    ident,
                    backend_fd: None,
                });
            }
            Files::Backend(b) => *b,
        };
        let fd = open_fd(b, p)?;
        if !b.owns_fd(fd) {
            // A host file: mapped as it is.
            // SAFETY: the fd the host just opened for us.
            let file = unsafe { File::from_raw_fd(fd) };
            return Ok(Opened {
                file,
                ident: fd,
                backend_fd: None,
            });
        }
        let opened = Opened {
            file: copy_to_memfd(b, fd, p)?,
            ident: fd,
            backend_fd: Some((fd, b)),
        };
        Ok(opened)
    }

    /// Up to `n` bytes from the start of the file at `p`.
    pub fn head(&self, p: &Path, n: usize) -> std::io::Result<Vec<u8>> {
        let mut bytes = Vec::new();
        match self {
            Files::Host => {
                File::open(p).and_then(|f| f.take(n as u64).read_to_end(&mut bytes))?;
            }
            Files::Backend(b) => {
                let fd = open_fd(*b, p)?;
                bytes.resize(n, 0);
                let r = b.syscall(
                    libc::SYS_pread64 as u64,
                    &[fd as u64, bytes.as_mut_ptr() as u64, n as u64, 0, 0, 0],
                );
                b.syscall(libc::SYS_close as u64, &[fd as u64, 0, 0, 0, 0, 0]);
                bytes.truncate(io(r)? as usize);
            }
        }
        Ok(bytes)
    }

    /// The absolute path of `p` with no symbolic link, `.` or `..` left (`realpath`),
    /// resolved where the backend routes each step.
    pub fn canonical(&self, p: &Path) -> Option<PathBuf> {
        let b = match self {
            Files::Host => return std::fs::canonicalize(p).ok(),
            Files::Backend(b) => *b,
        };
        let mut start = Vec::new();
        if !p.as_os_str().as_bytes().starts_with(b"/") {
            let mut cwd = vec![0u8; 4096];
            let n = b.syscall(
                libc::SYS_getcwd as u64,
                &[cwd.as_mut_ptr() as u64, cwd.len() as u64, 0, 0, 0, 0],
            );
            if n <= 0 {
                return None;
            }
            cwd.truncate(cwd.iter().position(|&c| c == 0).unwrap_or(n as usize));
            start = cwd;
            start.push(b'/');
        }
        start.extend_from_slice(p.as_os_str().as_bytes());
        resolve_links(&start, |path| {
            let c = CString::new(path).ok()?;
            let mut buf = vec![0u8; 4096];
            let r = b.syscall(
                libc::SYS_readlinkat as u64,
                &[
                    libc::AT_FDCWD as u64,
                    c.as_ptr() as u64,
                    buf.as_mut_ptr() as u64,
                    buf.len() as u64,
                    0,
                    0,
                ],
            );
            if r == -i64::from(libc::EINVAL) {
                return Some(None);
            }
            if r < 0 {
                return None;
            }
            buf.truncate(r as usize);
            Some(Some(buf))
        })
        .map(|v| PathBuf::from(std::ffi::OsString::from_vec(v)))
    }
}

/// `openat(p, O_RDONLY | O_CLOEXEC)` where the backend routes `p`.
fn open_fd(b: &dyn Backend, p: &Path) -> std::io::Result<i32> {
    let c = c_path(p)?;
    let fd = io(b.syscall(
        libc::SYS_openat as u64,
        &[
            libc::AT_FDCWD as u64,
            c.as_ptr() as u64,
            (libc::O_RDONLY | libc::O_CLOEXEC) as u64,
            0,
            0,
            0,
        ],
    ))?;
    Ok(fd as i32)
}

/// `realpath` of the absolute path `path` given `readlink`: `Some(None)` for a
/// component that is not a link, `Some(Some(target))` for a link, `None` for an error.
fn resolve_links(
    path: &[u8],
    readlink: impl Fn(&[u8]) -> Option<Option<Vec<u8>>>,
) -> Option<Vec<u8>> {
    // Components still to walk, the next one last.
    let mut rest: Vec<Vec<u8>> = path
        .split(|&c| c == b'/')
        .rev()
        .map(<[u8]>::to_vec)
        .collect();
    let mut out: Vec<Vec<u8>> = Vec::new();
    let mut links = 0;
    let joined = |out: &[Vec<u8>]| {
        let mut p = Vec::new();
        for c in out {
            p.push(b'/');
            p.extend_from_slice(c);
        }
        if p.is_empty() {
            p.push(b'/');
        }
        p
    };
    while let Some(c) = rest.pop() {
        match c.as_slice() {
            b"" | b"." => continue,
            b".." => {
                out.pop();
                continue;
            }
            _ => {}
        }
        out.push(c);
        if let Some(target) = readlink(&joined(&out))? {
            links += 1;
            if links > 40 {
                return None;
            }
            out.pop();
            if target.starts_with(b"/") {
                out.clear();
            }
            rest.extend(target.split(|&c| c == b'/').rev().map(<[u8]>::to_vec));
        }
    }
    Some(joined(&out))
}

/// A memfd holding the whole of the backend's file `fd` (opened as `p`), named after
/// it (the name shows in `/proc/self/maps`).
fn copy_to_memfd(b: &dyn Backend, fd: i32, p: &Path) -> std::io::Result<File> {
    let name = p
        .file_name()
        .map(|n| n.as_bytes().iter().copied().take(200).collect::<Vec<u8>>())
        .unwrap_or_default();
    let name = CString::new(name).unwrap_or_default();
    // SAFETY: creating an anonymous memory file.
    let m = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
    if m < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the memfd just made is ours.
    let mut out = unsafe { File::from_raw_fd(m) };
    let mut buf = vec![0u8; CHUNK];
    let mut off = 0u64;
    loop {
        let n = io(b.syscall(
            libc::SYS_pread64 as u64,
            &[fd as u64, buf.as_mut_ptr() as u64, CHUNK as u64, off, 0, 0],
        ))? as usize;
        if n == 0 {
            break;
        }
        out.write_all(&buf[..n])?;
        off += n as u64;
    }
    out.rewind()?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_are_resolved() {
        // /a -> b (relative), /b/c -> /d, /d is a directory.
        let links = |p: &[u8]| -> Option<Option<Vec<u8>>> {
            Some(match p {
                b"/a" => Some(b"b".to_vec()),
                b"/b/c" => Some(b"/d".to_vec()),
                b"/loop" => Some(b"/loop".to_vec()),
                _ => None,
            })
        };
        assert_eq!(resolve_links(b"/a/c/x", links), Some(b"/d/x".to_vec()));
        assert_eq!(
            resolve_links(b"/a/./../b//e", links),
            Some(b"/b/e".to_vec())
        );
        assert_eq!(resolve_links(b"/", links), Some(b"/".to_vec()));
        assert_eq!(resolve_links(b"/loop/x", links), None);
        assert_eq!(resolve_links(b"/x", |_| None), None);
    }
}
