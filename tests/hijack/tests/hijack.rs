//! `liblkl-hijack.so` and `bin/lkl-hijack.sh` end to end, inside a network
//! namespace this test creates (with `lkl-test-support`).
//!
//! The namespace `lklhj-PID` holds taps `lkltap0` (198.18.0.1/24,
//! 2001:db8:18::1/64) and `lkltap1` (198.18.1.1/24, 2001:db8:19::1/64),
//! the host side of LKL's `eth0` and `eth1`. Each case runs real programs
//! under `lkl-hijack.sh` inside the namespace with a JSON config (or the
//! `LKL_HIJACK_*` variables) and checks what they print: `ip address`,
//! `ip route`, `ip -6 route`, `ip rule`, `ip neigh`, `tc qdisc`, the
//! sysctl (through `dump`), `ping` both ways, `curl` from a
//! `python3 -m http.server`, `iperf3`, two interfaces, the same config as
//! variables, bad input, the `debug` bits, a mixed host/LKL `poll`, the
//! pipe backend, `LKL_HIJACK_ZPOLINE` (lkl-run), and the script's refusal
//! of programs whose ld.so would ignore `LD_PRELOAD` (32-bit; setuid,
//! setgid, file capabilities run as `nobody`). Needs root, iproute2,
//! iputils-ping, curl, iperf3, python3, util-linux (`setpriv`) and
//! libcap2-bin (`setcap`); without them it fails naming what to install.
//! Prints `N passed, N failed`.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Output, Stdio};
use std::time::{Duration, Instant};

use lkl_test_support::{
    cargo_build, require_tool, wait_deadline, workspace, Netns, Outcome, Report, TempDir,
};

const TAP0: &str = "lkltap0";
const TAP1: &str = "lkltap1";
const MAC0: &str = "02:11:22:33:44:55";
const MAC1: &str = "02:11:22:33:44:66";
/// Debian's python (not a shim script, which would load the library too).
const PYTHON: &str = "/usr/bin/python3";
/// One hijacked command gives up after this long.
const DEADLINE: Duration = Duration::from_secs(60);

#[path = "hijack/config_errors.rs"]
mod config_errors;

/// What every case needs.
struct Env {
    ns: Netns,
    dir: TempDir,
    script: PathBuf,
    lib: PathBuf,
    /// `lkl-run`, for the configuration errors under zpoline.
    lkl_run: PathBuf,
}

/// A named case.
type Case = (&'static str, fn(&Env) -> Outcome);

fn main() -> ExitCode {
    let mut report = Report::default();
    let env = match setup() {
        Ok(env) => env,
        Err(e) => {
            report.case("setup", Err(e));
            return report.finish();
        }
    };
    let cases: &[Case] = &[
        (
            "ip address show: lo and eth0 with the address and MAC",
            ip_address_show,
        ),
        ("ip route and ip -6 route", ip_routes),
        (
            "ip rule: ifgateway tables 2*ifindex and 2*ifindex+1",
            ip_rules,
        ),
        ("ip neigh: permanent entries", ip_neigh),
        ("tc qdisc show: fq", tc_qdisc),
        ("sysctl read back (dump)", sysctl_dump),
        ("boot_cmdline, mount, nameserver, delay_main", boot_keys),
        ("ping -c 3 the host side", ping4),
        ("ping -6 -c 3 the host side", ping6),
        ("the host side pings LKL", host_pings_lkl),
        ("curl from python3 -m http.server: byte-identical", curl),
        ("iperf3 -c against the host side", iperf3),
        (
            "a hijacked python3 -m http.server serves the host side",
            hijacked_server,
        ),
        (
            "singlecpu 1 pins LKL's threads, not the program's",
            single_cpu,
        ),
        (
            "two interfaces, each with its own rule tables",
            two_interfaces,
        ),
        (
            "the same config as variables gives the same result",
            env_vars_same,
        ),
        (
            "malformed JSON: file:line:column, program not started",
            malformed_json,
        ),
        ("unknown key: a warning naming it", unknown_key),
        ("bad values: an error naming the key", bad_values),
        ("missing tap: named, with how to create it", missing_tap),
        (
            "debug 0: no boot log; 1: boot log; 0x200: waits for Enter",
            debug_log,
        ),
        ("debug 0x100: pauses after the program exits", debug_pause),
        (
            "mixed poll/select/epoll of a host pipe and LKL sockets; sendfile, splice",
            mixed_poll,
        ),
        (
            "fork: the child is refused LKL, exits cleanly; the parent goes on",
            fork_child,
        ),
        (
            "bad pointers to what the library reads itself: EFAULT, the program goes on",
            bad_pointers,
        ),
        ("liblkl-hijack.so is there", contract_name),
        (
            "pipe backend: two hijacked processes ping each other",
            pipe_backend,
        ),
        (
            "LKL_HIJACK_ZPOLINE: any value but empty or 0 runs lkl-run",
            zpoline_values,
        ),
        (
            "script check: a 32-bit program is refused, under zpoline too",
            refuses_32_bit,
        ),
        (
            "script check: setuid, setgid, file capabilities as non-root are refused",
            refuses_secure_exec,
        ),
        (
            "config error mem=100G: asked and host's memory (hijack, lkl-run)",
            config_errors::memory,
        ),
        (
            "config error mac, delay_main, empty file: key, value, fix (hijack, lkl-run)",
            config_errors::values,
        ),
        (
            "config error /dev/net/tun 0600 for nobody: the device and the fix (hijack, lkl-run)",
            config_errors::tun_permission,
        ),
        (
            "ip=dhcp and gateway: a warning, the program runs (hijack, lkl-run)",
            config_errors::dhcp_gateway,
        ),
        (
            "idle: ip=dhcp without a server and a hijacked sleep 3 barely use the CPU",
            config_errors::idle,
        ),
    ];
    // LKL_HIJACK_TEST_ONLY=WORD|WORD runs only the cases whose name has
    // one of the words.
    let only = std::env::var("LKL_HIJACK_TEST_ONLY").unwrap_or_default();
    let wanted = |n: &str| only.split('|').any(|w| n.contains(w));
    for (name, case) in cases.iter().filter(|(n, _)| wanted(n)) {
        report.case(name, case(&env));
    }
    report.finish()
}

fn setup() -> Result<Env, String> {
    for (tool, pkg) in [
        ("ip", "iproute2"),
        ("tc", "iproute2"),
        ("ping", "iputils-ping"),
        ("curl", "curl"),
        ("iperf3", "iperf3"),
        ("dnsmasq", "dnsmasq-base"),
        ("unshare", "util-linux"),
        ("setpriv", "util-linux"),
        ("mknod", "coreutils"),
    ] {
        require_tool(tool, pkg)?;
    }
    if !Path::new(PYTHON).is_file() {
        return Err(format!("this test needs {PYTHON}: apt-get install python3"));
    }
    let release = cargo_build("lkl-hijack")?;
    let lkl_run = cargo_build("loader")?.join("lkl-run");
    // The contract name; build.rs leaves the link, make sure of it.
    let lib = release.join("liblkl-hijack.so");
    if std::fs::symlink_metadata(&lib).is_err() {
        std::os::unix::fs::symlink("liblkl_hijack.so", &lib)
            .map_err(|e| format!("{}: {e}", lib.display()))?;
    }
    let script = workspace().join("bin/lkl-hijack.sh");
    // The LKL_HIJACK_ZPOLINE cases run lkl-run --zpoline, which maps page 0.
    lkl_test_support::run(Command::new("sysctl").args(["-qw", "vm.mmap_min_addr=0"]))?;
    let ns = Netns::new("lklhj")?;
    ns.add_tap(TAP0, &["198.18.0.1/24", "2001:db8:18::1/64"])?;
    ns.add_tap(TAP1, &["198.18.1.1/24", "2001:db8:19::1/64"])?;
    let dir = TempDir::new("lklhj")?;
    let env = Env {
        ns,
        dir,
        script,
        lib,
        lkl_run,
    };
    env.write("good.json", &config(&[&iface0()], GOOD_TOP))?;
    env.write("two.json", &config(&[&iface0(), &iface1()], ""))?;
    env.write("basic.json", &config(&[BASIC], ""))?;
    Ok(env)
}

/// The top-level keys of `good.json`.
const GOOD_TOP: &str = r#""gateway": "198.18.0.1", "gateway6": "2001:db8:18::1",
  "sysctl": "net.ipv4.tcp_wmem=4096 87380 2147483647;net.ipv4.ip_forward=1",
  "mount": "proc", "dump": "/proc/sys/net/ipv4/tcp_wmem", "singlecpu": "2","#;

/// `eth0` with every interface key.
fn iface0() -> String {
    format!(
        r#"{{ "type": "tap", "param": "{TAP0}", "mac": "{MAC0}", "mtu": "1400",
      "ip": "198.18.0.2", "masklen": "24", "ifgateway": "198.18.0.1",
      "ipv6": "2001:db8:18::2", "masklen6": "64", "ifgateway6": "2001:db8:18::1",
      "neigh": "198.18.0.9|02:00:00:00:00:09;2001:db8:18::9|02:00:00:00:00:0a",
      "qdisc": "root|fq", "offload": "0xc803" }}"#
    )
}

/// `eth1` for the two-interface case.
fn iface1() -> String {
    format!(
        r#"{{ "type": "tap", "param": "{TAP1}", "mac": "{MAC1}",
      "ip": "198.18.1.2", "masklen": "24", "ifgateway": "198.18.1.1",
      "ipv6": "2001:db8:19::2", "masklen6": "64", "ifgateway6": "2001:db8:19::1" }}"#
    )
}

/// The config also given as variables in [`env_vars_same`]. Every config
/// on `lkltap0` asks for the same offloads: a tap keeps the offloads of
/// its last user (TUNSETOFFLOAD), and a later user without them would get
/// frames it cannot take.
const BASIC: &str = r#"{ "type": "tap", "param": "lkltap0", "mac": "02:11:22:33:44:55",
  "ip": "198.18.0.2", "masklen": "24", "ifgateway": "198.18.0.1",
  "ipv6": "2001:db8:18::2", "masklen6": "64", "mtu": "1400",
  "neigh": "198.18.0.9|02:00:00:00:00:09", "qdisc": "root|fq", "offload": "0xc803" }"#;

fn config(ifaces: &[&str], top: &str) -> String {
    format!(
        "{{\n  {top}\n  \"interfaces\": [\n    {}\n  ]\n}}\n",
        ifaces.join(",\n    ")
    )
}

/// What a hijacked command did.
struct Run {
    out: Output,
    what: String,
}

impl Run {
    fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.out.stdout).into_owned()
    }
    fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.out.stderr).into_owned()
    }
    /// Its stdout if it succeeded, else an error with its stderr.
    fn ok(self) -> Result<String, String> {
        if self.out.status.success() {
            Ok(self.stdout())
        } else {
            Err(format!(
                "{} failed ({}): {}{}",
                self.what,
                self.out.status,
                self.stderr().trim(),
                self.stdout().trim()
            ))
        }
    }
}

impl Env {
    fn write(&self, name: &str, text: &str) -> Outcome {
        let p = self.dir.path().join(name);
        std::fs::write(&p, text).map_err(|e| format!("{}: {e}", p.display()))
    }

    /// `lkl-hijack.sh ARGS` in the namespace, configured by `vars` (e.g.
    /// `LKL_HIJACK_CONFIG_FILE`), in the temp dir.
    fn command(&self, vars: &[(&str, String)], args: &[&str]) -> Command {
        let mut c = self.ns.command(&self.script);
        c.args(args)
            .env_remove("LKL_HIJACK_CONFIG_FILE")
            .env_remove("LKL_HIJACK_ZPOLINE")
            .env("LKL_HIJACK_LIB", &self.lib)
            .env("LKL_RUN", &self.lkl_run)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in vars {
            c.env(k, v);
        }
        c
    }

    fn run_with(&self, vars: &[(&str, String)], args: &[&str]) -> Result<Run, String> {
        let what = format!("`lkl-hijack.sh {}`", args.join(" "));
        let child = self
            .command(vars, args)
            .spawn()
            .map_err(|e| format!("cannot run {what}: {e}"))?;
        let out = wait_deadline(child, DEADLINE, &what)?;
        Ok(Run { out, what })
    }

    /// Runs with config file `config` (in the temp dir).
    fn run(&self, config: &str, args: &[&str]) -> Result<Run, String> {
        let file = self.dir.path().join(config).to_string_lossy().into_owned();
        self.run_with(&[("LKL_HIJACK_CONFIG_FILE", file)], args)
    }

    /// Runs with `good.json` and must succeed; its stdout.
    fn good(&self, args: &[&str]) -> Result<String, String> {
        self.run("good.json", args)?.ok()
    }

    /// A command in the namespace without the library; its stdout.
    fn host(&self, prog: &str, args: &[&str]) -> Result<String, String> {
        lkl_test_support::run(self.ns.command(prog).args(args))
    }
}

/// Fails unless `out` has a line containing every one of `parts`.
fn has_line(out: &str, parts: &[&str], what: &str) -> Outcome {
    if out.lines().any(|l| parts.iter().all(|p| l.contains(p))) {
        Ok(())
    } else {
        Err(format!("{what}: no line with {parts:?} in:\n{out}"))
    }
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
            if ifname.split('@').next() == Some(name) {
                start = Some(pos);
            }
        }
        pos += line.len();
    }
    start.map(|s| &out[s..])
}

fn ip_address_show(env: &Env) -> Outcome {
    let out = env.good(&["ip", "address", "show"])?;
    let lo = link_block(&out, "lo").ok_or_else(|| format!("no `lo` in:\n{out}"))?;
    has_line(lo, &["inet 127.0.0.1/8"], "lo")?;
    let eth0 = link_block(&out, "eth0").ok_or_else(|| format!("no `eth0` in:\n{out}"))?;
    has_line(eth0, &["inet 198.18.0.2/24"], "eth0")?;
    has_line(eth0, &["inet6 2001:db8:18::2/64"], "eth0")?;
    has_line(eth0, &["link/ether", MAC0], "eth0")?;
    has_line(eth0, &["mtu 1400", "qdisc fq", "UP"], "eth0")?;
    if out.contains(TAP0) {
        return Err(format!(
            "the namespace's own {TAP0} is listed: the host answered:\n{out}"
        ));
    }
    Ok(())
}

fn ip_routes(env: &Env) -> Outcome {
    let out = env.good(&["ip", "route"])?;
    has_line(
        &out,
        &["198.18.0.0/24 dev eth0", "src 198.18.0.2"],
        "ip route",
    )?;
    has_line(
        &out,
        &["default via 198.18.0.1 dev eth0"],
        "ip route (gateway)",
    )?;
    let out6 = env.good(&["ip", "-6", "route"])?;
    has_line(&out6, &["2001:db8:18::/64 dev eth0"], "ip -6 route")?;
    has_line(
        &out6,
        &["default via 2001:db8:18::1 dev eth0"],
        "ip -6 route (gateway6)",
    )
}

fn ip_rules(env: &Env) -> Outcome {
    // eth0 is ifindex 2 (lo is 1): tables 4 and 5.
    let out = env.good(&["ip", "rule"])?;
    has_line(&out, &["from 198.18.0.2", "lookup 4"], "ip rule")?;
    let out6 = env.good(&["ip", "-6", "rule"])?;
    has_line(&out6, &["from 2001:db8:18::2", "lookup 5"], "ip -6 rule")?;
    let t4 = env.good(&["ip", "route", "show", "table", "4"])?;
    has_line(&t4, &["default via 198.18.0.1 dev eth0"], "table 4")?;
    let t5 = env.good(&["ip", "-6", "route", "show", "table", "5"])?;
    has_line(&t5, &["default via 2001:db8:18::1 dev eth0"], "table 5")
}

fn ip_neigh(env: &Env) -> Outcome {
    let out = env.good(&["ip", "neigh"])?;
    has_line(
        &out,
        &["198.18.0.9 dev eth0 lladdr 02:00:00:00:00:09", "PERMANENT"],
        "ip neigh",
    )?;
    has_line(
        &out,
        &[
            "2001:db8:18::9 dev eth0 lladdr 02:00:00:00:00:0a",
            "PERMANENT",
        ],
        "ip neigh",
    )
}

fn tc_qdisc(env: &Env) -> Outcome {
    let out = env.good(&["tc", "qdisc", "show", "dev", "eth0"])?;
    has_line(&out, &["qdisc fq", "root"], "tc qdisc show dev eth0")?;
    let all = env.good(&["tc", "qdisc", "show"])?;
    has_line(&all, &["qdisc fq", "dev eth0", "root"], "tc qdisc show")
}

fn sysctl_dump(env: &Env) -> Outcome {
    // `dump` prints the LKL file at exit; `true` prints nothing itself.
    let out = env.good(&["true"])?;
    has_line(
        &out,
        &["/proc/sys/net/ipv4/tcp_wmem:", "4096\t87380\t2147483647"],
        "dump",
    )
}

/// `boot_cmdline` reaches the kernel, `mount` mounts `/proc` and `/sysfs`,
/// `nameserver` lands in LKL's `/etc/resolv.conf` (all read back with
/// `dump`), and `delay_main` holds `main` back.
fn boot_keys(env: &Env) -> Outcome {
    env.write(
        "boot.json",
        &config(
            &[BASIC],
            r#""boot_cmdline": "mem=48M lkltest=1", "mount": "proc,sysfs",
  "nameserver": "198.18.0.53", "delay_main": "700000",
  "dump": "/proc/cmdline,/sysfs/class/net/eth0/address,/etc/resolv.conf","#,
        ),
    )?;
    let start = Instant::now();
    let out = env.run("boot.json", &["true"])?.ok()?;
    let spent = start.elapsed();
    has_line(
        &out,
        &["/proc/cmdline:", "mem=48M lkltest=1"],
        "boot_cmdline",
    )?;
    has_line(
        &out,
        &["/sysfs/class/net/eth0/address:", MAC0],
        "mount sysfs",
    )?;
    has_line(&out, &["nameserver 198.18.0.53"], "nameserver")?;
    if spent < Duration::from_millis(700) {
        return Err(format!("delay_main 700000 us, but the run took {spent:?}"));
    }
    Ok(())
}

fn ping4(env: &Env) -> Outcome {
    let out = env.good(&["ping", "-c", "3", "-i", "0.2", "-W", "5", "198.18.0.1"])?;
    has_line(&out, &["3 packets transmitted, 3 received"], "ping")
}

fn ping6(env: &Env) -> Outcome {
    let out = env.good(&[
        "ping",
        "-6",
        "-c",
        "3",
        "-i",
        "0.2",
        "-W",
        "5",
        "2001:db8:18::1",
    ])?;
    has_line(&out, &["3 packets transmitted, 3 received"], "ping -6")
}

/// Pings `addr` from the namespace's host side until it answers (LKL may
/// still be booting), for up to 20 s.
fn host_ping_until(env: &Env, args: &[&str]) -> Outcome {
    let start = Instant::now();
    loop {
        let r = env.host("ping", args);
        match r {
            Ok(_) => return Ok(()),
            Err(e) if start.elapsed() > Duration::from_secs(20) => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

fn host_pings_lkl(env: &Env) -> Outcome {
    // LKL stays up while the hijacked `sleep` runs.
    let sleeper = env.ns.spawn(&mut env.command(
        &[("LKL_HIJACK_CONFIG_FILE", path(env, "good.json"))],
        &["sleep", "30"],
    ))?;
    let r = host_ping_until(env, &["-c", "1", "-W", "1", "198.18.0.2"])
        .and_then(|()| {
            host_ping_until(
                env,
                &["-6", "-c", "3", "-i", "0.2", "-W", "2", "2001:db8:18::2"],
            )
        })
        .and_then(|()| host_ping_until(env, &["-c", "3", "-i", "0.2", "-W", "2", "198.18.0.2"]));
    drop(sleeper);
    r
}

fn path(env: &Env, name: &str) -> String {
    env.dir.path().join(name).to_string_lossy().into_owned()
}

fn curl(env: &Env) -> Outcome {
    let (www, body) = blob(env)?;
    let _server = env.ns.spawn(
        env.ns
            .command(PYTHON)
            .args(["-m", "http.server", "--bind", "198.18.0.1", "8080"])
            .current_dir(&www)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )?;
    let out = path(env, "fetched");
    env.good(&[
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
        &out,
        "http://198.18.0.1:8080/blob",
    ])?;
    same_body(&out, &body)
}

/// Fails unless file `out` holds `body`.
fn same_body(out: &str, body: &[u8]) -> Outcome {
    let got = std::fs::read(out).map_err(|e| format!("{out}: {e}"))?;
    if got != body {
        return Err(format!(
            "the body differs: {} bytes fetched, {} served",
            got.len(),
            body.len()
        ));
    }
    Ok(())
}

/// The body served in [`curl`] and [`hijacked_server`].
fn blob(env: &Env) -> Result<(PathBuf, Vec<u8>), String> {
    let www = env.dir.path().join("www");
    std::fs::create_dir_all(&www).map_err(|e| format!("{}: {e}", www.display()))?;
    let body: Vec<u8> = (0..300_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    std::fs::write(www.join("blob"), &body).map_err(|e| format!("blob: {e}"))?;
    Ok((www, body))
}

/// A `python3 -m http.server` under hijack serves the host side's `curl`.
fn hijacked_server(env: &Env) -> Outcome {
    let (www, body) = blob(env)?;
    let _server = env.ns.spawn(
        env.command(
            &[("LKL_HIJACK_CONFIG_FILE", path(env, "basic.json"))],
            &[PYTHON, "-m", "http.server", "--bind", "198.18.0.2", "8081"],
        )
        .current_dir(&www)
        .stdout(Stdio::null())
        .stderr(Stdio::null()),
    )?;
    let out = path(env, "served");
    env.host(
        "curl",
        &[
            "-sS",
            "-m",
            "20",
            "--retry",
            "30",
            "--retry-connrefused",
            "--retry-all-errors",
            "--retry-delay",
            "1",
            "-o",
            &out,
            "http://198.18.0.2:8081/blob",
        ],
    )?;
    same_body(&out, &body)
}

/// With `singlecpu` 1, LKL's kernel threads run on one CPU while the
/// program's main thread keeps every CPU it had.
fn single_cpu(env: &Env) -> Outcome {
    env.write("single.json", &config(&[BASIC], r#""singlecpu": "1","#))?;
    let mut proc = env.ns.spawn(&mut env.command(
        &[("LKL_HIJACK_CONFIG_FILE", path(env, "single.json"))],
        &["sleep", "30"],
    ))?;
    // Booted once the host side reaches it.
    host_ping_until(env, &["-c", "1", "-W", "1", "198.18.0.2"])?;
    let pid = proc.id();
    let allowed = |task: &str| -> String {
        std::fs::read_to_string(format!("/proc/{pid}/task/{task}/status"))
            .unwrap_or_default()
            .lines()
            .find_map(|l| {
                l.strip_prefix("Cpus_allowed_list:")
                    .map(|v| v.trim().to_owned())
            })
            .unwrap_or_default()
    };
    let main = allowed(&pid.to_string());
    let tasks: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .map_err(|e| format!("/proc/{pid}/task: {e}"))?
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .filter(|t| *t != pid.to_string())
        .collect();
    let lists: Vec<String> = tasks.iter().map(|t| allowed(t)).collect();
    let single = |l: &String| !l.is_empty() && !l.contains(',') && !l.contains('-');
    let pinned = lists.iter().filter(|l| single(l)).count();
    let running = proc.running();
    drop(proc);
    if !running {
        return Err("the hijacked sleep ended early".into());
    }
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cpus > 1 && single(&main) {
        return Err(format!("the program's main thread is pinned too: {main}"));
    }
    if pinned == 0 || (cpus > 1 && pinned < lists.len() / 2) {
        return Err(format!(
            "LKL's threads are not pinned: {lists:?} (main {main})"
        ));
    }
    Ok(())
}

fn iperf3(env: &Env) -> Outcome {
    let _server = env.ns.spawn(
        env.ns
            .command("iperf3")
            .args(["-s", "-1", "-B", "198.18.0.1", "-p", "5201"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )?;
    // The server needs a moment to listen: retry the client briefly.
    let start = Instant::now();
    loop {
        let run = env.run(
            "basic.json",
            &["iperf3", "-c", "198.18.0.1", "-p", "5201", "-t", "2"],
        )?;
        let out = run.stdout();
        if run.out.status.success() {
            return has_line(&out, &["receiver"], "iperf3 -c");
        }
        if start.elapsed() > Duration::from_secs(10) {
            return Err(format!("iperf3 -c failed: {}{out}", run.stderr()));
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn two_interfaces(env: &Env) -> Outcome {
    let rules = env.run("two.json", &["ip", "rule"])?.ok()?;
    has_line(&rules, &["from 198.18.0.2", "lookup 4"], "ip rule")?;
    has_line(&rules, &["from 198.18.1.2", "lookup 6"], "ip rule")?;
    let rules6 = env.run("two.json", &["ip", "-6", "rule"])?.ok()?;
    has_line(&rules6, &["from 2001:db8:18::2", "lookup 5"], "ip -6 rule")?;
    has_line(&rules6, &["from 2001:db8:19::2", "lookup 7"], "ip -6 rule")?;
    let t6 = env
        .run("two.json", &["ip", "route", "show", "table", "6"])?
        .ok()?;
    has_line(&t6, &["default via 198.18.1.1 dev eth1"], "table 6")?;
    let addrs = env
        .run("two.json", &["ip", "address", "show", "eth1"])?
        .ok()?;
    has_line(&addrs, &["inet 198.18.1.2/24"], "eth1")?;
    has_line(&addrs, &["link/ether", MAC1], "eth1")?;
    // Traffic from each address leaves by its own interface.
    let p = env
        .run(
            "two.json",
            &[
                "ping",
                "-c",
                "1",
                "-W",
                "5",
                "-I",
                "198.18.1.2",
                "198.18.1.1",
            ],
        )?
        .ok()?;
    has_line(&p, &["1 received"], "ping over eth1")
}

fn env_vars_same(env: &Env) -> Outcome {
    let vars: Vec<(&str, String)> = [
        ("LKL_HIJACK_NET_IFTYPE", "tap"),
        ("LKL_HIJACK_NET_IFPARAMS", TAP0),
        ("LKL_HIJACK_NET_MAC", MAC0),
        ("LKL_HIJACK_NET_IP", "198.18.0.2"),
        ("LKL_HIJACK_NET_NETMASK_LEN", "24"),
        ("LKL_HIJACK_NET_IFGATEWAY", "198.18.0.1"),
        ("LKL_HIJACK_NET_IPV6", "2001:db8:18::2"),
        ("LKL_HIJACK_NET_NETMASK6_LEN", "64"),
        ("LKL_HIJACK_NET_MTU", "1400"),
        ("LKL_HIJACK_NET_NEIGHBOR", "198.18.0.9|02:00:00:00:00:09"),
        ("LKL_HIJACK_NET_QDISC", "root|fq"),
        ("LKL_HIJACK_OFFLOAD", "0xc803"),
    ]
    .iter()
    .map(|(k, v)| (*k, v.to_string()))
    .collect();
    for args in [
        &["ip", "address", "show"][..],
        &["ip", "route"],
        &["ip", "rule"],
        &["ip", "neigh"],
        &["tc", "qdisc", "show"],
    ] {
        // IPv6 link-local addresses may still be tentative: not compared.
        let strip = |s: String| s.replace(" tentative", "");
        let from_file = strip(env.run("basic.json", args)?.ok()?);
        let from_vars = strip(env.run_with(&vars, args)?.ok()?);
        if from_file != from_vars {
            return Err(format!(
                "`{}` differs:\nwith basic.json:\n{from_file}\nwith the variables:\n{from_vars}",
                args.join(" ")
            ));
        }
    }
    Ok(())
}

/// A bad config must stop the program before `main` with a message
/// containing each of `want`.
fn refused(env: &Env, name: &str, text: &str, want: &[&str]) -> Outcome {
    env.write(name, text)?;
    let run = env.run(name, &["echo", "the program ran"])?;
    let err = run.stderr();
    if run.out.status.success() || run.stdout().contains("the program ran") {
        return Err(format!(
            "{name}: the program ran ({}): {err}",
            run.out.status
        ));
    }
    for w in want {
        if !err.contains(w) {
            return Err(format!("{name}: the error does not contain {w:?}: {err}"));
        }
    }
    Ok(())
}

fn malformed_json(env: &Env) -> Outcome {
    refused(
        env,
        "malformed.json",
        "{\n  \"gateway\": \"198.18.0.1\"\n  \"debug\": \"1\"\n}\n",
        &["malformed.json:3:3", "malformed JSON"],
    )
}

fn unknown_key(env: &Env) -> Outcome {
    env.write(
        "unknown.json",
        &config(&[BASIC], r#""gatway": "198.18.0.1", "#),
    )?;
    let run = env.run("unknown.json", &["echo", "the program ran"])?;
    let err = run.stderr();
    let out = run.ok()?;
    if !out.contains("the program ran") {
        return Err(format!("the program did not run: {out}"));
    }
    if !(err.contains("warning") && err.contains("gatway")) {
        return Err(format!("no warning naming `gatway`: {err:?}"));
    }
    Ok(())
}

fn bad_values(env: &Env) -> Outcome {
    refused(
        env,
        "masklen.json",
        r#"{"interfaces": [{"type": "tap", "param": "lkltap0", "ip": "198.18.0.2", "masklen": "99"}]}"#,
        &["interfaces[0].masklen", "99"],
    )?;
    refused(
        env,
        "mac.json",
        r#"{"interfaces": [{"type": "tap", "param": "lkltap0", "mac": "12:34:zz"}]}"#,
        &["interfaces[0].mac", "12:34:zz"],
    )?;
    // A kernel that cannot boot: the key, and the kernel's own words.
    refused(
        env,
        "badboot.json",
        r#"{"boot_cmdline": "mem=1K"}"#,
        &["boot_cmdline", "cannot boot LKL", "mem=1K is too small"],
    )
}

fn missing_tap(env: &Env) -> Outcome {
    refused(
        env,
        "notap.json",
        r#"{"interfaces": [{"type": "tap", "param": "lklnotap9"}]}"#,
        &[
            "interfaces[0].param",
            "lklnotap9",
            "ip tuntap add dev lklnotap9 mode tap",
        ],
    )
}

fn debug_log(env: &Env) -> Outcome {
    // Quiet: nothing at all on stderr, no boot banner, no halt error.
    let quiet = env.run("basic.json", &["true"])?;
    if !quiet.stderr().trim().is_empty() {
        return Err(format!(
            "stderr is not empty with debug 0 (boot log or halt error): {}",
            quiet.stderr()
        ));
    }
    env.write("debug.json", &config(&[BASIC], r#""debug": "1","#))?;
    let loud = env.run("debug.json", &["true"])?;
    if !loud.stderr().contains("Linux version") {
        return Err(format!("no boot log with debug 1: {:?}", loud.stderr()));
    }
    // 0x200 asks for Enter before the boot; stdin is empty, so it goes on.
    env.write("enter.json", &config(&[BASIC], r#""debug": "0x200","#))?;
    let enter = env.run("enter.json", &["echo", "ran"])?;
    let err = enter.stderr();
    if !(err.contains("press Enter") && enter.ok()?.contains("ran")) {
        return Err(format!("debug 0x200: no prompt or no run: {err:?}"));
    }
    Ok(())
}

fn debug_pause(env: &Env) -> Outcome {
    env.write("pause.json", &config(&[BASIC], r#""debug": "0x100","#))?;
    let log = env.dir.path().join("pause.err");
    let file = std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
    let mut cmd = env.command(
        &[("LKL_HIJACK_CONFIG_FILE", path(env, "pause.json"))],
        &["true"],
    );
    cmd.stderr(file).stdout(Stdio::null());
    let mut proc = env.ns.spawn(&mut cmd)?;
    // The program (`true`) ends at once and the handler says so ...
    let start = Instant::now();
    let read = || std::fs::read_to_string(&log).unwrap_or_default();
    while !read().contains("debug 0x100") {
        if start.elapsed() > Duration::from_secs(20) || !proc.running() {
            return Err(format!("no pause message: {}", read()));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // ... and LKL stays up: the host still reaches it.
    host_ping_until(env, &["-c", "1", "-W", "1", "198.18.0.2"])?;
    if !proc.running() {
        return Err(format!("the process ended despite debug 0x100: {}", read()));
    }
    Ok(())
}

/// A python program waiting on a host pipe and LKL sockets together, with
/// `select.poll`, `select.select` and `selectors` (epoll): each wait must
/// end promptly when either side becomes ready.
const MIXED_POLL_PY: &str = r#"
import os, select, selectors, socket, sys, threading, time

r, w = os.pipe()
a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
a.bind(("198.18.0.2", 9999))
b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
assert a.fileno() >= 512, a.fileno()

def later(f):
    threading.Timer(0.3, f).start()

def check(name, wait, ready, drain):
    t = time.monotonic()
    got = wait()
    spent = time.monotonic() - t
    if ready not in got or spent > 2.0 or spent < 0.2:
        print("FAIL", name, got, spent); sys.exit(1)
    drain()
    print("ok", name, round(spent, 2))

p = select.poll()
p.register(r, select.POLLIN)
p.register(a.fileno(), select.POLLIN)
pw = lambda: [fd for fd, ev in p.poll(5000)]
dp = lambda: os.read(r, 10)
ds = lambda: a.recv(100)
later(lambda: os.write(w, b"x"));                         check("poll pipe", pw, r, dp)
later(lambda: b.sendto(b"y", ("198.18.0.2", 9999)));      check("poll socket", pw, a.fileno(), ds)
sw = lambda: select.select([r, a], [], [], 5)[0]
later(lambda: os.write(w, b"x"));                         check("select pipe", sw, r, dp)
later(lambda: b.sendto(b"y", ("198.18.0.2", 9999)));      check("select socket", sw, a, ds)
s = selectors.DefaultSelector()
s.register(r, selectors.EVENT_READ)
s.register(a, selectors.EVENT_READ)
ew = lambda: [k.fileobj for k, ev in s.select(5)]
later(lambda: os.write(w, b"x"));                         check("epoll pipe", ew, r, dp)
later(lambda: b.sendto(b"y", ("198.18.0.2", 9999)));      check("epoll socket", ew, a, ds)
t = time.monotonic(); n = p.poll(300); spent = time.monotonic() - t
if n or not (0.25 < spent < 2.0):
    print("FAIL timeout", n, spent); sys.exit(1)
print("ok timeout", round(spent, 2))

# sendfile from a host file to an LKL TCP socket (socket.sendfile uses
# os.sendfile for stream sockets).
data = bytes((i * 7919) % 251 for i in range(200000))
with open("sendfile.src", "wb") as f:
    f.write(data)
l = socket.socket(); l.bind(("198.18.0.2", 9998)); l.listen(1)
c = socket.create_connection(("198.18.0.2", 9998)); s2, _ = l.accept()
got = bytearray()
def reader():
    while len(got) < len(data):
        chunk = s2.recv(65536)
        if not chunk: break
        got.extend(chunk)
th = threading.Thread(target=reader); th.start()
with open("sendfile.src", "rb") as f:
    sent = c.sendfile(f)
th.join(10)
if sent != len(data) or bytes(got) != data:
    print("FAIL sendfile", sent, len(got)); sys.exit(1)
print("ok sendfile", sent)

# splice between an LKL socket and a host pipe, both ways.
pr, pw = os.pipe()
c.sendall(b"spliced!")
n = os.splice(s2.fileno(), pw, 8)        # LKL socket -> host pipe
out = os.read(pr, 8)
os.write(pw, b"back")
m = os.splice(pr, c.fileno(), 4)         # host pipe -> LKL socket
back = s2.recv(4)
if (n, out, m, back) != (8, b"spliced!", 4, b"back"):
    print("FAIL splice", n, out, m, back); sys.exit(1)
print("ok splice")
"#;

fn mixed_poll(env: &Env) -> Outcome {
    env.write("mixed.py", MIXED_POLL_PY)?;
    let out = env.run("basic.json", &[PYTHON, "mixed.py"])?.ok()?;
    for name in [
        "poll pipe",
        "poll socket",
        "select pipe",
        "select socket",
        "epoll pipe",
        "epoll socket",
        "timeout",
        "sendfile",
        "splice",
    ] {
        has_line(&out, &["ok", name], "mixed.py")?;
    }
    Ok(())
}

/// A forked child cannot use the parent's kernel: its LKL calls fail
/// (`EBADF`, `EAFNOSUPPORT`), it exits without hanging (its copies of the
/// mux helper and epoll are forgotten), and the parent's LKL still works.
const FORK_PY: &str = r#"
import errno, os, select, selectors, socket, sys

a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
a.bind(("198.18.0.2", 9997))
r, w = os.pipe()
p = select.poll(); p.register(r, select.POLLIN); p.register(a.fileno(), select.POLLIN)
p.poll(50)                      # the thread's waiter exists now
s = selectors.EpollSelector(); s.register(r, 1); s.register(a, 1)
s.select(0.05)                  # and a mixed epoll
pid = os.fork()
if pid == 0:
    codes = []
    for f in (lambda: p.poll(10), lambda: a.recv(1, socket.MSG_DONTWAIT),
              lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM)):
        try:
            f(); codes.append(0)
        except OSError as e:
            codes.append(e.errno)
    ok = codes == [errno.EBADF, errno.EBADF, errno.EAFNOSUPPORT]
    print("child", codes, flush=True)
    sys.exit(0 if ok else 3)    # exit(): atexit handlers and TLS destructors run
_, status = os.waitpid(pid, 0)
b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
b.sendto(b"after", ("198.18.0.2", 9997))
got = [k.fileobj for k, ev in s.select(5)]
print("parent", os.waitstatus_to_exitcode(status), a in got, a.recv(10))
"#;

fn fork_child(env: &Env) -> Outcome {
    env.write("fork.py", FORK_PY)?;
    let out = env.run("basic.json", &[PYTHON, "fork.py"])?.ok()?;
    has_line(&out, &["child [9, 9, 97]"], "fork.py")?;
    has_line(&out, &["parent 0 True b'after'"], "fork.py")
}

/// Bad pointers (NULL + 1, a `PROT_NONE` page) to the arguments the library
/// reads or writes itself get `EFAULT`, through libc's symbols (the
/// library's), and the program goes on.
const BAD_POINTERS_PY: &str = r#"
import ctypes, errno, mmap, os, socket
libc = ctypes.CDLL(None, use_errno=True)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
PROT_NONE = 0
none = libc.mmap(None, mmap.PAGESIZE, PROT_NONE, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1, 0)
a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); a.bind(("127.0.0.1", 0))
b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); b.connect(a.getsockname())
f = os.open("/proc/self/exe", os.O_RDONLY)
ep = libc.epoll_create1(0)
fails = []
for name, bad in (("NULL+1", 1), ("PROT_NONE", none)):
    p = ctypes.c_void_p(bad)
    for call, f_ in (("poll", lambda: libc.poll(p, 1, 0)),
                     ("select", lambda: libc.select(a.fileno() + 1, p, None, None, None)),
                     ("epoll_ctl", lambda: libc.epoll_ctl(ep, 1, a.fileno(), p)),  # EPOLL_CTL_ADD
                     ("sendfile", lambda: libc.sendfile(b.fileno(), f, p, 1))):
        ctypes.set_errno(0)
        r = f_()
        if r != -1 or ctypes.get_errno() != errno.EFAULT:
            fails.append((call, name, r, ctypes.get_errno()))
b.send(b"x")
print("fails", fails, "then", a.recv(1))
"#;

fn bad_pointers(env: &Env) -> Outcome {
    env.write("badptr.py", BAD_POINTERS_PY)?;
    let out = env.run("basic.json", &[PYTHON, "badptr.py"])?.ok()?;
    has_line(&out, &["fails [] then b'x'"], "badptr.py")
}

fn contract_name(env: &Env) -> Outcome {
    let real =
        std::fs::canonicalize(&env.lib).map_err(|e| format!("{}: {e}", env.lib.display()))?;
    if real.file_name().and_then(|n| n.to_str()) != Some("liblkl_hijack.so") {
        return Err(format!(
            "{} resolves to {}",
            env.lib.display(),
            real.display()
        ));
    }
    // The script finds the library by itself too (no LKL_HIJACK_LIB).
    let mut c = env.ns.command(&env.script);
    c.args(["true"])
        .env_remove("LKL_HIJACK_LIB")
        .env(
            "CARGO_TARGET_DIR",
            env.lib
                .parent()
                .and_then(Path::parent)
                .unwrap_or(Path::new(".")),
        )
        .env("LKL_HIJACK_CONFIG_FILE", path(env, "basic.json"))
        .current_dir(env.dir.path());
    lkl_test_support::run(&mut c).map(drop)
}

fn pipe_backend(env: &Env) -> Outcome {
    // Two FIFOs, one per direction; each process reads one, writes the other.
    let (ab, ba) = (path(env, "fifo-ab"), path(env, "fifo-ba"));
    for f in [&ab, &ba] {
        let _ = std::fs::remove_file(f);
        lkl_test_support::run(Command::new("mkfifo").arg(f))?;
    }
    let side = |ip: &str, mac: &str, rx: &str, tx: &str| {
        format!(
            r#"{{"interfaces": [{{"type": "pipe", "param": "{rx}|{tx}", "mac": "{mac}",
               "ip": "{ip}", "masklen": "24"}}]}}"#
        )
    };
    env.write(
        "pipe-a.json",
        &side("198.19.0.1", "02:00:00:00:01:01", &ba, &ab),
    )?;
    env.write(
        "pipe-b.json",
        &side("198.19.0.2", "02:00:00:00:01:02", &ab, &ba),
    )?;
    // B stays up (sleeping) while A pings it.
    let _b = env.ns.spawn(&mut env.command(
        &[("LKL_HIJACK_CONFIG_FILE", path(env, "pipe-b.json"))],
        &["sleep", "30"],
    ))?;
    let start = Instant::now();
    loop {
        let run = env.run(
            "pipe-a.json",
            &["ping", "-c", "3", "-i", "0.2", "-W", "2", "198.19.0.2"],
        )?;
        let out = run.stdout();
        if run.out.status.success() {
            return has_line(
                &out,
                &["3 packets transmitted, 3 received"],
                "ping over the pipe",
            );
        }
        if start.elapsed() > Duration::from_secs(20) {
            return Err(format!(
                "ping over the pipe backend failed: {}{out}",
                run.stderr()
            ));
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn zpoline_values(env: &Env) -> Outcome {
    for (value, zpoline) in [
        ("1", true),
        ("yes", true),
        ("true", true),
        ("on", true),
        ("0", false),
        ("", false),
    ] {
        let vars = [
            ("LKL_HIJACK_CONFIG_FILE", path(env, "basic.json")),
            ("LKL_HIJACK_ZPOLINE", value.to_string()),
        ];
        // The script sets LD_PRELOAD only without zpoline.
        let preload = env.run_with(&vars, &["printenv", "LD_PRELOAD"])?.stdout();
        if preload.contains("lkl-hijack.so") == zpoline {
            return Err(format!(
                "LKL_HIJACK_ZPOLINE={value:?}: LD_PRELOAD is {preload:?}, so zpoline is {}",
                if zpoline { "off" } else { "on" }
            ));
        }
        // Either way, LKL serves the program.
        let out = env
            .run_with(&vars, &["ip", "-4", "-o", "address", "show", "dev", "eth0"])?
            .ok()?;
        has_line(
            &out,
            &["eth0", "198.18.0.2/24"],
            &format!("LKL_HIJACK_ZPOLINE={value:?}"),
        )?;
    }
    Ok(())
}

/// Runs the script as `nobody` (or as root when `as_nobody` is false) outside the
/// namespace, on a program that must be refused before anything starts; checks the
/// exit status 126 and the exact message.
fn expect_refusal(
    env: &Env,
    as_nobody: bool,
    vars: &[(&str, &str)],
    args: &[&str],
    want: &str,
) -> Outcome {
    // nobody cannot read the workspace (a private home, in CI): a copy of the script.
    let script = env.dir.path().join("lkl-hijack-copy.sh");
    std::fs::copy(&env.script, &script).map_err(|e| format!("{}: {e}", script.display()))?;
    let mut c = if as_nobody {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"]);
        c.arg(&script);
        c
    } else {
        Command::new(&script)
    };
    c.args(args)
        .env("LKL_HIJACK_LIB", &env.lib)
        .env("LKL_RUN", &env.lkl_run)
        .env_remove("LKL_HIJACK_ZPOLINE")
        .current_dir(env.dir.path());
    for (k, v) in vars {
        c.env(k, v);
    }
    let what = format!("`lkl-hijack.sh {}`", args.join(" "));
    let out = c.output().map_err(|e| format!("cannot run {what}: {e}"))?;
    let err = String::from_utf8_lossy(&out.stderr);
    if out.status.code() != Some(126) || err.trim_end() != want {
        return Err(format!(
            "{what}: want status 126 and\n{want}\ngot {} and\n{err}",
            out.status
        ));
    }
    Ok(())
}

/// A copy of `/bin/true` named `name` in the temp dir, mode `mode`; its path.
fn true_copy(env: &Env, name: &str, mode: u32) -> Result<String, String> {
    use std::os::unix::fs::PermissionsExt;
    let p = env.dir.path().join(name);
    let _ = std::fs::remove_file(&p);
    std::fs::copy("/bin/true", &p).map_err(|e| format!("{}: {e}", p.display()))?;
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode))
        .map_err(|e| format!("{}: {e}", p.display()))?;
    Ok(p.to_string_lossy().into_owned())
}

fn refuses_32_bit(env: &Env) -> Outcome {
    // An x86-64 program with its ELF class byte set to ELFCLASS32: all the script and
    // lkl-run read is the header.
    let p = true_copy(env, "elf32", 0o755)?;
    let mut elf = std::fs::read(&p).map_err(|e| format!("{p}: {e}"))?;
    elf[4] = 1;
    std::fs::write(&p, elf).map_err(|e| format!("{p}: {e}"))?;
    expect_refusal(
        env,
        false,
        &[],
        &[&p],
        &format!(
            "lkl-hijack.sh: {p} is a 32-bit program: ld.so would not load the 64-bit \
             hijack library into it, and it would run on the host's network; LKL serves \
             x86-64 programs only (zpoline neither runs 32-bit programs): use an x86-64 \
             build of it"
        ),
    )?;
    expect_refusal(
        env,
        false,
        &[("LKL_HIJACK_ZPOLINE", "1")],
        &[&p],
        &format!(
            "lkl-run: {p}: a 32-bit ELF program, not an x86-64 program: zpoline runs \
             x86-64 programs only; run it natively"
        ),
    )
}

fn refuses_secure_exec(env: &Env) -> Outcome {
    require_tool("setpriv", "util-linux")?;
    require_tool("setcap", "libcap2-bin")?;
    // The temp dir must be reachable by nobody.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(env.dir.path(), std::fs::Permissions::from_mode(0o755))
        .map_err(|e| format!("{}: {e}", env.dir.path().display()))?;
    let fix = "so it would run on the host's network; use LKL_HIJACK_ZPOLINE=1 (lkl-run \
               runs it on LKL, without the";
    let suid = true_copy(env, "suid-true", 0o4755)?;
    expect_refusal(
        env,
        true,
        &[],
        &[&suid],
        &format!(
            "lkl-hijack.sh: {suid} is setuid (owner uid 0): ld.so ignores LD_PRELOAD \
             for it, {fix} setuid privileges)"
        ),
    )?;
    // Found through PATH, as exec would.
    let dir = env.dir.path().to_string_lossy().into_owned();
    expect_refusal(
        env,
        true,
        &[("PATH", &format!("/nonexistent:{dir}:/usr/bin:/bin"))],
        &["suid-true"],
        &format!(
            "lkl-hijack.sh: {dir}/suid-true is setuid (owner uid 0): ld.so ignores \
             LD_PRELOAD for it, {fix} setuid privileges)"
        ),
    )?;
    let sgid = true_copy(env, "sgid-true", 0o2755)?;
    expect_refusal(
        env,
        true,
        &[],
        &[&sgid],
        &format!(
            "lkl-hijack.sh: {sgid} is setgid (group gid 0): ld.so ignores LD_PRELOAD \
             for it, {fix} setgid privileges)"
        ),
    )?;
    let caps = true_copy(env, "caps-true", 0o755)?;
    lkl_test_support::run(Command::new("setcap").args(["cap_net_raw+ep", &caps]))?;
    expect_refusal(
        env,
        true,
        &[],
        &[&caps],
        &format!(
            "lkl-hijack.sh: {caps} has file capabilities (cap_net_raw=ep): ld.so ignores \
             LD_PRELOAD for it, {fix} capabilities)"
        ),
    )?;
    // As root, a setuid-root program keeps LD_PRELOAD (no secure execution): it runs.
    let run = env.run("basic.json", &[&suid])?;
    run.ok().map(drop)
}
