//! `BPF_PROG_TEST_RUN` fixtures, pass-through: everything that is not for a
//! HaVip, and every malformed frame, leaves the program untouched.

use std::net::Ipv4Addr;

use aya::programs::ProgramError;
use havip_tests::frames;
use havip_tests::{bed::*, double_tagged, fixtures::*, Case, Port, TestBed, ETH_HLEN};

#[test]
fn everything_else_passes_untouched() {
    let mut bed = TestBed::new();
    let ipv6 = {
        let mut p = vec![0x60, 0, 0, 0, 0, 8, 17, 64];
        p.extend_from_slice(&[0xfd; 16]);
        p.extend_from_slice(&[0xfe; 16]);
        p.extend_from_slice(&[0x9c, 0x40, 0x13, 0x88, 0, 8, 0, 0]);
        frames::Frame::new([0x33, 0x33, 0, 0, 0, 1], CLIENT_MAC, 0x86dd, p).bytes()
    };
    let lldp = frames::Frame::new(
        [0x01, 0x80, 0xc2, 0x00, 0x00, 0x0e],
        CLIENT_MAC,
        0x88cc,
        vec![0x02, 0x07, 0x04, 0x02, 0x00, 0x00, 0x00, 0x0c, 0x01, 0, 0],
    )
    .bytes();
    let to_havip = udp(vmac(HAVIP_A), CLIENT_MAC, CLIENT_IP, HAVIP_A);
    bed.check(&[
        Case::pass(
            "IPv4 to an ordinary address",
            Port::Client,
            udp(STANDBY_MAC, CLIENT_MAC, CLIENT_IP, STANDBY_IP).bytes(),
        ),
        Case::pass(
            "IPv4 broadcast to an ordinary address",
            Port::Client,
            udp(
                frames::BROADCAST,
                CLIENT_MAC,
                CLIENT_IP,
                Ipv4Addr::BROADCAST,
            )
            .bytes(),
        ),
        Case::pass(
            "the owner's reply from the HaVip (HaVip as source)",
            Port::Owner,
            udp(CLIENT_MAC, OWNER_MAC, HAVIP_A, CLIENT_IP).bytes(),
        ),
        Case::pass("IPv6 (ethertype 0x86dd)", Port::Client, ipv6),
        Case::pass("LLDP (ethertype 0x88cc)", Port::Uplink, lldp),
        // An owner on another host resolving a local guest: its ARP names
        // the HaVip as sender. Not a claim, so it passes (traffic to the
        // HaVip is steered by address, whatever caches learn).
        Case::pass(
            "ARP request naming the HaVip as sender from the uplink",
            Port::Uplink,
            frames::arp_request(REMOTE_MAC, HAVIP_A, CLIENT_IP).bytes(),
        ),
        Case::pass(
            "IPv6 ethertype carrying an IPv4 header to the HaVip",
            Port::Client,
            frames::Frame {
                ether_type: 0x86dd,
                ..to_havip.clone()
            }
            .bytes(),
        ),
        Case::pass(
            "two VLAN tags (only one is parsed)",
            Port::Client,
            double_tagged(&to_havip.clone().vlan(10), 20),
        ),
        Case::pass(
            "HaVip traffic on a port the agent never configured",
            Port::Unknown,
            to_havip.bytes(),
        ),
        Case::pass(
            "vSwitch 1's HaVip address seen from a vSwitch 2 port",
            Port::Other,
            udp(vmac(HAVIP_A), OTHER_MAC, OTHER_IP, HAVIP_A).bytes(),
        ),
        Case::pass(
            "vSwitch 2's HaVip address seen from a vSwitch 1 port",
            Port::Client,
            udp(vmac(HAVIP_VS2), CLIENT_MAC, CLIENT_IP, HAVIP_VS2).bytes(),
        ),
        Case::pass(
            "ARP request for an ordinary address",
            Port::Client,
            frames::arp_request(CLIENT_MAC, CLIENT_IP, STANDBY_IP).bytes(),
        ),
        Case::pass(
            "14-byte IPv6 frame (nothing to parse)",
            Port::Client,
            frames::Frame::new(frames::BROADCAST, CLIENT_MAC, 0x86dd, vec![]).bytes(),
        ),
        Case::pass(
            "ARP for IPv6 protocol type (not Ethernet/IPv4 ARP)",
            Port::Client,
            {
                let mut arp =
                    frames::arp(frames::ARP_REQUEST, CLIENT_MAC, CLIENT_IP, [0; 6], HAVIP_A);
                arp[2..4].copy_from_slice(&0x86ddu16.to_be_bytes());
                frames::Frame::new(frames::BROADCAST, CLIENT_MAC, frames::ETH_P_ARP, arp).bytes()
            },
        ),
    ]);
    bed.assert_no_events("passed frames must not emit events");
}

#[test]
fn malformed_frames_pass_untouched() {
    let mut bed = TestBed::new();
    let to_havip = udp(vmac(HAVIP_A), CLIENT_MAC, CLIENT_IP, HAVIP_A);
    let ip = to_havip.bytes();
    let tagged = to_havip.clone().vlan(100).bytes();
    let arp = frames::arp_request(CLIENT_MAC, CLIENT_IP, HAVIP_A).bytes();
    let claim = garp(STANDBY_MAC, HAVIP_A);
    // Runts never reach XDP: the kernel refuses a test run of a frame shorter
    // than an Ethernet header (and AF_PACKET refuses to send one, see
    // `dev_validate_header`), so the program's own bound check on the
    // Ethernet header cannot be driven from here.
    let before = bed.counters();
    for len in 0..ETH_HLEN {
        match bed.try_run(Port::Client, &ip[..len]) {
            Err(ProgramError::SyscallError(e))
                if e.io_error.raw_os_error() == Some(libc::EINVAL) => {}
            other => {
                panic!("{len}-byte runt: the kernel should refuse it with EINVAL, got {other:?}")
            }
        }
    }
    assert_eq!(
        bed.counters(),
        before,
        "refused runts must not run the program"
    );

    // Every truncation of each frame: (what, ingress, frame, lengths).
    let cuts = [
        ("802.1Q tag", Port::Client, &tagged, 14..18),
        ("IPv4 header", Port::Client, &ip, 14..34),
        ("tagged IPv4 header", Port::Client, &tagged, 18..38),
        ("ARP request for the HaVip", Port::Client, &arp, 14..42),
        ("authorised GARP", Port::Standby, &claim, 14..42),
    ];
    let mut cases = Vec::new();
    for (what, ingress, frame, lens) in cuts {
        for len in lens {
            cases.push(Case::malformed(
                format!("{what} cut at {len} bytes"),
                ingress,
                frame[..len].to_vec(),
            ));
        }
    }
    for (name, version_ihl) in [
        ("IHL 4", 0x44),
        ("IHL 0", 0x40),
        ("version 6 in an IPv4 ethertype", 0x65),
        ("version 0", 0x05),
    ] {
        let mut f = ip.clone();
        f[14] = version_ihl;
        cases.push(Case::malformed(
            format!("{name} to the HaVip"),
            Port::Client,
            f,
        ));
    }
    let mut v6 = ip.clone();
    v6[14] = 0x60;
    cases.push(Case::malformed(
        "IPv6 header in an IPv4 ethertype",
        Port::Client,
        v6,
    ));
    bed.check(&cases);
    assert_owner(&bed, HAVIP_A, Port::Owner, OWNER_MAC, 1);
    bed.assert_no_events("malformed frames must not emit events");
}
