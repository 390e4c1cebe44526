//! `BPF_PROG_TEST_RUN` fixtures, multi-host: IPv4 to a HaVip whose owner is
//! on another host is VXLAN-encapsulated towards the owner's VTEP; VXLAN on
//! the VTEP port for a local owner is decapsulated and redirected; remote
//! owners are installed only over older epochs. Topology:
//! `havip_tests::TestBed::with_vxlan`.

use std::net::Ipv4Addr;

use havip::dataplane::reconcile::{self, Installed};
use havip_common::{owner_flags, DropReason, Handled, TrafficCounter};
use havip_tests::{
    bed::*, fixtures::*, frames, icmp_echo, tcp_flags, Case, Counter, Port, TestBed,
};

/// A client behind the remote host (the source of decapsulated frames).
const FAR_CLIENT_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x1c, 0x01];
const FAR_CLIENT_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 77);

/// Makes the owner of `HAVIP_A` a remote one at `vtep` with epoch 5.
fn remote_owner_of_a(bed: &mut TestBed, vtep: Ipv4Addr) {
    let got = install_remote_owner_of_a(bed, vtep, 5);
    assert_eq!(
        got,
        Installed::Installed,
        "epoch 5 over the initial epoch 1"
    );
}

/// The UDP source port of an encapsulated frame.
fn sport(out: &[u8]) -> u16 {
    u16::from_be_bytes([out[34], out[35]])
}

/// Runs `inner` from `Port::Client`, expects it encapsulated towards
/// `REMOTE_VTEP` (VNI of vSwitch 1) with the inner MACs rewritten; returns
/// the UDP source port it got.
fn check_encap(bed: &mut TestBed, name: &str, inner: &frames::Frame) -> u16 {
    let input = inner.bytes();
    let before = bed.counters();
    let (verdict, out) = bed.run(Port::Client, &input);
    let moves = bed.counters().since(&before);
    assert_eq!(verdict, havip_tests::action::REDIRECT, "[{name}] verdict");
    assert_eq!(
        moves,
        vec![(
            Counter::Handled(Handled::ForwardedRemote),
            TrafficCounter {
                packets: 1,
                bytes: input.len() as u64
            }
        )],
        "[{name}] counters"
    );
    assert_eq!(out.len(), input.len() + 50, "[{name}] 50 bytes pushed");
    let sport = sport(&out);
    assert!(
        sport >= 49152,
        "[{name}] source port {sport} outside 49152..=65535"
    );
    // Outer IPv4 fields, checked one by one (the full comparison follows).
    let ip = &out[14..34];
    assert_eq!(ip[0], 0x45, "[{name}] version/IHL");
    assert_eq!(
        u16::from_be_bytes([ip[2], ip[3]]) as usize,
        input.len() + 36,
        "[{name}] outer total length"
    );
    assert_eq!(
        (ip[6], ip[8], ip[9]),
        (0x40, 64, 17),
        "[{name}] DF, TTL, UDP"
    );
    let mut zeroed = ip.to_vec();
    zeroed[10..12].copy_from_slice(&[0, 0]);
    assert_eq!(
        u16::from_be_bytes([ip[10], ip[11]]),
        frames::checksum(&zeroed),
        "[{name}] outer IPv4 checksum"
    );
    let udp = &out[34..42];
    assert_eq!(u16::from_be_bytes([udp[2], udp[3]]), 4789, "[{name}] dport");
    assert_eq!(
        u16::from_be_bytes([udp[4], udp[5]]) as usize,
        input.len() + 16,
        "[{name}] UDP length"
    );
    assert_eq!(&udp[6..8], &[0, 0], "[{name}] UDP checksum 0");
    let want = encapsulated_to_remote_owner(inner, sport);
    assert_eq!(out, want, "[{name}] whole encapsulated frame");
    sport
}

#[test]
fn traffic_to_a_remote_owner_is_encapsulated_towards_its_vtep() {
    let mut bed = TestBed::with_vxlan();
    remote_owner_of_a(&mut bed, REMOTE_VTEP);
    let udp_a = udp(vmac(HAVIP_A), CLIENT_MAC, CLIENT_IP, HAVIP_A);
    let tcp_a = client_tcp_to_a(tcp_flags::SYN, &[]);
    let icmp_a = client_to_a(1, &icmp_echo(7, 1, PAYLOAD));
    // The largest guest packet that fits the 1600-byte underlay: 1550.
    let largest = client_udp_to_a(1, 2, &vec![0xa5; 1550 - 28]);
    let s_udp = check_encap(&mut bed, "UDP", &udp_a);
    check_encap(&mut bed, "TCP SYN", &tcp_a);
    check_encap(&mut bed, "ICMP echo", &icmp_a);
    check_encap(&mut bed, "1550-byte IPv4 packet", &largest);
    assert_eq!(
        check_encap(&mut bed, "UDP again", &udp_a),
        s_udp,
        "the same flow keeps its source port"
    );
    let ports: std::collections::BTreeSet<u16> = (0..16u16)
        .map(|i| {
            let f = client_udp_to_a(40000 + i, 5000, PAYLOAD);
            check_encap(&mut bed, &format!("UDP flow {i}"), &f)
        })
        .collect();
    assert!(
        ports.len() >= 12,
        "16 flows should spread over source ports, got {ports:?}"
    );
    bed.assert_forwarded(HAVIP_A_ID, 21, "counts encapsulated frames");
}

#[test]
fn encap_that_cannot_be_done_is_dropped_and_counted() {
    let mut bed = TestBed::with_vxlan();
    remote_owner_of_a(&mut bed, REMOTE_VTEP);
    let too_big = client_udp_to_a(1, 2, &vec![0xa5; 1551 - 28]);
    bed.check(&[Case::drop(
        "1551-byte IPv4 packet: 1601 bytes on a 1600-byte underlay",
        Port::Client,
        too_big.bytes(),
        DropReason::EncapTooBig,
    )]);
    let mut bed = TestBed::with_vxlan();
    remote_owner_of_a(&mut bed, UNKNOWN_VTEP);
    bed.check(&[Case::drop(
        "owner's VTEP not in VTEPS",
        Port::Client,
        udp(vmac(HAVIP_A), CLIENT_MAC, CLIENT_IP, HAVIP_A).bytes(),
        DropReason::NoVtep,
    )]);
    // No VNI for the vSwitch: no way to tag the frame.
    bed.reconcile_with(|d| d.vxlan.vnis.retain(|(s, _)| *s != VSWITCH));
    remote_owner_of_a_again(&mut bed);
    bed.check(&[Case::drop(
        "vSwitch without a VNI",
        Port::Client,
        udp(vmac(HAVIP_A), CLIENT_MAC, CLIENT_IP, HAVIP_A).bytes(),
        DropReason::NoVtep,
    )]);
    bed.assert_forwarded(HAVIP_A_ID, 0, "nothing was forwarded");
}

/// Points the (already remote) owner of `HAVIP_A` at `REMOTE_VTEP` with a
/// higher epoch.
fn remote_owner_of_a_again(bed: &mut TestBed) {
    let got = install_remote_owner_of_a(bed, REMOTE_VTEP, 6);
    assert_eq!(got, Installed::Installed);
}

#[test]
fn vxlan_for_a_local_owner_is_decapsulated_and_the_rest_passes() {
    let mut bed = TestBed::with_vxlan();
    let to_a = udp(vmac(HAVIP_A), FAR_CLIENT_MAC, FAR_CLIENT_IP, HAVIP_A);
    let to_vs2 = udp(vmac(HAVIP_VS2), FAR_CLIENT_MAC, OTHER_IP, HAVIP_VS2);
    let wrapped = from_remote_vtep(LOCAL_VTEP, 4789, VNI, &to_a.bytes());
    let mut truncated = wrapped.clone();
    truncated.truncate(14 + 20 + 8 + 4);
    let mut no_i_flag = wrapped.clone();
    no_i_flag[42] = 0;
    bed.check(&[
        decapsulated(
            "UDP to HaVip A (owner local)",
            wrapped.clone(),
            rewritten(&to_a, OWNER_MAC, GATEWAY_MAC),
        ),
        decapsulated(
            "vSwitch 2 by its VNI, its gateway MAC",
            from_remote_vtep(LOCAL_VTEP, 4789, VNI2, &to_vs2.bytes()),
            rewritten(&to_vs2, OTHER_MAC, GATEWAY2_MAC),
        ),
        Case::drop(
            "HaVip without an owner",
            Port::Vtep,
            from_remote_vtep(
                LOCAL_VTEP,
                4789,
                VNI,
                &udp(
                    vmac(HAVIP_NO_OWNER),
                    FAR_CLIENT_MAC,
                    FAR_CLIENT_IP,
                    HAVIP_NO_OWNER,
                )
                .bytes(),
            ),
            DropReason::DecapNotOwner,
        ),
        Case::pass(
            "unknown VNI",
            Port::Vtep,
            from_remote_vtep(LOCAL_VTEP, 4789, 9999, &to_a.bytes()),
        ),
        Case::pass(
            "HaVip A's address under vSwitch 2's VNI (no HaVip there)",
            Port::Vtep,
            from_remote_vtep(LOCAL_VTEP, 4789, VNI2, &to_a.bytes()),
        ),
        Case::pass(
            "another destination VTEP",
            Port::Vtep,
            from_remote_vtep(REMOTE_VTEP, 4789, VNI, &to_a.bytes()),
        ),
        Case::pass(
            "another UDP port",
            Port::Vtep,
            from_remote_vtep(LOCAL_VTEP, 4790, VNI, &to_a.bytes()),
        ),
        Case::pass("truncated VXLAN header", Port::Vtep, truncated),
        Case::pass("VXLAN without the I flag", Port::Vtep, no_i_flag),
        Case::pass(
            "inner ARP (a remote guest resolving a local one)",
            Port::Vtep,
            from_remote_vtep(
                LOCAL_VTEP,
                4789,
                VNI,
                &frames::arp_request(FAR_CLIENT_MAC, FAR_CLIENT_IP, OWNER_IP).bytes(),
            ),
        ),
        Case::pass(
            "inner IPv4 to an ordinary address",
            Port::Vtep,
            from_remote_vtep(
                LOCAL_VTEP,
                4789,
                VNI,
                &udp(OWNER_MAC, FAR_CLIENT_MAC, FAR_CLIENT_IP, OWNER_IP).bytes(),
            ),
        ),
        Case::pass(
            "plain UDP to the VTEP address",
            Port::Vtep,
            frames::udp_frame(
                LOCAL_VTEP_MAC,
                REMOTE_VTEP_MAC,
                REMOTE_VTEP,
                LOCAL_VTEP,
                5000,
                53,
                PAYLOAD,
            )
            .bytes(),
        ),
        Case::pass(
            "a GARP for HaVip A on the underlay is no claim",
            Port::Vtep,
            garp(REMOTE_OWNER_MAC, HAVIP_A),
        ),
    ]);
    assert_owner(&bed, HAVIP_A, Port::Owner, OWNER_MAC, 1);

    // The owner moved to another host: frames still arriving here are
    // dropped, never sent back.
    remote_owner_of_a(&mut bed, REMOTE_VTEP);
    bed.check(&[Case::drop(
        "HaVip A, owner now remote",
        Port::Vtep,
        wrapped,
        DropReason::DecapNotOwner,
    )]);
}

#[test]
fn remote_owners_replace_only_older_epochs() {
    let mut bed = TestBed::with_vxlan();
    let k = key(VSWITCH, HAVIP_A);
    let remote = |epoch| a_owned_remotely(REMOTE_VTEP, epoch);
    let install = |bed: &mut TestBed, epoch| {
        reconcile::install_remote_owner(&mut bed.dp.maps, k, remote(epoch))
            .expect("install_remote_owner")
    };
    assert_eq!(
        install(&mut bed, 1),
        Installed::Stale { kernel_epoch: 1 },
        "same epoch as the local initial owner"
    );
    assert_owner(&bed, HAVIP_A, Port::Owner, OWNER_MAC, 1);
    assert!(reconcile::local_owner(&bed.dp.maps, &k)
        .expect("local_owner")
        .is_some());

    assert_eq!(install(&mut bed, 5), Installed::Installed);
    let o = bed.owner(HAVIP_A);
    assert_eq!(
        (o.flags, o.vtep, o.mac, o.epoch, o.ifindex),
        (
            owner_flags::REMOTE,
            REMOTE_VTEP.octets(),
            REMOTE_OWNER_MAC,
            5,
            bed.ifindex(Port::Vtep)
        )
    );
    assert_eq!(
        reconcile::local_owner(&bed.dp.maps, &k).expect("local_owner"),
        None
    );
    assert_eq!(install(&mut bed, 3), Installed::Stale { kernel_epoch: 5 });

    // A reconcile pass keeps the remote owner (no local binding to check).
    bed.reconcile();
    assert_eq!(bed.owner(HAVIP_A).epoch, 5);
    assert!(bed.owner(HAVIP_A).is_remote());

    // A local member claims: epoch 6, local again.
    #[rustfmt::skip]
    claim_taken(&mut bed, "standby's GARP takes the HaVip from the remote owner", Port::Standby, garp(STANDBY_MAC, HAVIP_A), Handled::ClaimAccepted, (HAVIP_A, STANDBY_MAC, 6));
    assert!(!bed.owner(HAVIP_A).is_remote());
    assert_eq!(install(&mut bed, 6), Installed::Stale { kernel_epoch: 6 });
    let local = reconcile::local_owner(&bed.dp.maps, &k).expect("local_owner");
    assert_eq!(local.map(|o| o.epoch), Some(6));

    // Through Desired: an equal epoch is ignored, a higher one installed.
    bed.reconcile_with(|d| d.vxlan.remote_owners = vec![(k, remote(6))]);
    assert_owner(&bed, HAVIP_A, Port::Standby, STANDBY_MAC, 6);
    bed.reconcile_with(|d| d.vxlan.remote_owners = vec![(k, remote(7))]);
    let o = bed.owner(HAVIP_A);
    assert!(o.is_remote() && o.epoch == 7, "remote at epoch 7: {o:?}");
    let events = bed.events();
    assert_eq!(
        owner_changes(&events).len(),
        1,
        "one claim event: {events:?}"
    );
}

use havip_common::vxlan::{state, VniSlot, VtepSlot, SLOTS, VNI_PRESENT};

/// Empties the inlined VXLAN tables (`VSWITCH_VNI_ARRAY`, `VNI_TABLE`,
/// `VTEP_TABLE`), as pins adopted from a version without them would be.
fn clear_vxlan_tables(bed: &mut TestBed) {
    let maps = &mut bed.dp.maps;
    for i in 0..havip_common::MAX_VSWITCHES {
        if maps.vswitch_vni_array.get(&i, 0).ok() != Some(0) {
            maps.vswitch_vni_array
                .set(i, 0, 0)
                .expect("VSWITCH_VNI_ARRAY");
        }
    }
    for i in 0..SLOTS {
        if maps.vni_table.get(&i, 0).ok() != Some(VniSlot::default()) {
            maps.vni_table
                .set(i, VniSlot::default(), 0)
                .expect("VNI_TABLE");
        }
        if maps.vtep_table.get(&i, 0).ok() != Some(VtepSlot::default()) {
            maps.vtep_table
                .set(i, VtepSlot::default(), 0)
                .expect("VTEP_TABLE");
        }
    }
}

#[test]
fn the_inlined_vxlan_tables_and_their_hash_maps_each_serve_alone() {
    let mut bed = TestBed::with_vxlan();
    remote_owner_of_a(&mut bed, REMOTE_VTEP);
    let udp_a = udp(vmac(HAVIP_A), CLIENT_MAC, CLIENT_IP, HAVIP_A);
    let to_a = udp(vmac(HAVIP_A), FAR_CLIENT_MAC, FAR_CLIENT_IP, HAVIP_A);
    let to_vs2 = udp(vmac(HAVIP_VS2), FAR_CLIENT_MAC, OTHER_IP, HAVIP_VS2);
    let decap = || {
        decapsulated(
            "vSwitch 2 by its VNI (owner local)",
            from_remote_vtep(LOCAL_VTEP, 4789, VNI2, &to_vs2.bytes()),
            rewritten(&to_vs2, OTHER_MAC, GATEWAY2_MAC),
        )
    };

    // The tables alone: the hash maps lose the entries.
    let maps = &mut bed.dp.maps;
    maps.vteps.remove(&REMOTE_VTEP.octets()).expect("VTEPS");
    maps.vswitch_vnis.remove(&VSWITCH).expect("VSWITCH_VNIS");
    maps.vni_vswitches.remove(&VNI2).expect("VNI_VSWITCHES");
    check_encap(&mut bed, "UDP, tables only", &udp_a);
    bed.check(&[decap()]);

    // The hash maps alone (reconciled back), the tables empty.
    bed.reconcile();
    clear_vxlan_tables(&mut bed);
    check_encap(&mut bed, "UDP, hash maps only", &udp_a);
    bed.check(&[decap()]);

    // Reconciling fills the tables again; removing the VNI and the VTEP
    // removes them from both.
    bed.reconcile();
    let maps = &bed.dp.maps;
    assert_eq!(
        maps.vswitch_vni_array.get(&VSWITCH, 0).ok(),
        Some(VNI | VNI_PRESENT),
        "VSWITCH_VNI_ARRAY refilled"
    );
    let used = |t: &aya::maps::Array<aya::maps::MapData, VtepSlot>| {
        (0..SLOTS)
            .filter_map(|i| t.get(&i, 0).ok())
            .filter(|s| s.state == state::USED)
            .map(|s| (Ipv4Addr::from(s.addr), s.mac))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        used(&maps.vtep_table),
        vec![(REMOTE_VTEP, REMOTE_VTEP_MAC)],
        "VTEP_TABLE refilled"
    );
    bed.check(&[decap()]);
    bed.reconcile_with(|d| {
        d.vxlan.vnis.retain(|(s, _)| *s != VSWITCH);
        d.vxlan.remote_vteps.clear();
    });
    assert_eq!(used(&bed.dp.maps.vtep_table), vec![], "VTEP_TABLE emptied");
    bed.check(&[Case::pass(
        "VNI of vSwitch 1 removed: to the stack",
        Port::Vtep,
        from_remote_vtep(LOCAL_VTEP, 4789, VNI, &to_a.bytes()),
    )]);
    remote_owner_of_a_again(&mut bed);
    bed.check(&[Case::drop(
        "VTEP and VNI removed: no encapsulation",
        Port::Client,
        udp_a.bytes(),
        DropReason::NoVtep,
    )]);
}
