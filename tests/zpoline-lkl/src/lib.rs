//! End-to-end tests of zpoline backed by LKL: name resolution and networking through LKL.
