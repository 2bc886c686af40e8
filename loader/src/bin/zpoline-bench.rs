//! `zpoline-bench`: ns per raw `getppid` natively, under `lkl-run --zpoline --backend
//! host` (and with `--count`, the hook path, and `--null-guard`), under `LD_PRELOAD=libzpoline.so`, through Syscall User Dispatch (SIGSYS) and
//! under ptrace (`strace -f`), side by side; plus the start-up cost of rewriting
//! (`python3 -c pass`).
//!
//! Build and run: `cargo build --release -p loader -p zpoline-preload &&
//! target/release/zpoline-bench` (needs `vm.mmap_min_addr=0`, as root).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "zpoline-bench",
    about = "ns per raw getppid, native vs interposed"
)]
struct Cli {
    #[command(subcommand)]
    mode: Option<Mode>,
    /// Iterations per measurement for the fast mechanisms.
    #[arg(long, default_value_t = 2_000_000)]
    iters: u64,
}

#[derive(Subcommand)]
enum Mode {
    /// Internal: time `n` raw getppid calls in this process and print ns per call.
    Loop { n: u64 },
    /// Internal: the same through Syscall User Dispatch (a SIGSYS per call).
    SudLoop { n: u64 },
}

#[inline(never)]
fn raw_getppid() -> i64 {
    let r: i64;
    // SAFETY: getppid has no arguments and no side effects.
    unsafe {
        std::arch::asm!("syscall", inlateout("rax") 110i64 => r, lateout("rcx") _, lateout("r11") _, options(nostack));
    }
    r
}

/// Best of five timings of `n` calls of `f`, in ns per call.
fn time_calls(n: u64, f: impl Fn() -> i64) -> f64 {
    for _ in 0..n.min(10_000) {
        std::hint::black_box(f());
    }
    let mut best = Duration::MAX;
    for _ in 0..5 {
        let t = Instant::now();
        for _ in 0..n {
            std::hint::black_box(f());
        }
        best = best.min(t.elapsed());
    }
    best.as_nanos() as f64 / n as f64
}

fn sud_loop(n: u64) -> Result<f64> {
    // A tiny JIT buffer: mov $110,%eax; syscall; ret. Code outside our text traps.
    let code: [u8; 8] = [0xb8, libc::SYS_getppid as u8, 0, 0, 0, 0x0f, 0x05, 0xc3];
    // SAFETY: a fresh anonymous RWX mapping.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        bail!("mmap failed");
    }
    // SAFETY: copying 8 bytes into the fresh mapping.
    unsafe { std::ptr::copy_nonoverlapping(code.as_ptr(), p.cast(), code.len()) };
    // SAFETY: the buffer holds a complete function following the C ABI.
    let f: extern "C" fn() -> i64 = unsafe { std::mem::transmute(p) };
    static HOST: trampoline::Host = trampoline::Host;
    trampoline::install(trampoline::Options::default(), &HOST)?;
    let maps = std::fs::read_to_string("/proc/self/maps")?;
    let me = raw_getppid as *const () as u64;
    let (a, b) = maps
        .lines()
        .filter_map(|l| {
            l.split_whitespace()
                .next()?
                .split_once('-')
                .map(|(a, b)| (a.to_string(), b.to_string()))
        })
        .filter_map(|(a, b)| {
            Some((
                u64::from_str_radix(&a, 16).ok()?,
                u64::from_str_radix(&b, 16).ok()?,
            ))
        })
        .find(|&(a, b)| a <= me && me < b)
        .context("own text mapping not found")?;
    trampoline::sud::enable(a, b - a, trampoline::sud::Mode::Always)?;
    Ok(time_calls(n, || f()))
}

fn sibling(name: &str) -> Result<PathBuf> {
    let me = std::env::current_exe()?;
    Ok(me.parent().context("no parent")?.join(name))
}

/// Runs `cmd` (which prints ns per call) and parses its output.
/// Best of three runs: the machine may be busy, and noise only ever adds time.
fn measure(mut cmd: Command) -> Result<f64> {
    let mut best = f64::MAX;
    for _ in 0..3 {
        let out = cmd.output()?;
        if !out.status.success() {
            bail!("{:?} failed: {}", cmd, String::from_utf8_lossy(&out.stderr));
        }
        let s = String::from_utf8_lossy(&out.stdout);
        let v = s
            .trim()
            .lines()
            .last()
            .unwrap_or("")
            .parse::<f64>()
            .with_context(|| format!("bad output {s:?}"))?;
        best = best.min(v);
    }
    Ok(best)
}

fn median_ms(mut make: impl FnMut() -> Command) -> Result<f64> {
    let mut v = Vec::new();
    for _ in 0..7 {
        let t = Instant::now();
        let st = make().status()?;
        if !st.success() {
            bail!("start-up run failed");
        }
        v.push(t.elapsed().as_secs_f64() * 1e3);
    }
    v.sort_by(f64::total_cmp);
    Ok(v[v.len() / 2])
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.mode {
        Some(Mode::Loop { n }) => {
            println!("{:.2}", time_calls(n, raw_getppid));
            return Ok(());
        }
        Some(Mode::SudLoop { n }) => {
            println!("{:.2}", sud_loop(n)?);
            return Ok(());
        }
        None => {}
    }
    let me = std::env::current_exe()?;
    let lkl_run = sibling("lkl-run")?;
    let preload = sibling("libzpoline.so")?;
    let n = cli.iters.to_string();
    let looped = |prefix: &[&Path]| {
        let mut c = Command::new(prefix.first().copied().unwrap_or(&me));
        for p in prefix.iter().skip(1) {
            c.arg(p);
        }
        c
    };

    let mut rows: Vec<(&str, Result<f64>)> = Vec::new();
    let mut c = Command::new(&me);
    c.args(["loop", &n]);
    rows.push(("native", measure(c)));
    let mut c = looped(&[&lkl_run]);
    c.args(["--zpoline", "--backend", "host"])
        .arg(&me)
        .args(["loop", &n]);
    rows.push(("lkl-run --zpoline --backend host", measure(c)));
    // --count sends every syscall through the Rust hook (on the interposer stack).
    let mut c = looped(&[&lkl_run]);
    c.args(["--zpoline", "--backend", "host", "--count"])
        .arg(&me)
        .args(["loop", &(cli.iters / 10).max(1000).to_string()])
        .stderr(std::process::Stdio::null());
    rows.push(("lkl-run --zpoline --backend host --count", measure(c)));
    let mut c = looped(&[&lkl_run]);
    c.args(["--zpoline", "--null-guard"])
        .arg(&me)
        .args(["loop", &(cli.iters / 20).max(1000).to_string()]);
    rows.push(("lkl-run --zpoline --null-guard", measure(c)));
    let mut c = Command::new(&me);
    c.args(["loop", &n]).env("LD_PRELOAD", &preload);
    rows.push((
        "LD_PRELOAD=libzpoline.so",
        if preload.exists() {
            measure(c)
        } else {
            Err(anyhow::anyhow!(
                "{} not built (cargo build --release -p zpoline-preload)",
                preload.display()
            ))
        },
    ));
    let mut c = Command::new(&me);
    c.args(["sud-loop", &(cli.iters / 20).max(1000).to_string()]);
    rows.push(("Syscall User Dispatch (SIGSYS)", measure(c)));
    let mut c = Command::new("strace");
    c.args(["-f", "-o", "/dev/null"])
        .arg(&me)
        .args(["loop", &(cli.iters / 200).max(1000).to_string()]);
    rows.push(("ptrace (strace -f)", measure(c)));

    let native = rows[0].1.as_ref().ok().copied();
    println!(
        "{:<36} {:>12} {:>14}",
        "mechanism", "ns/getppid", "over native"
    );
    for (name, r) in &rows {
        match (r, native) {
            (Ok(v), Some(b)) => println!("{name:<36} {v:>12.1} {:>+14.1}", v - b),
            (Ok(v), None) => println!("{name:<36} {v:>12.1} {:>14}", "?"),
            (Err(e), _) => println!("{name:<36} {:>12} ({e})", "n/a"),
        }
    }

    // The real interpreter, not a wrapper script (pyenv shims run several programs).
    let python = Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "python3".into());
    let py_native = median_ms(|| {
        let mut c = Command::new(&python);
        c.args(["-c", "pass"]);
        c
    });
    let py_zp = |extra: &'static str| {
        let (lkl_run, python) = (&lkl_run, &python);
        median_ms(move || {
            let mut c = Command::new(lkl_run);
            c.args(["--zpoline", extra])
                .arg(python)
                .args(["-c", "pass"]);
            c
        })
    };
    let cold = py_zp("--no-cache");
    let warm = py_zp("--sud=lazy");
    match (py_native, cold, warm) {
        (Ok(a), Ok(c), Ok(w)) => println!(
            "start-up, {python} -c pass: native {a:.1} ms; lkl-run --zpoline {c:.1} ms \
             without the site cache (+{:.1} ms), {w:.1} ms with it (+{:.1} ms)",
            c - a,
            w - a
        ),
        (a, c, w) => println!(
            "start-up: n/a ({:?}, {:?}, {:?})",
            a.err(),
            c.err(),
            w.err()
        ),
    }
    Ok(())
}
