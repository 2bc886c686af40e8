//! NULL guard mode, for CPUs without protection keys.
//!
//! Without protection keys page 0 cannot be execute-only. In the default mode it is
//! then readable, so a NULL read returns sled bytes instead of faulting, and runtimes
//! that rely on NULL faults (the JVM's implicit null checks) break. In guard mode page
//! 0 stays unmapped. A rewritten site's `call *%rax` then faults on the instruction
//! fetch at address `nr`. Our SIGSEGV handler recognises that fault: `rip == si_addr <=
//! 512`, and the return address on the stack follows an `FF D0`. It points `rip` at
//! the entry stub and returns, and the stub runs as if the sled had jumped there. Every
//! other SIGSEGV goes to the program's own handler, or kills the process as natively.
//! A syscall costs a signal round trip (microseconds), in exchange for exact NULL
//! semantics.
//!
//! For that, SIGSEGV must never be blocked: a syscall made while it is blocked would be
//! a fault the kernel turns into death. So the hook owns SIGSEGV: `rt_sigaction(SIGSEGV)`
//! is virtualised, SIGSEGV is removed from every mask the program asks to block
//! (`rt_sigprocmask`, `sa_mask`), and our handler runs with `SA_NODEFER`.
//!
//! The handler is installed in every mode, not only this one ([`own_segv`]): a syscall
//! number no sled entry serves (fallen off page 0, or past it: x32's `0x40000000|nr`)
//! also makes a rewritten `call *%rax` fault, and the handler sends it to the stub's
//! plain `syscall`, so the kernel answers `-ENOSYS`. Under the guard, the handler also
//! gives each thread the signal stack of its interposer block (`crate::stack`), so the
//! kernel's frames stay off the program's stack.
//!
//! Owning SIGSEGV also lets the backends copy the program's memory in process
//! (`usermem::copy`): a fault the CPU raises inside one of those copy routines (a bad
//! pointer the program gave a system call) resumes at the routine's recovery label,
//! which returns `EFAULT`, before anything else is looked at.

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::sys::{
    GREGS, REG_RAX, REG_RIP, REG_RSP, SA_NODEFER, SA_ONSTACK, SA_RESTORER, SA_SIGINFO, SIGSEGV,
};
use crate::{sys, syscall6, Error};

/// SIGSEGV's bit in a kernel `sigset_t`.
pub(crate) const SEGV_BIT: u64 = 1 << (SIGSEGV - 1);

static ENABLED: AtomicBool = AtomicBool::new(false);
/// Our SIGSEGV handler is installed (in every mode, see [`own_segv`]).
static OWNS: AtomicBool = AtomicBool::new(false);
/// The program's SIGSEGV action: handler, flags, restorer, mask.
static PROGRAM_ACTION: [AtomicU64; 4] = [const { AtomicU64::new(0) }; 4];

/// True when guard mode is on.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

use crate::sud::{rt_sigaction, KernelSigaction};

fn install_ours() -> i64 {
    let act = KernelSigaction {
        handler: on_sigsegv as *const () as usize as u64,
        flags: SA_SIGINFO | SA_RESTORER | SA_ONSTACK | SA_NODEFER,
        restorer: crate::entry_x86_64::restorer_address(),
        mask: 0,
    };
    // SAFETY: a valid kernel sigaction with our own handler and restorer.
    unsafe { rt_sigaction(SIGSEGV, Some(&act), None) }
}

/// Takes SIGSEGV over: records the program's current action (to forward every other
/// fault to) and installs ours. Done at install in every mode: a syscall number past
/// page 0 (x32's `0x40000000|nr`) makes `call *%rax` fault, and our handler has the
/// kernel answer it.
///
/// # Errors
/// [`Error::Sigaction`] when the handler cannot be installed.
pub(crate) fn own_segv() -> Result<(), Error> {
    if OWNS.swap(true, Ordering::SeqCst) {
        return Ok(());
    }
    let mut old = KernelSigaction {
        handler: 0,
        flags: 0,
        restorer: 0,
        mask: 0,
    };
    // SAFETY: reading the current SIGSEGV action into our buffer.
    unsafe { rt_sigaction(SIGSEGV, None, Some(&mut old)) };
    for (slot, v) in PROGRAM_ACTION
        .iter()
        .zip([old.handler, old.flags, old.restorer, old.mask])
    {
        slot.store(v, Ordering::Relaxed);
    }
    let r = install_ours();
    if r < 0 {
        OWNS.store(false, Ordering::SeqCst);
        return Err(Error::Sigaction(-r as i32));
    }
    // SAFETY: `on_sigsegv` is installed, stays ours (the program's `rt_sigaction` of
    // SIGSEGV is only recorded), and recovers the copy routines' faults first.
    unsafe { usermem::copy::enable() };
    Ok(())
}

/// True once our SIGSEGV handler is installed (the hook then keeps SIGSEGV to itself).
pub(crate) fn owns_segv() -> bool {
    OWNS.load(Ordering::Relaxed)
}

/// Turns guard mode on: installs our SIGSEGV handler. Page 0 must stay unmapped.
///
/// # Errors
/// [`Error::Sigaction`] when the handler cannot be installed.
pub(crate) fn enable() -> Result<(), Error> {
    own_segv()?;
    ENABLED.store(true, Ordering::Relaxed);
    Ok(())
}

/// Switches a running process from the readable sled page to guard mode: takes over
/// SIGSEGV (keeping the program's current action as the one to forward to), routes the
/// signal-mask calls through the hook, then unmaps page 0. A thread inside the sled at
/// that moment faults on its next instruction fetch, which the handler recognises like
/// any other entry. Used when a JVM is loaded on a CPU without protection keys.
pub(crate) fn switch_on() {
    if enabled() || own_segv().is_err() {
        return;
    }
    ENABLED.store(true, Ordering::SeqCst);
    crate::route_guard_calls();
    // SAFETY: unmapping our own sled page; entries now arrive through SIGSEGV.
    unsafe { syscall6(sys::NR_MUNMAP, [0, crate::sled::PAGE as u64, 0, 0, 0, 0]) };
    crate::EXEC_ONLY.store(true, Ordering::Relaxed);
}

/// Where a fault that is a rewritten site's `call *%rax` must continue: the entry stub
/// (guard mode: page 0 unmapped, `rip == si_addr == rax`), or the stub's plain
/// `syscall` for numbers no sled entry serves (past page 0, `rip == si_addr == rax`;
/// or fallen off the end of the sled page). `None` for every other fault.
///
/// # Safety
/// `rsp` must be the faulting thread's stack pointer.
unsafe fn zpoline_entry(rip: u64, addr: u64, rax: u64, rsp: u64) -> Option<u64> {
    const PAGE: u64 = crate::sled::PAGE as u64;
    let to = if rip == addr && rip == rax {
        if rax < PAGE {
            if !enabled() {
                return None;
            }
            crate::entry_address()
        } else {
            crate::entry_x86_64::raw_syscall_address()
        }
    } else if rax < PAGE && (PAGE..PAGE + 128).contains(&addr) && rip < PAGE + 128 {
        crate::entry_x86_64::raw_syscall_address()
    } else {
        return None;
    };
    // SAFETY: `call` just pushed the return address at rsp (the caller guarantees rsp).
    let ret = unsafe { *(rsp as *const u64) };
    if ret < 4098 {
        return None;
    }
    // SAFETY: the return address points just past the 2-byte call in mapped code.
    let site = unsafe { *((ret - 2) as *const u8) == 0xFF && *((ret - 1) as *const u8) == 0xD0 };
    site.then_some(to)
}

extern "C" fn on_sigsegv(sig: i32, info: *mut u8, uc: *mut u8) {
    // SAFETY: the kernel passes a valid siginfo_t (si_code at 8, si_addr at 16) and
    // ucontext_t (gregs at 40).
    unsafe {
        let addr = *(info.add(16) as *const u64);
        let code = *(info.add(8) as *const i32);
        let g = uc.add(GREGS) as *mut u64;
        // A bad pointer met by an in-process copy (a fault the CPU raised: si_code > 0;
        // a SIGSEGV sent by kill or tgkill has si_code <= 0): the copy returns EFAULT.
        if code > 0 {
            if let Some(to) = usermem::copy::fault_fixup(*g.add(REG_RIP)) {
                *g.add(REG_RIP) = to;
                return;
            }
        }
        if let Some(to) = zpoline_entry(*g.add(REG_RIP), addr, *g.add(REG_RAX), *g.add(REG_RSP)) {
            *g.add(REG_RIP) = to;
            if enabled() {
                // The next entries' frames go to our signal stack, not the program's.
                crate::stack::ensure_signal_stack(uc);
            }
            return;
        }
    }
    let handler = PROGRAM_ACTION[0].load(Ordering::Relaxed);
    let flags = PROGRAM_ACTION[1].load(Ordering::Relaxed);
    if handler <= 1 {
        // SIG_DFL (or SIG_IGN, which the kernel overrides for faults): restore the
        // default and return; the instruction faults again and the process dies of it.
        let act = KernelSigaction {
            handler: 0,
            flags: 0,
            restorer: 0,
            mask: 0,
        };
        // SAFETY: resetting SIGSEGV to its default action.
        unsafe { rt_sigaction(SIGSEGV, Some(&act), None) };
        return;
    }
    // A fault inside a backend's world (an LKL call wears a thread block of ours): the
    // program's handler runs with the program's %fs, as the thread had at its last
    // hook entry.
    let lent = crate::stack::owner_fs_if_lent();
    if let Some((prog, _)) = lent {
        crate::stack::set_fs_base(prog);
    }
    if flags & SA_SIGINFO != 0 {
        // SAFETY: the program installed this SA_SIGINFO handler for SIGSEGV.
        let f: extern "C" fn(i32, *mut u8, *mut u8) =
            unsafe { core::mem::transmute(handler as usize) };
        f(sig, info, uc);
    } else {
        // SAFETY: the program installed this plain handler for SIGSEGV.
        let f: extern "C" fn(i32) = unsafe { core::mem::transmute(handler as usize) };
        f(sig);
    }
    if let Some((_, ours)) = lent {
        crate::stack::set_fs_base(ours);
    }
}

/// `rt_sigaction(SIGSEGV, act, oldact)` by the program: record, never install.
pub(crate) fn sigaction(act: u64, oldact: u64) -> i64 {
    if oldact != 0 {
        let p = oldact as *mut u64;
        for (i, slot) in PROGRAM_ACTION.iter().enumerate() {
            // SAFETY: the program passed a kernel sigaction buffer of 32 bytes.
            unsafe { *p.add(i) = slot.load(Ordering::Relaxed) };
        }
    }
    if act != 0 {
        let p = act as *const u64;
        for (i, slot) in PROGRAM_ACTION.iter().enumerate() {
            // SAFETY: the program passed a kernel sigaction of 32 bytes.
            slot.store(unsafe { *p.add(i) }, Ordering::Relaxed);
        }
    }
    0
}

/// Copies the `sigset_t` at `set` into `buf` without SIGSEGV; returns the copy's
/// address (or 0 for a null set).
pub(crate) fn without_segv(set: u64, buf: &mut u64) -> u64 {
    if set == 0 {
        return 0;
    }
    // SAFETY: the program passed an 8-byte kernel sigset_t.
    *buf = unsafe { *(set as *const u64) } & !SEGV_BIT;
    buf as *mut u64 as u64
}
