//! `BPF_PROG_TEST_RUN` fixtures, source anti-spoofing: IPv4 from an
//! instance port with a HaVip of its vSwitch as source must come from a
//! bound member (port and bound MAC); on the uplink, IPv4 to a HaVip is
//! forwarded only when addressed to us (virtual, gateway or owner MAC).

use std::{collections::BTreeMap, net::Ipv4Addr};

use havip::dataplane::DesiredHavip;
use havip_common::{havip_filter_bits, DropReason, Handled, MAX_PORTS};
use havip_tests::{bed::*, fixtures::*, Case, Port, TestBed};

#[test]
fn ipv4_from_a_havip_needs_a_binding() {
    let mut bed = TestBed::new();
    let spoof = |name, port, src_mac, src, dst| {
        Case::drop(
            name,
            port,
            udp(CLIENT_MAC, src_mac, src, dst).bytes(),
            DropReason::SrcHavipUnbound,
        )
    };
    // From `src` to the client: passed to the kernel.
    let allowed = |name, port, src_mac, src| {
        Case::pass(name, port, udp(CLIENT_MAC, src_mac, src, CLIENT_IP).bytes())
    };
    #[rustfmt::skip]
    bed.check(&[
        spoof("unbound client sends from the HaVip", Port::Client, CLIENT_MAC, HAVIP_A, PLAIN_IP),
        spoof("unbound client sends from the HaVip with the owner's MAC", Port::Client, OWNER_MAC, HAVIP_A, PLAIN_IP),
        spoof("member's port with a foreign MAC sends from the HaVip", Port::Standby, SPOOF_MAC, HAVIP_A, PLAIN_IP),
        spoof("unbound client sends from one HaVip to another (checked first)", Port::Client, CLIENT_MAC, HAVIP_NO_OWNER, HAVIP_A),
        allowed("owner answers a client from the HaVip", Port::Owner, OWNER_MAC, HAVIP_A),
        allowed("standby sends from the HaVip (bound)", Port::Standby, STANDBY_MAC, HAVIP_A),
        redirect_to_owner("bound member sends from one HaVip to another: forwarded", Port::Standby,
            udp(vmac(HAVIP_A), STANDBY_MAC, HAVIP_NO_OWNER, HAVIP_A)),
        allowed("remote owner answers from the HaVip through the uplink", Port::Uplink, REMOTE_MAC, HAVIP_A),
        Case::pass("vSwitch 2 port sends from vSwitch 1's HaVip address", Port::Other, udp(OTHER_MAC, OTHER_MAC, HAVIP_A, OTHER_IP).bytes()),
        Case::pass("client sends from its own address", Port::Client, udp(STANDBY_MAC, CLIENT_MAC, CLIENT_IP, STANDBY_IP).bytes()),
    ]);
    assert_eq!(
        bed.counters().get(DropReason::SrcHavipUnbound).packets,
        4,
        "DROPS[src_havip_unbound]"
    );
    bed.assert_no_events("source checks emit no events");
}

#[test]
fn uplink_forwards_only_frames_addressed_to_us() {
    let mut bed = TestBed::new();
    let from_uplink = |dst_mac, dst| udp(dst_mac, REMOTE_MAC, REMOTE_IP, dst);
    let foreign = |name, dst_mac, dst| {
        Case::untouched(
            name,
            Port::Uplink,
            from_uplink(dst_mac, dst).bytes(),
            Handled::PassedUplinkForeignMac,
        )
    };
    #[rustfmt::skip]
    bed.check(&[
        redirect_to_owner("to the virtual MAC", Port::Uplink, from_uplink(vmac(HAVIP_A), HAVIP_A)),
        redirect_to_owner("to the gateway MAC (routed)", Port::Uplink, from_uplink(GATEWAY_MAC, HAVIP_A)),
        redirect_to_owner("to the owner's MAC", Port::Uplink, from_uplink(OWNER_MAC, HAVIP_A)),
        foreign("to the standby's MAC", STANDBY_MAC, HAVIP_A),
        foreign("to another host's MAC", REMOTE_MAC, HAVIP_A),
        foreign("to the virtual MAC of another HaVip", vmac(HAVIP_NO_OWNER), HAVIP_A),
        foreign("owner-less HaVip, foreign MAC", STANDBY_MAC, HAVIP_NO_OWNER),
        Case::drop("owner-less HaVip, its virtual MAC", Port::Uplink,
            from_uplink(vmac(HAVIP_NO_OWNER), HAVIP_NO_OWNER).bytes(), DropReason::NoOwner),
        redirect_to_owner("from an instance port the destination MAC is not checked", Port::Client,
            udp(STANDBY_MAC, CLIENT_MAC, CLIENT_IP, HAVIP_A)),
    ]);
    bed.assert_forwarded(HAVIP_A_ID, 4, "counts the redirected frames only");
}

/// The ports' HaVip filter (`PortInfo::havip_filter`) clears most sources
/// with no table probe, so it must hold the bits of every HaVip of the
/// port's vSwitch: after the bed's reconcile, after a HaVip is added (its
/// spoof is refused right away) and after one is removed (its bits go, and
/// its address is anyone's again).
#[test]
fn port_filters_hold_exactly_the_havips_of_their_vswitch() {
    const NEW: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 77);
    let mut bed = TestBed::new();
    let expect_filters = |bed: &TestBed| {
        let mut want = BTreeMap::<u32, u64>::new();
        for h in &bed.desired.havips {
            *want.entry(h.key.vswitch_id).or_default() |= havip_filter_bits(h.key.addr);
        }
        for p in &bed.desired.ports {
            let info = if p.ifindex < MAX_PORTS {
                bed.dp.maps.ports.get(&p.ifindex, 0)
            } else {
                bed.dp.maps.ports_high.get(&p.ifindex, 0)
            }
            .expect("the port's PORTS entry");
            assert_eq!(
                info.havip_filter,
                want.get(&p.vswitch_id).copied().unwrap_or(0),
                "HaVip filter of port {} (vSwitch {})",
                p.ifindex,
                p.vswitch_id
            );
        }
    };
    expect_filters(&bed);
    assert!(
        bed.desired
            .havips
            .iter()
            .any(|h| h.key.vswitch_id == VSWITCH),
        "the bed has HaVips in vSwitch 1: its filter is not empty"
    );

    let standby = bed.binding(Port::Standby, STANDBY_MAC);
    bed.reconcile_with(|d| {
        d.havips.push(DesiredHavip {
            key: key(VSWITCH, NEW),
            vpc_id: 1,
            id: 9,
            virtual_mac: vmac(NEW),
            bindings: vec![standby],
            initial_owner: None,
        })
    });
    expect_filters(&bed);
    let from_new = || udp(STANDBY_MAC, CLIENT_MAC, NEW, STANDBY_IP).bytes();
    bed.check(&[Case::drop(
        "unbound client sends from the HaVip just added",
        Port::Client,
        from_new(),
        DropReason::SrcHavipUnbound,
    )]);

    bed.reconcile_with(|d| d.havips.retain(|h| h.key.addr != NEW.octets()));
    expect_filters(&bed);
    bed.check(&[Case::pass(
        "the removed HaVip's address is no HaVip any more",
        Port::Client,
        from_new(),
    )]);
}
