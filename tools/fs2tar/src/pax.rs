//! A pax (POSIX.1-2001 `ustar` + extended headers) archive writer, with
//! GNU sparse format 1.0 for files with holes.
//!
//! Sources: POSIX.1-2008 `pax` ("pax Interchange Format": ustar header
//! layout, `x` extended header records `"%d %s=%s\n"`, keys `path`,
//! `linkpath`, `size`, `uid`, `gid`, `mtime`); the GNU tar manual,
//! appendix "Sparse Formats", section "PAX Format, Versions 1.0"
//! (`GNU.sparse.major/minor/name/realsize` in the extended header, and a
//! map of decimal numbers, one per line, padded to 512 bytes, in front of
//! the data); `SCHILY.xattr.NAME` records as star and GNU tar
//! (`--xattrs`) write them.

use std::io::{self, Write};

/// The block size of tar.
pub const BLOCK: usize = 512;

/// What an entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// A regular file of `size` bytes (its data follows).
    File,
    /// A regular file stored sparse: the data extents `(offset, len)`.
    Sparse(Vec<(u64, u64)>),
    /// A hard link to an earlier entry's path.
    HardLink(Vec<u8>),
    /// A symlink to this target.
    Symlink(Vec<u8>),
    /// A character device.
    CharDev(u32, u32),
    /// A block device.
    BlockDev(u32, u32),
    /// A directory.
    Dir,
    /// A named pipe.
    Fifo,
}

/// One member's metadata.
#[derive(Debug, Clone)]
pub struct Header {
    /// The path in the archive (directories without the trailing `/`).
    pub path: Vec<u8>,
    /// What it is.
    pub kind: Kind,
    /// Permission bits with set-uid/gid and sticky.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Modification time: seconds and nanoseconds.
    pub mtime: (i64, u32),
    /// The file's size (the real size for sparse files; 0 for others).
    pub size: u64,
    /// Extended attributes, in order.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// A pax record `"LEN key=value\n"`, LEN counting the whole record.
fn record(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    let body = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = body + 1;
    loop {
        let total = body + len.to_string().len();
        if total == len {
            break;
        }
        len = total;
    }
    out.extend_from_slice(len.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(key);
    out.push(b'=');
    out.extend_from_slice(value);
    out.push(b'\n');
}

/// A pax time value: `SEC[.NSEC]`, negative times as a signed decimal.
pub fn pax_time(sec: i64, nsec: u32) -> String {
    if nsec == 0 {
        return sec.to_string();
    }
    let (sign, whole, frac) = if sec < 0 {
        ("-", -(sec + 1), 1_000_000_000 - nsec)
    } else {
        ("", sec, nsec)
    };
    let frac = format!("{frac:09}");
    format!("{sign}{whole}.{}", frac.trim_end_matches('0'))
}

/// Writes `value` as zero-padded octal with a NUL into `field`; false if it
/// does not fit.
fn octal(field: &mut [u8], value: u64) -> bool {
    let digits = field.len() - 1;
    let s = format!("{value:0digits$o}");
    if s.len() > digits {
        field[..digits].fill(b'0');
        field[digits] = 0;
        return false;
    }
    field[..digits].copy_from_slice(s.as_bytes());
    field[digits] = 0;
    true
}

/// Splits `path` into ustar `prefix` (<= 155) and `name` (<= 100) at a
/// `/`, if it can be.
fn split_path(path: &[u8]) -> Option<(&[u8], &[u8])> {
    if path.len() <= 100 {
        return Some((&[], path));
    }
    let mut best = None;
    for (i, &b) in path.iter().enumerate() {
        if b == b'/' && i <= 155 && path.len() - i - 1 <= 100 && i > 0 {
            best = Some(i);
        }
    }
    best.map(|i| (&path[..i], &path[i + 1..]))
}

/// Appends an archive's members to a writer.
pub struct Writer<W: Write> {
    out: W,
    written: u64,
    seq: u64,
}

impl<W: Write> Writer<W> {
    /// A writer over `out`.
    pub fn new(out: W) -> Self {
        Writer {
            out,
            written: 0,
            seq: 0,
        }
    }

    fn put(&mut self, data: &[u8]) -> io::Result<()> {
        self.out.write_all(data)?;
        self.written += data.len() as u64;
        Ok(())
    }

    /// Pads to the next 512-byte boundary.
    fn pad(&mut self) -> io::Result<()> {
        let rem = (self.written % BLOCK as u64) as usize;
        if rem != 0 {
            self.put(&[0u8; BLOCK][..BLOCK - rem])?;
        }
        Ok(())
    }

    /// A raw ustar header block.
    #[allow(clippy::too_many_arguments)]
    fn ustar(
        &mut self,
        path: &[u8],
        typeflag: u8,
        mode: u32,
        uid: u32,
        gid: u32,
        size: u64,
        mtime: i64,
        link: &[u8],
        dev: (u32, u32),
    ) -> io::Result<()> {
        let mut h = [0u8; BLOCK];
        let (prefix, name) = split_path(path).unwrap_or((&[], &path[..path.len().min(100)]));
        let name = &name[..name.len().min(100)];
        h[..name.len()].copy_from_slice(name);
        octal(&mut h[100..108], u64::from(mode & 0o7777));
        octal(&mut h[108..116], u64::from(uid));
        octal(&mut h[116..124], u64::from(gid));
        octal(&mut h[124..136], size);
        octal(&mut h[136..148], mtime.max(0) as u64);
        h[156] = typeflag;
        let link = &link[..link.len().min(100)];
        h[157..157 + link.len()].copy_from_slice(link);
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        if matches!(typeflag, b'3' | b'4') {
            octal(&mut h[329..337], u64::from(dev.0));
            octal(&mut h[337..345], u64::from(dev.1));
        }
        let prefix = &prefix[..prefix.len().min(155)];
        h[345..345 + prefix.len()].copy_from_slice(prefix);
        h[148..156].fill(b' ');
        let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
        let s = format!("{sum:06o}\0 ");
        h[148..156].copy_from_slice(s.as_bytes());
        self.put(&h)
    }

    /// Writes the header(s) of one member. For [`Kind::File`] the caller
    /// then writes exactly `size` bytes with [`Writer::data`] and calls
    /// [`Writer::end_data`]; for [`Kind::Sparse`], the bytes of each extent
    /// in order, then [`Writer::end_data`].
    pub fn header(&mut self, h: &Header) -> io::Result<()> {
        let mut pax = Vec::new();
        let dir_path;
        let path: &[u8] = if h.kind == Kind::Dir && !h.path.ends_with(b"/") {
            dir_path = [h.path.as_slice(), b"/"].concat();
            &dir_path
        } else {
            &h.path
        };
        let (typeflag, link, dev): (u8, &[u8], (u32, u32)) = match &h.kind {
            Kind::File | Kind::Sparse(_) => (b'0', b"", (0, 0)),
            Kind::HardLink(t) => (b'1', t, (0, 0)),
            Kind::Symlink(t) => (b'2', t, (0, 0)),
            Kind::CharDev(a, b) => (b'3', b"", (*a, *b)),
            Kind::BlockDev(a, b) => (b'4', b"", (*a, *b)),
            Kind::Dir => (b'5', b"", (0, 0)),
            Kind::Fifo => (b'6', b"", (0, 0)),
        };
        // The size recorded in the ustar header: the bytes that follow it.
        let mut map = Vec::new();
        let stored = match &h.kind {
            Kind::File => h.size,
            Kind::Sparse(extents) => {
                let mut ext = extents.clone();
                // GNU tar ends a map with a hole at the end by an empty
                // extent at the real size.
                if ext.last().is_none_or(|&(o, l)| o + l < h.size) {
                    ext.push((h.size, 0));
                }
                map.extend_from_slice(format!("{}\n", ext.len()).as_bytes());
                for (o, l) in &ext {
                    map.extend_from_slice(format!("{o}\n{l}\n").as_bytes());
                }
                let padded = map.len().div_ceil(BLOCK) * BLOCK;
                map.resize(padded, 0);
                map.len() as u64 + extents.iter().map(|e| e.1).sum::<u64>()
            }
            _ => 0,
        };
        let ustar_path: Vec<u8>;
        if let Kind::Sparse(_) = h.kind {
            record(&mut pax, b"GNU.sparse.major", b"1");
            record(&mut pax, b"GNU.sparse.minor", b"0");
            record(&mut pax, b"GNU.sparse.name", path);
            record(
                &mut pax,
                b"GNU.sparse.realsize",
                h.size.to_string().as_bytes(),
            );
            self.seq += 1;
            let base = path.rsplit(|&b| b == b'/').next().unwrap_or(path);
            let dir = &path[..path.len() - base.len()];
            ustar_path = [dir, format!("GNUSparseFile.{}/", self.seq).as_bytes(), base].concat();
        } else {
            if split_path(path).is_none() || !path.is_ascii() {
                record(&mut pax, b"path", path);
            }
            ustar_path = path.to_vec();
        }
        if link.len() > 100 || !link.is_ascii() {
            record(&mut pax, b"linkpath", link);
        }
        if stored >= 1 << 33 {
            record(&mut pax, b"size", stored.to_string().as_bytes());
        }
        if u64::from(h.uid) >= 1 << 21 {
            record(&mut pax, b"uid", h.uid.to_string().as_bytes());
        }
        if u64::from(h.gid) >= 1 << 21 {
            record(&mut pax, b"gid", h.gid.to_string().as_bytes());
        }
        if h.mtime.1 != 0 || h.mtime.0 < 0 || h.mtime.0 >= 1 << 33 {
            record(
                &mut pax,
                b"mtime",
                pax_time(h.mtime.0, h.mtime.1).as_bytes(),
            );
        }
        for (k, v) in &h.xattrs {
            record(&mut pax, &[b"SCHILY.xattr.".as_slice(), k].concat(), v);
        }
        if !pax.is_empty() {
            let base = path
                .trim_ascii_end()
                .strip_suffix(b"/")
                .unwrap_or(path)
                .rsplit(|&b| b == b'/')
                .next()
                .unwrap_or(b"");
            let name = [b"PaxHeaders/".as_slice(), &base[..base.len().min(80)]].concat();
            self.ustar(
                &name,
                b'x',
                0o644,
                0,
                0,
                pax.len() as u64,
                h.mtime.0,
                b"",
                (0, 0),
            )?;
            self.put(&pax)?;
            self.pad()?;
        }
        self.ustar(
            &ustar_path,
            typeflag,
            h.mode,
            h.uid,
            h.gid,
            stored,
            h.mtime.0,
            link,
            dev,
        )?;
        if !map.is_empty() {
            self.put(&map)?;
        }
        Ok(())
    }

    /// A member's data.
    pub fn data(&mut self, data: &[u8]) -> io::Result<()> {
        self.put(data)
    }

    /// Pads a member's data to a whole block.
    pub fn end_data(&mut self) -> io::Result<()> {
        self.pad()
    }

    /// Writes the two zero blocks that end an archive and flushes; returns
    /// the writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.put(&[0u8; 2 * BLOCK])?;
        self.out.flush()?;
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_count_themselves() {
        let mut v = Vec::new();
        record(&mut v, b"path", b"abc");
        assert_eq!(v, b"12 path=abc\n");
        let mut v = Vec::new();
        record(&mut v, b"k", &[b'x'; 94]);
        // 1+1+1+94+1 = 98 plus "100" would be 101: the length is 101.
        assert_eq!(&v[..4], b"101 ");
        assert_eq!(v.len(), 101);
    }

    #[test]
    fn times() {
        assert_eq!(pax_time(5, 0), "5");
        assert_eq!(pax_time(5, 120_000_000), "5.12");
        assert_eq!(pax_time(-2, 500_000_000), "-1.5");
        assert_eq!(pax_time(0, 1), "0.000000001");
    }

    #[test]
    fn header_checksum_and_layout() {
        let mut w = Writer::new(Vec::new());
        w.header(&Header {
            path: b"a/b.txt".to_vec(),
            kind: Kind::File,
            mode: 0o640,
            uid: 1000,
            gid: 100,
            mtime: (1_700_000_000, 0),
            size: 3,
            xattrs: vec![],
        })
        .unwrap();
        w.data(b"abc").unwrap();
        w.end_data().unwrap();
        let out = w.finish().unwrap();
        assert_eq!(out.len(), 4 * BLOCK);
        let h = &out[..BLOCK];
        assert_eq!(&h[..7], b"a/b.txt");
        assert_eq!(&h[100..108], b"0000640\0");
        assert_eq!(&h[257..263], b"ustar\0");
        let sum: u32 = h
            .iter()
            .enumerate()
            .map(|(i, &b)| {
                if (148..156).contains(&i) {
                    32
                } else {
                    u32::from(b)
                }
            })
            .sum();
        let stored = u32::from_str_radix(std::str::from_utf8(&h[148..154]).unwrap(), 8).unwrap();
        assert_eq!(sum, stored);
        assert_eq!(&out[BLOCK..BLOCK + 3], b"abc");
    }

    #[test]
    fn long_paths_split_or_go_to_pax() {
        let long = [vec![b'd'; 120], b"/".to_vec(), vec![b'f'; 50]].concat();
        assert_eq!(split_path(&long).unwrap().1.len(), 50);
        assert!(split_path(&vec![b'x'; 300]).is_none());
    }
}
