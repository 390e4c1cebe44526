//! Hitless restart: the agent is killed with SIGKILL while traffic flows to a
//! HaVip and restarted; the pinned data plane keeps forwarding throughout,
//! and owner changes made by claims while no agent ran are kept.

use std::{net::SocketAddrV4, time::Duration};

use havip::status;
use havip_tests::{
    frames, lab,
    scenario::{owner_mac, Stream, Trio},
};

const NET: u8 = 8;

fn setup() -> Trio {
    Trio::new("hvtr", NET, Some("a"), true).expect("topology")
}

fn epoch(t: &Trio) -> u64 {
    status::read(&t.scratch.pin_dir)
        .expect("status")
        .havips
        .iter()
        .find(|h| h.address == t.vip.to_string())
        .expect("havip in maps")
        .epoch
}

#[test]
fn sigkill_under_traffic_loses_no_frame_and_keeps_owner() {
    let t = setup();
    let (scratch, lab, vip) = (&t.scratch, &t.lab, t.vip);
    let a_mac = t.a.0;
    let agent = t.start_agent().expect("agent ready");
    assert_eq!(
        owner_mac(&scratch.pin_dir, vip),
        Some(lab::mac_string(a_mac))
    );
    let epoch_before = epoch(&t);

    let interval = Duration::from_micros(500);
    let (ns_c, ns_a, ns_b) = (&lab.guests[0].ns, &lab.guests[1].ns, &lab.guests[2].ns);
    let stream = Stream::start(
        ns_c,
        SocketAddrV4::new(vip, 9000),
        interval,
        &[("a", ns_a), ("b", ns_b)],
    )
    .expect("stream");
    std::thread::sleep(Duration::from_millis(500));
    agent.kill9().expect("SIGKILL");
    std::thread::sleep(Duration::from_millis(500));
    let agent = t.start_agent().expect("agent ready again");
    std::thread::sleep(Duration::from_millis(500));
    let report = stream.finish().expect("stream report");

    println!(
        "sent {}, a {}, b {}",
        report.sent,
        report.count("a"),
        report.count("b")
    );
    assert!(report.sent > 1000, "stream too short: {}", report.sent);
    assert_eq!(report.count("b"), 0, "the standby received HaVip traffic");
    assert_eq!(
        report.count("a") as u64,
        report.sent,
        "frames lost across the agent's SIGKILL and restart"
    );
    assert_eq!(
        owner_mac(&scratch.pin_dir, vip),
        Some(lab::mac_string(a_mac))
    );
    assert_eq!(epoch(&t), epoch_before, "restart changed the owner epoch");
    agent.stop().expect("stop");
}

#[test]
fn claim_while_agent_is_down_is_adopted_not_overwritten() {
    let t = setup();
    let (scratch, lab, vip) = (&t.scratch, &t.lab, t.vip);
    let b_mac = t.b.0;
    let agent = t.start_agent().expect("agent ready");
    agent.kill9().expect("SIGKILL");

    // b takes over while no agent runs: the kernel switches on its own.
    lab::send_raw(
        &lab.guests[2].ns,
        "eth0",
        vec![frames::garp(b_mac, vip).bytes()],
    )
    .expect("garp");
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(
        owner_mac(&scratch.pin_dir, vip),
        Some(lab::mac_string(b_mac))
    );
    let epoch_b = epoch(&t);

    let agent = t.start_agent().expect("agent ready again");
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(
        owner_mac(&scratch.pin_dir, vip),
        Some(lab::mac_string(b_mac)),
        "the restarted agent overwrote the kernel's owner with the config's master"
    );
    assert_eq!(epoch(&t), epoch_b);

    // The store learnt the kernel's owner: Describe reports b as master.
    let out = std::process::Command::new(
        havip_tests::scenario::agent_binary()
            .expect("agent binary")
            .with_file_name("havipctl"),
    )
    .args(["--socket"])
    .arg(scratch.socket())
    .args(["--json", "havip", "describe", "havip-hvtr"])
    .output()
    .expect("havipctl");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "havipctl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("i-b") || text.contains("eni-b"),
        "describe does not show b as master: {text}"
    );

    // And traffic goes to b.
    let stream = Stream::start(
        &lab.guests[0].ns,
        SocketAddrV4::new(vip, 9001),
        Duration::from_millis(1),
        &[("a", &lab.guests[1].ns), ("b", &lab.guests[2].ns)],
    )
    .expect("stream");
    std::thread::sleep(Duration::from_millis(300));
    let report = stream.finish().expect("report");
    assert_eq!(report.count("a"), 0);
    assert_eq!(report.count("b") as u64, report.sent);
    agent.stop().expect("stop");
}
