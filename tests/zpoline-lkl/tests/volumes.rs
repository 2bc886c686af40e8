//! Host directories inside LKL, end to end: `lkl-run --zpoline --volume
//! HOSTDIR:PATH[:ro] PROGRAM`. PATH does not exist on the host: the program reaches
//! HOSTDIR's files only through LKL (the kernel's virtiofs and our device), and what
//! it leaves there is compared with the same work done natively.
//!
//! Files of 64 KiB or more opened read-only are read straight from the host
//! (passthrough); with `LKL_TREE_DEBUG=1` each such open says so on stderr
//! (`lkl-tree: passthrough read of PATH (fd N)`), which the passthrough cases check.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Output};
use std::time::Duration;

use lkl_test_support::{self as support, Outcome, TempDir};

const LKL_RUN: &str = env!("CARGO_BIN_EXE_zpl-lkl-run");
const DEADLINE: Duration = Duration::from_secs(180);

/// A case of this file.
type Case = support::Case<Env>;

/// What every case gets.
struct Env {
    dir: TempDir,
    /// Where volumes appear in the programs' view (absent on the host).
    mnt: String,
    /// A tarball of a tree of small files and a C program with its Makefile.
    tarball: PathBuf,
    /// `c/volread.c`, built on the host.
    volread: PathBuf,
}

impl Env {
    /// A fresh, empty host directory `name`.
    fn fresh(&self, name: &str) -> Result<PathBuf, String> {
        let d = self.dir.path().join(name);
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).map_err(|e| format!("mkdir {}: {e}", d.display()))?;
        Ok(d)
    }

    /// `lkl-run --zpoline EXTRA... ARGS`.
    fn lkl_run(&self, extra: &[String], args: &[&str]) -> Result<Output, String> {
        let mut cmd = Command::new(LKL_RUN);
        cmd.arg("--zpoline")
            .args(extra)
            .args(args)
            .current_dir(self.dir.path())
            .env("LC_ALL", "C");
        support::output_within(&mut cmd, DEADLINE)
    }

    /// `lkl-run --zpoline --volume DIR:MNT[:ro] ARGS` with `LKL_TREE_DEBUG=1`: it
    /// succeeded; its stdout and stderr.
    fn debug_run(&self, dir: &Path, ro: bool, args: &[&str]) -> Result<(String, String), String> {
        let mut cmd = Command::new(LKL_RUN);
        cmd.arg("--zpoline")
            .arg(format!(
                "--volume={}:{}{}",
                dir.display(),
                self.mnt,
                if ro { ":ro" } else { "" }
            ))
            .args(args)
            .current_dir(self.dir.path())
            .env("LC_ALL", "C")
            .env("LKL_TREE_DEBUG", "1");
        let o = support::output_within(&mut cmd, DEADLINE)?;
        if !o.status.success() {
            return Err(format!("{args:?} failed: {}", support::output_text(&o)));
        }
        Ok((
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        ))
    }

    /// `lkl-run --zpoline --volume DIR:MNT[:ro] sh -c SCRIPT`.
    fn sh(&self, dir: &Path, ro: bool, script: &str) -> Result<Output, String> {
        let spec = format!(
            "--volume={}:{}{}",
            dir.display(),
            self.mnt,
            if ro { ":ro" } else { "" }
        );
        self.lkl_run(&[spec], &["sh", "-c", script])
    }
}

/// The run succeeded and printed exactly `want` on stdout.
fn expect_stdout(o: Result<Output, String>, want: &str) -> Outcome {
    let o = o?;
    let out = String::from_utf8_lossy(&o.stdout);
    if !o.status.success() || out != want {
        return Err(format!(
            "expected success and stdout {want:?}, got {}:\n{}",
            o.status,
            support::output_text(&o)
        ));
    }
    Ok(())
}

fn write(p: &Path, data: &[u8]) -> Outcome {
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
    }
    std::fs::write(p, data).map_err(|e| format!("write {}: {e}", p.display()))
}

fn case_cat_and_cp(e: &Env) -> Outcome {
    let d = e.fresh("catcp")?;
    write(&d.join("in.txt"), b"from the host\n")?;
    let beside = e.dir.path().join("beside.txt");
    write(&beside, b"a host file outside the volume\n")?;
    let m = &e.mnt;
    expect_stdout(
        e.sh(
            &d,
            false,
            &format!(
                "cat {m}/in.txt && cp /etc/services {m}/services && cp {m}/in.txt {m}/copy.txt \
                 && cat {} && ls {m}",
                beside.display()
            ),
        ),
        "from the host\na host file outside the volume\ncopy.txt\nin.txt\nservices\n",
    )?;
    support::run(
        Command::new("cmp")
            .arg("/etc/services")
            .arg(d.join("services")),
    )?;
    if std::fs::read(d.join("copy.txt")).map_err(|e| e.to_string())? != b"from the host\n" {
        return Err("copy.txt differs on the host".into());
    }
    Ok(())
}

/// Untars the tarball natively and onto a volume, builds the program in both with
/// make, and compares the trees (diff -r) and the programs' output.
fn case_tar_and_build(e: &Env) -> Outcome {
    let native = e.fresh("native")?;
    let vol = e.fresh("tarvol")?;
    let tarball = e.tarball.display();
    support::run(
        Command::new("sh")
            .arg("-c")
            .arg(format!(
                "tar -xf {tarball} && make -s -C proj && proj/hello"
            ))
            .current_dir(&native),
    )?;
    let m = &e.mnt;
    expect_stdout(
        e.sh(
            &vol,
            false,
            &format!("cd {m} && tar -xf {tarball} && make -s -C proj && proj/hello"),
        ),
        "built on a volume\n",
    )?;
    // The binaries differ only if the compiler's input did: compare the trees.
    support::run(
        Command::new("diff")
            .args(["-r", "--no-dereference"])
            .arg(&native)
            .arg(&vol),
    )
    .map(drop)
    .map_err(|d| format!("the tree untarred and built on the volume differs: {d}"))
}

/// With `LKL_VOLUME_STATS=1`, an untar onto a volume reports the requests it
/// took per opcode on stderr as the kernel process ends: one `CREATE` per
/// regular file, one `MKDIR` per directory; `tar --compare` on the host finds the
/// tree whole.
fn case_request_counts(e: &Env) -> Outcome {
    let vol = e.fresh("statvol")?;
    let spec = format!("--volume={}:{}", vol.display(), e.mnt);
    let mut cmd = Command::new(LKL_RUN);
    cmd.args(["--zpoline", &spec, "tar", "-xf"])
        .arg(&e.tarball)
        .args(["-C", &e.mnt])
        .current_dir(e.dir.path())
        .env("LKL_VOLUME_STATS", "1");
    let o = support::output_within(&mut cmd, DEADLINE)?;
    let err = String::from_utf8_lossy(&o.stderr);
    if !o.status.success() {
        return Err(format!("tar -x onto the volume failed: {err}"));
    }
    let count = |op: &str| -> Option<u64> {
        err.lines()
            .find(|l| l.split_whitespace().nth(1) == Some(op))
            .and_then(|l| l.split_whitespace().nth(2)?.parse().ok())
    };
    // 400 data files, hello.c and the Makefile; proj, data and d0..d19.
    if count("CREATE") != Some(402) || count("MKDIR") != Some(22) || count("SYMLINK") != Some(1) {
        return Err(format!(
            "want 402 CREATEs, 22 MKDIRs and a SYMLINK in the report: {err}"
        ));
    }
    if !err.contains("requests,") {
        return Err(format!("no total in the report: {err}"));
    }
    support::run(
        Command::new("tar")
            .arg("--compare")
            .arg("-f")
            .arg(&e.tarball)
            .arg("-C")
            .arg(&vol),
    )
    .map(drop)
    .map_err(|d| format!("tar --compare against the volume's host directory: {d}"))
}

/// Set-id bits as natively: a write by a user without `CAP_FSETID` (`--user`)
/// clears a set-user-id file's bit on the host, a `chown` by root clears the
/// set-user-id and set-group-id bits of a group-executable file, and a write by
/// root keeps them; the same done natively (the write as that user through
/// `setpriv`) leaves the same modes.
fn case_set_ids(e: &Env) -> Outcome {
    use std::os::unix::fs::{chown, MetadataExt};
    let (vol, native) = (e.fresh("setid-vol")?, e.fresh("setid-native")?);
    for d in [&vol, &native] {
        for (f, owner, mode) in [
            ("user", 65534, 0o4755),
            ("chowned", 0, 0o6755),
            ("root", 65534, 0o4755),
        ] {
            write(&d.join(f), b"before\n")?;
            chown(d.join(f), Some(owner), Some(owner)).map_err(|e| format!("chown {f}: {e}"))?;
            support::set_mode(&d.join(f), mode)?;
        }
    }
    let m = &e.mnt;
    let spec = format!("--volume={}:{m}", vol.display());
    let o = e.lkl_run(
        &["--user=65534:65534".into(), spec.clone()],
        &["sh", "-c", &format!("echo more >> {m}/user")],
    )?;
    if !o.status.success() {
        return Err(format!(
            "the write as 65534 failed: {}",
            support::output_text(&o)
        ));
    }
    let o = e.lkl_run(
        &[spec],
        &[
            "sh",
            "-c",
            &format!("chown 0:0 {m}/chowned && echo more >> {m}/root"),
        ],
    )?;
    if !o.status.success() {
        return Err(format!(
            "chown and the write as root failed: {}",
            support::output_text(&o)
        ));
    }
    let mut w = support::as_nobody("sh");
    w.arg("-c").arg("echo more >> user").current_dir(&native);
    support::run(&mut w)?;
    support::run(Command::new("chown").arg("0:0").arg(native.join("chowned")))?;
    support::run(
        Command::new("sh")
            .arg("-c")
            .arg("echo more >> root")
            .current_dir(&native),
    )?;
    for (f, want) in [("user", 0o755), ("chowned", 0o755), ("root", 0o4755)] {
        let mode = |d: &Path| {
            std::fs::metadata(d.join(f))
                .map(|m| m.mode() & 0o7777)
                .map_err(|e| format!("{f}: {e}"))
        };
        let (v, n) = (mode(&vol)?, mode(&native)?);
        if (v, n) != (want, want) {
            return Err(format!(
                "{f}: mode {v:o} on the volume, {n:o} natively, want {want:o}"
            ));
        }
        let data = std::fs::read(vol.join(f)).map_err(|e| e.to_string())?;
        if data != b"before\nmore\n" && f != "chowned" {
            return Err(format!("{f}: the volume's file holds {data:?}"));
        }
    }
    Ok(())
}

fn case_read_only(e: &Env) -> Outcome {
    let d = e.fresh("ro")?;
    write(&d.join("kept"), b"kept\n")?;
    let m = &e.mnt;
    let o = e.sh(
        &d,
        true,
        &format!("cat {m}/kept; echo x > {m}/new; mkdir {m}/dir; rm {m}/kept; exit 0"),
    )?;
    let all = support::output_text(&o);
    if !all.contains("kept") || !all.contains("Read-only file system") {
        return Err(format!("expected the read and EROFS refusals: {all}"));
    }
    if d.join("new").exists() || d.join("dir").exists() || !d.join("kept").exists() {
        return Err("a read-only volume changed the host directory".into());
    }
    Ok(())
}

fn case_host_changes(e: &Env) -> Outcome {
    let d = e.fresh("later")?;
    let m = &e.mnt;
    expect_stdout(e.sh(&d, false, &format!("ls -A {m}; echo end")), "end\n")?;
    write(
        &d.join("made-later"),
        b"made on the host after the first run\n",
    )?;
    expect_stdout(
        e.sh(&d, false, &format!("cat {m}/made-later")),
        "made on the host after the first run\n",
    )
}

fn case_errors(e: &Env) -> Outcome {
    let missing = e.dir.path().join("no-such-dir");
    let o = e.lkl_run(&[format!("--volume={}:/x", missing.display())], &["true"]);
    support::expect_output(o, false, &["--volume", "no-such-dir", "No such file"])?;
    let o = e.lkl_run(&["--volume=/tmp:relative".into()], &["true"]);
    support::expect_output(o, false, &["--volume", "absolute"])?;
    let o = e.lkl_run(
        &["--volume=/tmp:/x".into(), "--private-kernel".into()],
        &["true"],
    );
    support::expect_output(o, false, &["--private-kernel"])
}

/// The config's `volumes` key, with a volume inside a disk's mount (made in the
/// image) and a host file read through it.
fn case_config_and_disk(e: &Env) -> Outcome {
    let d = e.fresh("cfgvol")?;
    write(&d.join("f"), b"through the config\n")?;
    let src = e.fresh("img.src")?;
    write(&src.join("on-image"), b"image file\n")?;
    let img = e.dir.path().join("disk.img");
    support::mkfs_image("ext4", &img, Some(&src))?;
    let cfg = e.dir.path().join("volumes.json");
    let disk = format!("{}/disk", e.mnt);
    let text = format!(
        r#"{{"disks": [{{"image": "{}", "path": "{disk}"}}],
            "volumes": [{{"dir": "{}", "path": "{disk}/vol", "readonly": "1"}}]}}"#,
        img.display(),
        d.display()
    );
    std::fs::write(&cfg, text).map_err(|e| e.to_string())?;
    expect_stdout(
        e.lkl_run(
            &[format!("--config={}", cfg.display())],
            &["sh", "-c", &format!("cat {disk}/on-image {disk}/vol/f")],
        ),
        "image file\nthrough the config\n",
    )?;
    support::fsck_clean("ext4", &img)
}

/// A root image (the host's static busybox in it) with a volume: the program
/// is the image's, the volume's files the host's; the mount point is made in
/// the image, which stays clean.
fn case_root_and_volume(e: &Env) -> Outcome {
    let d = e.fresh("rootvol")?;
    write(&d.join("in"), b"host file under the root image\n")?;
    let src = e.fresh("root.src")?;
    std::fs::create_dir_all(src.join("bin")).map_err(|e| e.to_string())?;
    std::fs::copy(BUSYBOX, src.join("bin/busybox")).map_err(|e| format!("{BUSYBOX}: {e}"))?;
    write(&src.join("etc/hello"), b"from the image\n")?;
    let img = e.dir.path().join("root.img");
    support::mkfs_image("ext4", &img, Some(&src))?;
    let o = e.lkl_run(
        &[
            format!("--root={}", img.display()),
            format!("--volume={}:/work", d.display()),
        ],
        &[
            BUSYBOX,
            "sh",
            "-c",
            "cat /etc/hello /work/in && cp /etc/hello /work/copied && ls /work",
        ],
    );
    expect_stdout(
        o,
        "from the image\nhost file under the root image\ncopied\nin\n",
    )?;
    if std::fs::read(d.join("copied")).map_err(|e| e.to_string())? != b"from the image\n" {
        return Err("the copy out of the image is not on the host".into());
    }
    support::fsck_clean("ext4", &img)
}

/// `len` bytes whose byte at offset i is i % 251 (what `c/volread.c` checks).
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

/// `sha256sum FILE`'s hash, on the host.
fn host_sha256(file: &Path) -> Result<String, String> {
    let out = support::run(Command::new("sha256sum").arg(file))?;
    Ok(out
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string())
}

/// `stderr` says the program read `path` (LKL's) through the host.
fn expect_passthrough(stderr: &str, path: &str) -> Outcome {
    let line = format!("lkl-tree: passthrough read of {path} (fd ");
    if !stderr.contains(&line) {
        return Err(format!("no passthrough read of {path}; stderr:\n{stderr}"));
    }
    Ok(())
}

/// A 64 MiB file's sha256 through a volume equals the host's, read through the
/// host (passthrough), on a read-write and a read-only volume; a file below the
/// passthrough size is read through LKL.
fn case_passthrough_sha256(e: &Env) -> Outcome {
    let d = e.fresh("sha")?;
    support::run(
        Command::new("head")
            .args(["-c", "64M", "/dev/urandom"])
            .stdout(std::fs::File::create(d.join("big")).map_err(|e| e.to_string())?),
    )?;
    write(&d.join("small"), &pattern(1000))?;
    let want = host_sha256(&d.join("big"))?;
    let m = &e.mnt;
    for ro in [false, true] {
        let (out, err) = e.debug_run(
            &d,
            ro,
            &[
                "sh",
                "-c",
                &format!("sha256sum {m}/big; cat {m}/small | wc -c"),
            ],
        )?;
        if out != format!("{want}  {m}/big\n1000\n") {
            return Err(format!(
                "read-only {ro}: expected {want} and 1000, got {out:?}"
            ));
        }
        expect_passthrough(&err, &format!("{m}/big"))?;
        if err.contains(&format!("passthrough read of {m}/small")) {
            return Err(format!(
                "a 1000-byte file was read through the host:\n{err}"
            ));
        }
    }
    Ok(())
}

/// The host's libc copied onto a volume and loaded from there (`LD_LIBRARY_PATH`):
/// ld.so's open is a passthrough one and its mappings the host file's, rewritten as
/// any, so the `cat` it runs still reaches the volume's file through LKL.
fn case_passthrough_library(e: &Env) -> Outcome {
    let d = e.fresh("lib")?;
    let libc = [
        "/lib/x86_64-linux-gnu/libc.so.6",
        "/usr/lib/x86_64-linux-gnu/libc.so.6",
    ]
    .into_iter()
    .find(|p| Path::new(p).exists())
    .ok_or("no libc.so.6 in /lib/x86_64-linux-gnu or /usr/lib/x86_64-linux-gnu")?;
    std::fs::create_dir_all(d.join("lib")).map_err(|e| e.to_string())?;
    std::fs::copy(libc, d.join("lib/libc.so.6")).map_err(|e| format!("{libc}: {e}"))?;
    write(&d.join("pat"), &pattern(1 << 20))?;
    let want = host_sha256(&d.join("pat"))?;
    let m = &e.mnt;
    let script = format!("LD_LIBRARY_PATH={m}/lib cat {m}/pat | sha256sum");
    let (out, err) = e.debug_run(&d, false, &["sh", "-c", &script])?;
    if out != format!("{want}  -\n") {
        return Err(format!("expected {want}: {out}{err}"));
    }
    expect_passthrough(&err, &format!("{m}/lib/libc.so.6"))?;
    expect_passthrough(&err, &format!("{m}/pat"))
}

/// `c/volread.c offsets`: reads interleaved with lseek, pread, readv, preadv, dups, a
/// forked child and an exec'd image on one open file description, fdinfo's pos,
/// mmap; the exec'd image keeps the passthrough fd.
fn case_passthrough_offsets(e: &Env) -> Outcome {
    let d = e.fresh("offsets")?;
    write(&d.join("pat"), &pattern(3 << 20))?;
    let path = format!("{}/pat", e.mnt);
    let (out, err) = e.debug_run(&d, false, &[s(&e.volread), "offsets", &path])?;
    if out != "offsets ok\n" {
        return Err(format!("volread offsets: {out}{err}"));
    }
    expect_passthrough(&err, &path)?;
    if !err.contains("kept through the exec") {
        return Err(format!(
            "the exec'd image did not keep the passthrough fd:\n{err}"
        ));
    }
    Ok(())
}

/// A placeholder made after a passthrough open is never a copy of the host file the
/// passthrough fd holds: the shell's fd 4 (an LKL file opened after the passthrough fd
/// 3), read from the host side by another process, names the placeholder memory file.
fn case_passthrough_then_placeholder(e: &Env) -> Outcome {
    let d = e.fresh("after")?;
    write(&d.join("big"), &pattern(1 << 20))?;
    write(&d.join("small"), &pattern(100))?;
    let m = &e.mnt;
    let script = format!("exec 3<{m}/big 4<{m}/small; readlink /proc/$$/fd/3 /proc/$$/fd/4");
    let (out, err) = e.debug_run(&d, false, &["sh", "-c", &script])?;
    expect_passthrough(&err, &format!("{m}/big"))?;
    let lines: Vec<&str> = out.lines().collect();
    match lines[..] {
        [big, small] if big.ends_with("/big") && small.contains("lkl-placeholder") => Ok(()),
        _ => Err(format!(
            "expected the host file for fd 3 and a placeholder for fd 4, got {out:?}{err}"
        )),
    }
}

/// Three passthrough fds open in a shell, handed to each of three `cat`s through an
/// exec (as its stdin, and as fds 3-5): every one comes back a passthrough fd at its
/// offset in every image (the fd table handed on is checked fd by fd).
fn case_passthrough_exec_table(e: &Env) -> Outcome {
    let d = e.fresh("exectable")?;
    for (name, len) in [("a", 100_000), ("b", 200_000), ("c", 300_000)] {
        write(&d.join(name), &pattern(len))?;
    }
    let m = &e.mnt;
    let script = format!(
        "exec 3<{m}/a 4<{m}/b 5<{m}/c; head -c 1000 <&3 >/dev/null; \
         cat <&3 | wc -c; cat <&4 | wc -c; cat <&5 | wc -c"
    );
    let (out, err) = e.debug_run(&d, false, &["sh", "-c", &script])?;
    if out != "99000\n200000\n300000\n" {
        return Err(format!("expected 99000, 200000, 300000: {out}{err}"));
    }
    // Each cat gets fds 0 and 3-5 back, all passthrough fds.
    let kept = err.matches("kept through the exec").count();
    if kept < 12 {
        return Err(format!(
            "{kept} passthrough fds kept through the execs, not 12 or more:\n{err}"
        ));
    }
    Ok(())
}

/// `c/volread.c coherent`: a passthrough reader sees the file changed on the host
/// and written through LKL by another fd.
fn case_passthrough_coherent(e: &Env) -> Outcome {
    let d = e.fresh("coherent")?;
    write(&d.join("pat"), &pattern(1 << 20))?;
    let path = format!("{}/pat", e.mnt);
    let host = d.join("pat");
    let (out, err) = e.debug_run(&d, false, &[s(&e.volread), "coherent", &path, s(&host)])?;
    if out != "coherent ok\n" {
        return Err(format!("volread coherent: {out}{err}"));
    }
    expect_passthrough(&err, &path)
}

/// A volume's file that LKL still knows (its name cached) is replaced on the host
/// by a link to a file outside the host directory: the passthrough open refuses the
/// link (ELOOP) and the program reads what LKL opened, never the outside file.
fn case_passthrough_link_out(e: &Env) -> Outcome {
    let top = e.fresh("linkout")?;
    let d = top.join("vol");
    write(&d.join("f"), &vec![b'a'; 100_000])?;
    write(&top.join("secret"), &vec![b'S'; 100_000])?;
    let (hf, m) = (d.join("f"), &e.mnt);
    let script = format!(
        "stat -c %s {m}/f && mv {hf} {hf}.old && ln -s ../secret {hf} && \
         head -c 5 {m}/f; echo; head -c 5 {m}/f; echo",
        hf = hf.display()
    );
    let (out, err) = e.debug_run(&d, false, &["sh", "-c", &script])?;
    if out.contains('S') {
        return Err(format!("the file outside the volume was read: {out}{err}"));
    }
    // Within a second LKL's cached name still leads to the old file ("aaaaa"), whose
    // host name is now the link: refused. Later LKL sees the link and follows it
    // inside its own tree (nothing there: empty lines, ENOENT on stderr).
    if out.contains("aaaaa")
        && !err.contains(&format!(
            "no passthrough for {m}/f: a link on the host side (ELOOP)"
        ))
    {
        return Err(format!("the swapped name was not refused: {out}{err}"));
    }
    if err.contains(&format!("passthrough read of {m}/f")) {
        return Err(format!("a passthrough read through a link: {err}"));
    }
    Ok(())
}

/// Files on images are read through LKL, never from the host: `--mount` (no
/// passthrough line), and `--root IMAGE --volume` (the image's busybox reads the
/// volume's file through the host, LKL's `/proc` in the image's `/proc`).
fn case_passthrough_images(e: &Env) -> Outcome {
    let src = e.fresh("pimg.src")?;
    write(&src.join("pat"), &pattern(1 << 20))?;
    std::fs::create_dir_all(src.join("bin")).map_err(|e| e.to_string())?;
    std::fs::create_dir_all(src.join("proc")).map_err(|e| e.to_string())?;
    std::fs::copy(BUSYBOX, src.join("bin/busybox")).map_err(|e| format!("{BUSYBOX}: {e}"))?;
    let img = e.dir.path().join("pimg.img");
    support::mkfs_image("ext4", &img, Some(&src))?;
    let want = host_sha256(&src.join("pat"))?;
    let mut cmd = Command::new(LKL_RUN);
    cmd.arg("--zpoline")
        .arg(format!("--mount={}:{}:ro", img.display(), e.mnt))
        .args(["sha256sum", &format!("{}/pat", e.mnt)])
        .env("LKL_TREE_DEBUG", "1");
    let o = support::output_within(&mut cmd, DEADLINE)?;
    let text = support::output_text(&o);
    if !o.status.success() || !text.contains(&want) || text.contains("passthrough read") {
        return Err(format!("--mount: expected {want} read through LKL: {text}"));
    }
    let vol = e.fresh("pimg.vol")?;
    write(&vol.join("pat"), &pattern(1 << 20))?;
    let mut cmd = Command::new(LKL_RUN);
    cmd.arg("--zpoline")
        .arg(format!("--root={}", img.display()))
        .arg(format!("--volume={}:/work", vol.display()))
        .args([BUSYBOX, "sha256sum", "/work/pat", "/pat"])
        .env("LKL_TREE_DEBUG", "1");
    let o = support::output_within(&mut cmd, DEADLINE)?;
    let text = support::output_text(&o);
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
    );
    if !o.status.success() || out != format!("{want}  /work/pat\n{want}  /pat\n") {
        return Err(format!("--root --volume: expected {want} twice: {text}"));
    }
    expect_passthrough(&err, "/work/pat")?;
    if err.contains("passthrough read of /pat") {
        return Err(format!(
            "the root image's file was read through the host: {err}"
        ));
    }
    support::fsck_clean("ext4", &img)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap_or_default()
}

/// The host's static busybox: the program of the root image.
const BUSYBOX: &str = "/bin/busybox";

fn setup() -> Result<Env, String> {
    support::require_root("the volume tests")?;
    for (tool, pkg) in [
        ("tar", "tar"),
        ("make", "make"),
        ("cc", "gcc"),
        ("diff", "diffutils"),
        ("cmp", "diffutils"),
        ("sha256sum", "coreutils"),
        ("gcc", "gcc"),
        ("mkfs.ext4", "e2fsprogs"),
        ("e2fsck", "e2fsprogs"),
        (BUSYBOX, "busybox-static"),
    ] {
        support::require_tool(tool, pkg)?;
    }
    support::run(Command::new("sysctl").args(["-qw", "vm.mmap_min_addr=0"]))?;
    let dir = TempDir::new("lkl-volumes")?;
    let mnt = format!("/mnt/lkl-volume-{}", std::process::id());
    if Path::new(&mnt).exists() {
        return Err(format!(
            "{mnt} exists on the host: the test wants a path only LKL has"
        ));
    }
    let proj = dir.path().join("src/proj");
    write(
        &proj.join("hello.c"),
        b"#include <stdio.h>\nint main(void) { puts(\"built on a volume\"); return 0; }\n",
    )?;
    write(
        &proj.join("Makefile"),
        b"hello: hello.c\n\tcc -O2 -o hello hello.c\n",
    )?;
    for i in 0..400 {
        write(
            &proj.join(format!("data/d{}/file-{i}.txt", i % 20)),
            format!("small file {i}\n").repeat(i % 7 + 1).as_bytes(),
        )?;
    }
    std::os::unix::fs::symlink("data/d0/file-0.txt", proj.join("link"))
        .map_err(|e| e.to_string())?;
    let volread = dir.path().join("volread");
    support::gcc(
        &support::workspace().join("tests/zpoline-lkl/c/volread.c"),
        &volread,
        &["-O2", "-Wall"],
    )?;
    let tarball = dir.path().join("proj.tar");
    support::run(
        Command::new("tar")
            .arg("-cf")
            .arg(&tarball)
            .arg("-C")
            .arg(dir.path().join("src"))
            .arg("proj"),
    )?;
    Ok(Env {
        dir,
        mnt,
        tarball,
        volread,
    })
}

fn main() -> ExitCode {
    let cases: [(&str, &Case); 17] = [
        (
            "cat and cp through a volume, a host file beside it in the same run",
            &case_cat_and_cp,
        ),
        (
            "tar -x of 400 files and a C program onto a volume, make, run; diff -r against the same done natively",
            &case_tar_and_build,
        ),
        (
            "LKL_VOLUME_STATS: an untar reports its requests per opcode (a CREATE per file); tar --compare on the host",
            &case_request_counts,
        ),
        (
            "set-id bits as natively: a write by --user clears set-user-id, root's chown clears both, root's write keeps them",
            &case_set_ids,
        ),
        ("a :ro volume is read, and refuses writes with EROFS; the host directory is unchanged", &case_read_only),
        ("a file made on the host is seen by the next run", &case_host_changes),
        ("a missing directory, a relative PATH and --private-kernel are refused clearly", &case_errors),
        (
            "the config's volumes: a read-only volume inside a disk's mount (mount point made in the image); e2fsck clean",
            &case_config_and_disk,
        ),
        (
            "--root IMAGE --volume DIR:/work: the image's busybox reads and writes the host directory; the image clean",
            &case_root_and_volume,
        ),
        (
            "passthrough: a 64 MiB file's sha256 read through the host on a volume and a :ro volume; a small file through LKL",
            &case_passthrough_sha256,
        ),
        (
            "passthrough: read, lseek, pread, readv, preadv, dup, a forked child, an exec'd image and mmap agree on one open file",
            &case_passthrough_offsets,
        ),
        (
            "passthrough: libc loaded from a volume (LD_LIBRARY_PATH) is mapped from the host file and rewritten",
            &case_passthrough_library,
        ),
        (
            "passthrough: three passthrough fds handed through execs (stdin and fds 3-5) stay passthrough fds at their offsets",
            &case_passthrough_exec_table,
        ),
        (
            "passthrough: an LKL file opened after a passthrough fd gets a placeholder, not a copy of the host file",
            &case_passthrough_then_placeholder,
        ),
        (
            "passthrough: a reader sees writes made on the host and through LKL by another fd",
            &case_passthrough_coherent,
        ),
        (
            "passthrough: a name swapped for a link out of the host directory is refused (ELOOP), the outside file never read",
            &case_passthrough_link_out,
        ),
        (
            "passthrough: an image's files (--mount, --root) read through LKL; --root with --volume reads the volume through the host",
            &case_passthrough_images,
        ),
    ];
    support::main_cases(setup, &cases)
}
