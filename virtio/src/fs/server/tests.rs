//! The server against a real host directory, request by request.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::PathBuf;

use super::*;

/// A fresh directory under the system's temporary directory.
fn scratch(what: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "lkl-virtio-fs-{what}-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn header(opcode: u32, nodeid: u64) -> abi::InHeader {
    abi::InHeader {
        opcode,
        nodeid,
        unique: 1,
        ..Default::default()
    }
}

fn call(s: &Server, opcode: u32, nodeid: u64, args: &[u8]) -> Result<Vec<u8>, i32> {
    match s.handle_request(&header(opcode, nodeid), args, &Bulk::default()) {
        Reply::Data(d) => Ok(d),
        Reply::Error(e) => Err(e),
        other => panic!("unexpected {other:?}"),
    }
}

fn z(name: &str) -> Vec<u8> {
    let mut v = name.as_bytes().to_vec();
    v.push(0);
    v
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

fn lookup(s: &Server, parent: u64, name: &str) -> Result<abi::EntryOut, i32> {
    call(s, op::LOOKUP, parent, &z(name)).map(|d| abi::EntryOut::read(&d).unwrap())
}

fn open(s: &Server, node: u64, flags: i32) -> Result<u64, i32> {
    let a = abi::OpenIn {
        flags: flags as u32,
        open_flags: 0,
    };
    call(s, op::OPEN, node, a.bytes()).map(|d| abi::OpenOut::read(&d).unwrap().fh)
}

fn read(s: &Server, fh: u64, offset: u64, size: u32) -> Result<Vec<u8>, i32> {
    let mut buf = vec![0u8; size as usize];
    let (a, b) = buf.split_at_mut(size as usize / 2);
    let dst = [
        libc::iovec {
            iov_base: a.as_mut_ptr().cast(),
            iov_len: a.len(),
        },
        libc::iovec {
            iov_base: b.as_mut_ptr().cast(),
            iov_len: b.len(),
        },
    ];
    let r = abi::ReadIn {
        fh,
        offset,
        size,
        ..Default::default()
    };
    let bulk = Bulk {
        src: &[],
        dst: &dst,
    };
    match s.handle_request(&header(op::READ, 0), r.bytes(), &bulk) {
        Reply::Direct(n) => {
            buf.truncate(n);
            Ok(buf)
        }
        Reply::Error(e) => Err(e),
        other => panic!("unexpected {other:?}"),
    }
}

fn write(s: &Server, fh: u64, offset: u64, data: &[u8]) -> Result<u32, i32> {
    let src = [libc::iovec {
        iov_base: data.as_ptr() as *mut _,
        iov_len: data.len(),
    }];
    let w = abi::WriteIn {
        fh,
        offset,
        size: data.len() as u32,
        ..Default::default()
    };
    let bulk = Bulk {
        src: &src,
        dst: &[],
    };
    match s.handle_request(&header(op::WRITE, 0), w.bytes(), &bulk) {
        Reply::Data(d) => Ok(abi::WriteOut::read(&d).unwrap().size),
        Reply::Error(e) => Err(e),
        other => panic!("unexpected {other:?}"),
    }
}

fn names(s: &Server, dir: u64) -> Vec<String> {
    let fh = call(s, op::OPENDIR, dir, abi::OpenIn::default().bytes()).unwrap();
    let fh = abi::OpenOut::read(&fh).unwrap().fh;
    let mut out = Vec::new();
    let mut offset = 0;
    loop {
        // A small buffer: several calls, resumed from the last offset.
        let r = abi::ReadIn {
            fh,
            offset,
            size: 80,
            ..Default::default()
        };
        let d = call(s, op::READDIR, dir, r.bytes()).unwrap();
        if d.is_empty() {
            break;
        }
        let mut at = 0;
        while at < d.len() {
            let e = abi::Dirent::read(&d[at..]).unwrap();
            let name = &d[at + 24..at + 24 + e.namelen as usize];
            out.push(String::from_utf8_lossy(name).into_owned());
            offset = e.off;
            at += (24 + e.namelen as usize).next_multiple_of(8);
        }
    }
    let rel = abi::ReleaseIn {
        fh,
        ..Default::default()
    };
    call(s, op::RELEASEDIR, dir, rel.bytes()).unwrap();
    out.sort();
    out
}

#[test]
fn init_agrees_on_the_version_and_the_flags_offered() {
    let d = scratch("init");
    let s = Server::new(&d, false).unwrap();
    let i = abi::InitIn {
        major: 7,
        minor: 41,
        max_readahead: 1 << 17,
        flags: u32::MAX,
    };
    let out = abi::InitOut::read(&call(&s, op::INIT, 0, i.bytes()).unwrap()).unwrap();
    assert_eq!((out.major, out.minor), (7, abi::KERNEL_MINOR_VERSION));
    assert_eq!(out.max_readahead, 1 << 17);
    assert_eq!(out.max_pages, MAX_PAGES);
    assert!(out.flags & abi::init::MAX_PAGES != 0);
    // Only what the kernel offered.
    let i = abi::InitIn { flags: 0, ..i };
    let out = abi::InitOut::read(&call(&s, op::INIT, 0, i.bytes()).unwrap()).unwrap();
    assert_eq!(out.flags, 0);
    let i = abi::InitIn { major: 8, ..i };
    assert_eq!(call(&s, op::INIT, 0, i.bytes()), Err(libc::EPROTO));
    assert_eq!(call(&s, 9999, 1, &[]), Err(libc::ENOSYS));
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn files_and_directories_round_trip() {
    let d = scratch("rw");
    std::fs::write(d.join("host"), b"from the host\n").unwrap();
    let s = Server::new(&d, false).unwrap();
    let e = lookup(&s, abi::ROOT_ID, "host").unwrap();
    assert_eq!(e.attr.size, 14);
    assert_eq!(e.attr.ino, std::fs::metadata(d.join("host")).unwrap().ino());
    // The same file again: the same node.
    assert_eq!(lookup(&s, abi::ROOT_ID, "host").unwrap().nodeid, e.nodeid);
    let fh = open(&s, e.nodeid, libc::O_RDONLY).unwrap();
    assert_eq!(read(&s, fh, 0, 64).unwrap(), b"from the host\n");
    assert_eq!(read(&s, fh, 5, 3).unwrap(), b"the");
    assert_eq!(read(&s, fh, 100, 8).unwrap(), b"");

    // mkdir, create, write, then the host sees them.
    let m = abi::MkdirIn {
        mode: 0o750,
        umask: 0,
    };
    let dir = abi::EntryOut::read(
        &call(&s, op::MKDIR, abi::ROOT_ID, &cat(&[m.bytes(), &z("sub")])).unwrap(),
    )
    .unwrap();
    assert_eq!(dir.attr.mode & libc::S_IFMT, libc::S_IFDIR);
    let c = abi::CreateIn {
        flags: (libc::O_WRONLY | libc::O_TRUNC) as u32,
        mode: 0o640,
        ..Default::default()
    };
    let out = call(&s, op::CREATE, dir.nodeid, &cat(&[c.bytes(), &z("new")])).unwrap();
    let entry = abi::EntryOut::read(&out).unwrap();
    let fh = abi::OpenOut::read(&out[128..]).unwrap().fh;
    assert_eq!(write(&s, fh, 0, b"written inside").unwrap(), 14);
    assert_eq!(write(&s, fh, 8, b"INSIDE").unwrap(), 6);
    assert_eq!(std::fs::read(d.join("sub/new")).unwrap(), b"written INSIDE");
    assert_eq!(
        std::fs::metadata(d.join("sub/new"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o640 & !umask()
    );
    // Truncate through SETATTR, with and without the handle.
    let mut sa = abi::SetattrIn {
        valid: fattr::SIZE | fattr::FH,
        fh,
        size: 7,
        ..Default::default()
    };
    let a = abi::AttrOut::read(&call(&s, op::SETATTR, entry.nodeid, sa.bytes()).unwrap()).unwrap();
    assert_eq!(a.attr.size, 7);
    sa.valid = fattr::SIZE | fattr::MODE;
    sa.size = 3;
    sa.mode = 0o600;
    call(&s, op::SETATTR, entry.nodeid, sa.bytes()).unwrap();
    let meta = std::fs::metadata(d.join("sub/new")).unwrap();
    assert_eq!((meta.len(), meta.permissions().mode() & 0o777), (3, 0o600));

    // Rename, link, symlink, readlink, unlink, rmdir.
    let r = abi::RenameIn {
        newdir: abi::ROOT_ID,
    };
    call(
        &s,
        op::RENAME,
        dir.nodeid,
        &cat(&[r.bytes(), &z("new"), &z("moved")]),
    )
    .unwrap();
    assert!(d.join("moved").exists() && !d.join("sub/new").exists());
    let l = abi::LinkIn {
        oldnodeid: entry.nodeid,
    };
    let linked = abi::EntryOut::read(
        &call(&s, op::LINK, abi::ROOT_ID, &cat(&[l.bytes(), &z("hard")])).unwrap(),
    )
    .unwrap();
    assert_eq!(linked.nodeid, entry.nodeid);
    assert_eq!(linked.attr.nlink, 2);
    let sl = call(
        &s,
        op::SYMLINK,
        abi::ROOT_ID,
        &cat(&[&z("link"), &z("/etc/passwd")]),
    )
    .unwrap();
    let sl = abi::EntryOut::read(&sl).unwrap();
    assert_eq!(sl.attr.mode & libc::S_IFMT, libc::S_IFLNK);
    assert_eq!(
        call(&s, op::READLINK, sl.nodeid, &[]).unwrap(),
        b"/etc/passwd"
    );
    assert_eq!(
        std::fs::read_link(d.join("link")).unwrap(),
        PathBuf::from("/etc/passwd")
    );
    call(&s, op::UNLINK, abi::ROOT_ID, &z("hard")).unwrap();
    call(&s, op::RMDIR, abi::ROOT_ID, &z("sub")).unwrap();
    assert_eq!(
        names(&s, abi::ROOT_ID),
        [".", "..", "host", "link", "moved"]
    );
    std::fs::remove_dir_all(&d).unwrap();
}

fn umask() -> u32 {
    // SAFETY: umask only swaps the process's mask; put back at once.
    let m = unsafe { libc::umask(0o022) };
    // SAFETY: as above.
    unsafe { libc::umask(m) };
    m
}

#[test]
fn names_never_leave_the_directory() {
    let top = scratch("escape");
    let d = top.join("shared");
    std::fs::create_dir(&d).unwrap();
    std::fs::write(top.join("secret"), b"outside").unwrap();
    std::os::unix::fs::symlink(top.join("secret"), d.join("abs")).unwrap();
    std::os::unix::fs::symlink("../secret", d.join("rel")).unwrap();
    let s = Server::new(&d, false).unwrap();
    for bad in ["..", ".", "", "../secret", "a/b"] {
        assert_eq!(
            lookup(&s, abi::ROOT_ID, bad).err(),
            Some(libc::EINVAL),
            "{bad:?}"
        );
    }
    // A link is a node of its own, never what it points to.
    for link in ["abs", "rel"] {
        let e = lookup(&s, abi::ROOT_ID, link).unwrap();
        assert_eq!(e.attr.mode & libc::S_IFMT, libc::S_IFLNK, "{link}");
        assert_eq!(open(&s, e.nodeid, libc::O_RDONLY), Err(libc::ELOOP));
        let sa = abi::SetattrIn {
            valid: fattr::SIZE,
            ..Default::default()
        };
        assert!(call(&s, op::SETATTR, e.nodeid, sa.bytes()).is_err());
    }
    // Creating through a link fails rather than follows it.
    let c = abi::CreateIn {
        flags: libc::O_WRONLY as u32,
        mode: 0o644,
        ..Default::default()
    };
    assert_eq!(
        call(&s, op::CREATE, abi::ROOT_ID, &cat(&[c.bytes(), &z("abs")])).err(),
        Some(libc::ELOOP)
    );
    assert_eq!(std::fs::read(top.join("secret")).unwrap(), b"outside");
    // An unknown node.
    assert_eq!(lookup(&s, 999, "x").err(), Some(libc::ESTALE));
    std::fs::remove_dir_all(&top).unwrap();
}

#[test]
fn read_only_refuses_every_change() {
    let d = scratch("ro");
    std::fs::write(d.join("f"), b"data").unwrap();
    let s = Server::new(&d, true).unwrap();
    let f = lookup(&s, abi::ROOT_ID, "f").unwrap().nodeid;
    let c = abi::CreateIn {
        flags: libc::O_WRONLY as u32,
        mode: 0o644,
        ..Default::default()
    };
    let m = abi::MkdirIn::default();
    let refused: [(u32, u64, Vec<u8>); 6] = [
        (op::CREATE, abi::ROOT_ID, cat(&[c.bytes(), &z("new")])),
        (op::MKDIR, abi::ROOT_ID, cat(&[m.bytes(), &z("dir")])),
        (op::UNLINK, abi::ROOT_ID, z("f")),
        (op::SYMLINK, abi::ROOT_ID, cat(&[&z("l"), &z("f")])),
        (op::SETATTR, f, abi::SetattrIn::default().bytes().to_vec()),
        (
            op::RENAME,
            abi::ROOT_ID,
            cat(&[abi::RenameIn { newdir: 1 }.bytes(), &z("f"), &z("g")]),
        ),
    ];
    for (opcode, node, args) in refused {
        assert_eq!(
            call(&s, opcode, node, &args).err(),
            Some(libc::EROFS),
            "opcode {opcode}"
        );
    }
    assert_eq!(open(&s, f, libc::O_RDWR), Err(libc::EROFS));
    assert_eq!(
        open(&s, f, libc::O_RDONLY | libc::O_TRUNC),
        Err(libc::EROFS)
    );
    let fh = open(&s, f, libc::O_RDONLY).unwrap();
    assert_eq!(write(&s, fh, 0, b"x"), Err(libc::EROFS));
    assert_eq!(read(&s, fh, 0, 10).unwrap(), b"data");
    assert_eq!(names(&s, abi::ROOT_ID), [".", "..", "f"]);
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn forget_closes_nodes_and_release_closes_handles() {
    let d = scratch("forget");
    std::fs::write(d.join("a"), b"").unwrap();
    std::fs::write(d.join("b"), b"").unwrap();
    let s = Server::new(&d, false).unwrap();
    let a = lookup(&s, abi::ROOT_ID, "a").unwrap().nodeid;
    lookup(&s, abi::ROOT_ID, "a").unwrap();
    let b = lookup(&s, abi::ROOT_ID, "b").unwrap().nodeid;
    let fh = open(&s, b, libc::O_RDONLY).unwrap();
    assert_eq!(s.counts(), (3, 1));
    let f = abi::ForgetIn { nlookup: 1 };
    assert_eq!(
        s.handle_request(&header(op::FORGET, a), f.bytes(), &Bulk::default()),
        Reply::None
    );
    assert_eq!(s.counts(), (3, 1));
    let mut batch = abi::BatchForgetIn { count: 2, dummy: 0 }.bytes().to_vec();
    batch.extend_from_slice(
        abi::ForgetOne {
            nodeid: a,
            nlookup: 1,
        }
        .bytes(),
    );
    batch.extend_from_slice(
        abi::ForgetOne {
            nodeid: b,
            nlookup: 1,
        }
        .bytes(),
    );
    assert_eq!(
        s.handle_request(&header(op::BATCH_FORGET, 0), &batch, &Bulk::default()),
        Reply::None
    );
    assert_eq!(s.counts(), (1, 1));
    // The root is never forgotten.
    s.handle_request(
        &header(op::FORGET, abi::ROOT_ID),
        f.bytes(),
        &Bulk::default(),
    );
    assert_eq!(s.counts(), (1, 1));
    let rel = abi::ReleaseIn {
        fh,
        ..Default::default()
    };
    call(&s, op::RELEASE, b, rel.bytes()).unwrap();
    assert_eq!(s.counts(), (1, 0));
    assert_eq!(read(&s, fh, 0, 1), Err(libc::EBADF));
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn xattrs_statfs_and_errors() {
    let d = scratch("xattr");
    std::fs::write(d.join("f"), b"").unwrap();
    let s = Server::new(&d, false).unwrap();
    let f = lookup(&s, abi::ROOT_ID, "f").unwrap().nodeid;
    let value = b"v1";
    let set = cat(&[
        abi::SetxattrIn { size: 2, flags: 0 }.bytes(),
        &z("user.test"),
        value,
    ]);
    match call(&s, op::SETXATTR, f, &set) {
        // tmpfs without user xattrs: nothing more to check here.
        Err(libc::EOPNOTSUPP) => {}
        r => {
            r.unwrap();
            let g = cat(&[
                abi::GetxattrIn {
                    size: 0,
                    padding: 0,
                }
                .bytes(),
                &z("user.test"),
            ]);
            let size = abi::GetxattrOut::read(&call(&s, op::GETXATTR, f, &g).unwrap())
                .unwrap()
                .size;
            assert_eq!(size, 2);
            let g = cat(&[
                abi::GetxattrIn {
                    size: 16,
                    padding: 0,
                }
                .bytes(),
                &z("user.test"),
            ]);
            assert_eq!(call(&s, op::GETXATTR, f, &g).unwrap(), value);
            let g = cat(&[
                abi::GetxattrIn {
                    size: 1,
                    padding: 0,
                }
                .bytes(),
                &z("user.test"),
            ]);
            assert_eq!(call(&s, op::GETXATTR, f, &g), Err(libc::ERANGE));
            let l = abi::GetxattrIn {
                size: 64,
                padding: 0,
            };
            assert_eq!(
                call(&s, op::LISTXATTR, f, l.bytes()).unwrap(),
                b"user.test\0"
            );
            call(&s, op::REMOVEXATTR, f, &z("user.test")).unwrap();
        }
    }
    let st = abi::StatfsOut::read(&call(&s, op::STATFS, abi::ROOT_ID, &[]).unwrap()).unwrap();
    assert!(st.bsize > 0 && st.namelen > 0);
    // Missing and malformed arguments.
    assert_eq!(
        lookup(&s, abi::ROOT_ID, "missing").err(),
        Some(libc::ENOENT)
    );
    assert_eq!(
        call(&s, op::LOOKUP, abi::ROOT_ID, b"no-nul"),
        Err(libc::EINVAL)
    );
    assert_eq!(call(&s, op::MKDIR, abi::ROOT_ID, b"\0"), Err(libc::EINVAL));
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn a_missing_or_wrong_directory_is_a_clear_error() {
    let d = scratch("missing");
    let e = Server::new(&d.join("nope"), false).unwrap_err();
    assert!(e.to_string().contains("nope"), "{e}");
    std::fs::write(d.join("file"), b"").unwrap();
    let e = Server::new(&d.join("file"), false).unwrap_err();
    assert!(matches!(e, FsError::NotADirectory(_)), "{e}");
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn device_numbers_round_trip() {
    let dev = libc::makedev(259, 70000);
    assert_eq!(decode_dev(encode_dev(dev)), dev);
    assert_eq!(encode_dev(libc::makedev(8, 1)), 0x801);
}

#[test]
fn descriptors_past_the_budget_are_closed_and_opened_again() {
    let d = scratch("budget");
    std::fs::create_dir_all(d.join("a/b")).unwrap();
    for i in 0..300 {
        std::fs::write(d.join(format!("a/b/f{i}")), format!("file {i}\n")).unwrap();
    }
    let mut s = Server::new(&d, false).unwrap();
    s.fd_budget = MIN_FD_BUDGET;
    let a = lookup(&s, abi::ROOT_ID, "a").unwrap().nodeid;
    let b = lookup(&s, a, "b").unwrap().nodeid;
    let ids: Vec<u64> = (0..300)
        .map(|i| lookup(&s, b, &format!("f{i}")).unwrap().nodeid)
        .collect();
    let count = s.open_fds.load(Ordering::Relaxed);
    assert!(count <= MIN_FD_BUDGET, "{count} descriptors open");
    assert_eq!(s.counts().0, 303);
    // Every node is still reachable: opened again from its parent and name.
    for (i, &id) in ids.iter().enumerate() {
        let fh = open(&s, id, libc::O_RDONLY).unwrap();
        assert_eq!(
            read(&s, fh, 0, 64).unwrap(),
            format!("file {i}\n").as_bytes()
        );
        let rel = abi::ReleaseIn {
            fh,
            ..Default::default()
        };
        call(&s, op::RELEASE, id, rel.bytes()).unwrap();
    }
    // Renamed inside, then closed: found again under its new name.
    let r = abi::RenameIn {
        newdir: abi::ROOT_ID,
    };
    call(&s, op::RENAME, b, &cat(&[r.bytes(), &z("f7"), &z("seven")])).unwrap();
    for i in 8..300 {
        lookup(&s, b, &format!("f{i}")).unwrap();
    }
    let fh = open(&s, ids[7], libc::O_RDONLY).unwrap();
    assert_eq!(read(&s, fh, 0, 64).unwrap(), b"file 7\n");
    // Renamed on the host behind the server's back: stale, never another file.
    std::fs::rename(d.join("a/b/f9"), d.join("a/b/gone")).unwrap();
    std::fs::write(d.join("a/b/f9"), b"another file\n").unwrap();
    for i in 10..300 {
        lookup(&s, b, &format!("f{i}")).unwrap();
    }
    match open(&s, ids[9], libc::O_RDONLY) {
        Ok(fh) => assert_eq!(read(&s, fh, 0, 64).unwrap(), b"file 9\n"),
        Err(e) => assert_eq!(e, libc::ESTALE),
    }
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn a_write_asked_to_kill_set_ids_clears_them() {
    let d = scratch("killpriv");
    std::fs::write(d.join("suid"), b"x").unwrap();
    std::fs::set_permissions(d.join("suid"), std::fs::Permissions::from_mode(0o6755)).unwrap();
    let s = Server::new(&d, false).unwrap();
    let f = lookup(&s, abi::ROOT_ID, "suid").unwrap().nodeid;
    let fh = open(&s, f, libc::O_WRONLY).unwrap();
    // A write the kernel does not ask about keeps the bits.
    write(&s, fh, 0, b"y").unwrap();
    let mode = || {
        std::fs::metadata(d.join("suid"))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777
    };
    assert_eq!(mode(), 0o6755);
    let w = abi::WriteIn {
        fh,
        size: 1,
        write_flags: abi::WRITE_KILL_SUIDGID,
        ..Default::default()
    };
    let src = [libc::iovec {
        iov_base: b"z".as_ptr() as *mut _,
        iov_len: 1,
    }];
    let bulk = Bulk {
        src: &src,
        dst: &[],
    };
    assert!(matches!(
        s.handle_request(&header(op::WRITE, f), w.bytes(), &bulk),
        Reply::Data(_)
    ));
    assert_eq!(mode(), 0o755);
    assert_eq!(call(&s, op::FLUSH, f, &[0; 24]), Err(libc::ENOSYS));
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn stats_count_each_opcode_served() {
    let d = scratch("stats");
    std::fs::write(d.join("f"), b"x").unwrap();
    let s = Server::new(&d, false).unwrap();
    assert!(s.stats().is_empty());
    lookup(&s, abi::ROOT_ID, "f").unwrap();
    assert_eq!(lookup(&s, abi::ROOT_ID, "nope").unwrap_err(), libc::ENOENT);
    call(&s, op::GETATTR, abi::ROOT_ID, &[]).unwrap();
    assert_eq!(call(&s, 4000, abi::ROOT_ID, &[]).unwrap_err(), libc::ENOSYS);
    let got: Vec<(&str, u64)> = s.stats().iter().map(|o| (o.name, o.count)).collect();
    assert_eq!(got, [("LOOKUP", 2), ("GETATTR", 1), ("OTHER", 1)]);
    assert!(s.stats().iter().all(|o| o.nanos > 0));
    std::fs::remove_dir_all(&d).unwrap();
}

fn release(s: &Server, node: u64, fh: u64) {
    let r = abi::ReleaseIn {
        fh,
        ..Default::default()
    };
    call(s, op::RELEASE, node, r.bytes()).unwrap();
}

fn mode_of(p: &std::path::Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
}

#[test]
fn a_change_of_ids_asked_to_kill_set_ids_clears_them() {
    let d = scratch("killchown");
    for f in ["open", "closed"] {
        std::fs::write(d.join(f), b"x").unwrap();
        std::fs::set_permissions(d.join(f), std::fs::Permissions::from_mode(0o6755)).unwrap();
    }
    let s = Server::new(&d, false).unwrap();
    let meta = std::fs::metadata(&d).unwrap();
    let sa = abi::SetattrIn {
        valid: fattr::UID | fattr::GID | fattr::KILL_SUIDGID,
        uid: meta.uid(),
        gid: meta.gid(),
        ..Default::default()
    };
    // Held open by the kernel (served on the handle) and not.
    let f = lookup(&s, abi::ROOT_ID, "open").unwrap().nodeid;
    let fh = open(&s, f, libc::O_RDONLY).unwrap();
    let a = abi::AttrOut::read(&call(&s, op::SETATTR, f, sa.bytes()).unwrap()).unwrap();
    assert_eq!(a.attr.mode & 0o7777, 0o755);
    assert_eq!(mode_of(&d.join("open")), 0o755);
    release(&s, f, fh);
    let g = lookup(&s, abi::ROOT_ID, "closed").unwrap().nodeid;
    call(&s, op::SETATTR, g, sa.bytes()).unwrap();
    assert_eq!(mode_of(&d.join("closed")), 0o755);
    // A truncation asked to kill them, without a change of ids.
    std::fs::set_permissions(d.join("closed"), std::fs::Permissions::from_mode(0o6755)).unwrap();
    let t = abi::SetattrIn {
        valid: fattr::SIZE | fattr::KILL_SUIDGID,
        size: 0,
        ..Default::default()
    };
    call(&s, op::SETATTR, g, t.bytes()).unwrap();
    assert_eq!(mode_of(&d.join("closed")), 0o755);
    std::fs::remove_dir_all(&d).unwrap();
}

/// A file made by `CREATE` is served through its handle while it is open (mode,
/// times, extended attributes) and through its node once released: the same
/// file either way, also after a rename inside; a name swapped on the host
/// after the release is stale, never the other file.
#[test]
fn a_created_file_is_served_through_its_handle_then_its_node() {
    let d = scratch("handle");
    let s = Server::new(&d, false).unwrap();
    let c = abi::CreateIn {
        flags: libc::O_WRONLY as u32,
        mode: 0o600,
        ..Default::default()
    };
    let out = call(&s, op::CREATE, abi::ROOT_ID, &cat(&[c.bytes(), &z("f")])).unwrap();
    let f = abi::EntryOut::read(&out).unwrap().nodeid;
    let fh = abi::OpenOut::read(&out[128..]).unwrap().fh;
    let setattr = |valid: u32, mode: u32, mtime: u64| {
        let sa = abi::SetattrIn {
            valid,
            mode,
            mtime,
            ..Default::default()
        };
        abi::AttrOut::read(&call(&s, op::SETATTR, f, sa.bytes()).unwrap()).unwrap()
    };
    let a = setattr(fattr::MODE | fattr::MTIME, 0o640, 1_000_000);
    assert_eq!((a.attr.mode & 0o7777, a.attr.mtime), (0o640, 1_000_000));
    let xattr = |name: &str| {
        let g = abi::GetxattrIn {
            size: 64,
            ..Default::default()
        };
        call(&s, op::GETXATTR, f, &cat(&[g.bytes(), &z(name)]))
    };
    let set = abi::SetxattrIn {
        size: 2,
        ..Default::default()
    };
    let value = cat(&[set.bytes(), &z("user.k"), b"v1"]);
    match call(&s, op::SETXATTR, f, &value) {
        // A host file system without user attributes (tmpfs of old kernels).
        Err(libc::EOPNOTSUPP) => {}
        r => {
            r.unwrap();
            assert_eq!(xattr("user.k").unwrap(), b"v1");
        }
    }
    assert_eq!(xattr("security.capability").unwrap_err(), libc::ENODATA);
    release(&s, f, fh);
    // Renamed inside, then served through the node (opened from its place).
    let r = abi::RenameIn {
        newdir: abi::ROOT_ID,
    };
    call(
        &s,
        op::RENAME,
        abi::ROOT_ID,
        &cat(&[r.bytes(), &z("f"), &z("g")]),
    )
    .unwrap();
    let a = setattr(fattr::MODE | fattr::MTIME, 0o604, 2_000_000);
    assert_eq!((a.attr.mode & 0o7777, a.attr.mtime), (0o604, 2_000_000));
    assert_eq!(mode_of(&d.join("g")), 0o604);
    assert_eq!(xattr("security.capability").unwrap_err(), libc::ENODATA);
    // Another file made under the name of one released and not yet opened as a node.
    let out = call(&s, op::CREATE, abi::ROOT_ID, &cat(&[c.bytes(), &z("h")])).unwrap();
    let h = abi::EntryOut::read(&out).unwrap().nodeid;
    release(&s, h, abi::OpenOut::read(&out[128..]).unwrap().fh);
    std::fs::rename(d.join("h"), d.join("h-gone")).unwrap();
    std::fs::write(d.join("h"), b"another file\n").unwrap();
    assert_eq!(call(&s, op::GETATTR, h, &[]).unwrap_err(), libc::ESTALE);
    assert_eq!(std::fs::read(d.join("h")).unwrap(), b"another file\n");
    std::fs::remove_dir_all(&d).unwrap();
}

/// `LINK` gives a file a new name and nothing else: its owner stays (the
/// server runs as root here, the caller is uid 0).
#[test]
fn a_link_keeps_the_files_owner() {
    let d = scratch("linkowner");
    std::fs::write(d.join("f"), b"x").unwrap();
    std::os::unix::fs::chown(d.join("f"), Some(65534), Some(65534)).unwrap();
    let s = Server::new(&d, false).unwrap();
    let f = lookup(&s, abi::ROOT_ID, "f").unwrap().nodeid;
    let l = abi::LinkIn { oldnodeid: f };
    let e = abi::EntryOut::read(
        &call(&s, op::LINK, abi::ROOT_ID, &cat(&[l.bytes(), &z("g")])).unwrap(),
    )
    .unwrap();
    assert_eq!((e.nodeid, e.attr.uid, e.attr.gid), (f, 65534, 65534));
    let m = std::fs::metadata(d.join("f")).unwrap();
    assert_eq!((m.uid(), m.gid(), m.nlink()), (65534, 65534, 2));
    std::fs::remove_dir_all(&d).unwrap();
}

/// What a root server makes belongs to the caller, as natively: its uid and
/// gid, or in a set-group-id directory its uid and the directory's group.
#[test]
fn made_files_take_the_callers_ids_or_a_set_group_id_directorys_group() {
    let d = scratch("newids");
    std::fs::create_dir(d.join("sgid")).unwrap();
    std::os::unix::fs::chown(d.join("sgid"), None, Some(65533)).unwrap();
    std::fs::set_permissions(d.join("sgid"), std::fs::Permissions::from_mode(0o2777)).unwrap();
    let s = Server::new(&d, false).unwrap();
    let sgid = lookup(&s, abi::ROOT_ID, "sgid").unwrap().nodeid;
    let c = abi::CreateIn {
        flags: libc::O_WRONLY as u32,
        mode: 0o644,
        ..Default::default()
    };
    let m = abi::MkdirIn {
        mode: 0o755,
        umask: 0,
    };
    let ids = |p: &str| {
        let m = std::fs::symlink_metadata(d.join(p)).unwrap();
        (m.uid(), m.gid())
    };
    for (uid, gid) in [(0, 0), (65534, 65534)] {
        let at = |opcode, nodeid| abi::InHeader {
            uid,
            gid,
            ..header(opcode, nodeid)
        };
        for (dir, pre) in [(abi::ROOT_ID, ""), (sgid, "sgid/")] {
            let f = format!("f{uid}");
            let args = cat(&[c.bytes(), &z(&f)]);
            let Reply::Data(out) = s.handle_request(&at(op::CREATE, dir), &args, &Bulk::default())
            else {
                panic!("CREATE {pre}{f} failed");
            };
            let e = abi::EntryOut::read(&out).unwrap();
            let want = if pre.is_empty() {
                (uid, gid)
            } else {
                (uid, 65533)
            };
            assert_eq!((e.attr.uid, e.attr.gid), want, "{pre}{f}");
            assert_eq!(ids(&format!("{pre}{f}")), want, "{pre}{f}");
            let dn = format!("d{uid}");
            let args = cat(&[m.bytes(), &z(&dn)]);
            assert!(matches!(
                s.handle_request(&at(op::MKDIR, dir), &args, &Bulk::default()),
                Reply::Data(_)
            ));
            assert_eq!(ids(&format!("{pre}{dn}")), want, "{pre}{dn}");
        }
    }
    std::fs::remove_dir_all(&d).unwrap();
}
