//! DescribeHaVips (status, owner, epoch, counters), change notification,
//! the CLI's setup and listing, malformed requests.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;

use std::{process::Command, sync::Arc, thread};

use havip::{
    control::{CountersSource, HaVipUsage, HaVipView, HavipCounters},
    model::*,
    store::{RedbStore, Store},
};
use havip_common::HavipKey;

// Describe, owners, counters, notifications

struct FakeCounters;
impl CountersSource for FakeCounters {
    fn havip_counters(&self, slot: u32) -> Option<HavipCounters> {
        Some(HavipCounters {
            packets: u64::from(slot) + 10,
            bytes: 1000,
        })
    }
}

#[test]
fn describe_status_master_epoch_counters() {
    let (srv, c) = Server::with_fixture();
    let mut changes = srv.cp().subscribe();
    let g0 = *changes.borrow_and_update();
    let v = c
        .create_havip(&CreateHaVip {
            id: Some("h".into()),
            vswitch: "vsw-1".into(),
            address: Some("10.0.1.100".parse().unwrap()),
            ..Default::default()
        })
        .unwrap();
    assert!(changes.has_changed().unwrap());
    assert!(*changes.borrow_and_update() > g0);
    assert_eq!(v.status, HaVipUsage::Available);
    assert_eq!(
        (v.owner_member.clone(), v.epoch, v.counters),
        (None, 0, None)
    );
    c.associate_havip("h", Member::instance("i-1")).unwrap();
    let v = c.associate_havip("h", Member::instance("i-2")).unwrap();
    assert_eq!(v.status, HaVipUsage::InUse);
    assert_eq!(v.bindings, vec!["i-1", "i-2"]);

    // The kernel reports i-2 (its ENI's MAC) as owner.
    let cp = srv.cp();
    let vsw = cp.with_state(|s| s.vswitches["vsw-1"].dp_id);
    let g = *changes.borrow_and_update();
    let owner = ObservedOwner {
        ifindex: 42,
        mac: "02:00:00:00:01:02".parse().unwrap(),
        epoch: 7,
        changed_ns: 123,
    };
    cp.record_owner(
        HavipKey {
            vswitch_id: vsw,
            addr: [10, 0, 1, 100],
        },
        owner,
    )
    .unwrap();
    assert!(
        !changes.has_changed().unwrap(),
        "owner reports do not trigger reconciles"
    );
    assert_eq!(*changes.borrow(), g);
    cp.set_counters(Arc::new(FakeCounters));
    let v = c.get_havip("h").unwrap();
    assert_eq!(v.owner_member.as_deref(), Some("i-2"));
    assert_eq!(v.epoch, 7);
    assert_eq!(v.counters.map(|c| c.packets), Some(u64::from(v.slot) + 10));

    // CLI: table and JSON.
    let table = srv.ctl_ok(&["havip", "list"]);
    assert!(table.starts_with("ID"), "{table}");
    assert!(table.contains("10.0.1.100") && table.contains("InUse") && table.contains("i-2"));
    let json: serde_json::Value =
        serde_json::from_str(&srv.ctl_ok(&["--json", "havip", "describe", "h"])).unwrap();
    assert_eq!(json["owner_member"], "i-2");
    assert_eq!(json["status"], "InUse");
    assert_eq!(json["epoch"], 7);

    // Unbinding the standby keeps the owner; the owner is refused without
    // force, and with force the owner is cleared.
    c.unassociate_havip("h", Member::instance("i-1")).unwrap();
    assert_eq!(
        c.get_havip("h").unwrap().owner_member.as_deref(),
        Some("i-2")
    );
    assert_eq!(
        code_of(c.unassociate_havip("h", Member::instance("i-2"))),
        "Conflict.MemberIsOwner"
    );
    let v: HaVipView = c
        .apply(UnassociateHaVip {
            havip: "h".into(),
            member: Member::instance("i-2"),
            force: true,
        })
        .unwrap();
    assert_eq!(v.owner_member, None);
    assert_eq!(v.status, HaVipUsage::Available);
    assert_eq!(v.epoch, 7);
    assert!(changes.has_changed().unwrap());

    // By slot too; unknown slots are NotFound.
    cp.record_owner_by_slot(v.slot, ObservedOwner::default())
        .unwrap();
    assert_eq!(
        cp.record_owner_by_slot(9999, ObservedOwner::default())
            .unwrap_err()
            .code(),
        "NotFound.HaVip"
    );
}

#[test]
fn cli_setup_and_listing() {
    let srv = Server::start();
    srv.ctl_ok(&["vpc", "create", "--id", "vpc-c", "--cidr", "10.9.0.0/16"]);
    srv.ctl_ok(&[
        "vswitch",
        "create",
        "--id",
        "vsw-c",
        "--vpc",
        "vpc-c",
        "--cidr",
        "10.9.1.0/24",
        "--gateway-mac",
        "02:00:00:00:00:09",
    ]);
    srv.ctl_ok(&["instance", "create", "--id", "i-c", "--vswitch", "vsw-c"]);
    srv.ctl_ok(&[
        "eni",
        "create",
        "--id",
        "eni-c",
        "--vswitch",
        "vsw-c",
        "--mac",
        "02:00:00:00:09:01",
        "--interface",
        "hv-c",
        "--instance",
        "i-c",
        "--primary",
    ]);
    srv.ctl_ok(&[
        "uplink",
        "create",
        "--interface",
        "hv-up",
        "--vswitch",
        "vsw-c",
    ]);
    let out = srv.ctl_ok(&["--json", "havip", "create", "--vswitch", "vsw-c"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let id = v["id"].as_str().unwrap().to_owned();
    assert_eq!(v["address"], "10.9.1.2");
    srv.ctl_ok(&["havip", "associate", &id, "--instance", "i-c"]);
    srv.ctl_ok(&["havip", "set-master", &id, "--member", "i-c"]);
    srv.ctl_ok(&[
        "eip",
        "create",
        "--id",
        "eip-c",
        "--address",
        "198.51.100.1",
    ]);
    srv.ctl_ok(&["eip", "associate", "eip-c", "--havip", &id]);
    srv.ctl_ok(&[
        "route",
        "create",
        "--vpc",
        "vpc-c",
        "--destination",
        "0.0.0.0/0",
        "--next-hop",
        &id,
        "--id",
        "rte-c",
    ]);
    let d = srv.ctl_ok(&["havip", "describe", &id]);
    assert!(d.contains("initial owner   i-c"), "{d}");
    assert!(d.contains("eip-c (198.51.100.1)"), "{d}");
    for (args, needle) in [
        (&["vpc", "list"][..], "10.9.0.0/16"),
        (&["vswitch", "list"][..], "02:00:00:00:00:09"),
        (&["instance", "list"][..], "i-c"),
        (&["eni", "list"][..], "hv-c"),
        (&["uplink", "list"][..], "hv-up"),
        (&["eip", "list"][..], "198.51.100.1"),
        (&["route", "list"][..], "0.0.0.0/0"),
        (&["quota", "get"][..], "havips_per_account"),
    ] {
        let out = srv.ctl_ok(args);
        assert!(out.contains(needle), "{args:?}: {out}");
    }
    let s: State = serde_json::from_str(&srv.ctl_ok(&["state"])).unwrap();
    assert_eq!(s.havips[&id].initial_owner.as_deref(), Some("i-c"));
    // Unreachable agent: a clear error, exit 3 (refused is 1, usage 2).
    let out = Command::new(env!("CARGO_BIN_EXE_havipctl"))
        .args(["--socket", "/nonexistent/api.sock", "havip", "list"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("error: Unavailable: "));
}

#[test]
fn state_survives_restart() {
    let (srv, c) = Server::with_fixture();
    create_havip(&c, "h", "vsw-1");
    c.associate_havip("h", Member::instance("i-3")).unwrap();
    let before = srv.state();
    let dir = srv.stop();
    let srv = Server::start_in(dir);
    assert_eq!(srv.state(), before);
    // Slot allocation continues from the stored state.
    create_havip(&srv.client(), "g", "vsw-1");
    assert_ne!(srv.state().havips["g"].slot, before.havips["h"].slot);
}

#[test]
fn concurrent_clients_are_group_committed() {
    let (srv, c) = Server::with_raised_quotas();
    for n in 0..8 {
        create_havip(&c, &format!("h{n}"), "vsw-1");
    }
    let threads: Vec<_> = (0..8)
        .map(|n| {
            let c = srv.client();
            thread::spawn(move || {
                let h = format!("h{n}");
                let m = Member::instance(format!("i-{n}"));
                for _ in 0..20 {
                    c.associate_havip(&h, m.clone()).unwrap();
                    c.unassociate_havip(&h, m.clone()).unwrap();
                }
                c.associate_havip(&h, m).unwrap();
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let s = srv.state();
    for n in 0..8 {
        assert_eq!(s.havips[&format!("h{n}")].bindings, vec![format!("i-{n}")]);
    }
    // The store holds exactly what memory holds.
    let dir = srv.stop();
    let store = RedbStore::open(dir.path().join("state.redb")).unwrap();
    assert_eq!(store.load().unwrap(), s);
}
