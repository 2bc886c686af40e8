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
//! error the temporary file is removed and nothing is left.
//!
//! The program is [`main_cli`]; `src/main.rs` only calls it (so that the
//! end-to-end tests can build it under a name of their own).

pub mod pax;

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::io::{BufWriter, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Parser;
use lkl_fs::{ops, FileKind, MountOptions, Mounted, Stat};

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

/// A temporary output file, removed unless kept.
struct TempOut {
    path: PathBuf,
    keep: bool,
}

impl Drop for TempOut {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

fn run(args: &Args) -> Result<usize> {
    if args.out.is_dir() {
        bail!(
            "{} is a directory; give the archive's file name",
            args.out.display()
        );
    }
    let mut tmp_name = args.out.clone().into_os_string();
    tmp_name.push(".tmp");
    let tmp = TempOut {
        path: PathBuf::from(tmp_name),
        keep: false,
    };
    let mut opts = MountOptions::read_only(&args.image);
    opts.fstype = args.fstype.clone();
    opts.partition = args.partition;
    opts.printk = args.printk;
    opts.memory = args.mb << 20;
    // The process exits right after: no need to wait on the halt.
    opts.halt = false;
    let mounted = Mounted::open(&opts)?;
    let file = std::fs::File::create(&tmp.path)
        .with_context(|| format!("cannot create {}", tmp.path.display()))?;
    let contexts = match &args.contexts {
        Some(p) => Some(BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("cannot create {}", p.display()))?,
        )),
        None => None,
    };
    let mut walk = Walk {
        tar: pax::Writer::new(BufWriter::with_capacity(1 << 20, file)),
        links: HashMap::new(),
        selinux: args.selinux || contexts.is_some(),
        keep_selinux: args.selinux,
        contexts,
        buf: vec![0u8; 1 << 20],
        warnings: 0,
    };
    let root = mounted.path().to_path_buf();
    walk.entry(&root, b".", &ops::lstat(&root)?)?;
    let Walk {
        tar,
        contexts,
        warnings,
        ..
    } = walk;
    let out = tar
        .finish()
        .with_context(|| format!("cannot write {}", tmp.path.display()))?;
    let file = out
        .into_inner()
        .map_err(|e| e.into_error())
        .with_context(|| format!("cannot write {}", tmp.path.display()))?;
    file.sync_all()
        .with_context(|| format!("cannot write {}", tmp.path.display()))?;
    if let Some(mut c) = contexts {
        c.flush()
            .context("cannot write the SELinux contexts file")?;
    }
    mounted.close()?;
    std::fs::rename(&tmp.path, &args.out).with_context(|| {
        format!(
            "cannot rename {} to {}",
            tmp.path.display(),
            args.out.display()
        )
    })?;
    let mut tmp = tmp;
    tmp.keep = true;
    Ok(warnings)
}

struct Walk<W: Write> {
    tar: pax::Writer<W>,
    /// (inode) -> archive path of the first link seen.
    links: HashMap<u64, Vec<u8>>,
    /// Read security.selinux at all.
    selinux: bool,
    /// Store it in the archive.
    keep_selinux: bool,
    contexts: Option<BufWriter<std::fs::File>>,
    buf: Vec<u8>,
    warnings: usize,
}

const SELINUX: &[u8] = b"security.selinux";

impl<W: Write> Walk<W> {
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

    /// Archives `path` (inside LKL) as `name`, and below it for a directory.
    fn entry(&mut self, path: &Path, name: &[u8], st: &Stat) -> Result<()> {
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
        if kind != FileKind::Dir && st.nlink > 1 {
            if let Some(first) = self.links.get(&st.ino) {
                header.kind = pax::Kind::HardLink(first.clone());
                self.tar.header(&header)?;
                return Ok(());
            }
            self.links.insert(st.ino, name.to_vec());
        }
        header.xattrs = self.xattrs(path, name)?;
        match kind {
            FileKind::Dir => {
                self.tar.header(&header)?;
                let mut entries: Vec<OsString> = Vec::new();
                for e in ops::read_dir(path)? {
                    entries.push(e?.name);
                }
                entries.sort_unstable_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
                for e in entries {
                    let child = path.join(&e);
                    let st = ops::lstat(&child)?;
                    let cname = [name, b"/", e.as_bytes()].concat();
                    self.entry(&child, &cname, &st)?;
                }
            }
            FileKind::Regular => self.file(path, header, st)?,
            FileKind::Symlink => {
                header.kind = pax::Kind::Symlink(ops::readlink(path)?.as_bytes().to_vec());
                self.tar.header(&header)?;
            }
            FileKind::CharDev | FileKind::BlockDev => {
                let (ma, mi) = (ops::major(st.rdev), ops::minor(st.rdev));
                header.kind = if kind == FileKind::CharDev {
                    pax::Kind::CharDev(ma, mi)
                } else {
                    pax::Kind::BlockDev(ma, mi)
                };
                self.tar.header(&header)?;
            }
            FileKind::Fifo => {
                header.kind = pax::Kind::Fifo;
                self.tar.header(&header)?;
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

    fn file(&mut self, path: &Path, mut header: pax::Header, st: &Stat) -> Result<()> {
        let f = ops::open(path, ops::O_RDONLY | ops::O_NOFOLLOW, 0)?;
        header.size = st.size;
        // A file with fewer blocks than its size needs has holes.
        let extents = if st.blocks * 512 < st.size {
            f.data_extents(st.size)?
        } else {
            vec![(0, st.size)]
        };
        let sparse = extents != [(0, st.size)] && st.size > 0;
        header.kind = if sparse {
            pax::Kind::Sparse(extents.clone())
        } else {
            pax::Kind::File
        };
        self.tar.header(&header)?;
        for (start, len) in extents {
            let mut at = start;
            let end = start + len;
            while at < end {
                let want = ((end - at) as usize).min(self.buf.len());
                let n = f.pread_full(&mut self.buf[..want], at)?;
                if n < want {
                    bail!(
                        "{}: the file shrank while it was read ({} bytes expected, the data ends at {})",
                        path.display(),
                        st.size,
                        at + n as u64
                    );
                }
                self.tar.data(&self.buf[..n])?;
                at += n as u64;
            }
        }
        self.tar.end_data()?;
        Ok(())
    }
}
