//! VPC routes with a HaVip next hop: IPv4 from an instance port, sent to
//! the vSwitch gateway (destination MAC = the port's gateway MAC) and not
//! to a HaVip of the vSwitch, whose destination matches a route of the
//! port's VPC (longest prefix first, `ROUTES`) goes to the next hop.

use havip_common::{port_flags, PortInfo, RouteNextHop, RoutePrefix};

use crate::{maps, packet::mac_eq, parse::eth::Frame};

pub enum RouteDecision {
    /// Not routed by us: the kernel (bridge) gets it untouched.
    NotRouted,
    /// Send to the current owner of this HaVip.
    Via(RouteNextHop),
}

/// `frame` is untagged IPv4 to `daddr` from `port`, already known not to be
/// for a HaVip of the port's vSwitch. Only instance ports route (the
/// uplink's traffic was routed where it came from; the VTEP port carries
/// tunnels).
#[inline(always)]
pub fn decide(port: &PortInfo, frame: &Frame, daddr: [u8; 4]) -> RouteDecision {
    if port.flags & port_flags::INSTANCE == 0
        || port.flags & (port_flags::UPLINK | port_flags::VTEP) != 0
    {
        return RouteDecision::NotRouted;
    }
    if !mac_eq(&frame.dst(), &port.gateway_mac) {
        return RouteDecision::NotRouted;
    }
    match maps::route(RoutePrefix::in_vpc(port.vpc_id, [0; 4]), daddr) {
        Some(next_hop) => RouteDecision::Via(next_hop),
        None => RouteDecision::NotRouted,
    }
}
