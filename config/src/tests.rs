//! Unit and property tests of the parser, including upstream README's own
//! example configurations verbatim.

use std::collections::HashMap;

use proptest::prelude::*;

use super::*;

/// upstream README, "LKL hijack library": conf.json, verbatim.
const README_CONF: &str = r#"     {
       "gateway":"192.168.0.1",
       "gateway6":"2001:db8:0:f101::1",
       "debug":"1",
       "singlecpu":"1",
       "sysctl":"net.ipv4.tcp_wmem=4096 87380 2147483647",
       "boot_cmdline":"ip=dhcp",
       "interfaces":[
               {
                       "mac":"12:34:56:78:9a:bc",
                       "type":"tap",
                       "param":"tap7",
                       "ip":"192.168.0.2",
                       "masklen":"24",
                       "ifgateway":"192.168.0.1",
                       "ipv6":"2001:db8:0:f101::2",
                       "masklen6":"64",
                       "ifgateway6":"2001:db8:0:f101::1",
                       "offload":"0xc803"
               },
               {
                       "mac":"12:34:56:78:9a:bd",
                       "type":"tap",
                       "param":"tap77",
                       "ip":"192.168.1.2",
                       "masklen":"24",
                       "ifgateway":"192.168.1.1",
                       "ipv6":"2001:db8:0:f102::2",
                       "masklen6":"64",
                       "ifgateway6":"2001:db8:0:f102::1",
                       "offload":"0xc803"
               }
       ]
     }
"#;

/// upstream README, "LKL hijack library with zpoline": lkl-tap.json,
/// verbatim, trailing comma included.
const README_ZPOLINE: &str = r#"{
    "gateway": "172.17.0.1",
    "nameserver": "8.8.8.8",
    "interfaces": [
        {
            "ip": "172.17.0.39",
            "masklen": "16",
            "mac": "00:0d:0b:94:4e:97",
            "param": "tap0",
            "type": "tap"
        }
    ],
}
"#;

fn err(text: &str) -> String {
    Config::from_json(text).unwrap_err().to_string()
}

#[test]
fn readme_conf_json() {
    let c = Config::from_json(README_CONF).unwrap();
    assert_eq!(c.gateway, Some("192.168.0.1".parse().unwrap()));
    assert_eq!(c.gateway6, Some("2001:db8:0:f101::1".parse().unwrap()));
    assert_eq!(c.debug, Debug(1));
    assert_eq!(c.single_cpu, SingleCpu::KernelThreads);
    assert_eq!(
        c.sysctl,
        [Sysctl {
            key: "net.ipv4.tcp_wmem".into(),
            value: "4096 87380 2147483647".into()
        }]
    );
    assert_eq!(c.sysctl[0].path(), "/proc/sys/net/ipv4/tcp_wmem");
    assert_eq!(c.boot_cmdline, "ip=dhcp");
    assert_eq!(c.interfaces.len(), 2);
    let i = &c.interfaces[1];
    assert_eq!(
        i.backend,
        Backend::Tap {
            ifname: "tap77".into()
        }
    );
    assert_eq!(i.mac, Some(MacAddr([0x12, 0x34, 0x56, 0x78, 0x9a, 0xbd])));
    assert_eq!(
        i.ipv4,
        Some(Cidr {
            addr: "192.168.1.2".parse().unwrap(),
            prefix_len: 24
        })
    );
    assert_eq!(i.ifgateway, Some("192.168.1.1".parse().unwrap()));
    assert_eq!(
        i.ipv6,
        Some(Cidr {
            addr: "2001:db8:0:f102::2".parse().unwrap(),
            prefix_len: 64
        })
    );
    assert_eq!(i.ifgateway6, Some("2001:db8:0:f102::1".parse().unwrap()));
    assert_eq!(i.offload, 0xc803);
    assert_eq!(i.mtu, None);
}

#[test]
fn readme_zpoline_json_with_trailing_comma() {
    let c = Config::from_json(README_ZPOLINE).unwrap();
    assert_eq!(c.nameserver, Some("8.8.8.8".parse().unwrap()));
    assert_eq!(c.gateway, Some("172.17.0.1".parse().unwrap()));
    let i = &c.interfaces[0];
    assert_eq!(
        i.backend,
        Backend::Tap {
            ifname: "tap0".into()
        }
    );
    assert_eq!(i.ipv4.unwrap().prefix_len, 16);
    assert_eq!(i.mac.unwrap().to_string(), "00:0d:0b:94:4e:97");
}

#[test]
fn readme_key_examples() {
    // Each key's example from the README, inside a minimal document.
    let top = [
        r#""gateway":"192.168.0.1""#,
        r#""gateway6":"2001:db8:0:f101::1""#,
        r#""debug":"1""#,
        r#""singlecpu":"1""#,
        r#""sysctl":"net.ipv4.tcp_wmem=4096 87380 2147483647""#,
        r#""boot_cmdline": "mem=1G""#,
        r#""mount": "proc,sysfs""#,
        r#""delay_main":"500000""#,
        r#""nameserver":"8.8.8.8""#,
    ];
    for t in top {
        Config::from_json(&format!("{{{t}}}")).unwrap_or_else(|e| panic!("{t}: {e}"));
    }
    let iface = [
        r#""mtu":"1280""#,
        r#""ip":"192.168.0.2", "masklen":"24""#,
        r#""ip":"192.168.0.2", "masklen":"24", "ifgateway":"192.168.0.1""#,
        r#""ipv6":"2001:db8:0:f101::2", "masklen6":"64", "ifgateway6":"2001:db8:0:f101::1""#,
        r#""mac":"12:34:56:78:9a:bc""#,
        r#""neigh":"192.168.0.1|12:34:56:78:9a:bc;2001:db8:0:f101::1|12:34:56:78:9a:be""#,
        r#""qdisc":"root|fq""#,
        r#""offload":"0x8002""#,
    ];
    for t in iface {
        let doc = format!(r#"{{"interfaces":[{{"type":"tap","param":"tap0",{t}}}]}}"#);
        Config::from_json(&doc).unwrap_or_else(|e| panic!("{t}: {e}"));
    }
    let c = Config::from_json(r#"{"mount":"proc,sysfs","delay_main":"500000","interfaces":[{"type":"tap","param":"tap0","neigh":"192.168.0.1|12:34:56:78:9a:bc;2001:db8:0:f101::1|12:34:56:78:9a:be","qdisc":"root|fq"}]}"#).unwrap();
    assert_eq!(c.mount, ["proc", "sysfs"]);
    assert_eq!(c.delay_main, Some(Duration::from_millis(500)));
    let i = &c.interfaces[0];
    assert_eq!(i.neigh.len(), 2);
    assert!(i.neigh[1].ip.is_ipv6());
    assert_eq!(
        i.neigh[1].mac,
        MacAddr([0x12, 0x34, 0x56, 0x78, 0x9a, 0xbe])
    );
    assert_eq!(
        i.qdisc,
        [Qdisc {
            parent: QdiscParent::Root,
            kind: "fq".into()
        }]
    );
}

#[test]
fn debug_mask_and_single_cpu() {
    let c = Config::from_json(r#"{"debug":"0x100","singlecpu":"2"}"#).unwrap();
    assert!(
        c.debug.enabled() && c.debug.has(Debug::PAUSE_AT_EXIT) && !c.debug.has(Debug::WAIT_ENTER)
    );
    assert_eq!(c.single_cpu, SingleCpu::KernelAndPollThreads);
    assert!(!Config::from_json(r#"{"debug":"0"}"#)
        .unwrap()
        .debug
        .enabled());
    assert_eq!(err(r#"{"debug":"loud"}"#).split(':').next(), Some("debug"));
    assert!(err(r#"{"singlecpu":"3"}"#).starts_with("singlecpu: \"3\" is not a pinning mode"));
}

#[test]
fn bad_values_name_key_value_and_fix() {
    let doc = |kv: &str| format!(r#"{{"interfaces":[{{"type":"tap","param":"tap0",{kv}}}]}}"#);
    assert_eq!(
        err(&doc(r#""ip":"10.0.0.1","masklen":"33""#)),
        "interfaces[0].masklen: \"33\" is not a prefix length (0-32)"
    );
    assert_eq!(
        err(&doc(r#""ipv6":"::2","masklen6":"129""#)),
        "interfaces[0].masklen6: \"129\" is not a prefix length (0-128)"
    );
    assert!(err(&doc(r#""mac":"12:34:56""#))
        .starts_with("interfaces[0].mac: \"12:34:56\" is not a MAC address"));
    assert!(err(&doc(r#""mtu":"67""#))
        .starts_with("interfaces[0].mtu: \"67\" is not an MTU (68-65535)"));
    assert!(err(&doc(r#""ip":"10.0.0.256","masklen":"8""#))
        .starts_with("interfaces[0].ip: \"10.0.0.256\" is not an IPv4 address"));
    assert!(err(&doc(r#""neigh":"10.0.0.1""#)).contains("interfaces[0].neigh"));
    assert!(err(&doc(r#""neigh":"10.0.0.1|zz:34:56:78:9a:bc""#)).contains("bad MAC"));
    assert!(err(&doc(r#""qdisc":"eth0|fq""#)).contains("only \"root\""));
    assert!(err(&doc(r#""offload":"0x1g""#)).starts_with("interfaces[0].offload"));
    assert!(err(&doc(r#""ip":"10.0.0.1""#)).starts_with("interfaces[0].masklen: missing"));
    assert!(err(&doc(r#""ifgateway":"10.0.0.1""#)).starts_with("interfaces[0].ip: missing"));
    assert!(err(&doc(r#""ifgateway6":"fe80::1""#)).starts_with("interfaces[0].ipv6: missing"));
    assert!(err(r#"{"interfaces":[{"type":"tun","param":"x"}]}"#)
        .starts_with("interfaces[0].type: \"tun\" is not an interface type"));
    assert!(
        err(r#"{"interfaces":[{"type":"vde","param":"x"}]}"#).contains("this build does not have")
    );
    assert!(err(r#"{"interfaces":[{"param":"tap0"}]}"#).starts_with("interfaces[0].type: missing"));
    assert!(err(r#"{"interfaces":[{"type":"pipe"}]}"#).starts_with("interfaces[0].param: missing"));
    assert!(err(r#"{"interfaces":[{"type":"pipe","param":"/a"}]}"#)
        .starts_with("interfaces[0].param: \"/a\" is not two paths"));
    assert!(err(r#"{"sysctl":"net.ipv4.ip_forward"}"#)
        .starts_with("sysctl: \"net.ipv4.ip_forward\" has an entry"));
    assert!(err(r#"{"sysctl":"../x=1"}"#).contains("bad key"));
    assert!(err(r#"{"mount":"proc,/x"}"#).contains("bad file system type"));
    assert!(err(r#"{"nameserver":"dns.google"}"#).starts_with("nameserver: \"dns.google\""));
    assert!(err(r#"{"delay_main":"-5"}"#).starts_with("delay_main: \"-5\""));
    assert_eq!(
        err(r#"{"delay_main":"18446744073709551615"}"#),
        "delay_main: \"18446744073709551615\" is not a delay in microseconds (0-3600000000): at most one hour; e.g. \"500000\" is half a second"
    );
    assert!(Config::from_json(r#"{"delay_main":"3600000000"}"#).is_ok());
    assert!(err(&doc(r#""mac":"01:00:5e:00:00:01""#))
        .starts_with("interfaces[0].mac: \"01:00:5e:00:00:01\" is a multicast address"));
    assert!(err(&doc(r#""mac":"0:0:0:0:0:0""#))
        .starts_with("interfaces[0].mac: \"0:0:0:0:0:0\" is all zeros"));
}

#[test]
fn backends() {
    let one = |ty: &str, param: &str| {
        Config::from_json(&format!(
            r#"{{"interfaces":[{{"type":"{ty}","param":"{param}"}}]}}"#
        ))
        .map(|c| c.interfaces[0].backend.clone())
    };
    assert_eq!(
        one("raw", "eth1").unwrap(),
        Backend::Raw {
            ifname: "eth1".into()
        }
    );
    assert_eq!(
        one("macvtap", "/dev/tap5").unwrap(),
        Backend::Macvtap {
            path: "/dev/tap5".into()
        }
    );
    assert_eq!(
        one("pipe", "/tmp/rx|/tmp/tx").unwrap(),
        Backend::Pipe {
            rx: "/tmp/rx".into(),
            tx: "/tmp/tx".into()
        }
    );
    assert_eq!(one("pipe", "/tmp/rx|/tmp/tx").unwrap().type_name(), "pipe");
    assert!(one("tap", "a-very-long-interface-name").is_err());
}

#[test]
fn unknown_keys_and_types() {
    assert_eq!(
        err(r#"{"gatway":"10.0.0.1"}"#),
        "<string>: gatway: unknown key (did you mean \"gateway\"?); valid keys here: gateway, gateway6, debug, singlecpu, sysctl, boot_cmdline, mount, interfaces, delay_main, nameserver, dump, disks"
    );
    let e = err(r#"{"interfaces":[{"type":"tap","param":"tap0","netmask":"24"}]}"#);
    assert!(
        e.starts_with("<string>: interfaces[0].netmask: unknown key; valid keys here: type, param"),
        "{e}"
    );
    assert!(err(r#"{"debug":true}"#).starts_with("<string>: debug: expected a string"));
    assert!(err(r#"{"interfaces":{}}"#).starts_with("<string>: interfaces: expected an array"));
    assert!(err(r#"{"interfaces":["tap0"]}"#)
        .starts_with("<string>: interfaces[0]: expected an object"));
    assert!(err(r#"[]"#).contains("(top level): expected an object"));
    // Numbers are taken as their text, as upstream's tokenizer does; null is absent.
    let c = Config::from_json(
        r#"{"debug":256,"gateway":null,"interfaces":[{"type":"tap","param":"t","mtu":9000}]}"#,
    )
    .unwrap();
    assert_eq!(
        (c.debug, c.gateway, c.interfaces[0].mtu),
        (Debug(256), None, Some(9000))
    );
}

#[test]
fn duplicate_keys_last_wins_as_upstream() {
    let c = Config::from_json(r#"{"debug":"1","debug":"0x100"}"#).unwrap();
    assert_eq!(c.debug, Debug(0x100));
}

#[test]
fn syntax_errors_have_line_and_column() {
    let e = Config::from_json("{\n  \"gateway\": \"10.0.0.1\"\n  \"debug\": \"1\"\n}").unwrap_err();
    match e {
        Error::Syntax {
            line,
            column,
            ref origin,
            ..
        } => {
            assert_eq!((line, column, origin.as_str()), (3, 3, "<string>"));
        }
        other => panic!("{other:?}"),
    }
    assert!(
        e.to_string()
            .starts_with("<string>:3:3: malformed JSON: expected `,` or `}`"),
        "{e}"
    );
}

fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |k| map.get(k).cloned()
}

#[test]
fn variables_give_the_same_config_as_json() {
    let env = vars(&[
        ("LKL_HIJACK_NET_IFTYPE", "tap"),
        ("LKL_HIJACK_NET_IFPARAMS", "tap7"),
        ("LKL_HIJACK_NET_MAC", "12:34:56:78:9a:bc"),
        ("LKL_HIJACK_NET_IP", "192.168.0.2"),
        ("LKL_HIJACK_NET_NETMASK_LEN", "24"),
        ("LKL_HIJACK_NET_IFGATEWAY", "192.168.0.1"),
        ("LKL_HIJACK_NET_IPV6", "2001:db8:0:f101::2"),
        ("LKL_HIJACK_NET_NETMASK6_LEN", "64"),
        ("LKL_HIJACK_NET_IFGATEWAY6", "2001:db8:0:f101::1"),
        ("LKL_HIJACK_OFFLOAD", "0xc803"),
        ("LKL_HIJACK_NET_MTU", "1500"),
        ("LKL_HIJACK_NET_NEIGHBOR", "192.168.0.1|12:34:56:78:9a:bc"),
        ("LKL_HIJACK_NET_QDISC", "root|fq"),
        ("LKL_HIJACK_NET_GATEWAY", "192.168.0.1"),
        ("LKL_HIJACK_NET_GATEWAY6", "2001:db8:0:f101::1"),
        ("LKL_HIJACK_DEBUG", "1"),
        ("LKL_HIJACK_SINGLE_CPU", "1"),
        (
            "LKL_HIJACK_SYSCTL",
            "net.ipv4.tcp_wmem=4096 87380 2147483647",
        ),
        ("LKL_HIJACK_BOOT_CMDLINE", "ip=dhcp"),
        ("LKL_HIJACK_MOUNT", "proc,sysfs"),
        ("LKL_HIJACK_DELAY_MAIN", "10"),
        ("LKL_HIJACK_DUMP", "/proc/meminfo"),
    ]);
    let from_env = Config::from_vars(&env).unwrap();
    let from_json = Config::from_json(
        r#"{
        "gateway":"192.168.0.1", "gateway6":"2001:db8:0:f101::1", "debug":"1", "singlecpu":"1",
        "sysctl":"net.ipv4.tcp_wmem=4096 87380 2147483647", "boot_cmdline":"ip=dhcp",
        "mount":"proc,sysfs", "delay_main":"10", "dump":"/proc/meminfo",
        "interfaces":[{"mac":"12:34:56:78:9a:bc","type":"tap","param":"tap7","ip":"192.168.0.2",
          "masklen":"24","ifgateway":"192.168.0.1","ipv6":"2001:db8:0:f101::2","masklen6":"64",
          "ifgateway6":"2001:db8:0:f101::1","offload":"0xc803","mtu":"1500",
          "neigh":"192.168.0.1|12:34:56:78:9a:bc","qdisc":"root|fq"}]}"#,
    )
    .unwrap();
    assert_eq!(from_env, from_json);
}

#[test]
fn variable_errors_name_the_variable() {
    let env = vars(&[
        ("LKL_HIJACK_NET_IFTYPE", "tap"),
        ("LKL_HIJACK_NET_IFPARAMS", "tap0"),
        ("LKL_HIJACK_NET_IP", "1.2.3.4"),
        ("LKL_HIJACK_NET_NETMASK_LEN", "99"),
    ]);
    assert_eq!(
        Config::from_vars(&env).unwrap_err().to_string(),
        "interfaces[0].masklen (LKL_HIJACK_NET_NETMASK_LEN): \"99\" is not a prefix length (0-32)"
    );
}

#[test]
fn no_interface_without_iftype_and_obsolete_tap() {
    let mut w = Vec::new();
    let raw = raw::from_env(&vars(&[("LKL_HIJACK_NET_IP", "1.2.3.4")]), &mut w);
    assert_eq!(raw.interfaces, None);
    assert!(w[0].contains("LKL_HIJACK_NET_IP ignored"), "{w:?}");
    let mut w = Vec::new();
    let raw = raw::from_env(&vars(&[("LKL_HIJACK_NET_TAP", "tap3")]), &mut w);
    assert!(w[0].contains("obsolete"));
    let c = validate(&raw).unwrap();
    assert_eq!(
        c.interfaces[0].backend,
        Backend::Tap {
            ifname: "tap3".into()
        }
    );
}

/// A scratch directory for `load_with`.
fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("lkl-hijack-config-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn load_order_file_overrides_variables() {
    let dir = scratch("order");
    let env = vars(&[
        ("LKL_HIJACK_NET_GATEWAY", "10.0.0.1"),
        ("LKL_HIJACK_DEBUG", "1"),
        ("LKL_HIJACK_NET_IFTYPE", "tap"),
        ("LKL_HIJACK_NET_IFPARAMS", "tap9"),
    ]);
    let src = |var: &dyn Fn(&str) -> Option<String>| {
        load_with(&Sources {
            var,
            dir: &dir,
            unknown: UnknownKeys::Error,
        })
    };

    // no file: the variables
    let l = src(&env).unwrap();
    assert_eq!(
        (l.file.as_ref(), l.config.gateway),
        (None, Some("10.0.0.1".parse().unwrap()))
    );
    assert_eq!(l.config.interfaces.len(), 1);

    // ./lkl-hijack.json: its keys win, the others stay
    std::fs::write(
        dir.join(DEFAULT_CONFIG_FILE),
        r#"{"gateway":"10.9.9.9","interfaces":[]}"#,
    )
    .unwrap();
    let l = src(&env).unwrap();
    assert_eq!(l.file, Some(dir.join(DEFAULT_CONFIG_FILE)));
    assert_eq!(l.config.gateway, Some("10.9.9.9".parse().unwrap()));
    assert_eq!(l.config.debug, Debug(1));
    assert!(l.config.interfaces.is_empty());

    // LKL_HIJACK_CONFIG_FILE wins over ./lkl-hijack.json
    std::fs::write(dir.join("other.json"), r#"{"debug":"0x200"}"#).unwrap();
    let env2 = vars(&[
        ("LKL_HIJACK_CONFIG_FILE", "other.json"),
        ("LKL_HIJACK_NET_GATEWAY", "10.0.0.1"),
    ]);
    let l = src(&env2).unwrap();
    assert_eq!(
        (l.config.debug, l.config.gateway),
        (Debug(0x200), Some("10.0.0.1".parse().unwrap()))
    );

    // a named file that is missing is an error naming it
    let env3 = vars(&[("LKL_HIJACK_CONFIG_FILE", "missing.json")]);
    let e = src(&env3).unwrap_err().to_string();
    assert!(
        e.contains("missing.json: cannot read the configuration file"),
        "{e}"
    );

    // malformed JSON names the file, line and column
    std::fs::write(dir.join("bad.json"), "{\n\"debug\": \"1\" \"mount\"\n}").unwrap();
    let env4 = vars(&[("LKL_HIJACK_CONFIG_FILE", "bad.json")]);
    let e = src(&env4).unwrap_err().to_string();
    assert!(e.contains("bad.json:2:14: malformed JSON"), "{e}");

    // unknown keys as warnings when asked
    std::fs::write(
        dir.join("warn.json"),
        r#"{"debug":"1","colour":"blue","interfaces":[{"type":"tap","param":"t","speed":"10G"}]}"#,
    )
    .unwrap();
    let env5 = vars(&[("LKL_HIJACK_CONFIG_FILE", "warn.json")]);
    let l = load_with(&Sources {
        var: &env5,
        dir: &dir,
        unknown: UnknownKeys::Warn,
    })
    .unwrap();
    assert_eq!(l.warnings.len(), 2, "{:?}", l.warnings);
    assert!(l.warnings[0].contains("colour: unknown key"));
    assert!(l.warnings[1].contains("interfaces[0].speed: unknown key"));
    assert_eq!(l.config.debug, Debug(1));

    // an empty file is not JSON: an error naming it; `{}` sets nothing
    std::fs::write(dir.join("empty.json"), " \n").unwrap();
    let env6 = vars(&[
        ("LKL_HIJACK_CONFIG_FILE", "empty.json"),
        ("LKL_HIJACK_DEBUG", "3"),
    ]);
    let e = src(&env6).unwrap_err().to_string();
    assert!(
        e.contains("empty.json: the configuration file is empty"),
        "{e}"
    );
    assert!(e.contains("write {}"), "{e}");
    std::fs::write(dir.join("empty.json"), "{}\n").unwrap();
    assert_eq!(src(&env6).unwrap().config.debug, Debug(3));
    std::fs::remove_dir_all(&dir).unwrap();
}

fn arb_iface() -> impl Strategy<Value = Interface> {
    (
        "[a-z][a-z0-9]{0,14}",
        proptest::option::of(68u32..=65535),
        proptest::option::of(any::<[u8; 6]>()),
        proptest::option::of((
            any::<[u8; 4]>(),
            0u8..=32,
            proptest::option::of(any::<[u8; 4]>()),
        )),
        proptest::option::of((
            any::<[u8; 16]>(),
            0u8..=128,
            proptest::option::of(any::<[u8; 16]>()),
        )),
        proptest::collection::vec((any::<bool>(), any::<[u8; 16]>(), any::<[u8; 6]>()), 0..3),
        proptest::collection::vec(
            prop_oneof![Just("fq"), Just("fq_codel"), Just("pfifo_fast")],
            0..2,
        ),
        any::<u32>(),
    )
        .prop_map(
            |(name, mtu, mac, v4, v6, neigh, qdisc, offload)| Interface {
                backend: Backend::Tap { ifname: name },
                mtu,
                // a device's MAC is unicast (first byte even) and not zero
                mac: mac.map(|mut m: [u8; 6]| {
                    m[0] = (m[0] & !1) | 2;
                    MacAddr(m)
                }),
                ipv4: v4.map(|(a, l, _)| Cidr {
                    addr: a.into(),
                    prefix_len: l,
                }),
                ifgateway: v4.and_then(|(_, _, g)| g.map(Into::into)),
                ipv6: v6.map(|(a, l, _)| Cidr {
                    addr: a.into(),
                    prefix_len: l,
                }),
                ifgateway6: v6.and_then(|(_, _, g)| g.map(Into::into)),
                neigh: neigh
                    .into_iter()
                    .map(|(v4, a, m)| Neighbor {
                        ip: if v4 {
                            IpAddr::from([a[0], a[1], a[2], a[3]])
                        } else {
                            IpAddr::from(a)
                        },
                        mac: MacAddr(m),
                    })
                    .collect(),
                qdisc: qdisc
                    .into_iter()
                    .map(|k| Qdisc {
                        parent: QdiscParent::Root,
                        kind: k.into(),
                    })
                    .collect(),
                offload,
            },
        )
}

#[test]
fn disks_parse() {
    let c = Config::from_json(
        r#"{"disks": [
            {"image": "root.img", "path": "/", "readonly": "1", "partition": "2", "type": "ext4"},
            {"image": "/srv/data.img", "path": "/mnt/data", "options": "noatime,errors=remount-ro"},
            {"image": "b.img", "path": "/mnt/b", "readonly": 0, "partition": 128}
        ]}"#,
    )
    .unwrap();
    assert_eq!(
        c.disks,
        vec![
            Disk {
                image: "root.img".into(),
                path: "/".into(),
                read_only: true,
                partition: Some(2),
                fstype: Some("ext4".into()),
                options: None,
            },
            Disk {
                image: "/srv/data.img".into(),
                path: "/mnt/data".into(),
                read_only: false,
                partition: None,
                fstype: None,
                options: Some("noatime,errors=remount-ro".into()),
            },
            Disk {
                image: "b.img".into(),
                path: "/mnt/b".into(),
                read_only: false,
                partition: Some(128),
                fstype: None,
                options: None,
            },
        ]
    );
    assert!(Config::from_json(r#"{"disks": []}"#)
        .unwrap()
        .disks
        .is_empty());
}

#[test]
fn bad_disks_name_key_value_and_fix() {
    let one = |kv: &str| err(&format!(r#"{{"disks":[{{{kv}}}]}}"#));
    let e = one(r#""path":"/mnt/x""#);
    assert!(
        e.starts_with("disks[0].image: missing: every disk needs its image file"),
        "{e}"
    );
    let e = one(r#""image":"a.img""#);
    assert!(
        e.starts_with("disks[0].path: missing: every disk needs the path"),
        "{e}"
    );
    for (path, what) in [
        ("mnt/x", "is not an absolute path"),
        ("/mnt/../x", "has a '..' component"),
        ("/mnt/./x", "has a '.' component"),
        ("/mnt//x", "has an empty component"),
        ("/mnt/x/", "has an empty component"),
        ("", "is not an absolute path"),
    ] {
        let e = one(&format!(r#""image":"a.img","path":"{path}""#));
        assert!(
            e.starts_with(&format!("disks[0].path: {path:?} {what}")),
            "{e}"
        );
        assert!(e.contains("write an absolute, normalized path"), "{e}");
    }
    let e = one(r#""image":"a.img","path":"/x","readonly":"yes""#);
    assert!(
        e.starts_with("disks[0].readonly: \"yes\" is not a flag: write \"1\""),
        "{e}"
    );
    for p in ["0", "129", "-1", "x"] {
        let e = one(&format!(r#""image":"a.img","path":"/x","partition":"{p}""#));
        assert!(
            e.starts_with(&format!(
                "disks[0].partition: {p:?} is not a partition number (1-128)"
            )),
            "{e}"
        );
    }
    let e = one(r#""image":"a.img","path":"/x","type":"ext 4""#);
    assert!(
        e.starts_with("disks[0].type: \"ext 4\" is not a file system type"),
        "{e}"
    );
    let e = one(r#""image":"a.img","path":"/x","size":"1G""#);
    assert!(
        e.starts_with("<string>: disks[0].size: unknown key; valid keys here: image, path, readonly, partition, type, options"),
        "{e}"
    );
    let e = err(r#"{"disks":[{"image":"a.img","path":"/x"},{"image":"b.img","path":"/x"}]}"#);
    assert_eq!(
        e,
        "disks[1].path: \"/x\" is also the path of disks[0] (a.img): give each disk a path of its own"
    );
    let e = err(r#"{"disks":[{"image":"a.img","path":"/"},{"image":"b.img","path":"/"}]}"#);
    assert!(e.ends_with("only one image can be the root"), "{e}");
    assert!(err(r#"{"disks":{}}"#).starts_with("<string>: disks: expected an array of objects"));
    assert!(err(r#"{"disks":["a.img"]}"#).starts_with("<string>: disks[0]: expected an object"));
    let e = err(r#"{"disks":[{"image":"a.img","path":"/x","readonly":true}]}"#);
    assert!(
        e.starts_with("<string>: disks[0].readonly: expected a string"),
        "{e}"
    );
}

#[test]
fn added_disks_are_checked_against_the_files() {
    let mut c = Config::from_json(r#"{"disks":[{"image":"a.img","path":"/mnt/a"}]}"#).unwrap();
    let d = |image: &str, path: &str| Disk {
        image: image.into(),
        path: path.into(),
        ..Disk::default()
    };
    c.add_disks(vec![d("r.img", "/"), d("b.img", "/mnt/b")])
        .unwrap();
    assert_eq!(c.disks.len(), 3);
    let e = c
        .add_disks(vec![d("c.img", "/mnt/c"), d("d.img", "/mnt/a")])
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "disks[4].path: \"/mnt/a\" is also the path of disks[0] (a.img): give each disk a path of its own"
    );
    assert_eq!(c.disks.len(), 3, "nothing is added on an error");
}

fn arb_disk() -> impl Strategy<Value = Disk> {
    (
        "[a-zA-Z0-9_./-]{1,20}",
        proptest::collection::vec("[a-z0-9 _-]{1,8}", 0..4),
        any::<bool>(),
        proptest::option::of(1u32..=128),
        proptest::option::of(prop_oneof![
            Just("ext4"),
            Just("btrfs"),
            Just("xfs"),
            Just("vfat")
        ]),
        proptest::option::of("[a-z=,0-9]{1,20}"),
    )
        .prop_map(
            |(image, comps, read_only, partition, fstype, options)| Disk {
                image: image.into(),
                path: format!("/{}", comps.join("/")).into(),
                read_only,
                partition,
                fstype: fstype.map(String::from),
                options,
            },
        )
}

/// Writes a configuration the way a user would, with upstream's keys.
fn to_json(c: &Config) -> String {
    use serde_json::{json, Map, Value};
    let mut top = Map::new();
    let put = |m: &mut Map<String, Value>, k: &str, v: String| {
        m.insert(k.into(), Value::String(v));
    };
    if let Some(g) = c.gateway {
        put(&mut top, "gateway", g.to_string());
    }
    if let Some(g) = c.gateway6 {
        put(&mut top, "gateway6", g.to_string());
    }
    put(&mut top, "debug", format!("{:#x}", c.debug.0));
    if !c.sysctl.is_empty() {
        let s: Vec<String> = c
            .sysctl
            .iter()
            .map(|s| format!("{}={}", s.key, s.value))
            .collect();
        put(&mut top, "sysctl", s.join(";"));
    }
    if !c.mount.is_empty() {
        put(&mut top, "mount", c.mount.join(","));
    }
    if let Some(d) = c.delay_main {
        put(&mut top, "delay_main", d.as_micros().to_string());
    }
    let mut list = Vec::new();
    for i in &c.interfaces {
        let mut m = Map::new();
        let Backend::Tap { ifname } = &i.backend else {
            unreachable!()
        };
        put(&mut m, "type", "tap".into());
        put(&mut m, "param", ifname.clone());
        if let Some(x) = i.mtu {
            put(&mut m, "mtu", x.to_string());
        }
        if let Some(x) = i.mac {
            put(&mut m, "mac", x.to_string());
        }
        if let Some(x) = i.ipv4 {
            put(&mut m, "ip", x.addr.to_string());
            put(&mut m, "masklen", x.prefix_len.to_string());
        }
        if let Some(x) = i.ifgateway {
            put(&mut m, "ifgateway", x.to_string());
        }
        if let Some(x) = i.ipv6 {
            put(&mut m, "ipv6", x.addr.to_string());
            put(&mut m, "masklen6", x.prefix_len.to_string());
        }
        if let Some(x) = i.ifgateway6 {
            put(&mut m, "ifgateway6", x.to_string());
        }
        if !i.neigh.is_empty() {
            let s: Vec<String> = i
                .neigh
                .iter()
                .map(|n| format!("{}|{}", n.ip, n.mac))
                .collect();
            put(&mut m, "neigh", s.join(";"));
        }
        if !i.qdisc.is_empty() {
            let s: Vec<String> = i.qdisc.iter().map(|q| format!("root|{}", q.kind)).collect();
            put(&mut m, "qdisc", s.join(";"));
        }
        put(&mut m, "offload", format!("{:#x}", i.offload));
        list.push(Value::Object(m));
    }
    top.insert("interfaces".into(), Value::Array(list));
    let mut disks = Vec::new();
    for d in &c.disks {
        let mut m = Map::new();
        put(&mut m, "image", d.image.display().to_string());
        put(&mut m, "path", d.path.display().to_string());
        put(&mut m, "readonly", u8::from(d.read_only).to_string());
        if let Some(p) = d.partition {
            put(&mut m, "partition", p.to_string());
        }
        if let Some(t) = &d.fstype {
            put(&mut m, "type", t.clone());
        }
        if let Some(o) = &d.options {
            put(&mut m, "options", o.clone());
        }
        disks.push(Value::Object(m));
    }
    if !disks.is_empty() {
        top.insert("disks".into(), Value::Array(disks));
    }
    serde_json::to_string_pretty(&json!(top)).unwrap()
}

proptest! {
    #[test]
    fn written_configs_read_back(
        gw in proptest::option::of(any::<[u8; 4]>()),
        gw6 in proptest::option::of(any::<[u8; 16]>()),
        debug in any::<u32>(),
        sysctl in proptest::collection::vec(("[a-z]{1,8}(\\.[a-z_]{1,8}){0,3}", "[0-9a-z ]{0,12}"), 0..4),
        mount in proptest::collection::vec(prop_oneof![Just("proc"), Just("sysfs"), Just("tmpfs")], 0..3),
        delay in proptest::option::of(0u64..10_000_000),
        interfaces in proptest::collection::vec(arb_iface(), 0..3),
        disks in proptest::collection::vec(arb_disk(), 0..3),
    ) {
        // Paths are unique (a duplicate is refused, as tested above).
        let mut disks = disks;
        let mut seen = std::collections::HashSet::new();
        disks.retain(|d| seen.insert(d.path.clone()));
        let c = Config {
            gateway: gw.map(Into::into),
            gateway6: gw6.map(Into::into),
            debug: Debug(debug),
            sysctl: sysctl.into_iter().map(|(key, value)| Sysctl { key, value: value.trim().to_owned() }).collect(),
            mount: mount.into_iter().map(String::from).collect(),
            delay_main: delay.map(Duration::from_micros),
            interfaces,
            disks,
            ..Config::default()
        };
        let text = to_json(&c);
        prop_assert_eq!(Config::from_json(&text).unwrap(), c);
    }

    #[test]
    fn any_text_is_an_answer_not_a_panic(text in "\\PC{0,200}") {
        let _ = Config::from_json(&text);
    }

    #[test]
    fn any_value_of_any_key_is_an_answer_not_a_panic(
        top in proptest::sample::select(TOP_KEYS.to_vec()),
        key in proptest::sample::select(INTERFACE_KEYS.to_vec()),
        value in "[ -~]{0,40}",
    ) {
        let v = serde_json::to_string(&value).unwrap();
        let _ = Config::from_json(&format!(r#"{{"{top}":{v}}}"#));
        let _ = Config::from_json(&format!(r#"{{"interfaces":[{{"type":"tap","param":"t","{key}":{v}}}]}}"#));
        let disk_key = DISK_KEYS[value.len() % DISK_KEYS.len()];
        let _ = Config::from_json(&format!(r#"{{"disks":[{{"image":"a","path":"/a","{disk_key}":{v}}}]}}"#));
    }

    #[test]
    fn masklen_in_range_iff_accepted(n in 0u32..300) {
        let doc = format!(r#"{{"interfaces":[{{"type":"tap","param":"t","ip":"10.0.0.1","masklen":"{n}","ipv6":"::1","masklen6":"{}"}}]}}"#, n.min(128));
        let r = Config::from_json(&doc);
        prop_assert_eq!(r.is_ok(), n <= 32);
        if let Err(e) = r {
            prop_assert_eq!(e.to_string(), format!("interfaces[0].masklen: \"{n}\" is not a prefix length (0-32)"));
        }
    }

    #[test]
    fn macs_round_trip(b in any::<[u8; 6]>()) {
        let m = MacAddr(b);
        prop_assert_eq!(m.to_string().parse::<MacAddr>(), Ok(m));
        prop_assert_eq!(m.to_string().to_uppercase().parse::<MacAddr>(), Ok(m));
    }

    #[test]
    fn trailing_commas_keep_offsets(text in "[\\[\\]{},\" a-z:0-9\\\\]{0,80}") {
        prop_assert_eq!(raw::strip_trailing_commas(&text).len(), text.len());
    }
}
