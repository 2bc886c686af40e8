//! The tools never lose data and say what is wrong: an output that is the
//! image, a fifo/socket/character device as the image, read-only work on
//! an image whose journal needs replay (the image is never written),
//! termination signals (no half-written output left), the messages of
//! common mistakes, and a fuzzer of command lines.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use lkl_fstools_test::fuse::{is_mounted, Mount};
use lkl_fstools_test::*;

use super::{env_u64, name, ok, size_of, tool, Env, Outcome, Rng, CPFROMFS, CPTOFS, FS2TAR};

/// lklfuse, built in this crate.
pub const LKLFUSE: &str = env!("CARGO_BIN_EXE_fstools-lklfuse");

fn e(x: impl std::fmt::Display) -> String {
    x.to_string()
}

fn mkdir(p: &Path) -> Outcome {
    std::fs::create_dir_all(p).map_err(e)
}

/// The files every replay test expects: written and fsynced through a
/// read-write lklfuse mount before it was killed.
fn committed_files() -> Vec<(String, Vec<u8>)> {
    (0..5)
        .map(|i| {
            (
                format!("committed/f{i}.txt"),
                noise(1000 + i * 777, 40 + i as u64),
            )
        })
        .collect()
}

/// Whether the image's journal or log needs replay: ext4's
/// `needs_recovery`, an xfs log that is not clean, a btrfs log tree.
fn needs_replay(fs: &str, img: &Path) -> Result<bool, String> {
    Ok(match fs {
        "ext4" => run("dumpe2fs", &["-h", s(img)])?.contains("needs_recovery"),
        "xfs" => !run("xfs_logprint", &["-t", s(img)])?.contains("state: <CLEAN>"),
        _ => !run("btrfs", &["inspect-internal", "dump-super", s(img)])?
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["log_root", "0"]),
    })
}

/// Read-only work on an image whose journal needs replay: a read-write
/// lklfuse mount writes and fsyncs some files, starts a large write and
/// is killed with SIGKILL; then fs2tar, cpfromfs and `lklfuse -o ro` each
/// succeed, show the fsynced files, and leave the image's SHA-256 as it
/// was.
pub fn readonly_after_kill(env: &Env, fs: &str) -> Outcome {
    let d = env.dir.join(format!("replay-{fs}"));
    mkdir(&d)?;
    let img = d.join("fs.img");
    mkfs_empty(fs, &img, size_of(fs))?;
    let files = committed_files();
    let mnt = d.join("mnt");
    mkdir(&mnt)?;
    let m = Mount::start(Path::new(LKLFUSE), &img, &mnt, &format!("type={fs}"), None)?;
    let wrote = (|| -> Outcome {
        mkdir(&mnt.join("committed"))?;
        for (n, data) in &files {
            let mut f = std::fs::File::create(mnt.join(n)).map_err(e)?;
            std::io::Write::write_all(&mut f, data).map_err(e)?;
            f.sync_all().map_err(e)?;
        }
        // Uncommitted: written, never synced.
        std::fs::write(mnt.join("pending.bin"), noise(8 << 20, 7)).map_err(e)
    })();
    // SIGKILL: no unmount, no sync.
    m.kill();
    wrote?;
    if !needs_replay(fs, &img)? {
        return Err(format!(
            "the killed mount left {fs} clean: the test proves nothing"
        ));
    }
    let before = image_hash(&img)?;
    let unchanged = |who: &str| -> Outcome {
        if image_hash(&img)? != before {
            return Err(format!("{who} wrote the image"));
        }
        Ok(())
    };
    // fs2tar.
    let tar = d.join("out.tar");
    ok(FS2TAR, &[s(&img), s(&tar)])?;
    unchanged("fs2tar")?;
    for (n, data) in &files {
        let got = Command::new("tar")
            .args(["-xOf", s(&tar), &format!("./{n}")])
            .output()
            .map_err(e)?;
        if !got.status.success() || &got.stdout != data {
            return Err(format!("fs2tar's archive lacks {n} (or it differs)"));
        }
    }
    // cpfromfs.
    let out = d.join("out");
    mkdir(&out)?;
    ok(CPFROMFS, &["-q", "-i", s(&img), "/committed", s(&out)])?;
    unchanged("cpfromfs")?;
    for (n, data) in &files {
        if std::fs::read(out.join(n)).map_err(|x| format!("cpfromfs: {n}: {x}"))? != *data {
            return Err(format!("cpfromfs: {n} differs"));
        }
    }
    // lklfuse -o ro.
    let m = Mount::start(
        Path::new(LKLFUSE),
        &img,
        &mnt,
        &format!("ro,type={fs}"),
        None,
    )?;
    let read: Result<(), String> = files.iter().try_for_each(|(n, data)| {
        if std::fs::read(mnt.join(n)).map_err(|x| format!("lklfuse: {n}: {x}"))? != *data {
            return Err(format!("lklfuse: {n} differs"));
        }
        Ok(())
    });
    let refused = std::fs::write(mnt.join("new"), "x").is_err();
    m.unmount()?;
    read?;
    if !refused {
        return Err("lklfuse -o ro accepted a write".into());
    }
    unchanged("lklfuse -o ro")?;
    let _ = std::fs::remove_dir_all(&d);
    Ok(())
}

/// Expects exit status `code` and `want` in stderr.
fn expect(prog: &str, args: &[&str], code: i32, want: &str) -> Outcome {
    let o = tool(prog, args)?;
    if o.code() != Some(code) || !o.stderr.contains(want) {
        return Err(format!(
            "{} {args:?}: want exit {code} and {want:?}: {}",
            name(prog),
            o.describe()
        ));
    }
    Ok(())
}

/// No tool writes where it reads: fs2tar to the image (same path, hard
/// link, symlink, OUT.tmp a link to it, the contexts file), cpfromfs over
/// the image, cptofs of the image into itself, lklfuse with the image
/// under the mount point or `-o log=` the image. The image is unchanged.
pub fn output_is_the_image(env: &Env) -> Outcome {
    let d = env.dir.join("same");
    mkdir(&d)?;
    let img = d.join("fs.img");
    mkfs_empty("ext4", &img, 32 << 20)?;
    // A file named like the image inside it, for cpfromfs.
    let named = d.join("named");
    mkdir(&named)?;
    std::fs::write(named.join("fs.img"), "inside").map_err(e)?;
    ok(CPTOFS, &["-i", s(&img), &format!("{}/.", s(&named)), "/"])?;
    std::fs::hard_link(&img, d.join("hard.img")).map_err(e)?;
    // A writer (its mount changes the image), refusing only that file.
    expect(
        CPTOFS,
        &["-q", "-i", s(&img), s(&d.join("hard.img")), "/"],
        1,
        "is the image itself",
    )?;
    let before = image_hash(&img)?;
    std::os::unix::fs::symlink(&img, d.join("sym.img")).map_err(e)?;
    std::fs::hard_link(&img, d.join("x.tar.tmp")).map_err(e)?;
    let is_img = "is the image";
    for out in ["fs.img", "hard.img", "sym.img", "x.tar"] {
        expect(FS2TAR, &[s(&img), s(&d.join(out))], 1, is_img)?;
    }
    expect(
        FS2TAR,
        &[
            "--selinux-contexts",
            s(&d.join("hard.img")),
            s(&img),
            s(&d.join("o.tar")),
        ],
        1,
        is_img,
    )?;
    expect(
        CPFROMFS,
        &["-q", "-i", s(&img), "/fs.img", s(&d)],
        1,
        "is the image being read",
    )?;
    expect(LKLFUSE, &["-f", s(&img), s(&d)], 1, "under the mount point")?;
    let mnt = d.join("mnt");
    mkdir(&mnt)?;
    expect(
        LKLFUSE,
        &[
            "-f",
            s(&img),
            s(&mnt),
            "-o",
            &format!("log={}", s(&d.join("hard.img"))),
        ],
        1,
        is_img,
    )?;
    if image_hash(&img)? != before {
        return Err("the image changed".into());
    }
    if is_mounted(&d) || is_mounted(&mnt) {
        return Err("a mount was left behind".into());
    }
    Ok(())
}

/// A fifo, a socket or a character device as the image: a clear error at
/// once (not a hang), from every tool, with the type probed or given.
pub fn special_files_as_images(env: &Env) -> Outcome {
    let d = env.dir.join("special");
    mkdir(&d)?;
    let fifo = d.join("fifo");
    run("mkfifo", &[s(&fifo)])?;
    let sock = d.join("sock");
    let _listener = std::os::unix::net::UnixListener::bind(&sock).map_err(e)?;
    let mnt = d.join("mnt");
    let out = d.join("out");
    mkdir(&mnt)?;
    mkdir(&out)?;
    let file = d.join("file");
    std::fs::write(&file, "x").map_err(e)?;
    for (img, kind) in [
        (fifo.as_path(), "is a fifo"),
        (sock.as_path(), "is a socket"),
        (Path::new("/dev/null"), "is a character device"),
    ] {
        let tar = d.join("o.tar");
        let runs: Vec<(&str, Vec<&str>)> = vec![
            (FS2TAR, vec![s(img), s(&tar)]),
            (FS2TAR, vec!["-t", "ext4", s(img), s(&tar)]),
            (CPFROMFS, vec!["-i", s(img), "/", s(&out)]),
            (CPTOFS, vec!["-i", s(img), "-t", "ext4", s(&file), "/"]),
            (LKLFUSE, vec!["-f", s(img), s(&mnt)]),
            (LKLFUSE, vec![s(img), s(&mnt), "-o", "type=ext4"]),
        ];
        for (prog, args) in runs {
            let t = Instant::now();
            let o = run_for(prog, &args, Duration::from_secs(20))?;
            if o.code() != Some(1) || !o.stderr.contains(kind) || !o.stderr.contains(s(img)) {
                return Err(format!(
                    "{} {args:?}: want exit 1 and {kind:?} naming the path: {}",
                    name(prog),
                    o.describe()
                ));
            }
            if t.elapsed() > Duration::from_secs(10) {
                return Err(format!("{} {args:?} took {:?}", name(prog), t.elapsed()));
            }
        }
        if tar_exists(&d) {
            return Err("an archive was left".into());
        }
        // The same files as fs2tar's output: refused, left as they are.
        expect(FS2TAR, &[s(&file), s(img)], 1, "is not a regular file")?;
        if !std::fs::symlink_metadata(img).is_ok_and(|m| !m.is_file()) {
            return Err(format!("fs2tar replaced {}", s(img)));
        }
    }
    Ok(())
}

fn tar_exists(d: &Path) -> bool {
    d.join("o.tar").exists() || d.join("o.tar.tmp").exists()
}

/// SIGINT, SIGTERM and SIGHUP while fs2tar or cpfromfs writes: exit 128 +
/// the signal, no OUT.tmp or OUT left (fs2tar), no half-written file left
/// (cpfromfs: big.bin is absent or whole).
pub fn signals_remove_partial_output(env: &Env) -> Outcome {
    let d = env.dir.join("signals");
    mkdir(&d)?;
    let img = d.join("fs.img");
    mkfs_empty("ext4", &img, 256 << 20)?;
    ok(
        CPTOFS,
        &["-q", "-i", s(&img), &format!("{}/.", s(&env.full)), "/"],
    )?;
    let big = std::fs::read(env.full.join("big.bin")).map_err(e)?;
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        for prog in [FS2TAR, CPFROMFS] {
            let mut hit = false;
            for attempt in 0..4 {
                let out = d.join(format!("out-{sig}-{attempt}"));
                mkdir(&out)?;
                let tar = out.join("a.tar");
                let tmp = out.join("a.tar.tmp");
                let partial = out.join("big.bin");
                let args: Vec<&str> = if prog == FS2TAR {
                    vec![s(&img), s(&tar)]
                } else {
                    vec!["-q", "-i", s(&img), "/big.bin", s(&out)]
                };
                let mut child = Command::new(prog)
                    .args(&args)
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn()
                    .map_err(e)?;
                let watch = if prog == FS2TAR { &tmp } else { &partial };
                let start = Instant::now();
                while !watch.exists() && start.elapsed() < Duration::from_secs(30) {
                    if child.try_wait().map_err(e)?.is_some() {
                        break;
                    }
                    std::thread::sleep(Duration::from_micros(500));
                }
                // SAFETY: kill sends a signal to our own child.
                unsafe { libc::kill(child.id() as i32, sig) };
                let o = child.wait_with_output().map_err(e)?;
                let stderr = String::from_utf8_lossy(&o.stderr);
                if o.status.code() == Some(0) {
                    // Finished before the signal: try again.
                    continue;
                }
                if o.status.code() != Some(128 + sig) {
                    return Err(format!(
                        "{} got signal {sig}: exit {:?}, want {}: {stderr}",
                        name(prog),
                        o.status,
                        128 + sig
                    ));
                }
                if prog == FS2TAR && (tar.exists() || tmp.exists()) {
                    return Err(format!("fs2tar left its output after signal {sig}"));
                }
                if prog == CPFROMFS
                    && partial.exists()
                    && std::fs::read(&partial).map_err(e)? != big
                {
                    return Err(format!(
                        "cpfromfs left a half-written big.bin after signal {sig}"
                    ));
                }
                if !stderr.contains("stopped by SIG") {
                    return Err(format!(
                        "{}: no message for signal {sig}: {stderr}",
                        name(prog)
                    ));
                }
                hit = true;
                break;
            }
            if !hit {
                return Err(format!("{} finished before every signal {sig}", name(prog)));
            }
        }
    }
    Ok(())
}

/// The exact messages of common mistakes, each with a non-zero status.
pub fn messages(env: &Env) -> Outcome {
    let d = env.dir.join("messages");
    mkdir(&d)?;
    let img = d.join("fs.img");
    mkfs_empty("ext4", &img, 32 << 20)?;
    let mnt = d.join("mnt");
    mkdir(&mnt)?;
    let file = d.join("file");
    std::fs::write(&file, "x").map_err(e)?;
    // Too much memory: the limit, and the host's memory.
    expect(
        LKLFUSE,
        &["-f", s(&img), s(&mnt), "-o", "mb=99999999"],
        1,
        "bad value in -o mb=99999999: too large: at most 1048576 MiB (1 TiB)",
    )?;
    expect(
        LKLFUSE,
        &["-f", s(&img), s(&mnt), "-o", "mb=1048576"],
        1,
        "-o mb=1048576 is too large: this host has ",
    )?;
    // A mount option the file system does not know: the kernel's reason.
    let rejected = "the file system rejected the mount options 'frob'";
    expect(
        CPTOFS,
        &["-i", s(&img), "--mount-options", "frob", s(&file), "/"],
        1,
        rejected,
    )?;
    expect(
        CPTOFS,
        &["-i", s(&img), "--mount-options", "frob", s(&file), "/"],
        1,
        "Unknown parameter 'frob'",
    )?;
    expect(
        LKLFUSE,
        &["-f", s(&img), s(&mnt), "-o", "opts=frob"],
        1,
        rejected,
    )?;
    // A missing image: its path and the reason, once.
    let missing = d.join("missing.img");
    for (prog, args) in [
        (FS2TAR, vec![s(&missing), s(&d.join("m.tar"))]),
        (CPFROMFS, vec!["-i", s(&missing), "/", s(&d)]),
        (CPTOFS, vec!["-i", s(&missing), "-t", "ext4", s(&file), "/"]),
    ] {
        let o = tool(prog, &args)?;
        let n = o.stderr.matches("No such file or directory").count();
        if o.code() != Some(1) || n != 1 || !o.stderr.contains(s(&missing)) {
            return Err(format!(
                "{} on a missing image: want exit 1, the path, the reason once: {}",
                name(prog),
                o.describe()
            ));
        }
    }
    // No space for the archive: the message names the file.
    let small = d.join("small");
    mkdir(&small)?;
    std::fs::write(d.join("three-mb"), noise(3 << 20, 3)).map_err(e)?;
    ok(CPTOFS, &["-i", s(&img), s(&d.join("three-mb")), "/"])?;
    run(
        "mount",
        &["-t", "tmpfs", "-o", "size=1m", "tmpfs", s(&small)],
    )?;
    let tar = small.join("out.tar");
    let r = expect(
        FS2TAR,
        &[s(&img), s(&tar)],
        1,
        &format!("cannot write {}.tmp: No space left on device", s(&tar)),
    );
    let left = small.join("out.tar.tmp").exists() || tar.exists();
    run("umount", &[s(&small)])?;
    r?;
    if left {
        return Err("fs2tar left a partial archive on a full file system".into());
    }
    Ok(())
}

/// lklfuse fails cleanly: a bad `-o log=` path (in the background mode)
/// fails before the image is opened; a FUSE mount refused after the image
/// was mounted inside LKL (as `nobody`, on a mount point it may not
/// write) still unmounts it: exit 1, no mount left, the image clean (no
/// journal to replay, e2fsck clean).
pub fn lklfuse_fails_cleanly(env: &Env) -> Outcome {
    let d = env.dir.join("fuse-fail");
    mkdir(&d)?;
    let img = d.join("fs.img");
    mkfs_empty("ext4", &img, 32 << 20)?;
    let mnt = d.join("mnt");
    mkdir(&mnt)?;
    let before = image_hash(&img)?;
    expect(
        LKLFUSE,
        &[s(&img), s(&mnt), "-o", "log=/nonexistent/dir/x.log"],
        1,
        "-o log=/nonexistent/dir/x.log: cannot open the log file: No such file or directory",
    )?;
    if image_hash(&img)? != before {
        return Err("a bad log path changed the image".into());
    }
    // nobody owns the image and its directory, not the mount point.
    std::os::unix::fs::chown(&d, Some(65534), Some(65534)).map_err(e)?;
    std::os::unix::fs::chown(&img, Some(65534), Some(65534)).map_err(e)?;
    run("chmod", &["666", "/dev/fuse"])?;
    let mut up = d.clone();
    while let Some(parent) = up.parent() {
        let m = std::fs::metadata(parent).map_err(e)?;
        if std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o001 == 0 {
            return Err(format!("{} is not searchable by nobody", parent.display()));
        }
        up = parent.to_path_buf();
    }
    let o = tool(
        "setpriv",
        &[
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            LKLFUSE,
            "-f",
            s(&img),
            s(&mnt),
            "-o",
            "type=ext4",
        ],
    )?;
    if o.code() != Some(1) || !o.stderr.contains("cannot mount FUSE on") {
        return Err(format!(
            "lklfuse on a mount point nobody cannot write: {}",
            o.describe()
        ));
    }
    if is_mounted(&mnt) {
        return Err("a mount was left behind".into());
    }
    if run("dumpe2fs", &["-h", s(&img)])?.contains("needs_recovery") {
        return Err("the refused FUSE mount left the image needing journal replay".into());
    }
    fsck("ext4", &img)
}

/// Random and mutated command lines for fs2tar, cptofs, cpfromfs and
/// lklfuse: every run ends within its deadline, never panics or dies of a
/// signal, exits 0 only having done its work (fs2tar: a new archive), and
/// leaves an image given only to read unchanged (a writer's changes are
/// checked with e2fsck, then the image is put back). Runs in a scratch
/// directory, with pieces that cannot reach outside it.
/// `LKL_FSTOOLS_CLI_FUZZ_SECS` (default 40) bounds it; the seed is
/// `LKL_FSTOOLS_SEED`.
pub fn fuzz_command_lines(env: &Env) -> Outcome {
    let secs = env_u64("LKL_FSTOOLS_CLI_FUZZ_SECS", 40);
    let seed = env_u64("LKL_FSTOOLS_SEED", 0x00c0_ffee);
    let d = env.dir.join("clifuzz");
    mkdir(&d)?;
    let img = d.join("fs.img");
    mkfs_empty("ext4", &img, 16 << 20)?;
    let tree = d.join("tree");
    mkdir(&tree.join("sub"))?;
    std::fs::write(tree.join("sub/a"), "a").map_err(e)?;
    ok(CPTOFS, &["-i", s(&img), &format!("{}/.", s(&tree)), "/"])?;
    let reference = d.join("fs.ref");
    std::fs::copy(&img, &reference).map_err(e)?;
    let ro_hash = image_hash(&img)?;
    let mnt = d.join("mnt");
    let out = d.join("out");
    mkdir(&mnt)?;
    let fifo = d.join("fifo");
    run("mkfifo", &[s(&fifo)])?;
    let img_s = s(&img).to_owned();
    // Pieces the fuzzer draws arguments from: options of every tool, good
    // and bad values, paths that exist and do not, odd bytes. No absolute
    // host path but the scratch directory's: a random output must not
    // land outside it, and a random source must stay small.
    let pool: Vec<String> = [
        "-t",
        "-P",
        "-p",
        "-s",
        "-m",
        "-i",
        "-o",
        "-g",
        "-q",
        "-f",
        "-d",
        "-h",
        "-V",
        "--help",
        "--mb",
        "--mount-options",
        "--selinux-contexts",
        "--partition",
        "--",
        "-",
        "ext4",
        "vfat",
        "btrfs",
        "nosuchfs",
        "0",
        "1",
        "2",
        "-1",
        "16",
        "99999999999999999999",
        "x",
        "",
        ".",
        "sub",
        "sub/a",
        "nonexistent",
        "ro",
        "rw",
        "type=ext4",
        "type=",
        "part=0",
        "part=1",
        "mb=16",
        "mb=0",
        "mb=x",
        "opts=frob",
        "opts=",
        "log=nonexistent/dir/log",
        "threads=0",
        "threads=65",
        "max_nodes=1",
        "allow_other,allow_root",
        "fsname=",
        ",,,",
        "\\",
        "=",
        "a=b=c",
        "*",
        "[",
        "?",
        "\u{e9}\u{301}",
        "\t",
        "-tt",
        "-mm",
        "--mb=",
        "--mb=15",
        "o.tar",
    ]
    .iter()
    .map(|x| x.to_string())
    .chain([
        img_s.clone(),
        s(&d.join("missing.img")).to_owned(),
        s(&fifo).to_owned(),
        s(&mnt).to_owned(),
        s(&out).to_owned(),
        s(&tree).to_owned(),
    ])
    .collect();
    // Command lines that are right, mutated from.
    let seeds: Vec<(&str, Vec<String>)> = vec![
        (FS2TAR, vec![img_s.clone(), "o.tar".into()]),
        (
            CPFROMFS,
            vec!["-i".into(), img_s.clone(), "/sub".into(), s(&out).into()],
        ),
        (
            CPTOFS,
            vec![
                "-i".into(),
                img_s.clone(),
                s(&tree.join("sub")).into(),
                "/".into(),
            ],
        ),
        (
            LKLFUSE,
            vec![img_s.clone(), s(&mnt).into(), "-o".into(), "ro".into()],
        ),
    ];
    let watch = [mnt.clone(), out.clone(), tree.clone(), tree.join("sub")];
    let mut rng = Rng(seed | 1);
    let start = Instant::now();
    let (mut runs, mut zero) = (0usize, 0usize);
    while start.elapsed() < Duration::from_secs(secs) {
        let (prog, base) = &seeds[runs % seeds.len()];
        let mut args = base.clone();
        if rng.next().is_multiple_of(4) {
            // Entirely random.
            args = (0..rng.next() % 7)
                .map(|_| pool[(rng.next() as usize) % pool.len()].clone())
                .collect();
        } else {
            // Replace, drop or insert one to three arguments.
            for _ in 0..1 + rng.next() % 3 {
                let at = (rng.next() as usize) % args.len().max(1);
                let piece = pool[(rng.next() as usize) % pool.len()].clone();
                match rng.next() % 3 {
                    0 if at < args.len() => args[at] = piece,
                    1 if at < args.len() => {
                        args.remove(at);
                    }
                    _ => args.insert(at, piece),
                }
            }
        }
        // Only the fixtures stay: whatever an earlier run wrote goes.
        for entry in std::fs::read_dir(&d).map_err(e)? {
            let p = entry.map_err(e)?.path();
            if ![&img, &reference, &tree, &mnt, &fifo].contains(&&p) {
                let _ = std::fs::remove_dir_all(&p);
                let _ = std::fs::remove_file(&p);
            }
        }
        mkdir(&out)?;
        if !std::fs::symlink_metadata(&fifo).is_ok_and(|m| m.file_type().is_fifo()) {
            // Replaced by an archive written over it: made again.
            let _ = std::fs::remove_file(&fifo);
            run("mkfifo", &[s(&fifo)])?;
        }
        // What each argument names before the run (inode), to tell a new
        // archive (a new inode: created, or renamed over the old name).
        let inode = |a: &String| std::fs::symlink_metadata(d.join(a)).ok().map(|m| m.ino());
        let existed: Vec<Option<u64>> = args.iter().map(inode).collect();
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = run_bounded(prog, &refs, &d, &watch)?;
        let what = format!("{} {args:?} (seed {seed}, run {runs})", name(prog));
        if o.stderr.contains("panicked") {
            return Err(format!("{what}: panicked: {}", o.describe()));
        }
        match o.code() {
            None => return Err(format!("{what}: hang or signal: {}", o.describe())),
            Some(0) => zero += 1,
            Some(1 | 2) => {}
            Some(c) => return Err(format!("{what}: exit {c}: {}", o.describe())),
        }
        let informational = args
            .iter()
            .any(|a| matches!(a.as_str(), "-h" | "--help" | "-V"));
        if o.code() == Some(0) && *prog == FS2TAR && !informational {
            let made = args
                .iter()
                .zip(&existed)
                .any(|(a, was)| d.join(a).is_file() && inode(a) != *was);
            if !made {
                return Err(format!("{what}: exit 0 but no new archive"));
            }
        }
        if let Some(m) = watch.iter().find(|m| is_mounted(m)) {
            let _ = run("fusermount3", &["-u", "-z", s(m)]);
            return Err(format!("{what}: left a mount on {} behind", m.display()));
        }
        let h = image_hash(&img)?;
        if h != ro_hash {
            let writer = *prog == CPTOFS || (*prog == LKLFUSE && !args.iter().any(|a| a == "ro"));
            if !writer {
                return Err(format!("{what}: changed an image it only reads"));
            }
            // Written on purpose: consistent, then put back for the next.
            fsck("ext4", &img).map_err(|x| format!("{what}: {x}"))?;
            std::fs::copy(&reference, &img).map_err(e)?;
        }
        runs += 1;
    }
    eprintln!(
        "    command-line fuzz: {runs} runs in {:?} (seed {seed}), {zero} exited 0",
        start.elapsed()
    );
    if runs < 8 {
        return Err(format!("only {runs} runs in {secs} s"));
    }
    Ok(())
}

/// Runs `prog args` in `cwd` with a 30 s deadline. lklfuse runs in the
/// foreground (`-f` first); a mount it brings up on one of `watch` is
/// unmounted (`fusermount3 -u`), after which it must end by itself.
fn run_bounded(prog: &str, args: &[&str], cwd: &Path, watch: &[PathBuf]) -> Result<Output, String> {
    let mut cmd = Command::new(prog);
    if prog == LKLFUSE {
        cmd.arg("-f");
    }
    cmd.args(args).current_dir(cwd);
    let fusermount = |opt: &str, m: &Path| {
        let _ = Command::new("fusermount3")
            .args([opt, s(m)])
            .stderr(Stdio::null())
            .status();
    };
    let mut unmounted = false;
    let o = run_cmd_for(cmd, Duration::from_secs(30), || {
        if prog == LKLFUSE && !unmounted {
            if let Some(m) = watch.iter().find(|m| is_mounted(m)) {
                fusermount("-u", m);
                unmounted = true;
            }
        }
    })?;
    // Killed at the deadline: its mount is dead, detach it.
    for m in watch.iter().filter(|m| is_mounted(m)) {
        fusermount("-uz", m);
    }
    Ok(o)
}
