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

/// Without the `lkl` feature, the LKL backend (the default) is refused by name.
#[cfg(not(feature = "lkl"))]
#[test]
fn lkl_backend_missing_from_the_build_is_named() {
    for args in [
        &["--zpoline", "/bin/true"][..],
        &["--zpoline", "--backend", "lkl", "/bin/true"],
    ] {
        let out = run(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert_eq!(
            err.trim_end(),
            "lkl-run: this lkl-run was built without the LKL backend (cargo feature `lkl`): \
             run it with --backend host, or build it with the default features \
             (cargo build --release -p loader)"
        );
    }
}

/// Runs lkl-run on `prog`; checks the exit status and that stderr is exactly `want`.
fn refused(prog: &str, status: i32, want: &str) {
    let out = run(&["--zpoline", "--backend", "host", prog]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(status), "{err}");
    assert_eq!(err.trim_end(), want);
}

/// `lkl-run --zpoline prog` (the default backend) exits 126 with exactly `want`.
fn refused_126(prog: &str, want: &str) {
    let out = run(&["--zpoline", prog]);
    assert_eq!(out.status.code(), Some(126));
    assert_eq!(String::from_utf8_lossy(&out.stderr).trim_end(), want);
}

fn executable(name: &str, bytes: &[u8]) -> String {
    use std::os::unix::fs::PermissionsExt;
    let f = scratch().join(name);
    std::fs::write(&f, bytes).unwrap();
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o755)).unwrap();
    f.to_string_lossy().into_owned()
}

#[test]
fn missing_program_is_127() {
    refused(
        "/nonexistent/program",
        127,
        "lkl-run: /nonexistent/program: no such file or directory; check the program's path",
    );
    refused(
        "no-such-command-zpoline",
        127,
        "lkl-run: no-such-command-zpoline: command not found in PATH; give the program's \
         path, or add its directory to PATH",
    );
}

#[test]
fn a_path_too_long_is_named() {
    // A path too long, and a command name too long for any PATH directory.
    for path in [format!("/tmp/{}", "a".repeat(5000)), "b".repeat(300)] {
        refused(
            &path,
            126,
            &format!(
                "lkl-run: {}... ({} bytes): file name too long (a path is at most 4095 \
                 bytes, a component 255); give a shorter path",
                &path[..160],
                path.len()
            ),
        );
    }
}

#[test]
fn directories_and_files_that_cannot_run_are_126() {
    let dir = scratch().to_string_lossy().into_owned();
    refused(
        &dir,
        126,
        &format!("lkl-run: {dir}: is a directory; give the path of the program inside it"),
    );
    let f = scratch().join("not-executable");
    std::fs::write(&f, "data\n").unwrap();
    let f = f.to_string_lossy().into_owned();
    refused(
        &f,
        126,
        &format!(
            "lkl-run: {f}: permission denied: not executable by this user; run `chmod +x` \
             on it, or check the directories' permissions"
        ),
    );
    refused(
        &format!("{f}/x"),
        126,
        &format!(
            "lkl-run: {f}/x: not a directory (a component of the path is a file); check \
             the program's path"
        ),
    );
    let script = executable("bad-interpreter.sh", b"#!/nonexistent/sh\n");
    refused(
        &script,
        126,
        &format!(
            "lkl-run: {script}: bad interpreter (the #! line or PT_INTERP): \
             /nonexistent/sh: no such file or directory; check the program's path"
        ),
    );
}

#[test]
fn a_32_bit_program_and_an_object_file_are_126() {
    let mut elf = std::fs::read("/bin/true").unwrap();
    elf[4] = 1; // ELFCLASS32
    let p = executable("elf32-true", &elf);
    refused(
        &p,
        126,
        &format!(
            "lkl-run: {p}: a 32-bit ELF program, not an x86-64 program: zpoline runs \
             x86-64 programs only; run it natively"
        ),
    );
    let mut elf = std::fs::read("/bin/true").unwrap();
    elf[16] = 1; // e_type = ET_REL
    let p = executable("object-true", &elf);
    refused(
        &p,
        126,
        &format!("lkl-run: {p}: bad ELF file: an object file (ELF type 1): link it into a program"),
    );
}

#[test]
fn non_elf_is_126() {
    let p = executable("not-elf", b"just text\n");
    refused_126(
        &p,
        &format!(
            "lkl-run: {p}: not an ELF executable nor a #! script; lkl-run runs x86-64 ELF \
             programs and scripts"
        ),
    );
}

#[test]
fn non_x86_64_elf_is_126() {
    let mut exe = std::fs::read("/bin/true").unwrap();
    exe[18] = 0xB7; // EM_AARCH64
    exe[19] = 0;
    let p = executable("aarch64-true", &exe);
    refused_126(
        &p,
        &format!(
            "lkl-run: {p}: an ELF program for AARCH64, not an x86-64 program: zpoline runs \
             x86-64 programs only; run it natively"
        ),
    );
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
