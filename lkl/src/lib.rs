//! Safe LKL API (in progress).
