//! `liblkl-hijack.so`: loaded with `LD_PRELOAD` (see `bin/lkl-hijack.sh`),
//! it boots LKL before the program's `main` and serves the program's
//! network calls with LKL's TCP/IP stack, while files and everything else
//! stay on the host. (Cargo names the file `liblkl_hijack.so`; the build
//! also leaves a `liblkl-hijack.so` link beside it, see `build.rs`.)
//!
//! # Start and end
//! A constructor (`.init_array`) loads the configuration with
//! `lkl-hijack-config` (`LKL_HIJACK_CONFIG_FILE`, `./lkl-hijack.json`, the
//! `LKL_HIJACK_*` variables; unknown keys are warnings naming the key),
//! waits for Enter with `debug` 0x200, boots LKL with [`lkl_boot::start`]
//! (every interface, `singlecpu`, `boot_cmdline`, addresses, routes,
//! tables, `sysctl`, ...; the kernel's boot log only with `debug`), then
//! sleeps `delay_main`. A configuration or boot error is printed to
//! stderr and the process exits with status 1 before `main`. At exit an
//! `atexit` handler prints the `dump` files, pauses forever with `debug`
//! 0x100 (LKL stays up for inspection), and halts LKL.
//!
//! # The two fd spaces
//! LKL's descriptors are offered to the program as LKL's fd +
//! [`LKL_FD_OFFSET`] (512, upstream's split): an fd at or above 512 is
//! LKL's, one below is the host's. The soft `RLIMIT_NOFILE` is lowered to
//! 512 so that the host never hands out a descriptor that would look like
//! LKL's.
//!
//! # What is interposed
//! `socket` sends `AF_INET`, `AF_INET6`, `AF_NETLINK` and `AF_PACKET` to
//! LKL (other families, e.g. `AF_UNIX`, stay on the host; so do `pipe`,
//! `eventfd`, `socketpair` and every file). For LKL fds: `bind`,
//! `connect`, `listen`, `accept`, `accept4`, `getsockname`,
//! `getpeername`, `setsockopt`, `getsockopt`, `send`, `sendto`, `sendmsg`,
//! `sendmmsg`, `recv`, `recvfrom`, `recvmsg`, `recvmmsg`, `read`, `write`,
//! `readv`, `writev`, `pread`/`pread64`, `pwrite`/`pwrite64`, `close`,
//! `ioctl`, `fcntl`/`fcntl64`, `shutdown`, `dup`, `dup2`, `dup3`, and
//! glibc's fortified `__read_chk`, `__recv_chk`, `__recvfrom_chk`.
//! `sendfile`/`sendfile64` and `splice` with an LKL fd on either side are
//! copied here 64 KiB at a time, read on one kernel and written on the
//! other. Waiting: `poll`, `ppoll`, `select`, `pselect`,
//! `epoll_create`, `epoll_create1`, `epoll_ctl`, `epoll_wait`,
//! `epoll_pwait`, `epoll_pwait2`, `__poll_chk`, `__ppoll_chk`, over any
//! mix of host and LKL fds, through `lkl-fdmux` (a real wait on both
//! kernels, no polling rounds). Host fds go to the host kernel with
//! `syscall(2)`, so the library (and LKL's own host threads, which call
//! the same symbols) never recurse into LKL.
//!
//! # fork
//! A forked child has no LKL threads: in it, calls on LKL fds fail with
//! `EBADF` (`close` succeeds), new `AF_INET*` sockets fail with
//! `EAFNOSUPPORT`, and the exit handler leaves the parent's kernel alone.
//! A child that `exec`s a program loads this library again and boots a
//! kernel of its own.
//!
//! # Layouts
//! LKL's uapi (asm-generic) matches x86-64 Linux for `sockaddr*`, `iovec`,
//! `pollfd`, `msghdr`/`mmsghdr` (LKL's `user_msghdr`), `timespec` and
//! `epoll_event` (packed, 12 bytes), and for the `SOCK_*`/`O_*` flags, so
//! the program's pointers are passed through (checked at compile time).
//! LKL uses the generic system call table: `poll` is `ppoll`, `dup2` is
//! `dup3`, `send` and `recv` are `sendto` and `recvfrom`.
//!
//! `ioctl` and `fcntl` are variadic in C; they are defined here with one
//! `long` argument, which the x86-64 calling convention passes in the same
//! register as the variadic integer or pointer argument.

mod calls;
mod fds;
mod start;
mod wait;

pub use fds::LKL_FD_OFFSET;
