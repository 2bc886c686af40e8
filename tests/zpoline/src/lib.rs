//! End-to-end tests of lkl-run --zpoline live in `tests/`.
