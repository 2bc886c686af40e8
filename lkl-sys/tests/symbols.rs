//! The kernel library must not leak kernel symbols into the host's
//! namespace: only the `lkl_*` API is global, and it needs nothing from
//! the host but what the host operations table gives it.
use std::process::Command;

fn nm(args: &[&str]) -> Vec<String> {
    let obj = format!("{}/lib/lkl.o", lkl_sys::KERNEL_DIR);
    let out = Command::new("nm")
        .args(args)
        .arg(&obj)
        .output()
        .expect("nm (binutils) must be installed");
    assert!(out.status.success(), "nm {args:?} {obj} failed");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().last().map(str::to_owned))
        .collect()
}

#[test]
fn only_the_lkl_api_is_global() {
    let globals = nm(&["-g", "--defined-only"]);
    assert!(
        globals.iter().any(|s| s == "lkl_syscall"),
        "no lkl_syscall in {globals:?}"
    );
    let leaked: Vec<_> = globals.iter().filter(|s| !s.starts_with("lkl_")).collect();
    assert!(leaked.is_empty(), "kernel symbols leak: {leaked:?}");
    for name in [
        "memcpy", "printk", "_printk", "strlen", "kmalloc", "schedule",
    ] {
        assert!(!globals.iter().any(|s| s == name), "{name} is global");
    }
}

#[test]
fn needs_nothing_from_the_host() {
    let undefined = nm(&["-u"]);
    let unexpected: Vec<_> = undefined
        .iter()
        .filter(|s| *s != "_GLOBAL_OFFSET_TABLE_")
        .collect();
    assert!(unexpected.is_empty(), "undefined symbols: {unexpected:?}");
}
