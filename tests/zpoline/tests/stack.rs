//! The hook never runs on the program's stack: `c/stackuse.c` makes syscalls with rsp
//! right above a PROT_NONE guard page, on a painted area, and reports how many bytes
//! below its rsp changed. A native syscall changes none; every path may add at most
//! 512 (the return address of `call *%rax`, and a thread's first hook entry, which
//! saves its registers below the red zone while it attaches its interposer stack).

mod common;
use common::*;

/// Limit on the program's stack used below the caller, beyond a native syscall (0).
const LIMIT: u64 = 512;

/// Runs `stackuse MODE` with lkl-run options `opts`; returns the bytes it reports.
fn used(opts: &[&str], mode: &str) -> u64 {
    let bin = gcc("stackuse", &["-pthread"]);
    let out = interposed(opts, bin.to_str().unwrap(), &[mode]);
    let so = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && so.contains(" ok"),
        "stackuse {mode} under {opts:?}: {out:?}"
    );
    let n = so
        .split_whitespace()
        .nth(2)
        .and_then(|w| w.parse().ok())
        .unwrap_or_else(|| panic!("bad output {so:?}"));
    assert!(
        n <= LIMIT,
        "stackuse {mode} under {opts:?} used {n} bytes of the program's stack (limit {LIMIT})"
    );
    n
}

#[test]
fn native_syscalls_use_no_stack() {
    let bin = gcc("stackuse", &["-pthread"]);
    for mode in ["getppid", "mmap", "thread", "lowstack"] {
        let out = native(bin.to_str().unwrap(), &[mode]);
        assert_ok(&out, &format!("{mode} used 0 ok"));
    }
}

#[test]
fn fast_path_uses_only_the_return_address() {
    assert_eq!(used(&[], "getppid"), 8);
}

#[test]
fn hook_path_stays_off_the_program_stack() {
    // mmap, mprotect and munmap take the Rust hook (code rewriting, the sled page).
    assert_eq!(used(&[], "mmap"), 8);
    for opts in [&["--trace=/dev/null"][..], &["--count"]] {
        assert_eq!(used(opts, "getppid"), 8, "{opts:?}");
        assert_eq!(used(opts, "mmap"), 8, "{opts:?}");
    }
}

#[test]
fn a_threads_first_hook_entry_attaches_its_stack() {
    for opts in [&[][..], &["--trace=/dev/null"], &["--count"]] {
        used(opts, "thread");
    }
}

#[test]
fn signal_handlers_nest_inside_the_hook() {
    // Under --trace the blocking read is inside the hook when SIGALRM arrives; the
    // handler's mmap is a nested entry below the interrupted frame.
    for opts in [&[][..], &["--trace=/dev/null"], &["--count"]] {
        assert_eq!(used(opts, "nested"), 8, "{opts:?}");
    }
    // Handlers on a sigaltstack interrupting a read blocked in the hook: their hooked
    // getppid runs on that signal stack.
    let bin = gcc("signals", &[]);
    for opts in [&["--trace=/dev/null"][..], &["--count"]] {
        let z = interposed(opts, bin.to_str().unwrap(), &[]);
        assert_ok(&z, "signals ok many");
    }
}

#[test]
fn mmap_with_1k_of_stack_left() {
    for opts in [
        &[][..],
        &["--trace=/dev/null"],
        &["--count"],
        &["--null-guard"],
    ] {
        used(opts, "lowstack");
    }
}

#[test]
fn null_guard_entry_stays_off_the_program_stack() {
    for mode in ["getppid", "mmap", "thread", "nested"] {
        used(&["--null-guard"], mode);
    }
}

#[test]
fn a_raw_clone_the_interposer_did_not_see_gets_its_own_stack() {
    // With --sud=never the JIT buffer's clone reaches the kernel unseen: the child
    // inherits its creator's %gs base, and its own %fs (CLONE_SETTLS) makes the stub
    // attach a block of its own. Under lazy SUD the clone enters the stub via SIGSYS.
    let bin = gcc("rawclone", &["-fno-stack-protector"]);
    for opts in [
        &["--sud=never"][..],
        &[],
        &["--sud=never", "--count"],
        &["--null-guard", "--sud=never"],
    ] {
        for _ in 0..3 {
            let z = interposed(opts, bin.to_str().unwrap(), &[]);
            assert_ok(&z, "rawclone ok");
        }
    }
}
