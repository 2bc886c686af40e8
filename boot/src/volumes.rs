//! The config's `volumes`: host directories added as virtio-fs devices before the
//! boot ([`attach`]) and mounted at their paths inside LKL after the disks
//! ([`mount`]): inside the root image if there is one (the mount point made if
//! missing, unless that image is read-only), else in the boot root file system.

use std::path::{Path, PathBuf};

use lkl::{sys, Errno, VolumeId};
use lkl_hijack_config::Config;

/// Why a volume could not be added or mounted. Each message names the
/// `volumes[N]` entry and the fix.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    /// The host directory cannot be served, or no device could be made.
    #[error("{key}.dir: {source}")]
    Add {
        /// `volumes[N]`.
        key: String,
        /// What the device layer said (a missing directory names it).
        source: Box<lkl::VolumeError>,
    },
    /// The mount point is missing in a read-only root image.
    #[error("{key}.path: {path} does not exist in the read-only root image: make the directory in the image, or drop :ro from --root")]
    NoMountPoint {
        /// `volumes[N]`.
        key: String,
        /// The mount point.
        path: PathBuf,
    },
    /// The mount point is something other than a directory.
    #[error("{key}.path: {path} is not a directory inside LKL: choose a directory")]
    NotADirectory {
        /// `volumes[N]`.
        key: String,
        /// The mount point.
        path: PathBuf,
    },
    /// The kernel refused the mount, or its mount point could not be made.
    #[error("{key}: cannot mount {dir} on {path}: {source}")]
    Mount {
        /// `volumes[N]`.
        key: String,
        /// The host directory.
        dir: PathBuf,
        /// The mount point.
        path: PathBuf,
        /// The kernel's answer.
        source: Box<lkl::VolumeError>,
    },
}

/// Adds each of `config.volumes` as a device (before the boot: on the command line).
///
/// # Errors
/// [`VolumeError::Add`] for a missing or unusable directory.
pub fn attach(config: &Config) -> Result<Vec<VolumeId>, VolumeError> {
    config
        .volumes
        .iter()
        .enumerate()
        .map(|(i, v)| {
            lkl::add_volume(&v.dir, v.read_only).map_err(|source| VolumeError::Add {
                key: format!("volumes[{i}]"),
                source: Box::new(source),
            })
        })
        .collect()
}

/// Mounts the volumes [`attach`] added at their paths, from the boot thread after
/// the disks are in place (so a path inside the root image is the image's). The
/// root image's read-only flag says whether a missing mount point may be made.
///
/// # Errors
/// [`VolumeError::NoMountPoint`], [`VolumeError::NotADirectory`],
/// [`VolumeError::Mount`].
pub fn mount(config: &Config, ids: &[VolumeId]) -> Result<(), VolumeError> {
    let root_ro = config
        .disks
        .iter()
        .any(|d| d.path == Path::new("/") && d.read_only);
    // Parents before children: a volume at /a/b goes into the one at /a.
    let mut order: Vec<usize> = (0..ids.len()).collect();
    order.sort_by_key(|&i| config.volumes[i].path.components().count());
    for i in order {
        let v = &config.volumes[i];
        let key = format!("volumes[{i}]");
        match lkl::stat(&v.path) {
            Ok(st) if st.st_mode & sys::LKL_S_IFMT != sys::LKL_S_IFDIR => {
                return Err(VolumeError::NotADirectory {
                    key,
                    path: v.path.clone(),
                })
            }
            Err(Errno::ENOENT) if root_ro => {
                return Err(VolumeError::NoMountPoint {
                    key,
                    path: v.path.clone(),
                })
            }
            _ => {}
        }
        lkl::mount_volume(ids[i], &v.path).map_err(|source| VolumeError::Mount {
            key,
            dir: v.dir.clone(),
            path: v.path.clone(),
            source: Box::new(source),
        })?;
    }
    Ok(())
}
