//! lklfuse: mount a file system image through FUSE, served by LKL.

fn main() {
    eprintln!("lklfuse: not built yet");
    std::process::exit(2);
}
