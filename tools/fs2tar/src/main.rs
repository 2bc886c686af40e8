//! `fs2tar`: a pax tar of a file system image (see the library's doc).

fn main() -> std::process::ExitCode {
    fs2tar::main_cli()
}
