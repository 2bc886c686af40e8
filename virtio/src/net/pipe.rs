//! The pipe backend: frames come in from one FIFO (or other fd path) and
//! go out to another, for tests between two processes (each one's `rx` is
//! the other's `tx`).
//!
//! As upstream LKL's pipe backend (`tools/lkl/lib/virtio_net_pipe.c`),
//! both paths are opened `O_RDWR | O_NONBLOCK` (so neither side waits for
//! the other), and every frame travels after the 12-byte
//! `virtio_net_hdr_v1`, offloads or not, so both ends agree. A FIFO is a
//! byte stream, though: two frames written before a read would run
//! together. So the writing end is put in packet mode (`O_DIRECT` on a
//! pipe, Linux 3.4, pipe(7)): each `write` of up to `PIPE_BUF` (4096)
//! bytes is one packet and each `read` returns one. Frames (with their
//! header) longer than that would be split, so they are refused: the
//! largest frame is 4084 bytes, and no segmentation offload is offered.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::FileTypeExt;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::Relaxed;

use super::backend::{iov_mut, readv, writev_all, Backend};
use super::offload::{self, HDR_LEN};
use super::BackendError;

/// The largest packet a pipe keeps whole (`PIPE_BUF`).
const PACKET: usize = 4096;
/// The pipe size asked for: 256 packets.
const PIPE_SIZE: libc::c_int = 1 << 20;
/// How long a send waits for room in a full pipe before the frame is
/// dropped (the reader is another process, which may be slow to start);
/// after a wait in vain, sends do not wait until one gets through.
const FULL_WAIT_MS: i32 = 100;

/// Two FIFOs, one each way.
#[derive(Debug)]
pub struct Pipe {
    rx: File,
    tx: File,
    /// A send found the pipe full and waited in vain: the reader is gone
    /// or stuck, so sends no longer wait until one gets through.
    stalled: AtomicBool,
}

impl Pipe {
    /// Opens `rx` (frames in) and `tx` (frames out); each must exist
    /// (`mkfifo PATH`).
    ///
    /// # Errors
    /// [`BackendError::NoSuchPipe`] for a missing path, [`BackendError::Pipe`] if
    /// one cannot be opened or `tx` cannot be put in packet mode (not a
    /// FIFO).
    pub fn open(rx: &Path, tx: &Path) -> Result<Pipe, BackendError> {
        let rx_file = open(rx)?;
        let tx_file = open(tx)?;
        let err = |source| BackendError::Pipe {
            path: tx.to_owned(),
            source,
        };
        let fd = tx_file.as_raw_fd();
        // SAFETY: F_GETFL/F_SETFL on a descriptor we own.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
        // SAFETY: as above; O_DIRECT on a pipe selects packet mode.
        if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_DIRECT) } < 0 {
            return Err(err(io::Error::last_os_error()));
        }
        // Each packet takes a whole slot of the pipe (16 by default): make
        // room for a window of frames where the host allows it.
        for f in [&rx_file, &tx_file] {
            // SAFETY: F_SETPIPE_SZ on a descriptor we own; failure (above
            // fs.pipe-max-size) leaves the pipe as it was.
            unsafe { libc::fcntl(f.as_raw_fd(), libc::F_SETPIPE_SZ, PIPE_SIZE) };
        }
        Ok(Pipe {
            rx: rx_file,
            tx: tx_file,
            stalled: AtomicBool::new(false),
        })
    }
}

fn open(path: &Path) -> Result<File, BackendError> {
    let err = |source| BackendError::Pipe {
        path: path.to_owned(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(|e| {
        if e.kind() == io::ErrorKind::NotFound {
            BackendError::NoSuchPipe {
                path: path.to_owned(),
            }
        } else {
            err(e)
        }
    })?;
    if !meta.file_type().is_fifo() {
        return Err(err(io::Error::other(
            "not a FIFO (frames need one: create it with `mkfifo`)",
        )));
    }
    super::tap::open_rw(path).map_err(err)
}

impl Backend for Pipe {
    fn send(&self, iovs: &mut [libc::iovec]) -> io::Result<()> {
        let len: usize = iovs.iter().map(|v| v.iov_len).sum();
        if len > PACKET {
            return Err(io::Error::from_raw_os_error(libc::EMSGSIZE));
        }
        let fd = self.tx.as_raw_fd();
        let r = match writev_all(fd, iovs) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && !self.stalled.load(Relaxed) => {
                // Full: wait for the reader, as a NIC's ring would.
                let mut p = libc::pollfd {
                    fd,
                    events: libc::POLLOUT,
                    revents: 0,
                };
                // SAFETY: one live pollfd.
                unsafe { libc::poll(&mut p, 1, FULL_WAIT_MS) };
                writev_all(fd, iovs)
            }
            r => r,
        };
        // The kernel's thread waits at most once for a reader that is gone.
        self.stalled.store(r.is_err(), Relaxed);
        r
    }

    fn recv(&self, hdr: &mut [u8; HDR_LEN], frame: &mut [u8]) -> io::Result<usize> {
        let n = readv(self.rx.as_raw_fd(), &mut [iov_mut(hdr), iov_mut(frame)])?;
        n.checked_sub(HDR_LEN)
            .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))
    }

    fn recv_iov(&self, iovs: &mut [libc::iovec]) -> Option<io::Result<usize>> {
        Some(readv(self.rx.as_raw_fd(), iovs))
    }

    fn poll_fd(&self) -> RawFd {
        self.rx.as_raw_fd()
    }

    fn vnet_hdr(&self) -> bool {
        true
    }

    fn offloads(&self) -> u64 {
        offload::CSUM | offload::GUEST_CSUM | offload::MRG_RXBUF
    }

    fn max_frame(&self) -> usize {
        PACKET - HDR_LEN
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::backend::iov;

    fn fifo(path: &Path) {
        let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a NUL-terminated path alive across the call.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    }

    #[test]
    fn frames_keep_their_boundaries_across_a_fifo_pair() {
        let dir = std::env::temp_dir().join(format!("lkl-pipe-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (a, b) = (dir.join("a"), dir.join("b"));
        fifo(&a);
        fifo(&b);
        let one = Pipe::open(&a, &b).unwrap();
        let two = Pipe::open(&b, &a).unwrap();
        // Three frames written before any read.
        let frames: [Vec<u8>; 3] = [vec![1; 60], vec![2; 1514], vec![3; 4084]];
        for (k, f) in frames.iter().enumerate() {
            let hdr = [k as u8; HDR_LEN];
            one.send(&mut [iov(&hdr), iov(f)]).unwrap();
        }
        // Nobody reads: the pipe fills, one send waits, later ones do not.
        let filler = vec![5u8; 1000];
        let mut sent = 3;
        while one.send(&mut [iov(&[0u8; HDR_LEN]), iov(&filler)]).is_ok() {
            sent += 1;
        }
        let start = std::time::Instant::now();
        assert!(one.send(&mut [iov(&[0u8; HDR_LEN]), iov(&filler)]).is_err());
        assert!(start.elapsed() < std::time::Duration::from_millis(50));
        let too_big = vec![4u8; 4085];
        let hdr = [0u8; HDR_LEN];
        assert!(one.send(&mut [iov(&hdr), iov(&too_big)]).is_err());
        let mut buf = vec![0u8; 65536];
        for (k, f) in frames.iter().enumerate() {
            let mut hdr = [0u8; HDR_LEN];
            let n = two.recv(&mut hdr, &mut buf).unwrap();
            assert_eq!(hdr, [k as u8; HDR_LEN]);
            assert_eq!(&buf[..n], &f[..]);
        }
        for _ in 3..sent {
            let mut hdr = [0u8; HDR_LEN];
            assert_eq!(two.recv(&mut hdr, &mut buf).unwrap(), 1000);
        }
        let mut hdr = [0u8; HDR_LEN];
        let e = two.recv(&mut hdr, &mut buf).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        // Room again: sends go through, and wait again when full.
        assert!(one.send(&mut [iov(&[0u8; HDR_LEN]), iov(&filler)]).is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_missing_fifo_is_named_with_how_to_create_it() {
        let e = Pipe::open(Path::new("/nonexistent/rx"), Path::new("/nonexistent/tx")).unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("/nonexistent/rx") && text.contains("mkfifo"),
            "{text}"
        );
    }
}
