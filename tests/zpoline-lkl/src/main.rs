//! End-to-end tests of zpoline backed by LKL live in `tests/`; this is `lkl-run` built
//! inside the test crate, so they find it through `CARGO_BIN_EXE_zpl-lkl-run`.
fn main() {
    loader::cli::main()
}
