//! What is configured through files inside LKL: sysctl (`/proc/sys`),
//! `/etc/resolv.conf`, and upstream's `mount` key.

use std::net::IpAddr;

use lkl::Errno;
use lkl_sys as sys;

use crate::error::{sc, Error};

/// Creates directory `path` unless it exists.
fn mkdir_p(path: &str, mode: u32) -> Result<(), Error> {
    match lkl::mkdir(path, mode) {
        Ok(()) | Err(Errno::EEXIST) => Ok(()),
        Err(e) => Err(sc(format!("mkdir {path}"))(e)),
    }
}

/// Mounts proc at `/proc` unless `/proc/sys` is already there.
///
/// # Errors
/// The failed `mkdir` or `mount`.
pub fn ensure_proc() -> Result<(), Error> {
    if lkl::stat("/proc/sys").is_ok() {
        return Ok(());
    }
    mkdir_p("/proc", 0o555)?;
    lkl::mount("proc", "/proc", "proc", 0, None).map_err(sc("mount proc on /proc"))
}

/// Upstream's `mount` key: mounts file system type `fstype` at `/fstype`
/// (`proc` at `/proc`, `sysfs` at `/sysfs`). Already mounted is fine.
///
/// # Errors
/// A bad type name, or the failed `mkdir`/`mount`.
pub fn mount_fs(fstype: &str) -> Result<(), Error> {
    if fstype.is_empty() || fstype.contains('/') || fstype.contains('\0') {
        return Err(Error::Invalid {
            what: format!("file system type {fstype:?}"),
            reason: "must be a plain name like proc".into(),
        });
    }
    let dir = format!("/{fstype}");
    mkdir_p(&dir, 0o555)?;
    match lkl::mount(fstype, &dir, fstype, 0, None) {
        Ok(()) | Err(Errno::EBUSY) => Ok(()),
        Err(e) => Err(sc(format!("mount {fstype} on {dir}"))(e)),
    }
}

/// The `/proc/sys` file of a sysctl key (`net.ipv4.ip_forward` or
/// `net/ipv4/ip_forward`).
///
/// # Errors
/// [`Error::Invalid`] for an empty key or one with `..`.
pub fn sysctl_path(key: &str) -> Result<String, Error> {
    let k = key.trim().trim_start_matches('/');
    if k.is_empty() || k.split(['.', '/']).any(|c| c.is_empty() || c == "..") || k.contains('\0') {
        return Err(Error::Invalid {
            what: format!("sysctl key {key:?}"),
            reason: "write a dotted name such as net.ipv4.ip_forward".into(),
        });
    }
    Ok(format!("/proc/sys/{}", k.replace('.', "/")))
}

/// Writes `value` to sysctl `key`, mounting proc first if needed.
///
/// # Errors
/// A bad key, or the failed open/write (`ENOENT` for an unknown key).
pub fn sysctl_write(key: &str, value: &str) -> Result<(), Error> {
    let path = sysctl_path(key)?;
    ensure_proc()?;
    let fd = lkl::open(&path, (sys::LKL_O_WRONLY | sys::LKL_O_CLOEXEC) as i32, 0)
        .map_err(sc(format!("sysctl {key}: open {path}")))?;
    let r = lkl::write(fd, value.as_bytes())
        .map_err(sc(format!("sysctl {key}: write {value:?} to {path}")));
    let _ = lkl::close(fd);
    r.map(drop)
}

/// Reads a whole file inside LKL.
///
/// # Errors
/// The failed open/read.
pub fn read_file(path: &str) -> Result<Vec<u8>, Error> {
    let fd = lkl::open(path, (sys::LKL_O_RDONLY | sys::LKL_O_CLOEXEC) as i32, 0)
        .map_err(sc(format!("open {path}")))?;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let r = loop {
        match lkl::read(fd, &mut buf) {
            Ok(0) => break Ok(out),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) => break Err(sc(format!("read {path}"))(e)),
        }
    };
    let _ = lkl::close(fd);
    r
}

/// Reads sysctl `key` (trailing newline removed), mounting proc if needed.
///
/// # Errors
/// A bad key, or the failed open/read.
pub fn sysctl_read(key: &str) -> Result<String, Error> {
    let path = sysctl_path(key)?;
    ensure_proc()?;
    let bytes = read_file(&path)?;
    Ok(String::from_utf8_lossy(&bytes)
        .trim_end_matches('\n')
        .to_owned())
}

/// Writes `/etc/resolv.conf` inside LKL with one `nameserver` line per
/// address (creating `/etc`), replacing what was there.
///
/// # Errors
/// The failed mkdir/open/write.
pub fn write_resolv_conf(nameservers: &[IpAddr]) -> Result<(), Error> {
    mkdir_p("/etc", 0o755)?;
    let text: String = nameservers
        .iter()
        .map(|n| format!("nameserver {n}\n"))
        .collect();
    let flags = sys::LKL_O_WRONLY | sys::LKL_O_CREAT | sys::LKL_O_TRUNC | sys::LKL_O_CLOEXEC;
    let fd =
        lkl::open("/etc/resolv.conf", flags as i32, 0o644).map_err(sc("open /etc/resolv.conf"))?;
    let r = lkl::write(fd, text.as_bytes()).map_err(sc("write /etc/resolv.conf"));
    let _ = lkl::close(fd);
    match r? {
        n if n == text.len() => Ok(()),
        n => Err(Error::Invalid {
            what: "/etc/resolv.conf".into(),
            reason: format!("short write: {n} of {} bytes", text.len()),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sysctl_paths() {
        assert_eq!(
            sysctl_path("net.ipv4.tcp_wmem").unwrap(),
            "/proc/sys/net/ipv4/tcp_wmem"
        );
        assert_eq!(
            sysctl_path("net/ipv6/conf/all/forwarding").unwrap(),
            "/proc/sys/net/ipv6/conf/all/forwarding"
        );
        for bad in ["", "..", "net..x", "net/../../etc", "a.", "x\0y"] {
            assert!(sysctl_path(bad).is_err(), "{bad:?}");
        }
    }
}
