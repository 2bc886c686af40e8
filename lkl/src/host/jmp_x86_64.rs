//! `jmp_buf_set` / `jmp_buf_longjmp` for x86-64 (System V ABI).
//!
//! `jmp_buf_set(jb, f)` saves the callee-saved state of its caller in `jb`
//! and calls `f()`. It returns to its caller either when `f` returns, or
//! when anyone on the same thread, below `f` on the stack, calls
//! `jmp_buf_longjmp(jb, val)`: that restores the saved state and returns
//! from `jmp_buf_set` as if `f` had returned. `val` is ignored (the C
//! prototype returns void). The frames between are abandoned without
//! running any destructor, so they must be C frames or Rust frames that own
//! nothing needing a drop.
//!
//! `struct lkl_jmp_buf` is 32 `unsigned long`s; the layout used here:
//!
//! | slot  | contents                                          |
//! |-------|---------------------------------------------------|
//! | 0..=5 | rbx, rbp, r12, r13, r14, r15                      |
//! | 6     | rsp as it is after `jmp_buf_set` returns          |
//! | 7     | the return address into `jmp_buf_set`'s caller   |
//! | 8     | mxcsr (low 32 bits), x87 control word (bits 32..) |
//!
//! Not handled: CET shadow stacks (not enabled for ordinary processes).

use std::arch::global_asm;
use std::ffi::c_int;

use lkl_sys::lkl_jmp_buf;

global_asm!(
    // jmp_buf_set(rdi = jb, rsi = f)
    ".globl lkl_host_jmp_buf_set",
    ".hidden lkl_host_jmp_buf_set",
    ".type lkl_host_jmp_buf_set, @function",
    ".p2align 4",
    "lkl_host_jmp_buf_set:",
    ".cfi_startproc",
    // Save the callee-saved registers the ABI says our caller keeps.
    "mov [rdi + 0], rbx",
    "mov [rdi + 8], rbp",
    "mov [rdi + 16], r12",
    "mov [rdi + 24], r13",
    "mov [rdi + 32], r14",
    "mov [rdi + 40], r15",
    // The stack pointer our caller will see after we return (above the
    // return address), and the return address itself.
    "lea rdx, [rsp + 8]",
    "mov [rdi + 48], rdx",
    "mov rdx, [rsp]",
    "mov [rdi + 56], rdx",
    // The floating-point control state is callee-saved too.
    "stmxcsr [rdi + 64]",
    "fnstcw [rdi + 68]",
    // On entry rsp is 8 mod 16 (the call pushed the return address):
    // realign to 16 for the call to f, as the ABI requires at a call.
    "sub rsp, 8",
    ".cfi_adjust_cfa_offset 8",
    "call rsi",
    "add rsp, 8",
    ".cfi_adjust_cfa_offset -8",
    // f returned normally: it kept the callee-saved registers itself.
    "ret",
    ".cfi_endproc",
    ".size lkl_host_jmp_buf_set, . - lkl_host_jmp_buf_set",
    //
    // jmp_buf_longjmp(rdi = jb, esi = val): never returns to its caller.
    ".globl lkl_host_jmp_buf_longjmp",
    ".hidden lkl_host_jmp_buf_longjmp",
    ".type lkl_host_jmp_buf_longjmp, @function",
    ".p2align 4",
    "lkl_host_jmp_buf_longjmp:",
    ".cfi_startproc",
    // Restore the callee-saved registers of jmp_buf_set's caller.
    "mov rbx, [rdi + 0]",
    "mov rbp, [rdi + 8]",
    "mov r12, [rdi + 16]",
    "mov r13, [rdi + 24]",
    "mov r14, [rdi + 32]",
    "mov r15, [rdi + 40]",
    // And the floating-point control state.
    "ldmxcsr [rdi + 64]",
    "fldcw [rdi + 68]",
    // Return from jmp_buf_set: its caller's stack, its return address.
    "mov eax, esi",
    "mov rsp, [rdi + 48]",
    "jmp qword ptr [rdi + 56]",
    ".cfi_endproc",
    ".size lkl_host_jmp_buf_longjmp, . - lkl_host_jmp_buf_longjmp",
);

extern "C" {
    #[link_name = "lkl_host_jmp_buf_set"]
    fn asm_jmp_buf_set(jmpb: *mut lkl_jmp_buf, f: Option<unsafe extern "C" fn()>);
    #[link_name = "lkl_host_jmp_buf_longjmp"]
    fn asm_jmp_buf_longjmp(jmpb: *mut lkl_jmp_buf, val: c_int) -> !;
}

/// `jmp_buf_set`: saves a return point in `jmpb` and calls `f`; returns
/// when `f` returns or when [`jmp_buf_longjmp`] is called on `jmpb`.
///
/// # Safety
/// `jmpb` must be valid for writes for the whole call; `f` must be a valid
/// function. Frames that a longjmp skips must own nothing needing a drop.
pub unsafe extern "C" fn jmp_buf_set(jmpb: *mut lkl_jmp_buf, f: Option<unsafe extern "C" fn()>) {
    if f.is_none() {
        return;
    }
    // SAFETY: forwarded contract; the assembly follows the C ABI.
    unsafe { asm_jmp_buf_set(jmpb, f) }
}

/// `jmp_buf_longjmp`: returns from the [`jmp_buf_set`] call that filled
/// `jmpb`. Never returns to its own caller.
///
/// # Safety
/// Must be called on the thread that called [`jmp_buf_set`] on `jmpb`,
/// while that call is still running (below it on the stack). The frames in
/// between are abandoned without destructors.
pub unsafe extern "C" fn jmp_buf_longjmp(jmpb: *mut lkl_jmp_buf, val: c_int) {
    // SAFETY: forwarded contract.
    unsafe { asm_jmp_buf_longjmp(jmpb, val) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::hint::black_box;

    thread_local! {
        static JB: Cell<*mut lkl_jmp_buf> = const { Cell::new(std::ptr::null_mut()) };
        static STEPS: Cell<u32> = const { Cell::new(0) };
    }

    fn new_jb() -> lkl_jmp_buf {
        lkl_jmp_buf { buf: [0; 32] }
    }

    #[inline(never)]
    extern "C" fn nested(depth: u32) {
        // Keep some values live in callee-saved registers across calls.
        let a = black_box(depth * 3);
        if depth == 0 {
            STEPS.set(STEPS.get() + 1);
            // SAFETY: JB was filled by the running jmp_buf_set on this thread;
            // the frames in between own nothing.
            unsafe { jmp_buf_longjmp(JB.get(), 1) };
            unreachable!();
        }
        nested(black_box(depth - 1));
        black_box(a);
        unreachable!("longjmp skips this");
    }

    extern "C" fn jump_from_deep() {
        nested(10);
    }

    extern "C" fn plain_return() {
        STEPS.set(STEPS.get() + 100);
    }

    #[test]
    fn returns_normally_when_f_returns() {
        let mut jb = new_jb();
        STEPS.set(0);
        // SAFETY: jb outlives the call.
        unsafe { jmp_buf_set(&mut jb, Some(plain_return)) };
        assert_eq!(STEPS.get(), 100);
    }

    #[test]
    fn longjmp_from_nested_frames_returns_from_set() {
        STEPS.set(0);
        let mut sum = 0u64;
        // Many rounds with values live across the call: a callee-saved
        // register clobbered by the jump would corrupt them.
        for i in 0..1000u64 {
            let x = black_box(i * 7);
            let y = black_box(i ^ 0x5555);
            let f = black_box(1.5f64) * i as f64;
            let mut jb = new_jb();
            JB.set(&mut jb);
            // SAFETY: jb outlives the call; the jump comes from below it.
            unsafe { jmp_buf_set(&mut jb, Some(jump_from_deep)) };
            JB.set(std::ptr::null_mut());
            assert_eq!(x, i * 7);
            assert_eq!(y, i ^ 0x5555);
            assert_eq!(f, 1.5 * i as f64);
            sum += x + y;
        }
        assert_eq!(STEPS.get(), 1000);
        assert!(sum > 0);
    }

    #[test]
    fn stack_is_aligned_for_f() {
        extern "C" fn check_alignment() {
            // A 16-aligned local proves nothing; ask for the frame address.
            let rsp: usize;
            // SAFETY: reads rsp only.
            unsafe { std::arch::asm!("mov {}, rsp", out(reg) rsp) };
            STEPS.set((rsp % 16) as u32);
        }
        // Probe from two different stack depths.
        for _ in 0..2 {
            let mut jb = new_jb();
            // SAFETY: jb outlives the call.
            unsafe { jmp_buf_set(&mut jb, Some(check_alignment)) };
            // In the body (after its prologue) rsp alignment depends on the
            // frame size, but it must be consistent with a 16-aligned call.
            let at_body = STEPS.get();
            // Compare with a direct, compiler-made call of the same function.
            check_alignment();
            assert_eq!(at_body, STEPS.get());
        }
    }
}
