//! Raw bindings to LKL (in progress).
