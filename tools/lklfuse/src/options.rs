//! The `-o` options: upstream lklfuse's own (`type=`, `ro`, `part=`, `mb=`,
//! `opts=`, `log=`), ours (`threads=`, `writeback`), and the FUSE mount
//! options passed on to the kernel (`allow_other`, `default_permissions`,
//! `fsname=`, ...).
//!
//! As in upstream (libfuse's `fuse_opt`), options are separated by commas,
//! and a backslash escapes the next character, so `opts=a\,b` gives the
//! file system the data string `a,b`.

use std::path::PathBuf;

use fuser::MountOption;

/// The kernel's memory unless `mb=` says otherwise, in MiB: every inode
/// the host caches is held open inside LKL (see `nodes.rs`), about 1.6 KiB
/// each on ext4; 64 MiB ran out after 33 000 files of an untar. Memory
/// that is never touched costs nothing (mounting took 30 ms for 64, 256
/// and 512 MiB alike).
pub const DEFAULT_MB: u64 = 256;

/// The most `mb=` may ask for (1 TiB); lklfuse also refuses more than the
/// host's memory.
pub const MAX_MB: u64 = 1 << 20;

/// What `-o` asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// `type=`: the file system type; `None` to detect it.
    pub fstype: Option<String>,
    /// `ro`: mount read-only, open the image read-only.
    pub read_only: bool,
    /// `part=N`: the partition (1-based).
    pub partition: Option<u32>,
    /// `mb=N`: the kernel's memory in MiB (default 256; upstream's is 64,
    /// which holds only some 33 000 inodes the host caches).
    pub mb: u64,
    /// `opts=`: the file system's mount data.
    pub fs_opts: Option<String>,
    /// `log=FILE`: where messages go once in the background.
    pub log: Option<PathBuf>,
    /// `threads=N`: serving threads (`-s` is `threads=1`).
    pub threads: Option<usize>,
    /// `max_nodes=N`: how many inodes the host may keep cached before the
    /// oldest files are given back (default: from `mb`).
    pub max_nodes: Option<usize>,
    /// `writeback` / `nowriteback`: the host's write-back cache (on by
    /// default: many small writes become few large ones, see
    /// docs/lklfuse.md).
    pub writeback: bool,
    /// `allow_other`.
    pub allow_other: bool,
    /// `allow_root`.
    pub allow_root: bool,
    /// Options for the FUSE mount itself.
    pub mount: Vec<MountOption>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            fstype: None,
            read_only: false,
            partition: None,
            mb: DEFAULT_MB,
            fs_opts: None,
            log: None,
            threads: None,
            max_nodes: None,
            writeback: true,
            allow_other: false,
            allow_root: false,
            mount: Vec::new(),
        }
    }
}

/// A bad `-o` option.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OptionError {
    /// An option nobody knows.
    #[error("unknown option -o {0} (see lklfuse --help)")]
    Unknown(String),
    /// A known option with a value that does not fit it.
    #[error("bad value in -o {option}: {reason}")]
    BadValue {
        /// The option as given.
        option: String,
        /// What is wrong.
        reason: String,
    },
}

/// Splits `s` at unescaped `sep` and removes the escapes.
fn split_escaped(s: &str, sep: char) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(n) = chars.next() {
                out.last_mut().expect("never empty").push(n);
            }
        } else if c == sep {
            out.push(String::new());
        } else {
            out.last_mut().expect("never empty").push(c);
        }
    }
    out
}

/// Splits at the first unescaped `=`, keeping escapes in the value.
fn key_value(item: &str) -> (String, Option<String>) {
    let mut key = String::new();
    let mut chars = item.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => {
                if let Some((_, n)) = chars.next() {
                    key.push(n);
                }
            }
            '=' => return (key, Some(item[i + 1..].to_owned())),
            _ => key.push(c),
        }
    }
    (key, None)
}

/// Splits one `-o` argument into its items, keeping escapes (they are
/// removed per value).
fn items(arg: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut chars = arg.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                let cur = out.last_mut().expect("never empty");
                cur.push('\\');
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            ',' => out.push(String::new()),
            _ => out.last_mut().expect("never empty").push(c),
        }
    }
    out.retain(|s| !s.is_empty());
    out
}

fn unescape(s: &str) -> String {
    split_escaped(s, '\0').concat()
}

impl Options {
    /// Parses the values of every `-o`, in order (later ones win).
    ///
    /// # Errors
    /// [`OptionError`] naming the first bad option.
    pub fn parse<S: AsRef<str>>(args: &[S]) -> Result<Options, OptionError> {
        let mut o = Options::default();
        for arg in args {
            for item in items(arg.as_ref()) {
                o.apply(&item)?;
            }
        }
        if o.allow_other && o.allow_root {
            return Err(OptionError::BadValue {
                option: "allow_root".into(),
                reason: "allow_other and allow_root cannot be given together".into(),
            });
        }
        Ok(o)
    }

    fn apply(&mut self, item: &str) -> Result<(), OptionError> {
        let (key, value) = key_value(item);
        let bad = |reason: &str| OptionError::BadValue {
            option: item.to_owned(),
            reason: reason.to_owned(),
        };
        let need = |v: &Option<String>| -> Result<String, OptionError> {
            match v {
                Some(v) if !v.is_empty() => Ok(unescape(v)),
                _ => Err(bad("a value is required")),
            }
        };
        let flag = |v: &Option<String>| -> Result<(), OptionError> {
            match v {
                None => Ok(()),
                Some(_) => Err(bad("this option takes no value")),
            }
        };
        match key.as_str() {
            "type" => {
                let t = need(&value)?;
                if !t.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    return Err(bad("a file system type is letters and digits"));
                }
                self.fstype = Some(t);
            }
            "ro" => {
                flag(&value)?;
                self.read_only = true;
            }
            "rw" => {
                flag(&value)?;
                self.read_only = false;
            }
            "part" => {
                let n: u32 = need(&value)?
                    .parse()
                    .map_err(|_| bad("a partition number, 1 or more"))?;
                if n == 0 {
                    return Err(bad("partitions are numbered from 1"));
                }
                self.partition = Some(n);
            }
            "mb" => {
                let n: u64 = need(&value)?
                    .parse()
                    .map_err(|_| bad("a whole number of MiB"))?;
                if n < 16 {
                    return Err(bad(
                        "too small: the kernel needs 16 MiB at least (default 256)",
                    ));
                }
                if n > MAX_MB {
                    return Err(bad(&format!(
                        "too large: at most {MAX_MB} MiB (1 TiB), and no more than the host's \
                         memory (default 256)"
                    )));
                }
                self.mb = n;
            }
            "opts" => self.fs_opts = Some(need(&value)?),
            "log" => self.log = Some(PathBuf::from(need(&value)?)),
            "threads" => {
                let n: usize = need(&value)?
                    .parse()
                    .map_err(|_| bad("a number of threads, 1 to 64"))?;
                if !(1..=64).contains(&n) {
                    return Err(bad("a number of threads, 1 to 64"));
                }
                self.threads = Some(n);
            }
            "max_nodes" => {
                let n: usize = need(&value)?
                    .parse()
                    .map_err(|_| bad("a number of inodes, 16 or more"))?;
                if n < 16 {
                    return Err(bad("a number of inodes, 16 or more"));
                }
                self.max_nodes = Some(n);
            }
            "writeback" | "writeback_cache" => {
                flag(&value)?;
                self.writeback = true;
            }
            "nowriteback" | "no_writeback_cache" => {
                flag(&value)?;
                self.writeback = false;
            }
            "allow_other" => {
                flag(&value)?;
                self.allow_other = true;
            }
            "allow_root" => {
                flag(&value)?;
                self.allow_root = true;
            }
            "fsname" => self.mount.push(MountOption::FSName(need(&value)?)),
            "subtype" => self.mount.push(MountOption::Subtype(need(&value)?)),
            _ => {
                let opt = match key.as_str() {
                    "default_permissions" => MountOption::DefaultPermissions,
                    "auto_unmount" => MountOption::AutoUnmount,
                    "dev" => MountOption::Dev,
                    "nodev" => MountOption::NoDev,
                    "suid" => MountOption::Suid,
                    "nosuid" => MountOption::NoSuid,
                    "exec" => MountOption::Exec,
                    "noexec" => MountOption::NoExec,
                    "atime" => MountOption::Atime,
                    "noatime" => MountOption::NoAtime,
                    "dirsync" => MountOption::DirSync,
                    "sync" => MountOption::Sync,
                    "async" => MountOption::Async,
                    _ => return Err(OptionError::Unknown(item.to_owned())),
                };
                flag(&value)?;
                self.mount.push(opt);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_options() {
        let o = Options::parse(&[
            "type=ext4,ro",
            "part=2,mb=128",
            "opts=data\\=journal\\,noatime",
        ])
        .unwrap();
        assert_eq!(o.fstype.as_deref(), Some("ext4"));
        assert!(o.read_only);
        assert_eq!(o.partition, Some(2));
        assert_eq!(o.mb, 128);
        assert_eq!(o.fs_opts.as_deref(), Some("data=journal,noatime"));
        let d = Options::parse::<&str>(&[]).unwrap();
        assert_eq!((d.mb, d.fstype, d.read_only), (DEFAULT_MB, None, false));
    }

    #[test]
    fn fuse_options_pass_on() {
        let o = Options::parse(&["allow_other,default_permissions,fsname=img,nodev"]).unwrap();
        assert!(o.allow_other);
        assert_eq!(
            o.mount,
            [
                MountOption::DefaultPermissions,
                MountOption::FSName("img".into()),
                MountOption::NoDev
            ]
        );
    }

    #[test]
    fn bad_options_are_named() {
        let e = |s: &str| Options::parse(&[s]).unwrap_err().to_string();
        assert_eq!(
            e("frobnicate"),
            "unknown option -o frobnicate (see lklfuse --help)"
        );
        assert!(e("part=0").contains("part=0"));
        assert!(e("part=x").contains("partition number"));
        assert!(e("mb=2").contains("too small: the kernel needs 16 MiB"));
        assert!(e("mb=99999999").contains("too large: at most 1048576 MiB"));
        assert!(e("type=").contains("value is required"));
        assert!(e("type=ext4;rm").contains("letters"));
        assert!(e("ro=1").contains("no value"));
        assert!(e("threads=0").contains("threads"));
        assert!(e("max_nodes=3").contains("16 or more"));
        assert!(e("allow_other,allow_root").contains("together"));
    }

    #[test]
    fn escapes() {
        assert_eq!(items("a\\,b,c"), ["a\\,b", "c"]);
        assert_eq!(
            key_value("k\\=x=v\\,w"),
            ("k=x".into(), Some("v\\,w".into()))
        );
        assert_eq!(unescape("v\\,w\\\\"), "v,w\\");
    }
}
