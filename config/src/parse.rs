//! Parsers for single values, each returning the reason a value is refused
//! (the caller adds the key and the value).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// An Ethernet (MAC) address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MacAddr(pub [u8; 6]);

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl FromStr for MacAddr {
    type Err = String;

    /// Six groups of one or two hex digits separated by `:`
    /// (`12:34:56:78:9a:bc`), as upstream reads them.
    fn from_str(s: &str) -> Result<Self, String> {
        const FIX: &str = "is not a MAC address: write six hex bytes separated by ':', e.g. \"12:34:56:78:9a:bc\"";
        let mut out = [0u8; 6];
        let mut parts = s.split(':');
        for byte in &mut out {
            let part = parts.next().ok_or(FIX)?;
            if part.is_empty() || part.len() > 2 || !part.bytes().all(|c| c.is_ascii_hexdigit()) {
                return Err(FIX.into());
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| FIX)?;
        }
        if parts.next().is_some() {
            return Err(FIX.into());
        }
        Ok(MacAddr(out))
    }
}

/// A device's own MAC (`mac`): unicast and not all zeros, which the kernel
/// would refuse (or, for all zeros, replace by a random one).
pub fn device_mac(s: &str) -> Result<MacAddr, String> {
    let mac: MacAddr = s.trim().parse()?;
    if mac.0 == [0; 6] {
        return Err(
            "is all zeros, which no device may have: write a unicast address, e.g. \"02:00:00:00:00:01\" (a locally administered one: first byte 02)"
                .into(),
        );
    }
    if mac.0[0] & 1 != 0 {
        return Err(format!(
            "is a multicast address (the first byte, {:#04x}, is odd), which no device may have: write a unicast address, e.g. \"{:02x}:{}\" (first byte even; 02 for a locally administered one)",
            mac.0[0],
            (mac.0[0] & !1) | 2,
            &mac.to_string()[3..]
        ));
    }
    Ok(mac)
}

/// The digits of `s` and their radix, as C's `strtoul(s, NULL, 0)` and the
/// kernel's `memparse` tell them: `0x`/`0X` hex, a leading `0` octal, else
/// decimal.
pub fn c_radix(s: &str) -> (&str, u32) {
    if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        (h, 16)
    } else if s.len() > 1 && s.starts_with('0') {
        (&s[1..], 8)
    } else {
        (s, 10)
    }
}

/// A number the way C's `strtoul(s, NULL, 0)` reads it (upstream's
/// `debug` and `offload`): `0x` hex, a leading `0` octal, else decimal;
/// unlike strtoul, trailing garbage and signs are refused.
pub fn c_number(s: &str) -> Result<u64, String> {
    let (digits, radix) = c_radix(s.trim());
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return Err(
            "is not a number: write decimal (\"256\"), hex (\"0x100\") or octal (\"0400\")".into(),
        );
    }
    u64::from_str_radix(digits, radix).map_err(|_| "is too large".into())
}

/// A bit mask of at most 32 bits (`debug`, `offload`).
pub fn mask32(s: &str) -> Result<u32, String> {
    let n = c_number(s)?;
    u32::try_from(n).map_err(|_| "does not fit in 32 bits (at most 0xffffffff)".into())
}

/// A decimal number in `lo..=hi`; `what` names it in the message.
pub fn decimal_in(s: &str, lo: u64, hi: u64, what: &str) -> Result<u64, String> {
    let t = s.trim();
    let bad = || format!("is not {what} ({lo}-{hi})");
    if t.is_empty() || !t.bytes().all(|c| c.is_ascii_digit()) {
        return Err(bad());
    }
    match t.parse::<u64>() {
        Ok(n) if (lo..=hi).contains(&n) => Ok(n),
        _ => Err(bad()),
    }
}

pub fn ipv4(s: &str) -> Result<Ipv4Addr, String> {
    s.trim().parse().map_err(|_| {
        "is not an IPv4 address: write four decimal bytes, e.g. \"192.168.0.1\"".into()
    })
}

pub fn ipv6(s: &str) -> Result<Ipv6Addr, String> {
    s.trim()
        .parse()
        .map_err(|_| "is not an IPv6 address: write it like \"2001:db8::1\"".into())
}

pub fn ip(s: &str) -> Result<IpAddr, String> {
    s.trim().parse().map_err(|_| {
        "is not an IPv4 or IPv6 address: write e.g. \"8.8.8.8\" or \"2001:4860:4860::8888\"".into()
    })
}

/// Splits `s` at `sep`, trims each entry and drops empty ones (a trailing
/// separator is fine, as with strtok).
pub fn entries(s: &str, sep: char) -> impl Iterator<Item = &str> {
    s.split(sep).map(str::trim).filter(|e| !e.is_empty())
}

/// A sysctl key (`net.ipv4.tcp_wmem`, or `net/ipv4/tcp_wmem`).
pub fn sysctl_key(key: &str) -> Result<(), String> {
    let ok = !key.is_empty()
        && !key.starts_with(['.', '/'])
        && !key.ends_with(['.', '/'])
        && key
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"._-/".contains(&c))
        && !key.contains("..")
        && !key.contains("//");
    if ok {
        Ok(())
    } else {
        Err(format!(
            "has a bad key {key:?}: write dotted names under /proc/sys, e.g. \"net.ipv4.tcp_wmem=4096 87380 2147483647\""
        ))
    }
}

/// A name usable as one path component (file system types, qdisc kinds).
pub fn word(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-')
}

/// A disk's `path`: absolute and normalized (`/`, or `/a/b`: no `.` or `..`
/// component, no empty one, no trailing `/`), at most 1024 bytes, no NUL.
pub fn disk_path(s: &str) -> Result<std::path::PathBuf, String> {
    let fix = "write an absolute, normalized path such as \"/mnt/disk\" (or \"/\" for the root)";
    if !s.starts_with('/') {
        return Err(format!("is not an absolute path: {fix}"));
    }
    if s.len() > 1024 || s.contains('\0') {
        return Err(format!("is too long or holds a NUL: {fix}"));
    }
    if s != "/" {
        for c in s[1..].split('/') {
            let what = match c {
                "" => "an empty component (a doubled or trailing '/')",
                "." => "a '.' component",
                ".." => "a '..' component",
                _ => continue,
            };
            return Err(format!("has {what}: {fix}"));
        }
    }
    Ok(s.into())
}

/// A host interface name: 1 to 15 bytes, no `/`, `:` or white space.
pub fn ifname(s: &str) -> bool {
    !s.is_empty()
        && s.len() < 16
        && s != "."
        && s != ".."
        && s.bytes()
            .all(|c| c.is_ascii_graphic() && c != b'/' && c != b':')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_like_strtoul() {
        assert_eq!(c_number("0x100"), Ok(256));
        assert_eq!(c_number("0XC803"), Ok(0xc803));
        assert_eq!(c_number("010"), Ok(8));
        assert_eq!(c_number("0"), Ok(0));
        assert_eq!(c_number(" 12 "), Ok(12));
        for bad in ["", "0x", "-1", "1e3", "08", "12abc", "+1"] {
            assert!(c_number(bad).is_err(), "{bad:?}");
        }
        assert!(mask32("0x100000000").is_err());
        assert_eq!(mask32("0xffffffff"), Ok(u32::MAX));
    }

    #[test]
    fn macs() {
        assert_eq!(
            "12:34:56:78:9a:BC".parse::<MacAddr>(),
            Ok(MacAddr([0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc]))
        );
        assert_eq!(
            "0:1:2:3:4:5".parse::<MacAddr>(),
            Ok(MacAddr([0, 1, 2, 3, 4, 5]))
        );
        for bad in [
            "",
            "12:34:56:78:9a",
            "12:34:56:78:9a:bc:de",
            "123:4:5:6:7:8",
            "g0:1:2:3:4:5",
            "12-34-56-78-9a-bc",
            "12:34:56:78:9a:",
        ] {
            assert!(bad.parse::<MacAddr>().is_err(), "{bad:?}");
        }
        assert_eq!(
            MacAddr([0xaa, 0, 1, 2, 3, 0xff]).to_string(),
            "aa:00:01:02:03:ff"
        );
    }

    #[test]
    fn device_macs() {
        assert_eq!(
            device_mac("02:11:22:33:44:55"),
            Ok(MacAddr([2, 0x11, 0x22, 0x33, 0x44, 0x55]))
        );
        let zero = device_mac("00:00:00:00:00:00").unwrap_err();
        assert!(zero.starts_with("is all zeros"), "{zero}");
        let multi = device_mac("01:00:5e:00:00:01").unwrap_err();
        assert!(
            multi.contains("multicast") && multi.contains("\"02:00:5e:00:00:01\""),
            "{multi}"
        );
        assert!(device_mac("ff:ff:ff:ff:ff:ff")
            .unwrap_err()
            .contains("multicast"));
        assert!(device_mac("12:34:zz").unwrap_err().contains("is not a MAC"));
    }

    #[test]
    fn ranges_and_names() {
        assert_eq!(decimal_in("24", 0, 32, "x"), Ok(24));
        assert_eq!(
            decimal_in("33", 0, 32, "a prefix length"),
            Err("is not a prefix length (0-32)".into())
        );
        assert!(decimal_in("-1", 0, 32, "x").is_err());
        assert!(sysctl_key("net.ipv4.tcp_wmem").is_ok());
        assert!(sysctl_key("net/ipv4/conf/all/forwarding").is_ok());
        for bad in ["", "../etc", "net..x", "/net", "a b", "net."] {
            assert!(sysctl_key(bad).is_err(), "{bad:?}");
        }
        assert!(ifname("tap0") && !ifname("") && !ifname("a/b") && !ifname("0123456789abcdef"));
        assert_eq!(entries(" a ; ;b;", ';').collect::<Vec<_>>(), ["a", "b"]);
    }
}
