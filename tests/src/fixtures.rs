//! Helpers shared by the fixture test files (`tests/fixture_*.rs`): frames
//! of the bed's actors, expected rewrites, event filters, owner checks.
//! Not glob re-exported at the crate root: `use havip_tests::fixtures::*`.

use std::net::Ipv4Addr;

use havip::dataplane::{
    events::DataplaneEvent,
    reconcile::{self, Installed},
    RemoteOwner,
};

use crate::frames;
use havip_common::{virtual_mac, DropReason, Event, Handled, HavipKey, OwnerEntry};

use crate::{
    bed::{
        CLIENT_IP, CLIENT_MAC, GATEWAY_MAC, HAVIP_A, HAVIP_A_ID, LOCAL_VTEP, LOCAL_VTEP_MAC,
        OWNER_MAC, REMOTE_OWNER_MAC, REMOTE_VTEP, REMOTE_VTEP_MAC, STANDBY_MAC, VNI, VSWITCH,
    },
    Case, Port, TestBed,
};

pub const PAYLOAD: &[u8] = b"havip fixture payload: must arrive byte for byte";

pub fn vmac(addr: Ipv4Addr) -> [u8; 6] {
    virtual_mac(addr.octets())
}

pub fn key(vswitch_id: u32, addr: Ipv4Addr) -> HavipKey {
    HavipKey {
        vswitch_id,
        addr: addr.octets(),
    }
}

/// A UDP datagram `src` → `dst`, addressed to `dst_mac` (for a HaVip: its
/// virtual MAC, as proxy ARP taught it).
pub fn udp(dst_mac: [u8; 6], src_mac: [u8; 6], src: Ipv4Addr, dst: Ipv4Addr) -> frames::Frame {
    frames::udp_frame(dst_mac, src_mac, src, dst, 40000, 5000, PAYLOAD)
}

pub use frames::ipv4_frame;

/// An IPv4 packet of `protocol` (no options) from the client to HaVip A,
/// addressed to A's virtual MAC.
pub fn client_to_a(protocol: u8, l4: &[u8]) -> frames::Frame {
    ipv4_frame(
        vmac(HAVIP_A),
        CLIENT_MAC,
        frames::ipv4(CLIENT_IP, HAVIP_A, protocol, &[], l4),
    )
}

/// A TCP segment (port 40001 → 80) from the client to HaVip A.
pub fn client_tcp_to_a(flags: u8, data: &[u8]) -> frames::Frame {
    client_to_a(6, &crate::tcp(CLIENT_IP, HAVIP_A, 40001, 80, flags, data))
}

/// A UDP datagram `sport` → `dport` carrying `data` from the client to
/// HaVip A.
pub fn client_udp_to_a(sport: u16, dport: u16, data: &[u8]) -> frames::Frame {
    frames::udp_frame(
        vmac(HAVIP_A),
        CLIENT_MAC,
        CLIENT_IP,
        HAVIP_A,
        sport,
        dport,
        data,
    )
}

/// `frame` as the program must redirect it: dst MAC = `owner`, src MAC =
/// `gateway`, everything else unchanged.
pub fn rewritten(frame: &frames::Frame, owner: [u8; 6], gateway: [u8; 6]) -> Vec<u8> {
    frames::Frame {
        dst: owner,
        src: gateway,
        ..frame.clone()
    }
    .bytes()
}

/// Redirected to the bed's initial owner of `HAVIP_A`, from vSwitch 1.
pub fn redirect_to_owner(name: &str, ingress: Port, frame: frames::Frame) -> Case {
    let out = rewritten(&frame, OWNER_MAC, GATEWAY_MAC);
    Case::redirect(name, ingress, frame.bytes(), out)
}

/// `inner` as the bed encapsulates it for HaVip A's remote owner: outer
/// `LOCAL_VTEP` → `REMOTE_VTEP` from UDP source port `sport` to 4789, VNI of
/// vSwitch 1, inner MACs rewritten to `REMOTE_OWNER_MAC` ← gateway.
pub fn encapsulated_to_remote_owner(inner: &frames::Frame, sport: u16) -> Vec<u8> {
    let outer = frames::Ipv4Path {
        dst_mac: REMOTE_VTEP_MAC,
        src_mac: LOCAL_VTEP_MAC,
        src: LOCAL_VTEP,
        dst: REMOTE_VTEP,
    };
    let inner = rewritten(inner, REMOTE_OWNER_MAC, GATEWAY_MAC);
    crate::vxlan_frame(outer, sport, 4789, VNI, &inner)
}

/// `inner` encapsulated from `REMOTE_VTEP` to `dst` on `dport` with `vni`.
pub fn from_remote_vtep(dst: Ipv4Addr, dport: u16, vni: u32, inner: &[u8]) -> Vec<u8> {
    let outer = frames::Ipv4Path {
        dst_mac: LOCAL_VTEP_MAC,
        src_mac: REMOTE_VTEP_MAC,
        src: REMOTE_VTEP,
        dst,
    };
    crate::vxlan_frame(outer, 50000, dport, vni, inner)
}

/// VXLAN from the underlay decapsulated and redirected to a local owner.
pub fn decapsulated(name: &str, input: Vec<u8>, output: Vec<u8>) -> Case {
    Case::redirect(name, Port::Vtep, input, output).counted(Handled::Decapsulated)
}

/// HaVip A owned on another host: `REMOTE_OWNER_MAC` behind `vtep`, at
/// `epoch`.
pub fn a_owned_remotely(vtep: Ipv4Addr, epoch: u64) -> RemoteOwner {
    RemoteOwner {
        vtep: vtep.octets(),
        mac: REMOTE_OWNER_MAC,
        epoch,
        havip_id: HAVIP_A_ID,
    }
}

/// Installs [`a_owned_remotely`] in the bed's `OWNERS`; returns what the
/// install did.
pub fn install_remote_owner_of_a(bed: &mut TestBed, vtep: Ipv4Addr, epoch: u64) -> Installed {
    let owner = a_owned_remotely(vtep, epoch);
    reconcile::install_remote_owner(&mut bed.dp.maps, key(VSWITCH, HAVIP_A), owner)
        .expect("installing a remote owner")
}

pub fn owner_changes(events: &[DataplaneEvent]) -> Vec<Event> {
    events
        .iter()
        .filter_map(|e| match e {
            DataplaneEvent::OwnerChanged(ev) => Some(*ev),
            _ => None,
        })
        .collect()
}

pub fn refusals(events: &[DataplaneEvent]) -> Vec<(Option<DropReason>, Event)> {
    events
        .iter()
        .filter_map(|e| match e {
            DataplaneEvent::ClaimRefused { event, reason } => Some((*reason, *event)),
            _ => None,
        })
        .collect()
}

pub fn garp(mac: [u8; 6], ip: Ipv4Addr) -> Vec<u8> {
    frames::garp(mac, ip).bytes()
}

/// Unsolicited ARP reply announcing `ip` at `mac` (the other claim form).
pub fn arp_reply_claim(mac: [u8; 6], ip: Ipv4Addr) -> Vec<u8> {
    frames::Frame::new(
        frames::BROADCAST,
        mac,
        frames::ETH_P_ARP,
        frames::arp(frames::ARP_REPLY, mac, ip, frames::BROADCAST, ip),
    )
    .bytes()
}

/// ARP probe (sender 0.0.0.0) for `target` from `mac`.
pub fn arp_probe(mac: [u8; 6], target: Ipv4Addr) -> frames::Frame {
    frames::Frame::new(
        frames::BROADCAST,
        mac,
        frames::ETH_P_ARP,
        frames::arp(
            frames::ARP_REQUEST,
            mac,
            Ipv4Addr::UNSPECIFIED,
            [0; 6],
            target,
        ),
    )
}

/// The proxy ARP reply for `havip` to the requester (`to_mac`, `to_ip`).
pub fn proxy_reply(to_mac: [u8; 6], to_ip: Ipv4Addr, havip: Ipv4Addr) -> frames::Frame {
    frames::Frame::new(
        to_mac,
        vmac(havip),
        frames::ETH_P_ARP,
        frames::arp(frames::ARP_REPLY, vmac(havip), havip, to_mac, to_ip),
    )
}

/// The standby claims HaVip A with a GARP from its bound MAC: the claim is
/// absorbed and counted as accepted, and the standby owns A at epoch 2 (the
/// bed's initial owner has epoch 1). Returns the new `OWNERS` entry.
pub fn standby_claims_a(bed: &mut TestBed) -> OwnerEntry {
    #[rustfmt::skip]
    let owner = claim_taken(bed, "the standby's GARP for HaVip A", Port::Standby, garp(STANDBY_MAC, HAVIP_A), Handled::ClaimAccepted, (HAVIP_A, STANDBY_MAC, 2));
    owner
}

/// A claim the program takes: `frame` from `port` is dropped and counted as
/// `handled`; then `OWNERS` holds `addr` for `port` with `mac` at `epoch`
/// (`owner` = `(addr, mac, epoch)`).
pub fn claim_taken(
    bed: &mut TestBed,
    name: &str,
    port: Port,
    frame: Vec<u8>,
    handled: Handled,
    (addr, mac, epoch): (Ipv4Addr, [u8; 6], u64),
) -> OwnerEntry {
    bed.check(&[Case::drop(name, port, frame, handled)]);
    assert_owner(bed, addr, port, mac, epoch)
}

/// Asserts `OWNERS[(vSwitch 1, addr)]` is `port`/`mac` at `epoch`.
pub fn assert_owner(
    bed: &TestBed,
    addr: Ipv4Addr,
    port: Port,
    mac: [u8; 6],
    epoch: u64,
) -> OwnerEntry {
    let owner = bed.owner(addr);
    assert_eq!(
        (owner.ifindex, owner.mac, owner.epoch),
        (bed.ifindex(port), mac, epoch),
        "OWNERS[{addr}] should be {port:?} ({mac:02x?}) at epoch {epoch}, is {owner:?}"
    );
    owner
}
