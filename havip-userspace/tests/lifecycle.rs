//! Resource lifecycle: DeleteVpc/VSwitch/Instance/Eni/Uplink, ModifyEni,
//! ModifyHaVipAttribute and UnassociateHaVip with force, through the API
//! (and `havipctl` for the refusals): typed codes, state unchanged on
//! refusal, bindings and owners cleaned up, and the data plane's desired
//! content following.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use havip::{
    api::Deleted,
    control::{desired::desired, HaVipView},
    model::*,
};
use havip_common::DataplaneConfig;

fn owner_on(srv: &Server, havip: &str, mac: &str) {
    srv.cp()
        .apply(Op::RecordOwner(RecordOwner {
            havip: havip.into(),
            owner: ObservedOwner {
                ifindex: 7,
                mac: mac.parse().unwrap(),
                epoch: 4,
                changed_ns: 1,
            },
        }))
        .unwrap();
}

/// Every interface resolves (ifindex = a hash of the name's length and
/// last byte, unique enough for the fixture).
fn ifindex(name: &str) -> Option<u32> {
    let last = u32::from(*name.as_bytes().last()?);
    Some(1000 * name.len() as u32 + last)
}

#[test]
fn delete_vswitch_and_vpc_refused_while_in_use() {
    let (srv, c) = Server::with_fixture();
    let vswitch = |id: &str| DeleteVSwitch { id: id.into() }.into();
    #[rustfmt::skip]
    refusals(&srv, &[
        ("DependencyViolation.VSwitch", vswitch("vsw-2"), "vswitch delete vsw-2"),
        ("DependencyViolation.Vpc", DeleteVpc { id: "vpc-1".into() }.into(), "vpc delete vpc-1"),
        ("NotFound.VSwitch", vswitch("nope"), "vswitch delete nope"),
    ]);
    // Emptying vsw-2 (instance i-x and its primary ENI) lets it go.
    let d: Deleted = c.apply(DeleteInstance { id: "i-x".into() }).unwrap();
    assert_eq!(d.deleted, "i-x");
    let s = srv.state();
    assert!(!s.instances.contains_key("i-x"));
    assert!(!s.enis.contains_key("eni-x"), "primary ENI goes with it");
    srv.ctl_ok(&["vswitch", "delete", "vsw-2"]);
    assert!(!srv.state().vswitches.contains_key("vsw-2"));
    // A new vSwitch reuses the free data-plane id, never a used one.
    let v: VSwitch = c
        .apply(vswitch_op(
            "vsw-3",
            "vpc-1",
            "10.0.3.0/24",
            "02:00:00:00:00:03",
        ))
        .unwrap();
    let used: Vec<u32> = srv
        .state()
        .vswitches
        .values()
        .filter(|x| x.id != "vsw-3")
        .map(|x| x.dp_id)
        .collect();
    assert!(!used.contains(&v.dp_id));
}

/// HaVip "h" in vsw-1 with `members` bound.
fn havip_h_bound_to(c: &havip::api::Client, members: [Member; 2]) {
    create_havip(c, "h", "vsw-1");
    for m in members {
        c.associate_havip("h", m).unwrap();
    }
}

#[test]
fn delete_bound_instance_drops_bindings_and_owner() {
    let (srv, c) = Server::with_fixture();
    havip_h_bound_to(&c, [Member::instance("i-0"), Member::instance("i-1")]);
    c.set_master("h", Some("i-0")).unwrap();
    owner_on(&srv, "h", "02:00:00:00:01:00"); // eni-0, i-0's primary ENI
    assert_eq!(
        c.get_havip("h").unwrap().owner_member.as_deref(),
        Some("i-0")
    );

    let _: Deleted = c.apply(DeleteInstance { id: "i-0".into() }).unwrap();
    let s = srv.state();
    let h = &s.havips["h"];
    assert_eq!(h.bindings, ["i-1"]);
    assert_eq!(h.initial_owner, None, "the initial owner went with it");
    assert!(!s.owners["h"].has_owner(), "the owner is cleared");
    assert_eq!(s.owners["h"].epoch, 4, "epoch kept");
    assert!(!s.enis.contains_key("eni-0"), "primary ENI deleted");
    assert_eq!(s.enis["eni-0b"].instance, None, "secondary ENI detached");
    assert!(s.havips_of_instance("i-0").is_empty());
    // A new instance with the old id starts with nothing.
    let _: Instance = c
        .apply(CreateInstance {
            id: "i-0".into(),
            vswitch: "vsw-1".into(),
        })
        .unwrap();
    assert!(srv.state().havips_of_instance("i-0").is_empty());
}

#[test]
fn delete_bound_eni_drops_binding_port_and_owner() {
    let (srv, c) = Server::with_fixture();
    havip_h_bound_to(&c, [Member::eni("eni-0b"), Member::eni("eni-1")]);
    owner_on(&srv, "h", "02:00:00:00:01:b0"); // eni-0b
    let before = desired(&srv.state(), &ifindex, DataplaneConfig::default()).unwrap();
    let port = ifindex("hv-0b").unwrap();
    assert!(before.ports.iter().any(|p| p.ifindex == port));
    assert!(before.havips[0].bindings.iter().any(|b| b.ifindex == port));

    // The primary ENI of an instance goes only with it.
    let primary = DeleteEni { id: "eni-1".into() };
    refused(&srv, "DependencyViolation.Eni", primary, "eni delete eni-1");
    srv.ctl_ok(&["eni", "delete", "eni-0b"]);
    let s = srv.state();
    assert_eq!(s.havips["h"].bindings, ["eni-1"]);
    assert!(!s.owners["h"].has_owner());
    let after = desired(&s, &ifindex, DataplaneConfig::default()).unwrap();
    assert!(!after.ports.iter().any(|p| p.ifindex == port), "port gone");
    assert!(
        !after.havips[0].bindings.iter().any(|b| b.ifindex == port),
        "binding gone"
    );
    assert_eq!(after.havips[0].bindings.len(), 1);
}

#[test]
fn delete_uplink() {
    let (srv, c) = Server::with_fixture();
    let _: Uplink = c
        .apply(CreateUplink {
            interface: "hv-up".into(),
            vswitch: "vsw-1".into(),
        })
        .unwrap();
    let vsw = DeleteVSwitch { id: "vsw-1".into() };
    refused(
        &srv,
        "DependencyViolation.VSwitch",
        vsw,
        "vswitch delete vsw-1",
    );
    srv.ctl_ok(&["uplink", "delete", "hv-up"]);
    assert!(srv.state().uplinks.is_empty());
    let gone = DeleteUplink {
        interface: "hv-up".into(),
    };
    refused(&srv, "NotFound.Uplink", gone, "uplink delete hv-up");
}

#[test]
fn modify_eni_interface_and_reuse_of_the_old_name() {
    let (srv, c) = Server::with_fixture();
    let rename = |interface: &str| {
        let op = ModifyEni {
            id: "eni-0".into(),
            interface: interface.into(),
        };
        op.into()
    };
    #[rustfmt::skip]
    refusals(&srv, &[
        ("Conflict.InterfaceInUse", rename("hv-1"), "eni modify eni-0 --interface hv-1"),
        ("InvalidParameter.Interface", rename("a/b"), "eni modify eni-0 --interface a/b"),
    ]);
    // eni-x (vsw-2) moves to a new tap; its old name is reused by an ENI
    // of vsw-1, which must not inherit vsw-2.
    let e: Eni = c
        .apply(ModifyEni {
            id: "eni-x".into(),
            interface: "hv-x2".into(),
        })
        .unwrap();
    assert_eq!(e.interface, "hv-x2");
    let _: Eni = c
        .apply(eni_op(
            "eni-n",
            "vsw-1",
            "02:00:00:00:01:77",
            "hv-x",
            None,
            false,
        ))
        .unwrap();
    let s = srv.state();
    let d = desired(&s, &ifindex, DataplaneConfig::default()).unwrap();
    let port = |name| {
        let i = ifindex(name).unwrap();
        d.ports.iter().find(|p| p.ifindex == i).cloned().unwrap()
    };
    assert_eq!(port("hv-x").vswitch_id, s.vswitches["vsw-1"].dp_id);
    assert_eq!(port("hv-x2").vswitch_id, s.vswitches["vsw-2"].dp_id);
}

#[test]
fn modify_havip_attribute() {
    let (srv, c) = Server::with_fixture();
    create_havip(&c, "h", "vsw-1");
    let v: HaVipView = c
        .apply(ModifyHaVipAttribute {
            id: "h".into(),
            name: Some("db".into()),
            description: Some("primary database".into()),
        })
        .unwrap();
    assert_eq!(
        (v.name.as_deref(), v.description.as_deref()),
        (Some("db"), Some("primary database"))
    );
    // Left out keeps, "" clears.
    let out = srv.ctl_ok(&["havip", "modify", "h", "--description", ""]);
    assert!(out.contains("db"), "{out}");
    let h = &srv.state().havips["h"];
    assert_eq!(
        (h.name.as_deref(), h.description.as_deref()),
        (Some("db"), None)
    );
    let long = "x".repeat(129);
    let modify = |id: &str, name: &str| {
        let op = ModifyHaVipAttribute {
            id: id.into(),
            name: Some(name.into()),
            description: None,
        };
        op.into()
    };
    #[rustfmt::skip]
    refusals(&srv, &[
        ("InvalidParameter.Name", modify("h", &long), format!("havip modify h --name {long}")),
        ("NotFound.HaVip", modify("nope", "x"), "havip modify nope --name x".into()),
    ]);
}

#[test]
fn unassociate_owner_needs_force() {
    let (srv, c) = Server::with_fixture();
    havip_h_bound_to(&c, [Member::instance("i-2"), Member::instance("i-3")]);
    owner_on(&srv, "h", "02:00:00:00:01:02");
    let owner = unassociate("h", Member::instance("i-2"));
    refused(
        &srv,
        "Conflict.MemberIsOwner",
        owner,
        "havip unassociate h --instance i-2",
    );
    let out = srv.ctl_ok(&["havip", "unassociate", "h", "--instance", "i-2", "--force"]);
    assert!(out.contains("i-3"), "{out}");
    let s = srv.state();
    assert_eq!(s.havips["h"].bindings, ["i-3"]);
    assert!(!s.owners["h"].has_owner());
    // Through the REST path too: `force` next to the member.
    c.associate_havip("h", Member::instance("i-2")).unwrap();
    owner_on(&srv, "h", "02:00:00:00:01:02");
    let (status, _) = c
        .raw(
            "POST",
            "/v1/havips/h/unassociate",
            Some(br#"{"instance": "i-2", "force": true}"#),
        )
        .unwrap();
    assert_eq!(status, 200);
    assert_eq!(srv.state().havips["h"].bindings, ["i-3"]);
}

#[test]
fn generic_op_endpoint_and_client_reuse_one_connection() {
    let (srv, c) = Server::with_fixture();
    let (status, body) = c
        .raw(
            "POST",
            "/v1/ops",
            Some(br#"{"op": "create_havip", "id": "g", "vswitch": "vsw-1"}"#),
        )
        .unwrap();
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
    let (status, body) = c
        .raw("POST", "/v1/ops", Some(br#"{"op": "launch_rockets"}"#))
        .unwrap();
    assert_eq!(status, 400);
    assert!(String::from_utf8_lossy(&body).contains("InvalidParameter.Body"));
    // Many requests on one client: the kept-alive connection is reused.
    for _ in 0..200 {
        c.associate_havip("g", Member::instance("i-4")).unwrap();
        c.unassociate_havip("g", Member::instance("i-4")).unwrap();
    }
    assert!(srv.state().havips["g"].bindings.is_empty());
}
