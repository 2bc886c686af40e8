//! One LKL for a whole process tree under `lkl-run --zpoline`, end to end: every
//! process of one run (forked, exec'd, a shell's children, daemons' workers) must see
//! the same kernel, in a network namespace made here with a tap for LKL (LKL's `eth0`
//! at 198.18.0.2, the host side at 198.18.0.1), dnsmasq on the host side answering
//! `test.example`, and the namespace's own `/etc/resolv.conf` pointing at
//! 198.18.99.99, where nothing answers.
//!
//! Where the harness can be checked without LKL, a case first runs the same script or
//! server natively in the namespace and under `lkl-run --backend host` (both on the
//! tap's host side) and only then under lkl-run with LKL, so a failure there is
//! LKL's, not the script's. The programs the
//! cases run are `py/tree.py` (servers and clients), `sh`, `ip`, `getent`, `curl`
//! (always on the host side) and nginx.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Output, Stdio};
use std::time::{Duration, Instant};

use lkl_test_support::{self as support, workspace, Netns, Outcome, Process, Report, TempDir};

const LKL_RUN: &str = env!("CARGO_BIN_EXE_zpl-lkl-run");
const DEADLINE: Duration = Duration::from_secs(90);
const HOST: &str = "198.18.0.1";
const LKL: &str = "198.18.0.2";
const DNS_NAME: &str = "test.example";
const DNS_ADDR: &str = "198.18.7.7";
/// The files the HTTP servers serve: name and size (the large one random).
const FILES: [(&str, usize); 4] = [
    ("small.txt", 23),
    ("64k.bin", 65_536),
    ("1m.bin", 1_000_003),
    ("5m.bin", 5 << 20),
];

/// Where a case's programs run.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    /// Natively in the namespace, on the tap's host side.
    Native,
    /// Under `lkl-run --zpoline --backend host`: the interposer and its re-exec of
    /// every exec'd program, with the host kernel behind them, on the tap's host side.
    HostBackend,
    /// Under `lkl-run --zpoline --config CONF`: LKL, on its `eth0`.
    Lkl,
}

impl Mode {
    /// The harness's checks first (without LKL), then the case itself.
    const ALL: [Mode; 3] = [Mode::Native, Mode::HostBackend, Mode::Lkl];

    fn name(self) -> &'static str {
        match self {
            Mode::Native => "natively",
            Mode::HostBackend => "under lkl-run --backend host",
            Mode::Lkl => "under lkl-run with LKL",
        }
    }

    /// The address the servers bind: the tap's host side, or LKL's `eth0`.
    fn addr(self) -> &'static str {
        if self == Mode::Lkl {
            LKL
        } else {
            HOST
        }
    }

    /// A failure in a mode without LKL is the harness's: say so.
    fn blame(self, e: String) -> String {
        if self == Mode::Lkl {
            e
        } else {
            format!("the harness fails {} (without LKL): {e}", self.name())
        }
    }
}

/// A case of this file.
type Case = dyn Fn(&Env) -> Outcome;

/// What every case needs.
struct Env {
    ns: Netns,
    tap: String,
    tmp: TempDir,
    conf: PathBuf,
    tree_py: PathBuf,
    /// `/usr/bin/python3 TREE_PY`, the scripts' `$PY`.
    py: String,
    www: PathBuf,
}

impl Env {
    /// `lkl-run --zpoline --config CONF ARGS...` in the namespace.
    fn zp(&self, conf: &Path, args: &[&str], env: &[(&str, &str)]) -> Result<Output, String> {
        let mut c = self.ns.command(LKL_RUN);
        c.arg("--zpoline").arg("--config").arg(conf).args(args);
        c.envs(env.iter().copied());
        support::output_within(&mut c, DEADLINE)
    }

    /// A command that runs `prog` in the namespace in `mode`.
    fn command(&self, mode: Mode, prog: impl AsRef<std::ffi::OsStr>) -> Command {
        match mode {
            Mode::Native => self.ns.command(prog),
            Mode::HostBackend => {
                let mut c = self.ns.command(LKL_RUN);
                c.args(["--zpoline", "--backend", "host"]).arg(prog);
                c
            }
            Mode::Lkl => {
                let mut c = self.ns.command(LKL_RUN);
                c.args(["--zpoline", "--config"]).arg(&self.conf).arg(prog);
                c
            }
        }
    }

    /// `sh -c SCRIPT` in `mode`, with the `tree.py` environment of that mode (see
    /// [`Env::script_env`]: the tap and its host-side address, or LKL's `eth0` and
    /// address).
    fn sh(&self, mode: Mode, script: &str) -> Result<Output, String> {
        let (dev, addr) = if mode == Mode::Lkl {
            ("eth0", LKL)
        } else {
            (self.tap.as_str(), HOST)
        };
        let mut c = self.command(mode, "/bin/sh");
        c.args(["-c", script]).envs(self.script_env(dev, addr));
        support::output_within(&mut c, DEADLINE)
    }

    /// The environment of the `tree.py` scripts: `T` the temporary directory, `PY`
    /// the command that runs tree.py, `DEV` and `ADDR` the device and address of the
    /// side it runs on.
    fn script_env<'a>(&'a self, dev: &'a str, addr: &'a str) -> Vec<(&'a str, &'a str)> {
        vec![
            ("T", self.tmp.path().to_str().unwrap_or_default()),
            ("PY", &self.py),
            ("DEV", dev),
            ("ADDR", addr),
        ]
    }

    /// `curl` of `url` from the namespace's host side into `out`.
    fn curl(&self, url: &str, out: &Path, max_secs: u32) -> Result<Output, String> {
        let mut c = self.ns.command("curl");
        c.args(["-sS", "--max-time", &max_secs.to_string(), "-o"])
            .arg(out)
            .arg(url);
        support::output_within(&mut c, DEADLINE)
    }

    /// Fetches every file of [`FILES`] `rounds` times from `base` on the host side
    /// and compares it byte for byte with the served file.
    fn fetch_all(&self, base: &str, rounds: usize) -> Outcome {
        let got = self.tmp.path().join("got");
        for round in 0..rounds {
            for (name, _) in FILES {
                let _ = std::fs::remove_file(&got);
                let o = self.curl(&format!("{base}/{name}"), &got, 30)?;
                if !o.status.success() {
                    return Err(format!(
                        "round {round}: curl {base}/{name}: {}",
                        support::output_text(&o)
                    ));
                }
                let want = std::fs::read(self.www.join(name)).map_err(|e| e.to_string())?;
                let have = std::fs::read(&got).map_err(|e| e.to_string())?;
                if have != want {
                    return Err(format!(
                        "round {round}: {base}/{name}: {} bytes, not the {} bytes of the file{}",
                        have.len(),
                        want.len(),
                        if have.len() == want.len() {
                            " (same length, other bytes)"
                        } else {
                            ""
                        }
                    ));
                }
            }
        }
        Ok(())
    }

    /// Waits until `base/small.txt` answers on the host side (the server behind it
    /// may be inside LKL, where `ss` cannot see it), while `server` runs.
    fn wait_http(&self, base: &str, server: &mut Process, what: &str) -> Outcome {
        let got = self.tmp.path().join("probe");
        let start = Instant::now();
        let mut last = String::new();
        while start.elapsed() < Duration::from_secs(20) {
            if !server.running() {
                return Err(format!("{what} exited before serving; {last}"));
            }
            let o = self.curl(&format!("{base}/small.txt"), &got, 3)?;
            if o.status.success() {
                return Ok(());
            }
            last = support::output_text(&o);
            std::thread::sleep(Duration::from_millis(200));
        }
        Err(format!(
            "{what} did not answer {base} within 20 s; last curl: {last}"
        ))
    }
}

/// The `mtu` an `ip link show` printed.
fn mtu_of(out: &str) -> Option<u32> {
    let mut words = out.split_whitespace();
    while let Some(w) = words.next() {
        if w == "mtu" {
            return words.next()?.parse().ok();
        }
    }
    None
}

/// Checks the output of a script that must succeed and print each of `needles`.
fn ok_with(o: Result<Output, String>, needles: &[&str]) -> Outcome {
    support::expect_output(o, true, needles)
}

/// Runs `script` in every [`Mode`], checking `check` on its output; `undo` runs
/// natively after each mode without LKL, to put the namespace back.
fn in_every_mode(
    env: &Env,
    script: &str,
    check: impl Fn(Result<Output, String>) -> Outcome,
    undo: &str,
) -> Outcome {
    for mode in Mode::ALL {
        let r = check(env.sh(mode, script)).map_err(|e| mode.blame(e));
        if mode != Mode::Lkl {
            let u = env.sh(Mode::Native, undo)?;
            r?;
            if !u.status.success() {
                return Err(format!(
                    "undoing the run {}: {}",
                    mode.name(),
                    support::output_text(&u)
                ));
            }
        } else {
            r?;
        }
    }
    Ok(())
}

/// Case 1: `ip link set eth0 mtu 1400 && ip link show eth0`: the second `ip` sees
/// what the first set.
const MTU_SCRIPT: &str = r#"ip link set "$DEV" mtu 1400 && ip link show "$DEV""#;

fn mtu_seen(o: Result<Output, String>) -> Outcome {
    let o = o?;
    let out = String::from_utf8_lossy(&o.stdout);
    match mtu_of(&out) {
        Some(1400) if o.status.success() => Ok(()),
        Some(m) => Err(format!(
            "the second process saw mtu {m}: it does not share the first one's kernel; {}",
            support::output_text(&o)
        )),
        None => Err(format!("no mtu shown; {}", support::output_text(&o))),
    }
}

fn case_mtu(env: &Env) -> Outcome {
    in_every_mode(env, MTU_SCRIPT, mtu_seen, r#"ip link set "$DEV" mtu 1500"#)
}

fn case_mtu_hijack_script(env: &Env) -> Outcome {
    let mut c = env.ns.command(workspace().join("bin/lkl-hijack.sh"));
    c.args(["/bin/sh", "-c", MTU_SCRIPT])
        .env("LKL_HIJACK_ZPOLINE", "1")
        .env("LKL_HIJACK_CONFIG_FILE", &env.conf)
        .env("LKL_RUN", LKL_RUN)
        .env("DEV", "eth0");
    mtu_seen(support::output_within(&mut c, DEADLINE))
}

/// Case 2: a server and a client, two processes of one shell, over 10.77.0.1, an
/// address a third process (`ip`) added to `lo` inside the kernel.
const PAIR_SCRIPT: &str = r#"
ip addr add 10.77.0.1/32 dev lo || exit 1
rm -f "$T/pair.ready"
$PY server 10.77.0.1 7100 "$T/pair.ready" & srv=$!
trap 'kill $srv 2>/dev/null' EXIT
$PY client 10.77.0.1 7100 "$T/pair.ready"; st=$?
[ $st = 0 ] || kill $srv
wait $srv || st=1
exit $st
"#;

fn case_pair(env: &Env) -> Outcome {
    let needles = [
        "server sent 1048576 to 10.77.0.1",
        "client got 1048576 bytes, same True",
    ];
    in_every_mode(
        env,
        PAIR_SCRIPT,
        |o| ok_with(o, &needles),
        "ip addr del 10.77.0.1/32 dev lo",
    )
}

/// Case 3a: a forking Python HTTP server (each request served by a forked child).
fn case_forking_httpd(env: &Env) -> Outcome {
    let serve = |mode: Mode, port: &str| -> Outcome {
        let addr = mode.addr();
        let mut c = env.command(mode, "/usr/bin/python3");
        c.arg(&env.tree_py)
            .args(["httpd", addr, port])
            .arg(&env.www)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut server = env.ns.spawn(&mut c)?;
        let base = format!("http://{addr}:{port}");
        let what = format!("the forking server {}", mode.name());
        let what = what.as_str();
        let r = env
            .wait_http(&base, &mut server, what)
            .and_then(|()| env.fetch_all(&base, 2));
        if r.is_err() {
            // Its stderr (a traceback) says why; a server still running is killed,
            // and the message holds its output.
            let said = match server.finish(Duration::from_secs(1)) {
                Ok(o) => String::from_utf8_lossy(&o.stderr).into_owned(),
                Err(e) => e,
            };
            return r.map_err(|e| format!("{e}\n{what} printed:\n{said}"));
        }
        r
    };
    for (mode, port) in Mode::ALL.into_iter().zip(["8180", "8280", "8380"]) {
        serve(mode, port).map_err(|e| mode.blame(e))?;
    }
    Ok(())
}

/// nginx's configuration: master and 2 workers, everything it writes under `dir`.
fn nginx_conf(dir: &Path, www: &Path, listen: &str) -> Result<PathBuf, String> {
    let d = dir.display();
    let conf = format!(
        "user root;
worker_processes 2;
pid {d}/nginx.pid;
error_log {d}/error.log info;
events {{ worker_connections 64; }}
http {{
    access_log {d}/access.log;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    types {{ text/plain txt; application/octet-stream bin; }}
    sendfile on;
    keepalive_timeout 5;
    server {{
        listen {listen};
        root {www};
    }}
}}
",
        www = www.display(),
    );
    std::fs::create_dir_all(dir).map_err(|e| format!("{d}: {e}"))?;
    let path = dir.join("nginx.conf");
    std::fs::write(&path, conf).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(path)
}

/// nginx's workers: the live children of `master` that its error log says it started
/// (`start worker process PID`; under lkl-run `/proc/PID/cmdline` shows lkl-run's
/// command line, not nginx's process titles), waited for until there are `n` and none
/// of `gone`, up to 20 s.
fn nginx_workers(master: i32, log: &Path, n: usize, gone: &[i32]) -> Result<Vec<i32>, String> {
    let start = Instant::now();
    let mut seen = Vec::new();
    while start.elapsed() < Duration::from_secs(20) {
        let started: Vec<i32> = std::fs::read_to_string(log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_once("start worker process ")?.1.trim().parse().ok())
            .collect();
        seen = support::children_of(master)
            .into_iter()
            .filter(|&p| !support::ended(p))
            .collect();
        let workers: Vec<i32> = seen
            .iter()
            .copied()
            .filter(|p| started.contains(p) && !gone.contains(p))
            .collect();
        let stale = seen.iter().any(|p| gone.contains(p));
        if workers.len() == n && !stale {
            return Ok(workers);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(format!(
        "nginx master {master}: not {n} workers (other than {gone:?}) after 20 s; its live children: {seen:?}"
    ))
}

/// Case 3b: nginx, master and 2 workers, serves; a worker killed with SIGKILL is
/// replaced, and the replacement serves; then the other original worker too.
fn case_nginx(env: &Env) -> Outcome {
    let run = |mode: Mode, port: &str| -> Outcome {
        let addr = mode.addr();
        let dir = env.tmp.path().join(format!("nginx-{port}"));
        let conf = nginx_conf(&dir, &env.www, &format!("{addr}:{port}"))?;
        let log = dir.join("error.log");
        let mut c = env.command(mode, "/usr/sbin/nginx");
        c.arg("-p")
            .arg(&dir)
            .arg("-e")
            .arg(&log)
            .arg("-c")
            .arg(&conf)
            .args(["-g", "daemon off;"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut nginx = env.ns.spawn(&mut c)?;
        let master = nginx.id() as i32;
        let base = format!("http://{addr}:{port}");
        let log_tail = || {
            let s = std::fs::read_to_string(&log).unwrap_or_default();
            let lines: Vec<&str> = s.lines().collect();
            lines[lines.len().saturating_sub(15)..].join("\n")
        };
        let mut steps = || -> Outcome {
            env.wait_http(&base, &mut nginx, "nginx")?;
            let first = nginx_workers(master, &log, 2, &[])?;
            env.fetch_all(&base, 2)?;
            support::signal(first[0], libc::SIGKILL)?;
            let second = nginx_workers(master, &log, 2, &[first[0]])
                .map_err(|e| format!("after kill -9 of worker {}: {e}", first[0]))?;
            env.fetch_all(&base, 2)
                .map_err(|e| format!("after kill -9 of worker {}: {e}", first[0]))?;
            support::signal(first[1], libc::SIGKILL)?;
            nginx_workers(master, &log, 2, &[first[0], first[1]])
                .map_err(|e| format!("after kill -9 of worker {}: {e}", first[1]))?;
            // Only replacements are left: they serve.
            env.fetch_all(&base, 2).map_err(|e| {
                format!(
                    "only the replacement workers left (of {second:?}, after killing {first:?}): {e}"
                )
            })
        };
        let r = steps();
        // A graceful stop (SIGQUIT), then whatever is left goes with the namespace.
        let workers = support::children_of(master);
        let _ = support::signal(master, libc::SIGQUIT);
        let _ = nginx.finish(Duration::from_secs(10));
        for w in workers {
            if !support::ended(w) {
                let _ = support::signal(w, libc::SIGKILL);
            }
        }
        r.map_err(|e| format!("{e}\nnginx's error.log ends:\n{}", log_tail()))
    };
    for (mode, port) in Mode::ALL.into_iter().zip(["8181", "8281", "8381"]) {
        run(mode, port).map_err(|e| mode.blame(e))?;
    }
    Ok(())
}

/// Case 4: twenty short-lived processes in a row resolve a name through LKL's
/// `nameserver`; then LKL's UDP counters must show all their queries: one kernel.
fn case_dns(env: &Env) -> Outcome {
    let script = format!(
        "for i in $(seq 20); do getent hosts {DNS_NAME} || exit 1; done; cat /proc/net/snmp"
    );
    let o = env.sh(Mode::Lkl, &script)?;
    let out = String::from_utf8_lossy(&o.stdout);
    let answers = out
        .lines()
        .filter(|l| l.starts_with(DNS_ADDR) && l.contains(DNS_NAME))
        .count();
    if !o.status.success() || answers != 20 {
        return Err(format!(
            "{answers} of 20 lookups answered; {}",
            support::output_text(&o)
        ));
    }
    let sent = udp_out_datagrams(&out).ok_or_else(|| {
        format!(
            "no Udp line in /proc/net/snmp; {}",
            support::output_text(&o)
        )
    })?;
    if sent < 20 {
        return Err(format!(
            "20 lookups answered, but the kernel that `cat /proc/net/snmp` saw sent {sent} UDP \
             datagrams: each process had a kernel of its own"
        ));
    }
    Ok(())
}

/// `Udp: OutDatagrams` of a `/proc/net/snmp`.
fn udp_out_datagrams(snmp: &str) -> Option<u64> {
    let mut udp = snmp.lines().filter(|l| l.starts_with("Udp: "));
    let names = udp.next()?;
    let values = udp.next()?;
    let col = names.split_whitespace().position(|n| n == "OutDatagrams")?;
    values.split_whitespace().nth(col)?.parse().ok()
}

/// Case 5: a process of the tree killed (SIGKILL) while blocked in `recv` on an LKL
/// socket: a sibling server goes on, the mtu set before is intact, the port binds
/// again.
const KILL_SCRIPT: &str = r#"
waitfor() { for i in $(seq 200); do [ -e "$1" ] && return 0; sleep 0.1; done; echo "no $1"; return 1; }
rm -f "$T/echo.ready" "$T/block.ready"
ip link set "$DEV" mtu 1400 || exit 1
$PY echo "$ADDR" 7201 "$T/echo.ready" & echo_pid=$!
$PY block "$ADDR" 7202 "$T/block.ready" & block_pid=$!
trap 'kill $echo_pid $block_pid 2>/dev/null' EXIT
waitfor "$T/echo.ready" || exit 1
waitfor "$T/block.ready" || exit 1
[ "$(cat "$T/block.ready")" = ok ] || { cat "$T/block.ready"; exit 1; }
$PY ping "$ADDR" 7201 || exit 1
sleep 0.5
kill -9 $block_pid
wait $block_pid; echo "blocker ended with status $?"
ip link show "$DEV" || exit 1
$PY ping "$ADDR" 7201 || exit 1
$PY rebind "$ADDR" 7202 || exit 1
kill $echo_pid
echo tree done
"#;

fn case_kill_blocked(env: &Env) -> Outcome {
    let needles = [
        "blocker ended with status 137",
        "mtu 1400",
        "rebound",
        "tree done",
    ];
    let check = |o: Result<Output, String>| -> Outcome {
        let o = o?;
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        let text = support::output_text(&o);
        ok_with(Ok(o), &needles)?;
        if out.matches("echo ok").count() != 2 {
            return Err(format!(
                "the sibling's echo did not answer both before and after the kill; {text}"
            ));
        }
        Ok(())
    };
    in_every_mode(env, KILL_SCRIPT, check, r#"ip link set "$DEV" mtu 1500"#)
}

/// Case 6: when a run ends, nothing of it is left: no process, no open tap; a
/// second run on the same tap right after works. First a tree whose processes all
/// end with its top; then one whose child outlives the top and uses LKL after.
fn case_exit_clean(env: &Env) -> Outcome {
    let marker = format!("tree-exit-{}", std::process::id());
    let conf = env.tmp.path().join(format!("{marker}.json"));
    std::fs::copy(&env.conf, &conf).map_err(|e| e.to_string())?;
    let leftovers = |when: &str| -> Outcome {
        let procs = support::processes_marked(&marker);
        let holders = support::processes_holding_tap(&env.tap);
        if !procs.is_empty() || !holders.is_empty() {
            return Err(format!(
                "{when}: processes of the run left {procs:?}; holding tap {}: {holders:?}",
                env.tap
            ));
        }
        Ok(())
    };
    let second_run = |when: &str| -> Outcome {
        ok_with(
            env.zp(&env.conf, &["ip", "link", "show", "eth0"], &[]),
            &["eth0"],
        )
        .map_err(|e| format!("a second run on the tap {when}: {e}"))
    };

    // All of the tree ends with its top.
    let o = env.zp(
        &conf,
        &[
            "/bin/sh",
            "-c",
            &format!("ip link set eth0 up; getent hosts {DNS_NAME}; ip link show eth0"),
        ],
        &[],
    );
    ok_with(o, &[DNS_ADDR, "eth0"])?;
    leftovers("right after the run")?;
    second_run("right after the run")?;

    // A child outlives the top and uses LKL after it ended (an echo to the host
    // side); once the child is gone, so is everything else.
    let mut echo = env.ns.spawn(
        env.ns
            .command("/usr/bin/python3")
            .arg(&env.tree_py)
            .args(["echo", HOST, "7301"])
            .arg(env.tmp.path().join("host-echo.ready"))
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )?;
    env.ns.wait_listening("u", 7301)?;
    let late = env.tmp.path().join("late.out");
    let late_pid = env.tmp.path().join("late.pid");
    let _ = std::fs::remove_file(&late);
    let _ = std::fs::remove_file(&late_pid);
    let script = format!(
        "(sleep 1; exec /bin/sh -c 'echo $$ > {}; exec /usr/bin/python3 {} ping {HOST} 7301' > {} 2>&1) >/dev/null 2>&1 & echo top done",
        late_pid.display(),
        env.tree_py.display(),
        late.display()
    );
    ok_with(
        env.zp(&conf, &["/bin/sh", "-c", &script], &[]),
        &["top done"],
    )?;
    // The late child's pid, then its end.
    let start = Instant::now();
    let pid = loop {
        if let Some(p) = std::fs::read_to_string(&late_pid)
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok())
        {
            break p;
        }
        if start.elapsed() > Duration::from_secs(10) {
            return Err("the child meant to outlive the top never started".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    while !support::ended(pid) {
        if start.elapsed() > Duration::from_secs(30) {
            return Err(format!(
                "the late child {pid} did not end within 30 s; processes of the run: {:?}",
                support::processes_marked(&marker)
            ));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    leftovers("right after the last process of the run ended")?;
    second_run("right after the last process of the run ended")?;
    let said = std::fs::read_to_string(&late).unwrap_or_default();
    if !said.contains("echo ok") {
        return Err(format!(
            "the child that outlived the top could not use LKL: {said}"
        ));
    }
    if !echo.running() {
        return Err("the host-side echo server died".into());
    }
    Ok(())
}

/// Writes the files of [`FILES`] into `www`: text, patterns, and random bytes for the
/// largest.
fn write_files(www: &Path) -> Outcome {
    std::fs::create_dir_all(www).map_err(|e| format!("{}: {e}", www.display()))?;
    let mut random = vec![0u8; FILES[3].1];
    let mut f = std::fs::File::open("/dev/urandom").map_err(|e| e.to_string())?;
    std::io::Read::read_exact(&mut f, &mut random).map_err(|e| e.to_string())?;
    for (name, size) in FILES {
        let body: Vec<u8> = match name {
            "small.txt" => b"served through one LKL\n".to_vec(),
            "5m.bin" => random.clone(),
            _ => (0..size).map(|i| (i * 13 + i / 509) as u8).collect(),
        };
        assert_eq!(body.len(), size, "{name}");
        std::fs::write(www.join(name), body).map_err(|e| format!("{name}: {e}"))?;
    }
    Ok(())
}

fn setup() -> Result<(Env, support::NetnsEtc, Process), String> {
    support::require_root("network namespaces, taps and vm.mmap_min_addr=0")?;
    for (tool, pkg) in [
        ("dnsmasq", "dnsmasq-base"),
        ("sh", "dash"),
        ("curl", "curl"),
        ("getent", "libc-bin"),
        ("ss", "iproute2"),
        ("python3", "python3"),
        ("nginx", "nginx-light"),
    ] {
        support::require_tool(tool, pkg)?;
    }
    // The real interpreter, not a version manager's shim script.
    if !Path::new("/usr/bin/python3").is_file() {
        return Err("this test runs /usr/bin/python3: install it with `apt-get install python3` (scripts/setup.sh does)".into());
    }
    support::run(Command::new("sysctl").args(["-qw", "vm.mmap_min_addr=0"]))?;
    let ns = Netns::new("lkltree")?;
    let tap = support::unique_name("tt");
    ns.add_tap(&tap, &[&format!("{HOST}/24")])?;
    let resolv = ns.resolv_conf("nameserver 198.18.99.99\n")?;
    let tmp = TempDir::new("lkltree")?;
    let www = tmp.path().join("www");
    write_files(&www)?;
    let conf = tmp.path().join("conf.json");
    std::fs::write(
        &conf,
        format!(
            r#"{{"nameserver": "{HOST}", "mount": "proc,sysfs",
  "interfaces": [{{"type": "tap", "param": "{tap}", "ip": "{LKL}", "masklen": "24",
                  "mac": "12:34:56:78:9a:bd"}}]}}"#
        ),
    )
    .map_err(|e| e.to_string())?;
    let dns = ns.spawn_dnsmasq(HOST, DNS_NAME, DNS_ADDR, tmp.path())?;
    let tree_py = workspace().join("tests/zpoline-lkl/py/tree.py");
    let py = format!("/usr/bin/python3 {}", tree_py.display());
    Ok((
        Env {
            ns,
            tap,
            tmp,
            conf,
            tree_py,
            py,
            www,
        },
        resolv,
        dns,
    ))
}

fn main() -> ExitCode {
    let mut r = Report::default();
    let (env, _resolv, _dns) = match setup() {
        Ok(s) => s,
        Err(e) => {
            r.case("setup", Err(e));
            return r.finish();
        }
    };
    let cases: [(&str, &Case); 8] = [
        (
            "state set by one process is seen by the next (sh -c 'ip link set eth0 mtu 1400 && ip link show eth0')",
            &case_mtu,
        ),
        (
            "the same through LKL_HIJACK_ZPOLINE=1 lkl-hijack.sh",
            &case_mtu_hijack_script,
        ),
        (
            "two processes of one tree talk over an address only LKL has (10.77.0.1 on LKL's lo)",
            &case_pair,
        ),
        (
            "a forking Python HTTP server in LKL serves files byte-identical to curl on the host side",
            &case_forking_httpd,
        ),
        (
            "nginx (master and 2 workers) in LKL serves; a worker killed with SIGKILL is replaced and the replacement serves",
            &case_nginx,
        ),
        (
            "twenty short-lived processes in a row resolve a name through the one kernel",
            &case_dns,
        ),
        (
            "a process killed while blocked in recv: the tree goes on, state intact, the port binds again",
            &case_kill_blocked,
        ),
        (
            "when the run ends, no process is left and the tap opens again at once",
            &case_exit_clean,
        ),
    ];
    support::run_cases(&mut r, &env, &cases);
    r.finish()
}
