//! Which paths of the tree are LKL's: the file-system view that `--root` and `--mount`
//! give, published by the kernel process in the window's header so that every process
//! of the tree (exec'd images included) routes paths the same way.
//!
//! Encoding in the header's view area ([`VIEW_BYTES`] bytes): a `u32` length, then
//! `R` (an image is the root: every path is LKL's) or `-`, then records: a mount's path
//! (it starts with `/`) followed by a NUL, or a volume's passthrough record: `V`
//! (`v`: read-only), the host directory's device and inode number (`u64`s, little
//! endian), its path inside LKL and a NUL, the host directory and a NUL.

/// Bytes of the header set aside for the view.
pub const VIEW_BYTES: usize = 3072;

/// The tree's file-system view.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FsView {
    /// An image is the root of the tree's file system: every path is LKL's.
    pub root: bool,
    /// Absolute, normalized paths (no `.`/`..`, no trailing or doubled `/`) under which
    /// paths are LKL's, besides the root; the images mounted with `--mount`.
    pub mounts: Vec<Vec<u8>>,
    /// The volumes (host directories over virtio-fs, whose paths are among
    /// [`FsView::mounts`]) whose files a program may read straight from the host
    /// (see `zpoline-lkl`'s passthrough).
    pub volumes: Vec<ViewVolume>,
}

/// A volume, as the programs of the tree need it to open its files on the host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ViewVolume {
    /// Its path inside LKL (one of the view's mounts).
    pub path: Vec<u8>,
    /// The host directory (absolute, canonical when published).
    pub host_dir: Vec<u8>,
    /// The host directory's device and inode number, as the kernel process found
    /// them: a program opens the directory by name and checks it is the same.
    pub dev: u64,
    /// See [`ViewVolume::dev`].
    pub ino: u64,
    /// Mounted read-only.
    pub read_only: bool,
}

impl FsView {
    /// True when no path is LKL's (only sockets are).
    pub fn is_empty(&self) -> bool {
        !self.root && self.mounts.is_empty()
    }

    /// The view's bytes, or `None` if it does not fit in [`VIEW_BYTES`].
    pub fn encode(&self) -> Option<Vec<u8>> {
        let mut body = vec![if self.root { b'R' } else { b'-' }];
        for m in &self.mounts {
            if m.contains(&0) || m.first() != Some(&b'/') {
                return None;
            }
            body.extend_from_slice(m);
            body.push(0);
        }
        for v in &self.volumes {
            if v.path.contains(&0) || v.host_dir.contains(&0) {
                return None;
            }
            body.push(if v.read_only { b'v' } else { b'V' });
            body.extend_from_slice(&v.dev.to_le_bytes());
            body.extend_from_slice(&v.ino.to_le_bytes());
            body.extend_from_slice(&v.path);
            body.push(0);
            body.extend_from_slice(&v.host_dir);
            body.push(0);
        }
        if 4 + body.len() > VIEW_BYTES {
            return None;
        }
        let mut out = (body.len() as u32).to_le_bytes().to_vec();
        out.extend(body);
        Some(out)
    }

    /// The view encoded in `bytes` (an all-zero area is the empty view); `None` when
    /// malformed.
    pub fn decode(bytes: &[u8]) -> Option<FsView> {
        let len = u32::from_le_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
        if len == 0 {
            return Some(FsView::default());
        }
        let body = bytes.get(4..4 + len)?;
        let root = match body[0] {
            b'R' => true,
            b'-' => false,
            _ => return None,
        };
        let mut rest = &body[1..];
        let mut view = FsView {
            root,
            ..FsView::default()
        };
        while let Some(&kind) = rest.first() {
            if kind == b'/' {
                view.mounts.push(take_cstr(&mut rest)?);
                continue;
            }
            if kind != b'V' && kind != b'v' {
                return None;
            }
            let ids = rest.get(1..17)?;
            let dev = u64::from_le_bytes(ids[..8].try_into().ok()?);
            let ino = u64::from_le_bytes(ids[8..].try_into().ok()?);
            rest = &rest[17..];
            let path = take_cstr(&mut rest)?;
            let host_dir = take_cstr(&mut rest)?;
            view.volumes.push(ViewVolume {
                path,
                host_dir,
                dev,
                ino,
                read_only: kind == b'v',
            });
        }
        Some(view)
    }
}

/// The bytes of `rest` up to its first NUL, which is taken too; `None` without one.
fn take_cstr(rest: &mut &[u8]) -> Option<Vec<u8>> {
    let n = rest.iter().position(|&b| b == 0)?;
    let s = rest[..n].to_vec();
    *rest = &rest[n + 1..];
    Some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for v in [
            FsView::default(),
            FsView {
                root: true,
                ..FsView::default()
            },
            FsView {
                root: false,
                mounts: vec![b"/mnt/disk".to_vec(), b"/srv/a b".to_vec()],
                volumes: vec![],
            },
            FsView {
                root: true,
                mounts: vec![b"/v".to_vec()],
                volumes: vec![ViewVolume {
                    path: b"/v".to_vec(),
                    host_dir: b"/srv/v".to_vec(),
                    dev: 0x0100,
                    ino: 0x0a00_0000_0000_0002,
                    read_only: true,
                }],
            },
        ] {
            let bytes = v.encode().unwrap();
            let mut area = vec![0u8; VIEW_BYTES];
            area[..bytes.len()].copy_from_slice(&bytes);
            assert_eq!(FsView::decode(&area), Some(v));
        }
        assert_eq!(FsView::decode(&[0u8; 8]), Some(FsView::default()));
        assert!(FsView {
            mounts: vec![vec![b'/'; VIEW_BYTES]],
            ..FsView::default()
        }
        .encode()
        .is_none());
        assert!(FsView {
            mounts: vec![b"relative".to_vec()],
            ..FsView::default()
        }
        .encode()
        .is_none());
        let mut area = vec![0u8; 16];
        area[..7].copy_from_slice(b"\x03\0\0\0-V\0");
        assert_eq!(FsView::decode(&area), None, "a volume record cut short");
    }
}
