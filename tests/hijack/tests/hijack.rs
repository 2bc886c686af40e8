//! `liblkl-hijack.so` and `bin/lkl-hijack.sh` end to end, inside a network
//! namespace this test creates.
//!
//! The test builds the library (`cargo build --release -p lkl-hijack`, into
//! the target directory this test binary runs from), makes namespace
//! `lklhj-PID` with tap `lkltap0` addressed 198.18.0.1/24, writes a JSON
//! config giving LKL that tap as `eth0` (198.18.0.2/24, MAC
//! 02:11:22:33:44:55), and runs `lkl-hijack.sh ip address show` and
//! `lkl-hijack.sh ip route` inside the namespace, then `lkl-hijack.sh curl`
//! against a `python3 -m http.server` on the namespace's side of the tap
//! (byte-identical body). The namespace is deleted
//! however the test ends. Needs root and iproute2's `ip`: without them it
//! fails. Prints `N passed, N failed`.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

type Outcome = Result<(), String>;

const TAP: &str = "lkltap0";
const MAC: &str = "02:11:22:33:44:55";
/// One hijacked command gives up after this long.
const DEADLINE: Duration = Duration::from_secs(60);

fn main() -> ExitCode {
    let mut passed = 0;
    let mut failed = 0;
    let mut report = |name: &str, r: Outcome| match r {
        Ok(()) => {
            println!("ok   {name}");
            passed += 1;
        }
        Err(e) => {
            eprintln!("FAIL {name}: {e}");
            failed += 1;
        }
    };
    match setup() {
        Err(e) => report("setup", Err(e)),
        Ok(env) => {
            report("ip address show", ip_address_show(&env));
            report("ip route", ip_route(&env));
            report("curl over LKL's TCP", curl(&env));
            report("bad config stops the program", bad_config(&env));
        }
    }
    println!("{passed} passed, {failed} failed");
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Runs `ip ARGS`; an error names the command and what it printed.
fn ip(args: &[&str]) -> Outcome {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run `ip {}`: {e}", args.join(" ")))?;
    if !out.status.success() {
        return Err(format!(
            "`ip {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(())
}

/// Deletes the namespace and the config directory when dropped, on success
/// and failure alike.
struct Env {
    ns: String,
    dir: PathBuf,
    script: PathBuf,
    lib: PathBuf,
}

impl Drop for Env {
    fn drop(&mut self) {
        if let Err(e) = ip(&["netns", "del", &self.ns]) {
            eprintln!("cleanup: {e}");
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The workspace root (this crate is `tests/hijack`).
fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The target directory this binary was built into:
/// `TARGET/release/deps/hijack-HASH`.
fn target_dir() -> Result<PathBuf, String> {
    if let Some(d) = std::env::var_os("CARGO_TARGET_DIR") {
        let d = PathBuf::from(d);
        return Ok(if d.is_absolute() {
            d
        } else {
            workspace().join(d)
        });
    }
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    exe.ancestors()
        .nth(3)
        .map(Path::to_path_buf)
        .ok_or_else(|| format!("cannot find the target directory above {}", exe.display()))
}

/// Builds the library into this binary's target directory; its path.
fn build_library() -> Result<PathBuf, String> {
    let target = target_dir()?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(workspace())
        .args(["build", "--release", "-p", "lkl-hijack"])
        .env("CARGO_TARGET_DIR", &target)
        .status()
        .map_err(|e| format!("cannot run cargo to build liblkl-hijack.so: {e}"))?;
    if !status.success() {
        return Err(format!("building liblkl-hijack.so failed: {status}"));
    }
    // Cargo names a cdylib after the library with `_` for `-`.
    let lib = target.join("release/liblkl_hijack.so");
    if !lib.is_file() {
        return Err(format!("{} was not built", lib.display()));
    }
    Ok(lib)
}

fn setup() -> Result<Env, String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err("this test needs root (network namespaces and a tap)".into());
    }
    ip(&["-V"]).map_err(|e| format!("this test needs iproute2's `ip`: {e}"))?;
    let lib = build_library()?;
    let script = workspace().join("bin/lkl-hijack.sh");
    if !script.is_file() {
        return Err(format!("{} is missing", script.display()));
    }
    let ns = format!("lklhj-{}", std::process::id());
    ip(&["netns", "add", &ns])?;
    let dir = std::env::temp_dir().join(&ns);
    let env = Env {
        ns,
        dir,
        script,
        lib,
    };
    let in_ns = |args: &[&str]| {
        let mut all = vec!["netns", "exec", &env.ns, "ip"];
        all.extend_from_slice(args);
        ip(&all)
    };
    in_ns(&["link", "set", "lo", "up"])?;
    in_ns(&["tuntap", "add", "dev", TAP, "mode", "tap"])?;
    in_ns(&["addr", "add", "198.18.0.1/24", "dev", TAP])?;
    in_ns(&["link", "set", TAP, "up"])?;
    std::fs::create_dir_all(&env.dir).map_err(|e| format!("{}: {e}", env.dir.display()))?;
    let config = format!(
        r#"{{
  "interfaces": [
    {{
      "type": "tap",
      "param": "{TAP}",
      "ip": "198.18.0.2",
      "masklen": "24",
      "mac": "{MAC}"
    }}
  ]
}}
"#
    );
    std::fs::write(env.dir.join("good.json"), config).map_err(|e| format!("config: {e}"))?;
    std::fs::write(
        env.dir.join("bad.json"),
        r#"{"interfaces": [{"type": "tap", "param": "lkltap0", "masklen": "99"}]}"#,
    )
    .map_err(|e| format!("config: {e}"))?;
    Ok(env)
}

/// What a hijacked command did.
struct Run {
    ok: bool,
    status: String,
    stdout: String,
    stderr: String,
}

/// Runs `lkl-hijack.sh ARGS` in the namespace with config file `config`,
/// killing it after [`DEADLINE`].
fn hijacked(env: &Env, config: &str, args: &[&str]) -> Result<Run, String> {
    let mut child = Command::new("ip")
        .args(["netns", "exec", &env.ns])
        .arg(&env.script)
        .args(args)
        .env("LKL_HIJACK_CONFIG_FILE", env.dir.join(config))
        .env("LKL_HIJACK_LIB", &env.lib)
        .current_dir(&env.dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run lkl-hijack.sh: {e}"))?;
    let start = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if start.elapsed() > DEADLINE => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "`lkl-hijack.sh {}` did not end within {DEADLINE:?}",
                    args.join(" ")
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(format!("wait: {e}")),
        }
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("output: {e}"))?;
    Ok(Run {
        ok: out.status.success(),
        status: out.status.to_string(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

/// Runs a hijacked command that must succeed; its stdout.
fn hijacked_ok(env: &Env, args: &[&str]) -> Result<String, String> {
    let run = hijacked(env, "good.json", args)?;
    if !run.ok {
        return Err(format!(
            "`lkl-hijack.sh {}` failed ({}): {}",
            args.join(" "),
            run.status,
            run.stderr.trim()
        ));
    }
    Ok(run.stdout)
}

/// The block of `ip address show` output for interface `name`.
fn link_block<'a>(out: &'a str, name: &str) -> Option<&'a str> {
    let mut start = None;
    let mut pos = 0;
    for line in out.split_inclusive('\n') {
        let is_header = line
            .split_once(": ")
            .is_some_and(|(n, _)| n.chars().all(|c| c.is_ascii_digit()));
        if is_header {
            if let Some(s) = start {
                return Some(&out[s..pos]);
            }
            let ifname = line.split(": ").nth(1).unwrap_or("");
            let ifname = ifname.split('@').next().unwrap_or("");
            if ifname == name {
                start = Some(pos);
            }
        }
        pos += line.len();
    }
    start.map(|s| &out[s..])
}

fn ip_address_show(env: &Env) -> Outcome {
    let out = hijacked_ok(env, &["ip", "address", "show"])?;
    let ctx = || format!("`ip address show` under hijack printed:\n{out}");
    let lo = link_block(&out, "lo").ok_or_else(|| format!("no `lo`; {}", ctx()))?;
    if !lo.contains("127.0.0.1/8") {
        return Err(format!("`lo` lacks 127.0.0.1/8; {}", ctx()));
    }
    let eth0 = link_block(&out, "eth0").ok_or_else(|| format!("no `eth0`; {}", ctx()))?;
    if !eth0.contains("inet 198.18.0.2/24") {
        return Err(format!("`eth0` lacks 198.18.0.2/24; {}", ctx()));
    }
    if !eth0.contains(&format!("link/ether {MAC}")) {
        return Err(format!("`eth0` lacks MAC {MAC}; {}", ctx()));
    }
    if out.contains(TAP) {
        return Err(format!(
            "the namespace's own {TAP} is listed: the host answered; {}",
            ctx()
        ));
    }
    Ok(())
}

fn ip_route(env: &Env) -> Outcome {
    let out = hijacked_ok(env, &["ip", "route"])?;
    let want = "198.18.0.0/24 dev eth0";
    if !out
        .lines()
        .any(|l| l.starts_with(want) && l.contains("src 198.18.0.2"))
    {
        return Err(format!(
            "no `{want} ... src 198.18.0.2` route; `ip route` under hijack printed:\n{out}"
        ));
    }
    if out.contains(TAP) {
        return Err(format!("the host's routes are listed:\n{out}"));
    }
    Ok(())
}

/// A bad value stops the program before `main`, with status 1 and the key.
fn bad_config(env: &Env) -> Outcome {
    let run = hijacked(env, "bad.json", &["ip", "address", "show"])?;
    if run.ok || run.status != "exit status: 1" {
        return Err(format!(
            "want exit status 1, got {} (stdout {:?})",
            run.status, run.stdout
        ));
    }
    if !run.stdout.is_empty() {
        return Err(format!("the program ran: {:?}", run.stdout));
    }
    if !run.stderr.contains("masklen") {
        return Err(format!(
            "the error does not name `masklen`: {:?}",
            run.stderr
        ));
    }
    Ok(())
}

/// Kills a process this test started when dropped.
struct Server(std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `curl` under hijack fetches a file from a server in the namespace
/// (host kernel), through LKL's TCP over the tap.
fn curl(env: &Env) -> Outcome {
    let www = env.dir.join("www");
    std::fs::create_dir_all(&www).map_err(|e| format!("{}: {e}", www.display()))?;
    let body: Vec<u8> = (0..300_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    std::fs::write(www.join("blob"), &body).map_err(|e| format!("blob: {e}"))?;
    let server = Command::new("ip")
        .args(["netns", "exec", &env.ns, "python3", "-m", "http.server"])
        .args(["--bind", "198.18.0.1", "8080"])
        .current_dir(&www)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start python3 -m http.server: {e}"))?;
    let _server = Server(server);
    let out = env.dir.join("fetched");
    let out_s = out.to_string_lossy().into_owned();
    hijacked_ok(
        env,
        &[
            "curl",
            "-sS",
            "-m",
            "20",
            "--retry",
            "20",
            "--retry-connrefused",
            "--retry-delay",
            "1",
            "-o",
            &out_s,
            "http://198.18.0.1:8080/blob",
        ],
    )?;
    let got = std::fs::read(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    if got != body {
        return Err(format!(
            "the body differs: {} bytes fetched, {} served",
            got.len(),
            body.len()
        ));
    }
    Ok(())
}
