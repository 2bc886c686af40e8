//! Images mounted inside LKL beside the host's files, end to end:
//! `lkl-run --zpoline --mount IMAGE:PATH PROGRAM`, run as the host user `nobody`
//! (no privilege, no FUSE), on images made by `mkfs.*` here. Paths under PATH (which
//! does not exist on the host) are the image's, every other path the host's; after
//! each run the image is checked by its file system's own checker and what was
//! written is read back with `debugfs` (ext4) or a second run.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Output};
use std::time::Duration;

use lkl_test_support::{self as support, Outcome, TempDir};

const LKL_RUN: &str = env!("CARGO_BIN_EXE_zpl-lkl-run");
const DEADLINE: Duration = Duration::from_secs(120);

/// A case of this file.
type Case = dyn Fn(&Env) -> Outcome;

/// What every case gets.
struct Env {
    /// The scratch directory (world-writable `host/` inside for the programs).
    dir: TempDir,
    /// lkl-run, copied where `nobody` may run it.
    lkl_run: PathBuf,
    /// Where the images appear in the programs' view (absent on the host).
    mnt: String,
}

impl Env {
    fn host_dir(&self) -> PathBuf {
        self.dir.path().join("host")
    }

    /// A fresh image `name` of file system `fs` holding `files` (name, contents),
    /// writable by `nobody`.
    fn image(&self, name: &str, fs: &str, files: &[(&str, &str)]) -> Result<PathBuf, String> {
        let src = self.dir.path().join(format!("{name}.src"));
        let _ = std::fs::remove_dir_all(&src);
        std::fs::create_dir_all(&src).map_err(|e| e.to_string())?;
        for (f, text) in files {
            let p = src.join(f);
            if let Some(parent) = p.parent() {
                std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
            }
            std::fs::write(&p, text).map_err(|e| e.to_string())?;
        }
        let img = self.dir.path().join(format!("{name}.img"));
        let filled = support::mkfs_image(fs, &img, Some(&src))?;
        if !filled {
            // These mkfs cannot fill the image: the files go in through LKL, as root.
            let script = files
                .iter()
                .map(|(f, _)| {
                    format!(
                        "mkdir -p \"$(dirname {mnt}/{f})\" && cp {src}/{f} {mnt}/{f}",
                        mnt = self.mnt,
                        src = src.display()
                    )
                })
                .collect::<Vec<_>>()
                .join(" && ");
            if !script.is_empty() {
                let o = self.lkl_run_as(&img, &["sh", "-c", &script], true)?;
                if !o.status.success() {
                    return Err(format!(
                        "filling the {fs} image: {}",
                        support::output_text(&o)
                    ));
                }
            }
        }
        support::set_mode(&img, 0o666)?;
        Ok(img)
    }

    /// `lkl-run --zpoline --mount IMG:MNT ARGS`, as `nobody` unless `as_root`.
    fn lkl_run_as(&self, img: &Path, args: &[&str], as_root: bool) -> Result<Output, String> {
        let mut cmd = if as_root {
            Command::new(&self.lkl_run)
        } else {
            support::as_nobody(&self.lkl_run)
        };
        cmd.arg("--zpoline")
            .arg(format!("--mount={}:{}", img.display(), self.mnt))
            .args(args)
            .current_dir(self.host_dir())
            .env("HOME", self.host_dir())
            .env("LC_ALL", "C");
        support::output_within(&mut cmd, DEADLINE)
    }

    fn lkl_run(&self, img: &Path, args: &[&str]) -> Result<Output, String> {
        self.lkl_run_as(img, args, false)
    }
}

fn setup() -> Result<Env, String> {
    support::require_root("the mount tests (they run programs as nobody)")?;
    for (tool, pkg) in [
        ("mkfs.ext4", "e2fsprogs"),
        ("debugfs", "e2fsprogs"),
        ("mkfs.btrfs", "btrfs-progs"),
        ("mkfs.xfs", "xfsprogs"),
        ("mkfs.vfat", "dosfstools"),
        ("setpriv", "util-linux"),
        ("sqlite3", "sqlite3"),
        ("python3", "python3"),
    ] {
        support::require_tool(tool, pkg)?;
    }
    support::run(Command::new("sysctl").args(["-qw", "vm.mmap_min_addr=0"]))?;
    let dir = TempDir::new("lkl-mounts")?;
    support::set_mode(dir.path(), 0o755)?;
    let host = dir.path().join("host");
    std::fs::create_dir_all(&host).map_err(|e| e.to_string())?;
    support::set_mode(&host, 0o777)?;
    let lkl_run = dir.path().join("lkl-run");
    std::fs::copy(LKL_RUN, &lkl_run).map_err(|e| format!("copying lkl-run: {e}"))?;
    support::set_mode(&lkl_run, 0o755)?;
    let mnt = format!("/mnt/lkl-mount-{}", std::process::id());
    if Path::new(&mnt).exists() {
        return Err(format!(
            "{mnt} exists on the host: the test wants a path only LKL has"
        ));
    }
    Ok(Env { dir, lkl_run, mnt })
}

fn case_read_write(env: &Env) -> Outcome {
    let img = env.image("rw", "ext4", &[("hello.txt", "hello from the image\n")])?;
    let m = &env.mnt;
    let script = format!(
        "cat {m}/hello.txt && echo written-inside > {m}/new.txt && mkdir {m}/dir \
         && cp /etc/os-release {m}/dir/os-release && echo host-side > host-out.txt \
         && cat {m}/new.txt && ls {m} && test ! -e {m}/../lkl-nothing-here && echo done"
    );
    support::expect_stdout(
        env.lkl_run(&img, &["sh", "-c", &script]),
        "hello from the image\nwritten-inside\ndir\nhello.txt\nlost+found\nnew.txt\ndone\n",
    )?;
    support::fsck_clean("ext4", &img)?;
    support::image_file_holds(&img, "/new.txt", "written-inside\n")?;
    let want = std::fs::read_to_string("/etc/os-release").map_err(|e| e.to_string())?;
    support::image_file_holds(&img, "/dir/os-release", &want)?;
    let host = std::fs::read_to_string(env.host_dir().join("host-out.txt"))
        .map_err(|e| format!("the host file written in the same run: {e}"))?;
    if host != "host-side\n" {
        return Err(format!("the host file holds {host:?}"));
    }
    if Path::new(m).exists() {
        return Err(format!("{m} appeared on the host"));
    }
    Ok(())
}

/// inotify with mounts only: instances are the host's; a watch on a host directory
/// works, one under the mount is refused with EXDEV.
fn case_inotify_exdev(env: &Env) -> Outcome {
    let img = env.image("inotify", "ext4", &[("d/a.txt", "A\n")])?;
    let c = Path::new(env!("CARGO_MANIFEST_DIR")).join("c/inotify.c");
    let prog = env.host_dir().join("inotify");
    support::gcc(&c, &prog, &["-O2"])?;
    let m = &env.mnt;
    let script = format!("./inotify {m}/d 2>&1; echo rc=$?; mkdir -p watched && ./inotify watched");
    support::expect_stdout(
        env.lkl_run(&img, &["sh", "-c", &script]),
        "inotify_add_watch: Invalid cross-device link\nrc=1\ncreate made\ndelete made\nrm_watch ok\n",
    )?;
    support::fsck_clean("ext4", &img)
}

fn case_cwd(env: &Env) -> Outcome {
    let img = env.image("cwd", "ext4", &[("sub/a.txt", "A\n")])?;
    let m = &env.mnt;
    let script = format!(
        "cd {m}/sub && pwd && cat a.txt && cat ../sub/./a.txt && echo b > b.txt && ls \
         && cd .. && ls sub && cd / && pwd && cat {m}/sub/b.txt \
         && sh -c 'cd {m}/sub && exec cat a.txt'"
    );
    support::expect_stdout(
        env.lkl_run(&img, &["sh", "-c", &script]),
        &format!("{m}/sub\nA\nA\na.txt\nb.txt\na.txt\nb.txt\n/\nb\nA\n"),
    )?;
    support::fsck_clean("ext4", &img)
}

fn case_spawn_cwd(env: &Env) -> Outcome {
    // Python's subprocess changes directory in a vfork child, before the exec.
    let img = env.image("spawn", "ext4", &[("sub/file.txt", "x\n")])?;
    let m = &env.mnt;
    let py = format!(
        "import os, subprocess\n\
         run = lambda args, cwd: subprocess.run(args, cwd=cwd, capture_output=True, text=True).stdout.strip()\n\
         print(run(['pwd'], '{m}/sub'), run(['ls'], '{m}/sub'), os.getcwd() == os.path.realpath('.'))\n\
         print(run(['pwd'], '/'))\n\
         try:\n    subprocess.run(['pwd'], cwd='{m}/missing')\n\
         except FileNotFoundError:\n    print('missing')\n\
         os.chdir('{m}')\n\
         print(run(['ls'], 'sub'), run(['pwd'], '/'), os.getcwd())\n\
         with open('sub/file.txt') as i, open('sub/out.txt', 'w') as o:\n    subprocess.run(['tr', 'x', 'y'], stdin=i, stdout=o)\n\
         print(open('sub/out.txt').read().strip())\n"
    );
    support::expect_stdout(
        env.lkl_run(&img, &["python3", "-c", &py]),
        &format!("{m}/sub file.txt True\n/\nmissing\nfile.txt / {m}\ny\n"),
    )
}

fn case_own_fd_names(env: &Env) -> Outcome {
    // gnulib's lchmod (tar, cp -a) opens the file O_PATH and chmods /proc/self/fd/N:
    // the image's file must change, and nothing of the host's.
    let img = env.image("fdnames", "ext4", &[("f.txt", "data\n")])?;
    let m = &env.mnt;
    let null_before = std::fs::metadata("/dev/null").map_err(|e| e.to_string())?;
    let py = format!(
        "import os\n\
         fd = os.open('{m}/f.txt', os.O_PATH)\n\
         os.chmod(f'/proc/self/fd/{{fd}}', 0o640)\n\
         os.chmod(f'/proc/{{os.getpid()}}/fd/{{fd}}', 0o604)\n\
         print(oct(os.stat('{m}/f.txt').st_mode & 0o777))\n\
         print(open('/dev/stdin').read().strip())\n"
    );
    let o = env.lkl_run(
        &img,
        &["sh", "-c", &format!("python3 -c \"$0\" < {m}/f.txt"), &py],
    );
    support::expect_stdout(o, "0o604\ndata\n")?;
    support::fsck_clean("ext4", &img)?;
    let st = support::debugfs(&img, "stat /f.txt")?;
    if !st.contains("Mode:  0604") {
        return Err(format!("the image's file does not have mode 0604:\n{st}"));
    }
    let null_after = std::fs::metadata("/dev/null").map_err(|e| e.to_string())?;
    use std::os::unix::fs::MetadataExt;
    if null_after.mode() != null_before.mode() || null_after.ctime() != null_before.ctime() {
        return Err("/dev/null on the host was changed".into());
    }
    Ok(())
}

fn case_rename_exdev(env: &Env) -> Outcome {
    let img = env.image(
        "mv",
        "ext4",
        &[("keep.txt", "kept\n"), ("move.txt", "moved\n")],
    )?;
    let m = &env.mnt;
    let py = format!(
        "import errno, os\n\
         try:\n    os.rename('{m}/keep.txt', 'renamed.txt')\n    print('renamed')\n\
         except OSError as e:\n    print(errno.errorcode[e.errno])\n\
         try:\n    os.link('{m}/keep.txt', 'linked.txt')\n    print('linked')\n\
         except OSError as e:\n    print(errno.errorcode[e.errno])\n\
         os.rename('{m}/keep.txt', '{m}/kept.txt')\nprint(sorted(os.listdir('{m}')))\n"
    );
    support::expect_stdout(
        env.lkl_run(&img, &["python3", "-c", &py]),
        "EXDEV\nEXDEV\n['kept.txt', 'lost+found', 'move.txt']\n",
    )?;
    support::expect_stdout(
        env.lkl_run(
            &img,
            &[
                "sh",
                "-c",
                &format!("mv {m}/move.txt out.txt && cat out.txt && ls {m}"),
            ],
        ),
        "moved\nkept.txt\nlost+found\n",
    )?;
    support::fsck_clean("ext4", &img)?;
    if support::debugfs(&img, "cat /move.txt").is_ok_and(|s| !s.is_empty()) {
        return Err("move.txt is still in the image after mv".into());
    }
    Ok(())
}

fn case_symlinks(env: &Env) -> Outcome {
    let img = env.image("links", "ext4", &[("real/f.txt", "in the image\n")])?;
    let m = &env.mnt;
    // A host link into the mount, made before the run.
    let into = env.host_dir().join("into");
    let _ = std::fs::remove_file(&into);
    std::os::unix::fs::symlink(format!("{m}/real"), &into).map_err(|e| e.to_string())?;
    let hostname = std::fs::read_to_string("/etc/hostname").map_err(|e| e.to_string())?;
    let script = format!(
        "cat into/f.txt && echo via-link > into/g.txt && cat {m}/real/g.txt \
         && ln -s /etc {m}/etc-link && ln -s ../../{host}/into {m}/back \
         && cat {m}/etc-link/hostname && ls {m}/back && stat -c %F {m}/etc-link",
        host = env.host_dir().display()
    );
    support::expect_stdout(
        env.lkl_run(&img, &["sh", "-c", &script]),
        &format!("in the image\nvia-link\n{hostname}f.txt\ng.txt\nsymbolic link\n"),
    )?;
    support::fsck_clean("ext4", &img)?;
    support::image_file_holds(&img, "/real/g.txt", "via-link\n")?;
    Ok(())
}

fn case_sqlite(env: &Env) -> Outcome {
    let img = env.image("db", "ext4", &[])?;
    let db = format!("{}/app.db", env.mnt);
    support::expect_stdout(
        env.lkl_run(
            &img,
            &[
                "sqlite3",
                &db,
                "create table t(x integer, s text); \
                 insert into t select value, hex(randomblob(100)) from generate_series(1, 5000); \
                 create index i on t(s); select count(*), sum(x) from t;",
            ],
        ),
        "5000|12502500\n",
    )?;
    support::expect_stdout(
        env.lkl_run(
            &img,
            &[
                "sqlite3",
                &db,
                "delete from t where x % 2 = 0; vacuum; pragma integrity_check; select count(*) from t;",
            ],
        ),
        "ok\n2500\n",
    )?;
    support::fsck_clean("ext4", &img)?;
    let copy = env.dir.path().join("app-copy.db");
    support::debugfs(&img, &format!("dump /app.db {}", copy.display()))?;
    let out = support::run(
        Command::new("sqlite3")
            .arg(&copy)
            .arg("select sum(x) from t;"),
    )?;
    if out.trim() != "6250000" {
        return Err(format!(
            "the host's sqlite3 reads sum {out:?} from the image's database"
        ));
    }
    Ok(())
}

fn case_tree(env: &Env) -> Outcome {
    // A tree of a few hundred files copied in with tar and compared with diff, both
    // reading the host's and the image's side in one run.
    let src = env.host_dir().join("tree");
    for d in 0..8 {
        let dir = src.join(format!("d{d}"));
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        for f in 0..40 {
            let body: String = (0..(d * 97 + f * 13) % 3000)
                .map(|k| char::from(b'a' + ((k * 7 + f) % 26) as u8))
                .collect();
            std::fs::write(dir.join(format!("f{f}.txt")), body).map_err(|e| e.to_string())?;
        }
    }
    support::run(Command::new("chmod").args(["-R", "a+rwX"]).arg(&src))?;
    let img = env.image("tree", "ext4", &[])?;
    let m = &env.mnt;
    let script = format!(
        "tar -cf - tree | (cd {m} && tar -xf -) && diff -r tree {m}/tree && echo same \
         && find {m}/tree -type f | wc -l && du -s --apparent-size -b tree | cut -f1 \
         && cat {m}/tree/d*/f*.txt | wc -c"
    );
    let o = env.lkl_run(&img, &["sh", "-c", &script])?;
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    let lines: Vec<&str> = out.lines().collect();
    if !o.status.success() || lines.first() != Some(&"same") || lines.get(1) != Some(&"320") {
        return Err(format!(
            "tar into the mount and diff: {}",
            support::output_text(&o)
        ));
    }
    support::fsck_clean("ext4", &img)
}

fn case_other_fs(env: &Env, fs: &str) -> Outcome {
    let img = env.image(fs, fs, &[("in/readme.txt", "from mkfs\n")])?;
    let m = &env.mnt;
    support::expect_stdout(
        env.lkl_run(
            &img,
            &[
                "sh",
                "-c",
                &format!(
                    "cat {m}/in/readme.txt && mkdir -p {m}/out && seq 1 20000 > {m}/out/seq.txt \
                     && wc -l < {m}/out/seq.txt"
                ),
            ],
        ),
        "from mkfs\n20000\n",
    )?;
    support::fsck_clean(fs, &img)?;
    support::expect_stdout(
        env.lkl_run(&img, &["sh", "-c", &format!("tail -n1 {m}/out/seq.txt")]),
        "20000\n",
    )?;
    support::fsck_clean(fs, &img)
}

fn main() -> ExitCode {
    let cases: [(&str, &Case); 12] = [
        (
            "--mount (ext4), as nobody: the image's files read and written under PATH, host files beside them in one run; e2fsck clean, debugfs reads what was written",
            &case_read_write,
        ),
        (
            "relative paths after cd into the mount, .. back out, and an exec'd program keeps the cwd",
            &case_cwd,
        ),
        (
            "subprocess with cwd= and stdin=/stdout= image files (chdir and dup2 in a vfork child)",
            &case_spawn_cwd,
        ),
        (
            "a program's own names of its image files (/proc/self/fd/N, /proc/PID/fd/N, /dev/stdin) reach them; the host's files are untouched",
            &case_own_fd_names,
        ),
        (
            "rename and link across the boundary give EXDEV; mv falls back to copying",
            &case_rename_exdev,
        ),
        (
            "links across the boundary: a host link into the mount, an image's links out of it (absolute and relative), followed both ways",
            &case_symlinks,
        ),
        (
            "sqlite3 builds, vacuums and checks a database in the image; the host's sqlite3 reads it back",
            &case_sqlite,
        ),
        (
            "tar copies a tree of 320 files into the mount; diff -r finds it identical",
            &case_tree,
        ),
        ("--mount on btrfs: written, read back, btrfs check clean", &|e| case_other_fs(e, "btrfs")),
        ("--mount on xfs: written, read back, xfs_repair -n clean", &|e| case_other_fs(e, "xfs")),
        ("--mount on vfat: written, read back, fsck.vfat clean", &|e| case_other_fs(e, "vfat")),
        (
            "inotify with mounts only: a host directory is watched, a watch under the mount gets EXDEV",
            &case_inotify_exdev,
        ),
    ];
    support::main_cases(setup, &cases)
}
