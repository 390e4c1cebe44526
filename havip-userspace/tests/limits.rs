//! Every limit, quota and conflict through the HTTP API and the real
//! `havipctl`, each asserting the error code and an unchanged state.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;

use havip::{api, model::*};

// Limits and quotas

#[test]
fn quota_havips_per_vpc() {
    let (srv, c) = Server::with_fixture();
    c.set_quotas(&SetQuota {
        havips_per_account: Some(50),
        ..Default::default()
    })
    .unwrap();
    for n in 0..5 {
        create_havip(&c, &format!("h{n}"), "vsw-1");
    }
    let req = havip_in("vsw-2");
    refused(
        &srv,
        "QuotaExceeded.HaVipsPerVpc",
        req.clone(),
        "havip create --vswitch vsw-2",
    );
    // The message names the quota.
    let e = c.create_havip(&req).unwrap_err();
    assert!(e.to_string().contains("havips_per_vpc = 5"), "{e}");
    // Raising the quota (through the CLI) lets it through.
    srv.ctl_ok(&["quota", "set", "--havips-per-vpc", "6"]);
    c.create_havip(&req).unwrap();
}

#[test]
fn quota_havips_per_account() {
    let (srv, c) = Server::with_fixture();
    // A second VPC so the per-VPC quota is not what stops us.
    c.create_vpc(&CreateVpc {
        id: "vpc-2".into(),
        cidr: "172.16.0.0/16".parse().unwrap(),
    })
    .unwrap();
    c.create_vswitch(&vswitch_op(
        "vsw-b",
        "vpc-2",
        "172.16.1.0/24",
        "02:00:00:00:00:02",
    ))
    .unwrap();
    for (prefix, n, vswitch) in [("a", 3, "vsw-1"), ("b", 2, "vsw-b")] {
        for n in 0..n {
            create_havip(&c, &format!("{prefix}{n}"), vswitch);
        }
    }
    let too_big = SetQuota {
        havips_per_account: Some(1 << 40),
        ..Default::default()
    };
    refused(
        &srv,
        "QuotaExceeded.HaVipsPerAccount",
        havip_in("vsw-b"),
        "havip create --vswitch vsw-b",
    );
    let q = c.quotas().unwrap();
    assert_eq!(
        (
            q.havips_per_account,
            q.havips_per_vpc,
            q.havip_routes_per_vpc
        ),
        (5, 5, 5)
    );
    refused(
        &srv,
        "InvalidParameter.Quota",
        too_big,
        "quota set --havips-per-account 1099511627776",
    );
}

#[test]
fn quota_havip_routes_per_vpc() {
    let (srv, c) = Server::with_fixture();
    create_havip(&c, "h", "vsw-1");
    for n in 0..5 {
        c.create_route(&CreateRoute {
            id: Some(format!("r{n}")),
            ..route("vpc-1", &format!("192.168.{n}.0/24"), "h")
        })
        .unwrap();
    }
    let req = route("vpc-1", "192.168.9.0/24", "h");
    refused(
        &srv,
        "QuotaExceeded.HaVipRoutesPerVpc",
        req.clone(),
        "route create --vpc vpc-1 --destination 192.168.9.0/24 --next-hop h",
    );
    // Deleting one (through the CLI) makes room again.
    srv.ctl_ok(&["route", "delete", "r4"]);
    c.create_route(&req).unwrap();
}

#[test]
fn bindings_per_havip() {
    let (srv, c) = Server::with_fixture();
    // The 11th binding is refused, for instances and for ENIs alike.
    let instance = |i: usize| Member::instance(format!("i-{i}"));
    let eni = |i: usize| Member::eni(format!("eni-{i}"));
    for (havip, member, first, cli) in [
        (
            "h",
            &instance as &dyn Fn(usize) -> Member,
            0,
            "havip associate h --instance i-10",
        ),
        ("g", &eni, 1, "havip associate g --eni eni-11"),
    ] {
        create_havip(&c, havip, "vsw-1");
        for i in first..first + 10 {
            c.associate_havip(havip, member(i)).unwrap();
        }
        let code = "LimitExceeded.BindingsPerHaVip";
        refused(&srv, code, associate(havip, member(first + 10)), cli);
        let e = c.associate_havip(havip, member(first + 10)).unwrap_err();
        assert!(e.to_string().contains("at most 10"), "{e}");
    }
}

#[test]
fn havips_per_instance_counts_eni_bindings() {
    let (srv, c) = Server::with_raised_quotas();
    // i-0 holds 3 HaVips directly and 2 through its ENIs (eni-0, eni-0b).
    for n in 0..3 {
        create_havip(&c, &format!("d{n}"), "vsw-1");
        c.associate_havip(&format!("d{n}"), Member::instance("i-0"))
            .unwrap();
    }
    create_havip(&c, "e0", "vsw-1");
    c.associate_havip("e0", Member::eni("eni-0")).unwrap();
    create_havip(&c, "e1", "vsw-1");
    c.associate_havip("e1", Member::eni("eni-0b")).unwrap();
    // Binding the second ENI of the same instance to e0 is no new HaVip.
    c.associate_havip("e0", Member::eni("eni-0b")).unwrap();
    create_havip(&c, "n", "vsw-1");
    let code = "LimitExceeded.HaVipsPerInstance";
    #[rustfmt::skip]
    refusals(&srv, &[
        (code, associate("n", Member::instance("i-0")), "havip associate n --instance i-0"),
        (code, associate("n", Member::eni("eni-0")), "havip associate n --eni eni-0"),
    ]);
    let e = c.associate_havip("n", Member::eni("eni-0b")).unwrap_err();
    assert!(
        e.to_string().contains("at most 5 HaVips per instance"),
        "{e}"
    );
    // Freeing one makes room.
    c.unassociate_havip("d0", Member::instance("i-0")).unwrap();
    c.associate_havip("n", Member::instance("i-0")).unwrap();
}

#[test]
fn binding_conflicts() {
    let (srv, c) = Server::with_fixture();
    create_havip(&c, "h", "vsw-1");
    create_havip(&c, "g", "vsw-1");
    c.associate_havip("h", Member::instance("i-1")).unwrap();
    let (inst, eni) = (Member::instance, Member::eni);
    #[rustfmt::skip]
    refusals(&srv, &[
        ("Conflict.MixedBindingKinds", associate("h", eni("eni-2")), "havip associate h --eni eni-2"),
        ("Conflict.DifferentVSwitch", associate("h", inst("i-x")), "havip associate h --instance i-x"),
        ("Conflict.DifferentVSwitch", associate("g", eni("eni-x")), "havip associate g --eni eni-x"),
        ("Conflict.AlreadyBound", associate("h", inst("i-1")), "havip associate h --instance i-1"),
        ("NotFound.Binding", unassociate("h", inst("i-2")), "havip unassociate h --instance i-2"),
        ("NotFound.HaVip", associate("nope", inst("i-1")), "havip associate nope --instance i-1"),
        ("NotFound.Instance", associate("h", inst("i-nope")), "havip associate h --instance i-nope"),
        ("NotFound.Eni", associate("g", eni("eni-nope")), "havip associate g --eni eni-nope"),
        ("InvalidParameter.OwnerNotBound", set_master("h", Some("i-5")), "havip set-master h --member i-5"),
    ]);
}

#[test]
fn delete_refusals() {
    let (srv, c) = Server::with_fixture();
    create_havip(&c, "h", "vsw-1");
    create_havip(&c, "g", "vsw-1");
    let delete = |id: &str| Op::from(DeleteHaVip { id: id.into() });
    c.associate_havip("h", Member::instance("i-1")).unwrap();
    refused(&srv, "Conflict.HaVipBound", delete("h"), "havip delete h");
    c.unassociate_havip("h", Member::instance("i-1")).unwrap();

    c.create_eip(&CreateEip {
        id: Some("e".into()),
        address: "203.0.113.7".parse().unwrap(),
    })
    .unwrap();
    c.associate_eip("e", "h").unwrap();
    #[rustfmt::skip]
    refusals(&srv, &[
        ("Conflict.HaVipHasEip", delete("h"), "havip delete h"),
        ("Conflict.EipAssociated", DeleteEip { id: "e".into() }.into(), "eip delete e"),
        ("Conflict.EipAssociated", associate_eip("e", "g"), "eip associate e --havip g"),
    ]);
    c.unassociate_eip("e").unwrap();
    let again = UnassociateEip { eip: "e".into() };
    refused(
        &srv,
        "Conflict.EipNotAssociated",
        again,
        "eip unassociate e",
    );

    c.create_route(&CreateRoute {
        id: Some("r".into()),
        ..route("vpc-1", "192.168.0.0/24", "h")
    })
    .unwrap();
    #[rustfmt::skip]
    refusals(&srv, &[
        ("Conflict.HaVipIsRouteNextHop", delete("h"), "havip delete h"),
        ("NotFound.HaVip", delete("nope"), "havip delete nope"),
    ]);
    c.delete_route("r").unwrap();
    let gone = DeleteRoute { id: "r".into() };
    refused(&srv, "NotFound.Route", gone, "route delete r");
    srv.ctl_ok(&["havip", "delete", "h"]);
    assert!(!srv.state().havips.contains_key("h"));
}

#[test]
fn address_rules() {
    let (srv, c) = Server::with_fixture();
    // CreateHaVip at `addr` in vsw-1 refused with `code`, as a table row.
    let at = |code: &'static str, addr: &str| {
        let op = CreateHaVip {
            address: Some(addr.parse().unwrap()),
            ..havip_in("vsw-1")
        };
        let cli = format!("havip create --vswitch vsw-1 --address {addr}");
        (code, Op::from(op), cli)
    };
    let mut rows = vec![at("InvalidParameter.AddressOutsideVSwitch", "10.0.2.10")];
    for reserved in ["10.0.1.0", "10.0.1.1", "10.0.1.255"] {
        rows.push(at("InvalidParameter.AddressReserved", reserved));
    }
    refusals(&srv, &rows);
    // Allocation skips the reserved addresses.
    let first = CreateHaVip {
        id: Some("first".into()),
        ..havip_in("vsw-1")
    };
    let v = c.create_havip(&first).unwrap();
    assert_eq!(v.address.to_string(), "10.0.1.2");
    c.create_eip(&CreateEip {
        id: Some("e".into()),
        address: "10.0.1.50".parse().unwrap(),
    })
    .unwrap();
    let eip_at_first = CreateEip {
        id: None,
        address: "10.0.1.2".parse().unwrap(),
    };
    #[rustfmt::skip]
    refusals(&srv, &[
        at("Conflict.AddressInUse", "10.0.1.2"),
        at("Conflict.AddressInUse", "10.0.1.50"),
        ("Conflict.AddressInUse", eip_at_first.into(), "eip create --address 10.0.1.2".into()),
        ("NotFound.VSwitch", havip_in("vsw-9").into(), "havip create --vswitch vsw-9".into()),
        ("Conflict.AlreadyExists", first.into(), "havip create --vswitch vsw-1 --id first".into()),
    ]);
}

#[test]
fn route_conflicts() {
    let (srv, c) = Server::with_fixture();
    create_havip(&c, "h", "vsw-1");
    c.create_vpc(&CreateVpc {
        id: "vpc-2".into(),
        cidr: "172.16.0.0/16".parse().unwrap(),
    })
    .unwrap();
    c.create_route(&CreateRoute {
        id: Some("r".into()),
        ..route("vpc-1", "192.168.0.0/24", "h")
    })
    .unwrap();
    let rows: Vec<_> = [
        ("Conflict.RouteDestinationExists", "vpc-1", "192.168.0.0/24"),
        ("Conflict.DifferentVpc", "vpc-2", "192.168.5.0/24"),
        ("InvalidParameter.RouteDestination", "vpc-1", "10.0.1.0/25"),
        ("NotFound.Vpc", "vpc-9", "192.168.5.0/24"),
    ]
    .into_iter()
    .map(|(code, vpc, dst)| {
        let cli = format!("route create --vpc {vpc} --destination {dst} --next-hop h");
        (code, route(vpc, dst, "h").into(), cli)
    })
    .collect();
    refusals(&srv, &rows);
}

#[test]
fn setup_conflicts() {
    let (srv, _) = Server::with_fixture();
    let vswitch = vswitch_op("vsw-3", "vpc-1", "10.0.1.0/25", "02:00:00:00:00:01");
    let eni = eni_op(
        "eni-new",
        "vsw-1",
        "02:00:00:00:01:00",
        "hv-new",
        None,
        false,
    );
    let vpc = CreateVpc {
        id: "vpc-1".into(),
        cidr: "10.0.0.0/16".parse().unwrap(),
    };
    #[rustfmt::skip]
    refusals(&srv, &[
        ("Conflict.CidrOverlap", vswitch.into(), "vswitch create --id vsw-3 --vpc vpc-1 --cidr 10.0.1.0/25 --gateway-mac 02:00:00:00:00:01"),
        ("Conflict.MacInUse", eni.into(), "eni create --id eni-new --vswitch vsw-1 --mac 02:00:00:00:01:00 --interface hv-new"),
        ("Conflict.AlreadyExists", vpc.into(), "vpc create --id vpc-1 --cidr 10.0.0.0/16"),
    ]);
}

#[test]
fn malformed_requests_are_400_not_panics() {
    let (srv, c) = Server::with_fixture();
    let before = srv.state();
    for (method, path, body) in [
        ("POST", "/v1/havips", "{not json"),
        ("POST", "/v1/havips", "{\"vswitch\": 5}"),
        ("POST", "/v1/havips", "{\"vswitch\": \"vsw-1\", \"bogus\": 1}"),
        ("POST", "/v1/havips", "{\"vswitch\": \"vsw-1\", \"address\": \"10.0.1\"}"),
        ("POST", "/v1/havips/h/associate", "{}"),
        (
            "POST",
            "/v1/havips/h/associate",
            "{\"instance\": \"i-1\", \"eni\": \"eni-1\"}",
        ),
        ("PUT", "/v1/quotas", "[1,2]"),
        ("POST", "/v1/vswitches", "{\"id\": \"v\", \"vpc\": \"vpc-1\", \"cidr\": \"10.0.9.0/24\", \"gateway_mac\": \"zz\"}"),
        ("POST", "/v1/vpcs", ""),
        ("POST", "/v1/vpcs", "{\"id\": \"a\", \"cidr\": \"10.9.0.0/16\", \"id\": \"b\"}"),
        ("POST", "/v1/ops", "{\"op\": \"create_vpc\", \"op\": \"delete_vpc\", \"id\": \"vpc-1\"}"),
        ("POST", "/v1/havips/h/associate", "{\"instance\": \"i-1\", \"instance\": \"i-2\"}"),
    ] {
        let (status, bytes) = c.raw(method, path, Some(body.as_bytes())).unwrap();
        let err: api::ErrorBody = serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{method} {path} {body}: {status} {e}: {}", String::from_utf8_lossy(&bytes)));
        assert_eq!(status, 400, "{method} {path} {body}: {err:?}");
        assert_eq!(err.code, "InvalidParameter.Body", "{body}");
    }
    let (status, bytes) = c.raw("GET", "/v2/nothing", None).unwrap();
    assert_eq!(status, 404);
    let err: api::ErrorBody = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(err.code, "NotFound.Path");
    // A lookup by an id no resource can have says so, and does not repeat it.
    let long = "h".repeat(5_000);
    for path in [
        format!("/v1/havips/{long}"),
        "/v1/havips/a%20b/history".to_owned(),
    ] {
        let (status, bytes) = c.raw("GET", &path, None).unwrap();
        let err: api::ErrorBody = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(
            (status, err.code.as_str()),
            (400, "InvalidParameter.Id"),
            "{path}"
        );
        assert!(err.message.len() < 200, "{path}: {}", err.message);
    }
    // An operation naming a resource nobody has: 404, without the whole id.
    let (status, bytes) = c.raw("DELETE", &format!("/v1/vpcs/{long}"), None).unwrap();
    let err: api::ErrorBody = serde_json::from_slice(&bytes).unwrap();
    assert_eq!((status, err.code.as_str()), (404, "NotFound.Vpc"));
    assert!(err.message.len() < 200, "{}", err.message);
    let (status, bytes) = c.raw("PATCH", "/v1/havips", None).unwrap();
    assert_eq!(status, 405);
    let err: api::ErrorBody = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(err.code, "MethodNotAllowed");
    assert_eq!(srv.state(), before);
}
