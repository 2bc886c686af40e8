//! A time-bounded fuzzing pass over the hijack configuration: mutated JSON
//! files and `LKL_HIJACK_*` values, fed to the parser in this process and
//! to real boots of `/bin/true` under `lkl-hijack.sh` and under
//! `lkl-run --zpoline --config`, in a network namespace made here (tap
//! `lkltap0`, 198.18.0.1/24).
//!
//! Each input is a valid seed with one or two mutations, each of which
//! says what must happen:
//!
//! - a value known to be wrong for its key, a JSON type upstream does not
//!   take (boolean, array, object), a broken or empty file: the parser
//!   refuses it, and the program does not run (exit status 1, one line
//!   naming the problem);
//! - a `boot_cmdline` the kernel or the host cannot boot with (`mem=1K`,
//!   `mem=100T`): the program does not run;
//! - an unknown key only: a warning naming it, and the program runs (as
//!   upstream's README says);
//! - random bytes changed (in the file, or in a variable's value):
//!   whatever the parser says, the run agrees (a refused input never
//!   exits 0).
//!
//! Always: no panic, no death by a signal, no hang (each run has
//! [`RUN_LIMIT`]). `LKL_CONFIG_FUZZ_SECS` bounds the pass (default 30),
//! `LKL_CONFIG_FUZZ_SEED` replays one (the seed is printed). Prints
//! `N passed, N failed` like the other end-to-end tests; a failure names
//! the input, which is kept in the report.

use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};

use lkl_hijack_config::{Sources, UnknownKeys, INTERFACE_VARS, TOP_VARS};
use lkl_test_support::{cargo_build, wait_deadline, workspace, Netns, Report, TempDir};

/// One run may take this long (a boot with a tap takes well under 1 s).
const RUN_LIMIT: Duration = Duration::from_secs(20);
const TAP: &str = "lkltap0";

/// xorshift64*: reproducible from the printed seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[self.below(v.len())]
    }
}

/// Values each key must refuse.
const WRONG: &[(&str, &[&str])] = &[
    ("gateway", &["300.1.1.1", "::1", "abc", ""]),
    ("gateway6", &["1.2.3.4", "fe80::zz", "x"]),
    ("debug", &["0x1g", "-1", "0x100000000", "1e3"]),
    ("singlecpu", &["3", "x", "-1"]),
    ("sysctl", &["noequals", "../x=1", "a b=1"]),
    ("mount", &["proc,/x", "a b", "../proc"]),
    (
        "delay_main",
        &[
            "-1",
            "3600000001",
            "18446744073709551615",
            "1.5",
            "99999999999999999999999",
        ],
    ),
    ("nameserver", &["dns.google", "1.2.3", "x"]),
    ("type", &["tun", "vde", "", "TAP0"]),
    ("param", &["", "a/b", "0123456789abcdef"]),
    ("mtu", &["67", "65536", "x", "-1500", "4294967297"]),
    ("ip", &["10.0.0.256", "1.2.3", "::1"]),
    ("masklen", &["33", "-1", "x", "240"]),
    (
        "mac",
        &[
            "01:00:5e:00:00:01",
            "00:00:00:00:00:00",
            "12:34",
            "ff:ff:ff:ff:ff:ff",
            "12:34:56:78:9a:bc:de",
            "zz:zz:zz:zz:zz:zz",
        ],
    ),
    ("neigh", &["10.0.0.1", "10.0.0.1|zz", "x|02:00:00:00:00:01"]),
    ("qdisc", &["eth0|fq", "root", "root|a b"]),
    ("offload", &["0x1g", "0x100000000", "-1"]),
    ("ifgateway", &["x", "::1"]),
];

/// `boot_cmdline`s the parser takes but the kernel or host refuses.
const UNBOOTABLE: &[&str] = &["mem=1K", "mem=100T", "mem=16E"];

/// Arbitrary text for random byte changes.
const NOISE: &[u8] = b"{}[],:\"\\ 0123456789abcdefx.-|;/\n\t";

/// The valid seeds: every key, values that boot quickly.
fn seeds() -> Vec<String> {
    let iface = format!(
        r#"{{"type": "tap", "param": "{TAP}", "mac": "02:11:22:33:44:55", "mtu": "1400",
    "ip": "198.18.0.2", "masklen": "24", "ifgateway": "198.18.0.1",
    "neigh": "198.18.0.9|02:00:00:00:00:09", "qdisc": "root|fq", "offload": "0xc803"}}"#
    );
    vec![
        format!(
            r#"{{"gateway": "198.18.0.1", "debug": "0", "singlecpu": "1",
  "sysctl": "net.ipv4.ip_forward=1", "boot_cmdline": "mem=48M", "mount": "proc",
  "delay_main": "1000", "nameserver": "198.18.0.53", "dump": "/proc/cmdline",
  "interfaces": [{iface}]}}"#
        ),
        format!(r#"{{"interfaces": [{iface}]}}"#),
        r#"{"boot_cmdline": "mem=32M", "mount": "sysfs", "singlecpu": "2"}"#.to_owned(),
        "{}".to_owned(),
    ]
}

/// What an input must do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    /// The parser refuses it; the program does not run.
    Refused,
    /// The parser takes it; the boot fails; the program does not run.
    NoBoot,
    /// A warning; the program runs.
    Runs,
    /// Anything but a crash, a hang or a refused input that exits 0.
    Any,
}

impl Expect {
    /// Two mutations: the stronger claim wins.
    fn and(self, other: Expect) -> Expect {
        use Expect::*;
        match (self, other) {
            (Refused, _) | (_, Refused) => Refused,
            (Any, _) | (_, Any) => Any,
            (NoBoot, _) | (_, NoBoot) => NoBoot,
            _ => Runs,
        }
    }
}

/// One input: a file (or none) and variables.
#[derive(Clone, Debug)]
struct Input {
    file: Option<String>,
    vars: Vec<(String, String)>,
    expect: Expect,
    what: String,
}

/// The schema's keys `v` has (an unknown key takes any type: it is
/// dropped with a warning).
fn keys_of(v: &serde_json::Value) -> Vec<String> {
    let known = |k: &str| {
        k != "interfaces"
            && (lkl_hijack_config::TOP_KEYS.contains(&k)
                || lkl_hijack_config::INTERFACE_KEYS.contains(&k))
    };
    v.as_object()
        .map(|m| m.keys().filter(|k| known(k)).cloned().collect())
        .unwrap_or_default()
}

/// Mutates a parsed seed once; what must happen, and what was done (the
/// key first).
fn mutate_value(rng: &mut Rng, v: &mut serde_json::Value) -> (Expect, String) {
    use serde_json::Value;
    let iface = v
        .get_mut("interfaces")
        .and_then(|i| i.as_array_mut())
        .filter(|a| !a.is_empty())
        .is_some();
    let target: &mut Value = if iface && rng.below(2) == 0 {
        &mut v["interfaces"][0]
    } else {
        v
    };
    match rng.below(5) {
        // a wrong value for a key (added if absent)
        0 | 1 => {
            let (key, bad) = rng.pick(WRONG);
            let is_iface_key = lkl_hijack_config::INTERFACE_KEYS.contains(key);
            let target = if is_iface_key {
                if !iface {
                    return (Expect::Any, "no interface to spoil".into());
                }
                &mut v["interfaces"][0]
            } else {
                v
            };
            let bad = rng.pick(bad).to_string();
            target[*key] = Value::String(bad.clone());
            (Expect::Refused, format!("{key} = {bad:?}"))
        }
        // a JSON type upstream does not take
        2 => {
            let keys = keys_of(target);
            if keys.is_empty() {
                return (Expect::Any, "no key to retype".into());
            }
            let key = rng.pick(&keys).clone();
            let (val, name) = match rng.below(3) {
                0 => (Value::Bool(true), "true"),
                1 => (Value::Array(vec![Value::String("x".into())]), "[\"x\"]"),
                _ => (serde_json::json!({"a": "b"}), "{\"a\": \"b\"}"),
            };
            target[key.as_str()] = val;
            (Expect::Refused, format!("{key} = {name}"))
        }
        // an unknown key
        3 => {
            let key = format!(
                "{}x",
                rng.pick(&["gatway", "debugg", "colour", "mask_len", "Mtu"])
            );
            target[key.as_str()] = Value::String("1".into());
            (Expect::Runs, format!("unknown key {key:?}"))
        }
        // a boot the kernel or host refuses
        _ => {
            let line = rng.pick(UNBOOTABLE).to_string();
            v["boot_cmdline"] = Value::String(line.clone());
            (Expect::NoBoot, format!("boot_cmdline = {line:?}"))
        }
    }
}

/// Changes 1-3 bytes of `text` (ASCII in, ASCII out).
fn mutate_bytes(rng: &mut Rng, text: &str) -> String {
    let mut b = text.as_bytes().to_vec();
    for _ in 0..1 + rng.below(3) {
        if b.is_empty() {
            break;
        }
        let at = rng.below(b.len());
        let c = *rng.pick(NOISE);
        match rng.below(3) {
            0 => b[at] = c,
            1 => {
                b.remove(at);
            }
            _ => b.insert(at, c),
        }
    }
    String::from_utf8(b).unwrap_or_default()
}

/// A new input.
fn input(rng: &mut Rng, seeds: &[String]) -> Input {
    let seed = rng.pick(seeds).clone();
    match rng.below(10) {
        // the variables instead of a file
        0 | 1 => {
            let mut vars: Vec<(String, String)> = vec![
                ("LKL_HIJACK_NET_IFTYPE".into(), "tap".into()),
                ("LKL_HIJACK_NET_IFPARAMS".into(), TAP.into()),
                ("LKL_HIJACK_NET_IP".into(), "198.18.0.2".into()),
                ("LKL_HIJACK_NET_NETMASK_LEN".into(), "24".into()),
                ("LKL_HIJACK_OFFLOAD".into(), "0xc803".into()),
            ];
            if rng.below(2) == 0 {
                // random bytes in one of the good values
                let i = rng.below(vars.len());
                let value = mutate_bytes(rng, &vars[i].1);
                vars[i].1 = value;
                return Input {
                    what: format!("{}={:?}", vars[i].0, vars[i].1),
                    file: None,
                    vars,
                    expect: Expect::Any,
                };
            }
            let all: Vec<&(&str, &str)> = TOP_VARS.iter().chain(INTERFACE_VARS).collect();
            let wrong: Vec<_> = all
                .iter()
                .filter_map(|(k, var)| WRONG.iter().find(|(w, _)| w == k).map(|(_, v)| (*var, *v)))
                .collect();
            let (var, bad) = rng.pick(&wrong);
            let bad = rng.pick(bad).to_string();
            vars.retain(|(k, _)| k != var);
            vars.push((var.to_string(), bad.clone()));
            Input {
                file: None,
                vars,
                expect: Expect::Refused,
                what: format!("{var}={bad:?}"),
            }
        }
        // an empty file
        2 if rng.below(4) == 0 => Input {
            file: Some(rng.pick(&["", " ", "\n\n", "\t"]).to_string()),
            vars: vec![],
            expect: Expect::Refused,
            what: "an empty file".into(),
        },
        // random bytes
        2 | 3 => Input {
            file: Some(mutate_bytes(rng, &seed)),
            vars: vec![],
            expect: Expect::Any,
            what: "random bytes".into(),
        },
        // one or two structured mutations
        _ => {
            let mut v: serde_json::Value = serde_json::from_str(&seed).unwrap_or_default();
            let (mut expect, mut what) = mutate_value(rng, &mut v);
            if rng.below(3) == 0 {
                let (e, w) = mutate_value(rng, &mut v);
                // the same key again: the second value is the one left
                let key = |s: &str| s.split(' ').next().unwrap_or("").to_owned();
                expect = if key(&w) == key(&what) {
                    e
                } else {
                    expect.and(e)
                };
                what = format!("{what}; {w}");
            }
            Input {
                file: Some(serde_json::to_string_pretty(&v).unwrap_or_default()),
                vars: vec![],
                expect,
                what,
            }
        }
    }
}

/// What the parser says of `input` (with unknown keys as warnings, as the
/// programs read it); a panic is an error.
fn parse(input: &Input, dir: &Path) -> Result<Result<lkl_hijack_config::Loaded, String>, String> {
    let file = dir.join("fuzz.json");
    if let Some(text) = &input.file {
        std::fs::write(&file, text).map_err(|e| e.to_string())?;
    }
    let vars = input.vars.clone();
    let has_file = input.file.is_some();
    let var = move |name: &str| {
        if name == lkl_hijack_config::CONFIG_FILE_VAR {
            return has_file.then(|| "fuzz.json".to_owned());
        }
        vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    };
    std::panic::catch_unwind(|| {
        lkl_hijack_config::load_with(&Sources {
            var: &var,
            dir,
            unknown: UnknownKeys::Warn,
        })
        .map_err(|e| e.to_string())
    })
    .map_err(|_| "the parser panicked".to_owned())
}

struct Env {
    ns: Netns,
    dir: TempDir,
    script: PathBuf,
    lib: PathBuf,
    lkl_run: PathBuf,
}

/// Runs `/bin/true` with `input`, through the hijack library or lkl-run;
/// checks the outcome against `parsed` and the input's claim.
fn check_run(
    env: &Env,
    input: &Input,
    zpoline: bool,
    parsed: &Result<lkl_hijack_config::Loaded, String>,
) -> Result<(), String> {
    let file = env.dir.path().join("fuzz.json");
    let mut c = if zpoline {
        let mut c = env.ns.command(&env.lkl_run);
        c.args(["--zpoline", "--null-guard"]);
        if input.file.is_some() {
            c.arg("--config").arg(&file);
        }
        c.arg("/bin/true");
        c
    } else {
        let mut c = env.ns.command(&env.script);
        c.arg("/bin/true").env("LKL_HIJACK_LIB", &env.lib);
        c
    };
    c.env_remove("LKL_HIJACK_CONFIG_FILE")
        .current_dir(env.dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (var, _) in TOP_VARS.iter().chain(INTERFACE_VARS) {
        c.env_remove(var);
    }
    if input.file.is_some() && !zpoline {
        c.env("LKL_HIJACK_CONFIG_FILE", &file);
    }
    for (k, v) in &input.vars {
        c.env(k, v);
    }
    let how = if zpoline {
        "lkl-run --zpoline"
    } else {
        "lkl-hijack.sh"
    };
    let child = c.spawn().map_err(|e| format!("{how}: {e}"))?;
    let out = wait_deadline(child, RUN_LIMIT, how).map_err(|e| format!("hang: {e}"))?;
    let err = String::from_utf8_lossy(&out.stderr);
    let Some(code) = out.status.code() else {
        return Err(format!("{how} died: {} ({err})", out.status));
    };
    if err.contains("panicked") {
        return Err(format!("{how} panicked: {err}"));
    }
    let refused_by_parser = parsed.is_err();
    let fail = |why: &str| Err(format!("{how}: {why}; status {code}; stderr:\n{err}"));
    if refused_by_parser && code == 0 {
        return fail("the parser refuses the input but the program ran");
    }
    match input.expect {
        Expect::Refused | Expect::NoBoot if code == 0 => fail("wrong input, but the program ran"),
        Expect::Refused | Expect::NoBoot if code != 1 => fail("not exit status 1"),
        Expect::Runs if code != 0 => fail("an unknown key stopped the program"),
        Expect::Runs if !err.contains("warning") || !err.contains("unknown key") => {
            fail("no warning naming the unknown key")
        }
        _ => Ok(()),
    }
}

/// Whether a configuration that parses would keep the program from ending
/// by itself (debug 0x100 pauses, a long delay_main, ip= waits for DHCP).
fn would_wait(loaded: &lkl_hijack_config::Loaded) -> bool {
    let c = &loaded.config;
    c.debug.has(lkl_hijack_config::Debug::PAUSE_AT_EXIT)
        || c.delay_main.is_some_and(|d| d > Duration::from_secs(2))
        || c.boot_cmdline
            .split_whitespace()
            .any(|w| w.starts_with("ip="))
}

fn main() -> ExitCode {
    let mut report = Report::default();
    let secs: u64 = std::env::var("LKL_CONFIG_FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    let seed: u64 = std::env::var("LKL_CONFIG_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
                | 1
        });
    println!("config fuzz: {secs} s, LKL_CONFIG_FUZZ_SEED={seed}");
    let env = match setup() {
        Ok(e) => e,
        Err(e) => {
            report.case("setup", Err(e));
            return report.finish();
        }
    };
    let seeds = seeds();
    let mut rng = Rng(seed);

    // The parser alone, for a tenth of the time: many inputs.
    let start = Instant::now();
    let (mut parsed, mut failures) = (0, Vec::new());
    while start.elapsed() < Duration::from_secs(secs) / 10 {
        let inp = input(&mut rng, &seeds);
        parsed += 1;
        match parse(&inp, env.dir.path()) {
            Err(e) => failures.push(format!("{}: {e}: {:?}", inp.what, inp.file)),
            Ok(Ok(_)) if inp.expect == Expect::Refused => failures.push(format!(
                "{}: accepted: {:?} {:?}",
                inp.what, inp.file, inp.vars
            )),
            Ok(Err(_)) if matches!(inp.expect, Expect::Runs | Expect::NoBoot) => {
                failures.push(format!("{}: refused: {:?}", inp.what, inp.file))
            }
            _ => {}
        }
    }
    report.case(
        &format!("parser: {parsed} mutated inputs, no panic, wrong ones refused"),
        if failures.is_empty() {
            Ok(())
        } else {
            Err(failures.join("\n"))
        },
    );

    // Real runs for the rest, taking turns between the two ways in.
    let (mut runs, mut booted, mut failures, mut skipped) = (0, 0, Vec::new(), 0);
    while start.elapsed() < Duration::from_secs(secs) {
        let inp = input(&mut rng, &seeds);
        let parsed = match parse(&inp, env.dir.path()) {
            Ok(p) => p,
            Err(e) => {
                failures.push(format!("{}: {e}", inp.what));
                continue;
            }
        };
        if parsed.as_ref().is_ok_and(would_wait) {
            skipped += 1;
            continue;
        }
        let zpoline = runs % 2 == 1;
        runs += 1;
        booted += usize::from(parsed.is_ok());
        if let Err(e) = check_run(&env, &inp, zpoline, &parsed) {
            failures.push(format!(
                "input {} ({:?}), file {:?}, vars {:?}: {e}",
                inp.what, inp.expect, inp.file, inp.vars
            ));
        }
    }
    report.case(
        &format!(
            "{runs} runs of /bin/true ({booted} past the parser, {skipped} inputs that wait by design skipped): \
             no crash, no hang, no exit 0 on wrong input"
        ),
        if failures.is_empty() { Ok(()) } else { Err(failures.join("\n")) },
    );
    report.finish()
}

fn setup() -> Result<Env, String> {
    lkl_test_support::require_root("network namespaces and taps")?;
    let release = cargo_build("lkl-hijack")?;
    let lkl_run = cargo_build("loader")?.join("lkl-run");
    let lib = release.join("liblkl_hijack.so");
    let ns = Netns::new("lklfz")?;
    ns.add_tap(TAP, &["198.18.0.1/24"])?;
    Ok(Env {
        ns,
        dir: TempDir::new("lklfz")?,
        script: workspace().join("bin/lkl-hijack.sh"),
        lib,
        lkl_run,
    })
}
