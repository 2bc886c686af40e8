//! lklfuse mounts for the tests, as root or as another user: a [`Mount`]
//! guard (a foreground lklfuse and its mount point, unmounted with
//! `fusermount3 -u`, then `-uz` as a last resort, on drop), whether a
//! directory is mounted, and commands run as a user (`setpriv`) with a
//! time limit.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use std::os::unix::ffi::OsStrExt;

use crate::s;

/// A failed step, with what was being done.
pub type Outcome = Result<(), String>;

/// A user to run as: `None` is root (the test's own identity).
pub type User = Option<u32>;

/// The unprivileged user of the tests (`nobody`).
pub const NOBODY: u32 = 65534;

/// A command, run as `user` (through `setpriv`) when one is given.
pub fn command(user: User, prog: &str) -> Command {
    match user {
        None => Command::new(prog),
        Some(uid) => {
            let mut c = Command::new("setpriv");
            c.arg(format!("--reuid={uid}"))
                .arg(format!("--regid={uid}"))
                .arg("--clear-groups")
                .arg("--")
                .arg(prog);
            c
        }
    }
}

/// Runs a command to completion within `limit`, failing with its output
/// unless it exits 0. A command still running at `limit` is killed and
/// counts as hung.
pub fn run_cmd(mut cmd: Command, limit: Duration) -> Result<String, String> {
    let what = format!("{cmd:?}");
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| format!("cannot run {what}: {e}"))?;
    let start = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if start.elapsed() > limit => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{what}: still running after {limit:?} (hung)"));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => return Err(format!("{what}: {e}")),
        }
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("{what}: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        return Err(format!(
            "{what}: {}\nstdout: {}\nstderr: {}",
            out.status,
            stdout.chars().take(2000).collect::<String>(),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(stdout)
}

/// Runs `prog args` as `user` with a 120 s limit.
pub fn run_as(user: User, prog: &str, args: &[&str]) -> Result<String, String> {
    let mut c = command(user, prog);
    c.args(args);
    run_cmd(c, Duration::from_secs(120))
}

/// Runs a shell script as `user` with a limit.
pub fn sh(user: User, script: &str, limit: Duration) -> Result<String, String> {
    let mut c = command(user, "sh");
    c.arg("-c").arg(script);
    run_cmd(c, limit)
}

/// Whether something is mounted on `dir` (from /proc/self/mountinfo).
pub fn is_mounted(dir: &Path) -> bool {
    let Ok(dir) = dir.canonicalize() else {
        return false;
    };
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    info.lines().any(|l| {
        l.split(' ')
            .nth(4)
            .is_some_and(|m| unescape_mount(m) == dir.as_os_str().as_bytes())
    })
}

fn unescape_mount(m: &str) -> Vec<u8> {
    let b = m.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() {
            if let Ok(v) = u8::from_str_radix(&m[i + 1..i + 4], 8) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

/// A running lklfuse (in the foreground, `-f`) and its mount point; the
/// guard unmounts and reaps it on drop.
#[derive(Debug)]
pub struct Mount {
    /// The mount point.
    pub dir: PathBuf,
    /// Who mounted it.
    pub user: User,
    child: Option<Child>,
    log: PathBuf,
}

/// How long a mount or an unmount may take.
const MOUNT_LIMIT: Duration = Duration::from_secs(30);

impl Mount {
    /// Starts `bin -f image dir -o opts` as `user` and waits until the
    /// mount point is mounted.
    pub fn start(
        bin: &Path,
        image: &Path,
        dir: &Path,
        opts: &str,
        user: User,
    ) -> Result<Mount, String> {
        let log = dir.with_extension("log");
        let logf = std::fs::File::create(&log).map_err(|e| format!("create log: {e}"))?;
        let mut c = command(user, s(bin));
        c.arg("-f").arg(image).arg(dir);
        if !opts.is_empty() {
            c.arg("-o").arg(opts);
        }
        c.stdin(Stdio::null())
            .stdout(logf.try_clone().map_err(|e| e.to_string())?)
            .stderr(logf);
        let child = c
            .spawn()
            .map_err(|e| format!("cannot start lklfuse: {e}"))?;
        let mut m = Mount {
            dir: dir.to_path_buf(),
            user,
            child: Some(child),
            log,
        };
        let start = Instant::now();
        while !is_mounted(dir) {
            if let Some(st) = m.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                m.child = None;
                return Err(format!(
                    "lklfuse exited with {st} before mounting: {}",
                    m.log_text()
                ));
            }
            if start.elapsed() > MOUNT_LIMIT {
                return Err(format!(
                    "not mounted after {MOUNT_LIMIT:?}: {}",
                    m.log_text()
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(m)
    }

    /// What lklfuse printed.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Unmounts with `fusermount3 -u` (as the mounting user) and waits for
    /// lklfuse to exit; fails unless it exits 0.
    pub fn unmount(mut self) -> Outcome {
        run_as(self.user, "fusermount3", &["-u", s(&self.dir)])?;
        self.wait_exit()
    }

    /// Sends `signal` to lklfuse and waits for it to unmount and exit 0.
    pub fn signal(mut self, signal: i32) -> Outcome {
        let pid = self.child.as_ref().map(|c| c.id()).ok_or("no child")?;
        // SAFETY: kill has no memory effects; the pid is our child.
        if unsafe { libc::kill(pid as i32, signal) } != 0 {
            return Err(format!("kill: {}", std::io::Error::last_os_error()));
        }
        self.wait_exit()
    }

    /// Kills lklfuse with SIGKILL (as a crash would: no unmount, no sync)
    /// and detaches the dead FUSE mount.
    pub fn kill(mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = run_as(None, "fusermount3", &["-uz", s(&self.dir)]);
    }

    fn wait_exit(&mut self) -> Outcome {
        let mut child = self.child.take().ok_or("no child")?;
        let start = Instant::now();
        let status = loop {
            if let Some(st) = child.try_wait().map_err(|e| e.to_string())? {
                break st;
            }
            if start.elapsed() > MOUNT_LIMIT {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "lklfuse still running {MOUNT_LIMIT:?} after the unmount: {}",
                    self.log_text()
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        if is_mounted(&self.dir) {
            return Err("still mounted after lklfuse exited".into());
        }
        if !status.success() {
            return Err(format!("lklfuse exited with {status}: {}", self.log_text()));
        }
        Ok(())
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if is_mounted(&self.dir) {
            let d = s(&self.dir).to_owned();
            if run_as(self.user, "fusermount3", &["-u", &d]).is_err() {
                let _ = run_as(self.user, "fusermount3", &["-uz", &d]);
                let _ = run_as(None, "fusermount3", &["-uz", &d]);
            }
        }
        if let Some(mut c) = self.child.take() {
            let start = Instant::now();
            while c.try_wait().ok().flatten().is_none() {
                if start.elapsed() > Duration::from_secs(10) {
                    let _ = c.kill();
                    let _ = c.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}
