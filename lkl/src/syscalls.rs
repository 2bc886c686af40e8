//! Typed system call wrappers (in progress).
