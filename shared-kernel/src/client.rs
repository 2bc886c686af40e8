//! The calling side: a thread claims a slot once, then posts each call in it and waits
//! for the answer, spinning briefly before it sleeps.
//!
//! Runs in the interposer's hook: no allocation, no locks; only atomics and raw system
//! calls, so that it also works in a fork child whose other threads are gone.

use core::sync::atomic::{AtomicBool, AtomicI32, AtomicUsize, Ordering};

use crate::futex;
use crate::window::{self, op, state, Window};

static BASE: AtomicUsize = AtomicUsize::new(0);
static SERVER: AtomicI32 = AtomicI32::new(0);
static HINT: AtomicUsize = AtomicUsize::new(0);
static SAID_GONE: AtomicBool = AtomicBool::new(false);

/// How long a caller spins for its answer before it sleeps.
const SPIN_NS: u64 = 30_000;
/// How long a sleeping caller waits before it checks that the kernel process lives.
const CHECK_MS: u64 = 200;

/// This process's window and kernel process, once known.
pub fn init(w: Window, server_pid: i32) {
    BASE.store(w.base(), Ordering::Release);
    SERVER.store(server_pid, Ordering::Release);
}

/// The window, if this process has one.
pub fn window() -> Option<Window> {
    match BASE.load(Ordering::Acquire) {
        0 => None,
        // SAFETY: BASE is only set by `init` to a mapped window.
        b => Some(unsafe { Window::at(b) }),
    }
}

/// The kernel process's pid (0: none).
pub fn server_pid() -> i32 {
    SERVER.load(Ordering::Acquire)
}

fn raw(nr: libc::c_long, a: [i64; 3]) -> i64 {
    // SAFETY: the callers pass plain integer system calls.
    let r = unsafe { libc::syscall(nr, a[0], a[1], a[2]) };
    if r < 0 {
        -i64::from(
            std::io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EIO),
        )
    } else {
        r
    }
}

/// Claims a free slot for the calling thread of process `pid` (the process whose
/// memory the thread runs in: a vfork child calls for its parent), with fork ticket
/// `ticket` (0: none). Returns its index, or `-EAGAIN` when every slot is taken.
pub fn claim(pid: i32, ticket: u64) -> Result<usize, i64> {
    let Some(w) = window() else {
        return Err(-i64::from(libc::ENETDOWN));
    };
    let start = HINT.load(Ordering::Relaxed);
    for k in 0..window::SLOTS {
        let i = (start + k) % window::SLOTS;
        let c = w.ctl(i);
        if c.state.load(Ordering::Relaxed) != state::FREE
            || c.state
                .compare_exchange(
                    state::FREE,
                    state::FILLING,
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                )
                .is_err()
        {
            continue;
        }
        HINT.store(i + 1, Ordering::Relaxed);
        c.pid.store(pid, Ordering::Relaxed);
        c.ppid
            .store(raw(libc::SYS_getppid, [0; 3]) as i32, Ordering::Relaxed);
        c.ticket.store(ticket, Ordering::Relaxed);
        c.retire.store(0, Ordering::Relaxed);
        let h = w.header();
        h.used.fetch_max(i as u32 + 1, Ordering::AcqRel);
        c.state.store(state::CLAIMED, Ordering::Release);
        h.doorbell.fetch_add(1, Ordering::SeqCst);
        futex::wake(&h.doorbell);
        return Ok(i);
    }
    Err(-i64::from(libc::EAGAIN))
}

/// [`call`]'s answer when the slot was retired (its process exec'd) before it took
/// the request: claim another and post again.
pub const STALE: i64 = i64::MIN;

/// Posts operation `opn` (`nr`, `args`) in slot `slot` and waits for the answer:
/// spinning while the serving thread runs on another CPU (at most [`SPIN_NS`]), else
/// (after a yield when it woke the serving thread on this CPU,
/// [`futex::yield_to_queued`]) asleep on the answer word.
/// `-ENETDOWN` when the kernel is gone, [`STALE`] when the slot is no longer served.
/// When `signalled` says a signal came while it waits, the kernel process is asked to
/// interrupt the call (a blocked call then returns `-EINTR`).
pub fn call(slot: usize, opn: u32, nr: i64, args: [i64; 6], signalled: &dyn Fn() -> bool) -> i64 {
    let Some(w) = window() else {
        return -i64::from(libc::ENETDOWN);
    };
    let c = w.ctl(slot);
    let live = || {
        matches!(
            c.state.load(Ordering::Acquire),
            state::CLAIMED | state::SERVED
        )
    };
    if !live() || c.retire.load(Ordering::Acquire) != 0 {
        return STALE;
    }
    c.op.store(opn, Ordering::Relaxed);
    c.nr.store(nr, Ordering::Relaxed);
    for (d, s) in c.args.iter().zip(args) {
        d.store(s, Ordering::Relaxed);
    }
    let before = c.done.load(Ordering::Relaxed);
    let s = c.seq.load(Ordering::Relaxed).wrapping_add(1);
    c.seq.store(s, Ordering::SeqCst);
    let mut woke = c.srv_wait.load(Ordering::SeqCst) != 0;
    if woke {
        futex::wake(&c.seq);
    }
    let mut asked = false;
    loop {
        let answered = || c.done.load(Ordering::Acquire) == s;
        if futex::spin_apart(SPIN_NS, &c.cli_cpu, &c.srv_cpu, answered) {
            return c.ret.load(Ordering::Relaxed);
        }
        if woke && futex::yield_to_queued(&c.cli_cpu, &c.srv_cpu) {
            woke = false;
            if answered() {
                return c.ret.load(Ordering::Relaxed);
            }
        }
        futex::asleep(&c.cli_cpu);
        if !asked && signalled() {
            asked = true;
            c.interrupt.store(s, Ordering::Release);
            let h = w.header();
            h.doorbell.fetch_add(1, Ordering::SeqCst);
            futex::wake(&h.doorbell);
        }
        c.cli_wait.store(1, Ordering::SeqCst);
        if c.done.load(Ordering::SeqCst) != s {
            futex::wait(&c.done, before, CHECK_MS);
        }
        c.cli_wait.store(0, Ordering::Relaxed);
        if c.done.load(Ordering::Acquire) == s {
            // Running again: the serving thread spins for the next request while
            // this thread runs on another CPU.
            c.cli_cpu.store(futex::this_cpu(), Ordering::Relaxed);
            return c.ret.load(Ordering::Relaxed);
        }
        if !live() {
            return STALE;
        }
        if gone(&w) {
            return -i64::from(libc::ENETDOWN);
        }
    }
}

/// Waits until the kernel process has exited, so that its devices are free: the tree's
/// last process calls this before it exits. At most two seconds, or a minute when
/// disks are mounted (the kernel process writes them back first, and the program's
/// caller may read the images as soon as the program has exited).
pub fn wait_server_gone() {
    let timeout_ms: i32 = if window().is_some_and(|w| !w.fs_view_is_empty()) {
        60_000
    } else {
        2000
    };
    let pid = server_pid();
    if pid <= 0 {
        return;
    }
    let fd = raw(libc::SYS_pidfd_open, [i64::from(pid), 0, 0]);
    if fd < 0 {
        return;
    }
    let mut pfd = libc::pollfd {
        fd: fd as i32,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: polling our pidfd, then closing it. Raw system calls: this runs with the
    // program's thread block, where libc's cancellation points would fault.
    unsafe {
        libc::syscall(libc::SYS_poll, &mut pfd as *mut libc::pollfd, 1, timeout_ms);
        libc::syscall(libc::SYS_close, fd);
    }
}

/// True when the kernel process has ended or is gone (said once on stderr).
fn gone(w: &Window) -> bool {
    let pid = server_pid();
    let dead = w.header().halted.load(Ordering::Acquire) != 0
        || (pid > 0 && raw(libc::SYS_kill, [i64::from(pid), 0, 0]) == -i64::from(libc::ESRCH));
    if dead && !SAID_GONE.swap(true, Ordering::Relaxed) {
        let msg = format!(
            "lkl-run: the kernel process (pid {pid}) is gone: calls to LKL fail with ENETDOWN\n"
        );
        // SAFETY: writing our message to stderr.
        unsafe { libc::syscall(libc::SYS_write, 2, msg.as_ptr(), msg.len()) };
    }
    dead
}

/// Slot `slot`'s data area as a byte slice ([`window::DATA_SIZE`] bytes).
///
/// # Safety
/// The calling thread must own `slot`, and no request may be in flight on it.
pub unsafe fn data(slot: usize) -> &'static mut [u8] {
    let w = window().expect("data() needs a window");
    // SAFETY: the slot's data area, owned by the caller (see above).
    unsafe { core::slice::from_raw_parts_mut(w.data(slot) as *mut u8, window::DATA_SIZE) }
}

/// Names of the operations, for messages.
pub fn op_name(o: u32) -> &'static str {
    match o {
        op::CALL => "call",
        op::FORK => "fork",
        op::BIND => "bind",
        op::SPAWN => "spawn",
        op::EXEC => "exec",
        op::EXEC_FAILED => "exec-failed",
        op::EXEC_DONE => "exec-done",
        op::EXIT => "exit",
        op::LEAVE => "leave",
        _ => "?",
    }
}
