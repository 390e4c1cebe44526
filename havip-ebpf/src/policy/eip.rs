//! EIP 1:1 NAT decisions: which frames are translated, and to what. The
//! rewrite itself is `act::nat`.
//!
//! - Inbound: IPv4 from an uplink to an EIP associated with a HaVip,
//!   addressed to the HaVip's virtual MAC (the uplink's proxy ARP answer for
//!   the EIP, stable across failovers) or to the vSwitch gateway MAC.
//! - Outbound: IPv4 from the HaVip's *current* owner (port and MAC of the
//!   member its owner word names), source the HaVip, sent to the vSwitch
//!   gateway MAC (so not to a neighbour of the vSwitch) and to an address
//!   that is no HaVip of the vSwitch. Whether the destination is outside the VPC is the host's
//!   routing's call (`act::nat::outbound` translates only when the route
//!   leaves by an uplink).

use havip_common::{port_flags, virtual_mac, EipEntry, HavipKey, PortInfo};

use crate::{
    maps,
    packet::mac_eq,
    parse::{arp::Arp, eth::Frame},
};

/// What to do with IPv4 to an EIP arriving on an uplink.
pub enum Inbound {
    /// Addressed to another MAC (a flooded frame): not ours, untouched.
    ForeignMac,
    /// Rewrite the destination to the HaVip and deliver to its owner.
    Dnat(EipEntry),
}

/// `None`: not from an uplink, or `daddr` is no associated EIP.
#[inline(always)]
pub fn inbound(port: &PortInfo, frame: &Frame, daddr: [u8; 4]) -> Option<Inbound> {
    if port.flags & port_flags::UPLINK == 0 {
        return None;
    }
    let eip = maps::eip(&daddr)?;
    let dst = frame.dst();
    if mac_eq(&dst, &virtual_mac(eip.havip)) || mac_eq(&dst, &port.gateway_mac) {
        Some(Inbound::Dnat(eip))
    } else {
        Some(Inbound::ForeignMac)
    }
}

/// An outbound frame to translate: its new source.
pub struct Outbound {
    pub eip: [u8; 4],
}

/// `Some` if the frame is the current owner of a HaVip with an EIP sending
/// from the HaVip through the gateway to an address that is no HaVip.
#[inline(always)]
pub fn outbound(
    port: &PortInfo,
    ifindex: u32,
    frame: &Frame,
    saddr: [u8; 4],
    daddr: [u8; 4],
) -> Option<Outbound> {
    if port.flags & port_flags::INSTANCE == 0 || !mac_eq(&frame.dst(), &port.gateway_mac) {
        return None;
    }
    let key = HavipKey {
        vswitch_id: port.vswitch_id,
        addr: saddr,
    };
    let snat = maps::eip_of(&key)?;
    // One load of the owner word: one whole owner (see `maps::find_havip`).
    let havip = maps::find_havip(&key)?;
    let owner = havip.owner();
    let (owner_ifindex, owner_mac, remote) = (owner.ifindex, owner.mac, owner.remote);
    if remote || owner_ifindex != ifindex || owner_mac != frame.src_word() {
        return None;
    }
    let to_havip = HavipKey {
        vswitch_id: port.vswitch_id,
        addr: daddr,
    };
    if maps::havip(&to_havip).is_some() {
        return None;
    }
    Some(Outbound { eip: snat.eip })
}

/// The MAC to answer an ARP request for an EIP on an uplink with: the
/// virtual MAC of its HaVip (so the upstream router's entry never changes
/// on failover). `None`: not an uplink, not a request, or no EIP.
#[inline(always)]
pub fn arp_target(port: &PortInfo, arp: &Arp) -> Option<[u8; 6]> {
    if port.flags & port_flags::UPLINK == 0 || !arp.is_request() {
        return None;
    }
    maps::eip(&arp.tpa).map(|e| virtual_mac(e.havip))
}
