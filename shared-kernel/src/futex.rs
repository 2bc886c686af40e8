//! Futex waits and wakes on words of the window (shared between processes, so never
//! `FUTEX_PRIVATE_FLAG`).

use core::sync::atomic::{AtomicU32, AtomicU8, Ordering};

/// Sleeps while `*word == val`, at most `timeout_ms` (0: no limit). Returns on a wake,
/// a signal, a timeout or a changed value alike: the caller looks again.
pub fn wait(word: &AtomicU32, val: u32, timeout_ms: u64) {
    let ts = libc::timespec {
        tv_sec: (timeout_ms / 1000) as libc::time_t,
        tv_nsec: ((timeout_ms % 1000) * 1_000_000) as libc::c_long,
    };
    let tsp = if timeout_ms == 0 {
        core::ptr::null()
    } else {
        &ts as *const libc::timespec
    };
    // SAFETY: FUTEX_WAIT on a live word of ours, with a valid or null timeout.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            val,
            tsp,
            0usize,
            0u32,
        );
    }
}

/// Wakes every sleeper on `word`.
pub fn wake(word: &AtomicU32) {
    // SAFETY: FUTEX_WAKE on a live word of ours.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE,
            i32::MAX,
            0usize,
            0usize,
            0u32,
        );
    }
}

/// After this thread woke its peer, and when the peer last ran (or slept) on this
/// thread's CPU, where the scheduler most likely queued it: yields the CPU once
/// (true), saying in `mine` that this thread is on it, so that the peer answers (or
/// posts) and then sleeps at once, while this thread finds the answer (or request)
/// without sleeping itself; the peer's futex wake and this thread's futex wait are
/// saved. False, without yielding, when the peer is elsewhere or CPUs are unknown.
pub fn yield_to_queued(mine: &AtomicU32, peer: &AtomicU32) -> bool {
    let cpu = this_cpu();
    if cpu == NO_CPU || peer.load(Ordering::Relaxed) & !ASLEEP != cpu {
        return false;
    }
    mine.store(cpu, Ordering::Relaxed);
    // SAFETY: sched_yield has no arguments.
    unsafe { libc::syscall(libc::SYS_sched_yield) };
    true
}

/// No CPU number: unknown.
pub const NO_CPU: u32 = u32::MAX;
/// Set in a published CPU number while the thread sleeps (see [`asleep`]).
pub const ASLEEP: u32 = 1 << 31;

/// Says in `mine` that this thread goes to sleep: its last CPU with [`ASLEEP`]. A
/// woken thread is most often put back on the CPU it slept on, so a peer there does
/// not spin for it (see [`spin_apart`]).
pub fn asleep(mine: &AtomicU32) {
    mine.fetch_or(ASLEEP, Ordering::Relaxed);
}

/// How [`this_cpu`] reads the CPU number: 0 not probed yet, 1 `rdpid`, 2 `rdtscp`,
/// 3 neither.
static CPU_INSN: AtomicU8 = AtomicU8::new(0);

/// The CPU this thread runs on now, or [`NO_CPU`]: Linux keeps the CPU number in the
/// low 12 bits of `TSC_AUX`, which `rdpid` (or `rdtscp`) reads in a few nanoseconds,
/// without a system call or our libc's thread block (the client runs on a borrowed
/// one, whose `rseq` area is another thread's).
#[inline]
pub fn this_cpu() -> u32 {
    let how = match CPU_INSN.load(Ordering::Relaxed) {
        0 => {
            // cpuid is available on every x86-64 CPU.
            let l7 = core::arch::x86_64::__cpuid_count(7, 0);
            let ext = core::arch::x86_64::__cpuid(0x8000_0001);
            let how = if l7.ecx & (1 << 22) != 0 {
                1
            } else if ext.edx & (1 << 27) != 0 {
                2
            } else {
                3
            };
            CPU_INSN.store(how, Ordering::Relaxed);
            how
        }
        h => h,
    };
    let aux: u64 = match how {
        1 => {
            let v: u64;
            // SAFETY: rdpid only reads TSC_AUX (CPUID said the CPU has it).
            unsafe {
                core::arch::asm!("rdpid {}", out(reg) v, options(nomem, nostack, preserves_flags))
            };
            v
        }
        2 => {
            let v: u32;
            // SAFETY: rdtscp reads the TSC and TSC_AUX (CPUID said the CPU has it).
            unsafe {
                core::arch::asm!("rdtscp", out("ecx") v, out("eax") _, out("edx") _,
                    options(nomem, nostack, preserves_flags))
            };
            u64::from(v)
        }
        _ => return NO_CPU,
    };
    (aux & 0xfff) as u32
}

/// True when a published CPU number says its thread sleeps ([`NO_CPU`], where the
/// CPU cannot be read, says nothing).
#[inline(always)]
fn sleeps(published: u32) -> bool {
    published & ASLEEP != 0 && published != NO_CPU
}

/// How long [`spin_apart`] spins while the peer sleeps (or was just woken): a woken
/// peer names its CPU as soon as it runs, within a few microseconds when it was put
/// on another CPU; one that stays silent waits for a CPU, most likely this thread's.
pub const UNPLACED_NS: u64 = 8_000;

/// Spins until `ready` says yes or `budget_ns` passes (true when ready), for a peer
/// in another process that last said, in `peer`, on which CPU it runs (with
/// [`ASLEEP`] while it sleeps); this thread's CPU is kept in `mine` for
/// the peer's same check. Gives up (false) as soon as the peer names this thread's
/// CPU: the peer cannot run there (to answer, or to post) while this thread spins,
/// and sleeping lets it. On two CPUs that also run other work, client and server
/// often share one: spinning there cost each call the whole budget of both sides.
/// Gives up as well when the peer sleeps (or was just woken and has not run yet) on
/// this thread's CPU, and when it sleeps elsewhere for [`UNPLACED_NS`]: a peer that
/// this thread (or its last answer) woke and that stays silent waits for a CPU, most
/// often this thread's (a pinned tree puts every thread on one), where spinning only
/// delays it.
#[inline(always)]
pub fn spin_apart(
    budget_ns: u64,
    mine: &AtomicU32,
    peer: &AtomicU32,
    mut ready: impl FnMut() -> bool,
) -> bool {
    let mut cpu = this_cpu();
    mine.store(cpu, Ordering::Relaxed);
    let mut start = 0u64;
    let mut k = 0u32;
    loop {
        if ready() {
            return true;
        }
        if cpu != NO_CPU && peer.load(Ordering::Relaxed) & !ASLEEP == cpu {
            return false;
        }
        core::hint::spin_loop();
        k = k.wrapping_add(1);
        if k.is_multiple_of(64) {
            let now = this_cpu();
            if now != cpu {
                // Moved: said only then, so that the line the peer answers on stays put.
                cpu = now;
                mine.store(cpu, Ordering::Relaxed);
            }
            let t = lkl::host::time::monotonic_ns();
            if start == 0 {
                start = t;
            } else if t - start > budget_ns
                || (t - start > UNPLACED_NS && sleeps(peer.load(Ordering::Relaxed)))
            {
                return false;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    /// The time `spin_apart` takes for a peer that published `peer(this CPU)` and
    /// never answers, with a one-second budget (this thread pinned to the CPU it runs
    /// on, so that the CPU number stays put).
    fn gives_up_after(peer: impl Fn(u32) -> u32) -> Duration {
        let me = this_cpu();
        assert_ne!(
            me, NO_CPU,
            "this CPU has neither rdpid nor rdtscp: the shared kernel cannot tell CPUs apart"
        );
        // SAFETY: a CPU set of our own, then this thread's affinity.
        let r = unsafe {
            let mut set: libc::cpu_set_t = core::mem::zeroed();
            libc::CPU_SET(me as usize, &mut set);
            libc::sched_setaffinity(0, core::mem::size_of_val(&set), &set)
        };
        assert_eq!(r, 0, "pinning the test thread to CPU {me}");
        let mine = AtomicU32::new(NO_CPU);
        let peer = AtomicU32::new(peer(me));
        let t = Instant::now();
        assert!(!spin_apart(1_000_000_000, &mine, &peer, || false));
        t.elapsed()
    }

    #[test]
    fn no_spinning_for_a_peer_on_this_cpu_running_or_asleep() {
        assert!(gives_up_after(|me| me) < Duration::from_millis(100));
        assert!(gives_up_after(|me| me | ASLEEP) < Duration::from_millis(100));
    }

    #[test]
    fn a_peer_asleep_elsewhere_is_spun_for_briefly_a_running_one_for_the_budget() {
        assert!(gives_up_after(|me| (me + 1) | ASLEEP) < Duration::from_millis(100));
        assert!(gives_up_after(|me| me + 1) >= Duration::from_millis(999));
        // Unknown: the whole budget, as for a running peer.
        assert!(gives_up_after(|_| NO_CPU) >= Duration::from_millis(999));
    }

    #[test]
    fn an_answer_ends_the_spin() {
        let mine = AtomicU32::new(NO_CPU);
        let peer = AtomicU32::new(NO_CPU);
        let mut n = 0;
        assert!(spin_apart(1_000_000_000, &mine, &peer, || {
            n += 1;
            n > 1000
        }));
    }
}
