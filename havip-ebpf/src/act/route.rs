//! A routed frame (`policy::route`): delivered to the next-hop HaVip's
//! current owner through `forward::to_havip`, local port or the owner's
//! host. The IPv4 header is left untouched, TTL included: the vSwitch
//! gateway is not a hop the guest sees (as in the cloud's VPC router, and
//! `traceroute` through the owner shows the owner as the first hop).

use havip_common::{Handled, HavipKey, PortInfo, RouteNextHop, RoutePrefix};

use crate::maps::{self, FoundHavip};

/// Where a frame routed to `next_hop` goes: the next-hop HaVip's key, and
/// the ingress `port` seen from the HaVip's vSwitch, for
/// `forward::to_havip` (with the frame's own addresses: `daddr` is the
/// routed destination, not the HaVip).
#[inline(always)]
pub fn via_havip(next_hop: &RouteNextHop, port: &PortInfo) -> (HavipKey, PortInfo) {
    let key = HavipKey {
        vswitch_id: next_hop.vswitch_id,
        addr: next_hop.addr,
    };
    // The HaVip may sit in another vSwitch of the VPC: a remote owner is
    // reached through that vSwitch's VNI. The source MAC written stays the
    // ingress vSwitch's gateway MAC (the owner's vSwitch gateway MAC is not
    // in the maps; the owner's stack does not check it).
    let via = PortInfo {
        vswitch_id: next_hop.vswitch_id,
        ..*port
    };
    (key, via)
}

/// The outcome of `forward::to_havip` for a routed frame.
#[inline(always)]
pub fn routed(forwarded: Handled) -> Handled {
    match forwarded {
        Handled::Forwarded => Handled::Routed,
        Handled::ForwardedRemote => Handled::RoutedRemote,
        // The next hop is no HaVip here (a route the agent is removing):
        // left to the kernel.
        other => other,
    }
}

/// On the owner's host, for VXLAN of the vSwitch `vswitch_id` whose inner
/// destination `daddr` is no HaVip: the HaVip a route
/// sends `daddr` to, looked up in the scope of the next hop's vSwitch (the
/// sender encapsulated with that vSwitch's VNI, see `via_havip`). `None`:
/// no such route here.
#[inline(always)]
pub fn next_hop_havip(vswitch_id: u32, daddr: [u8; 4]) -> Option<FoundHavip> {
    let hop = maps::route(RoutePrefix::in_vswitch(vswitch_id, [0; 4]), daddr)?;
    let key = HavipKey {
        vswitch_id: hop.vswitch_id,
        addr: hop.addr,
    };
    maps::find_havip(&key)
}
