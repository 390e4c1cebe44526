//! Namespace/veth tests (issues 2 and 3): a host namespace with a bridge and
//! guests `client`, `a` and `b`; the XDP program natively on every host port.
//! a and b both carry the HaVip address, so only the data plane decides who
//! receives the client's UDP, TCP and ICMP. Every namespace and pin is
//! removed by guards, also when a test fails (`havip_tests::HaLab`).

use std::time::Duration;

use havip_common::{owner_flags, DropReason, Handled};
use havip_tests::{frames, send_frames, wait_until, HaLab};

const UDP_PORT: u16 = 5000;
const TCP_PORT: u16 = 8080;
const DATAGRAMS: usize = 300;
const PINGS: u32 = 3;

/// UDP, TCP and ICMP from the client to the HaVip all reach `to` and none
/// reach `not`.
fn assert_havip_traffic_reaches(lab: &HaLab, to: &str, not: &str, when: &str) {
    let (a, b) = lab.udp_to(lab.havip, UDP_PORT, DATAGRAMS);
    let (got_to, got_not) = if to == "a" { (a, b) } else { (b, a) };
    assert_eq!(
        (got_to, got_not),
        (DATAGRAMS as u64, 0),
        "{when}: UDP datagrams to the HaVip received by ({to}, {not}) (owner in OWNERS: {})",
        lab.owner_name()
    );

    let (echoed, a, b) = lab.tcp_to(lab.havip, TCP_PORT);
    let (got_to, got_not) = if to == "a" { (a, b) } else { (b, a) };
    assert_eq!(
        (got_to, got_not),
        (1, 0),
        "{when}: TCP connections to the HaVip accepted by ({to}, {not})"
    );
    assert_eq!(
        String::from_utf8_lossy(&echoed),
        format!("hello {}:{TCP_PORT}", lab.havip),
        "{when}: TCP echo through the HaVip"
    );

    let (a, b) = lab.ping_to(lab.havip, PINGS);
    let (got_to, got_not) = if to == "a" { (a, b) } else { (b, a) };
    assert_eq!(
        (got_to, got_not),
        (u64::from(PINGS), 0),
        "{when}: ICMP echo requests to the HaVip received by ({to}, {not})"
    );
}

#[test]
fn havip_traffic_reaches_the_owner_only_and_follows_owner_changes() {
    let mut lab = HaLab::new(10);
    assert_eq!(lab.owner_name(), "a", "initial owner");
    let before = lab.counters();
    assert_havip_traffic_reaches(&lab, "a", "b", "initial owner a");
    let forwarded =
        lab.counters().get(Handled::Forwarded).packets - before.get(Handled::Forwarded).packets;
    assert!(
        forwarded >= DATAGRAMS as u64 + u64::from(PINGS),
        "HANDLED[forwarded] moved by {forwarded}: the traffic did not go through XDP"
    );
    assert!(
        lab.counters().get(Handled::ProxyArpReplied).packets >= 1,
        "the client resolved the HaVip through proxy ARP"
    );

    // The control plane moves the owner: unbind a, initial owner b.
    let b = lab.binding("b");
    lab.desired.havips[0].bindings = vec![b];
    lab.desired.havips[0].initial_owner = Some(b);
    lab.reconcile();
    assert_eq!(lab.owner_name(), "b", "reconcile after unbinding a");
    assert_havip_traffic_reaches(&lab, "b", "a", "after reconcile moved the owner to b");

    // A direct OWNERS write through the maps API moves it back.
    let a = lab.binding("a");
    lab.desired.havips[0].bindings = vec![a, b];
    lab.reconcile();
    assert_eq!(lab.owner_name(), "b", "rebinding a must not move the owner");
    lab.set_owner_in_map("a");
    assert_eq!(lab.owner().flags, owner_flags::BY_CONTROL);
    assert_havip_traffic_reaches(&lab, "a", "b", "after writing OWNERS back to a");
}

#[test]
fn ordinary_traffic_between_guests_is_untouched() {
    let lab = HaLab::new(11);
    let (a_ip, b_ip) = (lab.guest("a").ip, lab.guest("b").ip);
    let before = lab.counters();

    let (a, b) = lab.udp_to(b_ip, UDP_PORT, DATAGRAMS);
    assert_eq!(
        (a, b),
        (0, DATAGRAMS as u64),
        "UDP to b's own address reaches b only"
    );
    let (a, b) = lab.udp_to(a_ip, UDP_PORT, DATAGRAMS);
    assert_eq!(
        (a, b),
        (DATAGRAMS as u64, 0),
        "UDP to a's own address reaches a only"
    );
    let (echoed, a, b) = lab.tcp_to(b_ip, TCP_PORT);
    assert_eq!((a, b), (0, 1), "TCP to b's own address");
    assert_eq!(
        String::from_utf8_lossy(&echoed),
        format!("hello {b_ip}:{TCP_PORT}")
    );
    let (a, b) = lab.ping_to(b_ip, PINGS);
    assert_eq!((a, b), (0, u64::from(PINGS)), "ping to b's own address");

    let moved = lab.counters().since(&before);
    assert!(
        moved.iter().all(|(c, _)| matches!(
            c,
            havip_tests::Counter::Handled(Handled::Passed | Handled::PassedMemberArp)
        )),
        "ordinary traffic is only ever passed: {moved:?}"
    );
    assert!(
        lab.counters().get(Handled::Passed).packets - before.get(Handled::Passed).packets
            >= 2 * DATAGRAMS as u64,
        "the passed frames went through XDP"
    );
}

#[test]
fn authorised_garp_from_the_standby_moves_traffic() {
    let lab = HaLab::new(12);
    assert_havip_traffic_reaches(&lab, "a", "b", "before the GARP");
    let epoch = lab.owner().epoch;

    let b = lab.guest("b");
    send_frames(b, vec![frames::garp(b.mac, lab.havip).bytes()], || 0);
    assert!(
        wait_until(Duration::from_secs(2), || lab.owner_name() == "b"),
        "b's GARP did not make it owner (owner {}, counters {:?})",
        lab.owner_name(),
        lab.counters()
    );
    let owner = lab.owner();
    assert_eq!(
        (owner.epoch, owner.flags),
        (epoch + 1, owner_flags::BY_CLAIM),
        "{owner:?}"
    );
    assert_eq!(lab.counters().get(Handled::ClaimAccepted).packets, 1);
    assert_havip_traffic_reaches(&lab, "b", "a", "after b's GARP");

    // a announces itself again (keepalived on a becoming master): back to a.
    let a = lab.guest("a");
    send_frames(a, vec![frames::garp(a.mac, lab.havip).bytes()], || 0);
    assert!(
        wait_until(Duration::from_secs(2), || lab.owner_name() == "a"),
        "a's GARP did not make it owner again (owner {})",
        lab.owner_name()
    );
    assert_eq!(lab.owner().epoch, epoch + 2);
    assert_havip_traffic_reaches(&lab, "a", "b", "after a's GARP");
}

#[test]
fn spoofed_garps_from_an_unbound_guest_never_move_traffic() {
    const SPOOFS: u64 = 1_000;
    let lab = HaLab::new(13);
    let owner = lab.owner();
    let (client, b) = (lab.guest("client"), lab.guest("b"));
    // Half with the client's own MAC, half pretending to be b (bound, but
    // not behind the client's port).
    let frames: Vec<Vec<u8>> = (0..SPOOFS)
        .map(|i| {
            let mac = if i % 2 == 0 { client.mac } else { b.mac };
            frames::garp(mac, lab.havip).bytes()
        })
        .collect();
    let before = lab.counters();
    let refused = || {
        lab.counters().get(DropReason::ClaimUnbound).packets
            - before.get(DropReason::ClaimUnbound).packets
    };
    assert_eq!(send_frames(client, frames, refused), SPOOFS);
    assert!(
        wait_until(Duration::from_secs(5), || refused() >= SPOOFS),
        "DROPS[claim_unbound] moved by {} of {SPOOFS} spoofed GARPs",
        refused()
    );
    assert_eq!(
        refused(),
        SPOOFS,
        "every spoofed GARP refused, none counted twice"
    );
    assert_eq!(lab.owner(), owner, "spoofed GARPs changed OWNERS");
    assert_eq!(lab.counters().get(Handled::ClaimAccepted).packets, 0);
    assert_havip_traffic_reaches(&lab, "a", "b", "after 1,000 spoofed GARPs");
}
