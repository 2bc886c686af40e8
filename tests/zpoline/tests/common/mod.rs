//! Shared helpers for the end-to-end tests: finding lkl-run, preparing the machine,
//! compiling the C test programs with gcc, running programs natively and interposed.
//!
//! These tests need root (for `sysctl -w vm.mmap_min_addr=0`), gcc, strace, busybox
//! (busybox-static), python3, git and curl. A missing tool is a test failure, never a skip.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Once;

/// The lkl-run binary built for these tests.
pub fn lkl_run() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_zp-lkl-run"))
}

/// Sets `vm.mmap_min_addr` to 0 once per test binary; panics when it cannot.
pub fn setup() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let out = Command::new("sysctl")
            .args(["-w", "vm.mmap_min_addr=0"])
            .output()
            .expect("running sysctl (procps) failed: is it installed?");
        assert!(
            out.status.success(),
            "`sysctl -w vm.mmap_min_addr=0` failed (these tests need root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
    });
}

/// A scratch directory for this test binary.
pub fn scratch() -> PathBuf {
    // Not /tmp: `ls -la /` compares /tmp's link count and mtime.
    let d = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("zpoline-tests-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Source directory of the C test programs.
pub fn c_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("c")
}

/// Compiles `c/<name>.c` with gcc and `flags`; returns the binary.
pub fn gcc(name: &str, flags: &[&str]) -> PathBuf {
    let out = scratch().join(format!(
        "{name}{}",
        flags.join("").replace(['-', ' ', '/', '='], "_")
    ));
    if out.exists() {
        return out;
    }
    // Tests of one binary run in parallel and may build the same program at once: each
    // build writes its own file, and the last rename wins.
    static BUILDS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = BUILDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = out.with_extension(format!("tmp{n}"));
    let st = Command::new("gcc")
        .arg("-O2")
        .arg("-o")
        .arg(&tmp)
        .arg(c_dir().join(format!("{name}.c")))
        .args(flags)
        .status()
        .expect("gcc is required for these tests");
    assert!(st.success(), "gcc failed on {name}.c");
    std::fs::rename(&tmp, &out).unwrap();
    out
}

/// Compiles `c/<src>.c` into the shared library `<lib>` in the scratch directory;
/// returns its path.
pub fn gcc_shared(lib: &str, src: &str) -> PathBuf {
    let out = scratch().join(lib);
    let st = Command::new("gcc")
        .args(["-shared", "-fPIC", "-O2", "-o"])
        .arg(&out)
        .arg(c_dir().join(format!("{src}.c")))
        .status()
        .unwrap();
    assert!(st.success());
    out
}

/// Runs `prog args` under `lkl-run --zpoline --backend host` with extra lkl-run options.
pub fn interposed(opts: &[&str], prog: &str, args: &[&str]) -> Output {
    setup();
    Command::new(lkl_run())
        .args(["--zpoline", "--backend", "host"])
        .args(opts)
        .arg(prog)
        .args(args)
        .output()
        .expect("running lkl-run")
}

/// Runs `prog args` natively.
pub fn native(prog: &str, args: &[&str]) -> Output {
    Command::new(prog)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {prog}: {e} (is it installed?)"))
}

/// Asserts that `prog args` gives byte-identical stdout and the same exit status under
/// lkl-run as natively; returns the stdout.
pub fn same_as_native(prog: &str, args: &[&str]) -> Vec<u8> {
    let n = native(prog, args);
    let z = interposed(&[], prog, args);
    assert_eq!(
        z.status.code(),
        n.status.code(),
        "{prog} {args:?}: exit status differs; stderr under lkl-run:\n{}",
        String::from_utf8_lossy(&z.stderr)
    );
    assert!(
        z.stdout == n.stdout,
        "{prog} {args:?}: stdout differs\n--- native\n{}\n--- lkl-run\n{}\n--- lkl-run stderr\n{}",
        String::from_utf8_lossy(&n.stdout),
        String::from_utf8_lossy(&z.stdout),
        String::from_utf8_lossy(&z.stderr)
    );
    z.stdout
}

/// Like [`same_as_native`], but retries a few times: for outputs that show a live
/// system (`ls -la /` shows link counts and times that other processes may change).
pub fn same_as_native_retry(prog: &str, args: &[&str]) -> Vec<u8> {
    for _ in 0..4 {
        let n = native(prog, args);
        let z = interposed(&[], prog, args);
        if z.stdout == n.stdout && z.status.code() == n.status.code() {
            return z.stdout;
        }
    }
    same_as_native(prog, args)
}

/// Asserts the run succeeded and printed `want` on stdout.
pub fn assert_ok(out: &Output, want: &str) {
    let so = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && so.contains(want),
        "status {:?}, stdout {so:?}, stderr {:?}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Parses our `--count` summary from stderr: (name, calls).
pub fn parse_count(stderr: &[u8]) -> Vec<(String, u64)> {
    let s = String::from_utf8_lossy(stderr);
    let body = s
        .split("zpoline: syscall summary")
        .nth(1)
        .expect("no --count summary in stderr");
    let mut v: Vec<(String, u64)> = body
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() == 3 && f[2] != "total" && f[0].chars().all(|c| c.is_ascii_digit()))
                .then(|| (f[2].to_string(), f[0].parse().unwrap()))
        })
        .collect();
    v.sort();
    v
}

/// Runs `strace -f -c` on the program and parses the table: (name, calls).
pub fn strace_count(prog: &str, args: &[&str]) -> Vec<(String, u64)> {
    let out = scratch().join(format!("strace-{}.txt", prog.replace('/', "_")));
    let st = Command::new("strace")
        .arg("-f")
        .arg("-c")
        .arg("-o")
        .arg(&out)
        .arg(prog)
        .args(args)
        .output()
        .expect("strace is required for these tests");
    // stdout is a pipe, as in `interposed`: programs probe it (isatty) differently otherwise.
    assert!(st.status.success());
    let text = std::fs::read_to_string(&out).unwrap();
    let mut v: Vec<(String, u64)> = text
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            // % time, seconds, usecs/call, calls, [errors,] syscall
            (f.len() >= 5 && f[0].contains('.') && *f.last()? != "total")
                .then(|| (f.last().unwrap().to_string(), f[3].parse().unwrap()))
        })
        .collect();
    v.sort();
    v
}
