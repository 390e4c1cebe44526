//! IPv4 to a HaVip: rewrite the MACs and redirect to the owner's port.

use aya_ebpf::programs::XdpContext;
use havip_common::{DropReason, Handled, HavipKey};

use crate::{
    eth::Frame,
    ipv4,
    maps::{self, count, HAVIP_STATS, OWNERS, TX_PORTS},
    packet::write_mac,
};

#[inline(always)]
pub fn ipv4(ctx: &XdpContext, frame: &Frame) -> Result<Handled, DropReason> {
    let Some(daddr) = ipv4::destination(ctx, frame.l3_offset) else {
        return Ok(Handled::PassedMalformed);
    };
    let Some(port) = maps::port(ctx.ingress_ifindex() as u32) else {
        return Ok(Handled::Passed);
    };
    let key = HavipKey {
        vswitch_id: port.vswitch_id,
        addr: daddr,
    };
    // SAFETY: plain-data map value; hash elements are replaced whole (RCU),
    // so the fields read here all belong to one owner.
    let Some(owner) = (unsafe { OWNERS.get(&key) }) else {
        return Ok(Handled::Passed);
    };
    if frame.dst_is_group() {
        return Err(DropReason::NonUnicastToHavip);
    }
    if !owner.has_owner() {
        return Err(DropReason::NoOwner);
    }
    // SAFETY: `frame.eth` was bounds-checked by `eth::parse`.
    unsafe {
        write_mac(&raw mut (*frame.eth).dst, &owner.mac);
        write_mac(&raw mut (*frame.eth).src, &port.gateway_mac);
    }
    match TX_PORTS.redirect(owner.ifindex, 0) {
        Ok(_) => {
            count(
                &HAVIP_STATS,
                owner.havip_id,
                (ctx.data_end() - ctx.data()) as u64,
            );
            Ok(Handled::Forwarded)
        }
        Err(_) => Err(DropReason::PortNotRedirectable),
    }
}
