//! Lifecycle operations through the API of a real agent, seen in the data
//! plane: DeleteEni of the owner ENI, UnassociateHaVip of the owner (refused
//! without force, clears the owner with it), ModifyEni to a new tap name,
//! DeleteInstance of a standby. Each test has its own lab and agent.

use std::{
    net::SocketAddrV4,
    time::{Duration, Instant},
};

use havip::{
    api::Client,
    model::{DeleteEni, DeleteInstance, Member, ModifyEni, UnassociateHaVip},
    status::Status,
};
use havip_tests::{
    frames, lab,
    scenario::{guest_name, lab_config, AgentProcess, Stream, Trio},
    wait_until,
};

/// One reconcile of the agent, with margin: what an operation may take to
/// reach the maps.
const RECONCILE: Duration = Duration::from_secs(3);
const WINDOW: Duration = Duration::from_millis(700);

fn host_status(t: &Trio) -> Status {
    t.host_status()
}

/// (owner MAC, epoch) of the trio's HaVip in the maps.
fn owner(t: &Trio) -> (Option<String>, u64) {
    let h = host_status(t)
        .havips
        .into_iter()
        .find(|h| h.address == t.vip.to_string())
        .expect("HaVip in the maps");
    (h.owner_mac, h.epoch)
}

fn port_state(t: &Trio, ifname: &str) -> Option<String> {
    host_status(t)
        .ports
        .into_iter()
        .find(|p| p.interface == ifname)
        .map(|p| p.state.to_owned())
}

fn has_xdp(t: &Trio, ifname: &str) -> bool {
    t.lab
        .host
        .exec(&["ip", "-d", "link", "show", "dev", ifname])
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("prog/xdp"))
}

/// Sends to the HaVip from c for [`WINDOW`]: (sent, at a, at b).
fn traffic(t: &Trio, port: u16) -> (u64, usize, usize) {
    let stream = Stream::start(
        &t.lab.guests[0].ns,
        SocketAddrV4::new(t.vip, port),
        Duration::from_millis(1),
        &[("a", &t.lab.guests[1].ns), ("b", &t.lab.guests[2].ns)],
    )
    .expect("stream");
    std::thread::sleep(WINDOW);
    let r = stream.finish().expect("report");
    (r.sent, r.count("a"), r.count("b"))
}

fn garp_from(t: &Trio, name: &str) {
    let g = t.lab.guest(name).expect("guest");
    lab::send_raw(&g.ns, "eth0", vec![frames::garp(g.mac, t.vip).bytes()]).expect("garp");
}

fn owner_becomes(t: &Trio, mac: Option<[u8; 6]>, within: Duration) -> Option<Duration> {
    let want = mac.map(lab::mac_string);
    let start = Instant::now();
    wait_until(within, || owner(t).0 == want).then(|| start.elapsed())
}

/// Asserts that nearly everything c sends reaches `to` ("a" or "b") and
/// nothing the other member.
fn assert_flows_to(t: &Trio, to: &str, port: u16) {
    let (sent, a, b) = traffic(t, port);
    println!("traffic to {to}: sent {sent}, a {a}, b {b}");
    let (got, other) = if to == "a" { (a, b) } else { (b, a) };
    assert!(
        got as u64 * 100 >= sent * 95,
        "only {got} of {sent} datagrams reached {to}"
    );
    assert_eq!(other, 0, "datagrams reached the member that does not own");
}

fn assert_no_traffic(t: &Trio, port: u16) {
    let (sent, a, b) = traffic(t, port);
    println!("traffic with no owner: sent {sent}, a {a}, b {b}");
    assert!(sent > 100, "stream sent only {sent}");
    assert_eq!((a, b), (0, 0), "a HaVip without owner delivered traffic");
}

fn start(t: &Trio) -> (AgentProcess, Client) {
    let agent = t.start_agent().expect("agent");
    (agent, Client::unix(t.scratch.socket()))
}

/// The trio with a and b bound as instances, a the owner by its GARP.
fn trio_owned_by_a(tag: &str, net: u8) -> (Trio, AgentProcess, Client) {
    let t = Trio::new(tag, net, Some("a"), true).expect("topology");
    let (agent, client) = start(&t);
    a_claims(&t, &agent);
    (t, agent, client)
}

/// a's GARP makes it the owner (asserted, with the agent's log).
fn a_claims(t: &Trio, agent: &AgentProcess) {
    garp_from(t, "a");
    assert!(
        owner_becomes(t, Some(t.a.0), Duration::from_secs(2)).is_some(),
        "a does not own the HaVip; agent log:\n{}",
        agent.log_text()
    );
}

#[test]
fn delete_owner_eni_clears_owner_port_and_traffic() {
    let t = Trio::new("hvtla", 21, None, true).expect("topology");
    // a's and b's ENIs are secondary ENIs of their instances (a primary ENI
    // goes only with its instance), and the HaVip binds the ENIs.
    let mut config = lab_config(&t.scratch, &t.lab, "10.0.21.0/24", &[]);
    for g in &t.lab.guests[1..] {
        let name = guest_name(&t.lab, g);
        config = config.replace(
            &format!("interface = \"{}\"\nprimary = true", g.host_if),
            &format!("interface = \"{}\"\nprimary = false", g.host_if),
        );
        assert!(config.contains(&format!("eni-{name}")));
    }
    config.push_str(&format!(
        "[[havip]]\nid = \"havip-eni\"\nvswitch = \"vsw-lab\"\naddress = \"{}\"\nenis = [\"eni-a\", \"eni-b\"]\ninitial_owner = \"eni-a\"\n",
        t.vip
    ));
    std::fs::write(&t.config, config).expect("config");
    let (agent, client) = start(&t);
    a_claims(&t, &agent);
    assert_flows_to(&t, "a", 9400);
    assert_eq!(port_state(&t, "hv-a").as_deref(), Some("attached"));

    let asked = Instant::now();
    client
        .apply::<serde_json::Value>(DeleteEni { id: "eni-a".into() })
        .expect("DeleteEni eni-a");
    let cleared = owner_becomes(&t, None, RECONCILE).unwrap_or_else(|| {
        panic!(
            "owner still {:?} {RECONCILE:?} after DeleteEni; agent log:\n{}",
            owner(&t),
            agent.log_text()
        )
    });
    assert!(
        wait_until(RECONCILE, || port_state(&t, "hv-a").is_none()),
        "hv-a still in the maps: {:?}",
        port_state(&t, "hv-a")
    );
    let port_gone = asked.elapsed();
    println!(
        "DeleteEni: owner cleared in {} ms, port gone in {} ms",
        cleared.as_millis(),
        port_gone.as_millis()
    );
    assert!(!has_xdp(&t, "hv-a"), "XDP still on hv-a");
    let h = client.get_havip("havip-eni").expect("get havip");
    assert_eq!(h.owner_member, None, "API still names an owner");
    assert_no_traffic(&t, 9401);
    // a, no longer bound, cannot claim it back; b still can.
    garp_from(&t, "a");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        owner(&t).0,
        None,
        "a claimed a HaVip it is no longer bound to"
    );
    garp_from(&t, "b");
    assert!(
        owner_becomes(&t, Some(t.b.0), Duration::from_secs(2)).is_some(),
        "b's claim was refused"
    );
    assert_flows_to(&t, "b", 9402);
    agent.stop().expect("stop");
}

#[test]
fn unassociate_owner_needs_force_and_then_stops_traffic() {
    let (t, agent, client) = trio_owned_by_a("hvtlb", 22);
    let havip = "havip-hvtlb";
    assert_flows_to(&t, "a", 9410);
    let epoch = owner(&t).1;

    let err = client
        .apply::<serde_json::Value>(UnassociateHaVip {
            havip: havip.into(),
            member: Member::instance("i-a"),
            force: false,
        })
        .expect_err("unassociating the owner without force must be refused");
    assert_eq!(err.code(), Some("Conflict.MemberIsOwner"), "{err}");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(owner(&t), (Some(lab::mac_string(t.a.0)), epoch));
    assert_flows_to(&t, "a", 9411);

    let asked = Instant::now();
    client
        .apply::<serde_json::Value>(UnassociateHaVip {
            havip: havip.into(),
            member: Member::instance("i-a"),
            force: true,
        })
        .expect("forced unassociate");
    assert!(
        owner_becomes(&t, None, RECONCILE).is_some(),
        "owner still {:?} after the forced unassociate",
        owner(&t)
    );
    println!(
        "forced UnassociateHaVip: owner cleared in {} ms",
        asked.elapsed().as_millis()
    );
    let h = client.get_havip(havip).expect("get havip");
    assert_eq!(h.owner_member, None);
    assert_no_traffic(&t, 9412);
    agent.stop().expect("stop");
}

#[test]
fn modify_eni_moves_xdp_to_the_new_tap() {
    let (t, agent, client) = trio_owned_by_a("hvtlc", 23);
    let b = t.lab.guest("b").expect("b");
    // The VM restarts with a new tap: the old one goes, a new one (same
    // MAC and address inside) appears under another name.
    t.lab
        .host
        .exec(&["ip", "link", "del", &b.host_if])
        .expect("ip link del");
    let new_if = "hv-b-new";
    lab::veth(&t.lab.host, new_if, &b.ns, "eth0").expect("veth");
    b.ns.exec(&[
        "ip",
        "link",
        "set",
        "eth0",
        "address",
        &lab::mac_string(b.mac),
    ])
    .expect("mac");
    for addr in [format!("{}/24", b.ip), format!("{}/32", t.vip)] {
        b.ns.exec(&["ip", "addr", "add", &addr, "dev", "eth0"])
            .expect("addr");
    }
    b.ns.exec(&["ethtool", "-K", "eth0", "gro", "on", "tx", "off"])
        .expect("ethtool guest");
    t.lab
        .host
        .exec(&["ethtool", "-K", new_if, "gro", "on", "tx", "off"])
        .expect("ethtool host");
    t.lab
        .host
        .exec(&["ip", "link", "set", new_if, "master", "br0"])
        .expect("bridge");
    // Not yet the ENI's interface: no XDP there, b's claim goes nowhere.
    std::thread::sleep(Duration::from_millis(500));
    assert!(!has_xdp(&t, new_if), "XDP on {new_if} before ModifyEni");
    garp_from(&t, "b");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        owner(&t).0,
        Some(lab::mac_string(t.a.0)),
        "claim from an unknown tap"
    );

    let asked = Instant::now();
    client
        .apply::<serde_json::Value>(ModifyEni {
            id: "eni-b".into(),
            interface: new_if.into(),
        })
        .expect("ModifyEni");
    assert!(
        wait_until(RECONCILE, || has_xdp(&t, new_if)
            && port_state(&t, new_if).as_deref() == Some("attached")),
        "XDP not attached to {new_if}: {:?}; agent log:\n{}",
        port_state(&t, new_if),
        agent.log_text()
    );
    println!(
        "ModifyEni: XDP on {new_if} after {} ms",
        asked.elapsed().as_millis()
    );
    assert_eq!(port_state(&t, "hv-b"), None, "the old tap is still a port");
    assert_flows_to(&t, "a", 9420);
    garp_from(&t, "b");
    assert!(
        owner_becomes(&t, Some(t.b.0), Duration::from_secs(2)).is_some(),
        "claim from the new tap refused; owner {:?}",
        owner(&t)
    );
    assert_flows_to(&t, "b", 9421);
    // And back: a's claim still works, traffic follows.
    garp_from(&t, "a");
    assert!(owner_becomes(&t, Some(t.a.0), Duration::from_secs(2)).is_some());
    assert_flows_to(&t, "a", 9422);
    agent.stop().expect("stop");
}

#[test]
fn delete_standby_instance_keeps_owner_and_traffic() {
    let (t, agent, client) = trio_owned_by_a("hvtld", 24);
    let epoch = owner(&t).1;
    assert_flows_to(&t, "a", 9430);

    client
        .apply::<serde_json::Value>(DeleteInstance { id: "i-b".into() })
        .expect("DeleteInstance i-b");
    assert!(
        wait_until(RECONCILE, || port_state(&t, "hv-b").is_none()),
        "hv-b still a port: {:?}",
        port_state(&t, "hv-b")
    );
    assert_eq!(
        owner(&t),
        (Some(lab::mac_string(t.a.0)), epoch),
        "deleting the standby moved the owner"
    );
    let h = client.get_havip("havip-hvtld").expect("get havip");
    assert_eq!(h.owner_member.as_deref(), Some("i-a"));
    assert_flows_to(&t, "a", 9431);
    // b is gone from the HaVip: its claim moves nothing.
    garp_from(&t, "b");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(owner(&t), (Some(lab::mac_string(t.a.0)), epoch));
    assert_flows_to(&t, "a", 9432);
    agent.stop().expect("stop");
}
