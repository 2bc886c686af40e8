//! The crate's error types: [`Error`] for the library itself and [`Errno`]
//! for what a system call inside the kernel returned.

use std::fmt;

/// Everything that can go wrong in this crate outside a system call.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `boot` was called while a kernel is running, or after one ran: LKL
    /// keeps its state in statics and boots once per process.
    #[error("cannot boot: a kernel was already booted in this process ({state})")]
    AlreadyBooted {
        /// What the kernel is doing now (`booting`, `running`, `halted`, ...).
        state: &'static str,
    },
    /// A boot option that cannot be turned into a command line.
    #[error("invalid boot option {option}: {reason}")]
    InvalidOption {
        /// The option's name.
        option: &'static str,
        /// Why it was refused.
        reason: String,
    },
    /// `lkl_init` refused the host operations table.
    #[error("lkl_init refused the host operations: {0}")]
    Init(Errno),
    /// `lkl_start_kernel` failed; the kernel cannot be booted again.
    #[error("kernel failed to boot with command line {cmdline:?}: {errno}")]
    Boot {
        /// The full command line that was passed.
        cmdline: String,
        /// What `lkl_start_kernel` returned.
        errno: Errno,
    },
    /// `lkl_sys_halt` failed.
    #[error("kernel halt failed: {0}")]
    Halt(Errno),
    /// After halt, host threads that the library created were still alive.
    #[error(
        "after halt, {threads} kernel host threads and {timers} timer threads were not joined"
    )]
    ThreadsLeaked {
        /// Threads made by `thread_create` and not joined.
        threads: usize,
        /// Timer threads not joined by `timer_free`.
        timers: usize,
    },
    /// An MMIO window size that is zero or too large.
    #[error("invalid mmio window size {size:#x}: must be 1..={max:#x} bytes")]
    MmioSize {
        /// The size asked for.
        size: u64,
        /// The largest size allowed.
        max: u64,
    },
    /// No room is left in the fake physical range for another window.
    #[error("no free mmio window of {size:#x} bytes left in the device address range")]
    MmioExhausted {
        /// The (rounded) size asked for.
        size: u64,
    },
    /// No window starts at this address.
    #[error("no mmio window registered at {base:#x}")]
    MmioNotRegistered {
        /// The address given.
        base: u64,
    },
}

/// A positive Linux error number returned by a system call inside the
/// kernel (the kernel returns `-errno`; the wrappers turn it into this).
///
/// The numbers and names are the kernel's (`lkl_sys::LKL_E*`, from its
/// uapi headers). They are the asm-generic Linux ones, which on x86-64 are
/// also the host's, so the description comes from the host's `strerror`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, thiserror::Error)]
#[error("{} ({})", self.name(), self.description())]
pub struct Errno(pub i32);

macro_rules! errnos {
    ($($name:ident = $lkl:ident),* $(,)?) => {
        impl Errno {
            $(
                #[doc = concat!("`", stringify!($name), "`")]
                pub const $name: Errno = Errno(lkl_sys::$lkl as i32);
            )*

            /// The symbolic name (`"ENOENT"`), or `"E?"` for an unknown number.
            pub fn name(self) -> &'static str {
                // Not a `match`: some names share a number (EAGAIN, EWOULDBLOCK).
                $(
                    if self == Errno::$name {
                        return stringify!($name);
                    }
                )*
                "E?"
            }
        }
    };
}

errnos! {
    EPERM = LKL_EPERM, ENOENT = LKL_ENOENT, ESRCH = LKL_ESRCH, EINTR = LKL_EINTR,
    EIO = LKL_EIO, ENXIO = LKL_ENXIO, E2BIG = LKL_E2BIG, ENOEXEC = LKL_ENOEXEC,
    EBADF = LKL_EBADF, ECHILD = LKL_ECHILD, EAGAIN = LKL_EAGAIN, ENOMEM = LKL_ENOMEM,
    EACCES = LKL_EACCES, EFAULT = LKL_EFAULT, ENOTBLK = LKL_ENOTBLK, EBUSY = LKL_EBUSY,
    EEXIST = LKL_EEXIST, EXDEV = LKL_EXDEV, ENODEV = LKL_ENODEV, ENOTDIR = LKL_ENOTDIR,
    EISDIR = LKL_EISDIR, EINVAL = LKL_EINVAL, ENFILE = LKL_ENFILE, EMFILE = LKL_EMFILE,
    ENOTTY = LKL_ENOTTY, ETXTBSY = LKL_ETXTBSY, EFBIG = LKL_EFBIG, ENOSPC = LKL_ENOSPC,
    ESPIPE = LKL_ESPIPE, EROFS = LKL_EROFS, EMLINK = LKL_EMLINK, EPIPE = LKL_EPIPE,
    EDOM = LKL_EDOM, ERANGE = LKL_ERANGE, EDEADLK = LKL_EDEADLK,
    ENAMETOOLONG = LKL_ENAMETOOLONG, ENOLCK = LKL_ENOLCK, ENOSYS = LKL_ENOSYS,
    ENOTEMPTY = LKL_ENOTEMPTY, ELOOP = LKL_ELOOP, ENOMSG = LKL_ENOMSG, EIDRM = LKL_EIDRM,
    ENOSTR = LKL_ENOSTR, ENODATA = LKL_ENODATA, ETIME = LKL_ETIME, ENOSR = LKL_ENOSR,
    ENOLINK = LKL_ENOLINK, EPROTO = LKL_EPROTO, EBADMSG = LKL_EBADMSG,
    EOVERFLOW = LKL_EOVERFLOW, EILSEQ = LKL_EILSEQ, EUSERS = LKL_EUSERS,
    ENOTSOCK = LKL_ENOTSOCK, EDESTADDRREQ = LKL_EDESTADDRREQ, EMSGSIZE = LKL_EMSGSIZE,
    EPROTOTYPE = LKL_EPROTOTYPE, ENOPROTOOPT = LKL_ENOPROTOOPT,
    EPROTONOSUPPORT = LKL_EPROTONOSUPPORT, ESOCKTNOSUPPORT = LKL_ESOCKTNOSUPPORT,
    EOPNOTSUPP = LKL_EOPNOTSUPP, EPFNOSUPPORT = LKL_EPFNOSUPPORT,
    EAFNOSUPPORT = LKL_EAFNOSUPPORT, EADDRINUSE = LKL_EADDRINUSE,
    EADDRNOTAVAIL = LKL_EADDRNOTAVAIL, ENETDOWN = LKL_ENETDOWN, ENETUNREACH = LKL_ENETUNREACH,
    ENETRESET = LKL_ENETRESET, ECONNABORTED = LKL_ECONNABORTED, ECONNRESET = LKL_ECONNRESET,
    ENOBUFS = LKL_ENOBUFS, EISCONN = LKL_EISCONN, ENOTCONN = LKL_ENOTCONN,
    ESHUTDOWN = LKL_ESHUTDOWN, ETOOMANYREFS = LKL_ETOOMANYREFS, ETIMEDOUT = LKL_ETIMEDOUT,
    ECONNREFUSED = LKL_ECONNREFUSED, EHOSTDOWN = LKL_EHOSTDOWN,
    EHOSTUNREACH = LKL_EHOSTUNREACH, EALREADY = LKL_EALREADY, EINPROGRESS = LKL_EINPROGRESS,
    ESTALE = LKL_ESTALE, EDQUOT = LKL_EDQUOT, ECANCELED = LKL_ECANCELED,
    EOWNERDEAD = LKL_EOWNERDEAD, ENOTRECOVERABLE = LKL_ENOTRECOVERABLE,
}

impl Errno {
    /// The largest value the kernel returns as `-errno` (`MAX_ERRNO`).
    pub const MAX: i32 = 4095;

    /// The human description (`"No such file or directory"`).
    pub fn description(self) -> String {
        let text = std::io::Error::from_raw_os_error(self.0).to_string();
        // std appends " (os error N)"; the name already says which one.
        match text.rfind(" (os error ") {
            Some(at) => text[..at].to_owned(),
            None => text,
        }
    }

    /// Splits a raw system call return value: `-4095..=-1` is an error,
    /// anything else a result.
    pub fn result(ret: libc::c_long) -> Result<libc::c_long, Errno> {
        if (-(Self::MAX as libc::c_long)..0).contains(&ret) {
            Err(Errno(-ret as i32))
        } else {
            Ok(ret)
        }
    }
}

impl fmt::Debug for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Errno({} = {})", self.name(), self.0)
    }
}

impl From<Errno> for std::io::Error {
    fn from(e: Errno) -> Self {
        std::io::Error::from_raw_os_error(e.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_name_and_description() {
        assert_eq!(Errno::ENOENT.name(), "ENOENT");
        assert_eq!(Errno(libc::EWOULDBLOCK).name(), "EAGAIN");
        assert_eq!(Errno(9999).name(), "E?");
        assert_eq!(Errno::ENOENT.description(), "No such file or directory");
        assert_eq!(
            Errno::ENOSYS.to_string(),
            "ENOSYS (Function not implemented)"
        );
        assert_eq!(format!("{:?}", Errno::EBADF), "Errno(EBADF = 9)");
    }

    #[test]
    fn raw_results_split_at_max_errno() {
        assert_eq!(Errno::result(5), Ok(5));
        assert_eq!(Errno::result(0), Ok(0));
        assert_eq!(Errno::result(-2), Err(Errno::ENOENT));
        assert_eq!(Errno::result(-4095), Err(Errno(4095)));
        // Large "negative" values are results (addresses), not errors.
        assert_eq!(Errno::result(-4096), Ok(-4096));
    }

    #[test]
    fn error_messages_carry_context() {
        let e = Error::Boot {
            cmdline: "mem=1M".into(),
            errno: Errno::ENOMEM,
        };
        assert_eq!(
            e.to_string(),
            "kernel failed to boot with command line \"mem=1M\": ENOMEM (Cannot allocate memory)"
        );
    }
}
