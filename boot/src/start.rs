//! Booting LKL from a whole hijack configuration: the devices, the kernel,
//! then [`apply`](crate::apply).

use std::io;

use lkl_hijack_config::{Backend, Config, SingleCpu};

use crate::apply::ApplyError;
use crate::disks::{self, DiskError, Mounts};
use crate::host;
use crate::memory::{self, HostMemory, Size};

/// What [`start`] made: the running kernel and the interfaces, in the
/// config's order.
#[derive(Debug)]
pub struct Started {
    /// The kernel; the caller halts it (at exit).
    pub kernel: lkl::Kernel,
    /// `nets[i]` is the device of `config.interfaces[i]`.
    pub nets: Vec<lkl::NetId>,
    /// What was not done and why, one sentence each, for the caller to
    /// print (a `gateway` the kernel had a route for already).
    pub warnings: Vec<String>,
    /// `ifindexes[i]` is its interface index inside LKL (`eth0` is the
    /// first).
    pub ifindexes: Vec<i32>,
    /// The config's `disks`, mounted; the caller unmounts them at the end
    /// ([`Mounts::unmount`]).
    pub disks: Mounts,
}

/// Why [`start`] failed. Each message names the config key and the fix.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// An interface's device could not be made (a missing tap, a backend
    /// this build lacks, ...).
    #[error("{key}: {source}")]
    Device {
        /// `interfaces[N].param` or `interfaces[N].type`.
        key: String,
        /// What the device layer said (a missing tap names the interface
        /// and the `ip tuntap add` command that makes it).
        source: lkl::NetError,
    },
    /// `mem=` in `boot_cmdline` asks for more memory than the host has.
    #[error("boot_cmdline: {word:?} asks for {} of memory for LKL, but the host {host}: ask for less (LKL's default is mem=64M)", Size(*asked))]
    Memory {
        /// The `mem=` word.
        word: String,
        /// What it asks for, in bytes.
        asked: u64,
        /// What the host has.
        host: HostMemory,
    },
    /// The kernel did not boot (`boot_cmdline` is part of its command
    /// line).
    #[error("boot_cmdline: cannot boot LKL: {0} (the kernel's log is above)")]
    Boot(#[source] lkl::Error),
    /// The kernel made no interface for a device.
    #[error("{key}: the kernel made no interface for the device: {source}")]
    Interface {
        /// `interfaces[N]`.
        key: String,
        /// Why.
        source: lkl::NetError,
    },
    /// `singlecpu`: the threads could not be pinned.
    #[error("singlecpu: cannot pin LKL's threads to one CPU: {0}")]
    Pin(#[source] io::Error),
    /// A step of [`apply`](crate::apply) failed; the kernel was halted.
    #[error(transparent)]
    Apply(#[from] ApplyError),
    /// A disk could not be opened or mounted; the kernel, if booted, was
    /// halted, and nothing was written to the images.
    #[error(transparent)]
    Disk(#[from] DiskError),
}

/// Boots LKL as a hijack configuration says, as upstream's hijack start-up
/// does (`delay_main` and the handling of `debug`'s pause bits are the
/// caller's):
///
/// 0. [`check_memory`]: a `mem=` in `boot_cmdline` that the host cannot
///    give is refused before anything is made;
/// 1. every interface: [`lkl::add_net_with`] with its backend (`tap`,
///    `macvtap`, `raw` or `pipe`), `mac` and `offload`;
/// 2. `singlecpu`: the kernel's threads (and with `"2"` the devices' poll
///    threads, made after the pinning) are pinned to the first CPU this
///    process may use; the calling thread is unpinned after boot;
/// 3. `disks`: each image opened (locked) and added ([`disks::attach`]);
///    with disks the kernel gets 256 MiB unless `boot_cmdline` says `mem=`;
/// 4. [`lkl::boot`] with `boot_cmdline`. With `debug` 0 the kernel's boot
///    log (its banner) is printed only if the boot fails, and later
///    messages are warnings and worse only; any `debug` bit prints
///    everything;
/// 5. `disks` mounted at their paths ([`disks::mount`]);
/// 6. [`apply`](crate::apply): `mount`, addresses, routes, rule tables,
///    neighbours, qdiscs, `gateway`/`gateway6`, `sysctl`, `nameserver`, in
///    LKL's own root file system;
/// 7. the disk at `/`, if any, made the root ([`Mounts::enter_root`]), with
///    LKL's `/etc/resolv.conf` shown over the image's when `nameserver` is
///    set.
///
/// # Errors
/// [`StartError`], naming the key. If the kernel booted and a later step
/// fails, it is halted first (a failed halt is ignored: the error that
/// stopped the start is the one reported).
pub fn start(config: &Config) -> Result<Started, StartError> {
    check_memory(&config.boot_cmdline)?;
    let pin = config.single_cpu != SingleCpu::Off;
    let original = if pin {
        Some(host::affinity().map_err(StartError::Pin)?)
    } else {
        None
    };
    // "1" pins only the kernel's threads: the devices' threads are made
    // before pinning. "2" pins them too: made after.
    let mut nets = Vec::new();
    if config.single_cpu != SingleCpu::KernelAndPollThreads {
        nets = add_devices(config)?;
    }
    if let Some(set) = &original {
        host::pin_first(set).map_err(StartError::Pin)?;
    }
    if config.single_cpu == SingleCpu::KernelAndPollThreads {
        nets = add_devices(config).inspect_err(|_| {
            if let Some(set) = &original {
                let _ = host::set_affinity(set);
            }
        })?;
    }
    let attached = disks::attach(config).inspect_err(|_| {
        if let Some(set) = &original {
            let _ = host::set_affinity(set);
        }
    })?;
    let mut opts = lkl::BootOptions {
        cmdline: config.boot_cmdline.clone(),
        loglevel: if config.debug.enabled() {
            None
        } else {
            Some(4)
        },
        ..Default::default()
    };
    if !attached.is_empty() && memory::mem_param(&config.boot_cmdline).is_none() {
        // File systems cache what they read: more than the network needs.
        opts.memory = opts.memory.max(DISK_MEMORY);
    }
    let booted = if config.debug.enabled() {
        lkl::boot(&opts)
    } else {
        // Quiet, but a failed boot shows what the kernel said.
        let (booted, log) = lkl::console::capture(|| lkl::boot(&opts));
        if booted.is_err() {
            use std::io::Write;
            let _ = std::io::stderr().write_all(&log);
        }
        booted
    };
    if let Some(set) = &original {
        host::set_affinity(set).map_err(StartError::Pin)?;
    }
    let kernel = booted.map_err(StartError::Boot)?;
    let mut mounts = match disks::mount(config, &attached) {
        Ok(m) => m,
        Err(e) => {
            let _ = kernel.halt();
            return Err(e.into());
        }
    };
    let fail = |kernel: lkl::Kernel, mounts: &Mounts, e: StartError| {
        mounts.unmount();
        let _ = kernel.halt();
        Err(e)
    };
    let mut ifindexes = Vec::new();
    for (i, &id) in nets.iter().enumerate() {
        match lkl::net_ifindex(id) {
            Ok(ix) => ifindexes.push(ix),
            Err(source) => {
                let key = format!("interfaces[{i}]");
                return fail(kernel, &mounts, StartError::Interface { key, source });
            }
        }
    }
    let mut warnings = match crate::apply(config, &ifindexes) {
        Ok(w) => w,
        Err(e) => return fail(kernel, &mounts, e.into()),
    };
    match mounts.enter_root(config) {
        Ok(w) => warnings.extend(w),
        Err(e) => return fail(kernel, &mounts, e.into()),
    }
    Ok(Started {
        kernel,
        nets,
        ifindexes,
        warnings,
        disks: mounts,
    })
}

/// The kernel's memory when there are disks and `boot_cmdline` has no `mem=`.
const DISK_MEMORY: u64 = 256 << 20;

/// Refuses a `mem=` in `boot_cmdline` that asks for more than the host's
/// memory and swap (or, with strict overcommit, than it can still commit):
/// the kernel takes its memory in one block at boot.
///
/// # Errors
/// [`StartError::Memory`], with what was asked and what the host has.
pub fn check_memory(boot_cmdline: &str) -> Result<(), StartError> {
    let Some((word, asked)) = memory::mem_param(boot_cmdline) else {
        return Ok(());
    };
    match HostMemory::read() {
        Some(host) if asked > host.bytes => Err(StartError::Memory {
            word: word.to_owned(),
            asked,
            host,
        }),
        _ => Ok(()),
    }
}

/// The device layer's backend for a config backend.
pub fn net_backend(b: &Backend) -> lkl::NetBackend {
    match b {
        Backend::Tap { ifname } => lkl::NetBackend::Tap {
            ifname: ifname.clone(),
        },
        Backend::Macvtap { path } => lkl::NetBackend::Macvtap { path: path.clone() },
        Backend::Raw { ifname } => lkl::NetBackend::Raw {
            ifname: ifname.clone(),
        },
        Backend::Pipe { rx, tx } => lkl::NetBackend::Pipe {
            rx: rx.clone(),
            tx: tx.clone(),
        },
    }
}

/// Adds every interface's device, in order.
fn add_devices(config: &Config) -> Result<Vec<lkl::NetId>, StartError> {
    let mut nets = Vec::new();
    for (i, iface) in config.interfaces.iter().enumerate() {
        let opts = lkl::NetOptions {
            mac: iface.mac.map(|m| m.0),
            offload: iface.offload.into(),
            ..Default::default()
        };
        let id = lkl::add_net_with(net_backend(&iface.backend), &opts).map_err(|source| {
            let field = match source {
                lkl::NetError::Unsupported(_) => "type",
                _ => "param",
            };
            StartError::Device {
                key: format!("interfaces[{i}].{field}"),
                source,
            }
        })?;
        nets.push(id);
    }
    Ok(nets)
}
