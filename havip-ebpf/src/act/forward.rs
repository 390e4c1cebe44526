//! IPv4 to a HaVip: rewrite the MACs and redirect to the owner's port, or
//! hand over to `encap` when the owner is on another host.

use aya_ebpf::programs::XdpContext;
use havip_common::{port_flags, virtual_mac, DropReason, Handled, HavipKey, PortInfo};

use crate::{
    act::encap::{self, RemoteOwner},
    maps::{count, find_havip, HAVIP_STATS, TX_PORTS},
    packet::{mac_eq, write_mac_word, MacWord},
    parse::eth::Frame,
};

/// `port` is the (untagged) frame's ingress port, `saddr`/`daddr` its
/// addresses; the HaVip is the destination address in the port's vSwitch.
#[inline(always)]
pub fn to_owner(
    ctx: &XdpContext,
    frame: &Frame,
    port: &PortInfo,
    ifindex: u32,
    saddr: [u8; 4],
    daddr: [u8; 4],
) -> Result<Handled, DropReason> {
    let key = HavipKey {
        vswitch_id: port.vswitch_id,
        addr: daddr,
    };
    to_havip(ctx, frame, port, ifindex, &key, saddr, daddr)
}

/// Delivers the frame to the current owner of the HaVip `key`. The frame's
/// IPv4 destination `daddr` is usually `key.addr`; it differs for frames
/// that take the HaVip as next hop (routes). Passes when `key` is no HaVip.
#[inline(always)]
pub fn to_havip(
    ctx: &XdpContext,
    frame: &Frame,
    port: &PortInfo,
    ifindex: u32,
    key: &HavipKey,
    saddr: [u8; 4],
    daddr: [u8; 4],
) -> Result<Handled, DropReason> {
    // The owner word is read with one load: one whole owner, never two
    // mixed (see `maps::find_havip`); its port and MAC from the row's
    // owner copy or its member, copied at once (`FoundHavip::owner`).
    let Some(havip) = find_havip(key) else {
        return Ok(Handled::Passed);
    };
    let owner = havip.owner();
    let (owner_ifindex, owner_mac, havip_id) = (owner.ifindex, owner.mac, owner.havip_id);
    let (remote, vtep) = (owner.remote, owner.vtep);
    if frame.dst_is_group() {
        return Err(DropReason::NonUnicastToHavip);
    }
    let has_owner = owner_ifindex != 0;
    if port.flags & port_flags::UPLINK != 0 {
        // From the uplink only frames addressed to us: the virtual MAC
        // (proxy ARP), the gateway MAC (routed) or the owner's own MAC.
        let dst = frame.dst();
        let ours = mac_eq(&dst, &virtual_mac(key.addr))
            || mac_eq(&dst, &port.gateway_mac)
            || (has_owner && MacWord::new(&dst) == owner_mac);
        if !ours {
            return Ok(Handled::PassedUplinkForeignMac);
        }
    }
    if !has_owner {
        return Err(DropReason::NoOwner);
    }
    if remote {
        let owner = RemoteOwner {
            vtep,
            mac: owner_mac.bytes(),
            havip_id,
        };
        return encap::to_remote(ctx, frame, port, saddr, daddr, &owner);
    }
    if owner_ifindex == ifindex {
        // Never back out of the port it came in on (a stale owner sending
        // to its own HaVip); passing it on would flood the virtual MAC.
        return Err(DropReason::HairpinToOwner);
    }
    // SAFETY: `frame.eth` was bounds-checked by `parse::eth::parse`;
    // `gateway_mac` is at offset 12 of the 4-byte aligned `PortInfo`.
    unsafe {
        write_mac_word(&raw mut (*frame.eth).dst, owner_mac);
        write_mac_word(
            &raw mut (*frame.eth).src,
            MacWord::load(&raw const port.gateway_mac),
        );
    }
    match TX_PORTS.redirect(owner_ifindex, 0) {
        Ok(_) => {
            count(&HAVIP_STATS, havip_id, (ctx.data_end() - ctx.data()) as u64);
            Ok(Handled::Forwarded)
        }
        Err(_) => Err(DropReason::PortNotRedirectable),
    }
}
