//! The file behind an executable mapping, as the interposer reads it: a host fd, or an
//! fd of the backend's ([`crate::Backend::owns_fd`]: an LKL file offered to the program
//! as a placeholder the host cannot read), whose bytes and identity come through the
//! backend. Raw calls into stack buffers only: this runs in the hook.

use crate::{sys, syscall6, Backend};

/// A file to read code sections and the site cache's identity from.
#[derive(Clone, Copy)]
pub(crate) struct MapFile {
    /// The program's (or the loader's) fd.
    pub(crate) fd: i32,
    /// The backend that owns `fd`, `None` for a host fd.
    via: Option<&'static dyn Backend>,
}

impl MapFile {
    /// `fd`, read through the backend when the backend owns it.
    pub(crate) fn of(fd: i32) -> MapFile {
        let via = crate::BACKEND
            .get()
            .copied()
            .filter(|b| fd >= 0 && b.owns_fd(fd));
        MapFile { fd, via }
    }

    /// True when the file is the backend's, not the host's.
    pub(crate) fn is_backend(&self) -> bool {
        self.via.is_some()
    }

    /// `pread64` into `buf` at `off`: the raw result.
    pub(crate) fn pread(&self, buf: &mut [u8], off: u64) -> i64 {
        match self.via {
            None => sys::pread(self.fd, buf, off),
            Some(b) => b.syscall(
                sys::NR_PREAD64,
                &[
                    self.fd as u64,
                    buf.as_mut_ptr() as u64,
                    buf.len() as u64,
                    off,
                    0,
                    0,
                ],
            ),
        }
    }

    /// `fstat` into `st` (x86-64's 144-byte `struct stat`): the raw result.
    pub(crate) fn fstat(&self, st: &mut [u64; 18]) -> i64 {
        let args = [self.fd as u64, st.as_mut_ptr() as u64, 0, 0, 0, 0];
        match self.via {
            // SAFETY: fstat into our 144-byte buffer.
            None => unsafe { syscall6(sys::NR_FSTAT, args) },
            Some(b) => b.syscall(sys::NR_FSTAT, &args),
        }
    }
}
