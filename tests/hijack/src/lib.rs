//! End-to-end test of the hijack library; see `tests/hijack.rs`.
