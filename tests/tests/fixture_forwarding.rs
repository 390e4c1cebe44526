//! `BPF_PROG_TEST_RUN` fixtures, forwarding: IPv4 to a HaVip is redirected
//! to its owner with the MACs rewritten, or dropped and counted when it
//! cannot be delivered. Topology: `havip_tests::TestBed`.

use havip_common::DropReason;
use havip_tests::frames;
use havip_tests::{
    bed::*, control_owner, fixtures::*, icmp_echo, tcp_flags, write_owner, Case, Port, TestBed,
};

#[test]
fn havip_traffic_is_redirected_to_the_owner() {
    let mut bed = TestBed::new();
    let to_havip = udp(vmac(HAVIP_A), CLIENT_MAC, CLIENT_IP, HAVIP_A);
    let option_ra = [0x94, 0x04, 0x00, 0x00]; // Router Alert
    let options_8 = [0x94, 0x04, 0x00, 0x00, 0x01, 0x01, 0x01, 0x00]; // RA, NOPs, EOL
    let udp_payload = frames::udp(CLIENT_IP, HAVIP_A, 40000, 5000, PAYLOAD);
    let big = vec![0xa5; 1400];
    let mut padded = client_udp_to_a(1, 2, b"x");
    padded.payload.resize(60 - 14, 0); // Ethernet minimum, zero padded

    let cases = vec![
        redirect_to_owner("IPv4/UDP from a client", Port::Client, to_havip.clone()),
        redirect_to_owner(
            "IPv4 with options, IHL 6",
            Port::Client,
            ipv4_frame(
                vmac(HAVIP_A),
                CLIENT_MAC,
                frames::ipv4(CLIENT_IP, HAVIP_A, 17, &option_ra, &udp_payload),
            ),
        ),
        redirect_to_owner(
            "IPv4 with options, IHL 7",
            Port::Client,
            ipv4_frame(
                vmac(HAVIP_A),
                CLIENT_MAC,
                frames::ipv4(CLIENT_IP, HAVIP_A, 17, &options_8, &udp_payload),
            ),
        ),
        redirect_to_owner(
            "TCP SYN",
            Port::Client,
            client_tcp_to_a(tcp_flags::SYN, &[]),
        ),
        redirect_to_owner(
            "TCP segment with data",
            Port::Client,
            client_tcp_to_a(tcp_flags::ACK | tcp_flags::PSH, PAYLOAD),
        ),
        redirect_to_owner(
            "ICMP echo request",
            Port::Client,
            client_to_a(1, &icmp_echo(7, 1, PAYLOAD)),
        ),
        redirect_to_owner(
            "1400-byte payload",
            Port::Client,
            client_udp_to_a(1, 2, &big),
        ),
        redirect_to_owner("60-byte frame with Ethernet padding", Port::Client, padded),
        redirect_to_owner(
            "stale neighbour entry (standby's MAC) still reaches the owner",
            Port::Client,
            udp(STANDBY_MAC, CLIENT_MAC, CLIENT_IP, HAVIP_A),
        ),
        redirect_to_owner(
            "remote client behind the uplink",
            Port::Uplink,
            udp(vmac(HAVIP_A), REMOTE_MAC, REMOTE_IP, HAVIP_A),
        ),
        redirect_to_owner(
            "the standby itself talking to the HaVip",
            Port::Standby,
            udp(vmac(HAVIP_A), STANDBY_MAC, STANDBY_IP, HAVIP_A),
        ),
        Case::drop(
            "vSwitch 2's HaVip from its owner's own port (never hairpinned)",
            Port::Other,
            udp(vmac(HAVIP_VS2), OTHER_MAC, OTHER_IP, HAVIP_VS2).bytes(),
            DropReason::HairpinToOwner,
        ),
    ];
    let forwarded_to_a = cases.len() as u64 - 1;
    let bytes_to_a: u64 = cases[..cases.len() - 1]
        .iter()
        .map(|c| c.input.len() as u64)
        .sum();
    bed.check(&cases);

    let stats = bed.forwarded(HAVIP_A_ID);
    assert_eq!(
        (stats.packets, stats.bytes),
        (forwarded_to_a, bytes_to_a),
        "HAVIP_STATS[{HAVIP_A_ID}] must count every frame forwarded to HaVip A"
    );
    bed.assert_forwarded(HAVIP_VS2_ID, 0, "a hairpin is not forwarded");
    bed.assert_no_events("forwarding must not emit events");
}

#[test]
fn havip_traffic_that_cannot_be_delivered_is_dropped() {
    let mut bed = TestBed::new();
    let to = |dst_mac, dst| udp(dst_mac, CLIENT_MAC, CLIENT_IP, dst).bytes();
    bed.check(&[
        Case::drop(
            "HaVip without an owner",
            Port::Client,
            to(vmac(HAVIP_NO_OWNER), HAVIP_NO_OWNER),
            DropReason::NoOwner,
        ),
        Case::drop(
            "broadcast destination MAC to a HaVip",
            Port::Client,
            to(frames::BROADCAST, HAVIP_A),
            DropReason::NonUnicastToHavip,
        ),
        Case::drop(
            "multicast destination MAC to a HaVip",
            Port::Client,
            to(MULTICAST_MAC, HAVIP_A),
            DropReason::NonUnicastToHavip,
        ),
        Case::drop(
            "broadcast from the uplink to a HaVip",
            Port::Uplink,
            udp(frames::BROADCAST, REMOTE_MAC, REMOTE_IP, HAVIP_A).bytes(),
            DropReason::NonUnicastToHavip,
        ),
        Case::drop(
            "broadcast to a HaVip without owner (group check first)",
            Port::Client,
            to(frames::BROADCAST, HAVIP_NO_OWNER),
            DropReason::NonUnicastToHavip,
        ),
    ]);
    bed.assert_forwarded(HAVIP_A_ID, 0, "dropped frames must not count as forwarded");
}

#[test]
fn redirect_to_a_port_missing_from_tx_ports_is_dropped() {
    let mut bed = TestBed::new();
    // An owner whose port the agent never configured as a redirect target.
    let stray = control_owner(9, HAVIP_A_ID, bed.ifindex(Port::Unknown), OWNER_MAC);
    write_owner(&bed.dp, key(VSWITCH, HAVIP_A), stray);
    // A port in PORTS whose TX_PORTS entry is gone cannot get proxy replies.
    bed.dp
        .maps
        .tx_ports
        .remove(bed.ifindex(Port::Client))
        .expect("removing TX_PORTS[client]");
    bed.check(&[
        Case::drop(
            "owner's port is not in TX_PORTS",
            Port::Client,
            udp(vmac(HAVIP_A), CLIENT_MAC, CLIENT_IP, HAVIP_A).bytes(),
            DropReason::PortNotRedirectable,
        ),
        Case::drop(
            "proxy ARP reply to a port not in TX_PORTS",
            Port::Client,
            frames::arp_request(CLIENT_MAC, CLIENT_IP, HAVIP_A).bytes(),
            DropReason::PortNotRedirectable,
        ),
    ]);
    bed.assert_forwarded(HAVIP_A_ID, 0, "a refused redirect is not a forwarded frame");
}

/// The slot's owner copy (port and MAC cached beside the owner word, so a
/// forwarded frame reads one cache line) is the owner's member's after the
/// agent set the owner and after a claim; a copy of another member than
/// the word names is never used (the member is read instead).
#[test]
fn the_owner_copy_is_used_only_for_the_member_the_word_names() {
    use havip_common::{owner_copy, owner_word};
    let mut bed = TestBed::new();
    let table = std::sync::Arc::clone(&bed.dp.maps.table);
    let copy_of = || {
        let view = table
            .find(&key(VSWITCH, HAVIP_A))
            .expect("HaVip A in the table");
        let copy = table.owner_copy(view.pos);
        assert_eq!(
            owner_copy::member(copy),
            owner_word::member(view.word),
            "the copy names the owner word's member"
        );
        (view, owner_copy::ifindex(copy), owner_copy::mac(copy))
    };
    let (view, ifindex, mac) = copy_of();
    assert_eq!((ifindex, mac), (bed.ifindex(Port::Owner), OWNER_MAC));

    // A foreign copy (another member index, a port and MAC of nobody's).
    let other = if owner_word::member(view.word) == 1 {
        2
    } else {
        1
    };
    let foreign = owner_copy::pack(other, bed.ifindex(Port::Unknown), MULTICAST_MAC);
    table.set_owner_copy(view.pos, foreign);
    bed.check(&[redirect_to_owner(
        "a copy of another member is ignored",
        Port::Client,
        udp(vmac(HAVIP_A), CLIENT_MAC, CLIENT_IP, HAVIP_A),
    )]);

    // A claim by the standby writes its own copy before the owner word.
    let claim = garp(STANDBY_MAC, HAVIP_A);
    bed.run(Port::Standby, &claim);
    let owner = bed.owner(HAVIP_A);
    assert_eq!(
        (owner.ifindex, owner.mac),
        (bed.ifindex(Port::Standby), STANDBY_MAC),
        "the standby's claim is accepted"
    );
    let (_, ifindex, mac) = copy_of();
    assert_eq!((ifindex, mac), (bed.ifindex(Port::Standby), STANDBY_MAC));
    let to_a = udp(vmac(HAVIP_A), CLIENT_MAC, CLIENT_IP, HAVIP_A);
    let out = rewritten(&to_a, STANDBY_MAC, GATEWAY_MAC);
    bed.check(&[Case::redirect(
        "after the claim, to the standby",
        Port::Client,
        to_a.bytes(),
        out,
    )]);
}
