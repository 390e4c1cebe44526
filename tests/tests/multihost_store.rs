//! The etcd store under concurrency: two control planes (two hosts' APIs)
//! on one etcd racing CreateHaVip and AssociateHaVip. Quotas hold across
//! them, no update is lost, and each sees the other's changes (watch).

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use havip::{
    control::ControlPlane,
    model::{
        AssociateHaVip, CreateHaVip, CreateInstance, CreateVSwitch, CreateVpc, DeleteInstance,
        Member, Op, SetQuota,
    },
    store::{EtcdConfig, EtcdHandle, EtcdStore},
};
use havip_tests::{etcd::Etcd, lab};

fn control_plane(etcd: &Etcd, prefix: &str) -> (Arc<ControlPlane>, EtcdHandle) {
    let store = EtcdStore::connect(&EtcdConfig {
        endpoints: vec![etcd.endpoint()],
        prefix: prefix.into(),
        ..EtcdConfig::default()
    })
    .expect("etcd store");
    let handle = store.handle();
    (
        Arc::new(ControlPlane::with_store(store).expect("loading from etcd")),
        handle,
    )
}

/// A local etcd and two control planes (two hosts' APIs) on one fresh
/// prefix named after `tag`.
fn two_control_planes(tag: &str) -> (Etcd, String, [(Arc<ControlPlane>, EtcdHandle); 2]) {
    let etcd = Etcd::start_local().expect("etcd");
    let prefix = format!("/{}", lab::unique_name(tag));
    let planes = [(); 2].map(|()| control_plane(&etcd, &prefix));
    (etcd, prefix, planes)
}

fn vpc(id: &str, cidr: &str) -> Op {
    Op::CreateVpc(CreateVpc {
        id: id.into(),
        cidr: cidr.parse().expect("cidr"),
    })
}

/// VPC `vpc` (10.0.0.0/16), vSwitch `vsw` (10.0.1.0/24, VXLAN `vni`) and
/// instances `i-0..n_instances` in it.
fn network_ops(vni: Option<u32>, n_instances: usize) -> Vec<Op> {
    let mut ops = vec![
        vpc("vpc", "10.0.0.0/16"),
        Op::CreateVSwitch(CreateVSwitch {
            id: "vsw".into(),
            vpc: "vpc".into(),
            cidr: "10.0.1.0/24".parse().expect("cidr"),
            gateway_mac: "02:00:00:00:00:01".parse().expect("mac"),
            vni,
        }),
    ];
    ops.extend((0..n_instances).map(|i| {
        Op::CreateInstance(CreateInstance {
            id: format!("i-{i}"),
            vswitch: "vsw".into(),
        })
    }));
    ops
}

/// Follows etcd for `cp` (what the agent's sync task does) on a runtime of
/// its own.
fn follow(cp: &Arc<ControlPlane>, handle: EtcdHandle, rt: &tokio::runtime::Runtime) {
    let local = havip::cluster::LocalHost {
        id: "store-test".into(),
        interface: "lo".into(),
        vtep: std::net::Ipv4Addr::LOCALHOST,
        mac: havip::model::MacAddr([2, 0, 0, 0, 0, 1]),
    };
    let c = havip::cluster::Cluster::new(handle, local, cp.clone());
    rt.spawn(havip::cluster::sync::run(c));
}

#[test]
fn two_control_planes_race_on_one_etcd() {
    let (etcd, prefix, [(cp1, h1), (cp2, h2)]) = two_control_planes("hvstore");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    follow(&cp1, h1, &rt);
    follow(&cp2, h2, &rt);

    let n_instances = 10; // the bindings-per-HaVip limit
    let quota = 12;
    let mut setup = network_ops(Some(1001), n_instances);
    setup.push(Op::SetQuota(SetQuota {
        havips_per_account: Some(quota),
        havips_per_vpc: Some(quota),
        havip_routes_per_vpc: None,
    }));
    setup.push(Op::CreateHaVip(CreateHaVip {
        id: Some("shared".into()),
        vswitch: "vsw".into(),
        ..Default::default()
    }));
    cp1.apply_all(&setup).expect("setup through cp1");

    // Both create HaVips (ids unique per side) until the quota refuses.
    let started = Instant::now();
    let creators: Vec<_> = [(cp1.clone(), "x"), (cp2.clone(), "y")]
        .into_iter()
        .map(|(cp, side)| {
            std::thread::spawn(move || {
                let mut ok = 0usize;
                let mut refused = 0usize;
                for i in 0..quota {
                    match cp.apply(Op::CreateHaVip(CreateHaVip {
                        id: Some(format!("h-{side}-{i}")),
                        vswitch: "vsw".into(),
                        ..Default::default()
                    })) {
                        Ok(_) => ok += 1,
                        Err(e) => {
                            assert!(e.code().contains("Quota"), "unexpected refusal: {e}");
                            refused += 1;
                        }
                    }
                }
                (ok, refused)
            })
        })
        .collect();
    let counts: Vec<(usize, usize)> = creators
        .into_iter()
        .map(|t| t.join().expect("creator"))
        .collect();
    let created: usize = counts.iter().map(|c| c.0).sum();
    println!(
        "CreateHaVip race: {counts:?} (created, refused) per side in {:?}",
        started.elapsed()
    );
    assert_eq!(
        created + 1,
        quota,
        "the quota holds across both control planes"
    );

    // Both associate different instances to one HaVip: none is lost.
    let started = Instant::now();
    let assoc: Vec<_> = [(cp1.clone(), 0), (cp2.clone(), 1)]
        .into_iter()
        .map(|(cp, parity)| {
            std::thread::spawn(move || {
                for i in (parity..n_instances).step_by(2) {
                    cp.apply(Op::AssociateHaVip(AssociateHaVip {
                        havip: "shared".into(),
                        member: Member::instance(format!("i-{i}")),
                    }))
                    .expect("associate");
                }
            })
        })
        .collect();
    for t in assoc {
        t.join().expect("associator");
    }
    println!(
        "{n_instances} AssociateHaVip from two sides in {:?}",
        started.elapsed()
    );

    // Both converge on etcd's state.
    let deadline = Instant::now() + Duration::from_secs(5);
    let fresh = control_plane(&etcd, &prefix).0.snapshot();
    assert_eq!(
        fresh.havips["shared"].bindings.len(),
        n_instances,
        "no binding lost"
    );
    assert_eq!(fresh.havips.len(), quota);
    loop {
        let (s1, s2) = (cp1.snapshot(), cp2.snapshot());
        if s1.havips == fresh.havips && s2.havips == fresh.havips {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "control planes did not converge on etcd's state"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    rt.shutdown_background();
}

/// A control plane that lost a commit race catches up from what its failed
/// txn read (no whole-state load) unless a record was deleted meanwhile.
#[test]
fn lost_race_catches_up_from_the_changes() {
    use std::sync::atomic::Ordering::Relaxed;
    // cp2 follows nobody: every commit of cp1 leaves it behind.
    let (etcd, prefix, [(cp1, _), (cp2, h2)]) = two_control_planes("hvcatch");
    cp1.apply_all(&network_ops(None, 1))
        .expect("setup through cp1");
    let loads = h2.shared.loads.load(Relaxed);
    cp2.apply(vpc("vpc2", "10.2.0.0/16"))
        .expect("cp2 commits after catching up");
    assert_eq!(h2.shared.catch_ups.load(Relaxed), 1, "caught up once");
    assert_eq!(h2.shared.loads.load(Relaxed), loads, "no whole-state load");
    let fresh = control_plane(&etcd, &prefix).0.snapshot();
    let s2 = cp2.snapshot();
    assert_eq!(s2.records(), fresh.records(), "cp2 holds etcd's state");
    assert!(s2.vswitches.contains_key("vsw") && s2.vpcs.contains_key("vpc2"));

    // A delete leaves no key to read: the loser loads the whole state.
    cp1.apply(Op::DeleteInstance(DeleteInstance { id: "i-0".into() }))
        .expect("delete through cp1");
    cp2.apply(vpc("vpc3", "10.3.0.0/16"))
        .expect("cp2 commits after a reload");
    assert_eq!(
        h2.shared.loads.load(Relaxed),
        loads + 1,
        "a whole-state load"
    );
    let fresh = control_plane(&etcd, &prefix).0.snapshot();
    let s2 = cp2.snapshot();
    assert!(!s2.instances.contains_key("i-0"), "the delete is seen");
    assert_eq!(s2.records(), fresh.records(), "cp2 holds etcd's state");
}
