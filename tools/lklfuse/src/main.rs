//! lklfuse: mount a file system image through FUSE, served by LKL (see
//! the library crate and `docs/lklfuse.md`).

fn main() -> std::process::ExitCode {
    lklfuse::main()
}
