//! The virtio-net device (virtio 1.2, section 5.1): queue 0 receives,
//! queue 1 transmits, and every frame is prefixed with a 12-byte
//! `virtio_net_hdr_v1`.
//!
//! Offered: `VIRTIO_F_VERSION_1` and `VIRTIO_NET_F_MAC`, nothing else: no
//! checksum or segmentation offloads, no mergeable receive buffers, so the
//! header is all zeros (but `num_buffers`, 1) and a received frame must
//! fit one chain.
//!
//! Transmission runs on the notifying thread: each chain's readable bytes,
//! less the header, are one frame for the backend. Reception is driven
//! from the host by the receive thread ([`super::rx`]), through
//! [`Net::receive`]; a notify of the receive queue only wakes that thread.

use std::sync::Arc;

use lkl_sys as sys;

use super::backend::{Backend, Wake};
use crate::virtio::memory::{read_bytes, write_bytes, GuestMemory};
use crate::virtio::mmio::VirtioDevice;
use crate::virtio::queue::{Descriptor, Queue};
use crate::virtio::QueueError;

/// The header before every frame once `VIRTIO_F_VERSION_1` is negotiated.
pub const HDR_LEN: usize = 12;
/// The queue size offered, for both queues.
pub const QUEUE_SIZE: u16 = 256;
/// The receive queue.
pub const RX_QUEUE: usize = 0;
/// The transmit queue.
pub const TX_QUEUE: usize = 1;
/// The largest frame the backends exchange (a 64 KiB packet and its
/// Ethernet and VLAN headers).
pub const MAX_FRAME: usize = 65536 + 18;

/// Frame counters.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct NetStats {
    /// Frames given to the driver.
    pub rx_frames: u64,
    /// Bytes of those frames (without the header).
    pub rx_bytes: u64,
    /// Frames dropped because they did not fit the driver's buffer.
    pub rx_dropped: u64,
    /// Frames sent to the backend.
    pub tx_frames: u64,
    /// Bytes of those frames (without the header).
    pub tx_bytes: u64,
    /// Chains not sent: shorter than the header, or the backend failed.
    pub tx_errors: u64,
}

/// A virtio-net device over a [`Backend`].
pub struct Net {
    mac: [u8; 6],
    backend: Arc<dyn Backend>,
    rx_wake: Arc<Wake>,
    tx_buf: Vec<u8>,
    stats: NetStats,
    /// Set when the kernel halts: its memory is about to go away.
    stopped: bool,
}

impl Net {
    /// A device with address `mac` sending to `backend`; a notify of the
    /// receive queue signals `rx_wake`.
    pub fn new(mac: [u8; 6], backend: Arc<dyn Backend>, rx_wake: Arc<Wake>) -> Net {
        Net {
            mac,
            backend,
            rx_wake,
            tx_buf: Vec::with_capacity(MAX_FRAME + HDR_LEN),
            stats: NetStats::default(),
            stopped: false,
        }
    }

    /// The frame counters.
    pub fn stats(&self) -> NetStats {
        self.stats
    }

    /// Stops the device for good, before the kernel's memory is freed:
    /// neither queue is touched again, and the receive thread is woken to
    /// see it and end.
    pub fn stop(&mut self) {
        self.stopped = true;
        self.rx_wake.signal();
    }

    /// Whether [`Net::stop`] was called.
    pub fn stopped(&self) -> bool {
        self.stopped
    }

    /// The MAC address.
    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }

    /// Puts `frame` in the next receive buffer. Returns `Ok(false)` when the
    /// driver has none available (the frame is kept by the caller), and
    /// `Ok(true)` once a buffer went to the used ring: with the frame, or
    /// empty when the frame did not fit (it is then dropped and counted).
    ///
    /// # Errors
    /// A malformed queue.
    pub fn receive(
        &mut self,
        queue: &mut Queue,
        mem: &dyn GuestMemory,
        frame: &[u8],
    ) -> Result<bool, QueueError> {
        if self.stopped {
            return Ok(false);
        }
        let Some(chain) = queue.pop(mem)? else {
            return Ok(false);
        };
        let bufs: Vec<Descriptor> = chain.writable().copied().collect();
        let room: u64 = bufs.iter().map(|d| u64::from(d.len)).sum();
        let total = HDR_LEN + frame.len();
        if (total as u64) > room {
            self.stats.rx_dropped += 1;
            queue.add_used(mem, chain.head, 0)?;
            return Ok(true);
        }
        let mut hdr = [0u8; HDR_LEN];
        // num_buffers: always one without VIRTIO_NET_F_MRG_RXBUF.
        hdr[10..12].copy_from_slice(&1u16.to_le_bytes());
        let written =
            scatter(mem, &bufs, 0, &hdr).and_then(|()| scatter(mem, &bufs, HDR_LEN, frame));
        match written {
            Ok(()) => {
                self.stats.rx_frames += 1;
                self.stats.rx_bytes += frame.len() as u64;
                queue.add_used(mem, chain.head, total as u32)?;
            }
            Err(_) => {
                self.stats.rx_dropped += 1;
                queue.add_used(mem, chain.head, 0)?;
            }
        }
        Ok(true)
    }

    /// Sends every chain the driver made available on the transmit queue.
    fn transmit(&mut self, queue: &mut Queue, mem: &dyn GuestMemory) -> Result<bool, QueueError> {
        let mut used = false;
        while let Some(chain) = queue.pop(mem)? {
            self.tx_buf.clear();
            let mut ok = true;
            for d in chain.readable() {
                let len = d.len as usize;
                if self.tx_buf.len() + len > MAX_FRAME + HDR_LEN {
                    ok = false;
                    break;
                }
                let at = self.tx_buf.len();
                self.tx_buf.resize(at + len, 0);
                if read_bytes(mem, d.addr, &mut self.tx_buf[at..]).is_err() {
                    ok = false;
                    break;
                }
            }
            ok &= self.tx_buf.len() > HDR_LEN;
            if ok && self.backend.send(&self.tx_buf[HDR_LEN..]).is_ok() {
                self.stats.tx_frames += 1;
                self.stats.tx_bytes += (self.tx_buf.len() - HDR_LEN) as u64;
            } else {
                self.stats.tx_errors += 1;
            }
            queue.add_used(mem, chain.head, 0)?;
            used = true;
        }
        Ok(used)
    }
}

/// Writes `data` into the buffers `bufs`, seen as one, from byte `start`.
fn scatter(
    mem: &dyn GuestMemory,
    bufs: &[Descriptor],
    start: usize,
    mut data: &[u8],
) -> Result<(), QueueError> {
    let mut skip = start as u64;
    for d in bufs {
        if data.is_empty() {
            break;
        }
        let len = u64::from(d.len);
        if skip >= len {
            skip -= len;
            continue;
        }
        let n = ((len - skip) as usize).min(data.len());
        write_bytes(mem, d.addr + skip, &data[..n])?;
        data = &data[n..];
        skip = 0;
    }
    Ok(())
}

impl VirtioDevice for Net {
    fn device_id(&self) -> u32 {
        sys::LKL_VIRTIO_ID_NET
    }

    fn features(&self) -> u64 {
        1u64 << sys::LKL_VIRTIO_F_VERSION_1 | 1 << sys::LKL_VIRTIO_NET_F_MAC
    }

    fn queue_max_sizes(&self) -> Vec<u16> {
        vec![QUEUE_SIZE, QUEUE_SIZE]
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        // Only `mac` is meaningful; the rest of the config reads as zero.
        for (i, b) in data.iter_mut().enumerate() {
            let at = (offset as usize).saturating_add(i);
            *b = self.mac.get(at).copied().unwrap_or(0);
        }
    }

    fn write_config(&mut self, _offset: u64, _data: &[u8]) {
        // Nothing writable is offered (no VIRTIO_NET_F_CTRL_MAC_ADDR).
    }

    fn activate(&mut self, _features: u64) {
        // The receive thread may hold a frame for the new buffers.
        self.rx_wake.signal();
    }

    fn reset(&mut self) {}

    fn process_queue(
        &mut self,
        index: usize,
        queue: &mut Queue,
        mem: &dyn GuestMemory,
    ) -> Result<bool, QueueError> {
        match index {
            _ if self.stopped => Ok(false),
            RX_QUEUE => {
                self.rx_wake.signal();
                Ok(false)
            }
            TX_QUEUE => self.transmit(queue, mem),
            _ => Ok(false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::virtio::memory::read_bytes;
    use crate::virtio::queue::tests::MockDriver;
    use std::io;
    use std::os::fd::RawFd;
    use std::sync::Mutex;

    /// Records what is sent; never has anything to receive.
    #[derive(Default)]
    struct Sink(Mutex<Vec<Vec<u8>>>);

    impl Backend for Sink {
        fn send(&self, frame: &[u8]) -> io::Result<()> {
            self.0.lock().unwrap().push(frame.to_vec());
            Ok(())
        }
        fn recv(&self, _buf: &mut [u8]) -> io::Result<usize> {
            Err(io::ErrorKind::WouldBlock.into())
        }
        fn poll_fd(&self) -> RawFd {
            -1
        }
    }

    const MAC: [u8; 6] = [2, 0, 0, 0, 0, 9];

    fn net() -> (Net, Arc<Sink>) {
        let sink = Arc::new(Sink::default());
        let net = Net::new(MAC, sink.clone(), Arc::new(Wake::new().unwrap()));
        (net, sink)
    }

    #[test]
    fn offers_version_1_and_mac_and_reports_the_mac() {
        let (n, _) = net();
        assert_eq!(
            n.features(),
            1 << sys::LKL_VIRTIO_F_VERSION_1 | 1 << sys::LKL_VIRTIO_NET_F_MAC
        );
        assert_eq!(n.queue_max_sizes(), vec![QUEUE_SIZE, QUEUE_SIZE]);
        let mut b = [0xffu8; 8];
        n.read_config(0, &mut b);
        assert_eq!(b, [2, 0, 0, 0, 0, 9, 0, 0]);
        let mut b = [0u8; 2];
        n.read_config(4, &mut b);
        assert_eq!(b, [0, 9]);
    }

    #[test]
    fn receive_writes_the_header_then_the_frame_across_buffers() {
        let (mut n, _) = net();
        let mut d = MockDriver::new(8);
        let mut q = d.queue();
        let mem = d.mem.clone();
        assert!(
            !n.receive(&mut q, &*mem, b"early").unwrap(),
            "no buffer yet"
        );
        // The header and the frame's start split across two buffers.
        let (a, b) = (d.alloc(16), d.alloc(64));
        let head = d.add_chain(&[(a, 16, true), (b, 64, true)]);
        let frame: Vec<u8> = (0..60u8).collect();
        assert!(n.receive(&mut q, &*mem, &frame).unwrap());
        assert_eq!(d.used_elem(0), (u32::from(head), (HDR_LEN + 60) as u32));
        let mut got = [0u8; 16];
        read_bytes(&*mem, a, &mut got).unwrap();
        assert_eq!(got[..HDR_LEN], [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0]);
        assert_eq!(got[HDR_LEN..], frame[..4]);
        let mut rest = [0u8; 56];
        read_bytes(&*mem, b, &mut rest).unwrap();
        assert_eq!(rest[..], frame[4..]);
        assert_eq!(n.stats().rx_frames, 1);
        assert_eq!(n.stats().rx_bytes, 60);
    }

    #[test]
    fn a_stopped_device_touches_no_queue() {
        let (mut n, sink) = net();
        let mut d = MockDriver::new(8);
        let mut q = d.queue();
        let mem = d.mem.clone();
        let a = d.alloc(64);
        d.add_chain(&[(a, 64, true)]);
        n.stop();
        assert!(n.stopped());
        assert!(!n.receive(&mut q, &*mem, b"late").unwrap());
        assert!(!n.process_queue(TX_QUEUE, &mut q, &*mem).unwrap());
        assert_eq!(d.used_idx(), 0);
        assert!(sink.0.lock().unwrap().is_empty());
    }

    #[test]
    fn a_frame_too_big_for_the_buffer_is_dropped_and_the_buffer_returned() {
        let (mut n, _) = net();
        let mut d = MockDriver::new(8);
        let mut q = d.queue();
        let mem = d.mem.clone();
        let a = d.alloc(32);
        let head = d.add_chain(&[(a, 32, true)]);
        assert!(n.receive(&mut q, &*mem, &[7u8; 21]).unwrap());
        assert_eq!(d.used_elem(0), (u32::from(head), 0));
        assert_eq!(n.stats().rx_dropped, 1);
        assert_eq!(n.stats().rx_frames, 0);
    }

    #[test]
    fn transmit_strips_the_header_and_sends_each_chain() {
        let (mut n, sink) = net();
        let mut d = MockDriver::new(8);
        let mut q = d.queue();
        let mem = d.mem.clone();
        // Header alone, then the frame in a second buffer (as Linux does
        // with scatter-gather), and one chain in a single buffer.
        let (h, f) = (d.alloc(12), d.alloc(20));
        write_bytes(&*mem, h, &[0u8; 12]).unwrap();
        write_bytes(&*mem, f, &[5u8; 20]).unwrap();
        let c1 = d.add_chain(&[(h, 12, false), (f, 20, false)]);
        let one = d.alloc(12 + 3);
        write_bytes(&*mem, one, &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3]).unwrap();
        let c2 = d.add_chain(&[(one, 15, false)]);
        // Only a header: nothing to send, but the chain is returned.
        let c3 = d.add_chain(&[(h, 12, false)]);
        assert!(n.process_queue(TX_QUEUE, &mut q, &*mem).unwrap());
        assert_eq!(*sink.0.lock().unwrap(), vec![vec![5u8; 20], vec![1, 2, 3]]);
        assert_eq!(d.used_idx(), 3);
        assert_eq!(d.used_elem(0), (u32::from(c1), 0));
        assert_eq!(d.used_elem(1), (u32::from(c2), 0));
        assert_eq!(d.used_elem(2), (u32::from(c3), 0));
        let st = n.stats();
        assert_eq!((st.tx_frames, st.tx_bytes, st.tx_errors), (2, 23, 1));
    }

    #[test]
    fn a_receive_notify_wakes_the_receive_thread() {
        let (mut n, _) = net();
        let d = MockDriver::new(8);
        let mut q = d.queue();
        let mem = d.mem.clone();
        let wake = n.rx_wake.clone();
        assert_eq!(
            super::super::backend::poll_readable(&[wake.fd()], 0).unwrap(),
            [false]
        );
        assert!(!n.process_queue(RX_QUEUE, &mut q, &*mem).unwrap());
        assert_eq!(
            super::super::backend::poll_readable(&[wake.fd()], 0).unwrap(),
            [true]
        );
        wake.clear();
        assert_eq!(
            super::super::backend::poll_readable(&[wake.fd()], 0).unwrap(),
            [false]
        );
    }
}
