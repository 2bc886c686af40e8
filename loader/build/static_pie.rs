// Links the named binaries of a package as static PIEs, with glibc's static archives.
//
// Included (`include!`) by the build scripts of every package that builds an lkl-run
// binary. lkl-run must not start through a dynamic loader of its own: ld.so obeys
// `LD_PRELOAD`, `LD_LIBRARY_PATH`, `LD_AUDIT`, `LD_TRACE_LOADED_OBJECTS` and the rest of
// the program's environment, which belong to the program's ld.so alone.
//
// rustc links a glibc binary statically only with `-C target-feature=+crt-static`, a
// flag that cargo can only give every crate of the build (the `.so` libraries of the
// workspace cannot be built with it). So the binary is linked with gcc's `-static-pie`
// (static start files, no interpreter), and the shared libraries rustc names
// (`-lgcc_s -lutil -lrt -lpthread -lm -ldl -lc`) are found first in a directory of
// linker scripts that stand for the static archives instead.

/// Links each of `bins` (binaries of the package being built) statically.
fn link_static_pie(bins: &[&str]) {
    let out = std::path::PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR is set"))
        .join("static-pie");
    std::fs::create_dir_all(&out).expect("creating OUT_DIR/static-pie");
    // glibc's libc.a holds libpthread, librt, libdl and libutil; libgcc_eh.a is the
    // static unwinder that libgcc_s.so would have been.
    let libc = "GROUP ( -l:libc.a -l:libgcc.a -l:libgcc_eh.a )\n";
    for (name, script) in [
        ("c", libc),
        ("gcc_s", libc),
        ("util", libc),
        ("rt", libc),
        ("pthread", libc),
        ("dl", libc),
        ("m", "GROUP ( -l:libm.a -l:libc.a )\n"),
    ] {
        std::fs::write(out.join(format!("lib{name}.so")), script)
            .expect("writing a linker script to OUT_DIR");
    }
    for bin in bins {
        println!("cargo:rustc-link-arg-bin={bin}=-static-pie");
        println!("cargo:rustc-link-arg-bin={bin}=-L{}", out.display());
    }
    println!("cargo:rerun-if-changed=build.rs");
}
