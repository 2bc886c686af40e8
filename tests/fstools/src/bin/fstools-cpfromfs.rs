//! cpfromfs, built inside the test crate so that its tests find it.

fn main() -> std::process::ExitCode {
    cptofs::main_with(cptofs::Mode::FromFs)
}
