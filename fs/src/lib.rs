//! Files inside LKL: open an image, detect its file system, mount it, and walk, read and write its files.
