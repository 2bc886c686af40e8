//! `cpfromfs`: copy files out of a file system image (the same program as
//! `cptofs`, built under the second name).

fn main() -> std::process::ExitCode {
    cptofs::main_with(cptofs::Mode::FromFs)
}
