//! ARP requests for a HaVip (as *target*): answered with its virtual MAC.

use havip_common::PortInfo;

use crate::{maps, packet::mac_eq, parse::arp::Arp};

pub enum ProxyArpDecision {
    /// Not a request, or its target is no HaVip of the port's vSwitch.
    NotForHavip,
    /// Answer with this virtual MAC, back out of the ingress port.
    Reply { virtual_mac: [u8; 6] },
    /// A bound member's probe (sender 0.0.0.0) for its own HaVip: absorbed,
    /// so its duplicate address detection never sees a conflict.
    AbsorbMemberProbe,
}

/// Called once the claim path found the sender is no HaVip, so a
/// gratuitous request (SPA == TPA == HaVip) never gets here.
#[inline(always)]
pub fn decide(port: &PortInfo, ifindex: u32, arp: &Arp) -> ProxyArpDecision {
    if !arp.is_request() {
        return ProxyArpDecision::NotForHavip;
    }
    let key = havip_common::HavipKey {
        vswitch_id: port.vswitch_id,
        addr: arp.tpa,
    };
    let Some(havip) = maps::havip(&key) else {
        return ProxyArpDecision::NotForHavip;
    };
    // A member asking from its own address (a standby reaching the service
    // at the HaVip) is answered like any client; only its probes are
    // absorbed. A non-member's probe is answered: the address is in use.
    if arp.is_probe() {
        if let Some(bound_mac) = maps::binding(havip.id, ifindex) {
            if mac_eq(&bound_mac, &arp.sha) {
                return ProxyArpDecision::AbsorbMemberProbe;
            }
        }
    }
    ProxyArpDecision::Reply {
        virtual_mac: havip.virtual_mac,
    }
}
