//! Real programs under `lkl-run --zpoline --backend host` give byte-identical stdout
//! and exit codes to a native run.

mod common;
use common::*;

/// `ls -la /` shows the link count of /proc, which is the number of live processes:
/// it changes between any two runs while other processes come and go (the other tests,
/// a build on the same machine). Everything else must be byte-identical.
fn mask_proc_links(out: &[u8]) -> String {
    String::from_utf8_lossy(out)
        .lines()
        .map(|l| {
            if l.ends_with(" proc") {
                let f: Vec<&str> = l.split_whitespace().collect();
                format!("{} N {}", f[0], f[2..].join(" "))
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn ls_la_root() {
    for _ in 0..8 {
        let n = native("ls", &["-la", "/"]);
        let z = interposed(&[], "ls", &["-la", "/"]);
        assert_eq!(z.status.code(), n.status.code());
        if z.stdout == n.stdout {
            return;
        }
        if mask_proc_links(&z.stdout) == mask_proc_links(&n.stdout) {
            continue;
        }
        // Anything else differing is a real difference (or / changed meanwhile).
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let n = native("ls", &["-la", "/"]);
    let z = interposed(&[], "ls", &["-la", "/"]);
    assert_eq!(mask_proc_links(&z.stdout), mask_proc_links(&n.stdout));
}

#[test]
fn sort_stdin_file() {
    let f = scratch().join("sort-input.txt");
    std::fs::write(&f, "pear\napple\nfig\nbanana\napple\n").unwrap();
    let out = same_as_native("sort", &[f.to_str().unwrap()]);
    assert_eq!(out, b"apple\napple\nbanana\nfig\npear\n");
}

#[test]
fn tar_czf_then_tzf() {
    let d = scratch().join("tar-src");
    std::fs::create_dir_all(d.join("sub")).unwrap();
    std::fs::write(d.join("a.txt"), "hello\n").unwrap();
    std::fs::write(d.join("sub/b.txt"), "x".repeat(100_000)).unwrap();
    let arch = scratch().join("t.tgz");
    let c = interposed(
        &[],
        "tar",
        &[
            "czf",
            arch.to_str().unwrap(),
            "-C",
            d.to_str().unwrap(),
            ".",
        ],
    );
    assert!(c.status.success(), "{}", String::from_utf8_lossy(&c.stderr));
    let list = same_as_native("tar", &["tzf", arch.to_str().unwrap()]);
    let list = String::from_utf8(list).unwrap();
    assert!(list.contains("./sub/b.txt"), "{list}");
}

#[test]
fn sh_seq_wc() {
    let out = same_as_native("sh", &["-c", "seq 1000 | wc -l"]);
    assert_eq!(out, b"1000\n");
}

#[test]
fn python_threads_and_subprocess() {
    let code = "import threading, subprocess\n\
r = []\n\
ts = [threading.Thread(target=lambda i=i: r.append(i * i)) for i in range(8)]\n\
[t.start() for t in ts]\n\
[t.join() for t in ts]\n\
print(sorted(r))\n\
print(subprocess.run(['echo', 'from child'], capture_output=True, text=True).stdout, end='')\n\
print(subprocess.check_output(['sh', '-c', 'echo $((6*7))'], text=True), end='')\n";
    let out = same_as_native("python3", &["-c", code]);
    assert_eq!(out, b"[0, 1, 4, 9, 16, 25, 36, 49]\nfrom child\n42\n");
}

#[test]
fn git_version() {
    same_as_native("git", &["--version"]);
}

#[test]
fn busybox_static_pipeline() {
    let bb = native("sh", &["-c", "command -v busybox"]);
    let path = String::from_utf8(bb.stdout).unwrap();
    let bytes = std::fs::read(path.trim()).expect("busybox (busybox-static) is required");
    let img = loader::elf::parse("busybox", &bytes).unwrap();
    assert!(
        img.interp.is_none(),
        "busybox must be the static build (apt busybox-static)"
    );
    let out = same_as_native(
        "busybox",
        &[
            "sh",
            "-c",
            "echo one two three | tr ' ' '\\n' | sort | head -2",
        ],
    );
    assert_eq!(out, b"one\nthree\n");
}

#[test]
fn curl_file_url() {
    same_as_native("curl", &["-s", "file:///etc/hostname"]);
}

#[test]
fn trace_shows_names_paths_and_results() {
    let out = scratch().join("trace.txt");
    let arg = format!("--trace={}", out.display());
    let z = interposed(&[&arg], "cat", &["/etc/hostname", "/nonexistent-zpoline"]);
    assert_eq!(z.status.code(), Some(1));
    let trace = std::fs::read_to_string(&out).unwrap();
    assert!(
        trace.contains("openat(AT_FDCWD, \"/etc/hostname\", "),
        "{trace}"
    );
    assert!(
        trace.contains("openat(AT_FDCWD, \"/nonexistent-zpoline\", "),
        "{trace}"
    );
    assert!(trace.contains(") = -1 ENOENT"), "{trace}");
    assert!(trace.contains("exit_group(0x1"), "{trace}");
}

#[test]
fn the_hook_never_allocates() {
    // dlopen-heavy: every extension module is decoded inside the hook.
    let out = scratch().join("alloc-trace.txt");
    let arg = format!("--trace={}", out.display());
    let code =
        "import json, decimal, unicodedata, ssl, sqlite3, ctypes, hashlib, zlib\nprint('ok')";
    let z = interposed(&[&arg, "--no-cache"], "python3", &["-c", code]);
    assert_ok(&z, "ok");
    let trace = std::fs::read_to_string(&out).unwrap();
    assert!(
        !trace.contains("allocations inside the hook"),
        "the hook allocated"
    );
    assert!(trace.contains("exit_group("));
}

#[test]
fn sigpipe_is_default_like_after_a_real_exec() {
    // lkl-run's Rust runtime ignores SIGPIPE for itself; the program must not inherit
    // that, or `yes` would report "Broken pipe" instead of dying quietly.
    let n = native("sh", &["-c", "yes | head -n 2"]);
    let z = interposed(&[], "sh", &["-c", "yes | head -n 2"]);
    assert_eq!(z.stdout, n.stdout);
    assert_eq!(z.status.code(), n.status.code());
    assert_eq!(
        String::from_utf8_lossy(&z.stderr),
        String::from_utf8_lossy(&n.stderr)
    );
}

#[test]
fn the_program_sees_only_its_own_descriptors() {
    // No descriptor of ours (cache directory, ELF files) leaks into the program.
    same_as_native("ls", &["/proc/self/fd"]);
    same_as_native("sh", &["-c", "ls /proc/$$/fd"]);
}
