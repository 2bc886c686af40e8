//! Host directories inside LKL, end to end: `lkl-run --zpoline --volume
//! HOSTDIR:PATH[:ro] PROGRAM`. PATH does not exist on the host: the program reaches
//! HOSTDIR's files only through LKL (the kernel's virtiofs and our device), and what
//! it leaves there is compared with the same work done natively.

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
    let tarball = dir.path().join("proj.tar");
    support::run(
        Command::new("tar")
            .arg("-cf")
            .arg(&tarball)
            .arg("-C")
            .arg(dir.path().join("src"))
            .arg("proj"),
    )?;
    Ok(Env { dir, mnt, tarball })
}

fn main() -> ExitCode {
    let cases: [(&str, &Case); 8] = [
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
    ];
    support::main_cases(setup, &cases)
}
