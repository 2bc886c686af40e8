//! End-to-end tests of LKL's virtio-net device; see `tests/netdev.rs`.
