//! `BPF_PROG_TEST_RUN` fixtures, routes: IPv4 from an instance port to the
//! gateway MAC whose destination matches a route of the port's VPC goes to
//! the next-hop HaVip's owner with the MACs rewritten and every IPv4 byte
//! unchanged; the most specific route wins; other VPCs' routes, frames not
//! to the gateway MAC and unrouted destinations pass. Topology:
//! `havip_tests::TestBed` (vSwitches 1 and 2 in VPC 1).

use std::net::Ipv4Addr;

use havip::dataplane::{reconcile::Installed, DesiredRoute};
use havip_common::{DropReason, Handled, TrafficCounter};
use havip_tests::{action, bed::*, fixtures::*, frames, Case, Counter, Port, TestBed};

const VPC: u32 = 1;
const OTHER_VPC: u32 = 2;
/// Covered by the /24 route to HaVip A.
const IN_24: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 9);
/// Covered by the /24 and by the /32 route to vSwitch 2's HaVip.
const HOST_32: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 7);
/// Covered by no route but the default one.
const ELSEWHERE: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 20);
/// Routed only in the other VPC.
const OTHER_VPC_NET: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 33);

fn route(
    vpc_id: u32,
    dest: [u8; 4],
    len: u8,
    vswitch: u32,
    hop: Ipv4Addr,
    id: u32,
) -> DesiredRoute {
    DesiredRoute {
        vpc_id,
        addr: dest,
        len,
        next_hop: key(vswitch, hop),
        havip_id: id,
    }
}

/// 203.0.113.0/24 → HaVip A in `VPC`.
fn route_24() -> DesiredRoute {
    route(VPC, [203, 0, 113, 0], 24, VSWITCH, HAVIP_A, HAVIP_A_ID)
}

/// Makes HaVip A's owner the one at `REMOTE_VTEP` (epoch 5).
fn own_a_remotely(bed: &mut TestBed) {
    let got = install_remote_owner_of_a(bed, REMOTE_VTEP, 5);
    assert_eq!(
        got,
        Installed::Installed,
        "epoch 5 over the initial epoch 1"
    );
}

/// /24 → HaVip A (owner: `Port::Owner`), /32 → vSwitch 2's HaVip (owner:
/// `Port::Other`), and in the other VPC 192.0.2.0/24 → HaVip A.
fn with_routes(bed: &mut TestBed) {
    bed.reconcile_with(|d| {
        d.routes = vec![
            route_24(),
            route(VPC, HOST_32.octets(), 32, VSWITCH2, HAVIP_VS2, HAVIP_VS2_ID),
            route(OTHER_VPC, [192, 0, 2, 0], 24, VSWITCH, HAVIP_A, HAVIP_A_ID),
        ];
    });
}

/// A UDP datagram from the client to `dst`, sent to `dst_mac`.
fn from_client(dst_mac: [u8; 6], dst: Ipv4Addr) -> frames::Frame {
    udp(dst_mac, CLIENT_MAC, CLIENT_IP, dst)
}

/// An IPv4 packet of `protocol` from the client to `IN_24`, sent to the
/// gateway MAC.
fn client_ipv4_via_gateway(protocol: u8, l4: &[u8]) -> frames::Frame {
    frames::ipv4_frame(
        GATEWAY_MAC,
        CLIENT_MAC,
        frames::ipv4(CLIENT_IP, IN_24, protocol, &[], l4),
    )
}

/// Routed to `owner`'s port: dst MAC `owner`, src MAC the gateway's.
fn routed(name: &str, ingress: Port, frame: &frames::Frame, owner: [u8; 6]) -> Case {
    Case {
        name: name.into(),
        ingress,
        input: frame.bytes(),
        expect_action: action::REDIRECT,
        expect_output: Some(rewritten(frame, owner, GATEWAY_MAC)),
        expect_counter: Handled::Routed.into(),
    }
}

#[test]
fn routed_frames_reach_the_owner_with_the_ip_packet_unchanged() {
    let mut bed = TestBed::new();
    with_routes(&mut bed);
    let tcp = client_ipv4_via_gateway(
        6,
        &havip_tests::tcp(
            CLIENT_IP,
            IN_24,
            40001,
            443,
            havip_tests::tcp_flags::SYN,
            &[],
        ),
    );
    let icmp = client_ipv4_via_gateway(1, &havip_tests::icmp_echo(3, 1, PAYLOAD));
    let udp_24 = from_client(GATEWAY_MAC, IN_24);
    #[rustfmt::skip]
    bed.check(&[
        routed("UDP into the /24", Port::Client, &udp_24, OWNER_MAC),
        routed("TCP SYN into the /24", Port::Client, &tcp, OWNER_MAC),
        routed("ICMP echo into the /24", Port::Client, &icmp, OWNER_MAC),
        routed("from the standby (a member, not the owner)", Port::Standby, &udp(GATEWAY_MAC, STANDBY_MAC, STANDBY_IP, IN_24), OWNER_MAC),
        routed("/32 next hop in vSwitch 2", Port::Client, &from_client(GATEWAY_MAC, HOST_32), OTHER_MAC),
    ]);
    // The IPv4 packet, TTL and checksum included, is byte for byte the same.
    let input = udp_24.bytes();
    let (verdict, out) = bed.run(Port::Client, &input);
    assert_eq!(verdict, action::REDIRECT);
    assert_eq!(
        &out[14..],
        &input[14..],
        "IPv4 header and payload untouched"
    );
    assert_eq!(out[14 + 8], 64, "TTL not decremented");
    bed.assert_forwarded(
        HAVIP_A_ID,
        5,
        "routed frames count under the next-hop HaVip",
    );
    bed.assert_no_events("routing emits no events");
}

#[test]
fn the_most_specific_route_wins() {
    let mut bed = TestBed::new();
    with_routes(&mut bed);
    // /32 beats /24 (a neighbour of HOST_32 takes the /24).
    #[rustfmt::skip]
    bed.check(&[
        routed("/32 over /24", Port::Client, &from_client(GATEWAY_MAC, HOST_32), OTHER_MAC),
        routed("/24 next to the /32", Port::Client, &from_client(GATEWAY_MAC, Ipv4Addr::new(203, 0, 113, 8)), OWNER_MAC),
        Case::pass("no default route yet", Port::Client, from_client(GATEWAY_MAC, ELSEWHERE).bytes()),
    ]);
    // A default route to the HaVip without an owner: the /24 and /32 still
    // win, everything else takes /0 (and is dropped: no owner).
    bed.reconcile_with(|d| {
        d.routes.push(route(
            VPC,
            [0; 4],
            0,
            VSWITCH,
            HAVIP_NO_OWNER,
            HAVIP_NO_OWNER_ID,
        ));
    });
    #[rustfmt::skip]
    bed.check(&[
        routed("/32 over /24 and /0", Port::Client, &from_client(GATEWAY_MAC, HOST_32), OTHER_MAC),
        routed("/24 over /0", Port::Client, &from_client(GATEWAY_MAC, IN_24), OWNER_MAC),
        Case::drop("/0 to a HaVip without an owner", Port::Client, from_client(GATEWAY_MAC, ELSEWHERE).bytes(), DropReason::NoOwner),
    ]);
    // The /24's next hop moves to the standby by a claim: routes follow.
    standby_claims_a(&mut bed);
    bed.check(&[routed(
        "/24 after the standby's claim",
        Port::Client,
        &from_client(GATEWAY_MAC, IN_24),
        STANDBY_MAC,
    )]);
}

#[test]
fn frames_no_route_applies_to_pass_or_take_the_havip_path() {
    let mut bed = TestBed::new();
    with_routes(&mut bed);
    let tagged = frames::Frame {
        vlan: Some(10),
        ..from_client(GATEWAY_MAC, IN_24)
    };
    #[rustfmt::skip]
    bed.check(&[
        Case::pass("another VPC's route does not match", Port::Client, from_client(GATEWAY_MAC, OTHER_VPC_NET).bytes()),
        Case::pass("not addressed to the gateway MAC", Port::Client, from_client(REMOTE_MAC, IN_24).bytes()),
        Case::pass("broadcast destination MAC", Port::Client, from_client(frames::BROADCAST, IN_24).bytes()),
        Case::pass("vSwitch 2's gateway MAC on a vSwitch 1 port", Port::Client, from_client(GATEWAY2_MAC, IN_24).bytes()),
        Case::pass("no route", Port::Client, from_client(GATEWAY_MAC, ELSEWHERE).bytes()),
        Case::pass("an address of the vSwitch that is no HaVip", Port::Client, from_client(GATEWAY_MAC, PLAIN_IP).bytes()),
        Case::pass("from the uplink (routed where it came from)", Port::Uplink, udp(GATEWAY_MAC, REMOTE_MAC, REMOTE_IP, IN_24).bytes()),
        Case::untouched("VLAN-tagged", Port::Client, tagged.bytes(), Handled::PassedTagged),
        redirect_to_owner("a HaVip sent to the gateway MAC is the HaVip path", Port::Client, from_client(GATEWAY_MAC, HAVIP_A)),
        Case::drop("the owner's own traffic on its route (never hairpinned)", Port::Owner,
            udp(GATEWAY_MAC, OWNER_MAC, OWNER_IP, IN_24).bytes(), DropReason::HairpinToOwner),
        Case::drop("source check first: a HaVip as source from an unbound port", Port::Client,
            udp(GATEWAY_MAC, CLIENT_MAC, HAVIP_A, IN_24).bytes(), DropReason::SrcHavipUnbound),
    ]);
}

#[test]
fn deleting_a_route_stops_it_at_once() {
    let mut bed = TestBed::new();
    with_routes(&mut bed);
    let to_host = from_client(GATEWAY_MAC, HOST_32);
    bed.check(&[routed("/32 present", Port::Client, &to_host, OTHER_MAC)]);
    // Delete the /32: the /24 takes over.
    bed.reconcile_with(|d| d.routes.retain(|r| r.len != 32));
    bed.check(&[routed(
        "/32 deleted: /24",
        Port::Client,
        &to_host,
        OWNER_MAC,
    )]);
    // Delete every route: the ROUTES map is empty and everything passes.
    bed.reconcile_with(|d| d.routes.clear());
    assert_eq!(bed.dp.maps.routes.keys().count(), 0, "ROUTES emptied");
    bed.check(&[Case::pass("no routes left", Port::Client, to_host.bytes())]);
    // Deleting the next-hop HaVip (its route still listed, as during the
    // pass that removes both) leaves the frame to the kernel.
    bed.reconcile_with(|d| {
        d.routes = vec![route_24()];
        d.havips.retain(|h| h.id != HAVIP_A_ID);
    });
    bed.check(&[Case::pass(
        "next hop no longer a HaVip",
        Port::Client,
        from_client(GATEWAY_MAC, IN_24).bytes(),
    )]);
}

#[test]
fn routed_frames_to_a_remote_owner_are_encapsulated() {
    let mut bed = TestBed::with_vxlan();
    with_routes(&mut bed);
    own_a_remotely(&mut bed);
    let inner = from_client(GATEWAY_MAC, IN_24);
    let input = inner.bytes();
    let before = bed.counters();
    let (verdict, out) = bed.run(Port::Client, &input);
    assert_eq!(verdict, action::REDIRECT);
    assert_eq!(
        bed.counters().since(&before),
        vec![(
            Counter::Handled(Handled::RoutedRemote),
            TrafficCounter {
                packets: 1,
                bytes: input.len() as u64
            }
        )]
    );
    assert_eq!(out.len(), input.len() + 50, "50 bytes of VXLAN pushed");
    let sport = u16::from_be_bytes([out[34], out[35]]);
    assert_eq!(
        out,
        encapsulated_to_remote_owner(&inner, sport),
        "whole encapsulated frame, inner IPv4 untouched"
    );
}

/// A routed frame as the sending host encapsulates it for a local owner:
/// VXLAN from `REMOTE_VTEP` with the VNI of the next hop's vSwitch.
fn routed_from_remote(vni: u32, inner: &frames::Frame) -> Vec<u8> {
    from_remote_vtep(LOCAL_VTEP, 4789, vni, &inner.bytes())
}

#[test]
fn routed_vxlan_for_a_local_owner_is_decapsulated() {
    let mut bed = TestBed::with_vxlan();
    with_routes(&mut bed);
    const FAR_CLIENT_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 77);
    let to_24 = udp(OWNER_MAC, GATEWAY_MAC, FAR_CLIENT_IP, IN_24);
    let to_32 = udp(OTHER_MAC, GATEWAY_MAC, FAR_CLIENT_IP, HOST_32);
    let elsewhere = udp(OWNER_MAC, GATEWAY_MAC, FAR_CLIENT_IP, ELSEWHERE);
    #[rustfmt::skip]
    bed.check(&[
        decapsulated("/24 to HaVip A, owner here", routed_from_remote(VNI, &to_24), rewritten(&to_24, OWNER_MAC, GATEWAY_MAC)),
        decapsulated("/32 to vSwitch 2's HaVip under vSwitch 2's VNI", routed_from_remote(VNI2, &to_32), rewritten(&to_32, OTHER_MAC, GATEWAY2_MAC)),
        Case::pass("no route here for the destination", Port::Vtep, routed_from_remote(VNI, &elsewhere)),
        Case::pass("the /24 is not a route of vSwitch 2's next hops", Port::Vtep, routed_from_remote(VNI2, &to_24)),
    ]);
    // The route's HaVip owned elsewhere: never re-encapsulated.
    own_a_remotely(&mut bed);
    bed.check(&[Case::drop(
        "/24 whose owner is remote",
        Port::Vtep,
        routed_from_remote(VNI, &to_24),
        DropReason::DecapNotOwner,
    )]);
    // Deleting the routes stops the decapsulation too.
    bed.reconcile_with(|d| d.routes.clear());
    bed.check(&[Case::pass(
        "/32 after the routes are deleted",
        Port::Vtep,
        routed_from_remote(VNI2, &to_32),
    )]);
}
