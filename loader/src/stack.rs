//! The initial process stack (System V x86-64 psABI §3.4.1, "Initial Stack and
//! Register State"): argc, argv pointers, NULL, envp pointers, NULL, auxv pairs ending
//! with AT_NULL, then the strings they point to. Built as a byte image in safe code;
//! the mapping module copies it into place.
#![forbid(unsafe_code)]

/// Auxiliary vector keys we set ourselves (Linux `AT_*`).
pub mod at {
    /// End of vector.
    pub const NULL: u64 = libc::AT_NULL;
    /// Program headers of the program.
    pub const PHDR: u64 = libc::AT_PHDR;
    /// Size of one program header.
    pub const PHENT: u64 = libc::AT_PHENT;
    /// Number of program headers.
    pub const PHNUM: u64 = libc::AT_PHNUM;
    /// System page size.
    pub const PAGESZ: u64 = libc::AT_PAGESZ;
    /// Base address of the interpreter.
    pub const BASE: u64 = libc::AT_BASE;
    /// Flags.
    pub const FLAGS: u64 = libc::AT_FLAGS;
    /// Program entry point.
    pub const ENTRY: u64 = libc::AT_ENTRY;
    /// Platform string.
    pub const PLATFORM: u64 = libc::AT_PLATFORM;
    /// 16 random bytes.
    pub const RANDOM: u64 = libc::AT_RANDOM;
    /// File name of the program.
    pub const EXECFN: u64 = libc::AT_EXECFN;
    /// The program's file descriptor.
    pub const EXECFD: u64 = libc::AT_EXECFD;
    /// Base platform string.
    pub const BASE_PLATFORM: u64 = libc::AT_BASE_PLATFORM;
    /// Keys the loader always sets itself; others are copied from our own auxv.
    pub const OWN: [u64; 12] = [
        NULL,
        EXECFD,
        PHDR,
        PHENT,
        PHNUM,
        BASE,
        FLAGS,
        ENTRY,
        PLATFORM,
        BASE_PLATFORM,
        RANDOM,
        EXECFN,
    ];
}

/// Where a string-valued auxv entry points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuxVal {
    /// A plain value.
    Value(u64),
    /// The NUL-terminated string `bytes`, placed among the stack strings.
    Str(&'static str),
    /// Raw bytes (AT_RANDOM), placed among the stack strings.
    Random([u8; 16]),
    /// The program file name (AT_EXECFN).
    ExecFn,
}

/// The built stack: `image` goes at `sp`, and `sp` is what `%rsp` must be at entry.
#[derive(Debug)]
pub struct Built {
    /// Initial `%rsp` (16-byte aligned, pointing at argc).
    pub sp: u64,
    /// Bytes to copy at `sp`, up to the top.
    pub image: Vec<u8>,
    /// `[start, end)` of the argv strings (what `/proc/PID/cmdline` shows).
    pub args: (u64, u64),
    /// `[start, end)` of the environment strings (`/proc/PID/environ`).
    pub env: (u64, u64),
    /// `[start, end)` of the auxv pairs (`/proc/PID/auxv`).
    pub auxv: (u64, u64),
}

/// Lays out the stack for a stack whose highest address is `top`.
pub fn build(
    top: u64,
    argv: &[Vec<u8>],
    envp: &[Vec<u8>],
    execfn: &[u8],
    auxv: &[(u64, AuxVal)],
) -> Built {
    // Strings area, growing down from top; we assemble it upward and place it at the end.
    let mut strings: Vec<u8> = Vec::new();
    let offs = |s: &[u8], strings: &mut Vec<u8>| {
        let o = strings.len();
        strings.extend_from_slice(s);
        strings.push(0);
        o
    };
    let argv_off: Vec<usize> = argv.iter().map(|a| offs(a, &mut strings)).collect();
    let envp_off: Vec<usize> = envp.iter().map(|e| offs(e, &mut strings)).collect();
    let execfn_off = offs(execfn, &mut strings);
    let mut aux_off = Vec::new();
    for (_, v) in auxv {
        aux_off.push(match v {
            AuxVal::Str(s) => Some(offs(s.as_bytes(), &mut strings)),
            AuxVal::Random(r) => {
                let o = strings.len();
                strings.extend_from_slice(r);
                Some(o)
            }
            AuxVal::ExecFn => Some(execfn_off),
            AuxVal::Value(_) => None,
        });
    }
    let strings_at = (top - strings.len() as u64 - 16) & !15;
    let words = 1 + argv.len() + 1 + envp.len() + 1 + 2 * (auxv.len() + 1);
    let sp = (strings_at - 8 * words as u64) & !15;
    let mut table: Vec<u64> = Vec::with_capacity(words);
    table.push(argv.len() as u64);
    table.extend(argv_off.iter().map(|&o| strings_at + o as u64));
    table.push(0);
    table.extend(envp_off.iter().map(|&o| strings_at + o as u64));
    table.push(0);
    for ((k, v), o) in auxv.iter().zip(&aux_off) {
        table.push(*k);
        table.push(match (v, o) {
            (AuxVal::Value(x), _) => *x,
            (_, Some(o)) => strings_at + *o as u64,
            (_, None) => 0,
        });
    }
    table.push(at::NULL);
    table.push(0);
    let mut image = vec![0u8; (top - sp) as usize];
    for (i, w) in table.iter().enumerate() {
        image[i * 8..i * 8 + 8].copy_from_slice(&w.to_le_bytes());
    }
    let so = (strings_at - sp) as usize;
    image[so..so + strings.len()].copy_from_slice(&strings);
    let args_end = argv_off
        .last()
        .map_or(0, |&o| o + argv.last().map_or(0, Vec::len) + 1);
    let env_start = envp_off.first().copied().unwrap_or(args_end);
    let env_end = envp_off
        .last()
        .map_or(env_start, |&o| o + envp.last().map_or(0, Vec::len) + 1);
    let auxv_at = sp + 8 * (1 + argv.len() + 1 + envp.len() + 1) as u64;
    Built {
        sp,
        image,
        args: (strings_at, strings_at + args_end as u64),
        env: (strings_at + env_start as u64, strings_at + env_end as u64),
        auxv: (auxv_at, auxv_at + 16 * (auxv.len() + 1) as u64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn word(b: &Built, addr: u64) -> u64 {
        let o = (addr - b.sp) as usize;
        u64::from_le_bytes(b.image[o..o + 8].try_into().unwrap())
    }

    fn string(b: &Built, addr: u64) -> Vec<u8> {
        let o = (addr - b.sp) as usize;
        b.image[o..].split(|&c| c == 0).next().unwrap().to_vec()
    }

    #[test]
    fn layout_follows_the_psabi() {
        let top = 0x7fff_0000_0000;
        let argv = vec![b"ls".to_vec(), b"-la".to_vec()];
        let envp = vec![b"A=1".to_vec()];
        let aux = [
            (at::PAGESZ, AuxVal::Value(4096)),
            (at::PLATFORM, AuxVal::Str("x86_64")),
            (at::EXECFN, AuxVal::ExecFn),
        ];
        let b = build(top, &argv, &envp, b"/bin/ls", &aux);
        assert_eq!(b.sp % 16, 0);
        assert_eq!(b.sp + b.image.len() as u64, top);
        assert_eq!(word(&b, b.sp), 2);
        assert_eq!(string(&b, word(&b, b.sp + 8)), b"ls");
        assert_eq!(string(&b, word(&b, b.sp + 16)), b"-la");
        assert_eq!(word(&b, b.sp + 24), 0);
        assert_eq!(string(&b, word(&b, b.sp + 32)), b"A=1");
        assert_eq!(word(&b, b.sp + 40), 0);
        assert_eq!(word(&b, b.sp + 48), at::PAGESZ);
        assert_eq!(word(&b, b.sp + 56), 4096);
        assert_eq!(string(&b, word(&b, b.sp + 72)), b"x86_64");
        assert_eq!(string(&b, word(&b, b.sp + 88)), b"/bin/ls");
        assert_eq!(word(&b, b.sp + 96), at::NULL);
        assert_eq!(b.auxv, (b.sp + 48, b.sp + 112));
        let o = (b.args.0 - b.sp) as usize;
        assert_eq!(
            &b.image[o..o + (b.args.1 - b.args.0) as usize],
            b"ls\0-la\0"
        );
        let o = (b.env.0 - b.sp) as usize;
        assert_eq!(&b.image[o..o + (b.env.1 - b.env.0) as usize], b"A=1\0");
    }
}
