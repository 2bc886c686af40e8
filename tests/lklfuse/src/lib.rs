//! End-to-end tests of lklfuse on real images.
