//! End-to-end disk tests, with a runner of their own: one kernel per
//! process, so the cases run in order against one boot. Images are made
//! at test time with the real mkfs tools and checked afterwards with the
//! real fsck tools; a file system whose tools are missing is skipped.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use lkl::{DiskError, DiskId, Errno};
use lkl_disk_test::*;

/// Sectors of the partitioned test images' partitions: (start, count).
const PART1: (u64, u64) = (2048, 32768);
const PART2: (u64, u64) = (34816, 61440);
const PART_SECTORS: u64 = 131072;

struct Images {
    dir: PathBuf,
    src: PathBuf,
    ext4: PathBuf,
    ext4_ro: PathBuf,
    gpt: PathBuf,
    mbr: PathBuf,
}

struct Disks {
    ext4: DiskId,
    ext4_ro: DiskId,
    gpt: DiskId,
    mbr: DiskId,
}

fn ext4_from(dir: &Path, img: &Path, size: &str) -> Outcome {
    run("mkfs.ext4", &["-q", "-F", "-d", s(dir), s(img), size]).map(drop)
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn make_images() -> Result<Images, String> {
    let dir = scratch();
    let src = dir.join("src");
    write_tree(&src)?;
    let ext4 = dir.join("ext4.img");
    ext4_from(&src, &ext4, "64M")?;
    let ext4_ro = dir.join("ext4-ro.img");
    ext4_from(&src, &ext4_ro, "64M")?;

    let gpt = partitioned(&dir, "gpt")?;
    let mbr = partitioned(&dir, "dos")?;
    Ok(Images {
        dir,
        src,
        ext4,
        ext4_ro,
        gpt,
        mbr,
    })
}

/// An image with a partition table (`label`: `gpt` or `dos`) of two
/// partitions, each its own ext4 with a marker file.
fn partitioned(dir: &Path, label: &str) -> Result<PathBuf, String> {
    let img = dir.join(format!("{label}.img"));
    sparse(&img, PART_SECTORS * 512)?;
    let script = format!(
        "label: {label}\nstart={}, size={}, type=linux\nstart={}, size={}, type=linux\n",
        PART1.0, PART1.1, PART2.0, PART2.1
    );
    let mut child = std::process::Command::new("sfdisk")
        .args(["-q", s(&img)])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .map_err(|e| format!("sfdisk: {e}"))?;
    use std::io::Write;
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(script.as_bytes())
        .map_err(|e| format!("sfdisk stdin: {e}"))?;
    let st = child.wait().map_err(|e| format!("sfdisk: {e}"))?;
    if !st.success() {
        return Err(format!("sfdisk failed: {st}"));
    }
    for (n, (start, count)) in [(1, PART1), (2, PART2)] {
        let tree = dir.join(format!("part{n}"));
        std::fs::create_dir_all(&tree).map_err(|e| e.to_string())?;
        std::fs::write(tree.join("marker"), format!("partition {n}\n"))
            .map_err(|e| e.to_string())?;
        let part = dir.join(format!("part{n}.img"));
        ext4_from(&tree, &part, &format!("{}k", count / 2))?;
        place(&img, &part, start * 512)?;
    }
    Ok(img)
}

/// e2fsck -fn clean, and debugfs's view of `file`.
fn host_ext4(img: &Path, file: &str) -> Result<Vec<u8>, String> {
    run("e2fsck", &["-fn", s(img)])?;
    let out = std::process::Command::new("debugfs")
        .args(["-R", &format!("cat {file}"), s(img)])
        .output()
        .map_err(|e| format!("debugfs: {e}"))?;
    Ok(out.stdout)
}

fn ext4_read_write(im: &Images, d: &Disks) -> Outcome {
    let mnt = lkl::mount_disk(d.ext4, None, "ext4", None, false).map_err(|e| e.to_string())?;
    check_tree(&mnt)?;
    let data = noise(300_000, 7);
    lkl_write(mnt.join("newfile"), &data)?;
    lkl::mkdir(mnt.join("newdir"), 0o755).map_err(|e| format!("mkdir: {e}"))?;
    lkl_write(mnt.join("newdir/inner"), b"inner\n")?;
    lkl::umount_disk(&mnt).map_err(|e| e.to_string())?;
    let stats = lkl::disk_stats(d.ext4).map_err(|e| e.to_string())?;
    if stats.writes == 0 || stats.flushes == 0 || stats.errors != 0 {
        return Err(format!("unexpected counters {stats:?}"));
    }
    let host = host_ext4(&im.ext4, "/newfile")?;
    if host != data {
        let at = host.iter().zip(&data).position(|(a, b)| a != b);
        return Err(format!(
            "debugfs reads different contents in /newfile: {} bytes, {} expected, first difference at {at:?}",
            host.len(),
            data.len()
        ));
    }
    if host_ext4(&im.ext4, "/newdir/inner")? != b"inner\n" {
        return Err("debugfs reads different contents in /newdir/inner".into());
    }
    // Mounted again: what was written is there.
    let mnt = lkl::mount_disk(d.ext4, None, "ext4", None, true).map_err(|e| e.to_string())?;
    let back = lkl_read(mnt.join("newfile"))?;
    lkl::umount_disk(&mnt).map_err(|e| e.to_string())?;
    if back != data {
        return Err("newfile differs after a remount".into());
    }
    Ok(())
}

/// Four host threads write and read back files of their own at once, and
/// read a shared one, on one mount.
fn parallel_threads(im: &Images, d: &Disks) -> Outcome {
    let mnt = lkl::mount_disk(d.ext4, None, "ext4", None, false).map_err(|e| e.to_string())?;
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let mnt = mnt.clone();
            std::thread::spawn(move || -> Outcome {
                let data = noise(4 << 20, 100 + t);
                let path = mnt.join(format!("thread{t}.bin"));
                lkl_write(&path, &data)?;
                for _ in 0..2 {
                    if lkl_read(&path)? != data {
                        return Err(format!("thread {t}: its file reads back different"));
                    }
                    check_tree(&mnt)?;
                }
                Ok(())
            })
        })
        .collect();
    let mut result = Ok(());
    for t in threads {
        let r = t.join().unwrap_or_else(|_| Err("a thread panicked".into()));
        result = result.and(r);
    }
    lkl::umount_disk(&mnt).map_err(|e| e.to_string())?;
    result?;
    if host_ext4(&im.ext4, "/thread3.bin")? != noise(4 << 20, 103) {
        return Err("debugfs reads different contents in /thread3.bin".into());
    }
    Ok(())
}

fn read_only_disk_is_never_written(im: &Images, d: &Disks, before: &[u8]) -> Outcome {
    match lkl::mount_disk(d.ext4_ro, None, "ext4", None, false) {
        Err(DiskError::ReadOnly { .. }) => {}
        other => return Err(format!("rw mount of a read-only disk: {other:?}")),
    }
    let mnt = lkl::mount_disk(d.ext4_ro, None, "ext4", None, true).map_err(|e| e.to_string())?;
    check_tree(&mnt)?;
    match lkl::creat(mnt.join("nope"), 0o644) {
        Err(Errno::EROFS) => {}
        other => return Err(format!("creat on a read-only mount: {other:?}")),
    }
    lkl::umount_disk(&mnt).map_err(|e| e.to_string())?;
    // The block device itself refuses writers.
    let name = lkl::disk_name(d.ext4_ro).map_err(|e| e.to_string())?;
    match lkl::open(format!("/dev/{name}"), lkl::sys::LKL_O_RDWR as i32, 0) {
        Err(Errno::EROFS) | Err(Errno::EACCES) => {}
        Ok(fd) => {
            let r = lkl::write(fd, &[0u8; 512]);
            let _ = lkl::close(fd);
            if r != Err(Errno::EPERM) {
                return Err(format!("writing /dev/{name}: {r:?}"));
            }
        }
        other => return Err(format!("opening /dev/{name} for writing: {other:?}")),
    }
    let stats = lkl::disk_stats(d.ext4_ro).map_err(|e| e.to_string())?;
    if stats.writes != 0 || stats.reads == 0 {
        return Err(format!("unexpected counters {stats:?}"));
    }
    let after = std::fs::read(&im.ext4_ro).map_err(|e| e.to_string())?;
    if after != before {
        return Err("the read-only image changed".into());
    }
    Ok(())
}

/// Partition 2 mounted read-write, partition 1 read-only beside it, of a
/// GPT or MBR disk `id` whose image is `img`.
fn partitions(im: &Images, img: &Path, id: DiskId) -> Outcome {
    let p2 = lkl::mount_disk(id, Some(2), "ext4", None, false).map_err(|e| e.to_string())?;
    let name = lkl::disk_name(id).map_err(|e| e.to_string())?;
    if p2 != Path::new(&format!("/mnt/{name}2")) {
        return Err(format!("partition 2 mounted on {}", p2.display()));
    }
    if lkl_read(p2.join("marker"))? != b"partition 2\n" {
        return Err("partition 2 has the wrong marker".into());
    }
    lkl_write(p2.join("written"), b"into partition 2\n")?;
    // Partition 1, read-only, alongside.
    let p1 = lkl::mount_disk(id, Some(1), "ext4", None, true).map_err(|e| e.to_string())?;
    if lkl_read(p1.join("marker"))? != b"partition 1\n" {
        return Err("partition 1 has the wrong marker".into());
    }
    lkl::umount_disk(&p1).map_err(|e| e.to_string())?;
    lkl::umount_disk(&p2).map_err(|e| e.to_string())?;
    match lkl::mount_disk(id, Some(3), "ext4", None, true) {
        Err(DiskError::NoPartition { partition: 3, .. }) => {}
        other => return Err(format!("partition 3: {other:?}")),
    }
    let part2 = im.dir.join("part2-after.img");
    extract(img, PART2.0 * 512, PART2.1 * 512, &part2)?;
    if host_ext4(&part2, "/written")? != b"into partition 2\n" {
        return Err("debugfs reads different contents in partition 2's /written".into());
    }
    let part1 = im.dir.join("part1-after.img");
    extract(img, PART1.0 * 512, PART1.1 * 512, &part1)?;
    run("e2fsck", &["-fn", s(&part1)])?;
    Ok(())
}

fn errors_carry_context(d: &Disks) -> Outcome {
    let e = lkl::mount_disk(d.ext4, None, "xfs", None, true).unwrap_err();
    let msg = e.to_string();
    if !msg.starts_with("mount xfs /dev/vd") || !matches!(e, DiskError::Sys { .. }) {
        return Err(format!("wrong fstype: {msg}"));
    }
    let e = lkl::mount_disk(DiskId(99), None, "ext4", None, true).unwrap_err();
    if !matches!(e, DiskError::UnknownDisk(DiskId(99))) {
        return Err(format!("unknown disk: {e}"));
    }
    Ok(())
}

/// An image cut short under the kernel's feet: reads past the end fail
/// with EIO inside LKL (no crash), and the disk can still be unmounted.
fn truncated_image_gives_eio(im: &Images) -> Outcome {
    let img = im.dir.join("truncated.img");
    ext4_from(&im.src, &img, "64M")?;
    let id = lkl::add_disk(lkl::Disk::open(&img, true).map_err(|e| e.to_string())?)
        .map_err(|e| e.to_string())?;
    let mnt = lkl::mount_disk(id, None, "ext4", None, true).map_err(|e| e.to_string())?;
    std::fs::File::options()
        .write(true)
        .open(&img)
        .and_then(|f| f.set_len(1 << 20))
        .map_err(|e| e.to_string())?;
    let r = lkl_read(mnt.join("big.bin"));
    lkl::umount_disk(&mnt).map_err(|e| e.to_string())?;
    match r {
        Err(e) if e.contains("EIO") => {}
        other => return Err(format!("reading past the end: {other:?}")),
    }
    let stats = lkl::disk_stats(id).map_err(|e| e.to_string())?;
    if stats.errors == 0 {
        return Err(format!("no errors counted: {stats:?}"));
    }
    Ok(())
}

/// A file system made on the host, hot-added after boot, written inside
/// LKL, and checked with the host's tools.
fn hot_added(im: &Images, fs: &str) -> Outcome {
    let img = im.dir.join(format!("{fs}.img"));
    match fs {
        "vfat" => {
            sparse(&img, 32 << 20)?;
            run("mkfs.vfat", &[s(&img)])?;
            for f in ["hello.txt", "empty", "big.bin", "nested"] {
                run("mcopy", &["-s", "-i", s(&img), s(&im.src.join(f)), "::/"])?;
            }
        }
        "btrfs" => {
            sparse(&img, 128 << 20)?;
            run(
                "mkfs.btrfs",
                &["-q", "-f", "--rootdir", s(&im.src), s(&img)],
            )?;
        }
        "xfs" => {
            sparse(&img, 320 << 20)?;
            run("mkfs.xfs", &["-q", "-f", s(&img)])?;
        }
        _ => unreachable!(),
    }
    let id = lkl::add_disk(lkl::Disk::open(&img, false).map_err(|e| e.to_string())?)
        .map_err(|e| e.to_string())?;
    let mnt = lkl::mount_disk(id, None, fs, None, false).map_err(|e| e.to_string())?;
    if fs == "xfs" {
        // Made empty: fill it from inside.
        for (rel, data) in source_files() {
            let p = mnt.join(rel);
            let mut dir = mnt.clone();
            for c in Path::new(rel)
                .parent()
                .into_iter()
                .flat_map(Path::components)
            {
                dir.push(c);
                let _ = lkl::mkdir(&dir, 0o755);
            }
            lkl_write(p, &data)?;
        }
    }
    check_tree(&mnt)?;
    let data = noise(200_000, 11);
    lkl_write(mnt.join("NEWFILE.BIN"), &data)?;
    lkl::umount_disk(&mnt).map_err(|e| e.to_string())?;
    let mnt = lkl::mount_disk(id, None, fs, None, true).map_err(|e| e.to_string())?;
    check_tree(&mnt)?;
    if lkl_read(mnt.join("NEWFILE.BIN"))? != data {
        return Err("NEWFILE.BIN differs after a remount".into());
    }
    lkl::umount_disk(&mnt).map_err(|e| e.to_string())?;
    // The host's view.
    match fs {
        "vfat" => {
            run("fsck.vfat", &["-n", s(&img)])?;
            let out = im.dir.join("vfat-newfile");
            run("mcopy", &["-i", s(&img), "::/NEWFILE.BIN", s(&out)])?;
            if std::fs::read(&out).map_err(|e| e.to_string())? != data {
                return Err("mcopy reads different contents".into());
            }
        }
        "btrfs" => {
            run("btrfs", &["check", "--readonly", s(&img)])?;
            let out = im.dir.join("btrfs-restore");
            std::fs::create_dir_all(&out).map_err(|e| e.to_string())?;
            run("btrfs", &["restore", s(&img), s(&out)])?;
            if std::fs::read(out.join("NEWFILE.BIN")).map_err(|e| e.to_string())? != data {
                return Err("btrfs restore reads different contents".into());
            }
        }
        "xfs" => {
            run("xfs_repair", &["-n", s(&img)])?;
        }
        _ => unreachable!(),
    }
    Ok(())
}

/// Once the kernel is halted: adding and mounting are refused cleanly.
fn after_halt(im: &Images, d: &Disks) -> Outcome {
    // The images given to the kernel stay locked: take one it never had.
    match lkl::Disk::open(&im.ext4, true) {
        Err(DiskError::Locked { .. }) => {}
        other => {
            return Err(format!(
                "opening an added read-write image again: {other:?}"
            ))
        }
    }
    let disk = lkl::Disk::open(im.dir.join("part1.img"), true).map_err(|e| e.to_string())?;
    match lkl::add_disk(disk) {
        Err(e @ DiskError::NotAddable { state: "halted" }) => {
            if e.to_string() != "cannot add a disk while the kernel is halted" {
                return Err(format!("message: {e}"));
            }
        }
        other => return Err(format!("add_disk after halt: {other:?}")),
    }
    match lkl::mount_disk(d.ext4, None, "ext4", None, true) {
        Err(DiskError::NotRunning) => Ok(()),
        other => Err(format!("mount_disk after halt: {other:?}")),
    }
}

fn main() -> ExitCode {
    let (mut passed, mut failed, mut skipped) = (0, 0, 0);
    let mut report = |name: &str, r: std::thread::Result<Outcome>| match r {
        Ok(Ok(())) => {
            passed += 1;
            println!("test disk::{name} ... ok");
        }
        Ok(Err(e)) => {
            failed += 1;
            println!("test disk::{name} ... FAILED: {e}");
        }
        Err(_) => {
            failed += 1;
            println!("test disk::{name} ... FAILED: panicked");
        }
    };
    for tool in ["mkfs.ext4", "e2fsck", "debugfs", "sfdisk"] {
        if !have(tool) {
            println!("{tool} is missing (apt-get install e2fsprogs fdisk): no disk tests");
            println!("0 passed, 1 failed");
            return ExitCode::FAILURE;
        }
    }
    let im = match make_images() {
        Ok(im) => im,
        Err(e) => {
            println!("test disk::make_images ... FAILED: {e}");
            println!("0 passed, 1 failed");
            return ExitCode::FAILURE;
        }
    };
    let ro_before = std::fs::read(&im.ext4_ro).expect("read the read-only image");

    // Before boot: announced on the command line.
    let add = |p: &Path, ro| {
        lkl::add_disk(lkl::Disk::open(p, ro).expect("open image")).expect("add disk")
    };
    let d = Disks {
        ext4: add(&im.ext4, false),
        ext4_ro: add(&im.ext4_ro, true),
        gpt: add(&im.gpt, false),
        mbr: add(&im.mbr, false),
    };
    let kernel = lkl::boot(&lkl::BootOptions {
        memory: 128 << 20,
        // LKL_DISK_TEST_VERBOSE=1 shows every kernel message.
        loglevel: match std::env::var_os("LKL_DISK_TEST_VERBOSE") {
            Some(_) => None,
            None => Some(4),
        },
        ..Default::default()
    })
    .expect("boot");

    let names =
        [d.ext4, d.ext4_ro, d.gpt, d.mbr].map(|id| lkl::disk_name(id).map_err(|e| e.to_string()));
    report(
        "disks_are_found_by_serial",
        Ok(match &names {
            [Ok(a), Ok(b), Ok(c), Ok(e)] if a != b && b != c && c != e && a.starts_with("vd") => {
                Ok(())
            }
            other => Err(format!("{other:?}")),
        }),
    );
    report(
        "ext4_read_write",
        catch_unwind(AssertUnwindSafe(|| ext4_read_write(&im, &d))),
    );
    report(
        "parallel_threads",
        catch_unwind(AssertUnwindSafe(|| parallel_threads(&im, &d))),
    );
    report(
        "read_only_disk_is_never_written",
        catch_unwind(AssertUnwindSafe(|| {
            read_only_disk_is_never_written(&im, &d, &ro_before)
        })),
    );
    report(
        "gpt_partitions",
        catch_unwind(AssertUnwindSafe(|| partitions(&im, &im.gpt, d.gpt))),
    );
    report(
        "mbr_partitions",
        catch_unwind(AssertUnwindSafe(|| partitions(&im, &im.mbr, d.mbr))),
    );
    report(
        "errors_carry_context",
        catch_unwind(AssertUnwindSafe(|| errors_carry_context(&d))),
    );
    report(
        "truncated_image_gives_eio",
        catch_unwind(AssertUnwindSafe(|| truncated_image_gives_eio(&im))),
    );
    for (fs, tools) in [
        ("vfat", &["mkfs.vfat", "mcopy", "fsck.vfat"][..]),
        ("btrfs", &["mkfs.btrfs", "btrfs"][..]),
        ("xfs", &["mkfs.xfs", "xfs_repair"][..]),
    ] {
        let name = format!("hot_added_{fs}");
        if let Some(t) = tools.iter().find(|t| !have(t)) {
            // In CI a missing tool is a failure (scripts/setup.sh installs them all);
            // elsewhere the case is skipped and counted as such.
            let why = format!("{t} is missing (bash scripts/setup.sh installs it)");
            if std::env::var_os("CI").is_some() {
                report(&name, Ok(Err(why)));
            } else {
                skipped += 1;
                println!("test disk::{name} ... skipped: {why}");
            }
            continue;
        }
        report(&name, catch_unwind(AssertUnwindSafe(|| hot_added(&im, fs))));
    }

    report("halt", Ok(kernel.halt().map_err(|e| e.to_string())));
    report("no_disks_after_halt", Ok(after_halt(&im, &d)));
    if failed == 0 {
        let _ = std::fs::remove_dir_all(&im.dir);
    } else {
        println!("images kept in {}", im.dir.display());
    }
    println!("{passed} passed, {failed} failed, {skipped} skipped");
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
