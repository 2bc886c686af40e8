//! The same `lkl-run` built inside the test crate, so the end-to-end tests can find it
//! through `CARGO_BIN_EXE_zp-lkl-run`.
//! Built like lkl-run itself: `no_main` (see `loader/src/main.rs`).
#![cfg_attr(not(test), no_main)]

/// Called by the C runtime.
#[cfg(not(test))]
#[no_mangle]
pub extern "C" fn main(_argc: i32, _argv: *const *const u8) -> i32 {
    loader::cli::main();
    0
}
