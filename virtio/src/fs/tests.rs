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

#[test]
fn workers_serve_requests_and_signal() {
    let dir = scratch("workers");
    std::fs::write(dir.join("hello"), b"hello, world\n").unwrap();
    let mut d = MockDriver::new(64);
    let mut fs = Fs::new(&dir, "t", false, d.mem.clone()).unwrap();
    fs.activate_queues(0, &[d.queue(), d.queue()]);
    let signals = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let (w, s) = (fs.worker(), signals.clone());
            std::thread::spawn(move || {
                w.run(
                    || {
                        s.fetch_add(1, Ordering::SeqCst);
                    },
                    |e| panic!("queue failed: {e}"),
                )
            })
        })
        .collect();
    let wait_used = |d: &MockDriver, n: u16| {
        let start = Instant::now();
        while d.used_idx() != n {
            assert!(start.elapsed() < Duration::from_secs(10), "no reply");
            std::thread::sleep(Duration::from_millis(1));
        }
    };
    let mut q = d.queue();
    let mem = d.mem.clone();

    // LOOKUP "hello": header and name in two readable buffers.
    let req = request(abi::op::LOOKUP, abi::ROOT_ID, 7, b"hello\0");
    let (h, a) = (put(&mut d, &req[..40]), put(&mut d, &req[40..]));
    let out = d.alloc(16);
    let entry = d.alloc(128);
    d.add_chain(&[
        (h, 40, false),
        (a, 6, false),
        (out, 16, true),
        (entry, 128, true),
    ]);
    fs.process_queue(REQUEST_QUEUE, &mut q, &*mem).unwrap();
    wait_used(&d, 1);
    assert_eq!(d.used_elem(0).1, 16 + 128);
    let mut b = [0u8; 16];
    read_bytes(&*d.mem, out, &mut b).unwrap();
    let oh = abi::OutHeader::read(&b).unwrap();
    assert_eq!((oh.len, oh.error, oh.unique), (144, 0, 7));
    let mut b = [0u8; 128];
    read_bytes(&*d.mem, entry, &mut b).unwrap();
    let node = abi::EntryOut::read(&b).unwrap().nodeid;

    // OPEN, then READ into two "pages".
    let req = request(abi::op::OPEN, node, 8, abi::OpenIn::default().bytes());
    let r = put(&mut d, &req);
    let (out, open) = (d.alloc(16), d.alloc(16));
    d.add_chain(&[
        (r, req.len() as u32, false),
        (out, 16, true),
        (open, 16, true),
    ]);
    fs.process_queue(REQUEST_QUEUE, &mut q, &*mem).unwrap();
    wait_used(&d, 2);
    let mut b = [0u8; 16];
    read_bytes(&*d.mem, open, &mut b).unwrap();
    let fh = abi::OpenOut::read(&b).unwrap().fh;
    let read_in = abi::ReadIn {
        fh,
        size: 4096,
        ..Default::default()
    };
    let req = request(abi::op::READ, node, 9, read_in.bytes());
    let r = put(&mut d, &req);
    let (out, p1, p2) = (d.alloc(16), d.alloc(5), d.alloc(4091));
    d.add_chain(&[
        (r, req.len() as u32, false),
        (out, 16, true),
        (p1, 5, true),
        (p2, 4091, true),
    ]);
    fs.process_queue(REQUEST_QUEUE, &mut q, &*mem).unwrap();
    wait_used(&d, 3);
    assert_eq!(d.used_elem(2).1, 16 + 13);
    let mut b = [0u8; 16];
    read_bytes(&*d.mem, out, &mut b).unwrap();
    assert_eq!(abi::OutHeader::read(&b).unwrap().len, 29);
    let mut text = [0u8; 13];
    read_bytes(&*d.mem, p1, &mut text[..5]).unwrap();
    read_bytes(&*d.mem, p2, &mut text[5..]).unwrap();
    assert_eq!(&text, b"hello, world\n");

    // An error: a header alone in the reply.
    let req = request(abi::op::LOOKUP, abi::ROOT_ID, 10, b"missing\0");
    let r = put(&mut d, &req);
    let (out, entry) = (d.alloc(16), d.alloc(128));
    d.add_chain(&[
        (r, req.len() as u32, false),
        (out, 16, true),
        (entry, 128, true),
    ]);
    fs.process_queue(REQUEST_QUEUE, &mut q, &*mem).unwrap();
    wait_used(&d, 4);
    assert_eq!(d.used_elem(3).1, 16);
    let mut b = [0u8; 16];
    read_bytes(&*d.mem, out, &mut b).unwrap();
    assert_eq!(abi::OutHeader::read(&b).unwrap().error, -libc::ENOENT);
    assert!(signals.load(Ordering::SeqCst) >= 1);

    // FORGET on the high-priority queue, answered at once, no reply.
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

    fs.stop();
    for t in threads {
        t.join().unwrap();
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
