//! `cptofs`: copy host files into a file system image (see the crate doc
//! of the `cptofs` library; run under a name containing `cpfromfs` it
//! copies out instead, as upstream).

fn main() -> std::process::ExitCode {
    cptofs::main_with(cptofs::Mode::ToFs)
}
