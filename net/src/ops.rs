//! The rtnetlink operations: links, addresses, routes, rules, neighbours
//! and qdiscs, each a method of [`Rtnl`], with read-back dumps.

use std::net::{IpAddr, Ipv6Addr};
use std::time::{Duration, Instant};

use lkl_sys as sys;

use crate::error::Error;
use crate::nl::{self, Builder, Msg, RtMsg};
use crate::rtnl::Rtnl;

/// One network interface, as `RTM_GETLINK` reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    /// Its index.
    pub index: i32,
    /// Its name (`lo`, `eth0`).
    pub name: String,
    /// `IFF_*` flags.
    pub flags: u32,
    /// Its MTU.
    pub mtu: Option<u32>,
    /// Its link-layer address, if six bytes long.
    pub mac: Option<[u8; 6]>,
}

impl Link {
    /// Whether `IFF_UP` is set.
    pub fn is_up(&self) -> bool {
        self.flags & sys::LKL_IFF_UP != 0
    }
}

/// One address, as `RTM_GETADDR` reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Addr {
    /// The interface.
    pub ifindex: i32,
    /// The address (`IFA_LOCAL`, else `IFA_ADDRESS`).
    pub addr: IpAddr,
    /// Its prefix length.
    pub prefix_len: u8,
    /// `IFA_F_*` flags (`IFA_FLAGS` if present).
    pub flags: u32,
}

/// One route, as `RTM_GETROUTE` reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// The table (`RTA_TABLE`).
    pub table: u32,
    /// Destination and prefix length; `None` for a default route.
    pub dst: Option<(IpAddr, u8)>,
    /// The gateway.
    pub gateway: Option<IpAddr>,
    /// The output interface.
    pub oif: Option<i32>,
    /// `RT_SCOPE_*`.
    pub scope: u8,
    /// `RTN_*`.
    pub kind: u8,
}

/// One policy-routing rule, as `RTM_GETRULE` reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    /// `AF_INET` or `AF_INET6`.
    pub family: u8,
    /// The table it looks up (`FRA_TABLE`).
    pub table: u32,
    /// The `from` selector and its prefix length.
    pub src: Option<(IpAddr, u8)>,
    /// Its priority.
    pub priority: Option<u32>,
    /// `FR_ACT_*`.
    pub action: u8,
}

/// One neighbour entry, as `RTM_GETNEIGH` reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Neighbor {
    /// The interface.
    pub ifindex: i32,
    /// The neighbour's address.
    pub ip: IpAddr,
    /// Its link-layer address.
    pub mac: Option<[u8; 6]>,
    /// `NUD_*`.
    pub state: u16,
}

/// One qdisc, as `RTM_GETQDISC` reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QdiscInfo {
    /// The interface.
    pub ifindex: i32,
    /// Its handle.
    pub handle: u32,
    /// Its parent (`TC_H_ROOT` for the root qdisc).
    pub parent: u32,
    /// Its kind (`fq`, `noqueue`, ...).
    pub kind: String,
}

/// The policy-routing table upstream gives an interface's IPv4 side.
pub fn table_v4(ifindex: i32) -> u32 {
    2 * ifindex as u32
}

/// The policy-routing table upstream gives an interface's IPv6 side.
pub fn table_v6(ifindex: i32) -> u32 {
    2 * ifindex as u32 + 1
}

fn family_of(ip: IpAddr) -> u8 {
    match ip {
        IpAddr::V4(_) => sys::LKL_AF_INET as u8,
        IpAddr::V6(_) => sys::LKL_AF_INET6 as u8,
    }
}

fn full_len(ip: IpAddr) -> u8 {
    match ip {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

/// `ip` with the bits past `len` cleared.
pub fn network(ip: IpAddr, len: u8) -> IpAddr {
    fn mask(bytes: &mut [u8], len: u8) {
        for (i, b) in bytes.iter_mut().enumerate() {
            let keep = (len as usize).saturating_sub(i * 8).min(8);
            *b &= !(0xffu8.checked_shr(keep as u32).unwrap_or(0));
        }
    }
    match ip {
        IpAddr::V4(a) => {
            let mut o = a.octets();
            mask(&mut o, len);
            IpAddr::from(o)
        }
        IpAddr::V6(a) => {
            let mut o = a.octets();
            mask(&mut o, len);
            IpAddr::from(o)
        }
    }
}

/// Splits a message into its family header and attributes.
fn split<'a>(what: &str, m: &'a Msg, header: usize) -> Result<(&'a [u8], nl::Attrs<'a>), Error> {
    let malformed = |reason: String| Error::Malformed {
        what: what.into(),
        reason,
    };
    let head = m
        .payload
        .get(..header)
        .ok_or_else(|| malformed(format!("message type {} shorter than its header", m.ty)))?;
    let attrs =
        nl::attrs(&m.payload[nl::align(header).min(m.payload.len())..]).map_err(malformed)?;
    Ok((head, attrs))
}

fn mac_of(d: &[u8]) -> Option<[u8; 6]> {
    d.try_into().ok()
}

fn link_of(what: &str, m: &Msg) -> Result<Link, Error> {
    let (h, a) = split(what, m, nl::IFINFOMSG_LEN)?;
    Ok(Link {
        index: nl::i32_at(h, 4).unwrap_or(0),
        flags: nl::u32_at(h, 8).unwrap_or(0),
        name: nl::find(&a, sys::LKL_IFLA_IFNAME)
            .map(nl::str_of)
            .unwrap_or_default(),
        mtu: nl::find(&a, sys::LKL_IFLA_MTU).and_then(|d| nl::u32_at(d, 0)),
        mac: nl::find(&a, sys::LKL_IFLA_ADDRESS).and_then(mac_of),
    })
}

impl Rtnl {
    // ---------------------------------------------------------------- links

    /// The interface named `name`.
    ///
    /// # Errors
    /// [`Error::NoSuchInterface`] if there is none.
    pub fn link_by_name(&mut self, name: &str) -> Result<Link, Error> {
        if name.is_empty() || name.len() >= 16 || name.contains('\0') {
            return Err(Error::Invalid {
                what: format!("interface name {name:?}"),
                reason: "must be 1 to 15 bytes without NUL".into(),
            });
        }
        let what = format!("look up interface {name:?}");
        let msg = Builder::new(sys::LKL_RTM_GETLINK, 0, &nl::ifinfomsg(0, 0, 0, 0))
            .attr_str(sys::LKL_IFLA_IFNAME, name);
        match self.get(&what, msg) {
            Ok(m) => link_of(&what, &m),
            Err(Error::Netlink { errno, .. }) if errno == lkl::Errno::ENODEV => {
                Err(Error::NoSuchInterface { name: name.into() })
            }
            Err(e) => Err(e),
        }
    }

    /// The interface with index `index`.
    ///
    /// # Errors
    /// [`Error::Netlink`] (`ENODEV`) if there is none.
    pub fn link(&mut self, index: i32) -> Result<Link, Error> {
        let what = format!("look up interface {index}");
        let m = self.get(
            &what,
            Builder::new(sys::LKL_RTM_GETLINK, 0, &nl::ifinfomsg(0, index, 0, 0)),
        )?;
        link_of(&what, &m)
    }

    /// Every interface.
    ///
    /// # Errors
    /// A refused or malformed dump.
    pub fn links(&mut self) -> Result<Vec<Link>, Error> {
        let what = "dump links";
        let msgs = self.dump(
            what,
            Builder::new(sys::LKL_RTM_GETLINK, 0, &nl::ifinfomsg(0, 0, 0, 0)),
        )?;
        msgs.iter().map(|m| link_of(what, m)).collect()
    }

    fn set_link(
        &mut self,
        what: &str,
        index: i32,
        flags: u32,
        change: u32,
        attr: Option<(u32, &[u8])>,
    ) -> Result<(), Error> {
        let mut msg = Builder::new(
            sys::LKL_RTM_NEWLINK,
            0,
            &nl::ifinfomsg(0, index, flags, change),
        );
        if let Some((ty, data)) = attr {
            msg = msg.attr(ty, data);
        }
        self.request(what, msg)
    }

    /// Brings interface `index` up or down (`IFF_UP`).
    ///
    /// # Errors
    /// The kernel's refusal.
    pub fn set_up(&mut self, index: i32, up: bool) -> Result<(), Error> {
        let what = format!("set interface {index} {}", if up { "up" } else { "down" });
        let flags = if up { sys::LKL_IFF_UP } else { 0 };
        self.set_link(&what, index, flags, sys::LKL_IFF_UP, None)
    }

    /// Sets interface `index`'s MTU.
    ///
    /// # Errors
    /// The kernel's refusal (`EINVAL` out of the device's range).
    pub fn set_mtu(&mut self, index: i32, mtu: u32) -> Result<(), Error> {
        let what = format!("set MTU {mtu} on interface {index}");
        self.set_link(
            &what,
            index,
            0,
            0,
            Some((sys::LKL_IFLA_MTU, &mtu.to_ne_bytes())),
        )
    }

    /// Sets interface `index`'s MAC address.
    ///
    /// # Errors
    /// The kernel's refusal (a device that cannot change it).
    pub fn set_mac(&mut self, index: i32, mac: [u8; 6]) -> Result<(), Error> {
        let what = format!("set MAC on interface {index}");
        self.set_link(&what, index, 0, 0, Some((sys::LKL_IFLA_ADDRESS, &mac)))
    }

    // ------------------------------------------------------------ addresses

    /// Adds `addr/prefix_len` to interface `index`. With `nodad`, an IPv6
    /// address skips duplicate address detection (`IFA_F_NODAD`); without,
    /// see [`Rtnl::wait_dad`].
    ///
    /// # Errors
    /// The kernel's refusal (`EEXIST` if present).
    pub fn add_addr(
        &mut self,
        index: i32,
        addr: IpAddr,
        prefix_len: u8,
        nodad: bool,
    ) -> Result<(), Error> {
        if prefix_len > full_len(addr) {
            return Err(Error::Invalid {
                what: format!("{addr}/{prefix_len}"),
                reason: format!("prefix length over {}", full_len(addr)),
            });
        }
        let what = format!("add address {addr}/{prefix_len} to interface {index}");
        let flags = if nodad && addr.is_ipv6() {
            sys::LKL_IFA_F_NODAD
        } else {
            0
        };
        let header = nl::ifaddrmsg(family_of(addr), prefix_len, flags as u8, 0, index as u32);
        let msg = Builder::new(
            sys::LKL_RTM_NEWADDR,
            sys::LKL_NLM_F_CREATE | sys::LKL_NLM_F_EXCL,
            &header,
        )
        .attr_ip(sys::LKL_IFA_LOCAL, addr)
        .attr_ip(sys::LKL_IFA_ADDRESS, addr)
        .attr_u32(sys::LKL_IFA_FLAGS, flags);
        self.request(&what, msg)
    }

    /// Every address of `family` (`AF_INET`, `AF_INET6`, or 0 for both).
    ///
    /// # Errors
    /// A refused or malformed dump.
    pub fn addresses(&mut self, family: u8) -> Result<Vec<Addr>, Error> {
        let what = "dump addresses";
        let msgs = self.dump(
            what,
            Builder::new(sys::LKL_RTM_GETADDR, 0, &nl::ifaddrmsg(family, 0, 0, 0, 0)),
        )?;
        let mut out = Vec::new();
        for m in &msgs {
            let (h, a) = split(what, m, nl::IFADDRMSG_LEN)?;
            let Some(addr) = nl::find(&a, sys::LKL_IFA_LOCAL)
                .or_else(|| nl::find(&a, sys::LKL_IFA_ADDRESS))
                .and_then(nl::ip_of)
            else {
                continue;
            };
            out.push(Addr {
                ifindex: nl::u32_at(h, 4).unwrap_or(0) as i32,
                addr,
                prefix_len: h[1],
                flags: nl::find(&a, sys::LKL_IFA_FLAGS)
                    .and_then(|d| nl::u32_at(d, 0))
                    .unwrap_or(u32::from(h[2])),
            });
        }
        Ok(out)
    }

    /// Waits until IPv6 address `addr` on interface `index` is no longer
    /// tentative (duplicate address detection done), polling every 10 ms.
    ///
    /// # Errors
    /// [`Error::DadFailed`], or [`Error::DadTimeout`] after `timeout`.
    pub fn wait_dad(&mut self, index: i32, addr: Ipv6Addr, timeout: Duration) -> Result<(), Error> {
        let start = Instant::now();
        loop {
            let found = self
                .addresses(sys::LKL_AF_INET6 as u8)?
                .into_iter()
                .find(|a| a.ifindex == index && a.addr == IpAddr::V6(addr));
            if let Some(a) = found {
                if a.flags & sys::LKL_IFA_F_DADFAILED != 0 {
                    return Err(Error::DadFailed {
                        addr: addr.into(),
                        ifindex: index,
                    });
                }
                if a.flags & sys::LKL_IFA_F_TENTATIVE == 0 {
                    return Ok(());
                }
            }
            if start.elapsed() >= timeout {
                return Err(Error::DadTimeout {
                    addr: addr.into(),
                    ifindex: index,
                    waited: start.elapsed(),
                });
            }
            lkl::nanosleep(Duration::from_millis(10)).map_err(crate::error::sc("wait for DAD"))?;
        }
    }

    // --------------------------------------------------------------- routes

    /// Adds a unicast route to `table`: to `dst` (default if `None`), via
    /// `gateway` and/or out of `oif`, with `scope` (`RT_SCOPE_*`).
    ///
    /// # Errors
    /// The kernel's refusal (`EEXIST`, `ENETUNREACH` for a gateway no
    /// route reaches).
    pub fn add_route(
        &mut self,
        table: u32,
        dst: Option<(IpAddr, u8)>,
        gateway: Option<IpAddr>,
        oif: Option<i32>,
        scope: u8,
    ) -> Result<(), Error> {
        let Some(any) = dst.map(|d| d.0).or(gateway) else {
            return Err(Error::Invalid {
                what: "route".into(),
                reason: "needs a destination or a gateway".into(),
            });
        };
        let dst_text = dst
            .map(|(a, l)| format!("{a}/{l}"))
            .unwrap_or_else(|| "default".into());
        let via = gateway.map(|g| format!(" via {g}")).unwrap_or_default();
        let dev = oif.map(|o| format!(" dev {o}")).unwrap_or_default();
        let what = format!("add route {dst_text}{via}{dev} table {table}");
        let rt = RtMsg {
            family: family_of(any),
            dst_len: dst.map_or(0, |d| d.1),
            table: u8::try_from(table).unwrap_or(sys::LKL_RT_TABLE_COMPAT as u8),
            protocol: sys::LKL_RTPROT_BOOT as u8,
            scope,
            kind: sys::LKL_RTN_UNICAST as u8,
            ..RtMsg::default()
        };
        let mut msg = Builder::new(
            sys::LKL_RTM_NEWROUTE,
            sys::LKL_NLM_F_CREATE | sys::LKL_NLM_F_EXCL,
            &rt.encode(),
        )
        .attr_u32(sys::LKL_RTA_TABLE, table);
        if let Some((d, len)) = dst {
            msg = msg.attr_ip(sys::LKL_RTA_DST, network(d, len));
        }
        if let Some(g) = gateway {
            msg = msg.attr_ip(sys::LKL_RTA_GATEWAY, g);
        }
        if let Some(o) = oif {
            msg = msg.attr_u32(sys::LKL_RTA_OIF, o as u32);
        }
        self.request(&what, msg)
    }

    /// Adds the default route via `gateway` to the main table.
    ///
    /// # Errors
    /// See [`Rtnl::add_route`].
    pub fn add_default_gateway(&mut self, gateway: IpAddr) -> Result<(), Error> {
        self.add_route(
            sys::LKL_RT_TABLE_MAIN,
            None,
            Some(gateway),
            None,
            sys::LKL_RT_SCOPE_UNIVERSE as u8,
        )
    }

    /// Every route of `family` (all tables).
    ///
    /// # Errors
    /// A refused or malformed dump.
    pub fn routes(&mut self, family: u8) -> Result<Vec<Route>, Error> {
        let what = "dump routes";
        let rt = RtMsg {
            family,
            ..RtMsg::default()
        };
        let msgs = self.dump(what, Builder::new(sys::LKL_RTM_GETROUTE, 0, &rt.encode()))?;
        let mut out = Vec::new();
        for m in &msgs {
            let (h, a) = split(what, m, nl::RTMSG_LEN)?;
            let Some(r) = RtMsg::decode(h) else { continue };
            out.push(Route {
                table: nl::find(&a, sys::LKL_RTA_TABLE)
                    .and_then(|d| nl::u32_at(d, 0))
                    .unwrap_or(u32::from(r.table)),
                dst: nl::find(&a, sys::LKL_RTA_DST)
                    .and_then(nl::ip_of)
                    .map(|d| (d, r.dst_len)),
                gateway: nl::find(&a, sys::LKL_RTA_GATEWAY).and_then(nl::ip_of),
                oif: nl::find(&a, sys::LKL_RTA_OIF).and_then(|d| nl::i32_at(d, 0)),
                scope: r.scope,
                kind: r.kind,
            });
        }
        Ok(out)
    }

    // ---------------------------------------------------------------- rules

    /// Adds the rule `from src lookup table` (the whole address as the
    /// selector, as upstream does).
    ///
    /// # Errors
    /// The kernel's refusal.
    pub fn add_rule_from(&mut self, src: IpAddr, table: u32) -> Result<(), Error> {
        let what = format!("add rule from {src} lookup {table}");
        let hdr = RtMsg {
            family: family_of(src),
            src_len: full_len(src),
            table: u8::try_from(table).unwrap_or(sys::LKL_RT_TABLE_COMPAT as u8),
            kind: sys::LKL_FR_ACT_TO_TBL as u8,
            ..RtMsg::default()
        };
        let msg = Builder::new(
            sys::LKL_RTM_NEWRULE,
            sys::LKL_NLM_F_CREATE | sys::LKL_NLM_F_EXCL,
            &hdr.encode(),
        )
        .attr_ip(sys::LKL_FRA_SRC, src)
        .attr_u32(sys::LKL_FRA_TABLE, table);
        self.request(&what, msg)
    }

    /// Every rule of `family`.
    ///
    /// # Errors
    /// A refused or malformed dump.
    pub fn rules(&mut self, family: u8) -> Result<Vec<Rule>, Error> {
        let what = "dump rules";
        let hdr = RtMsg {
            family,
            ..RtMsg::default()
        };
        let msgs = self.dump(what, Builder::new(sys::LKL_RTM_GETRULE, 0, &hdr.encode()))?;
        let mut out = Vec::new();
        for m in &msgs {
            let (h, a) = split(what, m, nl::FIB_RULE_HDR_LEN)?;
            let Some(r) = RtMsg::decode(h) else { continue };
            out.push(Rule {
                family: r.family,
                table: nl::find(&a, sys::LKL_FRA_TABLE)
                    .and_then(|d| nl::u32_at(d, 0))
                    .unwrap_or(u32::from(r.table)),
                src: nl::find(&a, sys::LKL_FRA_SRC)
                    .and_then(nl::ip_of)
                    .map(|s| (s, r.src_len)),
                priority: nl::find(&a, sys::LKL_FRA_PRIORITY).and_then(|d| nl::u32_at(d, 0)),
                action: r.kind,
            });
        }
        Ok(out)
    }

    /// Upstream's `ifgateway`/`ifgateway6`: a table of the interface's own
    /// ([`table_v4`] / [`table_v6`]) selected by `from addr`, holding the
    /// interface's subnet (scope link) and a default route via `gateway`.
    ///
    /// # Errors
    /// The first refused step.
    pub fn add_interface_table(
        &mut self,
        index: i32,
        addr: IpAddr,
        prefix_len: u8,
        gateway: IpAddr,
    ) -> Result<(), Error> {
        let table = if addr.is_ipv4() {
            table_v4(index)
        } else {
            table_v6(index)
        };
        self.add_rule_from(addr, table)?;
        self.add_route(
            table,
            Some((addr, prefix_len)),
            None,
            Some(index),
            sys::LKL_RT_SCOPE_LINK as u8,
        )?;
        self.add_route(
            table,
            None,
            Some(gateway),
            Some(index),
            sys::LKL_RT_SCOPE_UNIVERSE as u8,
        )
    }

    // ----------------------------------------------------------- neighbours

    /// Adds (or replaces) a permanent neighbour entry on interface `index`.
    ///
    /// # Errors
    /// The kernel's refusal.
    pub fn add_neighbor(&mut self, index: i32, ip: IpAddr, mac: [u8; 6]) -> Result<(), Error> {
        let what = format!("add neighbour {ip} on interface {index}");
        let hdr = nl::ndmsg(family_of(ip), index, sys::LKL_NUD_PERMANENT as u16, 0);
        let msg = Builder::new(
            sys::LKL_RTM_NEWNEIGH,
            sys::LKL_NLM_F_CREATE | sys::LKL_NLM_F_REPLACE,
            &hdr,
        )
        .attr_ip(sys::LKL_NDA_DST, ip)
        .attr(sys::LKL_NDA_LLADDR, &mac);
        self.request(&what, msg)
    }

    /// Every neighbour entry of `family`.
    ///
    /// # Errors
    /// A refused or malformed dump.
    pub fn neighbors(&mut self, family: u8) -> Result<Vec<Neighbor>, Error> {
        let what = "dump neighbours";
        let msgs = self.dump(
            what,
            Builder::new(sys::LKL_RTM_GETNEIGH, 0, &nl::ndmsg(family, 0, 0, 0)),
        )?;
        let mut out = Vec::new();
        for m in &msgs {
            let (h, a) = split(what, m, nl::NDMSG_LEN)?;
            let Some(ip) = nl::find(&a, sys::LKL_NDA_DST).and_then(nl::ip_of) else {
                continue;
            };
            out.push(Neighbor {
                ifindex: nl::i32_at(h, 4).unwrap_or(0),
                ip,
                mac: nl::find(&a, sys::LKL_NDA_LLADDR).and_then(mac_of),
                state: nl::u16_at(h, 8).unwrap_or(0),
            });
        }
        Ok(out)
    }

    // --------------------------------------------------------------- qdiscs

    /// Adds a root qdisc of `kind` (`fq`, ...) to interface `index`
    /// (upstream's `root|kind`).
    ///
    /// # Errors
    /// The kernel's refusal (`ENOENT` for a kind the kernel lacks).
    pub fn add_root_qdisc(&mut self, index: i32, kind: &str) -> Result<(), Error> {
        if kind.is_empty() || kind.len() > 15 || kind.contains('\0') {
            return Err(Error::Invalid {
                what: format!("qdisc kind {kind:?}"),
                reason: "must be 1 to 15 bytes".into(),
            });
        }
        let what = format!("add root qdisc {kind} to interface {index}");
        let msg = Builder::new(
            sys::LKL_RTM_NEWQDISC,
            sys::LKL_NLM_F_CREATE | sys::LKL_NLM_F_EXCL,
            &nl::tcmsg(index, 0, sys::LKL_TC_H_ROOT),
        )
        .attr_str(sys::LKL_TCA_KIND, kind);
        self.request(&what, msg)
    }

    /// Every qdisc.
    ///
    /// # Errors
    /// A refused or malformed dump.
    pub fn qdiscs(&mut self) -> Result<Vec<QdiscInfo>, Error> {
        let what = "dump qdiscs";
        let msgs = self.dump(
            what,
            Builder::new(sys::LKL_RTM_GETQDISC, 0, &nl::tcmsg(0, 0, 0)),
        )?;
        let mut out = Vec::new();
        for m in &msgs {
            let (h, a) = split(what, m, nl::TCMSG_LEN)?;
            out.push(QdiscInfo {
                ifindex: nl::i32_at(h, 4).unwrap_or(0),
                handle: nl::u32_at(h, 8).unwrap_or(0),
                parent: nl::u32_at(h, 12).unwrap_or(0),
                kind: nl::find(&a, sys::LKL_TCA_KIND)
                    .map(nl::str_of)
                    .unwrap_or_default(),
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_and_tables() {
        let n = |s: &str, l| network(s.parse().unwrap(), l).to_string();
        assert_eq!(n("192.168.1.77", 24), "192.168.1.0");
        assert_eq!(n("192.168.1.77", 0), "0.0.0.0");
        assert_eq!(n("192.168.1.77", 32), "192.168.1.77");
        assert_eq!(n("10.255.255.255", 9), "10.128.0.0");
        assert_eq!(n("2001:db8:0:f101::2", 64), "2001:db8:0:f101::");
        assert_eq!(n("2001:db8::ffff", 127), "2001:db8::fffe");
        assert_eq!((table_v4(3), table_v6(3)), (6, 7));
    }
}
