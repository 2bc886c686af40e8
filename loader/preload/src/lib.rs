//! `libzpoline.so`: zpoline for `LD_PRELOAD` use, like upstream zpoline.
//!
//! Its constructor maps the trampoline at address 0, rewrites every executable mapping
//! already loaded (the program, ld.so, libc and the other libraries; not this library,
//! not the vDSO), and turns on the hook for code mapped executable later (`dlopen`) and
//! the Syscall User Dispatch fallback (JIT code). Syscalls issued before the
//! constructor runs (ld.so's own start-up) are not seen: use `lkl-run --zpoline` for
//! that. `execve` is left alone: the environment keeps `LD_PRELOAD`, so the new image
//! loads us again.
//!
//! Environment: `ZPOLINE_TRACE=-|FILE` traces like `lkl-run --trace`;
//! `ZPOLINE_CACHE=0` turns the site cache off, `ZPOLINE_CACHE_DIR=DIR` moves it;
//! `ZPOLINE_NULL_GUARD=1` keeps page 0 unmapped (see `trampoline::guard`);
//! `ZPOLINE_COUNT=1` prints the per-syscall summary at exit; `ZPOLINE_SUD=always|never`
//! changes when the Syscall User Dispatch fallback is armed (default: lazily, see
//! `trampoline::sud`).

use std::os::fd::{AsRawFd, IntoRawFd};

static HOST: trampoline::Host = trampoline::Host;

/// Our Rust code's allocator: the program's `malloc` during the constructor, a
/// hook-safe bump area afterwards (the hook may run inside the program's `malloc`).
#[global_allocator]
static ALLOCATOR: trampoline::alloc::HookSafe = trampoline::alloc::HookSafe;

/// Runs [`init`] when the library is loaded.
#[used]
#[link_section = ".init_array"]
static INIT: extern "C" fn() = init;

extern "C" fn init() {
    if let Err(e) = setup() {
        eprintln!("libzpoline: {e}");
        std::process::exit(1);
    }
    trampoline::alloc::seal();
}

/// One line of /proc/self/maps: start, end, protection, file offset, name.
struct Mapping {
    start: u64,
    end: u64,
    prot: i32,
    offset: u64,
    name: String,
}

fn maps() -> Vec<Mapping> {
    let text = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let (a, b) = it.next()?.split_once('-')?;
            let perms = it.next()?.as_bytes();
            let offset = u64::from_str_radix(it.next()?, 16).ok()?;
            let name = it.nth(2).unwrap_or("").to_string();
            let mut prot = 0;
            for (i, bit) in [(0, 1), (1, 2), (2, 4)] {
                if perms.get(i) != Some(&b'-') {
                    prot |= bit;
                }
            }
            Some(Mapping {
                start: u64::from_str_radix(a, 16).ok()?,
                end: u64::from_str_radix(b, 16).ok()?,
                prot,
                offset,
                name,
            })
        })
        .collect()
}

fn high_fd(fd: i32) -> i32 {
    // SAFETY: plain fcntl on a descriptor we own.
    unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 900) }
}

fn setup() -> Result<(), String> {
    let null_guard = std::env::var("ZPOLINE_NULL_GUARD").is_ok_and(|v| v == "1");
    let min = std::fs::read_to_string("/proc/sys/vm/mmap_min_addr").unwrap_or_default();
    if min.trim() != "0" && !null_guard {
        return Err(format!(
            "vm.mmap_min_addr is {}, but zpoline needs address 0: run `sysctl -w vm.mmap_min_addr=0`",
            min.trim()
        ));
    }
    let trace_fd = match std::env::var("ZPOLINE_TRACE").ok().as_deref() {
        None | Some("") => None,
        Some("-") => Some(high_fd(2)),
        Some(file) => {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(file)
                .map_err(|e| format!("ZPOLINE_TRACE={file}: {e}"))?;
            let fd = f.into_raw_fd();
            let hi = high_fd(fd);
            // SAFETY: closing the descriptor we just duplicated.
            unsafe { libc::close(fd) };
            Some(hi)
        }
    };
    let count = std::env::var("ZPOLINE_COUNT").is_ok_and(|v| v == "1");
    let count_area = if count {
        let size = trampoline::trace::COUNTER_WORDS * 8;
        // SAFETY: a fresh shared anonymous mapping (shared so forks add up).
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        (p != libc::MAP_FAILED).then_some(p as usize)
    } else {
        None
    };
    if std::env::var("ZPOLINE_CACHE").map_or(true, |v| v != "0") {
        let dir = std::env::var_os("ZPOLINE_CACHE_DIR")
            .map(std::path::PathBuf::from)
            .or_else(|| {
                std::env::var_os("XDG_CACHE_HOME")
                    .filter(|v| !v.is_empty())
                    .map(std::path::PathBuf::from)
                    .or_else(|| {
                        std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".cache"))
                    })
                    .map(|b| b.join("zpoline"))
            });
        if let Some(dir) = dir {
            // Without a usable cache we just decode.
            let _ = trampoline::cache::use_dir(&dir);
        }
    }
    let me = trampoline::entry_address();
    let all = maps();
    let own = all
        .iter()
        .find(|m| m.start <= me && me < m.end)
        .map(|m| (m.start, m.end));
    let mut exclude = vec![(0, 4096)];
    exclude.extend(own);
    exclude.extend(
        all.iter()
            .filter(|m| m.name == "[vdso]" || m.name == "[vsyscall]")
            .map(|m| (m.start, m.end)),
    );
    let options = trampoline::Options {
        trace_fd,
        count_area,
        summary_fd: count.then(|| trace_fd.unwrap_or_else(|| high_fd(2))),
        reexec: None,
        rewrite_new_code: true,
        null_guard,
        auto_guard_jvm: std::env::var("ZPOLINE_AUTO_GUARD").map_or(true, |v| v != "0"),
        exclude: exclude.clone(),
        program: None,
    };
    trampoline::install(options, &HOST).map_err(|e| e.to_string())?;
    for m in all.iter().filter(|m| m.prot & 4 != 0) {
        if exclude.iter().any(|&(a, b)| m.start < b && a < m.end) {
            continue;
        }
        // Sweep only the executable sections of the file behind the mapping.
        let file = m
            .name
            .starts_with('/')
            .then(|| std::fs::File::open(&m.name).ok())
            .flatten();
        let fd = file.as_ref().map(|f| (f.as_raw_fd(), m.offset));
        // SAFETY: an executable mapping of the program or one of its libraries, with
        // the protection /proc/self/maps reports, mapped from that file at that
        // offset; we are the only thread.
        unsafe { trampoline::rewrite_region(m.start, m.end - m.start, m.prot, fd) }
            .map_err(|e| format!("rewriting {}: {e}", m.name))?;
    }
    let sud = match std::env::var("ZPOLINE_SUD").as_deref() {
        Ok("0") | Ok("never") => trampoline::sud::Mode::Never,
        Ok("1") | Ok("always") => trampoline::sud::Mode::Always,
        _ => trampoline::sud::Mode::Lazy,
    };
    if let Some((a, b)) = own {
        trampoline::sud::enable(a, b - a, sud).map_err(|e| e.to_string())?;
    }
    Ok(())
}
