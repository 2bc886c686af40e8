//! Generates the raw bindings from the kernel's own headers.
//!
//! Stage one (before the kernel build is wired in): the host operations
//! table straight from `linux/arch/lkl/include/uapi/asm/host_ops.h`.
use std::env;
use std::path::PathBuf;

fn main() {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let header = manifest.join("../linux/arch/lkl/include/uapi/asm/host_ops.h");
    println!("cargo:rerun-if-changed={}", header.display());
    let bindings = bindgen::Builder::default()
        .header(header.to_string_lossy())
        .use_core()
        .layout_tests(false)
        .generate()
        .expect("bindgen failed on host_ops.h");
    let out = PathBuf::from(env::var("OUT_DIR").unwrap());
    bindings.write_to_file(out.join("host_ops.rs")).unwrap();
}
