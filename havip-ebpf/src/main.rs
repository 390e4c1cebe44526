//! havip's XDP program: the entry point. `parse` reads headers (no maps),
//! `policy` decides (typed decisions), `act` carries decisions out; maps in
//! `maps` (declared from `havip_common::catalogue`), events in `events`.
#![no_std]
#![no_main]

mod act;
mod counter;
mod csum;
mod events;
mod maps;
mod packet;
mod parse;
mod policy;
mod rt;

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};
use havip_common::{port_flags, DropReason, Handled, PortInfo};

use crate::{
    parse::{arp, eth, ipv4, vxlan},
    policy::{
        claim::ClaimDecision, proxy_arp::ProxyArpDecision, route::RouteDecision,
        vlan::TaggedDecision,
    },
};

/// Runs on every host port (instance taps and the uplink) before the bridge.
/// Inlined into the entry point the macro generates (else every frame pays
/// a BPF-to-BPF call into this body).
#[xdp]
#[inline(always)]
pub fn havip_xdp(ctx: XdpContext) -> u32 {
    let len = (ctx.data_end() - ctx.data()) as u64;
    match try_havip_xdp(&ctx) {
        // The forwarding outcomes counted on branches of their own, with a
        // constant index: the shared tail below takes an index merged from
        // every outcome (~2 ns more per forwarded frame, docs/benchmark.md).
        Ok(Handled::Forwarded) => redirected(Handled::Forwarded, len),
        Ok(Handled::ForwardedRemote) => redirected(Handled::ForwardedRemote, len),
        Ok(Handled::Decapsulated) => redirected(Handled::Decapsulated, len),
        Ok(handled) => {
            maps::count(&maps::HANDLED, handled as u32, len);
            action(handled)
        }
        Err(reason) => {
            maps::count(&maps::DROPS, reason as u32, len);
            xdp_action::XDP_DROP
        }
    }
}

/// Counts a redirected frame under `handled` (a constant at each call).
#[inline(always)]
fn redirected(handled: Handled, len: u64) -> u32 {
    maps::count(&maps::HANDLED, handled as u32, len);
    xdp_action::XDP_REDIRECT
}

#[inline(always)]
fn try_havip_xdp(ctx: &XdpContext) -> Result<Handled, DropReason> {
    let Some(frame) = eth::parse(ctx) else {
        return Ok(Handled::PassedMalformed);
    };
    match frame.ether_type {
        eth::ETH_P_IP => on_ipv4(ctx, &frame),
        eth::ETH_P_ARP => on_arp(ctx, &frame),
        _ => Ok(Handled::Passed),
    }
}

#[inline(always)]
fn on_ipv4(ctx: &XdpContext, frame: &eth::Frame) -> Result<Handled, DropReason> {
    let Some(ip) = ipv4::addresses(ctx, frame.l3_offset) else {
        return Ok(Handled::PassedMalformed);
    };
    let ifindex = ctx.ingress_ifindex() as u32;
    let Some(port) = maps::port(ifindex) else {
        return Ok(Handled::Passed);
    };
    if port.flags & port_flags::VTEP != 0 {
        return on_vtep(ctx, frame);
    }
    if frame.tagged {
        return tagged(ctx, port, ifindex, &frame.src(), ip.saddr);
    }
    if let Some(decision) = policy::eip::inbound(port, frame, ip.daddr) {
        return act::nat::inbound(ctx, frame, port, ifindex, ip.saddr, decision);
    }
    policy::source::check_ipv4(port, ifindex, || frame.src(), ip.saddr)?;
    if let Some(snat) = policy::eip::outbound(port, ifindex, frame, ip.saddr, ip.daddr) {
        return act::nat::outbound(ctx, frame, ifindex, ip.daddr, &snat);
    }
    match act::forward::to_owner(ctx, frame, port, ifindex, ip.saddr, ip.daddr)? {
        // Not for a HaVip of the vSwitch: maybe routed to one.
        Handled::Passed => match policy::route::decide(port, frame, ip.daddr) {
            RouteDecision::NotRouted => Ok(Handled::Passed),
            RouteDecision::Via(hop) => {
                let (key, via) = act::route::via_havip(&hop, port);
                let forwarded =
                    act::forward::to_havip(ctx, frame, &via, ifindex, &key, ip.saddr, ip.daddr)?;
                Ok(act::route::routed(forwarded))
            }
        },
        handled => Ok(handled),
    }
}

/// IPv4 on the underlay port: VXLAN for a local HaVip owner is
/// decapsulated; everything else (tagged, other UDP, other VNIs, inner
/// frames that are no HaVip traffic) passes to the stack untouched.
#[inline(always)]
fn on_vtep(ctx: &XdpContext, frame: &eth::Frame) -> Result<Handled, DropReason> {
    if frame.tagged {
        return Ok(Handled::Passed);
    }
    match vxlan::parse(ctx, frame.l3_offset) {
        Some(outer) => act::decap::to_local_owner(ctx, &outer),
        None => Ok(Handled::Passed),
    }
}

#[inline(always)]
fn on_arp(ctx: &XdpContext, frame: &eth::Frame) -> Result<Handled, DropReason> {
    let arp = match arp::parse(ctx, frame.l3_offset) {
        arp::Parsed::Truncated => return Ok(Handled::PassedMalformed),
        arp::Parsed::Other => return Ok(Handled::Passed),
        arp::Parsed::Arp(arp) => arp,
    };
    let ifindex = ctx.ingress_ifindex() as u32;
    let Some(port) = maps::port(ifindex) else {
        return Ok(Handled::Passed);
    };
    if port.flags & port_flags::VTEP != 0 {
        // Underlay ARP: the host's business, never a claim.
        return Ok(Handled::Passed);
    }
    if frame.tagged {
        return tagged(ctx, port, ifindex, &arp.sha, arp.spa);
    }
    match policy::claim::decide(port, ifindex, &frame.src(), &arp) {
        ClaimDecision::NotAHavipSender => {}
        ClaimDecision::PassRemote => return Ok(Handled::Passed),
        ClaimDecision::PassMember => return Ok(Handled::PassedMemberArp),
        ClaimDecision::Refresh => return Ok(Handled::ClaimRefreshed),
        ClaimDecision::Refuse {
            reason,
            key,
            havip_id,
        } => {
            events::refused(ctx, &key, havip_id, ifindex, &arp.sha, reason);
            return Err(reason);
        }
        ClaimDecision::Take {
            key,
            havip,
            word,
            current,
            next,
        } => {
            return act::claim::take_over(ctx, &key, &havip, word, &current, &next);
        }
    }
    if let Some(virtual_mac) = policy::eip::arp_target(port, &arp) {
        return act::proxy_arp::reply(frame, &arp, &virtual_mac, ifindex);
    }
    match policy::proxy_arp::decide(port, ifindex, &arp) {
        ProxyArpDecision::NotForHavip => Ok(Handled::Passed),
        ProxyArpDecision::AbsorbMemberProbe => Ok(Handled::MemberArpAbsorbed),
        ProxyArpDecision::Reply { virtual_mac } => {
            act::proxy_arp::reply(frame, &arp, &virtual_mac, ifindex)
        }
    }
}

/// A tagged IPv4 or ARP frame from one of our ports; `mac` is the sender's
/// (Ethernet source or ARP sender) for the refusal event.
#[inline(always)]
fn tagged(
    ctx: &XdpContext,
    port: &PortInfo,
    ifindex: u32,
    mac: &[u8; 6],
    sender: [u8; 4],
) -> Result<Handled, DropReason> {
    match policy::vlan::decide(port, sender) {
        TaggedDecision::Pass => Ok(Handled::PassedTagged),
        TaggedDecision::Refuse { key, havip_id } => {
            let reason = DropReason::TaggedHavipSender;
            events::refused(ctx, &key, havip_id, ifindex, mac, reason);
            Err(reason)
        }
    }
}

#[inline(always)]
const fn action(handled: Handled) -> u32 {
    match handled {
        Handled::Passed
        | Handled::PassedMalformed
        | Handled::PassedMemberArp
        | Handled::PassedTagged
        | Handled::PassedUplinkForeignMac => xdp_action::XDP_PASS,
        Handled::Forwarded
        | Handled::ProxyArpReplied
        | Handled::ForwardedRemote
        | Handled::Decapsulated
        | Handled::Routed
        | Handled::RoutedRemote
        | Handled::EipDnat
        | Handled::EipDnatRemote
        | Handled::EipSnat => xdp_action::XDP_REDIRECT,
        Handled::ClaimAccepted | Handled::ClaimRefreshed | Handled::MemberArpAbsorbed => {
            xdp_action::XDP_DROP
        }
    }
}
