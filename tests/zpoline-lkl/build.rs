//! The tests' lkl-run is linked like the real one: see `loader/build/static_pie.rs`.

include!("../../loader/build/static_pie.rs");

fn main() {
    link_static_pie(&["zpl-lkl-run"]);
    println!("cargo:rerun-if-changed=../../loader/build/static_pie.rs");
}
