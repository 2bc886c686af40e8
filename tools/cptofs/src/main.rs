//! cptofs/cpfromfs: copy files into or out of a file system image through LKL.

fn main() {
    eprintln!("cptofs: not built yet");
    std::process::exit(2);
}
