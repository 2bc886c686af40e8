//! The same `lkl-run` built inside the test crate, so the end-to-end tests can find it
//! through `CARGO_BIN_EXE_zp-lkl-run`.
fn main() {
    loader::cli::main()
}
