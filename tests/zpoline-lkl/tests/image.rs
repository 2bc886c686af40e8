//! Files and programs in LKL's file system, end to end.
//!
//! - `mmap` of an LKL file: `/etc/resolv.conf` is LKL's when the configuration has a
//!   `nameserver` (a view); `c/mapfile.c` maps it every way and compares with `read`.
//! - Programs from an ext4 image made with `mkfs.ext4 -d`: a dynamically linked program
//!   with its libraries copied from the host (`ldd`) and busybox-static, run with
//!   `lkl-run --zpoline --root IMAGE`: the image's ld.so maps the image's libc through
//!   LKL; a `#!` script from the image; `sh -c` from the image running another program
//!   of the image (an exec inside the image).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Output};
use std::time::Duration;

use lkl_test_support::{self as support, workspace, Outcome, Report, TempDir};

const LKL_RUN: &str = env!("CARGO_BIN_EXE_zpl-lkl-run");
const DEADLINE: Duration = Duration::from_secs(60);

fn text(o: &Output) -> String {
    support::output_text(o)
}

/// `lkl-run --zpoline ARGS...`.
fn zp(args: &[&str]) -> Result<Output, String> {
    let mut c = Command::new(LKL_RUN);
    c.arg("--zpoline").args(args);
    support::output_within(&mut c, DEADLINE)
}

fn expect(o: Result<Output, String>, ok: bool, needles: &[&str]) -> Outcome {
    support::expect_output(o, ok, needles)
}

/// `c/SRC` of this crate built into `out`.
fn gcc(src: &str, out: &Path, flags: &[&str]) -> Outcome {
    support::gcc(
        &workspace().join("tests/zpoline-lkl/c").join(src),
        out,
        flags,
    )
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap_or_default()
}

/// `mapfile` on LKL's `/etc/resolv.conf` (the view of a configuration with a
/// `nameserver`): every mapping holds LKL's file, not the host's.
fn mmap_view(tmp: &TempDir, mapfile: &Path) -> Outcome {
    let conf = tmp.path().join("resolv.json");
    std::fs::write(&conf, r#"{"nameserver": "198.18.0.1"}"#).map_err(|e| e.to_string())?;
    let lkl_file = "nameserver 198.18.0.1\n";
    let o = zp(&["--config", s(&conf), s(mapfile), "/etc/resolv.conf"])?;
    let all = text(&o);
    let want = format!("mapfile ok {}", lkl_file.len());
    if !o.status.success() || !all.contains(&want) {
        return Err(format!("expected {want:?} (LKL's file): {all}"));
    }
    if !all.contains("MAP_SHARED writable of an O_RDWR fd: No such device") {
        return Err(format!(
            "a writable MAP_SHARED mapping of an LKL file must fail with ENODEV: {all}"
        ));
    }
    Ok(())
}

/// Where `--mount` puts the image in the cases that mix it with the host's files
/// (absent on the host).
const MNT: &str = "/mnt/zpoline-image-test";
/// Where libgreet lives in the image (and nowhere on the host).
const GREET_DIR: &str = "/usr/local/lib/zpimg";

/// What the cases get.
struct Env {
    tmp: TempDir,
    /// The ext4 image.
    img: PathBuf,
    /// `c/mapfile.c`, built on the host.
    mapfile: PathBuf,
}

impl Env {
    fn root(&self) -> String {
        format!("--root={}", self.img.display())
    }

    fn mount(&self) -> String {
        format!("--mount={}:{MNT}", self.img.display())
    }
}

fn io(e: std::io::Error) -> String {
    e.to_string()
}

/// Copies host file `from` to `to` inside the image tree `src` (following links),
/// keeping its mode.
fn put(src: &Path, from: &Path, to: &str) -> Outcome {
    let dst = src.join(to.trim_start_matches('/'));
    if let Some(parent) = dst.parent() {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    std::fs::copy(from, &dst)
        .map_err(|e| format!("copy {} to {}: {e}", from.display(), dst.display()))?;
    Ok(())
}

fn write_mode(p: &Path, text: &[u8], mode: u32) -> Outcome {
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    std::fs::write(p, text).map_err(io)?;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).map_err(io)
}

/// The libraries `ldd` names for `prog` (those beside it included), and its
/// interpreter.
fn ldd(prog: &Path) -> Result<Vec<PathBuf>, String> {
    let mut cmd = Command::new("ldd");
    cmd.arg(prog);
    if let Some(dir) = prog.parent() {
        cmd.env("LD_LIBRARY_PATH", dir);
    }
    let out = support::run(&mut cmd)?;
    Ok(out
        .lines()
        .filter_map(|l| {
            let p = match l.split_once("=>") {
                Some((_, rest)) => rest.split_whitespace().next()?,
                None => l.split_whitespace().next()?,
            };
            p.starts_with('/').then(|| PathBuf::from(p))
        })
        .collect())
}

/// Builds the image: busybox-static at `/bin` (with `sh`, `echo`, `cat` as links),
/// `imghello` with libgreet (only here) and the libraries `ldd` names, copied from the
/// host, a `#!` script, `mapfile`, a data file of 1 MiB and a bit, and a file that is
/// not executable.
fn build_image(tmp: &TempDir, mapfile: &Path) -> Result<PathBuf, String> {
    let src = tmp.path().join("image.src");
    let greet = tmp.path().join("libgreet.so");
    gcc("greet.c", &greet, &["-O2", "-fPIC", "-shared"])?;
    let hello = tmp.path().join("imghello");
    let greet_dir = tmp.path().to_str().unwrap_or_default();
    // libgreet after the source, for the linker.
    support::run(
        Command::new("gcc")
            .args(["-O1", "-o"])
            .arg(&hello)
            .arg(workspace().join("tests/zpoline-lkl/c/imghello.c"))
            .arg(format!("-L{greet_dir}"))
            .arg("-lgreet")
            .arg(format!("-Wl,-rpath,{GREET_DIR}:{MNT}{GREET_DIR}")),
    )?;
    put(&src, &which("busybox")?, "/bin/busybox")?;
    for l in ["sh", "echo", "cat", "ls"] {
        std::os::unix::fs::symlink("busybox", src.join("bin").join(l)).map_err(io)?;
    }
    put(&src, &hello, "/usr/bin/imghello")?;
    put(&src, &greet, &format!("{GREET_DIR}/libgreet.so"))?;
    put(&src, mapfile, "/usr/bin/mapfile")?;
    for lib in ldd(&hello)?.into_iter().chain(ldd(mapfile)?) {
        if !lib.starts_with(tmp.path()) {
            put(&src, &lib, lib.to_str().unwrap_or_default())?;
        }
    }
    write_mode(
        &src.join("usr/bin/greet-script"),
        b"#!/bin/sh\necho \"script $0 with $# args\"\nexec /usr/bin/imghello from-script \"$@\"\n",
        0o755,
    )?;
    write_mode(&src.join("etc/notexec"), b"#!/bin/sh\necho never\n", 0o644)?;
    put_python(&src)?;
    let data: Vec<u8> = (0..(1u32 << 20) + 4321)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    write_mode(&src.join("data.bin"), &data, 0o644)?;
    let img = tmp.path().join("image.ext4");
    std::fs::File::create(&img)
        .and_then(|f| f.set_len(400 << 20))
        .map_err(io)?;
    support::run(
        Command::new("mkfs.ext4")
            .args(["-q", "-F", "-d"])
            .arg(&src)
            .arg(&img),
    )?;
    Ok(img)
}

/// The host's python3, its standard library (`cp -a`) and the libraries `ldd` names
/// for it and for its extension modules, into the image tree `src`.
fn put_python(src: &Path) -> Outcome {
    let py = PathBuf::from("/usr/bin/python3");
    let stdlib = support::run(Command::new(&py).args([
        "-c",
        "import sysconfig; print(sysconfig.get_paths()['stdlib'])",
    ]))?;
    let stdlib = PathBuf::from(stdlib.trim());
    let into = src.join(stdlib.strip_prefix("/").map_err(|e| e.to_string())?);
    std::fs::create_dir_all(into.parent().unwrap_or(src)).map_err(io)?;
    support::run(Command::new("cp").arg("-a").arg(&stdlib).arg(&into))?;
    put(src, &py, "/usr/bin/python3")?;
    let mut progs = vec![py];
    let dynload = stdlib.join("lib-dynload");
    for e in std::fs::read_dir(&dynload).map_err(io)?.flatten() {
        progs.push(e.path());
    }
    for prog in progs {
        for lib in ldd(&prog)? {
            let dst = src.join(lib.strip_prefix("/").map_err(|e| e.to_string())?);
            if !dst.exists() {
                put(src, &lib, lib.to_str().unwrap_or_default())?;
            }
        }
    }
    Ok(())
}

fn which(tool: &str) -> Result<PathBuf, String> {
    let out = support::run(Command::new("sh").args(["-c", &format!("command -v {tool}")]))?;
    Ok(PathBuf::from(out.trim()))
}

/// The image's dynamically linked program with the image's ld.so, libc and libgreet:
/// each opened and mapped through LKL, the library's own syscall rewritten.
fn dynamic_from_root(env: &Env) -> Outcome {
    let trace = env.tmp.path().join("dyn.trace");
    let o = zp(&[
        &env.root(),
        &format!("--trace={}", trace.display()),
        "/usr/bin/imghello",
        "x",
    ])?;
    let all = text(&o);
    for want in [
        "imghello argv0=/usr/bin/imghello exe=/usr/bin/imghello",
        "greetings from the image's libgreet; ppid ok",
        "arg 1: x",
    ] {
        if !o.status.success() || !all.contains(want) {
            return Err(format!("expected {want:?}: {all}"));
        }
    }
    let t = std::fs::read_to_string(&trace).map_err(io)?;
    for want in ["libc.so.6\"", "libgreet.so\""] {
        let opened = t
            .lines()
            .any(|l| l.contains(" lkl openat(") && l.contains(want) && !l.contains("= -1"));
        if !opened {
            return Err(format!("no LKL openat of {want} in the trace"));
        }
    }
    if !t
        .lines()
        .any(|l| l.contains(" lkl mmap(") && l.contains(", 0x5, "))
    {
        return Err("no executable mapping of an LKL file in the trace".into());
    }
    if !t.lines().any(|l| l.contains("getppid(")) {
        return Err("libgreet's own syscall was not interposed (its code not rewritten)".into());
    }
    Ok(())
}

/// The image's python3 reads, hashes and maps the image's data file, loads libffi
/// through ctypes and runs an image program with subprocess (vfork and exec).
fn python_from_root(env: &Env) -> Outcome {
    let script = "import hashlib, mmap, os, ctypes, subprocess\n\
        data = open('/data.bin', 'rb').read()\n\
        m = mmap.mmap(os.open('/data.bin', os.O_RDONLY), 0, prot=mmap.PROT_READ)\n\
        print('sha', hashlib.sha256(data).hexdigest(), m[:] == data)\n\
        print('ctypes', ctypes.CDLL(None).getpid() == os.getpid())\n\
        print(subprocess.check_output(['/usr/bin/imghello', 'py']).decode())\n";
    let data = std::fs::read(env.tmp.path().join("image.src/data.bin")).map_err(io)?;
    let sha =
        support::run(Command::new("sha256sum").arg(env.tmp.path().join("image.src/data.bin")))?;
    let sha = sha.split_whitespace().next().unwrap_or_default().to_owned();
    expect(
        zp(&[&env.root(), "/usr/bin/python3", "-c", script]),
        true,
        &[
            &format!("sha {sha} True"),
            "ctypes True",
            "imghello argv0=/usr/bin/imghello",
            "arg 1: py",
        ],
    )
    .map_err(|e| format!("{} bytes of data: {e}", data.len()))
}

/// `c/execat.c` (a host program) runs the image's `imghello` through `execveat` with
/// an LKL directory fd and with an LKL fd of the file: the path comes from LKL's own
/// `/proc/self/fd`, so LKL mounts `proc`.
fn execveat_in_image(env: &Env) -> Outcome {
    let conf = env.tmp.path().join("proc.json");
    std::fs::write(&conf, r#"{"mount": "proc"}"#).map_err(io)?;
    let execat = env.tmp.path().join("execat");
    gcc("execat.c", &execat, &["-O1"])?;
    let dir = format!("{MNT}/usr/bin");
    let file = format!("{dir}/imghello");
    for args in [[dir.as_str(), "imghello"], ["-f", file.as_str()]] {
        expect(
            zp(&[
                "--config",
                s(&conf),
                &env.mount(),
                s(&execat),
                args[0],
                args[1],
            ]),
            true,
            &[
                &format!("exe={MNT}/usr/bin/imghello"),
                "greetings from the image's libgreet; ppid ok",
                "arg 1: via-execveat",
            ],
        )
        .map_err(|e| format!("execat {}: {e}", args.join(" ")))?;
    }
    Ok(())
}

fn main() -> ExitCode {
    let mut r = Report::default();
    let setup = (|| -> Result<_, String> {
        support::require_root("vm.mmap_min_addr=0, mounting images in LKL")?;
        for (tool, pkg) in [
            ("gcc", "gcc"),
            ("mkfs.ext4", "e2fsprogs"),
            ("busybox", "busybox-static"),
            ("ldd", "libc-bin"),
            ("python3", "python3"),
            ("sha256sum", "coreutils"),
        ] {
            support::require_tool(tool, pkg)?;
        }
        support::run(Command::new("sysctl").args(["-qw", "vm.mmap_min_addr=0"]))?;
        if Path::new(MNT).exists() || Path::new(GREET_DIR).exists() {
            return Err(format!("{MNT} and {GREET_DIR} must not exist on the host"));
        }
        let tmp = TempDir::new("zpimg")?;
        let mapfile = tmp.path().join("mapfile");
        gcc("mapfile.c", &mapfile, &["-O1"])?;
        let img = build_image(&tmp, &mapfile)?;
        Ok(Env { tmp, img, mapfile })
    })();
    let env = match setup {
        Ok(v) => v,
        Err(e) => {
            r.case("setup", Err(e));
            return r.finish();
        }
    };
    r.case(
        "mmap of an LKL file (resolv.conf view): private, shared read-only, past EOF, fixed, ENODEV for shared writable",
        mmap_view(&env.tmp, &env.mapfile),
    );
    r.case(
        "mmap of a 1 MiB file of a --mount image, compared with read()",
        expect(
            zp(&[&env.mount(), s(&env.mapfile), &format!("{MNT}/data.bin")]),
            true,
            &["mapfile ok 1052897"],
        ),
    );
    r.case(
        "--root: a dynamic program with the image's ld.so, libc and a library only the image has",
        dynamic_from_root(&env),
    );
    r.case(
        "--root: busybox-static from the image, found in PATH",
        expect(
            zp(&[&env.root(), "busybox", "echo", "static from the image"]),
            true,
            &["static from the image"],
        ),
    );
    r.case(
        "--root: a #! script of the image, by path and through PATH",
        (|| {
            for prog in ["/usr/bin/greet-script", "greet-script"] {
                expect(
                    zp(&[&env.root(), prog, "a1"]),
                    true,
                    &[
                        "script /usr/bin/greet-script with 1 args",
                        "imghello argv0=/usr/bin/imghello",
                        "arg 1: from-script",
                        "arg 2: a1",
                    ],
                )
                .map_err(|e| format!("{prog}: {e}"))?;
            }
            Ok(())
        })(),
    );
    r.case(
        "--root: the image's sh -c runs the image's programs (exec inside the image)",
        expect(
            zp(&[
                &env.root(),
                "/bin/sh",
                "-c",
                "imghello one && /usr/bin/greet-script two && mapfile /data.bin && echo all done",
            ]),
            true,
            &[
                "imghello argv0=imghello exe=/usr/bin/imghello",
                "arg 1: one",
                "script /usr/bin/greet-script with 1 args",
                "arg 2: two",
                "mapfile ok 1052897",
                "all done",
            ],
        ),
    );
    r.case(
        "--root: the image's python3: stdlib and extension modules (dlopen), mmap of an image file, ctypes, subprocess of an image program",
        python_from_root(&env),
    );
    r.case(
        "--root: a missing program (127) and a file that is not executable (126), named",
        (|| {
            let o = zp(&[&env.root(), "/usr/bin/no-such-program"])?;
            if o.status.code() != Some(127)
                || !text(&o).contains("/usr/bin/no-such-program: no such file")
            {
                return Err(format!("missing program: {:?} {}", o.status, text(&o)));
            }
            let o = zp(&[&env.root(), "/etc/notexec"])?;
            if o.status.code() != Some(126) || !text(&o).contains("/etc/notexec: permission denied")
            {
                return Err(format!("not executable: {:?} {}", o.status, text(&o)));
            }
            let o = zp(&[&env.root(), "/bin/sh", "-c", "/etc/notexec; echo status $?"])?;
            expect(Ok(o), true, &["status 126"])
        })(),
    );
    r.case(
        "--mount with proc in LKL: execveat relative to an image directory fd, and of an image file's fd (fexecve)",
        execveat_in_image(&env),
    );
    r.case(
        "--mount: a static program from the image, and a host-linked program with a library from the image",
        (|| {
            expect(
                zp(&[&env.mount(), &format!("{MNT}/bin/busybox"), "echo", "mounted busybox"]),
                true,
                &["mounted busybox"],
            )?;
            expect(
                zp(&[
                    &env.mount(),
                    "/bin/sh",
                    "-c",
                    &format!("{MNT}/usr/bin/imghello m"),
                ]),
                true,
                &[
                    &format!("exe={MNT}/usr/bin/imghello"),
                    "greetings from the image's libgreet; ppid ok",
                ],
            )
        })(),
    );
    r.finish()
}
