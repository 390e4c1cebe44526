//! `BPF_PROG_TEST_RUN` fixtures, VLAN: tagged frames are never redirected,
//! never claim and never get proxy-ARP answers; they pass untouched
//! (`passed_tagged`) to the bridge, whose VLAN filtering decides. A tagged
//! frame naming a HaVip as sender/source on an instance port is dropped
//! (`tagged_havip_sender`) and reported.

use havip_common::{DropReason, Handled};
use havip_tests::frames;
use havip_tests::{as_8021ad, bed::*, fixtures::*, Case, Counter, Port, TestBed};

fn tagged(name: &str, ingress: Port, input: Vec<u8>) -> Case {
    Case::untouched(name, ingress, input, Handled::PassedTagged)
}

#[test]
fn tagged_frames_pass_untouched_to_the_bridge() {
    let mut bed = TestBed::new();
    let to_havip = udp(vmac(HAVIP_A), CLIENT_MAC, CLIENT_IP, HAVIP_A);
    bed.check(&[
        tagged(
            "client's IPv4 to the HaVip in 802.1Q VLAN 100",
            Port::Client,
            to_havip.clone().vlan(100).bytes(),
        ),
        tagged(
            "client's IPv4 to the HaVip in an 802.1ad tag",
            Port::Client,
            as_8021ad(&to_havip.clone().vlan(100)),
        ),
        tagged(
            "IPv4 to a HaVip without owner, in a VLAN",
            Port::Client,
            udp(vmac(HAVIP_NO_OWNER), CLIENT_MAC, CLIENT_IP, HAVIP_NO_OWNER)
                .vlan(5)
                .bytes(),
        ),
        tagged(
            "broadcast to the HaVip in a VLAN",
            Port::Client,
            udp(frames::BROADCAST, CLIENT_MAC, CLIENT_IP, HAVIP_A)
                .vlan(5)
                .bytes(),
        ),
        tagged(
            "standby's IPv4 to the HaVip in a VLAN",
            Port::Standby,
            udp(vmac(HAVIP_A), STANDBY_MAC, STANDBY_IP, HAVIP_A)
                .vlan(7)
                .bytes(),
        ),
        tagged(
            "client asks for the HaVip in VLAN 100 (no proxy reply)",
            Port::Client,
            frames::arp_request(CLIENT_MAC, CLIENT_IP, HAVIP_A)
                .vlan(100)
                .bytes(),
        ),
        tagged(
            "remote client's IPv4 to the HaVip, tagged on the uplink",
            Port::Uplink,
            udp(vmac(HAVIP_A), REMOTE_MAC, REMOTE_IP, HAVIP_A)
                .vlan(100)
                .bytes(),
        ),
        tagged(
            "IPv4 to an ordinary address, tagged on the uplink",
            Port::Uplink,
            udp(CLIENT_MAC, REMOTE_MAC, REMOTE_IP, PLAIN_IP)
                .vlan(42)
                .bytes(),
        ),
        tagged(
            "remote owner's reply from the HaVip, tagged on the uplink",
            Port::Uplink,
            udp(CLIENT_MAC, REMOTE_MAC, HAVIP_A, CLIENT_IP)
                .vlan(42)
                .bytes(),
        ),
        tagged(
            "tagged GARP for the HaVip on the uplink (never a claim)",
            Port::Uplink,
            frames::garp(REMOTE_MAC, HAVIP_A).vlan(42).bytes(),
        ),
        tagged(
            "remote ARP request for the HaVip, tagged on the uplink",
            Port::Uplink,
            frames::arp_request(REMOTE_MAC, REMOTE_IP, HAVIP_A)
                .vlan(42)
                .bytes(),
        ),
        tagged(
            "ARP for an ordinary address, tagged on an instance port",
            Port::Client,
            frames::arp_request(CLIENT_MAC, CLIENT_IP, PLAIN_IP)
                .vlan(42)
                .bytes(),
        ),
    ]);
    bed.assert_forwarded(HAVIP_A_ID, 0, "no tagged frame is forwarded");
    assert_owner(&bed, HAVIP_A, Port::Owner, OWNER_MAC, 1);
    bed.assert_no_events("tagged pass-through emits no events");
}

#[test]
fn tagged_frames_naming_a_havip_on_an_instance_port_are_dropped() {
    let mut bed = TestBed::new();
    // (case, port and MAC the refusal event names)
    let table = [
        (
            "standby's tagged GARP with its bound MAC (no claim through a tag)",
            Port::Standby,
            frames::garp(STANDBY_MAC, HAVIP_A).vlan(3).bytes(),
            STANDBY_MAC,
        ),
        (
            "standby's GARP in an 802.1ad tag",
            Port::Standby,
            as_8021ad(&frames::garp(STANDBY_MAC, HAVIP_A).vlan(3)),
            STANDBY_MAC,
        ),
        (
            "unbound client's tagged GARP",
            Port::Client,
            frames::garp(CLIENT_MAC, HAVIP_A).vlan(3).bytes(),
            CLIENT_MAC,
        ),
        (
            "owner's tagged ARP request from the HaVip",
            Port::Owner,
            frames::arp_request(OWNER_MAC, HAVIP_A, CLIENT_IP)
                .vlan(9)
                .bytes(),
            OWNER_MAC,
        ),
        (
            "owner's tagged IPv4 from the HaVip",
            Port::Owner,
            udp(CLIENT_MAC, OWNER_MAC, HAVIP_A, CLIENT_IP)
                .vlan(9)
                .bytes(),
            OWNER_MAC,
        ),
        (
            "client's tagged IPv4 with the HaVip as source",
            Port::Client,
            udp(STANDBY_MAC, CLIENT_MAC, HAVIP_A, STANDBY_IP)
                .vlan(9)
                .bytes(),
            CLIENT_MAC,
        ),
    ];
    for (name, port, frame, mac) in table {
        let case = Case::drop(name, port, frame, DropReason::TaggedHavipSender);
        bed.check(std::slice::from_ref(&case));
        assert_owner(&bed, HAVIP_A, Port::Owner, OWNER_MAC, 1);
        let events = bed.events();
        assert!(owner_changes(&events).is_empty(), "[{name}] {events:?}");
        let refused = refusals(&events);
        assert_eq!(refused.len(), 1, "[{name}] one CLAIM_REFUSED: {events:?}");
        let (reason, ev) = refused[0];
        assert_eq!(
            (reason, ev.key, ev.havip_id, ev.ifindex, ev.mac),
            (
                Some(DropReason::TaggedHavipSender),
                key(VSWITCH, HAVIP_A),
                HAVIP_A_ID,
                bed.ifindex(port),
                mac
            ),
            "[{name}] CLAIM_REFUSED event {ev:?}"
        );
    }
    let drops = bed
        .counters()
        .get(Counter::Drop(DropReason::TaggedHavipSender));
    assert_eq!(drops.packets, 6, "DROPS[tagged_havip_sender]");
}
