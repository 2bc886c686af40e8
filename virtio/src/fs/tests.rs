//! The device against a driver played by the test: requests laid out as
//! the kernel's virtiofs driver lays them out (header, arguments, data
//! pages; then the reply header and the reply's buffers).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::*;
use crate::memory::{read_bytes, write_bytes};
use crate::queue::tests::MockDriver;

fn scratch(what: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("lkl-virtio-fsdev-{what}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Puts `bytes` in the driver's memory; returns the address.
fn put(d: &mut MockDriver, bytes: &[u8]) -> u64 {
    let at = d.alloc(bytes.len() as u32);
    write_bytes(&*d.mem, at, bytes).unwrap();
    at
}

fn request(opcode: u32, nodeid: u64, unique: u64, args: &[u8]) -> Vec<u8> {
    let h = abi::InHeader {
        len: (40 + args.len()) as u32,
        opcode,
        unique,
        nodeid,
        ..Default::default()
    };
    [h.bytes(), args].concat()
}

#[test]
fn config_holds_the_tag_and_one_request_queue() {
    let d = MockDriver::new(16);
    let fs = Fs::new(&scratch("config"), "share", false, d.mem.clone()).unwrap();
    let mut cfg = [0u8; 40];
    fs.read_config(0, &mut cfg);
    assert_eq!(&cfg[..6], b"share\0");
    assert_eq!(&cfg[36..], &1u32.to_le_bytes());
    assert_eq!(fs.device_id(), 26);
    assert_eq!(fs.queue_max_sizes(), [HIPRIO_SIZE, REQUEST_SIZE]);
    for bad in ["", "a\nb", &"x".repeat(37)] {
        assert!(matches!(
            Fs::new(&scratch("config"), bad, false, d.mem.clone()),
            Err(FsError::Tag { .. })
        ));
    }
}

/// Lays out a request with `args` and reply buffers of `reply` bytes (after
/// the 16-byte reply header); returns (reply header address, reply address).
fn add_request(d: &mut MockDriver, req: &[u8], reply: &[u32]) -> (u64, Vec<u64>) {
    let r = put(d, req);
    let out = d.alloc(16);
    let bufs: Vec<u64> = reply.iter().map(|&n| d.alloc(n)).collect();
    let mut chain = vec![(r, req.len() as u32, false), (out, 16, true)];
    chain.extend(bufs.iter().zip(reply).map(|(&a, &n)| (a, n, true)));
    d.add_chain(&chain);
    (out, bufs)
}

fn out_header(d: &MockDriver, at: u64) -> abi::OutHeader {
    let mut b = [0u8; 16];
    read_bytes(&*d.mem, at, &mut b).unwrap();
    abi::OutHeader::read(&b).unwrap()
}

#[test]
fn small_requests_are_served_on_the_notify() {
    let dir = scratch("inline");
    std::fs::write(dir.join("hello"), b"hello, world\n").unwrap();
    let mut d = MockDriver::new(64);
    let mut fs = Fs::new(&dir, "t", false, d.mem.clone()).unwrap();
    let mut q = d.queue();
    let mem = d.mem.clone();

    // LOOKUP "hello", and a LOOKUP of a missing name, in one notify.
    let (out, entry) = add_request(
        &mut d,
        &request(abi::op::LOOKUP, abi::ROOT_ID, 7, b"hello\0"),
        &[128],
    );
    let (err, _) = add_request(
        &mut d,
        &request(abi::op::LOOKUP, abi::ROOT_ID, 8, b"missing\0"),
        &[128],
    );
    assert!(fs.process_queue(REQUEST_QUEUE, &mut q, &*mem).unwrap());
    assert_eq!(d.used_idx(), 2);
    assert_eq!(d.used_elem(0).1, 16 + 128);
    let oh = out_header(&d, out);
    assert_eq!((oh.len, oh.error, oh.unique), (144, 0, 7));
    let mut b = [0u8; 128];
    read_bytes(&*d.mem, entry[0], &mut b).unwrap();
    let node = abi::EntryOut::read(&b).unwrap().nodeid;
    assert_eq!(d.used_elem(1).1, 16);
    assert_eq!(out_header(&d, err).error, -libc::ENOENT);

    // OPEN, then a small READ into two "pages".
    let (_, open) = add_request(
        &mut d,
        &request(abi::op::OPEN, node, 9, abi::OpenIn::default().bytes()),
        &[16],
    );
    fs.process_queue(REQUEST_QUEUE, &mut q, &*mem).unwrap();
    let mut b = [0u8; 16];
    read_bytes(&*d.mem, open[0], &mut b).unwrap();
    let fh = abi::OpenOut::read(&b).unwrap().fh;
    let read_in = abi::ReadIn {
        fh,
        size: 4096,
        ..Default::default()
    };
    let (out, pages) = add_request(
        &mut d,
        &request(abi::op::READ, node, 10, read_in.bytes()),
        &[5, 4091],
    );
    fs.process_queue(REQUEST_QUEUE, &mut q, &*mem).unwrap();
    assert_eq!(d.used_elem(3).1, 16 + 13);
    assert_eq!(out_header(&d, out).len, 29);
    let mut text = [0u8; 13];
    read_bytes(&*d.mem, pages[0], &mut text[..5]).unwrap();
    read_bytes(&*d.mem, pages[1], &mut text[5..]).unwrap();
    assert_eq!(&text, b"hello, world\n");

    // FORGET on the high-priority queue: no reply.
    let mut hd = MockDriver::new(8);
    let mut hq = hd.queue();
    let req = request(
        abi::op::FORGET,
        node,
        11,
        abi::ForgetIn { nlookup: 1 }.bytes(),
    );
    let r = put(&mut hd, &req);
    let head = hd.add_chain(&[(r, req.len() as u32, false)]);
    assert_eq!(fs.server().counts(), (2, 1));
    assert!(fs.process_queue(HIPRIO_QUEUE, &mut hq, &*hd.mem).unwrap());
    assert_eq!(hd.used_elem(0), (u32::from(head), 0));
    assert_eq!(fs.server().counts(), (1, 1));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[derive(Default)]
struct Count(AtomicUsize);

impl crate::Interrupt for Arc<Count> {
    fn trigger(&self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn large_reads_go_to_the_workers() {
    use crate::spec::*;
    use crate::MmioDevice;
    let dir = scratch("bulk");
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(dir.join("big"), &data).unwrap();
    let mut d = MockDriver::new(64);
    let count = Arc::new(Count::default());
    let fs = Fs::new(&dir, "t", false, d.mem.clone()).unwrap();
    let t = Arc::new(MmioTransport::new(
        fs,
        Box::new(d.mem.clone()),
        Box::new(count.clone()),
    ));
    let wr = |reg: u32, v: u32| t.write(reg.into(), &v.to_le_bytes());
    // Linux's bring-up, with the request queue on the driver's rings.
    let features = 1u64 << VIRTIO_F_VERSION_1;
    for st in [0, VIRTIO_CONFIG_S_ACKNOWLEDGE, 3] {
        wr(VIRTIO_MMIO_STATUS, st);
    }
    wr(VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
    wr(VIRTIO_MMIO_DRIVER_FEATURES, (features >> 32) as u32);
    wr(VIRTIO_MMIO_STATUS, 3 | VIRTIO_CONFIG_S_FEATURES_OK);
    wr(VIRTIO_MMIO_QUEUE_SEL, REQUEST_QUEUE as u32);
    wr(VIRTIO_MMIO_QUEUE_NUM, 64);
    for (lo, hi, addr) in [
        (
            VIRTIO_MMIO_QUEUE_DESC_LOW,
            VIRTIO_MMIO_QUEUE_DESC_HIGH,
            d.desc,
        ),
        (
            VIRTIO_MMIO_QUEUE_AVAIL_LOW,
            VIRTIO_MMIO_QUEUE_AVAIL_HIGH,
            d.avail,
        ),
        (
            VIRTIO_MMIO_QUEUE_USED_LOW,
            VIRTIO_MMIO_QUEUE_USED_HIGH,
            d.used,
        ),
    ] {
        wr(lo, addr as u32);
        wr(hi, (addr >> 32) as u32);
    }
    wr(VIRTIO_MMIO_QUEUE_READY, 1);
    wr(VIRTIO_MMIO_STATUS, 0xf);
    let workers: Vec<_> = (0..2)
        .map(|_| {
            let (w, t) = (t.with_device(Fs::worker), t.clone());
            std::thread::spawn(move || w.run(&t))
        })
        .collect();
    let notify = || wr(VIRTIO_MMIO_QUEUE_NOTIFY, REQUEST_QUEUE as u32);
    let wait_used = |d: &MockDriver, n: u16| {
        let start = Instant::now();
        while d.used_idx() != n {
            assert!(start.elapsed() < Duration::from_secs(10), "no reply");
            std::thread::sleep(Duration::from_millis(1));
        }
    };
    let (_, entry) = add_request(
        &mut d,
        &request(abi::op::LOOKUP, abi::ROOT_ID, 1, b"big\0"),
        &[128],
    );
    notify();
    wait_used(&d, 1);
    let mut b = [0u8; 128];
    read_bytes(&*d.mem, entry[0], &mut b).unwrap();
    let node = abi::EntryOut::read(&b).unwrap().nodeid;
    let (_, open) = add_request(
        &mut d,
        &request(abi::op::OPEN, node, 2, abi::OpenIn::default().bytes()),
        &[16],
    );
    notify();
    wait_used(&d, 2);
    let mut b = [0u8; 16];
    read_bytes(&*d.mem, open[0], &mut b).unwrap();
    let fh = abi::OpenOut::read(&b).unwrap().fh;
    // Two reads of 128 KiB in 16 buffers each: handed to the workers.
    let mut reads = Vec::new();
    for (k, offset) in [(3u64, 0u64), (4, 131_072)] {
        let r = abi::ReadIn {
            fh,
            offset,
            size: 131_072,
            ..Default::default()
        };
        reads.push((
            offset,
            add_request(
                &mut d,
                &request(abi::op::READ, node, k, r.bytes()),
                &[8192; 16],
            ),
        ));
    }
    let before = count.0.load(Ordering::SeqCst);
    notify();
    wait_used(&d, 4);
    assert!(
        count.0.load(Ordering::SeqCst) > before,
        "no interrupt for the workers' replies"
    );
    for (offset, (out, pages)) in reads {
        assert_eq!(out_header(&d, out).len, 16 + 131_072);
        let mut got = vec![0u8; 131_072];
        for (i, p) in pages.iter().enumerate() {
            read_bytes(&*d.mem, *p, &mut got[i * 8192..][..8192]).unwrap();
        }
        assert!(
            got == data[offset as usize..][..131_072],
            "read at {offset}"
        );
    }
    t.with_device(Fs::stop);
    for w in workers {
        w.join().unwrap();
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_write_goes_from_the_drivers_pages() {
    let dir = scratch("write");
    let mut d = MockDriver::new(16);
    let fs = Fs::new(&dir, "t", false, d.mem.clone()).unwrap();
    let server = fs.server.clone();
    let c = abi::CreateIn {
        flags: libc::O_WRONLY as u32,
        mode: 0o644,
        ..Default::default()
    };
    let out = server.handle_request(
        &abi::InHeader {
            opcode: abi::op::CREATE,
            nodeid: abi::ROOT_ID,
            ..Default::default()
        },
        &[c.bytes(), b"f\0"].concat(),
        &Bulk::default(),
    );
    let Reply::Data(out) = out else {
        panic!("{out:?}")
    };
    let fh = abi::OpenOut::read(&out[128..]).unwrap().fh;
    let w = abi::WriteIn {
        fh,
        size: 10,
        ..Default::default()
    };
    let req = request(abi::op::WRITE, 2, 1, w.bytes());
    let r = put(&mut d, &req);
    let (p1, p2) = (put(&mut d, b"0123"), put(&mut d, b"456789"));
    let (o, wo) = (d.alloc(16), d.alloc(8));
    let head = d.add_chain(&[
        (r, 80, false),
        (p1, 4, false),
        (p2, 6, false),
        (o, 16, true),
        (wo, 8, true),
    ]);
    let mut q = d.queue();
    let chain = q.pop(&*d.mem).unwrap().unwrap();
    assert_eq!(chain.head, head);
    assert_eq!(serve(&server, &*d.mem, &chain).unwrap(), 24);
    let mut b = [0u8; 8];
    read_bytes(&*d.mem, wo, &mut b).unwrap();
    assert_eq!(abi::WriteOut::read(&b).unwrap().size, 10);
    assert_eq!(std::fs::read(dir.join("f")).unwrap(), b"0123456789");
    std::fs::remove_dir_all(&dir).unwrap();
}
