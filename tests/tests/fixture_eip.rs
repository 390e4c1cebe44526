//! `BPF_PROG_TEST_RUN` fixtures, EIP 1:1 NAT: IPv4 from the uplink to an
//! EIP gets the HaVip as destination and goes to its owner; the owner's
//! frames from the HaVip to the outside get the EIP as source and leave by
//! the uplink (host routing and ARP table through `bpf_fib_lookup`). Every
//! expected frame is built from scratch with the translated addresses, so
//! every checksum the program patched is compared with a full computation.
//! Topology: `havip_tests::TestBed` plus an address and a neighbour on the
//! uplink (see [`eip_bed`]).

use std::net::Ipv4Addr;

use havip::dataplane::DesiredEip;
use havip_common::{DropReason, Handled, HavipKey};
use havip_tests::{
    action, bed::*, fixtures::*, frames, icmp_echo, lab, tcp, tcp_flags, Case, Counter, Port,
    TestBed,
};

/// The EIP associated with HaVip A.
const EIP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 10);
/// An EIP that is associated with nothing (no map entry).
const EIP_FREE: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 11);
/// A host on the internet, on the uplink's segment (resolved neighbour).
const INTERNET: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 7);
const INTERNET_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x77, 0x01];
/// On the uplink's segment, never resolved.
const UNRESOLVED: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 8);
/// No route in the bed's namespace.
const UNROUTED: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
/// Behind a blackhole route.
const BLACKHOLED: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 129);
/// Routed out of the client's instance port (not an uplink).
const VIA_INSTANCE: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 9);
const VIA_INSTANCE_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x77, 0x02];

fn eip_entry() -> DesiredEip {
    DesiredEip {
        address: EIP.octets(),
        havip: HavipKey {
            vswitch_id: VSWITCH,
            addr: HAVIP_A.octets(),
        },
        havip_id: HAVIP_A_ID,
    }
}

/// Runs `ip ...` in the bed's namespace (the calling thread is inside it).
fn ip(args: &[&str]) {
    lab::run("ip", args).unwrap_or_else(|e| panic!("ip {}: {e:#}", args.join(" ")));
}

/// A permanent neighbour entry `addr` → `mac` on `dev` (no ARP needed).
fn permanent_neighbour(addr: Ipv4Addr, mac: [u8; 6], dev: &str) {
    let (addr, mac) = (addr.to_string(), lab::mac_string(mac));
    ip(&[
        "neigh",
        "replace",
        &addr,
        "lladdr",
        &mac,
        "dev",
        dev,
        "nud",
        "permanent",
    ]);
}

/// The standard bed with EIP → HaVip A, the uplink at 203.0.113.1/24 with
/// `INTERNET` resolved, 198.18.0.0/24 on the client port, and IPv4
/// forwarding on (`bpf_fib_lookup` refuses ports that do not forward).
/// Returns the bed and the uplink's MAC (source of SNAT frames).
fn eip_bed() -> (TestBed, [u8; 6]) {
    let mut bed = TestBed::new();
    bed.reconcile_with(|d| d.eips = vec![eip_entry()]);
    ip(&[
        "addr",
        "add",
        "203.0.113.1/24",
        "dev",
        Port::Uplink.ifname(),
    ]);
    permanent_neighbour(INTERNET, INTERNET_MAC, "uplink");
    ip(&["route", "add", "blackhole", "192.0.2.128/25"]);
    ip(&["addr", "add", "198.18.0.1/24", "dev", Port::Client.ifname()]);
    permanent_neighbour(VIA_INSTANCE, VIA_INSTANCE_MAC, "client");
    lab::run("sysctl", &["-qw", "net.ipv4.conf.all.forwarding=1"])
        .unwrap_or_else(|e| panic!("enabling forwarding: {e:#}"));
    // (/sys shows the mount namespace's devices, not this thread's netns.)
    let out = lab::run("ip", &["-o", "link", "show", "dev", "uplink"]).expect("ip link show");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let uplink_mac = text
        .split_whitespace()
        .skip_while(|w| *w != "link/ether")
        .nth(1)
        .and_then(frames::parse_mac)
        .unwrap_or_else(|| panic!("the uplink's MAC in {text:?}"));
    (bed, uplink_mac)
}

/// An IPv4 packet `src` → `dst` of `protocol` whose L4 part is `l4(src, dst)`
/// (so a checksum over the pseudo-header is computed for these addresses).
fn packet(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    protocol: u8,
    l4: &dyn Fn(Ipv4Addr, Ipv4Addr) -> Vec<u8>,
) -> Vec<u8> {
    frames::ipv4(src, dst, protocol, &[], &l4(src, dst))
}

/// One translated-and-redirected case: `l4` built once for the addresses
/// on the wire before, once for those after the translation.
#[allow(clippy::too_many_arguments)]
fn nat_case(
    name: &str,
    ingress: Port,
    (in_dst_mac, in_src_mac): ([u8; 6], [u8; 6]),
    (out_dst_mac, out_src_mac): ([u8; 6], [u8; 6]),
    (src, dst): (Ipv4Addr, Ipv4Addr),
    (new_src, new_dst): (Ipv4Addr, Ipv4Addr),
    build: &dyn Fn(Ipv4Addr, Ipv4Addr) -> Vec<u8>,
    handled: Handled,
) -> Case {
    Case {
        name: name.to_owned(),
        ingress,
        input: ipv4_frame(in_dst_mac, in_src_mac, build(src, dst)).bytes(),
        expect_action: action::REDIRECT,
        expect_output: Some(ipv4_frame(out_dst_mac, out_src_mac, build(new_src, new_dst)).bytes()),
        expect_counter: Counter::Handled(handled),
    }
}

fn udp_l4(sport: u16, data: &'static [u8]) -> impl Fn(Ipv4Addr, Ipv4Addr) -> Vec<u8> {
    move |s, d| frames::udp(s, d, sport, 5000, data)
}

/// IPv4 packets of every kind the NAT handles, as `(name, builder)`: the
/// builder takes the addresses and returns the whole IPv4 packet.
type Builder = Box<dyn Fn(Ipv4Addr, Ipv4Addr) -> Vec<u8>>;

fn kinds(reply: bool) -> Vec<(&'static str, Builder)> {
    let (sport, dport) = if reply { (80, 40001) } else { (40001, 80) };
    let big: &'static [u8] = Box::leak(vec![0x5a; 1400].into_boxed_slice());
    // A UDP datagram of 64 bytes of data, split after 24 bytes of UDP.
    let whole = |s, d| frames::udp(s, d, 40002, 5001, &[0xc3; 64]);
    vec![
        (
            "TCP SYN",
            Box::new(move |s, d| {
                packet(s, d, 6, &|s, d| {
                    tcp(s, d, sport, dport, tcp_flags::SYN, &[])
                })
            }),
        ),
        (
            "TCP segment with data",
            Box::new(move |s, d| {
                packet(s, d, 6, &|s, d| {
                    tcp(s, d, sport, dport, tcp_flags::ACK | tcp_flags::PSH, PAYLOAD)
                })
            }),
        ),
        (
            "UDP with a checksum",
            Box::new(|s, d| packet(s, d, 17, &udp_l4(40000, PAYLOAD))),
        ),
        (
            "UDP with checksum 0 (stays 0)",
            Box::new(|s, d| packet(s, d, 17, &|_, _| frames::udp_no_checksum(1, 2, PAYLOAD))),
        ),
        (
            "1400-byte UDP",
            Box::new(move |s, d| packet(s, d, 17, &udp_l4(40000, big))),
        ),
        (
            "ICMP echo (no pseudo-header)",
            Box::new(move |s, d| {
                let mut m = icmp_echo(7, 1, PAYLOAD);
                if reply {
                    // Echo reply: type 0, checksum + 8.
                    m[0] = 0;
                    let c = frames::checksum(&[&[0, 0, 0, 0][..], &m[4..]].concat());
                    m[2..4].copy_from_slice(&c.to_be_bytes());
                }
                frames::ipv4(s, d, 1, &[], &m)
            }),
        ),
        (
            "IPv4 options (IHL 6), UDP",
            Box::new(|s, d| {
                let option_ra = [0x94, 0x04, 0x00, 0x00];
                frames::ipv4(
                    s,
                    d,
                    17,
                    &option_ra,
                    &frames::udp(s, d, 40000, 5000, PAYLOAD),
                )
            }),
        ),
        (
            "first fragment (MF, offset 0): UDP checksum of the whole datagram",
            Box::new(move |s, d| frames::ipv4_with(s, d, 17, 77, 0x2000, &[], &whole(s, d)[..32])),
        ),
        (
            "non-first fragment (offset 32): IPv4 header only",
            Box::new(move |s, d| frames::ipv4_with(s, d, 17, 77, 4, &[], &whole(s, d)[32..])),
        ),
        (
            "GRE (another protocol): IPv4 header only",
            Box::new(|s, d| frames::ipv4(s, d, 47, &[], &[0, 0, 0x08, 0, 1, 2, 3, 4])),
        ),
    ]
}

#[test]
fn traffic_to_an_eip_is_translated_to_the_havip_and_reaches_its_owner() {
    let (mut bed, _) = eip_bed();
    let mut cases: Vec<Case> = kinds(false)
        .into_iter()
        .map(|(name, build)| {
            nat_case(
                name,
                Port::Uplink,
                (vmac(HAVIP_A), INTERNET_MAC),
                (OWNER_MAC, GATEWAY_MAC),
                (INTERNET, EIP),
                (INTERNET, HAVIP_A),
                &*build,
                Handled::EipDnat,
            )
        })
        .collect();
    cases.push(nat_case(
        "UDP addressed to the gateway MAC (routed to the host)",
        Port::Uplink,
        (GATEWAY_MAC, INTERNET_MAC),
        (OWNER_MAC, GATEWAY_MAC),
        (INTERNET, EIP),
        (INTERNET, HAVIP_A),
        &|s, d| packet(s, d, 17, &udp_l4(40000, PAYLOAD)),
        Handled::EipDnat,
    ));
    // A checksum whose translated value computes to 0 must be sent as
    // 0xffff (RFC 768): find a source port that gives it.
    let sport = (1..=u16::MAX)
        .find(|p| frames::udp(INTERNET, HAVIP_A, *p, 5000, PAYLOAD)[6..8] == [0xff, 0xff])
        .expect("some source port gives a computed UDP checksum of 0");
    let build = move |s, d| frames::ipv4(s, d, 17, &[], &frames::udp(s, d, sport, 5000, PAYLOAD));
    cases.push(nat_case(
        "UDP whose translated checksum computes to 0 (sent as 0xffff)",
        Port::Uplink,
        (vmac(HAVIP_A), INTERNET_MAC),
        (OWNER_MAC, GATEWAY_MAC),
        (INTERNET, EIP),
        (INTERNET, HAVIP_A),
        &build,
        Handled::EipDnat,
    ));
    let n = cases.len() as u64;
    bed.check(&cases);
    bed.assert_forwarded(
        HAVIP_A_ID,
        n,
        "must count every translated frame delivered to the owner",
    );
}

#[test]
fn owner_replies_from_the_havip_leave_by_the_uplink_from_the_eip() {
    let (mut bed, uplink_mac) = eip_bed();
    let cases: Vec<Case> = kinds(true)
        .into_iter()
        .map(|(name, build)| {
            nat_case(
                name,
                Port::Owner,
                (GATEWAY_MAC, OWNER_MAC),
                (INTERNET_MAC, uplink_mac),
                (HAVIP_A, INTERNET),
                (EIP, INTERNET),
                &*build,
                Handled::EipSnat,
            )
        })
        .collect();
    bed.check(&cases);
}

#[test]
fn frames_outside_the_nat_rules_are_left_alone_or_dropped_and_counted() {
    let (mut bed, _) = eip_bed();
    let udp_frame = |dst_mac, src_mac, src, dst| udp(dst_mac, src_mac, src, dst).bytes();
    // From the owner, from the HaVip, to the gateway MAC.
    let out_of_owner = |dst| udp_frame(GATEWAY_MAC, OWNER_MAC, HAVIP_A, dst);
    let truncated_tcp = ipv4_frame(
        vmac(HAVIP_A),
        INTERNET_MAC,
        frames::ipv4(INTERNET, EIP, 6, &[], &[0u8; 12]),
    )
    .bytes();
    #[rustfmt::skip]
    bed.check(&[
        Case::untouched("to the EIP with a foreign destination MAC (flooded)", Port::Uplink,
            udp_frame(OTHER_MAC, INTERNET_MAC, INTERNET, EIP), Handled::PassedUplinkForeignMac),
        Case::pass("to an EIP associated with nothing", Port::Uplink, udp_frame(vmac(HAVIP_A), INTERNET_MAC, INTERNET, EIP_FREE)),
        Case::pass("to the EIP from an instance port (only uplinks translate)", Port::Client, udp_frame(GATEWAY_MAC, CLIENT_MAC, CLIENT_IP, EIP)),
        Case::drop("TCP to the EIP whose header is cut before the checksum", Port::Uplink, truncated_tcp, DropReason::EipTruncated),
        Case::pass("from the HaVip by the standby (not the owner)", Port::Standby, udp_frame(GATEWAY_MAC, STANDBY_MAC, HAVIP_A, INTERNET)),
        Case::pass("from the HaVip to a neighbour's MAC (inside the vSwitch)", Port::Owner, udp_frame(CLIENT_MAC, OWNER_MAC, HAVIP_A, INTERNET)),
        Case::drop("from the HaVip to another HaVip through the gateway: forwarded, not translated", Port::Owner,
            out_of_owner(HAVIP_NO_OWNER), DropReason::NoOwner),
        Case::pass("from a HaVip without an EIP", Port::Other, udp_frame(GATEWAY2_MAC, OTHER_MAC, HAVIP_VS2, INTERNET)),
        Case::pass("routed out of an instance port, not an uplink", Port::Owner, out_of_owner(VIA_INSTANCE)),
        Case::pass("no route to the destination: not forwarded by the host, not ours", Port::Owner, out_of_owner(UNROUTED)),
        Case::drop("blackhole route to the destination", Port::Owner, out_of_owner(BLACKHOLED), DropReason::EipNoRoute),
        Case::drop("next hop on the uplink not resolved", Port::Owner, out_of_owner(UNRESOLVED), DropReason::EipNoNeighbour),
    ]);
}

/// ARP request from the internet side for `target`.
fn arp_request_for(target: Ipv4Addr) -> frames::Frame {
    frames::arp_request(INTERNET_MAC, INTERNET, target)
}

#[test]
fn arp_for_an_eip_on_the_uplink_is_answered_with_the_havips_virtual_mac() {
    let (mut bed, _) = eip_bed();
    let reply = frames::Frame::new(
        INTERNET_MAC,
        vmac(HAVIP_A),
        frames::ETH_P_ARP,
        frames::arp(
            frames::ARP_REPLY,
            vmac(HAVIP_A),
            EIP,
            INTERNET_MAC,
            INTERNET,
        ),
    );
    bed.check(&[
        Case::redirect(
            "who-has EIP on the uplink",
            Port::Uplink,
            arp_request_for(EIP).bytes(),
            reply.bytes(),
        )
        .counted(Handled::ProxyArpReplied),
        Case::pass(
            "who-has an unassociated EIP",
            Port::Uplink,
            arp_request_for(EIP_FREE).bytes(),
        ),
        Case::pass(
            "who-has EIP from an instance port",
            Port::Client,
            frames::arp_request(CLIENT_MAC, CLIENT_IP, EIP).bytes(),
        ),
    ]);
    // After a failover the answer is the same: the virtual MAC is the
    // HaVip's, not the owner's, so the internet side never needs an ARP.
    standby_claims_a(&mut bed);
    bed.check(&[Case::redirect(
        "who-has EIP after the failover",
        Port::Uplink,
        arp_request_for(EIP).bytes(),
        reply.bytes(),
    )
    .counted(Handled::ProxyArpReplied)]);
}

#[test]
fn after_a_claim_the_eip_follows_the_new_owner() {
    let (mut bed, uplink_mac) = eip_bed();
    standby_claims_a(&mut bed);
    let build = |s, d| packet(s, d, 17, &udp_l4(40000, PAYLOAD));
    bed.check(&[
        nat_case(
            "to the EIP: now to the standby",
            Port::Uplink,
            (vmac(HAVIP_A), INTERNET_MAC),
            (STANDBY_MAC, GATEWAY_MAC),
            (INTERNET, EIP),
            (INTERNET, HAVIP_A),
            &build,
            Handled::EipDnat,
        ),
        nat_case(
            "the new owner's reply",
            Port::Standby,
            (GATEWAY_MAC, STANDBY_MAC),
            (INTERNET_MAC, uplink_mac),
            (HAVIP_A, INTERNET),
            (EIP, INTERNET),
            &build,
            Handled::EipSnat,
        ),
        Case::pass(
            "the former owner's frame from the HaVip is not translated",
            Port::Owner,
            udp(GATEWAY_MAC, OWNER_MAC, HAVIP_A, INTERNET).bytes(),
        ),
    ]);
}

#[test]
fn after_unassociating_nothing_is_translated() {
    let (mut bed, _) = eip_bed();
    bed.reconcile_with(|d| d.eips.clear());
    let eips: Vec<[u8; 4]> = bed.dp.maps.eips.keys().filter_map(Result::ok).collect();
    let snat: Vec<HavipKey> = bed.dp.maps.eip_snat.keys().filter_map(Result::ok).collect();
    assert!(
        eips.is_empty() && snat.is_empty(),
        "maps: {eips:?} {snat:?}"
    );
    bed.check(&[
        Case::pass(
            "to the former EIP",
            Port::Uplink,
            udp(vmac(HAVIP_A), INTERNET_MAC, INTERNET, EIP).bytes(),
        ),
        Case::pass(
            "from the HaVip to the internet",
            Port::Owner,
            udp(GATEWAY_MAC, OWNER_MAC, HAVIP_A, INTERNET).bytes(),
        ),
        Case::pass(
            "who-has the former EIP",
            Port::Uplink,
            arp_request_for(EIP).bytes(),
        ),
    ]);
    // Associating again takes effect with the next reconcile.
    bed.reconcile_with(|d| d.eips = vec![eip_entry()]);
    let (verdict, _) = bed.run(
        Port::Uplink,
        &udp(vmac(HAVIP_A), INTERNET_MAC, INTERNET, EIP).bytes(),
    );
    assert_eq!(verdict, action::REDIRECT, "re-associated EIP is translated");
}

#[test]
fn an_eip_whose_havip_is_gone_is_not_installed() {
    let (mut bed, _) = eip_bed();
    bed.reconcile_with(|d| d.havips.retain(|h| h.id != HAVIP_A_ID));
    assert!(
        bed.dp.maps.eips.get(&EIP.octets(), 0).is_err(),
        "EIPS must not point to a HaVip that is not configured"
    );
    bed.check(&[Case::pass(
        "to the EIP of a deleted HaVip",
        Port::Uplink,
        udp(vmac(HAVIP_A), INTERNET_MAC, INTERNET, EIP).bytes(),
    )]);
}
