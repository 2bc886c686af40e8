//! The kernel process: boots LKL, then serves the tree until its last process ends.
//!
//! Threads: the *doorbell* thread (the process's first) attaches a serving thread to
//! each newly claimed slot; each *slot thread* joins the LKL process of its caller's
//! pid and answers its requests; the *reaper* waits on a pidfd per process of the tree
//! and ends the LKL process of each that dies. When no process is left (or the last
//! one says it ends, [`op::EXIT`]), the kernel process exits, which releases the devices
//! with the kernel. With disks (the config's `disks`, `--root`, `--mount`), it first
//! ends every LKL process of the tree and leaves each image clean ([`end`]); it does the
//! same on `SIGTERM`.

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use core::sync::atomic::Ordering;

use crate::window::{self, op, state, Window};
use crate::{futex, kapi, Error, Spec};

/// How long a slot thread spins for the next request before it sleeps.
const SPIN_NS: u64 = 50_000;
/// How long an LKL process made for a fork waits for its child once the parent died
/// before it could say the child's pid.
const ORPHAN_TICKET: Duration = Duration::from_secs(5);

/// What [`spawn`] started.
#[derive(Debug)]
pub struct Started {
    /// Where the tree's processes find it.
    pub spec: Spec,
    /// The window, mapped in the caller too.
    pub window: Window,
    /// Warnings of the boot, for the caller to print.
    pub warnings: Vec<String>,
}

/// Starts the kernel process for the tree whose first process is the caller: it boots
/// LKL from `config` and serves the tree; this returns once the kernel runs, with the
/// boot's error if it failed. The kernel process is not the caller's child (it is
/// detached in a session of its own), so the program never waits for it. Call while
/// the caller has one thread. `meanwhile` runs on the caller's thread while the kernel
/// process boots: the caller's own preparation that needs no kernel.
///
/// # Errors
/// The boot's error (naming the key at fault), or a host failure.
pub fn spawn(
    config: &lkl_hijack_config::Config,
    meanwhile: &mut dyn FnMut(),
) -> Result<Started, Error> {
    let (win, memfd) = Window::create()?;
    let mut p = [0i32; 2];
    // SAFETY: pipe2 into our array.
    if unsafe { libc::pipe2(p.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(Error::os("pipe for the kernel process"));
    }
    // SAFETY: getpid has no arguments.
    let first = unsafe { libc::getpid() };
    // SAFETY: the caller has one thread; the child only forks again and exits.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: as above; the grandchild becomes the kernel process.
        match unsafe { libc::fork() } {
            0 => {
                // SAFETY: closing the read end in the kernel process.
                unsafe { libc::close(p[0]) };
                serve(config, win, memfd, p[1], first)
            }
            // SAFETY: leaving without running the caller's exit handlers.
            _ => unsafe { libc::_exit(0) },
        }
    }
    // SAFETY: closing our write end.
    unsafe { libc::close(p[1]) };
    if pid < 0 {
        return Err(Error::os("fork of the kernel process"));
    }
    // Also while the intermediate child forks the kernel process.
    meanwhile();
    // SAFETY: reaping the intermediate child.
    unsafe { libc::waitpid(pid, core::ptr::null_mut(), 0) };
    let mut msg = Vec::new();
    // SAFETY: the pipe's read end is ours from here on (closed with the File).
    let mut from = std::fs::File::from(unsafe {
        <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(p[0])
    });
    let _ = std::io::Read::read_to_end(&mut from, &mut msg);
    drop(from);
    // SAFETY: closing our fd of the window's file (the kernel process keeps its own).
    unsafe { libc::close(memfd) };
    let text = String::from_utf8_lossy(&msg).into_owned();
    let mut lines = text.lines();
    match lines.next() {
        Some(l) if l.starts_with("OK ") => {
            let server: i32 = l[3..].trim().parse().unwrap_or(0);
            let warnings = lines
                .filter_map(|w| w.strip_prefix("W "))
                .map(String::from)
                .collect();
            crate::client::init(win, server);
            Ok(Started {
                spec: Spec {
                    pid: server,
                    fd: memfd,
                    addr: win.base(),
                },
                window: win,
                warnings,
            })
        }
        Some(l) if l.starts_with("ERR ") => Err(Error::Boot(text[4..].trim_end().to_owned())),
        _ => Err(Error::Boot(
            "the kernel process ended before LKL booted (the kernel's log, if any, is above): \
             check boot_cmdline (mem=, options the kernel refuses) and the interfaces, or run \
             with \"debug\": \"1\" to see the whole boot"
                .into(),
        )),
    }
}

/// Prints what the kernel process does, with `LKL_TREE_DEBUG` set.
macro_rules! debug {
    ($($t:tt)*) => {
        if std::env::var_os("LKL_TREE_DEBUG").is_some() {
            eprintln!("lkl-tree: {}", format_args!($($t)*));
        }
    };
}

/// A process of the tree.
struct Proc {
    /// Its LKL process.
    lkl: i64,
    pidfd: i32,
    /// It said it ends ([`op::EXIT`]).
    exiting: bool,
    /// Its fd table across an exec ([`op::EXEC`]).
    exec_table: Option<Vec<[i32; 2]>>,
}

/// An LKL process made for a fork, until its child's pid is known.
struct Ticket {
    lkl: i64,
    parent: i32,
    /// Set once the parent died without saying its child.
    deadline: Option<Instant>,
}

struct State {
    procs: HashMap<i32, Proc>,
    tickets: HashMap<u64, Ticket>,
    next_ticket: u64,
    epoll: i32,
    /// The kernel, never halted: it ends with the kernel process (see [`end`]).
    _kernel: lkl::Kernel,
}

static STATE: OnceLock<Mutex<State>> = OnceLock::new();
static WINDOW: OnceLock<Window> = OnceLock::new();
/// The mounted disks, unmounted by [`end`].
static DISKS: OnceLock<lkl_boot::Mounts> = OnceLock::new();

fn state() -> MutexGuard<'static, State> {
    STATE
        .get()
        .expect("kernel process state")
        .lock()
        .unwrap_or_else(|p| p.into_inner())
}

fn win() -> Window {
    *WINDOW.get().expect("kernel process window")
}

/// The kernel process's body: never returns.
fn serve(
    config: &lkl_hijack_config::Config,
    win: Window,
    memfd: i32,
    report: i32,
    first: i32,
) -> ! {
    detach(&[memfd, report]);
    if !config.disks.is_empty() {
        // Before any thread is made, so every thread has it blocked: the terminator
        // thread takes it (see `terminator`).
        block_sigterm();
    }
    // SAFETY: `report` is our pipe's write end, owned from here on.
    let mut out = std::fs::File::from(unsafe {
        <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(report)
    });
    lkl::set_shared_window(win.base(), window::WINDOW_SIZE);
    let t0 = Instant::now();
    let started = match lkl_boot::start(config) {
        Ok(s) => s,
        Err(e) => {
            let _ = write!(out, "ERR {e}");
            // SAFETY: leaving at once; nothing of ours needs cleaning (a failed start
            // unmounted what it had mounted).
            unsafe { libc::_exit(1) };
        }
    };
    for m in &started.disks.mounts {
        debug!(
            "mounted {}{} ({}, {}, /dev/{}) on {}{}",
            m.image.display(),
            m.partition
                .map(|p| format!(" partition {p}"))
                .unwrap_or_default(),
            m.fstype,
            if m.read_only {
                "read-only"
            } else {
                "read-write"
            },
            m.device,
            m.path.display(),
            if m.path == std::path::Path::new("/") {
                " (the root of every process of the tree)"
            } else {
                ""
            }
        );
    }
    let mut view = crate::FsView {
        root: config
            .disks
            .iter()
            .any(|d| d.path == std::path::Path::new("/")),
        mounts: config
            .disks
            .iter()
            .filter(|d| d.path != std::path::Path::new("/"))
            .map(|d| d.path.as_os_str().as_encoded_bytes().to_vec())
            // The volumes (host directories over virtio-fs) are LKL's paths too.
            .chain(
                config
                    .volumes
                    .iter()
                    .map(|v| v.path.as_os_str().as_encoded_bytes().to_vec()),
            )
            .collect(),
        volumes: config.volumes.iter().filter_map(view_volume).collect(),
    };
    let has_disks = !started.disks.is_empty();
    let _ = DISKS.set(started.disks);
    if !view.volumes.is_empty() && view.encode().is_none() {
        // The host directories do not fit beside the paths: the programs read the
        // volumes through LKL only.
        debug!("the volumes' host directories do not fit in the view: no passthrough reads");
        view.volumes.clear();
    }
    if !win.set_fs_view(&view) {
        let _ = write!(
            out,
            "ERR disks: the mount paths take more than {} bytes together: use shorter paths",
            crate::fsview::VIEW_BYTES - 5
        );
        end_disks();
        // SAFETY: as above; the disks were left clean.
        unsafe { libc::_exit(1) };
    }
    // SAFETY: epoll_create1 with a flag.
    let epoll = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    let _ = WINDOW.set(win);
    let _ = STATE.set(Mutex::new(State {
        procs: HashMap::new(),
        tickets: HashMap::new(),
        next_ticket: 1,
        epoll,
        _kernel: started.kernel,
    }));
    let p1 = kapi::proc_create(0);
    if p1 < 0 || !bind(&mut state(), first, p1) {
        let _ = write!(
            out,
            "ERR cannot make the program's process in LKL (error {})",
            -p1
        );
        end_disks();
        // SAFETY: as above.
        unsafe { libc::_exit(1) };
    }
    debug!("booted in {:?}", t0.elapsed());
    if let Some(d) = config.delay_main {
        std::thread::sleep(d);
    }
    // SAFETY: getpid has no arguments.
    let me = unsafe { libc::getpid() };
    let mut msg = format!("OK {me}\n");
    for w in &started.warnings {
        msg.push_str(&format!("W {w}\n"));
    }
    let _ = out.write_all(msg.as_bytes());
    drop(out);
    let _ = std::thread::Builder::new()
        .name("reaper".into())
        .spawn(reaper);
    if has_disks {
        let _ = std::thread::Builder::new()
            .name("terminator".into())
            .spawn(terminator);
    }
    doorbell()
}

/// What the programs need to read volume `v`'s files on the host themselves: its
/// canonical host directory and that directory's identity. `None` (no passthrough
/// for it, with a debug line) when the directory cannot be resolved or statted.
fn view_volume(v: &lkl_hijack_config::Volume) -> Option<crate::ViewVolume> {
    use std::os::unix::fs::MetadataExt;
    let dir = match std::fs::canonicalize(&v.dir) {
        Ok(d) => d,
        Err(e) => {
            debug!("volume {}: no passthrough reads: {e}", v.dir.display());
            return None;
        }
    };
    let meta = std::fs::metadata(&dir).ok()?;
    let view = crate::ViewVolume {
        path: v.path.as_os_str().as_encoded_bytes().to_vec(),
        host_dir: dir.as_os_str().as_encoded_bytes().to_vec(),
        dev: meta.dev(),
        ino: meta.ino(),
        read_only: v.read_only,
    };
    debug!(
        "volume {} on {}: passthrough reads from {}",
        v.dir.display(),
        v.path.display(),
        dir.display()
    );
    Some(view)
}

/// Blocks `SIGTERM` in the calling thread (and the threads it makes).
fn block_sigterm() {
    // SAFETY: a signal set of our own, then our thread's mask.
    unsafe {
        let mut set: libc::sigset_t = core::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, core::ptr::null_mut());
    }
}

/// With disks, `SIGTERM` (blocked in every thread) ends the kernel process in order,
/// as the tree's end does: the images are left clean, and the tree's calls to LKL
/// fail with `ENETDOWN` from then on.
fn terminator() {
    // SAFETY: waiting for a signal of our set.
    unsafe {
        let mut set: libc::sigset_t = core::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        let mut sig = 0;
        while libc::sigwait(&set, &mut sig) != 0 {}
    }
    debug!("SIGTERM: ending");
    end(None);
}

/// Leaves the caller's session and terminal, stdin and stdout on /dev/null, every fd
/// but stderr and `keep` closed, terminal signals ignored.
fn detach(keep: &[i32]) {
    // SAFETY: setsid, open, dup2, close and signal on our own process.
    unsafe {
        libc::setsid();
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
        if null >= 0 {
            libc::dup2(null, 0);
            libc::dup2(null, 1);
            if null > 2 {
                libc::close(null);
            }
        }
        for sig in [
            libc::SIGPIPE,
            libc::SIGINT,
            libc::SIGHUP,
            libc::SIGQUIT,
            libc::SIGTSTP,
        ] {
            libc::signal(sig, libc::SIG_IGN);
        }
    }
    let fds: Vec<i32> = std::fs::read_dir("/proc/self/fd")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    for fd in fds {
        if fd > 2 && !keep.contains(&fd) {
            // SAFETY: closing an fd inherited from the program's loader.
            unsafe { libc::close(fd) };
        }
    }
}

/// Binds host process `pid` to LKL process `lkl` and watches it. False (and `lkl`
/// ended) when `pid` is already gone.
fn bind(st: &mut State, pid: i32, lkl: i64) -> bool {
    // SAFETY: pidfd_open of a pid.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) } as i32;
    if pidfd < 0 {
        kapi::proc_kill(lkl);
        return false;
    }
    let mut ev = libc::epoll_event {
        events: libc::EPOLLIN as u32,
        u64: pid as u64,
    };
    // SAFETY: adding our pidfd to our epoll.
    unsafe { libc::epoll_ctl(st.epoll, libc::EPOLL_CTL_ADD, pidfd, &mut ev) };
    if let Some(old) = st.procs.insert(
        pid,
        Proc {
            lkl,
            pidfd,
            exiting: false,
            exec_table: None,
        },
    ) {
        forget(st, old);
    }
    true
}

/// Stops watching `p` and ends its LKL process.
fn forget(st: &State, p: Proc) {
    // SAFETY: removing and closing our pidfd.
    unsafe {
        libc::epoll_ctl(
            st.epoll,
            libc::EPOLL_CTL_DEL,
            p.pidfd,
            core::ptr::null_mut(),
        );
        libc::close(p.pidfd);
    }
    kapi::proc_kill(p.lkl);
}

/// Makes the threads serving `pid`'s slots leave (all but `except`).
fn retire_slots(pid: i32, except: usize) {
    let w = win();
    for i in 0..w.used_slots() {
        let c = w.ctl(i);
        if i != except
            && c.state.load(Ordering::Acquire) == state::SERVED
            && c.pid.load(Ordering::Relaxed) == pid
        {
            c.retire.store(1, Ordering::SeqCst);
            futex::wake(&c.seq);
        }
    }
}

/// Ends the kernel process, and with it the kernel: its devices (the tap) are
/// released as the process's fds close. No orderly halt: the kernel serves only
/// networking, whose state goes with it, and the tree's last process waits only for
/// this exit (see [`op::EXIT`]).
///
/// With disks, first every LKL process of the tree is ended and the serving threads
/// (all but slot `caller`'s, the caller's own, which has left its LKL process) leave,
/// then the images are left clean ([`lkl_boot::Mounts::unmount`]). Only the first
/// caller does this; a later one waits for its exit.
fn end(caller: Option<usize>) -> ! {
    win().header().halted.store(1, Ordering::SeqCst);
    if has_disks() {
        static ENDING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
        if ENDING.swap(true, Ordering::SeqCst) {
            loop {
                std::thread::sleep(Duration::from_secs(3600));
            }
        }
        end_tree(caller);
        end_disks();
    }
    lkl::report_volume_stats();
    // SAFETY: leaving at once: nothing of the kernel needs to outlive it.
    unsafe { libc::_exit(0) }
}

/// True when disks are mounted.
fn has_disks() -> bool {
    DISKS.get().is_some_and(|d| !d.is_empty())
}

/// How long [`end_tree`] waits for the serving threads to leave.
const LEAVE_TIMEOUT: Duration = Duration::from_secs(2);

/// Ends the LKL process of every process of the tree (and of every fork not yet
/// bound), and waits for the slot threads (but `caller`) to leave theirs, so that no
/// file of a disk is left open.
fn end_tree(caller: Option<usize>) {
    let lkls: Vec<i64> = {
        let mut st = state();
        let mut l: Vec<i64> = st.procs.values().map(|p| p.lkl).collect();
        l.extend(st.tickets.drain().map(|(_, t)| t.lkl));
        l
    };
    for l in lkls {
        kapi::proc_kill(l);
    }
    let w = win();
    let serving =
        |i: usize| Some(i) != caller && w.ctl(i).state.load(Ordering::Acquire) == state::SERVED;
    for i in (0..w.used_slots()).filter(|&i| serving(i)) {
        let c = w.ctl(i);
        c.retire.store(1, Ordering::SeqCst);
        futex::wake(&c.seq);
    }
    let start = Instant::now();
    while (0..w.used_slots()).any(serving) && start.elapsed() < LEAVE_TIMEOUT {
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Leaves every disk's image clean ([`lkl_boot::Mounts::unmount`]), from a thread
/// of its own: its LKL calls run as a fresh task sharing `host0`'s fs and
/// files, not as a thread of some process of the tree.
fn end_disks() {
    let Some(disks) = DISKS.get() else {
        return;
    };
    let t0 = Instant::now();
    let problems = std::thread::scope(|s| s.spawn(|| disks.unmount()).join().unwrap_or_default());
    for p in &problems {
        eprintln!("lkl-run: kernel process: {p}");
    }
    debug!("disks unmounted and written back in {:?}", t0.elapsed());
}

/// True when no process of the tree may still call LKL.
fn none_left(st: &State) -> bool {
    st.tickets.is_empty()
        && st.procs.values().all(|p| {
            p.exiting || {
                let mut pfd = libc::pollfd {
                    fd: p.pidfd,
                    events: libc::POLLIN,
                    revents: 0,
                };
                // SAFETY: polling our pidfd without waiting.
                unsafe { libc::poll(&mut pfd, 1, 0) == 1 }
            }
        })
}

/// The reaper thread: ends the LKL process of each process of the tree that dies.
fn reaper() {
    // Its kills are made as a thread of an LKL process of the kernel process's own.
    let own = kapi::proc_create(0);
    if own > 0 {
        kapi::thread_join_local(own);
    }
    let epoll = state().epoll;
    let mut evs = [libc::epoll_event { events: 0, u64: 0 }; 64];
    loop {
        let timeout = {
            let st = state();
            st.tickets
                .values()
                .filter_map(|t| t.deadline)
                .min()
                .map_or(-1, |d| {
                    d.saturating_duration_since(Instant::now()).as_millis() as i32 + 1
                })
        };
        // SAFETY: waiting on our epoll into our array.
        let n = unsafe { libc::epoll_wait(epoll, evs.as_mut_ptr(), evs.len() as i32, timeout) };
        let mut st = state();
        for ev in evs.iter().take(n.max(0) as usize) {
            let pid = ev.u64 as i32;
            debug!("process {pid} is gone");
            if let Some(p) = st.procs.remove(&pid) {
                retire_slots(pid, usize::MAX);
                forget(&st, p);
            }
            let now = Instant::now();
            for t in st.tickets.values_mut().filter(|t| t.parent == pid) {
                t.deadline.get_or_insert(now + ORPHAN_TICKET);
            }
        }
        let now = Instant::now();
        let expired: Vec<u64> = st
            .tickets
            .iter()
            .filter(|(_, t)| t.deadline.is_some_and(|d| d <= now))
            .map(|(&k, _)| k)
            .collect();
        for k in expired {
            if let Some(t) = st.tickets.remove(&k) {
                kapi::proc_kill(t.lkl);
            }
        }
        if st.procs.is_empty() && st.tickets.is_empty() {
            drop(st);
            end(None);
        }
    }
}

/// The doorbell thread: a serving thread for each newly claimed slot.
fn doorbell() -> ! {
    let w = win();
    let h = w.header();
    let own = kapi::proc_create(0);
    if own > 0 {
        // Its interrupts are made as a thread of the kernel process's own process.
        kapi::thread_join_local(own);
    }
    loop {
        let seen = h.doorbell.load(Ordering::SeqCst);
        let mut interrupting = false;
        for i in 0..w.used_slots() {
            let c = w.ctl(i);
            interrupting |= interrupt(c);
            if c.state.load(Ordering::Acquire) == state::CLAIMED
                && c.state
                    .compare_exchange(
                        state::CLAIMED,
                        state::SERVED,
                        Ordering::AcqRel,
                        Ordering::Relaxed,
                    )
                    .is_ok()
            {
                let spawned = std::thread::Builder::new()
                    .name(format!("slot{i}"))
                    .stack_size(256 << 10)
                    .spawn(move || slot_thread(i));
                if spawned.is_err() {
                    // No thread: the caller gets ENOMEM for what it posted.
                    answer_all(i, -i64::from(libc::ENOMEM));
                }
            }
        }
        // An interrupt may come before its call blocks: try again soon.
        futex::wait(&h.doorbell, seen, if interrupting { 5 } else { 1000 });
    }
}

/// Interrupts the call slot `c`'s caller asked to be interrupted, if it still runs;
/// true while it does (a call that has not blocked yet is not interrupted: try again).
fn interrupt(c: &window::Ctl) -> bool {
    let want = c.interrupt.load(Ordering::Acquire);
    if want == 0 {
        return false;
    }
    let tid = c.tid.load(Ordering::Acquire);
    if c.state.load(Ordering::Acquire) != state::SERVED
        || c.done.load(Ordering::Acquire) == want
        || c.seq.load(Ordering::Acquire) != want
        || tid <= 0
    {
        let _ = c
            .interrupt
            .compare_exchange(want, 0, Ordering::AcqRel, Ordering::Relaxed);
        return false;
    }
    kapi::thread_interrupt(tid);
    true
}

/// Answers slot `i`'s pending request with `ret` and frees the slot.
fn answer_all(i: usize, ret: i64) {
    let c = win().ctl(i);
    let s = c.seq.load(Ordering::Acquire);
    c.ret.store(ret, Ordering::Relaxed);
    c.done.store(s, Ordering::Release);
    futex::wake(&c.done);
    c.state.store(state::FREE, Ordering::Release);
}

/// The LKL process of host process `pid` (first contact of one of its threads).
fn proc_for(pid: i32, ticket: u64, ppid: i32) -> Result<i64, i64> {
    let mut st = state();
    if let Some(p) = st.procs.get(&pid) {
        return Ok(p.lkl);
    }
    let lkl = if let Some(t) = (ticket != 0).then(|| st.tickets.remove(&ticket)).flatten() {
        t.lkl
    } else {
        // Unknown: a fork we were not told of (a fork with a new stack): a copy of the
        // parent's process as it is now, or a fresh one.
        let parent = st.procs.get(&ppid).map_or(0, |p| p.lkl);
        let l = kapi::proc_create(parent);
        if l < 0 {
            return Err(l);
        }
        l
    };
    if bind(&mut st, pid, lkl) {
        Ok(lkl)
    } else {
        Err(-i64::from(libc::ESRCH))
    }
}

/// Serves slot `i` until retired.
fn slot_thread(i: usize) {
    let w = win();
    let c = w.ctl(i);
    let pid = c.pid.load(Ordering::Relaxed);
    debug!(
        "slot {i}: pid {pid} ticket {} ppid {}",
        c.ticket.load(Ordering::Relaxed),
        c.ppid.load(Ordering::Relaxed)
    );
    let joined = proc_for(
        pid,
        c.ticket.load(Ordering::Relaxed),
        c.ppid.load(Ordering::Relaxed),
    )
    .and_then(|lkl| {
        let t = kapi::thread_join(lkl, pid);
        if t < 0 {
            Err(t)
        } else {
            c.tid.store(t as i32, Ordering::Release);
            Ok(lkl)
        }
    });
    let mut last = c.done.load(Ordering::Acquire);
    let mut woke = false;
    while let Some(s) = next_request(c, last, woke) {
        let opn = c.op.load(Ordering::Relaxed);
        let nr = c.nr.load(Ordering::Relaxed);
        let mut args = [0i64; 6];
        for (d, a) in args.iter_mut().zip(&c.args) {
            *d = a.load(Ordering::Relaxed);
        }
        let ret = match joined {
            Ok(lkl) => handle(i, pid, lkl, opn, nr, args),
            Err(e) => e,
        };
        if opn != op::CALL {
            debug!(
                "slot {i}: pid {pid} {} {args:?} = {ret}",
                crate::client::op_name(opn)
            );
        }
        c.ret.store(ret, Ordering::Relaxed);
        c.done.store(s, Ordering::Release);
        last = s;
        woke = c.cli_wait.load(Ordering::SeqCst) != 0;
        if woke {
            futex::wake(&c.done);
        }
        if opn == op::EXIT && ret == 1 {
            // The last process ends: it waits for this process to be gone. With disks,
            // this thread leaves its process first: end() ends them all.
            if has_disks() && joined.is_ok() {
                kapi::thread_leave();
            }
            end(Some(i));
        }
        if opn == op::LEAVE {
            break;
        }
    }
    debug!("slot {i}: pid {pid} leaves");
    if joined.is_ok() {
        kapi::thread_leave();
    }
    c.state.store(state::FREE, Ordering::Release);
}

/// Waits for the next request on `c` after `last`; `None` when retired. Spins while
/// the caller runs on another CPU (at most [`SPIN_NS`]), else, after a yield when
/// the last answer `woke` the caller on this CPU ([`futex::yield_to_queued`]),
/// sleeps on the sequence word.
fn next_request(c: &window::Ctl, last: u32, mut woke: bool) -> Option<u32> {
    let posted = || c.seq.load(Ordering::Acquire) != last || c.retire.load(Ordering::Acquire) != 0;
    loop {
        if futex::spin_apart(SPIN_NS, &c.srv_cpu, &c.cli_cpu, posted) {
            break;
        }
        if woke && futex::yield_to_queued(&c.srv_cpu, &c.cli_cpu) {
            woke = false;
            if posted() {
                break;
            }
        }
        futex::asleep(&c.srv_cpu);
        c.srv_wait.store(1, Ordering::SeqCst);
        if c.seq.load(Ordering::SeqCst) == last && c.retire.load(Ordering::SeqCst) == 0 {
            futex::wait(&c.seq, last, 0);
        }
        c.srv_wait.store(0, Ordering::Relaxed);
    }
    c.srv_cpu.store(futex::this_cpu(), Ordering::Relaxed);
    let s = c.seq.load(Ordering::Acquire);
    (s != last).then_some(s)
}

/// One request of process `pid` (LKL process `lkl`) on slot `i`.
fn handle(i: usize, pid: i32, lkl: i64, opn: u32, nr: i64, a: [i64; 6]) -> i64 {
    match opn {
        op::CALL => kapi::syscall(nr, a),
        op::FORK => {
            let child = kapi::proc_create(lkl);
            if child < 0 {
                return child;
            }
            let mut st = state();
            let t = st.next_ticket;
            st.next_ticket += 1;
            st.tickets.insert(
                t,
                Ticket {
                    lkl: child,
                    parent: pid,
                    deadline: None,
                },
            );
            t as i64
        }
        op::BIND => {
            let mut st = state();
            if let Some(t) = st.tickets.remove(&(a[0] as u64)) {
                if a[1] > 0 {
                    bind(&mut st, a[1] as i32, t.lkl);
                } else {
                    kapi::proc_kill(t.lkl);
                }
            }
            0
        }
        op::SPAWN => {
            let child = kapi::proc_create(lkl);
            if child < 0 {
                return child;
            }
            if bind(&mut state(), a[0] as i32, child) {
                0
            } else {
                -i64::from(libc::ESRCH)
            }
        }
        op::EXEC => {
            // SAFETY: the caller wrote its pairs there and waits for the answer.
            let pairs = unsafe { win().fd_pairs(i) };
            let table = pairs[..(a[1].max(0) as usize).min(pairs.len())].to_vec();
            if let Some(p) = state().procs.get_mut(&(a[0] as i32)) {
                p.exec_table = Some(table);
            }
            0
        }
        op::EXEC_FAILED => {
            if let Some(p) = state().procs.get_mut(&(a[0] as i32)) {
                p.exec_table = None;
            }
            0
        }
        op::EXEC_DONE => {
            let r = kapi::proc_exec();
            if r < 0 {
                return r;
            }
            retire_slots(pid, i);
            let table = state()
                .procs
                .get_mut(&pid)
                .and_then(|p| p.exec_table.take())
                .unwrap_or_default();
            let getfd = lkl_sys::__lkl__NR3264_fcntl as i64;
            let mut kept: Vec<[i32; 2]> = table
                .into_iter()
                .filter(|&[_, l]| {
                    kapi::syscall(getfd, [i64::from(l), i64::from(libc::F_GETFD), 0, 0, 0, 0]) >= 0
                })
                .collect();
            // The LKL fds the old image had but handed no placeholder on for (a vfork
            // child closed it) are closed too, as the host closed theirs.
            kept.sort_by_key(|&[_, l]| l);
            let close_range = lkl_sys::__lkl__NR_close_range as i64;
            let mut from = 0i64;
            for &[_, l] in &kept {
                if i64::from(l) > from {
                    kapi::syscall(close_range, [from, i64::from(l) - 1, 0, 0, 0, 0]);
                }
                from = i64::from(l) + 1;
            }
            kapi::syscall(close_range, [from, i64::from(u32::MAX), 0, 0, 0, 0]);
            // SAFETY: the caller waits for the answer; the table came from its slot,
            // so it fits.
            let pairs = unsafe { win().fd_pairs(i) };
            pairs[..kept.len()].copy_from_slice(&kept);
            kept.len() as i64
        }
        op::EXIT => {
            let mut st = state();
            if let Some(p) = st.procs.get_mut(&pid) {
                p.exiting = true;
            }
            i64::from(none_left(&st))
        }
        _ => -i64::from(libc::ENOSYS),
    }
}
