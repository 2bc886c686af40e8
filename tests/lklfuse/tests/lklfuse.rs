//! End-to-end tests of lklfuse, with a runner of their own (cases run in
//! order; each prints `test lklfuse::NAME ... ok`, and the last line is
//! `N passed, N failed`).
//!
//! For ext4, btrfs, xfs and vfat: an image from the real `mkfs.*`, mounted
//! by lklfuse; `cp -a` of a source tree in, `rm -r`, `mv`, `ln`, `ln -s`,
//! `setfattr`/`getfattr`, `truncate`, `df`, a parallel `find | xargs -P4`
//! reading every file (a hang is a failure), an untar of thousands of
//! small files; unmount (`fusermount3 -u`, or SIGTERM); the file system
//! check; then a read-only lklfuse mount shows exactly what was written
//! and leaves the image byte for byte as it was. ext4 also runs as an
//! unprivileged user (`setpriv`), with the image owned by that user, and
//! with a read-only image file. Bad input: a clear error, exit status 1,
//! no mount left behind.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use lkl_lklfuse_test::*;

const BIN: &str = env!("CARGO_BIN_EXE_lklfuse-e2e");

/// Small files in the untarred tree.
const TAR_FILES: usize = 3000;

struct Ctx {
    scratch: Scratch,
    /// lklfuse, copied where an unprivileged user can run it.
    bin: PathBuf,
    /// The POSIX source tree (root's).
    src: PathBuf,
    /// The same tree owned by the unprivileged user.
    src_user: PathBuf,
    /// The tree for vfat (no links, modes or xattrs).
    src_fat: PathBuf,
    /// The tarball of small files and the tree it was made from.
    tar: PathBuf,
    tar_src: PathBuf,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Unmount {
    Fusermount,
    Sigterm,
}

fn sha(path: &Path) -> Result<String, String> {
    lkl_fstools_test::image_hash(path)
}

/// `sha256sum` of every file under `dir`, read by four parallel readers
/// (`find | xargs -P4`), sorted: a hang is a failure.
fn parallel_sums(user: User, dir: &Path) -> Result<String, String> {
    let script = format!(
        "cd '{}' && find . -type f -print0 | xargs -0 -P4 -n4 sha256sum | sort",
        s(dir)
    );
    sh(user, &script, Duration::from_secs(120))
}

/// Mounts, works, unmounts, checks: one file system, one user.
/// `extra` adds options to the read-write mount (`threads=4`, `max_nodes=`).
fn scenario(ctx: &Ctx, fs: &str, user: User, how: Unmount, extra: &str) -> Outcome {
    let tag = format!("{fs}-{}", user.map_or("root".into(), |u| u.to_string()));
    let dir = ctx.scratch.path.join(&tag);
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let img = dir.join(format!("{fs}.img"));
    let mnt = dir.join("mnt");
    std::fs::create_dir_all(&mnt).map_err(|e| e.to_string())?;
    let size = if fs == "xfs" { 320 << 20 } else { 256 << 20 };
    mkfs_empty(fs, &img, size)?;
    if let Some(u) = user {
        chown_r(&dir, u)?;
    }
    let fat = fs == "vfat";
    let src = if fat {
        &ctx.src_fat
    } else if user.is_some() {
        &ctx.src_user
    } else {
        &ctx.src
    };
    // ext4 as root: the type is detected.
    let opts = match (fs, user) {
        ("ext4", None) => String::new(),
        ("vfat", _) => "type=vfat,opts=utf8\\,quiet".into(),
        _ => format!("type={fs}"),
    };
    let rw_opts = match (opts.is_empty(), extra.is_empty()) {
        (_, true) => opts.clone(),
        (true, false) => extra.to_owned(),
        (false, false) => format!("{opts},{extra}"),
    };
    let m = Mount::start(&ctx.bin, &img, &mnt, &rw_opts, user)?;
    let tree = mnt.join("tree");
    let cp = if fat {
        vec!["-r", s(src), s(&tree)]
    } else {
        vec!["-a", s(src), s(&tree)]
    };
    run(user, "cp", &cp)?;
    let want_sums = parallel_sums(None, src)?;
    let got_sums = parallel_sums(user, &tree)?;
    if want_sums != got_sums {
        return Err(format!(
            "parallel reads differ from the source:\nwant {want_sums}\ngot {got_sums}"
        ));
    }
    let posix_ops = if fat {
        ""
    } else {
        "cp -a tree/a work/a-copy && rm -r work/a-copy
         echo data > work/orig && ln work/orig work/hard && ln -s orig work/soft
         setfattr -n user.k -v val work/orig
         test \"$(getfattr --only-values -n user.k work/orig)\" = val
         setfattr -n user.gone -v x work/orig && setfattr -x user.gone work/orig
         chmod 640 work/orig
         echo x > work/setid-w && chmod 6755 work/setid-w && echo y >> work/setid-w
         echo x > work/setid-t && chmod 6755 work/setid-t && truncate -s 1 work/setid-t
         echo x > work/setid-o && chmod 6755 work/setid-o && echo z > work/setid-o
         printf 'longer contents' > work/o && printf ab > work/o && test \"$(cat work/o)\" = ab
         mkdir work/tmpdir && mv work/tmpdir work/kept"
    };
    let script = format!(
        "set -e
         cd '{mnt}'
         mkdir -p work/x/y && echo hello > work/x/y/f
         cp -r tree/many work/many-copy && rm -r work/many-copy
         mv work/x work/z
         {posix_ops}
         echo abcdefgh > work/t && truncate -s 3 work/t && truncate -s 100000 work/z/y/f
         df -P . | tail -1 | grep -q .
         mkdir untar && tar --no-same-owner -xf '{tar}' -C untar
         test \"$(find untar -type f | wc -l)\" = {TAR_FILES}",
        mnt = s(&mnt),
        tar = s(&ctx.tar),
    );
    sh(user, &script, Duration::from_secs(300))?;
    match how {
        Unmount::Fusermount => m.unmount()?,
        Unmount::Sigterm => m.signal(libc::SIGTERM)?,
    }
    fsck(fs, &img).map_err(|e| format!("the file system check after unmount: {e}"))?;

    // Read back through a second, read-only mount: nothing may change.
    let before = sha(&img)?;
    let ro = Mount::start(&ctx.bin, &img, &mnt, &format!("ro,{opts}"), None)?;
    let rules = if fat { Rules::CONTENTS } else { Rules::ALL };
    let check = (|| -> Outcome {
        compare(&manifest(src, rules)?, &manifest(&tree, rules)?)
            .map_err(|e| format!("tree after remount: {e}"))?;
        compare(
            &manifest(&ctx.tar_src, Rules::CONTENTS)?,
            &manifest(&mnt.join("untar"), Rules::CONTENTS)?,
        )
        .map_err(|e| format!("untarred tree after remount: {e}"))?;
        let work = manifest(&mnt.join("work"), rules)?;
        let has = |k: &str, want: &str| match work.get(k) {
            Some(line) if line.contains(want) => Ok(()),
            other => Err(format!("work/{k}: want {want:?} in {other:?}")),
        };
        has("t", "size=3 ")?;
        has("z/y/f", "size=100000 ")?;
        if work.contains_key("x") {
            return Err("work/x is still there after mv".into());
        }
        if !fat {
            // Walk order is by name: "hard" comes first, "orig" links to it.
            has("orig", "same-as=hard")?;
            has("orig", "mode=640")?;
            has("orig", "user.k=")?;
            has("soft", "-> orig")?;
            if work.get("orig").is_some_and(|l| l.contains("user.gone")) {
                return Err("a removed xattr is still there".into());
            }
            if let Some(u) = user {
                has("orig", &format!("owner={u}:"))?;
            }
            // A write or truncate drops set-user-ID and (group-executable)
            // set-group-ID unless the writer has CAP_FSETID (root here):
            // lklfuse does it, the host having handed it over
            // (FUSE_HANDLE_KILLPRIV_V2).
            let kept = if user.is_some() {
                "mode=755 "
            } else {
                "mode=6755 "
            };
            has("setid-w", kept)?;
            has("setid-t", kept)?;
            // An open with O_TRUNC (the shell's `>` on an existing file)
            // truncates, and drops the set-ID bits as a truncation does.
            has("setid-o", kept)?;
            has("o", "size=2 ")?;
        }
        if is_writable(&tree.join("new")) {
            return Err("a read-only mount accepted a write".into());
        }
        Ok(())
    })();
    let unmounted = ro.unmount();
    check?;
    unmounted?;
    if sha(&img)? != before {
        return Err("the image changed under a read-only mount".into());
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn is_writable(p: &Path) -> bool {
    std::fs::write(p, b"x").is_ok()
}

/// The unprivileged user mounts an image file it may only read: lklfuse
/// mounts it read-only on its own, and the image is not written.
fn read_only_image_file(ctx: &Ctx) -> Outcome {
    let dir = ctx.scratch.path.join("rofile");
    std::fs::create_dir_all(dir.join("mnt")).map_err(|e| e.to_string())?;
    let img = dir.join("ext4.img");
    run(
        None,
        "mkfs.ext4",
        &["-q", "-F", "-d", s(&ctx.src_fat), s(&img), "128M"],
    )?;
    chown_r(&dir, NOBODY)?;
    std::fs::set_permissions(&img, std::os::unix::fs::PermissionsExt::from_mode(0o444))
        .map_err(|e| e.to_string())?;
    let before = sha(&img)?;
    let m = Mount::start(&ctx.bin, &img, &dir.join("mnt"), "type=ext4", Some(NOBODY))?;
    let write = sh(
        Some(NOBODY),
        &format!("echo x > '{}'/new", s(&dir.join("mnt"))),
        Duration::from_secs(30),
    );
    let sums = parallel_sums(Some(NOBODY), &dir.join("mnt"));
    m.unmount()?;
    if write.is_ok() {
        return Err("a write to a read-only image file was accepted".into());
    }
    if !sums?.contains("big.bin") {
        return Err("files of the read-only image cannot be read".into());
    }
    if sha(&img)? != before {
        return Err("the read-only image file changed".into());
    }
    Ok(())
}

/// Bad input: a clear message, exit status 1, nothing mounted. The first
/// cases run in the background mode (the default), where the parent
/// must report the child's failure.
fn bad_input(ctx: &Ctx) -> Outcome {
    let dir = ctx.scratch.path.join("bad");
    let mnt = dir.join("mnt");
    std::fs::create_dir_all(&mnt).map_err(|e| e.to_string())?;
    let good = dir.join("good.img");
    run(None, "mkfs.ext4", &["-q", "-F", s(&good), "32M"])?;
    let junk = dir.join("junk.img");
    std::fs::write(&junk, noise(4 << 20, 9)).map_err(|e| e.to_string())?;
    // A real ext4 image whose superblock is broken.
    let corrupt = dir.join("corrupt.img");
    std::fs::copy(&good, &corrupt).map_err(|e| e.to_string())?;
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&corrupt)
            .map_err(|e| e.to_string())?;
        f.write_all_at(&noise(1024, 5)[..], 1024 + 64)
            .map_err(|e| e.to_string())?;
    }
    let file_mnt = dir.join("file");
    std::fs::write(&file_mnt, b"").map_err(|e| e.to_string())?;
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![s(&dir.join("missing.img")).into(), s(&mnt).into()],
            "missing.img",
        ),
        (vec![s(&junk).into(), s(&mnt).into()], "cannot detect"),
        (
            vec![
                s(&corrupt).into(),
                s(&mnt).into(),
                "-o".into(),
                "type=ext4".into(),
            ],
            "cannot mount",
        ),
        (
            vec![
                s(&good).into(),
                s(&mnt).into(),
                "-o".into(),
                "type=nosuchfs".into(),
            ],
            "unknown file system type",
        ),
        (
            vec![
                s(&good).into(),
                s(&mnt).into(),
                "-o".into(),
                "type=btrfs".into(),
            ],
            "cannot mount",
        ),
        (
            vec![s(&good).into(), s(&mnt).into(), "-o".into(), "mb=1".into()],
            "mb=1",
        ),
        (
            vec![s(&good).into(), s(&mnt).into(), "-o".into(), "frob".into()],
            "unknown option",
        ),
        (
            vec![
                s(&good).into(),
                s(&mnt).into(),
                "-o".into(),
                "part=2".into(),
            ],
            "no partition 2",
        ),
        (
            vec![s(&good).into(), s(&file_mnt).into()],
            "not a directory",
        ),
        (vec![s(&good).into(), s(&dir.join("nodir")).into()], "nodir"),
        (vec![s(&good).into()], "MOUNTPOINT"),
    ];
    for (i, (args, want)) in cases.iter().enumerate() {
        let mut c = std::process::Command::new(&ctx.bin);
        if i >= 3 {
            c.arg("-f");
        }
        c.args(args);
        let out = c.output().map_err(|e| e.to_string())?;
        let err = String::from_utf8_lossy(&out.stderr);
        if out.status.code() == Some(0) || out.status.code().is_none() {
            return Err(format!("{args:?}: exit {}, want failure", out.status));
        }
        if !err.contains(want) {
            return Err(format!("{args:?}: message {err:?} does not name {want:?}"));
        }
        if is_mounted(&mnt) {
            return Err(format!("{args:?}: left a mount behind"));
        }
    }
    // The image is free again (no process of ours holds its lock).
    let m = Mount::start(&ctx.bin, &good, &mnt, "type=ext4", None)?;
    m.unmount()
}

/// `--help` and `-V` answer and exit 0.
fn help(ctx: &Ctx) -> Outcome {
    let out = run(None, s(&ctx.bin), &["--help"])?;
    for want in [
        "type=FSTYPE",
        "part=N",
        "mb=MEM",
        "opts=",
        "allow_other",
        "fusermount3 -u",
    ] {
        if !out.contains(want) {
            return Err(format!("--help does not mention {want}"));
        }
    }
    run(None, s(&ctx.bin), &["-V"]).map(drop)
}

/// Makes /dev/fuse usable by anyone (as CI's root does), or explains.
fn fuse_ready() -> Outcome {
    if !Path::new("/dev/fuse").exists() {
        let _ = run(None, "modprobe", &["fuse"]);
    }
    if !Path::new("/dev/fuse").exists() {
        return Err("/dev/fuse is missing: run `modprobe fuse` as root (and install fuse3)".into());
    }
    if !have("fusermount3") {
        return Err("fusermount3 is missing: apt-get install fuse3".into());
    }
    // SAFETY: geteuid has no effects.
    if unsafe { libc::geteuid() } == 0 {
        run(None, "chmod", &["666", "/dev/fuse"])
            .map_err(|e| format!("chmod 666 /dev/fuse: {e}"))?;
    }
    Ok(())
}

fn setup() -> Result<Ctx, String> {
    fuse_ready()?;
    let tools = [
        ("mkfs.ext4", "e2fsprogs"),
        ("e2fsck", "e2fsprogs"),
        ("setfattr", "attr"),
        ("getfattr", "attr"),
        ("setpriv", "util-linux"),
        ("sha256sum", "coreutils"),
    ];
    for (t, pkg) in tools {
        if !have(t) {
            return Err(format!("{t} is missing: apt-get install {pkg}"));
        }
    }
    let scratch = Scratch::new("e2e");
    let bin = scratch.path.join("lklfuse");
    std::fs::copy(BIN, &bin).map_err(|e| format!("copy {BIN}: {e}"))?;
    let src = scratch.path.join("src");
    make_tree(&src, false)?;
    let src_user = scratch.path.join("src-user");
    run(None, "cp", &["-a", s(&src), s(&src_user)])?;
    chown_r(&src_user, NOBODY)?;
    // Mode 000 keeps even its owner out: cp -a as that user could not
    // read it. Its own odd mode instead.
    std::fs::set_permissions(
        src_user.join("modes/none"),
        std::os::unix::fs::PermissionsExt::from_mode(0o604),
    )
    .map_err(|e| e.to_string())?;
    let src_fat = scratch.path.join("src-fat");
    make_tree(&src_fat, true)?;
    let tar_src = scratch.path.join("tar-src");
    let tar = scratch.path.join("small.tar");
    make_tarball(&tar_src, &tar, TAR_FILES)?;
    Ok(Ctx {
        scratch,
        bin,
        src,
        src_user,
        src_fat,
        tar,
        tar_src,
    })
}

fn main() -> ExitCode {
    let (mut passed, mut failed) = (0, 0);
    let start = Instant::now();
    let mut report = |name: &str, r: std::thread::Result<Outcome>, t: Instant| match r {
        Ok(Ok(())) => {
            passed += 1;
            println!(
                "test lklfuse::{name} ... ok ({:.1} s)",
                t.elapsed().as_secs_f64()
            );
        }
        Ok(Err(e)) => {
            failed += 1;
            println!("test lklfuse::{name} ... FAILED: {e}");
        }
        Err(_) => {
            failed += 1;
            println!("test lklfuse::{name} ... FAILED: panicked");
        }
    };
    let mut ctx = match setup() {
        Ok(c) => c,
        Err(e) => {
            println!("test lklfuse::setup ... FAILED: {e}");
            println!("0 passed, 1 failed");
            return ExitCode::FAILURE;
        }
    };
    let case = |f: &dyn Fn() -> Outcome| catch_unwind(AssertUnwindSafe(f));
    let t = Instant::now();
    report("help", case(&|| help(&ctx)), t);
    let t = Instant::now();
    report("bad_input", case(&|| bad_input(&ctx)), t);
    let t = Instant::now();
    report(
        "ext4_root_probed_type_200_nodes_cached",
        case(&|| scenario(&ctx, "ext4", None, Unmount::Fusermount, "max_nodes=200")),
        t,
    );
    let t = Instant::now();
    report(
        "ext4_unprivileged_sigterm_4_threads",
        case(&|| scenario(&ctx, "ext4", Some(NOBODY), Unmount::Sigterm, "threads=4")),
        t,
    );
    let t = Instant::now();
    report(
        "read_only_image_file",
        case(&|| read_only_image_file(&ctx)),
        t,
    );
    for (fs, tools, pkg) in [
        ("btrfs", ["mkfs.btrfs", "btrfs"], "btrfs-progs"),
        ("xfs", ["mkfs.xfs", "xfs_repair"], "xfsprogs"),
        ("vfat", ["mkfs.vfat", "fsck.vfat"], "dosfstools"),
    ] {
        let t = Instant::now();
        let (extra, name) = match fs {
            // Also the path without the host's write-back cache.
            "xfs" => (
                "threads=4,nowriteback",
                format!("{fs}_root_4_threads_nowriteback"),
            ),
            _ => ("", format!("{fs}_root")),
        };
        if let Some(tool) = tools.iter().find(|t| !have(t)) {
            report(
                &name,
                Ok(Err(format!("{tool} is missing: apt-get install {pkg}"))),
                t,
            );
            continue;
        }
        report(
            &name,
            case(&|| scenario(&ctx, fs, None, Unmount::Fusermount, extra)),
            t,
        );
    }
    let t = Instant::now();
    report(
        "btrfs_unprivileged",
        case(&|| scenario(&ctx, "btrfs", Some(NOBODY), Unmount::Fusermount, "")),
        t,
    );
    if failed > 0 && std::env::var_os("LKLFUSE_TEST_KEEP").is_some() {
        ctx.scratch.keep = true;
    }
    println!("total {:.1} s", start.elapsed().as_secs_f64());
    println!("{passed} passed, {failed} failed");
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
