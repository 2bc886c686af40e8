//! A whole program tree on an image: `lkl-run --zpoline --root IMAGE PROGRAM`, run as
//! the host user `nobody`, on an ext4 image made here with `mkfs.ext4 -d` holding
//! busybox-static (its applets as links) and a few files. Every path is the image's,
//! the programs come from it, and the tree runs as root inside it: `id -u`, `chown`,
//! `mknod`, `mount -t tmpfs` and `chroot` work without host privilege. After the runs
//! `e2fsck -fn` finds the image clean and `debugfs` reads what the programs wrote.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Output, Stdio};
use std::time::{Duration, Instant};

use lkl_test_support::{self as support, Outcome, TempDir};

const LKL_RUN: &str = env!("CARGO_BIN_EXE_zpl-lkl-run");
const DEADLINE: Duration = Duration::from_secs(120);
const BUSYBOX: &str = "/bin/busybox";
/// The applets the image offers as links to busybox.
const APPLETS: &[&str] = &[
    "sh",
    "ls",
    "cat",
    "id",
    "wc",
    "sort",
    "uniq",
    "grep",
    "mount",
    "umount",
    "chroot",
    "chown",
    "chmod",
    "stat",
    "tar",
    "mkdir",
    "echo",
    "true",
    "sed",
    "head",
    "tr",
    "mknod",
    "touch",
    "sha256sum",
    "find",
    "cut",
    "pwd",
    "rm",
    "ln",
    "readlink",
    "xargs",
];

/// A case of this file.
type Case = dyn Fn(&Env) -> Outcome;

/// What every case gets.
struct Env {
    dir: TempDir,
    lkl_run: PathBuf,
    /// The image tree `mkfs.ext4 -d` made the images from.
    src: PathBuf,
}

impl Env {
    /// A fresh image of the tree, writable by `nobody`.
    fn image(&self, name: &str) -> Result<PathBuf, String> {
        let img = self.dir.path().join(format!("{name}.img"));
        let _ = std::fs::remove_file(&img);
        std::fs::File::create(&img)
            .and_then(|f| f.set_len(96 << 20))
            .map_err(|e| e.to_string())?;
        support::run(
            Command::new("mkfs.ext4")
                .args(["-q", "-F", "-d"])
                .arg(&self.src)
                .arg(&img),
        )?;
        support::set_mode(&img, 0o666)?;
        Ok(img)
    }

    /// `lkl-run --zpoline --root IMG ARGS` as `nobody`.
    fn run(&self, img: &Path, args: &[&str]) -> Result<Output, String> {
        let mut cmd = support::as_nobody(&self.lkl_run);
        cmd.arg("--zpoline")
            .arg(format!("--root={}", img.display()))
            .args(args)
            .current_dir(self.dir.path())
            .env("HOME", "/")
            .env("PATH", "/bin")
            .env("LC_ALL", "C");
        support::output_within(&mut cmd, DEADLINE)
    }

    /// `sh -c SCRIPT` from the image.
    fn sh(&self, img: &Path, script: &str) -> Result<Output, String> {
        self.run(img, &["/bin/sh", "-c", script])
    }
}

/// The image tree: busybox and its applets in /bin, the directories a root needs, a
/// file only the image has, a word list, a jail for `chroot` and a tarball.
fn make_tree(src: &Path, scratch: &Path) -> Outcome {
    let w = |p: &str, text: &str| -> Outcome {
        let f = src.join(p);
        if let Some(d) = f.parent() {
            std::fs::create_dir_all(d).map_err(|e| e.to_string())?;
        }
        std::fs::write(&f, text).map_err(|e| format!("{}: {e}", f.display()))
    };
    for d in [
        "bin", "proc", "sys", "dev", "tmp", "mnt", "data", "jail/bin",
    ] {
        std::fs::create_dir_all(src.join(d)).map_err(|e| e.to_string())?;
    }
    for bin in ["bin/busybox", "jail/bin/busybox"] {
        std::fs::copy(BUSYBOX, src.join(bin)).map_err(|e| format!("copying busybox: {e}"))?;
    }
    for a in APPLETS {
        std::os::unix::fs::symlink("busybox", src.join("bin").join(a))
            .map_err(|e| e.to_string())?;
    }
    support::set_mode(&src.join("tmp"), 0o1777)?;
    // A static program that watches a directory with inotify.
    let c = Path::new(env!("CARGO_MANIFEST_DIR")).join("c/inotify.c");
    support::gcc(&c, &src.join("bin/inotify"), &["-static", "-O2"])?;
    w("etc/passwd", "root:x:0:0:root:/:/bin/sh\n")?;
    w("etc/group", "root:x:0:\n")?;
    w(
        "data/only-in-image.txt",
        "this file exists only in the image\n",
    )?;
    w(
        "data/words.txt",
        &"pear apple fig apple pear apple kiwi\n".repeat(50),
    )?;
    w("jail/hello.txt", "inside the jail\n")?;
    // A small source tree, as a tarball in the image.
    let proj = scratch.join("proj");
    for k in 0..30 {
        let f = proj.join(format!("src/m{}/f{k}.c", k % 4));
        std::fs::create_dir_all(f.parent().unwrap_or(&proj)).map_err(|e| e.to_string())?;
        std::fs::write(
            &f,
            format!("int f{k}(void) {{ return {k}; }}\n").repeat(k + 1),
        )
        .map_err(|e| e.to_string())?;
    }
    support::run(
        Command::new("tar")
            .arg("-cf")
            .arg(src.join("data/proj.tar"))
            .arg("-C")
            .arg(scratch)
            .arg("proj"),
    )?;
    Ok(())
}

fn setup() -> Result<Env, String> {
    support::require_root("the --root tests (they run programs as nobody)")?;
    for (tool, pkg) in [
        ("mkfs.ext4", "e2fsprogs"),
        ("debugfs", "e2fsprogs"),
        ("setpriv", "util-linux"),
        ("busybox", "busybox-static"),
    ] {
        support::require_tool(tool, pkg)?;
    }
    let static_bb = support::run(Command::new("file").arg("-L").arg(BUSYBOX))
        .map(|o| o.contains("statically linked"))
        .unwrap_or(true);
    if !static_bb {
        return Err(format!(
            "{BUSYBOX} is not statically linked: install busybox-static (scripts/setup.sh does)"
        ));
    }
    support::run(Command::new("sysctl").args(["-qw", "vm.mmap_min_addr=0"]))?;
    let dir = TempDir::new("lkl-root")?;
    support::set_mode(dir.path(), 0o755)?;
    let lkl_run = dir.path().join("lkl-run");
    std::fs::copy(LKL_RUN, &lkl_run).map_err(|e| format!("copying lkl-run: {e}"))?;
    support::set_mode(&lkl_run, 0o755)?;
    let src = dir.path().join("tree");
    make_tree(&src, &dir.path().join("scratch"))?;
    Ok(Env { dir, lkl_run, src })
}

fn case_reads(env: &Env) -> Outcome {
    let img = env.image("reads")?;
    support::expect_stdout(
        env.sh(&img, "cat /data/only-in-image.txt && ls / && id -u && id -g"),
        "this file exists only in the image\nbin\ndata\ndev\netc\njail\nlost+found\nmnt\nproc\nsys\ntmp\n0\n0\n",
    )?;
    support::fsck_clean("ext4", &img)
}

fn case_pipeline(env: &Env) -> Outcome {
    let img = env.image("pipe")?;
    support::expect_stdout(
        env.sh(
            &img,
            "tr ' ' '\\n' < /data/words.txt | sort | uniq -c | sed 's/^ *//'",
        ),
        "150 apple\n50 fig\n50 kiwi\n100 pear\n",
    )
}

fn case_cwd_and_proc(env: &Env) -> Outcome {
    let img = env.image("cwd")?;
    support::expect_stdout(
        env.sh(
            &img,
            "cd /data && pwd && cat only-in-image.txt && cd ../jail && cat hello.txt \
             && grep ' / ' /proc/mounts | cut -d' ' -f2,3 && readlink /proc/self/cwd \
             && cat /dev/stdin < /data/only-in-image.txt && exec 4< /jail/hello.txt \
             && readlink /proc/self/fd/4 && cat /dev/fd/4",
        ),
        "/data\nthis file exists only in the image\ninside the jail\n/ ext4\n/jail\n\
         this file exists only in the image\n/jail/hello.txt\ninside the jail\n",
    )
}

/// inotify on the image: an LKL instance sees a file made and removed in /tmp,
/// waited for with poll; the watch is removed.
fn case_inotify(env: &Env) -> Outcome {
    let img = env.image("inotify")?;
    support::expect_stdout(
        env.run(&img, &["/bin/inotify", "/tmp"]),
        "create made\ndelete made\nrm_watch ok\n",
    )
}

fn case_mount_chroot(env: &Env) -> Outcome {
    let img = env.image("chroot")?;
    support::expect_stdout(
        env.sh(
            &img,
            "mkdir -p /mnt/t && mount -t tmpfs scratch /mnt/t && echo in-tmpfs > /mnt/t/f \
             && cat /mnt/t/f && grep -c ' /mnt/t tmpfs' /proc/mounts && umount /mnt/t \
             && test ! -e /mnt/t/f && chroot /jail /bin/busybox cat /hello.txt \
             && chroot /jail /bin/busybox sh -c 'echo made-in-jail > /made.txt'",
        ),
        "in-tmpfs\n1\ninside the jail\n",
    )?;
    support::fsck_clean("ext4", &img)?;
    support::image_file_holds(&img, "/jail/made.txt", "made-in-jail\n")?;
    Ok(())
}

fn case_ownership(env: &Env) -> Outcome {
    let img = env.image("owner")?;
    support::expect_stdout(
        env.sh(
            &img,
            "touch /data/owned && chown 1234:5678 /data/owned && mknod /data/null c 1 3 \
             && touch /data/suid && chmod 4755 /data/suid \
             && stat -c '%u:%g %a %F' /data/owned /data/suid /data/null",
        ),
        "1234:5678 644 regular empty file\n0:0 4755 regular empty file\n0:0 644 character special file\n",
    )?;
    support::fsck_clean("ext4", &img)?;
    let owned = support::debugfs(&img, "stat /data/owned")?;
    if !owned.contains("User:  1234") || !owned.contains("Group:  5678") {
        return Err(format!(
            "debugfs does not show 1234:5678 on /data/owned:\n{owned}"
        ));
    }
    let suid = support::debugfs(&img, "stat /data/suid")?;
    if !suid.contains("Mode:  04755") {
        return Err(format!(
            "debugfs does not show mode 04755 on /data/suid:\n{suid}"
        ));
    }
    let null = support::debugfs(&img, "stat /data/null")?;
    if !null.contains("Type: character special") {
        return Err(format!("debugfs does not show a device node:\n{null}"));
    }
    Ok(())
}

fn case_user(env: &Env) -> Outcome {
    let img = env.image("user")?;
    support::expect_stdout(
        env.run(
            &img,
            &[
                "--user=1234:5678",
                "/bin/sh",
                "-c",
                "id -u && id -g && touch /tmp/mine && stat -c '%u:%g' /tmp/mine \
                 && (touch /data/not-mine 2>/dev/null || echo refused)",
            ],
        ),
        "1234\n5678\n1234:5678\nrefused\n",
    )?;
    support::fsck_clean("ext4", &img)?;
    let mine = support::debugfs(&img, "stat /tmp/mine")?;
    if !mine.contains("User:  1234") || !mine.contains("Group:  5678") {
        return Err(format!(
            "debugfs does not show 1234:5678 on /tmp/mine:\n{mine}"
        ));
    }
    Ok(())
}

fn case_workload(env: &Env) -> Outcome {
    // Unpack a source tree and checksum it inside the image, against the host's own
    // checksums of the same tarball.
    let img = env.image("work")?;
    let scratch = env.dir.path().join("scratch");
    let want = support::run(Command::new("sh").current_dir(&scratch).args([
        "-c",
        "find proj -type f | sort | xargs sha256sum | sha256sum | cut -d' ' -f1",
    ]))?;
    support::expect_stdout(
        env.sh(
            &img,
            "mkdir -p /build && cd /build && tar -xf /data/proj.tar \
             && find proj -type f | sort | xargs sha256sum | sha256sum | cut -d' ' -f1",
        ),
        &want,
    )?;
    support::fsck_clean("ext4", &img)?;
    let listing = support::debugfs(&img, "ls -l /build/proj/src/m1")?;
    if !listing.contains("f29.c") {
        return Err(format!("the unpacked tree is not in the image:\n{listing}"));
    }
    Ok(())
}

fn case_failed_start(env: &Env) -> Outcome {
    // A run whose program is missing ends its kernel: the next run has the image at once.
    let img = env.image("failed")?;
    for _ in 0..3 {
        let o = env.run(&img, &["/bin/no-such-program"])?;
        let all = support::output_text(&o);
        if o.status.success() || !all.contains("/bin/no-such-program") {
            return Err(format!("a missing program must be named and fail:\n{all}"));
        }
        support::expect_stdout(env.sh(&img, "echo next"), "next\n")?;
    }
    support::fsck_clean("ext4", &img)
}

fn case_in_use_by_lklfuse(env: &Env) -> Outcome {
    support::require_tool("fusermount3", "fuse3")?;
    let img = env.image("fuse")?;
    let lklfuse = support::cargo_build("lklfuse")?.join("lklfuse");
    let mnt = env.dir.path().join("fuse-mnt");
    std::fs::create_dir_all(&mnt).map_err(|e| e.to_string())?;
    let mut fuse = Command::new(&lklfuse)
        .arg("-f")
        .arg(&img)
        .arg(&mnt)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("starting lklfuse: {e}"))?;
    let t = Instant::now();
    while !mnt.join("data").exists() && t.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(50));
    }
    if !mnt.join("data").exists() {
        let _ = fuse.kill();
        let out = fuse.wait_with_output().map_err(|e| e.to_string())?;
        return Err(format!(
            "lklfuse did not mount the image: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    // lklfuse's mount wrote to the image (its mount count, its journal): the bytes
    // from here on must not change.
    let before = std::fs::read(&img).map_err(|e| e.to_string());
    let o = env.sh(&img, "echo ran");
    let after = std::fs::read(&img).map_err(|e| e.to_string());
    let _ = Command::new("fusermount3").arg("-u").arg(&mnt).status();
    let _ = fuse.wait();
    let o = o?;
    let all = support::output_text(&o);
    if o.status.success() || all.contains("ran") || !all.contains("in use") {
        return Err(format!(
            "an image mounted by lklfuse must be refused before the program runs:\n{all}"
        ));
    }
    if before? != after? {
        return Err("the refused run changed the image".into());
    }
    Ok(())
}

fn main() -> ExitCode {
    let cases: [(&str, &Case); 10] = [
        (
            "as nobody: a file only in the image is read, / lists the image, id prints 0",
            &case_reads,
        ),
        (
            "a pipeline of four processes of the image reads an image file",
            &case_pipeline,
        ),
        (
            "relative paths after cd; /proc/mounts shows the image as /; /proc/self/cwd; /dev/stdin and /proc/self/fd/N of image files",
            &case_cwd_and_proc,
        ),
        (
            "mount -t tmpfs, umount and chroot inside, a file written in the jail is in the image",
            &case_mount_chroot,
        ),
        (
            "chown 1234:5678, mknod and a setuid bit are stored in the image (debugfs)",
            &case_ownership,
        ),
        (
            "--user 1234:5678: the tree's ids inside, its files owned so in the image, root's refused",
            &case_user,
        ),
        (
            "inotify: a watch on an image directory reports a file made and removed there (poll, read, rm_watch)",
            &case_inotify,
        ),
        (
            "a source tarball unpacked and checksummed inside the image matches the host's checksums",
            &case_workload,
        ),
        (
            "a run whose program is missing frees the image at once for the next run",
            &case_failed_start,
        ),
        (
            "an image mounted by lklfuse is refused before the program runs, unchanged",
            &case_in_use_by_lklfuse,
        ),
    ];
    support::main_cases(setup, &cases)
}
