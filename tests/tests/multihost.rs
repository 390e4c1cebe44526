//! Three hosts with agents on one etcd (see `havip_tests::multihost`):
//! traffic from a client on h3 to a HaVip owned on h1, then on h2 after a
//! claim; simultaneous claims from two hosts; etcd stopped and restarted;
//! the owner host's agent SIGKILLed.

use std::{
    net::{Ipv4Addr, SocketAddrV4},
    time::{Duration, Instant},
};

use havip::cluster::SyncStatus;
use havip_tests::{
    icmp_in_echos, lab,
    multihost::{MultiHost, GUESTS, VIP},
    ping, tcp_exchange, TcpEcho, UdpCounter,
};

const CONVERGE: Duration = Duration::from_secs(10);

fn mac(name: &str) -> [u8; 6] {
    GUESTS
        .iter()
        .find(|g| g.1 == name)
        .map(|g| g.3)
        .expect("guest")
}

fn ip(name: &str) -> Ipv4Addr {
    GUESTS
        .iter()
        .find(|g| g.1 == name)
        .map(|g| g.2)
        .expect("guest")
}

/// Sends `count` datagrams from c to the HaVip; returns what a and b got.
fn udp_to_vip(mh: &MultiHost, count: u64, port: u16) -> (u64, u64, u64) {
    let a = UdpCounter::start(&mh.fabric.guest(1, "a").expect("a").ns, port);
    let b = UdpCounter::start(&mh.fabric.guest(2, "b").expect("b").ns, port);
    let c = &mh.fabric.guest(3, "c").expect("c").ns;
    let sent = lab::udp_send(
        c,
        SocketAddrV4::new(VIP, port),
        count,
        200,
        Duration::from_micros(500),
    )
    .expect("sending");
    let got_a = a.collect_for(Duration::from_millis(400));
    let got_b = b.collect_for(Duration::from_millis(10));
    (
        sent,
        got_a.get(&ip("c")).copied().unwrap_or(0),
        got_b.get(&ip("c")).copied().unwrap_or(0),
    )
}

/// UDP, TCP and ICMP from c reach `owner` (on host `n`) only.
fn all_protocols_reach(mh: &MultiHost, owner: &str, n: usize, port: u16) {
    let (sent, a, b) = udp_to_vip(mh, 200, port);
    let (got, other) = if owner == "a" { (a, b) } else { (b, a) };
    println!("UDP c -> HaVip on {owner}: sent {sent}, {owner} got {got}, other got {other}");
    assert_eq!(got, sent, "every datagram reaches the owner {owner}");
    assert_eq!(other, 0, "nothing reaches the other member");

    let owner_ns = &mh.fabric.guest(n, owner).expect("owner").ns;
    let echo = TcpEcho::start(owner_ns, port + 1);
    let c = &mh.fabric.guest(3, "c").expect("c").ns;
    let reply = tcp_exchange(c, VIP, port + 1, b"hello across hosts");
    assert_eq!(reply, b"hello across hosts");
    let peers = echo.stop();
    assert!(
        peers
            .iter()
            .any(|p| p.ip() == std::net::IpAddr::V4(ip("c"))),
        "the TCP connection was accepted by {owner}: {peers:?}"
    );

    let before = icmp_in_echos(owner_ns);
    ping(c, VIP, 5);
    assert!(
        icmp_in_echos(owner_ns) >= before + 5,
        "pings answered by {owner}"
    );
}

#[test]
fn multihost_client_reaches_owner_on_h1_then_h2() {
    let started = Instant::now();
    let mh = MultiHost::new("a").expect("3 hosts with agents");
    println!("3 hosts, etcd, 3 agents up in {:?}", started.elapsed());
    let (_, epoch, t) = mh
        .converged(Some(mac("a")), CONVERGE)
        .unwrap_or_else(|e| panic!("{e:#}\nh1:\n{}", mh.log(1)));
    println!("initial owner a on every host (epoch {epoch}) after {t:?}");
    all_protocols_reach(&mh, "a", 1, 7100);

    let t0 = Instant::now();
    mh.claim("b").expect("GARP from b");
    let (_, epoch2, _) = mh
        .converged(Some(mac("b")), CONVERGE)
        .unwrap_or_else(|e| panic!("{e:#}\nh2:\n{}", mh.log(2)));
    println!(
        "claim by b on h2 seen by all 3 hosts in {:?} (epoch {epoch2})",
        t0.elapsed()
    );
    assert!(epoch2 > epoch);
    all_protocols_reach(&mh, "b", 2, 7200);
}

#[test]
fn multihost_simultaneous_claims_converge() {
    let mh = MultiHost::new("a").expect("3 hosts with agents");
    mh.converged(Some(mac("a")), CONVERGE)
        .expect("initial owner");
    let rounds = 100;
    let started = Instant::now();
    let mut winners = [0usize; 2];
    let mut worst = Duration::ZERO;
    let key = format!("{}/owners/havip-mh", mh.prefix);
    for round in 0..rounds {
        std::thread::scope(|s| {
            s.spawn(|| mh.claim("a").expect("claim a"));
            s.spawn(|| mh.claim("b").expect("claim b"));
        });
        let (owner, epoch, t) = mh.converged(None, CONVERGE).unwrap_or_else(|e| {
            panic!(
                "round {round}: {e:#}\nh1:\n{}\nh2:\n{}",
                mh.log(1),
                mh.log(2)
            )
        });
        worst = worst.max(t);
        // One owner everywhere includes etcd: its owner is the kernels'
        // (it may trail them by a publish).
        let deadline = Instant::now() + CONVERGE;
        loop {
            let stored = mh
                .etcd
                .get(&key)
                .ok()
                .flatten()
                .and_then(|v| serde_json::from_str::<havip::cluster::SharedOwner>(&v).ok());
            if stored
                .as_ref()
                .is_some_and(|o| lab::mac_string(o.mac.octets()) == owner && o.epoch == epoch)
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "round {round}: etcd holds {stored:?}, the kernels {owner} at epoch {epoch}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        // Still the same owner on every host once etcd has it (no flap).
        let (again, e2, _) = mh.converged(None, CONVERGE).expect("still converged");
        assert_eq!((&again, e2), (&owner, epoch), "round {round}: no flap");
        if owner == lab::mac_string(mac("a")) {
            winners[0] += 1;
        } else {
            assert_eq!(owner, lab::mac_string(mac("b")), "the owner is a member");
            winners[1] += 1;
        }
    }
    println!(
        "{rounds} simultaneous claims: a won {}, b won {}; slowest convergence {worst:?}; {:?} in all",
        winners[0],
        winners[1],
        started.elapsed()
    );
}

/// Polls `havipctl --json cluster` on host `n` until `ok` holds.
fn cluster_until(
    mh: &MultiHost,
    n: usize,
    what: &str,
    ok: impl Fn(&SyncStatus) -> bool,
) -> SyncStatus {
    let deadline = Instant::now() + CONVERGE;
    loop {
        let s = mh.cluster(n).expect("havipctl cluster");
        if ok(&s) {
            return s;
        }
        assert!(Instant::now() < deadline, "h{n}: {what}; last seen {s:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn multihost_etcd_down_and_agent_killed() {
    let mut mh = MultiHost::new("a").expect("3 hosts with agents");
    mh.converged(Some(mac("a")), CONVERGE)
        .expect("initial owner");
    let all: Vec<String> = ["h1", "h2", "h3"].map(String::from).to_vec();
    for n in 1..=3 {
        let s = cluster_until(&mh, n, "connected, 3 hosts alive", |s| {
            s.connected && s.hosts_alive == all
        });
        assert_eq!(s.host, format!("h{n}"));
        assert_eq!(s.hosts, all, "every host's VTEP is known");
        assert_eq!(s.pending_publishes, 0);
        assert!(
            s.state_revision > 0 && s.last_revision >= s.state_revision,
            "{s:?}"
        );
    }
    let (code, text) = mh.havipctl(1, &["cluster"]).expect("havipctl cluster");
    println!("havipctl cluster on h1:\n{text}");
    assert_eq!(code, 0);
    assert!(text.contains("host:              h1"), "{text}");
    assert!(text.contains("etcd:              connected"), "{text}");
    assert!(text.contains("hosts alive:       h1,h2,h3"), "{text}");
    assert!(text.contains("hosts down:        -"), "{text}");

    // etcd stops: forwarding goes on; a local claim on h2 switches h2 at
    // once, and h1 and h3 through h2's direct owner notice (no etcd).
    mh.etcd.stop().expect("stopping etcd");
    let (sent, a, _) = udp_to_vip(&mh, 200, 7300);
    assert_eq!(a, sent, "traffic to the owner goes on without etcd");
    mh.claim("b").expect("GARP from b");
    let (_, _, t) = mh
        .converged(Some(mac("b")), Duration::from_secs(2))
        .unwrap_or_else(|e| {
            panic!(
                "every host follows h2's notice without etcd: {e:#}\nh2:\n{}\nh3:\n{}",
                mh.log(2),
                mh.log(3)
            )
        });
    println!("with etcd stopped, every host switched to b in {t:?} (notice)");
    assert!(
        mh.log(3).contains("via=notice"),
        "h3 installed b from the notice:\n{}",
        mh.log(3)
    );
    // havipctl cluster on h2 shows the lost connection and the claim it
    // could not publish.
    cluster_until(&mh, 2, "disconnected with 1 pending publish", |s| {
        !s.connected && s.pending_publishes == 1
    });
    let (_, text) = mh.havipctl(2, &["cluster"]).expect("havipctl cluster");
    println!("havipctl cluster on h2 with etcd stopped:\n{text}");
    assert!(text.contains("etcd:              NOT CONNECTED"), "{text}");
    assert!(text.contains("pending publishes: 1"), "{text}");

    // etcd back: the pending claim is published, everyone installs it.
    let t0 = Instant::now();
    mh.etcd.start().expect("starting etcd");
    let (_, _, _) = mh
        .converged(Some(mac("b")), Duration::from_secs(20))
        .unwrap_or_else(|e| panic!("{e:#}\nh2:\n{}", mh.log(2)));
    println!(
        "converged {:?} after etcd restarted (start took {:?})",
        t0.elapsed(),
        mh.etcd.last_start
    );
    all_protocols_reach(&mh, "b", 2, 7400);
    cluster_until(&mh, 2, "connected again, nothing pending", |s| {
        s.connected && s.pending_publishes == 0
    });

    // The owner's agent is SIGKILLed: its pinned data plane keeps
    // forwarding, the others keep tunnelling to it.
    let agent2 = mh.agents[1].take().expect("agent 2");
    agent2.kill9().expect("SIGKILL");
    std::thread::sleep(Duration::from_secs(
        havip::cluster::registry::LEASE_TTL_S.unsigned_abs() + 1,
    ));
    let (sent, _, b) = udp_to_vip(&mh, 200, 7500);
    assert_eq!(
        b, sent,
        "traffic goes on with the owner host's agent dead (lease expired)"
    );
    let s = cluster_until(&mh, 1, "h2 down", |s| !s.hosts_alive.contains(&"h2".into()));
    assert_eq!(s.hosts, all, "h2's VTEP stays known while it is down");
    let (_, text) = mh.havipctl(1, &["cluster"]).expect("havipctl cluster");
    assert!(text.contains("hosts down:        h2"), "{text}");
    // An underlay below the smallest MTU the encap path assumes is refused
    // at start, before the data plane is touched.
    let h2 = mh.fabric.host_ns(2).expect("h2");
    let set_mtu = |mtu: &str| h2.exec(&["ip", "link", "set", "eth0", "mtu", mtu]);
    set_mtu("1200").expect("MTU 1200");
    let refused = mh.start_agent(2);
    set_mtu(&havip_tests::fabric::UNDERLAY_MTU.to_string()).expect("MTU back");
    let Err(err) = refused else {
        panic!("an underlay MTU of 1200 is refused");
    };
    assert!(
        format!("{err:#}").contains("has MTU 1200"),
        "the refusal names the MTU: {err:#}"
    );
    // It re-joins.
    mh.agents[1] = Some(mh.start_agent(2).expect("agent 2 again"));
    mh.converged(Some(mac("b")), CONVERGE)
        .expect("same owner after re-join");
    all_protocols_reach(&mh, "b", 2, 7600);
}
