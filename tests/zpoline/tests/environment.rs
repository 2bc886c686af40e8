//! The program's environment steers the program's ld.so, never lkl-run's: lkl-run is a
//! static PIE with no dynamic loader of its own. `LD_TRACE_LOADED_OBJECTS` (`ldd`),
//! `LD_PRELOAD`, `LD_AUDIT`, `LD_LIBRARY_PATH` and `GLIBC_TUNABLES` reach the program
//! exactly, also through `execve` chains.

mod common;
use common::*;
use std::process::{Command, Output};

/// `cmd` with `vars` set, under `lkl-run --zpoline --backend host`, or natively.
fn run_env(vars: &[(&str, &str)], under_lkl_run: bool, prog: &str, args: &[&str]) -> Output {
    setup();
    let mut c = if under_lkl_run {
        let mut c = Command::new(lkl_run());
        c.args(["--zpoline", "--backend", "host", prog]);
        c
    } else {
        Command::new(prog)
    };
    c.args(args);
    for (k, v) in vars {
        c.env(k, v);
    }
    c.output().expect("running the program")
}

/// ld.so's trace output without the load addresses, which differ in every run.
fn without_addresses(out: &[u8]) -> String {
    String::from_utf8_lossy(out)
        .lines()
        .map(|l| match l.rfind(" (0x") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn lkl_run_is_a_static_pie() {
    let elf = std::fs::read(lkl_run()).unwrap();
    // No PT_INTERP (type 3) among the program headers: the kernel starts lkl-run itself.
    let phoff = u64::from_le_bytes(elf[32..40].try_into().unwrap()) as usize;
    let phnum = u16::from_le_bytes(elf[56..58].try_into().unwrap()) as usize;
    for i in 0..phnum {
        let p = phoff + i * 56;
        let ty = u32::from_le_bytes(elf[p..p + 4].try_into().unwrap());
        assert_ne!(ty, 3, "lkl-run has a PT_INTERP: it is dynamically linked");
    }
}

#[test]
fn ld_trace_loaded_objects_lists_the_programs_libraries() {
    let vars = [("LD_TRACE_LOADED_OBJECTS", "1")];
    let n = run_env(&vars, false, "/usr/bin/sort", &[]);
    let z = run_env(&vars, true, "/usr/bin/sort", &[]);
    assert_eq!(z.status.code(), n.status.code(), "{z:?}");
    assert!(
        without_addresses(&n.stdout).contains("libc.so.6"),
        "native: {n:?}"
    );
    assert_eq!(
        without_addresses(&z.stdout),
        without_addresses(&n.stdout),
        "stderr under lkl-run: {}",
        String::from_utf8_lossy(&z.stderr)
    );
}

#[test]
fn ldd_runs_under_lkl_run() {
    // ldd is a bash script that runs ld.so itself with LD_TRACE_LOADED_OBJECTS=1.
    let n = run_env(&[], false, "ldd", &["/usr/bin/sort"]);
    let z = run_env(&[], true, "ldd", &["/usr/bin/sort"]);
    assert_eq!(z.status.code(), Some(0), "{z:?}");
    assert_eq!(without_addresses(&z.stdout), without_addresses(&n.stdout));
}

/// The constructor lines of `preload_ctor.c` in `stderr`.
fn ctor_lines(stderr: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(stderr)
        .lines()
        .filter(|l| l.starts_with("preload-ctor in "))
        .map(str::to_string)
        .collect()
}

fn preload_lib() -> String {
    gcc("preload_ctor", &["-shared", "-fPIC"])
        .to_string_lossy()
        .into_owned()
}

/// `echo hi` with the test library in `var`, natively and under `lkl-run`.
fn echo_with_the_library_in(var: &str) -> (Output, Output) {
    let lib = preload_lib();
    let vars = [(var, lib.as_str())];
    let n = run_env(&vars, false, "/bin/echo", &["hi"]);
    let z = run_env(&vars, true, "/bin/echo", &["hi"]);
    (n, z)
}

#[test]
fn ld_preload_reaches_the_program_only() {
    let (n, z) = echo_with_the_library_in("LD_PRELOAD");
    assert_eq!(ctor_lines(&n.stderr), ["preload-ctor in echo"]);
    assert_eq!(ctor_lines(&z.stderr), ["preload-ctor in echo"], "{z:?}");
    assert_eq!(z.stdout, b"hi\n");
}

#[test]
fn ld_audit_reaches_the_program_only() {
    let (n, z) = echo_with_the_library_in("LD_AUDIT");
    let audit = |err: &[u8]| {
        String::from_utf8_lossy(err)
            .lines()
            .filter(|l| *l == "audit-version")
            .count()
    };
    assert_eq!(audit(&n.stderr), 1, "{n:?}");
    assert_eq!(audit(&z.stderr), 1, "{z:?}");
    assert_eq!(z.stdout, b"hi\n");
}

#[test]
fn ld_library_path_finds_the_programs_library() {
    let lib = preload_lib();
    let dir = scratch().join("ld-library-path");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(&lib, dir.join("libzpanswer.so")).unwrap();
    let bin = scratch().join("lib_user");
    let st = Command::new("gcc")
        .arg("-o")
        .arg(&bin)
        .arg(c_dir().join("lib_user.c"))
        .arg("-L")
        .arg(&dir)
        .arg("-lzpanswer")
        .status()
        .expect("gcc is required for these tests");
    assert!(st.success());
    let bin = bin.to_str().unwrap();
    let vars = [("LD_LIBRARY_PATH", dir.to_str().unwrap())];
    let z = run_env(&vars, true, bin, &[]);
    assert_eq!(z.stdout, b"answer 42\n", "{z:?}");
    assert_eq!(ctor_lines(&z.stderr), ["preload-ctor in lib_user"]);
    // Without it the program's ld.so cannot find the library, as natively.
    let n = run_env(&[], false, bin, &[]);
    let z = run_env(&[], true, bin, &[]);
    assert_eq!(z.status.code(), n.status.code());
    assert_ne!(n.status.code(), Some(0));
}

#[test]
fn exec_chains_pass_the_environment_exactly() {
    let lib = preload_lib();
    let preload = format!("LD_PRELOAD={lib}");
    let args = [
        preload.as_str(),
        "LD_LIBRARY_PATH=/nonexistent",
        "GLIBC_TUNABLES=glibc.malloc.check=0",
        "LD_BIND_NOW=1",
        "/usr/bin/env",
    ];
    let n = run_env(&[], false, "/usr/bin/env", &args);
    let z = run_env(&[], true, "/usr/bin/env", &args);
    assert_eq!(z.status.code(), Some(0), "{z:?}");
    assert_eq!(
        String::from_utf8_lossy(&z.stdout),
        String::from_utf8_lossy(&n.stdout)
    );
    assert_eq!(ctor_lines(&z.stderr), ["preload-ctor in env"]);
    // And ld.so's trace mode set in the middle of a chain.
    let n = run_env(
        &[],
        false,
        "/usr/bin/env",
        &["LD_TRACE_LOADED_OBJECTS=1", "/usr/bin/sort"],
    );
    let z = run_env(
        &[],
        true,
        "/usr/bin/env",
        &["LD_TRACE_LOADED_OBJECTS=1", "/usr/bin/sort"],
    );
    assert_eq!(without_addresses(&z.stdout), without_addresses(&n.stdout));
}

#[test]
fn glibc_tunables_reach_the_program() {
    let vars = [(
        "GLIBC_TUNABLES",
        "glibc.malloc.tcache_count=0:glibc.malloc.check=0",
    )];
    let n = run_env(&vars, false, "/usr/bin/env", &[]);
    let z = run_env(&vars, true, "/usr/bin/env", &[]);
    assert_eq!(
        String::from_utf8_lossy(&z.stdout),
        String::from_utf8_lossy(&n.stdout)
    );
}
