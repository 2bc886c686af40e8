//! fs2tar: a pax tar of a file system image, read through LKL.

fn main() {
    eprintln!("fs2tar: not built yet");
    std::process::exit(2);
}
