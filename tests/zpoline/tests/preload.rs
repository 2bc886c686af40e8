//! `libzpoline.so` under LD_PRELOAD.

mod common;
use common::*;
use std::path::PathBuf;
use std::process::Command;

/// Builds libzpoline.so with the cargo running these tests and returns its path.
fn libzpoline() -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "build",
            "-j2",
            "-p",
            "zpoline-preload",
            "--message-format=json",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("running cargo build -p zpoline-preload");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json = String::from_utf8_lossy(&out.stdout);
    let line = json
        .lines()
        .find(|l| l.contains("libzpoline.so"))
        .expect("cargo did not report libzpoline.so");
    let start = line.find("\"filenames\":[\"").unwrap() + 14;
    let end = start + line[start..].find('"').unwrap();
    PathBuf::from(&line[start..end])
}

#[test]
fn preload_runs_programs_and_counts() {
    setup();
    let lib = libzpoline();
    let bin = gcc("threads", &["-pthread"]);
    let out = Command::new(&bin)
        .env("LD_PRELOAD", &lib)
        .env("ZPOLINE_COUNT", "1")
        .output()
        .unwrap();
    assert_ok(&out, "threads 8000");
    let counts = parse_count(&out.stderr);
    assert!(
        counts.contains(&("getppid".to_string(), 8000)),
        "{counts:?}"
    );
    let out = Command::new("sh")
        .args(["-c", "seq 1000 | wc -l"])
        .env("LD_PRELOAD", &lib)
        .output()
        .unwrap();
    assert_ok(&out, "1000");
}

#[test]
fn preload_stack_and_syscall_numbers_past_the_sled() {
    setup();
    let lib = libzpoline();
    let bin = gcc("bignr", &[]);
    let out = Command::new(&bin).env("LD_PRELOAD", &lib).output().unwrap();
    assert_ok(&out, "bignr done 1");
    assert!(String::from_utf8_lossy(&out.stdout).contains("0x40000027=-38"));
    let bin = gcc("stackuse", &["-pthread"]);
    for mode in ["mmap", "getppid"] {
        let out = Command::new(&bin)
            .arg(mode)
            .env("LD_PRELOAD", &lib)
            .env("ZPOLINE_COUNT", "1")
            .output()
            .unwrap();
        assert_ok(&out, &format!("{mode} used 8 ok"));
    }
}
