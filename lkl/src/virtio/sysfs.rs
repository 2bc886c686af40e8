//! Reading sysfs inside LKL, which the disk and network APIs both use to
//! find the kernel's device (by serial, by MAC) and its attributes.

use lkl_sys as sys;

use crate::Errno;

/// A system call on a sysfs path that failed; each API turns it into its
/// own error type.
#[derive(Debug)]
pub(crate) struct SysfsError {
    pub(crate) op: &'static str,
    pub(crate) path: String,
    pub(crate) errno: Errno,
}

fn fail(op: &'static str, path: &str) -> impl FnOnce(Errno) -> SysfsError {
    let path = path.to_owned();
    move |errno| SysfsError { op, path, errno }
}

/// Mounts sysfs on `/sys` unless `probe` (e.g. `/sys/block`) is already there.
pub(crate) fn ensure_mounted(probe: &str) -> Result<(), SysfsError> {
    if crate::stat(probe).is_ok() {
        return Ok(());
    }
    match crate::mkdir("/sys", 0o755) {
        Ok(()) | Err(Errno::EEXIST) => {}
        Err(e) => return Err(fail("mkdir", "/sys")(e)),
    }
    crate::mount("sysfs", "/sys", "sysfs", 0, None).map_err(fail("mount sysfs on", "/sys"))
}

/// The names in directory `path`, without `.` and `..`.
pub(crate) fn list_dir(path: &str) -> Result<Vec<String>, SysfsError> {
    let flags = (sys::LKL_O_RDONLY | sys::LKL_O_DIRECTORY | sys::LKL_O_CLOEXEC) as i32;
    let fd = crate::open(path, flags, 0).map_err(fail("open", path))?;
    let entries = crate::getdents64(fd);
    let _ = crate::close(fd);
    Ok(entries
        .map_err(fail("getdents64", path))?
        .into_iter()
        .map(|e| e.name.to_string_lossy().into_owned())
        .filter(|n| n != "." && n != "..")
        .collect())
}

/// A small text file (a sysfs attribute: at most a page).
pub(crate) fn read_text(path: &str) -> Result<String, SysfsError> {
    let fd = crate::open(path, (sys::LKL_O_RDONLY | sys::LKL_O_CLOEXEC) as i32, 0)
        .map_err(fail("open", path))?;
    let mut buf = vec![0u8; 4096];
    let r = crate::read(fd, &mut buf);
    let _ = crate::close(fd);
    let n = r.map_err(fail("read", path))?;
    Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
}
