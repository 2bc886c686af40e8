//! Leaves `liblkl-hijack.so` beside the library Cargo builds.
//!
//! Upstream's contract names the library `liblkl-hijack.so`, but Cargo
//! cannot put a hyphen in a library's file name and builds
//! `liblkl_hijack.so`. This script makes a relative symbolic link
//! `liblkl-hijack.so -> liblkl_hijack.so` in the profile directory
//! (`target/release`), three levels above `OUT_DIR`; it points at the
//! library once the build finishes. Failing to make it is not an error:
//! `bin/lkl-hijack.sh` finds either name.

use std::path::Path;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let Some(out) = std::env::var_os("OUT_DIR") else {
        return;
    };
    // OUT_DIR is PROFILE/build/lkl-hijack-HASH/out.
    let Some(profile) = Path::new(&out).ancestors().nth(3) else {
        return;
    };
    let link = profile.join("liblkl-hijack.so");
    if std::fs::symlink_metadata(&link).is_err() {
        let _ = std::os::unix::fs::symlink("liblkl_hijack.so", &link);
    }
}
