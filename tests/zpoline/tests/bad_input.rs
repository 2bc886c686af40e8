//! Bad input gives clear errors and shell-like exit codes.

mod common;
use common::*;
use std::process::Command;
use std::sync::Mutex;

/// The mmap_min_addr test changes a machine-wide setting: keep the others out meanwhile.
static SYSCTL: Mutex<()> = Mutex::new(());

fn run(args: &[&str]) -> std::process::Output {
    let _g = SYSCTL.lock().unwrap_or_else(|e| e.into_inner());
    setup();
    Command::new(lkl_run()).args(args).output().unwrap()
}

#[test]
fn mmap_min_addr_not_zero_says_what_to_run() {
    let _g = SYSCTL.lock().unwrap_or_else(|e| e.into_inner());
    setup();
    let set = |v: &str| {
        let st = Command::new("sysctl")
            .args(["-qw", &format!("vm.mmap_min_addr={v}")])
            .status()
            .unwrap();
        assert!(st.success());
    };
    set("65536");
    let out = Command::new(lkl_run())
        .args(["--zpoline", "/bin/true"])
        .output()
        .unwrap();
    set("0");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("sysctl -w vm.mmap_min_addr=0"), "{err}");
}

#[test]
fn missing_program_is_127() {
    let out = run(&["--zpoline", "/nonexistent/program"]);
    assert_eq!(out.status.code(), Some(127));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/program"));
    let out = run(&["--zpoline", "no-such-command-zpoline"]);
    assert_eq!(out.status.code(), Some(127));
}

#[test]
fn non_elf_is_126() {
    let f = scratch().join("not-elf");
    std::fs::write(&f, "just text\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = run(&["--zpoline", f.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(126));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not an ELF"));
}

#[test]
fn non_x86_64_elf_is_126() {
    let mut exe = std::fs::read("/bin/true").unwrap();
    exe[18] = 0xB7; // EM_AARCH64
    exe[19] = 0;
    let f = scratch().join("aarch64-true");
    std::fs::write(&f, exe).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = run(&["--zpoline", f.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(126));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not an x86-64"));
}

#[test]
fn unknown_option_prints_usage() {
    let out = run(&["--zpoline", "--frobnicate", "/bin/true"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Usage"));
}

#[test]
fn scripts_run_through_their_interpreter() {
    let f = scratch().join("script.sh");
    std::fs::write(&f, "#!/bin/sh\necho script \"$0\" \"$1\"\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o755)).unwrap();
    let _g = SYSCTL.lock().unwrap_or_else(|e| e.into_inner());
    same_as_native(f.to_str().unwrap(), &["arg"]);
}
