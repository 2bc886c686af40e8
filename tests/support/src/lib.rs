//! Shared set-up for the end-to-end tests: network namespaces with taps and
//! veth pairs, processes run inside them, and clean-up on drop.
//!
//! Everything is done with iproute2's `ip`, as root (CI is root; a test
//! without the privilege or the tool fails with a message naming the fix,
//! see [`require_root`] and [`require_tool`]). Names are unique per run
//! ([`unique_name`]: a tag and the process id). [`Netns`] deletes its
//! namespace, after killing every process still in it, when dropped, on
//! success, failure and panic alike; [`Process`] kills its child when
//! dropped. Use addresses in 198.18.0.0/15 and keep all traffic inside
//! the namespaces.
//!
//! ```no_run
//! use lkl_test_support::Netns;
//! let ns = Netns::new("lklhj")?;                  // lklhj-PID, lo up
//! ns.add_tap("lkltap0", &["198.18.0.1/24"])?;      // tap, addressed, up
//! let out = ns.command("ping").args(["-c1", "198.18.0.1"]).output();
//! # Ok::<(), String>(())
//! ```

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

/// A test step's outcome: the error says what failed and how to fix it.
pub type Outcome = Result<(), String>;

/// Fails unless the process runs as root.
///
/// # Errors
/// A message naming `what` needs root.
pub fn require_root(what: &str) -> Outcome {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err(format!(
            "{what} needs root (network namespaces, taps): run it as root, as CI does"
        ));
    }
    Ok(())
}

/// Fails unless `tool` can be run (`tool --version`-free check: it is
/// looked up in `PATH`).
///
/// # Errors
/// A message naming the Debian package to install.
pub fn require_tool(tool: &str, package: &str) -> Outcome {
    let path = std::env::var_os("PATH").unwrap_or_default();
    if std::env::split_paths(&path).any(|d| d.join(tool).is_file()) {
        Ok(())
    } else {
        Err(format!(
            "this test needs `{tool}`: install it with `apt-get install {package}` (scripts/setup.sh does)"
        ))
    }
}

/// `TAG-PID`, cut to 15 bytes (an interface name's limit).
pub fn unique_name(tag: &str) -> String {
    let mut s = format!("{tag}-{}", std::process::id());
    s.truncate(15);
    s
}

/// Runs `cmd` to its end; its stdout. An error names the command, its
/// status and its stderr.
///
/// # Errors
/// The command could not start or exited non-zero.
pub fn run(cmd: &mut Command) -> Result<String, String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", describe(cmd)))?;
    if !out.status.success() {
        return Err(format!(
            "{} failed ({}): {}",
            describe(cmd),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `` `prog arg arg` `` for messages.
pub fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    format!("`{s}`")
}

/// Runs `ip ARGS` (in the current namespace); its stdout.
///
/// # Errors
/// As [`run`].
pub fn ip(args: &[&str]) -> Result<String, String> {
    run(Command::new("ip").args(args))
}

/// Waits for `child` to end, killing it after `deadline`; its output
/// (stdout and stderr must be piped or null).
///
/// A process the child left behind (a background job of a shell) may
/// still hold the pipes: their output is collected for at most the rest of
/// the deadline (2 s after a kill), then cut, so that cannot hang the test.
///
/// # Errors
/// The deadline passed (the child is killed), or waiting failed.
pub fn wait_deadline(mut child: Child, deadline: Duration, what: &str) -> Result<Output, String> {
    let start = Instant::now();
    // Read the pipes while waiting, so a chatty child cannot block.
    let stdout = child.stdout.take().map(reader);
    let stderr = child.stderr.take().map(reader);
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break st,
            Ok(None) if start.elapsed() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                let tail = |r: Option<Reader>| {
                    let v = collect(r, Duration::from_secs(2));
                    let s = String::from_utf8_lossy(&v).into_owned();
                    let cut = s.len().saturating_sub(2000);
                    s[s.ceil_char_boundary_compat(cut)..].to_owned()
                };
                return Err(format!(
                    "{what} did not end within {deadline:?}; it printed:\n{}\n(stderr:)\n{}",
                    tail(stdout),
                    tail(stderr)
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => return Err(format!("waiting for {what}: {e}")),
        }
    };
    let rest = deadline
        .saturating_sub(start.elapsed())
        .max(Duration::from_secs(2));
    Ok(Output {
        status,
        stdout: collect(stdout, rest),
        stderr: collect(stderr, rest),
    })
}

/// A pipe being read to its end by a thread of its own.
type Reader = std::sync::mpsc::Receiver<Vec<u8>>;

/// What `r` read, waiting for its end up to `limit`; what it had read by then if
/// the pipe is still open (a note marks the cut).
fn collect(r: Option<Reader>, limit: Duration) -> Vec<u8> {
    let Some(r) = r else { return Vec::new() };
    let mut all = Vec::new();
    let end = Instant::now() + limit;
    loop {
        match r.recv_timeout(end.saturating_duration_since(Instant::now())) {
            Ok(chunk) => all.extend_from_slice(&chunk),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return all,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                all.extend_from_slice(
                    b"\n[output cut: a process left behind still holds the pipe]\n",
                );
                return all;
            }
        }
    }
}

/// `str::ceil_char_boundary`, which is not stable yet.
trait CeilBoundary {
    fn ceil_char_boundary_compat(&self, i: usize) -> usize;
}

impl CeilBoundary for str {
    fn ceil_char_boundary_compat(&self, mut i: usize) -> usize {
        while i < self.len() && !self.is_char_boundary(i) {
            i += 1;
        }
        i.min(self.len())
    }
}

fn reader<R: std::io::Read + Send + 'static>(mut r: R) -> Reader {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 1 << 16];
        loop {
            match r.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => {
                    if tx.send(buf[..n].to_vec()).is_err() {
                        return;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        }
    });
    rx
}

/// An [`Output`] for messages: its status, stdout and stderr.
pub fn output_text(o: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Runs `cmd` (stdin null, stdout and stderr captured) to its end, killing it
/// after `deadline`; its output, whatever its status.
///
/// # Errors
/// It could not start, or outran the deadline.
pub fn output_within(cmd: &mut Command, deadline: Duration) -> Result<Output, String> {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{}: {e}", describe(cmd)))?;
    wait_deadline(child, deadline, &describe(cmd))
}

/// Checks a command's output: it succeeded (`ok`) or failed (`!ok`), and its
/// stdout and stderr together contain each of `needles`.
///
/// # Errors
/// What differs, with the whole output.
pub fn expect_output(o: Result<Output, String>, ok: bool, needles: &[&str]) -> Outcome {
    let o = o?;
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    if o.status.success() != ok {
        return Err(format!("expected success={ok}; {}", output_text(&o)));
    }
    for n in needles {
        if !all.contains(n) {
            return Err(format!("{n:?} missing; {}", output_text(&o)));
        }
    }
    Ok(())
}

/// Checks a command's output: it succeeded and printed exactly `want` on stdout.
///
/// # Errors
/// What differs, with the whole output.
pub fn expect_stdout(o: Result<Output, String>, want: &str) -> Outcome {
    let o = o?;
    if !o.status.success() || String::from_utf8_lossy(&o.stdout) != want {
        return Err(format!(
            "expected success and stdout {want:?}; {}",
            output_text(&o)
        ));
    }
    Ok(())
}

/// Sets `p`'s permission bits to `mode`.
///
/// # Errors
/// `chmod` failed.
pub fn set_mode(p: &Path, mode: u32) -> Outcome {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
        .map_err(|e| format!("chmod {}: {e}", p.display()))
}

/// A command that runs `prog` as the host user `nobody` (uid and gid 65534, no
/// supplementary groups), through util-linux's `setpriv`.
pub fn as_nobody(prog: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut c = Command::new("setpriv");
    c.args([
        "--reuid",
        "65534",
        "--regid",
        "65534",
        "--clear-groups",
        "--",
    ])
    .arg(prog);
    c
}

/// Checks that image `img` of file system `fs` (`ext4`, `btrfs`, `xfs`, `vfat`) is
/// clean, by the file system's own checker, changing nothing (`e2fsck -fn`,
/// `btrfs check --readonly`, `xfs_repair -n`, `fsck.vfat -n`).
///
/// # Errors
/// The checker's complaint, or an unknown type.
pub fn fsck_clean(fs: &str, img: &Path) -> Outcome {
    let (prog, args): (&str, &[&str]) = match fs {
        "ext2" | "ext3" | "ext4" => ("e2fsck", &["-fn"]),
        "btrfs" => ("btrfs", &["check", "--readonly"]),
        "xfs" => ("xfs_repair", &["-n"]),
        "vfat" => ("fsck.vfat", &["-n"]),
        other => return Err(format!("no checker for file system {other:?}")),
    };
    run(Command::new(prog).args(args).arg(img))
        .map(drop)
        .map_err(|e| format!("the {fs} image {} is not clean: {e}", img.display()))
}

/// Makes a fresh image file `img` of file system `fs` (`ext4`, `btrfs`, `xfs`, `vfat`;
/// 128 MiB, 320 MiB for xfs), filled from the directory `src` where the file system's
/// own `mkfs` can do it (`mkfs.ext4 -d`, `mkfs.btrfs --rootdir`). True when it filled
/// it: for xfs and vfat the caller copies the files in itself.
///
/// # Errors
/// The file or `mkfs` failed.
pub fn mkfs_image(fs: &str, img: &Path, src: Option<&Path>) -> Result<bool, String> {
    let _ = std::fs::remove_file(img);
    let size: u64 = if fs == "xfs" { 320 << 20 } else { 128 << 20 };
    std::fs::File::create(img)
        .and_then(|f| f.set_len(size))
        .map_err(|e| format!("{}: {e}", img.display()))?;
    let mut mkfs = Command::new(format!("mkfs.{fs}"));
    let filled = match (fs, src) {
        ("ext4", Some(d)) => {
            mkfs.args(["-q", "-F", "-d"]).arg(d);
            true
        }
        ("ext4", None) => {
            mkfs.args(["-q", "-F"]);
            true
        }
        ("btrfs", Some(d)) => {
            mkfs.args(["-q", "-f", "--rootdir"]).arg(d);
            true
        }
        ("btrfs", None) => {
            mkfs.args(["-q", "-f"]);
            true
        }
        ("xfs", _) => {
            mkfs.args(["-q", "-f"]);
            src.is_none()
        }
        _ => src.is_none(),
    };
    run(mkfs.arg(img))?;
    Ok(filled)
}

/// Compiles the C file `src` into `out` with `gcc` and `flags`.
///
/// # Errors
/// `gcc` could not run or failed (its output in the message).
pub fn gcc(src: &Path, out: &Path, flags: &[&str]) -> Outcome {
    run(Command::new("gcc").args(flags).arg("-o").arg(out).arg(src)).map(drop)
}

/// `debugfs -R REQUEST IMG` (e2fsprogs, read-only): what it prints, e.g. a file's
/// contents for `cat /path` or its inode for `stat /path`.
///
/// # Errors
/// `debugfs` could not run or failed.
pub fn debugfs(img: &Path, request: &str) -> Result<String, String> {
    run(Command::new("debugfs").arg("-R").arg(request).arg(img))
}

/// Checks that file `path` in ext2/3/4 image `img` holds exactly `want` (`debugfs -R
/// "cat PATH"`).
///
/// # Errors
/// What it holds instead, or why `debugfs` failed.
pub fn image_file_holds(img: &Path, path: &str, want: &str) -> Outcome {
    let got = debugfs(img, &format!("cat {path}"))?;
    if got != want {
        return Err(format!(
            "{path} in {} holds {got:?}, not {want:?}",
            img.display()
        ));
    }
    Ok(())
}

/// The `main` of a test file of cases: `setup`, then [`run_cases`], then the summary
/// line; a failed setup is reported as a failed case.
pub fn main_cases<E>(
    setup: impl FnOnce() -> Result<E, String>,
    cases: &[(&str, &Case<E>)],
) -> std::process::ExitCode {
    let mut r = Report::default();
    match setup() {
        Ok(env) => run_cases(&mut r, &env, cases),
        Err(e) => r.case("setup", Err(e)),
    }
    r.finish()
}

/// A named end-to-end case over an environment `E`.
pub type Case<E> = dyn Fn(&E) -> Outcome;

/// Runs the cases of a test file, each timed, into `r`: all of them, or with a first
/// command-line argument (not an option), those whose name contains it.
pub fn run_cases<E: ?Sized>(r: &mut Report, env: &E, cases: &[(&str, &Case<E>)]) {
    let only = std::env::args().nth(1).filter(|a| !a.starts_with('-'));
    for (name, case) in cases {
        if only.as_deref().is_none_or(|o| name.contains(o)) {
            let t = Instant::now();
            let res = case(env);
            r.case(&format!("{name} ({:.1} s)", t.elapsed().as_secs_f64()), res);
        }
    }
}

/// `/etc/netns/NAME/` (what `ip netns exec` binds over `/etc`), removed on
/// drop. See [`Netns::resolv_conf`].
#[derive(Debug)]
pub struct NetnsEtc(PathBuf);

impl Drop for NetnsEtc {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A network namespace, deleted on drop (processes still in it are
/// killed first).
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Makes namespace [`unique_name`]`(tag)` and sets its `lo` up.
    ///
    /// # Errors
    /// Not root, no `ip`, or `ip netns add` failed.
    pub fn new(tag: &str) -> Result<Netns, String> {
        require_root("this test")?;
        require_tool("ip", "iproute2")?;
        let name = unique_name(tag);
        ip(&["netns", "add", &name])?;
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `ip ARGS` inside; its stdout.
    ///
    /// # Errors
    /// As [`run`].
    pub fn ip(&self, args: &[&str]) -> Result<String, String> {
        let mut all = vec!["-n", &self.name];
        all.extend_from_slice(args);
        ip(&all)
    }

    /// A command that runs `prog` inside the namespace
    /// (`ip netns exec NAME prog`); add arguments, environment and pipes.
    pub fn command(&self, prog: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).arg(prog);
        c
    }

    /// Adds tap `name` inside, gives it each address of `addrs`
    /// (`198.18.0.1/24`, `2001:db8::1/64`: IPv6 ones with `nodad`) and
    /// sets it up.
    ///
    /// # Errors
    /// The failed `ip` command.
    pub fn add_tap(&self, name: &str, addrs: &[&str]) -> Outcome {
        self.ip(&["tuntap", "add", "dev", name, "mode", "tap"])?;
        self.address(name, addrs)
    }

    /// Adds veth pair `a`–`b` inside, each end addressed (see
    /// [`Netns::add_tap`]) and up.
    ///
    /// # Errors
    /// The failed `ip` command.
    pub fn add_veth(&self, a: &str, a_addrs: &[&str], b: &str, b_addrs: &[&str]) -> Outcome {
        self.ip(&["link", "add", a, "type", "veth", "peer", "name", b])?;
        self.address(a, a_addrs)?;
        self.address(b, b_addrs)
    }

    /// Gives `dev` each address and sets it up.
    ///
    /// # Errors
    /// The failed `ip` command.
    pub fn address(&self, dev: &str, addrs: &[&str]) -> Outcome {
        for a in addrs {
            if a.contains(':') {
                self.ip(&["addr", "add", a, "dev", dev, "nodad"])?;
            } else {
                self.ip(&["addr", "add", a, "dev", dev])?;
            }
        }
        self.ip(&["link", "set", dev, "up"]).map(drop)
    }

    /// Starts `cmd` (made with [`Netns::command`]) in the background; it is
    /// killed when the [`Process`] is dropped.
    ///
    /// # Errors
    /// It could not start.
    pub fn spawn(&self, cmd: &mut Command) -> Result<Process, String> {
        let what = describe(cmd);
        match cmd.spawn() {
            Ok(child) => Ok(Process {
                child: Some(child),
                what,
            }),
            Err(e) => Err(format!("cannot start {what}: {e}")),
        }
    }

    /// Runs this test binary again inside the namespace with `args` (the
    /// child recognises e.g. `--child`), and waits up to `deadline`.
    ///
    /// # Errors
    /// It could not start, or outran the deadline.
    pub fn run_self(&self, args: &[&str], deadline: Duration) -> Result<ExitStatus, String> {
        let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
        let child = self
            .command(exe)
            .args(args)
            .stdin(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot run the child in {}: {e}", self.name))?;
        wait_deadline(child, deadline, "the child in the namespace").map(|o| o.status)
    }

    /// Gives the programs run inside (through [`Netns::command`]) their own
    /// `/etc/resolv.conf` with `text`; removed when the result is dropped.
    ///
    /// # Errors
    /// The file could not be written.
    pub fn resolv_conf(&self, text: &str) -> Result<NetnsEtc, String> {
        let etc = PathBuf::from("/etc/netns").join(&self.name);
        std::fs::create_dir_all(&etc).map_err(|e| format!("{}: {e}", etc.display()))?;
        let guard = NetnsEtc(etc.clone());
        std::fs::write(etc.join("resolv.conf"), text)
            .map_err(|e| format!("{}/resolv.conf: {e}", etc.display()))?;
        Ok(guard)
    }

    /// Starts dnsmasq inside, on `listen` only, answering `name` with `addr`
    /// and nothing else (no upstream, no hosts file); its pid file goes into
    /// `dir`. Returns once it listens on UDP port 53.
    ///
    /// # Errors
    /// It could not start or did not listen within 10 s.
    pub fn spawn_dnsmasq(
        &self,
        listen: &str,
        name: &str,
        addr: &str,
        dir: &Path,
    ) -> Result<Process, String> {
        let pid = dir.join("dnsmasq.pid");
        let dns = self.spawn(self.command("/usr/sbin/dnsmasq").args([
            "--no-daemon",
            "--no-resolv",
            "--no-hosts",
            &format!("--address=/{name}/{addr}"),
            &format!("--listen-address={listen}"),
            "--bind-interfaces",
            &format!("--pid-file={}", pid.display()),
        ]))?;
        self.wait_listening("u", 53)?;
        Ok(dns)
    }

    /// Waits until something listens on `proto` (`t` or `u`, as `ss -t`/`-u`)
    /// port `port` inside, up to 10 s.
    ///
    /// # Errors
    /// Nothing listens by then, or `ss` is missing.
    pub fn wait_listening(&self, proto: &str, port: u16) -> Outcome {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            let out = self
                .command("ss")
                .args([&format!("-Hln{proto}"), &format!("sport = :{port}")])
                .output()
                .map_err(|e| format!("ss: {e} (install iproute2)"))?;
            if !out.stdout.is_empty() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(format!("nothing listens on {proto} port {port} after 10 s"))
    }

    /// The pids of the processes inside.
    fn pids(&self) -> Vec<i32> {
        ip(&["netns", "pids", &self.name])
            .map(|s| {
                s.split_whitespace()
                    .filter_map(|p| p.parse().ok())
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for pid in self.pids() {
            // SAFETY: kill has no memory preconditions; the pid is a
            // process inside this test's own namespace.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        if let Err(e) = ip(&["netns", "del", &self.name]) {
            eprintln!("cleanup: {e}");
        }
    }
}

/// A background process, killed and reaped when dropped.
#[derive(Debug)]
pub struct Process {
    /// `None` once [`Process::finish`] took it.
    child: Option<Child>,
    what: String,
}

impl Process {
    /// Its pid.
    pub fn id(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Whether it is still running.
    pub fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Waits for it to end by itself within `deadline` (else kills it);
    /// its output.
    ///
    /// # Errors
    /// As [`wait_deadline`].
    pub fn finish(mut self, deadline: Duration) -> Result<Output, String> {
        let child = self
            .child
            .take()
            .ok_or("the process was already waited for")?;
        wait_deadline(child, deadline, &self.what)
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Some(c) = &mut self.child {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The pids of every process of the machine (`/proc`).
pub fn all_pids() -> Vec<i32> {
    std::fs::read_dir("/proc")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// `pid`'s parent, from `/proc/PID/stat` (`None` once it is gone).
pub fn parent_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: the fields after the
    // last `)` are `state ppid ...`.
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Whether `pid` has ended: gone, or a zombie (its files are closed by then).
pub fn ended(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')?
                .1
                .split_whitespace()
                .next()
                .map(str::to_owned)
        })
        .is_none_or(|state| state == "Z" || state == "X")
}

/// `pid`'s command line with spaces for the NULs (empty once it is gone).
pub fn cmdline_of(pid: i32) -> String {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    String::from_utf8_lossy(&raw)
        .replace('\0', " ")
        .trim()
        .to_owned()
}

/// The processes whose parent is `pid`.
pub fn children_of(pid: i32) -> Vec<i32> {
    all_pids()
        .into_iter()
        .filter(|&p| parent_of(p) == Some(pid))
        .collect()
}

/// The processes (other than this one) whose command line or environment
/// contains `marker`, with their command lines.
pub fn processes_marked(marker: &str) -> Vec<(i32, String)> {
    let me = std::process::id() as i32;
    let marker = marker.as_bytes();
    let has = |hay: &[u8]| hay.windows(marker.len()).any(|w| w == marker);
    all_pids()
        .into_iter()
        .filter(|&p| p != me)
        .filter(|&p| {
            ["cmdline", "environ"]
                .iter()
                .any(|f| std::fs::read(format!("/proc/{p}/{f}")).is_ok_and(|raw| has(&raw)))
        })
        .map(|p| (p, cmdline_of(p)))
        .collect()
}

/// The processes that hold tap (or tun) device `dev` open: an fd on
/// `/dev/net/tun` whose `fdinfo` names it (`iff:\tDEV`).
pub fn processes_holding_tap(dev: &str) -> Vec<(i32, String)> {
    let want = format!("iff:\t{dev}\n");
    all_pids()
        .into_iter()
        .filter(|&p| {
            let Ok(fds) = std::fs::read_dir(format!("/proc/{p}/fd")) else {
                return false;
            };
            fds.flatten().any(|fd| {
                std::fs::read_link(fd.path()).is_ok_and(|t| t == Path::new("/dev/net/tun"))
                    && std::fs::read_to_string(format!(
                        "/proc/{p}/fdinfo/{}",
                        fd.file_name().to_string_lossy()
                    ))
                    .is_ok_and(|i| i.contains(&want))
            })
        })
        .map(|p| (p, cmdline_of(p)))
        .collect()
}

/// Sends `sig` to `pid`.
///
/// # Errors
/// `kill` failed (typically: no such process).
pub fn signal(pid: i32, sig: i32) -> Outcome {
    // SAFETY: kill has no memory preconditions; callers pass processes they
    // started (or found among their own children).
    if unsafe { libc::kill(pid, sig) } != 0 {
        return Err(format!(
            "kill({pid}, {sig}): {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

/// A directory under the system's temporary directory, removed on drop.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    /// Makes `TMP/`[`unique_name`]`(tag)`.
    ///
    /// # Errors
    /// It could not be made.
    pub fn new(tag: &str) -> Result<TempDir, String> {
        let p = std::env::temp_dir().join(format!("{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).map_err(|e| format!("{}: {e}", p.display()))?;
        Ok(TempDir(p))
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The workspace root (this crate is `tests/support`).
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."))
}

/// The target directory the running test binary was built into
/// (`CARGO_TARGET_DIR`, else three levels above `TARGET/release/deps/x`).
///
/// # Errors
/// Neither gives one.
pub fn target_dir() -> Result<PathBuf, String> {
    if let Some(d) = std::env::var_os("CARGO_TARGET_DIR") {
        let d = PathBuf::from(d);
        return Ok(if d.is_absolute() {
            d
        } else {
            workspace().join(d)
        });
    }
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    // TARGET/release/deps/TEST for a test, TARGET/release/examples/EXAMPLE, and
    // TARGET/release/BIN for a binary.
    let nested = matches!(
        exe.parent()
            .and_then(Path::file_name)
            .and_then(|n| n.to_str()),
        Some("deps" | "examples")
    );
    exe.ancestors()
        .nth(if nested { 3 } else { 2 })
        .map(Path::to_path_buf)
        .ok_or_else(|| format!("cannot find the target directory above {}", exe.display()))
}

/// `cargo build --release -p PACKAGE` into [`target_dir`]; the release
/// directory (`TARGET/release`).
///
/// # Errors
/// Cargo could not run or the build failed.
pub fn cargo_build(package: &str) -> Result<PathBuf, String> {
    let target = target_dir()?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    run(Command::new(cargo)
        .current_dir(workspace())
        .args(["build", "--release", "-p", package])
        .env("CARGO_TARGET_DIR", &target)
        .stdout(Stdio::null()))?;
    Ok(target.join("release"))
}

/// Collects named outcomes as they are run, printing each at once (so a
/// hang shows where it is), and prints the `N passed, N failed` line.
#[derive(Debug, Default)]
pub struct Report {
    passed: usize,
    failed: usize,
}

impl Report {
    /// Records case `name`.
    pub fn case(&mut self, name: &str, r: Outcome) {
        match r {
            Ok(()) => {
                println!("ok   {name}");
                self.passed += 1;
            }
            Err(e) => {
                println!("FAIL {name}: {e}");
                self.failed += 1;
            }
        }
    }

    /// Prints the summary line; the exit code.
    pub fn finish(self) -> std::process::ExitCode {
        println!("{} passed, {} failed", self.passed, self.failed);
        if self.failed == 0 {
            std::process::ExitCode::SUCCESS
        } else {
            std::process::ExitCode::FAILURE
        }
    }
}
