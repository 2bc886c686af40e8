//! `mem=` in `boot_cmdline` against the host's memory, checked before the
//! kernel boots: the kernel takes its whole memory from the host in one
//! block, and a size the host cannot give would stop the boot.

use std::fmt;

/// What the host can give, read from `/proc/meminfo`,
/// `vm.overcommit_memory` and this process's memory cgroup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostMemory {
    /// `MemTotal + SwapTotal`, or with strict overcommit (mode 2)
    /// `CommitLimit - Committed_AS`, or a lower cgroup limit.
    pub bytes: u64,
    /// Whether `bytes` is the strict-overcommit room left.
    pub strict: bool,
    /// The limit file when a memory cgroup limit is what binds.
    pub cgroup: Option<String>,
}

impl HostMemory {
    /// Reads the host's figures; `None` if `/proc/meminfo` cannot be read.
    pub fn read() -> Option<HostMemory> {
        let info = std::fs::read_to_string("/proc/meminfo").ok()?;
        let mode = std::fs::read_to_string("/proc/sys/vm/overcommit_memory").unwrap_or_default();
        let mut host = HostMemory::parse(&info, mode.trim() == "2")?;
        let cgroups = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
        if let Some((file, limit)) = cgroup_limit(&cgroups, |p| std::fs::read_to_string(p).ok()) {
            if limit < host.bytes {
                host = HostMemory {
                    bytes: limit,
                    strict: false,
                    cgroup: Some(file),
                };
            }
        }
        Some(host)
    }

    /// [`HostMemory::read`] from the text of `/proc/meminfo`.
    pub fn parse(meminfo: &str, strict: bool) -> Option<HostMemory> {
        let field = |name: &str| -> Option<u64> {
            meminfo.lines().find_map(|l| {
                let rest = l.strip_prefix(name)?.strip_prefix(':')?;
                let kib: u64 = rest.trim().trim_end_matches("kB").trim().parse().ok()?;
                Some(kib << 10)
            })
        };
        let bytes = if strict {
            field("CommitLimit")?.saturating_sub(field("Committed_AS").unwrap_or(0))
        } else {
            field("MemTotal")? + field("SwapTotal").unwrap_or(0)
        };
        Some(HostMemory {
            bytes,
            strict,
            cgroup: None,
        })
    }
}

/// The lowest memory limit of this process's cgroup and its ancestors, from
/// the text of `/proc/self/cgroup`: cgroup v2's `memory.max` (line `0::PATH`)
/// or v1's `memory.limit_in_bytes` (line `N:memory:PATH`), read through
/// `read`. Returns the file and the limit; `None` when nothing limits.
fn cgroup_limit(cgroups: &str, read: impl Fn(&str) -> Option<String>) -> Option<(String, u64)> {
    let mut best: Option<(String, u64)> = None;
    for line in cgroups.lines() {
        let mut f = line.splitn(3, ':');
        let (Some(_), Some(ctl), Some(path)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        let (base, file) = match ctl {
            "" => ("/sys/fs/cgroup", "memory.max"),
            c if c.split(',').any(|c| c == "memory") => {
                ("/sys/fs/cgroup/memory", "memory.limit_in_bytes")
            }
            _ => continue,
        };
        let mut dir = path.trim_end_matches('/').to_owned();
        loop {
            let p = format!("{base}{dir}/{file}");
            // "max" (v2) does not parse: no limit there.
            if let Some(n) = read(&p).and_then(|t| t.trim().parse::<u64>().ok()) {
                if best.as_ref().is_none_or(|(_, b)| n < *b) {
                    best = Some((p, n));
                }
            }
            match dir.rfind('/') {
                Some(i) => dir.truncate(i),
                None => break,
            }
        }
    }
    best
}

impl fmt::Display for HostMemory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(file) = &self.cgroup {
            write!(
                f,
                "lets this process have {} (its memory cgroup's limit, {file})",
                Size(self.bytes)
            )
        } else if self.strict {
            write!(
                f,
                "can commit only {} more (vm.overcommit_memory=2: CommitLimit - Committed_AS in /proc/meminfo)",
                Size(self.bytes)
            )
        } else {
            write!(
                f,
                "has {} of memory and swap (MemTotal + SwapTotal in /proc/meminfo)",
                Size(self.bytes)
            )
        }
    }
}

/// A byte count in the largest unit that keeps it at least 1 (`7.8 GiB`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Size(pub u64);

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
        let mut v = self.0 as f64;
        let mut unit = 0;
        while v >= 1024.0 && unit + 1 < UNITS.len() {
            v /= 1024.0;
            unit += 1;
        }
        if unit == 0 || v.fract() == 0.0 {
            write!(f, "{v:.0} {}", UNITS[unit])
        } else {
            write!(f, "{v:.1} {}", UNITS[unit])
        }
    }
}

/// The memory the last `mem=` of `cmdline` asks for (the kernel takes the
/// last one), read as the kernel's `memparse` does: a number (`0x` hex, a
/// leading `0` octal, else decimal) and an optional `K`, `M`, `G`, `T`, `P`
/// or `E` suffix. Returns the word and the bytes; `None` without a `mem=`
/// or when it does not parse (the kernel then refuses it itself).
pub fn mem_param(cmdline: &str) -> Option<(&str, u64)> {
    let word = cmdline
        .split_ascii_whitespace()
        .rfind(|w| w.starts_with("mem="))?;
    let v = &word[4..];
    let (digits, radix) = lkl_hijack_config::c_radix(v);
    let end = digits
        .find(|c: char| !c.is_digit(radix))
        .unwrap_or(digits.len());
    let n = u64::from_str_radix(&digits[..end], radix).ok()?;
    let shift = match digits[end..].chars().next().map(|c| c.to_ascii_uppercase()) {
        Some('K') => 10,
        Some('M') => 20,
        Some('G') => 30,
        Some('T') => 40,
        Some('P') => 50,
        Some('E') => 60,
        _ => 0,
    };
    Some((
        word,
        n.checked_shl(shift)
            .filter(|b| b >> shift == n)
            .unwrap_or(u64::MAX),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mem_params_like_memparse() {
        assert_eq!(mem_param("ip=dhcp mem=100G"), Some(("mem=100G", 100 << 30)));
        assert_eq!(mem_param("mem=1G mem=48M x"), Some(("mem=48M", 48 << 20)));
        assert_eq!(
            mem_param("mem=0x1000k"),
            Some(("mem=0x1000k", 0x1000 << 10))
        );
        assert_eq!(mem_param("mem=65536"), Some(("mem=65536", 65536)));
        assert_eq!(
            mem_param("mem=99999999E"),
            Some(("mem=99999999E", u64::MAX))
        );
        assert_eq!(mem_param("lkl_mem=1G"), None);
        assert_eq!(mem_param("mem=abc"), None);
        assert_eq!(mem_param(""), None);
    }

    #[test]
    fn cgroup_limits_v1_and_v2() {
        let files = |p: &str| -> Option<String> {
            match p {
                "/sys/fs/cgroup/a/b/memory.max" => Some("max\n".into()),
                "/sys/fs/cgroup/a/memory.max" => Some("2147483648\n".into()),
                "/sys/fs/cgroup/memory/x/memory.limit_in_bytes" => Some("1073741824\n".into()),
                "/sys/fs/cgroup/memory/memory.limit_in_bytes" => {
                    Some("9223372036854771712\n".into())
                }
                _ => None,
            }
        };
        assert_eq!(
            cgroup_limit("0::/a/b\n", files),
            Some(("/sys/fs/cgroup/a/memory.max".into(), 2 << 30))
        );
        assert_eq!(
            cgroup_limit("4:memory:/x\n0::/\n", files),
            Some((
                "/sys/fs/cgroup/memory/x/memory.limit_in_bytes".into(),
                1 << 30
            ))
        );
        assert_eq!(cgroup_limit("0::/\n1:cpu:/x\n", files), None);
    }

    #[test]
    fn host_memory_from_meminfo() {
        let info = "MemTotal:        8000000 kB\nMemFree: 1 kB\nSwapTotal:       1000000 kB\n\
                    CommitLimit:     5000000 kB\nCommitted_AS:    3000000 kB\n";
        let parsed = |strict| HostMemory::parse(info, strict).map(|h| (h.bytes, h.strict));
        assert_eq!(parsed(false), Some((9_000_000 << 10, false)));
        assert_eq!(parsed(true), Some((2_000_000 << 10, true)));
        assert_eq!(HostMemory::parse("", false), None);
        let host = HostMemory {
            bytes: 1 << 30,
            strict: false,
            cgroup: Some("/sys/fs/cgroup/a/memory.max".into()),
        };
        assert_eq!(
            host.to_string(),
            "lets this process have 1 GiB (its memory cgroup's limit, /sys/fs/cgroup/a/memory.max)"
        );
        assert_eq!(Size(100 << 30).to_string(), "100 GiB");
        assert_eq!(Size(8_000_000 << 10).to_string(), "7.6 GiB");
        assert_eq!(Size(512).to_string(), "512 B");
    }
}
