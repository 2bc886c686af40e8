//! lkl-run is linked as a static PIE: see `build/static_pie.rs`.

include!("build/static_pie.rs");

fn main() {
    link_static_pie(&["lkl-run"]);
    println!("cargo:rerun-if-changed=build/static_pie.rs");
}
