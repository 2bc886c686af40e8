//! The configuration as text, before validation: read from JSON (through
//! serde) or from the `LKL_HIJACK_*` variables, and merged the way upstream
//! merges them (the file's keys replace the variables').

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use crate::Error;

/// The top-level keys, in upstream's README order, then ours (`disks`).
pub const TOP_KEYS: &[&str] = &[
    "gateway",
    "gateway6",
    "debug",
    "singlecpu",
    "sysctl",
    "boot_cmdline",
    "mount",
    "interfaces",
    "delay_main",
    "nameserver",
    "dump",
    "disks",
];

/// The keys of one `disks[]` object (ours: `lkl-run --zpoline`'s file systems).
pub const DISK_KEYS: &[&str] = &["image", "path", "readonly", "partition", "type", "options"];

/// A top-level key whose value is an array of objects.
struct ListKey {
    name: &'static str,
    /// The keys of each object.
    keys: &'static [&'static str],
    /// What a type error expects for the array, and for one object.
    array: &'static str,
    object: &'static str,
}

const LIST_KEYS: &[ListKey] = &[
    ListKey {
        name: "interfaces",
        keys: INTERFACE_KEYS,
        array: "an array of objects: [ { \"type\": \"tap\", ... } ]",
        object: "an object: { \"type\": \"tap\", \"param\": \"tap0\", ... }",
    },
    ListKey {
        name: "disks",
        keys: DISK_KEYS,
        array: "an array of objects: [ { \"image\": \"disk.img\", \"path\": \"/mnt/disk\" } ]",
        object: "an object: { \"image\": \"disk.img\", \"path\": \"/mnt/disk\", ... }",
    },
];

/// The keys of one `interfaces[]` object.
pub const INTERFACE_KEYS: &[&str] = &[
    "type",
    "param",
    "mtu",
    "ip",
    "masklen",
    "ifgateway",
    "ipv6",
    "masklen6",
    "ifgateway6",
    "mac",
    "neigh",
    "qdisc",
    "offload",
];

/// The older variables for top-level keys (`LKL_HIJACK_` + name). Upstream
/// has no variable for `delay_main` and `nameserver`; ours reads
/// `LKL_HIJACK_DELAY_MAIN` too, so that every key the library honours has
/// a variable.
pub const TOP_VARS: &[(&str, &str)] = &[
    ("gateway", "LKL_HIJACK_NET_GATEWAY"),
    ("gateway6", "LKL_HIJACK_NET_GATEWAY6"),
    ("debug", "LKL_HIJACK_DEBUG"),
    ("singlecpu", "LKL_HIJACK_SINGLE_CPU"),
    ("sysctl", "LKL_HIJACK_SYSCTL"),
    ("boot_cmdline", "LKL_HIJACK_BOOT_CMDLINE"),
    ("mount", "LKL_HIJACK_MOUNT"),
    ("delay_main", "LKL_HIJACK_DELAY_MAIN"),
    ("dump", "LKL_HIJACK_DUMP"),
];

/// The older variables for the one interface they can describe.
pub const INTERFACE_VARS: &[(&str, &str)] = &[
    ("type", "LKL_HIJACK_NET_IFTYPE"),
    ("param", "LKL_HIJACK_NET_IFPARAMS"),
    ("mtu", "LKL_HIJACK_NET_MTU"),
    ("ip", "LKL_HIJACK_NET_IP"),
    ("masklen", "LKL_HIJACK_NET_NETMASK_LEN"),
    ("ifgateway", "LKL_HIJACK_NET_IFGATEWAY"),
    ("ipv6", "LKL_HIJACK_NET_IPV6"),
    ("masklen6", "LKL_HIJACK_NET_NETMASK6_LEN"),
    ("ifgateway6", "LKL_HIJACK_NET_IFGATEWAY6"),
    ("mac", "LKL_HIJACK_NET_MAC"),
    ("neigh", "LKL_HIJACK_NET_NEIGHBOR"),
    ("qdisc", "LKL_HIJACK_NET_QDISC"),
    ("offload", "LKL_HIJACK_OFFLOAD"),
];

/// The obsolete variable upstream still reads: a tap interface's name.
pub const NET_TAP_VAR: &str = "LKL_HIJACK_NET_TAP";

/// One value and where it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Text {
    pub value: String,
    /// The variable it was read from; `None` for JSON.
    pub var: Option<&'static str>,
}

/// Key to value, for the top level or one interface.
pub type Keys = BTreeMap<&'static str, Text>;

/// A whole configuration as text.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Raw {
    pub top: Keys,
    /// `None` when the source said nothing about interfaces.
    pub interfaces: Option<Vec<Keys>>,
    /// `disks` (only from JSON); `None` when the source said nothing about them.
    pub disks: Option<Vec<Keys>>,
}

impl Raw {
    /// Upstream's merge: every key the file sets replaces the variable's,
    /// and the file's `interfaces` replaces the variables' interface.
    pub fn overlay(mut self, file: Raw) -> Raw {
        self.top.extend(file.top);
        if file.interfaces.is_some() {
            self.interfaces = file.interfaces;
        }
        if file.disks.is_some() {
            self.disks = file.disks;
        }
        self
    }
}

/// A JSON value upstream takes as text: a string, or a number written
/// without quotes (upstream's tokenizer copies either verbatim).
#[derive(Deserialize)]
#[serde(untagged)]
enum Scalar {
    Str(String),
    Num(serde_json::Number),
}

macro_rules! json_struct {
    ($name:ident { $($field:ident => $key:literal),* $(,)? } $(, $extra:ident: $ty:ty)*) => {
        /// The schema as serde sees it; unknown keys are refused (after
        /// the friendlier check in [`check_keys`]).
        #[derive(Deserialize, Default)]
        #[serde(deny_unknown_fields)]
        struct $name {
            $(#[serde(rename = $key)] $field: Option<Scalar>,)*
            $($extra: Option<$ty>,)*
        }

        impl $name {
            fn into_keys(self) -> Keys {
                let mut keys = Keys::new();
                $(
                    if let Some(s) = self.$field {
                        let value = match s {
                            Scalar::Str(s) => s,
                            Scalar::Num(n) => n.to_string(),
                        };
                        keys.insert($key, Text { value, var: None });
                    }
                )*
                keys
            }
        }
    };
}

json_struct!(JsonInterface {
    ty => "type", param => "param", mtu => "mtu", ip => "ip", masklen => "masklen",
    ifgateway => "ifgateway", ipv6 => "ipv6", masklen6 => "masklen6",
    ifgateway6 => "ifgateway6", mac => "mac", neigh => "neigh", qdisc => "qdisc",
    offload => "offload",
});

json_struct!(JsonDisk {
    image => "image", path => "path", readonly => "readonly", partition => "partition",
    ty => "type", options => "options",
});

json_struct!(JsonConfig {
    gateway => "gateway", gateway6 => "gateway6", debug => "debug",
    singlecpu => "singlecpu", sysctl => "sysctl", boot_cmdline => "boot_cmdline",
    mount => "mount", delay_main => "delay_main", nameserver => "nameserver",
    dump => "dump",
}, interfaces: Vec<JsonInterface>, disks: Vec<JsonDisk>);

/// What to do with keys the schema does not have.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum UnknownKeys {
    /// Refuse the file, naming the key and the valid ones (as upstream).
    #[default]
    Error,
    /// Drop the key and report it in the warnings.
    Warn,
}

/// Replaces each comma that only precedes a closing `}` or `]` by a space,
/// outside strings: upstream's tokenizer accepts such commas, and its own
/// README's zpoline example has one. Offsets (so lines and columns of
/// later errors) do not move.
pub fn strip_trailing_commas(text: &str) -> String {
    let mut out = text.as_bytes().to_vec();
    let mut in_string = false;
    let mut escaped = false;
    for i in 0..out.len() {
        let c = out[i];
        if in_string {
            if escaped {
                escaped = false;
            } else if c == b'\\' {
                escaped = true;
            } else if c == b'"' {
                in_string = false;
            }
            continue;
        }
        match c {
            b'"' => in_string = true,
            b',' => {
                let next = out[i + 1..].iter().find(|b| !b.is_ascii_whitespace());
                if matches!(next, Some(b'}') | Some(b']')) {
                    out[i] = b' ';
                }
            }
            _ => {}
        }
    }
    // Only ASCII commas were replaced by ASCII spaces.
    String::from_utf8(out).unwrap_or_else(|_| text.to_owned())
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The closest valid key, if it is a plausible typo.
fn suggest(key: &str, valid: &[&str]) -> String {
    fn distance(a: &str, b: &str) -> usize {
        let b: Vec<char> = b.chars().collect();
        let mut row: Vec<usize> = (0..=b.len()).collect();
        for (i, ca) in a.chars().enumerate() {
            let mut prev = row[0];
            row[0] = i + 1;
            for (j, cb) in b.iter().enumerate() {
                let cur = row[j + 1];
                row[j + 1] = if ca == *cb {
                    prev
                } else {
                    1 + prev.min(cur).min(row[j])
                };
                prev = cur;
            }
        }
        row[b.len()]
    }
    let lower = key.to_ascii_lowercase();
    valid
        .iter()
        .map(|v| (distance(&lower, v), *v))
        .filter(|(d, _)| *d <= 2)
        .min()
        .map(|(_, v)| format!(" (did you mean {v:?}?)"))
        .unwrap_or_default()
}

/// Checks an object's keys and value types; drops unknown keys (with a
/// warning) in [`UnknownKeys::Warn`] mode.
fn check_object(
    map: &mut serde_json::Map<String, Value>,
    valid: &[&str],
    prefix: &str,
    origin: &str,
    unknown: UnknownKeys,
    warnings: &mut Vec<String>,
) -> Result<(), Error> {
    let keys: Vec<String> = map.keys().cloned().collect();
    for k in keys {
        let path = format!("{prefix}{k}");
        if !valid.contains(&k.as_str()) {
            let suggestion = suggest(&k, valid);
            match unknown {
                UnknownKeys::Error => {
                    return Err(Error::UnknownKey {
                        origin: origin.into(),
                        key: path,
                        suggestion,
                        valid: valid.join(", "),
                    })
                }
                UnknownKeys::Warn => {
                    warnings.push(format!(
                        "{origin}: {path}: unknown key{suggestion}, ignored; valid keys here: {}",
                        valid.join(", ")
                    ));
                    map.remove(&k);
                    continue;
                }
            }
        }
        let v = &map[&k];
        let scalar = matches!(v, Value::String(_) | Value::Number(_) | Value::Null);
        let list = prefix.is_empty() && LIST_KEYS.iter().any(|l| l.name == k);
        if !list && !scalar {
            return Err(Error::Type {
                origin: origin.into(),
                key: path,
                expected: "a string (upstream's values are all strings, e.g. \"24\")",
                found: type_name(v),
            });
        }
    }
    Ok(())
}

/// Parses the JSON text of a configuration file. `origin` names it in
/// errors.
pub fn from_json(
    text: &str,
    origin: &str,
    unknown: UnknownKeys,
    warnings: &mut Vec<String>,
) -> Result<Raw, Error> {
    let text = strip_trailing_commas(text);
    let mut value: Value = serde_json::from_str(&text).map_err(|e| Error::Syntax {
        origin: origin.into(),
        line: e.line(),
        column: e.column(),
        message: e
            .to_string()
            .split(" at line ")
            .next()
            .unwrap_or_default()
            .to_owned(),
    })?;
    let Value::Object(top) = &mut value else {
        return Err(Error::Type {
            origin: origin.into(),
            key: "(top level)".into(),
            expected: "an object: { \"gateway\": ..., \"interfaces\": [...] }",
            found: type_name(&value),
        });
    };
    check_object(top, TOP_KEYS, "", origin, unknown, warnings)?;
    for l in LIST_KEYS {
        match top.get_mut(l.name) {
            None | Some(Value::Null) => {}
            Some(Value::Array(list)) => {
                for (i, item) in list.iter_mut().enumerate() {
                    let prefix = format!("{}[{i}].", l.name);
                    match item {
                        Value::Object(map) => {
                            check_object(map, l.keys, &prefix, origin, unknown, warnings)?
                        }
                        other => {
                            return Err(Error::Type {
                                origin: origin.into(),
                                key: format!("{}[{i}]", l.name),
                                expected: l.object,
                                found: type_name(other),
                            })
                        }
                    }
                }
            }
            Some(other) => {
                return Err(Error::Type {
                    origin: origin.into(),
                    key: l.name.into(),
                    expected: l.array,
                    found: type_name(other),
                })
            }
        }
    }
    // Keys and types are checked; serde now only copies the strings.
    let parsed: JsonConfig = serde_json::from_value(value).map_err(|e| Error::Type {
        origin: origin.into(),
        key: e.to_string(),
        expected: "the documented schema",
        found: "something else",
    })?;
    let mut parsed = parsed;
    let interfaces = parsed
        .interfaces
        .take()
        .map(|list| list.into_iter().map(JsonInterface::into_keys).collect());
    let disks = parsed
        .disks
        .take()
        .map(|list| list.into_iter().map(JsonDisk::into_keys).collect());
    Ok(Raw {
        top: parsed.into_keys(),
        interfaces,
        disks,
    })
}

/// Reads the older variables through `get` (the process environment, or a
/// map in tests). Like upstream, they describe an interface only when
/// `LKL_HIJACK_NET_IFTYPE` (or the obsolete `LKL_HIJACK_NET_TAP`) is set.
pub fn from_env(get: &dyn Fn(&str) -> Option<String>, warnings: &mut Vec<String>) -> Raw {
    let mut raw = Raw::default();
    for (key, var) in TOP_VARS {
        if let Some(value) = get(var) {
            raw.top.insert(
                key,
                Text {
                    value,
                    var: Some(var),
                },
            );
        }
    }
    let mut iface = Keys::new();
    for (key, var) in INTERFACE_VARS {
        if let Some(value) = get(var) {
            iface.insert(
                key,
                Text {
                    value,
                    var: Some(var),
                },
            );
        }
    }
    if let Some(tap) = get(NET_TAP_VAR) {
        warnings.push(format!(
            "{NET_TAP_VAR} is obsolete: use LKL_HIJACK_NET_IFTYPE=tap and LKL_HIJACK_NET_IFPARAMS={tap}"
        ));
        if !iface.contains_key("type") {
            iface.insert(
                "type",
                Text {
                    value: "tap".into(),
                    var: Some(NET_TAP_VAR),
                },
            );
            iface.insert(
                "param",
                Text {
                    value: tap,
                    var: Some(NET_TAP_VAR),
                },
            );
        }
    }
    if iface.contains_key("type") {
        raw.interfaces = Some(vec![iface]);
    } else if !iface.is_empty() {
        let vars: Vec<&str> = iface.values().filter_map(|t| t.var).collect();
        warnings.push(format!(
            "{} ignored: no interface without LKL_HIJACK_NET_IFTYPE (tap, macvtap, raw or pipe)",
            vars.join(", ")
        ));
    }
    raw
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailing_commas_only_outside_strings() {
        assert_eq!(strip_trailing_commas("{\"a\":[1,2,],}"), "{\"a\":[1,2 ] }");
        assert_eq!(strip_trailing_commas("{\"a\":\",}\"}"), "{\"a\":\",}\"}");
        assert_eq!(
            strip_trailing_commas("{\"a\":\"\\\",}\"}"),
            "{\"a\":\"\\\",}\"}"
        );
        assert_eq!(strip_trailing_commas("[1,\n\t]"), "[1 \n\t]");
    }

    #[test]
    fn suggestions() {
        assert_eq!(suggest("gatway", TOP_KEYS), " (did you mean \"gateway\"?)");
        assert_eq!(
            suggest("MaskLen6", INTERFACE_KEYS),
            " (did you mean \"masklen6\"?)"
        );
        assert_eq!(suggest("zzzzzzzz", TOP_KEYS), "");
    }

    #[test]
    fn numbers_are_text() {
        let raw = from_json(
            "{\"delay_main\": 500000, \"interfaces\": [{\"mtu\": 1280}]}",
            "t",
            UnknownKeys::Error,
            &mut vec![],
        )
        .unwrap();
        assert_eq!(raw.top["delay_main"].value, "500000");
        assert_eq!(raw.interfaces.unwrap()[0]["mtu"].value, "1280");
    }
}
