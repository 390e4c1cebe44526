//! VXLAN on the VTEP port for a HaVip whose owner is local: strip the
//! outer headers, rewrite the inner MACs and redirect to the owner's port.
//! Anything else on the VTEP port passes to the stack untouched (the
//! kernel's VXLAN device carries the ordinary traffic).

use aya_ebpf::{helpers::bpf_xdp_adjust_head, programs::XdpContext};
use havip_common::{DropReason, Handled, HavipKey, VXLAN_PORT};

use crate::{
    act,
    maps::{self, count, HAVIP_STATS, TX_PORTS},
    packet::{ip_eq, ptr_at, write_mac, write_mac_word, MacWord},
    parse::{
        eth::{EthHdr, ETH_P_IP},
        ipv4,
        vxlan::Vxlan,
    },
};

/// `outer` is the parsed outer header stack of an untagged frame received
/// on the VTEP port.
#[inline(always)]
pub fn to_local_owner(ctx: &XdpContext, outer: &Vxlan) -> Result<Handled, DropReason> {
    let Some(local) = maps::local_vtep() else {
        return Ok(Handled::Passed);
    };
    let port = if local.port == [0; 2] {
        VXLAN_PORT.to_be_bytes()
    } else {
        local.port
    };
    if outer.dport != port || !ip_eq(&outer.daddr, &local.addr) {
        return Ok(Handled::Passed);
    }
    let Some(vswitch_id) = maps::vswitch_of(outer.vni) else {
        return Ok(Handled::Passed);
    };
    let Some(inner) = ptr_at::<EthHdr>(ctx, outer.inner_offset) else {
        return Ok(Handled::Passed);
    };
    // SAFETY: bounds-checked by `ptr_at`.
    let (inner_type, inner_dst) = unsafe { ((*inner).ether_type, (*inner).dst) };
    if inner_type != ETH_P_IP {
        // Inner ARP (a remote guest resolving a local one), tagged inner
        // frames, anything else: the kernel's VXLAN device.
        return Ok(Handled::Passed);
    }
    let inner_l3 = outer.inner_offset + core::mem::size_of::<EthHdr>();
    let Some(ip) = ipv4::addresses(ctx, inner_l3) else {
        return Ok(Handled::Passed);
    };
    let key = HavipKey {
        vswitch_id,
        addr: ip.daddr,
    };
    // One load of the owner word (one whole owner), member copied at once.
    let havip = match maps::find_havip(&key) {
        Some(havip) => havip,
        // No HaVip: maybe a frame routed to a HaVip next hop (`act::route`).
        None => match act::route::next_hop_havip(vswitch_id, ip.daddr) {
            Some(havip) => havip,
            None => return Ok(Handled::Passed),
        },
    };
    let owner = havip.owner_from(havip.owner_word());
    let (owner_ifindex, owner_mac, havip_id, remote) =
        (owner.ifindex, owner.mac, owner.havip_id, owner.is_remote());
    if remote || owner_ifindex == 0 {
        // Sent here under an older owner: never re-encapsulated (two hosts
        // that disagree for a moment must not bounce frames).
        return Err(DropReason::DecapNotOwner);
    }
    if inner_dst[0] & 1 != 0 {
        return Err(DropReason::NonUnicastToHavip);
    }
    let Some(owner_port) = maps::port(owner_ifindex) else {
        return Err(DropReason::PortNotRedirectable);
    };
    // SAFETY: `gateway_mac` is at offset 12 of the 4-byte aligned entry.
    let gateway_mac = unsafe { MacWord::load(&raw const owner_port.gateway_mac) };
    // SAFETY: `ctx.ctx` is the program's context; a positive delta strips
    // the outer headers (the inner Ethernet header, checked above, stays).
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, outer.inner_offset as i32) } != 0 {
        return Ok(Handled::PassedMalformed);
    }
    // Every pointer derived before the move is invalid: check again.
    let Some(eth) = ptr_at::<EthHdr>(ctx, 0) else {
        return Err(DropReason::DecapNotOwner);
    };
    // SAFETY: bounds-checked by `ptr_at` after the move.
    unsafe {
        write_mac(&raw mut (*eth).dst, &owner_mac);
        write_mac_word(&raw mut (*eth).src, gateway_mac);
    }
    match TX_PORTS.redirect(owner_ifindex, 0) {
        Ok(_) => {
            count(&HAVIP_STATS, havip_id, (ctx.data_end() - ctx.data()) as u64);
            Ok(Handled::Decapsulated)
        }
        Err(_) => Err(DropReason::PortNotRedirectable),
    }
}
