//! End-to-end tests of fs2tar and cptofs/cpfromfs on real images.
