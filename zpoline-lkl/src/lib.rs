//! The LKL backend of the zpoline interposer: which system calls go to LKL and which to the host.
