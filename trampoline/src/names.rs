//! x86-64 system call names, indexed by number: generated at build time
//! (`build.rs`) from `syscall_64.tbl`, the kernel's own table.

include!(concat!(env!("OUT_DIR"), "/names.rs"));

/// The name of syscall `nr`, or `None` when it has none.
pub fn name(nr: u64) -> Option<&'static str> {
    NAMES.get(nr as usize).copied().filter(|n| !n.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_match_the_abi() {
        // A few numbers checked against the libc crate's.
        for (nr, want) in [
            (libc::SYS_read, "read"),
            (libc::SYS_rt_sigreturn, "rt_sigreturn"),
            (libc::SYS_clone3, "clone3"),
            (libc::SYS_openat2, "openat2"),
            (libc::SYS_futex_waitv, "futex_waitv"),
        ] {
            assert_eq!(name(nr as u64), Some(want));
        }
        assert_eq!(name(COUNT as u64), None);
        assert_eq!(name(u64::MAX), None);
    }

    #[test]
    fn unassigned_numbers_have_no_name() {
        // 387..=423 were never assigned on x86-64 (kept in step with the
        // other architectures' numbers).
        assert_eq!(name(400), None);
    }
}
