//! zpoline backed by LKL, end to end, in a network namespace made here:
//! a tap for LKL with the host side at 198.18.0.1, dnsmasq there answering
//! `testhost.lkl`, a python http.server on port 8080, and the namespace's
//! `/etc/resolv.conf` (through `ip netns exec`'s `/etc/netns/NAME/resolv.conf`)
//! pointing at 198.18.99.99, where nothing answers. Only LKL's `nameserver` can
//! resolve the name, so every case that resolves it went through LKL.

use std::path::Path;
use std::process::{Command, ExitCode, Output, Stdio};
use std::time::Duration;

use lkl_test_support::{self as support, workspace, Netns, Outcome, Report, TempDir};

const LKL_RUN: &str = env!("CARGO_BIN_EXE_zpl-lkl-run");
const DEADLINE: Duration = Duration::from_secs(30);
const TAP: &str = "zptap0";
/// Python prelude: SIGALRM raises TimeoutError("alarm").
const ALARM: &str = "import socket, signal, struct, time
def h(*a): raise TimeoutError('alarm')
signal.signal(signal.SIGALRM, h)";

fn text(o: &Output) -> String {
    support::output_text(o)
}

fn run_in(_ns: &Netns, cmd: &mut Command) -> Result<Output, String> {
    support::output_within(cmd, DEADLINE)
}

/// `lkl-run --zpoline --config CONF ARGS...` in the namespace.
fn zp(ns: &Netns, conf: &Path, args: &[&str]) -> Result<Output, String> {
    let mut c = ns.command(LKL_RUN);
    c.arg("--zpoline").arg("--config").arg(conf).args(args);
    run_in(ns, &mut c)
}

/// `lkl-run --zpoline --config CONF /usr/bin/python3 -c SCRIPT` in the namespace (the
/// real interpreter, not a version manager's shim script).
fn py(ns: &Netns, conf: &Path, script: &str) -> Result<Output, String> {
    zp(ns, conf, &["/usr/bin/python3", "-c", script])
}

fn expect(o: Result<Output, String>, ok: bool, needles: &[&str]) -> Outcome {
    support::expect_output(o, ok, needles)
}

/// Waits until something listens on `proto` port `port` in the namespace.
fn wait_port(ns: &Netns, proto: &str, port: u16) -> Outcome {
    ns.wait_listening(proto, port)
}

/// A configuration that must stop lkl-run with an error naming `needle`, before the
/// program runs.
fn bad_config(ns: &Netns, tmp: &TempDir, json: &str, needle: &str) -> Outcome {
    let bad = tmp.path().join("bad.json");
    std::fs::write(&bad, json).map_err(|e| e.to_string())?;
    let o = zp(ns, &bad, &["/bin/echo", "the program ran"])?;
    let all = text(&o);
    if o.status.success() || all.contains("the program ran") || !all.contains(needle) {
        return Err(format!("expected an error naming {needle:?}; {all}"));
    }
    Ok(())
}

/// `c/SRC` of this crate built into `out`.
fn gcc(src: &str, out: &Path, flags: &[&str]) -> Outcome {
    support::gcc(
        &workspace().join("tests/zpoline-lkl/c").join(src),
        out,
        flags,
    )
}

/// Builds the static (CGO_ENABLED=0) Go program in `go/NAME` into `out`, offline, with
/// a build cache under `tmp`.
fn go_build(name: &str, out: &Path, tmp: &Path) -> Outcome {
    support::run(
        Command::new("go")
            .args(["build", "-o"])
            .arg(out)
            .arg(".")
            .current_dir(workspace().join("tests/zpoline-lkl/go").join(name))
            .env("GOCACHE", tmp.join("gocache"))
            .env("GOPATH", tmp.join("gopath"))
            .env("GOTOOLCHAIN", "local")
            .env("GOPROXY", "off")
            .env("GOFLAGS", "")
            .env("CGO_ENABLED", "0"),
    )
    .map(|_| ())
}

fn main() -> ExitCode {
    let mut r = Report::default();
    let setup = (|| -> Result<_, String> {
        support::require_root("network namespaces, taps and vm.mmap_min_addr=0")?;
        for (tool, pkg) in [
            ("dnsmasq", "dnsmasq"),
            ("gcc", "gcc"),
            ("sh", "dash"),
            ("curl", "curl"),
            ("getent", "libc-bin"),
            ("ping", "iputils-ping"),
            ("busybox", "busybox-static"),
            ("ss", "iproute2"),
            ("go", "golang-go"),
        ] {
            support::require_tool(tool, pkg)?;
        }
        support::run(Command::new("sysctl").args(["-qw", "vm.mmap_min_addr=0"]))?;
        let ns = Netns::new("zpl")?;
        ns.add_tap(TAP, &["198.18.0.1/24"])?;
        let resolv = ns.resolv_conf("nameserver 198.18.99.99\n")?;
        let tmp = TempDir::new("zpl")?;
        let www = tmp.path().join("www");
        std::fs::create_dir_all(&www).map_err(|e| e.to_string())?;
        std::fs::write(www.join("index.html"), "hello through LKL\n").map_err(|e| e.to_string())?;
        let conf = tmp.path().join("conf.json");
        std::fs::write(
            &conf,
            format!(
                r#"{{"nameserver": "198.18.0.1", "mount": "proc,sysfs",
  "interfaces": [{{"type": "tap", "param": "{TAP}", "ip": "198.18.0.2", "masklen": "24",
                  "mac": "12:34:56:78:9a:bc"}}]}}"#
            ),
        )
        .map_err(|e| e.to_string())?;
        let dns = ns.spawn_dnsmasq("198.18.0.1", "testhost.lkl", "198.18.0.1", tmp.path())?;
        let http = ns.spawn(
            ns.command("/usr/bin/python3")
                .args([
                    "-m",
                    "http.server",
                    "8080",
                    "--bind",
                    "198.18.0.1",
                    "--directory",
                ])
                .arg(&www)
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        )?;
        wait_port(&ns, "t", 8080)?;
        let mixpoll = tmp.path().join("mixpoll");
        gcc("mixpoll.c", &mixpoll, &["-O2", "-pthread"])?;
        let notls = tmp.path().join("notls");
        gcc("notls.c", &notls, &["-O1", "-static", "-nostdlib"])?;
        let stackuse = tmp.path().join("stackuse");
        support::run(
            Command::new("gcc")
                .args(["-O2", "-pthread", "-o"])
                .arg(&stackuse)
                .arg(workspace().join("tests/zpoline/c/stackuse.c")),
        )?;
        let httppair = tmp.path().join("httppair");
        go_build("httppair", &httppair, tmp.path())?;
        let badptr = tmp.path().join("badptr");
        gcc("badptr.c", &badptr, &["-O2"])?;
        Ok((
            ns, resolv, tmp, conf, dns, http, mixpoll, notls, stackuse, httppair, badptr,
        ))
    })();
    let (ns, _resolv, tmp, conf, _dns, _http, mixpoll, notls, stackuse, httppair, badptr) =
        match setup {
            Ok(s) => s,
            Err(e) => {
                r.case("setup", Err(e));
                return r.finish();
            }
        };

    // A case that must succeed and print each of its needles.
    let zp_ok = |args: &[&str], needles: &[&str]| expect(zp(&ns, &conf, args), true, needles);
    let py_ok = |script: &str, needles: &[&str]| expect(py(&ns, &conf, script), true, needles);
    // The mixed-wait test program in one of its modes.
    let mixpoll_ok =
        |mode: &str, want: &str| zp_ok(&[mixpoll.to_str().unwrap_or_default(), mode], &[want]);

    r.case(
        "lkl-run --zpoline --config conf.json ping -c 3 testhost.lkl",
        zp_ok(
            &["ping", "-c", "3", "-i", "0.2", "testhost.lkl"],
            &["PING testhost.lkl (198.18.0.1)", "3 received"],
        ),
    );
    r.case(
        "LKL_HIJACK_ZPOLINE=1 lkl-hijack.sh ping -c 3 testhost.lkl",
        expect(
            run_in(
                &ns,
                ns.command(workspace().join("bin/lkl-hijack.sh"))
                    .args(["ping", "-c", "3", "-i", "0.2", "testhost.lkl"])
                    .env("LKL_HIJACK_ZPOLINE", "1")
                    .env("LKL_HIJACK_CONFIG_FILE", &conf)
                    .env("LKL_RUN", LKL_RUN),
            ),
            true,
            &["PING testhost.lkl (198.18.0.1)", "3 received"],
        ),
    );
    r.case(
        "plain LD_PRELOAD hijack: the resolver misses LKL (documented)",
        (|| {
            let lib = support::cargo_build("lkl-hijack")?.join("liblkl_hijack.so");
            expect(
                run_in(
                    &ns,
                    ns.command(workspace().join("bin/lkl-hijack.sh"))
                        .args(["ping", "-c", "1", "testhost.lkl"])
                        .env("LKL_HIJACK_CONFIG_FILE", &conf)
                        .env("LKL_HIJACK_LIB", lib),
                ),
                false,
                &["testhost.lkl"],
            )
        })(),
    );
    r.case(
        "getent hosts testhost.lkl",
        zp_ok(&["getent", "hosts", "testhost.lkl"], &["198.18.0.1"]),
    );
    r.case(
        "getent hosts testhost.lkl with Syscall User Dispatch armed (--sud=always)",
        zp_ok(
            &["--sud=always", "getent", "hosts", "testhost.lkl"],
            &["198.18.0.1"],
        ),
    );
    r.case(
        "curl http://testhost.lkl:8080/",
        zp_ok(
            &["curl", "-sS", "http://testhost.lkl:8080/index.html"],
            &["hello through LKL"],
        ),
    );
    r.case(
        "python3 socket.getaddrinfo",
        py_ok("import socket; print(socket.getaddrinfo('testhost.lkl', 8080, socket.AF_INET, socket.SOCK_STREAM))", &["('198.18.0.1', 8080)"]),
    );
    r.case(
        "busybox-static wget",
        zp_ok(
            &[
                "busybox",
                "wget",
                "-q",
                "-O",
                "-",
                "http://testhost.lkl:8080/index.html",
            ],
            &["hello through LKL"],
        ),
    );
    r.case(
        "busybox-static ping -c 3 testhost.lkl",
        zp_ok(
            &["busybox", "ping", "-c", "3", "testhost.lkl"],
            &["3 packets received"],
        ),
    );
    r.case(
        "ip address show: LKL's interfaces",
        (|| {
            let o = zp(&ns, &conf, &["ip", "address", "show"])?;
            let s = String::from_utf8_lossy(&o.stdout);
            if !o.status.success()
                || !s.contains("inet 198.18.0.2/24")
                || !s.contains("12:34:56:78:9a:bc")
                || s.contains(TAP)
            {
                return Err(format!("not LKL's interfaces; {}", text(&o)));
            }
            Ok(())
        })(),
    );
    r.case(
        "cat /proc/net/dev: LKL's (mount proc)",
        zp_ok(&["cat", "/proc/net/dev"], &["eth0:"]),
    );
    r.case(
        "one poll loop over a host file, a pipe and an LKL socket",
        mixpoll_ok("poll", "all three readable"),
    );
    r.case(
        "one epoll set over a pipe and an LKL socket",
        mixpoll_ok("epoll", "epoll ok"),
    );
    r.case(
        "python: sendfile of a host file to an LKL socket, received by a thread",
        (|| {
            let data = tmp.path().join("sendfile.bin");
            let body: Vec<u8> = (0..300_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
            std::fs::write(&data, &body).map_err(|e| e.to_string())?;
            let script = format!(
                r#"
import socket, threading
srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen()
got = []
def rx():
    c, _ = srv.accept(); b = b""
    while True:
        d = c.recv(65536)
        if not d: break
        b += d
    got.append(b)
t = threading.Thread(target=rx); t.start()
s = socket.create_connection(srv.getsockname())
with open("{}", "rb") as f: n = s.sendfile(f)
s.close(); t.join()
print("sent", n, "same", got[0] == open("{}", "rb").read())
"#,
                data.display(),
                data.display()
            );
            py_ok(&script, &["sent 300000 same True"])
        })(),
    );
    r.case(
        "bad pointers to the calls the backend reads itself: EFAULT, and the program goes on",
        zp_ok(&[badptr.to_str().unwrap_or_default()], &["efault ok"]),
    );
    r.case(
        "a program without a thread block (-nostdlib, %fs 0) calls LKL",
        zp_ok(&[notls.to_str().unwrap_or_default()], &["ok"]),
    );
    r.case(
        "a signal ends a blocking LKL recv (EINTR); SO_RCVTIMEO still applies",
        py_ok(
            &format!(
                r#"{ALARM}
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0))
signal.alarm(1)
try: s.recv(10)
except TimeoutError as e: print("interrupted by", e)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("qq", 0, 300000))
try: s.recv(10)
except OSError as e: print("rcvtimeo errno", e.errno)
"#
            ),
            &["interrupted by alarm", "rcvtimeo errno 11"],
        ),
    );
    r.case(
        "exit right after a 3 MB send: LKL's send queue drains first",
        (|| {
            let server = ns.spawn(ns.command("/usr/bin/python3").args([
                "-c",
                r#"
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("198.18.0.1", 9000)); s.listen()
c, _ = s.accept(); n = 0
while True:
    d = c.recv(1 << 16)
    if not d: break
    n += len(d)
print("received", n)
"#,
            ]).stdout(Stdio::piped()))?;
            wait_port(&ns, "t", 9000)?;
            py_ok("import socket, os\ns = socket.create_connection(('198.18.0.1', 9000))\ns.sendall(b'x' * 3000000)\nos._exit(0)", &[])?;
            let out = server.finish(DEADLINE)?;
            let text = String::from_utf8_lossy(&out.stdout);
            if !text.contains("received 3000000") {
                return Err(format!("the server got: {text}"));
            }
            Ok(())
        })(),
    );
    r.case(
        "a signal ends a blocking LKL connect (alarm before an unanswered SYN)",
        py_ok(
            &format!(
                r#"{ALARM}
t = time.time(); s = socket.socket(); signal.alarm(1)
try: s.connect(("198.18.0.77", 80))
except TimeoutError as e: print("connect interrupted by", e, "after", round(time.time() - t))
"#
            ),
            &["connect interrupted by alarm after 1"],
        ),
    );
    r.case(
        "300 short-lived threads using LKL, 3 at a time: shadows are reused",
        (|| {
            let o = py(
                &ns,
                &conf,
                r#"
import socket, threading, glob
def work():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); s.close()
for i in range(100):
    ts = [threading.Thread(target=work) for _ in range(3)]
    [t.start() for t in ts]; [t.join() for t in ts]
names = []
for p in glob.glob("/proc/self/task/*/comm"):
    try: names.append(open(p).read().strip())
    except FileNotFoundError: pass   # a worker that ended since the glob
print("shadows", names.count("lkl-shadow"))
"#,
            )?;
            let out = String::from_utf8_lossy(&o.stdout);
            let n: usize = out
                .trim()
                .strip_prefix("shadows ")
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| format!("unexpected output; {}", text(&o)))?;
            // The bootstrap shadow, the main thread's, and the workers alive at once:
            // 3, plus up to 3 still on their way out when the next ones start (python's
            // join returns before the thread's exit).
            if n > 8 {
                return Err(format!("{n} shadow threads for 3 at a time"));
            }
            Ok(())
        })(),
    );
    r.case(
        "a vfork child (subprocess, close_fds) leaves the parent's LKL socket alone",
        py_ok(
            r#"
import socket, subprocess
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0))
subprocess.run(["/bin/true"], close_fds=True)
s.sendto(b"x", s.getsockname()); print("after subprocess:", s.recv(1))
"#,
            &["after subprocess: b'x'"],
        ),
    );
    r.case(
        "--private-kernel fork: the child's LKL fds fail with EBADF, new sockets with EAFNOSUPPORT",
        zp_ok(
            &[
                "--private-kernel",
                mixpoll.to_str().unwrap_or_default(),
                "fork",
            ],
            &["fork ok"],
        ),
    );
    r.case(
        "fork: the child uses the inherited LKL socket and makes its own; its close leaves the parent's",
        mixpoll_ok("fork-shared", "fork-shared ok"),
    );
    r.case(
        "a signal ends poll and recvmmsg blocked in LKL (EINTR), SA_RESTART restarts recvmmsg",
        mixpoll_ok("interrupted", "interrupted ok"),
    );
    r.case(
        "threads: four at once, each with its own LKL socket",
        mixpoll_ok("threads", "threads ok"),
    );
    r.case(
        "execve: the new image reaches LKL (sh -c 'exec getent ...')",
        zp_ok(
            &["/bin/sh", "-c", "exec getent hosts testhost.lkl"],
            &["198.18.0.1"],
        ),
    );
    r.case(
        "a shell's forked child reaches LKL (sh -c 'getent ...; echo')",
        zp_ok(
            &[
                "/bin/sh",
                "-c",
                "getent hosts testhost.lkl; echo shell done",
            ],
            &["198.18.0.1", "shell done"],
        ),
    );
    r.case(
        "--trace names LKL and the host",
        (|| {
            let trace = tmp.path().join("trace");
            let tr = format!("--trace={}", trace.display());
            zp_ok(&[&tr, "getent", "hosts", "testhost.lkl"], &["198.18.0.1"])?;
            let t = std::fs::read_to_string(&trace).map_err(|e| e.to_string())?;
            for n in [
                "lkl socket(0x2",
                "lkl connect(",
                "host openat(",
                "lkl openat(AT_FDCWD, \"/etc/resolv.conf\"",
            ] {
                if !t.contains(n) {
                    return Err(format!("{n:?} not in the trace:\n{t}"));
                }
            }
            Ok(())
        })(),
    );
    r.case(
        "a call LKL does not implement: ENOSYS, named by --trace",
        (|| {
            let trace = tmp.path().join("trace-enosys");
            let tr = format!("--trace={}", trace.display());
            zp_ok(
                &[&tr, mixpoll.to_str().unwrap_or_default(), "enosys"],
                &["ENOSYS"],
            )?;
            let t = std::fs::read_to_string(&trace).map_err(|e| e.to_string())?;
            if !t.contains("lkl getdents(") || !t.contains("ENOSYS (not implemented by LKL)") {
                return Err(format!("getdents not named in the trace:\n{t}"));
            }
            Ok(())
        })(),
    );
    for opts in [&[][..], &["--trace=/dev/null"]] {
        r.case(
            &format!("LKL socket calls use at most 512 bytes of the program's stack {opts:?}"),
            (|| {
                let mut args = opts.to_vec();
                args.push(stackuse.to_str().unwrap_or_default());
                args.push("socket");
                let o = zp(&ns, &conf, &args)?;
                let so = String::from_utf8_lossy(&o.stdout);
                let used: u64 = so
                    .split_whitespace()
                    .nth(2)
                    .and_then(|w| w.parse().ok())
                    .ok_or_else(|| format!("no figure; {}", text(&o)))?;
                if !o.status.success() || !so.contains(" ok") || used > 512 {
                    return Err(format!("{used} bytes used; {}", text(&o)));
                }
                Ok(())
            })(),
        );
    }
    r.case(
        "static Go net/http server and client over LKL's loopback, ten runs",
        (|| {
            for i in 0..10 {
                zp_ok(&[httppair.to_str().unwrap_or_default()], &["http ok 40"])
                    .map_err(|e| format!("run {i}: {e}"))?;
            }
            Ok(())
        })(),
    );
    r.case(
        "bad boot_cmdline: clear error before the program runs",
        bad_config(&ns, &tmp, r#"{"boot_cmdline": "mem=1K"}"#, "boot_cmdline"),
    );
    r.case(
        "config error (missing tap): clear error before the program runs",
        bad_config(
            &ns,
            &tmp,
            r#"{"interfaces": [{"type": "tap", "param": "nosuchtap0"}]}"#,
            "nosuchtap0",
        ),
    );
    r.finish()
}
