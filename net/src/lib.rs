//! Configures LKL's network from the host, the way upstream LKL's
//! `tools/lkl/lib/net.c` and `config.c` do, through rtnetlink sockets
//! inside LKL (`AF_NETLINK`/`NETLINK_ROUTE` over `lkl::socket`,
//! `lkl::sendto` and `lkl::recvfrom`) and files inside LKL.
//!
//! - [`Rtnl`]: one netlink socket; its methods set links up/down, MTU and
//!   MAC ([`Rtnl::link_by_name`] gives the index), add IPv4/IPv6 addresses
//!   (IPv6 with `IFA_F_NODAD` or [`Rtnl::wait_dad`]), routes and default
//!   gateways, per-interface policy tables ([`Rtnl::add_interface_table`]:
//!   table `2 × ifindex` for IPv4, `2 × ifindex + 1` for IPv6, rule `from`
//!   the interface's address, as upstream), permanent neighbours and root
//!   qdiscs, and read each back with dumps ([`Rtnl::addresses`],
//!   [`Rtnl::routes`], [`Rtnl::rules`], [`Rtnl::neighbors`],
//!   [`Rtnl::qdiscs`], [`Rtnl::links`]).
//! - [`sysctl_write`]/[`sysctl_read`] (mounting proc at `/proc` when
//!   needed), [`write_resolv_conf`], [`mount_fs`] (upstream's `mount` key).
//!
//! The crate knows nothing of the hijack configuration: `lkl-boot` boots
//! LKL from one and applies its network keys with these functions.
//!
//! Messages are built and parsed by our own small encoder ([`nl`]): safe
//! code, every length checked, family headers encoded field by field and
//! their sizes checked at compile time against the kernel's structures in
//! `lkl-sys`. A crate such as `netlink-packet-route` would also do, but its
//! types would sit beside the kernel's own generated constants, and what
//! we send is a handful of fixed messages.
//!
//! Every function needs a booted kernel (`lkl::boot`); before it they fail
//! with `ENOSYS`. Errors are [`Error`]: the request, the kernel's errno and
//! its extended-ack message.
#![forbid(unsafe_code)]

mod error;
mod fs;
pub mod nl;
mod ops;
mod rtnl;

pub use error::Error;
pub use fs::{
    ensure_proc, mount_fs, read_file, sysctl_path, sysctl_read, sysctl_write, write_resolv_conf,
};
pub use ops::{network, table_v4, table_v6, Addr, Link, Neighbor, QdiscInfo, Route, Rule};
pub use rtnl::Rtnl;

/// `AF_INET` as the `family` argument of the dumps.
pub const AF_INET: u8 = lkl_sys::LKL_AF_INET as u8;
/// `AF_INET6` as the `family` argument of the dumps.
pub const AF_INET6: u8 = lkl_sys::LKL_AF_INET6 as u8;

/// The index of interface `name` (one netlink round trip).
///
/// # Errors
/// [`Error::NoSuchInterface`].
pub fn ifindex(name: &str) -> Result<i32, Error> {
    Rtnl::open()?.link_by_name(name).map(|l| l.index)
}
