//! `BPF_PROG_TEST_RUN` fixtures, proxy ARP and members: requests for a
//! HaVip are answered with its virtual MAC, from clients and from its own
//! members (a standby reaches the service at the HaVip); only a member's
//! probe is absorbed; a member's IPv4 to the HaVip goes to the owner.

use std::net::Ipv4Addr;

use havip_common::{DropReason, Handled};
use havip_tests::frames;
use havip_tests::{bed::*, fixtures::*, Case, Port, TestBed};

/// `who-has havip` from `mac`/`ip`, answered with the HaVip's virtual MAC.
fn answered(name: &str, port: Port, mac: [u8; 6], ip: Ipv4Addr, havip: Ipv4Addr) -> Case {
    let request = frames::arp_request(mac, ip, havip);
    Case::redirect(
        name,
        port,
        request.bytes(),
        proxy_reply(mac, ip, havip).bytes(),
    )
    .counted(Handled::ProxyArpReplied)
}

/// `who-has target` from `mac`/`ip`, left to the kernel.
fn not_answered(name: &str, port: Port, mac: [u8; 6], ip: Ipv4Addr, target: Ipv4Addr) -> Case {
    Case::pass(name, port, frames::arp_request(mac, ip, target).bytes())
}

/// A probe (sender 0.0.0.0) for HaVip A from `mac`, answered to 0.0.0.0.
fn probe_answered(name: &str, port: Port, mac: [u8; 6]) -> Case {
    let reply = proxy_reply(mac, Ipv4Addr::UNSPECIFIED, HAVIP_A);
    Case::redirect(name, port, arp_probe(mac, HAVIP_A).bytes(), reply.bytes())
        .counted(Handled::ProxyArpReplied)
}

#[test]
fn proxy_arp_answers_for_havips_with_the_virtual_mac() {
    let mut bed = TestBed::new();
    let request = frames::arp_request(CLIENT_MAC, CLIENT_IP, HAVIP_A);
    assert_eq!(
        vmac(HAVIP_A),
        [0x02, 0x48, 10, 0, 1, 100],
        "virtual MAC is 02:48:a.b.c.d"
    );
    let revalidation = frames::Frame {
        dst: vmac(HAVIP_A),
        ..request.clone()
    };
    let client_reply = frames::Frame::new(
        OWNER_MAC,
        CLIENT_MAC,
        frames::ETH_P_ARP,
        frames::arp(frames::ARP_REPLY, CLIENT_MAC, CLIENT_IP, OWNER_MAC, HAVIP_A),
    );
    let to_client = proxy_reply(CLIENT_MAC, CLIENT_IP, HAVIP_A).bytes();
    #[rustfmt::skip]
    bed.check(&[
        Case::redirect("client asks for the HaVip", Port::Client, request.bytes(), to_client.clone()).counted(Handled::ProxyArpReplied),
        Case::redirect("unicast re-validation of the neighbour entry", Port::Client, revalidation.bytes(), to_client).counted(Handled::ProxyArpReplied),
        answered("remote client behind the uplink asks for the HaVip", Port::Uplink, REMOTE_MAC, REMOTE_IP, HAVIP_A),
        answered("a HaVip without owner still answers (stable MAC)", Port::Client, CLIENT_MAC, CLIENT_IP, HAVIP_NO_OWNER),
        probe_answered("a non-member's probe for the HaVip learns it is in use", Port::Client, CLIENT_MAC),
        Case::pass("client's reply to the owner's request", Port::Client, client_reply.bytes()),
        not_answered("ARP request for an ordinary address", Port::Client, CLIENT_MAC, CLIENT_IP, PLAIN_IP),
        not_answered("vSwitch 2 port asks for vSwitch 1's HaVip", Port::Other, OTHER_MAC, OTHER_IP, HAVIP_A),
        Case::pass("unconfigured port asks for the HaVip", Port::Unknown, request.bytes()),
    ]);
    assert_owner(&bed, HAVIP_A, Port::Owner, OWNER_MAC, 1);
    bed.assert_no_events("proxy ARP emits no events");
}

#[test]
fn standbys_reach_their_havip_and_never_see_a_conflict() {
    let mut bed = TestBed::new();
    let absorbed = Handled::MemberArpAbsorbed;
    #[rustfmt::skip]
    bed.check(&[
        answered("standby resolves its HaVip from its own address", Port::Standby, STANDBY_MAC, STANDBY_IP, HAVIP_A),
        answered("owner resolves its HaVip from its own address", Port::Owner, OWNER_MAC, OWNER_IP, HAVIP_A),
        Case::drop("standby's probe for its HaVip (SPA 0.0.0.0) is absorbed", Port::Standby, arp_probe(STANDBY_MAC, HAVIP_A).bytes(), absorbed),
        Case::drop("owner's probe for its HaVip is absorbed", Port::Owner, arp_probe(OWNER_MAC, HAVIP_A).bytes(), absorbed),
        Case::drop("standby's probe for an owner-less HaVip is absorbed", Port::Standby, arp_probe(STANDBY_MAC, HAVIP_NO_OWNER).bytes(), absorbed),
        probe_answered("probe from a member's port with a foreign MAC is answered", Port::Standby, SPOOF_MAC),
        Case::untouched("owner resolving a client from the HaVip (not a claim)", Port::Owner,
            frames::arp_request(OWNER_MAC, HAVIP_A, CLIENT_IP).bytes(), Handled::PassedMemberArp),
        redirect_to_owner("standby's IPv4 to the HaVip goes to the owner", Port::Standby,
            udp(vmac(HAVIP_A), STANDBY_MAC, STANDBY_IP, HAVIP_A)),
        Case::drop("owner's IPv4 to its own HaVip never goes back out of its port", Port::Owner,
            udp(vmac(HAVIP_A), OWNER_MAC, OWNER_IP, HAVIP_A).bytes(), DropReason::HairpinToOwner),
    ]);
    bed.assert_no_events("member ARP emits no events");

    // A gratuitous request (SPA == TPA) is a claim, never answered.
    standby_claims_a(&mut bed);
    assert_eq!(owner_changes(&bed.events()).len(), 1);
    let data = udp(vmac(HAVIP_A), OWNER_MAC, OWNER_IP, HAVIP_A);
    #[rustfmt::skip]
    bed.check(&[
        Case::redirect("the former owner, now a standby, reaches the HaVip", Port::Owner,
            data.bytes(), rewritten(&data, STANDBY_MAC, GATEWAY_MAC)),
        Case::drop("the new owner's IPv4 to its HaVip is not hairpinned", Port::Standby,
            udp(vmac(HAVIP_A), STANDBY_MAC, STANDBY_IP, HAVIP_A).bytes(), DropReason::HairpinToOwner),
    ]);
}
