//! fs2tar, built inside the test crate so that its tests find it
//! (`CARGO_BIN_EXE_fstools-fs2tar`).

fn main() -> std::process::ExitCode {
    fs2tar::main_cli()
}
