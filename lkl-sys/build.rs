//! Builds the kernel (through the cache of `scripts/build-kernel.sh`), links
//! it, and generates the bindings from the kernel's own prefixed uapi
//! headers: the host operations table, the API entry points, the system
//! call numbers (`__lkl__NR_*`), constants (`LKL_*`) and structures
//! (`lkl_*`).
use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The uapi headers the bindings cover.
const HEADERS: &[&str] = &[
    "asm/host_ops.h",
    "asm/unistd.h",
    "asm/syscall_types.h",
    "asm/stat.h",
    "asm/statfs.h",
    "asm/ioctls.h",
    "asm/socket.h",
    "asm-generic/errno.h",
    "linux/types.h",
    "linux/stat.h",
    "linux/fcntl.h",
    "linux/fs.h",
    "linux/mount.h",
    "linux/time.h",
    "linux/time_types.h",
    "linux/uio.h",
    "linux/poll.h",
    "linux/eventpoll.h",
    "linux/reboot.h",
    "linux/sched.h",
    "linux/utsname.h",
    "linux/sysinfo.h",
    "linux/xattr.h",
    "linux/socket.h",
    "linux/sockios.h",
    "linux/in.h",
    "linux/in6.h",
    "linux/if.h",
    "linux/if_ether.h",
    "linux/if_packet.h",
    "linux/if_addr.h",
    "linux/if_link.h",
    "linux/netlink.h",
    "linux/rtnetlink.h",
    "linux/neighbour.h",
    "linux/fib_rules.h",
    "linux/route.h",
    "linux/ipv6_route.h",
    "linux/pkt_sched.h",
    "linux/virtio_mmio.h",
    "linux/virtio_config.h",
    "linux/virtio_ring.h",
    "linux/virtio_blk.h",
    "linux/virtio_net.h",
];

fn main() {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest.parent().unwrap().to_path_buf();
    for p in [
        "linux",
        "scripts/build-kernel.sh",
        "scripts/headers_install.py",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(p).display());
    }
    println!("cargo:rerun-if-env-changed=LKL_CACHE_DIR");

    let kernel = build_kernel(&root);
    let lib = kernel.join("lib");
    let include = kernel.join("include");

    println!("cargo:rustc-link-search=native={}", lib.display());
    println!("cargo:rustc-link-lib=static=lkl");
    println!("cargo:include={}", include.display());
    println!("cargo:root={}", kernel.display());
    println!("cargo:rustc-env=LKL_KERNEL_DIR={}", kernel.display());

    let mut wrapper = String::new();
    for h in HEADERS {
        wrapper.push_str(&format!("#include <lkl/{h}>\n"));
    }
    let bindings = bindgen::Builder::default()
        .header_contents("lkl_wrapper.h", &wrapper)
        .clang_arg(format!("-I{}", include.display()))
        .allowlist_item("(lkl|LKL|__lkl|_lkl|_LKL).*")
        .use_core()
        .layout_tests(false)
        .derive_default(true)
        .derive_debug(true)
        .prepend_enum_name(false)
        .generate()
        .expect("bindgen failed on the installed LKL headers");
    let out = PathBuf::from(env::var("OUT_DIR").unwrap());
    bindings.write_to_file(out.join("bindings.rs")).unwrap();

    let table = syscall_table(&kernel);
    std::fs::write(out.join("syscall_table.rs"), table).unwrap();
}

/// The system call table, from the kernel's own sources: which handler
/// each number runs (`__SYSCALL(__NR_x, sys_y)` lines of the installed
/// asm-generic/unistd.h) joined with each handler's signature (recorded by
/// `SYSCALL_DEFINEx` into share/syscall_defs.txt).
fn syscall_table(kernel: &Path) -> String {
    use std::collections::BTreeMap;
    use std::fmt::Write;

    let unistd = kernel.join("include/lkl/asm-generic/unistd.h");
    let unistd =
        std::fs::read_to_string(&unistd).unwrap_or_else(|e| panic!("{}: {e}", unistd.display()));
    let defs = kernel.join("share/syscall_defs.txt");
    let defs = std::fs::read_to_string(&defs).unwrap_or_else(|e| panic!("{}: {e}", defs.display()));

    // #define __lkl__NR_x 12 / __lkl__NR3264_x 12
    let mut numbers = BTreeMap::new();
    for line in unistd.lines() {
        let mut words = line.split_whitespace();
        if let (Some("#define"), Some(name), Some(value)) =
            (words.next(), words.next(), words.next())
        {
            if let Ok(v) = value.parse::<u32>() {
                numbers.insert(name.to_string(), v);
            }
        }
    }
    // handler per number: the 64-bit, non-compat choice of each macro
    let mut handlers = BTreeMap::new();
    for line in unistd.lines() {
        let line = line.trim();
        let Some(open) = line.find('(') else { continue };
        let (mac, rest) = line.split_at(open);
        let args: Vec<&str> = rest
            .trim_start_matches('(')
            .trim_end_matches(')')
            .split(',')
            .map(str::trim)
            .collect();
        let handler = match (mac, args.len()) {
            ("__lkl__SYSCALL", 2) | ("__lkl__SC_COMP", 3) => args[1],
            ("__lkl__SC_3264", 3) | ("__lkl__SC_COMP_3264", 4) => args[2],
            _ => continue,
        };
        if let Some(&nr) = numbers.get(args[0]) {
            handlers.insert(nr, handler.to_string());
        }
    }
    // signatures: "_name<TAB>nargs<TAB>type, arg, ..."
    let mut signatures = BTreeMap::new();
    for line in defs.lines() {
        let mut cols = line.splitn(3, '\t');
        let (Some(name), Some(_), args) = (cols.next(), cols.next(), cols.next()) else {
            continue;
        };
        let parts: Vec<&str> = args
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .collect();
        let args: Vec<(String, String)> = parts
            .chunks(2)
            .filter(|c| c.len() == 2)
            .map(|c| (c[0].to_string(), c[1].to_string()))
            .collect();
        signatures.insert(format!("sys{name}"), args);
    }

    let mut out = String::new();
    out.push_str("pub static SYSCALL_DEFS: &[SyscallDef] = &[\n");
    for (nr, handler) in &handlers {
        let Some(args) = signatures.get(handler) else {
            continue;
        };
        let name = handler.trim_start_matches("sys_");
        write!(out, "    SyscallDef {{ nr: {nr}, name: {name:?}, args: &[").unwrap();
        for (ty, arg) in args {
            write!(out, "({ty:?}, {arg:?}), ").unwrap();
        }
        out.push_str("] },\n");
    }
    out.push_str("];\n");
    out
}

/// Runs `scripts/build-kernel.sh` and returns its output directory.
fn build_kernel(root: &Path) -> PathBuf {
    let script = root.join("scripts/build-kernel.sh");
    let output = Command::new("bash")
        .arg(&script)
        .stderr(std::process::Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    if !output.status.success() {
        panic!(
            "building the LKL kernel failed (see build-kernel's messages above); \
             run `bash scripts/build-kernel.sh` for the full log"
        );
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let dir = stdout.lines().last().unwrap_or_default().trim().to_string();
    let dir = PathBuf::from(dir);
    assert!(
        dir.join("lib/liblkl.a").is_file(),
        "build-kernel.sh printed {} but it holds no lib/liblkl.a",
        dir.display()
    );
    dir
}
