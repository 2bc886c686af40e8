//! `lkl-run`. No Rust runtime set-up runs before [`loader::cli::main`] (`no_main`):
//! it would replace descriptors 0-2 that are LKL placeholders (an exec'd program whose
//! stdin is a file in LKL) with `/dev/null`, and change signal dispositions the program
//! must inherit (`SIGPIPE`).
#![cfg_attr(not(test), no_main)]

/// Called by the C runtime.
#[cfg(not(test))]
#[no_mangle]
pub extern "C" fn main(_argc: i32, _argv: *const *const u8) -> i32 {
    loader::cli::main();
    0
}
