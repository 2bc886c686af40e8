//! The hijack library's configuration, exactly upstream LKL's schema (see
//! `docs/upstream-lkl-README.md`, our compatibility contract), parsed
//! into typed, validated values.
//!
//! # Sources and their order
//! [`load`] does what upstream's hijack library does at start-up:
//! 1. the older `LKL_HIJACK_*` variables are read first
//!    (`LKL_HIJACK_NET_IFTYPE`, `..._NET_IFPARAMS`, `..._NET_IP`,
//!    `..._NET_NETMASK_LEN`, `..._NET_IFGATEWAY`, `..._NET_IPV6`,
//!    `..._NET_NETMASK6_LEN`, `..._NET_IFGATEWAY6`, `..._NET_MAC`,
//!    `..._NET_MTU`, `..._NET_NEIGHBOR`, `..._NET_QDISC`, `..._OFFLOAD`,
//!    `..._NET_GATEWAY`, `..._NET_GATEWAY6`, `..._SYSCTL`,
//!    `..._BOOT_CMDLINE`, `..._MOUNT`, `..._DEBUG`, `..._SINGLE_CPU`,
//!    `..._DUMP`, the obsolete `..._NET_TAP`, and our `..._DELAY_MAIN`);
//!    they describe one interface, and only if `LKL_HIJACK_NET_IFTYPE` is set;
//! 2. then the JSON file named by `LKL_HIJACK_CONFIG_FILE`, else
//!    `./lkl-hijack.json` if it exists. Every key the file sets replaces the
//!    variable's, and its `interfaces` replace the variables' interface.
//!    An empty file (or one of only white space) is an error naming it:
//!    it is not JSON; `{}` is the file that sets nothing.
//!
//! # Values
//! Values are strings, as upstream documents them (a JSON number is taken
//! as its text, as upstream's tokenizer does). A comma before `}` or `]`
//! is accepted (upstream's README has one). Each value is validated into a
//! typed one; a bad value is an [`Error`] naming the key, the value and the
//! fix, e.g. `interfaces[0].masklen: "33" is not a prefix length (0-32)`.
//! An unknown key is a warning naming it and the valid keys ([`load`],
//! as upstream's README promises, in [`Loaded::warnings`] for the caller
//! to print), or an error with [`UnknownKeys::Error`] ([`Config::from_json`]
//! and [`load_with`] on request).
//!
//! Stricter than upstream, which skips what it cannot use without a word:
//! `ip` without `masklen` (and the reverse), `ifgateway` without `ip`, the
//! same for IPv6, and an interface without `type` or `param` are errors.
#![forbid(unsafe_code)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

mod error;
mod parse;
mod raw;

pub use error::Error;
pub use parse::disk_path;
pub use parse::{c_radix, MacAddr};
pub use raw::{
    UnknownKeys, DISK_KEYS, INTERFACE_KEYS, INTERFACE_VARS, NET_TAP_VAR, TOP_KEYS, TOP_VARS,
};

use raw::{Keys, Raw, Text};

/// The largest `delay_main`, in microseconds: one hour. A longer sleep
/// before `main` is a mistake (a value in seconds or nanoseconds, say),
/// not a wait anyone means.
pub const MAX_DELAY_MAIN_US: u64 = 3_600_000_000;

/// The variable naming the configuration file.
pub const CONFIG_FILE_VAR: &str = "LKL_HIJACK_CONFIG_FILE";
/// The file read when [`CONFIG_FILE_VAR`] is not set (in the current
/// directory).
pub const DEFAULT_CONFIG_FILE: &str = "lkl-hijack.json";

/// The whole configuration.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Config {
    /// `gateway`: the IPv4 default route's gateway (main table).
    pub gateway: Option<Ipv4Addr>,
    /// `gateway6`: the IPv6 default route's gateway (main table).
    pub gateway6: Option<Ipv6Addr>,
    /// `debug`: 0 is quiet; other values turn on debug output, and bits
    /// select facilities ([`Debug::PAUSE_AT_EXIT`], [`Debug::WAIT_ENTER`]).
    pub debug: Debug,
    /// `singlecpu`: pin the kernel's threads (and the poll threads) to one
    /// host CPU.
    pub single_cpu: SingleCpu,
    /// `sysctl`: `key=value` entries separated by `;`, written in order.
    pub sysctl: Vec<Sysctl>,
    /// `boot_cmdline`: appended to the kernel command line (`mem=1G`,
    /// `ip=dhcp`); empty if not set.
    pub boot_cmdline: String,
    /// `mount`: file system types separated by `,`; upstream mounts each at
    /// `/TYPE` (`proc` at `/proc`, `sysfs` at `/sysfs`).
    pub mount: Vec<String>,
    /// `dump`: paths inside LKL separated by `,`, printed at exit (an
    /// upstream key its README does not list).
    pub dump: Vec<String>,
    /// `delay_main`: sleep this long (given in microseconds) before the
    /// program's `main`.
    pub delay_main: Option<Duration>,
    /// `nameserver`: written as `nameserver ADDR` to `/etc/resolv.conf`
    /// inside LKL.
    pub nameserver: Option<IpAddr>,
    /// `interfaces`, in order: the first is `eth0`.
    pub interfaces: Vec<Interface>,
    /// `disks`, in order (a key of ours, not upstream's): images mounted inside LKL
    /// for `lkl-run --zpoline`, the one at `/` as the tree's root (`--root`), the
    /// others at their paths (`--mount`).
    pub disks: Vec<Disk>,
}

/// One `disks[]` entry: an image file mounted inside LKL.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Disk {
    /// `image`: the image file.
    pub image: std::path::PathBuf,
    /// `path`: where its file system appears in the program's view; `/` makes it the
    /// root of the tree's file system.
    pub path: std::path::PathBuf,
    /// `readonly`: open the image read-only and mount it read-only.
    pub read_only: bool,
    /// `partition`: the partition to mount (1-based, MBR or GPT), else the whole image.
    pub partition: Option<u32>,
    /// `type`: the file system type, else detected from the image.
    pub fstype: Option<String>,
    /// `options`: the file system's mount data.
    pub options: Option<String>,
}

/// The `debug` bit mask.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Debug(pub u32);

impl Debug {
    /// `0x100`: after the program exits, pause before halting LKL.
    pub const PAUSE_AT_EXIT: u32 = 0x100;
    /// `0x200`: wait for Enter before running the program.
    pub const WAIT_ENTER: u32 = 0x200;

    /// Whether any debugging is on (upstream prints kernel messages then).
    pub fn enabled(self) -> bool {
        self.0 != 0
    }

    /// Whether every bit of `bit` is set.
    pub fn has(self, bit: u32) -> bool {
        self.0 & bit == bit
    }
}

/// The `singlecpu` setting.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum SingleCpu {
    /// `"0"` or absent: no pinning.
    #[default]
    Off,
    /// `"1"`: pin LKL's kernel threads to one host CPU.
    KernelThreads,
    /// `"2"`: pin the kernel threads and the device poll threads.
    KernelAndPollThreads,
}

/// One `sysctl` entry.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Sysctl {
    /// Dotted (`net.ipv4.tcp_wmem`) or slashed name under `/proc/sys`.
    pub key: String,
    /// The text written (`4096 87380 2147483647`).
    pub value: String,
}

impl Sysctl {
    /// The file inside LKL: `/proc/sys/net/ipv4/tcp_wmem`.
    pub fn path(&self) -> String {
        format!("/proc/sys/{}", self.key.replace('.', "/"))
    }
}

/// How an interface reaches the host (`type` and `param`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Backend {
    /// `"tap"`: `param` is the host tap interface's name.
    Tap {
        /// The tap interface (`tap0`).
        ifname: String,
    },
    /// `"macvtap"`: `param` is the macvtap character device (`/dev/tap5`).
    Macvtap {
        /// The device path.
        path: PathBuf,
    },
    /// `"raw"`: `param` is a host interface opened with an AF_PACKET socket.
    Raw {
        /// The host interface (`eth0`).
        ifname: String,
    },
    /// `"pipe"`: `param` is `RX|TX`, two FIFOs (or files) to read frames
    /// from and write them to.
    Pipe {
        /// Where frames come in.
        rx: PathBuf,
        /// Where frames go out.
        tx: PathBuf,
    },
}

impl Backend {
    /// The `type` string.
    pub fn type_name(&self) -> &'static str {
        match self {
            Backend::Tap { .. } => "tap",
            Backend::Macvtap { .. } => "macvtap",
            Backend::Raw { .. } => "raw",
            Backend::Pipe { .. } => "pipe",
        }
    }
}

/// An address with its prefix length.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Cidr<A> {
    /// The interface's address.
    pub addr: A,
    /// The prefix length (`masklen` / `masklen6`).
    pub prefix_len: u8,
}

/// A permanent neighbour entry (`neigh`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Neighbor {
    /// The neighbour's IPv4 or IPv6 address.
    pub ip: IpAddr,
    /// Its link-layer address.
    pub mac: MacAddr,
}

/// Where a qdisc is attached. Upstream only knows `root`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum QdiscParent {
    /// `root`: the device's root qdisc (`TC_H_ROOT`).
    Root,
}

/// A qdisc entry (`qdisc`: `root|fq`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Qdisc {
    /// Where it goes.
    pub parent: QdiscParent,
    /// The qdisc's kind (`TCA_KIND`): `fq`, `fq_codel`, `pfifo_fast`, ...
    pub kind: String,
}

/// One `interfaces[]` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interface {
    /// `type` and `param`.
    pub backend: Backend,
    /// `mtu`: 68 to 65535.
    pub mtu: Option<u32>,
    /// `mac`: the device's address (unicast and not all zeros).
    pub mac: Option<MacAddr>,
    /// `ip` and `masklen`.
    pub ipv4: Option<Cidr<Ipv4Addr>>,
    /// `ifgateway`: a policy-routing table `2 × ifindex`, selected by
    /// `from ip`, with the local subnet and a default route via this.
    pub ifgateway: Option<Ipv4Addr>,
    /// `ipv6` and `masklen6`.
    pub ipv6: Option<Cidr<Ipv6Addr>>,
    /// `ifgateway6`: the same in table `2 × ifindex + 1`.
    pub ifgateway6: Option<Ipv6Addr>,
    /// `neigh`: `ip|mac` entries separated by `;`.
    pub neigh: Vec<Neighbor>,
    /// `qdisc`: `parent|kind` entries separated by `;`.
    pub qdisc: Vec<Qdisc>,
    /// `offload`: virtio-net feature bits to offer (`VIRTIO_NET_F_*`), e.g.
    /// `0xc803`; 0 if not set.
    pub offload: u32,
}

/// A configuration with what was noticed while reading it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Loaded {
    /// The validated configuration.
    pub config: Config,
    /// The JSON file read, if any.
    pub file: Option<PathBuf>,
    /// Things that were ignored or are obsolete, one sentence each.
    pub warnings: Vec<String>,
}

impl Config {
    /// Parses the JSON text of a configuration file (nothing else is read);
    /// unknown keys are an error.
    ///
    /// # Errors
    /// Malformed JSON (with line and column), unknown keys, wrong types and
    /// bad values: see [`Error`].
    pub fn from_json(text: &str) -> Result<Config, Error> {
        let raw = raw::from_json(text, "<string>", UnknownKeys::Error, &mut Vec::new())?;
        validate(&raw)
    }

    /// Reads the older variables through `get` (nothing else is read).
    ///
    /// # Errors
    /// A bad value, named by its key and variable.
    pub fn from_vars(get: &dyn Fn(&str) -> Option<String>) -> Result<Config, Error> {
        validate(&raw::from_env(get, &mut Vec::new()))
    }
}

/// Where [`load_with`] looks.
pub struct Sources<'a> {
    /// Reads a variable (`std::env::var` for the process).
    pub var: &'a dyn Fn(&str) -> Option<String>,
    /// The directory in which `lkl-hijack.json` is looked for (and relative
    /// `LKL_HIJACK_CONFIG_FILE` paths are taken from).
    pub dir: &'a Path,
    /// What to do with unknown keys.
    pub unknown: UnknownKeys,
}

/// Loads the configuration of this process: its environment and its
/// current directory. Unknown keys are warnings in [`Loaded::warnings`]:
/// print them (see the crate doc).
///
/// # Errors
/// See [`load_with`].
pub fn load() -> Result<Loaded, Error> {
    let var = |name: &str| std::env::var(name).ok();
    load_with(&Sources {
        var: &var,
        dir: Path::new("."),
        unknown: UnknownKeys::Warn,
    })
}

/// Loads a configuration from explicit sources (see the crate doc for the
/// order).
///
/// # Errors
/// A file named by `LKL_HIJACK_CONFIG_FILE` that cannot be read, and
/// everything [`Config::from_json`] refuses, with the file named.
pub fn load_with(src: &Sources<'_>) -> Result<Loaded, Error> {
    let mut warnings = Vec::new();
    let mut raw = raw::from_env(src.var, &mut warnings);
    let file = match (src.var)(CONFIG_FILE_VAR) {
        Some(p) if !p.is_empty() => Some(src.dir.join(p)),
        _ => {
            let p = src.dir.join(DEFAULT_CONFIG_FILE);
            p.exists().then_some(p)
        }
    };
    if let Some(path) = &file {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.clone(),
            source,
        })?;
        if text.trim().is_empty() {
            return Err(Error::Empty { path: path.clone() });
        }
        let origin = path.display().to_string();
        raw = raw.overlay(raw::from_json(&text, &origin, src.unknown, &mut warnings)?);
    }
    Ok(Loaded {
        config: validate(&raw)?,
        file,
        warnings,
    })
}

/// A key's name in messages: its path, plus the variable it came from.
fn key_name(path: &str, t: &Text) -> String {
    match t.var {
        Some(var) => format!("{path} ({var})"),
        None => path.to_owned(),
    }
}

/// Runs `f` on a key's value, turning its refusal into [`Error::Invalid`].
fn field<T>(
    keys: &Keys,
    prefix: &str,
    key: &str,
    f: impl FnOnce(&str) -> Result<T, String>,
) -> Result<Option<T>, Error> {
    let Some(t) = keys.get(key) else {
        return Ok(None);
    };
    f(&t.value).map(Some).map_err(|reason| Error::Invalid {
        key: key_name(&format!("{prefix}{key}"), t),
        value: t.value.clone(),
        reason,
    })
}

fn validate(raw: &Raw) -> Result<Config, Error> {
    let top = &raw.top;
    let mut c = Config {
        gateway: field(top, "", "gateway", parse::ipv4)?,
        gateway6: field(top, "", "gateway6", parse::ipv6)?,
        debug: Debug(field(top, "", "debug", parse::mask32)?.unwrap_or(0)),
        single_cpu: field(top, "", "singlecpu", |s| match s.trim() {
            "" | "0" => Ok(SingleCpu::Off),
            "1" => Ok(SingleCpu::KernelThreads),
            "2" => Ok(SingleCpu::KernelAndPollThreads),
            _ => Err("is not a pinning mode: write \"0\" (off), \"1\" (kernel threads) or \"2\" (kernel and poll threads)".into()),
        })?
        .unwrap_or_default(),
        sysctl: field(top, "", "sysctl", sysctls)?.unwrap_or_default(),
        boot_cmdline: top.get("boot_cmdline").map(|t| t.value.trim().to_owned()).unwrap_or_default(),
        mount: field(top, "", "mount", |s| {
            parse::entries(s, ',')
                .map(|t| {
                    if parse::word(t, 32) {
                        Ok(t.to_owned())
                    } else {
                        Err(format!("has a bad file system type {t:?}: write types separated by ',', e.g. \"proc,sysfs\""))
                    }
                })
                .collect()
        })?
        .unwrap_or_default(),
        dump: field(top, "", "dump", |s| Ok(parse::entries(s, ',').map(str::to_owned).collect()))?
            .unwrap_or_default(),
        delay_main: field(top, "", "delay_main", |s| {
            parse::decimal_in(s, 0, MAX_DELAY_MAIN_US, "a delay in microseconds")
                .map(Duration::from_micros)
                .map_err(|e| format!("{e}: at most one hour; e.g. \"500000\" is half a second"))
        })?,
        nameserver: field(top, "", "nameserver", parse::ip)?,
        interfaces: Vec::new(),
        disks: Vec::new(),
    };
    for (i, keys) in raw.interfaces.iter().flatten().enumerate() {
        c.interfaces
            .push(interface(keys, &format!("interfaces[{i}]."))?);
    }
    let mut disks = Vec::new();
    for (i, keys) in raw.disks.iter().flatten().enumerate() {
        disks.push(disk(keys, &format!("disks[{i}]."))?);
    }
    c.add_disks(disks)?;
    Ok(c)
}

impl Config {
    /// Appends `more` to [`Config::disks`] (`lkl-run`'s `--root` and `--mount` come
    /// after the file's entries), refusing two disks at one path.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming the later entry's `disks[N].path` and the earlier
    /// one; nothing is appended then.
    pub fn add_disks(&mut self, more: Vec<Disk>) -> Result<(), Error> {
        let base = self.disks.len();
        for (j, d) in more.iter().enumerate() {
            let earlier = self.disks.iter().chain(&more[..j]);
            if let Some((i, e)) = earlier.enumerate().find(|(_, e)| e.path == d.path) {
                let reason = if d.path == Path::new("/") {
                    format!(
                        "is also the path of disks[{i}] ({}): only one image can be the root",
                        e.image.display()
                    )
                } else {
                    format!(
                        "is also the path of disks[{i}] ({}): give each disk a path of its own",
                        e.image.display()
                    )
                };
                return Err(Error::Invalid {
                    key: format!("disks[{}].path", base + j),
                    value: d.path.display().to_string(),
                    reason,
                });
            }
        }
        self.disks.extend(more);
        Ok(())
    }
}

fn disk(keys: &Keys, prefix: &str) -> Result<Disk, Error> {
    let missing = |key: &str, reason: &str| Error::Missing {
        key: format!("{prefix}{key}"),
        reason: reason.into(),
    };
    let image = field(keys, prefix, "image", |s| {
        if s.is_empty() || s.contains('\0') {
            Err("is not a file name: give the image file, e.g. \"disk.img\"".into())
        } else {
            Ok(PathBuf::from(s))
        }
    })?
    .ok_or_else(|| {
        missing(
            "image",
            "every disk needs its image file, e.g. \"image\": \"disk.img\"",
        )
    })?;
    let path = field(keys, prefix, "path", parse::disk_path)?.ok_or_else(|| {
        missing(
            "path",
            "every disk needs the path it appears at, e.g. \"path\": \"/mnt/disk\" (\"/\" for the root)",
        )
    })?;
    Ok(Disk {
        image,
        path,
        read_only: field(keys, prefix, "readonly", |s| match s.trim() {
            "" | "0" => Ok(false),
            "1" => Ok(true),
            _ => Err("is not a flag: write \"1\" (read-only) or \"0\" (read-write)".into()),
        })?
        .unwrap_or(false),
        partition: field(keys, prefix, "partition", |s| {
            parse::decimal_in(s, 1, 128, "a partition number")
                .map(|n| n as u32)
                .map_err(|e| format!("{e}: partitions are numbered from 1, as in /dev/sda1"))
        })?,
        fstype: field(keys, prefix, "type", |s| {
            let t = s.trim();
            if parse::word(t, 32) {
                Ok(t.to_owned())
            } else {
                Err("is not a file system type: write e.g. \"ext4\", \"btrfs\", \"xfs\" or \"vfat\", or leave it out to detect it".into())
            }
        })?,
        options: field(keys, prefix, "options", |s| {
            if s.contains('\0') {
                Err(
                    "holds a NUL: write the mount options separated by ',', e.g. \"noatime\""
                        .into(),
                )
            } else {
                Ok(s.to_owned())
            }
        })?
        .filter(|o| !o.is_empty()),
    })
}

fn sysctls(s: &str) -> Result<Vec<Sysctl>, String> {
    parse::entries(s, ';')
        .map(|e| {
            let (k, v) = e.split_once('=').ok_or_else(|| {
                format!("has an entry {e:?} without '=': write \"key=value;key=value\", e.g. \"net.ipv4.tcp_wmem=4096 87380 2147483647\"")
            })?;
            let key = k.trim();
            parse::sysctl_key(key)?;
            Ok(Sysctl { key: key.to_owned(), value: v.trim().to_owned() })
        })
        .collect()
}

fn neighbors(s: &str) -> Result<Vec<Neighbor>, String> {
    parse::entries(s, ';')
        .map(|e| {
            let fix = "write \"ip|mac;ip|mac\", e.g. \"192.168.0.1|12:34:56:78:9a:bc;2001:db8::1|12:34:56:78:9a:be\"";
            let (ip, mac) = e.split_once('|').ok_or_else(|| format!("has an entry {e:?} without '|': {fix}"))?;
            let ip = parse::ip(ip).map_err(|_| format!("has a bad address {ip:?} in {e:?}: {fix}"))?;
            let mac = mac.trim().parse().map_err(|_| format!("has a bad MAC {mac:?} in {e:?}: {fix}"))?;
            Ok(Neighbor { ip, mac })
        })
        .collect()
}

fn qdiscs(s: &str) -> Result<Vec<Qdisc>, String> {
    parse::entries(s, ';')
        .map(|e| {
            let fix = "write \"root|KIND;...\", e.g. \"root|fq\"";
            let (parent, kind) = e
                .split_once('|')
                .ok_or_else(|| format!("has an entry {e:?} without '|': {fix}"))?;
            if parent.trim() != "root" {
                return Err(format!(
                    "has parent {:?} in {e:?}: only \"root\" is supported; {fix}",
                    parent.trim()
                ));
            }
            let kind = kind.trim();
            // TCA_KIND holds at most 15 bytes and a NUL.
            if !parse::word(kind, 15) {
                return Err(format!("has a bad qdisc kind {kind:?} in {e:?}: {fix}"));
            }
            Ok(Qdisc {
                parent: QdiscParent::Root,
                kind: kind.to_owned(),
            })
        })
        .collect()
}

fn backend(ty: &str, param: &str) -> Result<Backend, String> {
    let param = param.trim();
    match ty.trim() {
        "tap" if parse::ifname(param) => Ok(Backend::Tap { ifname: param.into() }),
        "tap" => Err("is not a tap interface name (1-15 bytes, no '/'): e.g. \"tap0\", made with `ip tuntap add dev tap0 mode tap`".into()),
        "raw" if parse::ifname(param) => Ok(Backend::Raw { ifname: param.into() }),
        "raw" => Err("is not a host interface name (1-15 bytes, no '/'): e.g. \"eth0\"".into()),
        "macvtap" if !param.is_empty() => Ok(Backend::Macvtap { path: param.into() }),
        "macvtap" => Err("is not a macvtap device path: e.g. \"/dev/tap5\"".into()),
        "pipe" => match param.split('|').collect::<Vec<_>>()[..] {
            [rx, tx] if !rx.trim().is_empty() && !tx.trim().is_empty() => Ok(Backend::Pipe {
                rx: rx.trim().into(),
                tx: tx.trim().into(),
            }),
            _ => Err("is not two paths separated by '|': e.g. \"/tmp/rx|/tmp/tx\"".into()),
        },
        _ => unreachable!("type is checked first"),
    }
}

fn interface(keys: &Keys, prefix: &str) -> Result<Interface, Error> {
    let missing = |key: &str, reason: String| Error::Missing {
        key: format!("{prefix}{key}"),
        reason,
    };
    let Some(ty) = field(keys, prefix, "type", |s| {
        match s.trim() {
        t @ ("tap" | "macvtap" | "raw" | "pipe") => Ok(t.to_owned()),
        t @ ("vde" | "dpdk") => Err(format!("is an upstream interface type this build does not have ({t}): use tap, macvtap, raw or pipe")),
        _ => Err("is not an interface type: write \"tap\", \"macvtap\", \"raw\" or \"pipe\"".into()),
    }
    })?
    else {
        return Err(missing(
            "type",
            "every interface needs one: \"tap\", \"macvtap\", \"raw\" or \"pipe\"".into(),
        ));
    };
    let Some(backend) = field(keys, prefix, "param", |p| backend(&ty, p))? else {
        let example = match ty.as_str() {
            "tap" => "the host tap interface, e.g. \"tap0\"",
            "raw" => "the host interface, e.g. \"eth0\"",
            "macvtap" => "the macvtap device, e.g. \"/dev/tap5\"",
            _ => "two FIFOs, e.g. \"/tmp/rx|/tmp/tx\"",
        };
        return Err(missing(
            "param",
            format!("a {ty} interface needs {example}"),
        ));
    };
    let ip = field(keys, prefix, "ip", parse::ipv4)?;
    let masklen = field(keys, prefix, "masklen", |s| {
        parse::decimal_in(s, 0, 32, "a prefix length")
    })?;
    let ipv6 = field(keys, prefix, "ipv6", parse::ipv6)?;
    let masklen6 = field(keys, prefix, "masklen6", |s| {
        parse::decimal_in(s, 0, 128, "a prefix length")
    })?;
    let ipv4 = match (ip, masklen) {
        (Some(addr), Some(len)) => Some(Cidr {
            addr,
            prefix_len: len as u8,
        }),
        (Some(_), None) => {
            return Err(missing(
                "masklen",
                "\"ip\" needs its prefix length, e.g. \"masklen\": \"24\"".into(),
            ))
        }
        (None, Some(_)) => {
            return Err(missing(
                "ip",
                "\"masklen\" is set without an address, e.g. \"ip\": \"192.168.0.2\"".into(),
            ))
        }
        (None, None) => None,
    };
    let ipv6 = match (ipv6, masklen6) {
        (Some(addr), Some(len)) => Some(Cidr {
            addr,
            prefix_len: len as u8,
        }),
        (Some(_), None) => {
            return Err(missing(
                "masklen6",
                "\"ipv6\" needs its prefix length, e.g. \"masklen6\": \"64\"".into(),
            ))
        }
        (None, Some(_)) => {
            return Err(missing(
                "ipv6",
                "\"masklen6\" is set without an address, e.g. \"ipv6\": \"2001:db8::2\"".into(),
            ))
        }
        (None, None) => None,
    };
    let ifgateway = field(keys, prefix, "ifgateway", parse::ipv4)?;
    if ifgateway.is_some() && ipv4.is_none() {
        return Err(missing("ip", "\"ifgateway\" makes a table selected by the interface's address: set \"ip\" and \"masklen\"".into()));
    }
    let ifgateway6 = field(keys, prefix, "ifgateway6", parse::ipv6)?;
    if ifgateway6.is_some() && ipv6.is_none() {
        return Err(missing("ipv6", "\"ifgateway6\" makes a table selected by the interface's address: set \"ipv6\" and \"masklen6\"".into()));
    }
    Ok(Interface {
        backend,
        mtu: field(keys, prefix, "mtu", |s| {
            parse::decimal_in(s, 68, 65535, "an MTU")
        })?
        .map(|m| m as u32),
        mac: field(keys, prefix, "mac", parse::device_mac)?,
        ipv4,
        ifgateway,
        ipv6,
        ifgateway6,
        neigh: field(keys, prefix, "neigh", neighbors)?.unwrap_or_default(),
        qdisc: field(keys, prefix, "qdisc", qdiscs)?.unwrap_or_default(),
        offload: field(keys, prefix, "offload", parse::mask32)?.unwrap_or(0),
    })
}

#[cfg(test)]
mod tests;
