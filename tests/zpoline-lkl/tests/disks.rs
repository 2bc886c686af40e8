//! The kernel process's side of file systems in LKL, end to end: `lkl-run --zpoline
//! --root IMAGE` and `--mount IMAGE:PATH` (and the config's `disks`) on images made by
//! `mkfs.*` here.
//!
//! - Bad input (a missing image, a directory, junk, an unknown type, a missing
//!   partition, an image in use by another lkl-run, options the kernel refuses, a
//!   mount point missing in a read-only root, conflicting flags) is refused before the
//!   program runs (`sh -c 'echo ran'` prints nothing), with a message naming the
//!   problem and the fix, exit status non-zero, and the image's bytes unchanged.
//! - Runs leave each image clean by its own checker (`e2fsck -fn`, `btrfs check`,
//!   `xfs_repair -n`, `fsck.vfat -n`) for ext4, btrfs, xfs and vfat, at a path and as
//!   the root; `LKL_TREE_DEBUG=1` shows what the kernel process mounted where.
//! - As the root, the image is `/` of the tree (`/proc/mounts` says so) and what is
//!   written there is in the image afterwards (`debugfs`); a read-only root is never
//!   written; the config's `disks` work as the flags do; `SIGTERM` to the kernel
//!   process leaves the image clean too.
//!
//! The programs run are the host's static busybox (copied into each image, where the
//! program of a `--root` run is found; no library to load) and the host's `sh`.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Output, Stdio};
use std::time::{Duration, Instant};

use lkl_test_support::{self as support, Outcome, Report, TempDir};

const LKL_RUN: &str = env!("CARGO_BIN_EXE_zpl-lkl-run");
const DEADLINE: Duration = Duration::from_secs(120);
const BUSYBOX: &str = "/bin/busybox";
const FILESYSTEMS: [&str; 4] = ["ext4", "btrfs", "xfs", "vfat"];

struct Env {
    dir: TempDir,
    /// An empty configuration (`{}`): no interface, no disk.
    conf: PathBuf,
}

impl Env {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A fresh image `name` of file system `fs` holding `/bin/busybox` (the host's
    /// static one: the program of `--root` runs, found in the image); with `tree`, also
    /// `etc/hello` ("hello from the image"), `etc/resolv.conf` (192.0.2.53) and the
    /// directories `proc`, `sys`, `dev`, `mnt`. ext4 and btrfs are filled by their
    /// mkfs, xfs and vfat through a `--mount` run.
    fn image(&self, name: &str, fs: &str, tree: bool) -> Result<PathBuf, String> {
        let img = self.path(name);
        let src = self.path(&format!("{name}.src"));
        let _ = std::fs::remove_dir_all(&src);
        std::fs::create_dir_all(src.join("bin")).map_err(|e| e.to_string())?;
        std::fs::copy(BUSYBOX, src.join("bin/busybox")).map_err(|e| format!("{BUSYBOX}: {e}"))?;
        if tree {
            for d in ["etc", "proc", "sys", "dev", "mnt"] {
                std::fs::create_dir_all(src.join(d)).map_err(|e| e.to_string())?;
            }
            std::fs::write(src.join("etc/hello"), "hello from the image\n")
                .map_err(|e| e.to_string())?;
            std::fs::write(src.join("etc/resolv.conf"), "nameserver 192.0.2.53\n")
                .map_err(|e| e.to_string())?;
        }
        if !support::mkfs_image(fs, &img, Some(&src))? {
            let o = self.run(&[
                &mount_flag(&img, "/mnt/fill"),
                "cp",
                "-r",
                &format!("{}/.", src.display()),
                "/mnt/fill/",
            ])?;
            if !o.status.success() {
                return Err(format!(
                    "filling the {fs} image: {}",
                    support::output_text(&o)
                ));
            }
        }
        Ok(img)
    }

    /// `lkl-run --zpoline --config CONF ARGS...`, with `LKL_TREE_DEBUG=1`.
    fn run(&self, args: &[&str]) -> Result<Output, String> {
        self.run_conf(&self.conf, args)
    }

    fn run_conf(&self, conf: &Path, args: &[&str]) -> Result<Output, String> {
        let mut c = Command::new(LKL_RUN);
        c.arg("--zpoline")
            .arg("--config")
            .arg(conf)
            .args(args)
            .current_dir(self.dir.path())
            .env("LKL_TREE_DEBUG", "1");
        support::output_within(&mut c, DEADLINE)
    }
}

/// A hash of the file's bytes.
fn digest(p: &Path) -> Result<u64, String> {
    let bytes = std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()))?;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut h);
    Ok(h.finish())
}

/// `sh -c 'echo ran'` with `flags` is refused before it runs: non-zero exit, each
/// of `needles` in its stderr, nothing on stdout, and `img` (if any) unchanged.
fn refused(env: &Env, flags: &[&str], img: Option<&Path>, needles: &[&str]) -> Outcome {
    refused_conf(env, &env.conf, flags, img, needles)
}

fn refused_conf(
    env: &Env,
    conf: &Path,
    flags: &[&str],
    img: Option<&Path>,
    needles: &[&str],
) -> Outcome {
    let before = img.map(digest).transpose()?;
    let mut args = flags.to_vec();
    args.extend(["sh", "-c", "echo ran"]);
    let o = env.run_conf(conf, &args)?;
    let err = String::from_utf8_lossy(&o.stderr);
    if o.status.success() || !o.stdout.is_empty() {
        return Err(format!(
            "expected a refusal before the program runs; {}",
            support::output_text(&o)
        ));
    }
    for n in needles {
        if !err.contains(n) {
            return Err(format!("{n:?} missing; {}", support::output_text(&o)));
        }
    }
    if let (Some(img), Some(before)) = (img, before) {
        if digest(img)? != before {
            return Err(format!(
                "{} changed although the start failed; {}",
                img.display(),
                support::output_text(&o)
            ));
        }
    }
    Ok(())
}

fn mount_flag(img: &Path, path: &str) -> String {
    format!("--mount={}:{path}", img.display())
}

fn root_flag(img: &Path, opts: &str) -> String {
    format!("--root={}{opts}", img.display())
}

fn case_missing_and_directory(env: &Env) -> Outcome {
    let missing = env.path("no-such.img");
    refused(
        env,
        &[&mount_flag(&missing, "/mnt/x")],
        None,
        &[
            "disks[0].image: cannot open disk image",
            "no-such.img",
            "give the path of an existing image file",
        ],
    )?;
    let dir = env.path("a-directory");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    refused(
        env,
        &[&root_flag(&dir, "")],
        None,
        &["a-directory is a directory: give an image file or a block device"],
    )
}

fn case_junk(env: &Env) -> Outcome {
    let img = env.path("junk.img");
    let junk: Vec<u8> = (0..4u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&img, junk).map_err(|e| e.to_string())?;
    refused(
        env,
        &[&mount_flag(&img, "/mnt/x")],
        Some(&img),
        &[
            "cannot detect the file system of",
            "no ext2/ext3/ext4, btrfs, xfs or vfat signature",
            "give its type",
        ],
    )
}

fn case_unknown_type(env: &Env) -> Outcome {
    let img = env.image("type.img", "ext4", false)?;
    let conf = env.path("type.json");
    std::fs::write(
        &conf,
        format!(
            r#"{{"disks": [{{"image": "{}", "path": "/mnt/x", "type": "nosuchfs"}}]}}"#,
            img.display()
        ),
    )
    .map_err(|e| e.to_string())?;
    refused_conf(
        env,
        &conf,
        &[],
        Some(&img),
        &[
            "disks[0].type: unknown file system type \"nosuchfs\": this kernel knows",
            "ext4",
            "btrfs",
        ],
    )
}

fn case_partitions(env: &Env) -> Outcome {
    let img = env.image("part.img", "ext4", false)?;
    refused(
        env,
        &[&mount_flag(&img, "/mnt/x:part=2")],
        Some(&img),
        &[
            "disks[0].partition: image",
            "has no partition 2 (partitions found: none)",
        ],
    )?;
    // A table with one partition: the second is not there; the whole image has no
    // file system of its own.
    let img = env.path("table.img");
    std::fs::File::create(&img)
        .and_then(|f| f.set_len(64 << 20))
        .map_err(|e| e.to_string())?;
    sfdisk(&img, "label: dos\n,,L\n")?;
    refused(
        env,
        &[&mount_flag(&img, "/mnt/x:part=3")],
        Some(&img),
        &["has no partition 3 (partitions found: 1)"],
    )?;
    refused(
        env,
        &[&mount_flag(&img, "/mnt/x")],
        Some(&img),
        &["the image has a partition table: choose a partition with :part=N"],
    )
}

fn case_in_use(env: &Env) -> Outcome {
    let img = env.image("busy.img", "ext4", true)?;
    let mut first = Command::new(LKL_RUN);
    first
        .args(["--zpoline", "--config"])
        .arg(&env.conf)
        .arg(mount_flag(&img, "/mnt/x"))
        .args([BUSYBOX, "sleep", "30"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = first.spawn().map_err(|e| format!("lkl-run: {e}"))?;
    // It holds the image's lock once its kernel process has opened it.
    let start = Instant::now();
    let held = loop {
        if locked(&img)? {
            break true;
        }
        if start.elapsed() > Duration::from_secs(20) {
            break false;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let r = if held {
        refused(
            env,
            &[&mount_flag(&img, "/mnt/y")],
            None,
            &[
                "disks[0].image:",
                "busy.img is in use: another program holds a lock on it",
                "stop that program first",
            ],
        )
        .and_then(|()| {
            refused(
                env,
                &[&root_flag(&img, ":ro")],
                None,
                &["busy.img is in use"],
            )
        })
    } else {
        Err("the first lkl-run never locked the image".into())
    };
    let _ = child.kill();
    let _ = child.wait();
    // The first run's kernel process ends when its program is gone: wait for it.
    let start = Instant::now();
    while locked(&img)? && start.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(20));
    }
    r?;
    support::fsck_clean("ext4", &img)
}

/// An image served by lklfuse is refused, naming who to stop; after lklfuse's
/// unmount the same flags run.
fn case_in_use_by_lklfuse(env: &Env) -> Outcome {
    if !Path::new("/dev/fuse").exists() {
        let _ = support::run(Command::new("modprobe").arg("fuse"));
    }
    if !Path::new("/dev/fuse").exists() {
        return Err("/dev/fuse is missing: run `modprobe fuse` as root (and install fuse3)".into());
    }
    support::require_tool("fusermount3", "fuse3")?;
    let lklfuse = support::cargo_build("lklfuse")?.join("lklfuse");
    let img = env.image("fuse.img", "ext4", true)?;
    let mnt = env.path("fuse-mnt");
    std::fs::create_dir_all(&mnt).map_err(|e| e.to_string())?;
    let fuse = Command::new(&lklfuse)
        .arg("-f")
        .arg(&img)
        .arg(&mnt)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("{}: {e}", lklfuse.display()))?;
    let start = Instant::now();
    let mut served = false;
    while start.elapsed() < Duration::from_secs(20) {
        if std::fs::read_to_string(mnt.join("etc/hello")).is_ok_and(|t| t.contains("hello")) {
            served = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let r = if served {
        refused(
            env,
            &[&mount_flag(&img, "/mnt/x")],
            None,
            &[
                "fuse.img is in use: another program holds a lock on it (an lklfuse",
                "stop that program first",
            ],
        )
    } else {
        Err("lklfuse never served the image".into())
    };
    let _ = support::run(Command::new("fusermount3").arg("-u").arg(&mnt));
    if support::wait_deadline(fuse, Duration::from_secs(20), "lklfuse").is_err() {
        return Err("lklfuse did not end after fusermount3 -u".into());
    }
    r?;
    let o = env.run(&[&mount_flag(&img, "/mnt/x"), "cat", "/mnt/x/etc/hello"])?;
    support::expect_output(Ok(o), true, &["hello from the image"])?;
    support::fsck_clean("ext4", &img)
}

/// True when someone holds a lock on `img` (an exclusive lock cannot be taken).
fn locked(img: &Path) -> Result<bool, String> {
    use std::os::fd::AsRawFd;
    let f = std::fs::File::open(img).map_err(|e| e.to_string())?;
    // SAFETY: flock on our own descriptor, released when it closes.
    Ok(unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0)
}

fn case_kernel_refuses(env: &Env) -> Outcome {
    // A good read-write disk first: the refusal of the second must not write it.
    let good = env.image("good.img", "ext4", false)?;
    let img = env.image("opts.img", "ext4", false)?;
    let before = digest(&good)?;
    let conf = env.path("opts.json");
    std::fs::write(
        &conf,
        format!(
            r#"{{"disks": [{{"image": "{}", "path": "/mnt/good"}},
                {{"image": "{}", "path": "/mnt/x", "options": "nosuchoption=1"}}]}}"#,
            good.display(),
            img.display()
        ),
    )
    .map_err(|e| e.to_string())?;
    refused_conf(
        env,
        &conf,
        &[],
        Some(&img),
        &[
            "disks[1]: cannot mount",
            "as ext4: EINVAL",
            "the kernel says:",
            "nosuchoption",
            "the file system rejected the mount options 'nosuchoption=1'",
        ],
    )?;
    if digest(&good)? != before {
        return Err("the good disk's image changed although the start failed".into());
    }
    Ok(())
}

fn case_read_only_root_without_mount_point(env: &Env) -> Outcome {
    let root = env.image("ro-root.img", "ext4", true)?;
    let data = env.image("ro-data.img", "ext4", false)?;
    let before = digest(&data)?;
    refused(
        env,
        &[&root_flag(&root, ":ro"), &mount_flag(&data, "/srv/data")],
        Some(&root),
        &[
            "disks[1].path: /srv/data does not exist in the root image",
            "which is read-only: make the directory in the image, or mount the root read-write",
        ],
    )?;
    if digest(&data)? != before {
        return Err("the other image changed although the start failed".into());
    }
    support::fsck_clean("ext4", &data)
}

fn case_bad_flags(env: &Env) -> Outcome {
    let img = env.image("flags.img", "ext4", false)?;
    refused(
        env,
        &["--private-kernel", &root_flag(&img, "")],
        Some(&img),
        &[
            "--root needs the kernel shared by the whole tree",
            "drop --private-kernel",
        ],
    )?;
    refused(
        env,
        &["--backend=host", &mount_flag(&img, "/mnt/x")],
        Some(&img),
        &["--backend host leaves every call to the host kernel"],
    )?;
    refused(
        env,
        &[&format!("--mount={}", img.display())],
        Some(&img),
        &["write IMAGE:PATH"],
    )?;
    refused(
        env,
        &[&mount_flag(&img, "/mnt/../x")],
        Some(&img),
        &["\"/mnt/../x\" has a '..' component"],
    )?;
    refused(
        env,
        &[&mount_flag(&img, "/mnt/x"), &mount_flag(&img, "/mnt/x")],
        Some(&img),
        &["disks[1].path: \"/mnt/x\" is also the path of disks[0]"],
    )?;
    // The config's disks with a private kernel.
    let conf = env.path("private.json");
    std::fs::write(
        &conf,
        format!(
            r#"{{"disks": [{{"image": "{}", "path": "/mnt/x"}}]}}"#,
            img.display()
        ),
    )
    .map_err(|e| e.to_string())?;
    refused_conf(
        env,
        &conf,
        &["--private-kernel"],
        Some(&img),
        &["need the kernel shared by the whole tree: drop --private-kernel"],
    )
}

/// `--mount IMG:/mnt/x` and `--root IMG` runs that write leave a clean image, for
/// `fs`, with what was written; the kernel process says what it mounted where.
fn case_clean(env: &Env, fs: &str) -> Outcome {
    let img = env.image(&format!("clean-{fs}.img"), fs, false)?;
    let o = env.run(&[
        &mount_flag(&img, "/mnt/x"),
        "sh",
        "-c",
        "echo at a path > /mnt/x/f && mkdir /mnt/x/d && echo inside > /mnt/x/d/g",
    ])?;
    support::expect_output(
        Ok(o),
        true,
        &[&format!(
            "lkl-tree: mounted {} ({fs}, read-write, /dev/vda) on /mnt/x",
            img.display()
        )],
    )?;
    support::fsck_clean(fs, &img)?;
    // As the root: busybox's shell writes with its own echo (no program to load).
    let o = env.run(&[
        &root_flag(&img, ""),
        BUSYBOX,
        "sh",
        "-c",
        "echo as the root > /r",
    ])?;
    support::expect_output(
        Ok(o),
        true,
        &[
            &format!(
                "lkl-tree: mounted {} ({fs}, read-write, /dev/vda) on / (the root",
                img.display()
            ),
            "disks unmounted and written back",
        ],
    )?;
    support::fsck_clean(fs, &img)?;
    let o = env.run(&[&root_flag(&img, ":ro"), BUSYBOX, "cat", "/f", "/d/g", "/r"])?;
    support::expect_output(Ok(o), true, &["at a path\ninside\nas the root\n"])
}

/// The root image is `/` of the tree: its file is read, `/proc/mounts` shows it on
/// `/`, a file written is in the image afterwards, and a second image is mounted
/// inside it.
fn case_root(env: &Env) -> Outcome {
    let root = env.image("root.img", "ext4", true)?;
    let data = env.image("data.img", "btrfs", false)?;
    let o = env.run(&[
        &root_flag(&root, ""),
        &mount_flag(&data, "/mnt/data"),
        BUSYBOX,
        "cat",
        "/etc/hello",
        "/proc/mounts",
    ])?;
    support::expect_output(
        Ok(o),
        true,
        &[
            "hello from the image",
            "/dev/vda / ext4 rw",
            "/dev/vdb /mnt/data btrfs rw",
            "proc /proc proc",
            "on /mnt/data\n",
        ],
    )?;
    let o = env.run(&[
        &root_flag(&root, ""),
        BUSYBOX,
        "cp",
        "/etc/hello",
        "/written",
    ])?;
    support::expect_output(Ok(o), true, &[])?;
    support::fsck_clean("ext4", &root)?;
    support::fsck_clean("btrfs", &data)?;
    support::image_file_holds(&root, "/written", "hello from the image\n")?;
    // Read-only: read, never written (a write fails), the image's bytes unchanged.
    let before = digest(&root)?;
    let o = env.run(&[&root_flag(&root, ":ro"), BUSYBOX, "cat", "/etc/hello"])?;
    support::expect_output(Ok(o), true, &["hello from the image", "(ext4, read-only"])?;
    let o = env.run(&[&root_flag(&root, ":ro"), BUSYBOX, "touch", "/new"])?;
    support::expect_output(Ok(o), false, &["Read-only file system"])?;
    if digest(&root)? != before {
        return Err("the read-only root image changed".into());
    }
    // The configuration's keys act in LKL's own root, never in the image: `mount`
    // makes /sysfs there, and with `nameserver` LKL's resolv.conf is shown over the
    // image's.
    let conf = env.path("root-net.json");
    std::fs::write(
        &conf,
        r#"{"nameserver": "198.18.0.1", "mount": "proc,sysfs"}"#,
    )
    .map_err(|e| e.to_string())?;
    let o = env.run_conf(
        &conf,
        &[&root_flag(&root, ":ro"), BUSYBOX, "cat", "/etc/resolv.conf"],
    )?;
    support::expect_output(Ok(o), true, &["nameserver 198.18.0.1"])?;
    let o = env.run_conf(&conf, &[&root_flag(&root, ""), BUSYBOX, "true"])?;
    support::expect_output(Ok(o), true, &[])?;
    support::fsck_clean("ext4", &root)?;
    let got = support::run(
        Command::new("debugfs")
            .args(["-R", "cat /etc/resolv.conf"])
            .arg(&root),
    )?;
    if got != "nameserver 192.0.2.53\n" {
        return Err(format!("the image's resolv.conf was written: {got:?}"));
    }
    let top = support::run(Command::new("debugfs").args(["-R", "ls /"]).arg(&root))?;
    if top.contains("sysfs") {
        return Err(format!("the mount key made /sysfs in the image: {top}"));
    }
    Ok(())
}

/// `:part=1` mounts the partition: a file written there is in the partition
/// (extracted with dd: e2fsck clean, debugfs reads it).
fn case_partition(env: &Env) -> Outcome {
    let img = env.path("parted.img");
    std::fs::File::create(&img)
        .and_then(|f| f.set_len(64 << 20))
        .map_err(|e| e.to_string())?;
    sfdisk(&img, "label: dos\nstart=2048, type=L\n")?;
    support::run(
        Command::new("mkfs.ext4")
            .args(["-q", "-F", "-E", "offset=1048576"])
            .arg(&img)
            .arg("64512k"),
    )?;
    let o = env.run(&[
        &mount_flag(&img, "/mnt/p:part=1"),
        "sh",
        "-c",
        "echo in the partition > /mnt/p/f && cat /mnt/p/f",
    ])?;
    support::expect_output(
        Ok(o),
        true,
        &[
            "in the partition",
            "partition 1 (ext4, read-write, /dev/vda1) on /mnt/p",
        ],
    )?;
    let part = env.path("parted-1.img");
    support::run(
        Command::new("dd")
            .arg(format!("if={}", img.display()))
            .arg(format!("of={}", part.display()))
            .args(["bs=1M", "skip=1", "status=none"]),
    )?;
    support::fsck_clean("ext4", &part)?;
    let got = support::run(Command::new("debugfs").args(["-R", "cat /f"]).arg(&part))?;
    if got != "in the partition\n" {
        return Err(format!("debugfs reads {got:?} in the partition's /f"));
    }
    Ok(())
}

/// Writes partition table `script` into `img` with sfdisk.
fn sfdisk(img: &Path, script: &str) -> Outcome {
    let mut c = Command::new("sfdisk");
    c.arg("-q")
        .arg(img)
        .stdin(Stdio::piped())
        .stdout(Stdio::null());
    let mut child = c.spawn().map_err(|e| format!("sfdisk: {e}"))?;
    if let Some(mut i) = child.stdin.take() {
        use std::io::Write;
        i.write_all(script.as_bytes()).map_err(|e| e.to_string())?;
    }
    let st = child.wait().map_err(|e| e.to_string())?;
    if !st.success() {
        return Err(format!("sfdisk failed: {st}"));
    }
    Ok(())
}

/// The config's `disks` work as the flags: a file of the image read under its path,
/// one written there found by debugfs afterwards.
fn case_config(env: &Env) -> Outcome {
    let img = env.image("conf.img", "ext4", true)?;
    let conf = env.path("disks.json");
    std::fs::write(
        &conf,
        format!(
            r#"{{"disks": [{{"image": "{}", "path": "/mnt/conf"}}]}}"#,
            img.display()
        ),
    )
    .map_err(|e| e.to_string())?;
    let o = env.run_conf(
        &conf,
        &[
            "sh",
            "-c",
            "cat /mnt/conf/etc/hello && echo written > /mnt/conf/etc/new",
        ],
    )?;
    support::expect_output(
        Ok(o),
        true,
        &[
            "hello from the image",
            &format!("lkl-tree: mounted {} (ext4, read-write", img.display()),
        ],
    )?;
    support::fsck_clean("ext4", &img)?;
    support::image_file_holds(&img, "/etc/new", "written\n")?;
    Ok(())
}

/// `SIGTERM` to the kernel process while the program runs: it ends in order, the
/// image clean.
fn case_sigterm(env: &Env) -> Outcome {
    let img = env.image("term.img", "ext4", true)?;
    let marker = format!("lkl-disks-term-{}", std::process::id());
    let mut c = Command::new(LKL_RUN);
    c.args(["--zpoline", "--config"])
        .arg(&env.conf)
        .arg(mount_flag(&img, "/mnt/t"))
        .args(["sh", "-c", "echo x > /mnt/t/etc/term; exec sleep 30"])
        .env("LKL_DISKS_MARK", &marker)
        .env("LKL_TREE_DEBUG", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = c.spawn().map_err(|e| format!("lkl-run: {e}"))?;
    let me = child.id() as i32;
    let start = Instant::now();
    let server = loop {
        let found: Vec<i32> = support::processes_marked(&marker)
            .into_iter()
            .map(|(p, _)| p)
            .filter(|&p| p != me && support::parent_of(p) != Some(me))
            .collect();
        // The kernel process: marked, not the program, in a session of its own.
        if let Some(&p) = found.iter().find(|&&p| session_of(p) == Some(p)) {
            break Some(p);
        }
        if start.elapsed() > Duration::from_secs(20) {
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    // The program has written its file once it runs `sleep` (lkl-run re-executed
    // with --child).
    let start = Instant::now();
    while !support::cmdline_of(me).contains("--child") && start.elapsed() < Duration::from_secs(20)
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    let r = match server {
        Some(p) => support::signal(p, libc::SIGTERM).and_then(|()| {
            let start = Instant::now();
            while !support::ended(p) {
                if start.elapsed() > Duration::from_secs(20) {
                    return Err("the kernel process did not end on SIGTERM".into());
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            Ok(())
        }),
        None => Err("the kernel process was not found".into()),
    };
    let _ = child.kill();
    let o = child.wait_with_output().map_err(|e| e.to_string())?;
    r?;
    let err = String::from_utf8_lossy(&o.stderr);
    if !err.contains("SIGTERM: ending") || !err.contains("disks unmounted and written back") {
        return Err(format!(
            "the kernel process did not say it ended in order: {err}"
        ));
    }
    support::fsck_clean("ext4", &img)?;
    support::image_file_holds(&img, "/etc/term", "x\n")?;
    Ok(())
}

/// The program killed with `SIGKILL`: the kernel process sees its death and ends in
/// order, the image clean with what was written.
fn case_program_killed(env: &Env) -> Outcome {
    let img = env.image("killed.img", "ext4", true)?;
    let mut c = Command::new(LKL_RUN);
    c.args(["--zpoline", "--config"])
        .arg(&env.conf)
        .arg(mount_flag(&img, "/mnt/k"))
        .args(["sh", "-c", "echo y > /mnt/k/etc/killed && exec sleep 30"])
        .env("LKL_TREE_DEBUG", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = c.spawn().map_err(|e| format!("lkl-run: {e}"))?;
    let me = child.id();
    // The program has written its file once it runs `sleep` (lkl-run re-executed
    // with --child).
    let start = Instant::now();
    while !support::cmdline_of(me as i32).contains("--child") {
        if start.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            return Err("the program never reached sleep".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let o = child.wait_with_output().map_err(|e| e.to_string())?;
    let err = String::from_utf8_lossy(&o.stderr);
    if !err.contains("disks unmounted and written back") {
        return Err(format!("the kernel process did not end in order: {err}"));
    }
    support::fsck_clean("ext4", &img)?;
    support::image_file_holds(&img, "/etc/killed", "y\n")?;
    Ok(())
}

/// The session of `pid` (field 6 of `/proc/PID/stat`).
fn session_of(pid: i32) -> Option<i32> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &s[s.rfind(')')? + 2..];
    after.split(' ').nth(3)?.parse().ok()
}

fn setup() -> Result<Env, String> {
    support::require_root("vm.mmap_min_addr=0 and images of every file system")?;
    for (tool, pkg) in [
        ("mkfs.ext4", "e2fsprogs"),
        ("e2fsck", "e2fsprogs"),
        ("debugfs", "e2fsprogs"),
        ("mkfs.btrfs", "btrfs-progs"),
        ("btrfs", "btrfs-progs"),
        ("mkfs.xfs", "xfsprogs"),
        ("xfs_repair", "xfsprogs"),
        ("mkfs.vfat", "dosfstools"),
        ("fsck.vfat", "dosfstools"),
        ("sfdisk", "fdisk"),
        ("dd", "coreutils"),
        ("sh", "dash"),
    ] {
        support::require_tool(tool, pkg)?;
    }
    if !Path::new(BUSYBOX).is_file() {
        return Err(format!(
            "this test runs {BUSYBOX}: install it with `apt-get install busybox-static` (scripts/setup.sh does)"
        ));
    }
    support::run(Command::new("sysctl").args(["-qw", "vm.mmap_min_addr=0"]))?;
    let dir = TempDir::new("lkldisks")?;
    let conf = dir.path().join("empty.json");
    std::fs::write(&conf, "{}\n").map_err(|e| e.to_string())?;
    Ok(Env { dir, conf })
}

type Case = Box<dyn Fn(&Env) -> Outcome>;

fn main() -> ExitCode {
    let mut r = Report::default();
    let env = match setup() {
        Ok(e) => e,
        Err(e) => {
            r.case("setup", Err(e));
            return r.finish();
        }
    };
    let only = std::env::args().nth(1).filter(|a| !a.starts_with('-'));
    let mut cases: Vec<(String, Case)> = vec![
        ("a missing image and a directory are refused before the program runs".into(), Box::new(case_missing_and_directory)),
        ("a junk image is refused, naming the file systems known; its bytes unchanged".into(), Box::new(case_junk)),
        ("an unknown type (config disks[0].type) is refused, naming the kernel's types".into(), Box::new(case_unknown_type)),
        ("a partition that is not there, and a partitioned image without :part=N, are refused".into(), Box::new(case_partitions)),
        ("an image in use by another lkl-run is refused, saying who to stop; the first run leaves it clean".into(), Box::new(case_in_use)),
        ("an image served by lklfuse is refused, saying who to stop; after its unmount it mounts".into(), Box::new(case_in_use_by_lklfuse)),
        ("a mount the kernel refuses (bad options) is refused with the kernel's words; it and the good disk before it unchanged".into(), Box::new(case_kernel_refuses)),
        ("a mount point missing in a read-only root image is refused; both images unchanged".into(), Box::new(case_read_only_root_without_mount_point)),
        ("--private-kernel, --backend host, malformed and duplicate disks are refused".into(), Box::new(case_bad_flags)),
    ];
    for fs in FILESYSTEMS {
        cases.push((
            format!("--mount IMG:/mnt/x and --root IMG on {fs}: written, the checker finds the image clean, read back; the kernel process says what it mounted"),
            Box::new(move |e: &Env| case_clean(e, fs)),
        ));
    }
    cases.extend([
        (
            "--root: the image is / (/proc/mounts), a second image inside it, a file written is in the image; read-only is never written; nameserver and mount act outside the image".to_owned(),
            Box::new(case_root) as Case,
        ),
        (":part=1 mounts the partition: written there, found there by e2fsck and debugfs".into(), Box::new(case_partition)),
        ("the config's disks work as --mount: read and write, debugfs and e2fsck".into(), Box::new(case_config)),
        ("SIGTERM to the kernel process: it ends in order, the image clean with what was written".into(), Box::new(case_sigterm)),
        ("the program killed with SIGKILL: the kernel process ends in order, the image clean with what was written".into(), Box::new(case_program_killed)),
    ]);
    for (name, case) in cases {
        if only.as_deref().is_some_and(|o| !name.contains(o)) {
            continue;
        }
        let t = Instant::now();
        let res = case(&env);
        r.case(&format!("{name} ({:.1} s)", t.elapsed().as_secs_f64()), res);
    }
    r.finish()
}
