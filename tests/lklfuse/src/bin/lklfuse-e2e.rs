//! lklfuse under a test name, so that the end-to-end tests find it in a
//! fresh clone (`CARGO_BIN_EXE_lklfuse-e2e`).

fn main() -> std::process::ExitCode {
    lklfuse::main()
}
