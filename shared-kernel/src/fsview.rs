//! Which paths of the tree are LKL's: the file-system view that `--root` and `--mount`
//! give, published by the kernel process in the window's header so that every process
//! of the tree (exec'd images included) routes paths the same way.
//!
//! Encoding in the header's view area ([`VIEW_BYTES`] bytes): a `u32` length, then
//! `R` (an image is the root: every path is LKL's) or `-`, then each mount's path
//! followed by a NUL.

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
            if m.contains(&0) {
                return None;
            }
            body.extend_from_slice(m);
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
        let rest = &body[1..];
        if !rest.is_empty() && rest.last() != Some(&0) {
            return None;
        }
        let mounts = rest
            .split(|&b| b == 0)
            .filter(|m| !m.is_empty())
            .map(<[u8]>::to_vec)
            .collect();
        Some(FsView { root, mounts })
    }
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
                mounts: vec![],
            },
            FsView {
                root: false,
                mounts: vec![b"/mnt/disk".to_vec(), b"/srv/a b".to_vec()],
            },
        ] {
            let bytes = v.encode().unwrap();
            let mut area = vec![0u8; VIEW_BYTES];
            area[..bytes.len()].copy_from_slice(&bytes);
            assert_eq!(FsView::decode(&area), Some(v));
        }
        assert_eq!(FsView::decode(&[0u8; 8]), Some(FsView::default()));
        assert!(FsView {
            root: false,
            mounts: vec![vec![b'a'; VIEW_BYTES]]
        }
        .encode()
        .is_none());
    }
}
