//! Real keepalived across hosts (see `havip_tests::multihost`): members a
//! (on h1) and b (on h2) run keepalived with unicast VRRPv3 between their
//! guest addresses, the adverts crossing the kernel VXLAN path; a client c
//! on h3 streams UDP to the HaVip. Host h1 then fails (its agent SIGKILLed,
//! a's and h1's links down): b becomes MASTER, its GARP claims on h2, h2
//! publishes the owner in etcd and h3 tunnels to h2. Describe (and the
//! cluster status) on every live host names the owner host.

use std::{
    net::{Ipv4Addr, SocketAddrV4},
    time::{Duration, Instant},
};

use havip::api::Client;
use havip_tests::{
    keepalived::{require_keepalived, Keepalived, Vrrp},
    lab,
    multihost::{MultiHost, GUESTS, VIP},
    scenario::{agent_binary, Stream},
};
use serde_json::Value;

const CONVERGE: Duration = Duration::from_secs(20);
const INTERVAL: Duration = Duration::from_millis(1);
const PORT: u16 = 9400;
const VRRP: Vrrp = Vrrp {
    version: 3,
    advert_int: 0.5,
    nopreempt: false,
};

fn guest(name: &str) -> (usize, Ipv4Addr, [u8; 6]) {
    GUESTS
        .iter()
        .find(|g| g.1 == name)
        .map(|g| (g.0, g.2, g.3))
        .expect("guest")
}

/// Whether guest `name` holds the HaVip on its eth0 (keepalived's MASTER).
fn holds_vip(mh: &MultiHost, name: &str) -> bool {
    let (n, _, _) = guest(name);
    let ns = &mh.fabric.guest(n, name).expect("guest").ns;
    ns.exec(&["ip", "-4", "addr", "show", "dev", "eth0"])
        .map(|out| String::from_utf8_lossy(&out.stdout).contains(&format!("{VIP}/32")))
        .unwrap_or(false)
}

/// `havipctl --json havip describe havip-mh` on host `n`.
fn describe(mh: &MultiHost, n: usize) -> Value {
    let socket = mh.fabric.host(n).expect("host").scratch.socket();
    let out = std::process::Command::new(
        agent_binary()
            .expect("agent binary")
            .with_file_name("havipctl"),
    )
    .arg("--socket")
    .arg(&socket)
    .args(["--json", "havip", "describe", "havip-mh"])
    .output()
    .expect("havipctl");
    assert!(
        out.status.success(),
        "havipctl on h{n} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("describe JSON")
}

/// `GET /v1/cluster` on host `n`.
fn cluster_status(mh: &MultiHost, n: usize) -> Value {
    let socket = mh.fabric.host(n).expect("host").scratch.socket();
    let (code, body) = Client::unix(socket)
        .raw("GET", "/v1/cluster", None)
        .expect("GET /v1/cluster");
    assert_eq!(code, 200, "GET /v1/cluster on h{n}");
    serde_json::from_slice(&body).expect("cluster JSON")
}

/// Waits until Describe on each of `hosts` names `host` as the owner host
/// (the shared owner as etcd has it), with the member's ENI; returns the
/// epochs seen.
fn wait_owner_host(mh: &MultiHost, hosts: &[usize], host: &str, eni: &str) -> Vec<u64> {
    let deadline = Instant::now() + CONVERGE;
    loop {
        let views: Vec<Value> = hosts.iter().map(|n| describe(mh, *n)).collect();
        let ok = views
            .iter()
            .all(|v| v["owner_host"] == host && v["shared_owner"]["eni"] == eni);
        if ok {
            for (n, v) in hosts.iter().zip(&views) {
                println!(
                    "h{n} describe: owner host {}, shared owner {}, owner member {}, epoch {}",
                    v["owner_host"], v["shared_owner"], v["owner_member"], v["epoch"]
                );
            }
            return views
                .iter()
                .map(|v| v["shared_owner"]["epoch"].as_u64().expect("epoch"))
                .collect();
        }
        assert!(
            Instant::now() < deadline,
            "Describe did not name owner host {host} on {hosts:?}: {views:#?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until the kernels of `hosts` name `mac` as the owner.
fn wait_kernel_owner(mh: &MultiHost, hosts: &[usize], mac: [u8; 6], timeout: Duration) {
    let want = lab::mac_string(mac);
    let deadline = Instant::now() + timeout;
    while !hosts
        .iter()
        .all(|n| mh.owner(*n).is_some_and(|(m, _)| m == want))
    {
        assert!(
            Instant::now() < deadline,
            "owner {want} not installed on {hosts:?}: {:?}\nh2:\n{}",
            hosts.iter().map(|n| mh.owner(*n)).collect::<Vec<_>>(),
            mh.log(2)
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn multihost_keepalived_host_failure_moves_the_havip() {
    require_keepalived();
    let mut mh = MultiHost::new("a").expect("3 hosts with agents");
    mh.converged(Some(guest("a").2), CONVERGE)
        .unwrap_or_else(|e| panic!("{e:#}\nh1:\n{}", mh.log(1)));
    // keepalived adds the HaVip to its master's eth0 itself.
    for name in ["a", "b"] {
        let (n, _, _) = guest(name);
        mh.fabric
            .guest(n, name)
            .expect("guest")
            .ns
            .exec(&["ip", "addr", "del", &format!("{VIP}/32"), "dev", "eth0"])
            .expect("removing the HaVip");
    }

    let (_, ip_a, mac_a) = guest("a");
    let (_, ip_b, mac_b) = guest("b");
    let ns_a = &mh.fabric.guest(1, "a").expect("a").ns;
    let ns_b = &mh.fabric.guest(2, "b").expect("b").ns;
    let ns_c = &mh.fabric.guest(3, "c").expect("c").ns;
    let dir1 = mh.fabric.host(1).expect("h1").scratch.dir.clone();
    let dir2 = mh.fabric.host(2).expect("h2").scratch.dir.clone();

    // a first (higher priority): it becomes MASTER, then b joins as BACKUP.
    let ka_a = Keepalived::start(ns_a, &dir1, ip_a, ip_b, VIP, 150, VRRP).expect("keepalived a");
    let deadline = Instant::now() + CONVERGE;
    while !holds_vip(&mh, "a") {
        assert!(Instant::now() < deadline, "a never became MASTER");
        std::thread::sleep(Duration::from_millis(20));
    }
    let ka_b = Keepalived::start(ns_b, &dir2, ip_b, ip_a, VIP, 100, VRRP).expect("keepalived b");
    std::thread::sleep(Duration::from_secs_f64(VRRP.advert_int * 6.0));
    assert!(
        !holds_vip(&mh, "b"),
        "b took the HaVip although a's adverts cross the VXLAN path"
    );
    let (_, epoch_a, _) = mh
        .converged(Some(mac_a), CONVERGE)
        .unwrap_or_else(|e| panic!("{e:#}\nh1:\n{}", mh.log(1)));
    println!("a is MASTER and owner on every host (epoch {epoch_a})");
    let epochs_a = wait_owner_host(&mh, &[1, 2, 3], "h1", "eni-a");
    for n in [1, 2, 3] {
        let st = cluster_status(&mh, n);
        println!("h{n} cluster status: {st}");
        assert_eq!(st["host"], format!("h{n}"));
        assert_eq!(st["connected"], true, "h{n} is connected to etcd");
        assert!(st["last_revision"].as_i64().unwrap_or(0) > 0);
    }

    // The stream, then host h1 fails.
    let stream = Stream::start(
        ns_c,
        SocketAddrV4::new(VIP, PORT),
        INTERVAL,
        &[("a", ns_a), ("b", ns_b)],
    )
    .expect("UDP stream");
    std::thread::sleep(Duration::from_millis(700));
    let agent1 = mh.agents[0].take().expect("agent 1");
    agent1.kill9().expect("SIGKILL agent 1");
    ns_a.exec(&["ip", "link", "set", "eth0", "down"])
        .expect("a's eth0 down");
    mh.fabric
        .host_ns(1)
        .expect("h1")
        .exec(&["ip", "link", "set", "eth0", "down"])
        .expect("h1's eth0 down");
    let failed = Instant::now();
    let fail_seq = stream.approx_seq(INTERVAL);

    wait_kernel_owner(&mh, &[2, 3], mac_b, CONVERGE);
    let switched = failed.elapsed();
    let switch_seq = stream.approx_seq(INTERVAL);
    assert!(holds_vip(&mh, "b"), "b is keepalived's MASTER");
    std::thread::sleep(Duration::from_millis(1500));
    let report = stream.finish().expect("stream report");

    let loss = report.loss_window(INTERVAL);
    let a_before = report
        .received
        .get("a")
        .map_or(0, |v| v.iter().filter(|(s, _)| *s < fail_seq).count());
    let a_after = report.count_after("a", switch_seq);
    let after = report.sent.saturating_sub(switch_seq + 1);
    let b_after = report.count_after("b", switch_seq);
    println!(
        "sent {}, a got {} ({a_before} before the failure, {a_after} after the switch), \
         b got {} ({b_after} of the {after} sent after the switch); \
         h2 and h3 on b {switched:?} after the failure; loss window {} ms",
        report.sent,
        report.count("a"),
        report.count("b"),
        loss.as_millis()
    );
    assert!(a_before > 0, "a received the stream while MASTER");
    assert_eq!(a_after, 0, "nothing reaches a after the switch");
    assert!(
        b_after as u64 * 100 >= after * 95,
        "most of the stream after the switch reaches b: {b_after} of {after}"
    );
    // 3 adverts + skew for VRRP, then a claim and its publish: generous
    // bound for a loaded machine.
    let bound = Duration::from_secs_f64(VRRP.advert_int * 4.0 + 3.0);
    assert!(loss <= bound, "loss window {loss:?} above {bound:?}");

    // Describe on the live hosts names h2 now, with a newer epoch.
    let epochs_b = wait_owner_host(&mh, &[2, 3], "h2", "eni-b");
    assert!(
        epochs_b.iter().all(|e| *e > epochs_a[0]),
        "epoch moved up: {epochs_a:?} -> {epochs_b:?}"
    );
    for n in [2, 3] {
        let st = cluster_status(&mh, n);
        assert_eq!(st["connected"], true, "h{n} is connected to etcd");
    }
    drop(ka_b);
    drop(ka_a);
}
