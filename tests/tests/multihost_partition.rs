//! A host cut from the underlay (and so from etcd) while the HaVip moves
//! elsewhere, then plugged back: it installs the newer owner, its own older
//! claim is refused by the fence, nobody flaps back to it, and its data
//! plane stops forwarding to its stale local owner.
//!
//! Three hosts (see `havip_tests::multihost`): members `a` (h1), `b` (h2)
//! and, added by the test through h3's API, `c` (h3).

use std::{
    net::{Ipv4Addr, SocketAddrV4},
    time::{Duration, Instant},
};

use havip::{
    api::Client,
    cluster::SyncStatus,
    control::HaVipView,
    model::{AssociateHaVip, Member},
};
use havip_tests::{
    lab,
    multihost::{MultiHost, GUESTS, VIP},
    UdpCounter,
};

const CONVERGE: Duration = Duration::from_secs(15);

fn guest(name: &str) -> (usize, Ipv4Addr, String) {
    let g = GUESTS.iter().find(|g| g.1 == name).expect("guest");
    (g.0, g.2, lab::mac_string(g.3))
}

/// Waits until every host in `hosts` has `mac` as owner; returns the epoch
/// (the same on all of them).
fn owner_on(mh: &MultiHost, hosts: &[usize], name: &str) -> u64 {
    agreed(mh, hosts, name, CONVERGE).unwrap_or_else(|seen| {
        panic!("hosts {hosts:?} did not agree on owner {name} in {CONVERGE:?}: {seen:?}")
    })
}

/// A claim (gratuitous ARP) from `name`, repeated every 300 ms as
/// keepalived repeats its announcements (a member just bound through
/// another host's API may not be bound in its kernel yet) until every host
/// in `hosts` has it as owner; returns the epoch.
fn claim(mh: &MultiHost, hosts: &[usize], name: &str) -> u64 {
    let deadline = Instant::now() + CONVERGE;
    loop {
        mh.claim(name).expect("GARP");
        match agreed(mh, hosts, name, Duration::from_millis(300)) {
            Ok(epoch) => return epoch,
            Err(seen) => assert!(
                Instant::now() < deadline,
                "claim by {name}: hosts {hosts:?} did not agree in {CONVERGE:?}: {seen:?}"
            ),
        }
    }
}

/// The epoch once every host in `hosts` names `name` owner within
/// `timeout`; else what they named.
fn agreed(
    mh: &MultiHost,
    hosts: &[usize],
    name: &str,
    timeout: Duration,
) -> Result<u64, Vec<Option<(String, u64)>>> {
    let (_, _, mac) = guest(name);
    let deadline = Instant::now() + timeout;
    loop {
        let seen: Vec<Option<(String, u64)>> = hosts.iter().map(|n| mh.owner(*n)).collect();
        if let Some(Some((_, epoch))) = seen.first() {
            if seen
                .iter()
                .all(|o| o.as_ref().is_some_and(|(m, e)| *m == mac && e == epoch))
            {
                return Ok(*epoch);
            }
        }
        if Instant::now() > deadline {
            return Err(seen);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn cluster_until(mh: &MultiHost, n: usize, what: &str, ok: impl Fn(&SyncStatus) -> bool) {
    let deadline = Instant::now() + CONVERGE;
    loop {
        let s = mh.cluster(n).expect("havipctl cluster");
        if ok(&s) {
            return;
        }
        assert!(Instant::now() < deadline, "h{n}: {what}; last seen {s:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The HaVip as host `n`'s API describes it (with etcd's owner).
fn describe(mh: &MultiHost, n: usize) -> HaVipView {
    let socket = mh.fabric.host(n).expect("host").scratch.socket();
    Client::unix(socket)
        .get_havip("havip-mh")
        .expect("describe havip-mh")
}

/// Sends 200 datagrams from guest `from` to the HaVip; returns (sent,
/// received per member a, b, c).
fn udp_from(mh: &MultiHost, from: &str, port: u16) -> (u64, [u64; 3]) {
    let counters: Vec<(Ipv4Addr, UdpCounter)> = ["a", "b", "c"]
        .iter()
        .map(|m| {
            let (n, _, _) = guest(m);
            let ns = &mh.fabric.guest(n, m).expect("member").ns;
            (guest(from).1, UdpCounter::start(ns, port))
        })
        .collect();
    let (n, _, _) = guest(from);
    let sender = &mh.fabric.guest(n, from).expect("sender").ns;
    let sent = lab::udp_send(
        sender,
        SocketAddrV4::new(VIP, port),
        200,
        200,
        Duration::from_micros(500),
    )
    .expect("sending");
    let mut got = [0u64; 3];
    for (i, (src, counter)) in counters.into_iter().enumerate() {
        let wait = if i == 0 { 400 } else { 10 };
        got[i] = counter
            .collect_for(Duration::from_millis(wait))
            .get(&src)
            .copied()
            .unwrap_or(0);
    }
    (sent, got)
}

#[test]
fn multihost_partitioned_host_returns_and_loses_to_the_newer_owner() {
    let mh = MultiHost::new("a").expect("3 hosts with agents");
    let e0 = owner_on(&mh, &[1, 2, 3], "a");
    // c (on h3) becomes a member too, through h3's API (etcd): every host
    // binds it.
    let socket = mh.fabric.host(3).expect("h3").scratch.socket();
    Client::unix(socket)
        .apply::<HaVipView>(AssociateHaVip {
            havip: "havip-mh".into(),
            member: Member::instance("i-c"),
        })
        .expect("associating i-c through h3");
    let e1 = claim(&mh, &[1, 2, 3], "b");
    assert!(e1 > e0);

    // h1's underlay cable is pulled: no VXLAN, no etcd.
    mh.fabric.set_underlay_link(1, false).expect("cutting h1");
    cluster_until(&mh, 1, "sees etcd gone", |s| !s.connected);
    // On h1, a claims: h1's kernel switches at once, the claim cannot be
    // published.
    let ea = claim(&mh, &[1], "a");
    assert_eq!(ea, e1 + 1, "a local claim on h1: epoch + 1");
    cluster_until(&mh, 1, "one claim waiting to be published", |s| {
        !s.connected && s.pending_publishes == 1
    });
    // Meanwhile the HaVip moves on the other side: c claims on h3, then b
    // on h2; both published.
    let ec = claim(&mh, &[2, 3], "c");
    let eb = claim(&mh, &[2, 3], "b");
    assert!(eb > ec && ec > e1, "{e1} < {ec} < {eb}");
    assert!(
        eb > ea,
        "etcd's owner ({eb}) is newer than h1's claim ({ea})"
    );
    assert_eq!(
        mh.owner(1),
        Some((guest("a").2, ea)),
        "h1 still believes its local member owns"
    );
    let (sent, got) = udp_from(&mh, "c", 7700);
    assert_eq!(got, [0, sent, 0], "c's traffic goes to b during the cut");

    // h1 comes back.
    let t0 = Instant::now();
    mh.fabric
        .set_underlay_link(1, true)
        .expect("plugging h1 back");
    let (_, _, mac_b) = guest("b");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut samples = 0u64;
    loop {
        // No flap: h2 and h3 never leave b (epoch eb) while h1 re-joins.
        for n in [2, 3] {
            assert_eq!(
                mh.owner(n),
                Some((mac_b.clone(), eb)),
                "h{n} flapped while h1 re-joined"
            );
        }
        samples += 1;
        if mh.owner(1) == Some((mac_b.clone(), eb)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "h1 did not install b@{eb}: {:?}\nh1:\n{}",
            mh.owner(1),
            mh.log(1)
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    println!(
        "h1 back: installed b (epoch {eb}, its own claim was {ea}) after {:?}; \
         h2 and h3 held b in all {samples} samples",
        t0.elapsed()
    );
    cluster_until(&mh, 1, "connected, nothing pending", |s| {
        s.connected && s.pending_publishes == 0
    });
    // The fence refused h1's older claim: etcd still names b on h2, and
    // h1's agent says its claim lost.
    for n in 1..=3 {
        let shared = describe(&mh, n).shared_owner.expect("a shared owner");
        assert_eq!(
            (shared.host.as_str(), shared.eni.as_str(), shared.epoch),
            ("h2", "eni-b", eb),
            "h{n}'s view of etcd's owner"
        );
    }
    let log = mh.log(1);
    assert!(
        log.contains("local claim lost to a published one"),
        "h1's publish of a@{ea} was refused:\n{log}"
    );

    // h1's data plane forwards to b now, not to its stale local owner: a
    // (now a backup, the HaVip address removed as keepalived would) sends
    // to the HaVip from h1 and b gets it all.
    mh.fabric
        .guest(1, "a")
        .expect("a")
        .ns
        .exec(&["ip", "addr", "del", &format!("{VIP}/32"), "dev", "eth0"])
        .expect("removing the HaVip address from a");
    let (sent, got) = udp_from(&mh, "a", 7800);
    assert_eq!(got, [0, sent, 0], "h1 forwards to b on h2");
    let (sent, got) = udp_from(&mh, "c", 7900);
    assert_eq!(got, [0, sent, 0], "c's traffic still goes to b");
}
