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

#[test]
fn syscall_table_comes_from_the_kernel() {
    let getpid = lkl_sys::syscall_def(lkl_sys::__lkl__NR_getpid).expect("getpid");
    assert_eq!(getpid.name, "getpid");
    assert!(getpid.args.is_empty());
    let openat = lkl_sys::syscall_def(lkl_sys::__lkl__NR_openat).expect("openat");
    assert_eq!(openat.name, "openat");
    let names: Vec<_> = openat.args.iter().map(|a| a.1).collect();
    assert_eq!(names, ["dfd", "filename", "flags", "mode"]);
    // the 64-bit handler of a 32/64 pair
    let fstat = lkl_sys::syscall_def(lkl_sys::__lkl__NR_fstat).expect("fstat");
    assert_eq!(fstat.name, "newfstat");
    assert!(
        lkl_sys::SYSCALL_DEFS.len() > 250,
        "{}",
        lkl_sys::SYSCALL_DEFS.len()
    );
}
