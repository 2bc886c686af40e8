//! fs2tar: a pax tar of a file system image, read through LKL.
//!
//! The image is opened read-only and mounted read-only inside LKL; the
//! whole tree is written, in name order, as a pax archive that GNU tar
//! reads: types (regular, directory, symlink, hard link, character and
//! block device, fifo), modes, owners, nanosecond mtimes, extended
//! attributes (`SCHILY.xattr.*`; `security.selinux` only with `-s`) and
//! sparse files (GNU sparse 1.0). Sockets cannot be stored in a tar
//! archive: they are skipped with a warning, as GNU tar does. The archive
//! is written to `OUT.tmp` and renamed to `OUT` once complete; on any
//! error, and on SIGINT, SIGTERM or SIGHUP (exit status 128 + the
//! signal), the temporary file is removed and nothing is left. An output
//! (or temporary, or contexts file) that is the image itself is refused.
//!
//! The program is [`main_cli`]; `src/main.rs` only calls it (so that the
//! end-to-end tests can build it under a name of their own).

pub mod pax;

use std::collections::{HashMap, VecDeque};
use std::ffi::{OsStr, OsString};
use std::io::{BufWriter, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Condvar, Mutex};

use anyhow::{anyhow, bail, Context, Result};
use clap::Parser;
use lkl_fs::{host, ops, DirectReader, FileKind, MountOptions, Mounted, ReadAhead, Stat};

/// Write a pax tar archive of the whole file system in IMAGE (mounted
/// read-only through LKL, the Linux kernel as a library; nothing is
/// written to IMAGE).
#[derive(Parser, Debug)]
#[command(name = "fs2tar", version)]
struct Args {
    /// File system type (ext2, ext3, ext4, btrfs, xfs, vfat, ...); detected
    /// from the image when omitted.
    #[arg(short = 't', long = "filesystem-type", value_name = "FSTYPE")]
    fstype: Option<String>,
    /// Partition number (1-based, MBR or GPT) holding the file system.
    #[arg(short = 'P', long = "partition", value_name = "PART")]
    partition: Option<u32>,
    /// Show the Linux kernel's messages (printk) on stderr.
    #[arg(short = 'p', long = "enable-printk")]
    printk: bool,
    /// Keep SELinux labels (the security.selinux attribute) in the archive.
    #[arg(short = 's', long = "selinux")]
    selinux: bool,
    /// Also write each file's SELinux context to this file, one
    /// "PATH CONTEXT" line per file (as upstream's fs2tar -s FILE).
    #[arg(long = "selinux-contexts", value_name = "FILE")]
    contexts: Option<PathBuf>,
    /// Memory for the kernel, in MiB.
    #[arg(short = 'm', long = "mb", value_name = "MB", default_value_t = 100,
          value_parser = clap::value_parser!(u64).range(16..=65536))]
    mb: u64,
    /// The file system image (a file or block device).
    #[arg(value_name = "IMAGE")]
    image: PathBuf,
    /// The tar archive to write.
    #[arg(value_name = "OUT.tar")]
    out: PathBuf,
}

/// The whole program: parses the command line, writes the archive.
pub fn main_cli() -> ExitCode {
    let args = Args::parse();
    // Before any thread: a termination signal removes OUT.tmp.
    if let Err(e) = host::on_signals_remove_partial("fs2tar") {
        eprintln!("fs2tar: cannot watch for signals: {e}");
        return ExitCode::FAILURE;
    }
    match run(&args) {
        Ok(warnings) => {
            if warnings > 0 {
                eprintln!("fs2tar: {warnings} file(s) skipped (see above)");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("fs2tar: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The temporary archive: removed unless renamed to its final name
/// (and by the signal thread if a termination signal comes first).
struct TempOut {
    partial: Option<host::Partial>,
}

impl TempOut {
    fn path(&self) -> &Path {
        self.partial.as_ref().map_or(Path::new(""), |p| p.path())
    }

    fn rename_to(mut self, to: &Path) -> Result<()> {
        let p = self.partial.take().expect("renamed once");
        let from = p.path().to_path_buf();
        p.rename_to(to)
            .with_context(|| format!("cannot rename {} to {}", from.display(), to.display()))
    }
}

impl Drop for TempOut {
    fn drop(&mut self) {
        if let Some(p) = self.partial.take() {
            let _ = std::fs::remove_file(p.path());
        }
    }
}

/// A writer whose errors name the file written (no space left, ...).
struct Named<W> {
    inner: W,
    path: PathBuf,
}

impl<W> Named<W> {
    fn err(&self, e: std::io::Error) -> std::io::Error {
        std::io::Error::new(
            e.kind(),
            format!("cannot write {}: {e}", self.path.display()),
        )
    }
}

impl<W: Write> Write for Named<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.inner.write(buf).map_err(|e| self.err(e))
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush().map_err(|e| self.err(e))
    }
}

/// Refuses an output that is the image itself (through any path, hard
/// link or symlink): writing it would destroy what is being read.
fn refuse_image_as_output(image: &Path, what: &str, out: &Path) -> Result<()> {
    if host::same_file(image, out) {
        bail!(
            "{what} {} is the image {} itself: writing it would destroy the image; give another file",
            out.display(),
            image.display()
        );
    }
    Ok(())
}

fn run(args: &Args) -> Result<usize> {
    if args.out.is_dir() {
        bail!(
            "{} is a directory; give the archive's file name",
            args.out.display()
        );
    }
    // The archive is written beside OUT and renamed over it: a fifo or a
    // device there (`/dev/null` as root) would be replaced by a file.
    if let Ok(m) = std::fs::metadata(&args.out) {
        if !m.is_file() {
            bail!(
                "{} is not a regular file: fs2tar writes the archive to a new file and renames \
                 it to OUT; give a file name",
                args.out.display()
            );
        }
    }
    let mut tmp_name = args.out.clone().into_os_string();
    tmp_name.push(".tmp");
    let tmp_path = PathBuf::from(tmp_name);
    refuse_image_as_output(&args.image, "the output", &args.out)?;
    refuse_image_as_output(&args.image, "the temporary output", &tmp_path)?;
    if let Some(c) = &args.contexts {
        refuse_image_as_output(&args.image, "the SELinux contexts file", c)?;
    }
    let mut opts = MountOptions::read_only(&args.image);
    opts.fstype = args.fstype.clone();
    opts.partition = args.partition;
    opts.printk = args.printk;
    opts.memory = args.mb << 20;
    // The process exits right after: no need to wait on the halt.
    opts.halt = false;
    let mounted = Mounted::open(&opts)?;
    // A stale OUT.tmp (not the image: checked above) is replaced; the new
    // one is made with O_EXCL, so no existing file is ever truncated.
    let _ = std::fs::remove_file(&tmp_path);
    let (file, partial) = host::Partial::create(&tmp_path, |p| {
        std::fs::File::options()
            .write(true)
            .create_new(true)
            .open(p)
    })
    .with_context(|| format!("cannot create {}", tmp_path.display()))?;
    let tmp = TempOut {
        partial: Some(partial),
    };
    let contexts = match &args.contexts {
        Some(p) => Some(BufWriter::new(Named {
            inner: std::fs::File::create(p)
                .with_context(|| format!("cannot create {}", p.display()))?,
            path: p.clone(),
        })),
        None => None,
    };
    let direct = mounted.direct_reader();
    let pipe = Pipe::default();
    let mut walk = Walk {
        links: HashMap::new(),
        selinux: args.selinux || contexts.is_some(),
        keep_selinux: args.selinux,
        contexts,
        warnings: 0,
        out: match direct {
            Some(_) => Out::Pass(&pipe, Vec::new()),
            None => Out::Keep(Vec::new()),
        },
        direct: direct.clone(),
    };
    let named = Named {
        inner: file,
        path: tmp.path().to_path_buf(),
    };
    let tar = pax::Writer::new(BufWriter::with_capacity(1 << 20, named));
    let root = mounted.path().to_path_buf();
    let root_st = ops::lstat(&root)?;
    let (out, mut walk) = match &direct {
        // Each file's data read from the image by this thread while
        // another walks the tree in the kernel: the two overlap.
        Some(d) => std::thread::scope(|scope| {
            let pipe = &pipe;
            let walker = scope.spawn(move || {
                let r = walk
                    .collect(None, &root, b".", &root_st)
                    .and_then(|()| walk.flush());
                pipe.finish();
                r.map(|()| walk)
            });
            let written = write_passed(tar, pipe, d);
            if written.is_err() {
                pipe.stop();
            }
            let walk = walker
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p));
            // The writer's error first (a full disk): the walk then only
            // stopped because of it. A walk's error ends the members, and
            // the writer finishes without complaint: report the walk's.
            let written = written?;
            Ok::<_, anyhow::Error>((written, walk?))
        })?,
        None => {
            walk.collect(None, &root, b".", &root_st)?;
            let Out::Keep(members) = std::mem::replace(&mut walk.out, Out::Keep(Vec::new())) else {
                unreachable!("members are kept without a direct reader")
            };
            (write_members(tar, &members)?, walk)
        }
    };
    if let Some(c) = &mut walk.contexts {
        c.flush()?;
    }
    let out = out.finish()?;
    // Atomic for readers (the rename), not fsynced: like GNU tar, the
    // archive reaches the disk when the host writes it back.
    out.into_inner().map_err(|e| e.into_error())?;
    let warnings = walk.warnings;
    mounted.close()?;
    tmp.rename_to(&args.out)?;
    Ok(warnings)
}

/// One member to archive: its path inside LKL, its header, its stat.
struct Member {
    path: PathBuf,
    header: pax::Header,
    st: Stat,
    /// A regular file's data on the device, `(physical, len)` in file
    /// order, when it can be read from the image ([`DirectReader`]).
    pieces: Option<Vec<(u64, u64)>>,
}

impl Member {
    /// A regular file read whole ahead of time: small and not sparse.
    fn small(&self) -> bool {
        self.header.kind == pax::Kind::File
            && self.st.size <= SMALL
            && self.st.blocks * 512 >= self.st.size
    }
}

/// Files up to this size are read ahead by worker threads.
const SMALL: u64 = 1 << 20;
/// Worker threads reading ahead. One: since the kernel hands its CPU
/// straight to a waiting thread, one reader overlaps LKL's reads with the
/// writing of the archive, and more only add host thread switches (300 MB,
/// 10 000 files: 0.33 s with one, 0.37 s with two, 0.41 s with three).
const READERS: usize = 1;
/// Bytes held by the read-ahead.
const AHEAD: usize = 64 << 20;

struct Walk<'a> {
    /// (device, inode) -> archive path of the first link seen (btrfs
    /// subvolumes have devices of their own).
    links: HashMap<(u64, u64), Vec<u8>>,
    /// Read security.selinux at all.
    selinux: bool,
    /// Store it in the archive.
    keep_selinux: bool,
    contexts: Option<BufWriter<Named<std::fs::File>>>,
    warnings: usize,
    out: Out<'a>,
    /// Where files' data is found on the image, if it can be read there.
    direct: Option<DirectReader>,
}

/// Where the walk puts members.
enum Out<'a> {
    /// All of them, for the writer to start once the walk is done.
    Keep(Vec<Member>),
    /// To the writer as they are found, a batch at a time.
    Pass(&'a Pipe, Vec<Member>),
}

/// Members passed from the walking thread to the writing one, in order.
#[derive(Default)]
struct Pipe {
    state: Mutex<PipeState>,
    cv: Condvar,
}

#[derive(Default)]
struct PipeState {
    members: VecDeque<Member>,
    /// File data bytes the members hold.
    bytes: u64,
    /// The walk ended (all members passed, or an error).
    done: bool,
    /// The writer gave up: the walk should stop.
    stop: bool,
    /// The writer sleeps until there is enough to do.
    waiting: bool,
}

/// Members passed together (one lock per batch).
const BATCH: usize = 64;
/// A sleeping writer is woken once this many members, or this many bytes
/// of file data, are waiting (or the walk ends): each wake-up costs a host
/// thread switch, and many on a loaded machine.
const WAKE_MEMBERS: usize = 1024;
const WAKE_BYTES: u64 = 8 << 20;

impl Pipe {
    fn lock(&self) -> std::sync::MutexGuard<'_, PipeState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Passes `batch` on; an error once the writer has stopped.
    fn send(&self, batch: &mut Vec<Member>) -> Result<()> {
        let mut s = self.lock();
        if s.stop {
            return Err(anyhow!("the archive's writer stopped"));
        }
        s.bytes += batch.iter().map(|m| m.header.size).sum::<u64>();
        s.members.extend(batch.drain(..));
        if s.waiting && (s.members.len() >= WAKE_MEMBERS || s.bytes >= WAKE_BYTES) {
            s.waiting = false;
            drop(s);
            self.cv.notify_one();
        }
        Ok(())
    }

    fn finish(&self) {
        self.lock().done = true;
        self.cv.notify_one();
    }

    fn stop(&self) {
        self.lock().stop = true;
    }

    /// Moves every member passed so far into `into`, waiting for enough
    /// to do when there is none; false once the walk is done and all were
    /// taken.
    fn take(&self, into: &mut VecDeque<Member>) -> bool {
        let mut s = self.lock();
        if s.members.is_empty() && !s.done {
            s.waiting = true;
            while s.waiting && !s.done {
                s = self.cv.wait(s).unwrap_or_else(|e| e.into_inner());
            }
            s.waiting = false;
        }
        s.bytes = 0;
        std::mem::swap(&mut s.members, into);
        !into.is_empty() || !s.done
    }
}

const SELINUX: &[u8] = b"security.selinux";

impl Walk<'_> {
    fn xattrs(&mut self, path: &Path, name: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let names = match ops::list_xattrs(path) {
            Ok(n) => n,
            Err(e) if e.errno() == Some(lkl_fs::Errno::EOPNOTSUPP) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let mut out = Vec::new();
        for n in names {
            let is_selinux = n.as_bytes() == SELINUX;
            if is_selinux && !self.selinux {
                continue;
            }
            let v = match ops::get_xattr(path, &n) {
                Ok(v) => v,
                // Removed between list and get: nothing to keep.
                Err(e) if e.errno() == Some(lkl_fs::Errno::ENODATA) => continue,
                Err(e) => return Err(e.into()),
            };
            if is_selinux {
                if let Some(c) = &mut self.contexts {
                    let ctx = v.strip_suffix(b"\0").unwrap_or(&v);
                    c.write_all(&name[1..])?;
                    c.write_all(b" ")?;
                    c.write_all(ctx)?;
                    c.write_all(b"\n")?;
                }
                if !self.keep_selinux {
                    continue;
                }
            }
            out.push((n.as_bytes().to_vec(), v));
        }
        Ok(out)
    }

    fn push(&mut self, m: Member) -> Result<()> {
        match &mut self.out {
            Out::Keep(v) => v.push(m),
            Out::Pass(pipe, batch) => {
                batch.push(m);
                if batch.len() >= BATCH {
                    pipe.send(batch)?;
                }
            }
        }
        Ok(())
    }

    /// Passes on the members not passed yet.
    fn flush(&mut self) -> Result<()> {
        match &mut self.out {
            Out::Pass(pipe, batch) if !batch.is_empty() => pipe.send(batch),
            _ => Ok(()),
        }
    }

    /// Lists `path` (inside LKL; `name` in the open directory `dir`) as
    /// `name`, and below it for a directory, in name order.
    fn collect(
        &mut self,
        dir: Option<&ops::File>,
        path: &Path,
        name: &[u8],
        st: &Stat,
    ) -> Result<()> {
        let kind = st.kind();
        let mut header = pax::Header {
            path: name.to_vec(),
            kind: pax::Kind::Dir,
            mode: st.perm(),
            uid: st.uid,
            gid: st.gid,
            mtime: (st.mtime.sec, st.mtime.nsec),
            size: 0,
            xattrs: Vec::new(),
        };
        let member = |header| Member {
            path: path.to_path_buf(),
            header,
            st: *st,
            pieces: None,
        };
        if kind != FileKind::Dir && st.nlink > 1 {
            if let Some(first) = self.links.get(&(st.dev, st.ino)) {
                header.kind = pax::Kind::HardLink(first.clone());
                self.push(member(header))?;
                return Ok(());
            }
            self.links.insert((st.dev, st.ino), name.to_vec());
        }
        header.xattrs = self.xattrs(path, name)?;
        match kind {
            FileKind::Dir => {
                self.push(member(header))?;
                let mut entries: Vec<OsString> = Vec::new();
                let mut rd = ops::read_dir(path)?;
                for e in rd.by_ref() {
                    entries.push(e?.name);
                }
                entries.sort_unstable_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
                for e in entries {
                    let child = path.join(&e);
                    // One name looked up in the open directory, not the whole path.
                    let st = ops::lstat_at(rd.dir(), &e)?;
                    let cname = [name, b"/", e.as_bytes()].concat();
                    self.collect(Some(rd.dir()), &child, &cname, &st)?;
                }
            }
            FileKind::Regular => {
                header.kind = pax::Kind::File;
                header.size = st.size;
                let mut m = member(header);
                // A file with fewer blocks than its size needs may have
                // holes: read through the kernel, which finds them.
                if let (Some(d), Some(dir)) = (&self.direct, dir) {
                    if st.blocks * 512 >= st.size {
                        let name =
                            OsStr::from_bytes(path.file_name().map_or(b"", |n| n.as_bytes()));
                        let f = ops::open_at(dir, name, ops::O_RDONLY | ops::O_NOFOLLOW, 0)?;
                        m.pieces = d.pieces(&f, st.size)?;
                    }
                }
                self.push(m)?;
            }
            FileKind::Symlink => {
                header.kind = pax::Kind::Symlink(ops::readlink(path)?.as_bytes().to_vec());
                self.push(member(header))?;
            }
            FileKind::CharDev | FileKind::BlockDev => {
                let (ma, mi) = (ops::major(st.rdev), ops::minor(st.rdev));
                header.kind = if kind == FileKind::CharDev {
                    pax::Kind::CharDev(ma, mi)
                } else {
                    pax::Kind::BlockDev(ma, mi)
                };
                self.push(member(header))?;
            }
            FileKind::Fifo => {
                header.kind = pax::Kind::Fifo;
                self.push(member(header))?;
            }
            FileKind::Socket | FileKind::Unknown => {
                eprintln!(
                    "fs2tar: {}: {} ignored (tar cannot store it)",
                    OsStr::from_bytes(&name[2.min(name.len())..]).to_string_lossy(),
                    if kind == FileKind::Socket {
                        "socket"
                    } else {
                        "file of unknown type"
                    }
                );
                self.warnings += 1;
            }
        }
        Ok(())
    }
}

/// Reads a small file whole.
fn read_whole(m: &Member) -> Result<Vec<u8>, lkl_fs::FsError> {
    let f = ops::open(&m.path, ops::O_RDONLY | ops::O_NOFOLLOW, 0)?;
    let mut buf = vec![0u8; m.st.size as usize];
    let n = f.pread_full(&mut buf, 0)?;
    buf.truncate(n);
    Ok(buf)
}

/// Writes every member, small files' data read ahead by worker threads.
fn write_members<W: Write>(mut tar: pax::Writer<W>, members: &[Member]) -> Result<pax::Writer<W>> {
    let small: Vec<usize> = (0..members.len()).filter(|&i| members[i].small()).collect();
    let ra = ReadAhead::new(
        small.iter().map(|&i| members[i].st.size as usize).collect(),
        AHEAD,
    );
    let mut buf = vec![0u8; 1 << 20];
    std::thread::scope(|scope| {
        for _ in 0..READERS {
            scope.spawn(|| ra.work(|j| read_whole(&members[small[j]])));
        }
        let r = (|| {
            let mut next_small = 0;
            for m in members {
                if m.small() {
                    let data = ra.take(next_small).context("read-ahead stopped")??;
                    next_small += 1;
                    write_small(&mut tar, m, &data)?;
                } else if m.header.kind == pax::Kind::File {
                    stream_file(&mut tar, m, &mut buf)?;
                } else {
                    tar.header(&m.header)?;
                }
            }
            Ok::<(), anyhow::Error>(())
        })();
        ra.stop();
        r
    })?;
    Ok(tar)
}

/// Writes the members the walk passes through `pipe` as they come: files
/// with pieces read from the image by this thread, others through the
/// kernel.
fn write_passed<W: Write>(
    mut tar: pax::Writer<W>,
    pipe: &Pipe,
    direct: &DirectReader,
) -> Result<pax::Writer<W>> {
    let mut buf = vec![0u8; 1 << 20];
    let mut batch = VecDeque::new();
    while pipe.take(&mut batch) {
        for m in batch.drain(..) {
            match &m.pieces {
                Some(pieces) => {
                    tar.header(&m.header)?;
                    for &(p, len) in pieces {
                        let mut at = 0;
                        while at < len {
                            let n = ((len - at) as usize).min(buf.len());
                            direct.read_at(p + at, &mut buf[..n])?;
                            tar.data(&buf[..n])?;
                            at += n as u64;
                        }
                    }
                    tar.end_data()?;
                }
                None if m.small() => {
                    let data = read_whole(&m)?;
                    write_small(&mut tar, &m, &data)?;
                }
                None if m.header.kind == pax::Kind::File => stream_file(&mut tar, &m, &mut buf)?,
                None => tar.header(&m.header)?,
            }
        }
    }
    Ok(tar)
}

/// Writes a small file read whole, unless its size changed.
fn write_small<W: Write>(tar: &mut pax::Writer<W>, m: &Member, data: &[u8]) -> Result<()> {
    if data.len() as u64 != m.st.size {
        bail!(
            "{}: the file changed size while it was read ({} bytes, then {})",
            m.path.display(),
            m.st.size,
            data.len()
        );
    }
    tar.header(&m.header)?;
    tar.data(data)?;
    tar.end_data()?;
    Ok(())
}

/// Writes a large or sparse file, extent by extent.
fn stream_file<W: Write>(tar: &mut pax::Writer<W>, m: &Member, buf: &mut [u8]) -> Result<()> {
    let st = &m.st;
    let mut header = m.header.clone();
    let f = ops::open(&m.path, ops::O_RDONLY | ops::O_NOFOLLOW, 0)?;
    // A file with fewer blocks than its size needs may have holes.
    let extents = if st.blocks * 512 < st.size {
        f.data_extents(st.size)?
    } else {
        vec![(0, st.size)]
    };
    if extents != [(0, st.size)] && st.size > 0 {
        header.kind = pax::Kind::Sparse(extents.clone());
    }
    tar.header(&header)?;
    for (start, len) in extents {
        let mut at = start;
        let end = start + len;
        while at < end {
            let want = ((end - at) as usize).min(buf.len());
            let n = f.pread_full(&mut buf[..want], at)?;
            if n < want {
                bail!(
                    "{}: the file shrank while it was read ({} bytes expected, the data ends at {})",
                    m.path.display(),
                    st.size,
                    at + n as u64
                );
            }
            tar.data(&buf[..n])?;
            at += n as u64;
        }
    }
    tar.end_data()?;
    Ok(())
}
