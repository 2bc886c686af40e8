//! lklfuse, built inside the test crate so that its tests find it.

fn main() -> std::process::ExitCode {
    lklfuse::main()
}
