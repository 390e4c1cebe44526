//! IPv4 to a HaVip: rewrite the MACs and redirect to the owner's port.

use aya_ebpf::programs::XdpContext;
use havip_common::{DropReason, Handled, HavipKey};

use crate::{
    eth::Frame,
    ipv4,
    maps::{count, HAVIP_STATS, OWNERS, PORTS, TX_PORTS},
};

#[inline(always)]
pub fn ipv4(ctx: &XdpContext, frame: &Frame) -> Result<Handled, DropReason> {
    let Some(daddr) = ipv4::destination(ctx, frame.l3_offset) else {
        return Ok(Handled::PassedMalformed);
    };
    let ifindex = ctx.ingress_ifindex() as u32;
    // SAFETY: map values are plain data; hash elements are replaced whole
    // (RCU), so a copy is never torn by a concurrent claim.
    let Some(port) = (unsafe { PORTS.get(&ifindex) }) else {
        return Ok(Handled::Passed);
    };
    let key = HavipKey {
        vswitch_id: port.vswitch_id,
        addr: daddr,
    };
    let Some(owner) = (unsafe { OWNERS.get(&key) }) else {
        return Ok(Handled::Passed);
    };
    let owner = *owner;
    if frame.dst_is_group() {
        return Err(DropReason::NonUnicastToHavip);
    }
    if !owner.has_owner() {
        return Err(DropReason::NoOwner);
    }
    // SAFETY: `frame.eth` was bounds-checked by `eth::parse`.
    unsafe {
        (*frame.eth).dst = owner.mac;
        (*frame.eth).src = port.gateway_mac;
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
