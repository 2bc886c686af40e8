//! End-to-end volume tests, with a runner of their own: one kernel per
//! process, so the cases run in order against one boot. Host directories
//! are given to the kernel as virtio-fs devices and mounted with its own
//! `virtiofs` file system; what the kernel does is checked on the host
//! with the host's own tools (`sha256sum`, the file system itself).

use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use lkl::{sys, Errno, VolumeId};
use lkl_disk_test::{lkl_read, lkl_write, noise, Outcome};

/// The mount points inside.
const RW: &str = "/vol/rw";
const RO: &str = "/vol/ro";
/// The large file's size.
const BIG: u64 = 400 << 20;

struct Dirs {
    top: PathBuf,
    rw: PathBuf,
    ro: PathBuf,
}

fn sys_err(what: &str, path: &str) -> impl FnOnce(Errno) -> String {
    let s = format!("{what} {path} in lkl");
    move |e| format!("{s}: {e}")
}

fn host_read(p: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(p).map_err(|e| format!("read {} on the host: {e}", p.display()))
}

fn expect_errno(what: &str, r: Result<impl std::fmt::Debug, Errno>, want: Errno) -> Outcome {
    match r {
        Err(e) if e == want => Ok(()),
        other => Err(format!("{what}: {other:?}, expected {want}")),
    }
}

/// The names in directory `path` inside, sorted, without `.` and `..`.
fn lkl_names(path: &str) -> Result<Vec<String>, String> {
    let flags = (sys::LKL_O_RDONLY | sys::LKL_O_DIRECTORY) as i32;
    let fd = lkl::open(path, flags, 0).map_err(sys_err("open", path))?;
    let entries = lkl::getdents64(fd);
    let _ = lkl::close(fd);
    let mut names: Vec<String> = entries
        .map_err(sys_err("getdents64", path))?
        .into_iter()
        .map(|e| e.name.to_string_lossy().into_owned())
        .filter(|n| n != "." && n != "..")
        .collect();
    names.sort();
    Ok(names)
}

fn host_names(dir: &Path) -> Result<Vec<String>, String> {
    let mut names = std::fs::read_dir(dir)
        .map_err(|e| format!("read_dir {}: {e}", dir.display()))?
        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    names.sort();
    Ok(names)
}

fn host_file_is_read_inside(d: &Dirs) -> Outcome {
    let got = lkl_read(format!("{RW}/hello.txt"))?;
    if got != b"hello from the host\n" {
        return Err(format!("hello.txt read {got:?}"));
    }
    let st = lkl::stat(format!("{RW}/hello.txt")).map_err(sys_err("stat", "hello.txt"))?;
    let host = std::fs::metadata(d.rw.join("hello.txt")).map_err(|e| e.to_string())?;
    if st.st_size as u64 != host.len() || st.st_ino != host.ino() || st.st_mode != host.mode() {
        return Err(format!(
            "stat inside {st:?} differs from the host's {host:?}"
        ));
    }
    let deep = lkl_read(format!("{RW}/nested/a/b/deep.txt"))?;
    (deep == b"deep inside\n")
        .then_some(())
        .ok_or(format!("deep.txt read {deep:?}"))
}

fn writes_inside_appear_on_the_host(d: &Dirs) -> Outcome {
    let data = noise(3_000_001, 3);
    lkl::mkdir(format!("{RW}/made"), 0o750).map_err(sys_err("mkdir", "made"))?;
    lkl_write(format!("{RW}/made/file.bin"), &data)?;
    if host_read(&d.rw.join("made/file.bin"))? != data {
        return Err("made/file.bin differs on the host".into());
    }
    let meta = std::fs::metadata(d.rw.join("made")).map_err(|e| e.to_string())?;
    if !meta.is_dir() || meta.permissions().mode() & 0o777 != 0o750 & !0o022 {
        return Err(format!("made on the host: {meta:?}"));
    }
    // Rename, hard link, symlink, chmod, truncate, unlink, rmdir.
    let p = |s: &str| format!("{RW}/{s}");
    lkl::renameat2(
        lkl::AT_FDCWD,
        p("made/file.bin"),
        lkl::AT_FDCWD,
        p("moved.bin"),
        0,
    )
    .map_err(sys_err("rename", "made/file.bin"))?;
    lkl::linkat(
        lkl::AT_FDCWD,
        p("moved.bin"),
        lkl::AT_FDCWD,
        p("hard.bin"),
        0,
    )
    .map_err(sys_err("link", "moved.bin"))?;
    lkl::symlinkat("moved.bin", lkl::AT_FDCWD, p("soft")).map_err(sys_err("symlink", "soft"))?;
    lkl::fchmodat2(lkl::AT_FDCWD, p("moved.bin"), 0o600, 0)
        .map_err(sys_err("chmod", "moved.bin"))?;
    lkl::truncate(p("hard.bin"), 10).map_err(sys_err("truncate", "hard.bin"))?;
    let moved = std::fs::symlink_metadata(d.rw.join("moved.bin")).map_err(|e| e.to_string())?;
    if moved.nlink() != 2 || moved.len() != 10 || moved.mode() & 0o777 != 0o600 {
        return Err(format!("moved.bin on the host: {moved:?}"));
    }
    let link = std::fs::read_link(d.rw.join("soft")).map_err(|e| e.to_string())?;
    if link != Path::new("moved.bin") || lkl_read(p("soft"))? != data[..10] {
        return Err(format!("soft -> {}", link.display()));
    }
    lkl::unlinkat(lkl::AT_FDCWD, p("hard.bin"), 0).map_err(sys_err("unlink", "hard.bin"))?;
    lkl::unlinkat(lkl::AT_FDCWD, p("made"), sys::LKL_AT_REMOVEDIR as i32)
        .map_err(sys_err("rmdir", "made"))?;
    if d.rw.join("hard.bin").exists() || d.rw.join("made").exists() {
        return Err("unlink or rmdir inside left the host's file".into());
    }
    Ok(())
}

/// Reads the 400 MB file inside and pipes it to the host's sha256sum.
fn large_file_has_the_right_sha256(d: &Dirs) -> Outcome {
    let host = d.rw.join("big.bin");
    let want = sha256(Command::new("sha256sum").arg(&host).stdin(Stdio::null()))?;
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("sha256sum: {e}"))?;
    let mut stdin = child.stdin.take().expect("piped");
    let path = format!("{RW}/big.bin");
    let fd = lkl::open(&path, sys::LKL_O_RDONLY as i32, 0).map_err(sys_err("open", &path))?;
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    let start = Instant::now();
    let r = loop {
        match lkl::read(fd, &mut buf) {
            Ok(0) => break Ok(()),
            Ok(n) => {
                total += n as u64;
                if let Err(e) = stdin.write_all(&buf[..n]) {
                    break Err(format!("to sha256sum: {e}"));
                }
            }
            Err(e) => break Err(format!("read {path} in lkl: {e}")),
        }
    };
    let _ = lkl::close(fd);
    drop(stdin);
    r?;
    let secs = start.elapsed().as_secs_f64();
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    let got = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned();
    println!(
        "    400 MB read inside in {secs:.2} s ({:.0} MB/s)",
        total as f64 / secs / 1e6
    );
    if total != BIG || got != want {
        return Err(format!(
            "{total} bytes, sha256 {got}, expected {BIG} bytes, {want}"
        ));
    }
    Ok(())
}

fn sha256(cmd: &mut Command) -> Result<String, String> {
    let out = cmd.output().map_err(|e| format!("sha256sum: {e}"))?;
    if !out.status.success() {
        return Err(format!("sha256sum: {}", out.status));
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned())
}

fn listing_matches_the_host(d: &Dirs) -> Outcome {
    std::fs::create_dir(d.rw.join("many")).map_err(|e| e.to_string())?;
    for i in 0..500 {
        std::fs::write(
            d.rw.join(format!("many/entry-with-a-long-name-{i:04}")),
            b"",
        )
        .map_err(|e| e.to_string())?;
    }
    for (inside, host) in [
        (RW.to_owned(), d.rw.clone()),
        (format!("{RW}/many"), d.rw.join("many")),
    ] {
        let (a, b) = (lkl_names(&inside)?, host_names(&host)?);
        if a != b {
            return Err(format!(
                "{inside}: {} names inside, {} on the host: {a:?}",
                a.len(),
                b.len()
            ));
        }
    }
    Ok(())
}

fn read_only_refuses_writes(d: &Dirs) -> Outcome {
    if lkl_read(format!("{RO}/kept.txt"))? != b"read-only\n" {
        return Err("kept.txt unreadable on the read-only volume".into());
    }
    let flags = (sys::LKL_O_WRONLY | sys::LKL_O_CREAT) as i32;
    expect_errno(
        "create",
        lkl::open(format!("{RO}/new.txt"), flags, 0o644),
        Errno::EROFS,
    )?;
    expect_errno(
        "mkdir",
        lkl::mkdir(format!("{RO}/newdir"), 0o755),
        Errno::EROFS,
    )?;
    expect_errno(
        "open for writing",
        lkl::open(format!("{RO}/kept.txt"), sys::LKL_O_WRONLY as i32, 0),
        Errno::EROFS,
    )?;
    expect_errno(
        "unlink",
        lkl::unlinkat(lkl::AT_FDCWD, format!("{RO}/kept.txt"), 0),
        Errno::EROFS,
    )?;
    if d.ro.join("new.txt").exists() || d.ro.join("newdir").exists() {
        return Err("a refused write created a host file".into());
    }
    if host_read(&d.ro.join("kept.txt"))? != b"read-only\n" {
        return Err("kept.txt changed on the host".into());
    }
    Ok(())
}

fn host_changes_are_seen(d: &Dirs) -> Outcome {
    // Looked up (and missing) first: a miss is not remembered.
    expect_errno("stat", lkl::stat(format!("{RW}/later.txt")), Errno::ENOENT)?;
    std::fs::write(d.rw.join("later.txt"), b"made on the host later\n")
        .map_err(|e| e.to_string())?;
    if lkl_read(format!("{RW}/later.txt"))? != b"made on the host later\n" {
        return Err("later.txt not seen inside".into());
    }
    // Contents changed on the host: the next open reads them.
    std::fs::write(d.rw.join("later.txt"), b"changed, and longer than before\n")
        .map_err(|e| e.to_string())?;
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let got = lkl_read(format!("{RW}/later.txt"))?;
    (got == b"changed, and longer than before\n")
        .then_some(())
        .ok_or(format!(
            "after a host change: {:?}",
            String::from_utf8_lossy(&got)
        ))
}

/// `../`, absolute and relative links out, and a name swapped between a
/// file and a link out while it is being looked up: the host's secret
/// (beside the shared directory) is never read.
fn escapes_stay_inside(d: &Dirs) -> Outcome {
    let secret = d.top.join("secret");
    let secret_name = "secret";
    let outside = |p: String| -> Outcome {
        match lkl_read(&p) {
            Ok(data) if data == b"SECRET\n" => Err(format!("{p} read the host's secret")),
            _ => Ok(()),
        }
    };
    outside(format!("{RW}/../{secret_name}"))?;
    outside(format!("{RW}/../../{secret_name}"))?;
    outside(format!("{RW}/abs"))?;
    outside(format!("{RW}/rel"))?;
    outside(format!("{RW}/nested/../../{secret_name}"))?;
    // Writing through a link out creates nothing outside.
    let _ = lkl_write(format!("{RW}/abs"), b"overwritten");
    if host_read(&secret)? != b"SECRET\n" {
        return Err("the secret was written through a link".into());
    }
    // The race: a host thread makes names `swap-N`, each first a file
    // and then, renamed over it, a link out, while names are looked up
    // inside as they appear (a new name is always looked up by the server).
    let stop = Arc::new(AtomicBool::new(false));
    let made = Arc::new(AtomicU64::new(0));
    let swapper = {
        let (dir, stop, made, target) = (d.rw.clone(), stop.clone(), made.clone(), secret.clone());
        std::thread::spawn(move || {
            let (file, link) = (dir.join(".swap-file"), dir.join(".swap-link"));
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let name = dir.join(format!("swap-{n}"));
                let _ = std::fs::write(&file, b"inside\n");
                let _ = std::fs::rename(&file, &name);
                made.store(n, Ordering::Release);
                let _ = std::os::unix::fs::symlink(&target, &link);
                let _ = std::fs::rename(&link, &name);
                n += 1;
            }
            n
        })
    };
    let (mut tries, mut inside_reads) = (0u64, 0u64);
    let mut result = Ok(());
    let start = Instant::now();
    while start.elapsed() < std::time::Duration::from_secs(3) {
        let n = made.load(Ordering::Acquire);
        tries += 1;
        match lkl_read(format!("{RW}/swap-{n}")) {
            Ok(data) if data == b"SECRET\n" => {
                result = Err(format!(
                    "swap-{n}, a link swapped in, read the host's secret"
                ));
                break;
            }
            Ok(data) if data == b"inside\n" => inside_reads += 1,
            _ => {}
        }
    }
    stop.store(true, Ordering::Relaxed);
    let swaps = swapper.join().map_err(|_| "the swapper panicked")?;
    result?;
    println!(
        "    {swaps} names swapped on the host, {tries} lookups inside, {inside_reads} read the file, none outside"
    );
    if swaps < 100 || tries < 100 {
        return Err(format!(
            "the race did not run: {swaps} swaps, {tries} lookups"
        ));
    }
    Ok(())
}

fn missing_directory_is_a_clear_error(d: &Dirs) -> Outcome {
    let missing = d.top.join("does-not-exist");
    match lkl::add_volume(&missing, false) {
        Err(e @ lkl::VolumeError::Device(_)) => {
            let msg = e.to_string();
            if msg.contains("does-not-exist") && msg.contains("No such file") {
                Ok(())
            } else {
                Err(format!("unclear: {msg}"))
            }
        }
        other => Err(format!("add_volume of a missing directory: {other:?}")),
    }?;
    match lkl::add_volume(d.top.join("secret"), false) {
        Err(lkl::VolumeError::Device(lkl_virtio_not_dir)) => {
            let msg = lkl_virtio_not_dir.to_string();
            msg.contains("not a directory")
                .then_some(())
                .ok_or(format!("unclear: {msg}"))
        }
        other => Err(format!("add_volume of a file: {other:?}")),
    }
}

/// A volume added while the kernel runs (hot-added), mounted and read.
fn hot_added_volume(d: &Dirs) -> Outcome {
    let dir = d.top.join("hot");
    std::fs::create_dir(&dir).map_err(|e| e.to_string())?;
    std::fs::write(dir.join("f"), b"hot\n").map_err(|e| e.to_string())?;
    let id = lkl::add_volume(&dir, false).map_err(|e| e.to_string())?;
    lkl::mount_volume(id, "/vol/hot").map_err(|e| e.to_string())?;
    let got = lkl_read("/vol/hot/f")?;
    (got == b"hot\n")
        .then_some(())
        .ok_or(format!("read {got:?}"))
}

fn setup() -> Result<Dirs, String> {
    let top = std::env::temp_dir().join(format!("lkl-volume-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&top);
    let (rw, ro) = (top.join("shared"), top.join("readonly"));
    let io = |e: std::io::Error| e.to_string();
    std::fs::create_dir_all(rw.join("nested/a/b")).map_err(io)?;
    std::fs::create_dir_all(&ro).map_err(io)?;
    std::fs::write(rw.join("hello.txt"), b"hello from the host\n").map_err(io)?;
    std::fs::write(rw.join("nested/a/b/deep.txt"), b"deep inside\n").map_err(io)?;
    std::fs::write(ro.join("kept.txt"), b"read-only\n").map_err(io)?;
    std::fs::write(top.join("secret"), b"SECRET\n").map_err(io)?;
    std::os::unix::fs::symlink(top.join("secret"), rw.join("abs")).map_err(io)?;
    std::os::unix::fs::symlink("../secret", rw.join("rel")).map_err(io)?;
    let mut big = std::fs::File::create(rw.join("big.bin")).map_err(io)?;
    let chunk = noise(1 << 20, 0xb16);
    for i in 0..BIG >> 20 {
        let mut c = chunk.clone();
        c[..8].copy_from_slice(&i.to_le_bytes());
        big.write_all(&c).map_err(io)?;
    }
    Ok(Dirs { top, rw, ro })
}

fn main() -> ExitCode {
    let (mut passed, mut failed) = (0, 0);
    let mut report = |name: &str, r: std::thread::Result<Outcome>| match r {
        Ok(Ok(())) => {
            passed += 1;
            println!("test volume::{name} ... ok");
        }
        Ok(Err(e)) => {
            failed += 1;
            println!("test volume::{name} ... FAILED: {e}");
        }
        Err(_) => {
            failed += 1;
            println!("test volume::{name} ... FAILED: panicked");
        }
    };
    if Command::new("sha256sum").arg("--version").output().is_err() {
        println!("sha256sum is missing (apt-get install coreutils): no volume tests");
        println!("0 passed, 1 failed");
        return ExitCode::FAILURE;
    }
    let d = match setup() {
        Ok(d) => d,
        Err(e) => {
            println!("test volume::setup ... FAILED: {e}");
            println!("0 passed, 1 failed");
            return ExitCode::FAILURE;
        }
    };
    // Before boot: announced on the command line.
    let ids: Result<(VolumeId, VolumeId), _> =
        lkl::add_volume(&d.rw, false).and_then(|a| Ok((a, lkl::add_volume(&d.ro, true)?)));
    let (rw, ro) = ids.expect("add the volumes");
    let kernel = lkl::boot(&lkl::BootOptions {
        memory: 128 << 20,
        // LKL_VOLUME_TEST_VERBOSE=1 shows every kernel message.
        loglevel: match std::env::var_os("LKL_VOLUME_TEST_VERBOSE") {
            Some(_) => None,
            None => Some(4),
        },
        ..Default::default()
    })
    .expect("boot");
    report(
        "volumes_mount",
        Ok(lkl::mount_volume(rw, RW)
            .and_then(|()| lkl::mount_volume(ro, RO))
            .map_err(|e| e.to_string())),
    );
    type Case = fn(&Dirs) -> Outcome;
    let cases: [(&str, Case); 9] = [
        ("host_file_is_read_inside", host_file_is_read_inside),
        (
            "writes_inside_appear_on_the_host",
            writes_inside_appear_on_the_host,
        ),
        ("listing_matches_the_host", listing_matches_the_host),
        ("read_only_refuses_writes", read_only_refuses_writes),
        ("host_changes_are_seen", host_changes_are_seen),
        ("escapes_stay_inside", escapes_stay_inside),
        (
            "large_file_has_the_right_sha256",
            large_file_has_the_right_sha256,
        ),
        (
            "missing_directory_is_a_clear_error",
            missing_directory_is_a_clear_error,
        ),
        ("hot_added_volume", hot_added_volume),
    ];
    for (name, case) in cases {
        report(name, std::panic::catch_unwind(|| case(&d)));
    }
    report(
        "umount",
        Ok([RW, RO, "/vol/hot"]
            .iter()
            .try_for_each(|m| lkl::umount2(m, 0).map_err(sys_err("umount", m)))),
    );
    report("halt", Ok(kernel.halt().map_err(|e| e.to_string())));
    let _ = std::fs::remove_dir_all(&d.top);
    println!("{passed} passed, {failed} failed");
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
