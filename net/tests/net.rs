//! lkl-net against a real kernel: boots LKL once (one kernel per process),
//! runs each case in order on `lo` (the only interface without virtio
//! devices), reads back what each helper did, and prints
//! `N passed, N failed`.

use std::process::ExitCode;

use lkl_net::{Rtnl, AF_INET, AF_INET6};
use lkl_sys as sys;

#[macro_use]
mod common;
use common::{ip, nl, refused, s, Outcome};

/// `lo` is interface 1, found by name; an unknown name is a clear error.
fn lookup() -> Outcome {
    ensure!(
        lkl_net::ifindex("lo").map_err(s)? == 1,
        "lo is not ifindex 1"
    );
    let e = refused(lkl_net::ifindex("nope0"), "lkl_net::ifindex('nope0')")?;
    ensure!(
        matches!(e, lkl_net::Error::NoSuchInterface { .. }),
        "unknown name gave {e:?}"
    );
    ensure!(
        e.to_string() == "no interface named \"nope0\" inside LKL",
        "{e}"
    );
    let links = nl()?.links().map_err(s)?;
    ensure!(
        links.iter().any(|l| l.name == "lo" && l.index == 1),
        "lo not in the link dump: {links:?}"
    );
    Ok(())
}

/// Down and up again, read back from the link's flags.
fn up_down() -> Outcome {
    let mut nl = nl()?;
    nl.set_up(1, false).map_err(s)?;
    ensure!(
        !nl.link(1).map_err(s)?.is_up(),
        "lo still up after set_up(false)"
    );
    nl.set_up(1, true).map_err(s)?;
    ensure!(
        nl.link(1).map_err(s)?.is_up(),
        "lo not up after set_up(true)"
    );
    Ok(())
}

/// MTU set and read back; an impossible MTU is refused with the errno.
fn mtu() -> Outcome {
    let mut nl = nl()?;
    nl.set_mtu(1, 1500).map_err(s)?;
    let got = nl.link(1).map_err(s)?.mtu;
    ensure!(got == Some(1500), "lo mtu {got:?}, expected 1500");
    let e = refused(nl.set_mtu(9999, 1500), "set_mtu on ifindex 9999")?;
    ensure!(
        e.errno() == Some(lkl::Errno::ENODEV),
        "mtu on a missing interface gave {e}"
    );
    nl.set_mtu(1, 65536).map_err(s)?;
    Ok(())
}

/// MAC set on lo and read back; an all-zero MAC is refused.
fn mac() -> Outcome {
    let mut nl = nl()?;
    let old = nl
        .link(1)
        .map_err(s)?
        .mac
        .ok_or("lo has no 6-byte address")?;
    nl.set_mac(1, [2, 0, 0, 0, 0, 1]).map_err(s)?;
    let got = nl.link(1).map_err(s)?.mac;
    ensure!(
        got == Some([2, 0, 0, 0, 0, 1]),
        "lo's MAC reads back {got:?}"
    );
    // lo started with 00:00:00:00:00:00, which the kernel will not take
    // back (EADDRNOTAVAIL): leave the new one.
    let e = refused(nl.set_mac(1, old), "set_mac back to all zeros")?;
    ensure!(
        e.errno() == Some(lkl::Errno::EADDRNOTAVAIL),
        "zero MAC gave {e}"
    );
    Ok(())
}

/// IPv4 address added, read back by RTM_GETADDR; a second add is EEXIST.
fn addr_v4() -> Outcome {
    let mut nl = nl()?;
    nl.add_addr(1, ip("10.11.12.13"), 24, false).map_err(s)?;
    let addrs = nl.addresses(AF_INET).map_err(s)?;
    ensure!(
        addrs
            .iter()
            .any(|a| a.ifindex == 1 && a.addr == ip("10.11.12.13") && a.prefix_len == 24),
        "10.11.12.13/24 not in {addrs:?}"
    );
    let e = refused(
        nl.add_addr(1, ip("10.11.12.13"), 24, false),
        "nl.add_addr(1, ip('10.11.12.13'), 24, false)",
    )?;
    ensure!(e.errno() == Some(lkl::Errno::EEXIST), "second add gave {e}");
    ensure!(
        e.to_string()
            .starts_with("add address 10.11.12.13/24 to interface 1: the kernel refused: EEXIST"),
        "{e}"
    );
    Ok(())
}

/// IPv6 addresses (one waiting for DAD, one with IFA_F_NODAD), read back by
/// RTM_GETADDR and /proc/net/if_inet6.
fn addr_v6() -> Outcome {
    let mut nl = nl()?;
    nl.add_addr(1, ip("2001:db8:1::1"), 64, false).map_err(s)?;
    nl.wait_dad(
        1,
        "2001:db8:1::1".parse().unwrap(),
        std::time::Duration::from_secs(5),
    )
    .map_err(s)?;
    nl.add_addr(1, ip("2001:db8:2::1"), 64, true).map_err(s)?;
    let addrs = nl.addresses(AF_INET6).map_err(s)?;
    for want in ["2001:db8:1::1", "2001:db8:2::1"] {
        ensure!(
            addrs
                .iter()
                .any(|a| a.ifindex == 1 && a.addr == ip(want) && a.prefix_len == 64),
            "{want}/64 not in {addrs:?}"
        );
    }
    let nodad = addrs
        .iter()
        .find(|a| a.addr == ip("2001:db8:2::1"))
        .unwrap();
    ensure!(
        nodad.flags & sys::LKL_IFA_F_NODAD != 0,
        "IFA_F_NODAD not set: {:#x}",
        nodad.flags
    );
    lkl_net::ensure_proc().map_err(s)?;
    let text =
        String::from_utf8(lkl_net::read_file("/proc/net/if_inet6").map_err(s)?).map_err(s)?;
    ensure!(
        text.contains("20010db8000100000000000000000001 01 40"),
        "not in /proc/net/if_inet6:\n{text}"
    );
    Ok(())
}

/// A route and a rule in an explicit table, read back by dumps.
fn route_and_rule() -> Outcome {
    let mut nl = nl()?;
    nl.add_route(
        100,
        Some((ip("10.99.0.7"), 16)),
        Some(ip("10.11.12.1")),
        Some(1),
        sys::LKL_RT_SCOPE_UNIVERSE as u8,
    )
    .map_err(s)?;
    nl.add_rule_from(ip("10.11.12.13"), 100).map_err(s)?;
    nl.add_rule_from(ip("10.11.12.13"), 300).map_err(s)?;
    let routes = nl.routes(AF_INET).map_err(s)?;
    ensure!(
        routes.iter().any(|r| r.table == 100
            && r.dst == Some((ip("10.99.0.0"), 16))
            && r.gateway == Some(ip("10.11.12.1"))
            && r.oif == Some(1)),
        "route not in table 100: {routes:?}"
    );
    let rules = nl.rules(AF_INET).map_err(s)?;
    for t in [100, 300] {
        ensure!(
            rules
                .iter()
                .any(|r| r.table == t && r.src == Some((ip("10.11.12.13"), 32))),
            "rule to table {t} not in {rules:?}"
        );
    }
    Ok(())
}

/// Permanent neighbour entries, read back by RTM_GETNEIGH. On loopback
/// devices the kernel keys every IPv4 neighbour as 0.0.0.0 (arp_tbl's
/// loopback/point-to-point rule), so the IPv4 one is found by its MAC.
fn neighbour() -> Outcome {
    let mut nl = nl()?;
    let mac = [0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc];
    nl.add_neighbor(1, ip("10.11.12.50"), mac).map_err(s)?;
    let n = nl.neighbors(AF_INET).map_err(s)?;
    ensure!(
        n.iter().any(|e| e.ifindex == 1
            && (e.ip == ip("10.11.12.50") || e.ip == ip("0.0.0.0"))
            && e.mac == Some(mac)
            && e.state == sys::LKL_NUD_PERMANENT as u16),
        "IPv4 neighbour not in {n:?}"
    );
    let mac6 = [0x12, 0x34, 0x56, 0x78, 0x9a, 0xbe];
    nl.add_neighbor(1, ip("2001:db8:1::50"), mac6).map_err(s)?;
    let n = nl.neighbors(AF_INET6).map_err(s)?;
    ensure!(
        n.iter().any(|e| e.ifindex == 1
            && e.mac == Some(mac6)
            && e.state == sys::LKL_NUD_PERMANENT as u16),
        "IPv6 neighbour not in {n:?}"
    );
    println!("  (neighbours as the kernel keeps them on lo: {n:?})");
    Ok(())
}

/// upstream's ifgateway6 table (3 for lo) on lo: the rule and the subnet
/// route are made; the default route via a gateway is refused, because
/// the kernel turns IPv6 routes out of a loopback device into reject
/// routes (so no gateway is reachable there). On a real device it works.
fn interface_table_v6_on_lo() -> Outcome {
    let mut nl = nl()?;
    nl.add_addr(1, ip("fd00:30::1"), 64, true).map_err(s)?;
    let e = refused(
        nl.add_interface_table(1, ip("fd00:30::1"), 64, ip("fd00:30::fe")),
        "add_interface_table v6 on lo",
    )?;
    ensure!(
        e.errno() == Some(lkl::Errno::EHOSTUNREACH),
        "gateway step gave {e}"
    );
    ensure!(
        e.to_string()
            .contains("add route default via fd00:30::fe dev 1 table 3"),
        "{e}"
    );
    let rules = nl.rules(AF_INET6).map_err(s)?;
    ensure!(
        rules
            .iter()
            .any(|r| r.table == 3 && r.src == Some((ip("fd00:30::1"), 128))),
        "no rule from fd00:30::1 lookup 3: {rules:?}"
    );
    let routes = nl.routes(AF_INET6).map_err(s)?;
    ensure!(
        routes
            .iter()
            .any(|r| r.table == 3 && r.dst == Some((ip("fd00:30::"), 64))),
        "no subnet route in table 3: {routes:?}"
    );
    Ok(())
}

/// fq as lo's root qdisc, read back by RTM_GETQDISC.
fn qdisc_fq() -> Outcome {
    let mut nl = nl()?;
    nl.add_root_qdisc(1, "fq").map_err(s)?;
    let q = nl.qdiscs().map_err(s)?;
    ensure!(
        q.iter()
            .any(|q| q.ifindex == 1 && q.kind == "fq" && q.parent == sys::LKL_TC_H_ROOT),
        "fq not root on lo: {q:?}"
    );
    let e = refused(
        nl.add_root_qdisc(1, "no_such_qdisc"),
        "nl.add_root_qdisc(1, 'no_such_qdisc')",
    )?;
    ensure!(e.errno().is_some(), "unknown kind gave {e}");
    Ok(())
}

/// sysctl written and read back from /proc/sys.
fn sysctl() -> Outcome {
    lkl_net::sysctl_write("net.ipv4.ip_forward", "1").map_err(s)?;
    let v = lkl_net::sysctl_read("net.ipv4.ip_forward").map_err(s)?;
    ensure!(v == "1", "ip_forward reads {v:?}");
    lkl_net::sysctl_write("net.ipv4.tcp_wmem", "4096 87380 2147483647").map_err(s)?;
    let v = lkl_net::sysctl_read("net/ipv4/tcp_wmem").map_err(s)?;
    ensure!(
        v.split_whitespace().eq(["4096", "87380", "2147483647"]),
        "tcp_wmem reads {v:?}"
    );
    let e = refused(
        lkl_net::sysctl_write("net.ipv4.no_such_knob", "1"),
        "lkl_net::sysctl_write('net.ipv4.no_such_knob', '1')",
    )?;
    ensure!(
        e.errno() == Some(lkl::Errno::ENOENT),
        "unknown key gave {e}"
    );
    Ok(())
}

/// /etc/resolv.conf written inside LKL.
fn resolv_conf() -> Outcome {
    lkl_net::write_resolv_conf(&[ip("8.8.8.8"), ip("2001:4860:4860::8888")]).map_err(s)?;
    let text = lkl_net::read_file("/etc/resolv.conf").map_err(s)?;
    ensure!(
        text == b"nameserver 8.8.8.8\nnameserver 2001:4860:4860::8888\n",
        "resolv.conf is {:?}",
        String::from_utf8_lossy(&text)
    );
    Ok(())
}

type Case = (&'static str, fn() -> Outcome);

const CASES: &[Case] = &[
    ("lookup", lookup),
    ("up_down", up_down),
    ("mtu", mtu),
    ("mac", mac),
    ("addr_v4", addr_v4),
    ("addr_v6", addr_v6),
    ("route_and_rule", route_and_rule),
    ("neighbour", neighbour),
    ("interface_table_v6_on_lo", interface_table_v6_on_lo),
    ("qdisc_fq", qdisc_fq),
    ("sysctl", sysctl),
    ("resolv_conf", resolv_conf),
];

fn main() -> ExitCode {
    // Before boot every helper fails cleanly.
    let mut passed = 0;
    let mut failed = 0;
    let mut report = |name: &str, r: Outcome| match r {
        Ok(()) => {
            passed += 1;
            println!("test net::{name} ... ok");
        }
        Err(e) => {
            failed += 1;
            println!("test net::{name} ... FAILED: {e}");
        }
    };
    let before = Rtnl::open().map(drop).map_err(|e| e.errno());
    report(
        "enosys_before_boot",
        if before == Err(Some(lkl::Errno::ENOSYS)) {
            Ok(())
        } else {
            Err(format!("{before:?}"))
        },
    );
    let kernel = match lkl::boot(&lkl::BootOptions::default()) {
        Ok(k) => k,
        Err(e) => {
            println!("boot failed: {e}");
            println!("0 passed, 1 failed");
            return ExitCode::FAILURE;
        }
    };
    for (name, run) in CASES {
        report(name, run());
    }
    report("halt", kernel.halt().map_err(s));
    println!("{passed} passed, {failed} failed");
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
