//! Unit tests of the validation core.

#![allow(clippy::unwrap_used, clippy::expect_used)]
use super::*;
use crate::model::*;

/// VPC `vpc-1` (10.0.0.0/16) with vSwitches `vsw-1` (10.0.1.0/24) and
/// `vsw-2` (10.0.2.0/24); instances `i-0..i-11` in vsw-1 each with a
/// primary ENI `eni-N`, plus `i-x` in vsw-2 with `eni-x`.
fn base() -> State {
    let mut s = State::default();
    let mut run = |op: Op| s = apply_to(&s, &op).expect("setup op");
    run(Op::CreateVpc(CreateVpc {
        id: "vpc-1".into(),
        cidr: "10.0.0.0/16".parse().unwrap(),
    }));
    for (n, id) in ["vsw-1", "vsw-2"].iter().enumerate() {
        run(Op::CreateVSwitch(CreateVSwitch {
            vni: None,
            id: (*id).into(),
            vpc: "vpc-1".into(),
            cidr: format!("10.0.{}.0/24", n + 1).parse().unwrap(),
            gateway_mac: "02:00:00:00:00:01".parse().unwrap(),
        }));
    }
    for i in 0..12 {
        run(Op::CreateInstance(CreateInstance {
            id: format!("i-{i}"),
            vswitch: "vsw-1".into(),
        }));
        run(Op::CreateEni(CreateEni {
            host: None,
            id: format!("eni-{i}"),
            vswitch: "vsw-1".into(),
            mac: format!("02:00:00:00:01:{i:02x}").parse().unwrap(),
            interface: format!("hv-{i}"),
            instance: Some(format!("i-{i}")),
            primary: true,
        }));
    }
    run(Op::CreateInstance(CreateInstance {
        id: "i-x".into(),
        vswitch: "vsw-2".into(),
    }));
    run(Op::CreateEni(CreateEni {
        host: None,
        id: "eni-x".into(),
        vswitch: "vsw-2".into(),
        mac: "02:00:00:00:02:01".parse().unwrap(),
        interface: "hv-x".into(),
        instance: Some("i-x".into()),
        primary: true,
    }));
    s
}

/// CreateHaVip in `vswitch`, `id` and `addr` allocated when `None`.
fn create_havip(vswitch: &str, id: Option<&str>, addr: Option<&str>) -> Op {
    Op::CreateHaVip(CreateHaVip {
        id: id.map(str::to_owned),
        vswitch: vswitch.into(),
        address: addr.map(|a| a.parse().unwrap()),
        ..Default::default()
    })
}

fn havip(s: &mut State, id: &str, addr: Option<&str>) {
    *s = apply_to(s, &create_havip("vsw-1", Some(id), addr)).expect("create havip");
}

fn refused(s: &State, op: Op, code: &str) -> OpError {
    let e = apply(s, &op).expect_err(code);
    assert_eq!(e.code(), code, "{e}");
    e
}

/// Every `(op, code)`: `op` is refused on `s` with `code`.
fn refusals(s: &State, table: Vec<(Op, &str)>) {
    for (op, code) in table {
        refused(s, op, code);
    }
}

fn assoc(h: &str, m: Member) -> Op {
    Op::AssociateHaVip(AssociateHaVip {
        havip: h.into(),
        member: m,
    })
}

fn unassoc(h: &str, m: Member, force: bool) -> Op {
    Op::UnassociateHaVip(UnassociateHaVip {
        havip: h.into(),
        member: m,
        force,
    })
}

fn delete_havip(id: &str) -> Op {
    Op::DeleteHaVip(DeleteHaVip { id: id.into() })
}

/// SetQuota of the three quotas (`None` keeps one).
fn set_quota(account: Option<usize>, vpc: Option<usize>, routes: Option<usize>) -> Op {
    Op::SetQuota(SetQuota {
        havips_per_account: account,
        havips_per_vpc: vpc,
        havip_routes_per_vpc: routes,
    })
}

#[test]
fn allocation_skips_reserved_and_used() {
    let mut s = base();
    havip(&mut s, "h1", None);
    assert_eq!(s.havips["h1"].address.to_string(), "10.0.1.2");
    havip(&mut s, "h2", Some("10.0.1.3"));
    havip(&mut s, "h3", None);
    assert_eq!(s.havips["h3"].address.to_string(), "10.0.1.4");
    let slots: Vec<u32> = s.havips.values().map(|h| h.slot).collect();
    assert_eq!(slots, vec![0, 1, 2]);
    for a in ["10.0.1.0", "10.0.1.1", "10.0.1.255"] {
        refused(
            &s,
            create_havip("vsw-1", None, Some(a)),
            "InvalidParameter.AddressReserved",
        );
    }
    #[rustfmt::skip]
    refusals(&s, vec![
        (create_havip("vsw-1", None, Some("10.0.2.9")), "InvalidParameter.AddressOutsideVSwitch"),
        (create_havip("vsw-1", None, Some("10.0.1.3")), "Conflict.AddressInUse"),
        (create_havip("vsw-1", Some("h1"), None), "Conflict.AlreadyExists"),
    ]);
}

#[test]
fn slots_are_stable_and_reused() {
    let mut s = base();
    havip(&mut s, "a", None);
    havip(&mut s, "b", None);
    havip(&mut s, "c", None);
    s = apply_to(&s, &delete_havip("b")).unwrap();
    havip(&mut s, "d", None);
    assert_eq!(s.havips["a"].slot, 0);
    assert_eq!(s.havips["c"].slot, 2);
    assert_eq!(s.havips["d"].slot, 1);
}

#[test]
fn quotas_per_vpc_and_account() {
    let mut s = base();
    for i in 0..5 {
        havip(&mut s, &format!("h{i}"), None);
    }
    let create = create_havip("vsw-2", None, None);
    refused(&s, create.clone(), "QuotaExceeded.HaVipsPerVpc");
    s = apply_to(&s, &set_quota(None, Some(10), None)).unwrap();
    let e = refused(&s, create.clone(), "QuotaExceeded.HaVipsPerAccount");
    assert!(e.to_string().contains("havips_per_account = 5"), "{e}");
    s = apply_to(&s, &set_quota(Some(6), None, None)).unwrap();
    apply(&s, &create).expect("quota raised");
    refused(
        &s,
        set_quota(Some(usize::MAX), None, None),
        "InvalidParameter.Quota",
    );
}

#[test]
fn binding_limits_and_conflicts() {
    let mut s = base();
    s = apply_to(&s, &set_quota(Some(20), Some(20), None)).unwrap();
    havip(&mut s, "h", None);
    for i in 0..10 {
        s = apply_to(&s, &assoc("h", Member::instance(format!("i-{i}")))).unwrap();
    }
    assert_eq!(s.havips["h"].bindings.len(), 10);
    #[rustfmt::skip]
    refusals(&s, vec![
        (assoc("h", Member::instance("i-10")), "LimitExceeded.BindingsPerHaVip"),
        (assoc("h", Member::instance("i-0")), "Conflict.AlreadyBound"),
        (assoc("h", Member::eni("eni-11")), "Conflict.MixedBindingKinds"),
        (assoc("h", Member::instance("i-x")), "Conflict.DifferentVSwitch"),
        (assoc("nope", Member::instance("i-0")), "NotFound.HaVip"),
        (assoc("h", Member::instance("i-nope")), "NotFound.Instance"),
        (assoc("h", Member::eni("eni-nope")), "NotFound.Eni"),
        (delete_havip("h"), "Conflict.HaVipBound"),
    ]);

    // HaVips per instance: i-11 gets 5 HaVips, the 6th is refused, also
    // through its ENI.
    for n in 0..5 {
        let id = format!("p{n}");
        havip(&mut s, &id, None);
        s = apply_to(&s, &assoc(&id, Member::instance("i-11"))).unwrap();
    }
    havip(&mut s, "p5", None);
    #[rustfmt::skip]
    refusals(&s, vec![
        (assoc("p5", Member::instance("i-11")), "LimitExceeded.HaVipsPerInstance"),
        (assoc("p5", Member::eni("eni-11")), "LimitExceeded.HaVipsPerInstance"),
    ]);
    // ENI bindings count against the instance: i-10 holds 5 via eni-10.
    for n in 0..5 {
        let id = format!("q{n}");
        havip(&mut s, &id, None);
        s = apply_to(&s, &assoc(&id, Member::eni("eni-10"))).unwrap();
    }
    havip(&mut s, "q5", None);
    refused(
        &s,
        assoc("q5", Member::instance("i-10")),
        "LimitExceeded.HaVipsPerInstance",
    );
}

#[test]
fn unassociate_clears_owner_and_initial_owner() {
    let mut s = base();
    havip(&mut s, "h", None);
    s = apply_to(&s, &assoc("h", Member::instance("i-0"))).unwrap();
    s = apply_to(&s, &assoc("h", Member::instance("i-1"))).unwrap();
    s = apply_to(
        &s,
        &Op::SetInitialOwner(SetInitialOwner {
            havip: "h".into(),
            member: Some("i-0".into()),
        }),
    )
    .unwrap();
    refused(
        &s,
        Op::SetInitialOwner(SetInitialOwner {
            havip: "h".into(),
            member: Some("i-5".into()),
        }),
        "InvalidParameter.OwnerNotBound",
    );
    let owner = ObservedOwner {
        ifindex: 7,
        mac: s.enis["eni-0"].mac,
        epoch: 3,
        changed_ns: 1,
    };
    s = apply_to(
        &s,
        &Op::RecordOwner(RecordOwner {
            havip: "h".into(),
            owner,
        }),
    )
    .unwrap();
    assert_eq!(s.member_with_mac(&s.havips["h"], owner.mac), Some("i-0"));
    // Unbinding the standby keeps the owner.
    let s1 = apply_to(&s, &unassoc("h", Member::instance("i-1"), false)).unwrap();
    assert_eq!(s1.owners["h"], owner);
    // The owner is unassociated only with force ...
    refused(
        &s,
        unassoc("h", Member::instance("i-0"), false),
        "Conflict.MemberIsOwner",
    );
    // ... which clears it (epoch kept) and the initial owner.
    let s2 = apply_to(&s, &unassoc("h", Member::instance("i-0"), true)).unwrap();
    assert!(!s2.owners["h"].has_owner());
    assert_eq!(s2.owners["h"].epoch, 3);
    assert_eq!(s2.havips["h"].initial_owner, None);
    refused(
        &s2,
        unassoc("h", Member::instance("i-0"), false),
        "NotFound.Binding",
    );
    let s3 = apply_to(&s2, &unassoc("h", Member::instance("i-1"), false)).unwrap();
    assert_eq!(s3.havips["h"].binding_kind, None);
    // Now ENIs may be bound.
    apply(&s3, &assoc("h", Member::eni("eni-3"))).unwrap();
}

fn create_eip(id: Option<&str>, address: &str) -> Op {
    Op::CreateEip(CreateEip {
        id: id.map(str::to_owned),
        address: address.parse().unwrap(),
    })
}

fn associate_eip(eip: &str, havip: &str) -> Op {
    Op::AssociateEip(AssociateEip {
        eip: eip.into(),
        havip: havip.into(),
    })
}

#[test]
fn eips_and_routes() {
    let mut s = base();
    havip(&mut s, "h", None);
    havip(&mut s, "g", None);
    s = apply_to(&s, &create_eip(Some("e"), "203.0.113.1")).unwrap();
    #[rustfmt::skip]
    refusals(&s, vec![
        (create_eip(None, "203.0.113.1"), "Conflict.AddressInUse"),
        (create_eip(None, "255.255.255.255"), "InvalidParameter.Address"),
    ]);
    s = apply_to(&s, &associate_eip("e", "h")).unwrap();
    #[rustfmt::skip]
    refusals(&s, vec![
        (delete_havip("h"), "Conflict.HaVipHasEip"),
        (Op::DeleteEip(DeleteEip { id: "e".into() }), "Conflict.EipAssociated"),
        (associate_eip("e", "g"), "Conflict.EipAssociated"),
    ]);
    let unassociate = Op::UnassociateEip(UnassociateEip { eip: "e".into() });
    s = apply_to(&s, &unassociate).unwrap();
    refused(&s, unassociate, "Conflict.EipNotAssociated");

    let route = |n: u32| {
        Op::CreateRoute(CreateRoute {
            id: Some(format!("r{n}")),
            vpc: "vpc-1".into(),
            destination: format!("192.168.{n}.0/24").parse().unwrap(),
            next_hop_havip: "h".into(),
        })
    };
    for n in 0..5 {
        s = apply_to(&s, &route(n)).unwrap();
    }
    refused(&s, route(5), "QuotaExceeded.HaVipRoutesPerVpc");
    refused(&s, delete_havip("h"), "Conflict.HaVipIsRouteNextHop");
    let mut dup = route(0);
    if let Op::CreateRoute(CreateRoute { id, .. }) = &mut dup {
        *id = Some("r-dup".into());
    }
    s = apply_to(&s, &set_quota(None, None, Some(10))).unwrap();
    refused(&s, dup, "Conflict.RouteDestinationExists");
    refused(
        &s,
        Op::CreateRoute(CreateRoute {
            id: None,
            vpc: "vpc-1".into(),
            destination: "10.0.1.128/25".parse().unwrap(),
            next_hop_havip: "h".into(),
        }),
        "InvalidParameter.RouteDestination",
    );
    for n in 0..5 {
        s = apply_to(
            &s,
            &Op::DeleteRoute(DeleteRoute {
                id: format!("r{n}"),
            }),
        )
        .unwrap();
    }
    refused(
        &s,
        Op::DeleteRoute(DeleteRoute { id: "r0".into() }),
        "NotFound.Route",
    );
    apply(&s, &delete_havip("h")).unwrap();
}

#[test]
fn setup_conflicts() {
    let s = base();
    // (CIDR, gateway MAC, refusal) of a new vSwitch in vpc-1.
    for (cidr, mac, code) in [
        ("10.0.1.128/25", "02:00:00:00:00:01", "Conflict.CidrOverlap"),
        ("10.1.0.0/24", "02:00:00:00:00:01", "InvalidParameter.Cidr"),
        ("10.0.3.0/24", "ff:ff:ff:ff:ff:ff", "InvalidParameter.Mac"),
    ] {
        let op = Op::CreateVSwitch(CreateVSwitch {
            vni: None,
            id: "vsw-3".into(),
            vpc: "vpc-1".into(),
            cidr: cidr.parse().unwrap(),
            gateway_mac: mac.parse().unwrap(),
        });
        refused(&s, op, code);
    }
    let eni = |id: &str, mac: &str, ifname: &str, primary: bool| {
        Op::CreateEni(CreateEni {
            host: None,
            id: id.into(),
            vswitch: "vsw-1".into(),
            mac: mac.parse().unwrap(),
            interface: ifname.into(),
            instance: Some("i-0".into()),
            primary,
        })
    };
    #[rustfmt::skip]
    refusals(&s, vec![
        (eni("e2", "02:00:00:00:01:00", "hv-new", false), "Conflict.MacInUse"),
        (eni("e2", "02:00:00:00:09:00", "hv-0", false), "Conflict.InterfaceInUse"),
        (eni("e2", "02:00:00:00:09:00", "hv-new", true), "Conflict.PrimaryEniExists"),
        (eni("e 2", "02:00:00:00:09:00", "hv-new", false), "InvalidParameter.Id"),
        (eni("e2", "02:00:00:00:09:00", "this-name-is-too-long", false), "InvalidParameter.Interface"),
    ]);
    apply(&s, &eni("e2", "02:00:00:00:09:00", "hv-new", false)).unwrap();
}

#[test]
fn first_free_slot_finds_gaps() {
    assert_eq!(first_free_slot([].into_iter()), Some(0));
    assert_eq!(first_free_slot([0, 1, 2].into_iter()), Some(3));
    assert_eq!(first_free_slot([0, 1, 3].into_iter()), Some(2));
    assert_eq!(first_free_slot([1, 2].into_iter()), Some(0));
}

/// Two hypervisors both have a `tap0`: interface names are unique per
/// host, not across hosts; without a host (single host) they stay unique.
#[test]
fn interface_names_are_per_host() {
    let s = base();
    let eni = |id: &str, mac: &str, ifname: &str, host: Option<&str>| {
        Op::CreateEni(CreateEni {
            host: host.map(str::to_owned),
            id: id.into(),
            vswitch: "vsw-1".into(),
            mac: mac.parse().unwrap(),
            interface: ifname.into(),
            instance: None,
            primary: false,
        })
    };
    let s = apply_to(&s, &eni("e-h1", "02:00:00:00:09:01", "tap0", Some("h1"))).unwrap();
    // Same name on another host: accepted.
    let s = apply_to(&s, &eni("e-h2", "02:00:00:00:09:02", "tap0", Some("h2"))).unwrap();
    assert_eq!(s.enis["e-h1"].interface, s.enis["e-h2"].interface);
    // Same name on the same host: refused, naming that host's ENI.
    let e = refused(
        &s,
        eni("e-h2b", "02:00:00:00:09:03", "tap0", Some("h2")),
        "Conflict.InterfaceInUse",
    );
    assert!(e.to_string().contains("e-h2"), "{e}");
    // No host (single host): the name is taken by any ENI.
    refused(
        &s,
        eni("e-any", "02:00:00:00:09:04", "tap0", None),
        "Conflict.InterfaceInUse",
    );
    // ModifyEni follows the same rule: h2's ENI may not take h1's other
    // name on h2 twice, but may rename to a name used only on h1.
    let s = apply_to(&s, &eni("e-h1b", "02:00:00:00:09:05", "tap1", Some("h1"))).unwrap();
    let s = apply_to(
        &s,
        &Op::ModifyEni(ModifyEni {
            id: "e-h2".into(),
            interface: "tap1".into(),
        }),
    )
    .unwrap();
    assert_eq!(s.enis["e-h2"].interface, "tap1");
    let s = apply_to(&s, &eni("e-h2c", "02:00:00:00:09:06", "tap0", Some("h2"))).unwrap();
    refused(
        &s,
        Op::ModifyEni(ModifyEni {
            id: "e-h2c".into(),
            interface: "tap1".into(),
        }),
        "Conflict.InterfaceInUse",
    );
    // An uplink is on every host: its name conflicts with any ENI's.
    refused(
        &s,
        Op::CreateUplink(CreateUplink {
            interface: "tap0".into(),
            vswitch: "vsw-1".into(),
        }),
        "Conflict.InterfaceInUse",
    );
    // Single host (no hosts anywhere): unchanged, names are unique.
    let s1 = apply_to(&base(), &eni("e-a", "02:00:00:00:09:07", "tap9", None)).unwrap();
    #[rustfmt::skip]
    refusals(&s1, vec![
        (eni("e-b", "02:00:00:00:09:08", "tap9", None), "Conflict.InterfaceInUse"),
        (eni("e-b", "02:00:00:00:09:08", "tap9", Some("h1")), "Conflict.InterfaceInUse"),
    ]);
}
