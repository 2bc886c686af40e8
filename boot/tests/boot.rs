//! lkl-boot against a real kernel: the memory check before anything is
//! made, a boot from a configuration with no interfaces ([`lkl_boot::start`],
//! one kernel per process), then a configuration's network keys applied to
//! `lo` (the only interface without virtio devices) and read back. Prints
//! `N passed, N failed`.

use std::process::ExitCode;

use lkl::sys;
use lkl_boot::{StartError, Started};
use lkl_hijack_config::Config;
use lkl_net::{AF_INET, AF_INET6};
use lkl_test_support::Report;

#[macro_use]
#[path = "../../net/tests/common/mod.rs"]
mod common;
use common::{ip, nl, refused, s, Outcome};

/// A `mem=` no host has is refused by name, before anything is made.
fn memory_refused() -> Outcome {
    let e = refused(lkl_boot::check_memory("ip=dhcp mem=100E"), "check_memory")?;
    ensure!(matches!(e, StartError::Memory { .. }), "{e:?}");
    let text = e.to_string();
    ensure!(
        text.starts_with("boot_cmdline: \"mem=100E\" asks for ")
            && text.contains("ask for less (LKL's default is mem=64M)"),
        "{text}"
    );
    ensure!(lkl_boot::check_memory("mem=1M").is_ok(), "mem=1M refused");
    ensure!(lkl_boot::check_memory("quiet").is_ok(), "no mem= refused");
    let cfg = Config::from_json(r#"{"boot_cmdline": "mem=100E"}"#).map_err(s)?;
    let e = refused(lkl_boot::start(&cfg).map(|_| ()), "start with mem=100E")?;
    ensure!(matches!(e, StartError::Memory { .. }), "{e:?}");
    Ok(())
}

/// A configuration without interfaces: no devices, `lo` up, no warnings.
fn started(started: &Started) -> Outcome {
    ensure!(
        started.nets.is_empty() && started.ifindexes.is_empty(),
        "{started:?}"
    );
    ensure!(started.warnings.is_empty(), "{:?}", started.warnings);
    ensure!(nl()?.link_by_name("lo").map_err(s)?.is_up(), "lo is down");
    Ok(())
}

/// A hijack config applied to lo: interface keys (mtu, ip, ifgateway's
/// table 2, ipv6 with DAD, neigh; not ifgateway6, which lo refuses: see
/// lkl-net's interface_table_v6_on_lo) and the global ones (mount,
/// sysctl, nameserver, gateway: the default route in the main table), all
/// read back.
fn apply_config() -> Outcome {
    let cfg = Config::from_json(
        r#"{
            "mount": "sysfs",
            "sysctl": "net.core.somaxconn=1000;net.ipv4.tcp_wmem=4096 16384 4194304",
            "nameserver": "9.9.9.9",
            "gateway": "10.20.0.254",
            "interfaces": [{
                "type": "tap", "param": "tap0", "mtu": "9000",
                "ip": "10.20.0.1", "masklen": "16", "ifgateway": "10.20.0.254",
                "ipv6": "fd00:20::1", "masklen6": "64",
                "neigh": "10.20.0.9|12:34:56:78:9a:bd;fd00:20::9|12:34:56:78:9a:be"
            }]
        }"#,
    )
    .map_err(s)?;
    lkl_boot::apply(&cfg, &[1]).map_err(s)?;
    let mut nl = nl()?;
    ensure!(nl.link(1).map_err(s)?.mtu == Some(9000), "mtu not 9000");
    let rules = nl.rules(AF_INET).map_err(s)?;
    ensure!(
        rules
            .iter()
            .any(|r| r.table == 2 && r.src == Some((ip("10.20.0.1"), 32))),
        "no rule from 10.20.0.1 lookup 2: {rules:?}"
    );
    let routes = nl.routes(AF_INET).map_err(s)?;
    ensure!(
        routes.iter().any(|r| r.table == 2
            && r.dst == Some((ip("10.20.0.0"), 16))
            && r.oif == Some(1)
            && r.scope == sys::LKL_RT_SCOPE_LINK as u8),
        "no subnet route in table 2: {routes:?}"
    );
    ensure!(
        routes
            .iter()
            .any(|r| r.table == 2 && r.dst.is_none() && r.gateway == Some(ip("10.20.0.254"))),
        "no default route in table 2: {routes:?}"
    );
    ensure!(
        routes.iter().any(|r| r.table == sys::LKL_RT_TABLE_MAIN
            && r.dst.is_none()
            && r.gateway == Some(ip("10.20.0.254"))),
        "gateway not in main: {routes:?}"
    );
    let addrs = nl.addresses(AF_INET6).map_err(s)?;
    ensure!(
        addrs.iter().any(|a| a.addr == ip("fd00:20::1")
            && a.prefix_len == 64
            && a.flags & sys::LKL_IFA_F_TENTATIVE == 0),
        "fd00:20::1/64 not ready: {addrs:?}"
    );
    let n = nl.neighbors(0).map_err(s)?;
    // (the IPv4 one keyed 0.0.0.0 on lo, see lkl-net's neighbour())
    for want in [
        [0x12, 0x34, 0x56, 0x78, 0x9a, 0xbd],
        [0x12, 0x34, 0x56, 0x78, 0x9a, 0xbe],
    ] {
        ensure!(
            n.iter().any(|e| e.mac == Some(want)),
            "neighbour {want:x?} not in {n:?}"
        );
    }
    ensure!(
        n.iter().any(|e| e.ip == ip("fd00:20::9")),
        "fd00:20::9 not in {n:?}"
    );
    ensure!(
        lkl::stat("/sysfs/class/net/lo").is_ok(),
        "sysfs not mounted at /sysfs"
    );
    ensure!(
        lkl_net::sysctl_read("net.core.somaxconn").map_err(s)? == "1000",
        "somaxconn not set"
    );
    ensure!(
        lkl_net::read_file("/etc/resolv.conf").map_err(s)? == b"nameserver 9.9.9.9\n",
        "resolv.conf not written"
    );
    // Applying it again: the first step that fails is named by its key.
    let e = refused(lkl_boot::apply(&cfg, &[1]), "lkl_boot::apply(&cfg, &[1])")?.to_string();
    ensure!(
        e.starts_with(
            "interfaces[0].ip: add address 10.20.0.1/16 to interface 1: the kernel refused: EEXIST"
        ),
        "{e}"
    );
    let e = refused(lkl_boot::apply(&cfg, &[]), "lkl_boot::apply(&cfg, &[])")?.to_string();
    ensure!(e.contains("1 interfaces but 0 ifindexes"), "{e}");
    Ok(())
}

fn main() -> ExitCode {
    let mut report = Report::default();
    report.case("memory_refused", memory_refused());
    let cfg = Config::from_json("{}").expect("the empty configuration parses");
    match lkl_boot::start(&cfg) {
        Ok(booted) => {
            report.case("start", started(&booted));
            report.case("apply_config", apply_config());
            report.case("halt", booted.kernel.halt().map_err(s));
        }
        Err(e) => report.case("start", Err(e.to_string())),
    }
    report.finish()
}
