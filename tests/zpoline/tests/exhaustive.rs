//! Exhaustiveness: `--count` sees every syscall.

mod common;
use common::*;

#[test]
fn static_nolibc_program_count_is_exact() {
    let bin = gcc("rawcount", &["-static", "-nostdlib", "-O1"]);
    let z = interposed(&["--count"], bin.to_str().unwrap(), &[]);
    assert_ok(&z, "raw ok");
    let counts = parse_count(&z.stderr);
    assert_eq!(
        counts,
        vec![
            ("exit_group".to_string(), 1),
            ("getppid".to_string(), 100),
            ("write".to_string(), 1)
        ]
    );
}

#[test]
fn static_glibc_program_runs_interposed() {
    let bin = gcc("threads", &["-static", "-pthread"]);
    let z = interposed(&["--count"], bin.to_str().unwrap(), &[]);
    assert_ok(&z, "threads 8000");
    let counts = parse_count(&z.stderr);
    assert!(
        counts.contains(&("getppid".to_string(), 8000)),
        "{counts:?}"
    );
}

/// strace counts `execve` (ours happened before the program existed) and not
/// `exit_group` (it never returns); align the two views on that.
fn compare_with_strace(prog: &str, args: &[&str]) {
    let mut want = strace_count(prog, args);
    want.retain(|(n, _)| n != "execve");
    let z = interposed(&["--count"], prog, args);
    assert!(z.status.success(), "{}", String::from_utf8_lossy(&z.stderr));
    let mut got = parse_count(&z.stderr);
    got.retain(|(n, _)| n != "exit_group");
    assert_eq!(
        got, want,
        "lkl-run --count vs strace -f -c for {prog} {args:?}"
    );
}

#[test]
fn true_count_matches_strace() {
    compare_with_strace("/bin/true", &[]);
}

#[test]
fn ls_count_matches_strace() {
    compare_with_strace("/bin/ls", &["/"]);
}

#[test]
fn count_summary_survives_exec_of_the_first_process() {
    let z = interposed(&["--count"], "sh", &["-c", "exec /bin/true"]);
    assert!(z.status.success(), "{}", String::from_utf8_lossy(&z.stderr));
    let counts = parse_count(&z.stderr);
    assert!(
        counts.iter().any(|(n, c)| n == "execve" && *c >= 1),
        "{counts:?}"
    );
    assert!(counts.iter().any(|(n, _)| n == "exit_group"), "{counts:?}");
}
