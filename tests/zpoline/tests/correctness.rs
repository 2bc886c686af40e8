//! Correctness cases, one test each, with C programs compiled by gcc at test time.

mod common;
use common::*;

fn run_c(name: &str, flags: &[&str], args: &[&str], want: &str) {
    let bin = gcc(name, flags);
    let bin = bin.to_str().unwrap();
    let n = native(bin, args);
    assert_ok(&n, want);
    let z = interposed(&[], bin, args);
    assert_ok(&z, want);
    assert_eq!(z.stdout, n.stdout);
}

/// Runs C program `name` (built with `flags`) under `lkl-run` with `opts` and
/// `args`, checks its output has each of `want`, and checks that `--count` (which
/// `opts` must hold) saw exactly `getppid` calls of `getppid`.
fn check_getppid_count(
    name: &str,
    flags: &[&str],
    opts: &[&str],
    args: &[&str],
    want: &[&str],
    getppid: u64,
) {
    let bin = gcc(name, flags);
    let z = interposed(opts, bin.to_str().unwrap(), args);
    for want in want {
        assert_ok(&z, want);
    }
    let counts = parse_count(&z.stderr);
    assert!(
        counts.contains(&("getppid".to_string(), getppid)),
        "{counts:?}"
    );
}

/// One test per row: the C program, its gcc flags, its arguments and the output
/// it must print, natively and under `lkl-run` alike (see [`run_c`]).
macro_rules! c_cases {
    ($($test:ident: $name:expr, $flags:expr, $args:expr, $want:expr;)*) => {
        $(
            #[test]
            fn $test() {
                run_c($name, $flags, $args, $want);
            }
        )*
    };
}

c_cases! {
    pthread_create_8_threads: "threads", &["-pthread"], &[], "threads 8000";
    fork: "procs", &[], &["fork"], "fork ok";
    vfork: "procs", &[], &["vfork"], "vfork ok";
    posix_spawn: "procs", &[], &["posix_spawn"], "posix_spawn ok";
    clone3: "procs", &[], &["clone3"], "clone3 ok";
    signals_sa_restart_sigaltstack: "signals", &[], &[], "signals ok many";
    red_zone_kept_across_syscall: "regs", &[], &["redzone"], "redzone ok";
    xmm_ymm_kept_across_syscall: "regs", &[], &["vector"], "vector ok";
    gprs_kept_across_syscall: "regs", &[], &["gprs"], "gprs ok";
    constant_data_in_an_executable_segment_is_not_rewritten:
        "rodata", &["-Wl,-z,noseparate-code"], &[], "rodata intact";
}

#[test]
fn vectors_kept_on_hook_path_too() {
    // --count sends every syscall through the Rust hook (XSAVE/XRSTOR path).
    let bin = gcc("regs", &[]);
    let z = interposed(&["--count"], bin.to_str().unwrap(), &["all"]);
    assert_ok(&z, "all ok");
}

#[test]
fn execve_chain() {
    run_c("execchain", &[], &[], "chain done");
    // every exec in the chain is interposed again: the count sees the execs of the chain
    let bin = gcc("execchain", &[]);
    let z = interposed(&["--trace"], bin.to_str().unwrap(), &[]);
    assert_ok(&z, "chain done");
    let trace = String::from_utf8_lossy(&z.stderr);
    let pids: std::collections::BTreeSet<&str> = trace
        .lines()
        .filter(|l| l.contains("] write("))
        .filter_map(|l| l.split(']').next())
        .collect();
    assert!(
        !pids.is_empty(),
        "the final echo's write was not traced:\n{trace}"
    );
    assert!(trace.matches("execve(").count() >= 6, "{trace}");
}

#[test]
fn dlopen_library_with_syscalls() {
    let lib = gcc_shared("libdl_sys.so", "dlopen_lib");
    run_c(
        "dlopen_main",
        &["-ldl"],
        &[lib.to_str().unwrap()],
        "dlopen 10",
    );
    // The library's own syscall site was rewritten (counted through the fast path is
    // invisible, so use --count): 10 getppid from the library + 10 from libc.
    check_getppid_count(
        "dlopen_main",
        &["-ldl"],
        &["--count", "--no-sud"],
        &[lib.to_str().unwrap()],
        &["dlopen 10"],
        20,
    );
}

#[test]
fn jit_buffer_with_syscall() {
    run_c("jit", &[], &[], "jit 5");
    // The JIT's syscalls reach the hook through Syscall User Dispatch.
    check_getppid_count("jit", &[], &["--count"], &[], &["jit 5"], 10);
}

#[test]
fn syscall_straddling_a_page_boundary() {
    run_c("straddle", &[], &[], "straddle ok");
    // one call through the straddling site, two from main through libc
    check_getppid_count(
        "straddle",
        &[],
        &["--count", "--no-sud"],
        &[],
        &["straddle ok"],
        3,
    );
}

#[test]
fn null_access_still_faults() {
    use std::os::unix::process::ExitStatusExt;
    let bin = gcc("nullread", &[]);
    let bin = bin.to_str().unwrap();
    let w = interposed(&[], bin, &["w", "0"]);
    assert_eq!(w.status.signal(), Some(11), "NULL write must SIGSEGV");
    // Reads past the sled's page fault in every mode.
    let far = interposed(&[], bin, &["r", "0x1000"]);
    assert_eq!(far.status.signal(), Some(11), "read of 0x1000 must SIGSEGV");
    // With --null-guard, page 0 is unmapped: NULL reads fault on every CPU.
    for addr in ["0", "8", "0x200"] {
        let g = interposed(&["--null-guard"], bin, &["r", addr]);
        assert_eq!(
            g.status.signal(),
            Some(11),
            "--null-guard: read of {addr} must SIGSEGV: {g:?}"
        );
    }
    let r = interposed(&[], bin, &["r", "0"]);
    if trampoline::pkeys_available() {
        assert_eq!(
            r.status.signal(),
            Some(11),
            "NULL read must SIGSEGV with execute-only page 0"
        );
    } else {
        // Without protection keys x86 cannot map page 0 execute-only: in the default
        // (fast) mode a NULL read returns the sled's bytes (docs/zpoline.md).
        assert!(r.status.success(), "{r:?}");
    }
}

#[test]
fn null_guard_mode_runs_threads_processes_and_signals() {
    for (name, flags, args, want) in [
        ("threads", &["-pthread"][..], &[][..], "threads 8000"),
        ("procs", &[], &[], "clone3 ok"),
        ("signals", &[], &[], "signals ok many"),
        ("regs", &[], &["all"], "all ok"),
        ("jit", &[], &[], "jit 5"),
    ] {
        let bin = gcc(name, flags);
        let z = interposed(&["--null-guard"], bin.to_str().unwrap(), args);
        assert_ok(&z, want);
    }
    // A program with its own SIGSEGV handler still gets its NULL faults.
    let bin = gcc("segvhandler", &["-ldl"]);
    let n = native(bin.to_str().unwrap(), &[]);
    assert_ok(&n, "caught 3");
    let z = interposed(&["--null-guard"], bin.to_str().unwrap(), &[]);
    assert_ok(&z, "caught 3");
}

#[test]
fn jit_in_new_thread_and_fork_child() {
    // 5 JIT + 5 libc getppid in each of: the new thread, the child, the early thread.
    check_getppid_count(
        "jitthread",
        &["-pthread"],
        &["--count"],
        &[],
        &["thread 5", "child 5", "early 5"],
        30,
    );
}

#[test]
fn exec_mapping_longer_than_its_file() {
    run_c("mmapeof", &[], &[], "mmapeof ok");
    // one getppid through the mapped file's own (rewritten) site, one through libc
    check_getppid_count(
        "mmapeof",
        &[],
        &["--count", "--sud=never"],
        &[],
        &["mmapeof ok"],
        2,
    );
}

#[test]
fn page0_cannot_be_unmapped_or_replaced() {
    let bin = gcc("page0", &[]);
    let z = interposed(&[], bin.to_str().unwrap(), &[]);
    assert_ok(&z, "page0 0 -1 refused 1");
}

#[test]
fn loading_a_jvm_switches_to_the_null_guard() {
    // A JVM relies on NULL reads faulting (implicit null checks). Mapping libjvm.so on a
    // CPU without protection keys switches to the NULL guard; a stand-in library with
    // that name triggers it.
    let lib = gcc_shared("libjvm.so", "dlopen_lib");
    let bin = gcc("segvhandler", &["-ldl"]);
    let (bin, lib) = (bin.to_str().unwrap(), lib.to_str().unwrap());
    let z = interposed(&[], bin, &["8", lib]);
    assert_ok(&z, "caught 3");
    if !trampoline::pkeys_available() {
        // Without the switch, NULL reads would return the sled's bytes.
        let off = interposed(&["--no-auto-guard"], bin, &["8", lib]);
        assert!(
            !String::from_utf8_lossy(&off.stdout).contains("caught 3"),
            "{off:?}"
        );
    }
}

#[test]
fn syscall_numbers_past_the_sled_get_the_kernels_answer() {
    // 513..4095 go through the sled's terminal run or fall off page 0, 4096 and up
    // (x32's 0x40000000|nr) fault at rip == rax: every one gets -ENOSYS, never SIGSEGV.
    let bin = gcc("bignr", &[]);
    let bin = bin.to_str().unwrap();
    let n = native(bin, &[]);
    assert_ok(&n, "bignr done 1");
    let so = String::from_utf8_lossy(&n.stdout);
    for nr in ["0x258", "0x3e8", "0xfff", "0x1388", "0x40000027"] {
        assert!(so.contains(&format!("{nr}=-38")), "native {nr}: {so}");
    }
    for opts in [
        &[][..],
        &["--null-guard"],
        &["--count"],
        &["--trace=/dev/null"],
    ] {
        let z = interposed(opts, bin, &[]);
        assert_ok(&z, "bignr done 1");
        assert_eq!(z.stdout, n.stdout, "{opts:?}");
    }
}
