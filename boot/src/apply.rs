//! The network part of a hijack configuration, applied in upstream's order
//! (`lkl_load_config_post`).

use std::net::IpAddr;
use std::time::Duration;

use lkl_hijack_config::{Config, Interface};

use lkl::Errno;
use lkl_net::{Error, Rtnl, AF_INET, AF_INET6};

/// The main routing table (`RT_TABLE_MAIN`).
const MAIN_TABLE: u32 = lkl::sys::LKL_RT_TABLE_MAIN;

/// Why [`apply`] failed.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// A step failed, named by the config key it comes from
    /// (`interfaces[0].ip`, `sysctl`, ...).
    #[error("{key}: {source}")]
    Key {
        /// The key.
        key: String,
        /// What went wrong.
        source: Error,
    },
    /// A step no key names failed (the netlink socket, `lo`).
    #[error(transparent)]
    Net(#[from] Error),
    /// A different number of ifindexes than interfaces was given.
    #[error("apply: the config has {interfaces} interfaces but {ifindexes} ifindexes were given")]
    IfindexCount {
        /// `config.interfaces.len()`.
        interfaces: usize,
        /// `ifindexes.len()`.
        ifindexes: usize,
    },
}

impl ApplyError {
    /// The kernel's error number, if the failing step got one.
    pub fn errno(&self) -> Option<Errno> {
        match self {
            ApplyError::Key { source, .. } | ApplyError::Net(source) => source.errno(),
            ApplyError::IfindexCount { .. } => None,
        }
    }
}

/// Names an `lkl-net` error by the config key of its step.
trait InKey {
    fn in_key(self, key: impl Into<String>) -> ApplyError;
}

impl InKey for Error {
    fn in_key(self, key: impl Into<String>) -> ApplyError {
        ApplyError::Key {
            key: key.into(),
            source: self,
        }
    }
}

/// How long [`apply`] waits for IPv6 duplicate address detection.
pub const DAD_TIMEOUT: Duration = Duration::from_secs(10);

/// Applies the parts of `config` that are not devices, once the devices
/// exist: `ifindexes[i]` is the LKL interface made for
/// `config.interfaces[i]`. In order:
///
/// 1. `mount` (each type at `/TYPE`), and `lo` up;
/// 2. per interface ([`apply_interface`]);
/// 3. `gateway` and `gateway6` (default routes, main table);
/// 4. `sysctl`, in order;
/// 5. `nameserver` into `/etc/resolv.conf`.
///
/// `delay_main`, `debug`, `singlecpu`, `boot_cmdline`, `dump`, `offload`
/// and the backends are the caller's (boot and devices).
///
/// A `gateway` (or `gateway6`) the kernel already has a default route for
/// (`ip=dhcp` on the command line, whose DHCP answer named a router) is
/// not an error, as in upstream, which prints the failure and goes on: the
/// route is kept and a warning saying so is returned.
///
/// # Errors
/// The first failing step, as [`ApplyError::Key`] naming its config key
/// (`interfaces[0].ip: add address ...: the kernel refused: EEXIST`).
pub fn apply(config: &Config, ifindexes: &[i32]) -> Result<Vec<String>, ApplyError> {
    if config.interfaces.len() != ifindexes.len() {
        return Err(ApplyError::IfindexCount {
            interfaces: config.interfaces.len(),
            ifindexes: ifindexes.len(),
        });
    }
    for t in &config.mount {
        lkl_net::mount_fs(t).map_err(|e| e.in_key("mount"))?;
    }
    let mut nl = Rtnl::open()?;
    let lo = nl.link_by_name("lo")?;
    if !lo.is_up() {
        nl.set_up(lo.index, true)?;
    }
    for (i, (iface, &index)) in config.interfaces.iter().zip(ifindexes).enumerate() {
        apply_interface(&mut nl, iface, index, &format!("interfaces[{i}]"))?;
    }
    let mut warnings = Vec::new();
    if let Some(g) = config.gateway {
        default_gateway(&mut nl, g.into(), "gateway", &mut warnings)?;
    }
    if let Some(g) = config.gateway6 {
        default_gateway(&mut nl, g.into(), "gateway6", &mut warnings)?;
    }
    for s in &config.sysctl {
        lkl_net::sysctl_write(&s.key, &s.value).map_err(|e| e.in_key("sysctl"))?;
    }
    if let Some(ns) = config.nameserver {
        lkl_net::write_resolv_conf(&[ns]).map_err(|e| e.in_key("nameserver"))?;
    }
    Ok(warnings)
}

/// `gateway`/`gateway6`: the default route via `gw`, unless there is one
/// already (a warning then, naming the route kept).
fn default_gateway(
    nl: &mut Rtnl,
    gw: IpAddr,
    key: &str,
    warnings: &mut Vec<String>,
) -> Result<(), ApplyError> {
    match nl.add_default_gateway(gw) {
        Err(e) if e.errno() == Some(Errno::EEXIST) => {
            let family = if gw.is_ipv4() { AF_INET } else { AF_INET6 };
            let kept = nl
                .routes(family)
                .ok()
                .and_then(|routes| {
                    routes
                        .into_iter()
                        .find(|r| r.table == MAIN_TABLE && r.dst.is_none())
                })
                .and_then(|r| r.gateway)
                .map(|via| format!(" via {via}"))
                .unwrap_or_default();
            warnings.push(format!(
                "{key}: {gw} not added: the kernel has a default route{kept} already \
                 (from ip= in boot_cmdline, e.g. the DHCP answer's router); kept it. \
                 Drop {key} from the configuration to silence this"
            ));
            Ok(())
        }
        r => r.map_err(|e| e.in_key(key)),
    }
}

/// Configures one interface: `mac` (if the device does not have it
/// already), up, `mtu`, `ip`/`masklen` and `ifgateway`'s table,
/// `ipv6`/`masklen6` (waiting for DAD) and `ifgateway6`'s table, `neigh`,
/// `qdisc`. `key` prefixes error keys (`interfaces[0]`).
///
/// # Errors
/// The first failing step, as [`ApplyError::Key`].
pub fn apply_interface(
    nl: &mut Rtnl,
    iface: &Interface,
    index: i32,
    key: &str,
) -> Result<(), ApplyError> {
    let k = |name: &str| format!("{key}.{name}");
    if let Some(mac) = iface.mac {
        let link = nl.link(index).map_err(|e| e.in_key(k("mac")))?;
        if link.mac != Some(mac.0) {
            // A MAC is changed while the link is down.
            if link.is_up() {
                nl.set_up(index, false).map_err(|e| e.in_key(k("mac")))?;
            }
            nl.set_mac(index, mac.0).map_err(|e| e.in_key(k("mac")))?;
        }
    }
    nl.set_up(index, true).map_err(|e| e.in_key(key))?;
    if let Some(mtu) = iface.mtu {
        nl.set_mtu(index, mtu).map_err(|e| e.in_key(k("mtu")))?;
    }
    if let Some(c) = iface.ipv4 {
        nl.add_addr(index, c.addr.into(), c.prefix_len, false)
            .map_err(|e| e.in_key(k("ip")))?;
        if let Some(gw) = iface.ifgateway {
            nl.add_interface_table(index, c.addr.into(), c.prefix_len, gw.into())
                .map_err(|e| e.in_key(k("ifgateway")))?;
        }
    }
    if let Some(c) = iface.ipv6 {
        nl.add_addr(index, c.addr.into(), c.prefix_len, false)
            .map_err(|e| e.in_key(k("ipv6")))?;
        nl.wait_dad(index, c.addr, DAD_TIMEOUT)
            .map_err(|e| e.in_key(k("ipv6")))?;
        if let Some(gw) = iface.ifgateway6 {
            nl.add_interface_table(index, IpAddr::V6(c.addr), c.prefix_len, gw.into())
                .map_err(|e| e.in_key(k("ifgateway6")))?;
        }
    }
    for n in &iface.neigh {
        nl.add_neighbor(index, n.ip, n.mac.0)
            .map_err(|e| e.in_key(k("neigh")))?;
    }
    for q in &iface.qdisc {
        nl.add_root_qdisc(index, &q.kind)
            .map_err(|e| e.in_key(k("qdisc")))?;
    }
    Ok(())
}
