//! The receive thread: one host thread per device, moving frames from the
//! backend into the driver's receive buffers.
//!
//! It reads a frame only once the previous one is delivered, so frames
//! wait in the backend (the host's tap queue) while the driver has no
//! buffer, and the thread sleeps on the device's [`Wake`] until a notify
//! of the receive queue (or DRIVER_OK) says buffers are back.

use std::sync::Arc;

use super::backend::{poll_readable, Backend, Wake};
use super::device::{Net, MAX_FRAME, RX_QUEUE};
use crate::virtio::mmio::MmioTransport;

/// How long to wait for buffers before trying again anyway.
const RETRY_MS: i32 = 1000;

/// Runs the receive loop for `transport` until the device is stopped (the
/// kernel halts).
pub fn run(transport: Arc<MmioTransport<Net>>, backend: Arc<dyn Backend>, wake: Arc<Wake>) {
    let mut buf = vec![0u8; MAX_FRAME];
    let mut pending: Option<usize> = None;
    loop {
        if transport.with_device(Net::stopped) {
            return;
        }
        let len = match pending {
            Some(len) => len,
            None => {
                let ready = match poll_readable(&[backend.poll_fd(), wake.fd()], -1) {
                    Ok(r) => r,
                    Err(e) => {
                        report(&format!("poll: {e}"));
                        std::thread::sleep(std::time::Duration::from_millis(100));
                        continue;
                    }
                };
                if ready[1] {
                    wake.clear();
                }
                if !ready[0] {
                    continue;
                }
                match backend.recv(&mut buf) {
                    Ok(len) => len,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        report(&format!("read: {e}"));
                        std::thread::sleep(std::time::Duration::from_millis(100));
                        continue;
                    }
                }
            }
        };
        let frame = &buf[..len];
        let delivered =
            transport.run_queue(RX_QUEUE, |net, queue, mem| net.receive(queue, mem, frame));
        if delivered == Some(true) {
            pending = None;
        } else {
            // No buffer (or no driver yet): keep the frame and wait for a
            // notify. A notify since the last clear is still counted.
            pending = Some(len);
            if let Ok(r) = poll_readable(&[wake.fd()], RETRY_MS) {
                if r[0] {
                    wake.clear();
                }
            }
        }
    }
}

fn report(what: &str) {
    crate::host::print::write_stderr(format!("lkl: virtio-net receive: {what}\n").as_bytes());
}
