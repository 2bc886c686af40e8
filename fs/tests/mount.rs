//! One kernel per process: every check of the mounted API runs in this one
//! test, against a real ext4 image made by `mkfs.ext4 -d`.

use std::ffi::OsStr;
use std::path::Path;
use std::process::Command;

use lkl_fs::{ops, FileKind, FsError, FsType, MountOptions, Mounted};

fn run(prog: &str, args: &[&str]) {
    let st = Command::new(prog)
        .args(args)
        .status()
        .unwrap_or_else(|e| panic!("cannot run {prog} (install e2fsprogs): {e}"));
    assert!(st.success(), "{prog} {args:?}: {st}");
}

#[test]
fn probe_mount_walk_write_close() {
    let dir = std::env::temp_dir().join(format!("lkl-fs-unit-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let src = dir.join("src");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::write(src.join("sub/a.txt"), b"hello").unwrap();
    std::os::unix::fs::symlink("sub/a.txt", src.join("link")).unwrap();
    let img = dir.join("ext4.img");
    run(
        "mkfs.ext4",
        &[
            "-q",
            "-F",
            "-d",
            src.to_str().unwrap(),
            img.to_str().unwrap(),
            "16M",
        ],
    );
    assert_eq!(lkl_fs::probe_image(&img, None).unwrap(), FsType::Ext4);
    match lkl_fs::probe_image(&img, Some(1)) {
        Err(FsError::NoPartition { partition: 1, .. }) => {}
        other => panic!("{other:?}"),
    }

    let m = Mounted::open(&MountOptions::read_write(&img)).unwrap();
    assert_eq!(m.fstype(), "ext4");
    let root = m.path().to_path_buf();
    let mut names: Vec<_> = ops::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().name.into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["link", "lost+found", "sub"]);
    let st = ops::lstat(&root.join("link")).unwrap();
    assert_eq!(st.kind(), FileKind::Symlink);
    assert_eq!(ops::readlink(&root.join("link")).unwrap(), "sub/a.txt");
    let f = ops::open(&root.join("sub/a.txt"), ops::O_RDONLY, 0).unwrap();
    let mut buf = [0u8; 16];
    assert_eq!(f.read_full(&mut buf).unwrap(), 5);
    assert_eq!(&buf[..5], b"hello");
    drop(f);

    // Write: a sparse file, xattrs, times, a fifo, a hard link.
    let p = root.join("sparse");
    let f = ops::open(&p, ops::O_WRONLY | ops::O_CREAT, 0o600).unwrap();
    f.pwrite_all(b"x", 1 << 20).unwrap();
    f.set_xattr(OsStr::new("user.k"), b"v", 0).unwrap();
    let t = lkl_fs::Timespec {
        sec: 1_000_000_000,
        nsec: 123_456_789,
    };
    f.set_times(t, t).unwrap();
    let ext = f.data_extents((1 << 20) + 1).unwrap();
    assert_eq!(ext.len(), 1, "{ext:?}");
    assert!(ext[0].0 > 0 && ext[0].0 <= 1 << 20, "{ext:?}");
    drop(f);
    assert_eq!(ops::lstat(&p).unwrap().mtime, t);
    assert_eq!(ops::list_xattrs(&p).unwrap(), ["user.k"]);
    assert_eq!(ops::get_xattr(&p, OsStr::new("user.k")).unwrap(), b"v");
    ops::mknod(&root.join("fifo"), 0o10644, 0).unwrap();
    assert_eq!(
        ops::lstat(&root.join("fifo")).unwrap().kind(),
        FileKind::Fifo
    );
    ops::link(&p, &root.join("hard")).unwrap();
    assert_eq!(ops::lstat(&p).unwrap().nlink, 2);
    match ops::lstat(Path::new("/mnt/nothing")) {
        Err(FsError::Sys {
            op: "lstat", errno, ..
        }) => assert_eq!(errno, lkl_fs::Errno::ENOENT),
        other => panic!("{other:?}"),
    }
    m.close().unwrap();
    run("e2fsck", &["-fn", img.to_str().unwrap()]);
    std::fs::remove_dir_all(&dir).unwrap();
}
