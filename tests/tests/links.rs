//! Links that come and go while the agent runs: a member's host-side veth
//! deleted and re-created (a VM restart: same name and MAC, new ifindex);
//! an agent short of file descriptors; a veth guest without GRO.

use std::{
    net::SocketAddrV4,
    os::unix::process::CommandExt,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use havip::status::Status;
use havip_tests::{
    frames, lab,
    scenario::{agent_binary, AgentProcess, Stream, Trio},
};

/// Status read inside the lab's host namespace (ports are looked up there).
fn host_status(t: &Trio) -> Status {
    t.host_status()
}

fn port_state(t: &Trio, ifname: &str) -> String {
    host_status(t)
        .ports
        .iter()
        .find(|p| p.interface == ifname)
        .map_or_else(|| "absent".to_owned(), |p| p.state.to_owned())
}

fn owner(t: &Trio) -> (Option<String>, u32, u64) {
    let h = host_status(t)
        .havips
        .into_iter()
        .find(|h| h.address == t.vip.to_string())
        .expect("havip in maps");
    (h.owner_mac, h.owner_ifindex, h.epoch)
}

/// Every port of the host's status: interface, state, ifindex.
fn ports(t: &Trio) -> Vec<(String, &'static str, Option<u32>)> {
    host_status(t)
        .ports
        .iter()
        .map(|p| (p.interface.clone(), p.state, p.ifindex))
        .collect()
}

/// The agent's log shows no owner cleared.
fn assert_no_owner_cleared(log: &str) {
    assert!(
        !log.contains("owners_cleared: 1"),
        "an owner was cleared:\n{log}"
    );
}

fn has_xdp(t: &Trio, ifname: &str) -> bool {
    t.lab
        .host
        .exec(&["ip", "-d", "link", "show", "dev", ifname])
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("prog/xdp"))
}

/// Deletes guest `name`'s host-side veth (its guest end goes with it) and
/// re-creates it as the lab made it: same names, MAC, address, GRO, bridge.
fn recreate_port(t: &Trio, name: &str, vip_on_eth0: bool) -> Duration {
    let g = t.lab.guest(name).expect("guest");
    t.lab
        .host
        .exec(&["ip", "link", "del", &g.host_if])
        .expect("ip link del");
    // Give the agent a moment with the port gone.
    std::thread::sleep(Duration::from_millis(300));
    create_port(t, name, vip_on_eth0)
}

/// Creates guest `name`'s veth pair again (after it was deleted) and waits
/// until XDP runs on the host side; returns how long that took.
fn create_port(t: &Trio, name: &str, vip_on_eth0: bool) -> Duration {
    let g = t.lab.guest(name).expect("guest");
    lab::veth(&t.lab.host, &g.host_if, &g.ns, "eth0").expect("veth");
    let mac = lab::mac_string(g.mac);
    g.ns.exec(&["ip", "link", "set", "eth0", "address", &mac])
        .expect("mac");
    g.ns.exec(&["ip", "addr", "add", &format!("{}/24", g.ip), "dev", "eth0"])
        .expect("addr");
    if vip_on_eth0 {
        g.ns.exec(&["ip", "addr", "add", &format!("{}/32", t.vip), "dev", "eth0"])
            .expect("vip addr");
    }
    g.ns.exec(&["ethtool", "-K", "eth0", "gro", "on", "tx", "off"])
        .expect("ethtool guest");
    t.lab
        .host
        .exec(&["ethtool", "-K", &g.host_if, "gro", "on", "tx", "off"])
        .expect("ethtool host");
    t.lab
        .host
        .exec(&["ip", "link", "set", &g.host_if, "master", "br0"])
        .expect("bridge");
    let start = Instant::now();
    while !has_xdp(t, &g.host_if) {
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "XDP not attached to re-created {} after 3 s",
            g.host_if
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    start.elapsed()
}

fn garp(t: &Trio, name: &str) {
    let g = t.lab.guest(name).expect("guest");
    lab::send_raw(&g.ns, "eth0", vec![frames::garp(g.mac, t.vip).bytes()]).expect("garp");
}

/// A 1 ms stream from c to the HaVip's `port`, counted at a and b.
fn stream_from_c(t: &Trio, port: u16) -> Stream {
    Stream::start(
        &t.lab.guests[0].ns,
        SocketAddrV4::new(t.vip, port),
        Duration::from_millis(1),
        &[("a", &t.lab.guests[1].ns), ("b", &t.lab.guests[2].ns)],
    )
    .expect("stream")
}

/// Sends to the HaVip from c for `window` and returns (a, b) counts.
fn traffic(t: &Trio, port: u16, window: Duration) -> (usize, usize) {
    let stream = stream_from_c(t, port);
    std::thread::sleep(window);
    let r = stream.finish().expect("report");
    (r.count("a"), r.count("b"))
}

/// The claim is seen and traffic follows `to` within 1 s.
fn follows(t: &Trio, port: u16, to: &str) {
    let stream = stream_from_c(t, port);
    std::thread::sleep(Duration::from_millis(200));
    let claimed_at = stream.approx_seq(Duration::from_millis(1));
    garp(t, to);
    std::thread::sleep(Duration::from_millis(1200));
    let r = stream.finish().expect("report");
    let after_1s = claimed_at + 1000;
    println!(
        "claim by {to}: sent {}, a {}, b {}, {to} after claim+1s {}",
        r.sent,
        r.count("a"),
        r.count("b"),
        r.count_after(to, after_1s)
    );
    let expected = r.sent.saturating_sub(after_1s + 1) as usize;
    assert!(expected > 50, "stream too short after the claim");
    assert!(
        r.count_after(to, after_1s) + 5 >= expected,
        "traffic did not follow {to} within 1 s of its claim: {} of {expected}",
        r.count_after(to, after_1s)
    );
}

#[test]
fn recreated_members_keep_xdp_and_owners_and_can_claim() {
    let t = Trio::new("hvtl", 21, Some("a"), true).expect("topology");
    let agent = t.start_agent().expect("agent");
    let a_mac = lab::mac_string(t.a.0);
    let b_mac = lab::mac_string(t.b.0);
    let (a, b) = traffic(&t, 9000, Duration::from_millis(400));
    assert!(a > 300 && b == 0, "before: a {a}, b {b}");
    let (_, _, epoch0) = owner(&t);

    // The standby's port goes away and comes back.
    let took = recreate_port(&t, "b", true);
    println!("XDP on re-created hv-b after {took:?}");
    let (who, _, epoch) = owner(&t);
    assert_eq!((who, epoch), (Some(a_mac.clone()), epoch0));
    follows(&t, 9001, "b");
    let (who, b_ifindex, epoch_b) = owner(&t);
    assert_eq!(who, Some(b_mac.clone()));
    assert!(epoch_b > epoch0);

    // The owner's port goes away: the owner is kept while it is down...
    let g = t.lab.guest("b").expect("guest");
    t.lab
        .host
        .exec(&["ip", "link", "del", &g.host_if])
        .expect("del");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        owner(&t),
        (Some(b_mac.clone()), b_ifindex, epoch_b),
        "a disappearing link cleared or changed the owner"
    );
    assert_eq!(port_state(&t, &g.host_if), "down");
    // ...and comes back: same owner, new ifindex, same epoch.
    create_port(&t, "b", true);
    let new_ifindex = t.lab.host.ifindex(&g.host_if).expect("ifindex");
    assert_ne!(new_ifindex, b_ifindex);
    let start = Instant::now();
    while owner(&t).1 != new_ifindex && start.elapsed() < Duration::from_secs(3) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        owner(&t),
        (Some(b_mac.clone()), new_ifindex, epoch_b),
        "owner not moved onto the new ifindex with the same epoch"
    );
    // Traffic reaches b again, and its own claim keeps it there.
    follows(&t, 9002, "b");

    for g in &t.lab.guests {
        assert!(has_xdp(&t, &g.host_if), "no XDP on {}", g.host_if);
        assert_eq!(port_state(&t, &g.host_if), "attached", "{}", g.host_if);
    }
    assert_no_owner_cleared(&agent.log_text());
    agent.stop().expect("stop");
}

#[test]
fn short_of_file_descriptors_nothing_changes() {
    let t = Trio::new("hvtf", 22, Some("a"), true).expect("topology");
    let log = t.scratch.dir.join("agent.log");
    let out = std::fs::File::create(&log).expect("log");
    let mut cmd = Command::new(agent_binary().expect("agent binary"));
    cmd.args(["--netns", t.lab.host.name(), "run", "--config"])
        .arg(&t.config)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(out.try_clone().expect("dup"))
        .stderr(out);
    // SAFETY: setrlimit is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            let lim = libc::rlimit {
                rlim_cur: 96,
                rlim_max: 96,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut agent = AgentProcess {
        child: cmd.spawn().expect("spawn"),
        log: log.clone(),
    };
    agent
        .wait_ready(&t.scratch, 1, Duration::from_secs(30))
        .expect("ready");
    std::thread::sleep(Duration::from_millis(500));
    let before = owner(&t);
    let ports_before = ports(&t);
    assert_eq!(ports_before.len(), 3, "{ports_before:?}");

    // Hold idle API connections until the agent runs out of descriptors.
    let mut held = Vec::new();
    for _ in 0..200 {
        if let Ok(s) = std::os::unix::net::UnixStream::connect(t.scratch.socket()) {
            held.push(s);
        }
    }
    println!("holding {} idle API connections", held.len());
    // Several resync passes and a link event while starved.
    std::thread::sleep(Duration::from_millis(2500));
    t.lab
        .host
        .exec(&[
            "ip", "link", "add", "hvtfx0", "type", "veth", "peer", "name", "hvtfx1",
        ])
        .expect("extra veth");
    std::thread::sleep(Duration::from_millis(2500));
    let (a, b) = traffic(&t, 9000, Duration::from_millis(400));
    let after = owner(&t);
    let ports_after = ports(&t);
    drop(held);
    let text = agent.log_text();
    println!("traffic a {a}, b {b}");
    assert_eq!(before, after, "owner changed while starved:\n{text}");
    assert_eq!(ports_before, ports_after, "ports changed while starved");
    assert!(a > 300 && b == 0, "traffic while starved: a {a}, b {b}");
    assert!(
        text.contains("maps left as they are") || text.contains("Too many open files"),
        "the agent never ran short of descriptors (test proves nothing):\n{text}"
    );
    assert_no_owner_cleared(&text);
    agent.stop().expect("stop");
}

#[test]
fn veth_peer_without_gro_is_reported_and_recovers() {
    let t = Trio::new("hvtg", 23, Some("a"), true).expect("topology");
    let a = t.lab.guest("a").expect("guest");
    a.ns.exec(&["ethtool", "-K", "eth0", "gro", "off"])
        .expect("gro off");
    let agent = t.start_agent().expect("agent");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(port_state(&t, "hv-a"), "no-redirect");
    let st = host_status(&t);
    print!("{st}");
    let log = agent.log_text();
    assert!(
        log.contains("port cannot receive redirected frames") && log.contains("hv-a"),
        "no warning for hv-a:\n{log}"
    );
    let drops_before = drops(&st);
    let (got_a, _) = traffic(&t, 9000, Duration::from_millis(300));
    assert_eq!(got_a, 0, "frames reached a without GRO on its veth peer");
    let drops_after = drops(&host_status(&t));
    assert!(
        drops_after > drops_before + 100,
        "redirects to hv-a not counted as port_not_redirectable: {drops_before} -> {drops_after}"
    );

    a.ns.exec(&["ethtool", "-K", "eth0", "gro", "on"])
        .expect("gro on");
    let start = Instant::now();
    while port_state(&t, "hv-a") != "attached" {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "hv-a still not redirectable 5 s after GRO on"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let (got_a, got_b) = traffic(&t, 9001, Duration::from_millis(400));
    assert!(
        got_a > 300 && got_b == 0,
        "after GRO on: a {got_a}, b {got_b}"
    );
    agent.stop().expect("stop");
}

fn drops(st: &Status) -> u64 {
    st.drops
        .iter()
        .find(|c| c.name == "port_not_redirectable")
        .map_or(0, |c| c.packets)
}
