//! Go programs under lkl-run: goroutine stacks start at 8 KiB and g0's are 16 KiB, so
//! the hook must not run on them; Go keeps g in TLS and makes raw syscalls. Each case
//! runs ten times in a row. The programs are built here with the `go` tool
//! (golang-go) from `tests/zpoline/go`.

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;

const RUNS: usize = 10;

/// `go` with a private build cache, offline, the installed toolchain only.
fn go(dir: &Path) -> Command {
    let mut c = Command::new("go");
    c.current_dir(dir)
        .env("GOCACHE", scratch().join("gocache"))
        .env("GOPATH", scratch().join("gopath"))
        .env("GOTOOLCHAIN", "local")
        .env("GOPROXY", "off")
        .env("GOFLAGS", "")
        .env("CGO_ENABLED", "0");
    c
}

/// Builds the module in `go/NAME` into the scratch directory.
fn go_build(name: &str) -> PathBuf {
    let out = scratch().join(format!("go-{name}"));
    if out.exists() {
        return out;
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("go").join(name);
    let st = go(&dir)
        .args(["build", "-o"])
        .arg(&out)
        .arg(".")
        .status()
        .expect("the go tool (Debian package golang-go) is required for these tests");
    assert!(st.success(), "go build of go/{name} failed");
    out
}

fn repeat(opts: &[&str], prog: &Path, want: &str) {
    for i in 0..RUNS {
        let z = interposed(opts, prog.to_str().unwrap(), &[]);
        let so = String::from_utf8_lossy(&z.stdout);
        assert!(
            z.status.success() && so.contains(want),
            "run {i} of {RUNS} under {opts:?}: status {:?}, stdout {so:?}, stderr {}",
            z.status,
            String::from_utf8_lossy(&z.stderr)
                .lines()
                .filter(|l| !l.starts_with('['))
                .take(40)
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

#[test]
fn goroutines_growing_stacks_then_exec() {
    let bin = go_build("goroutines");
    assert_ok(&native(bin.to_str().unwrap(), &[]), "goroutines ok 8");
    repeat(&[], &bin, "goroutines ok 8");
}

#[test]
fn goroutines_under_trace() {
    repeat(
        &["--trace=/dev/null"],
        &go_build("goroutines"),
        "goroutines ok 8",
    );
}

#[test]
fn goroutines_under_count() {
    repeat(&["--count"], &go_build("goroutines"), "goroutines ok 8");
}

#[test]
fn goroutines_under_null_guard() {
    repeat(
        &["--null-guard"],
        &go_build("goroutines"),
        "goroutines ok 8",
    );
}

#[test]
fn go_build_of_a_module() {
    setup();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("go/goroutines");
    for i in 0..RUNS {
        // A fresh copy and a fresh cache each time: the compiler and linker really run.
        let dir = scratch().join(format!("gobuild-{i}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for f in ["go.mod", "main.go"] {
            std::fs::copy(src.join(f), dir.join(f)).unwrap();
        }
        let out = dir.join("prog");
        // lkl-run's default (LKL) backend, under a time limit: go build used to hang.
        let z = Command::new("timeout")
            .arg("300")
            .arg(lkl_run())
            .args(["--zpoline", "go", "build", "-o"])
            .arg(&out)
            .arg(".")
            .current_dir(&dir)
            .env("GOCACHE", dir.join("cache"))
            .env("GOPATH", dir.join("gopath"))
            .env("GOTOOLCHAIN", "local")
            .env("GOPROXY", "off")
            .env("GOFLAGS", "")
            .env_remove("LKL_HIJACK_CONFIG_FILE")
            .output()
            .expect("running timeout lkl-run go build (are coreutils and golang-go installed?)");
        assert!(
            z.status.success(),
            "go build run {i}: {:?}\n{}",
            z.status,
            String::from_utf8_lossy(&z.stderr)
        );
        assert_ok(&native(out.to_str().unwrap(), &[]), "goroutines ok 8");
    }
}

#[test]
fn goroutines_under_the_lkl_backend() {
    // lkl-run's default backend: LKL boots (loopback only) at the first socket call;
    // os/exec's pipes and every other call pass by it.
    setup();
    let bin = go_build("goroutines");
    for i in 0..RUNS {
        let z = Command::new(lkl_run())
            .args(["--zpoline", "--count"])
            .arg(&bin)
            .env_remove("LKL_HIJACK_CONFIG_FILE")
            .current_dir(scratch())
            .output()
            .expect("running lkl-run");
        let so = String::from_utf8_lossy(&z.stdout);
        assert!(
            z.status.success() && so.contains("goroutines ok 8"),
            "run {i}: {:?} {so:?}",
            z.status
        );
    }
}
