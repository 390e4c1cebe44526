//! ARP (Ethernet/IPv4 only): claims, spoofing attempts and requests for HaVips.

use aya_ebpf::programs::XdpContext;
use havip_common::{port_flags, BindingKey, DropReason, Handled, HavipKey, VpcAddrKey};

use crate::{
    claim,
    eth::Frame,
    events,
    maps::{self, BINDINGS, HAVIPS, TX_PORTS, VPC_HAVIPS},
    packet::{ip_eq, mac_eq, ptr_at},
    proxy_arp,
};

pub const OP_REQUEST: [u8; 2] = [0, 1];
pub const OP_REPLY: [u8; 2] = [0, 2];
const HTYPE_ETHERNET: [u8; 2] = [0, 1];
const PTYPE_IPV4: [u8; 2] = [0x08, 0x00];

#[repr(C)]
pub struct ArpHdr {
    pub htype: [u8; 2],
    pub ptype: [u8; 2],
    pub hlen: u8,
    pub plen: u8,
    pub oper: [u8; 2],
    pub sha: [u8; 6],
    pub spa: [u8; 4],
    pub tha: [u8; 6],
    pub tpa: [u8; 4],
}

#[inline(always)]
pub fn handle(ctx: &XdpContext, frame: &Frame) -> Result<Handled, DropReason> {
    let Some(arp) = ptr_at::<ArpHdr>(ctx, frame.l3_offset) else {
        return Ok(Handled::PassedMalformed);
    };
    // SAFETY: bounds-checked by `ptr_at`; fields are byte arrays.
    let (htype, ptype, hlen, plen, oper, sha, spa, tpa) = unsafe {
        (
            (*arp).htype,
            (*arp).ptype,
            (*arp).hlen,
            (*arp).plen,
            (*arp).oper,
            (*arp).sha,
            (*arp).spa,
            (*arp).tpa,
        )
    };
    if htype != HTYPE_ETHERNET || ptype != PTYPE_IPV4 || hlen != 6 || plen != 4 {
        return Ok(Handled::Passed);
    }
    let ifindex = ctx.ingress_ifindex() as u32;
    let Some(port) = maps::port(ifindex) else {
        return Ok(Handled::Passed);
    };
    let vswitch_id = port.vswitch_id;
    let port_flags = port.flags;

    // Sender is a HaVip: a claim, or a member resolving a peer, or a spoof.
    let sender_key = HavipKey {
        vswitch_id,
        addr: spa,
    };
    if let Some(havip) = unsafe { HAVIPS.get(&sender_key) } {
        let havip_id = havip.id;
        let refuse = |reason: DropReason| {
            events::refused(ctx, &sender_key, havip_id, ifindex, &sha, reason);
            Err(reason)
        };
        // SAFETY: `frame.eth` was bounds-checked by `eth::parse`.
        let eth_src = unsafe { (*frame.eth).src };
        if !mac_eq(&eth_src, &sha) {
            return refuse(DropReason::ArpSenderMismatch);
        }
        let gratuitous = oper == OP_REQUEST && ip_eq(&spa, &tpa);
        let claim = gratuitous || oper == OP_REPLY;
        if port_flags & port_flags::INSTANCE == 0 {
            // The uplink never makes a master; an owner elsewhere resolving
            // a local guest (its ARP names the HaVip as sender) passes.
            if claim {
                return refuse(DropReason::ClaimNotFromInstance);
            }
            return Ok(Handled::Passed);
        }
        let binding_key = BindingKey { havip_id, ifindex };
        let Some(binding) = (unsafe { BINDINGS.get(&binding_key) }) else {
            return refuse(DropReason::ClaimUnbound);
        };
        if !mac_eq(&binding.mac, &sha) {
            return refuse(DropReason::ClaimMacMismatch);
        }
        if claim {
            return claim::take_over(ctx, &sender_key, havip_id, ifindex, &sha);
        }
        return Ok(Handled::PassedMemberArp);
    }

    // Sender is a HaVip of a sibling vSwitch: its address is outside this
    // vSwitch's CIDR, so nobody here may announce it.
    let vpc_key = VpcAddrKey {
        vpc_id: port.vpc_id,
        addr: spa,
    };
    if let Some(vswitch) = unsafe { VPC_HAVIPS.get(&vpc_key) } {
        if *vswitch != vswitch_id {
            events::refused(
                ctx,
                &sender_key,
                0,
                ifindex,
                &sha,
                DropReason::ClaimWrongVSwitch,
            );
            return Err(DropReason::ClaimWrongVSwitch);
        }
    }

    // Target is a HaVip: answer with its virtual MAC, never flood.
    if oper != OP_REQUEST {
        return Ok(Handled::Passed);
    }
    let target_key = HavipKey {
        vswitch_id,
        addr: tpa,
    };
    let Some(havip) = (unsafe { HAVIPS.get(&target_key) }) else {
        return Ok(Handled::Passed);
    };
    let member = BindingKey {
        havip_id: havip.id,
        ifindex,
    };
    if let Some(binding) = unsafe { BINDINGS.get(&member) } {
        if mac_eq(&binding.mac, &sha) {
            // A member probing or resolving its own HaVip must not see the
            // virtual MAC as a conflicting holder.
            return Ok(Handled::MemberArpAbsorbed);
        }
    }
    proxy_arp::reply(frame, arp, &havip.virtual_mac);
    // Back out of the ingress port through the devmap rather than XDP_TX:
    // veth only kicks its peer's NAPI for XDP_TX when the peer runs XDP
    // itself, so a guest with plain GRO would see the reply up to a second
    // late (drivers/net/veth.c veth_xdp_flush). A devmap redirect flushes
    // through ndo_xdp_xmit(XDP_XMIT_FLUSH) on every driver.
    match TX_PORTS.redirect(ifindex, 0) {
        Ok(_) => Ok(Handled::ProxyArpReplied),
        Err(_) => Err(DropReason::PortNotRedirectable),
    }
}
