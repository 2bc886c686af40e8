//! Starts LKL from a hijack configuration ([`lkl_hijack_config::Config`]):
//! what `liblkl-hijack.so` does before `main` and what zpoline's LKL
//! backend does at a process's first LKL call, so both read a
//! configuration the same way.
//!
//! - [`start`]: everything a configuration says, from nothing:
//!   [`check_memory`] (a `mem=` in `boot_cmdline` the host cannot give is
//!   refused before anything is made), the devices of all four backend
//!   types ([`net_backend`]), `singlecpu`, the boot with `boot_cmdline`
//!   (quiet unless `debug`), then [`apply`]. It returns [`Started`]: the
//!   kernel, the devices, their interface indexes and the warnings for the
//!   caller to print.
//! - [`apply`]: the network part of a configuration, once the devices
//!   exist, through `lkl-net`'s rtnetlink and file helpers; each failing
//!   step is named by its configuration key ([`ApplyError`]).
//! - [`disks`]: the config's `disks` (ours, for `lkl-run --zpoline`): images
//!   opened and added before the boot, mounted at their paths after it (the
//!   one at `/` made the root of every LKL process made afterwards), and
//!   left clean at the end ([`Mounts::unmount`]).
//! - [`memory`]: `mem=` read as the kernel reads it, and what the host can
//!   give.
#![deny(unsafe_code)]

mod apply;
pub mod disks;
mod host;
pub mod memory;
mod start;

pub use apply::{apply, apply_interface, ApplyError, DAD_TIMEOUT};
pub use disks::{DiskError, Mount, Mounts, Refusal};
pub use start::{check_memory, net_backend, start, StartError, Started};
