//! Programs built with ThreadSanitizer and AddressSanitizer run under
//! `lkl-run --zpoline` without options, on the host backend and (ThreadSanitizer) on
//! LKL. ThreadSanitizer aborts on a mapping at page 0, so loading its runtime switches
//! the process to the NULL guard.

mod common;
use common::*;

fn tsan() -> String {
    gcc("tsan_threads", &["-fsanitize=thread", "-pthread"])
        .to_string_lossy()
        .into_owned()
}

fn asan() -> String {
    gcc("asan_heap", &["-fsanitize=address"])
        .to_string_lossy()
        .into_owned()
}

#[test]
fn thread_sanitizer_program_runs() {
    let z = interposed(&[], &tsan(), &[]);
    assert_eq!(z.status.code(), Some(0), "{z:?}");
    assert_eq!(z.stdout, b"counter 20000\n");
    assert!(
        z.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&z.stderr)
    );
}

#[cfg(feature = "lkl")]
#[test]
fn thread_sanitizer_program_runs_with_the_lkl_backend() {
    // The default backend: LKL boots (only `lo`, no configuration) while the program
    // runs in the NULL guard.
    setup();
    let z = std::process::Command::new(lkl_run())
        .args(["--zpoline", &tsan()])
        .env_remove("LKL_HIJACK_CONFIG_FILE")
        .current_dir(scratch())
        .output()
        .unwrap();
    assert_eq!(z.status.code(), Some(0), "{z:?}");
    assert_eq!(z.stdout, b"counter 20000\n");
}

#[test]
fn thread_sanitizer_still_reports_a_race() {
    // 66: ThreadSanitizer's exit status for a program with reports.
    still_reports(&tsan(), "race", "WARNING: ThreadSanitizer: data race", 66);
}

#[test]
fn no_auto_guard_leaves_thread_sanitizer_to_refuse_page_0() {
    // The auto switch can be turned off: ThreadSanitizer then refuses the layout.
    let z = interposed(&["--no-auto-guard"], &tsan(), &[]);
    assert_eq!(z.status.code(), Some(66), "{z:?}");
    assert!(String::from_utf8_lossy(&z.stderr).contains("unexpected memory mapping"));
}

#[test]
fn address_sanitizer_program_runs() {
    let z = interposed(&[], &asan(), &[]);
    assert_eq!(z.status.code(), Some(0), "{z:?}");
    assert_eq!(z.stdout, b"sum 4950\n");
}

#[test]
fn address_sanitizer_still_reports_an_overflow() {
    still_reports(
        &asan(),
        "overflow",
        "ERROR: AddressSanitizer: heap-buffer-overflow",
        1,
    );
}

/// The sanitized program `prog arg` under `lkl-run` prints the sanitizer's
/// `report` and exits with `status`.
fn still_reports(prog: &str, arg: &str, report: &str, status: i32) {
    let z = interposed(&[], prog, &[arg]);
    let err = String::from_utf8_lossy(&z.stderr);
    assert!(err.contains(report), "{z:?}");
    assert_eq!(z.status.code(), Some(status), "{err}");
}
