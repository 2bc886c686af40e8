//! Configuration errors and the idle kernel's CPU use, under
//! `lkl-hijack.sh` (`LD_PRELOAD`) and `lkl-run --zpoline --config`.

use super::*;

/// `lkl-run --zpoline --null-guard --config FILE ARGS` in the namespace
/// (`--null-guard`: no need for `vm.mmap_min_addr=0`).
fn zpoline(env: &Env, file: &str, args: &[&str]) -> Result<Run, String> {
    let what = format!("`lkl-run --zpoline --config {file} {}`", args.join(" "));
    let mut c = env.ns.command(&env.lkl_run);
    c.args(["--zpoline", "--null-guard", "--config", file])
        .args(args)
        .env_remove("LKL_HIJACK_CONFIG_FILE")
        .current_dir(env.dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = c.spawn().map_err(|e| format!("cannot run {what}: {e}"))?;
    let out = wait_deadline(child, DEADLINE, &what)?;
    Ok(Run { out, what })
}

/// The ways a configuration file is used: `lkl-hijack.sh` and `lkl-run`,
/// each with the prefix of its messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Via {
    Hijack,
    Zpoline,
}

impl Via {
    const BOTH: [Via; 2] = [Via::Hijack, Via::Zpoline];

    fn prefix(self) -> &'static str {
        match self {
            Via::Hijack => "lkl-hijack: ",
            Via::Zpoline => "lkl-run: ",
        }
    }

    fn run(self, env: &Env, name: &str, args: &[&str]) -> Result<Run, String> {
        match self {
            Via::Hijack => env.run(name, args),
            Via::Zpoline => zpoline(env, &path(env, name), args),
        }
    }
}

/// Config `text` must stop the program before `main`, under `via`, with
/// exit status 1 and a last stderr line that is the prefix, then `start`,
/// then anything, then `end`.
fn refused_exactly(env: &Env, via: Via, name: &str, text: &str, start: &str, end: &str) -> Outcome {
    env.write(name, text)?;
    let run = via.run(env, name, &["echo", "the program ran"])?;
    let err = run.stderr();
    if run.stdout().contains("the program ran") {
        return Err(format!("{}: the program ran: {err}", run.what));
    }
    if run.out.status.code() != Some(1) {
        return Err(format!(
            "{}: {} instead of exit status 1: {err}",
            run.what, run.out.status
        ));
    }
    let last = err
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    let want = format!("{}{start}", via.prefix());
    if !last.starts_with(&want) || !last.ends_with(end) || last.len() < want.len() + end.len() {
        return Err(format!(
            "{}: the last line of stderr is not {want:?}...{end:?}:\n{err}",
            run.what
        ));
    }
    Ok(())
}

/// `mem=100G`: what was asked and what the host has, instead of an abort.
pub(crate) fn memory(env: &Env) -> Outcome {
    for via in Via::BOTH {
        refused_exactly(
            env,
            via,
            "mem.json",
            r#"{"boot_cmdline": "mem=100G"}"#,
            "boot_cmdline: \"mem=100G\" asks for 100 GiB of memory for LKL, but the host ",
            // "has N GiB of memory and swap (...)", or a cgroup's limit
            ": ask for less (LKL's default is mem=64M)",
        )?;
    }
    Ok(())
}

/// A multicast or all-zero `mac`, an out-of-range `delay_main` and an
/// empty file: the key (or file), the value and the fix.
pub(crate) fn values(env: &Env) -> Outcome {
    let tap = |mac: &str| {
        format!(r#"{{"interfaces": [{{"type": "tap", "param": "{TAP0}", "mac": "{mac}"}}]}}"#)
    };
    for via in Via::BOTH {
        refused_exactly(
            env,
            via,
            "multicast.json",
            &tap("01:00:5e:00:00:01"),
            "interfaces[0].mac: \"01:00:5e:00:00:01\" is a multicast address (the first byte, 0x01, is odd), which no device may have: write a unicast address, e.g. \"02:00:5e:00:00:01\"",
            "(first byte even; 02 for a locally administered one)",
        )?;
        refused_exactly(
            env,
            via,
            "zero.json",
            &tap("00:00:00:00:00:00"),
            "interfaces[0].mac: \"00:00:00:00:00:00\" is all zeros, which no device may have: write a unicast address, e.g. \"02:00:00:00:00:01\"",
            "(a locally administered one: first byte 02)",
        )?;
        refused_exactly(
            env,
            via,
            "delay.json",
            r#"{"delay_main": "18446744073709551615"}"#,
            "delay_main: \"18446744073709551615\" is not a delay in microseconds (0-3600000000): at most one hour; e.g. \"500000\" is half a second",
            "",
        )?;
        let empty = path(env, "empty.json");
        refused_exactly(
            env,
            via,
            "empty.json",
            "\n",
            &format!("{empty}: the configuration file is empty, which is not JSON: write {{}} for no settings"),
            "",
        )?;
    }
    // The same value through a variable names the variable.
    let run = env.run_with(
        &[
            ("LKL_HIJACK_NET_IFTYPE", "tap".into()),
            ("LKL_HIJACK_NET_IFPARAMS", TAP0.into()),
            ("LKL_HIJACK_NET_MAC", "ff:ff:ff:ff:ff:ff".into()),
        ],
        &["true"],
    )?;
    let want = "lkl-hijack: interfaces[0].mac (LKL_HIJACK_NET_MAC): \"ff:ff:ff:ff:ff:ff\" is a multicast address";
    if run.out.status.code() != Some(1) || !run.stderr().starts_with(want) {
        return Err(format!(
            "LKL_HIJACK_NET_MAC: not {want:?}: {}",
            run.stderr()
        ));
    }
    Ok(())
}

/// `/dev/net/tun` closed to a user who is not root: the device and the
/// fix, under both ways in. In a mount namespace of its own, a tun node of
/// mode 0600 (owned by root) is bound over `/dev/net/tun`; the program runs
/// as `nobody`, with copies of the script, the library and `lkl-run` it can
/// read. The host's device is not touched.
pub(crate) fn tun_permission(env: &Env) -> Outcome {
    let pub_dir = env.dir.path().join("public");
    std::fs::create_dir_all(&pub_dir).map_err(|e| format!("{}: {e}", pub_dir.display()))?;
    let copy = |from: &Path, name: &str| -> Result<String, String> {
        let to = pub_dir.join(name);
        std::fs::copy(from, &to)
            .map_err(|e| format!("{} -> {}: {e}", from.display(), to.display()))?;
        Ok(to.to_string_lossy().into_owned())
    };
    let script = copy(&env.script, "lkl-hijack.sh")?;
    let lib = copy(&env.lib, "liblkl-hijack.so")?;
    let lkl_run = copy(&env.lkl_run, "lkl-run")?;
    let conf = pub_dir.join("tun.json");
    std::fs::write(
        &conf,
        format!(r#"{{"interfaces": [{{"type": "tap", "param": "{TAP0}"}}]}}"#),
    )
    .map_err(|e| e.to_string())?;
    // nobody must reach the copies: the test's directory is root's own.
    lkl_test_support::run(Command::new("chmod").arg("a+x").arg(env.dir.path()))?;
    lkl_test_support::run(Command::new("chmod").args(["-R", "a+rX"]).arg(&pub_dir))?;
    std::fs::create_dir_all(pub_dir.join("dev")).map_err(|e| e.to_string())?;
    let conf = conf.display();
    for (via, program) in [
        (
            Via::Hijack,
            format!("env LKL_HIJACK_LIB={lib} LKL_HIJACK_CONFIG_FILE={conf} {script}"),
        ),
        (
            Via::Zpoline,
            format!("{lkl_run} --zpoline --null-guard --config {conf}"),
        ),
    ] {
        let inner = format!(
            "set -e; mount -t tmpfs -o mode=0755 lkltun {dir}/dev; \
             mknod -m 0600 {dir}/dev/tun c 10 200; mount --bind {dir}/dev/tun /dev/net/tun; \
             exec ip netns exec {ns} setpriv --reuid=65534 --regid=65534 --clear-groups \
             {program} /bin/echo the program ran",
            dir = pub_dir.display(),
            ns = env.ns.name(),
        );
        let child = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c", &inner])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("unshare: {e} (install util-linux)"))?;
        let out = wait_deadline(child, DEADLINE, &format!("{program} as nobody"))?;
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        let want = format!(
            "{}interfaces[0].param: cannot open /dev/net/tun for tap interface \"{TAP0}\": \
             Permission denied (os error 13) (the device is not open to this user: \
             `chmod 0666 /dev/net/tun`, the usual mode, or run as root)",
            via.prefix()
        );
        if out.status.code() != Some(1) || err.trim_end() != want {
            return Err(format!(
                "{program}: not {want:?} with status 1 ({}):\n{err}",
                out.status
            ));
        }
    }
    Ok(())
}

/// `ip=dhcp` and `gateway`: the DHCP answer's router is there already; a
/// warning, and the program runs (as upstream).
pub(crate) fn dhcp_gateway(env: &Env) -> Outcome {
    require_tool("dnsmasq", "dnsmasq-base")?;
    let leases = path(env, "dnsmasq.leases");
    let _dhcp = env.ns.spawn(
        env.ns
            .command("dnsmasq")
            .args([
                "--no-daemon",
                "--port=0",
                "--no-resolv",
                "--no-hosts",
                &format!("--interface={TAP0}"),
                "--bind-interfaces",
                "--dhcp-range=198.18.0.50,198.18.0.59,255.255.255.0,1h",
                "--no-ping",
                "--dhcp-option=option:router,198.18.0.1",
                &format!("--dhcp-leasefile={leases}"),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )?;
    env.write(
        "dhcp.json",
        &format!(
            r#"{{"boot_cmdline": "ip=dhcp", "gateway": "198.18.0.1",
  "interfaces": [{{"type": "tap", "param": "{TAP0}", "offload": "0xc803"}}]}}"#
        ),
    )?;
    let warning = "warning: gateway: 198.18.0.1 not added: the kernel has a default route via \
                   198.18.0.1 already (from ip= in boot_cmdline, e.g. the DHCP answer's router); \
                   kept it. Drop gateway from the configuration to silence this";
    for via in Via::BOTH {
        let run = via.run(env, "dhcp.json", &["ip", "route"])?;
        let err = run.stderr();
        let what = run.what.clone();
        let out = run.ok()?;
        has_line(&out, &["default via 198.18.0.1 dev eth0"], &what)?;
        has_line(&out, &["198.18.0.0/24 dev eth0", "src 198.18.0.5"], &what)?;
        let want = format!("{}{warning}", via.prefix());
        if !err.lines().any(|l| l == want) {
            return Err(format!("{what}: no line {want:?} in:\n{err}"));
        }
    }
    Ok(())
}

/// Runs `cmd` with stdout and stderr to `log`, killing it (SIGKILL) if it
/// still runs after `limit`; the CPU time its process used (user and
/// system, all threads, from `wait4`) and whether it had to be killed.
fn cpu_time(mut cmd: Command, limit: Duration, log: &Path) -> Result<(Duration, bool), String> {
    let file = std::fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
    let err = file.try_clone().map_err(|e| e.to_string())?;
    let child = cmd
        .stdin(Stdio::null())
        .stdout(file)
        .stderr(err)
        .spawn()
        .map_err(|e| format!("{}: {e}", lkl_test_support::describe(&cmd)))?;
    let pid = child.id() as libc::pid_t;
    let start = Instant::now();
    let mut killed = false;
    // SAFETY: rusage is plain integers; all-zero is valid.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let mut status = 0;
    loop {
        // SAFETY: our own child, live status and rusage.
        let r = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut ru) };
        if r == pid {
            break;
        }
        if r < 0 {
            return Err(format!("wait4: {}", std::io::Error::last_os_error()));
        }
        if start.elapsed() >= limit {
            killed = true;
            // SAFETY: signals our own child, which is not reaped yet.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            // SAFETY: as above, blocking.
            if unsafe { libc::wait4(pid, &mut status, 0, &mut ru) } != pid {
                return Err(format!("wait4: {}", std::io::Error::last_os_error()));
            }
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    Ok((tv(ru.ru_utime) + tv(ru.ru_stime), killed))
}

/// An idle kernel sleeps: `ip=dhcp` with no DHCP server (the boot waits
/// for an answer, inside the kernel) costs under 1 s of CPU in 6 s, and a
/// hijacked `sleep 3` under 0.3 s, boot and halt included.
pub(crate) fn idle(env: &Env) -> Outcome {
    env.write(
        "nodhcp.json",
        &format!(
            r#"{{"boot_cmdline": "ip=dhcp",
  "interfaces": [{{"type": "tap", "param": "{TAP1}"}}]}}"#
        ),
    )?;
    let log = env.dir.path().join("nodhcp.log");
    let cmd = env.command(
        &[("LKL_HIJACK_CONFIG_FILE", path(env, "nodhcp.json"))],
        &["true"],
    );
    let (cpu, killed) = cpu_time(cmd, Duration::from_secs(6), &log)?;
    let text = || std::fs::read_to_string(&log).unwrap_or_default();
    if !killed {
        return Err(format!(
            "the boot with ip=dhcp and no server ended within 6 s: {}",
            text()
        ));
    }
    if cpu >= Duration::from_secs(1) {
        return Err(format!(
            "waiting for DHCP for 6 s took {cpu:?} of CPU (at most 1 s)"
        ));
    }
    eprintln!("    ip=dhcp without a server: {cpu:?} of CPU in 6 s");
    env.write(
        "sleep.json",
        &format!(
            r#"{{"interfaces": [{{"type": "tap", "param": "{TAP0}", "ip": "198.18.0.2",
  "masklen": "24", "offload": "0xc803"}}]}}"#
        ),
    )?;
    let log = env.dir.path().join("sleep.log");
    let cmd = env.command(
        &[("LKL_HIJACK_CONFIG_FILE", path(env, "sleep.json"))],
        &["sleep", "3"],
    );
    let (cpu, killed) = cpu_time(cmd, Duration::from_secs(30), &log)?;
    if killed {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        return Err(format!("a hijacked `sleep 3` ran 30 s: {text}"));
    }
    if cpu >= Duration::from_millis(300) {
        return Err(format!(
            "a hijacked `sleep 3` took {cpu:?} of CPU (at most 0.3 s)"
        ));
    }
    eprintln!("    hijacked sleep 3: {cpu:?} of CPU");
    Ok(())
}
