//! `BPF_PROG_TEST_RUN` fixtures, claims and ARP anti-spoofing: authorised
//! GARPs move the owner in the kernel; refused ones never do, are counted
//! and reported (rate-limited); the hold time damps flapping.

use std::time::Duration;

use havip::dataplane::events::DataplaneEvent;
use havip_common::{owner_flags, DropReason, Handled, DEFAULT_SECURITY_EVENTS_PER_SEC};
use havip_tests::frames;
use havip_tests::{action, bed::*, fixtures::*, Case, CpuPin, Port, TestBed};

#[test]
fn authorised_garp_moves_the_owner_and_the_traffic() {
    let mut bed = TestBed::new();
    let initial = assert_owner(&bed, HAVIP_A, Port::Owner, OWNER_MAC, 1);
    assert_eq!(initial.flags, owner_flags::BY_CONTROL);
    let data = udp(vmac(HAVIP_A), CLIENT_MAC, CLIENT_IP, HAVIP_A);

    // The standby announces the HaVip (keepalived's GARP on becoming master).
    let moved = standby_claims_a(&mut bed);
    assert_eq!(moved.flags, owner_flags::BY_CLAIM, "{moved:?}");
    assert_eq!(moved.havip_id, HAVIP_A_ID, "{moved:?}");
    assert_ne!(moved.changed_ns, 0, "a claim stamps changed_ns: {moved:?}");

    let events = bed.events();
    let changes = owner_changes(&events);
    assert_eq!(changes.len(), 1, "one OWNER_CHANGED event, got {events:?}");
    assert!(refusals(&events).is_empty(), "{events:?}");
    let ev = changes[0];
    assert_eq!(
        (
            ev.key,
            ev.havip_id,
            ev.epoch,
            ev.ifindex,
            ev.mac,
            ev.prev_ifindex,
            ev.prev_mac
        ),
        (
            key(VSWITCH, HAVIP_A),
            HAVIP_A_ID,
            2,
            bed.ifindex(Port::Standby),
            STANDBY_MAC,
            bed.ifindex(Port::Owner),
            OWNER_MAC
        ),
        "OWNER_CHANGED event {ev:?}"
    );
    assert_eq!(ev.ts_ns, moved.changed_ns, "event time = OWNERS.changed_ns");

    // The very next data frame goes to the standby.
    bed.check(&[Case::redirect(
        "data after the claim goes to the standby",
        Port::Client,
        data.bytes(),
        rewritten(&data, STANDBY_MAC, GATEWAY_MAC),
    )]);

    // keepalived repeats its GARPs: a refresh, not a change.
    #[rustfmt::skip]
    let refreshed = claim_taken(&mut bed, "repeated GARP from the new owner", Port::Standby, garp(STANDBY_MAC, HAVIP_A), Handled::ClaimRefreshed, (HAVIP_A, STANDBY_MAC, 2));
    assert_eq!(
        refreshed.changed_ns, moved.changed_ns,
        "a refresh keeps changed_ns"
    );
    bed.assert_no_events("a refresh emits no event");

    // An unsolicited ARP reply is a claim too: the first owner takes it back.
    #[rustfmt::skip]
    claim_taken(&mut bed, "ARP reply claim from the first owner", Port::Owner, arp_reply_claim(OWNER_MAC, HAVIP_A), Handled::ClaimAccepted, (HAVIP_A, OWNER_MAC, 3));
    let changes = owner_changes(&bed.events());
    assert_eq!(changes.len(), 1, "{changes:?}");
    assert_eq!(
        (
            changes[0].epoch,
            changes[0].ifindex,
            changes[0].prev_ifindex
        ),
        (3, bed.ifindex(Port::Owner), bed.ifindex(Port::Standby))
    );
    bed.check(&[redirect_to_owner(
        "data after the reply claim goes back to the owner",
        Port::Client,
        data,
    )]);

    // A HaVip without an owner gets its first one from a claim.
    #[rustfmt::skip]
    claim_taken(&mut bed, "GARP for the owner-less HaVip", Port::Standby, garp(STANDBY_MAC, HAVIP_NO_OWNER), Handled::ClaimAccepted, (HAVIP_NO_OWNER, STANDBY_MAC, 1));
    let changes = owner_changes(&bed.events());
    assert_eq!(
        changes
            .iter()
            .map(|e| (e.havip_id, e.prev_ifindex))
            .collect::<Vec<_>>(),
        vec![(HAVIP_NO_OWNER_ID, 0)],
        "{changes:?}"
    );
}

#[test]
fn refused_claims_never_move_the_owner() {
    let mut bed = TestBed::new();
    let sender_mismatch = frames::Frame::new(
        frames::BROADCAST,
        STANDBY_MAC,
        frames::ETH_P_ARP,
        frames::arp(frames::ARP_REQUEST, SPOOF_MAC, HAVIP_A, [0; 6], HAVIP_A),
    )
    .bytes();
    let reply_from_uplink = frames::Frame::new(
        CLIENT_MAC,
        REMOTE_MAC,
        frames::ETH_P_ARP,
        frames::arp(
            frames::ARP_REPLY,
            REMOTE_MAC,
            HAVIP_A,
            CLIENT_MAC,
            CLIENT_IP,
        ),
    )
    .bytes();
    let unbound_request = frames::arp_request(CLIENT_MAC, HAVIP_A, STANDBY_IP).bytes();
    // (name, ingress port, frame, drop reason, ARP sender MAC the refusal
    // event must name)
    #[rustfmt::skip]
    let table = [
        ("GARP from an unbound instance", Port::Client, garp(CLIENT_MAC, HAVIP_A), DropReason::ClaimUnbound, CLIENT_MAC),
        ("GARP from an unbound instance spoofing the standby's MAC", Port::Client, garp(STANDBY_MAC, HAVIP_A), DropReason::ClaimUnbound, STANDBY_MAC),
        ("ARP reply claim from an unbound instance", Port::Client, arp_reply_claim(CLIENT_MAC, HAVIP_A), DropReason::ClaimUnbound, CLIENT_MAC),
        ("GARP from the standby's port with a foreign MAC", Port::Standby, garp(SPOOF_MAC, HAVIP_A), DropReason::ClaimMacMismatch, SPOOF_MAC),
        ("GARP from the standby's port with the owner's MAC", Port::Standby, garp(OWNER_MAC, HAVIP_A), DropReason::ClaimMacMismatch, OWNER_MAC),
        ("Ethernet source differs from the ARP sender MAC", Port::Standby, sender_mismatch, DropReason::ArpSenderMismatch, SPOOF_MAC),
        ("GARP from the uplink with the owner's MAC", Port::Uplink, garp(OWNER_MAC, HAVIP_A), DropReason::ClaimNotFromInstance, OWNER_MAC),
        ("ARP reply claim from the uplink", Port::Uplink, reply_from_uplink, DropReason::ClaimNotFromInstance, REMOTE_MAC),
        ("ARP request naming the HaVip as sender from an unbound instance", Port::Client, unbound_request, DropReason::ClaimUnbound, CLIENT_MAC),
    ];
    for (name, port, frame, reason, mac) in table {
        bed.check(&[Case::drop(name, port, frame, reason)]);
        assert_owner(&bed, HAVIP_A, Port::Owner, OWNER_MAC, 1);
        let events = bed.events();
        let refused = refusals(&events);
        assert!(owner_changes(&events).is_empty(), "[{name}] {events:?}");
        assert_eq!(
            refused.len(),
            1,
            "[{name}] one CLAIM_REFUSED event: {events:?}"
        );
        let (got_reason, ev) = refused[0];
        assert_eq!(
            (got_reason, ev.key, ev.havip_id, ev.ifindex, ev.mac),
            (
                Some(reason),
                key(VSWITCH, HAVIP_A),
                HAVIP_A_ID,
                bed.ifindex(port),
                mac
            ),
            "[{name}] CLAIM_REFUSED event {ev:?}"
        );
    }
    // A port the agent does not know is not a vSwitch port: left alone.
    bed.check(&[Case::pass(
        "GARP on an unconfigured port",
        Port::Unknown,
        garp(STANDBY_MAC, HAVIP_A),
    )]);
    assert_owner(&bed, HAVIP_A, Port::Owner, OWNER_MAC, 1);
    bed.check(&[redirect_to_owner(
        "data still goes to the owner",
        Port::Client,
        udp(vmac(HAVIP_A), CLIENT_MAC, CLIENT_IP, HAVIP_A),
    )]);
}

#[test]
fn claims_for_another_vswitchs_havip_never_move_an_owner() {
    let mut bed = TestBed::new();
    let vs2_owner = bed.owner_in(VSWITCH2, HAVIP_VS2);
    for (name, port, frame) in [
        (
            "vSwitch 2 port claims vSwitch 1's HaVip",
            Port::Other,
            garp(OTHER_MAC, HAVIP_A),
        ),
        (
            "vSwitch 1 member claims vSwitch 2's HaVip",
            Port::Standby,
            garp(STANDBY_MAC, HAVIP_VS2),
        ),
        (
            "vSwitch 1 member claims vSwitch 2's HaVip with its owner's MAC",
            Port::Standby,
            garp(OTHER_MAC, HAVIP_VS2),
        ),
    ] {
        let before = bed.counters();
        let (verdict, _) = bed.run(port, &frame);
        let moved = bed.counters().since(&before);
        // Both vSwitches are in one VPC: the address belongs to the other
        // vSwitch's CIDR, so the ARP is a spoof, dropped and reported.
        assert_eq!(verdict, action::DROP, "[{name}] counters {moved:?}");
        assert!(
            moved.iter().any(|(c, t)| {
                matches!(c, havip_tests::Counter::Drop(DropReason::ClaimWrongVSwitch))
                    && t.packets == 1
            }),
            "[{name}] counters {moved:?}"
        );
        assert_owner(&bed, HAVIP_A, Port::Owner, OWNER_MAC, 1);
        assert_eq!(bed.owner_in(VSWITCH2, HAVIP_VS2), vs2_owner, "[{name}]");
        let events = bed.events();
        assert!(owner_changes(&events).is_empty(), "[{name}] {events:?}");
        assert!(
            events.iter().any(|e| matches!(
                e,
                DataplaneEvent::ClaimRefused {
                    reason: Some(DropReason::ClaimWrongVSwitch),
                    ..
                }
            )),
            "[{name}] no wrong-vSwitch security event: {events:?}"
        );
    }
}

#[test]
fn spoofed_garp_flood_is_counted_but_events_are_rate_limited() {
    const FLOOD: u32 = 10_000;
    let mut bed = TestBed::new();
    let spoof = garp(CLIENT_MAC, HAVIP_A);
    // One CPU: the limiter's per-CPU window is then exact (the kernel may
    // otherwise move a long BPF_PROG_TEST_RUN between CPUs when it yields).
    let _pin = CpuPin::current();
    let before = bed.counters();
    let verdict = bed.run_repeat(Port::Client, &spoof, FLOOD);
    assert_eq!(verdict, action::DROP, "spoofed GARP verdict");
    let moved = bed.counters().since(&before);
    assert_eq!(
        moved.len(),
        1,
        "only DROPS[claim_unbound] may move: {moved:?}"
    );
    let unbound = bed.counters().get(DropReason::ClaimUnbound).packets
        - before.get(DropReason::ClaimUnbound).packets;
    assert_eq!(
        unbound,
        u64::from(FLOOD),
        "DROPS[claim_unbound] counts every frame"
    );
    assert_owner(&bed, HAVIP_A, Port::Owner, OWNER_MAC, 1);

    let events = bed.events();
    assert!(owner_changes(&events).is_empty(), "{events:?}");
    let refused = refusals(&events);
    let cap = u64::from(DEFAULT_SECURITY_EVENTS_PER_SEC);
    assert_eq!(
        refused.len() as u64,
        cap,
        "CLAIM_REFUSED events for {FLOOD} spoofs in one window on one CPU"
    );
    assert!(
        refused
            .iter()
            .all(|(r, e)| *r == Some(DropReason::ClaimUnbound) && e.mac == CLIENT_MAC),
        "{refused:?}"
    );
    let (suppressed, lost) = havip::dataplane::stats::event_losses(&bed.dp.maps);
    assert_eq!(
        (suppressed, lost),
        (u64::from(FLOOD) - cap, 0),
        "EVENT_BUDGET: suppressed = the refusals beyond the cap, none lost"
    );
    bed.check(&[redirect_to_owner(
        "data still goes to the owner after the flood",
        Port::Client,
        udp(vmac(HAVIP_A), CLIENT_MAC, CLIENT_IP, HAVIP_A),
    )]);

    // In the next window the first event tells the agent how many it missed,
    // and the configured rate applies.
    bed.reconcile_with(|d| d.config.security_events_per_sec = 5);
    std::thread::sleep(Duration::from_millis(1_050));
    let verdict = bed.run_repeat(Port::Client, &spoof, 100);
    assert_eq!(verdict, action::DROP);
    let refused = refusals(&bed.events());
    assert_eq!(
        refused.len(),
        5,
        "configured cap of 5 per second: {refused:?}"
    );
    assert_eq!(
        refused[0].1.suppressed,
        FLOOD - DEFAULT_SECURITY_EVENTS_PER_SEC,
        "first event of the new window reports the suppressed ones"
    );
    assert!(
        refused[1..].iter().all(|(_, e)| e.suppressed == 0),
        "{refused:?}"
    );
    assert_owner(&bed, HAVIP_A, Port::Owner, OWNER_MAC, 1);
}

#[test]
fn hold_time_damps_flapping_between_members() {
    let mut bed = TestBed::new();
    // Standby takes over (no hold configured yet): changed_ns = now.
    let taken = standby_claims_a(&mut bed);
    bed.events();

    bed.reconcile_with(|d| d.config.hold_ns = 3_600 * 1_000_000_000);
    bed.check(&[
        Case::drop(
            "GARP from the first owner inside the hold time",
            Port::Owner,
            garp(OWNER_MAC, HAVIP_A),
            DropReason::ClaimHeldDown,
        ),
        Case::drop(
            "ARP reply claim from the first owner inside the hold time",
            Port::Owner,
            arp_reply_claim(OWNER_MAC, HAVIP_A),
            DropReason::ClaimHeldDown,
        ),
        Case::drop(
            "the current owner's repeated GARP is still a refresh",
            Port::Standby,
            garp(STANDBY_MAC, HAVIP_A),
            Handled::ClaimRefreshed,
        ),
        Case::drop(
            "a HaVip without owner is claimed regardless of the hold",
            Port::Owner,
            garp(OWNER_MAC, HAVIP_NO_OWNER),
            Handled::ClaimAccepted,
        ),
    ]);
    let held = assert_owner(&bed, HAVIP_A, Port::Standby, STANDBY_MAC, 2);
    assert_eq!(held.changed_ns, taken.changed_ns);
    assert_owner(&bed, HAVIP_NO_OWNER, Port::Owner, OWNER_MAC, 1);
    let events = bed.events();
    let refused = refusals(&events);
    assert_eq!(
        refused
            .iter()
            .map(|(r, e)| (*r, e.ifindex, e.havip_id))
            .collect::<Vec<_>>(),
        vec![
            (
                Some(DropReason::ClaimHeldDown),
                bed.ifindex(Port::Owner),
                HAVIP_A_ID
            );
            2
        ],
        "held-down claims are reported: {events:?}"
    );
    assert_eq!(
        owner_changes(&events).len(),
        1,
        "only the owner-less HaVip changed"
    );
    let data = udp(vmac(HAVIP_A), CLIENT_MAC, CLIENT_IP, HAVIP_A);
    bed.check(&[Case::redirect(
        "data stays with the holder",
        Port::Client,
        data.bytes(),
        rewritten(&data, STANDBY_MAC, GATEWAY_MAC),
    )]);

    // Once the hold has passed, the other member may take over again.
    bed.reconcile_with(|d| d.config.hold_ns = 20_000_000);
    std::thread::sleep(Duration::from_millis(25));
    #[rustfmt::skip]
    claim_taken(&mut bed, "GARP from the first owner after the hold time", Port::Owner, garp(OWNER_MAC, HAVIP_A), Handled::ClaimAccepted, (HAVIP_A, OWNER_MAC, 3));
}
