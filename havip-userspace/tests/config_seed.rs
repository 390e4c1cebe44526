//! The TOML config: parsing errors name the key and value; seeding goes
//! through the operations, is idempotent, and changes an ENI's interface
//! through ModifyEni.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;

use std::path::Path;

use havip::{
    config::{self, Config, ConfigError},
    control::ControlPlane,
    model::*,
};

// Config

#[test]
fn example_config_parses_and_seeds_idempotently() {
    let cfg = Config::load(demo_config_path()).expect("examples/demo.toml");
    assert_eq!(cfg.havips.len(), 1);
    assert_eq!(cfg.agent.api_socket, Path::new(havip::paths::API_SOCKET));
    assert_eq!(cfg.interfaces(), vec!["hv-a", "hv-b", "hv-c", "hv-up"]);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("s.redb");
    let state = {
        let cp = ControlPlane::open(&db).unwrap();
        let r = config::seed(&cp, &cfg).unwrap();
        assert!(r.created.contains(&"havip havip-demo".to_owned()), "{r:?}");
        assert!(r.kept.is_empty());
        let s = cp.snapshot();
        let h = &s.havips["havip-demo"];
        assert_eq!(h.bindings, vec!["i-a", "i-b"]);
        assert_eq!(h.initial_owner.as_deref(), Some("i-a"));
        assert_eq!(s.eips["eip-demo"].havip.as_deref(), Some("havip-demo"));
        // An API change made after seeding...
        cp.apply(Op::UnassociateHaVip(UnassociateHaVip {
            havip: "havip-demo".into(),
            member: Member::instance("i-b"),
            force: false,
        }))
        .unwrap();
        cp.snapshot()
    };
    // ...survives a restart with the same config; nothing is duplicated.
    let cp = ControlPlane::open(&db).unwrap();
    let r = config::seed(&cp, &cfg).unwrap();
    assert!(r.created.is_empty(), "{r:?}");
    assert_eq!(r.kept.len(), 12, "{r:?}");
    assert_eq!(cp.snapshot(), state);
    assert_eq!(cp.snapshot().havips["havip-demo"].bindings, vec!["i-a"]);
}

const GOOD: &str = r#"
[[vpc]]
id = "vpc-1"
cidr = "10.0.0.0/16"
[[vswitch]]
id = "vsw-1"
vpc = "vpc-1"
cidr = "10.0.1.0/24"
gateway_mac = "02:00:00:00:00:01"
[[instance]]
id = "i-a"
vswitch = "vsw-1"
[[instance]]
id = "i-b"
vswitch = "vsw-1"
[[eni]]
id = "eni-a"
instance = "i-a"
vswitch = "vsw-1"
mac = "02:00:00:00:0a:01"
interface = "hv-a"
primary = true
"#;

/// Parses and plans `GOOD` + `extra` on an empty state.
fn check(extra: &str) -> Result<(), ConfigError> {
    let cfg = Config::from_toml_str(&format!("{GOOD}{extra}"))?;
    config::plan_seed(&cfg, &State::default()).map(drop)
}

fn bad(extra: &str, needles: &[&str]) {
    let e = check(extra).expect_err(extra);
    let msg = e.to_string();
    for n in needles {
        assert!(
            msg.contains(n),
            "error for {extra:?} should mention {n:?}: {msg}"
        );
    }
}

/// Extra config that `check` refuses, and what its message must mention.
#[rustfmt::skip]
const BAD: &[(&str, &[&str])] = &[
    ("[agent]\nbogus = 1\n", &["unknown field", "bogus"]),
    ("[[vpc]]\nid = \"v\"\ncidr = \"10.0.0.0/16\"\ncolour = \"red\"\n", &["colour"]),
    ("[[havip]]\nid = \"h\"\nvswitch = \"vsw-1\"\ncolour = \"red\"\n", &["colour"]),
    ("[[eip]]\nid = \"e\"\naddress = \"1.2.3.4\"\ncolour = \"red\"\n", &["colour"]),
    ("[[havip]]\nvswitch = \"vsw-1\"\n", &["without an id"]),
    ("[agent]\nxdp_mode = \"turbo\"\n", &["xdp_mode", "turbo"]),
    ("[[eni]]\nid = \"e\"\nvswitch = \"vsw-1\"\nmac = \"02:00:00:00:0a\"\ninterface = \"x\"\n", &["mac", "02:00:00:00:0a", "invalid MAC"]),
    ("[[vpc]]\nid = \"v2\"\ncidr = \"10.0.0.1/16\"\n", &["cidr", "10.0.0.1/16", "host bits"]),
    ("[[havip]]\nid = \"h\"\nvswitch = \"vsw-1\"\naddress = \"10.0.1\"\n", &["address", "10.0.1"]),
    ("[[havip]]\nid = \"h\"\nvswitch = \"vsw-1\"\n[[havip]]\nid = \"h\"\nvswitch = \"vsw-1\"\n", &["duplicate havip id \"h\""]),
    ("[[havip]]\nid = \"h1\"\nvswitch = \"vsw-1\"\naddress = \"10.0.1.9\"\n[[havip]]\nid = \"h2\"\nvswitch = \"vsw-1\"\naddress = \"10.0.1.9\"\n", &["[[havip]] \"h2\"", "Conflict.AddressInUse", "10.0.1.9"]),
    ("[[havip]]\nid = \"h\"\nvswitch = \"vsw-1\"\naddress = \"10.0.2.9\"\n", &["[[havip]] \"h\"", "InvalidParameter.AddressOutsideVSwitch", "10.0.2.9", "10.0.1.0/24"]),
    ("[[havip]]\nid = \"h\"\nvswitch = \"vsw-9\"\n", &["[[havip]] \"h\"", "NotFound.VSwitch", "vsw-9"]),
    ("[[havip]]\nid = \"h\"\nvswitch = \"vsw-1\"\ninstances = [\"i-z\"]\n", &["[[havip]] \"h\" instance \"i-z\"", "NotFound.Instance"]),
    ("[[havip]]\nid = \"h\"\nvswitch = \"vsw-1\"\ninstances = [\"i-a\"]\nenis = [\"eni-a\"]\n", &["Conflict.MixedBindingKinds"]),
    ("[[havip]]\nid = \"h\"\nvswitch = \"vsw-1\"\ninstances = [\"i-a\"]\nmaster = \"i-b\"\n", &["initial_owner", "InvalidParameter.OwnerNotBound", "i-b"]),
    ("[[instance]]\nid = \"i-c\"\nvswitch = \"vsw-7\"\n", &["[[instance]] \"i-c\"", "NotFound.VSwitch", "vsw-7"]),
    ("[[eni]]\nid = \"eni-b\"\nvswitch = \"vsw-1\"\nmac = \"02:00:00:00:0a:01\"\ninterface = \"hv-b\"\n", &["[[eni]] \"eni-b\"", "Conflict.MacInUse"]),
];

#[test]
fn config_errors_name_the_offending_key_and_value() {
    check("").expect("the base config is good");
    check("[[havip]]\nid = \"h\"\nvswitch = \"vsw-1\"\ninstances = [\"i-a\"]\nmaster = \"i-a\"\n")
        .expect("a good HaVip");
    for (extra, needles) in BAD {
        bad(extra, needles);
    }
    // Six HaVips break the default per-VPC quota, like the API.
    let six: String = (0..6)
        .map(|n| format!("[[havip]]\nid = \"h{n}\"\nvswitch = \"vsw-1\"\n"))
        .collect();
    bad(&six, &["[[havip]] \"h5\"", "QuotaExceeded.HaVipsPerVpc"]);
    check(&format!(
        "{six}[quotas]\nhavips_per_vpc = 6\nhavips_per_account = 6\n"
    ))
    .expect("quotas raised in the config");
    bad("[quotas]\nhavips_per_galaxy = 3\n", &["havips_per_galaxy"]);
}

/// A store seeded with `GOOD` (the directory holds it).
fn seeded_good() -> (tempfile::TempDir, ControlPlane) {
    let dir = tempfile::tempdir().unwrap();
    let cp = ControlPlane::open(dir.path().join("s.redb")).unwrap();
    config::seed(&cp, &Config::from_toml_str(GOOD).unwrap()).unwrap();
    (dir, cp)
}

#[test]
fn config_mismatch_with_store_is_reported() {
    let (_dir, cp) = seeded_good();
    let changed = Config::from_toml_str(&GOOD.replace("10.0.1.0/24", "10.0.2.0/24")).unwrap();
    let before = cp.snapshot();
    let e = config::seed(&cp, &changed).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("[[vswitch]] \"vsw-1\"")
            && msg.contains("cidr")
            && msg.contains("10.0.2.0/24"),
        "{msg}"
    );
    assert_eq!(cp.snapshot(), before, "a failed seed changes nothing");
}

#[test]
fn bad_config_file_error_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.toml");
    std::fs::write(&p, "[[vpc]]\nid = \"v\"\ncidr = \"10.0.0.0/99\"\n").unwrap();
    let msg = Config::load(&p).unwrap_err().to_string();
    assert!(
        msg.contains("bad.toml") && msg.contains("10.0.0.0/99"),
        "{msg}"
    );
    let msg = Config::load(dir.path().join("missing.toml"))
        .unwrap_err()
        .to_string();
    assert!(msg.contains("missing.toml"), "{msg}");
}

#[test]
fn changed_eni_interface_is_applied_through_modify_eni() {
    let (_dir, cp) = seeded_good();
    let old = cp.with_state(|s| s.enis["eni-a"].interface.clone());
    let text = GOOD.replace(&format!("\"{old}\""), "\"tap-new\"");
    assert_ne!(text, GOOD, "the fixture names eni-a's interface");
    let report = config::seed(&cp, &Config::from_toml_str(&text).unwrap()).unwrap();
    assert_eq!(report.modified, ["eni eni-a interface tap-new"]);
    assert_eq!(
        cp.with_state(|s| s.enis["eni-a"].interface.clone()),
        "tap-new"
    );
    // Removing an entry from the file deletes nothing.
    let without_b = text.replace("[[instance]]\nid = \"i-b\"\nvswitch = \"vsw-1\"\n", "");
    assert_ne!(without_b, text);
    let before = cp.snapshot();
    config::seed(&cp, &Config::from_toml_str(&without_b).unwrap()).unwrap();
    assert_eq!(cp.snapshot(), before);
    assert!(before.instances.contains_key("i-b"));
    // Seeding the same file again changes nothing more.
    let again = config::seed(&cp, &Config::from_toml_str(&text).unwrap()).unwrap();
    assert!(again.modified.is_empty() && again.created.is_empty());
}
