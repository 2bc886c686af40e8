//! The copy engine: a source tree on one [`Side`] to a directory on the
//! other, keeping types, modes, owners, times, extended attributes, hard
//! links and holes.
//!
//! The source is walked first (a plan, in pre-order and name order), then
//! copied in that order; directories get their mode, owner, attributes and
//! times last, deepest first, so that writing into them does not change
//! their times and a read-only mode does not stop the copy. Small regular
//! files are read ahead with their extended attributes ([`ReadAhead`]:
//! one thread from the host, three from the image) while the main thread
//! writes, so both sides work at once.

use std::collections::{HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

use indicatif::{ProgressBar, ProgressStyle};
use lkl_fs::{FileKind, ReadAhead};

use crate::side::{Meta, OpError, OpResult, Side};

/// One thing to copy.
#[derive(Debug, Clone)]
pub struct Item {
    /// Where it is on the source side.
    pub src: PathBuf,
    /// Where it goes on the destination side.
    pub dst: PathBuf,
    /// What it is.
    pub meta: Meta,
}

/// A small file read ahead: its data and its extended attributes (listed
/// by the reading thread too, so that the copying thread, which sets the
/// pace, makes no call on the source side for it).
struct Ahead {
    data: Vec<u8>,
    xattrs: OpResult<Vec<(OsString, Vec<u8>)>>,
}

/// Files up to this size are read whole, ahead of time.
const SMALL: u64 = 1 << 20;
/// The read-ahead holds at most this many bytes.
const AHEAD_BYTES: usize = 64 << 20;
/// The copy buffer for large files.
const CHUNK: usize = 4 << 20;

/// How the copy treats ownership and labels.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// Owner of every destination file (upstream `-o`), else the source's.
    pub owner: Option<u32>,
    /// Group of every destination file (upstream `-g`), else the source's.
    pub group: Option<u32>,
    /// `security.selinux` value to set on every destination file
    /// (upstream `-s`).
    pub selinux: Option<Vec<u8>>,
    /// Who files belong to when they are created on the destination side.
    pub created_as: (u32, u32),
    /// Always `chmod` after creating (the destination applies a umask).
    pub chmod_always: bool,
    /// Show a progress bar.
    pub progress: bool,
    /// The image's `(st_dev, st_ino)` on the host when the source side is
    /// the host (cptofs): a source that is the image is not copied into
    /// itself.
    pub image_in_src: Option<(u64, u64)>,
    /// The same when the destination side is the host (cpfromfs): a
    /// destination that is the image is never replaced.
    pub image_in_dst: Option<(u64, u64)>,
}

/// Copies plans from `S` to `D`.
pub struct Copier<'a, S: Side, D: Side> {
    src: &'a S,
    dst: &'a D,
    set: Settings,
    links: HashMap<(u64, u64), PathBuf>,
    warned: HashSet<String>,
    /// Errors reported so far (the copy goes on past them).
    pub errors: usize,
    bar: Option<ProgressBar>,
    buf: Vec<u8>,
}

/// Errors after which nothing more can be copied.
fn fatal(e: &OpError) -> bool {
    matches!(
        e.errno,
        libc::ENOSPC | libc::EROFS | libc::EIO | libc::EDQUOT
    )
}

/// Errors that mean "this file system cannot store that".
fn unsupported(e: &OpError) -> bool {
    matches!(
        e.errno,
        libc::EOPNOTSUPP | libc::EPERM | libc::EACCES | libc::EINVAL
    )
}

/// Walks `src` (on side `s`) and lists it, itself first, as going to
/// `dst`.
pub fn plan<S: Side>(s: &S, src: &Path, dst: &Path, out: &mut Vec<Item>) -> OpResult<()> {
    let meta = s.lstat(src)?;
    out.push(Item {
        src: src.to_path_buf(),
        dst: dst.to_path_buf(),
        meta,
    });
    if meta.kind == FileKind::Dir {
        for name in s.read_dir(src)? {
            plan(s, &src.join(&name), &dst.join(&name), out)?;
        }
    }
    Ok(())
}

impl<'a, S: Side, D: Side> Copier<'a, S, D> {
    /// A copier from `src` to `dst`.
    pub fn new(src: &'a S, dst: &'a D, set: Settings) -> Self {
        Copier {
            src,
            dst,
            set,
            links: HashMap::new(),
            warned: HashSet::new(),
            errors: 0,
            bar: None,
            buf: Vec::new(),
        }
    }

    fn report(&mut self, e: &OpError) {
        if let Some(b) = &self.bar {
            b.suspend(|| eprintln!("{}: {e}", crate::prog()));
        } else {
            eprintln!("{}: {e}", crate::prog());
        }
        self.errors += 1;
    }

    /// A metadata step the destination may not support (ownership on
    /// vfat, xattrs where there are none): warned about once per kind.
    fn soft(&mut self, what: &str, r: OpResult<()>) -> OpResult<()> {
        match r {
            Err(e) if unsupported(&e) => {
                if self.warned.insert(what.to_owned()) {
                    eprintln!(
                        "{}: warning: the {} side cannot keep {what} ({e}); going on without",
                        crate::prog(),
                        D::NAME
                    );
                }
                Ok(())
            }
            r => r,
        }
    }

    /// Copies `items` (from [`plan`]). Returns `Err` only for an error
    /// that stops the copy (no space, read-only, I/O error); other
    /// failures are reported and counted in [`Copier::errors`].
    pub fn run(&mut self, items: &[Item]) -> OpResult<()> {
        let total: u64 = items
            .iter()
            .filter(|i| i.meta.kind == FileKind::Regular)
            .map(|i| i.meta.size)
            .sum();
        if self.set.progress && total >= 64 << 20 {
            let bar = ProgressBar::new(total);
            bar.set_style(
                ProgressStyle::with_template(
                    "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta} {wide_msg}",
                )
                .expect("a valid template"),
            );
            self.bar = Some(bar);
        }
        self.buf = vec![0u8; CHUNK];
        let src = self.src;
        let small: Vec<usize> = (0..items.len()).filter(|&i| is_small(&items[i])).collect();
        let ra = ReadAhead::new(
            small.iter().map(|&i| items[i].meta.size as usize).collect(),
            AHEAD_BYTES,
        );
        let readers = if S::NAME == "image" { 3 } else { 1 };
        let result = std::thread::scope(|scope| {
            // Small files read ahead, in plan order, while this thread
            // writes: several readers when reading from LKL, whose reads
            // wait on block requests.
            for _ in 0..readers {
                scope.spawn(|| ra.work(|j| read_small(src, &items[small[j]])));
            }
            let r = (|| {
                let mut dirs = Vec::new();
                let mut next_small = 0;
                for item in items {
                    let ahead = if is_small(item) {
                        next_small += 1;
                        ra.take(next_small - 1)
                    } else {
                        None
                    };
                    if let Err(e) = self.one(item, ahead, &mut dirs) {
                        if fatal(&e) {
                            return Err(e);
                        }
                        self.report(&e);
                    }
                }
                for item in dirs.iter().rev() {
                    if let Err(e) = self.finish_meta(item, true) {
                        if fatal(&e) {
                            return Err(e);
                        }
                        self.report(&e);
                    }
                }
                Ok(())
            })();
            ra.stop();
            r
        });
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
        result
    }

    fn one(
        &mut self,
        item: &Item,
        ahead: Option<OpResult<Ahead>>,
        dirs: &mut Vec<Item>,
    ) -> OpResult<()> {
        let m = &item.meta;
        if self.set.image_in_src == Some(m.id) && m.kind != FileKind::Dir {
            return Err(OpError {
                errno: libc::EINVAL,
                msg: format!(
                    "{}: is the image itself; not copied into itself",
                    item.src.display()
                ),
            });
        }
        if m.kind != FileKind::Dir && m.nlink > 1 {
            if let Some(first) = self.links.get(&m.id) {
                let first = first.clone();
                self.replace(&item.dst)?;
                return self.dst.link(&first, &item.dst);
            }
            self.links.insert(m.id, item.dst.clone());
        }
        match m.kind {
            FileKind::Dir => {
                self.dst.mkdir(&item.dst, m.perm | 0o700)?;
                dirs.push(item.clone());
                Ok(())
            }
            FileKind::Regular => self.file(item, ahead),
            FileKind::Symlink => {
                let target = self.src.readlink(&item.src)?;
                self.replace(&item.dst)?;
                self.dst.symlink(&target, &item.dst)?;
                self.finish_meta(item, false)
            }
            FileKind::Fifo | FileKind::CharDev | FileKind::BlockDev => {
                self.replace(&item.dst)?;
                let r = self.dst.mknod(&item.dst, m);
                match r {
                    Err(e) if unsupported(&e) => {
                        self.soft("device nodes and fifos", Err(e))?;
                        Ok(())
                    }
                    Err(e) => Err(e),
                    Ok(()) => self.finish_meta(item, true),
                }
            }
            FileKind::Socket | FileKind::Unknown => {
                eprintln!(
                    "{}: {}: skipping a socket (it cannot be copied)",
                    crate::prog(),
                    item.src.display()
                );
                Ok(())
            }
        }
    }

    /// Removes a non-directory in the way (as cp does when it overwrites),
    /// unless it is the image being read.
    fn replace(&self, dst: &Path) -> OpResult<()> {
        match self.dst.lstat(dst) {
            Ok(m) if self.set.image_in_dst == Some(m.id) => Err(OpError {
                errno: libc::EINVAL,
                msg: format!(
                    "{}: is the image being read; not overwritten (copy to another directory)",
                    dst.display()
                ),
            }),
            Ok(m) if m.kind != FileKind::Dir => self.dst.unlink(dst),
            _ => Ok(()),
        }
    }

    fn owner(&self, m: &Meta) -> (u32, u32) {
        (
            self.set.owner.unwrap_or(m.uid),
            self.set.group.unwrap_or(m.gid),
        )
    }

    fn xattrs_of(&self, item: &Item) -> OpResult<Vec<(OsString, Vec<u8>)>> {
        self.labelled(self.src.xattrs(&item.src)?)
    }

    /// `x` (a file's extended attributes) with the label `-s` asked for.
    fn labelled(&self, mut x: Vec<(OsString, Vec<u8>)>) -> OpResult<Vec<(OsString, Vec<u8>)>> {
        if let Some(label) = &self.set.selinux {
            x.retain(|(n, _)| n != "security.selinux");
            x.push(("security.selinux".into(), label.clone()));
        }
        Ok(x)
    }

    /// Owner, mode, xattrs and times of a non-regular file, by path.
    fn finish_meta(&mut self, item: &Item, chmod: bool) -> OpResult<()> {
        let m = &item.meta;
        let (uid, gid) = self.owner(m);
        if (uid, gid) != self.set.created_as {
            let r = self.dst.lchown(&item.dst, uid, gid);
            self.soft("ownership", r)?;
        }
        if chmod {
            let r = self.dst.chmod(&item.dst, m.perm);
            self.soft("modes", r)?;
        }
        for (n, v) in self.xattrs_of(item)? {
            let r = self.dst.lsetxattr(&item.dst, &n, &v);
            self.soft_xattr(&n, r)?;
        }
        let r = self.dst.set_times(&item.dst, m.atime, m.mtime);
        self.soft("times", r)
    }

    fn soft_xattr(&mut self, name: &OsStr, r: OpResult<()>) -> OpResult<()> {
        let ns = name
            .to_string_lossy()
            .split('.')
            .next()
            .unwrap_or("")
            .to_owned();
        self.soft(&format!("{ns}.* extended attributes"), r)
    }

    fn file(&mut self, item: &Item, ahead: Option<OpResult<Ahead>>) -> OpResult<()> {
        let m = &item.meta;
        self.replace(&item.dst)?;
        let out = self.dst.create(&item.dst, m.perm & 0o777)?;
        let mut xattrs = None;
        match ahead {
            Some(ahead) => {
                let Ahead { data, xattrs: x } = ahead?;
                xattrs = Some(x);
                if data.len() as u64 != m.size {
                    return Err(OpError {
                        errno: libc::EIO,
                        msg: format!(
                            "{}: changed size while it was copied ({} bytes, then {})",
                            item.src.display(),
                            m.size,
                            data.len()
                        ),
                    });
                }
                if !data.is_empty() {
                    self.dst.pwrite(&out, &data, 0)?;
                }
                if let Some(b) = &self.bar {
                    b.inc(m.size);
                }
            }
            None => self.stream(item, &out)?,
        }
        let (uid, gid) = self.owner(m);
        if (uid, gid) != self.set.created_as {
            let r = self.dst.fchown(&out, uid, gid);
            self.soft("ownership", r)?;
        }
        if self.set.chmod_always || m.perm & 0o7000 != 0 {
            let r = self.dst.fchmod(&out, m.perm);
            self.soft("modes", r)?;
        }
        let xattrs = match xattrs {
            Some(x) => self.labelled(x?)?,
            None => self.xattrs_of(item)?,
        };
        for (n, v) in xattrs {
            let r = self.dst.fsetxattr(&out, &n, &v);
            self.soft_xattr(&n, r)?;
        }
        let r = self.dst.futimens(&out, m.atime, m.mtime);
        self.soft("times", r)?;
        self.dst.close(out)
    }

    /// Copies a large (or sparse) file's data extent by extent.
    fn stream(&mut self, item: &Item, out: &D::File) -> OpResult<()> {
        let m = &item.meta;
        let f = self.src.open(&item.src)?;
        let extents = if m.blocks * 512 < m.size {
            self.src.extents(&f, m.size)?
        } else {
            vec![(0, m.size)]
        };
        let mut end_of_data = 0;
        for (start, len) in extents {
            let mut at = start;
            let end = start + len;
            while at < end {
                let want = ((end - at) as usize).min(self.buf.len());
                let n = self.src.pread(&f, &mut self.buf[..want], at)?;
                if n == 0 {
                    return Err(OpError {
                        errno: libc::EIO,
                        msg: format!(
                            "{}: shrank while it was copied (ends at {at}, {} expected)",
                            item.src.display(),
                            m.size
                        ),
                    });
                }
                self.dst.pwrite(out, &self.buf[..n], at)?;
                at += n as u64;
                if let Some(b) = &self.bar {
                    b.inc(n as u64);
                }
            }
            end_of_data = end;
        }
        if end_of_data < m.size {
            self.dst.set_len(out, m.size)?;
            if let Some(b) = &self.bar {
                b.inc(m.size - end_of_data);
            }
        }
        Ok(())
    }
}

fn is_small(item: &Item) -> bool {
    item.meta.kind == FileKind::Regular
        && item.meta.size <= SMALL
        && item.meta.blocks * 512 >= item.meta.size
        && item.meta.nlink <= 1
}

fn read_small<S: Side>(s: &S, item: &Item) -> OpResult<Ahead> {
    let f = s.open(&item.src)?;
    let mut buf = vec![0u8; item.meta.size as usize];
    let n = s.pread(&f, &mut buf, 0)?;
    buf.truncate(n);
    Ok(Ahead {
        data: buf,
        xattrs: s.xattrs(&item.src),
    })
}
