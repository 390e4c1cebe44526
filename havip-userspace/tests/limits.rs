//! Every limit, quota and conflict through the HTTP API and the real
//! `havipctl`, each asserting the error code and an unchanged state.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;

use havip::{
    api::{self, Client},
    model::*,
};

// Limits and quotas

#[test]
fn quota_havips_per_vpc() {
    let srv = Server::start();
    let c = srv.client();
    fixture(&c);
    c.set_quotas(&SetQuota {
        havips_per_account: Some(50),
        ..Default::default()
    })
    .unwrap();
    for n in 0..5 {
        create_havip(&c, &format!("h{n}"), "vsw-1");
    }
    let req = CreateHaVip {
        id: None,
        vswitch: "vsw-2".into(),
        address: None,
        ..Default::default()
    };
    refused(
        &srv,
        "QuotaExceeded.HaVipsPerVpc",
        |c| c.create_havip(&req),
        &["havip", "create", "--vswitch", "vsw-2"],
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
    let srv = Server::start();
    let c = srv.client();
    fixture(&c);
    // A second VPC so the per-VPC quota is not what stops us.
    c.create_vpc(&CreateVpc {
        id: "vpc-2".into(),
        cidr: "172.16.0.0/16".parse().unwrap(),
    })
    .unwrap();
    c.create_vswitch(&CreateVSwitch {
        vni: None,
        id: "vsw-b".into(),
        vpc: "vpc-2".into(),
        cidr: "172.16.1.0/24".parse().unwrap(),
        gateway_mac: "02:00:00:00:00:02".parse().unwrap(),
    })
    .unwrap();
    for n in 0..3 {
        create_havip(&c, &format!("a{n}"), "vsw-1");
    }
    for n in 0..2 {
        create_havip(&c, &format!("b{n}"), "vsw-b");
    }
    refused(
        &srv,
        "QuotaExceeded.HaVipsPerAccount",
        |c| {
            c.create_havip(&CreateHaVip {
                id: None,
                vswitch: "vsw-b".into(),
                address: None,
                ..Default::default()
            })
        },
        &["havip", "create", "--vswitch", "vsw-b"],
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
        |c| {
            c.set_quotas(&SetQuota {
                havips_per_account: Some(1 << 40),
                ..Default::default()
            })
        },
        &["quota", "set", "--havips-per-account", "1099511627776"],
    );
}

#[test]
fn quota_havip_routes_per_vpc() {
    let srv = Server::start();
    let c = srv.client();
    fixture(&c);
    create_havip(&c, "h", "vsw-1");
    for n in 0..5 {
        c.create_route(&CreateRoute {
            id: Some(format!("r{n}")),
            vpc: "vpc-1".into(),
            destination: format!("192.168.{n}.0/24").parse().unwrap(),
            next_hop_havip: "h".into(),
        })
        .unwrap();
    }
    refused(
        &srv,
        "QuotaExceeded.HaVipRoutesPerVpc",
        |c| {
            c.create_route(&CreateRoute {
                id: None,
                vpc: "vpc-1".into(),
                destination: "192.168.9.0/24".parse().unwrap(),
                next_hop_havip: "h".into(),
            })
        },
        &[
            "route",
            "create",
            "--vpc",
            "vpc-1",
            "--destination",
            "192.168.9.0/24",
            "--next-hop",
            "h",
        ],
    );
    // Deleting one (through the CLI) makes room again.
    srv.ctl_ok(&["route", "delete", "r4"]);
    c.create_route(&CreateRoute {
        id: None,
        vpc: "vpc-1".into(),
        destination: "192.168.9.0/24".parse().unwrap(),
        next_hop_havip: "h".into(),
    })
    .unwrap();
}

#[test]
fn bindings_per_havip() {
    let srv = Server::start();
    let c = srv.client();
    fixture(&c);
    create_havip(&c, "h", "vsw-1");
    for i in 0..10 {
        c.associate_havip("h", Member::instance(format!("i-{i}")))
            .unwrap();
    }
    refused(
        &srv,
        "LimitExceeded.BindingsPerHaVip",
        |c| c.associate_havip("h", Member::instance("i-10")),
        &["havip", "associate", "h", "--instance", "i-10"],
    );
    let e = c
        .associate_havip("h", Member::instance("i-10"))
        .unwrap_err();
    assert!(e.to_string().contains("at most 10"), "{e}");
    // Also for ENIs.
    create_havip(&c, "g", "vsw-1");
    for i in 1..11 {
        c.associate_havip("g", Member::eni(format!("eni-{i}")))
            .unwrap();
    }
    refused(
        &srv,
        "LimitExceeded.BindingsPerHaVip",
        |c| c.associate_havip("g", Member::eni("eni-11")),
        &["havip", "associate", "g", "--eni", "eni-11"],
    );
}

#[test]
fn havips_per_instance_counts_eni_bindings() {
    let srv = Server::start();
    let c = srv.client();
    fixture(&c);
    raise_quotas(&c);
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
    refused(
        &srv,
        "LimitExceeded.HaVipsPerInstance",
        |c| c.associate_havip("n", Member::instance("i-0")),
        &["havip", "associate", "n", "--instance", "i-0"],
    );
    refused(
        &srv,
        "LimitExceeded.HaVipsPerInstance",
        |c| c.associate_havip("n", Member::eni("eni-0")),
        &["havip", "associate", "n", "--eni", "eni-0"],
    );
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
    let srv = Server::start();
    let c = srv.client();
    fixture(&c);
    create_havip(&c, "h", "vsw-1");
    c.associate_havip("h", Member::instance("i-1")).unwrap();
    refused(
        &srv,
        "Conflict.MixedBindingKinds",
        |c| c.associate_havip("h", Member::eni("eni-2")),
        &["havip", "associate", "h", "--eni", "eni-2"],
    );
    refused(
        &srv,
        "Conflict.DifferentVSwitch",
        |c| c.associate_havip("h", Member::instance("i-x")),
        &["havip", "associate", "h", "--instance", "i-x"],
    );
    create_havip(&c, "g", "vsw-1");
    refused(
        &srv,
        "Conflict.DifferentVSwitch",
        |c| c.associate_havip("g", Member::eni("eni-x")),
        &["havip", "associate", "g", "--eni", "eni-x"],
    );
    refused(
        &srv,
        "Conflict.AlreadyBound",
        |c| c.associate_havip("h", Member::instance("i-1")),
        &["havip", "associate", "h", "--instance", "i-1"],
    );
    refused(
        &srv,
        "NotFound.Binding",
        |c| c.unassociate_havip("h", Member::instance("i-2")),
        &["havip", "unassociate", "h", "--instance", "i-2"],
    );
    refused(
        &srv,
        "NotFound.HaVip",
        |c| c.associate_havip("nope", Member::instance("i-1")),
        &["havip", "associate", "nope", "--instance", "i-1"],
    );
    refused(
        &srv,
        "NotFound.Instance",
        |c| c.associate_havip("h", Member::instance("i-nope")),
        &["havip", "associate", "h", "--instance", "i-nope"],
    );
    refused(
        &srv,
        "NotFound.Eni",
        |c| c.associate_havip("g", Member::eni("eni-nope")),
        &["havip", "associate", "g", "--eni", "eni-nope"],
    );
    refused(
        &srv,
        "InvalidParameter.OwnerNotBound",
        |c| c.set_master("h", Some("i-5")),
        &["havip", "set-master", "h", "--member", "i-5"],
    );
}

#[test]
fn delete_refusals() {
    let srv = Server::start();
    let c = srv.client();
    fixture(&c);
    create_havip(&c, "h", "vsw-1");
    c.associate_havip("h", Member::instance("i-1")).unwrap();
    refused(
        &srv,
        "Conflict.HaVipBound",
        |c| c.delete_havip("h"),
        &["havip", "delete", "h"],
    );
    c.unassociate_havip("h", Member::instance("i-1")).unwrap();

    c.create_eip(&CreateEip {
        id: Some("e".into()),
        address: "203.0.113.7".parse().unwrap(),
    })
    .unwrap();
    c.associate_eip("e", "h").unwrap();
    refused(
        &srv,
        "Conflict.HaVipHasEip",
        |c| c.delete_havip("h"),
        &["havip", "delete", "h"],
    );
    refused(
        &srv,
        "Conflict.EipAssociated",
        |c| c.delete_eip("e"),
        &["eip", "delete", "e"],
    );
    create_havip(&c, "g", "vsw-1");
    refused(
        &srv,
        "Conflict.EipAssociated",
        |c| c.associate_eip("e", "g"),
        &["eip", "associate", "e", "--havip", "g"],
    );
    c.unassociate_eip("e").unwrap();
    refused(
        &srv,
        "Conflict.EipNotAssociated",
        |c| c.unassociate_eip("e"),
        &["eip", "unassociate", "e"],
    );

    c.create_route(&CreateRoute {
        id: Some("r".into()),
        vpc: "vpc-1".into(),
        destination: "192.168.0.0/24".parse().unwrap(),
        next_hop_havip: "h".into(),
    })
    .unwrap();
    refused(
        &srv,
        "Conflict.HaVipIsRouteNextHop",
        |c| c.delete_havip("h"),
        &["havip", "delete", "h"],
    );
    refused(
        &srv,
        "NotFound.HaVip",
        |c| c.delete_havip("nope"),
        &["havip", "delete", "nope"],
    );
    c.delete_route("r").unwrap();
    refused(
        &srv,
        "NotFound.Route",
        |c| c.delete_route("r"),
        &["route", "delete", "r"],
    );
    srv.ctl_ok(&["havip", "delete", "h"]);
    assert!(!srv.state().havips.contains_key("h"));
}

#[test]
fn address_rules() {
    let srv = Server::start();
    let c = srv.client();
    fixture(&c);
    let create = |addr: &'static str| {
        move |c: &Client| {
            c.create_havip(&CreateHaVip {
                id: None,
                vswitch: "vsw-1".into(),
                address: Some(addr.parse().unwrap()),
                ..Default::default()
            })
        }
    };
    let cli = |addr: &'static str| ["havip", "create", "--vswitch", "vsw-1", "--address", addr];
    refused(
        &srv,
        "InvalidParameter.AddressOutsideVSwitch",
        create("10.0.2.10"),
        &cli("10.0.2.10"),
    );
    for reserved in ["10.0.1.0", "10.0.1.1", "10.0.1.255"] {
        refused(
            &srv,
            "InvalidParameter.AddressReserved",
            create(reserved),
            &cli(reserved),
        );
    }
    // Allocation skips the reserved addresses.
    let v = c
        .create_havip(&CreateHaVip {
            id: Some("first".into()),
            vswitch: "vsw-1".into(),
            address: None,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(v.address.to_string(), "10.0.1.2");
    refused(
        &srv,
        "Conflict.AddressInUse",
        create("10.0.1.2"),
        &cli("10.0.1.2"),
    );
    c.create_eip(&CreateEip {
        id: Some("e".into()),
        address: "10.0.1.50".parse().unwrap(),
    })
    .unwrap();
    refused(
        &srv,
        "Conflict.AddressInUse",
        create("10.0.1.50"),
        &cli("10.0.1.50"),
    );
    refused(
        &srv,
        "Conflict.AddressInUse",
        |c| {
            c.create_eip(&CreateEip {
                id: None,
                address: "10.0.1.2".parse().unwrap(),
            })
        },
        &["eip", "create", "--address", "10.0.1.2"],
    );
    refused(
        &srv,
        "NotFound.VSwitch",
        |c| {
            c.create_havip(&CreateHaVip {
                id: None,
                vswitch: "vsw-9".into(),
                address: None,
                ..Default::default()
            })
        },
        &["havip", "create", "--vswitch", "vsw-9"],
    );
    refused(
        &srv,
        "Conflict.AlreadyExists",
        |c| {
            c.create_havip(&CreateHaVip {
                id: Some("first".into()),
                vswitch: "vsw-1".into(),
                address: None,
                ..Default::default()
            })
        },
        &["havip", "create", "--vswitch", "vsw-1", "--id", "first"],
    );
}

#[test]
fn route_conflicts() {
    let srv = Server::start();
    let c = srv.client();
    fixture(&c);
    create_havip(&c, "h", "vsw-1");
    c.create_vpc(&CreateVpc {
        id: "vpc-2".into(),
        cidr: "172.16.0.0/16".parse().unwrap(),
    })
    .unwrap();
    c.create_route(&CreateRoute {
        id: Some("r".into()),
        vpc: "vpc-1".into(),
        destination: "192.168.0.0/24".parse().unwrap(),
        next_hop_havip: "h".into(),
    })
    .unwrap();
    let route = |vpc: &'static str, dst: &'static str| {
        move |c: &Client| {
            c.create_route(&CreateRoute {
                id: None,
                vpc: vpc.into(),
                destination: dst.parse().unwrap(),
                next_hop_havip: "h".into(),
            })
        }
    };
    let cli = |vpc: &'static str, dst: &'static str| {
        [
            "route",
            "create",
            "--vpc",
            vpc,
            "--destination",
            dst,
            "--next-hop",
            "h",
        ]
    };
    refused(
        &srv,
        "Conflict.RouteDestinationExists",
        route("vpc-1", "192.168.0.0/24"),
        &cli("vpc-1", "192.168.0.0/24"),
    );
    refused(
        &srv,
        "Conflict.DifferentVpc",
        route("vpc-2", "192.168.5.0/24"),
        &cli("vpc-2", "192.168.5.0/24"),
    );
    refused(
        &srv,
        "InvalidParameter.RouteDestination",
        route("vpc-1", "10.0.1.0/25"),
        &cli("vpc-1", "10.0.1.0/25"),
    );
    refused(
        &srv,
        "NotFound.Vpc",
        route("vpc-9", "192.168.5.0/24"),
        &cli("vpc-9", "192.168.5.0/24"),
    );
}

#[test]
fn setup_conflicts() {
    let srv = Server::start();
    let c = srv.client();
    fixture(&c);
    refused(
        &srv,
        "Conflict.CidrOverlap",
        |c| {
            c.create_vswitch(&CreateVSwitch {
                vni: None,
                id: "vsw-3".into(),
                vpc: "vpc-1".into(),
                cidr: "10.0.1.0/25".parse().unwrap(),
                gateway_mac: "02:00:00:00:00:01".parse().unwrap(),
            })
        },
        &[
            "vswitch",
            "create",
            "--id",
            "vsw-3",
            "--vpc",
            "vpc-1",
            "--cidr",
            "10.0.1.0/25",
            "--gateway-mac",
            "02:00:00:00:00:01",
        ],
    );
    refused(
        &srv,
        "Conflict.MacInUse",
        |c| {
            c.create_eni(&CreateEni {
                host: None,
                id: "eni-new".into(),
                vswitch: "vsw-1".into(),
                mac: "02:00:00:00:01:00".parse().unwrap(),
                interface: "hv-new".into(),
                instance: None,
                primary: false,
            })
        },
        &[
            "eni",
            "create",
            "--id",
            "eni-new",
            "--vswitch",
            "vsw-1",
            "--mac",
            "02:00:00:00:01:00",
            "--interface",
            "hv-new",
        ],
    );
    refused(
        &srv,
        "Conflict.AlreadyExists",
        |c| {
            c.create_vpc(&CreateVpc {
                id: "vpc-1".into(),
                cidr: "10.0.0.0/16".parse().unwrap(),
            })
        },
        &["vpc", "create", "--id", "vpc-1", "--cidr", "10.0.0.0/16"],
    );
}

#[test]
fn malformed_requests_are_400_not_panics() {
    let srv = Server::start();
    let c = srv.client();
    fixture(&c);
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
    let (status, _) = c.raw("PATCH", "/v1/havips", None).unwrap();
    assert_eq!(status, 404);
    assert_eq!(srv.state(), before);
}
