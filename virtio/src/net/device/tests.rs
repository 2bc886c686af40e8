//! The device against a mock driver and a recording backend.

use super::*;
use crate::memory::{read_bytes, write_bytes};
use crate::net::backend::poll_readable;
use crate::net::coalesce;
use crate::net::rx_queue::{Delivery, Direct};
use crate::queue::tests::MockDriver;
use std::collections::VecDeque;
use std::io;
use std::os::fd::RawFd;

/// Records what is sent; never has anything to receive.
struct Sink {
    sent: Mutex<Vec<(Vec<u8>, Vec<u8>)>>,
    vnet_hdr: bool,
}

impl Backend for Sink {
    fn send(&self, iovs: &mut [libc::iovec]) -> io::Result<()> {
        let bytes = |v: &libc::iovec| {
            // SAFETY: the device built these iovecs over live memory.
            unsafe { std::slice::from_raw_parts(v.iov_base as *const u8, v.iov_len) }.to_vec()
        };
        let hdr = bytes(&iovs[0]);
        let frame = iovs[1..].iter().flat_map(bytes).collect();
        self.sent.lock().unwrap().push((hdr, frame));
        Ok(())
    }
    fn recv(&self, _hdr: &mut [u8; HDR_LEN], _buf: &mut [u8]) -> io::Result<usize> {
        Err(io::ErrorKind::WouldBlock.into())
    }
    fn poll_fd(&self) -> RawFd {
        -1
    }
    fn vnet_hdr(&self) -> bool {
        self.vnet_hdr
    }
    fn offloads(&self) -> u64 {
        if self.vnet_hdr {
            offload::ALL
        } else {
            0
        }
    }
}

const MAC: [u8; 6] = [2, 0, 0, 0, 0, 9];
const BASE_FEATURES: u64 = 1 << spec::VIRTIO_F_VERSION_1
    | 1 << spec::VIRTIO_NET_F_MAC
    | 1 << spec::VIRTIO_RING_F_EVENT_IDX;

fn opts(offload: u64) -> crate::net::NetOptions {
    crate::net::NetOptions {
        offload,
        ..Default::default()
    }
}

fn net(d: &MockDriver, offload: u64) -> (Net, Arc<Sink>) {
    net_with(d, &opts(offload))
}

fn net_with(d: &MockDriver, o: &crate::net::NetOptions) -> (Net, Arc<Sink>) {
    let sink = Arc::new(Sink {
        sent: Mutex::new(Vec::new()),
        vnet_hdr: o.offload != 0,
    });
    let net = Net::new(MAC, sink.clone(), d.mem.clone(), o).unwrap();
    (net, sink)
}

/// The device after DRIVER_OK with `features`, both queues live.
fn live(d: &MockDriver, offload: u64, features: u64) -> (Net, Arc<Sink>) {
    let (mut n, sink) = net(d, offload);
    n.activate_queues(features, &[d.queue(), d.queue()]);
    (n, sink)
}

fn deliver(n: &Net, frame: &[u8]) -> Delivery {
    let sh = n.shared();
    let mut hdr = [0u8; HDR_LEN];
    let mut f = frame.to_vec();
    let mut rx = sh.rx();
    rx.deliver(&*sh.mem, &mut hdr, &mut f, &sh.stats).unwrap()
}

#[test]
fn offers_version_1_mac_event_idx_and_the_offloads_the_backend_takes() {
    let d = MockDriver::new(8);
    let (n, _) = net(&d, 0);
    assert_eq!(n.features(), BASE_FEATURES);
    assert_eq!(n.queue_max_sizes(), vec![QUEUE_SIZE, QUEUE_SIZE]);
    let mut b = [0xffu8; 8];
    n.read_config(0, &mut b);
    assert_eq!(b, [2, 0, 0, 0, 0, 9, 0, 0]);
    let (n, _) = net(&d, 0xc803);
    assert_eq!(n.features(), BASE_FEATURES | 0xc803);
    // TSO without its checksum offload is not offered.
    let (n, _) = net(&d, offload::HOST_TSO4 | offload::MRG_RXBUF);
    assert_eq!(n.features(), BASE_FEATURES | offload::MRG_RXBUF);
}

#[test]
fn receive_writes_the_header_then_the_frame_across_buffers() {
    let mut d = MockDriver::new(8);
    let (n, _) = net(&d, 0);
    assert_eq!(deliver(&n, b"early"), Delivery::NoBuffer, "no driver yet");
    let (n, _) = live(&d, 0, BASE_FEATURES);
    assert_eq!(deliver(&n, b"early"), Delivery::NoBuffer, "no buffer yet");
    // The header and the frame's start split across two buffers.
    let (a, b) = (d.alloc(16), d.alloc(64));
    let head = d.add_chain(&[(a, 16, true), (b, 64, true)]);
    let frame: Vec<u8> = (0..60u8).collect();
    assert_eq!(deliver(&n, &frame), Delivery::Delivered);
    assert_eq!(d.used_elem(0), (u32::from(head), (HDR_LEN + 60) as u32));
    let mut got = [0u8; 16];
    read_bytes(&*d.mem, a, &mut got).unwrap();
    assert_eq!(got[..HDR_LEN], [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0]);
    assert_eq!(got[HDR_LEN..], frame[..4]);
    let mut rest = [0u8; 56];
    read_bytes(&*d.mem, b, &mut rest).unwrap();
    assert_eq!(rest[..], frame[4..]);
    assert_eq!((n.stats().rx_frames, n.stats().rx_bytes), (1, 60));
}

#[test]
fn mergeable_buffers_take_as_many_chains_as_the_frame_needs() {
    let mut d = MockDriver::new(16);
    let features = BASE_FEATURES | offload::MRG_RXBUF;
    let (n, _) = live(&d, offload::MRG_RXBUF, features);
    let bufs: Vec<u64> = (0..3).map(|_| d.alloc(100)).collect();
    // Two chains are not enough for 12 + 250 bytes: held, not used.
    let heads: Vec<u16> = bufs[..2]
        .iter()
        .map(|&a| d.add_chain(&[(a, 100, true)]))
        .collect();
    let frame: Vec<u8> = (0..250u32).map(|i| i as u8).collect();
    assert_eq!(deliver(&n, &frame), Delivery::NoBuffer);
    assert_eq!(d.used_idx(), 0);
    let last = d.add_chain(&[(bufs[2], 100, true)]);
    assert_eq!(deliver(&n, &frame), Delivery::Delivered);
    assert_eq!(d.used_idx(), 3);
    assert_eq!(d.used_elem(0), (u32::from(heads[0]), 100));
    assert_eq!(d.used_elem(1), (u32::from(heads[1]), 100));
    assert_eq!(d.used_elem(2), (u32::from(last), 62));
    let mut all = vec![0u8; 300];
    for (k, &a) in bufs.iter().enumerate() {
        read_bytes(&*d.mem, a, &mut all[k * 100..k * 100 + 100]).unwrap();
    }
    // num_buffers = 3 in the first chain's header.
    assert_eq!(all[10..12], [3, 0]);
    assert_eq!(all[HDR_LEN..HDR_LEN + 250], frame[..]);
}

/// Gives frames (after `host_hdr` bytes of header) to direct reads.
struct Source {
    frames: Mutex<VecDeque<Vec<u8>>>,
    host_hdr: usize,
    max: usize,
}

impl Backend for Source {
    fn send(&self, _iovs: &mut [libc::iovec]) -> io::Result<()> {
        Ok(())
    }
    fn recv(&self, _hdr: &mut [u8; HDR_LEN], _buf: &mut [u8]) -> io::Result<usize> {
        Err(io::ErrorKind::WouldBlock.into())
    }
    fn recv_iov(&self, iovs: &mut [libc::iovec]) -> Option<io::Result<usize>> {
        let Some(f) = self.frames.lock().unwrap().pop_front() else {
            return Some(Err(io::ErrorKind::WouldBlock.into()));
        };
        // As readv: fill the iovecs in order, as far as they go.
        let mut at = 0;
        for v in iovs.iter() {
            let n = v.iov_len.min(f.len() - at);
            // SAFETY: the device built these iovecs over live memory.
            unsafe { std::ptr::copy_nonoverlapping(f[at..].as_ptr(), v.iov_base.cast(), n) };
            at += n;
        }
        Some(Ok(at))
    }
    fn poll_fd(&self) -> RawFd {
        -1
    }
    fn vnet_hdr(&self) -> bool {
        self.host_hdr > 0
    }
    fn host_hdr_len(&self) -> usize {
        self.host_hdr
    }
    fn offloads(&self) -> u64 {
        offload::ALL
    }
    fn max_frame(&self) -> usize {
        self.max
    }
}

fn direct(n: &Net, src: &Source) -> Direct {
    let sh = n.shared();
    let mut iovs = Vec::new();
    let mut rx = sh.rx();
    rx.receive_direct(&*sh.mem, src, &mut iovs, &sh.stats)
        .unwrap()
}

/// A TCP/IPv4 frame as a tap hands it over (virtio-net header first):
/// `payload` bytes at `seq`, segments of `gso` (0: one segment), from
/// source port `port`; the payload bytes count up from `seq`.
fn tcp_frame(seq: u32, payload: usize, gso: u16, port: u8) -> Vec<u8> {
    let (mut f, _) = super::super::coalesce::tests::head(seq, payload, gso);
    f[HDR_LEN + 14 + 20 + 1] = port;
    f.extend((0..payload).map(|i| (seq as usize + i) as u8));
    f
}

/// What the driver got in used entries `from..from + n`, buffers in
/// `bufs` by chain head, concatenated.
fn used_bytes(d: &MockDriver, bufs: &[u64], from: u16, n: u16) -> Vec<u8> {
    let mut out = Vec::new();
    for k in from..from + n {
        let (head, len) = d.used_elem(k);
        let mut b = vec![0u8; len as usize];
        read_bytes(&*d.mem, bufs[head as usize], &mut b).unwrap();
        out.extend(b);
    }
    out
}

#[test]
fn queued_segments_of_one_flow_reach_the_driver_as_one() {
    let mut d = MockDriver::new(32);
    let offloads = offload::MRG_RXBUF | offload::GUEST_CSUM | offload::GUEST_TSO4;
    let (n, _) = live(&d, offloads, BASE_FEATURES | offloads);
    let bufs: Vec<u64> = (0..20).map(|_| d.alloc(256)).collect();
    for &b in &bufs {
        d.add_chain(&[(b, 256, true)]);
    }
    // Two segments of one flow, then one of another flow.
    let (a, b, c) = (
        tcp_frame(1000, 200, 100, 1),
        tcp_frame(1200, 300, 100, 1),
        tcp_frame(1500, 100, 100, 2),
    );
    let src = Source {
        frames: Mutex::new(VecDeque::from([a.clone(), b.clone(), c.clone()])),
        host_hdr: HDR_LEN,
        max: 600,
    };
    assert!(matches!(direct(&n, &src), Direct::Delivered));
    // a's two chains (256 + 22 bytes), then b's payload: its first
    // chain's headers were covered by its payload (256 - 78 bytes).
    assert_eq!(d.used_idx(), 4);
    let lens: Vec<u32> = (0..4).map(|k| d.used_elem(k).1).collect();
    assert_eq!(lens, [256, 22, 178, 122]);
    let got = used_bytes(&d, &bufs, 0, 4);
    let hl = coalesce::HEAD;
    assert_eq!(got.len(), hl + 500);
    assert_eq!(got[hl..hl + 200], a[hl..]);
    assert_eq!(got[hl + 200..], b[hl..]);
    let seg = coalesce::segment(&got[..hl], got.len() - HDR_LEN).unwrap();
    assert_eq!((seg.payload, seg.mss, seg.gso), (500, 100, true));
    assert_eq!(got[10..12], [4, 0], "num_buffers");
    let s = n.stats();
    assert_eq!((s.rx_frames, s.rx_coalesced, s.rx_bytes), (1, 1, 66 + 500));
    // The other flow's segment was read but not joined: it goes next,
    // as it came.
    assert!(matches!(direct(&n, &src), Direct::Delivered));
    assert_eq!(d.used_idx(), 5);
    let mut c_out = c;
    c_out[10] = 1; // num_buffers
    assert_eq!(used_bytes(&d, &bufs, 4, 1), c_out);
    assert!(matches!(direct(&n, &src), Direct::Empty));
}

#[test]
fn single_segments_and_devices_without_coalescing_are_not_joined() {
    let offloads = offload::MRG_RXBUF | offload::GUEST_CSUM | offload::GUEST_TSO4;
    for (single, coalesce) in [(true, true), (false, false)] {
        let mut d = MockDriver::new(32);
        let sink = Arc::new(Source {
            frames: Mutex::new(VecDeque::new()),
            host_hdr: HDR_LEN,
            max: 600,
        });
        let o = crate::net::NetOptions {
            coalesce,
            ..opts(offloads)
        };
        let mut n = Net::new(MAC, sink, d.mem.clone(), &o).unwrap();
        n.activate_queues(BASE_FEATURES | offloads, &[d.queue(), d.queue()]);
        for _ in 0..8 {
            let b = d.alloc(256);
            d.add_chain(&[(b, 256, true)]);
        }
        let first = if single {
            tcp_frame(1000, 100, 0, 1) // a request: never waits for more
        } else {
            tcp_frame(1000, 200, 100, 1)
        };
        let src = Source {
            frames: Mutex::new(VecDeque::from([first, tcp_frame(1200, 100, 100, 1)])),
            host_hdr: HDR_LEN,
            max: 600,
        };
        assert!(matches!(direct(&n, &src), Direct::Delivered));
        assert_eq!(src.frames.lock().unwrap().len(), 1, "the second not read");
        assert!(matches!(direct(&n, &src), Direct::Delivered));
        assert_eq!((n.stats().rx_frames, n.stats().rx_coalesced), (2, 0));
    }
}

#[test]
fn direct_reads_land_in_the_drivers_buffers() {
    let mut d = MockDriver::new(16);
    let features = BASE_FEATURES | offload::MRG_RXBUF | offload::GUEST_CSUM;
    let (n, _) = live(&d, offload::MRG_RXBUF | offload::GUEST_CSUM, features);
    let mut hdr = vec![1u8, 0, 0, 0, 0, 0, 34, 0, 6, 0, 0xee, 0xee];
    let frame: Vec<u8> = (0..250u32).map(|i| i as u8).collect();
    hdr.extend_from_slice(&frame);
    let src = Source {
        frames: Mutex::new(VecDeque::from([hdr, vec![0u8; 401]])),
        host_hdr: HDR_LEN,
        max: 289,
    };
    let bufs: Vec<u64> = (0..3).map(|_| d.alloc(100)).collect();
    let heads: Vec<u16> = bufs
        .iter()
        .map(|&a| d.add_chain(&[(a, 100, true)]))
        .collect();
    // 300 bytes of buffers are fewer than a largest frame (12 + 289).
    assert!(matches!(direct(&n, &src), Direct::Short));
    let more = d.alloc(100);
    d.add_chain(&[(more, 100, true)]);
    assert!(matches!(direct(&n, &src), Direct::Delivered));
    assert_eq!(d.used_idx(), 3);
    assert_eq!(d.used_elem(0), (u32::from(heads[0]), 100));
    assert_eq!(d.used_elem(2), (u32::from(heads[2]), 62));
    let mut all = vec![0u8; 300];
    for (k, &a) in bufs.iter().enumerate() {
        read_bytes(&*d.mem, a, &mut all[k * 100..k * 100 + 100]).unwrap();
    }
    // The backend's header, with num_buffers set; the frame after it.
    assert_eq!(all[..HDR_LEN], [1, 0, 0, 0, 0, 0, 34, 0, 6, 0, 3, 0]);
    assert_eq!(all[HDR_LEN..HDR_LEN + 250], frame[..]);
    assert_eq!(n.stats().rx_frames, 1);
    // The next frame is too big for every buffer there is: dropped.
    for _ in 0..3 {
        let a = d.alloc(100);
        d.add_chain(&[(a, 100, true)]);
    }
    assert!(matches!(direct(&n, &src), Direct::Dropped));
    assert_eq!(n.stats().rx_dropped, 1);
    // Its first buffer went back empty; the rest wait for the next.
    assert_eq!(d.used_elem(3).1, 0);
    let a = d.alloc(100);
    d.add_chain(&[(a, 100, true)]);
    assert!(matches!(direct(&n, &src), Direct::Empty));
}

#[test]
fn direct_reads_without_a_host_header_get_ours() {
    let mut d = MockDriver::new(8);
    let (n, _) = live(&d, 0, BASE_FEATURES);
    let src = Source {
        frames: Mutex::new(VecDeque::from([vec![7u8; 60]])),
        host_hdr: 0,
        max: 289,
    };
    let a = d.alloc(128);
    let head = d.add_chain(&[(a, 128, true)]);
    assert!(matches!(direct(&n, &src), Direct::Delivered));
    assert_eq!(d.used_elem(0), (u32::from(head), 72));
    let mut got = [0u8; 72];
    read_bytes(&*d.mem, a, &mut got).unwrap();
    assert_eq!(got[..HDR_LEN], [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0]);
    assert_eq!(got[HDR_LEN..], [7u8; 60]);
}

#[test]
fn direct_reads_leave_room_for_num_buffers_after_a_10_byte_header() {
    let mut d = MockDriver::new(8);
    let (n, _) = live(&d, 0, BASE_FEATURES);
    let mut pkt = vec![0u8; 10];
    pkt.extend_from_slice(&[9u8; 40]);
    let src = Source {
        frames: Mutex::new(VecDeque::from([pkt])),
        host_hdr: 10,
        max: 289,
    };
    // The header's end and the frame's start split across buffers.
    let (a, b) = (d.alloc(11), d.alloc(64));
    d.add_chain(&[(a, 11, true), (b, 64, true)]);
    assert!(matches!(direct(&n, &src), Direct::Delivered));
    assert_eq!(d.used_elem(0).1, 52);
    let mut got = [0u8; 11];
    read_bytes(&*d.mem, a, &mut got).unwrap();
    assert_eq!(got, [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    let mut rest = [0u8; 41];
    read_bytes(&*d.mem, b, &mut rest).unwrap();
    assert_eq!(rest[0], 0, "num_buffers' high byte");
    assert_eq!(rest[1..], [9u8; 40]);
}

#[test]
fn a_frame_too_big_for_the_buffer_is_dropped_and_the_buffer_returned() {
    let mut d = MockDriver::new(8);
    let (n, _) = live(&d, 0, BASE_FEATURES);
    let a = d.alloc(32);
    let head = d.add_chain(&[(a, 32, true)]);
    assert_eq!(deliver(&n, &[7u8; 21]), Delivery::Dropped);
    assert_eq!(d.used_elem(0), (u32::from(head), 0));
    assert_eq!((n.stats().rx_dropped, n.stats().rx_frames), (1, 0));
}

#[test]
fn a_stopped_or_reset_device_touches_no_queue() {
    let mut d = MockDriver::new(8);
    let (mut n, sink) = live(&d, 0, BASE_FEATURES);
    let a = d.alloc(64);
    d.add_chain(&[(a, 64, true)]);
    n.reset();
    assert_eq!(deliver(&n, b"late"), Delivery::NoBuffer);
    let (mut n, _) = live(&d, 0, BASE_FEATURES);
    n.stop();
    assert!(n.stopped());
    assert_eq!(deliver(&n, b"late"), Delivery::NoBuffer);
    let mut q = d.queue();
    assert!(!n.process_queue(TX_QUEUE, &mut q, &*d.mem).unwrap());
    assert_eq!(d.used_idx(), 0);
    assert!(sink.sent.lock().unwrap().is_empty());
}

#[test]
fn transmit_sends_each_chain_from_the_drivers_buffers() {
    let mut d = MockDriver::new(8);
    let (mut n, sink) = live(&d, 0, BASE_FEATURES);
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
    let sent: Vec<Vec<u8>> = sink
        .sent
        .lock()
        .unwrap()
        .iter()
        .map(|s| s.1.clone())
        .collect();
    assert_eq!(sent, vec![vec![5u8; 20], vec![1, 2, 3]]);
    assert_eq!(d.used_idx(), 3);
    assert_eq!(d.used_elem(0), (u32::from(c1), 0));
    assert_eq!(d.used_elem(1), (u32::from(c2), 0));
    assert_eq!(d.used_elem(2), (u32::from(c3), 0));
    let st = n.stats();
    assert_eq!((st.tx_frames, st.tx_bytes, st.tx_errors), (2, 23, 1));
}

#[test]
fn bulk_traffic_hands_sending_to_the_transmit_thread_and_a_stop_takes_it_back() {
    let mut d = MockDriver::new(16);
    let (mut n, sink) = live(&d, 0, BASE_FEATURES);
    let mut q = d.queue();
    let mem = d.mem.clone();
    let big = d.alloc(12 + 40_000);
    let frame = |d: &mut MockDriver| d.add_chain(&[(big, 12 + 40_000, false)]);
    let active = |n: &Net| n.shared.tx.active.load(Ordering::SeqCst);
    // A first notify sends at once: nothing to compare it with yet.
    frame(&mut d);
    assert!(n.process_queue(TX_QUEUE, &mut q, &*mem).unwrap());
    assert!(!active(&n));
    // A second one right after it, 40 KB later: bulk. It still sends
    // its own chain, then hands over (and wakes the thread).
    frame(&mut d);
    assert!(n.process_queue(TX_QUEUE, &mut q, &*mem).unwrap());
    assert!(active(&n));
    assert_eq!(poll_readable([n.shared.tx.wake.fd()], 0).unwrap(), [true]);
    assert_eq!(sink.sent.lock().unwrap().len(), 2);
    // Now a notify only leaves the chain for the thread.
    let waiting = frame(&mut d);
    assert!(!n.process_queue(TX_QUEUE, &mut q, &*mem).unwrap());
    assert!(n.shared.tx.pending.load(Ordering::SeqCst));
    assert_eq!((sink.sent.lock().unwrap().len(), d.used_idx()), (2, 2));
    // Before a stop, halt takes sending back and sends what waits.
    assert!(n.flush_transmit(&mut q, &*mem).unwrap());
    assert!(!active(&n));
    assert_eq!(sink.sent.lock().unwrap().len(), 3);
    assert_eq!(d.used_elem(2), (u32::from(waiting), 0));
    assert_eq!(n.stats().tx_threaded, 0, "the thread itself sent none");
}

#[test]
fn requests_and_pings_are_never_handed_over() {
    let mut d = MockDriver::new(16);
    let (mut n, _) = live(&d, 0, BASE_FEATURES);
    let mut q = d.queue();
    let mem = d.mem.clone();
    let small = d.alloc(12 + 100);
    for _ in 0..10 {
        d.add_chain(&[(small, 12 + 100, false)]);
        assert!(n.process_queue(TX_QUEUE, &mut q, &*mem).unwrap());
    }
    assert!(!n.shared.tx.active.load(Ordering::SeqCst));
    // Without busy polling there is no transmit thread at all.
    let o = crate::net::NetOptions {
        busy_poll: std::time::Duration::ZERO,
        ..opts(0)
    };
    let (mut n, _) = net_with(&d, &o);
    n.activate_queues(BASE_FEATURES, &[d.queue(), d.queue()]);
    let mut q = d.queue();
    let big = d.alloc(12 + 40_000);
    for _ in 0..3 {
        d.add_chain(&[(big, 12 + 40_000, false)]);
        n.process_queue(TX_QUEUE, &mut q, &*mem).unwrap();
    }
    assert!(!n.shared.tx.active.load(Ordering::SeqCst));
}

#[test]
fn transmit_passes_the_header_to_a_backend_that_takes_it() {
    let mut d = MockDriver::new(8);
    let features = BASE_FEATURES | offload::CSUM | offload::HOST_TSO4;
    let (mut n, sink) = live(&d, offload::CSUM | offload::HOST_TSO4, features);
    let mut q = d.queue();
    let mem = d.mem.clone();
    let hdr = [1u8, 1, 54, 0, 0xb4, 5, 34, 0, 16, 0, 0, 0];
    // The header split over two buffers, the frame in the second.
    let (a, b) = (d.alloc(5), d.alloc(7 + 100));
    write_bytes(&*mem, a, &hdr[..5]).unwrap();
    write_bytes(&*mem, b, &hdr[5..]).unwrap();
    write_bytes(&*mem, b + 7, &[9u8; 100]).unwrap();
    d.add_chain(&[(a, 5, false), (b, 107, false)]);
    assert!(n.process_queue(TX_QUEUE, &mut q, &*mem).unwrap());
    let sent = sink.sent.lock().unwrap();
    assert_eq!(sent[0].0, hdr);
    assert_eq!(sent[0].1, vec![9u8; 100]);
}

#[test]
fn a_receive_notify_wakes_a_receive_thread_waiting_for_buffers() {
    let d = MockDriver::new(8);
    let (mut n, _) = net(&d, 0);
    let mut q = d.queue();
    let wake = n.shared().clone();
    let fd = wake.wake.fd();
    assert_eq!(poll_readable([fd], 0).unwrap(), [false]);
    // Not while the thread has buffers.
    assert!(!n.process_queue(RX_QUEUE, &mut q, &*d.mem).unwrap());
    assert_eq!(poll_readable([fd], 0).unwrap(), [false]);
    wake.waiting.store(true, Ordering::SeqCst);
    assert!(!n.process_queue(RX_QUEUE, &mut q, &*d.mem).unwrap());
    assert_eq!(poll_readable([fd], 0).unwrap(), [true]);
    wake.wake.clear();
    assert_eq!(poll_readable([fd], 0).unwrap(), [false]);
}
