//! Which kernel serves this process: the tree's shared one in the kernel process
//! (`lkl-shared-kernel`, the default of `lkl-run`), or a private LKL booted in this
//! process at its first call (`--private-kernel`).
//!
//! With the shared kernel, each thread of ours (each shadow's thread block, see
//! `world.rs`) claims a slot of the window at its first call and keeps it; a fork child
//! forgets its parent's slots (the generation below changes) and claims its own.

use core::cell::Cell;
use core::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, AtomicUsize, Ordering};

use lkl_shared_kernel::client;
use lkl_shared_kernel::window::op;

static SHARED: AtomicBool = AtomicBool::new(false);
/// Bumped in each fork child: slots claimed before belong to the parent.
static GENERATION: AtomicU64 = AtomicU64::new(1);
/// The fork ticket of this process's LKL process (0: none), for its first claim.
static TICKET: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// This thread block's slot and the generation it was claimed in.
    static SLOT: Cell<(u64, usize)> = const { Cell::new((0, 0)) };
}

/// True when the tree's shared kernel serves this process.
#[inline(always)]
pub(crate) fn shared() -> bool {
    SHARED.load(Ordering::Relaxed)
}

/// From now on the shared kernel serves this process.
pub(crate) fn set_shared() {
    SHARED.store(true, Ordering::Release);
    // The lkl crate's calls (lkl-fdmux's waits use them) go there too.
    lkl::set_remote(|nr, args| op(op::CALL, nr, args));
}

/// True in a fork child that cannot reach LKL (a private kernel stays the parent's).
#[inline(always)]
pub(crate) fn forked_without_lkl() -> bool {
    !shared() && trampoline::forked_child()
}

/// A vfork child that needed LKL as itself ([`own_process`]): its pid (0: none) and
/// its slot. The child writes them in its parent's memory while the parent waits; the
/// parent, resuming, finds a pid that is not its own and forgets them.
static VFORK_PID: AtomicI32 = AtomicI32::new(0);
static VFORK_SLOT: AtomicUsize = AtomicUsize::new(0);

/// Up to this many fds a vfork child's `dup2` gives LKL fds ([`vfork_dup`]).
const VFORK_FDS: usize = 64;
/// The vfork child's `dup2`s of LKL fds: (program fd + 1, LKL fd of its own process).
static VFORK_DUPS: [[AtomicI32; 2]; VFORK_FDS] =
    [const { [AtomicI32::new(0), AtomicI32::new(0)] }; VFORK_FDS];

/// The vfork child's own slot, when it has one (see [`VFORK_PID`]).
fn vfork_slot() -> Option<usize> {
    let p = VFORK_PID.load(Ordering::Acquire);
    if p == 0 {
        return None;
    }
    if i64::from(p) == getpid() {
        return Some(VFORK_SLOT.load(Ordering::Acquire));
    }
    // The child is gone (exec'd or exited): this is the parent again.
    VFORK_PID.store(0, Ordering::Release);
    None
}

/// In our world, in a vfork child (which calls LKL as its parent until it execs): from
/// now on it calls as an LKL process of its own, a copy of its parent's made by the
/// kernel process for its pid (as for a fork it was not told of), through a slot of
/// its own; for the calls that change what a process owns (`chdir`, `dup2` of an LKL
/// fd), which must not change the parent's.
pub(crate) fn own_process() -> Result<(), i64> {
    if !shared() {
        return Err(-i64::from(libc::EBADF));
    }
    if vfork_slot().is_some() {
        return Ok(());
    }
    let pid = getpid();
    let s = client::claim(pid as i32, 0)?;
    for d in &VFORK_DUPS {
        d[0].store(0, Ordering::Relaxed);
    }
    VFORK_SLOT.store(s, Ordering::Release);
    VFORK_PID.store(pid as i32, Ordering::Release);
    Ok(())
}

/// In a vfork child with its own process: program fd `fd` now stands for LKL fd
/// `lkl` of that process, for the exec to hand on (the fd table is the parent's).
/// False when no room is left.
pub(crate) fn vfork_dup(fd: i64, lkl: i64) -> bool {
    for d in &VFORK_DUPS {
        let h = d[0].load(Ordering::Relaxed);
        if h == 0 || i64::from(h) == fd + 1 {
            d[1].store(lkl as i32, Ordering::Relaxed);
            d[0].store(fd as i32 + 1, Ordering::Relaxed);
            return true;
        }
    }
    false
}

/// The LKL fd a vfork child's `dup2` gave program fd `fd`, if any.
fn vfork_dup_of(fd: i64) -> Option<i64> {
    VFORK_DUPS.iter().find_map(|d| {
        (i64::from(d[0].load(Ordering::Relaxed)) == fd + 1)
            .then(|| i64::from(d[1].load(Ordering::Relaxed)))
    })
}

/// In our world: this thread's slot, claimed at its first call (for the process
/// whose memory this is: a vfork child calls as its parent until it execs, unless it
/// has a process of its own, [`own_process`]). Never inlined: the compiler takes the
/// thread pointer for constant within a function, and a caller may have swapped `%fs`.
#[inline(never)]
fn slot() -> Result<usize, i64> {
    if let Some(s) = vfork_slot() {
        return Ok(s);
    }
    let g = GENERATION.load(Ordering::Acquire);
    SLOT.with(|c| {
        let (cg, s) = c.get();
        if cg == g {
            return Ok(s);
        }
        let s = client::claim(crate::dispatch::owner_pid(), TICKET.load(Ordering::Acquire))?;
        c.set((g, s));
        Ok(s)
    })
}

/// In our world: forgets this thread's slot (the kernel process retired it). Never
/// inlined, like [`slot`].
#[inline(never)]
pub(crate) fn drop_slot() {
    SLOT.with(|c| c.set((0, 0)));
}

/// Set when a thread of this process called `exit_group`: the tree's last process
/// ends the kernel process then, and its other threads, which `exit_group` is about to
/// end, must not find the kernel gone.
/// The thread id of that thread (0: the process is not ending).
static EXITING: AtomicI32 = AtomicI32::new(0);

fn gettid() -> i32 {
    // SAFETY: gettid has no arguments.
    unsafe { crate::helpers::sys(libc::SYS_gettid, [0; 6]) as i32 }
}

/// The process is ending (`exit_group` on this thread): from now on only this thread
/// reaches the kernel process; other threads that call LKL wait to be ended with the
/// process. False when another thread began the ending already.
pub(crate) fn exiting() -> bool {
    EXITING
        .compare_exchange(0, gettid(), Ordering::AcqRel, Ordering::Acquire)
        .is_ok()
}

/// At the entry of a call that may reach LKL, before any lock of ours is taken: a
/// thread of a process that another thread is ending sleeps until `exit_group` ends
/// it, so that it neither finds the kernel process gone nor holds what the ending
/// thread needs.
#[inline(always)]
pub(crate) fn stop_if_ending() {
    let e = EXITING.load(Ordering::Acquire);
    if e != 0 && e != gettid() {
        park_until_exit();
    }
}

/// The process ends (after [`exiting`]): it says so to the kernel process, and the last
/// process of the tree waits here until the kernel process, and with it its devices
/// and its images' locks, are gone.
pub(crate) fn leave() {
    let (last, _) = crate::wait::in_world(|| op(op::EXIT, 0, [0; 6]));
    if last == 1 {
        client::wait_server_gone();
    }
}

/// A thread of an ending process that calls LKL: it sleeps until `exit_group` ends it.
#[cold]
fn park_until_exit() -> ! {
    let word = core::sync::atomic::AtomicU32::new(0);
    loop {
        lkl_shared_kernel::futex::wait(&word, 0, 0);
    }
}

/// In our world: `post` on this thread's slot, on a new one if the kernel process
/// retired it meanwhile.
fn on_slot(mut post: impl FnMut(usize) -> i64) -> i64 {
    for _ in 0..2 {
        let s = match slot() {
            Ok(s) => s,
            Err(e) => return e,
        };
        let r = post(s);
        if r != client::STALE {
            return r;
        }
        drop_slot();
    }
    -i64::from(libc::ENETDOWN)
}

/// In our world: whether a signal was handled (deferred) since the call began.
fn signalled() -> bool {
    crate::world::peek_signals() != 0
}

/// In our world: the shared kernel's operation `o` on this thread's slot.
pub(crate) fn op(o: u32, nr: i64, args: [i64; 6]) -> i64 {
    on_slot(|s| client::call(s, o, nr, args, &signalled))
}

/// In our world: LKL system call `nr` (LKL's number) on `args`, from whichever kernel
/// serves this process.
#[inline(always)]
pub(crate) fn call(nr: i64, mut args: [i64; 6]) -> i64 {
    if shared() {
        on_slot(|slot| {
            // SAFETY: the slot is this thread's, no request in flight.
            let data = unsafe { client::data(slot) };
            crate::marshal::call(nr, args, Some(data), |nr, a| {
                client::call(slot, op::CALL, nr, a, &signalled)
            })
        })
    } else {
        // SAFETY: the callers pass the program's or our own valid buffers (we are in
        // our world); LKL runs in this address space.
        unsafe { lkl_sys::lkl_syscall(nr, args.as_mut_ptr()) }
    }
}

/// [`call`] without copying arguments through the slot's data area (the kernel process
/// reaches our memory itself): for calls made while the data area holds the fd table
/// an exec hands on ([`fd_pairs`]).
fn call_direct(nr: i64, mut args: [i64; 6]) -> i64 {
    if shared() {
        on_slot(|slot| client::call(slot, op::CALL, nr, args, &signalled))
    } else {
        // SAFETY: as in `call`.
        unsafe { lkl_sys::lkl_syscall(nr, args.as_mut_ptr()) }
    }
}

/// In our world: this thread's slot's data area as the fd table an exec hands on.
fn fd_pairs() -> Result<&'static mut [[i32; 2]], i64> {
    let s = slot()?;
    let w = client::window().ok_or(-i64::from(libc::ENETDOWN))?;
    // SAFETY: the slot is this thread's and no request is in flight (we are between
    // calls).
    Ok(unsafe { w.fd_pairs(s) })
}

/// In a fork child (program world, one thread): the parent's slots and locks are not
/// ours; the LKL process made for this child is `ticket`'s.
pub(crate) fn after_fork(ticket: u64) {
    TICKET.store(ticket, Ordering::Release);
    GENERATION.fetch_add(1, Ordering::AcqRel);
    crate::world::after_fork();
    crate::dispatch::set_owner_pid();
}

/// A fork-like call in a process of the shared kernel's tree: the child's LKL process,
/// a copy of ours, is made first (so it copies the fd table as it is at the fork),
/// then bound to the child's pid once known.
pub(crate) fn fork(nr: u64, args: &[u64; 6]) -> i64 {
    let (ticket, _) = crate::wait::in_world(|| op(op::FORK, 0, [0; 6]));
    // SAFETY: the program's own fork-like call; both processes return here.
    let r = unsafe { trampoline::syscall6(nr, *args) };
    if r == 0 {
        after_fork(ticket.max(0) as u64);
        // This thread's mixed-wait helper thread stayed in the parent.
        let _ = crate::wait::in_world(|| {
            lkl_fdmux::forget_waiter_after_fork();
            0
        });
        return 0;
    }
    if ticket > 0 {
        let child = r.max(0);
        let _ = crate::wait::in_world(|| op(op::BIND, 0, [ticket, child, 0, 0, 0, 0]));
    }
    r
}

/// This process's pid.
fn getpid() -> i64 {
    // SAFETY: getpid has no arguments.
    unsafe { crate::helpers::sys(libc::SYS_getpid, [0; 6]) }
}

/// Before an exec: a vfork child gets its own LKL process (a copy of its parent's),
/// then the LKL fds that survive the exec (not close-on-exec in LKL) are handed to the
/// kernel process for the new image, their placeholders made to survive it too.
pub(crate) fn before_exec() {
    if !shared() {
        return;
    }
    let pid = getpid();
    let vfork = crate::dispatch::vfork_child();
    let _ = crate::wait::in_world(|| {
        let own = vfork && vfork_slot().is_some();
        if vfork && !own && op(op::SPAWN, 0, [pid, 0, 0, 0, 0, 0]) < 0 {
            return 0;
        }
        let Ok(pairs) = fd_pairs() else {
            return 0;
        };
        let mut n = 0usize;
        let dups = VFORK_DUPS.iter().filter(|_| own).filter_map(|d| {
            let h = i64::from(d[0].load(Ordering::Relaxed)) - 1;
            (h >= 0).then(|| (h, i64::from(d[1].load(Ordering::Relaxed))))
        });
        let table =
            crate::fds::in_range(0, u64::MAX).filter(|&(h, _)| !own || vfork_dup_of(h).is_none());
        for (h, l) in table.chain(dups) {
            if vfork
                && !crate::fds::is_placeholder(h)
                && !crate::passthrough::still_same(h, l, call_direct)
            {
                // A vfork child closed or replaced it (our table is its parent's).
                continue;
            }
            let fl = call(
                lkl_sys::__lkl__NR3264_fcntl as i64,
                [l, i64::from(libc::F_GETFD), 0, 0, 0, 0],
            );
            if fl < 0 {
                continue;
            }
            let keep = fl & i64::from(libc::FD_CLOEXEC) == 0;
            // SAFETY: setting the close-on-exec flag of our placeholder.
            unsafe {
                crate::helpers::sys(
                    libc::SYS_fcntl,
                    [
                        h as u64,
                        libc::F_SETFD as u64,
                        if keep { 0 } else { libc::FD_CLOEXEC as u64 },
                        0,
                        0,
                        0,
                    ],
                )
            };
            if keep && n < pairs.len() {
                pairs[n] = [h as i32, l as i32];
                n += 1;
            }
        }
        op(op::EXEC, 0, [pid, n as i64, 0, 0, 0, 0])
    });
}

/// The exec announced by [`before_exec`] failed.
pub(crate) fn exec_failed() {
    if !shared() {
        return;
    }
    let pid = getpid();
    let _ = crate::wait::in_world(|| op(op::EXEC_FAILED, 0, [pid, 0, 0, 0, 0, 0]));
}

/// At the start of an exec'd image (lkl-run's own thread, before the program): the
/// kernel process closes the close-on-exec LKL fds and gives back the table of the
/// others, which become this image's LKL fds again (an LKL fd whose placeholder is
/// gone is closed). The slot used for it is given back.
pub(crate) fn exec_done() -> i64 {
    let n = op(op::EXEC_DONE, 0, [0; 6]);
    if n > 0 {
        if let Ok(pairs) = fd_pairs() {
            for &[h, l] in &pairs[..(n as usize).min(pairs.len())] {
                let (h, l) = (i64::from(h), i64::from(l));
                if crate::fds::is_placeholder(h) {
                    crate::fds::set(h, Some(l));
                } else if crate::passthrough::still_same(h, l, call_direct) {
                    // A passthrough fd: the host file came through the exec.
                    crate::passthrough::kept(h, l);
                } else {
                    call(lkl_sys::__lkl__NR_close as i64, [l, 0, 0, 0, 0, 0]);
                }
            }
        }
    }
    // This thread (lkl-run's own) makes no more calls: its slot goes.
    op(op::LEAVE, 0, [0; 6]);
    drop_slot();
    n
}
