//! The on-disk site cache: filled on first use, used afterwards, never trusted.

mod common;
use common::*;
use std::os::unix::fs::PermissionsExt;

fn fresh_dir(name: &str) -> std::path::PathBuf {
    let d = scratch().join(name);
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn run_with(dir: &std::path::Path) -> std::process::Output {
    let arg = format!("--cache-dir={}", dir.display());
    interposed(&[&arg, "--trace=/dev/null"], "ls", &["-la", "/usr"])
}

#[test]
fn cache_is_filled_then_used_with_identical_results() {
    let dir = fresh_dir("cache-fill");
    let native = native("ls", &["-la", "/usr"]);
    let first = run_with(&dir);
    assert_eq!(first.stdout, native.stdout);
    let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700, "cache directory must be private");
    let files: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
    assert!(
        files.len() >= 3,
        "ld.so, ls and libc sections cached: {files:?}"
    );
    let second = run_with(&dir);
    assert_eq!(second.stdout, native.stdout);
    assert_eq!(second.status.code(), native.status.code());
}

#[test]
fn stale_or_damaged_cache_files_fall_back_to_decoding() {
    let dir = fresh_dir("cache-stale");
    let native = native("ls", &["-la", "/usr"]);
    assert_eq!(run_with(&dir).stdout, native.stdout);
    // Shift every cached site by one byte (stale), or cut the file (damaged).
    for (i, e) in std::fs::read_dir(&dir).unwrap().enumerate() {
        let p = e.unwrap().path();
        let mut bytes = std::fs::read(&p).unwrap();
        if i % 2 == 0 {
            for entry in bytes[80..].chunks_exact_mut(8) {
                let v = u64::from_le_bytes(entry.try_into().unwrap()) + (1 << 8);
                entry.copy_from_slice(&v.to_le_bytes());
            }
        } else {
            bytes.truncate(bytes.len().saturating_sub(3));
        }
        std::fs::write(&p, bytes).unwrap();
    }
    let again = run_with(&dir);
    assert_eq!(
        again.stdout,
        native.stdout,
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
}

#[test]
fn a_shared_cache_directory_is_refused_but_the_program_runs() {
    let dir = fresh_dir("cache-shared");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = run_with(&dir);
    assert_eq!(out.stdout, native("ls", &["-la", "/usr"]).stdout);
    assert_eq!(
        std::fs::read_dir(&dir).unwrap().count(),
        0,
        "nothing written to a shared dir"
    );
}
