//! State -> the data plane's desired content (ports, HaVips, bindings).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;

use havip::{
    config::{self, Config},
    control::desired::{desired, desired_lenient, DesiredError},
    model::*,
};
use havip_common::{port_flags, virtual_mac, DataplaneConfig, HavipKey};

// Desired data-plane content

fn demo_state() -> State {
    let cfg = Config::load(demo_config_path()).unwrap();
    let (applied, _) = config::plan_seed(&cfg, &State::default()).unwrap();
    let mut s = State::default();
    for a in applied {
        s.apply_change(&a.change);
    }
    s
}

fn ifindex(name: &str) -> Option<u32> {
    match name {
        "hv-a" => Some(11),
        "hv-b" => Some(12),
        "hv-c" => Some(13),
        "hv-up" => Some(20),
        _ => None,
    }
}

#[test]
fn desired_from_demo_state() {
    let s = demo_state();
    let cfg = DataplaneConfig {
        hold_ns: 5,
        security_events_per_sec: 64,
        flags: 0,
    };
    let d = desired(&s, &ifindex, cfg).unwrap();
    let vsw = s.vswitches["vsw-demo"].dp_id;
    assert_eq!(d.config, cfg);
    let ports: Vec<(u32, u32, u32)> = d
        .ports
        .iter()
        .map(|p| (p.ifindex, p.vswitch_id, p.flags))
        .collect();
    assert_eq!(
        ports,
        vec![
            (11, vsw, port_flags::INSTANCE),
            (12, vsw, port_flags::INSTANCE),
            (13, vsw, port_flags::INSTANCE),
            (20, vsw, port_flags::UPLINK),
        ]
    );
    assert!(d.ports.iter().all(|p| p.gateway_mac == [2, 0, 0, 0, 0, 1]));
    // One VPC: its data-plane id is its (only) vSwitch's.
    assert!(d.ports.iter().all(|p| p.vpc_id == vsw));
    assert!(d.havips.iter().all(|h| h.vpc_id == vsw));
    assert_eq!(d.havips.len(), 1);
    let h = &d.havips[0];
    assert_eq!(
        h.key,
        HavipKey {
            vswitch_id: vsw,
            addr: [10, 0, 1, 100]
        }
    );
    assert_eq!(h.id, s.havips["havip-demo"].slot);
    assert_eq!(h.virtual_mac, virtual_mac([10, 0, 1, 100]));
    let b: Vec<(u32, [u8; 6])> = h.bindings.iter().map(|b| (b.ifindex, b.mac)).collect();
    assert_eq!(
        b,
        vec![(11, [2, 0, 0, 0, 0x0a, 1]), (12, [2, 0, 0, 0, 0x0b, 1])]
    );
    assert_eq!(h.initial_owner, Some(h.bindings[0]));
}

#[test]
fn desired_instance_bindings_use_enis_in_the_havip_vswitch_primary_first() {
    let mut s = demo_state();
    // A secondary ENI of i-b in the same vSwitch, one in another vSwitch.
    let ops = [
        Op::CreateVSwitch(vswitch_op(
            "vsw-other",
            "vpc-demo",
            "10.0.2.0/24",
            "02:00:00:00:00:02",
        )),
        Op::CreateEni(eni_op(
            "eni-b0",
            "vsw-demo",
            "02:00:00:00:0b:02",
            "hv-b2",
            Some("i-b"),
            false,
        )),
        Op::CreateEni(eni_op(
            "eni-b9",
            "vsw-other",
            "02:00:00:00:0b:09",
            "hv-b9",
            Some("i-b"),
            false,
        )),
        Op::SetInitialOwner(SetInitialOwner {
            havip: "havip-demo".into(),
            member: Some("i-b".into()),
        }),
    ];
    for op in &ops {
        let a = apply(&s, op).unwrap();
        s.apply_change(&a.change);
    }
    let resolve = |n: &str| {
        ifindex(n).or(match n {
            "hv-b2" => Some(14),
            "hv-b9" => Some(15),
            _ => None,
        })
    };
    let d = desired(&s, &resolve, DataplaneConfig::default()).unwrap();
    let b: Vec<u32> = d.havips[0].bindings.iter().map(|b| b.ifindex).collect();
    // i-a's primary, then i-b's primary (eni-b) before its secondary (eni-b0);
    // eni-b9 is in another vSwitch.
    assert_eq!(b, vec![11, 12, 14]);
    assert_eq!(d.havips[0].initial_owner.map(|o| o.ifindex), Some(12));
    // The VPC id does not change when a vSwitch is added to the VPC.
    let vpc = s.vswitches["vsw-demo"].dp_id;
    assert!(d.ports.iter().all(|p| p.vpc_id == vpc));
}

#[test]
fn desired_missing_interface_is_an_error_or_a_warning() {
    let s = demo_state();
    let partial = |n: &str| if n == "hv-b" { None } else { ifindex(n) };
    match desired(&s, &partial, DataplaneConfig::default()) {
        Err(DesiredError::MissingInterface(m)) => {
            assert_eq!(m.interface, "hv-b");
            assert!(m.to_string().contains("ENI \"eni-b\""), "{m}");
        }
        other => panic!("expected a missing interface, got {other:?}"),
    }
    let (d, missing) = desired_lenient(&s, &partial, DataplaneConfig::default()).unwrap();
    assert_eq!(missing.len(), 1);
    assert_eq!(d.ports.len(), 3);
    assert_eq!(d.havips[0].bindings.len(), 1);
}

#[test]
fn desired_eips_are_the_associated_ones_keyed_by_their_havip() {
    let mut s = demo_state();
    s.eips.clear();
    for (id, address, havip) in [
        ("eip-on", [198, 51, 100, 10], Some("havip-demo")),
        ("eip-free", [198, 51, 100, 11], None),
        ("eip-dangling", [198, 51, 100, 12], Some("havip-gone")),
    ] {
        s.eips.insert(
            id.to_owned(),
            Eip {
                id: id.to_owned(),
                address: address.into(),
                havip: havip.map(str::to_owned),
            },
        );
    }
    let d = desired(&s, &ifindex, DataplaneConfig::default()).unwrap();
    let h = &d.havips[0];
    let eips: Vec<([u8; 4], HavipKey, u32)> = d
        .eips
        .iter()
        .map(|e| (e.address, e.havip, e.havip_id))
        .collect();
    assert_eq!(eips, vec![([198, 51, 100, 10], h.key, h.id)]);
}
